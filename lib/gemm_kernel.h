/*
 * gemm_kernel.h - one compiled variant of the blocked multiply; gemm.c
 * includes this file once per instruction set, each time with:
 *   GK_MR          rows of the register tile (4, 6, 8 or 12)
 *   GK_VL, GK_NV   its columns: GK_NV (1 or 2) vectors of GK_VL floats
 *   GK_NR          GK_VL * GK_NV
 *   GK_ATTR        function attributes (the target instruction set) or empty
 *   GK(name)       the variant's name for name (e.g. name##_avx2)
 * and gets GK(gemm_run): the whole multiply of one slice of C, serial. The
 * parameters are undefined again at the end, ready for the next variant.
 *
 * op(B) is packed into panels GK_NR columns wide and op(A) into panels GK_MR
 * rows tall, a CVI_KC-deep slice at a time; a fixed GK_MR x GK_NR tile with
 * constant trip counts then runs over the packed panels, so that compilers
 * keep the tile in vector registers. Packing absorbs the transposes, the
 * column groups (see cvi_operand) and the zero padding of the tails, so
 * the tile has no edge cases; edge tiles are only clipped when written back.
 */

/* Packs rows x kc of a matrix whose element (r, k) is at X[r * rs + k * ks]
 * into a panel of width w, k-major: p[k][r]. The two loop orders keep the
 * reads contiguous whichever stride is 1. Rows past `rows` are not written. */
GK_ATTR static void GK(pack_panel)(float *restrict p, const float *X, size_t rs, size_t ks,
                                   size_t rows, size_t kc, size_t w)
{
    size_t k, r;
    if (ks == 1) {
        for (r = 0; r < rows; r++)
            for (k = 0; k < kc; k++)
                p[k * w + r] = X[r * rs + k];
    } else if (rows == GK_NR && w == GK_NR) {
        /* A full B panel row is one vector copy: constant length, so the
         * compiler inlines it instead of calling memmove per row. */
        for (k = 0; k < kc; k++)
            for (r = 0; r < GK_NR; r++)
                p[k * GK_NR + r] = X[k * ks + r];
    } else {
        for (k = 0; k < kc; k++)
            for (r = 0; r < rows; r++)
                p[k * w + r] = X[k * ks + r];
    }
}

/* Zeroes columns rows .. w-1 of a k-major panel: the tail rows of a panel. */
GK_ATTR static void GK(pad_panel)(float *restrict p, size_t rows, size_t kc, size_t w)
{
    size_t k, r;
    if (rows < w)
        for (k = 0; k < kc; k++)
            for (r = rows; r < w; r++)
                p[k * w + r] = 0.0f;
}

/* Packs op(A)[i0 .. i0+mc) x [k0 .. k0+kc) as MR-row panels pa[panel][k][r].
 * A grouped A (never transposed) is cut into runs of k inside one group. */
GK_ATTR static void GK(pack_a)(float *restrict pa, const cvi_operand *a, int trans, size_t i0,
                               size_t mc, size_t k0, size_t kc)
{
    size_t ip;
    for (ip = 0; ip < mc; ip += GK_MR) {
        size_t rows = mc - ip < GK_MR ? mc - ip : GK_MR, i = i0 + ip;
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
        GK(pad_panel)(pa, rows, kc, GK_MR);
        pa += kc * GK_MR;
    }
}

/* Packs op(B)[k0 .. k0+kc) x [j0 .. j0+nc) as NR-column panels pb[panel][k][c].
 * A grouped B (never transposed) is cut into runs of columns inside one group. */
