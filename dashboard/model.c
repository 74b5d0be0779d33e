/*
 * model.c - rates and windowed hit ratios from hc_stats snapshots.
 *
 * The model keeps a ring of the last MODEL_HISTORY samples.  A sample holds
 * only the counters the dashboards derive numbers from: the totals of each
 * layer, the loading counters, and the same per entity.  The first sample
 * since the model (re)started is kept aside as well, so "since start" still
 * works once the ring has wrapped.  The newest snapshot is kept whole for
 * the gauges (model_latest).
 *
 * Entities are matched by name, not by their index in hc_stats.entity[]
 * (the index can change as entities register).  The model gives each name
 * it meets a stable id, and every sample stores its entities' counters at
 * those ids; a name absent from a sample reads as zeros there, so an
 * entity that appears within a window counts from zero.  A segment never
 * forgets an entity name, so the ids fit in HC_MAX_ENTITIES until the
 * segment changes, which restarts the model; should a snapshot bring more
 * names than that anyway, the model restarts too.
 *
 * A window of N seconds is the difference between the newest sample and
 * the newest sample at least N seconds older, or the oldest one held when
 * the history is shorter; rates are per second of the time between the
 * two.  Deltas are taken counter by counter, and a counter that went down
 * gives 0 rather than a wrapped difference.  The totals going down (or
 * another segment) restart the history instead, so no window spans a
 * reset.
 *
 * Concurrency: none inside.  model_feed() must not run at the same time as
 * any other call on the same model; the const readers may run together
 * (they keep no scratch state in the model).
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"

const char *const model_window_name[W_COUNT] = {"1s", "10s", "60s", "start"};
const char *const model_sort_name[SORT_COUNT] = {"requests", "ratio", "name", "loads"};

/* Samples closer than this to the newest one replace it. */
#define MODEL_MIN_GAP_MS 100

/* The counter structs are read as arrays of uint64_t (reset check, sums). */
#define NCTR (sizeof(struct hc_counters) / sizeof(uint64_t))
#define NLOAD (sizeof(struct hc_load_stats) / sizeof(uint64_t))
_Static_assert(sizeof(struct hc_counters) == 10 * sizeof(uint64_t), "hc_counters: u64 only");
_Static_assert(sizeof(struct hc_load_stats) == (11 + HC_HIST_N) * sizeof(uint64_t),
	       "hc_load_stats: u64 only");

struct ent_sample {
	struct hc_counters layer[HC_LAYER_COUNT];
	struct hc_load_stats load;
	bool present; /* the entity was in this snapshot */
};

struct sample {
	uint64_t t_ms; /* CLOCK_MONOTONIC ms, as fed */
	struct hc_counters layer[HC_LAYER_COUNT];
	struct hc_load_stats load;
	struct ent_sample ent[HC_MAX_ENTITIES]; /* by model entity id */
};

struct model {
	struct sample ring[MODEL_HISTORY];
	int head;	     /* index of the newest sample */
	int count;	     /* samples held (0 before the first feed) */
	struct sample start; /* the first sample since the last (re)start */
	int nnames;
	char names[HC_MAX_ENTITIES][HC_ENTITY_NAME_MAX + 1]; /* model entity id -> name */
	bool have_latest;
	struct hc_stats latest;
};

static const uint64_t window_ms[W_START] = {1000, 10000, 60000};

struct model *model_new(void)
{
	return calloc(1, sizeof(struct model));
}

void model_free(struct model *m)
{
	free(m);
}

static const struct sample *newest(const struct model *m)
{
	return &m->ring[m->head];
}

/* The @i-th sample held, 0 being the oldest. */
static const struct sample *nth(const struct model *m, int i)
{
	return &m->ring[(m->head - m->count + 1 + i + MODEL_HISTORY) % MODEL_HISTORY];
}

static bool went_down(const void *now, const void *before, size_t n)
{
	const uint64_t *a = now, *b = before;
	for (size_t i = 0; i < n; i++)
		if (a[i] < b[i])
			return true;
	return false;
}

static void add_u64s(void *dst, const void *src, size_t n)
{
	uint64_t *d = dst;
	const uint64_t *s = src;
	for (size_t i = 0; i < n; i++)
		d[i] += s[i];
}

