#define _POSIX_C_SOURCE 200809L
/*
 * test_loaders.c - the CIFAR-10 binary and netpbm (P5/P6) loaders against
 * files written byte by byte into a temporary directory: exact pixels at
 * their channel-planar places, labels, file order, maxval scaling, header
 * whitespace and comments; every malformed file with its exact status and a
 * message naming the file; the previous content kept after each failure;
 * the promise that files are checked before anything is allocated (through
 * a counting allocator), failed allocations, and size limits reached with
 * sparse files. A last test paints a few shapes itself and checks that both
 * loaders read the same pictures alike. Self-contained: the generator
 * tests/make_shapes.c is not run here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cvae.h"
#include "testutil.h"

#define CIFAR_PIXELS 3072
#define CIFAR_RECORD 3073
#define CIFAR_PLANE 1024

typedef cvae_status (*loader_fn)(cvae_dataset *ds, const char *const *paths, int count);

/* ------------------------------------------------------------- fixture */

/* An allocator that counts the dataset's allocations and the blocks still
 * live, and refuses every allocation from number `budget` on (budget < 0:
 * none refused). */
typedef struct counting {
    long allocs;
    long live;
    long budget;
} counting;

static void *counting_alloc(void *user, size_t size)
{
    counting *c = user;
    if (c->budget >= 0 && c->allocs >= c->budget)
        return NULL;
    c->allocs++;
    c->live++;
    return malloc(size);
}

static void counting_free(void *user, void *ptr)
{
    counting *c = user;
    c->live--;
    free(ptr);
}

#define MAX_PATHS 24
#define PATH_LEN 160

/* A temporary directory, the files written into it (removed at teardown),
 * and a dataset with a counting allocator holding the "previous content"
 * every failed load must keep. */
typedef struct fixture {
    char dir[64];
    char path[MAX_PATHS][PATH_LEN];
    int npaths;
    counting count;
    cvae_allocator allocator;
    cvae_dataset *ds;
} fixture;

/* Previous content: 2 images of 1x2x3 with labels 42 and 43 (set_u8 allows
 * any byte as a label, so no loader could produce them by chance). */
static const uint8_t prev_pixels[12] = {100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111};
static const uint8_t prev_labels[2] = {42, 43};

static int teardown(void **state)
{
    fixture *fx = *state;
    if (!fx)
        return 0;
    if (fx->dir[0])
        tu_tmpdir_remove(fx->dir);
    cvae_dataset_destroy(fx->ds);
    free(fx);
    return 0;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (!fx)
        return -1;
    fx->count.budget = -1;
    fx->allocator.alloc_fn = counting_alloc;
    fx->allocator.free_fn = counting_free;
    fx->allocator.user = &fx->count;
    if (tu_tmpdir_make(fx->dir, sizeof fx->dir, "test_loaders") != 0 ||
        cvae_dataset_create_with(&fx->ds, &fx->allocator) != CVAE_OK ||
        cvae_dataset_set_u8(fx->ds, 2, 1, 2, 3, prev_pixels, prev_labels) != CVAE_OK) {
        teardown(state);
        return -1;
    }
    return 0;
}

/* A path in the temporary directory, removed at teardown. */
static const char *fx_path(fixture *fx, const char *name)
{
    char tmp[PATH_LEN], *p;
    assert_true(fx->npaths < MAX_PATHS);
    assert_true(snprintf(tmp, sizeof tmp, "%s/%s", fx->dir, name) < PATH_LEN);
    p = fx->path[fx->npaths++];
    memcpy(p, tmp, sizeof tmp);
    return p;
}

