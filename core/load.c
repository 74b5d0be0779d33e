/*
 * load.c - hc_get_or_load and hc_get_many: the cache in front of an origin.
 *
 * A lookup asks the table for the entry whatever its state (fresh, stale,
 * negative) and decides here what to do with it:
 *
 *   fresh             serve it; XFetch may elect this caller to refresh early
 *   stale, in window  serve it, unless this caller wins the refresh flight
 *   otherwise         single-flight: own the key's flight and load, or wait
 *
 * Refreshes run in the caller that wins them (inline), so no thread runs
 * behind the application's back and the loader's context never outlives
 * the call; with HC_LOAD_BACKGROUND they run in the handle's refresher
 * thread instead and the winner returns at once too.  A refresh is a
 * flight taken without waiting, so at most one runs per key per host and
 * no other caller waits for it.
 *
 * A loaded value is stored with the time its loader took (XFetch's delta)
 * and with a stale window of max(stale_ms, error_ms): past its TTL it is
 * served stale for stale_ms, and kept for error_ms as the answer when the
 * loader fails.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "flight.h"

#define DEFAULT_LEASE_MS 10000u
#define MAX_ATTEMPTS 4	 /* flights that ended without a value before loading alone */
#define BG_QUEUE_MAX 256 /* refreshes queued for the refresher thread at most */

/* The value a loader gives (struct hc_load.priv). */
struct loaded {
	uint8_t *p;
	size_t len, cap;
	uint32_t max;
	int rc; /* hc_load_value's last error */
};

