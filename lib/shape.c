/*
 * shape.c - the one-image shape (cvi_shape) that layers, stacks, models and
 * datasets all describe images with: its size and its public c, h, w form.
 * It sits below both the layers and the data, so that neither borrows from
 * the other.
 */
#include "cvae_internal.h"

size_t cvi_shape_size(cvi_shape s)
{
    return s.c * s.h * s.w;
}

void cvi_shape_out(cvi_shape s, int *c, int *h, int *w)
{
    if (c)
        *c = (int)s.c;
    if (h)
        *h = (int)s.h;
    if (w)
        *w = (int)s.w;
}
