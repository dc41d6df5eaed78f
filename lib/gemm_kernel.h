/*
 * gemm_kernel.h - one compiled variant of the blocked multiply; gemm.c
 * includes this file once per instruction set, each time with:
 *   GK_MR          rows of the register tile (4, 6, 8 or 12)
 *   GK_VL, GK_NV   its columns: GK_NV (1 or 2) vectors of GK_VL floats
 *   GK_NR          GK_VL * GK_NV
 *   GK_ATTR        function attributes (the target instruction set) or empty
 *   GK_UNROLL4     (optional, vector variants) unroll the tile's k loop 4 times
 *   GK_PACK_A      (optional) pack a transposed A too instead of reading it
 *                  in place, unless one column tile covers the whole slice
 *   GK_EDGE_TILES  (optional, vector variants with GK_MR 6 and GK_NV 2) also
 *                  a 4-row tile for the last rows and a one-vector tile for
 *                  the last columns, where the full tile would multiply
 *                  padding
 *   GK(name)       the variant's name for name (e.g. name##_avx2)
 * and gets GK(gemm_run): the whole multiply of one slice of C, serial. The
 * parameters are undefined again at the end, ready for the next variant.
 *
 * op(B) is packed into panels GK_NR columns wide and op(A) into panels GK_MR
 * rows tall, a CVI_KC-deep slice at a time; a fixed GK_MR x GK_NR tile with
 * constant trip counts then runs over the panels, so that compilers keep the
 * tile in vector registers. Packing absorbs the transposes, the column groups
 * (see cvi_operand) and the zero padding of the tails, so the tile has no
 * edge cases; edge tiles are only clipped when written back (whole tiles
 * with alpha 1 and beta 0 or 1 write C from their registers), and with
 * GK_EDGE_TILES narrower tiles over the same panels skip most padding. Where
 * an operand already holds a full panel's GK_MR or GK_NR floats of each k
 * side by side (a transposed A, a plain B), the tile reads it in place with
 * its row stride instead: packing it would only copy it (GK_PACK_A: a
 * transposed A is packed anyway).
 */

#ifndef GK_MAYBE_UNUSED /* pack_a_all: the 8 x 16 AVX-512 variant uses the 8 x 32's */
#if defined(__GNUC__) || defined(__clang__)
#define GK_MAYBE_UNUSED __attribute__((unused))
#else
#define GK_MAYBE_UNUSED
#endif
#endif

/* What the tile does with its sums (acc): stores them raw in a buffer
 * (write_tile then writes C), or writes its block of C itself: acc + bias
 * or (acc + C) + bias, which is what write_tile's alpha acc + b C + bias
 * rounds to with alpha 1 and b 0 or 1. Without a row bias write_tile adds
 * 0.0f, which changes nothing here: the sums start from +0.0f, so acc and
 * acc + C are never -0.0f. */
#ifndef GK_OUT_RAW
#define GK_OUT_RAW 0
#define GK_OUT_SET 1
#define GK_OUT_ADD 2
#define GK_OUT_MODE 3 /* the bits above */
/* Or'ed into SET or ADD: x > 0 ? x : 0 after the biases (a fused relu). A
 * bit of mode, not a field, so that the tile reads nothing more than it did
 * without it: one more value held across the k loop made gcc 12 spill a
 * register there. */
#define GK_OUT_RELU 4
/* Where and how the tile writes: rows ld floats apart; row_bias and
 * col_bias (NULL: none) hold the block's GK_MR row and GK_NR column biases,
 * added in that order as write_tile adds them. One pointer argument, so that
 * the tile's arguments all come in registers. */
typedef struct gk_dest {
    float *out;
    size_t ld;
    int mode;
    const float *row_bias, *col_bias;
} gk_dest;
#endif

#ifdef GK_VEC
/* The vector of GK_VL floats (GCC and clang vector extensions). */
typedef float GK(vec) __attribute__((vector_size(GK_VL * 4), aligned(4), may_alias));
/* Its lanes as integers (compare results, masks). */
typedef int32_t GK(ivec) __attribute__((vector_size(GK_VL * 4)));
static const GK(vec) GK(zero) = {0};
/* A vector loaded from, or stored to, any float address: through a pointer
 * to the type above (may_alias, 4-byte aligned), not memcpy, which gcc 12's
 * generic tuning splits into 16-byte halves when 32 bytes long; in the AVX2
 * tile those went through the stack, and the 12 accumulators with them,
 * every step of the k loop. */
#define GK_LD(p) (*(const GK(vec) *)(const void *)(p))
#define GK_ST(p, v) (*(GK(vec) *)(void *)(p) = (v))
/* A vector of GK_VL copies of x (a vector plus a scalar would add 0.0f
 * first, which the compiler may not drop without -ffast-math). */
#define GK_SPLAT8(x) x, x, x, x, x, x, x, x
#if GK_VL == 16
#define GK_SPLAT(x) {GK_SPLAT8(x), GK_SPLAT8(x)}
#elif GK_VL == 8
#define GK_SPLAT(x) {GK_SPLAT8(x)}
#else
#error "GK_VEC wants GK_VL 8 or 16"
#endif
#endif

#if GK_NR % 8 != 0
#error "GK_NR must be a multiple of 8 (pack_panel's transposing copy)"
#endif

/* Copies one full B panel row of GK_NR floats. With vector types the copy
 * is GK_NV vector moves; a plain loop of constant length became a call to
 * memmove per row in gcc 12 once GK_NR reached 32. */
#ifdef GK_VEC
#define GK_COPY_VL(dst, src)                                                                       \
    {                                                                                              \
        GK_ST((dst), GK_LD(src));                                                                  \
    }
