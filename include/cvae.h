/*
 * cvae.h - libcvae, convolutional variational autoencoders in portable C99.
 *
 * The only public header. Everything here is covered by the ABI promise in
 * docs/ABI.md: what one release exports, the next release still exports with the
 * same meaning. Objects are opaque handles; options are set by key, never through
 * public structs (the one public struct, cvae_allocator, is frozen).
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
 *  - Memory comes from malloc and free unless a handle was created with an
 *    allocator of its own: see cvae_allocator.
 *  - Inside a call, a stack or model may use several threads of its own
 *    (OpenMP, in a build with it): see cvae_stack_set_threads. Results are
 *    bit-identical whatever the thread count.
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
#define CVAE_VERSION_MINOR 9
#define CVAE_VERSION_PATCH 10
#define CVAE_VERSION_NUMBER                                                    \
    (CVAE_VERSION_MAJOR * 10000 + CVAE_VERSION_MINOR * 100 + CVAE_VERSION_PATCH)
#define CVAE_VERSION_STRING "0.9.10"

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
typedef struct cvae_model cvae_model;         /* a VAE: encoder, decoder, loss */
typedef struct cvae_optimizer cvae_optimizer; /* Adam or SGD over a parameter block */
typedef struct cvae_dataset cvae_dataset;     /* images (uint8) and labels */

/* -------------------------------------------------------------- allocator */

/*
 * Where a handle's memory comes from. By default every handle uses the C
 * library's malloc and free. A program that must place or bound the
 * library's memory (an arena, a pool, a budget, a test injecting failures)
 * passes its own allocator to a *_with constructor:
 *  - alloc_fn(user, size) returns size bytes aligned as malloc's are, or NULL;
 *    the call that needed them then fails with CVAE_ERR_NOMEM and leaves the
 *    handle as it was. size is never 0.
 *  - free_fn(user, ptr) releases a block alloc_fn returned; ptr is never NULL.
 *  - user is passed to both, untouched.
 * The handle keeps a copy of the struct. Everything later done on the handle
 * allocates and frees through it (build, load, set_threads, a dataset's
 * split), and its destructor frees through it, so both functions must stay
 * valid until then. A model gives its allocator to the stacks and layers it
 * creates itself (preset, load); a stack frees each of its layers through
 * the allocator that layer was created with. The functions are only called
 * from inside libcvae calls on that handle, never from worker threads, so a
 * handle used by one thread at a time needs no locking in them.
 * Not covered: the C library's own buffers behind fopen (load and save).
 * Saving a model and cvae_png_write_grid allocate nothing.
 * A NULL allocator means malloc and free; an allocator with a NULL function
 * is refused with CVAE_ERR_INVALID_ARG. This struct is frozen: a later
 * release that needs more will add a new type. Since 0.4.0.
 */
