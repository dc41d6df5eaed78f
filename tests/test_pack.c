/*
 * test_pack.c - the packed form a dataset keeps mostly-blank images in
 * (lib/pack.c, lib/dataset.c): the code checked against an independent
 * reader written here from the documented format, exact floats back for
 * every kind of run, the promised worst case, and datasets that pack
 * (measured by what their allocator holds) or stay raw, whose batches,
 * shuffled batches, stored ranges and splits give the raw pixels' floats
 * bit for bit. Packing that finds no memory leaves the pixels raw.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cvae.h"
#include "cvae_internal.h"
#include "testutil.h"

/* ------------------------------------------------------------ the code */

/* The format as documented in pack.c, read independently: code byte t <
 * 128 then t + 1 literals, t >= 128 for t - 127 zeros. Returns the bytes
 * consumed; fails the test on a code that overruns n or len. */
static size_t ref_unpack(const uint8_t *code, size_t len, size_t n, uint8_t *out)
{
    size_t used = 0, i = 0, k;
    while (i < n) {
        unsigned t;
        assert_true(used < len);
        t = code[used++];
        if (t >= 128) {
            assert_true(i + (t - 127) <= n);
            for (k = 0; k < t - 127; k++)
                out[i++] = 0;
        } else {
            assert_true(i + t + 1 <= n);
            assert_true(used + t + 1 <= len);
            for (k = 0; k <= t; k++)
                out[i++] = code[used++];
        }
    }
    return used;
}

/* Packs px, checks the code against the reference reader, the bound, and
 * the floats against x / 255.0f; returns the code's length. */
static size_t check_image(const uint8_t *px, size_t n)
{
    size_t bound = n + (n + 127) / 128, len, len2, i;
    uint8_t *code = malloc(bound + 16), *back = malloc(n);
    float *out = malloc((n + 1) * sizeof *out), *want = malloc(n * sizeof *want);
    assert_non_null(code);
    assert_non_null(back);
    assert_non_null(out);
    assert_non_null(want);
    memset(code, 0xA5, bound + 16);
    len = cvi_pack_image(px, n, NULL);
    len2 = cvi_pack_image(px, n, code);
    assert_int_equal(len, len2);
    assert_true(len <= bound);
    for (i = len; i < bound + 16; i++)
        assert_int_equal(code[i], 0xA5); /* nothing written past the code */
    assert_int_equal(ref_unpack(code, len, n, back), len);
    assert_memory_equal(back, px, n);
    out[n] = -7.0f;
    cvi_unpack_float(code, n, out);
    for (i = 0; i < n; i++)
        want[i] = (float)px[i] / 255.0f;
    assert_memory_equal(out, want, n * sizeof *out);
    assert_true(out[n] == -7.0f);
    free(code);
    free(back);
    free(out);
    free(want);
    return len;
}

static void test_code_runs(void **state)
{
    static const size_t sizes[] = {1, 2, 3, 127, 128, 129, 255, 256, 257, 300, 784, 3072};
    size_t s, i, r;
    uint8_t *px = malloc(3072);
    (void)state;
    assert_non_null(px);
    for (s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        memset(px, 0, n);
        /* All zero: one code byte per 128 zeros. */
        assert_int_equal(check_image(px, n), (n + 127) / 128);
        /* No zero: the promised worst case, exactly. */
        for (i = 0; i < n; i++)
            px[i] = (uint8_t)(1 + i % 255);
        assert_int_equal(check_image(px, n), n + (n + 127) / 128);
        /* Alternating, and zeros at either end. */
        for (i = 0; i < n; i++)
            px[i] = i % 2 ? 0 : 200;
        check_image(px, n);
        for (i = 0; i < n; i++)
            px[i] = i % 2 ? 255 : 0;
        check_image(px, n);
        /* Runs of every length from 1 to 300 of zeros, then of literals. */
        for (r = 1; r <= 300 && r < n; r += 7) {
            for (i = 0; i < n; i++)
                px[i] = (i / r) % 2 ? 0 : (uint8_t)(17 + i % 200);
            check_image(px, n);
            for (i = 0; i < n; i++)
                px[i] = (i / r) % 2 ? (uint8_t)(3 + i % 250) : 0;
            check_image(px, n);
        }
    }
    free(px);
}

