/*
 * test_model.c - the VAE as a whole: its gradient, its loss terms, the preset architecture,
 * determinism, chunked inference, evaluation, refusal of non-finite batches and the error
 * statuses of the model calls.
 *
 * The gradient of the whole model (encoder, reparameterisation, decoder, reconstruction loss
 * and beta-weighted KL) is checked against central finite differences on every parameter of a
 * small model with eps held fixed; the loss value itself against an independent computation
 * from the public encode and decode; the loss kernels against values worked out by hand.
 *
 * Left out: the layers one by one (test_grad.c), the optimizer's formulas (test_optim.c),
 * saving and loading (test_serialize.c).
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

/* Fails the test with the model's message unless st is CVAE_OK. */
#define CHECK(st, m)                                                                               \
    do {                                                                                           \
        cvae_status st_ = (st);                                                                    \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s", cvae_status_string(st_), cvae_model_last_error(m));                 \
    } while (0)

static float *new_floats(size_t n) { return tu_keep(TU_KEEP_MEMORY, malloc(n * sizeof(float))); }

/*
 * The small model: 1 x 6 x 5 images (non-square), latent 3, built for batches of 4.
 *   encoder: conv2d(1->3, k3 s2 p1) 3x3x3, relu, flatten 27, linear(27 -> 6)
 *   decoder: linear(3 -> 18), relu, reshape 2x3x3, conv_transpose2d(2->1, k4x3 s2 p1) 1x6x5
 *            (sides (3 - 1) * 2 - 2 + 4 = 6 and (3 - 1) * 2 - 2 + 3 = 5)
 * Parameters: 30 + 168 + 72 + 25 = 295.
 */
#define C 1
#define H 6
#define W 5
#define IMG (C * H * W)
#define LAT 3
#define MAXB 4
#define ENC_RELU (3 * 3 * 3) /* floats per image entering the encoder's relu */
#define DEC_RELU 18          /* floats per image entering the decoder's relu */
#define TINY_PARAMS 295

/* A standard normal draw (Box-Muller), independent of the library's. */
static float normal01(uint64_t *s)
{
    const double u1 = 1.0 - (double)tu_uniform01(s), u2 = (double)tu_uniform01(s);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* The small model's stacks; enc_out and dec_kw let the error tests make misfits. */
static void tiny_stacks(cvae_stack **enc, cvae_stack **dec, int enc_out, int dec_kw)
{
    cvae_layer *l = NULL;
    assert_int_equal(cvae_stack_create(enc), CVAE_OK);
    assert_int_equal(cvae_stack_create(dec), CVAE_OK);
    tu_add_layer(*enc, cvae_layer_create_conv2d(&l, 3, 3, 3, 2, 2, 1, 1), &l);
    tu_add_layer(*enc, cvae_layer_create_relu(&l), &l);
    tu_add_layer(*enc, cvae_layer_create_flatten(&l), &l);
    tu_add_layer(*enc, cvae_layer_create_linear(&l, enc_out), &l);
    tu_add_layer(*dec, cvae_layer_create_linear(&l, 18), &l);
    tu_add_layer(*dec, cvae_layer_create_relu(&l), &l);
    tu_add_layer(*dec, cvae_layer_create_reshape(&l, 2, 3, 3), &l);
    tu_add_layer(*dec, cvae_layer_create_conv_transpose2d(&l, 1, 4, dec_kw, 2, 2, 1, 1), &l);
}

/* The small model for batches of up to max_batch, parameters from seed. */
static cvae_model *tiny_model_b(uint64_t seed, int max_batch)
{
    cvae_model *m = tu_new_model();
    cvae_stack *enc, *dec;
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    CHECK(cvae_model_init_stacks(m, enc, dec, C, H, W, LAT, max_batch, seed), m);
    assert_int_equal(cvae_model_param_count(m), TINY_PARAMS);
    return m;
}

static cvae_model *tiny_model(uint64_t seed) { return tiny_model_b(seed, MAXB); }

/* Moves the encoder's output biases away from 0, so that mu and logvar are clearly non-zero
 * (exp(lv / 2) far from 1 and from exp(lv)) and the KL term has weight. */
static void spread_latents(cvae_model *m)
{
    static const float bias[2 * LAT] = {0.3f, -0.5f, 0.8f, -0.9f, 0.6f, -0.4f};
    cvae_layer *lin = cvae_stack_layer(cvae_model_encoder(m), 3);
    float *p = cvae_layer_params(lin);
    assert_int_equal(cvae_layer_param_count(lin), 27 * 2 * LAT + 2 * LAT);
    memcpy(p + 27 * 2 * LAT, bias, sizeof bias);
}

static cvae_optimizer *make_opt(cvae_model *m, cvae_optimizer_kind kind)
{
    return tu_new_opt(kind, cvae_model_param_count(m));
}

/* A dataset of count random images of c x h x w pixels. */
static cvae_dataset *make_dataset(int count, int c, int h, int w, uint64_t seed)
{
    cvae_dataset *ds = tu_new_dataset();
    size_t n = (size_t)count * (size_t)(c * h * w), i;
    uint8_t *px = tu_keep(TU_KEEP_MEMORY, malloc(n));
    cvae_status st;
    for (i = 0; i < n; i++)
        px[i] = (uint8_t)(tu_next_u64(&seed) >> 56);
    st = cvae_dataset_set_u8(ds, count, c, h, w, px, NULL);
    if (st != CVAE_OK)
        fail_msg("dataset_set_u8: %s", cvae_dataset_last_error(ds));
    return ds;
}

/* |a - b| <= rtol * max(|a|, |b|, floor) for every element, with the index on failure. */
static void expect_near(const char *what, const float *a, const float *b, size_t n, double rtol,
                        double floor)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const double x = a[i], y = b[i];
        if (!(fabs(x - y) <= rtol * fmax(fmax(fabs(x), fabs(y)), floor)))
            fail_msg("%s[%zu]: %.9g vs %.9g", what, i, x, y);
    }
}

/* ===================================================== whole-model gradient check */

#define GN 3     /* images in the checked batch (of a maximum of MAXB) */
#define BETA 0.7 /* not 1, so that a KL weight left out or applied twice shows */

/* Central differences as in test_grad.c: h = 1e-2 balances the float rounding of the loss
 * (divided by 2h) against the O(h^2) truncation error; smaller steps only where a ReLU kink
 * lies within the interval. Pass when |num - ana| <= ATOL + RTOL * max(|num|, |ana|): the
 * loss is ~20 nats summed in double from float terms, so its rounding is ~1e-6 and the
 * quotient's error ~1e-4 at worst, well inside the bound, while a wrong sign, factor or
 * index moves a gradient by its own size. */
#define NSTEPS 3
static const float fd_steps[NSTEPS] = {1e-2f, 3e-3f, 1e-3f};
#define RTOL 1e-2
#define ATOL 1e-3
#define SIGNIFICANT (5.0 * ATOL)
#define MAX_SKIP 0.02 /* at most 2% of the parameters may go unchecked for a kink */

#define NKINK (GN * (ENC_RELU + DEC_RELU))

typedef struct grad_fx {
    cvae_model *m;
    float x[GN * IMG];
    float eps[GN * LAT];
    unsigned char kink0[NKINK], probe[NKINK];
    double loss0;
} grad_fx;

/* loss(params) = (sum of recon + beta * sum of KL) / n with the fixed eps: the quantity whose
 * gradient cvi_model_loss_grad leaves in the gradient block. */
static double vae_loss(grad_fx *f, double *rsum, double *ksum)
{
    double r = 0.0, k = 0.0;
    memcpy(f->m->eps, f->eps, sizeof f->eps);
    cvi_model_loss_grad(f->m, f->x, GN, &r, &k);
    if (rsum)
        *rsum = r;
    if (ksum)
        *ksum = k;
    return (r + BETA * k) / GN;
}

/* pat[k] = 1 where a value entering one of the two ReLUs is > 0, for the point vae_loss was
 * last evaluated at: the encoder's conv output on x, the decoder's linear output on the z of
 * that evaluation (m->z). */
