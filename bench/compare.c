/*
 * compare.c - hostcache-compare: hostcache against what a user would pick
 * instead, on the same keys, values and access streams, in one run.
 *
 * Systems (cmp.h): hostcache (hc_get), hc-load (hc_get_or_load on hits),
 * redis (one GET per request over a unix socket, hiredis), redis-pipe (16
 * GETs pipelined), memcached (libmemcached get), memcached-mget (16 keys
 * per multi-get), rwlock (a process-shared pthread_rwlock table in shm),
 * lru (a cache inside each worker).  Redis and memcached are private
 * servers this program starts and stops.
 *
 * Cases vary one thing at a time around a base of 100-byte values, 1 M
 * keys, Zipf(0.99), reads only, one process:
 *
 *   size    values of 16 B, 100 B, 1 KiB, 16 KiB (10 K keys, so 16 KiB fits)
 *   keys    10 K and 1 M keys (and 10 M with --big: hostcache, rwlock, lru)
 *   dist    uniform against Zipf(0.99)
 *   mix     100 %, 90 % and 50 % gets (sets store the key's same value)
 *   procs   1, 2 and 4 processes (4 on this 2-core machine: oversubscribed)
 *   memory  no timed run: 16 B values over the base keys, 1 KiB over a quarter
 *
 * Each system is set up and filled once per data set (value size, keys)
 * and runs every case of that data set.  A case gives each system @seconds
 * in 3 rounds, the systems taking turns within each round (so a slow
 * patch of this VM hits them all), and reports the round of median
 * throughput.  In a run the workers are fork()ed, attach, wait at a
 * barrier, warm up for a quarter of the run (untimed: caches, TLB, first
 * touches of the pages they map), run, and report.
 *
 * How it measures: a worker draws its keys (seeded splitmix64, Zipf by
 * rejection-inversion), then times groups of calls with CLOCK_MONOTONIC:
 * 64 calls per group for the in-memory systems (a call costs tens of ns,
 * a clock read about 20), one call per group for the servers.  A sample is
 * the group's time divided by the keys it fetched or stored, so for the
 * batching systems (redis-pipe, memcached-mget) it is the cost per key
 * within a batch of 16, not a round trip.  p50/p99 are over all samples of
 * all workers; throughput is keys per second summed over workers.  Every
 * value read in the last call of a group is compared with what was stored,
 * and a get that misses (all keys are stored) stops the run: a broken
 * system cannot produce a number.
 *
 * Memory: after the fill, each system's mem_bytes() (hostcache: slabs in
 * use and the index; Redis: used_memory growth; memcached: RSS growth; lru:
 * one worker's copy) less the keys' and values' own bytes, per item.
 *
 * Sharing: the steady-state hit ratio (after a warm-up of as many
 * requests) of a cache inside each of N workers against one cache shared
 * by them, from an exact LRU simulation (lru.c) on a Zipf(0.99) stream
 * over the base keys, capacity 10 % of the keys: private caches of the
 * shared cache's size each (N times the memory), and the same memory split
 * N ways.
 *
 * Output: the tables on stdout; --csv, --json and --markdown write them to
 * files (bench/compare.sh draws the plots from the CSV).  Exit status 1
 * when a run failed (a wrong value, a worker that died, a fill that did
 * not fit); a system that is not installed is skipped, not a failure.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmp.h"
#include "lru.h"
#include "rng.h"
#include "zipf.h"

#define MAX_PROCS 4
#define ROUNDS 3	       /* per case and system, interleaved; the median is reported */
#define MAX_SAMPLES (4u << 20) /* per worker */

static const struct cmp_sys *const systems[] = {
	&cmp_hc_get, &cmp_hc_load, &cmp_redis, &cmp_redis_pipe, &cmp_memcached, &cmp_memcached_mget,
	&cmp_rwlock, &cmp_lru,	   NULL,
};

/* ---------------------------------------------------------------------- */
/* Helpers of cmp.h                                                        */

static pid_t main_pid;
static void (*exit_fns[16])(void);
static int nexit;
static char tmpdir[256];

void cmp_value(uint64_t id, uint8_t *val, size_t size)
{
	uint64_t tag = id * UINT64_C(0x9e3779b97f4a7c15) ^ size;
	size_t i = 0;
	for (; i + 8 <= size; i += 8, tag = tag * 6364136223846793005u + 1442695040888963407u)
		memcpy(val + i, &tag, 8);
	for (; i < size; i++)
		val[i] = (uint8_t)(tag >> (8 * (i & 7)));
}

