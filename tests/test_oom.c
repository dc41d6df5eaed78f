/*
 * test_oom.c - allocation failure, through the public allocator hook.
 *
 * Every public operation that allocates runs with a counting allocator that
 * fails its 1st allocation, then (from a fresh start) its 2nd, its 3rd ...
 * until the operation gets through without meeting the failure. Each failed
 * run must return CVAE_ERR_NOMEM, leave the handle as it was (checked, and
 * the same operation then succeeds on it), and leak nothing: once the test's
 * handles are destroyed, every block the allocator handed out is back.
 *
 * The library's own calls to malloc, calloc, realloc and free are routed
 * through the linker's --wrap (see the Makefile) and counted too: with an
 * allocator given, the library must never call them itself, and saving a
 * model or writing a PNG must allocate nothing at all.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvae.h"
#include "testutil.h"
#include "testwrap.h"

/* ------------------------------------------------------ counting allocator */

/* Blocks carry a 16-byte header (malloc's alignment is kept) holding a tag,
 * so that a free of anything this allocator did not hand out is seen. */
#define TAG 0x0ca11ecau
#define HEADER 16

typedef struct counter {
    long calls;      /* allocations asked for */
    long fail_at;    /* the call number that fails; 0: none */
    long live;       /* blocks handed out and not yet freed */
    long foreign;    /* frees of blocks that were not ours */
} counter;

static void *count_alloc(void *user, size_t size)
{
    counter *c = user;
    unsigned char *p;
    uint32_t tag = TAG;
    c->calls++;
    if (c->calls == c->fail_at)
        return NULL;
    if (size > SIZE_MAX - HEADER)
        return NULL;
    p = tw_real_malloc(size + HEADER);
    if (!p)
        return NULL;
    memcpy(p, &tag, sizeof tag);
    c->live++;
    return p + HEADER;
}

static void count_free(void *user, void *ptr)
{
    counter *c = user;
    unsigned char *p = (unsigned char *)ptr - HEADER;
    uint32_t tag;
    memcpy(&tag, p, sizeof tag);
    if (tag != TAG) {
        c->foreign++;
        return;
    }
    tag = 0;
    memcpy(p, &tag, sizeof tag);
    c->live--;
    tw_real_free(p);
}

/* ------------------------------------------------------------ the fixture */

enum { IMG = 16, LATENT = 4, BATCH = 8, NIMG = 40 };

/* Files made once for the whole program with the default allocator. */
static char dir[256], model_path[300], images_path[300], labels_path[300], png_path[300];

/* What one run of one case holds; everything is created through `alloc`. */
typedef struct fixture {
    counter count;
    cvae_allocator alloc;
    cvae_layer *layer;
    cvae_stack *stack, *dec;
    cvae_model *model;
    cvae_optimizer *opt;
    cvae_dataset *ds, *train, *val;
} fixture;

typedef struct oom_case {
    const char *name;
    /* Creates what the operation needs (nothing fails during it). */
    void (*setup)(fixture *f);
    /* The operation under test. */
    cvae_status (*op)(fixture *f);
    /* After a failed op: asserts the handle is as setup left it. NULL when
     * the op creates its handle (nothing to check but *out == NULL). */
    void (*unchanged)(fixture *f);
    /* Whether the op may simply be called again on the same handle. */
    int retry;
    /* Whether the op may allocate nothing (growing thread buffers, in a
     * build without OpenMP where every count is one thread). */
    int may_not_allocate;
} oom_case;

/* After a failed constructor: no handle came out of it. */
static void nothing_made(fixture *f)
{
    assert_null(f->layer);
    assert_null(f->stack);
    assert_null(f->model);
    assert_null(f->opt);
    assert_null(f->ds);
}

static void fixture_free(fixture *f)
{
    cvae_layer_destroy(f->layer);
    cvae_stack_destroy(f->stack);
    cvae_stack_destroy(f->dec);
    cvae_model_destroy(f->model);
    cvae_optimizer_destroy(f->opt);
    cvae_dataset_destroy(f->ds);
    cvae_dataset_destroy(f->train);
    cvae_dataset_destroy(f->val);
    f->layer = NULL;
    f->stack = f->dec = NULL;
    f->model = NULL;
    f->opt = NULL;
    f->ds = f->train = f->val = NULL;
}

