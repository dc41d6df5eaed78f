/*
 * im2col.c - builds and scatters convolution columns for any kernel size,
 * per-axis stride and zero padding. It neither multiplies nor dilates.
 *
 * Column row r = (c*KH + ky)*KW + kx holds, for every output position
 * (oy, ox), the input pixel (c, oy*SH - PH + ky, ox*SW - PW + kx), or 0 where
 * that falls in the padding; rows are ldcol floats apart, so that the columns
 * of a batch of images can sit side by side. col2im is the adjoint: the same loops, adding
 * where im2col copies, so conv backward and conv_transpose forward share it.
 */
#include "cvae_internal.h"

#include <stdint.h>
#include <string.h>

/* gather[t][p]: the plane offset tap t reads at output position p, or -1. */
static void gather_table(int32_t *gather, const cvi_conv_geom *g)
{
    size_t ky, kx, oy, ox;
    for (ky = 0; ky < g->KH; ky++)
        for (kx = 0; kx < g->KW; kx++)
            for (oy = 0; oy < g->OH; oy++)
                for (ox = 0; ox < g->OW; ox++) {
                    ptrdiff_t iy = (ptrdiff_t)(oy * g->SH + ky) - (ptrdiff_t)g->PH;
                    ptrdiff_t ix = (ptrdiff_t)(ox * g->SW + kx) - (ptrdiff_t)g->PW;
                    int inside = iy >= 0 && iy < (ptrdiff_t)g->H && ix >= 0 && ix < (ptrdiff_t)g->W;
                    *gather++ = inside ? (int32_t)(iy * (ptrdiff_t)g->W + ix) : -1;
                }
}

/* Floats of each part, rounded to 16 floats so that every part stays
 * 64-byte aligned: gather (int32), then the int64 parts of col2im's list. */
static size_t part_floats(size_t bytes)
{
    return (bytes / sizeof(float) + 15) / 16 * 16;
}

size_t cvi_conv_tables_floats(const cvi_conv_geom *g)
{
    size_t taps = g->KH * g->KW, taps_p = taps * g->OH * g->OW, pixels = g->H * g->W;
    return part_floats(taps_p * sizeof(int32_t)) + part_floats(pixels * sizeof(int64_t)) +
           part_floats(2 * (taps + 1) * sizeof(int64_t)) +
           part_floats((pixels + taps_p) * sizeof(int64_t));
}

void cvi_conv_tables_build(cvi_conv_tables *t, float *mem, const cvi_conv_geom *g, size_t ldcol)
{
    size_t P = g->OH * g->OW, taps = g->KH * g->KW, taps_p = taps * P, pixels = g->H * g->W;
    size_t e, q, k, at;
    int32_t *gather = (int32_t *)mem;
    int64_t *cursor, *class_pixels, *class_at, *list;
    mem += part_floats(taps_p * sizeof(int32_t));
    cursor = (int64_t *)mem;
    mem += part_floats(pixels * sizeof(int64_t));
    class_pixels = (int64_t *)mem;
    class_at = class_pixels + taps + 1;
    mem += part_floats(2 * (taps + 1) * sizeof(int64_t));
    list = (int64_t *)mem;
    gather_table(gather, g);
    /* How many entries read each pixel (at most one per tap), and how many
     * pixels are read by k entries. */
    for (q = 0; q < pixels; q++)
        cursor[q] = 0;
    for (e = 0; e < taps_p; e++)
        if (gather[e] >= 0)
            cursor[gather[e]]++;
    for (k = 0; k <= taps; k++)
        class_pixels[k] = 0;
    for (q = 0; q < pixels; q++)
        class_pixels[cursor[q]]++;
    /* Each pixel's record (the pixel, then its entries) goes after the
     * records of every smaller class and of the smaller pixels of its own:
     * the class-k records start where classes 0 .. k-1 end. */
    for (k = 0, at = 0; k <= taps; k++) {
        class_at[k] = (int64_t)at;
        at += (size_t)class_pixels[k] * (k + 1);
    }
    for (q = 0; q < pixels; q++) {
        k = (size_t)cursor[q];
        at = (size_t)class_at[k];
        class_at[k] += (int64_t)(k + 1);
        list[at] = (int64_t)q;
        cursor[q] = (int64_t)(at + 1); /* where its next entry goes */
    }
    /* Entries in tap order, so that each pixel sums them in that order. */
    for (e = 0; e < taps_p; e++)
        if (gather[e] >= 0)
            list[cursor[gather[e]]++] = (int64_t)((e / P) * ldcol + e % P);
    t->gather = gather;
    t->class_pixels = class_pixels;
    t->list = list;
    t->ldcol = ldcol;
}

