/*
 * tracking.c - what the agent's two threads share besides the configuration: the guard
 * against the read/invalidate race, and Redis server-assisted invalidation.
 *
 * SERVER-ASSISTED INVALIDATION (--tracking PREFIX ..., --tracking-all; off by default).
 * A service that writes to Redis and publishes no event would leave every host's L1 stale
 * until the entry's TTL.  Redis can tell us itself: CLIENT TRACKING in broadcasting mode
 * (BCAST) notifies a client of every change to a key under the prefixes it registered,
 * made by anyone, expiries and evictions included.  Under RESP2, all hiredis 0.14 speaks,
 * the notifications cannot come on the connection that enabled tracking: they are
 * REDIRECTed to another connection, which must be subscribed to __redis__:invalidate and
 * gets them as pub/sub messages whose payload is an array of keys, or nil when a FLUSHALL
 * or FLUSHDB dropped everything.  So:
 *
 *   - the subscriber (invalidate.c) sends CLIENT ID, subscribes to __redis__:invalidate
 *     next to the event channel, and hands its id over (tracking_redirect_set);
 *   - the main thread turns tracking on for the L2 connection:
 *         CLIENT TRACKING on REDIRECT <id> BCAST PREFIX <--prefix><p> ... NOLOOP
 *     NOLOOP leaves out the writes made by that same connection.  The agent's own SETs
 *     copy this host's L1 into L2 and its DELs follow deletes already done here, so they
 *     need no invalidation of this host, while other hosts' agents, being other
 *     connections, still notify us and we them.  Tracking lives on the L2 connection, not
 *     on a third one, precisely so that NOLOOP has the agent's writes to leave out.
 *   - tracking is a property of a connection and dies with it, and under RESP2 a redirect
 *     to a connection that closed breaks silently (the tracking-redir-broken push exists
 *     only in RESP3).  So the main thread re-issues CLIENT TRACKING whenever its
 *     connection is new or the subscriber's id changed; OFF first, as Redis refuses to
 *     register a prefix a connection already tracks.
 *
 * THE LOST-EVENTS RULE covers tracking too: a write made while tracking was not live
 * (either connection down, or the redirect pointing at a closed connection) was notified
 * to nobody.  Each time the main thread has tracking confirmed by Redis it counts a
 * confirmation, and the subscriber flushes L1 after every confirmation it has not covered
 * yet.  After a new subscription the subscriber waits (up to half a second) for the
 * confirmation for its new id before it makes the flush the rule asks for, so that one
 * flush, made once tracking is live again, covers the gap of both mechanisms: a write after
 * the confirmation is notified, one before it named an entry the flush removes.
 *
 * THE READ/INVALIDATE RACE.  An L2 answer is a value Redis read at some moment, which the
 * agent stores into L1 later, once the reply has crossed the network.  An invalidation of
 * that key for a write made in between (a tracking notification, or an event another host
 * published) travels on the subscriber's connection and can be applied first: its hc_del
 * finds nothing, the store follows, and L1 keeps the old value for its whole TTL.  Redis's
 * client-side caching documentation describes this race; with BCAST the notification may
 * even arrive before the read's reply.  The guard is a table of counters indexed by a hash
 * of the key, plus one epoch for flushes.  Whoever drops keys for an invalidation bumps
 * the key's counter before its hc_del (the epoch before an hc_flush).  The main thread:
 *
 *   1. takes snapshot = epoch + counter[key] when it builds the pipeline, before Redis
 *      can have read the key;
 *   2. when the reply is in, if the sum changed the value may be stale: it answers
 *      HC_L2_MISS and stores nothing (the owner goes to the origin);
 *   3. otherwise it stores the value (hc_agent_answer), then checks again, and if the
 *      sum changed meanwhile it drops the key itself.
 *
 * Why that is enough.  An invalidation that matters is for a write Redis applied after it
 * read the key for our GET, so its bump comes after step 1.  Each side puts a sequentially
 * consistent fence between its two steps (bump, fence, hc_del; store, fence, check).  In
 * the single order of those fences either the subscriber's comes first, and the check of
 * step 2 or 3 sees the bump, or the agent's does, and the subscriber's hc_del sees the
 * stored value and drops it.  No stale value stays.  The counters only grow, so a change
 * is never missed; a hash collision or a flush costs at most a needless miss.  The deletes
 * and write-throughs of this host bump the counter as the pipeline is built, so a GET of
 * the same key earlier in that pipeline (read before the write) is not stored either.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"

#define GUARD_SLOTS 4096 /* counters of the race guard (a power of two) */

/* ---------------------------------------------------------------------- */
/* The read/invalidate race guard                                          */

static atomic_uint_fast64_t guard_epoch; /* bumped before every flush of L1 */
static atomic_uint_fast64_t guard[GUARD_SLOTS];

