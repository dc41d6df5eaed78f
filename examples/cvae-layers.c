/*
 * cvae-layers - builds the seed VAE's encoder and decoder from libcvae's
 * layers, prints each layer's shapes and parameter count, and runs one
 * forward and backward pass through both on random data.
 *
 * A short tour of the 0.1 API: layers, stacks, build, forward, backward,
 * the parameter and gradient blocks. Training arrives with the model API.
 */
#include <cvae.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: cvae-layers [--latent L] [--batch N] [--seed S]\n"
               "\n"
               "Builds the seed convolutional VAE (encoder: 2 conv + 2 linear, decoder:\n"
               "2 linear + 2 transposed conv) for 1x28x28 images, prints its layers and\n"
               "runs one forward and backward pass on random data.\n"
               "\n"
               "  --latent L   latent dimensions (default 16)\n"
               "  --batch N    images per pass (default 128)\n"
               "  --seed S     initialisation seed (default 1)\n"
               "  --help       this text\n"
               "  --version    library version\n");
}

/* Parses a positive int option value or exits with a one-line message. */
static long parse_int(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "cvae-layers: %s wants an integer in [%ld, %ld], not '%s'\n", opt, lo, hi,
                s);
        exit(2);
    }
    return v;
}

static int die(cvae_stack *s, cvae_status st, const char *what)
{
    fprintf(stderr, "cvae-layers: %s: %s: %s\n", what, cvae_status_string(st),
            cvae_stack_last_error(s));
    return 1;
}

/* Appends a layer; a failed constructor leaves l NULL, which add reports. */
#define ADD(s, st, call)                                                                           \
    do {                                                                                           \
        cvae_layer *l_ = NULL;                                                                     \
        if (st == CVAE_OK) {                                                                       \
            st = call;                                                                             \
            st = st == CVAE_OK ? cvae_stack_add(s, l_) : st;                                       \
        }                                                                                          \
    } while (0)

static cvae_status build_encoder(cvae_stack *s, int latent)
{
    cvae_status st = CVAE_OK;
    ADD(s, st, cvae_layer_create_conv2d(&l_, 32, 4, 4, 2, 2, 1, 1));
    ADD(s, st, cvae_layer_create_relu(&l_));
    ADD(s, st, cvae_layer_create_conv2d(&l_, 64, 4, 4, 2, 2, 1, 1));
    ADD(s, st, cvae_layer_create_relu(&l_));
    ADD(s, st, cvae_layer_create_flatten(&l_));
    ADD(s, st, cvae_layer_create_linear(&l_, 256));
    ADD(s, st, cvae_layer_create_relu(&l_));
    ADD(s, st, cvae_layer_create_linear(&l_, 2 * latent)); /* mu and log-variance */
    return st;
}

static cvae_status build_decoder(cvae_stack *s)
{
    cvae_status st = CVAE_OK;
    ADD(s, st, cvae_layer_create_linear(&l_, 256));
    ADD(s, st, cvae_layer_create_relu(&l_));
    ADD(s, st, cvae_layer_create_linear(&l_, 3136));
    ADD(s, st, cvae_layer_create_relu(&l_));
    ADD(s, st, cvae_layer_create_reshape(&l_, 64, 7, 7));
    ADD(s, st, cvae_layer_create_conv_transpose2d(&l_, 32, 4, 4, 2, 2, 1, 1));
    ADD(s, st, cvae_layer_create_relu(&l_));
    ADD(s, st, cvae_layer_create_conv_transpose2d(&l_, 1, 4, 4, 2, 2, 1, 1)); /* logits */
    return st;
}

static void print_stack(const char *name, cvae_stack *s)
{
    size_t total;
    int i;
    cvae_stack_params(s, &total);
    printf("%s\n", name);
    for (i = 0; i < cvae_stack_layer_count(s); i++) {
        cvae_layer *l = cvae_stack_layer(s, i);
        int ic, ih, iw, oc, oh, ow;
        cvae_layer_input_shape(l, &ic, &ih, &iw);
        cvae_layer_output_shape(l, &oc, &oh, &ow);
        printf("  %2d  %-17s %4dx%2dx%-2d -> %4dx%2dx%-2d %9zu params\n", i,
               cvae_layer_kind_name(l), ic, ih, iw, oc, oh, ow, cvae_layer_param_count(l));
    }
    printf("  total %zu parameters\n", total);
}

