/*
 * datasets.c - the data formats of the example programs; see datasets.h.
 * Directory listing (pnm) uses POSIX opendir: the library itself takes
 * lists of paths and stays C99.
 */
#define _POSIX_C_SOURCE 200809L

#include "datasets.h"

#include "example_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EX_PATH_MAX 4096
#define CIFAR_TRAIN_FILES 5

ex_format ex_parse_format(const char *opt, const char *s)
{
    if (!strcmp(s, "idx"))
        return EX_FORMAT_IDX;
    if (!strcmp(s, "cifar10"))
        return EX_FORMAT_CIFAR10;
    if (!strcmp(s, "pnm"))
        return EX_FORMAT_PNM;
    ex_usage_error("%s wants idx, cifar10 or pnm, not '%s'", opt, s);
}

const char *ex_format_name(ex_format f)
{
    return f == EX_FORMAT_CIFAR10 ? "cifar10" : f == EX_FORMAT_PNM ? "pnm" : "idx";
}

static int is_test(const char *split) { return strcmp(split, "train") != 0; }

static int readable(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* dir/name into buf, or 0 (with a message) if it does not fit. */
static int join(char *buf, const char *dir, const char *name)
{
    int n = snprintf(buf, EX_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= EX_PATH_MAX) {
        ex_error("path too long: %s/%s", dir, name);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------- idx */

static int idx_path(char *buf, const char *dir, const char *split, const char *kind)
{
    char name[64];
    snprintf(name, sizeof name, "%s-%s", is_test(split) ? "t10k" : "train", kind);
    return join(buf, dir, name);
}

/* 1 if something is at path (a file, a directory, even a dangling link),
 * so that whatever is there is read and judged by the loader. */
static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The labels file is read whenever it is there, needed or not: one that is
 * present and malformed (a wrong count, a label above 9) means the data set
 * is damaged, which must be said rather than trained on. Only a missing
 * labels file is fine, when the caller does not need labels. */
static cvae_status load_idx(const char *dir, const char *split, int with_labels, cvae_dataset *ds)
{
    char images[EX_PATH_MAX], labels[EX_PATH_MAX];
    const char *err;
    int read_labels;
    cvae_status st;
    if (!idx_path(images, dir, split, "images-idx3-ubyte") ||
        !idx_path(labels, dir, split, "labels-idx1-ubyte"))
        return CVAE_ERR_INVALID_ARG;
    read_labels = with_labels || exists(labels);
    st = cvae_dataset_load_idx(ds, images, read_labels ? labels : NULL);
    if (st != CVAE_OK) {
        err = cvae_dataset_last_error(ds);
        /* The loader's messages start with the file's path. */
        if (!with_labels && !strncmp(err, labels, strlen(labels)))
            ex_error("reading the IDX files: %s: %s (labels are not needed here, but a labels "
                     "file that is there must be valid: repair or remove it)",
                     cvae_status_string(st), err);
        else
            ex_status_error("reading the IDX files", st, err);
    }
    return st;
}

/* ----------------------------------------------------------- cifar10 */

/* The folder holding the batches: DIR, or DIR/cifar-10-batches-bin as the
 * archive unpacks. */
static int cifar_dir(char *buf, const char *dir, const char *first_file)
{
    char probe[EX_PATH_MAX];
    if (!join(probe, dir, first_file))
        return 0;
    if (!readable(probe) && join(buf, dir, "cifar-10-batches-bin") &&
        join(probe, buf, first_file) && readable(probe))
        return 1;
    strcpy(buf, dir); /* fits: shorter than probe */
    return 1;
}

static cvae_status load_cifar10(const char *dir, const char *split, cvae_dataset *ds)
{
    char folder[EX_PATH_MAX], paths[CIFAR_TRAIN_FILES][EX_PATH_MAX];
    const char *list[CIFAR_TRAIN_FILES];
    int count = 0, i;
    cvae_status st;
    if (!cifar_dir(folder, dir, is_test(split) ? "test_batch.bin" : "data_batch_1.bin"))
        return CVAE_ERR_INVALID_ARG;
    if (is_test(split)) {
        if (!join(paths[0], folder, "test_batch.bin"))
            return CVAE_ERR_INVALID_ARG;
        list[count++] = paths[0];
    } else {
        /* data_batch_1.bin always (its absence is the loader's message),
         * then the others that are there. */
        for (i = 0; i < CIFAR_TRAIN_FILES; i++) {
            char name[32];
            snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
            if (!join(paths[count], folder, name))
                return CVAE_ERR_INVALID_ARG;
            if (i == 0 || readable(paths[count])) {
                list[count] = paths[count];
                count++;
            }
        }
    }
    st = cvae_dataset_load_cifar10(ds, list, count);
    if (st != CVAE_OK)
        ex_status_error("reading CIFAR-10", st, cvae_dataset_last_error(ds));
    return st;
}

/* --------------------------------------------------------------- pnm */

static int has_pnm_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && (!strcmp(name + n - 4, ".pgm") || !strcmp(name + n - 4, ".ppm") ||
                     !strcmp(name + n - 4, ".pnm"));
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The split's folder: DIR/train or DIR itself, DIR/test. */
static int pnm_dir(char *buf, const char *dir, const char *split)
{
    if (is_test(split))
        return join(buf, dir, "test");
    if (!join(buf, dir, "train"))
        return 0;
    if (!is_dir(buf))
        strcpy(buf, dir); /* fits: shorter than dir/train */
    return 1;
}

/* The image files of folder, full paths in name order; count 0 when none. */
static cvae_status list_pnm(const char *folder, char ***out, int *count)
{
    DIR *d = opendir(folder);
    struct dirent *e;
    char **names = NULL;
    int n = 0, cap = 0;
    *out = NULL;
    *count = 0;
    if (!d) {
        ex_error("%s: cannot open the folder", folder);
        return CVAE_ERR_IO;
    }
    while ((e = readdir(d)) != NULL) {
        char path[EX_PATH_MAX], **grown;
        if (!has_pnm_suffix(e->d_name) || !join(path, folder, e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            grown = realloc(names, (size_t)cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        if (!(names[n] = malloc(strlen(path) + 1)))
            break;
        strcpy(names[n++], path);
    }
    closedir(d);
    if (e) { /* stopped early: out of memory */
        while (n > 0)
            free(names[--n]);
        free(names);
        ex_error("out of memory listing %s", folder);
        return CVAE_ERR_NOMEM;
    }
    qsort(names, (size_t)n, sizeof *names, compare_names);
    *out = names;
    *count = n;
    return CVAE_OK;
}

static cvae_status load_pnm(const char *dir, const char *split, cvae_dataset *ds)
{
    char folder[EX_PATH_MAX], **names;
    int count, i;
    cvae_status st;
    if (!pnm_dir(folder, dir, split))
        return CVAE_ERR_INVALID_ARG;
    if ((st = list_pnm(folder, &names, &count)) != CVAE_OK)
        return st;
    if (count == 0) {
        ex_error("%s: no .pgm, .ppm or .pnm images", folder);
        return CVAE_ERR_IO;
    }
    st = cvae_dataset_load_pnm(ds, (const char *const *)names, count);
    if (st != CVAE_OK)
        ex_status_error("reading the PGM/PPM images", st, cvae_dataset_last_error(ds));
    for (i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return st;
}

/* -------------------------------------------------------------- both */

int ex_data_present(ex_format f, const char *dir, const char *split)
{
    char path[EX_PATH_MAX];
    if (f == EX_FORMAT_IDX)
        return idx_path(path, dir, split, "images-idx3-ubyte") && readable(path);
    if (f == EX_FORMAT_CIFAR10) {
        const char *first = is_test(split) ? "test_batch.bin" : "data_batch_1.bin";
        char folder[EX_PATH_MAX];
        return cifar_dir(folder, dir, first) && join(path, folder, first) && readable(path);
    }
    return pnm_dir(path, dir, split) && is_dir(path);
}

cvae_status ex_load_data(ex_format f, const char *dir, const char *split, int with_labels,
                         cvae_dataset **out)
{
    cvae_status st;
    *out = NULL;
    if (with_labels && f == EX_FORMAT_PNM) {
        ex_error("the pnm format has no labels, which this needs");
        return CVAE_ERR_INVALID_ARG;
    }
    if ((st = cvae_dataset_create(out)) != CVAE_OK) {
        ex_status_error("creating a dataset", st, "");
        return st;
    }
    st = f == EX_FORMAT_CIFAR10 ? load_cifar10(dir, split, *out)
         : f == EX_FORMAT_PNM   ? load_pnm(dir, split, *out)
                                : load_idx(dir, split, with_labels, *out);
    if (st != CVAE_OK) {
        cvae_dataset_destroy(*out);
        *out = NULL;
    }
    return st;
}
