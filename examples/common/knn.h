/*
 * knn.h - k-nearest-neighbour classification of feature vectors, for
 * judging a latent space (cvae-eval: test digits' latent means against the
 * training digits'). Not part of libcvae. Names carry the prefix knn_.
 */
#ifndef KNN_H
#define KNN_H

#include <stddef.h>

/*
 * Labels each of the nq query vectors by a vote of its k nearest reference
 * vectors (squared Euclidean distance over dim values, in double; equal
 * distances go to the lower reference index). The vote: the label with the
 * most of the k; a tie goes to the tied label whose first voter is nearest.
 * ref: nref x dim, ref_labels: nref labels in [0, classes); query: nq x dim.
 * Writes nq labels to out. Returns 0, or -1 for bad sizes (k < 1, k > nref,
 * classes < 1, a reference label out of range) with out untouched.
 * Cost nq * nref * dim; memory k + classes values on the stack for k and
 * classes up to 64, else -1.
 */
int knn_classify(const float *ref, const int *ref_labels, size_t nref, const float *query,
                 size_t nq, size_t dim, int k, int classes, int *out);

#endif /* KNN_H */
