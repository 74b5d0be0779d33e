/*
 * zipf.h - a seeded, deterministic Zipf(s) sampler over ranks 1..n.
 */
#ifndef BENCH_ZIPF_H
#define BENCH_ZIPF_H

#include <stdint.h>

struct zipf {
	uint64_t n;	       /* ranks 1..n */
	double s;	       /* exponent, > 0 */
	double h_integral_x1;  /* H(1.5) - 1 */
	double h_integral_n;   /* H(n + 0.5) */
	double accept_squeeze; /* s in the paper: accept k at once when k - x <= it */
};

/* zipf_init - prepare a sampler; returns 0, or -1 for n == 0 or s <= 0. */
int zipf_init(struct zipf *z, uint64_t n, double s);

/* zipf_next - one rank in 1..n, drawing from the splitmix64 stream @rng. */
uint64_t zipf_next(const struct zipf *z, uint64_t *rng);

/* zipf_p1 - exact probability of rank 1: 1 / sum_{k=1..n} k^-s. */
double zipf_p1(uint64_t n, double s);

#endif /* BENCH_ZIPF_H */
