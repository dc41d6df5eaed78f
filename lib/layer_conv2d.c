/*
 * layer_conv2d.c - 2-d convolution by im2col + matrix multiply.
 *
 * B batch, C in channels, F filters, P = OH*OW output positions,
 * CKK = C*KH*KW. x (B,C,H,W) y (B,F,OH,OW) w (F,CKK) b (F) col (CKK,P).
 * Forward: col = im2col(x); y = w * col + b.
 * Backward: db += rowsum(dy); dw += dy * col^T; dx = col2im(w^T dy); the
 * multiply takes col^T's panels from the images' patches (cvi_patch_panels).
 * Each product covers a group of images at once (see CVI_COL_GROUP_FLOATS):
 * the multiply reads dy and writes y image by image through column groups,
 * so no activation is copied or transposed.
 * Also holds the hyper-parameter checks both convolution kinds share.
 */
#include "cvae_internal.h"

#include <string.h>

cvae_status cvi_conv_create(cvae_layer **out, const cvi_layer_ops *ops, int out_channels,
                            int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h,
                            int pad_w, const cvae_allocator *allocator)
{
    cvae_status st;
    cvae_layer *l;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (out_channels < 1 || kernel_h < 1 || kernel_w < 1 || stride_h < 1 || stride_w < 1 ||
        pad_h < 0 || pad_w < 0)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_layer_new(&l, ops, allocator)) != CVAE_OK)
        return st;
    l->hp.conv.out_channels = (size_t)out_channels;
    l->hp.conv.kh = (size_t)kernel_h;
    l->hp.conv.kw = (size_t)kernel_w;
    l->hp.conv.sh = (size_t)stride_h;
    l->hp.conv.sw = (size_t)stride_w;
    l->hp.conv.ph = (size_t)pad_h;
    l->hp.conv.pw = (size_t)pad_w;
    *out = l;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_create_conv2d_with(cvae_layer **out, int out_channels,
                                                   int kernel_h, int kernel_w, int stride_h,
                                                   int stride_w, int pad_h, int pad_w,
                                                   const cvae_allocator *allocator)
{
    return cvi_conv_create(out, &cvi_conv2d_ops, out_channels, kernel_h, kernel_w, stride_h,
                           stride_w, pad_h, pad_w, allocator);
}

CVAE_API cvae_status cvae_layer_create_conv2d(cvae_layer **out, int out_channels, int kernel_h,
                                              int kernel_w, int stride_h, int stride_w, int pad_h,
                                              int pad_w)
{
    return cvae_layer_create_conv2d_with(out, out_channels, kernel_h, kernel_w, stride_h,
                                         stride_w, pad_h, pad_w, NULL);
}

static cvae_status conv2d_bind(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                               size_t *ws_floats)
{
    cvi_conv_hp *hp = &l->hp.conv;
    cvi_conv_geom *g = &hp->geom;
    size_t ckk, p, cols, wcount, ycount;
    if (in.h + 2 * hp->ph < hp->kh || in.w + 2 * hp->pw < hp->kw) {
        cvi_set_error(l->err,
                      "conv2d: kernel %zux%zu is larger than the padded input %zux%zu "
                      "(input %zux%zu, padding %zu,%zu)",
                      hp->kh, hp->kw, in.h + 2 * hp->ph, in.w + 2 * hp->pw, in.h, in.w, hp->ph,
                      hp->pw);
        return CVAE_ERR_SHAPE;
    }
    g->C = in.c;
    g->H = in.h;
    g->W = in.w;
    g->KH = hp->kh;
    g->KW = hp->kw;
    g->SH = hp->sh;
    g->SW = hp->sw;
    g->PH = hp->ph;
    g->PW = hp->pw;
    g->OH = (in.h + 2 * hp->ph - hp->kh) / hp->sh + 1;
    g->OW = (in.w + 2 * hp->pw - hp->kw) / hp->sw + 1;
    if (cvi_mul_overflow(hp->kh, hp->kw, &ckk) || cvi_mul_overflow(ckk, in.c, &ckk) || cvi_mul_overflow(g->OH, g->OW, &p) ||
        cvi_mul_overflow(ckk, p, &cols) || cvi_mul_overflow(ckk, hp->out_channels, &wcount) ||
        cvi_mul_overflow(p, hp->out_channels, &ycount) || cols > CVI_MAX_ELEMS ||
        wcount > CVI_MAX_ELEMS || ycount > CVI_MAX_ELEMS) {
        cvi_set_error(l->err, "conv2d: sizes too large (input %zux%zux%zu, %zu filters of %zux%zu)",
                      in.c, in.h, in.w, hp->out_channels, hp->kh, hp->kw);
        return CVAE_ERR_TOO_LARGE;
    }
    if (cvi_mul_overflow(in.h, in.w, &p) || p > INT32_MAX) { /* int32 plane offsets */
        cvi_set_error(l->err, "conv2d: input planes of %zux%zu pixels exceed 2^31", in.h, in.w);
        return CVAE_ERR_TOO_LARGE;
    }
    out->c = hp->out_channels;
    out->h = g->OH;
    out->w = g->OW;
    *nparams = wcount + hp->out_channels;
    hp->group = cvi_conv_group(cols);
    /* The tables, the columns of a group, the weights packed (forward). */
    *ws_floats = cvi_conv_scratch_floats(hp, cols, l->max_batch) +
                 cvi_gemm_packed_a_floats(hp->out_channels, ckk);
    return CVAE_OK;
}

