/*
 * test_train.c - a short real training run of the seed VAE on MNIST digits
 * (data/mnist, filled by `make data` from ../shared/data/mnist): the test
 * loss must fall well below what any model that ignores its input can reach.
 *
 * The bar. Before training the loss is about 784 ln 2 = 543 nats (logits near
 * 0). The best input-independent model gives each pixel its training-set
 * mean intensity p_j; its Bernoulli NLL on the t10k digits is 205.97 nats
 * (computed from the data files). A VAE only gets below that by encoding
 * each digit, so a test loss under MAX_TEST_LOSS = 190 after STEPS steps means
 * encoder, reparameterisation, decoder and optimizer work together. Measured
 * with this seed: 156.5 (gcc -O2) and 155.2 (clang, ASan+UBSan); the margin
 * absorbs compiler, FMA and libm differences.
 * Skipped, with a message, when data/mnist is absent. Under `make valgrind`
 * (tu_under_valgrind) it runs VALGRIND_STEPS steps on VALGRIND_IMAGES test
 * digits and only asks that the loss falls: that run checks memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "cvae.h"
#include "testutil.h"

#define STEPS 300
#define BATCH 32
#define TEST_IMAGES 1000
#define MAX_TEST_LOSS 190.0
#define VALGRIND_STEPS 10
#define VALGRIND_IMAGES 100

static const char *train_images = "data/mnist/train-images-idx3-ubyte";
static const char *test_images = "data/mnist/t10k-images-idx3-ubyte";

static int have_data(void)
{
    FILE *f = fopen(train_images, "rb");
    if (!f)
        return 0;
    fclose(f);
    return 1;
}

/* Fails if STEPS Adam steps on real digits do not bring the test loss
 * (recon + kl, fixed eps) below MAX_TEST_LOSS, or if any status fails. */
static void test_short_training_beats_mean_image(void **state)
{
    cvae_dataset *train = NULL, *test = NULL, *rest = NULL, *held = NULL;
    cvae_model *m = NULL;
    cvae_optimizer *opt = NULL;
    float *x = malloc(sizeof(float) * BATCH * 784);
    double before, after, recon, kl;
    int step, epoch = 0, pos = 0, count;
    int small = tu_under_valgrind(), steps = small ? VALGRIND_STEPS : STEPS;
    (void)state;
    if (!have_data()) {
        printf("test_train: %s missing, skipped (run make data)\n", train_images);
        free(x);
        skip();
    }
    assert_non_null(x);
    assert_int_equal(cvae_dataset_create(&train), CVAE_OK);
    assert_int_equal(cvae_dataset_create(&test), CVAE_OK);
    assert_int_equal(cvae_dataset_load_idx(train, train_images, NULL), CVAE_OK);
    assert_int_equal(cvae_dataset_load_idx(test, test_images, NULL), CVAE_OK);
    /* A fixed random thousand of the test digits keeps the run short. */
    assert_int_equal(cvae_dataset_split(test, small ? VALGRIND_IMAGES : TEST_IMAGES, 7, &rest, &held), CVAE_OK);
    assert_int_equal(cvae_model_create(&m), CVAE_OK);
    assert_int_equal(cvae_model_init_preset(m, 1, 28, 28, 16, BATCH, 1), CVAE_OK);
    assert_int_equal(cvae_optimizer_create(&opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m)),
                     CVAE_OK);
    assert_int_equal(cvae_model_evaluate(m, held, 5, NULL, NULL, &before), CVAE_OK);

    count = cvae_dataset_count(train);
    assert_int_equal(cvae_dataset_shuffle(train, 1), CVAE_OK);
    for (step = 0; step < steps; step++) {
        if (pos + BATCH > count) {
            pos = 0;
            assert_int_equal(cvae_dataset_shuffle(train, 1 + (uint64_t)++epoch), CVAE_OK);
        }
        assert_int_equal(cvae_dataset_batch(train, pos, BATCH, x, NULL), CVAE_OK);
        pos += BATCH;
        if (cvae_model_train_step(m, opt, x, BATCH, &recon, &kl) != CVAE_OK)
            fail_msg("step %d: %s", step, cvae_model_last_error(m));
    }
    assert_int_equal(cvae_model_evaluate(m, held, 5, &recon, &kl, &after), CVAE_OK);
    printf("test_train: test loss %.2f before, %.2f (recon %.2f + kl %.2f) after %d steps; "
           "bar %.0f\n",
           before, after, recon, kl, steps, small ? before : MAX_TEST_LOSS);
    assert_true(before > 500.0);
    if (!(after < (small ? before : MAX_TEST_LOSS)))
        fail_msg("test loss %.2f after %d steps is not below %.0f", after, steps,
                 small ? before : MAX_TEST_LOSS);

    free(x);
    cvae_optimizer_destroy(opt);
    cvae_model_destroy(m);
    cvae_dataset_destroy(rest);
    cvae_dataset_destroy(held);
    cvae_dataset_destroy(test);
    cvae_dataset_destroy(train);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_training_beats_mean_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
