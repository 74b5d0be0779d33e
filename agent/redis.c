/*
 * redis.c - one Redis connection that comes back by itself, and pipelined exchanges on it
 * that never wait long.
 *
 * hiredis 0.14's synchronous context is used, but its blocking reads are not: a blocking
 * redisGetReply waits up to the socket timeout for every read, so a Redis that trickles
 * bytes could hold the agent far longer than any one timeout.  Instead every wait is a
 * poll() on the context's socket, with a slice of at most 50 ms (after which the owner's
 * tick runs: the main thread's heartbeat), and the data is moved with the context's own
 * buffer functions (redisBufferWrite, redisBufferRead, redisGetReplyFromReader).  An
 * exchange fails when Redis makes no progress for 200 ms or the whole exchange passes a
 * second.  The socket timeout (redisSetTimeout, 200 ms) remains as a backstop for the one
 * call that may still block, a write larger than the socket buffer.
 *
 * Connect: TCP or unix with a 200 ms timeout, then AUTH, SELECT and a PING in one round
 * trip, so a wrong password or database is found at connect time with Redis's own message
 * instead of as a stream of failing commands.  Host names are resolved by getaddrinfo(),
 * which may block on a dead resolver; give an address or a name in /etc/hosts.
 *
 * Reconnects: any I/O error, protocol error or timeout frees the context.  The next attempt
 * is not made before a backoff that starts at 50 ms and doubles up to 2 s, each delay
 * drawn in [d/2, d] so that the agents of many hosts do not reconnect in step after a
 * Redis restart.  Nobody sleeps for the backoff: redis_link_ready() just answers false
 * until it has run out, and the main loop answers L2 lookups with HC_L2_ERROR meanwhile.
 * Both links (the L2 pipeline and the subscriber) count HC_AG_RECONNECTS; only the L2
 * link's state is reported with hc_agent_state, as that is the one workers depend on.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define CONNECT_TIMEOUT_MS 200
#define SOCKET_TIMEOUT_MS 200
#define IDLE_TIMEOUT_NS (200 * 1000000ull)  /* no progress this long: Redis is stuck */
#define EXCHANGE_MAX_NS (1000 * 1000000ull) /* one exchange never takes longer */
#define POLL_SLICE_MS 50		    /* the owner's tick runs at least this often */
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 2000u
#define NS_PER_MS 1000000ull

const char *redis_reply_kind(const redisReply *r)
{
	if (!r)
		return "no reply";
	switch (r->type) {
	case REDIS_REPLY_STRING:
		return "string";
	case REDIS_REPLY_ARRAY:
		return "array";
	case REDIS_REPLY_INTEGER:
		return "integer";
	case REDIS_REPLY_NIL:
		return "nil";
	case REDIS_REPLY_STATUS:
		return "status";
	case REDIS_REPLY_ERROR:
		return "error";
	}
	return "unknown";
}

void redis_link_init(struct redis_link *l, const char *who, struct hc_cache *cache,
		     bool report_state)
{
	memset(l, 0, sizeof(*l));
	l->who = who;
	l->cache = cache;
	l->report_state = report_state;
	l->backoff_ms = BACKOFF_MIN_MS;
	l->rng = (unsigned int)(agent_now_ns() ^ ((uint64_t)getpid() << 16));
}

static void tick(struct redis_link *l)
{
	if (l->tick)
		l->tick(l->tick_ctx);
}

static void set_state(struct redis_link *l, enum hc_redis_state st)
{
	if (l->report_state && l->cache)
		hc_agent_state(l->cache, st);
}

/* Schedule the next attempt: the current delay with jitter, then double it. */
static void back_off(struct redis_link *l)
{
	uint32_t d = l->backoff_ms;
	uint32_t delay = d / 2 + (uint32_t)rand_r(&l->rng) % (d / 2 + 1);

	l->next_attempt_ns = agent_now_ns() + delay * NS_PER_MS;
	l->backoff_ms = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
}

/* A failed attempt or a lost connection: log the first of an outage, then only debug. */
static void note_down(struct redis_link *l, const char *what, const char *why)
{
	if (!l->down_logged)
		log_warn("%s: %s Redis at %s: %s; retrying with backoff", l->who, what,
			 agent_conf.redis_desc, why);
	else
		log_debug("%s: %s Redis at %s: %s", l->who, what, agent_conf.redis_desc, why);
	l->down_logged = true;
	set_state(l, HC_REDIS_DOWN);
	back_off(l);
}

