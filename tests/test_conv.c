/*
 * test_conv.c - checks the convolution layers through the public API (a stack
 * holding one conv2d or conv_transpose2d layer, parameters written through
 * cvae_layer_params, run with cvae_stack_forward) against direct definitions
 * written here in double: PyTorch's Conv2d as a cross-correlation with zero
 * padding, and ConvTranspose2d as a scatter-add of every input pixel times the
 * kernel. Also checks the internal im2col / col2im_add pair against their
 * definitions and against each other (they must be adjoint), and that a
 * kernel which does not fit its input is refused with CVAE_ERR_SHAPE.
 * Shapes are random but deterministic (tu_rng, testutil.h), and each loop
 * asserts that it met the awkward cases: rectangular kernels, per-axis stride
 * and padding, non-square inputs, several channels, batch > 1.
 * Not covered: backward passes and parameter initialisation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ test data */

/* Uniform integer in [lo, hi]. */
static int rng_int(tu_rng *r, int lo, int hi)
{
    return lo + (int)((tu_rng_next(r) >> 33) % (uint64_t)(hi - lo + 1));
}

static void fill_sym(float *p, size_t n, tu_rng *r)
{
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = tu_rng_sym(r);
}

/* Index of [a][b][c][d] in a contiguous array of shape (., B, C, D). */
static size_t at4(int a, int b, int c, int d, int B, int C, int D)
{
    return (((size_t)a * (size_t)B + (size_t)b) * (size_t)C + (size_t)c) * (size_t)D + (size_t)d;
}

/* ------------------------------------------------------------ geometry */

/* One convolution layer run: n images of c x h x w, f output channels,
 * kernel kh x kw, stride sh, sw, zero padding ph, pw. */
typedef struct conv_shape {
    int n, c, h, w;
    int f, kh, kw;
    int sh, sw, ph, pw;
} conv_shape;

/* Output side of conv2d, (in + 2p - k) / s + 1, or of conv_transpose2d,
 * (in - 1) * s - 2p + k. */
static int out_side(int in, int k, int s, int p, int transposed)
{
    return transposed ? (in - 1) * s - 2 * p + k : (in + 2 * p - k) / s + 1;
}

/* Draws shapes until one is valid: for conv2d the kernel fits the padded
 * input on both axes, for conv_transpose2d both output sides are >= 1. */
static void draw_shape(tu_rng *r, conv_shape *s, int transposed)
{
    for (;;) {
        s->n = rng_int(r, 1, 3);
        s->c = rng_int(r, 1, 4);
        s->f = rng_int(r, 1, 4);
        s->h = rng_int(r, 1, 11);
        s->w = rng_int(r, 1, 11);
        s->kh = rng_int(r, 1, 5);
        s->kw = rng_int(r, 1, 5);
        s->sh = rng_int(r, 1, 3);
        s->sw = rng_int(r, 1, 3);
        s->ph = rng_int(r, 0, 2);
        s->pw = rng_int(r, 0, 2);
        if (transposed) {
            if (out_side(s->h, s->kh, s->sh, s->ph, 1) >= 1 &&
                out_side(s->w, s->kw, s->sw, s->pw, 1) >= 1)
                return;
        } else if (s->kh <= s->h + 2 * s->ph && s->kw <= s->w + 2 * s->pw) {
            return;
        }
    }
}

/* Which awkward features the drawn shapes included. */
typedef struct coverage {
    int rect_kernel, stride_differs, pad_differs, nonsquare_input;
    int batch, in_channels, out_channels, stride3, pad2, kernel5;
} coverage;

static void note_coverage(coverage *cv, int kh, int kw, int sh, int sw, int ph, int pw, int h,
                          int w, int n, int c, int f)
{
    cv->rect_kernel |= kh != kw;
    cv->stride_differs |= sh != sw;
    cv->pad_differs |= ph != pw;
    cv->nonsquare_input |= h != w;
    cv->batch |= n > 1;
    cv->in_channels |= c > 1;
    cv->out_channels |= f > 1;
    cv->stride3 |= sh == 3 || sw == 3;
    cv->pad2 |= ph == 2 || pw == 2;
    cv->kernel5 |= kh == 5 || kw == 5;
}

/* Fails if the deterministic draws missed one of the awkward cases (only
 * possible if the generator or the ranges change). */
static void assert_coverage(const coverage *cv)
{
    assert_true(cv->rect_kernel);
    assert_true(cv->stride_differs);
    assert_true(cv->pad_differs);
    assert_true(cv->nonsquare_input);
    assert_true(cv->batch);
    assert_true(cv->in_channels);
    assert_true(cv->out_channels);
    assert_true(cv->stride3);
    assert_true(cv->pad2);
    assert_true(cv->kernel5);
}

/* ----------------------------------------------------------- references */

/* Direct conv2d. x (n,c,h,w), wt (f,c,kh,kw), b (f); ref, bound (n,f,oh,ow):
 * the double result and the sum of |terms| (bias included). */
static void ref_conv2d(double *ref, double *bound, const float *x, const float *wt,
                       const float *b, const conv_shape *s, int oh, int ow)
{
    int n, f, oy, ox, c, ky, kx;

    for (n = 0; n < s->n; n++)
        for (f = 0; f < s->f; f++)
            for (oy = 0; oy < oh; oy++)
                for (ox = 0; ox < ow; ox++) {
                    double acc = b[f], mag = fabs((double)b[f]);
                    for (c = 0; c < s->c; c++)
                        for (ky = 0; ky < s->kh; ky++)
                            for (kx = 0; kx < s->kw; kx++) {
                                int iy = oy * s->sh - s->ph + ky;
                                int ix = ox * s->sw - s->pw + kx;
                                double t;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                                    continue; /* zero padding */
                                t = (double)wt[at4(f, c, ky, kx, s->c, s->kh, s->kw)] *
                                    x[at4(n, c, iy, ix, s->c, s->h, s->w)];
                                acc += t;
                                mag += fabs(t);
                            }
                    ref[at4(n, f, oy, ox, s->f, oh, ow)] = acc;
                    bound[at4(n, f, oy, ox, s->f, oh, ow)] = mag;
                }
}

/* Scatter-add conv_transpose2d. x (n,c,h,w), wt (c,f,kh,kw), b (f); ref, bound
 * (n,f,oh,ow): out[f][y*sh - ph + ky][x*sw - pw + kx] += x[c][y][x] *
 * wt[c][f][ky][kx] wherever that lands inside the output, plus bias. */
