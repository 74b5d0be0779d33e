/*
 * model.h - what the dashboards show, computed from hc_stats snapshots.
 *
 * No terminal or HTTP code here: hostcache-top and the HTTP dashboard feed
 * the model one snapshot per tick (normally a second) and read rates and
 * hit ratios over windows back, like varnishstat's averages.  The model
 * keeps a ring of the last MODEL_HISTORY snapshots' counters (not whole
 * struct hc_stats: only what it needs), so a window of N seconds is the
 * difference between the newest sample and the one N seconds older.
 *
 * Counter resets (a new segment under the same name, a counter that goes
 * down) restart the model's history: a window never spans a reset, and
 * "since start" means since the model last (re)started.
 */
#ifndef HOSTCACHE_MODEL_H
#define HOSTCACHE_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "hostcache.h"

#define MODEL_HISTORY 64 /* samples kept: a minute at one per second, and some */

/* The windows every rate and ratio is given for. */
enum model_window { W_1S, W_10S, W_60S, W_START, W_COUNT };
extern const char *const model_window_name[W_COUNT]; /* "1s", "10s", "60s", "start" */

/* The seed's targets: below them the dashboards say so. */
#define MODEL_TARGET_L1 0.90
#define MODEL_TARGET_L2 0.80

/* Rates (per second) and ratios of one layer over one window. */
struct model_rates {
	double requests; /* hits + misses (+ stale and negative hits count as hits) */
	double hits, misses, sets, evictions, expirations, errors;
	double hit_ratio;  /* hits / (hits + misses); < 0 when there were no requests */
	bool below_target; /* a ratio under its layer's target (l1, l2; never origin) */
};

/* Loading rates over one window (all entities, or one). */
struct model_load_rates {
	double loads, load_errors, leaders, coalesced, takeovers, lease_expiries;
	double early_refreshes, stale_refreshes, stale_served;
	double load_p50_us, load_p99_us; /* from the histogram's window delta; < 0 if none */
};

/* One entity's line of the per-entity table (window W_10S unless asked). */
struct model_entity {
	char name[HC_ENTITY_NAME_MAX + 1];
	struct model_rates layer[HC_LAYER_COUNT];
	struct model_load_rates load;
};

struct model; /* opaque */

/* model_new - an empty model.  NULL on allocation failure. */
struct model *model_new(void);
void model_free(struct model *m);

/*
 * model_feed - add the snapshot @s taken at @now_ms (CLOCK_MONOTONIC ms).
 * Samples closer than 100 ms to the previous one replace it.  A counter
 * that went down, or another segment (created_unix_ms changed), restarts
 * the history.  Returns true if it did.
 */
bool model_feed(struct model *m, const struct hc_stats *s, uint64_t now_ms);

/* Samples held, and the span (ms) between the oldest and the newest. */
int model_samples(const struct model *m);
uint64_t model_span_ms(const struct model *m);

/*
 * model_layer - rates and hit ratio of @layer (enum hc_layer) over @w.  A
 * window longer than the history held uses what there is (the rates are
 * per second of the time actually covered).  With fewer than two samples
 * every rate is 0 and the ratio < 0.
 */
struct model_rates model_layer(const struct model *m, int layer, enum model_window w);

/* model_load - loading rates over @w, all entities. */
struct model_load_rates model_load(const struct model *m, enum model_window w);

/*
 * model_entities - the per-entity table over @w, at most @max rows into
 * @out, sorted by @sort (0: L1 requests/s descending, 1: L1 hit ratio
 * ascending (worst first), 2: name, 3: loads/s descending).  Returns the
 * number of rows.
 */
enum model_sort { SORT_REQUESTS, SORT_RATIO, SORT_NAME, SORT_LOADS, SORT_COUNT };
extern const char *const model_sort_name[SORT_COUNT];
int model_entities(const struct model *m, enum model_window w, enum model_sort sort,
		   struct model_entity *out, int max);

/*
 * model_history - the L1 (or @layer) hit ratio of each of the last @n
 * one-sample intervals, oldest first, into @out (< 0 where an interval had
 * no requests).  Returns how many were written (<= n).  For sparklines.
 */
int model_history(const struct model *m, int layer, double *out, int n);

/* The newest snapshot fed (for gauges: memory, items, agent state). */
const struct hc_stats *model_latest(const struct model *m);

#endif
