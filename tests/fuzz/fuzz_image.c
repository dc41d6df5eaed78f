/*
 * fuzz_image.c - libFuzzer target for the two image loaders,
 * cvae_dataset_load_cifar10 (lib/dataset_cifar10.c) and
 * cvae_dataset_load_pnm (lib/dataset_pnm.c).
 *
 * Input: one selector byte, then the files.
 *  - selector bit 0: the loader, 0 = CIFAR-10, 1 = netpbm (P5/P6);
 *  - selector bits 1-2: the number of files minus 1 (1..4 files);
 *  - selector bits 3-7: ignored.
 * The rest of the input is cut at the first (files - 1) occurrences of the
 * 6 bytes "#FILE#", from the left: the first file is the bytes before the
 * first separator, the second those between the first and the second, and
 * so on; the last file is everything after the last cut (it may hold
 * "#FILE#" itself). With fewer separators than cuts, the files left over
 * are empty. An empty input counts as selector 0 with nothing after it (one
 * empty CIFAR-10 file). Each file is written to a per-process temporary
 * file (the loaders take paths) and the loader runs on the list, in order.
 *
 * The harness parses the files itself, following the formats and the order
 * of checks documented in include/cvae.h and docs/DATASETS.md, to know which
 * inputs must load and which must fail, with which status and which file
 * named in the message. When the loaders' rules change, this parser must
 * follow (pnm_parse, cifar_expect).
 *
 * Checked on every input: no crash, leak or UB (sanitizers). A failure
 * returns the status the files call for (CIFAR-10: FORMAT; netpbm: FORMAT,
 * TOO_LARGE or SHAPE), with a message naming the offending file, and leaves
 * the dataset's previous content (one 1x2x2 image, no labels) exactly as it
 * was. A success happens only on well-formed files and agrees with them:
 * CIFAR-10, count = total records, 3 x 32 x 32, labels 0..9 equal to the
 * label bytes; netpbm, count = files, channels x height x width from the
 * first header, no labels. A batch of up to 4 images then holds pixels in
 * [0, 1] equal to byte / 255 (CIFAR-10, channel-planar as stored) or to
 * round(v * 255 / maxval) / 255 (netpbm, de-interleaved for P6); the
 * dataset is shuffled, its last batch taken, the range check tried,
 * unshuffled and, with 2 images or more, split.
 */
#define _POSIX_C_SOURCE 200809L

#include "cvae.h"
#include "fuzz_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEPARATOR "#FILE#"
#define SEPARATOR_LEN 6
#define MAX_FILES 4
#define MAX_BATCH 4

#define CIFAR_PIXELS 3072
#define CIFAR_RECORD 3073

/* Longest accepted decimal field of a netpbm header (lib/dataset_pnm.c):
 * an 11th digit is refused, whatever its value: TOO_LARGE for a side,
 * FORMAT for the maxval (not 8-bit). */
#define PNM_MAX_DIGITS 10
#define PNM_MAX_SIDE 65535ul

typedef struct file {
    const uint8_t *p;
    size_t n;
} file;

/* What the harness expects of the whole load: CVAE_OK, or the status of
 * the first problem in the loader's order and the file it concerns. */
typedef struct expect {
    cvae_status st;
    int bad_file;
} expect;

/* A parsed netpbm header. */
typedef struct pnm {
    int channels;
    unsigned long width, height, maxval;
    size_t raster_at, raster;
} pnm;

/* Cuts rest (n bytes) into count files, as described at the top. */
static void split_files(const uint8_t *rest, size_t n, int count, file *files)
{
    size_t at = 0, i;
    int k;
    for (k = 0; k < count; k++) {
        files[k].p = rest + at;
        files[k].n = n - at;
        if (k == count - 1)
            break;
        for (i = at; i + SEPARATOR_LEN <= n; i++)
            if (rest[i] == '#' && memcmp(rest + i, SEPARATOR, SEPARATOR_LEN) == 0)
                break;
        if (i + SEPARATOR_LEN > n) { /* no more separators: the rest are empty */
            for (k++; k < count; k++) {
                files[k].p = rest + n;
                files[k].n = 0;
            }
            return;
        }
        files[k].n = i - at;
        at = i + SEPARATOR_LEN;
    }
}

/* ------------------------------------------------------------ CIFAR-10 */

/* The loader checks every file's length first, in order, then reads the
 * records in order, refusing a label above 9. */
