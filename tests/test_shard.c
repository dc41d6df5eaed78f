/*
 * test_shard.c - data-parallel steps (cvae_model_shard_grads,
 * cvae_model_apply_grads, cvae_model_data_init, cvae_model_evaluate_range).
 * Replicas of one model, each given a shard of the same global batch, with
 * their gradient blocks summed here as an allreduce would:
 *  - one shard of the whole batch is cvae_model_train_step, bit for bit
 *    (parameters, losses, step count, generator), with the default recipe;
 *  - two shards that are the batch's lanes reproduce the one-process bits,
 *    plain, binarised and conditional, even and odd batches, over steps;
 *    cvae_shard_cut gives those lanes (a batch under 32 whole to one);
 *  - three shards match the one-process gradient within 1e-5 (L2), keep
 *    the generators in step (an empty shard too), and each shard's gradient is n / B times the
 *    gradient of its images taken as their own batch;
 *  - each shard's eps and binarised pixels are the rows a whole step draws;
 *  - a refused update changes nothing and puts the generator back; so does
 *    a non-finite gradient of a finite loss;
 *  - every misuse gets its status;
 *  - evaluation ranges add up to cvae_model_evaluate (chunked, binarised);
 *  - the grads-ready callback reports final spans in backward order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#define SIDE 8
#define IMG (SIDE * SIDE)
#define LAT 3 /* odd: eps is drawn in pairs, the skips must count the discarded one */
#define MAXB 41
#define CLASSES 3
#define STEPS 3

#define CHECK TU_CHECK_MODEL
/* The same for an optimizer call. */
#define CHECK_OPT(call, o)                                                                         \
    do {                                                                                           \
        cvae_status st_ = (call);                                                                  \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s (%s)", #call, cvae_status_string(st_),                                \
                     cvae_optimizer_last_error(o));                                                \
    } while (0)

enum { PLAIN = 0, BINARISED = 1, CONDITIONAL = 2, RECIPE = 4 };

static float images[STEPS][MAXB * IMG];
static int labels[STEPS][MAXB];

static void make_data(void)
{
    int s, i;
    for (s = 0; s < STEPS; s++) {
        tu_fill_uniform(images[s], MAXB * IMG, 100 + (uint64_t)s);
        for (i = 0; i < MAXB; i++)
            labels[s][i] = (i * 7 + s) % CLASSES;
    }
}

/* The preset on 8 x 8 images (narrow), for batches of up to max_batch. The
 * default recipe (data init, log-variance init) with RECIPE, else the plain. */
static cvae_model *model(int flags, int max_batch)
{
    cvae_model *m = tu_new_model();
    if (flags & RECIPE) {
        CHECK(cvae_model_set(m, CVAE_MODEL_DATA_INIT, 1), m);
        CHECK(cvae_model_set(m, CVAE_MODEL_LOGVAR_INIT, -4), m);
    }
    if (flags & CONDITIONAL)
        CHECK(cvae_model_set(m, CVAE_MODEL_CLASSES, CLASSES), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_WIDTH, 4), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_HIDDEN, 24), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_BINARIZE, (flags & BINARISED) ? 1 : 0), m);
    CHECK(cvae_model_init_preset(m, 1, SIDE, SIDE, LAT, max_batch, 7), m);
    return m;
}

static cvae_optimizer *adam(cvae_model *m)
{
    return tu_new_opt(CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m));
}

static const int *step_labels(int flags, int s, int first)
{
    return (flags & CONDITIONAL) ? labels[s] + first : NULL;
}

/* Trains model `one` for STEPS steps of b images with train_step, and P
 * replicas on the shards cut[p] .. cut[p + 1] with their summed gradient;
 * fails unless every replica ends with the one-process parameters (bits if
 * exact, else nothing: the caller checks what it wants), step count and
 * generator. Returns the largest relative L2 distance between the summed and
 * the one-process gradient over the steps. */
