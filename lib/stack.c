/*
 * stack.c - a sequence of layers built for one input shape and batch size.
 *
 * Building does all the allocation there will ever be: one parameter block
 * and a mirror gradient block (layer after layer, each layer's weight then
 * bias), one activation block holding the copied input and every layer's
 * output for max_batch images (shape-only layers alias their input, and so
 * do most relus: see relu_in_place), two
 * ping-pong blocks for activation gradients, and one workspace sized for the
 * largest layer plus the gemm's packing buffers. Forward and backward then
 * only index into those blocks.
 */
#include "cvae_internal.h"

#include <limits.h>
#include <string.h>

struct cvae_stack {
    cvae_allocator mem;
    cvae_layer **layers;
    size_t count, capacity;
    int built;
    cvi_shape in, out;
    size_t max_batch;
    size_t nparams;
    float *params, *grads;
    int owns_params;    /* 0 when a model placed them in its own block */
    float *acts;        /* input copy, then each non-view layer's output */
    float **act;        /* act[i] is layer i's input, act[count] the output */
    float *dbuf[2];     /* ping-pong activation gradients */
    size_t dbuf_image[2]; /* floats each dbuf holds per image (its max_batch-th) */
    float *gemm_ws;     /* the multiply's packing buffers, for gemm_threads */
    float *scratch;     /* the largest layer's scratch */
    int gemm_threads;   /* threads the packing buffers are sized for */
    int borrowed;       /* dbuf, gemm_ws and scratch belong to a model */
    int threads;        /* the setting: 0 automatic, else a count */
    cvi_workspace ws;
    size_t first_param; /* index of the first layer with parameters, or count */
    size_t first_op;    /* index of the first layer that is not a view, or count */
    size_t last_n;      /* batch of the last forward, 0 if none */
    char err[CVI_ERRMSG_SIZE];
};


