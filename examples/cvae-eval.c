/*
 * cvae-eval - what a trained model has learnt, measured on the t10k digits:
 * the test loss, the importance-weighted bound on log p(x), how often a
 * digit classifier recognises the reconstructions and the samples, how well
 * the latent means separate the digits (k-nearest neighbours), and the share
 * of pixels reconstructed on the right side of 0.5. docs/EVALUATION.md
 * defines each figure.
 *
 * Shows cvae_model_evaluate, cvae_model_iwae, cvae_model_reconstruct_labels,
 * cvae_model_sample_labels and cvae_model_encode_labels, with a classifier
 * built from libcvae's layers (examples/common/classifier.c).
 */
#define _POSIX_C_SOURCE 200809L /* fileno, isatty: the progress line */

#include <cvae.h>

#include "classifier.h"
#include "datasets.h"
#include "example_util.h"
#include "knn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_EPS_SEED 12345 /* cvae-train's: the same test loss */
#define MAX_CLASSES 64

struct options {
    const char *model, *data, *classifier;
    int iwae, iwae_images, samples, knn, threads, json;
    uint64_t seed;
    ex_format format;
};

/* Every figure; a negative count means "not measured". */
struct figures {
    int count, classes, latent, c, h, w;
    size_t params;
    double recon, kl, total;
    int iwae_k, iwae_images;
    double iwae_bound, iwae_elbo, iwae_seconds;
    int recon_correct;
    double pixel_acc;
    int samples, hist[MAX_CLASSES], cond_correct;
    double max_dev;
    int knn_k, knn_correct, knn_refs;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cvae-eval --model FILE --data DIR [options]\n"
               "\n"
               "Measures a model saved by cvae-train on the t10k digits of DIR (and the\n"
               "training digits, for the neighbours). Needs the label files.\n"
               "\n"
               "  --model FILE       model file (required)\n"
               "  --data DIR         data directory with labels (required)\n"
               "  --format F         idx (default) or cifar10\n"
               "  --classifier FILE  a digit classifier from cvae-classify: adds the\n"
               "                     reconstruction accuracy, the samples' labels and, for a\n"
               "                     conditional model, the conditional-sample accuracy\n"
               "  --iwae K           importance-weighted bound with K draws per digit\n"
               "                     (default 1000; 0 skips it; it costs K decoder passes per\n"
               "                     digit: about 7 minutes for K = 1000 on all 10,000 test\n"
               "                     digits on two cores, with a progress line on a terminal;\n"
               "                     digits go 100 at a time, the c-th 100 drawing from S + c)\n"
               "  --iwae-images N    the bound on a fixed random N of the test digits\n"
               "                     (default all)\n"
               "  --samples N        prior samples to label (default 10000; a conditional\n"
               "                     model draws N / classes of each digit)\n"
               "  --knn K            neighbours for the latent-space vote (default 5; 0 skips)\n"
               "  --seed S           seed of the samples and of the bound's draws (default 1)\n"
               "  --threads N        threads (default 0: automatic); same figures for any N\n"
               "  --json             print one JSON object instead of text\n"
               "  --help             this text\n"
               "  --version          program and library version\n"
               "\n"
               "The test loss uses the same fixed noise as cvae-train's. See\n"
               "docs/EVALUATION.md for what each figure means.\n");
}

