/*
 * test_gemm.c - checks the blocked multiply cvi_gemm and its specification
 * cvi_gemm_naive against a reference written here: op(A) and op(B) are first
 * gathered into plain double arrays, then every C entry is a double dot
 * product, so the reference shares no indexing or blocking with the library.
 *
 * Covered: the four transpose cases (NN, NT, TN, TT); sizes 1, 7, 17, 255 and
 * 257 in each of the M, N and K roles; sizes beyond any cache block; alpha != 1;
 * beta 0, 0.5 and 1; padded leading dimensions (padding of A and B holds NaN,
 * so reading it poisons the result, and padding of C must not be written);
 * beta == 0 over a C full of NaN. Buffers end exactly after the last row, so
 * AddressSanitizer sees any read or write past an operand.
 * Every case runs on each compiled variant this CPU can run (portable, AVX2,
 * AVX-512) and on 1, 2 and 3 threads, which must agree bit for bit. Grouped
 * operands and the fused biases have their own test.
 * Not covered: speed (cvae-bench measures it).
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

/* One multiply to check. Stored A is (M,K) or, transposed, (K,M); stored B is
 * (K,N) or (N,K); C is (M,N). pad_* extra floats follow each stored row. */
typedef struct gemm_case {
    int ta, tb;
    size_t M, N, K;
    float alpha, beta;
    size_t pad_a, pad_b, pad_c;
    int nan_c; /* C, padding included, starts as NaN (use with beta == 0) */
} gemm_case;

typedef struct operands {
    size_t lda, ldb, ldc;
    size_t na, nb, nc; /* (rows - 1) * ld + cols: nothing after the last row */
    float *A, *B, *C, *C0;
    double *ref, *bound; /* (M,N): exact-ish result and sum of |terms| */
} operands;

static size_t tight_len(size_t rows, size_t cols, size_t ld)
{
    return (rows - 1) * ld + cols;
}

/* n values in [-1, 1) from r. */
static void fill_sym(float *p, size_t n, tu_rng *r)
{
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = tu_rng_sym(r);
}

/* Row entries get random values, row padding gets pad_value. */
static void fill_rows(float *p, size_t rows, size_t cols, size_t ld, float pad_value,
                      tu_rng *r)
{
    size_t i, j;
    for (i = 0; i < rows; i++)
        for (j = 0; j < ld && i * ld + j < tight_len(rows, cols, ld); j++)
            p[i * ld + j] = j < cols ? tu_rng_sym(r) : pad_value;
}

static void make_operands(operands *o, const gemm_case *c, uint64_t seed)
{
    size_t arows = c->ta ? c->K : c->M, acols = c->ta ? c->M : c->K;
    size_t brows = c->tb ? c->N : c->K, bcols = c->tb ? c->K : c->N;
    size_t i;
    tu_rng r;

    tu_rng_init(&r, seed);
    o->lda = acols + c->pad_a;
    o->ldb = bcols + c->pad_b;
    o->ldc = c->N + c->pad_c;
    o->na = tight_len(arows, acols, o->lda);
    o->nb = tight_len(brows, bcols, o->ldb);
    o->nc = tight_len(c->M, c->N, o->ldc);
    o->A = malloc(o->na * sizeof *o->A);
    o->B = malloc(o->nb * sizeof *o->B);
    o->C = malloc(o->nc * sizeof *o->C);
    o->C0 = malloc(o->nc * sizeof *o->C0);
    o->ref = malloc(c->M * c->N * sizeof *o->ref);
    o->bound = malloc(c->M * c->N * sizeof *o->bound);
    assert_non_null(o->A);
    assert_non_null(o->B);
    assert_non_null(o->C);
    assert_non_null(o->C0);
    assert_non_null(o->ref);
    assert_non_null(o->bound);

    fill_rows(o->A, arows, acols, o->lda, NAN, &r);
    fill_rows(o->B, brows, bcols, o->ldb, NAN, &r);
    fill_rows(o->C0, c->M, c->N, o->ldc, NAN, &r);
    if (c->nan_c)
        for (i = 0; i < o->nc; i++)
            o->C0[i] = NAN;
}

static void free_operands(operands *o)
{
    free(o->A);
    free(o->B);
    free(o->C);
    free(o->C0);
    free(o->ref);
    free(o->bound);
}

/* ref = alpha * op(A) op(B) + beta * C0 in double; bound = the same sum over
 * absolute values, the scale of every rounding error the float code makes. */
