/*
 * test_check.c - the segment validator (hc_check_image, hc_check) on clean
 * images and on images corrupted on purpose, one fault at a time, then a
 * seeded fuzz-lite loop.  The validator must report every fault as an
 * error and must never crash or read outside the image (the CI run under
 * AddressSanitizer is what catches stray reads: every image here is a
 * malloc'd buffer of exactly its length).
 *
 * Images are copies of the shm object file /dev/shm/hostcache.<name>.
 * layout.h is included to find the structures inside them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>

#include "testutil.h"
#include "layout.h"

/* The image of segment @name: its shm object read into a malloc'd buffer. */
static uint8_t *read_image(const char *name, size_t *len)
{
	char path[256];
	snprintf(path, sizeof(path), "/dev/shm/hostcache.%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	struct stat st;
	REQUIRE(fstat(fd, &st) == 0 && st.st_size > 0);
	size_t n = (size_t)st.st_size;
	uint8_t *img = malloc(n);
	REQUIRE(img);
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, img + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		REQUIRE(r > 0);
		got += (size_t)r;
	}
	close(fd);
	*len = n;
	return img;
}

/* A fresh copy of @img, @len bytes exactly (so ASan sees any read past it). */
static uint8_t *dup_image(const uint8_t *img, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);
	REQUIRE(c);
	memcpy(c, img, len);
	return c;
}

static const struct hc_header *hdr_of(const uint8_t *img)
{
	return (const struct hc_header *)img;
}

/* Findings received by the callback. */
struct findings {
	unsigned errors, warnings, calls, empty_msgs;
	char first_error[320];
};

static void on_finding(void *ctx, int severity, const char *msg)
{
	struct findings *f = ctx;
	f->calls++;
	if (!msg || !msg[0])
		f->empty_msgs++;
	if (severity == HC_CHECK_ERROR) {
		if (!f->errors++ && msg)
			snprintf(f->first_error, sizeof(f->first_error), "%s", msg);
	} else if (severity == HC_CHECK_WARN) {
		f->warnings++;
	}
}

/* Print findings (for the log when a check fails). */
static void print_finding(void *ctx, int severity, const char *msg)
{
	fprintf(stderr, "  [%s] %s: %s\n", (const char *)ctx,
		severity == HC_CHECK_ERROR ? "error" : "warn", msg);
}

/* Must check clean: 0, no error, no warning. */
static void expect_clean(const uint8_t *img, size_t len, uint64_t want_entries, const char *what)
{
	struct hc_check_result r;
	memset(&r, 0xa5, sizeof(r));
	int rc = hc_check_image(img, len, NULL, NULL, &r);
	CHECK_RC(rc, 0);
	CHECK(r.errors == 0);
	CHECK(r.warnings == 0);
	CHECK(r.entries == want_entries);
	CHECK(r.blocks_live >= want_entries);
	CHECK(r.blocks == r.blocks_free + r.blocks_alloc + r.blocks_live + r.blocks_retired);
	if (rc != 0 || r.errors || r.warnings || r.entries != want_entries) {
		fprintf(stderr, "%s: rc %d, %llu errors, %llu warnings, %llu entries (want %llu)\n",
			what, rc, (unsigned long long)r.errors, (unsigned long long)r.warnings,
			(unsigned long long)r.entries, (unsigned long long)want_entries);
		hc_check_image(img, len, print_finding, (void *)what, NULL);
	}
}

/*
 * Must be reported as damaged: return 1 and errors > 0, and the callback
 * must have received HC_CHECK_ERROR findings with a text.
 */
static void expect_damaged(const uint8_t *img, size_t len, const char *what)
{
	struct hc_check_result r;
	struct findings f = {0};
	int rc = hc_check_image(img, len, on_finding, &f, &r);
	CHECK_RC(rc, 1);
	CHECK(r.errors > 0);
	CHECK(f.errors > 0);
	CHECK(f.empty_msgs == 0);
	/* the first findings are reported in full, one callback each */
	CHECK(f.errors <= r.errors);
	if (r.errors <= 20)
		CHECK(f.errors == r.errors);
	if (rc != 1 || r.errors == 0 || f.errors == 0)
		fprintf(stderr, "%s: rc %d, %llu errors, %llu warnings, %u error callbacks\n", what,
			rc, (unsigned long long)r.errors, (unsigned long long)r.warnings, f.errors);
	/* the same answer without a callback and without a result */
	CHECK_RC(hc_check_image(img, len, NULL, NULL, NULL), 1);
}

