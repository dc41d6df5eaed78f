#define _POSIX_C_SOURCE 200809L
/*
 * test_serialize.c - the model file: saving and loading a model with its optimizer state.
 *
 * A tiny model that uses every layer kind (so every kind's hyper-parameters are stored) is
 * saved after some Adam or SGD steps and loaded into fresh handles: parameters, beta, step
 * counts, optimizer options and moments must come back bit for bit, saving the loaded model
 * must give the same bytes, and training must then continue exactly as it would have without
 * the round trip, including across epochs of a shuffled dataset. Every single-byte change,
 * every truncation and any trailing byte must be refused, leaving the model empty; a newer
 * format version, a foreign file, a missing file and a directory get their own statuses.
 * Re-checksummed corruptions (which pass the CRC and reach the parser) must never crash and
 * must never make load allocate memory the file cannot account for. A failed save must leave
 * the previous file intact and no temporary file behind.
 *
 * Left out: the numerical content of the parameters (test_model.c), the optimizer formulas
 * (test_optim.c).
 *
 * Write failures: a full device (the temporary file a symlink to /dev/full) and writes that
 * fail half-way (RLIMIT_FSIZE in a child) must fail as I/O errors like any other failed save.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

/* Fails the test with the model's message unless st is CVAE_OK. */
#define CHECK(st, m)                                                                               \
    do {                                                                                           \
        cvae_status st_ = (st);                                                                    \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s", cvae_status_string(st_), cvae_model_last_error(m));                 \
    } while (0)

#define CHECK_OPT(st, o)                                                                           \
    do {                                                                                           \
        cvae_status st_ = (st);                                                                    \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s", cvae_status_string(st_), cvae_optimizer_last_error(o));             \
    } while (0)

/*
 * The tiny model: 1 x 5 x 4 images, latent 2, batches of up to 4, every layer kind:
 *   encoder: conv2d(1->2, k3x2 s2x1 p1x0) 2x3x3, leaky_relu(0.2), flatten 18, linear(8),
 *            relu, linear(4)                                      14 + 152 + 36 = 202
 *   decoder: linear(2 -> 12), tanh, reshape 3x2x2, conv_transpose2d(3->1, k5x2 s2x2 p1x0)
 *            1x5x4, sigmoid                                       36 + 31 = 67
 * 269 parameters; a file with Adam's state is about 3 kB.
 */
#define IC 1
#define IH 5
#define IW 4
#define IMG (IC * IH * IW)
#define LAT 2
#define MAXB 4
#define NPARAMS 269
#define SLOPE 0.2f

/* ------------------------------------------------------------------ helpers */

static cvae_model *tiny_model(uint64_t seed)
{
    cvae_model *m = NULL;
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_model_create(&m), CVAE_OK);
    tu_keep(TU_KEEP_MODEL, m);
    tu_plain_recipe(m); /* files of version 1, whose offsets the tests know */
    assert_int_equal(cvae_stack_create(&enc), CVAE_OK);
    assert_int_equal(cvae_stack_create(&dec), CVAE_OK);
    tu_add_layer(enc, cvae_layer_create_conv2d(&l, 2, 3, 2, 2, 1, 1, 0), &l);
    tu_add_layer(enc, cvae_layer_create_leaky_relu(&l, SLOPE), &l);
    tu_add_layer(enc, cvae_layer_create_flatten(&l), &l);
    tu_add_layer(enc, cvae_layer_create_linear(&l, 8), &l);
    tu_add_layer(enc, cvae_layer_create_relu(&l), &l);
    tu_add_layer(enc, cvae_layer_create_linear(&l, 2 * LAT), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, 12), &l);
    tu_add_layer(dec, cvae_layer_create_tanh(&l), &l);
    tu_add_layer(dec, cvae_layer_create_reshape(&l, 3, 2, 2), &l);
    tu_add_layer(dec, cvae_layer_create_conv_transpose2d(&l, 1, 5, 2, 2, 2, 1, 0), &l);
    tu_add_layer(dec, cvae_layer_create_sigmoid(&l), &l);
    CHECK(cvae_model_init_stacks(m, enc, dec, IC, IH, IW, LAT, MAXB, seed), m);
    assert_int_equal(cvae_model_param_count(m), NPARAMS);
    return m;
}

/* k training steps on batches drawn from seed (batch i from seed + i). */
static void train(cvae_model *m, cvae_optimizer *o, int k, uint64_t seed)
{
    float x[MAXB * IMG];
    int i;
    for (i = 0; i < k; i++) {
        tu_fill_uniform(x, MAXB * IMG, seed + (uint64_t)i);
        CHECK(cvae_model_train_step(m, o, x, MAXB, NULL, NULL), m);
    }
}

/* The whole content of a file; the caller frees it. */
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
    buf = tu_keep(TU_KEEP_MEMORY, malloc((size_t)size + 1));
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

/* Overwrites n bytes at offset off of an existing file in place. Rewriting whole files would
 * do the same, but truncating and rewriting thousands of files is slow on some file systems
 * (ext4 with discard: milliseconds each), and these tests load thousands of variants. */
static void patch_file(const char *path, size_t off, const void *data, size_t n)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}


/* Everything an optimizer load may change, for checking that a failed one changed nothing. */
typedef struct opt_snap {
    double options[CVI_OPT_NOPTIONS];
    uint64_t t;
    float m[NPARAMS + 1], v[NPARAMS + 1];
} opt_snap;

static void snap_opt(cvae_optimizer *o, opt_snap *s)
{
    cvi_optimizer_state st;
    int i;
    memset(s, 0, sizeof *s);
    cvi_optimizer_get_state(o, &st);
    assert_true(st.n <= NPARAMS + 1);
    for (i = 0; i < CVI_OPT_NOPTIONS; i++)
        s->options[i] = *st.options[i];
    s->t = *st.t;
    memcpy(s->m, st.m, st.n * sizeof(float));
    if (st.v)
        memcpy(s->v, st.v, st.n * sizeof(float));
}

static void expect_same_opt(cvae_optimizer *a, cvae_optimizer *b)
{
    opt_snap sa, sb;
    snap_opt(a, &sa);
    snap_opt(b, &sb);
    assert_int_equal(cvae_optimizer_get_kind(a), cvae_optimizer_get_kind(b));
    assert_memory_equal(&sa, &sb, sizeof sa);
}

/* Model a and b hold the same architecture, parameters, beta and step count. */
static void expect_same_model(cvae_model *a, cvae_model *b)
{
    cvae_stack *sa[2], *sb[2];
    double ba, bb;
    int s, i, ca[5], cb[5];
    CHECK(cvae_model_shape(a, &ca[0], &ca[1], &ca[2], &ca[3], NULL), a);
    CHECK(cvae_model_shape(b, &cb[0], &cb[1], &cb[2], &cb[3], NULL), b);
    assert_memory_equal(ca, cb, 4 * sizeof ca[0]);
    assert_int_equal(cvae_model_param_count(a), cvae_model_param_count(b));
    assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL),
                        cvae_model_param_count(a) * sizeof(float));
    CHECK(cvae_model_get(a, CVAE_MODEL_BETA, &ba), a);
    CHECK(cvae_model_get(b, CVAE_MODEL_BETA, &bb), b);
    assert_memory_equal(&ba, &bb, sizeof ba);
    assert_int_equal(cvae_model_steps(a), cvae_model_steps(b));
    sa[0] = cvae_model_encoder(a);
    sa[1] = cvae_model_decoder(a);
    sb[0] = cvae_model_encoder(b);
    sb[1] = cvae_model_decoder(b);
    for (s = 0; s < 2; s++) {
        assert_int_equal(cvae_stack_layer_count(sa[s]), cvae_stack_layer_count(sb[s]));
        for (i = 0; i < cvae_stack_layer_count(sa[s]); i++) {
            cvae_layer *la = cvae_stack_layer(sa[s], i), *lb = cvae_stack_layer(sb[s], i);
            assert_int_equal(cvae_layer_get_kind(la), cvae_layer_get_kind(lb));
            assert_int_equal(cvae_layer_param_count(la), cvae_layer_param_count(lb));
            assert_int_equal(cvae_layer_output_shape(la, &ca[0], &ca[1], &ca[2]), CVAE_OK);
            assert_int_equal(cvae_layer_output_shape(lb, &cb[0], &cb[1], &cb[2]), CVAE_OK);
            assert_memory_equal(ca, cb, 3 * sizeof ca[0]);
            if (cvae_layer_get_kind(la) == CVAE_LAYER_LEAKY_RELU) {
                assert_int_equal(cvae_layer_get_option(la, CVAE_LAYER_LEAKY_SLOPE, &ba), CVAE_OK);
                assert_int_equal(cvae_layer_get_option(lb, CVAE_LAYER_LEAKY_SLOPE, &bb), CVAE_OK);
                assert_true(ba == bb && bb == (double)SLOPE);
            }
        }
    }
}

/* ------------------------------------------------------------------ fixture */

typedef struct tmp {
    char dir[64];
    char path[128];       /* dir/model.cvae */
    char other[128];      /* dir/other.cvae */
    unsigned char *bytes; /* a saved file, for the child processes (run_limited) */
    size_t nbytes;
} tmp;

static int setup_dir(void **state)
{
    tmp *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    if (tu_tmpdir_make(t->dir, sizeof t->dir, "test_serialize") != 0) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/model.cvae", t->dir);
    snprintf(t->other, sizeof t->other, "%s/other.cvae", t->dir);
    *state = t;
    return 0;
}

/* Frees what the test kept, removes the directory and what the test left in it. */
static int teardown_dir(void **state)
{
    tmp *t = *state;
    tu_release_all();
    tu_tmpdir_remove(t->dir);
    free(t);
    return 0;
}

/* A saved tiny model with 3 steps of Adam (non-default options) and beta 0.35. */
static void save_trained(const char *path, cvae_model **mout, cvae_optimizer **oout)
{
    cvae_model *m = tiny_model(5);
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    CHECK(cvae_model_set(m, CVAE_MODEL_BETA, 0.35), m);
    CHECK_OPT(cvae_optimizer_set(o, CVAE_OPT_LR, 3e-3), o);
    CHECK_OPT(cvae_optimizer_set(o, CVAE_OPT_BETA2, 0.99), o);
    CHECK_OPT(cvae_optimizer_set(o, CVAE_OPT_WEIGHT_DECAY, 0.01), o);
    CHECK_OPT(cvae_optimizer_set(o, CVAE_OPT_CLIP_NORM, 5.0), o);
    train(m, o, 3, 100);
    CHECK(cvae_model_save(m, o, path), m);
    if (mout)
        *mout = m;
    if (oout)
        *oout = o;
}

/* ------------------------------------------------------------------ round trips */

/* Fails if loading does not restore the architecture (every layer kind and its
 * hyper-parameters), parameters, beta, step count and Adam's options, step count and moments
 * bit for bit, if saving the loaded pair gives other bytes, or if the loaded pair does not go
 * on training bit-identically (which needs the eps generator's state too). */
