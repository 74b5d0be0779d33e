/*
 * http.c - the HTTP dashboard: an HTML page with live charts, JSON at
 * /api/stats, Prometheus text at /metrics, /healthz, and two mutating
 * endpoints behind a bearer token.
 *
 * Design.  Two threads besides the caller's: libmicrohttpd's internal
 * polling thread answers requests, and a sampler thread takes one hc_stats
 * snapshot every sample_ms, feeds it to a dashboard model (model.h) and
 * renders the /api/stats and /metrics bodies once, then swaps them in under
 * a mutex.  A request only copies the newest body (or answers 304), so the
 * cost of rendering does not grow with the number of clients or pollers,
 * and the model is only ever touched by the sampler (model.h asks for no
 * concurrent feed).  The sampler formats numbers in the "C" locale whatever
 * the program set (ncurses programs call setlocale), so JSON and metrics
 * always use a decimal point.  The server binds one IPv4 address given as
 * "ADDR:PORT", ":PORT" or "PORT" (127.0.0.1 by default, port 0: any); a
 * non-loopback address is served, since it was asked for, with a warning.
 *
 * Endpoints:
 *   GET  /             the page (page.c; also /index.html): polls /api/stats
 *   GET  /api/stats    JSON below; strong ETag, If-None-Match -> 304
 *   GET  /metrics      Prometheus text exposition format 0.0.4
 *   GET  /healthz      200 "ok"; 503 when the last snapshot failed or the
 *                      sampler has not produced one for 5 periods (>= 5 s)
 *   POST /api/flush            hc_flush; answers {"flushed": N}
 *   POST /api/invalidate?key=K hc_invalidate; {"invalidated": true, "remote": ...}
 * HEAD works wherever GET does.  The mutating endpoints need
 * "Authorization: Bearer <token>" (compared in constant time): 403 when no
 * token is configured, 401 with WWW-Authenticate when it is missing or
 * wrong.  On a read-only handle they open a second, read-write handle to
 * the same segment (by the name hc_info gives), or answer 503 saying why.
 *
 * Bad input: unknown paths get 404, a known path with another method 405
 * and Allow, request targets over URL_MAX bytes 414, bodies over BODY_MAX
 * 413 (refused from Content-Length before reading, or after discarding a
 * chunked body; beyond BODY_CUT the connection is closed).  Requests whose
 * header block does not fit CONN_MEMORY are refused by libmicrohttpd
 * itself.  Slow clients (slowloris): a connection has REQUEST_DEADLINE_MS to
 * deliver a whole request, and when CONN_LIMIT connections wait for theirs
 * the slowest is shut down to make room for a newcomer (common/connguard.h).
 * When bound to a loopback address, a Host header that does not name the
 * loopback host is refused with 403 (DNS rebinding: a web page
 * must not read the statistics through a name it controls).
 *
 * /api/stats, version 1.  The snapshot uses the field names of
 * "shmtool stats --json" (shmtool/report.c), which it extends:
 *   {version: 1, name, generated_unix_ms, sample_ms, read_only, mutations,
 *    segment: {size, arena_size, slab_size, slabs_total, slabs_used,
 *              index_slots, threads_active, created_unix_ms},
 *    items, bytes,
 *    layers: {l1: C, l2: C, origin: C},
 *    classes: [{class, block_size, slabs, items, bytes}],
 *    entities: [{name, layers: {l1: C, l2: C, origin: C}, loading: L, beta}],
 *    loading: {flights_total, flights_active, L},
 *    agent: {pid, alive, heartbeat_age_ms, redis, ring_size, ring_depth,
 *            ring_drops, l2_skipped, ring_skipped, l2_timeouts, round_trips,
 *            commands, l2_errors, write_fails, inv_received, inv_applied,
 *            inv_malformed, inv_echoes, inv_published, reconnects, resyncs,
 *            l2_latency: [{le_us, count}]},
 *    reclamation: {epoch, safe_epoch, reclaim_waits, reclaim_stalls,
 *                  slots_reaped, blocks_recovered, slab_moves, index_evictions},
 *    rates: {l1: W(R), l2: W(R), origin: W(R), loading: W(LR),
 *            entities_window: "10s",
 *            entities: [{name, l1: R, l2: R, origin: R, loading: LR}]
 *                      (busiest first by L1 requests/s)},
 *    targets: {l1: 0.9, l2: 0.8},
 *    history: {interval_ms, l1: [ratio], l2: [ratio], origin: [ratio]}
 *             (hit ratio of each of the last sample intervals, oldest first),
 *    model: {samples, span_ms}}
 *   C, L as in report.c; W(X) = {"1s": X, "10s": X, "60s": X, "start": X};
 *   R  = {requests, hits, misses, sets, evictions, expirations, errors,
 *         hit_ratio, below_target}  (per second; hit_ratio 0..1)
 *   LR = {loads, load_errors, leaders, coalesced, takeovers, lease_expiries,
 *         early_refreshes, stale_refreshes, stale_served, load_p50_us,
 *         load_p99_us}  (per second; percentiles in us)
 * Rates and ratios are the only non-integers.  A ratio with no requests in
 * its window, and a percentile with no loads, is null.  Within version 1
 * fields are only ever added.
 *
 * /metrics: every counter of hc_stats as a Prometheus counter named
 * cache_*_total (per layer and entity where the segment counts them so:
 * entity "" holds keys without a prefix, and the entity samples add up to
 * the totals, so no separate total is exposed), gauges for memory, items,
 * the agent and Redis, and histograms cache_load_duration_seconds (per
 * entity) and cache_l2_duration_seconds.  The segment keeps bucket counts
 * only, so a histogram's _sum is an estimate: each load counts at the
 * middle of its bucket ([0, 64 us) at 32 us, [b/2, b) at 3b/4) and those of
 * the last, unbounded bucket at its lower bound, 1.048576 s.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "connguard.h"
#include "http.h"
#include "model.h"
#include "page.h"
#include "statsjson.h"

#define BODY_MAX 4096		/* request bodies above this get 413 */
#define BODY_CUT (1024 * 1024)	/* ... and beyond this the connection is closed */
#define URL_MAX 1024		/* longer request targets get 414 */
#define CONN_MEMORY (32 * 1024) /* per connection: request line, headers, buffers */
#define CONN_LIMIT 64u	   /* waiting for their request; the slowest makes room (connguard.h) */
#define CONN_TIMEOUT_S 30u /* inactivity */
#define REQUEST_DEADLINE_MS 10000u	       /* to deliver a whole request (slowloris) */
#define SAMPLE_MIN_MS 100u		       /* the model merges samples closer than that */
#define LABEL_CAP (5 * HC_ENTITY_NAME_MAX + 1) /* an escaped entity name (label_escape) */

