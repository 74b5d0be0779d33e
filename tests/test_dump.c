/*
 * test_dump.c - hc_dump and hc_load: a round trip into a segment of another
 * geometry (values, flags, remaining TTLs and stale windows carried over,
 * expired entries left out), through a file and through a pipe, and every
 * kind of malformed stream, each of which must stop the load with the
 * documented error after the entries before the fault were stored.
 *
 * Public API only.  The stream is read and altered following the format
 * described at the top of core/dump.c (little-endian; 16-byte header,
 * entries "E ... check", trailer "Z").
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "testutil.h"

#define NKEYS 5000
#define VMAX_A 20000u

/* Format constants (core/dump.c). */
#define HEAD_LEN 16
#define ENTRY_FIXED 24
#define TRAILER_LEN 24
/* The checksum seed of the format (core/dump.c DUMP_SEED), to craft entries. */
#define DUMP_SEED UINT64_C(0x44554d5048433031)

/* ---- the data set ---- */

enum kind { K_NEVER, K_TTL, K_STALEWIN, K_NEG, K_NEG_NEVER, K_EXPIRED, K_IN_STALE };

static enum kind kind_of(int i)
{
	if (i % 40 == 7)
		return K_IN_STALE; /* TTL over at dump time, inside its stale window */
	switch (i % 8) {
	case 0:
	case 1:
	case 2:
		return K_NEVER;
	case 3:
	case 4:
		return K_TTL;
	case 5:
		return K_STALEWIN;
	case 6:
		return (i % 16 == 6) ? K_NEG_NEVER : K_NEG;
	default:
		return K_EXPIRED;
	}
}

static size_t vlen_of(int i)
{
	if (i == 10)
		return VMAX_A; /* exactly the source's max_value */
	if (i % 10 == 0)
		return (size_t)((uint64_t)i * 7919u % (VMAX_A + 1));
	if (i % 10 == 1)
		return 0;
	return (size_t)((uint64_t)i * 131u % 1500u);
}

/* The value of key @i: known bytes derived from i. */
static size_t value_of(int i, uint8_t *buf)
{
	size_t n = vlen_of(i);
	uint64_t s = (uint64_t)i * 0x9e3779b97f4a7c15ull + 17;
	for (size_t j = 0; j < n; j++)
		buf[j] = (uint8_t)tu_rand(&s);
	return n;
}

static int key_of(int i, char *k, size_t cap)
{
	return snprintf(k, cap, "dump:%d", i);
}

static void set_entry(struct hc_cache *c, int i, uint8_t *buf)
{
	char k[32];
	int kl = key_of(i, k, sizeof(k));
	size_t vl = value_of(i, buf);
	struct hc_set_opts o = {.compute_ms = (uint32_t)(i % 1000)};
	switch (kind_of(i)) {
	case K_NEVER:
		break;
	case K_TTL:
		o.ttl_ms = 600000u + (uint32_t)i * 10u;
		break;
	case K_STALEWIN:
		o.ttl_ms = 300000u;
		o.stale_ms = 120000u;
		break;
	case K_NEG:
		o.ttl_ms = 200000u;
		o.flags = HC_ENTRY_NEGATIVE;
		break;
	case K_NEG_NEVER:
		o.flags = HC_ENTRY_NEGATIVE;
		break;
	case K_EXPIRED:
		o.ttl_ms = 1;
		break;
	case K_IN_STALE:
		o.ttl_ms = 1;
		o.stale_ms = 600000u;
		break;
	}
	CHECK_RC(hc_set_ex(c, k, (size_t)kl, buf, vl, &o), 0);
}

/* ---- helpers ---- */

static int tmpfile_fd(void)
{
	char path[] = "/tmp/hc-test-dump-XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	unlink(path);
	return fd;
}

/* The whole content of @fd. */
static uint8_t *slurp(int fd, size_t *len)
{
	struct stat st;
	REQUIRE(fstat(fd, &st) == 0);
	size_t n = (size_t)st.st_size;
	uint8_t *b = malloc(n + 1);
	REQUIRE(b);
	REQUIRE(pread(fd, b, n, 0) == (ssize_t)n);
	*len = n;
	return b;
}

