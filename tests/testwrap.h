/*
 * testwrap.h - counts the calls to malloc, calloc, realloc and free made by
 * the objects of a test program (the library's included), for the programs
 * linked with the linker's --wrap of those four (WRAP_MALLOC in the
 * Makefile): tests/testwrap.c defines the __wrap_ functions.
 */
#ifndef TESTWRAP_H
#define TESTWRAP_H

#include <stddef.h>

/* Calls so far (free of NULL not counted). */
unsigned long tw_libc_calls(void);

/* The C library's own malloc and free, not counted. */
void *tw_real_malloc(size_t size);
void tw_real_free(void *p);

#endif /* TESTWRAP_H */
