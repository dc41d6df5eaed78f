/* mlp-probe THREADS STEPS ROUNDS: images/s of each round of STEPS training steps
 * of the MLP VAE (784-400-20, as cvae-bench and PyTorch's example build it) at
 * B128, on a pool of the first 1,024 digits of data/mnist, cycled.
 * Build: gcc -O2 -fopenmp -Iinclude mlp-probe.c build/libcvae.a -lm */
#define _POSIX_C_SOURCE 200809L
#include "cvae.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BATCH 128
#define POOL 1024
#define PIXELS 784

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Adds the layer a create call just made (created: its status). */
static void add(cvae_stack *s, cvae_status created, cvae_layer **l)
{
    if (created != CVAE_OK || cvae_stack_add(s, *l) != CVAE_OK) {
        fprintf(stderr, "mlp-probe: cannot build the layers\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1, steps = argc > 2 ? atoi(argv[2]) : 200;
    int rounds = argc > 3 ? atoi(argv[3]) : 5, i, r;
    long next = 0;
    cvae_model *m;
    cvae_optimizer *o;
    cvae_stack *enc, *dec;
    cvae_layer *l;
    cvae_dataset *ds;
    size_t np;
    float *pool = malloc((size_t)POOL * PIXELS * sizeof *pool);
    if (!pool || cvae_dataset_create(&ds) != CVAE_OK ||
        cvae_dataset_load_idx(ds, "data/mnist/train-images-idx3-ubyte", NULL) != CVAE_OK ||
        cvae_dataset_batch(ds, 0, POOL, pool, NULL) != CVAE_OK) {
        fprintf(stderr, "mlp-probe: cannot read data/mnist\n");
        return 1;
    }
    cvae_dataset_destroy(ds);
    cvae_stack_create(&enc);
    cvae_stack_create(&dec);
    add(enc, cvae_layer_create_linear(&l, 400), &l);
    add(enc, cvae_layer_create_relu(&l), &l);
    add(enc, cvae_layer_create_linear(&l, 40), &l);
    add(dec, cvae_layer_create_linear(&l, 400), &l);
    add(dec, cvae_layer_create_relu(&l), &l);
    add(dec, cvae_layer_create_linear(&l, PIXELS), &l);
    add(dec, cvae_layer_create_reshape(&l, 1, 28, 28), &l);
    if (cvae_model_create(&m) != CVAE_OK ||
        cvae_model_init_stacks(m, enc, dec, 1, 28, 28, 20, BATCH, 1) != CVAE_OK ||
        cvae_model_set(m, CVAE_MODEL_THREADS, threads) != CVAE_OK ||
        cvae_model_params(m, &np) == NULL ||
        cvae_optimizer_create(&o, CVAE_OPTIMIZER_ADAM, np) != CVAE_OK) {
        fprintf(stderr, "mlp-probe: cannot build the model\n");
        return 1;
    }
    for (i = 0; i < 20; i++) /* warm-up */
        cvae_model_train_step(m, o, pool, BATCH, NULL, NULL);
    for (r = 0; r < rounds; r++) {
        double t0 = now();
        for (i = 0; i < steps; i++, next++)
            cvae_model_train_step(m, o, pool + (size_t)(next % (POOL / BATCH)) * BATCH * PIXELS,
                                  BATCH, NULL, NULL);
        printf("%.0f ", BATCH * steps / (now() - t0));
    }
    printf("\n");
    cvae_optimizer_destroy(o);
    cvae_model_destroy(m);
    free(pool);
    return 0;
}
