/*
 * loadcases.c - the loading cases of hostcache-bench: what hc_get_or_load
 * costs on a hit, and what its single-flight saves when many callers miss
 * the same keys at once.
 *
 *   load_hit       hc_get_or_load on fresh L1 hits against hc_get on the
 *                  same 1,000 hot keys (20-byte keys, 100-byte values,
 *                  stored beforehand with hc_set_ex: TTL 1 h, compute_ms 50
 *                  as a 50 ms loader would have left them).  Four APIs on
 *                  the same keys, one process, one thread:
 *                    hc_get               the baseline
 *                    hc_get_ex            with meta and HC_GET_STALE |
 *                                         HC_GET_NEGATIVE: the lookup
 *                                         hc_get_or_load makes inside
 *                    hc_get_or_load       ttl_ms set, XFetch on (beta 0:
 *                                         the entity's, i.e. 1.0)
 *                    hc_get_or_load_nox   the same with beta -1 (XFetch
 *                                         off), to separate XFetch's cost
 *                  Timed like the get cases: BATCH calls per sample (keys
 *                  formatted before the clock starts), in LH_ROUNDS rounds
 *                  that run the APIs back to back (the order rotating), each
 *                  API running --seconds in all.  p50_ns is the median of
 *                  the rounds' median batch (p50_min/p50_max: the extreme
 *                  rounds), p99_ns is over every batch.  diff_ns and ratio
 *                  compare with hc_get's p50 of the same round (median over
 *                  the rounds), diff_vs_get_ex_ns with hc_get_ex's: pairing
 *                  within a round keeps a burst of other work on the host
 *                  out of the difference.  loader_calls must be 0 (a fresh
 *                  hit this far from expiry never loads).
 *
 *   stampede       ST_PROCS worker processes x ST_THREADS threads = 64
 *                  callers ask for ONE missing key at the same instant (a
 *                  futex barrier in a MAP_SHARED page releases them all);
 *                  the loader sleeps 50 ms (a database query) and counts its
 *                  calls in shared memory.  A new key every stampede.
 *                    origin_calls       loader calls, all stampedes; per
 *                                       stampede it must be 1 (hostcache)
 *                    wake_p50_us/p99    for every caller that waited on
 *                                       another's load: its return minus the
 *                                       moment that loader returned (a
 *                                       CLOCK_MONOTONIC stamp taken just
 *                                       before the loader's return)
 *                    owner_us           the loading caller's own return
 *                                       minus its loader's return (publish)
 *                    late               callers that found the value already
 *                                       stored (they arrived after the load)
 *                    spread_us          median over stampedes of the time
 *                                       between the first and the last
 *                                       caller's call
 *                  The baseline (system=per_process) is the best a cache
 *                  inside each worker process can do: one map per process,
 *                  shared by its threads under a pthread mutex, and
 *                  single-flight inside the process (the first thread to
 *                  miss loads, the others wait on the entry's condition
 *                  variable).  It calls the loader once per process, so
 *                  ST_PROCS times per stampede.  ratio = hostcache origin
 *                  calls / per_process origin calls (target 1/ST_PROCS);
 *                  wake_ratio = hostcache wake p50 / per_process wake p50.
 *
 *   stampede_keys  the same 64 callers, SK_KEYS distinct missing keys, each
 *                  caller asking for all of them in its own random order;
 *                  the loader sleeps 1 ms.  origin_calls per round must be
 *                  SK_KEYS (hostcache) against ~ST_PROCS * SK_KEYS for the
 *                  per-process baseline; dup_keys counts keys loaded more
 *                  than once in a round, wall_ms is first call to last
 *                  return (median round; wall_ms_min/max the others).
 *
 * The stampede cases also report the segment's load counters (hc_stats
 * .load: leaders, coalesced, takeovers, lease_expiries, uncoalesced) so a
 * flight that went wrong shows up as a number.  Every returned value is
 * compared with the expected one; a wrong value or an unexpected error
 * stops the benchmark.
 */
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "rng.h"

#define LH_KEYS 1000
#define LH_TTL_MS 3600000u /* the hot keys' TTL: 1 h */
#define LH_COMPUTE_MS 50u  /* their XFetch delta */
#define LH_ROUNDS 9	   /* alternating rounds */
#define ST_PROCS 4	   /* worker processes */
#define ST_THREADS 16	   /* threads per worker */
#define ST_CALLERS (ST_PROCS * ST_THREADS)
#define ST_MAX_ROUNDS 64		/* stampedes per system */
#define ST_LOAD_MS 50			/* stampede loader: one slow query */
#define SK_KEYS 1000			/* stampede_keys: keys per round */
#define SK_MAX_ROUNDS 8			/* stampede_keys rounds per system */
#define SK_LOAD_US 1000			/* stampede_keys loader */
#define LOAD_TTL_MS 60000u		/* TTL of the loaded values */
#define ONE_BASE UINT64_C(0x100000000)	/* key ids of the stampede case */
#define KEYS_BASE UINT64_C(0x200000000) /* key ids of the stampede_keys case */
#define LMAP_CAP 16384			/* per-process baseline map: > every key of a run */

/* ---------------------------------------------------------------------- */
/* Case load_hit                                                           */

enum hit_api { API_GET, API_GET_EX, API_LOAD, API_LOAD_NOX, API_N };
static const char *const api_name[API_N] = {"hc_get", "hc_get_ex", "hc_get_or_load",
					    "hc_get_or_load_nox"};

