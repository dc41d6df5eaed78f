/*
 * test_optim.c - the optimizers against their documented formulas.
 *
 * Adam (with and without decoupled weight decay) and SGD with momentum take three steps on a
 * 3-parameter problem with a different gradient each step; the expected parameters and state
 * (moments, momentum buffer) are worked out in double in the test from the formulas of cvae.h,
 * so the float implementation must agree to ~1e-6 relative. Gradient clipping by the global
 * norm, refusal of non-finite gradients and of a wrong size (nothing may change), and the
 * options (defaults, round trip, ranges, keys a kind lacks, bounds) follow. The running average
 * of the parameters (CVAE_OPT_AVERAGE) is compared over many steps with a reference worked out
 * in double, and its swap, refusals and independence from training are checked bit for bit.
 *
 * Left out: saving and loading the optimizer state (test_serialize.c), and the optimizer
 * driven by a model (test_model.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#define NP 3    /* parameters of the hand-worked problems */
#define NSTEP 3 /* steps taken by the hand-worked problems */

/* The implementation works in float with bias corrections in double; a float carries about
 * 6e-8 relative error per operation and three steps chain a few dozen of them, so 1e-6
 * relative is honest, while a wrong term (a missing bias correction, eps inside the square
 * root, weight decay coupled into the moments, momentum at the first step) moves a value by
 * 1e-4 relative or more. TINY only guards values that are exactly 0. */
#define RTOL 1e-6
#define TINY 1e-12
#define GMAX 0.6 /* the largest |g| of g_steps */

/* Fails the test with the optimizer's message unless st is CVAE_OK. */
#define CHECK(st, o)                                                                               \
    do {                                                                                           \
        cvae_status st_ = (st);                                                                    \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s", cvae_status_string(st_), cvae_optimizer_last_error(o));             \
    } while (0)

/* Initial parameters of the order of a few updates (lr ~ 0.01), so that an update is not lost
 * in the rounding of a large parameter. */
static const float p_start[NP] = {0.02f, -0.03f, 0.05f};

/* A different gradient each step, with both signs, a zero and a change of sign. */
static const float g_steps[NSTEP][NP] = {
    {0.1f, -0.2f, 0.3f},
    {-0.05f, 0.4f, 0.0f},
    {0.2f, 0.1f, -0.6f},
};

/* |got - want| <= RTOL * max(|want|, scale): scale is the size of one term of the value (one
 * update for a parameter, one gradient term for a moment), so values that cancel to near 0
 * are held to the precision their terms allow rather than to an impossible relative one. */
static void expect_close(const char *what, int step, int i, double got, double want, double scale)
{
    const double tol = TINY + RTOL * fmax(fabs(want), scale);
    /* Written so that a NaN on either side fails. */
    if (!(fabs(got - want) <= tol))
        fail_msg("%s[%d] after step %d: got %.9g, expected %.9g (error %.2g, allowed %.2g)", what,
                 i, step, got, want, fabs(got - want), tol);
}

/* Optimizers made by make_opt, destroyed by drop or, when a test fails half-way (cmocka
 * jumps out of it), by the teardown: a failing test leaks nothing under LeakSanitizer. */
#define MAX_OWNED 8
static cvae_optimizer *owned[MAX_OWNED];

static cvae_optimizer *make_opt(cvae_optimizer_kind kind, size_t n)
{
    cvae_optimizer *o = NULL;
    int i;
    assert_int_equal(cvae_optimizer_create(&o, kind, n), CVAE_OK);
    assert_non_null(o);
    for (i = 0; i < MAX_OWNED && owned[i]; i++)
        ;
    if (i == MAX_OWNED) {
        cvae_optimizer_destroy(o);
        fail_msg("more than %d optimizers at once", MAX_OWNED);
    }
    owned[i] = o;
    return o;
}

static void drop(cvae_optimizer *o)
{
    int i;
    for (i = 0; i < MAX_OWNED; i++)
        if (owned[i] == o)
            owned[i] = NULL;
    cvae_optimizer_destroy(o);
}

static int destroy_owned(void **state)
{
    int i;
    (void)state;
    for (i = 0; i < MAX_OWNED; i++) {
        cvae_optimizer_destroy(owned[i]);
        owned[i] = NULL;
    }
    return 0;
}

/* Adam by hand, in double, term by term as cvae.h documents it:
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p = p (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * (cvae.h writes p -= lr mhat / (sqrt(vhat) + eps) + lr wd p: both terms use the old p).
 * Options are set only when set_all is 1; otherwise the defaults given must be in force. */
static void run_adam(int set_all, double lr, double b1, double b2, double eps, double wd)
{
    cvae_optimizer *o = make_opt(CVAE_OPTIMIZER_ADAM, NP);
    cvi_optimizer_state st;
    double p[NP], m[NP] = {0}, v[NP] = {0};
    float pf[NP];
    int t, i;
    if (set_all) {
        CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, lr), o);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_BETA1, b1), o);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_BETA2, b2), o);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_EPS, eps), o);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_WEIGHT_DECAY, wd), o);
    }
    cvi_optimizer_get_state(o, &st);
    for (i = 0; i < NP; i++) {
        pf[i] = p_start[i];
        p[i] = p_start[i];
    }
    for (t = 1; t <= NSTEP; t++) {
        const double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
        CHECK(cvae_optimizer_step(o, pf, g_steps[t - 1], NP), o);
        assert_int_equal(cvae_optimizer_steps(o), (uint64_t)t);
        for (i = 0; i < NP; i++) {
            const double g = g_steps[t - 1][i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            p[i] = p[i] * (1.0 - lr * wd) - lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + eps);
            expect_close("m", t, i, st.m[i], m[i], (1.0 - b1) * GMAX);
            expect_close("v", t, i, st.v[i], v[i], (1.0 - b2) * GMAX * GMAX);
            expect_close("p", t, i, pf[i], p[i], lr);
        }
    }
    drop(o);
}

/* Fails if an Adam step departs from the formula: moments, bias corrections (in t), eps
 * outside the square root, or the step count. Betas, eps and lr are not the defaults, so
 * hard-coded values show; eps is large enough to matter at 1e-6. */
static void test_adam_by_hand(void **state)
{
    (void)state;
    run_adam(1, 0.01, 0.8, 0.95, 1e-3, 0.0);
}

/* Fails if Adam with its default options departs from the formula by more than float
 * rounding, e.g. if 1 - beta2 = 1e-3 is formed in float from a rounded beta2 (1 - 0.999f is
 * 1.3e-5 away from 1e-3, which moves every update by 6e-6 relative). */
static void test_adam_defaults_by_hand(void **state)
{
    (void)state;
    run_adam(0, 1e-3, 0.9, 0.999, 1e-8, 0.0);
}

/* Fails if Adam's weight decay is not decoupled (p *= 1 - lr wd, not wd p added to the
 * gradient and so to the moments) or is applied to the updated rather than the old p. */
static void test_adamw_by_hand(void **state)
{
    (void)state;
    /* lr wd = 0.02: decay moves p by 4e-4 a step, far above the tolerance; applying it after
     * the update would differ by lr wd times the update, ~2e-4 relative. */
    run_adam(1, 0.01, 0.8, 0.95, 1e-3, 2.0);
}

/* Fails if an SGD step departs from the formula: the buffer must start as the first
 * gradient (b = g, not momentum * 0 + g scaled or (1 - momentum) g), then b = mom b + g;
 * weight decay is added to the gradient and so enters the buffer; a learning rate changed
 * between steps is used at once. */
static void test_sgd_momentum_by_hand(void **state)
{
    const double mom = 0.5, wd = 0.25;
    const double lrs[NSTEP] = {0.1, 0.1, 0.05};
    cvae_optimizer *o = make_opt(CVAE_OPTIMIZER_SGD, NP);
    cvi_optimizer_state st;
    double p[NP], b[NP] = {0};
    float pf[NP];
    int t, i;
    (void)state;
    CHECK(cvae_optimizer_set(o, CVAE_OPT_MOMENTUM, mom), o);
    CHECK(cvae_optimizer_set(o, CVAE_OPT_WEIGHT_DECAY, wd), o);
    cvi_optimizer_get_state(o, &st);
    assert_null(st.v);
    for (i = 0; i < NP; i++) {
        pf[i] = p_start[i];
        p[i] = p_start[i];
    }
    for (t = 1; t <= NSTEP; t++) {
        CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, lrs[t - 1]), o);
        CHECK(cvae_optimizer_step(o, pf, g_steps[t - 1], NP), o);
        assert_int_equal(cvae_optimizer_steps(o), (uint64_t)t);
        for (i = 0; i < NP; i++) {
            const double d = g_steps[t - 1][i] + wd * p[i];
            b[i] = t == 1 ? d : mom * b[i] + d;
            p[i] -= lrs[t - 1] * b[i];
            expect_close("b", t, i, st.m[i], b[i], GMAX);
            expect_close("p", t, i, pf[i], p[i], lrs[t - 1] * GMAX);
        }
    }
    drop(o);
}

