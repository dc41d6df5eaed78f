/*
 * cvae-classify - trains and tests a digit classifier made of libcvae's layers
 * (examples/common/classifier.h): a small convolutional network, softmax
 * cross-entropy and Adam, with randomly shifted training images.
 *
 * Shows that a stack, cvae_softmax_cross_entropy and an optimizer are all a
 * classifier needs. The saved file is what a program that judges generated
 * digits loads to label them.
 */
#include <cvae.h>

#include "classifier.h"
#include "datasets.h"
#include "example_util.h"

#include <stdio.h>
#include <string.h>

/* Images per forward when only predicting: the batch does not change the labels. */
#define TEST_BATCH 256

struct options {
    const char *data, *out, *model;
    ex_format format;
    clf_options train;
};

static void usage(FILE *f)
{
    clf_options d;
    clf_default_options(&d);
    fprintf(f,
            "usage: cvae-classify train --data DIR --out FILE [options]\n"
            "       cvae-classify test --model FILE --data DIR\n"
            "\n"
            "train: trains a digit classifier on DIR/train-images-idx3-ubyte and\n"
            "DIR/train-labels-idx1-ubyte with Adam, prints one line per epoch (mean loss,\n"
            "accuracy on the shifted training images, learning rate, seconds), saves it to\n"
            "FILE and, when DIR/t10k-images-idx3-ubyte is there, prints its accuracy on the\n"
            "t10k images and labels.\n"
            "test: prints the accuracy of a saved classifier on DIR's t10k images.\n"
            "\n"
            "  --data DIR       data directory (required; `make data` makes data/mnist)\n"
            "  --format F       idx (default) or cifar10: the data's format\n"
            "  --out FILE       train: where the classifier goes (required)\n"
            "  --model FILE     test: the classifier to test (required)\n"
            "  --epochs N       train: passes over the training set (default %d)\n"
            "  --batch B        train: images per Adam step (default %d)\n"
            "  --lr X           train: peak learning rate; it falls to 0 on a cosine over\n"
            "                   the run (default %g)\n"
            "  --shift P        train: shift each image by up to P pixels each way (default %d)\n"
            "  --seed S         train: seed of the initial weights, the shuffles and the\n"
            "                   shifts (default %llu)\n"
            "  --threads N      threads (default 0: OMP_NUM_THREADS when set, else all cores);\n"
            "                   results are the same for any N\n"
            "  --help           this text\n"
            "  --version        program and library version\n"
            "\n"
            "The network: conv2d(32, 3x3, pad 1) ReLU, conv2d(64, 4x4, stride 2, pad 1) ReLU,\n"
            "conv2d(64, 4x4, stride 2, pad 1) ReLU, flatten, linear(128) ReLU, linear(10).\n"
            "Exit status: 0 done, 1 a runtime error, 2 a usage error.\n",
            d.epochs, d.batch, d.lr, d.max_shift, (unsigned long long)d.seed);
}

/* Parses argv[2..]: `train` takes every option, `test` only --model, --data, --threads. */
static void parse_options(int argc, char **argv, int training, struct options *o)
{
    const char *v;
    int i;

    for (i = 2; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--data", &v))
            o->data = v;
        else if (ex_option(argc, argv, &i, "--format", &v))
            o->format = ex_parse_format("--format", v);
        else if (ex_option(argc, argv, &i, "--threads", &v))
            o->train.threads = (int)ex_parse_long("--threads", v, 0, 256);
        else if (!training && ex_option(argc, argv, &i, "--model", &v))
            o->model = v;
        else if (training && ex_option(argc, argv, &i, "--out", &v))
            o->out = v;
        else if (training && ex_option(argc, argv, &i, "--epochs", &v))
            o->train.epochs = (int)ex_parse_long("--epochs", v, 1, 100000);
        else if (training && ex_option(argc, argv, &i, "--batch", &v))
            o->train.batch = (int)ex_parse_long("--batch", v, 1, 65536);
        else if (training && ex_option(argc, argv, &i, "--lr", &v))
            o->train.lr = ex_parse_double("--lr", v, 1e-12, 10);
        else if (training && ex_option(argc, argv, &i, "--shift", &v))
            o->train.max_shift = (int)ex_parse_long("--shift", v, 0, 8);
        else if (training && ex_option(argc, argv, &i, "--seed", &v))
            o->train.seed = ex_parse_u64("--seed", v);
        else
            ex_unknown_option(argv[i]);
    }
    if (!o->data)
        ex_usage_error("--data DIR is required (try --help)");
    if (training && !o->out)
        ex_usage_error("--out FILE is required (try --help)");
    if (!training && !o->model)
        ex_usage_error("--model FILE is required (try --help)");
}

