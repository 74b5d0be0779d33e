/*
 * bench.c - hostcache-bench: hostcache against the naive shared-memory
 * cache (rwtable.c: one process-shared pthread_rwlock over a chained hash
 * table with an LRU list), measured in the same run on the same keys.
 *
 * What it measures (one case = one or more SUMMARY lines):
 *
 *   get_hot       hc_get hits on 1,000 keys (20-byte keys, 100-byte values):
 *                 latency per get and throughput, 1 process and 2.
 *   get_cold      the same over --keys keys (default 1 M) drawn uniformly,
 *                 so most gets miss every CPU cache; hit= must be ~1.
 *   set_hot       hc_set replacing existing keys, 1 process and 2.
 *   set_cold
 *   mix_hot       90 % gets, 10 % sets, 2 processes.
 *   mix_cold
 *   mem_overhead  bytes of segment per item beyond its key and value, from
 *                 filling a fresh segment until the first eviction.
 *   zipf_hit      hit ratio of hostcache (CLOCK) against an exact LRU of the
 *                 same capacity on a Zipf(0.99) stream: get, and set on a
 *                 miss, over --keys distinct keys with room for ~10 %.
 *   load_hit      hc_get_or_load (XFetch on, and off) on fresh hits against
 *                 hc_get on the same 1,000 hot keys: p50 ns and the difference.
 *   stampede      4 processes x 16 threads ask for one missing key at once
 *                 (50 ms loader): origin calls per stampede (must be 1) and
 *                 the waiters' wake latency, against a cache inside each
 *                 process (4 origin calls).
 *   stampede_keys the same callers over 1,000 missing keys (1 ms loader):
 *                 origin calls (must be 1,000) and wall time.
 *   agent_l2_hit  an L2 hit through hostcache-agent (hc_get_or_load of a key
 *                 in Redis but not in L1) against a direct hiredis GET from
 *                 the same process to the same private redis-server, and an
 *                 L1 hit for scale: p50/p99 us and their ratios.
 *   agent_round_trips  8 processes miss 1,000 keys each at once: Redis round
 *                 trips per 1,000 misses through the agent's pipelines
 *                 against 2,000 (a GET and a SET per miss), and wall time
 *                 against the same workers on their own hiredis connections.
 *                 Both agent cases need redis-server in PATH and the agent
 *                 built next to this program (../agent/hostcache-agent);
 *                 otherwise they are skipped with a line on stderr.
 *
 * Every get/set/mix case runs on both systems with the same seed, so both
 * see the same keys in the same order.  Processes are fork()ed workers that
 * start together (a shared start time in a MAP_SHARED page) and run for
 * --seconds in all (3 rounds, see mops below); they report their counters
 * and latency samples through
 * that page.  Latency is timed over batches of BATCH operations with
 * CLOCK_MONOTONIC (the keys of a batch are formatted before its clock
 * starts) and divided by BATCH, so one sample is the mean cost of an
 * operation within one batch; p50/p99 are over all batches of all
 * processes.  The last few values of every batch are compared byte for byte
 * with what was stored (and every get's return code is checked), so a
 * broken cache stops the run with an error instead of producing numbers.
 *
 * Running it:
 *
 *   ninja -C build && build/bench/hostcache-bench            (~125 s)
 *   build/bench/hostcache-bench --quick                      (~20 s)
 *   build/bench/hostcache-bench --case get_cold --seconds 10
 *   meson test -C build --benchmark                          (runs --quick)
 *
 *   --case NAME   run only the cases whose name starts with NAME
 *   --seconds S   seconds per case, process count and system (default 4;
 *                 --quick 0.5)
 *   --keys N      keys of the *_cold and zipf_hit cases (default 1 M;
 *                 --quick 200 K, which fits partly in L3: not "cold")
 *
 * Reading the output: progress goes to stderr; stdout has one line per
 * case, system and process count:
 *
 *   SUMMARY case=get_hot system=hostcache procs=2 ops=... mops=... p50_ns=...
 *           p99_ns=... ratio=... keys=... wall_mops=... hit=... scale=...
 *
 *   mops       million operations per second, summed over the processes,
 *              each process's ops divided by the time spent inside timed
 *              batches (wall_mops divides by the whole run instead, key
 *              formatting included).  Each case and process count runs in
 *              3 rounds of seconds/3, alternating hostcache and rwlock, and
 *              mops is the median round (mops_min/mops_max: the others)
 *   p50_ns/p99_ns   median and 99th percentile of the per-batch mean
 *              latency of one operation
 *   ratio      hostcache mops / rwlock mops for the same case and process
 *              count ("-" on the baseline's own line and where it does not
 *              apply)
 *   scale      mops with 2 processes / mops with 1 (same system); the
 *              target for get_hot is >= 1.8 on 2 cores
 *   hit        hits / gets.  get cases: must be 1.0000 (every key was
 *              stored and fits).  mix cases run after the set cases on the
 *              same segment, so hit < 1 there counts keys the cache dropped
 *              during those sets (the end-of-keyset check on stderr says
 *              how many keys are still present)
 *   set_fails  sets that returned HC_E_NOSPACE (counted, not fatal; any
 *              other error or a wrong value stops the benchmark)
 *   dram_ns    (get_cold) one dependent DRAM access measured on this machine
 *              by a pointer chase, and p50_in_dram_misses = p50_ns / dram_ns
 *              (the target: within 2)
 *   verified   values compared byte for byte with the expected ones
 *
 * mem_overhead and zipf_hit explain their own fields where they compute
 * them (capacity.c: fill_until_eviction, case_mem, case_zipf), and so do the
 * loading cases (loadcases.c).  The load average before and after the run
 * goes to stderr: other work on the host inflates p99 (a preempted batch)
 * and, with 2 processes on 2 cores, lowers every 2-process figure.  Run
 * twice before believing a difference of a few percent.
 *
 * Only the public API (hostcache.h) is used.  Every segment is named
 * "bench-<pid>-<case>" (the baseline's "bench-rw-<pid>-<case>") and
 * removed when the case ends, on exit() and on SIGINT/SIGTERM/SIGHUP.
 *
 * Files: bench.c (this: driver, get/set/mix cases, output), procs.c (the
 * worker processes), capacity.c (mem_overhead, zipf_hit), loadcases.c
 * (load_hit, stampede, stampede_keys), agentcases.c (agent_l2_hit,
 * agent_round_trips), rwtable.c (the
 * baseline), lru.c (exact LRU simulator), zipf.c (Zipf sampler), rng.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "rng.h"

#define HOT_KEYS 1000
#define ROUNDS 5 /* alternating rounds per case (each runs every process count) */

