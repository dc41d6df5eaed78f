/*
 * classifier.c - a digit classifier made of libcvae layers: building, training with
 * shifted images, predicting, and its own CRC-checked file. See classifier.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "classifier.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ERR_SIZE 4352  /* a message names a path of up to PATH_LIMIT bytes */
#define PATH_LIMIT 4000
#define HEADER_SIZE 32 /* magic, C, H, W, K, P */
#define CRC_SIZE 4

static const char MAGIC[8] = {'C', 'V', 'A', 'E', 'C', 'L', 'F', '1'};

struct clf_classifier {
    cvae_stack *stack; /* NULL while empty */
    int c, h, w, classes;
    char err[ERR_SIZE];
};

/* Printf into the handle's message; always returns st, for `return fail(...)`. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static cvae_status fail(clf_classifier *clf, cvae_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(clf->err, sizeof clf->err, fmt, ap);
    va_end(ap);
    return st;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------- handles */

void clf_default_options(clf_options *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 15;
    o->batch = 64;
    o->lr = 2e-3;
    o->final_lr = 0;
    o->weight_decay = 0;
    o->max_shift = 2;
    o->seed = 1;
    o->threads = 0;
    o->log = NULL;
}

cvae_status clf_create(clf_classifier **out)
{
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = calloc(1, sizeof **out);
    return *out ? CVAE_OK : CVAE_ERR_NOMEM;
}

void clf_destroy(clf_classifier *clf)
{
    if (!clf)
        return;
    cvae_stack_destroy(clf->stack);
    free(clf);
}

const char *clf_last_error(const clf_classifier *clf)
{
    return clf ? clf->err : "classifier handle is NULL";
}

cvae_status clf_shape(const clf_classifier *clf, int *c, int *h, int *w, int *classes)
{
    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (!clf->stack)
        return CVAE_ERR_STATE;
    if (c)
        *c = clf->c;
    if (h)
        *h = clf->h;
    if (w)
        *w = clf->w;
    if (classes)
        *classes = clf->classes;
    return CVAE_OK;
}

size_t clf_param_count(const clf_classifier *clf)
{
    size_t n = 0;
    if (clf && clf->stack)
        cvae_stack_params(clf->stack, &n);
    return n;
}

cvae_stack *clf_stack(clf_classifier *clf) { return clf ? clf->stack : NULL; }

int clf_max_batch(const clf_classifier *clf)
{
    return clf && clf->stack ? cvae_stack_max_batch(clf->stack) : 0;
}

cvae_status clf_set_threads(clf_classifier *clf, int threads)
{
    cvae_status st;
    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (!clf->stack)
        return fail(clf, CVAE_ERR_STATE, "set_threads: the classifier has no network yet");
    if ((st = cvae_stack_set_threads(clf->stack, threads)) != CVAE_OK)
        return fail(clf, st, "set_threads: %s", cvae_stack_last_error(clf->stack));
    return CVAE_OK;
}

/* ------------------------------------------------------------- network */

/* 0 unless the shape is one clf_init accepts; loading uses the same rule. */
static int shape_ok(long long c, long long h, long long w, long long classes)
{
    return c >= 1 && c <= CLF_MAX_CHANNELS && h >= 4 && h <= CLF_MAX_SIDE && h % 4 == 0 &&
           w >= 4 && w <= CLF_MAX_SIDE && w % 4 == 0 && classes >= 2 &&
           classes <= CLF_MAX_CLASSES;
}

/* The network's parameter count for a shape shape_ok accepts, computed here (not by building
 * it), so that a file's count is checked before anything large is allocated. By the limits it
 * is below 2^30. */
static uint64_t expected_params(int c, int h, int w, int classes)
{
    uint64_t feat = 64u * (uint64_t)(h / 4) * (uint64_t)(w / 4);
    return (32u * (uint64_t)c * 9u + 32u)      /* conv 3x3 */
           + (64u * 32u * 16u + 64u)           /* conv 4x4 s2 */
           + (64u * 64u * 16u + 64u)           /* conv 4x4 s2 */
           + (128u * feat + 128u)              /* linear(128) */
           + ((uint64_t)classes * 128u + (uint64_t)classes); /* linear(K) */
}

