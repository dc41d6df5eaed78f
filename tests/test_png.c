#define _POSIX_C_SOURCE 200809L
/*
 * test_png.c - cvae_png_write_grid checked by an independent PNG reader
 * written here: chunk CRCs by a bitwise CRC-32, IHDR fields, the zlib header,
 * stored deflate blocks (any other block type fails), the Adler-32 by the
 * definition, filter type 0, then every pixel against values chosen by hand
 * (clamping, NaN, rounding edges, borders, empty cells, RGB interleaving).
 * Also the library's CRC-32 and Adler-32 against their published check
 * values, every argument error, and the atomic write (old file kept on
 * failure, replaced on success, no temporary left behind).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

#define BORDER_GREY 128

/* ------------------------------------------------------ reference checksums */

/* Adler-32 by RFC 1950's definition, reducing after every byte. */
static uint32_t ref_adler32(const unsigned char *p, size_t n)
{
    uint32_t a = 1, b = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return b << 16 | a;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ------------------------------------------------------------- the reader */

typedef struct png_image {
    uint32_t width, height;
    int color_type;
    size_t channels;
    size_t stored_blocks;
    unsigned char *pixels; /* height x width x channels */
} png_image;

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, got;
    if (!f)
        fail_msg("cannot open %s", path);
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    assert_int_equal(ferror(f), 0);
    fclose(f);
    *size = n;
    return buf;
}

/* Inflates a zlib stream of stored blocks only; returns the data. */
static unsigned char *inflate_stored(const unsigned char *z, size_t zn, size_t *out_n,
                                     size_t *nblocks)
{
    unsigned char *out = NULL;
    size_t pos = 2, n = 0;
    int final = 0;
    assert_true(zn >= 6);
    assert_int_equal(z[0] & 0x0f, 8); /* CM: deflate */
    assert_true((z[0] >> 4) <= 7);    /* CINFO: window <= 32 KiB */
    assert_int_equal((z[0] * 256 + z[1]) % 31, 0);
    assert_int_equal(z[1] & 0x20, 0); /* FDICT: no preset dictionary */
    *nblocks = 0;
    while (!final) {
        unsigned len, nlen;
        /* Every block starts on a byte boundary here: a stored block ends
         * byte-aligned, and the first follows the two header bytes. */
        assert_true(pos + 5 <= zn);
        final = z[pos] & 1;
        if (((z[pos] >> 1) & 3) != 0)
            fail_msg("block %zu has BTYPE %d, not stored", *nblocks, (z[pos] >> 1) & 3);
        len = z[pos + 1] | (unsigned)z[pos + 2] << 8;
        nlen = z[pos + 3] | (unsigned)z[pos + 4] << 8;
        assert_int_equal(len, ~nlen & 0xffffu);
        pos += 5;
        assert_true(pos + len <= zn);
        out = realloc(out, n + len + 1);
        assert_non_null(out);
        memcpy(out + n, z + pos, len);
        n += len;
        pos += len;
        ++*nblocks;
    }
    assert_int_equal(zn - pos, 4); /* the Adler-32, and nothing after it */
    assert_int_equal(be32(z + pos), ref_adler32(out, n));
    *out_n = n;
    return out;
}

