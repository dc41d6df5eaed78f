/*
 * crc32.c - CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, as zlib, PNG
 * and gzip use) and Adler-32 (RFC 1950), for the model file and PNG.
 *
 * The CRC goes four bits at a time through a 16-entry constant table: no
 * table built at run time (that would be global state), and fast enough for
 * files of a few megabytes.
 */
#include "cvae_internal.h"

static const uint32_t nibble_table[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
    0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
    0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu};

uint32_t cvi_crc32_update(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t i;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble_table[crc & 15];
        crc = (crc >> 4) ^ nibble_table[crc & 15];
    }
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
