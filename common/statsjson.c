/*
 * statsjson.c - the JSON writer and the statistics' names (statsjson.h).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "statsjson.h"

void sj_string(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

void sj_member(struct sj *j, const char *key)
{
	if (j->need_comma)
		fputc(',', j->f);
	if (j->pretty && j->depth > 0)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	if (key) {
		sj_string(j->f, key, strlen(key));
		fputs(j->pretty ? ": " : ":", j->f);
	}
	j->need_comma = true;
}

void sj_open(struct sj *j, const char *key, char brace)
{
	sj_member(j, key);
	fputc(brace, j->f);
	j->depth++;
	j->need_comma = false;
}

void sj_close(struct sj *j, char brace)
{
	j->depth--;
	if (j->pretty && j->need_comma) /* not empty: the closing brace on its own line */
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(brace, j->f);
	j->need_comma = true;
	if (j->pretty && j->depth == 0)
		fputc('\n', j->f);
}

void sj_u64(struct sj *j, const char *key, uint64_t v)
{
	sj_member(j, key);
	fprintf(j->f, "%" PRIu64, v);
}

void sj_i64(struct sj *j, const char *key, int64_t v)
{
	sj_member(j, key);
	fprintf(j->f, "%" PRId64, v);
}

void sj_bool(struct sj *j, const char *key, bool v)
{
	sj_member(j, key);
	fputs(v ? "true" : "false", j->f);
}

void sj_str(struct sj *j, const char *key, const char *s, size_t n)
{
	sj_member(j, key);
	sj_string(j->f, s, n);
}

void sj_num(struct sj *j, const char *key, double v, bool neg_null)
{
	sj_member(j, key);
	if (!isfinite(v) || (neg_null && v < 0))
		fputs("null", j->f);
	else
		fprintf(j->f, "%.6g", v);
}

/* ---- the names ---- */

const char *const stats_layer_names[HC_LAYER_COUNT] = {"l1", "l2", "origin"};

#define CF(n, m, h, hd)                                       \
	{                                                     \
#n, m, h, hd, offsetof(struct hc_counters, n) \
	}
const struct stats_field stats_counters[] = {
	CF(hits, "cache_hits_total", "Requests the layer answered with a value.", "hits"),
	CF(misses, "cache_misses_total", "Requests the layer could not answer.", "misses"),
	CF(sets, "cache_sets_total", "Values stored in the layer.", "sets"),
	CF(deletes, "cache_deletes_total", "Entries deleted from the layer.", "deletes"),
	CF(evictions, "cache_evictions_total", "Entries evicted to make room.", "evicted"),
	CF(expirations, "cache_expirations_total", "Entries dropped because their TTL ended.",
	   "expired"),
	CF(stale_hits, "cache_stale_hits_total", "Stale values served by the layer.", "stale"),
	CF(negative_hits, "cache_negative_hits_total", "Cached not-found answers served.",
	   "negative"),
	CF(errors, "cache_errors_total", "Errors of the layer.", "errors"),
	CF(set_fails, "cache_set_failures_total", "Stores into the layer that failed.",
	   "set_fails"),
};
#undef CF
const size_t stats_ncounters = sizeof(stats_counters) / sizeof(stats_counters[0]);
_Static_assert(sizeof(stats_counters) / sizeof(stats_counters[0]) * sizeof(uint64_t) ==
		       sizeof(struct hc_counters),
	       "a name per hc_counters field");

#define LF(n, m, h)                                             \
	{                                                       \
#n, m, h, #n, offsetof(struct hc_load_stats, n) \
	}