static void reference(operands *o, const gemm_case *c)
{
    size_t M = c->M, N = c->N, K = c->K, i, j, k;
    double *a = malloc(M * K * sizeof *a);  /* op(A), (M,K) */
    double *bt = malloc(N * K * sizeof *bt); /* op(B)^T, (N,K) */

    assert_non_null(a);
    assert_non_null(bt);
    for (i = 0; i < M; i++)
        for (k = 0; k < K; k++)
            a[i * K + k] = c->ta ? o->A[k * o->lda + i] : o->A[i * o->lda + k];
    for (j = 0; j < N; j++)
        for (k = 0; k < K; k++)
            bt[j * K + k] = c->tb ? o->B[j * o->ldb + k] : o->B[k * o->ldb + j];

    for (i = 0; i < M; i++) {
        for (j = 0; j < N; j++) {
            const double *ai = a + i * K, *bj = bt + j * K;
            double s = 0.0, sa = 0.0;
            for (k = 0; k < K; k++) {
                double t = ai[k] * bj[k];
                s += t;
                sa += fabs(t);
            }
            o->ref[i * N + j] = (double)c->alpha * s;
            o->bound[i * N + j] = fabs((double)c->alpha) * sa;
            if (c->beta != 0.0f) {
                double cb = (double)c->beta * o->C0[i * o->ldc + j];
                o->ref[i * N + j] += cb;
                o->bound[i * N + j] += fabs(cb);
            }
        }
    }
    free(a);
    free(bt);
}

/* Counts entries of C off by more than rel * bound, and padding entries of C
 * that changed (compared bytewise, so NaN padding works). The first problem
 * is described in msg. */
static size_t count_bad(const operands *o, const gemm_case *c, double rel, const char *who,
                        char *msg, size_t msglen)
{
    size_t bad = 0, i, j;

    msg[0] = '\0';
    for (i = 0; i < c->M; i++) {
        for (j = 0; j < o->ldc && i * o->ldc + j < o->nc; j++) {
            size_t at = i * o->ldc + j;
            int wrong;
            double got = o->C[at], want = 0.0, tol = 0.0;
            if (j < c->N) {
                want = o->ref[i * c->N + j];
                tol = rel * o->bound[i * c->N + j] + 1e-30;
                wrong = !(fabs(got - want) <= tol); /* NaN counts as wrong */
            } else {
                wrong = memcmp(&o->C[at], &o->C0[at], sizeof(float)) != 0;
            }
            if (wrong && bad++ == 0)
                snprintf(msg, msglen,
                         "%s %c%c M=%zu N=%zu K=%zu alpha=%g beta=%g: C[%zu][%zu]%s got %.9g, "
                         "want %.9g (tol %.3g)",
                         who, c->ta ? 'T' : 'N', c->tb ? 'T' : 'N', c->M, c->N, c->K,
                         (double)c->alpha, (double)c->beta, i, j,
                         j < c->N ? "" : " (row padding, must stay untouched)", got,
                         j < c->N ? want : (double)o->C0[at], tol);
        }
    }
    return bad;
}

/*
 * Tolerances. Summing K products in float loses at most about K * 2^-24 of
 * the sum of their absolute values (the bound above); alpha, beta and a
 * per-block accumulation into C add a few more roundings. So the fast gemm
 * gets (K + 4) * FLT_EPSILON * bound, twice that worst case. The naive gemm
 * accumulates in double and rounds only a handful of times at the end:
 * 8 * FLT_EPSILON * bound.
 *
 * Why this still catches index bugs: with entries uniform in [-1,1], bound is
 * about |alpha| * K / 4, so the fast tolerance is about K^2 * 3e-8 * |alpha|,
 * i.e. 2e-3 at K = 257 and 1.5e-2 at K = 700. Reading one wrong element (a
 * swapped index, a transposed stride, an off-by-one in a block edge) changes
 * an entry by |alpha * a * (b - b')|, typically 0.1 to 1, and a whole wrong
 * row or column changes it by about sqrt(K) / 3. test_gemm_tolerance_rejects_
 * swapped_index checks this on purpose.
 */
static double fast_rel(const gemm_case *c)
{
    return (double)(c->K + 4) * FLT_EPSILON;
}

#define NAIVE_REL (8.0 * FLT_EPSILON)

/* Floats of C including row padding, as make_operands lays it out. */
static size_t o_size_hint(const gemm_case *c)
{
    return tight_len(c->M, c->N, c->N + c->pad_c);
}

/* Threads each case runs on; 3 leaves a remainder when C is cut in parts. */
static const int thread_counts[] = {1, 2, 3};
#define MAX_TEST_THREADS 3

/* Runs one case through the fast gemm on every variant this CPU runs and on
 * 1, 2 and 3 threads, and, when also_naive, through the naive one, each
 * starting from the same C0; fails with the first bad entry. Also fails if
 * one variant gives different bits on different thread counts. */
