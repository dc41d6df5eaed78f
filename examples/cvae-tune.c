/*
 * cvae-tune - searches the preset VAE's hyperparameters (learning rate,
 * batch, latent size, beta, width, hidden size) by successive halving:
 * many trials train a little, the best third trains longer, and so on, and
 * the winner's settings and model are written out for cvae-train --config.
 *
 * The search itself is examples/common/tune.c; this program trains and
 * measures one trial at a time through its callback: a model and optimizer
 * made or reloaded, trained exactly as cvae-train trains, measured on a
 * validation split carved from the training images (never the test set),
 * and saved between rungs, so only one model is in memory at a time.
 */
#define _POSIX_C_SOURCE 200809L

#include <cvae.h>

#include "datasets.h"
#include "example_util.h"
#include "tune.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

/* eps seed of every validation figure, so trials compare on the same draws. */
#define VAL_EPS_SEED 12345
#define PATH_CHARS 4096

struct options {
    const char *data, *out, *space;
    ex_format format;
    double seconds; /* --budget; 0 when --trials */
    int trials;     /* --trials; 0 when --budget */
    uint64_t seed;
    int validation, threads, eta, rungs, max_epochs;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cvae-tune --data DIR (--budget SECONDS | --trials N) [options]\n"
            "\n"
            "Searches the built-in VAE's learning rate, batch, latent size, beta, width\n"
            "and hidden size by successive halving on the training images in DIR (never\n"
            "the test images), then writes the winner's settings and model.\n"
            "\n"
            "  --data DIR        data directory (required; `make data` makes data/mnist)\n"
            "  --format F        data format: idx (default; MNIST's files), cifar10 (the\n"
            "                    CIFAR-10 binary batches) or pnm (a folder of PGM/PPM images)\n"
            "  --budget SECONDS  time to spend: the number of trials is chosen from the\n"
            "                    first trials' speed (also 90s, 15m, 2h)\n"
            "  --trials N        exactly N trials instead (reproducible, bit for bit)\n"
            "  --seed S          seed of the trials, the validation split, initialisation\n"
            "                    and shuffling (default 1)\n"
            "  --out DIR         where trial checkpoints, best.cfg and best.cvae go\n"
            "                    (default tune-out; created if missing)\n"
            "  --space FILE      overrides parts of the search space (docs/TUNING.md)\n"
            "  --validation N    training images held out to measure trials (default 1000)\n"
            "  --max-epochs E    epochs of the last rung (default 10)\n"
            "  --eta E           each rung keeps the best 1/E of its trials (default 3)\n"
            "  --rungs K         rungs of the schedule (default 3: E/9, E/3 and E epochs\n"
            "                    with eta 3)\n"
            "  --threads N       threads per trial (default 0: all cores); same results\n"
            "  --help            this text\n"
            "  --version         program and library version\n"
            "\n"
            "Default space: lr log-uniform in [3e-4, 5e-3], batch 32/64/128/256, latent\n"
            "8/16/24/32, beta uniform in [0.5, 1.5], width 16/32/48, hidden\n"
            "128/256/384/512. Budgets count training images seen; a rung ends after the\n"
            "first batch that reaches its budget. Each trial trains as cvae-train does\n"
            "(epoch e shuffled with seed S + e, batches in order, the last one smaller)\n"
            "and is measured by the validation loss (the negative ELBO, beta = 1, fixed\n"
            "noise). Trials that go on are saved to OUT/trial-NNN.cvae between rungs;\n"
            "dropped trials' files are removed. At the end OUT/best.cfg holds the\n"
            "winner's settings and OUT/best.cvae its model, and the command to retrain\n"
            "it with cvae-train is printed.\n");
}

