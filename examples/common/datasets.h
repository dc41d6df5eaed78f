/*
 * datasets.h - the example programs' `--format idx|cifar10|pnm`: where each
 * format keeps its training and test images under a data directory, and
 * loading them with libcvae's loaders.
 *
 *   idx      DIR/train-images-idx3-ubyte (+ train-labels-idx1-ubyte) and
 *            DIR/t10k-images-idx3-ubyte (+ t10k-labels-idx1-ubyte): MNIST,
 *            Fashion-MNIST (uncompressed). A labels file may be missing
 *            when the caller needs no labels; one that is there is always
 *            read and checked (count, values 0..9).
 *   cifar10  DIR/data_batch_1.bin ... data_batch_5.bin (those present, at
 *            least the first) and DIR/test_batch.bin, the CIFAR-10 binary
 *            version; DIR may also be the folder holding the archive's
 *            cifar-10-batches-bin/.
 *   pnm      every *.pgm, *.ppm and *.pnm file of DIR/train (or of DIR itself
 *            when it has no train/ folder) and of DIR/test, in name order;
 *            binary P5/P6, all the same size; no labels.
 *
 * Not part of libcvae. Messages go to stderr as "prog: message".
 */
#ifndef EXAMPLE_DATASETS_H
#define EXAMPLE_DATASETS_H

#include <cvae.h>

typedef enum ex_format { EX_FORMAT_IDX, EX_FORMAT_CIFAR10, EX_FORMAT_PNM } ex_format;

/* "idx", "cifar10" or "pnm"; anything else exits 2 with a message naming
 * the option. */
ex_format ex_parse_format(const char *opt, const char *s);

/* "idx", "cifar10" or "pnm". */
const char *ex_format_name(ex_format f);

/* split is "train" or "t10k" (the test images). 1 if the split's first file
 * can be opened, else 0. */
int ex_data_present(ex_format f, const char *dir, const char *split);

/* Loads a split into a new dataset. with_labels not 0: the labels are
 * required (the pnm format has none: that is an error). with_labels 0: the
 * labels are not needed, yet every file of the split that is there is still
 * read and validated, so a damaged data set is refused whatever the caller
 * uses of it: an idx labels file that exists (a missing one is fine) and the
 * label byte of every cifar10 record. The dataset then has those labels.
 * On failure prints one line naming the file and the problem and returns a
 * non-OK status, *out NULL. */
cvae_status ex_load_data(ex_format f, const char *dir, const char *split, int with_labels,
                         cvae_dataset **out);

/* The one-line description of --format for the programs' --help. */
#define EX_FORMAT_HELP                                                                             \
    "  --format F       data format: idx (default; MNIST's files), cifar10 (the\n"                 \
    "                   CIFAR-10 binary batches) or pnm (a folder of PGM/PPM images)\n"

#endif