/* Fails if clipping is per element rather than by the global L2 norm, is applied when the
 * norm does not exceed the limit, is applied with clip 0 (off), or is applied after weight
 * decay is added rather than to the raw gradient. */
static void test_clip_norm(void **state)
{
    /* |g| = sqrt(36 + 64) = 10; clip 1 scales it to {0.6, 0, -0.8}. Clipping each element to
     * [-1, 1] instead would give {1, 0, -1}. */
    static const float g[NP] = {6.0f, 0.0f, -8.0f};
    static const float p0[NP] = {1.0f, 2.0f, 3.0f};
    static const struct {
        double clip, scale; /* the clip option and the scale it must apply */
    } cases[] = {{1.0, 0.1}, {0.0, 1.0}, {10.0, 1.0}, {20.0, 1.0}, {2.5, 0.25}};
    /* Betas exact in float, so that only clipping is under test here. */
    const double lr = 0.5, wd = 0.125, eps = 0.5, b1 = 0.75, b2 = 0.5;
    size_t c;
    int i;
    (void)state;
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cvae_optimizer *sgd = make_opt(CVAE_OPTIMIZER_SGD, NP);
        cvae_optimizer *adam = make_opt(CVAE_OPTIMIZER_ADAM, NP);
        cvi_optimizer_state as;
        float ps[NP], pa[NP];
        memcpy(ps, p0, sizeof ps);
        memcpy(pa, p0, sizeof pa);
        CHECK(cvae_optimizer_set(sgd, CVAE_OPT_CLIP_NORM, cases[c].clip), sgd);
        CHECK(cvae_optimizer_set(sgd, CVAE_OPT_LR, lr), sgd);
        CHECK(cvae_optimizer_set(sgd, CVAE_OPT_WEIGHT_DECAY, wd), sgd);
        CHECK(cvae_optimizer_set(adam, CVAE_OPT_CLIP_NORM, cases[c].clip), adam);
        CHECK(cvae_optimizer_set(adam, CVAE_OPT_LR, lr), adam);
        CHECK(cvae_optimizer_set(adam, CVAE_OPT_BETA1, b1), adam);
        CHECK(cvae_optimizer_set(adam, CVAE_OPT_BETA2, b2), adam);
        /* Adam's first step is lr g / (|g| + eps): with a large eps it shows g's size. */
        CHECK(cvae_optimizer_set(adam, CVAE_OPT_EPS, eps), adam);
        CHECK(cvae_optimizer_step(sgd, ps, g, NP), sgd);
        CHECK(cvae_optimizer_step(adam, pa, g, NP), adam);
        cvi_optimizer_get_state(adam, &as);
        for (i = 0; i < NP; i++) {
            const double gs = cases[c].scale * g[i];
            /* SGD's first step: b = g_clipped + wd p; p -= lr b. */
            expect_close("sgd p", (int)c, i, ps[i], p0[i] - lr * (gs + wd * p0[i]), lr);
            /* Adam's first step: mhat = g_clipped, sqrt(vhat) = |g_clipped|. */
            expect_close("adam m", (int)c, i, as.m[i], (1.0 - b1) * gs, 0.0);
            expect_close("adam p", (int)c, i, pa[i], p0[i] - lr * gs / (fabs(gs) + eps), lr);
        }
        drop(sgd);
        drop(adam);
    }
}

/* A snapshot of everything a refused step must leave alone. */
typedef struct snapshot {
    float p[NP], m[NP], v[NP];
    uint64_t t;
    double options[CVI_OPT_NOPTIONS];
} snapshot;

static void take_snapshot(cvae_optimizer *o, const float *p, snapshot *s)
{
    cvi_optimizer_state st;
    int i;
    memset(s, 0, sizeof *s);
    cvi_optimizer_get_state(o, &st);
    memcpy(s->p, p, sizeof s->p);
    memcpy(s->m, st.m, sizeof s->m);
    if (st.v)
        memcpy(s->v, st.v, sizeof s->v);
    s->t = *st.t;
    for (i = 0; i < CVI_OPT_NOPTIONS; i++)
        s->options[i] = *st.options[i];
}

static void expect_unchanged(cvae_optimizer *o, const float *p, const snapshot *before)
{
    snapshot now;
    take_snapshot(o, p, &now);
    assert_memory_equal(&now, before, sizeof now);
    assert_int_equal(cvae_optimizer_steps(o), before->t);
}

/* Fails if a NaN or infinite gradient is not refused with CVAE_ERR_NUMERIC, or if the refused
 * step still changes a parameter, a moment, the momentum buffer or the step count. */
static void test_nonfinite_gradient(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    int k, b, at;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *o = make_opt(kinds[k], NP);
        float p[NP];
        snapshot before;
        memcpy(p, p_start, sizeof p);
        /* One good step first, so the state is not all zeros. */
        CHECK(cvae_optimizer_step(o, p, g_steps[0], NP), o);
        for (at = 0; at < NP; at++) {
            for (b = 0; b < 3; b++) {
                float g[NP];
                memcpy(g, g_steps[1], sizeof g);
                g[at] = bad[b];
                /* With and without clipping: a scale computed from a NaN norm is NaN too. */
                CHECK(cvae_optimizer_set(o, CVAE_OPT_CLIP_NORM, (b & 1) ? 1.0 : 0.0), o);
                take_snapshot(o, p, &before);
                assert_int_equal(cvae_optimizer_step(o, p, g, NP), CVAE_ERR_NUMERIC);
                /* Named as the gradient's fault whether the norm was needed (clipping) or
                 * not (the checking pass refuses it, then the norm names it). */
                assert_non_null(strstr(cvae_optimizer_last_error(o), "gradient is not finite"));
                expect_unchanged(o, p, &before);
            }
        }
        /* And the optimizer still works afterwards. */
        CHECK(cvae_optimizer_step(o, p, g_steps[1], NP), o);
        assert_int_equal(cvae_optimizer_steps(o), 2);
        drop(o);
    }
}

/* Fails if a finite gradient whose square (Adam: 1e30 squared) or running sum (SGD: 3e38 twice)
 * overflows the float state is taken (found by fuzzing: Adam's v became +inf behind a CVAE_OK
 * and the saved file no longer loaded), if the refused step changes anything, or if the same
 * gradient clipped to norm 1 is refused. */
static void test_gradient_too_large_for_state(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    const float huge[2] = {1e30f, 3e38f};
    int k, i, taken;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *o = make_opt(kinds[k], NP);
        float p[NP], g[NP];
        snapshot before;
        cvae_status st = CVAE_OK;
        memcpy(p, p_start, sizeof p);
        CHECK(cvae_optimizer_step(o, p, g_steps[0], NP), o);
        memcpy(g, g_steps[1], sizeof g);
        g[1] = huge[k];
        /* Adam overflows at once, SGD's momentum at the second such step. */
        for (taken = 0; taken < 3; taken++) {
            take_snapshot(o, p, &before);
            if ((st = cvae_optimizer_step(o, p, g, NP)) != CVAE_OK)
                break;
            for (i = 0; i < NP; i++)
                assert_true(isfinite(p[i]));
        }
        assert_int_equal(taken, k == 0 ? 0 : 1);
        assert_int_equal(st, CVAE_ERR_NUMERIC);
        assert_non_null(strstr(cvae_optimizer_last_error(o), "non-finite"));
        expect_unchanged(o, p, &before);
        /* Clipped to norm 1 first: taken, and the state stays finite. */
        CHECK(cvae_optimizer_set(o, CVAE_OPT_CLIP_NORM, 1.0), o);
        CHECK(cvae_optimizer_step(o, p, g, NP), o);
        for (i = 0; i < NP; i++)
            assert_true(isfinite(p[i]));
        drop(o);
    }
}

