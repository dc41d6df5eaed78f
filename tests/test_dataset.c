#define _POSIX_C_SOURCE 200809L
/*
 * test_dataset.c - datasets: IDX files written byte by byte into a temporary
 * directory and loaded back (exact pixels and labels), every malformed file
 * with its exact status and a message naming the file, the previous content
 * kept after each failure, copies made by set_u8, the shuffle checked against
 * an independent xoshiro256** Fisher-Yates written here and for uniformity,
 * batch bounds, and train/validation splits (sizes, disjoint union, stored
 * order, determinism). The real MNIST files are not read here: unit tests
 * stay self-contained.
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
#include "cvae_internal.h"
#include "testutil.h"

/* ------------------------------------------------------------- fixture */

#define MAX_PATHS 16
#define PATH_LEN 160

/* A temporary directory, the files written into it (removed at teardown)
 * and a dataset holding the "previous content" every failed load must keep. */
typedef struct fixture {
    char dir[64];
    char path[MAX_PATHS][PATH_LEN];
    int npaths;
    cvae_dataset *ds;
} fixture;

/* Previous content: 2 images of 1x2x3 with labels 42 and 43 (set_u8 allows
 * any byte as a label). */
static const uint8_t prev_pixels[12] = {100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111};
static const uint8_t prev_labels[2] = {42, 43};

