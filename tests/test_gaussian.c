/*
 * test_gaussian.c - the Gaussian likelihood and the preset's width options:
 * the options' ranges, the reconstruction term against a computation by
 * hand, the model's gradient against central differences (fixed and learned
 * standard deviation), the learned value and its roll-back on a non-finite
 * step, the file round trip (format version 3), and the preset's widths.
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
#include <unistd.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#define H 4
#define W 3
#define IMG (H * W)
#define LAT 2
#define N 4 /* images, and the max batch */

#define CHECK(call, m)                                                                             \
    do {                                                                                           \
        cvae_status st_ = (call);                                                                  \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s (%s)", #call, cvae_status_string(st_), cvae_model_last_error(m));    \
    } while (0)

/* A smooth model (tanh, no kinks), so that central differences apply
 * everywhere: encoder flatten, linear(2L); decoder linear(8), tanh,
 * linear(IMG), reshape. */
static cvae_model *smooth_model(uint64_t seed, double sigma)
{
    cvae_model *m = tu_new_model();
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_stack_create(&enc), CVAE_OK);
    assert_int_equal(cvae_stack_create(&dec), CVAE_OK);
    tu_add_layer(enc, cvae_layer_create_flatten(&l), &l);
    tu_add_layer(enc, cvae_layer_create_linear(&l, 2 * LAT), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, 8), &l);
    tu_add_layer(dec, cvae_layer_create_tanh(&l), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, IMG), &l);
    tu_add_layer(dec, cvae_layer_create_reshape(&l, 1, H, W), &l);
    CHECK(cvae_model_init_stacks(m, enc, dec, 1, H, W, LAT, N, seed), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_LIKELIHOOD, CVAE_LIKELIHOOD_GAUSSIAN), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, sigma), m);
    return m;
}

/* The format version of a model file. */
static uint32_t file_version(const char *path)
{
    unsigned char head[12];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(head, 1, 12, f), 12);
    fclose(f);
    return tu_get_u32le(head + 8);
}

static double get(const cvae_model *m, cvae_model_option key)
{
    double v = -1.0;
    assert_int_equal(cvae_model_get(m, key, &v), CVAE_OK);
    return v;
}

/* Fails if an option accepts a value outside its documented range, or
 * reports other defaults or bounds than the header's. */
static void test_options(void **state)
{
    static const struct {
        cvae_model_option key;
        double value;
    } bad[] = {
        {CVAE_MODEL_LIKELIHOOD, 2},     {CVAE_MODEL_LIKELIHOOD, -1},  {CVAE_MODEL_LIKELIHOOD, 0.5},
        {CVAE_MODEL_SIGMA, 5e-5},       {CVAE_MODEL_SIGMA, 10.5},     {CVAE_MODEL_SIGMA, -0.1},
        {CVAE_MODEL_SIGMA, NAN},        {CVAE_MODEL_WIDTH, 0},        {CVAE_MODEL_WIDTH, 4097},
        {CVAE_MODEL_WIDTH, 2.5},        {CVAE_MODEL_HIDDEN, -1},      {CVAE_MODEL_HIDDEN, 65537},
        {CVAE_MODEL_HIDDEN, INFINITY},  {CVAE_MODEL_SIGMA_IN_USE, 0.1},
    };
    cvae_model *m = tu_new_model();
    double lo, hi;
    size_t i;
    (void)state;
    assert_true(get(m, CVAE_MODEL_LIKELIHOOD) == CVAE_LIKELIHOOD_BERNOULLI);
    assert_true(get(m, CVAE_MODEL_SIGMA) == 0.1);
    assert_true(get(m, CVAE_MODEL_SIGMA_IN_USE) == 0.1);
    assert_true(get(m, CVAE_MODEL_WIDTH) == 32);
    assert_true(get(m, CVAE_MODEL_HIDDEN) == 0);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cvae_model_set(m, bad[i].key, bad[i].value) != CVAE_ERR_INVALID_ARG)
            fail_msg("option %d accepted %g", (int)bad[i].key, bad[i].value);
        assert_true(cvae_model_last_error(m)[0] != '\0');
    }
    assert_true(get(m, CVAE_MODEL_SIGMA) == 0.1 && get(m, CVAE_MODEL_WIDTH) == 32);
    CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, 0.0), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, 1e-4), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, 10.0), m);
    assert_true(get(m, CVAE_MODEL_SIGMA_IN_USE) == 10.0);
    CHECK(cvae_model_bounds(m, CVAE_MODEL_WIDTH, &lo, &hi), m);
    assert_true(lo == 1 && hi == 4096);
    CHECK(cvae_model_bounds(m, CVAE_MODEL_HIDDEN, &lo, &hi), m);
    assert_true(lo == 0 && hi == 65536);
    CHECK(cvae_model_bounds(m, CVAE_MODEL_SIGMA, &lo, &hi), m);
    assert_true(lo == 0 && hi == 10);
    CHECK(cvae_model_bounds(m, CVAE_MODEL_LIKELIHOOD, &lo, &hi), m);
    assert_true(lo == 0 && hi == 1);
}

