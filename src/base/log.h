/* Console messages. The level comes from --console_log_level (kohya's option). */
#ifndef SDTI_BASE_LOG_H
#define SDTI_BASE_LOG_H

typedef enum LogLevel { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR } LogLevel;

void log_set_level(LogLevel level);
void log_message(LogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)   log_message(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_message(LOG_INFO, __VA_ARGS__)
#define log_warning(...) log_message(LOG_WARNING, __VA_ARGS__)

#endif
