/*
 * test_conditional.c - conditional VAEs: the concat_label layer, the model's
 * gradient with labels against central differences, the label checks of
 * every _labels call, that labels change what is decoded, the conditional
 * preset and what it allocates, and the round trip of a conditional model
 * through a file.
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

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#define H 4
#define W 3
#define IMG (H * W)
#define LAT 2
#define K 3 /* classes */
#define N 4 /* images, and the max batch */

#define CHECK(call, m)                                                                             \
    do {                                                                                           \
        cvae_status st_ = (call);                                                                  \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s (%s)", #call, cvae_status_string(st_), cvae_model_last_error(m));    \
    } while (0)

static const int labels[N] = {0, 2, 1, 2};

/* A smooth conditional model (tanh, no kinks), so that central differences
 * apply everywhere: encoder flatten, concat_label, linear(2L); decoder
 * concat_label, linear(8), tanh, linear(IMG), reshape. With inner, the
 * labels also join between two layers with parameters, where the stack runs
 * concat_label's backward in place (a dbuf's rows moved down): the encoder
 * gets linear(5), tanh before its concat_label, the decoder a concat_label
 * after its tanh. */
static cvae_model *smooth_model(uint64_t seed, int inner)
{
    cvae_model *m = tu_new_model();
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_layer *l = NULL;
    assert_int_equal(cvae_stack_create(&enc), CVAE_OK);
    assert_int_equal(cvae_stack_create(&dec), CVAE_OK);
    tu_add_layer(enc, cvae_layer_create_flatten(&l), &l);
    if (inner) {
        tu_add_layer(enc, cvae_layer_create_linear(&l, 5), &l);
        tu_add_layer(enc, cvae_layer_create_tanh(&l), &l);
    }
    tu_add_layer(enc, cvae_layer_create_concat_label(&l, K), &l);
    tu_add_layer(enc, cvae_layer_create_linear(&l, 2 * LAT), &l);
    tu_add_layer(dec, cvae_layer_create_concat_label(&l, K), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, 8), &l);
    tu_add_layer(dec, cvae_layer_create_tanh(&l), &l);
    if (inner)
        tu_add_layer(dec, cvae_layer_create_concat_label(&l, K), &l);
    tu_add_layer(dec, cvae_layer_create_linear(&l, IMG), &l);
    tu_add_layer(dec, cvae_layer_create_reshape(&l, 1, H, W), &l);
    CHECK(cvae_model_init_stacks(m, enc, dec, 1, H, W, LAT, N, seed), m);
    return m;
}

static void fill(float *x, size_t n, uint64_t seed)
{
    tu_fill_uniform(x, n, seed);
}

/* Images from seed, eps in [-1, 1) from seed + 1. */
static void fill_images_eps(float *x, float *eps, uint64_t seed)
{
    size_t k;
    fill(x, N * IMG, seed);
    fill(eps, N * LAT, seed + 1);
    for (k = 0; k < N * LAT; k++)
        eps[k] = 2.0f * eps[k] - 1.0f;
}

/* Fails if the layer does not copy the features and write the one-hot code,
 * or writes a code without labels, or its backward does not pass the
 * features' gradient through. */