static void test_round_trip_adam(void **state)
{
    tmp *t = *state;
    cvae_model *a, *b = tu_new_model(), *c = tu_new_model();
    cvae_optimizer *oa, *ob = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    unsigned char *f1, *f2;
    size_t n1, n2;
    double ra, ka, rb, kb;
    int i;
    save_trained(t->path, &a, &oa);
    CHECK(cvae_model_load(b, t->path, MAXB), b);
    CHECK_OPT(cvae_optimizer_load(ob, t->path), ob);
    expect_same_model(a, b);
    expect_same_opt(oa, ob);
    assert_int_equal(cvae_model_steps(b), 3);
    assert_int_equal(cvae_optimizer_steps(ob), 3);
    assert_string_equal(cvae_model_last_error(b), "");
    /* Another max batch changes nothing but the maximum. */
    CHECK(cvae_model_load(c, t->path, 1), c);
    expect_same_model(a, c);
    CHECK(cvae_model_shape(c, NULL, NULL, NULL, NULL, &i), c);
    assert_int_equal(i, 1);
    /* The loaded pair saves to the same bytes. */
    CHECK(cvae_model_save(b, ob, t->other), b);
    f1 = read_all(t->path, &n1);
    f2 = read_all(t->other, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(f1, f2, n1);
    /* And trains on identically. */
    for (i = 0; i < 4; i++) {
        float x[MAXB * IMG];
        tu_fill_uniform(x, MAXB * IMG, 500 + (uint64_t)i);
        CHECK(cvae_model_train_step(a, oa, x, MAXB, &ra, &ka), a);
        CHECK(cvae_model_train_step(b, ob, x, MAXB, &rb, &kb), b);
        assert_memory_equal(&ra, &rb, sizeof ra);
        assert_memory_equal(&ka, &kb, sizeof ka);
        assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL),
                            NPARAMS * sizeof(float));
    }
    expect_same_opt(oa, ob);
}

/* Fails if SGD's options, step count and momentum buffer do not survive a round trip (the
 * continued training would differ), or if a file saved without an optimizer does not load
 * as a model, or gives optimizer state to cvae_optimizer_load (CVAE_ERR_STATE). */
static void test_round_trip_sgd_and_model_only(void **state)
{
    tmp *t = *state;
    cvae_model *a = tiny_model(9), *b = tu_new_model(), *c = tu_new_model();
    cvae_optimizer *oa = tu_new_opt(CVAE_OPTIMIZER_SGD, NPARAMS);
    cvae_optimizer *ob = tu_new_opt(CVAE_OPTIMIZER_SGD, NPARAMS);
    opt_snap before, after;
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_MOMENTUM, 0.75), oa);
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_LR, 0.05), oa);
    train(a, oa, 2, 7);
    CHECK(cvae_model_save(a, oa, t->path), a);
    CHECK(cvae_model_load(b, t->path, MAXB), b);
    CHECK_OPT(cvae_optimizer_load(ob, t->path), ob);
    expect_same_model(a, b);
    expect_same_opt(oa, ob);
    train(a, oa, 3, 70);
    train(b, ob, 3, 70);
    assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL),
                        NPARAMS * sizeof(float));

    CHECK(cvae_model_save(a, NULL, t->other), a);
    CHECK(cvae_model_load(c, t->other, MAXB), c);
    expect_same_model(a, c);
    snap_opt(ob, &before);
    assert_int_equal(cvae_optimizer_load(ob, t->other), CVAE_ERR_STATE);
    assert_non_null(strstr(cvae_optimizer_last_error(ob), t->other));
    snap_opt(ob, &after);
    assert_memory_equal(&before, &after, sizeof before);
}

/* Resume equivalence on a shuffled dataset. */
#define RCOUNT 40
#define RBATCH 4 /* = MAXB; 10 batches an epoch */
#define RSEED 1000

static void train_epochs(cvae_model *m, cvae_optimizer *o, cvae_dataset *ds, int first, int last)
{
    float x[RBATCH * IMG];
    int e, b;
    for (e = first; e < last; e++) {
        assert_int_equal(cvae_dataset_shuffle(ds, RSEED + (uint64_t)e), CVAE_OK);
        for (b = 0; b < RCOUNT / RBATCH; b++) {
            assert_int_equal(cvae_dataset_batch(ds, b * RBATCH, RBATCH, x, NULL), CVAE_OK);
            CHECK(cvae_model_train_step(m, o, x, RBATCH, NULL, NULL), m);
        }
    }
}

/* Fails if 2 epochs, save, load into fresh handles and 2 more epochs do not give parameters
 * bit-identical to 4 epochs straight (any state lost or altered by the file shows). */
static void test_resume_equivalence(void **state)
{
    tmp *t = *state;
    cvae_model *straight = tiny_model(77), *first = tiny_model(77), *resumed = tu_new_model();
    cvae_optimizer *os = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *of = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *orr = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_dataset *ds = NULL;
    uint8_t px[RCOUNT * IMG];
    uint64_t s = 31337;
    size_t i;
    for (i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(tu_next_u64(&s) >> 56);
    assert_int_equal(cvae_dataset_create(&ds), CVAE_OK);
    tu_keep(TU_KEEP_DATASET, ds);
    assert_int_equal(cvae_dataset_set_u8(ds, RCOUNT, IC, IH, IW, px, NULL), CVAE_OK);
    CHECK(cvae_model_set(straight, CVAE_MODEL_BETA, 0.5), straight);
    CHECK(cvae_model_set(first, CVAE_MODEL_BETA, 0.5), first);
    train_epochs(straight, os, ds, 0, 4);
    train_epochs(first, of, ds, 0, 2);
    CHECK(cvae_model_save(first, of, t->path), first);
    CHECK(cvae_model_load(resumed, t->path, MAXB), resumed);
    CHECK_OPT(cvae_optimizer_load(orr, t->path), orr);
    train_epochs(resumed, orr, ds, 2, 4);
    assert_int_equal(cvae_model_steps(resumed), 4 * RCOUNT / RBATCH);
    assert_memory_equal(cvae_model_params(straight, NULL), cvae_model_params(resumed, NULL),
                        NPARAMS * sizeof(float));
    expect_same_opt(os, orr);
}

/* ------------------------------------------------------------------ corrupt files */

/* Loads path into the empty model m: must fail, leave m empty, and name the file. */
static cvae_status expect_load_fails(cvae_model *m, const char *path, const char *what)
{
    cvae_status st = cvae_model_load(m, path, MAXB);
    if (st == CVAE_OK)
        fail_msg("%s: loaded", what);
    if (cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL) != CVAE_ERR_STATE ||
        cvae_model_param_count(m) != 0)
        fail_msg("%s: a failed load (%s) left the model non-empty", what, cvae_status_string(st));
    if (!strstr(cvae_model_last_error(m), path))
        fail_msg("%s: message \"%s\" does not name the file", what, cvae_model_last_error(m));
    return st;
}

/* Fails if any single-byte change of a saved file (each offset, xor 0x01 and xor 0x80) is
 * loaded, gives a status other than CVAE_ERR_FORMAT (or CVAE_ERR_VERSION in the version
 * field), leaves the model non-empty, or changes an optimizer that tries to load it. */
static void test_every_byte_flip_rejected(void **state)
{
    static const unsigned char masks[2] = {0x01, 0x80};
    tmp *t = *state;
    cvae_model *m = tu_new_model();
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    static opt_snap before, after;
    unsigned char *good;
    size_t len, off;
    int k;
    save_trained(t->path, NULL, NULL);
    good = read_all(t->path, &len);
    snap_opt(o, &before);
    write_all(t->other, good, len);
    for (off = 0; off < len; off++) {
        for (k = 0; k < 2; k++) {
            const unsigned char flipped = (unsigned char)(good[off] ^ masks[k]);
            char what[64];
            cvae_status st;
            snprintf(what, sizeof what, "byte %zu of %zu xor 0x%02x", off, len, masks[k]);
            patch_file(t->other, off, &flipped, 1);
            st = expect_load_fails(m, t->other, what);
            if (st != CVAE_ERR_FORMAT && !(st == CVAE_ERR_VERSION && off >= 8 && off < 12))
                fail_msg("%s: %s, expected a format error", what, cvae_status_string(st));
            if (cvae_optimizer_load(o, t->other) == CVAE_OK)
                fail_msg("%s: the optimizer loaded it", what);
            snap_opt(o, &after);
            if (memcmp(&before, &after, sizeof before) != 0)
                fail_msg("%s: a failed optimizer load changed the optimizer", what);
            patch_file(t->other, off, &good[off], 1);
        }
    }
    /* The unchanged file still loads into the same handle. */
    CHECK(cvae_model_load(m, t->path, MAXB), m);
}

/* Fails if a file cut at any length, or followed by any trailing bytes, is loaded or gives a
 * status other than CVAE_ERR_FORMAT. */
static void test_truncated_and_trailing(void **state)
{
    tmp *t = *state;
    cvae_model *m = tu_new_model();
    unsigned char *good, *big;
    size_t len, cut;
    char what[64];
    save_trained(t->path, NULL, NULL);
    good = read_all(t->path, &len);
    write_all(t->other, good, len);
    for (cut = len; cut-- > 0;) {
        snprintf(what, sizeof what, "cut to %zu of %zu bytes", cut, len);
        assert_int_equal(truncate(t->other, (off_t)cut), 0);
        if (expect_load_fails(m, t->other, what) != CVAE_ERR_FORMAT)
            fail_msg("%s: not a format error", what);
    }
    big = tu_keep(TU_KEEP_MEMORY, malloc(2 * len));
    memcpy(big, good, len);
    memcpy(big + len, good, len);
    write_all(t->other, good, len);
    for (cut = len + 1; cut <= 2 * len; cut++) {
        FILE *f;
        if (cut > len + 8 && cut < 2 * len)
            continue; /* 1 to 8 trailing bytes, and a whole second copy */
        f = fopen(t->other, "ab");
        assert_non_null(f);
        assert_int_equal(fwrite(big + len, 1, cut - len, f), cut - len);
        assert_int_equal(fclose(f), 0);
        snprintf(what, sizeof what, "%zu trailing bytes", cut - len);
        if (expect_load_fails(m, t->other, what) != CVAE_ERR_FORMAT)
            fail_msg("%s: not a format error", what);
        assert_int_equal(truncate(t->other, (off_t)len), 0);
    }
}

/* Fails if the header fields are not checked with the right status even when the CRC is
 * right: a newer version gives CVAE_ERR_VERSION, version 0, unknown flags, a wrong payload
 * length or an optimizer flag that disagrees with the content give CVAE_ERR_FORMAT. */
static void test_header_fields(void **state)
{
    static const struct {
        size_t at;    /* byte offset of a little-endian u32 */
        uint32_t add; /* added to it */
        cvae_status want;
        const char *what;
    } cases[] = {
        {8, 5, CVAE_ERR_VERSION, "version 6"},
        {8, 4, CVAE_ERR_FORMAT, "version 5 without its likelihood, recipe and average sections"},
        {8, 3, CVAE_ERR_FORMAT, "version 4 without its likelihood and recipe sections"},
        {8, 2, CVAE_ERR_FORMAT, "version 3 without its likelihood section"},
        {8, 0xFFFFFFFEu, CVAE_ERR_VERSION, "version 0xffffffff"},
        {8, 0xFFFFFFFFu, CVAE_ERR_FORMAT, "version 0"},
        {12, 2, CVAE_ERR_FORMAT, "unknown flag 2"},
        {12, 0x80000000u, CVAE_ERR_FORMAT, "unknown flag 31"},
        {12, 0xFFFFFFFFu, CVAE_ERR_FORMAT, "optimizer flag cleared"},
        {16, 1, CVAE_ERR_FORMAT, "payload length + 1"},
        {16, 0xFFFFFFFFu, CVAE_ERR_FORMAT, "payload length - 1"},
        {20, 1, CVAE_ERR_FORMAT, "payload length + 2^32"},
    };
    tmp *t = *state;
    cvae_model *m = tu_new_model(), *plain = tiny_model(3);
    unsigned char *good, *bad;
    size_t len, i;
    save_trained(t->path, NULL, NULL);
    good = read_all(t->path, &len);
    assert_int_equal(tu_get_u32le(good + 8), 1);  /* format version 1 */
    assert_int_equal(tu_get_u32le(good + 12), 1); /* optimizer state present */
    assert_true(tu_get_u32le(good + 16) == len - 28 && tu_get_u32le(good + 20) == 0);
    bad = tu_keep(TU_KEEP_MEMORY, malloc(len));
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cvae_status st;
        memcpy(bad, good, len);
        tu_put_u32le(bad + cases[i].at, tu_get_u32le(bad + cases[i].at) + cases[i].add);
        tu_fix_crc(bad, len);
        write_all(t->other, bad, len);
        st = expect_load_fails(m, t->other, cases[i].what);
        if (st != cases[i].want)
            fail_msg("%s: %s, expected %s", cases[i].what, cvae_status_string(st),
                     cvae_status_string(cases[i].want));
    }
    /* The optimizer flag set on a file without optimizer state. */
    CHECK(cvae_model_save(plain, NULL, t->path), plain);
    good = read_all(t->path, &len);
    assert_int_equal(tu_get_u32le(good + 12), 0);
    tu_put_u32le(good + 12, 1);
    tu_fix_crc(good, len);
    write_all(t->other, good, len);
    assert_int_equal(expect_load_fails(m, t->other, "optimizer flag set"), CVAE_ERR_FORMAT);
}

