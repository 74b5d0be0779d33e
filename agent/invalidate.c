/*
 * invalidate.c - the invalidation subscriber: a thread with its own Redis connection,
 * subscribed to the invalidation channel, that drops the keys named by each event from L1.
 *
 * Accepted messages (anything else is counted as malformed, logged briefly, and skipped;
 * a bad message is never fatal):
 *
 *   {"entity":"product","id":42,"action":"updated"}  the seed's format: key "product:42"
 *                                                    (id an integer or a string; every
 *                                                    action invalidates)
 *   {"key":"k","source":"agent-id"}                  what agents publish (hc_invalidate)
 *   {"keys":["a","b"],"source":"agent-id"}           several keys
 *   ["a","b"]                                        several keys
 *   "k"                                              one key, JSON-encoded
 *   product:42                                       not JSON: the whole payload is one
 *                                                    key, if it is 1..250 bytes without
 *                                                    control characters (a payload such
 *                                                    as 42 or null, JSON but not an event,
 *                                                    is taken as a plain key as well)
 *
 * An object whose "source" is this agent's id is our own echo: the worker that called
 * hc_invalidate already deleted the key here, so it is counted and ignored.  An object
 * that carries a valid key next to a bad field still has its valid keys applied (an
 * invalidation lost is stale data served) and is counted malformed as well.
 *
 * With --tracking (see tracking.c) the connection also sends CLIENT ID and subscribes to
 * __redis__:invalidate, where Redis redirects the tracking notifications of the L2
 * connection: an array of Redis keys, each dropped from L1 once the agent's --prefix is
 * taken off (a key without it is not ours and is skipped), or nil after a FLUSHALL or
 * FLUSHDB, which flushes L1 and counts a resync.  They count as received and applied like
 * events.  Before dropping anything, the thread bumps the race guard (tracking.c) so that
 * an L2 answer read before the invalidation is not stored after it.
 *
 * THE RESYNC RULE.  Pub/sub is fire-and-forget: while this host is not subscribed, every
 * event published is lost for it, and nothing tells which keys they named.  So, after a
 * lost subscription, every fresh L1 entry is marked stale (hc_mark_stale) once the
 * subscription is back, and HC_AG_RESYNCS counts it: nothing cached before is trusted,
 * and nothing is thrown away either.  A plain read misses a stale entry and reloads it
 * (from L2 at one round trip); hc_get_or_load serves it within its stale window while one
 * refresh per key revalidates it, and a failed load can still answer with it.  The
 * marking comes after Redis has confirmed the SUBSCRIBE, so an event published after it
 * is received, and one published before it names an entry already marked.  (Below,
 * "flush" means this marking, except after a FLUSHALL, which empties L1.)  The first
 * subscription of
 * the agent's life is treated the same way: until then nobody was subscribed for this
 * host (the agent was down or not yet started), so entries already in L1 may have missed
 * events too.  With --tracking, the flush waits (up to TRACKING_WAIT_MS) until the L2
 * connection has tracking redirected to the new subscription, so that the one flush also
 * covers the writes Redis notified to nobody meanwhile; and every later re-confirmation
 * of tracking (the L2 connection came back) flushes L1 again, for the same reason.
 *
 * Shutdown: the connection is only ever waited on through poll() with a 100 ms timeout
 * (see redis.c), and the thread checks agent_stop between waits.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"

#define READ_TIMEOUT_MS 100
#define EXCERPT_BYTES 64
#define WARN_INTERVAL_NS (1000 * 1000000ull) /* at most one malformed-message warning a second */
#define TRACKING_WAIT_MS 500 /* a new subscription's flush waits this long for tracking */
#define TRACKING_POLL_MS 5   /* meanwhile, how often it looks */
#define NS_PER_MS 1000000ull

struct subscriber {
	pthread_t thread;
	struct hc_cache *cache;
	struct redis_link link;
	bool subscribed;
	bool resync_owed;		/* subscribed, L1 not flushed since */
	uint64_t subscribed_ns;		/* when */
	uint64_t gen;			/* tracking: generation of our subscription */
	uint64_t covered;		/* tracking: the confirmations a flush has covered */
	struct log_limit malformed_log; /* malformed-message warnings are rate-limited */
};