static void run_case(const gemm_case *c, float *ws, int also_naive, uint64_t seed)
{
    operands o;
    char msg[320], who[64];
    size_t bad = 0, t;
    int path;
    float *first = malloc(o_size_hint(c) * sizeof *first);

    assert_non_null(first);
    make_operands(&o, c, seed);
    reference(&o, c);
    for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512 && bad == 0; path++) {
        if (!cvi_gemm_path_available((cvi_gemm_path)path))
            continue;
        for (t = 0; t < sizeof thread_counts / sizeof thread_counts[0] && bad == 0; t++) {
            cvi_gemm_env env;
            env.path = (cvi_gemm_path)path;
            env.threads = thread_counts[t];
            env.ws = ws;
            memcpy(o.C, o.C0, o.nc * sizeof *o.C);
            cvi_gemm(&env, c->ta, c->tb, c->M, c->N, c->K, c->alpha, o.A, o.lda, o.B, o.ldb,
                     c->beta, o.C, o.ldc);
            snprintf(who, sizeof who, "cvi_gemm[%s, %d threads]",
                     cvi_gemm_path_name(env.path), env.threads);
            bad = count_bad(&o, c, fast_rel(c), who, msg, sizeof msg);
            if (t == 0)
                memcpy(first, o.C, o.nc * sizeof *o.C);
            else if (bad == 0 && memcmp(first, o.C, o.nc * sizeof *o.C) != 0) {
                bad = 1;
                snprintf(msg, sizeof msg, "%s: bits differ from 1 thread", who);
            }
        }
    }
    if (bad == 0 && also_naive) {
        memcpy(o.C, o.C0, o.nc * sizeof *o.C);
        cvi_gemm_naive(c->ta, c->tb, c->M, c->N, c->K, c->alpha, o.A, o.lda, o.B, o.ldb,
                       c->beta, o.C, o.ldc);
        bad = count_bad(&o, c, NAIVE_REL, "cvi_gemm_naive", msg, sizeof msg);
    }
    free_operands(&o);
    free(first);
    if (bad != 0)
        fail_msg("%zu bad entries; first: %s", bad, msg);
}

/* ------------------------------------------------------------- fixtures */

/* The fixture owns the gemm workspace, allocated as the library sizes it. */
static int setup_workspace(void **state)
{
    size_t n = cvi_gemm_workspace_floats(MAX_TEST_THREADS);
    float *ws = cvi_alloc_floats(NULL, n);

    if (ws == NULL && n > 0)
        return -1;
    *state = ws;
    return 0;
}

static int teardown_workspace(void **state)
{
    cvi_free_floats(NULL, *state);
    return 0;
}

/* ---------------------------------------------------------------- tests */

#define N_CASES(t) (sizeof(t) / sizeof((t)[0]))

/* Fails if either gemm mis-indexes A or B in any of NN/NT/TN/TT, ignores a
 * leading dimension, writes into row padding, or applies alpha or beta wrongly,
 * at sizes 1, 7, 17, 255, 257 (each in the M, N and K roles). */
static void test_gemm_transposes_and_odd_sizes(void **state)
{
    static const gemm_case cases[] = {
        /* ta tb    M    N    K   alpha   beta  pad a, b, c  nan */
        {0, 0, 7, 17, 257, 0.75f, 0.5f, 3, 1, 5, 0},
        {0, 0, 257, 1, 7, -1.5f, 1.0f, 1, 16, 2, 0},
        {0, 0, 1, 255, 17, 2.0f, 0.0f, 0, 7, 0, 0},
        {0, 0, 255, 255, 255, -1.25f, 0.5f, 1, 1, 1, 0},
        {0, 1, 17, 257, 1, 0.75f, 1.0f, 2, 3, 1, 0},
        {0, 1, 255, 7, 17, -0.5f, 0.5f, 16, 0, 9, 0},
        {0, 1, 1, 1, 255, 1.25f, 0.0f, 5, 5, 3, 0},
        {0, 1, 257, 255, 257, 0.5f, 1.0f, 4, 2, 0, 0},
        {1, 0, 257, 17, 7, 0.5f, 0.5f, 1, 2, 3, 0},
        {1, 0, 7, 255, 1, -2.0f, 1.0f, 4, 0, 16, 0},
        {1, 0, 17, 1, 257, 1.5f, 0.0f, 0, 3, 1, 0},
        {1, 0, 255, 257, 255, -0.75f, 0.5f, 3, 5, 2, 0},
        {1, 1, 255, 257, 17, -0.75f, 0.5f, 3, 1, 2, 0},
        {1, 1, 1, 7, 255, 2.5f, 1.0f, 2, 2, 4, 0},
        {1, 1, 7, 17, 257, 0.25f, 0.0f, 8, 1, 0, 0},
        {1, 1, 257, 257, 257, 0.5f, 1.0f, 2, 3, 4, 0},
        /* alpha 1, beta 1: whole tiles add into C themselves */
        {0, 1, 64, 96, 513, 1.0f, 1.0f, 1, 3, 2, 0},
        {1, 0, 17, 255, 257, 1.0f, 1.0f, 2, 0, 1, 0},
    };
    size_t i;

    for (i = 0; i < N_CASES(cases); i++)
        run_case(&cases[i], *state, 1, 100 + i);
}

/* Fails if a variant's edge tiles go wrong: the AVX2 variant's 4-row tile
 * (for the last 1 to 4 rows of a 6-row panel, writing C itself when all 4 are
 * there) and its one-vector tile (for the last 1 to 8 columns), and the
 * full tiles just past them (5 rows, 9 columns); M past a row block of 144
 * by 4; alpha 1 with beta 0 over NaN and beta 1 (in place) and alpha != 1
 * (through the buffer), over one and several passes of K. */
