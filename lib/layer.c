/*
 * layer.c - what every layer kind shares: creation, destruction, options,
 * shapes, parameter views and the public single-layer forward/backward.
 * The kinds themselves live in layer_<kind>.c behind cvi_layer_ops tables.
 */
#include "cvae_internal.h"

#include <math.h>
#include <string.h>

/* Planes summed side by side by cvi_bias_grad_planes: each plane's sum is
 * a chain of dependent adds, so eight chains at once keep the adders busy
 * where one would wait on each add's latency. */
#define BIAS_GRAD_CHAINS 8
/* Channels a thread takes at a time: with 4, two images' planes make the
 * eight chains; fewer channels left take more images each. */
#define BIAS_GRAD_CHANNELS 4

/* sum[j] = the sum of plane src[j]'s P floats, in order from 0.0f. */
static void sum_planes(float sum[BIAS_GRAD_CHAINS], const float *const src[BIAS_GRAD_CHAINS],
                       size_t P)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;
    size_t p;
    for (p = 0; p < P; p++) {
        s0 += src[0][p];
        s1 += src[1][p];
        s2 += src[2][p];
        s3 += src[3][p];
        s4 += src[4][p];
        s5 += src[5][p];
        s6 += src[6][p];
        s7 += src[7][p];
    }
    sum[0] = s0, sum[1] = s1, sum[2] = s2, sum[3] = s3;
    sum[4] = s4, sum[5] = s5, sum[6] = s6, sum[7] = s7;
}

/* db[f] += the sum of plane (b, f) of dy, image after image (b ascending),
 * for channels f0 .. f0 + nf - 1: each channel's own order, whichever planes
 * share a pass. */
static void bias_grad_block(float *db, const float *dy, size_t n, size_t F, size_t P, size_t f0,
                            size_t nf)
{
    const float *src[BIAS_GRAD_CHAINS];
    float sum[BIAS_GRAD_CHAINS];
    size_t im = BIAS_GRAD_CHAINS / nf, b = 0, j, q;
    if (BIAS_GRAD_CHAINS % nf == 0)
        for (; b + im <= n; b += im) {
            for (j = 0; j < BIAS_GRAD_CHAINS; j++)
                src[j] = dy + ((b + j / nf) * F + f0 + j % nf) * P;
            sum_planes(sum, src, P);
            for (j = 0; j < BIAS_GRAD_CHAINS; j++) /* images in order */
                db[f0 + j % nf] += sum[j];
        }
    for (; b < n; b++) /* the images left */
        for (q = 0; q < nf; q++) {
            const float *plane = dy + (b * F + f0 + q) * P;
            float s1 = 0.0f;
            for (j = 0; j < P; j++)
                s1 += plane[j];
            db[f0 + q] += s1;
        }
}

void cvi_bias_grad_planes(float *db, const float *dy, size_t n, size_t F, size_t P, int threads)
{
    ptrdiff_t blk, blocks = (ptrdiff_t)((F + BIAS_GRAD_CHANNELS - 1) / BIAS_GRAD_CHANNELS);
    (void)threads;
    /* Channels are independent: a thread's block of channels is its own. */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) if (threads > 1 && n * F * P > 65536)
#endif
    for (blk = 0; blk < blocks; blk++) {
        size_t f0 = (size_t)blk * BIAS_GRAD_CHANNELS;
        size_t nf = F - f0 < BIAS_GRAD_CHANNELS ? F - f0 : BIAS_GRAD_CHANNELS;
        if (nf == 3) { /* 8 chains of 2 channels, then the third alone */
            bias_grad_block(db, dy, n, F, P, f0, 2);
            bias_grad_block(db, dy, n, F, P, f0 + 2, 1);
        } else {
            bias_grad_block(db, dy, n, F, P, f0, nf);
        }
    }
}