/* Fails if the log weight of a draw under the Gaussian likelihood differs
 * from log N(x; sigmoid(logits), s^2) + log N(z; 0, I) - log N(z; mu, exp(lv))
 * computed here in double from the model's encode and decode. */
static void test_log_weight_by_hand(void **state)
{
    const double s = 0.3, half_log_2pi = 0.5 * log(2.0 * 3.14159265358979323846);
    cvae_model *m = smooth_model(3, s);
    float x[N * IMG], eps[N * LAT], mu[N * LAT], lv[N * LAT], z[N * LAT], mean[N * IMG];
    double lw[N];
    size_t i, j;
    (void)state;
    tu_fill_uniform(x, N * IMG, 4);
    tu_fill_uniform(eps, N * LAT, 5);
    for (i = 0; i < N * LAT; i++)
        eps[i] = 2.0f * eps[i] - 1.0f;
    CHECK(cvae_model_log_weights(m, x, NULL, eps, N, lw), m);
    CHECK(cvae_model_encode(m, x, N, mu, lv), m);
    for (i = 0; i < N * LAT; i++)
        z[i] = (float)((double)mu[i] + exp(0.5 * (double)lv[i]) * (double)eps[i]);
    CHECK(cvae_model_decode(m, z, N, mean), m);
    for (i = 0; i < N; i++) {
        double want = 0.0;
        for (j = 0; j < IMG; j++) {
            double r = (double)x[i * IMG + j] - (double)mean[i * IMG + j];
            want -= r * r / (2.0 * s * s) + log(s) + half_log_2pi;
        }
        for (j = 0; j < LAT; j++) {
            double zz = z[i * LAT + j], e = eps[i * LAT + j], v = lv[i * LAT + j];
            want += -0.5 * zz * zz + 0.5 * e * e + 0.5 * v; /* log p(z) - log q(z|x) */
        }
        if (fabs(lw[i] - want) > 1e-4 * fmax(1.0, fabs(want)))
            fail_msg("image %zu: log weight %.9g, by hand %.9g", i, lw[i], want);
    }
    /* Another sigma, another weight; Bernoulli another again. */
    {
        double lw2[N];
        CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, 0.5), m);
        CHECK(cvae_model_log_weights(m, x, NULL, eps, N, lw2), m);
        assert_true(fabs(lw2[0] - lw[0]) > 1e-3);
        CHECK(cvae_model_set(m, CVAE_MODEL_LIKELIHOOD, CVAE_LIKELIHOOD_BERNOULLI), m);
        CHECK(cvae_model_log_weights(m, x, NULL, eps, N, lw2), m);
        assert_true(fabs(lw2[0] - lw[0]) > 1e-3);
    }
}

typedef struct loss_data {
    const float *x, *eps;
} loss_data;

/* (recon + KL) / n with fixed eps: what cvi_model_loss_grad differentiates. */
static double loss_at(cvae_model *m, void *ctx)
{
    const loss_data *d = ctx;
    double r, k;
    memcpy(m->eps, d->eps, N * LAT * sizeof(float));
    cvi_model_loss_grad(m, d->x, N, &r, &k);
    return (r + k) / N;
}

/* Central differences of the loss against the gradient, for sigma s; with
 * s = 0 the learned value is recomputed at every evaluation, and the
 * gradient must still match (at the optimum the path through s is zero). */
static void check_gradient(double s)
{
    cvae_model *m = smooth_model(5, s);
    float x[N * IMG], eps[N * LAT];
    loss_data d = {x, eps};
    size_t k, n = cvae_model_param_count(m), significant;
    tu_fill_uniform(x, N * IMG, 6);
    tu_fill_uniform(eps, N * LAT, 7);
    for (k = 0; k < N * LAT; k++)
        eps[k] = 2.0f * eps[k] - 1.0f;
    significant = tu_check_model_gradient(m, loss_at, &d, s > 0 ? "fixed sigma" : "learned sigma");
    if (4 * significant < n)
        fail_msg("sigma %g: only %zu of %zu gradients are significant", s, significant, n);
}

