/*
 * train_cli.c - the parts of cvae-train that do not train (train_cli.h): the
 * options and --help, data, model and optimizer, the learning rate's
 * schedule, Ctrl-C, the progress line, the printed lines, the CSV log, the
 * SVG chart and the checkpoints. The batches themselves are the caller's.
 */
#define _POSIX_C_SOURCE 200809L

#include "train_cli.h"

#include "example_util.h"
#include "tune.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <unistd.h>


/* The KL weight of --conditional without --beta: with 1 the latent code
 * also learns the digit and the samples drawn for a label often show
 * another (docs/EVALUATION.md). */
#define CONDITIONAL_BETA 4.0

/* ------------------------------------------------------------ options */

void tc_defaults(struct tc_options *o)
{
    memset(o, 0, sizeof *o);
    o->out = "cvae-model.bin";
    o->epochs = 10;
    o->batch = 128;
    o->latent = 16;
    o->lr = 1e-3;
    o->average = TC_DEFAULT_AVERAGE;
    o->beta = 1;
    o->likelihood = -1;
    o->kl_warmup_epochs = -1; /* the recipe: the model's own */
    o->data_init = -1;
    o->logvar_init = 1;
    o->seed = 1;
}

void tc_usage(FILE *f, const char *prog, const char *extra_options, const char *extra_notes)
{
    fprintf(f, "usage: %s --data DIR [options]\n", prog);
    fprintf(f, "\n"
               "Trains the built-in convolutional VAE on the training images in DIR with\n"
               "Adam, testing on its test images when there are any. For MNIST: the files\n"
               "train-images-idx3-ubyte, train-labels-idx1-ubyte and, optionally,\n"
               "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, uncompressed.\n"
               "\n"
               "  --data DIR       data directory (required; `make data` makes data/mnist)\n"
               EX_FORMAT_HELP
               "  --epochs N       train until N epochs in total are done (default 10)\n"
               "  --batch B        images per step (default 128)\n"
               "  --lr X           Adam learning rate (default 1e-3)\n"
               "  --weight-decay W decoupled weight decay (AdamW), >= 0 (default 0)\n"
               "  --average D      test and save a running average of the weights with\n"
               "                   decay D in [0, 1), 0: the last weights (default 0.99;\n"
               "                   docs/EVALUATION.md)\n"
               "  --latent L       latent dimensions (default 16)\n"
               "  --width N        channels of the first convolution, the second has 2N\n"
               "                   (default 32)\n"
               "  --hidden N       width of the hidden linear layers (default 256 for images\n"
               "                   of up to 1,024 values, 512 above)\n"
               "  --likelihood K   bernoulli (default: binary cross-entropy) or gaussian\n"
               "                   (squared error; for colour photographs)\n"
               "  --sigma S        gaussian: the pixels' standard deviation (default 0.1),\n"
               "                   0 to learn it\n"
               "  --beta B         weight of the KL term in the training loss (default 1)\n"
               "  --seed S         seed of initialisation and shuffling (default 1)\n"
               "  --config FILE    lr, batch, latent, beta, width and hidden from a file of\n"
               "                   `key = value` lines, as cvae-tune writes (OUT/best.cfg);\n"
               "                   options given on the command line win\n"
               "  --threads N      threads to train on (default 0: OMP_NUM_THREADS when set,\n"
               "                   else all cores); results are the same for any N\n"
               "  --conditional    a conditional VAE: the image's label joins the encoder's\n"
               "                   features and the decoder (cvae-generate --digit); its\n"
               "                   --beta defaults to 4 and its --logvar-init to 0, with\n"
               "                   which the samples drawn for a digit show that digit (97 %%\n"
               "                   of them after 10 epochs; docs/EVALUATION.md)\n"
               "  --kl-warmup E    epochs (a decimal) over which the KL term's weight rises\n"
               "                   linearly from 0 to --beta (default 0: none)\n"
               "  --data-init 0|1  1: the first step starts the decoder's output at the\n"
               "                   training batch's mean pixel (default 1)\n"
               "  --logvar-init V  initial bias of the encoder's log-variances, in [-20, 0];\n"
               "                   0 keeps the layer's own initialisation (default -4)\n"
               "  --recipe pytorch the plain recipe of PyTorch's VAE examples: no KL warm-up,\n"
               "                   no data init, no log-variance init (the three above 0),\n"
               "                   --average 0\n"
               "  --lr-warmup E    epochs of linear learning-rate warm-up (default 0)\n"
               "  --lr-decay K     none (default) or cosine: the learning rate falls to 0 at\n"
               "                   --epochs (measured worse on MNIST: docs/EVALUATION.md)\n"
               );
    fprintf(f, "  --binarize       dynamic binarisation: every step draws each pixel as 0 or 1\n"
               "                   with its intensity as probability (the test loss then is\n"
               "                   on binarised test digits, as in the literature)\n"
               "  --out FILE       checkpoint written after every epoch (default cvae-model.bin)\n"
               "  --resume FILE    continue training from a checkpoint\n"
               "  --log FILE.csv   append each epoch's figures to a CSV file\n"
               "  --plot FILE.svg  rewrite an SVG chart of the losses after every epoch\n"
               );
    if (extra_options)
        fputs(extra_options, f);
    fprintf(f, "  --help           this text\n"
               "  --version        program and library version\n"
               "\n"
               "Every epoch shuffles the training set with seed S + epoch and takes\n"
               "ceil(count / B) batches in order, the last one smaller (as PyTorch's\n"
               "DataLoader). The losses printed are the negative ELBO, recon + kl, in nats\n"
               "per image, whatever --beta is: train is the mean over the epoch's steps\n"
               "(those after the resume point, in a resumed epoch), with the weights as\n"
               "they trained; test the loss on the t10k images after the epoch, with fixed\n"
               "noise, of the running average (--average) that the checkpoint holds.\n"
               "\n"
               "Resuming: the checkpoint holds the model, the optimizer and the step count,\n"
               "and training continues at the same epoch and batch; with the same --data,\n"
               "--batch and --seed the result is bit-for-bit that of an uninterrupted run.\n"
               "The checkpoint's latent size and conditioning are kept; its --lr, --beta,\n"
               "--average and recipe (--kl-warmup, --data-init, --logvar-init) are kept unless\n"
               "given again; the model in a checkpoint is the running average (the weights\n"
               "training goes on from are kept with the optimizer's state);\n"
               "--binarize, --lr-warmup and --lr-decay are not saved: give them again.\n"
               "Ctrl-C finishes the current step, saves OUT.interrupted and exits with\n"
               "status 130; a second Ctrl-C quits at once without saving.\n"
               "The chart shows the epochs of the current run.\n");
    if (extra_notes) {
        fputc('\n', f);
        fputs(extra_notes, f);
    }
}