static uint64_t hit_loader_calls;

/* The id make_key() formatted into @key. */
static uint64_t key_id(const char *key)
{
	uint64_t id = 0;
	for (int i = 4; i < KEY_LEN; i++) {
		char ch = key[i];
		id = id << 4 | (uint64_t)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
	}
	return id;
}

/* The hot keys are all stored: a call of this loader is an early refresh. */
static int hit_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx;
	uint8_t val[VAL_LEN];
	if (klen != KEY_LEN)
		die("load_hit: loader got a %zu-byte key", klen);
	hit_loader_calls++;
	make_value(key_id(key), val);
	return hc_load_value(ld, val, VAL_LEN);
}

struct hit_samples {
	float *v;
	uint64_t n, cap;
	uint64_t ops, timed_ns;
	double round_p50[LH_ROUNDS];
};

static void hit_push(struct hit_samples *s, float x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 65536;
		float *nv = realloc(s->v, s->cap * sizeof(*nv));
		if (!nv)
			die("out of memory for load_hit samples");
		s->v = nv;
	}
	s->v[s->n++] = x;
}

/* One timed batch of @api over keys[]; returns its ns. */
static uint64_t hit_batch(struct hc_cache *c, enum hit_api api, const struct hc_load_opts *opts,
			  char keys[BATCH][KEY_LEN], uint8_t bufs[][VAL_CAP], size_t *vl,
			  struct hc_meta *metas, int *rcs)
{
	uint64_t t0 = now_ns();
	switch (api) {
	case API_GET:
		for (int j = 0; j < BATCH; j++)
			rcs[j] = hc_get(c, keys[j], KEY_LEN, bufs[j % VERIFY_PER_BATCH], VAL_CAP,
					&vl[j % VERIFY_PER_BATCH]);
		break;
	case API_GET_EX:
		for (int j = 0; j < BATCH; j++)
			rcs[j] = hc_get_ex(c, keys[j], KEY_LEN, bufs[j % VERIFY_PER_BATCH], VAL_CAP,
					   &vl[j % VERIFY_PER_BATCH], &metas[j % VERIFY_PER_BATCH],
					   HC_GET_STALE | HC_GET_NEGATIVE);
		break;
	case API_LOAD:
	case API_LOAD_NOX:
		for (int j = 0; j < BATCH; j++)
			rcs[j] = hc_get_or_load(c, keys[j], KEY_LEN, hit_loader, NULL, opts,
						bufs[j % VERIFY_PER_BATCH], VAL_CAP,
						&vl[j % VERIFY_PER_BATCH],
						&metas[j % VERIFY_PER_BATCH]);
		break;
	default:
		break;
	}
	return now_ns() - t0;
}

