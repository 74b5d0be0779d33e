/*
 * harness.h - processes for the end-to-end tests of the agent: a private
 * redis-server on a unix socket in a temporary directory, hostcache-agent
 * processes, redis-cli calls, and a cleanup that kills every process and
 * removes every segment and file the test made on any exit (normal, exit()
 * from a failed REQUIRE, a fatal or termination signal).  Children get
 * PR_SET_PDEATHSIG, so even a SIGKILL of the test leaves nothing behind.
 *
 * Header-only like testutil.h (one test program = one translation unit, so
 * CHECK counts into that program's failures).  A test calls harness_init()
 * first; it answers 77 (skip) when redis-server or redis-cli is missing.
 */
#ifndef HC_HARNESS_H
#define HC_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "spawn.h"
#include "testutil.h"

#define PFX "hc:" /* the agents' --prefix for keys in Redis */
#define CHANNEL "cache_invalidation"
/* ---------------------------------------------------------------------- */
/* Cleanup on every exit                                                   */

#define MAX_PROCS 16
#define MAX_SEGS 16
#define MAX_FILES 32

static pid_t main_pid;
static char dir[64];
static char sock_path[128];
static char redis_url[160];
static char redis_log[128];
static char redis_server_path[PATH_MAX];
static char redis_cli_path[PATH_MAX];
static const char *agent_path;

static volatile pid_t procs[MAX_PROCS];
static char seg_paths[MAX_SEGS][HC_NAME_MAX + 16];
static char files[MAX_FILES][192];

static inline void track_pid(pid_t pid)
{
	for (int i = 0; i < MAX_PROCS; i++) {
		if (!procs[i]) {
			procs[i] = pid;
			return;
		}
	}
	fprintf(stderr, "too many child processes to track\n");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	exit(1);
}

static inline void untrack_pid(pid_t pid)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i] == pid)
			procs[i] = 0;
}

static inline void track_file(const char *path)
{
	for (int i = 0; i < MAX_FILES; i++) {
		if (!strcmp(files[i], path))
			return;
		if (!files[i][0]) {
			snprintf(files[i], sizeof(files[i]), "%s", path);
			return;
		}
	}
	fprintf(stderr, "too many files to track for cleanup\n");
	exit(1);
}

/* Kill what is left, remove segments and files.  Async-signal-safe enough:
 * kill, waitpid, shm_unlink, unlink and rmdir only, on precomputed paths. */
static inline void cleanup(void)
{
	if (getpid() != main_pid)
		return; /* a forked worker exiting: nothing of ours to clean */
	for (int i = 0; i < MAX_PROCS; i++) {
		pid_t p = procs[i];
		if (p > 0) {
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
			procs[i] = 0;
		}
	}
	for (int i = 0; i < MAX_SEGS; i++) {
		if (seg_paths[i][0]) {
			shm_unlink(seg_paths[i]);
			seg_paths[i][0] = '\0';
		}
	}
	for (int i = 0; i < MAX_FILES; i++)
		if (files[i][0])
			unlink(files[i]);
	if (dir[0])
		rmdir(dir);
}

static inline void cleanup_atexit(void)
{
	if (getpid() != main_pid)
		return;
	cleanup();
	if (!dir[0])
		return;
	/* anything else Redis or an agent left in the directory */
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[512];
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	if (rmdir(dir) != 0 && errno != ENOENT)
		fprintf(stderr, "cannot remove %s: %s\n", dir, strerror(errno));
	dir[0] = '\0';
}

static inline void on_fatal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static inline void install_cleanup(void)
{
	static const int sigs[] = {SIGINT,  SIGTERM, SIGHUP, SIGQUIT, SIGABRT,
				   SIGSEGV, SIGBUS,  SIGFPE, SIGILL,  SIGALRM};
	atexit(cleanup_atexit);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_fatal;
		sigemptyset(&sa.sa_mask);
		sa.sa_flags = SA_RESETHAND;
		sigaction(sigs[i], &sa, NULL);
	}
	signal(SIGPIPE, SIG_IGN);
}

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */

static inline double ms_since(uint64_t t0_ns)
{
	return (double)(tu_now_ns() - t0_ns) / 1e6;
}

