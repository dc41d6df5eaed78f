/*
 * test_tune.c - the examples' hyperparameter search (examples/common/tune.c),
 * which cvae-tune drives: the generator against values computed apart,
 * sampling inside the space, the schedule's budgets, successive halving on
 * a synthetic objective (which trials go on, which budgets each call gets,
 * failures, the time budget), and both file formats with their errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tune.h"

/* The tag tune_run mixes into the search seed (tune.h). */
#define SEED_TAG 0x74756e65u

/* ------------------------------------------------------------- helpers */

static int spaces_equal(const tune_space *a, const tune_space *b)
{
    int p, i;
    for (p = 0; p < TUNE_PARAMS; p++) {
        const tune_range *x = &a->param[p], *y = &b->param[p];
        if (x->dist != y->dist || x->lo != y->lo || x->hi != y->hi || x->nchoices != y->nchoices)
            return 0;
        for (i = 0; i < x->nchoices; i++)
            if (x->choice[i] != y->choice[i])
                return 0;
    }
    return 1;
}

static int configs_equal(const tune_config *a, const tune_config *b)
{
    return a->lr == b->lr && a->batch == b->batch && a->latent == b->latent &&
           a->beta == b->beta && a->width == b->width && a->hidden == b->hidden;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        print_error("'%s' not found in '%s'\n", needle, haystack);
    return strstr(haystack, needle) != NULL;
}

/* ------------------------------------------------------ the generator */

/* Fails if xoshiro256** seeded through splitmix64 does not give the values a
 * separate implementation (Python, from the papers' code) gives: the same
 * seed must give the same trials on every machine. */
static void test_rng_golden(void **state)
{
    tune_rng r;
    uint64_t below_max = 0;
    int i;
    (void)state;
    tune_rng_seed(&r, 0);
    assert_true(tune_rng_next(&r) == 0x99ec5f36cb75f2b4u);
    assert_true(tune_rng_next(&r) == 0xbf6e1f784956452au);
    assert_true(tune_rng_next(&r) == 0x1a5f849d4933e6e0u);
    tune_rng_seed(&r, 42);
    assert_true(tune_rng_next(&r) == 0x15780b2e0c2ec716u);
    assert_true(tune_rng_next(&r) == 0x6104d9866d113a7eu);
    for (i = 0; i < 1000; i++) {
        double u = tune_rng_uniform(&r);
        uint64_t b = tune_rng_below(&r, 7);
        assert_true(u >= 0.0 && u < 1.0);
        assert_true(b < 7);
        below_max = b > below_max ? b : below_max;
    }
    assert_true(below_max == 6);
}

/* Fails if the first configurations of seed 1 differ from those the same
 * Python model of the sampler computes (parameter order, rounding, choice
 * draws). */
static void test_sample_golden(void **state)
{
    const tune_config want[3] = {{0.00217, 128, 8, 0.891, 48, 384},
                                 {0.000366, 64, 16, 1.05, 32, 384},
                                 {0.00414, 64, 32, 1.39, 48, 512}};
    tune_space space;
    tune_rng r;
    tune_config c;
    int i;
    (void)state;
    tune_space_default(&space);
    tune_rng_seed(&r, 1);
    for (i = 0; i < 3; i++) {
        tune_sample(&space, &r, &c);
        assert_true(configs_equal(&c, &want[i]));
    }
}

/* Fails if a seed does not give the same sequence twice, another seed the
 * same one, or a draw falls outside the default space or is not spread
 * over it. */
static void test_sampling_reproducible_and_inside(void **state)
{
    enum { N = 400 };
    static tune_config a[N], b[N], c[N];
    tune_space space;
    tune_rng ra, rb, rc;
    int i, same_lr = 0, low_lr = 0, batch_seen[4] = {0}, width_seen[3] = {0};
    char buf[32];
    (void)state;
    tune_space_default(&space);
    assert_int_equal(tune_space_check(&space, NULL, 0), TUNE_OK);
    tune_rng_seed(&ra, 7);
    tune_rng_seed(&rb, 7);
    tune_rng_seed(&rc, 8);
    for (i = 0; i < N; i++) {
        tune_sample(&space, &ra, &a[i]);
        tune_sample(&space, &rb, &b[i]);
        tune_sample(&space, &rc, &c[i]);
    }
    for (i = 0; i < N; i++) {
        assert_true(configs_equal(&a[i], &b[i]));
        same_lr += a[i].lr == c[i].lr;
        assert_int_equal(tune_space_contains(&space, &a[i]), 1);
        assert_true(a[i].lr >= 3e-4 && a[i].lr <= 5e-3);
        assert_true(a[i].beta >= 0.5 && a[i].beta <= 1.5);
        assert_true(a[i].latent == 8 || a[i].latent == 16 || a[i].latent == 24 ||
                    a[i].latent == 32);
        assert_true(a[i].hidden == 128 || a[i].hidden == 256 || a[i].hidden == 384 ||
                    a[i].hidden == 512);
        /* 3 significant digits */
        snprintf(buf, sizeof buf, "%.3g", a[i].lr);
        assert_true(strtod(buf, NULL) == a[i].lr);
        low_lr += a[i].lr < sqrt(3e-4 * 5e-3); /* below the log-midpoint */
        batch_seen[a[i].batch == 32 ? 0 : a[i].batch == 64 ? 1 : a[i].batch == 128 ? 2 : 3]++;
        assert_true(a[i].batch == 32 || a[i].batch == 64 || a[i].batch == 128 ||
                    a[i].batch == 256);
        width_seen[a[i].width == 16 ? 0 : a[i].width == 32 ? 1 : 2]++;
    }
    assert_true(same_lr < 10);             /* seed 8 is another sequence */
    assert_true(low_lr > 160 && low_lr < 240); /* log-uniform: about half */
    for (i = 0; i < 4; i++)
        assert_true(batch_seen[i] > 60);
    for (i = 0; i < 3; i++)
        assert_true(width_seen[i] > 90);
}

