/*
 * cvae-interpolate - walks the latent space of a trained model.
 *
 * Default mode: for P pairs of test digits with different labels, encodes
 * both to their means mu(a), mu(b), decodes K points on the straight line
 * between them and writes one row per pair: a, the K decodes, b.
 *
 * --manifold (models with a 2-d latent space only): decodes a K x K grid of
 * z = (Phi^-1(u), Phi^-1(v)) for u, v evenly spaced in (0, 1), Phi^-1 the
 * inverse standard normal CDF, as in figure 4 of Kingma & Welling,
 * "Auto-Encoding Variational Bayes" (2014). Evenly spaced quantiles cover
 * the prior N(0, I) with equal probability mass per cell.
 *
 * Shows cvae_model_encode, cvae_model_decode and cvae_png_write_grid.
 */
#include <cvae.h>

#include "datasets.h"
#include "example_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct options {
    const char *model, *data, *out;
    ex_format format;
    int steps, pairs, manifold, scale;
    uint64_t seed;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cvae-interpolate --model FILE --data DIR [options]\n"
               "       cvae-interpolate --model FILE --manifold [--steps K] [--out FILE.png]\n"
               "\n"
               "Interpolates in the latent space of a model saved by cvae-train. Each row\n"
               "of the PNG shows a test digit a, K images decoded from z on the line from\n"
               "mu(a) to mu(b), and the test digit b, whose label differs from a's.\n"
               "With --manifold (latent size 2 only) it shows instead a K x K grid of\n"
               "images decoded at z = (Phi^-1(u), Phi^-1(v)), u and v evenly spaced in\n"
               "(0, 1): the learnt manifold, as in Kingma & Welling's figure 4.\n"
               "\n"
               "  --model FILE     model file (required)\n"
               "  --data DIR       data directory (required without --manifold)\n"
               EX_FORMAT_HELP
               "  --steps K        images per line, or grid side with --manifold (default 10)\n"
               "  --pairs P        number of pairs, one per row (default 8)\n"
               "  --seed S         the test set is shuffled with S to pick the pairs (default 1)\n"
               "  --out FILE.png   output image (default interp.png)\n"
               EX_SCALE_HELP
               "  --manifold       decode the 2-d latent grid instead\n"
               "  --help           this text\n"
               "  --version        program and library version\n");
}

static void parse_options(int argc, char **argv, struct options *o)
{
    const char *v;
    int i;

    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--model", &v))
            o->model = v;
        else if (ex_option(argc, argv, &i, "--data", &v))
            o->data = v;
        else if (ex_option(argc, argv, &i, "--format", &v))
            o->format = ex_parse_format("--format", v);
        else if (ex_option(argc, argv, &i, "--steps", &v))
            o->steps = (int)ex_parse_long("--steps", v, 2, 200);
        else if (ex_option(argc, argv, &i, "--pairs", &v))
            o->pairs = (int)ex_parse_long("--pairs", v, 1, 1000);
        else if (ex_option(argc, argv, &i, "--seed", &v))
            o->seed = ex_parse_u64("--seed", v);
        else if (ex_option(argc, argv, &i, "--scale", &v))
            o->scale = (int)ex_parse_long("--scale", v, 1, 16);
        else if (ex_option(argc, argv, &i, "--out", &v))
            o->out = v;
        else if (ex_flag(argv[i], "--manifold"))
            o->manifold = 1;
        else
            ex_unknown_option(argv[i]);
    }
    if (!o->model)
        ex_usage_error("--model FILE is required (try --help)");
    if (!o->data && !o->manifold)
        ex_usage_error("--data DIR is required without --manifold (try --help)");
}

/*
 * Inverse of the standard normal CDF for 0 < p < 1, by Peter J. Acklam's
 * rational approximations (relative error below 1.15e-9): one for the
 * central region, one for each tail.
 */