bool cmp_value_ok(uint64_t id, const uint8_t *val, size_t len, size_t size)
{
	static __thread uint8_t want[CMP_VAL_MAX];
	if (len != size)
		return false;
	cmp_value(id, want, size);
	return memcmp(want, val, size) == 0;
}

const char *cmp_find_program(const char *name, char *buf, size_t cap)
{
	const char *path = getenv("PATH");
	char dirs[4096];
	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/usr/bin:/sbin:/bin", path ? path : "");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(buf, cap, "%s/%s", d, name);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return NULL;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path) ? -1 : 0;
}

static void remove_tmpdir(void)
{
	if (tmpdir[0]) {
		if (nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS))
			fprintf(stderr, "hostcache-compare: could not remove %s\n", tmpdir);
		tmpdir[0] = 0;
	}
}

const char *cmp_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/hostcache-compare.XXXXXX",
			 t && *t ? t : "/tmp");
		if (!mkdtemp(tmpdir)) {
			fprintf(stderr, "hostcache-compare: mkdtemp: %s\n", strerror(errno));
			exit(1);
		}
	}
	return tmpdir;
}

uint64_t cmp_rss(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	uint64_t kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb * 1024;
}

void cmp_at_exit(void (*fn)(void))
{
	for (int i = 0; i < nexit; i++)
		if (exit_fns[i] == fn)
			return;
	if (nexit < (int)(sizeof(exit_fns) / sizeof(exit_fns[0])))
		exit_fns[nexit++] = fn;
}

static void run_exit_fns(void)
{
	if (getpid() != main_pid)
		return;
	for (int i = nexit - 1; i >= 0; i--)
		exit_fns[i]();
	nexit = 0;
	remove_tmpdir();
}

/*
 * SIGINT, SIGTERM, SIGHUP: the run stops at the next case or fill (within
 * a run's length), and exit() then stops the servers and removes the
 * stores; a second signal leaves at once (servers may stay behind).
 */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_requested)
		_exit(130);
	stop_requested = 1;
}

static void check_stop(void)
{
	if (stop_requested) {
		fprintf(stderr, "hostcache-compare: stopped\n");
		exit(130);
	}
}

/* ---------------------------------------------------------------------- */
/* Cases                                                                   */

struct data_set {
	uint32_t value_size;
	uint64_t keys;
};

struct result {
	const struct cmp_sys *sys;
	struct cmp_case c;
	bool skipped;
	bool failed; /* skipped because something went wrong (exit status 1) */
	char why[160];
	double mkeys, p50_ns, p99_ns;
	double bytes_per_item; /* overhead beyond key + value; < 0 unknown */
};

static struct result *results;
static size_t nresults, cap_results;

static struct result *add_result(void)
{
	if (nresults == cap_results) {
		cap_results = cap_results ? 2 * cap_results : 64;
		results = realloc(results, cap_results * sizeof(*results));
		if (!results) {
			perror("hostcache-compare");
			exit(1);
		}
	}
	memset(&results[nresults], 0, sizeof(results[0]));
	return &results[nresults++];
}

static struct {
	double seconds;
	uint64_t base_keys;
	bool big;
	const char *only;    /* groups, comma-separated */
	const char *systems; /* names, comma-separated */
	const char *csv, *json, *markdown;
} opt = {.seconds = 1.0, .base_keys = 1000000};

static bool listed(const char *list, const char *name)
{
	if (!list)
		return true;
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && !strncmp(p, name, n))
			return true;
		p += len + (p[len] == ',');
	}
	return false;
}

/* ---------------------------------------------------------------------- */
/* Workers                                                                 */

struct worker_out {
	uint64_t keys, errors;
	uint64_t nsamples;
	char error[160];
};

struct shared {
	atomic_uint ready;
	atomic_int go;
	uint64_t start_ns, end_ns;
	struct worker_out out[MAX_PROCS];
};

static struct shared *sh;
static float *samples; /* MAX_PROCS * MAX_SAMPLES */

__attribute__((format(printf, 2, 3))) static void werr(struct worker_out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->error, sizeof(o->error), fmt, ap);
	va_end(ap);
	o->errors++;
}

/* Zipf rank (0-based) to id: a multiplication by a prime that divides no
 * key count used here (they are 2^a * 5^b), a bijection on 0..keys-1. */