/* Writes head (hn bytes) then body (bn bytes) as a new file. */
static const char *write_file2(fixture *fx, const char *name, const void *head, size_t hn,
                               const void *body, size_t bn)
{
    const char *p = fx_path(fx, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (hn)
        assert_int_equal(fwrite(head, 1, hn, f), hn);
    if (bn)
        assert_int_equal(fwrite(body, 1, bn, f), bn);
    assert_int_equal(fclose(f), 0);
    return p;
}

static const char *write_file(fixture *fx, const char *name, const void *data, size_t n)
{
    return write_file2(fx, name, data, n, NULL, 0);
}

/* A sparse file of `size` zero bytes after `head`: the size limits can be
 * reached without the disk space. Returns NULL where the file system cannot
 * hold such a file. */
static const char *write_sparse(fixture *fx, const char *name, const char *head,
                                unsigned long long size)
{
    const char *p = write_file(fx, name, head, strlen(head));
    if (truncate(p, (off_t)size) != 0)
        return NULL;
    return p;
}

/* ------------------------------------------------------------ checkers */

/* The dataset still holds the previous content, in stored order. */
static void expect_previous(cvae_dataset *ds)
{
    float img[12];
    int lab[2], c = 0, h = 0, w = 0, i;
    assert_int_equal(cvae_dataset_count(ds), 2);
    assert_int_equal(cvae_dataset_shape(ds, &c, &h, &w), CVAE_OK);
    assert_int_equal(c, 1);
    assert_int_equal(h, 2);
    assert_int_equal(w, 3);
    assert_int_equal(cvae_dataset_has_labels(ds), 1);
    assert_int_equal(cvae_dataset_batch(ds, 0, 2, img, lab), CVAE_OK);
    for (i = 0; i < 12; i++)
        if (img[i] != (float)prev_pixels[i] / 255.0f)
            fail_msg("previous pixel %d is %g, was %d/255", i, (double)img[i], prev_pixels[i]);
    assert_int_equal(lab[0], 42);
    assert_int_equal(lab[1], 43);
}

/* The message contains needle (unless NULL). */
static void expect_message(cvae_dataset *ds, const char *needle)
{
    const char *msg = cvae_dataset_last_error(ds);
    if (needle && !strstr(msg, needle))
        fail_msg("message \"%s\" does not contain \"%s\"", msg, needle);
}

/* load(paths, n) fails with status and a message containing names (the
 * offending file) and needle (both may be NULL), and the old content stays. */
static void expect_fails(fixture *fx, loader_fn load, const char *const *paths, int n,
                         cvae_status status, const char *names, const char *needle)
{
    cvae_status st = load(fx->ds, paths, n);
    if (st != status)
        fail_msg("%s: expected %s, got %s: %s", names ? names : "(no file)",
                 cvae_status_string(status), cvae_status_string(st),
                 cvae_dataset_last_error(fx->ds));
    expect_message(fx->ds, names);
    expect_message(fx->ds, needle);
    expect_previous(fx->ds);
}

/* As expect_fails for one file. */
static void expect_fails1(fixture *fx, loader_fn load, const char *path, cvae_status status,
                          const char *needle)
{
    expect_fails(fx, load, &path, 1, status, path, needle);
}

/* As expect_fails, and the loader allocated nothing: the promise that every
 * file is checked before anything is allocated. */
static void expect_fails_unallocated(fixture *fx, loader_fn load, const char *const *paths, int n,
                                     cvae_status status, const char *names, const char *needle)
{
    fx->count.allocs = 0;
    expect_fails(fx, load, paths, n, status, names, needle);
    if (fx->count.allocs != 0)
        fail_msg("%ld allocations before the failure was found (%s)", fx->count.allocs,
                 cvae_dataset_last_error(fx->ds));
}

/* As expect_fails, for a file that cannot be opened: the message's hint
 * (whether a ".gz" of the path exists) may allocate the name it tries, as
 * the IDX loader's does, but nothing may stay allocated. */
static void expect_fails_freed(fixture *fx, loader_fn load, const char *const *paths, int n,
                               cvae_status status, const char *names, const char *needle)
{
    long live = fx->count.live;
    expect_fails(fx, load, paths, n, status, names, needle);
    if (fx->count.live != live)
        fail_msg("%ld blocks more after the failure (%s)", fx->count.live - live,
                 cvae_dataset_last_error(fx->ds));
}

static void expect_shape(cvae_dataset *ds, int count, int channels, int height, int width)
{
    int c = 0, h = 0, w = 0;
    assert_int_equal(cvae_dataset_count(ds), count);
    TU_CHECK_DATASET(cvae_dataset_shape(ds, &c, &h, &w), ds);
    assert_int_equal(c, channels);
    assert_int_equal(h, height);
    assert_int_equal(w, width);
}

/* n floats from the dataset equal bytes[i] / 255 exactly. */
static void expect_pixels(const float *got, const uint8_t *bytes, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (got[i] != (float)bytes[i] / 255.0f)
            fail_msg("value %zu: %.9g, expected %d/255", i, (double)got[i], bytes[i]);
}

/* --------------------------------------------------------- CIFAR-10 files */

/* Room for the records a test writes (at most 8, or 4 of CIFAR-100's). */
static uint8_t cifar_buf[8 * CIFAR_RECORD];
static float cifar_out[8 * CIFAR_PIXELS];

/* Record `id`: its label, and pixel bytes that differ between channels,
 * positions and records. */
static void cifar_record(uint8_t *rec, int label, int id)
{
    int c, p;
    rec[0] = (uint8_t)label;
    for (c = 0; c < 3; c++)
        for (p = 0; p < CIFAR_PLANE; p++)
            rec[1 + c * CIFAR_PLANE + p] = (uint8_t)((id * 29 + c * 85 + p * 7 + 1) % 256);
}

/* Records first .. first + n - 1 (label (id * 7) % 10) into cifar_buf. */
static void cifar_records(int first, int n)
{
    int i;
    assert_true(n <= 8);
    for (i = 0; i < n; i++)
        cifar_record(cifar_buf + (size_t)i * CIFAR_RECORD, ((first + i) * 7) % 10, first + i);
}

static const char *write_cifar(fixture *fx, const char *name, int first, int n)
{
    cifar_records(first, n);
    return write_file(fx, name, cifar_buf, (size_t)n * CIFAR_RECORD);
}

/* The dataset holds records first .. first + n - 1 as cifar_records makes them. */
static void expect_cifar_records(cvae_dataset *ds, int first, int n)
{
    int labels[8], i;
    assert_true(n <= 8);
    TU_CHECK_DATASET(cvae_dataset_batch(ds, 0, n, cifar_out, labels), ds);
    cifar_records(first, n);
    for (i = 0; i < n; i++) {
        const uint8_t *rec = cifar_buf + (size_t)i * CIFAR_RECORD;
        assert_int_equal(labels[i], rec[0]);
        expect_pixels(cifar_out + (size_t)i * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
    }
}

/* Fails if a record's pixels land anywhere but C x H x W order (the file's
 * planes are already planar: red plane, green, blue; rows top to bottom),
 * if labels are lost, or if a successful load keeps the old shuffle. */
static void test_cifar_one_file(void **state)
{
    fixture *fx = *state;
    const char *p;
    int labels[3];
    cifar_records(0, 3);
    /* Landmarks in record 0: R, G and B of the top-left pixel, R of the
     * first pixel of row 1, B of the bottom-right pixel. */
    cifar_buf[1 + 0] = 255;
    cifar_buf[1 + CIFAR_PLANE] = 0;
    cifar_buf[1 + 2 * CIFAR_PLANE] = 128;
    cifar_buf[1 + 32] = 200;
    cifar_buf[1 + 2 * CIFAR_PLANE + 31 * 32 + 31] = 17;
    cifar_buf[0] = 0;
    cifar_buf[CIFAR_RECORD] = 9;
    cifar_buf[2 * CIFAR_RECORD] = 4;
    p = write_file(fx, "data_batch_1.bin", cifar_buf, 3 * CIFAR_RECORD);
    TU_CHECK_DATASET(cvae_dataset_shuffle(fx->ds, 5), fx->ds);
    TU_CHECK_DATASET(cvae_dataset_load_cifar10(fx->ds, &p, 1), fx->ds);
    expect_shape(fx->ds, 3, 3, 32, 32);
    assert_int_equal(cvae_dataset_has_labels(fx->ds), 1);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 3, cifar_out, labels), fx->ds);
    assert_int_equal(labels[0], 0);
    assert_int_equal(labels[1], 9);
    assert_int_equal(labels[2], 4);
    assert_true(cifar_out[0] == 1.0f);
    assert_true(cifar_out[CIFAR_PLANE] == 0.0f);
    assert_true(cifar_out[2 * CIFAR_PLANE] == 128.0f / 255.0f);
    assert_true(cifar_out[32] == 200.0f / 255.0f);
    assert_true(cifar_out[2 * CIFAR_PLANE + 31 * 32 + 31] == 17.0f / 255.0f);
    /* Everything else too, record by record. */
    expect_pixels(cifar_out, cifar_buf + 1, CIFAR_PIXELS);
    expect_pixels(cifar_out + CIFAR_PIXELS, cifar_buf + CIFAR_RECORD + 1, CIFAR_PIXELS);
    expect_pixels(cifar_out + 2 * CIFAR_PIXELS, cifar_buf + 2 * CIFAR_RECORD + 1, CIFAR_PIXELS);
}