static void parse_options(int argc, char **argv, struct options *o)
{
    char err[256];
    const char *v;
    int i;

    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--data", &v))
            o->data = v;
        else if (ex_option(argc, argv, &i, "--format", &v))
            o->format = ex_parse_format("--format", v);
        else if (ex_option(argc, argv, &i, "--budget", &v)) {
            if (tune_parse_seconds(v, &o->seconds, err, sizeof err) != TUNE_OK)
                ex_usage_error("--budget: %s", err);
        } else if (ex_option(argc, argv, &i, "--trials", &v))
            o->trials = (int)ex_parse_long("--trials", v, 1, 10000);
        else if (ex_option(argc, argv, &i, "--seed", &v))
            o->seed = ex_parse_u64("--seed", v);
        else if (ex_option(argc, argv, &i, "--out", &v))
            o->out = v;
        else if (ex_option(argc, argv, &i, "--space", &v))
            o->space = v;
        else if (ex_option(argc, argv, &i, "--validation", &v))
            o->validation = (int)ex_parse_long("--validation", v, 1, 1000000);
        else if (ex_option(argc, argv, &i, "--max-epochs", &v))
            o->max_epochs = (int)ex_parse_long("--max-epochs", v, 1, 100000);
        else if (ex_option(argc, argv, &i, "--eta", &v))
            o->eta = (int)ex_parse_long("--eta", v, 2, 100);
        else if (ex_option(argc, argv, &i, "--rungs", &v))
            o->rungs = (int)ex_parse_long("--rungs", v, 1, TUNE_MAX_RUNGS);
        else if (ex_option(argc, argv, &i, "--threads", &v))
            o->threads = (int)ex_parse_long("--threads", v, 0, 256);
        else
            ex_unknown_option(argv[i]);
    }
    if (!o->data)
        ex_usage_error("--data DIR is required (try --help)");
    if ((o->seconds > 0) == (o->trials > 0))
        ex_usage_error("give either --budget SECONDS or --trials N (try --help)");
}

/* ------------------------------------------------------------- helpers */

/* The images to tune on: the training split of DIR, without labels. */
static cvae_status load_images(const struct options *o, cvae_dataset **out)
{
    return ex_load_data(o->format, o->data, "train", 0, out);
}

/* mkdir -p: creates dir and its missing parents. Returns 0 or an exit status. */
static int make_dir(const char *dir)
{
    char path[PATH_CHARS];
    struct stat sb;
    size_t i, len = strlen(dir);

    if (len == 0 || len >= sizeof path)
        return ex_error("--out: bad directory name '%s'", dir);
    memcpy(path, dir, len + 1);
    for (i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return ex_error("%s: %s", path, strerror(errno));
        path[i] = dir[i];
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ex_error("%s: not a directory", dir);
    return 0;
}

/* Prints s for a POSIX shell: as is when it holds only safe characters,
 * else in single quotes. */
static void print_shell_word(const char *s)
{
    const char *p;

    if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-+=:,@%") ==
                  strlen(s)) {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (p = s; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*p);
    }
    putchar('\'');
}

/* ------------------------------------------------------------- trials */

/* Everything the callbacks need. */
struct tuner {
    const struct options *o;
    cvae_dataset *train, *val;
    int count; /* training images */
    int channels, height, width;
    char failure[512]; /* why the latest failed trial failed */
};

static void trial_path(const struct tuner *t, int trial, char *path, size_t size)
{
    snprintf(path, size, "%s/trial-%03d.cvae", t->o->out, trial);
}

/* Why a call failed, for the leaderboard or the final message. */
static void note(struct tuner *t, const char *what, cvae_status st, const char *detail)
{
    snprintf(t->failure, sizeof t->failure, "%s: %s%s%s", what, cvae_status_string(st),
             detail && *detail ? ": " : "", detail && *detail ? detail : "");
}

/* A new trial: the preset with the config's sizes, beta and Adam's lr.
 * Running out of memory for a large config fails the trial; anything else
 * stops the search. */