static double run_shards(int flags, int b, int P, const int *cut, int exact)
{
    cvae_model *one = model(flags, b), *rep[4];
    cvae_optimizer *opt_one = adam(one), *opt[4];
    size_t np = cvae_model_param_count(one), i;
    float *sum = malloc(np * sizeof *sum), *g1 = malloc(np * sizeof *g1);
    double worst = 0.0;
    int p, s;
    assert_non_null(sum);
    assert_non_null(g1);
    for (p = 0; p < P; p++) {
        rep[p] = model(flags, cut[p + 1] - cut[p] > 0 ? cut[p + 1] - cut[p] : 1);
        opt[p] = adam(rep[p]);
    }
    for (s = 0; s < STEPS; s++) {
        double r1, k1, rs = 0.0, ks = 0.0, d2 = 0.0, n2 = 0.0;
        CHECK(cvae_model_train_step_labels(one, opt_one, images[s], step_labels(flags, s, 0), b,
                                           &r1, &k1),
              one);
        memcpy(g1, cvae_model_grads(one, NULL), np * sizeof *g1);
        memset(sum, 0, np * sizeof *sum);
        for (p = 0; p < P; p++) {
            double r, k;
            const float *g;
            if (s == 0)
                CHECK(cvae_model_data_init(rep[p], images[0], b), rep[p]);
            CHECK(cvae_model_shard_grads(rep[p], images[s] + (size_t)cut[p] * IMG,
                                         step_labels(flags, s, cut[p]), cut[p],
                                         cut[p + 1] - cut[p], b, &r, &k),
                  rep[p]);
            rs += r;
            ks += k;
            g = cvae_model_grads(rep[p], NULL);
            for (i = 0; i < np; i++)
                sum[i] += g[i];
        }
        assert_true(fabs(rs - r1) <= 1e-6 * r1);
        assert_true(fabs(ks - k1) <= 1e-6 * k1 + 1e-12);
        for (i = 0; i < np; i++) {
            d2 += ((double)sum[i] - g1[i]) * ((double)sum[i] - g1[i]);
            n2 += (double)g1[i] * g1[i];
        }
        assert_true(n2 > 0.0);
        if (sqrt(d2 / n2) > worst)
            worst = sqrt(d2 / n2);
        for (p = 0; p < P; p++) {
            memcpy(cvae_model_grads(rep[p], NULL), exact ? sum : g1, np * sizeof *sum);
            CHECK(cvae_model_apply_grads(rep[p], opt[p]), rep[p]);
        }
    }
    for (p = 0; p < P; p++) {
        assert_int_equal(cvae_model_steps(rep[p]), STEPS);
        assert_memory_equal(&rep[p]->rng, &one->rng, sizeof one->rng);
        /* Given the one-process gradient (not exact), the replicas still
         * follow it bit for bit: the update itself is the same. */
        assert_memory_equal(cvae_model_params(rep[p], NULL), cvae_model_params(one, NULL),
                            np * sizeof(float));
    }
    free(sum);
    free(g1);
    tu_release_all(); /* this run's models and optimizers */
    return worst;
}

/* Fails unless one shard of the whole batch gives cvae_model_train_step's
 * bits, default recipe (data init done by the shard itself) included. */
static void test_whole_batch_is_train_step(void **state)
{
    static const int whole[] = {0, 40};
    (void)state;
    assert_true(run_shards(RECIPE, 40, 1, whole, 1) == 0.0);
    assert_true(run_shards(BINARISED | CONDITIONAL, 40, 1, whole, 1) == 0.0);
    assert_true(run_shards(PLAIN, 7, 1, (const int[]){0, 7}, 1) == 0.0);
}

/* Fails unless two shards cut where the batch's lanes are (B/2 rounded
 * down, then the rest) reproduce the one-process bits. */
static void test_two_lanes_reproduce_bits(void **state)
{
    (void)state;
    assert_true(run_shards(PLAIN, 40, 2, (const int[]){0, 20, 40}, 1) == 0.0);
    assert_true(run_shards(PLAIN, 41, 2, (const int[]){0, 20, 41}, 1) == 0.0);
    assert_true(run_shards(BINARISED, 40, 2, (const int[]){0, 20, 40}, 1) == 0.0);
    assert_true(run_shards(CONDITIONAL, 33, 2, (const int[]){0, 16, 33}, 1) == 0.0);
    assert_true(run_shards(RECIPE, 40, 2, (const int[]){0, 20, 40}, 1) == 0.0);
}

