/*
 * crc32.c - CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, as zlib, PNG
 * and gzip use) and Adler-32 (RFC 1950), for the model file and PNG.
 *
 * The CRC takes eight bytes a step through eight constant 256-entry tables
 * (slicing-by-8, crc32_table.h): a model file of 27 MB is checksummed at
 * every save and load, and the four-bits-at-a-time loop of 0.9.0 spent
 * about 0.1 s on it, 3 % of a training run with a checkpoint per epoch.
 * The tables are constants, not built at run time (that would be global
 * state), and the bytes are combined one by one, so any byte order works.
 */
#include "cvae_internal.h"

#include "crc32_table.h"

/* The little-endian 32-bit word at p. */
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t cvi_crc32_update(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = crc ^ le32(p), hi = le32(p + 4);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][lo >> 8 & 0xff] ^
              crc_table[5][lo >> 16 & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
              crc_table[2][hi >> 8 & 0xff] ^ crc_table[1][hi >> 16 & 0xff] ^ crc_table[0][hi >> 24];
    }
    for (; n > 0; n--, p++)
        crc = crc_table[0][(crc ^ *p) & 0xff] ^ crc >> 8;
    return ~crc;
}

uint32_t cvi_adler32_update(uint32_t adler, const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t a = adler & 0xffff, b = adler >> 16;
    while (n > 0) {
        /* 5552 bytes is the most that cannot overflow b before the modulo. */
        size_t chunk = n < 5552 ? n : 5552;
        n -= chunk;
        while (chunk--) {
            a += *p++;
            b += a;
        }
        a %= 65521u;
        b %= 65521u;
    }
    return (b << 16) | a;
}