static void parse_options(int argc, char **argv, struct options *o)
{
    const char *v;
    int i;
    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--model", &v))
            o->model = v;
        else if (ex_option(argc, argv, &i, "--format", &v))
            o->format = ex_parse_format("--format", v);
        else if (ex_option(argc, argv, &i, "--data", &v))
            o->data = v;
        else if (ex_option(argc, argv, &i, "--classifier", &v))
            o->classifier = v;
        else if (ex_option(argc, argv, &i, "--iwae", &v))
            o->iwae = (int)ex_parse_long("--iwae", v, 0, 1000000);
        else if (ex_option(argc, argv, &i, "--iwae-images", &v))
            o->iwae_images = (int)ex_parse_long("--iwae-images", v, 1, 100000000);
        else if (ex_option(argc, argv, &i, "--samples", &v))
            o->samples = (int)ex_parse_long("--samples", v, 0, 10000000);
        else if (ex_option(argc, argv, &i, "--knn", &v))
            o->knn = (int)ex_parse_long("--knn", v, 0, 64);
        else if (ex_option(argc, argv, &i, "--seed", &v))
            o->seed = ex_parse_u64("--seed", v);
        else if (ex_option(argc, argv, &i, "--threads", &v))
            o->threads = (int)ex_parse_long("--threads", v, 0, 256);
        else if (ex_flag(argv[i], "--json"))
            o->json = 1;
        else
            ex_unknown_option(argv[i]);
    }
    if (!o->model || !o->data)
        ex_usage_error("--model FILE and --data DIR are required (try --help)");
}

/* The dataset's images and labels in stored order, in new buffers. */
static int read_all(cvae_dataset *ds, size_t image, float **x, int **y)
{
    int n = cvae_dataset_count(ds);
    cvae_status st;
    *x = malloc((size_t)n * image * sizeof **x);
    *y = malloc((size_t)n * sizeof **y);
    if (!*x || !*y)
        return ex_error("out of memory for %d images", n);
    if ((st = cvae_dataset_batch(ds, 0, n, *x, *y)) != CVAE_OK)
        return ex_status_error("reading the digits", st, cvae_dataset_last_error(ds));
    return 0;
}

static int count_equal(const int *a, const int *b, int n)
{
    int i, k = 0;
    for (i = 0; i < n; i++)
        k += a[i] == b[i];
    return k;
}

/* Digits per call of cvae_model_iwae: the bound is computed chunk by chunk,
 * so that a live line can say how far it is (k = 1000 on 10,000 digits is
 * ten million decoded images). */
#define IWAE_CHUNK 100

/* The mean bound over the digits of `use` with k draws each: chunks of
 * IWAE_CHUNK digits in stored order, chunk c drawing from seed + c (the
 * figure depends on the seed and the chunk size only, not on threads).
 * With live set, a progress line on stderr after each chunk. */
static cvae_status chunked_iwae(cvae_model *m, cvae_dataset *use, int k, uint64_t seed,
                                int live, const char *what, double *bound)
{
    int count = cvae_dataset_count(use), c, h, w, first, chunk;
    size_t image;
    float *x = NULL;
    uint8_t *px = NULL, *lab = NULL;
    int *labels = NULL;
    cvae_dataset *part = NULL;
    double sum = 0.0, t0 = ex_now(), b;
    cvae_status st = cvae_dataset_shape(use, &c, &h, &w);
    if (st != CVAE_OK)
        return st;
    image = (size_t)c * (size_t)h * (size_t)w;
    x = malloc(IWAE_CHUNK * image * sizeof *x);
    px = malloc(IWAE_CHUNK * image);
    lab = malloc(IWAE_CHUNK);
    labels = malloc(IWAE_CHUNK * sizeof *labels);
    if (!x || !px || !lab || !labels)
        st = CVAE_ERR_NOMEM;
    if (st == CVAE_OK)
        st = cvae_dataset_create(&part);
    for (first = 0; st == CVAE_OK && first < count; first += chunk) {
        int has_labels = cvae_dataset_has_labels(use), i;
        size_t j;
        chunk = count - first < IWAE_CHUNK ? count - first : IWAE_CHUNK;
        st = cvae_dataset_batch(use, first, chunk, x, has_labels ? labels : NULL);
        /* Pixels back to bytes: the batch is byte / 255, so this is exact. */
        for (j = 0; st == CVAE_OK && j < (size_t)chunk * image; j++)
            px[j] = (uint8_t)lrintf(x[j] * 255.0f);
        for (i = 0; has_labels && i < chunk; i++)
            lab[i] = (uint8_t)labels[i];
        if (st == CVAE_OK)
            st = cvae_dataset_set_u8(part, chunk, c, h, w, px, has_labels ? lab : NULL);
        if (st == CVAE_OK)
            st = cvae_model_iwae(m, part, k, seed + (uint64_t)(first / IWAE_CHUNK), &b);
        if (st != CVAE_OK)
            break;
        sum += b * chunk;
        if (live) {
            double el = ex_now() - t0, eta = el * (count - first - chunk) / (first + chunk);
            fprintf(stderr, "\r%s k=%d: %d/%d digits  %5.0f draws/s  bound %.2f  ETA %d:%02d   ",
                    what, k, first + chunk, count, (double)(first + chunk) * k / (el > 1e-9 ? el : 1e-9),
                    sum / (first + chunk), (int)eta / 60, (int)eta % 60);
            fflush(stderr);
        }
    }
    if (live)
        fprintf(stderr, "\r%78s\r", "");
    if (st == CVAE_OK)
        *bound = sum / count;
    cvae_dataset_destroy(part);
    free(x);
    free(px);
    free(lab);
    free(labels);
    return st;
}

