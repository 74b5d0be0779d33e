/*
 * procs.c - the worker processes of hostcache-bench.
 *
 * One measured run: the parent fork()s 1 or 2 workers on an already
 * populated target.  A hostcache worker closes the handle it inherited
 * (hostcache.h: a child must not use it) and attaches again; a baseline
 * worker uses the inherited MAP_SHARED mapping.  Each worker makes one
 * untimed call (which claims its hostcache thread slot), reports ready in
 * the shared control page and spins until the parent publishes a start
 * time a few milliseconds ahead; all start at that instant and stop at the
 * first batch boundary past start + seconds.  Counters and per-batch
 * latency samples go back through a MAP_SHARED|MAP_ANONYMOUS mapping; a
 * worker that finds a wrong value or an unexpected error exits non-zero
 * and the parent stops the benchmark.
 */
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "rng.h"

#define MIX_SET_PCT 10 /* percent of sets in WL_MIX */

struct proc_result {
	uint64_t ops, gets, hits, sets, verified;
	uint64_t set_fails; /* hc_set calls that returned HC_E_NOSPACE */
	uint64_t timed_ns;  /* inside timed batches */
	uint64_t last_ns;   /* CLOCK_MONOTONIC when the worker stopped */
	uint64_t nsamples;
};

/* The MAP_SHARED|MAP_ANONYMOUS page every worker reports through. */
struct control {
	int ready;	/* workers attached and waiting; atomic */
	int go;		/* set by the parent once go_ns/end_ns are written; atomic */
	uint64_t go_ns; /* every worker starts at this CLOCK_MONOTONIC time */
	uint64_t end_ns;
	struct proc_result res[MAX_PROCS];
};

static struct control *ctl;
float *samples; /* MAX_PROCS * sample_cap per-op ns, one per batch */
uint64_t sample_cap;

void setup_shared(double seconds)
{
	/* a batch takes at least ~1 us, so this many samples per second suffice */
	sample_cap = (uint64_t)(seconds * 2e6) + 4096;
	size_t len = sizeof(struct control) + MAX_PROCS * sample_cap * sizeof(float);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap of the shared results: %s", strerror(errno));
	ctl = p;
	samples = (float *)(ctl + 1);
}

/* The worker's loop: batches of BATCH operations until end_ns. */
static void worker_loop(const struct target *t, const struct run_spec *rs, uint64_t rng,
			struct proc_result *r, float *out)
{
	static char keys[BATCH][KEY_LEN];
	static uint8_t vals[BATCH][VAL_LEN];
	static uint8_t bufs[VERIFY_PER_BATCH][VAL_CAP];
	uint64_t ids[BATCH];
	uint8_t is_set[BATCH];
	int rcs[BATCH];
	size_t vl[VERIFY_PER_BATCH];
	const uint64_t end = ctl->end_ns;

	for (;;) {
		for (int j = 0; j < BATCH; j++) {
			ids[j] = rng_below(&rng, rs->nkeys);
			make_key(ids[j], keys[j]);
			is_set[j] = rs->wl == WL_SET ||
				    (rs->wl == WL_MIX && rng_below(&rng, 100) < MIX_SET_PCT);
			if (is_set[j])
				make_value(ids[j], vals[j]);
		}
		uint64_t t0 = now_ns();
		for (int j = 0; j < BATCH; j++) {
			if (is_set[j])
				rcs[j] = t_set(t, keys[j], vals[j]);
			else
				rcs[j] = t_get(t, keys[j], bufs[j % VERIFY_PER_BATCH],
					       &vl[j % VERIFY_PER_BATCH]);
		}
		uint64_t t1 = now_ns();

		for (int j = 0; j < BATCH; j++) {
			if (is_set[j]) {
				/*
				 * HC_E_NOSPACE is part of hc_set's contract (a stalled
				 * reader); it is counted and shown as set_fails=, not
				 * hidden.  Any other error stops the run.
				 */
				if (rcs[j] == HC_E_NOSPACE && t->sys == SYS_HC)
					r->set_fails++;
				else if (rcs[j])
					die("%s: set: %s", sys_name[t->sys], hc_strerror(rcs[j]));
				r->sets++;
			} else if (rcs[j] == 0) {
				r->gets++;
				r->hits++;
			} else if (is_miss(t->sys, rcs[j])) {
				r->gets++;
			} else {
				die("%s: get: %s", sys_name[t->sys], hc_strerror(rcs[j]));
			}
		}
		/* a set is checked by reading the batch's last key back (untimed) */
		if (is_set[BATCH - 1]) {
			uint8_t back[VAL_CAP];
			size_t n = 0;
			int rc = t_get(t, keys[BATCH - 1], back, &n);
			if (rc == 0 && !value_ok(ids[BATCH - 1], back, n))
				die("%s: key %" PRIu64 " read back a wrong value after a set",
				    sys_name[t->sys], ids[BATCH - 1]);
			if (rc && !is_miss(t->sys, rc))
				die("%s: get after set: %s", sys_name[t->sys], hc_strerror(rc));
			r->verified += rc == 0;
		}
		/* the last VERIFY_PER_BATCH buffers hold the last gets' values */
		for (int j = BATCH - VERIFY_PER_BATCH; j < BATCH; j++) {
			if (is_set[j] || rcs[j])
				continue;
			if (!value_ok(ids[j], bufs[j % VERIFY_PER_BATCH], vl[j % VERIFY_PER_BATCH]))
				die("%s: key %" PRIu64 " returned a wrong value (%zu bytes)",
				    sys_name[t->sys], ids[j], vl[j % VERIFY_PER_BATCH]);
			r->verified++;
		}
		r->ops += BATCH;
		r->timed_ns += t1 - t0;
		if (r->nsamples < sample_cap)
			out[r->nsamples++] = (float)(t1 - t0) / BATCH;
		if (t1 >= end || r->nsamples >= sample_cap) {
			r->last_ns = t1;
			return;
		}
	}
}