static int teardown(void **state)
{
    fixture *fx = *state;
    if (!fx)
        return 0;
    if (fx->dir[0])
        tu_tmpdir_remove(fx->dir); /* files, and the empty directory of one test */
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
    if (tu_tmpdir_make(fx->dir, sizeof fx->dir, "test_dataset") != 0) {
        teardown(state);
        return -1;
    }
    if (cvae_dataset_create(&fx->ds) != CVAE_OK ||
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
    /* Through tmp: gcc's -Wrestrict cannot tell fx->dir from fx->path. */
    assert_true(snprintf(tmp, sizeof tmp, "%s/%s", fx->dir, name) < PATH_LEN);
    p = fx->path[fx->npaths++];
    memcpy(p, tmp, sizeof tmp);
    return p;
}

static const char *write_file(fixture *fx, const char *name, const uint8_t *data, size_t n)
{
    const char *p = fx_path(fx, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* --------------------------------------------------------- IDX builders */

typedef struct buf {
    uint8_t b[1024];
    size_t n;
} buf;

static void put_u32(buf *bf, uint32_t v)
{
    assert_true(bf->n + 4 <= sizeof bf->b);
    bf->b[bf->n++] = (uint8_t)(v >> 24);
    bf->b[bf->n++] = (uint8_t)(v >> 16);
    bf->b[bf->n++] = (uint8_t)(v >> 8);
    bf->b[bf->n++] = (uint8_t)v;
}

static void put_bytes(buf *bf, const uint8_t *p, size_t n)
{
    assert_true(bf->n + n <= sizeof bf->b);
    memcpy(bf->b + bf->n, p, n);
    bf->n += n;
}

/* The valid pair: 5 images of 3x4 (non-square, every pixel different from
 * its neighbours, 0 and 255 included) and labels using 0 and 9. */
#define V_COUNT 5
#define V_ROWS 3
#define V_COLS 4
#define V_PIXELS (V_COUNT * V_ROWS * V_COLS)
static const uint8_t v_labels[V_COUNT] = {7, 0, 9, 3, 5};

static void valid_pixels(uint8_t *px)
{
    int i;
    for (i = 0; i < V_PIXELS; i++)
        px[i] = (uint8_t)((i * 37 + 11) % 256);
    px[0] = 0;
    px[V_PIXELS - 1] = 255;
}

static void images_header(buf *bf, uint32_t count, uint32_t rows, uint32_t cols)
{
    bf->n = 0;
    put_u32(bf, 0x00000803u);
    put_u32(bf, count);
    put_u32(bf, rows);
    put_u32(bf, cols);
}

static const char *write_valid_images(fixture *fx, const char *name)
{
    buf bf;
    uint8_t px[V_PIXELS];
    valid_pixels(px);
    images_header(&bf, V_COUNT, V_ROWS, V_COLS);
    put_bytes(&bf, px, sizeof px);
    return write_file(fx, name, bf.b, bf.n);
}

static const char *write_labels(fixture *fx, const char *name, const uint8_t *labels,
                                uint32_t count)
{
    buf bf = {{0}, 0};
    put_u32(&bf, 0x00000801u);
    put_u32(&bf, count);
    put_bytes(&bf, labels, count);
    return write_file(fx, name, bf.b, bf.n);
}

/* ------------------------------------------------------------ checkers */

/* The pixel value an image of 1x1x1 (or its first pixel) was made from. */
static int pixel_id(float f) { return (int)(f * 255.0f + 0.5f); }

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

/* Loading fails with status, a message naming `names` (the offending file)
 * and containing `needle` (unless NULL), and the old content stays. */
static void expect_load_fails(fixture *fx, const char *images, const char *labels,
                              cvae_status status, const char *names, const char *needle)
{
    cvae_status st = cvae_dataset_load_idx(fx->ds, images, labels);
    const char *msg = cvae_dataset_last_error(fx->ds);
    if (st != status)
        fail_msg("expected %s, got %s: %s", cvae_status_string(status), cvae_status_string(st),
                 msg);
    if (!strstr(msg, names))
        fail_msg("message \"%s\" does not name %s", msg, names);
    if (needle && !strstr(msg, needle))
        fail_msg("message \"%s\" does not contain \"%s\"", msg, needle);
    expect_previous(fx->ds);
}

/* A dataset of n 1x1x1 images whose pixel is the image's index (n <= 256)
 * and whose label is index % 10. */
static cvae_dataset *indexed_dataset(int n)
{
    uint8_t px[256], lab[256];
    cvae_dataset *ds = NULL;
    int i;
    assert_true(n <= 256);
    for (i = 0; i < n; i++) {
        px[i] = (uint8_t)i;
        lab[i] = (uint8_t)(i % 10);
    }
    assert_int_equal(cvae_dataset_create(&ds), CVAE_OK);
    TU_CHECK_DATASET(cvae_dataset_set_u8(ds, n, 1, 1, 1, px, lab), ds);
    return ds;
}

/* The current order of an indexed dataset (or a subset of one). */
static void read_order(cvae_dataset *ds, int *order)
{
    float f[256];
    int n = cvae_dataset_count(ds), i;
    assert_int_equal(cvae_dataset_batch(ds, 0, n, f, NULL), CVAE_OK);
    for (i = 0; i < n; i++)
        order[i] = pixel_id(f[i]);
}

/* ---------------------------------------------------- the reference shuffle */

/* splitmix64 seeding xoshiro256**, written from the papers' definitions,
 * and the Fisher-Yates shuffle the header documents, with draws below
 * 2^64 mod bound rejected. */
typedef struct ref_rng {
    uint64_t s[4];
} ref_rng;

static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void ref_seed(ref_rng *r, uint64_t seed)
{
    int i;
    for (i = 0; i < 4; i++) {
        uint64_t z;
        seed += 0x9e3779b97f4a7c15u;
        z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        r->s[i] = z ^ (z >> 31);
    }
}

static uint64_t ref_next(ref_rng *r)
{
    uint64_t out = ref_rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = ref_rotl(r->s[3], 45);
    return out;
}

static void ref_shuffle(int *order, int n, uint64_t seed)
{
    ref_rng r;
    int i;
    ref_seed(&r, seed);
    for (i = 0; i < n; i++)
        order[i] = i;
    for (i = n - 1; i >= 1; i--) {
        uint64_t bound = (uint64_t)i + 1;
        uint64_t low = (UINT64_MAX % bound + 1) % bound; /* 2^64 mod bound */
        uint64_t x;
        int j, t;
        do
            x = ref_next(&r);
        while (x < low); /* the 2^64 - low values left are whole blocks of bound */
        j = (int)(x % bound);
        t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* ------------------------------------------------------------ loading */

/* Fails if pixels are altered, reordered or scaled other than by /255, if
 * labels are lost, or if a successful load keeps the old order. */
static void test_load_roundtrip(void **state)
{
    fixture *fx = *state;
    const char *img = write_valid_images(fx, "img");
    const char *lab = write_labels(fx, "lab", v_labels, V_COUNT);
    uint8_t px[V_PIXELS];
    float out[V_PIXELS], part[3 * V_ROWS * V_COLS];
    int labels[V_COUNT], c = 0, h = 0, w = 0, i;
    valid_pixels(px);
    TU_CHECK_DATASET(cvae_dataset_shuffle(fx->ds, 5), fx->ds);
    TU_CHECK_DATASET(cvae_dataset_load_idx(fx->ds, img, lab), fx->ds);
    assert_string_equal(cvae_dataset_last_error(fx->ds), "");
    assert_int_equal(cvae_dataset_count(fx->ds), V_COUNT);
    TU_CHECK_DATASET(cvae_dataset_shape(fx->ds, &c, &h, &w), fx->ds);
    assert_int_equal(c, 1);
    assert_int_equal(h, V_ROWS);
    assert_int_equal(w, V_COLS);
    assert_int_equal(cvae_dataset_has_labels(fx->ds), 1);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, V_COUNT, out, labels), fx->ds);
    for (i = 0; i < V_PIXELS; i++)
        if (out[i] != (float)px[i] / 255.0f)
            fail_msg("pixel %d: %.9g, expected %d/255", i, (double)out[i], px[i]);
    assert_true(out[0] == 0.0f);
    assert_true(out[V_PIXELS - 1] == 1.0f);
    for (i = 0; i < V_COUNT; i++)
        assert_int_equal(labels[i], v_labels[i]);
    /* A window in the middle, labels not asked for. */
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 1, 3, part, NULL), fx->ds);
    assert_memory_equal(part, out + V_ROWS * V_COLS, sizeof part);
}

/* Fails if loading without a label file leaves labels behind or batch does
 * not report -1 for them. */
static void test_load_without_labels(void **state)
{
    fixture *fx = *state;
    const char *img = write_valid_images(fx, "img");
    float out[V_PIXELS];
    int labels[V_COUNT], i;
    TU_CHECK_DATASET(cvae_dataset_load_idx(fx->ds, img, NULL), fx->ds);
    assert_int_equal(cvae_dataset_count(fx->ds), V_COUNT);
    assert_int_equal(cvae_dataset_has_labels(fx->ds), 0);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, V_COUNT, out, labels), fx->ds);
    for (i = 0; i < V_COUNT; i++)
        assert_int_equal(labels[i], -1);
}