/* The bound on all test digits, or on a fixed random subset of them. */
static int measure_iwae(cvae_model *m, cvae_dataset *test, const struct options *o,
                        struct figures *f)
{
    cvae_dataset *rest = NULL, *sub = NULL, *use = test;
    double t0 = ex_now(), one;
    int live = isatty(fileno(stderr));
    cvae_status st;
    int rc = 1;
    if (o->iwae_images && o->iwae_images < cvae_dataset_count(test)) {
        if ((st = cvae_dataset_split(test, o->iwae_images, o->seed, &rest, &sub)) != CVAE_OK) {
            ex_status_error("choosing the digits for the bound", st,
                            cvae_dataset_last_error(test));
            goto done;
        }
        use = sub;
    }
    f->iwae_k = o->iwae;
    f->iwae_images = cvae_dataset_count(use);
    if ((st = chunked_iwae(m, use, o->iwae, o->seed, live, "IWAE bound", &f->iwae_bound)) !=
            CVAE_OK ||
        (st = chunked_iwae(m, use, 1, o->seed, live, "one-draw ELBO", &one)) != CVAE_OK) {
        ex_status_error("the importance-weighted bound", st, cvae_model_last_error(m));
        goto done;
    }
    f->iwae_elbo = one;
    f->iwae_seconds = ex_now() - t0;
    rc = 0;
done:
    cvae_dataset_destroy(rest);
    cvae_dataset_destroy(sub);
    return rc;
}

/* Reconstructions of every test digit: the classifier's verdict on them and
 * the pixels on the right side of 0.5. */
static int measure_reconstructions(cvae_model *m, clf_classifier *clf, const float *x,
                                   const int *y, struct figures *f)
{
    size_t image = (size_t)(f->c * f->h * f->w), i, total = (size_t)f->count * image, same = 0;
    float *r = malloc(total * sizeof *r);
    int *pred = malloc((size_t)f->count * sizeof *pred), rc = 1;
    cvae_status st;
    if (!r || !pred) {
        ex_error("out of memory for the reconstructions");
        goto done;
    }
    if ((st = cvae_model_reconstruct_labels(m, x, f->classes ? y : NULL, f->count, r)) !=
        CVAE_OK) {
        ex_status_error("reconstructing", st, cvae_model_last_error(m));
        goto done;
    }
    for (i = 0; i < total; i++)
        same += (x[i] > 0.5f) == (r[i] > 0.5f);
    f->pixel_acc = (double)same / (double)total;
    if (clf) {
        if ((st = clf_predict(clf, r, f->count, pred)) != CVAE_OK) {
            ex_status_error("classifying the reconstructions", st, clf_last_error(clf));
            goto done;
        }
        f->recon_correct = count_equal(pred, y, f->count);
    }
    rc = 0;
done:
    free(r);
    free(pred);
    return rc;
}