CVAE_API cvae_status cvae_stack_create_with(cvae_stack **out, const cvae_allocator *allocator)
{
    cvae_allocator mem;
    cvae_stack *s;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (cvi_allocator_init(&mem, allocator) != CVAE_OK)
        return CVAE_ERR_INVALID_ARG;
    s = cvi_calloc(&mem, 1, sizeof *s);
    if (!s)
        return CVAE_ERR_NOMEM;
    s->mem = mem;
    *out = s;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_stack_create(cvae_stack **out)
{
    return cvae_stack_create_with(out, NULL);
}

static void free_blocks(cvae_stack *s)
{
    if (s->owns_params) {
        cvi_free_floats(&s->mem, s->params);
        cvi_free_floats(&s->mem, s->grads);
    }
    cvi_free_floats(&s->mem, s->acts);
    if (!s->borrowed) {
        cvi_free_floats(&s->mem, s->dbuf[0]);
        cvi_free_floats(&s->mem, s->dbuf[1]);
        cvi_free_floats(&s->mem, s->gemm_ws);
        cvi_free_floats(&s->mem, s->scratch);
    }
    cvi_free(&s->mem, s->act);
}

CVAE_API void cvae_stack_destroy(cvae_stack *stack)
{
    cvae_allocator mem;
    size_t i;
    if (!stack)
        return;
    for (i = 0; i < stack->count; i++)
        cvi_layer_free(stack->layers[i]);
    cvi_free(&stack->mem, stack->layers);
    free_blocks(stack);
    mem = stack->mem; /* not read from the block being freed */
    cvi_free(&mem, stack);
}

CVAE_API const char *cvae_stack_last_error(const cvae_stack *stack)
{
    return stack ? stack->err : "stack handle is NULL";
}

CVAE_API cvae_status cvae_stack_add(cvae_stack *stack, cvae_layer *layer)
{
    if (!stack) {
        if (layer && !layer->owner)
            cvae_layer_destroy(layer);
        return CVAE_ERR_INVALID_ARG;
    }
    if (!layer) {
        cvi_set_error(stack->err, "stack_add: layer is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    if (layer->owner) {
        cvi_set_error(stack->err, "stack_add: the %s layer already belongs to a stack",
                      layer->ops->name);
        return CVAE_ERR_INVALID_ARG;
    }
    if (stack->built) {
        cvi_set_error(stack->err, "stack_add: the stack is already built");
        cvae_layer_destroy(layer);
        return CVAE_ERR_STATE;
    }
    if (stack->count == stack->capacity) {
        size_t cap = stack->capacity ? 2 * stack->capacity : 8;
        cvae_layer **grown = cvi_calloc(&stack->mem, cap, sizeof *grown);
        if (!grown) {
            cvi_set_error(stack->err, "stack_add: out of memory for %zu layers", cap);
            cvae_layer_destroy(layer);
            return CVAE_ERR_NOMEM;
        }
        if (stack->count)
            memcpy(grown, stack->layers, stack->count * sizeof *grown);
        cvi_free(&stack->mem, stack->layers);
        stack->layers = grown;
        stack->capacity = cap;
    }
    layer->owner = stack;
    stack->layers[stack->count++] = layer;
    stack->err[0] = '\0';
    return CVAE_OK;
}

int cvi_stack_is_built(const cvae_stack *stack)
{
    return stack->built;
}

CVAE_API int cvae_stack_layer_count(const cvae_stack *stack)
{
    return stack ? (int)stack->count : 0;
}

CVAE_API cvae_layer *cvae_stack_layer(cvae_stack *stack, int index)
{
    if (!stack || index < 0 || (size_t)index >= stack->count)
        return NULL;
    return stack->layers[index];
}

/* What a build needs, summed over the layers. */
typedef struct plan {
    size_t nparams;   /* total parameters */
    size_t act;       /* floats per image: input plus every non-view output */
    size_t widest;    /* largest activation of one image, input included */
    size_t dbuf[2];   /* floats per image each gradient block needs (dbuf_sizes) */
    size_t scratch;   /* largest layer scratch */
} plan;

static cvae_status too_large(cvae_stack *s, const char *what)
{
    cvi_set_error(s->err, "stack_build: %s is too large", what);
    return CVAE_ERR_TOO_LARGE;
}

/* 1 when layer i writes its output over its input: every relu. Nothing
 * needs the values it overwrites. The layer before may read its own output
 * in backward (relu, sigmoid, tanh do, elementwise), but only where the
 * relu changed it, to negative values, does the value differ, and there the
 * relu passes back a zero gradient, so the product is zero either way.
 * conv, linear and leaky_relu read their input, not their output. A future
 * kind whose backward reads its output across elements would have to be
 * excluded here. Saves one activation per relu, the largest memory item of
 * a stack. */
static int relu_in_place(const cvae_stack *s, size_t i)
{
    return s->layers[i]->ops->kind == CVAE_LAYER_RELU;
}

/* 1 when layer i's backward writes its input gradient over its output
 * gradient, in the same dbuf: a relu (element by element) and a
 * concat_label (each row moved down over the label's columns). Saves a
 * second dbuf as wide as the layer where a stack's two dbufs would
 * otherwise both be: the conditional preset's encoder, whose gradients
 * alternated so that the block the decoder leaves narrow was its widest. */
static int grad_in_place(const cvae_stack *s, size_t i)
{
    return relu_in_place(s, i) || s->layers[i]->ops->kind == CVAE_LAYER_CONCAT_LABEL;
}

/* The first layer with parameters and the first that computes (not a
 * view); count when there is none. */
static void first_layers(const cvae_stack *s, size_t *first_param, size_t *first_op)
{
    size_t i;
    *first_param = *first_op = s->count;
    for (i = s->count; i-- > 0;) {
        if (s->layers[i]->nparams)
            *first_param = i;
        if (s->layers[i]->ops->forward)
            *first_op = i;
    }
}

/* Where backward writes layer i's input gradient, given where its output
 * gradient g is: GRAD_DIN (the caller's din), or dbuf 0 or 1. A relu and a
 * concat_label work in place on a dbuf (grad_in_place); other layers
 * alternate between the two. GRAD_DOUT is the caller's dout, never written. */
enum { GRAD_DOUT = -2, GRAD_DIN = -1 };
static int grad_target(const cvae_stack *s, size_t i, int g, int din_given)
{
    if (i == s->first_op && din_given)
        return GRAD_DIN;
    if (grad_in_place(s, i) && g >= 0)
        return g;
    return g == 0 ? 1 : 0;
}

/* Floats per image each dbuf must hold: backward replayed on the shapes
 * alone, with and without a din, keeping the largest input gradient each
 * buffer receives. */
static void dbuf_sizes(const cvae_stack *s, size_t sizes[2])
{
    int din_given, g, t;
    size_t i;
    sizes[0] = sizes[1] = 0;
    for (din_given = 0; din_given < 2; din_given++) {
        g = GRAD_DOUT;
        for (i = s->count; i-- > 0;) {
            if (!s->layers[i]->ops->backward)
                continue;
            if (!din_given && i <= s->first_param)
                break;
            t = grad_target(s, i, g, din_given);
            if (t >= 0 && cvi_shape_size(s->layers[i]->in) > sizes[t])
                sizes[t] = cvi_shape_size(s->layers[i]->in);
            g = t;
        }
    }
}

/* Binds every layer in turn to the shape its predecessor produces. */
static cvae_status bind_layers(cvae_stack *s, cvi_shape in, size_t max_batch, plan *p)
{
    cvi_shape shape = in;
    size_t i;
    memset(p, 0, sizeof *p);
    p->act = p->widest = cvi_shape_size(in);
    for (i = 0; i < s->count; i++) {
        cvae_layer *l = s->layers[i];
        cvi_shape out;
        size_t np = 0, ws = 0, size;
        cvae_status st;
        l->max_batch = max_batch; /* bind may size the scratch by it */
        st = l->ops->bind(l, shape, &out, &np, &ws);
        if (st != CVAE_OK) {
            cvi_set_error(s->err, "layer %zu (%s) on input %zux%zux%zu: %s", i, l->ops->name,
                          shape.c, shape.h, shape.w, l->err);
            return st;
        }
        /* Shapes are reported as int, so no side may exceed INT_MAX. */
        if (out.c > INT_MAX || out.h > INT_MAX || out.w > INT_MAX ||
            cvi_mul_overflow(out.c, out.h, &size) || cvi_mul_overflow(size, out.w, &size) ||
            size > CVI_MAX_ELEMS) {
            cvi_set_error(s->err, "layer %zu (%s): output %zux%zux%zu is too large", i,
                          l->ops->name, out.c, out.h, out.w);
            return CVAE_ERR_TOO_LARGE;
        }
        l->in = shape;
        l->out = out;
        l->nparams = np;
        l->ws_floats = ws;
        if ((cvi_add_overflow(p->nparams, np, &p->nparams) || p->nparams > CVI_MAX_ELEMS) ||
            (l->ops->forward && !relu_in_place(s, i) &&
             (cvi_add_overflow(p->act, size, &p->act) || p->act > CVI_MAX_ELEMS))) {
            cvi_set_error(s->err, "layer %zu (%s): the stack's %s block would be too large", i,
                          l->ops->name, p->nparams > CVI_MAX_ELEMS ? "parameter" : "activation");
            return CVAE_ERR_TOO_LARGE;
        }
        if (size > p->widest)
            p->widest = size;
        if (ws > p->scratch)
            p->scratch = ws;
        shape = out;
    }
    s->out = shape;
    first_layers(s, &s->first_param, &s->first_op);
    dbuf_sizes(s, p->dbuf);
    return CVAE_OK;
}

/* Floats of the two activation-gradient blocks for max_batch images;
 * CVAE_ERR_TOO_LARGE with a message when too large. */
static cvae_status dbuf_floats(cvae_stack *s, const plan *p, size_t max_batch, size_t out[2])
{
    int k;
    for (k = 0; k < 2; k++)
        if (cvi_mul_overflow(p->dbuf[k], max_batch, &out[k]) || out[k] > CVI_MAX_ELEMS)
            return too_large(s, "the gradient block for this batch");
    return CVAE_OK;
}

/* Allocates the blocks of plan p for max_batch images, all or nothing; the
 * parameter and gradient blocks only when the stack owns them, the shared
 * blocks only when no model lends them. */
static cvae_status alloc_blocks(cvae_stack *s, const plan *p, size_t max_batch, int own_params,
                                const cvi_stack_blocks *borrow)
{
    size_t acts, grad[2];
    int threads = cvi_threads_resolve(s->threads);
    cvae_status st = dbuf_floats(s, p, max_batch, grad);
    if (st != CVAE_OK)
        return st;
    if (cvi_mul_overflow(p->act, max_batch, &acts) || acts > CVI_MAX_ELEMS)
        return too_large(s, "the activation block for this batch");
    s->owns_params = own_params;
    if (own_params) {
        s->params = p->nparams ? cvi_alloc_floats(&s->mem, p->nparams) : NULL;
        s->grads = p->nparams ? cvi_alloc_floats(&s->mem, p->nparams) : NULL;
    }
    s->acts = cvi_alloc_floats(&s->mem, acts);
    s->act = cvi_calloc(&s->mem, s->count + 1, sizeof *s->act);
    s->borrowed = borrow != NULL;
    if (borrow) {
        s->dbuf[0] = borrow->dbuf[0];
        s->dbuf[1] = borrow->dbuf[1];
        s->dbuf_image[0] = borrow->dbuf_floats[0] / max_batch;
        s->dbuf_image[1] = borrow->dbuf_floats[1] / max_batch;
        s->gemm_ws = borrow->gemm_ws;
        s->scratch = borrow->scratch;
        threads = borrow->gemm_threads;
    } else {
        /* A block no layer writes still gets a float: NULL means failure. */
        s->dbuf[0] = cvi_alloc_floats(&s->mem, grad[0] ? grad[0] : 1);
        s->dbuf[1] = cvi_alloc_floats(&s->mem, grad[1] ? grad[1] : 1);
        s->dbuf_image[0] = grad[0] / max_batch;
        s->dbuf_image[1] = grad[1] / max_batch;
        s->gemm_ws = cvi_alloc_floats(&s->mem, cvi_gemm_workspace_floats(threads));
        s->scratch = p->scratch ? cvi_alloc_floats(&s->mem, p->scratch) : NULL;
    }
    if ((own_params && p->nparams && (!s->params || !s->grads)) || !s->acts || !s->dbuf[0] ||
        !s->dbuf[1] || !s->gemm_ws || (p->scratch && !s->scratch) || !s->act) {
        free_blocks(s);
        s->owns_params = s->borrowed = 0;
        s->params = s->grads = s->acts = s->dbuf[0] = s->dbuf[1] = s->gemm_ws = s->scratch = NULL;
        s->act = NULL;
        cvi_set_error(s->err, "stack_build: out of memory (%zu floats of activations)", acts);
        return CVAE_ERR_NOMEM;
    }
    s->gemm_threads = threads;
    return CVAE_OK;
}

/* Checks the arguments of a build and binds every layer; allocates nothing. */
static cvae_status check_and_bind(cvae_stack *stack, int channels, int height, int width,
                                  int max_batch, cvi_shape *in, plan *p)
{
    size_t size;
    if (stack->built) {
        cvi_set_error(stack->err, "stack_build: the stack is already built");
        return CVAE_ERR_STATE;
    }
    if (stack->count == 0) {
        cvi_set_error(stack->err, "stack_build: the stack has no layers");
        return CVAE_ERR_INVALID_ARG;
    }
    if (channels < 1 || height < 1 || width < 1 || max_batch < 1) {
        cvi_set_error(stack->err,
                      "stack_build: input %dx%dx%d and max batch %d must all be at least 1",
                      channels, height, width, max_batch);
        return CVAE_ERR_INVALID_ARG;
    }
    in->c = (size_t)channels;
    in->h = (size_t)height;
    in->w = (size_t)width;
    if (cvi_mul_overflow(in->c, in->h, &size) || cvi_mul_overflow(size, in->w, &size) ||
        size > CVI_MAX_ELEMS)
        return too_large(stack, "the input shape");
    return bind_layers(stack, *in, (size_t)max_batch, p);
}

/* Points every layer at its slices of the blocks and marks the stack built. */
static void place_layers(cvae_stack *stack, cvi_shape in, const plan *p, size_t max_batch)
{
    size_t i, offset = 0;
    float *next;
    stack->in = in;
    stack->max_batch = max_batch;
    stack->nparams = p->nparams;
    stack->ws.gemm.path = CVI_GEMM_PATH_AUTO;
    stack->ws.gemm.threads = stack->gemm_threads;
    stack->ws.gemm.ws = stack->gemm_ws;
    stack->ws.scratch = stack->scratch;
    stack->act[0] = stack->acts;
    next = stack->acts + cvi_shape_size(in) * stack->max_batch;
    for (i = 0; i < stack->count; i++) {
        cvae_layer *l = stack->layers[i];
        l->params = l->nparams ? stack->params + offset : NULL;
        l->grads = l->nparams ? stack->grads + offset : NULL;
        offset += l->nparams;
        l->ws = &stack->ws;
        l->max_batch = stack->max_batch;
        l->bound = 1;
        if (l->ops->forward && !relu_in_place(stack, i)) {
            stack->act[i + 1] = next;
            next += cvi_shape_size(l->out) * stack->max_batch;
        } else {
            stack->act[i + 1] = stack->act[i];
        }
    }
    stack->built = 1;
    stack->last_n = 0;
    stack->err[0] = '\0';
}

CVAE_API cvae_status cvae_stack_build(cvae_stack *stack, int channels, int height, int width,
                                      int max_batch, uint64_t seed)
{
    cvi_shape in;
    plan p;
    cvae_status st;
    if (!stack)
        return CVAE_ERR_INVALID_ARG;
    if ((st = check_and_bind(stack, channels, height, width, max_batch, &in, &p)) != CVAE_OK ||
        (st = alloc_blocks(stack, &p, (size_t)max_batch, 1, NULL)) != CVAE_OK)
        return st;
    place_layers(stack, in, &p, (size_t)max_batch);
    cvae_stack_init_params(stack, seed);
    cvae_stack_zero_grad(stack);
    return CVAE_OK;
}

cvae_status cvi_stack_plan(cvae_stack *stack, int channels, int height, int width, int max_batch,
                           size_t *nparams, cvi_shape *out, cvi_stack_blocks *needs)
{
    cvi_shape in;
    plan p;
    cvae_status st = check_and_bind(stack, channels, height, width, max_batch, &in, &p);
    memset(needs, 0, sizeof *needs);
    *nparams = st == CVAE_OK ? p.nparams : 0;
    *out = stack->out;
    if (st == CVAE_OK) {
        st = dbuf_floats(stack, &p, (size_t)max_batch, needs->dbuf_floats);
        needs->scratch_floats = p.scratch;
    }
    if (st == CVAE_OK && (cvi_mul_overflow(p.act, (size_t)max_batch, &needs->act_floats) ||
                          needs->act_floats > CVI_MAX_ELEMS))
        st = too_large(stack, "the activation block for this batch");
    return st;
}

cvae_status cvi_stack_build_shared(cvae_stack *stack, int channels, int height, int width,
                                   int max_batch, float *params, float *grads,
                                   const cvi_stack_blocks *shared)
{
    cvi_shape in;
    plan p;
    cvae_status st;
    if ((st = check_and_bind(stack, channels, height, width, max_batch, &in, &p)) != CVAE_OK ||
        (st = alloc_blocks(stack, &p, (size_t)max_batch, 0, shared)) != CVAE_OK)
        return st;
    stack->params = params;
    stack->grads = grads;
    place_layers(stack, in, &p, (size_t)max_batch);
    return CVAE_OK;
}

void cvi_stack_use_gemm_ws(cvae_stack *stack, float *ws, int threads)
{
    stack->gemm_ws = stack->ws.gemm.ws = ws;
    stack->gemm_threads = threads;
}

void cvi_stack_init_rng(cvae_stack *stack, cvi_rng *rng)
{
    size_t i;
    for (i = 0; i < stack->count; i++)
        if (stack->layers[i]->ops->init)
            stack->layers[i]->ops->init(stack->layers[i], rng);
}

static cvae_status require_built(cvae_stack *s, const char *what)
{
    if (!s->built) {
        cvi_set_error(s->err, "%s: the stack is not built", what);
        return CVAE_ERR_STATE;
    }
    return CVAE_OK;
}

CVAE_API cvae_status cvae_stack_init_params(cvae_stack *stack, uint64_t seed)
{
    cvi_rng rng;
    cvae_status st;
    if (!stack)
        return CVAE_ERR_INVALID_ARG;
    if ((st = require_built(stack, "stack_init_params")) != CVAE_OK)
        return st;
    cvi_rng_seed(&rng, seed);
    cvi_stack_init_rng(stack, &rng);
    return CVAE_OK;
}

static cvae_status shape_out(const cvae_stack *s, cvi_shape shape, int *c, int *h, int *w)
{
    if (!s)
        return CVAE_ERR_INVALID_ARG;
    if (!s->built)
        return CVAE_ERR_STATE;
    cvi_shape_out(shape, c, h, w);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_stack_input_shape(const cvae_stack *stack, int *c, int *h, int *w)
{
    return shape_out(stack, stack ? stack->in : (cvi_shape){0, 0, 0}, c, h, w);
}

CVAE_API cvae_status cvae_stack_output_shape(const cvae_stack *stack, int *c, int *h, int *w)
{
    return shape_out(stack, stack ? stack->out : (cvi_shape){0, 0, 0}, c, h, w);
}

CVAE_API int cvae_stack_max_batch(const cvae_stack *stack)
{
    return stack && stack->built ? (int)stack->max_batch : 0;
}

CVAE_API float *cvae_stack_params(cvae_stack *stack, size_t *count)
{
    if (count)
        *count = stack && stack->built ? stack->nparams : 0;
    return stack && stack->built ? stack->params : NULL;
}

CVAE_API float *cvae_stack_grads(cvae_stack *stack, size_t *count)
{
    if (count)
        *count = stack && stack->built ? stack->nparams : 0;
    return stack && stack->built ? stack->grads : NULL;
}

CVAE_API cvae_status cvae_stack_zero_grad(cvae_stack *stack)
{
    cvae_status st;
    if (!stack)
        return CVAE_ERR_INVALID_ARG;
    if ((st = require_built(stack, "stack_zero_grad")) != CVAE_OK)
        return st;
    if (stack->nparams)
        memset(stack->grads, 0, stack->nparams * sizeof(float));
    return CVAE_OK;
}

static cvae_status check_batch(cvae_stack *s, const char *what, int n)
{
    if (n < 1 || (size_t)n > s->max_batch) {
        cvi_set_error(s->err, "%s: batch %d is not in [1, %zu]", what, n, s->max_batch);
        return CVAE_ERR_INVALID_ARG;
    }
    return CVAE_OK;
}

/* Floats per image of layer i's input (act[i]) and output (act[i + 1]):
 * a view or an in-place relu keeps the size, so its slices line up. */
static size_t in_size(const cvae_stack *s, size_t i) { return cvi_shape_size(s->layers[i]->in); }
static size_t out_size(const cvae_stack *s, size_t i) { return cvi_shape_size(s->layers[i]->out); }

/* Whether layer i writes its output through the relu that follows it (its
 * kind fuses one, and the relu works in place: layer i's output, which the
 * relu would overwrite, is read by nobody else). */
static int relu_fused(const cvae_stack *s, size_t i)
{
    return i + 1 < s->count && s->layers[i]->ops->fuses_relu && relu_in_place(s, i + 1);
}

const float *cvi_stack_forward_part(cvae_stack *stack, const cvi_workspace *ws, size_t first,
                                    size_t n, const float *in)
{
    size_t i, isz = cvi_shape_size(stack->in);
    memcpy(stack->act[0] + first * isz, in, n * isz * sizeof(float));
    for (i = 0; i < stack->count; i++) {
        cvae_layer *l = stack->layers[i];
        float *out = stack->act[i + 1] + first * out_size(stack, i);
        const float *x = stack->act[i] + first * in_size(stack, i);
        if (!l->ops->forward)
            continue;
        if (relu_fused(stack, i)) { /* one pass over the output instead of two */
            cvi_workspace fused = *ws;
            fused.relu = 1;
            l->ops->forward(l, out, x, n, &fused);
            i++; /* the relu is done */
            continue;
        }
        l->ops->forward(l, out, x, n, ws);
    }
    return cvi_stack_part_output(stack, first);
}

void cvi_team_barrier(void)
{
#ifdef _OPENMP
#pragma omp barrier
#endif
}

/* Whether two parts are one run of rows. */
static int adjacent(const cvi_stack_part *p)
{
    return p[1].first == p[0].first + p[0].n;
}

const float *cvi_stack_part_output(const cvae_stack *stack, size_t first)
{
    return stack->act[stack->count] + first * cvi_shape_size(stack->out);
}

void cvi_stack_forward_lanes(cvae_stack *stack, const cvi_stack_part *p)
{
    /* Every layer's forward computes each image alone, so the two parts'
     * rows in one call give each part's bits. */
    if (adjacent(p)) {
        cvi_stack_forward_part(stack, p[0].ws, p[0].first, p[0].n + p[1].n, p[0].in);
        return;
    }
    cvi_stack_forward_part(stack, p[0].ws, p[0].first, p[0].n, p[0].in);
    cvi_stack_forward_part(stack, p[1].ws, p[1].first, p[1].n, p[1].in);
}

CVAE_API cvae_status cvae_stack_forward(cvae_stack *stack, const float *in, int n,
                                        const float **output)
{
    cvae_status st;
    const float *y;
    if (!stack)
        return CVAE_ERR_INVALID_ARG;
    if ((st = require_built(stack, "stack_forward")) != CVAE_OK ||
        (st = check_batch(stack, "stack_forward", n)) != CVAE_OK)
        return st;
    if (!in) {
        cvi_set_error(stack->err, "stack_forward: in is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    cvi_stack_prepare_threads(stack);
    y = cvi_stack_forward_part(stack, &stack->ws, 0, (size_t)n, in);
    stack->last_n = (size_t)n;
    if (output)
        *output = y;
    stack->err[0] = '\0';
    return CVAE_OK;
}

CVAE_API const float *cvae_stack_output(const cvae_stack *stack)
{
    return stack && stack->built && stack->last_n ? stack->act[stack->count] : NULL;
}

void cvi_stack_backward_lanes(cvae_stack *stack, const cvi_stack_part *p)
{
    const float *g[2];
    size_t i;
    int gi = GRAD_DOUT, k, join = adjacent(p), want_din = p[0].din != NULL;
    g[0] = p[0].in;
    g[1] = p[1].in;
    for (i = stack->count; i-- > 0;) {
        cvae_layer *l = stack->layers[i];
        /* An input gradient is wanted if the caller asked for it or an
         * earlier layer has parameters to reach. */
        int want = want_din || i > stack->first_param;
        float *target[2];
        if (!l->ops->backward)
            continue; /* a view: its input gradient is its output gradient */
        if (want)
            gi = grad_target(stack, i, gi, want_din);
        /* Both lanes are at the same layer: their rows of a dbuf can be
         * this layer's rows, so that they are one run for a joint call. */
        for (k = 0; k < 2; k++)
            target[k] = !want ? NULL
                        : gi == GRAD_DIN ? p[k].din
                                         : stack->dbuf[gi] + p[k].first * in_size(stack, i);
        if (join && !l->nparams) { /* each image alone: both parts at once */
            l->ops->backward(l, target[0], g[0], stack->act[i] + p[0].first * in_size(stack, i),
                             stack->act[i + 1] + p[0].first * out_size(stack, i),
                             p[0].n + p[1].n, p[0].ws);
        } else if (join && l->ops->backward_lanes &&
                   l->ops->backward_lanes(l, target[0], g[0],
                                          stack->act[i] + p[0].first * in_size(stack, i), p[0].n,
                                          p[1].n, p[0].ws, p[1].ws)) {
            if (p[1].ws->hook)
                p[1].ws->hook->done(p[1].ws->hook, l);
        } else {
            for (k = 0; k < 2; k++) {
                const cvi_workspace *ws = p[k].ws;
                l->ops->backward(l, target[k], g[k],
                                 stack->act[i] + p[k].first * in_size(stack, i),
                                 stack->act[i + 1] + p[k].first * out_size(stack, i), p[k].n,
                                 ws);
                if (ws->hook && l->nparams)
                    ws->hook->done(ws->hook, l);
            }
        }
        if (!want)
            break;
        g[0] = target[0];
        g[1] = target[1];
    }
    for (k = 0; k < 2; k++)
        if (p[k].din && g[k] != p[k].din)
            memmove(p[k].din, g[k], p[k].n * cvi_shape_size(stack->in) * sizeof(float));
}

void cvi_stack_backward_part(cvae_stack *stack, const cvi_workspace *ws, size_t first, size_t n,
                             const float *dout, float *din)
{
    const float *g = dout;
    size_t i;
    int gi = GRAD_DOUT;
    for (i = stack->count; i-- > 0;) {
        cvae_layer *l = stack->layers[i];
        const float *x = stack->act[i] + first * in_size(stack, i);
        const float *y = stack->act[i + 1] + first * out_size(stack, i);
        /* An input gradient is wanted if the caller asked for it or an
         * earlier layer has parameters to reach. */
        int want = din != NULL || i > stack->first_param;
        float *target;
        if (!l->ops->backward)
            continue; /* a view: its input gradient is its output gradient */
        if (!want) {
            l->ops->backward(l, NULL, g, x, y, n, ws);
            if (ws->hook && l->nparams)
                ws->hook->done(ws->hook, l);
            break;
        }
        gi = grad_target(stack, i, gi, din != NULL);
        /* A part's rows of a dbuf start at first times the dbuf's floats
         * per image, whatever the layer: parts stay apart even when the
         * encoder of one and the decoder of another share the dbufs. */
        target = gi == GRAD_DIN ? din : stack->dbuf[gi] + first * stack->dbuf_image[gi];
        l->ops->backward(l, target, g, x, y, n, ws);
        if (ws->hook && l->nparams)
            ws->hook->done(ws->hook, l);
        g = target;
    }
    if (din && g != din)
        memmove(din, g, n * cvi_shape_size(stack->in) * sizeof(float));
}

CVAE_API cvae_status cvae_stack_backward(cvae_stack *stack, const float *dout, int n, float *din)
{
    cvae_status st;
    if (!stack)
        return CVAE_ERR_INVALID_ARG;
    if ((st = require_built(stack, "stack_backward")) != CVAE_OK ||
        (st = check_batch(stack, "stack_backward", n)) != CVAE_OK)
        return st;
    if (!dout) {
        cvi_set_error(stack->err, "stack_backward: dout is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    if ((size_t)n != stack->last_n) {
        cvi_set_error(stack->err, "stack_backward: batch %d does not match the last forward (%zu)",
                      n, stack->last_n);
        return CVAE_ERR_STATE;
    }
    cvi_stack_prepare_threads(stack);
    cvi_stack_backward_part(stack, &stack->ws, 0, (size_t)n, dout, din);
    stack->err[0] = '\0';
    return CVAE_OK;
}

size_t cvi_stack_in_size(const cvae_stack *stack) { return cvi_shape_size(stack->in); }

const float *cvi_stack_forward_part_output(const cvae_stack *stack)
{
    return stack->act[stack->count];
}

cvi_workspace cvi_stack_workspace(cvae_stack *stack)
{
    cvi_stack_prepare_threads(stack);
    return stack->ws;
}

void cvi_stack_prepare_threads(cvae_stack *stack)
{
    int n = cvi_threads_resolve(stack->threads);
    stack->ws.gemm.threads = n < stack->gemm_threads ? n : stack->gemm_threads;
}

int cvi_stack_threads(const cvae_stack *stack)
{
    return stack->threads;
}

CVAE_API cvae_status cvae_stack_set_threads(cvae_stack *stack, int threads)
{
    int n;
    if (!stack)
        return CVAE_ERR_INVALID_ARG;
    if (threads < 0 || threads > CVI_MAX_THREADS) {
        cvi_set_error(stack->err, "stack_set_threads: %d threads is not in [0, %d]", threads,
                      CVI_MAX_THREADS);
        return CVAE_ERR_INVALID_ARG;
    }
    n = cvi_threads_resolve(threads);
    if (stack->built && n > stack->gemm_threads && stack->borrowed) {
        cvi_set_error(stack->err, "stack_set_threads: the stack's buffers belong to its model, "
                                  "which sets its threads (CVAE_MODEL_THREADS)");
        return CVAE_ERR_STATE;
    }
    if (stack->built && n > stack->gemm_threads) {
        /* More threads than the packing buffers were sized for: grow them
         * now, so that no later call allocates. */
        float *ws = cvi_alloc_floats(&stack->mem, cvi_gemm_workspace_floats(n));
        if (!ws) {
            cvi_set_error(stack->err, "stack_set_threads: out of memory for %d threads", n);
            return CVAE_ERR_NOMEM;
        }
        cvi_free_floats(&stack->mem, stack->gemm_ws);
        stack->gemm_ws = stack->ws.gemm.ws = ws;
        stack->gemm_threads = n;
    }
    stack->threads = threads;
    stack->err[0] = '\0';
    return CVAE_OK;
}

CVAE_API int cvae_stack_get_threads(const cvae_stack *stack)
{
    return stack ? stack->threads : 0;
}

int cvi_stack_set_labels(cvae_stack *stack, const int *labels)
{
    size_t i;
    int classes = 0;
    stack->ws.labels = labels;
    for (i = 0; i < stack->count; i++) {
        cvae_layer *l = stack->layers[i];
        if (l->ops->kind != CVAE_LAYER_CONCAT_LABEL)
            continue;
        if (classes && (size_t)classes != l->hp.label.classes)
            classes = -1;
        else if (classes == 0)
            classes = (int)l->hp.label.classes;
    }
    return classes;
}