/* Builds the layer list of classifier.h into a new stack; on failure *out is NULL. */
static cvae_status build_stack(clf_classifier *clf, int c, int h, int w, int classes,
                               int max_batch, uint64_t seed, cvae_stack **out)
{
    cvae_stack *s = NULL;
    cvae_layer *l = NULL;
    cvae_status st;

    *out = NULL;
    if ((st = cvae_stack_create(&s)) != CVAE_OK)
        return fail(clf, st, "creating the stack: %s", cvae_status_string(st));
    /* cvae_stack_add owns the layer even when it fails, so each pair needs no cleanup. */
#define ADD(make)                                                                                  \
    do {                                                                                           \
        if (st == CVAE_OK && (st = (make)) == CVAE_OK)                                             \
            st = cvae_stack_add(s, l);                                                             \
    } while (0)
    ADD(cvae_layer_create_conv2d(&l, 32, 3, 3, 1, 1, 1, 1));
    ADD(cvae_layer_create_relu(&l));
    ADD(cvae_layer_create_conv2d(&l, 64, 4, 4, 2, 2, 1, 1));
    ADD(cvae_layer_create_relu(&l));
    ADD(cvae_layer_create_conv2d(&l, 64, 4, 4, 2, 2, 1, 1));
    ADD(cvae_layer_create_relu(&l));
    ADD(cvae_layer_create_flatten(&l));
    ADD(cvae_layer_create_linear(&l, 128));
    ADD(cvae_layer_create_relu(&l));
    ADD(cvae_layer_create_linear(&l, classes));
#undef ADD
    if (st != CVAE_OK) {
        cvae_stack_destroy(s);
        return fail(clf, st, "adding the layers: %s", cvae_status_string(st));
    }
    if ((st = cvae_stack_build(s, c, h, w, max_batch, seed)) != CVAE_OK) {
        fail(clf, st, "building the network for %dx%dx%d, %d classes, batch %d: %s", c, h, w,
             classes, max_batch, cvae_stack_last_error(s));
        cvae_stack_destroy(s);
        return st;
    }
    *out = s;
    return CVAE_OK;
}

cvae_status clf_init(clf_classifier *clf, int c, int h, int w, int classes, int max_batch,
                     uint64_t seed)
{
    cvae_status st;
    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (clf->stack)
        return fail(clf, CVAE_ERR_STATE, "init: the classifier already has a network");
    if (!shape_ok(c, h, w, classes) || max_batch < 1)
        return fail(clf, CVAE_ERR_INVALID_ARG,
                    "init: %dx%dx%d images, %d classes, batch %d: want C in [1, %d], H and W "
                    "multiples of 4 in [4, %d], classes in [2, %d], batch >= 1",
                    c, h, w, classes, max_batch, CLF_MAX_CHANNELS, CLF_MAX_SIDE,
                    CLF_MAX_CLASSES);
    if ((st = build_stack(clf, c, h, w, classes, max_batch, seed, &clf->stack)) != CVAE_OK)
        return st;
    clf->c = c;
    clf->h = h;
    clf->w = w;
    clf->classes = classes;
    clf->err[0] = '\0';
    return CVAE_OK;
}

/* ------------------------------------------------------------ training */

/* splitmix64: the shifts' generator, its state on the caller's stack. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, n) for small n: the top 32 bits scaled (a bias under n / 2^32). */
static int below(uint64_t *s, int n) { return (int)(((next_u64(s) >> 32) * (uint64_t)n) >> 32); }

