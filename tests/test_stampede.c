/*
 * test_stampede.c - single-flight across processes.
 *
 *   stampede      4 processes x 16 threads ask for one missing key at once:
 *                 the loader runs once, everybody gets the value.
 *   thousand      the same 64 callers each ask for 1000 keys in their own
 *                 random order: every key is loaded exactly once.
 *   owner killed  the owner of a flight is SIGKILLed mid-load: a waiter in
 *                 another process takes over within the documented bound
 *                 (checked every 20 ms), and the segment checks clean.
 *   hung owner    an owner that outlives its lease: a waiter takes over.
 *   loader error  the owner's error goes to its waiters in other processes.
 *
 * Shared counters live in an anonymous shared mapping made before fork;
 * each child opens its own handle (an inherited one returns HC_E_FORKED).
 * Times are CLOCK_MONOTONIC, common to all processes.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "testutil.h"

#define NPROC 4
#define NTHR 16
#define NCALLERS (NPROC * NTHR)
#define NKEYS 1000

#define ID_STAMPEDE 4242u
#define ID_TAKEOVER 777u
#define ID_OWNER 778u

struct result {
	int rc;
	int ok;
	uint8_t source;
	uint8_t coalesced;
	uint64_t t_start, t_ret;		      /* ns */
	uint32_t n_owner, n_coalesced, n_l1, n_other; /* thousand: per source */
};

struct shared {
	int ready;	 /* barrier */
	int loader_runs; /* the owner's (or the stampede's) loader */
	int other_runs;	 /* loads run by waiters (takeovers) */
	int started;	 /* the owner's loader began */
	uint64_t started_ns;
	int waiters_ready; /* waiters about to call */
	int waiters_expected;
	unsigned hang_ms;  /* the owner's loader sleeps this long */
	unsigned lease_ms; /* opts.lease_ms of owner and waiters */
	int fail_rc;	   /* the owner's loader returns this (0: a value) */
	int errors;	   /* unexpected return codes in children */
	int bad_values;	   /* wrong or torn values in children */
	uint32_t key_loads[NKEYS];
	struct result res[NCALLERS];
};

static struct shared *sh;
static const char *seg;
static struct hc_cache *pc; /* the parent's handle */

static uint64_t ms_since(uint64_t t0_ns)
{
	return (tu_now_ns() - t0_ns) / 1000000u;
}

static void log_stderr(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= HC_LOG_WARN)
		fprintf(stderr, "hostcache[%d]: %s\n", (int)getpid(), msg);
}

static void on_finding(void *ctx, int sev, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "check %s: %s\n", sev == HC_CHECK_ERROR ? "ERROR" : "WARN", msg);
}

static void barrier(int *ctr, int total)
{
	__atomic_add_fetch(ctr, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(ctr, __ATOMIC_ACQUIRE) < total)
		sched_yield();
}

/* Wait (at most @timeout_ms) until *@p >= @want; 0 or -1. */
static int wait_for(const int *p, int want, unsigned timeout_ms)
{
	uint64_t t0 = tu_now_ns();
	while (__atomic_load_n(p, __ATOMIC_ACQUIRE) < want) {
		if (ms_since(t0) > timeout_ms)
			return -1;
		tu_sleep_ms(1);
	}
	return 0;
}

static void child_error(const char *what, int rc)
{
	fprintf(stderr, "[%d] %s: %d (%s)\n", (int)getpid(), what, rc, hc_strerror(rc));
	__atomic_add_fetch(&sh->errors, 1, __ATOMIC_SEQ_CST);
}

/* ---------------------------------------------------------------------- */
/* Processes and threads                                                   */

typedef void (*work_fn)(struct hc_cache *c, int id);

struct targ {
	struct hc_cache *c;
	int id;
	work_fn fn;
};

static void *thread_main(void *p)
{
	struct targ *a = p;
	a->fn(a->c, a->id);
	return NULL;
}