/* Offsets of the first indexed entry that has a value of at least @minv bytes. */
struct found {
	uint64_t slot_off; /* byte offset of the index slot word in the image */
	uint64_t ref;	   /* entry block offset */
	uint32_t klen, vlen;
};

static int find_entry(const uint8_t *img, size_t len, uint32_t minv, uint32_t skip,
		      struct found *out)
{
	const struct hc_header *h = hdr_of(img);
	for (uint64_t b = 0; b < h->nbuckets; b++) {
		for (unsigned i = 0; i < HC_BUCKET_SLOTS; i++) {
			uint64_t so = h->off_index + b * sizeof(struct hc_bucket) + i * 8;
			REQUIRE(so + 8 <= len);
			uint64_t v;
			memcpy(&v, img + so, 8);
			if (!v)
				continue;
			uint64_t ref = v & HC_SLOT_REF_MASK;
			REQUIRE(ref + HC_ENTRY_HDR <= len);
			struct hc_entry e;
			memcpy(&e, img + ref, sizeof(e));
			if (e.vlen < minv)
				continue;
			if (skip) {
				skip--;
				continue;
			}
			REQUIRE(ref + HC_ENTRY_HDR + e.klen + e.vlen <= len);
			out->slot_off = so;
			out->ref = ref;
			out->klen = e.klen;
			out->vlen = e.vlen;
			return 0;
		}
	}
	return -1;
}

static void put_u64(uint8_t *img, uint64_t off, uint64_t v)
{
	memcpy(img + off, &v, 8);
}
static uint64_t get_u64(const uint8_t *img, uint64_t off)
{
	uint64_t v;
	memcpy(&v, img + off, 8);
	return v;
}

static void fill(struct hc_cache *c, int n, uint64_t seed)
{
	uint8_t *val = malloc(40000);
	REQUIRE(val);
	uint64_t s = seed;
	for (int i = 0; i < n; i++) {
		char k[48];
		int kl = snprintf(k, sizeof(k), "%s:%d", (i % 3) ? "item" : "chk", i);
		size_t vl;
		switch (i % 7) {
		case 0:
			vl = 0;
			break;
		case 1:
			vl = tu_rand(&s) % 40000;
			break;
		case 2:
			vl = 1000 + tu_rand(&s) % 3000;
			break;
		default:
			vl = 1 + tu_rand(&s) % 300;
		}
		for (size_t j = 0; j < vl; j++)
			val[j] = (uint8_t)tu_rand(&s);
		uint32_t ttl = (i % 4 == 0) ? 3600000u : 0;
		if (i % 11 == 0) {
			struct hc_set_opts o = {.ttl_ms = 3600000u,
						.stale_ms = 60000,
						.compute_ms = 12,
						.flags = (i % 22 == 0) ? HC_ENTRY_NEGATIVE : 0};
			CHECK_RC(hc_set_ex(c, k, (size_t)kl, val, vl, &o), 0);
		} else {
			CHECK_RC(hc_set(c, k, (size_t)kl, val, vl, ttl), 0);
		}
	}
	free(val);
}

/* ---------------------------------------------------------------------- */