static int new_trial(struct tuner *t, const tune_config *cfg, cvae_model **m,
                     cvae_optimizer **opt)
{
    cvae_status st;

    if ((st = cvae_model_create(m)) != CVAE_OK) {
        note(t, "creating a model", st, "");
        return TUNE_TRIAL_ABORT;
    }
    if ((st = cvae_model_set(*m, CVAE_MODEL_WIDTH, cfg->width)) != CVAE_OK) {
        note(t, "setting the width", st, cvae_model_last_error(*m));
        return TUNE_TRIAL_ABORT;
    }
    if ((st = cvae_model_set(*m, CVAE_MODEL_HIDDEN, cfg->hidden)) != CVAE_OK) {
        note(t, "setting the hidden size", st, cvae_model_last_error(*m));
        return TUNE_TRIAL_ABORT;
    }
    st = cvae_model_init_preset(*m, t->channels, t->height, t->width, cfg->latent, cfg->batch,
                                t->o->seed);
    if (st != CVAE_OK) {
        note(t, "building the model", st, cvae_model_last_error(*m));
        return st == CVAE_ERR_NOMEM || st == CVAE_ERR_TOO_LARGE ? TUNE_TRIAL_FAILED
                                                                : TUNE_TRIAL_ABORT;
    }
    if ((st = cvae_model_set(*m, CVAE_MODEL_BETA, cfg->beta)) != CVAE_OK) {
        note(t, "setting beta", st, cvae_model_last_error(*m));
        return TUNE_TRIAL_ABORT;
    }
    st = cvae_optimizer_create(opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(*m));
    if (st != CVAE_OK) {
        note(t, "creating the optimizer", st, "");
        return st == CVAE_ERR_NOMEM ? TUNE_TRIAL_FAILED : TUNE_TRIAL_ABORT;
    }
    if ((st = cvae_optimizer_set(*opt, CVAE_OPT_LR, cfg->lr)) != CVAE_OK) {
        note(t, "setting the learning rate", st, cvae_optimizer_last_error(*opt));
        return TUNE_TRIAL_ABORT;
    }
    return TUNE_TRIAL_OK;
}

/* A trial continued: model and optimizer as the previous rung saved them. */
static int reload_trial(struct tuner *t, const tune_config *cfg, const char *path, cvae_model **m,
                        cvae_optimizer **opt)
{
    cvae_status st;

    if ((st = cvae_model_create(m)) != CVAE_OK) {
        note(t, "creating a model", st, "");
        return TUNE_TRIAL_ABORT;
    }
    if ((st = cvae_model_load(*m, path, cfg->batch)) != CVAE_OK) {
        note(t, "loading the trial", st, cvae_model_last_error(*m));
        return TUNE_TRIAL_ABORT;
    }
    if ((st = cvae_optimizer_create(opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(*m))) !=
        CVAE_OK) {
        note(t, "creating the optimizer", st, "");
        return TUNE_TRIAL_ABORT;
    }
    if ((st = cvae_optimizer_load(*opt, path)) != CVAE_OK) {
        note(t, "loading the trial's optimizer", st, cvae_optimizer_last_error(*opt));
        return TUNE_TRIAL_ABORT;
    }
    return TUNE_TRIAL_OK;
}

/*
 * Trains until at least to images of the training split have been seen,
 * continuing where the model's step count says it stopped: epoch
 * steps / S, batch steps % S, with S = ceil(count / batch) steps an epoch.
 */
static int train_to(struct tuner *t, const tune_config *cfg, cvae_model *m, cvae_optimizer *opt,
                    long to)
{
    long spe = (t->count + cfg->batch - 1) / cfg->batch;
    long steps = (long)cvae_model_steps(m), epoch = steps / spe, b = steps % spe, shuffled = -1;
    long seen = epoch * t->count + b * cfg->batch;
    size_t pixels = (size_t)t->channels * (size_t)t->height * (size_t)t->width;
    float *x = malloc((size_t)cfg->batch * pixels * sizeof *x);
    int outcome = TUNE_TRIAL_OK;
    cvae_status st;

    if (!x) {
        note(t, "a batch buffer", CVAE_ERR_NOMEM, "");
        return TUNE_TRIAL_FAILED;
    }
    while (seen < to) {
        int n = t->count - (int)b * cfg->batch < cfg->batch ? t->count - (int)b * cfg->batch
                                                             : cfg->batch;
        if (epoch != shuffled) { /* the epoch's order depends on seed and epoch only */
            if ((st = cvae_dataset_shuffle(t->train, t->o->seed + (uint64_t)epoch)) != CVAE_OK) {
                note(t, "shuffling", st, cvae_dataset_last_error(t->train));
                outcome = TUNE_TRIAL_ABORT;
                break;
            }
            shuffled = epoch;
        }
        if ((st = cvae_dataset_batch(t->train, (int)b * cfg->batch, n, x, NULL)) != CVAE_OK) {
            note(t, "reading a batch", st, cvae_dataset_last_error(t->train));
            outcome = TUNE_TRIAL_ABORT;
            break;
        }
        if ((st = cvae_model_train_step(m, opt, x, n, NULL, NULL)) != CVAE_OK) {
            note(t, "training", st, cvae_model_last_error(m));
            /* A non-finite loss or gradient: this configuration diverged. */
            outcome = st == CVAE_ERR_NUMERIC ? TUNE_TRIAL_FAILED : TUNE_TRIAL_ABORT;
            break;
        }
        seen += n;
        if (++b == spe) {
            b = 0;
            epoch++;
        }
    }
    free(x);
    return outcome;
}