/* Offsets of the optimizer section of a file saved by save_trained (Adam over NPARAMS):
 * kind (4), 7 options (8 each), t (8), n (8), m and v (4 * NPARAMS each), then the CRC. */
#define OPT_SECTION (4 + 8 * CVI_OPT_NOPTIONS + 8 + 8 + 8 * NPARAMS)

/* Fails if a file whose CRC is right but whose content is out of range is accepted: a
 * non-finite parameter (model load), an lr of 0 or a NaN moment (optimizer load); or if a
 * failed optimizer load changes the optimizer. */
static void test_bad_values_with_good_crc(void **state)
{
    tmp *t = *state;
    cvae_model *m = tu_new_model();
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    static opt_snap before, after;
    const uint32_t nan_bits = 0x7FC00000u;
    unsigned char *good, *bad;
    size_t len, opt_at, params_at;
    double zero = 0.0;
    cvae_status st;
    save_trained(t->path, NULL, NULL);
    good = read_all(t->path, &len);
    bad = tu_keep(TU_KEEP_MEMORY, malloc(len));
    opt_at = len - 4 - OPT_SECTION;
    params_at = opt_at - 4 * NPARAMS;
    assert_int_equal(tu_get_u32le(good + opt_at), CVAE_OPTIMIZER_ADAM);
    assert_int_equal(tu_get_u32le(good + params_at - 8), NPARAMS); /* the count before them */
    snap_opt(o, &before);

    memcpy(bad, good, len);
    tu_put_u32le(bad + params_at + 4 * 100, nan_bits);
    tu_fix_crc(bad, len);
    write_all(t->other, bad, len);
    assert_int_equal(expect_load_fails(m, t->other, "NaN parameter"), CVAE_ERR_NUMERIC);

    memcpy(bad, good, len);
    memcpy(bad + opt_at + 4, &zero, 8); /* lr = +0.0, little-endian on the hosts we run on */
    tu_fix_crc(bad, len);
    write_all(t->other, bad, len);
    assert_int_equal(cvae_optimizer_load(o, t->other), CVAE_ERR_FORMAT);
    snap_opt(o, &after);
    assert_memory_equal(&before, &after, sizeof before);

    memcpy(bad, good, len);
    tu_put_u32le(bad + opt_at + 76 + 4 * (NPARAMS + 3), nan_bits); /* v[3] */
    tu_fix_crc(bad, len);
    write_all(t->other, bad, len);
    st = cvae_optimizer_load(o, t->other);
    assert_true(st == CVAE_ERR_FORMAT || st == CVAE_ERR_NUMERIC);
    snap_opt(o, &after);
    assert_memory_equal(&before, &after, sizeof before);

    /* A negative Adam second moment (found by fuzzing: the next step took the square root of
     * it and left NaN parameters behind a CVAE_OK). */
    memcpy(bad, good, len);
    tu_put_u32le(bad + opt_at + 76 + 4 * (NPARAMS + 5), 0xBF800000u); /* v[5] = -1 */
    tu_fix_crc(bad, len);
    write_all(t->other, bad, len);
    assert_int_equal(cvae_optimizer_load(o, t->other), CVAE_ERR_NUMERIC);
    if (!strstr(cvae_optimizer_last_error(o), "second moment 5 is negative"))
        fail_msg("message: %s", cvae_optimizer_last_error(o));
    snap_opt(o, &after);
    assert_memory_equal(&before, &after, sizeof before);
    /* -0.0 is a sum of squares that underflowed: accepted. */
    memcpy(bad, good, len);
    tu_put_u32le(bad + opt_at + 76 + 4 * (NPARAMS + 5), 0x80000000u);
    tu_fix_crc(bad, len);
    write_all(t->other, bad, len);
    assert_int_equal(cvae_optimizer_load(o, t->other), CVAE_OK);
}

/* Fails if an optimizer that has stepped (and so knows how large its moments are) loads a
 * file whose moments make the next update overflow (m[5] = 3e38 with v[5] = 0: finite, so the
 * load takes them) and then takes that step: it must refuse it and leave the parameters as
 * they were, which it can only do if loading made it forget what it knew of its moments. */
static void test_loaded_moments_checked(void **state)
{
    tmp *t = *state;
    cvae_model *a;
    cvae_optimizer *oa;
    unsigned char *good, *bad;
    size_t len, opt_at;
    const float huge = 3e38f;
    uint32_t huge_bits;
    float x[MAXB * IMG], *before = tu_keep(TU_KEEP_MEMORY, malloc(NPARAMS * sizeof(float)));
    save_trained(t->path, &a, &oa);
    good = read_all(t->path, &len);
    bad = tu_keep(TU_KEEP_MEMORY, malloc(len));
    memcpy(bad, good, len);
    opt_at = len - 4 - OPT_SECTION;
    memcpy(&huge_bits, &huge, sizeof huge_bits);
    tu_put_u32le(bad + opt_at + 76 + 4 * 5, huge_bits);       /* m[5] */
    tu_put_u32le(bad + opt_at + 76 + 4 * (NPARAMS + 5), 0u); /* v[5] */
    tu_fix_crc(bad, len);
    write_all(t->other, bad, len);
    CHECK_OPT(cvae_optimizer_load(oa, t->other), oa);
    memcpy(before, cvae_model_params(a, NULL), NPARAMS * sizeof(float));
    tu_fill_uniform(x, MAXB * IMG, 77);
    assert_int_equal(cvae_model_train_step(a, oa, x, MAXB, NULL, NULL), CVAE_ERR_NUMERIC);
    assert_memory_equal(cvae_model_params(a, NULL), before, NPARAMS * sizeof(float));
}

/*
 * Runs fn in a child process that cannot allocate much more than LIMIT_MB, so that a load
 * allocating what the file cannot account for fails fast (as CVAE_ERR_NOMEM) instead of
 * touching gigabytes, and a crash fails the test instead of ending the program. The child
 * reports a failure as a message through a pipe.
 *
 * The limit is RLIMIT_AS over the child's current size, except under Address- and
 * ThreadSanitizer: their reserved shadow memory makes RLIMIT_AS unusable (an mmap failing
 * inside an out-of-memory report deadlocks or dies), so there the sanitizer's default options
 * (below) make every allocation above LIMIT_MB fail with NULL instead, for the whole program.
 */
#define LIMIT_MB 256
#define LIMIT_STR "256"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif

#define SANITIZER_LIMITS "allocator_may_return_null=1:max_allocation_size_mb=" LIMIT_STR
#ifdef TEST_ASAN
/* Read by AddressSanitizer at start-up; it must have external linkage. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return SANITIZER_LIMITS;
}
#endif
/* ThreadSanitizer reserves its shadow in the same way, and dies on a failed
 * allocation unless told to return NULL: the same treatment. */
#ifdef TEST_TSAN
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return SANITIZER_LIMITS;
}
#endif

/* Caps the address space of this (child) process; returns 0, or -1 with a message. */
static int limit_memory(char *msg, size_t len)
{
#if defined(TEST_ASAN) || defined(TEST_TSAN)
    (void)msg;
    (void)len;
    return 0;
#else
    struct rlimit rl;
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    int ok = f && fscanf(f, "%lu", &pages) == 1;
    if (f)
        fclose(f);
    if (!ok) {
        snprintf(msg, len, "cannot read /proc/self/statm");
        return -1;
    }
    rl.rlim_cur = rl.rlim_max =
        (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)LIMIT_MB * 1048576u;
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        snprintf(msg, len, "setrlimit failed");
        return -1;
    }
    return 0;
#endif
}

typedef int (*child_fn)(tmp *t, char *msg, size_t len);

#define SKIP_RC 77 /* the child could not set its limit (no /proc): skip, not fail */

/* Writes n bytes at offset off of path, creating the file when create is 1; 0 or -1. For the
 * children, which must not use cmocka's assertions: a failing one would jump into the test
 * runner inside the child, which would then go on running the other tests. */
static int child_write(const char *path, int create, size_t off, const void *data, size_t n)
{
    FILE *f = fopen(path, create ? "wb" : "r+b");
    int ok = f && fseek(f, (long)off, SEEK_SET) == 0 && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* A child's own copy of t->bytes, or NULL with a message. */
static unsigned char *child_copy(const tmp *t, char *msg, size_t len)
{
    unsigned char *buf = malloc(t->nbytes);
    if (!buf)
        snprintf(msg, len, "out of memory");
    else
        memcpy(buf, t->bytes, t->nbytes);
    return buf;
}

static void run_limited(tmp *t, child_fn fn)
{
    char msg[512] = "";
    int fds[2], status = 0;
    ssize_t got;
    pid_t pid;
    if (tu_under_valgrind()) {
        print_message("skipped under valgrind: a child with an address-space limit\n");
        skip();
    }
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc = SKIP_RC;
        close(fds[0]);
        if (limit_memory(msg, sizeof msg) == 0)
            rc = fn(t, msg, sizeof msg);
        if (rc != 0 && write(fds[1], msg, strlen(msg)) < 0)
            rc = 3;
        close(fds[1]);
        _exit(rc);
    }
    close(fds[1]);
    got = read(fds[0], msg, sizeof msg - 1);
    msg[got > 0 ? got : 0] = '\0';
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("the child died of signal %d (a crash, or an allocation beyond %d MB)",
                 WIFSIGNALED(status) ? WTERMSIG(status) : -1, LIMIT_MB);
    if (WEXITSTATUS(status) == SKIP_RC) {
        print_message("skipped: %s\n", msg);
        skip();
    }
    if (WEXITSTATUS(status) != 0)
        fail_msg("%s", msg[0] ? msg : "the child failed without a message");
}

/* The first encoder layer's first hyper-parameter (conv2d out_channels) is at this offset:
 * header 24, C H W L 16, beta 8, steps 8, generator 32, layer count 4, kind 4, count 4. */
#define ENC0_HP0 (24 + 16 + 8 + 8 + 32 + 4 + 4 + 4)

static int child_oversized_architecture(tmp *t, char *msg, size_t len)
{
    cvae_model *m = NULL;
    unsigned char *buf = child_copy(t, msg, len);
    const size_t n = t->nbytes;
    cvae_status st;
    if (!buf)
        return 1;
    /* conv2d out_channels 2 -> 2 + 2^23: the stored architecture now implies ~600 million
     * parameters (2.4 GB), while the file stores 269. */
    if (tu_get_u32le(buf + ENC0_HP0) != 2) {
        snprintf(msg, len, "unexpected layout: out_channels %u", (unsigned)tu_get_u32le(buf + ENC0_HP0));
        return 1;
    }
    buf[ENC0_HP0 + 2] ^= 0x80;
    tu_fix_crc(buf, n);
    if (child_write(t->other, 1, 0, buf, n) != 0) {
        snprintf(msg, len, "cannot write %s", t->other);
        return 1;
    }
    free(buf);
    if (cvae_model_create(&m) != CVAE_OK) {
        snprintf(msg, len, "model_create failed");
        return 1;
    }
    st = cvae_model_load(m, t->other, MAXB);
    if (st != CVAE_ERR_FORMAT) {
        snprintf(msg, len,
                 "an architecture of far more parameters than the file stores gave "
                 "%s (expected a format error before any allocation): %s",
                 cvae_status_string(st), cvae_model_last_error(m));
        cvae_model_destroy(m);
        return 1;
    }
    cvae_model_destroy(m);
    return 0;
}