/* Prior samples, labelled by the classifier: a conditional model draws an
 * equal share of each class, in turn, and is scored on them. */
static int measure_samples(cvae_model *m, clf_classifier *clf, const struct options *o,
                           struct figures *f)
{
    size_t image = (size_t)(f->c * f->h * f->w);
    int n = f->classes ? o->samples / f->classes * f->classes : o->samples, i, rc = 1;
    float *s;
    int *asked, *pred;
    cvae_status st;
    if (n < 1)
        return 0;
    s = malloc((size_t)n * image * sizeof *s);
    asked = malloc((size_t)n * sizeof *asked);
    pred = malloc((size_t)n * sizeof *pred);
    if (!s || !asked || !pred) {
        ex_error("out of memory for %d samples", n);
        goto done;
    }
    for (i = 0; i < n; i++)
        asked[i] = f->classes ? i % f->classes : 0;
    if ((st = cvae_model_sample_labels(m, n, o->seed, f->classes ? asked : NULL, s)) !=
        CVAE_OK) {
        ex_status_error("sampling", st, cvae_model_last_error(m));
        goto done;
    }
    if ((st = clf_predict(clf, s, n, pred)) != CVAE_OK) {
        ex_status_error("classifying the samples", st, clf_last_error(clf));
        goto done;
    }
    f->samples = n;
    for (i = 0; i < n; i++)
        f->hist[pred[i]]++;
    f->max_dev = 0.0;
    for (i = 0; i < 10; i++) {
        double dev = fabs((double)f->hist[i] / n - 0.1);
        if (dev > f->max_dev)
            f->max_dev = dev;
    }
    if (f->classes)
        f->cond_correct = count_equal(pred, asked, n);
    rc = 0;
done:
    free(s);
    free(asked);
    free(pred);
    return rc;
}

/* The test digits' latent means classified by a vote of their k nearest
 * training means. */
static int measure_knn(cvae_model *m, cvae_dataset *train, const float *tx, const int *ty,
                       const struct options *o, struct figures *f)
{
    size_t image = (size_t)(f->c * f->h * f->w), L = (size_t)f->latent;
    float *rx = NULL, *rmu = NULL, *tmu = NULL;
    int *ry = NULL, *pred = NULL, nr = cvae_dataset_count(train), rc = 1;
    cvae_status st;
    if (read_all(train, image, &rx, &ry) != 0)
        goto done;
    rmu = malloc((size_t)nr * L * sizeof *rmu);
    tmu = malloc((size_t)f->count * L * sizeof *tmu);
    pred = malloc((size_t)f->count * sizeof *pred);
    if (!rmu || !tmu || !pred) {
        ex_error("out of memory for the latent means");
        goto done;
    }
    if ((st = cvae_model_encode_labels(m, rx, f->classes ? ry : NULL, nr, rmu, NULL)) !=
            CVAE_OK ||
        (st = cvae_model_encode_labels(m, tx, f->classes ? ty : NULL, f->count, tmu, NULL)) !=
            CVAE_OK) {
        ex_status_error("encoding", st, cvae_model_last_error(m));
        goto done;
    }
    if (knn_classify(rmu, ry, (size_t)nr, tmu, (size_t)f->count, L, o->knn, 10, pred) != 0) {
        ex_error("--knn %d: more neighbours than the %d training digits", o->knn, nr);
        goto done;
    }
    f->knn_k = o->knn;
    f->knn_refs = nr;
    f->knn_correct = count_equal(pred, ty, f->count);
    rc = 0;
done:
    free(rx);
    free(ry);
    free(rmu);
    free(tmu);
    free(pred);
    return rc;
}

static double pct(int k, int n)
{
    return n > 0 ? 100.0 * k / n : 0.0;
}

