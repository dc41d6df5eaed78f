/*
 * test_lanes.c - a training batch of at least 2 CVI_LANE_MIN images runs as
 * two lanes, halves with their own rows, scratch, packing buffers, labels
 * and gradient block (model.c). Checked here on a small convolutional,
 * conditional model with an odd batch (lanes of 16 and 17 images):
 *  - its gradient against central differences of its loss;
 *  - the two-lane gradient against the gradients of the two halves taken
 *    apart (each a one-lane batch), weighted by their sizes;
 *  - the learned sigma of a Gaussian model, which needs the whole batch's
 *    error, against the error of the decoded batch computed here;
 *  - the step's gradient, on 1 and 2 threads, bit for bit the float sum of
 *    the two lanes' gradients taken apart: lane 1 adds its linear layers'
 *    weight gradients straight onto lane 0's (no second block of the
 *    model's size), which gives those bits only while its rows fit one pass
 *    of the multiply, and a batch of 600 (lanes of 300) must not do it.
 * That any thread count gives the same bits is test_threads' (its batch
 * splits into lanes too).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#define SIDE 6
#define IMG (SIDE * SIDE)
#define LAT 2
#define K 3 /* classes */
#define N 33 /* two lanes: 16 and 17 */
#define HALF 16

#define CHECK TU_CHECK_MODEL

static int labels[N];

/* A smooth conditional model with convolutions on both sides (tanh, no
 * kinks, so that central differences apply): encoder conv2d(2, 3x3, s1 p1)
 * tanh, flatten, concat_label, linear(2L); decoder concat_label,
 * linear(2 x 3 x 3), tanh, reshape(2, 3, 3), conv_transpose2d(1, 4x4, s2 p1)
 * giving 1 x 6 x 6. */
static cvae_model *conv_model_with(uint64_t seed, int gaussian, int threads, int max_batch)
{
    cvae_model *m = tu_new_model();
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_stack_create(&enc), CVAE_OK);
    assert_int_equal(cvae_stack_create(&dec), CVAE_OK);
    tu_add_layer(enc, cvae_layer_create_conv2d(&l, 2, 3, 3, 1, 1, 1, 1), &l);
    tu_add_layer(enc, cvae_layer_create_tanh(&l), &l);
    tu_add_layer(enc, cvae_layer_create_flatten(&l), &l);
    tu_add_layer(enc, cvae_layer_create_concat_label(&l, K), &l);
    tu_add_layer(enc, cvae_layer_create_linear(&l, 2 * LAT), &l);
    tu_add_layer(dec, cvae_layer_create_concat_label(&l, K), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, 18), &l);
    tu_add_layer(dec, cvae_layer_create_tanh(&l), &l);
    tu_add_layer(dec, cvae_layer_create_reshape(&l, 2, 3, 3), &l);
    tu_add_layer(dec, cvae_layer_create_conv_transpose2d(&l, 1, 4, 4, 2, 2, 1, 1), &l);
    if (gaussian) {
        CHECK(cvae_model_set(m, CVAE_MODEL_LIKELIHOOD, CVAE_LIKELIHOOD_GAUSSIAN), m);
        CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, 0.0), m);
    }
    CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, (double)threads), m);
    CHECK(cvae_model_init_stacks(m, enc, dec, 1, SIDE, SIDE, LAT, max_batch, seed), m);
    return m;
}

/* The same encoder and decoder with linear layers only: the encoder's
 * first layer with parameters is linear (lane 1's weights in a block of
 * its own), its second and the decoder's share lane 0's (lane_direct). */
static cvae_model *linear_model_with(uint64_t seed, int threads, int max_batch)
{
    cvae_model *m = tu_new_model();
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_stack_create(&enc), CVAE_OK);
    assert_int_equal(cvae_stack_create(&dec), CVAE_OK);
    tu_add_layer(enc, cvae_layer_create_flatten(&l), &l);
    tu_add_layer(enc, cvae_layer_create_concat_label(&l, K), &l);
    tu_add_layer(enc, cvae_layer_create_linear(&l, 12), &l);
    tu_add_layer(enc, cvae_layer_create_tanh(&l), &l);
    tu_add_layer(enc, cvae_layer_create_linear(&l, 2 * LAT), &l);
    tu_add_layer(dec, cvae_layer_create_concat_label(&l, K), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, 12), &l);
    tu_add_layer(dec, cvae_layer_create_tanh(&l), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, IMG), &l);
    tu_add_layer(dec, cvae_layer_create_reshape(&l, 1, SIDE, SIDE), &l);
    CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, (double)threads), m);
    CHECK(cvae_model_init_stacks(m, enc, dec, 1, SIDE, SIDE, LAT, max_batch, seed), m);
    return m;
}

