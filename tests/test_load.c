/*
 * test_load.c - hc_get_or_load and hc_get_many in one process: where a
 * value comes from (meta.source), loader TTL overrides, short buffers,
 * negative caching, loader errors and stale-if-error, stale-while-
 * revalidate with two threads, XFetch early recompute measured against
 * its formula, TTL jitter, batches, invalidation, argument checks and the
 * loading statistics.
 *
 * Every test runs on a segment of its own, so the statistics it checks are
 * exactly its own.
 */
#include <math.h>
#include <errno.h>
#include <pthread.h>

#include "testutil.h"

static uint64_t ms_since(uint64_t t0_ns)
{
	return (tu_now_ns() - t0_ns) / 1000000u;
}

static struct hc_cache *seg_open(const char *base, const char **name)
{
	*name = tu_name(base);
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL, .size = 16u << 20, .max_value = 16384};
	struct hc_cache *c;
	int rc = hc_open(*name, &o, &c);
	if (rc)
		fprintf(stderr, "hc_open(%s): %s\n", *name, hc_strerror(rc));
	REQUIRE(rc == 0);
	return c;
}

static void seg_close(struct hc_cache *c, const char *name)
{
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

static const struct hc_entity_stats *entity(const struct hc_stats *st, const char *name)
{
	for (uint32_t i = 0; i < st->nentities && i < HC_MAX_ENTITIES; i++)
		if (strcmp(st->entity[i].name, name) == 0)
			return &st->entity[i];
	return NULL;
}

static uint64_t hist_sum(const struct hc_load_stats *l)
{
	uint64_t s = 0;
	for (int i = 0; i < HC_HIST_N; i++)
		s += l->load_hist[i];
	return s;
}

/* ---------------------------------------------------------------------- */
/* A configurable loader                                                   */

struct lctx {
	int calls;	     /* loader runs (atomic) */
	int rc;		     /* nonzero: return this (after the sleep) */
	unsigned sleep_ms;   /* origin latency */
	const char *val;     /* value to give; NULL: "v:" + key */
	size_t val_len;	     /* with val: its length (0: strlen) */
	int no_value;	     /* return 0 without hc_load_value */
	int set_ttl;	     /* override ld->ttl_ms with new_ttl */
	uint32_t new_ttl;    /* ... */
	int set_stale;	     /* override ld->stale_ms with new_stale */
	uint32_t new_stale;  /* ... */
	uint32_t seen_ttl;   /* ld->ttl_ms as handed in (last call) */
	uint32_t seen_stale; /* ld->stale_ms as handed in (last call) */
	int lv_rc;	     /* hc_load_value's return (last call) */
	int give_lv_rc;	     /* return what hc_load_value returned */
};

static int loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	struct lctx *x = ctx;
	__atomic_add_fetch(&x->calls, 1, __ATOMIC_SEQ_CST);
	x->seen_ttl = ld->ttl_ms;
	x->seen_stale = ld->stale_ms;
	if (x->sleep_ms)
		tu_sleep_ms(x->sleep_ms);
	if (x->rc)
		return x->rc;
	if (x->set_ttl)
		ld->ttl_ms = x->new_ttl;
	if (x->set_stale)
		ld->stale_ms = x->new_stale;
	if (x->no_value)
		return 0;
	int rc;
	if (x->val) {
		rc = hc_load_value(ld, x->val, x->val_len ? x->val_len : strlen(x->val));
	} else {
		char v[300];
		int n = snprintf(v, sizeof(v), "v:%.*s", (int)klen, (const char *)key);
		rc = hc_load_value(ld, v, (size_t)n);
	}
	x->lv_rc = rc;
	return x->give_lv_rc ? rc : 0;
}

static int gol(struct hc_cache *c, const char *key, struct lctx *x, const struct hc_load_opts *o,
	       char *buf, size_t cap, size_t *n, struct hc_meta *m)
{
	if (m)
		memset(m, 0xa5, sizeof(*m));
	return hc_get_or_load(c, key, strlen(key), loader, x, o, buf, cap, n, m);
}

/* Is buf[0..n) the default loader value of @key? */
static int is_val(const char *buf, size_t n, const char *key)
{
	char v[300];
	int len = snprintf(v, sizeof(v), "v:%s", key);
	return n == (size_t)len && memcmp(buf, v, n) == 0;
}

static int is_str(const char *buf, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(buf, s, n) == 0;
}

/* ---------------------------------------------------------------------- */

static void test_basic(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-basic", &name);
	struct lctx x = {0};
	struct hc_load_opts o = {.ttl_ms = 5000, .stale_ms = 700};
	char buf[256];
	size_t n = 0;
	struct hc_meta m1, m2;

	uint64_t t0 = tu_now_ns();
	CHECK_RC(gol(c, "basic:1", &x, &o, buf, sizeof(buf), &n, &m1), 0);
	uint64_t t1 = tu_now_ns();
	CHECK(x.calls == 1);
	CHECK(is_val(buf, n, "basic:1"));
	CHECK(m1.source == HC_SRC_ORIGIN);
	CHECK(m1.coalesced == 0);
	CHECK(m1.etag != 0);
	CHECK(m1.ttl_left_ms > 4900 && m1.ttl_left_ms <= 5000);
	/* age within 1 % of the TTL (50 ms) of the time since the set */
	CHECK(m1.age_ms >= 0 && m1.age_ms <= (int64_t)((t1 - t0) / 1000000u) + 51);
	/* the loader is handed the call's options */
	CHECK(x.seen_ttl == 5000 && x.seen_stale == 700);

	tu_sleep_ms(300);
	uint64_t t2 = tu_now_ns();
	CHECK_RC(gol(c, "basic:1", &x, &o, buf, sizeof(buf), &n, &m2), 0);
	uint64_t t3 = tu_now_ns();
	CHECK(x.calls == 1);
	CHECK(is_val(buf, n, "basic:1"));
	CHECK(m2.source == HC_SRC_L1);
	CHECK(m2.coalesced == 0);
	CHECK(m2.etag == m1.etag);
	int64_t lo = (int64_t)((t2 - t1) / 1000000u) - 51,
		hi = (int64_t)((t3 - t0) / 1000000u) + 51;
	CHECK(m2.age_ms >= lo && m2.age_ms <= hi);
	CHECK(m2.age_ms > m1.age_ms);
	if (!(m2.age_ms >= lo && m2.age_ms <= hi))
		fprintf(stderr, "basic: age_ms %lld, expected %lld..%lld\n", (long long)m2.age_ms,
			(long long)lo, (long long)hi);
	/* it is a plain entry of L1 */
	CHECK_RC(hc_get(c, "basic:1", 7, buf, sizeof(buf), &n), 0);
	CHECK(is_val(buf, n, "basic:1"));

	/* a different value, a different ETag */
	struct lctx x2 = {.val = "something else"};
	CHECK_RC(gol(c, "basic:2", &x2, &o, buf, sizeof(buf), &n, &m2), 0);
	CHECK(m2.etag != 0 && m2.etag != m1.etag);

	/* no TTL: never expires, age unknown; NULL opts and NULL meta are fine */
	struct hc_load_opts forever = {0};
	CHECK_RC(gol(c, "basic:3", &x, &forever, buf, sizeof(buf), &n, &m1), 0);
	CHECK(x.calls == 2);
	CHECK(m1.ttl_left_ms == INT64_MAX && m1.age_ms == -1);
	CHECK_RC(gol(c, "basic:4", &x, NULL, buf, sizeof(buf), &n, &m1), 0);
	CHECK(x.calls == 3 && is_val(buf, n, "basic:4"));
	CHECK(m1.ttl_left_ms == INT64_MAX && m1.source == HC_SRC_ORIGIN);
	CHECK_RC(gol(c, "basic:4", &x, NULL, buf, sizeof(buf), &n, NULL), 0);
	CHECK(x.calls == 3 && is_val(buf, n, "basic:4"));

	/* a loader that gives no value stores an empty one */
	struct lctx e = {.no_value = 1};
	n = 99;
	CHECK_RC(gol(c, "basic:empty", &e, &o, buf, sizeof(buf), &n, &m1), 0);
	CHECK(e.calls == 1 && n == 0 && m1.source == HC_SRC_ORIGIN);
	n = 99;
	CHECK_RC(gol(c, "basic:empty", &e, &o, buf, sizeof(buf), &n, &m1), 0);
	CHECK(e.calls == 1 && n == 0 && m1.source == HC_SRC_L1);
	CHECK_RC(hc_get(c, "basic:empty", 11, buf, sizeof(buf), &n), 0);
	CHECK(n == 0);

	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.loads == 5 && st.load.leaders == 5);
	CHECK(st.load.coalesced == 0 && st.load.load_errors == 0 && st.load.uncoalesced == 0);
	CHECK(hist_sum(&st.load) == st.load.loads);
	seg_close(c, name);
}

