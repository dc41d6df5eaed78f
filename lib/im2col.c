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
 * 64-byte aligned: gather (int32), start (int32), from (int64). */
static size_t part_floats(size_t bytes)
{
    return (bytes / sizeof(float) + 15) / 16 * 16;
}

size_t cvi_conv_tables_floats(const cvi_conv_geom *g)
{
    size_t taps_p = g->KH * g->KW * g->OH * g->OW;
    return part_floats(taps_p * sizeof(int32_t)) +
           part_floats((g->H * g->W + 1) * sizeof(int32_t)) +
           part_floats(taps_p * sizeof(int64_t));
}

void cvi_conv_tables_build(cvi_conv_tables *t, float *mem, const cvi_conv_geom *g, size_t ldcol)
{
    size_t P = g->OH * g->OW, taps_p = g->KH * g->KW * P, pixels = g->H * g->W, e, q;
    int32_t *gather = (int32_t *)mem, *start;
    int64_t *from;
    mem += part_floats(taps_p * sizeof(int32_t));
    start = (int32_t *)mem;
    mem += part_floats((pixels + 1) * sizeof(int32_t));
    from = (int64_t *)mem;
    gather_table(gather, g);
    /* A counting sort of the (tap, position) pairs by the pixel they read;
     * scanning in tap order keeps each pixel's list in tap order, the order
     * in which a scatter would have added them. */
    for (q = 0; q <= pixels; q++)
        start[q] = 0;
    for (e = 0; e < taps_p; e++)
        if (gather[e] >= 0)
            start[gather[e] + 1]++;
    for (q = 0; q < pixels; q++)
        start[q + 1] += start[q];
    for (e = 0; e < taps_p; e++)
        if (gather[e] >= 0) /* start[pixel] counts up to the next pixel's start */
            from[start[gather[e]]++] = (int64_t)((e / P) * ldcol + e % P);
    for (q = pixels; q > 0; q--) /* and back to each pixel's own start */
        start[q] = start[q - 1];
    start[0] = 0;
    t->gather = gather;
    t->start = start;
    t->from = from;
    t->ldcol = ldcol;
}

/* im2col of channel c of one image: one flat loop over the P positions per
 * column row. */
static void im2col_channel(float *col, const float *img, size_t c, const cvi_conv_geom *g,
                           const cvi_conv_tables *t)
{
    size_t k, p, P = g->OH * g->OW, taps = g->KH * g->KW;
    const float *plane = img + c * g->H * g->W;
    for (k = 0; k < taps; k++) {
        const int32_t *ix = t->gather + k * P;
        float *dst = col + (c * taps + k) * t->ldcol;
        for (p = 0; p < P; p++)
            dst[p] = ix[p] >= 0 ? plane[ix[p]] : 0.0f;
    }
}

/* col2im of channel c of one image as a gather: each pixel sums the column
 * entries that read it, in tap order, and is written once (no
 * read-modify-write chains, no zeroing first). */
static void col2im_channel(float *img, const float *col, size_t c, const cvi_conv_geom *g,
                           const cvi_conv_tables *t)
{
    size_t q, pixels = g->H * g->W, taps = g->KH * g->KW;
    float *plane = img + c * pixels;
    const float *base = col + c * taps * t->ldcol;
    for (q = 0; q < pixels; q++) {
        float sum = 0.0f;
        int32_t e;
        for (e = t->start[q]; e < t->start[q + 1]; e++)
            sum += base[t->from[e]];
        plane[q] = sum;
    }
}

/* Both spread the n * C (image, channel) pairs over the threads: channels
 * are independent in both directions, and a group may hold fewer images
 * than there are threads. */
void cvi_im2col_batch(float *col, const float *imgs, size_t n, const cvi_conv_geom *g,
                      const cvi_conv_tables *t, int threads)
{
    size_t P = g->OH * g->OW, image = g->C * g->H * g->W;
    ptrdiff_t w, work = (ptrdiff_t)(n * g->C);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && work > 1)
#endif
    for (w = 0; w < work; w++) {
        size_t i = (size_t)w / g->C, c = (size_t)w % g->C;
        im2col_channel(col + i * P, imgs + i * image, c, g, t);
    }
}

void cvi_col2im_batch(float *imgs, const float *col, size_t n, const cvi_conv_geom *g,
                      const cvi_conv_tables *t, int threads)
{
    size_t P = g->OH * g->OW, image = g->C * g->H * g->W;
    ptrdiff_t w, work = (ptrdiff_t)(n * g->C);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && work > 1)
#endif
    for (w = 0; w < work; w++) {
        size_t i = (size_t)w / g->C, c = (size_t)w % g->C;
        col2im_channel(imgs + i * image, col + i * P, c, g, t);
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
                        cvi_conv_tables *t)
{
    size_t P = hp->geom.OH * hp->geom.OW;
    cvi_conv_tables_build(t, scratch, &hp->geom, groups_images(hp, max_batch) * P);
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