/* Fails if integer uniform and log ranges leave their bounds or miss an end. */
static void test_sampling_integer_ranges(void **state)
{
    tune_space space;
    tune_rng r;
    tune_config c;
    int i, seen[3] = {0}, hidden_lo = 1000, hidden_hi = 0;
    (void)state;
    tune_space_default(&space);
    assert_int_equal(tune_space_parse("latent = uniform 4 6\nhidden = log 100 1000\n", "t",
                                      &space, NULL, 0),
                     TUNE_OK);
    tune_rng_seed(&r, 3);
    for (i = 0; i < 600; i++) {
        tune_sample(&space, &r, &c);
        assert_true(c.latent >= 4 && c.latent <= 6);
        seen[c.latent - 4]++;
        assert_true(c.hidden >= 100 && c.hidden <= 1000);
        hidden_lo = c.hidden < hidden_lo ? c.hidden : hidden_lo;
        hidden_hi = c.hidden > hidden_hi ? c.hidden : hidden_hi;
        assert_int_equal(tune_space_contains(&space, &c), 1);
    }
    for (i = 0; i < 3; i++)
        assert_true(seen[i] > 150);
    assert_true(hidden_lo < 110 && hidden_hi > 900);
}

/* ------------------------------------------------------- the schedule */

/* Fails if budgets are not max / eta^k rounded to the nearest, or the
 * counts and cost of a schedule are not what halving gives. */
static void test_schedule(void **state)
{
    tune_schedule s;
    (void)state;
    assert_int_equal(tune_schedule_make(&s, 9000, 3, 3, NULL, 0), TUNE_OK);
    assert_int_equal(s.rungs, 3);
    assert_int_equal(s.eta, 3);
    assert_true(s.budget[0] == 1000 && s.budget[1] == 3000 && s.budget[2] == 9000);
    assert_int_equal(tune_schedule_make(&s, 59000, 3, 3, NULL, 0), TUNE_OK);
    assert_true(s.budget[0] == 6556 && s.budget[1] == 19667 && s.budget[2] == 59000);
    assert_int_equal(tune_schedule_make(&s, 81, 3, 5, NULL, 0), TUNE_OK);
    assert_true(s.budget[0] == 1 && s.budget[1] == 3 && s.budget[2] == 9 && s.budget[3] == 27 &&
                s.budget[4] == 81);
    assert_int_equal(tune_schedule_make(&s, 8, 3, 3, NULL, 0), TUNE_OK);
    assert_true(s.budget[0] == 1 && s.budget[1] == 3 && s.budget[2] == 8);
    assert_int_equal(tune_schedule_make(&s, 5, 2, 2, NULL, 0), TUNE_OK); /* 2.5: halves up */
    assert_true(s.budget[0] == 3 && s.budget[1] == 5);
    assert_int_equal(tune_schedule_make(&s, 22, 4, 2, NULL, 0), TUNE_OK); /* 5.5 */
    assert_true(s.budget[0] == 6 && s.budget[1] == 22);
    assert_int_equal(tune_schedule_make(&s, 100, 2, 1, NULL, 0), TUNE_OK);
    assert_true(s.rungs == 1 && s.budget[0] == 100);
    /* The largest budget a long holds, without overflow. */
    assert_int_equal(tune_schedule_make(&s, LONG_MAX, 2, 16, NULL, 0), TUNE_OK);
    assert_true(s.budget[15] == LONG_MAX);
    assert_true(s.budget[0] == LONG_MAX / 32768 + 1);

    assert_int_equal(tune_survivors(10, 3), 4);
    assert_int_equal(tune_survivors(9, 3), 3);
    assert_int_equal(tune_survivors(1, 3), 1);
    assert_int_equal(tune_survivors(0, 3), 0);
    assert_int_equal(tune_schedule_make(&s, 900, 3, 3, NULL, 0), TUNE_OK);
    assert_int_equal(tune_schedule_entrants(&s, 10, 0), 10);
    assert_int_equal(tune_schedule_entrants(&s, 10, 1), 4);
    assert_int_equal(tune_schedule_entrants(&s, 10, 2), 2);
    /* 10 x 100 + 4 x (300 - 100) + 2 x (900 - 300) */
    assert_true(tune_schedule_cost(&s, 10) == 3000.0);
    assert_true(tune_schedule_cost(&s, 1) == 900.0);
}

static void bad_schedule(long max, int eta, int rungs, const char *phrase)
{
    tune_schedule s;
    char err[256] = "";
    assert_int_equal(tune_schedule_make(&s, max, eta, rungs, err, sizeof err), TUNE_ERR_ARG);
    assert_true(contains(err, phrase));
}

static void bad_seconds(const char *text)
{
    double v = 42;
    char err[256] = "";
    assert_int_equal(tune_parse_seconds(text, &v, err, sizeof err), TUNE_ERR_ARG);
    assert_true(v == 42);
    assert_true(contains(err, text));
}

static double never_run(void *user, int trial, const tune_config *cfg, long from, long to,
                        int *outcome)
{
    (void)trial, (void)cfg, (void)from, (void)to, (void)outcome;
    ++*(int *)user;
    return 0;
}

static double zero_clock(void *user)
{
    (void)user;
    return 0;
}

