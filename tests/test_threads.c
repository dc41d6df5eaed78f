/*
 * test_threads.c - the thread-count setting of models and stacks, and the
 * promise that goes with it: the same seed gives bit-identical parameters,
 * losses and outputs on 1, 2 or 3 threads (the multiply splits C into blocks
 * that each thread computes exactly as one thread would; every reduction has
 * a fixed order). In a build without OpenMP (make OPENMP=0) every count runs
 * on one thread and the comparisons hold trivially; the option checks still
 * apply.
 *
 * The model is the preset (convolutions, linear layers, transposed
 * convolutions) on 1 x 16 x 16 images, small enough for a quick test yet
 * with products large enough that the multiply really splits them, plain
 * and conditional on labels.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SIDE 16
#define LATENT 4
#define BATCH 41 /* two lanes of 20 and 21 images (model.c) */
#define STEPS 4
#define PIXELS (SIDE * SIDE)

#define CHECK(call, m)                                                                             \
    do {                                                                                           \
        cvae_status st_ = (call);                                                                  \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s (%s)", #call, cvae_status_string(st_), cvae_model_last_error(m));     \
    } while (0)

/* What a run produced, for comparison bit for bit. */
typedef struct run_result {
    float *params;
    size_t nparams;
    double recon[STEPS], kl[STEPS];
    float mu[BATCH * LATENT], logvar[BATCH * LATENT], images[BATCH * PIXELS];
    double eval_recon, eval_kl, eval_total;
} run_result;

/* Trains a fresh preset model (conditional on `classes` labels unless 0)
 * for STEPS steps on `threads` threads (set before or after the
 * architecture, as asked), then encodes, samples and evaluates. */
static void train_run(int threads, int set_after_init, int classes, run_result *r)
{
    cvae_model *m = tu_new_model();
    cvae_optimizer *opt;
    cvae_dataset *ds = tu_new_dataset();
    float *x = tu_keep(TU_KEEP_MEMORY, malloc(sizeof(float) * BATCH * PIXELS));
    uint8_t *px = tu_keep(TU_KEEP_MEMORY, malloc(BATCH * PIXELS));
    uint8_t y8[BATCH];
    int y[BATCH], *labels = classes ? y : NULL;
    float *p;
    int i;

    tu_fill_uniform(x, (size_t)BATCH * PIXELS, 5);
    for (i = 0; i < BATCH * PIXELS; i++)
        px[i] = (uint8_t)(x[i] * 255.0f);
    for (i = 0; i < BATCH; i++)
        y8[i] = (uint8_t)(y[i] = classes ? (i * 7 + i / 5) % classes : 0); /* no period of 20 */
    if (cvae_dataset_set_u8(ds, BATCH, 1, SIDE, SIDE, px, classes ? y8 : NULL) != CVAE_OK)
        fail_msg("dataset_set_u8: %s", cvae_dataset_last_error(ds));
    if (!set_after_init)
        CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, threads), m);
    if (classes)
        CHECK(cvae_model_set(m, CVAE_MODEL_CLASSES, classes), m);
    CHECK(cvae_model_init_preset(m, 1, SIDE, SIDE, LATENT, BATCH, 77), m);
    if (set_after_init)
        CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, threads), m);
    opt = tu_new_opt(CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m));
    for (i = 0; i < STEPS; i++)
        CHECK(cvae_model_train_step_labels(m, opt, x, labels, BATCH, &r->recon[i], &r->kl[i]),
              m);
    CHECK(cvae_model_encode_labels(m, x, labels, BATCH, r->mu, r->logvar), m);
    CHECK(cvae_model_sample_labels(m, BATCH, 3, labels, r->images), m);
    CHECK(cvae_model_evaluate(m, ds, 9, &r->eval_recon, &r->eval_kl, &r->eval_total), m);
    p = cvae_model_params(m, &r->nparams);
    r->params = malloc(r->nparams * sizeof *r->params);
    assert_non_null(r->params);
    memcpy(r->params, p, r->nparams * sizeof *p);
    tu_release_all();
}

static void assert_same_run(const run_result *a, const run_result *b, const char *what)
{
    assert_int_equal(a->nparams, b->nparams);
    if (memcmp(a->params, b->params, a->nparams * sizeof *a->params) != 0)
        fail_msg("%s: parameters after %d steps differ", what, STEPS);
    if (memcmp(a->recon, b->recon, sizeof a->recon) || memcmp(a->kl, b->kl, sizeof a->kl))
        fail_msg("%s: training losses differ", what);
    if (memcmp(a->mu, b->mu, sizeof a->mu) || memcmp(a->logvar, b->logvar, sizeof a->logvar))
        fail_msg("%s: encodings differ", what);
    if (memcmp(a->images, b->images, sizeof a->images))
        fail_msg("%s: samples differ", what);
    if (a->eval_recon != b->eval_recon || a->eval_kl != b->eval_kl ||
        a->eval_total != b->eval_total)
        fail_msg("%s: evaluations differ", what);
}

/* Fails if 2 or 3 threads (set before the architecture or after it, which
 * grows the per-thread buffers) change a single bit of what one thread
 * computes: training, encoding, sampling or evaluation. */
