/*
 * serialize.c - the model file (docs/FORMAT.md): saving a model with its
 * optional optimizer state, loading a model, loading an optimizer state.
 *
 * Layout: a 24-byte header (magic, format version, flags, payload length),
 * the payload, and a CRC-32 of everything before it; all numbers little-
 * endian whatever the host. Saving streams through the atomic file writer
 * (temporary file, then rename) and runs the payload writer twice, once to
 * count its bytes for the header. Loading reads the whole file, checks the
 * header, the exact length and the CRC before parsing anything, parses with
 * a bounds-checked cursor, and builds nothing until the architecture has
 * been read and checked. It leaves an empty model on any failure.
 */
#include "cvae_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* Version 2 adds the concat_label layer (conditional models), 3 the
 * Gaussian likelihood, 4 the training recipe, 5 the optimizer's running
 * average; a file is written with the oldest version that holds it (see
 * file_version), which older libraries read. */
#define FORMAT_VERSION 5u
#define HEADER_SIZE 24
#define FLAG_OPTIMIZER 1u
#define MAX_LAYERS 4096
#define MAX_HP 7
#define MAX_FILE ((size_t)1 << 36)

static const unsigned char MAGIC[8] = {0x89, 'C', 'V', 'A', 'E', '\r', '\n', 0x1a};

/* --------------------------------------------------------------- writing */

typedef struct writer {
    cvi_afile *af; /* NULL: only count bytes */
    uint64_t count;
    uint32_t crc;
    cvae_status st;
    char *err;
} writer;

static void put(writer *w, const void *data, size_t n)
{
    if (w->st != CVAE_OK)
        return;
    w->count += n;
    if (w->af) {
        w->crc = cvi_crc32_update(w->crc, data, n);
        w->st = cvi_afile_write(w->af, data, n, w->err);
    }
}

static void put_u32(writer *w, uint32_t v)
{
    unsigned char b[4];
    cvi_put_u32le(b, v);
    put(w, b, 4);
}