typedef struct cvae_allocator {
    void *(*alloc_fn)(void *user, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} cvae_allocator;

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
    CVAE_LAYER_RESHAPE = 9,
    CVAE_LAYER_CONCAT_LABEL = 10 /* since 0.5.0 */
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

/* The conditioning input of a conditional VAE: appends the one-hot code of
 * each image's label (classes values) to its features. Input C x H x W is
 * read as C*H*W values; output (C*H*W + classes) x 1 x 1. No parameters.
 * Inside a conditional model the labels come from the model's *_labels
 * calls (see cvae_model_train_step_labels); in a stack used on its own the
 * code is all zeros. Backward passes the features' gradient through.
 * classes in [1, 65536]. Since 0.5.0. */
CVAE_API cvae_status cvae_layer_create_concat_label(cvae_layer **out, int classes);
CVAE_API cvae_status cvae_layer_create_concat_label_with(cvae_layer **out, int classes,
                                                         const cvae_allocator *allocator);

/* The same constructors, with the allocator the layer is allocated from and
 * freed through (NULL: malloc and free; see cvae_allocator). Since 0.4.0. */
CVAE_API cvae_status cvae_layer_create_conv2d_with(cvae_layer **out, int out_channels,
                                                   int kernel_h, int kernel_w, int stride_h,
                                                   int stride_w, int pad_h, int pad_w,
                                                   const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_conv_transpose2d_with(cvae_layer **out, int out_channels,
                                                             int kernel_h, int kernel_w,
                                                             int stride_h, int stride_w,
                                                             int pad_h, int pad_w,
                                                             const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_linear_with(cvae_layer **out, int out_features,
                                                   const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_relu_with(cvae_layer **out,
                                                 const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_leaky_relu_with(cvae_layer **out, float slope,
                                                       const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_sigmoid_with(cvae_layer **out,
                                                    const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_tanh_with(cvae_layer **out,
                                                 const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_flatten_with(cvae_layer **out,
                                                    const cvae_allocator *allocator);
CVAE_API cvae_status cvae_layer_create_reshape_with(cvae_layer **out, int channels, int height,
                                                    int width, const cvae_allocator *allocator);

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

/* Creates an empty stack whose blocks (built by cvae_stack_build and
 * cvae_stack_set_threads) come from allocator; NULL means malloc and free.
 * CVAE_ERR_INVALID_ARG, CVAE_ERR_NOMEM. Since 0.4.0. */
CVAE_API cvae_status cvae_stack_create_with(cvae_stack **out, const cvae_allocator *allocator);

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

/*
 * The number of threads the stack's calls use: 0 (the default) means
 * automatic, the OpenMP default (OMP_NUM_THREADS when set, else one per
 * core), read again at every call; n > 0 means n. The work is split so that
 * every result is bit-identical for any thread count. In a build without
 * OpenMP every call runs on the calling thread and the setting is only
 * stored. Raising the count of a built stack above what it was built for
 * allocates the extra per-thread buffers here (CVAE_ERR_NOMEM when that
 * fails; the setting is then unchanged), so that calls never allocate. The
 * stacks of a model share their buffers with each other: set the model's
 * CVAE_MODEL_THREADS instead (CVAE_ERR_STATE when this call would have to
 * grow them). CVAE_ERR_INVALID_ARG when threads is not in [0, 256].
 * Since 0.3.0.
 */
CVAE_API cvae_status cvae_stack_set_threads(cvae_stack *stack, int threads);
/* The setting (0 automatic); 0 for NULL. Since 0.3.0. */
CVAE_API int cvae_stack_get_threads(const cvae_stack *stack);

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

/* --------------------------------------------------------------- datasets */

/*
 * A dataset holds count images of channels x height x width pixels as uint8
 * (0..255) and optionally one label (0..255) per image. Batches are drawn as
 * float pixels / 255 in [0, 1], in the dataset's current order, which is the
 * stored order until cvae_dataset_shuffle.
 * Create an empty handle, then fill it with cvae_dataset_load_idx or
 * cvae_dataset_set_u8; filling again replaces the content.
 * Images that are mostly zero bytes, such as digits on a blank background,
 * are kept in a packed form (runs of zeros and of other bytes) when that
 * takes at most 7/8 of their bytes: MNIST takes about 28 %, Fashion-MNIST
 * about 62 %. Batches are the same floats either way. Packing is the one
 * allocation of a fill that may be refused without failing it: the images
 * then stay unpacked. Since 0.9.1.
 */

/* Creates an empty dataset. CVAE_ERR_INVALID_ARG, CVAE_ERR_NOMEM. Since 0.2.0. */
CVAE_API cvae_status cvae_dataset_create(cvae_dataset **out);

/* Creates an empty dataset whose content (and the two datasets of
 * cvae_dataset_split) is allocated through allocator; NULL means malloc and
 * free. CVAE_ERR_INVALID_ARG, CVAE_ERR_NOMEM. Since 0.4.0. */
CVAE_API cvae_status cvae_dataset_create_with(cvae_dataset **out,
                                              const cvae_allocator *allocator);

/* Frees the dataset. NULL is a no-op. Since 0.2.0. */
CVAE_API void cvae_dataset_destroy(cvae_dataset *ds);

/* A message naming the file and the problem of the latest failure; same
 * rules as cvae_layer_last_error. Since 0.2.0. */
CVAE_API const char *cvae_dataset_last_error(const cvae_dataset *ds);

/*
 * Loads MNIST-style IDX files: images_path (magic 0x00000803: unsigned
 * bytes, 3 dimensions count x height x width, big-endian sizes) and, unless
 * labels_path is NULL, labels_path (magic 0x00000801, 1 dimension, count
 * equal to the images', values 0..9). Plain (uncompressed) files only; if
 * only a ".gz" of a path exists, the message says so and how to decompress
 * it. Everything is validated before use: magic, dimension count, sizes
 * against the file length, overflow-safe products, the label count and
 * values. Returns CVAE_ERR_INVALID_ARG (NULL), CVAE_ERR_IO (cannot open or
 * read, or a directory), CVAE_ERR_FORMAT (any malformation, truncation,
 * trailing bytes, or a header claiming more data than the file holds; bad
 * label), CVAE_ERR_TOO_LARGE (sizes whose product overflows, a side above
 * INT_MAX, or a file really holding more than 2^32 pixels), CVAE_ERR_NOMEM.
 * On failure the dataset keeps its previous content. Since 0.2.0.
 */
CVAE_API cvae_status cvae_dataset_load_idx(cvae_dataset *ds, const char *images_path,
                                           const char *labels_path);

/*
 * Fills the dataset from caller memory (copied): count images of
 * channels x height x width uint8 pixels, N x C x H x W, and labels (count
 * bytes, or NULL for none). CVAE_ERR_INVALID_ARG, CVAE_ERR_TOO_LARGE,
 * CVAE_ERR_NOMEM. Since 0.2.0.
 */
CVAE_API cvae_status cvae_dataset_set_u8(cvae_dataset *ds, int count, int channels, int height,
                                         int width, const uint8_t *pixels,
                                         const uint8_t *labels);

/*
 * Loads the CIFAR-10 binary format from count files (e.g. data_batch_1.bin
 * ... data_batch_5.bin, or test_batch.bin), their records one after the
 * other: each record is 1 label byte (0..9) and 3072 pixel bytes, 3 x 32 x 32
 * channel-planar (1024 red, 1024 green, 1024 blue, rows top to bottom).
 * Every file is checked before anything is allocated: it must hold a whole,
 * non-zero number of 3073-byte records (a file of 3074-byte records is named
 * as CIFAR-100's format, not supported). Labels are checked as read.
 * CVAE_ERR_INVALID_ARG (NULL, count < 1), CVAE_ERR_IO (cannot open or read,
 * or a directory), CVAE_ERR_FORMAT (a partial record, an empty file, a label
 * above 9; the message names the file and record), CVAE_ERR_TOO_LARGE (more
 * than 2^32 pixel values in all: 1,398,101 images), CVAE_ERR_NOMEM. On failure the dataset keeps its
 * previous content. Since 0.6.0.
 */
CVAE_API cvae_status cvae_dataset_load_cifar10(cvae_dataset *ds, const char *const *paths,
                                               int count);

/*
 * Loads count binary netpbm images, one per file and in the order given:
 * PGM "P5" (grey, 1 channel) or PPM "P6" (RGB, 3 channels), 8-bit (maxval
 * 1..255; values are scaled to 0..255 as round(v * 255 / maxval)), header
 * fields separated by whitespace and "#" comments as netpbm allows. All
 * files must have the same kind and size. No labels. Every header is read
 * and checked before anything is allocated. CVAE_ERR_INVALID_ARG (NULL,
 * count < 1), CVAE_ERR_IO (cannot open or read, or a directory),
 * CVAE_ERR_FORMAT (another magic such as ASCII "P2"/"P3", a malformed
 * header, maxval 0 or above 255, a truncated raster, bytes after the
 * raster, a pixel above maxval), CVAE_ERR_SHAPE (a file whose kind or size
 * differs from the first's; the message names both), CVAE_ERR_TOO_LARGE (a
 * side above 65535, or more than 2^32 values, channels x height x width x
 * count, in all), CVAE_ERR_NOMEM. On
 * failure the dataset keeps its previous content. Since 0.6.0.
 */
CVAE_API cvae_status cvae_dataset_load_pnm(cvae_dataset *ds, const char *const *paths,
                                           int count);

/* Number of images (0 for NULL or empty). Since 0.2.0. */
CVAE_API int cvae_dataset_count(const cvae_dataset *ds);

/* Image shape; any pointer may be NULL. CVAE_ERR_STATE when empty. Since 0.2.0. */
CVAE_API cvae_status cvae_dataset_shape(const cvae_dataset *ds, int *channels, int *height,
                                        int *width);

/* 1 if the dataset has labels, else 0. Since 0.2.0. */
CVAE_API int cvae_dataset_has_labels(const cvae_dataset *ds);

/*
 * Puts the images in a pseudo-random order that depends only on seed and
 * the count: a Fisher-Yates shuffle of the stored order driven by
 * xoshiro256** seeded (through splitmix64) with seed, where position i, from
 * count - 1 down to 1, is swapped with j = r mod (i + 1) and r is the first
 * draw >= 2^64 mod (i + 1) (no bias). Shuffling with seed + epoch each epoch
 * gives reproducible epochs, and a resumed run can rebuild any epoch's
 * order. cvae_dataset_shuffle(ds, seed) twice gives the same order.
 * CVAE_ERR_STATE when empty. Since 0.2.0.
 */
CVAE_API cvae_status cvae_dataset_shuffle(cvae_dataset *ds, uint64_t seed);

/* Restores the stored order. Since 0.2.0. */
CVAE_API cvae_status cvae_dataset_unshuffle(cvae_dataset *ds);

/*
 * Copies n images starting at position first of the current order into
 * images (n x C x H x W floats, pixel / 255) and, when labels is not NULL,
 * their labels (n ints; -1 where the dataset has none). Requires
 * first + n <= count. CVAE_ERR_INVALID_ARG, CVAE_ERR_STATE when empty.
 * Since 0.2.0.
 */
CVAE_API cvae_status cvae_dataset_batch(cvae_dataset *ds, int first, int n, float *images,
                                        int *labels);

/*
 * Splits ds into two new datasets: *validation gets the first
 * validation_count images of the order cvae_dataset_shuffle(ds, seed) would
 * give, *train the rest, both in stored order, with their labels. ds is
 * unchanged. CVAE_ERR_INVALID_ARG (count not in [1, count - 1]),
 * CVAE_ERR_STATE (empty), CVAE_ERR_NOMEM. Since 0.2.0.
 */
CVAE_API cvae_status cvae_dataset_split(cvae_dataset *ds, int validation_count, uint64_t seed,
                                        cvae_dataset **train, cvae_dataset **validation);

/* ------------------------------------------------------------- optimizers */

typedef enum cvae_optimizer_kind {
    CVAE_OPTIMIZER_ADAM = 1, /* Adam (Kingma & Ba), optional decoupled weight decay (AdamW) */
    CVAE_OPTIMIZER_SGD = 2   /* SGD with (heavy-ball) momentum, as PyTorch's SGD */
} cvae_optimizer_kind;

/* Optimizer options (keys in the 100s), read and written as double. */
typedef enum cvae_optimizer_option {
    CVAE_OPT_LR = 100,           /* learning rate, > 0; default 1e-3 (Adam), 1e-2 (SGD) */
    CVAE_OPT_BETA1 = 101,        /* Adam, [0, 1); default 0.9 */
    CVAE_OPT_BETA2 = 102,        /* Adam, [0, 1); default 0.999 */
    CVAE_OPT_EPS = 103,          /* Adam, > 0; default 1e-8 */
    CVAE_OPT_WEIGHT_DECAY = 104, /* Adam: decoupled (AdamW); SGD: added to the gradient. >= 0, default 0 */
    CVAE_OPT_MOMENTUM = 105,     /* SGD, [0, 1); default 0.9 */
    CVAE_OPT_CLIP_NORM = 106,    /* clip the gradient's global L2 norm to this; 0 = off (default) */
    CVAE_OPT_AVERAGE = 107       /* decay of a running average of the parameters, [0, 1); 0 = off
                                    (default). See cvae_optimizer_swap_average. Since 0.9.0 */
} cvae_optimizer_option;

/*
 * Creates an optimizer for a parameter block of nparams floats (for a model:
 * cvae_model_param_count). Its state (moments, step count) is allocated here,
 * so stepping never allocates. CVAE_ERR_INVALID_ARG (bad kind, nparams 0),
 * CVAE_ERR_TOO_LARGE, CVAE_ERR_NOMEM. Since 0.2.0.
 */
CVAE_API cvae_status cvae_optimizer_create(cvae_optimizer **out, cvae_optimizer_kind kind,
                                           size_t nparams);

/* cvae_optimizer_create with the allocator of the optimizer and its state
 * (NULL: malloc and free; see cvae_allocator). Since 0.4.0. */
CVAE_API cvae_status cvae_optimizer_create_with(cvae_optimizer **out, cvae_optimizer_kind kind,
                                                size_t nparams,
                                                const cvae_allocator *allocator);

/* Frees the optimizer. NULL is a no-op. Since 0.2.0. */
CVAE_API void cvae_optimizer_destroy(cvae_optimizer *opt);

/* Latest failure's message; same rules as cvae_layer_last_error. Since 0.2.0. */
CVAE_API const char *cvae_optimizer_last_error(const cvae_optimizer *opt);

/* The optimizer's kind, or 0 for NULL. Since 0.2.0. */
CVAE_API cvae_optimizer_kind cvae_optimizer_get_kind(const cvae_optimizer *opt);

/* Set, read and bound options; may be called between steps (e.g. to change
 * the learning rate). CVAE_ERR_INVALID_ARG for a key the kind does not have
 * or a value out of range (values must be finite). Bounds are inclusive: an
 * open end is reported as the nearest double inside it, an unbounded end as
 * DBL_MAX. Since 0.2.0. */
CVAE_API cvae_status cvae_optimizer_set(cvae_optimizer *opt, cvae_optimizer_option key,
                                        double value);
CVAE_API cvae_status cvae_optimizer_get(const cvae_optimizer *opt, cvae_optimizer_option key,
                                        double *value);
CVAE_API cvae_status cvae_optimizer_bounds(const cvae_optimizer *opt, cvae_optimizer_option key,
                                           double *min, double *max);

/*
 * One update of params (nparams floats) from grads:
 *   clip: if CLIP_NORM > 0 and ||g|| > CLIP_NORM, g *= CLIP_NORM / ||g||
 *   Adam: t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *         p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * wd * p
 *   SGD:  g += wd * p; b = momentum * b + g (b = g at the first step); p -= lr * b
 * A non-finite gradient returns CVAE_ERR_NUMERIC and changes nothing; so
 * does (since 0.3.0) any update that would make a parameter or the state
 * non-finite: a finite gradient whose square overflows Adam's float v, or
 * absurd options (a learning rate of 1e100 is accepted by
 * cvae_optimizer_set but refused here). CVAE_ERR_SHAPE if nparams differs
 * from the optimizer's. Since 0.2.0.
 */
CVAE_API cvae_status cvae_optimizer_step(cvae_optimizer *opt, float *params, const float *grads,
                                         size_t nparams);

/*
 * The running average of the parameters (Polyak averaging, an exponential
 * moving average), kept by the optimizer when CVAE_OPT_AVERAGE = d > 0:
 * after every step, a = p (equal values) for the first averaged step, then
 * a = d_k a + (1 - d_k) p with d_k = min(d, (1 + k) / (10 + k)) after k
 * averaged steps, in float (the decay rises to d over the first steps, so
 * the random start weighs little). The average usually generalises better
 * than the last parameters (docs/EVALUATION.md). Setting d allocates the
 * average's storage, once (CVAE_ERR_NOMEM from cvae_optimizer_set); setting
 * it back to 0 stops the updates and keeps the average.
 *
 * cvae_optimizer_swap_average exchanges params (nparams floats, for a model
 * cvae_model_params) with the average, exactly: evaluate, sample or save
 * with the average in the parameters, then swap again to go on training.
 * While swapped, steps are refused with CVAE_ERR_STATE (the parameters are
 * not the training weights). A model saved with its optimizer keeps both:
 * cvae-train saves its checkpoints swapped, so every tool that loads the
 * model uses the average, and a resumed run swaps back (after
 * cvae_optimizer_load, cvae_optimizer_average_swapped says so).
 * CVAE_ERR_INVALID_ARG (NULL), CVAE_ERR_SHAPE (nparams differs from the
 * optimizer's), CVAE_ERR_STATE (no step averaged yet). Since 0.9.0.
 */
CVAE_API cvae_status cvae_optimizer_swap_average(cvae_optimizer *opt, float *params,
                                                 size_t nparams);

/* 1 while the average is swapped into the parameters, else 0 (also for
 * NULL). Since 0.9.0. */
CVAE_API int cvae_optimizer_average_swapped(const cvae_optimizer *opt);

/* Number of steps taken (Adam's t). Since 0.2.0; exported by the shared
 * library since 0.6.1 (version node CVAE_0.6.1). */
CVAE_API uint64_t cvae_optimizer_steps(const cvae_optimizer *opt);

/*
 * Restores the optimizer state (kind, options, step count, moments, and
 * since 0.9.0 the running average and whether it was swapped) saved
 * with cvae_model_save into path. The optimizer must have the saved kind
 * and size (CVAE_ERR_SHAPE otherwise); CVAE_ERR_STATE if the file holds no
 * optimizer state; file errors as cvae_model_load. Since 0.2.0.
 */
CVAE_API cvae_status cvae_optimizer_load(cvae_optimizer *opt, const char *path);

/* ----------------------------------------------------------------- models */

/*
 * A VAE: an encoder stack mapping C x H x W images to 2L values (mu, then
 * log-variance), the reparameterisation z = mu + exp(logvar / 2) * eps with
 * eps ~ N(0, I), and a decoder stack mapping L values to C x H x W logits;
 * sigmoid(logits) is the image. Loss per image, in nats: the Bernoulli
 * negative log-likelihood of the pixels (binary cross-entropy computed from
 * the logits in the stable form max(x,0) - x t + log(1 + exp(-|x|))) plus
 * beta times the analytic KL(q(z|x) || N(0, I)). Losses are reported as the
 * mean over images, reconstruction and KL apart.
 *
 * Create an empty handle, then give it an architecture with
 * cvae_model_init_preset, cvae_model_init_stacks or cvae_model_load. All
 * parameters (encoder then decoder) live in one block; all buffers are
 * allocated then, for batches of up to max_batch images, so training never
 * allocates. Calls taking more images than max_batch work in chunks.
 */

/* Model options (keys in the 300s). */
typedef enum cvae_model_option {
    CVAE_MODEL_BETA = 300,   /* weight of the KL term, finite, >= 0; default 1 */
    CVAE_MODEL_THREADS = 301, /* threads of the model's calls, an integer in [0, 256]; 0
                                 (default) automatic, as cvae_stack_set_threads. Since 0.3.0 */
    CVAE_MODEL_MAX_MEMORY = 302, /* bytes an architecture may allocate, a whole number in
                                    [0, 2^62]; 0 means no limit. Default 4294967296 (4 GiB). */
    CVAE_MODEL_CLASSES = 303, /* 0 (default) or the number of classes, in [2, 65536], of the
                                 conditional preset: set it before cvae_model_init_preset.
                                 Reads the architecture's once there is one. Since 0.5.0 */
    CVAE_MODEL_BINARIZE = 304, /* 1: dynamic binarisation. Each training step draws every
                                 pixel as 1 with probability its intensity, else 0 (the
                                 model's generator, before eps), and evaluate and iwae
                                 binarise the images with their seed's generator the same
                                 way, as the binarised-MNIST literature does. 0 (default):
                                 intensities as they are. Not saved. Since 0.5.0 */
    CVAE_MODEL_LIKELIHOOD = 305, /* a cvae_likelihood: the reconstruction term. Default
                                    CVAE_LIKELIHOOD_BERNOULLI. Saved. Since 0.6.0 */
    CVAE_MODEL_SIGMA = 306, /* Gaussian likelihood: the standard deviation of every pixel,
                               in [1e-4, 10] (default 0.1), or 0 for a learned one (below).
                               Saved. Since 0.6.0 */
    CVAE_MODEL_WIDTH = 307, /* preset: channels of the first convolution (the second has
                               twice as many), in [1, 4096]; default 32. Set before
                               cvae_model_init_preset. Since 0.6.0 */
    CVAE_MODEL_HIDDEN = 308, /* preset: width of the hidden linear layers, in [1, 65536];
                               default 0 = automatic: 256 for images of up to 1,024 values
                               (MNIST), 512 above. Set before cvae_model_init_preset.
                               Since 0.6.0 */
    CVAE_MODEL_SIGMA_IN_USE = 309, /* read only: the Gaussian's standard deviation in use,
                                     CVAE_MODEL_SIGMA or, when that is 0, the learned one.
                                     Since 0.6.0 */
    /* The training recipe (docs/EVALUATION.md measures each choice: with the
     * defaults the seed model leaves the plateau of the mean digit at once).
     * All three set to 0 is the plain recipe of PyTorch's VAE examples, and
     * of libcvae before 0.7.0. Saved (file format version 4). */
    CVAE_MODEL_KL_WARMUP = 310, /* KL warm-up: the t-th training step (t from 1) weighs
                                   the KL term by beta * min(1, t / W) for this W, a whole
                                   number of steps in [0, 2^32]; 0 (default): beta from
                                   the first step. Since 0.7.0 */
    CVAE_MODEL_DATA_INIT = 311, /* 1 (default): the first training step of a new model
                                   first sets the biases of the decoder's output layer
                                   (when only views follow it) to the logit of its batch's
                                   mean target, clamped to [0.001, 0.999] (per channel for
                                   a convolution, per value for a linear layer), so the
                                   decoder starts at the mean intensity instead of grey;
                                   kept even if that step then fails. 0: the layers' own
                                   initialisation. Since 0.7.0 */
    CVAE_MODEL_LOGVAR_INIT = 312 /* the initial bias of the encoder's log-variance
                                    outputs (the second half of its last linear layer's
                                    biases, when it gives 2L values), in [-20, 0];
                                    default -4 (variances of e^-4 = 0.018, so the code
                                    starts nearly noise-free); 0 leaves that layer's own
                                    initialisation. Read when the parameters are
                                    initialised (cvae_model_init_preset,
                                    cvae_model_init_stacks). Since 0.7.0 */
} cvae_model_option;

/*
 * The likelihood p(x | z) of the reconstruction term. Both decode the
 * decoder's logits through the sigmoid, so decode, sample and reconstruct
 * always give images in [0, 1]: for Bernoulli, the pixels' probabilities;
 * for Gaussian, their means m = sigmoid(logit), and per image
 *   recon = sum over pixels of (x - m)^2 / (2 s^2) + log(s) + log(2 pi) / 2
 * with s = CVAE_MODEL_SIGMA. With CVAE_MODEL_SIGMA 0, s is learned: every
 * training step first sets s^2 to the step's mean squared error per pixel
 * (clamped to [1e-8, 1]), the maximum-likelihood value for the current
 * decoder (the "optimal sigma" of Rybkin et al., 2021), and the other calls
 * use the value of the last step (0.1 before any). Values (nats) of the two
 * likelihoods do not compare: the Gaussian's is a density.
 * Since 0.6.0.
 */
typedef enum cvae_likelihood {
    CVAE_LIKELIHOOD_BERNOULLI = 0, /* binary cross-entropy: pixels read as probabilities */
    CVAE_LIKELIHOOD_GAUSSIAN = 1   /* squared error: a normal with standard deviation s */
} cvae_likelihood;

/*
 * CVAE_MODEL_MAX_MEMORY bounds what cvae_model_init_preset, init_stacks and
 * load may allocate for the architecture (parameters, gradients, activations
 * for max_batch images, workspaces): the total is computed from the shapes
 * before anything is allocated, and an architecture over the limit is
 * refused with CVAE_ERR_TOO_LARGE and a message giving both figures. So a
 * model file of a few bytes cannot make a program ask for gigabytes. The
 * option applies to the next architecture; the current one is kept.
 * Since 0.4.0.
 */

/* Creates an empty model. CVAE_ERR_INVALID_ARG, CVAE_ERR_NOMEM. Since 0.2.0. */
CVAE_API cvae_status cvae_model_create(cvae_model **out);

/* Creates an empty model that allocates through allocator: itself, its
 * blocks, and the stacks and layers of cvae_model_init_preset and
 * cvae_model_load (stacks given to cvae_model_init_stacks keep their own).
 * NULL means malloc and free. CVAE_ERR_INVALID_ARG, CVAE_ERR_NOMEM.
 * Since 0.4.0. */
CVAE_API cvae_status cvae_model_create_with(cvae_model **out, const cvae_allocator *allocator);

/* Frees the model and its stacks. NULL is a no-op. Since 0.2.0. */
CVAE_API void cvae_model_destroy(cvae_model *m);

/* Latest failure's message; same rules as cvae_layer_last_error. Since 0.2.0. */
CVAE_API const char *cvae_model_last_error(const cvae_model *m);

/*
 * The built-in architecture (the "seed"), for C x H x W inputs with H and W
 * multiples of 4 (1 x 28 x 28 for MNIST, 3 x 32 x 32 for CIFAR-10), with
 * F = CVAE_MODEL_WIDTH (default 32) and D = CVAE_MODEL_HIDDEN (default 256
 * when C*H*W <= 1024, else 512):
 *   encoder: conv2d(C->F, k4 s2 p1) relu conv2d(F->2F, k4 s2 p1) relu
 *            flatten linear(2F*H/4*W/4 -> D) relu linear(D -> 2L)
 *   decoder: linear(L -> D) relu linear(D -> 2F*H/4*W/4) relu
 *            reshape(2F, H/4, W/4) conv_transpose2d(2F->F, k4 s2 p1) relu
 *            conv_transpose2d(F->C, k4 s2 p1)  (logits)
 * so the encoder's and decoder's middle grow with the image (1,688,289
 * parameters for MNIST with L = 16, 4,292,771 for 3 x 32 x 32).
 * Parameters are initialised from seed, which also seeds the model's
 * generator for eps. CVAE_ERR_INVALID_ARG (a size < 1), CVAE_ERR_SHAPE (H or
 * W not a multiple of 4), CVAE_ERR_STATE (model already has an
 * architecture), CVAE_ERR_TOO_LARGE, CVAE_ERR_NOMEM. Since 0.2.0.
 */
CVAE_API cvae_status cvae_model_init_preset(cvae_model *m, int channels, int height, int width,
                                            int latent, int max_batch, uint64_t seed);

/*
 * A model from the caller's own stacks (not yet built): encoder must map
 * C x H x W to 2L values, decoder L values (read as L x 1 x 1) to C x H x W
 * logits. The model takes ownership of both stacks in every case (on failure
 * they are destroyed), except that a stack already built (for instance one
 * another model owns) is refused with CVAE_ERR_INVALID_ARG and left alone.
 * CVAE_ERR_SHAPE if the shapes do not fit (the message says which), other
 * statuses as cvae_model_init_preset.
 * Since 0.2.0.
 */
CVAE_API cvae_status cvae_model_init_stacks(cvae_model *m, cvae_stack *encoder,
                                            cvae_stack *decoder, int channels, int height,
                                            int width, int latent, int max_batch, uint64_t seed);

/* Shape of the images, latent size and max batch; pointers may be NULL.
 * CVAE_ERR_STATE without an architecture. Since 0.2.0. */
CVAE_API cvae_status cvae_model_shape(const cvae_model *m, int *channels, int *height,
                                      int *width, int *latent, int *max_batch);

/* The encoder and decoder stacks (borrowed, owned by the model; NULL
 * without an architecture). Since 0.2.0. */
CVAE_API cvae_stack *cvae_model_encoder(cvae_model *m);
CVAE_API cvae_stack *cvae_model_decoder(cvae_model *m);

/* Set, read and bound options. Since 0.2.0. */
CVAE_API cvae_status cvae_model_set(cvae_model *m, cvae_model_option key, double value);
CVAE_API cvae_status cvae_model_get(const cvae_model *m, cvae_model_option key, double *value);
CVAE_API cvae_status cvae_model_bounds(const cvae_model *m, cvae_model_option key, double *min,
                                       double *max);

/* The parameter and gradient blocks (encoder's, then decoder's), borrowed,
 * writable; *count (may be NULL) receives their length. NULL without an
 * architecture. Reading and writing parameters is how callers inspect or
 * set them. Since 0.2.0. */
CVAE_API float *cvae_model_params(cvae_model *m, size_t *count);
CVAE_API float *cvae_model_grads(cvae_model *m, size_t *count);
CVAE_API size_t cvae_model_param_count(const cvae_model *m);

/*
 * One training step on n images (1 <= n <= max batch, pixels in [0, 1]):
 * zero the gradients, draw eps from the model's generator, forward, the
 * loss, backward, then one step of opt (created for cvae_model_param_count
 * parameters). *recon and *kl (either may be NULL) receive the batch means
 * before the update. A non-finite loss or gradient returns
 * CVAE_ERR_NUMERIC and leaves the parameters, the optimizer, the step count
 * and the eps generator as they were. Also CVAE_ERR_INVALID_ARG (NULL, n out
 * of range), CVAE_ERR_STATE (no architecture, or the optimizer's running
 * average swapped into the parameters: nothing changes), CVAE_ERR_SHAPE (optimizer of
 * another size). Never allocates. Since 0.2.0.
 */
CVAE_API cvae_status cvae_model_train_step(cvae_model *m, cvae_optimizer *opt, const float *x,
                                           int n, double *recon, double *kl);

/*
 * Conditional models (Sohn et al., 2015). A model whose stacks hold
 * concat_label layers is conditional: the one-hot code of each image's
 * label joins the encoder's features and the decoder's input, so q(z|x,y)
 * and p(x|z,y). The preset builds one when CVAE_MODEL_CLASSES is set first
 * (the label joins after the encoder's flatten and before the decoder's
 * first linear layer); the architecture, so the conditioning, is saved with
 * the model. Its calls take n labels in [0, classes), one per image (per
 * latent vector for decode and sample); cvae_model_evaluate and
 * cvae_model_iwae read them from the dataset. A conditional model refuses
 * the calls without labels, and another model refuses labels, both with
 * CVAE_ERR_INVALID_ARG and a message; otherwise each _labels call is its
 * plain twin. Since 0.5.0.
 */
CVAE_API cvae_status cvae_model_train_step_labels(cvae_model *m, cvae_optimizer *opt,
                                                  const float *x, const int *labels, int n,
                                                  double *recon, double *kl);
CVAE_API cvae_status cvae_model_encode_labels(cvae_model *m, const float *x, const int *labels,
                                              int n, float *mu, float *logvar);
CVAE_API cvae_status cvae_model_decode_labels(cvae_model *m, const float *z, const int *labels,
                                              int n, float *images);
CVAE_API cvae_status cvae_model_sample_labels(cvae_model *m, int n, uint64_t seed,
                                              const int *labels, float *images);
CVAE_API cvae_status cvae_model_reconstruct_labels(cvae_model *m, const float *x,
                                                   const int *labels, int n, float *images);

/* Number of training steps taken (saved with the model). Since 0.2.0;
 * exported by the shared library since 0.6.1 (version node CVAE_0.6.1). */
CVAE_API uint64_t cvae_model_steps(const cvae_model *m);

/*
 * Loss over a whole dataset (its current order does not matter) with one eps
 * per image drawn from a generator seeded with eps_seed, so the figure is
 * reproducible; the model's own generator is untouched. Means per image, in
 * nats: *recon, *kl, and *total = recon + kl (the negative ELBO, whatever
 * beta is). Any output pointer may be NULL. eps is drawn image by image, so
 * the figure does not depend on max batch. CVAE_ERR_SHAPE if the dataset's
 * image shape differs from the model's, CVAE_ERR_INVALID_ARG (NULL or empty
 * dataset), CVAE_ERR_STATE (no architecture). Since 0.2.0.
 */
CVAE_API cvae_status cvae_model_evaluate(cvae_model *m, const cvae_dataset *ds, uint64_t eps_seed,
                                         double *recon, double *kl, double *total);

/* mu and logvar (n x L each; logvar may be NULL) of n images. Since 0.2.0. */
CVAE_API cvae_status cvae_model_encode(cvae_model *m, const float *x, int n, float *mu,
                                       float *logvar);

/* Images (n x C x H x W probabilities) decoded from n latent vectors. Since 0.2.0. */
CVAE_API cvae_status cvae_model_decode(cvae_model *m, const float *z, int n, float *images);

/* n images decoded from z ~ N(0, I) drawn with seed, image by image (the
 * same seed gives the same images, whatever max batch is). Since 0.2.0. */
CVAE_API cvae_status cvae_model_sample(cvae_model *m, int n, uint64_t seed, float *images);

/* Reconstructions of n images: decode(mu(x)), the decoded mean. Since 0.2.0. */
CVAE_API cvae_status cvae_model_reconstruct(cvae_model *m, const float *x, int n, float *images);

/*
 * Importance weights: for each of n images x (n images) and its draw eps
 * (n x latent standard-normal values, chosen by the caller), with (mu, lv)
 * from the encoder and z = mu + exp(lv / 2) eps, writes
 *   logw[i] = log p(x | z) + log p(z) - log q(z | x)   (nats, per image)
 * with p(x | z) the decoder's Bernoulli likelihood, p(z) = N(0, I) and
 * q(z | x) = N(mu, exp(lv)). One draw's logw is a one-sample estimate of the
 * ELBO, -(recon + kl) in cvae_model_evaluate's terms (there with the KL in
 * closed form). labels: n labels for a conditional model, NULL otherwise.
 * Any n (chunked by the max batch). CVAE_ERR_INVALID_ARG, CVAE_ERR_STATE (no
 * architecture). Since 0.5.0.
 */
CVAE_API cvae_status cvae_model_log_weights(cvae_model *m, const float *x, const int *labels,
                                            const float *eps, int n, double *logw);

/*
 * The importance-weighted bound (Burda et al., 2015) on log p(x), averaged
 * over the dataset's images in stored order: for each image, k draws eps
 * from a generator seeded with seed (the image's k draws one after the
 * other, latent values each, images in order) and
 *   log (1/k) sum_i exp(logw_i)
 * computed by a running log-sum-exp (log weights near -1e4 are fine). It is
 * a lower bound on the mean log-likelihood in nats (negative); k = 1 is the
 * mean one-sample ELBO of those draws, and the bound grows with k in
 * expectation. A conditional model uses the dataset's labels. Cost: k
 * decoder passes per image. Allocates nothing.
 * CVAE_ERR_INVALID_ARG (NULL, empty dataset, k < 1), CVAE_ERR_SHAPE (images
 * of another shape), CVAE_ERR_STATE (no architecture), CVAE_ERR_NUMERIC (a
 * non-finite result). Since 0.5.0.
 */
CVAE_API cvae_status cvae_model_iwae(cvae_model *m, const cvae_dataset *ds, int k,
                                     uint64_t seed, double *bound);

/*
 * Data-parallel training (several processes, e.g. MPI ranks, each with a
 * replica of the model and optimizer). A global batch of B images is cut
 * into shards; for each step every process calls
 *   cvae_model_shard_grads(m, its shard, first, n, B)   its gradient part
 *   allreduce (sum) of cvae_model_grads(m) across the processes, in place
 *   cvae_model_apply_grads(m, opt)                       the same update
 * and the replicas stay equal. A one-process step is the same calls with
 * one shard (first 0, n = B): it gives cvae_model_train_step's bits, and
 * so do two shards cut by cvae_shard_cut, summed: a step of 32 or more
 * images is computed in two halves (the lanes: docs/API.md), a smaller one
 * whole, and cvae_shard_cut cuts two shards alike. Other cuts differ from
 * one process in the order of the float sums only (about 1e-7 relative
 * per gradient).
 *
 * The gradient is scaled for the global batch: the shard's images'
 * gradients of recon + beta kl, summed and divided by B, so the sum over
 * the shards is the gradient of the mean loss over the batch. Each image
 * gets the draws a one-process step gives it: every process draws the
 * whole batch's (binarised pixels when CVAE_MODEL_BINARIZE, then eps),
 * keeps its shard's rows and skips the others, so the generators of all
 * replicas stay in step (a few B x L draws a step, and B x pixels when
 * binarising).
 */

/*
 * The shard of process index (0 <= index < shards) in a batch of total
 * images: *first and *count. Two shards are the step's two lanes (the first
 * total / 2 images, rounded down, and the rest; for total < 32 the first
 * shard takes all, the second none), with which two processes reproduce a
 * one-process step bit for bit; otherwise an even cut (total * index /
 * shards to total * (index + 1) / shards). CVAE_ERR_INVALID_ARG for
 * total < 0, shards < 1, index out of range or NULL outputs. Thread-safe.
 * Since 0.8.0.
 */
CVAE_API cvae_status cvae_shard_cut(int total, int shards, int index, int *first, int *count);

/*
 * Forward and backward of the shard of a global batch of total images that
 * starts at image first (0 <= first, 0 <= n <= max batch, first + n <=
 * total): x holds its n images (and labels its n labels, for a conditional
 * model; NULL otherwise). A shard may be empty (n = 0, x and labels then
 * unread: a batch smaller than the number of processes): its part is zero
 * and its generator moves on all the same. Leaves the shard's part of the
 * step's gradient in cvae_model_grads (scaled by 1 / total, see above) and
 * in *recon and *kl (either may be NULL) the shard's sums divided by
 * total, so that the sums over all shards are the batch means
 * cvae_model_train_step reports. The
 * model's parameters, step count and optimizer are not touched; its eps
 * generator moves on by one whole step of total images. A non-finite loss
 * or gradient returns CVAE_ERR_NUMERIC (the message names the first bad
 * gradient) and puts the generator back. Never allocates.
 * CVAE_ERR_INVALID_ARG (NULL x, n or first out of range, labels as
 * cvae_model_train_step_labels), CVAE_ERR_STATE (no architecture; a
 * Gaussian likelihood with a learned sigma, which needs the whole batch, on
 * a shard that is not the whole batch; the first step of a model with
 * CVAE_MODEL_DATA_INIT before cvae_model_data_init, on such a shard).
 * Since 0.8.0.
 */
CVAE_API cvae_status cvae_model_shard_grads(cvae_model *m, const float *x, const int *labels,
                                            int first, int n, int total, double *recon,
                                            double *kl);

/*
 * Gradient buckets, to overlap the sum across processes with the backward
 * pass: fn(ctx, offset, count) is called by cvae_model_shard_grads, on the
 * calling thread, once for each layer with parameters, as soon as floats
 * offset .. offset + count - 1 of cvae_model_grads are final for the call.
 * The calls come in backward order, decoder's last layer first and
 * encoder's first layer last, so the spans are adjacent, their offsets
 * falling, and cover the block once. The caller may start a non-blocking
 * sum of a span (MPI_Iallreduce) at once; the library does not touch it
 * again in the call. The spans arrive as the backward goes when the call
 * runs on the calling thread alone (a model with one thread, or a shard
 * within one lane, as cvae_shard_cut's shards for two processes are), else
 * all at the end of the call. fn must not call the model. NULL stops the
 * calls. Not saved. CVAE_ERR_INVALID_ARG for a NULL model. Since 0.8.0.
 */
typedef void (*cvae_grads_ready_fn)(void *ctx, size_t offset, size_t count);
CVAE_API cvae_status cvae_model_set_grads_ready(cvae_model *m, cvae_grads_ready_fn fn, void *ctx);

/*
 * One step of opt (created for cvae_model_param_count parameters) on the
 * model's parameters with the gradient block as the caller left it (after
 * cvae_model_shard_grads and a sum across processes, or any gradient the
 * caller wrote there), then the step count moves on (the KL warm-up
 * follows it). The result is bit for bit that of cvae_model_train_step
 * when the block holds the same gradient. A non-finite gradient or update
 * returns CVAE_ERR_NUMERIC and changes nothing, and puts back the eps
 * generator as it was before the latest cvae_model_shard_grads, as a
 * refused cvae_model_train_step does; since 0.9.0 so does a refusal with
 * CVAE_ERR_SHAPE or for a swapped average. CVAE_ERR_INVALID_ARG (NULL), CVAE_ERR_STATE (no
 * architecture, or the optimizer's running average swapped into the
 * parameters), CVAE_ERR_SHAPE (optimizer of another
 * size). Never allocates. Since 0.8.0.
 */
CVAE_API cvae_status cvae_model_apply_grads(cvae_model *m, cvae_optimizer *opt);

/*
 * CVAE_MODEL_DATA_INIT's start, now, from n images (any n >= 1): the
 * decoder's output biases become the logit of their mean pixel, as the
 * first cvae_model_train_step does from its batch; that step then leaves
 * them. Data-parallel training calls it before the first step with the
 * whole first global batch, which every process must pass alike (a shard
 * alone would start each replica differently, so cvae_model_shard_grads
 * refuses a first step without it). With binarisation the first
 * train_step starts from the binarised batch instead, so the biases differ
 * by that noise. Does nothing when CVAE_MODEL_DATA_INIT is 0 or the model
 * has taken a step; not saved (a model saved before its first step does
 * it again). CVAE_ERR_NUMERIC (a non-finite pixel, named),
 * CVAE_ERR_INVALID_ARG, CVAE_ERR_STATE. Since 0.8.0.
 */
CVAE_API cvae_status cvae_model_data_init(cvae_model *m, const float *x, int n);

/*
 * The sums behind cvae_model_evaluate over images [first, first + count)
 * of ds: *recon_sum and *kl_sum (either may be NULL) in nats, with the eps
 * (and binarised pixels) cvae_model_evaluate gives those images with the
 * same eps_seed and max batch. Processes that each take a part of a
 * dataset and add up the sums get cvae_model_evaluate's loss (times the
 * count) up to the order of the additions. count may be 0. Errors as
 * cvae_model_evaluate, and CVAE_ERR_INVALID_ARG for a range outside the
 * dataset. Since 0.8.0.
 */
CVAE_API cvae_status cvae_model_evaluate_range(cvae_model *m, const cvae_dataset *ds,
                                               uint64_t eps_seed, int first, int count,
                                               double *recon_sum, double *kl_sum);

/*
 * Saves the model (architecture, parameters, beta, step count, generator
 * state) and, when opt is not NULL, the optimizer's state, in the format of
 * docs/FORMAT.md. Writes path.tmp, flushes and closes it (no fsync: C99 has
 * none) and renames it over path, so a failed save leaves any previous file
 * intact. CVAE_ERR_IO (the message names the file and the system error),
 * CVAE_ERR_SHAPE (opt of another size), CVAE_ERR_STATE (no architecture),
 * CVAE_ERR_INVALID_ARG (also for a path over 4091 bytes), CVAE_ERR_NOMEM
 * (the C library's fopen ran out; saving itself allocates nothing since
 * 0.4.0). Since 0.2.0.
 */
CVAE_API cvae_status cvae_model_save(cvae_model *m, const cvae_optimizer *opt, const char *path);

/*
 * Loads a model saved by cvae_model_save into an empty model, for batches of
 * up to max_batch images. Verifies magic, version, sizes, CRC-32 and the
 * architecture before building anything. CVAE_ERR_IO (cannot open or read,
 * or a directory), CVAE_ERR_FORMAT (foreign, truncated or corrupt file; the
 * message gives the offset), CVAE_ERR_VERSION (written by a newer format),
 * CVAE_ERR_NUMERIC (a stored parameter is not finite), CVAE_ERR_TOO_LARGE,
 * CVAE_ERR_STATE (model not empty), CVAE_ERR_INVALID_ARG, CVAE_ERR_NOMEM.
 * On failure the model stays empty. Since 0.2.0.
 */
CVAE_API cvae_status cvae_model_load(cvae_model *m, const char *path, int max_batch);

/* ----------------------------------------------------------------- losses */

/*
 * Softmax cross-entropy, the loss of a classifier built from libcvae's layers
 * (a stack whose output is `classes` logits per image): the mean over n rows
 * of -log softmax(logits row)[label], in nats, computed by log-sum-exp so
 * that any finite logits (1e4 or -1e4 included) give a finite loss. When
 * dlogits is not NULL it receives the gradient of that mean with respect to
 * the logits, (softmax - onehot(label)) / n, n x classes floats, ready for
 * cvae_stack_backward. logits: n x classes; labels: n values in
 * [0, classes). CVAE_ERR_INVALID_ARG (a NULL pointer other than dlogits,
 * n < 1, classes < 2, a label out of range), CVAE_ERR_NUMERIC (a NaN or
 * infinite logit), CVAE_ERR_TOO_LARGE (n x classes over 2^32); on failure
 * nothing is written. Thread-safe. Since 0.5.0.
 */
CVAE_API cvae_status cvae_softmax_cross_entropy(const float *logits, const int *labels, int n,
                                                int classes, double *loss, float *dlogits);

/* ----------------------------------------------------------------- images */

/*
 * Writes count images (count x channels x height x width floats in [0, 1];
 * values outside are clamped and NaN is written as 0; channels 1 = grey,
 * 3 = RGB) as one 8-bit PNG grid of `columns` images per row (fewer if count
 * is smaller), with a 2-pixel mid-grey (128) border around and between the
 * images; unused cells are border-coloured. No dependency: stored deflate
 * blocks, CRC-32 and Adler-32 are computed here. On failure, when errmsg is
 * not NULL, a message of at most errsize bytes (always terminated) says
 * what went wrong and with which file; errmsg is untouched on success.
 * Written as path.tmp and renamed over path, like cvae_model_save.
 * Allocates nothing (since 0.4.0): rows are made from images as they go out.
 * CVAE_ERR_INVALID_ARG (also for a path over 4091 bytes), CVAE_ERR_TOO_LARGE
 * (a side over 2^31 - 1 pixels or over 1 GiB of pixel data), CVAE_ERR_IO,
 * CVAE_ERR_NOMEM (the C library's fopen ran out). Thread-safe, but two
 * writers of the same path share its temporary name. Since 0.2.0.
 */
CVAE_API cvae_status cvae_png_write_grid(const char *path, const float *images, int count,
                                         int channels, int height, int width, int columns,
                                         char *errmsg, size_t errsize);

#ifdef __cplusplus
}
#endif

#endif /* CVAE_H */
