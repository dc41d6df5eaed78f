/*
 * classifier.h - a digit classifier built from libcvae's own layers, for the
 * example programs (cvae-classify trains and tests it; a program that judges
 * generated digits can load it and label them). Names carry the prefix clf_.
 *
 * Not part of libcvae: it shows how a stack, cvae_softmax_cross_entropy and
 * the Adam optimizer make a classifier, and it keeps its own small file
 * format. It has no global mutable state; one handle must not be used from
 * two threads at once (the rule of libcvae's handles).
 *
 * The network, for C x H x W images (H and W multiples of 4) and K classes:
 *
 *   conv2d(32, 3x3, stride 1, pad 1)  ReLU     32 x H   x W
 *   conv2d(64, 4x4, stride 2, pad 1)  ReLU     64 x H/2 x W/2
 *   conv2d(64, 4x4, stride 2, pad 1)  ReLU     64 x H/4 x W/4
 *   flatten, linear(128)              ReLU     128
 *   linear(K)                                  K logits
 *
 * For 1 x 28 x 28 and 10 classes that is 501,578 parameters (2 MB on disk).
 *
 * The file (all numbers little-endian, whatever the host):
 *
 *   offset  size  content
 *        0     8  magic "CVAECLF1"
 *        8     4  C (u32)
 *       12     4  H (u32)
 *       16     4  W (u32)
 *       20     4  class count K (u32)
 *       24     8  parameter count P (u64): must be the count of the network above for C, H,
 *                 W and K
 *       32   4 P  the parameters, IEEE float32, in the stack's block order (each layer's
 *                 weight then bias, layer by layer; see cvae_stack_params)
 *   32+4P      4  CRC-32 (zlib's: reflected 0xEDB88320, complemented) of bytes 0 .. 32+4P-1
 *
 * The file is exactly 36 + 4 P bytes.
 */
#ifndef CLASSIFIER_H
#define CLASSIFIER_H

#include <cvae.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Limits of the shapes this module builds or loads (a file claiming more is refused). */
#define CLF_MAX_CHANNELS 64
#define CLF_MAX_SIDE 1024
#define CLF_MAX_CLASSES 65536

/* A classifier: an empty handle until clf_init or clf_load gives it its network. */
typedef struct clf_classifier clf_classifier;

/* Training settings; clf_default_options fills in the defaults. Trained with them on MNIST's
 * 10,000 training digits, the network labels 98.98 % of the 10,000 t10k digits correctly
 * (`cvae-classify train`, about 3 minutes on one thread of the machine of README.md). */
typedef struct clf_options {
    int epochs;          /* passes over the training set; default 15 */
    int batch;           /* images per Adam step, at most the handle's max batch; default 64 */
    double lr;           /* Adam's peak learning rate; default 2e-3 */
    double final_lr;     /* the rate falls from lr to this, on a cosine over all steps;
                            default 0. Equal to lr: a constant rate */
    double weight_decay; /* AdamW's decoupled weight decay; default 0 */
    int max_shift;       /* augmentation: each training image moves by dx, dy drawn uniformly
                            from [-max_shift, max_shift] pixels (zero fill); default 2 */
    uint64_t seed;       /* shuffling (seed + epoch) and shifts; default 1 */
    int threads;         /* as cvae_stack_set_threads: 0 = automatic; default 0. The setting
                            stays with the classifier after training */
    FILE *log;           /* one line per epoch goes here; NULL: silent. Default NULL */
} clf_options;

/* Fills *o with the defaults listed in clf_options. */
void clf_default_options(clf_options *o);

/* Makes an empty classifier. CVAE_ERR_INVALID_ARG (out NULL), CVAE_ERR_NOMEM; *out is NULL
 * on failure. */
cvae_status clf_create(clf_classifier **out);

/* Frees the classifier and its stack; NULL does nothing. */
void clf_destroy(clf_classifier *clf);

/* The message of the last failed call on clf (which file, which value); "" when none, never
 * NULL. Valid until the next call on clf. */
const char *clf_last_error(const clf_classifier *clf);

/*
 * Builds the network above for c x h x w images and `classes` classes, for batches of up to
 * max_batch images, with parameters initialised from seed (cvae_stack_build). The classifier
 * must be empty. CVAE_ERR_INVALID_ARG (NULL, a size out of range: c in [1, 64], h and w
 * multiples of 4 in [4, 1024], classes in [2, 65536], max_batch >= 1), CVAE_ERR_STATE (it
 * already has a network), or the build's status; a failed call leaves it empty.
 */
