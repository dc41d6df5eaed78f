#define _POSIX_C_SOURCE 200809L
/*
 * test_classify.c - the example programs' classifier (examples/common/classifier.c).
 *
 * Training: on 200 tiny images whose class is the bright quadrant (linearly separable), the
 * network must go from chance to 100 %, on those images and on 100 new ones, and the run must
 * be bit-for-bit the same for the same seed. The file: a save and load
 * gives bit-identical parameters and the same labels, the bytes are those the header of
 * classifier.h describes (checked with the tests' own CRC), and every malformed variant (bad
 * magic, truncations, shapes and counts that do not match, a damaged CRC or parameter, a NaN
 * or infinite parameter, a trailing byte, a missing file, a directory) gets its exact status
 * with a message naming the file, leaving the classifier empty. A failed save (the temporary
 * file cannot be created, the disk is full, a NaN parameter) keeps the previous file and
 * leaves no temporary file behind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "classifier.h"
#include "cvae.h"
#include "testutil.h"

/* The synthetic task: 1 x 8 x 8 images, 4 classes (which quadrant is bright). */
#define SIDE 8
#define IMG (SIDE * SIDE)
#define CLASSES 4
#define NTRAIN 200
#define NNEW 100
#define MAXB 50

/* Parameter count of classifier.h's network for 1 x 8 x 8 and 4 classes, by hand:
 * conv 3x3: 32*9 + 32; conv 4x4: 64*32*16 + 64; conv 4x4: 64*64*16 + 64;
 * linear: 128 * (64*2*2) + 128; linear: 4*128 + 4. */
#define NPARAMS (320 + 32832 + 65600 + 32896 + 516)
#define FILE_SIZE (32 + 4 * NPARAMS + 4)

#define CHECK(st, clf)                                                                             \
    do {                                                                                           \
        cvae_status st_ = (st);                                                                    \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s", cvae_status_string(st_), clf_last_error(clf));                      \
    } while (0)

/* ------------------------------------------------------------------ fixture */

/* Everything a test makes, freed by the teardown even when the test fails half-way. */
#define MAX_CLF 6
typedef struct fixture {
    char dir[64];
    char path[128]; /* dir/clf.bin */
    clf_classifier *clf[MAX_CLF];
    int nclf;
    cvae_dataset *train, *fresh;
    unsigned char *bytes; /* a saved file */
    size_t nbytes;
} fixture;

static int setup(void **state)
{
    fixture *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    if (tu_tmpdir_make(t->dir, sizeof t->dir, "test_classify") != 0) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/clf.bin", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    fixture *t = *state;
    int i;
    for (i = 0; i < t->nclf; i++)
        clf_destroy(t->clf[i]);
    cvae_dataset_destroy(t->train);
    cvae_dataset_destroy(t->fresh);
    free(t->bytes);
    tu_tmpdir_remove(t->dir);
    free(t);
    return 0;
}

/* A new empty classifier, freed by the teardown. */
static clf_classifier *new_clf(fixture *t)
{
    clf_classifier *c = NULL;
    assert_true(t->nclf < MAX_CLF);
    assert_int_equal(clf_create(&c), CVAE_OK);
    assert_non_null(c);
    t->clf[t->nclf++] = c;
    return c;
}

/* A classifier for the synthetic task with parameters from seed. */
static clf_classifier *new_task_clf(fixture *t, uint64_t seed)
{
    clf_classifier *c = new_clf(t);
    CHECK(clf_init(c, 1, SIDE, SIDE, CLASSES, MAXB, seed), c);
    assert_int_equal(clf_param_count(c), NPARAMS);
    return c;
}

/* count images: dim noise in [0, 85], the quadrant of the class bright, in [170, 255]; the
 * classes go round (so every class has count / 4 images). */
static cvae_dataset *quadrant_set(int count, uint64_t seed)
{
    unsigned char *px = malloc((size_t)count * IMG), *labels = malloc((size_t)count);
    cvae_dataset *ds = NULL;
    tu_rng r;
    int i, y, x;
    assert_non_null(px);
    assert_non_null(labels);
    tu_rng_init(&r, seed);
    for (i = 0; i < count; i++) {
        int q = i % CLASSES, qy = q / 2, qx = q % 2;
        labels[i] = (unsigned char)q;
        for (y = 0; y < SIDE; y++)
            for (x = 0; x < SIDE; x++) {
                int bright = y / (SIDE / 2) == qy && x / (SIDE / 2) == qx;
                int v = (int)(tu_rng_next(&r) % 86);
                px[i * IMG + y * SIDE + x] = (unsigned char)(bright ? 170 + v : v);
            }
    }
    assert_int_equal(cvae_dataset_create(&ds), CVAE_OK);
    if (cvae_dataset_set_u8(ds, count, 1, SIDE, SIDE, px, labels) != CVAE_OK) {
        cvae_dataset_destroy(ds);
        ds = NULL;
    }
    free(px);
    free(labels);
    assert_non_null(ds);
    return ds;
}

static void task_data(fixture *t)
{
    if (!t->train)
        t->train = quadrant_set(NTRAIN, 7);
    if (!t->fresh)
        t->fresh = quadrant_set(NNEW, 8);
}

/* The training settings of these tests: small, quick and silent. */
static void task_options(clf_options *o, int epochs, uint64_t seed, int threads)
{
    clf_default_options(o);
    o->epochs = epochs;
    o->batch = 20;
    o->lr = 2e-3;
    o->max_shift = 1;
    o->seed = seed;
    o->threads = threads;
    o->log = NULL;
}

/* Images of the dataset (stored order) as floats, freed by the caller. */
static float *all_images(cvae_dataset *ds, int *labels)
{
    int n = cvae_dataset_count(ds);
    float *x = malloc((size_t)n * IMG * sizeof *x);
    assert_non_null(x);
    assert_int_equal(cvae_dataset_batch(ds, 0, n, x, labels), CVAE_OK);
    return x;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long size;
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    assert_int_equal(fclose(f), 0);
    *len = (size_t)size;
    return buf;
}

static void write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}