static void kink_pattern(grad_fx *f, unsigned char *pat)
{
    float pre[GN * ENC_RELU];
    size_t j, k = 0;
    assert_int_equal(
        cvae_layer_forward(cvae_stack_layer(cvae_model_encoder(f->m), 0), f->x, pre, GN), CVAE_OK);
    for (j = 0; j < GN * ENC_RELU; j++)
        pat[k++] = pre[j] > 0.0f;
    assert_int_equal(
        cvae_layer_forward(cvae_stack_layer(cvae_model_decoder(f->m), 0), f->m->z, pre, GN),
        CVAE_OK);
    for (j = 0; j < GN * DEC_RELU; j++)
        pat[k++] = pre[j] > 0.0f;
}

/* The loss with *v moved to v0 + k h (then restored bit for bit); *kinked when a ReLU input
 * changed sign on the way. */
static double loss_moved(grad_fx *f, float *v, float v0, int k, float h, int *kinked)
{
    double loss;
    *v = v0 + (float)k * h;
    loss = vae_loss(f, NULL, NULL);
    kink_pattern(f, f->probe);
    *kinked = memcmp(f->probe, f->kink0, NKINK) != 0;
    *v = v0;
    return loss;
}

/* dloss/dv by central differences, or a second-order one-sided difference on a side free of
 * kinks, for each step in turn (test_grad.c explains the scheme). 0 if none applies. */
static int numeric_derivative(grad_fx *f, float *v, double *num)
{
    const float v0 = *v;
    int i, kp, km, k2;
    for (i = 0; i < NSTEPS; i++) {
        const float h = fd_steps[i];
        const double lp = loss_moved(f, v, v0, 1, h, &kp);
        const double lm = loss_moved(f, v, v0, -1, h, &km);
        double l2;
        if (!kp && !km) {
            *num = (lp - lm) / (2.0 * h);
            return 1;
        }
        if (i == NSTEPS - 1)
            break;
        if (!kp) {
            l2 = loss_moved(f, v, v0, 2, h, &k2);
            if (!k2) {
                *num = (4.0 * lp - 3.0 * f->loss0 - l2) / (2.0 * h);
                return 1;
            }
        }
        if (!km) {
            l2 = loss_moved(f, v, v0, -2, h, &k2);
            if (!k2) {
                *num = (3.0 * f->loss0 - 4.0 * lm + l2) / (2.0 * h);
                return 1;
            }
        }
    }
    return 0;
}

/* "parameter 201 (decoder layer 0 linear, offset 3 of 72)" for parameter k of the block. */
static void describe_param(cvae_model *m, size_t k, char *buf, size_t len)
{
    cvae_stack *stacks[2];
    size_t start = 0;
    int s, i;
    stacks[0] = cvae_model_encoder(m);
    stacks[1] = cvae_model_decoder(m);
    for (s = 0; s < 2; s++) {
        for (i = 0; i < cvae_stack_layer_count(stacks[s]); i++) {
            cvae_layer *l = cvae_stack_layer(stacks[s], i);
            const size_t count = cvae_layer_param_count(l);
            if (k < start + count) {
                snprintf(buf, len, "parameter %zu (%s layer %d %s, offset %zu of %zu)", k,
                         s ? "decoder" : "encoder", i, cvae_layer_kind_name(l), k - start, count);
                return;
            }
            start += count;
        }
    }
    snprintf(buf, len, "parameter %zu (beyond the layers' %zu)", k, start);
}

static void grad_fx_init(grad_fx *f)
{
    uint64_t s = 4242;
    size_t i;
    memset(f, 0, sizeof *f);
    f->m = tiny_model(31);
    spread_latents(f->m);
    CHECK(cvae_model_set(f->m, CVAE_MODEL_BETA, BETA), f->m);
    for (i = 0; i < GN * IMG; i++)
        f->x[i] = tu_uniform01(&s);
    for (i = 0; i < GN * LAT; i++)
        f->eps[i] = normal01(&s);
}

/* Fails if any parameter's gradient from cvi_model_loss_grad (encoder, reparameterisation
 * z = mu + exp(lv/2) eps, decoder, BCE on logits, beta-weighted KL, 1/n averaging) differs
 * from the central difference of (recon + beta KL) / n, or if the gradient accumulates over
 * calls instead of being zeroed first. */
static void test_whole_model_gradient(void **state)
{
    grad_fx f;
    float *grads, *params, *ana;
    size_t n, k, checked = 0, skipped = 0, significant = 0;
    (void)state;
    grad_fx_init(&f);
    n = cvae_model_param_count(f.m);
    params = cvae_model_params(f.m, NULL);
    grads = cvae_model_grads(f.m, NULL);
    ana = new_floats(n);
    /* Two calls: the second must give the same gradient, not twice it. */
    f.loss0 = vae_loss(&f, NULL, NULL);
    memcpy(ana, grads, n * sizeof *ana);
    assert_true(vae_loss(&f, NULL, NULL) == f.loss0);
    assert_memory_equal(ana, grads, n * sizeof *ana);
    kink_pattern(&f, f.kink0);
    for (k = 0; k < n; k++) {
        double num;
        char where[160];
        if (!numeric_derivative(&f, &params[k], &num)) {
            skipped++;
            continue;
        }
        checked++;
        if (fmax(fabs(num), fabs(ana[k])) > SIGNIFICANT)
            significant++;
        if (!(fabs(num - ana[k]) <= ATOL + RTOL * fmax(fabs(num), fabs(ana[k])))) {
            describe_param(f.m, k, where, sizeof where);
            fail_msg("gradient of %s: numeric %.7g, analytic %.7g", where, num, ana[k]);
        }
    }
    if ((double)skipped > MAX_SKIP * (double)n)
        fail_msg("%zu of %zu parameters unchecked for a ReLU kink", skipped, n);
    if (4 * significant < checked)
        fail_msg("only %zu of %zu gradients exceed %g: degenerate case", significant, checked,
                 SIGNIFICANT);
}

/* Fails if the summed losses of cvi_model_loss_grad differ from an independent computation:
 * mu and logvar from cvae_model_encode, z = mu + exp(logvar / 2) eps in double, probabilities
 * p from cvae_model_decode, recon = -sum t ln p + (1 - t) ln(1 - p), and
 * KL = 0.5 sum mu^2 + exp(lv) - 1 - lv. */
static void test_loss_value_independent(void **state)
{
    grad_fx f;
    float mu[GN * LAT], lv[GN * LAT], z[GN * LAT], p[GN * IMG];
    double rsum, ksum, r = 0.0, k = 0.0;
    size_t i;
    (void)state;
    grad_fx_init(&f);
    vae_loss(&f, &rsum, &ksum);
    CHECK(cvae_model_encode(f.m, f.x, GN, mu, lv), f.m);
    for (i = 0; i < GN * LAT; i++) {
        z[i] = (float)(mu[i] + exp(0.5 * lv[i]) * f.eps[i]);
        k += 0.5 * ((double)mu[i] * mu[i] + exp(lv[i]) - 1.0 - lv[i]);
    }
    CHECK(cvae_model_decode(f.m, z, GN, p), f.m);
    for (i = 0; i < GN * IMG; i++)
        r -= f.x[i] * log((double)p[i]) + (1.0 - f.x[i]) * log(1.0 - (double)p[i]);
    /* The latents must be far from the trivial point, or exp(lv/2) vs exp(lv) would not show. */
    assert_true(k > 0.5);
    if (!(fabs(rsum - r) <= 1e-5 * r))
        fail_msg("recon sum %.9g, expected %.9g", rsum, r);
    if (!(fabs(ksum - k) <= 1e-5 * k))
        fail_msg("KL sum %.9g, expected %.9g", ksum, k);
}

/* ======================================================================= loss kernels */

/* Fails if the binary cross-entropy on logits or its gradient departs from the closed forms,
 * or if an extreme logit overflows, loses its exact value or produces a NaN. */
/* Fails if the library's log1p on [0, 1] (which the loss uses per pixel) is more than 4 float
 * ulps from double log1p anywhere, loses tiny arguments, or is not exact at 0. */
