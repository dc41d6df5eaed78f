/*
 * test_grad.c - every layer's backward pass against central finite differences.
 *
 * Each case builds a stack through the public API on an awkward shape (batch 3 of a maximum
 * batch of 5, non-square images, stride 2, padding 1, rectangular kernels, unequal channel
 * counts), takes the loss L = sum_i r_i * y_i over the stack output y with a fixed random r, so
 * that dL/dy = r, and compares the input and parameter gradients of cvae_stack_backward with
 * (L(v + h) - L(v - h)) / 2h for every input element and every parameter (with smaller or
 * one-sided steps where a ReLU kink lies within the interval). Two more tests check that
 * parameter gradients accumulate while the input gradient is overwritten, and that driving the
 * layers one by one (cvae_layer_forward / cvae_layer_backward) agrees with the stack.
 *
 * Left out: forward values against direct loops and the error paths (other test programs).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvae.h"
#include "testutil.h"

#define BATCH 3     /* images per forward: never 1, so batch indexing is exercised */
#define MAX_BATCH 5 /* built for more than BATCH, so code using max_batch for n shows */
#define MAX_LAYERS 7

/*
 * Finite-difference step h = 1e-2. Everything is float, so each L carries rounding errors of
 * about 1e-7 relative; the quotient divides them by 2h, 50x for h = 1e-2 against 500x for
 * h = 1e-3, while the O(h^2) truncation error of the central difference is ~1e-5 for sigmoid and
 * tanh at h = 1e-2 and zero for the piecewise-linear layers. 1e-2 is the better balance, and it
 * is still ten times smaller than the 0.1 gap single ReLU inputs keep from the kink. Only where
 * a ReLU kink lies too close (see numeric_derivative) are the smaller steps used; their larger
 * rounding errors still fit the tolerance. Rounding v +- h to float changes the step by at most
 * half an ulp of v, a relative 1e-4 of h at worst, far below the tolerance.
 */
#define NSTEPS 3
static const float fd_steps[NSTEPS] = {1e-2f, 3e-3f, 1e-3f};

/*
 * Pass when |num - ana| <= ATOL + RTOL * max(|num|, |ana|). The gradients here are mostly of
 * order 0.01 to 1, L sums a few hundred float outputs of order 1, and the numeric error is of
 * order 1e-5 with h = 1e-2 (measured: under 5% of this bound; under 40% on the fallback steps,
 * over 40 seeds), so a 1% relative tolerance with a 1e-3 absolute floor for gradients near zero
 * is honest for float kernels, while a sign flip, a swapped index or a missing term moves a
 * gradient by its own size and fails.
 */
#define RTOL 1e-2
#define ATOL 1e-3

/* A gradient above SIGNIFICANT = 5 * ATOL is checked to 20% or better even by the absolute
 * floor; at least a quarter of each case's gradients must be, or the case is degenerate. */
#define SIGNIFICANT (5.0 * ATOL)

/* Two runs of the same float code may differ only by reassociation: relative 1e-5, plus an
 * absolute floor of 1e-6 times the largest magnitude of the block compared. */
#define SAME_RTOL 1e-5
#define SAME_ATOL 1e-6

#define GARBAGE 1e30f /* pre-filled into din: it must be overwritten, not added to */

/* One layer: conv kinds p = out_channels, kh, kw, sh, sw, ph, pw; linear p[0] = out_features;
 * reshape p = channels, height, width; leaky_relu uses slope. */
typedef struct layer_spec {
    cvae_layer_kind kind;
    int p[7];
    float slope;
} layer_spec;

/* A stack to check: input shape c x h x w, inputs drawn as +-U(in_lo, in_hi), and the fraction
 * of values allowed to go unchecked for a ReLU kink too close (see numeric_derivative). */
typedef struct grad_case {
    const char *name;
    int c, h, w;
    float in_lo, in_hi;
    double max_skip;
    int nlayers;
    layer_spec layers[MAX_LAYERS];
} grad_case;

enum {
    CASE_CONV2D,
    CASE_CONV2D_UNCOVERED,
    CASE_CONVT2D,
    CASE_CONVT2D_S2P1,
    CASE_LINEAR,
    CASE_RELU,
    CASE_LEAKY_RELU,
    CASE_SIGMOID,
    CASE_TANH,
    CASE_FLATTEN,
    CASE_RESHAPE,
    CASE_ENCODER,
    CASE_DECODER,
    CASE_DENSE_DECODER,
    CASE_RELU_CHAINS,
    NCASES
};

