/*
 * tune.h - hyperparameter search by successive halving, for the libcvae
 * examples (cvae-tune) and any other program. Not part of libcvae, and it
 * makes no libcvae call: the program trains and measures a trial through a
 * callback, and this module decides which trials to sample, continue and
 * drop. Names carry the prefix tune_. docs/TUNING.md has the whole story.
 *
 * The parts:
 *  - tune_config: one point of the search (learning rate, batch, latent size,
 *    beta, the preset's width and hidden size), with a text file format
 *    (tune_config_write / tune_config_read) that cvae-train --config reads.
 *  - tune_space: where each value is drawn from, with a text file format
 *    (tune_space_read) that overrides parts of the default space.
 *  - tune_rng and tune_sample: a small generator of its own (xoshiro256**
 *    seeded through splitmix64), so a seed gives the same configurations on
 *    every machine.
 *  - tune_schedule and tune_run: successive halving (Jamieson & Talwalkar,
 *    2016; the inner loop of Li et al.'s Hyperband, 2017) over a trial count
 *    or a time budget.
 *
 * Nothing here prints or exits. Fallible calls return a tune_status and,
 * when err is not NULL, write a one-line message (without a newline, cut to
 * errsize bytes) naming the file, line and problem.
 */
#ifndef TUNE_H
#define TUNE_H

#include <stddef.h>
#include <stdint.h>

typedef enum tune_status {
    TUNE_OK = 0,
    TUNE_ERR_ARG = 1,        /* a bad argument: a budget, eta, rung count, NULL */
    TUNE_ERR_IO = 2,         /* a file cannot be opened, read or written */
    TUNE_ERR_PARSE = 3,      /* a space or config file is malformed */
    TUNE_ERR_NOMEM = 4,      /* an allocation failed */
    TUNE_ERR_ALL_FAILED = 5, /* every trial of a rung failed: there is no winner */
    TUNE_ERR_ABORTED = 6     /* the run callback asked to stop (TUNE_TRIAL_ABORT) */
} tune_status;

/* A short static description of a status. Never NULL. */
const char *tune_status_string(tune_status st);

/* ------------------------------------------------------------ configs */

/* The hyperparameters of one trial, as cvae-train takes them. */
typedef struct tune_config {
    double lr;  /* Adam's learning rate, in (0, 10] */
    int batch;  /* images per step, [1, 65536] */
    int latent; /* latent dimensions, [1, 4096] */
    double beta; /* weight of the KL term in training, [0, 1e6] */
    int width;  /* channels of the preset's first convolution (the second has 2x), [1, 4096] */
    int hidden; /* width of the preset's hidden linear layers, [1, 65536] */
} tune_config;

/* The parameters by index, in the order of tune_config and of sampling. */
typedef enum tune_param {
    TUNE_LR = 0,
    TUNE_BATCH,
    TUNE_LATENT,
    TUNE_BETA,
    TUNE_WIDTH,
    TUNE_HIDDEN,
    TUNE_PARAMS /* their number */
} tune_param;

/* "lr", "batch", ...: the key in both file formats; NULL out of range. */
const char *tune_param_name(tune_param p);

/* libcvae's preset defaults: lr 1e-3, batch 128, latent 16, beta 1, width 32,
 * hidden 256. */
void tune_config_default(tune_config *cfg);

/* TUNE_OK when every value is inside its range above, else TUNE_ERR_ARG
 * naming the first that is not. */
tune_status tune_config_check(const tune_config *cfg, char *err, size_t errsize);

/* One line "lr 0.00123 batch 64 latent 16 beta 0.87 width 32 hidden 256"
 * (%g) into buf; returns what snprintf returns. */
int tune_config_format(const tune_config *cfg, char *buf, size_t size);