void tc_parse_options(int argc, char **argv, void (*usage)(FILE *), tc_extra_option extra,
                      void *ctx, struct tc_options *o)
{
    const char *v;
    int i;

    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--data", &v))
            o->data = v;
        else if (ex_option(argc, argv, &i, "--epochs", &v))
            o->epochs = (int)ex_parse_long("--epochs", v, 1, 1000000);
        else if (ex_option(argc, argv, &i, "--batch", &v))
            o->batch = (int)ex_parse_long("--batch", v, 1, 65536), o->batch_set = 1;
        else if (ex_option(argc, argv, &i, "--lr", &v)) {
            o->lr = ex_parse_double("--lr", v, 1e-12, 10);
            o->lr_set = 1;
        } else if (ex_option(argc, argv, &i, "--weight-decay", &v)) {
            o->weight_decay = ex_parse_double("--weight-decay", v, 0, 10);
            o->weight_decay_set = 1;
        } else if (ex_option(argc, argv, &i, "--average", &v)) {
            o->average = ex_parse_double("--average", v, 0, 0.999999);
            o->average_set = 1;
        } else if (ex_option(argc, argv, &i, "--latent", &v))
            o->latent = (int)ex_parse_long("--latent", v, 1, 4096), o->latent_set = 1;
        else if (ex_option(argc, argv, &i, "--format", &v))
            o->format = ex_parse_format("--format", v);
        else if (ex_option(argc, argv, &i, "--config", &v))
            o->config = v;
        else if (ex_option(argc, argv, &i, "--width", &v))
            o->width = (int)ex_parse_long("--width", v, 1, 4096);
        else if (ex_option(argc, argv, &i, "--hidden", &v))
            o->hidden = (int)ex_parse_long("--hidden", v, 1, 65536);
        else if (ex_option(argc, argv, &i, "--likelihood", &v)) {
            if (!strcmp(v, "bernoulli"))
                o->likelihood = CVAE_LIKELIHOOD_BERNOULLI;
            else if (!strcmp(v, "gaussian"))
                o->likelihood = CVAE_LIKELIHOOD_GAUSSIAN;
            else
                ex_usage_error("--likelihood wants bernoulli or gaussian, not '%s'", v);
        } else if (ex_option(argc, argv, &i, "--sigma", &v)) {
            o->sigma = ex_parse_double("--sigma", v, 0, 10);
            if (o->sigma != 0 && o->sigma < 1e-4)
                ex_usage_error("--sigma wants 0 (learned) or a value in [1e-4, 10], not '%s'", v);
            o->sigma_set = 1;
        } else if (ex_option(argc, argv, &i, "--beta", &v)) {
            o->beta = ex_parse_double("--beta", v, 0, 1e6);
            o->beta_set = 1;
        } else if (ex_option(argc, argv, &i, "--kl-warmup", &v)) {
            o->kl_warmup_epochs = ex_parse_double("--kl-warmup", v, 0, 1e6);
        } else if (ex_option(argc, argv, &i, "--data-init", &v)) {
            o->data_init = (int)ex_parse_long("--data-init", v, 0, 1);
        } else if (ex_option(argc, argv, &i, "--logvar-init", &v)) {
            o->logvar_init = ex_parse_double("--logvar-init", v, -20, 0);
        } else if (ex_option(argc, argv, &i, "--lr-warmup", &v)) {
            o->lr_warmup_epochs = ex_parse_double("--lr-warmup", v, 0, 1e6);
        } else if (ex_option(argc, argv, &i, "--lr-decay", &v)) {
            if (strcmp(v, "cosine") == 0)
                o->lr_decay = 1;
            else if (strcmp(v, "none") == 0)
                o->lr_decay = 0;
            else
                ex_usage_error("--lr-decay wants cosine or none, not '%s'", v);
        } else if (ex_option(argc, argv, &i, "--recipe", &v)) {
            if (strcmp(v, "pytorch") != 0)
                ex_usage_error("--recipe wants pytorch, not '%s'", v);
            o->kl_warmup_epochs = 0;
            o->data_init = 0;
            o->logvar_init = 0;
            o->average = 0;
            o->average_set = 1;
        } else if (ex_option(argc, argv, &i, "--seed", &v))
            o->seed = ex_parse_u64("--seed", v);
        else if (ex_option(argc, argv, &i, "--threads", &v))
            o->threads = (int)ex_parse_long("--threads", v, 0, 256);
        else if (ex_flag(argv[i], "--conditional"))
            o->conditional = 1;
        else if (ex_flag(argv[i], "--binarize"))
            o->binarize = 1;
        else if (ex_option(argc, argv, &i, "--out", &v))
            o->out = v;
        else if (ex_option(argc, argv, &i, "--resume", &v))
            o->resume = v;
        else if (ex_option(argc, argv, &i, "--log", &v))
            o->log = v;
        else if (ex_option(argc, argv, &i, "--plot", &v))
            o->plot = v;
        else if (!extra || !extra(argc, argv, &i, ctx))
            ex_unknown_option(argv[i]);
    }
    if (!o->data)
        ex_usage_error("--data DIR is required (try --help)");
}