/* Fails if load builds (allocates for) the stored architecture before checking that the
 * parameter count it implies is the one stored: a 3 kB file must not make the library
 * allocate gigabytes before it is refused. */
static void test_oversized_architecture(void **state)
{
    tmp *t = *state;
    save_trained(t->path, NULL, NULL);
    t->bytes = read_all(t->path, &t->nbytes);
    run_limited(t, child_oversized_architecture);
}

/* A strided model whose shapes scale with the image but whose parameters do
 * not: a 1x1 convolution of stride S-1 takes an S x S image to 2 x 2, and a
 * 1x1 transposed one of the same stride takes 2 x 2 back to S x S. */
static cvae_model *strided_model(int side)
{
    cvae_model *m = NULL;
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_model_create(&m), CVAE_OK);
    assert_int_equal(cvae_stack_create(&enc), CVAE_OK);
    assert_int_equal(cvae_stack_create(&dec), CVAE_OK);
    assert_int_equal(cvae_layer_create_conv2d(&l, 1, 1, 1, side - 1, side - 1, 0, 0), CVAE_OK);
    assert_int_equal(cvae_stack_add(enc, l), CVAE_OK);
    assert_int_equal(cvae_layer_create_flatten(&l), CVAE_OK);
    assert_int_equal(cvae_stack_add(enc, l), CVAE_OK);
    assert_int_equal(cvae_layer_create_linear(&l, 4), CVAE_OK);
    assert_int_equal(cvae_stack_add(dec, l), CVAE_OK);
    assert_int_equal(cvae_layer_create_reshape(&l, 1, 2, 2), CVAE_OK);
    assert_int_equal(cvae_stack_add(dec, l), CVAE_OK);
    assert_int_equal(cvae_layer_create_conv_transpose2d(&l, 1, 1, 1, side - 1, side - 1, 0, 0),
                     CVAE_OK);
    assert_int_equal(cvae_stack_add(dec, l), CVAE_OK);
    CHECK(cvae_model_init_stacks(m, enc, dec, 1, side, side, 2, 1, 3), m);
    return m;
}

/* Rewrites a saved strided_model file for another side: the image height
 * and width and the strides of both convolutions (found by walking the
 * layer records), then the checksum. */
static void resize_strided_file(unsigned char *buf, size_t n, uint32_t side)
{
    size_t at = 24 + 16 + 8 + 8 + 32; /* the encoder's layer count */
    int s, found = 0;
    tu_put_u32le(buf + 24 + 4, side);
    tu_put_u32le(buf + 24 + 8, side);
    for (s = 0; s < 2; s++) {
        uint32_t count = tu_get_u32le(buf + at), i;
        at += 4;
        for (i = 0; i < count; i++) {
            uint32_t kind = tu_get_u32le(buf + at), nhp = tu_get_u32le(buf + at + 4);
            if (kind == CVAE_LAYER_CONV2D || kind == CVAE_LAYER_CONV_TRANSPOSE2D) {
                tu_put_u32le(buf + at + 8 + 12, side - 1); /* stride h, w: hyper-parameters 3, 4 */
                tu_put_u32le(buf + at + 8 + 16, side - 1);
                found++;
            }
            at += 8 + 4 * (size_t)nhp;
        }
    }
    assert_int_equal(found, 2);
    tu_fix_crc(buf, n);
}

static int load_huge_image(tmp *t, double max_memory, cvae_status want, const char *say,
                           char *msg, size_t len)
{
    cvae_model *m = NULL;
    cvae_status st;
    if (cvae_model_create(&m) != CVAE_OK ||
        cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, max_memory) != CVAE_OK) {
        snprintf(msg, len, "model_create or set failed");
        cvae_model_destroy(m);
        return 1;
    }
    st = cvae_model_load(m, t->other, 1);
    if (st != want || !strstr(cvae_model_last_error(m), say) || cvae_model_param_count(m) != 0) {
        snprintf(msg, len, "a 32768x32768 architecture with limit %.0f gave %s (%s), expected %s",
                 max_memory, cvae_status_string(st), cvae_model_last_error(m),
                 cvae_status_string(want));
        cvae_model_destroy(m);
        return 1;
    }
    cvae_model_destroy(m);
    return 0;
}

static int child_huge_activations(tmp *t, char *msg, size_t len)
{
    /* Refused by the default limit before anything large is allocated;
     * without the limit, the allocation itself fails under the child's cap. */
    if (load_huge_image(t, 4294967296.0, CVAE_ERR_TOO_LARGE, "CVAE_MODEL_MAX_MEMORY", msg, len))
        return 1;
    return load_huge_image(t, 0.0, CVAE_ERR_NOMEM, "out of memory", msg, len);
}

/* A file of a few hundred bytes with 16 parameters whose image is
 * 32768 x 32768: its activations would take 24 GiB. Loading it is refused
 * by CVAE_MODEL_MAX_MEMORY before the allocation. */
static void test_huge_activations_refused(void **state)
{
    tmp *t = *state;
    cvae_model *m = strided_model(8), *back = NULL;
    size_t n;
    unsigned char *buf;
    float x[64], y[64];
    int i;
    assert_int_equal(cvae_model_param_count(m), 16);
    for (i = 0; i < 64; i++)
        x[i] = (float)i / 64.0f;
    CHECK(cvae_model_reconstruct(m, x, 1, x), m);
    CHECK(cvae_model_save(m, NULL, t->path), m);
    /* The walker finds the strides: resized to the same side, the file
     * loads back to the same model. */
    buf = read_all(t->path, &n);
    resize_strided_file(buf, n, 8);
    write_all(t->other, buf, n);
    assert_int_equal(cvae_model_create(&back), CVAE_OK);
    CHECK(cvae_model_load(back, t->other, 1), back);
    for (i = 0; i < 64; i++)
        x[i] = (float)i / 64.0f;
    CHECK(cvae_model_reconstruct(back, x, 1, y), back);
    CHECK(cvae_model_reconstruct(m, x, 1, x), m);
    assert_memory_equal(x, y, sizeof x);
    cvae_model_destroy(back);
    cvae_model_destroy(m);
    resize_strided_file(buf, n, 32768);
    write_all(t->other, buf, n);
    run_limited(t, child_huge_activations);
}

/* The option itself: default, range, and that it is applied to the next
 * architecture only. */
static void test_max_memory_option(void **state)
{
    cvae_model *m = NULL;
    double v = 0, lo = -1, hi = -1;
    (void)state;
    assert_int_equal(cvae_model_create(&m), CVAE_OK);
    assert_int_equal(cvae_model_get(m, CVAE_MODEL_MAX_MEMORY, &v), CVAE_OK);
    assert_true(v == 4294967296.0);
    assert_int_equal(cvae_model_bounds(m, CVAE_MODEL_MAX_MEMORY, &lo, &hi), CVAE_OK);
    assert_true(lo == 0.0 && hi == 4611686018427387904.0);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, -1.0), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, 1.5), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, 1e19), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, NAN), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_model_last_error(m), "max memory"));
    /* 100 kB is too little for the seed preset at 28x28. */
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, 100000.0), CVAE_OK);
    assert_int_equal(cvae_model_init_preset(m, 1, 28, 28, 16, 8, 1), CVAE_ERR_TOO_LARGE);
    assert_non_null(strstr(cvae_model_last_error(m), "limit of 0 MB"));
    assert_int_equal(cvae_model_param_count(m), 0);
    /* A batch of a million images is too much for the default. */
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, 4294967296.0), CVAE_OK);
    assert_int_equal(cvae_model_init_preset(m, 1, 28, 28, 16, 1000000, 1), CVAE_ERR_TOO_LARGE);
    assert_int_equal(cvae_model_param_count(m), 0);
    assert_int_equal(cvae_model_init_preset(m, 1, 28, 28, 16, 8, 1), CVAE_OK);
    /* Lowering it later leaves the built model alone. */
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, 1.0), CVAE_OK);
    assert_true(cvae_model_param_count(m) > 0);
    cvae_model_destroy(m);
}

static int child_rechecksummed_flips(tmp *t, char *msg, size_t len)
{
    static const unsigned char masks[2] = {0x01, 0x80};
    unsigned char *buf = child_copy(t, msg, len);
    const size_t n = t->nbytes;
    size_t off;
    int k, loaded = 0;
    if (!buf || child_write(t->other, 1, 0, buf, n) != 0) {
        snprintf(msg, len, "cannot write %s", t->other);
        return 1;
    }
    for (off = 0; off + 4 < n; off++) {
        for (k = 0; k < 2; k++) {
            cvae_model *m = NULL;
            cvae_status st;
            int c;
            buf[off] ^= masks[k];
            tu_fix_crc(buf, n);
            if (child_write(t->other, 0, off, &buf[off], 1) != 0 ||
                child_write(t->other, 0, n - 4, buf + n - 4, 4) != 0) {
                snprintf(msg, len, "cannot patch %s", t->other);
                return 1;
            }
            buf[off] ^= masks[k];
            if (cvae_model_create(&m) != CVAE_OK) {
                snprintf(msg, len, "model_create failed");
                return 1;
            }
            st = cvae_model_load(m, t->other, MAXB);
            c = cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL);
            /* Restore the byte; the CRC is rewritten at the next flip. */
            if (child_write(t->other, 0, off, &buf[off], 1) != 0) {
                snprintf(msg, len, "cannot patch %s", t->other);
                return 1;
            }
            if (st == CVAE_OK) {
                loaded++;
                /* Parameter bits, beta, steps, generator and options may change legitimately;
                 * the architecture must then be the one stored. */
                if (c != CVAE_OK || cvae_model_param_count(m) != NPARAMS) {
                    snprintf(msg, len, "byte %zu xor 0x%02x: loaded an inconsistent model", off,
                             masks[k]);
                    return 1;
                }
            } else if (c != CVAE_ERR_STATE || cvae_model_param_count(m) != 0) {
                snprintf(msg, len, "byte %zu xor 0x%02x: failed (%s) leaving a non-empty model",
                         off, masks[k], cvae_status_string(st));
                return 1;
            }
            cvae_model_destroy(m);
        }
    }
    free(buf);
    /* Flipped parameter bits mostly give other finite floats: many loads succeed. */
    if (loaded < NPARAMS) {
        snprintf(msg, len, "only %d re-checksummed flips loaded", loaded);
        return 1;
    }
    return 0;
}

/* Fails if a corruption that passes the CRC (it was recomputed) crashes the parser, is loaded
 * into an inconsistent model, or fails leaving the model non-empty. Run under the sanitizer
 * build this checks every bounds check of the parser. */
static void test_rechecksummed_flips(void **state)
{
    tmp *t = *state;
    save_trained(t->path, NULL, NULL);
    t->bytes = read_all(t->path, &t->nbytes);
    run_limited(t, child_rechecksummed_flips);
}

/* Fails if a foreign file is not a format error, a missing file not an I/O error naming the
 * path, or a directory anything but an I/O error (a crash, or a bogus size). */