static void test_clean(void)
{
	/* a fresh segment */
	struct hc_options o = {
		.flags = HC_CREATE, .size = 4u << 20, .max_threads = 8, .max_value = 16u << 10};
	struct hc_cache *c;
	const char *name = tu_name("chk-fresh");
	REQUIRE(hc_open(name, &o, &c) == 0);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0 && r.entries == 0);
	size_t len;
	uint8_t *img = read_image(name, &len);
	CHECK(len == 4u << 20);
	expect_clean(img, len, 0, "fresh");
	free(img);
	hc_close(c);
	/* after hc_close, the object on its own still checks clean */
	img = read_image(name, &len);
	expect_clean(img, len, 0, "fresh, closed");
	free(img);
	CHECK_RC(hc_unlink(name), 0);

	/* a filled one */
	struct hc_options o2 = {
		.flags = HC_CREATE, .size = 48u << 20, .max_threads = 8, .max_value = 40000};
	name = tu_name("chk-full");
	REQUIRE(hc_open(name, &o2, &c) == 0);
	const int n = 3000;
	fill(c, n, 12345);
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.items == (uint64_t)n);
	CHECK(st.index_evictions == 0);
	struct findings f = {0};
	CHECK_RC(hc_check(c, on_finding, &f, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0);
	CHECK(r.entries == (uint64_t)n);
	CHECK(f.calls == 0);
	img = read_image(name, &len);
	expect_clean(img, len, (uint64_t)n, "filled");
	/* hc_check_image does not write to the image */
	uint8_t *copy = dup_image(img, len);
	CHECK_RC(hc_check_image(copy, len, NULL, NULL, NULL), 0);
	CHECK(memcmp(copy, img, len) == 0);
	free(copy);
	CHECK_RC(hc_check_image(NULL, len, NULL, NULL, &r), HC_E_INVAL);
	free(img);
	hc_close(c);
	img = read_image(name, &len);
	expect_clean(img, len, (uint64_t)n, "filled, closed");
	free(img);
	CHECK_RC(hc_unlink(name), 0);
}