/* One case per line reads better than clang-format's one field per line. */
/* clang-format off */
#define CONV(k, oc, kh, kw, sh, sw, ph, pw) {k, {oc, kh, kw, sh, sw, ph, pw}, 0.0f}
#define SHAPED(k, a, b, c) {k, {a, b, c, 0, 0, 0, 0}, 0.0f}
#define PLAIN(k) {k, {0, 0, 0, 0, 0, 0, 0}, 0.0f}
#define LEAKY(s) {CVAE_LAYER_LEAKY_RELU, {0, 0, 0, 0, 0, 0, 0}, s}

/* Shapes in the comments are C x H x W per image. */
static const grad_case cases[NCASES] = {
    /* 3x8x5 -> 4x4x6: kernel 3x2, stride 2x1, padding 1x1. */
    {"conv2d", 3, 8, 5, 0.0f, 1.0f, 0.0, 1,
     {CONV(CVAE_LAYER_CONV2D, 4, 3, 2, 2, 1, 1, 1)}},
    /* 2x7x9 -> 5x3x5: kernel 2x3, stride 2x2, padding 0x1; input row 6 is read by no window,
     * so its gradient must come out 0 despite the garbage in din. */
    {"conv2d_uncovered_row", 2, 7, 9, 0.0f, 1.0f, 0.0, 1,
     {CONV(CVAE_LAYER_CONV2D, 5, 2, 3, 2, 2, 0, 1)}},
    /* 4x3x5 -> 3x5x6: kernel 3x2, stride 2x1, padding 1x0. */
    {"conv_transpose2d", 4, 3, 5, 0.0f, 1.0f, 0.0, 1,
     {CONV(CVAE_LAYER_CONV_TRANSPOSE2D, 3, 3, 2, 2, 1, 1, 0)}},
    /* 3x4x3 -> 5x8x5: kernel 4x3, stride 2x2, padding 1x1. */
    {"conv_transpose2d_s2p1", 3, 4, 3, 0.0f, 1.0f, 0.0, 1,
     {CONV(CVAE_LAYER_CONV_TRANSPOSE2D, 5, 4, 3, 2, 2, 1, 1)}},
    /* 2x3x4 (24 features) -> 5x1x1. */
    {"linear", 2, 3, 4, 0.0f, 1.0f, 0.0, 1,
     {SHAPED(CVAE_LAYER_LINEAR, 5, 0, 0)}},
    /* |x| >= 0.1 keeps every input ten steps away from the kink. */
    {"relu", 2, 3, 5, 0.1f, 1.0f, 0.0, 1,
     {PLAIN(CVAE_LAYER_RELU)}},
    /* Slope 0.2, not the default, so a hard-coded slope shows; |x| >= 0.1 as for relu. */
    {"leaky_relu", 3, 4, 2, 0.1f, 1.0f, 0.0, 1,
     {LEAKY(0.2f)}},
    {"sigmoid", 2, 5, 3, 0.0f, 3.0f, 0.0, 1,
     {PLAIN(CVAE_LAYER_SIGMOID)}},
    {"tanh", 3, 2, 4, 0.0f, 2.0f, 0.0, 1,
     {PLAIN(CVAE_LAYER_TANH)}},
    {"flatten", 3, 4, 2, 0.0f, 1.0f, 0.0, 1,
     {PLAIN(CVAE_LAYER_FLATTEN)}},
    {"reshape", 2, 3, 4, 0.0f, 1.0f, 0.0, 1,
     {SHAPED(CVAE_LAYER_RESHAPE, 4, 3, 2)}},
    /* 2x9x7 -> conv 4x5x8 -> relu -> conv 3x4x4 -> flatten 48 -> linear 6 -> tanh. */
    {"encoder", 2, 9, 7, 0.0f, 1.0f, 0.1, 6,
     {CONV(CVAE_LAYER_CONV2D, 4, 3, 2, 2, 1, 1, 1), PLAIN(CVAE_LAYER_RELU),
      CONV(CVAE_LAYER_CONV2D, 3, 2, 3, 1, 2, 0, 1), PLAIN(CVAE_LAYER_FLATTEN),
      SHAPED(CVAE_LAYER_LINEAR, 6, 0, 0), PLAIN(CVAE_LAYER_TANH)}},
    /* 3x3x4 -> convT 4x5x8 -> leaky relu -> convT 2x6x15 -> sigmoid. */
    {"decoder", 3, 3, 4, 0.0f, 1.0f, 0.1, 4,
     {CONV(CVAE_LAYER_CONV_TRANSPOSE2D, 4, 3, 2, 2, 2, 1, 0), LEAKY(0.1f),
      CONV(CVAE_LAYER_CONV_TRANSPOSE2D, 2, 2, 3, 1, 2, 0, 1), PLAIN(CVAE_LAYER_SIGMOID)}},
    /* 2x3x4 -> linear 30 -> reshape 2x3x5 -> convT 3x5x8 -> sigmoid. */
    {"dense_decoder", 2, 3, 4, 0.0f, 1.0f, 0.0, 4,
     {SHAPED(CVAE_LAYER_LINEAR, 30, 0, 0), SHAPED(CVAE_LAYER_RESHAPE, 2, 3, 5),
      CONV(CVAE_LAYER_CONV_TRANSPOSE2D, 3, 3, 2, 2, 2, 1, 1), PLAIN(CVAE_LAYER_SIGMOID)}},
    /* 2x3x4 -> linear 8 -> tanh -> relu -> linear 6 -> sigmoid -> relu -> relu: stacks run
     * relus in place, over the outputs a tanh's or sigmoid's backward reads. */
    {"relu_chains", 2, 3, 4, 0.0f, 1.0f, 0.1, 7,
     {SHAPED(CVAE_LAYER_LINEAR, 8, 0, 0), PLAIN(CVAE_LAYER_TANH), PLAIN(CVAE_LAYER_RELU),
      SHAPED(CVAE_LAYER_LINEAR, 6, 0, 0), PLAIN(CVAE_LAYER_SIGMOID), PLAIN(CVAE_LAYER_RELU),
      PLAIN(CVAE_LAYER_RELU)}},
};
/* clang-format on */