static void put_u64(writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_f64(writer *w, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_u64(w, bits);
}

static void put_floats(writer *w, const float *x, size_t n)
{
    unsigned char buf[4096];
    size_t i, k;
    if (!w->af) {
        w->count += 4 * (uint64_t)n;
        return;
    }
    for (i = 0; i < n; i += k) {
        size_t j;
        k = n - i < sizeof buf / 4 ? n - i : sizeof buf / 4;
        for (j = 0; j < k; j++) {
            uint32_t bits;
            memcpy(&bits, &x[i + j], 4);
            cvi_put_u32le(buf + 4 * j, bits);
        }
        put(w, buf, 4 * k);
    }
}

/* A layer's hyper-parameters as stored: see docs/FORMAT.md. */
static uint32_t layer_hp(const cvae_layer *l, uint32_t hp[MAX_HP])
{
    switch (l->ops->kind) {
    case CVAE_LAYER_CONV2D:
    case CVAE_LAYER_CONV_TRANSPOSE2D:
        hp[0] = (uint32_t)l->hp.conv.out_channels;
        hp[1] = (uint32_t)l->hp.conv.kh;
        hp[2] = (uint32_t)l->hp.conv.kw;
        hp[3] = (uint32_t)l->hp.conv.sh;
        hp[4] = (uint32_t)l->hp.conv.sw;
        hp[5] = (uint32_t)l->hp.conv.ph;
        hp[6] = (uint32_t)l->hp.conv.pw;
        return 7;
    case CVAE_LAYER_LINEAR:
        hp[0] = (uint32_t)l->hp.linear.out_features;
        return 1;
    case CVAE_LAYER_LEAKY_RELU:
        memcpy(&hp[0], &l->hp.leaky.slope, 4);
        return 1;
    case CVAE_LAYER_RESHAPE:
        hp[0] = (uint32_t)l->hp.reshape.c;
        hp[1] = (uint32_t)l->hp.reshape.h;
        hp[2] = (uint32_t)l->hp.reshape.w;
        return 3;
    case CVAE_LAYER_CONCAT_LABEL:
        hp[0] = (uint32_t)l->hp.label.classes;
        return 1;
    default:
        return 0;
    }
}

static void put_stack(writer *w, cvae_stack *s)
{
    int i, count = cvae_stack_layer_count(s);
    put_u32(w, (uint32_t)count);
    for (i = 0; i < count; i++) {
        const cvae_layer *l = cvae_stack_layer(s, i);
        uint32_t hp[MAX_HP], k, j;
        k = layer_hp(l, hp);
        put_u32(w, (uint32_t)l->ops->kind);
        put_u32(w, k);
        for (j = 0; j < k; j++)
            put_u32(w, hp[j]);
    }
}

/* Whether the optimizer (may be NULL) has a running average to save. */
static int has_average(cvae_optimizer *opt)
{
    cvi_optimizer_state os;
    if (!opt)
        return 0;
    cvi_optimizer_get_state(opt, &os);
    return *os.average > 0.0 || *os.avg_count > 0;
}

/* The oldest version that holds the model and optimizer, so older
 * libraries read what they can: 5 for an optimizer with a running average,
 * 4 for a training recipe other than the plain one, 3 for a Gaussian
 * likelihood, 2 for a conditional model, else 1. */
static uint32_t file_version(const cvae_model *m, cvae_optimizer *opt)
{
    if (has_average(opt))
        return 5u;
    if (m->kl_warmup || m->data_init || m->logvar_init != 0.0)
        return 4u;
    if (m->likelihood != CVAE_LIKELIHOOD_BERNOULLI)
        return 3u;
    return m->classes ? 2u : 1u;
}

static void put_payload(writer *w, cvae_model *m, cvae_optimizer *opt)
{
    int i;
    put_u32(w, (uint32_t)m->C);
    put_u32(w, (uint32_t)m->H);
    put_u32(w, (uint32_t)m->W);
    put_u32(w, (uint32_t)m->L);
    put_f64(w, m->beta);
    put_u64(w, m->steps);
    for (i = 0; i < 4; i++)
        put_u64(w, m->rng.s[i]);
    put_stack(w, m->enc);
    put_stack(w, m->dec);
    put_u64(w, m->nparams);
    put_floats(w, m->params, m->nparams);
    uint32_t version = file_version(m, opt);
    if (version >= 3u) {
        put_u32(w, (uint32_t)m->likelihood);
        put_f64(w, m->sigma);
        put_f64(w, m->sigma_learned);
    }
    if (version >= 4u) {
        put_u64(w, m->kl_warmup);
        put_u32(w, (uint32_t)m->data_init);
        put_f64(w, m->logvar_init);
    }
    if (opt) {
        cvi_optimizer_state os;
        cvi_optimizer_get_state(opt, &os);
        put_u32(w, (uint32_t)os.kind);
        for (i = 0; i < CVI_OPT_NOPTIONS; i++)
            put_f64(w, *os.options[i]);
        put_u64(w, *os.t);
        put_u64(w, os.n);
        put_floats(w, os.m, os.n);
        if (os.v)
            put_floats(w, os.v, os.n);
        if (version >= 5u) {
            put_f64(w, *os.average);
            put_u64(w, *os.avg_count);
            put_u32(w, (uint32_t)*os.swapped);
            if (*os.avg_count > 0)
                put_floats(w, os.avg, os.n);
        }
    }
}


CVAE_API cvae_status cvae_model_save(cvae_model *m, const cvae_optimizer *opt, const char *path)
{
    unsigned char header[HEADER_SIZE], crc[4];
    cvi_afile af;
    writer count = {NULL, 0, 0, CVAE_OK, NULL}, w;
    cvae_optimizer *o = (cvae_optimizer *)opt; /* only read */
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if (!m->enc) {
        cvi_set_error(m->err, "model_save: the model has no architecture");
        return CVAE_ERR_STATE;
    }
    if (!path) {
        cvi_set_error(m->err, "model_save: path is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    if (o) {
        cvi_optimizer_state os;
        cvi_optimizer_get_state(o, &os);
        if (os.n != m->nparams) {
            cvi_set_error(m->err, "model_save: the optimizer is for %zu parameters, not %zu",
                          os.n, m->nparams);
            return CVAE_ERR_SHAPE;
        }
    }
    count.err = m->err;
    put_payload(&count, m, o);
    memcpy(header, MAGIC, 8);
    cvi_put_u32le(header + 8, file_version(m, o));
    cvi_put_u32le(header + 12, o ? FLAG_OPTIMIZER : 0u);
    cvi_put_u32le(header + 16, (uint32_t)count.count);
    cvi_put_u32le(header + 20, (uint32_t)(count.count >> 32));
    if ((st = cvi_afile_open(&af, path, m->err)) != CVAE_OK)
        return st;
    w.af = &af;
    w.count = 0;
    w.crc = 0;
    w.st = CVAE_OK;
    w.err = m->err;
    put(&w, header, HEADER_SIZE);
    put_payload(&w, m, o);
    cvi_put_u32le(crc, w.crc);
    if (w.st == CVAE_OK)
        w.st = cvi_afile_write(&af, crc, 4, m->err);
    if (w.st != CVAE_OK) {
        cvi_afile_abort(&af);
        return w.st;
    }
    return cvi_afile_commit(&af, m->err);
}

/* --------------------------------------------------------------- reading */

typedef struct reader {
    const unsigned char *p;
    size_t len, pos;
    int overrun;
} reader;

static const unsigned char *take(reader *r, size_t n)
{
    const unsigned char *at;
    if (r->overrun || n > r->len - r->pos) {
        r->overrun = 1;
        return NULL;
    }
    at = r->p + r->pos;
    r->pos += n;
    return at;
}

static uint32_t get_u32(reader *r)
{
    const unsigned char *b = take(r, 4);
    return b ? cvi_get_u32le(b) : 0;
}

static uint64_t get_u64(reader *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

static double get_f64(reader *r)
{
    uint64_t bits = get_u64(r);
    double v;
    memcpy(&v, &bits, 8);
    return v;
}

/* Reads n little-endian floats into out (or only checks them when out is
 * NULL); returns the index of the first non-finite one, or n. */
static size_t get_floats(reader *r, float *out, size_t n)
{
    const unsigned char *b = take(r, 4 * n);
    size_t i, bad = n;
    if (!b)
        return n;
    for (i = 0; i < n; i++) {
        uint32_t bits = cvi_get_u32le(b + 4 * i);
        float v;
        memcpy(&v, &bits, 4);
        if (out)
            out[i] = v;
        if (bad == n && !isfinite(v))
            bad = i;
    }
    return bad;
}

/* The whole file, after checking its header, exact length and CRC. The
 * caller frees *data. */
static cvae_status read_file(const cvae_allocator *a, const char *path, unsigned char **data,
                             size_t *len, char *err)
{
    FILE *f;
    long size;
    unsigned char *buf = NULL;
    uint32_t version, flags;
    uint64_t payload;
    *data = NULL;
    errno = 0;
    f = fopen(path, "rb");
    if (!f) {
        cvi_set_error(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "fopen failed");
        return CVAE_ERR_IO;
    }
    /* A directory opens on some systems but cannot be read: read one byte
     * first, so that it is reported as unreadable, not by its odd size. */
    if (fgetc(f) == EOF && ferror(f)) {
        cvi_set_error(err, "%s: cannot read: %s", path, errno ? strerror(errno) : "read error");
        fclose(f);
        return CVAE_ERR_IO;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        cvi_set_error(err, "%s: cannot read (not a regular file?)", path);
        fclose(f);
        return CVAE_ERR_IO;
    }
    if ((size_t)size < HEADER_SIZE + 4 || (size_t)size > MAX_FILE) {
        cvi_set_error(err, "%s: %ld bytes is %s for a model file", path, size,
                      (size_t)size > MAX_FILE ? "too large" : "too small");
        fclose(f);
        return size == 0 || (size_t)size <= MAX_FILE ? CVAE_ERR_FORMAT : CVAE_ERR_TOO_LARGE;
    }
    buf = cvi_calloc(a, (size_t)size, 1);
    if (!buf) {
        cvi_set_error(err, "%s: out of memory for %ld bytes", path, size);
        fclose(f);
        return CVAE_ERR_NOMEM;
    }
    errno = 0;
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        cvi_set_error(err, "%s: read failed: %s", path, errno ? strerror(errno) : "short read");
        fclose(f);
        cvi_free(a, buf);
        return CVAE_ERR_IO;
    }
    fclose(f);
    if (memcmp(buf, MAGIC, 8) != 0) {
        cvi_set_error(err, "%s: not a libcvae model file (bad magic at offset 0)", path);
        cvi_free(a, buf);
        return CVAE_ERR_FORMAT;
    }
    version = cvi_get_u32le(buf + 8);
    flags = cvi_get_u32le(buf + 12);
    payload = cvi_get_u32le(buf + 16) | (uint64_t)cvi_get_u32le(buf + 20) << 32;
    if (version > FORMAT_VERSION) {
        cvi_set_error(err, "%s: format version %u is newer than this library's %u", path,
                      (unsigned)version, FORMAT_VERSION);
        cvi_free(a, buf);
        return CVAE_ERR_VERSION;
    }
    if (version == 0 || (flags & ~FLAG_OPTIMIZER) != 0 ||
        payload != (uint64_t)size - HEADER_SIZE - 4) {
        cvi_set_error(err, "%s: bad header (version %u, flags 0x%x, payload %llu bytes in a "
                      "%ld-byte file)",
                      path, (unsigned)version, (unsigned)flags, (unsigned long long)payload, size);
        cvi_free(a, buf);
        return CVAE_ERR_FORMAT;
    }
    if (cvi_crc32_update(0, buf, (size_t)size - 4) != cvi_get_u32le(buf + size - 4)) {
        cvi_set_error(err, "%s: checksum mismatch: the file is corrupt", path);
        cvi_free(a, buf);
        return CVAE_ERR_FORMAT;
    }
    *data = buf;
    *len = (size_t)size;
    return CVAE_OK;
}

/* The architecture read from a file, checked but not yet built. */
typedef struct layer_rec {
    uint32_t kind, nhp, hp[MAX_HP];
} layer_rec;

typedef struct model_rec {
    uint32_t c, h, w, latent;
    double beta;
    uint64_t steps, rng[4];
    uint32_t count[2]; /* encoder, decoder */
    layer_rec *layers[2];
    uint64_t nparams;
    size_t params_at; /* offset of the parameters */
    uint32_t likelihood; /* version 3; Bernoulli before */
    double sigma, sigma_learned;
    uint64_t kl_warmup; /* version 4; the plain recipe before */
    uint32_t data_init;
    double logvar_init;
} model_rec;

static uint32_t expected_hp(uint32_t kind)
{
    switch (kind) {
    case CVAE_LAYER_CONV2D:
    case CVAE_LAYER_CONV_TRANSPOSE2D:
        return 7;
    case CVAE_LAYER_LINEAR:
    case CVAE_LAYER_LEAKY_RELU:
    case CVAE_LAYER_CONCAT_LABEL:
        return 1;
    case CVAE_LAYER_RESHAPE:
        return 3;
    default:
        return 0;
    }
}

/* Reads the model section up to and past the parameters (not copied). */
static cvae_status read_model_rec(const cvae_allocator *a, reader *r, model_rec *mr,
                                  const char *path, char *err)
{
    int s, i;
    memset(mr, 0, sizeof *mr);
    mr->c = get_u32(r);
    mr->h = get_u32(r);
    mr->w = get_u32(r);
    mr->latent = get_u32(r);
    mr->beta = get_f64(r);
    mr->steps = get_u64(r);
    for (i = 0; i < 4; i++)
        mr->rng[i] = get_u64(r);
    if (r->overrun || !mr->c || !mr->h || !mr->w || !mr->latent || mr->c > INT_MAX ||
        mr->h > INT_MAX || mr->w > INT_MAX || mr->latent > INT_MAX || !isfinite(mr->beta) ||
        mr->beta < 0.0) {
        cvi_set_error(err, "%s: offset %d: bad model header", path, HEADER_SIZE);
        return CVAE_ERR_FORMAT;
    }
    for (s = 0; s < 2; s++) {
        size_t at = r->pos;
        uint32_t n = get_u32(r), j;
        if (r->overrun || n == 0 || n > MAX_LAYERS) {
            cvi_set_error(err, "%s: offset %zu: bad %s layer count %u", path, at,
                          s ? "decoder" : "encoder", (unsigned)n);
            return CVAE_ERR_FORMAT;
        }
        mr->layers[s] = cvi_calloc(a, n, sizeof(layer_rec));
        if (!mr->layers[s]) {
            cvi_set_error(err, "%s: out of memory", path);
            return CVAE_ERR_NOMEM;
        }
        mr->count[s] = n;
        for (j = 0; j < n; j++) {
            layer_rec *lr = &mr->layers[s][j];
            uint32_t k;
            at = r->pos;
            lr->kind = get_u32(r);
            lr->nhp = get_u32(r);
            if (r->overrun || lr->kind < CVAE_LAYER_CONV2D || lr->kind > CVAE_LAYER_CONCAT_LABEL ||
                lr->nhp != expected_hp(lr->kind)) {
                cvi_set_error(err, "%s: offset %zu: %s layer %u has unknown kind %u or %u "
                              "hyper-parameters",
                              path, at, s ? "decoder" : "encoder", (unsigned)j,
                              (unsigned)lr->kind, (unsigned)lr->nhp);
                return CVAE_ERR_FORMAT;
            }
            for (k = 0; k < lr->nhp; k++)
                lr->hp[k] = get_u32(r);
        }
    }
    mr->nparams = get_u64(r);
    mr->params_at = r->pos;
    if (r->overrun || mr->nparams > CVI_MAX_ELEMS || !take(r, 4 * (size_t)mr->nparams)) {
        cvi_set_error(err, "%s: offset %zu: %llu parameters do not fit in the file", path,
                      mr->params_at, (unsigned long long)mr->nparams);
        return CVAE_ERR_FORMAT;
    }
    mr->sigma = mr->sigma_learned = CVI_DEFAULT_SIGMA;
    if (cvi_get_u32le(r->p + 8) >= 3u) {
        size_t at = r->pos;
        mr->likelihood = get_u32(r);
        mr->sigma = get_f64(r);
        mr->sigma_learned = get_f64(r);
        if (r->overrun || mr->likelihood > CVAE_LIKELIHOOD_GAUSSIAN ||
            !(mr->sigma == 0.0 || (mr->sigma >= CVI_MIN_SIGMA && mr->sigma <= CVI_MAX_SIGMA)) ||
            !(mr->sigma_learned >= CVI_MIN_SIGMA && mr->sigma_learned <= 1.0)) {
            cvi_set_error(err, "%s: offset %zu: bad likelihood section", path, at);
            return CVAE_ERR_FORMAT;
        }
    }
    mr->kl_warmup = 0;
    mr->data_init = 0;
    mr->logvar_init = 0.0;
    if (cvi_get_u32le(r->p + 8) >= 4u) {
        size_t at = r->pos;
        mr->kl_warmup = get_u64(r);
        mr->data_init = get_u32(r);
        mr->logvar_init = get_f64(r);
        if (r->overrun || (double)mr->kl_warmup > CVI_MAX_KL_WARMUP || mr->data_init > 1u ||
            !(mr->logvar_init >= CVI_MIN_LOGVAR_INIT && mr->logvar_init <= 0.0)) {
            cvi_set_error(err, "%s: offset %zu: bad training recipe section", path, at);
            return CVAE_ERR_FORMAT;
        }
    }
    return CVAE_OK;
}

static void free_model_rec(const cvae_allocator *a, model_rec *mr)
{
    cvi_free(a, mr->layers[0]);
    cvi_free(a, mr->layers[1]);
}

/* Makes one layer from its record; hyper-parameters go through the public
 * constructors, which check their ranges. */
static cvae_status make_layer(const cvae_allocator *a, const layer_rec *lr, cvae_layer **out)
{
    const uint32_t *hp = lr->hp;
    int v[MAX_HP];
    uint32_t k;
    float slope;
    *out = NULL;
    for (k = 0; k < lr->nhp; k++)
        v[k] = hp[k] > INT_MAX ? -1 : (int)hp[k];
    switch (lr->kind) {
    case CVAE_LAYER_CONV2D:
        return cvae_layer_create_conv2d_with(out, v[0], v[1], v[2], v[3], v[4], v[5], v[6], a);
    case CVAE_LAYER_CONV_TRANSPOSE2D:
        return cvae_layer_create_conv_transpose2d_with(out, v[0], v[1], v[2], v[3], v[4], v[5], v[6], a);
    case CVAE_LAYER_LINEAR:
        return cvae_layer_create_linear_with(out, v[0], a);
    case CVAE_LAYER_RELU:
        return cvae_layer_create_relu_with(out, a);
    case CVAE_LAYER_LEAKY_RELU:
        memcpy(&slope, &hp[0], 4);
        return cvae_layer_create_leaky_relu_with(out, slope, a);
    case CVAE_LAYER_SIGMOID:
        return cvae_layer_create_sigmoid_with(out, a);
    case CVAE_LAYER_TANH:
        return cvae_layer_create_tanh_with(out, a);
    case CVAE_LAYER_FLATTEN:
        return cvae_layer_create_flatten_with(out, a);
    case CVAE_LAYER_CONCAT_LABEL:
        return cvae_layer_create_concat_label_with(out, v[0], a);
    default:
        return cvae_layer_create_reshape_with(out, v[0], v[1], v[2], a);
    }
}

static cvae_status make_stack(const cvae_allocator *a, const layer_rec *recs, uint32_t n,
                              cvae_stack **out)
{
    cvae_status st = cvae_stack_create_with(out, a);
    uint32_t i;
    for (i = 0; st == CVAE_OK && i < n; i++) {
        cvae_layer *l;
        st = make_layer(a, &recs[i], &l);
        if (st == CVAE_OK)
            st = cvae_stack_add(*out, l);
    }
    if (st != CVAE_OK) {
        cvae_stack_destroy(*out);
        *out = NULL;
    }
    return st;
}

/* Builds the model from its record and copies parameters and state. */
static cvae_status build_model(cvae_model *m, reader *r, const model_rec *mr, int max_batch,
                               const char *path)
{
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_status st;
    reader pr;
    size_t bad;
    int i;
    if ((st = make_stack(&m->mem, mr->layers[0], mr->count[0], &enc)) != CVAE_OK ||
        (st = make_stack(&m->mem, mr->layers[1], mr->count[1], &dec)) != CVAE_OK) {
        cvae_stack_destroy(enc);
        cvi_set_error(m->err, "%s: %s in a layer's hyper-parameters", path,
                      st == CVAE_ERR_NOMEM ? "out of memory" : "bad value");
        return st == CVAE_ERR_NOMEM ? st : CVAE_ERR_FORMAT;
    }
    /* The stored count is checked against the architecture's before the
     * blocks are allocated, so a small file cannot ask for gigabytes. */
    if (mr->nparams == 0) {
        cvae_stack_destroy(enc);
        cvae_stack_destroy(dec);
        cvi_set_error(m->err, "%s: offset %zu: no parameters stored", path, mr->params_at - 8);
        return CVAE_ERR_FORMAT;
    }
    st = cvi_model_setup(m, enc, dec, (int)mr->c, (int)mr->h, (int)mr->w, (int)mr->latent,
                         max_batch, (size_t)mr->nparams);
    if (st != CVAE_OK) {
        char why[CVI_ERRMSG_SIZE];
        memcpy(why, m->err, sizeof why);
        cvi_set_error(m->err, "%s: the stored architecture does not build: %.180s", path, why);
        return st == CVAE_ERR_SHAPE || st == CVAE_ERR_INVALID_ARG ? CVAE_ERR_FORMAT : st;
    }
    if (mr->nparams != m->nparams) {
        cvi_set_error(m->err, "%s: offset %zu: %llu parameters stored, the architecture has %zu",
                      path, mr->params_at - 8, (unsigned long long)mr->nparams, m->nparams);
        return CVAE_ERR_FORMAT;
    }
    pr = *r;
    pr.pos = mr->params_at;
    bad = get_floats(&pr, m->params, m->nparams);
    if (bad < m->nparams) {
        cvi_set_error(m->err, "%s: parameter %zu is not finite", path, bad);
        return CVAE_ERR_NUMERIC;
    }
    m->beta = mr->beta;
    m->likelihood = (int)mr->likelihood;
    m->sigma = mr->sigma;
    m->sigma_learned = mr->sigma_learned;
    m->kl_warmup = mr->kl_warmup;
    m->data_init = (int)mr->data_init;
    m->logvar_init = mr->logvar_init;
    m->steps = mr->steps;
    for (i = 0; i < 4; i++)
        m->rng.s[i] = mr->rng[i];
    return CVAE_OK;
}

/* The optimizer section as stored, checked; moments not yet copied. */
typedef struct optim_rec {
    uint32_t kind;
    double options[CVI_OPT_NOPTIONS];
    uint64_t t, n;
    size_t moments_at;
    /* Version 5: the running average (0, 0, 0 before); avg_at its values
     * when avg_count > 0. */
    double average;
    uint64_t avg_count;
    uint32_t swapped;
    size_t avg_at;
} optim_rec;

static cvae_status read_optim_rec(reader *r, optim_rec *orec, const char *path, char *err)
{
    size_t at = r->pos;
    int i;
    orec->kind = get_u32(r);
    for (i = 0; i < CVI_OPT_NOPTIONS; i++)
        orec->options[i] = get_f64(r);
    orec->t = get_u64(r);
    orec->n = get_u64(r);
    orec->moments_at = r->pos;
    orec->average = 0.0;
    orec->avg_count = 0;
    orec->swapped = 0;
    orec->avg_at = 0;
    if (r->overrun || (orec->kind != CVAE_OPTIMIZER_ADAM && orec->kind != CVAE_OPTIMIZER_SGD) ||
        orec->n > CVI_MAX_ELEMS ||
        !take(r, 4 * (size_t)orec->n * (orec->kind == CVAE_OPTIMIZER_ADAM ? 2 : 1))) {
        cvi_set_error(err, "%s: offset %zu: bad optimizer section", path, at);
        return CVAE_ERR_FORMAT;
    }
    if (cvi_get_u32le(r->p + 8) >= 5u) {
        at = r->pos;
        orec->average = get_f64(r);
        orec->avg_count = get_u64(r);
        orec->swapped = get_u32(r);
        orec->avg_at = r->pos;
        /* The decay in [0, 1), a swap only of something averaged, and the
         * average's values when there are any. */
        if (r->overrun || !(orec->average >= 0.0 && orec->average < 1.0) ||
            orec->swapped > 1u || (orec->swapped && orec->avg_count == 0) ||
            (orec->avg_count > 0 && !take(r, 4 * (size_t)orec->n))) {
            cvi_set_error(err, "%s: offset %zu: bad running average in the optimizer section",
                          path, at);
            return CVAE_ERR_FORMAT;
        }
    }
    return CVAE_OK;
}

/* Reads and checks a whole file: the model record, and the optimizer
 * record when there is one (*has_opt). */
static cvae_status parse_file(const cvae_allocator *a, const char *path, unsigned char **data,
                              reader *r, model_rec *mr, optim_rec *orec, int *has_opt, char *err)
{
    size_t len;
    cvae_status st = read_file(a, path, data, &len, err);
    memset(mr, 0, sizeof *mr);
    if (st != CVAE_OK)
        return st;
    r->p = *data;
    r->len = len - 4;
    r->pos = HEADER_SIZE;
    r->overrun = 0;
    *has_opt = (cvi_get_u32le(*data + 12) & FLAG_OPTIMIZER) != 0;
    if ((st = read_model_rec(a, r, mr, path, err)) != CVAE_OK)
        return st;
    if (*has_opt && (st = read_optim_rec(r, orec, path, err)) != CVAE_OK)
        return st;
    if (r->pos != r->len) {
        cvi_set_error(err, "%s: offset %zu: %zu unexpected bytes before the checksum", path,
                      r->pos, r->len - r->pos);
        return CVAE_ERR_FORMAT;
    }
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_load(cvae_model *m, const char *path, int max_batch)
{
    unsigned char *data = NULL;
    reader r;
    model_rec mr;
    optim_rec orec;
    int has_opt;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if (!path || max_batch < 1) {
        cvi_set_error(m->err, "model_load: %s", !path ? "path is NULL" : "max batch must be >= 1");
        return CVAE_ERR_INVALID_ARG;
    }
    if (m->enc) {
        cvi_set_error(m->err, "model_load: the model already has an architecture");
        return CVAE_ERR_STATE;
    }
    st = parse_file(&m->mem, path, &data, &r, &mr, &orec, &has_opt, m->err);
    if (st == CVAE_OK && (st = build_model(m, &r, &mr, max_batch, path)) != CVAE_OK)
        cvi_model_clear(m);
    free_model_rec(&m->mem, &mr);
    cvi_free(&m->mem, data);
    return st;
}

CVAE_API cvae_status cvae_optimizer_load(cvae_optimizer *opt, const char *path)
{
    unsigned char *data = NULL;
    char *err;
    reader r, mr_reader;
    model_rec mr;
    optim_rec orec;
    cvi_optimizer_state os;
    int has_opt, i;
    size_t bad;
    cvae_status st;
    if (!opt)
        return CVAE_ERR_INVALID_ARG;
    err = cvi_optimizer_err(opt);
    if (!path) {
        cvi_set_error(err, "optimizer_load: path is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    cvi_optimizer_get_state(opt, &os);
    st = parse_file(os.mem, path, &data, &r, &mr, &orec, &has_opt, err);
    if (st == CVAE_OK && !has_opt) {
        cvi_set_error(err, "%s: the file holds no optimizer state", path);
        st = CVAE_ERR_STATE;
    }
    if (st == CVAE_OK && (orec.kind != (uint32_t)os.kind || orec.n != os.n)) {
        cvi_set_error(err, "%s: saved optimizer is kind %u for %llu parameters; this one is "
                      "kind %d for %zu",
                      path, (unsigned)orec.kind, (unsigned long long)orec.n, (int)os.kind, os.n);
        st = CVAE_ERR_SHAPE;
    }
    for (i = 0; st == CVAE_OK && i < CVI_OPT_NOPTIONS; i++) {
        double lo, hi, v = orec.options[i];
        int key = CVAE_OPT_LR + i;
        /* Options the kind lacks are stored too; only those it has must be
         * in range. */
        if (cvae_optimizer_bounds(opt, (cvae_optimizer_option)key, &lo, &hi) == CVAE_OK &&
            !(v >= lo && v <= hi)) {
            cvi_set_error(err, "%s: saved option %d = %g is out of range", path, key, v);
            st = CVAE_ERR_FORMAT;
        }
    }
    if (st == CVAE_OK) {
        /* Check every moment before touching the live state. */
        mr_reader = r;
        mr_reader.pos = orec.moments_at;
        bad = get_floats(&mr_reader, NULL, os.n * (os.v ? 2 : 1));
        if (bad < os.n * (os.v ? 2 : 1)) {
            cvi_set_error(err, "%s: optimizer moment %zu is not finite", path, bad);
            st = CVAE_ERR_NUMERIC;
        }
    }
    if (st == CVAE_OK && os.v) {
        /* Adam's second moments are sums of squares: a negative one would
         * make the next step's square root NaN (found by fuzzing). */
        const unsigned char *v = r.p + orec.moments_at + 4 * os.n;
        size_t k;
        for (k = 0; k < os.n; k++) {
            uint32_t bits = cvi_get_u32le(v + 4 * k);
            float x;
            memcpy(&x, &bits, 4);
            if (x < 0.0f) {
                cvi_set_error(err, "%s: Adam second moment %zu is negative (%g)", path, k,
                              (double)x);
                st = CVAE_ERR_NUMERIC;
                break;
            }
        }
    }
    if (st == CVAE_OK && orec.avg_count > 0) {
        mr_reader.pos = orec.avg_at;
        bad = get_floats(&mr_reader, NULL, os.n);
        if (bad < os.n) {
            cvi_set_error(err, "%s: running average value %zu is not finite", path, bad);
            st = CVAE_ERR_NUMERIC;
        }
    }
    /* The only allocation, before anything is changed. */
    if (st == CVAE_OK && (orec.average > 0.0 || orec.avg_count > 0) &&
        cvi_optimizer_alloc_average(opt) != CVAE_OK) {
        cvi_set_error(err, "%s: no memory for the running average", path);
        st = CVAE_ERR_NOMEM;
    }
    if (st == CVAE_OK) {
        cvi_optimizer_get_state(opt, &os); /* the average's storage, if just made */
        mr_reader.pos = orec.moments_at;
        get_floats(&mr_reader, os.m, os.n);
        if (os.v)
            get_floats(&mr_reader, os.v, os.n);
        for (i = 0; i < CVI_OPT_NOPTIONS; i++)
            *os.options[i] = orec.options[i];
        *os.t = orec.t;
        *os.average = orec.average;
        *os.avg_count = orec.avg_count;
        *os.swapped = (int)orec.swapped;
        if (os.avg && orec.avg_count > 0) {
            mr_reader.pos = orec.avg_at;
            get_floats(&mr_reader, os.avg, os.n);
        } else if (os.avg) { /* nothing averaged: the next average starts afresh */
            memset(os.avg, 0, os.n * sizeof(float));
        }
        cvi_optimizer_state_written(opt);
    }
    free_model_rec(os.mem, &mr);
    cvi_free(os.mem, data);
    return st;
}