/* One corruption per fresh copy of a good image. */
static void test_corruptions(void)
{
	struct hc_options o = {
		.flags = HC_CREATE, .size = 24u << 20, .max_threads = 8, .max_value = 40000};
	struct hc_cache *c;
	const char *name = tu_name("chk-corrupt");
	REQUIRE(hc_open(name, &o, &c) == 0);
	const int n = 2000;
	fill(c, n, 777);
	hc_close(c);
	size_t len;
	uint8_t *good = read_image(name, &len);
	CHECK_RC(hc_unlink(name), 0);
	expect_clean(good, len, (uint64_t)n, "corruption base");
	const struct hc_header *gh = hdr_of(good);

	struct found fe;
	REQUIRE(find_entry(good, len, 16, 0, &fe) == 0);
	uint8_t *img;

	/* one byte of a stored value, first, middle and last */
	for (int where = 0; where < 3; where++) {
		img = dup_image(good, len);
		uint64_t pos = fe.ref + HC_ENTRY_HDR + fe.klen +
			       (where == 0   ? 0
				: where == 1 ? fe.vlen / 2
					     : fe.vlen - 1);
		img[pos] ^= 0x01;
		expect_damaged(img, len, "value byte");
		free(img);
	}

	/* an index slot pointing outside the arena: past the end, into the index, at 0 */
	const uint64_t bad_refs[] = {
		len + 4096, len, gh->off_index, gh->off_arena - HC_PAGE, HC_SLOT_REF_MASK, 8,
	};
	for (size_t i = 0; i < sizeof(bad_refs) / sizeof(bad_refs[0]); i++) {
		img = dup_image(good, len);
		uint64_t v = get_u64(img, fe.slot_off);
		put_u64(img, fe.slot_off, (v & ~HC_SLOT_REF_MASK) | bad_refs[i]);
		expect_damaged(img, len, "slot outside the arena");
		free(img);
	}

	/* an index slot pointing 8 bytes into a block (and 1, and 32) */
	const uint64_t skews[] = {8, 1, 32};
	for (size_t i = 0; i < 3; i++) {
		img = dup_image(good, len);
		uint64_t v = get_u64(img, fe.slot_off);
		put_u64(img, fe.slot_off, v + skews[i]);
		expect_damaged(img, len, "slot into a block");
		free(img);
	}

	/* an index slot pointing at a block whose lifecycle word is FREE */
	img = dup_image(good, len);
	put_u64(img, fe.ref + offsetof(struct hc_entry, state), HC_BS_FREE);
	expect_damaged(img, len, "slot at a free block");
	free(img);

	/* ... or RETIRED */
	img = dup_image(good, len);
	put_u64(img, fe.ref + offsetof(struct hc_entry, state), HC_BS_MAKE(HC_BS_RETIRED, 0));
	expect_damaged(img, len, "slot at a retired block");
	free(img);

	/* header size field changed (both ways) */
	const int64_t dsize[] = {HC_PAGE, -(int64_t)HC_PAGE, 1};
	for (size_t i = 0; i < 3; i++) {
		img = dup_image(good, len);
		put_u64(img, offsetof(struct hc_header, size), (uint64_t)((int64_t)len + dsize[i]));
		expect_damaged(img, len, "header size");
		free(img);
	}

	/* nslabs huge, or one more than there is room for */
	const uint32_t nslabs[] = {UINT32_MAX, 0x80000000u, 0x10000000u, 0x00100000u, 0};
	for (size_t i = 0; i < sizeof(nslabs) / sizeof(nslabs[0]); i++) {
		img = dup_image(good, len);
		memcpy(img + offsetof(struct hc_header, nslabs), &nslabs[i], 4);
		expect_damaged(img, len, "nslabs");
		free(img);
	}

	/* other geometry fields */
	{
		const uint32_t nb = UINT32_MAX, mt = UINT32_MAX, ncl = HC_MAX_CLASSES + 1;
		img = dup_image(good, len);
		memcpy(img + offsetof(struct hc_header, nbuckets), &nb, 4);
		expect_damaged(img, len, "nbuckets");
		free(img);
		img = dup_image(good, len);
		memcpy(img + offsetof(struct hc_header, max_threads), &mt, 4);
		expect_damaged(img, len, "max_threads");
		free(img);
		img = dup_image(good, len);
		memcpy(img + offsetof(struct hc_header, nclasses), &ncl, 4);
		expect_damaged(img, len, "nclasses");
		free(img);
		img = dup_image(good, len);
		put_u64(img, offsetof(struct hc_header, off_index), UINT64_MAX - HC_PAGE + 1);
		expect_damaged(img, len, "off_index");
		free(img);
		img = dup_image(good, len);
		put_u64(img, offsetof(struct hc_header, off_arena), len - HC_PAGE);
		expect_damaged(img, len, "off_arena");
		free(img);
	}

	/* truncated to half: the header no longer describes the object */
	img = dup_image(good, len / 2);
	expect_damaged(img, len / 2, "truncated to half");
	free(img);
	/* one byte short */
	img = dup_image(good, len - 1);
	expect_damaged(img, len - 1, "one byte short");
	free(img);

	/* shorter than a header */
	const size_t shorts[] = {0, 1, 8, 100, sizeof(struct hc_header) - 1};
	for (size_t i = 0; i < sizeof(shorts) / sizeof(shorts[0]); i++) {
		img = dup_image(good, shorts[i]);
		expect_damaged(img, shorts[i], "shorter than a header");
		free(img);
	}

	/* bad magic */
	img = dup_image(good, len);
	img[0] ^= 0xff;
	expect_damaged(img, len, "bad magic");
	free(img);
	img = dup_image(good, len);
	put_u64(img, 0, 0);
	expect_damaged(img, len, "zero magic");
	free(img);

	/* wrong ABI version, wrong layout hash */
	{
		const uint32_t abis[] = {HC_ABI_VERSION + 1, 0, UINT32_MAX};
		for (size_t i = 0; i < 3; i++) {
			img = dup_image(good, len);
			memcpy(img + offsetof(struct hc_header, abi_version), &abis[i], 4);
			expect_damaged(img, len, "abi version");
			free(img);
		}
		img = dup_image(good, len);
		uint32_t lh = hc_layout_hash() ^ 1;
		memcpy(img + offsetof(struct hc_header, layout_hash), &lh, 4);
		expect_damaged(img, len, "layout hash");
		free(img);
	}

	/* a thread slot owner word with an invalid state (every invalid state) */
	for (uint64_t state = 3; state < 16; state++) {
		img = dup_image(good, len);
		uint64_t so = gh->off_slots +
			      (uint64_t)(state % gh->max_threads) * gh->slot_stride +
			      offsetof(struct hc_tslot, owner);
		put_u64(img, so, HC_TS_MAKE(state, 1, 1234));
		expect_damaged(img, len, "thread slot owner state");
		free(img);
	}

	/* a block's key: it no longer hashes to the bucket that holds it */
	img = dup_image(good, len);
	img[fe.ref + HC_ENTRY_HDR] ^= 0x20;
	expect_damaged(img, len, "key byte");
	free(img);

	/* a block's klen and vlen: no longer fit */
	img = dup_image(good, len);
	{
		uint32_t vl = UINT32_MAX;
		memcpy(img + fe.ref + offsetof(struct hc_entry, vlen), &vl, 4);
	}
	expect_damaged(img, len, "vlen");
	free(img);
	img = dup_image(good, len);
	img[fe.ref + offsetof(struct hc_entry, klen)] = 0;
	expect_damaged(img, len, "klen 0");
	free(img);

	/* a slab table word naming a class that does not exist */
	img = dup_image(good, len);
	{
		uint64_t slab = (fe.ref - gh->off_arena) / gh->slab_size;
		uint64_t so = gh->off_slabtab + slab * 8;
		uint64_t w = get_u64(img, so);
		put_u64(img, so, HC_SLAB_MAKE(HC_SLAB_KIND(w), 255, HC_SLAB_GEN(w), 0));
	}
	expect_damaged(img, len, "slab class");
	free(img);

	/* a class table entry with an impossible block size */
	img = dup_image(good, len);
	{
		uint32_t bs = 0;
		memcpy(img + gh->off_classes + offsetof(struct hc_class, block_size), &bs, 4);
	}
	expect_damaged(img, len, "class block size 0");
	free(img);

	/* the same block indexed twice */
	img = dup_image(good, len);
	{
		struct found other;
		unsigned skip = 0;
		do
			REQUIRE(find_entry(good, len, 0, skip++, &other) == 0);
		while (other.ref == fe.ref);
		uint64_t v = get_u64(img, fe.slot_off);
		/* a free slot of one of the entry's buckets would be legal; another entry's is not */
		put_u64(img, other.slot_off, v);
	}
	expect_damaged(img, len, "slot duplicated");
	free(img);

	free(good);
}

