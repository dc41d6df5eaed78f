/*
 * dataset_cifar10.c - the CIFAR-10 binary format: files of records, each one
 * label byte (0..9) then 3 x 32 x 32 pixel bytes, channel-planar (red plane,
 * green plane, blue plane, rows top to bottom), which is already the
 * dataset's own layout, so pixels are read straight into place.
 *
 * Two passes: the first opens every file and checks its length (a whole,
 * non-zero number of records) before anything is allocated; the second reads.
 */
#include "cvae_internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_CLASSES 10

/* Opens path and reads its first byte, so that a directory (which fopen
 * accepts on Linux) fails here as IO and an empty file as FORMAT. */
static cvae_status open_nonempty(const cvae_allocator *a, const char *path, FILE **out, char *err)
{
    unsigned char first;
    FILE *f;
    cvae_status st;
    errno = 0;
    f = fopen(path, "rb");
    if (!f)
        return cvi_open_error(a, path, errno, err);
    errno = 0;
    if (fread(&first, 1, 1, f) != 1) {
        if (ferror(f)) {
            cvi_set_error(err, "%s: read failed: %s", path, errno ? strerror(errno) : "read error");
            st = CVAE_ERR_IO;
        } else {
            cvi_set_error(err, "%s: the file is empty", path);
            st = CVAE_ERR_FORMAT;
        }
        fclose(f);
        return st;
    }
    *out = f;
    return CVAE_OK;
}

/* The number of records of one file, from its length. */
static cvae_status count_records(const cvae_allocator *a, const char *path, size_t *records,
                                 char *err)
{
    FILE *f = NULL;
    long len;
    cvae_status st = open_nonempty(a, path, &f, err);
    if (st != CVAE_OK)
        return st;
    errno = 0;
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0) {
        cvi_set_error(err, "%s: cannot find the file length: %s", path,
                      errno ? strerror(errno) : "seek failed");
        fclose(f);
        return CVAE_ERR_IO;
    }
    fclose(f);
    if ((unsigned long)len % CIFAR_RECORD != 0) {
        if ((unsigned long)len % (CIFAR_RECORD + 1) == 0)
            cvi_set_error(err,
                          "%s: %ld bytes: records of %d bytes, the CIFAR-100 layout (2 label "
                          "bytes), which is not supported; CIFAR-10 records have %d bytes",
                          path, len, CIFAR_RECORD + 1, CIFAR_RECORD);
        else
            cvi_set_error(err,
                          "%s: %ld bytes is not a whole number of %d-byte CIFAR-10 records "
                          "(%lu records and %lu bytes)",
                          path, len, CIFAR_RECORD, (unsigned long)len / CIFAR_RECORD,
                          (unsigned long)len % CIFAR_RECORD);
        return CVAE_ERR_FORMAT;
    }
    *records = (size_t)((unsigned long)len / CIFAR_RECORD);
    return CVAE_OK;
}

/* Reads one file's records into pixels and labels (records of them). */
static cvae_status read_records(const cvae_allocator *a, const char *path, size_t records,
                                uint8_t *pixels, uint8_t *labels, char *err)
{
    FILE *f;
    size_t r;
    cvae_status st = CVAE_OK;
    errno = 0;
    f = fopen(path, "rb");
    if (!f)
        return cvi_open_error(a, path, errno, err);
    for (r = 0; r < records && st == CVAE_OK; r++) {
        st = cvi_read_exact(f, labels + r, 1, path, "record", err);
        if (st == CVAE_OK && labels[r] >= CIFAR_CLASSES) {
            cvi_set_error(err, "%s: record %zu has label %u, expected 0..%d", path, r,
                          (unsigned)labels[r], CIFAR_CLASSES - 1);
            st = CVAE_ERR_FORMAT;
        }
        if (st == CVAE_OK)
            st = cvi_read_exact(f, pixels + r * CIFAR_PIXELS, CIFAR_PIXELS, path, "record", err);
    }
    /* The first pass counted the records; a file that grew since is refused. */
    if (st == CVAE_OK && fgetc(f) != EOF) {
        cvi_set_error(err, "%s: the file changed while it was read", path);
        st = CVAE_ERR_FORMAT;
    }
    fclose(f);
    return st;
}

CVAE_API cvae_status cvae_dataset_load_cifar10(cvae_dataset *ds, const char *const *paths,
                                               int count)
{
    const cvae_allocator *a;
    char *err;
    size_t total = 0, done = 0, records = 0, bytes;
    uint8_t *pixels, *labels;
    cvae_status st;
    int i;
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    a = cvi_dataset_allocator(ds);
    err = cvi_dataset_errbuf(ds);
    if ((st = cvi_check_paths(paths, count, "dataset_load_cifar10", err)) != CVAE_OK)
        return st;
    for (i = 0; i < count; i++) {
        if ((st = count_records(a, paths[i], &records, err)) != CVAE_OK)
            return st;
        total += records; /* each is below LONG_MAX / 3073: no overflow before the check */
        if (total > INT_MAX || total > CVI_MAX_ELEMS / CIFAR_PIXELS) {
            cvi_set_error(err, "%s: more than %d CIFAR-10 images in all", paths[i],
                          (int)(CVI_MAX_ELEMS / CIFAR_PIXELS));
            return CVAE_ERR_TOO_LARGE;
        }
    }
    bytes = total * CIFAR_PIXELS;
    pixels = cvi_calloc(a, bytes, 1);
    labels = cvi_calloc(a, total, 1);
    if (!pixels || !labels) {
        cvi_set_error(err, "out of memory for %zu CIFAR-10 images", total);
        cvi_free(a, pixels);
        cvi_free(a, labels);
        return CVAE_ERR_NOMEM;
    }
    /* Each file's records are counted again: a file that changed since the
     * first pass must not write past the block. */
    for (i = 0, st = CVAE_OK; i < count && st == CVAE_OK; i++) {
        st = count_records(a, paths[i], &records, err);
        if (st == CVAE_OK && records > total - done) {
            cvi_set_error(err, "%s: the file changed while it was read", paths[i]);
            st = CVAE_ERR_FORMAT;
        }
        if (st == CVAE_OK)
            st = read_records(a, paths[i], records, pixels + done * CIFAR_PIXELS, labels + done,
                              err);
        done += records;
    }
    if (st == CVAE_OK && done != total) {
        cvi_set_error(err, "%s: the files changed while they were read", paths[0]);
        st = CVAE_ERR_FORMAT;
    }
    if (st != CVAE_OK) {
        cvi_free(a, pixels);
        cvi_free(a, labels);
        return st;
    }
    return cvi_dataset_adopt(ds, pixels, labels, total, 3, CIFAR_SIDE, CIFAR_SIDE);
}
