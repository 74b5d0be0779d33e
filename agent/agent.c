/*
 * agent.c - hostcache-agent: the host's one Redis client.
 *
 * The main thread loops: beat the heartbeat (every 100 ms) and run maintenance (every
 * --maintain-ms), take up to 512 requests from the segment's ring (waiting on its doorbell
 * up to the next heartbeat), and send the whole batch to Redis as ONE pipeline, so all the
 * L2 traffic of every worker that arrived together costs one round trip:
 *
 *   HC_REQ_GET          GET k, PTTL k  -> hc_agent_answer(HIT with the TTL left, or MISS)
 *   HC_REQ_SET          SET k v PX ttl, v being the key's value in L1 now (skipped if gone)
 *   HC_REQ_SET_THROUGH  the same; if it fails, DEL k so that L2 holds no stale value
 *   HC_REQ_DEL          DEL k
 *   HC_REQ_INVALIDATE   DEL k, PUBLISH channel {"key":k,"source":our id}
 *
 * Redis down or slow never stops the loop (redis.c bounds every wait): L2 lookups are
 * answered HC_L2_ERROR at once while disconnected, so their owners go to the origin, and
 * the heartbeat keeps beating, so workers keep queueing rather than deciding the agent
 * is dead.
 *
 * Deletes that could not reach Redis (a DEL, an invalidation, the cleanup of a failed
 * write-through) are not forgotten: they wait in a bounded backlog, de-duplicated by key,
 * and go first in the first pipeline after a reconnect.  A value this host changed must
 * not stay readable, stale, in L2 for other hosts for its whole TTL because Redis blinked.
 * Only deletes are kept: a lost SET merely leaves L2 without the value.
 *
 * An L2 hit is stored in L1 only if no invalidation of its key was applied while the GET
 * was in flight (the read/invalidate race: see tracking.c); otherwise it is answered as a
 * miss.  With --tracking, the L2 connection also carries CLIENT TRACKING, re-issued after
 * every reconnect of either connection (tracking.c).
 *
 * Threads: this one, and the invalidation subscriber (invalidate.c), which has its own
 * connection.  Signals are taken here only; the handler sets agent_stop, which both loops
 * check at least every 100 ms.  With --http, the HTTP dashboard (dashboard/http.c) adds its
 * own threads, libmicrohttpd's and a sampler, over this process's read-write handle, so its
 * flush and invalidate endpoints act directly; it starts once the agent has begun and stops
 * first at shutdown, before the last requests are drained.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "http.h"

#define MAX_BATCH 512			     /* requests taken from the ring at once */
#define BACKLOG_MAX 1024		     /* deletes kept while Redis is unreachable */
#define MAX_OPS (MAX_BATCH + BACKLOG_MAX)    /* operations in one pipeline */
#define MAX_CMDS (2 * MAX_OPS)		     /* at most two commands per operation */
#define HEARTBEAT_NS (100 * 1000000ull)	     /* the library wants one every 250 ms */
#define MAINTAIN_BUDGET 20000		     /* blocks examined per maintenance round */
#define DRAIN_ROUNDS 8			     /* batches served after hc_agent_end */
#define WARN_INTERVAL_NS (1000 * 1000000ull) /* repeated warnings: one a second */
#define NS_PER_MS 1000000ull

atomic_int agent_stop;

/* ---------------------------------------------------------------------- */
/* Logging and time                                                         */

