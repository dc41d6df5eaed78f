/*
 * layer_label.c - concat_label, the conditioning input of a conditional VAE
 * (Sohn, Lee and Yan, 2015): appends the one-hot code of each image's label
 * to its features. Input C x H x W, read as I = C*H*W values; output
 * (I + classes) x 1 x 1. No parameters.
 *
 * The labels are not data flowing through the stack: the model hands the
 * stack a pointer to the current chunk's labels before each pass
 * (cvi_stack_set_labels), which reaches the layer in its workspace. Without one (a stack used on its own), the code
 * is all zeros. Backward passes the features' gradient through and drops
 * the code's: labels are given, not learnt.
 */
#include "cvae_internal.h"

#include <string.h>

CVAE_API cvae_status cvae_layer_create_concat_label_with(cvae_layer **out, int classes,
                                                         const cvae_allocator *allocator)
{
    cvae_status st;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (classes < 1 || classes > CVI_MAX_CLASSES)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_layer_new(out, &cvi_concat_label_ops, allocator)) != CVAE_OK)
        return st;
    (*out)->hp.label.classes = (size_t)classes;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_create_concat_label(cvae_layer **out, int classes)
{
    return cvae_layer_create_concat_label_with(out, classes, NULL);
}

static cvae_status label_bind(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                              size_t *ws_floats)
{
    out->c = cvi_shape_size(in) + l->hp.label.classes; /* both far below SIZE_MAX */
    out->h = 1;
    out->w = 1;
    *nparams = 0;
    *ws_floats = 0;
    return CVAE_OK;
}

static void label_forward(cvae_layer *l, float *out, const float *in, size_t n,
                          const cvi_workspace *ws)
{
    size_t I = cvi_shape_size(l->in), K = l->hp.label.classes, b;
    const int *labels = ws->labels;
    for (b = 0; b < n; b++) {
        float *o = out + b * (I + K);
        memcpy(o, in + b * I, I * sizeof(float));
        memset(o + I, 0, K * sizeof(float));
        if (labels)
            o[I + (size_t)labels[b]] = 1.0f; /* the model checked the range */
    }
}

static void label_backward(cvae_layer *l, float *din, const float *dout, const float *in,
                           const float *out, size_t n, const cvi_workspace *ws)
{
    size_t I = cvi_shape_size(l->in), K = l->hp.label.classes, b;
    (void)in, (void)out, (void)ws;
    if (!din)
        return;
    /* din may be dout (the stack runs this backward in place, as a relu's):
     * row b moves down from b (I + K) to b I, never over a row not yet read. */
    for (b = 0; b < n; b++)
        memmove(din + b * I, dout + b * (I + K), I * sizeof(float));
}

const cvi_layer_ops cvi_concat_label_ops = {CVAE_LAYER_CONCAT_LABEL, "concat_label", label_bind,
                                            NULL, label_forward, label_backward, NULL, 0};
