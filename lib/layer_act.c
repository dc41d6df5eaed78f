/*
 * layer_act.c - element-wise activations: relu, leaky_relu, sigmoid, tanh.
 *
 * x,dx y,dy all of the input's shape. Backward overwrites dx. relu, sigmoid
 * and tanh take their derivative from the cached output y (1[y > 0],
 * y (1 - y), 1 - y^2); leaky_relu from x, since its output loses the sign
 * when the slope is 0. No parameters, no workspace.
 */
#include "cvae_internal.h"

#include <math.h>

static cvae_status act_bind(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                            size_t *ws_floats)
{
    (void)l;
    *out = in;
    *nparams = 0;
    *ws_floats = 0;
    return CVAE_OK;
}

static cvae_status create(cvae_layer **out, const cvi_layer_ops *ops,
                          const cvae_allocator *allocator)
{
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    return cvi_layer_new(out, ops, allocator);
}

static void relu_forward(cvae_layer *l, float *out, const float *in, size_t n,
                         const cvi_workspace *ws)
{
    ptrdiff_t i, count = (ptrdiff_t)(n * cvi_shape_size(l->in));
    (void)ws; /* its thread count, with OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(ws->gemm.threads) if (ws->gemm.threads > 1 && count > 65536)
#endif
    for (i = 0; i < count; i++) {
        float x = in[i];
        out[i] = x > 0.0f ? x : 0.0f;
    }
}

static void relu_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                          const float *out, size_t n, const cvi_workspace *ws)
{
    ptrdiff_t i, count = (ptrdiff_t)(n * cvi_shape_size(l->in));
    (void)in, (void)ws;
    if (!din)
        return;
    /* Both loads unconditional, so that the loop vectorises as a blend; in
     * place (din == dout) is fine, element by element. */
#ifdef _OPENMP
#pragma omp parallel for num_threads(ws->gemm.threads) if (ws->gemm.threads > 1 && count > 65536)
#endif
    for (i = 0; i < count; i++) {
        float d = dout[i];
        din[i] = out[i] > 0.0f ? d : 0.0f;
    }
}

static void leaky_forward(cvae_layer *l, float *out, const float *in, size_t n,
                          const cvi_workspace *ws)
{
    size_t i, count = n * cvi_shape_size(l->in);
    float slope = l->hp.leaky.slope;
    (void)ws;
    for (i = 0; i < count; i++) {
        float x = in[i];
        out[i] = x > 0.0f ? x : slope * x;
    }
}

static void leaky_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                           const float *out, size_t n, const cvi_workspace *ws)
{
    size_t i, count = n * cvi_shape_size(l->in);
    float slope = l->hp.leaky.slope;
    (void)out, (void)ws;
    if (din)
        for (i = 0; i < count; i++) {
            float d = dout[i];
            din[i] = in[i] > 0.0f ? d : slope * d;
        }
}

static void sigmoid_forward(cvae_layer *l, float *out, const float *in, size_t n,
                            const cvi_workspace *ws)
{
    (void)ws;
    cvi_sigmoid(out, in, n * cvi_shape_size(l->in)); /* the decoder's output sigmoid */
}

static void sigmoid_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                             const float *out, size_t n, const cvi_workspace *ws)
{
    size_t i, count = n * cvi_shape_size(l->in);
    (void)in, (void)ws;
    if (din)
        for (i = 0; i < count; i++)
            din[i] = dout[i] * out[i] * (1.0f - out[i]);
}

static void tanh_forward(cvae_layer *l, float *out, const float *in, size_t n,
                         const cvi_workspace *ws)
{
    size_t i, count = n * cvi_shape_size(l->in);
    (void)ws;
    for (i = 0; i < count; i++)
        out[i] = tanhf(in[i]);
}

static void tanh_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                          const float *out, size_t n, const cvi_workspace *ws)
{
    size_t i, count = n * cvi_shape_size(l->in);
    (void)in, (void)ws;
    if (din)
        for (i = 0; i < count; i++)
            din[i] = dout[i] * (1.0f - out[i] * out[i]);
}

const cvi_layer_ops cvi_relu_ops = {CVAE_LAYER_RELU, "relu", act_bind, NULL, relu_forward,
                                    relu_backward, NULL, 0};
const cvi_layer_ops cvi_leaky_relu_ops = {CVAE_LAYER_LEAKY_RELU, "leaky_relu", act_bind, NULL,
                                          leaky_forward, leaky_backward, NULL, 0};
const cvi_layer_ops cvi_sigmoid_ops = {CVAE_LAYER_SIGMOID, "sigmoid", act_bind, NULL,
                                       sigmoid_forward, sigmoid_backward, NULL, 0};
const cvi_layer_ops cvi_tanh_ops = {CVAE_LAYER_TANH, "tanh", act_bind, NULL, tanh_forward,
                                    tanh_backward, NULL, 0};

CVAE_API cvae_status cvae_layer_create_relu_with(cvae_layer **out,
                                                 const cvae_allocator *allocator)
{
    return create(out, &cvi_relu_ops, allocator);
}

CVAE_API cvae_status cvae_layer_create_relu(cvae_layer **out)
{
    return cvae_layer_create_relu_with(out, NULL);
}

CVAE_API cvae_status cvae_layer_create_leaky_relu_with(cvae_layer **out, float slope,
                                                       const cvae_allocator *allocator)
{
    cvae_status st;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (!(slope >= 0.0f && slope < 1.0f))
        return CVAE_ERR_INVALID_ARG;
    if ((st = create(out, &cvi_leaky_relu_ops, allocator)) != CVAE_OK)
        return st;
    (*out)->hp.leaky.slope = slope;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_create_leaky_relu(cvae_layer **out, float slope)
{
    return cvae_layer_create_leaky_relu_with(out, slope, NULL);
}

CVAE_API cvae_status cvae_layer_create_sigmoid_with(cvae_layer **out,
                                                    const cvae_allocator *allocator)
{
    return create(out, &cvi_sigmoid_ops, allocator);
}

CVAE_API cvae_status cvae_layer_create_sigmoid(cvae_layer **out)
{
    return cvae_layer_create_sigmoid_with(out, NULL);
}

CVAE_API cvae_status cvae_layer_create_tanh_with(cvae_layer **out,
                                                 const cvae_allocator *allocator)
{
    return create(out, &cvi_tanh_ops, allocator);
}

CVAE_API cvae_status cvae_layer_create_tanh(cvae_layer **out)
{
    return cvae_layer_create_tanh_with(out, NULL);
}
