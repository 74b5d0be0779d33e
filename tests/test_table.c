/* test_table.c - get, set, del, replace, views, sizes at and beyond the limits. */
#include "testutil.h"

static void test_basic(void)
{
	struct hc_options o = {.flags = HC_CREATE, .size = 8u << 20, .max_value = 64u << 10};
	struct hc_cache *c;
	const char *name = tu_name("basic");
	REQUIRE(hc_open(name, &o, &c) == 0);
	char buf[256];
	size_t n = 0;

	CHECK_RC(hc_get(c, "k1", 2, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_set(c, "k1", 2, "hello", 5, 0), 0);
	CHECK_RC(hc_get(c, "k1", 2, buf, sizeof(buf), &n), 0);
	CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);

	/* replace */
	CHECK_RC(hc_set(c, "k1", 2, "world!", 6, 0), 0);
	CHECK_RC(hc_get(c, "k1", 2, buf, sizeof(buf), &n), 0);
	CHECK(n == 6 && memcmp(buf, "world!", 6) == 0);

	/* buffer too small reports the size and copies nothing */
	memset(buf, 'x', sizeof(buf));
	CHECK_RC(hc_get(c, "k1", 2, buf, 3, &n), HC_E_TOOSMALL);
	CHECK(n == 6 && buf[0] == 'x');

	/* empty value */
	CHECK_RC(hc_set(c, "empty", 5, NULL, 0, 0), 0);
	CHECK_RC(hc_get(c, "empty", 5, NULL, 0, &n), 0);
	CHECK(n == 0);

	/* delete */
	CHECK_RC(hc_del(c, "k1", 2), 0);
	CHECK_RC(hc_del(c, "k1", 2), HC_E_NOTFOUND);
	CHECK_RC(hc_get(c, "k1", 2, buf, sizeof(buf), &n), HC_E_NOTFOUND);

	/* zero-copy view survives a replacement */
	CHECK_RC(hc_set(c, "v", 1, "first", 5, 0), 0);
	struct hc_view v;
	CHECK_RC(hc_view_get(c, "v", 1, &v), 0);
	CHECK(v.len == 5 && memcmp(v.data, "first", 5) == 0);
	CHECK_RC(hc_set(c, "v", 1, "second", 6, 0), 0);
	CHECK(v.len == 5 && memcmp(v.data, "first", 5) == 0);
	hc_view_release(c, &v);
	hc_view_release(c, NULL);
	CHECK_RC(hc_get(c, "v", 1, buf, sizeof(buf), &n), 0);
	CHECK(n == 6 && memcmp(buf, "second", 6) == 0);

	/* many keys */
	for (int i = 0; i < 20000; i++) {
		char k[32], val[64];
		int kl = snprintf(k, sizeof(k), "user:%d", i);
		int vl = snprintf(val, sizeof(val), "value-%d", i * 7);
		CHECK_RC(hc_set(c, k, (size_t)kl, val, (size_t)vl, 0), 0);
	}
	int found = 0;
	for (int i = 0; i < 20000; i++) {
		char k[32], want[64];
		int kl = snprintf(k, sizeof(k), "user:%d", i);
		int vl = snprintf(want, sizeof(want), "value-%d", i * 7);
		if (hc_get(c, k, (size_t)kl, buf, sizeof(buf), &n) == 0) {
			found++;
			CHECK(n == (size_t)vl && memcmp(buf, want, n) == 0);
		}
	}
	CHECK(found == 20000);
	if (found != 20000)
		fprintf(stderr, "found %d\n", found);
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.items == 20000 + 2);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

static void test_limits(void)
{
	struct hc_options o = {.flags = HC_CREATE, .size = 16u << 20};
	struct hc_cache *c;
	const char *name = tu_name("limits");
	REQUIRE(hc_open(name, &o, &c) == 0);
	char key[HC_KEY_MAX + 2];
	memset(key, 'k', sizeof(key));
	size_t n;

	/* keys: 1..250 bytes */
	CHECK_RC(hc_set(c, key, HC_KEY_MAX, "v", 1, 0), 0);
	CHECK_RC(hc_get(c, key, HC_KEY_MAX, NULL, 0, &n), HC_E_TOOSMALL);
	CHECK(n == 1);
	CHECK_RC(hc_set(c, key, HC_KEY_MAX + 1, "v", 1, 0), HC_E_TOOBIG);
	CHECK_RC(hc_get(c, key, HC_KEY_MAX + 1, NULL, 0, &n), HC_E_TOOBIG);
	CHECK_RC(hc_del(c, key, HC_KEY_MAX + 1), HC_E_TOOBIG);
	CHECK_RC(hc_set(c, key, 0, "v", 1, 0), HC_E_INVAL);
	CHECK_RC(hc_set(c, NULL, 3, "v", 1, 0), HC_E_INVAL);
	CHECK_RC(hc_set(c, "k", 1, NULL, 3, 0), HC_E_INVAL);

	/* values: up to 1 MiB by default */
	size_t big = HC_VALUE_MAX_DEFAULT;
	uint8_t *v = malloc(big + 1), *out = malloc(big + 1);
	for (size_t i = 0; i <= big; i++)
		v[i] = (uint8_t)(i * 31 + 7);
	CHECK_RC(hc_set(c, "big", 3, v, big, 0), 0);
	CHECK_RC(hc_get(c, "big", 3, out, big, &n), 0);
	CHECK(n == big && memcmp(v, out, big) == 0);
	CHECK_RC(hc_set(c, "big2", 4, v, big + 1, 0), HC_E_TOOBIG);
	CHECK_RC(hc_get(c, "big2", 4, out, big, &n), HC_E_NOTFOUND);
	free(v);
	free(out);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

int main(void)
{
	test_basic();
	test_limits();
	return tu_done("test_table");
}