/* Fails if a foreign magic is accepted or the message lacks the magic found
 * and the one expected. */
static void test_load_bad_magic(void **state)
{
    fixture *fx = *state;
    buf bf;
    uint8_t px[V_PIXELS];
    const char *p;
    valid_pixels(px);
    images_header(&bf, V_COUNT, V_ROWS, V_COLS);
    put_bytes(&bf, px, sizeof px);
    bf.b[0] = 0x12, bf.b[1] = 0x34, bf.b[2] = 0x56, bf.b[3] = 0x78;
    p = write_file(fx, "magic", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, "0x12345678");
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, "0x00000803");
}

/* Fails if an IDX of another element type (0x0D, float) is read as bytes. */
static void test_load_wrong_type_byte(void **state)
{
    fixture *fx = *state;
    buf bf;
    uint8_t px[V_PIXELS];
    const char *p;
    valid_pixels(px);
    images_header(&bf, V_COUNT, V_ROWS, V_COLS);
    put_bytes(&bf, px, sizeof px);
    bf.b[2] = 0x0D;
    p = write_file(fx, "float", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, "0x00000d03");
}

/* Fails if the dimension count is not checked: a 2-d images file, a 3-d
 * labels file, and an images file passed as labels. */
static void test_load_wrong_dimensions(void **state)
{
    fixture *fx = *state;
    buf bf = {{0}, 0};
    uint8_t px[V_PIXELS];
    const char *img2, *img, *lab3;
    valid_pixels(px);
    put_u32(&bf, 0x00000802u);
    put_u32(&bf, V_COUNT);
    put_u32(&bf, V_ROWS * V_COLS);
    put_bytes(&bf, px, sizeof px);
    img2 = write_file(fx, "img2", bf.b, bf.n);
    expect_load_fails(fx, img2, NULL, CVAE_ERR_FORMAT, img2, "0x00000802");

    img = write_valid_images(fx, "img");
    bf.n = 0;
    put_u32(&bf, 0x00000803u);
    put_u32(&bf, V_COUNT);
    put_u32(&bf, 1);
    put_u32(&bf, 1);
    put_bytes(&bf, v_labels, V_COUNT);
    lab3 = write_file(fx, "lab3", bf.b, bf.n);
    expect_load_fails(fx, img, lab3, CVAE_ERR_FORMAT, lab3, "0x00000801");
    expect_load_fails(fx, img, img, CVAE_ERR_FORMAT, img, "0x00000803");
}

/* Fails if a header cut short (in the magic or in the sizes) is accepted,
 * or reported as anything but FORMAT. */
static void test_load_truncated_header(void **state)
{
    fixture *fx = *state;
    buf bf;
    const char *p3, *p10, *img, *lab4;
    images_header(&bf, V_COUNT, V_ROWS, V_COLS);
    p3 = write_file(fx, "three", bf.b, 3);
    expect_load_fails(fx, p3, NULL, CVAE_ERR_FORMAT, p3, "truncated");
    p10 = write_file(fx, "ten", bf.b, 10);
    expect_load_fails(fx, p10, NULL, CVAE_ERR_FORMAT, p10, "truncated");
    img = write_valid_images(fx, "img");
    bf.n = 0;
    put_u32(&bf, 0x00000801u);
    lab4 = write_file(fx, "lab4", bf.b, bf.n);
    expect_load_fails(fx, img, lab4, CVAE_ERR_FORMAT, lab4, "truncated");
}

/* Fails if data one byte short is accepted (images or labels). */
static void test_load_truncated_data(void **state)
{
    fixture *fx = *state;
    buf bf;
    uint8_t px[V_PIXELS];
    const char *p, *img, *lab;
    valid_pixels(px);
    images_header(&bf, V_COUNT, V_ROWS, V_COLS);
    put_bytes(&bf, px, sizeof px - 1);
    p = write_file(fx, "short", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, "truncated");
    img = write_valid_images(fx, "img");
    bf.n = 0;
    put_u32(&bf, 0x00000801u);
    put_u32(&bf, V_COUNT);
    put_bytes(&bf, v_labels, V_COUNT - 1);
    lab = write_file(fx, "lab", bf.b, bf.n);
    expect_load_fails(fx, img, lab, CVAE_ERR_FORMAT, lab, "truncated");
}

/* Fails if bytes after the data are ignored (images or labels). */
static void test_load_trailing_bytes(void **state)
{
    fixture *fx = *state;
    buf bf;
    uint8_t px[V_PIXELS + 1];
    const char *p, *img, *lab;
    valid_pixels(px);
    px[V_PIXELS] = 0;
    images_header(&bf, V_COUNT, V_ROWS, V_COLS);
    put_bytes(&bf, px, sizeof px);
    p = write_file(fx, "long", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, "1 bytes after");
    img = write_valid_images(fx, "img");
    bf.n = 0;
    put_u32(&bf, 0x00000801u);
    put_u32(&bf, V_COUNT);
    put_bytes(&bf, v_labels, V_COUNT);
    put_bytes(&bf, v_labels, 2);
    lab = write_file(fx, "lab", bf.b, bf.n);
    expect_load_fails(fx, img, lab, CVAE_ERR_FORMAT, lab, "2 bytes after");
}