static uint64_t scatter(uint64_t rank, uint64_t keys)
{
	return (uint64_t)(((unsigned __int128)rank * 2654435761u) % keys);
}

static void worker(const struct cmp_sys *s, const struct cmp_case *c, const struct zipf *z,
		   unsigned proc)
{
	struct worker_out *o = &sh->out[proc];
	float *smp = samples + (size_t)proc * MAX_SAMPLES;
	void *h = s->attach(c, proc);
	if (!h) {
		werr(o, "attach failed");
		atomic_fetch_add(&sh->ready, 1);
		return;
	}
	static uint8_t *bufs[CMP_BATCH_MAX], setval[CMP_VAL_MAX];
	for (unsigned i = 0; i < CMP_BATCH_MAX; i++)
		if (!bufs[i] && !(bufs[i] = malloc(CMP_VAL_MAX))) {
			werr(o, "out of memory");
			return;
		}
	uint64_t rng = 0x5eed0000u + proc * 7919u + c->keys;
	const unsigned group = s->local ? 64 : 1;
	const unsigned batch = s->batch;
	uint64_t ids[64][CMP_BATCH_MAX];
	bool is_get[64];
	size_t lens[64][CMP_BATCH_MAX];

	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the parent */
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load(&sh->go))
		if (getppid() != main_pid)
			_exit(1);
	while (!o->errors) {
		/*
		 * Draw the group's keys before its clock starts.  A call is all
		 * gets or all sets of @batch keys, so the batching systems see
		 * the case's share of gets by key as well.  Zipf ranks go to ids
		 * through a fixed permutation (ids are stored in id order, and
		 * the hot keys must not be neighbours in memory).
		 */
		for (unsigned g = 0; g < group; g++) {
			is_get[g] = c->read_pct >= 100 || rng_below(&rng, 100) < c->read_pct;
			for (unsigned k = 0; k < batch; k++)
				ids[g][k] = c->zipf > 0 ? scatter(zipf_next(z, &rng) - 1, c->keys)
							: rng_below(&rng, c->keys);
		}
		uint64_t t0 = now_ns();
		for (unsigned g = 0; g < group; g++) {
			if (is_get[g]) {
				if (s->get(h, ids[g], batch, bufs, lens[g])) {
					werr(o, "get failed");
					break;
				}
				continue;
			}
			for (unsigned k = 0; k < batch; k++) {
				/* the value is made here for every system alike */
				cmp_value(ids[g][k], setval, c->value_size);
				if (s->set(h, ids[g][k], setval, c->value_size)) {
					werr(o, "set failed");
					break;
				}
			}
		}
		uint64_t t1 = now_ns();
		if (o->errors)
			break;
		/* every get must have hit; the last get's values are compared */
		int last = -1;
		for (unsigned g = 0; g < group; g++)
			for (unsigned k = 0; is_get[g] && k < batch; k++) {
				last = (int)g;
				if (lens[g][k] == SIZE_MAX)
					werr(o, "key %" PRIu64 ": missing", ids[g][k]);
			}
		for (unsigned k = 0; last >= 0 && k < batch; k++)
			if (lens[last][k] != SIZE_MAX &&
			    !cmp_value_ok(ids[last][k], bufs[k], lens[last][k], c->value_size))
				werr(o, "key %" PRIu64 ": wrong value", ids[last][k]);
		if (t0 < sh->start_ns)
			continue; /* warming up: caches, TLB, the first touch of pages */
		if (t1 >= sh->end_ns)
			break;
		o->keys += (uint64_t)group * batch;
		if (o->nsamples < MAX_SAMPLES)
			smp[o->nsamples++] = (float)(t1 - t0) / (float)(group * batch);
	}
	s->detach(h);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Run case @c on system @s (set up and filled); fills @r. */
