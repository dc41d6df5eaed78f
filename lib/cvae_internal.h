/*
 * cvae_internal.h - private declarations shared between libcvae's files.
 *
 * Never installed. Everything here has the hidden prefix cvi_ and default
 * (hidden) visibility, so it is not part of the ABI and may change freely.
 */
#ifndef CVAE_INTERNAL_H
#define CVAE_INTERNAL_H

#include "cvae.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CVI_ERRMSG_SIZE 256

/* Sizes a file or a caller may ask for are refused above this many elements
 * per tensor or block (16 GiB of floats): far beyond any VAE, and long before
 * size_t arithmetic could wrap or an allocator is asked for terabytes. */
#define CVI_MAX_ELEMS ((size_t)1 << 32)

/* ------------------------------------------------------------- utilities */

/* Formats a message into buf (CVI_ERRMSG_SIZE bytes), truncating safely. */
void cvi_set_error(char *buf, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* *out = a * b; returns 0 on success, 1 if the product overflows size_t. */
int cvi_mul_overflow(size_t a, size_t b, size_t *out);
/* *out = a + b; returns 0 on success, 1 on overflow. */
int cvi_add_overflow(size_t a, size_t b, size_t *out);

/* Every allocation of the library goes through these, to the allocator of
 * the handle it is for. allocator_init copies src, or the default (malloc
 * and free) when src is NULL; CVAE_ERR_INVALID_ARG if a function is NULL.
 * cvi_calloc zeroes its block; NULL for a zero or overflowing size.
 * cvi_alloc_floats returns 64-byte aligned memory for the kernels (not
 * zeroed); free it with cvi_free_floats. The frees accept a NULL block.
 * A NULL allocator means the default (for tests and tools). */
cvae_status cvi_allocator_init(cvae_allocator *dst, const cvae_allocator *src);
void *cvi_calloc(const cvae_allocator *a, size_t count, size_t size);
void cvi_free(const cvae_allocator *a, void *p);
float *cvi_alloc_floats(const cvae_allocator *a, size_t count);
void cvi_free_floats(const cvae_allocator *a, float *p);

/* ------------------------------------------------------------------- rng */

/* xoshiro256** (Blackman & Vigna, 2018), seeded through splitmix64 so that
 * every 64-bit seed, including 0, gives a good state. */
typedef struct cvi_rng {
    uint64_t s[4];
} cvi_rng;

void cvi_rng_seed(cvi_rng *rng, uint64_t seed);
uint64_t cvi_rng_next(cvi_rng *rng);
/* Moves the generator count draws of cvi_rng_next ahead. */
void cvi_rng_skip(cvi_rng *rng, uint64_t count);
/* Uniform in [0, 1): the top 24 bits of a draw times 2^-24, exact in float. */
float cvi_rng_uniform(cvi_rng *rng);

/* ------------------------------------------------------------------ gemm */

/* Most threads any call uses (a setting above it is clamped). */
#define CVI_MAX_THREADS 256

/* CVAE_MODEL_MAX_MEMORY: its default (4 GiB) and its largest value (2^62). */
#define CVI_MODEL_MAX_MEMORY 4294967296.0
/* Gaussian likelihood: the default and the range of the standard deviation,
 * and the floor of a learned variance. */
#define CVI_DEFAULT_SIGMA 0.1
#define CVI_MIN_SIGMA 1e-4
#define CVI_MAX_SIGMA 10.0
#define CVI_MIN_LEARNED_VAR 1e-8
/* The preset's widths: first convolution (the second has twice), hidden
 * linear layers for images of up to CVI_PRESET_SMALL_IMAGE values, above. */
#define CVI_PRESET_WIDTH 32
#define CVI_PRESET_HIDDEN 256
#define CVI_PRESET_HIDDEN_LARGE 512
#define CVI_PRESET_SMALL_IMAGE 1024.0
#define CVI_PRESET_MAX_WIDTH 4096
#define CVI_PRESET_MAX_HIDDEN 65536
#define CVI_MODEL_MAX_MEMORY_CAP 4611686018427387904.0

/* The number of threads a setting means: n > 0 itself (clamped), 0 the
 * OpenMP default (OMP_NUM_THREADS, else all cores); always 1 in a build
 * without OpenMP. */
int cvi_threads_resolve(int setting);

/* Kernels compiled again for AVX-512 and AVX2 (function attributes, chosen
 * at run time): GCC and clang on x86-64 only. CVI_AVX2_ATTR adds no FMA:
 * the element-wise kernels compiled with it give the baseline's bits. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(CVAE_NO_DISPATCH)
#define CVI_HAVE_AVX512 1
#if defined(__clang__)
#define CVI_AVX512_ATTR __attribute__((target("avx512f"), min_vector_width(512)))
#define CVI_AVX2_ATTR __attribute__((target("avx2"), min_vector_width(256)))
#else
#define CVI_AVX512_ATTR __attribute__((target("avx512f")))
#define CVI_AVX2_ATTR __attribute__((target("avx2")))
#endif
#endif

/* Asks for the cache line at p, to be written, ahead of its use (a hint:
 * nothing where the compiler has no such builtin). */
#if defined(__GNUC__) || defined(__clang__)
#define CVI_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define CVI_PREFETCH_W(p) ((void)(p))
#endif

/* The compiled variants of the multiply; AUTO picks the best this CPU runs. */
typedef enum cvi_gemm_path {
    CVI_GEMM_PATH_AUTO = 0,
    CVI_GEMM_PATH_PORTABLE,
    CVI_GEMM_PATH_AVX2,
    CVI_GEMM_PATH_AVX512
} cvi_gemm_path;

int cvi_gemm_path_available(cvi_gemm_path path); /* compiled in and this CPU runs it */
cvi_gemm_path cvi_gemm_path_best(void);
const char *cvi_gemm_path_name(cvi_gemm_path path); /* AUTO: the best's name */

/* Floats of packing workspace a multiply on `threads` threads needs. */
size_t cvi_gemm_workspace_floats(int threads);
/* The depth a product takes in one pass: with K at most this, C = beta C +
 * (the sum over k), so a product added with beta 1 onto another's result
 * gives the same bits as the two computed apart and then added. */
size_t cvi_gemm_one_pass_depth(void);

/* Where and how a multiply runs: the variant, the threads (>= 1; the
 * workspace must hold cvi_gemm_workspace_floats(threads) floats, 64-byte
 * aligned). */
typedef struct cvi_gemm_env {
    cvi_gemm_path path;
    int threads;
    float *ws;
} cvi_gemm_env;

/* A row-major operand. With group_cols != 0 its columns come in groups of
 * group_cols, group g starting group_stride floats after group 0: element
 * (r, c) is at data[(c / group_cols) * group_stride + r * ld + c % group_cols].
 * That views a batch of per-image (rows, P) planes as one (rows, n P) matrix
 * without copying. Grouped operands are never transposed. */
typedef struct cvi_operand {
    const float *data;
    size_t ld, group_cols, group_stride;
} cvi_operand;

/* The output, possibly grouped as above; when not NULL, row_bias[i] or
 * col_bias[j] is added to C(i, j) after the product (the fused bias); with
 * relu, C(i, j) = C(i, j) > 0 ? C(i, j) : 0 after that (a fused relu). */
typedef struct cvi_gemm_out {
    float *data;
    size_t ld, group_cols, group_stride;
    const float *row_bias, *col_bias;
    int relu;
} cvi_gemm_out;

/* Writes op(B)[k0 .. k0+kc) x [j0 .. j0+cols) into p, k-major with rows w
 * floats apart: p[k * w + c] = op(B)(k0 + k, j0 + c). Columns cols .. w-1
 * are the multiply's (it clears them). ctx is the call's b_ctx. */
typedef void (*cvi_panel_fn)(const void *ctx, float *p, size_t w, size_t k0, size_t kc,
                             size_t j0, size_t cols);

/* C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C (+ bias). op(X) is
 * X when the trans flag is 0 and X^T when it is 1. beta == 0 overwrites C
 * without reading it (so C may hold NaN garbage). Never allocates.
 * When b_panels is not NULL, op(B) is not read from b: the multiply asks
 * b_panels for each panel it packs (trans_b and b are then unused). */
typedef struct cvi_gemm_call {
    int trans_a, trans_b;
    size_t M, N, K;
    float alpha, beta;
    cvi_operand a, b;
    cvi_gemm_out c;
    cvi_panel_fn b_panels;
    const void *b_ctx;
    const float *a_packed; /* op(A) as cvi_gemm_pack_a packed it, or NULL */
    /* 0, or where K's second part starts: the multiply adds [0, k_split)
     * and then [k_split, K) into C, each summed as a product of its own
     * would sum it: two lanes' images in one call, with the bits of one
     * call per lane. */
    size_t k_split;
} cvi_gemm_call;

void cvi_gemm_ex(const cvi_gemm_env *env, const cvi_gemm_call *call);
/* Part `part` of `parts` of the call's C, the block thread `part` would
 * compute if cvi_gemm_ex ran the call on `parts` threads, computed on this
 * thread with env's first packing buffers. The parts of one call together
 * give what cvi_gemm_ex gives, bit for bit, on any number of threads. */
void cvi_gemm_part(const cvi_gemm_env *env, const cvi_gemm_call *call, int part, int parts);

/* Floats cvi_gemm_pack_a needs for an op(A) of M x K. */
size_t cvi_gemm_packed_a_floats(size_t M, size_t K);
/* Packs the call's whole op(A) into dst as the variant env runs (its path)
 * packs it; a call with a_packed = dst, on the same path, then multiplies
 * without packing A. For products that repeat one A: a convolution's
 * weights, once per call instead of once per group of images. */
void cvi_gemm_pack_a(const cvi_gemm_env *env, const cvi_gemm_call *g, float *dst);

/* The call for ungrouped operands with row strides lda, ldb, ldc and no
 * bias, for callers to adjust (groups, bias) before cvi_gemm_ex. */
cvi_gemm_call cvi_gemm_plain(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                             const float *A, size_t lda, const float *B, size_t ldb, float beta,
                             float *C, size_t ldc);

/* The plain case: ungrouped operands with row strides lda, ldb, ldc, no bias. */
void cvi_gemm(const cvi_gemm_env *env, int trans_a, int trans_b, size_t M, size_t N, size_t K,
              float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta,
              float *C, size_t ldc);

/* The specification the fast multiply must match: a plain triple loop with a
 * double accumulator. Same arguments, no workspace. */
void cvi_gemm_naive(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                    const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                    size_t ldc);

/* ---------------------------------------------------------------- im2col */

/* Geometry of one image seen by a convolution: C channels of H x W, kernel
 * KH x KW, strides SH, SW, zero padding PH, PW, and OH x OW output positions. */
typedef struct cvi_conv_geom {
    size_t C, H, W;
    size_t KH, KW, SH, SW, PH, PW;
    size_t OH, OW;
} cvi_conv_geom;

/* What im2col and col2im index by, built per call in a layer's scratch:
 * gather[t][p], for kernel tap t = ky*KW + kx and output position p, is the
 * offset in a channel plane of the pixel the tap reads, or -1 in the padding
 * (the same for every channel and image, so the loops test no bounds).
 * col2im's list holds, for each pixel, the pixel and then where in the
 * columns (t * ldcol + p) the entries that read it are, in tap order; the
 * pixels read by k entries come together (class k, class_pixels[k] of them),
 * classes in increasing k, so that col2im is a gather that writes each pixel
 * once with loops of one length per class. Plane offsets fit in int32
 * because layers refuse planes of more than 2^31 pixels. */
typedef struct cvi_conv_tables {
    const int32_t *gather;       /* (KH*KW, OH*OW) */
    const int64_t *class_pixels; /* (KH*KW + 1) */
    const int64_t *list;         /* H*W records: pixel, then its k entries */
    size_t ldcol;                /* row stride of the columns they were built for */
} cvi_conv_tables;

size_t cvi_conv_tables_floats(const cvi_conv_geom *g);
/* Builds the tables in mem (cvi_conv_tables_floats floats, 64-byte aligned). */
void cvi_conv_tables_build(cvi_conv_tables *t, float *mem, const cvi_conv_geom *g, size_t ldcol);

/* The columns of n images (C, H, W), image i's in columns [i P, (i+1) P) of
 * col (C*KH*KW rows, t->ldcol apart) where P = OH*OW: row (c*KH + ky)*KW + kx,
 * column (oy, ox) holds pixel (c, oy*SH - PH + ky, ox*SW - PW + kx), 0 in the
 * padding. col2im is the adjoint and overwrites the n images, adding bias[c]
 * (NULL: none) to every pixel of channel c after its sum, then with relu
 * taking max(x, 0) as relu does (the next layer's, fused). Images are
 * spread over env's threads; on its AVX-512 and AVX2 variants the vector
 * loops below serve the geometries they fit (the same bits). */
void cvi_im2col_batch(float *col, const float *imgs, size_t n, const cvi_conv_geom *g,
                      const cvi_conv_tables *t, const cvi_gemm_env *env);
void cvi_col2im_batch(float *imgs, const float *col, size_t n, const cvi_conv_geom *g,
                      const cvi_conv_tables *t, const float *bias, int relu,
                      const cvi_gemm_env *env);
/* im2col_vec.c: im2col and col2im of channels c .. c+nch-1 of one image on
 * vectors, for kernels 4 wide at stride 2 with 1 column of padding on rows
 * of at most 32 pixels (cvi_im2col_vec_fits; 0 where not compiled: GCC 12
 * or clang on x86-64). col is the image's columns (rows ldcol apart);
 * nothing at or past imgs_end or col_end is read. */
int cvi_im2col_vec_fits(const cvi_conv_geom *g);
void cvi_im2col_vec_channels(float *col, const float *img, size_t c, size_t nch,
                             const cvi_conv_geom *g, size_t ldcol, const float *imgs_end);
void cvi_col2im_vec_channels(float *img, const float *col, size_t c, size_t nch,
                             const cvi_conv_geom *g, size_t ldcol, const float *col_end,
                             const float *bias, int relu);
/* The same on AVX2 (8-lane vectors), for the same geometries. */
void cvi_im2col_avx2_channels(float *col, const float *img, size_t c, size_t nch,
                              const cvi_conv_geom *g, size_t ldcol, const float *imgs_end);
void cvi_col2im_avx2_channels(float *img, const float *col, size_t c, size_t nch,
                              const cvi_conv_geom *g, size_t ldcol, const float *col_end,
                              const float *bias, int relu);
/* The operand (rows, n P) made of the (rows, P) planes of consecutive
 * images `image` floats apart: one multiply covers a batch without copies. */
cvi_operand cvi_planes(const float *data, size_t P, size_t image);

/* The transposed columns of images imgs (consecutive, `image` floats
 * apart) as the multiply's panels (a cvi_panel_fn, ctx a cvi_patches):
 * op(B)(k, j) = col(j, k) of cvi_im2col_batch, built from the images'
 * patches with no columns in memory, so that a convolution's weight
 * gradient dw += dy col^T needs neither im2col nor a transposing pack.
 * With padded set the images are cvi_pad_images's copies: no tap falls
 * outside them, so patch rows are copied without a test. */
typedef struct cvi_patches {
    const float *imgs;
    size_t image;
    const cvi_conv_geom *g;
    int padded;
} cvi_patches;
/* The n images (C, H, W) with the padding as zeros, (C, H + 2 PH, W + 2 PW)
 * each, into dst (n cvi_padded_image_floats floats). */
size_t cvi_padded_image_floats(const cvi_conv_geom *g);
void cvi_pad_images(float *dst, const float *imgs, size_t n, const cvi_conv_geom *g);
void cvi_patch_panels(const void *ctx, float *p, size_t w, size_t k0, size_t kc, size_t j0,
                      size_t cols);

/* ---------------------------------------------------------------- shapes */

/* One image, C x H x W: what layers, stacks, models and datasets describe
 * their inputs and outputs with (shape.c, below both layers and data). */
typedef struct cvi_shape {
    size_t c, h, w;
} cvi_shape;

size_t cvi_shape_size(cvi_shape s); /* c*h*w; callers checked it at build */
/* Writes s's sides to whichever of c, h, w is not NULL. */
void cvi_shape_out(cvi_shape s, int *c, int *h, int *w);

/* ---------------------------------------------------------------- layers */

/* The gradient of a per-channel bias over n images of (F, P) planes,
 * db[f] += sum over images and p of dy, channels shared among `threads`
 * threads. (The bias itself is added by the multiply's epilogue or by
 * col2im.) */
void cvi_bias_grad_planes(float *db, const float *dy, size_t n, size_t F, size_t P, int threads);

/* Hyper-parameters of the convolution kinds (conv2d, conv_transpose2d). */
typedef struct cvi_conv_hp {
    size_t out_channels, kh, kw, sh, sw, ph, pw;
    cvi_conv_geom geom; /* filled at bind */
    size_t group;       /* images per multiply, fixed by the geometry (bind) */
} cvi_conv_hp;

/* Columns of a group of images stay under this many floats (512 KiB, so
 * they stay in a core's L2 cache between im2col and the multiply): one
 * multiply per group instead of per image, with a bounded workspace. The
 * group depends only on the layer's geometry, never on the batch, so that
 * results do not depend on the max batch a stack was built for. */
#define CVI_COL_GROUP_FLOATS ((size_t)1 << 17)
size_t cvi_conv_group(size_t col_floats_per_image);
/* A convolution layer's scratch: its tables, then the columns of one group
 * (col_floats_per_image each). prepare builds the tables for this call
 * (only where im2col and col2im on env's path use them: not for the
 * vector ones) and returns where the columns go; their row stride is
 * t->ldcol. The layers add the packed weights after the columns
 * (cvi_gemm_packed_a_floats). */
size_t cvi_conv_scratch_floats(const cvi_conv_hp *hp, size_t col_floats_per_image,
                               size_t max_batch);
float *cvi_conv_prepare(const cvi_conv_hp *hp, size_t max_batch, float *scratch,
                        cvi_conv_tables *t, const cvi_gemm_env *env);

/* Scratch memory a layer may use during one call: the gemm's packing
 * buffers and the layer's own ws_floats (for instance im2col columns). Both
 * belong to the stack and are sized at build. */
typedef struct cvi_workspace {
    cvi_gemm_env gemm; /* gemm.threads is also the layers' own thread count */
    float *scratch;
    /* Which lane of a model's step the pass is (model.c): lane 0, and every
     * pass outside a model, accumulates into l->grads; lane 1 into
     * l->lane_grads, except the weights of a layer with lane_direct
     * (cvi_layer_grad_spans). turns is not NULL when the two lanes run at
     * once and such a layer must take its turn (cvi_lane_turn_give, _take). */
    int lane;
    struct cvi_lane_turns *turns;
    /* concat_label's labels, one per image of the pass; NULL for none. */
    const int *labels;
    /* When not NULL, called after each layer with parameters has done its
     * backward (data-parallel steps report final gradient spans: model.c). */
    const struct cvi_grad_hook *hook;
    /* Forward only, for kinds with fuses_relu: 1 when the output is the
     * next layer's relu of it, max(x, 0) as relu computes it (x > 0 ? x :
     * 0), written in place of x. */
    int relu;
    /* Forward only: when team is not 0, this pass is lane `lane` of a team
     * of `team` lanes that run one pass each at once, one thread each, in
     * one OpenMP parallel region (model.c), over team_rows adjacent rows of
     * which team_before come before this lane's. A linear layer with large
     * weights then computes its part of the columns for all the team's
     * rows between two barriers (cvi_team_barrier), so that W^T is packed
     * once for the team instead of once per lane. */
    int team;
    size_t team_rows, team_before;
} cvi_workspace;

/* A barrier of the team of lanes (cvi_workspace.team) of the innermost
 * OpenMP parallel region; nothing without OpenMP. */
void cvi_team_barrier(void);

typedef struct cvi_grad_hook {
    void (*done)(const struct cvi_grad_hook *h, const cvae_layer *l);
} cvi_grad_hook;

/* A layer's gradient for one pass: where the first wcount floats (its
 * weights) and the rest (its biases) accumulate (see cvi_workspace.lane). */
void cvi_layer_grad_spans(const cvae_layer *l, const cvi_workspace *ws, size_t wcount,
                          float **weights, float **rest);
/* A turn of the lanes: 1 once lane 0 has given it in the current step. */
typedef struct cvi_lane_turns {
    int given;
} cvi_lane_turns;
/* Lane 0 gives up a layer's turn once its weight gradient is in l->grads;
 * lane 1 takes the turn (waiting for it) before adding its own, so the sum
 * is lane 0's plus lane 1's whichever thread is faster. Both do nothing when
 * t is NULL or the layer does not share its weight gradient. (model.c) */
void cvi_lane_turn_give(struct cvi_lane_turns *t, const cvae_layer *l);
void cvi_lane_turn_take(struct cvi_lane_turns *t, const cvae_layer *l);

/* What each kind of layer provides; one table per kind, one kind per file. */
typedef struct cvi_layer_ops {
    cvae_layer_kind kind;
    const char *name;
    /* Output shape from input shape; sets *nparams and *ws_floats (per call
     * workspace, excluding the gemm workspace). On misfit returns
     * CVAE_ERR_SHAPE or CVAE_ERR_TOO_LARGE with a message in the layer. */
    cvae_status (*bind)(cvae_layer *l, cvi_shape in, cvi_shape *out, size_t *nparams,
                        size_t *ws_floats);
    /* Fills l->params from rng (NULL for parameter-free kinds). */
    void (*init)(cvae_layer *l, cvi_rng *rng);
    /* out = f(in) for n images. NULL for view kinds (output aliases input). */
    void (*forward)(cvae_layer *l, float *out, const float *in, size_t n,
                    const cvi_workspace *ws);
    /* grads += d params; din = d in unless din is NULL. NULL for view kinds. */
    void (*backward)(cvae_layer *l, float *din, const float *dout, const float *in,
                     const float *out, size_t n, const cvi_workspace *ws);
    /* Two lanes' backward in one call on one thread, rows [0, n0) of dout
     * and in lane 0's and the next n1 lane 1's, each lane getting the bits
     * backward gives it alone (cvi_stack_backward_lanes); returns 0, having
     * done nothing, where it cannot. NULL: the lanes run one by one. */
    int (*backward_lanes)(cvae_layer *l, float *din, const float *dout, const float *in,
                          size_t n0, size_t n1, const cvi_workspace *ws0,
                          const cvi_workspace *ws1);
    /* 1 when forward honours cvi_workspace.relu: a relu that follows the
     * layer is then applied as its output is written (cvi_stack_forward). */
    int fuses_relu;
} cvi_layer_ops;

struct cvae_layer {
    cvae_allocator mem; /* the layer struct's own */
    const cvi_layer_ops *ops;
    cvae_stack *owner; /* NULL until added to a stack */
    int bound;         /* shapes known, params placed */
    cvi_shape in, out;
    size_t nparams;
    float *params, *grads; /* views into the owner's blocks */
    /* In a model (model.c): the layer's span of the second lane's gradient
     * block, which holds all but its first lane_direct floats: the second
     * lane adds the gradient of those (a linear layer's weights) straight
     * into grads, at turn lane_turn, after the first lane's. */
    float *lane_grads;
    size_t lane_direct;
    int lane_turn;
    cvi_workspace *ws;     /* the owner's workspace, for cvae_layer_forward */
    size_t max_batch;      /* the owner's */
    size_t ws_floats;
    union {
        cvi_conv_hp conv;
        struct {
            size_t out_features, in_features;
        } linear;
        struct {
            float slope;
        } leaky;
        cvi_shape reshape;
        struct {
            size_t classes; /* the labels come in the workspace */
        } label;
    } hp;
    char err[CVI_ERRMSG_SIZE];
};

/* Allocates a layer of the given kind with zeroed hyper-parameters through
 * allocator (NULL: malloc and free); CVAE_ERR_INVALID_ARG if it is bad. */
cvae_status cvi_layer_new(cvae_layer **out, const cvi_layer_ops *ops,
                          const cvae_allocator *allocator);
/* Frees a layer through its allocator, whoever owns it. */
void cvi_layer_free(cvae_layer *layer);

extern const cvi_layer_ops cvi_conv2d_ops;
extern const cvi_layer_ops cvi_conv_transpose2d_ops;
extern const cvi_layer_ops cvi_linear_ops;
extern const cvi_layer_ops cvi_relu_ops;
extern const cvi_layer_ops cvi_leaky_relu_ops;
extern const cvi_layer_ops cvi_sigmoid_ops;
extern const cvi_layer_ops cvi_tanh_ops;
extern const cvi_layer_ops cvi_flatten_ops;
extern const cvi_layer_ops cvi_reshape_ops;
extern const cvi_layer_ops cvi_concat_label_ops;

/* The most classes a concat_label layer (and a conditional model) takes. */
#define CVI_MAX_CLASSES 65536

/* Points every concat_label layer of the stack at labels (one per image of
 * the next passes; NULL for none); returns their class count, 0 if the stack
 * has none, or -1 if two of them disagree. */
int cvi_stack_set_labels(cvae_stack *stack, const int *labels);

/* One part of a batch: forward and backward over images [first, first + n)
 * of the stack's blocks, with the caller's workspace (scratch, packing
 * buffers, thread count, gradient offset, labels of those n images). Parts
 * that do not overlap may run at once on different threads, each with a
 * workspace of its own: they share only the parameters, which they read.
 * in, dout and din (NULL: not wanted) are the part's own rows. forward_part
 * returns the part's rows of the output; backward_part needs the same part's
 * forward before it. No checks: the model calls them. */
const float *cvi_stack_forward_part(cvae_stack *stack, const cvi_workspace *ws, size_t first,
                                    size_t n, const float *in);
void cvi_stack_backward_part(cvae_stack *stack, const cvi_workspace *ws, size_t first, size_t n,
                             const float *dout, float *din);
/* Two lanes' parts on one thread, layer by layer, each with the bits it
 * gets alone (forward_part, then backward_part of lane 0 and of lane 1).
 * Where their rows are one run (p[1] right after p[0], no longer), a layer
 * runs once for both: every forward and every backward without parameters
 * (each image is its own), and a layer's backward_lanes where it has one
 * and it can; other layers run for lane 0, then lane 1. in is the part's input (forward) or output gradient (backward);
 * din as above (both parts alike). */
typedef struct cvi_stack_part {
    const cvi_workspace *ws;
    size_t first, n;
    const float *in;
    float *din;
} cvi_stack_part;
void cvi_stack_forward_lanes(cvae_stack *stack, const cvi_stack_part *p);
/* A part's rows of the output after its forward. */
const float *cvi_stack_part_output(const cvae_stack *stack, size_t first);
void cvi_stack_backward_lanes(cvae_stack *stack, const cvi_stack_part *p);
/* The stack's own workspace (its shared blocks, labels and threads). */
cvi_workspace cvi_stack_workspace(cvae_stack *stack);
/* Floats per image of the stack's input; its whole output block after
 * parts covered a batch (as cvae_stack_output, which also needs a plain
 * forward first). */
size_t cvi_stack_in_size(const cvae_stack *stack);
const float *cvi_stack_forward_part_output(const cvae_stack *stack);

/* Stacks whose parameters live in a model's block: plan binds the layers
 * for the input shape and reports the parameter count and the floats of
 * the blocks a model may share between its stacks (each of the two
 * activation-gradient blocks, and the scratch) without allocating;
 * build_shared then builds the stack over the caller's params/grads
 * (nparams floats each, owned by the caller, not initialised here) and the
 * caller's shared blocks. init_rng initialises every layer in order from
 * rng. */
typedef struct cvi_stack_blocks {
    float *dbuf[2];    /* activation gradients, dbuf_floats[k] each */
    float *scratch;    /* layer scratch, scratch_floats (may be NULL if 0) */
    float *gemm_ws;    /* packing buffers for gemm_threads threads */
    int gemm_threads;
    size_t dbuf_floats[2], scratch_floats;
    size_t act_floats; /* from plan: the stack's own activation block */
} cvi_stack_blocks;

cvae_status cvi_stack_plan(cvae_stack *stack, int channels, int height, int width, int max_batch,
                           size_t *nparams, cvi_shape *out, cvi_stack_blocks *needs);
cvae_status cvi_stack_build_shared(cvae_stack *stack, int channels, int height, int width,
                                   int max_batch, float *params, float *grads,
                                   const cvi_stack_blocks *shared);
/* Points a model's stack at new packing buffers (after the model grew them). */
void cvi_stack_use_gemm_ws(cvae_stack *stack, float *ws, int threads);
void cvi_stack_init_rng(cvae_stack *stack, cvi_rng *rng);
int cvi_stack_is_built(const cvae_stack *stack);
/* Threads the stack's calls use, as cvae_stack_set_threads. */
int cvi_stack_threads(const cvae_stack *stack);
/* Points the workspace at the threads to use now: the setting resolved,
 * but no more than the packing buffers were sized for. */
void cvi_stack_prepare_threads(cvae_stack *stack);

/* PyTorch's default initialisation for a weight with fan_in inputs per
 * output: weight and bias uniform in +-1/sqrt(fan_in). */
void cvi_init_uniform_fan_in(float *w, size_t nw, float *b, size_t nb, size_t fan_in,
                             cvi_rng *rng);

/* Shared by the convolution kinds: validates hyper-parameters at creation. */
cvae_status cvi_conv_create(cvae_layer **out, const cvi_layer_ops *ops, int out_channels,
                            int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h,
                            int pad_w, const cvae_allocator *allocator);


/* ------------------------------------------------------------- checksums */

/* CRC-32 as zlib/PNG (start with 0) and Adler-32 as zlib (start with 1). */
uint32_t cvi_crc32_update(uint32_t crc, const void *data, size_t n);
uint32_t cvi_adler32_update(uint32_t adler, const void *data, size_t n);

/* ----------------------------------------------------------------- files */

/* A file written as "<path>.tmp" and renamed over path on commit; abort
 * (and any failed step of commit) removes the temporary and leaves path
 * untouched. Messages go to err (CVI_ERRMSG_SIZE bytes) and name the file;
 * after a failed write, later writes fail at once and commit aborts. */
/* The longest path written to (Linux's PATH_MAX, terminator included, is
 * 4096); a longer one is CVAE_ERR_INVALID_ARG. */
#define CVI_PATH_MAX 4091
typedef struct cvi_afile {
    FILE *f;
    const char *path; /* NULL when nothing is open */
    int failed;
    char tmp_path[CVI_PATH_MAX + 5];
} cvi_afile;

cvae_status cvi_afile_open(cvi_afile *af, const char *path, char *err);
cvae_status cvi_afile_write(cvi_afile *af, const void *data, size_t n, char *err);
cvae_status cvi_afile_commit(cvi_afile *af, char *err);
void cvi_afile_abort(cvi_afile *af);

void cvi_put_u32le(unsigned char *p, uint32_t v);
uint32_t cvi_get_u32le(const unsigned char *p);
void cvi_put_u32be(unsigned char *p, uint32_t v);
uint32_t cvi_get_u32be(const unsigned char *p);

/* ------------------------------------------------------------ optimizers */

/* Views of an optimizer's state, for saving and loading it: the options in
 * key order (lr, beta1, beta2, eps, weight decay, momentum, clip norm). */
#define CVI_OPT_NOPTIONS 7
typedef struct cvi_optimizer_state {
    const cvae_allocator *mem; /* the optimizer's allocator */
    cvae_optimizer_kind kind;
    size_t n;
    uint64_t *t;
    float *m, *v; /* v NULL for SGD */
    double *options[CVI_OPT_NOPTIONS];
    /* The running average (format version 5): its decay, count, swap flag
     * and values (NULL until allocated). */
    double *average;
    uint64_t *avg_count;
    int *swapped;
    float *avg;
} cvi_optimizer_state;

/* A caller that writes the state through it then calls
 * cvi_optimizer_state_written (what the optimizer knew of it is stale). */
void cvi_optimizer_get_state(cvae_optimizer *opt, cvi_optimizer_state *st);
void cvi_optimizer_state_written(cvae_optimizer *opt);
/* cvae_optimizer_step on `threads` threads (the result does not depend on
 * how many). */
cvae_status cvi_optimizer_step(cvae_optimizer *opt, float *params, const float *grads,
                               size_t nparams, int threads);
char *cvi_optimizer_err(cvae_optimizer *opt);
/* The variant of the optimizer's element-wise passes: AUTO (the default)
 * or one this CPU runs (cvi_gemm_path_available), for tests; AVX512 picks
 * the AVX-512 passes, any other the baseline ones. Same bits either way. */
void cvi_optimizer_set_path(cvae_optimizer *opt, cvi_gemm_path path);
/* on = 0: every Adam step runs its full checking pass instead of first
 * trying to bound the update (optim.c, light_check); for tests. */
void cvi_optimizer_set_light_checks(cvae_optimizer *opt, int on);
/* How many steps so far skipped the checking pass (for tests). */
uint64_t cvi_optimizer_light_steps(const cvae_optimizer *opt);
/* Allocates the running average (zeros) if it is not yet: CVAE_ERR_NOMEM. */
cvae_status cvi_optimizer_alloc_average(cvae_optimizer *opt);

/* ------------------------------------------------------------------ loss */

/* Sum over n pixels of the Bernoulli NLL of target under logits; when
 * dlogits is not NULL it receives scale * (sigmoid(logit) - target). */
/* The Gaussian likelihood's negative log over n pixels with means
 * sigmoid(logits) and standard deviation sigma; gradient as cvi_bce_logits.
 * cvi_sq_error_logits: the sum of (sigmoid(logit) - target)^2. */
double cvi_gauss_logits(const float *logits, const float *target, size_t n, float *dlogits,
                        float scale, double sigma);
double cvi_sq_error_logits(const float *logits, const float *target, size_t n);
double cvi_bce_logits(const float *logits, const float *target, size_t n, float *dlogits,
                      float scale);
/* Sum over n dimensions of KL(N(mu, exp(logvar)) || N(0, 1)); when dmu is
 * not NULL, dmu and dlogvar receive scale times the gradients. */
double cvi_kl_normal(const float *mu, const float *logvar, size_t n, float *dmu, float *dlogvar,
                     float scale);
/* out[i] = 1 / (1 + exp(-logits[i])), with cvi_exp_nonpos; in place is fine. */
void cvi_sigmoid(float *out, const float *logits, size_t n);
/* log(1 + u) for u in [0, 1], within a few float ulps, tiny u included. */
float cvi_log1p01(float u);
/* exp(x) for x <= 0 as the loss and the sigmoid take it: within 1.2e-7
 * relative of e^x down to FLT_MIN, 0 below it (x < -87.34), NaN for NaN. */
float cvi_exp_nonpos(float x);
/* n draws from N(0, 1) (Box-Muller). */
void cvi_rng_normal(cvi_rng *rng, float *out, size_t n);

/* ---------------------------------------------------------------- models */

/* B max batch, L latent, I = C*H*W pixels per image. enc maps I to 2L
 * (mu, then logvar, per image), dec maps L to I logits. */
/* The training recipe's defaults (CVAE_MODEL_KL_WARMUP, _DATA_INIT,
 * _LOGVAR_INIT) and bounds. */
#define CVI_DEFAULT_KL_WARMUP 0
#define CVI_DEFAULT_DATA_INIT 1
#define CVI_DEFAULT_LOGVAR_INIT -4.0
#define CVI_MAX_KL_WARMUP 4294967296.0
#define CVI_MIN_LOGVAR_INIT -20.0

/* A training batch of at least 2 CVI_LANE_MIN images runs as CVI_LANES
 * lanes, halves that may run at once on two threads (model.c). */
#define CVI_LANES 2
#define CVI_LANE_MIN 16

struct cvae_model {
    cvae_allocator mem;
    cvae_stack *enc, *dec; /* NULL until an architecture is set */
    size_t C, H, W, L, max_batch, image;
    size_t nparams, enc_nparams;
    float *params; /* (nparams): encoder's block, then decoder's */
    float *grads;  /* (nparams) laid out as params: lane 0's, then the step's */
    float *lane_grads;  /* (lane_floats) lane 1's spans (each layer's lane_grads) */
    size_t lane_floats;
    struct cvi_lane_turns *turns; /* lane_turns of them; NULL for none */
    int lane_turns;
    float *eps, *z, *dz;   /* (B, L) */
    float *denc;           /* (B, 2L) */
    float *dlogits, *xbuf; /* (B, I) */
    cvi_stack_blocks shared; /* the blocks both stacks use in turn */
    double beta;
    double max_memory; /* bytes an architecture may take; 0: no limit */
    int classes_setting; /* CVAE_MODEL_CLASSES for the next preset */
    size_t classes;      /* of the architecture's concat_label layers; 0: not conditional */
    int *ybuf;           /* (2B) labels, for conditional calls on a dataset */
    int binarize;        /* CVAE_MODEL_BINARIZE */
    int likelihood;      /* CVAE_MODEL_LIKELIHOOD: a cvae_likelihood */
    double sigma;        /* CVAE_MODEL_SIGMA; 0: learned, sigma_learned is used */
    double sigma_learned; /* the Gaussian's s when learned: set by each training step */
    uint64_t kl_warmup;   /* CVAE_MODEL_KL_WARMUP, steps; 0: none */
    int data_init;        /* CVAE_MODEL_DATA_INIT */
    double logvar_init;   /* CVAE_MODEL_LOGVAR_INIT; 0: the layer's own */
    int width_setting, hidden_setting; /* CVAE_MODEL_WIDTH, _HIDDEN for the next preset */
    int threads; /* the setting, applied to both stacks */
    uint64_t steps;
    cvi_rng rng; /* eps draws; continues the initialisation stream */
    /* Data-parallel steps (cvae_model_shard_grads then cvae_model_apply_grads):
     * the generator and learned sigma before the shard's draws, restored if
     * the update is refused, and whether the data init has been done. */
    cvi_rng shard_rng;
    double shard_sigma;
    int shard_pending, data_init_done;
    cvae_grads_ready_fn grads_ready; /* cvae_model_set_grads_ready */
    void *grads_ready_ctx;
    char err[CVI_ERRMSG_SIZE];
};

/* Gives an empty model the architecture of two unbuilt stacks (taking
 * ownership in every case), allocating everything; parameters are not
 * initialised. When expect_nparams is not 0, an architecture with another
 * parameter count is refused (CVAE_ERR_FORMAT) before any allocation. Used by
 * init_preset, init_stacks and load. */
cvae_status cvi_model_setup(cvae_model *m, cvae_stack *enc, cvae_stack *dec, int channels,
                            int height, int width, int latent, int max_batch,
                            size_t expect_nparams);

/* The training step without its draw and update: with eps already in
 * m->eps, zeroes the gradients, runs forward and backward on n images of x
 * and returns the summed reconstruction and KL (the gradients are of their
 * batch mean recon + w beta kl, w the KL warm-up's weight of the step that
 * follows m->steps: cvi_model_kl_weight). */
double cvi_model_kl_weight(const cvae_model *m);
void cvi_model_loss_grad(cvae_model *m, const float *x, size_t n, double *rsum, double *ksum);
/* The same for the shard [first, first + n) of a batch of total images: x
 * holds the shard's images (and m->eps their eps), the gradients are scaled
 * by 1 / total and the shard is cut where the whole batch's lanes are. */
void cvi_model_shard_loss_grad(cvae_model *m, const float *x, size_t first, size_t n,
                               size_t total, double *rsum, double *ksum);

/* A forward pass of n <= max_batch images through one of the model's
 * stacks (with its labels set), as two lanes on two threads when there are
 * two threads and at least 2 CVI_LANE_MIN images: the outputs are the same
 * bits either way (a forward pass computes each image alone). Returns the
 * stack's output block. */
const float *cvi_model_forward(cvae_model *m, cvae_stack *s, const float *in, size_t n);

/* The reconstruction term of the model's likelihood summed over n pixels
 * (logits against targets x), and when dlogits is not NULL its gradient
 * times scale. Gaussian: with the standard deviation in use (the setting,
 * or the learned one). */
double cvi_model_recon(const cvae_model *m, const float *logits, const float *x, size_t n,
                       float *dlogits, float scale);

/* CVAE_ERR_STATE without an architecture, CVAE_ERR_INVALID_ARG for a NULL
 * or empty dataset, CVAE_ERR_SHAPE for images of another shape; the
 * message starts with what. */
cvae_status cvi_model_check_dataset(cvae_model *m, const cvae_dataset *ds, const char *what);

/* dst = 1 where a uniform draw from rng is below src, else 0: a Bernoulli
 * draw per pixel with the intensity as probability. dst may be src. */
void cvi_binarize(cvi_rng *rng, float *dst, const float *src, size_t n);
/* Index of the first NaN or infinity of v[0 .. n), or n when all are finite. */
size_t cvi_first_nonfinite(const float *v, size_t n);

/* A conditional model needs n labels in [0, classes), any other model none
 * (CVAE_ERR_INVALID_ARG, message starting with what); use_labels points the
 * concat_label layers of both stacks at labels (NULL once a call ends). */
cvae_status cvi_model_check_labels(cvae_model *m, const char *what, const int *labels, int n);
void cvi_model_use_labels(cvae_model *m, const int *labels);

/* Returns a model to empty, freeing its architecture. */
void cvi_model_clear(cvae_model *m);

/* A running log-sum-exp of count values: add them one by one, then
 * lse_mean = log((1/count) sum exp(v_i)), exact to rounding for values of
 * any magnitude (no exp overflows or vanishes). Start from {0, 0, 0}. */
typedef struct cvi_lse {
    double top, sum;
    size_t count;
} cvi_lse;
void cvi_lse_add(cvi_lse *acc, double v);
double cvi_lse_mean(const cvi_lse *acc);

/* For the loaders of other formats. cvi_open_error: the message of a failed
 * fopen of path (with a hint when only path.gz exists); IO. cvi_read_exact:
 * exactly n bytes, IO on a stream error (such as reading a directory),
 * FORMAT naming `what` as truncated at end of file. cvi_dataset_adopt makes
 * pixels (count x c x h x w) and labels (count, or NULL), allocated with
 * cvi_dataset_allocator(ds), the dataset's content in stored order; on
 * failure (NOMEM) it frees them and the dataset keeps its content. */
cvae_status cvi_open_error(const cvae_allocator *a, const char *path, int err_no, char *err);
cvae_status cvi_read_exact(FILE *f, void *buf, size_t n, const char *path, const char *what,
                           char *err);
const cvae_allocator *cvi_dataset_allocator(cvae_dataset *ds);
char *cvi_dataset_errbuf(cvae_dataset *ds);
/* INVALID_ARG with a message starting with what when paths is NULL, count
 * < 1 or a path is NULL. */
cvae_status cvi_check_paths(const char *const *paths, int count, const char *what, char *err);
cvae_status cvi_dataset_adopt(cvae_dataset *ds, uint8_t *pixels, uint8_t *labels, size_t count,
                              size_t c, size_t h, size_t w);

/* The dataset's labels first .. first+n-1 in stored order (it has labels),
 * and its largest label (0 without labels). */
void cvi_dataset_labels_stored(const cvae_dataset *ds, size_t first, size_t n, int *labels);
size_t cvi_dataset_max_label(const cvae_dataset *ds);

/* The packed form of one image of n bytes (pack.c): cvi_pack_image writes
 * it to out (when not NULL) and returns its length in bytes, at most
 * n + ceil(n / 128); cvi_unpack_float turns it back into the n pixels as
 * x / 255.0f, the floats the raw bytes give. */
size_t cvi_pack_image(const uint8_t *px, size_t n, uint8_t *out);
void cvi_unpack_float(const uint8_t *code, size_t n, float *out);

/* The dataset's images first .. first+n-1 in stored order, as floats. */
void cvi_dataset_batch_stored(const cvae_dataset *ds, size_t first, size_t n, float *images);

#endif /* CVAE_INTERNAL_H */