/* Fails if a bad budget, eta, rung count, time budget or search is taken. */
static void test_bad_budgets(void **state)
{
    tune_space space;
    tune_search search;
    tune_result res;
    char err[256];
    double v = 0;
    int calls = 0;
    (void)state;
    bad_schedule(0, 3, 3, "at least 1, not 0");
    bad_schedule(-5, 3, 3, "not -5");
    bad_schedule(100, 1, 3, "eta must be in [2, 1000], not 1");
    bad_schedule(100, 1001, 3, "not 1001");
    bad_schedule(100, 3, 0, "not 0");
    bad_schedule(100, 3, TUNE_MAX_RUNGS + 1, "rungs must be");
    bad_schedule(4, 3, 3, "too small for 3 rungs"); /* 4 / 9 rounds to 0 */
    bad_schedule(2, 2, 3, "too small");             /* 1, 1, 2: not rising */
    bad_schedule(LONG_MAX, 1000, 16, "too small");

    assert_int_equal(tune_parse_seconds("90", &v, NULL, 0), TUNE_OK);
    assert_true(v == 90);
    assert_int_equal(tune_parse_seconds("45s", &v, NULL, 0), TUNE_OK);
    assert_true(v == 45);
    assert_int_equal(tune_parse_seconds("1.5m", &v, NULL, 0), TUNE_OK);
    assert_true(v == 90);
    assert_int_equal(tune_parse_seconds("2h", &v, NULL, 0), TUNE_OK);
    assert_true(v == 7200);
    assert_int_equal(tune_parse_seconds("0.25", &v, NULL, 0), TUNE_OK);
    assert_true(v == 0.25);
    bad_seconds("0");
    bad_seconds("-5");
    bad_seconds("abc");
    bad_seconds("");
    bad_seconds("nan");
    bad_seconds("inf");
    bad_seconds("10x");
    bad_seconds("10 ");
    bad_seconds("1e400");
    bad_seconds("2e9");
    bad_seconds("m");
    bad_seconds("0s");

    /* A search without a count, with a bad time budget, without a clock, or
     * with a malformed schedule runs nothing. */
    tune_space_default(&space);
    memset(&search, 0, sizeof search);
    search.space = &space;
    search.run = never_run;
    search.user = &calls;
    search.now = zero_clock;
    assert_int_equal(tune_schedule_make(&search.schedule, 90, 3, 3, NULL, 0), TUNE_OK);
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ARG); /* neither */
    assert_true(contains(err, "trial count"));
    assert_int_equal(res.trials, 0);
    assert_int_equal(res.winner, -1);
    tune_result_free(&res);
    search.seconds = NAN;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ARG);
    tune_result_free(&res);
    search.seconds = -1;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ARG);
    tune_result_free(&res);
    search.seconds = 10;
    search.now = NULL;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ARG);
    assert_true(contains(err, "clock"));
    tune_result_free(&res);
    search.trials = -1;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ARG);
    tune_result_free(&res);
    search.trials = 3;
    memset(&search.schedule, 0, sizeof search.schedule);
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ARG);
    assert_true(contains(err, "schedule"));
    tune_result_free(&res);
    assert_int_equal(tune_schedule_make(&search.schedule, 90, 3, 3, NULL, 0), TUNE_OK);
    search.run = NULL;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ARG);
    tune_result_free(&res);
    assert_int_equal(calls, 0);
}

/* ------------------------------------------- successive halving, synthetic */

enum { MAX_TRIALS = 64, MAX_CALLS = 512 };

struct call {
    int trial;
    long from, to;
    double loss;
    tune_config cfg;
};

/* The synthetic objective and everything the callbacks saw. */
struct synth {
    double noise;                 /* noise amplitude at budget 1; shrinks as 1 / budget */
    int flat;                     /* 1: every run returns 5, so every rank is a tie */
    int fail[MAX_TRIALS];         /* 1: FAILED with loss -1e9; 2: NaN; 3: +inf; 4: ABORT */
    long fail_from;               /* ... only in calls from this budget on */
    struct call calls[MAX_CALLS];
    int ncalls;
    long reached[MAX_TRIALS];     /* budget each trial was last run to */
    int reports, rung_done, promoted[TUNE_MAX_RUNGS];
    int retired[MAX_TRIALS];
    double clock, seconds_per_unit; /* a fake clock the runs advance */
};

/* Best at lr = 1e-3; the other parameters do not matter. */
static double truth(const tune_config *c)
{
    double d = log10(c->lr) + 3;
    return d * d;
}

/* A value in [-1, 1] fixed by trial and budget (splitmix64 of both). */
static double jitter(int trial, long budget)
{
    uint64_t z = (uint64_t)trial * 0x9E3779B97F4A7C15u + (uint64_t)budget * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-52 - 1.0;
}

static double synth_run(void *user, int trial, const tune_config *cfg, long from, long to,
                        int *outcome)
{
    struct synth *s = user;
    struct call *c;
    double loss = s->flat ? 5.0 : truth(cfg) + s->noise * jitter(trial, to) / (double)to;

    assert_true(trial >= 0 && trial < MAX_TRIALS);
    assert_true(s->ncalls < MAX_CALLS);
    assert_int_equal(*outcome, TUNE_TRIAL_OK);
    /* A trial continues from where it stopped. */
    assert_true(from == s->reached[trial]);
    assert_true(to > from);
    assert_int_equal(s->retired[trial], 0); /* never run after being retired */
    s->reached[trial] = to;
    s->clock += s->seconds_per_unit * (double)(to - from);
    if (s->fail[trial] && from >= s->fail_from) {
        switch (s->fail[trial]) {
        case 1: *outcome = TUNE_TRIAL_FAILED; loss = -1e9; break;
        case 2: loss = NAN; break;
        case 3: loss = INFINITY; break;
        default: *outcome = TUNE_TRIAL_ABORT; break;
        }
    }
    c = &s->calls[s->ncalls++];
    c->trial = trial;
    c->from = from;
    c->to = to;
    c->loss = loss;
    c->cfg = *cfg;
    return loss;
}

static void synth_report(void *user, const tune_event *ev)
{
    struct synth *s = user;
    int i;
    s->reports++;
    assert_int_equal(ev->trial, s->calls[s->ncalls - 1].trial);
    assert_true(ev->rank >= 1 && ev->rank <= ev->finished);
    assert_int_equal(ev->order[ev->rank - 1], ev->trial);
    for (i = 1; i < ev->finished; i++) { /* the order is best first */
        const tune_trial *a = &ev->trials[ev->order[i - 1]], *b = &ev->trials[ev->order[i]];
        assert_true(!a->failed || b->failed);
        if (!a->failed && !b->failed)
            assert_true(a->loss < b->loss || (a->loss == b->loss && ev->order[i - 1] < ev->order[i]));
    }
    if (ev->rung_done) {
        s->promoted[ev->rung] = ev->promoted;
        s->rung_done++;
    }
}

