/*
 * example_util.c - option parsing, error messages, model loading
 * and a monotonic clock for the libcvae examples. See example_util.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "example_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *ex_prog = "cvae-example";

static void vmessage(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", ex_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void ex_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    exit(2);
}

int ex_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    return 1;
}

int ex_status_error(const char *what, cvae_status st, const char *detail)
{
    if (detail && *detail)
        return ex_error("%s: %s: %s", what, cvae_status_string(st), detail);
    return ex_error("%s: %s", what, cvae_status_string(st));
}

void ex_help_or_version(int argc, char **argv, void (*usage)(FILE *))
{
    int i;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(argv[i], "--version")) {
            printf("%s (libcvae) %s\n", ex_prog, cvae_version_string());
            exit(0);
        }
    }
}

int ex_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t len = strlen(name);

    if (strncmp(arg, name, len) != 0)
        return 0;
    if (arg[len] == '=') { /* --name=value */
        *value = arg + len + 1;
        return 1;
    }
    if (arg[len] != '\0')
        return 0; /* a longer option that starts with the same letters */
    if (*i + 1 >= argc)
        ex_usage_error("option %s needs a value (try --help)", name);
    *value = argv[++*i];
    return 1;
}

int ex_flag(const char *arg, const char *name)
{
    size_t len = strlen(name);

    if (strncmp(arg, name, len) != 0)
        return 0;
    if (arg[len] == '=')
        ex_usage_error("option %s takes no value (try --help)", name);
    return arg[len] == '\0';
}

void ex_unknown_option(const char *arg) { ex_usage_error("unknown option '%s' (try --help)", arg); }

long ex_parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi)
        ex_usage_error("%s wants an integer in [%ld, %ld], not '%s'", opt, lo, hi, s);
    return v;
}

double ex_parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || *s == '\0' || *end != '\0' || !isfinite(v) || v < lo || v > hi)
        ex_usage_error("%s wants a number in [%g, %g], not '%s'", opt, lo, hi, s);
    return v;
}

uint64_t ex_parse_u64(const char *opt, const char *s)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    /* strtoull accepts "-1" and wraps it; a seed is written without a sign. */
    if (errno || *s < '0' || *s > '9' || *end != '\0')
        ex_usage_error("%s wants an integer in [0, %llu], not '%s'", opt,
                       (unsigned long long)UINT64_MAX, s);
    return (uint64_t)v;
}

cvae_status ex_load_model(const char *path, int max_batch, cvae_model **out)
{
    cvae_status st;

    if ((st = cvae_model_create(out)) != CVAE_OK) {
        ex_status_error("creating a model", st, "");
        return st;
    }
    if ((st = cvae_model_load(*out, path, max_batch)) != CVAE_OK) {
        ex_status_error("loading the model", st, cvae_model_last_error(*out));
        cvae_model_destroy(*out);
        *out = NULL;
    }
    return st;
}

cvae_status ex_write_grid(const char *path, const float *images, int count, int c, int h, int w,
                          int columns, int scale)
{
    char err[512] = "";
    float *big = NULL;
    cvae_status st;
    if (scale > 1) {
        size_t bw = (size_t)w * (size_t)scale, bh = (size_t)h * (size_t)scale, plane = bh * bw;
        size_t i, y, x;
        big = malloc((size_t)count * (size_t)c * plane * sizeof *big);
        if (!big) {
            ex_error("out of memory for a %dx picture", scale);
            return CVAE_ERR_NOMEM;
        }
        /* Plane by plane: each source pixel fills a scale x scale block. */
        for (i = 0; i < (size_t)count * (size_t)c; i++)
            for (y = 0; y < bh; y++)
                for (x = 0; x < bw; x++)
                    big[i * plane + y * bw + x] =
                        images[(i * (size_t)h + y / (size_t)scale) * (size_t)w + x / (size_t)scale];
        images = big;
        h *= scale;
        w *= scale;
    }
    st = cvae_png_write_grid(path, images, count, c, h, w, columns, err, sizeof err);
    free(big);
    if (st != CVAE_OK)
        ex_status_error("writing the PNG", st, err);
    return st;
}

double ex_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