static void test_foreign_missing_directory(void **state)
{
    const float img[4] = {0.0f, 0.25f, 0.5f, 1.0f};
    tmp *t = *state;
    cvae_model *m = tu_new_model();
    char missing[160], errmsg[256];
    unsigned char head[28];
    cvae_status st;
    if (cvae_png_write_grid(t->other, img, 1, 1, 2, 2, 1, errmsg, sizeof errmsg) != CVAE_OK)
        fail_msg("png_write_grid: %s", errmsg);
    assert_int_equal(expect_load_fails(m, t->other, "a PNG"), CVAE_ERR_FORMAT);
    write_all(t->other, "hello, world: not a model, but long enough to hold a header\n", 60);
    assert_int_equal(expect_load_fails(m, t->other, "a text file"), CVAE_ERR_FORMAT);
    write_all(t->other, "", 0);
    assert_int_equal(expect_load_fails(m, t->other, "an empty file"), CVAE_ERR_FORMAT);
    memset(head, 0, sizeof head);
    write_all(t->other, head, sizeof head);
    assert_int_equal(expect_load_fails(m, t->other, "zeros"), CVAE_ERR_FORMAT);

    snprintf(missing, sizeof missing, "%s/no-such-file.cvae", t->dir);
    assert_int_equal(expect_load_fails(m, missing, "a missing file"), CVAE_ERR_IO);
    snprintf(missing, sizeof missing, "%s/no-such-dir/model.cvae", t->dir);
    assert_int_equal(expect_load_fails(m, missing, "a missing directory"), CVAE_ERR_IO);
    st = expect_load_fails(m, t->dir, "a directory");
    if (st != CVAE_ERR_IO)
        fail_msg("a directory gave %s (%s), expected an I/O error", cvae_status_string(st),
                 cvae_model_last_error(m));
}

/* Fails if load into a model that has an architecture is not refused with CVAE_ERR_STATE
 * (leaving it untouched), or if bad arguments are not refused. */
static void test_load_arguments(void **state)
{
    tmp *t = *state;
    cvae_model *m = tiny_model(4), *e = tu_new_model();
    float before[NPARAMS];
    save_trained(t->path, NULL, NULL);
    memcpy(before, cvae_model_params(m, NULL), sizeof before);
    assert_int_equal(cvae_model_load(m, t->path, MAXB), CVAE_ERR_STATE);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_memory_equal(before, cvae_model_params(m, NULL), sizeof before);
    assert_int_equal(cvae_model_steps(m), 0);
    assert_int_equal(cvae_model_load(e, t->path, 0), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_load(e, NULL, MAXB), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_load(NULL, t->path, MAXB), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_shape(e, NULL, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    CHECK(cvae_model_load(e, t->path, MAXB), e);
}

/* ------------------------------------------------------------------ saving */

/* Fails if saving without an architecture, with an optimizer of another size or with a NULL
 * path is accepted (and writes anything), or if a save into a missing directory is not an
 * I/O error naming the path. */
static void test_save_errors(void **state)
{
    tmp *t = *state;
    cvae_model *m = tiny_model(2), *e = tu_new_model();
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS + 1);
    char missing[160];
    assert_int_equal(cvae_model_save(e, NULL, t->path), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_save(m, o, t->path), CVAE_ERR_SHAPE);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_int_equal(cvae_model_save(m, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(tu_count_entries(t->dir), 0);
    snprintf(missing, sizeof missing, "%s/no-such-dir/model.cvae", t->dir);
    assert_int_equal(cvae_model_save(m, NULL, missing), CVAE_ERR_IO);
    if (!strstr(cvae_model_last_error(m), missing))
        fail_msg("message \"%s\" does not name %s", cvae_model_last_error(m), missing);
    assert_int_equal(tu_count_entries(t->dir), 0);
    {
        /* The temporary name is built in place: a path over 4091 bytes is refused, one of
         * 4091 is tried (and fails at the system, which allows 4095). */
        static char longpath[4200];
        float img[4] = {0};
        char msg[256];
        size_t dirlen = strlen(t->dir);
        memset(longpath, 'a', sizeof longpath - 1);
        memcpy(longpath, t->dir, dirlen);
        longpath[dirlen] = '/';
        longpath[4092] = '\0';
        assert_int_equal(cvae_model_save(m, NULL, longpath), CVAE_ERR_INVALID_ARG);
        assert_non_null(strstr(cvae_model_last_error(m), "4091"));
        assert_int_equal(cvae_png_write_grid(longpath, img, 1, 1, 2, 2, 1, msg, sizeof msg),
                         CVAE_ERR_INVALID_ARG);
        longpath[4091] = '\0';
        assert_int_equal(cvae_model_save(m, NULL, longpath), CVAE_ERR_IO);
        assert_int_equal(tu_count_entries(t->dir), 0);
    }
}

/* Fails if a save that cannot create its temporary file ("<path>.tmp" is a directory) is not
 * an I/O error naming the file, if it alters the previous file at path, or if a successful
 * save leaves a temporary file behind or does not replace the file. */
static void test_failed_save_keeps_old_file(void **state)
{
    tmp *t = *state;
    cvae_model *m, *b = tu_new_model();
    cvae_optimizer *o;
    unsigned char *old, *now;
    size_t nold, nnow;
    char tmp_path[160];
    save_trained(t->path, &m, &o);
    assert_int_equal(tu_count_entries(t->dir), 1); /* model.cvae, no model.cvae.tmp */
    old = read_all(t->path, &nold);
    train(m, o, 1, 900); /* the next save would write other bytes */
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", t->path);
    assert_int_equal(mkdir(tmp_path, 0700), 0);
    assert_int_equal(cvae_model_save(m, o, t->path), CVAE_ERR_IO);
    if (!strstr(cvae_model_last_error(m), t->path))
        fail_msg("message \"%s\" does not name %s", cvae_model_last_error(m), t->path);
    now = read_all(t->path, &nnow);
    assert_int_equal(nnow, nold);
    assert_memory_equal(now, old, nold);
    assert_int_equal(tu_count_entries(tmp_path), 0);
    assert_int_equal(rmdir(tmp_path), 0);
    /* Now it works, replaces the file and leaves nothing else. */
    CHECK(cvae_model_save(m, o, t->path), m);
    assert_int_equal(tu_count_entries(t->dir), 1);
    assert_int_equal(access(tmp_path, F_OK), -1);
    now = read_all(t->path, &nnow);
    assert_int_equal(nnow, nold);
    assert_memory_not_equal(now, old, nold);
    CHECK(cvae_model_load(b, t->path, MAXB), b);
    expect_same_model(m, b);
}

/* Fails if a save onto a full device (the temporary file is a symlink to /dev/full, so every
 * write fails with ENOSPC once the stream flushes) is not an I/O error that names the problem,
 * changes the previous file, or leaves the temporary name behind. */
static void test_save_to_full_device(void **state)
{
    tmp *t = *state;
    cvae_model *m;
    cvae_optimizer *o;
    unsigned char *old, *now;
    size_t nold, nnow;
    char tmp_path[160];
    if (access("/dev/full", W_OK) != 0)
        skip();
    save_trained(t->path, &m, &o);
    old = read_all(t->path, &nold);
    train(m, o, 1, 901);
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", t->path);
    assert_int_equal(symlink("/dev/full", tmp_path), 0);
    assert_int_equal(cvae_model_save(m, o, t->path), CVAE_ERR_IO);
    if (!strstr(cvae_model_last_error(m), "No space"))
        fail_msg("message \"%s\" does not say the device is full", cvae_model_last_error(m));
    now = read_all(t->path, &nnow);
    assert_int_equal(nnow, nold);
    assert_memory_equal(now, old, nold);
    assert_int_equal(access(tmp_path, F_OK), -1); /* the temporary name is gone */
    assert_int_equal(access("/dev/full", F_OK), 0); /* and the device is still there */
    assert_int_equal(tu_count_entries(t->dir), 1);
}

/* Fails if a save whose writes start failing half-way (a child process with RLIMIT_FSIZE
 * at half the file's size: writes past it fail with EFBIG) is not an I/O error, or changes
 * the previous file, or leaves a temporary file. The child reports by its exit status. */
static void test_save_failing_half_way(void **state)
{
    tmp *t = *state;
    cvae_model *m;
    cvae_optimizer *o;
    unsigned char *old, *now;
    size_t nold, nnow;
    int status = 0;
    pid_t pid;
    if (tu_under_valgrind()) {
        print_message("skipped under valgrind: a child with a file-size limit\n");
        skip();
    }
    save_trained(t->path, &m, &o);
    old = read_all(t->path, &nold);
    train(m, o, 1, 902);
    fflush(NULL); /* nothing buffered to be written twice by the child */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        signal(SIGXFSZ, SIG_IGN); /* the write then fails with EFBIG instead of killing us */
        rl.rlim_cur = rl.rlim_max = (rlim_t)(nold / 2);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(3);
        _exit(cvae_model_save(m, o, t->path) == CVAE_ERR_IO &&
                      strstr(cvae_model_last_error(m), "write failed") != NULL
                  ? 0
                  : 4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    now = read_all(t->path, &nnow);
    assert_int_equal(nnow, nold);
    assert_memory_equal(now, old, nold);
    assert_int_equal(tu_count_entries(t->dir), 1);
}

/* ------------------------------------------------------------------ optimizer load */

/* Fails if cvae_optimizer_load accepts an optimizer of another kind or size (CVAE_ERR_SHAPE),
 * a missing file (CVAE_ERR_IO) or a foreign one (CVAE_ERR_FORMAT), or if any failed load
 * changes the optimizer. */
static void test_optimizer_load_errors(void **state)
{
    tmp *t = *state;
    cvae_optimizer *sgd = tu_new_opt(CVAE_OPTIMIZER_SGD, NPARAMS);
    cvae_optimizer *small = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS - 1);
    cvae_optimizer *adam = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    static opt_snap before, after;
    float p[NPARAMS], g[NPARAMS];
    char missing[160];
    save_trained(t->path, NULL, NULL);
    /* Give the optimizers state of their own, so "unchanged" is not "still zero". */
    tu_fill_uniform(p, NPARAMS, 1);
    tu_fill_uniform(g, NPARAMS, 2);
    CHECK_OPT(cvae_optimizer_set(sgd, CVAE_OPT_LR, 0.125), sgd);
    CHECK_OPT(cvae_optimizer_step(sgd, p, g, NPARAMS), sgd);
    CHECK_OPT(cvae_optimizer_step(adam, p, g, NPARAMS), adam);
    CHECK_OPT(cvae_optimizer_step(adam, p, g, NPARAMS), adam);

    snap_opt(sgd, &before);
    assert_int_equal(cvae_optimizer_load(sgd, t->path), CVAE_ERR_SHAPE);
    assert_true(cvae_optimizer_last_error(sgd)[0] != '\0');
    snap_opt(sgd, &after);
    assert_memory_equal(&before, &after, sizeof before);

    snap_opt(small, &before);
    assert_int_equal(cvae_optimizer_load(small, t->path), CVAE_ERR_SHAPE);
    snap_opt(small, &after);
    assert_memory_equal(&before, &after, sizeof before);

    snap_opt(adam, &before);
    snprintf(missing, sizeof missing, "%s/missing.cvae", t->dir);
    assert_int_equal(cvae_optimizer_load(adam, missing), CVAE_ERR_IO);
    assert_non_null(strstr(cvae_optimizer_last_error(adam), missing));
    write_all(t->other, "not a model file at all, but long enough for a header", 53);
    assert_int_equal(cvae_optimizer_load(adam, t->other), CVAE_ERR_FORMAT);
    snap_opt(adam, &after);
    assert_memory_equal(&before, &after, sizeof before);
    /* And the right one loads, replacing the options, step count and moments. */
    CHECK_OPT(cvae_optimizer_load(adam, t->path), adam);
    assert_int_equal(cvae_optimizer_steps(adam), 3);
    {
        double lr = 0.0;
        CHECK_OPT(cvae_optimizer_get(adam, CVAE_OPT_LR, &lr), adam);
        assert_true(lr == 3e-3);
    }
}

/* ------------------------------------------------------------------ running average */

/* Little-endian u64 and f64 fields of a file, whatever the host's byte order. */
static uint64_t get_u64le(const unsigned char *p)
{
    return tu_get_u32le(p) | (uint64_t)tu_get_u32le(p + 4) << 32;
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    tu_put_u32le(p, (uint32_t)v);
    tu_put_u32le(p + 4, (uint32_t)(v >> 32));
}

static double get_f64le(const unsigned char *p)
{
    uint64_t bits = get_u64le(p);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

static void put_f64le(unsigned char *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, 8);
    put_u64le(p, bits);
}

/* Offsets of the running average at the end of a version-5 payload (docs/FORMAT.md), just
 * before the CRC: [f64 decay][u64 count][u32 swapped], then NPARAMS floats if count > 0. */
typedef struct avg_tail {
    size_t decay_at, count_at, swapped_at, values_at;
} avg_tail;

static avg_tail find_avg_tail(size_t len, int has_values)
{
    avg_tail a;
    a.values_at = len - 4 - (has_values ? 4 * (size_t)NPARAMS : 0);
    a.swapped_at = a.values_at - 4;
    a.count_at = a.swapped_at - 8;
    a.decay_at = a.count_at - 8;
    return a;
}

/* Trains a, oa and b, ob `steps` steps on the same images (seed) and fails
 * unless their parameters and running averages stay the same bits (avg_a,
 * avg_b: NPARAMS floats of room each). */
static void train_alike(cvae_model *a, cvae_optimizer *oa, cvae_model *b, cvae_optimizer *ob,
                        int steps, uint64_t seed, float *avg_a, float *avg_b)
{
    train(a, oa, steps, seed);
    train(b, ob, steps, seed);
    assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL),
                        NPARAMS * sizeof(float));
    tu_read_average(oa, cvae_model_params(a, NULL), NPARAMS, avg_a);
    tu_read_average(ob, cvae_model_params(b, NULL), NPARAMS, avg_b);
    assert_memory_equal(avg_a, avg_b, NPARAMS * sizeof(float));
}

/* Fails unless the floats stored at f are bit for bit v (NPARAMS of them). */
static void expect_stored_floats(const unsigned char *f, const float *v)
{
    size_t i;
    for (i = 0; i < NPARAMS; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        if (tu_get_u32le(f + 4 * i) != bits)
            fail_msg("stored average value %zu: bits 0x%08x, the optimizer holds 0x%08x", i,
                     (unsigned)tu_get_u32le(f + 4 * i), (unsigned)bits);
    }
}

/* Everything of the average an optimizer load may change (through the library's internal
 * view), with the rest of the optimizer's state, for checking that a failed load changed
 * nothing. */
typedef struct avg_snap {
    opt_snap base;
    double decay;
    uint64_t count;
    int swapped, allocated;
    float avg[NPARAMS];
} avg_snap;

static void snap_avg(cvae_optimizer *o, avg_snap *s)
{
    cvi_optimizer_state st;
    memset(s, 0, sizeof *s);
    snap_opt(o, &s->base);
    cvi_optimizer_get_state(o, &st);
    assert_int_equal(st.n, NPARAMS);
    s->decay = *st.average;
    s->count = *st.avg_count;
    s->swapped = *st.swapped;
    s->allocated = st.avg != NULL;
    if (st.avg)
        memcpy(s->avg, st.avg, sizeof s->avg);
}

/* Fails if an Adam optimizer with the average on is not saved as format version 5 with the
 * average's decay, count, flag and values at the end of the payload, or if one without it
 * does not keep the old version; if cvae_optimizer_load does not restore the decay, the
 * average (bit for bit) and its count (the next step's decay depends on it: one more step on
 * both must give the same average bit for bit); if the swapped flag is not saved and
 * restored (a model saved swapped holds the average as its parameters); or if a model train
 * step or optimizer step with the loaded swapped optimizer is not refused with CVAE_ERR_STATE
 * leaving everything (generator included) as it was. */
static void test_average_round_trip_adam(void **state)
{
    tmp *t = *state;
    cvae_model *a = tiny_model(5), *b = tu_new_model(), *c = tu_new_model();
    cvae_model *plain = tiny_model(6);
    cvae_optimizer *oa = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *ob = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *oc = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *op = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    float avg_a[NPARAMS], avg_b[NPARAMS], before[NPARAMS], x[MAXB * IMG];
    unsigned char *f;
    size_t len;
    avg_tail tail;
    double d = -1.0;
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_LR, 3e-3), oa);
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_AVERAGE, 0.9), oa);
    train(a, oa, 5, 100);
    CHECK(cvae_model_save(a, oa, t->path), a);
    tu_read_average(oa, cvae_model_params(a, NULL), NPARAMS, avg_a);
    f = read_all(t->path, &len);
    assert_int_equal(tu_get_u32le(f + 8), 5);
    assert_int_equal(tu_get_u32le(f + 12), 1);
    tail = find_avg_tail(len, 1);
    assert_true(get_f64le(f + tail.decay_at) == 0.9);
    assert_int_equal(get_u64le(f + tail.count_at), 5);
    assert_int_equal(tu_get_u32le(f + tail.swapped_at), 0);
    expect_stored_floats(f + tail.values_at, avg_a);

    /* Without the average (with an optimizer or without one): the old version. */
    train(plain, op, 5, 100);
    CHECK(cvae_model_save(plain, op, t->other), plain);
    f = read_all(t->other, &len);
    assert_true(tu_get_u32le(f + 8) < 5);
    CHECK(cvae_model_save(a, NULL, t->other), a);
    f = read_all(t->other, &len);
    assert_true(tu_get_u32le(f + 8) < 5);

    /* Loaded: decay, steps, moments, flag, average. */
    CHECK(cvae_model_load(b, t->path, MAXB), b);
    CHECK_OPT(cvae_optimizer_load(ob, t->path), ob);
    expect_same_model(a, b);
    expect_same_opt(oa, ob);
    CHECK_OPT(cvae_optimizer_get(ob, CVAE_OPT_AVERAGE, &d), ob);
    assert_true(d == 0.9);
    assert_int_equal(cvae_optimizer_steps(ob), 5);
    assert_int_equal(cvae_optimizer_average_swapped(ob), 0);
    tu_read_average(ob, cvae_model_params(b, NULL), NPARAMS, avg_b);
    assert_memory_equal(avg_a, avg_b, sizeof avg_a);
    /* The count: at 5 averaged steps the decay is 6/15, at any other count another one. */
    train_alike(a, oa, b, ob, 1, 200, avg_a, avg_b);

    /* Saved swapped, as cvae-train saves its checkpoints. */
    CHECK_OPT(cvae_optimizer_swap_average(oa, cvae_model_params(a, NULL), NPARAMS), oa);
    CHECK(cvae_model_save(a, oa, t->other), a);
    CHECK_OPT(cvae_optimizer_swap_average(oa, cvae_model_params(a, NULL), NPARAMS), oa);
    f = read_all(t->other, &len);
    tail = find_avg_tail(len, 1);
    assert_int_equal(tu_get_u32le(f + 8), 5);
    assert_int_equal(tu_get_u32le(f + tail.swapped_at), 1);
    assert_int_equal(get_u64le(f + tail.count_at), 6);
    /* Swapped, the stored average is the training weights. */
    expect_stored_floats(f + tail.values_at, cvae_model_params(a, NULL));
    CHECK(cvae_model_load(c, t->other, MAXB), c);
    CHECK_OPT(cvae_optimizer_load(oc, t->other), oc);
    assert_int_equal(cvae_optimizer_average_swapped(oc), 1);
    assert_memory_equal(cvae_model_params(c, NULL), avg_a, sizeof avg_a);

    /* Training refused while swapped: nothing moves. */
    memcpy(before, cvae_model_params(c, NULL), sizeof before);
    tu_fill_uniform(x, MAXB * IMG, 250);
    assert_int_equal(cvae_model_train_step(c, oc, x, MAXB, NULL, NULL), CVAE_ERR_STATE);
    assert_true(cvae_model_last_error(c)[0] != '\0');
    assert_int_equal(
        cvae_optimizer_step(oc, cvae_model_params(c, NULL), cvae_model_grads(c, NULL), NPARAMS),
        CVAE_ERR_STATE);
    assert_memory_equal(cvae_model_params(c, NULL), before, sizeof before);
    assert_int_equal(cvae_model_steps(c), 6);
    assert_int_equal(cvae_optimizer_steps(oc), 6);
    assert_int_equal(cvae_optimizer_average_swapped(oc), 1);

    /* Swapped back, c and oc go on exactly as a and oa. */
    CHECK_OPT(cvae_optimizer_swap_average(oc, cvae_model_params(c, NULL), NPARAMS), oc);
    assert_int_equal(cvae_optimizer_average_swapped(oc), 0);
    assert_memory_equal(cvae_model_params(c, NULL), cvae_model_params(a, NULL),
                        NPARAMS * sizeof(float));
    train_alike(a, oa, c, oc, 2, 300, avg_a, avg_b);
    expect_same_opt(oa, oc);
}