/* Fork a process running @fn in @nthr threads with ids first_id.. */
static pid_t spawn(int first_id, int nthr, work_fn fn)
{
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid)
		return pid;
	/* the parent's handle does not serve the child */
	char b[8];
	size_t n;
	int rc = hc_get(pc, "k", 1, b, sizeof(b), &n);
	if (rc != HC_E_FORKED)
		child_error("inherited handle: expected HC_E_FORKED", rc);
	hc_close(pc);
	struct hc_cache *c;
	rc = hc_open(seg, &(struct hc_options){.log = log_stderr}, &c);
	if (rc) {
		child_error("child hc_open", rc);
		_exit(3);
	}
	pthread_t th[NTHR];
	struct targ args[NTHR];
	for (int i = 0; i < nthr; i++) {
		args[i] = (struct targ){c, first_id + i, fn};
		if (pthread_create(&th[i], NULL, thread_main, &args[i]) != 0) {
			child_error("pthread_create", -errno);
			_exit(4);
		}
	}
	for (int i = 0; i < nthr; i++)
		pthread_join(th[i], NULL);
	hc_close(c);
	_exit(0);
}

/* Reap @pid within @timeout_ms (else SIGKILL it, a failure); its status or -1. */
static int reap(pid_t pid, unsigned timeout_ms)
{
	uint64_t t0 = tu_now_ns();
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		REQUIRE(r == 0);
		if (ms_since(t0) > timeout_ms) {
			fprintf(stderr, "child %d still running after %u ms: killed\n", (int)pid,
				timeout_ms);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			CHECK(!"child timed out");
			return -1;
		}
		tu_sleep_ms(2);
	}
}

#define CHECK_EXIT(status)                                                  \
	do {                                                                \
		int st_ = (status);                                         \
		CHECK(st_ >= 0 && WIFEXITED(st_) && WEXITSTATUS(st_) == 0); \
	} while (0)

static void phase_begin(const char *base)
{
	memset(sh, 0, sizeof(*sh));
	seg = tu_name(base);
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL,
			       .size = 32u << 20,
			       .max_value = 16384,
			       .max_threads = 160,
			       .log = log_stderr};
	int rc = hc_open(seg, &o, &pc);
	if (rc)
		fprintf(stderr, "hc_open(%s): %s\n", seg, hc_strerror(rc));
	REQUIRE(rc == 0);
}

static void phase_end(void)
{
	CHECK(sh->errors == 0);
	CHECK(sh->bad_values == 0);
	hc_close(pc);
	CHECK_RC(hc_unlink(seg), 0);
}

static void check_segment(const char *what)
{
	int64_t mrc = hc_maintain(pc, 0);
	CHECK(mrc >= 0);
	struct hc_check_result r;
	memset(&r, 0, sizeof(r));
	CHECK_RC(hc_check(pc, on_finding, NULL, &r), 0);
	CHECK(r.errors == 0);
	CHECK(r.warnings == 0);
	printf("%s: check: %llu errors, %llu warnings, %llu entries\n", what,
	       (unsigned long long)r.errors, (unsigned long long)r.warnings,
	       (unsigned long long)r.entries);
}

/* ---------------------------------------------------------------------- */
/* Stampede: one key, 64 callers                                           */

static int stampede_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx, (void)key, (void)klen;
	__atomic_add_fetch(&sh->loader_runs, 1, __ATOMIC_SEQ_CST);
	tu_sleep_ms(50);
	uint8_t v[64];
	size_t n = tu_make_value(v, 48, ID_STAMPEDE, 1);
	return hc_load_value(ld, v, n);
}

static void w_stampede(struct hc_cache *c, int id)
{
	struct hc_load_opts o = {.ttl_ms = 60000};
	uint8_t buf[256];
	size_t n = 0;
	struct hc_meta m;
	memset(&m, 0xa5, sizeof(m));
	struct result *r = &sh->res[id];
	barrier(&sh->ready, NCALLERS);
	r->t_start = tu_now_ns();
	r->rc = hc_get_or_load(c, "stampede:1", 10, stampede_loader, NULL, &o, buf, sizeof(buf), &n,
			       &m);
	r->t_ret = tu_now_ns();
	r->ok = r->rc == 0 && tu_check_value(buf, n, ID_STAMPEDE) == 0;
	r->source = m.source;
	r->coalesced = m.coalesced;
}

