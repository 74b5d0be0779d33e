/*
 * agentcases.c - the agent cases of hostcache-bench: Redis behind the
 * shared tier (hostcache-agent, the host's one Redis client) against a
 * worker's own hiredis connection to the same Redis, measured in one run.
 *
 *   agent_l2_hit       what an L2 hit served through the agent costs a
 *                      worker.  AL_KEYS keys (20-byte keys, 100-byte values)
 *                      are SET in Redis directly (hiredis, PX 1 h); one
 *                      process (the benchmark's own: the worker) reads them:
 *                        hostcache     hc_get_or_load of a key that is in
 *                                      Redis but not in L1 (hc_del'd just
 *                                      before, outside the clock): the
 *                                      flight owner queues a GET, the agent
 *                                      pipelines GET+PTTL, stores the value
 *                                      in L1 and wakes it.  Every timed op
 *                                      must return meta.source HC_SRC_L2;
 *                                      others are counted (not_l2=) and
 *                                      left out of the latency figures.
 *                        hiredis       redisCommand(ctx, "GET %b") on the
 *                                      worker's own connection to the same
 *                                      unix socket: the baseline.
 *                        hostcache_l1  hc_get hits on the same keys, for
 *                                      scale (the design's claim: an L1 hit
 *                                      is >= 200x faster than a Redis GET).
 *                      The two Redis paths are timed one call at a time
 *                      (p50_us/p99_us over every call); L1 hits are timed
 *                      like the get cases, BATCH calls per sample
 *                      (timing=batch_mean).  7 rounds (--quick 3) of 3,000
 *                      Redis reads per path (--quick 1,000) and 0.1 s of L1
 *                      hits (--quick 0.03 s) run the three back to back,
 *                      the order rotating, the same random
 *                      keys for both Redis paths of a round; ratio= is the
 *                      median over the rounds of the round's p50 over the
 *                      hiredis GET p50 of the same round (> 1: slower than
 *                      the GET).  loader_calls must be 0: every key is in
 *                      Redis, so no lookup may fall through to the loader.
 *
 *   agent_round_trips  RT_PROCS worker processes each miss RT_KEYS distinct
 *                      keys (in neither L1 nor Redis), all starting at once
 *                      (a futex barrier in a MAP_SHARED page), one
 *                      hc_get_or_load per key; the loader returns at once
 *                      with a 100-byte value.  Each miss is an L2 lookup
 *                      (GET+PTTL) and, after the load, an L2 fill (SET PX):
 *                      without the agent that is one round trip per GET and
 *                      one per SET, 2,000 per 1,000 misses.  The agent puts
 *                      whatever the workers queued at the same moment into
 *                      one pipeline, so:
 *                        round_trips   the agent's HC_AG_ROUND_TRIPS delta
 *                                      (commands: HC_AG_COMMANDS), and
 *                                      rt_per_1000_misses against 2,000
 *                                      (ratio=)
 *                        redis_get/_pttl/_set   what Redis processed, from
 *                                      INFO commandstats deltas
 *                        wall_ms       first call to last return (median
 *                                      round), misses_per_s from it;
 *                                      drain_ms: from then until Redis has
 *                                      every SET (the fills are written
 *                                      behind the workers' backs)
 *                        loader_calls  must equal the misses, each key once
 *                      The baseline (system=hiredis): the same workers on
 *                      their own hiredis connections, GET then (nil) load
 *                      and SET PX per miss, 2 round trips per miss.
 *                      Fresh keys every round and system; 5 rounds per
 *                      system (--quick 2), alternating which goes first.
 *
 * Both cases start a private redis-server (unix socket in a mkdtemp
 * directory, no persistence) and hostcache-agent (`-n SEG --redis
 * unix:SOCK --log-level warn`, found next to this program as
 * ../agent/hostcache-agent via /proc/self/exe) on a fresh segment, wait
 * until hc_stats shows the agent alive with Redis up and its subscription
 * live (a probe published on cache_invalidation has been received: the
 * agent flushes L1 when it subscribes, so nothing is filled before), and
 * stop both and remove the directory when the case ends, on die(), and on
 * SIGINT/SIGTERM/SIGHUP (bench.c's cleanup calls ours); the children also
 * get PR_SET_PDEATHSIG.  Without redis-server or the agent binary the cases
 * are skipped with a line on stderr.  Each case also reports the agent's
 * and the library's L2 counters over the case (l2_timeouts, l2_skipped,
 * ring_drops, ring_skipped, l2_errors), which must all be 0.
 */
#include <dirent.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "rng.h"
#include "spawn.h"

#define AG_CHANNEL "cache_invalidation"
#define AG_SEG_SIZE (64 * MIB)
#define AG_START_MS 5000 /* redis-server and the agent must be ready by then */
#define AG_STOP_MS 3000	 /* SIGTERM, then SIGKILL */

#define AL_KEYS 1000		      /* agent_l2_hit: keys in Redis */
#define AL_BASE UINT64_C(0x300000000) /* their ids */
#define AL_PX_MS 3600000u	      /* their TTL in Redis */
#define AL_MAX_ROUNDS 9
#define AL_WARMUP 200	   /* untimed calls per Redis path before the rounds */
#define LOAD_TTL_MS 60000u /* TTL of a loaded value (and its SET PX) */

#define RT_PROCS 8		       /* agent_round_trips: workers */
#define RT_KEYS 1000		       /* missing keys per worker per round */
#define RT_MISSES (RT_PROCS * RT_KEYS) /* per round and system */
#define RT_BASE UINT64_C(0x400000000)  /* key ids */
#define RT_MAX_ROUNDS 8

/* ---------------------------------------------------------------------- */
/* redis-server and hostcache-agent: starting, stopping, cleaning up       */

/* What a case started; env_cleanup() must be safe in a signal handler. */
static struct {
	char dir[64];
	char sock[128];
	char url[160];
	char redis_log[128];
	char agent_log[128];
	char seg[96];
	char redis_path[PATH_MAX];
	char agent_path[PATH_MAX];
	volatile pid_t redis_pid, agent_pid;
	volatile pid_t workers[RT_PROCS];
	struct hc_cache *hc; /* the worker's (this process's) handle */
	redisContext *ctl;   /* fills, INFO, PUBLISH */
	bool hooked;
} env;