/* Fails if files are not read one after the other in the order given, if
 * a file is skipped or read twice, or if the count is not their sum. */
static void test_cifar_several_files(void **state)
{
    fixture *fx = *state;
    const char *paths[4];
    paths[0] = write_cifar(fx, "data_batch_1.bin", 0, 2);
    paths[1] = write_cifar(fx, "data_batch_2.bin", 2, 1);
    paths[2] = write_cifar(fx, "data_batch_3.bin", 3, 3);
    TU_CHECK_DATASET(cvae_dataset_load_cifar10(fx->ds, paths, 3), fx->ds);
    expect_shape(fx->ds, 6, 3, 32, 32);
    expect_cifar_records(fx->ds, 0, 6);
    /* Another order, and one file twice. */
    paths[0] = fx->path[2];
    paths[1] = fx->path[1];
    paths[2] = fx->path[1];
    TU_CHECK_DATASET(cvae_dataset_load_cifar10(fx->ds, paths, 3), fx->ds);
    expect_shape(fx->ds, 5, 3, 32, 32);
    expect_cifar_records(fx->ds, 3, 3);
    {
        int labels[2];
        TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 3, 2, cifar_out, labels), fx->ds);
        cifar_records(2, 1);
        expect_pixels(cifar_out, cifar_buf + 1, CIFAR_PIXELS);
        expect_pixels(cifar_out + CIFAR_PIXELS, cifar_buf + 1, CIFAR_PIXELS);
        assert_int_equal(labels[0], cifar_buf[0]);
        assert_int_equal(labels[1], cifar_buf[0]);
    }
}

/* Fails if a file whose length is not a whole number of records is read
 * (too short for one, one byte over, one byte under), or if a bad second
 * file is found only after allocating. */
static void test_cifar_partial_record(void **state)
{
    fixture *fx = *state;
    const char *paths[2], *p;
    cifar_records(0, 3);
    p = write_file(fx, "short", cifar_buf, CIFAR_PIXELS);
    expect_fails1(fx, cvae_dataset_load_cifar10, p, CVAE_ERR_FORMAT, NULL);
    p = write_file(fx, "over", cifar_buf, 2 * CIFAR_RECORD + 1);
    expect_fails1(fx, cvae_dataset_load_cifar10, p, CVAE_ERR_FORMAT, NULL);
    p = write_file(fx, "under", cifar_buf, 3 * CIFAR_RECORD - 1);
    expect_fails1(fx, cvae_dataset_load_cifar10, p, CVAE_ERR_FORMAT, NULL);
    paths[0] = write_cifar(fx, "good", 0, 2);
    paths[1] = p;
    expect_fails_unallocated(fx, cvae_dataset_load_cifar10, paths, 2, CVAE_ERR_FORMAT, p, NULL);
}

/* Fails if an empty file counts as zero records instead of FORMAT, alone or
 * after a good file. */
static void test_cifar_empty_file(void **state)
{
    fixture *fx = *state;
    const char *paths[2], *empty = write_file(fx, "empty", NULL, 0);
    expect_fails1(fx, cvae_dataset_load_cifar10, empty, CVAE_ERR_FORMAT, NULL);
    paths[0] = write_cifar(fx, "good", 0, 1);
    paths[1] = empty;
    expect_fails_unallocated(fx, cvae_dataset_load_cifar10, paths, 2, CVAE_ERR_FORMAT, empty, NULL);
}

/* Fails if a label above 9 passes (in the last record, the first, or only
 * in the second file), or the message does not name the file and record. */
static void test_cifar_bad_label(void **state)
{
    fixture *fx = *state;
    const char *paths[2], *ten, *big;
    cifar_records(0, 3);
    cifar_buf[2 * CIFAR_RECORD] = 10;
    ten = write_file(fx, "ten", cifar_buf, 3 * CIFAR_RECORD);
    expect_fails1(fx, cvae_dataset_load_cifar10, ten, CVAE_ERR_FORMAT, "record");
    cifar_records(0, 3);
    cifar_buf[0] = 255;
    big = write_file(fx, "big", cifar_buf, 3 * CIFAR_RECORD);
    expect_fails1(fx, cvae_dataset_load_cifar10, big, CVAE_ERR_FORMAT, "record");
    paths[0] = write_cifar(fx, "good", 0, 2);
    paths[1] = ten;
    expect_fails(fx, cvae_dataset_load_cifar10, paths, 2, CVAE_ERR_FORMAT, ten, "record");
}

/* Fails if CIFAR-100's layout (2 label bytes + 3072 pixels) is read as
 * CIFAR-10 or refused without saying what it is. One record of 3074 bytes
 * and four (12296 bytes, whose remainder by 3073 is 4). */
static void test_cifar100_layout(void **state)
{
    fixture *fx = *state;
    const char *paths[2], *one, *four;
    memset(cifar_buf, 7, 4 * 3074);
    one = write_file(fx, "train100_1", cifar_buf, 3074);
    expect_fails1(fx, cvae_dataset_load_cifar10, one, CVAE_ERR_FORMAT, "CIFAR-100");
    four = write_file(fx, "train100_4", cifar_buf, 4 * 3074);
    expect_fails1(fx, cvae_dataset_load_cifar10, four, CVAE_ERR_FORMAT, "CIFAR-100");
    paths[0] = write_cifar(fx, "good", 0, 1);
    paths[1] = four;
    expect_fails_unallocated(fx, cvae_dataset_load_cifar10, paths, 2, CVAE_ERR_FORMAT, four,
                             "CIFAR-100");
}

/* Fails if a missing file or a directory is not IO naming it (and, when
 * missing, the system's reason), alone or after a good file, or if a bad
 * second file is found only after allocating (or leaves a block behind). */
