/*
 * gemm.c - single-precision matrix multiply, row-major, with the transposes
 * the layers need (NN, NT, TN; TT for completeness), column groups for
 * batched convolutions, a bias epilogue, threads, and the choice of compiled
 * variant at run time.
 *
 * The blocked algorithm itself is in gemm_kernel.h, compiled here once per
 * instruction set with the register tile that suits it:
 *   avx512    8 x 32 (16 zmm accumulators, A broadcast from memory; 8 rows
 *                     divide the model's 32, 64, 128 ... rows exactly), and
 *                     8 x 16 for products of at most 16 columns
 *   avx2      6 x 16 (12 ymm accumulators, of 16 registers: a core with
 *                     two FMA pipes of 4 cycles needs 8 in flight; needs
 *                     FMA too)
 *   portable  4 x 8  (8 accumulators of 4-float SSE2 or NEON vectors)
 * chosen by measurement with gcc 12: larger tiles made gcc keep part of
 * the accumulators or the broadcasts on the stack.
 * The first two only on x86-64 with GCC or clang; the CPU decides at run
 * time. All three are plain C that the compiler vectorises; no intrinsics.
 *
 * Threads (OpenMP, when built with it) split C into contiguous blocks of
 * whole tiles, by columns when C is wider than tall, else by rows. Every
 * element of C is computed by the same sequence of operations whatever the
 * number of threads, so results do not depend on it; they do depend on the
 * variant (FMA rounds once, a separate multiply and add twice).
 *
 * cvi_gemm_naive is the specification every variant is tested against.
 */
#include "cvae_internal.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define CVI_KC 256
#define CVI_MC 144  /* multiple of every MR */
#define CVI_NC 512  /* multiple of every NR */
/* Per-thread packing buffers, in floats (a multiple of 16: 64-byte aligned). */
#define PER_THREAD ((size_t)CVI_MC * CVI_KC + (size_t)CVI_KC * CVI_NC)
/* Below this many multiply-adds a product runs on one thread: waking the
 * others costs more than it saves. */
#define MIN_MACS_PER_THREAD ((size_t)1 << 16)

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(CVAE_NO_DISPATCH)
#define HAVE_X86_VARIANTS 1
#endif

#define GK(name) name##_portable
#define GK_MR 4
#define GK_VL 4
#define GK_NV 2
#define GK_NR 8
#define GK_ATTR
#include "gemm_kernel.h"

#ifdef HAVE_X86_VARIANTS
#if defined(__clang__)
#define WIDE_VECTORS __attribute__((min_vector_width(512)))
#else
#define WIDE_VECTORS
#endif

#define GK(name) name##_avx2
#define GK_MR 6
#define GK_VL 8
#define GK_NV 2
#define GK_NR 16
#define GK_VEC
#define GK_UNROLL4
/* A transposed A read in place gives the 6-row tile 24 bytes per k, 2 KB and
 * more apart and often across two cache lines; packed, the panel is read
 * in order. The TN products ran 5-20 % faster packed on a Zen 3 core
 * (docs/PERFORMANCE.md, 0.9.8), but those of 16 columns, where each panel
 * serves one tile, 40 % slower: they still read A in place. The AVX-512
 * tiles read 32 or 64 aligned bytes per k and keep reading in place, as
 * measured on their machines. */
#define GK_PACK_A
#define GK_EDGE_TILES
#define GK_ATTR __attribute__((target("avx2,fma")))
#include "gemm_kernel.h"

#define GK(name) name##_avx512
#define GK_MR 8
#define GK_VL 16
#define GK_NV 2
#define GK_NR 32
#define GK_VEC
#define GK_ATTR __attribute__((target("avx512f,fma"))) WIDE_VECTORS
#include "gemm_kernel.h"

/* The same instruction set with a tile of half the width, for products of
 * at most 16 columns (the first and last layers' weight gradients), which
 * the wide tile would pad to 32. */
#define GK(name) name##_avx512n
#define GK_MR 8
#define GK_VL 16
#define GK_NV 1
#define GK_NR 16
#define GK_VEC
#define GK_ATTR __attribute__((target("avx512f,fma"))) WIDE_VECTORS
#include "gemm_kernel.h"
#endif

const char *cvi_gemm_path_name(cvi_gemm_path path)
{
    switch (path) {
    case CVI_GEMM_PATH_PORTABLE:
        return "portable";
    case CVI_GEMM_PATH_AVX2:
        return "avx2+fma";
    case CVI_GEMM_PATH_AVX512:
        return "avx512";
    case CVI_GEMM_PATH_AUTO:
        break;
    }
    return cvi_gemm_path_name(cvi_gemm_path_best());
}

