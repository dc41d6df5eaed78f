/*
 * gemm.c - single-precision matrix multiply, row-major, with the transposes
 * the layers need (NN for conv forward, NT for weight gradients, TN for
 * data gradients; TT for completeness).
 *
 * The fast path follows the usual blocked scheme: op(B) is packed into
 * panels NR columns wide and op(A) into panels MR rows tall, a KC-deep slice
 * at a time, and a fixed MR x NR register tile with constant trip counts runs
 * over the packed panels so that compilers vectorise it. Packing absorbs the
 * transposes and zero-pads the tails, so the tile loop has no edge cases;
 * edge tiles are only clipped when written back. cvi_gemm_naive is the
 * specification both are tested against.
 *
 * The tile is plain C compiled several times by the compiler
 * (target_clones: AVX-512, AVX2 with FMA, baseline) and chosen at load time
 * by the CPU, so a portable build still uses the machine's vectors. Results
 * are deterministic on a machine, but a machine with FMA rounds differently
 * from one without. No threads, no intrinsics.
 */
#include "cvae_internal.h"

/* A 6 x 16 tile: 12 AVX2 accumulators (or 6 AVX-512 ones) plus the
 * operands fit the 16 vector registers. tile() spells out its MR rows. */
#define MR 6
#define NR 16
#define KC 256
#define MC 144  /* multiple of MR */
#define NC 1024 /* multiple of NR */

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && defined(__ELF__) &&       \
    !defined(CVAE_NO_DISPATCH)
#define TILE_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define TILE_CLONES
#endif

size_t cvi_gemm_workspace_floats(void)
{
    return (size_t)MC * KC + (size_t)KC * NC;
}

/* Element (i, k) of op(X) where X is stored with row stride ld. */
#define OP(X, trans, ld, i, k) ((trans) ? (X)[(size_t)(k) * (ld) + (i)] : (X)[(size_t)(i) * (ld) + (k)])

/* Packs rows x kc of a matrix whose element (r, k) is at X[r * rs + k * ks]
 * into a panel of width w, k-major: p[k][r], rows past `rows` zero. The two
 * loop orders keep the reads contiguous whichever stride is 1. */
static void pack_panel(float *restrict p, const float *X, size_t rs, size_t ks, size_t rows,
                       size_t kc, size_t w)
{
    size_t k, r;
    if (ks == 1) {
        for (r = 0; r < rows; r++)
            for (k = 0; k < kc; k++)
                p[k * w + r] = X[r * rs + k];
    } else {
        for (k = 0; k < kc; k++)
            for (r = 0; r < rows; r++)
                p[k * w + r] = X[k * ks + r];
    }
    for (k = 0; k < kc; k++)
        for (r = rows; r < w; r++)
            p[k * w + r] = 0.0f;
}

/* Packs op(A)[i0 .. i0+mc) x [k0 .. k0+kc) as MR-row panels pa[panel][k][r]. */
static void pack_a(float *restrict pa, const float *A, size_t lda, int trans, size_t i0, size_t mc,
                   size_t k0, size_t kc)
{
    size_t ip;
    for (ip = 0; ip < mc; ip += MR) {
        size_t rows = mc - ip < MR ? mc - ip : MR, i = i0 + ip;
        if (trans) /* op(A)(i, k) = A[k][i] */
            pack_panel(pa, A + k0 * lda + i, 1, lda, rows, kc, MR);
        else
            pack_panel(pa, A + i * lda + k0, lda, 1, rows, kc, MR);
        pa += kc * MR;
    }
}

/* Packs op(B)[k0 .. k0+kc) x [j0 .. j0+nc) as NR-column panels pb[panel][k][c]. */
static void pack_b(float *restrict pb, const float *B, size_t ldb, int trans, size_t k0, size_t kc,
                   size_t j0, size_t nc)
{
    size_t jp;
    for (jp = 0; jp < nc; jp += NR) {
        size_t cols = nc - jp < NR ? nc - jp : NR, j = j0 + jp;
        if (trans) /* op(B)(k, j) = B[j][k] */
            pack_panel(pb, B + j * ldb + k0, ldb, 1, cols, kc, NR);
        else
            pack_panel(pb, B + k0 * ldb + j, 1, ldb, cols, kc, NR);
        pb += kc * NR;
    }
}

/* acc (MR, NR) = sum over k of pa[k][:] outer pb[k][:]. One named
 * accumulator row per tile row, each a constant-length loop, so that the
 * compiler keeps all six rows in vector registers for the whole k loop. */
TILE_CLONES static void tile(size_t kc, const float *restrict pa, const float *restrict pb,
                             float acc[MR][NR])
{
    float c0[NR] = {0}, c1[NR] = {0}, c2[NR] = {0}, c3[NR] = {0}, c4[NR] = {0}, c5[NR] = {0};
    size_t k, j;
    for (k = 0; k < kc; k++) {
        const float *b = pb + k * NR, *a = pa + k * MR;
        for (j = 0; j < NR; j++) {
            c0[j] += a[0] * b[j];
            c1[j] += a[1] * b[j];
            c2[j] += a[2] * b[j];
            c3[j] += a[3] * b[j];
            c4[j] += a[4] * b[j];
            c5[j] += a[5] * b[j];
        }
    }
    for (j = 0; j < NR; j++) {
        acc[0][j] = c0[j];
        acc[1][j] = c1[j];
        acc[2][j] = c2[j];
        acc[3][j] = c3[j];
        acc[4][j] = c4[j];
        acc[5][j] = c5[j];
    }
}

/* C = beta * C, with beta == 0 writing zeros without reading C. */
static void scale_c(size_t M, size_t N, float beta, float *C, size_t ldc)
{
    size_t i, j;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

void cvi_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A,
              size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc, float *ws)
{
    float *pa = ws, *pb = ws + (size_t)MC * KC;
    size_t i0, j0, k0;
    if (M == 0 || N == 0)
        return;
    if (K == 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    for (j0 = 0; j0 < N; j0 += NC) {
        size_t nc = N - j0 < NC ? N - j0 : NC;
        for (k0 = 0; k0 < K; k0 += KC) {
            size_t kc = K - k0 < KC ? K - k0 : KC;
            /* The first k-slice applies beta; later slices accumulate. */
            float b = k0 == 0 ? beta : 1.0f;
            pack_b(pb, B, ldb, trans_b, k0, kc, j0, nc);
            for (i0 = 0; i0 < M; i0 += MC) {
                size_t mc = M - i0 < MC ? M - i0 : MC;
                size_t ip, jp;
                pack_a(pa, A, lda, trans_a, i0, mc, k0, kc);
                for (jp = 0; jp < nc; jp += NR) {
                    size_t cols = nc - jp < NR ? nc - jp : NR;
                    for (ip = 0; ip < mc; ip += MR) {
                        size_t rows = mc - ip < MR ? mc - ip : MR;
                        float acc[MR][NR];
                        size_t r, c;
                        tile(kc, pa + ip * kc, pb + jp * kc, acc);
                        for (r = 0; r < rows; r++) {
                            float *crow = C + (i0 + ip + r) * ldc + j0 + jp;
                            if (b == 0.0f)
                                for (c = 0; c < cols; c++)
                                    crow[c] = alpha * acc[r][c];
                            else
                                for (c = 0; c < cols; c++)
                                    crow[c] = alpha * acc[r][c] + b * crow[c];
                        }
                    }
                }
            }
        }
    }
}

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