static void ref_conv_transpose2d(double *ref, double *bound, const float *x, const float *wt,
                                 const float *b, const conv_shape *s, int oh, int ow)
{
    int n, f, c, y, xx, ky, kx, i;

    for (n = 0; n < s->n; n++)
        for (f = 0; f < s->f; f++)
            for (i = 0; i < oh * ow; i++) {
                ref[at4(n, f, 0, i, s->f, 1, oh * ow)] = b[f];
                bound[at4(n, f, 0, i, s->f, 1, oh * ow)] = fabs((double)b[f]);
            }
    for (n = 0; n < s->n; n++)
        for (c = 0; c < s->c; c++)
            for (y = 0; y < s->h; y++)
                for (xx = 0; xx < s->w; xx++)
                    for (f = 0; f < s->f; f++)
                        for (ky = 0; ky < s->kh; ky++)
                            for (kx = 0; kx < s->kw; kx++) {
                                int oy = y * s->sh - s->ph + ky;
                                int ox = xx * s->sw - s->pw + kx;
                                size_t o;
                                double t;
                                if (oy < 0 || oy >= oh || ox < 0 || ox >= ow)
                                    continue;
                                o = at4(n, f, oy, ox, s->f, oh, ow);
                                t = (double)wt[at4(c, f, ky, kx, s->f, s->kh, s->kw)] *
                                    x[at4(n, c, y, xx, s->c, s->h, s->w)];
                                ref[o] += t;
                                bound[o] += fabs(t);
                            }
}

/* ------------------------------------------------------ running a layer */

/* A stack with one convolution layer built for s, or NULL with a message. */
static cvae_stack *build_conv_stack(const conv_shape *s, int transposed, char *msg,
                                    size_t msglen)
{
    cvae_stack *stack = NULL;
    cvae_layer *layer = NULL;
    cvae_status st = cvae_stack_create(&stack);

    if (st == CVAE_OK)
        st = transposed ? cvae_layer_create_conv_transpose2d(&layer, s->f, s->kh, s->kw, s->sh,
                                                             s->sw, s->ph, s->pw)
                        : cvae_layer_create_conv2d(&layer, s->f, s->kh, s->kw, s->sh, s->sw,
                                                   s->ph, s->pw);
    if (st == CVAE_OK)
        st = cvae_stack_add(stack, layer);
    if (st == CVAE_OK)
        st = cvae_stack_build(stack, s->c, s->h, s->w, s->n, 7);
    if (st != CVAE_OK) {
        snprintf(msg, msglen, "building the stack failed: %s (%s)", cvae_status_string(st),
                 stack ? cvae_stack_last_error(stack) : "no stack");
        cvae_stack_destroy(stack);
        return NULL;
    }
    return stack;
}

/*
 * Runs one layer on random data and parameters and compares with the
 * reference. Returns the number of problems, the first described in msg.
 * Tolerance: the layer sums T = c*kh*kw products plus a bias in float
 * (through a gemm, and for the transposed kind a col2im that adds at most
 * kh*kw columns per pixel), so its error stays below (T + 2) * 2^-24 * bound
 * with bound = sum of |terms|; allowed: (T + 2) * FLT_EPSILON * bound, twice
 * that. A wrong tap or channel moves an entry by about |w * x| ~ 0.25, while
 * the tolerance is at most 102 * 1.2e-7 * 101 ~ 1.2e-3.
 */
static size_t run_conv_case(const conv_shape *s, int transposed, uint64_t seed, char *msg,
                            size_t msglen)
{
    int oh = out_side(s->h, s->kh, s->sh, s->ph, transposed);
    int ow = out_side(s->w, s->kw, s->sw, s->pw, transposed);
    size_t nin = (size_t)s->n * s->c * s->h * s->w;
    size_t nout = (size_t)s->n * s->f * oh * ow;
    size_t nw = (size_t)s->c * s->f * s->kh * s->kw, i, bad = 0;
    double rel = (double)(s->c * s->kh * s->kw + 2) * FLT_EPSILON;
    cvae_stack *stack = build_conv_stack(s, transposed, msg, msglen);
    float *x = malloc(nin * sizeof *x), *p;
    double *ref = malloc(nout * sizeof *ref), *bound = malloc(nout * sizeof *bound);
    const float *y = NULL;
    cvae_layer *layer;
    cvae_status st;
    int oc = 0, ohh = 0, oww = 0;
    tu_rng r;

    assert_non_null(x);
    assert_non_null(ref);
    assert_non_null(bound);
    if (stack == NULL) {
        bad = 1;
        goto done;
    }
    layer = cvae_stack_layer(stack, 0);
    p = cvae_layer_params(layer);
    if (p == NULL || cvae_layer_param_count(layer) != nw + (size_t)s->f) {
        snprintf(msg, msglen, "params %p, count %zu, want %zu", (void *)p,
                 cvae_layer_param_count(layer), nw + (size_t)s->f);
        bad = 1;
        goto done;
    }
    st = cvae_stack_output_shape(stack, &oc, &ohh, &oww);
    if (st != CVAE_OK || oc != s->f || ohh != oh || oww != ow) {
        snprintf(msg, msglen, "output shape %d x %d x %d (status %d), want %d x %d x %d", oc,
                 ohh, oww, (int)st, s->f, oh, ow);
        bad = 1;
        goto done;
    }

    tu_rng_init(&r, seed);
    fill_sym(x, nin, &r);
    fill_sym(p, nw + (size_t)s->f, &r);
    if (transposed)
        ref_conv_transpose2d(ref, bound, x, p, p + nw, s, oh, ow);
    else
        ref_conv2d(ref, bound, x, p, p + nw, s, oh, ow);

    st = cvae_stack_forward(stack, x, s->n, &y);
    if (st != CVAE_OK || y == NULL) {
        snprintf(msg, msglen, "forward: %s (%s)", cvae_status_string(st),
                 cvae_stack_last_error(stack));
        bad = 1;
        goto done;
    }
    for (i = 0; i < nout; i++) {
        double tol = rel * bound[i] + 1e-30;
        if (!(fabs((double)y[i] - ref[i]) <= tol) && bad++ == 0) {
            size_t plane = (size_t)oh * ow;
            snprintf(msg, msglen,
                     "out[n=%zu][f=%zu][y=%zu][x=%zu] got %.9g, want %.9g (tol %.3g)",
                     i / (plane * s->f), i / plane % s->f, i % plane / ow, i % ow, (double)y[i],
                     ref[i], tol);
        }
    }
done:
    cvae_stack_destroy(stack);
    free(x);
    free(ref);
    free(bound);
    return bad;
}

/* Shapes run before the random ones: a 1x1 kernel with stride 1 and no
 * padding (the layers skip im2col for it, which random draws rarely hit),
 * and a kernel spanning the whole padded height (one output row for conv2d). */
static const conv_shape fixed_shapes[] = {
    /* n  c  h  w  f kh kw sh sw ph pw */
    {2, 3, 5, 7, 4, 1, 1, 1, 1, 0, 0},
    {3, 2, 3, 6, 3, 5, 2, 2, 3, 1, 2},
};
#define N_FIXED ((int)(sizeof fixed_shapes / sizeof fixed_shapes[0]))

/* Runs the fixed shapes, then count random shapes of one kind, failing at the
 * first bad one. */