/* Fails if an update that would make a parameter or the state infinite from finite values
 * (a learning rate of 1e100, which the option accepts; found by fuzzing a model file) is taken,
 * or if the refused step changes anything or leaves the optimizer unusable. */
static void test_update_overflow_refused(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    int k;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *o = make_opt(kinds[k], NP);
        float p[NP];
        snapshot before;
        memcpy(p, p_start, sizeof p);
        CHECK(cvae_optimizer_step(o, p, g_steps[0], NP), o);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, 1e100), o);
        take_snapshot(o, p, &before);
        assert_int_equal(cvae_optimizer_step(o, p, g_steps[1], NP), CVAE_ERR_NUMERIC);
        assert_non_null(strstr(cvae_optimizer_last_error(o), "non-finite"));
        expect_unchanged(o, p, &before);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, 1e-3), o);
        CHECK(cvae_optimizer_step(o, p, g_steps[1], NP), o);
        assert_int_equal(cvae_optimizer_steps(o), 2);
        drop(o);
    }
}

/* Fails if a step over a block of another length is not refused with CVAE_ERR_SHAPE before
 * anything changes, or if NULL blocks are not refused. */
static void test_wrong_size(void **state)
{
    cvae_optimizer *o = make_opt(CVAE_OPTIMIZER_ADAM, NP);
    float p[NP + 1] = {0.5f, 0.25f, -0.5f, 7.0f};
    const float g[NP + 1] = {1.0f, 2.0f, 3.0f, 4.0f};
    snapshot before;
    (void)state;
    CHECK(cvae_optimizer_step(o, p, g, NP), o);
    take_snapshot(o, p, &before);
    assert_int_equal(cvae_optimizer_step(o, p, g, NP + 1), CVAE_ERR_SHAPE);
    assert_true(cvae_optimizer_last_error(o)[0] != '\0');
    expect_unchanged(o, p, &before);
    assert_true(p[NP] == 7.0f);
    assert_int_equal(cvae_optimizer_step(o, p, g, NP - 1), CVAE_ERR_SHAPE);
    expect_unchanged(o, p, &before);
    assert_int_equal(cvae_optimizer_step(o, p, g, 0), CVAE_ERR_SHAPE);
    expect_unchanged(o, p, &before);
    assert_int_equal(cvae_optimizer_step(o, NULL, g, NP), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_step(o, p, NULL, NP), CVAE_ERR_INVALID_ARG);
    expect_unchanged(o, p, &before);
    assert_int_equal(cvae_optimizer_step(NULL, p, g, NP), CVAE_ERR_INVALID_ARG);
    drop(o);
}

/* Fails if the constructor accepts a bad kind or size, leaves *out set on failure, or if a
 * NULL handle is not handled by every function. */
static void test_create_and_null(void **state)
{
    cvae_optimizer *o = (cvae_optimizer *)&o; /* garbage that must be overwritten */
    double v = 0.0, lo = 0.0, hi = 0.0;
    (void)state;
    assert_int_equal(cvae_optimizer_create(NULL, CVAE_OPTIMIZER_ADAM, 3), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_create(&o, (cvae_optimizer_kind)0, 3), CVAE_ERR_INVALID_ARG);
    assert_null(o);
    o = (cvae_optimizer *)&o;
    assert_int_equal(cvae_optimizer_create(&o, (cvae_optimizer_kind)3, 3), CVAE_ERR_INVALID_ARG);
    assert_null(o);
    o = (cvae_optimizer *)&o;
    assert_int_equal(cvae_optimizer_create(&o, CVAE_OPTIMIZER_SGD, 0), CVAE_ERR_INVALID_ARG);
    assert_null(o);
    cvae_optimizer_destroy(NULL);
    assert_int_equal(cvae_optimizer_get_kind(NULL), 0);
    assert_int_equal(cvae_optimizer_steps(NULL), 0);
    assert_non_null(cvae_optimizer_last_error(NULL));
    assert_int_equal(cvae_optimizer_set(NULL, CVAE_OPT_LR, 0.1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_get(NULL, CVAE_OPT_LR, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_bounds(NULL, CVAE_OPT_LR, &lo, &hi), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_load(NULL, "/nonexistent"), CVAE_ERR_INVALID_ARG);

    o = make_opt(CVAE_OPTIMIZER_SGD, 1);
    assert_int_equal(cvae_optimizer_get_kind(o), CVAE_OPTIMIZER_SGD);
    assert_int_equal(cvae_optimizer_steps(o), 0);
    assert_string_equal(cvae_optimizer_last_error(o), "");
    assert_int_equal(cvae_optimizer_get(o, CVAE_OPT_LR, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_bounds(o, CVAE_OPT_LR, NULL, &hi), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_bounds(o, CVAE_OPT_LR, &lo, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_load(o, NULL), CVAE_ERR_INVALID_ARG);
    drop(o);
    o = make_opt(CVAE_OPTIMIZER_ADAM, 5);
    assert_int_equal(cvae_optimizer_get_kind(o), CVAE_OPTIMIZER_ADAM);
    drop(o);
}

/* Fails if a default differs from cvae.h (lr 1e-3 Adam, 1e-2 SGD; betas 0.9, 0.999; eps
 * 1e-8; momentum 0.9; weight decay and clipping off), or if a kind answers for a key it
 * lacks (momentum for Adam; betas and eps for SGD). */
static void test_defaults(void **state)
{
    cvae_optimizer *adam = make_opt(CVAE_OPTIMIZER_ADAM, 2);
    cvae_optimizer *sgd = make_opt(CVAE_OPTIMIZER_SGD, 2);
    double v;
    (void)state;
#define EXPECT(o, key, want)                                                                       \
    do {                                                                                           \
        v = -1.0;                                                                                  \
        CHECK(cvae_optimizer_get(o, key, &v), o);                                                  \
        if (v != (want))                                                                           \
            fail_msg("%s: default %d is %.17g, expected %.17g", #o, (int)(key), v, (want));        \
    } while (0)
    EXPECT(adam, CVAE_OPT_LR, 1e-3);
    EXPECT(adam, CVAE_OPT_BETA1, 0.9);
    EXPECT(adam, CVAE_OPT_BETA2, 0.999);
    EXPECT(adam, CVAE_OPT_EPS, 1e-8);
    EXPECT(adam, CVAE_OPT_WEIGHT_DECAY, 0.0);
    EXPECT(adam, CVAE_OPT_CLIP_NORM, 0.0);
    EXPECT(sgd, CVAE_OPT_LR, 1e-2);
    EXPECT(sgd, CVAE_OPT_MOMENTUM, 0.9);
    EXPECT(sgd, CVAE_OPT_WEIGHT_DECAY, 0.0);
    EXPECT(sgd, CVAE_OPT_CLIP_NORM, 0.0);
#undef EXPECT
    assert_int_equal(cvae_optimizer_get(adam, CVAE_OPT_MOMENTUM, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_get(sgd, CVAE_OPT_BETA1, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_get(sgd, CVAE_OPT_BETA2, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_get(sgd, CVAE_OPT_EPS, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_get(adam, (cvae_optimizer_option)108, &v),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_get(adam, (cvae_optimizer_option)99, &v), CVAE_ERR_INVALID_ARG);
    drop(adam);
    drop(sgd);
}

/* Fails if a value set is not read back exactly (as a double, not rounded to float), or if
 * setting one option changes another. */
static void test_set_get_round_trip(void **state)
{
    static const struct {
        cvae_optimizer_kind kind;
        cvae_optimizer_option key;
        double value;
    } cases[] = {
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_LR, 0.0123456789012345},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA1, 0.876543210987654},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA2, 0.99987654321},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_EPS, 3.14159e-7},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_WEIGHT_DECAY, 0.0271828},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_CLIP_NORM, 4.75},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_LR, 0.3333333333333333},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_MOMENTUM, 0.0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_MOMENTUM, 0.123456789},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_WEIGHT_DECAY, 1e-5},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_CLIP_NORM, 1e6},
    };
    size_t c;
    (void)state;
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cvae_optimizer *o = make_opt(cases[c].kind, 4);
        cvi_optimizer_state st;
        double others[CVI_OPT_NOPTIONS], v = -1.0;
        int i, slot = (int)cases[c].key - CVAE_OPT_LR;
        cvi_optimizer_get_state(o, &st);
        for (i = 0; i < CVI_OPT_NOPTIONS; i++)
            others[i] = *st.options[i];
        CHECK(cvae_optimizer_set(o, cases[c].key, cases[c].value), o);
        CHECK(cvae_optimizer_get(o, cases[c].key, &v), o);
        if (v != cases[c].value)
            fail_msg("key %d: set %.17g, read %.17g", (int)cases[c].key, cases[c].value, v);
        for (i = 0; i < CVI_OPT_NOPTIONS; i++)
            if (i != slot && *st.options[i] != others[i])
                fail_msg("setting key %d changed option %d", (int)cases[c].key, i);
        drop(o);
    }
}