cvae_status clf_init(clf_classifier *clf, int c, int h, int w, int classes, int max_batch,
                     uint64_t seed);

/* The input shape and class count (any pointer may be NULL): CVAE_ERR_INVALID_ARG for NULL,
 * CVAE_ERR_STATE while empty. */
cvae_status clf_shape(const clf_classifier *clf, int *c, int *h, int *w, int *classes);

/* Parameter count (0 while empty or for NULL), and the network itself (NULL while empty):
 * its parameter block is cvae_stack_params(clf_stack(clf), NULL). The stack belongs to clf. */
size_t clf_param_count(const clf_classifier *clf);
cvae_stack *clf_stack(clf_classifier *clf);
int clf_max_batch(const clf_classifier *clf);

/* Threads of forward and backward, as cvae_stack_set_threads (results do not depend on it). */
cvae_status clf_set_threads(clf_classifier *clf, int threads);

/*
 * Trains on every image of train (its shape must be the classifier's input, and it must have
 * labels in [0, classes)) with Adam on softmax cross-entropy, as *o says (NULL: defaults).
 * Epoch e (from 0) shuffles train with seed + e, takes ceil(count / batch) batches in that
 * order (the last one smaller), shifts each image at random (max_shift), and runs
 * zero_grad, forward, cvae_softmax_cross_entropy, backward and one Adam step. After each
 * epoch it writes to o->log one line: the epoch, its mean training loss (nats per image),
 * its accuracy on the shifted training images, the last learning rate and the seconds.
 * Same seed and data, same result, bit for bit, on any thread count. Each call starts a new
 * Adam (zero moments). train is left in its stored order. Everything below but
 * CVAE_ERR_NUMERIC is found before the first step, and leaves the parameters as they were:
 * CVAE_ERR_INVALID_ARG (NULL, an option out of range, batch over the max batch, a dataset
 * without labels, a label that is not a class), CVAE_ERR_STATE (empty classifier, empty
 * dataset), CVAE_ERR_SHAPE (the images are not the classifier's shape), CVAE_ERR_NOMEM,
 * CVAE_ERR_NUMERIC (a non-finite loss or gradient: the parameters then hold the last
 * successful step).
 */
cvae_status clf_train(clf_classifier *clf, cvae_dataset *train, const clf_options *o);

/*
 * Labels n images (n x C x H x W floats, pixels in [0, 1] as cvae_dataset_batch gives them):
 * labels[i] is the index of image i's largest logit (the first on a tie), in batches of up to
 * the max batch. CVAE_ERR_INVALID_ARG (NULL, n < 1), CVAE_ERR_STATE (empty).
 */
cvae_status clf_predict(clf_classifier *clf, const float *images, int n, int *labels);

/*
 * Counts the images of a labelled dataset (in its current order; the order does not change
 * the count) that clf_predict labels correctly: *correct of *total. Same errors as clf_train
 * for the dataset, plus CVAE_ERR_NOMEM.
 */
cvae_status clf_accuracy(clf_classifier *clf, cvae_dataset *ds, int *correct, int *total);

/*
 * Writes the classifier to path in the format above: first to "<path>.tmp", which is then
 * renamed over path, so a failed save leaves the previous file as it was (and no .tmp).
 * CVAE_ERR_INVALID_ARG (NULL, a path over 4000 bytes), CVAE_ERR_STATE (empty),
 * CVAE_ERR_NUMERIC (a parameter is not finite: such a file would not load), CVAE_ERR_IO.
 */
cvae_status clf_save(clf_classifier *clf, const char *path);

/*
 * Loads a file written by clf_save into an empty classifier, for batches of up to max_batch
 * images. Everything is checked before the network is built: the magic, C, H, W and K within
 * the limits of clf_init, the parameter count equal to the network's for that shape, the
 * file's length exactly 36 + 4 P (a shorter file is truncated, a longer one has trailing
 * bytes), the CRC, and every parameter finite. The message names the file and the problem.
 * CVAE_ERR_INVALID_ARG (NULL, max_batch < 1), CVAE_ERR_STATE (not empty), CVAE_ERR_IO
 * (cannot open or read), CVAE_ERR_FORMAT (any of the checks but the last), CVAE_ERR_NUMERIC
 * (a NaN or infinite parameter), CVAE_ERR_NOMEM, or the build's status. A failed load leaves
 * the classifier empty.
 */
cvae_status clf_load(clf_classifier *clf, const char *path, int max_batch);

#endif /* CLASSIFIER_H */
