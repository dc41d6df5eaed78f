/*
 * im2col_vec.c - im2col and col2im on AVX-512 vectors for the convolutions
 * that stride 2 across a row with a kernel 4 wide and 1 column of padding
 * (every convolution of the model presets), on rows of at most 32 pixels.
 *
 * Across a row such a kernel reads, for tap kx at output column ox, input
 * column 2 ox + kx - 1. So one input row, loaded as one or two vectors,
 * gives each of its four column rows' segments (OW floats) by a permute of
 * constant lanes, where the table-driven loops of im2col.c gather one float
 * at a time. col2im is the adjoint: each pixel row is the sum of the four
 * taps' segments spread to every other lane, added tap by tap in tap order
 * from 0.0f, with +0.0f where a tap does not read the pixel; x + 0.0f is x
 * for every x but -0.0f, which a sum from 0.0f never is. Both therefore
 * give im2col.c's bits exactly.
 *
 * The vectors are GCC and clang vector extensions, the permutes
 * __builtin_shufflevector (clang, GCC 12 and later); elsewhere these
 * functions are absent and im2col.c's loops run.
 */
#include "cvae_internal.h"

#include <stdint.h>
#include <string.h>

#if defined(CVI_HAVE_AVX512) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define HAVE_VEC 1
#endif
#endif

#ifdef HAVE_VEC

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t m16 __attribute__((vector_size(64)));
typedef int32_t m8 __attribute__((vector_size(32)));

/* im2col: lane ox of tap kx's segment is input column 2 ox + kx - 1 of the
 * row's two vectors (clamped: lanes outside the row are masked to 0). */
#define IN_COL(kx, o) (2 * (o) + (kx)-1)
#define IN_LANE(kx, o) (IN_COL(kx, o) < 0 ? 0 : IN_COL(kx, o) > 31 ? 31 : IN_COL(kx, o))
#define IN_LANES8(kx, o)                                                                           \
    IN_LANE(kx, o), IN_LANE(kx, o + 1), IN_LANE(kx, o + 2), IN_LANE(kx, o + 3),                    \
        IN_LANE(kx, o + 4), IN_LANE(kx, o + 5), IN_LANE(kx, o + 6), IN_LANE(kx, o + 7)
#define IN_LANES16(kx) IN_LANES8(kx, 0), IN_LANES8(kx, 8)

/* col2im: pixel x takes lane (x + 1 - kx) / 2 of tap kx's segment when
 * x + 1 - kx is even and not negative (else lane 0, masked). max is the
 * segment's last lane. */
#define SEG_POS(kx, x) ((x) + 1 - (kx))
#define SEG_LANE(kx, x, max)                                                                       \
    (SEG_POS(kx, x) < 0 || SEG_POS(kx, x) % 2 != 0 || SEG_POS(kx, x) / 2 > (max)                  \
         ? 0                                                                                       \
         : SEG_POS(kx, x) / 2)
#define SEG_LANES8(kx, x, max)                                                                     \
    SEG_LANE(kx, x, max), SEG_LANE(kx, x + 1, max), SEG_LANE(kx, x + 2, max),                      \
        SEG_LANE(kx, x + 3, max), SEG_LANE(kx, x + 4, max), SEG_LANE(kx, x + 5, max),              \
        SEG_LANE(kx, x + 6, max), SEG_LANE(kx, x + 7, max)
#define SEG_LANES16(kx, x, max) SEG_LANES8(kx, x, max), SEG_LANES8(kx, (x) + 8, max)

/* The geometry these functions serve. */
int cvi_im2col_vec_fits(const cvi_conv_geom *g)
{
    return g->KW == 4 && g->SW == 2 && g->PW == 1 && g->W >= 2 && g->W <= 32;
}

/* The lanes of tap kx's segment that hold a pixel (ox < OW, its column
 * inside the row): all ones, the others 0. */
static void in_masks(int32_t mask[4][16], const cvi_conv_geom *g)
{
    size_t kx, ox;
    for (kx = 0; kx < 4; kx++)
        for (ox = 0; ox < 16; ox++) {
            ptrdiff_t x = (ptrdiff_t)(2 * ox + kx) - 1;
            mask[kx][ox] = ox < g->OW && x >= 0 && x < (ptrdiff_t)g->W ? -1 : 0;
        }
}

/* Whether tap kx adds to pixel x of a row: the pixel inside the row and
 * read by the tap at some ox < OW. */
static int tap_reads(const cvi_conv_geom *g, size_t x, size_t kx)
{
    ptrdiff_t s = (ptrdiff_t)(x + 1) - (ptrdiff_t)kx;
    return x < g->W && s >= 0 && s % 2 == 0 && (size_t)s / 2 < g->OW;
}

