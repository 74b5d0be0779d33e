/*
 * hash.c - the 64-bit hash of keys (bucket choice and tags), of values
 * (content hash: the entry's ETag and its integrity check) and of entity
 * names.
 *
 * A multiply-mix hash: 64x64->128 bit products folded by xor, consuming 16
 * or 32 bytes per round, in the family of wyhash and rapidhash.  Short keys
 * (the common case: 8-40 bytes) take two or three multiplies.  It is not a
 * cryptographic hash; keys are hashed with a random per-segment seed so
 * that a client cannot aim keys at one bucket pair.  Values are hashed with
 * a fixed seed so the same content has the same ETag on every host.
 * Reads are unaligned little-endian loads (memcpy), as on every host this
 * builds for; a hash only has to agree within one host.
 */
#include <string.h>

#include "internal.h"

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* Fold of the full 128-bit product: every input bit reaches every output bit. */
static inline uint64_t mum(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)(r >> 64) ^ (uint64_t)r;
}

#define K0 UINT64_C(0x9e3779b97f4a7c15)
#define K1 UINT64_C(0xc2b2ae3d27d4eb4f)
#define K2 UINT64_C(0x165667b19e3779f9)
#define K3 UINT64_C(0xd6e8feb86659fd93)

uint64_t hc_hash64(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = mum(seed ^ K0, (uint64_t)len ^ K1);
	uint64_t a, b;

	if (len <= 16) {
		if (len >= 8) {
			a = rd64(p);
			b = rd64(p + len - 8);
		} else if (len >= 4) {
			a = rd32(p);
			b = rd32(p + len - 4);
		} else if (len > 0) {
			a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
			b = 0;
		} else {
			a = b = 0;
		}
	} else {
		size_t n = len;
		if (n > 32) {
			uint64_t h2 = h ^ K3;
			do {
				h = mum(rd64(p) ^ K0, rd64(p + 8) ^ h);
				h2 = mum(rd64(p + 16) ^ K1, rd64(p + 24) ^ h2);
				p += 32;
				n -= 32;
			} while (n > 32);
			h ^= h2;
		}
		if (n > 16) {
			h = mum(rd64(p) ^ K0, rd64(p + 8) ^ h);
			p += 16;
			n -= 16;
		}
		/* the last 16 bytes, overlapping what came before when n < 16 */
		a = rd64(p + n - 16);
		b = rd64(p + n - 8);
	}
	return mum(K2 ^ h, mum(a ^ K1, b ^ h ^ K3));
}
