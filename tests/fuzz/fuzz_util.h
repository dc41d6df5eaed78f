/*
 * fuzz_util.h - helpers shared by the libFuzzer targets: per-process
 * temporary paths (the loaders take paths, not buffers), writing the input
 * to them, and a hard failure that libFuzzer reports as a crash.
 *
 * Header-only (static functions) so each target is one translation unit.
 */
#ifndef CVAE_FUZZ_UTIL_H
#define CVAE_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_PATH_MAX 512
#define FUZZ_MAX_PATHS 4

static char fuzz_paths[FUZZ_MAX_PATHS][FUZZ_PATH_MAX];
static int fuzz_npaths;

/* Removes every path made by fuzz_temp_path (and its ".tmp" sibling). */
static void fuzz_remove_paths(void)
{
    char tmp[FUZZ_PATH_MAX + 8];
    int i;
    for (i = 0; i < fuzz_npaths; i++) {
        remove(fuzz_paths[i]);
        snprintf(tmp, sizeof tmp, "%s.tmp", fuzz_paths[i]);
        remove(tmp);
    }
}

/* "$TMPDIR/cvae-fuzz-<target>-<pid>-<name>" (TMPDIR defaults to /tmp),
 * made once per process and removed at exit. */
static const char *fuzz_temp_path(const char *target, const char *name)
{
    const char *dir = getenv("TMPDIR");
    char *p;
    if (!dir || !*dir)
        dir = "/tmp";
    if (fuzz_npaths >= FUZZ_MAX_PATHS)
        abort();
    p = fuzz_paths[fuzz_npaths];
    if (snprintf(p, FUZZ_PATH_MAX, "%s/cvae-fuzz-%s-%ld-%s", dir, target, (long)getpid(),
                 name) >= FUZZ_PATH_MAX)
        abort();
    if (fuzz_npaths++ == 0)
        atexit(fuzz_remove_paths);
    return p;
}

/* Writes n bytes to path, replacing it. A failure here is the harness's,
 * not the library's: abort so that it is noticed. */
static void fuzz_write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "fuzz harness: cannot write %s\n", path);
        abort();
    }
}

/* 1 when CVAE_FUZZ_VERBOSE is set: the targets then print each load's
 * status and message to stderr (for reproducing by hand). */
static int fuzz_verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("CVAE_FUZZ_VERBOSE");
        v = e && *e && strcmp(e, "0") != 0;
    }
    return v;
}

/* A broken library promise: print it and abort (a crash for libFuzzer). */
#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#endif /* CVAE_FUZZ_UTIL_H */