static void test_thread_count_does_not_change_results(void **state)
{
    run_result one, other;
    static const struct {
        int threads, after;
        const char *what;
    } runs[] = {{2, 0, "2 threads"}, {3, 0, "3 threads"}, {3, 1, "3 threads set after init"},
                {0, 0, "automatic threads"}};
    size_t i;
    (void)state;
    train_run(1, 0, 0, &one);
    assert_true(isfinite(one.recon[STEPS - 1]) && one.recon[STEPS - 1] < one.recon[0]);
    for (i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        train_run(runs[i].threads, runs[i].after, 0, &other);
        assert_same_run(&one, &other, runs[i].what);
        free(other.params);
    }
    free(one.params);
}

/* The same for a conditional model (labels concatenated to the encoder's
 * features and to z: each lane reads its own labels, and the lanes of a team
 * read each other's rows). */
static void test_thread_count_conditional(void **state)
{
    run_result one, other;
    (void)state;
    train_run(1, 0, 10, &one);
    assert_true(isfinite(one.recon[STEPS - 1]) && one.recon[STEPS - 1] < one.recon[0]);
    train_run(2, 0, 10, &other);
    assert_same_run(&one, &other, "conditional, 2 threads");
    free(other.params);
    free(one.params);
}

/* Fails if the option accepts what it must refuse (negative, above 256, not
 * an integer, NaN) or does not keep and report what it accepts. */
static void test_threads_option(void **state)
{
    static const double bad[] = {-1.0, 257.0, 1.5, NAN, INFINITY};
    cvae_model *m = tu_new_model();
    double v = -1.0, lo = -1.0, hi = -1.0;
    size_t i;
    (void)state;
    CHECK(cvae_model_get(m, CVAE_MODEL_THREADS, &v), m);
    assert_true(v == 0.0); /* automatic by default */
    CHECK(cvae_model_bounds(m, CVAE_MODEL_THREADS, &lo, &hi), m);
    assert_true(lo == 0.0 && hi == 256.0);
    CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, 2), m);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(cvae_model_set(m, CVAE_MODEL_THREADS, bad[i]), CVAE_ERR_INVALID_ARG);
        assert_non_null(strstr(cvae_model_last_error(m), "threads"));
        CHECK(cvae_model_get(m, CVAE_MODEL_THREADS, &v), m);
        assert_true(v == 2.0);
    }
    /* Kept through an architecture, and applied to both stacks. */
    CHECK(cvae_model_init_preset(m, 1, SIDE, SIDE, LATENT, 4, 1), m);
    CHECK(cvae_model_get(m, CVAE_MODEL_THREADS, &v), m);
    assert_true(v == 2.0);
    assert_int_equal(cvae_stack_get_threads(cvae_model_encoder(m)), 2);
    assert_int_equal(cvae_stack_get_threads(cvae_model_decoder(m)), 2);
    CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, 256), m);
    assert_int_equal(cvae_stack_get_threads(cvae_model_decoder(m)), 256);
    tu_release_all();

    /* A model's stacks share its buffers: growing them goes through the model. */
    m = tu_new_model();
    CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, 1), m);
    CHECK(cvae_model_init_preset(m, 1, SIDE, SIDE, LATENT, 4, 1), m);
    if (cvi_threads_resolve(4) > 1) { /* an OpenMP build: 4 threads need more buffers */
        assert_int_equal(cvae_stack_set_threads(cvae_model_encoder(m), 4), CVAE_ERR_STATE);
        assert_non_null(strstr(cvae_stack_last_error(cvae_model_encoder(m)), "CVAE_MODEL_THREADS"));
        assert_int_equal(cvae_stack_get_threads(cvae_model_encoder(m)), 1);
    }
    CHECK(cvae_model_set(m, CVAE_MODEL_THREADS, 4), m);
    assert_int_equal(cvae_stack_get_threads(cvae_model_encoder(m)), 4);
    assert_int_equal(cvae_stack_set_threads(cvae_model_encoder(m), 2), CVAE_OK); /* fits */
    tu_release_all();
}

/* Fails if a stack's setting refuses valid counts, accepts invalid ones or
 * crashes on NULL. */