/* Fails if sizes whose product wraps size_t are multiplied unchecked (a
 * wrapped product could match the file length). */
static void test_load_size_overflow(void **state)
{
    fixture *fx = *state;
    buf bf;
    const char *p;
    images_header(&bf, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu);
    put_bytes(&bf, v_labels, V_COUNT);
    p = write_file(fx, "wrap", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_TOO_LARGE, p, NULL);
}

/* Fails if the header's claim is allocated before the file length is
 * checked: 10^11 bytes might even be granted by an overcommitting system,
 * and ~2^64 bytes never is, so allocating first gives NOMEM, not FORMAT. */
static void test_load_huge_claim_small_file(void **state)
{
    fixture *fx = *state;
    buf bf;
    uint8_t pad[84] = {0};
    const char *giga, *exa;
    images_header(&bf, 100000, 1000, 1000);
    put_bytes(&bf, pad, sizeof pad);
    assert_int_equal(bf.n, 100);
    giga = write_file(fx, "giga", bf.b, bf.n);
    expect_load_fails(fx, giga, NULL, CVAE_ERR_FORMAT, giga, "truncated");
    images_header(&bf, 0xFFFFFFFFu, 0xFFFFFFFFu, 1);
    put_bytes(&bf, pad, sizeof pad);
    exa = write_file(fx, "exa", bf.b, bf.n);
    expect_load_fails(fx, exa, NULL, CVAE_ERR_FORMAT, exa, "truncated");
}

/* Fails if a zero count, zero rows or zero columns is accepted (an empty
 * dataset must not come from a file). */
static void test_load_zero_sizes(void **state)
{
    fixture *fx = *state;
    buf bf;
    const char *p;
    images_header(&bf, 0, V_ROWS, V_COLS);
    p = write_file(fx, "zero_count", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, NULL);
    images_header(&bf, V_COUNT, 0, V_COLS);
    p = write_file(fx, "zero_rows", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, NULL);
    images_header(&bf, V_COUNT, V_ROWS, 0);
    p = write_file(fx, "zero_cols", bf.b, bf.n);
    expect_load_fails(fx, p, NULL, CVAE_ERR_FORMAT, p, NULL);
}

/* Fails if a label file of another length than the images is accepted. */
static void test_load_label_count_mismatch(void **state)
{
    fixture *fx = *state;
    const uint8_t six[6] = {1, 2, 3, 4, 5, 6};
    const char *img = write_valid_images(fx, "img");
    const char *four = write_labels(fx, "four", six, 4);
    const char *lab6 = write_labels(fx, "six", six, 6);
    expect_load_fails(fx, img, four, CVAE_ERR_FORMAT, four, "4 labels for 5 images");
    expect_load_fails(fx, img, lab6, CVAE_ERR_FORMAT, lab6, "6 labels for 5 images");
}

/* Fails if labels above 9 pass, or the message omits the index and value. */
static void test_load_label_out_of_range(void **state)
{
    fixture *fx = *state;
    const uint8_t ten[V_COUNT] = {1, 2, 10, 3, 4};
    const uint8_t big[V_COUNT] = {1, 2, 3, 4, 255};
    const char *img = write_valid_images(fx, "img");
    const char *lab10 = write_labels(fx, "ten", ten, V_COUNT);
    const char *lab255 = write_labels(fx, "big", big, V_COUNT);
    expect_load_fails(fx, img, lab10, CVAE_ERR_FORMAT, lab10, "label 2 is 10");
    expect_load_fails(fx, img, lab255, CVAE_ERR_FORMAT, lab255, "label 4 is 255");
}

/* Fails if an empty file is not FORMAT with "empty" (images or labels). */
static void test_load_empty_file(void **state)
{
    fixture *fx = *state;
    const char *empty = write_file(fx, "empty", NULL, 0);
    const char *img = write_valid_images(fx, "img");
    expect_load_fails(fx, empty, NULL, CVAE_ERR_FORMAT, empty, "empty");
    expect_load_fails(fx, img, empty, CVAE_ERR_FORMAT, empty, "empty");
}

/* Fails if a directory (which fopen may open on Linux) is not an IO error. */
static void test_load_directory(void **state)
{
    fixture *fx = *state;
    const char *dir = fx_path(fx, "subdir");
    const char *img;
    assert_int_equal(mkdir(dir, 0700), 0);
    expect_load_fails(fx, dir, NULL, CVAE_ERR_IO, dir, NULL);
    img = write_valid_images(fx, "img");
    expect_load_fails(fx, img, dir, CVAE_ERR_IO, dir, NULL);
}

/* Fails if a missing file is not IO with the path and the system's reason,
 * or if a gzip hint appears without a .gz file. */
