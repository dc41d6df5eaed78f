/*
 * make_corpus.c - writes the fuzzers' seed corpora, deterministically:
 *
 *   make_corpus DIR   ->  DIR/idx/...    inputs of fuzz_idx
 *                         DIR/model/...  inputs of fuzz_model
 *                         DIR/image/...  inputs of fuzz_image
 *
 * The directories must exist. Valid files first (tiny IDX files; tiny
 * models built with cvae_model_init_stacks, saved with and without an
 * optimizer; CIFAR-10 records and small PGM/PPM images), then malformed
 * copies of them (truncated, bad magic, wrong sizes, bad values).
 * Parameters and gradients are set from integer patterns, not trained, so
 * the bytes do not depend on libm.
 *
 * An idx input is an images file, optionally followed by "#LABELS#" and a
 * labels file (see fuzz_idx.c). A model input is a model file; fuzz_model
 * repairs its payload length and CRC unless told not to (see fuzz_model.c),
 * so the malformed files that must reach a header check say so. An image
 * input is a selector byte (bit 0: netpbm, else CIFAR-10; bits 1-2: files
 * - 1), then the files separated by "#FILE#" (see fuzz_image.c).
 */
#define _POSIX_C_SOURCE 200809L

#include "cvae.h"
#include "cvae_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEP "#LABELS#"
#define FILE_SEP "#FILE#"

static const char *out_dir;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "make_corpus: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* ------------------------------------------------------------ buffers */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void add(buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            die("out of memory", NULL);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void add_be32(buf *b, uint32_t v)
{
    uint8_t x[4];
    cvi_put_u32be(x, v);
    add(b, x, 4);
}

static buf copy_of(const buf *src)
{
    buf b = {NULL, 0, 0};
    add(&b, src->p, src->n);
    return b;
}

static void write_file(const char *sub, const char *name, const uint8_t *data, size_t n)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
    f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0)
        die("cannot write", path);
}