/* dst = src moved by (dx, dy) pixels, zero where nothing moves in; C planes of h x w. */
static void shift_image(float *dst, const float *src, int c, int h, int w, int dx, int dy)
{
    int ch, y, x;
    for (ch = 0; ch < c; ch++) {
        const float *sp = src + (size_t)ch * h * w;
        float *dp = dst + (size_t)ch * h * w;
        for (y = 0; y < h; y++) {
            int sy = y - dy;
            for (x = 0; x < w; x++) {
                int sx = x - dx;
                dp[y * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? sp[sy * w + sx] : 0.0f;
            }
        }
    }
}

/* Index of the largest of k values (the first on a tie; NaN never wins). */
static int argmax(const float *v, int k)
{
    int j, best = 0;
    for (j = 1; j < k; j++)
        if (v[j] > v[best])
            best = j;
    return best;
}

/* Checks that ds fits clf (shape, labels); what names the caller. */
static cvae_status check_dataset(clf_classifier *clf, const cvae_dataset *ds, const char *what)
{
    int c, h, w;
    if (!clf->stack)
        return fail(clf, CVAE_ERR_STATE, "%s: the classifier has no network yet", what);
    if (cvae_dataset_shape(ds, &c, &h, &w) != CVAE_OK)
        return fail(clf, CVAE_ERR_STATE, "%s: the dataset is empty", what);
    if (c != clf->c || h != clf->h || w != clf->w)
        return fail(clf, CVAE_ERR_SHAPE, "%s: the images are %dx%dx%d, the classifier's %dx%dx%d",
                    what, c, h, w, clf->c, clf->h, clf->w);
    if (!cvae_dataset_has_labels(ds))
        return fail(clf, CVAE_ERR_INVALID_ARG, "%s: the dataset has no labels", what);
    return CVAE_OK;
}

/* Fails unless every label of ds is a class of clf, so that training never stops half-way
 * on one; x and labels hold a batch of `batch` images. */
static cvae_status check_labels(clf_classifier *clf, cvae_dataset *ds, int batch, float *x,
                                int *labels)
{
    int count = cvae_dataset_count(ds), first, i;
    cvae_status st;
    for (first = 0; first < count; first += batch) {
        int n = count - first < batch ? count - first : batch;
        if ((st = cvae_dataset_batch(ds, first, n, x, labels)) != CVAE_OK)
            return fail(clf, st, "train: reading a batch: %s", cvae_dataset_last_error(ds));
        for (i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= clf->classes)
                return fail(clf, CVAE_ERR_INVALID_ARG,
                            "train: label %d of image %d is not a class in [0, %d)", labels[i],
                            first + i, clf->classes);
    }
    return CVAE_OK;
}

static cvae_status check_options(clf_classifier *clf, const clf_options *o)
{
    int maxb = cvae_stack_max_batch(clf->stack);
    if (o->epochs < 1 || o->batch < 1 || o->batch > maxb)
        return fail(clf, CVAE_ERR_INVALID_ARG,
                    "train: epochs %d and batch %d: want epochs >= 1 and a batch in [1, %d] "
                    "(the max batch the classifier was made for)",
                    o->epochs, o->batch, maxb);
    if (!(o->lr > 0) || !isfinite(o->lr) || !(o->final_lr >= 0) || !(o->final_lr <= o->lr) ||
        !(o->weight_decay >= 0) || !isfinite(o->weight_decay))
        return fail(clf, CVAE_ERR_INVALID_ARG,
                    "train: lr %g, final_lr %g, weight_decay %g: want 0 < lr finite, "
                    "0 <= final_lr <= lr, weight_decay >= 0 finite",
                    o->lr, o->final_lr, o->weight_decay);
    if (o->max_shift < 0 || o->max_shift >= clf->h || o->max_shift >= clf->w)
        return fail(clf, CVAE_ERR_INVALID_ARG, "train: max_shift %d is not in [0, %d)",
                    o->max_shift, clf->h < clf->w ? clf->h : clf->w);
    if (o->threads < 0 || o->threads > 256)
        return fail(clf, CVAE_ERR_INVALID_ARG, "train: threads %d is not in [0, 256]",
                    o->threads);
    return CVAE_OK;
}

/* Learning rate of step t (from 0) of total: lr falling towards final_lr on half a cosine.
 * The last step's rate stays above final_lr, so a final_lr of 0 (which Adam refuses) is
 * never set. */
static double rate_at(const clf_options *o, long t, long total)
{
    const double pi = 3.14159265358979323846;
    return o->final_lr +
           (o->lr - o->final_lr) * 0.5 * (1.0 + cos(pi * (double)t / (double)total));
}

/* Buffers of one training run, freed together. */
struct train_buffers {
    float *x, *shifted, *dlogits;
    int *labels;
};

static void free_buffers(struct train_buffers *b)
{
    free(b->x);
    free(b->shifted);
    free(b->dlogits);
    free(b->labels);
}

/* One epoch of training (the dataset already shuffled); adds to the loss sum and correct
 * count, and advances *step, the global step count of the schedule. */
static cvae_status train_epoch(clf_classifier *clf, cvae_dataset *ds, const clf_options *o,
                               cvae_optimizer *opt, struct train_buffers *b, uint64_t *rng,
                               long *step, long total_steps, double *loss_sum, long *correct,
                               double *last_lr)
{
    size_t img = (size_t)clf->c * clf->h * clf->w, np = 0;
    int count = cvae_dataset_count(ds), first, i, k = clf->classes;
    float *params = cvae_stack_params(clf->stack, &np);
    const float *grads = cvae_stack_grads(clf->stack, NULL);
    cvae_status st;

    for (first = 0; first < count; first += o->batch) {
        int n = count - first < o->batch ? count - first : o->batch;
        const float *in = b->x, *logits = NULL;
        double loss = 0;

        if ((st = cvae_dataset_batch(ds, first, n, b->x, b->labels)) != CVAE_OK)
            return fail(clf, st, "train: reading a batch: %s", cvae_dataset_last_error(ds));
        if (o->max_shift > 0) {
            int span = 2 * o->max_shift + 1;
            for (i = 0; i < n; i++) {
                int dx = below(rng, span) - o->max_shift, dy = below(rng, span) - o->max_shift;
                shift_image(b->shifted + i * img, b->x + i * img, clf->c, clf->h, clf->w, dx, dy);
            }
            in = b->shifted;
        }
        if ((st = cvae_stack_zero_grad(clf->stack)) != CVAE_OK ||
            (st = cvae_stack_forward(clf->stack, in, n, &logits)) != CVAE_OK)
            return fail(clf, st, "train: forward: %s", cvae_stack_last_error(clf->stack));
        st = cvae_softmax_cross_entropy(logits, b->labels, n, k, &loss, b->dlogits);
        if (st != CVAE_OK)
            return fail(clf, st, "train: the loss of step %ld: %s%s", *step + 1,
                        cvae_status_string(st),
                        st == CVAE_ERR_NUMERIC ? " (the logits are not finite)" : "");
        for (i = 0; i < n; i++)
            *correct += argmax(logits + (size_t)i * k, k) == b->labels[i];
        *loss_sum += loss * n; /* the loss is a mean over the batch */
        if ((st = cvae_stack_backward(clf->stack, b->dlogits, n, NULL)) != CVAE_OK)
            return fail(clf, st, "train: backward: %s", cvae_stack_last_error(clf->stack));
        *last_lr = rate_at(o, *step, total_steps);
        if ((st = cvae_optimizer_set(opt, CVAE_OPT_LR, *last_lr)) != CVAE_OK ||
            (st = cvae_optimizer_step(opt, params, grads, np)) != CVAE_OK)
            return fail(clf, st, "train: Adam step %ld: %s", *step + 1,
                        cvae_optimizer_last_error(opt));
        ++*step;
    }
    return CVAE_OK;
}

cvae_status clf_train(clf_classifier *clf, cvae_dataset *train, const clf_options *opts)
{
    clf_options defaults;
    const clf_options *o = opts;
    struct train_buffers b = {NULL, NULL, NULL, NULL};
    cvae_optimizer *opt = NULL;
    size_t img, np = 0;
    uint64_t rng;
    long step = 0, total_steps, steps_per_epoch;
    int count, epoch;
    cvae_status st;

    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (!train)
        return fail(clf, CVAE_ERR_INVALID_ARG, "train: the dataset is NULL");
    if (!o) {
        clf_default_options(&defaults);
        o = &defaults;
    }
    if ((st = check_dataset(clf, train, "train")) != CVAE_OK ||
        (st = check_options(clf, o)) != CVAE_OK)
        return st;

    count = cvae_dataset_count(train);
    steps_per_epoch = (count + o->batch - 1) / o->batch;
    total_steps = steps_per_epoch * o->epochs;
    img = (size_t)clf->c * clf->h * clf->w;
    cvae_stack_params(clf->stack, &np);
    b.x = malloc((size_t)o->batch * img * sizeof *b.x);
    b.shifted = malloc((size_t)o->batch * img * sizeof *b.shifted);
    b.dlogits = malloc((size_t)o->batch * clf->classes * sizeof *b.dlogits);
    b.labels = malloc((size_t)o->batch * sizeof *b.labels);
    if (!b.x || !b.shifted || !b.dlogits || !b.labels) {
        free_buffers(&b);
        return fail(clf, CVAE_ERR_NOMEM, "train: no memory for batches of %d", o->batch);
    }
    /* From here on the dataset's order may change: every exit goes through done. */
    /* In stored order, the label check names images by their index in the file. */
    if ((st = cvae_dataset_unshuffle(train)) != CVAE_OK) {
        fail(clf, st, "train: %s", cvae_dataset_last_error(train));
        goto done;
    }
    if ((st = check_labels(clf, train, o->batch, b.x, b.labels)) != CVAE_OK)
        goto done;
    if ((st = cvae_stack_set_threads(clf->stack, o->threads)) != CVAE_OK) {
        fail(clf, st, "train: threads: %s", cvae_stack_last_error(clf->stack));
        goto done;
    }
    if ((st = cvae_optimizer_create(&opt, CVAE_OPTIMIZER_ADAM, np)) != CVAE_OK ||
        (st = cvae_optimizer_set(opt, CVAE_OPT_WEIGHT_DECAY, o->weight_decay)) != CVAE_OK) {
        fail(clf, st, "train: creating the optimizer: %s", cvae_status_string(st));
        goto done;
    }
    /* The shifts' stream is apart from the initialisation's and the shuffles'. */
    rng = o->seed ^ UINT64_C(0x5348494654533031);

    for (epoch = 0; epoch < o->epochs; epoch++) {
        double t0 = now_seconds(), loss_sum = 0, lr = o->lr;
        long correct = 0;

        if ((st = cvae_dataset_shuffle(train, o->seed + (uint64_t)epoch)) != CVAE_OK) {
            fail(clf, st, "train: shuffling: %s", cvae_dataset_last_error(train));
            goto done;
        }
        st = train_epoch(clf, train, o, opt, &b, &rng, &step, total_steps, &loss_sum, &correct,
                         &lr);
        if (st != CVAE_OK)
            goto done;
        if (o->log) {
            fprintf(o->log, "epoch %d/%d  loss %.4f  train accuracy %.2f%%  lr %.2e  %.1f s\n",
                    epoch + 1, o->epochs, loss_sum / count, 100.0 * (double)correct / count, lr,
                    now_seconds() - t0);
            fflush(o->log);
        }
    }
    clf->err[0] = '\0';
done:
    /* Leave the caller's dataset in its stored order whatever happened. */
    if (cvae_dataset_unshuffle(train) != CVAE_OK && st == CVAE_OK)
        st = fail(clf, CVAE_ERR_STATE, "train: cannot restore the dataset's order");
    cvae_optimizer_destroy(opt);
    free_buffers(&b);
    return st;
}

/* ----------------------------------------------------------- prediction */

cvae_status clf_predict(clf_classifier *clf, const float *images, int n, int *labels)
{
    size_t img;
    int first, maxb, i;
    cvae_status st;

    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (!images || !labels || n < 1)
        return fail(clf, CVAE_ERR_INVALID_ARG, "predict: %s", n < 1 ? "n < 1" : "a NULL buffer");
    if (!clf->stack)
        return fail(clf, CVAE_ERR_STATE, "predict: the classifier has no network yet");
    img = (size_t)clf->c * clf->h * clf->w;
    maxb = cvae_stack_max_batch(clf->stack);
    for (first = 0; first < n; first += maxb) {
        int m = n - first < maxb ? n - first : maxb;
        const float *logits = NULL;
        if ((st = cvae_stack_forward(clf->stack, images + (size_t)first * img, m, &logits)) !=
            CVAE_OK)
            return fail(clf, st, "predict: %s", cvae_stack_last_error(clf->stack));
        for (i = 0; i < m; i++)
            labels[first + i] = argmax(logits + (size_t)i * clf->classes, clf->classes);
    }
    return CVAE_OK;
}

cvae_status clf_accuracy(clf_classifier *clf, cvae_dataset *ds, int *correct, int *total)
{
    int count, maxb, first, i, right = 0;
    float *x = NULL;
    int *truth = NULL, *guess = NULL;
    cvae_status st;

    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (!ds || !correct || !total)
        return fail(clf, CVAE_ERR_INVALID_ARG, "accuracy: a NULL argument");
    if ((st = check_dataset(clf, ds, "accuracy")) != CVAE_OK)
        return st;
    count = cvae_dataset_count(ds);
    maxb = cvae_stack_max_batch(clf->stack);
    x = malloc((size_t)maxb * clf->c * clf->h * clf->w * sizeof *x);
    truth = malloc((size_t)maxb * sizeof *truth);
    guess = malloc((size_t)maxb * sizeof *guess);
    if (!x || !truth || !guess) {
        st = fail(clf, CVAE_ERR_NOMEM, "accuracy: no memory for batches of %d", maxb);
        goto done;
    }
    for (first = 0; first < count; first += maxb) {
        int n = count - first < maxb ? count - first : maxb;
        if ((st = cvae_dataset_batch(ds, first, n, x, truth)) != CVAE_OK) {
            fail(clf, st, "accuracy: reading a batch: %s", cvae_dataset_last_error(ds));
            goto done;
        }
        if ((st = clf_predict(clf, x, n, guess)) != CVAE_OK)
            goto done;
        for (i = 0; i < n; i++)
            right += guess[i] == truth[i];
    }
    *correct = right;
    *total = count;
done:
    free(x);
    free(truth);
    free(guess);
    return st;
}

/* ----------------------------------------------------------------- file */

/* CRC-32 as zlib computes it, four bits at a time from a 16-entry table (constant data, no
 * state); continues from crc (0 to start). */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    static const uint32_t nibble[16] = {
        0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
        0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
        0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu};
    size_t i;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble[crc & 15];
        crc = (crc >> 4) ^ nibble[crc & 15];
    }
    return ~crc;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* float <-> its IEEE bits as a little-endian u32, whatever the host's byte order. */