static void test_gemm_edge_tiles(void **state)
{
    static const gemm_case cases[] = {
        /* ta tb    M    N    K   alpha   beta  pad a, b, c  nan */
        {0, 0, 64, 56, 300, 1.0f, 1.0f, 1, 2, 3, 0},   /* 10 x 6 + 4 rows, 3 x 16 + 8 columns */
        {1, 0, 28, 25, 70, 0.75f, 0.5f, 2, 0, 1, 0},   /* 4 x 6 + 4; 16 + 9 */
        {0, 1, 65, 41, 33, 1.0f, 0.0f, 0, 1, 2, 1},    /* 10 x 6 + 5; 2 x 16 + 9 */
        {1, 1, 148, 40, 20, 1.0f, 1.0f, 3, 2, 0, 0},   /* 144 + 4; 2 x 16 + 8 */
        {0, 0, 22, 24, 260, 1.0f, 0.0f, 1, 1, 1, 1},   /* 3 x 6 + 4; 16 + 8 */
        {1, 0, 3, 7, 40, 1.0f, 1.0f, 0, 0, 0, 0},      /* 3 rows and 7 columns only */
        {0, 1, 16, 36, 32, 1.0f, 0.0f, 0, 0, 0, 1},    /* 2 x 6 + 4; 2 x 16 + 4 */
    };
    size_t i;

    for (i = 0; i < N_CASES(cases); i++)
        run_case(&cases[i], *state, 0, 500 + i);
}

/* Fails if beta == 0 reads C (0 * NaN is NaN) instead of overwriting it, in
 * any transpose case, for either gemm; or if NaN row padding of C is touched. */
static void test_gemm_beta_zero_overwrites_nan(void **state)
{
    static const gemm_case cases[] = {
        {0, 0, 17, 257, 7, 1.5f, 0.0f, 2, 1, 3, 1},
        {0, 1, 255, 7, 17, -0.5f, 0.0f, 0, 4, 1, 1},
        {1, 0, 7, 1, 255, 0.75f, 0.0f, 1, 0, 2, 1},
        {1, 1, 1, 17, 257, 2.0f, 0.0f, 3, 3, 5, 1},
        /* alpha 1: whole tiles write C themselves (two passes over K) */
        {0, 0, 40, 100, 300, 1.0f, 0.0f, 1, 2, 3, 1},
        {1, 0, 33, 65, 17, 1.0f, 0.0f, 0, 1, 0, 1},
    };
    size_t i;

    for (i = 0; i < N_CASES(cases); i++)
        run_case(&cases[i], *state, 1, 200 + i);
}

/* Fails if the fast gemm goes wrong once M, N and K exceed its cache blocks:
 * block edges, partial panels, beta applied once per K block instead of once,
 * or NaN in C read when beta == 0. The naive gemm is checked on one such size
 * only, to keep the run short. */
static void test_gemm_beyond_cache_blocks(void **state)
{
    static const gemm_case fast_cases[] = {
        {0, 0, 300, 1100, 700, 0.75f, 0.5f, 4, 3, 5, 0},
        {1, 1, 300, 1100, 700, -1.25f, 0.0f, 1, 2, 3, 1},
        {0, 1, 129, 520, 600, 1.5f, 1.0f, 0, 1, 2, 0},
        {1, 0, 520, 129, 600, -0.5f, 0.5f, 2, 0, 1, 0},
    };
    static const gemm_case naive_case = {1, 0, 130, 300, 520, 0.75f, 0.5f, 1, 2, 3, 0};
    size_t i;

    for (i = 0; i < N_CASES(fast_cases); i++)
        run_case(&fast_cases[i], *state, 0, 300 + i);
    run_case(&naive_case, *state, 1, 310);
}

/* Fails if the comparison above is too loose to notice a gemm that reads two
 * elements of one row of A with their K indices swapped. */
static void test_gemm_tolerance_rejects_swapped_index(void **state)
{
    static const gemm_case c = {0, 0, 7, 17, 257, 0.75f, 0.5f, 3, 1, 5, 0};
    operands o;
    char msg[320];
    size_t bad_true, bad_swapped;
    float t;

    make_operands(&o, &c, 400);
    o.A[3] = 0.75f; /* A[0][3] and A[0][200] differ by 1.25 */
    o.A[200] = -0.5f;
    memcpy(o.C, o.C0, o.nc * sizeof *o.C);
    {
        cvi_gemm_env env = {CVI_GEMM_PATH_AUTO, 1, NULL};
        env.ws = *state;
        cvi_gemm(&env, c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A, o.lda, o.B, o.ldb, c.beta, o.C,
                 o.ldc);
    }

    reference(&o, &c);
    bad_true = count_bad(&o, &c, fast_rel(&c), "cvi_gemm", msg, sizeof msg);

    /* The reference of a gemm with the swap bug: C[0][j] moves by
     * 0.75 * 1.25 * (B[200][j] - B[3][j]), far beyond the ~2e-3 tolerance
     * for most of the 17 columns. */
    t = o.A[3];
    o.A[3] = o.A[200];
    o.A[200] = t;
    reference(&o, &c);
    bad_swapped = count_bad(&o, &c, fast_rel(&c), "cvi_gemm", msg, sizeof msg);
    free_operands(&o);

    assert_int_equal(bad_true, 0);
    assert_true(bad_swapped > 0);
}

