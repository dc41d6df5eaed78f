/*
 * layer_linear.c - fully connected layer, y = x w^T + b.
 *
 * B batch, I inputs (the input's C*H*W), O outputs.
 * x,dx (B,I) y,dy (B,O) w,dw (O,I) b,db (O); backward adds into dw, db.
 * Batch-first rows make every product a single gemm over the whole batch.
 */
#include "cvae_internal.h"

CVAE_API cvae_status cvae_layer_create_linear_with(cvae_layer **out, int out_features,
                                                   const cvae_allocator *allocator)
{
    cvae_status st;
    cvae_layer *l;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (out_features < 1)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_layer_new(&l, &cvi_linear_ops, allocator)) != CVAE_OK)
        return st;
    l->hp.linear.out_features = (size_t)out_features;
    *out = l;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_create_linear(cvae_layer **out, int out_features)
{
    return cvae_layer_create_linear_with(out, out_features, NULL);
}

static cvae_status linear_bind(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                               size_t *ws_floats)
{
    size_t I = cvi_shape_size(in), O = l->hp.linear.out_features, wcount;
    if (cvi_mul_overflow(I, O, &wcount) || wcount > CVI_MAX_ELEMS) {
        cvi_set_error(l->err, "linear: %zu x %zu weights are too many", O, I);
        return CVAE_ERR_TOO_LARGE;
    }
    l->hp.linear.in_features = I;
    out->c = O;
    out->h = 1;
    out->w = 1;
    *nparams = wcount + O;
    *ws_floats = 0;
    return CVAE_OK;
}

static void linear_init(cvae_layer *l, cvi_rng *rng)
{
    size_t I = l->hp.linear.in_features, O = l->hp.linear.out_features;
    cvi_init_uniform_fan_in(l->params, O * I, l->params + O * I, O, I, rng);
}

static void linear_forward(cvae_layer *l, float *out, const float *in, size_t n,
                           const cvi_workspace *ws)
{
    size_t I = l->hp.linear.in_features, O = l->hp.linear.out_features;
    cvi_gemm_call c = cvi_gemm_plain(0, 1, n, O, I, 1.0f, in, I, l->params, I, 0.0f, out, O);
    c.c.col_bias = l->params + O * I; /* fused into the product's output pass */
    cvi_gemm_ex(&ws->gemm, &c);
}

static void linear_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                            const float *out, size_t n, const cvi_workspace *ws)
{
    size_t I = l->hp.linear.in_features, O = l->hp.linear.out_features, b, o;
    float *dw, *db;
    (void)out;
    cvi_layer_grad_spans(l, ws, O * I, &dw, &db);
    for (b = 0; b < n; b++)
        for (o = 0; o < O; o++)
            db[o] += dout[b * O + o];
    /* With the lanes at once and the weight gradient shared, the first lane
     * adds its part first and then computes din; the second computes din
     * while it waits for its turn. */
    if (ws->lane == 0) {
        cvi_gemm(&ws->gemm, 1, 0, O, I, n, 1.0f, dout, O, in, I, 1.0f, dw, I);
        cvi_lane_turn_give(ws->turns, l);
    }
    if (din)
        cvi_gemm(&ws->gemm, 0, 0, n, I, O, 1.0f, dout, O, l->params, I, 0.0f, din, I);
    if (ws->lane != 0) {
        cvi_lane_turn_take(ws->turns, l);
        cvi_gemm(&ws->gemm, 1, 0, O, I, n, 1.0f, dout, O, in, I, 1.0f, dw, I);
    }
}

const cvi_layer_ops cvi_linear_ops = {CVAE_LAYER_LINEAR, "linear",       linear_bind,
                                      linear_init,       linear_forward, linear_backward};