static void kill_reap(volatile pid_t *pid)
{
	pid_t p = *pid;
	if (p > 0) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
	}
	*pid = 0;
}

/* Registered with register_cleanup(): kill, waitpid, unlink, rmdir only. */
static void env_cleanup(void)
{
	for (int i = 0; i < RT_PROCS; i++)
		kill_reap(&env.workers[i]);
	kill_reap(&env.agent_pid);
	kill_reap(&env.redis_pid);
	if (env.dir[0]) {
		unlink(env.sock);
		unlink(env.redis_log);
		unlink(env.agent_log);
		char p[96];
		snprintf(p, sizeof(p), "%s/dump.rdb", env.dir);
		unlink(p);
		rmdir(env.dir);
		env.dir[0] = '\0';
	}
}

/* redis-server in PATH and the agent next to us?  Says so once if not. */
static bool have_programs(void)
{
	static int found = -1;
	if (found >= 0)
		return found;
	found = 0;
	if (!hc_find_in_path("redis-server", env.redis_path, sizeof(env.redis_path))) {
		fprintf(stderr, "# skipped: redis-server not found\n");
		return false;
	}
	char self[PATH_MAX - 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash = n > 0 ? (self[n] = '\0', strrchr(self, '/')) : NULL;
	if (!slash) {
		fprintf(stderr, "# skipped: cannot read /proc/self/exe to find hostcache-agent\n");
		return false;
	}
	*slash = '\0';
	snprintf(env.agent_path, sizeof(env.agent_path), "%s/../agent/hostcache-agent", self);
	if (access(env.agent_path, X_OK) != 0) {
		fprintf(stderr, "# skipped: hostcache-agent not found (%s)\n", env.agent_path);
		return false;
	}
	found = 1;
	return true;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double ms_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e6;
}

/* Fork and exec @argv with stdout and stderr to @log; it dies with us. */
static pid_t spawn(char *const argv[], const char *log)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0)
		hc_exec_child(argv, log, main_pid);
	return pid;
}

/* Wait up to @ms for @pid to exit: its status, or -1 if it still runs. */
static int wait_exit(pid_t pid, unsigned ms)
{
	uint64_t t0 = now_ns();
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0)
			return 0; /* not ours any more */
		if (ms_since(t0) > ms)
			return -1;
		sleep_ms(2);
	}
}

static redisContext *redis_connect(void)
{
	struct timeval tv = {.tv_sec = 2};
	redisContext *ctx = redisConnectUnixWithTimeout(env.sock, tv);
	if (!ctx || ctx->err) {
		if (ctx)
			redisFree(ctx);
		return NULL;
	}
	struct timeval io = {.tv_sec = 5};
	redisSetTimeout(ctx, io);
	return ctx;
}

static void redis_start(void)
{
	char *argv[] = {env.redis_path, "--port", "0", "--unixsocket", env.sock, "--unixsocketperm",
			"700",		"--save", "",  "--appendonly", "no",	 "--dir",
			env.dir,	NULL};
	env.redis_pid = spawn(argv, env.redis_log);
	uint64_t t0 = now_ns();
	while (ms_since(t0) < AG_START_MS) {
		int st;
		if (waitpid(env.redis_pid, &st, WNOHANG) == env.redis_pid) {
			env.redis_pid = 0;
			print_tail(env.redis_log, "redis-server");
			die("redis-server exited at start (status 0x%x)", st);
		}
		if (access(env.sock, F_OK) == 0 && (env.ctl = redis_connect())) {
			redisReply *r = redisCommand(env.ctl, "PING");
			bool ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
			if (r)
				freeReplyObject(r);
			if (ok)
				return;
			redisFree(env.ctl);
			env.ctl = NULL;
		}
		sleep_ms(10);
	}
	print_tail(env.redis_log, "redis-server");
	die("redis-server did not answer PING within %d ms", AG_START_MS);
}

static struct hc_stats g_st;

static const struct hc_agent_stats *agent_stats(void)
{
	int rc = hc_stats(env.hc, &g_st);
	if (rc)
		die("hc_stats: %s", hc_strerror(rc));
	return &g_st.agent;
}

static void agent_failed(const char *what)
{
	const struct hc_agent_stats *a = agent_stats();
	int st;
	if (env.agent_pid > 0 && waitpid(env.agent_pid, &st, WNOHANG) == env.agent_pid) {
		env.agent_pid = 0;
		fprintf(stderr, "hostcache-bench: hostcache-agent ended (status 0x%x)\n", st);
	}
	print_tail(env.agent_log, "agent");
	die("hostcache-agent %s (alive %u, redis_state %u, pid %d, heartbeat age %lld ms)", what,
	    a->alive, a->redis_state, (int)a->pid, (long long)a->heartbeat_age_ms);
}

/* Start the agent; wait until it serves the segment and its subscription is live. */
static double agent_start(void)
{
	char id[64];
	snprintf(id, sizeof(id), "hostcache-bench-%d", (int)main_pid);
	char *argv[] = {env.agent_path, "-n", env.seg,	     "--redis", env.url,
			"--id",		id,   "--log-level", "warn",	NULL};
	uint64_t t0 = now_ns();
	env.agent_pid = spawn(argv, env.agent_log);
	for (;;) {
		const struct hc_agent_stats *a = agent_stats();
		if (a->alive && a->redis_state == HC_REDIS_UP && a->pid == env.agent_pid)
			break;
		int st;
		if (waitpid(env.agent_pid, &st, WNOHANG) == env.agent_pid) {
			env.agent_pid = 0;
			print_tail(env.agent_log, "agent");
			die("hostcache-agent exited at start (status 0x%x)", st);
		}
		if (ms_since(t0) > AG_START_MS)
			agent_failed("not serving the segment in time");
		sleep_ms(2);
	}
	/* The agent flushes L1 once subscribed: a probe received says that is done. */
	uint64_t r0 = agent_stats()->ctr[HC_AG_INV_RECEIVED];
	for (int n = 0; ms_since(t0) < 2 * AG_START_MS; n++) {
		redisReply *r = redisCommand(env.ctl, "PUBLISH %s probe:%s:%d", AG_CHANNEL, id, n);
		if (!r)
			die("PUBLISH: %s", env.ctl->errstr);
		freeReplyObject(r);
		uint64_t t1 = now_ns();
		while (ms_since(t1) < 100) {
			if (agent_stats()->ctr[HC_AG_INV_RECEIVED] > r0)
				return ms_since(t0);
			sleep_ms(1);
		}
	}
	agent_failed("never received an invalidation probe");
	return -1;
}

