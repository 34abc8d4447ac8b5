#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>

/* The one piece of process-wide state besides the thread pool: set once by the CLI. */
static LogLevel current_level = LOG_INFO;

void log_set_level(LogLevel level) {
    current_level = level;
}

void log_message(LogLevel level, const char *fmt, ...) {
    if (level < current_level)
        return;
    static const char *const prefix[] = {"debug: ", "", "warning: ", "error: "};
    fputs(prefix[level], stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
