/*
 * dataset.c - images (uint8) with optional labels: loading MNIST-style IDX
 * files, filling from memory, seeded shuffling, batches as floats, and
 * seeded train/validation splits.
 *
 * Pixels stay uint8 in memory (a quarter of the floats' size) and are
 * converted per batch. Where that is smaller still, as for digits on a
 * blank background, the images are kept packed (pack.c) and unpacked per
 * batch into the same floats. Shuffling permutes an index array, never the
 * pixels.
 * Only plain IDX files of unsigned bytes are read: no gzip (the message says
 * how to decompress), no other IDX element types, no augmentation.
 */
#include "cvae_internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

struct cvae_dataset {
    cvae_allocator mem;
    uint8_t *pixels;   /* (count, c, h, w), NULL when empty or packed */
    uint8_t *packed;   /* the images packed one after another, or NULL */
    size_t *packed_at; /* (count + 1): where image k's code starts in packed */
    uint8_t *labels;   /* (count), NULL when there are none */
    size_t count, c, h, w;
    size_t *order; /* (count): position -> stored index */
    char err[CVI_ERRMSG_SIZE];
};

/* Magic numbers: two zero bytes, type 0x08 (unsigned byte), dimensions. */
#define IDX_TYPE_U8 0x08u
#define IDX_MAX_DIMS 3