/* A rendered response body and its validator. */
struct body {
	char *data;
	size_t len;
	uint64_t etag; /* hc_hash64 of the body (48 bits of it go out) */
};

struct dash_http {
	struct hc_cache *c;
	struct connguard *guard;
	char name[HC_NAME_MAX + 1];
	bool read_only; /* @c was attached with HC_RDONLY */
	char *token;	/* NULL: mutating endpoints are refused */
	size_t token_len;
	uint32_t sample_ms;
	struct sockaddr_in addr;
	bool loopback;
	uint16_t port;
	struct MHD_Daemon *daemon;
	locale_t c_locale;

	/* The sampler's own: nobody else reads these. */
	struct model *model;
	struct hc_stats *snap;
	struct model_entity *rows;		    /* HC_MAX_ENTITIES */
	char ent_label[HC_MAX_ENTITIES][LABEL_CAP]; /* entity names, escaped for /metrics */
	pthread_t sampler;
	bool sampler_running;

	/* Guarded by lock: what requests read. */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	struct body json, metrics;
	int sample_rc;	     /* hc_stats of the last sample */
	uint64_t sampled_ms; /* CLOCK_MONOTONIC of the last good sample */

	/* Mutating endpoints (the polling thread only, but kept honest). */
	pthread_mutex_t rw_lock;
	struct hc_cache *rw; /* @c, or a read-write handle opened on demand */

	atomic_bool serving; /* started: libmicrohttpd's messages are dropped */
};

static uint64_t clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- /api/stats ---- */

static void rates_json(struct sj *j, const char *key, const struct model_rates *r)
{
	sj_open(j, key, '{');
	sj_num(j, "requests", r->requests, false);
	sj_num(j, "hits", r->hits, false);
	sj_num(j, "misses", r->misses, false);
	sj_num(j, "sets", r->sets, false);
	sj_num(j, "evictions", r->evictions, false);
	sj_num(j, "expirations", r->expirations, false);
	sj_num(j, "errors", r->errors, false);
	sj_num(j, "hit_ratio", r->hit_ratio, true);
	sj_bool(j, "below_target", r->below_target);
	sj_close(j, '}');
}

static void load_rates_json(struct sj *j, const char *key, const struct model_load_rates *r)
{
	sj_open(j, key, '{');
	sj_num(j, "loads", r->loads, false);
	sj_num(j, "load_errors", r->load_errors, false);
	sj_num(j, "leaders", r->leaders, false);
	sj_num(j, "coalesced", r->coalesced, false);
	sj_num(j, "takeovers", r->takeovers, false);
	sj_num(j, "lease_expiries", r->lease_expiries, false);
	sj_num(j, "early_refreshes", r->early_refreshes, false);
	sj_num(j, "stale_refreshes", r->stale_refreshes, false);
	sj_num(j, "stale_served", r->stale_served, false);
	sj_num(j, "load_p50_us", r->load_p50_us, true);
	sj_num(j, "load_p99_us", r->load_p99_us, true);
	sj_close(j, '}');
}