#if GK_NV == 2
#define GK_COPY_NR(dst, src)                                                                       \
    {                                                                                              \
        GK(vec) v0_ = GK_LD(src), v1_ = GK_LD((src) + GK_VL);                                      \
        GK_ST((dst), v0_);                                                                         \
        GK_ST((dst) + GK_VL, v1_);                                                                 \
    }
#else
#define GK_COPY_NR(dst, src) GK_COPY_VL(dst, src)
#endif
#else
#define GK_COPY_VL(dst, src)                                                                       \
    {                                                                                              \
        size_t q_;                                                                                 \
        for (q_ = 0; q_ < GK_VL; q_++)                                                             \
            (dst)[q_] = (src)[q_];                                                                 \
    }
#define GK_COPY_NR(dst, src)                                                                       \
    {                                                                                              \
        size_t q_;                                                                                 \
        for (q_ = 0; q_ < GK_NR; q_++)                                                             \
            (dst)[q_] = (src)[q_];                                                                 \
    }
#endif

#if defined(GK_VEC) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define GK_TRANSPOSE8 1
#endif
#endif

#ifdef GK_TRANSPOSE8
#ifndef GK_T8_DEFINED
#define GK_T8_DEFINED
typedef float gk_v8 __attribute__((vector_size(32), aligned(4), may_alias));
/* As GK_LD and GK_ST (memcpy would go through the stack). */
#define GK_LD8(p) (*(const gk_v8 *)(const void *)(p))
#define GK_ST8(p, v) (*(gk_v8 *)(void *)(p) = (v))
#endif
/* p[k * w + r] = X[r * rs + k] for 8 rows r and kc values of k: blocks of
 * 8 x 8 transposed in registers (three rounds of permutes, as unpack,
 * shuffle and lane swaps do it), the last kc % 8 values one by one. A
 * transposing copy the compiler writes itself moves about one float a
 * cycle. */
GK_ATTR static void GK(transpose8)(float *restrict p, size_t w, const float *restrict X,
                                   size_t rs, size_t kc)
{
    size_t k, r;
    for (k = 0; k + 8 <= kc; k += 8) {
        gk_v8 x0, x1, x2, x3, x4, x5, x6, x7, t0, t1, t2, t3, t4, t5, t6, t7;
        x0 = GK_LD8(X + k);
        x1 = GK_LD8(X + rs + k);
        x2 = GK_LD8(X + 2 * rs + k);
        x3 = GK_LD8(X + 3 * rs + k);
        x4 = GK_LD8(X + 4 * rs + k);
        x5 = GK_LD8(X + 5 * rs + k);
        x6 = GK_LD8(X + 6 * rs + k);
        x7 = GK_LD8(X + 7 * rs + k);
        /* pairs of rows interleaved: (x0 x1)(k 0, 1, 4, 5) and (k 2, 3, 6, 7) */
        t0 = __builtin_shufflevector(x0, x1, 0, 8, 1, 9, 4, 12, 5, 13);
        t1 = __builtin_shufflevector(x0, x1, 2, 10, 3, 11, 6, 14, 7, 15);
        t2 = __builtin_shufflevector(x2, x3, 0, 8, 1, 9, 4, 12, 5, 13);
        t3 = __builtin_shufflevector(x2, x3, 2, 10, 3, 11, 6, 14, 7, 15);
        t4 = __builtin_shufflevector(x4, x5, 0, 8, 1, 9, 4, 12, 5, 13);
        t5 = __builtin_shufflevector(x4, x5, 2, 10, 3, 11, 6, 14, 7, 15);
        t6 = __builtin_shufflevector(x6, x7, 0, 8, 1, 9, 4, 12, 5, 13);
        t7 = __builtin_shufflevector(x6, x7, 2, 10, 3, 11, 6, 14, 7, 15);
        /* rows 0-3 of k 0 and 4, 1 and 5, 2 and 6, 3 and 7; then rows 4-7 */
        x0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
        x1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
        x2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
        x3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
        x4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
        x5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
        x6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
        x7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
        /* k 0 .. 7: all eight rows */
        t0 = __builtin_shufflevector(x0, x4, 0, 1, 2, 3, 8, 9, 10, 11);
        t1 = __builtin_shufflevector(x1, x5, 0, 1, 2, 3, 8, 9, 10, 11);
        t2 = __builtin_shufflevector(x2, x6, 0, 1, 2, 3, 8, 9, 10, 11);
        t3 = __builtin_shufflevector(x3, x7, 0, 1, 2, 3, 8, 9, 10, 11);
        t4 = __builtin_shufflevector(x0, x4, 4, 5, 6, 7, 12, 13, 14, 15);
        t5 = __builtin_shufflevector(x1, x5, 4, 5, 6, 7, 12, 13, 14, 15);
        t6 = __builtin_shufflevector(x2, x6, 4, 5, 6, 7, 12, 13, 14, 15);
        t7 = __builtin_shufflevector(x3, x7, 4, 5, 6, 7, 12, 13, 14, 15);
        GK_ST8(p + k * w, t0);
        GK_ST8(p + (k + 1) * w, t1);
        GK_ST8(p + (k + 2) * w, t2);
        GK_ST8(p + (k + 3) * w, t3);
        GK_ST8(p + (k + 4) * w, t4);
        GK_ST8(p + (k + 5) * w, t5);
        GK_ST8(p + (k + 6) * w, t6);
        GK_ST8(p + (k + 7) * w, t7);
    }
    for (; k < kc; k++)
        for (r = 0; r < 8; r++)
            p[k * w + r] = X[r * rs + k];
}

#if GK_MR == 6
/* p[k * 6 + r] = X[r * rs + k] for the 6 rows of a full A panel: transpose8
 * with two rows of zeros, each k's 6 floats written as 8 (the 2 past them
 * land on the next k's, written after), so only while a later k follows;
 * the last k one by one. The compiler's own copy gathered one float at a
 * time: half the packing time of a step on AVX2. */