/* A saved classifier (fresh parameters) in t->bytes. */
static void saved_bytes(fixture *t)
{
    clf_classifier *c = new_task_clf(t, 3);
    CHECK(clf_save(c, t->path), c);
    t->bytes = read_all(t->path, &t->nbytes);
    assert_int_equal(t->nbytes, FILE_SIZE);
}

/* ----------------------------------------------------------------- training */

/* Fails if training does not take the network from chance to 100 % on the training images
 * and on new ones, or if it changes the dataset's order. */
static void test_learns_quadrants(void **state)
{
    fixture *t = *state;
    clf_classifier *c = new_task_clf(t, 1);
    clf_options o;
    int correct = -1, total = -1;
    int before[NTRAIN], after[NTRAIN];
    float *x;

    task_data(t);
    x = all_images(t->train, before);
    free(x);
    CHECK(clf_accuracy(c, t->train, &correct, &total), c);
    assert_int_equal(total, NTRAIN);
    assert_true(correct <= NTRAIN / 2); /* untrained: about chance (1 in 4) */

    task_options(&o, 4, 1, 1); /* one epoch is enough on this machine; four for margin */
    CHECK(clf_train(c, t->train, &o), c);
    CHECK(clf_accuracy(c, t->train, &correct, &total), c);
    assert_int_equal(correct, NTRAIN);
    CHECK(clf_accuracy(c, t->fresh, &correct, &total), c);
    assert_int_equal(total, NNEW);
    assert_int_equal(correct, NNEW);

    /* The dataset is back in its stored order. */
    x = all_images(t->train, after);
    free(x);
    assert_memory_equal(before, after, sizeof before);
}

/* Fails if two runs with the same seed differ in any bit, or if another seed (shuffles and
 * shifts) or no shifts give the same parameters. (Thread counts are test_threads.c's: a run
 * on 2 threads here costs seconds on a busy machine.) */