/* ---------------------------------------------------------------------- */
/* Applying keys                                                            */

static void apply_key(struct subscriber *s, const char *key, size_t klen, struct inv_outcome *o)
{
	char text[AGENT_KEY_TEXT];
	int rc;

	inv_guard_key(key, klen); /* before the delete: see tracking.c */
	rc = hc_del(s->cache, key, klen);
	if (rc == 0 || rc == HC_E_NOTFOUND) {
		o->applied++;
		if (agent_conf.log_level >= HC_LOG_DEBUG) {
			agent_escape(key, klen, HC_KEY_MAX, text, sizeof(text));
			log_debug("invalidate: '%s' %s", text,
				  rc == 0 ? "dropped from L1" : "was not cached");
		}
		return;
	}
	agent_escape(key, klen, HC_KEY_MAX, text, sizeof(text));
	log_warn("invalidate: hc_del of '%s' failed: %s", text, hc_strerror(rc));
}

/* A key from a JSON value: a string of 1..HC_KEY_MAX bytes. */
static void apply_json_key(struct subscriber *s, const json_t *v, struct inv_outcome *o)
{
	size_t len = json_is_string(v) ? json_string_length(v) : 0;

	if (len == 0 || len > HC_KEY_MAX) {
		o->malformed = true;
		return;
	}
	apply_key(s, json_string_value(v), len, o);
}

static void apply_json_keys(struct subscriber *s, const json_t *arr, struct inv_outcome *o)
{
	size_t i;
	json_t *v;

	if (!json_is_array(arr)) {
		o->malformed = true;
		return;
	}
	json_array_foreach(arr, i, v) apply_json_key(s, v, o);
}

/* The seed's event: "entity" and "id" (an integer or a string) make "entity:id". */
static void apply_entity_event(struct subscriber *s, const json_t *ev, struct inv_outcome *o)
{
	const json_t *entity = json_object_get(ev, "entity"), *id = json_object_get(ev, "id");
	char key[HC_KEY_MAX + 2], num[32];
	const char *idstr;
	size_t elen, idlen;

	if (!json_is_string(entity) || !(json_is_integer(id) || json_is_string(id)))
		goto malformed;
	if (json_is_integer(id)) {
		idlen = (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
					 json_integer_value(id));
		idstr = num;
	} else {
		idstr = json_string_value(id);
		idlen = json_string_length(id);
	}
	elen = json_string_length(entity);
	if (elen == 0 || idlen == 0 || elen + 1 + idlen > HC_KEY_MAX)
		goto malformed;
	memcpy(key, json_string_value(entity), elen);
	key[elen] = ':';
	memcpy(key + elen + 1, idstr, idlen);
	apply_key(s, key, elen + 1 + idlen, o);
	return;
malformed:
	o->malformed = true;
}

static void apply_object(struct subscriber *s, const json_t *ev, struct inv_outcome *o)
{
	const json_t *source = json_object_get(ev, "source");
	const json_t *key = json_object_get(ev, "key"), *keys = json_object_get(ev, "keys");
	bool is_entity = json_object_get(ev, "entity") != NULL;

	if (json_is_string(source) && !strcmp(json_string_value(source), agent_conf.id)) {
		o->echo = true;
		return;
	}
	if (!key && !keys && !is_entity) {
		o->malformed = true;
		return;
	}
	if (key)
		apply_json_key(s, key, o);
	if (keys)
		apply_json_keys(s, keys, o);
	if (is_entity)
		apply_entity_event(s, ev, o);
}

/* A payload that is not an event: one key if it looks like one. */
static void apply_plain(struct subscriber *s, const char *p, size_t len, struct inv_outcome *o)
{
	if (len == 0 || len > HC_KEY_MAX) {
		o->malformed = true;
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch < 0x20 || ch == 0x7f) {
			o->malformed = true;
			return;
		}
	}
	apply_key(s, p, len, o);
}

