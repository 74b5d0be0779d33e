/*
 * cmp_net.c - hostcache-compare: the networked caches a user would run
 * next to the workers instead of hostcache, each behind its usual C client,
 * each on a private server this file starts and stops.
 *
 *   redis           hiredis 0.14 over a unix socket (RESP2): one
 *                   redisCommand("GET") round trip per key; SET for set().
 *   redis-pipe      the same server setup, and a get() of up to 16 keys
 *                   is pipelined: redisAppendCommand(GET) x n, then
 *                   redisGetReply() x n, one round trip per call.
 *   memcached       libmemcached 1.1 over a unix socket: memcached_get()
 *                   per key (a malloc()ed copy of the value, copied out
 *                   and freed, as the API hands it over); memcached_set().
 *   memcached-mget  the same server setup, and a get() of up to 16 keys is
 *                   one memcached_mget() and a memcached_fetch_result()
 *                   loop into one reused result, results mapped back to
 *                   the requested ids by key (a miss is a key that does not
 *                   come back).
 *
 * Servers.  setup() starts a server of the system's own (so two systems
 * never share one, even if compare.c overlapped them) with its unix socket
 * and log in cmp_tmpdir(), and waits up to 5 s until it answers (PING, or
 * memcached's "version"):
 *
 *   redis-server --port 0 --unixsocket DIR/<name>.sock --unixsocketperm 700
 *                --save "" --appendonly no --dir DIR
 *   memcached -s DIR/<name>.sock -a 0700 -m MB -t 1 -U 0 -I 1m
 *             -o hashpower=N [-u root, as root]
 *             MB = keys * (value + 100) * 1.5, at least 64: no evictions
 *             N: the hash table sized for the keys up front (as Redis's
 *             dict ends up), not grown by a background thread during the
 *             fill (which made a fill of 1 M keys 2x slower)
 *
 * Unix sockets, not TCP on 127.0.0.1: both servers and clients support
 * them equally, they need no free port (no race with other programs, no
 * clash with a system memcached on 11211), and they are the faster local
 * transport, so they give these systems their best case.  memcached uses
 * its text protocol: the binary protocol (deprecated in memcached 1.6) was
 * not faster in our measurement (build with -DCMP_MC_BINARY=1 to use it).
 * One server thread each (-t 1; Redis executes commands on one thread).
 *
 * A server is started in its own process group (a ^C on the terminal
 * reaches compare.c, which stops it), dies with its parent
 * (PR_SET_PDEATHSIG), and is SIGKILLed and reaped by a cmp_at_exit()
 * function on every exit of the parent; teardown() sends SIGTERM and
 * SIGKILL after 2 s (memcached acts on SIGTERM at its next 1 s clock tick:
 * its teardown takes up to ~1 s).  A program that is not installed skips
 * the system ("memcached not installed").  SIGPIPE, when at its default, is
 * ignored in the parent and the workers, so a server that dies mid-run
 * gives an error, not a silent death.
 *
 * Filling.  Redis: SET pipelined 1000 per write, the RESP built by hand
 * (hiredis's format parser costs ~1.3 us a command, more than the SET),
 * the next 1000 sent before the replies of the last are read; then DBSIZE
 * and a few values checked.  memcached: memcached_set() with
 * MEMCACHED_BEHAVIOR_BUFFER_REQUESTS and _NOREPLY ("set ... noreply",
 * written when libmemcached's buffer fills, flushed every 1000 keys), then
 * a get on the same connection (every set before it has been executed),
 * then stats (curr_items == keys, no evictions) and a few values checked.
 * 1 M keys of 100 B take ~1.5-2 s each.
 *
 * Memory.  Redis: INFO memory used_memory after fill minus before fill
 * (allocator's view: jemalloc size classes, dict tables, robj/sds
 * headers).  memcached: the server's RSS growth from right after start to
 * after fill (cmp_rss()), because memcached allocates its slab pages
 * (1 MB each, carved into fixed-size chunks of the item's size class)
 * lazily and touches them as items are written: RSS counts the chunk
 * round-up, the partly filled last page of each class and the hash table
 * growth, which "stats bytes" (the sum of item sizes) does not.
 *
 * Workers.  attach() opens a connection per worker process, after fork();
 * a connection is never shared across fork().  get() and set() return -1
 * with one line on stderr on any protocol or connection error; I/O has a
 * 5 s timeout so a hung server is an error, not a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <libmemcached/memcached.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmp.h"

#ifndef CMP_MC_BINARY
#define CMP_MC_BINARY 0 /* memcached binary protocol: measured, not faster */
#endif

