/*
 * model.c - the variational autoencoder: architecture set-up, the training
 * step, evaluation, encoding, decoding and sampling. Saving and loading are
 * in serialize.c, the loss terms in loss.c.
 *
 * B batch, L latent, I pixels per image. x (B,I) h = enc(x) (B,2L) with
 * mu = h[:, :L], lv = h[:, L:]; eps, z (B,L) z = mu + exp(lv/2) eps;
 * logits = dec(z) (B,I). Loss per image: bce(logits, x) + beta kl(mu, lv),
 * averaged over the batch, so every gradient carries a factor 1/n; during a
 * KL warm-up beta is weighted by the step's share of it (cvi_model_kl_weight).
 * Reparameterisation backward: dmu = dz + beta/n mu,
 * dlv = dz eps exp(lv/2) / 2 + beta/n (exp(lv) - 1) / 2.
 *
 * Lanes. A training batch of at least 2 CVI_LANE_MIN images is cut in two
 * halves, the lanes, each run through encoder and decoder on its own rows of
 * the blocks with its own scratch, packing buffers and gradients; the step's
 * gradient is then lane 0's plus lane 1's, element by element. With two
 * threads the lanes run at once, one thread each, with no barrier inside the
 * passes; with one they run one after the other. The cut depends on the
 * batch size only, so every thread count computes the same operations in the
 * same order: the same bits.
 *
 * Lane 1's gradients need no second block of the model's size. A linear
 * layer's weight gradient is one product over the lane's rows, which the
 * multiply adds onto its output in one pass when the rows are few enough
 * (cvi_gemm_one_pass_depth): so lane 1 adds its product straight onto lane
 * 0's finished one and gets the bits of the two added afterwards. The
 * lanes take turns there (a flag per such layer, which lane 0 sets once its
 * product is in, with OpenMP atomics and flushes: no runtime objects to
 * create or destroy); lane 1 computes its input gradient first, so it rarely
 * waits. Its other gradients (convolutions, biases: 4 % of the
 * preset's) have their own block, m->lane_grads, added in at the end.
 */
#include "cvae_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define CPU_RELAX() __builtin_ia32_pause() /* kinder to the other thread while spinning */
#else
#define CPU_RELAX() ((void)0)
#endif