static void run_case(const struct cmp_sys *s, const struct cmp_case *c, struct result *r)
{
	struct zipf z;
	if (c->zipf > 0 && zipf_init(&z, c->keys, c->zipf)) {
		snprintf(r->why, sizeof(r->why), "bad Zipf parameters");
		r->skipped = true;
		return;
	}
	memset(sh, 0, sizeof(*sh));
	pid_t pids[MAX_PROCS];
	for (unsigned p = 0; p < c->procs; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			signal(SIGHUP, SIG_DFL);
			worker(s, c, &z, p);
			_exit(0);
		}
		if (pids[p] < 0) {
			perror("hostcache-compare: fork");
			exit(1);
		}
	}
	uint64_t wait_until = now_ns() + 60ull * 1000000000u; /* per-process fills */
	while (atomic_load(&sh->ready) < c->procs && now_ns() < wait_until)
		usleep(1000);
	if (atomic_load(&sh->ready) < c->procs) {
		snprintf(r->why, sizeof(r->why), "workers not ready after 60 s");
		r->skipped = r->failed = true;
		for (unsigned p = 0; p < c->procs; p++)
			kill(pids[p], SIGKILL);
	}
	/* a warm-up of a quarter of the run (at least 50 ms), then the run */
	double warm = opt.seconds / ROUNDS / 4 < 0.05 ? 0.05 : opt.seconds / ROUNDS / 4;
	sh->start_ns = now_ns() + (uint64_t)(warm * 1e9);
	sh->end_ns = sh->start_ns + (uint64_t)(opt.seconds / ROUNDS * 1e9);
	atomic_store(&sh->go, 1);
	for (unsigned p = 0; p < c->procs; p++) {
		int st;
		while (waitpid(pids[p], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			snprintf(r->why, sizeof(r->why), "worker %u died (status 0x%x)", p, st);
			r->skipped = r->failed = true;
		}
	}
	uint64_t keys = 0, n = 0;
	for (unsigned p = 0; p < c->procs; p++) {
		struct worker_out *o = &sh->out[p];
		if (o->errors && !r->skipped) {
			snprintf(r->why, sizeof(r->why), "worker %u: %s", p, o->error);
			r->skipped = r->failed = true;
		}
		keys += o->keys;
		memmove(samples + n, samples + (size_t)p * MAX_SAMPLES,
			o->nsamples * sizeof(float));
		n += o->nsamples;
	}
	if (r->skipped) {
		fprintf(stderr, "hostcache-compare: %s: %s\n", s->name, r->why);
		return;
	}
	qsort(samples, n, sizeof(float), cmp_float);
	r->mkeys = (double)keys / (opt.seconds / ROUNDS) / 1e6;
	r->p50_ns = n ? samples[(n - 1) / 2] : 0;
	r->p99_ns = n ? samples[(size_t)((double)(n - 1) * 0.99)] : 0;
}

/* Is all[i] the same case as an earlier one (--keys 10000: "keys" twice)? */
static bool seen_before(const struct cmp_case *all, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (!strcmp(all[j].group, all[i].group) && all[j].value_size == all[i].value_size &&
		    all[j].keys == all[i].keys && all[j].zipf == all[i].zipf &&
		    all[j].read_pct == all[i].read_pct && all[j].procs == all[i].procs)
			return true;
	return false;
}

/* The round of median throughput (its p50 and p99 with it), or a failure. */
static struct result median_round(const struct result *r)
{
	int order[ROUNDS];
	for (int k = 0; k < ROUNDS; k++) {
		if (r[k].skipped)
			return r[k];
		order[k] = k;
	}
	for (int a = 1; a < ROUNDS; a++)
		for (int b = a; b > 0 && r[order[b]].mkeys < r[order[b - 1]].mkeys; b--) {
			int t = order[b];
			order[b] = order[b - 1];
			order[b - 1] = t;
		}
	return r[order[ROUNDS / 2]];
}

/* ---------------------------------------------------------------------- */
/* Output                                                                  */

static const char *dist_name(const struct cmp_case *c)
{
	return c->zipf > 0 ? "zipf" : "uniform";
}

static bool same_case(const struct cmp_case *a, const struct cmp_case *b)
{
	return !strcmp(a->group, b->group) && a->value_size == b->value_size &&
	       a->keys == b->keys && a->zipf == b->zipf && a->read_pct == b->read_pct &&
	       a->procs == b->procs;
}

/* hostcache's result for the case of @r, or NULL. */
static const struct result *hc_row(const struct result *r)
{
	for (size_t i = 0; i < nresults; i++)
		if (results[i].sys == &cmp_hc_get && same_case(&results[i].c, &r->c) &&
		    !results[i].skipped)
			return &results[i];
	return NULL;
}

static void fmt_ns(char *b, size_t n, double ns)
{
	if (ns < 1000)
		snprintf(b, n, "%.0f ns", ns);
	else if (ns < 1e6)
		snprintf(b, n, "%.1f us", ns / 1e3);
	else
		snprintf(b, n, "%.2f ms", ns / 1e6);
}

