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

void cvi_conv_index(int32_t *idx, const cvi_conv_geom *g)
{
    size_t ky, kx, oy, ox;
    for (ky = 0; ky < g->KH; ky++)
        for (kx = 0; kx < g->KW; kx++)
            for (oy = 0; oy < g->OH; oy++)
                for (ox = 0; ox < g->OW; ox++) {
                    ptrdiff_t iy = (ptrdiff_t)(oy * g->SH + ky) - (ptrdiff_t)g->PH;
                    ptrdiff_t ix = (ptrdiff_t)(ox * g->SW + kx) - (ptrdiff_t)g->PW;
                    int inside = iy >= 0 && iy < (ptrdiff_t)g->H && ix >= 0 && ix < (ptrdiff_t)g->W;
                    *idx++ = inside ? (int32_t)(iy * (ptrdiff_t)g->W + ix) : -1;
                }
}

/* im2col of one image through the index table: one flat loop over the P
 * output positions per column row, whatever the geometry. */
static void im2col_indexed(float *col, size_t ldcol, const float *img, const cvi_conv_geom *g,
                           const int32_t *idx)
{
    size_t c, t, p, P = g->OH * g->OW, taps = g->KH * g->KW;
    for (c = 0; c < g->C; c++) {
        const float *plane = img + c * g->H * g->W;
        for (t = 0; t < taps; t++) {
            const int32_t *ix = idx + t * P;
            float *dst = col + (c * taps + t) * ldcol;
            for (p = 0; p < P; p++)
                dst[p] = ix[p] >= 0 ? plane[ix[p]] : 0.0f;
        }
    }
}

static void col2im_indexed(float *img, const float *col, size_t ldcol, const cvi_conv_geom *g,
                           const int32_t *idx)
{
    size_t c, t, p, P = g->OH * g->OW, taps = g->KH * g->KW;
    for (c = 0; c < g->C; c++) {
        float *plane = img + c * g->H * g->W;
        for (t = 0; t < taps; t++) {
            const int32_t *ix = idx + t * P;
            const float *src = col + (c * taps + t) * ldcol;
            for (p = 0; p < P; p++)
                if (ix[p] >= 0)
                    plane[ix[p]] += src[p];
        }
    }
}

void cvi_im2col_batch(float *col, const float *imgs, size_t n, const cvi_conv_geom *g,
                      const int32_t *idx, int threads)
{
    size_t P = g->OH * g->OW, image = g->C * g->H * g->W;
    ptrdiff_t i;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && n > 1)
#endif
    for (i = 0; i < (ptrdiff_t)n; i++)
        im2col_indexed(col + (size_t)i * P, n * P, imgs + (size_t)i * image, g, idx);
}

void cvi_col2im_batch(float *imgs, const float *col, size_t n, const cvi_conv_geom *g,
                      const int32_t *idx, int threads)
{
    size_t P = g->OH * g->OW, image = g->C * g->H * g->W;
    ptrdiff_t i;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && n > 1)
#endif
    for (i = 0; i < (ptrdiff_t)n; i++) {
        float *img = imgs + (size_t)i * image;
        memset(img, 0, image * sizeof(float));
        col2im_indexed(img, col + (size_t)i * P, n * P, g, idx);
    }
}

size_t cvi_conv_index_floats(const cvi_conv_geom *g)
{
    return (g->KH * g->KW * g->OH * g->OW + 15) / 16 * 16;
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