/* Stop the agent (SIGTERM; it must exit 0) and check it did; then Redis. */
static void agent_stop(void)
{
	if (env.agent_pid <= 0)
		return;
	kill(env.agent_pid, SIGTERM);
	int st = wait_exit(env.agent_pid, AG_STOP_MS);
	if (st == -1) {
		fprintf(stderr,
			"hostcache-bench: warning: hostcache-agent did not stop within "
			"%d ms of SIGTERM: killed\n",
			AG_STOP_MS);
		kill_reap(&env.agent_pid);
		return;
	}
	env.agent_pid = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "hostcache-bench: warning: hostcache-agent: status 0x%x at stop\n",
			st);
		print_tail(env.agent_log, "agent");
	}
}

static void remove_dir(void)
{
	DIR *d = opendir(env.dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[512];
			snprintf(p, sizeof(p), "%s/%s", env.dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	if (rmdir(env.dir) != 0)
		fprintf(stderr, "hostcache-bench: cannot remove %s: %s\n", env.dir,
			strerror(errno));
	env.dir[0] = '\0';
}

/* A private Redis, a fresh segment "bench-<pid>-@label" and its agent. */
static void env_start(const char *label)
{
	if (!env.hooked) {
		register_cleanup(env_cleanup);
		env.hooked = true;
	}
	signal(SIGPIPE, SIG_IGN); /* a write to a Redis that went away: an error, not death */
	snprintf(env.dir, sizeof(env.dir), "/tmp/hcbench-%d-XXXXXX", (int)main_pid);
	if (!mkdtemp(env.dir)) {
		env.dir[0] = '\0';
		die("mkdtemp: %s", strerror(errno));
	}
	snprintf(env.sock, sizeof(env.sock), "%s/redis.sock", env.dir);
	snprintf(env.url, sizeof(env.url), "unix:%s", env.sock);
	snprintf(env.redis_log, sizeof(env.redis_log), "%s/redis.log", env.dir);
	snprintf(env.agent_log, sizeof(env.agent_log), "%s/agent.log", env.dir);

	snprintf(env.seg, sizeof(env.seg), "bench-%d-%s", (int)main_pid, label);
	struct hc_options o = {
		.size = AG_SEG_SIZE, .flags = HC_CREATE | HC_EXCL, .max_value = 4096};
	int rc = hc_open(env.seg, &o, &env.hc);
	if (rc)
		die("hc_open %s: %s", env.seg, hc_strerror(rc));
	register_name(env.seg, false);

	uint64_t t0 = now_ns();
	redis_start();
	double redis_ms = ms_since(t0);
	double agent_ms = agent_start();
	fprintf(stderr,
		"# %s: redis-server (pid %d) up in %.1f ms, hostcache-agent (pid %d) serving "
		"and subscribed in %.1f ms\n",
		label, (int)env.redis_pid, redis_ms, (int)env.agent_pid, agent_ms);
}

static void env_stop(void)
{
	agent_stop();
	if (env.ctl) {
		redisFree(env.ctl);
		env.ctl = NULL;
	}
	if (env.redis_pid > 0) {
		kill(env.redis_pid, SIGTERM);
		if (wait_exit(env.redis_pid, AG_STOP_MS) == -1)
			kill_reap(&env.redis_pid);
		env.redis_pid = 0;
	}
	remove_dir();
	hc_close(env.hc);
	env.hc = NULL;
	release_name(env.seg, false);
}

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */

/* The id make_key() formatted into @key. */
static uint64_t key_id(const void *key, size_t klen)
{
	const char *k = key;
	uint64_t id = 0;
	if (klen != KEY_LEN)
		die("loader got a %zu-byte key", klen);
	for (int i = 4; i < KEY_LEN; i++)
		id = id << 4 | (uint64_t)(k[i] <= '9' ? k[i] - '0' : k[i] - 'a' + 10);
	return id;
}

struct cmdstats {
	long long get, pttl, set;
};

/* cmdstat_<cmd>:calls=N from INFO commandstats; 0 when absent. */
static long long cmdstat(const char *info, const char *cmd)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "cmdstat_%s:calls=", cmd);
	const char *p = strstr(info, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : 0;
}

static void redis_cmdstats(struct cmdstats *cs)
{
	redisReply *r = redisCommand(env.ctl, "INFO commandstats");
	if (!r || r->type != REDIS_REPLY_STRING)
		die("INFO commandstats: %s", r ? "unexpected reply" : env.ctl->errstr);
	cs->get = cmdstat(r->str, "get");
	cs->pttl = cmdstat(r->str, "pttl");
	cs->set = cmdstat(r->str, "set");
	freeReplyObject(r);
}

/* The library's and the agent's L2 counters over a case. */
struct l2_counters {
	uint64_t round_trips, commands, l2_errors, write_fails;
	uint64_t l2_timeouts, l2_skipped, ring_drops, ring_skipped;
	uint64_t l2_hits, l2_misses, leaders, coalesced, loads;
};

static void l2_snapshot(struct l2_counters *o)
{
	const struct hc_agent_stats *a = agent_stats();
	*o = (struct l2_counters){.round_trips = a->ctr[HC_AG_ROUND_TRIPS],
				  .commands = a->ctr[HC_AG_COMMANDS],
				  .l2_errors = a->ctr[HC_AG_L2_ERRORS],
				  .write_fails = a->ctr[HC_AG_WRITE_FAILS],
				  .l2_timeouts = a->l2_timeouts,
				  .l2_skipped = a->l2_skipped,
				  .ring_drops = a->ring_drops,
				  .ring_skipped = a->ring_skipped,
				  .l2_hits = g_st.layer[HC_LAYER_L2].hits,
				  .l2_misses = g_st.layer[HC_LAYER_L2].misses,
				  .leaders = g_st.load.leaders,
				  .coalesced = g_st.load.coalesced,
				  .loads = g_st.load.loads};
}

static void l2_delta(const struct l2_counters *a, const struct l2_counters *b,
		     struct l2_counters *d)
{
	const uint64_t *x = (const uint64_t *)a, *y = (const uint64_t *)b;
	uint64_t *z = (uint64_t *)d;
	for (size_t i = 0; i < sizeof(*d) / sizeof(uint64_t); i++)
		z[i] = y[i] - x[i];
}

static void l2_format(const struct l2_counters *d, char *buf, size_t cap)
{
	snprintf(buf, cap,
		 " l2_timeouts=%" PRIu64 " l2_skipped=%" PRIu64 " ring_drops=%" PRIu64
		 " ring_skipped=%" PRIu64 " l2_errors=%" PRIu64 " write_fails=%" PRIu64,
		 d->l2_timeouts, d->l2_skipped, d->ring_drops, d->ring_skipped, d->l2_errors,
		 d->write_fails);
}

static bool l2_clean(const struct l2_counters *d)
{
	return !d->l2_timeouts && !d->l2_skipped && !d->ring_drops && !d->ring_skipped &&
	       !d->l2_errors && !d->write_fails;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------------------------------------------------------------- */
/* Case agent_l2_hit                                                       */

enum al_sys { AL_L2, AL_GET, AL_L1, AL_N };
static const char *const al_sys_name[AL_N] = {"hostcache", "hiredis", "hostcache_l1"};
static const char *const al_api[AL_N] = {"hc_get_or_load", "GET", "hc_get"};

struct al_samples {
	float *v; /* ns per op (AL_L1: per-batch mean) */
	uint64_t n, cap;
	uint64_t ops, verified;
	double max_ns;
	double round_p50[AL_MAX_ROUNDS];
};

static uint64_t al_loader_calls;
static uint64_t al_not_l2[HC_SRC_NEGATIVE + 1];
static double al_not_l2_max_ns;

static int al_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx;
	uint8_t val[VAL_LEN];
	al_loader_calls++;
	make_value(key_id(key, klen), val);
	return hc_load_value(ld, val, VAL_LEN);
}

static void al_push(struct al_samples *s, double ns)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16384;
		float *nv = realloc(s->v, s->cap * sizeof(*nv));
		if (!nv)
			die("out of memory for agent_l2_hit samples");
		s->v = nv;
	}
	s->v[s->n++] = (float)ns;
	s->max_ns = ns > s->max_ns ? ns : s->max_ns;
}

