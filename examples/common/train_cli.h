/*
 * train_cli.h - everything of cvae-train but its training loop: the options
 * and their --help, loading the data, building or resuming the model and
 * optimizer, the learning rate's schedule, Ctrl-C, the progress line, the
 * printed lines, the CSV log, the SVG chart and the checkpoints. A second
 * trainer (one process or several) built on it takes the same options and
 * writes the same output and files. Names carry the prefix tc_.
 *
 * It leaves out how batches are trained: the caller shuffles, steps the
 * model and fills a tc_epoch_result. Not part of libcvae. Messages go to
 * stderr as "prog: message" (example_util.h); functions returning int return
 * 0 or the exit status for main, the message already printed.
 */
#ifndef TRAIN_CLI_H
#define TRAIN_CLI_H

#include <cvae.h>

#include "datasets.h"

#include <stdint.h>
#include <stdio.h>

struct tc_options {
    const char *data, *out, *resume, *log, *plot, *config;
    ex_format format;
    int epochs, batch, latent, threads, width, hidden;
    int conditional, binarize;
    int likelihood; /* a cvae_likelihood, or -1: the model's (Bernoulli when new) */
    double lr, beta, sigma, weight_decay, average;
    int lr_set, beta_set, sigma_set, weight_decay_set, average_set; /* given on the command
                                                     line (they override a checkpoint) */
    int batch_set, latent_set; /* given on the command line (they override --config) */
    /* The training recipe when given; else -1 (logvar_init: 1), and the
     * model's own is kept (the library's default, or the checkpoint's). */
    double kl_warmup_epochs, logvar_init;
    int data_init;
    double lr_warmup_epochs; /* the learning rate's schedule: linear warm-up, */
    int lr_decay;            /* then cosine decay to 0 at --epochs (1) or none */
    uint64_t seed;
};

/* eps seed of every test evaluation, so epochs compare on the same draws. */
#define TC_TEST_EPS_SEED 12345

/* --average's default: the decay of the running average of the weights
 * that is evaluated and saved (docs/EVALUATION.md). */
#define TC_DEFAULT_AVERAGE 0.99

/* One epoch's figures, as printed, logged and plotted. Losses in nats per image. */
struct tc_epoch_result {
    int epoch; /* 1-based */
    double recon, kl;
    int has_test;
    double test_recon, test_kl;
    double seconds, images_per_second;
};

/* The defaults --help states. */
void tc_defaults(struct tc_options *o);

/*
 * The --help text of a trainer called prog. extra_options (or NULL) is the
 * trainer's own option lines, listed after --plot in the same layout;
 * extra_notes (or NULL) is a last paragraph, after a blank line. Both end in
 * a newline and are printed as they are (no printf conversions).
 */
void tc_usage(FILE *f, const char *prog, const char *extra_options, const char *extra_notes);

/*
 * Parses the command line into o (start from tc_defaults), exiting 0 for
 * --help (usage(stdout)) and --version, and 2 on a bad option. An argument
 * no common option matches goes to extra (when not NULL) with ctx: it returns
 * 1 when argv[*i] is one of its options, having advanced *i past a value as
 * ex_option does, else 0; an argument neither matches is an unknown option.
 */
typedef int (*tc_extra_option)(int argc, char **argv, int *i, void *ctx);
void tc_parse_options(int argc, char **argv, void (*usage)(FILE *), tc_extra_option extra,
                      void *ctx, struct tc_options *o);

/* --config FILE: its values for the options the command line did not give. */
int tc_apply_config(struct tc_options *o);

/*
 * The training set and, when the data directory has one, the test set
 * (*test NULL and a note on stderr otherwise), with labels when the model is
 * conditional: --conditional, or a --resume checkpoint that is. On failure
 * both are NULL.
 */
int tc_load_data(const struct tc_options *o, cvae_dataset **train, cvae_dataset **test);

/*
 * The model, new or from --resume, for batches of up to max_batch images
 * (o->batch for one process; a process training a shard of each batch needs
 * less), and the Adam optimizer, with the options applied. The KL warm-up's
 * epochs become steps of o->batch images. On failure the caller still
 * destroys *m and *opt.
 */