static void test_log1p01_accuracy(void **state)
{
    double worst = 0.0, worst_u = 0.0;
    int i;
    (void)state;
    assert_true(cvi_log1p01(0.0f) == 0.0f);
    /* A denormal comes back within one step of the denormal grid (u / 2 rounds there). */
    assert_true(fabs((double)cvi_log1p01(1e-44f) - 1e-44) <= 1.5e-45);
    for (i = 0; i <= 1000000; i++) {
        /* Uniform steps on [0, 1] and a geometric sweep down to 1e-38. */
        float u = i % 2 ? (float)i / 1000000.0f : (float)pow(10.0, -38.0 * i / 1000000.0);
        double want = log1p((double)u), got = cvi_log1p01(u);
        double ulp = want > 0.0 ? ldexp(1.0, ilogb(want) - 23) : 1e-45;
        if (fabs(got - want) / ulp > worst) {
            worst = fabs(got - want) / ulp;
            worst_u = u;
        }
    }
    if (!(worst <= 4.0))
        fail_msg("log1p01(%.9g) is %.2f ulps off", worst_u, worst);
}

static void test_bce_by_hand(void **state)
{
    /* Per pixel: l(x, t) = max(x, 0) - x t + log(1 + e^-|x|); dl/dx = sigmoid(x) - t. */
    static const float x[] = {0.0f, 2.0f, -3.0f, 100.0f, -100.0f, 100.0f, -100.0f, 0.0f, 1.5f};
    static const float t[] = {0.5f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 0.25f};
    const double ln2 = 0.69314718055994531, e100 = exp(-100.0);
    const double want[] = {
        ln2,                                 /* x = 0, t = .5: -.5 ln .5 - .5 ln .5 = ln 2 */
        log1p(exp(-2.0)),                    /* x = 2, t = 1: -ln s(2) = ln(1 + e^-2) */
        log1p(exp(-3.0)),                    /* x = -3, t = 0: -ln(1 - s(-3)) = ln(1 + e^-3) */
        log1p(e100),                         /* confident and right: ~3.7e-44 */
        log1p(e100),                         /* the same on the other side */
        100.0 + log1p(e100),                 /* confident and wrong: 100 + ln(1 + e^-100) */
        100.0 + log1p(e100),                 /* x = -100, t = 1: 0 + 100 + ln(1 + e^-100) */
        ln2,                                 /* x = 0, t = 1: ln 2 */
        1.5 - 1.5 * 0.25 + log1p(exp(-1.5)), /* 1.5 - 0.375 + ln(1 + e^-1.5) */
    };
    const size_t n = sizeof x / sizeof x[0];
    float d[sizeof x / sizeof x[0]];
    double sum = 0.0, got;
    size_t i;
    (void)state;
    for (i = 0; i < n; i++) {
        float di = NAN;
        const double s = 1.0 / (1.0 + exp(-(double)x[i]));
        got = cvi_bce_logits(&x[i], &t[i], 1, &di, 0.5f);
        /* Relative 1e-6 for the float terms. The ~1e-44 values are float denormals with a few
         * bits of precision: they must be >= 0 and ~0 (a naive -t log s - (1 - t) log(1 - s)
         * gives 0 * log 0 = NaN once s rounds to 1). */
        if (want[i] < 1e-30 ? !(got >= 0.0 && got <= 1e-40)
                            : !(fabs(got - want[i]) <= 1e-6 * want[i]))
            fail_msg("bce(x = %g, t = %g) = %.17g, expected %.17g", x[i], t[i], got, want[i]);
        /* Gradient 0.5 (s - t). */
        if (!(fabs(di - 0.5 * (s - t[i])) <= 1e-7))
            fail_msg("dbce(x = %g, t = %g) = %.9g, expected %.9g", x[i], t[i], di,
                     0.5 * (s - t[i]));
        sum += want[i];
    }
    /* All at once: the sum, and the gradient written (=) over garbage, not added. */
    for (i = 0; i < n; i++)
        d[i] = 1e30f;
    got = cvi_bce_logits(x, t, n, d, 2.0f);
    if (!(fabs(got - sum) <= 1e-6 * sum))
        fail_msg("bce sum %.17g, expected %.17g", got, sum);
    for (i = 0; i < n; i++) {
        const double s = 1.0 / (1.0 + exp(-(double)x[i]));
        if (!(fabs(d[i] - 2.0 * (s - t[i])) <= 2e-7))
            fail_msg("dbce[%zu] = %.9g, expected %.9g", i, d[i], 2.0 * (s - t[i]));
    }
    /* NULL gradient: only the sum. */
    assert_true(cvi_bce_logits(x, t, n, NULL, 1.0f) == got);
}

/* Fails if the loss over 1,003 pixels (chunks of 256 inside, and a tail) is not, bit for bit,
 * the per-pixel float terms summed in double in 8 interleaved sums (pixel i into sum i % 8, in
 * order) added in order, or its gradient not the per-pixel scalar formula; and, as a check on
 * both, if they depart from libm in double. */
static void test_bce_chunks_exact(void **state)
{
    enum { N = 1003 };
    static float x[N], t[N], d[N];
    double part[8] = {0}, want = 0.0, ref = 0.0, got;
    size_t i;
    (void)state;
    tu_fill_uniform(x, N, 31);
    tu_fill_uniform(t, N, 32);
    for (i = 0; i < N; i++) {
        x[i] = 40.0f * x[i] - 20.0f;
        if (i % 3 == 0) /* right and confident: tiny terms */
            t[i] = x[i] > 0.0f ? 1.0f : 0.0f;
    }
    /* Huge terms in each of the 8 sums and in the tail: every later add rounds, so any other
     * order of the adds gives other bits. */
    for (i = 0; i < N; i++)
        if (i < 8 || i >= 1000) {
            x[i] = 1073741824.0f * (float)(1 + i % 3);
            t[i] = 0.0f;
        }
    got = cvi_bce_logits(x, t, N, d, 0.25f);
    for (i = 0; i < N; i++) {
        float e = cvi_exp_nonpos(-fabsf(x[i]));
        float term = (x[i] > 0.0f ? x[i] : 0.0f) - x[i] * t[i] + cvi_log1p01(e);
        float g = 0.25f * ((x[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e)) - t[i]);
        double s = 1.0 / (1.0 + exp(-(double)x[i]));
        part[i % 8] += (double)term;
        ref += (x[i] > 0.0f ? x[i] : 0.0) - (double)x[i] * t[i] + log1p(exp(-fabs((double)x[i])));
        if (memcmp(&g, &d[i], sizeof g) != 0)
            fail_msg("dbce[%zu] = %.9g, the scalar formula gives %.9g", i, d[i], g);
        if (!(fabs(d[i] - 0.25 * (s - t[i])) <= 1e-7))
            fail_msg("dbce[%zu] = %.9g, libm in double %.9g", i, d[i], 0.25 * (s - t[i]));
    }
    for (i = 0; i < 8; i++)
        want += part[i];
    if (got != want)
        fail_msg("bce sum %.17g, the terms summed in 8 interleaved sums %.17g", got, want);
    if (!(fabs(got - ref) <= 1e-6 * ref))
        fail_msg("bce sum %.17g, libm in double %.17g", got, ref);
    assert_true(cvi_bce_logits(x, t, N, NULL, 1.0f) == got);
}

/* Fails if the loss's exp of a non-positive x departs from e^x (libm in double) by more than
 * 1.2e-7 relative anywhere on a dense grid of [-87.3, 0] (every 1/4096, and down to -1e-30
 * geometrically), or is not 0 below FLT_MIN, 1 at +-0, 0 at -inf and NaN at NaN. */