static void model_json(struct sj *j, struct dash_http *h)
{
	const struct model *m = h->model;

	sj_open(j, "rates", '{');
	for (int l = 0; l < HC_LAYER_COUNT; l++) {
		sj_open(j, stats_layer_names[l], '{');
		for (int w = 0; w < W_COUNT; w++) {
			struct model_rates r = model_layer(m, l, (enum model_window)w);
			rates_json(j, model_window_name[w], &r);
		}
		sj_close(j, '}');
	}
	sj_open(j, "loading", '{');
	for (int w = 0; w < W_COUNT; w++) {
		struct model_load_rates r = model_load(m, (enum model_window)w);
		load_rates_json(j, model_window_name[w], &r);
	}
	sj_close(j, '}');
	sj_str(j, "entities_window", model_window_name[W_10S], strlen(model_window_name[W_10S]));
	sj_open(j, "entities", '[');
	int n = model_entities(m, W_10S, SORT_REQUESTS, h->rows, HC_MAX_ENTITIES);
	for (int e = 0; e < n; e++) {
		const struct model_entity *me = &h->rows[e];
		sj_open(j, NULL, '{');
		sj_str(j, "name", me->name, strnlen(me->name, sizeof(me->name)));
		for (int l = 0; l < HC_LAYER_COUNT; l++)
			rates_json(j, stats_layer_names[l], &me->layer[l]);
		load_rates_json(j, "loading", &me->load);
		sj_close(j, '}');
	}
	sj_close(j, ']');
	sj_close(j, '}');

	sj_open(j, "targets", '{');
	sj_num(j, "l1", MODEL_TARGET_L1, false);
	sj_num(j, "l2", MODEL_TARGET_L2, false);
	sj_close(j, '}');

	double hist[MODEL_HISTORY];
	sj_open(j, "history", '{');
	sj_u64(j, "interval_ms", h->sample_ms);
	for (int l = 0; l < HC_LAYER_COUNT; l++) {
		int k = model_history(m, l, hist, MODEL_HISTORY);
		sj_open(j, stats_layer_names[l], '[');
		for (int i = 0; i < k; i++)
			sj_num(j, NULL, hist[i], true);
		sj_close(j, ']');
	}
	sj_close(j, '}');

	sj_open(j, "model", '{');
	sj_u64(j, "samples", (uint64_t)model_samples(m));
	sj_u64(j, "span_ms", model_span_ms(m));
	sj_close(j, '}');
}

static void stats_json(FILE *f, struct dash_http *h, const struct hc_stats *s)
{
	struct sj j = {.f = f};
	sj_open(&j, NULL, '{');
	sj_u64(&j, "version", 1);
	sj_str(&j, "name", h->name, strlen(h->name));
	sj_u64(&j, "generated_unix_ms", clock_ms(CLOCK_REALTIME));
	sj_u64(&j, "sample_ms", h->sample_ms);
	sj_bool(&j, "read_only", h->read_only);
	sj_bool(&j, "mutations", h->token != NULL);

	stats_json_members(&j, s);

	model_json(&j, h);
	sj_close(&j, '}');
	fputc('\n', f);
}

/* ---- /metrics: Prometheus text exposition format 0.0.4 ---- */

/* Length of the valid UTF-8 sequence at @s (@n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp, min;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * A label value as the format wants it: backslash, double quote and line
 * feed escaped, UTF-8 kept.  Entity names come from binary keys, so other
 * control bytes and bytes that are not UTF-8 are written as the four
 * characters \xNN (with the backslash escaped), readable and unambiguous.
 * @out needs 5 * @n + 1 bytes.
 */
static void label_escape(char *out, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t len = utf8_len(u + i, n - i);
		if (u[i] == '\\' || u[i] == '"') {
			out[o++] = '\\';
			out[o++] = (char)u[i++];
		} else if (u[i] == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
			i++;
		} else if (len == 0 || u[i] < 0x20 || u[i] == 0x7f) {
			o += (size_t)sprintf(out + o, "\\\\x%02x", u[i++]);
		} else {
			memcpy(out + o, u + i, len);
			o += len;
			i += len;
		}
	}
	out[o] = '\0';
}