static void test_cifar_missing_and_directory(void **state)
{
    fixture *fx = *state;
    const char *paths[2], *missing = fx_path(fx, "missing.bin"), *dir = fx_path(fx, "subdir");
    assert_int_equal(mkdir(dir, 0700), 0);
    expect_fails1(fx, cvae_dataset_load_cifar10, missing, CVAE_ERR_IO, strerror(ENOENT));
    expect_fails1(fx, cvae_dataset_load_cifar10, dir, CVAE_ERR_IO, NULL);
    paths[0] = write_cifar(fx, "good", 0, 1);
    paths[1] = missing;
    expect_fails_freed(fx, cvae_dataset_load_cifar10, paths, 2, CVAE_ERR_IO, missing,
                       strerror(ENOENT));
    fx->count.budget = 0; /* no memory for the message's hint: still IO */
    expect_fails1(fx, cvae_dataset_load_cifar10, missing, CVAE_ERR_IO, strerror(ENOENT));
    fx->count.budget = -1;
    paths[1] = dir;
    expect_fails_unallocated(fx, cvae_dataset_load_cifar10, paths, 2, CVAE_ERR_IO, dir, NULL);
}

/* Fails if a NULL handle, path array or path, or a count below 1 is not
 * INVALID_ARG, or changes the content. */
static void test_cifar_bad_args(void **state)
{
    fixture *fx = *state;
    const char *paths[2];
    paths[0] = write_cifar(fx, "good", 0, 1);
    paths[1] = NULL;
    assert_int_equal(cvae_dataset_load_cifar10(NULL, paths, 1), CVAE_ERR_INVALID_ARG);
    expect_fails(fx, cvae_dataset_load_cifar10, NULL, 1, CVAE_ERR_INVALID_ARG, NULL, NULL);
    expect_fails(fx, cvae_dataset_load_cifar10, paths, 0, CVAE_ERR_INVALID_ARG, NULL, NULL);
    expect_fails(fx, cvae_dataset_load_cifar10, paths, -1, CVAE_ERR_INVALID_ARG, NULL, NULL);
    expect_fails(fx, cvae_dataset_load_cifar10, paths, 2, CVAE_ERR_INVALID_ARG, NULL, NULL);
}

/* Fails if more than INT_MAX images are counted in an int that wraps, or
 * allocated: a sparse file of 2^28 zero records (label 0, valid) named 8
 * times holds 2^31 images, and one of 2^31 records on its own. */
static void test_cifar_too_many_images(void **state)
{
    fixture *fx = *state;
    const char *paths[8], *p;
    int i;
    p = write_sparse(fx, "huge", "", (unsigned long long)CIFAR_RECORD << 28);
    if (!p)
        skip();
    for (i = 0; i < 8; i++)
        paths[i] = p;
    expect_fails_unallocated(fx, cvae_dataset_load_cifar10, paths, 8, CVAE_ERR_TOO_LARGE, NULL,
                             NULL);
    p = write_sparse(fx, "huger", "", (unsigned long long)CIFAR_RECORD << 31);
    if (p)
        expect_fails_unallocated(fx, cvae_dataset_load_cifar10, &p, 1, CVAE_ERR_TOO_LARGE, p, NULL);
}

/* Fails if a refused allocation is not NOMEM with the content kept, at
 * every allocation the load makes, or if the load never succeeds. */
static void test_cifar_nomem(void **state)
{
    fixture *fx = *state;
    const char *paths[2];
    long extra;
    paths[0] = write_cifar(fx, "a", 0, 2);
    paths[1] = write_cifar(fx, "b", 2, 1);
    for (extra = 0; extra < 16; extra++) {
        cvae_status st;
        fx->count.allocs = 0;
        fx->count.budget = extra;
        st = cvae_dataset_load_cifar10(fx->ds, paths, 2);
        fx->count.budget = -1;
        if (st == CVAE_OK)
            break;
        if (st != CVAE_ERR_NOMEM)
            fail_msg("allocation %ld refused: %s: %s", extra, cvae_status_string(st),
                     cvae_dataset_last_error(fx->ds));
        expect_previous(fx->ds);
    }
    assert_true(extra > 0); /* the content needs memory */
    assert_true(extra < 16);
    expect_shape(fx->ds, 3, 3, 32, 32);
    expect_cifar_records(fx->ds, 0, 3);
}

/* ----------------------------------------------------------- netpbm files */

static const char *write_pnm(fixture *fx, const char *name, const char *header, const void *raster,
                             size_t n)
{
    return write_file2(fx, name, header, strlen(header), raster, n);
}

/* A grey image of 4 wide x 3 high, 0 and 255 included. */
static void grey_4x3(uint8_t *px)
{
    int i;
    for (i = 0; i < 12; i++)
        px[i] = (uint8_t)(i * 20 + 5);
    px[0] = 0;
    px[11] = 255;
}

/* Fails if P5 files are not 1 x height x width (a 4 wide, 3 high image is
 * not 1x4x3), pixels not byte / 255 in file order, files not in the order
 * given, labels made up, or a shuffle kept across the load. */
static void test_pnm_p5(void **state)
{
    fixture *fx = *state;
    uint8_t a[12], b[12];
    float out[24];
    int labels[2], i;
    const char *paths[2];
    grey_4x3(a);
    for (i = 0; i < 12; i++)
        b[i] = (uint8_t)(250 - i);
    paths[0] = write_pnm(fx, "a.pgm", "P5\n4 3\n255\n", a, 12);
    paths[1] = write_pnm(fx, "b.pgm", "P5\n# c\n 4  3\n255\n", b, 12);
    TU_CHECK_DATASET(cvae_dataset_shuffle(fx->ds, 5), fx->ds);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, paths, 2), fx->ds);
    expect_shape(fx->ds, 2, 1, 3, 4);
    assert_int_equal(cvae_dataset_has_labels(fx->ds), 0);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 2, out, labels), fx->ds);
    assert_int_equal(labels[0], -1);
    assert_int_equal(labels[1], -1);
    expect_pixels(out, a, 12);
    expect_pixels(out + 12, b, 12);
    /* Reversed order; and a single file. */
    paths[0] = fx->path[1];
    paths[1] = fx->path[0];
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, paths, 2), fx->ds);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 2, out, NULL), fx->ds);
    expect_pixels(out, b, 12);
    expect_pixels(out + 12, a, 12);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, paths, 1), fx->ds);
    expect_shape(fx->ds, 1, 1, 3, 4);
}

