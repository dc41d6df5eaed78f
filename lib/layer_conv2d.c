/*
 * layer_conv2d.c - 2-d convolution by im2col + matrix multiply.
 *
 * B batch, C in channels, F filters, P = OH*OW output positions,
 * CKK = C*KH*KW. x (B,C,H,W) y (B,F,OH,OW) w (F,CKK) b (F) col (CKK,P).
 * Forward, per image: col = im2col(x); y = w * col + b.
 * Backward, per image: db += rowsum(dy); dw += dy * col^T; dx = col2im(w^T dy).
 * A 1x1 kernel with stride 1 and no padding needs no columns: col is x.
 * Also holds the hyper-parameter checks both convolution kinds share.
 */
#include "cvae_internal.h"

#include <string.h>

cvae_status cvi_conv_create(cvae_layer **out, const cvi_layer_ops *ops, int out_channels,
                            int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h,
                            int pad_w)
{
    cvae_status st;
    cvae_layer *l;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (out_channels < 1 || kernel_h < 1 || kernel_w < 1 || stride_h < 1 || stride_w < 1 ||
        pad_h < 0 || pad_w < 0)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_layer_new(&l, ops)) != CVAE_OK)
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

CVAE_API cvae_status cvae_layer_create_conv2d(cvae_layer **out, int out_channels, int kernel_h,
                                              int kernel_w, int stride_h, int stride_w, int pad_h,
                                              int pad_w)
{
    return cvi_conv_create(out, &cvi_conv2d_ops, out_channels, kernel_h, kernel_w, stride_h,
                           stride_w, pad_h, pad_w);
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
    out->c = hp->out_channels;
    out->h = g->OH;
    out->w = g->OW;
    *nparams = wcount + hp->out_channels;
    *ws_floats = cvi_conv_is_pointwise(g) ? 0 : cols;
    return CVAE_OK;
}

static void conv2d_init(cvae_layer *l, cvi_rng *rng)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t F = l->hp.conv.out_channels, ckk = g->C * g->KH * g->KW;
    cvi_init_uniform_fan_in(l->params, F * ckk, l->params + F * ckk, F, ckk, rng);
}

static void conv2d_forward(cvae_layer *l, float *out, const float *in, size_t n,
                           const cvi_workspace *ws)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t F = l->hp.conv.out_channels, ckk = g->C * g->KH * g->KW, P = g->OH * g->OW;
    const float *w = l->params, *bias = l->params + F * ckk;
    size_t b;
    for (b = 0; b < n; b++) {
        const float *x = in + b * g->C * g->H * g->W;
        float *y = out + b * F * P;
        const float *col = x;
        if (!cvi_conv_is_pointwise(g)) {
            cvi_im2col(ws->scratch, x, g);
            col = ws->scratch;
        }
        cvi_gemm(0, 0, F, P, ckk, 1.0f, w, ckk, col, P, 0.0f, y, P, ws->gemm);
        cvi_bias_add_planes(y, bias, F, P);
    }
}

static void conv2d_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                            const float *out, size_t n, const cvi_workspace *ws)
{
    const cvi_conv_geom *g = &l->hp.conv.geom;
    size_t F = l->hp.conv.out_channels, ckk = g->C * g->KH * g->KW, P = g->OH * g->OW;
    size_t image = g->C * g->H * g->W;
    const float *w = l->params;
    float *dw = l->grads, *db = l->grads + F * ckk;
    size_t b;
    (void)out;
    for (b = 0; b < n; b++) {
        const float *x = in + b * image, *dy = dout + b * F * P;
        const float *col = x;
        cvi_bias_grad_planes(db, dy, F, P);
        if (!cvi_conv_is_pointwise(g)) {
            cvi_im2col(ws->scratch, x, g);
            col = ws->scratch;
        }
        cvi_gemm(0, 1, F, ckk, P, 1.0f, dy, P, col, P, 1.0f, dw, ckk, ws->gemm);
        if (!din)
            continue;
        if (cvi_conv_is_pointwise(g)) {
            cvi_gemm(1, 0, ckk, P, F, 1.0f, w, ckk, dy, P, 0.0f, din + b * image, P, ws->gemm);
        } else {
            /* The columns are spent: reuse their space for dcol = w^T dy. */
            cvi_gemm(1, 0, ckk, P, F, 1.0f, w, ckk, dy, P, 0.0f, ws->scratch, P, ws->gemm);
            memset(din + b * image, 0, image * sizeof(float));
            cvi_col2im_add(din + b * image, ws->scratch, g);
        }
    }
}

const cvi_layer_ops cvi_conv2d_ops = {CVAE_LAYER_CONV2D, "conv2d",      conv2d_bind,
                                      conv2d_init,       conv2d_forward, conv2d_backward};