/* Run @api for @seconds in batches; samples and counters into @s. */
static uint64_t hit_run(struct hc_cache *c, enum hit_api api, double seconds, int round,
			uint64_t *rng, struct hit_samples *s)
{
	static char keys[BATCH][KEY_LEN];
	static uint8_t bufs[VERIFY_PER_BATCH][VAL_CAP];
	size_t vl[VERIFY_PER_BATCH];
	struct hc_meta metas[VERIFY_PER_BATCH];
	uint64_t ids[BATCH], verified = 0;
	int rcs[BATCH];
	struct hc_load_opts opts = {.ttl_ms = LOAD_TTL_MS, .beta = api == API_LOAD_NOX ? -1.0 : 0};
	uint64_t start = s->n, end = now_ns() + (uint64_t)(seconds * 1e9);
	for (;;) {
		for (int j = 0; j < BATCH; j++) {
			ids[j] = rng_below(rng, LH_KEYS);
			make_key(ids[j], keys[j]);
		}
		uint64_t ns = hit_batch(c, api, &opts, keys, bufs, vl, metas, rcs);
		for (int j = 0; j < BATCH; j++)
			if (rcs[j])
				die("load_hit: %s of key %" PRIu64 ": %s", api_name[api], ids[j],
				    hc_strerror(rcs[j]));
		for (int j = BATCH - VERIFY_PER_BATCH; j < BATCH; j++) {
			int k = j % VERIFY_PER_BATCH;
			if (!value_ok(ids[j], bufs[k], vl[k]))
				die("load_hit: %s: key %" PRIu64 " returned a wrong value",
				    api_name[api], ids[j]);
			if (api != API_GET && (metas[k].source != HC_SRC_L1 || metas[k].stale))
				die("load_hit: %s: key %" PRIu64 " came from source %u (stale %u)",
				    api_name[api], ids[j], metas[k].source, metas[k].stale);
			verified++;
		}
		hit_push(s, (float)ns / BATCH);
		s->ops += BATCH;
		s->timed_ns += ns;
		if (now_ns() >= end)
			break;
	}
	/* this round's median, for the spread between rounds */
	uint64_t n = s->n - start;
	float *tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		die("out of memory");
	memcpy(tmp, s->v + start, n * sizeof(*tmp));
	double p50, p99;
	percentiles(tmp, n, &p50, &p99);
	free(tmp);
	if (round >= 0)
		s->round_p50[round] = p50;
	return verified;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The median of LH_ROUNDS values (sorted in place), and their extremes. */
static double median_rounds(double *v, double *lo, double *hi)
{
	qsort(v, LH_ROUNDS, sizeof(*v), cmp_dbl);
	if (lo)
		*lo = v[0];
	if (hi)
		*hi = v[LH_ROUNDS - 1];
	return LH_ROUNDS % 2 ? v[LH_ROUNDS / 2] : (v[LH_ROUNDS / 2 - 1] + v[LH_ROUNDS / 2]) / 2;
}

/* Median over the rounds of @a's p50 against @b's in the same round. */
static double paired(const struct hit_samples *s, int a, int b, bool ratio)
{
	double v[LH_ROUNDS];
	for (int r = 0; r < LH_ROUNDS; r++)
		v[r] = ratio ? s[a].round_p50[r] / s[b].round_p50[r]
			     : s[a].round_p50[r] - s[b].round_p50[r];
	return median_rounds(v, NULL, NULL);
}

void case_load_hit(const struct cfg *cfg)
{
	char name[96];
	snprintf(name, sizeof(name), "bench-%d-loadhit", (int)main_pid);
	struct hc_cache *c;
	struct hc_options o = {.size = 64 * MIB, .flags = HC_CREATE | HC_EXCL, .max_value = 4096};
	int rc = hc_open(name, &o, &c);
	if (rc)
		die("hc_open %s: %s", name, hc_strerror(rc));
	register_name(name, false);

	char key[KEY_LEN];
	uint8_t val[VAL_LEN];
	struct hc_set_opts so = {.ttl_ms = LH_TTL_MS, .compute_ms = LH_COMPUTE_MS};
	for (uint64_t id = 0; id < LH_KEYS; id++) {
		make_key(id, key);
		make_value(id, val);
		if ((rc = hc_set_ex(c, key, KEY_LEN, val, VAL_LEN, &so)))
			die("load_hit: populate: %s", hc_strerror(rc));
	}
	static struct hc_stats st0, st1;
	if ((rc = hc_stats(c, &st0)))
		die("hc_stats: %s", hc_strerror(rc));

	fprintf(stderr, "# load_hit: %d keys, %d rounds of %.2f s per API\n", LH_KEYS, LH_ROUNDS,
		cfg->seconds / LH_ROUNDS);
	struct hit_samples s[API_N];
	memset(s, 0, sizeof(s));
	uint64_t rng = 0x6c6f61645f686974, verified = 0;
	/* warm-up, not counted: 20 ms of each API */
	for (int a = 0; a < API_N; a++) {
		struct hit_samples w = {0};
		hit_run(c, (enum hit_api)a, 0.02, -1, &rng, &w);
		free(w.v);
	}
	for (int r = 0; r < LH_ROUNDS; r++) {
		for (int k = 0; k < API_N; k++) {
			int a = (k + r) % API_N;
			verified += hit_run(c, (enum hit_api)a, cfg->seconds / LH_ROUNDS, r, &rng,
					    &s[a]);
		}
	}
	if ((rc = hc_stats(c, &st1)))
		die("hc_stats: %s", hc_strerror(rc));
	hc_close(c);
	release_name(name, false);

	/*
	 * Other work on the host comes in bursts that can slow one round of one
	 * API: p50_ns is the median of the rounds' medians, and every
	 * comparison is made within a round (the APIs of a round run back to
	 * back) and then the median taken over the rounds.
	 */
	double p50[API_N], p99[API_N], lo[API_N], hi[API_N];
	for (int a = 0; a < API_N; a++) {
		double unused;
		percentiles(s[a].v, s[a].n, &unused, &p99[a]);
		free(s[a].v);
		double v[LH_ROUNDS];
		for (int r = 0; r < LH_ROUNDS; r++)
			v[r] = s[a].round_p50[r];
		p50[a] = median_rounds(v, &lo[a], &hi[a]);
	}
	for (int a = 0; a < API_N; a++) {
		char cmp[96] = " ratio=- diff_ns=-";
		if (a != API_GET)
			snprintf(cmp, sizeof(cmp), " ratio=%.3f diff_ns=%+.1f",
				 paired(s, a, API_GET, true), paired(s, a, API_GET, false));
		char extra[192] = "";
		if (a == API_LOAD || a == API_LOAD_NOX)
			snprintf(extra, sizeof(extra),
				 " xfetch=%s beta=%s compute_ms=%u diff_vs_get_ex_ns=%+.1f"
				 " loader_calls=%" PRIu64 " early_refreshes=%" PRIu64,
				 a == API_LOAD ? "on" : "off", a == API_LOAD ? "1" : "-1",
				 LH_COMPUTE_MS, paired(s, a, API_GET_EX, false), hit_loader_calls,
				 st1.load.early_refreshes - st0.load.early_refreshes);
		printf("SUMMARY case=load_hit system=%s procs=1 ops=%" PRIu64
		       " mops=%.3f p50_ns=%.1f p99_ns=%.1f%s keys=%d p50_min=%.1f p50_max=%.1f"
		       " rounds=%d%s\n",
		       api_name[a], s[a].ops,
		       s[a].timed_ns ? (double)s[a].ops * 1e3 / (double)s[a].timed_ns : 0, p50[a],
		       p99[a], cmp, LH_KEYS, lo[a], hi[a], LH_ROUNDS, extra);
	}
	fprintf(stderr, "# load_hit: XFetch costs %+.1f ns per hit; %" PRIu64 " values verified\n",
		paired(s, API_LOAD, API_LOAD_NOX, false), verified);
	fflush(stdout);
}

/* ---------------------------------------------------------------------- */
/* Cases stampede and stampede_keys                                        */

enum st_sys { ST_HC, ST_LOCAL, ST_NSYS };
static const char *const st_sys_name[ST_NSYS] = {"hostcache", "per_process"};

/* One call of the stampede case, as its caller saw it. */
struct call_rec {
	uint64_t t0, t1;   /* CLOCK_MONOTONIC at the call and at its return */
	uint8_t coalesced; /* waited on another caller's load */
	uint8_t loaded;	   /* this caller's loader ran */
	uint8_t source;	   /* enum hc_source */
	uint8_t pad[5];
};

/* One caller's round of the stampede_keys case. */
struct thr_rec {
	uint64_t t0, t1;
	uint32_t loaded, coalesced, hits, pad;
};

/* What the workers of one group report through (MAP_SHARED). */
struct st_shared {
	uint32_t gen;	  /* futex: rounds 0..gen-1 are released */
	uint32_t arrived; /* callers that reached the barrier, all rounds */
	uint32_t done;	  /* callers that finished, all rounds */
	uint32_t pad;
	uint32_t calls[SK_MAX_ROUNDS * SK_KEYS];  /* loader calls per key */
	uint64_t ret_ns[ST_MAX_ROUNDS][ST_PROCS]; /* stampede: a process's loader return */
	struct call_rec rec[ST_MAX_ROUNDS][ST_CALLERS];
	struct thr_rec thr[SK_MAX_ROUNDS][ST_CALLERS];
};
_Static_assert(SK_MAX_ROUNDS *SK_KEYS >= ST_MAX_ROUNDS, "calls[] too small");

/* One system's run of one case: ST_PROCS workers of ST_THREADS callers. */
struct group {
	enum st_sys sys;
	bool keys;	     /* stampede_keys (SK_KEYS keys per round), else one key */
	int rounds;	     /* stampedes */
	uint32_t nkeys;	     /* keys per round */
	uint64_t base;	     /* key id of round 0's first key */
	uint64_t load_ns;    /* the loader's sleep */
	const char *name;    /* the hostcache segment */
	struct hc_cache *hc; /* the parent's handle: only closed in a worker */
	struct st_shared *sh;
};

/* A caller: one thread of one worker. */
struct caller {
	const struct group *g;
	struct hc_cache *hc; /* the worker's own handle */
	int proc, idx;	     /* idx = proc * ST_THREADS + thread */
	uint32_t loaded;     /* loader runs during the current call */
};

static void futex_wait_u32(uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void futex_wake_all(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The origin: count the call, sleep like a query, give the value. */
static void origin(struct caller *x, uint64_t id, uint8_t *val)
{
	const struct group *g = x->g;
	uint64_t k = id - g->base;
	if (id < g->base || k >= (uint64_t)g->rounds * g->nkeys)
		die("loader: key %" PRIu64 " is not one of this case's", id);
	__atomic_add_fetch(&g->sh->calls[k], 1, __ATOMIC_RELAXED);
	struct timespec ts = {.tv_sec = (time_t)(g->load_ns / 1000000000u),
			      .tv_nsec = (long)(g->load_ns % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
	make_value(id, val);
	x->loaded++;
}

/* The loader returns now: stamp it (stampede: its process's first load). */
static void origin_return(struct caller *x, uint64_t id)
{
	const struct group *g = x->g;
	if (g->keys)
		return;
	uint64_t zero = 0, now = now_ns();
	__atomic_compare_exchange_n(&g->sh->ret_ns[id - g->base][x->proc], &zero, now, false,
				    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

static int st_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	struct caller *x = ctx;
	uint8_t val[VAL_LEN];
	if (klen != KEY_LEN)
		die("loader: got a %zu-byte key", klen);
	uint64_t id = key_id(key);
	origin(x, id, val);
	int rc = hc_load_value(ld, val, VAL_LEN);
	if (rc)
		die("hc_load_value: %s", hc_strerror(rc));
	origin_return(x, id);
	return 0;
}

static int call_hc(struct caller *x, const char *key, uint8_t *buf, size_t *vlen, struct hc_meta *m)
{
	static const struct hc_load_opts opts = {.ttl_ms = LOAD_TTL_MS};
	return hc_get_or_load(x->hc, key, KEY_LEN, st_loader, x, &opts, buf, VAL_CAP, vlen, m);
}

/*
 * The baseline: a cache inside each worker process, shared by its threads
 * under one mutex, with single-flight inside the process: the first thread
 * to miss a key loads it while the others wait on the entry's condition
 * variable.  Open addressing, never full (LMAP_CAP > the keys of a run).
 */
enum { L_EMPTY, L_LOADING, L_READY };

struct lentry {
	pthread_cond_t cv;
	uint8_t state;
	char key[KEY_LEN];
	uint8_t val[VAL_LEN];
};

static struct {
	pthread_mutex_t mu;
	struct lentry *e;
} lmap;

static void lmap_init(void)
{
	pthread_mutex_init(&lmap.mu, NULL);
	lmap.e = calloc(LMAP_CAP, sizeof(*lmap.e));
	if (!lmap.e)
		die("out of memory for the per-process map");
	for (uint32_t i = 0; i < LMAP_CAP; i++)
		pthread_cond_init(&lmap.e[i].cv, NULL);
}

static int call_local(struct caller *x, const char *key, uint8_t *buf, size_t *vlen,
		      struct hc_meta *m)
{
	memset(m, 0, sizeof(*m));
	uint32_t i = (uint32_t)hc_hash64(key, KEY_LEN, 0) & (LMAP_CAP - 1);
	pthread_mutex_lock(&lmap.mu);
	struct lentry *e;
	for (;; i = (i + 1) & (LMAP_CAP - 1)) {
		e = &lmap.e[i];
		if (e->state == L_EMPTY || !memcmp(e->key, key, KEY_LEN))
			break;
	}
	if (e->state == L_EMPTY) {
		memcpy(e->key, key, KEY_LEN);
		e->state = L_LOADING;
		pthread_mutex_unlock(&lmap.mu);
		uint8_t val[VAL_LEN];
		uint64_t id = key_id(key);
		origin(x, id, val);
		origin_return(x, id);
		pthread_mutex_lock(&lmap.mu);
		memcpy(e->val, val, VAL_LEN);
		e->state = L_READY;
		memcpy(buf, e->val, VAL_LEN);
		pthread_mutex_unlock(&lmap.mu);
		pthread_cond_broadcast(&e->cv);
		m->source = HC_SRC_ORIGIN;
	} else {
		m->source = HC_SRC_L1;
		if (e->state == L_LOADING) {
			m->source = HC_SRC_ORIGIN;
			m->coalesced = 1;
			while (e->state == L_LOADING)
				pthread_cond_wait(&e->cv, &lmap.mu);
		}
		memcpy(buf, e->val, VAL_LEN);
		pthread_mutex_unlock(&lmap.mu);
	}
	*vlen = VAL_LEN;
	return 0;
}

/* One call: ask for key @id, check the answer. */
static void st_call(struct caller *x, uint64_t id, struct hc_meta *m)
{
	char key[KEY_LEN];
	uint8_t buf[VAL_CAP];
	size_t vlen = 0;
	make_key(id, key);
	x->loaded = 0;
	int rc = x->g->sys == ST_HC ? call_hc(x, key, buf, &vlen, m)
				    : call_local(x, key, buf, &vlen, m);
	if (rc)
		die("%s: get_or_load of key %" PRIu64 ": %s", st_sys_name[x->g->sys], id,
		    hc_strerror(rc));
	if (!value_ok(id, buf, vlen))
		die("%s: key %" PRIu64 " returned a wrong value (%zu bytes)",
		    st_sys_name[x->g->sys], id, vlen);
}

static void *caller_main(void *arg)
{
	struct caller *x = arg;
	const struct group *g = x->g;
	struct st_shared *sh = g->sh;
	uint32_t *order = NULL;
	if (g->keys && !(order = malloc(g->nkeys * sizeof(*order))))
		die("out of memory");
	if (g->sys == ST_HC) {
		/* the first call claims this thread's slot: not measured */
		char key[KEY_LEN];
		uint8_t buf[VAL_CAP];
		size_t vlen;
		make_key(0, key);
		int rc = hc_get(x->hc, key, KEY_LEN, buf, VAL_CAP, &vlen);
		if (rc && rc != HC_E_NOTFOUND)
			die("first get: %s", hc_strerror(rc));
	}
	for (int r = 0; r < g->rounds; r++) {
		if (g->keys) {
			/* this caller's order of the round's keys, the same for both systems */
			uint64_t rng = UINT64_C(0x6b657973) ^
				       UINT64_C(0x9e3779b97f4a7c15) *
					       (uint64_t)(r * ST_CALLERS + x->idx + 1);
			for (uint32_t i = 0; i < g->nkeys; i++)
				order[i] = i;
			for (uint32_t i = g->nkeys - 1; i > 0; i--) {
				uint32_t j = (uint32_t)rng_below(&rng, i + 1);
				uint32_t t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
		}
		__atomic_add_fetch(&sh->arrived, 1, __ATOMIC_ACQ_REL);
		while (__atomic_load_n(&sh->gen, __ATOMIC_ACQUIRE) <= (uint32_t)r)
			futex_wait_u32(&sh->gen, (uint32_t)r);

		struct hc_meta m;
		if (!g->keys) {
			struct call_rec *cr = &sh->rec[r][x->idx];
			uint64_t id = g->base + (uint64_t)r;
			cr->t0 = now_ns();
			st_call(x, id, &m);
			cr->t1 = now_ns();
			cr->coalesced = m.coalesced;
			cr->loaded = x->loaded > 0;
			cr->source = m.source;
		} else {
			struct thr_rec *tr = &sh->thr[r][x->idx];
			uint64_t first = g->base + (uint64_t)r * g->nkeys;
			tr->t0 = now_ns();
			for (uint32_t i = 0; i < g->nkeys; i++) {
				st_call(x, first + order[i], &m);
				tr->loaded += x->loaded > 0;
				tr->coalesced += m.coalesced && !x->loaded;
				tr->hits += !m.coalesced && !x->loaded;
			}
			tr->t1 = now_ns();
		}
		__atomic_add_fetch(&sh->done, 1, __ATOMIC_ACQ_REL);
	}
	free(order);
	return NULL;
}

__attribute__((noreturn)) static void group_worker(struct group *g, int proc)
{
	struct hc_cache *hc = NULL;
	if (g->sys == ST_HC) {
		/* an inherited handle may only be closed; attach again */
		hc_close(g->hc);
		int rc = hc_open(g->name, NULL, &hc);
		if (rc)
			die("hc_open %s: %s", g->name, hc_strerror(rc));
	} else {
		lmap_init();
	}
	pthread_t th[ST_THREADS];
	static struct caller cs[ST_THREADS];
	for (int t = 0; t < ST_THREADS; t++) {
		cs[t] = (struct caller){
			.g = g, .hc = hc, .proc = proc, .idx = proc * ST_THREADS + t};
		int rc = pthread_create(&th[t], NULL, caller_main, &cs[t]);
		if (rc)
			die("pthread_create: %s", strerror(rc));
	}
	for (int t = 0; t < ST_THREADS; t++)
		pthread_join(th[t], NULL);
	hc_close(hc);
	_exit(0);
}

/* Wait until *@ctr reaches @target, stopping the benchmark if a worker dies. */
static void group_wait(const struct group *g, pid_t *pids, uint32_t *ctr, uint32_t target,
		       const char *what)
{
	uint64_t deadline = now_ns() + UINT64_C(60000000000);
	while (__atomic_load_n(ctr, __ATOMIC_ACQUIRE) < target) {
		bool dead = now_ns() > deadline;
		for (int p = 0; p < ST_PROCS && !dead; p++) {
			int status;
			if (pids[p] > 0 && waitpid(pids[p], &status, WNOHANG) == pids[p]) {
				if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
					pids[p] = 0; /* done with every round */
					continue;
				}
				fprintf(stderr, "hostcache-bench: %s worker %d %s %d\n",
					st_sys_name[g->sys], p,
					WIFSIGNALED(status) ? "killed by signal" : "exited with",
					WIFSIGNALED(status) ? WTERMSIG(status)
							    : WEXITSTATUS(status));
				pids[p] = -1;
				dead = true;
			}
		}
		if (dead) {
			for (int p = 0; p < ST_PROCS; p++) {
				if (pids[p] > 0) {
					kill(pids[p], SIGKILL);
					waitpid(pids[p], NULL, 0);
				}
			}
			die("%s: workers failed or timed out waiting for the %s",
			    st_sys_name[g->sys], what);
		}
		struct timespec ts = {0, 500000};
		nanosleep(&ts, NULL);
	}
}

/* Fork the workers, release them g->rounds times, wait for them. */
static void group_run(struct group *g)
{
	struct st_shared *sh = g->sh;
	memset(sh, 0, sizeof(*sh));
	fflush(stdout);
	fflush(stderr);
	pid_t pids[ST_PROCS];
	for (int p = 0; p < ST_PROCS; p++) {
		pids[p] = fork();
		if (pids[p] < 0)
			die("fork: %s", strerror(errno));
		if (pids[p] == 0)
			group_worker(g, p);
	}
	for (int r = 0; r < g->rounds; r++) {
		group_wait(g, pids, &sh->arrived, (uint32_t)(r + 1) * ST_CALLERS, "barrier");
		__atomic_store_n(&sh->gen, (uint32_t)r + 1, __ATOMIC_RELEASE);
		futex_wake_all(&sh->gen);
		group_wait(g, pids, &sh->done, (uint32_t)(r + 1) * ST_CALLERS, "round");
	}
	bool failed = false;
	for (int p = 0; p < ST_PROCS; p++) {
		int status;
		if (pids[p] == 0)
			continue; /* reaped by group_wait: exited 0 */
		if (waitpid(pids[p], &status, 0) < 0)
			die("waitpid: %s", strerror(errno));
		failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	}
	if (failed)
		die("%s: a worker failed", st_sys_name[g->sys]);
}

/* What one system's run of a stampede case came to. */
struct st_result {
	uint64_t calls;			/* loader calls, all rounds */
	uint32_t calls_min, calls_max;	/* per round */
	uint64_t waiters, late, owners; /* stampede: callers by role */
	uint64_t bad_wakes;		/* waiters that returned before any loader did */
	double wake_p50, wake_p99, wake_max, owner_p50, spread_p50, spread_max; /* us */
	uint64_t dup_keys, missed_keys;						/* stampede_keys */
	double wall_ms, wall_min, wall_max;
	uint64_t loaded, coalesced, hits;
	bool have_stats;
	struct hc_load_stats ld; /* the segment's counters over the run */
};

static double max_of(const float *v, uint64_t n)
{
	double m = 0;
	for (uint64_t i = 0; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static void analyse_one(const struct group *g, struct st_result *res)
{
	const struct st_shared *sh = g->sh;
	float *wake = malloc((size_t)g->rounds * ST_CALLERS * sizeof(*wake));
	float *own = malloc((size_t)g->rounds * ST_CALLERS * sizeof(*own));
	float *spread = malloc((size_t)g->rounds * sizeof(*spread));
	if (!wake || !own || !spread)
		die("out of memory");
	uint64_t nw = 0, no = 0;
	res->calls_min = UINT32_MAX;
	for (int r = 0; r < g->rounds; r++) {
		uint32_t calls = sh->calls[r];
		res->calls += calls;
		res->calls_min = calls < res->calls_min ? calls : res->calls_min;
		res->calls_max = calls > res->calls_max ? calls : res->calls_max;
		uint64_t first_ret = 0, t0_min = UINT64_MAX, t0_max = 0;
		for (int p = 0; p < ST_PROCS; p++) {
			uint64_t t = sh->ret_ns[r][p];
			if (t && (!first_ret || t < first_ret))
				first_ret = t;
		}
		for (int i = 0; i < ST_CALLERS; i++) {
			const struct call_rec *cr = &sh->rec[r][i];
			int p = i / ST_THREADS;
			/* hostcache: one load for the host; the baseline: its process's */
			uint64_t ref = g->sys == ST_HC ? first_ret : sh->ret_ns[r][p];
			t0_min = cr->t0 < t0_min ? cr->t0 : t0_min;
			t0_max = cr->t0 > t0_max ? cr->t0 : t0_max;
			if (cr->loaded) {
				res->owners++;
				if (sh->ret_ns[r][p] && cr->t1 >= sh->ret_ns[r][p])
					own[no++] = (float)(cr->t1 - sh->ret_ns[r][p]) / 1e3f;
			} else if (cr->coalesced) {
				res->waiters++;
				if (!ref || cr->t1 < ref)
					res->bad_wakes++;
				else
					wake[nw++] = (float)(cr->t1 - ref) / 1e3f;
			} else {
				res->late++;
			}
		}
		spread[r] = (float)(t0_max - t0_min) / 1e3f;
	}
	double p99;
	res->wake_max = max_of(wake, nw);
	percentiles(wake, nw, &res->wake_p50, &res->wake_p99);
	percentiles(own, no, &res->owner_p50, &p99);
	res->spread_max = max_of(spread, (uint64_t)g->rounds);
	percentiles(spread, (uint64_t)g->rounds, &res->spread_p50, &p99);
	free(wake);
	free(own);
	free(spread);
}

static void analyse_keys(const struct group *g, struct st_result *res)
{
	const struct st_shared *sh = g->sh;
	float walls[SK_MAX_ROUNDS];
	res->calls_min = UINT32_MAX;
	for (int r = 0; r < g->rounds; r++) {
		uint32_t calls = 0;
		for (uint32_t k = 0; k < g->nkeys; k++) {
			uint32_t n = sh->calls[(uint32_t)r * g->nkeys + k];
			calls += n;
			res->dup_keys += n > 1;
			res->missed_keys += n == 0;
		}
		res->calls += calls;
		res->calls_min = calls < res->calls_min ? calls : res->calls_min;
		res->calls_max = calls > res->calls_max ? calls : res->calls_max;
		uint64_t t0 = UINT64_MAX, t1 = 0;
		for (int i = 0; i < ST_CALLERS; i++) {
			const struct thr_rec *tr = &sh->thr[r][i];
			t0 = tr->t0 < t0 ? tr->t0 : t0;
			t1 = tr->t1 > t1 ? tr->t1 : t1;
			res->loaded += tr->loaded;
			res->coalesced += tr->coalesced;
			res->hits += tr->hits;
		}
		walls[r] = (float)(t1 - t0) / 1e6f;
	}
	double p99;
	res->wall_max = max_of(walls, (uint64_t)g->rounds);
	res->wall_min = res->wall_max;
	for (int r = 0; r < g->rounds; r++)
		res->wall_min = walls[r] < res->wall_min ? walls[r] : res->wall_min;
	percentiles(walls, (uint64_t)g->rounds, &res->wall_ms, &p99);
}

static void load_stats_delta(const struct hc_load_stats *a, const struct hc_load_stats *b,
			     struct hc_load_stats *d)
{
	d->leaders = b->leaders - a->leaders;
	d->coalesced = b->coalesced - a->coalesced;
	d->takeovers = b->takeovers - a->takeovers;
	d->lease_expiries = b->lease_expiries - a->lease_expiries;
	d->early_refreshes = b->early_refreshes - a->early_refreshes;
	d->uncoalesced = b->uncoalesced - a->uncoalesced;
	d->loads = b->loads - a->loads;
	d->load_errors = b->load_errors - a->load_errors;
}

/* Both systems through one case; hostcache first. */
static void st_case(const char *case_name, bool keys, int rounds, struct st_result res[ST_NSYS])
{
	char name[96];
	snprintf(name, sizeof(name), "bench-%d-%s", (int)main_pid, case_name);
	struct st_shared *sh =
		mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	if (rounds < 1 || rounds > (keys ? SK_MAX_ROUNDS : ST_MAX_ROUNDS))
		die("%s: %d rounds is more than the shared records hold", case_name, rounds);
	memset(res, 0, ST_NSYS * sizeof(*res));
	for (int s = 0; s < ST_NSYS; s++) {
		struct group g = {.sys = (enum st_sys)s,
				  .keys = keys,
				  .rounds = rounds,
				  .nkeys = keys ? SK_KEYS : 1,
				  .base = keys ? KEYS_BASE : ONE_BASE,
				  .load_ns = keys ? SK_LOAD_US * UINT64_C(1000)
						  : ST_LOAD_MS * UINT64_C(1000000),
				  .name = name,
				  .sh = sh};
		static struct hc_stats st0, st1;
		if (s == ST_HC) {
			struct hc_options o = {
				.size = 64 * MIB, .flags = HC_CREATE | HC_EXCL, .max_value = 4096};
			int rc = hc_open(name, &o, &g.hc);
			if (rc)
				die("hc_open %s: %s", name, hc_strerror(rc));
			register_name(name, false);
			if ((rc = hc_stats(g.hc, &st0)))
				die("hc_stats: %s", hc_strerror(rc));
		}
		fprintf(stderr, "# %s: %s, %d x %d callers, %d %s\n", case_name, st_sys_name[s],
			ST_PROCS, ST_THREADS, rounds, keys ? "rounds" : "stampedes");
		group_run(&g);
		if (keys)
			analyse_keys(&g, &res[s]);
		else
			analyse_one(&g, &res[s]);
		if (s == ST_HC) {
			int rc = hc_stats(g.hc, &st1);
			if (rc)
				die("hc_stats: %s", hc_strerror(rc));
			load_stats_delta(&st0.load, &st1.load, &res[s].ld);
			res[s].have_stats = true;
			hc_close(g.hc);
			release_name(name, false);
		}
	}
	munmap(sh, sizeof(*sh));
}

static void print_load_stats(const struct st_result *r, char *buf, size_t cap)
{
	buf[0] = 0;
	if (!r->have_stats)
		return;
	snprintf(buf, cap,
		 " leaders=%" PRIu64 " coalesced=%" PRIu64 " takeovers=%" PRIu64
		 " lease_expiries=%" PRIu64 " uncoalesced=%" PRIu64 " loads=%" PRIu64
		 " load_errors=%" PRIu64 " early_refreshes=%" PRIu64,
		 r->ld.leaders, r->ld.coalesced, r->ld.takeovers, r->ld.lease_expiries,
		 r->ld.uncoalesced, r->ld.loads, r->ld.load_errors, r->ld.early_refreshes);
}

void case_stampede(const struct cfg *cfg)
{
	const int rounds = cfg->quick ? 8 : 30;
	struct st_result res[ST_NSYS];
	st_case("stampede", false, rounds, res);
	for (int s = 0; s < ST_NSYS; s++) {
		const struct st_result *r = &res[s];
		char ratio[64] = " ratio=- wake_ratio=-", stats[320];
		if (s == ST_HC && res[ST_LOCAL].calls && res[ST_LOCAL].wake_p50 > 0)
			snprintf(ratio, sizeof(ratio), " ratio=%.3f wake_ratio=%.2f",
				 (double)r->calls / (double)res[ST_LOCAL].calls,
				 r->wake_p50 / res[ST_LOCAL].wake_p50);
		print_load_stats(r, stats, sizeof(stats));
		printf("SUMMARY case=stampede system=%s procs=%d threads=%d callers=%d"
		       " stampedes=%d origin_calls=%" PRIu64 " calls_per_stampede=%.2f"
		       " calls_min=%u calls_max=%u%s wake_p50_us=%.1f wake_p99_us=%.1f"
		       " wake_max_us=%.1f waiters=%" PRIu64 " late=%" PRIu64 " bad_wakes=%" PRIu64
		       " owner_us=%.1f spread_us=%.1f spread_max_us=%.1f loader_ms=%d%s\n",
		       st_sys_name[s], ST_PROCS, ST_THREADS, ST_CALLERS, rounds, r->calls,
		       (double)r->calls / rounds, r->calls_min, r->calls_max, ratio, r->wake_p50,
		       r->wake_p99, r->wake_max, r->waiters, r->late, r->bad_wakes, r->owner_p50,
		       r->spread_p50, r->spread_max, ST_LOAD_MS, stats);
	}
	if (res[ST_HC].calls_max > 1)
		fprintf(stderr,
			"hostcache-bench: warning: stampede: up to %u origin calls in one "
			"stampede (expected 1)\n",
			res[ST_HC].calls_max);
	fflush(stdout);
}

void case_stampede_keys(const struct cfg *cfg)
{
	const int rounds = cfg->quick ? 2 : 5;
	struct st_result res[ST_NSYS];
	st_case("stampede_keys", true, rounds, res);
	for (int s = 0; s < ST_NSYS; s++) {
		const struct st_result *r = &res[s];
		char ratio[64] = " ratio=- wall_ratio=-", stats[320];
		if (s == ST_HC && res[ST_LOCAL].calls && res[ST_LOCAL].wall_ms > 0)
			snprintf(ratio, sizeof(ratio), " ratio=%.3f wall_ratio=%.2f",
				 (double)r->calls / (double)res[ST_LOCAL].calls,
				 r->wall_ms / res[ST_LOCAL].wall_ms);
		print_load_stats(r, stats, sizeof(stats));
		printf("SUMMARY case=stampede_keys system=%s procs=%d threads=%d callers=%d"
		       " keys=%d rounds=%d origin_calls=%" PRIu64 " calls_per_round=%.1f"
		       " calls_min=%u calls_max=%u%s dup_keys=%" PRIu64 " missed_keys=%" PRIu64
		       " wall_ms=%.1f wall_ms_min=%.1f wall_ms_max=%.1f loaded=%" PRIu64
		       " waited=%" PRIu64 " hits=%" PRIu64 " loader_us=%d%s\n",
		       st_sys_name[s], ST_PROCS, ST_THREADS, ST_CALLERS, SK_KEYS, rounds, r->calls,
		       (double)r->calls / rounds, r->calls_min, r->calls_max, ratio, r->dup_keys,
		       r->missed_keys, r->wall_ms, r->wall_min, r->wall_max, r->loaded,
		       r->coalesced, r->hits, SK_LOAD_US, stats);
	}
	if (res[ST_HC].calls_max > SK_KEYS || res[ST_HC].dup_keys)
		fprintf(stderr,
			"hostcache-bench: warning: stampede_keys: %" PRIu64
			" keys loaded more than once (up to %u calls in a round, expected %d)\n",
			res[ST_HC].dup_keys, res[ST_HC].calls_max, SK_KEYS);
	fflush(stdout);
}