__attribute__((noreturn)) static void worker_main(const struct target *parent_t,
						  const struct run_spec *rs, int idx)
{
	struct target t = *parent_t;
	if (t.sys == SYS_HC) {
		/* an inherited handle may only be closed; attach again */
		hc_close(parent_t->hc);
		int rc = hc_open(t.name, NULL, &t.hc);
		if (rc)
			die("hc_open %s: %s", t.name, hc_strerror(rc));
	}
	/* the first operation claims this process's thread slot: not timed */
	char key[KEY_LEN];
	uint8_t buf[VAL_CAP];
	size_t vlen;
	make_key(0, key);
	int rc = t_get(&t, key, buf, &vlen);
	if (rc && !is_miss(t.sys, rc))
		die("%s: first get: %s", sys_name[t.sys], hc_strerror(rc));

	__atomic_add_fetch(&ctl->ready, 1, __ATOMIC_ACQ_REL);
	while (!__atomic_load_n(&ctl->go, __ATOMIC_ACQUIRE))
		sched_yield();
	while (now_ns() < ctl->go_ns)
		;
	uint64_t rng = rs->seed ^ (UINT64_C(0x51ed270b27a3b1d5) * (uint64_t)(idx + 1));
	worker_loop(&t, rs, rng, &ctl->res[idx], samples + (uint64_t)idx * sample_cap);
	if (t.sys == SYS_HC)
		hc_close(t.hc);
	_exit(0);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

void percentiles(float *v, uint64_t n, double *p50, double *p99)
{
	if (n == 0) {
		*p50 = *p99 = NAN;
		return;
	}
	qsort(v, n, sizeof(*v), cmp_float);
	*p50 = v[n / 2];
	*p99 = v[(n * 99) / 100];
}

static void samples_append(struct samplebuf *sb, const float *v, uint64_t n)
{
	if (sb->n + n > sb->cap) {
		uint64_t cap = sb->cap ? sb->cap : 4096;
		while (cap < sb->n + n)
			cap *= 2;
		float *nv = realloc(sb->v, cap * sizeof(*nv));
		if (!nv)
			die("out of memory for %" PRIu64 " latency samples", cap);
		sb->v = nv;
		sb->cap = cap;
	}
	memcpy(sb->v + sb->n, v, n * sizeof(*v));
	sb->n += n;
}

/*
 * Fork rs->procs workers on @t, start them together, and gather one
 * round's counters and throughput into @m and its latency samples into @sb.
 */
void run_procs(const struct target *t, const struct run_spec *rs, struct measure *m,
	       struct samplebuf *sb)
{
	pid_t pids[MAX_PROCS];
	memset(ctl, 0, sizeof(*ctl));
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < rs->procs; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0)
			worker_main(t, rs, i);
	}
	/* wait until every worker is attached, noticing one that died first */
	uint64_t deadline = now_ns() + UINT64_C(30000000000);
	while (__atomic_load_n(&ctl->ready, __ATOMIC_ACQUIRE) < rs->procs) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);
		if (p > 0 || now_ns() > deadline) {
			for (int i = 0; i < rs->procs; i++)
				kill(pids[i], SIGKILL);
			while (wait(NULL) > 0)
				;
			die("%s/%s: a worker failed before the start", rs->case_name,
			    sys_name[t->sys]);
		}
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
	ctl->go_ns = now_ns() + 20000000; /* 20 ms: every worker is spinning by then */
	ctl->end_ns = ctl->go_ns + (uint64_t)(rs->seconds * 1e9);
	__atomic_store_n(&ctl->go, 1, __ATOMIC_RELEASE);

	bool failed = false;
	for (int i = 0; i < rs->procs; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) < 0)
			die("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "hostcache-bench: worker %d of %s/%s %s %d\n", i,
				rs->case_name, sys_name[t->sys],
				WIFSIGNALED(status) ? "killed by signal" : "exited with",
				WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			failed = true;
		}
	}
	if (failed)
		die("%s/%s failed", rs->case_name, sys_name[t->sys]);

	memset(m, 0, sizeof(*m));
	for (int i = 0; i < rs->procs; i++) {
		const struct proc_result *r = &ctl->res[i];
		m->ops += r->ops;
		m->gets += r->gets;
		m->hits += r->hits;
		m->sets += r->sets;
		m->verified += r->verified;
		m->set_fails += r->set_fails;
		m->nsamples += r->nsamples;
		if (r->timed_ns)
			m->mops += (double)r->ops * 1e3 / (double)r->timed_ns;
		if (r->last_ns > ctl->go_ns)
			m->wall_mops += (double)r->ops * 1e3 / (double)(r->last_ns - ctl->go_ns);
		samples_append(sb, samples + (uint64_t)i * sample_cap, r->nsamples);
	}
}
