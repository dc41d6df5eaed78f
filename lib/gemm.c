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
 * specification both are tested against. No threads, no intrinsics yet.
 */
#include "cvae_internal.h"

#define MR 4
#define NR 16
#define KC 256
#define MC 128  /* multiple of MR */
#define NC 1024 /* multiple of NR */

size_t cvi_gemm_workspace_floats(void)
{
    return (size_t)MC * KC + (size_t)KC * NC;
}

/* Element (i, k) of op(X) where X is stored with row stride ld. */
#define OP(X, trans, ld, i, k) ((trans) ? (X)[(size_t)(k) * (ld) + (i)] : (X)[(size_t)(i) * (ld) + (k)])

/* Packs op(A)[i0 .. i0+mc) x [k0 .. k0+kc) as MR-row panels, k-major inside a
 * panel: pa[panel][k][r]. Rows past mc are zero. */
static void pack_a(float *restrict pa, const float *A, size_t lda, int trans, size_t i0, size_t mc,
                   size_t k0, size_t kc)
{
    size_t ip, k, r;
    for (ip = 0; ip < mc; ip += MR) {
        size_t rows = mc - ip < MR ? mc - ip : MR;
        for (k = 0; k < kc; k++) {
            for (r = 0; r < rows; r++)
                pa[k * MR + r] = OP(A, trans, lda, i0 + ip + r, k0 + k);
            for (; r < MR; r++)
                pa[k * MR + r] = 0.0f;
        }
        pa += kc * MR;
    }
}

/* Packs op(B)[k0 .. k0+kc) x [j0 .. j0+nc) as NR-column panels, k-major:
 * pb[panel][k][c]. Columns past nc are zero. op(B)(k, j) is B[k][j] or
 * B[j][k] when transposed. */
static void pack_b(float *restrict pb, const float *B, size_t ldb, int trans, size_t k0, size_t kc,
                   size_t j0, size_t nc)
{
    size_t jp, k, c;
    for (jp = 0; jp < nc; jp += NR) {
        size_t cols = nc - jp < NR ? nc - jp : NR;
        for (k = 0; k < kc; k++) {
            for (c = 0; c < cols; c++)
                pb[k * NR + c] = OP(B, trans, ldb, k0 + k, j0 + jp + c);
            for (; c < NR; c++)
                pb[k * NR + c] = 0.0f;
        }
        pb += kc * NR;
    }
}

/* acc (MR, NR) = sum over k of pa[k][:] outer pb[k][:]. */
static void tile(size_t kc, const float *restrict pa, const float *restrict pb,
                 float acc[MR][NR])
{
    float c[MR][NR];
    size_t k, i, j;
    for (i = 0; i < MR; i++)
        for (j = 0; j < NR; j++)
            c[i][j] = 0.0f;
    for (k = 0; k < kc; k++) {
        for (i = 0; i < MR; i++) {
            float a = pa[k * MR + i];
            for (j = 0; j < NR; j++)
                c[i][j] += a * pb[k * NR + j];
        }
    }
    for (i = 0; i < MR; i++)
        for (j = 0; j < NR; j++)
            acc[i][j] = c[i][j];
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