static inline void sleep_us(unsigned us)
{
	struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Evaluate @cond until it holds or @timeout_ms passed: the ms it took, or -1. */
#define WAIT_FOR(cond, timeout_ms)                                               \
	({                                                                       \
		uint64_t t0_ = tu_now_ns();                                      \
		double r_ = -1;                                                  \
		for (;;) {                                                       \
			if (cond) {                                              \
				r_ = ms_since(t0_);                              \
				break;                                           \
			}                                                        \
			if (tu_now_ns() - t0_ > (uint64_t)(timeout_ms)*1000000u) \
				break;                                           \
			sleep_us(500);                                           \
		}                                                                \
		r_;                                                              \
	})

static inline void log_stderr(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= HC_LOG_WARN)
		fprintf(stderr, "hostcache[%d]: %s\n", (int)getpid(), msg);
}

/* ---------------------------------------------------------------------- */
/* Child processes                                                         */

/*
 * Fork and exec @argv[0] with stdout and stderr appended to @log (NULL:
 * /dev/null), stdin from /dev/null; the child dies with the test.
 */
static inline pid_t spawn(char *const argv[], const char *log)
{
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		hc_exec_child(argv, log, main_pid);
	track_pid(pid);
	if (log)
		track_file(log);
	return pid;
}

/* Wait up to @timeout_ms for @pid to exit; its status, or -1 if it still runs. */
static inline int wait_exit(pid_t pid, unsigned timeout_ms)
{
	int st = -1;
	uint64_t t0 = tu_now_ns();
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			untrack_pid(pid);
			return st;
		}
		if (r < 0) {
			untrack_pid(pid);
			return -1;
		}
		if (ms_since(t0) > timeout_ms)
			return -1;
		tu_sleep_ms(2);
	}
}

static inline void kill_wait(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	untrack_pid(pid);
}

/* Print the last @lines lines of @path to stderr, each prefixed with @tag. */
static inline void print_tail(const char *path, const char *tag, int lines)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	static char buf[1 << 20];
	/* the last megabyte of a longer log */
	if (fseek(f, -(long)(sizeof(buf) - 1), SEEK_END) != 0)
		rewind(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	size_t start = n;
	int seen = 0;
	while (start > 0) {
		if (buf[start - 1] == '\n' && start != n && ++seen >= lines)
			break;
		start--;
	}
	fprintf(stderr, "---- last lines of %s ----\n", tag);
	char *p = buf + start;
	while (*p) {
		char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);
		fprintf(stderr, "  %s| %.*s\n", tag, len, p);
		p += len + (nl ? 1 : 0);
	}
}

/* ---------------------------------------------------------------------- */
/* redis-cli and redis-server                                              */

/*
 * Run "redis-cli -s SOCK args..." and put its output (stdout and stderr,
 * trailing newlines cut) in @out.  Returns 0, or -1 when it failed or took
 * over 5 s (then killed).
 */