/* Parses and checks the whole file; fails the test on any deviation. */
static void read_png(const char *path, png_image *img)
{
    static const unsigned char sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    size_t size, pos = 8, zn = 0, raw_n, row_bytes, y;
    unsigned char *file = read_file(path, &size), *z = NULL, *raw;
    int seen_ihdr = 0, seen_iend = 0, idat_done = 0, last_was_idat = 0;
    memset(img, 0, sizeof *img);
    assert_true(size >= 8);
    assert_memory_equal(file, sig, 8);
    while (!seen_iend) {
        uint32_t len;
        const unsigned char *type, *data;
        assert_true(pos + 12 <= size);
        len = be32(file + pos);
        assert_true(len <= size - pos - 12);
        type = file + pos + 4;
        data = type + 4;
        if (be32(data + len) != tu_crc32(0, type, 4 + (size_t)len))
            fail_msg("bad CRC on chunk %.4s at offset %zu", (const char *)type, pos);
        if (memcmp(type, "IHDR", 4) == 0) {
            assert_false(seen_ihdr);
            assert_int_equal(pos, 8); /* IHDR comes first */
            assert_int_equal(len, 13);
            img->width = be32(data);
            img->height = be32(data + 4);
            assert_int_equal(data[8], 8); /* bit depth */
            img->color_type = data[9];
            assert_true(img->color_type == 0 || img->color_type == 2);
            img->channels = img->color_type == 2 ? 3 : 1;
            assert_int_equal(data[10], 0);
            assert_int_equal(data[11], 0);
            assert_int_equal(data[12], 0);
            seen_ihdr = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            assert_true(seen_ihdr);
            assert_false(idat_done); /* IDAT chunks must be consecutive */
            z = realloc(z, zn + len + 1);
            assert_non_null(z);
            memcpy(z + zn, data, len);
            zn += len;
        } else if (memcmp(type, "IEND", 4) == 0) {
            assert_int_equal(len, 0);
            seen_iend = 1;
        } else {
            fail_msg("unexpected chunk %.4s", (const char *)type);
        }
        if (last_was_idat && memcmp(type, "IDAT", 4) != 0)
            idat_done = 1;
        last_was_idat = memcmp(type, "IDAT", 4) == 0;
        pos += 12 + (size_t)len;
    }
    assert_int_equal(pos, size); /* nothing after IEND */
    assert_true(zn > 0);
    free(file);

    raw = inflate_stored(z, zn, &raw_n, &img->stored_blocks);
    free(z);
    row_bytes = 1 + (size_t)img->width * img->channels;
    assert_int_equal(raw_n, (size_t)img->height * row_bytes);
    img->pixels = malloc(raw_n);
    assert_non_null(img->pixels);
    for (y = 0; y < img->height; y++) {
        if (raw[y * row_bytes] != 0)
            fail_msg("row %zu has filter type %d", y, raw[y * row_bytes]);
        memcpy(img->pixels + y * (row_bytes - 1), raw + y * row_bytes + 1, row_bytes - 1);
    }
    free(raw);
}

/* Compares pixel by pixel, naming the first difference. */
static void expect_pixels(const png_image *img, const unsigned char *want, size_t w, size_t h,
                          size_t channels)
{
    size_t i;
    assert_int_equal(img->width, w);
    assert_int_equal(img->height, h);
    assert_int_equal(img->channels, channels);
    for (i = 0; i < w * h * channels; i++)
        if (img->pixels[i] != want[i])
            fail_msg("pixel x=%zu y=%zu c=%zu: got %d, want %d", i / channels % w, i / channels / w,
                     i % channels, img->pixels[i], want[i]);
}

/* ---------------------------------------------------------------- fixture */

typedef struct tmp {
    char dir[64];
    char path[128];
} tmp;

static int setup_dir(void **state)
{
    tmp *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    if (tu_tmpdir_make(t->dir, sizeof t->dir, "test_png") != 0) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/grid.png", t->dir);
    *state = t;
    return 0;
}

/* Removes the directory and whatever a test left in it. */
static int teardown_dir(void **state)
{
    tmp *t = *state;
    tu_tmpdir_remove(t->dir);
    free(t);
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Fails with the library's message unless st is CVAE_OK. */
static void check_ok(cvae_status st, const char *msg)
{
    if (st != CVAE_OK)
        fail_msg("%s: %s", cvae_status_string(st), msg);
}

/* ------------------------------------------------------------------ tests */

/* Fails if grid placement, the grey border, the empty cell, clamping, NaN
 * handling or round-to-nearest is wrong, or if the file is not a valid PNG. */
static void test_grey_grid(void **state)
{
    enum { N = 5, H = 3, W = 4, COLS = 2, GW = COLS * (W + 2) + 2, GH = 3 * (H + 2) + 2 };
    /* (input, byte) pairs by hand; the rest of the pixels get k / 255. */
    static const struct {
        float v;
        unsigned char want;
    } special[] = {
        {-1.0f, 0},           {2.0f, 255},          {0.0f, 0},
        {1.0f, 255},          {0.49f / 255, 0},     {0.51f / 255, 1},
        {126.49f / 255, 126}, {126.51f / 255, 127}, {254.49f / 255, 254},
        {254.51f / 255, 255}, {-0.25f, 0},          {1e-30f, 0},
    };
    const size_t nspecial = sizeof special / sizeof special[0];
    tmp *t = *state;
    float images[N * H * W];
    unsigned char want[GH * GW], value[N * H * W];
    char msg[256] = "";
    png_image img;
    size_t i, n, y, x;

    for (i = 0; i < N * H * W; i++) {
        value[i] = (unsigned char)(4 * i + 10); /* distinct, never 128 */
        images[i] = (float)value[i] / 255.0f;
    }
    for (i = 0; i < nspecial; i++) { /* in images 1 and 2, off the first pixel */
        images[13 + 2 * i] = special[i].v;
        value[13 + 2 * i] = special[i].want;
    }
    images[7] = NAN;
    value[7] = 0;
    images[50] = INFINITY;
    value[50] = 255;
    images[51] = -INFINITY;
    value[51] = 0;

    memset(want, BORDER_GREY, sizeof want); /* border and the empty sixth cell */
    for (n = 0; n < N; n++)
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++)
                want[(2 + n / COLS * (H + 2) + y) * GW + 2 + n % COLS * (W + 2) + x] =
                    value[n * H * W + y * W + x];

    check_ok(cvae_png_write_grid(t->path, images, N, 1, H, W, COLS, msg, sizeof msg), msg);
    read_png(t->path, &img);
    assert_int_equal(img.color_type, 0);
    assert_int_equal(img.stored_blocks, 1);
    expect_pixels(&img, want, GW, GH, 1);
    free(img.pixels);
}