static void synth_retire(void *user, int trial)
{
    struct synth *s = user;
    assert_int_equal(s->retired[trial], 0); /* once */
    s->retired[trial] = 1;
}

static double synth_clock(void *user) { return ((struct synth *)user)->clock; }

static void synth_search(tune_search *search, const tune_space *space, struct synth *s,
                         uint64_t seed, int trials, long max_budget, int eta, int rungs)
{
    memset(search, 0, sizeof *search);
    search->space = space;
    search->seed = seed;
    search->trials = trials;
    search->run = synth_run;
    search->report = synth_report;
    search->retire = synth_retire;
    search->now = synth_clock;
    search->user = s;
    assert_int_equal(tune_schedule_make(&search->schedule, max_budget, eta, rungs, NULL, 0),
                     TUNE_OK);
}

/* The trials called with to == budget, in call order. */
static int rung_trials(const struct synth *s, long budget, int *out)
{
    int i, n = 0;
    for (i = 0; i < s->ncalls; i++)
        if (s->calls[i].to == budget)
            out[n++] = s->calls[i].trial;
    return n;
}

static double call_loss(const struct synth *s, int trial, long budget)
{
    int i;
    for (i = 0; i < s->ncalls; i++)
        if (s->calls[i].trial == trial && s->calls[i].to == budget)
            return s->calls[i].loss;
    fail_msg("trial %d never ran to %ld", trial, budget);
    return 0;
}

