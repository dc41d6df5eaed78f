/*
 * optim.c - Adam (with optional decoupled weight decay, i.e. AdamW) and SGD
 * with momentum, over one flat parameter block.
 *
 * n parameters. p,g (n) m,v (n) Adam's moments; m is SGD's momentum buffer.
 * The update follows PyTorch's formulas term for term (see cvae.h), in
 * float with bias corrections in double, so that runs can be compared. With
 * clipping on, the gradient's global L2 norm is computed first, in double.
 * A pass that only checks comes before the pass that stores, so that a
 * non-finite gradient, or an update that would overflow, is refused before
 * anything is touched. For Adam that check is mostly a bound: from the
 * largest gradient and parameter (one pass over the two) and the largest
 * moments and average the last step stored, a step can show that nothing
 * it computes can overflow, and then skips the checking pass (light_check).
 * State is allocated at creation; a step never allocates.
 */
#include "cvae_internal.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* The passes' variants must round alike: no multiply-add contracted into an
 * FMA (clang may contract by default; gcc does not in ISO C mode). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

struct cvae_optimizer {
    cvae_allocator mem;
    cvae_optimizer_kind kind;
    size_t n;
    double lr, beta1, beta2, eps, weight_decay, momentum, clip_norm;
    uint64_t t;
    float *m, *v; /* v is NULL for SGD */
    /* The running average of the parameters (CVAE_OPT_AVERAGE): its decay,
     * the number of updates averaged, whether it is swapped into the
     * caller's parameters (then avg holds the training weights), and the
     * average itself, allocated when the decay is first set above 0. */
    double average;
    uint64_t avg_count;
    int swapped;
    float *avg;
    /* Adam: the extent (largest |m|, v, |avg|; see pass_extent) of what the
     * last stored step wrote, while nothing else has written the state
     * since (extent_known; cleared where the state is loaded, swapped or
     * made). */
    int extent_known;
    uint32_t ext_m, ext_v, ext_a;
    int light_checks;     /* 0: always the full checking pass (for tests) */
    uint64_t light_steps; /* steps whose checking pass the bound made unneeded */
    cvi_gemm_path path; /* of the element-wise passes: AUTO, or one for tests */
    char err[CVI_ERRMSG_SIZE];
};