static cvae_model *conv_model(uint64_t seed, int gaussian)
{
    return conv_model_with(seed, gaussian, 0, N);
}

typedef struct loss_data {
    const float *x, *eps;
    const int *labels;
    size_t n;
} loss_data;

/* (recon + KL) / n of d's images with its eps and labels: what
 * cvi_model_loss_grad differentiates (a tu_model_loss_fn). */
static double loss_at(cvae_model *m, void *ctx)
{
    const loss_data *d = ctx;
    double r, k;
    memcpy(m->eps, d->eps, d->n * LAT * sizeof(float));
    cvi_model_use_labels(m, d->labels);
    cvi_model_loss_grad(m, d->x, d->n, &r, &k);
    cvi_model_use_labels(m, NULL);
    return (r + k) / (double)d->n;
}

static void make_data(float *x, float *eps)
{
    size_t i;
    tu_fill_uniform(x, (size_t)N * IMG, 6);
    tu_fill_uniform(eps, (size_t)N * LAT, 7);
    for (i = 0; i < (size_t)N * LAT; i++)
        eps[i] = 2.0f * eps[i] - 1.0f;
    for (i = 0; i < N; i++)
        labels[i] = (int)(i * 7 % K);
}

/* Fails if the gradient of a two-lane batch differs from the central
 * difference of its loss. */
static void test_lane_gradient(void **state)
{
    cvae_model *m = conv_model(5, 0);
    static float x[N * IMG], eps[N * LAT];
    loss_data d = {x, eps, labels, N};
    size_t significant;
    (void)state;
    make_data(x, eps);
    significant = tu_check_model_gradient(m, loss_at, &d, "two lanes");
    /* The check saw real gradients, not a model that ignores its input. */
    assert_true(significant > 20);
}

/* Fails if the two-lane gradient of 33 images is not 16/33 of the first
 * 16 images' gradient plus 17/33 of the last 17's, each of those a batch of
 * one lane, or if the loss terms are not their sums. */
static void test_lanes_equal_halves(void **state)
{
    cvae_model *m = conv_model(9, 0);
    static float x[N * IMG], eps[N * LAT];
    size_t np = cvae_model_param_count(m), i;
    float *g = cvae_model_grads(m, NULL);
    double *whole = tu_keep(TU_KEEP_MEMORY, malloc(np * sizeof *whole));
    double *halves = tu_keep(TU_KEEP_MEMORY, calloc(np, sizeof *halves));
    double r, k, ra, ka, rb, kb, diff = 0.0, norm = 0.0;
    (void)state;
    make_data(x, eps);
    memcpy(m->eps, eps, sizeof eps);
    cvi_model_use_labels(m, labels);
    cvi_model_loss_grad(m, x, N, &r, &k);
    for (i = 0; i < np; i++)
        whole[i] = g[i];
    /* First half: images 0..15. */
    memcpy(m->eps, eps, HALF * LAT * sizeof(float));
    cvi_model_use_labels(m, labels);
    cvi_model_loss_grad(m, x, HALF, &ra, &ka);
    for (i = 0; i < np; i++)
        halves[i] += (double)g[i] * HALF / N;
    /* Second half: images 16..32. */
    memcpy(m->eps, eps + HALF * LAT, (N - HALF) * LAT * sizeof(float));
    cvi_model_use_labels(m, labels + HALF);
    cvi_model_loss_grad(m, x + HALF * IMG, N - HALF, &rb, &kb);
    cvi_model_use_labels(m, NULL);
    for (i = 0; i < np; i++) {
        halves[i] += (double)g[i] * (N - HALF) / N;
        diff += (whole[i] - halves[i]) * (whole[i] - halves[i]);
        norm += whole[i] * whole[i];
    }
    assert_true(norm > 0.0);
    if (sqrt(diff / norm) > 1e-5)
        fail_msg("two lanes against two halves: relative L2 difference %g", sqrt(diff / norm));
    assert_true(fabs(r - (ra + rb)) <= 1e-9 * fabs(r));
    assert_true(fabs(k - (ka + kb)) <= 1e-9 * fabs(k) + 1e-12);
}

