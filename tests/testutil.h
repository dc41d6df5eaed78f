/*
 * testutil.h - helpers shared by the test programs (tests/testutil.c): deterministic
 * generators for test data, temporary directories, a reference CRC-32, and a list of
 * objects freed by a test's teardown. Names carry the prefix tu_.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "cvae.h"

/* ------------------------------------------------------------ generators */

/* splitmix64: a small deterministic generator for test data. */
uint64_t tu_next_u64(uint64_t *s);

/* Uniform in [0, 1) with 24 bits, exact in float. */
float tu_uniform01(uint64_t *s);

/* Fills v[0..n) with tu_uniform01 draws from a splitmix64 stream started at seed. */
void tu_fill_uniform(float *v, size_t n, uint64_t seed);

/* xorshift64*: a fixed generator, independent of the library's rng. */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;

void tu_rng_init(tu_rng *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng *r);

/* Uniform on a 2^-23 grid in [-1, 1); every value is exact in float. */
float tu_rng_sym(tu_rng *r);

/* ---------------------------------------------------------------- valgrind */

/* 1 when the environment has CVAE_TEST_VALGRIND=1, as `make valgrind` sets: the
 * tests then run under valgrind's memcheck, which checks memory, not speed or
 * learning. Tests that fork children under resource limits skip (valgrind's own
 * memory does not fit the limits, and a child's exit would be leak-checked with
 * the parent's blocks still live); long workloads shrink. */
int tu_under_valgrind(void);

/* ----------------------------------------------------- temporary directories */

/* Creates a fresh directory /tmp/<name>.XXXXXX and writes its path into dir (size bytes).
 * Returns 0, or -1 with dir[0] = '\0' when it cannot. */
int tu_tmpdir_make(char *dir, size_t size, const char *name);

/* Removes dir and whatever a test left in it (one level of subdirectories, which some tests
 * create on purpose). */
void tu_tmpdir_remove(const char *dir);

/* Number of entries in dir, other than . and .. (fails the test if dir cannot be opened). */
int tu_count_entries(const char *dir);

/* ----------------------------------------------------------------- checksums */

/* CRC-32 one bit at a time, straight from the definition (reflected polynomial 0xEDB88320,
 * initial and final complement, as zlib): independent of the library's table. Continues from
 * crc (0 to start). */
uint32_t tu_crc32(uint32_t crc, const unsigned char *p, size_t n);

/* Little-endian u32 at p, whatever the host's byte order. */
void tu_put_u32le(unsigned char *p, uint32_t v);
uint32_t tu_get_u32le(const unsigned char *p);

/* Rewrites the last 4 bytes of buf (len bytes) as the little-endian tu_crc32 of the
 * bytes before them: a file edited on purpose then passes its checksum. */
void tu_fix_crc(unsigned char *buf, size_t len);

/* --------------------------------------------------------------- kept objects */

/* Every model, optimizer, dataset and buffer a test makes may be kept here and freed by the
 * teardown, so that a test that fails half-way (cmocka jumps out of it) leaks nothing under
 * LeakSanitizer. */
typedef enum tu_kept_kind {
    TU_KEEP_MODEL,
    TU_KEEP_OPT,
    TU_KEEP_DATASET,
    TU_KEEP_MEMORY
} tu_kept_kind;
#define TU_MAX_KEPT 24

/* Keeps p (of the given kind) and returns it; fails the test if p is NULL or the list is full
 * (p is then freed first). */
void *tu_keep(tu_kept_kind kind, void *p);

/* Frees everything kept, newest first. */
void tu_release_all(void);

/* tu_release_all as a cmocka teardown. */
int tu_release_all_teardown(void **state);

/* A new empty model, optimizer (of kind for n parameters) or dataset, kept; fails the test if
 * the constructor does not return CVAE_OK. The model has the plain training recipe
 * (tu_plain_recipe): the tests written before 0.7.0 compute on it; test_recipe covers the
 * library's default recipe. */
cvae_model *tu_new_model(void);

/* CVAE_MODEL_KL_WARMUP, _DATA_INIT and _LOGVAR_INIT set to 0: PyTorch's plain recipe. */
void tu_plain_recipe(cvae_model *m);

/* Fails the test, naming the call, its status and the model's message, unless the call
 * returns CVAE_OK (needs <cmocka.h>). */
#define TU_CHECK_MODEL(call, m)                                                                    \
    do {                                                                                           \
        cvae_status st_ = (call);                                                                  \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s (%s)", #call, cvae_status_string(st_), cvae_model_last_error(m));     \
    } while (0)

/* The same for a dataset call, with the dataset's message. */
#define TU_CHECK_DATASET(call, ds)                                                                 \
    do {                                                                                           \
        cvae_status st_ = (call);                                                                  \
        if (st_ != CVAE_OK)                                                                        \
            fail_msg("%s: %s (%s)", #call, cvae_status_string(st_), cvae_dataset_last_error(ds));  \
    } while (0)
cvae_optimizer *tu_new_opt(cvae_optimizer_kind kind, size_t n);

/* The running average o holds over the n floats at p, read into avg by swapping it into a
 * copy of p and back. Fails the test unless both swaps succeed,
 * cvae_optimizer_average_swapped follows them (0, 1, 0) and the copy comes back bit for bit.
 * o must not be swapped. */
void tu_read_average(cvae_optimizer *o, const float *p, size_t n, float *avg);
cvae_dataset *tu_new_dataset(void);

/* Appends the layer a constructor call just made into *l to s, failing the test unless both
 * the constructor (made) and the append return CVAE_OK; *l is read only after the call, since
 * the order in which arguments are evaluated is unspecified. */
void tu_add_layer(cvae_stack *s, cvae_status made, cvae_layer **l);

/* A model's loss at its current parameters, which also leaves the loss's
 * gradient in the model's gradient block (ctx: the caller's data). */
typedef double (*tu_model_loss_fn)(cvae_model *m, void *ctx);

/* Compares every parameter's gradient, from one call of loss, with the
 * central difference of loss (step 1e-2) to within 2e-3 + 2e-2 |numeric|,
 * failing the test with what and the parameter otherwise; parameters are
 * restored bit for bit. Returns how many numeric derivatives exceed 1e-2
 * (a check of mostly zero gradients proves little). For smooth models. */
size_t tu_check_model_gradient(cvae_model *m, tu_model_loss_fn loss, void *ctx, const char *what);

#endif
