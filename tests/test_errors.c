/*
 * test_errors.c - checks every bad-argument and out-of-order path of the
 * public API: each returns its specific documented status, sets a message on
 * the handle (when there is one) that names the problem, leaves the handle as
 * it was and usable, and leaks nothing (AddressSanitizer's leak check runs on
 * the SANITIZE=1 build; ownership tests rely on it to prove single frees).
 *
 * Covered: constructors (NULL out, sizes < 1, negative padding, leaky slope
 * outside [0, 1) including NaN and infinities, *out set to NULL on failure);
 * cvae_stack_build (NULL, empty, sizes < 1, kernel larger than the padded
 * input, empty transposed output, reshape count mismatch, size products that
 * overflow or are absurd, output sides beyond int, rebuilding after a
 * failure, building twice); calls before build; batch sizes out of range;
 * backward without a matching forward; NULL buffers; cvae_stack_add
 * ownership rules; single-layer forward/backward; options and their
 * bounds; const-handle calls leaving the message alone; destroy(NULL);
 * getters on NULL handles; status values and strings; version.
 * Not covered: CVAE_ERR_NOMEM (release 0.1 has no allocator hook to fail the
 * n-th allocation), file errors (no file functions yet).
 * The huge-size cases are refused before any allocation, so they run fast.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cvae.h"

/* ------------------------------------------------------------- helpers */

/* A non-NULL pointer value to pre-fill out arguments with; never used as an
 * object. The union gives it the alignment of any handle struct. */
static union {
    void *p;
    double d;
    size_t s;
} dummy_object;
#define DUMMY_LAYER ((cvae_layer *)(void *)&dummy_object)
#define DUMMY_STACK ((cvae_stack *)(void *)&dummy_object)

/* Fails unless msg is non-NULL, non-empty and contains needle. */
#define assert_msg_has(msg, needle) check_msg((msg), (needle), __LINE__)

static void check_msg(const char *msg, const char *needle, int line)
{
    if (!msg || !msg[0])
        fail_msg("line %d: message is %s, expected one containing \"%s\"", line,
                 msg ? "empty" : "NULL", needle);
    if (!strstr(msg, needle))
        fail_msg("line %d: message \"%s\" does not contain \"%s\"", line, msg, needle);
}

/* The decimal text of v, for looking numbers up in messages. */
static const char *itoa_buf(char *buf, size_t size, long long v)
{
    snprintf(buf, size, "%lld", v);
    return buf;
}

static cvae_stack *new_stack(void)
{
    cvae_stack *s = NULL;
    assert_int_equal(cvae_stack_create(&s), CVAE_OK);
    assert_non_null(s);
    assert_string_equal(cvae_stack_last_error(s), "");
    return s;
}

/* Appends the layer *lp just created; create_status is the constructor's.
 * The layer goes by address: push(s, create(&l), l) would read l in an
 * unspecified order with the constructor's write. */
static void push(cvae_stack *s, cvae_status create_status, cvae_layer **lp)
{
    assert_int_equal(create_status, CVAE_OK);
    assert_non_null(*lp);
    assert_int_equal(cvae_stack_add(s, *lp), CVAE_OK);
}

/* The stack is not built: every build-dependent query says so. */
static void assert_unbuilt(cvae_stack *s)
{
    size_t count = 99;
    int c = -5;
    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    assert_int_equal(cvae_stack_max_batch(s), 0);
    assert_null(cvae_stack_params(s, &count));
    assert_int_equal(count, 0);
    assert_null(cvae_stack_output(s));
    assert_int_equal(cvae_stack_input_shape(s, &c, NULL, NULL), CVAE_ERR_STATE);
    assert_int_equal(c, -5);
    assert_int_equal(cvae_stack_forward(s, x, 1, NULL), CVAE_ERR_STATE);
    if (cvae_stack_layer_count(s) > 0) {
        cvae_layer *l = cvae_stack_layer(s, 0);
        assert_int_equal(cvae_layer_input_shape(l, NULL, NULL, NULL), CVAE_ERR_STATE);
        assert_int_equal(cvae_layer_param_count(l), 0);
        assert_null(cvae_layer_params(l));
    }
}

/* ------------------------------------------------------------ fixture */

/* A built stack with awkward shapes: input 2x5x4, conv2d 3 filters of 3x2,
 * stride 2,1, padding 1,0 (-> 3x3x3), relu, flatten (-> 27x1x1), linear 4;
 * max batch 3. Buffers hold a full batch. */
#define FX_BATCH 3
#define FX_IN 40
#define FX_MID 27
#define FX_OUT 4

typedef struct fixture {
    cvae_stack *stack;
    float in[FX_BATCH * FX_IN];
    float mid[FX_BATCH * FX_MID], mid_out[FX_BATCH * FX_MID];
    float dout[FX_BATCH * FX_OUT];
    float din[FX_BATCH * FX_IN];
} fixture;

static int build_fixture(void **state)
{
    fixture *f = test_calloc(1, sizeof *f);
    cvae_layer *l[4] = {NULL, NULL, NULL, NULL};
    int i;
    if (!f)
        return -1;
    *state = f;
    /* A failed constructor leaves NULL, which stack_add refuses. */
    cvae_layer_create_conv2d(&l[0], 3, 3, 2, 2, 1, 1, 0);
    cvae_layer_create_relu(&l[1]);
    cvae_layer_create_flatten(&l[2]);
    cvae_layer_create_linear(&l[3], FX_OUT);
    if (cvae_stack_create(&f->stack) != CVAE_OK) {
        for (i = 0; i < 4; i++)
            cvae_layer_destroy(l[i]);
        return -1;
    }
    for (i = 0; i < 4; i++)
        if (cvae_stack_add(f->stack, l[i]) != CVAE_OK) /* takes l[i] either way */
            return -1;
    if (cvae_stack_build(f->stack, 2, 5, 4, FX_BATCH, 42) != CVAE_OK)
        return -1;
    /* Inputs of both signs, none zero; distinct per index. */
    for (i = 0; i < FX_BATCH * FX_IN; i++)
        f->in[i] = (float)((i * 37) % 23 - 11) / 8.0f + 0.0625f;
    for (i = 0; i < FX_BATCH * FX_MID; i++)
        f->mid[i] = (float)((i * 13) % 17 - 8) / 4.0f + 0.125f;
    for (i = 0; i < FX_BATCH * FX_OUT; i++)
        f->dout[i] = (float)(i % 5) - 1.75f;
    return 0;
}

static int teardown_built(void **state)
{
    fixture *f = *state;
    if (f) {
        cvae_stack_destroy(f->stack);
        test_free(f);
    }
    *state = NULL;
    return 0;
}

/* cmocka skips the teardown when the setup fails, so clean up here. */
static int setup_built(void **state)
{
    int rc = build_fixture(state);
    if (rc != 0)
        teardown_built(state);
    return rc;
}

/* ------------------------------------------------- status and version */

/* Fails if a pinned status or layer-kind value moved (they are ABI). */
static void test_pinned_values(void **state)
{
    (void)state;
    assert_int_equal(CVAE_OK, 0);
    assert_int_equal(CVAE_ERR_INVALID_ARG, 1);
    assert_int_equal(CVAE_ERR_NOMEM, 2);
    assert_int_equal(CVAE_ERR_SHAPE, 3);
    assert_int_equal(CVAE_ERR_STATE, 4);
    assert_int_equal(CVAE_ERR_IO, 5);
    assert_int_equal(CVAE_ERR_FORMAT, 6);
    assert_int_equal(CVAE_ERR_VERSION, 7);
    assert_int_equal(CVAE_ERR_NUMERIC, 8);
    assert_int_equal(CVAE_ERR_TOO_LARGE, 9);
    assert_int_equal(CVAE_LAYER_CONV2D, 1);
    assert_int_equal(CVAE_LAYER_CONV_TRANSPOSE2D, 2);
    assert_int_equal(CVAE_LAYER_LINEAR, 3);
    assert_int_equal(CVAE_LAYER_RELU, 4);
    assert_int_equal(CVAE_LAYER_LEAKY_RELU, 5);
    assert_int_equal(CVAE_LAYER_SIGMOID, 6);
    assert_int_equal(CVAE_LAYER_TANH, 7);
    assert_int_equal(CVAE_LAYER_FLATTEN, 8);
    assert_int_equal(CVAE_LAYER_RESHAPE, 9);
    assert_int_equal(CVAE_LAYER_LEAKY_SLOPE, 200);
}