GK_ATTR static void GK(transpose6)(float *restrict p, const float *restrict X, size_t rs,
                                   size_t kc)
{
    const gk_v8 z = {0};
    size_t k, r, j;
    for (k = 0; k + 8 < kc; k += 8) {
        gk_v8 x[8], t[8];
        for (r = 0; r < 6; r++)
            x[r] = GK_LD8(X + r * rs + k);
        x[6] = z;
        x[7] = z;
        for (r = 0; r < 8; r += 2) {
            t[r] = __builtin_shufflevector(x[r], x[r + 1], 0, 8, 1, 9, 4, 12, 5, 13);
            t[r + 1] = __builtin_shufflevector(x[r], x[r + 1], 2, 10, 3, 11, 6, 14, 7, 15);
        }
        for (r = 0; r < 8; r += 4) {
            x[r] = __builtin_shufflevector(t[r], t[r + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            x[r + 1] = __builtin_shufflevector(t[r], t[r + 2], 2, 3, 10, 11, 6, 7, 14, 15);
            x[r + 2] = __builtin_shufflevector(t[r + 1], t[r + 3], 0, 1, 8, 9, 4, 5, 12, 13);
            x[r + 3] = __builtin_shufflevector(t[r + 1], t[r + 3], 2, 3, 10, 11, 6, 7, 14, 15);
        }
        for (j = 0; j < 4; j++) {
            t[j] = __builtin_shufflevector(x[j], x[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
            t[j + 4] = __builtin_shufflevector(x[j], x[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        }
        for (j = 0; j < 8; j++)
            GK_ST8(p + (k + j) * 6, t[j]);
    }
    for (; k < kc; k++)
        for (r = 0; r < 6; r++)
            p[k * 6 + r] = X[r * rs + k];
}
#endif
#endif

/* Packs rows x kc of a matrix whose element (r, k) is at X[r * rs + k * ks]
 * into a panel of width w, k-major: p[k][r]. The loop orders keep the reads
 * contiguous whichever stride is 1 and, for full panels, the writes too.
 * Rows past `rows` are not written (zero_panel clears them first). */
GK_ATTR static void GK(pack_panel)(float *restrict p, const float *X, size_t rs, size_t ks,
                                   size_t rows, size_t kc, size_t w)
{
    size_t k, r;
#ifdef GK_TRANSPOSE8
    if (ks == 1 && rows == w && rows % 8 == 0) { /* a full panel, transposed */
        for (r = 0; r < rows; r += 8)
            GK(transpose8)(p + r, w, X + r * rs, rs, kc);
        return;
    }
#endif
#if defined(GK_TRANSPOSE8) && GK_MR == 6
    if (ks == 1 && rows == 6 && w == 6) {
        GK(transpose6)(p, X, rs, kc);
        return;
    }
#endif
    if (ks == 1 && rows == GK_MR && w == GK_MR) {
        /* A transposing copy of a full panel: k outer, so that each step
         * writes one contiguous panel row while the GK_MR source rows are
         * read sequentially (r outer would scatter every write). */
        for (k = 0; k < kc; k++)
            for (r = 0; r < GK_MR; r++)
                p[k * GK_MR + r] = X[r * rs + k];
    } else if (ks == 1 && rows == GK_NR && w == GK_NR) {
        /* Eight rows at a time into a dense 8-wide panel, then spread into
         * the wide one: gcc 12 vectorises the dense 8-row transpose
         * (permutes of whole vectors) but copied the 32 rows of a wide
         * panel one float at a time, which cost as much as the multiply on
         * the weight-gradient products. kc <= CVI_KC: gemm_run's slices. */
        float t8[8 * CVI_KC];
        size_t r0;
        for (r0 = 0; r0 < GK_NR; r0 += 8) {
            for (k = 0; k < kc; k++)
                for (r = 0; r < 8; r++)
                    t8[k * 8 + r] = X[(r0 + r) * rs + k];
            for (k = 0; k < kc; k++)
                for (r = 0; r < 8; r++)
                    p[k * GK_NR + r0 + r] = t8[k * 8 + r];
        }
    } else if (ks == 1) {
        for (r = 0; r < rows; r++)
            for (k = 0; k < kc; k++)
                p[k * w + r] = X[r * rs + k];
    } else if (rows == GK_NR && w == GK_NR) {
        for (k = 0; k < kc; k++)
            GK_COPY_NR(p + k * GK_NR, X + k * ks)
    } else if (rows == GK_MR && w == GK_MR) {
        /* A full panel of a transposed A: GK_MR contiguous floats per k,
         * a copy of constant length (the loop below has a variable one). */
        for (k = 0; k < kc; k++)
            for (r = 0; r < GK_MR; r++)
                p[k * GK_MR + r] = X[k * ks + r];
    } else {
        for (k = 0; k < kc; k++)
            for (r = 0; r < rows; r++)
                p[k * w + r] = X[k * ks + r];
    }
}

/* Clears a whole k-major panel whose last rows (rows .. w-1) the packing
 * will not write: one contiguous clear before, rather than a short clear
 * per k after, which compilers turned into a call per k. */
GK_ATTR static void GK(zero_panel)(float *restrict p, size_t rows, size_t kc, size_t w)
{
    if (rows < w)
        memset(p, 0, kc * w * sizeof *p);
}

/* Packs op(A)[i0 .. i0+mc) x [k0 .. k0+kc) as MR-row panels pa[panel][k][r].
 * A grouped A (never transposed) is cut into runs of k inside one group. */
GK_ATTR static void GK(pack_a)(float *restrict pa, const cvi_operand *a, int trans, size_t i0,
                               size_t mc, size_t k0, size_t kc, int direct)
{
    size_t ip;
    for (ip = 0; ip < mc; ip += GK_MR) {
        size_t rows = mc - ip < GK_MR ? mc - ip : GK_MR, i = i0 + ip;
        if (direct && rows == GK_MR) { /* the tile reads A itself */
            pa += kc * GK_MR;
            continue;
        }
        GK(zero_panel)(pa, rows, kc, GK_MR);
        if (trans) { /* op(A)(i, k) = A[k][i] */
            GK(pack_panel)(pa, a->data + k0 * a->ld + i, 1, a->ld, rows, kc, GK_MR);
        } else if (!a->group_cols) {
            GK(pack_panel)(pa, a->data + i * a->ld + k0, a->ld, 1, rows, kc, GK_MR);
        } else {
            size_t k = 0;
            while (k < kc) {
                size_t g = (k0 + k) / a->group_cols, c = (k0 + k) % a->group_cols;
                size_t run = a->group_cols - c < kc - k ? a->group_cols - c : kc - k;
                GK(pack_panel)(pa + k * GK_MR, a->data + g * a->group_stride + i * a->ld + c,
                               a->ld, 1, rows, run, GK_MR);
                k += run;
            }
        }
        pa += kc * GK_MR;
    }
}

/* Where row k0 of B panel j starts when the tile can read the panel in
 * place (a full panel of a plain B, or of a grouped one inside one group:
 * GK_NR contiguous floats per k, ld apart), else NULL. */
GK_ATTR static const float *GK(b_in_place)(const cvi_operand *b, int trans, size_t k0, size_t j,
                                           size_t cols)
{
    if (trans || cols != GK_NR)
        return NULL;
    if (!b->group_cols)
        return b->data + k0 * b->ld + j;
    if (j % b->group_cols + GK_NR > b->group_cols)
        return NULL;
    return b->data + (j / b->group_cols) * b->group_stride + k0 * b->ld + j % b->group_cols;
}

/* Packs op(B)[k0 .. k0+kc) x [j0 .. j0+nc) as NR-column panels pb[panel][k][c],
 * or has the call's b_panels write them. A grouped B is never transposed. */
GK_ATTR static void GK(pack_b)(float *restrict pb, const cvi_gemm_call *g, size_t k0, size_t kc,
                               size_t j0, size_t nc)
{
    const cvi_operand *b = &g->b;
    int trans = g->trans_b;
    size_t jp;
    for (jp = 0; jp < nc; jp += GK_NR) {
        size_t cols = nc - jp < GK_NR ? nc - jp : GK_NR, j = j0 + jp;
        if (g->b_panels) {
            GK(zero_panel)(pb, cols, kc, GK_NR);
            g->b_panels(g->b_ctx, pb, GK_NR, k0, kc, j, cols);
        } else if (GK(b_in_place)(b, trans, k0, j, cols)) { /* the tile reads it */
        } else if (trans) { /* op(B)(k, j) = B[j][k] */
            GK(zero_panel)(pb, cols, kc, GK_NR);
            GK(pack_panel)(pb, b->data + j * b->ld + k0, b->ld, 1, cols, kc, GK_NR);
        } else if (!b->group_cols && cols == GK_NR) {
            GK(pack_panel)(pb, b->data + k0 * b->ld + j, 1, b->ld, cols, kc, GK_NR);
        } else if (!b->group_cols) {
            /* The tail panel: its first whole vectors by vector copies, the
             * rest one by one, the padding cleared first. */
            size_t k, c, whole = cols / GK_VL * GK_VL;
            const float *src = b->data + k0 * b->ld + j;
            GK(zero_panel)(pb, cols, kc, GK_NR);
            for (k = 0; k < kc; k++) {
                for (c = 0; c < whole; c += GK_VL)
                    GK_COPY_VL(pb + k * GK_NR + c, src + k * b->ld + c)
                for (c = whole; c < cols; c++)
                    pb[k * GK_NR + c] = src[k * b->ld + c];
            }
        } else {
            /* Grouped columns: a panel is a few runs of columns, each
             * contiguous inside one column group (two where it straddles
             * groups of 49 or 196 columns), copied run by run: a loop of
             * the run's length per k, which vectorises, where a gather
             * through a table of column offsets went float by float. */
            const float *base = b->data + k0 * b->ld;
            size_t c0, run, k, c;
            GK(zero_panel)(pb, cols, kc, GK_NR);
            for (c0 = 0; c0 < cols; c0 += run) {
                size_t jj = j + c0, in_group = jj % b->group_cols;
                const float *src = base + (jj / b->group_cols) * b->group_stride + in_group;
                run = b->group_cols - in_group < cols - c0 ? b->group_cols - in_group : cols - c0;
                for (k = 0; k < kc; k++)
                    for (c = 0; c < run; c++)
                        pb[k * GK_NR + c0 + c] = src[k * b->ld + c];
            }
        }
        pb += kc * GK_NR;
    }
}

/* The register tile: acc (MR, NR) = sum over k of pa[k][:] outer pb[k][:].
 * Each tile row is GK_NV named arrays of GK_VL floats, one vector register
 * each, updated by constant-length loops: the shape compilers reliably keep
 * in registers for the whole k loop (a longer array per row ends up in
 * memory). GK_ROWS expands a macro once per row. */
#define GK_ROWS_4(X) X(0) X(1) X(2) X(3)
#define GK_ROWS_6(X) GK_ROWS_4(X) X(4) X(5)
#if GK_MR == 4
#define GK_ROWS(X) GK_ROWS_4(X)
#elif GK_MR == 6
#define GK_ROWS(X) GK_ROWS_6(X)
#elif GK_MR == 8
#define GK_ROWS(X) GK_ROWS_6(X) X(6) X(7)
#elif GK_MR == 12
#define GK_ROWS(X) GK_ROWS_6(X) X(6) X(7) X(8) X(9) X(10) X(11)
#else
#error "GK_MR must be 4, 6, 8 or 12"
#endif
#ifdef GK_VEC
/* GCC and clang vector extensions (x86 variants only, which are GCC/clang
 * only anyway): one named vector per accumulator, so the register allocator
 * sees exactly GK_MR x GK_NV values to keep, and each step is GK_NV loads of
 * pb, GK_MR broadcasts of pa and GK_MR x GK_NV FMAs. Arrays of floats
 * indexed in loops (the portable form below) left gcc 12 spilling part of an
 * 8 x 32 tile to the stack, and which part changed with unrelated code. */
/* x > 0 ? x : 0 lane by lane, relu's expression (0 for NaN and -0.0f). */
#define GK_RELU_VEC(x) ((GK(vec))((GK(ivec))((x) > GK(zero)) & (GK(ivec))(x)))
/* A row of one vector (also the one-vector edge tile's, GK_EDGE_TILES). */
#define GK_DECL1(r) GK(vec) c##r = {0};
#define GK_FMA1(r)                                                                                 \
    {                                                                                              \
        GK(vec) a##r = GK_SPLAT(a[r]);                                                             \
        c##r += a##r * b0;                                                                         \
    }
#if GK_NV == 1
#define GK_DECL(r) GK_DECL1(r)
#define GK_FMA(r) GK_FMA1(r)
#define GK_STORE(r) GK_ST(out + r * ld, c##r);
#define GK_ADD_C(r)                                                                                \
    {                                                                                              \
        GK(vec) x_ = GK_LD(out + r * ld);                                                          \
        c##r += x_;                                                                                \
    }
#define GK_ADD_BIAS(r)                                                                             \
    {                                                                                              \
        float rb_ = row_bias[r];                                                                   \
        GK(vec) b_ = GK_SPLAT(rb_);                                                                \
        c##r += b_;                                                                                \
    }
#define GK_ADD_COL_BIAS(r) c##r += cb0;
#define GK_RELU(r) c##r = GK_RELU_VEC(c##r);
#define GK_LOAD_COL_BIAS                                                                           \
    GK(vec) cb0 = GK_LD(col_bias);
#define GK_LOADB                                                                                   \
    GK(vec) b0 = GK_LD(b);
#elif GK_NV == 2
#define GK_DECL(r) GK(vec) c##r = {0}, d##r = {0};
#define GK_FMA(r)                                                                                  \
    {                                                                                              \
        GK(vec) a##r = GK_SPLAT(a[r]);                                                        \
        c##r += a##r * b0;                                                                         \
        d##r += a##r * b1;                                                                         \
    }
#define GK_STORE(r)                                                                                \
    GK_ST(out + r * ld, c##r);                                                                     \
    GK_ST(out + r * ld + GK_VL, d##r);
#define GK_ADD_C(r)                                                                                \
    {                                                                                              \
        GK(vec) x_ = GK_LD(out + r * ld), y_ = GK_LD(out + r * ld + GK_VL);                        \
        c##r += x_;                                                                                \
        d##r += y_;                                                                                \
    }
#define GK_ADD_BIAS(r)                                                                             \
    {                                                                                              \
        float rb_ = row_bias[r];                                                                   \
        GK(vec) b_ = GK_SPLAT(rb_);                                                                \
        c##r += b_;                                                                                \
        d##r += b_;                                                                                \
    }
#define GK_ADD_COL_BIAS(r)                                                                         \
    c##r += cb0;                                                                                   \
    d##r += cb1;
#define GK_RELU(r)                                                                                 \
    c##r = GK_RELU_VEC(c##r);                                                                      \
    d##r = GK_RELU_VEC(d##r);
#define GK_LOAD_COL_BIAS                                                                           \
    GK(vec) cb0 = GK_LD(col_bias), cb1 = GK_LD(col_bias + GK_VL);
#define GK_LOADB                                                                                   \
    GK(vec) b0 = GK_LD(b), b1 = GK_LD(b + GK_VL);
#else
#error "GK_NV must be 1 or 2"
#endif

/* Not inlined: alone in its function the tile gets the whole register file;
 * inlined into gemm_run, gcc 12 shared registers with the loops around it
 * and copied accumulators inside the k loop. One call per tile is nothing
 * beside its kc steps. GK_TILE_LOOP is the k loop both forms share: tile
 * stores the raw sums, tile_c writes its block of C (GK_OUT_SET or _ADD);
 * with one function for both, gcc 12 rotated accumulators through other
 * registers inside the loop. */
#ifdef GK_UNROLL4
/* Unrolled, the AVX2 tile's k loop (20 instructions a step) made the
 * multiply about 4 % and a training step 7 % faster on a Zen 3 core
 * (docs/PERFORMANCE.md, 0.9.7); the AVX-512 tiles are left as measured. */
#define GK_K_UNROLL _Pragma("GCC unroll 4")
#else
#define GK_K_UNROLL
#endif
#define GK_TILE_LOOP                                                                               \
    GK_ROWS(GK_DECL)                                                                               \
    size_t k;                                                                                      \
    GK_K_UNROLL                                                                                    \
    for (k = 0; k < kc; k++) {                                                                     \
        const float *restrict b = pb + k * b_step, *restrict a = pa + k * a_step;                  \
        GK_LOADB                                                                                   \
        GK_ROWS(GK_FMA)                                                                            \
    }
/* The tile (raw sums into out, GK_NR floats a row) and tile_c (its block of
 * C) over the rows GK_ROWS names; defined as a macro so that GK_EDGE_TILES
 * can instantiate a 4-row pair too. */
#define GK_TILE_PAIR(tile, tile_c)                                                                 \
    GK_ATTR __attribute__((noinline)) static void tile(size_t kc, const float *restrict pa,       \
                                                       size_t a_step, const float *restrict pb,    \
                                                       size_t b_step, float *restrict out)         \
    {                                                                                              \
        const size_t ld = GK_NR;                                                                   \
        GK_TILE_LOOP                                                                               \
        GK_ROWS(GK_STORE)                                                                          \
    }                                                                                              \
    GK_ATTR __attribute__((noinline)) static void tile_c(size_t kc, const float *restrict pa,     \
                                                         size_t a_step, const float *restrict pb,  \
                                                         size_t b_step, const gk_dest *dest)       \
    {                                                                                              \
        float *restrict out = dest->out;                                                           \
        const float *restrict row_bias = dest->row_bias, *restrict col_bias = dest->col_bias;      \
        const size_t ld = dest->ld;                                                                \
        GK_TILE_LOOP                                                                               \
        if ((dest->mode & GK_OUT_MODE) == GK_OUT_ADD) {                                            \
            GK_ROWS(GK_ADD_C)                                                                      \
        }                                                                                          \
        if (row_bias) {                                                                            \
            GK_ROWS(GK_ADD_BIAS)                                                                   \
        }                                                                                          \
        if (col_bias) {                                                                            \
            GK_LOAD_COL_BIAS                                                                       \
            GK_ROWS(GK_ADD_COL_BIAS)                                                               \
        }                                                                                          \
        if (dest->mode & GK_OUT_RELU) {                                                            \
            GK_ROWS(GK_RELU)                                                                       \
        }                                                                                          \
        GK_ROWS(GK_STORE)                                                                          \
    }
GK_TILE_PAIR(GK(tile), GK(tile_c))
#ifdef GK_EDGE_TILES
#if GK_MR != 6 || GK_NV != 2
#error "GK_EDGE_TILES wants GK_MR 6 and GK_NV 2"
#endif
/* The last rows of a product whose M leaves 4 or fewer in the last panel
 * (64 = 10 x 6 + 4): 4 rows of 2 vectors, 8 accumulators, reading the
 * first 4 of the 6-row panel's floats per k. The full tile would spend a
 * third of its FMAs on the panel's zero rows. */
#undef GK_ROWS
#define GK_ROWS(X) GK_ROWS_4(X)
GK_TILE_PAIR(GK(tile_r4), GK(tile_c_r4))
#undef GK_ROWS
#define GK_ROWS(X) GK_ROWS_6(X)
/* The last columns of a product whose N leaves GK_VL or fewer (245 = 15 x
 * 16 + 5): 6 rows of one vector, the first half of the 16-wide B panel;
 * raw sums into out, GK_NR floats a row, for write_tile. */
GK_ATTR __attribute__((noinline)) static void GK(tile_n1)(size_t kc, const float *restrict pa,
                                                          size_t a_step, const float *restrict pb,
                                                          size_t b_step, float *restrict out)
{
#define GK_STORE1(r) GK_ST(out + r * GK_NR, c##r);
    GK_ROWS(GK_DECL1)
    size_t k;
    GK_K_UNROLL
    for (k = 0; k < kc; k++) {
        const float *restrict b = pb + k * b_step, *restrict a = pa + k * a_step;
        GK(vec) b0 = GK_LD(b);
        GK_ROWS(GK_FMA1)
    }
    GK_ROWS(GK_STORE1)
#undef GK_STORE1
}
#endif
#undef GK_TILE_PAIR
#undef GK_TILE_LOOP
#undef GK_K_UNROLL
#undef GK_DECL1
#undef GK_FMA1
#undef GK_LOADB
#undef GK_ADD_C
#undef GK_ADD_BIAS
#undef GK_ADD_COL_BIAS
#undef GK_RELU
#undef GK_RELU_VEC
#undef GK_LOAD_COL_BIAS
#undef GK_SPLAT
#undef GK_SPLAT8
#else /* portable C */
#if GK_NV == 1
#define GK_DECL(r) float c##r[GK_VL] = {0};
#define GK_FMA(r) c##r[j] += a[r] * b[j];
#define GK_STORE(r)                                                                                \
    for (j = 0; j < GK_VL; j++)                                                                    \
        out[r * ld + j] = GK_OUT_VALUE(c##r[j], out[r * ld + j], r, j);
#elif GK_NV == 2
#define GK_DECL(r) float c##r[GK_VL] = {0}, d##r[GK_VL] = {0};
#define GK_FMA(r)                                                                                  \
    c##r[j] += a[r] * b[j];                                                                        \
    d##r[j] += a[r] * b[GK_VL + j];
#define GK_STORE(r)                                                                                \
    for (j = 0; j < GK_VL; j++) {                                                                  \
        out[r * ld + j] = GK_OUT_VALUE(c##r[j], out[r * ld + j], r, j);                               \
        out[r * ld + GK_VL + j] = GK_OUT_VALUE(d##r[j], out[r * ld + GK_VL + j], r, GK_VL + j);               \
    }
#else
#error "GK_NV must be 1 or 2"
#endif

/* One output value of the modes below: ((acc + C) + row bias) + column
 * bias, (acc + row bias) + column bias, or acc; then relu's x > 0 ? x : 0
 * when asked. */
#define GK_OUT_SUM(x, old, r, q)                                                                   \
    (((mode == GK_OUT_ADD ? (x) + (old) : (x)) + (row_bias ? row_bias[r] : 0.0f)) +               \
     (col_bias ? col_bias[q] : 0.0f))
#define GK_OUT_VALUE(x, old, r, q)                                                                 \
    (mode == GK_OUT_RAW ? (x)                                                                      \
     : relu             ? GK(relu1)(GK_OUT_SUM(x, old, r, q))                                      \
                        : GK_OUT_SUM(x, old, r, q))

static float GK(relu1)(float x) { return x > 0.0f ? x : 0.0f; }

GK_ATTR static void GK(tile_sums)(size_t kc, const float *restrict pa, size_t a_step,
                                  const float *restrict pb, size_t b_step, float *restrict out,
                                  size_t ld, int mode, const float *restrict row_bias,
                                  const float *restrict col_bias, int relu)
{
    GK_ROWS(GK_DECL)
    size_t k, j;
    for (k = 0; k < kc; k++) {
        const float *restrict b = pb + k * b_step, *restrict a = pa + k * a_step;
        for (j = 0; j < GK_VL; j++) {
            GK_ROWS(GK_FMA)
        }
    }
    GK_ROWS(GK_STORE)
}

GK_ATTR static void GK(tile)(size_t kc, const float *restrict pa, size_t a_step,
                             const float *restrict pb, size_t b_step, float *restrict acc)
{
    GK(tile_sums)(kc, pa, a_step, pb, b_step, acc, GK_NR, GK_OUT_RAW, NULL, NULL, 0);
}

GK_ATTR static void GK(tile_c)(size_t kc, const float *restrict pa, size_t a_step,
                               const float *restrict pb, size_t b_step, const gk_dest *dest)
{
    GK(tile_sums)(kc, pa, a_step, pb, b_step, dest->out, dest->ld, dest->mode & GK_OUT_MODE,
                  dest->row_bias, dest->col_bias, (dest->mode & GK_OUT_RELU) != 0);
}
#undef GK_OUT_VALUE
#undef GK_OUT_SUM
#endif /* GK_VEC */

#undef GK_ROWS
#undef GK_DECL
#undef GK_FMA
#undef GK_STORE

/* C block (rows, cols) at column j of C = alpha acc + b C (b == 0: C not
 * read), then the epilogue's bias. The block is written row by row, in runs
 * of columns that stay inside one column group (one run unless the tile
 * straddles groups, as most do with groups of 49 or 196 columns), so that
 * every run is a contiguous, vectorisable loop. */
GK_ATTR static void GK(write_tile)(const float *restrict acc, size_t rows, size_t cols,
                                   const cvi_gemm_out *c, size_t i, size_t j, float alpha,
                                   float b, int last)
{
    size_t r, q, q0, run;
    const float *row_bias = last ? c->row_bias : NULL, *col_bias = last ? c->col_bias : NULL;
    int relu = last && c->relu;
    for (q0 = 0; q0 < cols; q0 += run) {
        size_t jj = j + q0;
        float *base = c->data + jj;
        run = cols - q0;
        if (c->group_cols) {
            size_t in_group = jj % c->group_cols;
            base = c->data + (jj / c->group_cols) * c->group_stride + in_group;
            if (run > c->group_cols - in_group)
                run = c->group_cols - in_group;
        }
        for (r = 0; r < rows; r++) {
            float *restrict crow = base + (i + r) * c->ld;
            const float *restrict arow = acc + r * GK_NR + q0;
            float rb = row_bias ? row_bias[i + r] : 0.0f;
            if (run == GK_NR) { /* constant trip counts: vectorised */
                if (b == 0.0f)
                    for (q = 0; q < GK_NR; q++)
                        crow[q] = alpha * arow[q] + rb;
                else
                    for (q = 0; q < GK_NR; q++)
                        crow[q] = alpha * arow[q] + b * crow[q] + rb;
                if (col_bias)
                    for (q = 0; q < GK_NR; q++)
                        crow[q] += col_bias[jj + q];
                if (relu)
                    for (q = 0; q < GK_NR; q++)
                        crow[q] = crow[q] > 0.0f ? crow[q] : 0.0f;
                continue;
            }
            if (b == 0.0f)
                for (q = 0; q < run; q++)
                    crow[q] = alpha * arow[q] + rb;
            else
                for (q = 0; q < run; q++)
                    crow[q] = alpha * arow[q] + b * crow[q] + rb;
            if (col_bias)
                for (q = 0; q < run; q++)
                    crow[q] += col_bias[jj + q];
            if (relu)
                for (q = 0; q < run; q++)
                    crow[q] = crow[q] > 0.0f ? crow[q] : 0.0f;
        }
    }
}

/* Where the tile can write its block of C itself (see GK_OUT_RAW), else
 * NULL: a full tile (rows as many as the tile's, tile_rows), alpha 1 and b 0
 * or 1, and its GK_NR columns side by side in C (inside one column group). */
GK_ATTR static float *GK(c_in_place)(const cvi_gemm_out *c, size_t rows, size_t tile_rows,
                                     size_t cols, size_t i, size_t j, float alpha, float b)
{
    if (rows != tile_rows || cols != GK_NR || alpha != 1.0f || (b != 0.0f && b != 1.0f))
        return NULL;
    if (!c->group_cols)
        return c->data + i * c->ld + j;
    if (j % c->group_cols + GK_NR > c->group_cols)
        return NULL;
    return c->data + (j / c->group_cols) * c->group_stride + i * c->ld + j % c->group_cols;
}

/* The depth of the k-slice that starts at k0: CVI_KC, less at the end of K
 * and before k_split (the second part then starts a slice of its own). */
#ifndef GK_SLICE_DEFINED
#define GK_SLICE_DEFINED
static size_t gk_slice(const cvi_gemm_call *g, size_t k0)
{
    size_t kc = g->K - k0 < CVI_KC ? g->K - k0 : CVI_KC;
    if (k0 < g->k_split && g->k_split - k0 < kc)
        kc = g->k_split - k0;
    return kc;
}
#endif

/* op(A) whole, packed as gemm_run packs it slice by slice: for k-slice k0
 * (CVI_KC deep, the last shorter) the panels of rows from i at
 * packed + k0 * Mp + i * kc, Mp being M rounded up to GK_MR. */
GK_ATTR GK_MAYBE_UNUSED static void GK(pack_a_all)(float *packed, const cvi_gemm_call *g)
{
    size_t k0, i0, kc, Mp = (g->M + GK_MR - 1) / GK_MR * GK_MR;
    for (k0 = 0; k0 < g->K; k0 += kc) {
        kc = gk_slice(g, k0);
        for (i0 = 0; i0 < g->M; i0 += CVI_MC) {
            size_t mc = g->M - i0 < CVI_MC ? g->M - i0 : CVI_MC;
            GK(pack_a)(packed + k0 * Mp + i0 * kc, &g->a, g->trans_a, i0, mc, k0, kc, 0);
        }
    }
}

/* The multiply restricted to rows [i_lo, i_hi) and columns [j_lo, j_hi) of C,
 * with packing buffers pa (CVI_MC * CVI_KC) and pb (CVI_KC * CVI_NC). */
GK_ATTR static void GK(gemm_run)(const cvi_gemm_call *g, size_t i_lo, size_t i_hi, size_t j_lo,
                                 size_t j_hi, float *restrict pa, float *restrict pb)
{
    size_t i0, j0, k0, kc;
    /* Operands the tile can read in place, unpacked: a transposed A (GK_MR
     * contiguous floats per k, lda apart) and B's full panels that are
     * GK_NR contiguous floats per k (b_in_place); the rest is packed. */
    int a_direct = g->trans_a && !g->a.group_cols && !g->a_packed;
#ifdef GK_PACK_A
    if (j_hi - j_lo > GK_NR) /* packed once, the panels serve several column tiles */
        a_direct = 0;
#endif
    size_t Mp = (g->M + GK_MR - 1) / GK_MR * GK_MR;
    for (j0 = j_lo; j0 < j_hi; j0 += CVI_NC) {
        size_t nc = j_hi - j0 < CVI_NC ? j_hi - j0 : CVI_NC;
        for (k0 = 0; k0 < g->K; k0 += kc) {
            kc = gk_slice(g, k0);
            /* The first k-slice applies beta, later ones accumulate; the
             * last adds the bias. */
            float b = k0 == 0 ? g->beta : 1.0f;
            int last = k0 + kc == g->K;
            GK(pack_b)(pb, g, k0, kc, j0, nc);
            for (i0 = i_lo; i0 < i_hi; i0 += CVI_MC) {
                size_t mc = i_hi - i0 < CVI_MC ? i_hi - i0 : CVI_MC;
                size_t ip, jp;
                const float *pa_now = pa;
                if (g->a_packed)
                    pa_now = g->a_packed + k0 * Mp + i0 * kc;
                else
                    GK(pack_a)(pa, &g->a, g->trans_a, i0, mc, k0, kc, a_direct);
                for (jp = 0; jp < nc; jp += GK_NR) {
                    size_t cols = nc - jp < GK_NR ? nc - jp : GK_NR, b_step = GK_NR;
                    const float *bp =
                        g->b_panels ? NULL : GK(b_in_place)(&g->b, g->trans_b, k0, j0 + jp, cols);
                    if (bp)
                        b_step = g->b.ld;
                    else
                        bp = pb + jp * kc;
                    for (ip = 0; ip < mc; ip += GK_MR) {
                        size_t rows = mc - ip < GK_MR ? mc - ip : GK_MR, a_step = GK_MR;
                        size_t tile_rows = GK_MR; /* the tile's: GK_MR, or 4 */
                        const float *ap = pa_now + ip * kc;
                        float acc[GK_MR * GK_NR], *cp;
                        if (a_direct && rows == GK_MR) {
                            ap = g->a.data + k0 * g->a.ld + i0 + ip;
                            a_step = g->a.ld;
                        }
#ifdef GK_EDGE_TILES
                        if (rows <= 4)
                            tile_rows = 4;
#endif
                        cp = GK(c_in_place)(&g->c, rows, tile_rows, cols, i0 + ip, j0 + jp,
                                            g->alpha, b);
                        if (cp) {
                            gk_dest d = {cp, g->c.ld, b == 0.0f ? GK_OUT_SET : GK_OUT_ADD, NULL,
                                         NULL};
                            size_t r;
                            /* C's block is read or written only after the k
                             * loop: asked for now, it arrives meanwhile (the
                             * weight gradients, megabytes, are not in cache). */
                            for (r = 0; r < tile_rows; r++) {
                                CVI_PREFETCH_W(cp + r * g->c.ld);
                                CVI_PREFETCH_W(cp + r * g->c.ld + GK_NR - 1);
                            }
                            if (last && g->c.row_bias)
                                d.row_bias = g->c.row_bias + i0 + ip;
                            if (last && g->c.col_bias)
                                d.col_bias = g->c.col_bias + j0 + jp;
                            if (last && g->c.relu)
                                d.mode |= GK_OUT_RELU;
#ifdef GK_EDGE_TILES
                            if (tile_rows == 4) {
                                GK(tile_c_r4)(kc, ap, a_step, bp, b_step, &d);
                                continue;
                            }
#endif
                            GK(tile_c)(kc, ap, a_step, bp, b_step, &d);
                            continue;
                        }
#ifdef GK_EDGE_TILES
                        if (cols <= GK_VL)
                            GK(tile_n1)(kc, ap, a_step, bp, b_step, acc);
                        else if (tile_rows == 4)
                            GK(tile_r4)(kc, ap, a_step, bp, b_step, acc);
                        else
#endif
                            GK(tile)(kc, ap, a_step, bp, b_step, acc);
                        GK(write_tile)(acc, rows, cols, &g->c, i0 + ip, j0 + jp, g->alpha, b,
                                       last);
                    }
                }
            }
        }
    }
}

#undef GK
#undef GK_MR
#undef GK_VL
#undef GK_NV
#undef GK_NR
#undef GK_ATTR
#undef GK_COPY_NR
#undef GK_COPY_VL
#undef GK_LD
#undef GK_ST
#undef GK_VEC
#undef GK_UNROLL4
#undef GK_PACK_A
#undef GK_EDGE_TILES
#undef GK_TRANSPOSE8