static void test_load_missing_file(void **state)
{
    fixture *fx = *state;
    const char *missing = fx_path(fx, "missing");
    const char *img;
    expect_load_fails(fx, missing, NULL, CVAE_ERR_IO, missing, strerror(ENOENT));
    assert_null(strstr(cvae_dataset_last_error(fx->ds), "gunzip"));
    img = write_valid_images(fx, "img");
    expect_load_fails(fx, img, missing, CVAE_ERR_IO, missing, strerror(ENOENT));
}

/* Fails if the message does not point at the .gz lying beside a missing
 * file and how to decompress it. */
static void test_load_missing_with_gz(void **state)
{
    fixture *fx = *state;
    const uint8_t gz[4] = {0x1f, 0x8b, 8, 0};
    const char *path = fx_path(fx, "t10k-images-idx3-ubyte");
    char gzname[PATH_LEN];
    snprintf(gzname, sizeof gzname, "%s.gz", path);
    write_file(fx, "t10k-images-idx3-ubyte.gz", gz, sizeof gz);
    expect_load_fails(fx, path, NULL, CVAE_ERR_IO, path, "gunzip -k");
    expect_load_fails(fx, path, NULL, CVAE_ERR_IO, gzname, NULL);
}

/* Fails if a NULL handle or images path is not INVALID_ARG. */
static void test_load_null_args(void **state)
{
    fixture *fx = *state;
    const char *img = write_valid_images(fx, "img");
    assert_int_equal(cvae_dataset_load_idx(NULL, img, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_load_idx(fx->ds, NULL, NULL), CVAE_ERR_INVALID_ARG);
    expect_previous(fx->ds);
}

/* ------------------------------------------------------------- set_u8 */

/* Fails if set_u8 keeps the caller's pointers instead of copying. */
static void test_set_u8_copies(void **state)
{
    fixture *fx = *state;
    uint8_t px[3 * 2 * 2 * 3], lab[3] = {200, 0, 9};
    float out[3 * 2 * 2 * 3];
    int labels[3], c = 0, h = 0, w = 0, i;
    for (i = 0; i < (int)sizeof px; i++)
        px[i] = (uint8_t)(7 * i + 3);
    TU_CHECK_DATASET(cvae_dataset_set_u8(fx->ds, 3, 2, 2, 3, px, lab), fx->ds);
    memset(px, 0xEE, sizeof px);
    memset(lab, 0xEE, sizeof lab);
    assert_int_equal(cvae_dataset_count(fx->ds), 3);
    TU_CHECK_DATASET(cvae_dataset_shape(fx->ds, &c, &h, &w), fx->ds);
    assert_int_equal(c, 2);
    assert_int_equal(h, 2);
    assert_int_equal(w, 3);
    TU_CHECK_DATASET(cvae_dataset_batch(fx->ds, 0, 3, out, labels), fx->ds);
    for (i = 0; i < (int)sizeof px; i++)
        if (out[i] != (float)(uint8_t)(7 * i + 3) / 255.0f)
            fail_msg("pixel %d: %.9g", i, (double)out[i]);
    assert_int_equal(labels[0], 200);
    assert_int_equal(labels[1], 0);
    assert_int_equal(labels[2], 9);
    /* Without labels, the old ones go. */
    TU_CHECK_DATASET(cvae_dataset_set_u8(fx->ds, 1, 1, 1, 1, px, NULL), fx->ds);
    assert_int_equal(cvae_dataset_has_labels(fx->ds), 0);
}

/* Fails if bad sizes or pointers are accepted, if a pixel count past the
 * limit is not TOO_LARGE before any allocation, or if a failure changes
 * the content. */
static void test_set_u8_bad_args(void **state)
{
    fixture *fx = *state;
    uint8_t px[4] = {1, 2, 3, 4};
    assert_int_equal(cvae_dataset_set_u8(NULL, 1, 1, 1, 1, px, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_set_u8(fx->ds, 1, 1, 1, 1, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_set_u8(fx->ds, 0, 1, 1, 1, px, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_set_u8(fx->ds, -1, 1, 1, 1, px, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_set_u8(fx->ds, 1, 0, 1, 1, px, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_set_u8(fx->ds, 1, 1, -2, 1, px, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_set_u8(fx->ds, 1, 1, 1, 0, px, NULL), CVAE_ERR_INVALID_ARG);
    /* 65536 x 1 x 256 x 257 = 2^32 + 2^24 pixels; px is far too small, so
     * reading it would crash: the check must come first. */
    assert_int_equal(cvae_dataset_set_u8(fx->ds, 65536, 1, 256, 257, px, NULL), CVAE_ERR_TOO_LARGE);
    assert_non_null(strstr(cvae_dataset_last_error(fx->ds), "exceed"));
    assert_int_equal(
        cvae_dataset_set_u8(fx->ds, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, px, NULL),
        CVAE_ERR_TOO_LARGE);
    expect_previous(fx->ds);
}

/* ------------------------------------------------------------ shuffling */

/* Fails if the shuffle loses or repeats an image, keeps the identity, or
 * lets labels part from their pixels. */
static void test_shuffle_is_permutation(void **state)
{
    cvae_dataset *ds = indexed_dataset(50);
    float f[50];
    int labels[50], seen[50] = {0}, moved = 0, i;
    (void)state;
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 1234), ds);
    assert_string_equal(cvae_dataset_last_error(ds), "");
    TU_CHECK_DATASET(cvae_dataset_batch(ds, 0, 50, f, labels), ds);
    for (i = 0; i < 50; i++) {
        int id = pixel_id(f[i]);
        assert_in_range(id, 0, 49);
        assert_int_equal(seen[id], 0);
        seen[id] = 1;
        assert_int_equal(labels[i], id % 10);
        moved += id != i;
    }
    assert_true(moved > 25);
    cvae_dataset_destroy(ds);
}

/* Fails if the order depends on anything but seed and count: a previous
 * shuffle, another handle with the same content; or if seeds collide. */
static void test_shuffle_reproducible(void **state)
{
    cvae_dataset *a = indexed_dataset(40), *b = indexed_dataset(40);
    int o1[40], o2[40], o3[40], o4[40];
    (void)state;
    TU_CHECK_DATASET(cvae_dataset_shuffle(a, 99), a);
    read_order(a, o1);
    TU_CHECK_DATASET(cvae_dataset_shuffle(a, 99), a);
    read_order(a, o2);
    assert_memory_equal(o1, o2, sizeof o1);
    TU_CHECK_DATASET(cvae_dataset_shuffle(b, 7), b);
    TU_CHECK_DATASET(cvae_dataset_shuffle(b, 99), b);
    read_order(b, o3);
    assert_memory_equal(o1, o3, sizeof o1);
    TU_CHECK_DATASET(cvae_dataset_shuffle(b, 100), b);
    read_order(b, o4);
    assert_true(memcmp(o1, o4, sizeof o1) != 0);
    cvae_dataset_destroy(a);
    cvae_dataset_destroy(b);
}

/* Fails if the order is not the documented one (xoshiro256** seeded by
 * splitmix64, Fisher-Yates from the end), which resumed runs rely on to
 * rebuild an epoch. Sizes 10 to 200, several seeds including 0 and 2^64-1. */
static void test_shuffle_matches_reference(void **state)
{
    const uint64_t seeds[4] = {0, 1, 0xDEADBEEFu, UINT64_MAX};
    const int sizes[3] = {10, 33, 200};
    int got[256], want[256];
    size_t s, k;
    (void)state;
    for (k = 0; k < 3; k++) {
        cvae_dataset *ds = indexed_dataset(sizes[k]);
        for (s = 0; s < 4; s++) {
            int i;
            TU_CHECK_DATASET(cvae_dataset_shuffle(ds, seeds[s]), ds);
            read_order(ds, got);
            ref_shuffle(want, sizes[k], seeds[s]);
            for (i = 0; i < sizes[k]; i++)
                if (got[i] != want[i])
                    fail_msg("n %d seed %llu position %d: image %d, expected %d", sizes[k],
                             (unsigned long long)seeds[s], i, got[i], want[i]);
        }
        cvae_dataset_destroy(ds);
    }
}

/* Fails if some orders are favoured (a draw over [0, i) instead of [0, i],
 * swaps with any position, ...): the 6 orders of 3 images over 6000 seeds
 * each come up 1000 times, sd 29; 150 is over 5 sd. */
static void test_shuffle_uniform(void **state)
{
    cvae_dataset *ds = indexed_dataset(3);
    int counts[9] = {0}, o[3], k;
    uint64_t seed;
    (void)state;
    for (seed = 0; seed < 6000; seed++) {
        TU_CHECK_DATASET(cvae_dataset_shuffle(ds, seed), ds);
        read_order(ds, o);
        counts[o[0] * 3 + o[1]]++; /* the first two fix the order */
    }
    for (k = 0; k < 9; k++) {
        if (k / 3 == k % 3)
            assert_int_equal(counts[k], 0);
        else if (counts[k] < 850 || counts[k] > 1150)
            fail_msg("order starting %d %d came %d times of 6000", k / 3, k % 3, counts[k]);
    }
    cvae_dataset_destroy(ds);
}

/* Fails if unshuffle does not bring back the stored order. */
static void test_unshuffle_restores(void **state)
{
    cvae_dataset *ds = indexed_dataset(30);
    int o[30], i;
    (void)state;
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 3), ds);
    TU_CHECK_DATASET(cvae_dataset_unshuffle(ds), ds);
    read_order(ds, o);
    for (i = 0; i < 30; i++)
        assert_int_equal(o[i], i);
    cvae_dataset_destroy(ds);
}

/* Fails if the internal stored-order batch (used by model_evaluate)
 * follows the shuffled order or reads the wrong window. */
static void test_batch_stored_ignores_order(void **state)
{
    cvae_dataset *ds = indexed_dataset(20);
    float f[5];
    int i;
    (void)state;
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 11), ds);
    cvi_dataset_batch_stored(ds, 7, 5, f);
    for (i = 0; i < 5; i++)
        assert_int_equal(pixel_id(f[i]), 7 + i);
    cvae_dataset_destroy(ds);
}

/* ------------------------------------------------------------- batches */

/* Fails if a window past the end, a negative start, an empty or NULL
 * batch is accepted, or the last full window is refused. */
static void test_batch_bounds(void **state)
{
    cvae_dataset *ds = indexed_dataset(10);
    float f[11];
    int lab[11];
    (void)state;
    assert_int_equal(cvae_dataset_batch(ds, 0, 10, f, lab), CVAE_OK);
    assert_int_equal(cvae_dataset_batch(ds, 9, 1, f, lab), CVAE_OK);
    assert_int_equal(pixel_id(f[0]), 9);
    assert_int_equal(cvae_dataset_batch(ds, 0, 11, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, 10, 1, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, 6, 5, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, 1, 0x7FFFFFFF, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, 0x7FFFFFFF, 1, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, -1, 2, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, 0, 0, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, 0, -3, f, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(ds, 0, 1, NULL, lab), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_batch(NULL, 0, 1, f, lab), CVAE_ERR_INVALID_ARG);
    cvae_dataset_destroy(ds);
}

/* ------------------------------------------------------------ splitting */

/* Checks a split of an indexed dataset of n images: sizes, each part in
 * ascending (stored) order, labels following their pixels, disjoint parts
 * whose union is everything. Writes the validation ids to val. */
static void check_split(cvae_dataset *tr, cvae_dataset *va, int n, int nval, int *val)
{
    int t[256], seen[256] = {0}, i;
    float f[2];
    int lab[2];
    assert_int_equal(cvae_dataset_count(va), nval);
    assert_int_equal(cvae_dataset_count(tr), n - nval);
    assert_int_equal(cvae_dataset_has_labels(tr), 1);
    assert_int_equal(cvae_dataset_has_labels(va), 1);
    read_order(tr, t);
    read_order(va, val);
    for (i = 0; i < n - nval; i++) {
        assert_true(i == 0 || t[i] > t[i - 1]);
        assert_int_equal(seen[t[i]]++, 0);
        assert_int_equal(cvae_dataset_batch(tr, i, 1, f, lab), CVAE_OK);
        assert_int_equal(lab[0], t[i] % 10);
    }
    for (i = 0; i < nval; i++) {
        assert_true(i == 0 || val[i] > val[i - 1]);
        assert_int_equal(seen[val[i]]++, 0);
        assert_int_equal(cvae_dataset_batch(va, i, 1, f, lab), CVAE_OK);
        assert_int_equal(lab[0], val[i] % 10);
    }
    for (i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
}

/* Fails if the split loses, duplicates or reorders images, separates labels
 * from pixels, touches the source (content and current order), or does not
 * take the first validation_count images of the seed's shuffle. */
static void test_split_partition(void **state)
{
    cvae_dataset *ds = indexed_dataset(20), *tr = NULL, *va = NULL;
    int val[20], before[20], after[20], shuffled[20], want[20] = {0}, i, k = 0;
    (void)state;
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 77), ds);
    read_order(ds, before);
    TU_CHECK_DATASET(cvae_dataset_split(ds, 6, 5, &tr, &va), ds);
    check_split(tr, va, 20, 6, val);
    read_order(ds, after);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(cvae_dataset_count(ds), 20);
    /* The validation set is {first 6 of shuffle(seed)}. */
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 5), ds);
    read_order(ds, shuffled);
    for (i = 0; i < 6; i++)
        want[shuffled[i]] = 1;
    for (i = 0; i < 20; i++)
        if (want[i])
            assert_int_equal(val[k++], i);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    cvae_dataset_destroy(ds);
}

