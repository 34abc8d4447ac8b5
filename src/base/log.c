#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>

/* The one piece of process-wide state besides the thread pool: set once by the CLI. */
static LogLevel current_level = LOG_INFO;
static FILE *log_file; /* --console_log_file, or NULL: the console */

int log_set_file(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    log_close_file();
    log_file = f;
    return 0;
}

void log_close_file(void) {
    if (log_file)
        fclose(log_file);
    log_file = NULL;
}

void log_set_level(LogLevel level) {
    current_level = level;
}

void log_message(LogLevel level, const char *fmt, ...) {
    if (level < current_level)
        return;
    va_list ap;
    if (log_file) {
        va_start(ap, fmt);
        vfprintf(log_file, fmt, ap);
        va_end(ap);
        fputc('\n', log_file);
        fflush(log_file);
        return;
    }
    static const char *const prefix[] = {"debug: ", "", "warning: ", "error: "};
    fputs(prefix[level], stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
