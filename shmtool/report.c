/*
 * report.c - the shmtool commands that look at a segment without changing
 * its entries: info, stats, check and readers.  All attach read-only
 * (HC_RDONLY), so they work on a segment another user's workers write
 * (given group access) and cannot disturb it; only "readers --reap"
 * attaches read-write.
 *
 * info and stats print text for people and, with --json, one JSON object
 * for programs.  The JSON shapes are an interface: each object carries
 * "version": 1, and within a version fields are only ever added, never
 * renamed, removed or retyped.  Every number is an integer; strings are
 * ASCII, with bytes outside printable ASCII written as \u00XX (the byte's
 * value), since entity names come from binary keys and need not be UTF-8.
 *
 *   info:  {version, name, abi_version, layout_hash, size, uid, gid,
 *           mode ("0600"), creator_pid, created_unix_ms, max_threads,
 *           max_value, slab_size, slabs_total, nclasses, index_buckets,
 *           bucket_slots, index_bytes, arena_bytes, meta_bytes}
 *   stats: {version, name,
 *           segment: {size, arena_size, slab_size, slabs_total, slabs_used,
 *                     index_slots, threads_active, created_unix_ms},
 *           items, bytes,
 *           layers: {l1: C, l2: C, origin: C},
 *           classes: [{class, block_size, slabs, items, bytes}]
 *                    (only classes that have slabs or items),
 *           entities: [{name, layers: {l1: C, l2: C, origin: C}, loading: L,
 *                       beta}]  (beta x 1000; -1000 when XFetch is off)
 *                    (name "" for keys without an "entity:" prefix),
 *           loading: {flights_total, flights_active, L},
 *           agent: {pid, alive, heartbeat_age_ms, redis ("up", "down",
 *                   "unknown"), ring_size, ring_depth, ring_drops,
 *                   l2_skipped, ring_skipped, l2_timeouts, round_trips,
 *                   commands, l2_errors, write_fails, inv_received,
 *                   inv_applied, inv_malformed, inv_echoes, inv_published,
 *                   reconnects, resyncs, l2_latency: [{le_us, count}]},
 *           reclamation: {epoch, safe_epoch, reclaim_waits, reclaim_stalls,
 *                         slots_reaped, blocks_recovered, slab_moves,
 *                         index_evictions}}
 *   where C = {hits, misses, sets, deletes, evictions, expirations,
 *              stale_hits, negative_hits, errors, set_fails}
 *   and   L = {leaders, coalesced, takeovers, lease_expiries,
 *              early_refreshes, stale_refreshes, stale_served, loads,
 *              load_errors, uncoalesced, batch_calls,
 *              load_latency: [{le_us, count}] (le_us 0 for the last bucket:
 *              no upper bound)}.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "shmtool.h"
#include "statsjson.h"

/* ---- shared ---- */

#define layer_names stats_layer_names
#define NCOUNTERS stats_ncounters

static uint64_t counter(const struct hc_counters *c, size_t k)
{
	return stats_u64(c, &stats_counters[k]);
}

static bool counters_zero(const struct hc_counters *c)
{
	for (size_t k = 0; k < NCOUNTERS; k++)
		if (counter(c, k))
			return false;
	return true;
}

/*
 * The common start of every read-only command: options, name, attach.
 * *c stays NULL when the command is done already (-h) or failed.
 */
static int open_report(struct tool *t, int argc, char **argv, const struct option *longopts,
		       bool *json, struct hc_cache **c)
{
	int ch, rc;
	*c = NULL;
	while ((ch = shm_getopt(t, argc, argv, "hn:", longopts, &rc)) != -1) {
		if (ch == SHM_OPT_EXIT)
			return rc;
		if (ch == 'j')
			*json = true;
	}
	if ((rc = shm_positional(t, argc, argv, 0, 0, "")) || (rc = shm_need_name(t)))
		return rc;
	return shm_open_cache(t, &(struct hc_options){.flags = HC_RDONLY}, c);
}

