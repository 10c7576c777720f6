/*
 * common/error.c: error codes and user-facing error messages.
 *
 * Errors are negative errno values; cairn_error_t carries the sentence a user reads.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

int cairn_error_set(cairn_error_t *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *cairn_strerror(int code)
{
    /* strerror() is not thread-safe in general; glibc's strerrordesc_np is, and static. */
    const char *s = strerrordesc_np(code < 0 ? -code : code);
    return s ? s : "unknown error";
}