/* Channels taken together by im2col and col2im: each entry of their
 * tables (and im2col's test for the padding) then serves four channels. */
#define IM2COL_CHANNELS 4

/* im2col of channels c .. c+nch-1 (nch <= IM2COL_CHANNELS) of one image:
 * one flat loop over the P positions per column row. */
static void im2col_channels(float *col, const float *img, size_t c, size_t nch,
                            const cvi_conv_geom *g, const cvi_conv_tables *t)
{
    size_t k, p, q, P = g->OH * g->OW, taps = g->KH * g->KW, pixels = g->H * g->W;
    size_t rows = taps * t->ldcol; /* from one channel's column row to the next's */
    const float *plane = img + c * pixels;
    for (k = 0; k < taps; k++) {
        const int32_t *ix = t->gather + k * P;
        float *dst = col + (c * taps + k) * t->ldcol;
        if (nch == IM2COL_CHANNELS) {
            for (p = 0; p < P; p++) {
                int32_t at = ix[p];
                if (at >= 0)
                    for (q = 0; q < IM2COL_CHANNELS; q++)
                        dst[q * rows + p] = plane[q * pixels + (size_t)at];
                else
                    for (q = 0; q < IM2COL_CHANNELS; q++)
                        dst[q * rows + p] = 0.0f;
            }
            continue;
        }
        for (q = 0; q < nch; q++)
            for (p = 0; p < P; p++)
                dst[q * rows + p] = ix[p] >= 0 ? plane[q * pixels + (size_t)ix[p]] : 0.0f;
    }
}

/* col2im of channels c .. c+nch-1 of one image as a gather: each pixel
 * sums the column entries that read it, in tap order from 0.0f, adds its
 * channel's bias (0.0f without: the sum is never -0.0f, so that changes
 * nothing) and is written once (no read-modify-write chains, no zeroing
 * first). The pixels
 * come class by class, so that the loop over a pixel's entries has the same
 * length for long runs (its exits predicted), and the common lengths are
 * unrolled; each record of the list serves nch channels. Inlined with nch a
 * constant, the channel loops unroll too. */
static inline void col2im_channels(float *img, const float *col, size_t c, size_t nch,
                                   const cvi_conv_geom *g, const cvi_conv_tables *t,
                                   const float *bias)
{
    size_t k, n, j, q, taps = g->KH * g->KW, pixels = g->H * g->W, rows = taps * t->ldcol;
    float *plane = img + c * pixels;
    const float *base = col + c * rows;
    const int64_t *r = t->list;
    float bq[IM2COL_CHANNELS] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (q = 0; q < nch && bias; q++)
        bq[q] = bias[c + q];
    for (k = 0; k <= taps; k++) {
        size_t count = (size_t)t->class_pixels[k];
        switch (k) {
        case 0:
            for (n = 0; n < count; n++, r += 1)
                for (q = 0; q < nch; q++)
                    plane[q * pixels + (size_t)r[0]] = 0.0f + bq[q];
            break;
        case 1:
            for (n = 0; n < count; n++, r += 2)
                for (q = 0; q < nch; q++)
                    plane[q * pixels + (size_t)r[0]] = (0.0f + base[q * rows + (size_t)r[1]]) + bq[q];
            break;
        case 2:
            for (n = 0; n < count; n++, r += 3)
                for (q = 0; q < nch; q++) {
                    const float *b = base + q * rows;
                    float s = 0.0f + b[r[1]];
                    plane[q * pixels + (size_t)r[0]] = (s + b[r[2]]) + bq[q];
                }
            break;
        case 4:
            for (n = 0; n < count; n++, r += 5)
                for (q = 0; q < nch; q++) {
                    const float *b = base + q * rows;
                    float s = 0.0f + b[r[1]];
                    s += b[r[2]];
                    s += b[r[3]];
                    plane[q * pixels + (size_t)r[0]] = (s + b[r[4]]) + bq[q];
                }
            break;
        default:
            for (n = 0; n < count; n++, r += k + 1)
                for (q = 0; q < nch; q++) {
                    const float *b = base + q * rows;
                    float s = 0.0f;
                    for (j = 1; j <= k; j++)
                        s += b[r[j]];
                    plane[q * pixels + (size_t)r[0]] = s + bq[q];
                }
            break;
        }
    }
}

