/*
 * version.c - the version of the loaded library, for comparison with the
 * CVAE_VERSION_* macros of the header a program was compiled with.
 */
#include "cvae_internal.h"

CVAE_API int cvae_version_number(void)
{
    return CVAE_VERSION_NUMBER;
}

CVAE_API const char *cvae_version_string(void)
{
    return CVAE_VERSION_STRING;
}