/* Sorts trials by key (ascending, then index): a plain insertion sort. */
static void sort_by(int *t, int n, const double *key)
{
    int i, j;
    for (i = 1; i < n; i++)
        for (j = i; j > 0 && (key[t[j]] < key[t[j - 1]] ||
                              (key[t[j]] == key[t[j - 1]] && t[j] < t[j - 1]));
             j--) {
            int x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
}

static int in_set(const int *set, int n, int x)
{
    int i;
    for (i = 0; i < n; i++)
        if (set[i] == x)
            return 1;
    return 0;
}

/*
 * With noise smaller than half the gap between any two trials' true losses,
 * fails unless each rung continues exactly the truly best ceil(n / eta) of
 * the rung before, and the truly best of all 27 trials wins.
 */
static void test_halving_keeps_truly_best(void **state)
{
    enum { N = 27 };
    static struct synth s;
    tune_space space;
    tune_search search;
    tune_result res;
    tune_config cfg[N];
    tune_rng r;
    double f[N], gap = INFINITY;
    int i, j, k, best = 0, prev[N], cur[N], nprev, ncur;
    (void)state;
    memset(&s, 0, sizeof s);
    tune_space_default(&space);
    /* The trials tune_run will make, drawn here from the documented stream. */
    tune_rng_seed(&r, 10 ^ (uint64_t)SEED_TAG);
    for (i = 0; i < N; i++) {
        tune_sample(&space, &r, &cfg[i]);
        f[i] = truth(&cfg[i]);
        best = f[i] < f[best] ? i : best;
    }
    for (i = 0; i < N; i++)
        for (j = 0; j < i; j++)
            gap = fmin(gap, fabs(f[i] - f[j]));
    assert_true(gap > 0); /* this seed's true losses are all different */
    s.noise = 0.45 * gap;

    synth_search(&search, &space, &s, 10, N, 27, 3, 4); /* budgets 1, 3, 9, 27 */
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    assert_int_equal(res.trials, N);
    for (i = 0; i < N; i++) /* the trials are the documented stream's draws */
        assert_true(configs_equal(&res.trial[i].cfg, &cfg[i]));
    for (i = 0; i < N; i++) /* rung 0 runs them in index order */
        assert_int_equal(s.calls[i].trial, i);

    nprev = rung_trials(&s, 1, prev);
    assert_int_equal(nprev, N);
    for (k = 1; k < 4; k++) {
        ncur = rung_trials(&s, search.schedule.budget[k], cur);
        assert_int_equal(ncur, tune_survivors(nprev, 3));
        sort_by(prev, nprev, f);
        for (i = 0; i < ncur; i++)
            assert_true(in_set(cur, ncur, prev[i]));
        memcpy(prev, cur, sizeof cur);
        nprev = ncur;
    }
    assert_int_equal(nprev, 1); /* 27 -> 9 -> 3 -> 1 */
    assert_int_equal(res.winner, best);
    assert_int_equal(res.ranking[0], best);
    assert_int_equal(s.retired[best], 0);
    for (i = 0; i < N; i++)
        if (i != best)
            assert_int_equal(s.retired[i], 1);
    tune_result_free(&res);
}

/*
 * With noise that swamps the true losses at small budgets, fails unless each
 * rung continues the best ceil(n / eta) by the losses the callback returned
 * (ties to the lower index), best first, and the best of the last rung wins.
 */
static void test_halving_follows_observed_losses(void **state)
{
    enum { N = 20 };
    static struct synth s;
    tune_space space;
    tune_search search;
    tune_result res;
    double loss[N];
    int i, k, prev[N], cur[N], nprev, ncur;
    (void)state;
    memset(&s, 0, sizeof s);
    tune_space_default(&space);
    s.noise = 50;
    synth_search(&search, &space, &s, 5, N, 90, 3, 3); /* budgets 10, 30, 90 */
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    nprev = rung_trials(&s, 10, prev);
    for (k = 1; k < 3; k++) {
        long b = search.schedule.budget[k - 1];
        for (i = 0; i < nprev; i++)
            loss[prev[i]] = call_loss(&s, prev[i], b);
        sort_by(prev, nprev, loss);
        ncur = rung_trials(&s, search.schedule.budget[k], cur);
        assert_int_equal(ncur, tune_survivors(nprev, 3)); /* 20 -> 7 -> 3 */
        for (i = 0; i < ncur; i++)
            assert_int_equal(cur[i], prev[i]); /* the same trials, in rank order */
        memcpy(prev, cur, sizeof cur);
        nprev = ncur;
    }
    for (i = 0; i < nprev; i++)
        loss[prev[i]] = call_loss(&s, prev[i], 90);
    sort_by(prev, nprev, loss);
    assert_int_equal(res.winner, prev[0]);
    assert_true(res.trial[res.winner].loss == loss[prev[0]]);
    assert_int_equal(res.trial[res.winner].rung, 2);
    assert_true(res.trial[res.winner].budget == 90);
    tune_result_free(&res);
}

/*
 * Fails unless the callback gets exactly the calls the schedule promises:
 * n runs 0 -> r0 in index order, then ceil(n/3) runs r0 -> r1, then
 * ceil(ceil(n/3)/3) runs r1 -> r2; their budget adds up to
 * tune_schedule_cost; one report per run, one rung end per rung.
 */
static void test_callback_budgets(void **state)
{
    static struct synth s;
    tune_space space;
    tune_search search;
    tune_result res;
    int i, n0 = 0, n1 = 0, n2 = 0, retired = 0;
    double units = 0;
    (void)state;
    memset(&s, 0, sizeof s);
    tune_space_default(&space);
    synth_search(&search, &space, &s, 2, 10, 900, 3, 3);
    assert_true(search.schedule.budget[0] == 100 && search.schedule.budget[1] == 300);
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    assert_int_equal(s.ncalls, 10 + 4 + 2);
    for (i = 0; i < s.ncalls; i++) {
        const struct call *c = &s.calls[i];
        if (c->from == 0 && c->to == 100) {
            assert_int_equal(c->trial, n0); /* in index order, before any other */
            assert_int_equal(i, n0);
            n0++;
        } else if (c->from == 100 && c->to == 300) {
            assert_int_equal(i, 10 + n1);
            n1++;
        } else if (c->from == 300 && c->to == 900) {
            assert_int_equal(i, 14 + n2);
            n2++;
        } else {
            fail_msg("call %d: trial %d from %ld to %ld", i, c->trial, c->from, c->to);
        }
        units += (double)(c->to - c->from);
    }
    assert_true(n0 == 10 && n1 == 4 && n2 == 2);
    assert_true(units == tune_schedule_cost(&search.schedule, 10));
    assert_int_equal(s.reports, 16);
    assert_int_equal(s.rung_done, 3);
    assert_true(s.promoted[0] == 4 && s.promoted[1] == 2 && s.promoted[2] == 1);
    for (i = 0; i < 10; i++)
        retired += s.retired[i];
    assert_int_equal(retired, 9);
    assert_int_equal(s.retired[res.winner], 0);
    assert_true(res.trial[res.winner].budget == 900);
    /* The overall ranking: the winner, then the other rung-2 trial, then rung 1's. */
    assert_int_equal(res.ranking[0], res.winner);
    assert_int_equal(res.trial[res.ranking[1]].rung, 2);
    assert_int_equal(res.trial[res.ranking[2]].rung, 1);
    assert_int_equal(res.trial[res.ranking[9]].rung, 0);
    tune_result_free(&res);
}

/* Fails unless equal losses rank by trial index: with every loss equal, the
 * lowest indices go on, in index order, and trial 0 wins. */
static void test_ties_go_to_lower_index(void **state)
{
    static struct synth s;
    tune_space space;
    tune_search search;
    tune_result res;
    int i;
    (void)state;
    memset(&s, 0, sizeof s);
    s.flat = 1;
    tune_space_default(&space);
    synth_search(&search, &space, &s, 6, 7, 9, 3, 3);
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    assert_int_equal(s.ncalls, 7 + 3 + 1);
    for (i = 0; i < 3; i++)
        assert_int_equal(s.calls[7 + i].trial, i);
    assert_int_equal(s.calls[10].trial, 0);
    assert_int_equal(res.winner, 0);
    for (i = 0; i < 7; i++) /* the overall ranking: rung, then index */
        assert_int_equal(res.ranking[i], i);
    tune_result_free(&res);
}

/*
 * Fails if a failed trial (flagged, NaN or infinite loss), however small
 * its loss, runs again or wins; if fewer successes than ceil(n / eta) are
 * not all that go on; if a search whose trials all fail has a winner; or if
 * an abort does not stop at once.
 */
static void test_failed_never_promoted(void **state)
{
    enum { N = 9 };
    static struct synth s;
    tune_space space;
    tune_search search;
    tune_result res;
    double f[N];
    int order[N], i, j;
    char err[256];
    (void)state;
    tune_space_default(&space);

    /* The three truly best trials fail at rung 0, each in its own way. */
    memset(&s, 0, sizeof s);
    synth_search(&search, &space, &s, 4, N, 9, 3, 3);
    {
        tune_rng r;
        tune_config c;
        tune_rng_seed(&r, 4 ^ (uint64_t)SEED_TAG);
        for (i = 0; i < N; i++) {
            tune_sample(&space, &r, &c);
            f[i] = truth(&c);
            order[i] = i;
        }
        sort_by(order, N, f);
        s.fail[order[0]] = 1;
        s.fail[order[1]] = 2;
        s.fail[order[2]] = 3;
    }
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    for (i = 0; i < s.ncalls; i++)
        for (j = 0; j < 3; j++)
            assert_true(s.calls[i].trial != order[j] || s.calls[i].from == 0);
    for (j = 0; j < 3; j++) {
        assert_int_equal(res.trial[order[j]].failed, 1);
        assert_true(isnan(res.trial[order[j]].loss));
        assert_int_equal(s.retired[order[j]], 1);
        assert_true(res.winner != order[j]);
        assert_true(res.ranking[N - 3 + j] == order[0] || res.ranking[N - 3 + j] == order[1] ||
                    res.ranking[N - 3 + j] == order[2]); /* ranked last */
    }
    assert_int_equal(res.winner, order[3]); /* the best that did not fail */
    tune_result_free(&res);

    /* 6 trials, eta 2: 3 would go on, but only 2 succeed. */
    memset(&s, 0, sizeof s);
    synth_search(&search, &space, &s, 4, 6, 4, 2, 2);
    for (i = 0; i < 4; i++)
        s.fail[i] = 1;
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    assert_int_equal(s.ncalls, 6 + 2);
    assert_true(s.calls[6].trial >= 4 && s.calls[7].trial >= 4);
    assert_int_equal(s.promoted[0], 2);
    assert_true(res.winner == 4 || res.winner == 5);
    tune_result_free(&res);

    /* Every trial fails: no winner, and nothing runs past rung 0. */
    memset(&s, 0, sizeof s);
    synth_search(&search, &space, &s, 4, 5, 9, 3, 3);
    for (i = 0; i < 5; i++)
        s.fail[i] = 2;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ALL_FAILED);
    assert_true(contains(err, "all 5 trials of rung 0 failed"));
    assert_int_equal(res.winner, -1);
    assert_int_equal(res.trials, 5);
    assert_int_equal(s.ncalls, 5);
    tune_result_free(&res);

    /* Every trial fails at rung 1 (after succeeding at rung 0). */
    memset(&s, 0, sizeof s);
    synth_search(&search, &space, &s, 4, 5, 9, 3, 3);
    for (i = 0; i < 5; i++)
        s.fail[i] = 1;
    s.fail_from = 1;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ALL_FAILED);
    assert_true(contains(err, "rung 1 failed"));
    assert_int_equal(res.winner, -1);
    assert_int_equal(s.ncalls, 5 + 2);
    tune_result_free(&res);

    /* An abort at trial 3 stops there. */
    memset(&s, 0, sizeof s);
    synth_search(&search, &space, &s, 4, 8, 9, 3, 3);
    s.fail[3] = 4;
    assert_int_equal(tune_run(&search, &res, err, sizeof err), TUNE_ERR_ABORTED);
    assert_true(contains(err, "trial 3"));
    assert_int_equal(s.ncalls, 4);
    assert_int_equal(res.trials, 4);
    assert_int_equal(res.winner, -1);
    tune_result_free(&res);
}

