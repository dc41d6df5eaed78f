/*
 * png.c - writes a grid of float images as an 8-bit PNG (grey or RGB) with
 * no compression library: the zlib stream holds only stored deflate blocks
 * (RFC 1950 and 1951), so the file is about as large as the raw pixels, and
 * the CRC-32 of each chunk and the Adler-32 of the stream come from crc32.c.
 *
 * The raw image (a filter byte 0, meaning "none", before every scanline) is
 * produced a few kilobytes at a time straight from the float images and
 * streamed through the atomic file writer as one IDAT chunk whose CRC and
 * Adler-32 are updated as it goes: writing allocates nothing. Left out: real
 * compression, filters other than none, palettes, alpha, 16-bit samples,
 * interlacing and ancillary chunks (gamma, text, time).
 *
 * Layout: images sit in `columns` cells per row, left to right then top to
 * bottom, separated and surrounded by a 2-pixel border of mid grey (128 in
 * every channel), which stays visible against both black and white digits;
 * unused cells of the last row are border colour too.
 */
#include "cvae_internal.h"

#include <string.h>

#define BORDER 2
#define BORDER_VALUE 128

/* PNG allows dimensions up to 2^31 - 1. The raw image is refused above 1 GiB:
 * a grid that large is a mistake, and the limit keeps every length below
 * what a chunk's 32-bit length field can hold. */
#define PNG_MAX_SIDE ((size_t)0x7fffffff)
#define PNG_MAX_RAW ((size_t)1 << 30)

/* A stored deflate block carries at most 65535 bytes (LEN is 16 bits). */
#define STORED_MAX 65535u

static const unsigned char png_signature[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};

/* The grid's geometry, all in size_t so no product is done in int. */
typedef struct grid {
    size_t count, channels, height, width, columns, rows;
    size_t grid_w, grid_h, row_bytes, raw_bytes;
} grid;

/* The file being written and the CRC of the chunk in progress. */
typedef struct png_out {
    cvi_afile af;
    uint32_t crc;
    char *err;
} png_out;

/* Round to nearest: v * 255 + 0.5 truncated, with v clamped to [0, 1].
 * NaN fails v > 0 and becomes 0. Double keeps k / 255 from rounding to k - 1. */
static unsigned char to_byte(float v)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    return (unsigned char)((double)v * 255.0 + 0.5);
}

/* Fills g from the arguments; CVAE_ERR_TOO_LARGE with a message when the
 * grid would not fit in a PNG or exceed PNG_MAX_RAW. Inputs are >= 1. */
static cvae_status grid_plan(grid *g, const char *path, int count, int channels, int height,
                             int width, int columns, char *err)
{
    size_t cell_w, cell_h, samples;
    g->count = (size_t)count;
    g->channels = (size_t)channels;
    g->height = (size_t)height;
    g->width = (size_t)width;
    g->columns = columns > count ? (size_t)count : (size_t)columns;
    g->rows = (g->count + g->columns - 1) / g->columns;
    /* grid_w = columns * (width + 2) + 2, grid_h = rows * (height + 2) + 2 */
    if (cvi_add_overflow(g->width, BORDER, &cell_w) ||
        cvi_mul_overflow(g->columns, cell_w, &g->grid_w) ||
        cvi_add_overflow(g->grid_w, BORDER, &g->grid_w) ||
        cvi_add_overflow(g->height, BORDER, &cell_h) ||
        cvi_mul_overflow(g->rows, cell_h, &g->grid_h) ||
        cvi_add_overflow(g->grid_h, BORDER, &g->grid_h) || g->grid_w > PNG_MAX_SIDE ||
        g->grid_h > PNG_MAX_SIDE) {
        cvi_set_error(err,
                      "%s: a grid of %d images of %dx%d in %zu columns is beyond PNG's "
                      "limit of 2^31-1 pixels per side",
                      path, count, height, width, g->columns);
        return CVAE_ERR_TOO_LARGE;
    }
    /* Every input sample lands in the raw image, so bounding raw_bytes also
     * bounds count * channels * height * width. */
    if (cvi_mul_overflow(g->grid_w, g->channels, &samples) ||
        cvi_add_overflow(samples, 1, &g->row_bytes) ||
        cvi_mul_overflow(g->grid_h, g->row_bytes, &g->raw_bytes) || g->raw_bytes > PNG_MAX_RAW) {
        cvi_set_error(err, "%s: a %zux%zu grid with %zu channels needs more than %zu bytes", path,
                      g->grid_w, g->grid_h, g->channels, PNG_MAX_RAW);
        return CVAE_ERR_TOO_LARGE;
    }
    return CVAE_OK;
}

