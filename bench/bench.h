/*
 * bench.h - what the parts of hostcache-bench share: the key and value
 * scheme, the two systems behind one interface, the worker-process
 * harness (procs.c), the capacity cases (capacity.c), the loading cases
 * (loadcases.c) and the agent cases (agentcases.c).  bench.c has the
 * description of the benchmark and its output.
 */
#ifndef BENCH_H
#define BENCH_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hostcache.h"
#include "rwtable.h"
#include "util.h"

#define KEY_LEN BENCH_KEY_LEN
#define VAL_LEN 100	   /* bytes per value */
#define VAL_CAP 128	   /* read buffer; the baseline's largest value */
#define BATCH 128	   /* operations per timed batch */
#define VERIFY_PER_BATCH 4 /* gets of each batch compared with the expected value */
#define MAX_PROCS 2
#define MIB (UINT64_C(1) << 20)

enum sys { SYS_HC, SYS_RW, SYS_N };
extern const char *const sys_name[SYS_N];

enum workload { WL_GET, WL_SET, WL_MIX };

struct cfg {
	bool quick;
	const char *only; /* case-name prefix, or NULL for all */
	double seconds;
	uint64_t keys;
};

/* ---- bench.c: errors, cleanup, keys and values ---- */

extern pid_t main_pid; /* the parent; workers are its fork()ed children */

/* Print "hostcache-bench: ..." and exit (the parent removes its segments). */
__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...);

/* Remember a segment (or a baseline object, @rw) to remove on any exit. */
void register_name(const char *name, bool rw);
/* Remove it now and forget it. */
void release_name(const char *name, bool rw);
/*
 * Run @fn on every exit of the parent (exit(), die(), SIGINT/SIGTERM/SIGHUP),
 * before the segments are removed: the agent cases stop the processes they
 * started with it.  @fn may run in a signal handler.
 */
void register_cleanup(void (*fn)(void));

void make_value(uint64_t id, uint8_t *val); /* VAL_LEN bytes */
bool value_ok(uint64_t id, const uint8_t *val, size_t vlen);

/* ---- the two systems behind one interface ---- */

struct target {
	enum sys sys;
	char name[96];
	struct hc_cache *hc; /* the opening process's handle */
	struct rwt *rw;	     /* shared mapping, usable after fork() */
};

static inline bool is_miss(enum sys s, int rc)
{
	return s == SYS_HC ? rc == HC_E_NOTFOUND : rc == -ENOENT;
}

static inline int t_get(const struct target *t, const char *key, void *buf, size_t *vlen)
{
	if (t->sys == SYS_HC)
		return hc_get(t->hc, key, KEY_LEN, buf, VAL_CAP, vlen);
	return rwt_get(t->rw, key, KEY_LEN, buf, VAL_CAP, vlen);
}

static inline int t_set(const struct target *t, const char *key, const void *val)
{
	if (t->sys == SYS_HC)
		return hc_set(t->hc, key, KEY_LEN, val, VAL_LEN, 0);
	return rwt_set(t->rw, key, KEY_LEN, val, VAL_LEN);
}

/* ---- procs.c: worker processes ---- */

/* One measured run: what the workers did, summed. */
struct measure {
	uint64_t ops, gets, hits, sets, verified, nsamples;
	uint64_t set_fails; /* hc_set calls that returned HC_E_NOSPACE */
	double mops, wall_mops, p50, p99;
	double mops_min, mops_max; /* over the rounds */
	int rounds;
};

struct run_spec {
	const char *case_name;
	enum workload wl;
	int procs;
	uint64_t nkeys;
	double seconds;
	uint64_t seed;
};

/* Latency samples (ns per operation, one per batch), growing. */
struct samplebuf {
	float *v;
	uint64_t n, cap;
};

/*
 * The shared page and sample array workers report through, sized for runs
 * of up to @seconds.  Between runs, samples[0..sample_cap) is scratch space
 * for the parent.
 */
void setup_shared(double seconds);
extern float *samples;
extern uint64_t sample_cap;

/* Fork rs->procs workers on @t, start them together, gather one run. */
void run_procs(const struct target *t, const struct run_spec *rs, struct measure *m,
	       struct samplebuf *sb);

/* Sort @n samples and read the median and the 99th percentile. */
void percentiles(float *v, uint64_t n, double *p50, double *p99);

/* ---- capacity.c: cases 5 and 6 ---- */

void case_mem(const struct cfg *cfg);
void case_zipf(const struct cfg *cfg);

/* ---- loadcases.c: hc_get_or_load on hits and under stampedes ---- */

void case_load_hit(const struct cfg *cfg);
void case_stampede(const struct cfg *cfg);
void case_stampede_keys(const struct cfg *cfg);

/* ---- agentcases.c: L2 through hostcache-agent against a private redis-server ---- */

void case_agent_l2_hit(const struct cfg *cfg);
void case_agent_round_trips(const struct cfg *cfg);

#endif /* BENCH_H */