/* Runs one case for fail_at = 1, 2, ... until the op no longer meets the
 * failure; returns the number of failures injected. */
static long exhaust(const oom_case *oc)
{
    long k;
    for (k = 1;; k++) {
        fixture f;
        long base;
        cvae_status st;
        memset(&f, 0, sizeof f);
        f.alloc.alloc_fn = count_alloc;
        f.alloc.free_fn = count_free;
        f.alloc.user = &f.count;
        if (oc->setup)
            oc->setup(&f);
        base = f.count.calls;
        f.count.fail_at = base + k;
        st = oc->op(&f);
        if (f.count.calls < base + k) {
            /* The op made fewer than k allocations: done, and it worked. */
            if (st != CVAE_OK)
                fail_msg("%s: status %d without an injected failure", oc->name, (int)st);
            fixture_free(&f);
            assert_int_equal(f.count.live, 0);
            assert_int_equal(f.count.foreign, 0);
            return k - 1;
        }
        if (st != CVAE_ERR_NOMEM)
            fail_msg("%s: allocation %ld of %ld failed, status %d (%s), expected NOMEM",
                     oc->name, k, f.count.calls - base, (int)st, cvae_status_string(st));
        if (oc->unchanged)
            oc->unchanged(&f);
        if (oc->retry) {
            f.count.fail_at = 0;
            st = oc->op(&f);
            if (st != CVAE_OK)
                fail_msg("%s: retry after failing allocation %ld gave status %d", oc->name, k,
                         (int)st);
        }
        fixture_free(&f);
        if (f.count.live != 0 || f.count.foreign != 0)
            fail_msg("%s: failing allocation %ld leaked %ld blocks (%ld foreign frees)",
                     oc->name, k, f.count.live, f.count.foreign);
    }
}

static void run_cases(const oom_case *cases, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        long tried = exhaust(&cases[i]);
        print_message("test_oom: %-28s %3ld allocation failures injected\n", cases[i].name,
                      tried);
        if (tried == 0 && !cases[i].may_not_allocate)
            fail_msg("%s: allocates nothing: the case proves nothing", cases[i].name);
    }
}

/* ------------------------------------------------------------- the layers */

static cvae_status op_conv2d(fixture *f)
{
    return cvae_layer_create_conv2d_with(&f->layer, 8, 3, 3, 1, 1, 1, 1, &f->alloc);
}
static cvae_status op_convt2d(fixture *f)
{
    return cvae_layer_create_conv_transpose2d_with(&f->layer, 8, 4, 4, 2, 2, 1, 1, &f->alloc);
}
static cvae_status op_linear(fixture *f)
{
    return cvae_layer_create_linear_with(&f->layer, 10, &f->alloc);
}
static cvae_status op_relu(fixture *f)
{
    return cvae_layer_create_relu_with(&f->layer, &f->alloc);
}
static cvae_status op_leaky(fixture *f)
{
    return cvae_layer_create_leaky_relu_with(&f->layer, 0.1f, &f->alloc);
}
static cvae_status op_sigmoid(fixture *f)
{
    return cvae_layer_create_sigmoid_with(&f->layer, &f->alloc);
}
static cvae_status op_tanh(fixture *f)
{
    return cvae_layer_create_tanh_with(&f->layer, &f->alloc);
}
static cvae_status op_flatten(fixture *f)
{
    return cvae_layer_create_flatten_with(&f->layer, &f->alloc);
}
static cvae_status op_reshape(fixture *f)
{
    return cvae_layer_create_reshape_with(&f->layer, 2, 2, 2, &f->alloc);
}

