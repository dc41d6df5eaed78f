/*
 * model_iwae.c - importance weights and the importance-weighted bound
 * (Burda, Grosse and Salakhutdinov, 2015) of a model.
 *
 * For an image x with encoder output (mu, lv) and a draw eps ~ N(0, I),
 * z = mu + exp(lv / 2) eps and the log weight is
 *   log w = log p(x | z) + log p(z) - log q(z | x)
 *         = -BCE(logits(z), x) - 0.5 sum z^2 + 0.5 sum (eps^2 + lv)
 * (the two -0.5 L log 2 pi cancel; (z - mu)^2 / exp(lv) is eps^2 by
 * construction). One draw's log w is a one-sample estimate of the ELBO; the
 * bound with k draws is log (1/k) sum_i w_i, computed as a running
 * log-sum-exp so that weights of any magnitude (log w near -1e4 is usual
 * for 784 pixels) neither overflow nor vanish. Sums run in double.
 */
#include "cvae_internal.h"

#include <math.h>

/* log w of one draw: logits of the decoded z, the image x (I pixels), the
 * image's lv and the draw's eps and z (L values each). */
static double log_weight(const cvae_model *m, const float *logits, const float *x, size_t I,
                         const float *lv,
                         const float *eps, const float *z, size_t L)
{
    double lw = -cvi_model_recon(m, logits, x, I, NULL, 0.0f);
    size_t j;
    for (j = 0; j < L; j++)
        lw += 0.5 * ((double)eps[j] * eps[j] + lv[j] - (double)z[j] * z[j]);
    return lw;
}

/* z rows = mu + exp(lv / 2) eps rows, for rows draws of one image. */
static void draws_to_z(float *z, const float *mu, const float *lv, const float *eps, size_t rows,
                       size_t L)
{
    size_t r, j;
    for (r = 0; r < rows; r++)
        for (j = 0; j < L; j++)
            z[r * L + j] = mu[j] + expf(0.5f * lv[j]) * eps[r * L + j];
}

CVAE_API cvae_status cvae_model_log_weights(cvae_model *m, const float *x, const int *labels,
                                            const float *eps, int n, double *logw)
{
    size_t first, L, I, i;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if (!m->enc) {
        cvi_set_error(m->err, "model_log_weights: the model has no architecture yet");
        return CVAE_ERR_STATE;
    }
    if (!x || !eps || !logw || n < 1) {
        cvi_set_error(m->err, "model_log_weights: %s", n < 1 ? "n must be >= 1"
                                                          : "a buffer is NULL");
        return CVAE_ERR_INVALID_ARG;
    }
    if ((st = cvi_model_check_labels(m, "model_log_weights", labels, n)) != CVAE_OK)
        return st;
    L = m->L;
    I = m->image;
    for (first = 0; first < (size_t)n; first += m->max_batch) {
        size_t k = (size_t)n - first < m->max_batch ? (size_t)n - first : m->max_batch;
        const float *h, *logits, *xs = x + first * I, *es = eps + first * L;
        cvi_model_use_labels(m, labels ? labels + first : NULL);
        h = cvi_model_forward(m, m->enc, xs, k);
        for (i = 0; i < k; i++)
            draws_to_z(m->z + i * L, h + i * 2 * L, h + i * 2 * L + L, es + i * L, 1, L);
        logits = cvi_model_forward(m, m->dec, m->z, k);
        for (i = 0; i < k; i++)
            logw[first + i] = log_weight(m, logits + i * I, xs + i * I, I, h + i * 2 * L + L,
                                         es + i * L, m->z + i * L, L);
    }
    cvi_model_use_labels(m, NULL);
    return CVAE_OK;
}

void cvi_lse_add(cvi_lse *acc, double v)
{
    /* sum holds sum exp(v_i - top), top the largest v_i so far: every exp is
     * of a non-positive number, and the largest term is 1. */
    if (acc->count == 0 || v > acc->top) {
        acc->sum = acc->count == 0 ? 1.0 : acc->sum * exp(acc->top - v) + 1.0;
        acc->top = v;
    } else {
        acc->sum += exp(v - acc->top);
    }
    acc->count++;
}

double cvi_lse_mean(const cvi_lse *acc)
{
    return acc->top + log(acc->sum) - log((double)acc->count);
}

/* The bound of one image whose (mu, lv) is h, with k draws from rng, in
 * batches of the model's max batch through m->eps and m->z. */
static double image_bound(cvae_model *m, const float *x, const float *h, int label, size_t k,
                          cvi_rng *rng)
{
    size_t L = m->L, I = m->image, done, r;
    const float *mu = h, *lv = h + L;
    cvi_lse acc = {0.0, 0.0, 0};
    for (done = 0; done < k; done += m->max_batch) {
        size_t rows = k - done < m->max_batch ? k - done : m->max_batch;
        const float *logits;
        for (r = 0; r < rows; r++)
            cvi_rng_normal(rng, m->eps + r * L, L);
        if (m->classes) { /* every draw decodes with the image's label */
            int *row_labels = m->ybuf + m->max_batch;
            for (r = 0; r < rows; r++)
                row_labels[r] = label;
            cvi_stack_set_labels(m->dec, row_labels);
        }
        draws_to_z(m->z, mu, lv, m->eps, rows, L);
        logits = cvi_model_forward(m, m->dec, m->z, rows);
        for (r = 0; r < rows; r++)
            cvi_lse_add(&acc, log_weight(m, logits + r * I, x, I, lv, m->eps + r * L,
                                         m->z + r * L, L));
    }
    return cvi_lse_mean(&acc);
}

CVAE_API cvae_status cvae_model_iwae(cvae_model *m, const cvae_dataset *ds, int k,
                                     uint64_t seed, double *bound)
{
    cvi_rng rng;
    double total = 0.0;
    size_t first, count, i;
    cvae_status st;
    if (!m)
        return CVAE_ERR_INVALID_ARG;
    if ((st = cvi_model_check_dataset(m, ds, "model_iwae")) != CVAE_OK)
        return st;
    if (!bound || k < 1) {
        cvi_set_error(m->err, "model_iwae: %s", !bound ? "bound is NULL" : "k must be >= 1");
        return CVAE_ERR_INVALID_ARG;
    }
    count = (size_t)cvae_dataset_count(ds);
    cvi_rng_seed(&rng, seed);
    for (first = 0; first < count; first += m->max_batch) {
        size_t n = count - first < m->max_batch ? count - first : m->max_batch;
        const float *hh;
        cvi_dataset_batch_stored(ds, first, n, m->xbuf);
        if (m->binarize)
            cvi_binarize(&rng, m->xbuf, m->xbuf, n * m->image);
        if (m->classes) {
            cvi_dataset_labels_stored(ds, first, n, m->ybuf);
            cvi_stack_set_labels(m->enc, m->ybuf);
        }
        /* The encoder's output stays put while the decoder runs. */
        hh = cvi_model_forward(m, m->enc, m->xbuf, n);
        for (i = 0; i < n; i++)
            total += image_bound(m, m->xbuf + i * m->image, hh + i * 2 * m->L,
                                 m->classes ? m->ybuf[i] : 0, (size_t)k, &rng);
    }
    cvi_model_use_labels(m, NULL);
    if (!isfinite(total)) {
        cvi_set_error(m->err, "model_iwae: the bound is not finite (NaN or infinite parameters?)");
        return CVAE_ERR_NUMERIC;
    }
    *bound = total / (double)count;
    m->err[0] = '\0';
    return CVAE_OK;
}