GK_ATTR static void GK(pack_b)(float *restrict pb, const cvi_operand *b, int trans, size_t k0,
                               size_t kc, size_t j0, size_t nc)
{
    size_t jp;
    for (jp = 0; jp < nc; jp += GK_NR) {
        size_t cols = nc - jp < GK_NR ? nc - jp : GK_NR, j = j0 + jp;
        if (trans) { /* op(B)(k, j) = B[j][k] */
            GK(pack_panel)(pb, b->data + j * b->ld + k0, b->ld, 1, cols, kc, GK_NR);
        } else if (!b->group_cols) {
            GK(pack_panel)(pb, b->data + k0 * b->ld + j, 1, b->ld, cols, kc, GK_NR);
        } else {
            size_t c = 0;
            while (c < cols) {
                size_t g = (j + c) / b->group_cols, cc = (j + c) % b->group_cols;
                size_t run = b->group_cols - cc < cols - c ? b->group_cols - cc : cols - c;
                size_t k, r;
                const float *src = b->data + g * b->group_stride + k0 * b->ld + cc;
                for (k = 0; k < kc; k++)
                    for (r = 0; r < run; r++)
                        pb[k * GK_NR + c + r] = src[k * b->ld + r];
                c += run;
            }
        }
        GK(pad_panel)(pb, cols, kc, GK_NR);
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
#if GK_NV == 1
#define GK_DECL(r) float c##r[GK_VL] = {0};
#define GK_FMA(r) c##r[j] += a[r] * b[j];
#define GK_STORE(r)                                                                                \
    for (j = 0; j < GK_VL; j++)                                                                    \
        acc[r * GK_NR + j] = c##r[j];
#elif GK_NV == 2
#define GK_DECL(r) float c##r[GK_VL] = {0}, d##r[GK_VL] = {0};
#define GK_FMA(r)                                                                                  \
    c##r[j] += a[r] * b[j];                                                                        \
    d##r[j] += a[r] * b[GK_VL + j];
#define GK_STORE(r)                                                                                \
    for (j = 0; j < GK_VL; j++) {                                                                  \
        acc[r * GK_NR + j] = c##r[j];                                                              \
        acc[r * GK_NR + GK_VL + j] = d##r[j];                                                      \
    }
#else
#error "GK_NV must be 1 or 2"
#endif

GK_ATTR static void GK(tile)(size_t kc, const float *restrict pa, const float *restrict pb,
                             float *restrict acc)
{
    GK_ROWS(GK_DECL)
    size_t k, j;
    for (k = 0; k < kc; k++) {
        const float *restrict b = pb + k * GK_NR, *restrict a = pa + k * GK_MR;
        for (j = 0; j < GK_VL; j++) {
            GK_ROWS(GK_FMA)
        }
    }
    GK_ROWS(GK_STORE)
}

#undef GK_ROWS
#undef GK_DECL
#undef GK_FMA
#undef GK_STORE

/* C block (rows, cols) at column j of C = alpha acc + b C (b == 0: C not
 * read), then the epilogue's bias. A tile inside one column group is written
 * row by row; one that straddles groups column by column. */
GK_ATTR static void GK(write_tile)(const float *restrict acc, size_t rows, size_t cols,
                                   const cvi_gemm_out *c, size_t i, size_t j, float alpha,
                                   float b, int last)
{
    size_t r, q;
    const float *row_bias = last ? c->row_bias : NULL, *col_bias = last ? c->col_bias : NULL;
    if (!c->group_cols || j % c->group_cols + cols <= c->group_cols) {
        float *base = c->group_cols ? c->data + (j / c->group_cols) * c->group_stride +
                                          j % c->group_cols
                                    : c->data + j;
        for (r = 0; r < rows; r++) {
            float *restrict crow = base + (i + r) * c->ld;
            const float *restrict arow = acc + r * GK_NR;
            float rb = row_bias ? row_bias[i + r] : 0.0f;
            if (cols == GK_NR) { /* constant trip counts: vectorised */
                if (b == 0.0f)
                    for (q = 0; q < GK_NR; q++)
                        crow[q] = alpha * arow[q] + rb;
                else
                    for (q = 0; q < GK_NR; q++)
                        crow[q] = alpha * arow[q] + b * crow[q] + rb;
                if (col_bias)
                    for (q = 0; q < GK_NR; q++)
                        crow[q] += col_bias[j + q];
                continue;
            }
            if (b == 0.0f)
                for (q = 0; q < cols; q++)
                    crow[q] = alpha * arow[q] + rb;
            else
                for (q = 0; q < cols; q++)
                    crow[q] = alpha * arow[q] + b * crow[q] + rb;
            if (col_bias)
                for (q = 0; q < cols; q++)
                    crow[q] += col_bias[j + q];
        }
        return;
    }
    for (q = 0; q < cols; q++) {
        size_t jj = j + q;
        float *col = c->data + (jj / c->group_cols) * c->group_stride + jj % c->group_cols;
        for (r = 0; r < rows; r++) {
            float *e = col + (i + r) * c->ld;
            float v = alpha * acc[r * GK_NR + q] + (b == 0.0f ? 0.0f : b * *e);
            if (row_bias)
                v += row_bias[i + r];
            if (col_bias)
                v += col_bias[jj];
            *e = v;
        }
    }
}

/* The multiply restricted to rows [i_lo, i_hi) and columns [j_lo, j_hi) of C,
 * with packing buffers pa (CVI_MC * CVI_KC) and pb (CVI_KC * CVI_NC). */
GK_ATTR static void GK(gemm_run)(const cvi_gemm_call *g, size_t i_lo, size_t i_hi, size_t j_lo,
                                 size_t j_hi, float *restrict pa, float *restrict pb)
{
    size_t i0, j0, k0;
    for (j0 = j_lo; j0 < j_hi; j0 += CVI_NC) {
        size_t nc = j_hi - j0 < CVI_NC ? j_hi - j0 : CVI_NC;
        for (k0 = 0; k0 < g->K; k0 += CVI_KC) {
            size_t kc = g->K - k0 < CVI_KC ? g->K - k0 : CVI_KC;
            /* The first k-slice applies beta, later ones accumulate; the
             * last adds the bias. */
            float b = k0 == 0 ? g->beta : 1.0f;
            int last = k0 + kc == g->K;
            GK(pack_b)(pb, &g->b, g->trans_b, k0, kc, j0, nc);
            for (i0 = i_lo; i0 < i_hi; i0 += CVI_MC) {
                size_t mc = i_hi - i0 < CVI_MC ? i_hi - i0 : CVI_MC;
                size_t ip, jp;
                GK(pack_a)(pa, &g->a, g->trans_a, i0, mc, k0, kc);
                for (jp = 0; jp < nc; jp += GK_NR) {
                    size_t cols = nc - jp < GK_NR ? nc - jp : GK_NR;
                    for (ip = 0; ip < mc; ip += GK_MR) {
                        size_t rows = mc - ip < GK_MR ? mc - ip : GK_MR;
                        float acc[GK_MR * GK_NR];
                        GK(tile)(kc, pa + ip * kc, pb + jp * kc, acc);
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
