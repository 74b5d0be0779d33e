/*
 * testutil.h - the few helpers every test shares: checks that report
 * file:line and keep going, a unique segment name per test (tests run in
 * parallel), and a checksummed value format for the concurrency tests.
 */
#ifndef HC_TESTUTIL_H
#define HC_TESTUTIL_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hostcache.h"

static int tu_failures;

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			tu_failures++;                                                           \
		}                                                                                \
	} while (0)

/* An hc_* call expected to return @want (an int code). */
#define CHECK_RC(call, want)                                                                    \
	do {                                                                                    \
		long long got_ = (long long)(call);                                             \
		long long want_ = (long long)(want);                                            \
		if (got_ != want_) {                                                            \
			fprintf(stderr, "%s:%d: %s returned %lld (%s), expected %lld (%s)\n",   \
				__FILE__, __LINE__, #call, got_, hc_strerror((int)got_), want_, \
				hc_strerror((int)want_));                                       \
			tu_failures++;                                                          \
		}                                                                               \
	} while (0)

#define REQUIRE(cond)                                                                        \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: required: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                             \
		}                                                                            \
	} while (0)

static inline int tu_done(const char *name)
{
	if (tu_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name, tu_failures);
		return 1;
	}
	printf("%s: ok\n", name);
	return 0;
}

/* A segment name unique to this process and call. */
static inline const char *tu_name(const char *base)
{
	static char buf[8][96];
	static int n;
	char *b = buf[n++ % 8];
	snprintf(b, 96, "t-%s-%d-%d", base, (int)getpid(), n);
	return b;
}

static inline uint64_t tu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void tu_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static inline uint64_t tu_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * Checksummed values: [u64 hash of the rest][u32 key id][u32 version][bytes].
 * The bytes are derived from key id and version, so a reader can verify a
 * value it got, whole: a torn or wrong value fails.
 */
static inline size_t tu_make_value(uint8_t *buf, size_t len, uint32_t key_id, uint32_t version)
{
	if (len < 16)
		len = 16;
	memcpy(buf + 8, &key_id, 4);
	memcpy(buf + 12, &version, 4);
	uint64_t s = ((uint64_t)key_id << 32 | version) * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 16; i < len; i++)
		buf[i] = (uint8_t)tu_rand(&s);
	uint64_t h = hc_hash64(buf + 8, len - 8, 77);
	memcpy(buf, &h, 8);
	return len;
}

/* 0 if @buf is a whole value of @key_id; -1 otherwise. */
static inline int tu_check_value(const uint8_t *buf, size_t len, uint32_t key_id)
{
	if (len < 16)
		return -1;
	uint64_t h;
	memcpy(&h, buf, 8);
	if (h != hc_hash64(buf + 8, len - 8, 77))
		return -1;
	uint32_t id;
	memcpy(&id, buf + 8, 4);
	return id == key_id ? 0 : -1;
}

/*
 * Progress windows: a test that runs workers calls tu_progress_tick() now
 * and then with the operations completed so far; a window of window_ns in
 * which that count did not move is counted in .still.
 */
struct tu_progress {
	uint64_t window_ns, start, ops;
	uint64_t windows, still;
};

static inline void tu_progress_start(struct tu_progress *p, uint64_t window_ns, uint64_t ops)
{
	*p = (struct tu_progress){.window_ns = window_ns, .start = tu_now_ns(), .ops = ops};
}

static inline void tu_progress_tick(struct tu_progress *p, uint64_t ops)
{
	uint64_t now = tu_now_ns();
	if (now - p->start < p->window_ns)
		return;
	p->windows++;
	if (ops == p->ops)
		p->still++;
	p->ops = ops;
	p->start = now;
}

/*
 * Every key "<prefix><k>", k < @n, reads back as a whole value of k or is
 * absent (@buf, @cap: room for the largest value).
 */
static inline void tu_check_keys(struct hc_cache *c, const char *prefix, uint32_t n, uint8_t *buf,
				 size_t cap)
{
	for (uint32_t k = 0; k < n; k++) {
		char key[64];
		int kl = snprintf(key, sizeof(key), "%s%u", prefix, k);
		size_t len;
		int rc = hc_get(c, key, (size_t)kl, buf, cap, &len);
		if (rc == 0)
			CHECK(tu_check_value(buf, len, k) == 0);
		else
			CHECK_RC(rc, HC_E_NOTFOUND);
	}
}

#endif