int hc_load_value(struct hc_load *ld, const void *val, size_t vlen)
{
	if (!ld || !ld->priv || (!val && vlen))
		return HC_E_INVAL;
	struct loaded *v = ld->priv;
	if (vlen > v->max)
		return v->rc = HC_E_TOOBIG;
	if (vlen > v->cap) {
		uint8_t *p = realloc(v->p, vlen);
		if (!p)
			return v->rc = -ENOMEM;
		v->p = p;
		v->cap = vlen;
	}
	if (vlen)
		memcpy(v->p, val, vlen);
	v->len = vlen;
	v->rc = 0;
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: the thread's own generator (seeded at slot claim). */
static uint64_t next_rand(struct hc_thread *t)
{
	uint64_t x = t->rng ? t->rng : 0x9e3779b97f4a7c15u;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	t->rng = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* Uniform in (0, 1]. */
static double unit_rand(struct hc_thread *t)
{
	return (double)((next_rand(t) >> 11) + 1) / 9007199254740992.0;
}

static int check_opts(const struct hc_load_opts *o)
{
	if (o->jitter_pct > 50 || o->flags & ~(uint32_t)(HC_LOAD_NO_XFETCH | HC_LOAD_WRITE_THROUGH |
							 HC_LOAD_BACKGROUND | HC_LOAD_NO_L2))
		return HC_E_INVAL;
	if (isnan(o->beta))
		return HC_E_INVAL;
	return 0;
}

/* The XFetch beta of a call: its own, else its entity's, else 1. */
static double beta_of(const struct hc_cache *c, const struct hc_load_opts *o, uint32_t ent)
{
	if (o->flags & HC_LOAD_NO_XFETCH)
		return -1;
	if (o->beta != 0)
		return o->beta;
	uint32_t b = CMM_LOAD_SHARED(c->entities[ent].beta);
	if (b == UINT32_MAX)
		return -1;
	return b ? b / 1000.0 : 1.0;
}

/*
 * XFetch (Vattani et al., VLDB 2015): recompute early when
 * now - delta * beta * ln(rand) >= expiry, i.e. when -delta*beta*ln(u)
 * reaches the TTL left.  With u uniform in (0, 1], the chance at a TTL
 * left of r is exp(-r / (delta * beta)).
 */
static bool xfetch(struct hc_thread *t, const struct hc_meta *m, double beta)
{
	if (beta <= 0 || m->compute_ms == 0 || m->ttl_left_ms == INT64_MAX)
		return false;
	/* -ln(u) <= 37 for u >= 2^-53: far from expiry no draw can fire */
	if ((double)m->ttl_left_ms > 37.0 * m->compute_ms * beta)
		return false;
	double gap = -(double)m->compute_ms * beta * log(unit_rand(t));
	return gap >= (double)m->ttl_left_ms;
}

/* A TTL shortened by up to jitter_pct % at random. */
static uint32_t jittered(struct hc_thread *t, uint32_t ttl, uint32_t pct)
{
	if (!ttl || !pct)
		return ttl;
	uint64_t cut = (uint64_t)ttl * pct * (next_rand(t) % 10001u) / 1000000u;
	return cut >= ttl ? 1 : ttl - (uint32_t)cut;
}

static uint32_t hist_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	uint32_t b = 0;
	while (b < HC_HIST_N - 1 && us >= HC_HIST_BOUND_US(b))
		b++;
	return b;
}

/* What one load of one key produced. */
struct outcome {
	int rc;		 /* 0, HC_E_NOTFOUND, or the loader's error */
	struct loaded v; /* the value when rc == 0 */
	uint32_t ttl_ms, stale_ms, compute_ms;
};

/* Account for a loader run of @n keys that took @ns. */
static void count_loads(struct hc_cache *c, uint32_t ent, uint64_t ns, size_t n)
{
	hc_count_load(c, ent, HC_LD_LOADS, n);
	hc_count_load(c, ent, HC_LD_HIST + (int)hist_bucket(ns), n);
}

/*
 * Store a load's result in the cache: a value with its TTL (jittered) and
 * stale window, or a negative entry.  Returns the flight result for waiters.
 */
static int publish(struct hc_cache *c, struct hc_thread *t, const void *key, size_t klen,
		   const struct hc_load_opts *o, struct outcome *r, uint32_t ent, bool bell)
{
	/* the origin layer's counters: a value (hit), "not found" (miss), an error */
	hc_count(t, ent, HC_LAYER_ORIGIN,
		 r->rc == 0		  ? HC_CTR_HITS
		 : r->rc == HC_E_NOTFOUND ? HC_CTR_MISSES
					  : HC_CTR_ERRORS);
	if (r->rc == 0) {
		r->ttl_ms = jittered(t, r->ttl_ms, o->jitter_pct);
		struct hc_set_opts so = {
			.ttl_ms = r->ttl_ms,
			.stale_ms = r->stale_ms > o->error_ms ? r->stale_ms : o->error_ms,
			.compute_ms = r->compute_ms,
			.flags = o->flags & HC_LOAD_WRITE_THROUGH ? HC_SET_WRITE_THROUGH : 0};
		int rc = hc_set_ex(c, key, klen, r->v.p, r->v.len, &so);
		if (rc && rc != HC_E_AGAIN)	/* HC_E_AGAIN: in L1, its write-through skipped */
			return HC_FLIGHT_RETRY; /* waiters load for themselves */
		/* cache-aside: the agent copies it to L2 (write-through: hc_set_ex queued it) */
		if (!(o->flags & (HC_LOAD_NO_L2 | HC_LOAD_WRITE_THROUGH)))
			hc_ring_push(c, HC_REQ_SET, key, klen, r->ttl_ms, 0, 0, bell);
		return 0;
	}
	if (r->rc == HC_E_NOTFOUND) {
		if (o->negative_ttl_ms) {
			struct hc_set_opts so = {.ttl_ms = o->negative_ttl_ms,
						 .flags = HC_ENTRY_NEGATIVE};
			hc_set_ex(c, key, klen, NULL, 0, &so);
		}
		return HC_E_NOTFOUND;
	}
	hc_count_load(c, ent, HC_LD_LOAD_ERRORS, 1);
	return r->rc;
}

/* Run the loader for one key. */
static void load_one(struct hc_cache *c, const void *key, size_t klen, hc_loader_fn loader,
		     void *ctx, const struct hc_load_opts *o, uint32_t ent, struct outcome *r)
{
	memset(r, 0, sizeof(*r));
	r->v.max = c->max_value;
	struct hc_load ld = {.ttl_ms = o->ttl_ms, .stale_ms = o->stale_ms, .priv = &r->v};
	uint64_t t0 = now_ns();
	int rc = loader(ctx, key, klen, &ld);
	uint64_t ns = now_ns() - t0;
	count_loads(c, ent, ns, 1);
	if (rc > 0)
		rc = HC_E_INVAL; /* not a loader's answer */
	if (rc == 0 && r->v.rc)
		rc = r->v.rc; /* hc_load_value failed and the loader went on */
	r->rc = rc;
	r->ttl_ms = ld.ttl_ms;
	r->stale_ms = ld.stale_ms;
	uint64_t ms = (ns + 999999) / 1000000;
	r->compute_ms = ms > 0xffff ? 0xffff : (uint32_t)ms;
}

/* Hand a loaded value to the caller, with the meta a fresh entry would have. */
static int deliver(const struct outcome *r, void *buf, size_t cap, size_t *vlen, struct hc_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->layer = HC_LAYER_ORIGIN;
	m->source = HC_SRC_ORIGIN;
	m->compute_ms = r->compute_ms;
	if (r->rc == HC_E_NOTFOUND) {
		m->flags = HC_ENTRY_NEGATIVE;
		return HC_E_NOTFOUND;
	}
	m->etag = hc_hash64(r->v.p, r->v.len, HC_SEED_VALUE) >> 16;
	m->age_ms = 0;
	if (r->ttl_ms) {
		m->ttl_left_ms = r->ttl_ms;
		m->stale_left_ms = (int64_t)r->ttl_ms + r->stale_ms;
	} else {
		m->ttl_left_ms = m->stale_left_ms = INT64_MAX;
		m->age_ms = -1;
	}
	*vlen = r->v.len;
	if (r->v.len > cap)
		return HC_E_TOOSMALL;
	if (r->v.len)
		memcpy(buf, r->v.p, r->v.len);
	return 0;
}

/*
 * After a load: publish, end the flight (if @fl holds one), answer the
 * caller: the loaded value, "not found", the error, or on an error the
 * value already in @buf when @old (stale-if-error, or the current value of
 * an early refresh).  Frees the loaded value.
 */
static int finish(struct hc_cache *c, struct hc_thread *t, struct hc_fl *fl, const void *key,
		  size_t klen, const struct hc_load_opts *o, uint32_t ent, struct outcome *r,
		  bool old, bool bell, void *buf, size_t cap, size_t *vlen, struct hc_meta *m)
{
	int res = publish(c, t, key, klen, o, r, ent, bell);
	if (fl->f)
		hc_flight_end(c, fl, res);
	int rc;
	if (r->rc == 0 || r->rc == HC_E_NOTFOUND) {
		rc = deliver(r, buf, cap, vlen, m);
	} else if (old) {
		/* the loader failed: the value in hand answers instead */
		if (m->stale) {
			m->source = HC_SRC_STALE;
			hc_count_load(c, ent, HC_LD_STALE_SERVED, 1);
		}
		rc = 0;
	} else {
		rc = r->rc;
	}
	free(r->v.p);
	r->v.p = NULL;
	return rc;
}

/*
 * What an owner (of a miss, a refresh or a takeover) does: load, publish,
 * end the flight, answer.  @old: the caller's buffer holds a value of
 * *vlen bytes described by @m that may answer a failed load (stale-if-error,
 * or the current value of an early refresh).
 */
static int own_load(struct hc_cache *c, struct hc_thread *t, struct hc_fl *fl, const void *key,
		    size_t klen, hc_loader_fn loader, void *ctx, const struct hc_load_opts *o,
		    uint32_t ent, bool old, void *buf, size_t cap, size_t *vlen, struct hc_meta *m)
{
	struct outcome r;
	load_one(c, key, klen, loader, ctx, o, ent, &r);
	return finish(c, t, fl, key, klen, o, ent, &r, old, true, buf, cap, vlen, m);
}

/* ---- the refresher thread (HC_LOAD_BACKGROUND) ---- */

struct job {
	struct job *next;
	hc_loader_fn loader;
	void *ctx;
	struct hc_load_opts o;
	struct hc_fl fl;
	uint32_t ent;
	size_t klen;
	uint8_t key[];
};

struct hc_refresher {
	struct hc_cache *c;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool stop;
	unsigned n;
	struct job *head, *tail;
};

/*
 * The thread gets its record, not the handle: hc_refresher_stop() clears
 * c->bg before it joins, possibly before this thread has run at all.
 */
static void *refresher_main(void *arg)
{
	struct hc_refresher *bg = arg;
	struct hc_cache *c = bg->c;
	pthread_mutex_lock(&bg->lock);
	for (;;) {
		while (!bg->stop && !bg->head)
			pthread_cond_wait(&bg->cond, &bg->lock);
		struct job *j = bg->head;
		if (!j)
			break; /* stopping and drained */
		bg->head = j->next;
		if (!bg->head)
			bg->tail = NULL;
		bg->n--;
		bool stop = bg->stop;
		pthread_mutex_unlock(&bg->lock);
		if (stop) {
			hc_flight_end(c, &j->fl, HC_FLIGHT_RETRY); /* closing: not loaded */
		} else {
			struct outcome r;
			int err = 0;
			load_one(c, j->key, j->klen, j->loader, j->ctx, &j->o, j->ent, &r);
			struct hc_thread *t = hc_thread_get(c, &err);
			int res = t ? publish(c, t, j->key, j->klen, &j->o, &r, j->ent, true)
				    : HC_FLIGHT_RETRY;
			hc_flight_end(c, &j->fl, res);
			free(r.v.p);
		}
		free(j);
		pthread_mutex_lock(&bg->lock);
	}
	pthread_mutex_unlock(&bg->lock);
	return NULL;
}

/* Queue an owned refresh flight for the refresher thread; false if it cannot. */
static bool refresh_later(struct hc_cache *c, struct hc_fl *fl, const void *key, size_t klen,
			  hc_loader_fn loader, void *ctx, const struct hc_load_opts *o,
			  uint32_t ent)
{
	pthread_mutex_lock(&c->lock);
	if (!c->bg) {
		struct hc_refresher *bg = calloc(1, sizeof(*bg));
		if (bg) {
			bg->c = c;
			pthread_mutex_init(&bg->lock, NULL);
			pthread_cond_init(&bg->cond, NULL);
			c->bg = bg;
			if (pthread_create(&bg->thread, NULL, refresher_main, bg) != 0) {
				c->bg = NULL;
				free(bg);
			}
		}
	}
	struct hc_refresher *bg = c->bg;
	pthread_mutex_unlock(&c->lock);
	struct job *j = bg ? malloc(sizeof(*j) + klen) : NULL;
	if (!j)
		return false;
	*j = (struct job){
		.loader = loader, .ctx = ctx, .o = *o, .fl = *fl, .ent = ent, .klen = klen};
	memcpy(j->key, key, klen);
	pthread_mutex_lock(&bg->lock);
	bool ok = !bg->stop && bg->n < BG_QUEUE_MAX;
	if (ok) {
		if (bg->tail)
			bg->tail->next = j;
		else
			bg->head = j;
		bg->tail = j;
		bg->n++;
		pthread_cond_signal(&bg->cond);
	}
	pthread_mutex_unlock(&bg->lock);
	if (!ok)
		free(j);
	return ok;
}

/* hc_close: stop the refresher thread; refreshes still queued end unloaded. */
void hc_refresher_stop(struct hc_cache *c)
{
	struct hc_refresher *bg = c->bg;
	if (!bg)
		return;
	c->bg = NULL;
	if (c->fork_gen != hc_fork_gen) {
		free(bg); /* a forked child: the thread and its flights are the parent's */
		return;
	}
	pthread_mutex_lock(&bg->lock);
	bg->stop = true;
	pthread_cond_signal(&bg->cond);
	pthread_mutex_unlock(&bg->lock);
	pthread_join(bg->thread, NULL);
	pthread_cond_destroy(&bg->cond);
	pthread_mutex_destroy(&bg->lock);
	free(bg);
}

/*
 * A refresh this caller owns (@fl): with HC_LOAD_BACKGROUND queued for the
 * refresher thread while the value in @buf (lookup result @rc) answers
 * now; else run here.
 */
static int refresh(struct hc_cache *c, struct hc_thread *t, struct hc_fl *fl, const void *key,
		   size_t klen, hc_loader_fn loader, void *ctx, const struct hc_load_opts *o,
		   uint32_t ent, int rc, void *buf, size_t cap, size_t *vlen, struct hc_meta *m)
{
	if ((o->flags & HC_LOAD_BACKGROUND) &&
	    refresh_later(c, fl, key, klen, loader, ctx, o, ent)) {
		if (m->stale) {
			m->source = HC_SRC_STALE;
			hc_count_load(c, ent, HC_LD_STALE_SERVED, 1);
		}
		return rc;
	}
	return own_load(c, t, fl, key, klen, loader, ctx, o, ent, true, buf, cap, vlen, m);
}

/* One hc_get_or_load call: its arguments and what it learnt so far. */
struct call {
	struct hc_cache *c;
	struct hc_thread *t;
	const void *key;
	size_t klen;
	hc_loader_fn loader;
	void *ctx;
	const struct hc_load_opts *o;
	void *buf;
	size_t cap;
	size_t *vlen;
	struct hc_meta *m;
	uint32_t ent;
	uint32_t lease;
	uint64_t h;	/* the key's hash for its flight record; 0 until needed */
	bool coalesced; /* waited on another caller's load */
	uint8_t src;	/* where the flight it waited on got the value (HC_SRC_L2, _ORIGIN) */
	bool old;	/* buf holds a value that can answer a failed load */
};

#define CONTINUE 1 /* on_hit: not answered from the cache, go on as a miss */

static uint64_t flight_hash(struct call *k)
{
	if (!k->h)
		k->h = hc_hash64(k->key, k->klen, k->c->seed);
	return k->h;
}

/* Take the key's flight for a refresh, without waiting; true if this caller owns it. */
static bool take_refresh(struct call *k, struct hc_fl *fl)
{
	return hc_flight_enter(k->c, k->t, flight_hash(k), false, k->lease, fl) == HC_FL_OWNER;
}

/* What the cache held (@rc 0 or HC_E_TOOSMALL, meta in k->m): answer, or CONTINUE. */
static int on_hit(struct call *k, int rc)
{
	struct hc_meta *m = k->m;
	struct hc_fl fl = {0};
	m->coalesced = k->coalesced;
	if (m->flags & HC_ENTRY_NEGATIVE) {
		if (m->stale)
			return CONTINUE; /* an expired "not found": ask the origin again */
		m->source = HC_SRC_NEGATIVE;
		return HC_E_NOTFOUND;
	}
	if (!m->stale) {
		if (k->coalesced) {
			m->source = k->src; /* where the flight this caller waited on found it */
			return rc;
		}
		if (rc == 0 && xfetch(k->t, m, beta_of(k->c, k->o, k->ent)) &&
		    take_refresh(k, &fl)) {
			hc_count_load(k->c, k->ent, HC_LD_EARLY_REFRESHES, 1);
			return refresh(k->c, k->t, &fl, k->key, k->klen, k->loader, k->ctx, k->o,
				       k->ent, rc, k->buf, k->cap, k->vlen, m);
		}
		return rc;
	}
	if (-m->ttl_left_ms < (int64_t)k->o->stale_ms) {
		/* stale-while-revalidate: one refresh on the host, nobody waits for it */
		if (rc == 0 && take_refresh(k, &fl)) {
			hc_count_load(k->c, k->ent, HC_LD_STALE_REFRESHES, 1);
			return refresh(k->c, k->t, &fl, k->key, k->klen, k->loader, k->ctx, k->o,
				       k->ent, rc, k->buf, k->cap, k->vlen, m);
		}
		m->source = HC_SRC_STALE;
		hc_count_load(k->c, k->ent, HC_LD_STALE_SERVED, 1);
		return rc;
	}
	/* past the stale window: a miss, but the value may still answer a failure */
	k->old = rc == 0 && -m->ttl_left_ms < (int64_t)k->o->error_ms;
	return CONTINUE;
}

/* The end of a flight this caller waited on, with result @res: answer, or CONTINUE. */
static int on_flight_end(struct call *k, int res)
{
	struct hc_meta *m = k->m;
	if (res == HC_E_NOTFOUND) {
		memset(m, 0, sizeof(*m));
		m->source = HC_SRC_ORIGIN;
		m->layer = HC_LAYER_ORIGIN;
		m->flags = HC_ENTRY_NEGATIVE;
		m->coalesced = 1;
		return HC_E_NOTFOUND;
	}
	if (res >= 0) {
		k->src = res == HC_FLIGHT_L2 ? HC_SRC_L2 : HC_SRC_ORIGIN;
		return CONTINUE; /* published (or unknown): read it from the cache */
	}
	m->coalesced = 1;
	if (!k->old)
		return res;
	m->source = HC_SRC_STALE;
	hc_count_load(k->c, k->ent, HC_LD_STALE_SERVED, 1);
	return 0;
}

/* The stale window a loaded value is stored with. */
static uint32_t stale_window(const struct hc_load_opts *o)
{
	return o->stale_ms > o->error_ms ? o->stale_ms : o->error_ms;
}

/*
 * An owned flight asks L2 (through the agent) before the origin.  On a hit
 * the agent has put the value in L1: answer from there and end the flight.
 * CONTINUE on a miss, an error, or without an agent.
 */
static int from_l2(struct call *k, struct hc_fl *fl)
{
	if (hc_l2_lookup(k->c, fl, k->key, k->klen, stale_window(k->o)) != HC_L2_HIT)
		return CONTINUE;
	size_t n = 0;
	struct hc_meta m;
	uint32_t ent;
	int rc = hc_read_copy(k->c, k->t, k->key, k->klen, k->buf, k->cap, &n, &m, 0, &ent);
	if (rc != 0 && rc != HC_E_TOOSMALL)
		return CONTINUE; /* gone from L1 already: the origin it is */
	hc_flight_end(k->c, fl, HC_FLIGHT_L2);
	m.source = HC_SRC_L2;
	m.layer = HC_LAYER_L2;
	m.coalesced = k->coalesced;
	*k->m = m;
	*k->vlen = n;
	return rc;
}

/* A miss: one caller on the host loads, the others wait for it.  Answer, or CONTINUE. */
static int on_miss(struct call *k, int attempt)
{
	struct hc_fl fl = {0};
	int role = attempt < MAX_ATTEMPTS
			   ? hc_flight_enter(k->c, k->t, flight_hash(k), true, k->lease, &fl)
			   : HC_FL_FULL;
	if (role == HC_FL_JOINED) {
		int res;
		if (!k->coalesced)
			hc_count_load(k->c, k->ent, HC_LD_COALESCED, 1);
		k->coalesced = true;
		role = hc_flight_wait(k->c, k->t, &fl, flight_hash(k), k->ent, k->lease, &res);
		if (role == HC_FL_ENDED)
			return on_flight_end(k, res);
	}
	if (role == HC_FL_OWNER) {
		if (!k->coalesced) {
			/* published between our miss and our claim? */
			size_t n = 0;
			struct hc_meta m;
			uint32_t ent;
			int rc = hc_read_copy(k->c, k->t, k->key, k->klen, k->buf, k->cap, &n, &m,
					      0, &ent);
			if (rc == 0 || rc == HC_E_TOOSMALL) {
				hc_flight_end(k->c, &fl, 0);
				*k->m = m;
				*k->vlen = n;
				return rc;
			}
		}
		hc_count_load(k->c, k->ent, HC_LD_LEADERS, 1);
		if (!(k->o->flags & HC_LOAD_NO_L2)) {
			int rc = from_l2(k, &fl);
			if (rc != CONTINUE)
				return rc;
		}
	} else {
		hc_count_load(k->c, k->ent, HC_LD_UNCOALESCED, 1);
	}
	int rc = own_load(k->c, k->t, &fl, k->key, k->klen, k->loader, k->ctx, k->o, k->ent, k->old,
			  k->buf, k->cap, k->vlen, k->m);
	k->m->coalesced = k->coalesced;
	return rc;
}

int hc_get_or_load(struct hc_cache *c, const void *key, size_t klen, hc_loader_fn loader, void *ctx,
		   const struct hc_load_opts *opts, void *buf, size_t cap, size_t *vlen,
		   struct hc_meta *meta)
{
	static const struct hc_load_opts defaults;
	const struct hc_load_opts *o = opts ? opts : &defaults;
	int rc = hc_writable(c);
	if (rc)
		return rc;
	if (!key || !klen || !loader || !vlen || (!buf && cap))
		return HC_E_INVAL;
	if (klen > HC_KEY_MAX)
		return HC_E_TOOBIG;
	if ((rc = check_opts(o)))
		return rc;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return rc;
	struct hc_meta local;
	struct call k = {.c = c,
			 .t = t,
			 .key = key,
			 .klen = klen,
			 .loader = loader,
			 .ctx = ctx,
			 .o = o,
			 .buf = buf,
			 .cap = cap,
			 .vlen = vlen,
			 .m = meta ? meta : &local,
			 .lease = o->lease_ms ? o->lease_ms : DEFAULT_LEASE_MS};

	for (int attempt = 0;; attempt++) {
		size_t n = 0;
		rc = hc_read_copy(c, t, key, klen, buf, cap, &n, k.m,
				  HC_GET_STALE | HC_GET_NEGATIVE, &k.ent);
		k.old = false;
		if (rc == 0 || rc == HC_E_TOOSMALL) {
			*vlen = n;
			rc = on_hit(&k, rc);
			if (rc != CONTINUE)
				return rc;
		} else if (rc != HC_E_NOTFOUND) {
			return rc;
		}
		rc = on_miss(&k, attempt);
		if (rc != CONTINUE)
			return rc;
	}
}

int hc_entity_beta(struct hc_cache *c, const char *entity, double beta)
{
	int rc = hc_writable(c);
	if (rc)
		return rc;
	if (!entity || isnan(beta) || beta > 1000)
		return HC_E_INVAL;
	size_t n = strlen(entity);
	if (n == 0 || n > HC_ENTITY_NAME_MAX || memchr(entity, ':', n))
		return HC_E_INVAL;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return rc;
	/* the entity of "<entity>:" is the record of that prefix */
	char key[HC_ENTITY_NAME_MAX + 2];
	memcpy(key, entity, n);
	key[n] = ':';
	uint32_t ent = hc_entity_id(c, t, key, n + 1);
	if (ent == 0)
		return HC_E_NOSPACE; /* the entity table is full */
	uint32_t code = beta == 0 ? 0 : beta < 0 ? UINT32_MAX : (uint32_t)(beta * 1000 + 0.5);
	if (beta > 0 && code == 0)
		code = 1;
	uatomic_set(&c->entities[ent].beta, code);
	return 0;
}

int hc_invalidate(struct hc_cache *c, const void *key, size_t klen)
{
	int rc = hc_del(c, key, klen);
	if (rc != 0 && rc != HC_E_NOTFOUND)
		return rc;
	if (!CMM_LOAD_SHARED(c->hdr->agent_pid))
		return 0; /* no agent: L1 is the only tier */
	return hc_ring_push(c, HC_REQ_INVALIDATE, key, klen, 0, 0, 0, true);
}

/* ---- hc_get_many ---- */

/* The outcome of one key of a batch-loader call that returned @rc for it and took @ns. */
static void batch_outcome(struct outcome *r, int rc, const struct loaded *v,
			  const struct hc_load *ld, uint64_t ns)
{
	uint64_t ms = (ns + 999999) / 1000000;
	*r = (struct outcome){.rc = rc > 0 ? HC_E_INVAL : rc,
			      .v = *v,
			      .ttl_ms = ld->ttl_ms,
			      .stale_ms = ld->stale_ms,
			      .compute_ms = ms > 0xffff ? 0xffff : (uint32_t)ms};
	if (r->rc == 0 && v->rc)
		r->rc = v->rc; /* hc_load_value failed and the loader went on */
}

/* Per item state of a batch. */
struct bstate {
	struct hc_fl fl;
	uint64_t h;
	uint32_t ent;
	uint8_t role;	 /* 0 done, HC_FL_OWNER: in the batch, HC_FL_JOINED: wait */
	uint8_t old;	 /* the item's buffer holds a value for a failed load */
	uint8_t refresh; /* owned for a refresh (XFetch, stale): straight to the origin */
	uint32_t l2;	 /* the L2 lookup to wait for (hc_l2_ask), 0 if none */
};

/*
 * The L2 step of a batch: ask for every owned miss, ring the agent once,
 * collect the answers.  Hits are answered from L1 and their flights ended;
 * returns how many owned keys remain for the origin (compacted in place).
 */
static size_t batch_l2(struct hc_cache *c, struct hc_thread *t, const struct hc_load_opts *o,
		       struct hc_batch_item *items, struct bstate *st,
		       const struct hc_batch_item **mine, size_t *mine_idx, size_t nmine)
{
	/* a quarter of the ring at a time, so other workers' requests still fit */
	const size_t chunk = HC_RING_SLOTS / 4;
	if (nmine > chunk) {
		size_t left = batch_l2(c, t, o, items, st, mine, mine_idx, chunk);
		size_t rest =
			batch_l2(c, t, o, items, st, mine + chunk, mine_idx + chunk, nmine - chunk);
		memmove(mine + left, mine + chunk, rest * sizeof(*mine));
		memmove(mine_idx + left, mine_idx + chunk, rest * sizeof(*mine_idx));
		return left + rest;
	}
	bool asked = false;
	for (size_t k = 0; k < nmine; k++) {
		struct bstate *s = &st[mine_idx[k]];
		struct hc_batch_item *it = &items[mine_idx[k]];
		if (s->fl.f && !s->refresh) {
			s->l2 = hc_l2_ask(c, &s->fl, it->key, it->klen, stale_window(o), false);
			asked |= s->l2 != 0;
		}
	}
	if (!asked)
		return nmine;
	hc_ring_bell(c);
	uint64_t until = hc_now_ms() + HC_L2_WAIT_MS;
	size_t left = 0;
	for (size_t k = 0; k < nmine; k++) {
		size_t i = mine_idx[k];
		struct bstate *s = &st[i];
		struct hc_batch_item *it = &items[i];
		if (s->l2 && hc_l2_wait(c, &s->fl, s->l2, until) == HC_L2_HIT) {
			size_t len = 0;
			uint32_t ent;
			int rc = hc_read_copy(c, t, it->key, it->klen, it->buf, it->cap, &len,
					      &it->meta, 0, &ent);
			if (rc == 0 || rc == HC_E_TOOSMALL) {
				hc_flight_end(c, &s->fl, HC_FLIGHT_L2);
				it->rc = rc;
				it->vlen = len;
				it->meta.source = HC_SRC_L2;
				it->meta.layer = HC_LAYER_L2;
				continue;
			}
		}
		mine[left] = it;
		mine_idx[left++] = i;
	}
	return left;
}

/*
 * Step 1 of a batch for one item: answer it from the cache, or take its
 * flight.  Returns HC_FL_OWNER (the batch loads it: a miss, or a refresh
 * that falls due), HC_FL_JOINED (another caller loads it: wait), or 0 (the
 * item is answered).
 */
static int batch_plan(struct hc_cache *c, struct hc_thread *t, const struct hc_load_opts *o,
		      uint32_t lease, struct hc_batch_item *it, struct bstate *s)
{
	struct hc_meta *m = &it->meta;
	size_t len = 0;
	it->rc = hc_read_copy(c, t, it->key, it->klen, it->buf, it->cap, &len, m,
			      HC_GET_STALE | HC_GET_NEGATIVE, &s->ent);
	s->h = hc_hash64(it->key, it->klen, c->seed);
	if (it->rc == 0 || it->rc == HC_E_TOOSMALL) {
		it->vlen = len;
		int refresh = -1; /* the counter of a refresh that falls due */
		if (m->flags & HC_ENTRY_NEGATIVE) {
			if (!m->stale) {
				m->source = HC_SRC_NEGATIVE;
				it->rc = HC_E_NOTFOUND;
				return 0;
			}
		} else if (!m->stale) {
			if (it->rc != 0 || !xfetch(t, m, beta_of(c, o, s->ent)))
				return 0;
			refresh = HC_LD_EARLY_REFRESHES;
		} else if (-m->ttl_left_ms < (int64_t)o->stale_ms) {
			refresh = HC_LD_STALE_REFRESHES;
		} else {
			s->old = it->rc == 0 && -m->ttl_left_ms < (int64_t)o->error_ms;
		}
		if (refresh >= 0) {
			if (it->rc == 0 &&
			    hc_flight_enter(c, t, s->h, false, lease, &s->fl) == HC_FL_OWNER) {
				hc_count_load(c, s->ent, refresh, 1);
				s->old = 1;
				s->refresh = 1;
				return HC_FL_OWNER;
			}
			if (refresh == HC_LD_STALE_REFRESHES) {
				m->source = HC_SRC_STALE; /* one refresh runs elsewhere */
				hc_count_load(c, s->ent, HC_LD_STALE_SERVED, 1);
			}
			return 0;
		}
	} else if (it->rc != HC_E_NOTFOUND) {
		return 0;
	}
	int role = hc_flight_enter(c, t, s->h, true, lease, &s->fl);
	if (role == HC_FL_JOINED) {
		hc_count_load(c, s->ent, HC_LD_COALESCED, 1);
		return HC_FL_JOINED;
	}
	hc_count_load(c, s->ent, role == HC_FL_OWNER ? HC_LD_LEADERS : HC_LD_UNCOALESCED, 1);
	return HC_FL_OWNER;
}

int hc_get_many(struct hc_cache *c, struct hc_batch_item *items, size_t n,
		hc_batch_loader_fn loader, void *ctx, const struct hc_load_opts *opts)
{
	static const struct hc_load_opts defaults;
	const struct hc_load_opts *o = opts ? opts : &defaults;
	int rc = hc_writable(c);
	if (rc)
		return rc;
	if ((!items && n) || !loader || n > (1u << 20))
		return HC_E_INVAL;
	if ((rc = check_opts(o)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		const struct hc_batch_item *it = &items[i];
		if (!it->key || !it->klen || (!it->buf && it->cap))
			return HC_E_INVAL;
		if (it->klen > HC_KEY_MAX)
			return HC_E_TOOBIG;
	}
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return rc;
	if (n == 0)
		return 0;
	const uint32_t lease = o->lease_ms ? o->lease_ms : DEFAULT_LEASE_MS;
	struct bstate *st = calloc(n, sizeof(*st));
	const struct hc_batch_item **mine = calloc(n, sizeof(*mine));
	size_t *mine_idx = calloc(n, sizeof(*mine_idx));
	if (!st || !mine || !mine_idx) {
		free(st);
		free(mine);
		free(mine_idx);
		return -ENOMEM;
	}

	/* 1. the cache; then own or join a flight for each miss or due refresh */
	size_t nmine = 0;
	for (size_t i = 0; i < n; i++) {
		st[i].role = (uint8_t)batch_plan(c, t, o, lease, &items[i], &st[i]);
		if (st[i].role == HC_FL_OWNER) {
			mine[nmine] = &items[i];
			mine_idx[nmine++] = i;
		}
	}

	/* 2. L2 first: every lookup queued, then the agent answers them in one pipeline */
	if (nmine && !(o->flags & HC_LOAD_NO_L2))
		nmine = batch_l2(c, t, o, items, st, mine, mine_idx, nmine);

	/* 3. one batch-loader call for every key this call owns and L2 did not have */
	if (nmine) {
		struct hc_load *lds = calloc(nmine, sizeof(*lds));
		struct loaded *vals = calloc(nmine, sizeof(*vals));
		int *rcs = calloc(nmine, sizeof(*rcs));
		if (!lds || !vals || !rcs) {
			rc = -ENOMEM;
			for (size_t k = 0; k < nmine; k++)
				if (st[mine_idx[k]].fl.f)
					hc_flight_end(c, &st[mine_idx[k]].fl, HC_FLIGHT_RETRY);
			nmine = 0;
		}
		for (size_t k = 0; k < nmine; k++) {
			vals[k].max = c->max_value;
			lds[k] = (struct hc_load){
				.ttl_ms = o->ttl_ms, .stale_ms = o->stale_ms, .priv = &vals[k]};
			rcs[k] = HC_E_NOTFOUND; /* an item the loader skips was not found */
		}
		if (nmine) {
			uint64_t t0 = now_ns();
			int all = loader(ctx, mine, nmine, lds, rcs);
			uint64_t ns = now_ns() - t0;
			hc_count_load(c, st[mine_idx[0]].ent, HC_LD_BATCH_CALLS, 1);
			for (size_t k = 0; k < nmine; k++) {
				size_t i = mine_idx[k];
				struct hc_batch_item *it = &items[i];
				struct bstate *s = &st[i];
				count_loads(c, s->ent, ns, 1);
				struct outcome r;
				batch_outcome(&r, all ? all : rcs[k], &vals[k], &lds[k], ns);
				it->rc = finish(c, t, &s->fl, it->key, it->klen, o, s->ent, &r,
						s->old, false, it->buf, it->cap, &it->vlen,
						&it->meta);
			}
			hc_ring_bell(c); /* the L2 writes of the batch go as one pipeline */
		}
		free(lds);
		free(vals);
		free(rcs);
	}

	/* 4. the keys other callers were loading: wait, or load alone if that fails */
	for (size_t i = 0; i < n; i++) {
		struct hc_batch_item *it = &items[i];
		struct bstate *s = &st[i];
		if (s->role != HC_FL_JOINED)
			continue;
		int res;
		int role = hc_flight_wait(c, t, &s->fl, s->h, s->ent, lease, &res);
		if (role == HC_FL_ENDED) {
			if (res >= 0) {
				size_t len = 0;
				it->rc = hc_get_ex(c, it->key, it->klen, it->buf, it->cap, &len,
						   &it->meta, 0);
				it->vlen = len;
				if (it->rc != HC_E_NOTFOUND) {
					it->meta.source =
						res == HC_FLIGHT_L2 ? HC_SRC_L2 : HC_SRC_ORIGIN;
					it->meta.coalesced = 1;
					continue;
				}
				/*
				 * Published, then gone again (deleted, invalidated,
				 * evicted): the value read at the start is no answer
				 * any more, and the read above zeroed its length.
				 * Load alone, as hc_get_or_load would after a miss.
				 */
				s->old = 0;
			} else if (res == HC_E_NOTFOUND) {
				memset(&it->meta, 0, sizeof(it->meta));
				it->meta.source = HC_SRC_ORIGIN;
				it->meta.layer = HC_LAYER_ORIGIN;
				it->meta.flags = HC_ENTRY_NEGATIVE;
				it->meta.coalesced = 1;
				it->rc = HC_E_NOTFOUND;
				continue;
			} else {
				it->meta.coalesced = 1;
				if (s->old) {
					it->meta.source = HC_SRC_STALE;
					hc_count_load(c, s->ent, HC_LD_STALE_SERVED, 1);
					it->rc = 0;
				} else {
					it->rc = res;
				}
				continue;
			}
		}
		if (role == HC_FL_OWNER) {
			/* took it over: load this key alone through the batch loader */
			hc_count_load(c, s->ent, HC_LD_LEADERS, 1);
		} else {
			s->fl.f = NULL;
		}
		const struct hc_batch_item *one[1] = {it};
		struct loaded v = {.max = c->max_value};
		struct hc_load ld = {.ttl_ms = o->ttl_ms, .stale_ms = o->stale_ms, .priv = &v};
		int r1 = HC_E_NOTFOUND;
		uint64_t t0 = now_ns();
		int all = loader(ctx, one, 1, &ld, &r1);
		uint64_t ns = now_ns() - t0;
		hc_count_load(c, s->ent, HC_LD_BATCH_CALLS, 1);
		count_loads(c, s->ent, ns, 1);
		struct outcome r;
		batch_outcome(&r, all ? all : r1, &v, &ld, ns);
		it->rc = finish(c, t, &s->fl, it->key, it->klen, o, s->ent, &r, s->old, true,
				it->buf, it->cap, &it->vlen, &it->meta);
	}
	free(st);
	free(mine);
	free(mine_idx);
	if (rc < 0)
		return rc;
	int ok = 0;
	for (size_t i = 0; i < n; i++)
		ok += items[i].rc == 0;
	return ok;
}
