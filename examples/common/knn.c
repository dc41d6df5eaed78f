/*
 * knn.c - brute-force k-nearest neighbours (see knn.h). For each query the k
 * best references are kept in a small sorted array: insertion is O(k), and k
 * is small (5 in cvae-eval).
 */
#include "knn.h"

#define KNN_MAX 64

static double dist2(const float *a, const float *b, size_t dim)
{
    double s = 0.0;
    size_t j;
    for (j = 0; j < dim; j++) {
        double d = (double)a[j] - (double)b[j];
        s += d * d;
    }
    return s;
}

int knn_classify(const float *ref, const int *ref_labels, size_t nref, const float *query,
                 size_t nq, size_t dim, int k, int classes, int *out)
{
    double best_d[KNN_MAX];
    size_t best_i[KNN_MAX], q, r;
    int kk, votes[KNN_MAX];
    if (k < 1 || k > KNN_MAX || (size_t)k > nref || classes < 1 || classes > KNN_MAX)
        return -1;
    for (r = 0; r < nref; r++)
        if (ref_labels[r] < 0 || ref_labels[r] >= classes)
            return -1;
    for (q = 0; q < nq; q++) {
        const float *x = query + q * dim;
        int found = 0, winner = -1, c;
        for (r = 0; r < nref; r++) {
            double d = dist2(x, ref + r * dim, dim);
            int at;
            /* Strictly closer than the current k-th: equal distances keep the
             * lower index, which came first. */
            if (found == k && !(d < best_d[k - 1]))
                continue;
            at = found < k ? found++ : k - 1;
            while (at > 0 && d < best_d[at - 1]) {
                best_d[at] = best_d[at - 1];
                best_i[at] = best_i[at - 1];
                at--;
            }
            best_d[at] = d;
            best_i[at] = r;
        }
        for (c = 0; c < classes; c++)
            votes[c] = 0;
        for (kk = 0; kk < found; kk++)
            votes[ref_labels[best_i[kk]]]++;
        /* Walking the neighbours nearest first, the first label with the top
         * count wins: a tie goes to the nearest. */
        for (kk = 0; kk < found; kk++) {
            int lab = ref_labels[best_i[kk]];
            if (winner < 0 || votes[lab] > votes[winner])
                winner = lab;
        }
        out[q] = winner;
    }
    return 0;
}