static void write_buf(const char *sub, const char *name, buf *b)
{
    write_file(sub, name, b->p, b->n);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* --------------------------------------------------------------- IDX */

static void idx_images(buf *b, uint32_t magic, uint32_t count, uint32_t h, uint32_t w,
                       size_t data_bytes)
{
    size_t i;
    add_be32(b, magic);
    add_be32(b, count);
    add_be32(b, h);
    add_be32(b, w);
    for (i = 0; i < data_bytes; i++) {
        uint8_t v = (uint8_t)(i * 37 % 256);
        add(b, &v, 1);
    }
}

/* count 28 x 28 images, zero but for a block of ink in rows 9-18 that
 * holds a few zeros of its own. */
static void idx_blank(buf *b, uint32_t count)
{
    size_t i;
    add_be32(b, 0x803);
    add_be32(b, count);
    add_be32(b, 28);
    add_be32(b, 28);
    for (i = 0; i < (size_t)count * 784; i++) {
        size_t y = i % 784 / 28, x = i % 28;
        uint8_t v = y >= 9 && y <= 18 && x >= 6 + i / 784 && x <= 20 ? (uint8_t)(i * 37 % 256) : 0;
        add(b, &v, 1);
    }
}

static void idx_labels(buf *b, uint32_t magic, uint32_t count, size_t data_bytes)
{
    size_t i;
    add_be32(b, magic);
    add_be32(b, count);
    for (i = 0; i < data_bytes; i++) {
        uint8_t v = (uint8_t)(i * 7 % 10);
        add(b, &v, 1);
    }
}

static void make_idx(void)
{
    buf b = {NULL, 0, 0};

    /* Valid. */
    idx_images(&b, 0x803, 3, 4, 4, 48);
    add(&b, SEP, 8);
    idx_labels(&b, 0x801, 3, 3);
    write_buf("idx", "ok-3x4x4-labels", &b);

    idx_images(&b, 0x803, 2, 5, 3, 30);
    write_buf("idx", "ok-2x5x3-nolabels", &b);

    idx_images(&b, 0x803, 1, 1, 1, 1);
    add(&b, SEP, 8);
    idx_labels(&b, 0x801, 1, 1);
    write_buf("idx", "ok-1x1x1-labels", &b);

    idx_images(&b, 0x803, 5, 2, 7, 70);
    add(&b, SEP, 8);
    idx_labels(&b, 0x801, 5, 5);
    write_buf("idx", "ok-5x2x7-labels", &b);

    /* Digits on a blank background, as MNIST's: the dataset keeps them
     * packed (lib/pack.c), with zero runs longer than a code's 128. */
    idx_blank(&b, 4);
    add(&b, SEP, 8);
    idx_labels(&b, 0x801, 4, 4);
    write_buf("idx", "ok-4x28x28-blank-labels", &b);

    /* Malformed images. */
    write_buf("idx", "bad-empty", &b);

    idx_images(&b, 0x803, 3, 4, 4, 48);
    b.n = 6;
    write_buf("idx", "bad-short-header", &b);

    idx_images(&b, 0x801, 3, 4, 4, 48);
    write_buf("idx", "bad-magic-1dim", &b);

    idx_images(&b, 0xD03, 3, 4, 4, 48); /* IDX of floats */
    write_buf("idx", "bad-magic-float", &b);

    add(&b, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10); /* a gzip header */
    write_buf("idx", "bad-gzip", &b);

    idx_images(&b, 0x803, 3, 4, 4, 47);
    write_buf("idx", "bad-truncated-data", &b);

    idx_images(&b, 0x803, 3, 4, 4, 49);
    write_buf("idx", "bad-trailing-byte", &b);

    idx_images(&b, 0x803, 3, 0, 4, 0);
    write_buf("idx", "bad-zero-dim", &b);

    idx_images(&b, 0x803, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 4);
    write_buf("idx", "bad-overflow-dims", &b);

    idx_images(&b, 0x803, 65536, 65536, 1, 4);
    write_buf("idx", "bad-huge-dims", &b);

    /* Malformed labels. */
    idx_images(&b, 0x803, 3, 4, 4, 48);
    add(&b, SEP, 8);
    idx_labels(&b, 0x801, 2, 2);
    write_buf("idx", "bad-label-count", &b);

    idx_images(&b, 0x803, 3, 4, 4, 48);
    add(&b, SEP, 8);
    idx_labels(&b, 0x801, 3, 3);
    b.p[b.n - 1] = 10;
    write_buf("idx", "bad-label-value", &b);

    idx_images(&b, 0x803, 3, 4, 4, 48);
    add(&b, SEP, 8);
    idx_labels(&b, 0x803, 3, 3);
    write_buf("idx", "bad-label-magic", &b);

    idx_images(&b, 0x803, 3, 4, 4, 48);
    add(&b, SEP, 8);
    write_buf("idx", "bad-label-empty", &b);

    idx_images(&b, 0x803, 3, 4, 4, 48);
    add(&b, SEP, 8);
    idx_labels(&b, 0x801, 3, 2);
    write_buf("idx", "bad-label-truncated", &b);
}

/* ------------------------------------------------------------- images */

#define CIFAR_PIXELS 3072

/* The selector byte of fuzz_image. */
static uint8_t selector(int pnm, int files)
{
    return (uint8_t)((pnm ? 1 : 0) | (files - 1) << 1);
}

/* One CIFAR-10 record: label, then 3 x 32 x 32 pixels from a pattern that
 * depends on seed. */
static void cifar_record(buf *b, uint8_t label, unsigned seed)
{
    size_t i;
    add(b, &label, 1);
    for (i = 0; i < CIFAR_PIXELS; i++) {
        uint8_t v = (uint8_t)((i * 37 + seed * 101) % 256);
        add(b, &v, 1);
    }
}

static void add_str(buf *b, const char *s) { add(b, s, strlen(s)); }

/* A raster of n bytes, values 0..maxval from a pattern. */
static void raster(buf *b, size_t n, unsigned maxval, unsigned seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint8_t v = (uint8_t)((i * 29 + seed * 13) % (maxval + 1));
        add(b, &v, 1);
    }
}