/* n for a time budget under the rule of tune.h, when the clock moves only
 * in runs at u seconds per unit: the largest n whose whole schedule costs
 * at most seconds / u (at least 1). */
static int expected_n(const tune_schedule *sc, double seconds, double u)
{
    int n = 1;
    while (tune_schedule_cost(sc, n + 1) * u <= seconds)
        n++;
    return n;
}

/*
 * Fails unless a time budget runs the largest n whose schedule fits,
 * spends no more than the budget, and is then the very run --trials n makes
 * (same calls in the same order, same winner); a tiny budget still runs one
 * trial; max_trials caps n.
 */
static void test_time_budget(void **state)
{
    static struct synth timed, counted;
    tune_space space;
    tune_search search;
    tune_result res, res2;
    int n, i;
    (void)state;
    tune_space_default(&space);
    memset(&timed, 0, sizeof timed);
    timed.seconds_per_unit = 1;
    timed.noise = 0.5;
    synth_search(&search, &space, &timed, 9, 0, 9, 3, 3); /* budgets 1, 3, 9 */
    search.seconds = 50;
    n = expected_n(&search.schedule, 50, 1);
    assert_int_equal(n, 18); /* cost(18) = 18 + 6*2 + 2*6 = 42; cost(19) = 19 + 7*2 + 3*6 = 51 */
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    assert_int_equal(res.trials, n);
    assert_true(timed.clock == tune_schedule_cost(&search.schedule, n));
    assert_true(timed.clock <= 50);
    assert_int_equal(timed.promoted[0], 6);

    memset(&counted, 0, sizeof counted);
    counted.noise = 0.5;
    synth_search(&search, &space, &counted, 9, n, 9, 3, 3);
    assert_int_equal(tune_run(&search, &res2, NULL, 0), TUNE_OK);
    assert_int_equal(counted.ncalls, timed.ncalls);
    for (i = 0; i < timed.ncalls; i++) {
        assert_int_equal(counted.calls[i].trial, timed.calls[i].trial);
        assert_true(counted.calls[i].from == timed.calls[i].from);
        assert_true(counted.calls[i].to == timed.calls[i].to);
        assert_true(configs_equal(&counted.calls[i].cfg, &timed.calls[i].cfg));
    }
    assert_int_equal(res2.winner, res.winner);
    tune_result_free(&res);
    tune_result_free(&res2);

    /* Too little time for even one: one trial still runs to the end. */
    memset(&timed, 0, sizeof timed);
    timed.seconds_per_unit = 1;
    synth_search(&search, &space, &timed, 9, 0, 9, 3, 3);
    search.seconds = 0.5;
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    assert_int_equal(res.trials, 1);
    assert_int_equal(res.winner, 0);
    assert_int_equal(timed.ncalls, 3);
    tune_result_free(&res);

    /* A budget far beyond the cap: max_trials trials. */
    memset(&timed, 0, sizeof timed);
    timed.seconds_per_unit = 1;
    synth_search(&search, &space, &timed, 9, 0, 9, 3, 3);
    search.seconds = 1e6;
    search.max_trials = 7;
    assert_int_equal(tune_run(&search, &res, NULL, 0), TUNE_OK);
    assert_int_equal(res.trials, 7);
    tune_result_free(&res);
}

/* ----------------------------------------------------------- space files */

/* Fails if a well-formed space file (comments, blank lines, CRLF, every
 * kind) is not read as written, leaves the parameters it does not name
 * other than they were, or formats back differently. */