/* FNV-1a: cheap and good enough to spread keys over the slots. */
static atomic_uint_fast64_t *guard_slot(const void *key, size_t klen)
{
	const unsigned char *p = key;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < klen; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return &guard[h & (GUARD_SLOTS - 1)];
}

uint64_t inv_guard_snapshot(const void *key, size_t klen)
{
	return atomic_load(&guard_epoch) + atomic_load(guard_slot(key, klen));
}

bool inv_guard_changed(const void *key, size_t klen, uint64_t snap)
{
	atomic_thread_fence(memory_order_seq_cst); /* orders the store before this check */
	return inv_guard_snapshot(key, klen) != snap;
}

void inv_guard_key(const void *key, size_t klen)
{
	atomic_fetch_add(guard_slot(key, klen), 1);
	atomic_thread_fence(memory_order_seq_cst); /* orders the bump before the hc_del */
}

void inv_guard_all(void)
{
	atomic_fetch_add(&guard_epoch, 1);
	atomic_thread_fence(memory_order_seq_cst);
}

/* ---------------------------------------------------------------------- */
/* The handshake between the subscriber and the L2 connection              */

static struct {
	pthread_mutex_t lock;
	uint64_t redirect_id; /* the subscriber's CLIENT ID while subscribed; 0: none */
	uint64_t gen;	      /* bumped at every tracking_redirect_set */
	uint64_t live_gen;    /* the gen tracking is confirmed for; 0: not live */
	uint64_t confirms;    /* confirmations so far */
} hs = {.lock = PTHREAD_MUTEX_INITIALIZER};

uint64_t tracking_redirect_set(uint64_t client_id)
{
	uint64_t gen;

	pthread_mutex_lock(&hs.lock);
	hs.redirect_id = client_id;
	gen = ++hs.gen;
	pthread_mutex_unlock(&hs.lock);
	return gen;
}

bool tracking_live(uint64_t gen, uint64_t *confirms)
{
	bool live;

	pthread_mutex_lock(&hs.lock);
	live = hs.live_gen == gen;
	*confirms = hs.confirms;
	pthread_mutex_unlock(&hs.lock);
	return live;
}

/* Tracking is on for @gen, unless the subscriber has moved on meanwhile. */
static bool confirm(uint64_t gen)
{
	bool current;

	pthread_mutex_lock(&hs.lock);
	current = hs.gen == gen;
	if (current) {
		hs.live_gen = gen;
		hs.confirms++;
	}
	pthread_mutex_unlock(&hs.lock);
	return current;
}

static void set_not_live(void)
{
	pthread_mutex_lock(&hs.lock);
	hs.live_gen = 0;
	pthread_mutex_unlock(&hs.lock);
}

/* ---------------------------------------------------------------------- */
/* CLIENT TRACKING on the L2 connection (main thread only)                 */

#define RPREFIX_MAX (AGENT_PREFIX_MAX + HC_KEY_MAX)

static struct {
	bool built;
	int nprefixes;
	char prefixes[AGENT_TRACKING_MAX][RPREFIX_MAX + 1]; /* as Redis sees them */
	size_t lens[AGENT_TRACKING_MAX];
	char text[1024]; /* for logs */
	uint64_t conn;	 /* l2->connects when CLIENT TRACKING was last sent */
	uint64_t gen;	 /* the subscriber's generation it was sent for */
	bool on;	 /* tracking is on on that connection */
	bool live;	 /* confirmed, and the connection still up */
} l2s;

static void add_prefix(const char *p, size_t len)
{
	int i = l2s.nprefixes++;

	memcpy(l2s.prefixes[i], agent_conf.prefix, agent_conf.prefix_len);
	memcpy(l2s.prefixes[i] + agent_conf.prefix_len, p, len);
	l2s.lens[i] = agent_conf.prefix_len + len;
}

/* The Redis prefixes: --prefix before each --tracking one; --tracking-all: --prefix alone. */
static void build(void)
{
	size_t o = 0;

	if (l2s.built)
		return;
	l2s.built = true;
	if (agent_conf.tracking_all && agent_conf.prefix_len)
		add_prefix("", 0);
	for (int i = 0; i < agent_conf.ntracking && !agent_conf.tracking_all; i++)
		add_prefix(agent_conf.tracking[i], strlen(agent_conf.tracking[i]));
	if (!agent_tracking())
		return;
	if (!l2s.nprefixes) {
		snprintf(l2s.text, sizeof(l2s.text), "every key");
		return;
	}
	for (int i = 0; i < l2s.nprefixes && o + 16 < sizeof(l2s.text); i++) {
		char esc[4 * 64 + 4];

		agent_escape(l2s.prefixes[i], l2s.lens[i], 64, esc, sizeof(esc));
		o += (size_t)snprintf(l2s.text + o, sizeof(l2s.text) - o, "%s'%s*'", i ? ", " : "",
				      esc);
	}
}