/* --config FILE (from cvae-tune): its values for the options the command
 * line did not give. Fields start at 0 (-1 for beta, which may be 0), so the
 * keys the file leaves out keep the program's defaults. */
int tc_apply_config(struct tc_options *o)
{
    tune_config cfg = {0.0, 0, 0, -1.0, 0, 0};
    char err[512] = "";
    if (tune_config_read(o->config, &cfg, err, sizeof err) != TUNE_OK)
        return ex_error("--config: %s", err);
    if (cfg.lr > 0 && !o->lr_set)
        o->lr = cfg.lr, o->lr_set = 1;
    if (cfg.beta >= 0 && !o->beta_set)
        o->beta = cfg.beta, o->beta_set = 1;
    if (cfg.batch > 0 && !o->batch_set)
        o->batch = cfg.batch;
    if (cfg.latent > 0 && !o->latent_set)
        o->latent = cfg.latent;
    if (cfg.width > 0 && !o->width)
        o->width = cfg.width;
    if (cfg.hidden > 0 && !o->hidden)
        o->hidden = cfg.hidden;
    return 0;
}

/* ---------------------------------------------------- data and model */

/* Labels are loaded for a conditional model, new or resumed: a resumed
 * checkpoint says itself whether it is one. */
int tc_load_data(const struct tc_options *o, cvae_dataset **train, cvae_dataset **test)
{
    int labelled = o->conditional;
    double classes = 0;

    *train = *test = NULL;
    if (o->resume && !labelled) {
        cvae_model *peek = NULL;
        if (ex_load_model(o->resume, 1, &peek) != CVAE_OK)
            return 1;
        cvae_model_get(peek, CVAE_MODEL_CLASSES, &classes);
        labelled = classes > 0;
        cvae_model_destroy(peek);
    }
    if (ex_load_data(o->format, o->data, "train", labelled, train) != CVAE_OK)
        return 1;
    if (!ex_data_present(o->format, o->data, "t10k"))
        fprintf(stderr, "%s: note: no test images in %s (%s), so no test loss\n", ex_prog, o->data,
                ex_format_name(o->format));
    else if (ex_load_data(o->format, o->data, "t10k", labelled, test) != CVAE_OK) {
        cvae_dataset_destroy(*train);
        *train = NULL;
        return 1;
    }
    return 0;
}