static void test_space_file_good(void **state)
{
    const char *text = "# a space for a quick search\n"
                       "lr = log 1e-4 1e-2   # wider than the default\n"
                       "\n"
                       "   beta = uniform 0.5 2\n"
                       "batch = choice 32 64 128\r\n"
                       "latent\t=\tuniform 4 12\n"
                       "width = choice 24";
    tune_space space, def, from_file;
    char dir[256], path[512], buf[128], err[256] = "";
    (void)state;
    tune_space_default(&def);
    space = def;
    assert_int_equal(tune_space_parse(text, "quick.space", &space, err, sizeof err), TUNE_OK);
    assert_int_equal(space.param[TUNE_LR].dist, TUNE_LOG);
    assert_true(space.param[TUNE_LR].lo == 1e-4 && space.param[TUNE_LR].hi == 1e-2);
    assert_int_equal(space.param[TUNE_BETA].dist, TUNE_UNIFORM);
    assert_true(space.param[TUNE_BETA].lo == 0.5 && space.param[TUNE_BETA].hi == 2);
    assert_int_equal(space.param[TUNE_BATCH].dist, TUNE_CHOICE);
    assert_int_equal(space.param[TUNE_BATCH].nchoices, 3);
    assert_true(space.param[TUNE_BATCH].choice[2] == 128);
    assert_int_equal(space.param[TUNE_LATENT].dist, TUNE_UNIFORM);
    assert_true(space.param[TUNE_LATENT].lo == 4 && space.param[TUNE_LATENT].hi == 12);
    assert_int_equal(space.param[TUNE_WIDTH].nchoices, 1);
    assert_true(space.param[TUNE_WIDTH].choice[0] == 24);
    /* hidden was not named: still the default's */
    assert_int_equal(space.param[TUNE_HIDDEN].nchoices, 4);
    assert_true(space.param[TUNE_HIDDEN].choice[3] == 512);
    assert_int_equal(tune_space_check(&space, NULL, 0), TUNE_OK);
    tune_space_format(&space, TUNE_LR, buf, sizeof buf);
    assert_string_equal(buf, "log 0.0001 0.01");
    tune_space_format(&space, TUNE_BATCH, buf, sizeof buf);
    assert_string_equal(buf, "choice 32 64 128");
    tune_space_format(&def, TUNE_BETA, buf, sizeof buf);
    assert_string_equal(buf, "uniform 0.5 1.5");

    /* The same from a file, and an empty file changes nothing. */
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "test_tune"), 0);
    snprintf(path, sizeof path, "%s/quick.space", dir);
    write_file(path, text);
    from_file = def;
    assert_int_equal(tune_space_read(path, &from_file, err, sizeof err), TUNE_OK);
    assert_int_equal(spaces_equal(&from_file, &space), 1);
    write_file(path, "# nothing\n\n");
    from_file = def;
    assert_int_equal(tune_space_read(path, &from_file, err, sizeof err), TUNE_OK);
    assert_int_equal(spaces_equal(&from_file, &def), 1);
    tu_tmpdir_remove(dir);
}

/* A bad space text: refused with "bad.space:LINE: ..." containing phrase,
 * the space unchanged. */
static void bad_space(const char *text, int line, const char *phrase)
{
    tune_space space, def;
    char err[512] = "", where[64];
    tune_space_default(&def);
    space = def;
    assert_int_equal(tune_space_parse(text, "bad.space", &space, err, sizeof err), TUNE_ERR_PARSE);
    snprintf(where, sizeof where, "bad.space:%d: ", line);
    assert_true(contains(err, where));
    assert_true(contains(err, phrase));
    assert_int_equal(spaces_equal(&space, &def), 1);
}

/* Fails unless each kind of bad space file is refused with its line and
 * problem, and unreadable files are refused naming the file. */
static void test_space_file_bad(void **state)
{
    char many[512], dir[256], path[512], err[512] = "";
    tune_space space;
    int i, used;
    (void)state;
    bad_space("lr = log 1e-4 1e-2\nfoo = choice 1\n", 2, "unknown key 'foo'");
    bad_space("\n\nlr = log abc 1e-2\n", 3, "lr: bad number 'abc'");
    bad_space("beta = uniform 2 0.5\n", 1, "beta: min 2 > max 0.5");
    bad_space("# comment\nlr = log 0 1e-2\n", 2, "lr: 0 is not positive");
    bad_space("lr = uniform -1 1\n", 1, "-1 is not positive");
    bad_space("batch = choice 0 32\n", 1, "batch: 0 is out of range");
    bad_space("hidden = uniform 1 70000\n", 1, "70000 is out of range");
    bad_space("batch = choice\n", 1, "empty choice");
    bad_space("batch = choice   # nothing left\n", 1, "empty choice");
    bad_space("lr = log 1e-4 1e-2\nbatch = choice 32\nlr = log 1e-3 1e-2\n", 3,
              "duplicate key 'lr' (first on line 1)");
    bad_space("lr log 1e-4 1e-2\n", 1, "no '='");
    bad_space("lr = gauss 1 2\n", 1, "unknown kind 'gauss'");
    bad_space("lr =\n", 1, "no kind");
    bad_space("batch = choice 32.5 64\n", 1, "'32.5' is not a whole number");
    bad_space("latent = uniform 4 1e1\n", 1, "bad number '1e1'");
    bad_space("lr = log 1e-4\n", 1, "log wants 2 numbers, min and max, not 1");
    bad_space("lr = log 1e-4 1e-2 1\n", 1, "not 3");
    bad_space("beta = log 0 1\n", 1, "log needs a positive min");
    bad_space("beta = uniform 0 nan\n", 1, "bad number 'nan'");
    used = snprintf(many, sizeof many, "width = choice");
    for (i = 1; i <= TUNE_MAX_CHOICES + 1; i++)
        used += snprintf(many + used, sizeof many - (size_t)used, " %d", i);
    bad_space(many, 1, "too many choices");

    tune_space_default(&space);
    assert_int_equal(tune_space_read("/nonexistent/x.space", &space, err, sizeof err),
                     TUNE_ERR_IO);
    assert_true(contains(err, "/nonexistent/x.space"));
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "test_tune"), 0);
    assert_int_equal(tune_space_read(dir, &space, err, sizeof err), TUNE_ERR_IO);
    assert_true(contains(err, dir));
    snprintf(path, sizeof path, "%s/nul.space", dir);
    {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal((int)fwrite("lr = log 1 2\n\0x", 1, 15, f), 15);
        assert_int_equal(fclose(f), 0);
    }
    assert_int_equal(tune_space_read(path, &space, err, sizeof err), TUNE_ERR_PARSE);
    assert_true(contains(err, "NUL"));
    tu_tmpdir_remove(dir);
}