/* The lanes of pixel vector v (pixels 16 v .. 16 v + 15) that tap kx adds
 * to: all ones, the others 0. */
static void seg_masks(int32_t mask[2][4][16], const cvi_conv_geom *g)
{
    size_t v, kx, q;
    for (v = 0; v < 2; v++)
        for (kx = 0; kx < 4; kx++)
            for (q = 0; q < 16; q++)
                mask[v][kx][q] = tap_reads(g, 16 * v + q, kx) ? -1 : 0;
}

/* Writes the first n floats of a vector of len floats (the end of a
 * segment or of a pixel row, where a whole vector would reach past it). */
static void store_part(float *dst, const float *v, size_t n)
{
    size_t q;
    for (q = 0; q < n; q++)
        dst[q] = v[q];
}

/* The same for n <= 16 as one masked store: a loop of fixed length with the
 * bound inside, where store_part's loop becomes a call to memcpy (four per
 * output row's last vector in im2col, costing as much as the rest of the
 * row). */
static void store_part16(float *dst, const float v[16], size_t n)
{
    size_t q;
    for (q = 0; q < 16; q++)
        if (q < n)
            dst[q] = v[q];
}

/* The first n floats of the four taps' vectors v0 .. v3 (8 or 16 floats
 * each) at d, d + ldcol, d + 2 ldcol, d + 3 ldcol. */
#define STORE_TAPS_PART(v0, v1, v2, v3, n)                                                         \
    do {                                                                                           \
        float t_[4][16] = {{0}};                                                                   \
        memcpy(t_[0], &(v0), sizeof(v0));                                                          \
        memcpy(t_[1], &(v1), sizeof(v1));                                                          \
        memcpy(t_[2], &(v2), sizeof(v2));                                                          \
        memcpy(t_[3], &(v3), sizeof(v3));                                                          \
        store_part16(d, t_[0], n);                                                                 \
        store_part16(d + ldcol, t_[1], n);                                                         \
        store_part16(d + 2 * ldcol, t_[2], n);                                                     \
        store_part16(d + 3 * ldcol, t_[3], n);                                                     \
    } while (0)

/* Stores the four taps' segments of one output row oy, read from the input
 * row in (lo, hi) with masks mk, at d (column row (c, ky, 0)); whole
 * vectors while they end inside the image's P positions (the next output
 * row overwrites what a vector writes past its segment: rows come in
 * order), float by float after. */
#define IM2COL_TAPS(T, M, LANES, LEN)                                                              \
    do {                                                                                           \
        T v0_ = (T)((M)__builtin_shufflevector(lo, hi, LANES(0)) & mk[0]);                         \
        T v1_ = (T)((M)__builtin_shufflevector(lo, hi, LANES(1)) & mk[1]);                         \
        T v2_ = (T)((M)__builtin_shufflevector(lo, hi, LANES(2)) & mk[2]);                         \
        T v3_ = (T)((M)__builtin_shufflevector(lo, hi, LANES(3)) & mk[3]);                         \
        if (oy < whole) {                                                                          \
            memcpy(d, &v0_, sizeof v0_);                                                           \
            memcpy(d + ldcol, &v1_, sizeof v1_);                                                   \
            memcpy(d + 2 * ldcol, &v2_, sizeof v2_);                                               \
            memcpy(d + 3 * ldcol, &v3_, sizeof v3_);                                               \
        } else {                                                                                   \
            STORE_TAPS_PART(v0_, v1_, v2_, v3_, ow);                                               \
        }                                                                                          \
    } while (0)

/* The plane after this one in memory asked for while this one is read (the
 * next channel's, or the next call's first, within the images). In a step
 * the activations come from beyond the caches, and the rows' order (every
 * other row, four times over) is one the hardware's prefetchers do not
 * follow: the loads of input rows stalled a third of im2col's time. */
#define PREFETCH_NEXT_PLANE()                                                                      \
    do {                                                                                           \
        size_t q_;                                                                                 \
        if ((size_t)(imgs_end - plane) >= 2 * H * W)                                               \
            for (q_ = 0; q_ < H * W; q_ += 16)                                                     \
                __builtin_prefetch(plane + H * W + q_, 0, 3);                                      \
    } while (0)

/* Input row yp (padded coordinates) of a plane as the vector lo (rows of up
 * to 16 pixels) or lo and hi (up to 32): 0 in the padding, read through a
 * copy where the vectors would reach past imgs_end. */