cvae_status cvi_layer_new(cvae_layer **out, const cvi_layer_ops *ops,
                          const cvae_allocator *allocator)
{
    cvae_allocator mem;
    cvae_layer *l;
    if (cvi_allocator_init(&mem, allocator) != CVAE_OK)
        return CVAE_ERR_INVALID_ARG;
    l = cvi_calloc(&mem, 1, sizeof *l);
    if (!l)
        return CVAE_ERR_NOMEM;
    l->mem = mem;
    l->ops = ops;
    *out = l;
    return CVAE_OK;
}

void cvi_init_uniform_fan_in(float *w, size_t nw, float *b, size_t nb, size_t fan_in,
                             cvi_rng *rng)
{
    /* PyTorch: kaiming_uniform_(a = sqrt(5)) gives bound
     * sqrt(2 / (1 + 5)) * sqrt(3 / fan_in) = 1 / sqrt(fan_in), and the bias
     * uses the same bound. sqrtf is correctly rounded, so this is exact
     * everywhere. */
    float bound = 1.0f / sqrtf((float)fan_in);
    size_t i;
    for (i = 0; i < nw; i++)
        w[i] = (2.0f * cvi_rng_uniform(rng) - 1.0f) * bound;
    for (i = 0; i < nb; i++)
        b[i] = (2.0f * cvi_rng_uniform(rng) - 1.0f) * bound;
}

void cvi_layer_grad_spans(const cvae_layer *l, const cvi_workspace *ws, size_t wcount,
                          float **weights, float **rest)
{
    if (ws->lane == 0) {
        *weights = l->grads;
        *rest = l->grads + wcount;
    } else if (l->lane_direct) {
        *weights = l->grads;
        *rest = l->lane_grads;
    } else {
        *weights = l->lane_grads;
        *rest = l->lane_grads + wcount;
    }
}

void cvi_layer_free(cvae_layer *layer)
{
    cvae_allocator mem = layer->mem; /* not read from the block being freed */
    cvi_free(&mem, layer);
}

CVAE_API void cvae_layer_destroy(cvae_layer *layer)
{
    /* A stack's layers die with the stack; freeing one here would leave the
     * stack a dangling pointer. */
    if (layer && !layer->owner)
        cvi_layer_free(layer);
}

CVAE_API cvae_layer_kind cvae_layer_get_kind(const cvae_layer *layer)
{
    return layer ? layer->ops->kind : (cvae_layer_kind)0;
}

CVAE_API const char *cvae_layer_kind_name(const cvae_layer *layer)
{
    return layer ? layer->ops->name : "?";
}

CVAE_API const char *cvae_layer_last_error(const cvae_layer *layer)
{
    return layer ? layer->err : "layer handle is NULL";
}