/* Fails if SGD's average (a payload without Adam's second moments) does not survive a round
 * trip, if an average switched off after some steps (decay 0, values kept) is not saved as
 * version 5 and restored with its decay 0, values and count, if a model with a training
 * recipe (version 4) loses it in a version-5 file, or if an average set but not yet stepped
 * (count 0: no values stored) does not round-trip as such (swap refused, first step a = p). */
static void test_average_round_trip_sgd(void **state)
{
    tmp *t = *state;
    cvae_model *a = tiny_model(8), *b = tu_new_model();
    cvae_optimizer *oa = tu_new_opt(CVAE_OPTIMIZER_SGD, NPARAMS);
    cvae_optimizer *ob = tu_new_opt(CVAE_OPTIMIZER_SGD, NPARAMS);
    cvae_optimizer *oc = tu_new_opt(CVAE_OPTIMIZER_SGD, NPARAMS);
    cvae_optimizer *od = tu_new_opt(CVAE_OPTIMIZER_SGD, NPARAMS);
    float avg_a[NPARAMS], avg_b[NPARAMS], pc[NPARAMS], g[NPARAMS];
    unsigned char *f;
    size_t len;
    avg_tail tail;
    double d = -1.0;
    CHECK(cvae_model_set(a, CVAE_MODEL_KL_WARMUP, 50), a);
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_LR, 0.05), oa);
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_AVERAGE, 0.5), oa);
    train(a, oa, 3, 40);
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_AVERAGE, 0.0), oa);
    CHECK(cvae_model_save(a, oa, t->path), a);
    tu_read_average(oa, cvae_model_params(a, NULL), NPARAMS, avg_a);
    f = read_all(t->path, &len);
    assert_int_equal(tu_get_u32le(f + 8), 5);
    tail = find_avg_tail(len, 1);
    assert_true(get_f64le(f + tail.decay_at) == 0.0);
    assert_int_equal(get_u64le(f + tail.count_at), 3);
    expect_stored_floats(f + tail.values_at, avg_a);
    CHECK(cvae_model_load(b, t->path, MAXB), b);
    CHECK_OPT(cvae_optimizer_load(ob, t->path), ob);
    expect_same_model(a, b);
    expect_same_opt(oa, ob);
    CHECK(cvae_model_get(b, CVAE_MODEL_KL_WARMUP, &d), b);
    assert_true(d == 50.0);
    CHECK_OPT(cvae_optimizer_get(ob, CVAE_OPT_AVERAGE, &d), ob);
    assert_true(d == 0.0);
    tu_read_average(ob, cvae_model_params(b, NULL), NPARAMS, avg_b);
    assert_memory_equal(avg_a, avg_b, sizeof avg_a);
    /* Off: one more step leaves both averages; on again: the count (3) sets the decay. */
    train(a, oa, 1, 60);
    train(b, ob, 1, 60);
    tu_read_average(ob, cvae_model_params(b, NULL), NPARAMS, avg_b);
    assert_memory_equal(avg_a, avg_b, sizeof avg_a);
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_AVERAGE, 0.5), oa);
    CHECK_OPT(cvae_optimizer_set(ob, CVAE_OPT_AVERAGE, 0.5), ob);
    train_alike(a, oa, b, ob, 1, 70, avg_a, avg_b);

    /* Set, never stepped: version 5 with no values; loads with the decay, nothing to swap. */
    CHECK_OPT(cvae_optimizer_set(oc, CVAE_OPT_AVERAGE, 0.25), oc);
    CHECK(cvae_model_save(a, oc, t->other), a);
    f = read_all(t->other, &len);
    assert_int_equal(tu_get_u32le(f + 8), 5);
    tail = find_avg_tail(len, 0);
    assert_true(get_f64le(f + tail.decay_at) == 0.25);
    assert_int_equal(get_u64le(f + tail.count_at), 0);
    assert_int_equal(tu_get_u32le(f + tail.swapped_at), 0);
    CHECK_OPT(cvae_optimizer_load(od, t->other), od);
    CHECK_OPT(cvae_optimizer_get(od, CVAE_OPT_AVERAGE, &d), od);
    assert_true(d == 0.25);
    memcpy(pc, cvae_model_params(a, NULL), sizeof pc);
    assert_int_equal(cvae_optimizer_swap_average(od, pc, NPARAMS), CVAE_ERR_STATE);
    tu_fill_uniform(g, NPARAMS, 80);
    CHECK_OPT(cvae_optimizer_step(od, pc, g, NPARAMS), od);
    tu_read_average(od, pc, NPARAMS, avg_b);
    assert_memory_equal(avg_b, pc, sizeof pc);
}

