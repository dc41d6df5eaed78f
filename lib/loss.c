/*
 * loss.c - the VAE's loss terms and its Gaussian draws.
 *
 * Reconstruction: the Bernoulli negative log-likelihood of targets t in
 * [0, 1] under logits x, per pixel max(x, 0) - x t + log(1 + exp(-|x|)),
 * which equals -t log s(x) - (1 - t) log(1 - s(x)) but never takes the log of
 * a rounded-to-zero sigmoid; its gradient is s(x) - t.
 * Or the Gaussian negative log-likelihood of the targets under means
 * sigmoid(x) and a standard deviation s (include/cvae.h, cvae_likelihood).
 * KL(N(mu, exp(lv)) || N(0, 1)) per dimension: 0.5 (mu^2 + exp(lv) - 1 - lv),
 * with gradients mu and 0.5 (exp(lv) - 1).
 * Sums are accumulated in double; gradients are written (=) times scale.
 */
#include "cvae_internal.h"

#include <math.h>
#include <string.h>

/* bce_chunk's variants must round alike: no multiply-add contracted into an
 * FMA (clang may contract by default; gcc does not in ISO C mode). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE __attribute__((always_inline))
#else
#define ALWAYS_INLINE
#endif

/* exp(x) for x <= 0 (and NaN), in float operations the compiler vectorises,
 * where libm's expf is a call per pixel (5 % of a 64-image decode and of an
 * MLP training step on a Zen 4 core). x = n ln 2 + r with n rounded to nearest
 * (adding 1.5 * 2^23 rounds) and |r| <= ln 2 / 2, ln 2 in two parts so that
 * n ln 2 is exact; e^r by its degree-6 Chebyshev interpolant on that range
 * (relative error 2.5e-9 before rounding); 2^n from n's bits in the float's
 * exponent. Within 1.2e-7 of e^x, relative (2 ulp), over every float in
 * [-87.3, 0]; below FLT_MIN (x < -87.34) it returns 0 where libm returns
 * denormals, and -inf gives 0, NaN stays NaN. The clamp keeps n + 127, the
 * exponent field of 2^n, in [0, 127]. */
static inline ALWAYS_INLINE float exp_nonpos(float x)
{
    const float log2e = 1.44269504f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const float round = 12582912.0f;
    float xc = x < -88.0f ? -88.0f : x, t = xc * log2e + round, n = t - round;
    float r = (xc - n * ln2_hi) - n * ln2_lo, p, two_n;
    uint32_t bits;
    p = 0.0013941161f;
    p = p * r + 0.0083751678f;
    p = p * r + 0.041666351f;
    p = p * r + 0.16666415f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* t's low bits hold n (as 0x4b400000 + n); unsigned, so NaN's wrap */
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4b400000u + 127u) << 23;
    memcpy(&two_n, &bits, sizeof two_n);
    return x < -87.33654f ? 0.0f : p * two_n;
}

float cvi_exp_nonpos(float x)
{
    return exp_nonpos(x);
}