uint64_t agent_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void agent_log(int level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;
	int len;

	if (level > agent_conf.log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s: ", ts.tv_nsec / 1000000,
			      names[level < 0	? 0
				    : level > 3 ? 3
						: level]);
	va_start(ap, fmt);
	len = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (len < 0)
		len = 0;
	n = n + (size_t)len < sizeof(line) - 1 ? n + (size_t)len : sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line, so the two threads' lines never interleave. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

void agent_escape(const void *data, size_t len, size_t max, char *out, size_t cap)
{
	const unsigned char *p = data;
	size_t o = 0;

	for (size_t i = 0; i < len && i < max && o + 5 < cap; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			out[o++] = (char)p[i];
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
	}
	if (len > max && o + 4 <= cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

bool log_limit_pass(struct log_limit *ll, uint64_t interval_ns, uint64_t *skipped)
{
	uint64_t now = agent_now_ns();

	if (ll->last_ns && now - ll->last_ns < interval_ns) {
		ll->suppressed++;
		return false;
	}
	*skipped = ll->suppressed;
	ll->suppressed = 0;
	ll->last_ns = now;
	return true;
}

static void lib_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	agent_log(level, "libhostcache: %s", msg);
}

/* ---------------------------------------------------------------------- */
/* State                                                                    */

/* One operation of a pipeline: a request from the ring or a delete from the backlog. */
enum op_state {
	OP_UNSENT,  /* not sent: Redis unreachable, or the pipeline could not be built */
	OP_SENT,    /* its commands are in the pipeline */
	OP_SKIPPED, /* nothing to send (a SET whose key left L1) */
};

struct batch_op {
	const struct hc_request *req;
	enum op_state state;
	size_t first;	/* index of its first reply */
	bool published; /* HC_REQ_INVALIDATE: a PUBLISH follows the DEL */
	uint64_t guard; /* HC_REQ_GET: inv_guard_snapshot of the key when sent */
};

struct agent {
	struct hc_cache *cache;
	uint32_t max_value; /* larger L2 values cannot enter L1: answered as misses */
	struct redis_link l2;
	struct hc_request *reqs;    /* [MAX_BATCH] taken from the ring */
	struct hc_request *replay;  /* [BACKLOG_MAX] backlog being sent */
	struct hc_request *backlog; /* [BACKLOG_MAX] deletes waiting for Redis */
	size_t nbacklog;
	uint64_t backlog_lost; /* deletes dropped because the backlog was full */
	struct batch_op *ops;  /* [MAX_OPS] */
	size_t nops;
	redisReply **replies; /* [MAX_CMDS] */
	uint64_t *reply_ns;   /* [MAX_CMDS] */
	size_t ncmds;
	uint64_t sent_ns; /* when the pipeline started */
	char *keybuf;	  /* prefix + key */
	bool beating;	  /* between hc_agent_begin and hc_agent_end */
	uint64_t next_beat_ns, next_maintain_ns;
	int64_t maintain_err; /* last error of hc_maintain, logged once */
	struct log_limit reply_log;
	struct dash_http *http; /* --http: the dashboard, NULL when off */
};

/* ---------------------------------------------------------------------- */
/* Heartbeat and maintenance                                                */

static void heartbeat_if_due(void *arg)
{
	struct agent *ag = arg;
	uint64_t now;

	if (!ag->beating)
		return;
	now = agent_now_ns();
	if (now < ag->next_beat_ns)
		return;
	hc_agent_heartbeat(ag->cache);
	ag->next_beat_ns = now + HEARTBEAT_NS;
}

static void maintain_if_due(struct agent *ag)
{
	uint64_t now = agent_now_ns();
	int64_t rc;

	if (now < ag->next_maintain_ns)
		return;
	rc = hc_maintain(ag->cache, MAINTAIN_BUDGET);
	if (rc < 0 && rc != ag->maintain_err)
		log_warn("maintenance failed: %s", hc_strerror((int)rc));
	else if (rc > 0)
		log_debug("maintenance expired %lld entries", (long long)rc);
	ag->maintain_err = rc < 0 ? rc : 0;
	ag->next_maintain_ns = agent_now_ns() + agent_conf.maintain_ms * NS_PER_MS;
}

/* How long the ring may be waited on: until the next heartbeat or maintenance. */
static int take_timeout_ms(const struct agent *ag)
{
	uint64_t now = agent_now_ns();
	uint64_t next =
		ag->next_beat_ns < ag->next_maintain_ns ? ag->next_beat_ns : ag->next_maintain_ns;

	if (next <= now)
		return 0;
	return (int)((next - now + NS_PER_MS - 1) / NS_PER_MS);
}

/* ---------------------------------------------------------------------- */
/* The backlog of deletes                                                   */

static bool same_key(const struct hc_request *a, const struct hc_request *b)
{
	return a->klen == b->klen && !memcmp(a->key, b->key, a->klen);
}

/* Keep a delete (@op: HC_REQ_DEL or HC_REQ_INVALIDATE) of @r's key for after a reconnect. */
static void backlog_add(struct agent *ag, const struct hc_request *r, uint32_t op)
{
	struct hc_request *e;

	for (size_t i = 0; i < ag->nbacklog; i++) {
		if (same_key(&ag->backlog[i], r)) {
			if (op == HC_REQ_INVALIDATE)
				ag->backlog[i].op = op;
			return;
		}
	}
	if (ag->nbacklog == BACKLOG_MAX) {
		if (ag->backlog_lost++ == 0)
			log_warn("l2: backlog of deletes full (%d): further deletes are lost, and "
				 "L2 may serve their keys' old values until their TTL",
				 BACKLOG_MAX);
		return;
	}
	e = &ag->backlog[ag->nbacklog++];
	*e = *r;
	e->op = op;
	e->ttl_ms = 0;
	e->token = 0;
}

/* Move the backlog into the pipeline being built; failures will put entries back. */
static size_t backlog_take(struct agent *ag)
{
	size_t n = ag->nbacklog;

	if (n) {
		memcpy(ag->replay, ag->backlog, n * sizeof(*ag->backlog));
		ag->nbacklog = 0;
		log_debug("l2: sending %zu deletes kept from earlier failures", n);
	}
	if (ag->backlog_lost) {
		log_warn("l2: %llu deletes were lost while Redis was unreachable (backlog full)",
			 (unsigned long long)ag->backlog_lost);
		ag->backlog_lost = 0;
	}
	return n;
}

/* ---------------------------------------------------------------------- */
/* Building the pipeline                                                    */

static const char *redis_key(struct agent *ag, const struct hc_request *r, size_t *len)
{
	memcpy(ag->keybuf, agent_conf.prefix, agent_conf.prefix_len);
	memcpy(ag->keybuf + agent_conf.prefix_len, r->key, r->klen);
	*len = agent_conf.prefix_len + r->klen;
	return ag->keybuf;
}

static bool append(struct agent *ag, int argc, const char **argv, const size_t *argvlen)
{
	if (redisAppendCommandArgv(ag->l2.ctx, argc, argv, argvlen) != REDIS_OK)
		return false;
	ag->ncmds++;
	return true;
}

/* A command of the form "CMD key". */
static bool append_key_cmd(struct agent *ag, const char *cmd, const struct hc_request *r)
{
	const char *argv[2] = {cmd};
	size_t argvlen[2] = {strlen(cmd)};

	argv[1] = redis_key(ag, r, &argvlen[1]);
	return append(ag, 2, argv, argvlen);
}

/*
 * The TTL to give a value in L2: what it has left in L1 (the value we send is the one in
 * L1 now, possibly newer than the request), else the request's, else --l2-ttl.
 */
static uint32_t l2_ttl_ms(const struct hc_request *r, const struct hc_meta *m)
{
	if (m->ttl_left_ms != INT64_MAX && m->ttl_left_ms > 0)
		return m->ttl_left_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)m->ttl_left_ms;
	if (r->ttl_ms)
		return r->ttl_ms;
	return agent_conf.l2_ttl_ms;
}

/* SET prefix+key <the key's value in L1> [PX ttl]; skipped if the key is gone from L1. */
static bool append_set(struct agent *ag, struct batch_op *op)
{
	const struct hc_request *r = op->req;
	const char *argv[5] = {"SET"};
	size_t argvlen[5] = {3};
	char ttl[16];
	struct hc_view v;
	uint32_t ttl_ms;
	bool ok;
	int rc = hc_view_get(ag->cache, r->key, r->klen, &v);

	if (rc < 0 || (v.meta.flags & HC_ENTRY_NEGATIVE)) {
		if (rc == 0)
			hc_view_release(ag->cache, &v);
		else if (rc != HC_E_NOTFOUND)
			log_warn("l2: reading a key from L1 for SET failed: %s", hc_strerror(rc));
		op->state = OP_SKIPPED;
		return true;
	}
	ttl_ms = l2_ttl_ms(r, &v.meta);
	argv[1] = redis_key(ag, r, &argvlen[1]);
	argv[2] = v.data;
	argvlen[2] = v.len;
	argv[3] = "PX";
	argvlen[3] = 2;
	argvlen[4] = (size_t)snprintf(ttl, sizeof(ttl), "%u", ttl_ms);
	argv[4] = ttl;
	/* The command is copied into the output buffer: the view can go at once. */
	ok = append(ag, ttl_ms ? 5 : 3, argv, argvlen);
	hc_view_release(ag->cache, &v);
	return ok;
}

static bool has_control(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return true;
	return false;
}

/*
 * The event for an invalidation: {"key":k,"source":id}.  A key that is not UTF-8 cannot
 * be a JSON string; it is published raw instead, which subscribers take as a plain key
 * (it cannot parse as JSON).  NULL when neither works (then no event is sent).
 */
static char *invalidation_event(const struct hc_request *r, size_t *len)
{
	json_t *key = json_stringn(r->key, r->klen), *ev;
	char *msg;

	if (!key) {
		if (has_control(r->key, r->klen) || !(msg = malloc(r->klen)))
			return NULL;
		memcpy(msg, r->key, r->klen);
		*len = r->klen;
		return msg;
	}
	ev = json_object();
	if (!ev || json_object_set_new(ev, "key", key) ||
	    json_object_set_new(ev, "source", json_stringn(agent_conf.id, strlen(agent_conf.id)))) {
		json_decref(ev);
		return NULL;
	}
	msg = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(ev);
	if (msg)
		*len = strlen(msg);
	return msg;
}

static bool append_publish(struct agent *ag, struct batch_op *op)
{
	const char *argv[3] = {"PUBLISH", agent_conf.channel};
	size_t argvlen[3] = {7, strlen(agent_conf.channel)};
	char text[AGENT_KEY_TEXT];
	char *msg = invalidation_event(op->req, &argvlen[2]);
	bool ok;

	if (!msg) {
		agent_escape(op->req->key, op->req->klen, HC_KEY_MAX, text, sizeof(text));
		log_warn("l2: no invalidation event can carry key '%s' (not UTF-8 and has control "
			 "characters); other hosts are not told",
			 text);
		return true;
	}
	argv[2] = msg;
	ok = append(ag, 3, argv, argvlen);
	free(msg);
	op->published = ok;
	return ok;
}

/* Queue @op's commands.  False when hiredis could not (the link is then unusable). */
static bool append_op(struct agent *ag, struct batch_op *op)
{
	const struct hc_request *r = op->req;

	op->first = ag->ncmds;
	op->state = OP_SENT;
	switch (r->op) {
	case HC_REQ_GET:
		/* Before Redis can read the key: see finish_get. */
		op->guard = inv_guard_snapshot(r->key, r->klen);
		return append_key_cmd(ag, "GET", r) && append_key_cmd(ag, "PTTL", r);
	case HC_REQ_SET:
		return append_set(ag, op);
	case HC_REQ_SET_THROUGH:
		/* A GET of the key earlier in this pipeline reads the value this replaces. */
		inv_guard_key(r->key, r->klen);
		return append_set(ag, op);
	case HC_REQ_DEL:
		inv_guard_key(r->key, r->klen);
		return append_key_cmd(ag, "DEL", r);
	case HC_REQ_INVALIDATE:
		inv_guard_key(r->key, r->klen);
		return append_key_cmd(ag, "DEL", r) && append_publish(ag, op);
	}
	log_warn("l2: ignoring a request of unknown kind %u", op->req->op);
	op->state = OP_SKIPPED;
	return true;
}

static void add_ops(struct agent *ag, const struct hc_request *reqs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ag->ops[ag->nops++] = (struct batch_op){.req = &reqs[i], .state = OP_UNSENT};
}

/* Build and send the pipeline: one round trip for the whole batch. */
static void send_pipeline(struct agent *ag)
{
	size_t got;

	for (size_t i = 0; i < ag->nops; i++) {
		if (!append_op(ag, &ag->ops[i])) {
			/* hiredis is out of memory: what was queued goes with the context. */
			for (size_t j = 0; j < ag->nops; j++)
				ag->ops[j].state =
					ag->ops[j].state == OP_SKIPPED ? OP_SKIPPED : OP_UNSENT;
			ag->ncmds = 0;
			redis_link_drop(&ag->l2, "cannot build the pipeline (out of memory)");
			return;
		}
	}
	if (!ag->ncmds)
		return;
	ag->sent_ns = agent_now_ns();
	got = redis_link_exchange(&ag->l2, ag->replies, ag->reply_ns, ag->ncmds);
	hc_agent_count(ag->cache, HC_AG_ROUND_TRIPS, 1);
	hc_agent_count(ag->cache, HC_AG_COMMANDS, ag->ncmds);
	log_debug("l2: pipeline of %zu commands, %zu replies, %llu us", ag->ncmds, got,
		  (unsigned long long)((agent_now_ns() - ag->sent_ns) / 1000));
}

/* ---------------------------------------------------------------------- */
/* Reading the replies                                                      */

static const redisReply *op_reply(const struct agent *ag, const struct batch_op *op, size_t i)
{
	return op->state == OP_SENT ? ag->replies[op->first + i] : NULL;
}

/*
 * Is @r a reply of type @want (or @alt)?  If not, the command failed: count it, and log an
 * error reply from Redis (rate-limited; a missing reply means a lost link, logged there).
 */
static bool reply_ok(struct agent *ag, const redisReply *r, int want, int alt, const char *cmd)
{
	char more[64] = "";
	uint64_t skipped;

	if (r && (r->type == want || r->type == alt))
		return true;
	hc_agent_count(ag->cache, HC_AG_L2_ERRORS, 1);
	if (!r || !log_limit_pass(&ag->reply_log, WARN_INTERVAL_NS, &skipped))
		return false;
	if (skipped)
		snprintf(more, sizeof(more), " (and %llu more since the last warning)",
			 (unsigned long long)skipped);
	if (r->type == REDIS_REPLY_ERROR)
		log_warn("l2: %s failed: %.*s%s", cmd, (int)(r->len > 200 ? 200 : r->len), r->str,
			 more);
	else
		log_warn("l2: %s failed: unexpected %s reply%s", cmd, redis_reply_kind(r), more);
	return false;
}

/* GET and PTTL replies -> an L2 result, the value and its TTL for L1. */
static int get_result(struct agent *ag, const redisReply *val, const redisReply *pttl,
		      uint32_t *ttl_ms)
{
	bool val_ok = reply_ok(ag, val, REDIS_REPLY_STRING, REDIS_REPLY_NIL, "GET");
	bool pttl_ok = reply_ok(ag, pttl, REDIS_REPLY_INTEGER, REDIS_REPLY_INTEGER, "PTTL");

	*ttl_ms = 0;
	if (!val_ok || !pttl_ok)
		return HC_L2_ERROR;
	if (val->type == REDIS_REPLY_NIL)
		return HC_L2_MISS;
	if (val->len > ag->max_value)
		return HC_L2_MISS; /* L1 cannot hold it; the origin's answer will not fit either */
	if (pttl->integer == -1)
		return HC_L2_HIT; /* no expiry in Redis: none in L1 */
	if (pttl->integer <= 0)
		return HC_L2_MISS; /* gone (-2) or expiring between GET and PTTL */
	*ttl_ms = pttl->integer > UINT32_MAX ? UINT32_MAX : (uint32_t)pttl->integer;
	return HC_L2_HIT;
}

static void log_raced(const struct hc_request *r, const char *what)
{
	char text[AGENT_KEY_TEXT];

	if (agent_conf.log_level < HC_LOG_DEBUG)
		return;
	agent_escape(r->key, r->klen, HC_KEY_MAX, text, sizeof(text));
	log_debug("l2: '%s' was invalidated while its GET was in flight: %s", text, what);
}

/*
 * Answer a lookup.  A hit goes into L1 only if no invalidation of the key was applied
 * since the GET was sent (checked before the store and again after it: the guard of
 * tracking.c); else the value may be older than a write Redis told us about, and the
 * lookup is answered as a miss (the owner asks the origin), or the stored value dropped.
 */
static void finish_get(struct agent *ag, const struct batch_op *op)
{
	const struct hc_request *r = op->req;
	const redisReply *val = op_reply(ag, op, 0);
	uint32_t ttl_ms;
	uint64_t ns = 0;
	int result = get_result(ag, val, op_reply(ag, op, 1), &ttl_ms);
	int rc;

	if (op->state == OP_SENT && ag->replies[op->first + 1])
		ns = ag->reply_ns[op->first + 1] - ag->sent_ns;
	if (result == HC_L2_HIT && inv_guard_changed(r->key, r->klen, op->guard)) {
		log_raced(r, "answered as a miss");
		result = HC_L2_MISS;
	}
	rc = hc_agent_answer(ag->cache, r, result, result == HC_L2_HIT ? val->str : NULL,
			     result == HC_L2_HIT ? val->len : 0, ttl_ms);
	if (rc < 0) {
		log_debug("l2: answering a lookup failed: %s", hc_strerror(rc));
		if (result == HC_L2_HIT)
			result = HC_L2_ERROR; /* the library tells the owner so too */
	}
	if (result == HC_L2_HIT && inv_guard_changed(r->key, r->klen, op->guard)) {
		/* The invalidation's hc_del may have come before our store: do it again. */
		log_raced(r, "dropped from L1 after the store");
		hc_del(ag->cache, r->key, r->klen);
	}
	hc_agent_l2(ag->cache, r->key, r->klen, result, ns);
}

static void finish_set(struct agent *ag, const struct batch_op *op)
{
	const struct hc_request *r = op->req;

	if (op->state == OP_SKIPPED ||
	    reply_ok(ag, op_reply(ag, op, 0), REDIS_REPLY_STATUS, REDIS_REPLY_STATUS, "SET"))
		return;
	if (r->op != HC_REQ_SET_THROUGH)
		return; /* a cache fill that failed: L2 just does not have the value */
	/* L2 may hold an older value than the one just written here: delete it. */
	hc_agent_count(ag->cache, HC_AG_WRITE_FAILS, 1);
	backlog_add(ag, r, HC_REQ_DEL);
}

/* DEL (and PUBLISH): a lost reply means maybe not done, so keep it for later; an error
 * reply from Redis will not change by retrying, so it is only counted and logged. */
static void finish_delete(struct agent *ag, const struct batch_op *op)
{
	const redisReply *del = op_reply(ag, op, 0);
	const redisReply *pub = op->published ? op_reply(ag, op, 1) : NULL;
	bool lost = !del || (op->published && !pub);

	reply_ok(ag, del, REDIS_REPLY_INTEGER, REDIS_REPLY_INTEGER, "DEL");
	if (op->published && reply_ok(ag, pub, REDIS_REPLY_INTEGER, REDIS_REPLY_INTEGER, "PUBLISH"))
		hc_agent_count(ag->cache, HC_AG_INV_PUBLISHED, 1);
	if (lost)
		backlog_add(ag, op->req, op->req->op);
}

static void finish_op(struct agent *ag, const struct batch_op *op)
{
	switch (op->req->op) {
	case HC_REQ_GET:
		finish_get(ag, op);
		break;
	case HC_REQ_SET:
	case HC_REQ_SET_THROUGH:
		finish_set(ag, op);
		break;
	case HC_REQ_DEL:
	case HC_REQ_INVALIDATE:
		if (op->state != OP_SKIPPED)
			finish_delete(ag, op);
		break;
	}
}

/*
 * Serve @n requests (and, when Redis is reachable, the backlog) with one pipeline.
 * While Redis is unreachable nothing is sent and every operation fails at once.
 */
static void process_batch(struct agent *ag, size_t n)
{
	ag->nops = 0;
	ag->ncmds = 0;
	if (redis_link_ready(&ag->l2))
		tracking_sync(&ag->l2); /* may lose the link */
	if (ag->l2.ctx) {
		add_ops(ag, ag->replay, backlog_take(ag));
		add_ops(ag, ag->reqs, n);
		send_pipeline(ag);
	} else {
		add_ops(ag, ag->reqs, n);
	}
	for (size_t i = 0; i < ag->nops; i++)
		finish_op(ag, &ag->ops[i]);
	for (size_t i = 0; i < ag->ncmds; i++)
		freeReplyObject(ag->replies[i]);
}

/* ---------------------------------------------------------------------- */
/* Main loop                                                                */

/* One turn: housekeeping, then whatever the ring holds.  Returns false on a fatal error. */
static bool serve_once(struct agent *ag)
{
	int n;

	heartbeat_if_due(ag);
	maintain_if_due(ag);
	redis_link_idle_check(&ag->l2);
	if (!ag->l2.ctx)
		redis_link_ready(&ag->l2); /* a reconnect attempt, if the backoff ran out */
	tracking_sync(&ag->l2);		   /* a new connection, or a new subscriber id */
	n = hc_agent_take(ag->cache, ag->reqs, MAX_BATCH, take_timeout_ms(ag));
	if (n == HC_E_AGAIN || n == -EINTR)
		n = 0;
	if (n < 0) {
		log_error("taking requests from the ring failed: %s", hc_strerror(n));
		return false;
	}
	if (n > 0 || (ag->nbacklog && ag->l2.ctx))
		process_batch(ag, (size_t)n);
	return true;
}

/*
 * At shutdown, serve what workers have queued, so that owners waiting on a lookup are
 * answered now instead of at their timeout.  It has to come before hc_agent_end (which
 * ends the right to take from the ring); a request queued after the last take waits for
 * its owner's timeout (250 ms).
 */
static void drain(struct agent *ag)
{
	for (int round = 0; round < DRAIN_ROUNDS; round++) {
		int n = hc_agent_take(ag->cache, ag->reqs, MAX_BATCH, 0);

		if (n <= 0)
			break;
		process_batch(ag, (size_t)n);
	}
	if (ag->nbacklog)
		log_warn("l2: %zu deletes could not reach Redis before shutdown; L2 may serve "
			 "their keys' old values until their TTL",
			 ag->nbacklog);
}

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&agent_stop, 1);
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the doorbell wait returns at once. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* A write to a connection Redis closed must be an error, not death. */
	signal(SIGPIPE, SIG_IGN);
}