static void test_exp_nonpos(void **state)
{
    double worst = 0.0, worst_x = 0.0;
    float x;
    long i;
    (void)state;
    for (i = 0; i <= 87L * 4096 + 1228; i++) { /* down to -87.2998 */
        double want;
        x = -(float)i / 4096.0f;
        want = exp((double)x);
        if (fabs(cvi_exp_nonpos(x) - want) > worst * want)
            worst = fabs(cvi_exp_nonpos(x) - want) / want, worst_x = x;
    }
    for (x = -1e-3f; x < -1e-30f; x *= 0.75f) {
        double want = exp((double)x);
        if (fabs(cvi_exp_nonpos(x) - want) > worst * want)
            worst = fabs(cvi_exp_nonpos(x) - want) / want, worst_x = x;
    }
    if (!(worst <= 1.2e-7))
        fail_msg("exp(%.9g): relative error %.3g, more than 1.2e-7", worst_x, worst);
    assert_true(cvi_exp_nonpos(0.0f) == 1.0f && cvi_exp_nonpos(-0.0f) == 1.0f);
    assert_true(cvi_exp_nonpos(-87.3f) >= FLT_MIN);
    assert_true(cvi_exp_nonpos(-87.34f) == 0.0f && cvi_exp_nonpos(-88.0f) == 0.0f);
    assert_true(cvi_exp_nonpos(-1e4f) == 0.0f && cvi_exp_nonpos(-INFINITY) == 0.0f);
    assert_true(isnan(cvi_exp_nonpos(NAN)));
}

/* Fails if cvi_sigmoid (the vector variant the CPU picks, over 1,000 logits and a tail) is not,
 * bit for bit, the scalar formula with the same exp, or departs from 1 / (1 + e^-x) in double
 * by more than 2 float ulps at 1; or loses a NaN, or the ends of the range. */