static inline int rcli_v(char *out, size_t cap, const char *const *args)
{
	const char *argv[160] = {redis_cli_path, "-s", sock_path};
	int n = 3;
	while (args[n - 3] && n < 159) {
		argv[n] = args[n - 3];
		n++;
	}
	argv[n] = NULL;
	int pfd[2];
	REQUIRE(pipe(pfd) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int in = open("/dev/null", O_RDONLY);
		dup2(in, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	track_pid(pid);
	close(pfd[1]);
	size_t len = 0;
	uint64_t t0 = tu_now_ns();
	bool timed_out = false;
	for (;;) {
		int left = 5000 - (int)ms_since(t0);
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		char tmp[4096];
		ssize_t r = read(pfd[0], tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		size_t take = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
		memcpy(out + len, tmp, take);
		len += take;
	}
	close(pfd[0]);
	out[len] = '\0';
	while (len && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' '))
		out[--len] = '\0';
	if (timed_out) {
		kill_wait(pid);
		fprintf(stderr, "redis-cli %s: no answer in 5 s\n", args[0]);
		return -1;
	}
	int st = wait_exit(pid, 5000);
	if (st == -1) {
		kill_wait(pid);
		return -1;
	}
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

#define RCLI(out, cap, ...) rcli_v(out, cap, (const char *const[]){__VA_ARGS__, NULL})

/* An integer reply, or LLONG_MIN. */
static inline long long rcli_int_v(const char *const *args)
{
	char out[512];
	if (rcli_v(out, sizeof(out), args) != 0 || !out[0])
		return LLONG_MIN;
	char *end;
	errno = 0;
	long long v = strtoll(out, &end, 10);
	return errno || *end ? LLONG_MIN : v;
}

#define RCLI_INT(...) rcli_int_v((const char *const[]){__VA_ARGS__, NULL})

/* GET of a Redis key into @out ("" when absent: check EXISTS to tell). */
static inline int r_get(const char *rkey, char *out, size_t cap)
{
	return RCLI(out, cap, "GET", rkey);
}

static inline bool r_has(const char *rkey, const char *want)
{
	char out[512];
	return r_get(rkey, out, sizeof(out)) == 0 && !strcmp(out, want);
}

static inline bool redis_pings(void)
{
	char out[64];
	return RCLI(out, sizeof(out), "PING") == 0 && !strcmp(out, "PONG");
}

static pid_t redis_pid;

/* Start redis-server on sock_path; 0 when it answers PING within 5 s. */
static inline int redis_start(void)
{
	char *argv[] = {redis_server_path,
			"--port",
			"0",
			"--unixsocket",
			sock_path,
			"--unixsocketperm",
			"700",
			"--save",
			"",
			"--appendonly",
			"no",
			"--dir",
			dir,
			NULL};
	track_file(sock_path);
	redis_pid = spawn(argv, redis_log);
	uint64_t t0 = tu_now_ns();
	while (ms_since(t0) < 5000) {
		int st;
		if (waitpid(redis_pid, &st, WNOHANG) == redis_pid) {
			untrack_pid(redis_pid);
			redis_pid = 0;
			fprintf(stderr, "redis-server exited at start (status 0x%x)\n", st);
			print_tail(redis_log, "redis", 20);
			return -1;
		}
		if (access(sock_path, F_OK) == 0 && redis_pings())
			return 0;
		tu_sleep_ms(10);
	}
	fprintf(stderr, "redis-server did not answer PING within 5 s\n");
	print_tail(redis_log, "redis", 20);
	return -1;
}

static inline void redis_kill(void)
{
	if (redis_pid > 0)
		kill_wait(redis_pid);
	redis_pid = 0;
}

/* Stop Redis at the end: SIGTERM (it saves nothing: --save ""), SIGKILL after 3 s. */
static inline void redis_stop(void)
{
	if (redis_pid <= 0)
		return;
	kill(redis_pid, SIGTERM);
	if (wait_exit(redis_pid, 3000) == -1)
		kill_wait(redis_pid);
	redis_pid = 0;
}

/* cmdstat_<cmd>:calls=N from INFO commandstats text; 0 when absent. */
static inline long long cmdstat(const char *info, const char *cmd)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "cmdstat_%s:calls=", cmd);
	const char *p = strstr(info, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : 0;
}

/* ---------------------------------------------------------------------- */
/* Agents                                                                  */

struct agent {
	char tag[8]; /* "A", "B": the host */
	const char *seg;
	char id[64];
	char log[160];
	pid_t pid;
	const char *const *extra; /* more arguments, NULL-terminated (or NULL) */
};

/* More arguments for the agents agent_init prepares next (NULL: none). */
static const char *const *agent_extra;

static inline void agent_init(struct agent *a, const char *tag, const char *seg)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->tag, sizeof(a->tag), "%s", tag);
	a->seg = seg;
	a->extra = agent_extra;
	snprintf(a->id, sizeof(a->id), "host-%s-%d", tag, (int)getpid());
	snprintf(a->log, sizeof(a->log), "%s/agent-%s.log", dir, seg);
}

static inline void agent_start(struct agent *a)
{
	char *argv[] = {(char *)agent_path,
			"-n",
			(char *)a->seg,
			"--redis",
			redis_url,
			"--prefix",
			PFX,
			"--id",
			a->id,
			"--log-level",
			"debug",
			"--maintain-ms",
			"100",
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL};
	int n = 13;
	for (int i = 0; a->extra && a->extra[i] && n < (int)(sizeof(argv) / sizeof(argv[0])) - 1;
	     i++)
		argv[n++] = (char *)a->extra[i];
	a->pid = spawn(argv, a->log);
}

