/*
 * statsjson.h - a small JSON writer and the statistics' names, shared by
 * shmtool (stats --json) and the HTTP dashboard (/api/stats, /metrics), so
 * that both speak one schema.
 *
 * The writer handles commas and, when pretty, indentation in one place.
 * Numbers are integers or finite doubles; strings are ASCII, with bytes
 * outside printable ASCII written as \u00XX (the byte's value), since
 * entity names come from binary keys and need not be UTF-8.
 */
#ifndef HOSTCACHE_STATSJSON_H
#define HOSTCACHE_STATSJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hostcache.h"

struct sj {
	FILE *f;
	bool pretty; /* newlines and two-space indentation */
	int depth;
	bool need_comma; /* a value was written at this level */
};

void sj_string(FILE *f, const char *s, size_t n);
/* Start a member (@key) or an array element (@key NULL). */
void sj_member(struct sj *j, const char *key);
void sj_open(struct sj *j, const char *key, char brace);
void sj_close(struct sj *j, char brace);
void sj_u64(struct sj *j, const char *key, uint64_t v);
void sj_i64(struct sj *j, const char *key, int64_t v);
void sj_bool(struct sj *j, const char *key, bool v);
void sj_str(struct sj *j, const char *key, const char *s, size_t n);
/* A rate or ratio; null when not finite, or < 0 with @neg_null (no data). */
void sj_num(struct sj *j, const char *key, double v, bool neg_null);

/* One counter: its JSON name, Prometheus family, help text, text heading, offset. */
struct stats_field {
	const char *json;
	const char *metric;
	const char *help;
	const char *head;
	size_t off;
};

extern const char *const stats_layer_names[HC_LAYER_COUNT]; /* "l1", "l2", "origin" */
extern const struct stats_field stats_counters[];	    /* struct hc_counters */
extern const size_t stats_ncounters;
extern const struct stats_field stats_load[]; /* struct hc_load_stats, histogram excluded */
extern const size_t stats_nload;
extern const struct stats_field stats_agent[HC_AG_N]; /* enum hc_agent_ctr */

/* The counter @f of the struct at @base. */
uint64_t stats_u64(const void *base, const struct stats_field *f);

/* "up", "down" or "unknown" (enum hc_redis_state). */
const char *stats_redis_state(uint32_t st);

/*
 * stats_json_members - the members of a stats document (version 1) after
 * "version" and "name": segment, items, bytes, layers, classes, entities,
 * loading, agent, reclamation.  The caller opens and closes the object and
 * may add members of its own.
 */
void stats_json_members(struct sj *j, const struct hc_stats *s);

#endif
