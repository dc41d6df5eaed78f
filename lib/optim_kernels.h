/*
 * optim_kernels.h - the optimizer's element-wise passes; optim.c includes
 * this file once per instruction set, each time with:
 *   OK(name)   the variant's name for name (e.g. name##_avx512)
 *   OK_ATTR    function attributes (the target instruction set) or empty
 * The parameters are undefined again at the end, ready for the next variant.
 */

/* One pass of an update over [lo, hi) (threads share the range; every
 * element's arithmetic is the same on any thread). Adam's also leaves in
 * ext the extent of what it stores (with store == 1). With store == 0 it only
 * computes the new parameters, state and average and returns 1 if any is
 * not finite: a finite gradient can still overflow the float state (Adam
 * squares it, SGD's momentum adds it up) and absurd options such as a
 * learning rate of 1e100 overflow the parameters. The step runs this pass
 * first, so that a refused step changes nothing.
 * With store == 1 it writes them and returns 0. */
OK_ATTR static int OK(adam_pass)(cvae_optimizer *o, float *p, const float *g, float scale,
                                 size_t lo, size_t hi, int store, avg_update u,
                                 pass_extent *ext)
{
    /* PyTorch: bias corrections in double, the rest in float. */
    double bc1 = 1.0 - pow(o->beta1, (double)o->t), bc2 = 1.0 - pow(o->beta2, (double)o->t);
    /* 1 - beta in double, then rounded, as PyTorch does (1.0f - 0.999f is
     * 5e-5 off in relative terms). */
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    float step = (float)(o->lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float decay = (float)(1.0 - o->lr * o->weight_decay);
    float *restrict m = o->m, *restrict v = o->v, *restrict pp = p, *restrict a = u.a;
    const float *restrict gg = g;
    size_t i;
    int bad = 0;
    uint32_t em = 0, ev = 0, ea = 0;
/* One element's new moments and parameter, in mi, vi, pi. */
#define ADAM_ELEMENT                                                                               \
    float gi = gg[i] * scale;                                                                      \
    float mi = b1 * m[i] + c1 * gi, vi = b2 * v[i] + c2 * gi * gi;                                 \
    float pi = pp[i] * decay - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    if (!store) {
        for (i = lo; i < hi; i++) {
            ADAM_ELEMENT
            float ai = a ? u.d * a[i] + u.c * pi : 0.0f;
            bad |= !(fabsf(mi) <= FLT_MAX) | !(vi <= FLT_MAX) | !(fabsf(pi) <= FLT_MAX) |
                   !(fabsf(ai) <= FLT_MAX);
        }
    } else if (a) { /* two loops without a test per element: both vectorise */
        for (i = lo; i < hi; i++) {
            ADAM_ELEMENT
            float ai = u.d * a[i] + u.c * pi;
            m[i] = mi;
            v[i] = vi;
            pp[i] = pi;
            a[i] = ai;
            EXTENT_MAX(em, mi);
            EXTENT_MAX(ev, vi);
            EXTENT_MAX(ea, ai);
        }
    } else {
        for (i = lo; i < hi; i++) {
            ADAM_ELEMENT
            m[i] = mi;
            v[i] = vi;
            pp[i] = pi;
            EXTENT_MAX(em, mi);
            EXTENT_MAX(ev, vi);
        }
    }
#undef ADAM_ELEMENT
    ext->m = em;
    ext->v = ev;
    ext->a = ea;
    return bad;
}

/* The largest |g[i] scale| and |p[i]| over [lo, hi), as extent bits (the
 * bits of a non-finite value are above every finite one's). */
OK_ATTR static void OK(extent)(const float *p, const float *g, float scale, size_t lo,
                               size_t hi, uint32_t *g_bits, uint32_t *p_bits)
{
    uint32_t eg = 0, ep = 0;
    size_t i;
    for (i = lo; i < hi; i++) {
        float gi = g[i] * scale;
        EXTENT_MAX(eg, gi);
        EXTENT_MAX(ep, p[i]);
    }
    *g_bits = eg;
    *p_bits = ep;
}

OK_ATTR static int OK(sgd_pass)(cvae_optimizer *o, float *p, const float *g, float scale,
                                size_t lo, size_t hi, int store, avg_update u)
{
    float lr = (float)o->lr, mom = (float)o->momentum, wd = (float)o->weight_decay;
    float *restrict b = o->m, *restrict pp = p, *restrict a = u.a;
    const float *restrict gg = g;
    size_t i;
    int bad = 0;
    for (i = lo; i < hi; i++) {
        float d = gg[i] * scale + wd * pp[i];
        float bi = o->t == 1 ? d : mom * b[i] + d;
        float pi = pp[i] - lr * bi;
        float ai = a ? u.d * a[i] + u.c * pi : 0.0f;
        if (store) {
            b[i] = bi;
            pp[i] = pi;
            if (a)
                a[i] = ai;
        } else {
            bad |= !(fabsf(bi) <= FLT_MAX) | !(fabsf(pi) <= FLT_MAX) | !(fabsf(ai) <= FLT_MAX);
        }
    }
    return bad;
}

/* The sum of g[i]^2 over [lo, hi) in double: NORM_LANES interleaved lanes
 * (which vectorise), then the lanes in order. */
OK_ATTR static double OK(squares)(const float *g, size_t lo, size_t hi)
{
    double lane[NORM_LANES] = {0}, sum = 0.0;
    size_t i, j;
    for (i = lo; i + NORM_LANES <= hi; i += NORM_LANES)
        for (j = 0; j < NORM_LANES; j++)
            lane[j] += (double)g[i + j] * g[i + j];
    for (; i < hi; i++)
        lane[0] += (double)g[i] * g[i];
    for (j = 0; j < NORM_LANES; j++)
        sum += lane[j];
    return sum;
}

#undef OK
#undef OK_ATTR
