/*
 * fuzz_idx.c - libFuzzer target for the IDX loader, cvae_dataset_load_idx
 * (lib/dataset.c).
 *
 * Input: an images file, optionally followed by the 8 bytes "#LABELS#" and a
 * labels file. The input is cut at the first "#LABELS#": the bytes before it
 * become the images file, the bytes after it the labels file; without the
 * separator the whole input is the images file and no labels are loaded.
 * Both are written to per-process temporary files (the loader takes paths).
 *
 * Checked on every input: no crash, leak or UB (sanitizers); a failure
 * returns a file status (IO, FORMAT, TOO_LARGE, NOMEM) with a message and
 * leaves the dataset's previous content as it was; a success gives a
 * dataset whose count, shape, labels and batches agree with the files.
 */
#define _POSIX_C_SOURCE 200809L

#include "cvae.h"
#include "fuzz_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEPARATOR "#LABELS#"
#define SEPARATOR_LEN 8
#define MAX_BATCH 4

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static const uint8_t *find_separator(const uint8_t *data, size_t size)
{
    size_t i;
    for (i = 0; i + SEPARATOR_LEN <= size; i++)
        if (data[i] == '#' && memcmp(data + i, SEPARATOR, SEPARATOR_LEN) == 0)
            return data + i;
    return NULL;
}

/* Exercises a loaded dataset a little; the images file is img (img_size
 * bytes, already accepted by the loader, so its header is valid). */
static void exercise(cvae_dataset *ds, const uint8_t *img, size_t img_size, int has_labels)
{
    int count = cvae_dataset_count(ds), c = 0, h = 0, w = 0, n, i, first;
    size_t image, k;
    float *batch;
    int labels[MAX_BATCH];
    cvae_dataset *train = NULL, *val = NULL;

    FUZZ_CHECK(img_size >= 16);
    FUZZ_CHECK(count >= 1 && (uint32_t)count == be32(img + 4));
    FUZZ_CHECK(cvae_dataset_shape(ds, &c, &h, &w) == CVAE_OK);
    FUZZ_CHECK(c == 1 && (uint32_t)h == be32(img + 8) && (uint32_t)w == be32(img + 12));
    FUZZ_CHECK(cvae_dataset_has_labels(ds) == has_labels);
    image = (size_t)h * (size_t)w;
    FUZZ_CHECK((size_t)count * image == img_size - 16);

    n = count < MAX_BATCH ? count : MAX_BATCH;
    batch = malloc((size_t)n * image * sizeof *batch);
    FUZZ_CHECK(batch != NULL);
    /* Every image, packed or raw (lib/pack.c), gives the file's bytes / 255. */
    for (first = 0; first < count; first += n) {
        int m = count - first < n ? count - first : n;
        const uint8_t *px = img + 16 + (size_t)first * image;
        FUZZ_CHECK(cvae_dataset_batch(ds, first, m, batch, labels) == CVAE_OK);
        for (k = 0; k < (size_t)m * image; k++) {
            FUZZ_CHECK(batch[k] == (float)px[k] / 255.0f);
            FUZZ_CHECK(batch[k] >= 0.0f && batch[k] <= 1.0f);
        }
        for (i = 0; i < m; i++)
            FUZZ_CHECK(has_labels ? labels[i] >= 0 && labels[i] <= 9 : labels[i] == -1);
    }

    /* Shuffled, the last batch; then the whole range check. */
    FUZZ_CHECK(cvae_dataset_shuffle(ds, (uint64_t)img_size) == CVAE_OK);
    FUZZ_CHECK(cvae_dataset_batch(ds, count - n, n, batch, NULL) == CVAE_OK);
    FUZZ_CHECK(cvae_dataset_batch(ds, count - n + 1, n, batch, NULL) == CVAE_ERR_INVALID_ARG);
    FUZZ_CHECK(cvae_dataset_unshuffle(ds) == CVAE_OK);
    free(batch);

    if (count >= 2) {
        FUZZ_CHECK(cvae_dataset_split(ds, 1, 7, &train, &val) == CVAE_OK);
        FUZZ_CHECK(cvae_dataset_count(train) == count - 1 && cvae_dataset_count(val) == 1);
        FUZZ_CHECK(cvae_dataset_has_labels(train) == has_labels);
        cvae_dataset_destroy(train);
        cvae_dataset_destroy(val);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *img_path, *lab_path;
    static const uint8_t before[4] = {0, 64, 128, 255};
    const uint8_t *sep = find_separator(data, size);
    size_t img_size = sep ? (size_t)(sep - data) : size;
    cvae_dataset *ds = NULL;
    cvae_status st;
    int c, h, w;

    if (!img_path) {
        img_path = fuzz_temp_path("idx", "images.idx");
        lab_path = fuzz_temp_path("idx", "labels.idx");
    }
    fuzz_write_file(img_path, data, img_size);
    if (sep)
        fuzz_write_file(lab_path, sep + SEPARATOR_LEN, size - img_size - SEPARATOR_LEN);

    FUZZ_CHECK(cvae_dataset_create(&ds) == CVAE_OK);
    /* Some previous content, which a failed load must leave alone. */
    FUZZ_CHECK(cvae_dataset_set_u8(ds, 1, 1, 2, 2, before, NULL) == CVAE_OK);

    st = cvae_dataset_load_idx(ds, img_path, sep ? lab_path : NULL);
    if (fuzz_verbose())
        fprintf(stderr, "load_idx(%zu + %s bytes): %s: %s\n", img_size,
                sep ? "labels" : "no labels", cvae_status_string(st), cvae_dataset_last_error(ds));
    if (st == CVAE_OK) {
        FUZZ_CHECK(cvae_dataset_last_error(ds)[0] == '\0');
        exercise(ds, data, img_size, sep != NULL);
    } else {
        FUZZ_CHECK(st == CVAE_ERR_FORMAT || st == CVAE_ERR_IO || st == CVAE_ERR_TOO_LARGE ||
                   st == CVAE_ERR_NOMEM);
        FUZZ_CHECK(cvae_dataset_last_error(ds)[0] != '\0');
        FUZZ_CHECK(cvae_dataset_count(ds) == 1 && !cvae_dataset_has_labels(ds));
        FUZZ_CHECK(cvae_dataset_shape(ds, &c, &h, &w) == CVAE_OK && c == 1 && h == 2 && w == 2);
    }
    cvae_dataset_destroy(ds);
    return 0;
}