/* The median of samples [@from, s->n). */
static double al_tail_p50(const struct al_samples *s, uint64_t from)
{
	uint64_t n = s->n - from;
	if (!n)
		return NAN;
	float *tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		die("out of memory");
	memcpy(tmp, s->v + from, n * sizeof(*tmp));
	double p50, p99;
	percentiles(tmp, n, &p50, &p99);
	free(tmp);
	return p50;
}

/* @nops reads through the agent (AL_L2) or straight from Redis (AL_GET). */
static void al_redis_phase(enum al_sys sys, redisContext *own, uint64_t nops, uint64_t seed,
			   struct al_samples *s)
{
	static const struct hc_load_opts opts = {.ttl_ms = LOAD_TTL_MS};
	char key[KEY_LEN];
	uint8_t buf[VAL_CAP];
	uint64_t rng = seed;
	for (uint64_t i = 0; i < nops; i++) {
		uint64_t id = AL_BASE + rng_below(&rng, AL_KEYS);
		make_key(id, key);
		size_t vlen = 0;
		if (sys == AL_L2) {
			struct hc_meta m;
			int rc = hc_del(env.hc, key, KEY_LEN); /* L1 only: Redis keeps it */
			if (rc && rc != HC_E_NOTFOUND)
				die("agent_l2_hit: hc_del: %s", hc_strerror(rc));
			uint64_t t0 = now_ns();
			rc = hc_get_or_load(env.hc, key, KEY_LEN, al_loader, NULL, &opts, buf,
					    VAL_CAP, &vlen, &m);
			double ns = (double)(now_ns() - t0);
			if (rc)
				die("agent_l2_hit: hc_get_or_load of key %" PRIu64 ": %s", id,
				    hc_strerror(rc));
			if (!value_ok(id, buf, vlen))
				die("agent_l2_hit: key %" PRIu64 " came back wrong from L2", id);
			s->verified++;
			if (m.source != HC_SRC_L2) {
				al_not_l2[m.source <= HC_SRC_NEGATIVE ? m.source : HC_SRC_ORIGIN]++;
				al_not_l2_max_ns = ns > al_not_l2_max_ns ? ns : al_not_l2_max_ns;
				continue;
			}
			al_push(s, ns);
		} else {
			uint64_t t0 = now_ns();
			redisReply *r = redisCommand(own, "GET %b", key, (size_t)KEY_LEN);
			double ns = (double)(now_ns() - t0);
			if (!r)
				die("agent_l2_hit: GET: %s", own->errstr);
			if (r->type != REDIS_REPLY_STRING ||
			    !value_ok(id, (const uint8_t *)r->str, r->len))
				die("agent_l2_hit: GET of key %" PRIu64
				    ": reply type %d, %zu bytes",
				    id, r->type, r->type == REDIS_REPLY_STRING ? r->len : 0);
			freeReplyObject(r);
			s->verified++;
			al_push(s, ns);
		}
		s->ops++;
	}
}

