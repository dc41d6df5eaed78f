/*
 * layer_convt2d.c - 2-d transposed convolution, as the data-gradient path of
 * conv2d run forward (matrix multiply + col2im), not a separate algorithm.
 *
 * B batch, C in channels, F out channels, HW = H*W input positions,
 * FKK = F*KH*KW. x (B,C,H,W) y (B,F,OH,OW) w (C,FKK) b (F) col (FKK,HW).
 * The geometry g describes the conv2d that maps y's shape back to x's:
 * g.C = F, g.H x g.W = OH x OW, g.OH x g.OW = H x W.
 * Forward: col = w^T x; y = col2im(col) + b.
 * Backward: db += rowsum(dy); col = im2col(dy); dw += x col^T; dx = w col.
 * Each product covers a group of images (see CVI_COL_GROUP_FLOATS).
 */
#include "cvae_internal.h"

#include <string.h>

CVAE_API cvae_status cvae_layer_create_conv_transpose2d_with(cvae_layer **out, int out_channels,
                                                             int kernel_h, int kernel_w,
                                                             int stride_h, int stride_w,
                                                             int pad_h, int pad_w,
                                                             const cvae_allocator *allocator)
{
    return cvi_conv_create(out, &cvi_conv_transpose2d_ops, out_channels, kernel_h, kernel_w,
                           stride_h, stride_w, pad_h, pad_w, allocator);
}

CVAE_API cvae_status cvae_layer_create_conv_transpose2d(cvae_layer **out, int out_channels,
                                                        int kernel_h, int kernel_w, int stride_h,
                                                        int stride_w, int pad_h, int pad_w)
{
    return cvae_layer_create_conv_transpose2d_with(out, out_channels, kernel_h, kernel_w,
                                                   stride_h, stride_w, pad_h, pad_w, NULL);
}

/* (in - 1) * stride + kernel - 2 * pad: 0 if that is not positive,
 * (size_t)-1 if it overflows. */
static size_t transposed_side(size_t in, size_t stride, size_t kernel, size_t pad)
{
    size_t span, both;
    if (cvi_mul_overflow(in - 1, stride, &span) || cvi_add_overflow(span, kernel, &span) ||
        cvi_mul_overflow(pad, 2, &both))
        return (size_t)-1;
    return span <= both ? 0 : span - both;
}

static cvae_status convt2d_bind(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                                size_t *ws_floats)
{
    cvi_conv_hp *hp = &l->hp.conv;
    cvi_conv_geom *g = &hp->geom;
    size_t oh = transposed_side(in.h, hp->sh, hp->kh, hp->ph);
    size_t ow = transposed_side(in.w, hp->sw, hp->kw, hp->pw);
    size_t fkk, hw, cols, wcount, ycount;
    if (oh == (size_t)-1 || ow == (size_t)-1) {
        cvi_set_error(l->err, "conv_transpose2d: output side of input %zux%zu overflows",
                      in.h, in.w);
        return CVAE_ERR_TOO_LARGE;
    }
    if (oh == 0 || ow == 0) {
        cvi_set_error(l->err,
                      "conv_transpose2d: input %zux%zu with kernel %zux%zu, stride %zu,%zu and "
                      "padding %zu,%zu gives an empty output",
                      in.h, in.w, hp->kh, hp->kw, hp->sh, hp->sw, hp->ph, hp->pw);
        return CVAE_ERR_SHAPE;
    }
    g->C = hp->out_channels;
    g->H = oh;
    g->W = ow;
    g->KH = hp->kh;
    g->KW = hp->kw;
    g->SH = hp->sh;
    g->SW = hp->sw;
    g->PH = hp->ph;
    g->PW = hp->pw;
    g->OH = in.h;
    g->OW = in.w;
    if (cvi_mul_overflow(hp->kh, hp->kw, &fkk) ||
        cvi_mul_overflow(fkk, hp->out_channels, &fkk) ||
        cvi_mul_overflow(in.h, in.w, &hw) || cvi_mul_overflow(fkk, hw, &cols) ||
        cvi_mul_overflow(fkk, in.c, &wcount) || cvi_mul_overflow(oh, ow, &ycount) ||
        cvi_mul_overflow(ycount, hp->out_channels, &ycount) || cols > CVI_MAX_ELEMS ||
        wcount > CVI_MAX_ELEMS || ycount > CVI_MAX_ELEMS) {
        cvi_set_error(l->err,
                      "conv_transpose2d: sizes too large (input %zux%zux%zu, %zu channels out "
                      "of %zux%zu)",
                      in.c, in.h, in.w, hp->out_channels, hp->kh, hp->kw);
        return CVAE_ERR_TOO_LARGE;
    }
    if (ycount / hp->out_channels > INT32_MAX) { /* int32 plane offsets (cvi_conv_tables) */
        cvi_set_error(l->err, "conv_transpose2d: output planes of %zux%zu pixels exceed 2^31",
                      oh, ow);
        return CVAE_ERR_TOO_LARGE;
    }
    out->c = hp->out_channels;
    out->h = oh;
    out->w = ow;
    *nparams = wcount + hp->out_channels;
    hp->group = cvi_conv_group(cols);
    /* The tables, the columns of a group, the weights packed (backward). */
    *ws_floats = cvi_conv_scratch_floats(hp, cols, l->max_batch) +
                 cvi_gemm_packed_a_floats(in.c, fkk);
    return CVAE_OK;
}