/* The cuts of cvae_shard_cut for P shards of b images, as run_shards takes them. */
static void cut_of(int b, int P, int *cut)
{
    int p, first, n;
    for (p = 0; p < P; p++) {
        assert_int_equal(cvae_shard_cut(b, P, p, &first, &n), CVAE_OK);
        assert_int_equal(first, p == 0 ? 0 : cut[p]);
        cut[p] = first;
        cut[p + 1] = first + n;
    }
    assert_int_equal(cut[P], b);
}

/* Fails unless cvae_shard_cut gives the lanes for two shards (a batch under
 * 32 whole to the first), with which two replicas reproduce one process,
 * an even cut otherwise, and refuses bad arguments. */
static void test_shard_cut(void **state)
{
    int cut[5] = {0}, first, n, b;
    (void)state;
    cut_of(40, 2, cut);
    assert_true(cut[1] == 20);
    cut_of(41, 2, cut);
    assert_true(cut[1] == 20);
    cut_of(31, 2, cut);
    assert_true(cut[1] == 31); /* one lane: all to the first */
    cut_of(32, 2, cut);
    assert_true(cut[1] == 16);
    cut_of(40, 3, cut);
    assert_true(cut[1] == 13 && cut[2] == 26);
    cut_of(2, 4, cut);
    assert_true(cut[1] == 0 && cut[2] == 1 && cut[3] == 1);
    cut_of(0, 1, cut);
    /* Every batch size the lanes treat apart: two replicas give the bits. */
    for (b = 30; b <= 33; b++) {
        cut_of(b, 2, cut);
        assert_true(run_shards(b % 2 ? CONDITIONAL : BINARISED, b, 2, cut, 1) == 0.0);
    }
    assert_int_equal(cvae_shard_cut(-1, 2, 0, &first, &n), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_shard_cut(8, 0, 0, &first, &n), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_shard_cut(8, 2, 2, &first, &n), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_shard_cut(8, 2, -1, &first, &n), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_shard_cut(8, 2, 0, NULL, &n), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_shard_cut(8, 2, 0, &first, NULL), CVAE_ERR_INVALID_ARG);
}

/* Fails unless three shards (and two that are not the lanes) give the
 * one-process gradient within 1e-5 relative, with the generators in step. */
static void test_other_cuts_match(void **state)
{
    double w;
    (void)state;
    w = run_shards(PLAIN, 40, 3, (const int[]){0, 13, 26, 40}, 0);
    print_message("three shards: relative L2 distance %.3g\n", w);
    assert_true(w <= 1e-5);
    w = run_shards(CONDITIONAL | RECIPE, 41, 3, (const int[]){0, 10, 30, 41}, 0);
    assert_true(w <= 1e-5);
    w = run_shards(BINARISED, 40, 2, (const int[]){0, 15, 40}, 0);
    assert_true(w <= 1e-5);
    /* A batch smaller than the number of replicas: an empty shard. */
    w = run_shards(BINARISED | CONDITIONAL, 2, 3, (const int[]){0, 1, 1, 2}, 0);
    assert_true(w <= 1e-5);
}

/* Fails unless a shard's gradient is n / B times the gradient of its images
 * as a batch of their own (with the same eps), an independent scaling. */
static void test_shard_scale(void **state)
{
    cvae_model *a = model(PLAIN, 40), *b = model(PLAIN, 40);
    size_t np = cvae_model_param_count(a), i;
    const float *ga, *gb;
    double r, k, rb, kb, d2 = 0.0, n2 = 0.0;
    (void)state;
    /* a: images 10..24 of a batch of 40; its eps are the rows 10..24. */
    CHECK(cvae_model_shard_grads(a, images[0] + 10 * IMG, NULL, 10, 15, 40, &r, &k), a);
    memcpy(b->eps, a->eps, 15 * LAT * sizeof(float));
    cvi_model_loss_grad(b, images[0] + 10 * IMG, 15, &rb, &kb);
    ga = cvae_model_grads(a, NULL);
    gb = cvae_model_grads(b, NULL);
    for (i = 0; i < np; i++) {
        double want = gb[i] * 15.0 / 40.0;
        d2 += (ga[i] - want) * (ga[i] - want);
        n2 += want * want;
    }
    assert_true(n2 > 0.0);
    assert_true(sqrt(d2 / n2) <= 1e-6);
    assert_true(fabs(r - rb / 40.0) <= 1e-9 * rb);
    assert_true(fabs(k - kb / 40.0) <= 1e-9 * kb + 1e-12);
}