static void put_f32(unsigned char *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_u32(p, bits);
}

static float get_f32(const unsigned char *p)
{
    uint32_t bits = get_u32(p);
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

/* Writes n bytes and folds them into *crc; 0 on success. */
static int write_crc(FILE *f, const unsigned char *p, size_t n, uint32_t *crc)
{
    *crc = crc32_update(*crc, p, n);
    return fwrite(p, 1, n, f) != n;
}

cvae_status clf_save(clf_classifier *clf, const char *path)
{
    char tmp[PATH_LIMIT + 8];
    unsigned char head[HEADER_SIZE], buf[4096];
    const float *params;
    size_t np = 0, i, k;
    uint32_t crc = 0;
    int bad = 0, saved_errno;
    FILE *f;

    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (!path || strlen(path) > PATH_LIMIT)
        return fail(clf, CVAE_ERR_INVALID_ARG, "save: %s",
                    path ? "the path is longer than 4000 bytes" : "the path is NULL");
    if (!clf->stack)
        return fail(clf, CVAE_ERR_STATE, "%s: nothing to save: the classifier has no network",
                    path);
    params = cvae_stack_params(clf->stack, &np);
    for (i = 0; i < np; i++)
        if (!isfinite(params[i]))
            return fail(clf, CVAE_ERR_NUMERIC,
                        "%s: not saved: parameter %zu is %g (the file would not load)", path, i,
                        (double)params[i]);

    memcpy(head, MAGIC, 8);
    put_u32(head + 8, (uint32_t)clf->c);
    put_u32(head + 12, (uint32_t)clf->h);
    put_u32(head + 16, (uint32_t)clf->w);
    put_u32(head + 20, (uint32_t)clf->classes);
    put_u32(head + 24, (uint32_t)np);
    put_u32(head + 28, (uint32_t)((uint64_t)np >> 32));

    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    errno = 0;
    if (!(f = fopen(tmp, "wb")))
        return fail(clf, CVAE_ERR_IO, "%s: cannot create %s: %s", path, tmp,
                    errno ? strerror(errno) : "fopen failed");
    errno = 0; /* a successful fopen may leave errno set; report only the writes' */
    bad |= write_crc(f, head, HEADER_SIZE, &crc);
    for (i = 0; i < np && !bad; i += k) {
        size_t j;
        k = np - i < sizeof buf / 4 ? np - i : sizeof buf / 4;
        for (j = 0; j < k; j++)
            put_f32(buf + 4 * j, params[i + j]);
        bad |= write_crc(f, buf, 4 * k, &crc);
    }
    put_u32(buf, crc);
    bad |= fwrite(buf, 1, CRC_SIZE, f) != CRC_SIZE;
    /* A full disk often shows only at the flush or the close: check both. */
    bad |= fflush(f) != 0;
    bad |= ferror(f) != 0;
    saved_errno = errno;
    bad |= fclose(f) != 0;
    if (bad) {
        if (!saved_errno)
            saved_errno = errno;
        remove(tmp);
        return fail(clf, CVAE_ERR_IO, "%s: writing %s failed: %s (the previous file is kept)",
                    path, tmp, saved_errno ? strerror(saved_errno) : "short write");
    }
    errno = 0;
    if (rename(tmp, path) != 0) {
        saved_errno = errno;
        remove(tmp);
        return fail(clf, CVAE_ERR_IO, "%s: cannot replace it with %s: %s", path, tmp,
                    saved_errno ? strerror(saved_errno) : "rename failed");
    }
    clf->err[0] = '\0';
    return CVAE_OK;
}

/* Reads exactly n bytes; 0 on success, 1 at the end of the file, -1 on a read error. */
static int read_exact(FILE *f, unsigned char *p, size_t n)
{
    size_t got = fread(p, 1, n, f);
    if (got == n)
        return 0;
    return ferror(f) ? -1 : 1;
}

/* Everything of clf_load after the file is open; the caller closes it. */
static cvae_status load_from(clf_classifier *clf, FILE *f, const char *path, int max_batch)
{
    unsigned char head[HEADER_SIZE], tail[CRC_SIZE];
    uint32_t c, h, w, k, crc, stored;
    uint64_t np, want, expected_size;
    long long size;
    unsigned char *raw = NULL;
    cvae_stack *s = NULL;
    float *params;
    size_t i, got;
    cvae_status st;
    int r;

    /* The length first (a regular file's, from the end), so that nothing is allocated for a
     * size the file does not have. */
    errno = 0;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        return fail(clf, CVAE_ERR_IO, "%s: cannot read: %s", path,
                    errno ? strerror(errno) : "not a seekable file");
    errno = 0;
    if ((got = fread(head, 1, HEADER_SIZE, f)) < HEADER_SIZE) {
        if (ferror(f))
            return fail(clf, CVAE_ERR_IO, "%s: cannot read: %s", path,
                        errno ? strerror(errno) : "read error");
        if (got < 8 || memcmp(head, MAGIC, 8) != 0)
            return fail(clf, CVAE_ERR_FORMAT,
                        "%s: not a classifier file (%zu bytes, no \"CVAECLF1\" at the start)",
                        path, got);
        return fail(clf, CVAE_ERR_FORMAT, "%s: truncated: %zu bytes, the header alone is %d",
                    path, got, HEADER_SIZE);
    }
    if (memcmp(head, MAGIC, 8) != 0)
        return fail(clf, CVAE_ERR_FORMAT,
                    "%s: not a classifier file (the first 8 bytes are not \"CVAECLF1\")", path);
    c = get_u32(head + 8);
    h = get_u32(head + 12);
    w = get_u32(head + 16);
    k = get_u32(head + 20);
    np = (uint64_t)get_u32(head + 24) | (uint64_t)get_u32(head + 28) << 32;
    if (!shape_ok(c, h, w, k))
        return fail(clf, CVAE_ERR_FORMAT,
                    "%s: bad header: %lux%lux%lu images, %lu classes (want C in [1, %d], H and "
                    "W multiples of 4 in [4, %d], classes in [2, %d])",
                    path, (unsigned long)c, (unsigned long)h, (unsigned long)w, (unsigned long)k,
                    CLF_MAX_CHANNELS, CLF_MAX_SIDE, CLF_MAX_CLASSES);
    want = expected_params((int)c, (int)h, (int)w, (int)k);
    if (np != want)
        return fail(clf, CVAE_ERR_FORMAT,
                    "%s: bad header: %llu parameters, but the network for %lux%lux%lu images "
                    "and %lu classes has %llu",
                    path, (unsigned long long)np, (unsigned long)c, (unsigned long)h,
                    (unsigned long)w, (unsigned long)k, (unsigned long long)want);
    expected_size = HEADER_SIZE + 4 * np + CRC_SIZE;
    if ((uint64_t)size < expected_size)
        return fail(clf, CVAE_ERR_FORMAT,
                    "%s: truncated: %lld bytes, the header promises %llu", path, size,
                    (unsigned long long)expected_size);
    if ((uint64_t)size > expected_size)
        return fail(clf, CVAE_ERR_FORMAT, "%s: %llu trailing bytes after the checksum at %llu",
                    path, (unsigned long long)((uint64_t)size - expected_size),
                    (unsigned long long)(expected_size - CRC_SIZE));

    if (np > SIZE_MAX / 4 || !(raw = malloc((size_t)np * 4)))
        return fail(clf, CVAE_ERR_NOMEM, "%s: no memory for %llu parameters", path,
                    (unsigned long long)np);
    errno = 0;
    if ((r = read_exact(f, raw, (size_t)np * 4)) != 0 || (r = read_exact(f, tail, CRC_SIZE)) != 0) {
        /* The length was right a moment ago: the file changed, or the read failed. */
        st = r < 0 ? fail(clf, CVAE_ERR_IO, "%s: cannot read: %s", path,
                          errno ? strerror(errno) : "read error")
                   : fail(clf, CVAE_ERR_FORMAT, "%s: truncated while reading", path);
        goto done;
    }
    crc = crc32_update(crc32_update(0, head, HEADER_SIZE), raw, (size_t)np * 4);
    stored = get_u32(tail);
    if (crc != stored) {
        st = fail(clf, CVAE_ERR_FORMAT,
                  "%s: checksum mismatch: stored 0x%08lx, computed 0x%08lx (the file is "
                  "damaged)",
                  path, (unsigned long)stored, (unsigned long)crc);
        goto done;
    }
    for (i = 0; i < (size_t)np; i++) {
        float v = get_f32(raw + 4 * i);
        if (!isfinite(v)) {
            st = fail(clf, CVAE_ERR_NUMERIC, "%s: parameter %zu (byte %zu) is %g", path, i,
                      HEADER_SIZE + 4 * i, (double)v);
            goto done;
        }
    }

    if ((st = build_stack(clf, (int)c, (int)h, (int)w, (int)k, max_batch, 0, &s)) != CVAE_OK) {
        /* build_stack's message does not name the file; prefix it. */
        char inner[ERR_SIZE];
        memcpy(inner, clf->err, sizeof inner);
        fail(clf, st, "%s: %s", path, inner);
        goto done;
    }
    params = cvae_stack_params(s, &got);
    if (got != (size_t)np) { /* the formula and the library disagree: a bug here */
        st = fail(clf, CVAE_ERR_FORMAT, "%s: the network has %zu parameters, the file %llu",
                  path, got, (unsigned long long)np);
        cvae_stack_destroy(s);
        goto done;
    }
    for (i = 0; i < got; i++)
        params[i] = get_f32(raw + 4 * i);
    clf->stack = s;
    clf->c = (int)c;
    clf->h = (int)h;
    clf->w = (int)w;
    clf->classes = (int)k;
    clf->err[0] = '\0';
    st = CVAE_OK;
done:
    free(raw);
    return st;
}

cvae_status clf_load(clf_classifier *clf, const char *path, int max_batch)
{
    cvae_status st;
    FILE *f;

    if (!clf)
        return CVAE_ERR_INVALID_ARG;
    if (!path || max_batch < 1)
        return fail(clf, CVAE_ERR_INVALID_ARG, "load: %s",
                    path ? "max_batch < 1" : "the path is NULL");
    if (clf->stack)
        return fail(clf, CVAE_ERR_STATE, "%s: not loaded: the classifier already has a network",
                    path);
    errno = 0;
    if (!(f = fopen(path, "rb")))
        return fail(clf, CVAE_ERR_IO, "%s: cannot open: %s", path,
                    errno ? strerror(errno) : "fopen failed");
    st = load_from(clf, f, path, max_batch);
    fclose(f);
    return st;
}