/* A netpbm file: header text as given, then a raster of channels x w x h
 * bytes of values 0..maxval. */
static void pnm_file(buf *b, const char *header, size_t raster_bytes, unsigned maxval,
                     unsigned seed)
{
    add_str(b, header);
    raster(b, raster_bytes, maxval, seed);
}

static void make_image(void)
{
    buf b = {NULL, 0, 0};
    uint8_t s;

    /* Valid CIFAR-10: one record; two files of one record each. */
    s = selector(0, 1);
    add(&b, &s, 1);
    cifar_record(&b, 3, 0);
    write_buf("image", "ok-cifar-1-record", &b);

    s = selector(0, 2);
    add(&b, &s, 1);
    cifar_record(&b, 0, 1);
    add_str(&b, FILE_SEP);
    cifar_record(&b, 9, 2);
    write_buf("image", "ok-cifar-2-files", &b);

    /* Valid netpbm. */
    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n4 3\n255\n", 12, 255, 0);
    write_buf("image", "ok-p5-4x3-255", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P6 3 2 255\n", 18, 255, 1);
    write_buf("image", "ok-p6-3x2-255", &b);

    s = selector(1, 2);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n15\n", 4, 15, 2);
    add_str(&b, FILE_SEP);
    pnm_file(&b, "P5 2 2 15 ", 4, 15, 3);
    write_buf("image", "ok-p5-2x2-15-2-files", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P6\n2 1\t15\r", 6, 15, 4);
    write_buf("image", "ok-p6-2x1-15", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n# made by make_corpus\n3 # width\n#height next\n2\r# maxval\n255\n", 6,
             255, 5);
    write_buf("image", "ok-p5-comments", &b);

    s = selector(1, 4);
    add(&b, &s, 1);
    pnm_file(&b, "P6\n1 2\n255\n", 6, 255, 6);
    add_str(&b, FILE_SEP);
    pnm_file(&b, "P6 1 2 255\n", 6, 255, 7);
    add_str(&b, FILE_SEP);
    pnm_file(&b, "P6\t1\t2\t7\t", 6, 7, 8);
    add_str(&b, FILE_SEP);
    pnm_file(&b, "P6#c\n1#c\n2#c\n1\n", 6, 1, 9);
    write_buf("image", "ok-p6-1x2-4-files", &b);

    /* Malformed CIFAR-10. */
    s = selector(0, 1);
    add(&b, &s, 1);
    write_buf("image", "bad-cifar-empty", &b);

    s = selector(0, 1);
    add(&b, &s, 1);
    cifar_record(&b, 3, 0);
    b.n -= 1;
    write_buf("image", "bad-cifar-partial-record", &b);

    s = selector(0, 1);
    add(&b, &s, 1);
    cifar_record(&b, 10, 0);
    write_buf("image", "bad-cifar-label-10", &b);

    s = selector(0, 1);
    add(&b, &s, 1);
    cifar_record(&b, 3, 0); /* CIFAR-100: coarse and fine labels, 3074 bytes */
    b.p[2] = 42;
    add(&b, "\x05", 1);
    write_buf("image", "bad-cifar-100-record", &b);

    s = selector(0, 2);
    add(&b, &s, 1);
    cifar_record(&b, 1, 0); /* no separator: the second file is empty */
    write_buf("image", "bad-cifar-missing-file", &b);

    s = selector(0, 2);
    add(&b, &s, 1);
    cifar_record(&b, 1, 0);
    add_str(&b, FILE_SEP);
    cifar_record(&b, 2, 1);
    add(&b, "\0\0", 2);
    write_buf("image", "bad-cifar-trailing-bytes", &b);

    /* Malformed netpbm. */
    s = selector(1, 1);
    add(&b, &s, 1);
    add_str(&b, "P3\n2 1\n255\n0 1 2 3 4 5\n");
    write_buf("image", "bad-p3-ascii", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P54 3\n255\n", 12, 255, 0); /* not a 4x3 P5 */
    write_buf("image", "bad-no-space-after-magic", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n0\n", 4, 0, 0);
    write_buf("image", "bad-maxval-0", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n256\n", 4, 255, 0);
    write_buf("image", "bad-maxval-256", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n65535\n", 8, 255, 0); /* 16-bit */
    write_buf("image", "bad-maxval-65535", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P6\n3 2\n255\n", 17, 255, 0);
    write_buf("image", "bad-truncated-raster", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n4 3\n255\n", 13, 255, 0);
    write_buf("image", "bad-trailing-bytes", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n15\n", 4, 255, 6); /* values up to 255 */
    write_buf("image", "bad-pixel-above-maxval", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 0\n255\n", 0, 255, 0);
    write_buf("image", "bad-zero-height", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n65536 1\n255\n", 4, 255, 0);
    write_buf("image", "bad-side-65536", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n255# no room for this comment\n", 4, 255, 0);
    write_buf("image", "bad-comment-after-maxval", &b);

    s = selector(1, 1);
    add(&b, &s, 1);
    add_str(&b, "P6\n2 2 # the file ends in a comment");
    write_buf("image", "bad-header-ends", &b);

    s = selector(1, 2);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n255\n", 4, 255, 0);
    add_str(&b, FILE_SEP);
    pnm_file(&b, "P5\n2 3\n255\n", 6, 255, 1);
    write_buf("image", "bad-mismatched-sizes", &b);

    s = selector(1, 2);
    add(&b, &s, 1);
    pnm_file(&b, "P5\n2 2\n255\n", 4, 255, 0);
    add_str(&b, FILE_SEP);
    pnm_file(&b, "P6\n2 2\n255\n", 12, 255, 1);
    write_buf("image", "bad-mismatched-kinds", &b);
}

/* ------------------------------------------------------------- models */

static void check(cvae_status st, const char *what)
{
    if (st != CVAE_OK)
        die(what, cvae_status_string(st));
}

static void push(cvae_stack *s, cvae_status made, cvae_layer *l)
{
    check(made, "layer");
    check(cvae_stack_add(s, l), "stack_add");
}

/* Exact small parameter values, whatever the platform's rounding of the
 * initialisation or of the optimizer steps. */
static void set_pattern(cvae_model *m)
{
    size_t n, i;
    float *p = cvae_model_params(m, &n);
    for (i = 0; i < n; i++)
        p[i] = (float)((int)(i * 37 % 17) - 8) / 16.0f;
}

/* 0: 1x4x4, latent 2, linear only.
 * 1: 1x4x4, latent 2, every layer kind.
 * 2: 2x2x3, latent 1, linear only. */
static cvae_model *build(int which)
{
    cvae_model *m;
    cvae_stack *enc, *dec;
    cvae_layer *l = NULL;
    check(cvae_model_create(&m), "model_create");
    check(cvae_stack_create(&enc), "stack_create");
    check(cvae_stack_create(&dec), "stack_create");
    if (which == 0) {
        push(enc, cvae_layer_create_flatten(&l), l);
        push(enc, cvae_layer_create_linear(&l, 4), l);
        push(dec, cvae_layer_create_linear(&l, 16), l);
        push(dec, cvae_layer_create_reshape(&l, 1, 4, 4), l);
        check(cvae_model_init_stacks(m, enc, dec, 1, 4, 4, 2, 4, 1), "init_stacks");
    } else if (which == 1) {
        push(enc, cvae_layer_create_conv2d(&l, 2, 3, 3, 1, 1, 1, 1), l);
        push(enc, cvae_layer_create_relu(&l), l);
        push(enc, cvae_layer_create_conv2d(&l, 2, 2, 2, 2, 2, 0, 0), l);
        push(enc, cvae_layer_create_leaky_relu(&l, 0.125f), l);
        push(enc, cvae_layer_create_flatten(&l), l);
        push(enc, cvae_layer_create_linear(&l, 4), l);
        push(dec, cvae_layer_create_linear(&l, 8), l);
        push(dec, cvae_layer_create_tanh(&l), l);
        push(dec, cvae_layer_create_reshape(&l, 2, 2, 2), l);
        push(dec, cvae_layer_create_conv_transpose2d(&l, 1, 2, 2, 2, 2, 0, 0), l);
        push(dec, cvae_layer_create_sigmoid(&l), l);
        check(cvae_model_init_stacks(m, enc, dec, 1, 4, 4, 2, 4, 2), "init_stacks");
    } else {
        push(enc, cvae_layer_create_linear(&l, 2), l);
        push(dec, cvae_layer_create_linear(&l, 12), l);
        push(dec, cvae_layer_create_reshape(&l, 2, 2, 3), l);
        check(cvae_model_init_stacks(m, enc, dec, 2, 2, 3, 1, 4, 3), "init_stacks");
    }
    set_pattern(m);
    return m;
}

/* An optimizer for m after two steps on integer-pattern gradients. */
static cvae_optimizer *optimizer(cvae_model *m, cvae_optimizer_kind kind)
{
    cvae_optimizer *o;
    size_t n, i;
    float *p = cvae_model_params(m, &n), *g = malloc(n * sizeof *g);
    int s;
    if (!g)
        die("out of memory", NULL);
    check(cvae_optimizer_create(&o, kind, n), "optimizer_create");
    if (kind == CVAE_OPTIMIZER_SGD) {
        check(cvae_optimizer_set(o, CVAE_OPT_WEIGHT_DECAY, 0.0625), "optimizer_set");
        check(cvae_optimizer_set(o, CVAE_OPT_CLIP_NORM, 4.0), "optimizer_set");
    }
    for (s = 0; s < 2; s++) {
        for (i = 0; i < n; i++)
            g[i] = (float)((int)((i + (size_t)s) * 11 % 9) - 4) / 8.0f;
        check(cvae_optimizer_step(o, p, g, n), "optimizer_step");
    }
    free(g);
    return o;
}

/* Saves m (with opt when not NULL) as model/name and returns the bytes. */
static buf save(cvae_model *m, cvae_optimizer *opt, const char *name)
{
    char path[1024];
    buf b = {NULL, 0, 0};
    uint8_t chunk[4096];
    size_t got;
    FILE *f;
    snprintf(path, sizeof path, "%s/model/%s", out_dir, name);
    if (cvae_model_save(m, opt, path) != CVAE_OK)
        die("cannot save", cvae_model_last_error(m));
    f = fopen(path, "rb");
    if (!f)
        die("cannot read back", path);
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        add(&b, chunk, got);
    fclose(f);
    return b;
}

/* Makes the payload length and the CRC right again after an edit. */
static void seal(buf *b)
{
    cvi_put_u32le(b->p + 16, (uint32_t)(b->n - 28));
    cvi_put_u32le(b->p + 20, 0);
    cvi_put_u32le(b->p + b->n - 4, cvi_crc32_update(0, b->p, b->n - 4));
}

static void remove_at(buf *b, size_t at, size_t n)
{
    memmove(b->p + at, b->p + at + n, b->n - at - n);
    b->n -= n;
}

static void insert_zeros_at(buf *b, size_t at, size_t n)
{
    static const uint8_t zeros[16];
    size_t old = b->n;
    if (n > sizeof zeros)
        die("insert_zeros_at: too many", NULL);
    add(b, zeros, n);
    memmove(b->p + at + n, b->p + at, old - at);
    memset(b->p + at, 0, n);
}

/* Offsets of a saved file's fields (see docs/FORMAT.md). */
typedef struct offsets {
    size_t enc, dec, nparams, params, opt;
} offsets;

static size_t skip_stack(const uint8_t *p, size_t at)
{
    uint32_t n = cvi_get_u32le(p + at), i;
    at += 4;
    for (i = 0; i < n; i++)
        at += 8 + 4 * (size_t)cvi_get_u32le(p + at + 4);
    return at;
}

static offsets locate(const buf *b)
{
    offsets o;
    o.enc = 24 + 16 + 8 + 8 + 32;
    o.dec = skip_stack(b->p, o.enc);
    o.nparams = skip_stack(b->p, o.dec);
    o.params = o.nparams + 8;
    o.opt = o.params + 4 * (size_t)cvi_get_u32le(b->p + o.nparams);
    return o;
}

static void make_models(void)
{
    cvae_model *tiny = build(0), *conv = build(1), *rect = build(2);
    cvae_optimizer *adam = optimizer(tiny, CVAE_OPTIMIZER_ADAM);
    cvae_optimizer *sgd = optimizer(tiny, CVAE_OPTIMIZER_SGD);
    cvae_optimizer *conv_adam = optimizer(conv, CVAE_OPTIMIZER_ADAM);
    buf a, ao, b, empty = {NULL, 0, 0};
    offsets o, oo;
    uint32_t nan_bits = 0x7FC00000u;
    double minus_one = -1.0;
    uint64_t bits;

    /* Valid. The steps moved the parameters: back to the pattern. */
    set_pattern(tiny);
    set_pattern(conv);
    a = save(tiny, NULL, "ok-tiny.cvae");
    ao = save(tiny, adam, "ok-tiny-adam.cvae");
    b = save(tiny, sgd, "ok-tiny-sgd.cvae");
    free(b.p);
    /* Version 5: Adam with a running average, saved swapped as cvae-train
     * saves its checkpoints. */
    {
        size_t n, i;
        float *p = cvae_model_params(tiny, &n), *g = malloc(n * sizeof *g);
        cvae_optimizer *avg = optimizer(tiny, CVAE_OPTIMIZER_ADAM);
        if (!g)
            die("out of memory", NULL);
        for (i = 0; i < n; i++)
            g[i] = (float)((int)(i * 7 % 5) - 2) / 4.0f;
        check(cvae_optimizer_set(avg, CVAE_OPT_AVERAGE, 0.5), "optimizer_set");
        check(cvae_optimizer_step(avg, p, g, n), "optimizer_step");
        check(cvae_optimizer_step(avg, p, g, n), "optimizer_step");
        free(g);
        set_pattern(tiny);
        check(cvae_optimizer_swap_average(avg, p, n), "optimizer_swap_average");
        b = save(tiny, avg, "ok-tiny-adam-average.cvae");
        free(b.p);
        check(cvae_optimizer_swap_average(avg, p, n), "optimizer_swap_average");
        set_pattern(tiny);
        cvae_optimizer_destroy(avg);
    }
    b = save(conv, NULL, "ok-conv.cvae");
    free(b.p);
    b = save(conv, conv_adam, "ok-conv-adam.cvae");
    free(b.p);
    b = save(rect, NULL, "ok-rect.cvae");
    free(b.p);
    o = locate(&a);
    oo = locate(&ao);

    /* Header: most of these must keep their bad length or CRC, which the
     * harness leaves alone when the length's high word is not 0 or the
     * CRC's first byte ends in 0xF. */
    write_buf("model", "bad-empty.cvae", &empty);

    b = copy_of(&a);
    b.n = 27;
    write_buf("model", "bad-27-bytes.cvae", &b);

    b = copy_of(&a);
    b.n = a.n / 2; /* the harness repairs length and CRC: truncated payload */
    write_buf("model", "bad-truncated-half.cvae", &b);

    b = copy_of(&a);
    b.p[1] = 'c';
    seal(&b);
    write_buf("model", "bad-magic.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + 8, 2);
    seal(&b);
    write_buf("model", "bad-version-2.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + 8, 0);
    seal(&b);
    write_buf("model", "bad-version-0.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + 12, 6);
    seal(&b);
    write_buf("model", "bad-flags.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + 20, 1); /* payload length + 2^32 */
    seal(&b);
    cvi_put_u32le(b.p + 20, 1);
    write_buf("model", "bad-length.cvae", &b);

    b = copy_of(&a);
    if ((b.p[b.n - 4] & 0x0F) == 0x0F)
        b.p[b.n - 4] ^= 0x10;
    else
        b.p[b.n - 4] |= 0x0F;
    write_buf("model", "bad-crc.cvae", &b);

    b = copy_of(&a);
    insert_zeros_at(&b, b.n - 4, 4);
    seal(&b);
    write_buf("model", "bad-trailing.cvae", &b);

    /* Model section. */
    b = copy_of(&a);
    cvi_put_u32le(b.p + 36, 0);
    seal(&b);
    write_buf("model", "bad-latent-0.cvae", &b);

    b = copy_of(&a);
    memcpy(&bits, &minus_one, 8);
    cvi_put_u32le(b.p + 40, (uint32_t)bits);
    cvi_put_u32le(b.p + 44, (uint32_t)(bits >> 32));
    seal(&b);
    write_buf("model", "bad-beta.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + o.enc, 5000);
    seal(&b);
    write_buf("model", "bad-layer-count.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + o.enc + 4, 10);
    seal(&b);
    write_buf("model", "bad-layer-kind.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + o.enc + 12 + 4, 2); /* linear with 2 hyper-parameters */
    seal(&b);
    write_buf("model", "bad-hp-count.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + o.enc + 12 + 8, 5); /* linear(5): encoder gives 5, not 4 */
    seal(&b);
    write_buf("model", "bad-arch.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + o.enc + 12 + 8, 0x80000000u); /* linear(2^31) */
    seal(&b);
    write_buf("model", "bad-hp-range.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + o.nparams, cvi_get_u32le(b.p + o.nparams) - 1);
    remove_at(&b, o.opt - 4, 4);
    seal(&b);
    write_buf("model", "bad-nparams.cvae", &b);

    b = copy_of(&a);
    cvi_put_u32le(b.p + o.params + 8, nan_bits);
    seal(&b);
    write_buf("model", "bad-nan-param.cvae", &b);

    /* Optimizer section. */
    b = copy_of(&ao);
    cvi_put_u32le(b.p + oo.opt, 3);
    seal(&b);
    write_buf("model", "bad-opt-kind.cvae", &b);

    b = copy_of(&ao);
    memcpy(&bits, &minus_one, 8);
    cvi_put_u32le(b.p + oo.opt + 4, (uint32_t)bits); /* lr = -1 */
    cvi_put_u32le(b.p + oo.opt + 8, (uint32_t)(bits >> 32));
    seal(&b);
    write_buf("model", "bad-opt-lr.cvae", &b);

    b = copy_of(&ao);
    cvi_put_u32le(b.p + oo.opt + 4 + 56 + 16 + 4, nan_bits); /* m[1] */
    seal(&b);
    write_buf("model", "bad-opt-nan-moment.cvae", &b);

    b = copy_of(&ao);
    remove_at(&b, b.n - 8, 4); /* v one float short */
    seal(&b);
    write_buf("model", "bad-opt-short.cvae", &b);

    b = copy_of(&ao);
    cvi_put_u32le(b.p + 12, 0); /* optimizer section not flagged */
    seal(&b);
    write_buf("model", "bad-opt-unflagged.cvae", &b);

    free(a.p);
    free(ao.p);
    cvae_optimizer_destroy(adam);
    cvae_optimizer_destroy(sgd);
    cvae_optimizer_destroy(conv_adam);
    cvae_model_destroy(tiny);
    cvae_model_destroy(conv);
    cvae_model_destroy(rect);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR   (writes DIR/idx/, DIR/model/ and DIR/image/)\n");
        return 2;
    }
    out_dir = argv[1];
    make_idx();
    make_models();
    make_image();
    return 0;
}