/* Fails unless a shard's eps (and binarised pixels) are the rows a whole
 * step of the same generator draws for its images. */
static void test_shard_draws(void **state)
{
    cvae_model *one = model(BINARISED, 40), *rep = model(BINARISED, 40);
    cvi_rng start = one->rng;
    (void)state;
    /* The whole batch's draws through the one-process path, without an update. */
    CHECK(cvae_model_shard_grads(one, images[0], NULL, 0, 40, 40, NULL, NULL), one);
    assert_memory_equal(&rep->rng, &start, sizeof start);
    CHECK(cvae_model_shard_grads(rep, images[0] + 25 * IMG, NULL, 25, 9, 40, NULL, NULL), rep);
    assert_memory_equal(rep->eps, one->eps + 25 * LAT, 9 * LAT * sizeof(float));
    assert_memory_equal(rep->xbuf, one->xbuf + 25 * IMG, 9 * IMG * sizeof(float));
    assert_memory_equal(&rep->rng, &one->rng, sizeof one->rng);
}

/* Fails unless an update refused for a non-finite gradient leaves the
 * parameters, the step count, the optimizer and the generator (put back to
 * before the shard's draws) as they were, and a good one then goes on. */
static void test_refused_update(void **state)
{
    cvae_model *m = model(PLAIN, 40), *ref = model(PLAIN, 40);
    cvae_optimizer *opt = adam(m), *opt_ref = adam(ref);
    size_t np = cvae_model_param_count(m);
    float *p0 = malloc(np * sizeof *p0);
    cvi_rng before = m->rng;
    (void)state;
    assert_non_null(p0);
    memcpy(p0, cvae_model_params(m, NULL), np * sizeof *p0);
    CHECK(cvae_model_shard_grads(m, images[0], NULL, 0, 20, 40, NULL, NULL), m);
    cvae_model_grads(m, NULL)[np / 2] = NAN;
    assert_int_equal(cvae_model_apply_grads(m, opt), CVAE_ERR_NUMERIC);
    assert_non_null(strstr(cvae_model_last_error(m), "model_apply_grads"));
    assert_memory_equal(p0, cvae_model_params(m, NULL), np * sizeof *p0);
    assert_memory_equal(&before, &m->rng, sizeof before);
    assert_int_equal(cvae_model_steps(m), 0);
    assert_int_equal(cvae_optimizer_steps(opt), 0);
    /* The same step again, whole, is the reference's first step. */
    CHECK(cvae_model_shard_grads(m, images[0], NULL, 0, 40, 40, NULL, NULL), m);
    CHECK(cvae_model_apply_grads(m, opt), m);
    CHECK(cvae_model_train_step(ref, opt_ref, images[0], 40, NULL, NULL), ref);
    assert_memory_equal(cvae_model_params(ref, NULL), cvae_model_params(m, NULL),
                        np * sizeof *p0);
    free(p0);
}

/* Fails unless an update refused because the optimizer's running average is
 * swapped into the parameters puts the generator back as a refused
 * non-finite update does: after swapping back, the same step is the
 * reference's first, bit for bit. */