static void test_stampede(void)
{
	phase_begin("stampede");
	pid_t pids[NPROC];
	for (int p = 0; p < NPROC; p++)
		pids[p] = spawn(p * NTHR, NTHR, w_stampede);
	for (int p = 0; p < NPROC; p++)
		CHECK_EXIT(reap(pids[p], 30000));

	int ok = 0, owners = 0, coalesced = 0, l1 = 0;
	uint64_t first = UINT64_MAX, last = 0;
	for (int i = 0; i < NCALLERS; i++) {
		struct result *r = &sh->res[i];
		if (r->rc != 0)
			fprintf(stderr, "stampede: caller %d: %d (%s)\n", i, r->rc,
				hc_strerror(r->rc));
		ok += r->ok;
		if (r->source == HC_SRC_ORIGIN && !r->coalesced)
			owners++;
		else if (r->source == HC_SRC_ORIGIN && r->coalesced == 1)
			coalesced++;
		else if (r->source == HC_SRC_L1 && !r->coalesced)
			l1++;
		if (r->t_start < first)
			first = r->t_start;
		if (r->t_ret > last)
			last = r->t_ret;
	}
	printf("stampede: %d callers, loader ran %d time(s); 1 owner expected, got %d; "
	       "%d coalesced, %d L1 hits; all done %.1f ms after the first call\n",
	       NCALLERS, sh->loader_runs, owners, coalesced, l1, (last - first) / 1e6);
	CHECK(sh->loader_runs == 1);
	CHECK(ok == NCALLERS);
	CHECK(owners == 1);
	CHECK(owners + coalesced + l1 == NCALLERS);
	CHECK(coalesced >= NCALLERS / 2);

	struct hc_stats st;
	CHECK_RC(hc_stats(pc, &st), 0);
	CHECK(st.load.leaders == 1);
	CHECK(st.load.loads == 1);
	CHECK(st.load.coalesced == (uint64_t)coalesced);
	CHECK(st.load.uncoalesced == 0);
	CHECK(st.load.takeovers == 0 && st.load.lease_expiries == 0);
	CHECK(st.flights_active == 0);
	printf("stampede: flights_total %u\n", st.flights_total);
	check_segment("stampede");
	phase_end();
}

/* ---------------------------------------------------------------------- */
/* A thousand keys, each caller in its own order                           */

static int key_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx;
	char k[32];
	if (klen < 3 || klen >= sizeof(k))
		return -EINVAL;
	memcpy(k, key, klen);
	k[klen] = 0;
	unsigned id = (unsigned)strtoul(k + 2, NULL, 10);
	if (id >= NKEYS)
		return -EINVAL;
	__atomic_add_fetch(&sh->key_loads[id], 1, __ATOMIC_SEQ_CST);
	tu_sleep_ms(1);
	uint8_t v[256];
	size_t n = tu_make_value(v, 16 + id % 200, id, 7);
	return hc_load_value(ld, v, n);
}

static void w_thousand(struct hc_cache *c, int id)
{
	uint16_t order[NKEYS];
	uint64_t rng = (uint64_t)(id + 1) * 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < NKEYS; i++)
		order[i] = (uint16_t)i;
	for (int i = NKEYS - 1; i > 0; i--) {
		int j = (int)(tu_rand(&rng) % (uint64_t)(i + 1));
		uint16_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	struct hc_load_opts o = {.ttl_ms = 120000};
	struct result *r = &sh->res[id];
	barrier(&sh->ready, NCALLERS);
	r->t_start = tu_now_ns();
	for (int i = 0; i < NKEYS; i++) {
		char key[16];
		int kl = snprintf(key, sizeof(key), "k:%u", order[i]);
		uint8_t buf[256];
		size_t n = 0;
		struct hc_meta m;
		int rc = hc_get_or_load(c, key, (size_t)kl, key_loader, NULL, &o, buf, sizeof(buf),
					&n, &m);
		if (rc != 0) {
			child_error("thousand: hc_get_or_load", rc);
			continue;
		}
		if (tu_check_value(buf, n, order[i]) != 0)
			__atomic_add_fetch(&sh->bad_values, 1, __ATOMIC_SEQ_CST);
		if (m.source == HC_SRC_ORIGIN && !m.coalesced)
			r->n_owner++;
		else if (m.source == HC_SRC_ORIGIN && m.coalesced == 1)
			r->n_coalesced++;
		else if (m.source == HC_SRC_L1 && !m.coalesced)
			r->n_l1++;
		else
			r->n_other++;
	}
	r->t_ret = tu_now_ns();
}