/* Which vector loops of im2col_vec.c serve this geometry on the variant
 * env runs (the multiply's): VEC_NONE (the tables), VEC_AVX2 or VEC_AVX512. */
enum { VEC_NONE, VEC_AVX2, VEC_AVX512 };
static int use_vec(const cvi_conv_geom *g, const cvi_gemm_env *env)
{
    cvi_gemm_path p = env->path == CVI_GEMM_PATH_AUTO ? cvi_gemm_path_best() : env->path;
    if (!cvi_im2col_vec_fits(g))
        return VEC_NONE;
    return p == CVI_GEMM_PATH_AVX512 ? VEC_AVX512 : p == CVI_GEMM_PATH_AVX2 ? VEC_AVX2 : VEC_NONE;
}

/* Both spread the images' channels over the threads in blocks of
 * IM2COL_CHANNELS: channels are independent in both directions, and a
 * group may hold fewer images than there are threads. */
void cvi_im2col_batch(float *col, const float *imgs, size_t n, const cvi_conv_geom *g,
                      const cvi_conv_tables *t, const cvi_gemm_env *env)
{
    size_t P = g->OH * g->OW, image = g->C * g->H * g->W;
    size_t blocks = (g->C + IM2COL_CHANNELS - 1) / IM2COL_CHANNELS;
    ptrdiff_t w, work = (ptrdiff_t)(n * blocks);
    int threads = env->threads, vec = use_vec(g, env);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && work > 1)
#endif
    for (w = 0; w < work; w++) {
        size_t i = (size_t)w / blocks, c = (size_t)w % blocks * IM2COL_CHANNELS;
        size_t nch = g->C - c < IM2COL_CHANNELS ? g->C - c : IM2COL_CHANNELS;
        if (vec == VEC_AVX512)
            cvi_im2col_vec_channels(col + i * P, imgs + i * image, c, nch, g, t->ldcol,
                                    imgs + n * image);
        else if (vec == VEC_AVX2)
            cvi_im2col_avx2_channels(col + i * P, imgs + i * image, c, nch, g, t->ldcol,
                                     imgs + n * image);
        else
            im2col_channels(col + i * P, imgs + i * image, c, nch, g, t);
    }
}

/* x = x > 0 ? x : 0 over n floats: relu's own expression, so its bits. */
static void relu_floats(float *x, size_t n)
{
    size_t q;
    for (q = 0; q < n; q++)
        x[q] = x[q] > 0.0f ? x[q] : 0.0f;
}

void cvi_col2im_batch(float *imgs, const float *col, size_t n, const cvi_conv_geom *g,
                      const cvi_conv_tables *t, const float *bias, int relu,
                      const cvi_gemm_env *env)
{
    size_t P = g->OH * g->OW, image = g->C * g->H * g->W;
    size_t blocks = (g->C + IM2COL_CHANNELS - 1) / IM2COL_CHANNELS;
    const float *col_end = col + g->C * g->KH * g->KW * t->ldcol;
    ptrdiff_t w, work = (ptrdiff_t)(n * blocks);
    int threads = env->threads, vec = use_vec(g, env);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && work > 1)