static const struct option json_longopts[] = {
	{"json", no_argument, NULL, 'j'},
	SHM_COMMON_LONGOPTS,
	{NULL, 0, NULL, 0},
};

/* ---- info ---- */

static void info_json(const struct hc_info *in)
{
	struct sj j = {.f = stdout, .pretty = true};
	char mode[8];
	snprintf(mode, sizeof(mode), "%04o", in->mode);
	sj_open(&j, NULL, '{');
	sj_u64(&j, "version", 1);
	sj_str(&j, "name", in->name, strlen(in->name));
	sj_u64(&j, "abi_version", in->abi_version);
	sj_u64(&j, "layout_hash", in->layout_hash);
	sj_u64(&j, "size", in->size);
	sj_u64(&j, "uid", in->uid);
	sj_u64(&j, "gid", in->gid);
	sj_str(&j, "mode", mode, strlen(mode));
	sj_i64(&j, "creator_pid", in->creator_pid);
	sj_u64(&j, "created_unix_ms", in->created_unix_ms);
	sj_u64(&j, "max_threads", in->max_threads);
	sj_u64(&j, "max_value", in->max_value);
	sj_u64(&j, "slab_size", in->slab_size);
	sj_u64(&j, "slabs_total", in->slabs_total);
	sj_u64(&j, "nclasses", in->nclasses);
	sj_u64(&j, "index_buckets", in->index_buckets);
	sj_u64(&j, "bucket_slots", in->bucket_slots);
	sj_u64(&j, "index_bytes", in->index_bytes);
	sj_u64(&j, "arena_bytes", in->arena_bytes);
	sj_u64(&j, "meta_bytes", in->meta_bytes);
	sj_close(&j, '}');
}

static void info_text(const struct hc_info *in)
{
	char a[32], b[32], when[48];
	printf("segment       %s (/dev/shm/hostcache.%s)\n", in->name, in->name);
	printf("abi version   %" PRIu32 " (layout %08" PRIx32 ")\n", in->abi_version,
	       in->layout_hash);
	printf("size          %s (%" PRIu64 " bytes)\n", shm_human_bytes(a, sizeof(a), in->size),
	       in->size);
	printf("  index       %s: %" PRIu32 " buckets of %" PRIu32 " slots (%" PRIu64 " entries)\n",
	       shm_human_bytes(a, sizeof(a), in->index_bytes), in->index_buckets, in->bucket_slots,
	       (uint64_t)in->index_buckets * in->bucket_slots);
	printf("  arena       %s: %" PRIu32 " slabs of %s\n",
	       shm_human_bytes(a, sizeof(a), in->arena_bytes), in->slabs_total,
	       shm_human_bytes(b, sizeof(b), in->slab_size));
	printf("  metadata    %s (header, thread slots, slab table)\n",
	       shm_human_bytes(a, sizeof(a), in->meta_bytes));
	printf("size classes  %" PRIu32 "\n", in->nclasses);
	printf("max value     %s (%" PRIu32 " bytes)\n",
	       shm_human_bytes(a, sizeof(a), in->max_value), in->max_value);
	printf("thread slots  %" PRIu32 "\n", in->max_threads);
	printf("owner         uid %" PRIu32 ", gid %" PRIu32 ", mode %04" PRIo32 "\n", in->uid,
	       in->gid, in->mode);
	printf("created       %s by pid %" PRId32 "\n",
	       shm_iso_time(when, sizeof(when), in->created_unix_ms), in->creator_pid);
}

int shm_cmd_info(struct tool *t, int argc, char **argv)
{
	struct hc_cache *c;
	bool json = false;
	int rc = open_report(t, argc, argv, json_longopts, &json, &c);
	if (!c)
		return rc;
	struct hc_info in;
	rc = hc_info(c, &in);
	hc_close(c);
	if (rc < 0)
		return shm_fail(rc, "info of '%s'", t->name);
	if (json)
		info_json(&in);
	else
		info_text(&in);
	return SHM_EXIT_OK;
}

/* ---- stats ---- */

static bool class_shown(const struct hc_class_stats *cs)
{
	return cs->slabs || cs->items;
}