const char *const sys_name[SYS_N] = {"hostcache", "rwlock"};

/* ---------------------------------------------------------------------- */
/* Errors and cleanup                                                      */

pid_t main_pid;

#define MAX_NAMES 8
static struct {
	char name[96];
	bool rw; /* a baseline object, not a hostcache segment */
	bool used;
} created[MAX_NAMES];

static void unlink_name(const char *name, bool rw)
{
	if (rw)
		rwt_unlink(name);
	else
		hc_unlink(name);
}

#define MAX_CLEANUPS 4
static void (*cleanups[MAX_CLEANUPS])(void);

void register_cleanup(void (*fn)(void))
{
	for (int i = 0; i < MAX_CLEANUPS; i++) {
		if (cleanups[i] == fn)
			return;
		if (!cleanups[i]) {
			cleanups[i] = fn;
			return;
		}
	}
	die("too many cleanup functions");
}

static void cleanup_all(void)
{
	if (getpid() != main_pid)
		return;
	for (int i = 0; i < MAX_CLEANUPS; i++)
		if (cleanups[i])
			cleanups[i]();
	for (int i = 0; i < MAX_NAMES; i++) {
		if (created[i].used) {
			unlink_name(created[i].name, created[i].rw);
			created[i].used = false;
		}
	}
}

static void on_signal(int sig)
{
	cleanup_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "hostcache-bench: %s%s\n", getpid() == main_pid ? "" : "worker: ", msg);
	if (getpid() != main_pid)
		_exit(2);
	exit(1); /* atexit: cleanup_all */
}

void register_name(const char *name, bool rw)
{
	for (int i = 0; i < MAX_NAMES; i++) {
		if (!created[i].used) {
			snprintf(created[i].name, sizeof(created[i].name), "%s", name);
			created[i].rw = rw;
			created[i].used = true;
			return;
		}
	}
	unlink_name(name, rw);
	die("too many segments at once");
}

void release_name(const char *name, bool rw)
{
	for (int i = 0; i < MAX_NAMES; i++) {
		if (created[i].used && created[i].rw == rw && !strcmp(created[i].name, name)) {
			created[i].used = false;
			break;
		}
	}
	int rc = rw ? rwt_unlink(name) : hc_unlink(name);
	if (rc < 0)
		die("unlink %s: %s", name, hc_strerror(rc));
}