/* Fails if a Gaussian model's learned sigma on a two-lane batch is not the
 * root mean squared error of the whole batch's decoded means, or if its
 * gradient differs from central differences. */
static void test_lanes_learned_sigma(void **state)
{
    cvae_model *m = conv_model(11, 1);
    static float x[N * IMG], eps[N * LAT];
    loss_data d = {x, eps, labels, N};
    const float *logits;
    double sigma, want, sq = 0.0;
    size_t i;
    (void)state;
    make_data(x, eps);
    loss_at(m, &d);
    CHECK(cvae_model_get(m, CVAE_MODEL_SIGMA_IN_USE, &sigma), m);
    /* The decoder again on the z the lanes drew, all 33 at once. */
    cvi_model_use_labels(m, labels);
    CHECK(cvae_stack_forward(cvae_model_decoder(m), m->z, N, &logits), m);
    cvi_model_use_labels(m, NULL);
    for (i = 0; i < (size_t)N * IMG; i++) {
        double e = 1.0 / (1.0 + exp(-(double)logits[i])) - x[i]; /* the mean is sigmoid(logit) */
        sq += e * e;
    }
    want = sqrt(sq / (N * IMG));
    if (fabs(sigma - want) > 1e-6 * want)
        fail_msg("learned sigma %.9g, the batch's root mean squared error %.9g", sigma, want);
    tu_check_model_gradient(m, loss_at, &d, "two lanes, learned sigma");
}

/* The gradient of images [first, first + n) of a batch of total, as a
 * shard (copied out of the model into g). */
static void shard_grad(cvae_model *m, const float *x, const float *eps, const int *lab,
                       size_t first, size_t n, size_t total, float *g)
{
    double r, k;
    memcpy(m->eps, eps + first * LAT, n * LAT * sizeof(float));
    cvi_model_use_labels(m, lab + first);
    cvi_model_shard_loss_grad(m, x + first * IMG, first, n, total, &r, &k);
    cvi_model_use_labels(m, NULL);
    memcpy(g, m->grads, m->nparams * sizeof(float));
}

/* Fails if a two-lane step's gradient is not, bit for bit, lane 0's plus
 * lane 1's computed apart (each shard one lane), on 1 or 2 threads (one
 * thread runs both lanes' rows through most layers in one call), for lanes
 * that fit one pass of the multiply (33 images) and lanes that do not (300),
 * and for the model of linear layers only with lanes of 33 and 34 images;
 * or if the first keeps a second gradient block of the model's size. */