#define NET_START_MS 5000 /* a server must answer by then */
#define NET_STOP_MS 2000  /* SIGTERM, then SIGKILL */
#define NET_IO_MS 5000	  /* client I/O timeout */
#define NET_CHUNK 1000	  /* keys per pipelined fill round */
#define NET_VERIFY 16	  /* values checked after a fill */
#define MC_ITEM_EXTRA 100 /* memcached -m: bytes per item beyond the value */
#define MC_MIN_MB 64

/* A server this file started, one per system.  kill_all() reads it from a
 * signal handler or atexit: only pid, owner and the two paths. */
struct srv {
	const char *name; /* the system's name: file names, messages */
	const char *prog; /* "redis-server", "memcached" */
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char log[PATH_MAX];
	volatile pid_t pid; /* 0 when not running */
	pid_t owner;	    /* the process that started it (the parent) */
	uint32_t value_size;
	uint64_t keys;
	redisContext *ctl; /* Redis: the parent's connection (fill, INFO) */
	uint64_t used0;	   /* Redis: used_memory before fill */
	uint64_t rss0;	   /* memcached: RSS right after start */
};

static struct srv srv_redis = {.name = "redis", .prog = "redis-server"};
static struct srv srv_redis_pipe = {.name = "redis-pipe", .prog = "redis-server"};
static struct srv srv_mc = {.name = "memcached", .prog = "memcached"};
static struct srv srv_mc_mget = {.name = "memcached-mget", .prog = "memcached"};

static struct srv *const all_srv[] = {&srv_redis, &srv_redis_pipe, &srv_mc, &srv_mc_mget};

/* ---------------------------------------------------------------------- */
/* starting and stopping servers                                          */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t ms_since(uint64_t t0)
{
	return (now_ns() - t0) / 1000000u;
}

static void ignore_sigpipe(void)
{
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

/* cmp_at_exit(): kill, waitpid, unlink only (it may run in a signal
 * handler).  Only the process that started a server stops it. */
static void kill_all(void)
{
	for (size_t i = 0; i < sizeof(all_srv) / sizeof(all_srv[0]); i++) {
		struct srv *s = all_srv[i];
		pid_t p = s->pid;
		if (p <= 0 || s->owner != getpid())
			continue;
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		s->pid = 0;
		unlink(s->sock);
		unlink(s->log);
	}
}

/* Fork and exec @argv, output to @s->log; -1 on fork failure. */
static pid_t spawn(const struct srv *s, char *const argv[])
{
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	setpgid(0, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	int in = open("/dev/null", O_RDONLY);
	int out = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (in < 0 || out < 0)
		_exit(126);
	dup2(in, 0);
	dup2(out, 1);
	dup2(out, 2);
	/* no inherited descriptors: pipes and connections of the parent */
	if (close_range(3, ~0u, 0) != 0) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	}
	execv(argv[0], argv);
	_exit(127);
}

/* Stop @s: SIGTERM, SIGKILL after @grace_ms, reap, remove its files. */
static void srv_stop(struct srv *s, unsigned grace_ms)
{
	if (s->ctl) {
		redisFree(s->ctl);
		s->ctl = NULL;
	}
	pid_t p = s->pid;
	if (p > 0 && s->owner == getpid()) {
		bool gone = false;
		if (grace_ms && kill(p, SIGTERM) == 0) {
			uint64_t t0 = now_ns();
			while (!gone && ms_since(t0) < grace_ms) {
				pid_t r = waitpid(p, NULL, WNOHANG);
				gone = r == p || (r < 0 && errno == ECHILD);
				if (!gone)
					sleep_ms(5);
			}
		}
		if (!gone) {
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
		}
		s->pid = 0;
	}
	if (s->sock[0])
		unlink(s->sock);
	if (s->log[0])
		unlink(s->log);
}

/*
 * Find @s->prog, fill in the paths of @s for case @c.  0, or -1 with a
 * reason.  @path receives the program.
 */
static int srv_prepare(struct srv *s, const struct cmp_case *c, char *path, size_t cap, char *why,
		       size_t whylen)
{
	static bool hooked;
	if (s->pid > 0)
		srv_stop(s, NET_STOP_MS); /* a setup without teardown */
	s->value_size = c->value_size;
	s->keys = c->keys;
	s->sock[0] = s->log[0] = '\0';
	if (!cmp_find_program(s->prog, path, cap)) {
		snprintf(why, whylen, "%s not installed", s->prog);
		return -1;
	}
	const char *dir = cmp_tmpdir();
	if (!dir) {
		snprintf(why, whylen, "no temporary directory");
		return -1;
	}
	int n = snprintf(s->sock, sizeof(s->sock), "%s/%s.sock", dir, s->name);
	if (n < 0 || (size_t)n >= sizeof(s->sock)) {
		s->sock[0] = '\0';
		snprintf(why, whylen, "socket path too long in %s", dir);
		return -1;
	}
	snprintf(s->log, sizeof(s->log), "%s/%s.log", dir, s->name);
	unlink(s->sock);
	if (!hooked) {
		cmp_at_exit(kill_all);
		hooked = true;
	}
	ignore_sigpipe();
	return 0;
}

/*
 * Start @argv for @s and wait until @ready(@s) says it answers.  0, or -1
 * with a reason (the server is stopped then).
 */
static int srv_start(struct srv *s, char *const argv[], bool (*ready)(struct srv *), char *why,
		     size_t whylen)
{
	s->owner = getpid();
	pid_t pid = spawn(s, argv);
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		return -1;
	}
	s->pid = pid;
	uint64_t t0 = now_ns();
	for (;;) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			s->pid = 0;
			print_tail(s->log, s->prog);
			snprintf(why, whylen, "%s exited at start (status 0x%x)", s->prog, st);
			srv_stop(s, 0);
			return -1;
		}
		if (access(s->sock, F_OK) == 0 && ready(s))
			return 0;
		if (ms_since(t0) >= NET_START_MS)
			break;
		sleep_ms(5);
	}
	print_tail(s->log, s->prog);
	snprintf(why, whylen, "%s did not answer within %d ms", s->prog, NET_START_MS);
	srv_stop(s, 0);
	return -1;
}