static expect cifar_expect(const file *files, int count)
{
    expect e = {CVAE_OK, -1};
    size_t r;
    int k;
    for (k = 0; k < count; k++)
        if (files[k].n == 0 || files[k].n % CIFAR_RECORD != 0) {
            e.st = CVAE_ERR_FORMAT;
            e.bad_file = k;
            return e;
        }
    for (k = 0; k < count; k++)
        for (r = 0; r < files[k].n; r += CIFAR_RECORD)
            if (files[k].p[r] > 9) {
                e.st = CVAE_ERR_FORMAT;
                e.bad_file = k;
                return e;
            }
    return e;
}

/* Record i (in the files' order) of well-formed files. */
static const uint8_t *cifar_record(const file *files, size_t i)
{
    int k;
    for (k = 0;; k++) {
        size_t records = files[k].n / CIFAR_RECORD;
        if (i < records)
            return files[k].p + i * CIFAR_RECORD;
        i -= records;
    }
}

/* -------------------------------------------------------------- netpbm */

static int pnm_space(int ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* One header field at *at: whitespace and "#" comments (to the next CR or
 * LF) may come first; then 1..PNM_MAX_DIGITS decimal digits; then, for the
 * width and the height, whitespace or the "#" of a comment (left for the
 * next field); for the maxval, exactly one whitespace character, which is
 * consumed and ends the header. */
static cvae_status pnm_field(const file *f, size_t *at, int last, unsigned long *value)
{
    size_t i = *at, start;
    unsigned long v = 0;
    for (;;) {
        if (i < f->n && f->p[i] == '#') {
            while (i < f->n && f->p[i] != '\n' && f->p[i] != '\r')
                i++;
            if (i == f->n)
                return CVAE_ERR_FORMAT; /* the header ends in a comment */
        } else if (i < f->n && pnm_space(f->p[i])) {
            i++;
        } else {
            break;
        }
    }
    start = i;
    while (i < f->n && f->p[i] >= '0' && f->p[i] <= '9') {
        if (i - start == PNM_MAX_DIGITS)
            return last ? CVAE_ERR_FORMAT : CVAE_ERR_TOO_LARGE;
        v = v * 10 + (unsigned long)(f->p[i] - '0');
        i++;
    }
    if (i == start || i == f->n)
        return CVAE_ERR_FORMAT; /* no digits, or the file ends right after them */
    if (pnm_space(f->p[i]))
        i++; /* width/height: the next field skips it anyway */
    else if (f->p[i] != '#' || last)
        return CVAE_ERR_FORMAT;
    *at = i;
    *value = v;
    return CVAE_OK;
}

/* Header and length of one file, with the loader's order of checks: the
 * magic, followed by whitespace (consumed) or a comment's "#"; the three
 * fields; sides >= 1, sides <= 65535, maxval 1..255; then the raster must
 * fill the rest of the file exactly. */
static cvae_status pnm_parse(const file *f, pnm *h)
{
    size_t at = 2;
    cvae_status st;
    if (f->n < 2 || f->p[0] != 'P' || (f->p[1] != '5' && f->p[1] != '6'))
        return CVAE_ERR_FORMAT;
    h->channels = f->p[1] == '5' ? 1 : 3;
    if (at < f->n && pnm_space(f->p[at]))
        at++;
    else if (at == f->n || f->p[at] != '#')
        return CVAE_ERR_FORMAT; /* "P54 3 ..." is not a P5 */
    if ((st = pnm_field(f, &at, 0, &h->width)) != CVAE_OK ||
        (st = pnm_field(f, &at, 0, &h->height)) != CVAE_OK ||
        (st = pnm_field(f, &at, 1, &h->maxval)) != CVAE_OK)
        return st;
    if (h->width == 0 || h->height == 0)
        return CVAE_ERR_FORMAT;
    if (h->width > PNM_MAX_SIDE || h->height > PNM_MAX_SIDE)
        return CVAE_ERR_TOO_LARGE;
    if (h->maxval == 0 || h->maxval > 255)
        return CVAE_ERR_FORMAT;
    h->raster_at = at;
    h->raster = (size_t)h->channels * h->width * h->height;
    if (f->n - at != h->raster)
        return CVAE_ERR_FORMAT; /* truncated raster, or bytes after it */
    return CVAE_OK;
}

/* The loader reads and checks every header first, in order, each against
 * the first (SHAPE), then reads the rasters in order, refusing a pixel above
 * maxval. */
static expect pnm_expect(const file *files, int count, pnm *hd)
{
    expect e = {CVAE_OK, -1};
    size_t i;
    int k;
    for (k = 0; k < count; k++) {
        e.st = pnm_parse(&files[k], &hd[k]);
        if (e.st == CVAE_OK && k > 0 &&
            (hd[k].channels != hd[0].channels || hd[k].width != hd[0].width ||
             hd[k].height != hd[0].height))
            e.st = CVAE_ERR_SHAPE;
        if (e.st != CVAE_OK) {
            e.bad_file = k;
            return e;
        }
    }
    for (k = 0; k < count; k++)
        for (i = 0; i < hd[k].raster; i++)
            if (files[k].p[hd[k].raster_at + i] > hd[k].maxval) {
                e.st = CVAE_ERR_FORMAT;
                e.bad_file = k;
                return e;
            }
    return e;
}

/* Pixel j (channel-planar) of image k, 0..255, as the loader must store it. */
static unsigned pnm_pixel(const file *files, const pnm *hd, int k, size_t j)
{
    size_t plane = hd[k].width * hd[k].height;
    size_t c = j / plane, i = j % plane;
    unsigned v = files[k].p[hd[k].raster_at + i * (size_t)hd[k].channels + c];
    unsigned long m = hd[k].maxval;
    return (unsigned)((2ul * v * 255ul + m) / (2ul * m)); /* round(v * 255 / m), half up */
}

/* ------------------------------------------------------------- checks */

/* Exercises a loaded dataset; its count, shape and first images were
 * checked by the caller. */
static void exercise(cvae_dataset *ds, int count, size_t image, int has_labels, uint64_t seed)
{
    int n = count < MAX_BATCH ? count : MAX_BATCH;
    float *batch = malloc((size_t)n * image * sizeof *batch);
    cvae_dataset *train = NULL, *val = NULL;
    FUZZ_CHECK(batch != NULL);
    FUZZ_CHECK(cvae_dataset_shuffle(ds, seed) == CVAE_OK);
    FUZZ_CHECK(cvae_dataset_batch(ds, count - n, n, batch, NULL) == CVAE_OK);
    FUZZ_CHECK(cvae_dataset_batch(ds, count - n + 1, n, batch, NULL) == CVAE_ERR_INVALID_ARG);
    FUZZ_CHECK(cvae_dataset_unshuffle(ds) == CVAE_OK);
    free(batch);
    if (count >= 2) {
        FUZZ_CHECK(cvae_dataset_split(ds, 1, 7, &train, &val) == CVAE_OK);
        FUZZ_CHECK(cvae_dataset_count(train) == count - 1 && cvae_dataset_count(val) == 1);
        FUZZ_CHECK(cvae_dataset_has_labels(train) == has_labels);
        FUZZ_CHECK(cvae_dataset_has_labels(val) == has_labels);
        cvae_dataset_destroy(train);
        cvae_dataset_destroy(val);
    }
}

static void check_cifar(cvae_dataset *ds, const file *files, int count, uint64_t seed)
{
    size_t records = 0, j;
    int k, n, i, c = 0, h = 0, w = 0;
    int labels[MAX_BATCH];
    float *batch;
    for (k = 0; k < count; k++)
        records += files[k].n / CIFAR_RECORD;
    FUZZ_CHECK(records >= 1 && cvae_dataset_count(ds) == (int)records);
    FUZZ_CHECK(cvae_dataset_shape(ds, &c, &h, &w) == CVAE_OK && c == 3 && h == 32 && w == 32);
    FUZZ_CHECK(cvae_dataset_has_labels(ds) == 1);
    n = records < MAX_BATCH ? (int)records : MAX_BATCH;
    batch = malloc((size_t)n * CIFAR_PIXELS * sizeof *batch);
    FUZZ_CHECK(batch != NULL);
    FUZZ_CHECK(cvae_dataset_batch(ds, 0, n, batch, labels) == CVAE_OK);
    for (i = 0; i < n; i++) {
        const uint8_t *rec = cifar_record(files, (size_t)i);
        const float *img = batch + (size_t)i * CIFAR_PIXELS;
        FUZZ_CHECK(labels[i] == rec[0] && labels[i] >= 0 && labels[i] <= 9);
        for (j = 0; j < CIFAR_PIXELS; j++) {
            FUZZ_CHECK(img[j] >= 0.0f && img[j] <= 1.0f);
            FUZZ_CHECK(img[j] == (float)rec[1 + j] / 255.0f);
        }
    }
    free(batch);
    exercise(ds, (int)records, CIFAR_PIXELS, 1, seed);
}

static void check_pnm(cvae_dataset *ds, const file *files, int count, const pnm *hd,
                      uint64_t seed)
{
    size_t image = hd[0].raster, j;
    int n = count < MAX_BATCH ? count : MAX_BATCH, i, c = 0, h = 0, w = 0;
    int labels[MAX_BATCH];
    float *batch;
    FUZZ_CHECK(cvae_dataset_count(ds) == count);
    FUZZ_CHECK(cvae_dataset_shape(ds, &c, &h, &w) == CVAE_OK);
    FUZZ_CHECK(c == hd[0].channels && (unsigned long)h == hd[0].height &&
               (unsigned long)w == hd[0].width);
    FUZZ_CHECK(cvae_dataset_has_labels(ds) == 0);
    batch = malloc((size_t)n * image * sizeof *batch);
    FUZZ_CHECK(batch != NULL);
    FUZZ_CHECK(cvae_dataset_batch(ds, 0, n, batch, labels) == CVAE_OK);
    for (i = 0; i < n; i++) {
        const float *img = batch + (size_t)i * image;
        FUZZ_CHECK(labels[i] == -1);
        for (j = 0; j < image; j++) {
            FUZZ_CHECK(img[j] >= 0.0f && img[j] <= 1.0f);
            FUZZ_CHECK(img[j] == (float)pnm_pixel(files, hd, i, j) / 255.0f);
        }
    }
    free(batch);
    exercise(ds, count, image, 0, seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *paths[MAX_FILES];
    static const uint8_t before[4] = {0, 64, 128, 255};
    static const char *const names[MAX_FILES] = {"file0", "file1", "file2", "file3"};
    unsigned sel = size ? data[0] : 0;
    int is_pnm = sel & 1, count = (int)((sel >> 1) & 3) + 1, k, c, h, w, label;
    file files[MAX_FILES];
    pnm hd[MAX_FILES];
    expect e;
    cvae_dataset *ds = NULL;
    cvae_status st;
    const char *msg;
    float px[4];

    if (!paths[0])
        for (k = 0; k < MAX_FILES; k++)
            paths[k] = fuzz_temp_path("image", names[k]);
    split_files(size ? data + 1 : data, size ? size - 1 : 0, count, files);
    for (k = 0; k < count; k++)
        fuzz_write_file(paths[k], files[k].p, files[k].n);
    e = is_pnm ? pnm_expect(files, count, hd) : cifar_expect(files, count);

    FUZZ_CHECK(cvae_dataset_create(&ds) == CVAE_OK);
    /* Some previous content, which a failed load must leave alone. */
    FUZZ_CHECK(cvae_dataset_set_u8(ds, 1, 1, 2, 2, before, NULL) == CVAE_OK);

    st = is_pnm ? cvae_dataset_load_pnm(ds, paths, count)
                : cvae_dataset_load_cifar10(ds, paths, count);
    msg = cvae_dataset_last_error(ds);
    if (fuzz_verbose()) {
        fprintf(stderr, "load_%s(%d file%s:", is_pnm ? "pnm" : "cifar10", count,
                count == 1 ? "" : "s");
        for (k = 0; k < count; k++)
            fprintf(stderr, " %zu", files[k].n);
        fprintf(stderr, " bytes): %s: %s (expected %s", cvae_status_string(st), msg,
                cvae_status_string(e.st));
        if (e.bad_file >= 0)
            fprintf(stderr, " from file %d", e.bad_file);
        fprintf(stderr, ")\n");
    }
    FUZZ_CHECK(st == e.st);
    if (st == CVAE_OK) {
        FUZZ_CHECK(msg[0] == '\0');
        if (is_pnm)
            check_pnm(ds, files, count, hd, (uint64_t)size);
        else
            check_cifar(ds, files, count, (uint64_t)size);
    } else {
        FUZZ_CHECK(msg[0] != '\0');
        FUZZ_CHECK(strstr(msg, paths[e.bad_file]) != NULL);
        FUZZ_CHECK(cvae_dataset_count(ds) == 1 && !cvae_dataset_has_labels(ds));
        FUZZ_CHECK(cvae_dataset_shape(ds, &c, &h, &w) == CVAE_OK && c == 1 && h == 2 && w == 2);
        FUZZ_CHECK(cvae_dataset_batch(ds, 0, 1, px, &label) == CVAE_OK && label == -1);
        for (k = 0; k < 4; k++)
            FUZZ_CHECK(px[k] == (float)before[k] / 255.0f);
    }
    cvae_dataset_destroy(ds);
    return 0;
}