/* Does @s not continue the history (another segment, counters reset, clock back)? */
static bool is_reset(const struct model *m, const struct hc_stats *s, uint64_t now_ms)
{
	const struct sample *n = newest(m);
	if (s->created_unix_ms != m->latest.created_unix_ms || now_ms < n->t_ms)
		return true;
	return went_down(s->layer, n->layer, HC_LAYER_COUNT * NCTR) ||
	       went_down(&s->load, &n->load, NLOAD);
}

static void restart(struct model *m)
{
	m->count = 0;
	m->head = 0;
	m->nnames = 0;
}

/* The model id of entity @name, registering it; -1 when the table is full. */
static int entity_id(struct model *m, const char *name)
{
	for (int i = 0; i < m->nnames; i++)
		if (strncmp(m->names[i], name, HC_ENTITY_NAME_MAX + 1) == 0)
			return i;
	if (m->nnames == (int)HC_MAX_ENTITIES)
		return -1;
	/* hc_stats terminates names; a snapshot built otherwise is cut, not overrun */
	memcpy(m->names[m->nnames], name, HC_ENTITY_NAME_MAX);
	m->names[m->nnames][HC_ENTITY_NAME_MAX] = '\0';
	return m->nnames++;
}

static bool map_entities(struct model *m, const struct hc_stats *s, uint32_t n, int *ids)
{
	for (uint32_t i = 0; i < n; i++) {
		ids[i] = entity_id(m, s->entity[i].name);
		if (ids[i] < 0)
			return false;
	}
	return true;
}

bool model_feed(struct model *m, const struct hc_stats *s, uint64_t now_ms)
{
	if (!m || !s)
		return false;
	bool restarted = false;
	if (m->count > 0 && is_reset(m, s, now_ms)) {
		restart(m);
		restarted = true;
	}
	uint32_t nent = s->nentities < HC_MAX_ENTITIES ? s->nentities : HC_MAX_ENTITIES;
	int ids[HC_MAX_ENTITIES];
	if (!map_entities(m, s, nent, ids)) {
		/* more names than a segment can hold since the start: begin again */
		restarted = restarted || m->count > 0;
		restart(m);
		map_entities(m, s, nent, ids); /* at most nent names: fits */
	}

	if (m->count == 0) {
		m->head = 0;
		m->count = 1;
	} else if (now_ms - newest(m)->t_ms >= MODEL_MIN_GAP_MS) {
		m->head = (m->head + 1) % MODEL_HISTORY;
		if (m->count < MODEL_HISTORY)
			m->count++;
	} /* else: replace the newest */

	struct sample *x = &m->ring[m->head];
	memset(x, 0, sizeof(*x));
	x->t_ms = now_ms;
	memcpy(x->layer, s->layer, sizeof(x->layer));
	x->load = s->load;
	for (uint32_t i = 0; i < nent; i++) {
		struct ent_sample *e = &x->ent[ids[i]];
		/* a name twice in one snapshot (not made by hc_stats): count both */
		add_u64s(e->layer, s->entity[i].layer, HC_LAYER_COUNT * NCTR);
		add_u64s(&e->load, &s->entity[i].load, NLOAD);
		e->present = true;
	}
	if (m->count == 1)
		m->start = *x; /* the first sample, or the one that replaced it */
	m->latest = *s;
	m->have_latest = true;
	return restarted;
}

int model_samples(const struct model *m)
{
	return m ? m->count : 0;
}

uint64_t model_span_ms(const struct model *m)
{
	if (!m || m->count < 2)
		return 0;
	return newest(m)->t_ms - nth(m, 0)->t_ms;
}

/* The older end of window @w; the newest sample itself when there is no other. */
static const struct sample *window_base(const struct model *m, enum model_window w)
{
	if (w == W_START)
		return &m->start;
	const struct sample *n = newest(m);
	uint64_t span = window_ms[w];
	for (int i = m->count - 2; i >= 0; i--) {
		const struct sample *b = nth(m, i);
		if (n->t_ms - b->t_ms >= span)
			return b;
	}
	return nth(m, 0);
}

