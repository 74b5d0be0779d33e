/*
 * capacity.c - the cases about how much a segment holds and how well it
 * chooses what to keep: mem_overhead (bytes per item beyond key and value,
 * hostcache and the baseline) and zipf_hit (hit ratio of hostcache's CLOCK
 * eviction against an exact LRU of the same capacity on a Zipf stream).
 * Both run in the parent process; neither is timed against the baseline.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "lru.h"
#include "zipf.h"

#define ZIPF_S 0.99
#define MEM_TARGET_B 48 /* DESIGN.md: per-item overhead target, bytes */

/* ---------------------------------------------------------------------- */
/* Case 5: memory overhead per item                                        */

struct fill_result {
	uint64_t items;	       /* live items at the last snapshot without eviction */
	uint64_t slabs_used;   /* slabs assigned then */
	uint64_t slab_size;    /* bytes per slab */
	uint64_t index_bytes;  /* the whole index (hc_info) */
	uint64_t meta_bytes;   /* header, thread slots, slab table (hc_info) */
	uint32_t block_size;   /* the items' size class */
	double overhead;       /* bytes per item beyond key and value */
	const char *stop;      /* what ended the fill */
	struct measure timing; /* of the sets that filled it */
};

static uint64_t evictions_of(const struct hc_stats *st)
{
	uint64_t n = st->index_evictions;
	for (int l = 0; l < HC_LAYER_COUNT; l++)
		n += st->layer[l].evictions;
	return n;
}

/*
 * Fill a fresh segment of @size bytes with 20-byte keys and 100-byte
 * values, BATCH sets at a time, and stop at the first batch after which
 * hc_stats reports an eviction (or fewer items than were stored).  The
 * snapshot before that batch is the full segment with every item live:
 *
 *   overhead = (slabs_used * slab_size + index_bytes) / items - (20 + 100)
 *
 * i.e. the arena memory the items' slabs occupy (entry headers, block
 * rounding, the unused tail of each slab) plus the hash index, which is
 * sized with the arena, shared out per item.  The fixed part of the segment
 * (header, thread slots, slab table: meta_bytes) does not grow with the
 * number of items and is left out.
 */
static void fill_until_eviction(const char *name, uint64_t size, uint32_t max_threads,
				struct fill_result *fr)
{
	struct hc_cache *c;
	struct hc_options o = {.size = size,
			       .flags = HC_CREATE | HC_EXCL,
			       .max_value = 4096,
			       .max_threads = max_threads};
	int rc = hc_open(name, &o, &c);
	if (rc)
		die("hc_open %s: %s", name, hc_strerror(rc));
	register_name(name, false);
	struct hc_info info;
	if ((rc = hc_info(c, &info)))
		die("hc_info: %s", hc_strerror(rc));
	static struct hc_stats st, last;
	memset(&last, 0, sizeof(last));
	memset(fr, 0, sizeof(*fr));

	float *sv = samples; /* the shared sample array is idle between runs */
	uint64_t ns = 0, timed = 0, id = 0;
	char keys[BATCH][KEY_LEN];
	uint8_t vals[BATCH][VAL_LEN];
	/* a 100-byte value cannot take less than a byte of arena: a hard stop */
	while (id < info.arena_bytes / VAL_LEN) {
		for (int j = 0; j < BATCH; j++) {
			make_key(id + (uint64_t)j, keys[j]);
			make_value(id + (uint64_t)j, vals[j]);
		}
		uint64_t t0 = now_ns();
		for (int j = 0; j < BATCH; j++)
			if ((rc = hc_set(c, keys[j], KEY_LEN, vals[j], VAL_LEN, 0)))
				die("fill: hc_set: %s", hc_strerror(rc));
		uint64_t t1 = now_ns();
		id += BATCH;
		timed += t1 - t0;
		if (ns < sample_cap)
			sv[ns++] = (float)(t1 - t0) / BATCH;
		if ((rc = hc_stats(c, &st)))
			die("hc_stats: %s", hc_strerror(rc));
		if (evictions_of(&st) > 0 || st.items < id) {
			fr->stop = st.index_evictions	   ? "index_eviction"
				   : evictions_of(&st) > 0 ? "eviction"
							   : "items_short";
			break;
		}
		last = st;
	}
	if (last.items == 0)
		die("fill: the first batch already evicted");
	fr->items = last.items;
	fr->slabs_used = last.slabs_used;
	fr->slab_size = last.slab_size;
	fr->index_bytes = info.index_bytes;
	fr->meta_bytes = info.meta_bytes;
	for (uint32_t k = 0; k < last.nclasses; k++)
		if (last.cls[k].items)
			fr->block_size = last.cls[k].block_size;
	fr->overhead = ((double)fr->slabs_used * (double)fr->slab_size + (double)fr->index_bytes) /
			       (double)fr->items -
		       (KEY_LEN + VAL_LEN);
	fr->timing.ops = id;
	fr->timing.sets = id;
	fr->timing.mops = timed ? (double)id * 1e3 / (double)timed : 0;
	percentiles(sv, ns, &fr->timing.p50, &fr->timing.p99);
	hc_close(c);
	release_name(name, false);
}