static void run_random_shapes(int transposed, int count, uint64_t seed)
{
    coverage cv;
    tu_rng r;
    int k;

    memset(&cv, 0, sizeof cv);
    tu_rng_init(&r, seed);
    for (k = 0; k < N_FIXED + count; k++) {
        conv_shape s;
        char msg[320] = "";
        size_t bad;

        if (k < N_FIXED)
            s = fixed_shapes[k];
        else
            draw_shape(&r, &s, transposed);
        note_coverage(&cv, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.h, s.w, s.n, s.c, s.f);
        bad = run_conv_case(&s, transposed, seed + 1000 + (uint64_t)k, msg, sizeof msg);
        if (bad != 0)
            fail_msg("%s shape %d: n=%d c=%d h=%d w=%d f=%d k=%dx%d s=%d,%d p=%d,%d: %zu bad; "
                     "first: %s",
                     transposed ? "conv_transpose2d" : "conv2d", k, s.n, s.c, s.h, s.w, s.f,
                     s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, bad, msg);
    }
    assert_coverage(&cv);
}

/* --------------------------------------------------------- layer tests */

/* Fails if conv2d forward differs from the direct cross-correlation (wrong
 * tap order, padding, stride, channel or batch indexing, weight layout, bias)
 * on any of 2 fixed and 30 random shapes. */
static void test_conv2d_forward_matches_direct(void **state)
{
    (void)state;
    run_random_shapes(0, 30, 11);
}

/* Fails if conv_transpose2d forward differs from the scatter-add definition
 * (weight layout (in, out, kh, kw), cropping by padding, stride, bias) on any
 * of 2 fixed and 30 random shapes. */
static void test_conv_transpose2d_forward_matches_scatter(void **state)
{
    (void)state;
    run_random_shapes(1, 30, 22);
}

/* Compares n floats with expected values (exact up to 1e-6). */
static void assert_close(const float *got, const float *want, size_t n, const char *what)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= 1e-6))
            fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, (double)got[i], (double)want[i]);
}

/* Fails if either the layers or this file's references disagree with small
 * cases worked out by hand from PyTorch's definitions (so a shared
 * misreading of the semantics cannot pass the random tests). */
