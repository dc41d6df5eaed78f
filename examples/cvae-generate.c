/*
 * cvae-generate - draws new images from a trained model: latent vectors
 * z ~ N(0, I) go through the decoder, and the images are written as one PNG
 * grid.
 *
 * Shows cvae_model_load, cvae_model_sample and cvae_png_write_grid.
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
               "  --count N        number of images (default 64)\n"
               "  --seed S         seed of the latent draws; same seed, same images (default 1)\n"
               "  --out FILE.png   output image (default samples.png)\n"
               "  --columns K      images per row of the grid (default 8)\n"
               "  --help           this text\n"
               "  --version        program and library version\n");
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *out = "samples.png", *v;
    int count = 64, columns = 8, c, h, w, i, rc = 1;
    uint64_t seed = 1;
    cvae_model *m = NULL;
    float *images = NULL;
    char err[256] = "";
    cvae_status st;

    ex_prog = "cvae-generate";
    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--model", &v))
            model_path = v;
        else if (ex_option(argc, argv, &i, "--count", &v))
            count = (int)ex_parse_long("--count", v, 1, 100000);
        else if (ex_option(argc, argv, &i, "--seed", &v))
            seed = ex_parse_u64("--seed", v);
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
    if (ex_load_model(model_path, count < 256 ? count : 256, &m) != CVAE_OK)
        goto done;
    cvae_model_shape(m, &c, &h, &w, NULL, NULL);
    if (!(images = malloc((size_t)count * (size_t)(c * h * w) * sizeof *images))) {
        ex_error("out of memory for %d images", count);
        goto done;
    }
    if ((st = cvae_model_sample(m, count, seed, images)) != CVAE_OK) {
        ex_status_error("sampling", st, cvae_model_last_error(m));
        goto done;
    }
    st = cvae_png_write_grid(out, images, count, c, h, w, columns, err, sizeof err);
    if (st != CVAE_OK) {
        ex_status_error("writing the PNG", st, err);
        goto done;
    }
    printf("wrote %s: %d samples of %dx%dx%d, %d per row (seed %llu)\n", out, count, c, h, w,
           columns, (unsigned long long)seed);
    rc = 0;
done:
    free(images);
    cvae_model_destroy(m);
    return rc;
}