static void test_layer(void **state)
{
    cvae_stack *s = NULL;
    cvae_layer *l = NULL;
    const float *out;
    float x[N * 2 * 2], dout[N * (4 + K)], din[N * 4];
    int c = 0, b, j;
    (void)state;
    assert_int_equal(cvae_layer_create_concat_label(&l, 0), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_concat_label(&l, 65537), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    tu_add_layer(s, cvae_layer_create_concat_label(&l, K), &l);
    assert_int_equal(cvae_layer_get_kind(l), CVAE_LAYER_CONCAT_LABEL);
    assert_string_equal(cvae_layer_kind_name(l), "concat_label");
    assert_int_equal(cvae_stack_build(s, 1, 2, 2, N, 1), CVAE_OK);
    assert_int_equal(cvae_stack_output_shape(s, &c, NULL, NULL), CVAE_OK);
    assert_int_equal(c, 4 + K);
    fill(x, sizeof x / sizeof x[0], 3);
    assert_int_equal(cvi_stack_set_labels(s, labels), K);
    assert_int_equal(cvae_stack_forward(s, x, N, &out), CVAE_OK);
    for (b = 0; b < N; b++) {
        assert_memory_equal(out + b * (4 + K), x + b * 4, 4 * sizeof(float));
        for (j = 0; j < K; j++)
            assert_true(out[b * (4 + K) + 4 + j] == (j == labels[b] ? 1.0f : 0.0f));
    }
    assert_int_equal(cvi_stack_set_labels(s, NULL), K);
    assert_int_equal(cvae_stack_forward(s, x, N, &out), CVAE_OK);
    for (b = 0; b < N; b++)
        for (j = 0; j < K; j++)
            assert_true(out[b * (4 + K) + 4 + j] == 0.0f);
    fill(dout, sizeof dout / sizeof dout[0], 4);
    assert_int_equal(cvae_stack_backward(s, dout, N, din), CVAE_OK);
    for (b = 0; b < N; b++)
        assert_memory_equal(din + b * 4, dout + b * (4 + K), 4 * sizeof(float));
    cvae_stack_destroy(s);
}

/* The data of one loss: images and eps. */
typedef struct loss_data {
    const float *x, *eps;
} loss_data;

/* (recon + KL) / n with fixed eps and the labels: what cvi_model_loss_grad
 * differentiates (a tu_model_loss_fn). */
static double loss_at(cvae_model *m, void *ctx)
{
    const loss_data *d = ctx;
    double r, k;
    memcpy(m->eps, d->eps, N * LAT * sizeof(float));
    cvi_model_use_labels(m, labels);
    cvi_model_loss_grad(m, d->x, N, &r, &k);
    cvi_model_use_labels(m, NULL);
    return (r + k) / N;
}

/* Fails if a gradient of the conditional model differs from the central
 * difference of its loss, or if the labels do not reach the loss. */
static void test_gradient(void **state)
{
    cvae_model *m = smooth_model(5, 0);
    float x[N * IMG], eps[N * LAT];
    loss_data d = {x, eps};
    double base;
    (void)state;
    fill_images_eps(x, eps, 6);
    tu_check_model_gradient(m, loss_at, &d, "conditional");
    base = loss_at(m, &d);
    /* Other labels, another loss. */
    {
        int other[N] = {1, 1, 1, 1};
        double r, kk;
        memcpy(m->eps, eps, sizeof eps);
        cvi_model_use_labels(m, other);
        cvi_model_loss_grad(m, x, N, &r, &kk);
        cvi_model_use_labels(m, NULL);
        assert_true(fabs((r + kk) / N - base) > 1e-4);
    }
}

/* Fails if a gradient differs from the central difference where the label
 * joins between layers with parameters (the in-place backward), on one
 * thread and on two. */
static void test_gradient_inner_labels(void **state)
{
    float x[N * IMG], eps[N * LAT];
    loss_data d = {x, eps};
    int threads;
    (void)state;
    fill_images_eps(x, eps, 16);
    for (threads = 1; threads <= 2; threads++) {
        cvae_model *m = smooth_model(15, 1);
        CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, threads), m);
        assert_true(tu_check_model_gradient(m, loss_at, &d, "inner labels") > 10);
    }
}

/* Live bytes of an allocator that counts them (a size before each block). */
typedef struct counted {
    size_t live;
} counted;

static void *counted_alloc(void *user, size_t size)
{
    counted *c = user;
    size_t *p = malloc(size + 2 * sizeof(size_t));
    if (!p)
        return NULL;
    p[0] = size;
    c->live += size;
    return p + 2;
}

static void counted_free(void *user, void *ptr)
{
    counted *c = user;
    size_t *p = ptr;
    if (!p)
        return;
    c->live -= p[-2];
    free(p - 2);
}

static size_t preset_bytes(int classes, int max_batch)
{
    counted c = {0};
    cvae_allocator a = {counted_alloc, counted_free, &c};
    cvae_model *m = NULL;
    size_t live;
    assert_int_equal(cvae_model_create_with(&m, &a), CVAE_OK);
    CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, 2), m);
    if (classes)
        CHECK(cvae_model_set(m, CVAE_MODEL_CLASSES, classes), m);
    CHECK(cvae_model_init_preset(m, 1, 28, 28, 16, max_batch, 1), m);
    live = c.live;
    cvae_model_destroy(m);
    assert_int_equal(c.live, 0);
    return live;
}

/* Fails if the conditional preset (MNIST, 10 classes, batch 128) allocates
 * more than the plain one plus its own extra: the concat_label outputs (the
 * encoder's 64 x 7 x 7 features + 10, the decoder's 16 + 10 and 256 + 10 a
 * image), its extra parameters and their gradients, and 64 KB for the rest.
 * A concat_label's backward out of place made the two gradient blocks both
 * as wide as the widest activation: 1.6 MB more. */