static void test_refused_swapped(void **state)
{
    cvae_model *m = model(PLAIN, 40), *ref = model(PLAIN, 40);
    cvae_optimizer *opt = adam(m), *opt_ref = adam(ref);
    size_t np = cvae_model_param_count(m);
    float *p1 = malloc(np * sizeof *p1);
    cvi_rng before;
    (void)state;
    assert_non_null(p1);
    /* One averaged step each, so that there is an average to swap. */
    CHECK_OPT(cvae_optimizer_set(opt, CVAE_OPT_AVERAGE, 0.9), opt);
    CHECK_OPT(cvae_optimizer_set(opt_ref, CVAE_OPT_AVERAGE, 0.9), opt_ref);
    CHECK(cvae_model_train_step(m, opt, images[0], 40, NULL, NULL), m);
    CHECK(cvae_model_train_step(ref, opt_ref, images[0], 40, NULL, NULL), ref);
    CHECK_OPT(cvae_optimizer_swap_average(opt, cvae_model_params(m, NULL), np), opt);
    memcpy(p1, cvae_model_params(m, NULL), np * sizeof *p1);
    before = m->rng;
    CHECK(cvae_model_shard_grads(m, images[1], NULL, 0, 40, 40, NULL, NULL), m);
    assert_int_equal(cvae_model_apply_grads(m, opt), CVAE_ERR_STATE);
    assert_non_null(strstr(cvae_model_last_error(m), "swapped"));
    assert_memory_equal(p1, cvae_model_params(m, NULL), np * sizeof *p1);
    assert_memory_equal(&before, &m->rng, sizeof before);
    assert_int_equal(cvae_model_steps(m), 1);
    assert_int_equal(cvae_optimizer_steps(opt), 1);
    CHECK_OPT(cvae_optimizer_swap_average(opt, cvae_model_params(m, NULL), np), opt);
    CHECK(cvae_model_shard_grads(m, images[1], NULL, 0, 40, 40, NULL, NULL), m);
    CHECK(cvae_model_apply_grads(m, opt), m);
    CHECK(cvae_model_train_step(ref, opt_ref, images[1], 40, NULL, NULL), ref);
    assert_memory_equal(cvae_model_params(ref, NULL), cvae_model_params(m, NULL),
                        np * sizeof *p1);
    free(p1);
}

static void expect_error(cvae_model *m, cvae_status got, cvae_status want, const char *words)
{
    assert_int_equal(got, want);
    if (words && !strstr(cvae_model_last_error(m), words))
        fail_msg("message '%s' lacks '%s'", cvae_model_last_error(m), words);
}

/* Fails unless every misuse gets its status (and message) and changes
 * nothing. */