/* Fails if a run with the average is not resumed bit for bit: 2k steps straight against k
 * steps, a save made as cvae-train makes it (swap, save, swap back), a load into fresh handles
 * (which must report the average swapped in and hold it as the parameters), a swap back and k
 * more steps: parameters, moments, step counts and averages must be identical. */
static void test_average_resume_equivalence(void **state)
{
    enum { K = 6 };
    tmp *t = *state;
    cvae_model *straight = tiny_model(77), *first = tiny_model(77), *resumed = tu_new_model();
    cvae_optimizer *os = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *of = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *orr = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    float avg_s[NPARAMS], avg_r[NPARAMS], avg_f[NPARAMS];
    CHECK_OPT(cvae_optimizer_set(os, CVAE_OPT_AVERAGE, 0.9), os);
    CHECK_OPT(cvae_optimizer_set(of, CVAE_OPT_AVERAGE, 0.9), of);
    CHECK_OPT(cvae_optimizer_set(os, CVAE_OPT_LR, 5e-3), os);
    CHECK_OPT(cvae_optimizer_set(of, CVAE_OPT_LR, 5e-3), of);
    train(straight, os, 2 * K, 1000); /* batch i from seed 1000 + i */
    train(first, of, K, 1000);
    tu_read_average(of, cvae_model_params(first, NULL), NPARAMS, avg_f);
    CHECK_OPT(cvae_optimizer_swap_average(of, cvae_model_params(first, NULL), NPARAMS), of);
    CHECK(cvae_model_save(first, of, t->path), first);
    CHECK_OPT(cvae_optimizer_swap_average(of, cvae_model_params(first, NULL), NPARAMS), of);
    CHECK(cvae_model_load(resumed, t->path, MAXB), resumed);
    CHECK_OPT(cvae_optimizer_load(orr, t->path), orr);
    assert_int_equal(cvae_optimizer_average_swapped(orr), 1);
    assert_memory_equal(cvae_model_params(resumed, NULL), avg_f, sizeof avg_f);
    CHECK_OPT(cvae_optimizer_swap_average(orr, cvae_model_params(resumed, NULL), NPARAMS), orr);
    assert_memory_equal(cvae_model_params(resumed, NULL), cvae_model_params(first, NULL),
                        NPARAMS * sizeof(float));
    train(resumed, orr, K, 1000 + K);
    assert_int_equal(cvae_model_steps(resumed), 2 * K);
    assert_int_equal(cvae_optimizer_steps(orr), 2 * K);
    assert_memory_equal(cvae_model_params(straight, NULL), cvae_model_params(resumed, NULL),
                        NPARAMS * sizeof(float));
    expect_same_opt(os, orr);
    tu_read_average(os, cvae_model_params(straight, NULL), NPARAMS, avg_s);
    tu_read_average(orr, cvae_model_params(resumed, NULL), NPARAMS, avg_r);
    assert_memory_equal(avg_s, avg_r, sizeof avg_s);
}

/* Writes buf (len bytes, a copy of a saved file with fields patched) to path with nremove
 * bytes (possibly 0) taken out at off, the payload length and the CRC fixed: a crafted file
 * that reaches the parser. */
static void write_crafted(const char *path, unsigned char *buf, size_t len, size_t off,
                          size_t nremove)
{
    if (nremove > 0) {
        assert_true(off + nremove <= len - 4);
        memmove(buf + off, buf + off + nremove, len - off - nremove);
        len -= nremove;
    }
    put_u64le(buf + 16, (uint64_t)len - 28);
    tu_fix_crc(buf, len);
    write_all(path, buf, len);
}

/* Fails if a version-5 file whose running average is out of range (decay >= 1, negative, NaN
 * or infinite; a swapped flag other than 0 or 1; swapped with nothing averaged; count > 0 with
 * the values missing or cut short; count 0 with values left over) is not refused with
 * CVAE_ERR_FORMAT by cvae_optimizer_load and cvae_model_load, or a non-finite average value
 * with CVAE_ERR_NUMERIC by cvae_optimizer_load; or if a failed load changes the destination
 * optimizer (one with an average of its own, one without). The CRC is right each time, and
 * the same files with the field left valid load (so that the field is what is refused). */
static void test_average_corrupt_rejected(void **state)
{
    static const struct {
        int field;        /* 0 decay, 1 swapped */
        double decay;     /* field 0 */
        uint32_t swapped; /* field 1 */
        const char *what;
    } fields[] = {
        {0, 1.0, 0, "decay 1"},
        {0, 1.5, 0, "decay 1.5"},
        {0, NAN, 0, "decay NaN"},
        {0, INFINITY, 0, "decay +inf"},
        {0, -0.25, 0, "decay -0.25"},
        {1, 0.0, 2, "swapped 2"},
        {1, 0.0, 0xFFFFFFFFu, "swapped 0xffffffff"},
        {1, 0.0, 0x100u, "swapped 0x100"},
    };
    const uint32_t nan_bits = 0x7FC00000u, inf_bits = 0x7F800000u, ninf_bits = 0xFF800000u;
    tmp *t = *state;
    cvae_model *a = tiny_model(5), *m = tu_new_model();
    cvae_optimizer *oa = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *own = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *none = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *probe = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    static avg_snap own_before, none_before, now;
    float p[NPARAMS], g[NPARAMS], own_avg[NPARAMS], again[NPARAMS];
    unsigned char *good, *bad;
    size_t len, i;
    avg_tail tail;
    cvae_status st;
    char what[96];

    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_AVERAGE, 0.9), oa);
    train(a, oa, 5, 100);
    CHECK(cvae_model_save(a, oa, t->path), a);
    good = read_all(t->path, &len);
    bad = tu_keep(TU_KEEP_MEMORY, malloc(len));
    assert_int_equal(tu_get_u32le(good + 8), 5);
    tail = find_avg_tail(len, 1);
    assert_true(get_f64le(good + tail.decay_at) == 0.9);
    assert_int_equal(get_u64le(good + tail.count_at), 5);

    /* Destinations with state of their own, so "unchanged" is not "still zero". */
    tu_fill_uniform(p, NPARAMS, 3);
    tu_fill_uniform(g, NPARAMS, 4);
    CHECK_OPT(cvae_optimizer_set(own, CVAE_OPT_AVERAGE, 0.5), own);
    CHECK_OPT(cvae_optimizer_step(own, p, g, NPARAMS), own);
    CHECK_OPT(cvae_optimizer_step(own, p, g, NPARAMS), own);
    CHECK_OPT(cvae_optimizer_step(none, p, g, NPARAMS), none);
    tu_read_average(own, p, NPARAMS, own_avg);
    snap_avg(own, &own_before);
    snap_avg(none, &none_before);

#define EXPECT_REFUSED(want, label)                                                                \
    do {                                                                                           \
        st = cvae_optimizer_load(own, t->other);                                                   \
        if (st != (want))                                                                          \
            fail_msg("%s: optimizer load gave %s, expected %s (%s)", label,                        \
                     cvae_status_string(st), cvae_status_string(want),                             \
                     cvae_optimizer_last_error(own));                                              \
        if (!strstr(cvae_optimizer_last_error(own), t->other))                                     \
            fail_msg("%s: message \"%s\" does not name the file", label,                           \
                     cvae_optimizer_last_error(own));                                              \
        snap_avg(own, &now);                                                                       \
        if (memcmp(&now, &own_before, sizeof now) != 0)                                            \
            fail_msg("%s: a failed load changed an optimizer with an average", label);             \
        st = cvae_optimizer_load(none, t->other);                                                  \
        if (st != (want))                                                                          \
            fail_msg("%s: optimizer load (no average) gave %s", label, cvae_status_string(st));    \
        snap_avg(none, &now);                                                                      \
        if (memcmp(&now, &none_before, sizeof now) != 0)                                           \
            fail_msg("%s: a failed load changed an optimizer without an average", label);          \
    } while (0)

    /* The fields one at a time, then the same file with the field valid again. */
    for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        memcpy(bad, good, len);
        if (fields[i].field == 0)
            put_f64le(bad + tail.decay_at, fields[i].decay);
        else
            tu_put_u32le(bad + tail.swapped_at, fields[i].swapped);
        write_crafted(t->other, bad, len, len, 0);
        EXPECT_REFUSED(CVAE_ERR_FORMAT, fields[i].what);
        if (expect_load_fails(m, t->other, fields[i].what) != CVAE_ERR_FORMAT)
            fail_msg("%s: model load is not a format error", fields[i].what);
    }
    memcpy(bad, good, len);
    put_f64le(bad + tail.decay_at, nextafter(1.0, 0.0));
    tu_put_u32le(bad + tail.swapped_at, 1);
    write_crafted(t->other, bad, len, len, 0);
    CHECK_OPT(cvae_optimizer_load(probe, t->other), probe);
    assert_int_equal(cvae_optimizer_average_swapped(probe), 1);

    /* Swapped with nothing averaged: count 0 and no values. Valid with swapped 0. */
    memcpy(bad, good, len);
    put_u64le(bad + tail.count_at, 0);
    tu_put_u32le(bad + tail.swapped_at, 1);
    write_crafted(t->other, bad, len, tail.values_at, 4 * (size_t)NPARAMS);
    EXPECT_REFUSED(CVAE_ERR_FORMAT, "swapped with count 0");
    assert_int_equal(expect_load_fails(m, t->other, "swapped with count 0"), CVAE_ERR_FORMAT);
    memcpy(bad, good, len);
    put_u64le(bad + tail.count_at, 0);
    write_crafted(t->other, bad, len, tail.values_at, 4 * (size_t)NPARAMS);
    CHECK_OPT(cvae_optimizer_load(probe, t->other), probe);
    assert_int_equal(cvae_optimizer_average_swapped(probe), 0);
    assert_int_equal(cvae_optimizer_swap_average(probe, p, NPARAMS), CVAE_ERR_STATE);

    /* Count 0 with the values still there: bytes left over. */
    memcpy(bad, good, len);
    put_u64le(bad + tail.count_at, 0);
    write_crafted(t->other, bad, len, len, 0);
    EXPECT_REFUSED(CVAE_ERR_FORMAT, "count 0 with values");
    assert_int_equal(expect_load_fails(m, t->other, "count 0 with values"), CVAE_ERR_FORMAT);

    /* The values cut short: all of them, all but one, one of them. */
    {
        const size_t cuts[3] = {4 * (size_t)NPARAMS, 4 * (size_t)NPARAMS - 4, 4};
        for (i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "average cut by %zu bytes", cuts[i]);
            memcpy(bad, good, len);
            write_crafted(t->other, bad, len, len - 4 - cuts[i], cuts[i]);
            EXPECT_REFUSED(CVAE_ERR_FORMAT, what);
            if (expect_load_fails(m, t->other, what) != CVAE_ERR_FORMAT)
                fail_msg("%s: model load is not a format error", what);
        }
        /* And the tail cut inside its fixed fields (the count and flag gone). */
        memcpy(bad, good, len);
        write_crafted(t->other, bad, len, tail.count_at, len - 4 - tail.count_at);
        EXPECT_REFUSED(CVAE_ERR_FORMAT, "tail cut after the decay");
        assert_int_equal(expect_load_fails(m, t->other, "tail cut after the decay"),
                         CVAE_ERR_FORMAT);
    }

    /* A non-finite average value, first, middle and last. */
    {
        const struct {
            size_t at;
            uint32_t bits;
        } vals[3] = {{0, ninf_bits}, {NPARAMS / 2, nan_bits}, {NPARAMS - 1, inf_bits}};
        for (i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "average value %zu = 0x%08x", vals[i].at,
                     (unsigned)vals[i].bits);
            memcpy(bad, good, len);
            tu_put_u32le(bad + tail.values_at + 4 * vals[i].at, vals[i].bits);
            write_crafted(t->other, bad, len, len, 0);
            EXPECT_REFUSED(CVAE_ERR_NUMERIC, what);
        }
    }
