/*
 * cvae.h - libcvae, convolutional variational autoencoders in portable C99.
 *
 * The only public header. Everything here is covered by the ABI promise in
 * docs/ABI.md: what one release exports, the next release still exports with the
 * same meaning. Objects are opaque handles; options are set by key, never through
 * public structs.
 *
 * Conventions used by every function below:
 *  - Fallible functions return a cvae_status. CVAE_OK (0) means success; on
 *    failure the handle is left as it was before the call (unless stated
 *    otherwise) and a message with the details is available from the handle's
 *    *_last_error() function.
 *  - Constructors hand the new object out through a pointer argument, which is
 *    set to NULL on failure. Destructors accept NULL.
 *  - The library never prints, never exits and never aborts.
 *  - Tensors are float32, batch-first N x C x H x W, contiguous, row-major.
 *  - Threading: there is no global mutable state. Distinct handles may be used
 *    from distinct threads at the same time. One handle (and, for a stack, the
 *    layers it owns) must not be used from two threads at once.
 */
#ifndef CVAE_H
#define CVAE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version */

/* The version of this header. The Makefile and pkg-config file read these. */
#define CVAE_VERSION_MAJOR 0
#define CVAE_VERSION_MINOR 1
#define CVAE_VERSION_PATCH 0
#define CVAE_VERSION_NUMBER                                                    \
    (CVAE_VERSION_MAJOR * 10000 + CVAE_VERSION_MINOR * 100 + CVAE_VERSION_PATCH)
#define CVAE_VERSION_STRING "0.1.0"

/* Marks every exported function. The shared library is built with
 * -fvisibility=hidden, so only functions carrying this macro are exported. */
#if defined(_WIN32) && defined(CVAE_BUILDING_DLL)
#define CVAE_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define CVAE_API __attribute__((visibility("default")))
#else
#define CVAE_API
#endif

/* The version of the library actually loaded, as CVAE_VERSION_NUMBER would
 * give it (M*10000 + m*100 + p). Compare with CVAE_VERSION_NUMBER to detect a
 * header/library mismatch. Thread-safe. Since 0.1.0. */
CVAE_API int cvae_version_number(void);

/* The version of the loaded library as "M.m.p". Static string, never NULL.
 * Thread-safe. Since 0.1.0. */
CVAE_API const char *cvae_version_string(void);

/* ----------------------------------------------------------------- status */

/* Result of every fallible call. The values are pinned: they never change and
 * are never reused, so they may be stored or compared across releases. */
typedef enum cvae_status {
    CVAE_OK = 0,
    CVAE_ERR_INVALID_ARG = 1, /* NULL pointer, zero/negative size, bad option */
    CVAE_ERR_NOMEM = 2,       /* an allocation failed */
    CVAE_ERR_SHAPE = 3,       /* tensor shapes do not fit together */
    CVAE_ERR_STATE = 4,       /* call out of order (e.g. forward before build) */
    CVAE_ERR_IO = 5,          /* reading or writing a file failed */
    CVAE_ERR_FORMAT = 6,      /* a file is malformed, truncated or corrupt */
    CVAE_ERR_VERSION = 7,     /* a file needs a newer format version */
    CVAE_ERR_NUMERIC = 8,     /* a NaN or infinity where a finite number is needed */
    CVAE_ERR_TOO_LARGE = 9    /* a size product would overflow or is absurd */
} cvae_status;

/* A short static description of a status ("bad argument", ...). Never NULL;
 * unknown values give "unknown status". Thread-safe. Since 0.1.0. */
CVAE_API const char *cvae_status_string(cvae_status status);

/* ---------------------------------------------------------------- handles */

typedef struct cvae_layer cvae_layer;         /* one layer with its hyper-parameters */
typedef struct cvae_stack cvae_stack;         /* a sequence of layers, built for a shape */
typedef struct cvae_model cvae_model;         /* a VAE (functions: release 0.2) */
typedef struct cvae_optimizer cvae_optimizer; /* Adam, SGD (functions: release 0.2) */
typedef struct cvae_dataset cvae_dataset;     /* images and labels (functions: release 0.2) */

/* ----------------------------------------------------------------- layers */