static void test_training_is_deterministic(void **state)
{
    fixture *t = *state;
    clf_classifier *a = new_task_clf(t, 5), *b = new_task_clf(t, 5), *c = new_task_clf(t, 5);
    clf_classifier *d = new_task_clf(t, 5);
    clf_options o;

    task_data(t);
    task_options(&o, 1, 9, 1);
    CHECK(clf_train(a, t->train, &o), a);
    CHECK(clf_train(b, t->train, &o), b);
    assert_memory_equal(cvae_stack_params(clf_stack(a), NULL),
                        cvae_stack_params(clf_stack(b), NULL), NPARAMS * sizeof(float));
    o.seed = 10;
    CHECK(clf_train(c, t->train, &o), c);
    assert_memory_not_equal(cvae_stack_params(clf_stack(a), NULL),
                            cvae_stack_params(clf_stack(c), NULL), NPARAMS * sizeof(float));
    o.seed = 9;
    o.max_shift = 0;
    CHECK(clf_train(d, t->train, &o), d);
    assert_memory_not_equal(cvae_stack_params(clf_stack(a), NULL),
                            cvae_stack_params(clf_stack(d), NULL), NPARAMS * sizeof(float));
}

/* Fails if a bad argument, dataset or option is not refused with its status. */
static void test_training_refuses_bad_input(void **state)
{
    fixture *t = *state;
    clf_classifier *c = new_clf(t);
    cvae_dataset *wrong = NULL, *unlabelled = NULL, *bad_label = NULL;
    unsigned char px[2 * 12 * 12] = {0}, lab[2] = {1, CLASSES};
    clf_options o;
    int correct, total, out[1];
    float x[IMG] = {0};
    static float keep[NPARAMS];

    task_data(t);
    task_options(&o, 1, 1, 1);
    /* Empty handle. */
    assert_int_equal(clf_train(c, t->train, &o), CVAE_ERR_STATE);
    assert_int_equal(clf_predict(c, x, 1, out), CVAE_ERR_STATE);
    assert_int_equal(clf_save(c, t->path), CVAE_ERR_STATE);
    assert_int_equal(clf_shape(c, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    assert_int_equal(access(t->path, F_OK), -1);
    /* Shapes clf_init refuses. */
    assert_int_equal(clf_init(c, 1, 30, 28, 10, 8, 1), CVAE_ERR_INVALID_ARG); /* 30 % 4 */
    assert_int_equal(clf_init(c, 0, 28, 28, 10, 8, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(clf_init(c, 1, 28, 28, 1, 8, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(clf_init(c, 1, 28, 28, 10, 0, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(clf_param_count(c), 0);
    CHECK(clf_init(c, 1, SIDE, SIDE, CLASSES, MAXB, 1), c);
    assert_int_equal(clf_init(c, 1, SIDE, SIDE, CLASSES, MAXB, 1), CVAE_ERR_STATE);

    /* Options. */
    o.batch = MAXB + 1;
    assert_int_equal(clf_train(c, t->train, &o), CVAE_ERR_INVALID_ARG);
    task_options(&o, 0, 1, 1);
    assert_int_equal(clf_train(c, t->train, &o), CVAE_ERR_INVALID_ARG);
    task_options(&o, 1, 1, 1);
    o.lr = 0;
    assert_int_equal(clf_train(c, t->train, &o), CVAE_ERR_INVALID_ARG);
    task_options(&o, 1, 1, 1);
    o.max_shift = SIDE;
    assert_int_equal(clf_train(c, t->train, &o), CVAE_ERR_INVALID_ARG);
    task_options(&o, 1, 1, 1);

    /* Datasets: other shape, no labels, a label that is not a class. */
    assert_int_equal(cvae_dataset_create(&wrong), CVAE_OK);
    assert_int_equal(cvae_dataset_set_u8(wrong, 1, 1, 12, 12, px, lab), CVAE_OK);
    assert_int_equal(clf_train(c, wrong, &o), CVAE_ERR_SHAPE);
    assert_int_equal(clf_accuracy(c, wrong, &correct, &total), CVAE_ERR_SHAPE);
    assert_int_equal(cvae_dataset_create(&unlabelled), CVAE_OK);
    assert_int_equal(cvae_dataset_set_u8(unlabelled, 2, 1, SIDE, SIDE, px, NULL), CVAE_OK);
    assert_int_equal(clf_train(c, unlabelled, &o), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_dataset_create(&bad_label), CVAE_OK);
    assert_int_equal(cvae_dataset_set_u8(bad_label, 2, 1, SIDE, SIDE, px, lab), CVAE_OK);
    memcpy(keep, cvae_stack_params(clf_stack(c), NULL), sizeof keep);
    assert_int_equal(clf_train(c, bad_label, &o), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(clf_last_error(c), "label 4"));
    /* Found before the first step: the parameters are untouched. */
    assert_memory_equal(keep, cvae_stack_params(clf_stack(c), NULL), sizeof keep);
    cvae_dataset_destroy(wrong);
    cvae_dataset_destroy(unlabelled);
    cvae_dataset_destroy(bad_label);

    assert_int_equal(clf_predict(c, x, 0, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(clf_predict(c, NULL, 1, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(clf_train(NULL, t->train, &o), CVAE_ERR_INVALID_ARG);
    assert_int_equal(clf_train(c, NULL, &o), CVAE_ERR_INVALID_ARG);
    assert_int_equal(clf_create(NULL), CVAE_ERR_INVALID_ARG);
    clf_destroy(NULL);
}

/* Fails if predict does not label each image by its largest logit (the first on a tie),
 * across several of the max batch. */
static void test_predict_is_argmax(void **state)
{
    fixture *t = *state;
    clf_classifier *c = new_task_clf(t, 2);
    cvae_stack *s = clf_stack(c);
    size_t np = 0;
    float *p = cvae_stack_params(s, &np);
    enum { N = 2 * MAXB + 3 };
    float *x = malloc(N * IMG * sizeof *x);
    int labels[N], i;

    assert_non_null(x);
    /* The last layer (linear 128 -> 4, weight then bias) set to weights 0 and biases that
     * favour class 2: every image then gets label 2. */
    memset(p + np - (CLASSES * 128 + CLASSES), 0, (CLASSES * 128 + CLASSES) * sizeof *p);
    p[np - CLASSES + 2] = 1.0f;
    tu_fill_uniform(x, N * IMG, 4);
    CHECK(clf_predict(c, x, N, labels), c);
    for (i = 0; i < N; i++)
        assert_int_equal(labels[i], 2);
    /* A tie between classes 1 and 3: the first wins. */
    p[np - CLASSES + 2] = 0.0f;
    p[np - CLASSES + 1] = 0.5f;
    p[np - CLASSES + 3] = 0.5f;
    CHECK(clf_predict(c, x, N, labels), c);
    for (i = 0; i < N; i++)
        assert_int_equal(labels[i], 1);
    free(x);
}

/* -------------------------------------------------------------------- files */

/* Fails if a trained classifier does not come back bit for bit, with the same labels, from a
 * file laid out as classifier.h says. */
static void test_save_load_round_trip(void **state)
{
    fixture *t = *state;
    clf_classifier *a = new_task_clf(t, 4), *b = new_clf(t);
    clf_options o;
    unsigned char *bytes;
    size_t len, i;
    const float *pa;
    float *x;
    int la[NTRAIN + NNEW], lb[NTRAIN + NNEW], truth[NTRAIN];
    int c, h, w, k;

    task_data(t);
    task_options(&o, 2, 4, 1);
    CHECK(clf_train(a, t->train, &o), a);
    CHECK(clf_save(a, t->path), a);
    assert_int_equal(tu_count_entries(t->dir), 1); /* no clf.bin.tmp left */
    CHECK(clf_load(b, t->path, 7), b);             /* another max batch */
    assert_int_equal(clf_max_batch(b), 7);
    CHECK(clf_shape(b, &c, &h, &w, &k), b);
    assert_true(c == 1 && h == SIDE && w == SIDE && k == CLASSES);
    assert_int_equal(clf_param_count(b), NPARAMS);
    pa = cvae_stack_params(clf_stack(a), NULL);
    assert_memory_equal(pa, cvae_stack_params(clf_stack(b), NULL), NPARAMS * sizeof(float));

    x = all_images(t->train, truth);
    CHECK(clf_predict(a, x, NTRAIN, la), a);
    CHECK(clf_predict(b, x, NTRAIN, lb), b);
    assert_memory_equal(la, lb, NTRAIN * sizeof la[0]);
    free(x);

    /* The bytes: header, parameters little-endian, CRC-32 of the rest. */
    bytes = read_all(t->path, &len);
    assert_int_equal(len, FILE_SIZE);
    assert_memory_equal(bytes, "CVAECLF1", 8);
    assert_int_equal(tu_get_u32le(bytes + 8), 1);
    assert_int_equal(tu_get_u32le(bytes + 12), SIDE);
    assert_int_equal(tu_get_u32le(bytes + 16), SIDE);
    assert_int_equal(tu_get_u32le(bytes + 20), CLASSES);
    assert_int_equal(tu_get_u32le(bytes + 24), NPARAMS);
    assert_int_equal(tu_get_u32le(bytes + 28), 0);
    for (i = 0; i < NPARAMS; i++) {
        uint32_t bits;
        memcpy(&bits, &pa[i], 4);
        if (tu_get_u32le(bytes + 32 + 4 * i) != bits)
            fail_msg("parameter %zu is stored as 0x%08x, not 0x%08x", i,
                     (unsigned)tu_get_u32le(bytes + 32 + 4 * i), (unsigned)bits);
    }
    assert_int_equal(tu_get_u32le(bytes + len - 4), tu_crc32(0, bytes, len - 4));

    /* Saving the loaded one gives the same bytes. */
    free(bytes);
    CHECK(clf_save(b, t->path), b);
    bytes = read_all(t->path, &len);
    t->bytes = read_all(t->path, &t->nbytes);
    assert_int_equal(len, t->nbytes);
    assert_memory_equal(bytes, t->bytes, len);
    free(bytes);
}

/* Writes buf to the path, loads it into c, and fails unless the status is want, the message
 * names the file and c is still empty. */
static void expect_load(fixture *t, clf_classifier *c, const unsigned char *buf, size_t len,
                        cvae_status want, const char *what)
{
    cvae_status st;
    write_all(t->path, buf, len);
    st = clf_load(c, t->path, 4);
    if (st != want)
        fail_msg("%s: got %s (%s), want %s", what, cvae_status_string(st), clf_last_error(c),
                 cvae_status_string(want));
    if (!strstr(clf_last_error(c), t->path))
        fail_msg("%s: the message does not name the file: %s", what, clf_last_error(c));
    assert_int_equal(clf_param_count(c), 0);
    assert_null(clf_stack(c));
}

/* Fails if any malformed file is accepted, gets another status than its own, or leaves the
 * classifier anything but empty. */
static void test_malformed_files(void **state)
{
    fixture *t = *state;
    clf_classifier *c = new_clf(t);
    unsigned char *b;
    const size_t cuts[] = {0, 1, 7, 8, 20, 31, 32, 33, 1000, FILE_SIZE / 2, FILE_SIZE - 5,
                           FILE_SIZE - 4, FILE_SIZE - 1};
    char what[64];
    size_t i, n;

    saved_bytes(t);
    n = t->nbytes;
    b = malloc(n + 1);
    assert_non_null(b);

    expect_load(t, c, t->bytes, 0, CVAE_ERR_FORMAT, "empty file");

    memcpy(b, t->bytes, n);
    b[0] = 'X';
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "bad magic");
    assert_non_null(strstr(clf_last_error(c), "not a classifier file"));
    memcpy(b, t->bytes, n);
    b[7] = '2'; /* "CVAECLF2": a later format is still not this one */
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "magic CVAECLF2");

    for (i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(what, sizeof what, "truncated to %zu bytes", cuts[i]);
        expect_load(t, c, t->bytes, cuts[i], CVAE_ERR_FORMAT, what);
    }

    /* Counts and shapes that do not match (the CRC made right, so the check that fires is the
     * header's). */
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 24, NPARAMS + 1);
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "count + 1");
    assert_non_null(strstr(clf_last_error(c), "parameters"));
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 24, NPARAMS - 1);
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "count - 1");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 28, 1); /* 2^32 + NPARAMS */
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "count's high word");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 12, 12); /* a valid shape, but not the one the count is for */
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "height 12");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 20, 5);
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "5 classes");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 16, 10); /* not a multiple of 4 */
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "width 10");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 8, 0);
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "0 channels");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 20, 1);
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "1 class");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 12, 0xFFFFFFFCu); /* huge, and a multiple of 4 */
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "height 2^32 - 4");

    /* Damage the CRC cannot miss. */
    memcpy(b, t->bytes, n);
    b[32 + 4 * 1000] ^= 0x01;
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "a parameter's bit flipped");
    assert_non_null(strstr(clf_last_error(c), "checksum"));
    memcpy(b, t->bytes, n);
    b[n - 1] ^= 0x80;
    expect_load(t, c, b, n, CVAE_ERR_FORMAT, "the CRC's bit flipped");

    /* Non-finite parameters with a right CRC. */
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 32 + 4 * 5, 0x7FC00000u); /* a quiet NaN */
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_NUMERIC, "a NaN parameter");
    memcpy(b, t->bytes, n);
    tu_put_u32le(b + 32 + 4 * (NPARAMS - 1), 0xFF800000u); /* -infinity, the last parameter */
    tu_fix_crc(b, n);
    expect_load(t, c, b, n, CVAE_ERR_NUMERIC, "an infinite parameter");

    /* One byte too many. */
    memcpy(b, t->bytes, n);
    b[n] = 0;
    expect_load(t, c, b, n + 1, CVAE_ERR_FORMAT, "a trailing byte");
    assert_non_null(strstr(clf_last_error(c), "trailing"));

    /* Missing file, directory. */
    assert_int_equal(unlink(t->path), 0);
    assert_int_equal(clf_load(c, t->path, 4), CVAE_ERR_IO);
    assert_non_null(strstr(clf_last_error(c), t->path));
    assert_int_equal(clf_load(c, t->dir, 4), CVAE_ERR_IO);
    assert_non_null(strstr(clf_last_error(c), t->dir));
    assert_int_equal(clf_param_count(c), 0);

    /* After all that, the handle loads the good file; a second load is refused. */
    write_all(t->path, t->bytes, n);
    CHECK(clf_load(c, t->path, 4), c);
    assert_int_equal(clf_param_count(c), NPARAMS);
    assert_int_equal(clf_load(c, t->path, 4), CVAE_ERR_STATE);
    assert_int_equal(clf_load(c, NULL, 4), CVAE_ERR_INVALID_ARG);
    free(b);
}

