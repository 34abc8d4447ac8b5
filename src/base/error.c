#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(Error *err, const char *fmt, ...) {
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

int error_prefix(Error *err, const char *fmt, ...) {
    if (!err)
        return -1;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Shift the old message right and put the prefix in front; whatever does not fit in
     * the fixed buffer is cut from the end, which keeps the outermost context. */
    size_t cap = sizeof err->message;
    size_t plen = strlen(prefix);
    err->message[cap - 1] = '\0';
    size_t olen = strlen(err->message);
    if (plen > cap - 1)
        plen = cap - 1;
    if (plen + olen > cap - 1)
        olen = cap - 1 - plen;
    memmove(err->message + plen, err->message, olen);
    memcpy(err->message, prefix, plen);
    err->message[plen + olen] = '\0';
    return -1;
}

void error_clear(Error *err) {
    if (err)
        err->message[0] = '\0';
}