/* L1 hits on the same keys for @seconds, BATCH gets per sample. */
static void al_l1_phase(double seconds, uint64_t seed, struct al_samples *s)
{
	char keys[BATCH][KEY_LEN];
	uint8_t bufs[VERIFY_PER_BATCH][VAL_CAP];
	size_t vl[VERIFY_PER_BATCH];
	uint64_t ids[BATCH], rng = seed;
	int rcs[BATCH];
	/* the L2 phases leave most keys in L1; put the others there */
	struct hc_set_opts so = {.ttl_ms = AL_PX_MS};
	for (uint64_t id = AL_BASE; id < AL_BASE + AL_KEYS; id++) {
		size_t vlen;
		make_key(id, keys[0]);
		int rc = hc_get(env.hc, keys[0], KEY_LEN, bufs[0], VAL_CAP, &vlen);
		if (rc == HC_E_NOTFOUND) {
			uint8_t val[VAL_LEN];
			make_value(id, val);
			rc = hc_set_ex(env.hc, keys[0], KEY_LEN, val, VAL_LEN, &so);
		}
		if (rc)
			die("agent_l2_hit: L1 fill: %s", hc_strerror(rc));
	}
	uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
	do {
		for (int j = 0; j < BATCH; j++) {
			ids[j] = AL_BASE + rng_below(&rng, AL_KEYS);
			make_key(ids[j], keys[j]);
		}
		uint64_t t0 = now_ns();
		for (int j = 0; j < BATCH; j++)
			rcs[j] = hc_get(env.hc, keys[j], KEY_LEN, bufs[j % VERIFY_PER_BATCH],
					VAL_CAP, &vl[j % VERIFY_PER_BATCH]);
		uint64_t ns = now_ns() - t0;
		for (int j = 0; j < BATCH; j++)
			if (rcs[j])
				die("agent_l2_hit: hc_get of key %" PRIu64 ": %s", ids[j],
				    hc_strerror(rcs[j]));
		for (int j = BATCH - VERIFY_PER_BATCH; j < BATCH; j++) {
			int k = j % VERIFY_PER_BATCH;
			if (!value_ok(ids[j], bufs[k], vl[k]))
				die("agent_l2_hit: L1 key %" PRIu64 " returned a wrong value",
				    ids[j]);
			s->verified++;
		}
		al_push(s, (double)ns / BATCH);
		s->ops += BATCH;
	} while (now_ns() < end);
}

/* Median over the rounds of @a's p50 over @b's of the same round. */
static double al_paired(const struct al_samples *s, int a, int b, int rounds)
{
	double v[AL_MAX_ROUNDS];
	for (int r = 0; r < rounds; r++)
		v[r] = s[a].round_p50[r] / s[b].round_p50[r];
	return median(v, rounds);
}