/* ---------------------------------------------------------------------- */
/* Keys, values, time                                                      */

/* Values: 8 bytes derived from the key id, then 92 bytes of a fixed random
 * pattern at an id-dependent offset.  Cheap to build, different per key. */
static uint8_t pattern[256 + VAL_LEN];

static void init_pattern(void)
{
	uint64_t s = 0x7061747465726e31;
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)rng_next(&s);
}

void make_value(uint64_t id, uint8_t *val)
{
	uint64_t tag = id * UINT64_C(0x9e3779b97f4a7c15) ^ UINT64_C(0x76616c7565);
	memcpy(val, &tag, 8);
	memcpy(val + 8, pattern + (id & 255), VAL_LEN - 8);
}

bool value_ok(uint64_t id, const uint8_t *val, size_t vlen)
{
	uint8_t want[VAL_LEN];
	make_value(id, want);
	return vlen == VAL_LEN && memcmp(val, want, VAL_LEN) == 0;
}

static uint64_t seed_of(const char *s, uint64_t salt)
{
	uint64_t h = 1469598103934665603u ^ salt;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211u;
	return h;
}

/* ---------------------------------------------------------------------- */
/* Opening, filling and checking the two systems                           */

static void target_open(struct target *t, enum sys s, const char *label, uint64_t nkeys,
			uint64_t hc_size)
{
	memset(t, 0, sizeof(*t));
	t->sys = s;
	int rc;
	if (s == SYS_HC) {
		snprintf(t->name, sizeof(t->name), "bench-%d-%s", (int)main_pid, label);
		struct hc_options o = {
			.size = hc_size, .flags = HC_CREATE | HC_EXCL, .max_value = 4096};
		rc = hc_open(t->name, &o, &t->hc);
	} else {
		snprintf(t->name, sizeof(t->name), "bench-rw-%d-%s", (int)main_pid, label);
		rc = rwt_create(t->name, nkeys + 1024, 32, VAL_CAP, &t->rw);
	}
	if (rc < 0)
		die("%s: create %s: %s", sys_name[s], t->name, hc_strerror(rc));
	register_name(t->name, s == SYS_RW);
}

static void target_close(struct target *t)
{
	if (t->sys == SYS_HC)
		hc_close(t->hc);
	else
		rwt_close(t->rw);
	release_name(t->name, t->sys == SYS_RW);
	t->hc = NULL;
	t->rw = NULL;
}

static void populate(const struct target *t, uint64_t nkeys)
{
	char key[KEY_LEN];
	uint8_t val[VAL_LEN];
	for (uint64_t id = 0; id < nkeys; id++) {
		make_key(id, key);
		make_value(id, val);
		int rc = t_set(t, key, val);
		if (rc)
			die("%s: populate set of key %" PRIu64 ": %s", sys_name[t->sys], id,
			    hc_strerror(rc));
	}
}

/* Read every key back; a wrong value is fatal, a missing one is counted. */
static uint64_t verify_all(const struct target *t, uint64_t nkeys)
{
	char key[KEY_LEN];
	uint8_t buf[VAL_CAP];
	uint64_t hits = 0;
	for (uint64_t id = 0; id < nkeys; id++) {
		size_t vlen = 0;
		make_key(id, key);
		int rc = t_get(t, key, buf, &vlen);
		if (rc == 0) {
			if (!value_ok(id, buf, vlen))
				die("%s: key %" PRIu64 " read back a wrong value (%zu bytes)",
				    sys_name[t->sys], id, vlen);
			hits++;
		} else if (!is_miss(t->sys, rc)) {
			die("%s: get of key %" PRIu64 ": %s", sys_name[t->sys], id,
			    hc_strerror(rc));
		}
	}
	return hits;
}

/* ---------------------------------------------------------------------- */
/* Reporting                                                               */

/*
 * The latency of one dependent DRAM access on this machine, for reading
 * get_cold: a pointer chase through a random cyclic permutation (Sattolo)
 * of 64-byte nodes over 256 MiB, on 4 KiB pages like the shared-memory
 * segments (so TLB misses are included, as they are for the caches).
 */