static void test_errors(void **state)
{
    cvae_model *m = model(PLAIN, 20), *c = model(CONDITIONAL, 20), *e = tu_new_model();
    cvae_model *d = model(RECIPE, 20), *g = model(PLAIN, 20);
    cvae_optimizer *small = tu_new_opt(CVAE_OPTIMIZER_ADAM, 10);
    const float *x = images[0];
    float bad[IMG];
    double r;
    cvi_rng before = m->rng;
    (void)state;
    assert_int_equal(cvae_model_shard_grads(NULL, x, NULL, 0, 1, 1, &r, &r), CVAE_ERR_INVALID_ARG);
    expect_error(e, cvae_model_shard_grads(e, x, NULL, 0, 1, 1, &r, &r), CVAE_ERR_STATE, NULL);
    expect_error(m, cvae_model_shard_grads(m, NULL, NULL, 0, 1, 1, &r, &r), CVAE_ERR_INVALID_ARG,
                 "NULL");
    expect_error(m, cvae_model_shard_grads(m, x, NULL, 0, -1, 1, &r, &r), CVAE_ERR_INVALID_ARG,
                 "images");
    expect_error(m, cvae_model_shard_grads(m, x, NULL, 0, 21, 40, &r, &r), CVAE_ERR_INVALID_ARG,
                 "[1, 20]");
    expect_error(m, cvae_model_shard_grads(m, x, NULL, -1, 5, 40, &r, &r), CVAE_ERR_INVALID_ARG,
                 "not a shard");
    expect_error(m, cvae_model_shard_grads(m, x, NULL, 36, 5, 40, &r, &r), CVAE_ERR_INVALID_ARG,
                 "not a shard");
    expect_error(m, cvae_model_shard_grads(m, x, NULL, 0, 5, 0, &r, &r), CVAE_ERR_INVALID_ARG,
                 "not a shard");
    expect_error(m, cvae_model_shard_grads(m, x, labels[0], 0, 5, 10, &r, &r),
                 CVAE_ERR_INVALID_ARG, "label");
    expect_error(c, cvae_model_shard_grads(c, x, NULL, 0, 5, 10, &r, &r), CVAE_ERR_INVALID_ARG,
                 "label");
    assert_memory_equal(&before, &m->rng, sizeof before);
    /* An empty shard is fine, x unread: a zero gradient. */
    cvae_model_grads(m, NULL)[3] = 1.0f;
    CHECK(cvae_model_shard_grads(m, NULL, NULL, 4, 0, 9, &r, &r), m);
    assert_true(r == 0.0 && cvae_model_grads(m, NULL)[3] == 0.0f);
    /* The data init of a first step needs the whole batch. */
    expect_error(d, cvae_model_shard_grads(d, x, NULL, 0, 5, 10, &r, &r), CVAE_ERR_STATE,
                 "cvae_model_data_init");
    /* A learned sigma needs the whole batch's error. */
    CHECK(cvae_model_set(g, CVAE_MODEL_LIKELIHOOD, CVAE_LIKELIHOOD_GAUSSIAN), g);
    CHECK(cvae_model_set(g, CVAE_MODEL_SIGMA, 0.0), g);
    expect_error(g, cvae_model_shard_grads(g, x, NULL, 5, 5, 10, &r, &r), CVAE_ERR_STATE,
                 "sigma");
    CHECK(cvae_model_shard_grads(g, x, NULL, 0, 10, 10, &r, &r), g); /* whole: fine */
    /* apply_grads. */
    assert_int_equal(cvae_model_apply_grads(NULL, small), CVAE_ERR_INVALID_ARG);
    expect_error(m, cvae_model_apply_grads(m, NULL), CVAE_ERR_INVALID_ARG, "NULL");
    expect_error(m, cvae_model_apply_grads(m, small), CVAE_ERR_SHAPE, "10 parameters");
    expect_error(e, cvae_model_apply_grads(e, small), CVAE_ERR_STATE, NULL);
    /* data_init. */
    assert_int_equal(cvae_model_data_init(NULL, x, 1), CVAE_ERR_INVALID_ARG);
    expect_error(d, cvae_model_data_init(d, NULL, 1), CVAE_ERR_INVALID_ARG, "NULL");
    expect_error(d, cvae_model_data_init(d, x, 0), CVAE_ERR_INVALID_ARG, "images");
    memcpy(bad, x, sizeof bad);
    bad[17] = INFINITY;
    expect_error(d, cvae_model_data_init(d, bad, 1), CVAE_ERR_NUMERIC, "pixel 17 of image 0");
    expect_error(e, cvae_model_data_init(e, x, 1), CVAE_ERR_STATE, NULL);
}

/* Fails unless cvae_model_data_init sets the output biases a first
 * train_step would from the same batch, marks them done (a shard then
 * proceeds), and does nothing once a step is taken or with the option off. */
static void test_data_init(void **state)
{
    cvae_model *a = model(RECIPE, 40), *b = model(RECIPE, 40), *off = model(PLAIN, 40);
    cvae_optimizer *oa = adam(a);
    size_t np = cvae_model_param_count(a);
    float *pb = malloc(np * sizeof *pb);
    double r;
    (void)state;
    assert_non_null(pb);
    /* train_step's data init, seen through its loss: the same as b's. */
    CHECK(cvae_model_data_init(b, images[0], 40), b);
    CHECK(cvae_model_shard_grads(b, images[0] + 5 * IMG, NULL, 5, 10, 40, &r, &r), b);
    CHECK(cvae_model_shard_grads(a, images[0], NULL, 0, 40, 40, &r, &r), a);
    /* Same parameters after a's own init: a's whole shard did it. */
    assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL),
                        np * sizeof(float));
    /* The option off: nothing changes. */
    memcpy(pb, cvae_model_params(off, NULL), np * sizeof *pb);
    CHECK(cvae_model_data_init(off, images[1], 40), off);
    assert_memory_equal(pb, cvae_model_params(off, NULL), np * sizeof *pb);
    /* After a step: nothing changes either. */
    CHECK(cvae_model_apply_grads(a, oa), a);
    memcpy(pb, cvae_model_params(a, NULL), np * sizeof *pb);
    CHECK(cvae_model_data_init(a, images[1], 40), a);
    assert_memory_equal(pb, cvae_model_params(a, NULL), np * sizeof *pb);
    free(pb);
}

