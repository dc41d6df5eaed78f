/*
 * example_util.h - helpers shared by the libcvae example programs: GNU-style
 * long options, one-line error messages, model loading and a clock (data:
 * datasets.h).
 *
 * Not part of libcvae: these are conveniences for the small programs in
 * examples/, kept apart so that each program shows only its own work.
 * Every message goes to stderr as one line "prog: message".
 */
#ifndef EXAMPLE_UTIL_H
#define EXAMPLE_UTIL_H

#include <cvae.h>

#include <stdint.h>
#include <stdio.h>

/* GCC and Clang check the printf formats and know what never returns. */
#if defined(__GNUC__) || defined(__clang__)
#define EX_PRINTF __attribute__((format(printf, 1, 2)))
#define EX_NORETURN __attribute__((noreturn))
#else
#define EX_PRINTF
#define EX_NORETURN
#endif

/* Program name used in every message; set it first thing in main. */
extern const char *ex_prog;

/* Prints "prog: message" on stderr and exits with status 2 (usage error). */
void ex_usage_error(const char *fmt, ...) EX_PRINTF EX_NORETURN;

/* Prints "prog: message" on stderr; returns 1, the runtime-error status. */
int ex_error(const char *fmt, ...) EX_PRINTF;

/* Prints "prog: what: <status string>: <detail>" (detail left out when empty)
 * and returns 1. detail is usually a handle's last_error. */
int ex_status_error(const char *what, cvae_status st, const char *detail);

/*
 * Looks for --help (calls usage(stdout), exits 0) and --version (prints
 * "prog (libcvae) X.Y.Z", exits 0) anywhere in argv, before the other
 * options are parsed, so they work whatever else is on the line.
 */
void ex_help_or_version(int argc, char **argv, void (*usage)(FILE *));

/*
 * Matches argv[*i] against a long option taking a value, name being e.g.
 * "--epochs": accepts "--epochs 5" (then advances *i past the value) and
 * "--epochs=5". Returns 1 and sets *value on a match, 0 if argv[*i] is some
 * other option; exits with status 2 when the value is missing.
 */
int ex_option(int argc, char **argv, int *i, const char *name, const char **value);

/* Matches a flag without a value ("--manifold"); "--manifold=x" exits 2. */
int ex_flag(const char *arg, const char *name);

/* Exits 2 with "unknown option" for an argument nothing matched. */
void ex_unknown_option(const char *arg) EX_NORETURN;

/* Parse a whole string as a number in [lo, hi] or exit 2 naming the option. */
long ex_parse_long(const char *opt, const char *s, long lo, long hi);
double ex_parse_double(const char *opt, const char *s, double lo, double hi);
uint64_t ex_parse_u64(const char *opt, const char *s);

/* Loads a model file for batches of up to max_batch images into a new
 * model. On failure prints one line and returns a non-OK status. */
cvae_status ex_load_model(const char *path, int max_batch, cvae_model **out);

/*
 * Writes count images (count x c x h x w floats) as a PNG grid of `columns`
 * per row with cvae_png_write_grid, each pixel drawn as a scale x scale
 * block (scale 1: as they are; small images are easier to see larger).
 * On failure prints one line and returns a non-OK status.
 */
cvae_status ex_write_grid(const char *path, const float *images, int count, int c, int h, int w,
                          int columns, int scale);

/* The help line of --scale. */
#define EX_SCALE_HELP "  --scale N        draw each pixel as N x N pixels (default 1)\n"

/* Seconds on a monotonic clock, for measuring intervals. */
double ex_now(void);

#endif /* EXAMPLE_UTIL_H */