static void test_thousand(void)
{
	phase_begin("thousand");
	uint64_t t0 = tu_now_ns();
	pid_t pids[NPROC];
	for (int p = 0; p < NPROC; p++)
		pids[p] = spawn(p * NTHR, NTHR, w_thousand);
	for (int p = 0; p < NPROC; p++)
		CHECK_EXIT(reap(pids[p], 60000));
	double secs = ms_since(t0) / 1e3;

	int once = 0, never = 0, more = 0;
	for (int k = 0; k < NKEYS; k++) {
		once += sh->key_loads[k] == 1;
		never += sh->key_loads[k] == 0;
		more += sh->key_loads[k] > 1;
		if (sh->key_loads[k] != 1 && never + more <= 5)
			fprintf(stderr, "thousand: key %d loaded %u times\n", k, sh->key_loads[k]);
	}
	uint64_t owner = 0, coal = 0, l1 = 0, other = 0;
	for (int i = 0; i < NCALLERS; i++) {
		owner += sh->res[i].n_owner;
		coal += sh->res[i].n_coalesced;
		l1 += sh->res[i].n_l1;
		other += sh->res[i].n_other;
	}
	struct hc_stats st;
	CHECK_RC(hc_stats(pc, &st), 0);
	printf("thousand: %d x %d calls in %.2f s; keys loaded once %d, never %d, more %d; "
	       "results: %llu owner, %llu coalesced, %llu L1, %llu other; uncoalesced %llu\n",
	       NCALLERS, NKEYS, secs, once, never, more, (unsigned long long)owner,
	       (unsigned long long)coal, (unsigned long long)l1, (unsigned long long)other,
	       (unsigned long long)st.load.uncoalesced);
	CHECK(once == NKEYS);
	CHECK(owner == NKEYS);
	CHECK(other == 0);
	CHECK(owner + coal + l1 == (uint64_t)NCALLERS * NKEYS);
	CHECK(st.load.loads == NKEYS);
	CHECK(st.load.leaders == NKEYS);
	CHECK(st.load.coalesced == coal);
	CHECK(st.load.uncoalesced == 0);
	CHECK(st.load.load_errors == 0);
	CHECK(st.flights_active == 0);
	/* every value is in place */
	int bad = 0;
	for (unsigned k = 0; k < NKEYS; k++) {
		char key[16];
		int kl = snprintf(key, sizeof(key), "k:%u", k);
		uint8_t buf[256];
		size_t n;
		bad += hc_get(pc, key, (size_t)kl, buf, sizeof(buf), &n) != 0 ||
		       tu_check_value(buf, n, k) != 0;
	}
	CHECK(bad == 0);
	check_segment("thousand");
	phase_end();
}

/* ---------------------------------------------------------------------- */
/* An owner that dies or hangs, an owner whose loader fails                */

static int owner_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx, (void)key, (void)klen;
	__atomic_add_fetch(&sh->loader_runs, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&sh->started_ns, tu_now_ns(), __ATOMIC_SEQ_CST);
	__atomic_store_n(&sh->started, 1, __ATOMIC_SEQ_CST);
	if (sh->waiters_expected && wait_for(&sh->waiters_ready, sh->waiters_expected, 5000) != 0)
		child_error("owner: waiters never came", 0);
	tu_sleep_ms(sh->hang_ms);
	if (sh->fail_rc)
		return sh->fail_rc;
	uint8_t v[64];
	size_t n = tu_make_value(v, 40, ID_OWNER, 1);
	return hc_load_value(ld, v, n);
}

static int waiter_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx, (void)key, (void)klen;
	__atomic_add_fetch(&sh->other_runs, 1, __ATOMIC_SEQ_CST);
	uint8_t v[64];
	size_t n = tu_make_value(v, 40, ID_TAKEOVER, 1);
	return hc_load_value(ld, v, n);
}