/* Fails if the planar input is not interleaved into RGB triples, if a
 * channel or a coordinate is swapped, or if the colour type is not 2. */
static void test_rgb_grid(void **state)
{
    enum { N = 3, C = 3, H = 2, W = 5, COLS = 2, GW = COLS * (W + 2) + 2, GH = 2 * (H + 2) + 2 };
    tmp *t = *state;
    float images[N * C * H * W];
    unsigned char want[GH * GW * C];
    png_image img;
    size_t n, c, y, x;

    memset(want, BORDER_GREY, sizeof want);
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++)
            for (y = 0; y < H; y++)
                for (x = 0; x < W; x++) {
                    unsigned k = (unsigned)(2 * (n * 30 + c * 10 + y * 5 + x) + 7);
                    size_t px = (2 + n / COLS * (H + 2) + y) * GW + 2 + n % COLS * (W + 2) + x;
                    images[((n * C + c) * H + y) * W + x] = (float)k / 255.0f;
                    want[px * C + c] = (unsigned char)k;
                }

    check_ok(cvae_png_write_grid(t->path, images, N, C, H, W, COLS, NULL, 0), "rgb");
    read_png(t->path, &img);
    assert_int_equal(img.color_type, 2);
    expect_pixels(&img, want, GW, GH, C);
    free(img.pixels);
}

/* Fails if columns > count is not reduced to count (one row, no empty cells). */
static void test_columns_clamped(void **state)
{
    tmp *t = *state;
    const float images[2 * 2 * 3] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f,
                                     0.7f, 0.8f, 0.9f, 1.0f, 0.0f, 0.25f};
    png_image img;
    check_ok(cvae_png_write_grid(t->path, images, 2, 1, 2, 3, 9, NULL, 0), "columns");
    read_png(t->path, &img);
    assert_int_equal(img.width, 2 * (3 + 2) + 2);
    assert_int_equal(img.height, 2 + 2 + 2);
    assert_int_equal(img.pixels[2 * 12 + 2], 26);         /* 0.1 */
    assert_int_equal(img.pixels[3 * 12 + 2 + 5 + 2], 64); /* 0.25, last of image 2 */
    free(img.pixels);
}

/* Fills n images of C x H x W with a pattern that depends on every index. */
static float *pattern(size_t n, size_t C, size_t H, size_t W)
{
    float *p = malloc(n * C * H * W * sizeof *p);
    size_t i, c, y, x;
    assert_non_null(p);
    for (i = 0; i < n; i++)
        for (c = 0; c < C; c++)
            for (y = 0; y < H; y++)
                for (x = 0; x < W; x++)
                    p[((i * C + c) * H + y) * W + x] =
                        (float)((i * 7 + c * 50 + y * 3 + x * 5) % 256) / 255.0f;
    return p;
}

/* Fails if data over 65535 bytes is split wrongly into stored blocks (a
 * block too long, a byte lost or repeated at a block edge, BFINAL on the
 * wrong block), or if large grids are placed wrongly. */