/* Byte col of scanline y of the raw image: the filter byte 0 at col 0, then
 * grid_w pixels of channels samples, each border colour or a sample of the
 * image whose cell holds it. */
static unsigned char raw_byte(const grid *g, const float *images, size_t y, size_t col)
{
    size_t sample, x, cx, cy, ox, oy, c, n;
    if (col == 0)
        return 0;
    sample = col - 1;
    x = sample / g->channels;
    c = sample % g->channels;
    if (x < BORDER || y < BORDER)
        return BORDER_VALUE;
    cx = (x - BORDER) / (g->width + BORDER);
    ox = (x - BORDER) % (g->width + BORDER);
    cy = (y - BORDER) / (g->height + BORDER);
    oy = (y - BORDER) % (g->height + BORDER);
    n = cy * g->columns + cx;
    if (ox >= g->width || oy >= g->height || cx >= g->columns || n >= g->count)
        return BORDER_VALUE;
    return to_byte(images[((n * g->channels + c) * g->height + oy) * g->width + ox]);
}

/* Writes bytes inside a chunk's data (or type), folding them into its CRC. */
static cvae_status put(png_out *o, const void *data, size_t n)
{
    o->crc = cvi_crc32_update(o->crc, data, n);
    return cvi_afile_write(&o->af, data, n, o->err);
}

/* The length (outside the CRC) and the type, which starts the CRC. */
static cvae_status chunk_begin(png_out *o, const char *type, size_t length)
{
    unsigned char len[4];
    cvae_status st;
    cvi_put_u32be(len, (uint32_t)length);
    st = cvi_afile_write(&o->af, len, 4, o->err);
    o->crc = 0;
    return st != CVAE_OK ? st : put(o, type, 4);
}

static cvae_status chunk_end(png_out *o)
{
    unsigned char crc[4];
    cvi_put_u32be(crc, o->crc);
    return cvi_afile_write(&o->af, crc, 4, o->err);
}

static cvae_status write_ihdr(png_out *o, const grid *g)
{
    unsigned char d[13];
    cvae_status st;
    cvi_put_u32be(d, (uint32_t)g->grid_w);
    cvi_put_u32be(d + 4, (uint32_t)g->grid_h);
    d[8] = 8;                        /* bit depth */
    d[9] = g->channels == 3 ? 2 : 0; /* colour type: truecolour or greyscale */
    d[10] = 0;                       /* compression: deflate */
    d[11] = 0;                       /* filter method: adaptive, five types */
    d[12] = 0;                       /* no interlace */
    if ((st = chunk_begin(o, "IHDR", sizeof d)) != CVAE_OK || (st = put(o, d, sizeof d)) != CVAE_OK)
        return st;
    return chunk_end(o);
}

/* One IDAT holding the whole zlib stream: header, stored blocks, Adler-32.
 * The raw bytes are made piece by piece in buf, at position (y, col). */