static void test_code_lone_zero(void **state)
{
    /* A zero between literals stays in the literal run: 1 code byte + 3. */
    static const uint8_t lone[3] = {5, 0, 5};
    /* Two zeros end it: literal, zeros, literal = 2 + 1 + 2. */
    static const uint8_t pair[4] = {5, 0, 0, 5};
    static const uint8_t tail[2] = {9, 0};
    uint8_t code[8];
    (void)state;
    assert_int_equal(check_image(lone, 3), 4);
    cvi_pack_image(lone, 3, code);
    assert_int_equal(code[0], 2);
    assert_int_equal(check_image(pair, 4), 5);
    cvi_pack_image(pair, 4, code);
    assert_int_equal(code[0], 0);
    assert_int_equal(code[2], 129);
    assert_int_equal(check_image(tail, 2), 3);
}

static void test_code_random(void **state)
{
    uint64_t s = 0x5eed;
    uint8_t px[784];
    int rep;
    size_t i;
    (void)state;
    for (rep = 0; rep < 400; rep++) {
        unsigned zero_pct = (unsigned)(rep % 11) * 10;
        for (i = 0; i < sizeof px; i++)
            px[i] = tu_next_u64(&s) % 100 < zero_pct ? 0 : (uint8_t)(tu_next_u64(&s) % 256);
        check_image(px, 1 + (size_t)(tu_next_u64(&s) % sizeof px));
    }
}

/* ------------------------------------------------------------ datasets */

/* An allocator that knows how many bytes it holds, and can fail its
 * fail_at-th call. */
typedef struct held {
    size_t bytes, calls, fail_at;
} held;

#define HEAD 16

static void *held_alloc(void *user, size_t size)
{
    held *h = user;
    unsigned char *p;
    if (++h->calls == h->fail_at || size > SIZE_MAX - HEAD)
        return NULL;
    p = malloc(size + HEAD);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    h->bytes += size;
    return p + HEAD;
}

static void held_free(void *user, void *ptr)
{
    held *h = user;
    size_t size;
    if (!ptr)
        return;
    memcpy(&size, (unsigned char *)ptr - HEAD, sizeof size);
    h->bytes -= size;
    free((unsigned char *)ptr - HEAD);
}

#define SIDE 28
#define IMAGE (SIDE * SIDE)

/* count digit-like images: a blank background with a blob of ink, and the
 * image's index in its first two pixels (never 0, so that any batch says
 * which stored image it is). */
static uint8_t *blank_images(size_t count, uint64_t seed)
{
    uint8_t *px = calloc(count, IMAGE);
    size_t k, y, x;
    assert_non_null(px);
    for (k = 0; k < count; k++) {
        uint8_t *im = px + k * IMAGE;
        size_t y0 = 4 + tu_next_u64(&seed) % 8, x0 = 4 + tu_next_u64(&seed) % 8;
        size_t hh = 6 + tu_next_u64(&seed) % 10, ww = 3 + tu_next_u64(&seed) % 10;
        for (y = y0; y < y0 + hh; y++)
            for (x = x0; x < x0 + ww; x++)
                im[y * SIDE + x] = tu_next_u64(&seed) % 7 == 0 ? 0 : (uint8_t)(tu_next_u64(&seed) % 256);
        im[0] = (uint8_t)(1 + k % 255);
        im[1] = (uint8_t)(1 + k / 255);
    }
    return px;
}

static size_t image_index(const float *f)
{
    int lo = (int)(f[0] * 255.0f + 0.5f), hi = (int)(f[1] * 255.0f + 0.5f);
    return (size_t)(hi - 1) * 255 + (size_t)(lo - 1);
}

/* Every image of the batch (n images) is stored image image_index(...) of
 * px, converted exactly; marks the indices seen. */