const struct stats_field stats_load[] = {
	LF(leaders, "cache_singleflight_leaders_total", "Flights owned: the caller ran the load."),
	LF(coalesced, "cache_singleflight_coalesced_total",
	   "Callers that waited for another caller's load."),
	LF(takeovers, "cache_singleflight_takeovers_total",
	   "Flights taken over from a dead owner."),
	LF(lease_expiries, "cache_singleflight_lease_expiries_total",
	   "Flights taken over from an owner past its lease."),
	LF(early_refreshes, "cache_early_refreshes_total", "XFetch early recomputes run."),
	LF(stale_refreshes, "cache_stale_refreshes_total", "Stale-while-revalidate refreshes run."),
	LF(stale_served, "cache_stale_served_total", "Stale values returned by loads."),
	LF(loads, "cache_loads_total", "Keys passed to a loader."),
	LF(load_errors, "cache_load_errors_total", "Loads that failed (not counting not-found)."),
	LF(uncoalesced, "cache_uncoalesced_loads_total",
	   "Loads run without a flight: the flight table was full."),
	LF(batch_calls, "cache_batch_loader_calls_total", "Batch-loader calls."),
};
#undef LF
const size_t stats_nload = sizeof(stats_load) / sizeof(stats_load[0]);
_Static_assert(sizeof(stats_load) / sizeof(stats_load[0]) * sizeof(uint64_t) ==
		       offsetof(struct hc_load_stats, load_hist),
	       "a name per loading counter");

#define AF(k, n, m, h) [k] = {n, m, h, n, offsetof(struct hc_agent_stats, ctr) + 8 * (k)}
const struct stats_field stats_agent[HC_AG_N] = {
	AF(HC_AG_ROUND_TRIPS, "round_trips", "cache_agent_redis_round_trips_total",
	   "Pipelines sent to Redis."),
	AF(HC_AG_COMMANDS, "commands", "cache_agent_redis_commands_total",
	   "Commands sent to Redis."),
	AF(HC_AG_L2_ERRORS, "l2_errors", "cache_agent_l2_errors_total",
	   "Redis commands that failed."),
	AF(HC_AG_WRITE_FAILS, "write_fails", "cache_agent_write_failures_total",
	   "Write-through writes that failed (key deleted in L2)."),
	AF(HC_AG_INV_RECEIVED, "inv_received", "cache_agent_invalidations_received_total",
	   "Invalidation messages received."),
	AF(HC_AG_INV_APPLIED, "inv_applied", "cache_agent_invalidations_applied_total",
	   "Keys named by invalidations, dropped from L1."),
	AF(HC_AG_INV_MALFORMED, "inv_malformed", "cache_agent_invalidations_malformed_total",
	   "Invalidation messages that could not be understood."),
	AF(HC_AG_INV_ECHOES, "inv_echoes", "cache_agent_invalidation_echoes_total",
	   "The agent's own invalidation messages, ignored."),
	AF(HC_AG_INV_PUBLISHED, "inv_published", "cache_agent_invalidations_published_total",
	   "Invalidation events published."),
	AF(HC_AG_RECONNECTS, "reconnects", "cache_agent_redis_reconnects_total",
	   "Connections to Redis re-established."),
	AF(HC_AG_RESYNCS, "resyncs", "cache_agent_resyncs_total",
	   "L1 resyncs after a lost subscription (events may have been lost)."),
};
#undef AF

uint64_t stats_u64(const void *base, const struct stats_field *f)
{
	uint64_t v;
	memcpy(&v, (const char *)base + f->off, sizeof(v));
	return v;
}

const char *stats_redis_state(uint32_t st)
{
	return st == HC_REDIS_UP ? "up" : st == HC_REDIS_DOWN ? "down" : "unknown";
}

/* ---- the document ---- */

static void hist_json(struct sj *j, const char *key, const uint64_t *hist)
{
	sj_open(j, key, '[');
	for (int b = 0; b < HC_HIST_N; b++) {
		sj_open(j, NULL, '{');
		sj_u64(j, "le_us", b == HC_HIST_N - 1 ? 0 : HC_HIST_BOUND_US(b));
		sj_u64(j, "count", hist[b]);
		sj_close(j, '}');
	}
	sj_close(j, ']');
}

static void layers_json(struct sj *j, const struct hc_counters *layer)
{
	sj_open(j, "layers", '{');
	for (int l = 0; l < HC_LAYER_COUNT; l++) {
		sj_open(j, stats_layer_names[l], '{');
		for (size_t k = 0; k < stats_ncounters; k++)
			sj_u64(j, stats_counters[k].json, stats_u64(&layer[l], &stats_counters[k]));
		sj_close(j, '}');
	}
	sj_close(j, '}');
}