static void case_label(const struct cmp_case *c, char *b, size_t n)
{
	snprintf(b, n, "%s: %u B values, %" PRIu64 " keys, %s, %u%% gets, %u proc%s", c->group,
		 c->value_size, c->keys, dist_name(c), c->read_pct, c->procs,
		 c->procs > 1 ? "s" : "");
}

static void print_table(FILE *f, bool md)
{
	const struct cmp_case *last = NULL;
	for (size_t i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		if (!last || !same_case(last, &r->c)) {
			char label[160];
			case_label(&r->c, label, sizeof(label));
			if (md)
				fprintf(f,
					"%s**%s**\n\n| system | M keys/s | p50 | p99 | "
					"hostcache's throughput is |\n|---|---|---|---|---|\n",
					last ? "\n" : "", label);
			else
				fprintf(f, "\n%s\n  %-15s %10s %10s %10s  %s\n", label, "system",
					"Mkeys/s", "p50", "p99", "hostcache ratio");
			last = &r->c;
		}
		if (r->skipped) {
			if (md)
				fprintf(f, "| %s | - | - | - | skipped: %s |\n", r->sys->name,
					r->why);
			else
				fprintf(f, "  %-15s skipped: %s\n", r->sys->name, r->why);
			continue;
		}
		const struct result *hc = hc_row(r);
		char p50[32], p99[32], ratio[48] = "-";
		fmt_ns(p50, sizeof(p50), r->p50_ns);
		fmt_ns(p99, sizeof(p99), r->p99_ns);
		if (hc && r->mkeys > 0)
			snprintf(ratio, sizeof(ratio), "%.2fx", hc->mkeys / r->mkeys);
		if (md)
			fprintf(f, "| %s%s | %.2f | %s | %s | %s |\n", r->sys->name,
				r->sys->batch > 1 ? " (per key, batches of 16)" : "", r->mkeys, p50,
				p99, ratio);
		else
			fprintf(f, "  %-15s %10.2f %10s %10s  %s\n", r->sys->name, r->mkeys, p50,
				p99, ratio);
	}
}

static void write_csv(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "hostcache-compare: %s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(f, "group,system,batch,value_size,keys,dist,read_pct,procs,mkeys_per_s,p50_ns,"
		   "p99_ns,hostcache_ratio,overhead_bytes_per_item,skipped\n");
	for (size_t i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		const struct result *hc = hc_row(r);
		fprintf(f, "%s,%s,%u,%u,%" PRIu64 ",%s,%u,%u,%.4f,%.1f,%.1f,%.3f,%.1f,%s\n",
			r->c.group, r->sys->name, r->sys->batch, r->c.value_size, r->c.keys,
			dist_name(&r->c), r->c.read_pct, r->c.procs, r->mkeys, r->p50_ns, r->p99_ns,
			hc && r->mkeys > 0 ? hc->mkeys / r->mkeys : 0.0, r->bytes_per_item,
			r->skipped ? r->why : "");
	}
	fclose(f);
}

static void write_json(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "hostcache-compare: %s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(f, "{\"seconds\":%g,\"rows\":[\n", opt.seconds);
	for (size_t i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		const struct result *hc = hc_row(r);
		fprintf(f,
			"%s{\"group\":\"%s\",\"system\":\"%s\",\"batch\":%u,\"value_size\":%u,"
			"\"keys\":%" PRIu64 ",\"dist\":\"%s\",\"read_pct\":%u,\"procs\":%u,",
			i ? ",\n" : "", r->c.group, r->sys->name, r->sys->batch, r->c.value_size,
			r->c.keys, dist_name(&r->c), r->c.read_pct, r->c.procs);
		if (r->skipped)
			fprintf(f, "\"skipped\":\"%s\"}", r->why);
		else
			fprintf(f,
				"\"mkeys_per_s\":%.4f,\"p50_ns\":%.1f,\"p99_ns\":%.1f,"
				"\"hostcache_ratio\":%.3f,\"overhead_bytes_per_item\":%.1f}",
				r->mkeys, r->p50_ns, r->p99_ns,
				hc && r->mkeys > 0 ? hc->mkeys / r->mkeys : 0.0, r->bytes_per_item);
	}
	fprintf(f, "\n]}\n");
	fclose(f);
}

/* ---------------------------------------------------------------------- */
/* Memory per item, and what private caches lose                          */

struct mem_row {
	const char *sys;
	uint32_t value_size;
	uint64_t keys;
	double overhead; /* bytes per item beyond key + value; < 0 unknown */
};
static struct mem_row mem_rows[64];
static int nmem;