/* Element (r, c) of a grouped operand (see cvi_operand). */
static size_t grouped_at(size_t r, size_t c, size_t ld, size_t gcols, size_t gstride)
{
    return (c / gcols) * gstride + r * ld + c % gcols;
}

/* One case of test_gemm_grouped_operands_and_bias: M x N x K, A grouped
 * along K by ga columns, B and C along N by gb and gc; ld* as small as the
 * groups allow plus a gap. */
static void grouped_case(void *ws, size_t M, size_t N, size_t K, size_t ga, size_t gb,
                         size_t gc)
{
    const size_t lda = ga + 2, ldb = gb + 2, ldc = gc + 1;
    const size_t sa = M * lda + 3, sb = K * ldb + 1, sc = M * ldc + 2;
    size_t na = (K / ga + 1) * sa, nb = (N / gb + 1) * sb, nc = (N / gc + 1) * sc;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C);
    float *C0 = malloc(nc * sizeof *C0), *rb = malloc(M * sizeof *rb), *cb = malloc(N * sizeof *cb);
    double *ref = malloc(M * N * sizeof *ref);
    tu_rng r;
    size_t i, j, k, t;
    int path, bias;

    assert_true(A && B && C && C0 && rb && cb && ref);
    tu_rng_init(&r, 77);
    for (i = 0; i < na; i++)
        A[i] = tu_rng_sym(&r);
    for (i = 0; i < nb; i++)
        B[i] = tu_rng_sym(&r);
    for (i = 0; i < nc; i++)
        C0[i] = tu_rng_sym(&r);
    for (i = 0; i < M; i++)
        rb[i] = tu_rng_sym(&r);
    for (j = 0; j < N; j++)
        cb[j] = tu_rng_sym(&r);
    for (bias = 0; bias < 7; bias++) {
        /* alpha, beta, the biases and relu: with alpha 1 and beta 0 or 1, whole tiles
         * inside one group of C write it themselves, the biases and relu applied on the
         * last pass; the others go through write_tile. */
        static const float alphas[7] = {0.75f, 0.75f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
        static const float betas[7] = {0.0f, 0.5f, 0.0f, 1.0f, 1.0f, 0.0f, 1.0f};
        static const int row_biased[7] = {0, 1, 1, 0, 1, 1, 0};
        static const int col_biased[7] = {0, 1, 0, 0, 0, 1, 1}, relu[7] = {0, 0, 0, 0, 0, 1, 1};
        const float alpha = alphas[bias], beta = betas[bias];
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++) {
                double sum = 0.0;
                for (k = 0; k < K; k++)
                    sum += (double)A[grouped_at(i, k, lda, ga, sa)] *
                           B[grouped_at(k, j, ldb, gb, sb)];
                ref[i * N + j] = alpha * sum + beta * C0[grouped_at(i, j, ldc, gc, sc)] +
                                 (row_biased[bias] ? (double)rb[i] : 0.0) +
                                 (col_biased[bias] ? (double)cb[j] : 0.0);
                if (relu[bias] && ref[i * N + j] < 0.0)
                    ref[i * N + j] = 0.0;
            }
        for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512; path++) {
            if (!cvi_gemm_path_available((cvi_gemm_path)path))
                continue;
            for (t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
                cvi_gemm_env env;
                cvi_gemm_call g;
                size_t touched = 0;
                memset(&g, 0, sizeof g);
                env.path = (cvi_gemm_path)path;
                env.threads = thread_counts[t];
                env.ws = ws;
                g.M = M;
                g.N = N;
                g.K = K;
                g.alpha = alpha;
                g.beta = beta;
                g.a.data = A;
                g.a.ld = lda;
                g.a.group_cols = ga;
                g.a.group_stride = sa;
                g.b.data = B;
                g.b.ld = ldb;
                g.b.group_cols = gb;
                g.b.group_stride = sb;
                g.c.data = C;
                g.c.ld = ldc;
                g.c.group_cols = gc;
                g.c.group_stride = sc;
                g.c.row_bias = row_biased[bias] ? rb : NULL;
                g.c.col_bias = col_biased[bias] ? cb : NULL;
                g.c.relu = relu[bias];
                memcpy(C, C0, nc * sizeof *C);
                cvi_gemm_ex(&env, &g);
                for (i = 0; i < M; i++)
                    for (j = 0; j < N; j++) {
                        size_t at = grouped_at(i, j, ldc, gc, sc);
                        if (!(fabs(C[at] - ref[i * N + j]) <= (K + 8) * FLT_EPSILON * (K + 3)))
                            fail_msg("%zux%zux%zu, C groups of %zu, %s, %d threads, case %d: "
                                     "C(%zu,%zu) = %.9g, want %.9g",
                                     M, N, K, gc, cvi_gemm_path_name(env.path), env.threads, bias, i, j,
                                     (double)C[at], ref[i * N + j]);
                    }
                for (i = 0; i < nc; i++)
                    touched += memcmp(&C[i], &C0[i], sizeof *C) != 0;
                /* Every C element of the view changes (random data; relu may leave a 0
                 * where C held one, which it never does), nothing else. */
                assert_int_equal(touched, M * N);
            }
        }
    }
    free(A);
    free(B);
    free(C);
    free(C0);
    free(rb);
    free(cb);
    free(ref);
}