/* Layer kinds, pinned values. */
typedef enum cvae_layer_kind {
    CVAE_LAYER_CONV2D = 1,
    CVAE_LAYER_CONV_TRANSPOSE2D = 2,
    CVAE_LAYER_LINEAR = 3,
    CVAE_LAYER_RELU = 4,
    CVAE_LAYER_LEAKY_RELU = 5,
    CVAE_LAYER_SIGMOID = 6,
    CVAE_LAYER_TANH = 7,
    CVAE_LAYER_FLATTEN = 8,
    CVAE_LAYER_RESHAPE = 9
} cvae_layer_kind;

/* Layer options (keys in the 200s), read and written as double. */
typedef enum cvae_layer_option {
    CVAE_LAYER_LEAKY_SLOPE = 200 /* leaky_relu: slope for x < 0, finite, in [0, 1) */
} cvae_layer_option;

/*
 * Layer constructors. A layer is created with its hyper-parameters only; it
 * learns its input shape (C x H x W) when its stack is built, and the build
 * fails with CVAE_ERR_SHAPE and a message if the shape does not fit.
 * On success *out owns a new layer (free it with cvae_layer_destroy, or give it
 * to a stack with cvae_stack_add). On failure *out is NULL.
 * Returns CVAE_OK, CVAE_ERR_INVALID_ARG (out NULL or a hyper-parameter out of
 * range, as stated per function) or CVAE_ERR_NOMEM. Thread-safe. Since 0.1.0.
 */

/* 2-d convolution (cross-correlation, as PyTorch's Conv2d) with out_channels
 * filters of kernel_h x kernel_w, per-axis stride (>= 1) and zero padding
 * (>= 0). Input channels come from the input shape. Output side:
 * (in + 2*pad - kernel) / stride + 1. Parameters: weight (out, in, kh, kw)
 * then bias (out). Initialised as PyTorch: uniform in +-1/sqrt(in*kh*kw). */
CVAE_API cvae_status cvae_layer_create_conv2d(cvae_layer **out, int out_channels, int kernel_h,
                                              int kernel_w, int stride_h, int stride_w, int pad_h,
                                              int pad_w);

/* 2-d transposed convolution (PyTorch's ConvTranspose2d without output
 * padding or dilation): the input gradient of conv2d run forward. Output
 * side: (in - 1) * stride - 2 * pad + kernel, which must be >= 1.
 * Parameters: weight (in, out, kh, kw) then bias (out). Initialised as
 * PyTorch: uniform in +-1/sqrt(out*kh*kw). */
CVAE_API cvae_status cvae_layer_create_conv_transpose2d(cvae_layer **out, int out_channels,
                                                        int kernel_h, int kernel_w, int stride_h,
                                                        int stride_w, int pad_h, int pad_w);

/* Fully connected layer. The input C x H x W is read as C*H*W features; the
 * output shape is out_features x 1 x 1. Parameters: weight (out, in) then
 * bias (out). Initialised as PyTorch: uniform in +-1/sqrt(in). */
CVAE_API cvae_status cvae_layer_create_linear(cvae_layer **out, int out_features);

/* Element-wise activations; output shape equals input shape. No parameters. */
CVAE_API cvae_status cvae_layer_create_relu(cvae_layer **out);
/* slope must be finite and in [0, 1) (PyTorch's default is 0.01). */
CVAE_API cvae_status cvae_layer_create_leaky_relu(cvae_layer **out, float slope);
CVAE_API cvae_status cvae_layer_create_sigmoid(cvae_layer **out);
CVAE_API cvae_status cvae_layer_create_tanh(cvae_layer **out);

/* Shape-only layers: flatten makes C x H x W into (C*H*W) x 1 x 1; reshape
 * makes it channels x height x width, which must hold the same element count.
 * Neither copies data. */
CVAE_API cvae_status cvae_layer_create_flatten(cvae_layer **out);
CVAE_API cvae_status cvae_layer_create_reshape(cvae_layer **out, int channels, int height,
                                               int width);

/* Frees a layer that no stack owns. NULL is a no-op, and so is a layer owned
 * by a stack: the stack frees its layers when it is destroyed. Since 0.1.0. */
CVAE_API void cvae_layer_destroy(cvae_layer *layer);

/* The layer's kind, or 0 for NULL. Since 0.1.0. */
CVAE_API cvae_layer_kind cvae_layer_get_kind(const cvae_layer *layer);

/* The kind's name ("conv2d", "linear", ...), static, never NULL ("?" for
 * NULL). Since 0.1.0. */
CVAE_API const char *cvae_layer_kind_name(const cvae_layer *layer);