/* The callback: errors come with HC_CHECK_ERROR; a flood is cut short. */
static void test_callback(void)
{
	struct hc_options o = {
		.flags = HC_CREATE, .size = 8u << 20, .max_threads = 4, .max_value = 8192};
	struct hc_cache *c;
	const char *name = tu_name("chk-cb");
	REQUIRE(hc_open(name, &o, &c) == 0);
	for (int i = 0; i < 500; i++) {
		char k[32], v[64];
		int kl = snprintf(k, sizeof(k), "cb:%d", i);
		int vl = snprintf(v, sizeof(v), "value of %d, padded to some length", i);
		CHECK_RC(hc_set(c, k, (size_t)kl, v, (size_t)vl, 0), 0);
	}
	hc_close(c);
	size_t len;
	uint8_t *good = read_image(name, &len);
	CHECK_RC(hc_unlink(name), 0);

	/* a clean image: no callback at all */
	struct findings f = {0};
	struct hc_check_result r;
	CHECK_RC(hc_check_image(good, len, on_finding, &f, &r), 0);
	CHECK(f.calls == 0);

	/* one corruption: one error reported through the callback */
	uint8_t *img = dup_image(good, len);
	struct found fe;
	REQUIRE(find_entry(img, len, 8, 0, &fe) == 0);
	img[fe.ref + HC_ENTRY_HDR + fe.klen + 3] ^= 0x80;
	memset(&f, 0, sizeof(f));
	CHECK_RC(hc_check_image(img, len, on_finding, &f, &r), 1);
	CHECK(r.errors >= 1);
	CHECK(f.errors == r.errors);
	CHECK(f.first_error[0] != '\0');
	free(img);

	/* many corruptions: every value byte of every entry flipped */
	img = dup_image(good, len);
	unsigned flipped = 0;
	for (unsigned skip = 0; find_entry(good, len, 1, skip, &fe) == 0; skip++) {
		img[fe.ref + HC_ENTRY_HDR + fe.klen] ^= 0x55;
		flipped++;
	}
	CHECK(flipped == 500);
	memset(&f, 0, sizeof(f));
	CHECK_RC(hc_check_image(img, len, on_finding, &f, &r), 1);
	CHECK(r.errors >= flipped);
	CHECK(f.errors >= 1);
	/* reported in full up to a limit, then counted only: the callback is not flooded */
	CHECK(f.calls < r.errors);
	free(img);

	/* the header faults also reach the callback as errors */
	img = dup_image(good, len);
	img[3] ^= 1;
	memset(&f, 0, sizeof(f));
	CHECK_RC(hc_check_image(img, len, on_finding, &f, &r), 1);
	CHECK(f.errors == 1 && f.warnings == 0);
	free(img);
	free(good);
}

/*
 * Fuzz-lite: random bytes overwritten in a good image, half of them in the
 * header, slab table and index.  Seeded and deterministic; the validator
 * must answer 0 or 1 (or -ENOMEM) and never crash.
 */
