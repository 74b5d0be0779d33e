/*
 * cmp_local.c - the systems of hostcache-compare that live in the workers'
 * own memory (see cmp.h):
 *
 *   hostcache   hc_get on a segment every worker maps
 *   hc-load     hc_get_or_load on the same hits (the loader must never run)
 *   rwlock      rwtable.c: one process-shared pthread_rwlock over a chained
 *               hash table with an LRU list, in shared memory: the design
 *               hostcache replaces
 *   lru         a cache inside each worker process: hash table, LRU list,
 *               TTL checked on every get (CLOCK_MONOTONIC_COARSE), values
 *               copied out, as a worker's own cache does it; each worker
 *               fills its own copy (N copies of every value for N workers)
 */
#include <errno.h>
#include <hostcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmp.h"
#include "rwtable.h"

/* ---------------------------------------------------------------------- */
/* hostcache                                                               */

/* hostcache and hc-load share one segment (set up by whichever comes first). */
static char hc_name[64];
static struct hc_cache *hc_parent; /* the parent's handle, for fill and stats */
static int hc_refs;
static bool hc_filled;

static void hc_cleanup(void)
{
	if (hc_name[0])
		hc_unlink(hc_name);
}

static int hc_setup(const struct cmp_case *c, char *why, size_t whylen)
{
	if (hc_refs++)
		return 0;
	/*
	 * Room for every key with 60 % to spare (size classes round up), and
	 * an index slot per 0.6 block of arena, so the 2-choice buckets stay
	 * under 40 % full and the fill neither evicts nor drops an entry (the
	 * default of a slot per 96 bytes is too few for entries much smaller
	 * than 96 bytes: 16-byte values overflowed it at 83 % load).
	 * max_value stays at its default (1 MiB): with max_value 16 KiB the
	 * slabs are 64 KiB and a 16 KiB value lands in the largest class, one
	 * per slab.
	 */
	uint64_t block = 32 + CMP_KEY_LEN + c->value_size;
	uint64_t size = c->keys * block * 160 / 100 + (6u << 20);
	uint64_t bps = block * 6 / 10;
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL,
			       .size = size,
			       .bytes_per_slot = bps < 32 ? 32 : (uint32_t)bps};
	snprintf(hc_name, sizeof(hc_name), "cmp-%d", (int)getpid());
	hc_unlink(hc_name);
	cmp_at_exit(hc_cleanup);
	int rc = hc_open(hc_name, &o, &hc_parent);
	if (rc) {
		snprintf(why, whylen, "hc_open: %s", hc_strerror(rc));
		hc_name[0] = 0;
		hc_refs = 0;
		return -1;
	}
	return 0;
}

static int hc_fill(const struct cmp_case *c)
{
	if (hc_filled)
		return 0;
	static uint8_t val[CMP_VAL_MAX];
	char key[CMP_KEY_LEN];
	for (uint64_t id = 0; id < c->keys; id++) {
		make_key(id, key);
		cmp_value(id, val, c->value_size);
		int rc = hc_set(hc_parent, key, CMP_KEY_LEN, val, c->value_size, 0);
		if (rc) {
			fprintf(stderr, "hostcache: hc_set: %s\n", hc_strerror(rc));
			return -1;
		}
	}
	struct hc_stats st;
	if (hc_stats(hc_parent, &st) || st.layer[HC_LAYER_L1].evictions || st.index_evictions ||
	    st.items != c->keys) {
		fprintf(stderr,
			"hostcache: the fill evicted (%llu items of %llu; %u of %u slabs of %u B, "
			"%llu index evictions)\n",
			(unsigned long long)st.items, (unsigned long long)c->keys, st.slabs_used,
			st.slabs_total, st.slab_size, (unsigned long long)st.index_evictions);
		return -1;
	}
	hc_filled = true;
	return 0;
}

/* Slabs in use and the whole index: what the items cost. */
static uint64_t hc_mem(void)
{
	struct hc_stats st;
	struct hc_info in;
	if (hc_stats(hc_parent, &st) || hc_info(hc_parent, &in))
		return 0;
	return (uint64_t)st.slabs_used * st.slab_size + in.index_bytes;
}