static void prom_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Bucket @b's upper bound in seconds, exactly (the bounds are whole us). */
static void le_seconds(char *buf, size_t cap, int b)
{
	uint64_t us = HC_HIST_BOUND_US(b);
	snprintf(buf, cap, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
}

/* The estimate of the header comment: the middle of the bucket, in us. */
static double bucket_mid_us(int b)
{
	if (b == 0)
		return HC_HIST_BOUND_US(0) / 2.0;
	if (b == HC_HIST_N - 1)
		return (double)HC_HIST_BOUND_US(b - 1);
	return 0.75 * (double)HC_HIST_BOUND_US(b);
}

/* One histogram's samples; @labels is "" or 'name="value"' pairs. */
static void prom_hist(FILE *f, const char *name, const char *labels, const uint64_t *hist)
{
	const char *sep = *labels ? "," : "";
	uint64_t cum = 0;
	double sum_us = 0;
	char le[32];
	for (int b = 0; b < HC_HIST_N; b++) {
		cum += hist[b];
		sum_us += (double)hist[b] * bucket_mid_us(b);
		if (b < HC_HIST_N - 1)
			le_seconds(le, sizeof(le), b);
		else
			snprintf(le, sizeof(le), "+Inf");
		fprintf(f, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep, le, cum);
	}
	if (*labels) {
		fprintf(f, "%s_sum{%s} %.6f\n", name, labels, sum_us / 1e6);
		fprintf(f, "%s_count{%s} %" PRIu64 "\n", name, labels, cum);
	} else {
		fprintf(f, "%s_sum %.6f\n", name, sum_us / 1e6);
		fprintf(f, "%s_count %" PRIu64 "\n", name, cum);
	}
}

static void prom_gauge(FILE *f, const char *name, const char *help, double v)
{
	prom_family(f, name, "gauge", help);
	fprintf(f, "%s %.10g\n", name, v);
}

static void prom_counter(FILE *f, const char *name, const char *help, uint64_t v)
{
	prom_family(f, name, "counter", help);
	fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void metrics_text(FILE *f, struct dash_http *h, const struct hc_stats *s)
{
	uint32_t ne = s->nentities < HC_MAX_ENTITIES ? s->nentities : HC_MAX_ENTITIES;
	char(*ent)[LABEL_CAP] = h->ent_label;
	char seg[5 * HC_NAME_MAX + 1], labels[LABEL_CAP + 16];
	for (uint32_t e = 0; e < ne; e++)
		label_escape(ent[e], s->entity[e].name,
			     strnlen(s->entity[e].name, sizeof(s->entity[e].name)));

	label_escape(seg, h->name, strlen(h->name));
	prom_family(f, "cache_info", "gauge", "The segment served; always 1.");
	fprintf(f, "cache_info{segment=\"%s\"} 1\n", seg);

	/* per layer and entity */
	for (size_t k = 0; k < stats_ncounters; k++) {
		const struct stats_field *cf = &stats_counters[k];
		prom_family(f, cf->metric, "counter", cf->help);
		for (int l = 0; l < HC_LAYER_COUNT; l++)
			for (uint32_t e = 0; e < ne; e++)
				fprintf(f, "%s{layer=\"%s\",entity=\"%s\"} %" PRIu64 "\n",
					cf->metric, stats_layer_names[l], ent[e],
					stats_u64(&s->entity[e].layer[l], cf));
	}

	/* loading, per entity */
	for (size_t k = 0; k < stats_nload; k++) {
		const struct stats_field *lf = &stats_load[k];
		prom_family(f, lf->metric, "counter", lf->help);
		for (uint32_t e = 0; e < ne; e++)
			fprintf(f, "%s{entity=\"%s\"} %" PRIu64 "\n", lf->metric, ent[e],
				stats_u64(&s->entity[e].load, lf));
	}
	prom_family(f, "cache_load_duration_seconds", "histogram",
		    "Loader latency per key (_sum estimated from the buckets).");
	for (uint32_t e = 0; e < ne; e++) {
		snprintf(labels, sizeof(labels), "entity=\"%s\"", ent[e]);
		prom_hist(f, "cache_load_duration_seconds", labels, s->entity[e].load.load_hist);
	}
	prom_gauge(f, "cache_flights", "Flight records in the segment.", s->flights_total);
	prom_gauge(f, "cache_flights_active", "Flights loading now.", s->flights_active);

	/* memory */
	prom_gauge(f, "cache_items", "Live entries.", (double)s->items);
	prom_gauge(f, "cache_bytes", "Key and value bytes of live entries.", (double)s->bytes);
	prom_gauge(f, "cache_segment_bytes", "Size of the shared-memory segment.",
		   (double)s->segment_size);
	prom_gauge(f, "cache_arena_bytes", "Bytes of slab memory.", (double)s->arena_size);
	prom_gauge(f, "cache_slabs", "Slabs in the arena.", s->slabs_total);
	prom_gauge(f, "cache_slabs_used", "Slabs assigned to a size class.", s->slabs_used);
	prom_gauge(f, "cache_index_slots", "Capacity of the hash index, entries.",
		   (double)s->index_slots);
	prom_gauge(f, "cache_threads_active", "Thread slots in use.", s->threads_active);
	prom_gauge(f, "cache_segment_created_timestamp_seconds",
		   "When the segment was created, Unix time.", (double)s->created_unix_ms / 1000.0);
	static const struct {
		const char *name, *help;
		size_t off;
	} class_gauges[] = {
		{"cache_class_items", "Live entries per size class.",
		 offsetof(struct hc_class_stats, items)},
		{"cache_class_bytes", "Key and value bytes per size class.",
		 offsetof(struct hc_class_stats, bytes)},
	};
	for (size_t g = 0; g < sizeof(class_gauges) / sizeof(class_gauges[0]); g++) {
		prom_family(f, class_gauges[g].name, "gauge", class_gauges[g].help);
		for (uint32_t k = 0; k < s->nclasses && k < HC_MAX_CLASSES; k++) {
			const struct hc_class_stats *cs = &s->cls[k];
			uint64_t v;
			if (!cs->slabs && !cs->items)
				continue;
			memcpy(&v, (const char *)cs + class_gauges[g].off, sizeof(v));
			fprintf(f,
				"%s{class=\"%" PRIu32 "\",block_size=\"%" PRIu32 "\"} %" PRIu64
				"\n",
				class_gauges[g].name, k, cs->block_size, v);
		}
	}
	prom_family(f, "cache_class_slabs", "gauge", "Slabs assigned per size class.");
	for (uint32_t k = 0; k < s->nclasses && k < HC_MAX_CLASSES; k++) {
		const struct hc_class_stats *cs = &s->cls[k];
		if (cs->slabs || cs->items)
			fprintf(f,
				"cache_class_slabs{class=\"%" PRIu32 "\",block_size=\"%" PRIu32
				"\"} %" PRIu32 "\n",
				k, cs->block_size, cs->slabs);
	}

	/* targets, for alerting rules */
	prom_family(f, "cache_hit_ratio_target", "gauge", "The hit ratio each layer should keep.");
	fprintf(f, "cache_hit_ratio_target{layer=\"l1\"} %g\n", MODEL_TARGET_L1);
	fprintf(f, "cache_hit_ratio_target{layer=\"l2\"} %g\n", MODEL_TARGET_L2);

	/* the agent */
	const struct hc_agent_stats *a = &s->agent;
	prom_gauge(f, "cache_agent_up", "1 when an agent serves the segment (heartbeat fresh).",
		   a->pid && a->alive ? 1 : 0);
	prom_gauge(f, "cache_redis_up", "1 when the agent reports Redis reachable.",
		   a->redis_state == HC_REDIS_UP ? 1 : 0);
	if (a->heartbeat_age_ms >= 0)
		prom_gauge(f, "cache_agent_heartbeat_age_seconds", "Age of the agent's heartbeat.",
			   (double)a->heartbeat_age_ms / 1000.0);
	prom_gauge(f, "cache_ring_depth", "Requests queued for the agent.", (double)a->ring_depth);
	prom_gauge(f, "cache_ring_size", "Request slots of the agent's ring.", a->ring_size);
	prom_counter(f, "cache_agent_ring_drops_total", "Requests not queued: the ring was full.",
		     a->ring_drops);
	prom_counter(f, "cache_agent_l2_skipped_total", "L2 lookups skipped: no live agent.",
		     a->l2_skipped);
	prom_counter(f, "cache_agent_ring_skipped_total",
		     "Ring slots of producers that died mid-write.", a->ring_skipped);
	prom_counter(f, "cache_agent_l2_timeouts_total",
		     "Flight owners that stopped waiting for L2.", a->l2_timeouts);
	for (int k = 0; k < HC_AG_N; k++)
		prom_counter(f, stats_agent[k].metric, stats_agent[k].help, a->ctr[k]);
	prom_family(f, "cache_l2_duration_seconds", "histogram",
		    "L2 lookup latency (_sum estimated from the buckets).");
	prom_hist(f, "cache_l2_duration_seconds", "", a->l2_hist);

	/* reclamation */
	prom_counter(f, "cache_reclaim_waits_total", "Grace periods waited for.", s->reclaim_waits);
	prom_counter(f, "cache_reclaim_stalls_total",
		     "Grace periods cut short by a stalled reader.", s->reclaim_stalls);
	prom_counter(f, "cache_slots_reaped_total", "Dead thread slots reclaimed.",
		     s->slots_reaped);
	prom_counter(f, "cache_blocks_recovered_total", "Blocks recovered from dead writers.",
		     s->blocks_recovered);
	prom_counter(f, "cache_slab_moves_total", "Slabs moved between size classes.",
		     s->slab_moves);
	prom_counter(f, "cache_index_evictions_total",
		     "Entries dropped because both index buckets were full.", s->index_evictions);
}

/* ---- the sampler ---- */

/* Render into a fresh body with @fn; 0 or -ENOMEM. */
static int render(struct body *out, struct dash_http *h, const struct hc_stats *s,
		  void (*fn)(FILE *, struct dash_http *, const struct hc_stats *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	fn(f, h, s);
	bool bad = ferror(f);
	if (fclose(f) || bad) {
		free(buf);
		return -ENOMEM;
	}
	out->data = buf;
	out->len = len;
	out->etag = hc_hash64(buf, len, 0);
	return 0;
}

/* One sample: snapshot, model, bodies.  Returns hc_stats' result or -ENOMEM. */
static int sample(struct dash_http *h)
{
	struct body json = {0}, metrics = {0};
	locale_t old = uselocale(h->c_locale);
	int rc = hc_stats(h->c, h->snap);
	uint64_t now = clock_ms(CLOCK_MONOTONIC);
	if (rc == 0) {
		model_feed(h->model, h->snap, now);
		rc = render(&json, h, h->snap, stats_json);
		if (rc == 0)
			rc = render(&metrics, h, h->snap, metrics_text);
	}
	uselocale(old);

	pthread_mutex_lock(&h->lock);
	h->sample_rc = rc;
	if (rc == 0) {
		struct body t = h->json;
		h->json = json, json = t;
		t = h->metrics;
		h->metrics = metrics, metrics = t;
		h->sampled_ms = now;
	}
	pthread_mutex_unlock(&h->lock);
	free(json.data); /* the previous bodies, or the half-rendered ones */
	free(metrics.data);
	return rc;
}

static void *sampler_main(void *arg)
{
	struct dash_http *h = arg;
	uint64_t next = clock_ms(CLOCK_MONOTONIC);
	pthread_mutex_lock(&h->lock);
	while (!h->stopping) {
		next += h->sample_ms;
		uint64_t now = clock_ms(CLOCK_MONOTONIC);
		if (next < now) /* fell behind (suspended, slow): skip, do not burst */
			next = now;
		struct timespec until = {.tv_sec = (time_t)(next / 1000),
					 .tv_nsec = (long)(next % 1000) * 1000000};
		while (!h->stopping && pthread_cond_timedwait(&h->wake, &h->lock, &until) == 0)
			;
		if (h->stopping)
			break;
		pthread_mutex_unlock(&h->lock);
		sample(h);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* ---- responses ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     struct MHD_Response *resp, const char *type)
{
	if (!resp)
		return MHD_NO;
	if (type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	connguard_received(conn);
	enum MHD_Result ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static struct MHD_Response *copy_of(const void *data, size_t len)
{
	return MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
}

/* A short text/plain answer (errors, /healthz). */
static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *fmt,
				  ...) __attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *fmt,
				  ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	return reply(conn, status, copy_of(msg, (size_t)n), "text/plain; charset=utf-8");
}

/* Answer with a copy of @b (a rendered body), or 304 if the client has it. */
static enum MHD_Result reply_body(struct dash_http *h, struct MHD_Connection *conn,
				  const struct body *b, const char *type, bool conditional)
{
	const char *inm =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	char etag[HC_ETAG_BUFSZ];
	struct MHD_Response *resp;
	unsigned status = MHD_HTTP_OK;

	pthread_mutex_lock(&h->lock);
	if (!b->data) {
		pthread_mutex_unlock(&h->lock);
		return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot yet\n");
	}
	hc_etag_format(b->etag, etag, sizeof(etag));
	if (conditional && inm && hc_etag_match(inm, strlen(inm), b->etag) == 1) {
		status = MHD_HTTP_NOT_MODIFIED;
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	} else {
		resp = copy_of(b->data, b->len);
	}
	pthread_mutex_unlock(&h->lock);
	if (resp && conditional)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	return reply(conn, status, resp, status == MHD_HTTP_OK ? type : NULL);
}

static enum MHD_Result serve_page(struct MHD_Connection *conn)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		dash_page_html_len, (void *)dash_page_html, MHD_RESPMEM_PERSISTENT);
	if (resp) {
		MHD_add_response_header(resp, "Content-Security-Policy",
					"default-src 'none'; script-src 'unsafe-inline'; "
					"style-src 'unsafe-inline'; connect-src 'self'; "
					"img-src data:; base-uri 'none'; form-action 'none'; "
					"frame-ancestors 'none'");
		MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	}
	return reply(conn, MHD_HTTP_OK, resp, "text/html; charset=utf-8");
}

static enum MHD_Result serve_healthz(struct dash_http *h, struct MHD_Connection *conn)
{
	pthread_mutex_lock(&h->lock);
	int rc = h->sample_rc;
	uint64_t age = clock_ms(CLOCK_MONOTONIC) - h->sampled_ms;
	pthread_mutex_unlock(&h->lock);
	uint64_t limit = 5 * (uint64_t)h->sample_ms < 5000 ? 5000 : 5 * (uint64_t)h->sample_ms;
	if (rc < 0)
		return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable: %s\n",
				  hc_strerror(rc));
	if (age > limit)
		return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				  "stale: no snapshot for %" PRIu64 " ms\n", age);
	return reply_text(conn, MHD_HTTP_OK, "ok\n");
}