/* tune_run_fn: runs one trial from `from` to `to` images and returns its
 * validation loss. */
static double run_trial(void *user, int trial, const tune_config *cfg, long from, long to,
                        int *outcome)
{
    struct tuner *t = user;
    char path[PATH_CHARS];
    cvae_model *m = NULL;
    cvae_optimizer *opt = NULL;
    double total = NAN;
    cvae_status st;

    trial_path(t, trial, path, sizeof path);
    t->failure[0] = '\0';
    *outcome = from == 0 ? new_trial(t, cfg, &m, &opt) : reload_trial(t, cfg, path, &m, &opt);
    if (*outcome == TUNE_TRIAL_OK && (st = cvae_model_set(m, CVAE_MODEL_THREADS,
                                                          t->o->threads)) != CVAE_OK) {
        note(t, "--threads", st, cvae_model_last_error(m));
        *outcome = TUNE_TRIAL_ABORT;
    }
    if (*outcome == TUNE_TRIAL_OK)
        *outcome = train_to(t, cfg, m, opt, to);
    if (*outcome == TUNE_TRIAL_OK &&
        (st = cvae_model_evaluate(m, t->val, VAL_EPS_SEED, NULL, NULL, &total)) != CVAE_OK) {
        note(t, "evaluating", st, cvae_model_last_error(m));
        *outcome = TUNE_TRIAL_ABORT;
    }
    if (*outcome == TUNE_TRIAL_OK && !isfinite(total)) {
        snprintf(t->failure, sizeof t->failure, "validation loss %g", total);
        *outcome = TUNE_TRIAL_FAILED;
    }
    /* Saved at every rung: the next rung reloads it, and the winner's is the result. */
    if (*outcome == TUNE_TRIAL_OK && (st = cvae_model_save(m, opt, path)) != CVAE_OK) {
        note(t, "saving the trial", st, cvae_model_last_error(m));
        *outcome = TUNE_TRIAL_ABORT;
    }
    cvae_optimizer_destroy(opt);
    cvae_model_destroy(m);
    return total;
}

/* tune_retire_fn: a trial that will not run again leaves no file behind. */
static void retire_trial(void *user, int trial)
{
    char path[PATH_CHARS];
    trial_path(user, trial, path, sizeof path);
    remove(path);
}

/* ---------------------------------------------------------- leaderboard */

static void print_budget(const struct tuner *t, long budget)
{
    printf("%ld img (%.2f ep)", budget, (double)budget / (double)t->count);
}

static void print_row(const struct tuner *t, int rank, int trial, const tune_trial *tr,
                      const char *mark)
{
    char cfg[160];

    tune_config_format(&tr->cfg, cfg, sizeof cfg);
    printf("  %4d    %03d  %4d  %8.2f ep  ", rank, trial, tr->rung + 1,
           (double)tr->budget / (double)t->count);
    if (tr->failed)
        printf("%10s", "failed");
    else
        printf("%10.3f", tr->loss);
    printf("  %s%s\n", cfg, mark);
}

static void print_header(void)
{
    printf("  rank  trial  rung      budget    val loss  config\n");
}

/* tune_report_fn: one line per finished run; the rung's table at its end. */
static void report(void *user, const tune_event *ev)
{
    const struct tuner *t = user;
    const tune_trial *tr = &ev->trials[ev->trial];
    char cfg[160];
    int i;

    tune_config_format(&tr->cfg, cfg, sizeof cfg);
    printf("rung %d/%d  trial %03d  ", ev->rung + 1, ev->rungs, ev->trial);
    print_budget(t, ev->budget);
    if (ev->failed)
        printf("  FAILED (%s)", t->failure[0] ? t->failure : "non-finite loss");
    else
        printf("  val %.3f  rank %d/%d", ev->loss, ev->rank, ev->finished);
    printf("  %.1f s  %s\n", ev->seconds, cfg);
    if (ev->rung_done) {
        int last = ev->rung == ev->rungs - 1;
        printf("\nrung %d/%d done at ", ev->rung + 1, ev->rungs);
        print_budget(t, ev->budget);
        printf(": %d trial%s", ev->finished, ev->finished == 1 ? "" : "s");
        if (!last)
            printf(", %d go%s on", ev->promoted, ev->promoted == 1 ? "es" : "");
        printf("\n");
        if (t->o->seconds > 0 && ev->rung == 0)
            printf("the time budget chose %d trial%s (the same run as --trials %d)\n",
                   ev->finished, ev->finished == 1 ? "" : "s", ev->finished);
        print_header();
        for (i = 0; i < ev->finished; i++)
            print_row(t, i + 1, ev->order[i], &ev->trials[ev->order[i]],
                      i >= ev->promoted ? ""
                      : last            ? "  <- winner"
                                        : "  -> next rung");
        printf("\n");
    }
    fflush(stdout);
}