static void conv2d_init(cvae_layer *l, cvi_rng *rng)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t F = l->hp.conv.out_channels, ckk = g->C * g->KH * g->KW;
    cvi_init_uniform_fan_in(l->params, F * ckk, l->params + F * ckk, F, ckk, rng);
}

/* Images are taken hp->group at a time: the columns of a group side by side
 * in the scratch (CKK, g P), one multiply per group. */
static void conv2d_forward(cvae_layer *l, float *out, const float *in, size_t n,
                           const cvi_workspace *ws)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t F = l->hp.conv.out_channels, ckk = g->C * g->KH * g->KW, P = g->OH * g->OW;
    size_t image = g->C * g->H * g->W, b0;
    cvi_conv_tables t;
    float *col = cvi_conv_prepare(&l->hp.conv, l->max_batch, ws->scratch, &t, &ws->gemm);
    float *packed_w = col + ckk * t.ldcol; /* the weights, packed once for every group */
    for (b0 = 0; b0 < n; b0 += l->hp.conv.group) {
        size_t gn = n - b0 < l->hp.conv.group ? n - b0 : l->hp.conv.group;
        cvi_gemm_call c = cvi_gemm_plain(0, 0, F, gn * P, ckk, 1.0f, l->params, ckk, col,
                                         t.ldcol, 0.0f, out + b0 * F * P, P);
        if (b0 == 0)
            cvi_gemm_pack_a(&ws->gemm, &c, packed_w);
        c.a_packed = packed_w;
        cvi_im2col_batch(col, in + b0 * image, gn, g, &t, &ws->gemm);
        c.c.group_cols = P; /* y image by image, bias fused */
        c.c.group_stride = F * P;
        c.c.row_bias = l->params + F * ckk;
        c.c.relu = ws->relu;
        cvi_gemm_ex(&ws->gemm, &c);
    }
}

static void conv2d_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                            const float *out, size_t n, const cvi_workspace *ws)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t F = l->hp.conv.out_channels, ckk = g->C * g->KH * g->KW, P = g->OH * g->OW;
    size_t image = g->C * g->H * g->W, b0;
    float *dw, *db;
    (void)out;
    cvi_layer_grad_spans(l, ws, F * ckk, &dw, &db);
    cvi_bias_grad_planes(db, dout, n, F, P, ws->gemm.threads);
    cvi_conv_tables t;
    float *col = cvi_conv_prepare(&l->hp.conv, l->max_batch, ws->scratch, &t, &ws->gemm);
    for (b0 = 0; b0 < n; b0 += l->hp.conv.group) {
        size_t gn = n - b0 < l->hp.conv.group ? n - b0 : l->hp.conv.group;
        const float *dy = dout + b0 * F * P;
        cvi_patches patches;
        cvi_gemm_call c = cvi_gemm_plain(0, 1, F, ckk, gn * P, 1.0f, NULL, 0, NULL, 0, 1.0f, dw,
                                         ckk);
        /* dw += dy (F, gn P) col^T, col^T's panels straight from the images,
         * padded first in the columns' place where they fit (the columns are
         * not needed until dcol below). */
        patches.imgs = in + b0 * image;
        patches.image = image;
        patches.g = g;
        patches.padded = gn * cvi_padded_image_floats(g) <= ckk * t.ldcol;
        if (patches.padded) {
            cvi_pad_images(col, in + b0 * image, gn, g);
            patches.imgs = col;
            patches.image = cvi_padded_image_floats(g);
        }
        c.a = cvi_planes(dy, P, F * P);
        c.b_panels = cvi_patch_panels;
        c.b_ctx = &patches;
        cvi_gemm_ex(&ws->gemm, &c);
        if (!din)
            continue;
        /* The columns are spent: dcol = w^T dy in their place, then col2im. */
        c = cvi_gemm_plain(1, 0, ckk, gn * P, F, 1.0f, l->params, ckk, NULL, 0, 0.0f,
                           col, t.ldcol);
        c.b = cvi_planes(dy, P, F * P);
        cvi_gemm_ex(&ws->gemm, &c);
        cvi_col2im_batch(din + b0 * image, col, gn, g, &t, NULL, 0, &ws->gemm);
    }
}

const cvi_layer_ops cvi_conv2d_ops = {CVAE_LAYER_CONV2D, "conv2d",      conv2d_bind,
                                      conv2d_init,       conv2d_forward, conv2d_backward,
                                      NULL,              1};