static void test_large_multi_block(void **state)
{
    /* raw bytes: 65535 exactly (one full block), 65792 (two), 303026 (five) */
    static const struct {
        size_t n, C, H, W, cols, blocks;
    } cases[] = {
        {1, 1, 251, 252, 1, 1},
        {1, 1, 252, 252, 1, 2},
        {8, 3, 100, 120, 4, 5},
    };
    tmp *t = *state;
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n = cases[k].n, C = cases[k].C, H = cases[k].H, W = cases[k].W;
        size_t cols = cases[k].cols, rows = (n + cols - 1) / cols;
        size_t gw = cols * (W + 2) + 2, gh = rows * (H + 2) + 2, i, c, y, x;
        float *images = pattern(n, C, H, W);
        unsigned char *want = malloc(gw * gh * C);
        char msg[256] = "";
        png_image img;
        assert_non_null(want);
        memset(want, BORDER_GREY, gw * gh * C);
        for (i = 0; i < n; i++)
            for (c = 0; c < C; c++)
                for (y = 0; y < H; y++)
                    for (x = 0; x < W; x++) {
                        size_t px = (2 + i / cols * (H + 2) + y) * gw + 2 + i % cols * (W + 2) + x;
                        want[px * C + c] = (unsigned char)((i * 7 + c * 50 + y * 3 + x * 5) % 256);
                    }
        check_ok(cvae_png_write_grid(t->path, images, (int)n, (int)C, (int)H, (int)W, (int)cols,
                                     msg, sizeof msg),
                 msg);
        read_png(t->path, &img);
        assert_int_equal(gh * (1 + gw * C), k == 0 ? 65535 : k == 1 ? 65792 : 303026);
        assert_int_equal(img.stored_blocks, cases[k].blocks);
        expect_pixels(&img, want, gw, gh, C);
        free(img.pixels);
        free(want);
        free(images);
    }
}

/* Fails if the library's CRC-32 or Adler-32 differs from the published check
 * values or from the references here, or if updating in pieces differs from
 * one call (including Adler-32 past its 5552-byte deferred modulo). */
static void test_checksums(void **state)
{
    static const char digits[] = "123456789";
    static const char wiki[] = "Wikipedia";
    unsigned char *buf = malloc(20000);
    size_t i, split;
    (void)state;
    assert_non_null(buf);
    assert_int_equal(cvi_crc32_update(0, digits, 9), 0xCBF43926u);
    assert_int_equal(tu_crc32(0, (const unsigned char *)digits, 9), 0xCBF43926u);
    assert_int_equal(cvi_adler32_update(1, wiki, 9), 0x11E60398u);
    assert_int_equal(ref_adler32((const unsigned char *)wiki, 9), 0x11E60398u);
    assert_int_equal(cvi_crc32_update(0, digits, 0), 0);
    assert_int_equal(cvi_adler32_update(1, digits, 0), 1);

    memset(buf, 0xff, 20000); /* the worst case for Adler's sums */
    assert_int_equal(cvi_adler32_update(1, buf, 20000), ref_adler32(buf, 20000));
    for (i = 0; i < 20000; i++)
        buf[i] = (unsigned char)(i * 131 + (i >> 7));
    assert_int_equal(cvi_crc32_update(0, buf, 20000), tu_crc32(0, buf, 20000));
    assert_int_equal(cvi_adler32_update(1, buf, 20000), ref_adler32(buf, 20000));
    for (split = 0; split <= 20000; split += 1237) {
        uint32_t crc =
            cvi_crc32_update(cvi_crc32_update(0, buf, split), buf + split, 20000 - split);
        uint32_t ad =
            cvi_adler32_update(cvi_adler32_update(1, buf, split), buf + split, 20000 - split);
        assert_int_equal(crc, cvi_crc32_update(0, buf, 20000));
        assert_int_equal(ad, cvi_adler32_update(1, buf, 20000));
    }
    free(buf);
}

/* Fails if the eight-bytes-a-step CRC differs from the bit-at-a-time
 * reference: random bytes (every table entry is read many times) from
 * every start offset modulo 8 and every length up to 40, then 64 KB, and
 * updates in pieces of every size up to 17. */
