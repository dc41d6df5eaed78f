/*
 * cvae-generate - draws new images from a trained model: latent vectors
 * z ~ N(0, I) go through the decoder, and the images are written as one PNG
 * grid.
 *
 * A conditional model (cvae-train --conditional) draws the digit asked for
 * with --digit, or by default a grid with one row per digit.
 *
 * Shows cvae_model_load, cvae_model_sample(_labels) and cvae_png_write_grid.
 */
#include <cvae.h>

#include "example_util.h"

#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: cvae-generate --model FILE [options]\n"
               "\n"
               "Decodes random latent vectors z ~ N(0, I) with a model saved by cvae-train\n"
               "and writes the images as a PNG grid.\n"
               "\n"
               "  --model FILE     model file (required)\n"
               "  --count N        number of images (default 64; for a conditional model\n"
               "                   without --digit, images per digit, default --columns)\n"
               "  --digit D        conditional model: draw digit D (default: every digit,\n"
               "                   one row each)\n"
               "  --seed S         seed of the latent draws; same seed, same images (default 1)\n"
               "  --out FILE.png   output image (default samples.png)\n"
               EX_SCALE_HELP
               "  --columns K      images per row of the grid (default 8)\n"
               "  --help           this text\n"
               "  --version        program and library version\n");
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *out = "samples.png", *v;
    int count = 64, columns = 8, scale = 1, c, h, w, i, rc = 1, digit = -1, count_set = 0, classes;
    int *labels = NULL;
    double cls = 0;
    uint64_t seed = 1;
    cvae_model *m = NULL;
    float *images = NULL;
    cvae_status st;

    ex_prog = "cvae-generate";
    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--model", &v))
            model_path = v;
        else if (ex_option(argc, argv, &i, "--count", &v)) {
            count = (int)ex_parse_long("--count", v, 1, 100000);
            count_set = 1;
        } else if (ex_option(argc, argv, &i, "--digit", &v))
            digit = (int)ex_parse_long("--digit", v, 0, 65535);
        else if (ex_option(argc, argv, &i, "--seed", &v))
            seed = ex_parse_u64("--seed", v);
        else if (ex_option(argc, argv, &i, "--scale", &v))
            scale = (int)ex_parse_long("--scale", v, 1, 16);
        else if (ex_option(argc, argv, &i, "--out", &v))
            out = v;
        else if (ex_option(argc, argv, &i, "--columns", &v))
            columns = (int)ex_parse_long("--columns", v, 1, 1000);
        else
            ex_unknown_option(argv[i]);
    }
    if (!model_path)
        ex_usage_error("--model FILE is required (try --help)");

    /* The model works in chunks of its max batch, so a modest one will do. */
    if (ex_load_model(model_path, 256, &m) != CVAE_OK)
        goto done;
    cvae_model_shape(m, &c, &h, &w, NULL, NULL);
    cvae_model_get(m, CVAE_MODEL_CLASSES, &cls);
    classes = (int)cls;
    if (digit >= 0 && classes == 0) {
        ex_error("--digit: %s is not a conditional model (train one with cvae-train "
                 "--conditional)", model_path);
        goto done;
    }
    if (digit >= classes && classes > 0) {
        ex_error("--digit %d: the model knows classes 0 to %d", digit, classes - 1);
        goto done;
    }
    if (classes > 0 && digit < 0) { /* one row per class */
        count = classes * (count_set ? count : columns);
        columns = count / classes;
    }
    images = malloc((size_t)count * (size_t)(c * h * w) * sizeof *images);
    labels = classes > 0 ? malloc((size_t)count * sizeof *labels) : NULL;
    if (!images || (classes > 0 && !labels)) {
        ex_error("out of memory for %d images", count);
        goto done;
    }
    for (i = 0; labels && i < count; i++)
        labels[i] = digit >= 0 ? digit : i / columns;
    if ((st = cvae_model_sample_labels(m, count, seed, labels, images)) != CVAE_OK) {
        ex_status_error("sampling", st, cvae_model_last_error(m));
        goto done;
    }
    if (ex_write_grid(out, images, count, c, h, w, columns, scale) != CVAE_OK)
        goto done;
    printf("wrote %s: %d samples of %dx%dx%d, %d per row (seed %llu)", out, count, c, h, w,
           columns, (unsigned long long)seed);
    if (digit >= 0)
        printf(", all of digit %d", digit);
    else if (classes > 0)
        printf(", one row per digit 0-%d", classes - 1);
    printf("\n");
    rc = 0;
done:
    free(images);
    free(labels);
    cvae_model_destroy(m);
    return rc;
}