/* Fails if the split depends on anything but the seed, or ignores it; or
 * if the smallest and largest splits or unlabelled data go wrong. */
static void test_split_deterministic(void **state)
{
    cvae_dataset *ds = indexed_dataset(20), *tr = NULL, *va = NULL;
    int v1[20], v2[20], v3[20], t[20], i;
    uint8_t px[4] = {9, 8, 7, 6};
    float f[4];
    int lab[2];
    (void)state;
    TU_CHECK_DATASET(cvae_dataset_split(ds, 6, 5, &tr, &va), ds);
    check_split(tr, va, 20, 6, v1);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 1), ds);
    TU_CHECK_DATASET(cvae_dataset_split(ds, 6, 5, &tr, &va), ds);
    check_split(tr, va, 20, 6, v2);
    assert_memory_equal(v1, v2, 6 * sizeof *v1);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    TU_CHECK_DATASET(cvae_dataset_split(ds, 6, 6, &tr, &va), ds);
    check_split(tr, va, 20, 6, v3);
    assert_true(memcmp(v1, v3, 6 * sizeof *v1) != 0);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    TU_CHECK_DATASET(cvae_dataset_split(ds, 1, 5, &tr, &va), ds);
    check_split(tr, va, 20, 1, v3);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    TU_CHECK_DATASET(cvae_dataset_split(ds, 19, 5, &tr, &va), ds);
    check_split(tr, va, 20, 19, v3);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    /* Unlabelled images of 1x1x2, {9, 8} and {7, 6}: both parts unlabelled,
     * each image whole. */
    TU_CHECK_DATASET(cvae_dataset_set_u8(ds, 2, 1, 1, 2, px, NULL), ds);
    TU_CHECK_DATASET(cvae_dataset_split(ds, 1, 3, &tr, &va), ds);
    assert_int_equal(cvae_dataset_has_labels(tr), 0);
    assert_int_equal(cvae_dataset_has_labels(va), 0);
    TU_CHECK_DATASET(cvae_dataset_batch(tr, 0, 1, f, lab), tr);
    TU_CHECK_DATASET(cvae_dataset_batch(va, 0, 1, f + 2, lab + 1), va);
    assert_int_equal(lab[0], -1);
    assert_int_equal(lab[1], -1);
    for (i = 0; i < 4; i++)
        t[i] = pixel_id(f[i]);
    assert_int_equal(t[0] + t[2], 9 + 7);
    assert_true(t[0] == 9 || t[0] == 7);
    assert_int_equal(t[1], t[0] - 1);
    assert_int_equal(t[3], t[2] - 1);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    cvae_dataset_destroy(ds);
}

