/*
 * test_iwae.c - importance weights and the importance-weighted bound.
 *
 * cvae_model_log_weights against a reference built from the public encode
 * and decode calls and the densities written out in full; the bound with
 * k = 1 against the mean log weight of the same draws; the running
 * log-sum-exp at log weights near -1e4, where exp underflows; the bound
 * rising with k; error codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#define SIDE 8
#define IMG (SIDE * SIDE)
#define LAT 3
#define MAXB 5
#define NIMG 12

static float images[NIMG * IMG];

/* A preset model trained a few steps on the images below, so that its
 * posterior is neither the prior nor exact. */
static cvae_model *small_model(void)
{
    cvae_model *m = tu_new_model();
    cvae_optimizer *o = NULL;
    int s;
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_THREADS, 1), CVAE_OK);
    assert_int_equal(cvae_model_init_preset(m, 1, SIDE, SIDE, LAT, MAXB, 11), CVAE_OK);
    assert_int_equal(cvae_optimizer_create(&o, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m)),
                     CVAE_OK);
    for (s = 0; s < 20; s++)
        assert_int_equal(cvae_model_train_step(m, o, images + (s % 2) * MAXB * IMG, MAXB, NULL,
                                               NULL),
                         CVAE_OK);
    cvae_optimizer_destroy(o);
    return m;
}

static cvae_dataset *image_set(void)
{
    static uint8_t px[NIMG * IMG];
    cvae_dataset *ds = tu_new_dataset();
    size_t i;
    for (i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)lrintf(images[i] * 255.0f);
    assert_int_equal(cvae_dataset_set_u8(ds, NIMG, 1, SIDE, SIDE, px, NULL), CVAE_OK);
    return ds;
}

/* Bars of two widths at two heights: a set the model can partly learn. Pixel
 * values are k / 255 so that the dataset holds them exactly. */
static int make_images(void **state)
{
    int n, y, x;
    (void)state;
    for (n = 0; n < NIMG; n++)
        for (y = 0; y < SIDE; y++)
            for (x = 0; x < SIDE; x++) {
                int on = (y >= n % 4 && y < n % 4 + 3 && x >= n % 3 && x < n % 3 + 4 + n % 2);
                images[(n * SIDE + y) * SIDE + x] = (on ? 230.0f : 20.0f) / 255.0f;
            }
    return 0;
}

/* Fails if a log weight differs from log p(x|z) + log p(z) - log q(z|x) computed
 * here from cvae_model_encode, z, cvae_model_decode (probabilities) and the full
 * Gaussian densities, 2 pi terms included. */
static void test_log_weights_match_definition(void **state)
{
    cvae_model *m = small_model();
    float mu[NIMG * LAT], lv[NIMG * LAT], eps[NIMG * LAT], z[NIMG * LAT], p[NIMG * IMG];
    double logw[NIMG];
    uint64_t s = 5;
    int i, j;
    (void)state;
    for (i = 0; i < NIMG * LAT; i++)
        eps[i] = 2.0f * tu_uniform01(&s) - 1.0f;
    assert_int_equal(cvae_model_log_weights(m, images, NULL, eps, NIMG, logw), CVAE_OK);
    assert_int_equal(cvae_model_encode(m, images, NIMG, mu, lv), CVAE_OK);
    for (i = 0; i < NIMG * LAT; i++)
        z[i] = mu[i] + expf(0.5f * lv[i]) * eps[i];
    assert_int_equal(cvae_model_decode(m, z, NIMG, p), CVAE_OK);
    for (i = 0; i < NIMG; i++) {
        const double log2pi = log(2.0 * 3.14159265358979323846);
        double lpx = 0.0, lpz = 0.0, lq = 0.0, want;
        for (j = 0; j < IMG; j++) {
            double t = images[i * IMG + j], q = p[i * IMG + j];
            lpx += t * log(q) + (1.0 - t) * log(1.0 - q);
        }
        for (j = 0; j < LAT; j++) {
            double zz = z[i * LAT + j], m0 = mu[i * LAT + j], v = exp(lv[i * LAT + j]);
            lpz += -0.5 * (zz * zz + log2pi);
            lq += -0.5 * ((zz - m0) * (zz - m0) / v + log(v) + log2pi);
        }
        want = lpx + lpz - lq;
        if (fabs(logw[i] - want) > 1e-3 * (1.0 + fabs(want)))
            fail_msg("image %d: log weight %.9g, by the definition %.9g", i, logw[i], want);
    }
}

/* Fails if the bound with k = 1 is not the mean log weight of the same draws:
 * the generator seeded with seed, LAT normals per image, images in order. */