static void convt2d_init(cvae_layer *l, cvi_rng *rng)
{
    /* PyTorch takes fan_in from dimension 1 of the (in, out, kh, kw) weight. */
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t fkk = g->C * g->KH * g->KW, wcount = l->in.c * fkk;
    cvi_init_uniform_fan_in(l->params, wcount, l->params + wcount, g->C, fkk, rng);
}

/* Images are taken hp->group at a time, their columns side by side in the
 * scratch (FKK, g HW), one multiply per group (as conv2d). */
static void convt2d_forward(cvae_layer *l, float *out, const float *in, size_t n,
                            const cvi_workspace *ws)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t C = l->in.c, F = g->C, fkk = F * g->KH * g->KW, HW = g->OH * g->OW;
    size_t P = g->H * g->W, b0;
    const float *bias = l->params + C * fkk;
    cvi_conv_tables t;
    float *col = cvi_conv_prepare(&l->hp.conv, l->max_batch, ws->scratch, &t, &ws->gemm);
    for (b0 = 0; b0 < n; b0 += l->hp.conv.group) {
        size_t gn = n - b0 < l->hp.conv.group ? n - b0 : l->hp.conv.group;
        /* col = w^T x */
        cvi_gemm_call c = cvi_gemm_plain(1, 0, fkk, gn * HW, C, 1.0f, l->params, fkk, NULL, 0,
                                         0.0f, col, t.ldcol);
        c.b = cvi_planes(in + b0 * C * HW, HW, C * HW);
        cvi_gemm_ex(&ws->gemm, &c);
        cvi_col2im_batch(out + b0 * F * P, col, gn, g, &t, bias, ws->relu, &ws->gemm);
    }
}

static void convt2d_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                             const float *out, size_t n, const cvi_workspace *ws)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t C = l->in.c, F = g->C, fkk = F * g->KH * g->KW, HW = g->OH * g->OW;
    size_t P = g->H * g->W, b0;
    float *dw, *db;
    (void)out;
    cvi_layer_grad_spans(l, ws, C * fkk, &dw, &db);
    cvi_bias_grad_planes(db, dout, n, F, P, ws->gemm.threads);
    cvi_conv_tables t;
    float *col = cvi_conv_prepare(&l->hp.conv, l->max_batch, ws->scratch, &t, &ws->gemm);
    float *packed_w = col + fkk * t.ldcol; /* w for dx, packed once for every group */
    for (b0 = 0; b0 < n; b0 += l->hp.conv.group) {
        size_t gn = n - b0 < l->hp.conv.group ? n - b0 : l->hp.conv.group;
        /* dw += x (C, gn HW) col^T */
        cvi_gemm_call c = cvi_gemm_plain(0, 1, C, fkk, gn * HW, 1.0f, NULL, 0, col,
                                         t.ldcol, 1.0f, dw, fkk);
        cvi_im2col_batch(col, dout + b0 * F * P, gn, g, &t, &ws->gemm);
        c.a = cvi_planes(in + b0 * C * HW, HW, C * HW);
        cvi_gemm_ex(&ws->gemm, &c);
        if (!din)
            continue;
        /* dx = w col, written image by image */
        c = cvi_gemm_plain(0, 0, C, gn * HW, fkk, 1.0f, l->params, fkk, col, t.ldcol,
                           0.0f, din + b0 * C * HW, HW);
        if (b0 == 0)
            cvi_gemm_pack_a(&ws->gemm, &c, packed_w);
        c.a_packed = packed_w;
        c.c.group_cols = HW;
        c.c.group_stride = C * HW;
        cvi_gemm_ex(&ws->gemm, &c);
    }
}

const cvi_layer_ops cvi_conv_transpose2d_ops = {
    CVAE_LAYER_CONV_TRANSPOSE2D, "conv_transpose2d", convt2d_bind,
    convt2d_init,                convt2d_forward,    convt2d_backward,
    NULL,                        1};