static inline uint64_t delta(uint64_t now, uint64_t before)
{
	return now > before ? now - before : 0;
}

static struct model_rates no_rates(void)
{
	return (struct model_rates){.hit_ratio = -1};
}

static struct model_rates rates_of(const struct hc_counters *a, const struct hc_counters *b,
				   double secs, int layer)
{
	struct model_rates r = no_rates();
	if (secs <= 0)
		return r;
	uint64_t hits = delta(a->hits, b->hits);
	uint64_t misses = delta(a->misses, b->misses);
	r.hits = hits / secs;
	r.misses = misses / secs;
	r.requests = (hits + misses) / secs;
	r.sets = delta(a->sets, b->sets) / secs;
	r.evictions = delta(a->evictions, b->evictions) / secs;
	r.expirations = delta(a->expirations, b->expirations) / secs;
	r.errors = delta(a->errors, b->errors) / secs;
	if (hits + misses > 0) {
		r.hit_ratio = (double)hits / (double)(hits + misses);
		if (layer == HC_LAYER_L1)
			r.below_target = r.hit_ratio < MODEL_TARGET_L1;
		else if (layer == HC_LAYER_L2)
			r.below_target = r.hit_ratio < MODEL_TARGET_L2;
	}
	return r;
}

/*
 * The @pct-th percentile of the loads counted in @d (per-bucket deltas):
 * the upper bound of the bucket in which the cumulative count reaches
 * ceil(pct% of the loads).  The last bucket is open (1.05 s and more); it
 * reports HC_HIST_BOUND_US(HC_HIST_N - 1), twice the previous bound.
 * -1 when there were no loads.
 */
static double percentile_us(const uint64_t *d, uint64_t total, unsigned pct)
{
	if (total == 0)
		return -1;
	uint64_t rank = (total * pct + 99) / 100;
	if (rank == 0)
		rank = 1;
	uint64_t cum = 0;
	for (int i = 0; i < HC_HIST_N; i++) {
		cum += d[i];
		if (cum >= rank)
			return (double)HC_HIST_BOUND_US(i);
	}
	return (double)HC_HIST_BOUND_US(HC_HIST_N - 1);
}

static struct model_load_rates load_rates_of(const struct hc_load_stats *a,
					     const struct hc_load_stats *b, double secs)
{
	struct model_load_rates r = {.load_p50_us = -1, .load_p99_us = -1};
	if (secs <= 0)
		return r;
	r.loads = delta(a->loads, b->loads) / secs;
	r.load_errors = delta(a->load_errors, b->load_errors) / secs;
	r.leaders = delta(a->leaders, b->leaders) / secs;
	r.coalesced = delta(a->coalesced, b->coalesced) / secs;
	r.takeovers = delta(a->takeovers, b->takeovers) / secs;
	r.lease_expiries = delta(a->lease_expiries, b->lease_expiries) / secs;
	r.early_refreshes = delta(a->early_refreshes, b->early_refreshes) / secs;
	r.stale_refreshes = delta(a->stale_refreshes, b->stale_refreshes) / secs;
	r.stale_served = delta(a->stale_served, b->stale_served) / secs;
	uint64_t hist[HC_HIST_N], total = 0;
	for (int i = 0; i < HC_HIST_N; i++) {
		hist[i] = delta(a->load_hist[i], b->load_hist[i]);
		total += hist[i];
	}
	r.load_p50_us = percentile_us(hist, total, 50);
	r.load_p99_us = percentile_us(hist, total, 99);
	return r;
}

/* Seconds between the ends of window @w; 0 when it covers no time. */
static double window_secs(const struct sample *n, const struct sample *b)
{
	return n->t_ms > b->t_ms ? (double)(n->t_ms - b->t_ms) / 1000.0 : 0;
}

static bool valid_window(enum model_window w)
{
	return (int)w >= 0 && w < W_COUNT;
}

struct model_rates model_layer(const struct model *m, int layer, enum model_window w)
{
	if (!m || m->count == 0 || layer < 0 || layer >= HC_LAYER_COUNT || !valid_window(w))
		return no_rates();
	const struct sample *n = newest(m), *b = window_base(m, w);
	return rates_of(&n->layer[layer], &b->layer[layer], window_secs(n, b), layer);
}