/* Fails if a status has an empty, shared or "unknown" string, or an unknown
 * value does not give "unknown status". */
static void test_status_strings(void **state)
{
    static const int unknown[] = {10, 11, 99, -1, INT_MAX, INT_MIN};
    int i, j;
    (void)state;
    for (i = CVAE_OK; i <= CVAE_ERR_TOO_LARGE; i++) {
        const char *si = cvae_status_string((cvae_status)i);
        assert_non_null(si);
        if (!si[0] || strcmp(si, "unknown status") == 0)
            fail_msg("status %d has string \"%s\"", i, si);
        for (j = CVAE_OK; j < i; j++)
            if (strcmp(si, cvae_status_string((cvae_status)j)) == 0)
                fail_msg("statuses %d and %d share the string \"%s\"", j, i, si);
    }
    for (i = 0; i < (int)(sizeof unknown / sizeof unknown[0]); i++)
        assert_string_equal(cvae_status_string((cvae_status)unknown[i]), "unknown status");
}

/* Fails if the loaded library's version differs from the header's, or the
 * header's string is not MAJOR.MINOR.PATCH. */
static void test_version(void **state)
{
    char buf[64];
    (void)state;
    snprintf(buf, sizeof buf, "%d.%d.%d", CVAE_VERSION_MAJOR, CVAE_VERSION_MINOR,
             CVAE_VERSION_PATCH);
    assert_int_equal(cvae_version_number(), CVAE_VERSION_NUMBER);
    assert_int_equal(cvae_version_number(),
                     CVAE_VERSION_MAJOR * 10000 + CVAE_VERSION_MINOR * 100 + CVAE_VERSION_PATCH);
    assert_non_null(cvae_version_string());
    assert_string_equal(cvae_version_string(), CVAE_VERSION_STRING);
    assert_string_equal(CVAE_VERSION_STRING, buf);
    assert_string_equal(cvae_version_string(), buf);
}

/* ---------------------------------------------------------- creation */