/* What the grads-ready callback saw: the spans, the values each span held
 * when reported, and whether the encoder's first layer was still untouched
 * at the first report. */
typedef struct spans {
    cvae_model *m;
    size_t offset[16], count[16];
    int calls, encoder_clear_at_first;
    float *seen;
} spans;

static void on_ready(void *ctx, size_t offset, size_t count)
{
    spans *sp = ctx;
    const float *g = cvae_model_grads(sp->m, NULL);
    size_t i, first = cvae_layer_param_count(cvae_stack_layer(cvae_model_encoder(sp->m), 0));
    assert_true(sp->calls < 16);
    if (sp->calls == 0) {
        sp->encoder_clear_at_first = 1;
        for (i = 0; i < first; i++)
            if (g[i] != 0.0f)
                sp->encoder_clear_at_first = 0;
    }
    sp->offset[sp->calls] = offset;
    sp->count[sp->calls++] = count;
    memcpy(sp->seen + offset, g + offset, count * sizeof(float));
}

/* Fails unless the callback of cvae_model_set_grads_ready reports each
 * layer's span once, in backward order, adjacent and covering the block,
 * with the values it keeps (final), without changing the gradient's bits;
 * as the backward goes for a shard within one lane (the encoder's first
 * layer not yet computed at the first report); for shards across the lanes
 * on one thread and two, empty shards; and never from train_step. */
static void test_grads_ready(void **state)
{
    static const int shards[][3] = {{0, 20, 40}, {20, 20, 40}, {10, 20, 40}, {0, 40, 40},
                                    {5, 0, 40}, {0, 7, 7}};
    int t, c, j;
    (void)state;
    for (t = 1; t <= 2; t++)
        for (c = 0; c < 6; c++) {
            cvae_model *m = model(CONDITIONAL, 40), *ref = model(CONDITIONAL, 40);
            size_t np = cvae_model_param_count(m), end;
            int first = shards[c][0], n = shards[c][1], total = shards[c][2];
            const int *y = labels[0] + first;
            spans sp;
            memset(&sp, 0, sizeof sp);
            sp.m = m;
            sp.seen = malloc(np * sizeof(float));
            assert_non_null(sp.seen);
            CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, t), m);
            CHECK(cvae_model_set(ref, CVAE_MODEL_THREADS, t), ref);
            CHECK(cvae_model_set_grads_ready(m, on_ready, &sp), m);
            CHECK(cvae_model_shard_grads(m, images[0] + first * IMG, y, first, n, total, NULL,
                                         NULL),
                  m);
            CHECK(cvae_model_shard_grads(ref, images[0] + first * IMG, y, first, n, total, NULL,
                                         NULL),
                  ref);
            assert_int_equal(sp.calls, 8); /* the preset's parameter layers */
            for (end = np, j = 0; j < sp.calls; j++) {
                assert_int_equal(sp.offset[j] + sp.count[j], end);
                end = sp.offset[j];
            }
            assert_int_equal(end, 0);
            assert_memory_equal(sp.seen, cvae_model_grads(m, NULL), np * sizeof(float));
            assert_memory_equal(cvae_model_grads(ref, NULL), cvae_model_grads(m, NULL),
                                np * sizeof(float));
            if (c == 0 || c == 1) /* within one lane: reported as the backward goes */
                assert_true(sp.encoder_clear_at_first);
            /* train_step does not call it; NULL stops it. */
            sp.calls = 0;
            CHECK(cvae_model_train_step_labels(m, adam(m), images[1], labels[1], 40, NULL, NULL),
                  m);
            assert_int_equal(sp.calls, 0);
            CHECK(cvae_model_set_grads_ready(m, NULL, &sp), m);
            CHECK(cvae_model_shard_grads(m, images[0], labels[0], 0, 20, 40, NULL, NULL), m);
            assert_int_equal(sp.calls, 0);
            free(sp.seen);
            tu_release_all();
        }
    assert_int_equal(cvae_model_set_grads_ready(NULL, on_ready, NULL), CVAE_ERR_INVALID_ARG);
}

