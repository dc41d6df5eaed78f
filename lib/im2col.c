/*
 * im2col.c - builds and scatters convolution columns for any kernel size,
 * per-axis stride and zero padding. It neither multiplies nor dilates.
 *
 * Column row r = (c*KH + ky)*KW + kx holds, for every output position
 * (oy, ox), the input pixel (c, oy*SH - PH + ky, ox*SW - PW + kx), or 0 where
 * that falls in the padding. col2im is the adjoint: the same loops, adding
 * where im2col copies, so conv backward and conv_transpose forward share it.
 */
#include "cvae_internal.h"

#include <string.h>

void cvi_im2col(float *col, const float *img, const cvi_conv_geom *g)
{
    size_t c, ky, kx, oy, ox;
    const ptrdiff_t H = (ptrdiff_t)g->H, W = (ptrdiff_t)g->W;
    for (c = 0; c < g->C; c++) {
        const float *plane = img + c * g->H * g->W;
        for (ky = 0; ky < g->KH; ky++) {
            for (kx = 0; kx < g->KW; kx++) {
                for (oy = 0; oy < g->OH; oy++) {
                    ptrdiff_t iy = (ptrdiff_t)(oy * g->SH + ky) - (ptrdiff_t)g->PH;
                    float *dst = col + oy * g->OW;
                    if (iy < 0 || iy >= H) {
                        memset(dst, 0, g->OW * sizeof(float));
                        continue;
                    }
                    for (ox = 0; ox < g->OW; ox++) {
                        ptrdiff_t ix = (ptrdiff_t)(ox * g->SW + kx) - (ptrdiff_t)g->PW;
                        dst[ox] = (ix >= 0 && ix < W) ? plane[iy * W + ix] : 0.0f;
                    }
                }
                col += g->OH * g->OW;
            }
        }
    }
}

void cvi_col2im_add(float *img, const float *col, const cvi_conv_geom *g)
{
    size_t c, ky, kx, oy, ox;
    const ptrdiff_t H = (ptrdiff_t)g->H, W = (ptrdiff_t)g->W;
    for (c = 0; c < g->C; c++) {
        float *plane = img + c * g->H * g->W;
        for (ky = 0; ky < g->KH; ky++) {
            for (kx = 0; kx < g->KW; kx++) {
                for (oy = 0; oy < g->OH; oy++) {
                    ptrdiff_t iy = (ptrdiff_t)(oy * g->SH + ky) - (ptrdiff_t)g->PH;
                    const float *src = col + oy * g->OW;
                    if (iy < 0 || iy >= H)
                        continue;
                    for (ox = 0; ox < g->OW; ox++) {
                        ptrdiff_t ix = (ptrdiff_t)(ox * g->SW + kx) - (ptrdiff_t)g->PW;
                        if (ix >= 0 && ix < W)
                            plane[iy * W + ix] += src[ox];
                    }
                }
                col += g->OH * g->OW;
            }
        }
    }
}

int cvi_conv_is_pointwise(const cvi_conv_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PH == 0 && g->PW == 0;
}