/* sigmoid without overflow: exp only of a non-positive argument. */
static inline ALWAYS_INLINE float sigmoid(float x)
{
    float e = exp_nonpos(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static inline ALWAYS_INLINE float log1p01(float u)
{
    /* log(1 + u) = 2 atanh(s) with s = u / (2 + u) in [0, 1/3]: the odd
     * series to s^13 leaves a relative error below 2e-8, and no 1 + u is
     * rounded, so tiny u keep full precision. A few float operations
     * instead of a libm call per pixel. */
    float s = u / (2.0f + u), s2 = s * s;
    float p = 2.0f / 13.0f;
    p = p * s2 + 2.0f / 11.0f;
    p = p * s2 + 2.0f / 9.0f;
    p = p * s2 + 2.0f / 7.0f;
    p = p * s2 + 2.0f / 5.0f;
    p = p * s2 + 2.0f / 3.0f;
    p = p * s2 + 2.0f;
    return s * p;
}

float cvi_log1p01(float u)
{
    return log1p01(u);
}

/* The Bernoulli terms of c pixels: the float arithmetic of every pixel, e =
 * exp(-|x|) included, in loops the compiler vectorises (each element's
 * operations are those of a scalar loop, so the bits are), the terms into
 * term and the gradient into d (when not NULL). */
static inline ALWAYS_INLINE void bce_chunk(const float *x, const float *t, size_t c, float *d,
                                           float scale, float *restrict e,
                                           float *restrict term)
{
    size_t i;
    for (i = 0; i < c; i++)
        e[i] = exp_nonpos(-fabsf(x[i])); /* in [0, 1]: for the log term and the sigmoid */
    for (i = 0; i < c; i++)
        term[i] = (x[i] > 0.0f ? x[i] : 0.0f) - x[i] * t[i] + log1p01(e[i]);
    if (d)
        for (i = 0; i < c; i++)
            d[i] = scale * ((x[i] >= 0.0f ? 1.0f : e[i]) / (1.0f + e[i]) - t[i]);
}

/* bce_chunk compiled for the baseline and, where the compiler can target
 * them, for AVX2 and AVX-512 (the CPU picks, as for the multiply): the same
 * operations on 8 or 16 floats at a time instead of 4, so the same bits. */
static void bce_chunk_base(const float *x, const float *t, size_t c, float *d, float scale,
                           float *restrict e, float *restrict term)
{
    bce_chunk(x, t, c, d, scale, e, term);
}

#ifdef CVI_HAVE_AVX512
CVI_AVX512_ATTR static void bce_chunk_avx512(const float *x, const float *t, size_t c, float *d,
                                             float scale, float *restrict e,
                                             float *restrict term)
{
    bce_chunk(x, t, c, d, scale, e, term);
}

CVI_AVX2_ATTR static void bce_chunk_avx2(const float *x, const float *t, size_t c, float *d,
                                         float scale, float *restrict e, float *restrict term)
{
    bce_chunk(x, t, c, d, scale, e, term);
}
#endif

#define BCE_CHUNK 256 /* a multiple of BCE_LANES */
/* The terms are summed in double in BCE_LANES interleaved sums (pixel i into
 * sum i % BCE_LANES, in pixel order), added in lane order at the end: one
 * chain of dependent adds over every pixel waited on each add's latency,
 * 1.6 % of an MLP step. Only the reported loss depends on this order. */
#define BCE_LANES 8
double cvi_bce_logits(const float *logits, const float *target, size_t n, float *dlogits,
                      float scale)
{
    float e[BCE_CHUNK], term[BCE_CHUNK];
    double part[BCE_LANES] = {0}, sum = 0.0;
    size_t i0, i, j;
    cvi_gemm_path best = cvi_gemm_path_best();
    (void)best;
    for (i0 = 0; i0 < n; i0 += BCE_CHUNK) {
        size_t c = n - i0 < BCE_CHUNK ? n - i0 : BCE_CHUNK;
        float *dc = dlogits ? dlogits + i0 : NULL;
#ifdef CVI_HAVE_AVX512
        if (best == CVI_GEMM_PATH_AVX512)
            bce_chunk_avx512(logits + i0, target + i0, c, dc, scale, e, term);
        else if (best == CVI_GEMM_PATH_AVX2)
            bce_chunk_avx2(logits + i0, target + i0, c, dc, scale, e, term);
        else
#endif
            bce_chunk_base(logits + i0, target + i0, c, dc, scale, e, term);
        for (i = 0; i + BCE_LANES <= c; i += BCE_LANES)
            for (j = 0; j < BCE_LANES; j++)
                part[j] += (double)term[i + j];
        for (; i < c; i++) /* the last chunk's tail: i0 is a multiple of BCE_LANES */
            part[i % BCE_LANES] += (double)term[i];
    }
    for (j = 0; j < BCE_LANES; j++)
        sum += part[j];
    return sum;
}

double cvi_gauss_logits(const float *logits, const float *target, size_t n, float *dlogits,
                        float scale, double sigma)
{
    /* Per pixel (t - m)^2 / (2 s^2) + log s + log(2 pi) / 2 with m = sigmoid(x);
     * d/dx = (m - t) / s^2 * m (1 - m). The constant is added once. */
    const double half_log_2pi = 0.91893853320467274178;
    double inv_var = 1.0 / (sigma * sigma);
    float inv_var_f = (float)inv_var;
    double sum = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        float m = sigmoid(logits[i]), r = m - target[i];
        sum += (double)(r * r);
        if (dlogits)
            dlogits[i] = scale * inv_var_f * r * m * (1.0f - m);
    }
    return 0.5 * sum * inv_var + (double)n * (log(sigma) + half_log_2pi);
}

double cvi_sq_error_logits(const float *logits, const float *target, size_t n)
{
    double sum = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        float r = sigmoid(logits[i]) - target[i];
        sum += (double)(r * r);
    }
    return sum;
}

double cvi_kl_normal(const float *mu, const float *logvar, size_t n, float *dmu, float *dlogvar,
                     float scale)
{
    double sum = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        float var = expf(logvar[i]);
        sum += 0.5 * ((double)mu[i] * mu[i] + var - 1.0 - logvar[i]);
        if (dmu) {
            dmu[i] = scale * mu[i];
            dlogvar[i] = scale * 0.5f * (var - 1.0f);
        }
    }
    return sum;
}

static inline ALWAYS_INLINE void sigmoid_loop(float *out, const float *logits, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        out[i] = sigmoid(logits[i]);
}

/* Compiled as bce_chunk is: the same operations whatever the width. */
static void sigmoid_base(float *out, const float *logits, size_t n)
{
    sigmoid_loop(out, logits, n);
}

#ifdef CVI_HAVE_AVX512
CVI_AVX512_ATTR static void sigmoid_avx512(float *out, const float *logits, size_t n)
{
    sigmoid_loop(out, logits, n);
}

CVI_AVX2_ATTR static void sigmoid_avx2(float *out, const float *logits, size_t n)
{
    sigmoid_loop(out, logits, n);
}
#endif

void cvi_sigmoid(float *out, const float *logits, size_t n)
{
#ifdef CVI_HAVE_AVX512
    cvi_gemm_path best = cvi_gemm_path_best();
    if (best == CVI_GEMM_PATH_AVX512) {
        sigmoid_avx512(out, logits, n);
        return;
    }
    if (best == CVI_GEMM_PATH_AVX2) {
        sigmoid_avx2(out, logits, n);
        return;
    }
#endif
    sigmoid_base(out, logits, n);
}

void cvi_rng_normal(cvi_rng *rng, float *out, size_t n)
{
    /* Box-Muller on pairs of 53-bit uniforms; u1 in (0, 1] keeps log finite.
     * An odd n discards the second value of the last pair, so the stream
     * depends only on the generator state and n. */
    const double two_pi = 6.283185307179586476925286766559;
    size_t i;
    for (i = 0; i < n; i += 2) {
        double u1 = ((double)(cvi_rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
        double u2 = (double)(cvi_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1));
        out[i] = (float)(r * cos(two_pi * u2));
        if (i + 1 < n)
            out[i + 1] = (float)(r * sin(two_pi * u2));
    }
}
