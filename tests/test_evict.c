/*
 * test_evict.c - a full cache evicts instead of failing: CLOCK keeps what
 * is read, new entries survive, slabs move to the size class that needs
 * them, a full index drops entries rather than refusing sets, and a reader
 * stalled inside a read (an hc_view held) limits reclamation with a clear
 * error instead of a hang or corruption.
 */
#include "testutil.h"

static void key_of(char *k, size_t len, const char *prefix, uint32_t i, size_t *kl)
{
	*kl = (size_t)snprintf(k, len, "%s:%u", prefix, i);
}

static void test_clock(void)
{
	const char *name = tu_name("clock");
	struct hc_options o = {
		.flags = HC_CREATE, .size = 4u << 20, .max_threads = 16, .max_value = 4096};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	uint8_t val[100], buf[256];
	char k[32];
	size_t kl, n;
	enum { HOT = 200, COLD = 300000 };

	for (uint32_t i = 0; i < HOT; i++) {
		key_of(k, sizeof(k), "hot", i, &kl);
		tu_make_value(val, sizeof(val), i, 1);
		CHECK_RC(hc_set(c, k, kl, val, sizeof(val), 0), 0);
	}
	int fails = 0;
	for (uint32_t i = 0; i < COLD; i++) {
		key_of(k, sizeof(k), "cold", i, &kl);
		tu_make_value(val, sizeof(val), i, 2);
		fails += hc_set(c, k, kl, val, sizeof(val), 0) != 0;
		/* the hot set is read all the time */
		if (i % 16 == 0) {
			uint32_t h = (i / 16) % HOT;
			key_of(k, sizeof(k), "hot", h, &kl);
			if (hc_get(c, k, kl, buf, sizeof(buf), &n) == 0)
				CHECK(tu_check_value(buf, n, h) == 0);
		}
	}
	CHECK(fails == 0);
	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	printf("clock: %llu items kept of %u, %llu evictions\n", (unsigned long long)s.items,
	       HOT + COLD, (unsigned long long)s.layer[HC_LAYER_L1].evictions);
	CHECK(s.layer[HC_LAYER_L1].evictions > COLD / 2);
	CHECK(s.items > 10000 && s.items < COLD);
	/* every hot key survived; the newest cold keys too */
	int hot_kept = 0, new_kept = 0;
	for (uint32_t i = 0; i < HOT; i++) {
		key_of(k, sizeof(k), "hot", i, &kl);
		hot_kept += hc_get(c, k, kl, buf, sizeof(buf), &n) == 0;
	}
	for (uint32_t i = COLD - 500; i < COLD; i++) {
		key_of(k, sizeof(k), "cold", i, &kl);
		if (hc_get(c, k, kl, buf, sizeof(buf), &n) == 0) {
			new_kept++;
			CHECK(tu_check_value(buf, n, i) == 0);
		}
	}
	printf("clock: %d/%d hot kept, %d/500 newest kept\n", hot_kept, HOT, new_kept);
	CHECK(hot_kept == HOT);
	CHECK(new_kept >= 490);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* One size class fills the arena; another then needs memory and, over time, gets slabs. */
static void test_slab_moves(void)
{
	const char *name = tu_name("slabs");
	/* an index with room to spare, so the arena is what fills up */
	struct hc_options o = {
		.flags = HC_CREATE, .size = 4u << 20, .max_value = 8192, .bytes_per_slot = 48};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	uint8_t val[6000], buf[8192];
	char k[32];
	size_t kl, n;
	for (uint32_t i = 0; i < 100000; i++) {
		key_of(k, sizeof(k), "small", i, &kl);
		size_t vl = tu_make_value(val, 40, i, 1);
		CHECK_RC(hc_set(c, k, kl, val, vl, 0), 0);
	}
	struct hc_stats s0, s1;
	CHECK_RC(hc_stats(c, &s0), 0);
	CHECK(s0.slabs_used ==
	      s0.slabs_total); /* demand for the large class over 1.5 s: slabs follow (one move per 100 ms at most) */
	enum { LARGE = 600 };
	for (uint32_t i = 0; i < LARGE; i++) {
		key_of(k, sizeof(k), "large", i, &kl);
		size_t vl = tu_make_value(val, 5000 + i % 1000, i, 2);
		CHECK_RC(hc_set(c, k, kl, val, vl, 0), 0);
		tu_sleep_ms(2);
	}
	CHECK_RC(hc_stats(c, &s1), 0);
	printf("slabs: %llu moves, %u slabs\n", (unsigned long long)s1.slab_moves, s1.slabs_total);
	CHECK(s1.slab_moves > 0);
	int kept = 0;
	for (uint32_t i = LARGE - 50; i < LARGE; i++) {
		key_of(k, sizeof(k), "large", i, &kl);
		if (hc_get(c, k, kl, buf, sizeof(buf), &n) == 0) {
			kept++;
			CHECK(tu_check_value(buf, n, i) == 0 && n == 5000 + i % 1000);
		}
	}
	CHECK(kept >= 45);
	/* the small keys that are left are whole */
	for (uint32_t i = 0; i < 100000; i += 97) {
		key_of(k, sizeof(k), "small", i, &kl);
		if (hc_get(c, k, kl, buf, sizeof(buf), &n) == 0)
			CHECK(tu_check_value(buf, n, i) == 0);
	}
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* An index far smaller than the arena: sets succeed, the index drops entries. */
static void test_small_index(void)
{
	const char *name = tu_name("index");
	struct hc_options o = {
		.flags = HC_CREATE, .size = 4u << 20, .max_value = 4096, .bytes_per_slot = 65536};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	uint64_t slots = s.index_slots;
	char k[32];
	size_t kl;
	for (uint32_t i = 0; i < 20 * slots; i++) {
		key_of(k, sizeof(k), "idx", i, &kl);
		CHECK_RC(hc_set(c, k, kl, "v", 1, 0), 0);
	}
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.index_evictions > 0);
	CHECK(s.items <= slots);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* A view pins memory: a full cache can then refuse sets, but only while it is held. */
static void test_stalled_reader(void)
{
	const char *name = tu_name("stall");
	struct hc_options o = {
		.flags = HC_CREATE, .size = 2u << 20, .max_value = 4096, .max_threads = 8};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	uint8_t val[100];
	char k[32];
	size_t kl;
	memset(val, 1, sizeof(val));
	CHECK_RC(hc_set(c, "pin", 3, "pinned", 6, 0), 0);
	struct hc_view v;
	CHECK_RC(hc_view_get(c, "pin", 3, &v), 0);
	int ok = 0, nospace = 0, other = 0;
	uint64_t t0 = tu_now_ns();
	/* about 7,700 fit; every refusal after that sweeps its class twice (slow under ASan) */
	for (uint32_t i = 0; i < 12000; i++) {
		key_of(k, sizeof(k), "fill", i, &kl);
		int rc = hc_set(c, k, kl, val, sizeof(val), 0);
		ok += rc == 0;
		nospace += rc == HC_E_NOSPACE;
		other += rc != 0 && rc != HC_E_NOSPACE;
	}
	double secs = (tu_now_ns() - t0) / 1e9;
	printf("stalled reader: %d ok, %d refused with HC_E_NOSPACE in %.2f s\n", ok, nospace,
	       secs);
	CHECK(other == 0);
	CHECK(nospace > 0);
	CHECK(secs < 60);
	/* the view still shows its value, whole */
	CHECK(v.len == 6 && memcmp(v.data, "pinned", 6) == 0);
	hc_view_release(c, &v);
	/* released: sets succeed again */
	for (uint32_t i = 0; i < 20000; i++) {
		key_of(k, sizeof(k), "after", i, &kl);
		CHECK_RC(hc_set(c, k, kl, val, sizeof(val), 0), 0);
	}
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

int main(void)
{
	test_clock();
	test_slab_moves();
	test_small_index();
	test_stalled_reader();
	return tu_done("test_evict");
}