/*
 * Config files: text, one "key = value" per line, keys as tune_param_name,
 * "#" starts a comment, blank lines are ignored. tune_config_write writes
 * all six keys, doubles in the shortest form that reads back to the same
 * bits (at most 17 digits), to path.tmp, then renames it over path.
 * tune_config_read (and tune_config_parse, the same on text already in
 * memory, name being what messages call it) takes any subset of the keys:
 * the keys present replace cfg's values, the others keep theirs. An unknown
 * or repeated key, a missing "=", a value that is not one number, not a
 * whole number where one is needed, or out of range, is TUNE_ERR_PARSE with
 * "name:LINE: key: problem"; cfg is then unchanged. TUNE_ERR_IO when the
 * file cannot be read or written, TUNE_ERR_ARG for a NULL or a config with
 * a value out of range.
 */
tune_status tune_config_write(const char *path, const tune_config *cfg, char *err, size_t errsize);
tune_status tune_config_read(const char *path, tune_config *cfg, char *err, size_t errsize);
tune_status tune_config_parse(const char *text, const char *name, tune_config *cfg, char *err,
                              size_t errsize);

/* ------------------------------------------------------------- spaces */

typedef enum tune_dist {
    TUNE_UNIFORM = 1, /* uniform in [lo, hi]; integers: each of lo..hi equally likely */
    TUNE_LOG = 2,     /* log-uniform in [lo, hi], lo > 0; integers: rounded to the nearest */
    TUNE_CHOICE = 3   /* one of choice[0 .. nchoices-1], equally likely */
} tune_dist;

#define TUNE_MAX_CHOICES 32

typedef struct tune_range {
    tune_dist dist;
    double lo, hi; /* TUNE_UNIFORM, TUNE_LOG */
    int nchoices;  /* TUNE_CHOICE: 1 .. TUNE_MAX_CHOICES */
    double choice[TUNE_MAX_CHOICES];
} tune_range;

/* Where each parameter is drawn from, indexed by tune_param. */
typedef struct tune_space {
    tune_range param[TUNE_PARAMS];
} tune_space;

/*
 * The default space:
 *   lr      log     3e-4 .. 5e-3
 *   batch   choice  32 64 128 256
 *   latent  choice  8 16 24 32
 *   beta    uniform 0.5 .. 1.5  (modest: the objective is the beta = 1 ELBO)
 *   width   choice  16 32 48
 *   hidden  choice  128 256 384 512
 */
void tune_space_default(tune_space *space);

/* TUNE_OK when every range is well formed (a known kind, lo <= hi, values
 * inside the parameter's range and whole for integers, lo > 0 for log,
 * 1..TUNE_MAX_CHOICES choices), else TUNE_ERR_ARG naming the first that
 * is not. */
tune_status tune_space_check(const tune_space *space, char *err, size_t errsize);

/*
 * Space files: text, "#" comments, one line per parameter to override:
 *   lr = log 1e-4 1e-2
 *   beta = uniform 0.5 2
 *   batch = choice 32 64 128
 * The parameters not named keep what space holds (tune_space_default
 * first, usually). Parsed strictly: an unknown or repeated key, a missing
 * "=", an unknown kind, a bad number or count of numbers, min > max, a
 * value out of the parameter's range (e.g. lr <= 0, batch < 1; log needs
 * min > 0), a fraction for an integer parameter, an empty choice or one of
 * more than TUNE_MAX_CHOICES values give TUNE_ERR_PARSE with
 * "name:LINE: problem", and space is then unchanged. tune_space_parse does
 * the same on text in memory.
 */
tune_status tune_space_read(const char *path, tune_space *space, char *err, size_t errsize);
tune_status tune_space_parse(const char *text, const char *name, tune_space *space, char *err,
                             size_t errsize);

/* One parameter's range as its space-file line after "=" ("log 0.0003
 * 0.005", "choice 32 64"), into buf; returns what snprintf returns. */
int tune_space_format(const tune_space *space, tune_param p, char *buf, size_t size);

/* 1 if every value of cfg is one the space can draw, else 0. */
int tune_space_contains(const tune_space *space, const tune_config *cfg);

/* ----------------------------------------------------------- sampling */

/* xoshiro256** (Blackman & Vigna), its state filled by splitmix64 from a
 * seed: integer arithmetic only, the same numbers on every machine. */
typedef struct tune_rng {
    uint64_t s[4];
} tune_rng;