static void check_batch(const float *batch, size_t n, const uint8_t *px, size_t count,
                        unsigned char *seen)
{
    float want[IMAGE];
    size_t i, j;
    for (i = 0; i < n; i++) {
        size_t k = image_index(batch + i * IMAGE);
        assert_true(k < count);
        for (j = 0; j < IMAGE; j++)
            want[j] = (float)px[k * IMAGE + j] / 255.0f;
        assert_memory_equal(batch + i * IMAGE, want, sizeof want);
        if (seen) {
            assert_int_equal(seen[k], 0);
            seen[k] = 1;
        }
    }
}

/* Every image of ds, in its current order, in batches of 37. */
static void check_all(cvae_dataset *ds, const uint8_t *px, size_t count)
{
    size_t n = (size_t)cvae_dataset_count(ds), first;
    float *batch = malloc(37 * IMAGE * sizeof *batch);
    unsigned char *seen = calloc(count, 1);
    int labels[37];
    assert_non_null(batch);
    assert_non_null(seen);
    for (first = 0; first < n; first += 37) {
        int b = (int)(n - first < 37 ? n - first : 37), i;
        TU_CHECK_DATASET(cvae_dataset_batch(ds, (int)first, b, batch, labels), ds);
        check_batch(batch, (size_t)b, px, count, seen);
        for (i = 0; i < b; i++)
            assert_int_equal(labels[i], (int)(image_index(batch + (size_t)i * IMAGE) % 10));
    }
    free(batch);
    free(seen);
}

static uint8_t *digit_labels(size_t count)
{
    uint8_t *lab = malloc(count);
    size_t k;
    assert_non_null(lab);
    for (k = 0; k < count; k++)
        lab[k] = (uint8_t)(k % 10);
    return lab;
}

static void test_blank_images_pack(void **state)
{
    enum { COUNT = 600 };
    held h = {0, 0, 0};
    cvae_allocator a = {held_alloc, held_free, &h};
    uint8_t *px = blank_images(COUNT, 11), *lab = digit_labels(COUNT);
    float *batch = malloc(50 * IMAGE * sizeof *batch);
    cvae_dataset *ds = NULL;
    size_t empty;
    (void)state;
    assert_non_null(batch);
    TU_CHECK_DATASET(cvae_dataset_create_with(&ds, &a), ds);
    empty = h.bytes;
    TU_CHECK_DATASET(cvae_dataset_set_u8(ds, COUNT, 1, SIDE, SIDE, px, lab), ds);
    /* Packed: the pixels take less than half their raw size (labels and
     * order count too). */
    assert_true(h.bytes - empty < (size_t)COUNT * IMAGE / 2);
    check_all(ds, px, COUNT);
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 99), ds);
    check_all(ds, px, COUNT);
    /* Stored order, whatever the shuffle. */
    cvi_dataset_batch_stored(ds, 123, 50, batch);
    check_batch(batch, 50, px, COUNT, NULL);
    assert_int_equal(image_index(batch), 123);
    assert_int_equal(image_index(batch + 49 * IMAGE), 172);
    cvae_dataset_destroy(ds);
    assert_int_equal(h.bytes, 0);
    free(px);
    free(lab);
    free(batch);
}

static void test_packed_split(void **state)
{
    enum { COUNT = 500, VAL = 130 };
    held h = {0, 0, 0};
    cvae_allocator a = {held_alloc, held_free, &h};
    uint8_t *px = blank_images(COUNT, 12), *lab = digit_labels(COUNT);
    unsigned char *seen = calloc(COUNT, 1);
    float *batch = malloc(COUNT * IMAGE * sizeof *batch);
    cvae_dataset *ds = NULL, *tr = NULL, *va = NULL;
    size_t before;
    int pass;
    (void)state;
    assert_non_null(seen);
    assert_non_null(batch);
    TU_CHECK_DATASET(cvae_dataset_create_with(&ds, &a), ds);
    TU_CHECK_DATASET(cvae_dataset_set_u8(ds, COUNT, 1, SIDE, SIDE, px, lab), ds);
    before = h.bytes;
    TU_CHECK_DATASET(cvae_dataset_split(ds, VAL, 5, &tr, &va), ds);
    /* The halves are packed too: together about what the whole holds. */
    assert_true(h.bytes - before < before + 1024);
    assert_int_equal(cvae_dataset_count(tr), COUNT - VAL);
    assert_int_equal(cvae_dataset_count(va), VAL);
    check_all(tr, px, COUNT);
    check_all(va, px, COUNT);
    /* A disjoint union of the whole, each half in stored (ascending) order. */
    for (pass = 0; pass < 2; pass++) {
        cvae_dataset *d = pass ? va : tr;
        size_t n = (size_t)cvae_dataset_count(d), i;
        cvi_dataset_batch_stored(d, 0, n, batch);
        check_batch(batch, n, px, COUNT, seen);
        for (i = 1; i < n; i++)
            assert_true(image_index(batch + i * IMAGE) > image_index(batch + (i - 1) * IMAGE));
    }
    for (pass = 0; pass < COUNT; pass++)
        assert_int_equal(seen[pass], 1);
    cvae_dataset_destroy(tr);
    cvae_dataset_destroy(va);
    cvae_dataset_destroy(ds);
    assert_int_equal(h.bytes, 0);
    free(px);
    free(lab);
    free(seen);
    free(batch);
}

