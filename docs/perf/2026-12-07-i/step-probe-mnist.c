/* step-probe-mnist THREADS STEPS ROUNDS [mnist [THEN]]: images/s of each round of
 * STEPS training steps of the seed model at B128. With "mnist", a pool of the
 * first 1,024 digits of data/mnist, cycled as cvae-bench cycles its pool; else
 * one synthetic batch. With THEN, the rounds run on THREADS threads and then
 * again on THEN threads in the same process, on the same model (cvae-bench's
 * order). Build: gcc -O2 -fopenmp -Iinclude step-probe-mnist.c build/libcvae.a -lm */
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

static void rounds_of(cvae_model *m, cvae_optimizer *o, const float *pool, int batches,
                      int steps, int rounds, long *next)
{
    int r, i;
    for (r = 0; r < rounds; r++) {
        double t0 = now(), t;
        for (i = 0; i < steps; i++, (*next)++)
            cvae_model_train_step(m, o, pool + (size_t)(*next % batches) * BATCH * PIXELS, BATCH,
                                  NULL, NULL);
        t = (now() - t0) / steps;
        printf("%.0f ", BATCH / t);
    }
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1, steps = argc > 2 ? atoi(argv[2]) : 20;
    int rounds = argc > 3 ? atoi(argv[3]) : 10, batches = 1, i;
    long next = 0;
    cvae_model *m;
    cvae_optimizer *o;
    size_t np;
    float *pool = malloc((size_t)POOL * PIXELS * sizeof *pool);
    if (!pool)
        return 1;
    if (argc > 4) {
        cvae_dataset *d;
        if (cvae_dataset_create(&d) != CVAE_OK ||
            cvae_dataset_load_idx(d, "data/mnist/train-images-idx3-ubyte", NULL) != CVAE_OK ||
            cvae_dataset_batch(d, 0, POOL, pool, NULL) != CVAE_OK) {
            fprintf(stderr, "cannot read data/mnist\n");
            return 1;
        }
        cvae_dataset_destroy(d);
        batches = POOL / BATCH;
    } else {
        for (i = 0; i < BATCH * PIXELS; i++)
            pool[i] = (float)(((unsigned)i * 2654435761u) >> 28) / 15.0f;
    }
    if (cvae_model_create(&m) != CVAE_OK ||
        cvae_model_init_preset(m, 1, 28, 28, 16, BATCH, 1) != CVAE_OK ||
        cvae_model_set(m, CVAE_MODEL_THREADS, threads) != CVAE_OK ||
        cvae_model_params(m, &np) == NULL ||
        cvae_optimizer_create(&o, CVAE_OPTIMIZER_ADAM, np) != CVAE_OK)
        return 1;
    for (i = 0; i < 10; i++) /* warm-up */
        cvae_model_train_step(m, o, pool, BATCH, NULL, NULL);
    rounds_of(m, o, pool, batches, steps, rounds, &next);
    if (argc > 5) {
        printf("/ ");
        cvae_model_set(m, CVAE_MODEL_THREADS, atoi(argv[5]));
        for (i = 0; i < 5; i++)
            cvae_model_train_step(m, o, pool, BATCH, NULL, NULL);
        rounds_of(m, o, pool, batches, steps, rounds, &next);
    }
    printf("\n");
    cvae_optimizer_destroy(o);
    cvae_model_destroy(m);
    free(pool);
    return 0;
}