#define LOAD_ROW(lo, hi, yp)                                                                       \
    do {                                                                                           \
        v16 lo_ = {0}, hi_ = {0};                                                                  \
        if ((yp) >= PH && (yp)-PH < H) {                                                           \
            const float *src_ = plane + ((yp)-PH) * W;                                             \
            if ((size_t)(imgs_end - src_) >= (W > 16 ? 32u : 16u)) {                               \
                memcpy(&lo_, src_, sizeof lo_);                                                    \
                if (W > 16)                                                                        \
                    memcpy(&hi_, src_ + 16, sizeof hi_);                                           \
            } else {                                                                               \
                float row_[32] = {0};                                                              \
                memcpy(row_, src_, W * sizeof *row_);                                              \
                memcpy(&lo_, row_, sizeof lo_);                                                    \
                memcpy(&hi_, row_ + 16, sizeof hi_);                                               \
            }                                                                                      \
        }                                                                                          \
        lo = lo_;                                                                                  \
        hi = hi_;                                                                                  \
    } while (0)

/* The body of both widths of im2col: LEN lanes a segment (8 or 16), T and
 * M its float and mask vectors, LANES its lane lists. An input row is read
 * by LOAD_ROW. */
#define IM2COL_BODY(T, M, LANES, LEN)                                                              \
    do {                                                                                           \
        M mk[4];                                                                                   \
        size_t ch, ky, oy, whole = P >= LEN ? (P - LEN) / ow + 1 : 0;                              \
        for (ky = 0; ky < 4; ky++)                                                                 \
            memcpy(&mk[ky], masks[ky], sizeof mk[ky]);                                             \
        for (ch = c; ch < c + nch; ch++) {                                                         \
            const float *plane = img + ch * H * W;                                                 \
            PREFETCH_NEXT_PLANE();                                                                 \
            for (ky = 0; ky < KH; ky++) {                                                          \
                float *d = col + (ch * KH + ky) * 4 * ldcol;                                       \
                size_t yp = ky;                                                                    \
                for (oy = 0; oy < OH; oy++, yp += SH, d += ow) {                                   \
                    v16 lo, hi;                                                                    \
                    LOAD_ROW(lo, hi, yp);                                                          \
                    IM2COL_TAPS(T, M, LANES, LEN);                                                 \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define IN_LANES8_0(kx) IN_LANES8(kx, 0)

/* Two output rows in one vector, where a segment is OW = 7 or 8 floats (rows
 * of at most 16 pixels, each input row one vector): lane q < OW is tap kx of
 * output column q in row A, lane OW + q that of column q in row B (lane 16 +
 * of the pair's second source), lanes past 2 OW unused. Clamped lanes are
 * masked to 0. One permute and one store of 16 floats then do what two of 8
 * did: the store bound these rows (half of each 8-float store was spent on
 * the 1 or 0 floats a row lacks, and on the loop around it). */
#define IN_LANE16(kx, o) (IN_COL(kx, o) < 0 ? 0 : IN_COL(kx, o) > 15 ? 15 : IN_COL(kx, o))
#define PAIR_LANE(kx, q, OW)                                                                       \
    ((q) < (OW) ? IN_LANE16(kx, q) : (q) < 2 * (OW) ? 16 + IN_LANE16(kx, (q) - (OW)) : 0)
#define PAIR_LANES4(kx, q, OW)                                                                     \
    PAIR_LANE(kx, q, OW), PAIR_LANE(kx, (q) + 1, OW), PAIR_LANE(kx, (q) + 2, OW),                  \
        PAIR_LANE(kx, (q) + 3, OW)
#define PAIR_LANES(kx, OW)                                                                         \
    PAIR_LANES4(kx, 0, OW), PAIR_LANES4(kx, 4, OW), PAIR_LANES4(kx, 8, OW),                        \
        PAIR_LANES4(kx, 12, OW)

/* The body for OW = 7 or 8: output rows in pairs, each pair's four taps as
 * whole 16-float vectors while they end inside the image's P positions (the
 * next pair overwrites the overhang), float by float after; an odd last
 * row alone, as IM2COL_BODY does it. */
#define IM2COL_PAIRS_BODY(OW)                                                                      \
    do {                                                                                           \
        m16 mk[4];                                                                                 \
        size_t ch, ky, oy;                                                                         \
        for (ky = 0; ky < 4; ky++)                                                                 \
            memcpy(&mk[ky], pair_masks[ky], sizeof mk[ky]);                                        \
        for (ch = c; ch < c + nch; ch++) {                                                         \
            const float *plane = img + ch * H * W;                                                 \
            PREFETCH_NEXT_PLANE();                                                                 \
            for (ky = 0; ky < KH; ky++) {                                                          \
                float *d = col + (ch * KH + ky) * 4 * ldcol;                                       \
                size_t yp = ky;                                                                    \
                for (oy = 0; oy < OH; oy += 2, yp += 2 * SH, d += 2 * (OW)) {                      \
                    v16 a, b = {0}, none, v0, v1, v2, v3; /* rows of one vector: no hi */          \
                    LOAD_ROW(a, none, yp);                                                         \
                    if (oy + 1 < OH)                                                               \
                        LOAD_ROW(b, none, yp + SH);                                                \
                    (void)none;                                                                    \
                    v0 = (v16)((m16)__builtin_shufflevector(a, b, PAIR_LANES(0, OW)) & mk[0]);     \
                    v1 = (v16)((m16)__builtin_shufflevector(a, b, PAIR_LANES(1, OW)) & mk[1]);     \
                    v2 = (v16)((m16)__builtin_shufflevector(a, b, PAIR_LANES(2, OW)) & mk[2]);     \
                    v3 = (v16)((m16)__builtin_shufflevector(a, b, PAIR_LANES(3, OW)) & mk[3]);     \
                    if (oy * (OW) + 16 <= P) {                                                     \
                        memcpy(d, &v0, sizeof v0);                                                 \
                        memcpy(d + ldcol, &v1, sizeof v1);                                         \
                        memcpy(d + 2 * ldcol, &v2, sizeof v2);                                     \
                        memcpy(d + 3 * ldcol, &v3, sizeof v3);                                     \
                    } else {                                                                       \
                        STORE_TAPS_PART(v0, v1, v2, v3, P - oy * (OW));                            \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* The lanes of a pair's tap kx that hold a pixel: column q of row A or B
 * (q < OW) whose input column is inside the row. */
static void pair_masks_build(int32_t mask[4][16], const cvi_conv_geom *g)
{
    size_t kx, q;
    for (kx = 0; kx < 4; kx++)
        for (q = 0; q < 16; q++) {
            size_t ox = q < g->OW ? q : q - g->OW;
            ptrdiff_t x = (ptrdiff_t)(2 * ox + kx) - 1;
            mask[kx][q] = q < 2 * g->OW && x >= 0 && x < (ptrdiff_t)g->W ? -1 : 0;
        }
}

/* im2col of channels c .. c+nch-1 of one image (img), into the image's
 * columns col (column rows ldcol apart); imgs_end bounds what may be read. */
CVI_AVX512_ATTR void cvi_im2col_vec_channels(float *col, const float *img, size_t c, size_t nch,
                                             const cvi_conv_geom *g, size_t ldcol,
                                             const float *imgs_end)
{
    const size_t H = g->H, W = g->W, KH = g->KH, SH = g->SH, PH = g->PH, OH = g->OH,
                 ow = g->OW, P = OH * ow;
    int32_t masks[4][16], pair_masks[4][16];
    if (W <= 16 && (ow == 7 || ow == 8)) {
        pair_masks_build(pair_masks, g);
        if (ow == 7)
            IM2COL_PAIRS_BODY(7);
        else
            IM2COL_PAIRS_BODY(8);
        return;
    }
    in_masks(masks, g);
    if (W <= 16)
        IM2COL_BODY(v8, m8, IN_LANES8_0, 8);
    else
        IM2COL_BODY(v16, m16, IN_LANES16, 16);
}

/* Adds tap kx's segment seg spread over pixel vector v (pixels 16 v ..
 * 16 v + 15) into s, masked; max is the segment's last lane. */
#define ADD_TAP(s, seg, kx, v, max)                                                                \
    s += (v16)((m16)__builtin_shufflevector(seg, seg, SEG_LANES16(kx, 16 * (v), max)) &        \
               mk[v][kx])

/* Rows of at most 16 pixels, taps kx and kx + 1 (kx = 0 or 2) at once:
 * pixel x takes lane (x + 1 - kx) / 2 of tap kx's segment (the first
 * source) when x + 1 - kx is even, else lane (x - kx) / 2 of tap kx + 1's
 * (the second, lanes 8 on); clamped lanes are masked. Adding the pair's
 * vector gives the bits of adding the two taps' vectors one after the
 * other: each pixel gets the same one value and a +0.0f, and x + 0.0f is x
 * for every sum from 0.0f. */
#define SEG8(i) ((i) < 0 ? 0 : (i) > 7 ? 7 : (i))
#define TAP_PAIR_LANE(kx, x)                                                                       \
    (((x) + 1 - (kx)) % 2 == 0 ? SEG8(((x) + 1 - (kx)) / 2) : 8 + SEG8(((x) - (kx)) / 2))
#define TAP_PAIR_LANES4(kx, x)                                                                     \
    TAP_PAIR_LANE(kx, x), TAP_PAIR_LANE(kx, (x) + 1), TAP_PAIR_LANE(kx, (x) + 2),                  \
        TAP_PAIR_LANE(kx, (x) + 3)
#define TAP_PAIR_LANES(kx)                                                                         \
    TAP_PAIR_LANES4(kx, 0), TAP_PAIR_LANES4(kx, 4), TAP_PAIR_LANES4(kx, 8),                        \
        TAP_PAIR_LANES4(kx, 12)

/* Loads the four taps' segments at seg (column row (c, ky, 0)) as vectors
 * of LEN floats; past col_end (the last column rows), by a copy. */
#define LOAD_TAPS(T, LEN)                                                                          \
    T t0, t1, t2, t3;                                                                              \
    if ((size_t)(col_end - seg) >= 3 * ldcol + LEN) {                                              \
        memcpy(&t0, seg, sizeof t0);                                                               \
        memcpy(&t1, seg + ldcol, sizeof t1);                                                       \
        memcpy(&t2, seg + 2 * ldcol, sizeof t2);                                                   \
        memcpy(&t3, seg + 3 * ldcol, sizeof t3);                                                   \
    } else {                                                                                       \
        float r_[4][LEN];                                                                          \
        size_t q_;                                                                                 \
        memset(r_, 0, sizeof r_);                                                                  \
        for (q_ = 0; q_ < 4; q_++)                                                                 \
            store_part(r_[q_], seg + q_ * ldcol,                                                   \
                       (size_t)(col_end - (seg + q_ * ldcol)) < LEN                                \
                           ? (size_t)(col_end - (seg + q_ * ldcol))                                \
                           : LEN);                                                                 \
        memcpy(&t0, r_[0], sizeof t0);                                                             \
        memcpy(&t1, r_[1], sizeof t1);                                                             \
        memcpy(&t2, r_[2], sizeof t2);                                                             \
        memcpy(&t3, r_[3], sizeof t3);                                                             \
    }

/* col2im of channels c .. c+nch-1 of one image (img) from its columns col
 * (column rows ldcol apart), plus each channel's bias (NULL: none, as
 * im2col.c adds it); col_end bounds what may be read. Each pixel
 * row sums the (ky, oy) that read it in ky order: ky = yp mod SH + m SH at
 * oy = yp / SH - m, with yp / SH and yp mod SH kept as yp grows (no
 * division). Rows are written in order as whole vectors while they end
 * inside the plane (the next row overwrites the rest), the last float by
 * float. */
CVI_AVX512_ATTR void cvi_col2im_vec_channels(float *img, const float *col, size_t c, size_t nch,
                                             const cvi_conv_geom *g, size_t ldcol,
                                             const float *col_end, const float *bias,
                                             int relu)
{
    const size_t H = g->H, W = g->W, KH = g->KH, SH = g->SH, PH = g->PH, OH = g->OH,
                 ow = g->OW;
    int32_t masks[2][4][16];
    m16 mk[2][4];
    size_t ch, iy, v, kx;
    m16 mk01, mk23;
    const v16 zero = {0};
    seg_masks(masks, g);
    for (v = 0; v < 2; v++)
        for (kx = 0; kx < 4; kx++)
            memcpy(&mk[v][kx], masks[v][kx], sizeof mk[v][kx]);
    mk01 = mk[0][0] | mk[0][1]; /* disjoint: a pixel's parity picks the tap */
    mk23 = mk[0][2] | mk[0][3];
    /* A row's whole vectors may reach into the next plane of the call's
     * block, whose first row is written after it; not past the block,
     * which another thread may be writing. */
    float *block_end = img + (c + nch) * H * W;
    for (ch = c; ch < c + nch; ch++) {
        float *plane = img + ch * H * W;
        const float *rows = col + ch * KH * 4 * ldcol;
        size_t quot = PH / SH, rem = PH % SH; /* of yp = iy + PH */
        const float b = bias ? bias[ch] : 0.0f;
        const v16 bv = {b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b};
        for (iy = 0; iy < H; iy++) {
            float *dst = plane + iy * W;
            v16 s0 = {0}, s1 = {0};
            size_t ky = rem, oy = quot;
            for (; ky < KH; ky += SH, oy--) {
                const float *seg = rows + ky * 4 * ldcol + oy * ow;
                if (oy < OH) {
                    if (W <= 16) {
                        /* Taps 0 and 1 read odd and even pixels, as do 2
                         * and 3: one vector per pair of taps, every pixel
                         * taking the one tap of the pair that reads it. */
                        LOAD_TAPS(v8, 8)
                        s0 += (v16)((m16)__builtin_shufflevector(t0, t1, TAP_PAIR_LANES(0)) &
                                    mk01);
                        s0 += (v16)((m16)__builtin_shufflevector(t2, t3, TAP_PAIR_LANES(2)) &
                                    mk23);
                    } else {
                        LOAD_TAPS(v16, 16)
                        ADD_TAP(s0, t0, 0, 0, 15);
                        ADD_TAP(s1, t0, 0, 1, 15);
                        ADD_TAP(s0, t1, 1, 0, 15);
                        ADD_TAP(s1, t1, 1, 1, 15);
                        ADD_TAP(s0, t2, 2, 0, 15);
                        ADD_TAP(s1, t2, 2, 1, 15);
                        ADD_TAP(s0, t3, 3, 0, 15);
                        ADD_TAP(s1, t3, 3, 1, 15);
                    }
                }
                if (oy == 0)
                    break;
            }
            s0 += bv;
            s1 += bv;
            if (relu) { /* x > 0 ? x : 0, as relu computes it */
                s0 = (v16)((m16)(s0 > zero) & (m16)s0);
                s1 = (v16)((m16)(s1 > zero) & (m16)s1);
            }
            if ((size_t)(block_end - dst) >= (W > 16 ? 32u : 16u)) { /* inside the block */
                memcpy(dst, &s0, sizeof s0);
                if (W > 16)
                    memcpy(dst + 16, &s1, sizeof s1);
            } else {
                float t_[32];
                memcpy(t_, &s0, sizeof s0);
                memcpy(t_ + 16, &s1, sizeof s1);
                store_part(dst, t_, W);
            }
            if (++rem == SH) {
                rem = 0;
                quot++;
            }
        }
    }
}

/* ---- AVX2: 8 floats a vector ----
 * The same loops cut to 8-lane vectors, whose permutes of two sources AVX2
 * does in a few instructions (the 16-lane code above, compiled for AVX2,
 * ran slower than the tables: a 32-lane source has no AVX2 permute). A
 * segment is 1 or 2 vectors (OW <= 16), a row of pixels 1 to 4. Loads and
 * stores go through a may_alias type of 4-byte alignment: gcc 12 splits a
 * 32-byte memcpy into halves for AVX2. */
typedef float f8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t i8 __attribute__((vector_size(32)));
#define LD8(p) (*(const f8 *)(const void *)(p))
#define ST8(p, v) (*(f8 *)(void *)(p) = (v))
#define MASK8(v, m) ((f8)((i8)(v) & (m)))

/* Output vector v of the four taps of one output row, from input vectors lo
 * and hi (columns 16 v .. 16 v + 15), prev (the 8 before: zero for v = 0)
 * and next (the 8 after), stored at d (masked; whole while the vector ends
 * inside the image's P positions: the next output row overwrites the rest).
 * Tap 1 reads the even columns (2 ox), tap 2 the odd (2 ox + 1), tap 3 the
 * even shifted one lane (2 ox + 2), tap 0 the odd shifted the other way
 * (2 ox - 1). */
#define IM2COL8_OUT(v, lo, hi, prev, next)                                                         \
    do {                                                                                           \
        f8 even_ = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);                     \
        f8 odd_ = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);                      \
        f8 t0_ = MASK8(__builtin_shufflevector(prev, odd_, 7, 8, 9, 10, 11, 12, 13, 14), mk[v][0]); \
        f8 t1_ = MASK8(even_, mk[v][1]), t2_ = MASK8(odd_, mk[v][2]);                              \
        f8 t3_ = MASK8(__builtin_shufflevector(even_, next, 1, 2, 3, 4, 5, 6, 7, 8), mk[v][3]);    \
        float *at_ = d + 8 * (v);                                                                  \
        if (oy * ow + 8 * (v) + 8 <= P) {                                                          \
            ST8(at_, t0_);                                                                         \
            ST8(at_ + ldcol, t1_);                                                                 \
            ST8(at_ + 2 * ldcol, t2_);                                                             \
            ST8(at_ + 3 * ldcol, t3_);                                                             \
        } else {                                                                                   \
            float part_[4][8];                                                                     \
            size_t n_ = ow - 8 * (v) < 8 ? ow - 8 * (v) : 8, k_;                                   \
            ST8(part_[0], t0_);                                                                    \
            ST8(part_[1], t1_);                                                                    \
            ST8(part_[2], t2_);                                                                    \
            ST8(part_[3], t3_);                                                                    \
            for (k_ = 0; k_ < 4; k_++)                                                             \
                store_part(at_ + k_ * ldcol, part_[k_], n_);                                       \
        }                                                                                          \
    } while (0)

/* im2col on AVX2: input row yp as vectors a0 .. a3 (those past the row
 * zero), then the output row's one or two vectors of each tap. */
CVI_AVX2_ATTR void cvi_im2col_avx2_channels(float *col, const float *img, size_t c, size_t nch,
                                            const cvi_conv_geom *g, size_t ldcol,
                                            const float *imgs_end)
{
    const size_t H = g->H, W = g->W, KH = g->KH, SH = g->SH, PH = g->PH, OH = g->OH,
                 ow = g->OW, P = OH * ow, na = (W + 7) / 8;
    const f8 zero = {0};
    int32_t masks[4][16];
    i8 mk[2][4]; /* in_masks' lanes 8 v .. 8 v + 7 of tap kx */
    size_t ch, ky, oy, v, kx;
    in_masks(masks, g);
    for (v = 0; v < 2; v++)
        for (kx = 0; kx < 4; kx++)
            memcpy(&mk[v][kx], masks[kx] + 8 * v, sizeof mk[v][kx]);
    for (ch = c; ch < c + nch; ch++) {
        const float *plane = img + ch * H * W;
        PREFETCH_NEXT_PLANE();
        for (ky = 0; ky < KH; ky++) {
            float *d = col + (ch * KH + ky) * 4 * ldcol;
            size_t yp = ky;
            for (oy = 0; oy < OH; oy++, yp += SH, d += ow) {
                f8 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
                if (yp >= PH && yp - PH < H) {
                    const float *src = plane + (yp - PH) * W;
                    float row[32];
                    if ((size_t)(imgs_end - src) < 8 * na) { /* the end of the images */
                        memset(row, 0, sizeof row);
                        memcpy(row, src, W * sizeof *row);
                        src = row;
                    }
                    a0 = LD8(src);
                    if (na > 1)
                        a1 = LD8(src + 8);
                    if (na > 2)
                        a2 = LD8(src + 16);
                    if (na > 3)
                        a3 = LD8(src + 24);
                }
                IM2COL8_OUT(0, a0, a1, zero, a2);
                if (ow > 8)
                    IM2COL8_OUT(1, a2, a3, a1, zero);
            }
        }
    }
}

/* Pixel vector u (pixels 8 u .. 8 u + 7) of a row: s += taps 0 and 1 as one
 * vector, then taps 2 and 3 as another, as the 16-lane code does: even
 * pixel x from tap 1's lane x / 2 and tap 3's x / 2 - 1, odd pixel x from
 * tap 0's (x + 1) / 2 and tap 2's (x - 1) / 2. Those are lanes 4 u ..
 * 4 u + 4 of the segments, read as 8 from 4 u (tap 3's from 4 u - 1). */
#define COL2IM8_ADD(s, u)                                                                          \
    do {                                                                                           \
        const float *at_ = seg + 4 * (u);                                                          \
        f8 t0_ = LD8(at_), t1_ = LD8(at_ + ld), t2_ = LD8(at_ + 2 * ld), t3_;                      \
        if (u)                                                                                     \
            t3_ = LD8(at_ + 3 * ld - 1);                                                           \
        else                                                                                       \
            t3_ = __builtin_shufflevector(zero, LD8(at_ + 3 * ld), 7, 8, 9, 10, 11, 12, 13, 14);   \
        s += MASK8(__builtin_shufflevector(t1_, t0_, 0, 9, 1, 10, 2, 11, 3, 12), mk01[u]);         \
        s += MASK8(__builtin_shufflevector(t3_, t2_, 0, 8, 1, 9, 2, 10, 3, 11), mk23[u]);          \
    } while (0)

/* Bias, then relu's x > 0 ? x : 0 when asked, on sum s. */
#define COL2IM8_END(s)                                                                             \
    do {                                                                                           \
        s += bv;                                                                                   \
        if (relu)                                                                                  \
            s = MASK8(s, (i8)(s > zero));                                                          \
    } while (0)

/* col2im on AVX2, rows of 1 to 4 vectors. */
CVI_AVX2_ATTR void cvi_col2im_avx2_channels(float *img, const float *col, size_t c, size_t nch,
                                            const cvi_conv_geom *g, size_t ldcol,
                                            const float *col_end, const float *bias, int relu)
{
    const size_t H = g->H, W = g->W, KH = g->KH, SH = g->SH, PH = g->PH, OH = g->OH,
                 ow = g->OW, nu = (W + 7) / 8;
    const f8 zero = {0};
    i8 mk01[4], mk23[4];
    size_t ch, iy, u, q;
    float *block_end = img + (c + nch) * H * W;
    for (u = 0; u < 4; u++) /* for each pixel, the one tap of each pair that can read it */
        for (q = 0; q < 8; q++) {
            size_t x = 8 * u + q;
            mk01[u][q] = tap_reads(g, x, x % 2 ? 0 : 1) ? -1 : 0;
            mk23[u][q] = tap_reads(g, x, x % 2 ? 2 : 3) ? -1 : 0;
        }
    for (ch = c; ch < c + nch; ch++) {
        float *plane = img + ch * H * W;
        const float *rows = col + ch * KH * 4 * ldcol;
        size_t quot = PH / SH, rem = PH % SH; /* of yp = iy + PH */
        const float b = bias ? bias[ch] : 0.0f;
        const f8 bv = {b, b, b, b, b, b, b, b};
        for (iy = 0; iy < H; iy++) {
            float *dst = plane + iy * W;
            f8 s0 = zero, s1 = zero, s2 = zero, s3 = zero;
            size_t ky = rem, oy = quot;
            for (; ky < KH; ky += SH, oy--) {
                if (oy < OH) {
                    const float *seg = rows + ky * 4 * ldcol + oy * ow;
                    size_t ld = ldcol;
                    float near_end[4][20];
                    if ((size_t)(col_end - seg) < 3 * ldcol + 4 * nu + 4) {
                        /* the last column rows: what is left of them */
                        memset(near_end, 0, sizeof near_end);
                        for (q = 0; q < 4; q++) {
                            size_t left = (size_t)(col_end - (seg + q * ldcol));
                            store_part(near_end[q], seg + q * ldcol, left < 20 ? left : 20);
                        }
                        seg = near_end[0];
                        ld = 20;
                    }
                    COL2IM8_ADD(s0, 0);
                    if (nu > 1)
                        COL2IM8_ADD(s1, 1);
                    if (nu > 2)
                        COL2IM8_ADD(s2, 2);
                    if (nu > 3)
                        COL2IM8_ADD(s3, 3);
                }
                if (oy == 0)
                    break;
            }
            COL2IM8_END(s0);
            COL2IM8_END(s1);
            COL2IM8_END(s2);
            COL2IM8_END(s3);
            if ((size_t)(block_end - dst) >= 8 * nu) { /* inside the block */
                ST8(dst, s0);
                if (nu > 1)
                    ST8(dst + 8, s1);
                if (nu > 2)
                    ST8(dst + 16, s2);
                if (nu > 3)
                    ST8(dst + 24, s3);
            } else {
                float t_[32];
                ST8(t_, s0);
                ST8(t_ + 8, s1);
                ST8(t_ + 16, s2);
                ST8(t_ + 24, s3);
                store_part(dst, t_, W);
            }
            if (++rem == SH) {
                rem = 0;
                quot++;
            }
        }
    }
}

#else /* no vector path: im2col.c's loops run */

int cvi_im2col_vec_fits(const cvi_conv_geom *g)
{
    (void)g;
    return 0;
}

void cvi_im2col_vec_channels(float *col, const float *img, size_t c, size_t nch,
                             const cvi_conv_geom *g, size_t ldcol, const float *imgs_end)
{
    (void)col, (void)img, (void)c, (void)nch, (void)g, (void)ldcol, (void)imgs_end;
}

void cvi_col2im_vec_channels(float *img, const float *col, size_t c, size_t nch,
                             const cvi_conv_geom *g, size_t ldcol, const float *col_end,
                             const float *bias, int relu)
{
    (void)img, (void)col, (void)c, (void)nch, (void)g, (void)ldcol, (void)col_end, (void)bias;
    (void)relu;
}

/* Never called (nothing fits): the AVX2 loops are absent too. */
void cvi_im2col_avx2_channels(float *col, const float *img, size_t c, size_t nch,
                              const cvi_conv_geom *g, size_t ldcol, const float *imgs_end)
{
    (void)col, (void)img, (void)c, (void)nch, (void)g, (void)ldcol, (void)imgs_end;
}

void cvi_col2im_avx2_channels(float *img, const float *col, size_t c, size_t nch,
                              const cvi_conv_geom *g, size_t ldcol, const float *col_end,
                              const float *bias, int relu)
{
    (void)img, (void)col, (void)c, (void)nch, (void)g, (void)ldcol, (void)col_end, (void)bias;
    (void)relu;
}

#endif