/* Upper bound (us) of the bucket that holds quantile @q of the loads; 0 if none. */
static uint64_t hist_quantile(const struct hc_load_stats *l, double q)
{
	uint64_t n = 0, seen = 0;
	for (int b = 0; b < HC_HIST_N; b++)
		n += l->load_hist[b];
	if (!n)
		return 0;
	for (int b = 0; b < HC_HIST_N; b++) {
		seen += l->load_hist[b];
		if ((double)seen >= q * (double)n)
			return HC_HIST_BOUND_US(b);
	}
	return HC_HIST_BOUND_US(HC_HIST_N - 1);
}

static void stats_json(const char *name, const struct hc_stats *s)
{
	struct sj j = {.f = stdout, .pretty = true};
	sj_open(&j, NULL, '{');
	sj_u64(&j, "version", 1);
	sj_str(&j, "name", name, strlen(name));
	stats_json_members(&j, s);
	sj_close(&j, '}');
}

static void counters_head(const char *first)
{
	printf("%-16s %-6s", first, "layer");
	for (size_t k = 0; k < NCOUNTERS; k++)
		printf(" %10s", stats_counters[k].head);
	putchar('\n');
}

static void counters_row(const char *first, int layer, const struct hc_counters *c)
{
	printf("%-16s %-6s", first, layer_names[layer]);
	for (size_t k = 0; k < NCOUNTERS; k++)
		printf(" %10" PRIu64, counter(c, k));
	putchar('\n');
}