void case_mem(const struct cfg *cfg)
{
	(void)cfg;
	char name[96];
	snprintf(name, sizeof(name), "bench-%d-mem", (int)main_pid);
	struct fill_result fr;
	fprintf(stderr, "# mem_overhead: filling a 64 MiB segment\n");
	fill_until_eviction(name, 64 * MIB, 0, &fr);
	printf("SUMMARY case=mem_overhead system=hostcache procs=1 ops=%" PRIu64
	       " mops=%.3f p50_ns=%.1f p99_ns=%.1f ratio=- items=%" PRIu64
	       " overhead_b=%.1f target_b=%d block=%u slabs_used=%" PRIu64 " slab_size=%" PRIu64
	       " index_bytes=%" PRIu64 " meta_bytes=%" PRIu64 " stop=%s\n",
	       fr.timing.ops, fr.timing.mops, fr.timing.p50, fr.timing.p99, fr.items, fr.overhead,
	       MEM_TARGET_B, fr.block_size, fr.slabs_used, fr.slab_size, fr.index_bytes,
	       fr.meta_bytes, fr.stop ? fr.stop : "limit");

	/*
	 * The baseline on the same terms: fill to its first eviction; its
	 * whole object (fixed-size entries sized for 32-byte keys and 128-byte
	 * values, and the bucket array) divided by the items it held.
	 */
	snprintf(name, sizeof(name), "bench-rw-%d-mem", (int)main_pid);
	struct rwt *rw;
	const uint64_t cap = 100000;
	int rc = rwt_create(name, cap, 32, VAL_CAP, &rw);
	if (rc)
		die("rwtable create %s: %s", name, hc_strerror(rc));
	register_name(name, true);
	char key[KEY_LEN];
	uint8_t val[VAL_LEN];
	struct rwt_stats rs = {0}, rlast = {0};
	for (uint64_t id = 0;; id++) {
		make_key(id, key);
		make_value(id, val);
		if ((rc = rwt_set(rw, key, KEY_LEN, val, VAL_LEN)))
			die("rwtable set: %s", hc_strerror(rc));
		rwt_stats(rw, &rs);
		if (rs.evictions)
			break;
		rlast = rs;
	}
	printf("SUMMARY case=mem_overhead system=rwlock procs=1 ops=%" PRIu64
	       " mops=- p50_ns=- p99_ns=- ratio=- items=%" PRIu64 " overhead_b=%.1f entry=%" PRIu64
	       " buckets=%" PRIu64 " size=%" PRIu64 "\n",
	       rlast.items + 1, rlast.items, (double)rlast.size / (double)rlast.items - 120.0,
	       rlast.entry_size, rlast.nbuckets, rlast.size);
	fflush(stdout);
	rwt_close(rw);
	release_name(name, true);
}

/* ---------------------------------------------------------------------- */
/* Case 6: hit ratio against exact LRU on Zipf(0.99)                       */