#endif
    for (w = 0; w < work; w++) {
        size_t i = (size_t)w / blocks, c = (size_t)w % blocks * IM2COL_CHANNELS;
        size_t nch = g->C - c < IM2COL_CHANNELS ? g->C - c : IM2COL_CHANNELS;
        if (vec == VEC_AVX512) {
            cvi_col2im_vec_channels(imgs + i * image, col + i * P, c, nch, g, t->ldcol, col_end,
                                    bias, relu);
            continue;
        }
        if (vec == VEC_AVX2) {
            cvi_col2im_avx2_channels(imgs + i * image, col + i * P, c, nch, g, t->ldcol,
                                     col_end, bias, relu);
            continue;
        }
        if (nch == IM2COL_CHANNELS)
            col2im_channels(imgs + i * image, col + i * P, c, IM2COL_CHANNELS, g, t, bias);
        else
            col2im_channels(imgs + i * image, col + i * P, c, nch, g, t, bias);
        if (relu) /* the block's planes, still in cache */
            relu_floats(imgs + i * image + c * g->H * g->W, nch * g->H * g->W);
    }
}

/* Images per group in a call of a layer built for max_batch: the columns'
 * row stride is that many images' positions, for every group of the call. */
static size_t groups_images(const cvi_conv_hp *hp, size_t max_batch)
{
    return hp->group < max_batch ? hp->group : max_batch;
}

size_t cvi_conv_scratch_floats(const cvi_conv_hp *hp, size_t col_floats_per_image,
                               size_t max_batch)
{
    return cvi_conv_tables_floats(&hp->geom) + groups_images(hp, max_batch) * col_floats_per_image;
}

float *cvi_conv_prepare(const cvi_conv_hp *hp, size_t max_batch, float *scratch,
                        cvi_conv_tables *t, const cvi_gemm_env *env)
{
    size_t P = hp->geom.OH * hp->geom.OW, ldcol = groups_images(hp, max_batch) * P;
    if (use_vec(&hp->geom, env)) { /* its loops need no tables */
        t->gather = NULL;
        t->class_pixels = t->list = NULL;
        t->ldcol = ldcol;
    } else {
        cvi_conv_tables_build(t, scratch, &hp->geom, ldcol);
    }
    return scratch + cvi_conv_tables_floats(&hp->geom);
}

size_t cvi_conv_group(size_t col_floats_per_image)
{
    size_t group = col_floats_per_image ? CVI_COL_GROUP_FLOATS / col_floats_per_image : 1;
    return group < 1 ? 1 : group;
}

cvi_operand cvi_planes(const float *data, size_t P, size_t image)
{
    cvi_operand o;
    o.data = data;
    o.ld = P;
    o.group_cols = P;
    o.group_stride = image;
    return o;
}

/* One patch row of a transposed column from an unpadded plane: the KW taps
 * of row `row` at output column x0 (ox*SW - PW), 0 where they fall in the
 * padding. */
static void patch_row_clipped(float *dst, const float *row, ptrdiff_t x0, size_t kw, size_t w)
{
    size_t kx;
    for (kx = 0; kx < kw; kx++) {
        ptrdiff_t x = x0 + (ptrdiff_t)kx;
        dst[kx] = x >= 0 && x < (ptrdiff_t)w ? row[x] : 0.0f;
    }
}

/* KW floats from a padded plane, where no tap falls outside: the common
 * kernel widths as copies of constant length. */
static void patch_row(float *dst, const float *src, size_t kw)
{
    size_t kx;
    switch (kw) {
    case 3:
        memcpy(dst, src, 3 * sizeof *dst);
        return;
    case 4:
        memcpy(dst, src, 4 * sizeof *dst);
        return;
    case 5:
        memcpy(dst, src, 5 * sizeof *dst);
        return;
    default:
        for (kx = 0; kx < kw; kx++)
            dst[kx] = src[kx];
        return;
    }
}

size_t cvi_padded_image_floats(const cvi_conv_geom *g)
{
    return g->C * (g->H + 2 * g->PH) * (g->W + 2 * g->PW);
}

void cvi_pad_images(float *dst, const float *imgs, size_t n, const cvi_conv_geom *g)
{
    size_t hp = g->H + 2 * g->PH, wp = g->W + 2 * g->PW, planes = n * g->C, q, y;
    memset(dst, 0, planes * hp * wp * sizeof *dst);
    for (q = 0; q < planes; q++)
        for (y = 0; y < g->H; y++)
            memcpy(dst + q * hp * wp + (y + g->PH) * wp + g->PW, imgs + (q * g->H + y) * g->W,
                   g->W * sizeof *dst);
}