static void apply_payload(struct subscriber *s, const char *p, size_t len, struct inv_outcome *o)
{
	json_error_t err;
	json_t *root = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

	if (json_is_object(root))
		apply_object(s, root, o);
	else if (json_is_array(root))
		apply_json_keys(s, root, o);
	else if (json_is_string(root))
		apply_json_key(s, root, o);
	else
		apply_plain(s, p, len, o);
	json_decref(root);
}

void invalidate_apply(struct hc_cache *c, const char *p, size_t len, struct inv_outcome *o)
{
	struct subscriber s = {.cache = c};

	apply_payload(&s, p, len, o);
}

/* ---------------------------------------------------------------------- */
/* Messages                                                                 */

static void resync(struct subscriber *s, const char *why, bool drop);

static void warn_malformed(struct subscriber *s, const char *p, size_t len)
{
	char text[EXCERPT_BYTES * 4 + 8];
	uint64_t skipped;

	if (!log_limit_pass(&s->malformed_log, WARN_INTERVAL_NS, &skipped))
		return;
	agent_escape(p, len, EXCERPT_BYTES, text, sizeof(text));
	if (skipped)
		log_warn("invalidate: malformed message (%zu bytes) ignored: %s (and %llu more "
			 "since the last warning)",
			 len, text, (unsigned long long)skipped);
	else
		log_warn("invalidate: malformed message (%zu bytes) ignored: %s", len, text);
}

static void handle_message(struct subscriber *s, const char *p, size_t len)
{
	struct inv_outcome o = {0};

	hc_agent_count(s->cache, HC_AG_INV_RECEIVED, 1);
	apply_payload(s, p, len, &o);
	if (o.echo)
		hc_agent_count(s->cache, HC_AG_INV_ECHOES, 1);
	if (o.applied)
		hc_agent_count(s->cache, HC_AG_INV_APPLIED, o.applied);
	if (o.malformed) {
		hc_agent_count(s->cache, HC_AG_INV_MALFORMED, 1);
		warn_malformed(s, p, len);
	}
}

static bool is_string(const redisReply *r, const char *s)
{
	return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && !memcmp(r->str, s, r->len);
}

/*
 * A tracking notification: the Redis keys written (an array), or nil when Redis was
 * flushed.  Keys outside --prefix are not ours: they are skipped, not counted.
 */
static void handle_tracking(struct subscriber *s, const redisReply *keys)
{
	struct inv_outcome o = {0};
	size_t plen = agent_conf.prefix_len;

	hc_agent_count(s->cache, HC_AG_INV_RECEIVED, 1);
	if (keys->type == REDIS_REPLY_NIL) {
		resync(s, "Redis was flushed (FLUSHALL or FLUSHDB)", true);
		return;
	}
	if (keys->type != REDIS_REPLY_ARRAY) {
		hc_agent_count(s->cache, HC_AG_INV_MALFORMED, 1);
		log_warn("invalidate: unexpected %s payload on '" AGENT_TRACKING_CHANNEL
			 "' ignored",
			 redis_reply_kind(keys));
		return;
	}
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];

		if (k->type != REDIS_REPLY_STRING) {
			o.malformed = true;
			continue;
		}
		if (k->len <= plen || k->len - plen > HC_KEY_MAX ||
		    memcmp(k->str, agent_conf.prefix, plen) != 0)
			continue;
		apply_key(s, k->str + plen, k->len - plen, &o);
	}
	if (o.applied)
		hc_agent_count(s->cache, HC_AG_INV_APPLIED, o.applied);
	if (o.malformed) {
		hc_agent_count(s->cache, HC_AG_INV_MALFORMED, 1);
		log_warn("invalidate: a tracking notification named keys that are not strings");
	}
}

/* A pushed reply on the subscribed connection: ["message", channel, payload] or a notice. */
static void handle_push(struct subscriber *s, const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		log_debug("invalidate: ignoring a %s reply on the subscription",
			  redis_reply_kind(r));
		return;
	}
	if (agent_tracking() && is_string(r->element[0], "message") &&
	    is_string(r->element[1], AGENT_TRACKING_CHANNEL))
		handle_tracking(s, r->element[2]);
	else if (is_string(r->element[0], "message") && r->element[2]->type == REDIS_REPLY_STRING)
		handle_message(s, r->element[2]->str, r->element[2]->len);
	else
		log_debug("invalidate: ignoring a '%s' notice on the subscription",
			  is_string(r->element[0], "subscribe") ? "subscribe" : "other");
}

