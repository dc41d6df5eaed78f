/*
 * rng.c - the seeded generator behind every random draw of the library.
 *
 * xoshiro256** (Blackman & Vigna, "Scrambled linear pseudorandom number
 * generators", 2018), its state filled by splitmix64 from a 64-bit seed.
 * Integer-only, so the same seed gives the same stream on every platform.
 */
#include "cvae_internal.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void cvi_rng_seed(cvi_rng *rng, uint64_t seed)
{
    int i;
    for (i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

uint64_t cvi_rng_next(cvi_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float cvi_rng_uniform(cvi_rng *rng)
{
    return (float)(cvi_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

void cvi_rng_skip(cvi_rng *rng, uint64_t count)
{
    while (count--)
        (void)cvi_rng_next(rng);
}