/* ---------------------------------------------------------------- main */

/* The space: the default, parts overridden by --space; checked against the
 * preset's bounds in this libcvae. Returns 0 or an exit status. */
static int make_space(const struct options *o, tune_space *space)
{
    static const struct {
        tune_param p;
        cvae_model_option key;
        const char *what;
    } sized[2] = {{TUNE_WIDTH, CVAE_MODEL_WIDTH, "width"}, {TUNE_HIDDEN, CVAE_MODEL_HIDDEN, "hidden"}};
    char err[512];
    cvae_model *m = NULL;
    int i, k;

    tune_space_default(space);
    if (o->space && tune_space_read(o->space, space, err, sizeof err) != TUNE_OK)
        return ex_error("%s", err);
    if (cvae_model_create(&m) != CVAE_OK)
        return ex_error("out of memory");
    for (i = 0; i < 2; i++) {
        const tune_range *r = &space->param[sized[i].p];
        double lo, hi;
        if (cvae_model_bounds(m, sized[i].key, &lo, &hi) != CVAE_OK) {
            cvae_model_destroy(m);
            return ex_error("this libcvae (%s) cannot set the preset's %s", cvae_version_string(),
                            sized[i].what);
        }
        for (k = 0; k < (r->dist == TUNE_CHOICE ? r->nchoices : 2); k++) {
            double v = r->dist == TUNE_CHOICE ? r->choice[k] : k ? r->hi : r->lo;
            /* 0 would mean "automatic" to libcvae: a searched value must be a size. */
            if (v < (lo > 1 ? lo : 1) || v > hi) {
                cvae_model_destroy(m);
                return ex_error("space: %s %g is outside libcvae's [%g, %g]", sized[i].what, v,
                                lo > 1 ? lo : 1, hi);
            }
        }
    }
    cvae_model_destroy(m);
    return 0;
}

/* The training and validation splits of the images in DIR. */
static int load_splits(const struct options *o, struct tuner *t)
{
    cvae_dataset *all = NULL;
    cvae_status st;
    int count;

    if (load_images(o, &all) != CVAE_OK)
        return 1;
    count = cvae_dataset_count(all);
    if (o->validation >= count) {
        cvae_dataset_destroy(all);
        return ex_error("--validation %d: %s has only %d images", o->validation, o->data, count);
    }
    st = cvae_dataset_split(all, o->validation, o->seed, &t->train, &t->val);
    if (st != CVAE_OK) {
        ex_status_error("splitting off the validation images", st, cvae_dataset_last_error(all));
        cvae_dataset_destroy(all);
        return 1;
    }
    cvae_dataset_destroy(all);
    t->count = cvae_dataset_count(t->train);
    cvae_dataset_shape(t->train, &t->channels, &t->height, &t->width);
    return 0;
}

static double clock_seconds(void *user)
{
    (void)user;
    return ex_now();
}

