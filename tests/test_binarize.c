/*
 * test_binarize.c - CVAE_MODEL_BINARIZE, dynamic binarisation: a training step
 * with it equals a step without it on the images binarised by hand with the
 * model's generator (one uniform draw per pixel, 1 when the draw is below the
 * intensity), taken before eps; the option's range; evaluation with it.
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
#define B 4

static cvae_model *preset(void)
{
    cvae_model *m = tu_new_model();
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_THREADS, 1), CVAE_OK);
    assert_int_equal(cvae_model_init_preset(m, 1, SIDE, SIDE, 3, B, 21), CVAE_OK);
    return m;
}

/* Fails if a binarising step differs, bit for bit, from a plain step on the
 * images binarised here from the same generator state, or if the images it
 * trained on were not binary. */
static void test_step_binarises_first(void **state)
{
    cvae_model *a = preset(), *b = preset();
    cvae_optimizer *oa = tu_new_opt(CVAE_OPTIMIZER_ADAM, cvae_model_param_count(a));
    cvae_optimizer *ob = tu_new_opt(CVAE_OPTIMIZER_ADAM, cvae_model_param_count(b));
    float x[B * IMG], xb[B * IMG];
    double ra, ka, rb, kb;
    size_t i, ones = 0;
    cvi_rng r;
    (void)state;
    tu_fill_uniform(x, B * IMG, 8);
    assert_int_equal(cvae_model_set(a, CVAE_MODEL_BINARIZE, 1), CVAE_OK);
    r = a->rng;
    for (i = 0; i < B * IMG; i++) {
        /* The draw as documented: 24-bit uniform, 1 below the intensity. */
        float u = (float)(cvi_rng_next(&r) >> 40) * (1.0f / 16777216.0f);
        xb[i] = u < x[i] ? 1.0f : 0.0f;
        ones += xb[i] == 1.0f;
    }
    assert_true(ones > B * IMG / 4 && ones < 3 * B * IMG / 4);
    b->rng = r; /* b's eps come from where a's will */
    assert_int_equal(cvae_model_train_step(a, oa, x, B, &ra, &ka), CVAE_OK);
    assert_int_equal(cvae_model_train_step(b, ob, xb, B, &rb, &kb), CVAE_OK);
    assert_memory_equal(&ra, &rb, sizeof ra);
    assert_memory_equal(&ka, &kb, sizeof ka);
    assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL),
                        cvae_model_param_count(a) * sizeof(float));
    assert_memory_equal(&a->rng, &b->rng, sizeof a->rng);
    /* The caller's images are not touched. */
    tu_fill_uniform(xb, B * IMG, 8);
    assert_memory_equal(x, xb, sizeof x);
}

/* Fails if the option accepts anything but 0 and 1, or if evaluation with it
 * is not repeatable for a seed, or equals evaluation without it on grey
 * images. */
static void test_option_and_evaluate(void **state)
{
    cvae_model *m = preset();
    cvae_dataset *ds = tu_new_dataset();
    static uint8_t px[10 * IMG];
    double v = -1.0, lo, hi, t1, t2, plain;
    size_t i;
    (void)state;
    assert_int_equal(cvae_model_get(m, CVAE_MODEL_BINARIZE, &v), CVAE_OK);
    assert_true(v == 0.0);
    assert_int_equal(cvae_model_bounds(m, CVAE_MODEL_BINARIZE, &lo, &hi), CVAE_OK);
    assert_true(lo == 0.0 && hi == 1.0);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_BINARIZE, 0.5), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_BINARIZE, NAN), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_BINARIZE, 2), CVAE_ERR_INVALID_ARG);
    for (i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(60 + i * 7 % 120);
    assert_int_equal(cvae_dataset_set_u8(ds, 10, 1, SIDE, SIDE, px, NULL), CVAE_OK);
    assert_int_equal(cvae_model_evaluate(m, ds, 3, NULL, NULL, &plain), CVAE_OK);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_BINARIZE, 1), CVAE_OK);
    assert_int_equal(cvae_model_evaluate(m, ds, 3, NULL, NULL, &t1), CVAE_OK);
    assert_int_equal(cvae_model_evaluate(m, ds, 3, NULL, NULL, &t2), CVAE_OK);
    assert_memory_equal(&t1, &t2, sizeof t1);
    assert_true(t1 != plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_step_binarises_first, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_option_and_evaluate, tu_release_all_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