static void test_conv_hand_worked_examples(void **state)
{
    /* conv2d: 3x4 input 1..12, kernel 2x2 [[1,2],[-1,0.5]], bias 0.25,
     * stride (1,2), pad (0,1) -> 2x3. E.g. out[0][0] = 2*1 + 0.5*5 + 0.25
     * (column -1 is padding). */
    static const conv_shape cs = {1, 1, 3, 4, 1, 2, 2, 1, 2, 0, 1};
    static const float cx[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const float cp[5] = {1, 2, -1, 0.5f, 0.25f};
    static const float cwant[6] = {4.75f, 5.75f, -3.75f, 14.75f, 15.75f, -3.75f};
    /* conv_transpose2d: 2x2 input [[1,2],[3,4]], kernel 2x3
     * [[1,0,-1],[2,1,0.5]], bias -1, stride (2,1), pad (0,1) -> 4x2, e.g.
     * out[0][0] = 1*0 (x=0,kx=1) + 2*1 (x=1,kx=0) - 1 = 1. */
    static const conv_shape ts = {1, 1, 2, 2, 1, 2, 3, 2, 1, 0, 1};
    static const float tx[4] = {1, 2, 3, 4};
    static const float tp[7] = {1, 0, -1, 2, 1, 0.5f, -1};
    static const float twant[8] = {1, -2, 4, 1.5f, 3, -4, 10, 4.5f};
    double ref[8], bound[8];
    float reff[8], *p;
    const float *y = NULL;
    char msg[320] = "";
    cvae_stack *stack;
    size_t i;

    (void)state;
    ref_conv2d(ref, bound, cx, cp, cp + 4, &cs, 2, 3);
    for (i = 0; i < 6; i++)
        reff[i] = (float)ref[i];
    assert_close(reff, cwant, 6, "ref_conv2d");
    stack = build_conv_stack(&cs, 0, msg, sizeof msg);
    if (stack == NULL)
        fail_msg("%s", msg);
    p = cvae_layer_params(cvae_stack_layer(stack, 0));
    assert_non_null(p);
    memcpy(p, cp, sizeof cp);
    assert_int_equal(cvae_stack_forward(stack, cx, 1, &y), CVAE_OK);
    assert_close(y, cwant, 6, "conv2d");
    cvae_stack_destroy(stack);

    ref_conv_transpose2d(ref, bound, tx, tp, tp + 6, &ts, 4, 2);
    for (i = 0; i < 8; i++)
        reff[i] = (float)ref[i];
    assert_close(reff, twant, 8, "ref_conv_transpose2d");
    stack = build_conv_stack(&ts, 1, msg, sizeof msg);
    if (stack == NULL)
        fail_msg("%s", msg);
    p = cvae_layer_params(cvae_stack_layer(stack, 0));
    assert_non_null(p);
    memcpy(p, tp, sizeof tp);
    assert_int_equal(cvae_stack_forward(stack, tx, 1, &y), CVAE_OK);
    assert_close(y, twant, 8, "conv_transpose2d");
    cvae_stack_destroy(stack);
}

/* Builds a one-layer stack for c x h x w and expects CVAE_ERR_SHAPE with a
 * message. */
static void expect_shape_error(cvae_layer *layer, int c, int h, int w)
{
    cvae_stack *stack = NULL;
    const char *err;

    assert_int_equal(cvae_stack_create(&stack), CVAE_OK);
    assert_int_equal(cvae_stack_add(stack, layer), CVAE_OK);
    assert_int_equal(cvae_stack_build(stack, c, h, w, 2, 1), CVAE_ERR_SHAPE);
    err = cvae_stack_last_error(stack);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    cvae_stack_destroy(stack);
}

/* Fails if a kernel larger than its padded input (either axis), or a
 * transposed convolution with an output side < 1, is not refused at build
 * with CVAE_ERR_SHAPE and a message, or if a stack refused once cannot then
 * be built for a fitting shape, as cvae_stack_build documents. */
static void test_conv_shape_errors_reported(void **state)
{
    cvae_layer *layer = NULL;
    cvae_stack *stack = NULL;

    (void)state;
    /* kernel 5 high on 2 rows + 2*1 padding = 4 */
    assert_int_equal(cvae_layer_create_conv2d(&layer, 3, 5, 3, 1, 1, 1, 1), CVAE_OK);
    expect_shape_error(layer, 1, 2, 4);
    /* kernel 6 wide on 5 columns, no padding */
    assert_int_equal(cvae_layer_create_conv2d(&layer, 2, 1, 6, 1, 2, 0, 0), CVAE_OK);
    expect_shape_error(layer, 3, 5, 5);
    /* transposed: (1 - 1) * 1 - 2 * 1 + 1 = -1 rows */
    assert_int_equal(cvae_layer_create_conv_transpose2d(&layer, 2, 1, 3, 1, 1, 1, 0), CVAE_OK);
    expect_shape_error(layer, 2, 1, 4);

    /* refused for 2 rows, then built for 3 (3 + 2 = 5 fits) */
    assert_int_equal(cvae_stack_create(&stack), CVAE_OK);
    assert_int_equal(cvae_layer_create_conv2d(&layer, 3, 5, 3, 1, 1, 1, 1), CVAE_OK);
    assert_int_equal(cvae_stack_add(stack, layer), CVAE_OK);
    assert_int_equal(cvae_stack_build(stack, 1, 2, 4, 2, 1), CVAE_ERR_SHAPE);
    assert_true(strlen(cvae_stack_last_error(stack)) > 0);
    assert_int_equal(cvae_stack_build(stack, 1, 3, 4, 2, 1), CVAE_OK);
    cvae_stack_destroy(stack);
}

/* -------------------------------------------------------- im2col tests */

/* A random geometry whose kernel fits the padded image, with OH, OW set. */
static void draw_geom(tu_rng *r, cvi_conv_geom *g)
{
    int C, H, W, KH, KW, SH, SW, PH, PW;

    do {
        C = rng_int(r, 1, 9); /* past 4: im2col's blocks of channels and a remainder */
        H = rng_int(r, 1, 10);
        W = rng_int(r, 1, 10);
        KH = rng_int(r, 1, 5);
        KW = rng_int(r, 1, 5);
        SH = rng_int(r, 1, 3);
        SW = rng_int(r, 1, 3);
        PH = rng_int(r, 0, 2);
        PW = rng_int(r, 0, 2);
    } while (KH > H + 2 * PH || KW > W + 2 * PW);
    g->C = (size_t)C;
    g->H = (size_t)H;
    g->W = (size_t)W;
    g->KH = (size_t)KH;
    g->KW = (size_t)KW;
    g->SH = (size_t)SH;
    g->SW = (size_t)SW;
    g->PH = (size_t)PH;
    g->PW = (size_t)PW;
    g->OH = (size_t)((H + 2 * PH - KH) / SH + 1);
    g->OW = (size_t)((W + 2 * PW - KW) / SW + 1);
}

static size_t img_len(const cvi_conv_geom *g)
{
    return g->C * g->H * g->W;
}

static size_t col_len(const cvi_conv_geom *g)
{
    return g->C * g->KH * g->KW * g->OH * g->OW;
}

/* The image index that column entry (row, col) copies, or -1 for padding.
 * Row = (c*KH + ky)*KW + kx, col = oy*OW + ox. */
static long col_source(const cvi_conv_geom *g, size_t row, size_t col)
{
    long kx = (long)(row % g->KW), ky = (long)(row / g->KW % g->KH);
    long c = (long)(row / (g->KW * g->KH));
    long iy = (long)(col / g->OW * g->SH) - (long)g->PH + ky;
    long ix = (long)(col % g->OW * g->SW) - (long)g->PW + kx;

    if (iy < 0 || iy >= (long)g->H || ix < 0 || ix >= (long)g->W)
        return -1;
    return (c * (long)g->H + iy) * (long)g->W + ix;
}

/* One image's geometry has no batch and no output channels: those two
 * coverage flags are set as met. */
static void note_geom(coverage *cv, const cvi_conv_geom *g)
{
    note_coverage(cv, (int)g->KH, (int)g->KW, (int)g->SH, (int)g->SW, (int)g->PH, (int)g->PW,
                  (int)g->H, (int)g->W, 1, (int)g->C, 1);
    cv->batch = 1;
    cv->out_channels = 1;
}

/* The library's im2col and col2im take tables and a batch; these run them
 * on n images side by side (n = 1: one image alone). */
static void with_tables(const cvi_conv_geom *g, size_t n, float **mem, cvi_conv_tables *t)
{
    *mem = cvi_alloc_floats(NULL, cvi_conv_tables_floats(g));
    assert_non_null(*mem);
    cvi_conv_tables_build(t, *mem, g, n * g->OH * g->OW);
}

static void im2col_n(float *col, const float *imgs, size_t n, const cvi_conv_geom *g, int threads)
{
    cvi_gemm_env env = {CVI_GEMM_PATH_AUTO, 1, NULL};
    cvi_conv_tables t;
    float *mem;
    env.threads = threads;
    with_tables(g, n, &mem, &t);
    cvi_im2col_batch(col, imgs, n, g, &t, &env);
    cvi_free_floats(NULL, mem);
}

static void col2im_n(float *imgs, const float *col, size_t n, const cvi_conv_geom *g, int threads)
{
    cvi_gemm_env env = {CVI_GEMM_PATH_AUTO, 1, NULL};
    cvi_conv_tables t;
    float *mem;
    env.threads = threads;
    with_tables(g, n, &mem, &t);
    cvi_col2im_batch(imgs, col, n, g, &t, NULL, 0, &env);
    cvi_free_floats(NULL, mem);
}

#define N_GEOMS 24

/* Fails if any im2col entry is not exactly the image pixel its row (c, ky,
 * kx) and column (oy, ox) name, or 0 in the padding (the buffer starts as
 * NaN, so skipped entries fail too). */
static void test_im2col_matches_definition(void **state)
{
    coverage cv;
    tu_rng r;
    int k;

    (void)state;
    memset(&cv, 0, sizeof cv);
    tu_rng_init(&r, 33);
    for (k = 0; k < N_GEOMS; k++) {
        cvi_conv_geom g;
        float *img, *col;
        size_t rows, cols, i, j, bad = 0, bi = 0, bj = 0;
        float got = 0.0f, want = 0.0f;

        draw_geom(&r, &g);
        note_geom(&cv, &g);
        img = malloc(img_len(&g) * sizeof *img);
        col = malloc(col_len(&g) * sizeof *col);
        assert_non_null(img);
        assert_non_null(col);
        fill_sym(img, img_len(&g), &r);
        for (i = 0; i < col_len(&g); i++)
            col[i] = NAN;
        im2col_n(col, img, 1, &g, 1);

        rows = g.C * g.KH * g.KW;
        cols = g.OH * g.OW;
        for (i = 0; i < rows; i++)
            for (j = 0; j < cols; j++) {
                long src = col_source(&g, i, j);
                float v = src < 0 ? 0.0f : img[src];
                if (!(col[i * cols + j] == v) && bad++ == 0) {
                    bi = i;
                    bj = j;
                    got = col[i * cols + j];
                    want = v;
                }
            }
        free(img);
        free(col);
        if (bad != 0)
            fail_msg("geometry %d (C=%zu H=%zu W=%zu k=%zux%zu s=%zu,%zu p=%zu,%zu): col[%zu][%zu] "
                     "got %.9g, want %.9g",
                     k, g.C, g.H, g.W, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, bi, bj, (double)got,
                     (double)want);
    }
    assert_coverage(&cv);
}

/* Fails if col2im does not sum every column entry into the pixel im2col
 * would have read it from (dropping padding), or adds to what img held
 * before (random values) instead of overwriting it. Tolerance: each pixel
 * sums at most KH*KW floats, so (KH*KW + 2) * FLT_EPSILON * (sum of their
 * |values|). */
static void test_col2im_matches_definition(void **state)
{
    tu_rng r;
    int k;

    (void)state;
    tu_rng_init(&r, 44);
    for (k = 0; k < N_GEOMS; k++) {
        cvi_conv_geom g;
        float *img, *col;
        double *ref, *mag;
        size_t rows, cols, i, j, bad = 0, bi = 0;
        double rel, got = 0.0, want = 0.0;

        draw_geom(&r, &g);
        img = malloc(img_len(&g) * sizeof *img);
        col = malloc(col_len(&g) * sizeof *col);
        ref = malloc(img_len(&g) * sizeof *ref);
        mag = malloc(img_len(&g) * sizeof *mag);
        assert_non_null(img);
        assert_non_null(col);
        assert_non_null(ref);
        assert_non_null(mag);
        fill_sym(img, img_len(&g), &r);
        fill_sym(col, col_len(&g), &r);
        for (i = 0; i < img_len(&g); i++) /* col2im overwrites img's random start */
            ref[i] = mag[i] = 0.0;
        rows = g.C * g.KH * g.KW;
        cols = g.OH * g.OW;
        for (i = 0; i < rows; i++)
            for (j = 0; j < cols; j++) {
                long dst = col_source(&g, i, j);
                if (dst >= 0) {
                    ref[dst] += col[i * cols + j];
                    mag[dst] += fabs((double)col[i * cols + j]);
                }
            }
        col2im_n(img, col, 1, &g, 1);

        rel = (double)(g.KH * g.KW + 2) * FLT_EPSILON;
        for (i = 0; i < img_len(&g); i++)
            if (!(fabs((double)img[i] - ref[i]) <= rel * mag[i] + 1e-30) && bad++ == 0) {
                bi = i;
                got = img[i];
                want = ref[i];
            }
        free(img);
        free(col);
        free(ref);
        free(mag);
        if (bad != 0)
            fail_msg("geometry %d (C=%zu H=%zu W=%zu k=%zux%zu s=%zu,%zu p=%zu,%zu): img[%zu] got "
                     "%.9g, want %.9g",
                     k, g.C, g.H, g.W, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, bi, got, want);
    }
}

/* Fails if <im2col(x), y> != <x, col2im(y)>, i.e. if the two functions are
 * not each other's adjoint (a tap or pixel handled by one and not the other,
 * or by both at different places). Both dot products are in double;
 * im2col only copies, so the sole error is col2im's float sums: tolerance
 * (KH*KW + 1) * FLT_EPSILON * sum over pairs of |x| * |y|. */
static void test_im2col_col2im_adjoint(void **state)
{
    coverage cv;
    tu_rng r;
    int k;

    (void)state;
    memset(&cv, 0, sizeof cv);
    tu_rng_init(&r, 55);
    for (k = 0; k < N_GEOMS; k++) {
        cvi_conv_geom g;
        float *x, *y, *col, *img;
        double lhs = 0.0, rhs = 0.0, mag = 0.0, tol;
        size_t i;

        draw_geom(&r, &g);
        note_geom(&cv, &g);
        x = malloc(img_len(&g) * sizeof *x);
        img = malloc(img_len(&g) * sizeof *img); /* col2im overwrites it */
        y = malloc(col_len(&g) * sizeof *y);
        col = malloc(col_len(&g) * sizeof *col);
        assert_non_null(x);
        assert_non_null(img);
        assert_non_null(y);
        assert_non_null(col);
        fill_sym(x, img_len(&g), &r);
        fill_sym(y, col_len(&g), &r);

        im2col_n(col, x, 1, &g, 1);
        col2im_n(img, y, 1, &g, 1);
        for (i = 0; i < col_len(&g); i++) {
            lhs += (double)col[i] * y[i];
            mag += fabs((double)col[i] * y[i]);
        }
        for (i = 0; i < img_len(&g); i++)
            rhs += (double)x[i] * img[i];
        tol = (double)(g.KH * g.KW + 1) * FLT_EPSILON * mag + 1e-30;
        free(x);
        free(img);
        free(y);
        free(col);
        if (!(fabs(lhs - rhs) <= tol))
            fail_msg("geometry %d (C=%zu H=%zu W=%zu k=%zux%zu s=%zu,%zu p=%zu,%zu): "
                     "<im2col(x),y> = %.12g but <x,col2im(y)> = %.12g (tol %.3g)",
                     k, g.C, g.H, g.W, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, lhs, rhs, tol);
    }
    assert_coverage(&cv);
}

/* Fails if im2col or col2im of 5 images side by side, on 1 or 3 threads,
 * differ in a single bit from the same functions on each image alone: a
 * wrong column offset or row stride of the batched layout, or an image
 * handled by two threads. */
static void test_im2col_col2im_batched(void **state)
{
    enum { NB = 5 };
    tu_rng r;
    int k, threads;

    (void)state;
    tu_rng_init(&r, 66);
    for (k = 0; k < 8; k++) {
        cvi_conv_geom g;
        size_t il, P, rows, i, row;
        float *img, *col, *one, *back, *back1;
        draw_geom(&r, &g);
        il = img_len(&g);
        P = g.OH * g.OW;
        rows = g.C * g.KH * g.KW;
        img = malloc(NB * il * sizeof *img);
        col = malloc(NB * col_len(&g) * sizeof *col);
        one = malloc(col_len(&g) * sizeof *one);
        back = malloc(NB * il * sizeof *back);
        back1 = malloc(il * sizeof *back1);
        assert_true(img && col && one && back && back1);
        fill_sym(img, NB * il, &r);
        for (threads = 1; threads <= 3; threads += 2) {
            im2col_n(col, img, NB, &g, threads);
            col2im_n(back, col, NB, &g, threads);
            for (i = 0; i < NB; i++) {
                im2col_n(one, img + i * il, 1, &g, 1);
                for (row = 0; row < rows; row++)
                    if (memcmp(col + row * NB * P + i * P, one + row * P, P * sizeof *one))
                        fail_msg("geometry %d, %d threads: image %zu, column row %zu differs", k,
                                 threads, i, row);
                col2im_n(back1, one, 1, &g, 1);
                if (memcmp(back + i * il, back1, il * sizeof *back1))
                    fail_msg("geometry %d, %d threads: col2im of image %zu differs", k, threads,
                             i);
            }
        }
        free(img);
        free(col);
        free(one);
        free(back);
        free(back1);
    }
}

/* A geometry the vector loops of im2col_vec.c serve: kernels 4 wide at
 * stride 2 with 1 column of padding across rows of 2 .. 32 pixels; the rest
 * drawn as draw_geom draws it. */
static void draw_vec_geom(tu_rng *r, cvi_conv_geom *g)
{
    do {
        g->C = (size_t)rng_int(r, 1, 9);
        g->H = (size_t)rng_int(r, 1, 12);
        g->W = (size_t)rng_int(r, 2, 32);
        g->KH = (size_t)rng_int(r, 1, 5);
        g->SH = (size_t)rng_int(r, 1, 3);
        g->PH = (size_t)rng_int(r, 0, 2);
    } while (g->KH > g->H + 2 * g->PH);
    g->KW = 4;
    g->SW = 2;
    g->PW = 1;
    g->OH = (g->H + 2 * g->PH - g->KH) / g->SH + 1;
    g->OW = (g->W + 2 * g->PW - g->KW) / g->SW + 1;
}

/* im2col (col2im, plus bias when not NULL, then relu when asked) of n
 * images on the given variant, with column rows ldcol apart: the AVX-512
 * variant runs the vector loops where they fit, the portable one the
 * table-driven loops. */
static void im2col_on(cvi_gemm_path path, int threads, float *col, const float *imgs, size_t n,
                      const cvi_conv_geom *g, size_t ldcol, int back, const float *bias,
                      int relu)
{
    cvi_gemm_env env = {CVI_GEMM_PATH_AUTO, 1, NULL};
    cvi_conv_tables t;
    float *mem = cvi_alloc_floats(NULL, cvi_conv_tables_floats(g));
    assert_non_null(mem);
    env.path = path;
    env.threads = threads;
    cvi_conv_tables_build(&t, mem, g, ldcol);
    if (back)
        cvi_col2im_batch((float *)imgs, col, n, g, &t, bias, relu, &env);
    else
        cvi_im2col_batch(col, imgs, n, g, &t, &env);
    cvi_free_floats(NULL, mem);
}

/* Fails unless the vector im2col and col2im of variant vec give, bit for bit, the
 * table-driven loops' columns and images: random geometries they serve
 * (rows of 2 .. 32 pixels: one or two vectors, the masks at both edges;
 * any kernel height, row stride and row padding), as many again on rows of
 * 14, 15 and 16 pixels (outputs 7 or 8 wide, which im2col takes two output
 * rows at a time: odd and even output heights, a last pair cut short by the
 * image's end), then the model's 14 and 28 pixel rows; 1 .. 5 images with columns to spare in each row (ldcol >
 * n P: entries neither writes stay NaN in both), on 1 and 2 threads.
 * Buffers are exactly as long as the data, so a read or write past them is
 * AddressSanitizer's to catch; col2im's sums have entries of magnitudes
 * 2^-12 .. 2^12, whose rounding depends on the order. */
static void vec_same_bits_on(cvi_gemm_path vec)
{
    enum { N_RANDOM = 40, N_PAIRS = 30 };
    static const size_t fixed[][4] = {{32, 14, 14, 4}, {1, 28, 28, 4}, {3, 32, 32, 3}};
    const int n_fixed = (int)(sizeof fixed / sizeof fixed[0]);
    const cvi_gemm_path both[2] = {CVI_GEMM_PATH_PORTABLE, vec};
    tu_rng r;
    int k, threads, v;

    tu_rng_init(&r, 88);
    for (k = 0; k < N_RANDOM + N_PAIRS + n_fixed; k++) {
        cvi_conv_geom g;
        size_t n, P, il, rows, ldcol, q, nc;
        float *imgs, *col_a, *col_b, *img_a, *img_b, bias[32];
        draw_vec_geom(&r, &g);
        n = (size_t)rng_int(&r, 1, 5);
        if (k >= N_RANDOM && k < N_RANDOM + N_PAIRS) {
            g.W = (size_t)(14 + k % 3);
            g.OW = (g.W + 2 * g.PW - g.KW) / g.SW + 1;
        } else if (k >= N_RANDOM) {
            const size_t *f = fixed[k - N_RANDOM - N_PAIRS];
            g.C = f[0], g.H = g.W = f[1], g.KH = 4, g.SH = 2, g.PH = 1, n = f[3];
            g.OH = (g.H + 2 * g.PH - g.KH) / g.SH + 1;
            g.OW = (g.W + 2 * g.PW - g.KW) / g.SW + 1;
        }
        if (!cvi_im2col_vec_fits(&g))
            fail_msg("geometry %d (W=%zu): the vector loops do not take it", k, g.W);
        P = g.OH * g.OW;
        il = img_len(&g);
        rows = g.C * g.KH * g.KW;
        ldcol = n * P + (size_t)rng_int(&r, 0, 3);
        nc = rows * ldcol;
        imgs = malloc(n * il * sizeof *imgs);
        img_a = malloc(n * il * sizeof *img_a);
        img_b = malloc(n * il * sizeof *img_b);
        col_a = malloc(nc * sizeof *col_a);
        col_b = malloc(nc * sizeof *col_b);
        assert_true(imgs && img_a && img_b && col_a && col_b);
        fill_sym(imgs, n * il, &r);
        fill_sym(bias, g.C, &r);
        for (threads = 1; threads <= 2; threads++) {
            for (q = 0; q < nc; q++)
                col_a[q] = col_b[q] = NAN;
            im2col_on(CVI_GEMM_PATH_PORTABLE, threads, col_a, imgs, n, &g, ldcol, 0, NULL, 0);
            im2col_on(vec, threads, col_b, imgs, n, &g, ldcol, 0, NULL, 0);
            for (q = 0; q < nc; q++)
                if (memcmp(&col_a[q], &col_b[q], sizeof *col_a))
                    fail_msg("geometry %d (C=%zu H=%zu W=%zu KH=%zu SH=%zu PH=%zu, %zu images), "
                             "%d threads: im2col entry (%zu, %zu) is %.9g on %s, %.9g in "
                             "the loops",
                             k, g.C, g.H, g.W, g.KH, g.SH, g.PH, n, threads, q / ldcol,
                             q % ldcol, (double)col_b[q], cvi_gemm_path_name(vec),
                             (double)col_a[q]);
            for (q = 0; q < nc; q++)
                col_a[q] = ldexpf(tu_rng_sym(&r), rng_int(&r, -12, 12));
            fill_sym(img_a, n * il, &r); /* col2im overwrites: different starts */
            fill_sym(img_b, n * il, &r);
            /* with the channels' biases on the second thread count */
            im2col_on(CVI_GEMM_PATH_PORTABLE, threads, col_a, img_a, n, &g, ldcol, 1,
                      threads == 2 ? bias : NULL, 0);
            im2col_on(vec, threads, col_a, img_b, n, &g, ldcol, 1,
                      threads == 2 ? bias : NULL, 0);
            for (q = 0; q < n * il; q++)
                if (memcmp(&img_a[q], &img_b[q], sizeof *img_a))
                    fail_msg("geometry %d (C=%zu H=%zu W=%zu KH=%zu SH=%zu PH=%zu, %zu images), "
                             "%d threads: col2im pixel %zu is %.9g on %s, %.9g in the "
                             "loops",
                             k, g.C, g.H, g.W, g.KH, g.SH, g.PH, n, threads, q,
                             (double)img_b[q], cvi_gemm_path_name(vec), (double)img_a[q]);
            /* A relu fused into col2im, on either variant: relu's bits (x >
             * 0 ? x : 0) of the sums just compared. */
            for (v = 0; v < 2; v++) {
                const cvi_gemm_path path = both[v];
                im2col_on(path, threads, col_a, img_b, n, &g, ldcol, 1,
                          threads == 2 ? bias : NULL, 1);
                for (q = 0; q < n * il; q++) {
                    float want = img_a[q] > 0.0f ? img_a[q] : 0.0f;
                    if (memcmp(&want, &img_b[q], sizeof want))
                        fail_msg("geometry %d (C=%zu H=%zu W=%zu, %zu images), %d threads, %s: "
                                 "col2im with relu gives pixel %zu %.9g, relu of the sum %.9g",
                                 k, g.C, g.H, g.W, n, threads, cvi_gemm_path_name(path), q,
                                 (double)img_b[q], (double)want);
                }
            }
        }
        free(imgs);
        free(img_a);
        free(img_b);
        free(col_a);
        free(col_b);
    }
}

/* The comparison above on each vector variant this CPU has: the AVX2 loops
 * (8-lane vectors) and the AVX-512 ones (16). */
static void test_im2col_vec_same_bits(void **state)
{
    static const cvi_gemm_path vector_paths[2] = {CVI_GEMM_PATH_AVX2, CVI_GEMM_PATH_AVX512};
    int v;
    (void)state;
    for (v = 0; v < 2; v++) {
        if (cvi_gemm_path_available(vector_paths[v]))
            vec_same_bits_on(vector_paths[v]);
        else
            print_message("im2col_vec: no %s on this CPU, nothing to compare\n",
                          cvi_gemm_path_name(vector_paths[v]));
    }
}

/* Fails if a pixel of col2im is not, bit for bit, the float sum from 0.0f of
 * its column entries in tap order: the order that makes results the same
 * for any batch split and thread count, and that the specialised loops for
 * pixels of 1, 2 and 4 entries must keep. Random geometries, then fixed ones
 * that give pixels of no entry (stride 3 over a kernel of 2), of 9 (3x3,
 * stride 1) and of 25 (5x5), on 3 images side by side, 1 and 2 threads. */
static void test_col2im_sums_in_tap_order(void **state)
{
    enum { NB = 3, N_RANDOM = 24 };
    static const size_t fixed[][9] = {
        /* C, H, W, KH, KW, SH, SW, PH, PW */
        {2, 14, 14, 4, 4, 2, 2, 1, 1},
        {2, 7, 6, 3, 3, 1, 1, 1, 1},
        {1, 9, 8, 5, 5, 1, 1, 2, 2},
        {2, 8, 7, 2, 2, 3, 3, 0, 0},
        {1, 5, 6, 1, 1, 1, 1, 0, 0},
    };
    const int n_fixed = (int)(sizeof fixed / sizeof fixed[0]);
    tu_rng r;
    int k, threads;

    (void)state;
    tu_rng_init(&r, 77);
    for (k = 0; k < N_RANDOM + n_fixed; k++) {
        cvi_conv_geom g;
        size_t il, P, rows, i, row, j, q;
        float *col, *img, *ref;
        if (k < N_RANDOM) {
            draw_geom(&r, &g);
        } else {
            const size_t *f = fixed[k - N_RANDOM];
            g.C = f[0], g.H = f[1], g.W = f[2], g.KH = f[3], g.KW = f[4];
            g.SH = f[5], g.SW = f[6], g.PH = f[7], g.PW = f[8];
            g.OH = (g.H + 2 * g.PH - g.KH) / g.SH + 1;
            g.OW = (g.W + 2 * g.PW - g.KW) / g.SW + 1;
        }
        il = img_len(&g);
        P = g.OH * g.OW;
        rows = g.C * g.KH * g.KW;
        col = malloc(NB * col_len(&g) * sizeof *col);
        img = malloc(NB * il * sizeof *img);
        ref = malloc(NB * il * sizeof *ref);
        assert_true(col && img && ref);
        /* Magnitudes 2^-12 .. 2^12: sums whose rounding depends on the order
         * (values of one magnitude would add exactly in any order). */
        for (q = 0; q < NB * col_len(&g); q++)
            col[q] = ldexpf(tu_rng_sym(&r), rng_int(&r, -12, 12));
        for (q = 0; q < NB * il; q++)
            ref[q] = 0.0f;
        for (i = 0; i < NB; i++) /* rows in order: each pixel's taps in order */
            for (row = 0; row < rows; row++)
                for (j = 0; j < P; j++) {
                    long src = col_source(&g, row, j);
                    if (src >= 0)
                        ref[i * il + (size_t)src] += col[row * NB * P + i * P + j];
                }
        for (threads = 1; threads <= 2; threads++) {
            fill_sym(img, NB * il, &r); /* col2im overwrites */
            col2im_n(img, col, NB, &g, threads);
            for (q = 0; q < NB * il; q++)
                if (memcmp(&img[q], &ref[q], sizeof *img))
                    fail_msg("geometry %d (C=%zu H=%zu W=%zu k=%zux%zu s=%zu,%zu p=%zu,%zu), "
                             "%d threads: pixel %zu is %.9g, the sum in tap order %.9g",
                             k, g.C, g.H, g.W, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, threads, q,
                             (double)img[q], (double)ref[q]);
        }
        free(col);
        free(img);
        free(ref);
    }
}

/* Fails unless the patch panels (cvi_patch_panels, from the images and from their padded
 * copies) hold exactly the transposed columns of im2col, entry for entry, for panels of whole
 * channels and arbitrary ones, positions across images, on random geometries; or if a panel
 * column past `cols` is written. */
static void test_patch_panels_match_columns(void **state)
{
    coverage cv;
    tu_rng r;
    int k;

    (void)state;
    memset(&cv, 0, sizeof cv);
    tu_rng_init(&r, 55);
    for (k = 0; k < N_GEOMS; k++) {
        const size_t n = 3;
        cvi_conv_geom g;
        size_t taps, rows, K, i, draw;
        float *imgs, *padded, *col, *p;
        int mode;

        draw_geom(&r, &g);
        if (k < 2) { /* the seed model's 4 x 4 kernels, stride 2 (their own copy loop) */
            g.C = k ? 3 : 1;
            g.H = g.W = k ? 14 : 9;
            g.KH = g.KW = 4;
            g.SH = g.SW = 2;
            g.PH = g.PW = 1;
            g.OH = g.OW = (g.H + 2 - 4) / 2 + 1;
        }
        note_geom(&cv, &g);
        taps = g.KH * g.KW;
        rows = g.C * taps;
        K = n * g.OH * g.OW;
        imgs = malloc(n * img_len(&g) * sizeof *imgs);
        padded = malloc(n * cvi_padded_image_floats(&g) * sizeof *padded);
        col = malloc(n * col_len(&g) * sizeof *col);
        p = malloc(K * (rows + 3) * sizeof *p);
        assert_true(imgs && padded && col && p);
        fill_sym(imgs, n * img_len(&g), &r);
        im2col_n(col, imgs, n, &g, 1);
        cvi_pad_images(padded, imgs, n, &g);
        for (draw = 0; draw < 8; draw++)
            for (mode = 0; mode < 2; mode++) {
                cvi_patches src;
                size_t j0, cols, k0, kc, w, kk, c;
                if (draw % 2 == 0) { /* whole channels */
                    size_t c0 = (size_t)rng_int(&r, 0, (int)g.C - 1);
                    j0 = c0 * taps;
                    cols = (size_t)rng_int(&r, 1, (int)(g.C - c0)) * taps;
                } else {
                    j0 = (size_t)rng_int(&r, 0, (int)rows - 1);
                    cols = (size_t)rng_int(&r, 1, (int)(rows - j0));
                }
                k0 = (size_t)rng_int(&r, 0, (int)K - 1);
                kc = (size_t)rng_int(&r, 1, (int)(K - k0));
                w = cols + (size_t)rng_int(&r, 0, 3);
                src.g = &g;
                src.padded = mode;
                src.imgs = mode ? padded : imgs;
                src.image = mode ? cvi_padded_image_floats(&g) : img_len(&g);
                for (i = 0; i < kc * w; i++)
                    p[i] = NAN;
                cvi_patch_panels(&src, p, w, k0, kc, j0, cols);
                for (kk = 0; kk < kc; kk++)
                    for (c = 0; c < w; c++) {
                        float got = p[kk * w + c];
                        if (c < cols ? !(got == col[(j0 + c) * K + k0 + kk])
                                     : !isnan(got))
                            fail_msg("geometry %d (C=%zu H=%zu W=%zu k=%zux%zu s=%zu,%zu "
                                     "p=%zu,%zu), %s images, panel rows %zu+%zu, columns "
                                     "%zu+%zu of %zu: entry (%zu, %zu) is %.9g",
                                     k, g.C, g.H, g.W, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW,
                                     mode ? "padded" : "plain", k0, kc, j0, cols, w, kk, c,
                                     (double)got);
                    }
            }
        free(imgs);
        free(padded);
        free(col);
        free(p);
    }
    assert_coverage(&cv);
}

/* Fails unless a product that takes op(B)'s panels from cvi_patch_panels gives the bits of the
 * same product reading the columns im2col wrote (dw += dy col^T, as conv2d's weight gradient),
 * on every variant and on 1 and 2 threads, with whole and partial panels. */
static void test_patch_panels_product_same_bits(void **state)
{
    tu_rng r;
    int k;

    (void)state;
    tu_rng_init(&r, 66);
    for (k = 0; k < 6; k++) {
        const size_t n = 4, F = 5 + (size_t)k * 7;
        cvi_conv_geom g;
        size_t rows, K, i;
        float *imgs, *col, *dy, *c1, *c2;
        int path, threads;

        draw_geom(&r, &g);
        rows = g.C * g.KH * g.KW;
        K = n * g.OH * g.OW;
        imgs = malloc(n * img_len(&g) * sizeof *imgs);
        col = malloc(rows * K * sizeof *col);
        dy = malloc(F * K * sizeof *dy);
        c1 = malloc(F * rows * sizeof *c1);
        c2 = malloc(F * rows * sizeof *c2);
        assert_true(imgs && col && dy && c1 && c2);
        fill_sym(imgs, n * img_len(&g), &r);
        fill_sym(dy, F * K, &r);
        im2col_n(col, imgs, n, &g, 1);
        for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512; path++)
            for (threads = 1; threads <= 2; threads++) {
                cvi_gemm_env env;
                cvi_patches src;
                cvi_gemm_call c;
                if (!cvi_gemm_path_available((cvi_gemm_path)path))
                    continue;
                env.path = (cvi_gemm_path)path;
                env.threads = threads;
                env.ws = cvi_alloc_floats(NULL, cvi_gemm_workspace_floats(threads));
                assert_non_null(env.ws);
                for (i = 0; i < F * rows; i++)
                    c1[i] = c2[i] = (float)i;
                c = cvi_gemm_plain(0, 1, F, rows, K, 1.0f, dy, K, col, K, 1.0f, c1, rows);
                cvi_gemm_ex(&env, &c);
                src.imgs = imgs;
                src.image = img_len(&g);
                src.g = &g;
                src.padded = 0;
                c = cvi_gemm_plain(0, 1, F, rows, K, 1.0f, dy, K, NULL, 0, 1.0f, c2, rows);
                c.b_panels = cvi_patch_panels;
                c.b_ctx = &src;
                cvi_gemm_ex(&env, &c);
                cvi_free_floats(NULL, env.ws);
                if (memcmp(c1, c2, F * rows * sizeof *c1))
                    fail_msg("geometry %d (C=%zu k=%zux%zu), %s, %d threads: the product from "
                             "patch panels differs from the one from the columns",
                             k, g.C, g.KH, g.KW, cvi_gemm_path_name((cvi_gemm_path)path),
                             threads);
            }
        free(imgs);
        free(col);
        free(dy);
        free(c1);
        free(c2);
    }
}