/* Fails if a constructor accepts a NULL out pointer. */
static void test_create_null_out(void **state)
{
    (void)state;
    assert_int_equal(cvae_layer_create_conv2d(NULL, 1, 1, 1, 1, 1, 0, 0), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_conv_transpose2d(NULL, 1, 1, 1, 1, 1, 0, 0),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_linear(NULL, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_relu(NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_leaky_relu(NULL, 0.01f), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_sigmoid(NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_tanh(NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_flatten(NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_reshape(NULL, 1, 1, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_create(NULL), CVAE_ERR_INVALID_ARG);
    /* NULL out with bad sizes too: still INVALID_ARG, no crash. */
    assert_int_equal(cvae_layer_create_conv2d(NULL, 0, 0, 0, 0, 0, -1, -1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_create_leaky_relu(NULL, NAN), CVAE_ERR_INVALID_ARG);
}

/* Fails if a valid constructor call fails, gives the wrong kind or name, or a
 * fresh layer carries a message (the controls for the rejection tests). */
static void test_create_valid_controls(void **state)
{
    struct {
        cvae_status st;
        cvae_layer *l;
        cvae_layer_kind kind;
        const char *name;
    } c[9];
    int i;
    (void)state;
    for (i = 0; i < 9; i++)
        c[i].l = DUMMY_LAYER;
    c[0].st = cvae_layer_create_conv2d(&c[0].l, 1, 1, 1, 1, 1, 0, 0);
    c[1].st = cvae_layer_create_conv_transpose2d(&c[1].l, 1, 1, 1, 1, 1, 0, 0);
    c[2].st = cvae_layer_create_linear(&c[2].l, 1);
    c[3].st = cvae_layer_create_relu(&c[3].l);
    c[4].st = cvae_layer_create_leaky_relu(&c[4].l, 0.0f);
    c[5].st = cvae_layer_create_sigmoid(&c[5].l);
    c[6].st = cvae_layer_create_tanh(&c[6].l);
    c[7].st = cvae_layer_create_flatten(&c[7].l);
    c[8].st = cvae_layer_create_reshape(&c[8].l, 1, 1, 1);
    c[0].kind = CVAE_LAYER_CONV2D, c[0].name = "conv2d";
    c[1].kind = CVAE_LAYER_CONV_TRANSPOSE2D, c[1].name = "conv_transpose2d";
    c[2].kind = CVAE_LAYER_LINEAR, c[2].name = "linear";
    c[3].kind = CVAE_LAYER_RELU, c[3].name = "relu";
    c[4].kind = CVAE_LAYER_LEAKY_RELU, c[4].name = "leaky_relu";
    c[5].kind = CVAE_LAYER_SIGMOID, c[5].name = "sigmoid";
    c[6].kind = CVAE_LAYER_TANH, c[6].name = "tanh";
    c[7].kind = CVAE_LAYER_FLATTEN, c[7].name = "flatten";
    c[8].kind = CVAE_LAYER_RESHAPE, c[8].name = "reshape";
    for (i = 0; i < 9; i++) {
        assert_int_equal(c[i].st, CVAE_OK);
        assert_non_null(c[i].l);
        assert_true(c[i].l != DUMMY_LAYER);
        assert_int_equal(cvae_layer_get_kind(c[i].l), c[i].kind);
        assert_string_equal(cvae_layer_kind_name(c[i].l), c[i].name);
        assert_string_equal(cvae_layer_last_error(c[i].l), "");
    }
    for (i = 0; i < 9; i++)
        cvae_layer_destroy(c[i].l);
}

/* Fails if either convolution accepts out_channels, kernel or stride < 1 or
 * padding < 0, or leaves *out non-NULL on failure. */
static void test_conv_bad_sizes(void **state)
{
    /* out_channels, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
     * each row has exactly one bad value. */
    static const int bad[][7] = {
        {0, 3, 3, 1, 1, 0, 0},  {-1, 3, 3, 1, 1, 0, 0},      {INT_MIN, 3, 3, 1, 1, 0, 0},
        {2, 0, 3, 1, 1, 0, 0},  {2, -3, 3, 1, 1, 0, 0},      {2, 3, 0, 1, 1, 0, 0},
        {2, 3, -1, 1, 1, 0, 0}, {2, 3, 3, 0, 1, 0, 0},       {2, 3, 3, -2, 1, 0, 0},
        {2, 3, 3, 1, 0, 0, 0},  {2, 3, 3, 1, INT_MIN, 0, 0}, {2, 3, 3, 1, 1, -1, 0},
        {2, 3, 3, 1, 1, 0, -1}, {2, 3, 3, 1, 1, INT_MIN, 1},
    };
    int i, kind;
    (void)state;
    for (kind = 0; kind < 2; kind++) {
        for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
            const int *a = bad[i];
            cvae_layer *l = DUMMY_LAYER;
            cvae_status st =
                kind == 0 ? cvae_layer_create_conv2d(&l, a[0], a[1], a[2], a[3], a[4], a[5], a[6])
                          : cvae_layer_create_conv_transpose2d(&l, a[0], a[1], a[2], a[3], a[4],
                                                               a[5], a[6]);
            if (st != CVAE_ERR_INVALID_ARG || l != NULL)
                fail_msg("%s row %d: status %d, out %s", kind ? "conv_transpose2d" : "conv2d", i,
                         (int)st, l ? "not NULL" : "NULL");
        }
    }
}

/* Fails if linear accepts out_features < 1 or leaves *out non-NULL. */
static void test_linear_bad_sizes(void **state)
{
    static const int bad[] = {0, -1, INT_MIN};
    int i;
    (void)state;
    for (i = 0; i < 3; i++) {
        cvae_layer *l = DUMMY_LAYER;
        assert_int_equal(cvae_layer_create_linear(&l, bad[i]), CVAE_ERR_INVALID_ARG);
        assert_null(l);
    }
}

/* Fails if reshape accepts a dimension < 1 or leaves *out non-NULL. */
static void test_reshape_bad_sizes(void **state)
{
    static const int bad[][3] = {{0, 2, 3},  {2, 0, 3},  {2, 3, 0},
                                 {-1, 2, 3}, {2, -4, 3}, {2, 3, INT_MIN}};
    int i;
    (void)state;
    for (i = 0; i < 6; i++) {
        cvae_layer *l = DUMMY_LAYER;
        assert_int_equal(cvae_layer_create_reshape(&l, bad[i][0], bad[i][1], bad[i][2]),
                         CVAE_ERR_INVALID_ARG);
        assert_null(l);
    }
}

/* Fails if leaky_relu accepts a slope outside [0, 1) (negative, 1, NaN,
 * infinities) or refuses one just inside it. */
static void test_leaky_bad_slope(void **state)
{
    const float bad[] = {-0.01f,   -FLT_MIN, -1e-40f /* subnormal */, 1.0f, 1.5f, 1e30f, NAN, -NAN,
                         INFINITY, -INFINITY};
    const float good[] = {0.0f, FLT_MIN, 0.01f, 0.5f,
                          1.0f - 1.0f / 16777216.0f /* largest float < 1 */};
    int i;
    (void)state;
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        cvae_layer *l = DUMMY_LAYER;
        cvae_status st = cvae_layer_create_leaky_relu(&l, bad[i]);
        if (st != CVAE_ERR_INVALID_ARG || l != NULL)
            fail_msg("slope %g: status %d, out %s", (double)bad[i], (int)st,
                     l ? "not NULL" : "NULL");
    }
    for (i = 0; i < (int)(sizeof good / sizeof good[0]); i++) {
        cvae_layer *l = NULL;
        double v = -1.0;
        assert_int_equal(cvae_layer_create_leaky_relu(&l, good[i]), CVAE_OK);
        assert_int_equal(cvae_layer_get_option(l, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
        assert_true(v == (double)good[i]);
        cvae_layer_destroy(l);
    }
}

/* ------------------------------------------------- destroy and NULL */

/* Fails (under ASan) if destroy(NULL) crashes, or destroying a layer owned
 * by a stack frees it (the stack's later use and destruction would then be a
 * use-after-free / double free). */
static void test_destroy_null_and_owned(void **state)
{
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    const float in[6] = {-1.0f, 2.0f, -3.0f, 4.0f, -0.5f, 0.25f};
    const float *out = NULL;
    (void)state;
    cvae_layer_destroy(NULL);
    cvae_stack_destroy(NULL);
    push(s, cvae_layer_create_relu(&l), &l);
    cvae_layer_destroy(l); /* owned: must be a no-op */
    assert_int_equal(cvae_stack_layer_count(s), 1);
    assert_ptr_equal(cvae_stack_layer(s, 0), l);
    assert_int_equal(cvae_layer_get_kind(l), CVAE_LAYER_RELU);
    assert_int_equal(cvae_stack_build(s, 1, 2, 3, 1, 0), CVAE_OK);
    cvae_layer_destroy(l); /* owned and built: still a no-op */
    assert_int_equal(cvae_stack_forward(s, in, 1, &out), CVAE_OK);
    assert_non_null(out);
    assert_true(out[0] == 0.0f && out[1] == 2.0f && out[3] == 4.0f && out[5] == 0.25f);
    cvae_stack_destroy(s);
}

/* Fails if a getter on a NULL handle crashes or returns anything but the
 * documented neutral value (0, NULL, "?", a non-empty static message), or a
 * function taking a NULL handle does not return CVAE_ERR_INVALID_ARG. */
static void test_null_handles(void **state)
{
    size_t count = 77;
    int c = -9, h = -9, w = -9;
    double v = -3.0;
    float x[2] = {1.0f, 2.0f}, y[2] = {0.0f, 0.0f};
    const float *out = NULL;
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    (void)state;
    assert_int_equal(cvae_layer_get_kind(NULL), 0);
    assert_string_equal(cvae_layer_kind_name(NULL), "?");
    assert_non_null(cvae_layer_last_error(NULL));
    assert_true(cvae_layer_last_error(NULL)[0] != '\0');
    assert_int_equal(cvae_layer_param_count(NULL), 0);
    assert_null(cvae_layer_params(NULL));
    assert_null(cvae_layer_grads(NULL));
    assert_int_equal(cvae_layer_input_shape(NULL, &c, &h, &w), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_output_shape(NULL, &c, &h, &w), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_set_option(NULL, CVAE_LAYER_LEAKY_SLOPE, 0.1),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_get_option(NULL, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_forward(NULL, x, y, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_backward(NULL, x, y, x, y, 1), CVAE_ERR_INVALID_ARG);

    assert_non_null(cvae_stack_last_error(NULL));
    assert_true(cvae_stack_last_error(NULL)[0] != '\0');
    assert_int_equal(cvae_stack_layer_count(NULL), 0);
    assert_null(cvae_stack_layer(NULL, 0));
    assert_int_equal(cvae_stack_max_batch(NULL), 0);
    assert_null(cvae_stack_params(NULL, &count));
    assert_int_equal(count, 0);
    count = 77;
    assert_null(cvae_stack_grads(NULL, &count));
    assert_int_equal(count, 0);
    assert_null(cvae_stack_params(NULL, NULL));
    assert_null(cvae_stack_output(NULL));
    assert_int_equal(cvae_stack_input_shape(NULL, &c, &h, &w), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_output_shape(NULL, &c, &h, &w), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_init_params(NULL, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_zero_grad(NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_forward(NULL, x, 1, &out), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_backward(NULL, x, 1, y), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_build(NULL, 1, 1, 1, 1, 0), CVAE_ERR_INVALID_ARG);
    /* The out-arguments were not touched. */
    assert_int_equal(c, -9);
    assert_true(v == -3.0);
    assert_null(out);

    /* Index out of range on a real stack. */
    push(s, cvae_layer_create_tanh(&l), &l);
    assert_null(cvae_stack_layer(s, -1));
    assert_null(cvae_stack_layer(s, 1));
    assert_null(cvae_stack_layer(s, INT_MAX));
    assert_ptr_equal(cvae_stack_layer(s, 0), l);
    cvae_stack_destroy(s);
}

/* ------------------------------------------------------------ build */

/* Fails if build accepts a NULL or empty stack or an input size or max batch
 * < 1, names no culprit, or leaves the stack changed or unbuildable. */
static void test_build_bad_args(void **state)
{
    static const int bad[][4] = {
        {0, 4, 4, 2},  {-7, 4, 4, 2}, {3, 0, 4, 2},  {3, -7, 4, 2},      {3, 4, 0, 2},
        {3, 4, -7, 2}, {3, 4, 4, 0},  {3, 4, 4, -7}, {INT_MIN, 4, 4, 2}, {3, 4, 4, INT_MIN},
    };
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    char num[32];
    int i, j, c = 0, h = 0, w = 0;
    (void)state;
    assert_int_equal(cvae_stack_build(NULL, 3, 4, 4, 2, 0), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_build(s, 3, 4, 4, 2, 0), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_stack_last_error(s), "no layers");
    assert_unbuilt(s);
    push(s, cvae_layer_create_sigmoid(&l), &l);
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        assert_int_equal(cvae_stack_build(s, bad[i][0], bad[i][1], bad[i][2], bad[i][3], 0),
                         CVAE_ERR_INVALID_ARG);
        for (j = 0; j < 4; j++)
            if (bad[i][j] < 1)
                assert_msg_has(cvae_stack_last_error(s), itoa_buf(num, sizeof num, bad[i][j]));
        assert_unbuilt(s);
    }
    /* Still buildable. */
    assert_int_equal(cvae_stack_build(s, 3, 4, 5, 2, 0), CVAE_OK);
    assert_int_equal(cvae_stack_output_shape(s, &c, &h, &w), CVAE_OK);
    assert_int_equal(c, 3);
    assert_int_equal(h, 4);
    assert_int_equal(w, 5);
    assert_int_equal(cvae_stack_max_batch(s), 2);
    cvae_stack_destroy(s);
}

/* Fails if a conv2d kernel larger than its padded input is not refused with
 * CVAE_ERR_SHAPE and a message naming conv2d, its index and the sizes, or if
 * the failed build leaves the stack built or unable to build on a larger
 * input. */
static void test_build_kernel_too_large(void **state)
{
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    const char *msg;
    int c = 0, h = 0, w = 0;
    (void)state;
    push(s, cvae_layer_create_tanh(&l), &l);
    /* Kernel 6x3, padding 1,0: the padded height of a 1x3x6 input is 5. */
    push(s, cvae_layer_create_conv2d(&l, 2, 6, 3, 1, 1, 1, 0), &l);
    assert_int_equal(cvae_stack_build(s, 1, 3, 6, 2, 7), CVAE_ERR_SHAPE);
    msg = cvae_stack_last_error(s);
    assert_msg_has(msg, "conv2d");
    assert_msg_has(msg, "layer 1");
    assert_msg_has(msg, "6x3");
    assert_msg_has(msg, "1x3x6");
    assert_msg_has(cvae_layer_last_error(l), "6x3"); /* the layer's own message */
    assert_unbuilt(s);
    /* Width too small this time (padded width 2 < 3). */
    assert_int_equal(cvae_stack_build(s, 1, 9, 2, 2, 7), CVAE_ERR_SHAPE);
    assert_msg_has(cvae_stack_last_error(s), "layer 1");
    assert_unbuilt(s);
    /* The only problem was the input size: a larger one builds. */
    assert_int_equal(cvae_stack_build(s, 1, 4, 3, 2, 7), CVAE_OK);
    assert_int_equal(cvae_stack_output_shape(s, &c, &h, &w), CVAE_OK);
    assert_int_equal(c, 2);
    assert_int_equal(h, 1); /* (4 + 2 - 6) / 1 + 1 */
    assert_int_equal(w, 1);
    assert_int_equal(cvae_layer_param_count(l), 2 * 1 * 6 * 3 + 2);
    cvae_stack_destroy(s);
}

/* Fails if a conv_transpose2d whose output would be empty is not refused with
 * CVAE_ERR_SHAPE naming the layer, or the stack cannot then be rebuilt. */
static void test_build_convt_empty_output(void **state)
{
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    int c = 0, h = 0, w = 0;
    (void)state;
    /* (1 - 1) * 1 - 2 * 1 + 1 = -1. */
    push(s, cvae_layer_create_conv_transpose2d(&l, 3, 1, 1, 1, 1, 1, 1), &l);
    assert_int_equal(cvae_stack_build(s, 2, 1, 1, 1, 0), CVAE_ERR_SHAPE);
    assert_msg_has(cvae_stack_last_error(s), "conv_transpose2d");
    assert_msg_has(cvae_stack_last_error(s), "layer 0");
    assert_unbuilt(s);
    /* Exactly zero: (2 - 1) * 1 - 2 + 1 = 0 on the height only. */
    assert_int_equal(cvae_stack_build(s, 2, 2, 5, 1, 0), CVAE_ERR_SHAPE);
    assert_unbuilt(s);
    /* 3x5 input: (3 - 1) - 2 + 1 = 1, (5 - 1) - 2 + 1 = 3. */
    assert_int_equal(cvae_stack_build(s, 2, 3, 5, 1, 0), CVAE_OK);
    assert_int_equal(cvae_stack_output_shape(s, &c, &h, &w), CVAE_OK);
    assert_int_equal(c, 3);
    assert_int_equal(h, 1);
    assert_int_equal(w, 3);
    cvae_stack_destroy(s);
}

/* Fails if a reshape to a different element count is not refused with
 * CVAE_ERR_SHAPE and a message giving both shapes. */
static void test_build_reshape_mismatch(void **state)
{
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    const char *msg;
    int c = 0, h = 0, w = 0;
    (void)state;
    push(s, cvae_layer_create_flatten(&l), &l);
    push(s, cvae_layer_create_reshape(&l, 5, 5, 1), &l);
    assert_int_equal(cvae_stack_build(s, 2, 3, 4, 1, 0), CVAE_ERR_SHAPE);
    msg = cvae_stack_last_error(s);
    assert_msg_has(msg, "reshape");
    assert_msg_has(msg, "layer 1");
    assert_msg_has(msg, "24");    /* the input's count */
    assert_msg_has(msg, "5x5x1"); /* the target */
    assert_unbuilt(s);
    /* A target smaller than the input is refused too: 25 of 30, 25 of 27. */
    assert_int_equal(cvae_stack_build(s, 2, 3, 5, 1, 0), CVAE_ERR_SHAPE);
    assert_msg_has(cvae_stack_last_error(s), "30");
    assert_unbuilt(s);
    assert_int_equal(cvae_stack_build(s, 3, 3, 3, 1, 0), CVAE_ERR_SHAPE);
    assert_unbuilt(s);
    assert_int_equal(cvae_stack_build(s, 1, 5, 5, 1, 0), CVAE_OK);
    assert_int_equal(cvae_stack_output_shape(s, &c, &h, &w), CVAE_OK);
    assert_true(c == 5 && h == 5 && w == 1);
    cvae_stack_destroy(s);
}

/* Fails if absurd or overflowing size products are not refused with
 * CVAE_ERR_TOO_LARGE before any allocation (ASan would abort on a terabyte
 * request; a plain build would take long or run out of memory), or the stack
 * cannot then be built on a sensible input. */
static void test_build_too_large(void **state)
{
    cvae_stack *s;
    cvae_layer *l = NULL;
    const char *msg;
    (void)state;

    /* linear: 2^30 outputs x 2^20 inputs = 2^50 weights. */
    s = new_stack();
    push(s, cvae_layer_create_linear(&l, 1 << 30), &l);
    assert_int_equal(cvae_stack_build(s, 1, 1024, 1024, 1, 0), CVAE_ERR_TOO_LARGE);
    msg = cvae_stack_last_error(s);
    assert_msg_has(msg, "linear");
    assert_msg_has(msg, "layer 0");
    assert_msg_has(msg, "1073741824");
    assert_unbuilt(s);
    cvae_stack_destroy(s);

    /* conv2d: 65536 filters over 46341 x 46341 positions (~2^47 outputs),
     * behind a view layer that costs no activation memory. */
    s = new_stack();
    push(s, cvae_layer_create_reshape(&l, 1, 46341, 46341), &l);
    push(s, cvae_layer_create_conv2d(&l, 65536, 1, 1, 1, 1, 0, 0), &l);
    assert_int_equal(cvae_stack_build(s, 1, 46341, 46341, 1, 0), CVAE_ERR_TOO_LARGE);
    msg = cvae_stack_last_error(s);
    assert_msg_has(msg, "conv2d");
    assert_msg_has(msg, "layer 1");
    assert_msg_has(msg, "46341");
    assert_unbuilt(s);
    cvae_stack_destroy(s);
    /* The same conv2d on a small input: 65536 * (1 + 1) parameters, fine. */
    s = new_stack();
    push(s, cvae_layer_create_conv2d(&l, 65536, 1, 1, 1, 1, 0, 0), &l);
    assert_int_equal(cvae_stack_build(s, 1, 2, 2, 1, 0), CVAE_OK);
    assert_int_equal(cvae_layer_param_count(l), (size_t)65536 * 2);
    cvae_stack_destroy(s);

    /* conv2d: 17 filters over 2^14 x 2^14 positions, just above the
     * documented 2^32 elements for one tensor (the 2^28 input is fine). */
    s = new_stack();
    push(s, cvae_layer_create_conv2d(&l, 17, 1, 1, 1, 1, 0, 0), &l);
    assert_int_equal(cvae_stack_build(s, 1, 16384, 16384, 1, 0), CVAE_ERR_TOO_LARGE);
    assert_msg_has(cvae_stack_last_error(s), "conv2d");
    assert_unbuilt(s);
    cvae_stack_destroy(s);

    /* conv2d: 2048 filters of 1024 x 1024 x 1024 = 2^41 weights. */
    s = new_stack();
    push(s, cvae_layer_create_conv2d(&l, 2048, 1024, 1024, 1, 1, 0, 0), &l);
    assert_int_equal(cvae_stack_build(s, 1024, 1024, 1024, 1, 0), CVAE_ERR_TOO_LARGE);
    assert_msg_has(cvae_stack_last_error(s), "conv2d");
    assert_msg_has(cvae_stack_last_error(s), "2048");
    assert_unbuilt(s);
    cvae_stack_destroy(s);

    /* conv_transpose2d: 65536 channels of 46341 x 46341. */
    s = new_stack();
    push(s, cvae_layer_create_conv_transpose2d(&l, 65536, 1, 1, 1, 1, 0, 0), &l);
    assert_int_equal(cvae_stack_build(s, 1, 46341, 46341, 1, 0), CVAE_ERR_TOO_LARGE);
    assert_msg_has(cvae_stack_last_error(s), "conv_transpose2d");
    assert_msg_has(cvae_stack_last_error(s), "layer 0");
    assert_unbuilt(s);
    cvae_stack_destroy(s);

    /* The input itself: C*H*W overflows 64 bits; and 2^62 elements. */
    s = new_stack();
    push(s, cvae_layer_create_sigmoid(&l), &l);
    assert_int_equal(cvae_stack_build(s, INT_MAX, INT_MAX, INT_MAX, 1, 0), CVAE_ERR_TOO_LARGE);
    assert_msg_has(cvae_stack_last_error(s), "input");
    assert_unbuilt(s);
    assert_int_equal(cvae_stack_build(s, 1 << 20, 1 << 21, 1 << 21, 1, 0), CVAE_ERR_TOO_LARGE);
    assert_unbuilt(s);
    /* The batch: 2^20 floats per image times INT_MAX images. */
    assert_int_equal(cvae_stack_build(s, 1, 1024, 1024, INT_MAX, 0), CVAE_ERR_TOO_LARGE);
    assert_msg_has(cvae_stack_last_error(s), "batch");
    assert_unbuilt(s);
    assert_int_equal(cvae_stack_build(s, 1, 4, 4, 8, 0), CVAE_OK);
    assert_int_equal(cvae_stack_max_batch(s), 8);
    cvae_stack_destroy(s);
}

/* Builds a stack of first then reshape(1, 1, 1) on a 1 x h x w input,
 * keeps the build's status and message, and destroys the stack, so that a
 * failed check afterwards leaks nothing. */
static cvae_status build_before_reshape(cvae_status create_status, cvae_layer **first, int h, int w,
                                        char *msg, size_t size)
{
    cvae_stack *s = new_stack();
    cvae_layer *r = NULL;
    cvae_status st;
    push(s, create_status, first);
    push(s, cvae_layer_create_reshape(&r, 1, 1, 1), &r);
    st = cvae_stack_build(s, 1, h, w, 1, 0);
    snprintf(msg, size, "%s", cvae_stack_last_error(s));
    if (st != CVAE_OK && cvae_stack_max_batch(s) != 0)
        snprintf(msg, size, "the failed build left the stack built");
    cvae_stack_destroy(s);
    return st;
}

/* Fails if a layer output side or count that does not fit in an int (the
 * type every shape getter reports it in) is accepted. The second layer is a
 * reshape that cannot fit either way, so a library that misses the int
 * check fails with CVAE_ERR_SHAPE instead, without allocating anything. */
static void test_build_dims_beyond_int(void **state)
{
    cvae_layer *l = NULL;
    char msg[512];
    cvae_status st;
    (void)state;

    /* flatten of 1 x 46341 x 46341 = 2147488281 > INT_MAX channels. */
    st = build_before_reshape(cvae_layer_create_flatten(&l), &l, 46341, 46341, msg, sizeof msg);
    if (st != CVAE_ERR_TOO_LARGE)
        fail_msg("flatten to 2147488281 channels: status %d (want %d), \"%s\"", (int)st,
                 (int)CVAE_ERR_TOO_LARGE, msg);
    assert_msg_has(msg, "flatten");

    /* conv_transpose2d on 1x1x2 with stride INT_MAX: width
     * (2 - 1) * INT_MAX + 1 = 2^31 > INT_MAX. */
    st = build_before_reshape(cvae_layer_create_conv_transpose2d(&l, 1, 1, 1, 1, INT_MAX, 0, 0), &l,
                              1, 2, msg, sizeof msg);
    if (st != CVAE_ERR_TOO_LARGE)
        fail_msg("conv_transpose2d to width 2^31: status %d (want %d), \"%s\"", (int)st,
                 (int)CVAE_ERR_TOO_LARGE, msg);
    assert_msg_has(msg, "conv_transpose2d");
}

/* Fails if a second build is not refused with CVAE_ERR_STATE, or it changes
 * the shapes, batch, parameters or results of the built stack. */
static void test_build_twice(void **state)
{
    fixture *f = *state;
    const float *out = NULL;
    float ref[FX_BATCH * FX_OUT], params_before[4];
    size_t count = 0;
    float *params = cvae_stack_params(f->stack, &count);
    int c = 0, h = 0, w = 0;
    assert_non_null(params);
    assert_int_equal(count, (size_t)3 * 2 * 3 * 2 + 3 + FX_OUT * FX_MID + FX_OUT);
    memcpy(params_before, params, sizeof params_before);
    assert_int_equal(cvae_stack_forward(f->stack, f->in, FX_BATCH, &out), CVAE_OK);
    memcpy(ref, out, sizeof ref);

    assert_int_equal(cvae_stack_build(f->stack, 2, 5, 4, FX_BATCH, 42), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(f->stack), "already built");
    assert_int_equal(cvae_stack_build(f->stack, 1, 9, 9, 5, 1), CVAE_ERR_STATE);
    /* Bad sizes on a built stack: STATE or INVALID_ARG, never OK. */
    assert_int_not_equal(cvae_stack_build(f->stack, 0, 0, 0, 0, 1), CVAE_OK);

    assert_int_equal(cvae_stack_input_shape(f->stack, &c, &h, &w), CVAE_OK);
    assert_true(c == 2 && h == 5 && w == 4);
    assert_int_equal(cvae_stack_max_batch(f->stack), FX_BATCH);
    assert_ptr_equal(cvae_stack_params(f->stack, &count), params);
    assert_memory_equal(params, params_before, sizeof params_before);
    assert_int_equal(cvae_stack_forward(f->stack, f->in, FX_BATCH, &out), CVAE_OK);
    assert_memory_equal(out, ref, sizeof ref);
}

/* -------------------------------------------------- calls out of order */

/* Fails if forward, backward, zero_grad, init_params or a shape getter is
 * accepted before build, or the refusals name no reason. */
static void test_calls_before_build(void **state)
{
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    float x[8] = {0}, y[8] = {0};
    const float *out = NULL;
    int c = -4, h = -4, w = -4;
    (void)state;
    /* Empty and unbuilt. */
    assert_int_equal(cvae_stack_forward(s, x, 1, &out), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(s), "not built");
    push(s, cvae_layer_create_linear(&l, 2), &l);
    assert_int_equal(cvae_stack_forward(s, x, 1, &out), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(s), "stack_forward");
    assert_msg_has(cvae_stack_last_error(s), "not built");
    assert_null(out);
    assert_int_equal(cvae_stack_backward(s, y, 1, x), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(s), "stack_backward");
    assert_int_equal(cvae_stack_zero_grad(s), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(s), "stack_zero_grad");
    assert_int_equal(cvae_stack_init_params(s, 3), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(s), "stack_init_params");
    /* Const-handle functions report by status only: the message stays. */
    assert_int_equal(cvae_stack_input_shape(s, &c, &h, &w), CVAE_ERR_STATE);
    assert_int_equal(cvae_stack_output_shape(s, &c, &h, &w), CVAE_ERR_STATE);
    assert_int_equal(cvae_stack_input_shape(s, NULL, NULL, NULL), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(s), "stack_init_params");
    assert_int_equal(cvae_layer_input_shape(l, &c, &h, &w), CVAE_ERR_STATE);
    assert_int_equal(cvae_layer_output_shape(l, &c, &h, &w), CVAE_ERR_STATE);
    assert_true(c == -4 && h == -4 && w == -4);
    assert_null(cvae_stack_grads(s, NULL));
    assert_null(cvae_layer_grads(l));
    assert_unbuilt(s);
    /* The refusals left it buildable. */
    assert_int_equal(cvae_stack_build(s, 2, 2, 2, 1, 0), CVAE_OK);
    assert_int_equal(cvae_stack_forward(s, x, 1, &out), CVAE_OK);
    assert_int_equal(cvae_stack_zero_grad(s), CVAE_OK);
    assert_int_equal(cvae_stack_init_params(s, 3), CVAE_OK);
    assert_int_equal(cvae_layer_output_shape(l, &c, &h, &w), CVAE_OK);
    assert_true(c == 2 && h == 1 && w == 1);
    cvae_stack_destroy(s);
}

/* Fails if forward or backward accepts n = 0, negative or above max batch,
 * the message omits the number or the limit, or a refused call disturbs the
 * last forward (output and the n backward expects). */
static void test_bad_batch(void **state)
{
    static const int bad[] = {0, -1, INT_MIN, FX_BATCH + 1, INT_MAX};
    fixture *f = *state;
    const float *out = NULL, *kept;
    float ref[2 * FX_OUT];
    char num[32];
    int i;
    assert_int_equal(cvae_stack_forward(f->stack, f->in, 2, &out), CVAE_OK);
    memcpy(ref, out, sizeof ref);
    kept = out;
    for (i = 0; i < 5; i++) {
        const float *o = NULL;
        assert_int_equal(cvae_stack_forward(f->stack, f->in, bad[i], &o), CVAE_ERR_INVALID_ARG);
        assert_msg_has(cvae_stack_last_error(f->stack), itoa_buf(num, sizeof num, bad[i]));
        assert_msg_has(cvae_stack_last_error(f->stack), "3"); /* the limit */
        assert_null(o);
        assert_int_equal(cvae_stack_backward(f->stack, f->dout, bad[i], f->din),
                         CVAE_ERR_INVALID_ARG);
        assert_msg_has(cvae_stack_last_error(f->stack), "stack_backward");
        assert_msg_has(cvae_stack_last_error(f->stack), itoa_buf(num, sizeof num, bad[i]));
    }
    assert_ptr_equal(cvae_stack_output(f->stack), kept);
    assert_memory_equal(cvae_stack_output(f->stack), ref, sizeof ref);
    /* Backward still matches the forward of 2 images. */
    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 2, f->din), CVAE_OK);
    /* Bounds are inclusive. */
    assert_int_equal(cvae_stack_forward(f->stack, f->in, 1, NULL), CVAE_OK);
    assert_int_equal(cvae_stack_forward(f->stack, f->in, FX_BATCH, NULL), CVAE_OK);
}

/* Fails if backward is accepted before any forward or with another n than
 * the last forward, or a refused backward adds anything to the gradients. */
static void test_backward_order(void **state)
{
    fixture *f = *state;
    size_t count = 0, i;
    float *grads = cvae_stack_grads(f->stack, &count);
    float ref[FX_OUT * FX_MID + FX_OUT + 64];
    int nonzero = 0;
    assert_non_null(grads);
    assert_true(count <= sizeof ref / sizeof ref[0]);

    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 2, f->din), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(f->stack), "forward");
    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 1, NULL), CVAE_ERR_STATE);
    for (i = 0; i < count; i++)
        assert_true(grads[i] == 0.0f);

    assert_int_equal(cvae_stack_forward(f->stack, f->in, 2, NULL), CVAE_OK);
    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 1, f->din), CVAE_ERR_STATE);
    assert_msg_has(cvae_stack_last_error(f->stack), "1");
    assert_msg_has(cvae_stack_last_error(f->stack), "2");
    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 3, f->din), CVAE_ERR_STATE);
    for (i = 0; i < count; i++)
        assert_true(grads[i] == 0.0f);

    /* The matching n works, and gives what a clean run gives. */
    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 2, f->din), CVAE_OK);
    memcpy(ref, grads, count * sizeof *grads);
    for (i = 0; i < count; i++)
        nonzero += grads[i] != 0.0f;
    assert_true(nonzero > 0);
    assert_int_equal(cvae_stack_zero_grad(f->stack), CVAE_OK);
    assert_int_equal(cvae_stack_forward(f->stack, f->in, 2, NULL), CVAE_OK);
    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 2, NULL), CVAE_OK);
    assert_memory_equal(grads, ref, count * sizeof *grads);
}