/* ---------------------------------------------------------------------- */
/* Redis                                                                  */

struct redis_h {
	redisContext *c;
	const char *name;
};

static redisContext *redis_connect(const char *sock, bool quiet)
{
	struct timeval tv = {.tv_sec = NET_IO_MS / 1000};
	redisContext *c = redisConnectUnixWithTimeout(sock, tv);
	if (!c || c->err) {
		if (!quiet)
			fprintf(stderr, "redis: connect %s: %s\n", sock,
				c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		if (!quiet)
			fprintf(stderr, "redis: set timeout: %s\n", c->errstr);
		redisFree(c);
		return NULL;
	}
	return c;
}

static bool redis_ready(struct srv *s)
{
	redisContext *c = redis_connect(s->sock, true);
	if (!c)
		return false;
	redisReply *r = redisCommand(c, "PING");
	bool ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
	if (r)
		freeReplyObject(r);
	if (!ok) {
		redisFree(c);
		return false;
	}
	s->ctl = c;
	return true;
}

static int redis_setup(struct srv *s, const struct cmp_case *c, char *why, size_t whylen)
{
	char path[PATH_MAX];
	if (srv_prepare(s, c, path, sizeof(path), why, whylen) != 0)
		return -1;
	const char *dir = cmp_tmpdir();
	char *argv[] = {path,	     "--port", "0", "--unixsocket", s->sock, "--unixsocketperm",
			"700",	     "--save", "",  "--appendonly", "no",    "--dir",
			(char *)dir, NULL};
	return srv_start(s, argv, redis_ready, why, whylen);
}

/* Why @r (or the connection) failed, for one line on stderr. */
static const char *redis_why(const redisContext *c, const redisReply *r)
{
	if (!r)
		return c->err ? c->errstr : "no reply";
	if (r->type == REDIS_REPLY_ERROR)
		return r->str;
	switch (r->type) {
	case REDIS_REPLY_STRING:
		return "unexpected string reply";
	case REDIS_REPLY_ARRAY:
		return "unexpected array reply";
	case REDIS_REPLY_INTEGER:
		return "unexpected integer reply";
	case REDIS_REPLY_NIL:
		return "unexpected nil reply";
	case REDIS_REPLY_STATUS:
		return r->str;
	}
	return "unexpected reply";
}

static bool redis_ok(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK");
}

/* INFO memory used_memory, or 0. */
static uint64_t redis_used_memory(redisContext *c)
{
	redisReply *r = redisCommand(c, "INFO memory");
	uint64_t v = 0;
	if (r && r->type == REDIS_REPLY_STRING) {
		const char *p = strstr(r->str, "used_memory:");
		if (p)
			v = strtoull(p + strlen("used_memory:"), NULL, 10);
	} else {
		fprintf(stderr, "redis: INFO memory: %s\n", redis_why(c, r));
	}
	if (r)
		freeReplyObject(r);
	return v;
}

/* @r is the reply to GET of @id: copy the value out.  0 or -1. */
static int redis_take(const struct redis_h *h, redisReply *r, uint64_t id, uint8_t *buf,
		      size_t *len)
{
	if (r && r->type == REDIS_REPLY_STRING && r->len <= CMP_VAL_MAX) {
		memcpy(buf, r->str, r->len);
		*len = r->len;
	} else if (r && r->type == REDIS_REPLY_NIL) {
		*len = SIZE_MAX;
	} else {
		if (r && r->type == REDIS_REPLY_STRING)
			fprintf(stderr, "%s: GET key %" PRIu64 ": value of %zu bytes\n", h->name,
				id, (size_t)r->len);
		else
			fprintf(stderr, "%s: GET key %" PRIu64 ": %s\n", h->name, id,
				redis_why(h->c, r));
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

/* Read @n replies to SET, each must be +OK.  0 or -1. */
static int redis_read_ok(redisContext *c, uint64_t first, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		void *r = NULL;
		if (redisGetReply(c, &r) != REDIS_OK || !redis_ok(r)) {
			fprintf(stderr, "redis: fill: SET key %" PRIu64 ": %s\n", first + i,
				redis_why(c, r));
			if (r)
				freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
	}
	return 0;
}

/*
 * SET every key, NET_CHUNK commands per write.  The commands are built as
 * RESP by hand (hiredis's format parser costs ~1.3 us per command, more
 * than the server's SET), and chunk i+1 is built and sent before the
 * replies of chunk i are read, so the server works while we build.
 */
static int redis_fill(struct srv *s)
{
	redisContext *c = s->ctl;
	if (!c || s->pid <= 0) {
		fprintf(stderr, "redis: fill without a server\n");
		return -1;
	}
	char mid[32]; /* between key and value */
	int midlen = snprintf(mid, sizeof(mid), "\r\n$%" PRIu32 "\r\n", s->value_size);
	static const char head[] = "*3\r\n$3\r\nSET\r\n$20\r\n";
	_Static_assert(CMP_KEY_LEN == 20, "head[] spells the key length");
	size_t per = sizeof(head) - 1 + CMP_KEY_LEN + (size_t)midlen + s->value_size + 2;
	char *buf = malloc(per * NET_CHUNK);
	if (!buf) {
		fprintf(stderr, "redis: fill: out of memory\n");
		return -1;
	}
	s->used0 = redis_used_memory(c);
	int rc = -1;
	uint64_t pending = 0, pending_first = 0;
	for (uint64_t base = 0; base < s->keys; base += NET_CHUNK) {
		uint64_t n = s->keys - base < NET_CHUNK ? s->keys - base : NET_CHUNK;
		char *p = buf;
		for (uint64_t id = base; id < base + n; id++) {
			memcpy(p, head, sizeof(head) - 1);
			p += sizeof(head) - 1;
			make_key(id, p);
			p += CMP_KEY_LEN;
			memcpy(p, mid, (size_t)midlen);
			p += midlen;
			cmp_value(id, (uint8_t *)p, s->value_size);
			p += s->value_size;
			memcpy(p, "\r\n", 2);
			p += 2;
		}
		if (redisAppendFormattedCommand(c, buf, (size_t)(p - buf)) != REDIS_OK) {
			fprintf(stderr, "redis: fill: %s\n", c->errstr);
			goto out;
		}
		int done = 0;
		while (!done) {
			if (redisBufferWrite(c, &done) != REDIS_OK) {
				fprintf(stderr, "redis: fill: write: %s\n", c->errstr);
				goto out;
			}
		}
		if (redis_read_ok(c, pending_first, pending) != 0)
			goto out;
		pending = n;
		pending_first = base;
	}
	if (redis_read_ok(c, pending_first, pending) != 0)
		goto out;
	redisReply *r = redisCommand(c, "DBSIZE");
	bool ok = r && r->type == REDIS_REPLY_INTEGER && (uint64_t)r->integer == s->keys;
	if (!ok) {
		if (r && r->type == REDIS_REPLY_INTEGER)
			fprintf(stderr, "redis: fill: DBSIZE %lld, expected %" PRIu64 "\n",
				r->integer, s->keys);
		else
			fprintf(stderr, "redis: fill: DBSIZE: %s\n", redis_why(c, r));
	}
	if (r)
		freeReplyObject(r);
	if (!ok)
		goto out;
	char key[CMP_KEY_LEN];
	for (uint64_t i = 0; i < NET_VERIFY && s->keys; i++) {
		uint64_t id = i * (s->keys - 1) / (NET_VERIFY - 1);
		make_key(id, key);
		r = redisCommand(c, "GET %b", key, (size_t)CMP_KEY_LEN);
		ok = r && r->type == REDIS_REPLY_STRING &&
		     cmp_value_ok(id, (const uint8_t *)r->str, r->len, s->value_size);
		if (!ok)
			fprintf(stderr, "redis: fill: key %" PRIu64 " reads back wrong (%s)\n", id,
				r && r->type == REDIS_REPLY_STRING ? "value" : redis_why(c, r));
		if (r)
			freeReplyObject(r);
		if (!ok)
			goto out;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

static uint64_t redis_mem(struct srv *s)
{
	if (!s->ctl)
		return 0;
	uint64_t now = redis_used_memory(s->ctl);
	return now > s->used0 ? now - s->used0 : 0;
}

static void *redis_attach(const struct srv *s)
{
	ignore_sigpipe();
	struct redis_h *h = calloc(1, sizeof(*h));
	if (!h) {
		fprintf(stderr, "%s: attach: out of memory\n", s->name);
		return NULL;
	}
	h->name = s->name;
	h->c = redis_connect(s->sock, false);
	if (!h->c) {
		free(h);
		return NULL;
	}
	return h;
}

/* redis: one GET round trip per key. */
static int redis_get(void *hp, const uint64_t *ids, unsigned n, uint8_t *const *bufs, size_t *lens)
{
	struct redis_h *h = hp;
	char key[CMP_KEY_LEN];
	for (unsigned i = 0; i < n; i++) {
		make_key(ids[i], key);
		redisReply *r = redisCommand(h->c, "GET %b", key, (size_t)CMP_KEY_LEN);
		if (redis_take(h, r, ids[i], bufs[i], &lens[i]) != 0)
			return -1;
	}
	return 0;
}

/* redis-pipe: n GETs written at once, then n replies read. */
static int redis_get_pipe(void *hp, const uint64_t *ids, unsigned n, uint8_t *const *bufs,
			  size_t *lens)
{
	struct redis_h *h = hp;
	char key[CMP_KEY_LEN];
	for (unsigned i = 0; i < n; i++) {
		make_key(ids[i], key);
		if (redisAppendCommand(h->c, "GET %b", key, (size_t)CMP_KEY_LEN) != REDIS_OK) {
			fprintf(stderr, "%s: GET: %s\n", h->name, h->c->errstr);
			return -1;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		void *r = NULL;
		if (redisGetReply(h->c, &r) != REDIS_OK) {
			fprintf(stderr, "%s: GET key %" PRIu64 ": %s\n", h->name, ids[i],
				redis_why(h->c, r));
			if (r)
				freeReplyObject(r);
			return -1;
		}
		if (redis_take(h, r, ids[i], bufs[i], &lens[i]) != 0)
			return -1;
	}
	return 0;
}

static int redis_set(void *hp, uint64_t id, const uint8_t *val, size_t vlen)
{
	struct redis_h *h = hp;
	char key[CMP_KEY_LEN];
	make_key(id, key);
	redisReply *r = redisCommand(h->c, "SET %b %b", key, (size_t)CMP_KEY_LEN, val, vlen);
	int rc = redis_ok(r) ? 0 : -1;
	if (rc)
		fprintf(stderr, "%s: SET key %" PRIu64 ": %s\n", h->name, id, redis_why(h->c, r));
	if (r)
		freeReplyObject(r);
	return rc;
}

static void redis_detach(void *hp)
{
	struct redis_h *h = hp;
	if (!h)
		return;
	redisFree(h->c);
	free(h);
}

/* ---------------------------------------------------------------------- */
/* memcached                                                              */

struct mc_h {
	memcached_st *m;
	memcached_result_st res; /* memcached-mget: reused for every result */
	bool res_init;
	const char *name;
};

/* memcached's "version" answered on @s->sock, 200 ms at most. */
static bool mc_ready(struct srv *s)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, s->sock, sizeof(a.sun_path));
	struct timeval tv = {.tv_usec = 200000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char buf[64];
	ssize_t n = -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    send(fd, "version\r\n", 9, MSG_NOSIGNAL) == 9)
		n = recv(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	return n >= 8 && !memcmp(buf, "VERSION ", 8);
}

static int mc_setup(struct srv *s, const struct cmp_case *c, char *why, size_t whylen)
{
	char path[PATH_MAX];
	if (srv_prepare(s, c, path, sizeof(path), why, whylen) != 0)
		return -1;
	double need = (double)c->keys * ((double)c->value_size + MC_ITEM_EXTRA) * 1.5;
	uint64_t mb = (uint64_t)(need / (1024.0 * 1024.0)) + 1;
	if (mb < MC_MIN_MB)
		mb = MC_MIN_MB;
	/*
	 * The hash table sized for the keys up front (memcached grows it when
	 * items > 1.5 x buckets, in a background thread that moves buckets
	 * while the fill runs: the fill of 1 M keys took 2x as long, and
	 * mem_bytes could catch both tables).  It is calloc()ed: its pages
	 * count in the RSS growth as the fill touches them.
	 */
	unsigned hp = 16; /* memcached's default and minimum */
	while (hp < 32 && (double)(UINT64_C(1) << hp) * 1.5 < (double)c->keys)
		hp++;
	char mbs[24], hps[24];
	snprintf(mbs, sizeof(mbs), "%" PRIu64, mb);
	snprintf(hps, sizeof(hps), "hashpower=%u", hp);
	/* memcached refuses to run as root without -u */
	char *argv[] = {path, "-s", s->sock, "-a", "0700", "-m", mbs,  "-t", "1",
			"-U", "0",  "-I",    "1m", "-o",   hps,	 NULL, NULL, NULL};
	if (geteuid() == 0) {
		argv[15] = "-u";
		argv[16] = "root";
	}
	if (srv_start(s, argv, mc_ready, why, whylen) != 0)
		return -1;
	s->rss0 = cmp_rss(s->pid);
	return 0;
}

/*
 * A client of @sock; NULL (and a line on stderr) on failure.  @noreply (the
 * fill): sets are buffered (written when libmemcached's buffer is full or
 * on memcached_flush_buffers()) and sent as "set ... noreply".
 */
static memcached_st *mc_client(const char *name, const char *sock, bool noreply)
{
	memcached_st *m = memcached_create(NULL);
	if (!m) {
		fprintf(stderr, "%s: memcached_create failed\n", name);
		return NULL;
	}
	memcached_return_t rc = memcached_server_add_unix_socket(m, sock);
	if (rc == MEMCACHED_SUCCESS)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NO_BLOCK, 0);
	if (rc == MEMCACHED_SUCCESS)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, CMP_MC_BINARY);
	if (rc == MEMCACHED_SUCCESS)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, NET_IO_MS);
	if (rc == MEMCACHED_SUCCESS)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, NET_IO_MS);
	if (rc == MEMCACHED_SUCCESS)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SND_TIMEOUT, NET_IO_MS * 1000);
	if (rc == MEMCACHED_SUCCESS)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, NET_IO_MS * 1000);
	/* (BUFFER_REQUESTS and BINARY_PROTOCOL close the connection: before
	 * connecting) */
	if (rc == MEMCACHED_SUCCESS && noreply)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
	/* connect now (libmemcached connects lazily): a failure shows here.
	 * Before NOREPLY: with it, the answer would be left unread. */
	if (rc == MEMCACHED_SUCCESS)
		rc = memcached_version(m);
	if (rc == MEMCACHED_SUCCESS && noreply)
		rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
	if (rc != MEMCACHED_SUCCESS) {
		fprintf(stderr, "%s: connect %s: %s\n", name, sock,
			memcached_last_error_message(m));
		memcached_free(m);
		return NULL;
	}
	return m;
}

