/*
 * fuzz_model.c - libFuzzer target for the model file (docs/FORMAT.md):
 * cvae_model_load and cvae_optimizer_load (lib/serialize.c).
 *
 * Input: a model file. Two header fields would stop almost every mutant at
 * the door, so the harness repairs them before writing the file, unless the
 * input asks it not to:
 *  - payload length (bytes 16..23): when its high 32 bits are 0, the low 32
 *    bits are set to size - 28 (an input with high bits set is kept as is,
 *    which reaches the "bad header" check);
 *  - CRC-32 (last 4 bytes): recomputed, unless the low nibble of the first
 *    CRC byte is 0xF (then kept as is, which reaches "checksum mismatch").
 *
 * Checked on every input: no crash, leak or UB (sanitizers); a failed model
 * load returns a file status with a message and leaves the model empty; a
 * loaded model is usable (sample, decode, encode when its images are small)
 * and survives a save and reload bit for bit; a failed optimizer load leaves
 * the optimizer unchanged; a loaded optimizer can take a training step.
 */
#define _POSIX_C_SOURCE 200809L

#include "cvae.h"
#include "cvae_internal.h"
#include "fuzz_util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 4
/* Forward passes only for models with images and latents this small, so
 * that a legal but enormous architecture costs a load, not minutes. */
#define MAX_RUN_PIXELS 256
#define MAX_RUN_LATENT 1024
/* Far below libFuzzer's malloc limit (2 GB by default), so that an
 * architecture too large is the library's refusal, not the fuzzer's OOM
 * report; and small enough that a legal architecture with few parameters but
 * huge activations (a padded convolution: 107 parameters, millions of pixels)
 * costs well under a millisecond to run: the long runs need millions of
 * executions, and with larger limits the corpus drifted to convolutional
 * models whose forward passes made each input cost milliseconds (32 MB and
 * 4,096 values: 5 ms; 8 MB and 1,024 values: 2 ms). The parsers are what is
 * fuzzed; the kernels have their own tests. */
#define MAX_MEMORY (2.0 * 1024 * 1024)

static const char *file_path, *copy_path;

/* The header repairs described above, in place. */
static void repair(uint8_t *buf, size_t size)
{
    if (size < 28)
        return;
    if (cvi_get_u32le(buf + 20) == 0)
        cvi_put_u32le(buf + 16, (uint32_t)(size - 28));
    if ((buf[size - 4] & 0x0F) != 0x0F)
        cvi_put_u32le(buf + size - 4, cvi_crc32_update(0, buf, size - 4));
}

static int is_file_status(cvae_status st)
{
    return st == CVAE_ERR_IO || st == CVAE_ERR_FORMAT || st == CVAE_ERR_VERSION ||
           st == CVAE_ERR_NUMERIC || st == CVAE_ERR_TOO_LARGE || st == CVAE_ERR_NOMEM;
}

/* Uses a loaded model whose images are small: sample, decode, encode. */
static void run_model(cvae_model *m, int image, int latent)
{
    float *img = calloc((size_t)image, sizeof *img);
    float *z = calloc((size_t)latent, sizeof *z);
    float *mu = calloc((size_t)latent, sizeof *mu);
    float *lv = calloc((size_t)latent, sizeof *lv);
    FUZZ_CHECK(img && z && mu && lv);
    FUZZ_CHECK(cvae_model_sample(m, 1, 42, img) == CVAE_OK);
    FUZZ_CHECK(cvae_model_decode(m, z, 1, img) == CVAE_OK);
    FUZZ_CHECK(cvae_model_encode(m, img, 1, mu, lv) == CVAE_OK);
    FUZZ_CHECK(cvae_model_reconstruct(m, img, 1, img) == CVAE_OK);
    free(img);
    free(z);
    free(mu);
    free(lv);
}