static void call_one(struct hc_cache *c, int id, hc_loader_fn fn, uint32_t want_id)
{
	struct hc_load_opts o = {.ttl_ms = 60000, .lease_ms = sh->lease_ms};
	uint8_t buf[256];
	size_t n = 0;
	struct hc_meta m;
	memset(&m, 0xa5, sizeof(m));
	struct result *r = &sh->res[id];
	r->t_start = tu_now_ns();
	r->rc = hc_get_or_load(c, "flight:1", 8, fn, NULL, &o, buf, sizeof(buf), &n, &m);
	r->t_ret = tu_now_ns();
	r->ok = r->rc == 0 && tu_check_value(buf, n, want_id) == 0;
	r->source = m.source;
	r->coalesced = m.coalesced;
}

static void w_owner(struct hc_cache *c, int id)
{
	call_one(c, id, owner_loader, ID_OWNER);
}

static void w_waiter(struct hc_cache *c, int id)
{
	if (wait_for(&sh->started, 1, 10000) != 0) {
		child_error("waiter: the owner never started", 0);
		return;
	}
	__atomic_add_fetch(&sh->waiters_ready, 1, __ATOMIC_SEQ_CST);
	call_one(c, id, waiter_loader, ID_TAKEOVER);
}

#define KW 4 /* waiter threads per process (B and C) */

static void test_owner_killed(void)
{
	phase_begin("killed");
	sh->hang_ms = 10000;
	pid_t a = spawn(0, 1, w_owner);
	REQUIRE(wait_for(&sh->started, 1, 10000) == 0);
	pid_t b = spawn(1, KW, w_waiter);
	pid_t cc = spawn(1 + KW, KW, w_waiter);
	CHECK(wait_for(&sh->waiters_ready, 2 * KW, 10000) == 0);
	tu_sleep_ms(100); /* let them reach the flight and sleep on it */
	int early = 0;
	for (int i = 1; i <= 2 * KW; i++)
		early += __atomic_load_n(&sh->res[i].t_ret, __ATOMIC_SEQ_CST) != 0;
	CHECK(early == 0); /* nobody returned while the owner was loading */

	/*
	 * A is reaped only after the waiters are done: the waiters must see
	 * that the owner is dead while it is still a zombie, as when its
	 * parent is slow to reap it.
	 */
	uint64_t t_kill = tu_now_ns();
	REQUIRE(kill(a, SIGKILL) == 0);
	CHECK_EXIT(reap(b, 15000));
	CHECK_EXIT(reap(cc, 15000));
	int st;
	REQUIRE(waitpid(a, &st, 0) == a);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	uint64_t worst = 0, best = UINT64_MAX;
	int ok = 0, origin = 0, ncoal = 0;
	for (int i = 1; i <= 2 * KW; i++) {
		struct result *r = &sh->res[i];
		if (r->rc != 0)
			fprintf(stderr, "killed: waiter %d: %d (%s)\n", i, r->rc,
				hc_strerror(r->rc));
		ok += r->ok;
		/* the waiter that took over waited first: coalesced may say either */
		origin += r->source == HC_SRC_ORIGIN;
		ncoal += r->coalesced == 1;
		uint64_t lat = r->t_ret > t_kill ? r->t_ret - t_kill : 0;
		CHECK(r->t_ret > t_kill);
		if (lat > worst)
			worst = lat;
		if (lat < best)
			best = lat;
	}
	printf("owner killed: %d waiters returned %.1f..%.1f ms after SIGKILL "
	       "(bound 250 ms); takeover loads %d; %d from origin, %d marked coalesced\n",
	       2 * KW, best / 1e6, worst / 1e6, sh->other_runs, origin, ncoal);
	CHECK(ok == 2 * KW);
	CHECK(sh->other_runs == 1);
	CHECK(origin == 2 * KW);
	CHECK(worst < 250u * 1000000u);

	struct hc_stats s;
	CHECK_RC(hc_stats(pc, &s), 0);
	printf("owner killed: takeovers %llu, lease expiries %llu, leaders %llu, loads %llu\n",
	       (unsigned long long)s.load.takeovers, (unsigned long long)s.load.lease_expiries,
	       (unsigned long long)s.load.leaders, (unsigned long long)s.load.loads);
	CHECK(s.load.takeovers >= 1);
	CHECK(s.load.lease_expiries == 0); /* the lease (10 s) had not run out */
	uint8_t buf[256];
	size_t n;
	CHECK_RC(hc_get(pc, "flight:1", 8, buf, sizeof(buf), &n), 0);
	CHECK(tu_check_value(buf, n, ID_TAKEOVER) == 0);
	check_segment("owner killed");
	CHECK_RC(hc_stats(pc, &s), 0);
	CHECK(s.flights_active == 0);
	phase_end();
}

