/*
 * rng.h - the benchmark's pseudo-random numbers: splitmix64 (Steele, Lea
 * and Flood, "Fast splittable pseudorandom number generators", 2014).
 * One 64-bit state word per stream, seeded explicitly, so every run of the
 * benchmark draws the same keys in the same order.
 */
#ifndef BENCH_RNG_H
#define BENCH_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform in [0, n) by a 64x64->128 multiply (Lemire); bias below 2^-40. */
static inline uint64_t rng_below(uint64_t *state, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(state) * n) >> 64);
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double rng_unit(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

#endif /* BENCH_RNG_H */
