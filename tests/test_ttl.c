/*
 * test_ttl.c - time to live, the stale window, negative entries, the
 * metadata returned with a value, and background expiry.
 *
 * The precision test brackets every call between clock reads: a hit is
 * only allowed if the get started before set_end + ttl, a miss only if it
 * ended after set_start + ttl.  The library reads a coarse clock on the hit
 * path and the precise one near the deadline; this proves the shortcut
 * never serves an expired entry.
 */
#include "testutil.h"

static uint64_t now_ms(void)
{
	return tu_now_ns() / 1000000u;
}

static void test_expiry(struct hc_cache *c)
{
	char buf[64];
	size_t n;
	CHECK_RC(hc_set(c, "ttl:a", 5, "v", 1, 150), 0);
	CHECK_RC(hc_get(c, "ttl:a", 5, buf, sizeof(buf), &n), 0);
	tu_sleep_ms(200);
	CHECK_RC(hc_get(c, "ttl:a", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	/* ttl 0: never expires */
	CHECK_RC(hc_set(c, "ttl:forever", 11, "v", 1, 0), 0);
	struct hc_meta m;
	CHECK_RC(hc_get_ex(c, "ttl:forever", 11, buf, sizeof(buf), &n, &m, 0), 0);
	CHECK(m.ttl_left_ms == INT64_MAX && m.stale_left_ms == INT64_MAX && !m.stale);
	/* a new set gives a new life */
	CHECK_RC(hc_set(c, "ttl:a", 5, "w", 1, 10000), 0);
	CHECK_RC(hc_get_ex(c, "ttl:a", 5, buf, sizeof(buf), &n, &m, 0), 0);
	CHECK(m.ttl_left_ms > 9000 && m.ttl_left_ms <= 10000);
}

static void test_precision(struct hc_cache *c)
{
	const uint32_t ttl = 25;
	for (int round = 0; round < 20; round++) {
		char buf[16];
		size_t n;
		uint64_t s0 = now_ms();
		CHECK_RC(hc_set(c, "prec:k", 6, "v", 1, ttl), 0);
		uint64_t s1 = now_ms();
		int misses = 0;
		while (misses == 0) {
			uint64_t g0 = now_ms();
			int rc = hc_get(c, "prec:k", 6, buf, sizeof(buf), &n);
			uint64_t g1 = now_ms();
			if (rc == 0) {
				/* the entry is fresh until set time + ttl, and set time <= s1 */
				CHECK(g0 < s1 + ttl + 1);
			} else {
				CHECK_RC(rc, HC_E_NOTFOUND);
				CHECK(g1 >= s0 + ttl);
				misses++;
			}
			if (g0 > s1 + 1000) {
				CHECK(!"entry never expired");
				break;
			}
		}
	}
}

static void test_stale_window(struct hc_cache *c)
{
	char buf[64];
	size_t n;
	struct hc_meta m;
	struct hc_set_opts o = {.ttl_ms = 100, .stale_ms = 400, .compute_ms = 42};
	CHECK_RC(hc_set_ex(c, "swr:k", 5, "old", 3, &o), 0);
	CHECK_RC(hc_get_ex(c, "swr:k", 5, buf, sizeof(buf), &n, &m, HC_GET_STALE), 0);
	CHECK(!m.stale && m.compute_ms == 42 && m.ttl_left_ms <= 100 && m.ttl_left_ms > 0);
	CHECK(m.stale_left_ms > 400 && m.stale_left_ms <= 500);
	tu_sleep_ms(200);
	/* past the TTL: plain reads miss, stale reads get it, marked stale */
	CHECK_RC(hc_get(c, "swr:k", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_get_ex(c, "swr:k", 5, buf, sizeof(buf), &n, &m, HC_GET_STALE), 0);
	CHECK(n == 3 && memcmp(buf, "old", 3) == 0);
	CHECK(m.stale == 1 && m.ttl_left_ms < 0 && m.stale_left_ms > 0);
	tu_sleep_ms(400);
	CHECK_RC(hc_get_ex(c, "swr:k", 5, buf, sizeof(buf), &n, &m, HC_GET_STALE), HC_E_NOTFOUND);

	/* stale windows past the exact-ms range are kept in seconds */
	struct hc_set_opts longo = {.ttl_ms = 1000, .stale_ms = 3u * 86400u * 1000u};
	CHECK_RC(hc_set_ex(c, "swr:long", 8, "v", 1, &longo), 0);
	CHECK_RC(hc_get_ex(c, "swr:long", 8, buf, sizeof(buf), &n, &m, 0), 0);
	CHECK(m.stale_left_ms - m.ttl_left_ms == 3ll * 86400 * 1000);
	struct hc_set_opts bad = {.flags = 0x80};
	CHECK_RC(hc_set_ex(c, "swr:bad", 7, "v", 1, &bad), HC_E_INVAL);
}

static void test_negative_and_etag(struct hc_cache *c)
{
	char buf[64];
	size_t n;
	struct hc_meta m, m2;
	struct hc_set_opts neg = {.ttl_ms = 5000, .flags = HC_ENTRY_NEGATIVE};
	CHECK_RC(hc_set_ex(c, "neg:1", 5, NULL, 0, &neg), 0);
	CHECK_RC(hc_get(c, "neg:1", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_get_ex(c, "neg:1", 5, buf, sizeof(buf), &n, &m, HC_GET_NEGATIVE), 0);
	CHECK(n == 0 && (m.flags & HC_ENTRY_NEGATIVE));

	/* the ETag is the content's: equal content, equal tag, on any key */
	CHECK_RC(hc_set(c, "etag:a", 6, "same", 4, 0), 0);
	CHECK_RC(hc_set(c, "etag:b", 6, "same", 4, 0), 0);
	CHECK_RC(hc_get_ex(c, "etag:a", 6, buf, sizeof(buf), &n, &m, 0), 0);
	CHECK_RC(hc_get_ex(c, "etag:b", 6, buf, sizeof(buf), &n, &m2, 0), 0);
	CHECK(m.etag == m2.etag && m.etag != 0);
	CHECK_RC(hc_set(c, "etag:a", 6, "diff", 4, 0), 0);
	CHECK_RC(hc_get_ex(c, "etag:a", 6, buf, sizeof(buf), &n, &m2, 0), 0);
	CHECK(m.etag != m2.etag);
	CHECK(m.etag == (hc_hash64("same", 4, UINT64_C(0x13198a2e03707344)) >> 16));
	CHECK(hc_etag_of("same", 4) == m.etag && hc_etag_of("diff", 4) == m2.etag);
	CHECK(hc_etag_of("", 0) != hc_etag_of("same", 4));
}

static void test_background_expiry(struct hc_cache *c)
{
	struct hc_stats s0, s1;
	CHECK_RC(hc_stats(c, &s0), 0);
	for (int i = 0; i < 500; i++) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "exp:%d", i);
		CHECK_RC(hc_set(c, k, (size_t)kl, "value", 5, 50), 0);
	}
	tu_sleep_ms(100);
	int64_t expired = hc_maintain(c, 0);
	CHECK(expired >= 500);
	CHECK_RC(hc_stats(c, &s1), 0);
	CHECK(s1.layer[HC_LAYER_L1].expirations >= s0.layer[HC_LAYER_L1].expirations + 500);
	CHECK(s1.items <= s0.items);
}

int main(void)
{
	const char *name = tu_name("ttl");
	struct hc_options o = {.flags = HC_CREATE, .size = 8u << 20, .max_value = 16384};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	test_expiry(c);
	test_precision(c);
	test_stale_window(c);
	test_negative_and_etag(c);
	test_background_expiry(c);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	return tu_done("test_ttl");
}