static void test_dense_images_stay_raw(void **state)
{
    enum { COUNT = 200 };
    held h = {0, 0, 0};
    cvae_allocator a = {held_alloc, held_free, &h};
    uint8_t *px = blank_images(COUNT, 13), *lab = digit_labels(COUNT);
    cvae_dataset *ds = NULL;
    uint64_t s = 77;
    size_t i, empty;
    (void)state;
    /* Noise with few zeros: packing would not save an eighth. */
    for (i = 0; i < (size_t)COUNT * IMAGE; i++)
        if (i % IMAGE >= 2)
            px[i] = (uint8_t)(tu_next_u64(&s) % 256);
    TU_CHECK_DATASET(cvae_dataset_create_with(&ds, &a), ds);
    empty = h.bytes;
    TU_CHECK_DATASET(cvae_dataset_set_u8(ds, COUNT, 1, SIDE, SIDE, px, lab), ds);
    assert_true(h.bytes - empty >= (size_t)COUNT * IMAGE);
    check_all(ds, px, COUNT);
    TU_CHECK_DATASET(cvae_dataset_shuffle(ds, 3), ds);
    check_all(ds, px, COUNT);
    cvae_dataset_destroy(ds);
    free(px);
    free(lab);
}

/* Failing each allocation in turn: the fill either fails with NOMEM or
 * succeeds with the right images, packed or, when the packing found no
 * memory, raw. */
static void test_pack_without_memory(void **state)
{
    enum { COUNT = 100 };
    uint8_t *px = blank_images(COUNT, 14), *lab = digit_labels(COUNT);
    size_t fail_at;
    int raw_seen = 0, packed_seen = 0;
    (void)state;
    for (fail_at = 1;; fail_at++) {
        held h = {0, 0, 0};
        cvae_allocator a = {held_alloc, held_free, &h};
        cvae_dataset *ds = NULL;
        cvae_status st;
        size_t empty;
        TU_CHECK_DATASET(cvae_dataset_create_with(&ds, &a), ds);
        empty = h.bytes;
        h.fail_at = h.calls + fail_at;
        st = cvae_dataset_set_u8(ds, COUNT, 1, SIDE, SIDE, px, lab);
        if (st == CVAE_OK) {
            check_all(ds, px, COUNT);
            if (h.bytes - empty >= (size_t)COUNT * IMAGE)
                raw_seen = 1;
            else
                packed_seen = 1;
        } else {
            assert_int_equal(st, CVAE_ERR_NOMEM);
            assert_int_equal(cvae_dataset_count(ds), 0);
        }
        cvae_dataset_destroy(ds);
        assert_int_equal(h.bytes, 0);
        if (h.calls < h.fail_at) /* no call failed: every point was tried */
            break;
    }
    assert_true(raw_seen);
    assert_true(packed_seen);
    free(px);
    free(lab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_runs),
        cmocka_unit_test(test_code_lone_zero),
        cmocka_unit_test(test_code_random),
        cmocka_unit_test(test_blank_images_pack),
        cmocka_unit_test(test_packed_split),
        cmocka_unit_test(test_dense_images_stay_raw),
        cmocka_unit_test(test_pack_without_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
