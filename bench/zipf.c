/*
 * zipf.c - Zipf sampling by rejection-inversion.
 *
 * W. Hörmann and G. Derflinger, "Rejection-inversion to generate variates
 * from monotone discrete distributions", ACM TOMACS 6(3), 1996.  The
 * probability of rank k is proportional to h(k) = k^-s.  The method draws
 * x by inverting the integral H of h over [1.5 - 1, n + 0.5] (a continuous
 * hat whose area over [k - 0.5, k + 0.5] bounds h(k)), rounds it to the
 * nearest rank k, and accepts k when the point also falls under h(k)'s
 * share of that interval.  The expected number of iterations is close to 1
 * for every n and s, it needs O(1) memory (no n-entry CDF table), and
 * every draw is a function of the random stream only, so a seeded stream
 * gives the same ranks on every run.  The formulation follows Apache
 * Commons RNG's RejectionInversionZipfSampler, with the helper functions
 * that keep H and its inverse accurate when s is close to 1.
 */
#include <math.h>

#include "rng.h"
#include "zipf.h"

/* log1p(x) / x, accurate near 0. */
static double helper1(double x)
{
	if (fabs(x) > 1e-8)
		return log1p(x) / x;
	return 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

/* expm1(x) / x, accurate near 0. */
static double helper2(double x)
{
	if (fabs(x) > 1e-8)
		return expm1(x) / x;
	return 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

/* H(x) = (x^(1-s) - 1) / (1 - s), or log(x) when s == 1. */
static double h_integral(const struct zipf *z, double x)
{
	double lx = log(x);
	return helper2((1.0 - z->s) * lx) * lx;
}

/* h(x) = x^-s */
static double h(const struct zipf *z, double x)
{
	return exp(-z->s * log(x));
}

/* The inverse of H. */
static double h_integral_inverse(const struct zipf *z, double x)
{
	double t = x * (1.0 - z->s);
	if (t < -1.0)
		t = -1.0; /* rounding at the far end of the range */
	return exp(helper1(t) * x);
}

int zipf_init(struct zipf *z, uint64_t n, double s)
{
	if (n == 0 || !(s > 0.0))
		return -1;
	z->n = n;
	z->s = s;
	z->h_integral_x1 = h_integral(z, 1.5) - 1.0;
	z->h_integral_n = h_integral(z, (double)n + 0.5);
	z->accept_squeeze = 2.0 - h_integral_inverse(z, h_integral(z, 2.5) - h(z, 2.0));
	return 0;
}

uint64_t zipf_next(const struct zipf *z, uint64_t *rng)
{
	for (;;) {
		double u = z->h_integral_n + rng_unit(rng) * (z->h_integral_x1 - z->h_integral_n);
		double x = h_integral_inverse(z, u);
		double kd = floor(x + 0.5);
		if (kd < 1.0)
			kd = 1.0;
		else if (kd > (double)z->n)
			kd = (double)z->n;
		if (kd - x <= z->accept_squeeze || u >= h_integral(z, kd + 0.5) - h(z, kd))
			return (uint64_t)kd;
	}
}

double zipf_p1(uint64_t n, double s)
{
	/* summed from the small terms up, so they are not lost against the large ones */
	double sum = 0.0;
	for (uint64_t k = n; k >= 1; k--)
		sum += pow((double)k, -s);
	return 1.0 / sum;
}