static void test_hung_owner(void)
{
	phase_begin("hung");
	sh->hang_ms = 2000;
	sh->lease_ms = 200;
	pid_t a = spawn(0, 1, w_owner);
	REQUIRE(wait_for(&sh->started, 1, 10000) == 0);
	pid_t b = spawn(1, 2, w_waiter);
	CHECK_EXIT(reap(b, 10000));
	uint64_t started = sh->started_ns;
	for (int i = 1; i <= 2; i++) {
		struct result *r = &sh->res[i];
		double since_start = ((double)r->t_ret - (double)started) / 1e6;
		double wait = (r->t_ret - r->t_start) / 1e6;
		printf("hung owner: waiter %d returned %.1f ms after the owner began "
		       "(waited %.1f ms; lease 200 ms), rc %d, source %d\n",
		       i, since_start, wait, r->rc, r->source);
		CHECK_RC(r->rc, 0);
		CHECK(r->ok);
		CHECK(since_start >= 180 && since_start <= 600);
	}
	CHECK(sh->other_runs == 1);
	struct hc_stats s;
	CHECK_RC(hc_stats(pc, &s), 0);
	printf("hung owner: lease expiries %llu, takeovers %llu\n",
	       (unsigned long long)s.load.lease_expiries, (unsigned long long)s.load.takeovers);
	CHECK(s.load.lease_expiries >= 1);
	/* the owner finishes its load later, and gets its own value */
	CHECK_EXIT(reap(a, 10000));
	CHECK_RC(sh->res[0].rc, 0);
	CHECK(sh->res[0].ok);
	printf("hung owner: the owner returned after %.1f ms, rc %d\n",
	       (sh->res[0].t_ret - sh->res[0].t_start) / 1e6, sh->res[0].rc);
	CHECK(sh->loader_runs == 1);
	check_segment("hung owner");
	phase_end();
}

static void test_loader_error(void)
{
	phase_begin("lderr");
	sh->hang_ms = 100;
	sh->fail_rc = -EIO;
	sh->waiters_expected = 2 * 2;
	pid_t a = spawn(0, 1, w_owner);
	pid_t b = spawn(1, 2, w_waiter);
	pid_t cc = spawn(3, 2, w_waiter);
	CHECK_EXIT(reap(a, 15000));
	CHECK_EXIT(reap(b, 15000));
	CHECK_EXIT(reap(cc, 15000));
	CHECK_RC(sh->res[0].rc, -EIO);
	uint64_t worst = 0;
	for (int i = 1; i <= 4; i++) {
		struct result *r = &sh->res[i];
		CHECK_RC(r->rc, -EIO);
		uint64_t lat = r->t_ret > sh->res[0].t_ret ? r->t_ret - sh->res[0].t_ret : 0;
		if (lat > worst)
			worst = lat;
		CHECK(r->t_ret - r->t_start < 1000u * 1000000u);
	}
	printf("loader error: owner got %d, waiters got %d/%d/%d/%d, last %.1f ms after the "
	       "owner; loads: owner %d, waiters %d\n",
	       sh->res[0].rc, sh->res[1].rc, sh->res[2].rc, sh->res[3].rc, sh->res[4].rc,
	       worst / 1e6, sh->loader_runs, sh->other_runs);
	CHECK(sh->loader_runs == 1);
	CHECK(sh->other_runs == 0);
	struct hc_stats s;
	CHECK_RC(hc_stats(pc, &s), 0);
	CHECK(s.load.loads == 1 && s.load.load_errors == 1);
	CHECK(s.load.coalesced == 4);
	uint8_t buf[64];
	size_t n;
	CHECK_RC(hc_get(pc, "flight:1", 8, buf, sizeof(buf), &n), HC_E_NOTFOUND);
	check_segment("loader error");
	phase_end();
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(sh != MAP_FAILED);
	uint64_t t0 = tu_now_ns();
	test_stampede();
	test_thousand();
	test_owner_killed();
	test_hung_owner();
	test_loader_error();
	printf("test_stampede: %.1f s\n", ms_since(t0) / 1e3);
	return tu_done("test_stampede");
}