/* The winner's files and the command that retrains it. */
static int finish(const struct options *o, const struct tuner *t, const tune_result *res)
{
    const tune_trial *w = &res->trial[res->winner];
    char from[PATH_CHARS], model[PATH_CHARS], cfgpath[PATH_CHARS], err[512], cfg[160];
    int i;

    trial_path(t, res->winner, from, sizeof from);
    if (snprintf(model, sizeof model, "%s/best.cvae", o->out) >= (int)sizeof model ||
        snprintf(cfgpath, sizeof cfgpath, "%s/best.cfg", o->out) >= (int)sizeof cfgpath)
        return ex_error("%s: name too long", o->out);
    if (rename(from, model) != 0)
        return ex_error("%s -> %s: %s", from, model, strerror(errno));
    if (tune_config_write(cfgpath, &w->cfg, err, sizeof err) != TUNE_OK)
        return ex_error("%s", err);

    printf("leaderboard (%d trial%s; further rungs first):\n", res->trials,
           res->trials == 1 ? "" : "s");
    print_header();
    for (i = 0; i < res->trials && i < 10; i++)
        print_row(t, i + 1, res->ranking[i], &res->trial[res->ranking[i]],
                  i == 0 ? "  <- winner" : "");
    tune_config_format(&w->cfg, cfg, sizeof cfg);
    printf("\nbest: trial %03d, validation loss %.3f after %d epoch%s: %s\n", res->winner, w->loss,
           o->max_epochs, o->max_epochs == 1 ? "" : "s", cfg);
    printf("wrote %s (its settings) and %s (its model)\n", cfgpath, model);
    printf("retrain it on all %d training images (the validation split included) with:\n  ",
           t->count + o->validation);
    printf("cvae-train ");
    if (o->format != EX_FORMAT_IDX)
        printf("--format %s ", ex_format_name(o->format));
    printf("--data ");
    print_shell_word(o->data);
    printf(" --config ");
    print_shell_word(cfgpath);
    printf(" --epochs %d --seed %llu\n", o->max_epochs, (unsigned long long)o->seed);
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {.out = "tune-out",
                        .format = EX_FORMAT_IDX,
                        .seed = 1,
                        .validation = 1000,
                        .eta = 3,
                        .rungs = 3,
                        .max_epochs = 10};
    struct tuner t;
    tune_space space;
    tune_search search;
    tune_result res;
    char err[512], line[96];
    int rc = 1, p, k;
    tune_status st;

    ex_prog = "cvae-tune";
    parse_options(argc, argv, &o);
    memset(&t, 0, sizeof t);
    memset(&res, 0, sizeof res);
    t.o = &o;
    if (make_space(&o, &space) != 0 || load_splits(&o, &t) != 0)
        goto done;

    memset(&search, 0, sizeof search);
    if ((long)o.max_epochs > LONG_MAX / t.count) {
        ex_error("--max-epochs %d: too many images for a budget", o.max_epochs);
        goto done;
    }
    if (tune_schedule_make(&search.schedule, (long)o.max_epochs * t.count, o.eta, o.rungs, err,
                           sizeof err) != TUNE_OK) {
        ex_error("schedule: %s (budgets count training images)", err);
        goto done;
    }
    if (make_dir(o.out) != 0)
        goto done;
    search.space = &space;
    search.seed = o.seed;
    search.trials = o.trials;
    search.seconds = o.seconds;
    search.run = run_trial;
    search.report = report;
    search.retire = retire_trial;
    search.now = clock_seconds;
    search.user = &t;

    printf("%d training images of %dx%dx%d, %d validation images; trials in %s/\n", t.count,
           t.channels, t.height, t.width, o.validation, o.out);
    printf("space:");
    for (p = 0; p < TUNE_PARAMS; p++) {
        tune_space_format(&space, (tune_param)p, line, sizeof line);
        printf("%s %s %s", p ? ";" : "", tune_param_name((tune_param)p), line);
    }
    printf("\nrungs (eta %d):", o.eta);
    for (k = 0; k < search.schedule.rungs; k++) {
        printf("%s ", k ? "," : "");
        print_budget(&t, search.schedule.budget[k]);
    }
    if (o.trials > 0)
        printf("\n%d trial%s, seed %llu\n\n", o.trials, o.trials == 1 ? "" : "s",
               (unsigned long long)o.seed);
    else
        printf("\ntime budget %.0f s, seed %llu\n\n", o.seconds, (unsigned long long)o.seed);
    fflush(stdout);

    st = tune_run(&search, &res, err, sizeof err);
    if (st == TUNE_ERR_ABORTED)
        ex_error("%s: %s", err, t.failure);
    else if (st != TUNE_OK)
        ex_error("%s", err);
    else
        rc = finish(&o, &t, &res);
done:
    tune_result_free(&res);
    cvae_dataset_destroy(t.val);
    cvae_dataset_destroy(t.train);
    return rc;
}