/* Fails if forward accepts a NULL input or backward a NULL dout, or either
 * refuses the optional NULLs (output, din). */
static void test_null_buffers(void **state)
{
    fixture *f = *state;
    const float *out = NULL;
    float ref[FX_OUT];
    assert_int_equal(cvae_stack_forward(f->stack, f->in, 1, &out), CVAE_OK);
    memcpy(ref, out, sizeof ref);
    assert_int_equal(cvae_stack_forward(f->stack, NULL, 1, &out), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_stack_last_error(f->stack), "NULL");
    assert_msg_has(cvae_stack_last_error(f->stack), "stack_forward");
    assert_int_equal(cvae_stack_backward(f->stack, NULL, 1, f->din), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_stack_last_error(f->stack), "dout");
    assert_int_equal(cvae_stack_backward(f->stack, NULL, 1, NULL), CVAE_ERR_INVALID_ARG);
    /* Output unchanged; optional NULLs accepted. */
    assert_memory_equal(cvae_stack_output(f->stack), ref, sizeof ref);
    assert_int_equal(cvae_stack_forward(f->stack, f->in, 1, NULL), CVAE_OK);
    assert_memory_equal(cvae_stack_output(f->stack), ref, sizeof ref);
    assert_int_equal(cvae_stack_backward(f->stack, f->dout, 1, NULL), CVAE_OK);
}

