/*
 * fileio.c - writing a file so that a failure never destroys the previous
 * one: write "<path>.tmp", flush and close it (checking every step), then
 * rename it over the path. A failure removes the temporary file and leaves
 * the target as it was. rename() replaces the target atomically on POSIX
 * systems. The temporary name lives in the struct: saving allocates
 * nothing of its own (stdio's buffer is the C library's). Also little-endian encoding helpers for the model file.
 */
#include "cvae_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

cvae_status cvi_afile_open(cvi_afile *af, const char *path, char *err)
{
    size_t len = strlen(path);
    memset(af, 0, sizeof *af);
    if (len > CVI_PATH_MAX) {
        cvi_set_error(err, "a path of %zu bytes is longer than the %d this library writes to",
                      len, CVI_PATH_MAX);
        return CVAE_ERR_INVALID_ARG;
    }
    af->path = path;
    memcpy(af->tmp_path, path, len);
    memcpy(af->tmp_path + len, ".tmp", 5);
    errno = 0;
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        int no_memory = errno == ENOMEM;
        cvi_set_error(err, "%s: cannot create: %s", af->tmp_path,
                      errno ? strerror(errno) : "fopen failed");
        af->path = NULL;
        return no_memory ? CVAE_ERR_NOMEM : CVAE_ERR_IO;
    }
    return CVAE_OK;
}

cvae_status cvi_afile_write(cvi_afile *af, const void *data, size_t n, char *err)
{
    if (af->failed)
        return CVAE_ERR_IO;
    errno = 0;
    if (n && fwrite(data, 1, n, af->f) != n) {
        cvi_set_error(err, "%s: write failed: %s", af->tmp_path,
                      errno ? strerror(errno) : "short write");
        af->failed = 1;
        return CVAE_ERR_IO;
    }
    return CVAE_OK;
}

void cvi_afile_abort(cvi_afile *af)
{
    if (af->f)
        fclose(af->f);
    if (af->path)
        remove(af->tmp_path);
    memset(af, 0, sizeof *af);
}

cvae_status cvi_afile_commit(cvi_afile *af, char *err)
{
    int flush_failed, close_failed;
    if (af->failed) {
        cvi_afile_abort(af);
        return CVAE_ERR_IO;
    }
    errno = 0;
    flush_failed = fflush(af->f) != 0 || ferror(af->f);
    close_failed = fclose(af->f) != 0;
    af->f = NULL;
    if (flush_failed || close_failed) {
        cvi_set_error(err, "%s: write failed: %s", af->tmp_path,
                      errno ? strerror(errno) : "error on flush or close");
        cvi_afile_abort(af);
        return CVAE_ERR_IO;
    }
    errno = 0;
    if (rename(af->tmp_path, af->path) != 0) {
        cvi_set_error(err, "%s: cannot replace with %s: %s", af->path, af->tmp_path,
                      errno ? strerror(errno) : "rename failed");
        cvi_afile_abort(af);
        return CVAE_ERR_IO;
    }
    memset(af, 0, sizeof *af);
    return CVAE_OK;
}

void cvi_put_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

uint32_t cvi_get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void cvi_put_u32be(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

uint32_t cvi_get_u32be(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