/* Fails if an out-of-range or non-finite value, or a key the kind lacks, is accepted, or if a
 * refused set changes the value or leaves no message; or if the edges of a range are
 * refused (beta1 0, momentum 0, weight decay 0, clip 0). */
static void test_option_ranges(void **state)
{
    static const struct {
        cvae_optimizer_kind kind;
        cvae_optimizer_option key;
        double value;
        int ok;
    } cases[] = {
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_LR, 0.0, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_LR, -1e-3, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_LR, NAN, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_LR, INFINITY, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_LR, 0.0, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_LR, -0.5, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_LR, NAN, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_LR, 5.0, 1},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA1, 1.0, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA1, -0.1, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA1, NAN, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA1, 0.0, 1},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA2, 1.0, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA2, 1.5, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA2, 0.0, 1},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_EPS, 0.0, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_EPS, -1e-8, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_EPS, INFINITY, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_WEIGHT_DECAY, -1e-9, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_WEIGHT_DECAY, NAN, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_WEIGHT_DECAY, 0.0, 1},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_WEIGHT_DECAY, -1.0, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_CLIP_NORM, -1.0, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_CLIP_NORM, NAN, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_CLIP_NORM, 0.0, 1},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_MOMENTUM, 1.0, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_MOMENTUM, -0.5, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_MOMENTUM, 0.0, 1},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_AVERAGE, 1.0, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_AVERAGE, -0.1, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_AVERAGE, NAN, 0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_AVERAGE, 0.0, 1},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_AVERAGE, 0.999, 1},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_AVERAGE, 0.5, 1},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_AVERAGE, INFINITY, 0},
        /* Keys the kind lacks, with values that would otherwise be fine. */
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_MOMENTUM, 0.5, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_BETA1, 0.5, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_BETA2, 0.5, 0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_EPS, 1e-6, 0},
        {CVAE_OPTIMIZER_ADAM, (cvae_optimizer_option)108, 0.5, 0},
        {CVAE_OPTIMIZER_SGD, (cvae_optimizer_option)99, 0.5, 0},
        {CVAE_OPTIMIZER_SGD, (cvae_optimizer_option)300, 0.5, 0},
    };
    size_t c;
    (void)state;
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cvae_optimizer *o = make_opt(cases[c].kind, 2);
        cvi_optimizer_state st;
        double before[CVI_OPT_NOPTIONS];
        cvae_status s;
        int i;
        cvi_optimizer_get_state(o, &st);
        for (i = 0; i < CVI_OPT_NOPTIONS; i++)
            before[i] = *st.options[i];
        s = cvae_optimizer_set(o, cases[c].key, cases[c].value);
        if (cases[c].ok) {
            double v = -1.0;
            if (s != CVAE_OK)
                fail_msg("case %zu: key %d = %g refused: %s", c, (int)cases[c].key, cases[c].value,
                         cvae_optimizer_last_error(o));
            CHECK(cvae_optimizer_get(o, cases[c].key, &v), o);
            assert_true(v == cases[c].value);
        } else {
            if (s != CVAE_ERR_INVALID_ARG)
                fail_msg("case %zu: kind %d key %d = %g gave %s, expected bad argument", c,
                         (int)cases[c].kind, (int)cases[c].key, cases[c].value,
                         cvae_status_string(s));
            assert_true(cvae_optimizer_last_error(o)[0] != '\0');
            for (i = 0; i < CVI_OPT_NOPTIONS; i++)
                if (memcmp(st.options[i], &before[i], sizeof before[i]) != 0)
                    fail_msg("case %zu: a refused set changed option %d", c, i);
        }
        drop(o);
    }
}

/* Fails if a reported bound is itself refused, if the value just outside a bound is accepted,
 * or if a bound is reported for a key the kind lacks. Bounds are inclusive (cvae.h): an open
 * end (lr > 0, beta < 1) is reported as the nearest double inside, an unbounded top as
 * DBL_MAX. */
static void test_option_bounds(void **state)
{
    static const struct {
        cvae_optimizer_kind kind;
        cvae_optimizer_option key;
        double lo, hi; /* the range as cvae.h states it, before the rule for open ends */
    } cases[] = {
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_LR, 0.0, INFINITY},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA1, 0.0, 1.0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_BETA2, 0.0, 1.0},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_EPS, 0.0, INFINITY},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_WEIGHT_DECAY, 0.0, INFINITY},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_CLIP_NORM, 0.0, INFINITY},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_LR, 0.0, INFINITY},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_MOMENTUM, 0.0, 1.0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_WEIGHT_DECAY, 0.0, INFINITY},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_CLIP_NORM, 0.0, INFINITY},
        {CVAE_OPTIMIZER_ADAM, CVAE_OPT_AVERAGE, 0.0, 1.0},
        {CVAE_OPTIMIZER_SGD, CVAE_OPT_AVERAGE, 0.0, 1.0},
    };
    size_t c;
    (void)state;
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cvae_optimizer *o = make_opt(cases[c].kind, 2);
        cvae_optimizer_option key = cases[c].key;
        double lo = NAN, hi = NAN;
        CHECK(cvae_optimizer_bounds(o, key, &lo, &hi), o);
        /* lo is either the closed 0 or, for an open 0 (lr, eps), the smallest double > 0. */
        if (key == CVAE_OPT_LR || key == CVAE_OPT_EPS)
            assert_true(lo == nextafter(0.0, 1.0));
        else
            assert_true(lo == 0.0);
        assert_true(hi == (cases[c].hi == 1.0 ? nextafter(1.0, 0.0) : DBL_MAX));
        if (cvae_optimizer_set(o, key, lo) != CVAE_OK)
            fail_msg("case %zu: lower bound %g refused: %s", c, lo, cvae_optimizer_last_error(o));
        if (cvae_optimizer_set(o, key, hi) != CVAE_OK)
            fail_msg("case %zu: upper bound %g refused: %s", c, hi, cvae_optimizer_last_error(o));
        /* Just outside: below lo, and above hi (1 for the betas, +inf for DBL_MAX). */
        assert_int_equal(cvae_optimizer_set(o, key, nextafter(lo, -1.0)), CVAE_ERR_INVALID_ARG);
        assert_int_equal(cvae_optimizer_set(o, key, nextafter(hi, INFINITY)), CVAE_ERR_INVALID_ARG);
        drop(o);
    }
    {
        cvae_optimizer *adam = make_opt(CVAE_OPTIMIZER_ADAM, 2);
        cvae_optimizer *sgd = make_opt(CVAE_OPTIMIZER_SGD, 2);
        double lo, hi;
        assert_int_equal(cvae_optimizer_bounds(adam, CVAE_OPT_MOMENTUM, &lo, &hi),
                         CVAE_ERR_INVALID_ARG);
        assert_int_equal(cvae_optimizer_bounds(sgd, CVAE_OPT_BETA1, &lo, &hi),
                         CVAE_ERR_INVALID_ARG);
        assert_int_equal(cvae_optimizer_bounds(sgd, CVAE_OPT_EPS, &lo, &hi), CVAE_ERR_INVALID_ARG);
        assert_int_equal(cvae_optimizer_bounds(sgd, (cvae_optimizer_option)108, &lo, &hi),
                         CVAE_ERR_INVALID_ARG);
        drop(adam);
        drop(sgd);
    }
}

/* ------------------------------------------------------------------ running average */

#define AN 50         /* parameters of the averaging tests */
#define AVG_RTOL 1e-5 /* the float average against its double reference */

/* The running average as cvae.h documents it, worked out in double from the parameters after
 * each averaged step: a = p at the first, then a = d_k a + (1 - d_k) p with
 * d_k = min(d, (1 + k) / (10 + k)) after k of them. scale[i] is the largest |p_i| seen: the
 * float average rounds each update at about 6e-8 of it, and those errors decay with d, so
 * their sum stays far below AVG_RTOL (at most 1e-6 at d = 0.9; 2.4e-7 measured), while a
 * decay off by 1e-3 moves the average by about 1e-4 of the parameters' size. */