static bool alloc_state(struct agent *ag)
{
	ag->reqs = calloc(MAX_BATCH, sizeof(*ag->reqs));
	ag->replay = calloc(BACKLOG_MAX, sizeof(*ag->replay));
	ag->backlog = calloc(BACKLOG_MAX, sizeof(*ag->backlog));
	ag->ops = calloc(MAX_OPS, sizeof(*ag->ops));
	ag->replies = calloc(MAX_CMDS, sizeof(*ag->replies));
	ag->reply_ns = calloc(MAX_CMDS, sizeof(*ag->reply_ns));
	ag->keybuf = malloc(AGENT_PREFIX_MAX + HC_KEY_MAX + 1);
	return ag->reqs && ag->replay && ag->backlog && ag->ops && ag->replies && ag->reply_ns &&
	       ag->keybuf;
}

static void free_state(struct agent *ag)
{
	free(ag->reqs);
	free(ag->replay);
	free(ag->backlog);
	free(ag->ops);
	free(ag->replies);
	free(ag->reply_ns);
	free(ag->keybuf);
}

static int open_cache(struct agent *ag)
{
	struct hc_options o = {.log = lib_log};
	struct hc_info info;
	int rc;

	if (agent_conf.create_size) {
		o.flags = HC_CREATE;
		o.size = agent_conf.create_size;
	}
	rc = hc_open(agent_conf.name, &o, &ag->cache);
	if (rc == -ENOENT) {
		log_error("segment '%s' does not exist: create it with 'shmtool -n %s create' or "
			  "pass --create SIZE",
			  agent_conf.name, agent_conf.name);
		return rc;
	}
	if (rc < 0) {
		log_error("cannot open segment '%s': %s", agent_conf.name, hc_strerror(rc));
		return rc;
	}
	rc = hc_info(ag->cache, &info);
	ag->max_value = rc == 0 ? info.max_value : HC_VALUE_MAX_DEFAULT;
	return 0;
}

