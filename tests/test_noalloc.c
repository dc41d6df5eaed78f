/*
 * test_noalloc.c - training, evaluating, sampling and the stack passes never
 * allocate: every malloc, calloc, realloc and free the library makes goes
 * through the linker's --wrap (see the Makefile), is counted here, and the
 * counts must not move across those calls once the handles are set up.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "cvae.h"
#include "testwrap.h"

static void count_span(void *ctx, size_t offset, size_t count)
{
    (void)offset;
    (void)count;
    ++*(int *)ctx;
}

/* Fails if a training step, a data-parallel step, evaluation, sampling, encoding or a stack pass
 * calls the allocator, or if the wrap does not see the library's set-up
 * allocations at all (then the test would prove nothing). */
static void test_steps_do_not_allocate(void **state)
{
    enum { B = 40, N = 100 }; /* B splits into two lanes (model.c) */
    static uint8_t pixels[N * 16 * 12];
    static float x[B * 16 * 12], out[2 * B * 16 * 12], mu[2 * B * 3];
    cvae_model *m = NULL;
    cvae_optimizer *opt = NULL;
    cvae_dataset *ds = NULL;
    unsigned long before;
    double r, k, t;
    int i, spans = 0;
    (void)state;
    for (i = 0; i < N * 16 * 12; i++)
        pixels[i] = (uint8_t)(i * 37 % 251);
    for (i = 0; i < B * 16 * 12; i++)
        x[i] = (float)(i % 7) / 7.0f;
    before = tw_libc_calls();
    assert_int_equal(cvae_model_create(&m), CVAE_OK);
    assert_int_equal(cvae_model_init_preset(m, 1, 16, 12, 3, B, 1), CVAE_OK);
    assert_int_equal(cvae_optimizer_create(&opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m)),
                     CVAE_OK);
    assert_int_equal(cvae_dataset_create(&ds), CVAE_OK);
    assert_int_equal(cvae_dataset_set_u8(ds, N, 1, 16, 12, pixels, NULL), CVAE_OK);
    assert_true(tw_libc_calls() > before + 10);

    before = tw_libc_calls();
    for (i = 0; i < 3; i++)
        assert_int_equal(cvae_model_train_step(m, opt, x, B, &r, &k), CVAE_OK);
    assert_int_equal(cvae_model_evaluate(m, ds, 1, &r, &k, &t), CVAE_OK);
    assert_int_equal(cvae_model_sample(m, 2 * B, 3, out), CVAE_OK);
    assert_int_equal(cvae_model_encode(m, out, 2 * B, mu, NULL), CVAE_OK);
    assert_int_equal(cvae_model_reconstruct(m, x, B, out), CVAE_OK);
    assert_int_equal(cvae_dataset_shuffle(ds, 2), CVAE_OK);
    assert_int_equal(cvae_dataset_batch(ds, 0, B, x, NULL), CVAE_OK);
    assert_int_equal(cvae_model_train_step(m, opt, x, B, &r, &k), CVAE_OK);
    /* The data-parallel calls, a straddling shard and a lane, with spans reported. */
    assert_int_equal(cvae_model_data_init(m, x, B), CVAE_OK);
    assert_int_equal(cvae_model_set_grads_ready(m, count_span, &spans), CVAE_OK);
    assert_int_equal(cvae_model_shard_grads(m, x + 10 * 16 * 12, NULL, 10, 20, 2 * B, &r, &k),
                     CVAE_OK);
    assert_int_equal(cvae_model_shard_grads(m, x, NULL, 0, B, 2 * B, &r, &k), CVAE_OK);
    assert_int_equal(cvae_model_apply_grads(m, opt), CVAE_OK);
    assert_int_equal(cvae_model_evaluate_range(m, ds, 1, 7, 50, &r, &k), CVAE_OK);
    assert_true(spans == 16);
    if (tw_libc_calls() != before)
        fail_msg("%lu allocator calls during steps and passes", tw_libc_calls() - before);

    cvae_dataset_destroy(ds);
    cvae_optimizer_destroy(opt);
    cvae_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_do_not_allocate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
