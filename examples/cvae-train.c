/*
 * cvae-train - trains libcvae's built-in convolutional VAE on MNIST with
 * Adam, reports the loss after every epoch and saves a checkpoint (model and
 * optimizer) after every epoch, so training can be resumed.
 *
 * Shows the 0.2 training API: datasets, the preset model, the optimizer,
 * train_step, evaluate, save and load. Optional extras: a CSV log, an SVG
 * chart of the losses, a live progress line, and a clean stop on Ctrl-C.
 * This file is the training loop of one process; the options, output and
 * files are common/train_cli.c's, shared with other trainers.
 */
#include <cvae.h>

#include "example_util.h"
#include "train_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    tc_usage(f, "cvae-train", NULL, NULL);
}

/*
 * Trains on batches first .. steps_per_epoch - 1 of the (already shuffled)
 * training set, or until Ctrl-C, adding the loss sums to r. *next receives
 * the index of the first batch not trained. Returns 0 or an exit status.
 */
static int train_epoch(cvae_model *m, cvae_optimizer *opt, cvae_dataset *train, float *x,
                       int *y, const struct tc_options *o, int epoch, int first,
                       int steps_per_epoch, struct tc_epoch_result *r, int *next)
{
    int count = cvae_dataset_count(train), b;
    long images = 0;
    struct tc_progress p;
    cvae_status st;

    tc_progress_start(&p);
    for (b = first; b < steps_per_epoch && !tc_interrupted(); b++) {
        int n = tc_batch_images(o, count, b);
        double recon, kl;

        if ((st = cvae_dataset_batch(train, b * o->batch, n, x, y)) != CVAE_OK)
            return ex_status_error("reading a batch", st, cvae_dataset_last_error(train));
        if (tc_schedule_lr(opt, o, cvae_model_steps(m), steps_per_epoch) != 0)
            return 1;
        /* y is NULL unless the model is conditional. */
        if ((st = cvae_model_train_step_labels(m, opt, x, y, n, &recon, &kl)) != CVAE_OK)
            return ex_status_error("training step", st, cvae_model_last_error(m));
        r->recon += recon * n; /* weighted by batch size: the last batch is smaller */
        r->kl += kl * n;
        images += n;
        tc_progress_draw(&p, epoch + 1, o->epochs, (long)b * o->batch + n, count, images,
                         r->recon + r->kl);
    }
    tc_progress_clear(&p);
    *next = b;
    tc_end_training(r, images, &p);
    return 0;
}

int main(int argc, char **argv)
{
    struct tc_options o;
    cvae_dataset *train = NULL, *test = NULL;
    cvae_model *m = NULL;
    cvae_optimizer *opt = NULL;
    struct tc_epoch_result *hist = NULL;
    float *x = NULL;
    int *y = NULL;
    int c, h, w, steps_per_epoch, epoch, first, nhist = 0, rc = 1;
    double classes = 0;
    cvae_status st;

    ex_prog = "cvae-train";
    tc_defaults(&o);
    tc_parse_options(argc, argv, usage, NULL, NULL, &o);
    if (o.config && tc_apply_config(&o) != 0)
        return 1;

    if (tc_load_data(&o, &train, &test) != 0)
        goto done;
    if ((rc = tc_setup(&o, train, o.batch, &m, &opt)) != 0)
        goto done;
    rc = 1;
    if (tc_prepare_outputs(m, opt, &o) != 0)
        goto done;

    cvae_model_shape(m, &c, &h, &w, NULL, NULL);
    cvae_model_get(m, CVAE_MODEL_CLASSES, &classes);
    steps_per_epoch = tc_steps_per_epoch(train, o.batch);
    tc_start_point(m, steps_per_epoch, &epoch, &first);
    x = malloc((size_t)o.batch * (size_t)(c * h * w) * sizeof *x);
    y = classes > 0 ? malloc((size_t)o.batch * sizeof *y) : NULL;
    hist = malloc((size_t)(o.epochs > epoch ? o.epochs - epoch : 1) * sizeof *hist);
    if (!x || !hist || (classes > 0 && !y)) {
        ex_error("out of memory");
        goto done;
    }
    tc_print_start(&o, train, test, m, epoch, first, steps_per_epoch);

    if (tc_catch_sigint() != 0)
        goto done;
    for (; epoch < o.epochs; epoch++, first = 0) {
        struct tc_epoch_result r;
        double t0 = ex_now();
        int next = first;

        memset(&r, 0, sizeof r);
        r.epoch = epoch + 1;
        /* Each epoch's order depends on the seed and the epoch only. */
        if ((st = cvae_dataset_shuffle(train, o.seed + (uint64_t)epoch)) != CVAE_OK) {
            ex_status_error("shuffling", st, cvae_dataset_last_error(train));
            goto done;
        }
        if (train_epoch(m, opt, train, x, y, &o, epoch, first, steps_per_epoch, &r, &next) != 0)
            goto done;
        if (next < steps_per_epoch) { /* Ctrl-C in the middle of the epoch */
            rc = tc_save_interrupted(m, opt, o.out);
            goto done;
        }
        if (tc_finish_epoch(m, opt, test, &o, t0, &r, hist, &nhist) != 0)
            goto done;
        if (tc_interrupted()) { /* Ctrl-C after the last step: the epoch is complete */
            rc = tc_save_interrupted(m, opt, o.out);
            goto done;
        }
    }
    if (tc_use_weights(m, opt, 1) != 0) /* the final figures are the average's */
        goto done;
    rc = tc_print_final(m, &o, train, test, hist, nhist);
done:
    free(x);
    free(y);
    free(hist);
    cvae_optimizer_destroy(opt);
    cvae_model_destroy(m);
    cvae_dataset_destroy(test);
    cvae_dataset_destroy(train);
    return rc;
}