static void poison_span(void *ctx, size_t offset, size_t count)
{
    cvae_model *m = ctx;
    cvae_model_grads(m, NULL)[offset + count / 2] = INFINITY;
}

/* Fails unless a non-finite gradient with a finite loss (made here by the
 * grads-ready callback) is refused with CVAE_ERR_NUMERIC, naming the
 * gradient, with the generator put back; and unless cvi_first_nonfinite
 * finds NaN and infinities anywhere, in and after its blocks of 16. */
static void test_nonfinite_gradient(void **state)
{
    cvae_model *m = model(PLAIN, 20);
    cvi_rng before = m->rng;
    float v[37];
    size_t i, at;
    (void)state;
    CHECK(cvae_model_set_grads_ready(m, poison_span, m), m);
    assert_int_equal(cvae_model_shard_grads(m, images[0], NULL, 0, 20, 40, NULL, NULL),
                     CVAE_ERR_NUMERIC);
    assert_non_null(strstr(cvae_model_last_error(m), "is not finite (inf)"));
    assert_memory_equal(&before, &m->rng, sizeof before);
    for (i = 0; i < 37; i++)
        v[i] = (float)i - 18.0f;
    assert_int_equal(cvi_first_nonfinite(v, 37), 37);
    for (at = 0; at < 37; at += 5) {
        float keep = v[at];
        v[at] = at % 2 ? NAN : -INFINITY;
        assert_int_equal(cvi_first_nonfinite(v, 37), at);
        v[36] = INFINITY; /* a later one does not hide the first */
        assert_int_equal(cvi_first_nonfinite(v, 37), at);
        v[36] = 18.0f;
        v[at] = keep;
    }
}

/* Fails unless the sums of evaluation ranges cutting a dataset (across the
 * model's chunks of max batch, binarised so the pixels' draws count too)
 * add up to cvae_model_evaluate, an empty range gives 0, and a range
 * outside the dataset is refused. */
static void test_evaluate_range(void **state)
{
    cvae_dataset *ds = tu_new_dataset();
    uint8_t px[37 * IMG];
    int flags, i, cuts[] = {0, 5, 6, 19, 30, 37};
    (void)state;
    for (i = 0; i < 37 * IMG; i++)
        px[i] = (uint8_t)((i * 37 + i / 11) & 0xff);
    assert_int_equal(cvae_dataset_set_u8(ds, 37, 1, SIDE, SIDE, px, NULL), CVAE_OK);
    for (flags = PLAIN; flags <= BINARISED; flags++) {
        cvae_model *m = model(flags, 8); /* chunks of 8 */
        double r, k, rs = 0.0, ks = 0.0;
        CHECK(cvae_model_evaluate(m, ds, 99, &r, &k, NULL), m);
        for (i = 0; i + 1 < 6; i++) {
            double rr, kk;
            CHECK(cvae_model_evaluate_range(m, ds, 99, cuts[i], cuts[i + 1] - cuts[i], &rr, &kk),
                  m);
            rs += rr;
            ks += kk;
        }
        assert_true(fabs(rs / 37 - r) <= 1e-6 * r);
        assert_true(fabs(ks / 37 - k) <= 1e-6 * k + 1e-12);
        CHECK(cvae_model_evaluate_range(m, ds, 99, 37, 0, &rs, &ks), m);
        assert_true(rs == 0.0 && ks == 0.0);
        expect_error(m, cvae_model_evaluate_range(m, ds, 99, 30, 8, &rs, &ks),
                     CVAE_ERR_INVALID_ARG, "not in the 37");
        expect_error(m, cvae_model_evaluate_range(m, ds, 99, -1, 2, &rs, &ks),
                     CVAE_ERR_INVALID_ARG, "not in the 37");
        expect_error(m, cvae_model_evaluate_range(m, NULL, 99, 0, 2, &rs, &ks),
                     CVAE_ERR_INVALID_ARG, "NULL");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_whole_batch_is_train_step, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_two_lanes_reproduce_bits, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_other_cuts_match, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_shard_cut, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_shard_scale, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_shard_draws, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_refused_update, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_refused_swapped, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_errors, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_data_init, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_evaluate_range, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_grads_ready, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_nonfinite_gradient, tu_release_all_teardown),
    };
    make_data();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