/* -------------------------------------------------------------- add */

/* Fails if stack_add accepts a NULL stack or layer, or (under ASan) leaks the
 * layer given with a NULL stack. */
static void test_add_null(void **state)
{
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    (void)state;
    assert_int_equal(cvae_layer_create_conv2d(&l, 2, 3, 3, 1, 1, 1, 1), CVAE_OK);
    assert_int_equal(cvae_stack_add(NULL, l), CVAE_ERR_INVALID_ARG); /* l is freed */
    assert_int_equal(cvae_stack_add(NULL, NULL), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_stack_add(s, NULL), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_stack_last_error(s), "NULL");
    assert_int_equal(cvae_stack_layer_count(s), 0);
    push(s, cvae_layer_create_relu(&l), &l);
    assert_int_equal(cvae_stack_layer_count(s), 1);
    assert_int_equal(cvae_stack_build(s, 1, 1, 1, 1, 0), CVAE_OK);
    cvae_stack_destroy(s);
}

/* Fails if a layer can be added to a built stack, or (under ASan) the
 * refused layer leaks or the stack stops working. */
static void test_add_after_build(void **state)
{
    fixture *f = *state;
    cvae_layer *l = NULL;
    const float *out = NULL;
    float ref[FX_OUT];
    int c = 0;
    assert_int_equal(cvae_stack_forward(f->stack, f->in, 1, &out), CVAE_OK);
    memcpy(ref, out, sizeof ref);
    assert_int_equal(cvae_layer_create_linear(&l, 2), CVAE_OK);
    assert_int_equal(cvae_stack_add(f->stack, l), CVAE_ERR_STATE); /* l is freed */
    assert_msg_has(cvae_stack_last_error(f->stack), "built");
    assert_int_equal(cvae_stack_layer_count(f->stack), 4);
    assert_int_equal(cvae_stack_output_shape(f->stack, &c, NULL, NULL), CVAE_OK);
    assert_int_equal(c, FX_OUT);
    assert_int_equal(cvae_stack_forward(f->stack, f->in, 1, &out), CVAE_OK);
    assert_memory_equal(out, ref, sizeof ref);
}