static double measure_dram_ns(void)
{
	const size_t len = 256 * MIB, nodes = len / 64, steps = 2000000;
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 0;
	madvise(mem, len, MADV_NOHUGEPAGE);
	uint32_t *perm = malloc(nodes * sizeof(*perm));
	if (!perm) {
		munmap(mem, len);
		return 0;
	}
	uint64_t rng = 0x6472616d;
	for (size_t i = 0; i < nodes; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = nodes - 1; i > 0; i--) {
		size_t j = rng_below(&rng, i); /* j < i: one cycle through every node */
		uint32_t tmp = perm[i];
		perm[i] = perm[j];
		perm[j] = tmp;
	}
	for (size_t i = 0; i < nodes; i++)
		mem[(size_t)perm[i] * 8] = (uint64_t)perm[(i + 1) % nodes] * 8;
	free(perm);
	uint64_t p = 0;
	for (size_t i = 0; i < steps / 10; i++) /* warm the page tables a little */
		p = mem[p];
	uint64_t t0 = now_ns();
	for (size_t i = 0; i < steps; i++)
		p = mem[p];
	uint64_t t1 = now_ns();
	volatile uint64_t sink = p;
	(void)sink;
	munmap(mem, len);
	return (double)(t1 - t0) / (double)steps;
}

static void print_summary(const char *case_name, enum sys s, int procs, uint64_t keys,
			  const struct measure *m, const struct measure *base, double scale_v,
			  double dram_ns)
{
	char ratio[32] = "-", scale[48] = "", hit[32] = "", fails[48] = "", dram[64] = "";
	if (base && base->mops > 0)
		snprintf(ratio, sizeof(ratio), "%.2f", m->mops / base->mops);
	if (scale_v > 0)
		snprintf(scale, sizeof(scale), " scale=%.2f", scale_v);
	if (m->gets)
		snprintf(hit, sizeof(hit), " hit=%.4f", (double)m->hits / (double)m->gets);
	if (m->sets)
		snprintf(fails, sizeof(fails), " set_fails=%" PRIu64, m->set_fails);
	if (dram_ns > 0)
		snprintf(dram, sizeof(dram), " dram_ns=%.1f p50_in_dram_misses=%.2f", dram_ns,
			 m->p50 / dram_ns);
	if (m->set_fails)
		fprintf(stderr,
			"hostcache-bench: warning: %s/%s procs=%d: %" PRIu64
			" sets failed with HC_E_NOSPACE\n",
			case_name, sys_name[s], procs, m->set_fails);
	printf("SUMMARY case=%s system=%s procs=%d ops=%" PRIu64
	       " mops=%.3f p50_ns=%.1f p99_ns=%.1f ratio=%s keys=%" PRIu64
	       " wall_mops=%.3f%s%s%s%s mops_min=%.3f mops_max=%.3f rounds=%d verified=%" PRIu64
	       "\n",
	       case_name, sys_name[s], procs, m->ops, m->mops, m->p50, m->p99, ratio, keys,
	       m->wall_mops, hit, scale, fails, dram, m->mops_min, m->mops_max, m->rounds,
	       m->verified);
	fflush(stdout);
}

static bool selected(const struct cfg *cfg, const char *name)
{
	return !cfg->only || strncmp(name, cfg->only, strlen(cfg->only)) == 0;
}

