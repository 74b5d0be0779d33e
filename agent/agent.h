/*
 * agent.h - the pieces of hostcache-agent and how they meet.
 *
 * The agent is one process per host with two threads:
 *
 *   main thread        (agent.c)  takes workers' requests from the segment's ring,
 *                                 sends each batch to Redis as one pipeline (redis.c),
 *                                 answers L2 lookups, beats the heartbeat and runs
 *                                 maintenance;
 *   subscriber thread  (invalidate.c)  holds its own Redis connection subscribed to the
 *                                 invalidation channel (and, with --tracking, to Redis's
 *                                 __redis__:invalidate) and drops the keys named from L1.
 *
 * Both threads share the read-only configuration (config.c), the stop flag, the hc_cache
 * handle, which the library lets every thread of the process use, and the few words of
 * tracking.c: the invalidation counters that guard L2 answers against the read/invalidate
 * race, and the handshake that points the L2 connection's CLIENT TRACKING at the
 * subscriber's connection.  Neither thread ever waits on Redis for long: every socket wait
 * is a poll() with a deadline, so shutdown and the heartbeat are never held up by a slow or
 * dead Redis.
 */
#ifndef HOSTCACHE_AGENT_H
#define HOSTCACHE_AGENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "hostcache.h"

#define AGENT_PROG "hostcache-agent"

/* ---------------------------------------------------------------------- */
/* Configuration (config.c)                                                */

enum redis_transport { REDIS_TRANSPORT_TCP, REDIS_TRANSPORT_UNIX };

#define AGENT_HOST_MAX 255   /* longest Redis host name */
#define AGENT_PATH_MAX 107   /* longest unix socket path (sun_path less its NUL) */
#define AGENT_PREFIX_MAX 256 /* longest key prefix in Redis */
#define AGENT_CHANNEL_MAX 256
#define AGENT_ID_MAX 128
#define AGENT_TRACKING_MAX 16 /* --tracking prefixes */
#define AGENT_HTTP_MAX 63     /* longest --http ADDR:PORT */
#define AGENT_TOKEN_MAX 511   /* longest dashboard token */

/* Where Redis sends tracking invalidations for RESP2 clients (CLIENT TRACKING ... REDIRECT). */
#define AGENT_TRACKING_CHANNEL "__redis__:invalidate"

/* Every setting of the agent; filled once by agent_config_parse, read-only after. */
struct agent_config {
	char name[HC_NAME_MAX + 1]; /* segment name */
	enum redis_transport transport;
	char host[AGENT_HOST_MAX + 1];	      /* TCP */
	int port;			      /* TCP */
	char path[AGENT_PATH_MAX + 1];	      /* unix socket */
	int db;				      /* SELECT this database (0: none sent) */
	char *password;			      /* NULL: no AUTH; heap, wiped at exit */
	char redis_desc[AGENT_HOST_MAX + 64]; /* where Redis is, for logs (never a secret) */
	char prefix[AGENT_PREFIX_MAX + 1];    /* prepended to every key in Redis */
	size_t prefix_len;
	char channel[AGENT_CHANNEL_MAX + 1]; /* invalidation channel */
	uint32_t l2_ttl_ms;		     /* PX for L2 writes of values without a TTL; 0: none */
	char id[AGENT_ID_MAX + 1];	     /* "source" of the events we publish */
	int log_level;			     /* enum hc_log_level: the most verbose printed */
	uint32_t maintain_ms;		     /* maintenance period */
	uint64_t create_size;		     /* > 0: create the segment with this size */
	/*
	 * Server-assisted invalidation (CLIENT TRACKING ... BCAST), off unless one of these is
	 * set.  The prefixes are of hostcache keys: the agent puts --prefix in front of each
	 * when it tells Redis.  No two overlap (Redis refuses that).
	 */
	char tracking[AGENT_TRACKING_MAX][HC_KEY_MAX + 1];
	int ntracking;
	bool tracking_all; /* every key under --prefix */
	/*
	 * The HTTP dashboard (dashboard/http.h), off unless --http is given.  http_host is
	 * the address part of http_addr, for the log line.  The token guards its mutating
	 * endpoints; it is handed to the server at start and wiped then (NULL: refused).
	 */
	char http_addr[AGENT_HTTP_MAX + 1]; /* "" : no dashboard */
	char http_host[AGENT_HTTP_MAX + 1];
	char *dash_token; /* heap, wiped by agent_config_wipe_token */
};