/* memcached_get of @id into @buf/@len (SIZE_MAX: a miss).  0 or -1. */
static int mc_get_one(memcached_st *m, const char *name, uint64_t id, uint8_t *buf, size_t *len)
{
	char key[CMP_KEY_LEN];
	make_key(id, key);
	size_t vlen = 0;
	uint32_t flags;
	memcached_return_t rc;
	char *v = memcached_get(m, key, CMP_KEY_LEN, &vlen, &flags, &rc);
	if (v) {
		int ret = 0;
		if (vlen <= CMP_VAL_MAX) {
			memcpy(buf, v, vlen);
			*len = vlen;
		} else {
			fprintf(stderr, "%s: get key %" PRIu64 ": value of %zu bytes\n", name, id,
				vlen);
			ret = -1;
		}
		free(v);
		return ret;
	}
	if (rc == MEMCACHED_NOTFOUND) {
		*len = SIZE_MAX;
		return 0;
	}
	fprintf(stderr, "%s: get key %" PRIu64 ": %s\n", name, id, memcached_last_error_message(m));
	return -1;
}

static int mc_fill(struct srv *s)
{
	if (s->pid <= 0) {
		fprintf(stderr, "%s: fill without a server\n", s->name);
		return -1;
	}
	uint8_t *val = malloc(CMP_VAL_MAX > s->value_size ? CMP_VAL_MAX : s->value_size);
	memcached_st *m = val ? mc_client(s->name, s->sock, true) : NULL;
	memcached_st *chk = NULL;
	memcached_stat_st *st = NULL;
	int ret = -1;
	if (!m)
		goto out;
	char key[CMP_KEY_LEN];
	memcached_return_t rc;
	for (uint64_t id = 0; id < s->keys; id++) {
		make_key(id, key);
		cmp_value(id, val, s->value_size);
		rc = memcached_set(m, key, CMP_KEY_LEN, (const char *)val, s->value_size, 0, 0);
		if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_BUFFERED) {
			fprintf(stderr, "%s: fill: set key %" PRIu64 ": %s\n", s->name, id,
				memcached_last_error_message(m));
			goto out;
		}
		if ((id + 1) % NET_CHUNK == 0 || id + 1 == s->keys) {
			rc = memcached_flush_buffers(m);
			if (rc != MEMCACHED_SUCCESS) {
				fprintf(stderr, "%s: fill: flush: %s\n", s->name,
					memcached_last_error_message(m));
				goto out;
			}
		}
	}
	/* a round trip on the same connection: every set before it is done */
	rc = memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 0);
	size_t len;
	if (rc != MEMCACHED_SUCCESS || mc_get_one(m, s->name, 0, val, &len) != 0)
		goto out;
	chk = mc_client(s->name, s->sock, false);
	if (!chk)
		goto out;
	st = memcached_stat(chk, NULL, &rc);
	if (!st || rc != MEMCACHED_SUCCESS) {
		fprintf(stderr, "%s: fill: stats: %s\n", s->name,
			memcached_last_error_message(chk));
		goto out;
	}
	if (st->curr_items != s->keys || st->evictions) {
		fprintf(stderr,
			"%s: fill: %lu items of %" PRIu64 " stored, %llu evictions (-m %llu MB)\n",
			s->name, st->curr_items, s->keys, st->evictions, st->limit_maxbytes >> 20);
		goto out;
	}
	for (uint64_t i = 0; i < NET_VERIFY && s->keys; i++) {
		uint64_t id = i * (s->keys - 1) / (NET_VERIFY - 1);
		if (mc_get_one(chk, s->name, id, val, &len) != 0)
			goto out;
		if (len == SIZE_MAX || !cmp_value_ok(id, val, len, s->value_size)) {
			fprintf(stderr, "%s: fill: key %" PRIu64 " reads back %s\n", s->name, id,
				len == SIZE_MAX ? "missing" : "wrong");
			goto out;
		}
	}
	ret = 0;