/* ---- the mutating endpoints ---- */

/* Compare in time that depends on the configured token's length only. */
static bool token_equal(const char *want, size_t wlen, const char *got, size_t glen)
{
	volatile unsigned char diff = wlen != glen;
	for (size_t i = 0; i < wlen; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < glen ? got[i] : 0);
	return diff == 0;
}

/* Does "Authorization: Bearer <token>" carry the configured token? */
static bool authorized(const struct dash_http *h, struct MHD_Connection *conn)
{
	const char *v =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!v || strncasecmp(v, "Bearer", 6) || (v[6] != ' ' && v[6] != '\t'))
		return false;
	v += 6;
	while (*v == ' ' || *v == '\t')
		v++;
	size_t n = strlen(v);
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return token_equal(h->token, h->token_len, v, n);
}

/* The handle that may write: @c, or a read-write one opened once. */
static int writable(struct dash_http *h, struct hc_cache **out)
{
	int rc = 0;
	pthread_mutex_lock(&h->rw_lock);
	if (!h->rw)
		rc = hc_open(h->name, &(struct hc_options){0}, &h->rw);
	*out = h->rw;
	pthread_mutex_unlock(&h->rw_lock);
	return rc;
}

static enum MHD_Result serve_mutation(struct dash_http *h, struct MHD_Connection *conn, bool flush)
{
	if (!h->token)
		return reply_text(conn, MHD_HTTP_FORBIDDEN,
				  "forbidden: no token is configured, so the dashboard changes "
				  "nothing (set HOSTCACHE_DASH_TOKEN)\n");
	if (!authorized(h, conn)) {
		static const char msg[] = "unauthorized: a valid bearer token is needed\n";
		struct MHD_Response *resp = copy_of(msg, sizeof(msg) - 1);
		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
						"Bearer realm=\"hostcache\"");
		return reply(conn, MHD_HTTP_UNAUTHORIZED, resp, "text/plain; charset=utf-8");
	}

	const char *key = NULL;
	size_t klen = 0;
	if (!flush) {
		if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, "key", 3, &key,
						  &klen) != MHD_YES ||
		    !key || klen == 0)
			return reply_text(conn, MHD_HTTP_BAD_REQUEST, "missing ?key=KEY\n");
		if (klen > HC_KEY_MAX)
			return reply_text(conn, MHD_HTTP_BAD_REQUEST, "key longer than %u bytes\n",
					  HC_KEY_MAX);
	}

	struct hc_cache *w;
	int rc = writable(h, &w);
	if (rc < 0)
		return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				  "unavailable: the dashboard's handle is read-only and a "
				  "read-write one could not be opened: %s\n",
				  hc_strerror(rc));

	char msg[96];
	if (flush) {
		int64_t n = hc_flush(w);
		if (n < 0)
			return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
					  "flush failed: %s\n", hc_strerror((int)n));
		snprintf(msg, sizeof(msg), "{\"flushed\":%" PRId64 "}\n", n);
	} else {
		rc = hc_invalidate(w, key, klen);
		if (rc < 0 && rc != HC_E_AGAIN)
			return reply_text(conn,
					  rc == HC_E_INVAL || rc == HC_E_TOOBIG
						  ? MHD_HTTP_BAD_REQUEST
						  : MHD_HTTP_INTERNAL_SERVER_ERROR,
					  "invalidate failed: %s\n", hc_strerror(rc));
		snprintf(msg, sizeof(msg), "{\"invalidated\":true,\"remote\":\"%s\"}\n",
			 rc == 0 ? "ok" : "not told: the agent is dead or its ring is full");
	}
	return reply(conn, MHD_HTTP_OK, copy_of(msg, strlen(msg)),
		     "application/json; charset=utf-8");
}