CVAE_API cvae_status cvae_layer_set_option(cvae_layer *layer, cvae_layer_option key,
                                           double value)
{
    if (!layer)
        return CVAE_ERR_INVALID_ARG;
    if (key != CVAE_LAYER_LEAKY_SLOPE || layer->ops->kind != CVAE_LAYER_LEAKY_RELU) {
        cvi_set_error(layer->err, "%s: no option with key %d", layer->ops->name, (int)key);
        return CVAE_ERR_INVALID_ARG;
    }
    if (layer->owner && layer->bound) {
        cvi_set_error(layer->err, "%s: options cannot change once the stack is built",
                      layer->ops->name);
        return CVAE_ERR_STATE;
    }
    /* Checked after rounding to float: 0.99999999 would round to 1. */
    if (!(value >= 0.0 && value < 1.0) || !((float)value < 1.0f)) {
        cvi_set_error(layer->err, "leaky_relu: slope %.9g is not in [0, 1) as a float", value);
        return CVAE_ERR_INVALID_ARG;
    }
    layer->hp.leaky.slope = (float)value;
    layer->err[0] = '\0';
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_get_option(const cvae_layer *layer, cvae_layer_option key,
                                           double *value)
{
    if (!layer || !value || key != CVAE_LAYER_LEAKY_SLOPE ||
        layer->ops->kind != CVAE_LAYER_LEAKY_RELU)
        return CVAE_ERR_INVALID_ARG;
    *value = layer->hp.leaky.slope;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_option_bounds(const cvae_layer *layer, cvae_layer_option key,
                                              double *min, double *max)
{
    if (!layer || !min || !max || key != CVAE_LAYER_LEAKY_SLOPE ||
        layer->ops->kind != CVAE_LAYER_LEAKY_RELU)
        return CVAE_ERR_INVALID_ARG;
    *min = 0.0;
    *max = (double)nextafterf(1.0f, 0.0f); /* the largest float below 1 */
    return CVAE_OK;
}

static cvae_status get_shape(const cvae_layer *layer, cvi_shape s, int *c, int *h, int *w)
{
    if (!layer)
        return CVAE_ERR_INVALID_ARG;
    if (!layer->bound)
        return CVAE_ERR_STATE;
    cvi_shape_out(s, c, h, w);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_input_shape(const cvae_layer *layer, int *c, int *h, int *w)
{
    return get_shape(layer, layer ? layer->in : (cvi_shape){0, 0, 0}, c, h, w);
}

CVAE_API cvae_status cvae_layer_output_shape(const cvae_layer *layer, int *c, int *h, int *w)
{
    return get_shape(layer, layer ? layer->out : (cvi_shape){0, 0, 0}, c, h, w);
}

CVAE_API size_t cvae_layer_param_count(const cvae_layer *layer)
{
    return layer && layer->bound ? layer->nparams : 0;
}

CVAE_API float *cvae_layer_params(cvae_layer *layer)
{
    return layer && layer->bound ? layer->params : NULL;
}

CVAE_API float *cvae_layer_grads(cvae_layer *layer)
{
    return layer && layer->bound ? layer->grads : NULL;
}

/* Checks shared by the public forward and backward. */
static cvae_status check_call(cvae_layer *layer, const char *what, int n)
{
    if (!layer->bound) {
        cvi_set_error(layer->err, "%s %s: the layer's stack is not built", layer->ops->name,
                      what);
        return CVAE_ERR_STATE;
    }
    if (n < 1 || (size_t)n > layer->max_batch) {
        cvi_set_error(layer->err, "%s %s: batch %d is not in [1, %zu]", layer->ops->name, what,
                      n, layer->max_batch);
        return CVAE_ERR_INVALID_ARG;
    }
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_forward(cvae_layer *layer, const float *in, float *out, int n)
{
    cvae_status st;
    if (!layer)
        return CVAE_ERR_INVALID_ARG;
    if (!in || !out) {
        cvi_set_error(layer->err, "%s forward: %s is NULL", layer->ops->name,
                      !in ? "in" : "out");
        return CVAE_ERR_INVALID_ARG;
    }
    if ((st = check_call(layer, "forward", n)) != CVAE_OK)
        return st;
    if (layer->ops->forward) {
        cvi_stack_prepare_threads(layer->owner);
        layer->ops->forward(layer, out, in, (size_t)n, layer->ws);
    } else
        memmove(out, in, (size_t)n * cvi_shape_size(layer->in) * sizeof(float));
    layer->err[0] = '\0';
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_backward(cvae_layer *layer, const float *in, const float *out,
                                         const float *dout, float *din, int n)
{
    cvae_status st;
    if (!layer)
        return CVAE_ERR_INVALID_ARG;
    if (!in || !out || !dout) {
        cvi_set_error(layer->err, "%s backward: %s is NULL", layer->ops->name,
                      !in ? "in" : !out ? "out" : "dout");
        return CVAE_ERR_INVALID_ARG;
    }
    if ((st = check_call(layer, "backward", n)) != CVAE_OK)
        return st;
    if (layer->ops->backward) {
        cvi_stack_prepare_threads(layer->owner);
        layer->ops->backward(layer, din, dout, in, out, (size_t)n, layer->ws);
    } else if (din)
        memmove(din, dout, (size_t)n * cvi_shape_size(layer->in) * sizeof(float));
    layer->err[0] = '\0';
    return CVAE_OK;
}