out:
	if (!val)
		fprintf(stderr, "%s: fill: out of memory\n", s->name);
	if (st)
		memcached_stat_free(chk, st);
	if (chk)
		memcached_free(chk);
	if (m)
		memcached_free(m);
	free(val);
	return ret;
}

static uint64_t mc_mem(struct srv *s)
{
	if (s->pid <= 0 || !s->rss0)
		return 0;
	uint64_t now = cmp_rss(s->pid);
	return now > s->rss0 ? now - s->rss0 : 0;
}

static void *mc_attach(const struct srv *s)
{
	ignore_sigpipe();
	struct mc_h *h = calloc(1, sizeof(*h));
	if (!h) {
		fprintf(stderr, "%s: attach: out of memory\n", s->name);
		return NULL;
	}
	h->name = s->name;
	h->m = mc_client(s->name, s->sock, false);
	if (!h->m) {
		free(h);
		return NULL;
	}
	if (!memcached_result_create(h->m, &h->res)) {
		fprintf(stderr, "%s: attach: memcached_result_create failed\n", s->name);
		memcached_free(h->m);
		free(h);
		return NULL;
	}
	h->res_init = true;
	return h;
}

/* memcached: memcached_get per key. */
static int mc_get(void *hp, const uint64_t *ids, unsigned n, uint8_t *const *bufs, size_t *lens)
{
	struct mc_h *h = hp;
	for (unsigned i = 0; i < n; i++) {
		if (mc_get_one(h->m, h->name, ids[i], bufs[i], &lens[i]) != 0)
			return -1;
	}
	return 0;
}