/* ---- routing ---- */

enum route { R_PAGE, R_STATS, R_METRICS, R_HEALTHZ, R_FLUSH, R_INVALIDATE };

static const struct {
	const char *path;
	enum route route;
	bool post; /* POST only; the others answer GET and HEAD */
} routes[] = {
	{"/", R_PAGE, false},
	{"/index.html", R_PAGE, false},
	{"/api/stats", R_STATS, false},
	{"/metrics", R_METRICS, false},
	{"/healthz", R_HEALTHZ, false},
	{"/api/flush", R_FLUSH, true},
	{"/api/invalidate", R_INVALIDATE, true},
};

/* Per request: how much body came (we read none, but must not be flooded). */
struct request {
	size_t body;
};

/* Does the Host header (if any) name the loopback host? */
static bool host_is_loopback(struct MHD_Connection *conn)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	char host[64];
	if (!v)
		return true; /* HTTP/1.0 */
	size_t n;
	if (*v == '[') {
		const char *end = strchr(v, ']');
		return end && end - v == 4 && !strncmp(v, "[::1]", 5);
	}
	n = strcspn(v, ":");
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, v, n);
	host[n] = '\0';
	struct in_addr a;
	if (inet_pton(AF_INET, host, &a) == 1)
		return (ntohl(a.s_addr) >> 24) == 127;
	return !strcasecmp(host, "localhost");
}