/* Saves m, loads the copy and compares: the same shape, parameters, steps. */
static void round_trip(cvae_model *m)
{
    cvae_model *m2 = NULL;
    size_t n1 = 0, n2 = 0;
    const float *p1, *p2;
    int c1, h1, w1, l1, c2, h2, w2, l2;
    FUZZ_CHECK(cvae_model_save(m, NULL, copy_path) == CVAE_OK);
    FUZZ_CHECK(cvae_model_create(&m2) == CVAE_OK);
    FUZZ_CHECK(cvae_model_set(m2, CVAE_MODEL_MAX_MEMORY, MAX_MEMORY) == CVAE_OK);
    FUZZ_CHECK(cvae_model_load(m2, copy_path, MAX_BATCH) == CVAE_OK);
    FUZZ_CHECK(cvae_model_shape(m, &c1, &h1, &w1, &l1, NULL) == CVAE_OK);
    FUZZ_CHECK(cvae_model_shape(m2, &c2, &h2, &w2, &l2, NULL) == CVAE_OK);
    FUZZ_CHECK(c1 == c2 && h1 == h2 && w1 == w2 && l1 == l2);
    p1 = cvae_model_params(m, &n1);
    p2 = cvae_model_params(m2, &n2);
    FUZZ_CHECK(n1 == n2 && memcmp(p1, p2, n1 * sizeof *p1) == 0);
    FUZZ_CHECK(cvae_model_steps(m) == cvae_model_steps(m2));
    cvae_model_destroy(m2);
}

/* A copy of an optimizer's state, to check that a failed load changed nothing. */
typedef struct snapshot {
    double options[CVI_OPT_NOPTIONS];
    uint64_t t;
    float *m, *v;
} snapshot;

static void take_snapshot(cvae_optimizer *opt, snapshot *s)
{
    cvi_optimizer_state os;
    int i;
    cvi_optimizer_get_state(opt, &os);
    for (i = 0; i < CVI_OPT_NOPTIONS; i++)
        s->options[i] = *os.options[i];
    s->t = *os.t;
    s->m = malloc(os.n * sizeof(float));
    s->v = os.v ? malloc(os.n * sizeof(float)) : NULL;
    FUZZ_CHECK(s->m && (!os.v || s->v));
    memcpy(s->m, os.m, os.n * sizeof(float));
    if (os.v)
        memcpy(s->v, os.v, os.n * sizeof(float));
}

static void check_unchanged(cvae_optimizer *opt, snapshot *s)
{
    cvi_optimizer_state os;
    int i;
    cvi_optimizer_get_state(opt, &os);
    for (i = 0; i < CVI_OPT_NOPTIONS; i++)
        FUZZ_CHECK(memcmp(&s->options[i], os.options[i], sizeof(double)) == 0);
    FUZZ_CHECK(s->t == *os.t);
    FUZZ_CHECK(memcmp(s->m, os.m, os.n * sizeof(float)) == 0);
    FUZZ_CHECK(!os.v || memcmp(s->v, os.v, os.n * sizeof(float)) == 0);
    free(s->m);
    free(s->v);
}