/* memcached-mget: one multi-get, results matched to the ids by key. */
static int mc_get_multi(void *hp, const uint64_t *ids, unsigned n, uint8_t *const *bufs,
			size_t *lens)
{
	struct mc_h *h = hp;
	char keys[CMP_BATCH_MAX][CMP_KEY_LEN];
	const char *kp[CMP_BATCH_MAX];
	size_t kl[CMP_BATCH_MAX];
	if (n > CMP_BATCH_MAX) {
		fprintf(stderr, "%s: get of %u keys\n", h->name, n);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		make_key(ids[i], keys[i]);
		kp[i] = keys[i];
		kl[i] = CMP_KEY_LEN;
		lens[i] = SIZE_MAX;
	}
	memcached_return_t rc = memcached_mget(h->m, kp, kl, n);
	if (rc != MEMCACHED_SUCCESS) {
		fprintf(stderr, "%s: mget: %s\n", h->name, memcached_last_error_message(h->m));
		return -1;
	}
	int ret = 0;
	memcached_result_st *r;
	while ((r = memcached_fetch_result(h->m, &h->res, &rc))) {
		const char *k = memcached_result_key_value(r);
		size_t vlen = memcached_result_length(r);
		if (memcached_result_key_length(r) != CMP_KEY_LEN)
			continue;
		/* every unfilled request of this key (an id may repeat) */
		for (unsigned i = 0; i < n; i++) {
			if (lens[i] != SIZE_MAX || memcmp(keys[i], k, CMP_KEY_LEN))
				continue;
			if (vlen > CMP_VAL_MAX) {
				if (!ret)
					fprintf(stderr,
						"%s: mget key %" PRIu64 ": value of %zu bytes\n",
						h->name, ids[i], vlen);
				ret = -1; /* read the rest: the connection stays usable */
				break;
			}
			memcpy(bufs[i], memcached_result_value(r), vlen);
			lens[i] = vlen;
		}
	}
	if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_SUCCESS) {
		fprintf(stderr, "%s: fetch: %s\n", h->name, memcached_last_error_message(h->m));
		return -1;
	}
	return ret;
}