/* A file holding @len bytes of @buf, positioned at its start. */
static int fd_with(const uint8_t *buf, size_t len)
{
	int fd = tmpfile_fd();
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);
		REQUIRE(n > 0);
		off += (size_t)n;
	}
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	return fd;
}

static int64_t load_bytes(struct hc_cache *c, const uint8_t *buf, size_t len)
{
	int fd = fd_with(buf, len);
	int64_t rc = hc_load(c, fd);
	close(fd);
	return rc;
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

/* Entry boundaries of a well-formed dump. */
struct parsed {
	size_t n;
	size_t *off;	/* n + 1 offsets: entry i is [off[i], off[i+1]); off[n] = trailer */
	uint64_t count; /* trailer count */
};

static void parse_dump(const uint8_t *b, size_t len, struct parsed *p)
{
	REQUIRE(len >= HEAD_LEN + TRAILER_LEN);
	REQUIRE(memcmp(b, "HCDUMP\0\1", 8) == 0);
	size_t cap = 1024, pos = HEAD_LEN;
	p->n = 0;
	p->off = malloc(cap * sizeof(size_t));
	REQUIRE(p->off);
	while (pos < len && b[pos] == 'E') {
		REQUIRE(pos + ENTRY_FIXED <= len);
		size_t klen = b[pos + 1];
		size_t vlen = (size_t)get_le(b + pos + 4, 4);
		size_t elen = ENTRY_FIXED + klen + vlen + 8;
		REQUIRE(pos + elen <= len);
		REQUIRE(get_le(b + pos + elen - 8, 8) == hc_hash64(b + pos, elen - 8, DUMP_SEED));
		if (p->n + 2 > cap) {
			cap *= 2;
			p->off = realloc(p->off, cap * sizeof(size_t));
			REQUIRE(p->off);
		}
		p->off[p->n++] = pos;
		pos += elen;
	}
	REQUIRE(pos + TRAILER_LEN == len && b[pos] == 'Z');
	p->off[p->n] = pos;
	p->count = get_le(b + pos + 8, 8);
	REQUIRE(p->count == p->n);
}

/* Key of parsed entry @i (into @k, NUL-terminated). */
static void entry_key(const uint8_t *b, const struct parsed *p, size_t i, char *k, size_t cap)
{
	size_t klen = b[p->off[i] + 1];
	REQUIRE(klen < cap);
	memcpy(k, b + p->off[i] + ENTRY_FIXED, klen);
	k[klen] = '\0';
}

/* Re-seal entry @i after its fields were edited. */
static void reseal(uint8_t *b, const struct parsed *p, size_t i)
{
	size_t pos = p->off[i];
	size_t n = ENTRY_FIXED + b[pos + 1] + (size_t)get_le(b + pos + 4, 4);
	put_le(b + pos + n, hc_hash64(b + pos, n, DUMP_SEED), 8);
}

static uint64_t items_of(struct hc_cache *c)
{
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	return st.items;
}

/* Exactly the first @k entries of the parsed dump are in @c. */
static void expect_prefix_stored(struct hc_cache *c, const uint8_t *b, const struct parsed *p,
				 size_t k, const char *what)
{
	uint64_t items = items_of(c);
	CHECK(items == k);
	if (items != k)
		fprintf(stderr, "%s: %llu items stored, expected %zu\n", what,
			(unsigned long long)items, k);
	for (size_t i = 0; i < p->n; i++) {
		char key[256];
		entry_key(b, p, i, key, sizeof(key));
		size_t vl;
		int rc = hc_get_ex(c, key, strlen(key), NULL, 0, &vl, NULL,
				   HC_GET_STALE | HC_GET_NEGATIVE);
		if (i < k)
			CHECK(rc == 0 || rc == HC_E_TOOSMALL);
		else
			CHECK_RC(rc, HC_E_NOTFOUND);
	}
}

/* ---- the round trip ---- */

struct seen {
	int64_t ttl_left, stale_left;
	int live;
};

/* Every key of the data set in @c as expected; @ref holds the source's meta. */
static void verify_set(struct hc_cache *c, const struct seen *ref, int64_t tol_ms, const char *what)
{
	uint8_t *want = malloc(VMAX_A), *got = malloc(VMAX_A);
	REQUIRE(want && got);
	int bad = 0;
	uint64_t v0 = tu_now_ns(); /* the check itself takes time on a slow machine */
	for (int i = 0; i < NKEYS; i++) {
		char k[32];
		int kl = key_of(i, k, sizeof(k));
		size_t wl = value_of(i, want), gl = 0;
		struct hc_meta m;
		int rc = hc_get_ex(c, k, (size_t)kl, got, VMAX_A, &gl, &m,
				   HC_GET_STALE | HC_GET_NEGATIVE);
		enum kind kd = kind_of(i);
		if (kd == K_EXPIRED) {
			CHECK_RC(rc, HC_E_NOTFOUND);
			continue;
		}
		if (rc != 0) {
			if (bad++ < 10)
				fprintf(stderr, "%s: key %s: %s\n", what, k, hc_strerror(rc));
			tu_failures++;
			continue;
		}
		CHECK(gl == wl && memcmp(got, want, wl) == 0);
		CHECK(m.compute_ms == (uint32_t)(i % 1000));
		bool neg = kd == K_NEG || kd == K_NEG_NEVER;
		CHECK(!!(m.flags & HC_ENTRY_NEGATIVE) == neg);
		/* a negative entry is a miss without HC_GET_NEGATIVE */
		if (neg)
			CHECK_RC(hc_get(c, k, (size_t)kl, got, VMAX_A, &gl), HC_E_NOTFOUND);
		if (kd == K_NEVER || kd == K_NEG_NEVER) {
			CHECK(m.ttl_left_ms == INT64_MAX);
			CHECK(m.stale_left_ms == INT64_MAX);
			CHECK(m.stale == 0);
			continue;
		}
		CHECK(m.ttl_left_ms != INT64_MAX);
		if (!ref)
			continue;
		int64_t tol = tol_ms + (int64_t)((tu_now_ns() - v0) / 1000000u);
		if (kd == K_IN_STALE) {
			/* past its TTL, still servable for the rest of its stale window */
			CHECK(m.ttl_left_ms <= 1);
			CHECK(m.stale == 1 || m.ttl_left_ms > 0);
			CHECK(m.stale_left_ms <= ref[i].stale_left + 2 &&
			      m.stale_left_ms >= ref[i].stale_left - tol);
			if (m.stale)
				CHECK_RC(hc_get(c, k, (size_t)kl, got, VMAX_A, &gl), HC_E_NOTFOUND);
			continue;
		}
		int64_t d = ref[i].ttl_left - m.ttl_left_ms;
		CHECK(d >= -5 && d <= tol);
		if (d < -5 || d > tol)
			fprintf(stderr, "%s: key %s: ttl_left %lld, source had %lld\n", what, k,
				(long long)m.ttl_left_ms, (long long)ref[i].ttl_left);
		/* the stale window comes over exactly */
		int64_t win = m.stale_left_ms - m.ttl_left_ms;
		CHECK(win == (kd == K_STALEWIN ? 120000 : 0));
	}
	free(want);
	free(got);
}

struct loader {
	struct hc_cache *c;
	int fd;
	int64_t rc;
};

static void *load_thread(void *arg)
{
	struct loader *l = arg;
	l->rc = hc_load(l->c, l->fd);
	return NULL;
}

static void test_round_trip(void)
{
	struct hc_options oa = {
		.flags = HC_CREATE, .size = 64u << 20, .max_threads = 8, .max_value = VMAX_A};
	struct hc_options ob = {.flags = HC_CREATE,
				.size = 96u << 20,
				.max_threads = 16,
				.max_value = 65536,
				.bytes_per_slot = 256};
	const char *na = tu_name("dump-a"), *nb = tu_name("dump-b"), *nc = tu_name("dump-c");
	struct hc_cache *a, *b, *cpipe;
	REQUIRE(hc_open(na, &oa, &a) == 0);
	REQUIRE(hc_open(nb, &ob, &b) == 0);
	REQUIRE(hc_open(nc, &ob, &cpipe) == 0);
	struct hc_info ia, ib;
	CHECK_RC(hc_info(a, &ia), 0);
	CHECK_RC(hc_info(b, &ib), 0);
	CHECK(ia.size != ib.size && ia.slab_size != ib.slab_size && ia.max_value != ib.max_value);

	uint8_t *buf = malloc(VMAX_A);
	REQUIRE(buf);
	int expired = 0;
	for (int i = 0; i < NKEYS; i++) {
		set_entry(a, i, buf);
		expired += kind_of(i) == K_EXPIRED;
	}
	free(buf);
	CHECK(items_of(a) == NKEYS);
	tu_sleep_ms(30); /* the 1 ms TTLs run out */

	/* the source as it is just before the dump */
	struct seen *ref = calloc(NKEYS, sizeof(*ref));
	REQUIRE(ref);
	uint64_t t0 = tu_now_ns(); /* the TTLs below are read from here on */
	for (int i = 0; i < NKEYS; i++) {
		char k[32];
		int kl = key_of(i, k, sizeof(k));
		struct hc_meta m;
		size_t vl;
		int rc = hc_get_ex(a, k, (size_t)kl, NULL, 0, &vl, &m,
				   HC_GET_STALE | HC_GET_NEGATIVE);
		ref[i].live = rc == 0 || rc == HC_E_TOOSMALL;
		ref[i].ttl_left = m.ttl_left_ms;
		ref[i].stale_left = m.stale_left_ms;
		CHECK(ref[i].live == (kind_of(i) != K_EXPIRED));
	}
	verify_set(a, NULL, 0, "source");

	int fd = tmpfile_fd();
	int64_t dumped = hc_dump(a, fd);
	CHECK(dumped == NKEYS - expired);
	if (dumped != NKEYS - expired)
		fprintf(stderr, "dumped %lld, expected %d\n", (long long)dumped, NKEYS - expired);

	/* the stream itself: every entry well formed, no expired key in it */
	size_t dlen;
	uint8_t *d = slurp(fd, &dlen);
	struct parsed p;
	parse_dump(d, dlen, &p);
	CHECK(p.n == (size_t)dumped);
	for (size_t i = 0; i < p.n; i++) {
		char k[256];
		entry_key(d, &p, i, k, sizeof(k));
		int id = atoi(k + 5);
		CHECK(strncmp(k, "dump:", 5) == 0 && id >= 0 && id < NKEYS);
		if (id >= 0 && id < NKEYS)
			CHECK(kind_of(id) != K_EXPIRED);
	}

	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	int64_t loaded = hc_load(b, fd);
	CHECK(loaded == dumped);
	int64_t elapsed_ms = (int64_t)((tu_now_ns() - t0) / 1000000u);
	CHECK(items_of(b) == (uint64_t)dumped);
	verify_set(b, ref, elapsed_ms + 1000, "loaded");
	close(fd);

	/* a dump of a read-only handle gives the same entries */
	struct hc_options ro = {.flags = HC_RDONLY};
	struct hc_cache *ar;
	REQUIRE(hc_open(na, &ro, &ar) == 0);
	fd = tmpfile_fd();
	CHECK(hc_dump(ar, fd) == dumped);
	close(fd);

	/* through a pipe: a thread loads while this one dumps (the stream is
	 * larger than a pipe's buffer, so both must make progress) */
	int pfd[2];
	REQUIRE(pipe2(pfd, O_CLOEXEC) == 0);
	struct loader l = {.c = cpipe, .fd = pfd[0]};
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, load_thread, &l) == 0);
	int64_t piped = hc_dump(a, pfd[1]);
	close(pfd[1]);
	pthread_join(th, NULL);
	close(pfd[0]);
	CHECK(piped == dumped);
	CHECK(l.rc == dumped);
	CHECK(dlen > 65536 * 4);
	printf("round trip: %lld entries (%d expired left out), %zu bytes\n", (long long)dumped,
	       expired, dlen);
	verify_set(cpipe, ref, (int64_t)((tu_now_ns() - t0) / 1000000u) + 1000, "piped");

	/* and back out of the loaded copy: the same number of entries */
	REQUIRE(pipe2(pfd, O_CLOEXEC) == 0);
	struct hc_options od = {
		.flags = HC_CREATE, .size = 64u << 20, .max_threads = 8, .max_value = VMAX_A};
	const char *nd = tu_name("dump-d");
	struct hc_cache *dd;
	REQUIRE(hc_open(nd, &od, &dd) == 0);
	l = (struct loader){.c = dd, .fd = pfd[0]};
	REQUIRE(pthread_create(&th, NULL, load_thread, &l) == 0);
	CHECK(hc_dump(b, pfd[1]) == dumped);
	close(pfd[1]);
	pthread_join(th, NULL);
	close(pfd[0]);
	CHECK(l.rc == dumped);
	verify_set(dd, NULL, 0, "twice");

	free(d);
	free(p.off);
	free(ref);
	hc_close(ar);
	hc_close(a);
	hc_close(b);
	hc_close(cpipe);
	hc_close(dd);
	CHECK_RC(hc_unlink(na), 0);
	CHECK_RC(hc_unlink(nb), 0);
	CHECK_RC(hc_unlink(nc), 0);
	CHECK_RC(hc_unlink(nd), 0);
}