static int finite_floats(const float *x, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* 1 when the model's parameters and the optimizer's moments are finite. */
static int finite_state(cvae_model *m, cvae_optimizer *opt)
{
    cvi_optimizer_state os;
    size_t n;
    const float *p = cvae_model_params(m, &n);
    cvi_optimizer_get_state(opt, &os);
    return finite_floats(p, n) && finite_floats(os.m, os.n) && (!os.v || finite_floats(os.v, os.n));
}

/* Loads the optimizer section into an optimizer of n parameters (Adam,
 * then SGD if the kind differs). m is the loaded model or NULL. */
static void fuzz_optimizer(cvae_model *m, size_t n, int runnable, int image)
{
    static const cvae_optimizer_kind kinds[2] = {CVAE_OPTIMIZER_ADAM, CVAE_OPTIMIZER_SGD};
    int k;
    for (k = 0; k < 2; k++) {
        cvae_optimizer *opt = NULL, *opt2 = NULL;
        snapshot snap;
        cvae_status st;
        FUZZ_CHECK(cvae_optimizer_create(&opt, kinds[k], n) == CVAE_OK);
        take_snapshot(opt, &snap);
        st = cvae_optimizer_load(opt, file_path);
        if (fuzz_verbose())
            fprintf(stderr, "optimizer_load(%s, %zu): %s: %s\n",
                    kinds[k] == CVAE_OPTIMIZER_ADAM ? "adam" : "sgd", n, cvae_status_string(st),
                    cvae_optimizer_last_error(opt));
        if (st != CVAE_OK) {
            FUZZ_CHECK(is_file_status(st) || st == CVAE_ERR_STATE || st == CVAE_ERR_SHAPE);
            FUZZ_CHECK(cvae_optimizer_last_error(opt)[0] != '\0');
            check_unchanged(opt, &snap);
            cvae_optimizer_destroy(opt);
            if (st == CVAE_ERR_SHAPE)
                continue; /* maybe the other kind */
            return;
        }
        free(snap.m);
        free(snap.v);
        if (m && runnable && cvae_optimizer_average_swapped(opt)) {
            /* A checkpoint saved with the running average in the model:
             * a step is refused until the training weights are back. */
            float *x1 = calloc((size_t)image, sizeof *x1);
            FUZZ_CHECK(x1 != NULL);
            FUZZ_CHECK(cvae_model_train_step(m, opt, x1, 1, NULL, NULL) == CVAE_ERR_STATE);
            free(x1);
            FUZZ_CHECK(cvae_optimizer_swap_average(opt, cvae_model_params(m, NULL), n) ==
                       CVAE_OK);
            FUZZ_CHECK(!cvae_optimizer_average_swapped(opt));
        }
        if (m && runnable) {
            float *x = calloc((size_t)image, sizeof *x);
            double recon, kl;
            size_t i;
            FUZZ_CHECK(x != NULL);
            for (i = 0; i < (size_t)image; i++)
                x[i] = (float)(i % 3) * 0.5f;
            st = cvae_model_train_step(m, opt, x, 1, &recon, &kl);
            FUZZ_CHECK(st == CVAE_OK || st == CVAE_ERR_NUMERIC);
            free(x);
            if (!finite_state(m, opt)) {
                /* Found here once (tests/fuzz/README.md): a finite gradient
                 * overflowed Adam's moments and the step still returned OK. */
                fprintf(stderr, "train_step returned %s but left a non-finite parameter or "
                                "optimizer moment\n",
                        cvae_status_string(st));
                abort();
            }
            /* Saved with the optimizer, the state reloads. */
            FUZZ_CHECK(cvae_model_save(m, opt, copy_path) == CVAE_OK);
            FUZZ_CHECK(cvae_optimizer_create(&opt2, kinds[k], n) == CVAE_OK);
            st = cvae_optimizer_load(opt2, copy_path);
            if (st != CVAE_OK)
                fprintf(stderr, "reload of a saved optimizer: %s: %s\n", cvae_status_string(st),
                        cvae_optimizer_last_error(opt2));
            FUZZ_CHECK(st == CVAE_OK);
            FUZZ_CHECK(cvae_optimizer_steps(opt2) == cvae_optimizer_steps(opt));
            cvae_optimizer_destroy(opt2);
        }
        cvae_optimizer_destroy(opt);
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf;
    cvae_model *m = NULL;
    cvae_status st;
    int c = 0, h = 0, w = 0, latent = 0, batch = 0, runnable = 0, image = 0;
    size_t n;

    if (!file_path) {
        file_path = fuzz_temp_path("model", "input.cvae");
        copy_path = fuzz_temp_path("model", "copy.cvae");
    }
    buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);
    repair(buf, size);
    fuzz_write_file(file_path, buf, size);
    free(buf);

    FUZZ_CHECK(cvae_model_create(&m) == CVAE_OK);
    FUZZ_CHECK(cvae_model_set(m, CVAE_MODEL_MAX_MEMORY, MAX_MEMORY) == CVAE_OK);
    st = cvae_model_load(m, file_path, MAX_BATCH);
    if (fuzz_verbose())
        fprintf(stderr, "model_load(%zu bytes): %s: %s\n", size, cvae_status_string(st),
                cvae_model_last_error(m));
    if (st == CVAE_OK) {
        FUZZ_CHECK(cvae_model_encoder(m) && cvae_model_decoder(m));
        FUZZ_CHECK(cvae_model_shape(m, &c, &h, &w, &latent, &batch) == CVAE_OK);
        FUZZ_CHECK(c >= 1 && h >= 1 && w >= 1 && latent >= 1 && batch == MAX_BATCH);
        n = cvae_model_param_count(m);
        FUZZ_CHECK(n >= 1 && cvae_model_params(m, NULL) != NULL);
        runnable = (size_t)c * (size_t)h * (size_t)w <= MAX_RUN_PIXELS &&
                   latent <= MAX_RUN_LATENT;
        if (runnable) {
            image = c * h * w;
            run_model(m, image, latent);
        }
        round_trip(m);
        fuzz_optimizer(m, n, runnable, image);
    } else {
        FUZZ_CHECK(is_file_status(st));
        FUZZ_CHECK(cvae_model_last_error(m)[0] != '\0');
        FUZZ_CHECK(cvae_model_encoder(m) == NULL && cvae_model_params(m, NULL) == NULL);
        FUZZ_CHECK(cvae_model_shape(m, NULL, NULL, NULL, NULL, NULL) == CVAE_ERR_STATE);
        /* The optimizer loader parses the file on its own. */
        fuzz_optimizer(NULL, 1, 0, 0);
    }
    cvae_model_destroy(m);
    return 0;
}