void tune_rng_seed(tune_rng *rng, uint64_t seed);
uint64_t tune_rng_next(tune_rng *rng);
/* Uniform in [0, 1), 53 bits. */
double tune_rng_uniform(tune_rng *rng);
/* Uniform in [0, n), without bias (rejection); n >= 1. */
uint64_t tune_rng_below(tune_rng *rng, uint64_t n);

/*
 * Draws one configuration, parameters in tune_param order. Continuous
 * values (lr, beta) are rounded to 3 significant digits, then kept inside
 * [lo, hi]: configurations read well, and a last-bit difference in a
 * libm's exp or log cannot change them. The space must pass
 * tune_space_check.
 */
void tune_sample(const tune_space *space, tune_rng *rng, tune_config *cfg);

/* ----------------------------------------------------------- schedule */

#define TUNE_MAX_RUNGS 16

/* Budgets of successive halving: rung k ends at budget[k] (whatever unit
 * the program chooses: cvae-tune counts training images), budget[rungs-1]
 * the largest, each about eta times the one before. */
typedef struct tune_schedule {
    int eta;   /* reduction factor: a rung keeps ceil(entrants / eta) */
    int rungs; /* 1 .. TUNE_MAX_RUNGS */
    long budget[TUNE_MAX_RUNGS];
} tune_schedule;

/*
 * budget[k] = max_budget / eta^(rungs-1-k), rounded to the nearest whole
 * unit (halves up), in integer arithmetic. TUNE_ERR_ARG (with a message)
 * for max_budget < 1, eta < 2 or above 1000, rungs outside [1,
 * TUNE_MAX_RUNGS], or budgets that would not rise strictly from at least 1
 * (max_budget too small for so many rungs).
 */
tune_status tune_schedule_make(tune_schedule *s, long max_budget, int eta, int rungs, char *err,
                               size_t errsize);

/* Trials kept after a rung of entrants trials: ceil(entrants / eta). */
int tune_survivors(int entrants, int eta);

/* Trials that run rung `rung` when n start and none fails. */
int tune_schedule_entrants(const tune_schedule *s, int n, int rung);

/* Budget units the whole schedule spends on n trials when none fails: each
 * entrant of rung k continues from budget[k-1] (0 for k = 0) to budget[k]. */
double tune_schedule_cost(const tune_schedule *s, int n);

/*
 * A time budget as given on a command line: a positive number of seconds,
 * optionally followed by s, m or h ("90", "90s", "1.5m", "2h"), at most
 * 1e9 seconds. TUNE_ERR_ARG with a message otherwise ("0", "abc", "-5",
 * "nan", "10x").
 */
tune_status tune_parse_seconds(const char *text, double *seconds, char *err, size_t errsize);

/* --------------------------------------------------------------- search */

/* What the run callback reports through *outcome. */
enum {
    TUNE_TRIAL_OK = 0,     /* the returned loss is the trial's */
    TUNE_TRIAL_FAILED = 1, /* the trial failed (diverged, ...): ranked last, never continued */
    TUNE_TRIAL_ABORT = 2   /* stop the whole search: tune_run returns TUNE_ERR_ABORTED */
};

/*
 * Continues trial `trial` (0-based) with configuration cfg from budget
 * from_budget (0: a new trial; else where the previous call for this trial
 * stopped) to to_budget, and returns its validation loss (lower is better).
 * *outcome is TUNE_TRIAL_OK when called; a NaN or infinite loss counts as
 * TUNE_TRIAL_FAILED whatever *outcome says.
 */
typedef double (*tune_run_fn)(void *user, int trial, const tune_config *cfg, long from_budget,
                              long to_budget, int *outcome);

/* One trial's state. */
typedef struct tune_trial {
    tune_config cfg;
    int rung;       /* highest rung run, -1 before any */
    long budget;    /* budget run to so far */
    double loss;    /* loss at that rung (NaN before any) */
    int failed;     /* 1 once a run failed */
    double seconds; /* time spent in its runs (0 without a clock) */
} tune_trial;