/* ---------------------------------------------------------------------- */
/* Cases 1-4 and 7: get, set and mix on both systems                       */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median_of(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * One case at each process count of @procs on both systems, in ROUNDS
 * rounds of seconds/ROUNDS each.  Within a round every process count runs
 * on both systems back to back, the order of the systems and of the counts
 * alternating from round to round, so a burst of load from elsewhere on the
 * host lands on all of them rather than on one.  mops is the median of the
 * rounds; the counters are summed; p50/p99 are over every batch of every
 * round.  scale[s] (with counts 1 and 2) is the median over the rounds of
 * the 2-process rate over the 1-process rate of the same round: on a noisy
 * VM, rates measured minutes apart are not comparable, rates of one round
 * are.
 */
static void measure_all(const struct cfg *cfg, struct target tg[SYS_N], const char *case_name,
			enum workload wl, uint64_t nkeys, const int *procs, int nprocs,
			struct measure out[][SYS_N], double scale[SYS_N])
{
	double mops[2][SYS_N][ROUNDS], wall[2][SYS_N][ROUNDS];
	struct samplebuf sb[2][SYS_N];
	memset(out, 0, (size_t)nprocs * SYS_N * sizeof(out[0][0]));
	memset(sb, 0, sizeof(sb));
	fprintf(stderr, "# %s: %d rounds\n", case_name, ROUNDS);
	for (int r = 0; r < ROUNDS; r++) {
		for (int q = 0; q < nprocs; q++) {
			int pi = (q + r) % nprocs;
			struct run_spec rs = {
				.case_name = case_name,
				.wl = wl,
				.procs = procs[pi],
				.nkeys = nkeys,
				.seconds = cfg->seconds / ROUNDS,
				.seed = seed_of(case_name, (uint64_t)(procs[pi] * ROUNDS + r))};
			for (int k = 0; k < SYS_N; k++) {
				int s = (k + r) % SYS_N;
				struct measure m;
				run_procs(&tg[s], &rs, &m, &sb[pi][s]);
				struct measure *o = &out[pi][s];
				o->ops += m.ops;
				o->gets += m.gets;
				o->hits += m.hits;
				o->sets += m.sets;
				o->verified += m.verified;
				o->set_fails += m.set_fails;
				o->nsamples += m.nsamples;
				mops[pi][s][r] = m.mops;
				wall[pi][s][r] = m.wall_mops;
				o->mops_min = r == 0 || m.mops < o->mops_min ? m.mops : o->mops_min;
				o->mops_max = r == 0 || m.mops > o->mops_max ? m.mops : o->mops_max;
			}
		}
	}
	for (int s = 0; s < SYS_N; s++) {
		scale[s] = 0;
		if (nprocs == 2 && procs[0] == 1 && procs[1] == 2) {
			double ratio[ROUNDS];
			for (int r = 0; r < ROUNDS; r++)
				ratio[r] = mops[0][s][r] > 0 ? mops[1][s][r] / mops[0][s][r] : 0;
			scale[s] = median_of(ratio, ROUNDS);
		}
		for (int pi = 0; pi < nprocs; pi++) {
			out[pi][s].rounds = ROUNDS;
			out[pi][s].mops = median_of(mops[pi][s], ROUNDS);
			out[pi][s].wall_mops = median_of(wall[pi][s], ROUNDS);
			percentiles(sb[pi][s].v, sb[pi][s].n, &out[pi][s].p50, &out[pi][s].p99);
			free(sb[pi][s].v);
		}
	}
}

/*
 * One case at one or two process counts (1 and 2); hostcache's line first
 * with ratio=, and scale= on the 2-process lines when 1 process ran too.
 */
static void run_case(const struct cfg *cfg, struct target tg[SYS_N], const char *case_name,
		     enum workload wl, uint64_t nkeys, const int *procs, int nprocs, double dram_ns)
{
	struct measure m[2][SYS_N];
	double scale[SYS_N];
	measure_all(cfg, tg, case_name, wl, nkeys, procs, nprocs, m, scale);
	for (int k = 0; k < nprocs; k++)
		for (int s = 0; s < SYS_N; s++)
			print_summary(case_name, (enum sys)s, procs[k], nkeys, &m[k][s],
				      s == SYS_HC ? &m[k][SYS_RW] : NULL,
				      procs[k] == 2 ? scale[s] : 0, dram_ns);
}

/* The get, set and mix cases over one key set ("hot" or "cold"). */
static void run_keyset(const struct cfg *cfg, const char *label, uint64_t nkeys, uint64_t hc_size)
{
	char get_name[32], set_name[32], mix_name[32];
	snprintf(get_name, sizeof(get_name), "get_%s", label);
	snprintf(set_name, sizeof(set_name), "set_%s", label);
	snprintf(mix_name, sizeof(mix_name), "mix_%s", label);
	bool do_get = selected(cfg, get_name), do_set = selected(cfg, set_name),
	     do_mix = selected(cfg, mix_name);
	if (!do_get && !do_set && !do_mix)
		return;

	struct target tg[SYS_N];
	for (int s = 0; s < SYS_N; s++) {
		target_open(&tg[s], (enum sys)s, label, nkeys, hc_size);
		fprintf(stderr, "# %s: populating %" PRIu64 " keys\n", sys_name[s], nkeys);
		populate(&tg[s], nkeys);
	}
	static const int one_two[] = {1, 2}, two[] = {2};
	if (do_get) {
		/* cold gets are read against the machine's own DRAM latency */
		double dram_ns = 0;
		if (!strcmp(label, "cold")) {
			dram_ns = measure_dram_ns();
			fprintf(stderr, "# one dependent DRAM access: %.1f ns\n", dram_ns);
		}
		run_case(cfg, tg, get_name, WL_GET, nkeys, one_two, 2, dram_ns);
	}
	if (do_set)
		run_case(cfg, tg, set_name, WL_SET, nkeys, one_two, 2, 0);
	if (do_mix)
		run_case(cfg, tg, mix_name, WL_MIX, nkeys, two, 1, 0);
	for (int s = 0; s < SYS_N; s++) {
		uint64_t hits = verify_all(&tg[s], nkeys);
		fprintf(stderr, "# %s %s: %" PRIu64 " of %" PRIu64 " keys read back correctly\n",
			sys_name[s], label, hits, nkeys);
		target_close(&tg[s]);
	}
}

/* ---------------------------------------------------------------------- */
/* Command line                                                            */

static const char *const case_names[] = {
	"get_hot",	 "get_cold",	 "set_hot",	     "set_cold", "mix_hot",
	"mix_cold",	 "mem_overhead", "zipf_hit",	     "load_hit", "stampede",
	"stampede_keys", "agent_l2_hit", "agent_round_trips"};

static void usage(FILE *f)
{
	fprintf(f, "usage: hostcache-bench [--quick] [--case NAME] [--seconds S] [--keys N]\n"
		   "cases (NAME matches every case it is a prefix of):");
	for (size_t i = 0; i < sizeof(case_names) / sizeof(case_names[0]); i++)
		fprintf(f, " %s", case_names[i]);
	fprintf(f, "\n");
}

static void parse_args(int argc, char **argv, struct cfg *cfg)
{
	double seconds = 0;
	uint64_t keys = 0;
	memset(cfg, 0, sizeof(*cfg));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
		if (!strcmp(a, "--quick")) {
			cfg->quick = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--case") && v) {
			cfg->only = v;
			i++;
		} else if (!strcmp(a, "--seconds") && v) {
			seconds = strtod(v, &end);
			if (*end || !(seconds > 0 && seconds <= 3600))
				goto bad;
			i++;
		} else if (!strcmp(a, "--keys") && v) {
			errno = 0;
			keys = strtoull(v, &end, 10);
			if (errno || *end || keys < 1000 || keys > UINT32_MAX)
				goto bad;
			i++;
		} else {
			goto bad;
		}
	}
	cfg->seconds = seconds ? seconds : cfg->quick ? 0.5 : 4.0;
	cfg->keys = keys ? keys : cfg->quick ? 200000 : 1000000;
	if (cfg->only) {
		bool any = false;
		for (size_t i = 0; i < sizeof(case_names) / sizeof(case_names[0]); i++)
			any |= selected(cfg, case_names[i]);
		if (!any) {
			fprintf(stderr, "hostcache-bench: no case matches '%s'\n", cfg->only);
			usage(stderr);
			exit(2);
		}
	}
	return;
bad:
	usage(stderr);
	exit(2);
}

