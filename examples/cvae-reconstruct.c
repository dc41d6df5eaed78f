/*
 * cvae-reconstruct - passes the first test images through a trained model
 * (encode to mu, decode) and writes originals and reconstructions as one PNG:
 * each row of originals sits directly above the row of its reconstructions.
 * Prints the mean absolute pixel error as a quick sanity figure.
 *
 * Shows cvae_dataset_batch, cvae_model_reconstruct and cvae_png_write_grid.
 */
#include <cvae.h>

#include "datasets.h"
#include "example_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLUMNS 8 /* images per row of the grid, at most */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cvae-reconstruct --model FILE --data DIR [options]\n"
            "\n"
            "Reconstructs the first N test images of DIR (stored order; for MNIST\n"
            "DIR/t10k-images-idx3-ubyte) with a model saved by cvae-train and writes a\n"
            "PNG (colour for colour images) in which every row of %d originals is\n"
            "followed by the row of their reconstructions.\n"
            "\n"
            "  --model FILE     model file (required)\n"
            "  --data DIR       data directory (required)\n"
            EX_FORMAT_HELP
            "  --count N        number of test images (default 16)\n"
            "  --out FILE.png   output image (default recon.png)\n"
            EX_SCALE_HELP
            "  --help           this text\n"
            "  --version        program and library version\n",
            COLUMNS);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *data = NULL, *out = "recon.png", *v;
    ex_format format = EX_FORMAT_IDX;
    int count = 16, scale = 1, c, h, w, mc, mh, mw, cols, rows, row, i, rc = 1;
    size_t size, k;
    cvae_dataset *test = NULL;
    cvae_model *m = NULL;
    float *orig = NULL, *recon = NULL, *grid = NULL;
    int *labels = NULL;
    double classes = 0;
    double err_sum = 0;
    cvae_status st;

    ex_prog = "cvae-reconstruct";
    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--model", &v))
            model_path = v;
        else if (ex_option(argc, argv, &i, "--data", &v))
            data = v;
        else if (ex_option(argc, argv, &i, "--format", &v))
            format = ex_parse_format("--format", v);
        else if (ex_option(argc, argv, &i, "--count", &v))
            count = (int)ex_parse_long("--count", v, 1, 10000);
        else if (ex_option(argc, argv, &i, "--scale", &v))
            scale = (int)ex_parse_long("--scale", v, 1, 16);
        else if (ex_option(argc, argv, &i, "--out", &v))
            out = v;
        else
            ex_unknown_option(argv[i]);
    }
    if (!model_path || !data)
        ex_usage_error("--model FILE and --data DIR are required (try --help)");

    /* A conditional model reconstructs each digit with its label. */
    if (ex_load_model(model_path, count < 256 ? count : 256, &m) != CVAE_OK)
        goto done;
    cvae_model_get(m, CVAE_MODEL_CLASSES, &classes);
    if (ex_load_data(format, data, "t10k", classes > 0, &test) != CVAE_OK)
        goto done;
    cvae_dataset_shape(test, &c, &h, &w);
    cvae_model_shape(m, &mc, &mh, &mw, NULL, NULL);
    if (mc != c || mh != h || mw != w) {
        ex_error("%s is for %dx%dx%d images, the test images are %dx%dx%d", model_path, mc, mh, mw,
                 c, h, w);
        goto done;
    }
    if (count > cvae_dataset_count(test)) {
        ex_error("--count %d: the test set has only %d images", count, cvae_dataset_count(test));
        goto done;
    }

    /* Grid: rows of cols originals, each followed by their reconstructions;
     * a last, shorter row is padded with tiles of the PNG's border grey
     * (128 / 255) so that the pairs line up. */
    size = (size_t)(c * h * w);
    cols = count < COLUMNS ? count : COLUMNS;
    rows = (count + cols - 1) / cols;
    labels = classes > 0 ? malloc((size_t)count * sizeof *labels) : NULL;
    orig = malloc((size_t)count * size * sizeof *orig);
    recon = malloc((size_t)count * size * sizeof *recon);
    grid = malloc((size_t)rows * 2 * cols * size * sizeof *grid);
    if (!orig || !recon || !grid || (classes > 0 && !labels)) {
        ex_error("out of memory");
        goto done;
    }
    for (k = 0; k < (size_t)rows * 2 * cols * size; k++)
        grid[k] = 128.0f / 255.0f;
    if ((st = cvae_dataset_batch(test, 0, count, orig, labels)) != CVAE_OK) {
        ex_status_error("reading the test images", st, cvae_dataset_last_error(test));
        goto done;
    }
    if ((st = cvae_model_reconstruct_labels(m, orig, labels, count, recon)) != CVAE_OK) {
        ex_status_error("reconstructing", st, cvae_model_last_error(m));
        goto done;
    }
    for (k = 0; k < (size_t)count * size; k++)
        err_sum += fabs((double)orig[k] - (double)recon[k]);

    for (row = 0; row < rows; row++) {
        int first = row * cols, n = count - first < cols ? count - first : cols;
        float *dst = grid + (size_t)row * 2 * cols * size;
        memcpy(dst, orig + first * size, (size_t)n * size * sizeof *dst);
        memcpy(dst + cols * size, recon + first * size, (size_t)n * size * sizeof *dst);
    }
    if (ex_write_grid(out, grid, rows * 2 * cols, c, h, w, cols, scale) != CVAE_OK)
        goto done;
    printf("wrote %s: %d test images (rows of %d), each row of originals above its "
           "reconstructions\n",
           out, count, cols);
    printf("mean absolute pixel error %.4f (pixels in [0, 1])\n",
           err_sum / ((double)count * (double)size));
    rc = 0;
done:
    free(labels);
    free(orig);
    free(recon);
    free(grid);
    cvae_model_destroy(m);
    cvae_dataset_destroy(test);
    return rc;
}