static int mc_set(void *hp, uint64_t id, const uint8_t *val, size_t vlen)
{
	struct mc_h *h = hp;
	char key[CMP_KEY_LEN];
	make_key(id, key);
	memcached_return_t rc =
		memcached_set(h->m, key, CMP_KEY_LEN, (const char *)val, vlen, 0, 0);
	if (rc != MEMCACHED_SUCCESS) {
		fprintf(stderr, "%s: set key %" PRIu64 ": %s\n", h->name, id,
			memcached_last_error_message(h->m));
		return -1;
	}
	return 0;
}

static void mc_detach(void *hp)
{
	struct mc_h *h = hp;
	if (!h)
		return;
	if (h->res_init)
		memcached_result_free(&h->res);
	memcached_free(h->m);
	free(h);
}

/* ---------------------------------------------------------------------- */
/* the four systems                                                       */

/* The parent's hooks and attach() of a system: its own server @srvv. */
#define NET_SYS_FNS(pfx, srvv, kind)                                                \
	static int pfx##_setup_(const struct cmp_case *c, char *why, size_t whylen) \
	{                                                                           \
		return kind##_setup(&srvv, c, why, whylen);                         \
	}                                                                           \
	static int pfx##_fill_(const struct cmp_case *c)                            \
	{                                                                           \
		(void)c;                                                            \
		return kind##_fill(&srvv);                                          \
	}                                                                           \
	static uint64_t pfx##_mem_(void)                                            \
	{                                                                           \
		return kind##_mem(&srvv);                                           \
	}                                                                           \
	static void pfx##_teardown_(void)                                           \
	{                                                                           \
		srv_stop(&srvv, NET_STOP_MS);                                       \
	}                                                                           \
	static void *pfx##_attach_(const struct cmp_case *c, unsigned proc)         \
	{                                                                           \
		(void)c;                                                            \
		(void)proc;                                                         \
		return kind##_attach(&srvv);                                        \
	}