/* Other work on the host skews every number: say how much there was. */
static void print_loadavg(const char *when)
{
	char buf[128] = "";
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
	fprintf(stderr, "# load average at %s: %s\n", when, buf[0] ? buf : "unknown");
}

int main(int argc, char **argv)
{
	struct cfg cfg;
	parse_args(argc, argv, &cfg);
	main_pid = getpid();
	atexit(cleanup_all);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	init_pattern();
	setup_shared(cfg.seconds);

	uint64_t t0 = now_ns();
	fprintf(stderr,
		"# hostcache-bench: %.2f s per case and system (%d rounds), %" PRIu64
		" cold keys%s, %ld CPUs\n",
		cfg.seconds, ROUNDS, cfg.keys, cfg.quick ? " (quick)" : "",
		sysconf(_SC_NPROCESSORS_ONLN));
	print_loadavg("start");
	run_keyset(&cfg, "hot", HOT_KEYS, 64 * MIB);
	uint64_t cold_size = cfg.keys * 512;
	run_keyset(&cfg, "cold", cfg.keys, cold_size > 512 * MIB ? cold_size : 512 * MIB);
	if (selected(&cfg, "mem_overhead"))
		case_mem(&cfg);
	if (selected(&cfg, "zipf_hit"))
		case_zipf(&cfg);
	if (selected(&cfg, "load_hit"))
		case_load_hit(&cfg);
	if (selected(&cfg, "stampede"))
		case_stampede(&cfg);
	if (selected(&cfg, "stampede_keys"))
		case_stampede_keys(&cfg);
	if (selected(&cfg, "agent_l2_hit"))
		case_agent_l2_hit(&cfg);
	if (selected(&cfg, "agent_round_trips"))
		case_agent_round_trips(&cfg);
	print_loadavg("end");
	fprintf(stderr, "# done in %.1f s\n", (double)(now_ns() - t0) / 1e9);
	return 0;
}