static int become_agent(struct agent *ag)
{
	int rc = hc_agent_begin(ag->cache);

	if (rc == HC_E_BUSY) {
		log_error("another hostcache-agent is serving segment '%s' (its heartbeat is "
			  "fresh); only one agent per segment may run",
			  agent_conf.name);
		return rc;
	}
	if (rc < 0) {
		log_error("cannot become the agent of segment '%s': %s", agent_conf.name,
			  hc_strerror(rc));
		return rc;
	}
	ag->beating = true;
	hc_agent_state(ag->cache, HC_REDIS_UNKNOWN);
	return 0;
}

/*
 * --http: serve the dashboard of the segment.  Its threads are started with SIGTERM and
 * SIGINT blocked, so that signals keep going to this thread (they cut its doorbell wait
 * short).  The token is wiped once the server holds its own copy.  False on failure.
 */
static bool start_dashboard(struct agent *ag)
{
	struct dash_http_opts o = {.bind = agent_conf.http_addr, .token = agent_conf.dash_token};
	bool token = agent_conf.dash_token != NULL;
	sigset_t block, old;
	int rc;

	if (!agent_conf.http_addr[0])
		return true;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = dash_http_start(ag->cache, &o, &ag->http);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	agent_config_wipe_token();
	if (rc < 0) {
		log_error("http: cannot serve the dashboard on %s: %s", agent_conf.http_addr,
			  hc_strerror(rc));
		return false;
	}
	log_info("http: dashboard on http://%s:%d/%s", agent_conf.http_host,
		 dash_http_port(ag->http),
		 token ? "" : " (no token: flush and invalidate refused)");
	return true;
}