typedef struct ref_average {
    double decay;
    uint64_t k; /* averaged steps so far */
    double a[AN], scale[AN];
} ref_average;

static void ref_average_update(ref_average *r, const float *p)
{
    const double warm = (1.0 + (double)r->k) / (10.0 + (double)r->k);
    const double dk = warm < r->decay ? warm : r->decay;
    int i;
    for (i = 0; i < AN; i++) {
        r->a[i] = r->k == 0 ? (double)p[i] : dk * r->a[i] + (1.0 - dk) * (double)p[i];
        r->scale[i] = fmax(r->scale[i], fabs((double)p[i]));
    }
    r->k++;
}

/* Fails unless avg is within AVG_RTOL of the reference (relative to the larger of the value
 * and the parameters' size, so that an average crossing 0 is held to what float allows). */
static void expect_reference_average(const char *what, int step, const ref_average *r,
                                     const float *avg)
{
    int i;
    for (i = 0; i < AN; i++) {
        const double tol = AVG_RTOL * fmax(fabs(r->a[i]), r->scale[i]);
        if (!(fabs((double)avg[i] - r->a[i]) <= tol))
            fail_msg("%s: average[%d] after step %d (averaged step %llu): got %.9g, expected "
                     "%.9g (error %.2g, allowed %.2g)",
                     what, i, step, (unsigned long long)r->k, (double)avg[i], r->a[i],
                     fabs((double)avg[i] - r->a[i]), tol);
    }
}

/* Fails unless avg (after averaged step k + 1, k > 0) is bit for bit the documented float
 * update of prev (the average before the step) with the parameters p after it:
 * d = (float)d_k, c = (float)(1 - d_k) with d_k formed in double, then d prev + c p in float.
 * A compiler that contracts the update into a fused multiply-add is allowed either way. */
static void expect_float_update(const char *what, int step, double decay, uint64_t k,
                                const float *prev, const float *p, const float *avg)
{
    const double warm = (1.0 + (double)k) / (10.0 + (double)k);
    const double dk = warm < decay ? warm : decay;
    const float d = (float)dk, c = (float)(1.0 - dk);
    int i;
    for (i = 0; i < AN; i++) {
        const float t1 = d * prev[i];
        const float t2 = c * p[i];
        const float plain = t1 + t2, fused1 = fmaf(d, prev[i], t2), fused2 = fmaf(c, p[i], t1);
        if (memcmp(&avg[i], &plain, 4) != 0 && memcmp(&avg[i], &fused1, 4) != 0 &&
            memcmp(&avg[i], &fused2, 4) != 0)
            fail_msg("%s: average[%d] after step %d is %.9g, the float update %.9g * %.9g + "
                     "%.9g * %.9g gives %.9g",
                     what, i, step, (double)avg[i], (double)d, (double)prev[i], (double)c,
                     (double)p[i], (double)plain);
    }
}

/* An optimizer over AN parameters whose steps move them a lot (so that a wrong decay shows
 * far above AVG_RTOL): lr 0.05 for Adam, 0.02 with the default momentum 0.9 for SGD. */
static cvae_optimizer *average_opt(cvae_optimizer_kind kind, double decay)
{
    cvae_optimizer *o = make_opt(kind, AN);
    CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, kind == CVAE_OPTIMIZER_ADAM ? 0.05 : 0.02), o);
    if (decay > 0.0)
        CHECK(cvae_optimizer_set(o, CVAE_OPT_AVERAGE, decay), o);
    return o;
}

/* AN values uniform in [-1, 1), each exact in float. */
static void fill_sym(float *v, tu_rng *r)
{
    int i;
    for (i = 0; i < AN; i++)
        v[i] = tu_rng_sym(r);
}

/* Runs `plain` steps without the average, then sets it to decay and runs `averaged` steps,
 * with a twin optimizer that never averages taking the same steps. After every averaged step:
 * the average matches the double reference (bit for bit at the first averaged step, where it
 * is p) and is bit for bit the documented float update of the previous average, swapping it into
 * the live parameters and back restores them bit for bit, the second swap brings the same average
 * again, and the parameters and moments stay bit-identical to the twin's (the average must not
 * steer training). Before the first averaged step, swapping is refused with CVAE_ERR_STATE. */
static void run_average(cvae_optimizer_kind kind, double decay, int plain, int averaged,
                        uint64_t seed)
{
    cvae_optimizer *o = average_opt(kind, 0.0), *twin = average_opt(kind, 0.0);
    cvi_optimizer_state so, st;
    ref_average ref;
    float p[AN], pt[AN], g[AN], avg[AN], again[AN], keep[AN], prev[AN];
    tu_rng r;
    int s;
    char what[64];
    snprintf(what, sizeof what, "%s d=%g after %d plain steps",
             kind == CVAE_OPTIMIZER_ADAM ? "adam" : "sgd", decay, plain);
    memset(&ref, 0, sizeof ref);
    ref.decay = decay;
    tu_rng_init(&r, seed);
    fill_sym(p, &r);
    memcpy(pt, p, sizeof pt);
    cvi_optimizer_get_state(o, &so);
    cvi_optimizer_get_state(twin, &st);
    for (s = 1; s <= plain + averaged; s++) {
        if (s == plain + 1) {
            memcpy(keep, p, sizeof keep);
            assert_int_equal(cvae_optimizer_swap_average(o, p, AN), CVAE_ERR_STATE);
            CHECK(cvae_optimizer_set(o, CVAE_OPT_AVERAGE, decay), o);
            /* Set but not yet stepped: nothing averaged. */
            assert_int_equal(cvae_optimizer_swap_average(o, p, AN), CVAE_ERR_STATE);
            assert_memory_equal(p, keep, sizeof keep);
            assert_int_equal(cvae_optimizer_average_swapped(o), 0);
        }
        fill_sym(g, &r);
        CHECK(cvae_optimizer_step(o, p, g, AN), o);
        CHECK(cvae_optimizer_step(twin, pt, g, AN), twin);
        assert_int_equal(cvae_optimizer_steps(o), (uint64_t)s);
        assert_memory_equal(p, pt, sizeof p);
        assert_memory_equal(so.m, st.m, AN * sizeof(float));
        if (so.v)
            assert_memory_equal(so.v, st.v, AN * sizeof(float));
        if (s <= plain)
            continue;
        ref_average_update(&ref, p);
        tu_read_average(o, p, AN, avg);
        if (s == plain + 1)
            assert_memory_equal(avg, p, sizeof p); /* a = p, exactly */
        else
            expect_float_update(what, s, decay, ref.k - 1, prev, p, avg);
        expect_reference_average(what, s, &ref, avg);
        memcpy(prev, avg, sizeof prev);
        /* The same through the live parameters, as a caller evaluates the average. */
        memcpy(keep, p, sizeof keep);
        CHECK(cvae_optimizer_swap_average(o, p, AN), o);
        assert_int_equal(cvae_optimizer_average_swapped(o), 1);
        assert_memory_equal(p, avg, sizeof p);
        CHECK(cvae_optimizer_swap_average(o, p, AN), o);
        assert_int_equal(cvae_optimizer_average_swapped(o), 0);
        assert_memory_equal(p, keep, sizeof p);
        tu_read_average(o, p, AN, again);
        assert_memory_equal(again, avg, sizeof avg);
    }
    drop(o);
    drop(twin);
}

/* Fails if the running average departs from its documented formula: a = p at the first
 * averaged step, a wrong or missing warm-up (1 + k) / (10 + k), a missing cap at d (at
 * d = 0.9 the warm-up reaches d at k = 80, so 120 steps see both; at d = 0.5 at k = 8), a
 * warm-up counted from the optimizer's steps rather than the averaged ones (7 plain steps
 * first), an average of the parameters before rather than after the step; or if swapping is
 * not an exact exchange, or the average changes training. Adam and SGD. */
static void test_average_matches_reference(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    int k;
    (void)state;
    for (k = 0; k < 2; k++) {
        run_average(kinds[k], 0.9, 0, 120, 11 + (uint64_t)k);
        run_average(kinds[k], 0.5, 0, 30, 21 + (uint64_t)k);
        run_average(kinds[k], 0.9, 7, 30, 31 + (uint64_t)k);
    }
}