/*
 * Keys 0..n-1 with Zipf(0.99) popularity (rank r is key r-1).  The
 * request stream (10 n requests: the first 2 n warm the cache up and are
 * not counted) is drawn once and replayed to both hostcache and the LRU
 * simulator.  Each request is a get and, on a miss, a set of the key's
 * value, the way an application fills its cache.
 *
 * The segment is sized for about n/10 items: a probe fill (case 5's
 * method, on a small segment) gives the bytes each item costs, and the
 * segment gets meta_bytes plus that many bytes per item.  hostcache holds
 * fewer items than blocks in steady state (evicted blocks wait out a grace
 * period before reuse, and the index can be the limit), so the number of
 * items it actually holds is sampled with hc_stats over the measured part
 * of the run, and the LRU simulator gets the mean, exactly, as its
 * capacity.  diff = hostcache hit ratio - LRU hit ratio.
 */
void case_zipf(const struct cfg *cfg)
{
	const uint64_t n = cfg->keys, total = 10 * n, warm = 2 * n;
	const uint64_t target_items = n / 10;
	if (n > UINT32_MAX || target_items < 100)
		die("zipf_hit needs 1,000 <= --keys <= 2^32");

	fprintf(stderr,
		"# zipf_hit: drawing %" PRIu64 " Zipf(%.2f) requests over %" PRIu64 " keys\n",
		total, ZIPF_S, n);
	uint32_t *seq = malloc(total * sizeof(*seq));
	if (!seq)
		die("out of memory for the request stream");
	struct zipf z;
	if (zipf_init(&z, n, ZIPF_S))
		die("zipf_init");
	uint64_t rng = 0x7a697066, top = 0;
	for (uint64_t i = 0; i < total; i++) {
		seq[i] = (uint32_t)(zipf_next(&z, &rng) - 1);
		top += seq[i] == 0;
	}
	double p1_obs = (double)top / (double)total, p1_exp = zipf_p1(n, ZIPF_S);

	/* bytes per item, from a probe fill of an 8 MiB segment */
	char name[96];
	snprintf(name, sizeof(name), "bench-%d-zprobe", (int)main_pid);
	struct fill_result fr;
	fill_until_eviction(name, 8 * MIB, 4, &fr);
	double per_item = fr.overhead + KEY_LEN + VAL_LEN;
	uint64_t size = fr.meta_bytes + (uint64_t)(per_item * (double)target_items);

	snprintf(name, sizeof(name), "bench-%d-zipf", (int)main_pid);
	struct hc_cache *c;
	struct hc_options o = {
		.size = size, .flags = HC_CREATE | HC_EXCL, .max_value = 4096, .max_threads = 4};
	int rc = hc_open(name, &o, &c);
	if (rc)
		die("hc_open %s (%" PRIu64 " bytes): %s", name, size, hc_strerror(rc));
	register_name(name, false);

	fprintf(stderr, "# zipf_hit: hostcache, %" PRIu64 "-byte segment\n", size);
	static char keys[BATCH][KEY_LEN];
	static uint8_t bufs[VERIFY_PER_BATCH][VAL_CAP];
	size_t vl[VERIFY_PER_BATCH];
	int rcs[BATCH];
	uint8_t val[VAL_LEN];
	uint64_t hits = 0, gets = 0, timed = 0, ns = 0, verified = 0;
	double items_sum = 0;
	uint64_t items_n = 0, items_min = UINT64_MAX, items_max = 0;
	const uint64_t stat_every = ((total - warm) / 64 + BATCH - 1) / BATCH * BATCH;
	static struct hc_stats st;
	for (uint64_t i = 0; i + BATCH <= total; i += BATCH) {
		for (int j = 0; j < BATCH; j++)
			make_key(seq[i + (uint64_t)j], keys[j]);
		uint64_t t0 = now_ns();
		for (int j = 0; j < BATCH; j++) {
			rcs[j] = hc_get(c, keys[j], KEY_LEN, bufs[j % VERIFY_PER_BATCH], VAL_CAP,
					&vl[j % VERIFY_PER_BATCH]);
			if (rcs[j] == HC_E_NOTFOUND) {
				make_value(seq[i + (uint64_t)j], val);
				int src = hc_set(c, keys[j], KEY_LEN, val, VAL_LEN, 0);
				if (src)
					die("zipf: hc_set: %s", hc_strerror(src));
			}
		}
		uint64_t t1 = now_ns();
		timed += t1 - t0;
		if (ns < sample_cap)
			samples[ns++] = (float)(t1 - t0) / BATCH;
		for (int j = 0; j < BATCH; j++) {
			if (rcs[j] && rcs[j] != HC_E_NOTFOUND)
				die("zipf: hc_get: %s", hc_strerror(rcs[j]));
			if (i + (uint64_t)j >= warm) {
				gets++;
				hits += rcs[j] == 0;
			}
		}
		for (int j = BATCH - VERIFY_PER_BATCH; j < BATCH; j++) {
			uint64_t id = seq[i + (uint64_t)j];
			if (rcs[j] == 0) {
				if (!value_ok(id, bufs[j % VERIFY_PER_BATCH],
					      vl[j % VERIFY_PER_BATCH]))
					die("zipf: key %" PRIu64 " returned a wrong value", id);
				verified++;
			}
		}
		if (i >= warm && (i - warm) % stat_every == 0) {
			if ((rc = hc_stats(c, &st)))
				die("hc_stats: %s", hc_strerror(rc));
			items_sum += (double)st.items;
			items_n++;
			items_min = st.items < items_min ? st.items : items_min;
			items_max = st.items > items_max ? st.items : items_max;
		}
	}
	uint64_t evictions = 0;
	if ((rc = hc_stats(c, &st)))
		die("hc_stats: %s", hc_strerror(rc));
	evictions = evictions_of(&st);
	hc_close(c);
	release_name(name, false);

	struct measure hm = {0};
	hm.ops = total / BATCH * BATCH;
	hm.mops = timed ? (double)hm.ops * 1e3 / (double)timed : 0;
	percentiles(samples, ns, &hm.p50, &hm.p99);
	double hc_hit = gets ? (double)hits / (double)gets : 0;
	uint64_t capacity = (uint64_t)llround(items_sum / (double)(items_n ? items_n : 1));

	fprintf(stderr, "# zipf_hit: exact LRU of %" PRIu64 " items\n", capacity);
	struct lru_sim l;
	if ((rc = lru_init(&l, (uint32_t)capacity)))
		die("lru_init(%" PRIu64 "): %s", capacity, strerror(-rc));
	uint64_t lhits = 0, lgets = 0;
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < hm.ops; i++) {
		bool hit = lru_access(&l, seq[i]);
		if (i >= warm) {
			lgets++;
			lhits += hit;
		}
	}
	uint64_t t1 = now_ns();
	lru_free(&l);
	free(seq);
	double lru_hit = lgets ? (double)lhits / (double)lgets : 0;

	printf("SUMMARY case=zipf_hit system=hostcache procs=1 ops=%" PRIu64
	       " mops=%.3f p50_ns=%.1f p99_ns=%.1f ratio=- hit=%.4f lru_hit=%.4f diff=%+.4f"
	       " items=%" PRIu64 " items_min=%" PRIu64 " items_max=%" PRIu64
	       " cache_frac=%.4f keys=%" PRIu64 " requests=%" PRIu64 " warmup=%" PRIu64
	       " evictions=%" PRIu64 " verified=%" PRIu64 " segment=%" PRIu64 "\n",
	       hm.ops, hm.mops, hm.p50, hm.p99, hc_hit, lru_hit, hc_hit - lru_hit, capacity,
	       items_min, items_max, (double)capacity / (double)n, n, hm.ops, warm, evictions,
	       verified, size);
	printf("SUMMARY case=zipf_hit system=lru procs=1 ops=%" PRIu64
	       " mops=%.3f p50_ns=- p99_ns=- ratio=- hit=%.4f capacity=%" PRIu64
	       " zipf_p1_obs=%.5f zipf_p1_exp=%.5f\n",
	       hm.ops, t1 > t0 ? (double)hm.ops * 1e3 / (double)(t1 - t0) : 0, lru_hit, capacity,
	       p1_obs, p1_exp);
	fflush(stdout);
}