static void print_text(const struct options *o, const struct figures *f)
{
    int i;
    printf("model %s: %dx%dx%d images, latent %d, %zu parameters, %s\n", o->model, f->c, f->h,
           f->w, f->latent, f->params,
           f->classes ? "conditional on the digit" : "not conditional");
    printf("test digits: %d (%s/t10k)\n", f->count, o->data);
    printf("test loss (one draw, seed %d): %.2f nats (recon %.2f + kl %.2f)\n", TEST_EPS_SEED,
           f->total, f->recon, f->kl);
    if (f->iwae_k > 0)
        printf("IWAE bound, k = %d on %d digits: log p(x) >= %.2f nats; ELBO (k = 1, same "
               "draws) %.2f: %.2f tighter  [%.0f s]\n",
               f->iwae_k, f->iwae_images, f->iwae_bound, f->iwae_elbo,
               f->iwae_bound - f->iwae_elbo, f->iwae_seconds);
    if (f->recon_correct >= 0)
        printf("reconstruction accuracy: %.2f%% (%d of %d decoded means labelled as the "
               "digit)\n",
               pct(f->recon_correct, f->count), f->recon_correct, f->count);
    printf("pixel accuracy (0.5 threshold): %.2f%%\n", 100.0 * f->pixel_acc);
    if (f->samples > 0) {
        printf("prior samples: %d (seed %llu), labelled", f->samples,
               (unsigned long long)o->seed);
        for (i = 0; i < 10; i++)
            printf(" %d:%d", i, f->hist[i]);
        printf("; largest deviation from uniform %.2f points\n", 100.0 * f->max_dev);
        if (f->classes)
            printf("conditional-sample accuracy: %.2f%% (%d of %d; %d per digit)\n",
                   pct(f->cond_correct, f->samples), f->cond_correct, f->samples,
                   f->samples / f->classes);
    }
    if (f->knn_k > 0)
        printf("kNN (k = %d) accuracy of test means against %d training means: %.2f%%\n",
               f->knn_k, f->knn_refs, pct(f->knn_correct, f->count));
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_json(const struct options *o, const struct figures *f)
{
    int i;
    printf("{\"model\": ");
    json_string(o->model);
    printf(", \"images\": [%d, %d, %d], \"latent\": %d, \"parameters\": %zu, "
           "\"classes\": %d, \"test_images\": %d,\n",
           f->c, f->h, f->w, f->latent, f->params, f->classes, f->count);
    printf(" \"test_loss\": {\"recon\": %.4f, \"kl\": %.4f, \"total\": %.4f, \"eps_seed\": %d}",
           f->recon, f->kl, f->total, TEST_EPS_SEED);
    if (f->iwae_k > 0)
        printf(",\n \"iwae\": {\"k\": %d, \"images\": %d, \"bound\": %.4f, \"elbo_k1\": %.4f, "
               "\"gap\": %.4f, \"seed\": %llu, \"seconds\": %.1f}",
               f->iwae_k, f->iwae_images, f->iwae_bound, f->iwae_elbo,
               f->iwae_bound - f->iwae_elbo, (unsigned long long)o->seed, f->iwae_seconds);
    if (f->recon_correct >= 0)
        printf(",\n \"reconstruction_accuracy\": %.4f", pct(f->recon_correct, f->count) / 100);
    printf(",\n \"pixel_accuracy\": %.4f", f->pixel_acc);
    if (f->samples > 0) {
        printf(",\n \"samples\": {\"count\": %d, \"seed\": %llu, \"histogram\": [", f->samples,
               (unsigned long long)o->seed);
        for (i = 0; i < 10; i++)
            printf("%s%d", i ? ", " : "", f->hist[i]);
        printf("], \"max_deviation\": %.4f", f->max_dev);
        if (f->classes)
            printf(", \"conditional_accuracy\": %.4f", pct(f->cond_correct, f->samples) / 100);
        printf("}");
    }
    if (f->knn_k > 0)
        printf(",\n \"knn\": {\"k\": %d, \"references\": %d, \"accuracy\": %.4f}", f->knn_k,
               f->knn_refs, pct(f->knn_correct, f->count) / 100);
    printf("}\n");
}

int main(int argc, char **argv)
{
    struct options o = {NULL, NULL, NULL, 1000, 0, 10000, 5, 0, 0, 1, EX_FORMAT_IDX};
    struct figures f;
    cvae_model *m = NULL;
    cvae_dataset *test = NULL, *train = NULL;
    clf_classifier *clf = NULL;
    float *tx = NULL;
    int *ty = NULL, rc = 1, cc, ch, cw;
    double classes = 0;
    cvae_status st;

    ex_prog = "cvae-eval";
    parse_options(argc, argv, &o);
    memset(&f, 0, sizeof f);
    f.recon_correct = -1;

    if (ex_load_model(o.model, 256, &m) != CVAE_OK)
        goto done;
    if ((st = cvae_model_set(m, CVAE_MODEL_THREADS, o.threads)) != CVAE_OK) {
        ex_status_error("--threads", st, cvae_model_last_error(m));
        goto done;
    }
    cvae_model_shape(m, &f.c, &f.h, &f.w, &f.latent, NULL);
    cvae_model_get(m, CVAE_MODEL_CLASSES, &classes);
    f.classes = (int)classes;
    f.params = cvae_model_param_count(m);
    if (f.classes > MAX_CLASSES) {
        ex_error("%s: %d classes; this program handles up to %d", o.model, f.classes,
                 MAX_CLASSES);
        goto done;
    }
    if (o.classifier) {
        if ((st = clf_create(&clf)) != CVAE_OK || (st = clf_load(clf, o.classifier, 256)) !=
                                                       CVAE_OK) {
            ex_status_error("loading the classifier", st, clf ? clf_last_error(clf) : "");
            goto done;
        }
        if ((st = clf_set_threads(clf, o.threads)) != CVAE_OK ||
            (st = clf_shape(clf, &cc, &ch, &cw, NULL)) != CVAE_OK) {
            ex_status_error("the classifier", st, clf_last_error(clf));
            goto done;
        }
        if (cc != f.c || ch != f.h || cw != f.w) {
            ex_error("%s is for %dx%dx%d images, the model's are %dx%dx%d", o.classifier, cc,
                     ch, cw, f.c, f.h, f.w);
            goto done;
        }
    }
    /* Both splits are read, and so checked, before any measuring: damaged
     * training files must not be found only after the IWAE bound's minutes. */
    if (ex_load_data(o.format, o.data, "t10k", 1, &test) != CVAE_OK ||
        (o.knn > 0 && ex_load_data(o.format, o.data, "train", 1, &train) != CVAE_OK))
        goto done;
    f.count = cvae_dataset_count(test);
    if (read_all(test, (size_t)(f.c * f.h * f.w), &tx, &ty) != 0)
        goto done;

    if ((st = cvae_model_evaluate(m, test, TEST_EPS_SEED, &f.recon, &f.kl, &f.total)) !=
        CVAE_OK) {
        ex_status_error("evaluating", st, cvae_model_last_error(m));
        goto done;
    }
    if (o.iwae > 0 && measure_iwae(m, test, &o, &f) != 0)
        goto done;
    if (measure_reconstructions(m, clf, tx, ty, &f) != 0)
        goto done;
    if (clf && o.samples > 0 && measure_samples(m, clf, &o, &f) != 0)
        goto done;
    if (o.knn > 0 && measure_knn(m, train, tx, ty, &o, &f) != 0)
        goto done;
    if (o.json)
        print_json(&o, &f);
    else
        print_text(&o, &f);
    rc = 0;
done:
    free(tx);
    free(ty);
    clf_destroy(clf);
    cvae_dataset_destroy(train);
    cvae_dataset_destroy(test);
    cvae_model_destroy(m);
    return rc;
}