/* Fails if P6's interleaved RGB is not turned into planes: red plane,
 * green plane, blue plane, each row-major. A 3 wide x 2 high image whose
 * pixel k (row-major) is (10 + k, 100 + k, 200 + k). */
static void test_pnm_p6_channel_order(void **state)
{
    fixture *fx = *state;
    uint8_t rgb[18], planar[18];
    float out[18];
    const char *p;
    int k, c;
    for (k = 0; k < 6; k++)
        for (c = 0; c < 3; c++) {
            rgb[3 * k + c] = (uint8_t)(10 + 90 * c + 10 * (c == 2) + k);
            planar[6 * c + k] = rgb[3 * k + c];
        }
    assert_int_equal(rgb[0], 10);
    assert_int_equal(rgb[1], 100);
    assert_int_equal(rgb[2], 200);
    p = write_pnm(fx, "rgb.ppm", "P6\n3 2\n255\n", rgb, sizeof rgb);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, &p, 1), fx->ds);
    expect_shape(fx->ds, 1, 3, 2, 3);
    assert_int_equal(cvae_dataset_has_labels(fx->ds), 0);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 1, out, NULL), fx->ds);
    assert_true(out[0] == 10.0f / 255.0f);   /* R of (row 0, col 0) */
    assert_true(out[6] == 100.0f / 255.0f);  /* G of (0, 0) */
    assert_true(out[12] == 200.0f / 255.0f); /* B of (0, 0) */
    assert_true(out[5] == 15.0f / 255.0f);   /* R of (1, 2) */
    assert_true(out[3] == 13.0f / 255.0f);   /* R of (1, 0): rows of 3 */
    assert_true(out[17] == 205.0f / 255.0f); /* B of (1, 2) */
    expect_pixels(out, planar, 18);
}

/* Fails if header fields separated by any netpbm whitespace (space, tab,
 * CR, LF, several in a row) or by comments, including one right after the
 * magic and one holding digits, are not read as the same 4x3 image. */
static void test_pnm_header_whitespace_comments(void **state)
{
    static const char *const headers[] = {
        "P5 4 3 255\n",
        "P5\n# c\n 4  3\n255\n",
        "P5\t4\t\t3\r255\t",
        "P5\r\n4 3\r\n255\n",
        "P5\n# width 99 height 99\n4\n#\n3 # maxval next\n# 100\n255\n",
        "P5#comment right after the magic\n4 3\n255 ",
        "P5\n\n\n  4\n\n  3\n\n255\r",
    };
    fixture *fx = *state;
    uint8_t px[12];
    float out[12];
    size_t i;
    grey_4x3(px);
    for (i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char name[16];
        const char *p;
        cvae_status st;
        snprintf(name, sizeof name, "h%zu.pgm", i);
        p = write_pnm(fx, name, headers[i], px, 12);
        st = cvae_dataset_load_pnm(fx->ds, &p, 1);
        if (st != CVAE_OK)
            fail_msg("header %zu refused: %s: %s", i, cvae_status_string(st),
                     cvae_dataset_last_error(fx->ds));
        expect_shape(fx->ds, 1, 1, 3, 4);
        TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 1, out, NULL), fx->ds);
        expect_pixels(out, px, 12);
    }
}

/* Fails if whitespace or '#' at the start of the raster is skipped as if
 * part of the header: exactly one whitespace byte ends the maxval. */
static void test_pnm_raster_starts_with_whitespace(void **state)
{
    fixture *fx = *state;
    const uint8_t px[6] = {'\n', ' ', '#', '\t', '\r', '\n'};
    float out[6];
    const char *p = write_pnm(fx, "ws.pgm", "P5\n3 2\n255\n", px, sizeof px);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, &p, 1), fx->ds);
    expect_shape(fx->ds, 1, 1, 2, 3);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 1, out, NULL), fx->ds);
    expect_pixels(out, px, 6);
}

/* Fails if values under a maxval below 255 are not scaled as
 * round(v * 255 / maxval), for every v of maxvals 1, 2, 3, 7, 100 and 254
 * (2 gives 127.5, which rounds up), grey and RGB. */
static void test_pnm_maxval_scaling(void **state)
{
    static const int maxvals[] = {1, 2, 3, 7, 100, 254};
    fixture *fx = *state;
    uint8_t px[3 * 255], want[3 * 255];
    float out[3 * 255];
    size_t k;
    for (k = 0; k < sizeof maxvals / sizeof maxvals[0]; k++) {
        int m = maxvals[k], v, c;
        char header[32], name[16];
        const char *p;
        /* Grey: one row holding 0..m. */
        for (v = 0; v <= m; v++) {
            px[v] = (uint8_t)v;
            want[v] = (uint8_t)((2 * v * 255 + m) / (2 * m)); /* round half up */
        }
        snprintf(header, sizeof header, "P5\n%d 1\n%d\n", m + 1, m);
        snprintf(name, sizeof name, "m%d.pgm", m);
        p = write_pnm(fx, name, header, px, (size_t)m + 1);
        TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, &p, 1), fx->ds);
        expect_shape(fx->ds, 1, 1, 1, m + 1);
        TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 1, out, NULL), fx->ds);
        expect_pixels(out, want, (size_t)m + 1);
        /* RGB: pixel v is (v, m - v, v), so the planes are 0..m, m..0, 0..m. */
        for (v = 0; v <= m; v++)
            for (c = 0; c < 3; c++) {
                int val = c == 1 ? m - v : v;
                px[3 * v + c] = (uint8_t)val;
                want[c * (m + 1) + v] = (uint8_t)((2 * val * 255 + m) / (2 * m));
            }
        snprintf(header, sizeof header, "P6\n%d 1\n%d\n", m + 1, m);
        snprintf(name, sizeof name, "m%d.ppm", m);
        p = write_pnm(fx, name, header, px, 3 * ((size_t)m + 1));
        TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, &p, 1), fx->ds);
        expect_shape(fx->ds, 1, 3, 1, m + 1);
        TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 1, out, NULL), fx->ds);
        expect_pixels(out, want, 3 * ((size_t)m + 1));
    }
    assert_int_equal(want[0], 0);
}