static void stats_text(const char *name, const struct hc_stats *s)
{
	char a[32], b[32], when[48];
	printf("segment      %s: %s, created %s\n", name,
	       shm_human_bytes(a, sizeof(a), s->segment_size),
	       shm_iso_time(when, sizeof(when), s->created_unix_ms));
	printf("arena        %s in %" PRIu32 " slabs of %s, %" PRIu32 " in use\n",
	       shm_human_bytes(a, sizeof(a), s->arena_size), s->slabs_total,
	       shm_human_bytes(b, sizeof(b), s->slab_size), s->slabs_used);
	printf("index        %" PRIu64 " slots, %.1f%% used\n", s->index_slots,
	       s->index_slots ? 100.0 * (double)s->items / (double)s->index_slots : 0.0);
	printf("items        %" PRIu64 " (%s of keys and values)\n", s->items,
	       shm_human_bytes(a, sizeof(a), s->bytes));
	printf("threads      %" PRIu32 " thread slots in use\n", s->threads_active);

	printf("\n");
	counters_head("counters");
	for (int l = 0; l < HC_LAYER_COUNT; l++)
		counters_row("all entities", l, &s->layer[l]);

	printf("\nmemory by size class\n%5s %10s %6s %12s %12s\n", "class", "block", "slabs",
	       "items", "bytes");
	for (uint32_t k = 0; k < s->nclasses && k < HC_MAX_CLASSES; k++) {
		const struct hc_class_stats *cs = &s->cls[k];
		if (class_shown(cs))
			printf("%5" PRIu32 " %10" PRIu32 " %6" PRIu32 " %12" PRIu64 " %12" PRIu64
			       "\n",
			       k, cs->block_size, cs->slabs, cs->items, cs->bytes);
	}

	/* one row per layer the entity used; an idle entity still gets its l1 row */
	printf("\n");
	counters_head("entity");
	for (uint32_t e = 0; e < s->nentities && e < HC_MAX_ENTITIES; e++) {
		const struct hc_entity_stats *es = &s->entity[e];
		char shown[24];
		size_t n = strnlen(es->name, sizeof(es->name));
		if (n)
			shm_escape(shown, sizeof(shown), es->name, n);
		else
			snprintf(shown, sizeof(shown), "(no prefix)");
		for (int l = 0; l < HC_LAYER_COUNT; l++)
			if (l == HC_LAYER_L1 || !counters_zero(&es->layer[l]))
				counters_row(shown, l, &es->layer[l]);
	}

	const struct hc_load_stats *l = &s->load;
	printf("\nloading      %" PRIu32 " of %" PRIu32 " flight records in use\n",
	       s->flights_active, s->flights_total);
	printf("  loads              %" PRIu64 " (%" PRIu64 " failed); %" PRIu64
	       " batch-loader calls\n",
	       l->loads, l->load_errors, l->batch_calls);
	if (l->loads)
		printf("  load latency       p50 <= %" PRIu64 " us, p99 <= %" PRIu64 " us\n",
		       hist_quantile(l, 0.5), hist_quantile(l, 0.99));
	printf("  single-flight      %" PRIu64 " leaders, %" PRIu64 " coalesced waiters, %" PRIu64
	       " takeovers, %" PRIu64 " lease expiries, %" PRIu64 " uncoalesced\n",
	       l->leaders, l->coalesced, l->takeovers, l->lease_expiries, l->uncoalesced);
	printf("  refreshes          %" PRIu64 " early (XFetch), %" PRIu64
	       " stale-while-revalidate; %" PRIu64 " stale values served\n",
	       l->early_refreshes, l->stale_refreshes, l->stale_served);
	for (uint32_t e = 0; e < s->nentities && e < HC_MAX_ENTITIES; e++) {
		const struct hc_entity_stats *es = &s->entity[e];
		if (!es->load.loads && !es->load.coalesced && !es->load.stale_served)
			continue;
		char shown[24];
		size_t n = strnlen(es->name, sizeof(es->name));
		if (n)
			shm_escape(shown, sizeof(shown), es->name, n);
		else
			snprintf(shown, sizeof(shown), "(no prefix)");
		printf("  %-16s %" PRIu64 " loads, %" PRIu64 " coalesced, %" PRIu64
		       " stale served, p50 <= %" PRIu64 " us, beta %.2f\n",
		       shown, es->load.loads, es->load.coalesced, es->load.stale_served,
		       hist_quantile(&es->load, 0.5), es->beta);
	}

	const struct hc_agent_stats *ag = &s->agent;
	if (ag->pid)
		printf("\nagent        pid %d, %s (heartbeat %lld ms ago), redis %s\n", ag->pid,
		       ag->alive ? "alive" : "NOT ALIVE", (long long)ag->heartbeat_age_ms,
		       stats_redis_state(ag->redis_state));
	else
		printf("\nagent        none: workers use L1 and the origin only\n");
	printf("  ring               %" PRIu64 " of %" PRIu32 " queued; %" PRIu64
	       " dropped (full), %" PRIu64 " L2 skipped (no agent), %" PRIu64
	       " dead writers skipped, %" PRIu64 " L2 waits timed out\n",
	       ag->ring_depth, ag->ring_size, ag->ring_drops, ag->l2_skipped, ag->ring_skipped,
	       ag->l2_timeouts);
	printf("  redis              %" PRIu64 " round trips, %" PRIu64 " commands, %" PRIu64
	       " errors, %" PRIu64 " failed writes, %" PRIu64 " reconnects\n",
	       ag->ctr[HC_AG_ROUND_TRIPS], ag->ctr[HC_AG_COMMANDS], ag->ctr[HC_AG_L2_ERRORS],
	       ag->ctr[HC_AG_WRITE_FAILS], ag->ctr[HC_AG_RECONNECTS]);
	printf("  invalidations      %" PRIu64 " received, %" PRIu64 " keys applied, %" PRIu64
	       " malformed, %" PRIu64 " own echoes, %" PRIu64 " published, %" PRIu64 " resyncs\n",
	       ag->ctr[HC_AG_INV_RECEIVED], ag->ctr[HC_AG_INV_APPLIED],
	       ag->ctr[HC_AG_INV_MALFORMED], ag->ctr[HC_AG_INV_ECHOES],
	       ag->ctr[HC_AG_INV_PUBLISHED], ag->ctr[HC_AG_RESYNCS]);

	printf("\nreclamation\n");
	printf("  epoch              %" PRIu64 " (safe %" PRIu64 ")\n", s->epoch, s->safe_epoch);
	printf("  grace waits        %" PRIu64 "\n", s->reclaim_waits);
	printf("  stalled readers    %" PRIu64 "\n", s->reclaim_stalls);
	printf("  slots reaped       %" PRIu64 "\n", s->slots_reaped);
	printf("  blocks recovered   %" PRIu64 "\n", s->blocks_recovered);
	printf("  slab moves         %" PRIu64 "\n", s->slab_moves);
	printf("  index evictions    %" PRIu64 "\n", s->index_evictions);
}

