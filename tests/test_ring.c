/*
 * test_ring.c - the worker -> agent request ring and the L2 protocol,
 * without Redis: this process plays the agent (hc_agent_take and
 * hc_agent_answer from a thread), forked workers play the host.
 *
 *   - every request queued by 4 worker processes arrives exactly once, or
 *     is counted as dropped (ring full), never lost silently;
 *   - a producer that claims a slot and dies before publishing it (made
 *     here by claiming a position by hand) holds the agent up for about
 *     200 ms, not forever, and the validator is clean after;
 *   - a flight owner asks L2 and gets the agent's answer: a hit is served
 *     from L1 with meta.source HC_SRC_L2 and the loader never runs; a miss
 *     goes to the origin and the value is queued for L2;
 *   - without a live agent (heartbeat stale) workers skip L2 at once.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "internal.h"
#include "testutil.h"

#define WORKERS 4
#define PER_WORKER 20000

struct shared {
	_Atomic uint64_t queued; /* hc_set_ex calls whose write-through was queued */
	_Atomic uint64_t loads;	 /* origin loads */
};
static struct shared *sh;

/* ---- the fake agent: takes requests, answers GETs, counts the rest ---- */

struct fake_agent {
	struct hc_cache *c;
	atomic_bool stop;
	atomic_bool beat; /* keep the heartbeat going */
	uint64_t got[WORKERS];
	uint64_t dups; /* a request taken twice */
	uint8_t seen[WORKERS][PER_WORKER];
	uint64_t sets, gets, hits;
	uint64_t max_gap_ms; /* longest wait for the next request while requests were due */
};

static void *agent_main(void *arg)
{
	struct fake_agent *a = arg;
	struct hc_request req[64];
	while (!atomic_load(&a->stop)) {
		if (atomic_load(&a->beat))
			hc_agent_heartbeat(a->c);
		int n = hc_agent_take(a->c, req, 64, 20);
		for (int i = 0; i < n; i++) {
			struct hc_request *r = &req[i];
			if (r->op == HC_REQ_SET_THROUGH || r->op == HC_REQ_SET) {
				unsigned w, k;
				if (sscanf(r->key, "w%u:%u", &w, &k) == 2 && w < WORKERS &&
				    k < PER_WORKER) {
					a->got[w]++;
					a->dups += a->seen[w][k]++ != 0;
				}
				__atomic_fetch_add(&a->sets, 1, __ATOMIC_RELAXED); /* polled */
			} else if (r->op == HC_REQ_GET) {
				a->gets++;
				/* "l2:" keys are in L2, the rest are not */
				bool hit = strncmp(r->key, "l2:", 3) == 0;
				char v[64];
				int vl = snprintf(v, sizeof(v), "from-l2:%s", r->key);
				CHECK_RC(hc_agent_answer(a->c, r, hit ? HC_L2_HIT : HC_L2_MISS, v,
							 (size_t)vl, 60000),
					 0);
				a->hits += hit;
			}
		}
	}
	return NULL;
}

static int loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx;
	atomic_fetch_add(&sh->loads, 1);
	char v[300];
	int n = snprintf(v, sizeof(v), "from-origin:%.*s", (int)klen, (const char *)key);
	return hc_load_value(ld, v, (size_t)n);
}

static void producer(const char *name, unsigned w)
{
	struct hc_cache *c;
	if (hc_open(name, NULL, &c) != 0)
		_exit(3);
	for (unsigned i = 0; i < PER_WORKER; i++) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "w%u:%u", w, i);
		struct hc_set_opts o = {.ttl_ms = 60000, .flags = HC_SET_WRITE_THROUGH};
		int rc = hc_set_ex(c, k, (size_t)kl, "v", 1, &o);
		if (rc == 0)
			atomic_fetch_add(&sh->queued, 1);
		else if (rc != HC_E_AGAIN) /* in L1, the L2 write not queued: counted as a drop */
			_exit(4);
	}
	hc_close(c);
	_exit(0);
}

static void test_exactly_once(void)
{
	const char *name = tu_name("ring");
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL, .size = 32u << 20, .max_threads = 16};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	REQUIRE(hc_agent_begin(c) == 0);
	static struct fake_agent a;
	a.c = c;
	atomic_store(&a.beat, true);
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, agent_main, &a) == 0);

	pid_t pids[WORKERS];
	for (unsigned w = 0; w < WORKERS; w++) {
		pids[w] = fork();
		REQUIRE(pids[w] >= 0);
		if (pids[w] == 0)
			producer(name, w);
	}
	for (unsigned w = 0; w < WORKERS; w++) {
		int st;
		REQUIRE(waitpid(pids[w], &st, 0) == pids[w]);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* let the agent drain the ring */
	struct hc_stats s;
	for (int i = 0; i < 200; i++) {
		CHECK_RC(hc_stats(c, &s), 0);
		if (s.agent.ring_depth == 0)
			break;
		tu_sleep_ms(10);
	}
	atomic_store(&a.stop, true);
	pthread_join(th, NULL);
	CHECK_RC(hc_stats(c, &s), 0);
	uint64_t got = 0;
	for (unsigned w = 0; w < WORKERS; w++)
		got += a.got[w];
	printf("exactly once: %llu requests taken, %llu dropped (ring full), %llu skipped\n",
	       (unsigned long long)got, (unsigned long long)s.agent.ring_drops,
	       (unsigned long long)s.agent.ring_skipped);
	CHECK(got + s.agent.ring_drops == (uint64_t)WORKERS * PER_WORKER);
	CHECK(got ==
	      atomic_load(&sh->queued)); /* HC_E_AGAIN told each caller whose write dropped */
	CHECK(a.dups == 0);
	/*
	 * a producer descheduled over 200 ms between its claim and its write
	 * (a loaded 2-CPU machine) is skipped; it then counts its own drop
	 */
	CHECK(s.agent.ring_skipped <= s.agent.ring_drops);
	CHECK(s.agent.ring_depth == 0);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0);
	hc_agent_end(c);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* A producer that claimed a position and never wrote it: the agent skips it after ~200 ms. */