static void test_crc32_slices(void **state)
{
    enum { LONG = 65536 };
    unsigned char *buf = malloc(LONG);
    tu_rng r;
    size_t i, off, len, piece;
    (void)state;
    assert_non_null(buf);
    tu_rng_init(&r, 91);
    for (i = 0; i < LONG; i++)
        buf[i] = (unsigned char)(tu_rng_next(&r) >> 56);
    for (off = 0; off < 8; off++)
        for (len = 0; len <= 40; len++)
            assert_int_equal(cvi_crc32_update(0, buf + off, len), tu_crc32(0, buf + off, len));
    assert_int_equal(cvi_crc32_update(0, buf, LONG), tu_crc32(0, buf, LONG));
    assert_int_equal(cvi_crc32_update(0x12345678u, buf + 3, LONG - 3),
                     tu_crc32(0x12345678u, buf + 3, LONG - 3));
    for (piece = 1; piece <= 17; piece++) {
        uint32_t crc = 0;
        for (i = 0; i < 4096; i += piece)
            crc = cvi_crc32_update(crc, buf + i, 4096 - i < piece ? 4096 - i : piece);
        assert_int_equal(crc, tu_crc32(0, buf, 4096));
    }
    free(buf);
}

/* Calls with the given arguments; expects want, a non-empty message, and no
 * file created. */
static void expect_error(const char *path, const float *images, int count, int channels, int height,
                         int width, int columns, cvae_status want)
{
    char msg[256];
    memset(msg, 0, sizeof msg);
    assert_int_equal(
        cvae_png_write_grid(path, images, count, channels, height, width, columns, msg, sizeof msg),
        want);
    if (msg[0] == '\0')
        fail_msg("empty message for status %d", (int)want);
    /* errmsg NULL must be accepted and give the same status. */
    assert_int_equal(
        cvae_png_write_grid(path, images, count, channels, height, width, columns, NULL, 0), want);
    assert_int_equal(
        cvae_png_write_grid(path, images, count, channels, height, width, columns, NULL, 99), want);
    if (path)
        assert_int_equal(access(path, F_OK), -1);
}

/* Fails if a bad argument gives another status than its documented one,
 * reads the images before refusing sizes, or writes a file. */
static void test_bad_arguments(void **state)
{
    tmp *t = *state;
    const float px[4] = {0.0f, 0.5f, 1.0f, 0.25f};
    const char *p = t->path;
    expect_error(NULL, px, 1, 1, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, NULL, 1, 1, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 0, 1, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, -1, 1, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 0, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 2, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 4, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, -3, 1, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 1, 0, 1, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 1, 1, 0, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 1, 1, -5, 1, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 1, 1, 1, 0, CVAE_ERR_INVALID_ARG);
    expect_error(p, px, 1, 1, 1, 1, INT_MIN, CVAE_ERR_INVALID_ARG);
    /* Too large: px is far too small, so reading it would trip ASan. */
    expect_error(p, px, 1, 1, 1, INT_MAX, 1, CVAE_ERR_TOO_LARGE);       /* width > 2^31-1 */
    expect_error(p, px, 1, 1, INT_MAX, 1, 1, CVAE_ERR_TOO_LARGE);       /* height */
    expect_error(p, px, INT_MAX, 1, 1, 1, INT_MAX, CVAE_ERR_TOO_LARGE); /* columns */
    expect_error(p, px, INT_MAX, 1, 1, 1, 1, CVAE_ERR_TOO_LARGE);       /* rows */
    expect_error(p, px, 1, 1, 40000, 40000, 1, CVAE_ERR_TOO_LARGE);     /* 1.6 GB raw */
    expect_error(p, px, 4, 3, 16384, 16384, 2, CVAE_ERR_TOO_LARGE);
    expect_error(p, px, INT_MAX, 3, INT_MAX, INT_MAX, INT_MAX, CVAE_ERR_TOO_LARGE);
    assert_int_equal(tu_count_entries(t->dir), 0);
}

/* Fails if the message overruns a short errmsg buffer, is not terminated,
 * or is written on success. */