static void test_gradient_fixed_sigma(void **state)
{
    (void)state;
    check_gradient(0.3);
    check_gradient(1.0);
}

static void test_gradient_learned_sigma(void **state)
{
    (void)state;
    check_gradient(0.0);
}

/* Fails if a training step with a learned sigma does not set it to the
 * root of the step's mean squared error, if a non-finite step does not
 * restore it, or if training does not lower the Gaussian loss. */
static void test_learned_sigma_and_training(void **state)
{
    cvae_model *m = smooth_model(9, 0.0);
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m));
    cvae_dataset *ds = tu_new_dataset();
    float x[N * IMG], rec[N * IMG];
    uint8_t px[N * IMG];
    double recon, kl, first = 0.0, last = 0.0, s, sse = 0.0, before;
    size_t i;
    int step;
    (void)state;
    assert_true(get(m, CVAE_MODEL_SIGMA_IN_USE) == 0.1);
    for (i = 0; i < N * IMG; i++) {
        px[i] = (uint8_t)((i * 37u) % 256u);
        x[i] = (float)px[i] / 255.0f;
    }
    CHECK(cvae_dataset_set_u8(ds, N, 1, H, W, px, NULL), m);
    /* The learned value is computed on the step's forward pass, before the
     * update; eps as the step draws it: reproduced with a copy of the model. */
    {
        cvae_model *twin = smooth_model(9, 0.0);
        const float *h, *logits;
        cvi_rng r = m->rng;
        cvi_rng_normal(&r, twin->eps, N * LAT);
        cvae_stack_forward(twin->enc, x, N, &h);
        for (i = 0; i < N * LAT; i++)
            twin->z[i] = h[(i / LAT) * 2 * LAT + i % LAT] +
                         expf(0.5f * h[(i / LAT) * 2 * LAT + LAT + i % LAT]) * twin->eps[i];
        cvae_stack_forward(twin->dec, twin->z, N, &logits);
        for (i = 0; i < N * IMG; i++) {
            double r2 = 1.0 / (1.0 + exp(-(double)logits[i])) - (double)x[i];
            sse += r2 * r2;
        }
    }
    CHECK(cvae_model_train_step(m, o, x, N, &recon, &kl), m);
    s = get(m, CVAE_MODEL_SIGMA_IN_USE);
    if (fabs(s - sqrt(sse / (N * IMG))) > 1e-5 * s)
        fail_msg("learned sigma %.9g, root mean squared error %.9g", s, sqrt(sse / (N * IMG)));
    assert_true(get(m, CVAE_MODEL_SIGMA) == 0.0);
    /* A NaN pixel: non-finite, and the learned value is the one before. */
    before = get(m, CVAE_MODEL_SIGMA_IN_USE);
    x[3] = NAN;
    assert_int_equal(cvae_model_train_step(m, o, x, N, NULL, NULL), CVAE_ERR_NUMERIC);
    assert_true(get(m, CVAE_MODEL_SIGMA_IN_USE) == before);
    x[3] = (float)px[3] / 255.0f;
    /* Training lowers the loss (fixed sigma, so the figures compare). */
    CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, 0.2), m);
    for (step = 0; step < 300; step++) {
        CHECK(cvae_model_train_step(m, o, x, N, &recon, &kl), m);
        if (step == 0)
            first = recon + kl;
        last = recon + kl;
    }
    if (!(last < first - 1.0))
        fail_msg("300 steps took the loss from %g to %g", first, last);
    CHECK(cvae_model_evaluate(m, ds, 1, &recon, &kl, NULL), m);
    assert_true(isfinite(recon) && recon < first);
    CHECK(cvae_model_reconstruct(m, x, N, rec), m);
    for (i = 0; i < N * IMG; i++)
        assert_true(rec[i] >= 0.0f && rec[i] <= 1.0f);
}

/* Fails if a Gaussian model does not come back from its file with its
 * likelihood, both sigmas and the same losses, if its file is not version 3,
 * or if a Bernoulli model's file is not still version 1. */