int cvi_gemm_path_available(cvi_gemm_path path)
{
    switch (path) {
    case CVI_GEMM_PATH_AUTO:
    case CVI_GEMM_PATH_PORTABLE:
        return 1;
#ifdef HAVE_X86_VARIANTS
    case CVI_GEMM_PATH_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CVI_GEMM_PATH_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#else
    case CVI_GEMM_PATH_AVX2:
    case CVI_GEMM_PATH_AVX512:
        return 0;
#endif
    }
    return 0;
}

cvi_gemm_path cvi_gemm_path_best(void)
{
    if (cvi_gemm_path_available(CVI_GEMM_PATH_AVX512))
        return CVI_GEMM_PATH_AVX512;
    if (cvi_gemm_path_available(CVI_GEMM_PATH_AVX2))
        return CVI_GEMM_PATH_AVX2;
    return CVI_GEMM_PATH_PORTABLE;
}

size_t cvi_gemm_workspace_floats(int threads)
{
    return PER_THREAD * (size_t)(threads < 1 ? 1 : threads);
}

size_t cvi_gemm_one_pass_depth(void) { return CVI_KC; }

int cvi_threads_resolve(int setting)
{
#ifdef _OPENMP
    int n = setting > 0 ? setting : omp_get_max_threads();
    return n < 1 ? 1 : n > CVI_MAX_THREADS ? CVI_MAX_THREADS : n;
#else
    (void)setting;
    return 1;
#endif
}

static void run_slice(cvi_gemm_path path, const cvi_gemm_call *g, size_t i_lo, size_t i_hi,
                      size_t j_lo, size_t j_hi, float *ws)
{
    float *pa = ws, *pb = ws + (size_t)CVI_MC * CVI_KC;
    switch (path) {
#ifdef HAVE_X86_VARIANTS
    case CVI_GEMM_PATH_AVX512:
        if (j_hi - j_lo <= 16)
            gemm_run_avx512n(g, i_lo, i_hi, j_lo, j_hi, pa, pb);
        else
            gemm_run_avx512(g, i_lo, i_hi, j_lo, j_hi, pa, pb);
        return;
    case CVI_GEMM_PATH_AVX2:
        gemm_run_avx2(g, i_lo, i_hi, j_lo, j_hi, pa, pb);
        return;
#endif
    default:
        gemm_run_portable(g, i_lo, i_hi, j_lo, j_hi, pa, pb);
        return;
    }
}

/* C = beta C (+ bias, then relu) in rows [i_lo, i_hi) and columns [j_lo,
 * j_hi): the whole product when K or alpha is 0. */
static void scale_c(const cvi_gemm_call *g, size_t i_lo, size_t i_hi, size_t j_lo, size_t j_hi)
{
    const cvi_gemm_out *c = &g->c;
    size_t i, j;
    for (i = i_lo; i < i_hi; i++)
        for (j = j_lo; j < j_hi; j++) {
            float *e = c->data + (c->group_cols ? (j / c->group_cols) * c->group_stride +
                                                      j % c->group_cols
                                                : j) +
                       i * c->ld;
            float v = g->beta == 0.0f ? 0.0f : g->beta * *e;
            if (c->row_bias)
                v += c->row_bias[i];
            if (c->col_bias)
                v += c->col_bias[j];
            *e = c->relu && !(v > 0.0f) ? 0.0f : v;
        }
}

/* Threads cut C at whole tiles: rows at multiples of the variant's MR (a
 * packed A's panels then start where a part does; 24 is a multiple of
 * every MR, 4, 6 and 8), columns at multiples of 32 (every NR, 8, 16 and
 * 32). Rows cut at 24 left the 32-row products 24 and 8 on two threads. */
#define ROW_UNIT 24
#define COL_UNIT 32

static size_t row_unit(cvi_gemm_path path)
{
    switch (path) {
    case CVI_GEMM_PATH_AVX2:
        return 6;
    case CVI_GEMM_PATH_AVX512:
        return 8;
    case CVI_GEMM_PATH_PORTABLE:
        return 4;
    case CVI_GEMM_PATH_AUTO:
        break;
    }
    return ROW_UNIT;
}

/* Rows or columns [lo, hi) of part t of n parts of `len`, cut at multiples
 * of `unit`. */
static void cut(size_t len, size_t unit, int t, int n, size_t *lo, size_t *hi)
{
    size_t units = (len + unit - 1) / unit;
    size_t a = units * (size_t)t / (size_t)n, b = units * (size_t)(t + 1) / (size_t)n;
    *lo = a * unit < len ? a * unit : len;
    *hi = b * unit < len ? b * unit : len;
}

void cvi_gemm_part(const cvi_gemm_env *env, const cvi_gemm_call *g, int part, int parts)
{
    cvi_gemm_path path = env->path == CVI_GEMM_PATH_AUTO ? cvi_gemm_path_best() : env->path;
    int by_cols = g->N >= g->M;
    size_t lo, hi, i_lo = 0, i_hi = g->M, j_lo = 0, j_hi = g->N;
    cut(by_cols ? g->N : g->M, by_cols ? COL_UNIT : row_unit(path), part, parts, &lo, &hi);
    if (by_cols) {
        j_lo = lo;
        j_hi = hi;
    } else {
        i_lo = lo;
        i_hi = hi;
    }
    if (i_lo >= i_hi || j_lo >= j_hi)
        return;
    if (g->K == 0 || g->alpha == 0.0f)
        scale_c(g, i_lo, i_hi, j_lo, j_hi);
    else
        run_slice(path, g, i_lo, i_hi, j_lo, j_hi, env->ws);
}