/* Fails if cvae_optimizer_swap_average accepts a NULL handle or params (CVAE_ERR_INVALID_ARG),
 * a block of another size (CVAE_ERR_SHAPE) or an optimizer that has averaged nothing
 * (CVAE_ERR_STATE: never set, set but no step since, steps taken before it was set), if a
 * refused swap changes the parameters or the flag, or if cvae_optimizer_average_swapped(NULL)
 * is not 0. */
static void test_average_swap_errors(void **state)
{
    cvae_optimizer *o = average_opt(CVAE_OPTIMIZER_ADAM, 0.0);
    float p[AN + 1], g[AN], keep[AN + 1], avg[AN];
    tu_rng r;
    (void)state;
    tu_rng_init(&r, 5);
    fill_sym(p, &r);
    p[AN] = 42.0f;
    fill_sym(g, &r);
    memcpy(keep, p, sizeof keep);
    assert_int_equal(cvae_optimizer_average_swapped(NULL), 0);
    assert_int_equal(cvae_optimizer_swap_average(NULL, p, AN), CVAE_ERR_INVALID_ARG);
    /* Never set. */
    assert_int_equal(cvae_optimizer_swap_average(o, p, AN), CVAE_ERR_STATE);
    assert_true(cvae_optimizer_last_error(o)[0] != '\0');
    /* Steps taken without it. */
    CHECK(cvae_optimizer_step(o, p, g, AN), o);
    memcpy(keep, p, sizeof keep);
    assert_int_equal(cvae_optimizer_swap_average(o, p, AN), CVAE_ERR_STATE);
    /* Set, no step since. */
    CHECK(cvae_optimizer_set(o, CVAE_OPT_AVERAGE, 0.75), o);
    assert_int_equal(cvae_optimizer_swap_average(o, p, AN), CVAE_ERR_STATE);
    assert_memory_equal(p, keep, sizeof keep);
    assert_int_equal(cvae_optimizer_average_swapped(o), 0);
    /* One averaged step: arguments are checked still. */
    CHECK(cvae_optimizer_step(o, p, g, AN), o);
    memcpy(keep, p, sizeof keep);
    assert_int_equal(cvae_optimizer_swap_average(o, NULL, AN), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_swap_average(o, p, AN + 1), CVAE_ERR_SHAPE);
    assert_true(cvae_optimizer_last_error(o)[0] != '\0');
    assert_int_equal(cvae_optimizer_swap_average(o, p, AN - 1), CVAE_ERR_SHAPE);
    assert_int_equal(cvae_optimizer_swap_average(o, p, 0), CVAE_ERR_SHAPE);
    assert_int_equal(cvae_optimizer_swap_average(NULL, p, AN), CVAE_ERR_INVALID_ARG);
    assert_memory_equal(p, keep, sizeof keep);
    assert_true(p[AN] == 42.0f);
    assert_int_equal(cvae_optimizer_average_swapped(o), 0);
    /* The refused calls toggled nothing: the average after one step is p, and swapping works. */
    tu_read_average(o, p, AN, avg);
    assert_memory_equal(avg, p, sizeof avg);
    /* Refused while swapped too, the flag staying 1. */
    CHECK(cvae_optimizer_swap_average(o, p, AN), o);
    assert_int_equal(cvae_optimizer_swap_average(o, p, AN + 1), CVAE_ERR_SHAPE);
    assert_int_equal(cvae_optimizer_swap_average(o, NULL, AN), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_optimizer_average_swapped(o), 1);
    CHECK(cvae_optimizer_swap_average(o, p, AN), o);
    assert_memory_equal(p, keep, sizeof keep);
    assert_int_equal(cvae_optimizer_average_swapped(o), 0);
    drop(o);
}

/* Fails if a step while the average is swapped in is not refused with CVAE_ERR_STATE, or if
 * the refused step changes the parameters (the average, then), the step count, the moments
 * or the stored training weights and average (swapped back and forth, bit for bit), or if the
 * optimizer does not go on exactly as a twin that never swapped. Adam and SGD. */
static void test_average_step_refused_while_swapped(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    int k, s;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *o = average_opt(kinds[k], 0.9), *twin = average_opt(kinds[k], 0.9);
        cvi_optimizer_state so;
        float p[AN], pt[AN], g[AN], train_p[AN], avg[AN], m[AN], v[AN], avg_t[AN];
        tu_rng r;
        tu_rng_init(&r, 40 + (uint64_t)k);
        fill_sym(p, &r);
        memcpy(pt, p, sizeof pt);
        for (s = 0; s < 4; s++) {
            fill_sym(g, &r);
            CHECK(cvae_optimizer_step(o, p, g, AN), o);
            CHECK(cvae_optimizer_step(twin, pt, g, AN), twin);
        }
        cvi_optimizer_get_state(o, &so);
        memcpy(m, so.m, sizeof m);
        if (so.v)
            memcpy(v, so.v, sizeof v);
        memcpy(train_p, p, sizeof train_p);
        CHECK(cvae_optimizer_swap_average(o, p, AN), o);
        memcpy(avg, p, sizeof avg);
        fill_sym(g, &r);
        assert_int_equal(cvae_optimizer_step(o, p, g, AN), CVAE_ERR_STATE);
        assert_true(cvae_optimizer_last_error(o)[0] != '\0');
        assert_int_equal(cvae_optimizer_step(o, p, g, AN), CVAE_ERR_STATE);
        assert_memory_equal(p, avg, sizeof p);
        assert_int_equal(cvae_optimizer_steps(o), 4);
        assert_int_equal(cvae_optimizer_average_swapped(o), 1);
        assert_memory_equal(so.m, m, sizeof m);
        if (so.v)
            assert_memory_equal(so.v, v, sizeof v);
        /* Swapped back: the training weights, then the average, unchanged. */
        CHECK(cvae_optimizer_swap_average(o, p, AN), o);
        assert_memory_equal(p, train_p, sizeof p);
        tu_read_average(o, p, AN, avg_t);
        assert_memory_equal(avg_t, avg, sizeof avg);
        /* And it goes on as the twin, average included (the count was not moved). */
        CHECK(cvae_optimizer_step(o, p, g, AN), o);
        CHECK(cvae_optimizer_step(twin, pt, g, AN), twin);
        assert_int_equal(cvae_optimizer_steps(o), 5);
        assert_memory_equal(p, pt, sizeof p);
        tu_read_average(o, p, AN, avg);
        tu_read_average(twin, pt, AN, avg_t);
        assert_memory_equal(avg, avg_t, sizeof avg);
        drop(o);
        drop(twin);
    }
}

/* Fails if a refused step (a non-finite gradient; an update that would overflow, lr 1e100)
 * changes the average or its count: after the refusals the average is bit for bit what it
 * was, and one more good step gives bit for bit the average of a twin that was never refused
 * (a count moved by a refused step would change the decay of that step). Adam and SGD. */
static void test_average_refused_step_keeps_average(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    int k, s, b;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *o = average_opt(kinds[k], 0.9), *twin = average_opt(kinds[k], 0.9);
        float p[AN], pt[AN], g[AN], gbad[AN], before[AN], after[AN], keep[AN];
        double lr;
        tu_rng r;
        tu_rng_init(&r, 50 + (uint64_t)k);
        fill_sym(p, &r);
        memcpy(pt, p, sizeof pt);
        for (s = 0; s < 3; s++) {
            fill_sym(g, &r);
            CHECK(cvae_optimizer_step(o, p, g, AN), o);
            CHECK(cvae_optimizer_step(twin, pt, g, AN), twin);
        }
        tu_read_average(o, p, AN, before);
        memcpy(keep, p, sizeof keep);
        fill_sym(g, &r);
        for (b = 0; b < 3; b++) {
            memcpy(gbad, g, sizeof gbad);
            gbad[(7 * b) % AN] = bad[b];
            assert_int_equal(cvae_optimizer_step(o, p, gbad, AN), CVAE_ERR_NUMERIC);
        }
        CHECK(cvae_optimizer_get(o, CVAE_OPT_LR, &lr), o);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, 1e100), o);
        assert_int_equal(cvae_optimizer_step(o, p, g, AN), CVAE_ERR_NUMERIC);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, lr), o);
        assert_int_equal(cvae_optimizer_steps(o), 3);
        assert_memory_equal(p, keep, sizeof p);
        tu_read_average(o, p, AN, after);
        assert_memory_equal(after, before, sizeof after);
        CHECK(cvae_optimizer_step(o, p, g, AN), o);
        CHECK(cvae_optimizer_step(twin, pt, g, AN), twin);
        assert_memory_equal(p, pt, sizeof p);
        tu_read_average(o, p, AN, after);
        tu_read_average(twin, pt, AN, before);
        assert_memory_equal(after, before, sizeof after);
        drop(o);
        drop(twin);
    }
}