const char *tracking_describe(void)
{
	build();
	return l2s.text;
}

static bool reply_is_ok(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_STATUS && r->len == 2 && !memcmp(r->str, "OK", 2);
}

static void log_refused(const redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR && memmem(r->str, r->len, "does not exist", 14))
		/* The subscriber's connection closed; its next one brings a new id. */
		log_info("l2: CLIENT TRACKING refused: %.*s; redirecting again once the "
			 "subscriber is back",
			 (int)(r->len > 200 ? 200 : r->len), r->str);
	else if (r->type == REDIS_REPLY_ERROR)
		log_warn("l2: CLIENT TRACKING refused: %.*s; writes by clients that publish no "
			 "event will not invalidate L1 (server-assisted invalidation needs Redis 6 "
			 "or later)",
			 (int)(r->len > 200 ? 200 : r->len), r->str);
	else
		log_warn("l2: CLIENT TRACKING: unexpected %s reply; writes by clients that publish "
			 "no event will not invalidate L1",
			 redis_reply_kind(r));
}

/* Turn tracking on, redirected to client @id.  False when Redis refused or the link went. */
static bool send_tracking(struct redis_link *l, uint64_t id)
{
	const char *argv[7 + 2 * AGENT_TRACKING_MAX] = {"CLIENT", "TRACKING", "on", "REDIRECT"};
	size_t argvlen[7 + 2 * AGENT_TRACKING_MAX] = {6, 8, 2, 8};
	const char *off[3] = {"CLIENT", "TRACKING", "off"};
	const size_t offlen[3] = {6, 8, 3};
	redisReply *replies[2];
	char idtext[24];
	size_t n = 0, got;
	int argc = 4;
	bool ok = true;

	argvlen[argc] = (size_t)snprintf(idtext, sizeof(idtext), "%llu", (unsigned long long)id);
	argv[argc++] = idtext;
	argv[argc] = "BCAST";
	argvlen[argc++] = 5;
	for (int i = 0; i < l2s.nprefixes; i++) {
		argv[argc] = "PREFIX";
		argvlen[argc++] = 6;
		argv[argc] = l2s.prefixes[i];
		argvlen[argc++] = l2s.lens[i];
	}
	argv[argc] = "NOLOOP";
	argvlen[argc++] = 6;

	if (l2s.on) {
		if (redisAppendCommandArgv(l->ctx, 3, off, offlen) != REDIS_OK)
			goto oom;
		n++;
	}
	if (redisAppendCommandArgv(l->ctx, argc, argv, argvlen) != REDIS_OK)
		goto oom;
	n++;
	got = redis_link_exchange(l, replies, NULL, n);
	hc_agent_count(l->cache, HC_AG_ROUND_TRIPS, 1);
	hc_agent_count(l->cache, HC_AG_COMMANDS, n);
	l2s.on = got == n && reply_is_ok(replies[n - 1]);
	for (size_t i = 0; i < got; i++) {
		if (ok && !reply_is_ok(replies[i])) {
			log_refused(replies[i]);
			ok = false;
		}
		freeReplyObject(replies[i]);
	}
	return ok && got == n;
oom:
	redis_link_drop(l, "cannot queue CLIENT TRACKING (out of memory)");
	return false;
}

void tracking_sync(struct redis_link *l)
{
	uint64_t id, gen;

	if (!agent_tracking())
		return;
	build();
	if (!l->ctx || l->connects != l2s.conn) {
		/* Tracking ended with the connection it was on. */
		l2s.on = false;
		if (l2s.live) {
			l2s.live = false;
			set_not_live();
		}
		if (!l->ctx)
			return;
	}
	pthread_mutex_lock(&hs.lock);
	id = hs.redirect_id;
	gen = hs.gen;
	pthread_mutex_unlock(&hs.lock);
	if (l->connects == l2s.conn && gen == l2s.gen)
		return; /* done for this connection and subscription (or refused: not retried) */
	if (!id)
		return; /* nobody to redirect to yet; a new subscription changes gen */
	l2s.conn = l->connects;
	l2s.gen = gen;
	if (l2s.live) {
		l2s.live = false;
		set_not_live();
	}
	if (!send_tracking(l, id))
		return;
	if (!confirm(gen)) {
		log_debug("l2: tracking redirected to client %llu, whose subscription has ended "
			  "meanwhile; redirecting again",
			  (unsigned long long)id);
		return;
	}
	l2s.live = true;
	log_info("l2: tracking on: Redis tells the subscriber (client id %llu) of every write "
		 "to %s",
		 (unsigned long long)id, l2s.text);
}