static void test_sigmoid_exact(void **state)
{
    enum { N = 1003 };
    static float x[N], y[N];
    size_t i;
    (void)state;
    tu_fill_uniform(x, N, 33);
    for (i = 0; i < N; i++)
        x[i] = 60.0f * x[i] - 30.0f;
    x[0] = 0.0f, x[1] = 100.0f, x[2] = -100.0f, x[3] = INFINITY, x[4] = -INFINITY, x[5] = NAN;
    cvi_sigmoid(y, x, N);
    for (i = 6; i < N; i++) {
        float e = cvi_exp_nonpos(-fabsf(x[i]));
        float want = x[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        double ref = 1.0 / (1.0 + exp(-(double)x[i]));
        if (memcmp(&want, &y[i], sizeof want) != 0)
            fail_msg("sigmoid(%.9g) = %.9g, the scalar formula gives %.9g", x[i], y[i], want);
        if (!(fabs(y[i] - ref) <= 2.4e-7 * (ref < 0.5 ? ref + 1e-38 : 1.0)))
            fail_msg("sigmoid(%.9g) = %.9g, libm in double %.9g", x[i], y[i], ref);
    }
    assert_true(y[0] == 0.5f && y[1] == 1.0f && y[2] == 0.0f && y[3] == 1.0f && y[4] == 0.0f);
    assert_true(isnan(y[5]));
    cvi_sigmoid(x, x, N); /* in place */
    assert_true(memcmp(x + 6, y + 6, (N - 6) * sizeof *x) == 0);
}

/* Fails if KL(N(mu, e^lv) || N(0, 1)) = 0.5 (mu^2 + e^lv - 1 - lv) or its gradients
 * (mu, 0.5 (e^lv - 1), times scale) depart from hand values. */
static void test_kl_by_hand(void **state)
{
    const float ln2 = 0.693147180559945f;
    const float mu[] = {0.0f, 1.0f, 0.0f, -2.0f, 0.5f};
    const float lv[] = {0.0f, 0.0f, ln2, -1.0f, 1.0f};
    const double want[] = {
        0.0,                                 /* the prior itself */
        0.5,                                 /* mu = 1: 0.5 * 1 */
        0.5 * (2.0 - 1.0 - (double)ln2),     /* var 2: 0.5 (2 - 1 - ln 2) */
        0.5 * (4.0 + exp(-1.0) - 1.0 + 1.0), /* 0.5 (4 + e^-1 - 1 + 1) */
        0.5 * (0.25 + exp(1.0) - 1.0 - 1.0), /* 0.5 (0.25 + e - 2) */
    };
    const size_t n = sizeof mu / sizeof mu[0];
    float dmu[5], dlv[5];
    double sum = 0.0, got;
    size_t i;
    (void)state;
    for (i = 0; i < n; i++) {
        got = cvi_kl_normal(&mu[i], &lv[i], 1, NULL, NULL, 0.0f);
        if (!(fabs(got - want[i]) <= 1e-6 * fmax(want[i], 1e-6)))
            fail_msg("kl(mu = %g, lv = %g) = %.17g, expected %.17g", mu[i], lv[i], got, want[i]);
        sum += want[i];
    }
    for (i = 0; i < n; i++)
        dmu[i] = dlv[i] = 1e30f;
    got = cvi_kl_normal(mu, lv, n, dmu, dlv, 0.25f);
    if (!(fabs(got - sum) <= 1e-6 * sum))
        fail_msg("kl sum %.17g, expected %.17g", got, sum);
    for (i = 0; i < n; i++) {
        const double gm = 0.25 * mu[i], gl = 0.25 * 0.5 * (exp((double)lv[i]) - 1.0);
        if (!(fabs(dmu[i] - gm) <= 1e-7) || !(fabs(dlv[i] - gl) <= 1e-7))
            fail_msg("kl gradient [%zu]: (%.9g, %.9g), expected (%.9g, %.9g)", i, dmu[i], dlv[i],
                     gm, gl);
    }
}

/* ======================================================================= the preset */

/* Parameters of the preset as cvae.h describes it, for c x h x w images and latent l. */
/* The preset's parameter count counted by hand from the layer list of
 * cvae.h: conv widths wd and 2 wd, hidden width hd. */
static size_t preset_count_widths(size_t c, size_t h, size_t w, size_t l, size_t wd, size_t hd)
{
    const size_t w2 = 2 * wd, flat = w2 * (h / 4) * (w / 4);
    return (c * wd * 16 + wd) + (wd * w2 * 16 + w2) + (flat * hd + hd) + (hd * 2 * l + 2 * l) +
           (l * hd + hd) + (hd * flat + flat) + (w2 * wd * 16 + wd) + (wd * c * 16 + c);
}

/* With the default widths: 32, and a hidden width that grows with the image. */
static size_t preset_count(size_t c, size_t h, size_t w, size_t l)
{
    return preset_count_widths(c, h, w, l, 32, c * h * w <= 1024 ? 256 : 512);
}

/* Fails if the preset's parameter count differs from the architecture in cvae.h (1,688,289
 * for MNIST, as PyTorch counts it), if sides that are not multiples of 4 are not refused with
 * CVAE_ERR_SHAPE leaving the model empty, or if a 3 x 32 x 32 model does not build with the
 * right shapes everywhere. */
static void test_preset(void **state)
{
    static const int bad[][3] = {{1, 28, 30}, {1, 30, 28}, {1, 26, 26}, {3, 2, 4}, {1, 4, 6}};
    cvae_model *m = NULL;
    cvae_stack *s;
    size_t i;
    int c, h, w, l, b;
    (void)state;
    assert_int_equal(preset_count(1, 28, 28, 16), 1688289);
    m = tu_new_model();
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(cvae_model_init_preset(m, bad[i][0], bad[i][1], bad[i][2], 16, 8, 1),
                         CVAE_ERR_SHAPE);
        assert_true(cvae_model_last_error(m)[0] != '\0');
        assert_int_equal(cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
        assert_int_equal(cvae_model_param_count(m), 0);
    }
    assert_int_equal(cvae_model_init_preset(m, 0, 28, 28, 16, 8, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_init_preset(m, 1, 28, 28, 0, 8, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_init_preset(m, 1, 28, 28, 16, 0, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    CHECK(cvae_model_init_preset(m, 1, 28, 28, 16, 8, 1), m);
    assert_int_equal(cvae_model_param_count(m), 1688289);
    CHECK(cvae_model_shape(m, &c, &h, &w, &l, &b), m);
    assert_true(c == 1 && h == 28 && w == 28 && l == 16 && b == 8);

    /* Colour. */
    m = tu_new_model();
    CHECK(cvae_model_init_preset(m, 3, 32, 32, 8, 2, 5), m);
    assert_int_equal(cvae_model_param_count(m), preset_count(3, 32, 32, 8));
    CHECK(cvae_model_shape(m, &c, &h, &w, &l, &b), m);
    assert_true(c == 3 && h == 32 && w == 32 && l == 8 && b == 2);
    s = cvae_model_decoder(m);
    assert_int_equal(cvae_stack_input_shape(s, &c, &h, &w), CVAE_OK);
    assert_true(c == 8 && h == 1 && w == 1);
    assert_int_equal(cvae_stack_output_shape(s, &c, &h, &w), CVAE_OK);
    if (c != 3 || h != 32 || w != 32)
        fail_msg("colour decoder output %dx%dx%d, expected 3x32x32", c, h, w);
    s = cvae_model_encoder(m);
    assert_int_equal(cvae_stack_input_shape(s, &c, &h, &w), CVAE_OK);
    assert_true(c == 3 && h == 32 && w == 32);
    assert_int_equal(cvae_stack_output_shape(s, &c, &h, &w), CVAE_OK);
    assert_int_equal(c * h * w, 16);

    /* Non-square, 2 channels, and a side of 4 (H/4 = 1): the smallest the preset allows. */
    m = tu_new_model();
    CHECK(cvae_model_init_preset(m, 2, 4, 8, 3, 1, 5), m);
    assert_int_equal(cvae_model_param_count(m), preset_count(2, 4, 8, 3));
}

/* ====================================================================== determinism */

#define DN 5 /* batch of the determinism test */

/* Fails if two models from the same seed, trained on the same batch, are not bit-identical
 * after every step (parameters, losses, step count), if training does not change the
 * parameters, or if another seed gives the same parameters. */
static void test_training_is_deterministic(void **state)
{
    cvae_model *a = NULL, *b = NULL, *c = NULL;
    cvae_optimizer *oa, *ob;
    float *x = new_floats(DN * 28 * 28), *init;
    size_t n, i, changed = 0;
    int step;
    (void)state;
    tu_fill_uniform(x, DN * 28 * 28, 99);
    a = tu_new_model();
    b = tu_new_model();
    c = tu_new_model();
    CHECK(cvae_model_init_preset(a, 1, 28, 28, 16, 8, 2024), a);
    CHECK(cvae_model_init_preset(b, 1, 28, 28, 16, 8, 2024), b);
    CHECK(cvae_model_init_preset(c, 1, 28, 28, 16, 8, 2025), c);
    n = cvae_model_param_count(a);
    assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL), n * 4);
    assert_memory_not_equal(cvae_model_params(a, NULL), cvae_model_params(c, NULL), n * 4);
    init = new_floats(n);
    memcpy(init, cvae_model_params(a, NULL), n * sizeof *init);
    oa = make_opt(a, CVAE_OPTIMIZER_ADAM);
    ob = make_opt(b, CVAE_OPTIMIZER_ADAM);
    for (step = 1; step <= 3; step++) {
        double ra = 0, ka = 0, rb = 1, kb = 1;
        CHECK(cvae_model_train_step(a, oa, x, DN, &ra, &ka), a);
        CHECK(cvae_model_train_step(b, ob, x, DN, &rb, &kb), b);
        assert_memory_equal(&ra, &rb, sizeof ra);
        assert_memory_equal(&ka, &kb, sizeof ka);
        assert_true(isfinite(ra) && ra > 0.0 && isfinite(ka) && ka >= 0.0);
        assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL), n * 4);
        assert_int_equal(cvae_model_steps(a), (uint64_t)step);
        assert_int_equal(cvae_optimizer_steps(oa), (uint64_t)step);
    }
    /* Adam moves every parameter with a non-zero gradient by ~lr a step. */
    for (i = 0; i < n; i++)
        changed += init[i] != cvae_model_params(a, NULL)[i];
    assert_true(changed > n / 2);
}

/* Fails if sampling with a seed is not reproducible, if another seed gives (nearly) the same
 * images, or if a sample is not a probability image. */
static void test_sample_seeded(void **state)
{
    enum { N = 6, PIX = N * 28 * 28 };
    cvae_model *m = NULL;
    float *a = new_floats(PIX), *b = new_floats(PIX);
    size_t i, differ = 0;
    (void)state;
    m = tu_new_model();
    CHECK(cvae_model_init_preset(m, 1, 28, 28, 16, 8, 3), m);
    CHECK(cvae_model_sample(m, N, 77, a), m);
    CHECK(cvae_model_sample(m, N, 77, b), m);
    assert_memory_equal(a, b, PIX * sizeof *a);
    CHECK(cvae_model_sample(m, N, 78, b), m);
    for (i = 0; i < PIX; i++) {
        assert_true(a[i] >= 0.0f && a[i] <= 1.0f && b[i] >= 0.0f && b[i] <= 1.0f);
        differ += a[i] != b[i];
    }
    if (differ < PIX / 2)
        fail_msg("seeds 77 and 78 give %zu differing pixels of %d", differ, (int)PIX);
}

/* =========================================================================== chunks */

#define CN (2 * MAXB + 1) /* two full chunks and one of a single image */

/* Fails if encode, decode, reconstruct or sample on more images than the maximum batch differ
 * from the same work done one image at a time (a chunk offset or count wrong), if
 * reconstruct is not decode(encode mu), if sample is not decode(z) for z the normal draws of
 * its seed image by image, or if samples depend on the maximum batch. */
static void test_chunked_calls(void **state)
{
    cvae_model *m = tiny_model(12), *m3;
    float x[CN * IMG], mu[CN * LAT], lv[CN * LAT], one_mu[CN * LAT], one_lv[CN * LAT];
    float dec[CN * IMG], one[CN * IMG], rec[CN * IMG], z[CN * LAT];
    cvi_rng rng;
    int i;
    (void)state;
    spread_latents(m);
    tu_fill_uniform(x, CN * IMG, 5);
    CHECK(cvae_model_encode(m, x, CN, mu, lv), m);
    for (i = 0; i < CN; i++)
        CHECK(cvae_model_encode(m, x + i * IMG, 1, one_mu + i * LAT, one_lv + i * LAT), m);
    expect_near("encode mu", mu, one_mu, CN * LAT, 1e-6, 1e-3);
    expect_near("encode logvar", lv, one_lv, CN * LAT, 1e-6, 1e-3);
    /* logvar may be NULL. */
    CHECK(cvae_model_encode(m, x, CN, one_mu, NULL), m);
    expect_near("encode mu without logvar", mu, one_mu, CN * LAT, 1e-6, 1e-3);

    CHECK(cvae_model_decode(m, mu, CN, dec), m);
    for (i = 0; i < CN; i++)
        CHECK(cvae_model_decode(m, mu + i * LAT, 1, one + i * IMG), m);
    expect_near("decode", dec, one, CN * IMG, 1e-6, 1e-3);

    CHECK(cvae_model_reconstruct(m, x, CN, rec), m);
    expect_near("reconstruct vs decode(mu)", rec, dec, CN * IMG, 1e-6, 1e-3);
    for (i = 0; i < CN; i++)
        CHECK(cvae_model_reconstruct(m, x + i * IMG, 1, one + i * IMG), m);
    expect_near("reconstruct", rec, one, CN * IMG, 1e-6, 1e-3);

    /* z: the seed's normal stream drawn image by image, LAT (odd) values each, as cvae.h says
     * sample draws, whatever max batch is. */
    cvi_rng_seed(&rng, 1234);
    for (i = 0; i < CN; i++)
        cvi_rng_normal(&rng, z + i * LAT, LAT);
    CHECK(cvae_model_sample(m, CN, 1234, dec), m);
    for (i = 0; i < CN; i++)
        CHECK(cvae_model_decode(m, z + i * LAT, 1, one + i * IMG), m);
    expect_near("sample vs decode(z)", dec, one, CN * IMG, 1e-6, 1e-3);
    /* The same parameters built for batches of 3: the same samples. */
    m3 = tiny_model_b(12, 3);
    spread_latents(m3);
    assert_memory_equal(cvae_model_params(m, NULL), cvae_model_params(m3, NULL),
                        TINY_PARAMS * sizeof(float));
    CHECK(cvae_model_sample(m3, CN, 1234, one), m3);
    expect_near("sample with max batch 3", dec, one, CN * IMG, 1e-6, 1e-3);
}

/* ======================================================================= evaluation */

#define EN 10 /* images evaluated: chunks of 4, 4 and 2 */
#define EN2 90 /* with a max batch of 40: chunks of 40 (two lanes), 40 and 10 */

/* Fails unless r and k, what cvae_model_evaluate(m, ds, seed) gave, are the recon and KL per
 * image computed independently for the n images of ds: in the stored order, eps drawn image by
 * image from the seed (cvae.h), KL from the encoded mu and logvar, recon from decode and BCE. */
static void expect_evaluation(cvae_model *m, cvae_dataset *ds, int n, uint64_t seed, double r,
                              double k)
{
    float *x = tu_keep(TU_KEEP_MEMORY, malloc(sizeof(float) * (size_t)n * (2 * IMG + 3 * LAT)));
    float *p = x + (size_t)n * IMG, *mu = p + (size_t)n * IMG, *lv = mu + (size_t)n * LAT;
    float *z = lv + (size_t)n * LAT;
    double kl = 0.0, rec = 0.0;
    cvi_rng rng;
    size_t i;
    assert_int_equal(cvae_dataset_unshuffle(ds), CVAE_OK);
    assert_int_equal(cvae_dataset_batch(ds, 0, n, x, NULL), CVAE_OK);
    CHECK(cvae_model_encode(m, x, n, mu, lv), m);
    cvi_rng_seed(&rng, seed);
    for (i = 0; i < (size_t)n; i++)
        cvi_rng_normal(&rng, z + i * LAT, LAT);
    for (i = 0; i < (size_t)n * LAT; i++) {
        kl += 0.5 * ((double)mu[i] * mu[i] + exp(lv[i]) - 1.0 - lv[i]);
        z[i] = (float)(mu[i] + exp(0.5 * lv[i]) * z[i]);
    }
    CHECK(cvae_model_decode(m, z, n, p), m);
    for (i = 0; i < (size_t)n * IMG; i++)
        rec -= x[i] * log((double)p[i]) + (1.0 - x[i]) * log(1.0 - (double)p[i]);
    kl /= n;
    rec /= n;
    if (!(fabs(k - kl) <= 1e-5 * kl))
        fail_msg("evaluate KL %.9g, expected %.9g (%d images)", k, kl, n);
    if (!(fabs(r - rec) <= 1e-5 * rec))
        fail_msg("evaluate recon %.9g, expected %.9g (%d images)", r, rec, n);
}

/* Fails if evaluation is not reproducible for one eps seed, ignores the seed, reports a total
 * other than recon + KL (whatever beta), depends on the dataset's order or the maximum batch,
 * touches the model's generator or parameters, or departs from an independent computation
 * (KL from the encoded mu and logvar; recon from eps drawn image by image, decode and BCE). */
static void test_evaluate(void **state)
{
    cvae_model *m = tiny_model(8), *m3;
    cvae_dataset *ds = make_dataset(EN, C, H, W, 17);
    double r1, k1, t1, r2, k2, t2, r3, k3, t3;
    cvi_rng before;
    float params0[TINY_PARAMS];
    int threads;
    (void)state;
    spread_latents(m);
    CHECK(cvae_model_set(m, CVAE_MODEL_BETA, 0.25), m);
    memcpy(params0, cvae_model_params(m, NULL), sizeof params0);
    before = m->rng;
    CHECK(cvae_model_evaluate(m, ds, 5, &r1, &k1, &t1), m);
    CHECK(cvae_model_evaluate(m, ds, 5, &r2, &k2, &t2), m);
    assert_memory_equal(&r1, &r2, sizeof r1);
    assert_memory_equal(&k1, &k2, sizeof k1);
    assert_memory_equal(&t1, &t2, sizeof t1);
    assert_true(fabs(t1 - (r1 + k1)) <= 1e-12 * t1);
    assert_memory_equal(&before, &m->rng, sizeof before);
    assert_memory_equal(params0, cvae_model_params(m, NULL), sizeof params0);
    /* Another seed: other eps, another recon; KL does not depend on eps. */
    CHECK(cvae_model_evaluate(m, ds, 6, &r3, &k3, &t3), m);
    assert_true(r3 != r1);
    assert_true(fabs(k3 - k1) <= 1e-12 * k1);
    /* The order does not matter. */
    assert_int_equal(cvae_dataset_shuffle(ds, 3), CVAE_OK);
    CHECK(cvae_model_evaluate(m, ds, 5, &r2, &k2, &t2), m);
    assert_true(fabs(r2 - r1) <= 1e-12 * r1 && fabs(k2 - k1) <= 1e-12 * k1);
    /* The same parameters built for batches of 3 (chunks of 3, 3, 3, 1): the same figures. */
    m3 = tiny_model_b(8, 3);
    spread_latents(m3);
    CHECK(cvae_model_evaluate(m3, ds, 5, &r2, &k2, NULL), m3);
    assert_true(fabs(r2 - r1) <= 1e-6 * r1 && fabs(k2 - k1) <= 1e-6 * k1);
    /* NULL outputs are allowed. */
    CHECK(cvae_model_evaluate(m, ds, 5, NULL, NULL, &t2), m);
    assert_true(fabs(t2 - t1) <= 1e-12 * t1);
    CHECK(cvae_model_evaluate(m, ds, 5, NULL, NULL, NULL), m);

    expect_evaluation(m, ds, EN, 5, r1, k1);

    /* Chunks that a step would cut into two lanes (the sums are added part by part), on one
     * and two threads. */
    for (threads = 1; threads <= 2; threads++) {
        cvae_model *m40 = tiny_model_b(8, 40);
        cvae_dataset *ds90 = make_dataset(EN2, C, H, W, 23);
        spread_latents(m40);
        CHECK(cvae_model_set(m40, CVAE_MODEL_THREADS, threads), m40);
        CHECK(cvae_model_evaluate(m40, ds90, 5, &r2, &k2, NULL), m40);
        expect_evaluation(m40, ds90, EN2, 5, r2, k2);
    }
}

/* Fails if a dataset of another image shape (even one with the same pixel count) is not
 * refused with CVAE_ERR_SHAPE, or an empty or NULL dataset with CVAE_ERR_INVALID_ARG. */
static void test_evaluate_shape_mismatch(void **state)
{
    cvae_model *m = tiny_model(8);
    cvae_dataset *transposed = make_dataset(3, C, W, H, 1); /* 1x5x6: 30 pixels too */
    cvae_dataset *colour = make_dataset(3, 2, H, W, 2);
    cvae_dataset *empty = NULL;
    double r = -1.0;
    (void)state;
    assert_int_equal(cvae_model_evaluate(m, transposed, 1, &r, NULL, NULL), CVAE_ERR_SHAPE);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_int_equal(cvae_model_evaluate(m, colour, 1, &r, NULL, NULL), CVAE_ERR_SHAPE);
    assert_true(r == -1.0);
    empty = tu_new_dataset();
    assert_int_equal(cvae_model_evaluate(m, empty, 1, &r, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_evaluate(m, NULL, 1, &r, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_evaluate(NULL, colour, 1, &r, NULL, NULL), CVAE_ERR_INVALID_ARG);
}

/* Fails if training on a fixed batch does not lower the (fixed-eps) loss: a sign error in any
 * gradient or in the update would raise it. Random pixels are incompressible, so the loss
 * cannot fall far below the pixels' own entropy; 5% in 150 steps is a clear descent. */
static void test_training_lowers_loss(void **state)
{
    cvae_model *m = tiny_model(21);
    cvae_optimizer *o = make_opt(m, CVAE_OPTIMIZER_ADAM);
    cvae_dataset *ds = make_dataset(MAXB, C, H, W, 23);
    float x[MAXB * IMG];
    double before, after;
    int i;
    (void)state;
    assert_int_equal(cvae_dataset_batch(ds, 0, MAXB, x, NULL), CVAE_OK);
    assert_int_equal(cvae_optimizer_set(o, CVAE_OPT_LR, 1e-2), CVAE_OK);
    CHECK(cvae_model_evaluate(m, ds, 1, NULL, NULL, &before), m);
    for (i = 0; i < 150; i++)
        CHECK(cvae_model_train_step(m, o, x, MAXB, NULL, NULL), m);
    CHECK(cvae_model_evaluate(m, ds, 1, NULL, NULL, &after), m);
    if (!(after < 0.95 * before))
        fail_msg("loss %.6g before 150 steps, %.6g after", before, after);
}

/* ======================================================================= non-finite */

/* Everything a refused step must leave alone. */
typedef struct model_snap {
    float params[TINY_PARAMS], om[TINY_PARAMS], ov[TINY_PARAMS];
    uint64_t steps, opt_steps;
    cvi_rng rng;
} model_snap;

static void snap(cvae_model *m, cvae_optimizer *o, model_snap *s)
{
    cvi_optimizer_state st;
    memset(s, 0, sizeof *s);
    cvi_optimizer_get_state(o, &st);
    memcpy(s->params, cvae_model_params(m, NULL), sizeof s->params);
    memcpy(s->om, st.m, sizeof s->om);
    if (st.v)
        memcpy(s->ov, st.v, sizeof s->ov);
    s->steps = cvae_model_steps(m);
    s->opt_steps = cvae_optimizer_steps(o);
    s->rng = m->rng;
}

/* Fails if a batch with a NaN or infinite pixel is not refused with CVAE_ERR_NUMERIC, if the
 * refused step changes the parameters, the optimizer's moments or step count or the model's
 * step count, or if it consumes eps draws (the next good step must equal that of a model that
 * never saw the bad batch). */
static void test_nonfinite_batch(void **state)
{
    cvae_model *a = tiny_model(40), *b = tiny_model(40);
    cvae_optimizer *oa = make_opt(a, CVAE_OPTIMIZER_ADAM), *ob = make_opt(b, CVAE_OPTIMIZER_ADAM);
    static model_snap s0, s1;
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    float x[MAXB * IMG], y[MAXB * IMG];
    double ra, ka, rb, kb;
    int k;
    (void)state;
    tu_fill_uniform(x, MAXB * IMG, 1);
    tu_fill_uniform(y, MAXB * IMG, 2);
    CHECK(cvae_model_train_step(a, oa, x, MAXB, NULL, NULL), a);
    CHECK(cvae_model_train_step(b, ob, x, MAXB, NULL, NULL), b);
    for (k = 0; k < 3; k++) {
        float z[MAXB * IMG];
        ra = ka = -1.0;
        memcpy(z, y, sizeof z);
        z[2 * IMG + 7] = bad[k];
        snap(a, oa, &s0);
        assert_int_equal(cvae_model_train_step(a, oa, z, MAXB, &ra, &ka), CVAE_ERR_NUMERIC);
        assert_true(cvae_model_last_error(a)[0] != '\0');
        snap(a, oa, &s1);
        assert_memory_equal(&s0, &s1, sizeof s0);
        assert_true(ra == -1.0 && ka == -1.0);
    }
    CHECK(cvae_model_train_step(a, oa, y, MAXB, &ra, &ka), a);
    CHECK(cvae_model_train_step(b, ob, y, MAXB, &rb, &kb), b);
    assert_memory_equal(&ra, &rb, sizeof ra);
    assert_memory_equal(&ka, &kb, sizeof ka);
    assert_memory_equal(cvae_model_params(a, NULL), cvae_model_params(b, NULL),
                        TINY_PARAMS * sizeof(float));
    assert_int_equal(cvae_model_steps(a), 2);
    assert_int_equal(cvae_optimizer_steps(oa), 2);
}

/* =========================================================================== errors */

/* Fails if a NULL model, or a model without an architecture, is not refused with the exact
 * status by every call (CVAE_ERR_INVALID_ARG, CVAE_ERR_STATE), or if the accessors of an
 * empty model return anything but NULL or 0. */
static void test_null_and_empty(void **state)
{
    cvae_model *m = NULL;
    cvae_optimizer *o = NULL;
    cvae_dataset *ds = make_dataset(2, C, H, W, 3);
    float buf[MAXB * IMG] = {0};
    double v, lo, hi;
    size_t n = 99;
    int c = -1;
    (void)state;
    assert_int_equal(cvae_model_create(NULL), CVAE_ERR_INVALID_ARG);
    cvae_model_destroy(NULL);
    assert_non_null(cvae_model_last_error(NULL));
    assert_int_equal(cvae_model_shape(NULL, &c, NULL, NULL, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_null(cvae_model_encoder(NULL));
    assert_null(cvae_model_decoder(NULL));
    assert_null(cvae_model_params(NULL, &n));
    assert_int_equal(n, 0);
    assert_null(cvae_model_grads(NULL, NULL));
    assert_int_equal(cvae_model_param_count(NULL), 0);
    assert_int_equal(cvae_model_steps(NULL), 0);
    assert_int_equal(cvae_model_set(NULL, CVAE_MODEL_BETA, 1.0), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_get(NULL, CVAE_MODEL_BETA, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_bounds(NULL, CVAE_MODEL_BETA, &lo, &hi), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_init_preset(NULL, 1, 28, 28, 16, 8, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_train_step(NULL, o, buf, 1, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_encode(NULL, buf, 1, buf, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_decode(NULL, buf, 1, buf), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_sample(NULL, 1, 1, buf), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_reconstruct(NULL, buf, 1, buf), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_save(NULL, NULL, "/tmp/x"), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_load(NULL, "/tmp/x", 1), CVAE_ERR_INVALID_ARG);

    m = tu_new_model();
    assert_non_null(m);
    assert_string_equal(cvae_model_last_error(m), "");
    assert_int_equal(cvae_model_shape(m, &c, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    assert_int_equal(c, -1);
    assert_null(cvae_model_encoder(m));
    assert_null(cvae_model_decoder(m));
    assert_null(cvae_model_params(m, &n));
    assert_int_equal(n, 0);
    assert_null(cvae_model_grads(m, &n));
    assert_int_equal(cvae_model_param_count(m), 0);
    assert_int_equal(cvae_model_steps(m), 0);
    /* beta is an option of the handle: readable before any architecture. */
    assert_int_equal(cvae_model_get(m, CVAE_MODEL_BETA, &v), CVAE_OK);
    assert_true(v == 1.0);
    o = tu_new_opt(CVAE_OPTIMIZER_ADAM, 10);
    assert_int_equal(cvae_model_train_step(m, o, buf, 1, NULL, NULL), CVAE_ERR_STATE);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_int_equal(cvae_optimizer_steps(o), 0);
    assert_int_equal(cvae_model_encode(m, buf, 1, buf, NULL), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_decode(m, buf, 1, buf), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_sample(m, 1, 1, buf), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_reconstruct(m, buf, 1, buf), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_evaluate(m, ds, 1, &v, NULL, NULL), CVAE_ERR_STATE);
    assert_int_equal(cvae_model_save(m, NULL, "/tmp/never-written.cvae"), CVAE_ERR_STATE);
}

/* Fails if beta outside [0, inf) or non-finite is accepted or changes beta, if 0 is refused,
 * if an unknown key is accepted, or if the bounds disagree with what set accepts. */
static void test_beta_option(void **state)
{
    static const double bad[] = {-1.0, -1e-300, NAN, INFINITY, -INFINITY};
    cvae_model *m = tiny_model(1);
    double v = 0.0, lo = -1.0, hi = -1.0;
    size_t i;
    (void)state;
    CHECK(cvae_model_set(m, CVAE_MODEL_BETA, 0.375), m);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(cvae_model_set(m, CVAE_MODEL_BETA, bad[i]), CVAE_ERR_INVALID_ARG);
        assert_true(cvae_model_last_error(m)[0] != '\0');
        CHECK(cvae_model_get(m, CVAE_MODEL_BETA, &v), m);
        assert_true(v == 0.375);
    }
    assert_int_equal(cvae_model_set(m, (cvae_model_option)399, 1.0), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_get(m, (cvae_model_option)399, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_get(m, CVAE_MODEL_BETA, NULL), CVAE_ERR_INVALID_ARG);
    CHECK(cvae_model_set(m, CVAE_MODEL_BETA, 0.0), m);
    CHECK(cvae_model_get(m, CVAE_MODEL_BETA, &v), m);
    assert_true(v == 0.0);
    /* Inclusive bounds; the unbounded top is reported as DBL_MAX, which set accepts. */
    CHECK(cvae_model_bounds(m, CVAE_MODEL_BETA, &lo, &hi), m);
    assert_true(lo == 0.0);
    assert_true(hi == DBL_MAX);
    CHECK(cvae_model_set(m, CVAE_MODEL_BETA, hi), m);
    assert_int_equal(cvae_model_bounds(m, (cvae_model_option)399, &lo, &hi), CVAE_ERR_INVALID_ARG);
}

/* Fails if a second architecture is accepted (CVAE_ERR_STATE) or disturbs the first, if
 * misfitting stacks or bad sizes are not refused (CVAE_ERR_SHAPE, CVAE_ERR_INVALID_ARG)
 * leaving the model empty and usable, or if a stack another model owns is taken. Leaks of
 * the stacks handed over on failure, and double frees, show under the sanitizer build. */
static void test_init_errors(void **state)
{
    cvae_model *m = NULL, *other;
    cvae_stack *enc, *dec;
    float before[TINY_PARAMS], out[IMG] = {0}, mu[LAT];
    (void)state;
    /* A NULL model still takes (and frees) the stacks. */
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    assert_int_equal(cvae_model_init_stacks(NULL, enc, dec, C, H, W, LAT, MAXB, 1),
                     CVAE_ERR_INVALID_ARG);
    m = tu_new_model();
    /* Encoder output of 5 values, not 2 x 3. */
    tiny_stacks(&enc, &dec, 5, 3);
    assert_int_equal(cvae_model_init_stacks(m, enc, dec, C, H, W, LAT, MAXB, 1), CVAE_ERR_SHAPE);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_int_equal(cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    /* Decoder output 1x6x4, not 1x6x5. */
    tiny_stacks(&enc, &dec, 2 * LAT, 2);
    assert_int_equal(cvae_model_init_stacks(m, enc, dec, C, H, W, LAT, MAXB, 1), CVAE_ERR_SHAPE);
    assert_int_equal(cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    /* The right stacks for another image shape. */
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    assert_int_equal(cvae_model_init_stacks(m, enc, dec, C, W, H, LAT, MAXB, 1), CVAE_ERR_SHAPE);
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    assert_int_equal(cvae_model_init_stacks(m, enc, dec, C, H, W, LAT, 0, 1), CVAE_ERR_INVALID_ARG);
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    assert_int_equal(cvae_model_init_stacks(m, enc, NULL, C, H, W, LAT, MAXB, 1),
                     CVAE_ERR_INVALID_ARG);
    cvae_stack_destroy(dec);
    assert_int_equal(cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    /* Still usable after all that. */
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    CHECK(cvae_model_init_stacks(m, enc, dec, C, H, W, LAT, MAXB, 1), m);
    memcpy(before, cvae_model_params(m, NULL), sizeof before);
    /* A second architecture, either way. */
    assert_int_equal(cvae_model_init_preset(m, 1, 28, 28, 16, 8, 1), CVAE_ERR_STATE);
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    assert_int_equal(cvae_model_init_stacks(m, enc, dec, C, H, W, LAT, MAXB, 9), CVAE_ERR_STATE);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_int_equal(cvae_model_param_count(m), TINY_PARAMS);
    assert_memory_equal(before, cvae_model_params(m, NULL), sizeof before);
    /* Another model may not take m's (built) encoder: refused, m's stack left alone, the
     * fresh decoder freed. */
    other = tu_new_model();
    tiny_stacks(&enc, &dec, 2 * LAT, 3);
    cvae_stack_destroy(enc);
    assert_int_equal(
        cvae_model_init_stacks(other, cvae_model_encoder(m), dec, C, H, W, LAT, MAXB, 1),
        CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_shape(other, NULL, NULL, NULL, NULL, NULL), CVAE_ERR_STATE);
    CHECK(cvae_model_encode(m, out, 1, mu, NULL), m);
    assert_memory_equal(before, cvae_model_params(m, NULL), sizeof before);
}

/* Fails if train_step accepts a batch outside [1, max batch], NULL buffers or an optimizer of
 * another size (CVAE_ERR_SHAPE), or if such a refusal changes the parameters or draws eps;
 * or if the inference calls accept n < 1 or NULL buffers. */
static void test_call_errors(void **state)
{
    cvae_model *m = tiny_model(3), *ref = tiny_model(3);
    cvae_optimizer *o = make_opt(m, CVAE_OPTIMIZER_SGD), *oref = make_opt(ref, CVAE_OPTIMIZER_SGD);
    cvae_optimizer *small = NULL, *big = NULL;
    static model_snap s0, s1;
    float x[(MAXB + 1) * IMG], out[(MAXB + 1) * IMG];
    (void)state;
    tu_fill_uniform(x, (MAXB + 1) * IMG, 8);
    small = tu_new_opt(CVAE_OPTIMIZER_ADAM, TINY_PARAMS - 1);
    big = tu_new_opt(CVAE_OPTIMIZER_SGD, TINY_PARAMS + 1);
    snap(m, o, &s0);
    assert_int_equal(cvae_model_train_step(m, o, x, MAXB + 1, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_int_equal(cvae_model_train_step(m, o, x, 0, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_train_step(m, o, x, -1, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_train_step(m, o, NULL, 1, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_train_step(m, NULL, x, 1, NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_train_step(m, small, x, 1, NULL, NULL), CVAE_ERR_SHAPE);
    assert_true(cvae_model_last_error(m)[0] != '\0');
    assert_int_equal(cvae_model_train_step(m, big, x, 1, NULL, NULL), CVAE_ERR_SHAPE);
    assert_int_equal(cvae_optimizer_steps(small), 0);
    assert_int_equal(cvae_optimizer_steps(big), 0);
    snap(m, o, &s1);
    assert_memory_equal(&s0, &s1, sizeof s0);
    /* No eps was drawn: the next step equals a fresh model's first. */
    CHECK(cvae_model_train_step(m, o, x, MAXB, NULL, NULL), m);
    CHECK(cvae_model_train_step(ref, oref, x, MAXB, NULL, NULL), ref);
    assert_memory_equal(cvae_model_params(m, NULL), cvae_model_params(ref, NULL),
                        TINY_PARAMS * sizeof(float));

    assert_int_equal(cvae_model_encode(m, x, 0, out, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_encode(m, NULL, 1, out, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_encode(m, x, 1, NULL, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_decode(m, x, 0, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_decode(m, NULL, 1, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_decode(m, x, 1, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_sample(m, 0, 1, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_sample(m, -3, 1, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_sample(m, 1, 1, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_reconstruct(m, x, 0, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_reconstruct(m, NULL, 1, out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_model_reconstruct(m, x, 1, NULL), CVAE_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_whole_model_gradient, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_loss_value_independent, tu_release_all_teardown),
        cmocka_unit_test(test_log1p01_accuracy),
        cmocka_unit_test_teardown(test_bce_by_hand, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_bce_chunks_exact, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_exp_nonpos, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_sigmoid_exact, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_kl_by_hand, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_preset, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_training_is_deterministic, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_sample_seeded, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_chunked_calls, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_evaluate, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_evaluate_shape_mismatch, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_training_lowers_loss, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_nonfinite_batch, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_null_and_empty, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_beta_option, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_init_errors, tu_release_all_teardown),
        cmocka_unit_test_teardown(test_call_errors, tu_release_all_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