/* Is the agent still running?  Reports (once) how it ended if not. */
static inline bool agent_running(struct agent *a)
{
	if (a->pid <= 0)
		return false;
	int st;
	if (waitpid(a->pid, &st, WNOHANG) == a->pid) {
		fprintf(stderr, "agent %s (pid %d) ended: %s %d\n", a->tag, (int)a->pid,
			WIFEXITED(st) ? "exit" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		untrack_pid(a->pid);
		a->pid = 0;
		return false;
	}
	return true;
}

/* SIGTERM; it must exit 0 within 3 s.  Returns the ms it took. */
static inline double agent_stop(struct agent *a)
{
	if (a->pid <= 0)
		return 0;
	uint64_t t0 = tu_now_ns();
	kill(a->pid, SIGTERM);
	int st = wait_exit(a->pid, 3000);
	double ms = ms_since(t0);
	if (st == -1) {
		fprintf(stderr, "agent %s did not stop within 3 s of SIGTERM: killed\n", a->tag);
		kill_wait(a->pid);
		CHECK(!"agent stops on SIGTERM");
	} else {
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fprintf(stderr, "agent %s: SIGTERM -> status 0x%x\n", a->tag, st);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	a->pid = 0;
	return ms;
}

static inline void agent_kill(struct agent *a)
{
	if (a->pid > 0)
		kill_wait(a->pid);
	a->pid = 0;
}

static struct hc_stats g_st;

static inline struct hc_agent_stats agent_stats(struct hc_cache *c)
{
	int rc = hc_stats(c, &g_st);
	CHECK_RC(rc, 0);
	return g_st.agent;
}

static inline uint64_t ctr(struct hc_cache *c, enum hc_agent_ctr k)
{
	return agent_stats(c).ctr[k];
}

static inline bool agent_up(struct hc_cache *c)
{
	struct hc_agent_stats s = agent_stats(c);
	return s.alive && s.redis_state == HC_REDIS_UP;
}

/*
 * Wait until the agent serves @c: its heartbeat fresh and Redis UP (5 s at
 * most), then until its subscription is live: a probe published on the
 * channel is received (5 s at most).  Returns the ms it took, or -1.
 */
static inline double agent_ready(struct hc_cache *c, struct agent *a)
{
	uint64_t t0 = tu_now_ns();
	while (!agent_up(c)) {
		if (!agent_running(a) || ms_since(t0) > 5000) {
			struct hc_agent_stats s = agent_stats(c);
			fprintf(stderr,
				"agent %s not ready: alive %u, redis_state %u, pid %d, heartbeat "
				"age %lld ms\n",
				a->tag, s.alive, s.redis_state, (int)s.pid,
				(long long)s.heartbeat_age_ms);
			print_tail(a->log, a->tag, 30);
			return -1;
		}
		tu_sleep_ms(2);
	}
	uint64_t t1 = tu_now_ns();
	uint64_t r0 = ctr(c, HC_AG_INV_RECEIVED);
	for (int n = 0; ms_since(t1) < 5000; n++) {
		char probe[96], out[64];
		snprintf(probe, sizeof(probe), "probe:%s:%d", a->id, n);
		RCLI(out, sizeof(out), "PUBLISH", CHANNEL, probe);
		if (WAIT_FOR(ctr(c, HC_AG_INV_RECEIVED) > r0, 100) >= 0)
			return ms_since(t0);
	}
	fprintf(stderr, "agent %s: no invalidation probe received within 5 s\n", a->tag);
	print_tail(a->log, a->tag, 30);
	return -1;
}

/* Remove segment @name at cleanup (until untrack_segment). */
static inline void track_segment(const char *name)
{
	for (int i = 0; i < MAX_SEGS; i++) {
		if (!seg_paths[i][0]) {
			snprintf(seg_paths[i], sizeof(seg_paths[i]), "/hostcache.%s", name);
			return;
		}
	}
	fprintf(stderr, "too many segments to track for cleanup\n");
	exit(1);
}

static inline void untrack_segment(const char *name)
{
	char p[HC_NAME_MAX + 16];
	snprintf(p, sizeof(p), "/hostcache.%s", name);
	for (int i = 0; i < MAX_SEGS; i++)
		if (!strcmp(seg_paths[i], p))
			seg_paths[i][0] = '\0';
}

/*
 * Set up for test @prog with the agent at @agent: the cleanup handlers, a
 * temporary directory, the Redis paths.  0, 77 (skip: no redis-server or
 * redis-cli) or 1 (cannot run).
 */
static inline int harness_init(const char *prog, const char *agent)
{
	main_pid = getpid();
	agent_path = agent;
	if (access(agent_path, X_OK) != 0) {
		fprintf(stderr, "%s: agent binary %s: %s\n", prog, agent_path, strerror(errno));
		return 1;
	}
	if (!hc_find_in_path("redis-server", redis_server_path, sizeof(redis_server_path)) ||
	    !hc_find_in_path("redis-cli", redis_cli_path, sizeof(redis_cli_path))) {
		printf("%s: SKIP: redis-server and redis-cli are needed (not found in PATH)\n",
		       prog);
		return 77;
	}
	install_cleanup();
	snprintf(dir, sizeof(dir), "/tmp/hc-%s-XXXXXX", prog);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		dir[0] = '\0';
		return 1;
	}
	snprintf(sock_path, sizeof(sock_path), "%s/redis.sock", dir);
	snprintf(redis_url, sizeof(redis_url), "unix:%s", sock_path);
	snprintf(redis_log, sizeof(redis_log), "%s/redis.log", dir);
	return 0;
}

#endif