/* Fails if a layer that belongs to a stack can be added again (to another
 * stack or the same one), is destroyed by the refusal, or (under ASan) is
 * freed twice when both stacks die. */
static void test_add_owned_layer(void **state)
{
    cvae_stack *a = new_stack(), *b = new_stack();
    cvae_layer *l = NULL, *other = NULL;
    const float in[3] = {-2.0f, 0.0f, 2.0f};
    const float *out = NULL;
    (void)state;
    push(a, cvae_layer_create_sigmoid(&l), &l);
    assert_int_equal(cvae_stack_add(b, l), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_stack_last_error(b), "sigmoid");
    assert_msg_has(cvae_stack_last_error(b), "belongs");
    assert_int_equal(cvae_stack_layer_count(b), 0);
    assert_int_equal(cvae_stack_add(a, l), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_stack_last_error(a), "belongs");
    assert_int_equal(cvae_stack_layer_count(a), 1);
    /* With a NULL stack, an owned layer is also left alone. */
    assert_int_equal(cvae_stack_add(NULL, l), CVAE_ERR_INVALID_ARG);
    assert_ptr_equal(cvae_stack_layer(a, 0), l);
    assert_int_equal(cvae_layer_get_kind(l), CVAE_LAYER_SIGMOID);

    /* b still takes its own layers; both stacks build and run. */
    push(b, cvae_layer_create_tanh(&other), &other);
    assert_int_equal(cvae_stack_build(a, 1, 1, 3, 1, 0), CVAE_OK);
    assert_int_equal(cvae_stack_build(b, 1, 1, 3, 1, 0), CVAE_OK);
    assert_int_equal(cvae_stack_forward(a, in, 1, &out), CVAE_OK);
    assert_true(out[1] == 0.5f && out[0] < 0.5f && out[2] > 0.5f);
    assert_int_equal(cvae_stack_forward(b, in, 1, &out), CVAE_OK);
    assert_true(out[1] == 0.0f && out[0] < 0.0f && out[2] > 0.0f);
    cvae_stack_destroy(a);
    cvae_stack_destroy(b);
}