/* Fails if grouped operands (A grouped along K, B and C along N, as the
 * batched convolutions use them) or the fused row and column biases are
 * indexed wrongly, on any variant and thread count, or if anything between
 * C's groups is written; the reference gathers the plain matrices first.
 * Groups of 7, 13 and 5 columns straddle every tile; groups of 45 and 42
 * columns give tiles wholly inside a group, tiles across two (16-column
 * tiles split after 13 and 10, or 10 and 4 columns: in either 8-float half),
 * and (K > 256) several passes over C, the biases and relu applied on the
 * last. */
static void test_gemm_grouped_operands_and_bias(void **state)
{
    grouped_case(*state, 37, 5 * 13 + 4, 7 * 9 + 3, 7, 13, 5);
    grouped_case(*state, 19, 2 * 45 + 17, 7 * 40 + 3, 7, 45, 45);
    grouped_case(*state, 19, 2 * 42 + 17, 7 * 40 + 3, 7, 42, 42);
}

/* C = alpha op(A) op(B) + beta C + row bias (then relu when asked) for M x N x K, with C's
 * rows ldc floats apart and, if gc != 0, C viewed in column groups of gc floats gc apart: the
 * same memory as the plain layout, cut differently. */
static void product_as(void *ws, cvi_gemm_path path, int threads, size_t gc, const float *A,
                       const float *B, float *C, size_t M, size_t N, size_t K, size_t ldc,
                       float beta, const float *rb, const float *cb, int relu)
{
    cvi_gemm_env env;
    cvi_gemm_call g = cvi_gemm_plain(0, 1, M, N, K, 1.0f, A, K, B, K, beta, C, ldc);
    env.path = path;
    env.threads = threads;
    env.ws = ws;
    g.c.group_cols = gc;
    g.c.group_stride = gc;
    g.c.row_bias = rb;
    g.c.col_bias = cb;
    g.c.relu = relu;
    cvi_gemm_ex(&env, &g);
}

/* Fails unless whole tiles that write C themselves (alpha 1, beta 0 or 1, a row bias, a column
 * bias, both or none) give the bits of the write-back that clipped tiles use,
 * (alpha acc + beta C + row bias) + column bias: the same
 * product computed into plain C and into the same memory seen as column groups of 16 floats,
 * which every 32-wide tile straddles, must agree bit for bit, on every variant and 1 and 2
 * threads, over two passes of K. With a fused relu both must be relu's x > 0 ? x : 0 of the
 * product without it (about half the entries are negative). */
static void test_gemm_tile_writes_same_bits(void **state)
{
    const size_t M = 24, N = 96, K = 300, ldc = N + 3;
    float *A = malloc(M * K * sizeof *A), *B = malloc(N * K * sizeof *B);
    float *C0 = malloc(M * ldc * sizeof *C0), *C1 = malloc(M * ldc * sizeof *C1);
    float *C2 = malloc(M * ldc * sizeof *C2), *C3 = malloc(M * ldc * sizeof *C3), rb[24], cb[96];
    tu_rng r;
    size_t t, i, j;
    int path, mode;

    assert_true(A && B && C0 && C1 && C2 && C3);
    tu_rng_init(&r, 91);
    fill_sym(A, M * K, &r);
    fill_sym(B, N * K, &r);
    fill_sym(C0, M * ldc, &r);
    fill_sym(rb, M, &r);
    fill_sym(cb, N, &r);
    for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512; path++) {
        if (!cvi_gemm_path_available((cvi_gemm_path)path))
            continue;
        for (t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++)
            for (mode = 0; mode < 16; mode++) {
                const float beta = mode & 1 ? 1.0f : 0.0f;
                const float *bias = mode & 2 ? rb : NULL, *col_bias = mode & 4 ? cb : NULL;
                const int relu = mode >> 3;
                memcpy(C1, C0, M * ldc * sizeof *C1);
                memcpy(C2, C0, M * ldc * sizeof *C2);
                product_as(*state, (cvi_gemm_path)path, thread_counts[t], 0, A, B, C1, M, N,
                           K, ldc, beta, bias, col_bias, relu);
                product_as(*state, (cvi_gemm_path)path, thread_counts[t], 16, A, B, C2, M, N,
                           K, ldc, beta, bias, col_bias, relu);
                if (memcmp(C1, C2, M * ldc * sizeof *C1))
                    fail_msg("%s, %d threads, beta %g, %s, %s%s: whole tiles and the "
                             "write-back differ",
                             cvi_gemm_path_name((cvi_gemm_path)path), thread_counts[t],
                             (double)beta, bias ? "row bias" : "no row bias",
                             col_bias ? "column bias" : "no column bias", relu ? ", relu" : "");
                if (!relu)
                    continue;
                memcpy(C3, C0, M * ldc * sizeof *C3);
                product_as(*state, (cvi_gemm_path)path, thread_counts[t], 0, A, B, C3, M, N,
                           K, ldc, beta, bias, col_bias, 0);
                for (i = 0; i < M; i++)
                    for (j = 0; j < N; j++)
                        C3[i * ldc + j] = C3[i * ldc + j] > 0.0f ? C3[i * ldc + j] : 0.0f;
                if (memcmp(C1, C3, M * ldc * sizeof *C1))
                    fail_msg("%s, %d threads, beta %g, %s, %s: the fused relu is not relu of "
                             "the product",
                             cvi_gemm_path_name((cvi_gemm_path)path), thread_counts[t],
                             (double)beta, bias ? "row bias" : "no row bias",
                             col_bias ? "column bias" : "no column bias");
            }
    }
    free(A);
    free(B);
    free(C0);
    free(C1);
    free(C2);
    free(C3);
}