static void test_layer_create(void **state)
{
    static const oom_case cases[] = {
        {"layer_create_conv2d", NULL, op_conv2d, nothing_made, 0, 0},
        {"layer_create_conv_transpose2d", NULL, op_convt2d, nothing_made, 0, 0},
        {"layer_create_linear", NULL, op_linear, nothing_made, 0, 0},
        {"layer_create_relu", NULL, op_relu, nothing_made, 0, 0},
        {"layer_create_leaky_relu", NULL, op_leaky, nothing_made, 0, 0},
        {"layer_create_sigmoid", NULL, op_sigmoid, nothing_made, 0, 0},
        {"layer_create_tanh", NULL, op_tanh, nothing_made, 0, 0},
        {"layer_create_flatten", NULL, op_flatten, nothing_made, 0, 0},
        {"layer_create_reshape", NULL, op_reshape, nothing_made, 0, 0},
    };
    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ------------------------------------------------------------- the stacks */

/* The seed encoder for IMG x IMG grey images, made and added layer by layer
 * (each constructor and each add is a point that may fail). */
static cvae_status add_encoder_layers(cvae_stack *s, const cvae_allocator *a)
{
    cvae_layer *l = NULL;
    cvae_status st;
    int i;
    for (i = 0; i < 10; i++) {
        switch (i) {
        case 0: st = cvae_layer_create_conv2d_with(&l, 4, 4, 4, 2, 2, 1, 1, a); break;
        case 2: st = cvae_layer_create_conv2d_with(&l, 8, 4, 4, 2, 2, 1, 1, a); break;
        case 4: st = cvae_layer_create_flatten_with(&l, a); break;
        case 5: st = cvae_layer_create_linear_with(&l, 16, a); break;
        case 7: st = cvae_layer_create_linear_with(&l, 2 * LATENT, a); break;
        case 8: st = cvae_layer_create_tanh_with(&l, a); break; /* 9 and 10 make the list grow */
        default: st = cvae_layer_create_relu_with(&l, a); break;
        }
        if (st != CVAE_OK)
            return st;
        if ((st = cvae_stack_add(s, l)) != CVAE_OK)
            return st;
    }
    return CVAE_OK;
}

static cvae_status add_decoder_layers(cvae_stack *s, const cvae_allocator *a)
{
    cvae_layer *l = NULL;
    cvae_status st;
    if ((st = cvae_layer_create_linear_with(&l, 8 * (IMG / 4) * (IMG / 4), a)) != CVAE_OK ||
        (st = cvae_stack_add(s, l)) != CVAE_OK ||
        (st = cvae_layer_create_reshape_with(&l, 8, IMG / 4, IMG / 4, a)) != CVAE_OK ||
        (st = cvae_stack_add(s, l)) != CVAE_OK ||
        (st = cvae_layer_create_conv_transpose2d_with(&l, 4, 4, 4, 2, 2, 1, 1, a)) != CVAE_OK ||
        (st = cvae_stack_add(s, l)) != CVAE_OK ||
        (st = cvae_layer_create_leaky_relu_with(&l, 0.01f, a)) != CVAE_OK ||
        (st = cvae_stack_add(s, l)) != CVAE_OK ||
        (st = cvae_layer_create_conv_transpose2d_with(&l, 1, 4, 4, 2, 2, 1, 1, a)) != CVAE_OK)
        return st;
    return cvae_stack_add(s, l);
}

static cvae_status op_stack_create(fixture *f)
{
    return cvae_stack_create_with(&f->stack, &f->alloc);
}

static void setup_stack(fixture *f)
{
    assert_int_equal(cvae_stack_create_with(&f->stack, &f->alloc), CVAE_OK);
}

/* Creating layers and adding them: on failure the stack keeps the layers
 * added so far and stays usable (it can still be destroyed cleanly). */
static cvae_status op_stack_fill(fixture *f)
{
    return add_encoder_layers(f->stack, &f->alloc);
}

static void setup_filled_stack(fixture *f)
{
    setup_stack(f);
    assert_int_equal(add_encoder_layers(f->stack, &f->alloc), CVAE_OK);
}

static cvae_status op_stack_build(fixture *f)
{
    return cvae_stack_build(f->stack, 1, IMG, IMG, BATCH, 5);
}

static void stack_not_built(fixture *f)
{
    float x[IMG * IMG] = {0};
    if (!strstr(cvae_stack_last_error(f->stack), "memory"))
        fail_msg("stack_build: message \"%s\"", cvae_stack_last_error(f->stack));
    assert_int_equal(cvae_stack_max_batch(f->stack), 0);
    assert_int_equal(cvae_stack_forward(f->stack, x, 1, NULL), CVAE_ERR_STATE);
}

static void setup_built_stack(fixture *f)
{
    setup_filled_stack(f);
    assert_int_equal(cvae_stack_set_threads(f->stack, 1), CVAE_OK);
    assert_int_equal(cvae_stack_build(f->stack, 1, IMG, IMG, BATCH, 5), CVAE_OK);
}

/* More threads than the packing buffers were sized for grows them (in a
 * build without OpenMP, every count resolves to one thread: no allocation). */
static cvae_status op_stack_threads(fixture *f)
{
    return cvae_stack_set_threads(f->stack, 4);
}

static void stack_threads_kept(fixture *f)
{
    float x[IMG * IMG] = {0};
    assert_int_equal(cvae_stack_get_threads(f->stack), 1);
    assert_int_equal(cvae_stack_forward(f->stack, x, 1, NULL), CVAE_OK);
}

static void test_stack(void **state)
{
    static const oom_case cases[] = {
        {"stack_create", NULL, op_stack_create, nothing_made, 0, 0},
        {"layer_create + stack_add", setup_stack, op_stack_fill, NULL, 0, 0},
        {"stack_build", setup_filled_stack, op_stack_build, stack_not_built, 1, 0},
        {"stack_set_threads", setup_built_stack, op_stack_threads, stack_threads_kept, 1, 1},
    };
    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ------------------------------------------------------------- the models */

static cvae_status op_model_create(fixture *f)
{
    return cvae_model_create_with(&f->model, &f->alloc);
}

static void setup_model(fixture *f)
{
    assert_int_equal(cvae_model_create_with(&f->model, &f->alloc), CVAE_OK);
    assert_int_equal(cvae_model_set(f->model, CVAE_MODEL_THREADS, 1), CVAE_OK);
}

static void model_is_empty(fixture *f)
{
    assert_int_equal(cvae_model_param_count(f->model), 0);
    assert_null(cvae_model_encoder(f->model));
    assert_non_null(strstr(cvae_model_last_error(f->model), "memory"));
}

static cvae_status op_model_preset(fixture *f)
{
    return cvae_model_init_preset(f->model, 1, IMG, IMG, LATENT, BATCH, 7);
}

/* The user's stacks: the model takes them in every case, so no retry. */
static void setup_model_and_stacks(fixture *f)
{
    setup_model(f);
    assert_int_equal(cvae_stack_create_with(&f->stack, &f->alloc), CVAE_OK);
    assert_int_equal(cvae_stack_create_with(&f->dec, &f->alloc), CVAE_OK);
    assert_int_equal(add_encoder_layers(f->stack, &f->alloc), CVAE_OK);
    assert_int_equal(add_decoder_layers(f->dec, &f->alloc), CVAE_OK);
}

static cvae_status op_model_stacks(fixture *f)
{
    cvae_stack *enc = f->stack, *dec = f->dec;
    f->stack = f->dec = NULL; /* the model owns them from here on */
    return cvae_model_init_stacks(f->model, enc, dec, 1, IMG, IMG, LATENT, BATCH, 7);
}

static void model_is_empty_no_message(fixture *f)
{
    assert_int_equal(cvae_model_param_count(f->model), 0);
    assert_null(cvae_model_encoder(f->model));
}

static cvae_status op_model_load(fixture *f)
{
    return cvae_model_load(f->model, model_path, BATCH);
}

static void setup_preset_model(fixture *f)
{
    setup_model(f);
    assert_int_equal(op_model_preset(f), CVAE_OK);
}

static cvae_status op_model_threads(fixture *f)
{
    return cvae_model_set(f->model, CVAE_MODEL_THREADS, 4);
}

static void model_threads_kept(fixture *f)
{
    double v = -1;
    float x[IMG * IMG] = {0}, mu[LATENT], lv[LATENT];
    assert_int_equal(cvae_model_get(f->model, CVAE_MODEL_THREADS, &v), CVAE_OK);
    assert_true(v == 1.0);
    assert_int_equal(cvae_model_encode(f->model, x, 1, mu, lv), CVAE_OK);
}

/* Training after a failed-then-retried set-up proves the blocks are whole. */
static cvae_status op_model_preset_and_train(fixture *f)
{
    float x[BATCH * IMG * IMG];
    cvae_status st;
    double recon = 0, kl = 0;
    size_t i;
    if ((st = op_model_preset(f)) != CVAE_OK)
        return st;
    if (!f->opt && (st = cvae_optimizer_create_with(&f->opt, CVAE_OPTIMIZER_ADAM,
                                                     cvae_model_param_count(f->model),
                                                     &f->alloc)) != CVAE_OK)
        return st;
    for (i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)(i % 7) / 6.0f;
    return cvae_model_train_step(f->model, f->opt, x, BATCH, &recon, &kl);
}

static void test_model(void **state)
{
    static const oom_case cases[] = {
        {"model_create", NULL, op_model_create, nothing_made, 0, 0},
        {"model_init_preset", setup_model, op_model_preset, model_is_empty, 1, 0},
        {"model_init_stacks", setup_model_and_stacks, op_model_stacks, model_is_empty_no_message,
         0, 0},
        {"model_load", setup_model, op_model_load, model_is_empty, 1, 0},
        {"model_set threads", setup_preset_model, op_model_threads, model_threads_kept, 1, 1},
        {"preset + optimizer + train", setup_model, op_model_preset_and_train, NULL, 0, 0},
    };
    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* The model a retried load gives equals the one saved. */
static void test_model_load_after_failures(void **state)
{
    fixture f;
    cvae_model *ref = NULL;
    size_t n, nref;
    float *p, *pref;
    long k;
    (void)state;
    assert_int_equal(cvae_model_create(&ref), CVAE_OK);
    assert_int_equal(cvae_model_load(ref, model_path, BATCH), CVAE_OK);
    pref = cvae_model_params(ref, &nref);
    for (k = 1; k <= 3; k++) {
        memset(&f, 0, sizeof f);
        f.alloc.alloc_fn = count_alloc;
        f.alloc.free_fn = count_free;
        f.alloc.user = &f.count;
        setup_model(&f);
        f.count.fail_at = f.count.calls + k;
        assert_int_equal(op_model_load(&f), CVAE_ERR_NOMEM);
        f.count.fail_at = 0;
        assert_int_equal(op_model_load(&f), CVAE_OK);
        p = cvae_model_params(f.model, &n);
        assert_int_equal(n, nref);
        assert_memory_equal(p, pref, n * sizeof *p);
        fixture_free(&f);
        assert_int_equal(f.count.live, 0);
    }
    cvae_model_destroy(ref);
}

/* --------------------------------------------------------- the optimizer */

static cvae_status op_adam_create(fixture *f)
{
    return cvae_optimizer_create_with(&f->opt, CVAE_OPTIMIZER_ADAM, 1000, &f->alloc);
}
static cvae_status op_sgd_create(fixture *f)
{
    return cvae_optimizer_create_with(&f->opt, CVAE_OPTIMIZER_SGD, 1000, &f->alloc);
}

static void setup_optimizer(fixture *f)
{
    cvae_model *m = NULL;
    assert_int_equal(cvae_model_create(&m), CVAE_OK);
    assert_int_equal(cvae_model_load(m, model_path, BATCH), CVAE_OK);
    assert_int_equal(cvae_optimizer_create_with(&f->opt, CVAE_OPTIMIZER_ADAM,
                                                cvae_model_param_count(m), &f->alloc),
                     CVAE_OK);
    cvae_model_destroy(m);
}

static cvae_status op_optimizer_load(fixture *f)
{
    return cvae_optimizer_load(f->opt, model_path);
}

static void opt_not_loaded(fixture *f)
{
    assert_int_equal(cvae_optimizer_steps(f->opt), 0);
}

static void test_optimizer(void **state)
{
    static const oom_case cases[] = {
        {"optimizer_create adam", NULL, op_adam_create, nothing_made, 0, 0},
        {"optimizer_create sgd", NULL, op_sgd_create, nothing_made, 0, 0},
        {"optimizer_load", setup_optimizer, op_optimizer_load, opt_not_loaded, 1, 0},
    };
    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ----------------------------------------------------------- the datasets */

static uint8_t pixels[NIMG * IMG * IMG], labels[NIMG];

static cvae_status op_dataset_create(fixture *f)
{
    return cvae_dataset_create_with(&f->ds, &f->alloc);
}

/* A dataset already holding 3 images of 2x2, so that "unchanged" means
 * something. */
static void setup_dataset(fixture *f)
{
    static const uint8_t small[3 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    assert_int_equal(cvae_dataset_create_with(&f->ds, &f->alloc), CVAE_OK);
    assert_int_equal(cvae_dataset_set_u8(f->ds, 3, 1, 2, 2, small, NULL), CVAE_OK);
}

static void ds_unchanged(fixture *f)
{
    float img[4];
    int h = 0;
    assert_int_equal(cvae_dataset_count(f->ds), 3);
    assert_int_equal(cvae_dataset_shape(f->ds, NULL, &h, NULL), CVAE_OK);
    assert_int_equal(h, 2);
    assert_int_equal(cvae_dataset_has_labels(f->ds), 0);
    assert_int_equal(cvae_dataset_batch(f->ds, 2, 1, img, NULL), CVAE_OK);
    assert_true(img[3] == 12.0f / 255.0f);
    assert_null(f->train);
    assert_null(f->val);
}

static cvae_status op_dataset_set(fixture *f)
{
    return cvae_dataset_set_u8(f->ds, NIMG, 1, IMG, IMG, pixels, labels);
}

static cvae_status op_dataset_load(fixture *f)
{
    return cvae_dataset_load_idx(f->ds, images_path, labels_path);
}

static void setup_full_dataset(fixture *f)
{
    setup_dataset(f);
    assert_int_equal(op_dataset_set(f), CVAE_OK);
}

static cvae_status op_dataset_split(fixture *f)
{
    return cvae_dataset_split(f->ds, 10, 3, &f->train, &f->val);
}

static void split_left_source(fixture *f)
{
    assert_int_equal(cvae_dataset_count(f->ds), NIMG);
    assert_null(f->train);
    assert_null(f->val);
}

static void test_dataset(void **state)
{
    static const oom_case cases[] = {
        {"dataset_create", NULL, op_dataset_create, nothing_made, 0, 0},
        {"dataset_set_u8", setup_dataset, op_dataset_set, ds_unchanged, 1, 0},
        {"dataset_load_idx", setup_dataset, op_dataset_load, ds_unchanged, 1, 0},
        {"dataset_split", setup_full_dataset, op_dataset_split, split_left_source, 1, 0},
    };
    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* --------------------------------------------- the library never mallocs */

/* With an allocator given, nothing in the library calls malloc and friends
 * itself, and a save or a PNG (which need no memory) allocate nothing from
 * either; the wrap does see the default allocator (else this proves nothing). */
static void test_no_direct_malloc(void **state)
{
    fixture f;
    float images[4 * IMG * IMG];
    char msg[200];
    cvae_layer *l = NULL;
    unsigned long before, libc_before;
    double recon, kl, total;
    (void)state;
    memset(&f, 0, sizeof f);
    f.alloc.alloc_fn = count_alloc;
    f.alloc.free_fn = count_free;
    f.alloc.user = &f.count;
    before = tw_libc_calls();
    setup_model(&f);
    assert_int_equal(op_model_preset_and_train(&f), CVAE_OK);
    assert_int_equal(cvae_model_set(f.model, CVAE_MODEL_THREADS, 2), CVAE_OK);
    setup_full_dataset(&f);
    assert_int_equal(op_dataset_split(&f), CVAE_OK);
    assert_int_equal(op_dataset_load(&f), CVAE_OK);
    assert_int_equal(cvae_model_evaluate(f.model, f.ds, 1, &recon, &kl, &total), CVAE_OK);
    assert_int_equal(cvae_layer_create_relu_with(&l, &f.alloc), CVAE_OK);
    cvae_layer_destroy(l);
    assert_int_equal(tw_libc_calls(), before);
    assert_true(f.count.calls > 10);

    /* Saving and writing a PNG: no allocation from anyone. */
    before = f.count.calls;
    libc_before = tw_libc_calls();
    assert_int_equal(cvae_model_save(f.model, f.opt, model_path), CVAE_OK);
    assert_int_equal(cvae_model_sample(f.model, 4, 5, images), CVAE_OK);
    assert_int_equal(cvae_png_write_grid(png_path, images, 4, 1, IMG, IMG, 2, msg, sizeof msg),
                     CVAE_OK);
    assert_int_equal(f.count.calls, before);
    assert_int_equal(tw_libc_calls(), libc_before);
    fixture_free(&f);
    assert_int_equal(f.count.live, 0);

    /* The default allocator goes through the wrapped malloc. */
    before = tw_libc_calls();
    assert_int_equal(cvae_layer_create_relu(&l), CVAE_OK);
    cvae_layer_destroy(l);
    assert_int_equal(tw_libc_calls(), before + 2);
}

/* An allocator missing a function is refused by every constructor. */
static void test_bad_allocator(void **state)
{
    counter c;
    cvae_allocator half = {count_alloc, NULL, NULL}, other = {NULL, count_free, NULL};
    cvae_layer *l = (cvae_layer *)&c;
    cvae_stack *s = (cvae_stack *)&c;
    cvae_model *m = (cvae_model *)&c;
    cvae_optimizer *o = (cvae_optimizer *)&c;
    cvae_dataset *d = (cvae_dataset *)&c;
    (void)state;
    memset(&c, 0, sizeof c);
    half.user = other.user = &c;
    assert_int_equal(cvae_layer_create_linear_with(&l, 3, &half), CVAE_ERR_INVALID_ARG);
    assert_null(l);
    assert_int_equal(cvae_layer_create_relu_with(&l, &other), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_create_with(&s, &half), CVAE_ERR_INVALID_ARG);
    assert_null(s);
    assert_int_equal(cvae_model_create_with(&m, &other), CVAE_ERR_INVALID_ARG);
    assert_null(m);
    assert_int_equal(cvae_optimizer_create_with(&o, CVAE_OPTIMIZER_SGD, 5, &half),
                     CVAE_ERR_INVALID_ARG);
    assert_null(o);
    assert_int_equal(cvae_dataset_create_with(&d, &other), CVAE_ERR_INVALID_ARG);
    assert_null(d);
    assert_int_equal(c.calls, 0);
    assert_int_equal(cvae_model_create_with(NULL, NULL), CVAE_ERR_INVALID_ARG);
}

/* --------------------------------------------------------------- set-up */

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4];
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
    assert_int_equal(fwrite(b, 1, 4, f), 4);
}

static int make_files(void **state)
{
    cvae_model *m = NULL;
    cvae_optimizer *o = NULL;
    FILE *f;
    size_t i;
    float x[BATCH * IMG * IMG];
    double recon, kl;
    (void)state;
    if (tu_tmpdir_make(dir, sizeof dir, "test_oom") != 0)
        return -1;
    snprintf(model_path, sizeof model_path, "%s/model.cvae", dir);
    snprintf(images_path, sizeof images_path, "%s/images.idx", dir);
    snprintf(labels_path, sizeof labels_path, "%s/labels.idx", dir);
    snprintf(png_path, sizeof png_path, "%s/grid.png", dir);
    for (i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)(i * 37 % 251);
    for (i = 0; i < NIMG; i++)
        labels[i] = (uint8_t)(i % 10);
    for (i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = pixels[i] / 255.0f;
    /* A trained model with its optimizer. */
    if (cvae_model_create(&m) != CVAE_OK ||
        cvae_model_init_preset(m, 1, IMG, IMG, LATENT, BATCH, 3) != CVAE_OK ||
        cvae_optimizer_create(&o, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m)) != CVAE_OK ||
        cvae_model_train_step(m, o, x, BATCH, &recon, &kl) != CVAE_OK ||
        cvae_model_save(m, o, model_path) != CVAE_OK)
        return -1;
    cvae_optimizer_destroy(o);
    cvae_model_destroy(m);
    /* IDX files of the same images and labels. */
    if (!(f = fopen(images_path, "wb")))
        return -1;
    put_be32(f, 0x00000803u);
    put_be32(f, NIMG);
    put_be32(f, IMG);
    put_be32(f, IMG);
    fwrite(pixels, 1, sizeof pixels, f);
    fclose(f);
    if (!(f = fopen(labels_path, "wb")))
        return -1;
    put_be32(f, 0x00000801u);
    put_be32(f, NIMG);
    fwrite(labels, 1, sizeof labels, f);
    fclose(f);
    return 0;
}

static int remove_files(void **state)
{
    (void)state;
    tu_tmpdir_remove(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_create),
        cmocka_unit_test(test_stack),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_model_load_after_failures),
        cmocka_unit_test(test_optimizer),
        cmocka_unit_test(test_dataset),
        cmocka_unit_test(test_no_direct_malloc),
        cmocka_unit_test(test_bad_allocator),
    };
    return cmocka_run_group_tests(tests, make_files, remove_files);
}