static void test_message_truncation(void **state)
{
    tmp *t = *state;
    const float px[1] = {0.5f};
    char full[256] = "", msg[256];
    size_t len;
    assert_int_equal(cvae_png_write_grid(t->path, px, 1, 2, 1, 1, 1, full, sizeof full),
                     CVAE_ERR_INVALID_ARG);
    len = strlen(full);
    assert_true(len > 8 && len < sizeof full - 1);
    /* errsize == len: one byte short, so the last character must go. */
    memset(msg, 'x', sizeof msg);
    assert_int_equal(cvae_png_write_grid(t->path, px, 1, 2, 1, 1, 1, msg, len),
                     CVAE_ERR_INVALID_ARG);
    assert_int_equal(strlen(msg), len - 1);
    assert_memory_equal(msg, full, len - 1);
    assert_int_equal(msg[len], 'x');
    memset(msg, 'x', sizeof msg);
    assert_int_equal(cvae_png_write_grid(t->path, px, 1, 2, 1, 1, 1, msg, 8), CVAE_ERR_INVALID_ARG);
    assert_int_equal(strlen(msg), 7);
    assert_int_equal(msg[8], 'x');
    memset(msg, 'x', sizeof msg);
    assert_int_equal(cvae_png_write_grid(t->path, px, 1, 2, 1, 1, 1, msg, 1), CVAE_ERR_INVALID_ARG);
    assert_int_equal(msg[0], '\0');
    assert_int_equal(msg[1], 'x');
    memset(msg, 'x', sizeof msg);
    assert_int_equal(cvae_png_write_grid(t->path, px, 1, 1, 1, 1, 1, msg, sizeof msg), CVAE_OK);
    assert_int_equal(msg[0], 'x');
}

/* Fails if writing into a missing directory is not CVAE_ERR_IO, or the
 * message does not name the file. */
static void test_missing_directory(void **state)
{
    tmp *t = *state;
    const float px[1] = {0.5f};
    char path[200], msg[256] = "";
    snprintf(path, sizeof path, "%s/no/such/dir/out.png", t->dir);
    assert_int_equal(cvae_png_write_grid(path, px, 1, 1, 1, 1, 1, msg, sizeof msg), CVAE_ERR_IO);
    if (!strstr(msg, path))
        fail_msg("message \"%s\" does not name %s", msg, path);
    assert_int_equal(cvae_png_write_grid(path, px, 1, 1, 1, 1, 1, NULL, 0), CVAE_ERR_IO);
    assert_int_equal(tu_count_entries(t->dir), 0);
}

/* Fails if a failed write damages the file already at the path, or leaves
 * a stray file behind. */
static void test_failed_write_keeps_old_file(void **state)
{
    tmp *t = *state;
    const float px[1] = {0.5f};
    char tmp_path[200], msg[256] = "";
    unsigned char *back;
    size_t n;
    write_text(t->path, "the old picture");
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", t->path);
    assert_int_equal(mkdir(tmp_path, 0700), 0); /* the temporary cannot be created */
    assert_int_equal(cvae_png_write_grid(t->path, px, 1, 1, 1, 1, 1, msg, sizeof msg), CVAE_ERR_IO);
    if (!strstr(msg, t->path))
        fail_msg("message \"%s\" does not name %s", msg, t->path);
    back = read_file(t->path, &n);
    assert_int_equal(n, strlen("the old picture"));
    assert_memory_equal(back, "the old picture", n);
    free(back);
    assert_int_equal(tu_count_entries(t->dir), 2);   /* the old file and our directory */
    assert_int_equal(tu_count_entries(tmp_path), 0); /* nothing written inside it */
    assert_int_equal(rmdir(tmp_path), 0);
}

/* Fails if a successful write does not replace the old file, or leaves its
 * temporary file behind. */
static void test_success_replaces_old_file(void **state)
{
    tmp *t = *state;
    const float px[2] = {0.0f, 1.0f};
    char tmp_path[200];
    png_image img;
    write_text(t->path, "an old file, longer than what replaces it? no matter");
    check_ok(cvae_png_write_grid(t->path, px, 2, 1, 1, 1, 1, NULL, 0), "replace");
    read_png(t->path, &img);
    assert_int_equal(img.width, 5);
    assert_int_equal(img.height, 8);
    assert_int_equal(img.pixels[2 * 5 + 2], 0);
    assert_int_equal(img.pixels[5 * 5 + 2], 255);
    assert_int_equal(img.pixels[0], BORDER_GREY);
    free(img.pixels);
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", t->path);
    errno = 0;
    assert_int_equal(access(tmp_path, F_OK), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(tu_count_entries(t->dir), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grey_grid, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rgb_grid, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_columns_clamped, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_large_multi_block, setup_dir, teardown_dir),
        cmocka_unit_test(test_checksums),
        cmocka_unit_test(test_crc32_slices),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_message_truncation, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_missing_directory, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_old_file, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_success_replaces_old_file, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