static void print_mem(FILE *f, bool md)
{
	if (!nmem)
		return;
	if (md)
		fprintf(f, "\n**memory per item beyond its key and value**\n\n| system | value "
			   "size | keys | bytes per item |\n|---|---|---|---|\n");
	else
		fprintf(f, "\nmemory per item beyond its key (20 B) and value\n");
	for (int i = 0; i < nmem; i++) {
		const struct mem_row *m = &mem_rows[i];
		char v[32] = "unknown";
		if (m->overhead >= 0)
			snprintf(v, sizeof(v), "%.1f", m->overhead);
		if (md)
			fprintf(f, "| %s | %u B | %" PRIu64 " | %s |\n", m->sys, m->value_size,
				m->keys, v);
		else
			fprintf(f, "  %-15s %6u B values, %8" PRIu64 " keys: %s B\n", m->sys,
				m->value_size, m->keys, v);
	}
}

struct share_row {
	unsigned workers;
	double shared, private_same_each, private_split;
};
static struct share_row share_rows[8];
static int nshare;

static void run_sharing(void)
{
	const uint64_t keys = opt.base_keys, requests = 4 * keys;
	const uint32_t capacity = (uint32_t)(keys / 10);
	struct zipf z;
	if (zipf_init(&z, keys, 0.99))
		return;
	static const unsigned ns[] = {1, 2, 4, 8};
	for (unsigned w = 0; w < sizeof(ns) / sizeof(ns[0]); w++) {
		unsigned n = ns[w];
		struct lru_sim shared, each[8], split[8];
		if (lru_init(&shared, capacity))
			return;
		for (unsigned i = 0; i < n; i++)
			if (lru_init(&each[i], capacity) || lru_init(&split[i], capacity / n))
				return;
		/* the first half warms the caches up: steady state is measured */
		uint64_t rng = 42, hs = 0, he = 0, hp = 0;
		for (uint64_t r = 0; r < 2 * requests; r++) {
			uint64_t k = zipf_next(&z, &rng);
			unsigned who = (unsigned)rng_below(&rng, n);
			bool a = lru_access(&shared, k), b = lru_access(&each[who], k),
			     d = lru_access(&split[who], k);
			if (r >= requests) {
				hs += a;
				he += b;
				hp += d;
			}
		}
		lru_free(&shared);
		for (unsigned i = 0; i < n; i++) {
			lru_free(&each[i]);
			lru_free(&split[i]);
		}
		share_rows[nshare++] = (struct share_row){
			n, (double)hs / requests, (double)he / requests, (double)hp / requests};
	}
}

static void print_sharing(FILE *f, bool md)
{
	if (!nshare)
		return;
	if (md)
		fprintf(f,
			"\n**hit ratio: one cache shared by N workers against one per worker** "
			"(exact LRU, Zipf 0.99 over %" PRIu64 " keys, capacity 10 %%)\n\n"
			"| workers | shared | private, each the shared size (N x memory) | "
			"private, the shared size split N ways |\n|---|---|---|---|\n",
			opt.base_keys);
	else
		fprintf(f,
			"\nhit ratio, Zipf 0.99 over %" PRIu64 " keys, capacity 10 %%: shared "
			"by N workers / private of the same size each / private, size split\n",
			opt.base_keys);
	for (int i = 0; i < nshare; i++) {
		const struct share_row *s = &share_rows[i];
		if (md)
			fprintf(f, "| %u | %.1f %% | %.1f %% | %.1f %% |\n", s->workers,
				100 * s->shared, 100 * s->private_same_each,
				100 * s->private_split);
		else
			fprintf(f, "  %u workers: %.1f %%  %.1f %%  %.1f %%\n", s->workers,
				100 * s->shared, 100 * s->private_same_each,
				100 * s->private_split);
	}
}

/* ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("usage: hostcache-compare [--quick] [--seconds S] [--keys N] [--big]\n"
	      "                         [--only GROUPS] [--systems NAMES]\n"
	      "                         [--csv FILE] [--json FILE] [--markdown FILE]\n"
	      "hostcache against Redis, memcached, a process-shared rwlock table and a\n"
	      "cache inside each process, on the same workloads, in one run.\n"
	      "\n"
	      "  --quick          0.3 s per system and case, 200 K keys as the base\n"
	      "  --seconds S      seconds per system and case (default 1)\n"
	      "  --keys N         the base case's keys (default 1000000)\n"
	      "  --big            also 10 M keys (hostcache, rwlock, lru; ~6 GB of memory)\n"
	      "  --only GROUPS    size,keys,dist,mix,procs,memory,sharing (default all;\n"
	      "                   memory rows come from every data set of 100 K keys or more)\n"
	      "  --systems NAMES  hostcache,hc-load,redis,redis-pipe,memcached,\n"
	      "                   memcached-mget,rwlock,lru (default all)\n"
	      "  --csv, --json, --markdown FILE   also write the tables there\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"quick", no_argument, NULL, 'q'},
		{"seconds", required_argument, NULL, 's'},
		{"keys", required_argument, NULL, 'k'},
		{"big", no_argument, NULL, 'B'},
		{"only", required_argument, NULL, 'o'},
		{"systems", required_argument, NULL, 'S'},
		{"csv", required_argument, NULL, 'c'},
		{"json", required_argument, NULL, 'j'},
		{"markdown", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		char *end;
		switch (ch) {
		case 'q':
			opt.seconds = 0.3;
			opt.base_keys = 200000;
			break;
		case 's':
			opt.seconds = strtod(optarg, &end);
			if (*end || !(opt.seconds >= 0.05 && opt.seconds <= 600)) {
				fprintf(stderr, "hostcache-compare: --seconds: 0.05..600\n");
				return 2;
			}
			break;
		case 'k':
			opt.base_keys = strtoull(optarg, &end, 10);
			if (*end || opt.base_keys < 1000 || opt.base_keys > 100000000) {
				fprintf(stderr, "hostcache-compare: --keys: 1000..100000000\n");
				return 2;
			}
			break;
		case 'B':
			opt.big = true;
			break;
		case 'o':
			opt.only = optarg;
			break;
		case 'S':
			opt.systems = optarg;
			break;
		case 'c':
			opt.csv = optarg;
			break;
		case 'j':
			opt.json = optarg;
			break;
		case 'm':
			opt.markdown = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	main_pid = getpid();
	atexit(run_exit_fns);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, SIG_IGN);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	samples = mmap(NULL, (size_t)MAX_PROCS * MAX_SAMPLES * sizeof(float),
		       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sh == MAP_FAILED || samples == MAP_FAILED) {
		perror("hostcache-compare: mmap");
		return 1;
	}

	/* The cases, grouped by data set (each system filled once per set). */
	const uint64_t K = opt.base_keys, small = 10000;
	const struct cmp_case all[] = {
		{"size", 16, small, 0.99, 100, 1},
		{"size", 100, small, 0.99, 100, 1},
		{"size", 1024, small, 0.99, 100, 1},
		{"size", 16384, small, 0.99, 100, 1},
		{"keys", 100, small, 0.99, 100, 1},
		{"keys", 100, K, 0.99, 100, 1},
		{"dist", 100, K, 0, 100, 1},
		{"dist", 100, K, 0.99, 100, 1},
		{"mix", 100, K, 0.99, 100, 1},
		{"mix", 100, K, 0.99, 90, 1},
		{"mix", 100, K, 0.99, 50, 1},
		{"procs", 100, K, 0.99, 100, 1},
		{"procs", 100, K, 0.99, 100, 2},
		{"procs", 100, K, 0.99, 100, 4},
		{"keys", 100, 10000000, 0.99, 100, 1, true},
		/* memory only (no timed run): per-item cost at other value sizes */
		{"memory", 16, K, 0.99, 100, 0},
		{"memory", 1024, K / 4, 0.99, 100, 0},
	};
	const size_t ncases = sizeof(all) / sizeof(all[0]);
	struct data_set sets[16];
	size_t nsets = 0;
	for (size_t i = 0; i < ncases; i++) {
		if (!listed(opt.only, all[i].group) || (all[i].big && !opt.big))
			continue;
		size_t j = 0;
		while (j < nsets &&
		       !(sets[j].value_size == all[i].value_size && sets[j].keys == all[i].keys))
			j++;
		if (j == nsets)
			sets[nsets++] = (struct data_set){all[i].value_size, all[i].keys};
	}
	bool want_mem = listed(opt.only, "memory");

	fprintf(stderr, "hostcache-compare: %zu data sets, %.2f s per system and case\n", nsets,
		opt.seconds);
	for (size_t d = 0; d < nsets; d++) {
		/* every system of the data set set up and filled, side by side */
		struct state {
			const struct cmp_sys *s;
			int ok; /* 0: filled */
			bool set_up;
			double per;
			char why[160];
		} st[16];
		size_t nst = 0;
		struct cmp_case base = {"", sets[d].value_size, sets[d].keys, 0.99, 100, 1};
		for (const struct cmp_sys *const *sp = systems; *sp; sp++) {
			const struct cmp_sys *s = *sp;
			if (!listed(opt.systems, s->name))
				continue;
			struct state *x = &st[nst++];
			*x = (struct state){.s = s, .ok = -1, .per = -1};
			if (sets[d].keys >= 10000000 && !s->local)
				snprintf(x->why, sizeof(x->why),
					 "10 M keys run on the local systems only");
			else if (s->setup(&base, x->why, sizeof(x->why)) == 0) {
				x->set_up = true;
				uint64_t t0 = now_ns();
				x->ok = s->fill(&base);
				check_stop();
				if (x->ok)
					snprintf(x->why, sizeof(x->why), "fill failed");
				else
					fprintf(stderr,
						"hostcache-compare: %-15s %5u B x %8" PRIu64
						" keys filled in %.2f s\n",
						s->name, sets[d].value_size, sets[d].keys,
						(double)(now_ns() - t0) / 1e9);
			}
			/* per item only where slab and table granularity is amortised */
			if (!x->ok && want_mem && sets[d].keys >= 100000 && s != &cmp_hc_load &&
			    s != &cmp_redis_pipe && s != &cmp_memcached_mget && nmem < 64) {
				uint64_t b = s->mem_bytes();
				x->per = b ? (double)b / (double)sets[d].keys -
							 (CMP_KEY_LEN + sets[d].value_size)
					   : -1;
				mem_rows[nmem++] = (struct mem_row){s->name, sets[d].value_size,
								    sets[d].keys, x->per};
			}
		}
		for (size_t i = 0; i < ncases; i++) {
			const struct cmp_case *c = &all[i];
			if (c->value_size != sets[d].value_size || c->keys != sets[d].keys ||
			    !listed(opt.only, c->group) || c->procs == 0 || (c->big && !opt.big) ||
			    seen_before(all, i))
				continue;
			/* ROUNDS rounds, each running every system once in turn */
			struct result rounds[16][ROUNDS];
			for (int k = 0; k < ROUNDS; k++)
				for (size_t jj = 0; jj < nst; jj++) {
					size_t j = (jj + (size_t)k) % nst; /* turns rotate */
					struct result *r = &rounds[j][k];
					memset(r, 0, sizeof(*r));
					r->sys = st[j].s;
					r->c = *c;
					r->bytes_per_item = st[j].per;
					if (st[j].ok) {
						r->skipped = true;
						r->failed = st[j].set_up; /* the fill failed */
						snprintf(r->why, sizeof(r->why), "%s", st[j].why);
					} else {
						run_case(st[j].s, c, r);
						check_stop();
					}
				}
			for (size_t j = 0; j < nst; j++)
				*add_result() = median_round(rounds[j]);
		}
		for (size_t j = 0; j < nst; j++)
			if (st[j].set_up)
				st[j].s->teardown();
	}

	/* results are in data-set order: sort into the case order of all[] */
	struct result *sorted = malloc(nresults * sizeof(*sorted));
	size_t n = 0;
	for (size_t i = 0; sorted && i < ncases; i++)
		for (const struct cmp_sys *const *sp = systems; *sp && !seen_before(all, i); sp++)
			for (size_t j = 0; j < nresults; j++)
				if (results[j].sys == *sp && same_case(&results[j].c, &all[i]))
					sorted[n++] = results[j];
	if (sorted) {
		memcpy(results, sorted, n * sizeof(*sorted));
		nresults = n;
		free(sorted);
	}
	if (listed(opt.only, "sharing"))
		run_sharing();

	print_table(stdout, false);
	print_mem(stdout, false);
	print_sharing(stdout, false);
	if (opt.csv)
		write_csv(opt.csv);
	if (opt.json)
		write_json(opt.json);
	if (opt.markdown) {
		FILE *f = fopen(opt.markdown, "w");
		if (f) {
			print_table(f, true);
			print_mem(f, true);
			print_sharing(f, true);
			fclose(f);
		}
	}
	int failed = 0;
	for (size_t i = 0; i < nresults; i++)
		failed += results[i].failed;
	if (failed)
		fprintf(stderr, "hostcache-compare: %d runs failed (see 'skipped' above)\n",
			failed);
	return failed ? 1 : 0;
}