static void test_fuzz(void)
{
	struct hc_options o = {
		.flags = HC_CREATE, .size = 4u << 20, .max_threads = 4, .max_value = 4096};
	struct hc_cache *c;
	const char *name = tu_name("chk-fuzz");
	REQUIRE(hc_open(name, &o, &c) == 0);
	uint64_t s = 99;
	uint8_t val[1000];
	for (int i = 0; i < 1500; i++) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "fz:%d", i);
		size_t vl = tu_rand(&s) % (i % 10 ? 100 : sizeof(val));
		for (size_t j = 0; j < vl; j++)
			val[j] = (uint8_t)tu_rand(&s);
		CHECK_RC(hc_set(c, k, (size_t)kl, val, vl, i % 3 ? 0 : 600000), 0);
	}
	hc_close(c);
	size_t len;
	uint8_t *good = read_image(name, &len);
	CHECK_RC(hc_unlink(name), 0);
	expect_clean(good, len, 1500, "fuzz base");
	const struct hc_header *gh = hdr_of(good);
	/* regions the bias goes to: header, slab table, index */
	const uint64_t reg_off[3] = {0, gh->off_slabtab, gh->off_index};
	const uint64_t reg_len[3] = {sizeof(struct hc_header), (uint64_t)gh->nslabs * 8,
				     (uint64_t)gh->nbuckets * sizeof(struct hc_bucket)};
	const uint64_t off_arena = gh->off_arena, arena_len = len - gh->off_arena;

	uint64_t seed = 0x5eed0fc0ffee1234ull;
	unsigned results[2] = {0, 0};
	uint8_t *img = malloc(len);
	REQUIRE(img);
	for (int it = 0; it < 2000; it++) {
		memcpy(img, good, len);
		unsigned nbytes = 1 + (unsigned)(tu_rand(&seed) % 16);
		for (unsigned b = 0; b < nbytes; b++) {
			uint64_t pos;
			if (tu_rand(&seed) & 1) {
				unsigned r = (unsigned)(tu_rand(&seed) % 3);
				pos = reg_off[r] + tu_rand(&seed) % reg_len[r];
			} else {
				pos = tu_rand(&seed) % len;
			}
			img[pos] = (uint8_t)tu_rand(&seed);
		}
		/* a quarter of the time, also a plausible-looking slot word: 8 random bytes of
		 * ref aimed into the arena, at a random (8-aligned) offset */
		if (it % 4 == 0) {
			uint64_t slot = tu_rand(&seed) % (reg_len[2] / 8);
			uint64_t ref = off_arena + (tu_rand(&seed) % arena_len & ~UINT64_C(7));
			put_u64(img, reg_off[2] + slot * 8,
				(tu_rand(&seed) & ~HC_SLOT_REF_MASK) | ref);
		}
		struct hc_check_result r;
		int rc = hc_check_image(img, len, NULL, NULL, &r);
		CHECK(rc == 0 || rc == 1 || rc == -ENOMEM);
		if (rc == 0)
			CHECK(r.errors == 0);
		if (rc == 1)
			CHECK(r.errors > 0);
		if (rc == 0 || rc == 1)
			results[rc]++;
		if (!(rc == 0 || rc == 1 || rc == -ENOMEM)) {
			fprintf(stderr, "fuzz iteration %d: rc %d\n", it, rc);
			break;
		}
		/* now and then also with a callback, and truncated */
		if (it % 50 == 0) {
			struct findings f = {0};
			rc = hc_check_image(img, len, on_finding, &f, &r);
			CHECK(rc == 0 || rc == 1);
			CHECK(f.errors <= r.errors);
			size_t cut = (size_t)(tu_rand(&seed) % len);
			uint8_t *shortimg = dup_image(img, cut);
			rc = hc_check_image(shortimg, cut, NULL, NULL, &r);
			CHECK(rc == 1); /* a truncated image never checks clean */
			free(shortimg);
		}
	}
	free(img);
	free(good);
	/* the loop did exercise the validator: most corruptions were found */
	CHECK(results[1] > 0);
	printf("fuzz: %u clean, %u damaged\n", results[0], results[1]);
}

int main(void)
{
	test_clean();
	test_corruptions();
	test_callback();
	test_fuzz();
	return tu_done("test_check");
}