/* A built stack with its data. Sizes count floats for the whole batch of BATCH images. */
typedef struct fixture {
    const grad_case *gc;
    cvae_stack *stack;
    size_t nin, nout, nparams;
    float *x;                    /* (BATCH, c, h, w) input */
    float *r;                    /* (BATCH, output shape) loss weights, = dL/dy */
    float *y;                    /* (BATCH, output shape) copy of a stack output */
    float *din, *din2;           /* (BATCH, c, h, w) input gradients */
    float *grads;                /* (nparams) copy of the gradient block */
    float *act[MAX_LAYERS + 1];  /* layer path: act[0] the input, act[i+1] layer i's output */
    float *dact[MAX_LAYERS + 1]; /* layer path: dL/dact[i]; dact[nlayers] unused (r is used) */
    size_t act_size[MAX_LAYERS + 1];
    int last_kink;             /* index of the last relu / leaky relu layer, -1 if none */
    size_t nkink;              /* floats entering relu / leaky relu layers */
    unsigned char *kink_at_v0; /* (nkink) which of them are > 0 at the unmoved point */
    unsigned char *kink_probe; /* (nkink) the same at a moved point */
    double loss0;              /* L at the unmoved point */
} fixture;

typedef struct fixtures {
    fixture fx[NCASES];
} fixtures;

/* +-U(lo, hi) with a random sign. */
static float signed_uniform(uint64_t *s, float lo, float hi)
{
    const float mag = lo + (hi - lo) * tu_uniform01(s);
    return (tu_next_u64(s) & 1u) ? mag : -mag;
}

static int is_kink_kind(cvae_layer_kind kind)
{
    return kind == CVAE_LAYER_RELU || kind == CVAE_LAYER_LEAKY_RELU;
}