/* Fails unless cvi_bias_grad_planes adds to db[f] the sum of each plane
 * (b, f), summed in order from 0.0f, image after image, bit for bit, for
 * channel counts that fill the passes of planes side by side or leave some
 * over (1 .. 9, 64), image counts that do or do not fill a pass, planes of
 * 1, 7, 49 and 196 floats, on 1 and 2 threads; terms of 2^-12 .. 2^12,
 * whose sum depends on the order. */
static void test_bias_grad_planes_order(void **state)
{
    static const size_t Fs[] = {1, 2, 3, 4, 5, 7, 9, 64}, Ps[] = {1, 7, 49, 196};
    tu_rng r;
    size_t fi, pi, n, i;
    int threads;

    (void)state;
    tu_rng_init(&r, 66);
    for (fi = 0; fi < sizeof Fs / sizeof Fs[0]; fi++)
        for (pi = 0; pi < sizeof Ps / sizeof Ps[0]; pi++)
            for (n = 1; n <= 11; n += 5)
                for (threads = 1; threads <= 2; threads++) {
                    size_t F = Fs[fi], P = Ps[pi], f, b, p;
                    float *dy = malloc(n * F * P * sizeof *dy), db[64], want[64];
                    assert_non_null(dy);
                    for (i = 0; i < n * F * P; i++)
                        dy[i] = ldexpf(tu_rng_sym(&r), rng_int(&r, -12, 12));
                    for (f = 0; f < F; f++)
                        db[f] = want[f] = tu_rng_sym(&r);
                    for (f = 0; f < F; f++)
                        for (b = 0; b < n; b++) {
                            float s = 0.0f;
                            for (p = 0; p < P; p++)
                                s += dy[(b * F + f) * P + p];
                            want[f] += s;
                        }
                    cvi_bias_grad_planes(db, dy, n, F, P, threads);
                    for (f = 0; f < F; f++)
                        if (memcmp(&db[f], &want[f], sizeof db[f]) != 0)
                            fail_msg("F=%zu P=%zu n=%zu, %d threads: db[%zu] = %.9g, the "
                                     "sums in order give %.9g",
                                     F, P, n, threads, f, db[f], want[f]);
                    free(dy);
                }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_forward_matches_direct),
        cmocka_unit_test(test_conv_transpose2d_forward_matches_scatter),
        cmocka_unit_test(test_conv_hand_worked_examples),
        cmocka_unit_test(test_conv_shape_errors_reported),
        cmocka_unit_test(test_im2col_matches_definition),
        cmocka_unit_test(test_col2im_matches_definition),
        cmocka_unit_test(test_im2col_col2im_adjoint),
        cmocka_unit_test(test_im2col_col2im_batched),
        cmocka_unit_test(test_col2im_sums_in_tap_order),
        cmocka_unit_test(test_im2col_vec_same_bits),
        cmocka_unit_test(test_patch_panels_match_columns),
        cmocka_unit_test(test_patch_panels_product_same_bits),
        cmocka_unit_test(test_bias_grad_planes_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