static void test_dead_producer(void)
{
	const char *name = tu_name("ring-dead");
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL, .size = 16u << 20, .max_threads = 8};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	REQUIRE(hc_agent_begin(c) == 0);
	/* claim position 0 as a producer would, then "die" */
	REQUIRE(uatomic_cmpxchg(&c->agent->tail, 0, 1) == 0);
	/* a live producer queues behind it */
	struct hc_set_opts so = {.ttl_ms = 60000, .flags = HC_SET_WRITE_THROUGH};
	CHECK_RC(hc_set_ex(c, "after", 5, "x", 1, &so), 0);

	struct hc_request req[8];
	uint64_t t0 = tu_now_ns();
	int n = 0;
	while (n <= 0 && tu_now_ns() - t0 < 2000000000ull) {
		hc_agent_heartbeat(c);
		n = hc_agent_take(c, req, 8, 50);
	}
	uint64_t ms = (tu_now_ns() - t0) / 1000000;
	printf("dead producer: the next request came after %llu ms\n", (unsigned long long)ms);
	CHECK(n == 1 && req[0].op == HC_REQ_SET_THROUGH && strcmp(req[0].key, "after") == 0);
	CHECK(ms >= 150 && ms < 1000);
	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.agent.ring_skipped == 1 && s.agent.ring_depth == 0);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0);
	hc_agent_end(c);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* The L2 step of hc_get_or_load and hc_get_many against the fake agent. */
static void test_l2_protocol(void)
{
	const char *name = tu_name("ring-l2");
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL, .size = 16u << 20, .max_threads = 8};
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	REQUIRE(hc_agent_begin(c) == 0);
	struct fake_agent a = {.c = c};
	atomic_store(&a.beat, true);
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, agent_main, &a) == 0);

	char buf[256];
	size_t n;
	struct hc_meta m;
	struct hc_load_opts lo = {.ttl_ms = 60000};
	CHECK_RC(hc_get_or_load(c, "l2:1", 4, loader, NULL, &lo, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_L2 && n == 12 && memcmp(buf, "from-l2:l2:1", 12) == 0);
	CHECK(atomic_load(&sh->loads) == 0);
	CHECK_RC(hc_get_or_load(c, "l2:1", 4, loader, NULL, &lo, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_L1);

	/* a miss in L2: the origin, then the value is queued for L2 */
	uint64_t sets = 0;
	CHECK_RC(hc_get_or_load(c, "db:1", 4, loader, NULL, &lo, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_ORIGIN && atomic_load(&sh->loads) == 1);
	for (int i = 0; i < 100 && !(sets = __atomic_load_n(&a.sets, __ATOMIC_RELAXED)); i++)
		tu_sleep_ms(5);
	CHECK(sets == 1);

	/* HC_LOAD_NO_L2: straight to the origin */
	lo.flags = HC_LOAD_NO_L2;
	CHECK_RC(hc_get_or_load(c, "l2:2", 4, loader, NULL, &lo, buf, sizeof(buf), &n, &m), 0);
	CHECK(m.source == HC_SRC_ORIGIN && atomic_load(&sh->loads) == 2);
	lo.flags = 0;

	/* agent stopped: its heartbeat goes stale and workers skip L2 at once */
	atomic_store(&a.beat, false);
	tu_sleep_ms(1100);
	uint64_t t0 = tu_now_ns();
	CHECK_RC(hc_get_or_load(c, "l2:3", 4, loader, NULL, &lo, buf, sizeof(buf), &n, &m), 0);
	uint64_t us = (tu_now_ns() - t0) / 1000;
	CHECK(m.source == HC_SRC_ORIGIN && us < 200000); /* not the 250 ms L2 wait */
	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(!s.agent.alive && s.agent.l2_skipped >= 1);
	printf("l2: %llu gets, %llu hits; without agent a miss took %llu us\n",
	       (unsigned long long)a.gets, (unsigned long long)a.hits, (unsigned long long)us);
	atomic_store(&a.stop, true);
	pthread_join(th, NULL);
	hc_agent_end(c);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

int main(void)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(sh != MAP_FAILED);
	test_exactly_once();
	test_dead_producer();
	test_l2_protocol();
	return tu_done("test_ring");
}