CVAE_API cvae_status cvae_dataset_create_with(cvae_dataset **out,
                                              const cvae_allocator *allocator)
{
    cvae_allocator mem;
    cvae_dataset *ds;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (cvi_allocator_init(&mem, allocator) != CVAE_OK)
        return CVAE_ERR_INVALID_ARG;
    ds = cvi_calloc(&mem, 1, sizeof *ds);
    if (!ds)
        return CVAE_ERR_NOMEM;
    ds->mem = mem;
    *out = ds;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_dataset_create(cvae_dataset **out)
{
    return cvae_dataset_create_with(out, NULL);
}

static void free_content(cvae_dataset *ds)
{
    cvi_free(&ds->mem, ds->pixels);
    cvi_free(&ds->mem, ds->packed);
    cvi_free(&ds->mem, ds->packed_at);
    cvi_free(&ds->mem, ds->labels);
    cvi_free(&ds->mem, ds->order);
}

CVAE_API void cvae_dataset_destroy(cvae_dataset *ds)
{
    cvae_allocator mem;
    if (!ds)
        return;
    free_content(ds);
    mem = ds->mem; /* not read from the block being freed */
    cvi_free(&mem, ds);
}

CVAE_API const char *cvae_dataset_last_error(const cvae_dataset *ds)
{
    return ds ? ds->err : "dataset handle is NULL";
}

/* ----------------------------------------------------------- filling */

/* New content built aside, so that a failed fill leaves the old one; its
 * blocks come from the allocator of the dataset it is for. */
typedef struct content {
    const cvae_allocator *mem;
    uint8_t *pixels, *packed, *labels; /* pixels or packed, as in the dataset */
    size_t *packed_at;
    size_t count, c, h, w;
    size_t *order;
} content;

/* Safe to call twice: the pointers are cleared. */
static void content_free(content *ct)
{
    if (!ct->mem)
        return;
    cvi_free(ct->mem, ct->pixels);
    cvi_free(ct->mem, ct->packed);
    cvi_free(ct->mem, ct->packed_at);
    cvi_free(ct->mem, ct->labels);
    cvi_free(ct->mem, ct->order);
    ct->pixels = ct->packed = ct->labels = NULL;
    ct->order = ct->packed_at = NULL;
}

static void identity(size_t *order, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        order[i] = i;
}

/* Packs ds's raw pixels when the code and its index take at most 7/8 of
 * them. Needs no more than the code's size beside the raw pixels; without
 * that memory the pixels simply stay raw. */
static void pack_pixels(cvae_dataset *ds)
{
    size_t image = ds->c * ds->h * ds->w, raw = ds->count * image, bytes = 0, k;
    size_t limit = raw - raw / 8, index = (ds->count + 1) * sizeof(size_t);
    uint8_t *packed;
    size_t *at;
    if (!ds->pixels || index >= limit)
        return;
    limit -= index;
    for (k = 0; k < ds->count && bytes <= limit; k++)
        bytes += cvi_pack_image(ds->pixels + k * image, image, NULL);
    if (bytes > limit)
        return;
    packed = cvi_calloc(&ds->mem, bytes ? bytes : 1, 1);
    at = cvi_calloc(&ds->mem, ds->count + 1, sizeof *at);
    if (!packed || !at) {
        cvi_free(&ds->mem, packed);
        cvi_free(&ds->mem, at);
        return;
    }
    at[0] = 0;
    for (k = 0; k < ds->count; k++)
        at[k + 1] = at[k] + cvi_pack_image(ds->pixels + k * image, image, packed + at[k]);
    cvi_free(&ds->mem, ds->pixels);
    ds->pixels = NULL;
    ds->packed = packed;
    ds->packed_at = at;
}

/* Replaces ds's content with ct's, which ds then owns, packing raw pixels
 * where that saves memory. */
static void install(cvae_dataset *ds, content *ct)
{
    free_content(ds);
    ds->pixels = ct->pixels;
    ds->packed = ct->packed;
    ds->packed_at = ct->packed_at;
    ds->labels = ct->labels;
    ds->order = ct->order;
    ds->count = ct->count;
    ds->c = ct->c;
    ds->h = ct->h;
    ds->w = ct->w;
    identity(ds->order, ds->count);
    ct->pixels = ct->packed = ct->labels = NULL;
    ct->order = ct->packed_at = NULL;
    pack_pixels(ds);
    ds->err[0] = '\0';
}

/* Copies count images of c x h x w pixels (and labels, when not NULL) into
 * a new content. The caller checked the sizes. */
static cvae_status content_copy(content *ct, const cvae_allocator *a, size_t count, size_t c,
                                size_t h, size_t w, const uint8_t *pixels, const uint8_t *labels,
                                char *err)
{
    size_t total = count * c * h * w;
    memset(ct, 0, sizeof *ct);
    ct->mem = a;
    ct->pixels = cvi_calloc(a, total, 1);
    ct->labels = labels ? cvi_calloc(a, count, 1) : NULL;
    ct->order = cvi_calloc(a, count, sizeof *ct->order);
    if (!ct->pixels || (labels && !ct->labels) || !ct->order) {
        cvi_set_error(err, "out of memory for %zu images of %zux%zux%zu", count, c, h, w);
        content_free(ct);
        return CVAE_ERR_NOMEM;
    }
    memcpy(ct->pixels, pixels, total);
    if (labels)
        memcpy(ct->labels, labels, count);
    ct->count = count;
    ct->c = c;
    ct->h = h;
    ct->w = w;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_dataset_set_u8(cvae_dataset *ds, int count, int channels, int height,
                                         int width, const uint8_t *pixels, const uint8_t *labels)
{
    size_t total;
    content ct;
    cvae_status st;
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    if (!pixels) {
        cvi_set_error(ds->err, "dataset_set_u8: pixels is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    if (count < 1 || channels < 1 || height < 1 || width < 1) {
        cvi_set_error(ds->err, "dataset_set_u8: %d images of %dx%dx%d: every size must be >= 1",
                      count, channels, height, width);
        return CVAE_ERR_INVALID_ARG;
    }
    if (cvi_mul_overflow((size_t)count, (size_t)channels, &total) ||
        cvi_mul_overflow(total, (size_t)height, &total) ||
        cvi_mul_overflow(total, (size_t)width, &total) || total > CVI_MAX_ELEMS) {
        cvi_set_error(ds->err, "dataset_set_u8: %d images of %dx%dx%d exceed %zu pixels", count,
                      channels, height, width, CVI_MAX_ELEMS);
        return CVAE_ERR_TOO_LARGE;
    }
    st = content_copy(&ct, &ds->mem, (size_t)count, (size_t)channels, (size_t)height, (size_t)width, pixels,
                      labels, ds->err);
    if (st != CVAE_OK)
        return st;
    install(ds, &ct);
    return CVAE_OK;
}

/* ------------------------------------------------------------ IDX files */

/* One IDX file read whole: its sizes and its data (product of sizes bytes). */
typedef struct idx_file {
    const cvae_allocator *mem;
    size_t ndims;
    size_t size[IDX_MAX_DIMS];
    size_t bytes;
    uint8_t *data;
} idx_file;

/* The open failed: say why, and when only a gzipped copy is there, how to
 * decompress it (the MNIST files are distributed as .gz). */
cvae_status cvi_open_error(const cvae_allocator *a, const char *path, int err_no, char *err)
{
    size_t len = strlen(path);
    char *gz = cvi_calloc(a, len + 4, 1);
    FILE *f = NULL;
    const char *why = err_no ? strerror(err_no) : "fopen failed";
    if (gz) {
        memcpy(gz, path, len);
        memcpy(gz + len, ".gz", 4);
        f = fopen(gz, "rb");
    }
    if (f) {
        fclose(f);
        cvi_set_error(err,
                      "%s: cannot open: %s; a .gz of it exists: decompress it with "
                      "`gunzip -k %s.gz` (or `make data`)",
                      path, why, path);
    } else {
        cvi_set_error(err, "%s: cannot open: %s", path, why);
    }
    cvi_free(a, gz);
    return CVAE_ERR_IO;
}

/* Reads exactly n bytes; a short read is IO on a stream error (for instance
 * EISDIR: fopen accepts a directory on Linux, reading it fails) and FORMAT
 * on end of file, reported as `what` being truncated. */
cvae_status cvi_read_exact(FILE *f, void *buf, size_t n, const char *path, const char *what,
                           char *err)
{
    size_t got;
    errno = 0;
    got = fread(buf, 1, n, f);
    if (got == n)
        return CVAE_OK;
    if (ferror(f)) {
        cvi_set_error(err, "%s: read failed: %s", path, errno ? strerror(errno) : "read error");
        return CVAE_ERR_IO;
    }
    cvi_set_error(err, "%s: truncated %s: %zu of %zu bytes", path, what, got, n);
    return CVAE_ERR_FORMAT;
}

/* Magic and sizes. Every size must be >= 1; their product must fit size_t. */
static cvae_status read_header(FILE *f, idx_file *idx, const char *path, char *err)
{
    unsigned char head[4 * (1 + IDX_MAX_DIMS)];
    unsigned long magic, expected = IDX_TYPE_U8 << 8 | (unsigned long)idx->ndims;
    cvae_status st;
    size_t i;
    errno = 0;
    if (fread(head, 1, 1, f) != 1) {
        if (ferror(f)) {
            cvi_set_error(err, "%s: read failed: %s", path, errno ? strerror(errno) : "read error");
            return CVAE_ERR_IO;
        }
        cvi_set_error(err, "%s: the file is empty", path);
        return CVAE_ERR_FORMAT;
    }
    if ((st = cvi_read_exact(f, head + 1, 3, path, "header", err)) != CVAE_OK)
        return st;
    magic = (unsigned long)cvi_get_u32be(head);
    if (magic != expected) {
        cvi_set_error(err,
                      "%s: magic 0x%08lx, expected 0x%08lx (IDX of unsigned bytes, %zu "
                      "dimension%s)",
                      path, magic, expected, idx->ndims, idx->ndims == 1 ? "" : "s");
        return CVAE_ERR_FORMAT;
    }
    if ((st = cvi_read_exact(f, head + 4, 4 * idx->ndims, path, "header", err)) != CVAE_OK)
        return st;
    idx->bytes = 1;
    for (i = 0; i < idx->ndims; i++) {
        idx->size[i] = (size_t)cvi_get_u32be(head + 4 + 4 * i);
        if (idx->size[i] == 0) {
            cvi_set_error(err, "%s: dimension %zu has size 0", path, i);
            return CVAE_ERR_FORMAT;
        }
        if (cvi_mul_overflow(idx->bytes, idx->size[i], &idx->bytes)) {
            cvi_set_error(err, "%s: the sizes in the header multiply past %zu", path,
                          (size_t)SIZE_MAX);
            return CVAE_ERR_TOO_LARGE;
        }
    }
    return CVAE_OK;
}

/* The data must fill the rest of the file exactly. Checked against the file
 * length before anything is allocated, so a header claiming gigabytes in a
 * small file costs nothing. */
static cvae_status check_length(FILE *f, const idx_file *idx, const char *path, char *err)
{
    size_t head = 4 + 4 * idx->ndims;
    long len;
    uint64_t rest;
    errno = 0;
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, (long)head, SEEK_SET) != 0) {
        cvi_set_error(err, "%s: cannot find the file length: %s", path,
                      errno ? strerror(errno) : "seek failed");
        return CVAE_ERR_IO;
    }
    rest = (uint64_t)len - head; /* len >= head: the header was read */
    if (rest < (uint64_t)idx->bytes) {
        cvi_set_error(err,
                      "%s: truncated: the header promises %zu bytes of data, the file has %llu",
                      path, idx->bytes, (unsigned long long)rest);
        return CVAE_ERR_FORMAT;
    }
    if (rest > (uint64_t)idx->bytes) {
        cvi_set_error(err, "%s: %llu bytes after the %zu bytes of data the header promises", path,
                      (unsigned long long)(rest - idx->bytes), idx->bytes);
        return CVAE_ERR_FORMAT;
    }
    return CVAE_OK;
}

/* The whole file: header, length check, limits, then one allocation and one
 * read of the data. On failure idx->data is NULL. */
static cvae_status idx_read_open(FILE *f, idx_file *idx, const char *path, char *err)
{
    cvae_status st;
    if ((st = read_header(f, idx, path, err)) != CVAE_OK)
        return st;
    if ((st = check_length(f, idx, path, err)) != CVAE_OK)
        return st;
    if (idx->bytes > CVI_MAX_ELEMS) {
        cvi_set_error(err, "%s: %zu values exceed the limit of %zu", path, idx->bytes,
                      CVI_MAX_ELEMS);
        return CVAE_ERR_TOO_LARGE;
    }
    idx->data = cvi_calloc(idx->mem, idx->bytes, 1);
    if (!idx->data) {
        cvi_set_error(err, "%s: out of memory for %zu bytes", path, idx->bytes);
        return CVAE_ERR_NOMEM;
    }
    if ((st = cvi_read_exact(f, idx->data, idx->bytes, path, "data", err)) != CVAE_OK) {
        cvi_free(idx->mem, idx->data);
        idx->data = NULL;
    }
    return st;
}

static cvae_status idx_read(const cvae_allocator *a, const char *path, size_t ndims,
                            idx_file *idx, char *err)
{
    FILE *f;
    cvae_status st;
    memset(idx, 0, sizeof *idx);
    idx->mem = a;
    idx->ndims = ndims;
    errno = 0;
    f = fopen(path, "rb");
    if (!f)
        return cvi_open_error(a, path, errno, err);
    st = idx_read_open(f, idx, path, err);
    /* Nothing was written, so a failed close loses nothing; it is still
     * reported, as every other stream error is. */
    errno = 0;
    if (fclose(f) != 0 && st == CVAE_OK) {
        cvi_set_error(err, "%s: close failed: %s", path, errno ? strerror(errno) : "fclose");
        cvi_free(a, idx->data);
        idx->data = NULL;
        st = CVAE_ERR_IO;
    }
    return st;
}

/* The label file against the images: same count, every value a digit. */
static cvae_status check_labels(const idx_file *lab, size_t count, const char *path, char *err)
{
    size_t i;
    if (lab->size[0] != count) {
        cvi_set_error(err, "%s: %zu labels for %zu images", path, lab->size[0], count);
        return CVAE_ERR_FORMAT;
    }
    for (i = 0; i < count; i++) {
        if (lab->data[i] > 9) {
            cvi_set_error(err, "%s: label %zu is %u, expected 0..9", path, i,
                          (unsigned)lab->data[i]);
            return CVAE_ERR_FORMAT;
        }
    }
    return CVAE_OK;
}

CVAE_API cvae_status cvae_dataset_load_idx(cvae_dataset *ds, const char *images_path,
                                           const char *labels_path)
{
    idx_file img, lab;
    content ct;
    cvae_status st;
    memset(&ct, 0, sizeof ct);
    memset(&img, 0, sizeof img);
    memset(&lab, 0, sizeof lab);
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    ct.mem = &ds->mem;
    if (!images_path) {
        cvi_set_error(ds->err, "dataset_load_idx: images_path is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    if ((st = idx_read(&ds->mem, images_path, 3, &img, ds->err)) != CVAE_OK)
        return st;
    /* count() and shape() answer in int. */
    if (img.size[0] > INT_MAX || img.size[1] > INT_MAX || img.size[2] > INT_MAX) {
        cvi_set_error(ds->err, "%s: %zu images of %zux%zu: a size exceeds %d", images_path,
                      img.size[0], img.size[1], img.size[2], INT_MAX);
        st = CVAE_ERR_TOO_LARGE;
        goto done;
    }
    if (labels_path) {
        if ((st = idx_read(&ds->mem, labels_path, 1, &lab, ds->err)) != CVAE_OK)
            goto done;
        if ((st = check_labels(&lab, img.size[0], labels_path, ds->err)) != CVAE_OK)
            goto done;
    }
    ct.order = cvi_calloc(&ds->mem, img.size[0], sizeof *ct.order);
    if (!ct.order) {
        cvi_set_error(ds->err, "%s: out of memory for %zu images", images_path, img.size[0]);
        st = CVAE_ERR_NOMEM;
        goto done;
    }
    /* The files' buffers become the dataset's: no second copy. */
    ct.pixels = img.data;
    ct.labels = lab.data;
    img.data = lab.data = NULL;
    ct.count = img.size[0];
    ct.c = 1;
    ct.h = img.size[1];
    ct.w = img.size[2];
    install(ds, &ct);
done:
    cvi_free(&ds->mem, img.data);
    cvi_free(&ds->mem, lab.data);
    return st;
}

/* The loaders of other formats (dataset_cifar10.c, dataset_pnm.c) fill the
 * dataset through these. */
const cvae_allocator *cvi_dataset_allocator(cvae_dataset *ds) { return &ds->mem; }

char *cvi_dataset_errbuf(cvae_dataset *ds) { return ds->err; }

cvae_status cvi_check_paths(const char *const *paths, int count, const char *what, char *err)
{
    int i;
    if (!paths || count < 1) {
        cvi_set_error(err, "%s: %s", what, !paths ? "paths is NULL" : "count < 1");
        return CVAE_ERR_INVALID_ARG;
    }
    for (i = 0; i < count; i++) {
        if (!paths[i]) {
            cvi_set_error(err, "%s: paths[%d] is NULL", what, i);
            return CVAE_ERR_INVALID_ARG;
        }
    }
    return CVAE_OK;
}

cvae_status cvi_dataset_adopt(cvae_dataset *ds, uint8_t *pixels, uint8_t *labels, size_t count,
                              size_t c, size_t h, size_t w)
{
    content ct;
    memset(&ct, 0, sizeof ct);
    ct.mem = &ds->mem;
    ct.pixels = pixels;
    ct.labels = labels;
    ct.order = cvi_calloc(&ds->mem, count, sizeof *ct.order);
    if (!ct.order) {
        cvi_set_error(ds->err, "out of memory for the order of %zu images", count);
        content_free(&ct);
        return CVAE_ERR_NOMEM;
    }
    ct.count = count;
    ct.c = c;
    ct.h = h;
    ct.w = w;
    install(ds, &ct);
    return CVAE_OK;
}

/* ------------------------------------------------------------ queries */

CVAE_API int cvae_dataset_count(const cvae_dataset *ds) { return ds ? (int)ds->count : 0; }

CVAE_API cvae_status cvae_dataset_shape(const cvae_dataset *ds, int *channels, int *height,
                                        int *width)
{
    cvi_shape s;
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    if (ds->count == 0)
        return CVAE_ERR_STATE;
    s.c = ds->c;
    s.h = ds->h;
    s.w = ds->w;
    cvi_shape_out(s, channels, height, width);
    return CVAE_OK;
}

CVAE_API int cvae_dataset_has_labels(const cvae_dataset *ds) { return ds && ds->labels ? 1 : 0; }

/* ------------------------------------------------------------ ordering */

/* Uniform in [0, bound), bound >= 1, without modulo bias: draws below
 * 2^64 mod bound are rejected, so the accepted range is a whole number of
 * bound-sized blocks. Integer-only, hence the same on every platform (the
 * multiply-high of Lemire's method would need a 128-bit type C99 lacks). */
static uint64_t draw_below(cvi_rng *rng, uint64_t bound)
{
    uint64_t threshold = (0 - bound) % bound; /* 2^64 mod bound */
    uint64_t r;
    do
        r = cvi_rng_next(rng);
    while (r < threshold);
    return r % bound;
}

/* order = a permutation of 0..count-1 that depends only on seed and count:
 * identity, then Fisher-Yates from the last position down, each position
 * swapped with a uniform one at or before it. */
static void seeded_permutation(size_t *order, size_t count, uint64_t seed)
{
    cvi_rng rng;
    size_t i;
    identity(order, count);
    cvi_rng_seed(&rng, seed);
    for (i = count; i > 1; i--) {
        size_t j = (size_t)draw_below(&rng, (uint64_t)i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

CVAE_API cvae_status cvae_dataset_shuffle(cvae_dataset *ds, uint64_t seed)
{
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    if (ds->count == 0) {
        cvi_set_error(ds->err, "dataset_shuffle: the dataset is empty");
        return CVAE_ERR_STATE;
    }
    seeded_permutation(ds->order, ds->count, seed);
    ds->err[0] = '\0';
    return CVAE_OK;
}

CVAE_API cvae_status cvae_dataset_unshuffle(cvae_dataset *ds)
{
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    if (ds->count == 0) {
        cvi_set_error(ds->err, "dataset_unshuffle: the dataset is empty");
        return CVAE_ERR_STATE;
    }
    identity(ds->order, ds->count);
    ds->err[0] = '\0';
    return CVAE_OK;
}

/* ------------------------------------------------------------- batches */

/* One image as floats. Exact division rather than a multiply by 1/255:
 * x / 255.0f is the correctly rounded quotient (what NumPy's x / 255 gives
 * in float32), and 255 maps to exactly 1; x * (1.0f / 255.0f) is off by one
 * ulp for some x. */
static void image_to_float(float *out, const uint8_t *px, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        out[i] = (float)px[i] / 255.0f;
}

/* Stored image k as floats. */
static void stored_image(const cvae_dataset *ds, size_t k, float *out)
{
    size_t image = ds->c * ds->h * ds->w;
    if (ds->packed)
        cvi_unpack_float(ds->packed + ds->packed_at[k], image, out);
    else
        image_to_float(out, ds->pixels + k * image, image);
}

void cvi_dataset_batch_stored(const cvae_dataset *ds, size_t first, size_t n, float *images)
{
    size_t image = ds->c * ds->h * ds->w, i;
    if (!ds->packed) {
        image_to_float(images, ds->pixels + first * image, n * image);
        return;
    }
    for (i = 0; i < n; i++)
        stored_image(ds, first + i, images + i * image);
}

CVAE_API cvae_status cvae_dataset_batch(cvae_dataset *ds, int first, int n, float *images,
                                        int *labels)
{
    size_t image, i;
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    if (ds->count == 0) {
        cvi_set_error(ds->err, "dataset_batch: the dataset is empty");
        return CVAE_ERR_STATE;
    }
    if (!images || first < 0 || n < 1 || (size_t)first + (size_t)n > ds->count) {
        cvi_set_error(ds->err, "dataset_batch: %s (first %d, n %d, count %zu)",
                      !images ? "images is NULL" : "images out of range", first, n, ds->count);
        return CVAE_ERR_INVALID_ARG;
    }
    image = ds->c * ds->h * ds->w;
    for (i = 0; i < (size_t)n; i++) {
        size_t k = ds->order[(size_t)first + i];
        stored_image(ds, k, images + i * image);
        if (labels)
            labels[i] = ds->labels ? (int)ds->labels[k] : -1;
    }
    return CVAE_OK;
}

/* -------------------------------------------------------------- split */

/* Bytes of the packed code of the images whose pick[] equals want. */
static size_t packed_bytes(const cvae_dataset *ds, const uint8_t *pick, uint8_t want)
{
    size_t i, bytes = 0;
    for (i = 0; i < ds->count; i++)
        if (pick[i] == want)
            bytes += ds->packed_at[i + 1] - ds->packed_at[i];
    return bytes;
}

/* Copies the images whose pick[] equals want, in stored order, into ct:
 * their codes when ds is packed, else their pixels. */
static cvae_status subset(content *ct, const cvae_dataset *ds, const uint8_t *pick, uint8_t want,
                          size_t count, char *err)
{
    size_t image = ds->c * ds->h * ds->w, i, k = 0, bytes = 0;
    memset(ct, 0, sizeof *ct);
    ct->mem = &ds->mem;
    if (ds->packed) {
        bytes = packed_bytes(ds, pick, want);
        ct->packed = cvi_calloc(ct->mem, bytes ? bytes : 1, 1);
        ct->packed_at = cvi_calloc(ct->mem, count + 1, sizeof *ct->packed_at);
    } else {
        ct->pixels = cvi_calloc(ct->mem, count, image);
    }
    ct->labels = ds->labels ? cvi_calloc(ct->mem, count, 1) : NULL;
    ct->order = cvi_calloc(ct->mem, count, sizeof *ct->order);
    if ((ds->packed ? !ct->packed || !ct->packed_at : !ct->pixels) ||
        (ds->labels && !ct->labels) || !ct->order) {
        cvi_set_error(err, "dataset_split: out of memory for %zu images", count);
        content_free(ct);
        return CVAE_ERR_NOMEM;
    }
    for (i = 0; i < ds->count; i++) {
        if (pick[i] != want)
            continue;
        if (ds->packed) {
            size_t len = ds->packed_at[i + 1] - ds->packed_at[i];
            memcpy(ct->packed + ct->packed_at[k], ds->packed + ds->packed_at[i], len);
            ct->packed_at[k + 1] = ct->packed_at[k] + len;
        } else {
            memcpy(ct->pixels + k * image, ds->pixels + i * image, image);
        }
        if (ds->labels)
            ct->labels[k] = ds->labels[i];
        k++;
    }
    ct->count = count;
    ct->c = ds->c;
    ct->h = ds->h;
    ct->w = ds->w;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_dataset_split(cvae_dataset *ds, int validation_count, uint64_t seed,
                                        cvae_dataset **train, cvae_dataset **validation)
{
    size_t *perm = NULL, nval, i;
    uint8_t *pick = NULL;
    content tr, va;
    cvae_dataset *t = NULL, *v = NULL;
    cvae_status st;
    memset(&tr, 0, sizeof tr);
    memset(&va, 0, sizeof va);
    if (train)
        *train = NULL;
    if (validation)
        *validation = NULL;
    if (!ds)
        return CVAE_ERR_INVALID_ARG;
    if (!train || !validation) {
        cvi_set_error(ds->err, "dataset_split: %s is NULL", train ? "validation" : "train");
        return CVAE_ERR_INVALID_ARG;
    }
    if (ds->count == 0) {
        cvi_set_error(ds->err, "dataset_split: the dataset is empty");
        return CVAE_ERR_STATE;
    }
    if (validation_count < 1 || (size_t)validation_count >= ds->count) {
        cvi_set_error(ds->err, "dataset_split: validation_count %d not in [1, %zu]",
                      validation_count, ds->count - 1);
        return CVAE_ERR_INVALID_ARG;
    }
    nval = (size_t)validation_count;
    perm = cvi_calloc(&ds->mem, ds->count, sizeof *perm);
    pick = cvi_calloc(&ds->mem, ds->count, 1);
    if (!perm || !pick) {
        cvi_set_error(ds->err, "dataset_split: out of memory for %zu images", ds->count);
        st = CVAE_ERR_NOMEM;
        goto done;
    }
    /* The validation images are the first nval of the order
     * cvae_dataset_shuffle(ds, seed) would give. */
    seeded_permutation(perm, ds->count, seed);
    for (i = 0; i < nval; i++)
        pick[perm[i]] = 1;
    if ((st = subset(&tr, ds, pick, 0, ds->count - nval, ds->err)) != CVAE_OK ||
        (st = subset(&va, ds, pick, 1, nval, ds->err)) != CVAE_OK)
        goto done;
    if ((st = cvae_dataset_create_with(&t, &ds->mem)) != CVAE_OK ||
        (st = cvae_dataset_create_with(&v, &ds->mem)) != CVAE_OK) {
        cvi_set_error(ds->err, "dataset_split: out of memory for the new handles");
        goto done;
    }
    install(t, &tr);
    install(v, &va);
    *train = t;
    *validation = v;
    t = v = NULL;
    ds->err[0] = '\0';
done:
    cvae_dataset_destroy(t);
    cvae_dataset_destroy(v);
    content_free(&tr);
    content_free(&va);
    cvi_free(&ds->mem, perm);
    cvi_free(&ds->mem, pick);
    return st;
}

void cvi_dataset_labels_stored(const cvae_dataset *ds, size_t first, size_t n, int *labels)
{
    size_t i;
    for (i = 0; i < n; i++)
        labels[i] = ds->labels[first + i];
}

size_t cvi_dataset_max_label(const cvae_dataset *ds)
{
    size_t i, top = 0;
    for (i = 0; ds->labels && i < ds->count; i++)
        if (ds->labels[i] > top)
            top = ds->labels[i];
    return top;
}