/* What the report callback sees after every run. */
typedef struct tune_event {
    int trial;    /* the trial that just ran */
    int rung;     /* the rung it ran, 0-based */
    int rungs;    /* rungs in the schedule */
    long budget;  /* the rung's budget */
    double loss;  /* its loss (NaN for a failure) */
    int failed;
    double seconds; /* that run's time */
    int rank;       /* its rank (1 = best) among the runs finished at this rung */
    int finished;   /* runs finished at this rung */
    int entrants;   /* trials of this rung; 0 while a time budget has not fixed it */
    int rung_done;  /* 1 on the rung's last run; promoted is then set */
    int promoted;   /* with rung_done: trials going on (at the last rung: 1 winner, 0 none) */
    const int *order;         /* the finished runs' trials, best first (finished entries) */
    const tune_trial *trials; /* every trial so far, by index */
} tune_event;

typedef void (*tune_report_fn)(void *user, const tune_event *ev);

/* Called once for every trial that will not run again (dropped at a rung,
 * failed, or beaten at the last), so the program can free what it keeps.
 * Not called for the trials still in the race when tune_run returns an
 * error, nor for the winner. */
typedef void (*tune_retire_fn)(void *user, int trial);

/* Seconds on a monotonic clock. */
typedef double (*tune_clock_fn)(void *user);

/* What to search and how. */
typedef struct tune_search {
    const tune_space *space; /* must pass tune_space_check */
    uint64_t seed;           /* the configurations' seed */
    tune_schedule schedule;  /* from tune_schedule_make */
    int trials;              /* n > 0: exactly n trials ... */
    double seconds;          /* ... else a time budget in seconds (needs now) */
    int max_trials;          /* time budget: at most this many trials (0: 1000) */
    tune_run_fn run;         /* required */
    tune_report_fn report;   /* optional */
    tune_retire_fn retire;   /* optional */
    tune_clock_fn now;       /* optional with trials, required with seconds */
    void *user;              /* passed to the callbacks */
} tune_search;

/* The outcome of a search. */
typedef struct tune_result {
    int trials;         /* trials sampled and run */
    int winner;         /* the winner's index, -1 if none */
    tune_trial *trial;  /* trials[0 .. trials-1] */
    int *ranking;       /* every trial, best first: further rung, then loss, then index */
} tune_result;

/*
 * Successive halving. Trial i's configuration is the i-th draw of
 * tune_sample from tune_rng_seed(seed XOR 0x74756e65) (the tag keeps it
 * apart from libcvae's own streams of the same seed), so a seed gives the
 * same sequence of trials whatever the mode.
 *
 * Rung 0 runs trials 0, 1, ... from 0 to budget[0], one after the other.
 * With trials = n it runs n of them. With a time budget it decides after
 * each run: with u = (seconds of the rung-0 runs so far) / (their budget
 * units) and m trials run, it starts trial m + 1 only if
 *   elapsed + u * (tune_schedule_cost(m + 1) - m * budget[0]) <= seconds
 * (elapsed counted from the start of tune_run), and stops at max_trials; at
 * least one trial runs. The rung-0 runs also pay for starting and measuring
 * a trial, which later, longer runs spread thinner, so the estimate usually
 * leans long; but the budget is a target, not a deadline (a machine whose
 * load rises can overrun it).
 *
 * Every later rung k takes the ceil(entrants / eta) best of rung k-1 (loss,
 * then the lower index; failed trials are never taken, so fewer go on when
 * fewer succeeded) and continues them, best first, from budget[k-1] to
 * budget[k]. The best of the last rung wins. With the n a time budget chose,
 * the run is the run of trials = n: same trials, same calls, same winner.
 *
 * res is filled in every case (with what ran before an error) and must be
 * released with tune_result_free. Returns TUNE_OK, TUNE_ERR_ARG (bad search:
 * the message says what), TUNE_ERR_NOMEM, TUNE_ERR_ALL_FAILED (every trial
 * of a rung failed; winner -1) or TUNE_ERR_ABORTED.
 */
tune_status tune_run(const tune_search *search, tune_result *res, char *err, size_t errsize);

/* Frees what tune_run allocated in res; NULL and a zeroed res are fine. */
void tune_result_free(tune_result *res);

#endif /* TUNE_H */