int tc_setup(const struct tc_options *o, const cvae_dataset *train, int max_batch, cvae_model **m,
             cvae_optimizer **opt)
{
    double beta = o->beta, logvar;
    int c, h, w, mc, mh, mw;
    cvae_status st;

    cvae_dataset_shape(train, &c, &h, &w);
    if (o->resume) {
        if (ex_load_model(o->resume, max_batch, m) != CVAE_OK)
            return 1;
        cvae_model_shape(*m, &mc, &mh, &mw, NULL, NULL);
        if (mc != c || mh != h || mw != w)
            return ex_error("%s: model is for %dx%dx%d images, the data are %dx%dx%d", o->resume,
                            mc, mh, mw, c, h, w);
    } else {
        if ((st = cvae_model_create(m)) != CVAE_OK)
            return ex_status_error("creating the model", st, "");
        if (o->conditional && (st = cvae_model_set(*m, CVAE_MODEL_CLASSES, 10)) != CVAE_OK)
            return ex_status_error("--conditional", st, cvae_model_last_error(*m));
        if (o->width && (st = cvae_model_set(*m, CVAE_MODEL_WIDTH, o->width)) != CVAE_OK)
            return ex_status_error("--width", st, cvae_model_last_error(*m));
        if (o->hidden && (st = cvae_model_set(*m, CVAE_MODEL_HIDDEN, o->hidden)) != CVAE_OK)
            return ex_status_error("--hidden", st, cvae_model_last_error(*m));
        /* --conditional without --logvar-init: the layer's own initialisation
         * (see --help). */
        logvar = o->logvar_init <= 0 ? o->logvar_init : o->conditional ? 0.0 : 1.0;
        if (logvar <= 0 && (st = cvae_model_set(*m, CVAE_MODEL_LOGVAR_INIT, logvar)) != CVAE_OK)
            return ex_status_error("--logvar-init", st, cvae_model_last_error(*m));
        if ((st = cvae_model_init_preset(*m, c, h, w, o->latent, max_batch, o->seed)) != CVAE_OK)
            return ex_status_error("building the model", st, cvae_model_last_error(*m));
    }
    if ((st = cvae_model_set(*m, CVAE_MODEL_THREADS, o->threads)) != CVAE_OK)
        return ex_status_error("--threads", st, cvae_model_last_error(*m));
    if ((st = cvae_model_set(*m, CVAE_MODEL_BINARIZE, o->binarize)) != CVAE_OK)
        return ex_status_error("--binarize", st, cvae_model_last_error(*m));
    if (o->likelihood >= 0 &&
        (st = cvae_model_set(*m, CVAE_MODEL_LIKELIHOOD, o->likelihood)) != CVAE_OK)
        return ex_status_error("--likelihood", st, cvae_model_last_error(*m));
    if (o->sigma_set && (st = cvae_model_set(*m, CVAE_MODEL_SIGMA, o->sigma)) != CVAE_OK)
        return ex_status_error("--sigma", st, cvae_model_last_error(*m));
    if (!o->resume && !o->beta_set && o->conditional) /* see --help */
        beta = CONDITIONAL_BETA;
    if ((!o->resume || o->beta_set) &&
        (st = cvae_model_set(*m, CVAE_MODEL_BETA, beta)) != CVAE_OK)
        return ex_status_error("--beta", st, cvae_model_last_error(*m));
    if (o->kl_warmup_epochs >= 0) { /* epochs to steps: ceil(count / batch) steps an epoch */
        double steps = floor(o->kl_warmup_epochs * tc_steps_per_epoch(train, o->batch) + 0.5);
        if ((st = cvae_model_set(*m, CVAE_MODEL_KL_WARMUP, steps)) != CVAE_OK)
            return ex_status_error("--kl-warmup", st, cvae_model_last_error(*m));
    }
    if (o->data_init >= 0 &&
        (st = cvae_model_set(*m, CVAE_MODEL_DATA_INIT, o->data_init)) != CVAE_OK)
        return ex_status_error("--data-init", st, cvae_model_last_error(*m));

    st = cvae_optimizer_create(opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(*m));
    if (st != CVAE_OK)
        return ex_status_error("creating the optimizer", st, "");
    if (o->resume && (st = cvae_optimizer_load(*opt, o->resume)) != CVAE_OK)
        return ex_status_error("loading the optimizer state", st, cvae_optimizer_last_error(*opt));
    if ((!o->resume || o->lr_set) && (st = cvae_optimizer_set(*opt, CVAE_OPT_LR, o->lr)) != CVAE_OK)
        return ex_status_error("--lr", st, cvae_optimizer_last_error(*opt));
    if ((!o->resume || o->weight_decay_set) &&
        (st = cvae_optimizer_set(*opt, CVAE_OPT_WEIGHT_DECAY, o->weight_decay)) != CVAE_OK)
        return ex_status_error("--weight-decay", st, cvae_optimizer_last_error(*opt));
    if ((!o->resume || o->average_set) &&
        (st = cvae_optimizer_set(*opt, CVAE_OPT_AVERAGE, o->average)) != CVAE_OK)
        return ex_status_error("--average", st, cvae_optimizer_last_error(*opt));
    /* A checkpoint holds the average in the model: train on the weights. */
    return tc_use_weights(*m, *opt, 0);
}