/* A message describing the latest failure on this layer (which argument,
 * which shape, which numbers); "" on a new handle. Read it right after the
 * call that failed: a
 * later call may replace it, and successful calls may reset it to "".
 * Functions that take a const handle report through their status only and
 * leave the message alone; a failed cvae_stack_build also sets the message of
 * the layer that did not fit. Borrowed; valid until the next call on the
 * layer. NULL gives a static message. Since 0.1.0. */
CVAE_API const char *cvae_layer_last_error(const cvae_layer *layer);

/* Set and read an option by key. Returns CVAE_ERR_INVALID_ARG for a NULL
 * handle, a key this kind of layer does not have, a NULL value pointer or a
 * value out of range (the message states the range). Setting is refused with
 * CVAE_ERR_STATE once the layer's stack is built. Since 0.1.0. */
CVAE_API cvae_status cvae_layer_set_option(cvae_layer *layer, cvae_layer_option key,
                                           double value);
CVAE_API cvae_status cvae_layer_get_option(const cvae_layer *layer, cvae_layer_option key,
                                           double *value);

/* The smallest and largest value an option accepts, both inclusive (for
 * CVAE_LAYER_LEAKY_SLOPE: 0 and the largest float below 1).
 * CVAE_ERR_INVALID_ARG for a NULL pointer or a key the layer does not have.
 * Since 0.1.0. */
CVAE_API cvae_status cvae_layer_option_bounds(const cvae_layer *layer, cvae_layer_option key,
                                              double *min, double *max);

/* Input and output shapes (channels, height, width) learnt at build time.
 * Any of c, h, w may be NULL. CVAE_ERR_STATE before the stack is built.
 * Since 0.1.0. */
CVAE_API cvae_status cvae_layer_input_shape(const cvae_layer *layer, int *c, int *h, int *w);
CVAE_API cvae_status cvae_layer_output_shape(const cvae_layer *layer, int *c, int *h, int *w);

/* Number of parameters (0 for layers without any, and before build). */
CVAE_API size_t cvae_layer_param_count(const cvae_layer *layer);

/* The layer's parameters and gradients, a view into its stack's parameter and
 * gradient blocks (layout given per constructor; weight, then bias). Borrowed:
 * valid until the stack is destroyed. Writable: the caller may set
 * parameters. NULL before build or for layers without parameters.
 * Since 0.1.0. */
CVAE_API float *cvae_layer_params(cvae_layer *layer);
CVAE_API float *cvae_layer_grads(cvae_layer *layer);

/*
 * Run one layer of a built stack on n images (1 <= n <= the stack's max
 * batch), using the stack's workspace (so not concurrently with any other
 * call on that stack). in holds n x input shape floats; out receives n x
 * output shape floats; they must not overlap. Returns CVAE_ERR_INVALID_ARG
 * (NULL pointer, bad n), CVAE_ERR_STATE (stack not built). Since 0.1.0.
 */
CVAE_API cvae_status cvae_layer_forward(cvae_layer *layer, const float *in, float *out, int n);

/*
 * Backward pass of one layer: given the forward's in and out and the loss
 * gradient dout with respect to out, adds the parameter gradients into the
 * layer's gradient block (+=) and, when din is not NULL, writes the gradient
 * with respect to in into din (=). Same rules as cvae_layer_forward.
 * Since 0.1.0.
 */
CVAE_API cvae_status cvae_layer_backward(cvae_layer *layer, const float *in, const float *out,
                                         const float *dout, float *din, int n);

/* ----------------------------------------------------------------- stacks */

/*
 * A stack is an ordered list of layers run one after the other. Building it
 * for an input shape and a maximum batch size infers every layer's shapes,
 * places all parameters in one contiguous block (gradients in a mirror block
 * of the same layout, layer after layer in order) and allocates every
 * activation buffer and workspace, so that forward and backward never
 * allocate.
 */

/* Creates an empty stack. CVAE_ERR_INVALID_ARG, CVAE_ERR_NOMEM. Since 0.1.0. */
CVAE_API cvae_status cvae_stack_create(cvae_stack **out);

/* Frees the stack and every layer it owns. NULL is a no-op. Since 0.1.0. */
CVAE_API void cvae_stack_destroy(cvae_stack *stack);

/* A message describing the latest failure on this stack; same rules as
 * cvae_layer_last_error. Since 0.1.0. */
CVAE_API const char *cvae_stack_last_error(const cvae_stack *stack);

