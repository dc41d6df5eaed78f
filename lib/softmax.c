/*
 * softmax.c - softmax cross-entropy, the loss of a classifier built from
 * libcvae's layers.
 *
 * Per row of C logits x and label y: log Z - x_y with log Z = m + log sum
 * exp(x_j - m), m = max x_j (log-sum-exp: every exp is of a non-positive
 * number, so no logit overflows it, and the largest term is exp(0) = 1, so
 * the sum never underflows to 0). The sum runs in double. The gradient of
 * the mean over n rows is (softmax(x) - onehot(y)) / n.
 */
#include "cvae_internal.h"

#include <math.h>

CVAE_API cvae_status cvae_softmax_cross_entropy(const float *logits, const int *labels, int n,
                                                int classes, double *loss, float *dlogits)
{
    size_t rows, C, r, j;
    double total = 0.0;
    if (!logits || !labels || !loss || n < 1 || classes < 2)
        return CVAE_ERR_INVALID_ARG;
    rows = (size_t)n;
    C = (size_t)classes;
    if (rows > CVI_MAX_ELEMS / C)
        return CVAE_ERR_TOO_LARGE;
    /* Everything is checked before anything is written. */
    for (r = 0; r < rows; r++)
        if (labels[r] < 0 || labels[r] >= classes)
            return CVAE_ERR_INVALID_ARG;
    for (r = 0; r < rows * C; r++)
        if (!isfinite(logits[r]))
            return CVAE_ERR_NUMERIC;
    for (r = 0; r < rows; r++) {
        const float *x = logits + r * C;
        float m = x[0];
        double sum = 0.0;
        for (j = 1; j < C; j++)
            if (x[j] > m)
                m = x[j];
        for (j = 0; j < C; j++)
            sum += exp((double)x[j] - m);
        total += (double)m + log(sum) - x[labels[r]];
        if (dlogits) {
            float *d = dlogits + r * C;
            for (j = 0; j < C; j++)
                d[j] = (float)(exp((double)x[j] - m) / sum / (double)rows);
            d[labels[r]] -= (float)(1.0 / (double)rows);
        }
    }
    *loss = total / (double)rows;
    return CVAE_OK;
}