/* ---- malformed streams ---- */

static void test_bad_input(void)
{
	/* a small, well-formed dump to damage: 30 entries, the 20th with a 10 kB value */
	struct hc_options os = {
		.flags = HC_CREATE, .size = 8u << 20, .max_threads = 4, .max_value = 16384};
	const char *ns = tu_name("dump-src");
	struct hc_cache *s;
	REQUIRE(hc_open(ns, &os, &s) == 0);
	uint8_t val[10000];
	for (int i = 0; i < 30; i++) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "bad:%d", i);
		size_t vl = (i == 20) ? sizeof(val) : (size_t)(10 + i * 3);
		memset(val, 'a' + i % 26, vl);
		struct hc_set_opts o = {.ttl_ms = (i % 3 == 0) ? 600000u : 0,
					.flags = (i % 5 == 4) ? HC_ENTRY_NEGATIVE : 0};
		CHECK_RC(hc_set_ex(s, k, (size_t)kl, val, vl, &o), 0);
	}
	int fd = tmpfile_fd();
	CHECK(hc_dump(s, fd) == 30);
	size_t len;
	uint8_t *good = slurp(fd, &len);
	close(fd);
	struct parsed p;
	parse_dump(good, len, &p);
	REQUIRE(p.n == 30);
	size_t big = p.n; /* index of the 10 kB entry in the stream */
	for (size_t i = 0; i < p.n; i++)
		if (get_le(good + p.off[i] + 4, 4) == sizeof(val))
			big = i;
	REQUIRE(big < p.n);

	/* the target: max_value 4096, below the big entry */
	struct hc_options ot = {
		.flags = HC_CREATE, .size = 8u << 20, .max_threads = 4, .max_value = 4096};
	const char *nt = tu_name("dump-dst");
	struct hc_cache *t;
	REQUIRE(hc_open(nt, &ot, &t) == 0);
	struct hc_options ot2 = ot;
	ot2.max_value = 65536;
	const char *nt2 = tu_name("dump-dst2");
	struct hc_cache *t2;
	REQUIRE(hc_open(nt2, &ot2, &t2) == 0);
	uint8_t *b = malloc(len + 4096);
	REQUIRE(b);

	/* the intact stream loads whole into the larger target */
	CHECK_RC(load_bytes(t2, good, len), 30);
	expect_prefix_stored(t2, good, &p, 30, "intact");
	CHECK(hc_flush(t2) == 30);

	/* empty file */
	CHECK_RC(load_bytes(t2, good, 0), HC_E_FORMAT);
	CHECK(items_of(t2) == 0);
	/* shorter than the header */
	CHECK_RC(load_bytes(t2, good, 7), HC_E_FORMAT);
	CHECK_RC(load_bytes(t2, good, HEAD_LEN - 1), HC_E_FORMAT);
	/* a header and nothing else */
	CHECK_RC(load_bytes(t2, good, HEAD_LEN), HC_E_FORMAT);
	CHECK(items_of(t2) == 0);

	/* wrong magic, wrong format version */
	for (int i = 0; i < 8; i++) {
		memcpy(b, good, len);
		b[i] ^= 0x01;
		CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
		CHECK(items_of(t2) == 0);
	}

	/* truncated in the middle of an entry: the entries before the cut are stored */
	const size_t k = 12;
	size_t elen = p.off[k + 1] - p.off[k];
	const size_t cuts[] = {1,	 2,	  8, ENTRY_FIXED - 1, ENTRY_FIXED, ENTRY_FIXED + 3,
			       elen - 8, elen - 1};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		CHECK_RC(load_bytes(t2, good, p.off[k] + cuts[i]), HC_E_FORMAT);
		expect_prefix_stored(t2, good, &p, k, "truncated entry");
		hc_flush(t2);
	}
	/* cut at an entry boundary (no trailer), and inside the trailer */
	CHECK_RC(load_bytes(t2, good, p.off[k]), HC_E_FORMAT);
	expect_prefix_stored(t2, good, &p, k, "cut at a boundary");
	hc_flush(t2);
	CHECK_RC(load_bytes(t2, good, len - 1), HC_E_FORMAT);
	expect_prefix_stored(t2, good, &p, p.n, "cut in the trailer");
	hc_flush(t2);
	CHECK_RC(load_bytes(t2, good, p.off[p.n]), HC_E_FORMAT);
	expect_prefix_stored(t2, good, &p, p.n, "no trailer");
	hc_flush(t2);

	/* one flipped bit anywhere in an entry: that entry is refused, those before stored */
	for (size_t pos = p.off[k]; pos < p.off[k + 1]; pos++) {
		memcpy(b, good, len);
		b[pos] ^= 0x01;
		int64_t want = HC_E_FORMAT;
		if (pos >= p.off[k] + 4 && pos < p.off[k] + 8 &&
		    get_le(b + p.off[k] + 4, 4) > ot2.max_value)
			want = HC_E_TOOBIG; /* the corrupted length announces a value too big */
		int64_t rc = load_bytes(t2, b, len);
		CHECK_RC(rc, want);
		if (rc != want)
			fprintf(stderr, "  flipped byte %zu of entry %zu\n", pos - p.off[k], k);
		expect_prefix_stored(t2, good, &p, k, "flipped byte");
		hc_flush(t2);
	}
	/* and a whole byte inverted in the value, and in the key */
	memcpy(b, good, len);
	b[p.off[k] + ENTRY_FIXED] ^= 0xff;
	CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
	expect_prefix_stored(t2, good, &p, k, "key byte");
	hc_flush(t2);
	memcpy(b, good, len);
	b[p.off[k + 1] - 9] ^= 0xff;
	CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
	expect_prefix_stored(t2, good, &p, k, "value byte");
	hc_flush(t2);

	/* fields that are invalid even with a correct checksum */
	{
		struct {
			size_t at;
			uint8_t v;
		} bad[] = {
			{1, 0},	   /* klen 0 */
			{2, 0x02}, /* unknown flag */
			{2, 0x80}, /* unknown flag */
			{3, 1},	   /* reserved byte */
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			memcpy(b, good, len);
			size_t pos = p.off[k];
			if (bad[i].at == 1) {
				/* klen 0: move the key bytes into the value to keep the length */
				size_t klen = b[pos + 1];
				put_le(b + pos + 4, get_le(b + pos + 4, 4) + klen, 4);
			}
			b[pos + bad[i].at] = bad[i].v;
			reseal(b, &p, k);
			CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
			expect_prefix_stored(t2, good, &p, k, "invalid field");
			hc_flush(t2);
		}
		/* ttl_left below -1 */
		memcpy(b, good, len);
		put_le(b + p.off[k] + 8, (uint64_t)-2, 8);
		reseal(b, &p, k);
		CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
		expect_prefix_stored(t2, good, &p, k, "ttl -2");
		hc_flush(t2);
		/* an unknown record tag */
		memcpy(b, good, len);
		b[p.off[k]] = 'X';
		CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
		expect_prefix_stored(t2, good, &p, k, "record tag");
		hc_flush(t2);
	}

	/* trailer: count wrong (checksum left stale, then resealed), padding not zero */
	{
		size_t tp = p.off[p.n];
		memcpy(b, good, len);
		put_le(b + tp + 8, p.count + 1, 8);
		CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
		expect_prefix_stored(t2, good, &p, p.n, "trailer count");
		hc_flush(t2);
		const uint64_t counts[] = {p.count + 1, p.count - 1, 0, UINT64_MAX};
		for (size_t i = 0; i < 4; i++) {
			memcpy(b, good, len);
			put_le(b + tp + 8, counts[i], 8);
			put_le(b + tp + 16, hc_hash64(b + tp + 8, 8, DUMP_SEED), 8);
			CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
			expect_prefix_stored(t2, good, &p, p.n, "trailer count, sealed");
			hc_flush(t2);
		}
		memcpy(b, good, len);
		b[tp + 3] = 1;
		CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
		hc_flush(t2);
		memcpy(b, good, len);
		b[tp + 16] ^= 1;
		CHECK_RC(load_bytes(t2, b, len), HC_E_FORMAT);
		hc_flush(t2);
	}

	/* a value longer than the target's max_value */
	CHECK_RC(load_bytes(t, good, len), HC_E_TOOBIG);
	expect_prefix_stored(t, good, &p, big, "value too big");
	hc_flush(t);

	/* random garbage after a valid header (and after a few valid entries) */
	uint64_t seed = 4242;
	for (int round = 0; round < 64; round++) {
		size_t keep = (round % 2) ? p.off[5] : HEAD_LEN;
		size_t glen = 1 + (size_t)(tu_rand(&seed) % 3000);
		memcpy(b, good, keep);
		for (size_t i = 0; i < glen; i++)
			b[keep + i] = (uint8_t)tu_rand(&seed);
		int64_t want = HC_E_FORMAT;
		/* garbage that happens to start like an entry announcing a huge value */
		if (b[keep] == 'E' && glen >= ENTRY_FIXED && b[keep + 1] != 0 &&
		    !(b[keep + 2] & ~HC_ENTRY_NEGATIVE) && b[keep + 3] == 0 &&
		    (int64_t)get_le(b + keep + 8, 8) >= -1 &&
		    get_le(b + keep + 4, 4) > ot2.max_value)
			want = HC_E_TOOBIG;
		CHECK_RC(load_bytes(t2, b, keep + glen), want);
		expect_prefix_stored(t2, good, &p, (round % 2) ? 5 : 0, "garbage");
		hc_flush(t2);
	}

	/* a dump loaded long after it was written: what ran out is not stored */
	memcpy(b, good, len);
	put_le(b + 8, get_le(b + 8, 8) - 3600u * 1000u, 8); /* written an hour ago */
	{
		int64_t never = 0;
		for (size_t i = 0; i < p.n; i++)
			never += (int64_t)get_le(good + p.off[i] + 8, 8) == -1;
		CHECK(never == 20);
		CHECK_RC(load_bytes(t2, b, len), never);
		CHECK(items_of(t2) == (uint64_t)never);
		hc_flush(t2);
	}

	/* read-only handle */
	struct hc_options ro = {.flags = HC_RDONLY};
	struct hc_cache *tr;
	REQUIRE(hc_open(nt2, &ro, &tr) == 0);
	CHECK_RC(load_bytes(tr, good, len), HC_E_READONLY);
	CHECK(items_of(t2) == 0);
	hc_close(tr);

	/* a descriptor that cannot be read */
	CHECK(hc_load(t2, -1) < 0);
	CHECK(hc_dump(s, -1) < 0);

	free(b);
	free(good);
	free(p.off);
	hc_close(s);
	hc_close(t);
	hc_close(t2);
	CHECK_RC(hc_unlink(ns), 0);
	CHECK_RC(hc_unlink(nt), 0);
	CHECK_RC(hc_unlink(nt2), 0);
}

int main(void)
{
	test_round_trip();
	test_bad_input();
	return tu_done("test_dump");
}