static void test_stack_threads(void **state)
{
    cvae_stack *s = NULL;
    cvae_layer *l = NULL;
    (void)state;
    assert_int_equal(cvae_stack_set_threads(NULL, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_get_threads(NULL), 0);
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    assert_int_equal(cvae_stack_set_threads(s, -1), CVAE_ERR_INVALID_ARG);
    assert_non_null(strstr(cvae_stack_last_error(s), "threads"));
    assert_int_equal(cvae_stack_set_threads(s, 257), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_set_threads(s, 3), CVAE_OK);
    assert_int_equal(cvae_stack_get_threads(s), 3);
    tu_add_layer(s, cvae_layer_create_linear(&l, 5), &l);
    assert_int_equal(cvae_stack_build(s, 1, 4, 4, 2, 1), CVAE_OK);
    assert_int_equal(cvae_stack_set_threads(s, 8), CVAE_OK); /* grows the buffers */
    assert_int_equal(cvae_stack_get_threads(s), 8);
    assert_int_equal(cvae_stack_set_threads(s, 0), CVAE_OK);
    cvae_stack_destroy(s);
}

/* Two models trained at the same time from two threads of the caller. */
typedef struct concurrent_job {
    uint64_t seed;
    int threads; /* the model's setting; 0 is taken as 1 */
    float params_out[8]; /* a digest: the first parameters after training */
    double recon, kl;
    cvae_status status;
} concurrent_job;

static void *concurrent_train(void *arg)
{
    concurrent_job *job = arg;
    cvae_model *m = NULL;
    cvae_optimizer *opt = NULL;
    float x[BATCH * PIXELS];
    size_t n = 0;
    int i;
    tu_fill_uniform(x, (size_t)BATCH * PIXELS, job->seed + 100);
    job->status = cvae_model_create(&m);
    if (job->status == CVAE_OK)
        job->status = cvae_model_set(m, CVAE_MODEL_THREADS, job->threads ? job->threads : 1);
    if (job->status == CVAE_OK)
        job->status = cvae_model_init_preset(m, 1, SIDE, SIDE, LATENT, BATCH, job->seed);
    if (job->status == CVAE_OK)
        job->status = cvae_optimizer_create(&opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m));
    for (i = 0; job->status == CVAE_OK && i < STEPS; i++)
        job->status = cvae_model_train_step(m, opt, x, BATCH, &job->recon, &job->kl);
    if (job->status == CVAE_OK) {
        const float *p = cvae_model_params(m, &n);
        /* parameters spread over the whole block, encoder and decoder */
        for (i = 0; i < 8; i++)
            job->params_out[i] = p[(size_t)i * (n / 8)];
    }
    cvae_optimizer_destroy(opt);
    cvae_model_destroy(m);
    return NULL;
}

/* Trains the seeds seed0 and seed0 + 1 alone, one after the other, on 1 thread each, into
 * alone; sets up again[k] to train alone[k]'s seed once more on `threads`. */
static void train_alone(uint64_t seed0, int threads, concurrent_job alone[2],
                        concurrent_job again[2])
{
    int k;
    for (k = 0; k < 2; k++) {
        memset(&alone[k], 0, sizeof alone[k]);
        alone[k].seed = seed0 + (uint64_t)k;
        alone[k].threads = 1;
        concurrent_train(&alone[k]);
        assert_int_equal(alone[k].status, CVAE_OK);
        memset(&again[k], 0, sizeof again[k]);
        again[k].seed = alone[k].seed;
        again[k].threads = threads;
    }
    /* The two seeds did train differently: the comparisons can fail. */
    assert_memory_not_equal(alone[0].params_out, alone[1].params_out, sizeof alone[0].params_out);
}

/* Fails unless each of the two runs gave the bits of its seed trained alone. */
static void assert_same_as_alone(const concurrent_job got[2], const concurrent_job alone[2])
{
    int k;
    for (k = 0; k < 2; k++) {
        assert_int_equal(got[k].status, CVAE_OK);
        assert_memory_equal(got[k].params_out, alone[k].params_out, sizeof alone[k].params_out);
        assert_true(got[k].recon == alone[k].recon && got[k].kl == alone[k].kl);
    }
}

/* Fails if two models trained at the same time in two threads (no global state, each handle
 * its own buffers, each model's lanes their own turns) do not give exactly what each gives
 * trained alone, one after the other; each model on 1 thread, then on 2 (its lanes at once,
 * 4 threads in all). */
static void test_models_in_two_threads(void **state)
{
    concurrent_job alone[2], together[2];
    pthread_t th[2];
    int threads, k;
    (void)state;
    for (threads = 1; threads <= 2; threads++) {
        train_alone(11, threads, alone, together);
        for (k = 0; k < 2; k++)
            assert_int_equal(pthread_create(&th[k], NULL, concurrent_train, &together[k]), 0);
        for (k = 0; k < 2; k++)
            assert_int_equal(pthread_join(th[k], NULL), 0);
        assert_same_as_alone(together, alone);
    }
}

/* Fails if a model set to 2 threads, trained inside a parallel region of the caller's (where
 * OpenMP gives its region one thread, so its lanes run one after the other on it), hangs or
 * gives other bits than alone. */
static void test_model_inside_parallel_region(void **state)
{
    concurrent_job alone[2], inside[2];
    int k;
    (void)state;
    train_alone(21, 2, alone, inside);
#ifdef _OPENMP
#pragma omp parallel for num_threads(2) schedule(static, 1)
#endif
    for (k = 0; k < 2; k++)
        concurrent_train(&inside[k]);
    assert_same_as_alone(inside, alone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_thread_count_does_not_change_results,
                                  tu_release_all_teardown),
        cmocka_unit_test_teardown(test_thread_count_conditional, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_threads_option, tu_release_all_teardown),
        cmocka_unit_test(test_stack_threads),
        cmocka_unit_test(test_models_in_two_threads),
        cmocka_unit_test(test_model_inside_parallel_region),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