void case_agent_l2_hit(const struct cfg *cfg)
{
	if (!have_programs())
		return;
	const int rounds = cfg->quick ? 3 : 7;
	const uint64_t nops = cfg->quick ? 1000 : 3000; /* per Redis path and round */
	const double l1_seconds = cfg->quick ? 0.03 : 0.1;
	env_start("agent_l2_hit");

	/* the keys, in Redis only, as another host's fills would have left them */
	char key[KEY_LEN];
	uint8_t val[VAL_LEN];
	for (uint64_t id = AL_BASE; id < AL_BASE + AL_KEYS; id++) {
		make_key(id, key);
		make_value(id, val);
		if (redisAppendCommand(env.ctl, "SET %b %b PX %u", key, (size_t)KEY_LEN, val,
				       (size_t)VAL_LEN, AL_PX_MS) != REDIS_OK)
			die("agent_l2_hit: SET: %s", env.ctl->errstr);
	}
	for (uint64_t i = 0; i < AL_KEYS; i++) {
		redisReply *r = NULL;
		if (redisGetReply(env.ctl, (void **)&r) != REDIS_OK || !r ||
		    r->type != REDIS_REPLY_STATUS)
			die("agent_l2_hit: SET reply: %s", r ? "unexpected" : env.ctl->errstr);
		freeReplyObject(r);
	}
	redisContext *own = redis_connect(); /* the worker's own connection: the baseline */
	if (!own)
		die("agent_l2_hit: cannot connect to %s", env.sock);

	struct l2_counters c0, c1, d;
	l2_snapshot(&c0);
	fprintf(stderr,
		"# agent_l2_hit: %d keys in Redis, %d rounds of %" PRIu64
		" reads per Redis path and %.2f s of L1 hits\n",
		AL_KEYS, rounds, nops, l1_seconds);
	struct al_samples s[AL_N], warm = {0};
	memset(s, 0, sizeof(s));
	al_redis_phase(AL_L2, own, AL_WARMUP, 1, &warm);
	al_redis_phase(AL_GET, own, AL_WARMUP, 1, &warm);
	al_l1_phase(0.01, 1, &warm);
	free(warm.v);
	uint64_t warm_not_l2 = 0;
	for (int k = 0; k <= HC_SRC_NEGATIVE; k++) {
		warm_not_l2 += al_not_l2[k];
		al_not_l2[k] = 0;
	}
	for (int r = 0; r < rounds; r++) {
		uint64_t seed = UINT64_C(0x6167656e74) + (uint64_t)r;
		for (int k = 0; k < AL_N; k++) {
			int a = (k + r) % AL_N;
			uint64_t from = s[a].n;
			if (a == AL_L1)
				al_l1_phase(l1_seconds, seed, &s[a]);
			else
				al_redis_phase((enum al_sys)a, own, nops, seed, &s[a]);
			s[a].round_p50[r] = al_tail_p50(&s[a], from);
		}
	}
	l2_snapshot(&c1);
	l2_delta(&c0, &c1, &d);
	redisFree(own);
	env_stop();

	double p50[AL_N], p99[AL_N];
	for (int a = 0; a < AL_N; a++) {
		percentiles(s[a].v, s[a].n, &p50[a], &p99[a]);
		free(s[a].v);
	}
	uint64_t not_l2 = 0;
	for (int k = 0; k <= HC_SRC_NEGATIVE; k++)
		not_l2 += al_not_l2[k];
	uint64_t l2_ops = s[AL_L2].ops + not_l2 + AL_WARMUP;
	char ctrs[256];
	l2_format(&d, ctrs, sizeof(ctrs));
	double ratio_l2 = al_paired(s, AL_L2, AL_GET, rounds);
	double ratio_l1 = al_paired(s, AL_L1, AL_GET, rounds);
	printf("SUMMARY case=agent_l2_hit system=%s api=%s source=l2 procs=1 ops=%" PRIu64
	       " p50_us=%.2f p99_us=%.2f max_us=%.1f ratio=%.2f diff_us=%+.2f keys=%d rounds=%d"
	       " timing=per_call loader_calls=%" PRIu64 " not_l2=%" PRIu64 " not_l2_origin=%" PRIu64
	       " not_l2_max_us=%.1f round_trips=%" PRIu64 " commands=%" PRIu64
	       " rt_per_lookup=%.3f l2_hits=%" PRIu64 " l2_misses=%" PRIu64 "%s verified=%" PRIu64
	       "\n",
	       al_sys_name[AL_L2], al_api[AL_L2], s[AL_L2].ops, p50[AL_L2] / 1e3, p99[AL_L2] / 1e3,
	       s[AL_L2].max_ns / 1e3, ratio_l2, (p50[AL_L2] - p50[AL_GET]) / 1e3, AL_KEYS, rounds,
	       al_loader_calls, not_l2, al_not_l2[HC_SRC_ORIGIN], al_not_l2_max_ns / 1e3,
	       d.round_trips, d.commands, l2_ops ? (double)d.round_trips / (double)l2_ops : 0,
	       d.l2_hits, d.l2_misses, ctrs, s[AL_L2].verified);
	printf("SUMMARY case=agent_l2_hit system=%s api=%s procs=1 ops=%" PRIu64
	       " p50_us=%.2f p99_us=%.2f max_us=%.1f ratio=- keys=%d rounds=%d timing=per_call"
	       " verified=%" PRIu64 "\n",
	       al_sys_name[AL_GET], al_api[AL_GET], s[AL_GET].ops, p50[AL_GET] / 1e3,
	       p99[AL_GET] / 1e3, s[AL_GET].max_ns / 1e3, AL_KEYS, rounds, s[AL_GET].verified);
	printf("SUMMARY case=agent_l2_hit system=%s api=%s procs=1 ops=%" PRIu64
	       " p50_us=%.4f p99_us=%.4f p50_ns=%.1f p99_ns=%.1f ratio=%.5f get_over_l1=%.0f"
	       " l2_over_l1=%.0f claim_200x=%s keys=%d rounds=%d timing=batch_mean"
	       " verified=%" PRIu64 "\n",
	       al_sys_name[AL_L1], al_api[AL_L1], s[AL_L1].ops, p50[AL_L1] / 1e3, p99[AL_L1] / 1e3,
	       p50[AL_L1], p99[AL_L1], ratio_l1, 1 / ratio_l1, al_paired(s, AL_L2, AL_L1, rounds),
	       1 / ratio_l1 >= 200 ? "met" : "missed", AL_KEYS, rounds, s[AL_L1].verified);
	fflush(stdout);
	if (al_loader_calls || not_l2 || warm_not_l2 || !l2_clean(&d))
		fprintf(stderr,
			"hostcache-bench: warning: agent_l2_hit: loader ran %" PRIu64
			" times, %" PRIu64 " timed lookups (and %" PRIu64
			" warm-up ones) not from L2;%s\n",
			al_loader_calls, not_l2, warm_not_l2, ctrs);
}

/* ---------------------------------------------------------------------- */
/* Case agent_round_trips                                                  */

enum rt_sys { RT_HC, RT_DIRECT, RT_NSYS };
static const char *const rt_sys_name[RT_NSYS] = {"hostcache", "hiredis"};

/* What the workers of one round report through (MAP_SHARED). */
struct rt_shared {
	uint32_t gen;	  /* futex: 1 releases the workers */
	uint32_t arrived; /* workers at the barrier */
	uint32_t done;	  /* workers finished */
	uint32_t pad;
	uint32_t calls[RT_MISSES]; /* loader calls per key */
	struct {
		uint64_t t0, t1;
		uint64_t src[HC_SRC_NEGATIVE + 1]; /* meta.source of every call */
		uint64_t coalesced;
	} w[RT_PROCS];
};

struct rt_loader_ctx {
	struct rt_shared *sh;
	uint64_t first; /* the round's first key id */
};