/* ---------------------------------------------------------- config files */

/* Fails unless a written config reads back to the same bits, a partial
 * file changes only its keys, and the file is the documented text. */
static void test_config_roundtrip(void **state)
{
    tune_config a = {0.1 + 0.2, 96, 5, 1.0 / 3.0, 17, 300}, b, c;
    tune_config d = {1.2345678901234567e-3, 1, 4096, 0.0, 4096, 65536};
    char dir[256], path[512], text[1024], err[256] = "", line[128];
    FILE *f;
    size_t n;
    (void)state;
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "test_tune"), 0);
    snprintf(path, sizeof path, "%s/best.cfg", dir);
    assert_int_equal(tune_config_write(path, &a, err, sizeof err), TUNE_OK);
    tune_config_default(&b);
    assert_int_equal(tune_config_read(path, &b, err, sizeof err), TUNE_OK);
    assert_true(b.lr == a.lr); /* 0.30000000000000004, not 0.3 */
    assert_true(b.beta == a.beta);
    assert_int_equal(configs_equal(&a, &b), 1);
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_true(contains(text, "\nlr = 0.30000000000000004\n"));
    assert_true(contains(text, "\nbatch = 96\nlatent = 5\nbeta = 0.3333333333333333\n"));
    assert_true(contains(text, "\nwidth = 17\nhidden = 300\n"));
    assert_int_equal(tu_count_entries(dir), 1); /* no .tmp left behind */

    assert_int_equal(tune_config_write(path, &d, err, sizeof err), TUNE_OK);
    tune_config_default(&b);
    assert_int_equal(tune_config_read(path, &b, err, sizeof err), TUNE_OK);
    assert_int_equal(configs_equal(&d, &b), 1);

    /* A subset: only latent changes. */
    tune_config_default(&b);
    assert_int_equal(tune_config_parse("# just one\nlatent = 24\n", "part.cfg", &b, NULL, 0),
                     TUNE_OK);
    tune_config_default(&c);
    c.latent = 24;
    assert_int_equal(configs_equal(&b, &c), 1);

    tune_config_format(&c, line, sizeof line);
    assert_string_equal(line, "lr 0.001 batch 128 latent 24 beta 1 width 32 hidden 256");

    /* Refused: a config out of range, an unwritable place. */
    c.lr = NAN;
    assert_int_equal(tune_config_write(path, &c, err, sizeof err), TUNE_ERR_ARG);
    assert_true(contains(err, "lr"));
    c.lr = 1e-3;
    c.batch = 0;
    assert_int_equal(tune_config_check(&c, err, sizeof err), TUNE_ERR_ARG);
    assert_true(contains(err, "batch"));
    c.batch = 64;
    snprintf(path, sizeof path, "%s/missing/best.cfg", dir);
    assert_int_equal(tune_config_write(path, &c, err, sizeof err), TUNE_ERR_IO);
    assert_true(contains(err, "missing"));
    assert_int_equal(tune_config_read(path, &c, err, sizeof err), TUNE_ERR_IO);
    tu_tmpdir_remove(dir);
}

static void bad_config(const char *text, int line, const char *phrase)
{
    tune_config cfg, def;
    char err[512] = "", where[64];
    tune_config_default(&def);
    cfg = def;
    assert_int_equal(tune_config_parse(text, "bad.cfg", &cfg, err, sizeof err), TUNE_ERR_PARSE);
    snprintf(where, sizeof where, "bad.cfg:%d: ", line);
    assert_true(contains(err, where));
    assert_true(contains(err, phrase));
    assert_int_equal(configs_equal(&cfg, &def), 1);
}

/* Fails unless every bad config line is refused naming its line and key,
 * with the config unchanged. */
static void test_config_bad(void **state)
{
    (void)state;
    bad_config("lr = 0.001\nfoo = 3\n", 2, "unknown key 'foo'");
    bad_config("batch = 12x\n", 1, "batch: bad number '12x'");
    bad_config("batch = 64 128\n", 1, "batch: wants one value, not 2");
    bad_config("beta =\n", 1, "beta: wants one value, not 0");
    bad_config("\nlr = 0\n", 2, "lr: 0 is not positive");
    bad_config("latent = 1.5\n", 1, "latent: '1.5' is not a whole number");
    bad_config("lr = 1e-3\nlr = 2e-3\n", 2, "duplicate key 'lr'");
    bad_config("hidden = 70000\n", 1, "hidden: 70000 is out of range");
    bad_config("beta = nan\n", 1, "beta: bad number 'nan'");
    bad_config("beta = -1\n", 1, "beta: -1 is out of range");
    bad_config("width 32\n", 1, "no '='");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_golden),
        cmocka_unit_test(test_sample_golden),
        cmocka_unit_test(test_sampling_reproducible_and_inside),
        cmocka_unit_test(test_sampling_integer_ranges),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_bad_budgets),
        cmocka_unit_test(test_halving_keeps_truly_best),
        cmocka_unit_test(test_halving_follows_observed_losses),
        cmocka_unit_test(test_callback_budgets),
        cmocka_unit_test(test_ties_go_to_lower_index),
        cmocka_unit_test(test_failed_never_promoted),
        cmocka_unit_test(test_time_budget),
        cmocka_unit_test(test_space_file_good),
        cmocka_unit_test(test_space_file_bad),
        cmocka_unit_test(test_config_roundtrip),
        cmocka_unit_test(test_config_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