/* ---------------------------------------------------------------------- */
/* Subscription                                                             */

static bool reply_ok(const char *cmd, const redisReply *r, bool ok)
{
	if (!ok)
		log_warn("invalidate: unexpected %s reply to %s%s%.*s", redis_reply_kind(r), cmd,
			 r->type == REDIS_REPLY_ERROR ? ": " : "",
			 r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
			 r->type == REDIS_REPLY_ERROR ? r->str : "");
	return ok;
}

static bool subscribed_ok(const redisReply *r, const char *channel)
{
	return reply_ok("SUBSCRIBE", r,
			r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
				is_string(r->element[0], "subscribe") &&
				is_string(r->element[1], channel) &&
				r->element[2]->type == REDIS_REPLY_INTEGER);
}

/*
 * Send SUBSCRIBE and wait for its confirmation.  With tracking: CLIENT ID first (a
 * subscribed connection may not send it), SUBSCRIBE to __redis__:invalidate as well, and
 * the id handed to the L2 connection.  False (link dropped) on failure.
 */
static bool subscribe(struct subscriber *s)
{
	const char *argv[3] = {"SUBSCRIBE", agent_conf.channel, AGENT_TRACKING_CHANNEL};
	const size_t argvlen[3] = {9, strlen(agent_conf.channel),
				   sizeof(AGENT_TRACKING_CHANNEL) - 1};
	const char *idcmd[2] = {"CLIENT", "ID"};
	const size_t idcmdlen[2] = {6, 2};
	bool tracking = agent_tracking();
	size_t n = tracking ? 3 : 1, got;
	redisReply *r[3] = {NULL};
	bool ok;

	if ((tracking && redisAppendCommandArgv(s->link.ctx, 2, idcmd, idcmdlen) != REDIS_OK) ||
	    redisAppendCommandArgv(s->link.ctx, tracking ? 3 : 2, argv, argvlen) != REDIS_OK) {
		redis_link_drop(&s->link, "cannot queue SUBSCRIBE");
		return false;
	}
	got = redis_link_exchange(&s->link, r, NULL, n);
	ok = got == n;
	if (ok && tracking)
		ok = subscribed_ok(r[1], agent_conf.channel) &&
		     subscribed_ok(r[2], AGENT_TRACKING_CHANNEL);
	else if (ok)
		ok = subscribed_ok(r[0], agent_conf.channel);
	if (ok && tracking) {
		/* Without an id (Redis < 5) events still work; tracking cannot. */
		bool id_ok = reply_ok("CLIENT ID", r[0],
				      r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer > 0);

		s->gen = tracking_redirect_set(id_ok ? (uint64_t)r[0]->integer : 0);
		if (id_ok)
			log_debug("invalidate: subscribed as client id %lld, for tracking too",
				  r[0]->integer);
	}
	if (!ok && got == n)
		redis_link_drop(&s->link, "SUBSCRIBE failed");
	for (size_t i = 0; i < got; i++)
		freeReplyObject(r[i]);
	return ok;
}

/*
 * The resync rule (see the top of this file): mark every L1 entry stale, or with @drop
 * (Redis itself was flushed) empty L1, bumping the race guard's epoch first so that no
 * L2 answer read before is stored after it.
 */
static void resync(struct subscriber *s, const char *why, bool drop)
{
	int64_t n;

	inv_guard_all();
	n = drop ? hc_flush(s->cache) : hc_mark_stale(s->cache);
	if (n < 0) {
		log_error("invalidate: %s, but resyncing L1 failed: %s; entries cached before may "
			  "have missed invalidations",
			  why, hc_strerror((int)n));
		return;
	}
	hc_agent_count(s->cache, HC_AG_RESYNCS, 1);
	log_info("invalidate: %s; %s %lld L1 entries", why, drop ? "dropped" : "marked stale",
		 (long long)n);
}