static void futex_wait_u32(uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void futex_wake_all(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The origin: count the call, give the value at once. */
static void rt_origin(const struct rt_loader_ctx *x, uint64_t id, uint8_t *val)
{
	if (id < x->first || id - x->first >= RT_MISSES)
		die("loader: key %" PRIu64 " is not one of this round's", id);
	__atomic_add_fetch(&x->sh->calls[id - x->first], 1, __ATOMIC_RELAXED);
	make_value(id, val);
}

static int rt_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	uint8_t val[VAL_LEN];
	rt_origin(ctx, key_id(key, klen), val);
	return hc_load_value(ld, val, VAL_LEN);
}

__attribute__((noreturn)) static void rt_worker(enum rt_sys sys, int proc,
						const struct rt_loader_ctx *x)
{
	struct rt_shared *sh = x->sh;
	struct hc_cache *c = NULL;
	redisContext *ctx = NULL;
	char key[KEY_LEN];
	uint8_t buf[VAL_CAP], val[VAL_LEN];
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != main_pid)
		_exit(3);
	if (sys == RT_HC) {
		/* an inherited handle may only be closed; attach again */
		hc_close(env.hc);
		int rc = hc_open(env.seg, NULL, &c);
		if (rc)
			die("hc_open %s: %s", env.seg, hc_strerror(rc));
		size_t vlen;
		make_key(0, key); /* claims this thread's slot: not measured */
		rc = hc_get(c, key, KEY_LEN, buf, VAL_CAP, &vlen);
		if (rc && rc != HC_E_NOTFOUND)
			die("first get: %s", hc_strerror(rc));
	} else if (!(ctx = redis_connect())) {
		die("cannot connect to %s", env.sock);
	}
	__atomic_add_fetch(&sh->arrived, 1, __ATOMIC_ACQ_REL);
	while (!__atomic_load_n(&sh->gen, __ATOMIC_ACQUIRE))
		futex_wait_u32(&sh->gen, 0);

	static const struct hc_load_opts opts = {.ttl_ms = LOAD_TTL_MS};
	uint64_t first = x->first + (uint64_t)proc * RT_KEYS;
	sh->w[proc].t0 = now_ns();
	for (uint64_t id = first; id < first + RT_KEYS; id++) {
		make_key(id, key);
		if (sys == RT_HC) {
			struct hc_meta m;
			size_t vlen = 0;
			int rc = hc_get_or_load(c, key, KEY_LEN, rt_loader, (void *)x, &opts, buf,
						VAL_CAP, &vlen, &m);
			if (rc)
				die("hc_get_or_load of key %" PRIu64 ": %s", id, hc_strerror(rc));
			if (!value_ok(id, buf, vlen))
				die("key %" PRIu64 " returned a wrong value", id);
			sh->w[proc].src[m.source <= HC_SRC_NEGATIVE ? m.source : HC_SRC_L1]++;
			sh->w[proc].coalesced += m.coalesced;
			continue;
		}
		redisReply *r = redisCommand(ctx, "GET %b", key, (size_t)KEY_LEN);
		if (!r || r->type != REDIS_REPLY_NIL)
			die("GET of key %" PRIu64 ": %s", id, r ? "not a miss" : ctx->errstr);
		freeReplyObject(r);
		rt_origin(x, id, val);
		r = redisCommand(ctx, "SET %b %b PX %u", key, (size_t)KEY_LEN, val, (size_t)VAL_LEN,
				 LOAD_TTL_MS);
		if (!r || r->type != REDIS_REPLY_STATUS)
			die("SET of key %" PRIu64 ": %s", id, r ? "refused" : ctx->errstr);
		freeReplyObject(r);
		sh->w[proc].src[HC_SRC_ORIGIN]++;
	}
	sh->w[proc].t1 = now_ns();
	__atomic_add_fetch(&sh->done, 1, __ATOMIC_ACQ_REL);
	if (ctx)
		redisFree(ctx);
	hc_close(c);
	_exit(0);
}

/* Wait until *@ctr reaches RT_PROCS, stopping the benchmark if a worker dies. */
static void rt_wait(enum rt_sys sys, uint32_t *ctr, const char *what)
{
	uint64_t t0 = now_ns();
	while (__atomic_load_n(ctr, __ATOMIC_ACQUIRE) < RT_PROCS) {
		bool failed = ms_since(t0) > 60000;
		for (int p = 0; p < RT_PROCS && !failed; p++) {
			int st;
			pid_t pid = env.workers[p];
			if (pid > 0 && waitpid(pid, &st, WNOHANG) == pid) {
				env.workers[p] = 0;
				if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
					continue;
				fprintf(stderr, "hostcache-bench: %s worker %d: status 0x%x\n",
					rt_sys_name[sys], p, st);
				failed = true;
			}
		}
		if (failed) {
			for (int p = 0; p < RT_PROCS; p++)
				kill_reap(&env.workers[p]);
			die("agent_round_trips: %s workers failed or timed out waiting for the %s",
			    rt_sys_name[sys], what);
		}
		sleep_ms(1);
	}
}

/* What one system's rounds came to. */
struct rt_result {
	uint64_t misses, calls, dup_keys, missed_keys;
	uint64_t round_trips, commands;
	struct cmdstats redis; /* deltas */
	uint64_t src[HC_SRC_NEGATIVE + 1], coalesced;
	double wall_ms[RT_MAX_ROUNDS], drain_ms[RT_MAX_ROUNDS];
	struct l2_counters l2; /* hostcache: deltas over the rounds */
};

static void rt_round(enum rt_sys sys, int round, struct rt_shared *sh, struct rt_result *res)
{
	struct rt_loader_ctx x = {.sh = sh,
				  .first = RT_BASE + (uint64_t)(round * RT_NSYS + sys) * RT_MISSES};
	struct cmdstats cs0, cs1;
	struct l2_counters c0, c1, d;
	memset(sh, 0, sizeof(*sh));
	if (sys == RT_HC)
		l2_snapshot(&c0);
	redis_cmdstats(&cs0);
	fflush(NULL);
	for (int p = 0; p < RT_PROCS; p++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0)
			rt_worker(sys, p, &x);
		env.workers[p] = pid;
	}
	rt_wait(sys, &sh->arrived, "barrier");
	__atomic_store_n(&sh->gen, 1, __ATOMIC_RELEASE);
	futex_wake_all(&sh->gen);
	rt_wait(sys, &sh->done, "end of the round");
	uint64_t t_done = now_ns();
	for (int p = 0; p < RT_PROCS; p++) {
		int st;
		pid_t pid = env.workers[p];
		if (pid <= 0)
			continue;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			die("agent_round_trips: %s worker %d failed", rt_sys_name[sys], p);
		env.workers[p] = 0;
	}
	/* the fills are written behind: wait until Redis has them all (5 s at most) */
	redis_cmdstats(&cs1);
	while (cs1.set - cs0.set < RT_MISSES && ms_since(t_done) < 5000) {
		sleep_ms(1);
		redis_cmdstats(&cs1);
	}
	double drain = ms_since(t_done);
	if (sys == RT_HC) {
		/* and until the agent is idle: its ring empty, nothing more sent */
		uint64_t t1 = now_ns();
		for (;;) {
			l2_snapshot(&c1);
			if (!g_st.agent.ring_depth || ms_since(t1) > 1000)
				break;
			sleep_ms(1);
		}
		sleep_ms(5);
		l2_snapshot(&c1);
		redis_cmdstats(&cs1);
		l2_delta(&c0, &c1, &d);
		const uint64_t *a = (const uint64_t *)&d;
		uint64_t *b = (uint64_t *)&res->l2;
		for (size_t i = 0; i < sizeof(d) / sizeof(uint64_t); i++)
			b[i] += a[i];
		res->round_trips += d.round_trips;
		res->commands += d.commands;
	} else {
		res->round_trips += 2 * (uint64_t)RT_MISSES; /* a GET and a SET per miss */
		res->commands += 2 * (uint64_t)RT_MISSES;
	}
	res->redis.get += cs1.get - cs0.get;
	res->redis.pttl += cs1.pttl - cs0.pttl;
	res->redis.set += cs1.set - cs0.set;
	res->misses += RT_MISSES;
	for (uint32_t k = 0; k < RT_MISSES; k++) {
		res->calls += sh->calls[k];
		res->dup_keys += sh->calls[k] > 1;
		res->missed_keys += sh->calls[k] == 0;
	}
	uint64_t t0 = UINT64_MAX, t1 = 0;
	for (int p = 0; p < RT_PROCS; p++) {
		t0 = sh->w[p].t0 < t0 ? sh->w[p].t0 : t0;
		t1 = sh->w[p].t1 > t1 ? sh->w[p].t1 : t1;
		for (int k = 0; k <= HC_SRC_NEGATIVE; k++)
			res->src[k] += sh->w[p].src[k];
		res->coalesced += sh->w[p].coalesced;
	}
	res->wall_ms[round] = (double)(t1 - t0) / 1e6;
	res->drain_ms[round] = sys == RT_HC ? drain : 0;
}

