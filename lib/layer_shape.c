/*
 * layer_shape.c - flatten and reshape: they change the shape a tensor is read
 * with, never its bytes. Their ops have no forward or backward, which tells
 * the stack to let the output alias the input (and the input gradient alias
 * the output gradient).
 */
#include "cvae_internal.h"

static cvae_status flatten_bind(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                                size_t *ws_floats)
{
    (void)l;
    out->c = cvi_shape_size(in);
    out->h = 1;
    out->w = 1;
    *nparams = 0;
    *ws_floats = 0;
    return CVAE_OK;
}

static cvae_status reshape_bind(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                                size_t *ws_floats)
{
    cvi_shape to = l->hp.reshape;
    size_t count;
    if (cvi_mul_overflow(to.c, to.h, &count) || cvi_mul_overflow(count, to.w, &count) ||
        count != cvi_shape_size(in)) {
        cvi_set_error(l->err, "reshape: input %zux%zux%zu (%zu values) cannot become %zux%zux%zu",
                      in.c, in.h, in.w, cvi_shape_size(in), to.c, to.h, to.w);
        return CVAE_ERR_SHAPE;
    }
    *out = to;
    *nparams = 0;
    *ws_floats = 0;
    return CVAE_OK;
}

const cvi_layer_ops cvi_flatten_ops = {CVAE_LAYER_FLATTEN, "flatten", flatten_bind, NULL, NULL,
                                       NULL, NULL, 0};
const cvi_layer_ops cvi_reshape_ops = {CVAE_LAYER_RESHAPE, "reshape", reshape_bind, NULL, NULL,
                                       NULL, NULL, 0};

CVAE_API cvae_status cvae_layer_create_flatten_with(cvae_layer **out,
                                                    const cvae_allocator *allocator)
{
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    return cvi_layer_new(out, &cvi_flatten_ops, allocator);
}

CVAE_API cvae_status cvae_layer_create_flatten(cvae_layer **out)
{
    return cvae_layer_create_flatten_with(out, NULL);
}

CVAE_API cvae_status cvae_layer_create_reshape_with(cvae_layer **out, int channels, int height,
                                                    int width, const cvae_allocator *allocator)
{
    cvae_status st;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (channels < 1 || height < 1 || width < 1)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_layer_new(out, &cvi_reshape_ops, allocator)) != CVAE_OK)
        return st;
    (*out)->hp.reshape.c = (size_t)channels;
    (*out)->hp.reshape.h = (size_t)height;
    (*out)->hp.reshape.w = (size_t)width;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_layer_create_reshape(cvae_layer **out, int channels, int height,
                                               int width)
{
    return cvae_layer_create_reshape_with(out, channels, height, width, NULL);
}