/* Fails unless the file at t->path still holds t->bytes and no temporary file is left. */
static void expect_previous_file(fixture *t)
{
    size_t len;
    unsigned char *now = read_all(t->path, &len);
    char tmp[160];
    assert_int_equal(len, t->nbytes);
    assert_memory_equal(now, t->bytes, len);
    free(now);
    snprintf(tmp, sizeof tmp, "%s.tmp", t->path);
    assert_int_equal(access(tmp, F_OK), -1);
}

/* Fails if a save that cannot complete replaces or damages the previous file, leaves its
 * temporary file, or gets another status than its own. */
static void test_failed_save_keeps_previous_file(void **state)
{
    fixture *t = *state;
    clf_classifier *c;
    char tmp[160], missing[160];
    float *p;

    saved_bytes(t);
    c = new_task_clf(t, 11); /* other parameters: a successful save would change the file */
    snprintf(tmp, sizeof tmp, "%s.tmp", t->path);

    /* The temporary file cannot be created: a directory is in its place. */
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_equal(clf_save(c, t->path), CVAE_ERR_IO);
    assert_non_null(strstr(clf_last_error(c), t->path));
    assert_int_equal(rmdir(tmp), 0);
    expect_previous_file(t);

    /* The disk is full: the temporary file is a link to /dev/full, every write fails. */
    if (access("/dev/full", W_OK) == 0) {
        assert_int_equal(symlink("/dev/full", tmp), 0);
        assert_int_equal(clf_save(c, t->path), CVAE_ERR_IO);
        assert_non_null(strstr(clf_last_error(c), t->path));
        expect_previous_file(t);
    }

    /* A parameter that is not finite: nothing is written. */
    p = cvae_stack_params(clf_stack(c), NULL);
    p[100] = NAN;
    assert_int_equal(clf_save(c, t->path), CVAE_ERR_NUMERIC);
    expect_previous_file(t);
    p[100] = 0.0f;

    /* A directory that does not exist. */
    snprintf(missing, sizeof missing, "%s/no/such/dir/clf.bin", t->dir);
    assert_int_equal(clf_save(c, missing), CVAE_ERR_IO);
    assert_non_null(strstr(clf_last_error(c), missing));

    /* And a good save does replace it. */
    CHECK(clf_save(c, t->path), c);
    assert_int_equal(tu_count_entries(t->dir), 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_learns_quadrants),
        T(test_training_is_deterministic),
        T(test_training_refuses_bad_input),
        T(test_predict_is_argmax),
        T(test_save_load_round_trip),
        T(test_malformed_files),
        T(test_failed_save_keeps_previous_file),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