/* The configuration, written only by agent_config_parse before any thread starts. */
extern struct agent_config agent_conf;

/*
 * agent_config_parse - fill agent_conf from the environment and @argv.
 * Prints usage and exits 0 on -h; prints the error and exits 2 on any usage error.
 */
void agent_config_parse(int argc, char **argv);

/* agent_config_free - wipe and free the secrets. */
void agent_config_free(void);

/* agent_config_wipe_token - wipe and free the dashboard token (once the server has it). */
void agent_config_wipe_token(void);

/* agent_tracking - is server-assisted invalidation configured? */
static inline bool agent_tracking(void)
{
	return agent_conf.ntracking > 0 || agent_conf.tracking_all;
}

/* ---------------------------------------------------------------------- */
/* Logging and time (agent.c)                                              */

/* agent_log - one line on stderr: UTC timestamp, level, message.  Thread-safe. */
void agent_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) agent_log(HC_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) agent_log(HC_LOG_WARN, __VA_ARGS__)
#define log_info(...) agent_log(HC_LOG_INFO, __VA_ARGS__)
#define log_debug(...) agent_log(HC_LOG_DEBUG, __VA_ARGS__)

/*
 * agent_escape - up to @max bytes of @data as printable ASCII for a log line: other bytes
 * and '\\' as \xNN, "..." when cut.  @out holds 4 * @max + 4 bytes at most.
 */
void agent_escape(const void *data, size_t len, size_t max, char *out, size_t cap);

/* Room for agent_escape of a whole key. */
#define AGENT_KEY_TEXT (4 * HC_KEY_MAX + 4)

/* agent_now_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t agent_now_ns(void);

/*
 * A warning that can repeat (a malformed event every millisecond, say) is logged at most
 * once per interval; the ones skipped are counted and mentioned in the next one logged.
 */
struct log_limit {
	uint64_t last_ns;
	uint64_t suppressed;
};

/* log_limit_pass - true if a warning may be logged now; *@skipped gets the count since. */
bool log_limit_pass(struct log_limit *ll, uint64_t interval_ns, uint64_t *skipped);

/* Set by SIGTERM/SIGINT; every loop of every thread checks it at least every 100 ms. */
extern atomic_int agent_stop;

static inline bool agent_stopping(void)
{
	return atomic_load_explicit(&agent_stop, memory_order_relaxed) != 0;
}

/* ---------------------------------------------------------------------- */
/* One Redis connection with reconnects (redis.c)                          */

/*
 * A connection that knows how to come back.  The owner calls redis_link_ready() whenever
 * it wants to talk; the link connects only when its backoff has run out, so a dead Redis
 * costs one bounded connect attempt per backoff period and nothing in between.  Any I/O
 * error or timeout drops the context; the next redis_link_ready() after the backoff makes
 * a new one.
 */
struct redis_link {
	const char *who;	 /* "l2" or "subscriber", for logs */
	struct hc_cache *cache;	 /* for counters; state is reported only if report_state */
	bool report_state;	 /* hc_agent_state() follows this link */
	void (*tick)(void *ctx); /* called at least every 50 ms while waiting (heartbeat) */
	void *tick_ctx;
	redisContext *ctx;	  /* NULL while disconnected */
	uint64_t connects;	  /* connections made so far: names the current one */
	bool ever_connected;	  /* a later connect is a reconnect */
	bool down_logged;	  /* the current outage was logged */
	uint32_t backoff_ms;	  /* next retry delay before jitter */
	uint64_t next_attempt_ns; /* no connect attempt before this */
	unsigned int rng;	  /* jitter */
};

/* redis_link_init - a disconnected link that may connect at once. */
void redis_link_init(struct redis_link *l, const char *who, struct hc_cache *cache,
		     bool report_state);

/*
 * redis_link_ready - true when connected; otherwise, if the backoff has run out, tries one
 * connect (TCP or unix, AUTH, SELECT, PING; about 200 ms at most for each step) and
 * returns whether it succeeded.  Never waits for the backoff.
 */