static void loading_members(struct sj *j, const struct hc_load_stats *l)
{
	for (size_t k = 0; k < stats_nload; k++)
		sj_u64(j, stats_load[k].json, stats_u64(l, &stats_load[k]));
	hist_json(j, "load_latency", l->load_hist);
}

static void agent_json(struct sj *j, const struct hc_agent_stats *a)
{
	const char *redis = stats_redis_state(a->redis_state);
	sj_open(j, "agent", '{');
	sj_i64(j, "pid", a->pid);
	sj_u64(j, "alive", a->alive);
	sj_i64(j, "heartbeat_age_ms", a->heartbeat_age_ms);
	sj_str(j, "redis", redis, strlen(redis));
	sj_u64(j, "ring_size", a->ring_size);
	sj_u64(j, "ring_depth", a->ring_depth);
	sj_u64(j, "ring_drops", a->ring_drops);
	sj_u64(j, "l2_skipped", a->l2_skipped);
	sj_u64(j, "ring_skipped", a->ring_skipped);
	sj_u64(j, "l2_timeouts", a->l2_timeouts);
	for (int k = 0; k < HC_AG_N; k++)
		sj_u64(j, stats_agent[k].json, stats_u64(a, &stats_agent[k]));
	hist_json(j, "l2_latency", a->l2_hist);
	sj_close(j, '}');
}

void stats_json_members(struct sj *j, const struct hc_stats *s)
{
	sj_open(j, "segment", '{');
	sj_u64(j, "size", s->segment_size);
	sj_u64(j, "arena_size", s->arena_size);
	sj_u64(j, "slab_size", s->slab_size);
	sj_u64(j, "slabs_total", s->slabs_total);
	sj_u64(j, "slabs_used", s->slabs_used);
	sj_u64(j, "index_slots", s->index_slots);
	sj_u64(j, "threads_active", s->threads_active);
	sj_u64(j, "created_unix_ms", s->created_unix_ms);
	sj_close(j, '}');

	sj_u64(j, "items", s->items);
	sj_u64(j, "bytes", s->bytes);
	layers_json(j, s->layer);

	sj_open(j, "classes", '[');
	for (uint32_t k = 0; k < s->nclasses && k < HC_MAX_CLASSES; k++) {
		const struct hc_class_stats *cs = &s->cls[k];
		if (!cs->slabs && !cs->items)
			continue;
		sj_open(j, NULL, '{');
		sj_u64(j, "class", k);
		sj_u64(j, "block_size", cs->block_size);
		sj_u64(j, "slabs", cs->slabs);
		sj_u64(j, "items", cs->items);
		sj_u64(j, "bytes", cs->bytes);
		sj_close(j, '}');
	}
	sj_close(j, ']');

	sj_open(j, "entities", '[');
	for (uint32_t e = 0; e < s->nentities && e < HC_MAX_ENTITIES; e++) {
		const struct hc_entity_stats *es = &s->entity[e];
		sj_open(j, NULL, '{');
		sj_str(j, "name", es->name, strnlen(es->name, sizeof(es->name)));
		layers_json(j, es->layer);
		sj_open(j, "loading", '{');
		loading_members(j, &es->load);
		sj_close(j, '}');
		sj_i64(j, "beta", (int64_t)(es->beta * 1000));
		sj_close(j, '}');
	}
	sj_close(j, ']');

	sj_open(j, "loading", '{');
	sj_u64(j, "flights_total", s->flights_total);
	sj_u64(j, "flights_active", s->flights_active);
	loading_members(j, &s->load);
	sj_close(j, '}');
	agent_json(j, &s->agent);

	sj_open(j, "reclamation", '{');
	sj_u64(j, "epoch", s->epoch);
	sj_u64(j, "safe_epoch", s->safe_epoch);
	sj_u64(j, "reclaim_waits", s->reclaim_waits);
	sj_u64(j, "reclaim_stalls", s->reclaim_stalls);
	sj_u64(j, "slots_reaped", s->slots_reaped);
	sj_u64(j, "blocks_recovered", s->blocks_recovered);
	sj_u64(j, "slab_moves", s->slab_moves);
	sj_u64(j, "index_evictions", s->index_evictions);
	sj_close(j, '}');
}