static void test_preset_memory(void **state)
{
    const size_t B = 128, extra_params = 1724769 - 1688289;
    size_t plain = preset_bytes(0, (int)B), cond = preset_bytes(10, (int)B);
    size_t acts = (64 * 7 * 7 + 10 + 16 + 10 + 256 + 10) * B * sizeof(float);
    size_t bound = plain + acts + 2 * extra_params * sizeof(float) + 65536;
    (void)state;
    if (cond > bound)
        fail_msg("the conditional preset allocates %zu bytes, more than %zu (plain %zu)", cond,
                 bound, plain);
}

/* Fails if a conditional model accepts a call without labels or with a label
 * out of range, if another model accepts labels, or if labels do not change
 * the decoded images. */
static void test_label_checks(void **state)
{
    cvae_model *m = smooth_model(8, 0), *plain = tu_new_model();
    cvae_optimizer *o = tu_new_opt(CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m));
    float x[N * IMG], z[N * LAT], a[N * IMG], b[N * IMG], mu[N * LAT];
    int bad[N] = {0, 1, 3, 0}, neg[N] = {0, -1, 0, 0}, ones[N] = {1, 1, 1, 1};
    double lw[N];
    (void)state;
    fill(x, N * IMG, 9);
    fill(z, N * LAT, 10);
    assert_int_equal(cvae_model_train_step(m, o, x, N, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_model_last_error(m), "conditional"));
    assert_int_equal(cvae_model_train_step_labels(m, o, x, bad, N, NULL, NULL),
                     CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_model_last_error(m), "label 3 of image 2"));
    assert_int_equal(cvae_model_train_step_labels(m, o, x, neg, N, NULL, NULL),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_steps(m), 0);
    CHECK(cvae_model_train_step_labels(m, o, x, labels, N, NULL, NULL), m);
    assert_int_equal(cvae_model_encode(m, x, N, mu, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_decode(m, z, N, a), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_sample(m, N, 1, a), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_reconstruct(m, x, N, a), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_log_weights(m, x, NULL, z, N, lw), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_decode_labels(m, z, bad, N, a), CVAE_ERR_INVALID_ARG);
    CHECK(cvae_model_encode_labels(m, x, labels, N, mu, NULL), m);
    CHECK(cvae_model_reconstruct_labels(m, x, labels, N, a), m);
    CHECK(cvae_model_sample_labels(m, N, 1, labels, a), m);
    CHECK(cvae_model_log_weights(m, x, labels, z, N, lw), m);
    /* The same z decodes differently under another label. */
    CHECK(cvae_model_decode_labels(m, z, labels, N, a), m);
    CHECK(cvae_model_decode_labels(m, z, ones, N, b), m);
    assert_true(memcmp(a, b, IMG * sizeof(float)) != 0);              /* image 0: label 0 vs 1 */
    assert_memory_equal(a + 2 * IMG, b + 2 * IMG, IMG * sizeof(float)); /* image 2: 1 vs 1 */
    /* No pointer to the caller's labels stays in the layers after a call. */
    assert_int_equal(cvi_stack_set_labels(cvae_model_encoder(m), NULL), K);
    /* A model that is not conditional refuses labels. */
    CHECK(cvae_model_init_preset(plain, 1, 4, 4, LAT, N, 1), plain);
    assert_int_equal(cvae_model_sample_labels(plain, N, 1, labels, a), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_model_last_error(plain), "not conditional"));
}

/* Fails if evaluate and iwae do not read a conditional model's labels from
 * the dataset, or accept a dataset without labels or with labels too large. */