/* Prints the accuracy on the t10k images and labels of test; returns 0 or 1. */
static int report_test(clf_classifier *clf, cvae_dataset *test)
{
    int correct = 0, total = 0;
    double t0 = ex_now();
    cvae_status st;

    if ((st = clf_accuracy(clf, test, &correct, &total)) != CVAE_OK)
        return ex_status_error("testing", st, clf_last_error(clf));
    printf("test accuracy: %.2f%% (%d of %d)  %.1f s\n", 100.0 * correct / total, correct, total,
           ex_now() - t0);
    return 0;
}

static int do_train(struct options *o)
{
    cvae_dataset *train = NULL, *test = NULL;
    clf_classifier *clf = NULL;
    int c, h, w, rc = 1;
    double t0;
    cvae_status st;

    /* Both splits are read, and so checked, before any training: damaged
     * test files must not be found only after the training is done. */
    if (ex_load_data(o->format, o->data, "train", 1, &train) != CVAE_OK)
        goto done;
    if (!ex_data_present(o->format, o->data, "t10k"))
        fprintf(stderr, "%s: note: no test images in %s, so no test accuracy\n", ex_prog,
                o->data);
    else if (ex_load_data(o->format, o->data, "t10k", 1, &test) != CVAE_OK)
        goto done;
    cvae_dataset_shape(train, &c, &h, &w);
    if ((st = clf_create(&clf)) != CVAE_OK) {
        ex_status_error("creating the classifier", st, "");
        goto done;
    }
    if ((st = clf_init(clf, c, h, w, 10, o->train.batch, o->train.seed)) != CVAE_OK) {
        ex_status_error("building the classifier", st, clf_last_error(clf));
        goto done;
    }
    /* Fail now, not after the training, if FILE cannot be written. */
    if ((st = clf_save(clf, o->out)) != CVAE_OK) {
        ex_status_error("saving", st, clf_last_error(clf));
        goto done;
    }
    printf("%d training images of %dx%dx%d; %zu parameters; %d epochs of batch %d, lr %g, "
           "shifts up to %d pixels, seed %llu\n",
           cvae_dataset_count(train), c, h, w, clf_param_count(clf), o->train.epochs,
           o->train.batch, o->train.lr, o->train.max_shift, (unsigned long long)o->train.seed);
    fflush(stdout);
    o->train.log = stdout;
    t0 = ex_now();
    if ((st = clf_train(clf, train, &o->train)) != CVAE_OK) {
        ex_status_error("training", st, clf_last_error(clf));
        goto done;
    }
    printf("trained in %.1f s\n", ex_now() - t0);
    if ((st = clf_save(clf, o->out)) != CVAE_OK) {
        ex_status_error("saving", st, clf_last_error(clf));
        goto done;
    }
    printf("saved %s\n", o->out);
    fflush(stdout);
    if (test && report_test(clf, test) != 0)
        goto done;
    rc = 0;
done:
    clf_destroy(clf);
    cvae_dataset_destroy(test);
    cvae_dataset_destroy(train);
    return rc;
}

static int do_test(const struct options *o)
{
    cvae_dataset *test = NULL;
    clf_classifier *clf = NULL;
    int rc = 1;
    cvae_status st;

    if ((st = clf_create(&clf)) != CVAE_OK) {
        ex_status_error("creating the classifier", st, "");
        goto done;
    }
    if ((st = clf_load(clf, o->model, TEST_BATCH)) != CVAE_OK) {
        ex_status_error("loading the classifier", st, clf_last_error(clf));
        goto done;
    }
    if ((st = clf_set_threads(clf, o->train.threads)) != CVAE_OK) {
        ex_status_error("--threads", st, clf_last_error(clf));
        goto done;
    }
    if (ex_load_data(o->format, o->data, "t10k", 1, &test) != CVAE_OK)
        goto done;
    rc = report_test(clf, test);
done:
    clf_destroy(clf);
    cvae_dataset_destroy(test);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;

    ex_prog = "cvae-classify";
    ex_help_or_version(argc, argv, usage);
    memset(&o, 0, sizeof o);
    clf_default_options(&o.train);
    if (argc < 2)
        ex_usage_error("which command: train or test? (try --help)");
    if (!strcmp(argv[1], "train")) {
        parse_options(argc, argv, 1, &o);
        return do_train(&o);
    }
    if (!strcmp(argv[1], "test")) {
        parse_options(argc, argv, 0, &o);
        return do_test(&o);
    }
    ex_usage_error("unknown command '%s': want train or test (try --help)", argv[1]);
}