NET_SYS_FNS(rd, srv_redis, redis)
NET_SYS_FNS(rp, srv_redis_pipe, redis)
NET_SYS_FNS(mc, srv_mc, mc)
NET_SYS_FNS(mm, srv_mc_mget, mc)

const struct cmp_sys cmp_redis = {
	.name = "redis",
	.what = "Redis (private, unix socket) via hiredis: one GET round trip per key",
	.batch = 1,
	.setup = rd_setup_,
	.fill = rd_fill_,
	.mem_bytes = rd_mem_,
	.teardown = rd_teardown_,
	.attach = rd_attach_,
	.get = redis_get,
	.set = redis_set,
	.detach = redis_detach,
};

const struct cmp_sys cmp_redis_pipe = {
	.name = "redis-pipe",
	.what = "Redis via hiredis: the call's GETs pipelined, one round trip per call",
	.batch = CMP_BATCH_MAX,
	.setup = rp_setup_,
	.fill = rp_fill_,
	.mem_bytes = rp_mem_,
	.teardown = rp_teardown_,
	.attach = rp_attach_,
	.get = redis_get_pipe,
	.set = redis_set,
	.detach = redis_detach,
};

const struct cmp_sys cmp_memcached = {
	.name = "memcached",
	.what = "memcached (private, unix socket) via libmemcached: memcached_get per key",
	.batch = 1,
	.setup = mc_setup_,
	.fill = mc_fill_,
	.mem_bytes = mc_mem_,
	.teardown = mc_teardown_,
	.attach = mc_attach_,
	.get = mc_get,
	.set = mc_set,
	.detach = mc_detach,
};

const struct cmp_sys cmp_memcached_mget = {
	.name = "memcached-mget",
	.what = "memcached via libmemcached: memcached_mget of the call's keys, fetch_result loop",
	.batch = CMP_BATCH_MAX,
	.setup = mm_setup_,
	.fill = mm_fill_,
	.mem_bytes = mm_mem_,
	.teardown = mm_teardown_,
	.attach = mm_attach_,
	.get = mc_get_multi,
	.set = mc_set,
	.detach = mc_detach,
};