static void test_lane_sums_bits(void **state)
{
    static const int batches[3] = {66, 600, 67};
    int b, t, nlinear = 0, i;
    (void)state;
    for (b = 0; b < 3; b++)
        for (t = 1; t <= 2; t++) {
            size_t B = (size_t)batches[b], h = B / 2, np, j;
            cvae_model *m = b < 2 ? conv_model_with(13, 0, t, batches[b])
                                  : linear_model_with(14, t, batches[b]);
            float *x = tu_keep(TU_KEEP_MEMORY, malloc(B * IMG * sizeof *x));
            float *eps = tu_keep(TU_KEEP_MEMORY, malloc(B * LAT * sizeof *eps));
            int *lab = tu_keep(TU_KEEP_MEMORY, malloc(B * sizeof *lab));
            float *whole, *ga, *gb;
            np = m->nparams;
            whole = tu_keep(TU_KEEP_MEMORY, malloc(np * sizeof *whole));
            ga = tu_keep(TU_KEEP_MEMORY, malloc(np * sizeof *ga));
            gb = tu_keep(TU_KEEP_MEMORY, malloc(np * sizeof *gb));
            tu_fill_uniform(x, B * IMG, 21);
            tu_fill_uniform(eps, B * LAT, 22);
            for (j = 0; j < B; j++) {
                eps[j * LAT] = 2.0f * eps[j * LAT] - 1.0f;
                lab[j] = (int)(j * 5 % K);
            }
            shard_grad(m, x, eps, lab, 0, B, B, whole);
            shard_grad(m, x, eps, lab, 0, h, B, ga);
            shard_grad(m, x, eps, lab, h, B - h, B, gb);
            for (j = 0; j < np; j++) {
                float sum = ga[j] + gb[j];
                if (memcmp(&sum, &whole[j], sizeof sum) != 0)
                    fail_msg("batch %zu, %d thread(s): gradient %zu is %.9g, the lanes apart "
                             "give %.9g + %.9g = %.9g",
                             B, t, j, (double)whole[j], (double)ga[j], (double)gb[j],
                             (double)sum);
            }
            /* The layout: the linear layers' weights (2L x 18 + 4 x 18) have
             * no place in lane 1's block while 33 rows fit one pass. */
            nlinear = 0;
            for (i = 0; i < cvae_stack_layer_count(cvae_model_decoder(m)); i++)
                nlinear += cvae_stack_layer(cvae_model_decoder(m), i)->lane_direct > 0;
            for (i = 0; i < cvae_stack_layer_count(cvae_model_encoder(m)); i++)
                nlinear += cvae_stack_layer(cvae_model_encoder(m), i)->lane_direct > 0;
            if (b == 0) {
                assert_int_equal(nlinear, 2);
                assert_int_equal(m->lane_floats, np - (size_t)(IMG * 2 + K) * 2 * LAT -
                                                     (size_t)(LAT + K) * 18);
            } else if (b == 1) {
                assert_int_equal(nlinear, 0);
                assert_int_equal(m->lane_floats, np);
            } else {
                assert_int_equal(nlinear, 3);
            }
            tu_release_all();
                }
}

/* Fails if lane 1's take of a turn does not wait for lane 0's give, and for what lane 0
 * wrote before it: lane 0 writes a value 20 ms after the region starts, then gives the turn;
 * lane 1 takes it at once and reads the value. (Run on two OpenMP threads; skipped when
 * there are not two.) */
static void test_turn_waits_for_give(void **state)
{
#ifdef _OPENMP
    cvae_model *m = conv_model_with(13, 0, 2, 66);
    cvae_stack *dec = cvae_model_decoder(m);
    cvae_layer *shared = NULL;
    float written = 0.0f, seen = -1.0f;
    int i, team = 0;
    (void)state;
    for (i = 0; i < cvae_stack_layer_count(dec); i++)
        if (cvae_stack_layer(dec, i)->lane_direct)
            shared = cvae_stack_layer(dec, i);
    assert_non_null(shared);
    m->turns[shared->lane_turn].given = 0;
#pragma omp parallel num_threads(2)
    {
        if (omp_get_num_threads() == 2) {
            if (omp_get_thread_num() == 0) {
                clock_t until = clock() + CLOCKS_PER_SEC / 50;
                team = 2;
                while (clock() < until)
                    ;
                written = 42.0f;
                cvi_lane_turn_give(m->turns, shared);
            } else {
                cvi_lane_turn_take(m->turns, shared);
                seen = written;
            }
        }
    }
    if (team != 2)
        skip();
    if (seen != 42.0f)
        fail_msg("lane 1 went on before lane 0 gave its turn (it read %g)", (double)seen);
#else
    (void)state;
    skip();
#endif
}

/* Fails if the preset's second lane keeps more than 5 % of a gradient block
 * (its linear layers' weights are 96 % of the parameters). */
static void test_preset_lane_block(void **state)
{
    cvae_model *m = tu_new_model();
    (void)state;
    CHECK(cvae_model_init_preset(m, 1, 28, 28, 16, 128, 1), m);
    if (m->lane_floats * 20 > m->nparams)
        fail_msg("lane 1's block holds %zu of %zu parameters' gradients", m->lane_floats,
                 m->nparams);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lane_gradient, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_lanes_equal_halves, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_lanes_learned_sigma, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_lane_sums_bits, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_preset_lane_block, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_turn_waits_for_give, tu_release_all_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