/* ------------------------------------------------- single-layer calls */

/* Fails if cvae_layer_forward/backward run on a layer whose stack is not
 * built (alone, in an unbuilt stack, after a failed build). */
static void test_layer_call_unbuilt(void **state)
{
    cvae_layer *alone = NULL, *l = NULL;
    cvae_stack *s = new_stack();
    float x[16] = {0}, y[16] = {0}, dy[16] = {0}, dx[16] = {0};
    (void)state;
    assert_int_equal(cvae_layer_create_relu(&alone), CVAE_OK);
    assert_int_equal(cvae_layer_forward(alone, x, y, 1), CVAE_ERR_STATE);
    assert_msg_has(cvae_layer_last_error(alone), "relu");
    assert_msg_has(cvae_layer_last_error(alone), "not built");
    assert_int_equal(cvae_layer_backward(alone, x, y, dy, dx, 1), CVAE_ERR_STATE);
    assert_msg_has(cvae_layer_last_error(alone), "backward");
    cvae_layer_destroy(alone);

    push(s, cvae_layer_create_conv2d(&l, 1, 3, 3, 1, 1, 0, 0), &l);
    assert_int_equal(cvae_layer_forward(l, x, y, 1), CVAE_ERR_STATE);
    assert_msg_has(cvae_layer_last_error(l), "conv2d");
    assert_int_equal(cvae_stack_build(s, 1, 2, 2, 1, 0), CVAE_ERR_SHAPE);
    assert_int_equal(cvae_layer_forward(l, x, y, 1), CVAE_ERR_STATE);
    assert_int_equal(cvae_layer_backward(l, x, y, dy, NULL, 1), CVAE_ERR_STATE);
    assert_msg_has(cvae_layer_last_error(l), "not built");
    /* Once built it runs: 1x4x4 in, 1x2x2 out. */
    assert_int_equal(cvae_stack_build(s, 1, 4, 4, 1, 0), CVAE_OK);
    assert_int_equal(cvae_layer_forward(l, x, y, 1), CVAE_OK);
    assert_int_equal(cvae_layer_backward(l, x, y, dy, dx, 1), CVAE_OK);
    cvae_stack_destroy(s);
}

/* Fails if cvae_layer_forward/backward accept NULL buffers or a bad n, or a
 * refusal leaves the layer unable to compute the right result. */
static void test_layer_call_bad_args(void **state)
{
    static const int bad[] = {0, -5, INT_MIN, FX_BATCH + 1};
    fixture *f = *state;
    cvae_layer *relu = cvae_stack_layer(f->stack, 1);
    char num[32];
    int i;
    assert_int_equal(cvae_layer_get_kind(relu), CVAE_LAYER_RELU);
    assert_int_equal(cvae_layer_forward(relu, NULL, f->mid_out, 1), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_layer_last_error(relu), "NULL");
    assert_msg_has(cvae_layer_last_error(relu), "forward");
    assert_int_equal(cvae_layer_forward(relu, f->mid, NULL, 1), CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_layer_last_error(relu), "NULL");
    assert_int_equal(cvae_layer_backward(relu, NULL, f->mid_out, f->mid, f->din, 1),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_backward(relu, f->mid, NULL, f->mid, f->din, 1),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_backward(relu, f->mid, f->mid_out, NULL, f->din, 1),
                     CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_layer_last_error(relu), "dout");
    assert_msg_has(cvae_layer_last_error(relu), "backward");
    for (i = 0; i < 4; i++) {
        assert_int_equal(cvae_layer_forward(relu, f->mid, f->mid_out, bad[i]),
                         CVAE_ERR_INVALID_ARG);
        assert_msg_has(cvae_layer_last_error(relu), itoa_buf(num, sizeof num, bad[i]));
        assert_msg_has(cvae_layer_last_error(relu), "3"); /* the limit */
        assert_int_equal(cvae_layer_backward(relu, f->mid, f->mid_out, f->mid, NULL, bad[i]),
                         CVAE_ERR_INVALID_ARG);
        assert_msg_has(cvae_layer_last_error(relu), itoa_buf(num, sizeof num, bad[i]));
    }
    /* Still usable, and right: relu of every value of 3 images. */
    assert_int_equal(cvae_layer_forward(relu, f->mid, f->mid_out, FX_BATCH), CVAE_OK);
    for (i = 0; i < FX_BATCH * FX_MID; i++)
        if (f->mid_out[i] != (f->mid[i] > 0.0f ? f->mid[i] : 0.0f))
            fail_msg("relu out[%d] = %g for in %g", i, (double)f->mid_out[i], (double)f->mid[i]);
    assert_int_equal(cvae_layer_backward(relu, f->mid, f->mid_out, f->mid, NULL, FX_BATCH),
                     CVAE_OK);
}

/* ----------------------------------------------------------- options */

/* Fails if set_option/get_option accept a key the kind lacks, a NULL value
 * pointer or a slope outside [0, 1), the messages miss the key or range, or
 * a refused set changes the slope. */