/* Fails if setting CVAE_OPT_AVERAGE back to 0 does not stop the updates (the average stays
 * bit for bit as it was over further steps that move the parameters), or loses the average
 * (swapping must still work and give it), or if the option does not read back as 0. */
static void test_average_off_stops_updates(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    int k, s;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *o = average_opt(kinds[k], 0.5);
        float p[AN], g[AN], frozen[AN], now[AN], keep[AN];
        double d = -1.0;
        tu_rng r;
        tu_rng_init(&r, 60 + (uint64_t)k);
        fill_sym(p, &r);
        for (s = 0; s < 5; s++) {
            fill_sym(g, &r);
            CHECK(cvae_optimizer_step(o, p, g, AN), o);
        }
        tu_read_average(o, p, AN, frozen);
        CHECK(cvae_optimizer_set(o, CVAE_OPT_AVERAGE, 0.0), o);
        CHECK(cvae_optimizer_get(o, CVAE_OPT_AVERAGE, &d), o);
        assert_true(d == 0.0);
        for (s = 0; s < 6; s++) {
            memcpy(keep, p, sizeof keep);
            fill_sym(g, &r);
            CHECK(cvae_optimizer_step(o, p, g, AN), o);
            assert_memory_not_equal(p, keep, sizeof p); /* the parameters do move */
            tu_read_average(o, p, AN, now);
            assert_memory_equal(now, frozen, sizeof now);
        }
        assert_int_equal(cvae_optimizer_steps(o), 11);
        drop(o);
    }
}

/* Fails if the average is on by default (CVAE_OPT_AVERAGE must read 0 and a swap after steps
 * must be refused: nothing averaged), or if an optimizer with the average on trains otherwise
 * than one without: parameters and moments must be bit-identical after every step, with
 * weight decay and clipping on too. Adam and SGD. */
static void test_average_does_not_change_training(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    int k, s;
    (void)state;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *off = make_opt(kinds[k], AN), *on = make_opt(kinds[k], AN);
        cvi_optimizer_state soff, son;
        float poff[AN], pon[AN], g[AN];
        double d = -1.0;
        tu_rng r;
        CHECK(cvae_optimizer_get(off, CVAE_OPT_AVERAGE, &d), off);
        assert_true(d == 0.0);
        CHECK(cvae_optimizer_set(on, CVAE_OPT_AVERAGE, 0.99), on);
        CHECK(cvae_optimizer_set(off, CVAE_OPT_WEIGHT_DECAY, 0.01), off);
        CHECK(cvae_optimizer_set(on, CVAE_OPT_WEIGHT_DECAY, 0.01), on);
        CHECK(cvae_optimizer_set(off, CVAE_OPT_CLIP_NORM, 2.0), off);
        CHECK(cvae_optimizer_set(on, CVAE_OPT_CLIP_NORM, 2.0), on);
        cvi_optimizer_get_state(off, &soff);
        cvi_optimizer_get_state(on, &son);
        tu_rng_init(&r, 70 + (uint64_t)k);
        fill_sym(poff, &r);
        memcpy(pon, poff, sizeof pon);
        for (s = 1; s <= 40; s++) {
            fill_sym(g, &r);
            CHECK(cvae_optimizer_step(off, poff, g, AN), off);
            CHECK(cvae_optimizer_step(on, pon, g, AN), on);
            assert_memory_equal(poff, pon, sizeof poff);
            assert_memory_equal(soff.m, son.m, AN * sizeof(float));
            if (soff.v)
                assert_memory_equal(soff.v, son.v, AN * sizeof(float));
            assert_int_equal(cvae_optimizer_steps(off), cvae_optimizer_steps(on));
        }
        assert_int_equal(cvae_optimizer_swap_average(off, poff, AN), CVAE_ERR_STATE);
        assert_int_equal(cvae_optimizer_average_swapped(off), 0);
        drop(off);
        drop(on);
    }
}

/* ------------------------------------------------------ the passes' variants */

/* Parameters of the variant tests: above the 65,536 from which a step splits its passes over
 * threads, and not a multiple of any vector width, so that vector bodies, their scalar tails
 * and the cut between two threads all run. */
#define VN 70001
#define VSTEPS 3

/* n floats, freed by the teardown (release_all). */
static float *keep_floats(size_t n)
{
    return tu_keep(TU_KEEP_MEMORY, malloc(n * sizeof(float)));
}

static int release_all(void **state)
{
    destroy_owned(state);
    return tu_release_all_teardown(state);
}

/* The gradient of step t at element i: both signs, a spread of sizes, some zeros. */
static float variant_grad(int t, size_t i)
{
    unsigned h = (unsigned)(i * 2654435761u + (unsigned)t * 40503u);
    if (h % 11 == 0)
        return 0.0f;
    return ((float)(h % 2001) - 1000.0f) * 1e-4f * (float)(1 + h % 7);
}

/* An optimizer of kind over n parameters with options that make every term count: weight
 * decay, momentum for SGD, the running average; its passes' variant set to path. */
static cvae_optimizer *variant_opt(cvae_optimizer_kind kind, size_t n, cvi_gemm_path path)
{
    cvae_optimizer *o = make_opt(kind, n);
    CHECK(cvae_optimizer_set(o, CVAE_OPT_LR, 1e-2), o);
    CHECK(cvae_optimizer_set(o, CVAE_OPT_WEIGHT_DECAY, 0.05), o);
    CHECK(cvae_optimizer_set(o, CVAE_OPT_AVERAGE, 0.9), o);
    cvi_optimizer_set_path(o, path);
    return o;
}

/* Runs VSTEPS steps of kind over VN parameters on the variant path and the given threads;
 * leaves parameters, moments and average in out (4 VN floats; unused ones stay 0). */
static void variant_run(cvae_optimizer_kind kind, cvi_gemm_path path, int threads, float *out,
                        float *grad)
{
    cvae_optimizer *o = variant_opt(kind, VN, path);
    cvi_optimizer_state st;
    float *p = out;
    size_t i;
    int t;
    for (i = 0; i < VN; i++)
        p[i] = ((float)(i % 97) - 48.0f) * 1e-3f;
    for (t = 1; t <= VSTEPS; t++) {
        for (i = 0; i < VN; i++)
            grad[i] = variant_grad(t, i);
        CHECK(cvi_optimizer_step(o, p, grad, VN, threads), o);
    }
    cvi_optimizer_get_state(o, &st);
    memcpy(out + VN, st.m, VN * sizeof(float));
    if (st.v)
        memcpy(out + 2 * VN, st.v, VN * sizeof(float));
    memcpy(out + 3 * VN, st.avg, VN * sizeof(float));
    drop(o);
}

/* The step from element i to the next checked alone: every element of the first 2,048 (whole
 * vectors), of the last 64 (the tail) and around the middle (where two threads' ranges meet),
 * every stride-th elsewhere. */
static size_t one_by_one(size_t i, size_t stride)
{
    if (i < 2048 || i + 64 >= VN || (i + 64 > VN / 2 && i < VN / 2 + 64))
        return 1;
    return stride;
}

/* Fails unless the elements of a long run (vector bodies) are bit for bit what a run of that
 * one element alone gives (the scalar code, which the hand-worked tests check), for the
 * baseline passes and, where this CPU has them, the AVX2 and AVX-512 ones, on 1 and 2 threads:
 * a wrong lane, a contracted multiply-add or a lost element in any variant shows. */