/*
 * Appends a layer. The stack takes ownership of the layer in every case: on
 * failure the layer is destroyed, so a caller may pass a constructor's result
 * straight in. Returns CVAE_ERR_INVALID_ARG (NULL stack or layer, or a layer
 * that already belongs to a stack, which is then left alone), CVAE_ERR_STATE
 * (stack already built), CVAE_ERR_NOMEM. Since 0.1.0.
 */
CVAE_API cvae_status cvae_stack_add(cvae_stack *stack, cvae_layer *layer);

/* Number of layers, and the i-th layer (borrowed, owned by the stack; NULL if
 * out of range). Since 0.1.0. */
CVAE_API int cvae_stack_layer_count(const cvae_stack *stack);
CVAE_API cvae_layer *cvae_stack_layer(cvae_stack *stack, int index);

/*
 * Builds the stack for inputs of channels x height x width and batches of at
 * most max_batch images: infers shapes, allocates the parameter, gradient,
 * activation and workspace blocks, initialises the parameters from a
 * generator seeded with seed (see cvae_stack_init_params) and zeroes the
 * gradients. Can be called once. Returns CVAE_ERR_INVALID_ARG (sizes < 1,
 * empty stack), CVAE_ERR_SHAPE (a layer does not fit its input; the message
 * names the layer, its index and the shapes), CVAE_ERR_TOO_LARGE (a size
 * product overflows, a tensor would exceed 2^32 elements or a side INT_MAX),
 * CVAE_ERR_STATE (already built), CVAE_ERR_NOMEM.
 * On failure the stack is unchanged and may be built again. Since 0.1.0.
 */
CVAE_API cvae_status cvae_stack_build(cvae_stack *stack, int channels, int height, int width,
                                      int max_batch, uint64_t seed);

/*
 * Re-initialises every parameter as PyTorch's defaults do (Kaiming-uniform
 * weights, uniform biases, bounds given per layer) from xoshiro256** seeded
 * by splitmix64(seed), layer by layer in order. The same seed gives the same
 * parameters on every platform. CVAE_ERR_STATE before build. Since 0.1.0.
 */
CVAE_API cvae_status cvae_stack_init_params(cvae_stack *stack, uint64_t seed);

/* Input and output shape of a built stack (any pointer may be NULL), and its
 * maximum batch. CVAE_ERR_STATE before build. Since 0.1.0. */
CVAE_API cvae_status cvae_stack_input_shape(const cvae_stack *stack, int *c, int *h, int *w);
CVAE_API cvae_status cvae_stack_output_shape(const cvae_stack *stack, int *c, int *h, int *w);
CVAE_API int cvae_stack_max_batch(const cvae_stack *stack);

/* The parameter and gradient blocks: *count (may be NULL) receives their
 * length. Borrowed, writable, valid until the stack is destroyed. NULL (and
 * count 0) before build. Since 0.1.0. */
CVAE_API float *cvae_stack_params(cvae_stack *stack, size_t *count);
CVAE_API float *cvae_stack_grads(cvae_stack *stack, size_t *count);

/* Sets every gradient to zero. CVAE_ERR_STATE before build. Since 0.1.0. */
CVAE_API cvae_status cvae_stack_zero_grad(cvae_stack *stack);

/*
 * Runs the stack on n images (1 <= n <= max batch): in holds n x input shape
 * floats and is copied, so the caller may reuse it at once. On success
 * *output (if output is not NULL) points at the n x output shape result,
 * borrowed, valid until the next forward or the stack's destruction. The
 * activations are kept for cvae_stack_backward. Returns
 * CVAE_ERR_INVALID_ARG, CVAE_ERR_STATE (not built). Since 0.1.0.
 */
CVAE_API cvae_status cvae_stack_forward(cvae_stack *stack, const float *in, int n,
                                        const float **output);

/* The output of the last forward (NULL if none). Since 0.1.0. */
CVAE_API const float *cvae_stack_output(const cvae_stack *stack);

/*
 * Backpropagates dout, the loss gradient with respect to the last forward's
 * output (n must equal that forward's n), through every layer: parameter
 * gradients are added (+=) into the gradient block, and when din is not NULL
 * it receives the gradient with respect to the input (n x input shape). The
 * work for input gradients nobody needs is skipped. Returns
 * CVAE_ERR_INVALID_ARG, CVAE_ERR_STATE (not built, or no forward with this
 * n before). Since 0.1.0.
 */
CVAE_API cvae_status cvae_stack_backward(cvae_stack *stack, const float *dout, int n,
                                         float *din);

#ifdef __cplusplus
}
#endif

#endif /* CVAE_H */