static void test_option_errors(void **state)
{
    const double bad[] = {-0.01, -1e-300, 1.0, 1.5, NAN, INFINITY, -INFINITY, 1e300};
    cvae_layer *leaky = NULL, *conv = NULL;
    double v = -2.0;
    int i;
    (void)state;
    assert_int_equal(cvae_layer_create_leaky_relu(&leaky, 0.25f), CVAE_OK);
    assert_int_equal(cvae_layer_create_conv2d(&conv, 1, 1, 1, 1, 1, 0, 0), CVAE_OK);

    /* A key leaky_relu does not have. */
    assert_int_equal(cvae_layer_set_option(leaky, (cvae_layer_option)201, 0.5),
                     CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_layer_last_error(leaky), "201");
    assert_int_equal(cvae_layer_set_option(leaky, (cvae_layer_option)0, 0.5), CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_get_option(leaky, (cvae_layer_option)201, &v),
                     CVAE_ERR_INVALID_ARG);
    assert_true(v == -2.0);
    /* get_option takes a const handle: it leaves the message of key 0. */
    assert_msg_has(cvae_layer_last_error(leaky), "key 0");
    /* The right key on the wrong kind. */
    assert_int_equal(cvae_layer_set_option(conv, CVAE_LAYER_LEAKY_SLOPE, 0.5),
                     CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_layer_last_error(conv), "conv2d");
    assert_msg_has(cvae_layer_last_error(conv), "200");
    assert_int_equal(cvae_layer_get_option(conv, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_ERR_INVALID_ARG);
    assert_true(v == -2.0);
    /* NULL value pointer. */
    assert_int_equal(cvae_layer_get_option(leaky, CVAE_LAYER_LEAKY_SLOPE, NULL),
                     CVAE_ERR_INVALID_ARG);
    /* Out of range. */
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        cvae_status st = cvae_layer_set_option(leaky, CVAE_LAYER_LEAKY_SLOPE, bad[i]);
        if (st != CVAE_ERR_INVALID_ARG)
            fail_msg("slope %g: status %d", bad[i], (int)st);
        assert_msg_has(cvae_layer_last_error(leaky), "[0, 1)");
        assert_msg_has(cvae_layer_last_error(leaky), "leaky_relu");
    }
    assert_int_equal(cvae_layer_set_option(leaky, CVAE_LAYER_LEAKY_SLOPE, 1.5),
                     CVAE_ERR_INVALID_ARG);
    assert_msg_has(cvae_layer_last_error(leaky), "1.5");
    /* None of it changed the slope, and the layer still takes a good one. */
    assert_int_equal(cvae_layer_get_option(leaky, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(v == 0.25);
    assert_int_equal(cvae_layer_set_option(leaky, CVAE_LAYER_LEAKY_SLOPE, 0.5), CVAE_OK);
    assert_int_equal(cvae_layer_get_option(leaky, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(v == 0.5);
    cvae_layer_destroy(leaky);
    cvae_layer_destroy(conv);
}

/* Fails if the slope can change once the stack is built, or the refusal
 * changes the slope the layer computes with. */
static void test_option_after_build(void **state)
{
    cvae_stack *s = new_stack();
    cvae_layer *l = NULL;
    const float in[4] = {-4.0f, 3.0f, -1.0f, 0.5f};
    const float *out = NULL;
    double v = 0.0;
    (void)state;
    push(s, cvae_layer_create_leaky_relu(&l, 0.25f), &l);
    /* Allowed while the stack is not built. */
    assert_int_equal(cvae_layer_set_option(l, CVAE_LAYER_LEAKY_SLOPE, 0.125), CVAE_OK);
    assert_int_equal(cvae_stack_build(s, 1, 2, 2, 1, 0), CVAE_OK);
    assert_int_equal(cvae_layer_set_option(l, CVAE_LAYER_LEAKY_SLOPE, 0.5), CVAE_ERR_STATE);
    assert_msg_has(cvae_layer_last_error(l), "built");
    assert_msg_has(cvae_layer_last_error(l), "leaky_relu");
    /* Out of range and built: either refusal is fine, never OK. */
    assert_int_not_equal(cvae_layer_set_option(l, CVAE_LAYER_LEAKY_SLOPE, 7.0), CVAE_OK);
    assert_int_equal(cvae_layer_get_option(l, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(v == 0.125);
    assert_int_equal(cvae_stack_forward(s, in, 1, &out), CVAE_OK);
    assert_true(out[0] == -0.5f && out[1] == 3.0f && out[2] == -0.125f && out[3] == 0.5f);
    cvae_stack_destroy(s);
}

/* Fails if a valid slope does not round-trip through set and get, or is not
 * the one forward uses. */
static void test_option_round_trip(void **state)
{
    const double good[] = {0.0, 0.25, 0.75, 1.0 - 1.0 / 16777216.0 /* largest float < 1 */,
                           0.001953125};
    cvae_layer *l = NULL;
    double v = -1.0;
    int i;
    (void)state;
    assert_int_equal(cvae_layer_create_leaky_relu(&l, 0.01f), CVAE_OK);
    assert_int_equal(cvae_layer_get_option(l, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(v == (double)0.01f);
    for (i = 0; i < (int)(sizeof good / sizeof good[0]); i++) {
        assert_int_equal(cvae_layer_set_option(l, CVAE_LAYER_LEAKY_SLOPE, good[i]), CVAE_OK);
        assert_int_equal(cvae_layer_get_option(l, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
        if (v != good[i])
            fail_msg("set %.17g, got %.17g", good[i], v);
    }
    /* A value between floats: stored to float precision. */
    assert_int_equal(cvae_layer_set_option(l, CVAE_LAYER_LEAKY_SLOPE, 0.3), CVAE_OK);
    assert_int_equal(cvae_layer_get_option(l, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(fabs(v - 0.3) < 1e-7);
    cvae_layer_destroy(l);
}

/* Fails if a double slope below 1 that rounds to 1.0f when stored is
 * accepted and kept as 1 (outside the documented [0, 1)): it must be
 * refused, or stored as a value below 1. */
static void test_option_slope_below_one_stays_below_one(void **state)
{
    const double near_one[] = {1.0 - 1e-9, 1.0 - 1.0 / 9007199254740992.0 /* 1 - 2^-53 */};
    cvae_status st[2], get_st[2];
    double v[2] = {-1.0, -1.0};
    cvae_layer *l = NULL;
    int i;
    (void)state;
    assert_int_equal(cvae_layer_create_leaky_relu(&l, 0.5f), CVAE_OK);
    for (i = 0; i < 2; i++) {
        st[i] = cvae_layer_set_option(l, CVAE_LAYER_LEAKY_SLOPE, near_one[i]);
        get_st[i] = cvae_layer_get_option(l, CVAE_LAYER_LEAKY_SLOPE, &v[i]);
    }
    cvae_layer_destroy(l); /* before any check, so a failure leaks nothing */
    for (i = 0; i < 2; i++) {
        assert_int_equal(get_st[i], CVAE_OK);
        if (st[i] == CVAE_OK && !(v[i] >= 0.0 && v[i] < 1.0))
            fail_msg("set %.17g accepted, stored as %.17g", near_one[i], v[i]);
        if (st[i] != CVAE_OK) {
            assert_int_equal(st[i], CVAE_ERR_INVALID_ARG);
            assert_true(v[i] == 0.5);
        }
    }
}

/* Fails if cvae_layer_option_bounds accepts a NULL pointer, a key the layer
 * lacks or the wrong kind, touches its outputs when it refuses, or gives
 * bounds that set_option does not honour exactly (both inclusive). */
static void test_option_bounds(void **state)
{
    const double largest_below_one = 1.0 - 1.0 / 16777216.0;
    cvae_layer *leaky = NULL, *lin = NULL;
    double lo = -5.0, hi = -5.0, v = -1.0;
    (void)state;
    assert_int_equal(cvae_layer_create_leaky_relu(&leaky, 0.01f), CVAE_OK);
    assert_int_equal(cvae_layer_create_linear(&lin, 3), CVAE_OK);
    assert_int_equal(cvae_layer_option_bounds(NULL, CVAE_LAYER_LEAKY_SLOPE, &lo, &hi),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_option_bounds(leaky, CVAE_LAYER_LEAKY_SLOPE, NULL, &hi),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_option_bounds(leaky, CVAE_LAYER_LEAKY_SLOPE, &lo, NULL),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_option_bounds(leaky, (cvae_layer_option)201, &lo, &hi),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_option_bounds(lin, CVAE_LAYER_LEAKY_SLOPE, &lo, &hi),
                     CVAE_ERR_INVALID_ARG);
    assert_true(lo == -5.0 && hi == -5.0);

    assert_int_equal(cvae_layer_option_bounds(leaky, CVAE_LAYER_LEAKY_SLOPE, &lo, &hi), CVAE_OK);
    if (lo != 0.0 || hi != largest_below_one)
        fail_msg("bounds [%.17g, %.17g], want [0, %.17g]", lo, hi, largest_below_one);
    /* Both ends are accepted and kept exactly ... */
    assert_int_equal(cvae_layer_set_option(leaky, CVAE_LAYER_LEAKY_SLOPE, hi), CVAE_OK);
    assert_int_equal(cvae_layer_get_option(leaky, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(v == hi);
    assert_int_equal(cvae_layer_set_option(leaky, CVAE_LAYER_LEAKY_SLOPE, lo), CVAE_OK);
    assert_int_equal(cvae_layer_get_option(leaky, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(v == lo);
    /* ... and anything beyond them is refused. */
    assert_int_equal(cvae_layer_set_option(leaky, CVAE_LAYER_LEAKY_SLOPE, (hi + 1.0) / 2.0),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_set_option(leaky, CVAE_LAYER_LEAKY_SLOPE, -DBL_MIN),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(cvae_layer_get_option(leaky, CVAE_LAYER_LEAKY_SLOPE, &v), CVAE_OK);
    assert_true(v == lo);
    cvae_layer_destroy(leaky);
    cvae_layer_destroy(lin);
}

/* ------------------------------------------------------------- main */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pinned_values),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_create_null_out),
        cmocka_unit_test(test_create_valid_controls),
        cmocka_unit_test(test_conv_bad_sizes),
        cmocka_unit_test(test_linear_bad_sizes),
        cmocka_unit_test(test_reshape_bad_sizes),
        cmocka_unit_test(test_leaky_bad_slope),
        cmocka_unit_test(test_destroy_null_and_owned),
        cmocka_unit_test(test_null_handles),
        cmocka_unit_test(test_build_bad_args),
        cmocka_unit_test(test_build_kernel_too_large),
        cmocka_unit_test(test_build_convt_empty_output),
        cmocka_unit_test(test_build_reshape_mismatch),
        cmocka_unit_test(test_build_too_large),
        cmocka_unit_test(test_build_dims_beyond_int),
        cmocka_unit_test_setup_teardown(test_build_twice, setup_built, teardown_built),
        cmocka_unit_test(test_calls_before_build),
        cmocka_unit_test_setup_teardown(test_bad_batch, setup_built, teardown_built),
        cmocka_unit_test_setup_teardown(test_backward_order, setup_built, teardown_built),
        cmocka_unit_test_setup_teardown(test_null_buffers, setup_built, teardown_built),
        cmocka_unit_test(test_add_null),
        cmocka_unit_test_setup_teardown(test_add_after_build, setup_built, teardown_built),
        cmocka_unit_test(test_add_owned_layer),
        cmocka_unit_test(test_layer_call_unbuilt),
        cmocka_unit_test_setup_teardown(test_layer_call_bad_args, setup_built, teardown_built),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_option_after_build),
        cmocka_unit_test(test_option_round_trip),
        cmocka_unit_test(test_option_slope_below_one_stays_below_one),
        cmocka_unit_test(test_option_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