CVAE_API cvae_status cvae_model_create_with(cvae_model **out, const cvae_allocator *allocator)
{
    cvae_allocator mem;
    cvae_model *m;
    if (!out)
        return CVAE_ERR_INVALID_ARG;
    *out = NULL;
    if (cvi_allocator_init(&mem, allocator) != CVAE_OK)
        return CVAE_ERR_INVALID_ARG;
    m = cvi_calloc(&mem, 1, sizeof *m);
    if (!m)
        return CVAE_ERR_NOMEM;
    m->mem = mem;
    m->beta = 1.0;
    m->max_memory = CVI_MODEL_MAX_MEMORY;
    m->sigma = CVI_DEFAULT_SIGMA;
    m->sigma_learned = CVI_DEFAULT_SIGMA;
    m->width_setting = CVI_PRESET_WIDTH;
    m->kl_warmup = CVI_DEFAULT_KL_WARMUP;
    m->data_init = CVI_DEFAULT_DATA_INIT;
    m->logvar_init = CVI_DEFAULT_LOGVAR_INIT;
    *out = m;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_create(cvae_model **out)
{
    return cvae_model_create_with(out, NULL);
}

/* Frees the architecture and returns the model to empty (the options and
 * the message are kept). */
void cvi_model_clear(cvae_model *m)
{
    cvae_allocator mem = m->mem;
    double beta = m->beta, max_memory = m->max_memory, sigma = m->sigma;
    int classes_setting = m->classes_setting, binarize = m->binarize;
    int threads = m->threads, likelihood = m->likelihood;
    int width_setting = m->width_setting, hidden_setting = m->hidden_setting;
    uint64_t kl_warmup = m->kl_warmup;
    int data_init = m->data_init;
    double logvar_init = m->logvar_init;
    char err[CVI_ERRMSG_SIZE];
    memcpy(err, m->err, sizeof err);
    cvae_stack_destroy(m->enc);
    cvae_stack_destroy(m->dec);
    cvi_free_floats(&m->mem, m->params);
    cvi_free_floats(&m->mem, m->grads);
    cvi_free_floats(&m->mem, m->lane_grads);
    cvi_free(&m->mem, m->turns);
    cvi_free_floats(&m->mem, m->eps);
    cvi_free_floats(&m->mem, m->z);
    cvi_free_floats(&m->mem, m->dz);
    cvi_free_floats(&m->mem, m->denc);
    cvi_free_floats(&m->mem, m->dlogits);
    cvi_free_floats(&m->mem, m->xbuf);
    cvi_free_floats(&m->mem, m->shared.gemm_ws);
    cvi_free_floats(&m->mem, m->shared.dbuf[0]);
    cvi_free_floats(&m->mem, m->shared.dbuf[1]);
    cvi_free_floats(&m->mem, m->shared.scratch);
    cvi_free(&m->mem, m->ybuf);
    memset(m, 0, sizeof *m);
    m->mem = mem;
    m->beta = beta;
    m->max_memory = max_memory;
    m->classes_setting = classes_setting;
    m->binarize = binarize;
    m->threads = threads;
    m->likelihood = likelihood;
    m->sigma = sigma;
    m->sigma_learned = CVI_DEFAULT_SIGMA; /* belonged to the decoder just freed */
    m->width_setting = width_setting;
    m->hidden_setting = hidden_setting;
    m->kl_warmup = kl_warmup;
    m->data_init = data_init;
    m->logvar_init = logvar_init;
    memcpy(m->err, err, sizeof err);
}

CVAE_API void cvae_model_destroy(cvae_model *m)
{
    if (!m)
        return;
    cvae_allocator mem;
    cvi_model_clear(m);
    mem = m->mem; /* not read from the block being freed */
    cvi_free(&mem, m);
}

CVAE_API const char *cvae_model_last_error(const cvae_model *m)
{
    return m ? m->err : "model handle is NULL";
}

/* Plans both stacks and checks that they fit the image and latent shapes. */
static cvae_status plan_stacks(cvae_model *m, int c, int h, int w, int latent, int max_batch,
                               size_t *enc_n, size_t *dec_n, size_t *acts)
{
    cvi_shape eo, doo;
    cvi_stack_blocks en, dn;
    cvae_status st;
    int k;
    if ((st = cvi_stack_plan(m->enc, c, h, w, max_batch, enc_n, &eo, &en)) != CVAE_OK) {
        cvi_set_error(m->err, "encoder: %s", cvae_stack_last_error(m->enc));
        return st;
    }
    if ((st = cvi_stack_plan(m->dec, latent, 1, 1, max_batch, dec_n, &doo, &dn)) != CVAE_OK) {
        cvi_set_error(m->err, "decoder: %s", cvae_stack_last_error(m->dec));
        return st;
    }
    if (cvi_shape_size(eo) != 2 * (size_t)latent) {
        cvi_set_error(m->err, "encoder output %zux%zux%zu is not 2 x latent = %d values", eo.c,
                      eo.h, eo.w, 2 * latent);
        return CVAE_ERR_SHAPE;
    }
    if (doo.c != (size_t)c || doo.h != (size_t)h || doo.w != (size_t)w) {
        cvi_set_error(m->err, "decoder output %zux%zux%zu is not the image shape %dx%dx%d", doo.c,
                      doo.h, doo.w, c, h, w);
        return CVAE_ERR_SHAPE;
    }
    /* The stacks run one after the other: one set of gradient, scratch and
     * packing blocks, sized for the larger, serves both. */
    memset(&m->shared, 0, sizeof m->shared);
    for (k = 0; k < 2; k++)
        m->shared.dbuf_floats[k] =
            en.dbuf_floats[k] > dn.dbuf_floats[k] ? en.dbuf_floats[k] : dn.dbuf_floats[k];
    m->shared.scratch_floats =
        en.scratch_floats > dn.scratch_floats ? en.scratch_floats : dn.scratch_floats;
    *acts = en.act_floats + dn.act_floats; /* each at most 2^32 */
    return CVAE_OK;
}

/* Floats of every block allocate() and the stacks' builds ask for (the
 * small arrays aside), or SIZE_MAX when the sum overflows. */
static size_t planned_floats(const cvae_model *m, size_t acts, int threads)
{
    size_t B = m->max_batch, L = m->L, terms[12], total = 0;
    size_t i;
    terms[0] = m->nparams;                               /* params */
    terms[1] = m->nparams + m->lane_floats;              /* grads, lane 1's */
    terms[2] = terms[3] = terms[4] = B * L;              /* eps, z, dz */
    terms[5] = 2 * B * L;                                /* denc */
    terms[6] = terms[7] = B * m->image;                  /* dlogits, xbuf */
    terms[8] = cvi_gemm_workspace_floats(threads > CVI_LANES ? threads : CVI_LANES);
    terms[9] = m->shared.dbuf_floats[0] + m->shared.dbuf_floats[1] + 2;
    terms[10] = m->shared.scratch_floats * CVI_LANES;
    terms[11] = acts;
    for (i = 0; i < 12; i++)
        if (cvi_add_overflow(total, terms[i], &total))
            return SIZE_MAX;
    return total;
}

/* Lane 1's gradient block (see the top of this file): each layer's span in
 * it, in parameter order, and whether the layer's leading weights go
 * straight into m->grads instead, with a turn. Lays the spans out from
 * block when it is not NULL; returns the floats and the turns. */
static size_t lane_layout(cvae_model *m, float *block, int *turns)
{
    cvae_stack *stacks[2];
    /* A linear layer's weight product over lane 1's rows must be one pass.
     * They are at most half of a whole step's batch, but a shard of a
     * larger batch (cvae_model_shard_grads) may have up to max_batch. */
    size_t off = 0;
    int share = m->max_batch <= cvi_gemm_one_pass_depth(), s, i;
    stacks[0] = m->enc;
    stacks[1] = m->dec;
    *turns = 0;
    for (s = 0; s < 2; s++)
        for (i = 0; i < cvae_stack_layer_count(stacks[s]); i++) {
            cvae_layer *l = cvae_stack_layer(stacks[s], i);
            size_t direct = 0;
            if (!l->nparams)
                continue;
            /* Not the encoder's first layer with parameters: it computes no
             * input gradient, so lane 1 would have nothing to do while it
             * waits for its turn. */
            if (share && l->ops->kind == CVAE_LAYER_LINEAR && !(s == 0 && off == 0))
                direct = l->hp.linear.in_features * l->hp.linear.out_features;
            if (block) {
                l->lane_grads = block + off;
                l->lane_direct = direct;
                l->lane_turn = direct ? *turns : -1;
            }
            *turns += direct > 0;
            off += l->nparams - direct;
        }
    return off;
}

/* Allocates the model's blocks and buffers and builds both stacks on them,
 * once the whole is known to fit the model's memory limit. */
static cvae_status allocate(cvae_model *m, int c, int h, int w, int latent, int max_batch,
                            size_t acts)
{
    size_t B = (size_t)max_batch, L = (size_t)latent, io, floats;
    double bytes;
    cvae_status st;
    int turns;
    if (cvi_mul_overflow(B, m->image, &io) || io > CVI_MAX_ELEMS ||
        B * 2 * L > CVI_MAX_ELEMS) {
        cvi_set_error(m->err, "model: batch %d of %dx%dx%d images is too large", max_batch, c, h,
                      w);
        return CVAE_ERR_TOO_LARGE;
    }
    m->lane_floats = lane_layout(m, NULL, &turns);
    floats = planned_floats(m, acts, cvi_threads_resolve(m->threads));
    bytes = floats == SIZE_MAX ? HUGE_VAL : (double)floats * sizeof(float);
    if (m->max_memory > 0.0 && bytes > m->max_memory) {
        cvi_set_error(m->err,
                      "model: %dx%dx%d images, latent %d, batch %d and %zu parameters need "
                      "%.0f MB, more than the model's limit of %.0f MB (CVAE_MODEL_MAX_MEMORY)",
                      c, h, w, latent, max_batch, m->nparams, bytes / 1e6,
                      m->max_memory / 1e6);
        return CVAE_ERR_TOO_LARGE;
    }
    m->params = cvi_alloc_floats(&m->mem, m->nparams);
    m->grads = cvi_alloc_floats(&m->mem, m->nparams);
    m->lane_grads = m->lane_floats ? cvi_alloc_floats(&m->mem, m->lane_floats) : NULL;
    m->turns = turns ? cvi_calloc(&m->mem, (size_t)turns, sizeof *m->turns) : NULL;
    m->eps = cvi_alloc_floats(&m->mem, B * L);
    m->z = cvi_alloc_floats(&m->mem, B * L);
    m->dz = cvi_alloc_floats(&m->mem, B * L);
    m->denc = cvi_alloc_floats(&m->mem, B * 2 * L);
    m->dlogits = cvi_alloc_floats(&m->mem, io);
    m->xbuf = cvi_alloc_floats(&m->mem, io);
    /* Packing buffers for the threads, and at least one set per lane. */
    m->shared.gemm_threads = cvi_threads_resolve(m->threads);
    if (m->shared.gemm_threads < CVI_LANES)
        m->shared.gemm_threads = CVI_LANES;
    m->shared.gemm_ws = cvi_alloc_floats(&m->mem, cvi_gemm_workspace_floats(m->shared.gemm_threads));
    /* A block no layer writes still gets a float: NULL means failure. */
    m->shared.dbuf[0] = cvi_alloc_floats(&m->mem, m->shared.dbuf_floats[0] ? m->shared.dbuf_floats[0] : 1);
    m->shared.dbuf[1] = cvi_alloc_floats(&m->mem, m->shared.dbuf_floats[1] ? m->shared.dbuf_floats[1] : 1);
    m->shared.scratch = m->shared.scratch_floats
                            ? cvi_alloc_floats(&m->mem, m->shared.scratch_floats * CVI_LANES)
                            : NULL;
    m->ybuf = m->classes ? cvi_calloc(&m->mem, 2 * B, sizeof *m->ybuf) : NULL;
    if (!m->params || !m->grads || (m->lane_floats && !m->lane_grads) ||
        (turns && !m->turns) || !m->eps || !m->z || !m->dz || !m->denc || !m->dlogits ||
        !m->xbuf || !m->shared.gemm_ws || !m->shared.dbuf[0] || !m->shared.dbuf[1] ||
        (m->shared.scratch_floats && !m->shared.scratch) || (m->classes && !m->ybuf)) {
        cvi_set_error(m->err, "model: out of memory for %zu parameters and batch %d",
                      m->nparams, max_batch);
        return CVAE_ERR_NOMEM;
    }
    m->lane_turns = turns;
    memset(m->grads, 0, m->nparams * sizeof(float));
    if (m->lane_grads)
        memset(m->lane_grads, 0, m->lane_floats * sizeof(float));
    if ((st = cvi_stack_build_shared(m->enc, c, h, w, max_batch, m->params, m->grads,
                                     &m->shared)) != CVAE_OK) {
        cvi_set_error(m->err, "encoder: %s", cvae_stack_last_error(m->enc));
        return st;
    }
    if ((st = cvi_stack_build_shared(m->dec, latent, 1, 1, max_batch,
                                     m->params + m->enc_nparams, m->grads + m->enc_nparams,
                                     &m->shared)) != CVAE_OK) {
        cvi_set_error(m->err, "decoder: %s", cvae_stack_last_error(m->dec));
        return st;
    }
    lane_layout(m, m->lane_grads, &turns);
    return CVAE_OK;
}

cvae_status cvi_model_setup(cvae_model *m, cvae_stack *enc, cvae_stack *dec, int channels,
                            int height, int width, int latent, int max_batch,
                            size_t expect_nparams)
{
    size_t enc_n = 0, dec_n = 0, acts = 0;
    cvae_status st;
    if (m->enc) {
        cvae_stack_destroy(enc);
        cvae_stack_destroy(dec);
        cvi_set_error(m->err, "model: it already has an architecture");
        return CVAE_ERR_STATE;
    }
    if ((enc && cvi_stack_is_built(enc)) || (dec && cvi_stack_is_built(dec))) {
        /* A built stack may belong to another model: leave it alone. */
        if (enc && !cvi_stack_is_built(enc))
            cvae_stack_destroy(enc);
        if (dec && !cvi_stack_is_built(dec))
            cvae_stack_destroy(dec);
        cvi_set_error(m->err, "model: a stack is already built (stacks must be fresh)");
        return CVAE_ERR_INVALID_ARG;
    }
    m->enc = enc;
    m->dec = dec;
    if (enc && dec) { /* before they are built: sizes their per-thread buffers */
        cvae_stack_set_threads(enc, m->threads);
        cvae_stack_set_threads(dec, m->threads);
    }
    if (!enc || !dec || channels < 1 || height < 1 || width < 1 || latent < 1 || max_batch < 1) {
        cvi_set_error(m->err, "model: %s", !enc || !dec ? "a stack is NULL"
                                          : "image sides, latent and max batch must be >= 1");
        cvi_model_clear(m);
        return CVAE_ERR_INVALID_ARG;
    }
    if ((st = plan_stacks(m, channels, height, width, latent, max_batch, &enc_n, &dec_n,
                          &acts)) != CVAE_OK) {
        cvi_model_clear(m);
        return st;
    }
    {
        int ce = cvi_stack_set_labels(enc, NULL), cd = cvi_stack_set_labels(dec, NULL);
        if (ce < 0 || cd < 0 || (ce && cd && ce != cd)) {
            cvi_set_error(m->err, "model: its concat_label layers disagree on the class count");
            cvi_model_clear(m);
            return CVAE_ERR_SHAPE;
        }
        m->classes = (size_t)(ce ? ce : cd);
    }
    if (expect_nparams && enc_n + dec_n != expect_nparams) {
        cvi_set_error(m->err, "model: the architecture has %zu parameters, %zu expected",
                      enc_n + dec_n, expect_nparams);
        cvi_model_clear(m);
        return CVAE_ERR_FORMAT;
    }
    m->C = (size_t)channels;
    m->H = (size_t)height;
    m->W = (size_t)width;
    m->L = (size_t)latent;
    m->max_batch = (size_t)max_batch;
    m->image = m->C * m->H * m->W;
    m->enc_nparams = enc_n;
    m->nparams = enc_n + dec_n;
    m->steps = 0;
    if ((st = allocate(m, channels, height, width, latent, max_batch, acts)) != CVAE_OK) {
        cvi_model_clear(m);
        return st;
    }
    m->err[0] = '\0';
    return CVAE_OK;
}

/* The last layer with parameters of a stack, and whether only views follow
 * it; NULL when there is none. */
static cvae_layer *last_param_layer(cvae_stack *s, int *views_after)
{
    int i, n = cvae_stack_layer_count(s);
    *views_after = 1;
    for (i = n - 1; i >= 0; i--) {
        cvae_layer *l = cvae_stack_layer(s, i);
        if (l->nparams)
            return l;
        if (l->ops->forward)
            *views_after = 0;
    }
    return NULL;
}

/* CVAE_MODEL_LOGVAR_INIT: the encoder's last linear layer gives mu, then the
 * log-variances; their biases start at the setting. */
static void init_logvar(cvae_model *m)
{
    int views;
    cvae_layer *l = last_param_layer(m->enc, &views);
    size_t j, L = m->L;
    if (m->logvar_init == 0.0 || !l || l->ops->kind != CVAE_LAYER_LINEAR ||
        l->hp.linear.out_features != 2 * L)
        return;
    for (j = 0; j < L; j++)
        l->params[l->hp.linear.in_features * 2 * L + L + j] = (float)m->logvar_init;
}

/* Initialises the parameters, encoder then decoder, from one stream that
 * the eps generator then continues. */
static void init_params(cvae_model *m, uint64_t seed)
{
    cvi_rng_seed(&m->rng, seed);
    cvi_stack_init_rng(m->enc, &m->rng);
    cvi_stack_init_rng(m->dec, &m->rng);
    init_logvar(m);
}

/* CVAE_MODEL_DATA_INIT, before the first training step: the decoder's output
 * layer's biases (followed by views only) set to the logit of the batch's
 * mean target, per channel (conv2d, conv_transpose2d over all positions) or
 * per value (linear); means clamped to [0.001, 0.999]. No draw, so the eps
 * stream is as without it. */
static void init_output_bias(cvae_model *m, const float *x, size_t n)
{
    int views;
    cvae_layer *l = last_param_layer(m->dec, &views);
    size_t groups, per, g, b, q, I = m->image;
    float *bias;
    if (!l || !views)
        return;
    if (l->ops->kind == CVAE_LAYER_LINEAR) {
        groups = l->hp.linear.out_features;
        bias = l->params + l->hp.linear.in_features * groups;
    } else if (l->ops->kind == CVAE_LAYER_CONV2D || l->ops->kind == CVAE_LAYER_CONV_TRANSPOSE2D) {
        groups = l->out.c;
        bias = l->params + l->nparams - groups;
    } else {
        return;
    }
    if (groups == 0 || I % groups != 0)
        return;
    per = I / groups; /* consecutive values of one channel, or 1 */
    for (g = 0; g < groups; g++) {
        double sum = 0.0, mean;
        for (b = 0; b < n; b++)
            for (q = 0; q < per; q++)
                sum += x[b * I + g * per + q];
        mean = sum / (double)(n * per);
        mean = mean < 0.001 ? 0.001 : mean > 0.999 ? 0.999 : mean;
        bias[g] = (float)log(mean / (1.0 - mean));
    }
}

double cvi_model_kl_weight(const cvae_model *m)
{
    double t = (double)m->steps + 1.0;
    if (m->kl_warmup == 0 || t >= (double)m->kl_warmup)
        return m->beta;
    return m->beta * t / (double)m->kl_warmup;
}

CVAE_API cvae_status cvae_model_init_stacks(cvae_model *m, cvae_stack *encoder,
                                            cvae_stack *decoder, int channels, int height,
                                            int width, int latent, int max_batch, uint64_t seed)
{
    cvae_status st;
    if (!m) {
        cvae_stack_destroy(encoder);
        cvae_stack_destroy(decoder);
        return CVAE_ERR_INVALID_ARG;
    }
    st = cvi_model_setup(m, encoder, decoder, channels, height, width, latent, max_batch, 0);
    if (st == CVAE_OK)
        init_params(m, seed);
    return st;
}

/* Appends the layer a constructor call just made into *l (read only after
 * the call: argument evaluation order is unspecified); a failed
 * constructor's status passes through. */
static cvae_status add(cvae_stack *s, cvae_status made, cvae_layer **l)
{
    if (made != CVAE_OK)
        return made;
    return cvae_stack_add(s, *l);
}

/* classes > 0: the conditional preset, with the one-hot label joining the
 * flattened features (encoder), the latent code and the decoder's first
 * hidden layer. */
static cvae_status preset_encoder(cvae_stack *s, int latent, int classes, int width, int hidden,
                                  const cvae_allocator *a)
{
    cvae_layer *l = NULL;
    cvae_status st = add(s, cvae_layer_create_conv2d_with(&l, width, 4, 4, 2, 2, 1, 1, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_relu_with(&l, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_conv2d_with(&l, 2 * width, 4, 4, 2, 2, 1, 1, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_relu_with(&l, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_flatten_with(&l, a), &l);
    if (st == CVAE_OK && classes)
        st = add(s, cvae_layer_create_concat_label_with(&l, classes, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_linear_with(&l, hidden, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_relu_with(&l, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_linear_with(&l, 2 * latent, a), &l);
    return st;
}

static cvae_status preset_decoder(cvae_stack *s, int channels, int h4, int w4, int classes,
                                  int width, int hidden, const cvae_allocator *a)
{
    cvae_layer *l = NULL;
    cvae_status st = CVAE_OK;
    if (classes)
        st = add(s, cvae_layer_create_concat_label_with(&l, classes, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_linear_with(&l, hidden, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_relu_with(&l, a), &l);
    /* The label again after the first hidden layer: with two ways in, the
     * decoder follows the label rather than whatever of the class z kept,
     * and samples drawn for a digit show that digit far more often. */
    if (st == CVAE_OK && classes)
        st = add(s, cvae_layer_create_concat_label_with(&l, classes, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_linear_with(&l, 2 * width * h4 * w4, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_relu_with(&l, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_reshape_with(&l, 2 * width, h4, w4, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_conv_transpose2d_with(&l, width, 4, 4, 2, 2, 1, 1, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_relu_with(&l, a), &l);
    if (st == CVAE_OK)
        st = add(s, cvae_layer_create_conv_transpose2d_with(&l, channels, 4, 4, 2, 2, 1, 1, a), &l);
    return st;
}

CVAE_API cvae_status cvae_model_init_preset(cvae_model *m, int channels, int height, int width,
                                            int latent, int max_batch, uint64_t seed)
{
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_status st;
    int hidden;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if (m->enc) {
        cvi_set_error(m->err, "model_init_preset: the model already has an architecture");
        return CVAE_ERR_STATE;
    }
    if (channels < 1 || height < 1 || width < 1 || latent < 1 || max_batch < 1) {
        cvi_set_error(m->err,
                      "model_init_preset: image %dx%dx%d, latent %d and max batch %d must all be "
                      ">= 1",
                      channels, height, width, latent, max_batch);
        return CVAE_ERR_INVALID_ARG;
    }
    if (height % 4 || width % 4) {
        cvi_set_error(m->err,
                      "model_init_preset: image sides %dx%d are not multiples of 4 (two "
                      "stride-2 layers halve them twice)",
                      height, width);
        return CVAE_ERR_SHAPE;
    }
    if (latent > INT32_MAX / 2) {
        cvi_set_error(m->err, "model_init_preset: latent %d is too large", latent);
        return CVAE_ERR_TOO_LARGE;
    }
    /* The hidden width grows with the input unless set. */
    hidden = m->hidden_setting ? m->hidden_setting
                               : (double)channels * height * width <= CVI_PRESET_SMALL_IMAGE
                                     ? CVI_PRESET_HIDDEN
                                     : CVI_PRESET_HIDDEN_LARGE;
    if ((double)2 * m->width_setting * (height / 4) * (width / 4) > INT32_MAX) {
        cvi_set_error(m->err, "model_init_preset: width %d for %dx%d images is too large",
                      m->width_setting, height, width);
        return CVAE_ERR_TOO_LARGE;
    }
    if ((st = cvae_stack_create_with(&enc, &m->mem)) != CVAE_OK ||
        (st = cvae_stack_create_with(&dec, &m->mem)) != CVAE_OK ||
        (st = preset_encoder(enc, latent, m->classes_setting, m->width_setting, hidden,
                             &m->mem)) != CVAE_OK ||
        (st = preset_decoder(dec, channels, height / 4, width / 4, m->classes_setting,
                             m->width_setting, hidden, &m->mem)) != CVAE_OK) {
        cvi_set_error(m->err, "model_init_preset: %s", cvae_status_string(st));
        cvae_stack_destroy(enc);
        cvae_stack_destroy(dec);
        return st;
    }
    return cvae_model_init_stacks(m, enc, dec, channels, height, width, latent, max_batch, seed);
}

static cvae_status require_arch(cvae_model *m, const char *what)
{
    if (!m->enc) {
        cvi_set_error(m->err, "%s: the model has no architecture yet", what);
        return CVAE_ERR_STATE;
    }
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_shape(const cvae_model *m, int *channels, int *height,
                                      int *width, int *latent, int *max_batch)
{
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if (!m->enc)
        return CVAE_ERR_STATE;
    if (channels)
        *channels = (int)m->C;
    if (height)
        *height = (int)m->H;
    if (width)
        *width = (int)m->W;
    if (latent)
        *latent = (int)m->L;
    if (max_batch)
        *max_batch = (int)m->max_batch;
    return CVAE_OK;
}

CVAE_API cvae_stack *cvae_model_encoder(cvae_model *m)
{
    return m ? m->enc : NULL;
}

CVAE_API cvae_stack *cvae_model_decoder(cvae_model *m)
{
    return m ? m->dec : NULL;
}

CVAE_API cvae_status cvae_model_set(cvae_model *m, cvae_model_option key, double value)
{
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if (key == CVAE_MODEL_THREADS) {
        if (!(value >= 0.0 && value <= CVI_MAX_THREADS) || value != floor(value)) {
            cvi_set_error(m->err, "model: threads %g is not an integer in [0, %d]", value,
                          CVI_MAX_THREADS);
            return CVAE_ERR_INVALID_ARG;
        }
        if (m->enc && cvi_threads_resolve((int)value) > m->shared.gemm_threads) {
            /* Grow the stacks' shared packing buffers now: calls never allocate. */
            int n = cvi_threads_resolve((int)value);
            float *ws = cvi_alloc_floats(&m->mem, cvi_gemm_workspace_floats(n));
            if (!ws) {
                cvi_set_error(m->err, "model: out of memory for the buffers of %d threads", n);
                return CVAE_ERR_NOMEM;
            }
            cvi_free_floats(&m->mem, m->shared.gemm_ws);
            m->shared.gemm_ws = ws;
            m->shared.gemm_threads = n;
            cvi_stack_use_gemm_ws(m->enc, ws, n);
            cvi_stack_use_gemm_ws(m->dec, ws, n);
        }
        if (m->enc) { /* cannot fail now: no growth, valid count */
            cvae_stack_set_threads(m->enc, (int)value);
            cvae_stack_set_threads(m->dec, (int)value);
        }
        m->threads = (int)value;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_BINARIZE) {
        if (value != 0.0 && value != 1.0) {
            cvi_set_error(m->err, "model: binarize %g is not 0 or 1", value);
            return CVAE_ERR_INVALID_ARG;
        }
        m->binarize = value == 1.0;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_CLASSES) {
        if (!(value >= 0.0 && value <= CVI_MAX_CLASSES) || value != floor(value) || value == 1.0) {
            cvi_set_error(m->err, "model: classes %g is not 0 or an integer in [2, %d]", value,
                          CVI_MAX_CLASSES);
            return CVAE_ERR_INVALID_ARG;
        }
        if (m->enc) {
            cvi_set_error(m->err, "model: classes is set before the architecture, which then "
                                  "decides it");
            return CVAE_ERR_STATE;
        }
        m->classes_setting = (int)value;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_LIKELIHOOD) {
        if (value != CVAE_LIKELIHOOD_BERNOULLI && value != CVAE_LIKELIHOOD_GAUSSIAN) {
            cvi_set_error(m->err, "model: likelihood %g is not 0 (Bernoulli) or 1 (Gaussian)",
                          value);
            return CVAE_ERR_INVALID_ARG;
        }
        m->likelihood = (int)value;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_SIGMA) {
        if (value != 0.0 && !(value >= CVI_MIN_SIGMA && value <= CVI_MAX_SIGMA)) {
            cvi_set_error(m->err, "model: sigma %g is not 0 (learned) or in [%g, %g]", value,
                          CVI_MIN_SIGMA, CVI_MAX_SIGMA);
            return CVAE_ERR_INVALID_ARG;
        }
        m->sigma = value;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_WIDTH || key == CVAE_MODEL_HIDDEN) {
        int width = key == CVAE_MODEL_WIDTH;
        double lo = width ? 1.0 : 0.0, hi = width ? CVI_PRESET_MAX_WIDTH : CVI_PRESET_MAX_HIDDEN;
        if (!(value >= lo && value <= hi) || value != floor(value)) {
            cvi_set_error(m->err, "model: %s %g is not an integer in [%g, %g]",
                          width ? "width" : "hidden", value, lo, hi);
            return CVAE_ERR_INVALID_ARG;
        }
        if (width)
            m->width_setting = (int)value;
        else
            m->hidden_setting = (int)value;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_MAX_MEMORY) {
        if (!(value >= 0.0 && value <= CVI_MODEL_MAX_MEMORY_CAP) || value != floor(value)) {
            cvi_set_error(m->err, "model: max memory %g is not a whole number of bytes in [0, %g]",
                          value, CVI_MODEL_MAX_MEMORY_CAP);
            return CVAE_ERR_INVALID_ARG;
        }
        m->max_memory = value;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_SIGMA_IN_USE) {
        cvi_set_error(m->err, "model: sigma in use is read only (set CVAE_MODEL_SIGMA)");
        return CVAE_ERR_INVALID_ARG;
    }
    if (key == CVAE_MODEL_KL_WARMUP) {
        if (!(value >= 0.0 && value <= CVI_MAX_KL_WARMUP) || value != floor(value)) {
            cvi_set_error(m->err, "model: KL warm-up %g is not a whole number of steps in [0, %.0f]",
                          value, CVI_MAX_KL_WARMUP);
            return CVAE_ERR_INVALID_ARG;
        }
        m->kl_warmup = (uint64_t)value;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_DATA_INIT) {
        if (value != 0.0 && value != 1.0) {
            cvi_set_error(m->err, "model: data init %g is not 0 or 1", value);
            return CVAE_ERR_INVALID_ARG;
        }
        m->data_init = value == 1.0;
        return CVAE_OK;
    }
    if (key == CVAE_MODEL_LOGVAR_INIT) {
        if (!(value >= CVI_MIN_LOGVAR_INIT && value <= 0.0)) {
            cvi_set_error(m->err, "model: log-variance init %g is not in [%g, 0]", value,
                          CVI_MIN_LOGVAR_INIT);
            return CVAE_ERR_INVALID_ARG;
        }
        m->logvar_init = value;
        return CVAE_OK;
    }
    if (key != CVAE_MODEL_BETA) {
        cvi_set_error(m->err, "model: no option with key %d", (int)key);
        return CVAE_ERR_INVALID_ARG;
    }
    if (!isfinite(value) || value < 0.0) {
        cvi_set_error(m->err, "model: beta %g is not finite and >= 0", value);
        return CVAE_ERR_INVALID_ARG;
    }
    m->beta = value;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_get(const cvae_model *m, cvae_model_option key, double *value)
{
    if (!m || !value)
        return CVAE_ERR_INVALID_ARG;
    switch (key) {
    case CVAE_MODEL_BETA: *value = m->beta; return CVAE_OK;
    case CVAE_MODEL_THREADS: *value = (double)m->threads; return CVAE_OK;
    case CVAE_MODEL_MAX_MEMORY: *value = m->max_memory; return CVAE_OK;
    case CVAE_MODEL_CLASSES:
        *value = m->enc ? (double)m->classes : (double)m->classes_setting;
        return CVAE_OK;
    case CVAE_MODEL_BINARIZE: *value = m->binarize; return CVAE_OK;
    case CVAE_MODEL_LIKELIHOOD: *value = m->likelihood; return CVAE_OK;
    case CVAE_MODEL_SIGMA: *value = m->sigma; return CVAE_OK;
    case CVAE_MODEL_WIDTH: *value = m->width_setting; return CVAE_OK;
    case CVAE_MODEL_HIDDEN: *value = m->hidden_setting; return CVAE_OK;
    case CVAE_MODEL_SIGMA_IN_USE:
        *value = m->sigma > 0.0 ? m->sigma : m->sigma_learned;
        return CVAE_OK;
    case CVAE_MODEL_KL_WARMUP: *value = (double)m->kl_warmup; return CVAE_OK;
    case CVAE_MODEL_DATA_INIT: *value = m->data_init; return CVAE_OK;
    case CVAE_MODEL_LOGVAR_INIT: *value = m->logvar_init; return CVAE_OK;
    default: return CVAE_ERR_INVALID_ARG;
    }
}

CVAE_API cvae_status cvae_model_bounds(const cvae_model *m, cvae_model_option key, double *min,
                                       double *max)
{
    double lo = 0.0, hi;
    if (!m || !min || !max)
        return CVAE_ERR_INVALID_ARG;
    switch (key) {
    case CVAE_MODEL_LIKELIHOOD: hi = CVAE_LIKELIHOOD_GAUSSIAN; break;
    case CVAE_MODEL_SIGMA: hi = CVI_MAX_SIGMA; break; /* 0, or from CVI_MIN_SIGMA */
    case CVAE_MODEL_WIDTH: lo = 1.0; hi = CVI_PRESET_MAX_WIDTH; break;
    case CVAE_MODEL_HIDDEN: hi = CVI_PRESET_MAX_HIDDEN; break;
    case CVAE_MODEL_SIGMA_IN_USE: lo = CVI_MIN_SIGMA; hi = CVI_MAX_SIGMA; break;
    case CVAE_MODEL_BETA: hi = DBL_MAX; break;
    case CVAE_MODEL_THREADS: hi = (double)CVI_MAX_THREADS; break;
    case CVAE_MODEL_MAX_MEMORY: hi = CVI_MODEL_MAX_MEMORY_CAP; break;
    case CVAE_MODEL_CLASSES: hi = CVI_MAX_CLASSES; break;
    case CVAE_MODEL_BINARIZE: hi = 1.0; break;
    case CVAE_MODEL_KL_WARMUP: hi = CVI_MAX_KL_WARMUP; break;
    case CVAE_MODEL_DATA_INIT: hi = 1.0; break;
    case CVAE_MODEL_LOGVAR_INIT: lo = CVI_MIN_LOGVAR_INIT; hi = 0.0; break;
    default: return CVAE_ERR_INVALID_ARG;
    }
    *min = lo;
    *max = hi;
    return CVAE_OK;
}

CVAE_API float *cvae_model_params(cvae_model *m, size_t *count)
{
    if (count)
        *count = m ? m->nparams : 0;
    return m ? m->params : NULL;
}

CVAE_API float *cvae_model_grads(cvae_model *m, size_t *count)
{
    if (count)
        *count = m ? m->nparams : 0;
    return m ? m->grads : NULL;
}

CVAE_API size_t cvae_model_param_count(const cvae_model *m)
{
    return m ? m->nparams : 0;
}

CVAE_API uint64_t cvae_model_steps(const cvae_model *m)
{
    return m ? m->steps : 0;
}

/* Checks a call on n images of x (or on n outputs). */
static cvae_status check_call(cvae_model *m, const char *what, const void *a, const void *b,
                              int n, int chunked)
{
    cvae_status st;
    if ((st = require_arch(m, what)) != CVAE_OK)
        return st;
    if (!a || !b) {
        cvi_set_error(m->err, "%s: a buffer is NULL", what);
        return CVAE_ERR_INVALID_ARG;
    }
    if (n < 1 || (!chunked && (size_t)n > m->max_batch)) {
        cvi_set_error(m->err, "%s: %d images is not in [1, %zu]", what, n,
                      chunked ? (size_t)INT32_MAX : m->max_batch);
        return CVAE_ERR_INVALID_ARG;
    }
    return CVAE_OK;
}

/* A conditional model needs n labels in [0, classes); any other model none.
 * The message starts with what. */
cvae_status cvi_model_check_labels(cvae_model *m, const char *what, const int *labels, int n)
{
    int i;
    if (m->classes == 0) {
        if (labels) {
            cvi_set_error(m->err, "%s: labels given to a model that is not conditional", what);
            return CVAE_ERR_INVALID_ARG;
        }
        return CVAE_OK;
    }
    if (!labels) {
        cvi_set_error(m->err, "%s: the model is conditional (%zu classes): use the _labels call",
                      what, m->classes);
        return CVAE_ERR_INVALID_ARG;
    }
    for (i = 0; i < n; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= m->classes) {
            cvi_set_error(m->err, "%s: label %d of image %d is not in [0, %zu)", what, labels[i],
                          i, m->classes);
            return CVAE_ERR_INVALID_ARG;
        }
    return CVAE_OK;
}

/* Points both stacks' concat_label layers at labels (NULL when the call
 * ends, so that no stale pointer outlives it). */
void cvi_model_use_labels(cvae_model *m, const int *labels)
{
    if (m->classes) {
        cvi_stack_set_labels(m->enc, labels);
        cvi_stack_set_labels(m->dec, labels);
    }
}

void cvi_binarize(cvi_rng *rng, float *dst, const float *src, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        dst[i] = cvi_rng_uniform(rng) < src[i] ? 1.0f : 0.0f;
}

size_t cvi_first_nonfinite(const float *v, size_t n)
{
    /* x * 0 is 0 for finite x and NaN otherwise: one pass of independent
     * sums the compiler can vectorise, then a search only on a hit. */
    float acc[16] = {0};
    size_t i, j, blocks = n / 16 * 16;
    int hit = 0;
    for (i = 0; i < blocks; i += 16)
        for (j = 0; j < 16; j++)
            acc[j] += v[i + j] * 0.0f;
    for (j = 0; j < 16; j++)
        hit |= acc[j] != 0.0f || acc[j] != acc[j];
    for (i = blocks; i < n; i++)
        hit |= !isfinite(v[i]);
    if (!hit)
        return n;
    for (i = 0; i < n && isfinite(v[i]); i++)
        ;
    return i;
}

/* n x L standard normals, drawn image by image, so that an image's eps does
 * not depend on how a dataset is cut into chunks. */
static void draw_eps(cvi_rng *rng, float *eps, size_t n, size_t L)
{
    size_t i;
    for (i = 0; i < n; i++)
        cvi_rng_normal(rng, eps + i * L, L);
}

/* Images in the chunk of n that starts at first: at most the max batch. */
static size_t chunk(const cvae_model *m, size_t n, size_t first)
{
    return n - first < m->max_batch ? n - first : m->max_batch;
}

/* z = mu + exp(lv / 2) eps for n images; h holds (mu, lv) per image. */
static void reparameterise(float *z, const float *h, const float *eps, size_t n, size_t L)
{
    size_t i, j;
    for (i = 0; i < n; i++) {
        const float *mu = h + i * 2 * L, *lv = mu + L;
        for (j = 0; j < L; j++)
            z[i * L + j] = mu[j] + expf(0.5f * lv[j]) * eps[i * L + j];
    }
}

/* KL of images [first, first + n) and the encoder's gradient for them: KL
 * terms plus the path through z. h is their encoder output. Returns the KL
 * summed over the n images. */
static double latent_backward(cvae_model *m, const float *h, size_t first, size_t n, float scale)
{
    size_t i, j, L = m->L;
    double kl = 0.0;
    float kscale = (float)cvi_model_kl_weight(m) * scale;
    for (i = 0; i < n; i++) {
        const float *mu = h + i * 2 * L, *lv = mu + L;
        float *dmu = m->denc + (first + i) * 2 * L, *dlv = dmu + L;
        const float *dz = m->dz + (first + i) * L, *eps = m->eps + (first + i) * L;
        kl += cvi_kl_normal(mu, lv, L, dmu, dlv, kscale);
        for (j = 0; j < L; j++) {
            dmu[j] += dz[j];
            dlv[j] += dz[j] * eps[j] * 0.5f * expf(0.5f * lv[j]);
        }
    }
    return kl;
}

double cvi_model_recon(const cvae_model *m, const float *logits, const float *x, size_t n,
                       float *dlogits, float scale)
{
    if (m->likelihood == CVAE_LIKELIHOOD_GAUSSIAN)
        return cvi_gauss_logits(logits, x, n, dlogits, scale,
                                m->sigma > 0.0 ? m->sigma : m->sigma_learned);
    return cvi_bce_logits(logits, x, n, dlogits, scale);
}

void cvi_lane_turn_give(struct cvi_lane_turns *t, const cvae_layer *l)
{
#ifdef _OPENMP
    if (t && l->lane_direct) {
        int *given = &t[l->lane_turn].given;
#pragma omp flush /* lane 0's product is out before the flag */
#pragma omp atomic write
        *given = 1;
#pragma omp flush
    }
#else
    (void)t;
    (void)l;
#endif
}

void cvi_lane_turn_take(struct cvi_lane_turns *t, const cvae_layer *l)
{
#ifdef _OPENMP
    if (t && l->lane_direct) {
        int *given = &t[l->lane_turn].given, v;
        for (;;) {
#pragma omp atomic read
            v = *given;
            if (v)
                break;
            CPU_RELAX();
        }
#pragma omp flush /* and lane 0's product is seen after it */
    }
#else
    (void)t;
    (void)l;
#endif
}

/* Lane 1's span of layer l added into lane 0's, element by element (the same
 * sums for any number of threads). */
static void add_lane_span(const cvae_layer *l, int threads)
{
    float *g = l->grads + l->lane_direct;
    const float *h = l->lane_grads;
    size_t n = l->nparams - l->lane_direct, i;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && n > 65536)
#endif
    for (i = 0; i < n; i++)
        g[i] += h[i];
}

/* Every layer's lane 1 span added into lane 0's. */
static void add_lane_grads(cvae_model *m, int threads)
{
    cvae_stack *stacks[2];
    int s, i;
    stacks[0] = m->enc;
    stacks[1] = m->dec;
    for (s = 0; s < 2; s++)
        for (i = 0; i < cvae_stack_layer_count(stacks[s]); i++) {
            const cvae_layer *l = cvae_stack_layer(stacks[s], i);
            if (l->nparams)
                add_lane_span(l, threads);
        }
}

/* One lane's part of a training batch: its rows, and the workspace its
 * passes use in both stacks. */
typedef struct lane {
    size_t first, n;
    const float *h, *logits; /* its rows of the encoder's and decoder's outputs */
    cvi_workspace enc_ws, dec_ws;
    size_t clear_from, clear_to; /* its share of m->grads to clear */
    double recon, kl, sq;
} lane;

/* The lanes of a shard: rows [first, first + n) of a batch of total images
 * (a whole batch: first 0, n total), cut where the batch's lanes are cut (see
 * the top of this file), so that a shard that is one lane computes what that
 * lane computes in a whole step. Returns how many pieces the shard has;
 * their rows are the shard's own (0 .. n - 1). */
static int cut_lanes(size_t first, size_t n, size_t total, size_t *start, size_t *len)
{
    int k, count = total >= 2 * CVI_LANE_MIN ? CVI_LANES : 1, parts = 0;
    for (k = 0; k < count; k++) {
        size_t a = total * (size_t)k / (size_t)count, b = total * (size_t)(k + 1) / (size_t)count;
        a = a > first ? a : first;
        b = b < first + n ? b : first + n;
        if (a < b) {
            start[parts] = a - first;
            len[parts++] = b - a;
        }
    }
    return parts;
}

/* Gives count lanes (their rows in first and n) their workspaces: lane k
 * writes gradient block k and uses the k-th scratch and packing buffers
 * (from the k-th on, with threads > 1); `threads` is what each lane's
 * passes may use inside. */
static void make_lanes(cvae_model *m, const size_t *start, const size_t *len, int count,
                       int threads, lane *lanes)
{
    int k;
    cvi_workspace enc = cvi_stack_workspace(m->enc), dec = cvi_stack_workspace(m->dec);
    for (k = 0; k < count; k++) {
        lane *ln = &lanes[k];
        ln->first = start[k];
        ln->n = len[k];
        ln->recon = ln->kl = ln->sq = 0.0;
        ln->enc_ws = enc;
        ln->dec_ws = dec;
        ln->enc_ws.gemm.threads = ln->dec_ws.gemm.threads = threads;
        ln->enc_ws.gemm.ws = ln->dec_ws.gemm.ws =
            m->shared.gemm_ws + (size_t)k * cvi_gemm_workspace_floats(1);
        ln->enc_ws.scratch = ln->dec_ws.scratch =
            m->shared.scratch ? m->shared.scratch + (size_t)k * m->shared.scratch_floats : NULL;
        ln->enc_ws.lane = ln->dec_ws.lane = k;
        ln->enc_ws.turns = ln->dec_ws.turns = NULL; /* set when the lanes run at once */
        ln->enc_ws.labels = enc.labels ? enc.labels + ln->first : NULL;
        ln->dec_ws.labels = dec.labels ? dec.labels + ln->first : NULL;
        ln->enc_ws.hook = ln->dec_ws.hook = NULL;
    }
    /* Clearing the gradients: lane 1 clears its own block and the end of
     * lane 0's, so that both lanes clear as much (a lane on its own: all). */
    if (count == 1) {
        lanes[0].clear_from = 0;
        lanes[0].clear_to = m->nparams;
    } else {
        size_t half = (m->nparams + m->lane_floats) / 2;
        lanes[0].clear_from = 0;
        lanes[0].clear_to = lanes[1].clear_from = half < m->nparams ? half : m->nparams;
        lanes[1].clear_to = m->nparams;
    }
}

/* A lane's gradients cleared, on the lane's own thread. */
static void lane_clear(cvae_model *m, const lane *ln)
{
    memset(m->grads + ln->clear_from, 0, (ln->clear_to - ln->clear_from) * sizeof(float));
    if (ln->enc_ws.lane == 1)
        memset(m->lane_grads, 0, m->lane_floats * sizeof(float));
}

/* After the encoder: the lane's latent draws from its codes ln->h. */
static void lane_latent(cvae_model *m, const lane *ln)
{
    size_t L = m->L, f = ln->first;
    reparameterise(m->z + f * L, ln->h, m->eps + f * L, ln->n, L);
}

/* After the decoder: what a learned sigma needs of the lane's logits. */
static void lane_decoded(cvae_model *m, lane *ln, const float *x)
{
    if (m->likelihood == CVAE_LIKELIHOOD_GAUSSIAN && m->sigma == 0.0)
        ln->sq = cvi_sq_error_logits(ln->logits, x + ln->first * m->image, ln->n * m->image);
}

/* The lane's reconstruction term and its gradient, into m->dlogits. */
static void lane_recon(cvae_model *m, lane *ln, const float *x, float scale)
{
    size_t f = ln->first, I = m->image;
    ln->recon = cvi_model_recon(m, ln->logits, x + f * I, ln->n * I, m->dlogits + f * I, scale);
}

/* Encoder, reparameterisation and decoder on one lane's images of x. */
static void lane_forward(cvae_model *m, lane *ln, const float *x)
{
    size_t L = m->L, f = ln->first;
    lane_clear(m, ln);
    ln->h = cvi_stack_forward_part(m->enc, &ln->enc_ws, f, ln->n, x + f * m->image);
    lane_latent(m, ln);
    ln->logits = cvi_stack_forward_part(m->dec, &ln->dec_ws, f, ln->n, m->z + f * L);
    lane_decoded(m, ln, x);
}

/* The loss terms of one lane's images and the backward passes. */
static void lane_backward(cvae_model *m, lane *ln, const float *x, float scale)
{
    size_t L = m->L, f = ln->first, I = m->image;
    lane_recon(m, ln, x, scale);
    cvi_stack_backward_part(m->dec, &ln->dec_ws, f, ln->n, m->dlogits + f * I, m->dz + f * L);
    ln->kl = latent_backward(m, ln->h, f, ln->n, scale);
    cvi_stack_backward_part(m->enc, &ln->enc_ws, f, ln->n, m->denc + f * 2 * L, NULL);
}

#ifdef _OPENMP
/* The lanes (adjacent rows) as one team (cvi_workspace.team) while they run
 * at once, one thread each; on 0, lanes on their own. Only threads run
 * lanes at once. */
static void lanes_team(lane *lanes, int count, int on)
{
    size_t rows = lanes[count - 1].first + lanes[count - 1].n - lanes[0].first;
    int k;
    for (k = 0; k < count; k++) {
        lane *ln = &lanes[k];
        ln->enc_ws.team = ln->dec_ws.team = on && count > 1 ? count : 0;
        ln->enc_ws.team_rows = ln->dec_ws.team_rows = rows;
        ln->enc_ws.team_before = ln->dec_ws.team_before = ln->first - lanes[0].first;
    }
}
#endif

/* A forward-only job on rows [ln->first, + ln->n) of the model's buffers,
 * with the lane's workspaces. */
typedef void (*rows_job)(cvae_model *m, const lane *ln, void *ctx);

/* Runs job on n images: as lanes (cut as a step cuts them) at once, one
 * thread each and one team, where there are threads for them; else once on
 * all n with every thread inside each product. Every row is computed as
 * it is alone, so either gives the same bits. */
static void run_rows(cvae_model *m, size_t n, rows_job job, void *ctx)
{
    lane lanes[CVI_LANES];
    size_t start[CVI_LANES] = {0}, len[CVI_LANES] = {0}; /* for gcc without OpenMP */
    int threads = cvi_threads_resolve(m->threads), k;
    int count = threads >= CVI_LANES ? cut_lanes(0, n, n, start, len) : 1;
    if (count == 1) {
        start[0] = 0;
        len[0] = n;
        make_lanes(m, start, len, 1, threads, lanes);
        job(m, &lanes[0], ctx);
        return;
    }
    make_lanes(m, start, len, count, 1, lanes);
#ifdef _OPENMP
    lanes_team(lanes, count, 1);
#pragma omp parallel num_threads(count)
    {
        int me = omp_get_thread_num();
        if (omp_get_num_threads() < count) { /* one thread: lanes in turn */
            if (me == 0) {
                lanes_team(lanes, count, 0);
                for (k = 0; k < count; k++)
                    job(m, &lanes[k], ctx);
            }
        } else {
            job(m, &lanes[me], ctx);
        }
    }
#else
    for (k = 0; k < count; k++)
        job(m, &lanes[k], ctx);
#endif
}

typedef struct forward_job {
    cvae_stack *s;
    const float *in;
    float *images; /* sigmoid of the output, when not NULL */
} forward_job;

static void forward_rows(cvae_model *m, const lane *ln, void *ctx)
{
    const forward_job *j = ctx;
    int enc = j->s == m->enc;
    const float *out = cvi_stack_forward_part(j->s, enc ? &ln->enc_ws : &ln->dec_ws, ln->first,
                                              ln->n, j->in + ln->first * cvi_stack_in_size(j->s));
    if (j->images)
        cvi_sigmoid(j->images + ln->first * m->image, out, ln->n * m->image);
}

const float *cvi_model_forward(cvae_model *m, cvae_stack *s, const float *in, size_t n)
{
    forward_job j;
    j.s = s;
    j.in = in;
    j.images = NULL;
    run_rows(m, n, forward_rows, &j);
    return cvi_stack_forward_part_output(s);
}

/* cvae_model_set_grads_ready: a layer's span of the gradient block is final
 * once the step's last part has done that layer's backward and the other
 * parts' blocks are added in (the same sums, element by element, as
 * add_lane_grads). */
typedef struct ready_hook {
    cvi_grad_hook h; /* first: the stacks see this */
    cvae_model *m;
    int parts; /* lanes of the shard: with 2, lane 1's span is added first */
} ready_hook;

static void layer_ready(const cvi_grad_hook *h, const cvae_layer *l)
{
    const ready_hook *rh = (const ready_hook *)(const void *)h;
    cvae_model *m = rh->m;
    if (rh->parts > 1)
        add_lane_span(l, 1);
    m->grads_ready(m->grads_ready_ctx, (size_t)(l->grads - m->grads), l->nparams);
}

/* Every layer's span, in backward order, when none was reported during the
 * passes. */
static void report_all(cvae_model *m)
{
    cvae_stack *stacks[2];
    int s, i;
    stacks[0] = m->dec;
    stacks[1] = m->enc;
    for (s = 0; s < 2; s++)
        for (i = cvae_stack_layer_count(stacks[s]); i-- > 0;) {
            const cvae_layer *l = cvae_stack_layer(stacks[s], i);
            if (l->nparams)
                m->grads_ready(m->grads_ready_ctx, (size_t)(l->grads - m->grads), l->nparams);
        }
}

/* With a learned Gaussian sigma: the maximum-likelihood value for this
 * decoder and batch, so the gradient through s is zero and s is held
 * fixed. */
static void learn_sigma(cvae_model *m, const lane *lanes, int count, size_t n)
{
    double sq = 0.0, mse;
    int k;
    if (!(m->likelihood == CVAE_LIKELIHOOD_GAUSSIAN && m->sigma == 0.0))
        return;
    for (k = 0; k < count; k++)
        sq += lanes[k].sq;
    mse = sq / (double)(n * m->image);
    m->sigma_learned = sqrt(mse < CVI_MIN_LEARNED_VAR ? CVI_MIN_LEARNED_VAR
                            : mse > 1.0                ? 1.0
                                                       : mse);
}

/* Two lanes on this thread, layer by layer (cvi_stack_forward_lanes): most
 * layers run once for both lanes' rows, as one lane of them all would, yet
 * every lane gets the bits lane_forward and lane_backward give it (lane 0
 * still adds into shared weight gradients first). */
static void run_two_lanes(cvae_model *m, lane *lanes, const float *x, size_t n, float scale)
{
    cvi_stack_part enc[2], dec[2];
    size_t L = m->L, I = m->image;
    int k;
    for (k = 0; k < 2; k++) {
        lane *ln = &lanes[k];
        size_t f = ln->first;
        lane_clear(m, ln);
        enc[k].ws = &ln->enc_ws;
        dec[k].ws = &ln->dec_ws;
        enc[k].first = dec[k].first = f;
        enc[k].n = dec[k].n = ln->n;
        enc[k].in = x + f * I;
        dec[k].in = m->z + f * L;
        enc[k].din = NULL;
        dec[k].din = m->dz + f * L;
    }
    cvi_stack_forward_lanes(m->enc, enc);
    for (k = 0; k < 2; k++) {
        lanes[k].h = cvi_stack_part_output(m->enc, lanes[k].first);
        lane_latent(m, &lanes[k]);
    }
    cvi_stack_forward_lanes(m->dec, dec);
    for (k = 0; k < 2; k++) {
        lanes[k].logits = cvi_stack_part_output(m->dec, lanes[k].first);
        lane_decoded(m, &lanes[k], x);
    }
    learn_sigma(m, lanes, 2, n);
    for (k = 0; k < 2; k++) {
        lane_recon(m, &lanes[k], x, scale);
        dec[k].in = m->dlogits + lanes[k].first * I;
    }
    cvi_stack_backward_lanes(m->dec, dec);
    for (k = 0; k < 2; k++) {
        lane *ln = &lanes[k];
        ln->kl = latent_backward(m, ln->h, ln->first, ln->n, scale);
        enc[k].in = m->denc + ln->first * 2 * L;
    }
    cvi_stack_backward_lanes(m->enc, enc);
}

/* The lanes' passes one after the other on this thread. */
static void run_lanes_in_turn(cvae_model *m, lane *lanes, int count, const float *x, size_t n,
                              float scale)
{
    int k;
    if (count == 2) {
        run_two_lanes(m, lanes, x, n, scale);
        return;
    }
    for (k = 0; k < count; k++)
        lane_forward(m, &lanes[k], x);
    learn_sigma(m, lanes, count, n);
    for (k = 0; k < count; k++)
        lane_backward(m, &lanes[k], x, scale);
}

/* The lanes' passes at once, one thread each, when OpenMP gives a thread per
 * lane (else one after the other on one: lane 0 then gives every turn before
 * lane 1 takes it). No turn is given before lane 0's backward gives it. */
static void run_lanes_at_once(cvae_model *m, lane *lanes, int count, const float *x, size_t n,
                              float scale)
{
#ifdef _OPENMP
    int k;
    for (k = 0; k < m->lane_turns; k++)
        m->turns[k].given = 0; /* before the region: its start orders this for both */
    for (k = 0; k < count; k++)
        lanes[k].enc_ws.turns = lanes[k].dec_ws.turns = m->turns;
    lanes_team(lanes, count, 1);
#pragma omp parallel num_threads(count)
    {
        int me = omp_get_thread_num();
        if (omp_get_num_threads() < count) {
            if (me == 0) {
                lanes_team(lanes, count, 0);
                run_lanes_in_turn(m, lanes, count, x, n, scale);
            }
        } else {
            lane_forward(m, &lanes[me], x);
#pragma omp barrier
#pragma omp single
            learn_sigma(m, lanes, count, n);
            lane_backward(m, &lanes[me], x, scale);
        }
    }
#else
    run_lanes_in_turn(m, lanes, count, x, n, scale);
#endif
}

void cvi_model_shard_loss_grad(cvae_model *m, const float *x, size_t first, size_t n,
                               size_t total, double *rsum, double *ksum)
{
    lane lanes[CVI_LANES];
    size_t start[CVI_LANES], len[CVI_LANES];
    float scale = 1.0f / (float)total;
    int threads = cvi_threads_resolve(m->threads), k;
    int count = cut_lanes(first, n, total, start, len), at_once, inner;
    ready_hook hook;
    if (count == 0) { /* an empty shard */
        memset(m->grads, 0, m->nparams * sizeof(float));
        *rsum = *ksum = 0.0;
        if (m->grads_ready)
            report_all(m);
        return;
    }
    /* Lanes at once, one thread each, when there are threads for them;
     * else one after the other, each with all the threads inside. */
    at_once = count > 1 && threads >= count;
    inner = at_once ? 1 : threads < m->shared.gemm_threads ? threads : m->shared.gemm_threads;
    make_lanes(m, start, len, count, inner, lanes);
    /* Spans reported as they become final: by the last lane, on this
     * thread, when the lanes run one after the other. */
    hook.h.done = layer_ready;
    hook.m = m;
    hook.parts = count;
    if (m->grads_ready && !at_once)
        lanes[count - 1].enc_ws.hook = lanes[count - 1].dec_ws.hook = &hook.h;
    if (at_once)
        run_lanes_at_once(m, lanes, count, x, n, scale);
    else
        run_lanes_in_turn(m, lanes, count, x, n, scale);
    if (count > 1 && !(m->grads_ready && !at_once)) /* else added layer by layer */
        add_lane_grads(m, at_once ? threads : 1);
    if (m->grads_ready && at_once)
        report_all(m);
    *rsum = *ksum = 0.0;
    for (k = 0; k < count; k++) {
        *rsum += lanes[k].recon;
        *ksum += lanes[k].kl;
    }
}

void cvi_model_loss_grad(cvae_model *m, const float *x, size_t n, double *rsum, double *ksum)
{
    cvi_model_shard_loss_grad(m, x, 0, n, n, rsum, ksum);
}

CVAE_API cvae_status cvae_model_train_step(cvae_model *m, cvae_optimizer *opt, const float *x,
                                           int n, double *recon, double *kl)
{
    return cvae_model_train_step_labels(m, opt, x, NULL, n, recon, kl);
}

/* Draws of images [first, first + n) of a batch of total, from a generator
 * that makes the whole batch's: the pixels' draws when binarising (one per
 * pixel), then eps (image by image); the other images' draws are skipped. */
static void draw_shard(cvae_model *m, const float **x, size_t first, size_t n, size_t total)
{
    size_t I = m->image, per = (m->L + 1) / 2 * 2; /* cvi_rng_normal: draws in pairs */
    if (m->binarize) {
        cvi_rng_skip(&m->rng, (uint64_t)first * I);
        cvi_binarize(&m->rng, m->xbuf, *x, n * I);
        cvi_rng_skip(&m->rng, (uint64_t)(total - first - n) * I);
        *x = m->xbuf;
    }
    cvi_rng_skip(&m->rng, (uint64_t)first * per);
    draw_eps(&m->rng, m->eps, n, m->L);
    cvi_rng_skip(&m->rng, (uint64_t)(total - first - n) * per);
}

/* The part of a training step before the update, for the shard [first,
 * first + n) of a batch of total images (a whole step: 0, n, n): the draws,
 * the data init of a first step, forward, loss and backward. On a non-finite
 * loss the generator and learned sigma are put back. */
static cvae_status shard_step(cvae_model *m, const char *what, const float *x, const int *labels,
                              size_t first, size_t n, size_t total, double *rsum, double *ksum)
{
    cvi_rng before = m->rng;
    double sigma_before = m->sigma_learned;
    int whole = first == 0 && n == total;
    if (!whole && m->likelihood == CVAE_LIKELIHOOD_GAUSSIAN && m->sigma == 0.0) {
        cvi_set_error(m->err,
                      "%s: a learned sigma needs the whole batch's squared error; set "
                      "CVAE_MODEL_SIGMA > 0 to train on shards",
                      what);
        return CVAE_ERR_STATE;
    }
    if (!whole && m->data_init && m->steps == 0 && !m->data_init_done) {
        cvi_set_error(m->err,
                      "%s: the first step's data init needs the whole batch: call "
                      "cvae_model_data_init with it first",
                      what);
        return CVAE_ERR_STATE;
    }
    draw_shard(m, &x, first, n, total);
    if (whole && m->data_init && m->steps == 0 && !m->data_init_done)
        init_output_bias(m, x, n);
    cvi_model_use_labels(m, labels);
    cvi_model_shard_loss_grad(m, x, first, n, total, rsum, ksum);
    cvi_model_use_labels(m, NULL);
    if (!isfinite(*rsum) || !isfinite(*ksum)) {
        m->rng = before;
        m->sigma_learned = sigma_before;
        cvi_set_error(m->err, "%s: the loss is not finite (recon %g, kl %g)", what,
                      *rsum / (double)n, *ksum / (double)n);
        return CVAE_ERR_NUMERIC;
    }
    m->shard_rng = before;
    m->shard_sigma = sigma_before;
    return CVAE_OK;
}

static cvae_status check_optimizer(cvae_model *m, cvae_optimizer *opt, const char *what)
{
    cvi_optimizer_state os;
    cvi_optimizer_get_state(opt, &os);
    if (os.n != m->nparams) {
        cvi_set_error(m->err, "%s: the optimizer is for %zu parameters, not %zu", what, os.n,
                      m->nparams);
        return CVAE_ERR_SHAPE;
    }
    if (*os.swapped) {
        cvi_set_error(m->err, "%s: the optimizer's running average is swapped into the "
                              "parameters; swap it back before training",
                      what);
        return CVAE_ERR_STATE;
    }
    return CVAE_OK;
}

/* The optimizer's update with the gradient block as it is; a refused update
 * (any status) puts back the generator and sigma of the step's draws. */
static cvae_status apply_grads(cvae_model *m, cvae_optimizer *opt, const char *what)
{
    cvae_status st;
    if ((st = check_optimizer(m, opt, what)) == CVAE_OK &&
        (st = cvi_optimizer_step(opt, m->params, m->grads, m->nparams,
                                 cvi_threads_resolve(m->threads))) != CVAE_OK)
        cvi_set_error(m->err, "%s: %s", what, cvae_optimizer_last_error(opt));
    if (st != CVAE_OK) {
        if (m->shard_pending) {
            m->rng = m->shard_rng;
            m->sigma_learned = m->shard_sigma;
        }
        m->shard_pending = 0;
        return st;
    }
    m->shard_pending = 0;
    m->steps++;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_train_step_labels(cvae_model *m, cvae_optimizer *opt,
                                                  const float *x, const int *labels, int n,
                                                  double *recon, double *kl)
{
    double rsum, ksum;
    cvae_grads_ready_fn ready;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = check_call(m, "model_train_step", x, opt, n, 0)) != CVAE_OK ||
        (st = cvi_model_check_labels(m, "model_train_step", labels, n)) != CVAE_OK)
        return st;
    if ((st = check_optimizer(m, opt, "model_train_step")) != CVAE_OK)
        return st;
    ready = m->grads_ready; /* reported by cvae_model_shard_grads only */
    m->grads_ready = NULL;
    st = shard_step(m, "model_train_step", x, labels, 0, (size_t)n, (size_t)n, &rsum, &ksum);
    m->grads_ready = ready;
    if (st != CVAE_OK)
        return st;
    m->shard_pending = 1;
    if ((st = apply_grads(m, opt, "model_train_step")) != CVAE_OK)
        return st;
    if (recon)
        *recon = rsum / n;
    if (kl)
        *kl = ksum / n;
    return CVAE_OK;
}

/* ------------------------------------------------- data-parallel steps */

CVAE_API cvae_status cvae_model_shard_grads(cvae_model *m, const float *x, const int *labels,
                                            int first, int n, int total, double *recon,
                                            double *kl)
{
    double rsum, ksum;
    size_t bad;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    /* A shard may be empty (a batch smaller than the number of processes):
     * its part is zero, and its generator still moves on. */
    if (n == 0 && (st = require_arch(m, "model_shard_grads")) != CVAE_OK)
        return st;
    if (n != 0 && ((st = check_call(m, "model_shard_grads", x, x, n, 0)) != CVAE_OK ||
                   (st = cvi_model_check_labels(m, "model_shard_grads", labels, n)) != CVAE_OK))
        return st;
    if (first < 0 || total < 1 || first > total || n > total - first) {
        cvi_set_error(m->err,
                      "model_shard_grads: images [%d, %d + %d) are not a shard of a batch of %d",
                      first, first, n, total);
        return CVAE_ERR_INVALID_ARG;
    }
    m->shard_pending = 0;
    if ((st = shard_step(m, "model_shard_grads", x, labels, (size_t)first, (size_t)n,
                         (size_t)total, &rsum, &ksum)) != CVAE_OK)
        return st;
    /* No optimizer follows to refuse a non-finite gradient: the caller would
     * send it to the other processes. */
    if ((bad = cvi_first_nonfinite(m->grads, m->nparams)) < m->nparams) {
        m->rng = m->shard_rng;
        m->sigma_learned = m->shard_sigma;
        cvi_set_error(m->err, "model_shard_grads: gradient %zu of %zu is not finite (%g)", bad,
                      m->nparams, (double)m->grads[bad]);
        return CVAE_ERR_NUMERIC;
    }
    m->shard_pending = 1;
    if (recon)
        *recon = rsum / total;
    if (kl)
        *kl = ksum / total;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_shard_cut(int total, int shards, int index, int *first, int *count)
{
    long a, b;
    if (total < 0 || shards < 1 || index < 0 || index >= shards || !first || !count)
        return CVAE_ERR_INVALID_ARG;
    if (shards == CVI_LANES && total < 2 * CVI_LANE_MIN) {
        /* A step this small is one lane: the first shard takes it whole. */
        a = index == 0 ? 0 : total;
        b = total;
    } else {
        a = (long)total * index / shards;
        b = (long)total * (index + 1) / shards;
    }
    *first = (int)a;
    *count = (int)(b - a);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_apply_grads(cvae_model *m, cvae_optimizer *opt)
{
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = require_arch(m, "model_apply_grads")) != CVAE_OK)
        return st;
    if (!opt) {
        cvi_set_error(m->err, "model_apply_grads: the optimizer is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    return apply_grads(m, opt, "model_apply_grads");
}

CVAE_API cvae_status cvae_model_set_grads_ready(cvae_model *m, cvae_grads_ready_fn fn, void *ctx)
{
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    m->grads_ready = fn;
    m->grads_ready_ctx = fn ? ctx : NULL;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_data_init(cvae_model *m, const float *x, int n)
{
    size_t i, count;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = check_call(m, "model_data_init", x, x, n, 1)) != CVAE_OK)
        return st;
    count = (size_t)n * m->image;
    for (i = 0; i < count; i++)
        if (!isfinite(x[i])) {
            cvi_set_error(m->err, "model_data_init: pixel %zu of image %zu is not finite",
                          i % m->image, i / m->image);
            return CVAE_ERR_NUMERIC;
        }
    if (!m->data_init || m->steps > 0)
        return CVAE_OK;
    init_output_bias(m, x, (size_t)n);
    m->data_init_done = 1;
    return CVAE_OK;
}

cvae_status cvi_model_check_dataset(cvae_model *m, const cvae_dataset *ds, const char *what)
{
    int c, h, w;
    cvae_status st;
    if ((st = require_arch(m, what)) != CVAE_OK)
        return st;
    if (!ds || cvae_dataset_count(ds) < 1) {
        cvi_set_error(m->err, "%s: the dataset is %s", what, ds ? "empty" : "NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    cvae_dataset_shape(ds, &c, &h, &w);
    if ((size_t)c != m->C || (size_t)h != m->H || (size_t)w != m->W) {
        cvi_set_error(m->err, "%s: dataset images are %dx%dx%d, the model's %zux%zux%zu", what,
                      c, h, w, m->C, m->H, m->W);
        return CVAE_ERR_SHAPE;
    }
    if (m->classes && !cvae_dataset_has_labels(ds)) {
        cvi_set_error(m->err, "%s: the model is conditional and the dataset has no labels", what);
        return CVAE_ERR_INVALID_ARG;
    }
    if (m->classes && cvi_dataset_max_label(ds) >= m->classes) {
        cvi_set_error(m->err, "%s: dataset label %zu is not in the model's [0, %zu)", what,
                      cvi_dataset_max_label(ds), m->classes);
        return CVAE_ERR_INVALID_ARG;
    }
    return CVAE_OK;
}

/* An evaluation chunk's sums, part by part: the parts are the lanes a
 * step would cut the chunk into, whatever runs them, so that the sums are
 * added in one order on any number of threads. */
typedef struct eval_job {
    int parts;
    size_t start[CVI_LANES], len[CVI_LANES];
    double recon[CVI_LANES], kl[CVI_LANES];
} eval_job;

/* Encoder, z, decoder, KL and reconstruction term of a lane's rows of the
 * chunk in m->xbuf (their eps already in m->eps): the sums of every part in
 * those rows. */
static void evaluate_rows(cvae_model *m, const lane *ln, void *ctx)
{
    eval_job *j = ctx;
    size_t f = ln->first, L = m->L, I = m->image, i;
    const float *h, *logits;
    int p;
    h = cvi_stack_forward_part(m->enc, &ln->enc_ws, f, ln->n, m->xbuf + f * I);
    reparameterise(m->z + f * L, h, m->eps + f * L, ln->n, L);
    logits = cvi_stack_forward_part(m->dec, &ln->dec_ws, f, ln->n, m->z + f * L);
    for (p = 0; p < j->parts; p++) {
        size_t a = j->start[p], n = j->len[p];
        double kl = 0.0;
        if (a < f || a + n > f + ln->n)
            continue; /* another lane's */
        for (i = a; i < a + n; i++)
            kl += cvi_kl_normal(h + (i - f) * 2 * L, h + (i - f) * 2 * L + L, L, NULL, NULL, 0.0f);
        j->kl[p] = kl;
        j->recon[p] = cvi_model_recon(m, logits + (a - f) * I, m->xbuf + a * I, n * I, NULL, 0.0f);
    }
}

/* The sums of cvae_model_evaluate over images [first, first + count) of ds.
 * The draws follow the whole evaluation's: chunks of max batch images from
 * the start, each with its pixels' draws when binarising, then eps; the
 * draws of images outside the range are skipped. */
static void evaluate_sums(cvae_model *m, const cvae_dataset *ds, uint64_t eps_seed, size_t first,
                          size_t count, double *rsum, double *ksum)
{
    cvi_rng rng;
    size_t c0, L = m->L, I = m->image, per = (L + 1) / 2 * 2, end = first + count;
    size_t total = (size_t)cvae_dataset_count(ds);
    eval_job j;
    int p;
    cvi_rng_seed(&rng, eps_seed);
    *rsum = *ksum = 0.0;
    for (c0 = 0; c0 < end; c0 += m->max_batch) {
        size_t cn = chunk(m, total, c0), a = c0 > first ? c0 : first;
        size_t b = c0 + cn < end ? c0 + cn : end, n = b > a ? b - a : 0;
        if (n == 0) { /* the whole chunk is before the range */
            cvi_rng_skip(&rng, (uint64_t)cn * (m->binarize ? I + per : per));
            continue;
        }
        cvi_dataset_batch_stored(ds, a, n, m->xbuf);
        if (m->binarize) {
            cvi_rng_skip(&rng, (uint64_t)(a - c0) * I);
            cvi_binarize(&rng, m->xbuf, m->xbuf, n * I);
            cvi_rng_skip(&rng, (uint64_t)(c0 + cn - b) * I);
        }
        if (m->classes) {
            cvi_dataset_labels_stored(ds, a, n, m->ybuf);
            cvi_model_use_labels(m, m->ybuf);
        }
        cvi_rng_skip(&rng, (uint64_t)(a - c0) * per);
        draw_eps(&rng, m->eps, n, L);
        cvi_rng_skip(&rng, (uint64_t)(c0 + cn - b) * per);
        j.parts = cut_lanes(0, n, n, j.start, j.len);
        run_rows(m, n, evaluate_rows, &j);
        for (p = 0; p < j.parts; p++) {
            *rsum += j.recon[p];
            *ksum += j.kl[p];
        }
    }
    cvi_model_use_labels(m, NULL);
}

CVAE_API cvae_status cvae_model_evaluate(cvae_model *m, const cvae_dataset *ds, uint64_t eps_seed,
                                         double *recon, double *kl, double *total)
{
    double rsum, ksum;
    size_t count;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_model_check_dataset(m, ds, "model_evaluate")) != CVAE_OK)
        return st;
    count = (size_t)cvae_dataset_count(ds);
    evaluate_sums(m, ds, eps_seed, 0, count, &rsum, &ksum);
    if (recon)
        *recon = rsum / (double)count;
    if (kl)
        *kl = ksum / (double)count;
    if (total)
        *total = (rsum + ksum) / (double)count;
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_evaluate_range(cvae_model *m, const cvae_dataset *ds,
                                               uint64_t eps_seed, int first, int count,
                                               double *recon_sum, double *kl_sum)
{
    double rsum, ksum;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_model_check_dataset(m, ds, "model_evaluate_range")) != CVAE_OK)
        return st;
    if (first < 0 || count < 0 || first > cvae_dataset_count(ds) ||
        count > cvae_dataset_count(ds) - first) {
        cvi_set_error(m->err, "model_evaluate_range: images [%d, %d + %d) are not in the %d of "
                      "the dataset", first, first, count, cvae_dataset_count(ds));
        return CVAE_ERR_INVALID_ARG;
    }
    evaluate_sums(m, ds, eps_seed, (size_t)first, (size_t)count, &rsum, &ksum);
    if (recon_sum)
        *recon_sum = rsum;
    if (kl_sum)
        *kl_sum = ksum;
    return CVAE_OK;
}

/* mu (k, L) and, unless logvar is NULL, logvar (k, L) of k <= max batch
 * images. */
static void encode_chunk(cvae_model *m, const float *x, size_t k, float *mu, float *logvar)
{
    size_t i, L = m->L;
    const float *h;
    h = cvi_model_forward(m, m->enc, x, k);
    for (i = 0; i < k; i++) {
        memcpy(mu + i * L, h + i * 2 * L, L * sizeof(float));
        if (logvar)
            memcpy(logvar + i * L, h + i * 2 * L + L, L * sizeof(float));
    }
}

CVAE_API cvae_status cvae_model_encode_labels(cvae_model *m, const float *x, const int *labels,
                                              int n, float *mu, float *logvar)
{
    size_t first;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = check_call(m, "model_encode", x, mu, n, 1)) != CVAE_OK ||
        (st = cvi_model_check_labels(m, "model_encode", labels, n)) != CVAE_OK)
        return st;
    for (first = 0; first < (size_t)n; first += m->max_batch) {
        size_t k = chunk(m, (size_t)n, first);
        cvi_model_use_labels(m, labels ? labels + first : NULL);
        encode_chunk(m, x + first * m->image, k, mu + first * m->L,
                     logvar ? logvar + first * m->L : NULL);
    }
    cvi_model_use_labels(m, NULL);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_encode(cvae_model *m, const float *x, int n, float *mu,
                                       float *logvar)
{
    return cvae_model_encode_labels(m, x, NULL, n, mu, logvar);
}

/* images = sigmoid(dec(z)) for k <= max batch latent vectors, each lane
 * its own rows of both. */
static void decode_chunk(cvae_model *m, const float *z, size_t k, float *images)
{
    forward_job j;
    j.s = m->dec;
    j.in = z;
    j.images = images;
    run_rows(m, k, forward_rows, &j);
}

CVAE_API cvae_status cvae_model_decode_labels(cvae_model *m, const float *z, const int *labels,
                                              int n, float *images)
{
    size_t first;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = check_call(m, "model_decode", z, images, n, 1)) != CVAE_OK ||
        (st = cvi_model_check_labels(m, "model_decode", labels, n)) != CVAE_OK)
        return st;
    for (first = 0; first < (size_t)n; first += m->max_batch) {
        size_t k = chunk(m, (size_t)n, first);
        cvi_model_use_labels(m, labels ? labels + first : NULL);
        decode_chunk(m, z + first * m->L, k, images + first * m->image);
    }
    cvi_model_use_labels(m, NULL);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_decode(cvae_model *m, const float *z, int n, float *images)
{
    return cvae_model_decode_labels(m, z, NULL, n, images);
}

CVAE_API cvae_status cvae_model_sample_labels(cvae_model *m, int n, uint64_t seed,
                                              const int *labels, float *images)
{
    cvi_rng rng;
    size_t first;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = check_call(m, "model_sample", images, images, n, 1)) != CVAE_OK ||
        (st = cvi_model_check_labels(m, "model_sample", labels, n)) != CVAE_OK)
        return st;
    cvi_rng_seed(&rng, seed);
    for (first = 0; first < (size_t)n; first += m->max_batch) {
        size_t k = chunk(m, (size_t)n, first);
        draw_eps(&rng, m->z, k, m->L);
        cvi_model_use_labels(m, labels ? labels + first : NULL);
        decode_chunk(m, m->z, k, images + first * m->image);
    }
    cvi_model_use_labels(m, NULL);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_sample(cvae_model *m, int n, uint64_t seed, float *images)
{
    return cvae_model_sample_labels(m, n, seed, NULL, images);
}

CVAE_API cvae_status cvae_model_reconstruct_labels(cvae_model *m, const float *x,
                                                   const int *labels, int n, float *images)
{
    size_t first;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = check_call(m, "model_reconstruct", x, images, n, 1)) != CVAE_OK ||
        (st = cvi_model_check_labels(m, "model_reconstruct", labels, n)) != CVAE_OK)
        return st;
    for (first = 0; first < (size_t)n; first += m->max_batch) {
        size_t k = chunk(m, (size_t)n, first);
        cvi_model_use_labels(m, labels ? labels + first : NULL);
        encode_chunk(m, x + first * m->image, k, m->z, NULL);
        decode_chunk(m, m->z, k, images + first * m->image);
    }
    cvi_model_use_labels(m, NULL);
    return CVAE_OK;
}

CVAE_API cvae_status cvae_model_reconstruct(cvae_model *m, const float *x, int n, float *images)
{
    return cvae_model_reconstruct_labels(m, x, NULL, n, images);
}
