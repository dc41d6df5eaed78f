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

#include <string.h>

/* The output columns ox whose input column ox*SW + kx - PW falls inside
 * [0, W): [*lo, *hi). Splitting the row there leaves the copy loops without
 * a bounds test per pixel. */
static void valid_columns(const cvi_conv_geom *g, size_t kx, size_t *lo, size_t *hi)
{
    size_t first = kx >= g->PW ? 0 : (g->PW - kx + g->SW - 1) / g->SW;
    size_t end = g->W + g->PW > kx ? (g->W + g->PW - kx + g->SW - 1) / g->SW : 0;
    if (end > g->OW)
        end = g->OW;
    if (first > end)
        first = end;
    *lo = first;
    *hi = end;
}

void cvi_im2col(float *col, size_t ldcol, const float *img, const cvi_conv_geom *g)
{
    size_t c, ky, kx, oy, ox, lo, hi;
    const ptrdiff_t H = (ptrdiff_t)g->H, W = (ptrdiff_t)g->W;
    for (c = 0; c < g->C; c++) {
        const float *plane = img + c * g->H * g->W;
        for (ky = 0; ky < g->KH; ky++) {
            for (kx = 0; kx < g->KW; kx++) {
                valid_columns(g, kx, &lo, &hi);
                for (oy = 0; oy < g->OH; oy++) {
                    ptrdiff_t iy = (ptrdiff_t)(oy * g->SH + ky) - (ptrdiff_t)g->PH;
                    float *dst = col + oy * g->OW;
                    const float *src;
                    if (iy < 0 || iy >= H || lo == hi) {
                        memset(dst, 0, g->OW * sizeof(float));
                        continue;
                    }
                    src = plane + iy * W + (ptrdiff_t)(lo * g->SW + kx) - (ptrdiff_t)g->PW;
                    for (ox = 0; ox < lo; ox++)
                        dst[ox] = 0.0f;
                    for (ox = lo; ox < hi; ox++)
                        dst[ox] = src[(ox - lo) * g->SW];
                    for (ox = hi; ox < g->OW; ox++)
                        dst[ox] = 0.0f;
                }
                col += ldcol;
            }
        }
    }
}

void cvi_col2im_add(float *img, const float *col, size_t ldcol, const cvi_conv_geom *g)
{
    size_t c, ky, kx, oy, ox, lo, hi;
    const ptrdiff_t H = (ptrdiff_t)g->H, W = (ptrdiff_t)g->W;
    for (c = 0; c < g->C; c++) {
        float *plane = img + c * g->H * g->W;
        for (ky = 0; ky < g->KH; ky++) {
            for (kx = 0; kx < g->KW; kx++) {
                valid_columns(g, kx, &lo, &hi);
                for (oy = 0; oy < g->OH; oy++) {
                    ptrdiff_t iy = (ptrdiff_t)(oy * g->SH + ky) - (ptrdiff_t)g->PH;
                    const float *src = col + oy * g->OW;
                    float *dst;
                    if (iy < 0 || iy >= H || lo == hi)
                        continue;
                    dst = plane + iy * W + (ptrdiff_t)(lo * g->SW + kx) - (ptrdiff_t)g->PW;
                    for (ox = lo; ox < hi; ox++)
                        dst[(ox - lo) * g->SW] += src[ox];
                }
                col += ldcol;
            }
        }
    }
}

void cvi_im2col_batch(float *col, const float *imgs, size_t n, const cvi_conv_geom *g,
                      int threads)
{
    size_t P = g->OH * g->OW, image = g->C * g->H * g->W;
    ptrdiff_t i;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && n > 1)
#endif
    for (i = 0; i < (ptrdiff_t)n; i++)
        cvi_im2col(col + (size_t)i * P, n * P, imgs + (size_t)i * image, g);
}

void cvi_col2im_batch(float *imgs, const float *col, size_t n, const cvi_conv_geom *g,
                      int threads)
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
        cvi_col2im_add(img, col + (size_t)i * P, n * P, g);
    }
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