static void test_variants_same_bits(void **state)
{
    const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    const cvi_gemm_path paths[3] = {CVI_GEMM_PATH_PORTABLE, CVI_GEMM_PATH_AVX2,
                                   CVI_GEMM_PATH_AVX512};
    float *runs = keep_floats(4 * VN), *grad = keep_floats(VN);
    size_t stride = tu_under_valgrind() ? 997 : 31;
    int k, v, th, compared = 0;
    (void)state;
    for (k = 0; k < 2; k++)
        for (v = 0; v < 3; v++)
            for (th = 1; th <= 2; th++) {
                size_t i;
                if (!cvi_gemm_path_available(paths[v]))
                    continue;
                memset(runs, 0, 4 * VN * sizeof(float));
                variant_run(kinds[k], paths[v], th, runs, grad);
                for (i = 0; i < VN; i += one_by_one(i, stride)) {
                    cvae_optimizer *one = variant_opt(kinds[k], 1, CVI_GEMM_PATH_PORTABLE);
                    cvi_optimizer_state st;
                    float p = ((float)(i % 97) - 48.0f) * 1e-3f, g;
                    int t;
                    for (t = 1; t <= VSTEPS; t++) {
                        g = variant_grad(t, i);
                        CHECK(cvae_optimizer_step(one, &p, &g, 1), one);
                    }
                    cvi_optimizer_get_state(one, &st);
                    if (memcmp(&p, runs + i, sizeof p) || memcmp(st.m, runs + VN + i, sizeof p) ||
                        (st.v && memcmp(st.v, runs + 2 * VN + i, sizeof p)) ||
                        memcmp(st.avg, runs + 3 * VN + i, sizeof p))
                        fail_msg("%s, %s passes, %d thread(s): element %zu is p %.9g m %.9g "
                                 "avg %.9g, alone %.9g %.9g %.9g",
                                 k ? "sgd" : "adam", cvi_gemm_path_name(paths[v]), th, i,
                                 runs[i], runs[VN + i], runs[3 * VN + i], p, st.m[0], st.avg[0]);
                    drop(one);
                }
                compared++;
            }
    /* The baseline on 1 and 2 threads, for both kinds, at least. */
    assert_true(compared >= 4);
}

/* Fails if a variant's checking pass misses a moment that overflows, or a NaN gradient, inside
 * a vector body (element 1,000 of VN): the step must be refused with nothing changed and the
 * right cause named, on every variant. */
static void test_variants_refuse_overflow(void **state)
{
    const cvi_gemm_path paths[3] = {CVI_GEMM_PATH_PORTABLE, CVI_GEMM_PATH_AVX2,
                                   CVI_GEMM_PATH_AVX512};
    float *p = keep_floats(VN), *p0 = keep_floats(VN), *g = keep_floats(VN);
    int v, th;
    size_t i;
    (void)state;
    for (v = 0; v < 3; v++)
        for (th = 1; th <= 2; th++) {
            cvae_optimizer *o;
            cvi_optimizer_state st;
            if (!cvi_gemm_path_available(paths[v]))
                continue;
            o = variant_opt(CVAE_OPTIMIZER_ADAM, VN, paths[v]);
            for (i = 0; i < VN; i++) {
                p[i] = 0.01f;
                g[i] = variant_grad(1, i);
            }
            CHECK(cvi_optimizer_step(o, p, g, VN, th), o);
            memcpy(p0, p, VN * sizeof(float));
            g[1000] = 1e30f; /* finite; its square overflows v */
            assert_int_equal(cvi_optimizer_step(o, p, g, VN, th), CVAE_ERR_NUMERIC);
            assert_non_null(strstr(cvae_optimizer_last_error(o), "would make"));
            assert_memory_equal(p, p0, VN * sizeof(float));
            g[1000] = NAN; /* refused by the checking pass, named by the norm */
            assert_int_equal(cvi_optimizer_step(o, p, g, VN, th), CVAE_ERR_NUMERIC);
            assert_non_null(strstr(cvae_optimizer_last_error(o), "gradient is not finite"));
            assert_memory_equal(p, p0, VN * sizeof(float));
            cvi_optimizer_get_state(o, &st);
            assert_true(st.v[1000] < 1.0f);
            assert_int_equal(cvae_optimizer_steps(o), 1);
            drop(o);
        }
}

/* Fails unless Adam steps that skip the checking pass, because a bound shows that nothing can
 * overflow, leave parameters, moments and average bit for bit as steps that always run it, on
 * 1 and 2 threads over 9 steps with clipping and the average switched off and on again; or if
 * the bound vouches for fewer than 6 of the 8 steps after the first (a first step, knowing
 * nothing of the moments, always checks): then the skip is lost. That the bound never lets an
 * overflow through is test_variants_refuse_overflow's and test_update_overflow_refused's
 * (their refused steps follow a stored one). */
static void test_light_checks_same_bits(void **state)
{
    float *p1 = keep_floats(VN), *p2 = keep_floats(VN), *g = keep_floats(VN);
    int th;
    (void)state;
    for (th = 1; th <= 2; th++) {
        cvae_optimizer *o1 = variant_opt(CVAE_OPTIMIZER_ADAM, VN, CVI_GEMM_PATH_AUTO);
        cvae_optimizer *o2 = variant_opt(CVAE_OPTIMIZER_ADAM, VN, CVI_GEMM_PATH_AUTO);
        cvi_optimizer_state s1, s2;
        size_t i;
        int t;
        cvi_optimizer_set_light_checks(o2, 0);
        CHECK(cvae_optimizer_set(o1, CVAE_OPT_CLIP_NORM, 1.0), o1);
        CHECK(cvae_optimizer_set(o2, CVAE_OPT_CLIP_NORM, 1.0), o2);
        for (i = 0; i < VN; i++)
            p1[i] = p2[i] = ((float)(i % 97) - 48.0f) * 1e-3f;
        for (t = 1; t <= 9; t++) {
            double avg = t == 4 ? 0.0 : t == 6 ? 0.9 : -1.0;
            if (avg >= 0.0) {
                CHECK(cvae_optimizer_set(o1, CVAE_OPT_AVERAGE, avg), o1);
                CHECK(cvae_optimizer_set(o2, CVAE_OPT_AVERAGE, avg), o2);
            }
            for (i = 0; i < VN; i++)
                g[i] = variant_grad(t, i);
            CHECK(cvi_optimizer_step(o1, p1, g, VN, th), o1);
            CHECK(cvi_optimizer_step(o2, p2, g, VN, th), o2);
        }
        cvi_optimizer_get_state(o1, &s1);
        cvi_optimizer_get_state(o2, &s2);
        assert_memory_equal(p1, p2, VN * sizeof(float));
        assert_memory_equal(s1.m, s2.m, VN * sizeof(float));
        assert_memory_equal(s1.v, s2.v, VN * sizeof(float));
        assert_memory_equal(s1.avg, s2.avg, VN * sizeof(float));
        if (cvi_optimizer_light_steps(o1) < 6 || cvi_optimizer_light_steps(o2) != 0)
            fail_msg("%d thread(s): %llu of 9 steps skipped the check (and %llu with the bound "
                     "off)",
                     th, (unsigned long long)cvi_optimizer_light_steps(o1),
                     (unsigned long long)cvi_optimizer_light_steps(o2));
        drop(o1);
        drop(o2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_adam_by_hand, destroy_owned),
        cmocka_unit_test_teardown(test_adam_defaults_by_hand, destroy_owned),
        cmocka_unit_test_teardown(test_adamw_by_hand, destroy_owned),
        cmocka_unit_test_teardown(test_sgd_momentum_by_hand, destroy_owned),
        cmocka_unit_test_teardown(test_clip_norm, destroy_owned),
        cmocka_unit_test_teardown(test_nonfinite_gradient, destroy_owned),
        cmocka_unit_test_teardown(test_gradient_too_large_for_state, destroy_owned),
        cmocka_unit_test_teardown(test_update_overflow_refused, destroy_owned),
        cmocka_unit_test_teardown(test_wrong_size, destroy_owned),
        cmocka_unit_test_teardown(test_create_and_null, destroy_owned),
        cmocka_unit_test_teardown(test_defaults, destroy_owned),
        cmocka_unit_test_teardown(test_set_get_round_trip, destroy_owned),
        cmocka_unit_test_teardown(test_option_ranges, destroy_owned),
        cmocka_unit_test_teardown(test_option_bounds, destroy_owned),
        cmocka_unit_test_teardown(test_average_matches_reference, destroy_owned),
        cmocka_unit_test_teardown(test_average_swap_errors, destroy_owned),
        cmocka_unit_test_teardown(test_average_step_refused_while_swapped, destroy_owned),
        cmocka_unit_test_teardown(test_average_refused_step_keeps_average, destroy_owned),
        cmocka_unit_test_teardown(test_average_off_stops_updates, destroy_owned),
        cmocka_unit_test_teardown(test_average_does_not_change_training, destroy_owned),
        cmocka_unit_test_teardown(test_variants_same_bits, release_all),
        cmocka_unit_test_teardown(test_variants_refuse_overflow, release_all),
        cmocka_unit_test_teardown(test_light_checks_same_bits, release_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