struct model_load_rates model_load(const struct model *m, enum model_window w)
{
	if (!m || m->count == 0 || !valid_window(w))
		return (struct model_load_rates){.load_p50_us = -1, .load_p99_us = -1};
	const struct sample *n = newest(m), *b = window_base(m, w);
	return load_rates_of(&n->load, &b->load, window_secs(n, b));
}

static int by_name(const struct model_entity *a, const struct model_entity *b)
{
	return strcmp(a->name, b->name);
}

static int cmp_desc(double a, double b)
{
	return a > b ? -1 : a < b ? 1 : 0;
}

static int cmp_requests(const void *pa, const void *pb)
{
	const struct model_entity *a = pa, *b = pb;
	int c = cmp_desc(a->layer[HC_LAYER_L1].requests, b->layer[HC_LAYER_L1].requests);
	return c ? c : by_name(a, b);
}

/* Worst L1 ratio first; entities without L1 requests have no ratio and go last. */
static int cmp_ratio(const void *pa, const void *pb)
{
	const struct model_entity *a = pa, *b = pb;
	double ra = a->layer[HC_LAYER_L1].hit_ratio, rb = b->layer[HC_LAYER_L1].hit_ratio;
	if ((ra < 0) != (rb < 0))
		return ra < 0 ? 1 : -1;
	int c = -cmp_desc(ra, rb);
	return c ? c : by_name(a, b);
}

static int cmp_name(const void *pa, const void *pb)
{
	return by_name(pa, pb);
}

static int cmp_loads(const void *pa, const void *pb)
{
	const struct model_entity *a = pa, *b = pb;
	int c = cmp_desc(a->load.loads, b->load.loads);
	return c ? c : by_name(a, b);
}

int model_entities(const struct model *m, enum model_window w, enum model_sort sort,
		   struct model_entity *out, int max)
{
	static int (*const cmp[SORT_COUNT])(const void *, const void *) = {
		[SORT_REQUESTS] = cmp_requests,
		[SORT_RATIO] = cmp_ratio,
		[SORT_NAME] = cmp_name,
		[SORT_LOADS] = cmp_loads,
	};
	if (!m || m->count == 0 || !out || max <= 0 || !valid_window(w) || (int)sort < 0 ||
	    sort >= SORT_COUNT)
		return 0;
	struct model_entity *rows = malloc(sizeof(*rows) * HC_MAX_ENTITIES);
	if (!rows)
		return 0;
	const struct sample *n = newest(m), *b = window_base(m, w);
	double secs = window_secs(n, b);
	int nrows = 0;
	for (int id = 0; id < m->nnames; id++) {
		const struct ent_sample *en = &n->ent[id], *eb = &b->ent[id];
		if (!en->present)
			continue;
		struct model_entity *r = &rows[nrows++];
		memcpy(r->name, m->names[id], sizeof(r->name));
		for (int l = 0; l < HC_LAYER_COUNT; l++)
			r->layer[l] = rates_of(&en->layer[l], &eb->layer[l], secs, l);
		r->load = load_rates_of(&en->load, &eb->load, secs);
	}
	qsort(rows, (size_t)nrows, sizeof(*rows), cmp[sort]);
	if (nrows > max)
		nrows = max;
	memcpy(out, rows, sizeof(*rows) * (size_t)nrows);
	free(rows);
	return nrows;
}

int model_history(const struct model *m, int layer, double *out, int n)
{
	if (!m || !out || n <= 0 || layer < 0 || layer >= HC_LAYER_COUNT || m->count < 2)
		return 0;
	int intervals = m->count - 1;
	if (n > intervals)
		n = intervals;
	for (int i = 0; i < n; i++) {
		/* the interval ending at sample (count - n + i), oldest first */
		const struct sample *a = nth(m, m->count - n + i),
				    *b = nth(m, m->count - n + i - 1);
		struct model_rates r =
			rates_of(&a->layer[layer], &b->layer[layer], window_secs(a, b), layer);
		out[i] = r.hit_ratio;
	}
	return n;
}

const struct hc_stats *model_latest(const struct model *m)
{
	return m && m->have_latest ? &m->latest : NULL;
}
