/*
 * fuzz_check.c - the segment validator, hc_check_image(), on arbitrary
 * images.  It must never crash, never read outside the image (every image
 * is a malloc'd buffer of exactly its length) and always finish.
 *
 * A real segment image is at least several hundred kilobytes (the request
 * ring alone is 320 KB), too big to mutate blindly and to keep in a
 * corpus.  So an input is one of two things, told by its first byte:
 *
 *   byte 0 & 3 == 0   raw: the rest of the input is the image
 *   otherwise         patches over the base image, a real segment built
 *                     once at start-up (sets of many sizes, evictions,
 *                     deletes; hash seed fixed, so the image is the same
 *                     in every run):
 *                       if byte 0 & 4: u32 length, the image is cut to
 *                       length % (base length + 1) bytes;
 *                       then records: u8 region, u32 offset, u8 count,
 *                       count bytes, written at the offset (modulo the
 *                       region's length) of the region: 0 header,
 *                       1 classes, 2 entities, 3 totals, 4 loading
 *                       counters, 5 agent record and ring, 6 thread slots,
 *                       7 flights, 8 slab table, 9 index, 10 arena,
 *                       other: the whole image.  All integers little-endian.
 *
 * The base image with no patch must check clean: that is asserted too.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "layout.h"
#include "hostcache.h"

#define NREGIONS 11
#define BASE_SEED UINT64_C(0x6675727a2d636b31)

static uint8_t *base;
static size_t base_len;
static uint64_t region_off[NREGIONS + 1]; /* region i is [off[i], off[i + 1]) */

static void die(const char *what, int rc)
{
	fprintf(stderr, "fuzz_check: %s: %s\n", what, hc_strerror(rc));
	abort();
}

static uint8_t *read_object(const char *name, size_t *len)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm/hostcache.%s", name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		die("open the segment's object", -1);
	uint8_t *img = malloc((size_t)st.st_size);
	if (!img || pread(fd, img, (size_t)st.st_size, 0) != st.st_size)
		die("read the segment's object", -1);
	close(fd);
	*len = (size_t)st.st_size;
	return img;
}

/* Give the (closed) segment @name a fixed hash seed, so its image is reproducible. */
static void fix_seed(const char *name)
{
	char path[128];
	uint64_t seed = BASE_SEED;
	snprintf(path, sizeof(path), "/dev/shm/hostcache.%s", name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || pwrite(fd, &seed, sizeof(seed), offsetof(struct hc_header, hash_seed)) !=
			      (ssize_t)sizeof(seed))
		die("fix the hash seed", -1);
	close(fd);
}

/* A small segment after sets of many sizes, evictions and deletes. */
static void build_base(void)
{
	char name[64];
	struct hc_options o = {0};
	struct hc_cache *c = fuzz_segment("check", 4096, name, sizeof(name));
	int rc;

	hc_close(c);
	fix_seed(name);
	if ((rc = hc_open(name, &o, &c)))
		die("attach the base segment", rc);

	uint8_t val[4096];
	uint32_t x = 12345;
	for (int i = 0; i < 600; i++) {
		char key[32];
		int klen = snprintf(key, sizeof(key), "key:%d", i);
		size_t vlen = 1 + (i * 37) % (i % 9 == 0 ? 4096 : 300);
		for (size_t j = 0; j < vlen; j++) {
			x = x * 1103515245u + 12345u;
			val[j] = (uint8_t)(x >> 16);
		}
		if (i % 7 == 0) {
			struct hc_set_opts so = {.stale_ms = 60000,
						 .compute_ms = 5,
						 .flags = i % 14 == 0 ? HC_ENTRY_NEGATIVE : 0};
			rc = hc_set_ex(c, key, (size_t)klen, val, vlen, &so);
		} else {
			rc = hc_set(c, key, (size_t)klen, val, vlen, 0);
		}
		if (rc)
			die("set", rc);
		if (i % 5 == 0 && i >= 10) {
			klen = snprintf(key, sizeof(key), "key:%d", i - 10);
			hc_del(c, key, (size_t)klen);
		}
	}
	hc_close(c);
	base = read_object(name, &base_len);
	hc_unlink(name);

	const struct hc_header *h = (const struct hc_header *)base;
	const uint64_t offs[NREGIONS] = {0,
					 h->off_classes,
					 h->off_entities,
					 h->off_totals,
					 h->off_loadctr,
					 h->off_agent,
					 h->off_slots,
					 h->off_flights,
					 h->off_slabtab,
					 h->off_index,
					 h->off_arena};
	for (int i = 0; i < NREGIONS; i++)
		region_off[i] = offs[i];
	region_off[NREGIONS] = base_len;
	for (int i = 0; i < NREGIONS; i++)
		if (region_off[i] >= region_off[i + 1])
			die("the base image's regions are out of order", -1);

	struct hc_check_result r;
	if (hc_check_image(base, base_len, NULL, NULL, &r) != 0 || r.errors || r.warnings) {
		fprintf(stderr, "fuzz_check: the base image does not check clean: %llu errors\n",
			(unsigned long long)r.errors);
		abort();
	}
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Apply the patch records of @p..@end to @img (@len bytes). */
static void apply_patches(uint8_t *img, size_t len, const uint8_t *p, const uint8_t *end)
{
	while (end - p >= 6) {
		unsigned region = p[0];
		uint64_t lo = 0, hi = len;
		if (region < NREGIONS) {
			lo = region_off[region];
			hi = region_off[region + 1] < len ? region_off[region + 1] : len;
		}
		uint64_t at = hi > lo ? lo + get_u32(p + 1) % (hi - lo) : len;
		size_t n = p[5];
		p += 6;
		if (n > (size_t)(end - p))
			n = (size_t)(end - p);
		if (at < len)
			memcpy(img + at, p, n < len - at ? n : len - at);
		p += n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!base)
		build_base();
	if (size == 0)
		return 0;

	const uint8_t *p = data + 1, *end = data + size;
	uint8_t *img;
	size_t len;
	bool pristine = false;
	if ((data[0] & 3) == 0) {
		len = size - 1;
		img = malloc(len ? len : 1);
		if (!img)
			return 0;
		memcpy(img, p, len);
	} else {
		len = base_len;
		if ((data[0] & 4) && end - p >= 4) {
			len = get_u32(p) % (base_len + 1);
			p += 4;
		}
		img = malloc(len ? len : 1);
		if (!img)
			return 0;
		memcpy(img, base, len);
		pristine = len == base_len && end - p < 6;
		apply_patches(img, len, p, end);
	}

	struct hc_check_result r;
	int rc = hc_check_image(img, len, NULL, NULL, &r);
	if (rc == -ENOMEM) { /* an image whose geometry asks for too much: not a finding */
		free(img);
		return 0;
	}
	if (rc < 0)
		die("hc_check_image", rc);
	if (rc != (r.errors ? 1 : 0) || (pristine && (rc || r.warnings))) {
		fprintf(stderr, "fuzz_check: returned %d with %llu errors, %llu warnings%s\n", rc,
			(unsigned long long)r.errors, (unsigned long long)r.warnings,
			pristine ? " (base image)" : "");
		abort();
	}
	free(img);
	return 0;
}
