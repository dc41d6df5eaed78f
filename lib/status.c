/*
 * status.c - status names, per-handle error messages and checked size
 * arithmetic. Nothing here keeps state: messages live in the handles.
 */
#include "cvae_internal.h"

#include <stdio.h>

CVAE_API const char *cvae_status_string(cvae_status status)
{
    switch (status) {
    case CVAE_OK:
        return "ok";
    case CVAE_ERR_INVALID_ARG:
        return "bad argument";
    case CVAE_ERR_NOMEM:
        return "out of memory";
    case CVAE_ERR_SHAPE:
        return "shape mismatch";
    case CVAE_ERR_STATE:
        return "call out of order";
    case CVAE_ERR_IO:
        return "input/output error";
    case CVAE_ERR_FORMAT:
        return "bad file format";
    case CVAE_ERR_VERSION:
        return "unsupported format version";
    case CVAE_ERR_NUMERIC:
        return "non-finite value";
    case CVAE_ERR_TOO_LARGE:
        return "size too large";
    }
    return "unknown status";
}

void cvi_set_error(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, CVI_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

int cvi_mul_overflow(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > (size_t)-1 / a)
        return 1;
    *out = a * b;
    return 0;
}

int cvi_add_overflow(size_t a, size_t b, size_t *out)
{
    if (b > (size_t)-1 - a)
        return 1;
    *out = a + b;
    return 0;
}
