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
 * anything is touched. State is allocated at creation; a step never
 * allocates.
 */
#include "cvae_internal.h"

#include <float.h>
#include <math.h>
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
 * and, where the compiler can target it, once more for AVX-512 (the CPU
 * picks at run time, as for the multiply). Both compile the same C with no
 * contraction of a multiply and an add into an FMA, and IEEE square roots
 * and divisions round the same at any vector width, so both give the same
 * bits; AVX-512 only does 16 floats per instruction instead of 4 (the
 * checking pass is bound by its square roots and divisions). */
#define NORM_CHUNKS 64
#define NORM_LANES 8
#define OK(name) name##_base
#define OK_ATTR
#include "optim_kernels.h"
#ifdef CVI_HAVE_AVX512
#define OK(name) name##_avx512
#define OK_ATTR CVI_AVX512_ATTR
#include "optim_kernels.h"
#endif

static int use_avx512(const cvae_optimizer *o)
{
    cvi_gemm_path p = o->path == CVI_GEMM_PATH_AUTO ? cvi_gemm_path_best() : o->path;
    return p == CVI_GEMM_PATH_AVX512;
}

static int pass_range(cvae_optimizer *o, float *p, const float *g, float scale, size_t lo,
                      size_t hi, int store, avg_update u, int wide)
{
#ifdef CVI_HAVE_AVX512
    if (wide)
        return o->kind == CVAE_OPTIMIZER_ADAM ? adam_pass_avx512(o, p, g, scale, lo, hi, store, u)
                                              : sgd_pass_avx512(o, p, g, scale, lo, hi, store, u);
#else
    (void)wide;
#endif
    return o->kind == CVAE_OPTIMIZER_ADAM ? adam_pass_base(o, p, g, scale, lo, hi, store, u)
                                          : sgd_pass_base(o, p, g, scale, lo, hi, store, u);
}

static int update_pass(cvae_optimizer *o, float *p, const float *g, float scale, int threads,
                       int store)
{
    size_t n = o->n;
    avg_update u = average_for_step(o);
    int wide = use_avx512(o);
#ifdef _OPENMP
    if (threads >= 2 && n >= 65536) {
        int bad = 0;
#pragma omp parallel num_threads(threads) reduction(| : bad)
        {
            size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
            size_t lo = n * t / nt, hi = n * (t + 1) / nt;
            bad |= pass_range(o, p, g, scale, lo, hi, store, u, wide);
        }
        return bad;
    }
#else
    (void)threads; /* without OpenMP, one thread does it all whatever it was asked */
#endif
    return pass_range(o, p, g, scale, 0, n, store, u, wide);
}

/* Sum of squares of g, in double, in a fixed order whatever the threads:
 * NORM_CHUNKS contiguous chunks, each summed in NORM_LANES interleaved lanes
 * (optim_kernels.h), the chunks then added in order. */
static double sum_squares(const cvae_optimizer *o, const float *g, size_t n, int threads)
{
    double part[NORM_CHUNKS], sum = 0.0;
    size_t per = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
    int wide = use_avx512(o);
    ptrdiff_t c;
    (void)threads, (void)wide;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && n > 65536)
#endif
    for (c = 0; c < NORM_CHUNKS; c++) {
        size_t lo = (size_t)c * per < n ? (size_t)c * per : n;
        size_t hi = lo + per < n ? lo + per : n;
#ifdef CVI_HAVE_AVX512
        if (wide) {
            part[c] = squares_avx512(g, lo, hi);
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
    if (update_pass(opt, params, grads, scale, threads, 0)) {
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
    update_pass(opt, params, grads, scale, threads, 1);
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

char *cvi_optimizer_err(cvae_optimizer *opt)
{
    return opt->err;
}
