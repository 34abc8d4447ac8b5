/* Console messages. The level comes from --console_log_level (kohya's option). */
#ifndef SDTI_BASE_LOG_H
#define SDTI_BASE_LOG_H

typedef enum LogLevel { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR } LogLevel;

void log_set_level(LogLevel level);
/* --console_log_file: from now on the messages go to this file (created or truncated, as
 * kohya's logging.FileHandler(path, mode="w")) instead of the console, as the bare message
 * (kohya's "%(message)s" format), flushed line by line. Returns 0, or -1 when the file cannot
 * be opened (errno says why). log_close_file goes back to the console. */
int log_set_file(const char *path);
void log_close_file(void);
void log_message(LogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)   log_message(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_message(LOG_INFO, __VA_ARGS__)
#define log_warning(...) log_message(LOG_WARNING, __VA_ARGS__)

#endif