static void test_round_trip(void **state)
{
    char dir[256], path[300];
    cvae_model *m = smooth_model(11, 0.0), *back = tu_new_model(), *plain;
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m));
    cvae_dataset *ds = tu_new_dataset();
    float x[N * IMG];
    uint8_t px[N * IMG];
    double a[3], b[3];
    size_t i;
    (void)state;
    for (i = 0; i < N * IMG; i++) {
        px[i] = (uint8_t)((i * 53u + 7u) % 256u);
        x[i] = (float)px[i] / 255.0f;
    }
    CHECK(cvae_dataset_set_u8(ds, N, 1, H, W, px, NULL), m);
    CHECK(cvae_model_train_step(m, o, x, N, NULL, NULL), m);
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "gaussian"), 0);
    snprintf(path, sizeof path, "%s/g.cvae", dir);
    CHECK(cvae_model_save(m, o, path), m);
    assert_int_equal(file_version(path), 3);
    CHECK(cvae_model_load(back, path, N), back);
    assert_true(get(back, CVAE_MODEL_LIKELIHOOD) == CVAE_LIKELIHOOD_GAUSSIAN);
    assert_true(get(back, CVAE_MODEL_SIGMA) == 0.0);
    assert_true(get(back, CVAE_MODEL_SIGMA_IN_USE) == get(m, CVAE_MODEL_SIGMA_IN_USE));
    CHECK(cvae_model_evaluate(m, ds, 5, &a[0], &a[1], &a[2]), m);
    CHECK(cvae_model_evaluate(back, ds, 5, &b[0], &b[1], &b[2]), back);
    assert_memory_equal(a, b, sizeof a);
    /* A fixed sigma too. */
    CHECK(cvae_model_set(m, CVAE_MODEL_SIGMA, 0.25), m);
    CHECK(cvae_model_save(m, NULL, path), m);
    back = tu_new_model();
    CHECK(cvae_model_load(back, path, N), back);
    assert_true(get(back, CVAE_MODEL_SIGMA) == 0.25);
    /* Bernoulli: the file stays version 1, readable by older libraries. */
    plain = smooth_model(12, 0.1);
    CHECK(cvae_model_set(plain, CVAE_MODEL_LIKELIHOOD, CVAE_LIKELIHOOD_BERNOULLI), plain);
    CHECK(cvae_model_save(plain, NULL, path), plain);
    assert_int_equal(file_version(path), 1);
    unlink(path);
    tu_tmpdir_remove(dir);
}

/* Fails if the preset's parameter count differs from its layer list for
 * other widths, or if the hidden width does not grow for larger images. */
static void test_preset_widths(void **state)
{
    cvae_model *m = tu_new_model(), *big = tu_new_model();
    cvae_stack *dec;
    cvae_layer *l;
    int c, h, w;
    (void)state;
    CHECK(cvae_model_set(m, CVAE_MODEL_WIDTH, 8), m);
    CHECK(cvae_model_set(m, CVAE_MODEL_HIDDEN, 40), m);
    CHECK(cvae_model_init_preset(m, 1, 8, 12, 3, 2, 1), m);
    /* conv 1->8, conv 8->16, linear 16*2*3 -> 40, linear 40 -> 6;
     * linear 3 -> 40, linear 40 -> 96, convT 16->8, convT 8->1. */
    assert_int_equal(cvae_model_param_count(m),
                     (1 * 8 * 16 + 8) + (8 * 16 * 16 + 16) + (96 * 40 + 40) + (40 * 6 + 6) +
                         (3 * 40 + 40) + (40 * 96 + 96) + (16 * 8 * 16 + 8) + (8 * 1 * 16 + 1));
    dec = cvae_model_decoder(m);
    l = cvae_stack_layer(dec, 4); /* reshape */
    assert_int_equal(cvae_layer_output_shape(l, &c, &h, &w), CVAE_OK);
    assert_true(c == 16 && h == 2 && w == 3);
    /* Automatic hidden width: 512 for 3 x 32 x 32 (3,072 values). */
    CHECK(cvae_model_init_preset(big, 3, 32, 32, 8, 1, 1), big);
    l = cvae_stack_layer(cvae_model_encoder(big), 5); /* the first linear layer */
    assert_int_equal(cvae_layer_output_shape(l, &c, &h, &w), CVAE_OK);
    assert_int_equal(c * h * w, 512);
    /* Set after the architecture: refused for nothing, applied to the next. */
    CHECK(cvae_model_set(big, CVAE_MODEL_WIDTH, 4), big);
    assert_true(get(big, CVAE_MODEL_WIDTH) == 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_options, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_log_weight_by_hand, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_gradient_fixed_sigma, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_gradient_learned_sigma, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_learned_sigma_and_training, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_round_trip, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_preset_widths, tu_release_all_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