static enum MHD_Result dispatch(struct dash_http *h, struct MHD_Connection *conn, const char *url,
				const char *method)
{
	size_t r;
	for (r = 0; r < sizeof(routes) / sizeof(routes[0]); r++)
		if (!strcmp(url, routes[r].path))
			break;
	if (r == sizeof(routes) / sizeof(routes[0]))
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
	bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
	if (routes[r].post ? !post : !get) {
		static const char msg[] = "method not allowed\n";
		struct MHD_Response *resp = copy_of(msg, sizeof(msg) - 1);
		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
						routes[r].post ? "POST" : "GET, HEAD");
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp, "text/plain; charset=utf-8");
	}
	if (h->loopback && !host_is_loopback(conn))
		return reply_text(conn, MHD_HTTP_FORBIDDEN,
				  "forbidden: the Host header must name the loopback host\n");

	switch (routes[r].route) {
	case R_PAGE:
		return serve_page(conn);
	case R_STATS:
		return reply_body(h, conn, &h->json, "application/json; charset=utf-8", true);
	case R_METRICS:
		return reply_body(h, conn, &h->metrics, "text/plain; version=0.0.4; charset=utf-8",
				  false);
	case R_HEALTHZ:
		return serve_healthz(h, conn);
	case R_FLUSH:
		return serve_mutation(h, conn, true);
	case R_INVALIDATE:
		return serve_mutation(h, conn, false);
	}
	return MHD_NO;
}

/*
 * libmicrohttpd calls this first with the headers only (*con_cls NULL),
 * then once per piece of body, then once with *upload_data_size 0.  Limits
 * that can be seen from the headers are answered at once (libmicrohttpd
 * then closes the connection rather than read the body); the rest is
 * answered on the last call.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct dash_http *h = cls;
	struct request *rq = *con_cls;
	(void)version;
	(void)upload_data;

	if (!rq) {
		if (!(rq = calloc(1, sizeof(*rq))))
			return MHD_NO;
		*con_cls = rq;
		if (strlen(url) > URL_MAX)
			return reply_text(conn, MHD_HTTP_URI_TOO_LONG, "request target too long\n");
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && (strlen(cl) > 9 || strtoul(cl, NULL, 10) > BODY_MAX))
			return reply_text(conn, MHD_HTTP_CONTENT_TOO_LARGE,
					  "request body over %d bytes\n", BODY_MAX);
		return MHD_YES;
	}
	if (*upload_data_size) {
		rq->body += *upload_data_size;
		*upload_data_size = 0;
		return rq->body > BODY_CUT ? MHD_NO : MHD_YES;
	}
	if (rq->body > BODY_MAX)
		return reply_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body over %d bytes\n",
				  BODY_MAX);
	return dispatch(h, conn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)toe;
	connguard_completed(conn);
	free(*con_cls);
	*con_cls = NULL;
}

/*
 * libmicrohttpd's messages: shown while the server starts (why a bind
 * failed), dropped once it serves.  From then on they are about clients'
 * bad requests, which get their 4xx anyway, and stderr may be the terminal
 * hostcache-top draws on.
 */
static void on_log(void *cls, const char *fmt, va_list ap)
{
	struct dash_http *h = cls;
	char msg[256];
	if (atomic_load_explicit(&h->serving, memory_order_relaxed))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	fprintf(stderr, "http: %s\n", msg);
}

/* ---- start and stop ---- */