static void hc_teardown(void)
{
	if (hc_refs && --hc_refs)
		return;
	hc_filled = false;
	hc_close(hc_parent);
	hc_parent = NULL;
	hc_cleanup();
	hc_name[0] = 0;
}

static void *hc_attach(const struct cmp_case *c, unsigned proc)
{
	(void)c;
	(void)proc;
	struct hc_cache *h;
	hc_close(hc_parent); /* inherited across fork: only unmaps */
	hc_parent = NULL;
	int rc = hc_open(hc_name, NULL, &h);
	if (rc) {
		fprintf(stderr, "hostcache: attach: %s\n", hc_strerror(rc));
		return NULL;
	}
	return h;
}

static int hc_get1(void *h, const uint64_t *ids, unsigned n, uint8_t *const *bufs, size_t *lens)
{
	for (unsigned i = 0; i < n; i++) {
		char key[CMP_KEY_LEN];
		make_key(ids[i], key);
		int rc = hc_get(h, key, CMP_KEY_LEN, bufs[i], CMP_VAL_MAX, &lens[i]);
		if (rc == HC_E_NOTFOUND)
			lens[i] = SIZE_MAX;
		else if (rc)
			return -1;
	}
	return 0;
}

/* The loader of hc-load: every key is cached, so a call is an error. */
static int never_load(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx;
	(void)key;
	(void)klen;
	(void)ld;
	return -EIO;
}

static int hc_getload(void *h, const uint64_t *ids, unsigned n, uint8_t *const *bufs, size_t *lens)
{
	static const struct hc_load_opts lo = {.flags = HC_LOAD_NO_L2};
	for (unsigned i = 0; i < n; i++) {
		char key[CMP_KEY_LEN];
		make_key(ids[i], key);
		int rc = hc_get_or_load(h, key, CMP_KEY_LEN, never_load, NULL, &lo, bufs[i],
					CMP_VAL_MAX, &lens[i], NULL);
		if (rc)
			return -1;
	}
	return 0;
}

static int hc_set1(void *h, uint64_t id, const uint8_t *val, size_t vlen)
{
	char key[CMP_KEY_LEN];
	make_key(id, key);
	return hc_set(h, key, CMP_KEY_LEN, val, vlen, 0) ? -1 : 0;
}

static void hc_detach(void *h)
{
	hc_close(h);
}

const struct cmp_sys cmp_hc_get = {
	.name = "hostcache",
	.what = "hc_get from the shared segment",
	.batch = 1,
	.local = true,
	.setup = hc_setup,
	.fill = hc_fill,
	.mem_bytes = hc_mem,
	.teardown = hc_teardown,
	.attach = hc_attach,
	.get = hc_get1,
	.set = hc_set1,
	.detach = hc_detach,
};

const struct cmp_sys cmp_hc_load = {
	.name = "hc-load",
	.what = "hc_get_or_load hits (single-flight and XFetch checks included)",
	.batch = 1,
	.local = true,
	.setup = hc_setup,
	.fill = hc_fill,
	.mem_bytes = hc_mem,
	.teardown = hc_teardown,
	.attach = hc_attach,
	.get = hc_getload,
	.set = hc_set1,
	.detach = hc_detach,
};

/* ---------------------------------------------------------------------- */
/* rwlock: the naive shared table                                          */

static char rw_name[64];
static struct rwt *rw;

static void rw_cleanup(void)
{
	if (rw_name[0])
		rwt_unlink(rw_name);
}

static int rw_setup(const struct cmp_case *c, char *why, size_t whylen)
{
	snprintf(rw_name, sizeof(rw_name), "cmp-rw-%d", (int)getpid());
	rwt_unlink(rw_name);
	cmp_at_exit(rw_cleanup);
	int rc = rwt_create(rw_name, c->keys + c->keys / 8 + 16, CMP_KEY_LEN, c->value_size, &rw);
	if (rc) {
		snprintf(why, whylen, "rwt_create: %s", strerror(-rc));
		rw_name[0] = 0;
		return -1;
	}
	return 0;
}

