/*
 * alloc.c - the library's only calls to malloc and free.
 *
 * Float blocks are aligned to 64 bytes (a cache line, and an AVX-512 vector)
 * by over-allocating and keeping the original pointer just below the aligned
 * one; C99 has no aligned_alloc.
 */
#include "cvae_internal.h"

#include <stdlib.h>
#include <string.h>

#define CVI_ALIGN 64

void *cvi_calloc(size_t count, size_t size)
{
    if (count == 0 || size == 0)
        return NULL;
    return calloc(count, size);
}

void cvi_free(void *p)
{
    free(p);
}

float *cvi_alloc_floats(size_t count)
{
    size_t bytes, total;
    unsigned char *raw, *aligned;
    if (count == 0 || cvi_mul_overflow(count, sizeof(float), &bytes) ||
        cvi_add_overflow(bytes, CVI_ALIGN + sizeof(void *), &total))
        return NULL;
    raw = malloc(total);
    if (!raw)
        return NULL;
    aligned = raw + sizeof(void *);
    aligned += (CVI_ALIGN - (uintptr_t)aligned % CVI_ALIGN) % CVI_ALIGN;
    memcpy(aligned - sizeof(void *), &raw, sizeof(void *));
    return (float *)(void *)aligned;
}

void cvi_free_floats(float *p)
{
    void *raw;
    if (!p)
        return;
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof(void *));
    free(raw);
}