int tc_use_weights(cvae_model *m, cvae_optimizer *opt, int averaged)
{
    double decay = 0;
    size_t n;
    float *p;
    cvae_status st;
    if (cvae_optimizer_average_swapped(opt) == averaged)
        return 0;
    cvae_optimizer_get(opt, CVAE_OPT_AVERAGE, &decay);
    if (averaged && decay <= 0) /* no average kept: the weights are the model */
        return 0;
    p = cvae_model_params(m, &n);
    st = cvae_optimizer_swap_average(opt, p, n);
    if (st == CVAE_ERR_STATE && averaged) /* nothing averaged yet: no step was taken */
        return 0;
    if (st != CVAE_OK)
        return ex_status_error("swapping the running average", st,
                               cvae_optimizer_last_error(opt));
    return 0;
}

int tc_steps_per_epoch(const cvae_dataset *train, int batch)
{
    return (cvae_dataset_count(train) + batch - 1) / batch;
}

void tc_start_point(const cvae_model *m, int steps_per_epoch, int *epoch, int *first)
{
    *epoch = (int)(cvae_model_steps(m) / (uint64_t)steps_per_epoch);
    *first = (int)(cvae_model_steps(m) % (uint64_t)steps_per_epoch);
}

int tc_prepare_outputs(cvae_model *m, cvae_optimizer *opt, const struct tc_options *o)
{
    cvae_status st;

    /* Saved as every checkpoint, with the average in the model: a resumed
     * run rewrites its file with the same bytes. */
    if (tc_use_weights(m, opt, 1) != 0)
        return 1;
    if ((st = cvae_model_save(m, opt, o->out)) != CVAE_OK)
        return ex_status_error("saving", st, cvae_model_last_error(m));
    if (tc_use_weights(m, opt, 0) != 0)
        return 1;
    if (o->log && tc_log_start(o->log) != 0)
        return 1;
    return 0;
}

void tc_print_start(const struct tc_options *o, const cvae_dataset *train, const cvae_dataset *test,
                    const cvae_model *m, int epoch, int first, int steps_per_epoch)
{
    int c, h, w, latent;
    double classes = 0;

    cvae_model_shape(m, &c, &h, &w, &latent, NULL);
    cvae_model_get(m, CVAE_MODEL_CLASSES, &classes);
    printf("%d training images of %dx%dx%d", cvae_dataset_count(train), c, h, w);
    if (test)
        printf(", %d test images", cvae_dataset_count(test));
    printf("; latent %d, %zu parameters%s%s\n", latent, cvae_model_param_count(m),
           classes > 0 ? ", conditional on the label" : "", o->binarize ? ", binarised" : "");
    if (o->resume && epoch >= o->epochs)
        printf("%s has done %d epochs already\n", o->resume, epoch);
    else if (o->resume)
        printf("resuming %s at epoch %d, step %d of %d\n", o->resume, epoch + 1, first + 1,
               steps_per_epoch);
    fflush(stdout);
}

/* The rate follows the steps taken, so that a resumed run continues the
 * schedule. */
