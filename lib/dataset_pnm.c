/*
 * dataset_pnm.c - binary netpbm images, one per file: PGM "P5" (grey) and
 * PPM "P6" (RGB), 8-bit. The header is the magic, then width, height and
 * maxval as ASCII decimals separated by whitespace, where a "#" starts a
 * comment running to the end of the line; exactly one whitespace character
 * ends it, then the raster: rows top to bottom, a P6 pixel's R, G, B
 * together. The dataset is channel-planar, so P6 rasters are de-interleaved.
 *
 * Two passes: the first reads every header and checks kind, size and the
 * file's length before anything is allocated; the second reads the rasters.
 */
#include "cvae_internal.h"

#include <errno.h>
#include <string.h>

#define PNM_MAX_SIDE 65535u
#define PNM_MAX_DIGITS 10 /* more digits than any accepted value has */

typedef struct pnm_header {
    size_t channels, height, width;
    unsigned maxval;
    long raster_offset;
} pnm_header;

static int is_space(int ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Skips whitespace and comments, then reads one decimal number; at most
 * PNM_MAX_DIGITS digits (so no overflow), then one character that must be
 * whitespace or, except after the last field, a comment's "#" (put back).
 * After the last field (maxval) that one whitespace character ends the
 * header. what names the field. */
static cvae_status read_number(FILE *f, unsigned long *value, int last, const char *path,
                               const char *what, char *err)
{
    int ch, digits = 0;
    unsigned long v = 0;
    for (;;) {
        ch = getc(f);
        if (ch == '#') {
            while (ch != EOF && ch != '\n' && ch != '\r')
                ch = getc(f);
        }
        if (ch == EOF || !is_space(ch))
            break;
    }
    while (ch >= '0' && ch <= '9') {
        if (++digits > PNM_MAX_DIGITS) {
            /* A side that long is too large; a maxval that long is not 8-bit. */
            cvi_set_error(err, "%s: the %s has more than %d digits", path, what, PNM_MAX_DIGITS);
            return last ? CVAE_ERR_FORMAT : CVAE_ERR_TOO_LARGE;
        }
        v = v * 10 + (unsigned long)(ch - '0');
        ch = getc(f);
    }
    if (ferror(f)) {
        cvi_set_error(err, "%s: read failed: %s", path, errno ? strerror(errno) : "read error");
        return CVAE_ERR_IO;
    }
    if (digits == 0 || (ch != '#' && !is_space(ch)) || (last && ch == '#')) {
        if (ch == EOF)
            cvi_set_error(err, "%s: the header ends before the %s", path, what);
        else if (digits > 0 && ch == '#')
            cvi_set_error(err, "%s: a comment right after maxval, where the raster starts", path);
        else
            cvi_set_error(err, "%s: bad header: the %s is not a decimal number", path, what);
        return CVAE_ERR_FORMAT;
    }
    if (ch == '#')
        ungetc(ch, f);
    *value = v;
    return CVAE_OK;
}

/* Parses and checks the header of an open file and its length: the raster
 * must fill the rest of the file exactly. */
static cvae_status read_header(FILE *f, pnm_header *hd, const char *path, char *err)
{
    unsigned char magic[2];
    unsigned long width, height, maxval;
    long len;
    int ch;
    size_t raster;
    cvae_status st;
    errno = 0;
    if ((st = cvi_read_exact(f, magic, 2, path, "header", err)) != CVAE_OK)
        return st;
    if (magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6')) {
        if (magic[0] == 'P' && magic[1] >= '1' && magic[1] <= '4')
            cvi_set_error(err,
                          "%s: netpbm \"P%c\" (ASCII or bitmap) is not supported: only binary "
                          "P5 (PGM) and P6 (PPM)",
                          path, magic[1]);
        else
            cvi_set_error(err, "%s: not a binary PGM or PPM file (magic 0x%02x%02x, expected "
                          "\"P5\" or \"P6\")", path, magic[0], magic[1]);
        return CVAE_ERR_FORMAT;
    }
    hd->channels = magic[1] == '5' ? 1 : 3;
    /* Whitespace or a comment must follow the magic ("P54 3" is not a P5). */
    ch = getc(f);
    if (ch == '#')
        ungetc(ch, f);
    else if (!is_space(ch)) {
        cvi_set_error(err, "%s: bad header: no whitespace after the magic \"P%c\"", path,
                      magic[1]);
        return CVAE_ERR_FORMAT;
    }
    if ((st = read_number(f, &width, 0, path, "width", err)) != CVAE_OK ||
        (st = read_number(f, &height, 0, path, "height", err)) != CVAE_OK ||
        (st = read_number(f, &maxval, 1, path, "maxval", err)) != CVAE_OK)
        return st;
    if (width == 0 || height == 0) {
        cvi_set_error(err, "%s: %lux%lu image: every side must be >= 1", path, width, height);
        return CVAE_ERR_FORMAT;
    }
    if (width > PNM_MAX_SIDE || height > PNM_MAX_SIDE) {
        cvi_set_error(err, "%s: %lux%lu image: a side exceeds %u", path, width, height,
                      PNM_MAX_SIDE);
        return CVAE_ERR_TOO_LARGE;
    }
    if (maxval == 0 || maxval > 255) {
        cvi_set_error(err, "%s: maxval %lu: only 8-bit images (maxval 1..255) are supported",
                      path, maxval);
        return CVAE_ERR_FORMAT;
    }
    hd->width = width;
    hd->height = height;
    hd->maxval = (unsigned)maxval;
    raster = hd->channels * hd->height * hd->width; /* < 2^34: fits */
    errno = 0;
    if ((hd->raster_offset = ftell(f)) < 0 || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, hd->raster_offset, SEEK_SET) != 0) {
        cvi_set_error(err, "%s: cannot find the file length: %s", path,
                      errno ? strerror(errno) : "seek failed");
        return CVAE_ERR_IO;
    }
    if ((unsigned long)(len - hd->raster_offset) < raster) {
        cvi_set_error(err, "%s: truncated: a %zux%zu %s raster needs %zu bytes, the file has %ld",
                      path, hd->width, hd->height, hd->channels == 1 ? "grey" : "RGB", raster,
                      len - hd->raster_offset);
        return CVAE_ERR_FORMAT;
    }
    if ((unsigned long)(len - hd->raster_offset) > raster) {
        cvi_set_error(err, "%s: %lu bytes after the raster (one image per file)", path,
                      (unsigned long)(len - hd->raster_offset) - (unsigned long)raster);
        return CVAE_ERR_FORMAT;
    }
    return CVAE_OK;
}

