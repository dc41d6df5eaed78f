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

/* Weights from which a team of lanes computes the product together: below,
 * packing W^T once per lane costs less than the two barriers. */
#define TEAM_MIN_WEIGHTS ((size_t)1 << 16)

static void linear_forward(cvae_layer *l, float *out, const float *in, size_t n,
                           const cvi_workspace *ws)
{
    size_t I = l->hp.linear.in_features, O = l->hp.linear.out_features;
    cvi_gemm_call c = cvi_gemm_plain(0, 1, n, O, I, 1.0f, in, I, l->params, I, 0.0f, out, O);
    c.c.col_bias = l->params + O * I; /* fused into the product's output pass */
    c.c.relu = ws->relu;
    if (ws->team > 1 && O * I >= TEAM_MIN_WEIGHTS) {
        /* All the team's rows, this lane's part of their columns: each row
         * is summed as in a call of its lane's own. */
        c.M = ws->team_rows;
        c.a.data = in - ws->team_before * I;
        c.c.data = out - ws->team_before * O;
        cvi_team_barrier(); /* every lane's input rows are written */
        cvi_gemm_part(&ws->gemm, &c, ws->lane, ws->team);
        cvi_team_barrier(); /* and every lane's output rows */
        return;
    }
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

/* Two lanes' backward in one go on one thread (backward_lanes), where each
 * lane's rows fit one pass of the multiply. Bit for bit what linear_backward
 * gives for lane 0 and then lane 1: the weight gradient as one product
 * whose parts (k_split) add each lane's sum (one pass each), in lane order,
 * into lane 0's block (cleared: (0 + s0) + s1). Where the lanes share it
 * (lane_direct) that is what lane 1 adds to; else lane 1's block stays 0
 * and the lanes' blocks are added afterwards, (0 + s0) + s1 plus 0 against
 * (0 + s0) plus (0 + s1): the same, as no sum from 0.0f is -0.0f. Each bias gradient goes
 * into its lane's block; the input gradient of both is one product (each
 * row is its own). */
static int linear_backward_lanes(cvae_layer *l, float *din, const float *dout, const float *in,
                                 size_t n0, size_t n1, const cvi_workspace *ws0,
                                 const cvi_workspace *ws1)
{
    size_t I = l->hp.linear.in_features, O = l->hp.linear.out_features, b, o;
    float *dw, *db0, *dw1, *db1;
    cvi_gemm_call c;
    if (n0 > cvi_gemm_one_pass_depth() || n1 > cvi_gemm_one_pass_depth())
        return 0; /* a lane's sum in several passes: only the lanes' own calls round so */
    cvi_layer_grad_spans(l, ws0, O * I, &dw, &db0);
    cvi_layer_grad_spans(l, ws1, O * I, &dw1, &db1); /* left as it is: see above */
    (void)dw1;
    for (b = 0; b < n0; b++)
        for (o = 0; o < O; o++)
            db0[o] += dout[b * O + o];
    for (b = n0; b < n0 + n1; b++)
        for (o = 0; o < O; o++)
            db1[o] += dout[b * O + o];
    c = cvi_gemm_plain(1, 0, O, I, n0 + n1, 1.0f, dout, O, in, I, 1.0f, dw, I);
    c.k_split = n0;
    cvi_gemm_ex(&ws0->gemm, &c);
    if (din)
        cvi_gemm(&ws0->gemm, 0, 0, n0 + n1, I, O, 1.0f, dout, O, l->params, I, 0.0f, din, I);
    return 1;
}

const cvi_layer_ops cvi_linear_ops = {CVAE_LAYER_LINEAR, "linear",       linear_bind,
                                      linear_init,       linear_forward, linear_backward,
                                      linear_backward_lanes, 1};