#undef EXPECT_REFUSED

    /* After all that: own still swaps its own average, none still has nothing to swap, and
     * the good file loads into both. */
    tu_read_average(own, p, NPARAMS, again);
    assert_memory_equal(again, own_avg, sizeof again);
    assert_int_equal(cvae_optimizer_swap_average(none, p, NPARAMS), CVAE_ERR_STATE);
    assert_int_equal(cvae_optimizer_steps(own), 2);
    assert_int_equal(cvae_optimizer_steps(none), 1);
    CHECK_OPT(cvae_optimizer_load(own, t->path), own);
    CHECK_OPT(cvae_optimizer_load(none, t->path), none);
    expect_same_opt(oa, own);
    expect_same_opt(oa, none);
    tu_read_average(oa, cvae_model_params(a, NULL), NPARAMS, own_avg);
    tu_read_average(none, cvae_model_params(a, NULL), NPARAMS, again);
    assert_memory_equal(again, own_avg, sizeof again);
}

/* Fails if a re-checksummed flip of any bit of the average's fixed fields (decay, count,
 * flag) or of a value's sign and exponent byte crashes cvae_optimizer_load, or is loaded into
 * an inconsistent optimizer (decay outside [0, 1), a flag other than 0 or 1, a swap that
 * does not work, a step while swapped not refused, a step while not swapped refused), or
 * fails changing the optimizer. Under the sanitizer build this checks the bounds of the
 * average's parsing. */
static void test_average_tail_flips(void **state)
{
    tmp *t = *state;
    cvae_model *a = tiny_model(5);
    cvae_optimizer *oa = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, NPARAMS);
    static avg_snap before, after;
    float p[NPARAMS], g[NPARAMS];
    unsigned char *good, *bad;
    size_t len, off, nbytes;
    avg_tail tail;
    int bit, loaded = 0, refused = 0;
    CHECK_OPT(cvae_optimizer_set(oa, CVAE_OPT_AVERAGE, 0.9), oa);
    train(a, oa, 5, 100);
    CHECK(cvae_model_save(a, oa, t->path), a);
    good = read_all(t->path, &len);
    bad = tu_keep(TU_KEEP_MEMORY, malloc(len));
    tail = find_avg_tail(len, 1);
    nbytes = tail.values_at - tail.decay_at;
    assert_int_equal(nbytes, 20);
    tu_fill_uniform(g, NPARAMS, 9);
    for (off = tail.decay_at; off < tail.values_at + 8; off++) {
        /* The fixed fields, then the top byte (sign, exponent) of the first two values. */
        if (off >= tail.values_at && (off - tail.values_at) % 4 != 3)
            continue;
        for (bit = 0; bit < 8; bit++) {
            char what[64];
            cvae_status st;
            snprintf(what, sizeof what, "tail byte %zu bit %d", off - tail.decay_at, bit);
            CHECK_OPT(cvae_optimizer_load(o, t->path), o);
            snap_avg(o, &before);
            memcpy(bad, good, len);
            bad[off] ^= (unsigned char)(1u << bit);
            write_crafted(t->other, bad, len, len, 0);
            st = cvae_optimizer_load(o, t->other);
            if (st != CVAE_OK) {
                refused++;
                if (st != CVAE_ERR_FORMAT && st != CVAE_ERR_NUMERIC)
                    fail_msg("%s: %s", what, cvae_status_string(st));
                snap_avg(o, &after);
                if (memcmp(&before, &after, sizeof before) != 0)
                    fail_msg("%s: a failed load changed the optimizer", what);
                continue;
            }
            loaded++;
            {
                double d = -1.0;
                int sw = cvae_optimizer_average_swapped(o);
                CHECK_OPT(cvae_optimizer_get(o, CVAE_OPT_AVERAGE, &d), o);
                if (!(d >= 0.0 && d < 1.0) || (sw != 0 && sw != 1))
                    fail_msg("%s: loaded decay %g, swapped %d", what, d, sw);
                memcpy(p, cvae_model_params(a, NULL), sizeof p);
                if (sw) {
                    assert_int_equal(cvae_optimizer_step(o, p, g, NPARAMS), CVAE_ERR_STATE);
                    CHECK_OPT(cvae_optimizer_swap_average(o, p, NPARAMS), o);
                }
                CHECK_OPT(cvae_optimizer_step(o, p, g, NPARAMS), o);
                CHECK_OPT(cvae_optimizer_swap_average(o, p, NPARAMS), o);
                CHECK_OPT(cvae_optimizer_swap_average(o, p, NPARAMS), o);
            }
        }
    }
    /* Both outcomes happen: the checks are reached and do not refuse everything. */
    assert_true(loaded > 0 && refused > 0);
}

/* Fails if a model train step with an optimizer whose average is swapped in is not refused
 * with CVAE_ERR_STATE before it changes anything: on a new model with the data init on (a
 * decoder ending in linear + reshape, whose output biases the first step sets from its batch,
 * "kept even if that step then fails"), the parameters, step count and generator must stay;
 * swapped back, the model trains bit for bit as a twin that was never refused. */
static void test_average_swapped_model_step_refused(void **state)
{
    cvae_model *m[2];
    cvae_optimizer *o[2];
    float before[2 * IMG + 2 * LAT * IMG + 2 * LAT + IMG], x[MAXB * IMG], y[MAXB * IMG];
    float *q, *g;
    size_t n = 0;
    int k;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_stack *enc = NULL, *dec = NULL;
        cvae_layer *l = NULL;
        m[k] = tu_new_model();
        CHECK(cvae_model_set(m[k], CVAE_MODEL_DATA_INIT, 1), m[k]);
        assert_int_equal(cvae_stack_create(&enc), CVAE_OK);
        assert_int_equal(cvae_stack_create(&dec), CVAE_OK);
        tu_add_layer(enc, cvae_layer_create_flatten(&l), &l);
        tu_add_layer(enc, cvae_layer_create_linear(&l, 2 * LAT), &l);
        tu_add_layer(dec, cvae_layer_create_linear(&l, IMG), &l);
        tu_add_layer(dec, cvae_layer_create_reshape(&l, IC, IH, IW), &l);
        CHECK(cvae_model_init_stacks(m[k], enc, dec, IC, IH, IW, LAT, MAXB, 12), m[k]);
        n = cvae_model_param_count(m[k]);
        assert_int_equal(n, sizeof before / sizeof before[0]);
        o[k] = tu_new_opt(CVAE_OPTIMIZER_ADAM, n);
        CHECK_OPT(cvae_optimizer_set(o[k], CVAE_OPT_AVERAGE, 0.9), o[k]);
    }
    /* One averaged step of a copy of the parameters, the average swapped into the model (as a
     * model and optimizer saved swapped come back). */
    q = tu_keep(TU_KEEP_MEMORY, malloc(n * sizeof *q));
    g = tu_keep(TU_KEEP_MEMORY, malloc(n * sizeof *g));
    tu_fill_uniform(q, n, 13);
    tu_fill_uniform(g, n, 14);
    for (k = 0; k < 2; k++) {
        float *p = cvae_model_params(m[k], NULL);
        memcpy(q, p, n * sizeof *q);
        CHECK_OPT(cvae_optimizer_step(o[k], q, g, n), o[k]);
        /* The average (q after the step) into the model, its weights into the optimizer. */
        CHECK_OPT(cvae_optimizer_swap_average(o[k], p, n), o[k]);
        assert_memory_equal(p, q, n * sizeof *q);
    }
    memcpy(before, cvae_model_params(m[0], NULL), sizeof before);
    tu_fill_uniform(x, MAXB * IMG, 15);
    tu_fill_uniform(y, MAXB * IMG, 16);
    assert_int_equal(cvae_model_train_step(m[0], o[0], x, MAXB, NULL, NULL), CVAE_ERR_STATE);
    assert_non_null(strstr(cvae_model_last_error(m[0]), "swap"));
    assert_memory_equal(cvae_model_params(m[0], NULL), before, sizeof before);
    assert_int_equal(cvae_model_steps(m[0]), 0);
    assert_int_equal(cvae_optimizer_steps(o[0]), 1);
    /* Back: both swap back and take the same step on y, m[0] after its refusal. */
    for (k = 0; k < 2; k++) {
        CHECK_OPT(cvae_optimizer_swap_average(o[k], cvae_model_params(m[k], NULL), n), o[k]);
        CHECK(cvae_model_train_step(m[k], o[k], y, MAXB, NULL, NULL), m[k]);
    }
    assert_memory_equal(cvae_model_params(m[0], NULL), cvae_model_params(m[1], NULL),
                        sizeof before);
    assert_int_equal(cvae_model_steps(m[0]), 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_round_trip_adam),
        T(test_round_trip_sgd_and_model_only),
        T(test_resume_equivalence),
        T(test_every_byte_flip_rejected),
        T(test_truncated_and_trailing),
        T(test_header_fields),
        T(test_bad_values_with_good_crc),
        T(test_loaded_moments_checked),
        T(test_oversized_architecture),
        T(test_huge_activations_refused),
        T(test_max_memory_option),
        T(test_rechecksummed_flips),
        T(test_foreign_missing_directory),
        T(test_load_arguments),
        T(test_save_errors),
        T(test_failed_save_keeps_old_file),
        T(test_save_to_full_device),
        T(test_save_failing_half_way),
        T(test_optimizer_load_errors),
        T(test_average_round_trip_adam),
        T(test_average_round_trip_sgd),
        T(test_average_resume_equivalence),
        T(test_average_corrupt_rejected),
        T(test_average_tail_flips),
        T(test_average_swapped_model_step_refused),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