/* Fails if any magic but P5 and P6 is accepted: the ASCII P2 and P3 (with
 * valid ASCII rasters), P1, P4 (bitmaps), P7 (PAM), lower case, garbage, a
 * lone "P", or an empty file. */
static void test_pnm_other_magic(void **state)
{
    static const char *const files[] = {
        "P2\n2 1\n255\n0 255\n",
        "P3\n1 1\n255\n1 2 3\n",
        "P1\n2 1\n0 1\n",
        "P4\n8 1\n\xff",
        "P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n\x80",
        "p5\n1 1\n255\n\x80",
        "XX\n1 1\n255\n\x80",
        "P",
        "",
    };
    fixture *fx = *state;
    size_t i;
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        char name[16];
        const char *p;
        snprintf(name, sizeof name, "magic%zu", i);
        p = write_file(fx, name, files[i], strlen(files[i]));
        expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    }
}

/* Fails if a header that breaks netpbm's grammar is accepted: no
 * whitespace between the magic and the width (netpbm requires some; "P54 3"
 * is not a 4x3 P5), a sign, a decimal point or a comma in a number, a
 * letter right after a number, or a negative maxval. Each is followed by a
 * raster of the size its digits suggest. */
static void test_pnm_malformed_header(void **state)
{
    static const char *const headers[] = {
        "P54 3\n255\n",    "P5\n+4 3\n255\n", "P5\n4.0 3\n255\n", "P5\n4,3\n255\n",
        "P5\n4 3x\n255\n", "P5\n4 3\n255x",   "P5\n4 3\n-255\n",
    };
    fixture *fx = *state;
    uint8_t px[12] = {0};
    size_t i;
    for (i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char name[16];
        const char *p;
        snprintf(name, sizeof name, "bad%zu.pgm", i);
        p = write_pnm(fx, name, headers[i], px, sizeof px);
        expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    }
}

/* Fails if maxval 0, 256 or 65535 (16-bit samples, here with a raster of
 * the right 16-bit length) or a missing, negative or non-numeric maxval is
 * accepted. */
static void test_pnm_bad_maxval(void **state)
{
    fixture *fx = *state;
    uint8_t px[24] = {0};
    const char *p;
    p = write_pnm(fx, "m0.pgm", "P5\n4 3\n0\n", px, 12);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "m256.pgm", "P5\n4 3\n256\n", px, 24);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "m65535.pgm", "P5\n4 3\n65535\n", px, 24);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "m65535.ppm", "P6\n2 2\n65535\n", px, 24);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "mneg.pgm", "P5\n4 3\n-1\n", px, 12);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "mabc.pgm", "P5\n4 3\nabc\n", px, 12);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "mnone.pgm", "P5\n4 3\n", px, 12);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
}

/* Fails if a raster one byte short (grey or RGB), an absent raster, or a
 * header cut anywhere is accepted. */
static void test_pnm_truncated(void **state)
{
    static const char *const cut[] = {"P5",
                                      "P5\n",
                                      "P5\n4",
                                      "P5\n4 3",
                                      "P5\n4 3\n255",
                                      "P5\n4 3\n25",
                                      "P5\n# a comment to the end"};
    fixture *fx = *state;
    uint8_t px[36] = {0};
    const char *paths[2], *p;
    size_t i;
    p = write_pnm(fx, "short.pgm", "P5\n4 3\n255\n", px, 11);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "short.ppm", "P6\n4 3\n255\n", px, 35);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "header_only.pgm", "P5\n4 3\n255\n", px, 0);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    for (i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "cut%zu", i);
        p = write_file(fx, name, cut[i], strlen(cut[i]));
        expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    }
    /* A short raster in the second file is named as the second file. */
    paths[0] = write_pnm(fx, "good.pgm", "P5\n4 3\n255\n", px, 12);
    paths[1] = fx->path[0];
    expect_fails(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_FORMAT, paths[1], NULL);
}

/* Fails if bytes after the raster are ignored (one byte, a newline, a
 * second image appended). */
static void test_pnm_trailing_bytes(void **state)
{
    fixture *fx = *state;
    uint8_t px[24];
    const char *p;
    grey_4x3(px);
    grey_4x3(px + 12);
    p = write_pnm(fx, "one.pgm", "P5\n4 3\n255\n", px, 13);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    px[12] = '\n';
    p = write_pnm(fx, "newline.pgm", "P5\n4 3\n255\n", px, 13);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    grey_4x3(px + 12);
    p = write_pnm(fx, "double.pgm", "P5\n4 3\n255\n", px, 24);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
}

/* Fails if a sample above maxval passes: in a grey image, in the blue of an
 * RGB image's last pixel, or in the second file only. */
static void test_pnm_pixel_above_maxval(void **state)
{
    fixture *fx = *state;
    uint8_t px[36] = {0};
    const char *paths[2], *p;
    px[5] = 101;
    p = write_pnm(fx, "grey.pgm", "P5\n4 3\n100\n", px, 12);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    px[5] = 0;
    px[35] = 16;
    p = write_pnm(fx, "rgb.ppm", "P6\n4 3\n15\n", px, 36);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    px[35] = 15;
    paths[0] = write_pnm(fx, "good.ppm", "P6\n4 3\n15\n", px, 36);
    paths[1] = p;
    expect_fails(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_FORMAT, p, NULL);
}

/* Fails if a width or height of 0 is accepted. */
static void test_pnm_zero_sides(void **state)
{
    fixture *fx = *state;
    const char *p;
    p = write_pnm(fx, "w0.pgm", "P5\n0 3\n255\n", NULL, 0);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "h0.ppm", "P6\n4 0\n255\n", NULL, 0);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
    p = write_pnm(fx, "wh0.pgm", "P5\n0 0\n255\n", NULL, 0);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_FORMAT, NULL);
}

/* Fails if a side of 65535 is refused or one of 65536 accepted (each file
 * complete, so the size is its only fault), or if a side too long for any
 * integer type overflows instead of being refused. */