void cvi_gemm_ex(const cvi_gemm_env *env, const cvi_gemm_call *g)
{
    cvi_gemm_path path = env->path == CVI_GEMM_PATH_AUTO ? cvi_gemm_path_best() : env->path;
    int by_cols = g->N >= g->M, nt = env->threads < 1 ? 1 : env->threads;
    size_t macs = g->M * g->N, span = by_cols ? g->N : g->M;
    size_t unit = by_cols ? COL_UNIT : row_unit(path), units = (span + unit - 1) / unit;
    if (g->M == 0 || g->N == 0)
        return;
    if (g->K == 0 || g->alpha == 0.0f) {
        scale_c(g, 0, g->M, 0, g->N);
        return;
    }
    macs = macs > ((size_t)-1) / g->K ? (size_t)-1 : macs * g->K;
    if ((size_t)nt > units)
        nt = (int)units;
    if ((size_t)nt > macs / MIN_MACS_PER_THREAD)
        nt = (int)(macs / MIN_MACS_PER_THREAD);
    if (nt <= 1) {
        run_slice(path, g, 0, g->M, 0, g->N, env->ws);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        size_t lo, hi;
        cut(span, unit, t, n, &lo, &hi);
        if (lo < hi) {
            float *ws = env->ws + PER_THREAD * (size_t)t;
            if (by_cols)
                run_slice(path, g, 0, g->M, lo, hi, ws);
            else
                run_slice(path, g, lo, hi, 0, g->N, ws);
        }
    }
#else
    {
        int t;
        for (t = 0; t < nt; t++) {
            size_t lo, hi;
            cut(span, unit, t, nt, &lo, &hi);
            if (by_cols)
                run_slice(path, g, 0, g->M, lo, hi, env->ws);
            else
                run_slice(path, g, lo, hi, 0, g->N, env->ws);
        }
    }
#endif
}

size_t cvi_gemm_packed_a_floats(size_t M, size_t K)
{
    return (M + ROW_UNIT - 1) / ROW_UNIT * ROW_UNIT * K; /* M rounded up to a multiple of every MR */
}

void cvi_gemm_pack_a(const cvi_gemm_env *env, const cvi_gemm_call *g, float *dst)
{
    cvi_gemm_path path = env->path == CVI_GEMM_PATH_AUTO ? cvi_gemm_path_best() : env->path;
    switch (path) {
#ifdef HAVE_X86_VARIANTS
    case CVI_GEMM_PATH_AVX512:
        /* Both AVX-512 tiles are 8 rows tall: one packing serves either. */
        pack_a_all_avx512(dst, g);
        return;
    case CVI_GEMM_PATH_AVX2:
        pack_a_all_avx2(dst, g);
        return;
#endif
    default:
        pack_a_all_portable(dst, g);
        return;
    }
}

cvi_gemm_call cvi_gemm_plain(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                             const float *A, size_t lda, const float *B, size_t ldb, float beta,
                             float *C, size_t ldc)
{
    cvi_gemm_call g;
    memset(&g, 0, sizeof g);
    g.trans_a = trans_a;
    g.trans_b = trans_b;
    g.M = M;
    g.N = N;
    g.K = K;
    g.alpha = alpha;
    g.beta = beta;
    g.a.data = A;
    g.a.ld = lda;
    g.b.data = B;
    g.b.ld = ldb;
    g.c.data = C;
    g.c.ld = ldc;
    return g;
}

void cvi_gemm(const cvi_gemm_env *env, int trans_a, int trans_b, size_t M, size_t N, size_t K,
              float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta,
              float *C, size_t ldc)
{
    cvi_gemm_call g = cvi_gemm_plain(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    cvi_gemm_ex(env, &g);
}

/* Element (i, k) of op(X) where X is stored with row stride ld. */
#define OP(X, trans, ld, i, k) ((trans) ? (X)[(size_t)(k) * (ld) + (i)] : (X)[(size_t)(i) * (ld) + (k)])

void cvi_gemm_naive(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                    const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                    size_t ldc)
{
    size_t i, j, k;
    for (i = 0; i < M; i++) {
        for (j = 0; j < N; j++) {
            double sum = 0.0;
            for (k = 0; k < K; k++)
                sum += (double)OP(A, trans_a, lda, i, k) * (double)OP(B, trans_b, ldb, k, j);
            C[i * ldc + j] = (float)(alpha * sum) + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
        }
    }
}