/* Fails unless a product with nothing to sum (K = 0, or alpha = 0) sets C
 * to ((beta C + row bias) + column bias), then relu's x > 0 ? x : 0 when
 * asked, with beta 0 not reading C (NaN there), on plain and grouped C. */
static void test_gemm_empty_product(void **state)
{
    enum { M = 5, N = 12, GC = 5 };
    float A[M], B[N], C[M * N], rb[M], cb[N];
    tu_rng r;
    int mode;
    size_t i, j;

    tu_rng_init(&r, 17);
    fill_sym(A, M, &r);
    fill_sym(B, N, &r);
    fill_sym(rb, M, &r);
    fill_sym(cb, N, &r);
    for (mode = 0; mode < 32; mode++) {
        const float beta = mode & 1 ? 0.5f : 0.0f;
        const int relu = (mode >> 1) & 1, grouped = (mode >> 2) & 1, k0 = (mode >> 3) & 1;
        const float *row_bias = (mode >> 4) & 1 ? rb : NULL;
        float old[M * N];
        cvi_gemm_env env;
        cvi_gemm_call g = cvi_gemm_plain(0, 0, M, N, k0 ? 0 : 1, k0 ? 1.0f : 0.0f, A, 1, B, N,
                                         beta, C, N);
        env.path = CVI_GEMM_PATH_AUTO;
        env.threads = 1;
        env.ws = *state;
        fill_sym(old, M * N, &r);
        for (i = 0; i < M * N; i++)
            C[i] = beta == 0.0f ? NAN : old[i];
        g.c.row_bias = row_bias;
        g.c.col_bias = cb;
        g.c.relu = relu;
        if (grouped) { /* the same memory as column groups of GC, GC apart */
            g.c.group_cols = GC;
            g.c.group_stride = GC;
        }
        cvi_gemm_ex(&env, &g);
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++) {
                float want = (beta == 0.0f ? 0.0f : beta * old[i * N + j]) +
                             (row_bias ? row_bias[i] : 0.0f);
                want += cb[j];
                if (relu)
                    want = want > 0.0f ? want : 0.0f;
                if (memcmp(&want, &C[i * N + j], sizeof want))
                    fail_msg("%s, beta %g, %s%s%s: C(%zu, %zu) = %.9g, want %.9g",
                             k0 ? "K 0" : "alpha 0", (double)beta,
                             row_bias ? "row bias, " : "", grouped ? "grouped, " : "",
                             relu ? "relu" : "no relu", i, j, (double)C[i * N + j],
                             (double)want);
            }
    }
}

/* Fails unless a product given op(A) packed beforehand (cvi_gemm_pack_a, a_packed) gives the
 * bits of the same product packing A itself, for plain, transposed and grouped A, M past the
 * row blocks and not a multiple of any tile, K over several passes, on every variant and
 * thread count; the packed A is reused for a second product with another B, as a
 * convolution's groups reuse their weights. */
static void test_gemm_packed_a_same_bits(void **state)
{
    static const struct {
        int ta;
        size_t M, N, K, ga;
    } cases[] = {{0, 150, 70, 300, 0}, {1, 37, 100, 513, 0}, {0, 9, 33, 260, 45}};
    size_t ci;
    tu_rng r;

    tu_rng_init(&r, 12);
    for (ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const size_t M = cases[ci].M, N = cases[ci].N, K = cases[ci].K, ga = cases[ci].ga;
        const int ta = cases[ci].ta;
        /* A: M x K (or K x M transposed), or grouped along K in groups of ga, 3 apart */
        const size_t lda = ga ? ga + 1 : (ta ? M : K) + 1;
        const size_t sa = ga ? M * lda + 3 : 0, na = ga ? (K / ga + 1) * sa : (ta ? K : M) * lda;
        float *A = malloc(na * sizeof *A), *B = malloc(2 * K * N * sizeof *B);
        float *C1 = malloc(M * N * sizeof *C1), *C2 = malloc(M * N * sizeof *C2);
        float *packed = malloc(cvi_gemm_packed_a_floats(M, K) * sizeof *packed);
        size_t i, t, rep;
        int path;

        assert_true(A && B && C1 && C2 && packed);
        for (i = 0; i < na; i++)
            A[i] = tu_rng_sym(&r);
        for (i = 0; i < 2 * K * N; i++)
            B[i] = tu_rng_sym(&r);
        for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512; path++) {
            if (!cvi_gemm_path_available((cvi_gemm_path)path))
                continue;
            for (t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
                cvi_gemm_env env;
                env.path = (cvi_gemm_path)path;
                env.threads = thread_counts[t];
                env.ws = *state;
                for (rep = 0; rep < 2; rep++) {
                    cvi_gemm_call g = cvi_gemm_plain(ta, 0, M, N, K, 1.0f, A, lda, B + rep * K * N,
                                                     N, 0.0f, C1, N);
                    if (ga) {
                        g.a.group_cols = ga;
                        g.a.group_stride = sa;
                    }
                    cvi_gemm_ex(&env, &g);
                    if (rep == 0)
                        cvi_gemm_pack_a(&env, &g, packed);
                    g.c.data = C2;
                    g.a_packed = packed;
                    cvi_gemm_ex(&env, &g);
                    if (memcmp(C1, C2, M * N * sizeof *C1))
                        fail_msg("%zux%zux%zu%s%s, %s, %d threads, product %zu: packed A "
                                 "differs",
                                 M, N, K, ta ? " A^T" : "", ga ? " grouped A" : "",
                                 cvi_gemm_path_name((cvi_gemm_path)path), thread_counts[t], rep);
                }
            }
        }
        free(A);
        free(B);
        free(C1);
        free(C2);
        free(packed);
    }
}

