/*
 * testwrap.c - the __wrap_ side of the linker's --wrap=malloc,calloc,realloc,
 * free: every call from the program's own objects lands here, is counted and
 * goes on to the C library (see testwrap.h).
 */
#include "testwrap.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);

static unsigned long calls;

unsigned long tw_libc_calls(void)
{
    return calls;
}

void *tw_real_malloc(size_t size)
{
    return __real_malloc(size);
}

void tw_real_free(void *p)
{
    __real_free(p);
}

void *__wrap_malloc(size_t size)
{
    calls++;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t count, size_t size)
{
    calls++;
    return __real_calloc(count, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    calls++;
    return __real_realloc(p, size);
}

void __wrap_free(void *p)
{
    if (p)
        calls++;
    __real_free(p);
}