/* Uniform in [0, 1) from a tiny LCG: the example needs no quality. */
static float next_uniform(unsigned long *x)
{
    *x = (*x * 1103515245ul + 12345ul) & 0x7ffffffful;
    return (float)*x / 2147483648.0f;
}

int main(int argc, char **argv)
{
    int latent = 16, batch = 128, i;
    unsigned long seed = 1, draw = 7;
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_status st;
    float *x = NULL, *dz = NULL, *z = NULL;
    const float *y;
    double mean = 0;
    int rc = 1;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("cvae-layers (libcvae) %s\n", cvae_version_string());
            return 0;
        } else if (i + 1 < argc && !strcmp(argv[i], "--latent")) {
            latent = (int)parse_int(argv[i], argv[i + 1], 1, 4096);
            i++;
        } else if (i + 1 < argc && !strcmp(argv[i], "--batch")) {
            batch = (int)parse_int(argv[i], argv[i + 1], 1, 65536);
            i++;
        } else if (i + 1 < argc && !strcmp(argv[i], "--seed")) {
            seed = (unsigned long)parse_int(argv[i], argv[i + 1], 0, 2147483647L);
            i++;
        } else {
            fprintf(stderr, "cvae-layers: unknown or incomplete option '%s' (try --help)\n",
                    argv[i]);
            return 2;
        }
    }

    if ((st = cvae_stack_create(&enc)) != CVAE_OK || (st = cvae_stack_create(&dec)) != CVAE_OK) {
        fprintf(stderr, "cvae-layers: %s\n", cvae_status_string(st));
        goto done;
    }
    if ((st = build_encoder(enc, latent)) != CVAE_OK ||
        (st = cvae_stack_build(enc, 1, 28, 28, batch, seed)) != CVAE_OK) {
        rc = die(enc, st, "encoder");
        goto done;
    }
    if ((st = build_decoder(dec)) != CVAE_OK ||
        (st = cvae_stack_build(dec, latent, 1, 1, batch, seed + 1)) != CVAE_OK) {
        rc = die(dec, st, "decoder");
        goto done;
    }
    printf("libcvae %s, seed VAE with latent size %d, batch %d\n\n", cvae_version_string(),
           latent, batch);
    print_stack("encoder", enc);
    print_stack("decoder", dec);

    x = malloc((size_t)batch * 784 * sizeof *x);
    z = malloc((size_t)batch * latent * sizeof *z);
    dz = malloc((size_t)batch * 784 * sizeof *dz);
    if (!x || !z || !dz) {
        fprintf(stderr, "cvae-layers: out of memory\n");
        goto done;
    }
    for (i = 0; i < batch * 784; i++)
        x[i] = next_uniform(&draw);
    /* Encode, take mu as z, decode; then push d(mean logit)/d(logit) back. */
    if ((st = cvae_stack_forward(enc, x, batch, &y)) != CVAE_OK) {
        rc = die(enc, st, "encoder forward");
        goto done;
    }
    for (i = 0; i < batch * latent; i++)
        z[i] = y[(i / latent) * 2 * latent + i % latent];
    if ((st = cvae_stack_forward(dec, z, batch, &y)) != CVAE_OK) {
        rc = die(dec, st, "decoder forward");
        goto done;
    }
    for (i = 0; i < batch * 784; i++) {
        mean += y[i];
        dz[i] = 1.0f / (float)(batch * 784);
    }
    if ((st = cvae_stack_backward(dec, dz, batch, NULL)) != CVAE_OK) {
        rc = die(dec, st, "decoder backward");
        goto done;
    }
    printf("\none pass on %d random images: mean output logit %.6f\n", batch,
           mean / (batch * 784.0));
    rc = 0;
done:
    free(x);
    free(z);
    free(dz);
    cvae_stack_destroy(enc);
    cvae_stack_destroy(dec);
    return rc;
}