bool redis_link_ready(struct redis_link *l);

/* redis_link_drop - free the context after an error (logged with @why) and back off. */
void redis_link_drop(struct redis_link *l, const char *why);

/* redis_link_close - free the context at shutdown (no backoff, no state change). */
void redis_link_close(struct redis_link *l);

/*
 * redis_link_exchange - send every command appended to l->ctx and read @n replies into
 * @replies (each NULL or a reply to free with freeReplyObject).  @reply_ns, if not NULL,
 * gets the CLOCK_MONOTONIC time each reply was complete.  Gives up when Redis makes no
 * progress for 200 ms or the exchange takes over a second; then the link is dropped.
 * Returns the number of replies read: n on success, fewer when the link was lost (the
 * missing ones are NULL).
 */
size_t redis_link_exchange(struct redis_link *l, redisReply **replies, uint64_t *reply_ns,
			   size_t n);

/*
 * redis_link_read - wait up to @timeout_ms for one reply (or pushed message).
 * Returns 1 with *out set, 0 when none came in time, -1 when the link was lost (dropped).
 */
int redis_link_read(struct redis_link *l, redisReply **out, int timeout_ms);

/*
 * redis_link_idle_check - notice, without blocking, a connection the server closed while
 * nothing was outstanding, so the next batch does not find out the hard way.
 */
void redis_link_idle_check(struct redis_link *l);

/* redis_reply_kind - the name of a reply type, for logs. */
const char *redis_reply_kind(const redisReply *r);

/* ---------------------------------------------------------------------- */
/* Invalidation subscriber (invalidate.c)                                  */

struct subscriber; /* opaque */

/* subscriber_start - start the subscriber thread.  Returns 0 or -errno. */
int subscriber_start(struct hc_cache *c, struct subscriber **out);

/* subscriber_join - wait for the thread to notice agent_stop and free it.  Accepts NULL. */
void subscriber_join(struct subscriber *s);

/* What one invalidation message amounted to. */
struct inv_outcome {
	uint64_t applied; /* keys processed (dropped from L1 or not cached) */
	bool malformed;	  /* some part was not understood */
	bool echo;	  /* our own event */
};

/*
 * invalidate_apply - what the subscriber does with the payload of one message (@p, @len
 * bytes, not NUL-terminated): parse it and drop the keys it names from @c, filling @o.
 * Counters and the malformed-message warning are the caller's.  The fuzz target's way in.
 */
void invalidate_apply(struct hc_cache *c, const char *p, size_t len, struct inv_outcome *o);

/* ---------------------------------------------------------------------- */
/* Between the threads: the race guard and tracking (tracking.c)           */

/*
 * The read/invalidate race guard.  The main thread takes inv_guard_snapshot() of a key
 * before it sends the key's GET and checks inv_guard_changed() before and after it stores
 * the answer in L1; whoever drops keys from L1 for an invalidation calls inv_guard_key()
 * (or inv_guard_all() for a flush) first.  See tracking.c for why that is enough.
 */
uint64_t inv_guard_snapshot(const void *key, size_t klen);
bool inv_guard_changed(const void *key, size_t klen, uint64_t snap);
void inv_guard_key(const void *key, size_t klen);
void inv_guard_all(void);

/*
 * tracking_redirect_set - the subscriber's word: @client_id is the CLIENT ID of its
 * connection, now subscribed to __redis__:invalidate (0: it has none any more).  Returns
 * the generation of that subscription, which tracking_live() takes.
 */
uint64_t tracking_redirect_set(uint64_t client_id);

/*
 * tracking_live - does the L2 connection have tracking on, redirected to the subscription
 * of generation @gen?  *@confirms gets how many times tracking was (re)confirmed so far: a
 * new value means a new tracking session, and events of the gap before it were lost.
 */
bool tracking_live(uint64_t gen, uint64_t *confirms);

/*
 * tracking_sync - main thread, with the L2 link connected: (re)issue CLIENT TRACKING when
 * the connection or the subscriber's redirect id changed since it was last issued.
 */
void tracking_sync(struct redis_link *l2);

/* tracking_describe - the Redis prefixes tracked, for logs ("" when off). */
const char *tracking_describe(void);

#endif /* HOSTCACHE_AGENT_H */