/* Opens path and reads its header; *f is left open on success. */
static cvae_status open_header(const cvae_allocator *a, const char *path, pnm_header *hd, FILE **f,
                               char *err)
{
    cvae_status st;
    errno = 0;
    *f = fopen(path, "rb");
    if (!*f)
        return cvi_open_error(a, path, errno, err);
    st = read_header(*f, hd, path, err);
    if (st != CVAE_OK) {
        fclose(*f);
        *f = NULL;
    }
    return st;
}

static const char *kind_name(size_t channels) { return channels == 1 ? "PGM" : "PPM"; }

/* Reads the raster of an open file into image (channel-planar), through
 * scratch (one raster) when it is interleaved, and scales to 0..255. */
static cvae_status read_raster(FILE *f, const pnm_header *hd, uint8_t *image, uint8_t *scratch,
                               const char *path, char *err)
{
    size_t plane = hd->height * hd->width, raster = plane * hd->channels, i, c;
    uint8_t *in = hd->channels == 1 ? image : scratch;
    cvae_status st = cvi_read_exact(f, in, raster, path, "raster", err);
    if (st != CVAE_OK)
        return st;
    for (i = 0; i < raster; i++) {
        if (in[i] > hd->maxval) {
            cvi_set_error(err, "%s: pixel value %u at byte %zu of the raster exceeds maxval %u",
                          path, (unsigned)in[i], i, hd->maxval);
            return CVAE_ERR_FORMAT;
        }
    }
    if (hd->channels > 1)
        for (i = 0; i < plane; i++)
            for (c = 0; c < hd->channels; c++)
                image[c * plane + i] = in[i * hd->channels + c];
    if (hd->maxval != 255)
        for (i = 0; i < raster; i++)
            image[i] = (uint8_t)((image[i] * 255u + hd->maxval / 2) / hd->maxval);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_dataset_load_pnm(cvae_dataset *ds, const char *const *paths, int count)
{
    const cvae_allocator *a;
    char *err;
    pnm_header first, hd;
    size_t raster = 0, total;
    uint8_t *pixels = NULL, *scratch = NULL;
    cvae_status st = CVAE_OK;
    FILE *f;
    int i;
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    a = cvi_dataset_allocator(ds);
    err = cvi_dataset_errbuf(ds);
    if ((st = cvi_check_paths(paths, count, "dataset_load_pnm", err)) != CVAE_OK)
        return st;
    memset(&first, 0, sizeof first);
    for (i = 0; i < count; i++) {
        if ((st = open_header(a, paths[i], i == 0 ? &first : &hd, &f, err)) != CVAE_OK)
            return st;
        fclose(f);
        if (i == 0) {
            raster = first.channels * first.height * first.width;
            if (cvi_mul_overflow(raster, (size_t)count, &total) || total > CVI_MAX_ELEMS) {
                cvi_set_error(err, "%s: %d images of %zux%zux%zu exceed %zu pixels", paths[0],
                              count, first.channels, first.height, first.width, CVI_MAX_ELEMS);
                return CVAE_ERR_TOO_LARGE;
            }
        } else if (hd.channels != first.channels || hd.height != first.height ||
                   hd.width != first.width) {
            cvi_set_error(err, "%s: a %zux%zu %s, but %s is a %zux%zu %s: all images must agree",
                          paths[i], hd.width, hd.height, kind_name(hd.channels), paths[0],
                          first.width, first.height, kind_name(first.channels));
            return CVAE_ERR_SHAPE;
        }
    }
    pixels = cvi_calloc(a, raster, (size_t)count);
    scratch = first.channels > 1 ? cvi_calloc(a, raster, 1) : NULL;
    if (!pixels || (first.channels > 1 && !scratch)) {
        cvi_set_error(err, "out of memory for %d images of %zux%zux%zu", count, first.channels,
                      first.height, first.width);
        st = CVAE_ERR_NOMEM;
    }
    for (i = 0; i < count && st == CVAE_OK; i++) {
        if ((st = open_header(a, paths[i], &hd, &f, err)) != CVAE_OK)
            break;
        /* Checked again: the file may have changed since the first pass. */
        if (hd.channels != first.channels || hd.height != first.height || hd.width != first.width) {
            cvi_set_error(err, "%s: the file changed while it was read", paths[i]);
            st = CVAE_ERR_FORMAT;
        } else {
            st = read_raster(f, &hd, pixels + (size_t)i * raster, scratch, paths[i], err);
        }
        fclose(f);
    }
    cvi_free(a, scratch);
    if (st != CVAE_OK) {
        cvi_free(a, pixels);
        return st;
    }
    return cvi_dataset_adopt(ds, pixels, NULL, (size_t)count, first.channels, first.height,
                             first.width);
}
