/*
 * fuzz_dump.c - hc_load() on arbitrary bytes as a dump stream (see
 * core/dump.c for the format).  A load must return an error or the number
 * of entries stored, never crash, hang or leak; after each input the
 * segment must check clean (hc_check: no error, no warning), and then it
 * is flushed for the next input.
 *
 * Every entry and the trailer carry a 64-bit checksum that random
 * mutations never get right, so the first byte of an input is not part of
 * the stream but tells what the target fixes up before the load:
 *
 *   bit 0   the checksum of every entry (walking the framing as a loader
 *           would, up to the first byte that is not 'E') and the trailer's
 *   bit 1   the trailer's count: the number of entries before it
 *   bit 2   the dump time: now less the low 32 bits of the stored one (in
 *           ms), so TTLs are measured against a recent dump
 *
 * Without bit 0 the checksum checks themselves are what gets fuzzed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "hostcache.h"

#define DUMP_SEED UINT64_C(0x44554d5048433031)
#define HEAD 16
#define ENTRY_FIXED 24
#define TRAILER 24

static struct hc_cache *cache;
static int stream_fd = -1;

static void die(const char *what, int rc)
{
	fprintf(stderr, "fuzz_dump: %s: %s\n", what, hc_strerror(rc));
	abort();
}

static void setup(void)
{
	char name[64];

	cache = fuzz_segment("dump", 4096, name, sizeof(name));
	hc_unlink(name); /* the mapping stays; nothing is left behind at exit */
	stream_fd = memfd_create("fuzz-dump", MFD_CLOEXEC);
	if (stream_fd < 0)
		die("memfd_create", -errno);
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_up(uint8_t *s, size_t len, unsigned flags)
{
	if (len < HEAD)
		return;
	if (flags & 4) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		put_le(s + 8, now - (get_le(s + 8, 8) & 0xffffffffu), 8);
	}
	size_t at = HEAD;
	uint64_t count = 0;
	while (at < len && s[at] == 'E' && len - at >= ENTRY_FIXED) {
		size_t n = ENTRY_FIXED + s[at + 1] + (size_t)get_le(s + at + 4, 4);
		if (n > len - at || len - at - n < 8)
			return;
		if (flags & 1)
			put_le(s + at + n, hc_hash64(s + at, n, DUMP_SEED), 8);
		at += n + 8;
		count++;
	}
	if (at < len && s[at] == 'Z' && len - at >= TRAILER) {
		if (flags & 2)
			put_le(s + at + 8, count, 8);
		if (flags & 1)
			put_le(s + at + 16, hc_hash64(s + at + 8, 8, DUMP_SEED), 8);
	}
}

static void on_finding(void *ctx, int severity, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "fuzz_dump: check: %s: %s\n", severity == HC_CHECK_ERROR ? "ERROR" : "WARN",
		msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!cache)
		setup();
	if (size == 0)
		return 0;
	size_t len = size - 1;
	uint8_t *s = malloc(len ? len : 1);
	if (!s)
		return 0;
	memcpy(s, data + 1, len);
	fix_up(s, len, data[0]);
	if (ftruncate(stream_fd, 0) || pwrite(stream_fd, s, len, 0) != (ssize_t)len ||
	    lseek(stream_fd, 0, SEEK_SET) != 0)
		die("write the stream", -errno);
	free(s);

	int64_t rc = hc_load(cache, stream_fd);
	if (rc < 0 && rc != HC_E_FORMAT && rc != HC_E_TOOBIG && rc != HC_E_INVAL)
		die("hc_load", (int)rc);

	struct hc_check_result r;
	int crc = hc_check(cache, on_finding, NULL, &r);
	if (crc != 0 || r.warnings) {
		fprintf(stderr,
			"fuzz_dump: after a load that returned %lld: check %d, %llu errors, "
			"%llu warnings\n",
			(long long)rc, crc, (unsigned long long)r.errors,
			(unsigned long long)r.warnings);
		abort();
	}
	int64_t flushed = hc_flush(cache);
	if (flushed < 0)
		die("hc_flush", (int)flushed);
	if (rc > 0 && flushed > rc) {
		fprintf(stderr, "fuzz_dump: %lld entries stored, %lld flushed\n", (long long)rc,
			(long long)flushed);
		abort();
	}
	return 0;
}