static void test_pnm_side_limits(void **state)
{
    static uint8_t row[65536];
    static float column[65535];
    fixture *fx = *state;
    const char *paths[2], *p;
    cvae_status st;
    memset(row, 0, sizeof row);
    row[65534] = 255;
    p = write_pnm(fx, "w65535.pgm", "P5\n65535 1\n255\n", row, 65535);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, &p, 1), fx->ds);
    expect_shape(fx->ds, 1, 1, 1, 65535);
    p = write_pnm(fx, "h65535.pgm", "P5\n1 65535\n255\n", row, 65535);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, &p, 1), fx->ds);
    expect_shape(fx->ds, 1, 1, 65535, 1);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 1, column, NULL), fx->ds);
    expect_pixels(column, row, 65535); /* 0 ... 0 255: the last row is read too */
    TU_CHECK_DATASET(cvae_dataset_set_u8(fx->ds, 2, 1, 2, 3, prev_pixels, prev_labels), fx->ds);
    p = write_pnm(fx, "w65536.pgm", "P5\n65536 1\n255\n", row, 65536);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_TOO_LARGE, NULL);
    p = write_pnm(fx, "h65536.pgm", "P5\n1 65536\n255\n", row, 65536);
    expect_fails1(fx, cvae_dataset_load_pnm, p, CVAE_ERR_TOO_LARGE, NULL);
    paths[0] = write_pnm(fx, "good.pgm", "P5\n1 1\n255\n", row, 1);
    paths[1] = p;
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_TOO_LARGE, p, NULL);
    /* 2^64 + 1 and a 30-digit number: TOO_LARGE (a side above 65535) or
     * FORMAT (a malformed number) are both honest; wrapping is not. */
    p = write_pnm(fx, "w2p64.pgm", "P5\n18446744073709551617 1\n255\n", row, 1);
    st = cvae_dataset_load_pnm(fx->ds, &p, 1);
    if (st != CVAE_ERR_TOO_LARGE && st != CVAE_ERR_FORMAT)
        fail_msg("width 2^64 + 1: %s: %s", cvae_status_string(st), cvae_dataset_last_error(fx->ds));
    expect_message(fx->ds, p);
    expect_previous(fx->ds);
    p = write_pnm(fx, "h30.pgm", "P5\n1 100000000000000000000000000001\n255\n", row, 1);
    st = cvae_dataset_load_pnm(fx->ds, &p, 1);
    if (st != CVAE_ERR_TOO_LARGE && st != CVAE_ERR_FORMAT)
        fail_msg("height 10^29 + 1: %s: %s", cvae_status_string(st),
                 cvae_dataset_last_error(fx->ds));
    expect_message(fx->ds, p);
    expect_previous(fx->ds);
}

/* Fails if more than 2^32 pixels in all are accepted or allocated: two
 * sparse P5 files of 65535 x 65535 (each just under 2^32 bytes, valid
 * alone) named together. */
static void test_pnm_total_too_large(void **state)
{
    fixture *fx = *state;
    static const char header[] = "P5\n65535 65535\n255\n";
    const char *paths[2];
    paths[0] = write_sparse(fx, "big.pgm", header, sizeof header - 1 + 65535ull * 65535ull);
    if (!paths[0])
        skip();
    paths[1] = paths[0];
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_TOO_LARGE, NULL, NULL);
}

/* Fails if files of another size or kind than the first are mixed in, or
 * the message does not name both files. */
static void test_pnm_shape_mismatch(void **state)
{
    fixture *fx = *state;
    uint8_t px[36] = {0};
    const char *paths[3];
    paths[0] = write_pnm(fx, "a.pgm", "P5\n4 3\n255\n", px, 12);
    paths[1] = write_pnm(fx, "b.pgm", "P5\n3 4\n255\n", px, 12); /* same pixel count */
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_SHAPE, paths[1],
                             paths[0]);
    paths[1] = write_pnm(fx, "c.ppm", "P6\n4 3\n255\n", px, 36);
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_SHAPE, paths[1],
                             paths[0]);
    /* The mismatch in the third file, after a good second one. */
    paths[1] = paths[0];
    paths[2] = write_pnm(fx, "d.pgm", "P5\n4 2\n255\n", px, 8);
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 3, CVAE_ERR_SHAPE, paths[2],
                             paths[0]);
    /* A different maxval is no mismatch: both become 0..255. */
    paths[2] = write_pnm(fx, "e.pgm", "P5\n4 3\n15\n", px, 12);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, paths, 3), fx->ds);
    expect_shape(fx->ds, 3, 1, 3, 4);
}

/* Fails if a missing file or a directory is not IO naming it (and, when
 * missing, the system's reason), alone or after a good file, or if a bad
 * second file is found only after allocating (or leaves a block behind). */
static void test_pnm_missing_and_directory(void **state)
{
    fixture *fx = *state;
    uint8_t px[12] = {0};
    const char *paths[2], *missing = fx_path(fx, "missing.ppm"), *dir = fx_path(fx, "subdir");
    assert_int_equal(mkdir(dir, 0700), 0);
    expect_fails1(fx, cvae_dataset_load_pnm, missing, CVAE_ERR_IO, strerror(ENOENT));
    expect_fails1(fx, cvae_dataset_load_pnm, dir, CVAE_ERR_IO, NULL);
    paths[0] = write_pnm(fx, "good.pgm", "P5\n4 3\n255\n", px, 12);
    paths[1] = missing;
    expect_fails_freed(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_IO, missing, strerror(ENOENT));
    fx->count.budget = 0; /* no memory for the message's hint: still IO */
    expect_fails1(fx, cvae_dataset_load_pnm, missing, CVAE_ERR_IO, strerror(ENOENT));
    fx->count.budget = -1;
    paths[1] = dir;
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_IO, dir, NULL);
    paths[1] = write_pnm(fx, "p2.pgm", "P2\n4 3\n255\n", px, 0);
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_FORMAT, paths[1], NULL);
    paths[1] = write_pnm(fx, "m0.pgm", "P5\n4 3\n0\n", px, 12);
    expect_fails_unallocated(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_FORMAT, paths[1], NULL);
}

/* Fails if a NULL handle, path array or path, or a count below 1 is not
 * INVALID_ARG, or changes the content. */