/* Strict decimal port: digits only, at most 65535. */
static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	if (!*s || strlen(s) > 5)
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* "ADDR:PORT", ":PORT" or "PORT" (IPv4; ADDR may be "localhost"). */
static int parse_bind(const char *bind, struct sockaddr_in *sa)
{
	char addr[64];
	const char *colon = strrchr(bind, ':');
	const char *port = colon ? colon + 1 : bind;
	size_t n = colon ? (size_t)(colon - bind) : 0;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (n >= sizeof(addr) || parse_port(port, &sa->sin_port))
		return -1;
	sa->sin_port = htons(sa->sin_port);
	if (n == 0)
		return 0;
	memcpy(addr, bind, n);
	addr[n] = '\0';
	if (!strcasecmp(addr, "localhost"))
		return 0;
	return inet_pton(AF_INET, addr, &sa->sin_addr) == 1 ? 0 : -1;
}

void dash_http_stop(struct dash_http *h)
{
	if (!h)
		return;
	if (h->daemon)
		MHD_stop_daemon(h->daemon); /* no request runs after this */
	connguard_stop(h->guard);
	if (h->sampler_running) {
		pthread_mutex_lock(&h->lock);
		h->stopping = true;
		pthread_cond_signal(&h->wake);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->sampler, NULL);
	}
	if (h->rw && h->rw != h->c)
		hc_close(h->rw);
	if (h->token) {
		memset(h->token, 0, h->token_len);
		free(h->token);
	}
	if (h->c_locale)
		freelocale(h->c_locale);
	free(h->json.data);
	free(h->metrics.data);
	model_free(h->model);
	free(h->snap);
	free(h->rows);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->rw_lock);
	free(h);
}

int dash_http_start(struct hc_cache *c, const struct dash_http_opts *o, struct dash_http **out)
{
	const char *bind = o && o->bind && *o->bind ? o->bind : "127.0.0.1:0";
	struct hc_info info;
	pthread_condattr_t ca;
	char shown[INET_ADDRSTRLEN];
	int rc;

	if (!out)
		return HC_E_INVAL;
	*out = NULL;
	if (!c)
		return HC_E_INVAL;
	struct dash_http *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->c = c;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->rw_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->wake, &ca);
	pthread_condattr_destroy(&ca);

	if (parse_bind(bind, &h->addr)) {
		fprintf(stderr,
			"http: bad address '%s': expected ADDR:PORT (IPv4, e.g. "
			"127.0.0.1:8080)\n",
			bind);
		rc = HC_E_INVAL;
		goto fail;
	}
	inet_ntop(AF_INET, &h->addr.sin_addr, shown, sizeof(shown));
	h->loopback = (ntohl(h->addr.sin_addr.s_addr) >> 24) == 127;
	if (!h->loopback)
		fprintf(stderr,
			"http: warning: serving on %s, not a loopback address: whoever can reach "
			"it can read the statistics\n",
			shown);

	if ((rc = hc_info(c, &info)) < 0) {
		fprintf(stderr, "http: cannot describe the segment: %s\n", hc_strerror(rc));
		goto fail;
	}
	memcpy(h->name, info.name, sizeof(h->name));
	h->name[HC_NAME_MAX] = '\0';
	h->read_only = info.read_only;
	if (!h->read_only)
		h->rw = c;
	if (o && o->token && *o->token) {
		h->token_len = strlen(o->token);
		if (!(h->token = strdup(o->token))) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	h->sample_ms = o && o->sample_ms ? o->sample_ms : 1000;
	if (h->sample_ms < SAMPLE_MIN_MS)
		h->sample_ms = SAMPLE_MIN_MS;

	h->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	h->model = model_new();
	h->snap = malloc(sizeof(*h->snap));
	h->rows = calloc(HC_MAX_ENTITIES, sizeof(*h->rows));
	if (!h->c_locale || !h->model || !h->snap || !h->rows) {
		rc = -ENOMEM;
		goto fail;
	}
	/* the first bodies before the first request */
	if ((rc = sample(h)) < 0) {
		fprintf(stderr, "http: cannot read the statistics: %s\n", hc_strerror(rc));
		goto fail;
	}
	if ((rc = -pthread_create(&h->sampler, NULL, sampler_main, h)) < 0) {
		fprintf(stderr, "http: cannot start the sampler: %s\n", strerror(-rc));
		goto fail;
	}
	h->sampler_running = true;

	if ((rc = connguard_start(&h->guard, CONN_LIMIT, REQUEST_DEADLINE_MS)) < 0) {
		fprintf(stderr, "http: cannot start the connection guard: %s\n", strerror(-rc));
		goto fail;
	}
	errno = 0;
	h->daemon = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG,
		ntohs(h->addr.sin_port), NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
		on_log, h, /* first, or some messages escape it */
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&h->addr,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
		MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT + CONNGUARD_HEADROOM,
		MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION,
		connguard_notify, h->guard, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_END);
	if (!h->daemon) {
		rc = errno ? -errno : -EADDRNOTAVAIL;
		fprintf(stderr, "http: cannot listen on %s:%u: %s\n", shown,
			ntohs(h->addr.sin_port), strerror(-rc));
		goto fail;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = di && di->port ? di->port : ntohs(h->addr.sin_port);
	atomic_store(&h->serving, true);
	*out = h;
	return 0;

fail:
	dash_http_stop(h);
	return rc;
}

int dash_http_port(const struct dash_http *h)
{
	return h ? h->port : 0;
}