void redis_link_drop(struct redis_link *l, const char *why)
{
	char text[128];

	/* @why may be the context's own errstr: copy it before the context goes. */
	snprintf(text, sizeof(text), "%s", why && why[0] ? why : "I/O error");
	if (l->ctx) {
		redisFree(l->ctx);
		l->ctx = NULL;
	}
	note_down(l, "lost connection to", text);
}

void redis_link_close(struct redis_link *l)
{
	if (l->ctx) {
		redisFree(l->ctx);
		l->ctx = NULL;
	}
}

/* ---------------------------------------------------------------------- */
/* Exchanges                                                                */

/* Move replies hiredis has already parsed into @replies.  False on a protocol error. */
static bool pull_buffered(struct redis_link *l, redisReply **replies, uint64_t *reply_ns, size_t n,
			  size_t *got)
{
	while (*got < n) {
		void *r = NULL;

		if (redisGetReplyFromReader(l->ctx, &r) != REDIS_OK)
			return false;
		if (!r)
			break;
		replies[*got] = r;
		if (reply_ns)
			reply_ns[*got] = agent_now_ns();
		(*got)++;
	}
	return true;
}

/* One poll() slice; moves bytes both ways.  Returns false (and drops) on failure. */
static bool exchange_step(struct redis_link *l, bool *writing, uint64_t *progress_ns)
{
	struct pollfd p = {.fd = l->ctx->fd, .events = POLLIN | (*writing ? POLLOUT : 0)};
	int rc = poll(&p, 1, POLL_SLICE_MS);

	tick(l);
	if (rc < 0) {
		if (errno == EINTR)
			return true;
		redis_link_drop(l, strerror(errno));
		return false;
	}
	if (rc == 0)
		return true;
	if (*writing && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
		int done = 0;

		if (redisBufferWrite(l->ctx, &done) != REDIS_OK)
			return false;
		*writing = !done;
		*progress_ns = agent_now_ns();
	}
	if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
		if (redisBufferRead(l->ctx) != REDIS_OK)
			return false;
		*progress_ns = agent_now_ns();
	}
	return true;
}

size_t redis_link_exchange(struct redis_link *l, redisReply **replies, uint64_t *reply_ns, size_t n)
{
	uint64_t start = agent_now_ns(), progress = start, now;
	bool writing = true;
	size_t got = 0;

	memset(replies, 0, n * sizeof(*replies));
	if (!l->ctx)
		return 0;
	for (;;) {
		if (!pull_buffered(l, replies, reply_ns, n, &got)) {
			redis_link_drop(l, l->ctx->errstr[0] ? l->ctx->errstr : "protocol error");
			break;
		}
		if (got == n)
			break;
		now = agent_now_ns();
		if (now - progress > IDLE_TIMEOUT_NS || now - start > EXCHANGE_MAX_NS) {
			redis_link_drop(l, now - progress > IDLE_TIMEOUT_NS
						   ? "no answer within 200 ms"
						   : "exchange took over a second");
			break;
		}
		if (!exchange_step(l, &writing, &progress)) {
			/* Replies that arrived before the error are still good. */
			if (l->ctx) {
				char why[128];

				snprintf(why, sizeof(why), "%s", l->ctx->errstr);
				pull_buffered(l, replies, reply_ns, n, &got);
				redis_link_drop(l, why[0] ? why : "I/O error");
			}
			break;
		}
	}
	return got;
}

int redis_link_read(struct redis_link *l, redisReply **out, int timeout_ms)
{
	struct pollfd p;
	size_t got = 0;
	int rc;

	*out = NULL;
	if (!l->ctx)
		return -1;
	if (!pull_buffered(l, out, NULL, 1, &got))
		goto lost;
	if (got)
		return 1;
	p = (struct pollfd){.fd = l->ctx->fd, .events = POLLIN};
	rc = poll(&p, 1, timeout_ms);
	if (rc < 0 && errno != EINTR) {
		redis_link_drop(l, strerror(errno));
		return -1;
	}
	if (rc <= 0)
		return 0;
	if (redisBufferRead(l->ctx) != REDIS_OK || !pull_buffered(l, out, NULL, 1, &got))
		goto lost;
	return got ? 1 : 0;
lost:
	redis_link_drop(l, l->ctx->errstr[0] ? l->ctx->errstr : "I/O error");
	return -1;
}

