#define _POSIX_C_SOURCE 200809L
/*
 * testutil.c - helpers shared by the test programs; see testutil.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvae.h"
#include "testutil.h"

/* ------------------------------------------------------------ generators */

uint64_t tu_next_u64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

float tu_uniform01(uint64_t *s) { return (float)(tu_next_u64(s) >> 40) * (1.0f / 16777216.0f); }

void tu_fill_uniform(float *v, size_t n, uint64_t seed)
{
    size_t i;
    for (i = 0; i < n; i++)
        v[i] = tu_uniform01(&seed);
}

void tu_rng_init(tu_rng *r, uint64_t seed)
{
    r->s = seed ^ UINT64_C(0x9E3779B97F4A7C15);
    if (r->s == 0)
        r->s = 1;
}

uint64_t tu_rng_next(tu_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

float tu_rng_sym(tu_rng *r)
{
    int64_t k = (int64_t)(tu_rng_next(r) >> 40); /* 0 .. 2^24 - 1 */
    return (float)(k - (INT64_C(1) << 23)) / 8388608.0f;
}

/* ----------------------------------------------------- temporary directories */

int tu_under_valgrind(void)
{
    const char *v = getenv("CVAE_TEST_VALGRIND");
    return v && strcmp(v, "1") == 0;
}

int tu_tmpdir_make(char *dir, size_t size, const char *name)
{
    int len = snprintf(dir, size, "/tmp/%s.XXXXXX", name);
    if (len < 0 || (size_t)len >= size || !mkdtemp(dir)) {
        if (size)
            dir[0] = '\0';
        return -1;
    }
    return 0;
}

void tu_tmpdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096 + 1 + 256]; /* d_name holds at most 255 characters */
    int len;
    if (d) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            len = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (len < 0 || (size_t)len >= sizeof p)
                continue;
            if (unlink(p) != 0)
                rmdir(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

int tu_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* ----------------------------------------------------------------- checksums */

uint32_t tu_crc32(uint32_t crc, const unsigned char *p, size_t n)
{
    size_t i;
    int k;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++)
            crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return ~crc;
}

/* --------------------------------------------------------------- kept objects */

static struct tu_kept {
    tu_kept_kind kind;
    void *p;
} kept[TU_MAX_KEPT];
static int nkept;

static void release(const struct tu_kept *k)
{
    switch (k->kind) {
    case TU_KEEP_MODEL:
        cvae_model_destroy((cvae_model *)k->p);
        break;
    case TU_KEEP_OPT:
        cvae_optimizer_destroy((cvae_optimizer *)k->p);
        break;
    case TU_KEEP_DATASET:
        cvae_dataset_destroy((cvae_dataset *)k->p);
        break;
    case TU_KEEP_MEMORY:
        free(k->p);
        break;
    }
}

void *tu_keep(tu_kept_kind kind, void *p)
{
    struct tu_kept k;
    k.kind = kind;
    k.p = p;
    if (!p)
        fail_msg("out of memory, or a constructor returned NULL");
    if (nkept == TU_MAX_KEPT) {
        release(&k);
        fail_msg("more than %d objects kept", TU_MAX_KEPT);
    }
    kept[nkept++] = k;
    return p;
}

void tu_release_all(void)
{
    while (nkept > 0)
        release(&kept[--nkept]);
}

int tu_release_all_teardown(void **state)
{
    (void)state;
    tu_release_all();
    return 0;
}

void tu_plain_recipe(cvae_model *m)
{
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_KL_WARMUP, 0), CVAE_OK);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_DATA_INIT, 0), CVAE_OK);
    assert_int_equal(cvae_model_set(m, CVAE_MODEL_LOGVAR_INIT, 0), CVAE_OK);
}

cvae_model *tu_new_model(void)
{
    cvae_model *m = NULL;
    assert_int_equal(cvae_model_create(&m), CVAE_OK);
    tu_plain_recipe(m);
    return tu_keep(TU_KEEP_MODEL, m);
}

cvae_optimizer *tu_new_opt(cvae_optimizer_kind kind, size_t n)
{
    cvae_optimizer *o = NULL;
    assert_int_equal(cvae_optimizer_create(&o, kind, n), CVAE_OK);
    return tu_keep(TU_KEEP_OPT, o);
}

void tu_read_average(cvae_optimizer *o, const float *p, size_t n, float *avg)
{
    float *q = malloc(n * sizeof *q);
    cvae_status st;
    assert_non_null(q);
    memcpy(q, p, n * sizeof *q);
    assert_int_equal(cvae_optimizer_average_swapped(o), 0);
    if ((st = cvae_optimizer_swap_average(o, q, n)) != CVAE_OK)
        fail_msg("swap_average: %s (%s)", cvae_status_string(st), cvae_optimizer_last_error(o));
    assert_int_equal(cvae_optimizer_average_swapped(o), 1);
    memcpy(avg, q, n * sizeof *q);
    if ((st = cvae_optimizer_swap_average(o, q, n)) != CVAE_OK)
        fail_msg("swap_average back: %s (%s)", cvae_status_string(st),
                 cvae_optimizer_last_error(o));
    assert_int_equal(cvae_optimizer_average_swapped(o), 0);
    assert_memory_equal(q, p, n * sizeof *q);
    free(q);
}

cvae_dataset *tu_new_dataset(void)
{
    cvae_dataset *ds = NULL;
    assert_int_equal(cvae_dataset_create(&ds), CVAE_OK);
    return tu_keep(TU_KEEP_DATASET, ds);
}

/* ------------------------------------------------------------ model building */

void tu_add_layer(cvae_stack *s, cvae_status made, cvae_layer **l)
{
    assert_int_equal(made, CVAE_OK);
    assert_int_equal(cvae_stack_add(s, *l), CVAE_OK);
}

void tu_put_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

uint32_t tu_get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void tu_fix_crc(unsigned char *buf, size_t len)
{
    tu_put_u32le(buf + len - 4, tu_crc32(0, buf, len - 4));
}

size_t tu_check_model_gradient(cvae_model *m, tu_model_loss_fn loss, void *ctx, const char *what)
{
    size_t n = cvae_model_param_count(m), k, significant = 0;
    float *params = cvae_model_params(m, NULL), *ana;
    loss(m, ctx);
    ana = tu_keep(TU_KEEP_MEMORY, malloc(n * sizeof *ana));
    memcpy(ana, cvae_model_grads(m, NULL), n * sizeof *ana);
    for (k = 0; k < n; k++) {
        const float h = 1e-2f, keep = params[k];
        double up, down, num;
        params[k] = keep + h;
        up = loss(m, ctx);
        params[k] = keep - h;
        down = loss(m, ctx);
        params[k] = keep;
        num = (up - down) / (2.0 * h);
        if (fabs(num) > 1e-2)
            significant++;
        if (fabs(num - ana[k]) > 2e-3 + 2e-2 * fabs(num))
            fail_msg("%s: parameter %zu of %zu: numeric %.7g, analytic %.7g", what, k, n, num,
                     (double)ana[k]);
    }
    return significant;
}
