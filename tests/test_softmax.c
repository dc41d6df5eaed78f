/*
 * test_softmax.c - cvae_softmax_cross_entropy against the definition, its
 * gradient against central finite differences, its stability for logits of
 * magnitude 1e4, and its exact error codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "cvae.h"
#include "testutil.h"

enum { N = 5, C = 7 };

/* The definition, in long double with no shift: -log(exp(x_y) / sum exp(x_j)),
 * for logits small enough that nothing overflows. */
static double naive_loss(const float *x, const int *y, int n, int c)
{
    long double total = 0.0L;
    int r, j;
    for (r = 0; r < n; r++) {
        long double sum = 0.0L;
        for (j = 0; j < c; j++)
            sum += expl((long double)x[r * c + j]);
        total += -logl(expl((long double)x[r * c + y[r]]) / sum);
    }
    return (double)(total / n);
}

static void random_case(float *x, int *y, uint64_t seed, float scale)
{
    tu_rng r;
    int i;
    tu_rng_init(&r, seed);
    for (i = 0; i < N * C; i++)
        x[i] = scale * tu_rng_sym(&r);
    for (i = 0; i < N; i++)
        y[i] = (int)(tu_rng_next(&r) % C);
}

/* Fails if the loss differs from the definition beyond double rounding. */
static void test_matches_definition(void **state)
{
    float x[N * C];
    int y[N];
    double loss = -1.0;
    uint64_t seed;
    (void)state;
    for (seed = 1; seed <= 20; seed++) {
        random_case(x, y, seed, 8.0f);
        assert_int_equal(cvae_softmax_cross_entropy(x, y, N, C, &loss, NULL), CVAE_OK);
        assert_true(fabs(loss - naive_loss(x, y, N, C)) <= 1e-12 * (1.0 + fabs(loss)));
    }
    /* Equal logits: log C exactly (to rounding). */
    memset(x, 0, sizeof x);
    assert_int_equal(cvae_softmax_cross_entropy(x, y, N, C, &loss, NULL), CVAE_OK);
    assert_true(fabs(loss - log((double)C)) < 1e-15);
}

/* Fails if the gradient of the mean loss is not the central difference of the
 * loss, element by element, or if the gradient's rows do not sum to 0. */
static void test_gradient_finite_differences(void **state)
{
    float x[N * C], d[N * C];
    int y[N], i, j;
    double loss, up, down;
    (void)state;
    random_case(x, y, 42, 3.0f);
    assert_int_equal(cvae_softmax_cross_entropy(x, y, N, C, &loss, d), CVAE_OK);
    for (i = 0; i < N * C; i++) {
        float keep = x[i];
        const float h = 1e-2f;
        double fd;
        x[i] = keep + h;
        assert_int_equal(cvae_softmax_cross_entropy(x, y, N, C, &up, NULL), CVAE_OK);
        x[i] = keep - h;
        assert_int_equal(cvae_softmax_cross_entropy(x, y, N, C, &down, NULL), CVAE_OK);
        x[i] = keep;
        fd = (up - down) / (2.0 * h);
        if (fabs(fd - d[i]) > 1e-4 + 1e-3 * fabs(fd))
            fail_msg("logit %d: analytic %.8g, central difference %.8g", i, (double)d[i], fd);
    }
    for (i = 0; i < N; i++) {
        double row = 0.0;
        for (j = 0; j < C; j++)
            row += d[i * C + j];
        assert_true(fabs(row) < 1e-7);
    }
}

/* Fails if logits of magnitude 1e4 give a non-finite or wrong loss or
 * gradient. With logits 1e4 apart, the loss of the winning class is 0 (to
 * rounding) and that of a losing one the gap itself. */
static void test_stable_for_large_logits(void **state)
{
    float x[2 * 3] = {1e4f, -1e4f, 0.0f, 1e4f, -1e4f, 0.0f};
    int win[2] = {0, 0}, lose[2] = {1, 1};
    float d[6];
    double loss;
    (void)state;
    assert_int_equal(cvae_softmax_cross_entropy(x, win, 2, 3, &loss, d), CVAE_OK);
    assert_true(isfinite(loss) && loss >= 0.0 && loss < 1e-300 + 1e-12);
    assert_true(fabsf(d[0]) < 1e-7f && fabsf(d[1]) < 1e-7f && fabsf(d[2]) < 1e-7f);
    assert_int_equal(cvae_softmax_cross_entropy(x, lose, 2, 3, &loss, d), CVAE_OK);
    assert_true(fabs(loss - 2e4) < 1e-9);
    /* d = (softmax - onehot) / 2: the winner gets +1/2, the label -1/2. */
    assert_true(fabsf(d[0] - 0.5f) < 1e-7f && fabsf(d[1] + 0.5f) < 1e-7f);
    /* A shift of every logit by 1e4 changes nothing. */
    {
        float a[N * C], b[N * C];
        int y[N], i;
        double la, lb;
        random_case(a, y, 9, 4.0f);
        for (i = 0; i < N * C; i++)
            b[i] = a[i] - 1e4f;
        assert_int_equal(cvae_softmax_cross_entropy(a, y, N, C, &la, NULL), CVAE_OK);
        assert_int_equal(cvae_softmax_cross_entropy(b, y, N, C, &lb, NULL), CVAE_OK);
        /* b's logits are rounded to the float grid near 1e4 (steps of 2^-10). */
        assert_true(fabs(la - lb) < 5e-3);
    }
}

/* Fails if a bad argument is not refused with its exact status, or if a
 * refused call writes anything. */
static void test_errors(void **state)
{
    float x[2 * 3] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, d[6];
    int y[2] = {0, 2}, bad[2] = {0, 3}, neg[2] = {-1, 0};
    double loss = 7.0;
    int i;
    (void)state;
    for (i = 0; i < 6; i++)
        d[i] = 9.0f;
    assert_int_equal(cvae_softmax_cross_entropy(NULL, y, 2, 3, &loss, d), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_softmax_cross_entropy(x, NULL, 2, 3, &loss, d), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_softmax_cross_entropy(x, y, 2, 3, NULL, d), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_softmax_cross_entropy(x, y, 0, 3, &loss, d), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_softmax_cross_entropy(x, y, 2, 1, &loss, d), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_softmax_cross_entropy(x, bad, 2, 3, &loss, d), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_softmax_cross_entropy(x, neg, 2, 3, &loss, d), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_softmax_cross_entropy(x, y, 0x7fffffff, 0x7fffffff, &loss, d),
                     CVAE_ERR_TOO_LARGE);
    x[4] = NAN;
    assert_int_equal(cvae_softmax_cross_entropy(x, y, 2, 3, &loss, d), CVAE_ERR_NUMERIC);
    x[4] = -INFINITY;
    assert_int_equal(cvae_softmax_cross_entropy(x, y, 2, 3, &loss, d), CVAE_ERR_NUMERIC);
    assert_true(loss == 7.0);
    for (i = 0; i < 6; i++)
        assert_true(d[i] == 9.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_definition),
        cmocka_unit_test(test_gradient_finite_differences),
        cmocka_unit_test(test_stable_for_large_logits),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