static void test_pnm_bad_args(void **state)
{
    fixture *fx = *state;
    uint8_t px[12] = {0};
    const char *paths[2];
    paths[0] = write_pnm(fx, "good.pgm", "P5\n4 3\n255\n", px, 12);
    paths[1] = NULL;
    assert_int_equal(cvae_dataset_load_pnm(NULL, paths, 1), CVAE_ERR_INVALID_ARG);
    expect_fails(fx, cvae_dataset_load_pnm, NULL, 1, CVAE_ERR_INVALID_ARG, NULL, NULL);
    expect_fails(fx, cvae_dataset_load_pnm, paths, 0, CVAE_ERR_INVALID_ARG, NULL, NULL);
    expect_fails(fx, cvae_dataset_load_pnm, paths, -1, CVAE_ERR_INVALID_ARG, NULL, NULL);
    expect_fails(fx, cvae_dataset_load_pnm, paths, 2, CVAE_ERR_INVALID_ARG, NULL, NULL);
}

/* Fails if a refused allocation is not NOMEM with the content kept, at
 * every allocation the load makes, or if the load never succeeds. */
static void test_pnm_nomem(void **state)
{
    fixture *fx = *state;
    uint8_t rgb[18];
    float out[36];
    const char *paths[2];
    long extra;
    int k;
    for (k = 0; k < 18; k++)
        rgb[k] = (uint8_t)(k * 13);
    paths[0] = write_pnm(fx, "a.ppm", "P6\n3 2\n255\n", rgb, 18);
    paths[1] = paths[0];
    for (extra = 0; extra < 16; extra++) {
        cvae_status st;
        fx->count.allocs = 0;
        fx->count.budget = extra;
        st = cvae_dataset_load_pnm(fx->ds, paths, 2);
        fx->count.budget = -1;
        if (st == CVAE_OK)
            break;
        if (st != CVAE_ERR_NOMEM)
            fail_msg("allocation %ld refused: %s: %s", extra, cvae_status_string(st),
                     cvae_dataset_last_error(fx->ds));
        expect_previous(fx->ds);
    }
    assert_true(extra > 0);
    assert_true(extra < 16);
    expect_shape(fx->ds, 2, 3, 2, 3);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 2, out, NULL), fx->ds);
    for (k = 0; k < 18; k++) {
        /* interleaved sample k is pixel k / 3, channel k % 3 */
        assert_true(out[(k % 3) * 6 + k / 3] == (float)rgb[k] / 255.0f);
        assert_true(out[18 + (k % 3) * 6 + k / 3] == (float)rgb[k] / 255.0f);
    }
}

/* --------------------------------------------- both loaders, same pictures */

/* Paints image `id` of a tiny shapes set (class id % 3: disk, square, plus,
 * on two of four colours) as a CIFAR-10 record: planar, label first. */
static void paint_shape(uint8_t *rec, int id)
{
    static const uint8_t colours[4][3] = {
        {220, 30, 40}, {40, 170, 60}, {35, 60, 210}, {245, 215, 30}};
    int label = id % 3, fg = id % 4, bg = (id / 4 + fg + 1) % 4, r = 6 + id % 5;
    int cx = 16 + id % 3 - 1, cy = 16 - id % 4 + 1, x, y, c;
    rec[0] = (uint8_t)label;
    for (y = 0; y < 32; y++)
        for (x = 0; x < 32; x++) {
            int dx = x - cx, dy = y - cy, ax = dx < 0 ? -dx : dx, ay = dy < 0 ? -dy : dy;
            int in = label == 0   ? dx * dx + dy * dy <= r * r
                     : label == 1 ? ax <= r && ay <= r
                                  : (ax <= r / 3 && ay <= r) || (ay <= r / 3 && ax <= r);
            for (c = 0; c < 3; c++)
                rec[1 + c * CIFAR_PLANE + y * 32 + x] = colours[in ? fg : bg][c];
        }
}

/* Fails if the CIFAR-10 and PPM loaders disagree about the same pictures
 * (one planar with labels, the other interleaved without), as tools like
 * tests/make_shapes.c write them in both formats: 9 shapes as 9 PPM files
 * and as two CIFAR-10 files of 5 and 4 records. */
static void test_loaders_agree_on_shapes(void **state)
{
    enum { N = 9 };
    static uint8_t records[N * CIFAR_RECORD];
    static float from_ppm[N * CIFAR_PIXELS];
    fixture *fx = *state;
    const char *ppm[N], *bin[2];
    int labels[N], i, k;
    for (i = 0; i < N; i++) {
        uint8_t rgb[CIFAR_PIXELS];
        const uint8_t *planes = records + (size_t)i * CIFAR_RECORD + 1;
        char name[16];
        paint_shape(records + (size_t)i * CIFAR_RECORD, i);
        for (k = 0; k < CIFAR_PIXELS; k++) /* sample k is pixel k / 3, channel k % 3 */
            rgb[k] = planes[(k % 3) * CIFAR_PLANE + k / 3];
        snprintf(name, sizeof name, "%05d.ppm", i);
        ppm[i] = write_pnm(fx, name, "P6\n32 32\n255\n", rgb, sizeof rgb);
    }
    bin[0] = write_file(fx, "shapes_1.bin", records, 5 * CIFAR_RECORD);
    bin[1] = write_file(fx, "shapes_2.bin", records + 5 * CIFAR_RECORD, 4 * CIFAR_RECORD);
    TU_CHECK_DATASET(cvae_dataset_load_pnm(fx->ds, ppm, N), fx->ds);
    expect_shape(fx->ds, N, 3, 32, 32);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, N, from_ppm, NULL), fx->ds);
    TU_CHECK_DATASET(cvae_dataset_load_cifar10(fx->ds, bin, 2), fx->ds);
    expect_shape(fx->ds, N, 3, 32, 32);
    for (i = 0; i < N; i++) {
        TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, i, 1, cifar_out, labels + i), fx->ds);
        assert_int_equal(labels[i], i % 3);
        assert_memory_equal(cifar_out, from_ppm + (size_t)i * CIFAR_PIXELS,
                            CIFAR_PIXELS * sizeof(float));
        expect_pixels(cifar_out, records + (size_t)i * CIFAR_RECORD + 1, CIFAR_PIXELS);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cifar_one_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_several_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_partial_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_bad_label, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar100_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_missing_and_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_too_many_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_nomem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_p5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_p6_channel_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_header_whitespace_comments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_raster_starts_with_whitespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_maxval_scaling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_other_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_malformed_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_bad_maxval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_trailing_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_pixel_above_maxval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_zero_sides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_side_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_total_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_shape_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_missing_and_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pnm_nomem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loaders_agree_on_shapes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