static double normal_quantile(double p)
{
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                -2.759285104469687e+02, 1.383577518672690e+02,
                                -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                -1.556989798598866e+02, 6.680131188771972e+01,
                                -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                -2.400758277161838e+00, -2.549732539343734e+00,
                                4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                3.754408661907416e+00};
    const double p_low = 0.02425;
    double q, r;

    if (p < p_low) { /* lower tail */
        q = sqrt(-2 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - p_low) /* upper tail, by symmetry */
        return -normal_quantile(1 - p);
    q = p - 0.5;
    r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/* K x K latent points of the manifold grid, 2 floats each, row by row;
 * z1 grows to the right, z2 upwards (so the top row has the largest z2). */
static void manifold_grid(float *z, int k)
{
    int row, col;

    for (row = 0; row < k; row++)
        for (col = 0; col < k; col++) {
            z[2 * (row * k + col)] = (float)normal_quantile((col + 0.5) / k);
            z[2 * (row * k + col) + 1] = (float)normal_quantile(1 - (row + 0.5) / k);
        }
}

/*
 * Picks the pairs from the test set in its current order: a is the next
 * unused image, b the first image after it with a different label. Writes
 * a_i and b_i to ends (2 images per pair) and their labels to labels.
 * Returns 0, or 1 after a message.
 */
static int pick_pairs(cvae_dataset *test, int pairs, size_t size, float *ends, int *labels)
{
    int count = cvae_dataset_count(test), pos = 0, i;
    cvae_status st;

    for (i = 0; i < pairs; i++) {
        float *a = ends + 2 * (size_t)i * size, *b = a + size;
        int b_pos;

        if (pos >= count)
            return ex_error("the test set has too few images for %d pairs", pairs);
        if ((st = cvae_dataset_batch(test, pos, 1, a, &labels[2 * i])) != CVAE_OK)
            return ex_status_error("reading the test set", st, cvae_dataset_last_error(test));
        for (b_pos = pos + 1; b_pos < count; b_pos++) {
            if ((st = cvae_dataset_batch(test, b_pos, 1, b, &labels[2 * i + 1])) != CVAE_OK)
                return ex_status_error("reading the test set", st, cvae_dataset_last_error(test));
            /* Without labels (pnm), the next image. */
            if (labels[2 * i + 1] != labels[2 * i] || labels[2 * i] < 0)
                break;
        }
        if (b_pos >= count)
            return ex_error("the test set has too few images for %d pairs", pairs);
        pos = b_pos + 1;
    }
    return 0;
}

/* Latent points: row i holds K steps from mu(a_i) to mu(b_i), ends included. */
static void line_points(float *z, const float *mu, int pairs, int steps, int latent)
{
    int i, k, j;

    for (i = 0; i < pairs; i++) {
        const float *za = mu + 2 * (size_t)i * latent, *zb = za + latent;
        for (k = 0; k < steps; k++) {
            float t = (float)k / (float)(steps - 1);
            float *dst = z + ((size_t)i * steps + k) * latent;
            for (j = 0; j < latent; j++)
                dst[j] = za[j] + t * (zb[j] - za[j]);
        }
    }
}

/* Decodes the pairs' lines into grid: per row a_i, the K decodes, b_i.
 * Returns 0, or 1 after a message. */
static int interpolate(cvae_model *m, cvae_dataset *test, const struct options *o, float *grid)
{
    int c, h, w, latent, i, cols = o->steps + 2, rc = 1;
    size_t size;
    float *ends = NULL, *mu = NULL, *z = NULL, *dec = NULL;
    int *labels = NULL;
    cvae_status st;

    cvae_model_shape(m, &c, &h, &w, &latent, NULL);
    size = (size_t)(c * h * w);
    ends = malloc(2 * (size_t)o->pairs * size * sizeof *ends);
    mu = malloc(2 * (size_t)o->pairs * latent * sizeof *mu);
    z = malloc((size_t)o->pairs * o->steps * latent * sizeof *z);
    dec = malloc((size_t)o->pairs * o->steps * size * sizeof *dec);
    labels = malloc(2 * (size_t)o->pairs * sizeof *labels);
    if (!ends || !mu || !z || !dec || !labels) {
        ex_error("out of memory");
        goto done;
    }
    if (pick_pairs(test, o->pairs, size, ends, labels) != 0)
        goto done;
    if ((st = cvae_model_encode(m, ends, 2 * o->pairs, mu, NULL)) != CVAE_OK) {
        ex_status_error("encoding", st, cvae_model_last_error(m));
        goto done;
    }
    line_points(z, mu, o->pairs, o->steps, latent);
    if ((st = cvae_model_decode(m, z, o->pairs * o->steps, dec)) != CVAE_OK) {
        ex_status_error("decoding", st, cvae_model_last_error(m));
        goto done;
    }
    for (i = 0; i < o->pairs; i++) {
        float *row = grid + (size_t)i * cols * size;
        memcpy(row, ends + 2 * (size_t)i * size, size * sizeof *row);
        memcpy(row + size, dec + (size_t)i * o->steps * size, o->steps * size * sizeof *row);
        memcpy(row + (size_t)(cols - 1) * size, ends + (2 * (size_t)i + 1) * size,
               size * sizeof *row);
    }
    printf("digits per row:");
    for (i = 0; i < o->pairs; i++)
        printf(" %d->%d", labels[2 * i], labels[2 * i + 1]);
    printf("\n");
    rc = 0;
done:
    free(ends);
    free(mu);
    free(z);
    free(dec);
    free(labels);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = {.out = "interp.png", .steps = 10, .pairs = 8, .seed = 1, .scale = 1};
    cvae_dataset *test = NULL;
    cvae_model *m = NULL;
    float *grid = NULL, *z = NULL;
    int c, h, w, latent, mc, mh, mw, count, cols, rc = 1;
    cvae_status st;

    ex_prog = "cvae-interpolate";
    parse_options(argc, argv, &o);

    if (ex_load_model(o.model, 256, &m) != CVAE_OK)
        goto done;
    cvae_model_shape(m, &mc, &mh, &mw, &latent, NULL);
    if (o.manifold && latent != 2) {
        ex_error("--manifold needs a model with latent size 2; %s has %d (train one with "
                 "cvae-train --latent 2)",
                 o.model, latent);
        goto done;
    }
    count = o.manifold ? o.steps * o.steps : o.pairs * (o.steps + 2);
    cols = o.manifold ? o.steps : o.steps + 2;
    if (!(grid = malloc((size_t)count * (size_t)(mc * mh * mw) * sizeof *grid))) {
        ex_error("out of memory");
        goto done;
    }

    if (o.manifold) {
        if (!(z = malloc((size_t)count * 2 * sizeof *z))) {
            ex_error("out of memory");
            goto done;
        }
        manifold_grid(z, o.steps);
        if ((st = cvae_model_decode(m, z, count, grid)) != CVAE_OK) {
            ex_status_error("decoding", st, cvae_model_last_error(m));
            goto done;
        }
    } else {
        if (ex_load_data(o.format, o.data, "t10k", o.format != EX_FORMAT_PNM, &test) != CVAE_OK)
            goto done;
        cvae_dataset_shape(test, &c, &h, &w);
        if (mc != c || mh != h || mw != w) {
            ex_error("%s is for %dx%dx%d images, the test images are %dx%dx%d", o.model, mc, mh, mw,
                     c, h, w);
            goto done;
        }
        if ((st = cvae_dataset_shuffle(test, o.seed)) != CVAE_OK) {
            ex_status_error("shuffling", st, cvae_dataset_last_error(test));
            goto done;
        }
        if (interpolate(m, test, &o, grid) != 0)
            goto done;
    }

    if (ex_write_grid(o.out, grid, count, mc, mh, mw, cols, o.scale) != CVAE_OK)
        goto done;
    if (o.manifold)
        printf("wrote %s: %d x %d decodes of the 2-d latent manifold\n", o.out, o.steps, o.steps);
    else
        printf("wrote %s: %d rows of a test digit, %d interpolated decodes, another digit\n", o.out,
               o.pairs, o.steps);
    rc = 0;
done:
    free(grid);
    free(z);
    cvae_model_destroy(m);
    cvae_dataset_destroy(test);
    return rc;
}