int tc_setup(const struct tc_options *o, const cvae_dataset *train, int max_batch, cvae_model **m,
             cvae_optimizer **opt);

/* ceil(count / batch): an epoch's steps, the last batch smaller. */
int tc_steps_per_epoch(const cvae_dataset *train, int batch);

/* Where training goes on after the model's steps: the 0-based epoch and its
 * first batch not trained. */
void tc_start_point(const cvae_model *m, int steps_per_epoch, int *epoch, int *first);

/* Saves the checkpoint and starts the CSV log, so that an output that cannot
 * be written fails now, not after an hour of training. */
int tc_prepare_outputs(cvae_model *m, cvae_optimizer *opt, const struct tc_options *o);

/* The lines before training: the data and the model, and where a resumed
 * run goes on. */
void tc_print_start(const struct tc_options *o, const cvae_dataset *train, const cvae_dataset *test,
                    const cvae_model *m, int epoch, int first, int steps_per_epoch);

/* Sets the learning rate of the step after `steps` steps from --lr,
 * --lr-warmup and --lr-decay; leaves it alone when neither is given. */
int tc_schedule_lr(cvae_optimizer *opt, const struct tc_options *o, uint64_t steps,
                   int steps_per_epoch);

/* Ctrl-C: the first one raises a flag that tc_interrupted() returns, for
 * the training loop to look at after every step; a second one ends the
 * program at once. */
int tc_catch_sigint(void);
int tc_interrupted(void);

/* The line "epoch 3/10  45%  4321 img/s  loss 118.42  ETA 0:07" redrawn on
 * stderr, at most ten times a second. tc_progress_start sets `on` when
 * stderr is a terminal; a caller may clear it to stay silent. */
struct tc_progress {
    int on;
    double start, last_draw;
};
void tc_progress_start(struct tc_progress *p);
void tc_progress_draw(struct tc_progress *p, int epoch, int epochs, long done, long total,
                      long images, double loss_sum);
void tc_progress_clear(const struct tc_progress *p);

/* Images in batch b of an epoch of count images: --batch, the last fewer. */
int tc_batch_images(const struct tc_options *o, int count, int b);

/* After an epoch's steps: r's loss sums (weighted by batch size) become
 * means over the images trained, and its seconds and images per second
 * are measured from p's start. */
void tc_end_training(struct tc_epoch_result *r, long images, const struct tc_progress *p);

/*
 * After an epoch's training, whose train figures r holds: evaluates the test
 * set, sets r->seconds to the time since t0 (ex_now), prints the epoch's
 * line, appends r to hist (room for one more; *nhist counts), then saves the
 * checkpoint, the log line and the chart.
 */
int tc_finish_epoch(cvae_model *m, cvae_optimizer *opt, const cvae_dataset *test,
                    const struct tc_options *o, double t0, struct tc_epoch_result *r,
                    struct tc_epoch_result *hist, int *nhist);

/* The last lines: the checkpoint's name and the final loss, the last
 * epoch's or, when this run trained none, measured now. */
int tc_print_final(cvae_model *m, const struct tc_options *o, const cvae_dataset *train,
                   const cvae_dataset *test, const struct tc_epoch_result *hist, int nhist);

/* The parts of tc_finish_epoch, for a trainer that needs them apart. */
void tc_print_epoch(const struct tc_epoch_result *r, int epochs);
int tc_log_start(const char *path);
int tc_log_append(const char *path, const struct tc_epoch_result *r);
int tc_write_plot(const char *path, const struct tc_epoch_result *h, int n);

/* After Ctrl-C: saves OUT.interrupted with the optimizer, says how to
 * resume, and returns 130 (1 when the save fails). */
int tc_save_interrupted(cvae_model *m, cvae_optimizer *opt, const char *out);

/* Puts the optimizer's running average into the model's parameters
 * (averaged = 1: to evaluate and save) or the training weights back
 * (averaged = 0: to train). Nothing to do when there is no average. Returns
 * 0 or prints the error and returns 1. */
int tc_use_weights(cvae_model *m, cvae_optimizer *opt, int averaged);

#endif /* TRAIN_CLI_H */
