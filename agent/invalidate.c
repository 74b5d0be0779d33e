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
 * THE RESYNC RULE.  Pub/sub is fire-and-forget: while this host is not subscribed, every
 * event published is lost for it, and nothing tells which keys they named.  So, after a
 * lost subscription, L1 is flushed (hc_flush) once the subscription is back, and
 * HC_AG_RESYNCS counts it: correctness over hit rate.  The flush comes after Redis has
 * confirmed the SUBSCRIBE, so an event published after the flush is received, and one
 * published before it names an entry the flush has removed.  The first subscription of
 * the agent's life is treated the same way: until then nobody was subscribed for this
 * host (the agent was down or not yet started), so entries already in L1 may have missed
 * events too.
 *
 * Shutdown: the connection is only ever waited on through poll() with a 100 ms timeout
 * (see redis.c), and the thread checks agent_stop between waits.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"

#define READ_TIMEOUT_MS 100
#define EXCERPT_BYTES 64
#define WARN_INTERVAL_NS (1000 * 1000000ull) /* at most one malformed-message warning a second */

struct subscriber {
	pthread_t thread;
	struct hc_cache *cache;
	struct redis_link link;
	bool subscribed;
	struct log_limit malformed_log; /* malformed-message warnings are rate-limited */
};

/* What one message amounted to. */
struct inv_outcome {
	uint64_t applied; /* keys processed (dropped from L1 or not cached) */
	bool malformed;	  /* some part was not understood */
	bool echo;	  /* our own event */
};

/* ---------------------------------------------------------------------- */
/* Applying keys                                                            */

static void apply_key(struct subscriber *s, const char *key, size_t klen, struct inv_outcome *o)
{
	int rc = hc_del(s->cache, key, klen);
	char text[AGENT_KEY_TEXT];

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

/* ---------------------------------------------------------------------- */
/* Messages                                                                 */

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

/* A pushed reply on the subscribed connection: ["message", channel, payload] or a notice. */
static void handle_push(struct subscriber *s, const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		log_debug("invalidate: ignoring a %s reply on the subscription",
			  redis_reply_kind(r));
		return;
	}
	if (is_string(r->element[0], "message") && r->element[2]->type == REDIS_REPLY_STRING)
		handle_message(s, r->element[2]->str, r->element[2]->len);
	else
		log_debug("invalidate: ignoring a '%s' notice on the subscription",
			  is_string(r->element[0], "subscribe") ? "subscribe" : "other");
}

/* ---------------------------------------------------------------------- */
/* Subscription                                                             */

/* Send SUBSCRIBE and wait for its confirmation.  False (link dropped) on failure. */
static bool subscribe(struct subscriber *s)
{
	const char *argv[2] = {"SUBSCRIBE", agent_conf.channel};
	const size_t argvlen[2] = {9, strlen(agent_conf.channel)};
	redisReply *r = NULL;
	bool ok;

	if (redisAppendCommandArgv(s->link.ctx, 2, argv, argvlen) != REDIS_OK) {
		redis_link_drop(&s->link, "cannot queue SUBSCRIBE");
		return false;
	}
	if (redis_link_exchange(&s->link, &r, NULL, 1) < 1)
		return false;
	ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	     is_string(r->element[0], "subscribe") && r->element[2]->type == REDIS_REPLY_INTEGER;
	if (!ok) {
		log_warn("invalidate: unexpected %s reply to SUBSCRIBE%s%.*s", redis_reply_kind(r),
			 r->type == REDIS_REPLY_ERROR ? ": " : "",
			 r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
			 r->type == REDIS_REPLY_ERROR ? r->str : "");
		redis_link_drop(&s->link, "SUBSCRIBE failed");
	}
	freeReplyObject(r);
	return ok;
}

/* The resync rule (see the top of this file): flush L1 once subscribed again. */
static void resync(struct subscriber *s)
{
	int64_t n = hc_flush(s->cache);

	if (n < 0) {
		log_error("invalidate: subscribed to '%s' but flushing L1 failed: %s; entries "
			  "cached before may have missed invalidations",
			  agent_conf.channel, hc_strerror((int)n));
		return;
	}
	hc_agent_count(s->cache, HC_AG_RESYNCS, 1);
	log_info("invalidate: subscribed to '%s'; flushed %lld L1 entries, as events published "
		 "while unsubscribed are lost",
		 agent_conf.channel, (long long)n);
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
			resync(s);
			continue;
		}
		switch (redis_link_read(&s->link, &r, READ_TIMEOUT_MS)) {
		case 1:
			handle_push(s, r);
			freeReplyObject(r);
			break;
		case -1:
			s->subscribed = false;
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