static cvae_status make_layer(cvae_layer **out, const layer_spec *s)
{
    const int *p = s->p;
    switch (s->kind) {
    case CVAE_LAYER_CONV2D:
        return cvae_layer_create_conv2d(out, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    case CVAE_LAYER_CONV_TRANSPOSE2D:
        return cvae_layer_create_conv_transpose2d(out, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    case CVAE_LAYER_LINEAR:
        return cvae_layer_create_linear(out, p[0]);
    case CVAE_LAYER_RELU:
        return cvae_layer_create_relu(out);
    case CVAE_LAYER_LEAKY_RELU:
        return cvae_layer_create_leaky_relu(out, s->slope);
    case CVAE_LAYER_SIGMOID:
        return cvae_layer_create_sigmoid(out);
    case CVAE_LAYER_TANH:
        return cvae_layer_create_tanh(out);
    case CVAE_LAYER_FLATTEN:
        return cvae_layer_create_flatten(out);
    case CVAE_LAYER_RESHAPE:
        return cvae_layer_create_reshape(out, p[0], p[1], p[2]);
    default:
        *out = NULL;
        return CVAE_ERR_INVALID_ARG;
    }
}

static void fixture_free(fixture *fx)
{
    int i;
    cvae_stack_destroy(fx->stack);
    free(fx->x);
    free(fx->r);
    free(fx->y);
    free(fx->din);
    free(fx->din2);
    free(fx->grads);
    for (i = 0; i <= MAX_LAYERS; i++) {
        free(fx->act[i]);
        free(fx->dact[i]);
    }
    free(fx->kink_at_v0);
    free(fx->kink_probe);
    memset(fx, 0, sizeof *fx);
}

/* Creates and builds the stack of gc (parameters from seed) and allocates every buffer.
 * Returns 0, or -1 after printing why; fixture_free cleans up either way. */
static int fixture_init(fixture *fx, const grad_case *gc, uint64_t seed)
{
    uint64_t rng = seed ^ UINT64_C(0x5DEECE66D);
    size_t j;
    int i, c, h, w;
    cvae_status st;
    fx->gc = gc;
    fx->last_kink = -1;
    if (cvae_stack_create(&fx->stack) != CVAE_OK) {
        print_error("%s: cvae_stack_create failed\n", gc->name);
        return -1;
    }
    for (i = 0; i < gc->nlayers; i++) {
        cvae_layer *layer = NULL;
        st = make_layer(&layer, &gc->layers[i]);
        if (st == CVAE_OK)
            st = cvae_stack_add(fx->stack, layer); /* owns layer, even on failure */
        if (st != CVAE_OK) {
            print_error("%s: layer %d: %s\n", gc->name, i, cvae_status_string(st));
            return -1;
        }
    }
    st = cvae_stack_build(fx->stack, gc->c, gc->h, gc->w, MAX_BATCH, seed);
    if (st != CVAE_OK) {
        print_error("%s: build: %s\n", gc->name, cvae_stack_last_error(fx->stack));
        return -1;
    }
    fx->act_size[0] = (size_t)BATCH * (size_t)(gc->c * gc->h * gc->w);
    for (i = 0; i < gc->nlayers; i++) {
        cvae_layer *layer = cvae_stack_layer(fx->stack, i);
        if (cvae_layer_output_shape(layer, &c, &h, &w) != CVAE_OK) {
            print_error("%s: no output shape for layer %d\n", gc->name, i);
            return -1;
        }
        fx->act_size[i + 1] = (size_t)BATCH * (size_t)(c * h * w);
        if (is_kink_kind(cvae_layer_get_kind(layer))) {
            fx->last_kink = i;
            fx->nkink += fx->act_size[i];
        }
    }
    if (cvae_stack_output_shape(fx->stack, &c, &h, &w) != CVAE_OK) {
        print_error("%s: no output shape\n", gc->name);
        return -1;
    }
    fx->nin = fx->act_size[0];
    fx->nout = (size_t)BATCH * (size_t)(c * h * w);
    if (fx->nout != fx->act_size[gc->nlayers]) {
        print_error("%s: stack output %zu floats, last layer %zu\n", gc->name, fx->nout,
                    fx->act_size[gc->nlayers]);
        return -1;
    }
    cvae_stack_params(fx->stack, &fx->nparams);
    fx->x = calloc(fx->nin, sizeof(float));
    fx->din = calloc(fx->nin, sizeof(float));
    fx->din2 = calloc(fx->nin, sizeof(float));
    fx->r = calloc(fx->nout, sizeof(float));
    fx->y = calloc(fx->nout, sizeof(float));
    fx->grads = calloc(fx->nparams + 1, sizeof(float));
    fx->kink_at_v0 = calloc(fx->nkink + 1, 1);
    fx->kink_probe = calloc(fx->nkink + 1, 1);
    if (!fx->x || !fx->din || !fx->din2 || !fx->r || !fx->y || !fx->grads || !fx->kink_at_v0 ||
        !fx->kink_probe)
        goto nomem;
    for (i = 0; i <= gc->nlayers; i++) {
        fx->act[i] = calloc(fx->act_size[i], sizeof(float));
        fx->dact[i] = calloc(fx->act_size[i], sizeof(float));
        if (!fx->act[i] || !fx->dact[i])
            goto nomem;
    }
    for (j = 0; j < fx->nin; j++)
        fx->x[j] = signed_uniform(&rng, gc->in_lo, gc->in_hi);
    for (j = 0; j < fx->nout; j++)
        fx->r[j] = signed_uniform(&rng, 0.0f, 1.0f);
    return 0;
nomem:
    print_error("%s: out of memory\n", gc->name);
    return -1;
}

static int setup_all(void **state)
{
    fixtures *all = calloc(1, sizeof *all);
    int i;
    if (!all)
        return -1;
    for (i = 0; i < NCASES; i++) {
        if (fixture_init(&all->fx[i], &cases[i], 1000u + (uint64_t)i) != 0) {
            for (; i >= 0; i--)
                fixture_free(&all->fx[i]);
            free(all);
            return -1;
        }
    }
    *state = all;
    return 0;
}

static int teardown_all(void **state)
{
    fixtures *all = *state;
    int i;
    for (i = 0; i < NCASES; i++)
        fixture_free(&all->fx[i]);
    free(all);
    return 0;
}

static void fill(float *v, size_t n, float value)
{
    size_t i;
    for (i = 0; i < n; i++)
        v[i] = value;
}

static double max_abs(const float *v, size_t n)
{
    double m = 0.0;
    size_t i;
    for (i = 0; i < n; i++)
        m = fmax(m, fabs((double)v[i]));
    return m;
}

/* L = sum_i r_i * y_i over the stack output for input x, accumulated in double. */
static double loss_at(fixture *fx)
{
    const float *y = NULL;
    double loss = 0.0;
    size_t i;
    assert_int_equal(cvae_stack_forward(fx->stack, fx->x, BATCH, &y), CVAE_OK);
    assert_non_null(y);
    for (i = 0; i < fx->nout; i++)
        loss += (double)fx->r[i] * (double)y[i];
    return loss;
}

/* Runs layers 0 .. upto - 1 one by one: act[0] = x, act[i + 1] = layer i (act[i]). */
static void layer_path_forward(fixture *fx, int upto)
{
    int i;
    memcpy(fx->act[0], fx->x, fx->nin * sizeof(float));
    for (i = 0; i < upto; i++)
        assert_int_equal(
            cvae_layer_forward(cvae_stack_layer(fx->stack, i), fx->act[i], fx->act[i + 1], BATCH),
            CVAE_OK);
}

/* pat[k] = 1 where the k-th value entering a relu / leaky relu layer is > 0. */
static void kink_pattern(fixture *fx, unsigned char *pat)
{
    size_t k = 0, j;
    int i;
    layer_path_forward(fx, fx->last_kink);
    for (i = 0; i <= fx->last_kink; i++) {
        if (!is_kink_kind(cvae_layer_get_kind(cvae_stack_layer(fx->stack, i))))
            continue;
        for (j = 0; j < fx->act_size[i]; j++)
            pat[k++] = fx->act[i][j] > 0.0f;
    }
}

/* L with *v moved to v0 + k * h, then *v restored to v0 bit for bit. *kinked is set when some
 * value entering a relu / leaky relu layer has another sign than at v0 (fx->kink_at_v0). */
static double loss_moved(fixture *fx, float *v, float v0, int k, float h, int *kinked)
{
    double loss;
    *v = v0 + (float)k * h;
    loss = loss_at(fx);
    *kinked = 0;
    if (fx->nkink) {
        kink_pattern(fx, fx->kink_probe);
        *kinked = memcmp(fx->kink_probe, fx->kink_at_v0, fx->nkink) != 0;
    }
    *v = v0;
    return loss;
}

/*
 * dL/dv by finite differences for *v, an input element or a parameter; fx->loss0 and
 * fx->kink_at_v0 must describe the unmoved point. Returns 0 if no difference could be taken.
 *
 * In a multi-layer stack, moving one value moves many ReLU inputs (a first-layer bias moves a
 * whole channel), and one of them crossing 0 inside the interval puts a kink there: the quotient
 * then mixes two slopes and cannot match the analytic gradient, which uses the slopes at v0. In
 * these stacks every ReLU input is affine in each value upstream of it, so a crossing between
 * v0 and v0 + k*h shows exactly as a sign change at v0 + k*h. Hence, for each h of fd_steps in
 * turn: the central difference if neither v0 + h nor v0 - h changes a sign, else the
 * second-order one-sided difference (-3 L(0) + 4 L(h) - L(2h)) / 2h on a side that keeps every
 * sign up to 2h. The one-sided formula carries about four times the rounding error of the
 * central one, too close to ATOL at the smallest step, which therefore tries only the central
 * difference. A single h small enough to avoid every crossing would drown in rounding error, and
 * skipping the values whose own pre-activation lies within 2h of 0 would miss that one value
 * moves many pre-activations.
 */
static int numeric_derivative(fixture *fx, float *v, double *num)
{
    const float v0 = *v;
    int i, kinked_plus, kinked_minus, kinked2;
    for (i = 0; i < NSTEPS; i++) {
        const float h = fd_steps[i];
        const double lp = loss_moved(fx, v, v0, 1, h, &kinked_plus);
        const double lm = loss_moved(fx, v, v0, -1, h, &kinked_minus);
        double l2;
        if (!kinked_plus && !kinked_minus) {
            *num = (lp - lm) / (2.0 * h);
            return 1;
        }
        if (i == NSTEPS - 1)
            break;
        if (!kinked_plus) {
            l2 = loss_moved(fx, v, v0, 2, h, &kinked2);
            if (!kinked2) {
                *num = (4.0 * lp - 3.0 * fx->loss0 - l2) / (2.0 * h);
                return 1;
            }
        }
        if (!kinked_minus) {
            l2 = loss_moved(fx, v, v0, -2, h, &kinked2);
            if (!kinked2) {
                *num = (3.0 * fx->loss0 - 4.0 * lm + l2) / (2.0 * h);
                return 1;
            }
        }
    }
    return 0;
}

static int grad_close(double num, double ana)
{
    /* Written so that a NaN on either side fails. */
    return fabs(num - ana) <= ATOL + RTOL * fmax(fabs(num), fabs(ana));
}

static void describe_input(const fixture *fx, size_t i, char *buf, size_t len)
{
    const size_t w = (size_t)fx->gc->w, h = (size_t)fx->gc->h, c = (size_t)fx->gc->c;
    snprintf(buf, len, "input %zu (image %zu, channel %zu, row %zu, col %zu)", i, i / (c * h * w),
             i / (h * w) % c, i / w % h, i % w);
}

static void describe_param(fixture *fx, size_t k, char *buf, size_t len)
{
    size_t start = 0;
    int i;
    for (i = 0; i < fx->gc->nlayers; i++) {
        cvae_layer *layer = cvae_stack_layer(fx->stack, i);
        const size_t count = cvae_layer_param_count(layer);
        if (k < start + count) {
            snprintf(buf, len, "parameter %zu (layer %d %s, offset %zu of %zu)", k, i,
                     cvae_layer_kind_name(layer), k - start, count);
            return;
        }
        start += count;
    }
    snprintf(buf, len, "parameter %zu (beyond the layers' %zu)", k, start);
}

/* Counts of one side (inputs or parameters) of a gradient check. */
typedef struct tally {
    size_t checked, skipped, significant;
} tally;

/* Compares the numeric and analytic dL/dv, v being the index-th input or parameter. */
static void check_one(fixture *fx, float *v, double ana, int is_param, size_t index, tally *t)
{
    char where[160];
    double num;
    if (!numeric_derivative(fx, v, &num)) {
        t->skipped++;
        return;
    }
    t->checked++;
    if (fmax(fabs(num), fabs(ana)) > SIGNIFICANT)
        t->significant++;
    if (grad_close(num, ana))
        return;
    if (is_param)
        describe_param(fx, index, where, sizeof where);
    else
        describe_input(fx, index, where, sizeof where);
    fail_msg("%s: gradient of %s: numeric %.7g, analytic %.7g", fx->gc->name, where, num, ana);
}

/* A case where most gradients are ~0 would pass any tolerance, and one where many values go
 * unchecked would check little: both are failures of the test's set-up. */
static void check_tally(const fixture *fx, const char *side, const tally *t)
{
    const size_t total = t->checked + t->skipped;
    if ((double)t->skipped > fx->gc->max_skip * (double)total)
        fail_msg("%s: %zu of %zu %s gradients unchecked for a ReLU kink within 2h (limit %.0f%%)",
                 fx->gc->name, t->skipped, total, side, 100.0 * fx->gc->max_skip);
    if (4 * t->significant < t->checked)
        fail_msg("%s: only %zu of %zu %s gradients exceed %g: degenerate case", fx->gc->name,
                 t->significant, t->checked, side, SIGNIFICANT);
}

/* Analytic gradients into fx->din and fx->grads: zero_grad, forward, backward with dL/dy = r
 * and din pre-filled with garbage. */
static void analytic_gradients(fixture *fx)
{
    const float *g;
    assert_int_equal(cvae_stack_zero_grad(fx->stack), CVAE_OK);
    assert_int_equal(cvae_stack_forward(fx->stack, fx->x, BATCH, NULL), CVAE_OK);
    fill(fx->din, fx->nin, GARBAGE);
    assert_int_equal(cvae_stack_backward(fx->stack, fx->r, BATCH, fx->din), CVAE_OK);
    g = cvae_stack_grads(fx->stack, NULL);
    if (fx->nparams)
        memcpy(fx->grads, g, fx->nparams * sizeof(float));
}

static void check_gradients(fixture *fx)
{
    float *params = cvae_stack_params(fx->stack, NULL);
    tally tin = {0, 0, 0}, tpar = {0, 0, 0};
    size_t i;

    analytic_gradients(fx);
    fx->loss0 = loss_at(fx);
    if (fx->nkink)
        kink_pattern(fx, fx->kink_at_v0);
    for (i = 0; i < fx->nin; i++)
        check_one(fx, &fx->x[i], fx->din[i], 0, i, &tin);
    check_tally(fx, "input", &tin);
    for (i = 0; i < fx->nparams; i++)
        check_one(fx, &params[i], fx->grads[i], 1, i, &tpar);
    if (fx->nparams)
        check_tally(fx, "parameter", &tpar);
}

/* got must equal mult * want up to reassociation (SAME_RTOL, SAME_ATOL). */
static void expect_same(const fixture *fx, const char *what, const float *got, const float *want,
                        size_t n, double mult)
{
    const double floor_abs = SAME_ATOL * mult * max_abs(want, n);
    size_t i;
    for (i = 0; i < n; i++) {
        const double expect = mult * (double)want[i];
        if (!(fabs((double)got[i] - expect) <= floor_abs + SAME_RTOL * fabs(expect)))
            fail_msg("%s: %s [%zu]: got %.9g, expected %.9g", fx->gc->name, what, i, (double)got[i],
                     expect);
    }
}

static fixture *case_fixture(void **state, int which)
{
    fixtures *all = *state;
    return &all->fx[which];
}

/* Fails if conv2d's weight, bias or input gradient is wrong (stride 2 rows, padding 1, 3x2). */
static void test_grad_conv2d(void **state) { check_gradients(case_fixture(state, CASE_CONV2D)); }

/* Fails if conv2d mishandles an input row no window reads (stride 2x2, padding along w only). */
static void test_grad_conv2d_uncovered_row(void **state)
{
    check_gradients(case_fixture(state, CASE_CONV2D_UNCOVERED));
}

/* Fails if conv_transpose2d's (in, out, kh, kw) weight, bias or input gradient is wrong. */
static void test_grad_conv_transpose2d(void **state)
{
    check_gradients(case_fixture(state, CASE_CONVT2D));
}

/* Fails if conv_transpose2d is wrong with stride 2 and padding 1 on both axes. */
static void test_grad_conv_transpose2d_s2p1(void **state)
{
    check_gradients(case_fixture(state, CASE_CONVT2D_S2P1));
}

/* Fails if linear's (out, in) weight, bias or input gradient is wrong on a C x H x W input. */
static void test_grad_linear(void **state) { check_gradients(case_fixture(state, CASE_LINEAR)); }

/* Fails if relu passes gradient through negative inputs or blocks it for positive ones. */
static void test_grad_relu(void **state) { check_gradients(case_fixture(state, CASE_RELU)); }

/* Fails if leaky_relu ignores its slope (0.2) for negative inputs. */
static void test_grad_leaky_relu(void **state)
{
    check_gradients(case_fixture(state, CASE_LEAKY_RELU));
}

/* Fails if sigmoid's derivative is not y * (1 - y). */
static void test_grad_sigmoid(void **state) { check_gradients(case_fixture(state, CASE_SIGMOID)); }

/* Fails if tanh's derivative is not 1 - y^2. */
static void test_grad_tanh(void **state) { check_gradients(case_fixture(state, CASE_TANH)); }

/* Fails if a stack of one flatten does not hand dout back as din. */
static void test_grad_flatten(void **state) { check_gradients(case_fixture(state, CASE_FLATTEN)); }

/* Fails if a stack of one reshape does not hand dout back as din. */
static void test_grad_reshape(void **state) { check_gradients(case_fixture(state, CASE_RESHAPE)); }

/* Fails if backpropagation through conv2d, relu, conv2d, flatten, linear, tanh goes wrong. */
static void test_grad_encoder_stack(void **state)
{
    check_gradients(case_fixture(state, CASE_ENCODER));
}

/* Fails if backpropagation through conv_transpose2d, leaky_relu, conv_transpose2d, sigmoid
 * goes wrong. */
static void test_grad_decoder_stack(void **state)
{
    check_gradients(case_fixture(state, CASE_DECODER));
}

/* Fails if backpropagation through linear, reshape, conv_transpose2d, sigmoid goes wrong. */
static void test_grad_dense_decoder_stack(void **state)
{
    check_gradients(case_fixture(state, CASE_DENSE_DECODER));
}

/* Fails if a relu run in place over the output of a tanh or sigmoid (which their backward
 * reads) changes a gradient, or relus in a row go wrong. */
static void test_grad_relu_chains(void **state)
{
    check_gradients(case_fixture(state, CASE_RELU_CHAINS));
}

/* Backward three times after one forward: the gradient block must hold 1x, 2x, 3x the first
 * gradient, and din (pre-filled with +-garbage, or NULL) must come out the same each time. */
static void check_accumulation(fixture *fx)
{
    const float *g = cvae_stack_grads(fx->stack, NULL);

    analytic_gradients(fx); /* one backward: grads, din */
    if (fx->nparams && max_abs(fx->grads, fx->nparams) < SIGNIFICANT)
        fail_msg("%s: first gradient is ~0, accumulation cannot show", fx->gc->name);
    assert_int_equal(cvae_stack_backward(fx->stack, fx->r, BATCH, NULL), CVAE_OK);
    expect_same(fx, "gradient after 2 backwards without zero_grad", g, fx->grads, fx->nparams, 2.0);
    fill(fx->din2, fx->nin, -GARBAGE);
    assert_int_equal(cvae_stack_backward(fx->stack, fx->r, BATCH, fx->din2), CVAE_OK);
    expect_same(fx, "gradient after 3 backwards without zero_grad", g, fx->grads, fx->nparams, 3.0);
    expect_same(fx, "din of the 3rd backward (pre-filled with -1e30)", fx->din2, fx->din, fx->nin,
                1.0);
    assert_int_equal(cvae_stack_zero_grad(fx->stack), CVAE_OK);
    expect_same(fx, "gradient after zero_grad", g, fx->grads, fx->nparams, 0.0);
}

/* Fails if parameter gradients are overwritten instead of added (+=), if din is added to
 * instead of overwritten, or if zero_grad leaves anything behind; every case. */
static void test_params_accumulate_din_overwritten(void **state)
{
    int i;
    for (i = 0; i < NCASES; i++)
        check_accumulation(case_fixture(state, i));
}

/* Stack forward and backward, then the same through cvae_layer_forward / cvae_layer_backward
 * on each layer in turn (din pre-filled with garbage); output, input gradient and gradient
 * block must agree. */
static void check_layer_path(fixture *fx)
{
    const int nl = fx->gc->nlayers;
    const float *y = NULL;
    int i;

    assert_int_equal(cvae_stack_zero_grad(fx->stack), CVAE_OK);
    assert_int_equal(cvae_stack_forward(fx->stack, fx->x, BATCH, &y), CVAE_OK);
    memcpy(fx->y, y, fx->nout * sizeof(float));
    fill(fx->din, fx->nin, GARBAGE);
    assert_int_equal(cvae_stack_backward(fx->stack, fx->r, BATCH, fx->din), CVAE_OK);
    if (fx->nparams)
        memcpy(fx->grads, cvae_stack_grads(fx->stack, NULL), fx->nparams * sizeof(float));

    assert_int_equal(cvae_stack_zero_grad(fx->stack), CVAE_OK);
    layer_path_forward(fx, nl);
    expect_same(fx, "layer-path output", fx->act[nl], fx->y, fx->nout, 1.0);
    for (i = nl - 1; i >= 0; i--) {
        const float *dout = i == nl - 1 ? fx->r : fx->dact[i + 1];
        fill(fx->dact[i], fx->act_size[i], GARBAGE);
        assert_int_equal(cvae_layer_backward(cvae_stack_layer(fx->stack, i), fx->act[i],
                                             fx->act[i + 1], dout, fx->dact[i], BATCH),
                         CVAE_OK);
    }
    expect_same(fx, "layer-path input gradient", fx->dact[0], fx->din, fx->nin, 1.0);
    expect_same(fx, "layer-path gradient block", cvae_stack_grads(fx->stack, NULL), fx->grads,
                fx->nparams, 1.0);
}

/* Fails if running a built stack's layers one at a time differs from the stack in output,
 * input gradient or parameter gradients; every case. */
static void test_layer_path_matches_stack(void **state)
{
    int i;
    for (i = 0; i < NCASES; i++)
        check_layer_path(case_fixture(state, i));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grad_conv2d, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_conv2d_uncovered_row, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_conv_transpose2d, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_conv_transpose2d_s2p1, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_linear, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_relu, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_leaky_relu, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_sigmoid, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_tanh, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_relu_chains, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_flatten, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_reshape, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_encoder_stack, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_decoder_stack, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_grad_dense_decoder_stack, setup_all, teardown_all),
        cmocka_unit_test_setup_teardown(test_params_accumulate_din_overwritten, setup_all,
                                        teardown_all),
        cmocka_unit_test_setup_teardown(test_layer_path_matches_stack, setup_all, teardown_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