void redis_link_idle_check(struct redis_link *l)
{
	struct pollfd p;
	redisReply *r = NULL;
	size_t got = 0;

	if (!l->ctx)
		return;
	p = (struct pollfd){.fd = l->ctx->fd, .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return;
	if (redisBufferRead(l->ctx) != REDIS_OK) {
		redis_link_drop(l, l->ctx->errstr[0] ? l->ctx->errstr : "I/O error");
		return;
	}
	/* Nothing was asked, so anything that came is out of step with our requests. */
	if (!pull_buffered(l, &r, NULL, 1, &got) || got) {
		if (r)
			freeReplyObject(r);
		redis_link_drop(l, "unexpected data on an idle connection");
	}
}

/* ---------------------------------------------------------------------- */
/* Connecting                                                               */

static redisContext *open_transport(void)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = CONNECT_TIMEOUT_MS * 1000};

	if (agent_conf.transport == REDIS_TRANSPORT_UNIX)
		return redisConnectUnixWithTimeout(agent_conf.path, tv);
	return redisConnectWithTimeout(agent_conf.host, agent_conf.port, tv);
}

/* Check one handshake reply; on failure write Redis's words into @why. */
static bool handshake_ok(const char *cmd, const redisReply *r, char *why, size_t cap)
{
	if (r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING))
		return true;
	if (r && r->type == REDIS_REPLY_ERROR)
		snprintf(why, cap, "%s refused: %.*s", cmd, (int)(r->len > 200 ? 200 : r->len),
			 r->str);
	else
		snprintf(why, cap, "%s: unexpected %s reply", cmd, redis_reply_kind(r));
	return false;
}

/* AUTH, SELECT and PING in one round trip.  Returns false with @why set. */
static bool handshake(struct redis_link *l, char *why, size_t cap)
{
	const char *cmds[3];
	redisReply *replies[3];
	size_t n = 0, got;
	bool ok = true;

	if (agent_conf.password) {
		redisAppendCommand(l->ctx, "AUTH %s", agent_conf.password);
		cmds[n++] = "AUTH";
	}
	if (agent_conf.db) {
		redisAppendCommand(l->ctx, "SELECT %d", agent_conf.db);
		cmds[n++] = "SELECT";
	}
	redisAppendCommand(l->ctx, "PING");
	cmds[n++] = "PING";
	got = redis_link_exchange(l, replies, NULL, n);
	for (size_t i = 0; i < got; i++) {
		if (ok && !handshake_ok(cmds[i], replies[i], why, cap))
			ok = false;
		freeReplyObject(replies[i]);
	}
	if (!ok && !agent_conf.password && strstr(why, "NOAUTH"))
		snprintf(why, cap,
			 "Redis wants a password: give it in HOSTCACHE_REDIS_PASSWORD "
			 "or --password-file");
	if (ok && got < n) {
		snprintf(why, cap, "no answer to the handshake");
		ok = false;
	}
	return ok;
}

static void connected(struct redis_link *l)
{
	if (l->ever_connected) {
		hc_agent_count(l->cache, HC_AG_RECONNECTS, 1);
		log_info("%s: reconnected to Redis at %s", l->who, agent_conf.redis_desc);
	} else {
		log_info("%s: connected to Redis at %s", l->who, agent_conf.redis_desc);
	}
	l->ever_connected = true;
	l->connects++;
	l->down_logged = false;
	l->backoff_ms = BACKOFF_MIN_MS;
	set_state(l, HC_REDIS_UP);
}

static bool try_connect(struct redis_link *l)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = SOCKET_TIMEOUT_MS * 1000};
	char why[256];

	tick(l);
	l->ctx = open_transport();
	tick(l);
	if (!l->ctx) {
		note_down(l, "cannot connect to", "out of memory");
		return false;
	}
	if (l->ctx->err) {
		snprintf(why, sizeof(why), "%s", l->ctx->errstr);
		redis_link_close(l);
		note_down(l, "cannot connect to", why);
		return false;
	}
	redisSetTimeout(l->ctx, tv);
	if (agent_conf.transport == REDIS_TRANSPORT_TCP)
		redisEnableKeepAlive(l->ctx);
	why[0] = '\0';
	if (!handshake(l, why, sizeof(why))) {
		/* A failed exchange has already dropped the link and backed off. */
		if (l->ctx) {
			redis_link_close(l);
			note_down(l, "cannot use", why);
		}
		return false;
	}
	connected(l);
	return true;
}

bool redis_link_ready(struct redis_link *l)
{
	if (l->ctx)
		return true;
	if (agent_now_ns() < l->next_attempt_ns)
		return false;
	return try_connect(l);
}