static void test_datasets(void **state)
{
    cvae_model *m = smooth_model(11, 0);
    cvae_dataset *ds = tu_new_dataset(), *bare = tu_new_dataset(), *big = tu_new_dataset();
    uint8_t px[N * IMG], y[N] = {0, 2, 1, 2}, y9[N] = {0, 9, 1, 2};
    float x[N * IMG], eps[N * LAT];
    double total, bound, lw[N], mean = 0.0;
    cvi_rng rng;
    int i;
    (void)state;
    for (i = 0; i < N * IMG; i++)
        px[i] = (uint8_t)(i * 29 % 256);
    assert_int_equal(cvae_dataset_set_u8(ds, N, 1, H, W, px, y), CVAE_OK);
    assert_int_equal(cvae_dataset_set_u8(bare, N, 1, H, W, px, NULL), CVAE_OK);
    assert_int_equal(cvae_dataset_set_u8(big, N, 1, H, W, px, y9), CVAE_OK);
    CHECK(cvae_model_evaluate(m, ds, 1, NULL, NULL, &total), m);
    assert_int_equal(cvae_model_evaluate(m, bare, 1, NULL, NULL, &total), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_model_last_error(m), "no labels"));
    assert_int_equal(cvae_model_iwae(m, big, 1, 1, &bound), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_model_last_error(m), "label 9"));
    /* iwae with k = 1 is the mean log weight under the dataset's labels. */
    CHECK(cvae_model_iwae(m, ds, 1, 5, &bound), m);
    cvi_rng_seed(&rng, 5);
    for (i = 0; i < N; i++)
        cvi_rng_normal(&rng, eps + i * LAT, LAT);
    assert_int_equal(cvae_dataset_batch(ds, 0, N, x, NULL), CVAE_OK);
    CHECK(cvae_model_log_weights(m, x, labels, eps, N, lw), m);
    for (i = 0; i < N; i++)
        mean += lw[i] / N;
    assert_true(fabs(bound - mean) < 1e-9 * fabs(mean));
}

/* Fails if the conditional preset is not conditional, or if the option is
 * not checked. */
static void test_preset_option(void **state)
{
    cvae_model *m = tu_new_model();
    double v = -1.0;
    float z[2 * 16], a[2 * 28 * 28];
    int two[2] = {3, 9};
    (void)state;
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_CLASSES, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_CLASSES, 2.5), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_CLASSES, 65537), CVAE_ERR_INVALID_ARG);
    CHECK(cvae_model_set(m, CVAE_MODEL_CLASSES, 10), m);
    CHECK(cvae_model_init_preset(m, 1, 28, 28, 16, 2, 1), m);
    CHECK(cvae_model_get(m, CVAE_MODEL_CLASSES, &v), m);
    assert_true(v == 10.0);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_CLASSES, 0), CVAE_ERR_STATE);
    /* Encoder: conv relu conv relu flatten concat_label linear relu linear; the decoder
     * starts with concat_label ... */
    assert_int_equal(cvae_stack_layer_count(cvae_model_encoder(m)), 9);
    assert_int_equal(cvae_layer_get_kind(cvae_stack_layer(cvae_model_encoder(m), 5)),
                     CVAE_LAYER_CONCAT_LABEL);
    assert_int_equal(cvae_layer_get_kind(cvae_stack_layer(cvae_model_decoder(m), 0)),
                     CVAE_LAYER_CONCAT_LABEL);
    /* ... and again after the decoder's first hidden layer (linear, relu). */
    assert_int_equal(cvae_layer_get_kind(cvae_stack_layer(cvae_model_decoder(m), 3)),
                     CVAE_LAYER_CONCAT_LABEL);
    assert_int_equal(cvae_model_param_count(m), 1724769);
    memset(z, 0, sizeof z);
    CHECK(cvae_model_decode_labels(m, z, two, 2, a), m);
}

/* Fails if a saved conditional model does not load back conditional, with
 * the same class count and the same decoded images, bit for bit. */
static void test_save_load(void **state)
{
    cvae_model *m = smooth_model(12, 0), *back = tu_new_model();
    float z[N * LAT], a[N * IMG], b[N * IMG];
    double v = 0.0;
    char dir[256], path[300];
    (void)state;
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "test_conditional"), 0);
    snprintf(path, sizeof path, "%s/c.cvae", dir);
    CHECK(cvae_model_save(m, NULL, path), m);
    CHECK(cvae_model_load(back, path, N), back);
    tu_tmpdir_remove(dir);
    CHECK(cvae_model_get(back, CVAE_MODEL_CLASSES, &v), back);
    assert_true(v == K);
    fill(z, N * LAT, 13);
    CHECK(cvae_model_decode_labels(m, z, labels, N, a), m);
    CHECK(cvae_model_decode_labels(back, z, labels, N, b), back);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(cvae_model_decode(back, z, N, b), CVAE_ERR_INVALID_ARG);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, tu_release_all_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer),  T(test_gradient),      T(test_gradient_inner_labels),
        T(test_label_checks),          T(test_datasets),      T(test_preset_option),
        T(test_preset_memory),         T(test_save_load),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