static int rw_fill(const struct cmp_case *c)
{
	static uint8_t val[CMP_VAL_MAX];
	char key[CMP_KEY_LEN];
	for (uint64_t id = 0; id < c->keys; id++) {
		make_key(id, key);
		cmp_value(id, val, c->value_size);
		if (rwt_set(rw, key, CMP_KEY_LEN, val, c->value_size))
			return -1;
	}
	struct rwt_stats st;
	return rwt_stats(rw, &st) || st.evictions ? -1 : 0;
}

static uint64_t rw_mem(void)
{
	struct rwt_stats st;
	return rwt_stats(rw, &st) ? 0 : st.items * st.entry_size + st.nbuckets * 8;
}

static void rw_teardown(void)
{
	rwt_close(rw);
	rw = NULL;
	rw_cleanup();
	rw_name[0] = 0;
}

static void *rw_attach(const struct cmp_case *c, unsigned proc)
{
	(void)c;
	(void)proc;
	return rw; /* a MAP_SHARED mapping: usable after fork */
}

static int rw_get(void *h, const uint64_t *ids, unsigned n, uint8_t *const *bufs, size_t *lens)
{
	for (unsigned i = 0; i < n; i++) {
		char key[CMP_KEY_LEN];
		make_key(ids[i], key);
		int rc = rwt_get(h, key, CMP_KEY_LEN, bufs[i], CMP_VAL_MAX, &lens[i]);
		if (rc == -ENOENT)
			lens[i] = SIZE_MAX;
		else if (rc)
			return -1;
	}
	return 0;
}

static int rw_set(void *h, uint64_t id, const uint8_t *val, size_t vlen)
{
	char key[CMP_KEY_LEN];
	make_key(id, key);
	return rwt_set(h, key, CMP_KEY_LEN, val, vlen) ? -1 : 0;
}

static void rw_detach(void *h)
{
	(void)h;
}

const struct cmp_sys cmp_rwlock = {
	.name = "rwlock",
	.what = "process-shared pthread_rwlock over a hash table in shm",
	.batch = 1,
	.local = true,
	.setup = rw_setup,
	.fill = rw_fill,
	.mem_bytes = rw_mem,
	.teardown = rw_teardown,
	.attach = rw_attach,
	.get = rw_get,
	.set = rw_set,
	.detach = rw_detach,
};

/* ---------------------------------------------------------------------- */
/* lru: a cache inside each worker                                         */

#define NIL UINT32_MAX

struct lru_entry {
	char key[CMP_KEY_LEN];
	uint32_t prev, next; /* recency list, head = most recent */
	uint32_t len;
	int64_t expires_ms; /* CLOCK_MONOTONIC_COARSE */
	uint8_t *val;
};

struct lru {
	struct lru_entry *e;
	uint32_t *table; /* open addressing: entry + 1, 0 = empty */
	uint64_t mask;
	uint32_t n, cap, head, tail;
	uint8_t *arena; /* cap values of value_size bytes */
	size_t vsize;
};

static uint64_t lru_hash(const char *key)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (int i = 0; i < CMP_KEY_LEN; i++)
		h = (h ^ (unsigned char)key[i]) * 0x100000001b3u;
	return h ^ (h >> 29);
}

static int64_t coarse_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t *lru_slot(struct lru *l, const char *key)
{
	for (uint64_t i = lru_hash(key) & l->mask;; i = (i + 1) & l->mask) {
		uint32_t v = l->table[i];
		if (!v || !memcmp(l->e[v - 1].key, key, CMP_KEY_LEN))
			return &l->table[i];
	}
}

static void lru_unlink(struct lru *l, uint32_t i)
{
	struct lru_entry *x = &l->e[i];
	if (x->prev != NIL)
		l->e[x->prev].next = x->next;
	else
		l->head = x->next;
	if (x->next != NIL)
		l->e[x->next].prev = x->prev;
	else
		l->tail = x->prev;
}

static void lru_push(struct lru *l, uint32_t i)
{
	l->e[i].prev = NIL;
	l->e[i].next = l->head;
	if (l->head != NIL)
		l->e[l->head].prev = i;
	l->head = i;
	if (l->tail == NIL)
		l->tail = i;
}

/*
 * Store a value (the cache holds every key of the case, so it never
 * evicts; a full cache refuses).  TTL one hour, checked on every get.
 */