static void test_ttl_override(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-ttl", &name);
	/* 400 ms: a loaded 2-CPU machine may stall a thread for a good part of 100 */
	struct lctx x = {.set_ttl = 1, .new_ttl = 400};
	struct hc_load_opts o = {.ttl_ms = 10000};
	char buf[256];
	size_t n;
	struct hc_meta m;

	CHECK_RC(gol(c, "ttl:1", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == 1 && x.seen_ttl == 10000);
	CHECK(m.source == HC_SRC_ORIGIN);
	CHECK(m.ttl_left_ms > 350 && m.ttl_left_ms <= 400);
	CHECK_RC(gol(c, "ttl:1", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == 1 && m.source == HC_SRC_L1 && m.ttl_left_ms <= 400);
	tu_sleep_ms(450);
	/* expired: a plain read misses, hc_get_or_load loads again */
	CHECK_RC(hc_get(c, "ttl:1", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	x.set_ttl = 0;
	CHECK_RC(gol(c, "ttl:1", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == 2 && m.source == HC_SRC_ORIGIN && is_val(buf, n, "ttl:1"));
	CHECK(m.ttl_left_ms > 9900 && m.ttl_left_ms <= 10000);

	/* the loader may also give the value a stale window of its own */
	struct lctx y = {.set_ttl = 1, .new_ttl = 50, .set_stale = 1, .new_stale = 5000};
	CHECK_RC(gol(c, "ttl:2", &y, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(y.calls == 1 && y.seen_stale == 0);
	tu_sleep_ms(100);
	CHECK_RC(hc_get(c, "ttl:2", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_get_ex(c, "ttl:2", 5, buf, sizeof(buf), &n, &m, HC_GET_STALE), 0);
	CHECK(m.stale == 1 && m.stale_left_ms > 4000 && is_val(buf, n, "ttl:2"));
	seg_close(c, name);
}

static void test_toosmall(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-small", &name);
	char big[100];
	memset(big, 'q', sizeof(big));
	struct lctx x = {.val = big, .val_len = sizeof(big)};
	struct hc_load_opts o = {.ttl_ms = 10000};
	char buf[256];
	size_t n = 0;
	struct hc_meta m;

	CHECK_RC(gol(c, "small:1", &x, &o, buf, 10, &n, &m), HC_E_TOOSMALL);
	CHECK(n == sizeof(big));
	CHECK(x.calls == 1);
	n = 0;
	CHECK_RC(gol(c, "small:1", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == 1);
	CHECK(n == sizeof(big) && memcmp(buf, big, n) == 0);
	CHECK(m.source == HC_SRC_L1);
	/* exactly the length fits */
	CHECK_RC(gol(c, "small:1", &x, &o, buf, sizeof(big), &n, &m), 0);
	CHECK(x.calls == 1);
	seg_close(c, name);
}

static void test_negative(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-neg", &name);
	struct lctx x = {.rc = HC_E_NOTFOUND};
	struct hc_load_opts o = {.ttl_ms = 10000, .negative_ttl_ms = 300};
	char buf[256];
	size_t n;
	struct hc_meta m;

	uint64_t t0 = tu_now_ns();
	CHECK_RC(gol(c, "neg:1", &x, &o, buf, sizeof(buf), &n, &m), HC_E_NOTFOUND);
	CHECK(x.calls == 1);
	for (int i = 0; i < 3; i++) {
		CHECK_RC(gol(c, "neg:1", &x, &o, buf, sizeof(buf), &n, &m), HC_E_NOTFOUND);
		CHECK(m.source == HC_SRC_NEGATIVE);
	}
	/* even once the origin has it: the negative entry holds for its TTL */
	x.rc = 0;
	CHECK_RC(gol(c, "neg:1", &x, &o, buf, sizeof(buf), &n, &m), HC_E_NOTFOUND);
	CHECK(m.source == HC_SRC_NEGATIVE);
	if (ms_since(t0) < 250)
		CHECK(x.calls == 1);
	CHECK_RC(hc_get(c, "neg:1", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	tu_sleep_ms(350);
	int before = x.calls;
	CHECK_RC(gol(c, "neg:1", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == before + 1 && m.source == HC_SRC_ORIGIN && is_val(buf, n, "neg:1"));

	/* without negative_ttl_ms every call asks the origin */
	struct lctx y = {.rc = HC_E_NOTFOUND};
	struct hc_load_opts o2 = {.ttl_ms = 10000};
	for (int i = 0; i < 3; i++)
		CHECK_RC(gol(c, "neg:2", &y, &o2, buf, sizeof(buf), &n, &m), HC_E_NOTFOUND);
	CHECK(y.calls == 3);

	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	/* "not found" is a load, not a load error */
	CHECK(st.load.loads == (uint64_t)(x.calls + y.calls));
	CHECK(st.load.load_errors == 0);
	CHECK(hist_sum(&st.load) == st.load.loads);
	seg_close(c, name);
}

static void test_errors(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-err", &name);
	char buf[256];
	size_t n;
	struct hc_meta m;
	struct hc_stats st;

	/* an error goes to the caller and is not cached */
	struct lctx x = {.rc = -EIO};
	struct hc_load_opts o = {.ttl_ms = 1000};
	CHECK_RC(gol(c, "err:1", &x, &o, buf, sizeof(buf), &n, &m), -EIO);
	CHECK_RC(gol(c, "err:1", &x, &o, buf, sizeof(buf), &n, &m), -EIO);
	CHECK(x.calls == 2);
	CHECK_RC(hc_get(c, "err:1", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.load_errors == 2 && st.load.loads == 2);

	/* stale-if-error: within error_ms past the TTL the old value is served */
	struct hc_load_opts se = {.ttl_ms = 50, .error_ms = 2000};
	struct lctx ok = {.val = "old"};
	CHECK_RC(gol(c, "sie:1", &ok, &se, buf, sizeof(buf), &n, &m), 0);
	uint64_t t_set = tu_now_ns();
	CHECK(ok.calls == 1);
	/* without error_ms: the error */
	struct hc_load_opts noe = {.ttl_ms = 50};
	CHECK_RC(gol(c, "sie:2", &ok, &noe, buf, sizeof(buf), &n, &m), 0);
	tu_sleep_ms(100);

	struct lctx bad = {.rc = -EIO};
	CHECK_RC(gol(c, "sie:1", &bad, &se, buf, sizeof(buf), &n, &m), 0);
	CHECK(bad.calls == 1);
	CHECK(is_str(buf, n, "old"));
	CHECK(m.source == HC_SRC_STALE);
	CHECK(m.ttl_left_ms < 0);
	CHECK_RC(gol(c, "sie:2", &bad, &noe, buf, sizeof(buf), &n, &m), -EIO);
	CHECK(bad.calls == 2);
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.load_errors == 4);
	CHECK(st.load.stale_served == 1);

	/* once error_ms has passed (counted from the TTL): the error */
	uint64_t el = ms_since(t_set);
	if (el < 50 + 2000 + 100)
		tu_sleep_ms((unsigned)(50 + 2000 + 100 - el));
	CHECK_RC(gol(c, "sie:1", &bad, &se, buf, sizeof(buf), &n, &m), -EIO);
	CHECK(bad.calls == 3);
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.load_errors == 5 && st.load.stale_served == 1);
	CHECK(hist_sum(&st.load) == st.load.loads);
	seg_close(c, name);
}

/* ---------------------------------------------------------------------- */
/* Threads calling at once                                                 */

struct call_arg {
	struct hc_cache *c;
	const char *key;
	struct lctx *x;
	const struct hc_load_opts *o;
	pthread_barrier_t *bar;
	int rc;
	char buf[256];
	size_t n;
	struct hc_meta m;
	uint64_t ns;
};

static void *call_thread(void *p)
{
	struct call_arg *a = p;
	pthread_barrier_wait(a->bar);
	uint64_t t0 = tu_now_ns();
	a->rc = gol(a->c, a->key, a->x, a->o, a->buf, sizeof(a->buf), &a->n, &a->m);
	a->ns = tu_now_ns() - t0;
	return NULL;
}

static void test_swr(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-swr", &name);
	/* a TTL that outlives the checks after the refresh, under valgrind too */
	struct hc_load_opts o = {.ttl_ms = 250, .stale_ms = 5000};
	char buf[256];
	size_t n;
	struct hc_meta m;
	struct lctx old = {.val = "old"};
	CHECK_RC(gol(c, "swr:1", &old, &o, buf, sizeof(buf), &n, &m), 0);
	tu_sleep_ms(300);

	struct lctx fresh = {.val = "new", .sleep_ms = 300};
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 2);
	struct call_arg a[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		a[i] = (struct call_arg){.c = c, .key = "swr:1", .x = &fresh, .o = &o, .bar = &bar};
		REQUIRE(pthread_create(&th[i], NULL, call_thread, &a[i]) == 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);

	CHECK(fresh.calls == 1);
	int refresher = -1, stale = -1;
	for (int i = 0; i < 2; i++) {
		CHECK_RC(a[i].rc, 0);
		if (a[i].m.source == HC_SRC_ORIGIN && is_str(a[i].buf, a[i].n, "new"))
			refresher = i;
		else if (a[i].m.source == HC_SRC_STALE && is_str(a[i].buf, a[i].n, "old"))
			stale = i;
		printf("swr: caller %d: source %d, %.*s, %.1f ms\n", i, a[i].m.source, (int)a[i].n,
		       a[i].buf, a[i].ns / 1e6);
	}
	CHECK(refresher >= 0 && stale >= 0 && refresher != stale);
	if (refresher >= 0 && stale >= 0) {
		CHECK(a[refresher].ns >= 300u * 1000000u);
		CHECK(a[stale].ns < 100u * 1000000u);
		CHECK(a[stale].m.stale == 1 && a[stale].m.ttl_left_ms < 0);
	}
	/*
	 * After the refresh: the new value, fresh, from L1.  The refresh took
	 * 300 ms for a 250 ms TTL, so XFetch would likely recompute it early
	 * (P = e^(-250/300)): this read turns XFetch off.
	 */
	CHECK_RC(hc_get_ex(c, "swr:1", 5, buf, sizeof(buf), &n, &m, 0), 0);
	CHECK(is_str(buf, n, "new") && m.compute_ms >= 299 && m.ttl_left_ms > 0);
	struct hc_load_opts nox = o;
	nox.flags |= HC_LOAD_NO_XFETCH;
	CHECK_RC(gol(c, "swr:1", &fresh, &nox, buf, sizeof(buf), &n, &m), 0);
	CHECK(fresh.calls == 1 && m.source == HC_SRC_L1 && is_str(buf, n, "new"));
	if (m.source != HC_SRC_L1 || fresh.calls != 1)
		fprintf(stderr, "swr: after the refresh: source %d, %d loads\n", m.source,
			fresh.calls);

	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.stale_refreshes == 1);
	CHECK(st.load.stale_served == 1);
	CHECK(st.load.loads == 2);
	CHECK(hist_sum(&st.load) == st.load.loads);
	seg_close(c, name);
}

#define NCO 8

/*
 * HC_LOAD_BACKGROUND: the refresh runs in the handle's refresher thread, so
 * even the caller that wins it returns the stale value at once; the new
 * value lands in the cache when the loader is done.  hc_close with a refresh
 * queued or running neither hangs nor leaves a flight behind.
 */
static void test_background(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-bg", &name);
	struct hc_load_opts o = {.ttl_ms = 50, .stale_ms = 5000, .flags = HC_LOAD_BACKGROUND};
	char buf[256];
	size_t n;
	struct hc_meta m;
	struct lctx old = {.val = "old"};
	CHECK_RC(gol(c, "bg:1", &old, &o, buf, sizeof(buf), &n, &m), 0);
	tu_sleep_ms(80);

	/* the refreshed value lives a minute, so the reads below find it fresh */
	struct lctx fresh = {.val = "new", .sleep_ms = 200, .set_ttl = 1, .new_ttl = 60000};
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = tu_now_ns();
		CHECK_RC(gol(c, "bg:1", &fresh, &o, buf, sizeof(buf), &n, &m), 0);
		uint64_t ms = ms_since(t0);
		CHECK(m.source == HC_SRC_STALE && is_str(buf, n, "old"));
		CHECK(ms < 100); /* the loader sleeps 200 ms in the refresher thread */
	}
	tu_sleep_ms(400);
	CHECK(__atomic_load_n(&fresh.calls, __ATOMIC_SEQ_CST) == 1);
	struct hc_load_opts plain = o;
	plain.flags = HC_LOAD_NO_XFETCH;
	CHECK_RC(gol(c, "bg:1", &fresh, &plain, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_L1 && is_str(buf, n, "new"));
	CHECK(fresh.calls == 1);
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.stale_refreshes == 1 && st.load.stale_served == 3);

	/* close while a refresh runs: it finishes, then the handle goes */
	CHECK_RC(gol(c, "bg:2", &old, &o, buf, sizeof(buf), &n, &m), 0);
	tu_sleep_ms(80);
	struct lctx slow = {.val = "slow", .sleep_ms = 150};
	CHECK_RC(gol(c, "bg:2", &slow, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_STALE);
	tu_sleep_ms(20); /* the refresher has taken it */
	uint64_t t0 = tu_now_ns();
	hc_close(c);
	CHECK(ms_since(t0) < 1000);
	CHECK(slow.calls == 1);
	struct hc_options ro = {0};
	REQUIRE(hc_open(name, &ro, &c) == 0);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0);
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.flights_active == 0);
	seg_close(c, name);
}

/*
 * hc_close right after the call that started the refresher thread: the
 * thread may not have run yet when the handle lets go of it (it once read
 * the handle's cleared pointer and crashed).  Every queued refresh ends,
 * loaded or not, and no flight stays held.
 */
static void test_background_close(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-bgc", &name);
	enum { N = 200 };
	struct hc_set_opts so = {.ttl_ms = 1, .stale_ms = 60000};
	char key[32], buf[64];
	for (int i = 0; i < N; i++) {
		int kl = snprintf(key, sizeof(key), "bgc:%d", i);
		CHECK_RC(hc_set_ex(c, key, (size_t)kl, "old", 3, &so), 0);
	}
	tu_sleep_ms(5);
	struct hc_load_opts o = {.ttl_ms = 60000, .stale_ms = 60000, .flags = HC_LOAD_BACKGROUND};
	struct lctx x = {.val = "new"};
	int stale = 0;
	for (int i = 0; i < N; i++) {
		struct hc_cache *h;
		REQUIRE(hc_open(name, &(struct hc_options){0}, &h) == 0);
		snprintf(key, sizeof(key), "bgc:%d", i);
		size_t n;
		struct hc_meta m;
		CHECK_RC(gol(h, key, &x, &o, buf, sizeof(buf), &n, &m), 0);
		stale += m.source == HC_SRC_STALE;
		hc_close(h);
	}
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	printf("background close: %d stale answers, %d refreshes loaded before their handle "
	       "closed, %u flights active\n",
	       stale, x.calls, st.flights_active);
	CHECK(stale == N);
	CHECK(st.flights_active == 0);
	seg_close(c, name);
}

/*
 * hc_mark_stale (the agent's rule for lost invalidation events): fresh
 * entries become stale at once and keep their stale window, so plain reads
 * miss, hc_get_or_load serves them stale while one refresh runs, and the
 * entries are not lost.
 */
static void test_mark_stale(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-mark", &name);
	char buf[256];
	size_t n;
	struct hc_meta m;
	struct hc_set_opts with = {.ttl_ms = 60000, .stale_ms = 30000};
	struct hc_set_opts plain = {.ttl_ms = 60000};
	CHECK_RC(hc_set_ex(c, "ms:with", 7, "old", 3, &with), 0);
	CHECK_RC(hc_set_ex(c, "ms:plain", 8, "old", 3, &plain), 0);
	CHECK_RC(hc_set(c, "ms:never", 8, "old", 3, 0), 0);
	CHECK(hc_mark_stale(c) == 3);
	CHECK(hc_mark_stale(c) == 0); /* already stale */
	CHECK_RC(hc_get(c, "ms:with", 7, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_get(c, "ms:plain", 8, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_get(c, "ms:never", 8, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_get_ex(c, "ms:with", 7, buf, sizeof(buf), &n, &m, HC_GET_STALE), 0);
	CHECK(m.stale == 1 && m.stale_left_ms > 29000 && is_str(buf, n, "old"));

	/* served stale while the one refresh runs in another thread */
	struct hc_load_opts o = {.ttl_ms = 60000, .stale_ms = 30000, .flags = HC_LOAD_NO_XFETCH};
	struct lctx fresh = {.val = "new", .sleep_ms = 200};
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 2);
	struct call_arg a[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		a[i] = (struct call_arg){
			.c = c, .key = "ms:with", .x = &fresh, .o = &o, .bar = &bar};
		REQUIRE(pthread_create(&th[i], NULL, call_thread, &a[i]) == 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	CHECK(fresh.calls == 1);
	CHECK((a[0].m.source == HC_SRC_STALE) != (a[1].m.source == HC_SRC_STALE));
	CHECK_RC(gol(c, "ms:with", &fresh, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_L1 && is_str(buf, n, "new") && fresh.calls == 1);
	/* without a stale window: a miss, loaded again */
	CHECK_RC(gol(c, "ms:plain", &fresh, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_ORIGIN && fresh.calls == 2);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0);
	seg_close(c, name);
}

static void test_coalesce(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-co", &name);
	struct hc_load_opts o = {.ttl_ms = 10000};
	struct lctx x = {.sleep_ms = 100};
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NCO);
	struct call_arg a[NCO];
	pthread_t th[NCO];
	for (int i = 0; i < NCO; i++) {
		a[i] = (struct call_arg){.c = c, .key = "co:1", .x = &x, .o = &o, .bar = &bar};
		REQUIRE(pthread_create(&th[i], NULL, call_thread, &a[i]) == 0);
	}
	for (int i = 0; i < NCO; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);

	CHECK(x.calls == 1);
	int owners = 0, coalesced = 0, l1 = 0;
	for (int i = 0; i < NCO; i++) {
		CHECK_RC(a[i].rc, 0);
		CHECK(is_val(a[i].buf, a[i].n, "co:1"));
		if (a[i].m.coalesced == 1 && a[i].m.source == HC_SRC_ORIGIN)
			coalesced++;
		else if (a[i].m.coalesced == 0 && a[i].m.source == HC_SRC_ORIGIN)
			owners++;
		else if (a[i].m.coalesced == 0 && a[i].m.source == HC_SRC_L1)
			l1++;
	}
	printf("coalesce: %d owner, %d coalesced, %d L1 hits\n", owners, coalesced, l1);
	CHECK(owners == 1);
	CHECK(owners + coalesced + l1 == NCO);
	CHECK(coalesced >= 1);

	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.leaders == 1);
	CHECK(st.load.loads == 1);
	CHECK(st.load.coalesced == (uint64_t)coalesced);
	CHECK(st.load.uncoalesced == 0);
	CHECK(st.flights_active == 0);
	const struct hc_entity_stats *es = entity(&st, "co");
	CHECK(es != NULL);
	if (es) {
		CHECK(es->load.leaders == 1 && es->load.loads == 1);
		CHECK(es->load.coalesced == (uint64_t)coalesced);
		/* a 100 ms load lands in a bucket whose lower bound is >= 64 us << 10 */
		uint64_t slow = 0;
		for (int i = 11; i < HC_HIST_N; i++)
			slow += es->load.load_hist[i];
		CHECK(slow == 1 && hist_sum(&es->load) == 1);
	}
	seg_close(c, name);
}

/* ---------------------------------------------------------------------- */
/* XFetch                                                                  */

struct xf_run {
	int samples;
	int fires;
	double expected; /* sum of the per-call probabilities */
};

/*
 * One XFetch sample: read the entry's TTL left and compute time, compute
 * the probability exp(-r / (delta * beta)) (0 when @beta <= 0), then call
 * hc_get_or_load once and see whether its loader ran.
 */
static int xf_one(struct hc_cache *c, const char *key, struct lctx *x, const struct hc_load_opts *o,
		  double beta, struct xf_run *r)
{
	char buf[256];
	size_t n;
	struct hc_meta m;
	if (hc_get_ex(c, key, strlen(key), buf, sizeof(buf), &n, &m, 0) != 0)
		return -1;
	if (m.ttl_left_ms < 3 || m.compute_ms == 0)
		return -1;
	double p = beta > 0 ? exp(-(double)m.ttl_left_ms / ((double)m.compute_ms * beta)) : 0;
	int before = x->calls;
	int rc = gol(c, key, x, o, buf, sizeof(buf), &n, &m);
	CHECK_RC(rc, 0);
	int fired = x->calls - before;
	CHECK(fired == 0 || fired == 1);
	r->samples++;
	r->fires += fired;
	r->expected += p;
	return fired;
}

/* Samples on an entry set with hc_set_ex(ttl, compute) before every call. */
static void xf_set_run(struct hc_cache *c, const char *key, uint32_t ttl, uint32_t compute,
		       const struct hc_load_opts *o, double beta, int samples, const char *what)
{
	struct lctx x = {.val = "refreshed"};
	struct xf_run r = {0};
	struct hc_stats s0, s1;
	CHECK_RC(hc_stats(c, &s0), 0);
	uint64_t t0 = tu_now_ns();
	while (r.samples < samples && ms_since(t0) < 3000) {
		struct hc_set_opts so = {.ttl_ms = ttl, .compute_ms = compute};
		CHECK_RC(hc_set_ex(c, key, strlen(key), "orig", 4, &so), 0);
		xf_one(c, key, &x, o, beta, &r);
	}
	CHECK_RC(hc_stats(c, &s1), 0);
	double frac = (double)r.fires / r.samples, want = r.expected / r.samples;
	printf("xfetch %s: %d/%d early (%.3f), formula %.3f\n", what, r.fires, r.samples, frac,
	       want);
	CHECK(r.samples >= samples);
	CHECK(frac > want - 0.1 && frac < want + 0.1);
	if (beta <= 0)
		CHECK(r.fires == 0);
	CHECK(s1.load.early_refreshes - s0.load.early_refreshes == (uint64_t)r.fires);
}

static void test_xfetch(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-xf", &name);
	char buf[256];
	size_t n;
	struct hc_meta m;
	struct hc_stats s0, s1;

	/*
	 * The compute time is measured: a loader that takes 20 ms gives the
	 * entry compute_ms ~20.  With ttl 1000 and beta 1, an early refresh at
	 * 1000 ms left has probability e^-50: never.
	 */
	struct lctx slow = {.sleep_ms = 20};
	struct hc_load_opts o = {.ttl_ms = 1000, .beta = 1.0};
	CHECK_RC(gol(c, "xf:a", &slow, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_ORIGIN);
	CHECK(m.compute_ms >= 19 && m.compute_ms < 500);
	printf("xfetch: loader of 20 ms stored compute_ms %u\n", m.compute_ms);
	CHECK_RC(hc_get_ex(c, "xf:a", 4, buf, sizeof(buf), &n, &m, 0), 0);
	CHECK(m.compute_ms >= 19 && m.compute_ms < 500);
	for (int i = 0; i < 200; i++)
		CHECK_RC(gol(c, "xf:a", &slow, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(slow.calls == 1);

	/*
	 * At ~40 ms left with delta ~20 ms (the loader's own measured time)
	 * and beta 1: P = e^-2 ~ 0.135.  An early refresh stores a fresh
	 * entry with 40 ms left again; an expired one is loaded again (a
	 * miss, not a sample).
	 */
	struct hc_load_opts o40 = {.ttl_ms = 40, .beta = 1.0};
	struct xf_run r = {0};
	CHECK_RC(hc_stats(c, &s0), 0);
	uint64_t t0 = tu_now_ns();
	int resets = 0;
	while (r.samples < 400 && ms_since(t0) < 5000) {
		if (xf_one(c, "xf:b", &slow, &o40, 1.0, &r) < 0) {
			/* absent or nearly expired: load it afresh (not a sample) */
			hc_del(c, "xf:b", 4);
			CHECK_RC(gol(c, "xf:b", &slow, &o40, buf, sizeof(buf), &n, &m), 0);
			resets++;
		}
	}
	CHECK_RC(hc_stats(c, &s1), 0);
	double frac = (double)r.fires / r.samples, want = r.expected / r.samples;
	printf("xfetch delta~20 ttl 40: %d/%d early (%.3f), formula %.3f, %d reloads, %.1f s\n",
	       r.fires, r.samples, frac, want, resets, ms_since(t0) / 1e3);
	CHECK(r.samples >= 400);
	CHECK(frac > want - 0.1 && frac < want + 0.1);
	CHECK(s1.load.early_refreshes - s0.load.early_refreshes == (uint64_t)r.fires);

	/* other points of the curve, with the compute time given at set */
	struct hc_load_opts b1 = {.ttl_ms = 10000, .beta = 1.0};
	xf_set_run(c, "xf:c", 200, 400, &b1, 1.0, 400, "r 200 delta 400 beta 1");
	struct hc_load_opts b2 = {.ttl_ms = 10000, .beta = 2.0};
	xf_set_run(c, "xf:d", 200, 100, &b2, 2.0, 400, "r 200 delta 100 beta 2");
	struct hc_load_opts bdef = {.ttl_ms = 10000};
	xf_set_run(c, "xf:e", 200, 400, &bdef, 1.0, 400, "r 200 delta 400 beta 0 (default 1)");

	/* off: beta < 0, HC_LOAD_NO_XFETCH */
	struct hc_load_opts off1 = {.ttl_ms = 10000, .beta = -1.0};
	xf_set_run(c, "xf:f", 200, 400, &off1, 0, 200, "beta -1");
	struct hc_load_opts off2 = {.ttl_ms = 10000, .beta = 1.0, .flags = HC_LOAD_NO_XFETCH};
	xf_set_run(c, "xf:g", 200, 400, &off2, 0, 200, "HC_LOAD_NO_XFETCH");

	/* the entity's beta applies when opts.beta is 0 */
	CHECK_RC(hc_entity_beta(c, "ent", -1), 0);
	xf_set_run(c, "ent:1", 200, 400, &bdef, 0, 200, "entity beta -1");
	xf_set_run(c, "ent:1", 200, 400, &b1, 1.0, 400, "entity beta -1, opts.beta 1");
	xf_set_run(c, "other:1", 200, 400, &bdef, 1.0, 200, "other entity, default");
	CHECK_RC(hc_entity_beta(c, "ent", 2.0), 0);
	xf_set_run(c, "ent:1", 200, 100, &bdef, 2.0, 400, "entity beta 2");
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	const struct hc_entity_stats *es = entity(&st, "ent");
	CHECK(es != NULL && es->beta == 2.0);
	es = entity(&st, "other");
	CHECK(es != NULL && es->beta == 1.0);
	CHECK_RC(hc_entity_beta(c, "ent", 0), 0);
	xf_set_run(c, "ent:1", 200, 400, &bdef, 1.0, 400, "entity beta reset");
	CHECK_RC(hc_stats(c, &st), 0);
	es = entity(&st, "ent");
	CHECK(es != NULL && es->beta == 1.0);
	CHECK(hist_sum(&st.load) == st.load.loads);
	seg_close(c, name);
}

static void test_jitter(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-jit", &name);
	struct lctx x = {0};
	struct hc_load_opts o = {.ttl_ms = 10000, .jitter_pct = 20};
	char buf[256];
	size_t n;
	struct hc_meta m;
	int64_t lo = INT64_MAX, hi = INT64_MIN;
	int below = 0, above = 0;
	for (int i = 0; i < 200; i++) {
		char k[32];
		snprintf(k, sizeof(k), "jit:%d", i);
		CHECK_RC(gol(c, k, &x, &o, buf, sizeof(buf), &n, &m), 0);
		CHECK(m.source == HC_SRC_ORIGIN);
		if (m.ttl_left_ms < lo)
			lo = m.ttl_left_ms;
		if (m.ttl_left_ms > hi)
			hi = m.ttl_left_ms;
		below += m.ttl_left_ms < 9000;
		above += m.ttl_left_ms >= 9000;
	}
	printf("jitter 20%%: ttl_left %lld..%lld ms, %d below 9000, %d above\n", (long long)lo,
	       (long long)hi, below, above);
	CHECK(x.calls == 200);
	CHECK(lo >= 7990 && hi <= 10000);
	CHECK(hi - lo >= 1000);
	CHECK(below > 0 && above > 0);

	/* no jitter: all the full TTL; 50 is the largest accepted */
	struct hc_load_opts o0 = {.ttl_ms = 10000};
	struct hc_load_opts o50 = {.ttl_ms = 10000, .jitter_pct = 50};
	for (int i = 0; i < 20; i++) {
		char k[32];
		snprintf(k, sizeof(k), "jit0:%d", i);
		CHECK_RC(gol(c, k, &x, &o0, buf, sizeof(buf), &n, &m), 0);
		CHECK(m.ttl_left_ms >= 9990 && m.ttl_left_ms <= 10000);
		snprintf(k, sizeof(k), "jit50:%d", i);
		CHECK_RC(gol(c, k, &x, &o50, buf, sizeof(buf), &n, &m), 0);
		CHECK(m.ttl_left_ms >= 4990 && m.ttl_left_ms <= 10000);
	}
	seg_close(c, name);
}

/* ---------------------------------------------------------------------- */
/* Batches                                                                 */

struct bctx {
	int calls;
	size_t last_n;
	size_t total;
	int whole_rc; /* nonzero: the whole call fails with it */
};

/* Does @k (@kl bytes) contain the string @sub? */
static int has_sub(const char *k, size_t kl, const char *sub)
{
	size_t sl = strlen(sub);
	for (size_t i = 0; i + sl <= kl; i++)
		if (memcmp(k + i, sub, sl) == 0)
			return 1;
	return 0;
}

/* Keys with ":nf" are not found, with ":err" fail with -EIO. */
static int bloader(void *ctx, const struct hc_batch_item *const *items, size_t n,
		   struct hc_load *lds, int *rc)
{
	struct bctx *x = ctx;
	x->calls++;
	x->last_n = n;
	x->total += n;
	if (x->whole_rc)
		return x->whole_rc;
	for (size_t i = 0; i < n; i++) {
		const char *k = items[i]->key;
		int kl = (int)items[i]->klen;
		if (has_sub(k, (size_t)kl, ":nf")) {
			rc[i] = HC_E_NOTFOUND;
		} else if (has_sub(k, (size_t)kl, ":err")) {
			rc[i] = -EIO;
		} else {
			char v[300];
			int vl = snprintf(v, sizeof(v), "v:%.*s", kl, k);
			rc[i] = hc_load_value(&lds[i], v, (size_t)vl);
		}
	}
	return 0;
}

#define NB 100

struct batch {
	char keys[NB][32];
	char bufs[NB][64];
	struct hc_batch_item it[NB];
};

static void batch_prep(struct batch *b, size_t n, const char *prefix)
{
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < n; i++) {
		snprintf(b->keys[i], sizeof(b->keys[i]), "%s%d", prefix, (int)i);
		b->it[i].key = b->keys[i];
		b->it[i].klen = strlen(b->keys[i]);
		b->it[i].buf = b->bufs[i];
		b->it[i].cap = sizeof(b->bufs[i]);
		b->it[i].rc = 12345;
		memset(&b->it[i].meta, 0xa5, sizeof(b->it[i].meta));
	}
}

static void test_many(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-many", &name);
	static struct batch b;
	struct bctx x = {0};
	struct hc_load_opts o = {.ttl_ms = 60000};
	int bad;

	/* 100 misses: one loader call for all of them */
	batch_prep(&b, NB, "mb:");
	CHECK_RC(hc_get_many(c, b.it, NB, bloader, &x, &o), NB);
	CHECK(x.calls == 1 && x.last_n == NB);
	bad = 0;
	for (int i = 0; i < NB; i++)
		bad += b.it[i].rc != 0 || !is_val(b.bufs[i], b.it[i].vlen, b.keys[i]) ||
		       b.it[i].meta.source != HC_SRC_ORIGIN;
	CHECK(bad == 0);

	/* again: all hits */
	batch_prep(&b, NB, "mb:");
	CHECK_RC(hc_get_many(c, b.it, NB, bloader, &x, &o), NB);
	CHECK(x.calls == 1);
	bad = 0;
	for (int i = 0; i < NB; i++)
		bad += b.it[i].rc != 0 || !is_val(b.bufs[i], b.it[i].vlen, b.keys[i]) ||
		       b.it[i].meta.source != HC_SRC_L1;
	CHECK(bad == 0);

	/* 50 present (even) and 50 missing (odd): one call with the 50 */
	memset(&b, 0, sizeof(b));
	batch_prep(&b, NB, "mb:");
	for (int i = 1; i < NB; i += 2) {
		snprintf(b.keys[i], sizeof(b.keys[i]), "mb2:%d", i);
		b.it[i].klen = strlen(b.keys[i]);
	}
	CHECK_RC(hc_get_many(c, b.it, NB, bloader, &x, &o), NB);
	CHECK(x.calls == 2 && x.last_n == 50);
	bad = 0;
	for (int i = 0; i < NB; i++)
		bad += b.it[i].rc != 0 || !is_val(b.bufs[i], b.it[i].vlen, b.keys[i]) ||
		       b.it[i].meta.source != (i % 2 ? HC_SRC_ORIGIN : HC_SRC_L1);
	CHECK(bad == 0);

	/* per-item "not found" and errors */
	batch_prep(&b, 20, "mc:");
	for (int i = 0; i < 20; i++) {
		snprintf(b.keys[i], sizeof(b.keys[i]), "%s:%d",
			 i < 10	  ? "mc:ok"
			 : i < 15 ? "mc:nf"
				  : "mc:err",
			 i);
		b.it[i].klen = strlen(b.keys[i]);
	}
	CHECK_RC(hc_get_many(c, b.it, 20, bloader, &x, &o), 10);
	CHECK(x.calls == 3 && x.last_n == 20);
	for (int i = 0; i < 20; i++) {
		if (i < 10) {
			CHECK_RC(b.it[i].rc, 0);
			CHECK(is_val(b.bufs[i], b.it[i].vlen, b.keys[i]));
		} else if (i < 15) {
			CHECK_RC(b.it[i].rc, HC_E_NOTFOUND);
		} else {
			CHECK_RC(b.it[i].rc, -EIO);
		}
	}
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.load_errors == 5);

	/* an error of the whole loader call goes to every item it loads */
	batch_prep(&b, 6, "md:");
	b.it[0].key = "mb:0"; /* cached: unaffected */
	b.it[0].klen = 4;
	x.whole_rc = -EIO;
	CHECK_RC(hc_get_many(c, b.it, 6, bloader, &x, &o), 1);
	x.whole_rc = 0;
	CHECK(x.calls == 4 && x.last_n == 5);
	CHECK_RC(b.it[0].rc, 0);
	CHECK(is_val(b.bufs[0], b.it[0].vlen, "mb:0"));
	for (int i = 1; i < 6; i++)
		CHECK_RC(b.it[i].rc, -EIO);

	/* a short buffer: that item HC_E_TOOSMALL with its length; the value is cached */
	batch_prep(&b, 3, "me:");
	b.it[1].cap = 2;
	CHECK_RC(hc_get_many(c, b.it, 3, bloader, &x, &o), 2);
	CHECK(x.calls == 5 && x.last_n == 3);
	CHECK_RC(b.it[1].rc, HC_E_TOOSMALL);
	CHECK(b.it[1].vlen == strlen("v:me:1"));
	b.it[1].cap = 64;
	CHECK_RC(hc_get_many(c, b.it, 3, bloader, &x, &o), 3);
	CHECK(x.calls == 5);
	CHECK(is_val(b.bufs[1], b.it[1].vlen, "me:1") && b.it[1].meta.source == HC_SRC_L1);

	/* negative caching per item */
	struct hc_load_opts on = {.ttl_ms = 60000, .negative_ttl_ms = 60000};
	batch_prep(&b, 4, "mf:nf:");
	CHECK_RC(hc_get_many(c, b.it, 4, bloader, &x, &on), 0);
	CHECK(x.calls == 6 && x.last_n == 4);
	batch_prep(&b, 4, "mf:nf:");
	CHECK_RC(hc_get_many(c, b.it, 4, bloader, &x, &on), 0);
	CHECK(x.calls == 6);
	for (int i = 0; i < 4; i++) {
		CHECK_RC(b.it[i].rc, HC_E_NOTFOUND);
		CHECK(b.it[i].meta.source == HC_SRC_NEGATIVE);
	}

	/* bad input */
	batch_prep(&b, 2, "mg:");
	CHECK_RC(hc_get_many(c, b.it, 2, NULL, &x, &o), HC_E_INVAL);
	CHECK_RC(hc_get_many(c, NULL, 2, bloader, &x, &o), HC_E_INVAL);
	CHECK(x.calls == 6);

	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.batch_calls == (uint64_t)x.calls);
	CHECK(st.load.loads == x.total);
	CHECK(st.load.load_errors == 10);
	CHECK(hist_sum(&st.load) == st.load.loads);
	printf("many: %d batch calls, %zu keys loaded\n", x.calls, x.total);
	seg_close(c, name);
}

static void test_invalidate(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-inv", &name);
	char buf[256];
	size_t n;
	struct hc_meta m;

	CHECK_RC(hc_set(c, "inv:1", 5, "x", 1, 0), 0);
	CHECK_RC(hc_invalidate(c, "inv:1", 5), 0);
	CHECK_RC(hc_get(c, "inv:1", 5, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	CHECK_RC(hc_invalidate(c, "inv:1", 5), 0);
	CHECK_RC(hc_invalidate(c, "inv:never", 9), 0);
	CHECK_RC(hc_invalidate(c, "", 0), HC_E_INVAL);
	char longk[HC_KEY_MAX + 1];
	memset(longk, 'k', sizeof(longk));
	CHECK_RC(hc_invalidate(c, longk, sizeof(longk)), HC_E_TOOBIG);

	/* after an invalidation the next hc_get_or_load loads again */
	struct lctx x = {0};
	struct hc_load_opts o = {.ttl_ms = 60000};
	CHECK_RC(gol(c, "inv:2", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK_RC(gol(c, "inv:2", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == 1);
	CHECK_RC(hc_invalidate(c, "inv:2", 5), 0);
	CHECK_RC(gol(c, "inv:2", &x, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == 2 && m.source == HC_SRC_ORIGIN);

	/* write-through sets store in L1 like plain ones (no agent here) */
	struct hc_set_opts so = {.ttl_ms = 60000, .flags = HC_SET_WRITE_THROUGH};
	CHECK_RC(hc_set_ex(c, "inv:wt", 6, "through", 7, &so), 0);
	CHECK_RC(hc_get_ex(c, "inv:wt", 6, buf, sizeof(buf), &n, &m, 0), 0);
	CHECK(is_str(buf, n, "through"));
	CHECK(m.ttl_left_ms > 59000 && !(m.flags & HC_ENTRY_NEGATIVE));
	struct hc_load_opts ow = {.ttl_ms = 60000, .flags = HC_LOAD_WRITE_THROUGH};
	CHECK_RC(gol(c, "inv:wt2", &x, &ow, buf, sizeof(buf), &n, &m), 0);
	CHECK(x.calls == 3);
	CHECK_RC(hc_get(c, "inv:wt2", 7, buf, sizeof(buf), &n), 0);
	CHECK(is_val(buf, n, "inv:wt2"));
	seg_close(c, name);
}

static void test_bad_input(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-bad", &name);
	char buf[256];
	size_t n;
	struct hc_meta m;
	struct lctx x = {0};
	struct hc_load_opts o = {.ttl_ms = 1000};

	CHECK_RC(hc_get_or_load(c, "b:1", 3, NULL, NULL, &o, buf, sizeof(buf), &n, &m), HC_E_INVAL);
	CHECK_RC(hc_get_or_load(c, "b:1", 0, loader, &x, &o, buf, sizeof(buf), &n, &m), HC_E_INVAL);
	char k[HC_KEY_MAX + 1];
	memset(k, 'k', sizeof(k));
	CHECK_RC(hc_get_or_load(c, k, HC_KEY_MAX + 1, loader, &x, &o, buf, sizeof(buf), &n, &m),
		 HC_E_TOOBIG);
	CHECK(x.calls == 0);
	/* 250 bytes is a valid key */
	static char big[HC_KEY_MAX + 8];
	CHECK_RC(hc_get_or_load(c, k, HC_KEY_MAX, loader, &x, &o, big, sizeof(big), &n, &m), 0);
	CHECK(x.calls == 1 && n == HC_KEY_MAX + 2);
	struct hc_load_opts j51 = {.ttl_ms = 1000, .jitter_pct = 51};
	CHECK_RC(gol(c, "b:2", &x, &j51, buf, sizeof(buf), &n, &m), HC_E_INVAL);
	CHECK(x.calls == 1);

	/* a value over the segment's max_value (16384) */
	static char huge[16385];
	memset(huge, 'h', sizeof(huge));
	struct lctx h = {.val = huge, .val_len = sizeof(huge), .give_lv_rc = 1};
	static char out[20000];
	CHECK_RC(gol(c, "b:3", &h, &o, out, sizeof(out), &n, &m), HC_E_TOOBIG);
	CHECK(h.calls == 1);
	CHECK_RC(h.lv_rc, HC_E_TOOBIG);
	CHECK_RC(hc_get(c, "b:3", 3, out, sizeof(out), &n), HC_E_NOTFOUND);
	/* exactly max_value is fine */
	struct lctx h2 = {.val = huge, .val_len = 16384, .give_lv_rc = 1};
	CHECK_RC(gol(c, "b:4", &h2, &o, out, sizeof(out), &n, &m), 0);
	CHECK(h2.lv_rc == 0 && n == 16384);

	CHECK_RC(hc_entity_beta(c, NULL, 1.0), HC_E_INVAL);
	CHECK_RC(hc_entity_beta(c, "an-entity-name-longer-than-31-bytes", 1.0), HC_E_INVAL);
	seg_close(c, name);
}

static void test_stats(void)
{
	const char *name;
	struct hc_cache *c = seg_open("load-stats", &name);
	char buf[256];
	size_t n;
	struct hc_meta m;
	struct hc_load_opts o = {.ttl_ms = 60000};
	struct lctx ok = {0}, err = {.rc = -EIO}, nf = {.rc = HC_E_NOTFOUND};

	for (int i = 0; i < 3; i++) {
		char k[32];
		snprintf(k, sizeof(k), "st:%d", i);
		CHECK_RC(gol(c, k, &ok, &o, buf, sizeof(buf), &n, &m), 0);
		CHECK_RC(gol(c, k, &ok, &o, buf, sizeof(buf), &n, &m), 0); /* hit */
	}
	CHECK_RC(gol(c, "st:err", &err, &o, buf, sizeof(buf), &n, &m), -EIO);
	CHECK_RC(gol(c, "st:nf", &nf, &o, buf, sizeof(buf), &n, &m), HC_E_NOTFOUND);
	CHECK_RC(gol(c, "other:1", &ok, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK_RC(gol(c, "other:2", &ok, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK_RC(gol(c, "noprefix", &ok, &o, buf, sizeof(buf), &n, &m), 0);
	CHECK(ok.calls == 6);
	CHECK_RC(hc_entity_beta(c, "st", 2.5), 0);

	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.load.loads == 8);
	CHECK(st.load.leaders == 8);
	CHECK(st.load.load_errors == 1);
	CHECK(st.load.coalesced == 0 && st.load.takeovers == 0 && st.load.lease_expiries == 0);
	CHECK(st.load.early_refreshes == 0 && st.load.stale_refreshes == 0);
	CHECK(st.load.stale_served == 0 && st.load.batch_calls == 0 && st.load.uncoalesced == 0);
	CHECK(hist_sum(&st.load) == 8);
	/* the origin layer: 6 values, 1 "not found", 1 error; L1 saw the 3 repeats as hits */
	CHECK(st.layer[HC_LAYER_ORIGIN].hits == 6 && st.layer[HC_LAYER_ORIGIN].misses == 1 &&
	      st.layer[HC_LAYER_ORIGIN].errors == 1);
	CHECK(st.layer[HC_LAYER_L1].hits == 3);
	const struct hc_entity_stats *es = entity(&st, "st");
	CHECK(es != NULL);
	if (es) {
		CHECK(es->load.loads == 5 && es->load.leaders == 5 && es->load.load_errors == 1);
		CHECK(hist_sum(&es->load) == 5);
		CHECK(es->beta == 2.5);
	}
	es = entity(&st, "other");
	CHECK(es != NULL);
	if (es) {
		CHECK(es->load.loads == 2 && es->load.leaders == 2 && es->load.load_errors == 0);
		CHECK(hist_sum(&es->load) == 2);
		CHECK(es->beta == 1.0);
	}
	es = entity(&st, "");
	CHECK(es != NULL);
	if (es)
		CHECK(es->load.loads == 1 && hist_sum(&es->load) == 1);
	/* the entities' load counters add up to the total */
	uint64_t sum = 0;
	for (uint32_t i = 0; i < st.nentities && i < HC_MAX_ENTITIES; i++)
		sum += st.entity[i].load.loads;
	CHECK(sum == st.load.loads);
	printf("stats: loads %llu leaders %llu errors %llu\n", (unsigned long long)st.load.loads,
	       (unsigned long long)st.load.leaders, (unsigned long long)st.load.load_errors);
	seg_close(c, name);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_basic();
	test_ttl_override();
	test_toosmall();
	test_negative();
	test_errors();
	test_swr();
	test_background();
	test_background_close();
	test_mark_stale();
	test_coalesce();
	test_xfetch();
	test_jitter();
	test_many();
	test_invalidate();
	test_bad_input();
	test_stats();
	return tu_done("test_load");
}
