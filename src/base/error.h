/* Error reporting: every fallible function returns int (0 = ok, -1 = failure) and fills an
 * Error with one line that names the file, the place and the reason. Only cli/ prints it. */
#ifndef SDTI_BASE_ERROR_H
#define SDTI_BASE_ERROR_H

#include <stddef.h>

typedef struct Error {
    char message[1024];
} Error;

/* Sets the message (printf-style) and returns -1, so callers can write
 * `return error_set(err, "...")`. A NULL err is allowed and ignored. */
int error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context ("file.safetensors: ") to an existing message; returns -1. */
int error_prefix(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void error_clear(Error *err);

#endif