static int lru_put(struct lru *l, const char *key, const uint8_t *val, size_t vlen)
{
	uint32_t *s = lru_slot(l, key);
	uint32_t i;
	if (*s) {
		i = *s - 1;
		lru_unlink(l, i);
	} else {
		if (l->n == l->cap || vlen > l->vsize)
			return -1;
		i = l->n++;
		memcpy(l->e[i].key, key, CMP_KEY_LEN);
		l->e[i].val = l->arena + (size_t)i * l->vsize;
		*s = i + 1;
	}
	memcpy(l->e[i].val, val, vlen);
	l->e[i].len = (uint32_t)vlen;
	l->e[i].expires_ms = coarse_ms() + 3600 * 1000;
	lru_push(l, i);
	return 0;
}

static uint64_t lru_bytes; /* what one worker's copy costs, for mem_bytes */

static int lru_setup(const struct cmp_case *c, char *why, size_t whylen)
{
	(void)c;
	(void)why;
	(void)whylen;
	return 0;
}

/* Each worker fills its own copy in attach(); the parent builds one only
 * to measure what a copy costs. */
static void lru_free(struct lru *l)
{
	if (!l)
		return;
	free(l->e);
	free(l->table);
	free(l->arena);
	free(l);
}

static struct lru *lru_build(const struct cmp_case *c)
{
	struct lru *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	uint64_t tsize = 16;
	while (tsize < 2 * c->keys)
		tsize *= 2;
	l->cap = (uint32_t)c->keys;
	l->mask = tsize - 1;
	l->vsize = c->value_size;
	l->head = l->tail = NIL;
	l->e = malloc(c->keys * sizeof(*l->e));
	l->table = calloc(tsize, sizeof(*l->table));
	l->arena = malloc(c->keys * c->value_size);
	if (!l->e || !l->table || !l->arena) {
		lru_free(l);
		return NULL;
	}
	static uint8_t val[CMP_VAL_MAX];
	char key[CMP_KEY_LEN];
	for (uint64_t id = 0; id < c->keys; id++) {
		make_key(id, key);
		cmp_value(id, val, c->value_size);
		if (lru_put(l, key, val, c->value_size)) {
			lru_free(l);
			return NULL;
		}
	}
	lru_bytes = c->keys * (sizeof(*l->e) + c->value_size) + tsize * sizeof(*l->table);
	return l;
}

static int lru_fill(const struct cmp_case *c)
{
	struct lru *l = lru_build(c);
	lru_free(l);
	return l ? 0 : -1;
}

static uint64_t lru_mem(void)
{
	return lru_bytes;
}

static void lru_teardown(void)
{
}

static void *lru_attach(const struct cmp_case *c, unsigned proc)
{
	(void)proc;
	return lru_build(c);
}

static int lru_get(void *h, const uint64_t *ids, unsigned n, uint8_t *const *bufs, size_t *lens)
{
	struct lru *l = h;
	int64_t now = coarse_ms();
	for (unsigned i = 0; i < n; i++) {
		char key[CMP_KEY_LEN];
		make_key(ids[i], key);
		uint32_t *s = lru_slot(l, key);
		if (!*s || l->e[*s - 1].expires_ms <= now) {
			lens[i] = SIZE_MAX;
			continue;
		}
		uint32_t x = *s - 1;
		if (l->head != x) {
			lru_unlink(l, x);
			lru_push(l, x);
		}
		memcpy(bufs[i], l->e[x].val, l->e[x].len);
		lens[i] = l->e[x].len;
	}
	return 0;
}

static int lru_set(void *h, uint64_t id, const uint8_t *val, size_t vlen)
{
	char key[CMP_KEY_LEN];
	make_key(id, key);
	return lru_put(h, key, val, vlen);
}

static void lru_detach(void *h)
{
	lru_free(h);
}

const struct cmp_sys cmp_lru = {
	.name = "lru",
	.what = "a hash table + LRU list + TTL inside each worker (one copy per worker)",
	.batch = 1,
	.local = true,
	.per_process = true,
	.setup = lru_setup,
	.fill = lru_fill,
	.mem_bytes = lru_mem,
	.teardown = lru_teardown,
	.attach = lru_attach,
	.get = lru_get,
	.set = lru_set,
	.detach = lru_detach,
};