/* Fails if a validation count outside [1, count - 1], a NULL pointer or an
 * empty dataset is accepted, or if the outputs are not NULL on failure. */
static void test_split_bad_counts(void **state)
{
    static int sentinel;
    cvae_dataset *const not_null = (cvae_dataset *)(void *)&sentinel;
    cvae_dataset *ds = indexed_dataset(20), *empty = NULL, *tr = not_null, *va = not_null;
    const int bad[4] = {0, -1, 20, 21};
    int i;
    (void)state;
    for (i = 0; i < 4; i++) {
        assert_int_equal(cvae_dataset_split(ds, bad[i], 1, &tr, &va), CVAE_ERR_INVALID_ARG);
        assert_null(tr);
        assert_null(va);
        assert_non_null(strstr(cvae_dataset_last_error(ds), "validation_count"));
        tr = va = not_null;
    }
    tr = va = not_null;
    assert_int_equal(cvae_dataset_split(NULL, 5, 1, &tr, &va), CVAE_ERR_INVALID_ARG);
    assert_null(tr);
    assert_null(va);
    assert_int_equal(cvae_dataset_split(ds, 5, 1, NULL, &va), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_split(ds, 5, 1, &tr, NULL), CVAE_ERR_INVALID_ARG);
    assert_null(tr);
    assert_int_equal(cvae_dataset_create(&empty), CVAE_OK);
    tr = va = not_null;
    assert_int_equal(cvae_dataset_split(empty, 1, 1, &tr, &va), CVAE_ERR_STATE);
    assert_null(tr);
    assert_null(va);
    cvae_dataset_destroy(empty);
    cvae_dataset_destroy(ds);
}