int shm_cmd_stats(struct tool *t, int argc, char **argv)
{
	struct hc_cache *c;
	bool json = false;
	int rc = open_report(t, argc, argv, json_longopts, &json, &c);
	if (!c)
		return rc;
	/* about 70 KiB: too much for the stack of a small tool's habits */
	struct hc_stats *s = malloc(sizeof(*s));
	rc = s ? hc_stats(c, s) : -ENOMEM;
	hc_close(c);
	if (rc < 0) {
		free(s);
		return shm_fail(rc, "stats of '%s'", t->name);
	}
	if (json)
		stats_json(t->name, s);
	else
		stats_text(t->name, s);
	free(s);
	return SHM_EXIT_OK;
}

/* ---- check ---- */

static void print_finding(void *ctx, int severity, const char *msg)
{
	(void)ctx;
	printf("%s: %s\n", severity == HC_CHECK_ERROR ? "ERROR" : "WARN", msg);
}

int shm_cmd_check(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {SHM_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
	struct hc_cache *c;
	bool unused = false;
	int rc = open_report(t, argc, argv, longopts, &unused, &c);
	if (!c)
		return rc;
	struct hc_check_result res = {0};
	rc = hc_check(c, print_finding, NULL, &res);
	hc_close(c);
	if (rc < 0)
		return shm_fail(rc, "check of '%s'", t->name);
	printf("check: %" PRIu64 " errors, %" PRIu64 " warnings; %" PRIu64 " entries, %" PRIu64
	       " blocks (%" PRIu64 " free, %" PRIu64 " allocated, %" PRIu64 " live, %" PRIu64
	       " retired)\n",
	       res.errors, res.warnings, res.entries, res.blocks, res.blocks_free, res.blocks_alloc,
	       res.blocks_live, res.blocks_retired);
	return res.errors > 0 ? SHM_EXIT_FAIL : SHM_EXIT_OK;
}

/* ---- readers ---- */

static void print_reader(void *ctx, const struct hc_reader *r)
{
	(void)ctx;
	char epoch[24] = "-";
	if (r->epoch)
		snprintf(epoch, sizeof(epoch), "%" PRIu64, r->epoch);
	printf("%6" PRIu32 " %10" PRId32 " %10" PRId32 " %5s %s\n", r->slot, r->pid, r->tid,
	       r->alive ? "yes" : "no", epoch);
}

int shm_cmd_readers(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"reap", no_argument, NULL, 'r'},
		SHM_COMMON_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	bool reap = false;
	int ch, rc;
	while ((ch = shm_getopt(t, argc, argv, "hn:", longopts, &rc)) != -1) {
		if (ch == SHM_OPT_EXIT)
			return rc;
		if (ch == 'r')
			reap = true;
	}
	if ((rc = shm_positional(t, argc, argv, 0, 0, "")) || (rc = shm_need_name(t)))
		return rc;
	struct hc_cache *c;
	/* reaping writes the slots it frees; looking does not */
	if ((rc = shm_open_cache(t, &(struct hc_options){.flags = reap ? 0 : HC_RDONLY}, &c)))
		return rc;
	printf("%6s %10s %10s %5s %s\n", "slot", "pid", "tid", "alive", "epoch");
	rc = hc_readers(c, reap, print_reader, NULL);
	hc_close(c);
	if (rc < 0)
		return shm_fail(rc, "readers of '%s'", t->name);
	if (reap)
		printf("reaped %d dead thread slots\n", rc);
	return SHM_EXIT_OK;
}
