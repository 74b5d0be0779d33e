/*
 * test_limits.c - every size limit of the API exactly at and one over
 * (docs/security.md, "bad input"), where test_table.c and test_load.c do
 * not already: a configured max_value through set, set_ex, a batch loader
 * and a dump loaded into a smaller segment; keys of 250 and 251 bytes
 * through view_get and get_many; the batch size (one over only: a batch
 * of 2^20 items would take 100 MB); entity names of 31 and 32 bytes.
 */
#include <errno.h>

#include "testutil.h"

#define VMAX 4096u

static int batch_loader(void *ctx, const struct hc_batch_item *const *items, size_t n,
			struct hc_load *lds, int *rc)
{
	static uint8_t val[VMAX + 1];
	(void)ctx;
	for (size_t i = 0; i < n; i++) {
		/* key "at" gets exactly VMAX bytes, any other one byte more */
		size_t len =
			items[i]->klen == 2 && !memcmp(items[i]->key, "at", 2) ? VMAX : VMAX + 1;
		rc[i] = hc_load_value(&lds[i], val, len);
	}
	return 0;
}

static void test_max_value(void)
{
	const char *name = tu_name("limits-vmax");
	struct hc_options o = {.flags = HC_CREATE, .size = 8u << 20, .max_value = VMAX};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	static uint8_t v[VMAX + 1], out[VMAX + 1];
	memset(v, 'v', sizeof(v));
	size_t n;
	CHECK_RC(hc_set(c, "k", 1, v, VMAX, 0), 0);
	CHECK_RC(hc_get(c, "k", 1, out, sizeof(out), &n), 0);
	CHECK(n == VMAX);
	CHECK_RC(hc_set(c, "k", 1, v, VMAX + 1, 0), HC_E_TOOBIG);
	struct hc_set_opts so = {.ttl_ms = 60000};
	CHECK_RC(hc_set_ex(c, "k2", 2, v, VMAX + 1, &so), HC_E_TOOBIG);
	CHECK_RC(hc_get(c, "k2", 2, out, sizeof(out), &n), HC_E_NOTFOUND);
	/* the one-over set left the old value */
	CHECK_RC(hc_get(c, "k", 1, out, sizeof(out), &n), 0);
	CHECK(n == VMAX);

	/* a batch loader's values: at the limit stored, over it refused per key */
	static uint8_t b1[VMAX + 1], b2[VMAX + 1];
	struct hc_batch_item items[2] = {{.key = "at", .klen = 2, .buf = b1, .cap = sizeof(b1)},
					 {.key = "over", .klen = 4, .buf = b2, .cap = sizeof(b2)}};
	struct hc_load_opts lo = {.ttl_ms = 60000, .flags = HC_LOAD_NO_L2};
	CHECK_RC(hc_get_many(c, items, 2, batch_loader, NULL, &lo), 1); /* items with rc 0 */
	CHECK_RC(items[0].rc, 0);
	CHECK(items[0].vlen == VMAX);
	CHECK_RC(items[1].rc, HC_E_TOOBIG);
	CHECK_RC(hc_get(c, "at", 2, out, sizeof(out), &n), 0);
	CHECK_RC(hc_get(c, "over", 4, out, sizeof(out), &n), HC_E_NOTFOUND);

	/* a dump from a segment with larger values, loaded into this one */
	const char *big_name = tu_name("limits-big");
	struct hc_options bo = {.flags = HC_CREATE, .size = 8u << 20, .max_value = 2 * VMAX};
	struct hc_cache *big;
	REQUIRE(hc_open(big_name, &bo, &big) == 0);
	CHECK_RC(hc_set(big, "small", 5, v, VMAX, 0), 0);
	FILE *f = tmpfile();
	REQUIRE(f);
	CHECK(hc_dump(big, fileno(f)) == 1);
	CHECK_RC(hc_set(big, "large", 5, v, VMAX + 1, 0), 0);
	FILE *g = tmpfile();
	REQUIRE(g);
	CHECK(hc_dump(big, fileno(g)) == 2);
	REQUIRE(lseek(fileno(f), 0, SEEK_SET) == 0 && lseek(fileno(g), 0, SEEK_SET) == 0);
	CHECK(hc_load(c, fileno(f)) == 1); /* at the limit: loaded */
	CHECK_RC(hc_load(c, fileno(g)), HC_E_TOOBIG);
	CHECK_RC(hc_get(c, "large", 5, out, sizeof(out), &n), HC_E_NOTFOUND);
	fclose(f);
	fclose(g);
	hc_close(big);
	CHECK_RC(hc_unlink(big_name), 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	printf("max_value %u: set, set_ex, batch loader, dump load at the limit and one over\n",
	       VMAX);
}

static int never_loader(void *ctx, const struct hc_batch_item *const *items, size_t n,
			struct hc_load *lds, int *rc)
{
	(void)items, (void)n, (void)lds, (void)rc;
	++*(int *)ctx;
	return 0;
}

static void test_keys_and_batches(void)
{
	const char *name = tu_name("limits-keys");
	struct hc_options o = {.flags = HC_CREATE, .size = 8u << 20};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	char key[HC_KEY_MAX + 1];
	memset(key, 'k', sizeof(key));
	CHECK_RC(hc_set(c, key, HC_KEY_MAX, "v", 1, 0), 0);
	struct hc_view view;
	CHECK_RC(hc_view_get(c, key, HC_KEY_MAX, &view), 0);
	hc_view_release(c, &view);
	CHECK_RC(hc_view_get(c, key, HC_KEY_MAX + 1, &view), HC_E_TOOBIG);

	/* a batch with one key over the limit is refused whole, before any load */
	char buf[2][8];
	struct hc_batch_item items[2] = {
		{.key = key, .klen = HC_KEY_MAX, .buf = buf[0], .cap = 8},
		{.key = key, .klen = HC_KEY_MAX + 1, .buf = buf[1], .cap = 8}};
	int calls = 0;
	struct hc_load_opts lo = {.flags = HC_LOAD_NO_L2};
	CHECK_RC(hc_get_many(c, items, 2, never_loader, &calls, &lo), HC_E_TOOBIG);
	CHECK(calls == 0);
	/* at most 2^20 keys a batch: refused on the count alone, before any item
	 * is read (so the two-item array is enough); 2^20 itself is not tried */
	CHECK_RC(hc_get_many(c, items, (1u << 20) + 1, never_loader, &calls, &lo), HC_E_INVAL);
	CHECK(calls == 0);
	CHECK_RC(hc_get_many(c, items, 1, never_loader, &calls, &lo), 1);
	CHECK(calls == 0 && items[0].rc == 0); /* a hit: no load */

	/* entity names: 1..31 bytes */
	char ent[HC_ENTITY_NAME_MAX + 2];
	memset(ent, 'e', sizeof(ent));
	ent[HC_ENTITY_NAME_MAX] = '\0';
	CHECK_RC(hc_entity_beta(c, ent, 2.0), 0);
	ent[HC_ENTITY_NAME_MAX] = 'e';
	ent[HC_ENTITY_NAME_MAX + 1] = '\0';
	CHECK_RC(hc_entity_beta(c, ent, 2.0), HC_E_INVAL);
	CHECK_RC(hc_entity_beta(c, "", 2.0), HC_E_INVAL);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	printf("keys of %u and %u bytes through view_get and get_many; batches of 2^20 + 1; "
	       "entity names of %u and %u bytes\n",
	       HC_KEY_MAX, HC_KEY_MAX + 1, HC_ENTITY_NAME_MAX, HC_ENTITY_NAME_MAX + 1);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_max_value();
	test_keys_and_batches();
	return tu_done("test_limits");
}