static cvae_status write_idat(png_out *o, const grid *g, const float *images)
{
    unsigned char buf[4096];
    size_t raw_bytes = g->raw_bytes, y = 0, col = 0;
    uint32_t adler_sum = 1;
    /* CMF 0x78: deflate with a 32 KiB window; FLG 0x01 makes CMF*256+FLG a
     * multiple of 31, with no preset dictionary and "fastest" level. */
    static const unsigned char zlib_header[2] = {0x78, 0x01};
    size_t nblocks = (raw_bytes + STORED_MAX - 1) / STORED_MAX, done = 0;
    unsigned char adler[4];
    cvae_status st;
    if ((st = chunk_begin(o, "IDAT", 2 + nblocks * 5 + raw_bytes + 4)) != CVAE_OK ||
        (st = put(o, zlib_header, 2)) != CVAE_OK)
        return st;
    while (done < raw_bytes) {
        size_t len = raw_bytes - done < STORED_MAX ? raw_bytes - done : STORED_MAX;
        /* Byte 0: BFINAL in bit 0, BTYPE 00 (stored) in bits 1-2, the rest
         * padding to the byte boundary; then LEN and NLEN little-endian. */
        unsigned char h[5];
        h[0] = done + len == raw_bytes ? 1 : 0;
        h[1] = (unsigned char)(len & 0xff);
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)(~len & 0xff);
        h[4] = (unsigned char)((~len >> 8) & 0xff);
        if ((st = put(o, h, 5)) != CVAE_OK)
            return st;
        done += len;
        while (len > 0) {
            size_t k, piece = len < sizeof buf ? len : sizeof buf;
            for (k = 0; k < piece; k++) {
                buf[k] = raw_byte(g, images, y, col);
                if (++col == g->row_bytes) {
                    col = 0;
                    y++;
                }
            }
            adler_sum = cvi_adler32_update(adler_sum, buf, piece);
            if ((st = put(o, buf, piece)) != CVAE_OK)
                return st;
            len -= piece;
        }
    }
    cvi_put_u32be(adler, adler_sum);
    if ((st = put(o, adler, 4)) != CVAE_OK)
        return st;
    return chunk_end(o);
}

static cvae_status write_png(png_out *o, const grid *g, const float *images)
{
    cvae_status st;
    if ((st = cvi_afile_write(&o->af, png_signature, sizeof png_signature, o->err)) != CVAE_OK ||
        (st = write_ihdr(o, g)) != CVAE_OK || (st = write_idat(o, g, images)) != CVAE_OK ||
        (st = chunk_begin(o, "IEND", 0)) != CVAE_OK)
        return st;
    return chunk_end(o);
}

/* Arguments that are not sizes: everything but CVAE_ERR_TOO_LARGE. */
static cvae_status check_args(const char *path, const float *images, int count, int channels,
                              int height, int width, int columns, char *err)
{
    const char *name = path ? path : "png";
    if (!path || !images) {
        cvi_set_error(err, "%s: %s is NULL", name, path ? "images" : "path");
        return CVAE_ERR_INVALID_ARG;
    }
    if (count < 1 || height < 1 || width < 1 || columns < 1) {
        cvi_set_error(err, "%s: count %d, height %d, width %d and columns %d must all be >= 1",
                      name, count, height, width, columns);
        return CVAE_ERR_INVALID_ARG;
    }
    if (channels != 1 && channels != 3) {
        cvi_set_error(err, "%s: %d channels; only 1 (grey) or 3 (RGB) can be written", name,
                      channels);
        return CVAE_ERR_INVALID_ARG;
    }
    return CVAE_OK;
}

/* The caller's buffer may be shorter than ours: truncate, always terminate. */
static void copy_message(char *errmsg, size_t errsize, const char *err)
{
    size_t n;
    if (!errmsg || errsize == 0)
        return;
    n = strlen(err);
    if (n >= errsize)
        n = errsize - 1;
    memcpy(errmsg, err, n);
    errmsg[n] = '\0';
}

CVAE_API cvae_status cvae_png_write_grid(const char *path, const float *images, int count,
                                         int channels, int height, int width, int columns,
                                         char *errmsg, size_t errsize)
{
    char err[CVI_ERRMSG_SIZE] = "";
    png_out o;
    grid g;
    cvae_status st;
    memset(&o, 0, sizeof o);
    o.err = err;
    st = check_args(path, images, count, channels, height, width, columns, err);
    if (st == CVAE_OK)
        st = grid_plan(&g, path, count, channels, height, width, columns, err);
    if (st != CVAE_OK)
        goto done;
    if ((st = cvi_afile_open(&o.af, path, err)) != CVAE_OK)
        goto done;
    st = write_png(&o, &g, images);
    /* Any failure removes the temporary file and leaves path as it was. */
    if (st == CVAE_OK)
        st = cvi_afile_commit(&o.af, err);
    else
        cvi_afile_abort(&o.af);
done:
    if (st != CVAE_OK)
        copy_message(errmsg, errsize, err);
    return st;
}