void case_agent_round_trips(const struct cfg *cfg)
{
	if (!have_programs())
		return;
	const int rounds = cfg->quick ? 2 : 5;
	env_start("agent_round_trips");
	struct rt_shared *sh =
		mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	fprintf(stderr, "# agent_round_trips: %d workers x %d missing keys, %d rounds per system\n",
		RT_PROCS, RT_KEYS, rounds);
	static struct rt_result res[RT_NSYS];
	memset(res, 0, sizeof(res));
	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < RT_NSYS; k++)
			rt_round((enum rt_sys)((k + r) % RT_NSYS), r, sh, &res[(k + r) % RT_NSYS]);
	munmap(sh, sizeof(*sh));
	env_stop();

	double wall[RT_NSYS], wmin[RT_NSYS], wmax[RT_NSYS];
	for (int s = 0; s < RT_NSYS; s++) {
		double v[RT_MAX_ROUNDS];
		memcpy(v, res[s].wall_ms, sizeof(v));
		wall[s] = median(v, rounds);
		wmin[s] = v[0];
		wmax[s] = v[rounds - 1];
	}
	for (int s = 0; s < RT_NSYS; s++) {
		const struct rt_result *x = &res[s];
		double rt_k = (double)x->round_trips * 1000 / (double)x->misses;
		double redis_k = (double)(x->redis.get + x->redis.pttl + x->redis.set) * 1000 /
				 (double)x->misses;
		char ratio[64] = " ratio=- wall_ratio=-", extra[512] = "";
		if (s == RT_HC) {
			const struct rt_result *b = &res[RT_DIRECT];
			snprintf(ratio, sizeof(ratio), " ratio=%.4f wall_ratio=%.2f",
				 rt_k / ((double)b->round_trips * 1000 / (double)b->misses),
				 wall[s] / wall[RT_DIRECT]);
			char ctrs[256];
			l2_format(&x->l2, ctrs, sizeof(ctrs));
			double dv[RT_MAX_ROUNDS];
			memcpy(dv, x->drain_ms, sizeof(dv));
			snprintf(extra, sizeof(extra),
				 " cmds_per_round_trip=%.1f misses_per_round_trip=%.1f"
				 " drain_ms=%.1f src_l2=%" PRIu64 " src_origin=%" PRIu64
				 " src_other=%" PRIu64 " coalesced=%" PRIu64 " leaders=%" PRIu64
				 " l2_lookups_missed=%" PRIu64 "%s",
				 x->round_trips ? (double)x->commands / (double)x->round_trips : 0,
				 x->round_trips ? (double)x->misses / (double)x->round_trips : 0,
				 median(dv, rounds), x->src[HC_SRC_L2], x->src[HC_SRC_ORIGIN],
				 x->src[HC_SRC_L1] + x->src[HC_SRC_STALE] + x->src[HC_SRC_NEGATIVE],
				 x->coalesced, x->l2.leaders, x->l2.l2_misses, ctrs);
		}
		printf("SUMMARY case=agent_round_trips system=%s procs=%d keys_per_proc=%d"
		       " rounds=%d misses=%" PRIu64 " loader_calls=%" PRIu64 " dup_keys=%" PRIu64
		       " missed_keys=%" PRIu64 " round_trips=%" PRIu64 " rt_per_1000_misses=%.1f"
		       "%s commands=%" PRIu64 " redis_get=%lld redis_pttl=%lld redis_set=%lld"
		       " redis_cmds_per_1000_misses=%.1f wall_ms=%.1f wall_ms_min=%.1f"
		       " wall_ms_max=%.1f misses_per_s=%.0f%s\n",
		       rt_sys_name[s], RT_PROCS, RT_KEYS, rounds, x->misses, x->calls, x->dup_keys,
		       x->missed_keys, x->round_trips, rt_k, ratio, x->commands, x->redis.get,
		       x->redis.pttl, x->redis.set, redis_k, wall[s], wmin[s], wmax[s],
		       RT_MISSES / (wall[s] / 1e3), extra);
	}
	fflush(stdout);
	const struct rt_result *h = &res[RT_HC];
	if (h->calls != h->misses || h->dup_keys || h->missed_keys || !l2_clean(&h->l2)) {
		char ctrs[256];
		l2_format(&h->l2, ctrs, sizeof(ctrs));
		fprintf(stderr,
			"hostcache-bench: warning: agent_round_trips: %" PRIu64
			" loader calls for %" PRIu64 " misses (%" PRIu64
			" keys loaded twice, %" PRIu64 " never);%s\n",
			h->calls, h->misses, h->dup_keys, h->missed_keys, ctrs);
	}
}