/* Fails unless a product over K split at k_split gives, bit for bit, the product over
 * [0, k_split) followed by the product over [k_split, K) added into C (beta 1, the row bias
 * only with the second): two lanes' images in one call, as a linear layer's weight gradient
 * takes them (A transposed, beta 1) and with beta 0; parts of a pass each, and parts past a
 * pass (the second part's passes then start at k_split, not on the multiply's grid), on every
 * variant and 1-3 threads. */
static void test_gemm_k_split_same_bits(void **state)
{
    static const struct {
        size_t M, N, k0, k1;
        float beta;
    } cases[] = {{24, 70, 33, 34, 1.0f}, {17, 40, 64, 64, 0.0f}, {16, 33, 300, 290, 1.0f},
                 {9, 50, 5, 520, 0.0f}};
    size_t ci, t;
    tu_rng r;
    int path;
    tu_rng_init(&r, 31);
    for (ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const size_t M = cases[ci].M, N = cases[ci].N, K = cases[ci].k0 + cases[ci].k1;
        const size_t k0 = cases[ci].k0;
        float *A = malloc(K * M * sizeof *A), *B = malloc(K * N * sizeof *B);
        float *C0 = malloc(M * N * sizeof *C0), *C1 = malloc(M * N * sizeof *C1);
        float *C2 = malloc(M * N * sizeof *C2), *rb = malloc(M * sizeof *rb);
        assert_true(A && B && C0 && C1 && C2 && rb);
        fill_sym(A, K * M, &r);
        fill_sym(B, K * N, &r);
        fill_sym(C0, M * N, &r);
        fill_sym(rb, M, &r);
        for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512; path++) {
            if (!cvi_gemm_path_available((cvi_gemm_path)path))
                continue;
            for (t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
                cvi_gemm_env env;
                cvi_gemm_call g;
                env.path = (cvi_gemm_path)path;
                env.threads = thread_counts[t];
                env.ws = *state;
                memcpy(C1, C0, M * N * sizeof *C1);
                memcpy(C2, C0, M * N * sizeof *C2);
                /* op(A) = A^T: A is K x M, its rows the images */
                g = cvi_gemm_plain(1, 0, M, N, K, 1.0f, A, M, B, N, cases[ci].beta, C1, N);
                g.k_split = k0;
                g.c.row_bias = rb;
                cvi_gemm_ex(&env, &g);
                g = cvi_gemm_plain(1, 0, M, N, k0, 1.0f, A, M, B, N, cases[ci].beta, C2, N);
                cvi_gemm_ex(&env, &g);
                g = cvi_gemm_plain(1, 0, M, N, K - k0, 1.0f, A + k0 * M, M, B + k0 * N, N, 1.0f,
                                   C2, N);
                g.c.row_bias = rb;
                cvi_gemm_ex(&env, &g);
                if (memcmp(C1, C2, M * N * sizeof *C1))
                    fail_msg("%s, %d threads, K %zu split at %zu: the split product differs "
                             "from its two parts",
                             cvi_gemm_path_name((cvi_gemm_path)path), thread_counts[t], K, k0);
            }
        }
        free(A);
        free(B);
        free(C0);
        free(C1);
        free(C2);
        free(rb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gemm_transposes_and_odd_sizes, setup_workspace,
                                        teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_edge_tiles, setup_workspace, teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_beta_zero_overwrites_nan, setup_workspace,
                                        teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_beyond_cache_blocks, setup_workspace,
                                        teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_tile_writes_same_bits, setup_workspace,
                                        teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_empty_product, setup_workspace,
                                        teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_packed_a_same_bits, setup_workspace,
                                        teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_k_split_same_bits, setup_workspace,
                                        teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_tolerance_rejects_swapped_index,
                                        setup_workspace, teardown_workspace),
        cmocka_unit_test_setup_teardown(test_gemm_grouped_operands_and_bias, setup_workspace,
                                        teardown_workspace),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