int tc_schedule_lr(cvae_optimizer *opt, const struct tc_options *o, uint64_t steps,
                   int steps_per_epoch)
{
    double t = (double)steps, total = (double)o->epochs * steps_per_epoch;
    double warm = o->lr_warmup_epochs * steps_per_epoch, f = 1.0;
    cvae_status st;

    if (!o->lr_decay && o->lr_warmup_epochs <= 0)
        return 0;
    if (warm > 0 && t + 1 < warm)
        f = (t + 1) / warm;
    if (o->lr_decay)
        f *= 0.5 * (1.0 + cos(acos(-1.0) * (t < total ? t : total) / total));
    if ((st = cvae_optimizer_set(opt, CVAE_OPT_LR, o->lr * f)) != CVAE_OK)
        return ex_status_error("the learning rate's schedule", st, cvae_optimizer_last_error(opt));
    return 0;
}

/* ------------------------------------------------------------- Ctrl-C */

/* The handler only raises this flag; the training loop looks at it after
 * every step. SA_RESETHAND restores the default action, so a second Ctrl-C
 * ends the program at once. */
static volatile sig_atomic_t interrupted = 0;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

int tc_catch_sigint(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    if (sigaction(SIGINT, &sa, NULL) != 0)
        return ex_error("cannot catch Ctrl-C: %s", strerror(errno));
    return 0;
}

int tc_interrupted(void)
{
    return interrupted;
}

/* ------------------------------------------------------ progress line */

void tc_progress_start(struct tc_progress *p)
{
    p->on = isatty(fileno(stderr));
    p->start = ex_now();
    p->last_draw = 0;
}

void tc_progress_draw(struct tc_progress *p, int epoch, int epochs, long done, long total,
                      long images, double loss_sum)
{
    double now = ex_now(), rate, eta;

    if (!p->on || now - p->last_draw < 0.1)
        return;
    p->last_draw = now;
    rate = images / (now - p->start > 1e-9 ? now - p->start : 1e-9);
    eta = (double)(total - done) / rate;
    fprintf(stderr, "\repoch %d/%d  %3d%%  %6.0f img/s  loss %8.2f  ETA %d:%02d   ", epoch, epochs,
            (int)(100 * done / total), rate, loss_sum / (double)images, (int)eta / 60,
            (int)eta % 60);
    fflush(stderr);
}

void tc_progress_clear(const struct tc_progress *p)
{
    if (p->on)
        fprintf(stderr, "\r%72s\r", "");
}

int tc_batch_images(const struct tc_options *o, int count, int b)
{
    return count - b * o->batch < o->batch ? count - b * o->batch : o->batch;
}

void tc_end_training(struct tc_epoch_result *r, long images, const struct tc_progress *p)
{
    if (images > 0) {
        r->recon /= (double)images;
        r->kl /= (double)images;
    }
    r->seconds = ex_now() - p->start;
    r->images_per_second = images / (r->seconds > 1e-9 ? r->seconds : 1e-9);
}

/* ------------------------------------------------------------ logging */