/* Row k of a panel is position k0 + k of the images' columns, its entries
 * the column rows j0 .. j0+cols-1: taps of whole channels, patch row by
 * patch row, when the panel starts and ends on a channel (every panel of
 * the model's convolutions: 16 or 32 columns, 16 taps), else entry by
 * entry. The values are im2col's, copied, so the product's bits are those
 * of im2col followed by the transposing pack. */
void cvi_patch_panels(const void *ctx, float *p, size_t w, size_t k0, size_t kc, size_t j0,
                      size_t cols)
{
    /* The geometry in locals: the copies (memcpy) may alias anything, so
     * fields read through a pointer would be reloaded after each one. */
    const cvi_patches *s = ctx;
    const cvi_conv_geom *g = s->g;
    const float *imgs = s->imgs;
    const size_t kh = g->KH, kw = g->KW, sh = g->SH, sw = g->SW, oh = g->OH, ow = g->OW;
    const size_t image = s->image, pad_h = s->padded ? g->PH : 0, pad_w = s->padded ? g->PW : 0;
    const size_t hs = g->H + 2 * pad_h, ws = g->W + 2 * pad_w; /* the planes read */
    const size_t taps = kh * kw, P = oh * ow, plane = hs * ws;
    const size_t c_lo = j0 / taps, c_hi = (j0 + cols) / taps;
    const ptrdiff_t ph = (ptrdiff_t)g->PH, pw = (ptrdiff_t)g->PW;
    size_t k, i = k0 / P, oy = k0 % P / ow, ox = k0 % P % ow;
    int whole = j0 % taps == 0 && cols % taps == 0;
    for (k = 0; k < kc; k++) {
        const float *img = imgs + i * image;
        /* The patch's top left corner in the planes read. */
        ptrdiff_t y0 = (ptrdiff_t)(oy * sh + pad_h) - ph, x0 = (ptrdiff_t)(ox * sw + pad_w) - pw;
        float *row = p + k * w;
        size_t j, c, ky;
        if (whole && s->padded && kh == 4 && kw == 4) { /* the common 4 x 4 kernels */
            const float *corner = img + (size_t)y0 * ws + (size_t)x0 + c_lo * plane;
            for (c = c_lo; c < c_hi; c++, corner += plane, row += 16) {
                memcpy(row, corner, 4 * sizeof *row);
                memcpy(row + 4, corner + ws, 4 * sizeof *row);
                memcpy(row + 8, corner + 2 * ws, 4 * sizeof *row);
                memcpy(row + 12, corner + 3 * ws, 4 * sizeof *row);
            }
        } else if (whole && s->padded) {
            const float *corner = img + (size_t)y0 * ws + (size_t)x0 + c_lo * plane;
            for (c = c_lo; c < c_hi; c++, corner += plane)
                for (ky = 0; ky < kh; ky++, row += kw)
                    patch_row(row, corner + ky * ws, kw);
        } else if (whole) {
            for (c = c_lo; c < c_hi; c++)
                for (ky = 0; ky < kh; ky++, row += kw) {
                    ptrdiff_t y = y0 + (ptrdiff_t)ky;
                    if (y >= 0 && y < (ptrdiff_t)hs)
                        patch_row_clipped(row, img + c * plane + (size_t)y * ws, x0, kw, ws);
                    else
                        memset(row, 0, kw * sizeof *row);
                }
        } else {
            for (j = j0; j < j0 + cols; j++) {
                size_t t = j % taps;
                ptrdiff_t y = y0 + (ptrdiff_t)(t / kw), x = x0 + (ptrdiff_t)(t % kw);
                int inside = y >= 0 && y < (ptrdiff_t)hs && x >= 0 && x < (ptrdiff_t)ws;
                row[j - j0] = inside ? img[j / taps * plane + (size_t)y * ws + (size_t)x] : 0.0f;
            }
        }
        if (++ox == ow) { /* the next position */
            ox = 0;
            if (++oy == oh) {
                oy = 0;
                i++;
            }
        }
    }
}