CVAE_API cvae_status cvae_optimizer_create_with(cvae_optimizer **out, cvae_optimizer_kind kind,
                                                size_t nparams,
                                                const cvae_allocator *allocator)
{
    cvae_allocator mem;
    cvae_optimizer *o;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if ((kind != CVAE_OPTIMIZER_ADAM && kind != CVAE_OPTIMIZER_SGD) || nparams == 0 ||
        cvi_allocator_init(&mem, allocator) != CVAE_OK)
        return CVAE_ERR_INVALID_ARG;
    if (nparams > CVI_MAX_ELEMS)
        return CVAE_ERR_TOO_LARGE;
    o = cvi_calloc(&mem, 1, sizeof *o);
    if (!o)
        return CVAE_ERR_NOMEM;
    o->mem = mem;
    o->kind = kind;
    o->n = nparams;
    o->lr = kind == CVAE_OPTIMIZER_ADAM ? 1e-3 : 1e-2;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->momentum = 0.9;
    o->light_checks = 1;
    o->m = cvi_alloc_floats(&mem, nparams);
    o->v = kind == CVAE_OPTIMIZER_ADAM ? cvi_alloc_floats(&mem, nparams) : NULL;
    if (!o->m || (kind == CVAE_OPTIMIZER_ADAM && !o->v)) {
        cvae_optimizer_destroy(o);
        return CVAE_ERR_NOMEM;
    }
    memset(o->m, 0, nparams * sizeof(float));
    if (o->v)
        memset(o->v, 0, nparams * sizeof(float));
    *out = o;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_optimizer_create(cvae_optimizer **out, cvae_optimizer_kind kind,
                                           size_t nparams)
{
    return cvae_optimizer_create_with(out, kind, nparams, NULL);
}

CVAE_API void cvae_optimizer_destroy(cvae_optimizer *opt)
{
    cvae_allocator mem;
    if (!opt)
        return;
    mem = opt->mem; /* not read from the block being freed */
    cvi_free_floats(&mem, opt->m);
    cvi_free_floats(&mem, opt->v);
    cvi_free_floats(&mem, opt->avg);
    cvi_free(&mem, opt);
}

CVAE_API const char *cvae_optimizer_last_error(const cvae_optimizer *opt)
{
    return opt ? opt->err : "optimizer handle is NULL";
}

CVAE_API cvae_optimizer_kind cvae_optimizer_get_kind(const cvae_optimizer *opt)
{
    return opt ? opt->kind : (cvae_optimizer_kind)0;
}

CVAE_API uint64_t cvae_optimizer_steps(const cvae_optimizer *opt)
{
    return opt ? opt->t : 0;
}

/* The option's storage, its range and whether the bounds are open; NULL if
 * the kind has no such key. */
static double *option_slot(cvae_optimizer *o, cvae_optimizer_option key, double *lo, double *hi,
                           int *open_lo, int *open_hi)
{
    int adam = o->kind == CVAE_OPTIMIZER_ADAM;
    *lo = 0.0;
    *hi = HUGE_VAL;
    *open_lo = *open_hi = 0;
    switch (key) {
    case CVAE_OPT_LR:
        *open_lo = 1;
        return &o->lr;
    case CVAE_OPT_EPS:
        *open_lo = 1;
        return adam ? &o->eps : NULL;
    case CVAE_OPT_BETA1:
    case CVAE_OPT_BETA2:
        *hi = 1.0;
        *open_hi = 1;
        return !adam ? NULL : key == CVAE_OPT_BETA1 ? &o->beta1 : &o->beta2;
    case CVAE_OPT_MOMENTUM:
        *hi = 1.0;
        *open_hi = 1;
        return adam ? NULL : &o->momentum;
    case CVAE_OPT_WEIGHT_DECAY:
        return &o->weight_decay;
    case CVAE_OPT_CLIP_NORM:
        return &o->clip_norm;
    case CVAE_OPT_AVERAGE:
        *hi = 1.0;
        *open_hi = 1;
        return &o->average;
    }
    return NULL;
}

static const char *kind_name(const cvae_optimizer *o)
{
    return o->kind == CVAE_OPTIMIZER_ADAM ? "adam" : "sgd";
}

CVAE_API cvae_status cvae_optimizer_set(cvae_optimizer *opt, cvae_optimizer_option key,
                                        double value)
{
    double lo, hi, *slot;
    int open_lo, open_hi;
    if (!opt)
        return CVAE_ERR_INVALID_ARG;
    slot = option_slot(opt, key, &lo, &hi, &open_lo, &open_hi);
    if (!slot) {
        cvi_set_error(opt->err, "%s: no option with key %d", kind_name(opt), (int)key);
        return CVAE_ERR_INVALID_ARG;
    }
    if (!isfinite(value) || value < lo || value > hi || (open_lo && value == lo) ||
        (open_hi && value == hi)) {
        cvi_set_error(opt->err, "%s: option %d = %g is not in %c%g, %g%c", kind_name(opt),
                      (int)key, value, open_lo ? '(' : '[', lo, hi, open_hi ? ')' : ']');
        return CVAE_ERR_INVALID_ARG;
    }
    /* The average's storage comes with its first use, so that a step never
     * allocates; it stays until the optimizer is destroyed. */
    if (key == CVAE_OPT_AVERAGE && value > 0.0 && cvi_optimizer_alloc_average(opt) != CVAE_OK) {
        cvi_set_error(opt->err, "%s: no memory for the average of %zu parameters", kind_name(opt),
                      opt->n);
        return CVAE_ERR_NOMEM;
    }
    *slot = value;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_optimizer_get(const cvae_optimizer *opt, cvae_optimizer_option key,
                                        double *value)
{
    double lo, hi, *slot;
    int open_lo, open_hi;
    if (!opt || !value)
        return CVAE_ERR_INVALID_ARG;
    slot = option_slot((cvae_optimizer *)opt, key, &lo, &hi, &open_lo, &open_hi);
    if (!slot)
        return CVAE_ERR_INVALID_ARG;
    *value = *slot;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_optimizer_bounds(const cvae_optimizer *opt, cvae_optimizer_option key,
                                           double *min, double *max)
{
    double lo, hi;
    int open_lo, open_hi;
    if (!opt || !min || !max ||
        !option_slot((cvae_optimizer *)opt, key, &lo, &hi, &open_lo, &open_hi))
        return CVAE_ERR_INVALID_ARG;
    /* Open ends are reported as the nearest representable value inside;
     * an unbounded end as the largest finite double. */
    *min = open_lo ? nextafter(lo, HUGE_VAL) : lo;
    *max = hi == HUGE_VAL ? DBL_MAX : open_hi ? nextafter(hi, -HUGE_VAL) : hi;
    return CVAE_OK;
}

/* The running average's update after a step: a = d a + c p, with a = p for
 * the first (d = 0, c = 1 on an average that is still all zeros). */
typedef struct avg_update {
    float *a; /* NULL: no average */
    float d, c;
} avg_update;

/* The largest magnitudes a pass saw, as the bits of |x|: for floats that
 * are not negative the order of the bits is the order of the values, and
 * the bits of inf and NaN are above every finite value's. An integer
 * maximum, unlike a float one, vectorises without -ffast-math. */
typedef struct pass_extent {
    uint32_t g, p; /* the gradient (times the clipping scale) and parameters read */
    uint32_t m, v, a; /* the moments and average an Adam pass stores */
} pass_extent;
#define EXTENT_INF 0x7f800000u
#define EXTENT_MAX(acc, x)                                                                         \
    {                                                                                              \
        uint32_t b_;                                                                               \
        memcpy(&b_, &(x), sizeof b_);                                                              \
        b_ &= 0x7fffffffu;                                                                         \
        acc = b_ > acc ? b_ : acc;                                                                 \
    }

static double extent_value(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return (double)f;
}

static avg_update average_for_step(const cvae_optimizer *o)
{
    avg_update u;
    /* The decay rises to its setting over the first updates, (1 + k) /
     * (10 + k) after k of them, so that the random start weighs little
     * whatever the decay. */
    double warm = (1.0 + (double)o->avg_count) / (10.0 + (double)o->avg_count);
    double d = o->avg_count == 0 ? 0.0 : o->average < warm ? o->average : warm;
    u.a = o->average > 0.0 ? o->avg : NULL;
    u.d = (float)d;
    u.c = (float)(1.0 - d);
    return u;
}

/* The element-wise passes, compiled once for the baseline instruction set
 * and, where the compiler can target them, again for AVX2 and for AVX-512
 * (the CPU picks at run time, as for the multiply). All compile the same C
 * with no contraction of a multiply and an add into an FMA, and IEEE square
 * roots and divisions round the same at any vector width, so all give the
 * same bits; AVX2 does 8 floats per instruction and AVX-512 16 instead of 4
 * (the checking pass is bound by its square roots and divisions). */
#define NORM_CHUNKS 64
#define NORM_LANES 8
#define OK(name) name##_base
#define OK_ATTR
#include "optim_kernels.h"
#ifdef CVI_HAVE_AVX512
#define OK(name) name##_avx512
#define OK_ATTR CVI_AVX512_ATTR
#include "optim_kernels.h"
#define OK(name) name##_avx2
#define OK_ATTR CVI_AVX2_ATTR
#include "optim_kernels.h"
#endif

/* Which variant of the passes runs: the instruction set of the multiply's
 * path. */
enum { ISA_BASE, ISA_AVX2, ISA_AVX512 };
static int passes_isa(const cvae_optimizer *o)
{
    cvi_gemm_path p = o->path == CVI_GEMM_PATH_AUTO ? cvi_gemm_path_best() : o->path;
    return p == CVI_GEMM_PATH_AVX512 ? ISA_AVX512 : p == CVI_GEMM_PATH_AVX2 ? ISA_AVX2 : ISA_BASE;
}

/* What a pass does: check (compute and test, store nothing), store, or
 * only measure the extent of the gradient and the parameters. */
enum { PASS_CHECK, PASS_STORE, PASS_EXTENT };

/* The pass of the variant whose names end in sfx (optim_kernels.h). */
#define RUN_PASS(sfx)                                                                              \
    do {                                                                                           \
        if (mode == PASS_EXTENT) {                                                                 \
            extent_##sfx(p, g, scale, lo, hi, &e->g, &e->p);                                       \
            return 0;                                                                              \
        }                                                                                          \
        return adam ? adam_pass_##sfx(o, p, g, scale, lo, hi, store, u, e)                         \
                    : sgd_pass_##sfx(o, p, g, scale, lo, hi, store, u);                            \
    } while (0)

static int pass_range(cvae_optimizer *o, float *p, const float *g, float scale, size_t lo,
                      size_t hi, int mode, avg_update u, int isa, pass_extent *e)
{
    int adam = o->kind == CVAE_OPTIMIZER_ADAM, store = mode == PASS_STORE;
#ifdef CVI_HAVE_AVX512
    if (isa == ISA_AVX512)
        RUN_PASS(avx512);
    if (isa == ISA_AVX2)
        RUN_PASS(avx2);
#else
    (void)isa;
#endif
    RUN_PASS(base);
}
#undef RUN_PASS

/* One pass over all parameters, spread over the threads; e gets the
 * largest extents any thread saw (a maximum: the same for any split). */
static int update_pass(cvae_optimizer *o, float *p, const float *g, float scale, int threads,
                       int mode, pass_extent *e)
{
    size_t n = o->n;
    avg_update u = average_for_step(o);
    int isa = passes_isa(o);
    memset(e, 0, sizeof *e);
#ifdef _OPENMP
    if (threads >= 2 && n >= 65536) {
        int bad = 0;
        uint32_t eg = 0, ep = 0, em = 0, ev = 0, ea = 0;
#pragma omp parallel num_threads(threads) reduction(| : bad) reduction(max : eg, ep, em, ev, ea)
        {
            size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
            size_t lo = n * t / nt, hi = n * (t + 1) / nt;
            pass_extent mine = {0, 0, 0, 0, 0};
            bad |= pass_range(o, p, g, scale, lo, hi, mode, u, isa, &mine);
            eg = mine.g, ep = mine.p, em = mine.m, ev = mine.v, ea = mine.a;
        }
        e->g = eg, e->p = ep, e->m = em, e->v = ev, e->a = ea;
        return bad;
    }
#else
    (void)threads; /* without OpenMP, one thread does it all whatever it was asked */
#endif
    return pass_range(o, p, g, scale, 0, n, mode, u, isa, e);
}

/* Whether Adam's step on p and g (scale: the clipping's) can be shown not to
 * overflow without its checking pass: from the largest |g scale| and |p|
 * (one pass over the two) and the extent of the moments and average the
 * last step stored, bounds in double on every value the step computes,
 * each float operation's rounding (a factor 1 + 2^-24 each) covered by a
 * factor 4 of headroom. A step this cannot vouch for runs the checking
 * pass, which decides exactly; so the result is the same either way. */
static int light_check(cvae_optimizer *o, float *p, const float *g, float scale, int threads)
{
    double b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    double c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    double bc1 = 1.0 - pow(o->beta1, (double)o->t);
    double step = (float)(o->lr / bc1), decay = fabs((double)(float)(1.0 - o->lr * o->weight_decay));
    double G, P, m, v, upd, pn, limit = FLT_MAX / 4.0;
    avg_update u = average_for_step(o);
    pass_extent e;
    if (o->kind != CVAE_OPTIMIZER_ADAM || !o->extent_known || !o->light_checks || !(eps > 0.0) ||
        (u.a && o->ext_a >= EXTENT_INF))
        return 0;
    update_pass(o, p, g, scale, threads, PASS_EXTENT, &e);
    if (e.g >= EXTENT_INF || e.p >= EXTENT_INF) /* a NaN or inf: the full check names it */
        return 0;
    G = extent_value(e.g);
    P = extent_value(e.p);
    m = b1 * extent_value(o->ext_m) + c1 * G;   /* |m_i| */
    v = b2 * extent_value(o->ext_v) + c2 * G * G; /* v_i */
    upd = step * m / eps;                          /* |step m_i / (sqrt(v_i) / sqrt(bc2) + eps)| */
    pn = decay * P + upd;                          /* |p_i| after the step */
    if (!(m <= limit && v <= limit && step * m <= limit && upd <= limit && pn <= limit))
        return 0;
    return !u.a || fabs((double)u.d) * extent_value(o->ext_a) + fabs((double)u.c) * pn <= limit;
}

/* Sum of squares of g, in double, in a fixed order whatever the threads:
 * NORM_CHUNKS contiguous chunks, each summed in NORM_LANES interleaved lanes
 * (optim_kernels.h), the chunks then added in order. */
static double sum_squares(const cvae_optimizer *o, const float *g, size_t n, int threads)
{
    double part[NORM_CHUNKS], sum = 0.0;
    size_t per = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
    int isa = passes_isa(o);
    ptrdiff_t c;
    (void)threads, (void)isa;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && n > 65536)
#endif
    for (c = 0; c < NORM_CHUNKS; c++) {
        size_t lo = (size_t)c * per < n ? (size_t)c * per : n;
        size_t hi = lo + per < n ? lo + per : n;
#ifdef CVI_HAVE_AVX512
        if (isa == ISA_AVX512) {
            part[c] = squares_avx512(g, lo, hi);
            continue;
        }
        if (isa == ISA_AVX2) {
            part[c] = squares_avx2(g, lo, hi);
            continue;
        }
#endif
        part[c] = squares_base(g, lo, hi);
    }
    for (c = 0; c < NORM_CHUNKS; c++)
        sum += part[c];
    return sum;
}

cvae_status cvi_optimizer_step(cvae_optimizer *opt, float *params, const float *grads,
                               size_t nparams, int threads)
{
    double norm;
    float scale = 1.0f;
    pass_extent ext;
    if (!opt)
        return CVAE_ERR_INVALID_ARG;
    if (!params || !grads) {
        cvi_set_error(opt->err, "optimizer_step: %s is NULL", !params ? "params" : "grads");
        return CVAE_ERR_INVALID_ARG;
    }
    if (nparams != opt->n) {
        cvi_set_error(opt->err, "optimizer_step: %zu parameters, the optimizer was made for %zu",
                      nparams, opt->n);
        return CVAE_ERR_SHAPE;
    }
    if (opt->swapped) {
        cvi_set_error(opt->err, "optimizer_step: the running average is swapped into the "
                                "parameters; swap it back first (cvae_optimizer_swap_average)");
        return CVAE_ERR_STATE;
    }
    /* The norm serves clipping; without it, it is only needed to name a
     * non-finite gradient, which the checking pass refuses anyway (its
     * moments are then not finite): it is computed only on that path. */
    if (opt->clip_norm > 0.0) {
        norm = sqrt(sum_squares(opt, grads, nparams, threads));
        if (!isfinite(norm)) {
            cvi_set_error(opt->err, "optimizer_step: the gradient is not finite (norm %g)", norm);
            return CVAE_ERR_NUMERIC;
        }
        if (norm > opt->clip_norm)
            scale = (float)(opt->clip_norm / norm);
    }
    opt->t++;
    if (light_check(opt, params, grads, scale, threads))
        opt->light_steps++;
    else if (update_pass(opt, params, grads, scale, threads, PASS_CHECK, &ext)) {
        opt->t--;
        if (opt->clip_norm <= 0.0 && !isfinite(norm = sqrt(sum_squares(opt, grads, nparams,
                                                                        threads)))) {
            cvi_set_error(opt->err, "optimizer_step: the gradient is not finite (norm %g)", norm);
            return CVAE_ERR_NUMERIC;
        }
        cvi_set_error(opt->err,
                      "optimizer_step: the update would make a parameter or the optimizer's "
                      "state non-finite (learning rate %g, weight decay %g)",
                      opt->lr, opt->weight_decay);
        return CVAE_ERR_NUMERIC;
    }
    update_pass(opt, params, grads, scale, threads, PASS_STORE, &ext);
    if (opt->kind == CVAE_OPTIMIZER_ADAM) {
        opt->ext_m = ext.m;
        opt->ext_v = ext.v;
        /* an average not written now keeps its extent only if it was known */
        if (opt->average > 0.0)
            opt->ext_a = ext.a;
        else if (!opt->extent_known)
            opt->ext_a = EXTENT_INF;
        opt->extent_known = 1;
    }
    if (opt->average > 0.0)
        opt->avg_count++;
    return CVAE_OK;
}

cvae_status cvi_optimizer_alloc_average(cvae_optimizer *opt)
{
    if (opt->avg)
        return CVAE_OK;
    if (!(opt->avg = cvi_alloc_floats(&opt->mem, opt->n)))
        return CVAE_ERR_NOMEM;
    memset(opt->avg, 0, opt->n * sizeof(float));
    opt->extent_known = 0;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_optimizer_swap_average(cvae_optimizer *opt, float *params,
                                                 size_t nparams)
{
    size_t i;
    if (!opt)
        return CVAE_ERR_INVALID_ARG;
    if (!params) {
        cvi_set_error(opt->err, "optimizer_swap_average: params is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    if (nparams != opt->n) {
        cvi_set_error(opt->err,
                      "optimizer_swap_average: %zu parameters, the optimizer was made for %zu",
                      nparams, opt->n);
        return CVAE_ERR_SHAPE;
    }
    if (opt->avg_count == 0) {
        cvi_set_error(opt->err, "optimizer_swap_average: nothing averaged yet (the average "
                                "starts with the first step after CVAE_OPT_AVERAGE is set)");
        return CVAE_ERR_STATE;
    }
    for (i = 0; i < nparams; i++) {
        float t = params[i];
        params[i] = opt->avg[i];
        opt->avg[i] = t;
    }
    opt->swapped = !opt->swapped;
    opt->extent_known = 0;
    return CVAE_OK;
}

CVAE_API int cvae_optimizer_average_swapped(const cvae_optimizer *opt)
{
    return opt ? opt->swapped : 0;
}

CVAE_API cvae_status cvae_optimizer_step(cvae_optimizer *opt, float *params, const float *grads,
                                         size_t nparams)
{
    return cvi_optimizer_step(opt, params, grads, nparams, 1);
}

/* For the model file: the optimizer's whole state, read and restored. */
void cvi_optimizer_get_state(cvae_optimizer *opt, cvi_optimizer_state *st)
{
    st->mem = &opt->mem;
    st->kind = opt->kind;
    st->n = opt->n;
    st->t = &opt->t;
    st->m = opt->m;
    st->v = opt->v;
    st->options[0] = &opt->lr;
    st->options[1] = &opt->beta1;
    st->options[2] = &opt->beta2;
    st->options[3] = &opt->eps;
    st->options[4] = &opt->weight_decay;
    st->options[5] = &opt->momentum;
    st->options[6] = &opt->clip_norm;
    st->average = &opt->average;
    st->avg_count = &opt->avg_count;
    st->swapped = &opt->swapped;
    st->avg = opt->avg;
}

void cvi_optimizer_set_path(cvae_optimizer *opt, cvi_gemm_path path)
{
    opt->path = path;
}

void cvi_optimizer_state_written(cvae_optimizer *opt)
{
    opt->extent_known = 0;
}

void cvi_optimizer_set_light_checks(cvae_optimizer *opt, int on)
{
    opt->light_checks = on;
}

uint64_t cvi_optimizer_light_steps(const cvae_optimizer *opt)
{
    return opt->light_steps;
}

char *cvi_optimizer_err(cvae_optimizer *opt)
{
    return opt->err;
}