int tc_log_start(const char *path)
{
    FILE *f = fopen(path, "a");
    int bad;

    if (!f)
        return ex_error("%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) == 0) /* a new or empty file */
        fprintf(f, "epoch,train_loss,train_recon,train_kl,test_loss,test_recon,test_kl,"
                   "seconds,images_per_second\n");
    bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return ex_error("%s: write failed: %s", path, strerror(errno));
    return 0;
}

int tc_log_append(const char *path, const struct tc_epoch_result *r)
{
    FILE *f = fopen(path, "a");
    int bad;

    if (!f)
        return ex_error("%s: %s", path, strerror(errno));
    fprintf(f, "%d,%.4f,%.4f,%.4f,", r->epoch, r->recon + r->kl, r->recon, r->kl);
    if (r->has_test)
        fprintf(f, "%.4f,%.4f,%.4f,", r->test_recon + r->test_kl, r->test_recon, r->test_kl);
    else
        fprintf(f, ",,,");
    fprintf(f, "%.3f,%.1f\n", r->seconds, r->images_per_second);
    bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return ex_error("%s: write failed: %s", path, strerror(errno));
    return 0;
}

/* ------------------------------------------------------------ SVG chart */

/* 1, 2 or 5 times a power of ten, at least raw: a readable tick step. */
static double nice_step(double raw)
{
    double p = pow(10, floor(log10(raw))), f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/* Plot area in SVG pixels, and the data range it shows. */
struct chart {
    double left, right, top, bottom;
    double x0, x1, y0, y1;
};

static double chart_x(const struct chart *c, double x)
{
    return c->left + (x - c->x0) / (c->x1 - c->x0) * (c->right - c->left);
}

static double chart_y(const struct chart *c, double y)
{
    return c->bottom - (y - c->y0) / (c->y1 - c->y0) * (c->bottom - c->top);
}

/* One loss curve: a polyline through the points with a dot on each. */
static void svg_series(FILE *f, const struct chart *c, const struct tc_epoch_result *h, int n,
                       int test, const char *color)
{
    int i;

    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (i = 0; i < n; i++)
        fprintf(f, "%.1f,%.1f ", chart_x(c, h[i].epoch),
                chart_y(c, test ? h[i].test_recon + h[i].test_kl : h[i].recon + h[i].kl));
    fprintf(f, "\"/>\n");
    for (i = 0; i < n; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                chart_x(c, h[i].epoch),
                chart_y(c, test ? h[i].test_recon + h[i].test_kl : h[i].recon + h[i].kl), color);
}

static void svg_chart(FILE *f, const struct tc_epoch_result *h, int n)
{
    struct chart c = {80, 700, 50, 380, 0, 0, 0, 0};
    double lo = h[0].recon + h[0].kl, hi = lo, xstep, ystep, v;
    int i, has_test = h[0].has_test;

    for (i = 0; i < n; i++) {
        double a = h[i].recon + h[i].kl, b = has_test ? h[i].test_recon + h[i].test_kl : a;
        lo = fmin(lo, fmin(a, b));
        hi = fmax(hi, fmax(a, b));
    }
    if (hi - lo < 1e-6) { /* a flat line still needs a range */
        lo -= 1;
        hi += 1;
    }
    lo -= (hi - lo) / 20; /* a margin, so no point sits on the frame */
    hi += (hi - lo) / 20;
    ystep = nice_step((hi - lo) / 5);
    c.y0 = floor(lo / ystep) * ystep;
    c.y1 = ceil(hi / ystep) * ystep;
    c.x0 = h[0].epoch - (n == 1);
    c.x1 = h[n - 1].epoch + (n == 1);
    xstep = fmax(1, nice_step((c.x1 - c.x0) / 10));

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"440\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"720\" height=\"440\" fill=\"white\"/>\n"
               "<text x=\"390\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">"
               "cvae-train: loss per epoch (negative ELBO)</text>\n");
    for (v = c.y0; v <= c.y1 + ystep / 2; v += ystep) { /* y grid, ticks, labels */
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                c.left, chart_y(&c, v), c.right, chart_y(&c, v));
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", c.left - 6,
                chart_y(&c, v) + 4, v);
    }
    for (v = ceil(c.x0 / xstep) * xstep; v <= c.x1 + xstep / 2; v += xstep) { /* x ticks */
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"black\"/>\n",
                chart_x(&c, v), c.bottom, chart_x(&c, v), c.bottom + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n", chart_x(&c, v),
                c.bottom + 20, v);
    }
    fprintf(f,
            "<path d=\"M%.0f %.0f V%.0f H%.0f\" fill=\"none\" stroke=\"black\"/>\n"
            "<text x=\"390\" y=\"420\" text-anchor=\"middle\">epoch</text>\n"
            "<text transform=\"translate(24 215) rotate(-90)\" text-anchor=\"middle\">"
            "loss (nats per image)</text>\n",
            c.left, c.top, c.bottom, c.right);
    svg_series(f, &c, h, n, 0, "#1f77b4");
    if (has_test)
        svg_series(f, &c, h, n, 1, "#ff7f0e");
    fprintf(f,
            "<rect x=\"570\" y=\"60\" width=\"120\" height=\"%d\" fill=\"white\" "
            "stroke=\"#999\"/>\n"
            "<line x1=\"580\" y1=\"76\" x2=\"605\" y2=\"76\" stroke=\"#1f77b4\" "
            "stroke-width=\"2\"/>\n<text x=\"612\" y=\"80\">train</text>\n",
            has_test ? 46 : 26);
    if (has_test)
        fprintf(f, "<line x1=\"580\" y1=\"96\" x2=\"605\" y2=\"96\" stroke=\"#ff7f0e\" "
                   "stroke-width=\"2\"/>\n<text x=\"612\" y=\"100\">test</text>\n");
    fprintf(f, "</svg>\n");
}

