/*
 * test_stack.c - stacks as containers: shape inference on the seed
 * architecture, the layout of the parameter and gradient blocks, PyTorch's
 * initialisation bounds, seeded initialisation reproduced by an independent
 * xoshiro256** written here, view layers, batch independence and
 * determinism. Numerical correctness of each layer is test_conv.c and
 * test_grad.c; error statuses are test_errors.c.
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
#include "testutil.h"

/* Fails the test with the stack's message unless st is CVAE_OK. */
#define CHECK(st, s)                                                                               \
    do {                                                                                           \
        cvae_status st_ = (st);                                                                    \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s", cvae_status_string(st_), cvae_stack_last_error(s));                \
    } while (0)

static cvae_layer *conv(int f, int k, int s, int p)
{
    cvae_layer *l = NULL;
    assert_int_equal(cvae_layer_create_conv2d(&l, f, k, k, s, s, p, p), CVAE_OK);
    return l;
}

static cvae_layer *convt(int f, int k, int s, int p)
{
    cvae_layer *l = NULL;
    assert_int_equal(cvae_layer_create_conv_transpose2d(&l, f, k, k, s, s, p, p), CVAE_OK);
    return l;
}

static cvae_layer *linear(int o)
{
    cvae_layer *l = NULL;
    assert_int_equal(cvae_layer_create_linear(&l, o), CVAE_OK);
    return l;
}

static cvae_layer *relu(void)
{
    cvae_layer *l = NULL;
    assert_int_equal(cvae_layer_create_relu(&l), CVAE_OK);
    return l;
}

/* The seed encoder: conv(32,k4,s2,p1) relu conv(64,k4,s2,p1) relu flatten
 * linear(256) relu linear(2L). */
static cvae_stack *seed_encoder(int latent)
{
    cvae_stack *s = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    CHECK(cvae_stack_add(s, conv(32, 4, 2, 1)), s);
    CHECK(cvae_stack_add(s, relu()), s);
    CHECK(cvae_stack_add(s, conv(64, 4, 2, 1)), s);
    CHECK(cvae_stack_add(s, relu()), s);
    assert_int_equal(cvae_layer_create_flatten(&l), CVAE_OK);
    CHECK(cvae_stack_add(s, l), s);
    CHECK(cvae_stack_add(s, linear(256)), s);
    CHECK(cvae_stack_add(s, relu()), s);
    CHECK(cvae_stack_add(s, linear(2 * latent)), s);
    return s;
}

/* The seed decoder: linear(256) relu linear(3136) relu reshape(64,7,7)
 * convT(32,k4,s2,p1) relu convT(1,k4,s2,p1). */
static cvae_stack *seed_decoder(void)
{
    cvae_stack *s = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    CHECK(cvae_stack_add(s, linear(256)), s);
    CHECK(cvae_stack_add(s, relu()), s);
    CHECK(cvae_stack_add(s, linear(3136)), s);
    CHECK(cvae_stack_add(s, relu()), s);
    assert_int_equal(cvae_layer_create_reshape(&l, 64, 7, 7), CVAE_OK);
    CHECK(cvae_stack_add(s, l), s);
    CHECK(cvae_stack_add(s, convt(32, 4, 2, 1)), s);
    CHECK(cvae_stack_add(s, relu()), s);
    CHECK(cvae_stack_add(s, convt(1, 4, 2, 1)), s);
    return s;
}

static void expect_out_shape(cvae_stack *s, int i, int c, int h, int w)
{
    int gc, gh, gw;
    assert_int_equal(cvae_layer_output_shape(cvae_stack_layer(s, i), &gc, &gh, &gw), CVAE_OK);
    if (gc != c || gh != h || gw != w)
        fail_msg("layer %d (%s): output %dx%dx%d, expected %dx%dx%d", i,
                 cvae_layer_kind_name(cvae_stack_layer(s, i)), gc, gh, gw, c, h, w);
}

/* Fails if shape inference or parameter counting disagrees with PyTorch's
 * numbers for the seed model (1,688,289 parameters in all). */
static void test_seed_shapes_and_counts(void **state)
{
    static const size_t enc_params[] = {544, 0, 32832, 0, 0, 803072, 0, 8224};
    static const size_t dec_params[] = {4352, 0, 805952, 0, 0, 32800, 0, 513};
    cvae_stack *enc = seed_encoder(16), *dec = seed_decoder();
    size_t ne, nd;
    int i;
    (void)state;
    CHECK(cvae_stack_build(enc, 1, 28, 28, 4, 1), enc);
    CHECK(cvae_stack_build(dec, 16, 1, 1, 4, 2), dec);
    expect_out_shape(enc, 0, 32, 14, 14);
    expect_out_shape(enc, 2, 64, 7, 7);
    expect_out_shape(enc, 4, 3136, 1, 1);
    expect_out_shape(enc, 7, 32, 1, 1);
    expect_out_shape(dec, 4, 64, 7, 7);
    expect_out_shape(dec, 5, 32, 14, 14);
    expect_out_shape(dec, 7, 1, 28, 28);
    for (i = 0; i < 8; i++) {
        assert_int_equal(cvae_layer_param_count(cvae_stack_layer(enc, i)), enc_params[i]);
        assert_int_equal(cvae_layer_param_count(cvae_stack_layer(dec, i)), dec_params[i]);
    }
    cvae_stack_params(enc, &ne);
    cvae_stack_params(dec, &nd);
    assert_int_equal(ne + nd, 1688289);
    cvae_stack_destroy(enc);
    cvae_stack_destroy(dec);
}

/* Fails if layers' parameter or gradient views are not consecutive slices of
 * the stack's one block in layer order (the optimizer relies on it). */
static void test_param_block_layout(void **state)
{
    cvae_stack *s = seed_encoder(3);
    float *p, *g;
    size_t n, ng, offset = 0;
    int i;
    (void)state;
    assert_null(cvae_stack_params(s, &n));
    assert_int_equal(n, 0);
    CHECK(cvae_stack_build(s, 1, 12, 8, 2, 7), s);
    p = cvae_stack_params(s, &n);
    g = cvae_stack_grads(s, &ng);
    assert_non_null(p);
    assert_non_null(g);
    assert_int_equal(n, ng);
    for (i = 0; i < cvae_stack_layer_count(s); i++) {
        cvae_layer *l = cvae_stack_layer(s, i);
        size_t k = cvae_layer_param_count(l);
        if (k == 0) {
            assert_null(cvae_layer_params(l));
            continue;
        }
        assert_ptr_equal(cvae_layer_params(l), p + offset);
        assert_ptr_equal(cvae_layer_grads(l), g + offset);
        offset += k;
    }
    assert_int_equal(offset, n);
    for (offset = 0; offset < n; offset++)
        assert_true(g[offset] == 0.0f);
    cvae_stack_destroy(s);
}

/* An independent xoshiro256** seeded by splitmix64 (Vigna's reference
 * algorithms, splitmix64 being tu_next_u64), to pin the initialisation stream. */
static uint64_t ref_next(uint64_t s[4])
{
    uint64_t r = s[1] * 5;
    uint64_t t = s[1] << 17;
    r = ((r << 7) | (r >> 57)) * 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return r;
}

/* Fails if initialisation stops being the documented algorithm: uniform
 * draws u = (x >> 40) * 2^-24 from xoshiro256** seeded by splitmix64, each
 * weight then bias (2u - 1) / sqrt(fan_in), layer by layer, bit for bit
 * (which is what makes weights equal on every platform). */
static void test_init_stream_is_documented(void **state)
{
    const uint64_t seed = UINT64_C(20261125);
    cvae_stack *s = NULL;
    uint64_t st[4], x = seed;
    float *p;
    size_t n, i;
    int k;
    (void)state;
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    CHECK(cvae_stack_add(s, linear(5)), s);      /* fan_in 3*2*2 = 12: 60 + 5 */
    CHECK(cvae_stack_add(s, convt(2, 3, 1, 0)), s); /* fan_in 2*3*3 = 18: 5*18 + 2 */
    CHECK(cvae_stack_build(s, 3, 2, 2, 1, seed), s);
    p = cvae_stack_params(s, &n);
    assert_int_equal(n, 65 + 92);
    for (k = 0; k < 4; k++)
        st[k] = tu_next_u64(&x);
    for (i = 0; i < n; i++) {
        float u = (float)(ref_next(st) >> 40) * (1.0f / 16777216.0f);
        float bound = 1.0f / sqrtf(i < 65 ? 12.0f : 18.0f);
        float want = (2.0f * u - 1.0f) * bound;
        if (p[i] != want)
            fail_msg("parameter %zu is %.9g, the documented stream gives %.9g", i, p[i], want);
    }
    cvae_stack_destroy(s);
}

/* Fails if the PyTorch bounds are wrong for a kind (conv fan_in = C*kh*kw,
 * conv_transpose fan_in = out*kh*kw, linear fan_in = inputs) or if the
 * draws do not fill the interval. */
static void test_init_bounds(void **state)
{
    cvae_stack *s = NULL;
    int i;
    (void)state;
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    CHECK(cvae_stack_add(s, conv(40, 3, 1, 1)), s);  /* fan_in 5*3*3 = 45 */
    CHECK(cvae_stack_add(s, convt(30, 2, 2, 0)), s); /* fan_in 30*2*2 = 120 */
    CHECK(cvae_stack_add(s, linear(50)), s);         /* fan_in 30*12*8 = 2880 */
    CHECK(cvae_stack_build(s, 5, 6, 4, 1, 3), s);
    for (i = 0; i < 3; i++) {
        static const double fan_in[] = {45, 120, 2880};
        cvae_layer *l = cvae_stack_layer(s, i);
        const float *p = cvae_layer_params(l);
        size_t j, n = cvae_layer_param_count(l);
        double bound = 1.0 / sqrt(fan_in[i]), maxabs = 0, mean = 0;
        for (j = 0; j < n; j++) {
            if (fabs(p[j]) > bound * (1 + 1e-6))
                fail_msg("layer %d parameter %zu = %g exceeds 1/sqrt(%g)", i, j, p[j], fan_in[i]);
            if (fabs(p[j]) > maxabs)
                maxabs = fabs(p[j]);
            mean += p[j];
        }
        mean /= (double)n;
        /* n >= 1800 uniform draws: the largest lies within 1% of the bound
         * and the mean within 5 standard errors of 0. */
        assert_true(maxabs > 0.99 * bound);
        assert_true(fabs(mean) < 5 * bound / sqrt(3.0 * (double)n));
    }
    cvae_stack_destroy(s);
}

/* Fails if a seed does not fix the parameters, or if different seeds (or
 * re-initialisation) do not change them. */
static void test_init_seeded(void **state)
{
    cvae_stack *a = seed_encoder(4), *b = seed_encoder(4);
    float *pa, *pb, *copy;
    size_t n;
    (void)state;
    CHECK(cvae_stack_build(a, 1, 16, 16, 2, 99), a);
    CHECK(cvae_stack_build(b, 1, 16, 16, 3, 99), b);
    pa = cvae_stack_params(a, &n);
    pb = cvae_stack_params(b, NULL);
    assert_memory_equal(pa, pb, n * sizeof(float));
    copy = malloc(n * sizeof(float));
    assert_non_null(copy);
    memcpy(copy, pa, n * sizeof(float));
    CHECK(cvae_stack_init_params(a, 100), a);
    assert_true(memcmp(copy, pa, n * sizeof(float)) != 0);
    CHECK(cvae_stack_init_params(a, 99), a);
    assert_memory_equal(copy, pa, n * sizeof(float));
    free(copy);
    cvae_stack_destroy(a);
    cvae_stack_destroy(b);
}

static void fill(float *x, size_t n, uint32_t seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
}

/* Fails if flatten/reshape change data, or the stack output differs from
 * chaining cvae_layer_forward by hand. */
static void test_views_and_layer_chain(void **state)
{
    cvae_stack *s = NULL;
    cvae_layer *l = NULL;
    float x[2 * 3 * 4 * 5], a[2 * 60], b[2 * 60];
    const float *y;
    int i;
    (void)state;
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    assert_int_equal(cvae_layer_create_flatten(&l), CVAE_OK);
    CHECK(cvae_stack_add(s, l), s);
    assert_int_equal(cvae_layer_create_reshape(&l, 5, 2, 6), CVAE_OK);
    CHECK(cvae_stack_add(s, l), s);
    CHECK(cvae_stack_add(s, conv(3, 2, 1, 0)), s);
    CHECK(cvae_stack_add(s, relu()), s);
    CHECK(cvae_stack_build(s, 3, 4, 5, 2, 5), s);
    fill(x, 120, 1);
    CHECK(cvae_stack_forward(s, x, 2, NULL), s);
    /* Layers 0 and 1 are views: chaining them must give x unchanged. */
    assert_int_equal(cvae_layer_forward(cvae_stack_layer(s, 0), x, a, 2), CVAE_OK);
    assert_int_equal(cvae_layer_forward(cvae_stack_layer(s, 1), a, b, 2), CVAE_OK);
    assert_memory_equal(b, x, sizeof x);
    assert_int_equal(cvae_layer_forward(cvae_stack_layer(s, 2), b, a, 2), CVAE_OK);
    assert_int_equal(cvae_layer_forward(cvae_stack_layer(s, 3), a, b, 2), CVAE_OK);
    y = cvae_stack_output(s);
    assert_non_null(y);
    for (i = 0; i < 2 * 3 * 1 * 5; i++)
        assert_true(y[i] == b[i]);
    cvae_stack_destroy(s);
}

/* Fails if images in a batch influence each other, if asking for the input
 * gradient changes the parameter gradients, or if two identical runs are
 * not bit-identical. */
static void test_batch_independence_and_determinism(void **state)
{
    cvae_stack *s = seed_encoder(2);
    enum { N = 3, IN = 1 * 12 * 10, OUT = 4 };
    float x[N * IN], dout[N * OUT], din[N * IN], single[OUT], *g1, *g2;
    const float *y;
    size_t n, i;
    int b;
    (void)state;
    CHECK(cvae_stack_build(s, 1, 12, 10, N, 11), s);
    fill(x, N * IN, 2);
    fill(dout, N * OUT, 3);
    CHECK(cvae_stack_forward(s, x, N, &y), s);
    {
        float batch[N * OUT];
        memcpy(batch, y, sizeof batch);
        for (b = 0; b < N; b++) {
            CHECK(cvae_stack_forward(s, x + b * IN, 1, &y), s);
            memcpy(single, y, sizeof single);
            for (i = 0; i < OUT; i++)
                if (fabsf(single[i] - batch[b * OUT + i]) > 1e-6f * (1 + fabsf(single[i])))
                    fail_msg("image %d output %zu: alone %g, in batch %g", b, i, single[i],
                             batch[b * OUT + i]);
        }
    }
    cvae_stack_grads(s, &n);
    g1 = malloc(n * sizeof(float));
    g2 = malloc(n * sizeof(float));
    assert_non_null(g1);
    assert_non_null(g2);
    CHECK(cvae_stack_forward(s, x, N, NULL), s);
    CHECK(cvae_stack_zero_grad(s), s);
    CHECK(cvae_stack_backward(s, dout, N, NULL), s);
    memcpy(g1, cvae_stack_grads(s, NULL), n * sizeof(float));
    CHECK(cvae_stack_zero_grad(s), s);
    CHECK(cvae_stack_forward(s, x, N, NULL), s);
    CHECK(cvae_stack_backward(s, dout, N, din), s);
    memcpy(g2, cvae_stack_grads(s, NULL), n * sizeof(float));
    assert_memory_equal(g1, g2, n * sizeof(float));
    for (i = 0; i < N * IN; i++)
        assert_true(isfinite(din[i]));
    free(g1);
    free(g2);
    cvae_stack_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_shapes_and_counts),
        cmocka_unit_test(test_param_block_layout),
        cmocka_unit_test(test_init_stream_is_documented),
        cmocka_unit_test(test_init_bounds),
        cmocka_unit_test(test_init_seeded),
        cmocka_unit_test(test_views_and_layer_chain),
        cmocka_unit_test(test_batch_independence_and_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