/* The flush after a new subscription, events only. */
static void resync_subscribed(struct subscriber *s)
{
	char why[AGENT_CHANNEL_MAX + 64];

	snprintf(why, sizeof(why),
		 "subscribed to '%s'; events published while unsubscribed are lost",
		 agent_conf.channel);
	resync(s, why, false);
}

/*
 * Make the flushes the resync rule asks for.  Returns false while a new subscription's
 * flush waits for tracking to be redirected to it (the caller then waits a little and
 * reads nothing meanwhile); true when messages may be read.
 */
static bool resync_if_due(struct subscriber *s)
{
	uint64_t confirms;
	bool live;

	if (!agent_tracking()) {
		if (s->resync_owed)
			resync_subscribed(s);
		s->resync_owed = false;
		return true;
	}
	live = tracking_live(s->gen, &confirms);
	if (s->resync_owed) {
		if (!live && agent_now_ns() - s->subscribed_ns < TRACKING_WAIT_MS * NS_PER_MS)
			return false;
		s->resync_owed = false;
		if (live) {
			s->covered = confirms;
			resync(s,
			       "subscribed, and tracking redirected here; the events and writes "
			       "missed while neither was live are lost",
			       false);
			return true;
		}
		log_info("invalidate: tracking is not redirected to this subscription after %d ms "
			 "(L2 connection down, or CLIENT TRACKING refused): marking L1 stale now, "
			 "and again once it is",
			 TRACKING_WAIT_MS);
		resync_subscribed(s);
		return true;
	}
	if (live && confirms != s->covered) {
		s->covered = confirms;
		resync(s, "tracking re-established; writes made meanwhile were notified to nobody",
		       false);
	}
	return true;
}

static void short_wait(uint64_t ns)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ns};

	nanosleep(&ts, NULL);
}

/* Wait out the reconnect backoff in slices short enough to notice shutdown. */
static void backoff_wait(const struct subscriber *s)
{
	uint64_t now = agent_now_ns(), wait = READ_TIMEOUT_MS * 1000000ull;
	struct timespec ts;

	if (s->link.next_attempt_ns > now && s->link.next_attempt_ns - now < wait)
		wait = s->link.next_attempt_ns - now;
	else if (s->link.next_attempt_ns <= now)
		wait = 1000000; /* the backoff ran out while connecting: try again soon */
	ts.tv_sec = 0;
	ts.tv_nsec = (long)wait;
	nanosleep(&ts, NULL);
}

static void *subscriber_main(void *arg)
{
	struct subscriber *s = arg;
	redisReply *r;

	while (!agent_stopping()) {
		if (!s->subscribed) {
			if (!redis_link_ready(&s->link) || !subscribe(s)) {
				backoff_wait(s);
				continue;
			}
			s->subscribed = true;
			s->resync_owed = true;
			s->subscribed_ns = agent_now_ns();
		}
		if (!resync_if_due(s)) {
			short_wait(TRACKING_POLL_MS * NS_PER_MS);
			continue;
		}
		switch (redis_link_read(&s->link, &r, READ_TIMEOUT_MS)) {
		case 1:
			handle_push(s, r);
			freeReplyObject(r);
			break;
		case -1:
			s->subscribed = false;
			if (agent_tracking())
				tracking_redirect_set(0); /* nothing to redirect to now */
			break;
		}
	}
	redis_link_close(&s->link);
	return NULL;
}

int subscriber_start(struct hc_cache *c, struct subscriber **out)
{
	struct subscriber *s = calloc(1, sizeof(*s));
	sigset_t block, old;
	int rc;

	if (!s)
		return -ENOMEM;
	s->cache = c;
	redis_link_init(&s->link, "subscriber", c, false);
	/* Signals go to the main thread, whose futex wait they cut short. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&s->thread, NULL, subscriber_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		free(s);
		return -rc;
	}
	*out = s;
	return 0;
}

void subscriber_join(struct subscriber *s)
{
	if (!s)
		return;
	pthread_join(s->thread, NULL);
	free(s);
}
