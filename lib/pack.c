/*
 * pack.c - the byte code a dataset keeps its images in when it is smaller
 * than the raw pixels: runs of zeros and runs of literal bytes.
 *
 * Digits and clothes are mostly background: an MNIST digit is about 80 %
 * zero bytes, and packed it takes about a quarter of its 784 bytes. Images with
 * little background (photographs) do not shrink and stay raw (dataset.c
 * decides). Each image is coded on its own, so any image can be read
 * without the ones before it.
 *
 * A code byte t < 128 is followed by t + 1 literal bytes; t >= 128 stands
 * for t - 127 zeros. A run is at most 128 long; a literal run absorbs a
 * lone zero between non-zero bytes (one byte either way, one code fewer).
 */
#include "cvae_internal.h"

#include <string.h>

#define RUN_MAX 128u

/* Length of the literal run starting at px[i] (px[i] != 0): up to RUN_MAX
 * bytes, ending before two zeros in a row or a zero at the end. */
static size_t literal_run(const uint8_t *px, size_t i, size_t n)
{
    size_t j = i;
    while (j < n && j - i < RUN_MAX && !(px[j] == 0 && (j + 1 == n || px[j + 1] == 0)))
        j++;
    return j - i;
}

static size_t zero_run(const uint8_t *px, size_t i, size_t n)
{
    size_t j = i;
    while (j < n && j - i < RUN_MAX && px[j] == 0)
        j++;
    return j - i;
}

size_t cvi_pack_image(const uint8_t *px, size_t n, uint8_t *out)
{
    size_t i = 0, bytes = 0, r;
    while (i < n) {
        if (px[i] == 0) {
            r = zero_run(px, i, n);
            if (out)
                out[bytes] = (uint8_t)(127u + r);
            bytes++;
        } else {
            r = literal_run(px, i, n);
            if (out) {
                out[bytes] = (uint8_t)(r - 1u);
                memcpy(out + bytes + 1, px + i, r);
            }
            bytes += 1 + r;
        }
        i += r;
    }
    return bytes;
}

/* x / 255.0f for every byte x, folded by the compiler: the correctly
 * rounded quotient, as the raw path's division gives (dataset.c). */
#define Q1(x) ((float)(x) / 255.0f)
#define Q4(x) Q1(x), Q1((x) + 1), Q1((x) + 2), Q1((x) + 3)
#define Q16(x) Q4(x), Q4((x) + 4), Q4((x) + 8), Q4((x) + 12)
#define Q64(x) Q16(x), Q16((x) + 16), Q16((x) + 32), Q16((x) + 48)
static const float byte_value[256] = {Q64(0), Q64(64), Q64(128), Q64(192)};

/* A dataset only reads codes it wrote, but the reader still stops at n
 * pixels whatever a code byte says: it never writes past its image. */
void cvi_unpack_float(const uint8_t *code, size_t n, float *out)
{
    size_t i = 0, k, r;
    /* Zeros first, in one sweep: a zero run is then only a skip. */
    memset(out, 0, n * sizeof *out);
    while (i < n) {
        uint8_t t = *code++;
        if (t >= 128u) {
            i += t - 127u;
            continue;
        }
        r = (size_t)t + 1u;
        if (r > n - i)
            r = n - i;
        for (k = 0; k < r; k++)
            out[i + k] = byte_value[code[k]];
        code += (size_t)t + 1u;
        i += r;
    }
}
