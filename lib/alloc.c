/*
 * alloc.c - every allocation of the library goes through here, to the
 * allocator of the handle it is made for (cvae_allocator, the C library's
 * malloc and free by default).
 *
 * Float blocks are aligned to 64 bytes (a cache line, and an AVX-512 vector)
 * by over-allocating and keeping the original pointer just below the aligned
 * one; C99 has no aligned_alloc, and a caller's allocator need only give
 * malloc's alignment.
 */
#include "cvae_internal.h"

#include <stdlib.h>
#include <string.h>

#define CVI_ALIGN 64

static void *default_alloc(void *user, size_t size)
{
    (void)user;
    return malloc(size);
}

static void default_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

static const cvae_allocator default_allocator = {default_alloc, default_free, NULL};

cvae_status cvi_allocator_init(cvae_allocator *dst, const cvae_allocator *src)
{
    if (!src) {
        *dst = default_allocator;
        return CVAE_OK;
    }
    if (!src->alloc_fn || !src->free_fn)
        return CVAE_ERR_INVALID_ARG;
    *dst = *src;
    return CVAE_OK;
}

void *cvi_calloc(const cvae_allocator *a, size_t count, size_t size)
{
    size_t bytes;
    void *p;
    if (!a)
        a = &default_allocator;
    if (count == 0 || size == 0 || cvi_mul_overflow(count, size, &bytes))
        return NULL;
    p = a->alloc_fn(a->user, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void cvi_free(const cvae_allocator *a, void *p)
{
    if (!a)
        a = &default_allocator;
    if (p)
        a->free_fn(a->user, p);
}

float *cvi_alloc_floats(const cvae_allocator *a, size_t count)
{
    size_t bytes, total;
    unsigned char *raw, *aligned;
    if (!a)
        a = &default_allocator;
    if (count == 0 || cvi_mul_overflow(count, sizeof(float), &bytes) ||
        cvi_add_overflow(bytes, CVI_ALIGN + sizeof(void *), &total))
        return NULL;
    raw = a->alloc_fn(a->user, total);
    if (!raw)
        return NULL;
    aligned = raw + sizeof(void *);
    aligned += (CVI_ALIGN - (uintptr_t)aligned % CVI_ALIGN) % CVI_ALIGN;
    memcpy(aligned - sizeof(void *), &raw, sizeof(void *));
    return (float *)(void *)aligned;
}

void cvi_free_floats(const cvae_allocator *a, float *p)
{
    void *raw;
    if (!a)
        a = &default_allocator;
    if (!p)
        return;
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof(void *));
    a->free_fn(a->user, raw);
}