static void test_k1_is_the_one_draw_elbo(void **state)
{
    cvae_model *m = small_model();
    cvae_dataset *ds = image_set();
    float eps[NIMG * LAT], x[NIMG * IMG];
    double logw[NIMG], mean = 0.0, bound = 0.0;
    cvi_rng rng;
    int i;
    (void)state;
    cvi_rng_seed(&rng, 77);
    for (i = 0; i < NIMG; i++)
        cvi_rng_normal(&rng, eps + i * LAT, LAT);
    assert_int_equal(cvae_dataset_batch(ds, 0, NIMG, x, NULL), CVAE_OK);
    assert_int_equal(cvae_model_log_weights(m, x, NULL, eps, NIMG, logw), CVAE_OK);
    for (i = 0; i < NIMG; i++)
        mean += logw[i] / NIMG;
    assert_int_equal(cvae_model_iwae(m, ds, 1, 77, &bound), CVAE_OK);
    if (fabs(bound - mean) > 1e-9 * fabs(mean))
        fail_msg("k = 1: bound %.12g, mean log weight %.12g", bound, mean);
    /* The same seed gives the same bound, bit for bit. */
    {
        double again = 0.0;
        assert_int_equal(cvae_model_iwae(m, ds, 7, 3, &bound), CVAE_OK);
        assert_int_equal(cvae_model_iwae(m, ds, 7, 3, &again), CVAE_OK);
        assert_memory_equal(&bound, &again, sizeof bound);
    }
}

/* Fails if the running log-sum-exp loses values near -1e4 (exp underflows to 0
 * there) or differs from the sum taken after shifting by the maximum. */
static void test_logsumexp_stable(void **state)
{
    cvi_lse acc = {0.0, 0.0, 0};
    long double ref = 0.0L;
    int i;
    (void)state;
    assert_true(exp(-1e4) == 0.0);
    for (i = 0; i < 1000; i++) {
        /* Not in order: the largest value comes late. */
        double v = -1e4 - 0.01 * ((i * 37) % 1000);
        cvi_lse_add(&acc, v);
        ref += expl((long double)v + 1e4L);
    }
    ref = logl(ref / 1000.0L) - 1e4L;
    assert_true(isfinite(cvi_lse_mean(&acc)));
    if (fabs(cvi_lse_mean(&acc) - (double)ref) > 1e-9)
        fail_msg("log-sum-exp %.15g, reference %.15g", cvi_lse_mean(&acc), (double)ref);
    /* One value: itself. */
    acc.count = 0;
    cvi_lse_add(&acc, -12345.5);
    assert_true(cvi_lse_mean(&acc) == -12345.5);
}

/* Fails if the bound does not rise with k, averaged over five seeds (it does
 * in expectation: Burda et al., theorem 1), or if it is not below 0. */
static void test_bound_rises_with_k(void **state)
{
    cvae_model *m = small_model();
    cvae_dataset *ds = image_set();
    static const int ks[3] = {1, 10, 100};
    double mean[3] = {0.0, 0.0, 0.0};
    int i;
    uint64_t seed;
    (void)state;
    for (i = 0; i < 3; i++)
        for (seed = 1; seed <= 5; seed++) {
            double b;
            assert_int_equal(cvae_model_iwae(m, ds, ks[i], seed, &b), CVAE_OK);
            assert_true(isfinite(b) && b < 0.0);
            mean[i] += b / 5.0;
        }
    print_message("test_iwae: bound %.4f (k 1), %.4f (k 10), %.4f (k 100)\n", mean[0], mean[1],
                  mean[2]);
    assert_true(mean[0] < mean[1] && mean[1] < mean[2]);
}

/* Fails if a bad call is not refused with its exact status. */
static void test_errors(void **state)
{
    cvae_model *m = small_model(), *empty = tu_new_model();
    cvae_dataset *ds = image_set(), *other = tu_new_dataset(), *none = tu_new_dataset();
    static uint8_t px[2 * 16];
    float eps[LAT] = {0}, x[IMG] = {0};
    double b = 42.0, lw;
    (void)state;
    assert_int_equal(cvae_dataset_set_u8(other, 2, 1, 4, 4, px, NULL), CVAE_OK);
    assert_int_equal(cvae_model_iwae(NULL, ds, 1, 1, &b), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_iwae(empty, ds, 1, 1, &b), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_iwae(m, NULL, 1, 1, &b), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_iwae(m, none, 1, 1, &b), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_iwae(m, ds, 0, 1, &b), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_model_last_error(m), "k must be"));
    assert_int_equal(cvae_model_iwae(m, ds, 1, 1, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_iwae(m, other, 1, 1, &b), CVAE_ERR_SHAPE);
    assert_true(b == 42.0);
    assert_int_equal(cvae_model_log_weights(NULL, x, NULL, eps, 1, &lw), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_log_weights(empty, x, NULL, eps, 1, &lw), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_log_weights(m, NULL, NULL, eps, 1, &lw), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_log_weights(m, x, NULL, NULL, 1, &lw), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_log_weights(m, x, NULL, eps, 0, &lw), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_log_weights(m, x, NULL, eps, 1, NULL), CVAE_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_log_weights_match_definition, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_k1_is_the_one_draw_elbo, tu_release_all_teardown),
        cmocka_unit_test(test_logsumexp_stable),
        cmocka_unit_test_teardown(test_bound_rises_with_k, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_errors, tu_release_all_teardown),
    };
    return cmocka_run_group_tests(tests, make_images, NULL);
}