/* Writes the chart to path.tmp, then renames it over path. */
int tc_write_plot(const char *path, const struct tc_epoch_result *h, int n)
{
    char tmp[4096];
    FILE *f;
    int bad;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ex_error("%s: file name too long", path);
    if (!(f = fopen(tmp, "w")))
        return ex_error("%s: %s", tmp, strerror(errno));
    svg_chart(f, h, n);
    bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return ex_error("%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        ex_error("%s: %s", path, strerror(errno));
        remove(tmp);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------- epoch ends */

void tc_print_epoch(const struct tc_epoch_result *r, int epochs)
{
    printf("epoch %d/%d  train %.2f (recon %.2f + kl %.2f)", r->epoch, epochs, r->recon + r->kl,
           r->recon, r->kl);
    if (r->has_test)
        printf("  test %.2f (recon %.2f + kl %.2f)", r->test_recon + r->test_kl, r->test_recon,
               r->test_kl);
    printf("  %.1f s  %.0f img/s\n", r->seconds, r->images_per_second);
    fflush(stdout);
}

int tc_finish_epoch(cvae_model *m, cvae_optimizer *opt, const cvae_dataset *test,
                    const struct tc_options *o, double t0, struct tc_epoch_result *r,
                    struct tc_epoch_result *hist, int *nhist)
{
    cvae_status st;

    /* The running average is what is tested and saved (the checkpoint keeps
     * the training weights in the optimizer's state). */
    if (tc_use_weights(m, opt, 1) != 0)
        return 1;
    if (test) {
        r->has_test = 1;
        st = cvae_model_evaluate(m, test, TC_TEST_EPS_SEED, &r->test_recon, &r->test_kl, NULL);
        if (st != CVAE_OK)
            return ex_status_error("evaluating the test set", st, cvae_model_last_error(m));
    }
    r->seconds = ex_now() - t0; /* the whole epoch, test included; img/s is training only */
    tc_print_epoch(r, o->epochs);
    hist[(*nhist)++] = *r;
    if ((st = cvae_model_save(m, opt, o->out)) != CVAE_OK)
        return ex_status_error("saving", st, cvae_model_last_error(m));
    if (tc_use_weights(m, opt, 0) != 0)
        return 1;
    if (o->log && tc_log_append(o->log, r) != 0)
        return 1;
    if (o->plot && tc_write_plot(o->plot, hist, *nhist) != 0)
        return 1;
    return 0;
}

/* This process's peak resident memory in MB (10^6 bytes), or -1. */
static double peak_memory_mb(void)
{
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0)
        return -1.0;
#ifdef __APPLE__
    return (double)u.ru_maxrss / 1e6; /* bytes there, KiB on Linux and the BSDs */
#else
    return (double)u.ru_maxrss * 1024.0 / 1e6;
#endif
}

int tc_print_final(cvae_model *m, const struct tc_options *o, const cvae_dataset *train,
                   const cvae_dataset *test, const struct tc_epoch_result *hist, int nhist)
{
    double peak;
    struct tc_epoch_result last;
    cvae_status st;

    if (nhist > 0) {
        last = hist[nhist - 1];
    } else { /* nothing left to train: measure the model as it is */
        memset(&last, 0, sizeof last);
        last.has_test = test != NULL;
        st = cvae_model_evaluate(m, test ? test : train, TC_TEST_EPS_SEED,
                                 test ? &last.test_recon : &last.recon,
                                 test ? &last.test_kl : &last.kl, NULL);
        if (st != CVAE_OK)
            return ex_status_error("evaluating", st, cvae_model_last_error(m));
    }
    printf("saved %s\n", o->out);
    if (last.has_test)
        printf("final test loss %.2f nats (recon %.2f + kl %.2f)\n", last.test_recon + last.test_kl,
               last.test_recon, last.test_kl);
    else
        printf("final train loss %.2f nats (recon %.2f + kl %.2f)\n", last.recon + last.kl,
               last.recon, last.kl);
    if ((peak = peak_memory_mb()) > 0.0)
        printf("peak memory %.1f MB (resident, this process)\n", peak);
    return 0;
}

/* Ctrl-C: saves OUT.interrupted with the optimizer and says how to resume. */
int tc_save_interrupted(cvae_model *m, cvae_optimizer *opt, const char *out)
{
    char path[4096];
    cvae_status st;

    if (snprintf(path, sizeof path, "%s.interrupted", out) >= (int)sizeof path)
        return ex_error("%s: file name too long", out);
    if (tc_use_weights(m, opt, 1) != 0)
        return 1;
    if ((st = cvae_model_save(m, opt, path)) != CVAE_OK)
        return ex_status_error("saving the interrupted run", st, cvae_model_last_error(m));
    fprintf(stderr,
            "%s: interrupted after step %llu; saved %s\n"
            "%s: continue with the same options plus --resume %s\n",
            ex_prog, (unsigned long long)cvae_model_steps(m), path, ex_prog, path);
    return 130;
}