/* ------------------------------------------------- handles and emptiness */

/* Fails if a NULL handle is not INVALID_ARG (or 0 / a static message), or
 * an empty dataset answers anything but STATE. */
static void test_null_and_empty(void **state)
{
    cvae_dataset *ds = NULL;
    float f[1];
    int c = -5;
    (void)state;
    assert_int_equal(cvae_dataset_create(NULL), CVAE_ERR_INVALID_ARG);
    cvae_dataset_destroy(NULL);
    assert_non_null(cvae_dataset_last_error(NULL));
    assert_int_equal(cvae_dataset_count(NULL), 0);
    assert_int_equal(cvae_dataset_has_labels(NULL), 0);
    assert_int_equal(cvae_dataset_shape(NULL, &c, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_shuffle(NULL, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_unshuffle(NULL), CVAE_ERR_INVALID_ARG);

    assert_int_equal(cvae_dataset_create(&ds), CVAE_OK);
    assert_string_equal(cvae_dataset_last_error(ds), "");
    assert_int_equal(cvae_dataset_count(ds), 0);
    assert_int_equal(cvae_dataset_has_labels(ds), 0);
    assert_int_equal(cvae_dataset_shape(ds, &c, NULL, NULL), CVAE_ERR_STATE);
    assert_int_equal(c, -5);
    assert_int_equal(cvae_dataset_shuffle(ds, 1), CVAE_ERR_STATE);
    assert_int_equal(cvae_dataset_unshuffle(ds), CVAE_ERR_STATE);
    assert_int_equal(cvae_dataset_batch(ds, 0, 1, f, NULL), CVAE_ERR_STATE);
    cvae_dataset_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_without_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_wrong_type_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_wrong_dimensions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_truncated_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_truncated_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_trailing_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_size_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_huge_claim_small_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_zero_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_label_count_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_label_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_missing_with_gz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_null_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_u8_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_u8_bad_args, setup, teardown),
        cmocka_unit_test(test_shuffle_is_permutation),
        cmocka_unit_test(test_shuffle_reproducible),
        cmocka_unit_test(test_shuffle_matches_reference),
        cmocka_unit_test(test_shuffle_uniform),
        cmocka_unit_test(test_unshuffle_restores),
        cmocka_unit_test(test_batch_stored_ignores_order),
        cmocka_unit_test(test_batch_bounds),
        cmocka_unit_test(test_split_partition),
        cmocka_unit_test(test_split_deterministic),
        cmocka_unit_test(test_split_bad_counts),
        cmocka_unit_test(test_null_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