static int run(struct agent *ag)
{
	struct subscriber *sub = NULL;
	bool ok = true;
	int rc;

	rc = subscriber_start(ag->cache, &sub);
	if (rc < 0) {
		log_error("cannot start the invalidation subscriber: %s", strerror(-rc));
		return 1;
	}
	log_info("serving segment '%s' as '%s': Redis %s, key prefix '%s', channel '%s'",
		 agent_conf.name, agent_conf.id, agent_conf.redis_desc, agent_conf.prefix,
		 agent_conf.channel);
	if (agent_tracking())
		log_info("server-assisted invalidation: writes to %s in Redis invalidate L1",
			 tracking_describe());
	ok = start_dashboard(ag);
	while (ok && !agent_stopping())
		ok = serve_once(ag);
	log_info("stopping");
	atomic_store(&agent_stop, 1); /* a fatal error stops the subscriber too */
	/* No request from the dashboard (an invalidation) comes after the drain. */
	dash_http_stop(ag->http);
	ag->http = NULL;
	if (ok)
		drain(ag);
	ag->beating = false;
	hc_agent_end(ag->cache);
	subscriber_join(sub);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct agent ag;
	int status = 1;

	memset(&ag, 0, sizeof(ag));
	agent_config_parse(argc, argv);
	install_signals();
	if (!alloc_state(&ag)) {
		log_error("out of memory");
		goto out;
	}
	redis_link_init(&ag.l2, "l2", NULL, true);
	ag.l2.tick = heartbeat_if_due;
	ag.l2.tick_ctx = &ag;
	if (open_cache(&ag) < 0)
		goto out;
	ag.l2.cache = ag.cache;
	if (become_agent(&ag) < 0)
		goto close;
	status = run(&ag);
close:
	redis_link_close(&ag.l2);
	hc_close(ag.cache);
out:
	free_state(&ag);
	agent_config_free();
	return status;
}
