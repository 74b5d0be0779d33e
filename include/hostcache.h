/*
 * hostcache.h - one cache tier in POSIX shared memory for every worker
 * process of a host.
 *
 * A cache is a named shared-memory segment ("/hostcache.<name>") that every
 * process of the host maps.  Lookups are lock-free and make no system call
 * on the hit path; writers publish immutable entries with a single
 * compare-and-swap; memory is reclaimed after a grace period that spans all
 * attached processes.  No process can wedge the cache by dying: there is no
 * lock in the segment that a dead process could keep.
 *
 * Conventions
 *   - Every function that can fail returns an int: >= 0 on success, < 0 on
 *     failure.  System failures are negative errno values (-ENOENT, ...),
 *     library failures are the HC_E_* codes below, far below errno's range.
 *     hc_strerror() describes both and never returns NULL.
 *   - Handles are opaque and come back through out-parameters; close and
 *     release functions accept NULL.
 *   - The library never prints and never exits.  It reports through return
 *     codes, counters in the segment, and an optional log callback.
 *
 * Threads and processes
 *   A handle (struct hc_cache) may be used from every thread of the process
 *   that opened it.  Each thread that uses a handle is given one thread slot
 *   in the segment on first use (its RCU reader state and its statistics
 *   counters); the slot is released when the thread exits or the handle is
 *   closed, and reaped by any other process if this one dies.
 *
 *   fork(): a child process must not use handles inherited from its parent;
 *   every call on them returns HC_E_FORKED.  The child calls hc_close() on
 *   them (which only unmaps the segment, leaving the parent's slots alone)
 *   and hc_open() again.
 */
#ifndef HOSTCACHE_H
#define HOSTCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HC_VERSION_MAJOR 0
#define HC_VERSION_MINOR 1
#define HC_VERSION_PATCH 0

/* Limits. */
#define HC_KEY_MAX 250u		      /* longest key, bytes (keys are 1..250) */
#define HC_VALUE_MAX_DEFAULT 1048576u /* default largest value, bytes */
#define HC_NAME_MAX 200u	      /* longest segment name */
#define HC_ENTITY_NAME_MAX 31u	      /* longest entity (key prefix) name */
#define HC_MAX_CLASSES 128u	      /* upper bound on size classes */
#define HC_MAX_ENTITIES 64u	      /* entities tracked per segment */

/*
 * Error codes (all < 0, far below -errno).  Values are part of the ABI.
 */
enum hc_error {
	HC_E_NOTFOUND = -40000, /* no such key (or it has expired) */
	HC_E_TOOBIG = -40001,	/* key or value larger than the limits */
	HC_E_TOOSMALL = -40002, /* caller's buffer too short; *vlen = size */
	HC_E_INVAL = -40003,	/* invalid argument */
	HC_E_BADMAGIC = -40004, /* the object is not a hostcache segment */
	HC_E_VERSION = -40005,	/* segment of another ABI version or layout */
	HC_E_CORRUPT = -40006,	/* segment header inconsistent */
	HC_E_PERM = -40007,	/* owner or mode check refused the segment */
	HC_E_NOSLOT = -40008,	/* every thread slot in the segment is taken */
	HC_E_NOSPACE = -40009,	/* no memory could be freed (stalled reader) */
	HC_E_FORKED = -40010,	/* handle inherited across fork() */
	HC_E_READONLY = -40011, /* write on a read-only handle */
	HC_E_INIT = -40012,	/* a concurrent creator did not finish in time */
	HC_E_EXISTS = -40013,	/* HC_EXCL and the segment exists */
	HC_E_FORMAT = -40014,	/* malformed dump stream */
	HC_E_AGAIN = -40015,	/* nothing to do now (agent: ring empty), try later */
	HC_E_BUSY = -40016,	/* another live agent serves the segment */
};

/* hc_options.flags */
#define HC_CREATE 0x1u /* create the segment if it does not exist */
#define HC_EXCL 0x2u   /* with HC_CREATE: fail with HC_E_EXISTS if it exists */
#define HC_RDONLY 0x4u /* attach read-only (tools); writes: HC_E_READONLY */
#define HC_GROUP 0x8u  /* create with group read/write access (0660) */

/* Log levels for hc_options.log. */
enum hc_log_level { HC_LOG_ERROR = 0, HC_LOG_WARN = 1, HC_LOG_INFO = 2, HC_LOG_DEBUG = 3 };

/*
 * Options for hc_open().  A zero-initialised struct means sensible
 * defaults.  Sizing fields apply only when the call creates the segment; an
 * existing segment keeps the geometry it was created with.
 */
struct hc_options {
	uint64_t size;		  /* segment bytes; 0 = 64 MiB */
	uint32_t flags;		  /* HC_CREATE | HC_EXCL | HC_RDONLY | HC_GROUP */
	uint32_t max_threads;	  /* thread slots (readers); 0 = 128 */
	uint32_t max_value;	  /* largest value bytes; 0 = 1 MiB */
	uint32_t bytes_per_slot;  /* arena bytes per index slot; 0 = 96 */
	uint32_t open_timeout_ms; /* wait for a concurrent creator; 0 = 5000 */
	uint32_t reserved0;
	/* Optional log callback; the library never prints on its own. */
	void (*log)(void *ctx, int level, const char *msg);
	void *log_ctx;
};

struct hc_cache; /* opaque */

/*
 * hc_open - attach to (and optionally create) the segment "/hostcache.<name>".
 * @name: 1..HC_NAME_MAX characters of [A-Za-z0-9._-].
 * @opts: NULL or options; zero fields take defaults.
 * @out:  receives the handle.
 *
 * Creation is race-free: when several processes call hc_open with HC_CREATE
 * at once, exactly one initialises the segment and the others wait for it
 * (bounded by open_timeout_ms).  A creator that dies mid-initialisation is
 * detected and the segment is initialised again.  The segment is created
 * mode 0600 (0660 with HC_GROUP), opened with O_NOFOLLOW, and on attach its
 * owner must be the caller's effective uid (or, for a group segment, a
 * group the caller belongs to, with group read-write access, or group read
 * access for HC_RDONLY) and it must not be accessible to others.
 *
 * Returns 0, or -ENOENT (absent and no HC_CREATE), HC_E_EXISTS, HC_E_PERM,
 * HC_E_BADMAGIC, HC_E_VERSION, HC_E_CORRUPT, HC_E_INIT, HC_E_INVAL (bad name
 * or options: size too small for the geometry, max_value too large),
 * -ENOMEM, or another -errno from shm_open/ftruncate/mmap.
 */
int hc_open(const char *name, const struct hc_options *opts, struct hc_cache **out);

/*
 * hc_close - release this process's thread slots and unmap the segment.
 * The segment itself stays (it outlives processes); see hc_unlink().
 * Accepts NULL.  No other thread may use the handle during or after the call.
 */
void hc_close(struct hc_cache *c);

/*
 * hc_unlink - remove the name "/hostcache.<name>".  Processes that have it
 * mapped keep using it until they close it.  Returns 0, -ENOENT, HC_E_INVAL.
 */
int hc_unlink(const char *name);

/* ---------------------------------------------------------------------- */
/* Reading and writing                                                     */

/* Entry flags (hc_set_opts.flags, hc_meta.flags). */
#define HC_ENTRY_NEGATIVE 0x1u /* a cached "not found" (negative entry) */

/* Extended set options.  Zero-initialised means: no expiry, no stale window. */
struct hc_set_opts {
	uint32_t ttl_ms;     /* fresh for this long; 0 = never expires */
	uint32_t stale_ms;   /* then servable as stale for this long */
	uint32_t compute_ms; /* time the value took to compute (XFetch delta) */
	uint32_t flags;	     /* HC_ENTRY_* */
};

/*
 * hc_set - store a copy of @val under @key, fresh for @ttl_ms milliseconds
 * (0 = no expiry).  Replaces any current value atomically: a concurrent
 * reader sees the old or the new value, whole.  When the cache is full the
 * least valuable entries of the value's size class are evicted (CLOCK);
 * a set does not fail for lack of memory.
 *
 * Safe from any thread of any attached process; lock-free (never waits for
 * another process).  Returns 0, HC_E_TOOBIG (key over HC_KEY_MAX, value over
 * the segment's max_value), HC_E_INVAL (empty key, NULL with a length),
 * HC_E_READONLY, HC_E_NOSLOT, HC_E_FORKED, or HC_E_NOSPACE when memory cannot
 * be reclaimed because a reader has stalled inside a read (for example a
 * process stopped while it holds an hc_view).
 */
int hc_set(struct hc_cache *c, const void *key, size_t klen, const void *val, size_t vlen,
	   uint32_t ttl_ms);

/* hc_set_ex - hc_set with a stale window, compute time and flags. */
int hc_set_ex(struct hc_cache *c, const void *key, size_t klen, const void *val, size_t vlen,
	      const struct hc_set_opts *opts);

/*
 * hc_get - copy the fresh value of @key into @buf (capacity @cap).
 * On return *vlen holds the value's length whenever the key was found.
 *
 * Returns 0 on a hit; HC_E_NOTFOUND on a miss or when the entry is expired
 * (past its TTL) or negative; HC_E_TOOSMALL when @cap < *vlen (nothing
 * copied; call again with a larger buffer); HC_E_TOOBIG, HC_E_INVAL,
 * HC_E_NOSLOT, HC_E_FORKED, or HC_E_READONLY on a handle opened with
 * HC_RDONLY (a lookup needs a reader slot in the segment, which a read-only
 * mapping cannot claim; read-only tools walk the segment with hc_scan).
 *
 * Lock-free and wait-free on the hit path: no lock, no system call, never
 * delayed by writers, other readers, or stopped or dead processes.
 */
int hc_get(struct hc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);

/* Where a value came from. */
enum hc_layer { HC_LAYER_L1 = 0, HC_LAYER_L2 = 1, HC_LAYER_ORIGIN = 2, HC_LAYER_COUNT = 3 };

/* Where a result of hc_get_or_load() came from (hc_meta.source). */
enum hc_source {
	HC_SRC_L1 = 0,	     /* a fresh value from the shared-memory tier */
	HC_SRC_L2 = 1,	     /* from Redis, through the agent */
	HC_SRC_ORIGIN = 2,   /* this call (or the flight it waited on) ran the loader */
	HC_SRC_STALE = 3,    /* a value past its TTL: stale-while-revalidate or -if-error */
	HC_SRC_NEGATIVE = 4, /* a cached "not found" */
};

/* Metadata of an entry as seen at read time. */
struct hc_meta {
	uint64_t etag;	       /* 48-bit content hash of the value, computed at set */
	int64_t ttl_left_ms;   /* ms until stale (< 0: stale by that much);
				   INT64_MAX when the entry never expires */
	int64_t stale_left_ms; /* ms until unservable (fresh_until + stale) */
	int64_t age_ms;	       /* ms since the value was stored, within 1 % of its
				   TTL; -1 when unknown (an entry without a TTL) */
	uint32_t compute_ms;   /* XFetch delta stored with the entry */
	uint32_t flags;	       /* HC_ENTRY_* */
	uint8_t layer;	       /* enum hc_layer */
	uint8_t stale;	       /* 1 when returned past its TTL (HC_GET_STALE) */
	uint8_t source;	       /* enum hc_source (hc_get_or_load); HC_SRC_L1 otherwise */
	uint8_t coalesced;     /* 1: this caller waited on another caller's load */
	uint8_t reserved[4];
};

/* hc_get_ex flags */
#define HC_GET_STALE 0x1u    /* also return an entry inside its stale window */
#define HC_GET_NEGATIVE 0x2u /* also return negative entries (as hits) */

/*
 * hc_get_ex - hc_get that also fills @meta (may be NULL) and honours
 * HC_GET_* flags.  Same return codes and guarantees as hc_get.
 */
int hc_get_ex(struct hc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
	      struct hc_meta *meta, unsigned flags);

/*
 * Zero-copy read.  On success v->data points at the value inside the
 * segment and stays valid (and unchanged) until hc_view_release(), even if
 * the key is replaced or deleted meanwhile.  Holding a view delays memory
 * reclamation for the whole host: release it promptly, and do not keep one
 * across blocking calls.  Views nest; release them in reverse order.
 */
struct hc_view {
	const void *data;
	size_t len;
	struct hc_meta meta;
	void *priv; /* internal */
};

/* hc_view_get - returns 0 and fills @v, or the hc_get error codes. */
int hc_view_get(struct hc_cache *c, const void *key, size_t klen, struct hc_view *v);

/* hc_view_release - end a view obtained from hc_view_get. Accepts NULL. */
void hc_view_release(struct hc_cache *c, struct hc_view *v);

/*
 * hc_del - remove @key.  Returns 0 if an entry was removed, HC_E_NOTFOUND if
 * there was none, or the argument errors of hc_set.  Lock-free.
 */
int hc_del(struct hc_cache *c, const void *key, size_t klen);

/*
 * hc_flush - remove every entry.  Concurrent sets may survive it.
 * Returns the number of entries removed (>= 0) or an error.
 */
int64_t hc_flush(struct hc_cache *c);

/* ---------------------------------------------------------------------- */
/* Iteration, dump and load                                                */

/* One entry handed to an iteration callback; pointers valid during the call. */
struct hc_item {
	const void *key;
	size_t klen;
	const void *val;
	size_t vlen;
	struct hc_meta meta;
};

/*
 * hc_scan - visit live entries (expired ones included, meta tells) without
 * blocking writers: the index is walked bucket by bucket, each bucket's
 * entries are copied out in one short read-side section, and @fn runs on
 * the copies outside it, so @fn may block (write to a pipe, say) without
 * holding back memory reclamation.  Entries written during the scan may
 * or may not be seen.  @fn returns 0 to go on or non-zero to stop (that
 * value is then returned).  On a read-only handle each copy is verified
 * against the entry's content hash (a block reused meanwhile is skipped).
 * Returns 0 when the walk completed, @fn's non-zero value, or an error.
 */
int hc_scan(struct hc_cache *c, int (*fn)(void *ctx, const struct hc_item *it), void *ctx);

/*
 * hc_dump - write every live entry to @fd in the portable dump format
 * (little-endian, versioned, checksummed; remaining TTLs are stored as
 * durations).  Returns the number of entries written or an error.
 */
int64_t hc_dump(struct hc_cache *c, int fd);

/*
 * hc_load - read a dump from @fd and set every entry whose TTL has not
 * run out.  A malformed stream stops the load with HC_E_FORMAT after the
 * entries before the fault have been stored.  Returns the number of entries
 * stored or an error.
 */
int64_t hc_load(struct hc_cache *c, int fd);

/* ---------------------------------------------------------------------- */
/* Loading: single-flight across processes, early expiration, stale serving */

/*
 * What a loader is handed.  ttl_ms and stale_ms come in as the call's
 * options and the loader may change them for this value (a loader that
 * knows the origin's own expiry, say).  The value is given with
 * hc_load_value(); a loader that returns 0 without calling it stores an
 * empty value.
 */
struct hc_load {
	uint32_t ttl_ms;
	uint32_t stale_ms;
	void *priv; /* internal */
};

/*
 * A loader: the caller's origin call (a database query).  Returns 0 with
 * the value given through hc_load_value(), HC_E_NOTFOUND when the origin
 * has no such key, or any other negative code for an error (handed to every
 * caller waiting on this load, or replaced by a stale value, see error_ms).
 * It runs in the calling thread, at most once per key per host at a time.
 */
typedef int (*hc_loader_fn)(void *ctx, const void *key, size_t klen, struct hc_load *ld);

/* hc_load_value - give the loaded value (copied).  0, HC_E_TOOBIG, -ENOMEM. */
int hc_load_value(struct hc_load *ld, const void *val, size_t vlen);

/* hc_load_opts.flags */
#define HC_LOAD_NO_L2 0x8u	   /* do not ask L2 (the agent) on a miss, nor write to it */
#define HC_LOAD_NO_XFETCH 0x1u	   /* no probabilistic early recompute */
#define HC_LOAD_WRITE_THROUGH 0x2u /* loaded values go to L2 as well (the agent) */
/*
 * Refreshes (XFetch and stale-while-revalidate) run in the handle's
 * refresher thread (started on first use, stopped by hc_close) and every
 * caller returns the current value at once.  @ctx must then stay valid
 * until hc_close(); with the queue full (256) the caller refreshes inline.
 */
#define HC_LOAD_BACKGROUND 0x4u

/*
 * Options of hc_get_or_load().  Zero-initialised means: values never
 * expire, no stale serving, no negative caching, a 10 s lease, XFetch with
 * beta 1 (or the entity's beta).
 */
struct hc_load_opts {
	uint32_t ttl_ms;	  /* fresh lifetime of a loaded value; 0 = never expires */
	uint32_t stale_ms;	  /* stale-while-revalidate: after ttl, serve the old value
				     this long while one refresh runs */
	uint32_t error_ms;	  /* stale-if-error: after ttl, serve the old value this
				     long when the loader fails (counted from ttl) */
	uint32_t negative_ttl_ms; /* cache "not found" this long; 0 = do not */
	uint32_t lease_ms;	  /* a loading owner keeps the flight this long before a
				     waiter takes over; 0 = 10000 */
	uint32_t jitter_pct;	  /* shorten each TTL by a random 0..jitter_pct %, so keys
				     written together do not expire together; 0..50 */
	uint32_t flags;		  /* HC_LOAD_* */
	uint32_t reserved;
	double beta; /* XFetch beta: 0 = the entity's (hc_entity_beta) or 1.0;
				     < 0 turns early recompute off */
};

/*
 * hc_get_or_load - the value of @key: from the cache, or loaded once per
 * host by @loader, whichever process asks.
 *
 *   fresh hit      returned at once.  If XFetch draws an early recompute
 *                  (now - compute_ms * beta * ln(rand()) >= expiry), this
 *                  caller refreshes the key (single-flight: a caller that
 *                  finds a refresh running returns the current value); with
 *                  HC_LOAD_BACKGROUND the refresher thread does, and this
 *                  caller returns the current value too.
 *   stale hit      (past ttl, inside stale_ms) returned at once, except to
 *                  the one caller on the host that wins the refresh: it runs
 *                  the loader and returns the new value (or, on a loader
 *                  error, the stale one), or with HC_LOAD_BACKGROUND hands
 *                  it to the refresher thread.  Nobody else waits.
 *   miss           one caller on the host (the owner of the key's flight)
 *                  asks L2 through the agent (when one is alive; at most
 *                  250 ms; HC_LOAD_NO_L2 skips it), then on an L2 miss
 *                  runs the loader, publishes the value and queues it for
 *                  L2 (SET with its TTL); every other
 *                  caller, in any process, sleeps on the flight's futex and
 *                  is woken with the value.  A waiter that finds the owner
 *                  dead takes over at once (checked every 20 ms while it
 *                  waits); one that sees the lease run out takes over too.
 *   loader error   the owner and its waiters get the error, or the old value
 *                  if one exists within error_ms past its TTL (HC_SRC_STALE).
 *   not found      HC_E_NOTFOUND; cached as a negative entry for
 *                  negative_ttl_ms when that is set (later calls return
 *                  HC_E_NOTFOUND with meta.source HC_SRC_NEGATIVE).
 *
 * The value is copied to @buf (capacity @cap); *vlen gets its length.
 * @meta (may be NULL) says where it came from, its age, TTL left and ETag.
 * @opts may be NULL (defaults).  Returns 0, HC_E_NOTFOUND, HC_E_TOOSMALL
 * (*vlen set; the value is cached, so call again with a larger buffer),
 * the loader's error, or the errors of hc_get and hc_set.
 */
int hc_get_or_load(struct hc_cache *c, const void *key, size_t klen, hc_loader_fn loader, void *ctx,
		   const struct hc_load_opts *opts, void *buf, size_t cap, size_t *vlen,
		   struct hc_meta *meta);

/* One key of a batch: in: key, klen, buf, cap; out: vlen, rc, meta. */
struct hc_batch_item {
	const void *key;
	size_t klen;
	void *buf;
	size_t cap;
	size_t vlen;
	int rc; /* as hc_get_or_load returns for this key */
	struct hc_meta meta;
};

/*
 * A batch loader: load the @n items of @items (their keys; ignore the rest)
 * in one origin call.  For each item it calls hc_load_value(&lds[i], ...)
 * and sets rc[i] to 0, HC_E_NOTFOUND or an error.  Returns 0, or an error
 * that applies to every item.
 */
typedef int (*hc_batch_loader_fn)(void *ctx, const struct hc_batch_item *const *items, size_t n,
				  struct hc_load *lds, int *rc);

/*
 * hc_get_many - hc_get_or_load for @n keys at once: hits are served from the
 * cache, the misses this call owns are loaded with ONE call of @loader, and
 * misses another caller is already loading are waited for (coalesced).
 * Each item's rc and meta are set as hc_get_or_load would; refreshes that
 * fall due (XFetch, stale-while-revalidate) join the same batch-loader call
 * (HC_LOAD_BACKGROUND does not apply to batches).  Returns the number of
 * items with rc 0, or an error for the whole call (HC_E_INVAL).
 */
int hc_get_many(struct hc_cache *c, struct hc_batch_item *items, size_t n,
		hc_batch_loader_fn loader, void *ctx, const struct hc_load_opts *opts);

/*
 * hc_entity_beta - the XFetch beta of an entity (key prefix before ':'),
 * kept in the segment for every process: used by hc_get_or_load calls whose
 * opts.beta is 0.  beta 0 resets to the default (1.0); < 0 turns early
 * recompute off for the entity.  Returns 0 or HC_E_INVAL.
 */
int hc_entity_beta(struct hc_cache *c, const char *entity, double beta);

/*
 * hc_set flags for the write paths (hc_set_opts.flags, with HC_ENTRY_*).
 * HC_SET_WRITE_THROUGH: also write the value to L2; the agent copies it to
 * Redis and, if that write fails, deletes the Redis key (so no stale value
 * stays behind there).  hc_set_ex then returns 0 once L1 holds the value
 * and the L2 write is queued (or no agent serves the segment), and
 * HC_E_AGAIN when L1 holds it but an agent is configured and could not take
 * the write (dead, or its ring full): Redis keeps its old value until its
 * TTL ends.
 */
#define HC_SET_WRITE_THROUGH 0x100u

/*
 * hc_invalidate - drop @key from every tier: deletes it here and, through
 * the agent, in Redis, and publishes an invalidation event that every other
 * host's agent applies to its L1.  Returns 0 whether or not the key was
 * cached (and the event is queued, or no agent serves this segment),
 * HC_E_AGAIN when L1 is done but an agent is configured and could not take
 * the event (dead, or its ring full): Redis and other hosts were not told,
 * or the errors of hc_del.
 */
int hc_invalidate(struct hc_cache *c, const void *key, size_t klen);

/* ---------------------------------------------------------------------- */
/* The agent interface (hostcache-agent; see agent/)                       */

/*
 * Workers reach the host's agent through a bounded ring of requests in the
 * segment and a futex doorbell: no sockets, no blocking.  The library
 * queues requests itself (hc_get_or_load's L2 lookups and writes, write-
 * through sets, invalidations) when an agent's heartbeat is fresh, and
 * skips L2 at once, counted, when the agent is absent or the ring is full.
 * These calls are for the agent process.
 */

/* Request kinds (struct hc_request.op). */
enum hc_req_op {
	HC_REQ_GET = 1,		/* L2 lookup for a flight owner: answer with hc_agent_answer */
	HC_REQ_SET = 2,		/* copy the key's current L1 value to L2 (ttl_ms: its TTL left) */
	HC_REQ_SET_THROUGH = 3, /* as SET, for a write-through hc_set: on failure delete in L2 */
	HC_REQ_DEL = 4,		/* delete in L2 */
	HC_REQ_INVALIDATE = 5,	/* delete in L2 and publish an invalidation event */
};

/* One request taken from the ring. */
struct hc_request {
	uint32_t op;		  /* enum hc_req_op */
	uint32_t klen;		  /* 1..HC_KEY_MAX */
	uint32_t ttl_ms;	  /* SET: TTL for L2 (0: the agent's default) */
	uint32_t stale_ms;	  /* GET: stale window for the value filled into L1 */
	uint64_t token;		  /* GET: identifies the waiting owner (for hc_agent_answer) */
	uint64_t queued_ms;	  /* when it was queued (CLOCK_MONOTONIC ms) */
	char key[HC_KEY_MAX + 1]; /* NUL-terminated for convenience */
};

/* Answers to an HC_REQ_GET. */
enum hc_l2_result { HC_L2_HIT = 2, HC_L2_MISS = 3, HC_L2_ERROR = 4 };

/*
 * hc_agent_begin - become the segment's agent: records this process as the
 * agent and starts its heartbeat.  Returns 0, HC_E_BUSY if another live
 * process is the agent (its heartbeat fresh), or an error.
 */
int hc_agent_begin(struct hc_cache *c);

/* hc_agent_heartbeat - say the agent is alive (call at least every 250 ms). */
void hc_agent_heartbeat(struct hc_cache *c);

/* hc_agent_end - stop being the agent (workers skip L2 from now on). */
void hc_agent_end(struct hc_cache *c);

/*
 * hc_agent_take - take up to @max queued requests into @out, waiting on the
 * doorbell up to @timeout_ms when the ring is empty (0: do not wait).
 * Returns how many (>= 1), HC_E_AGAIN when none came, or an error.  A slot
 * whose producer died (or stalled over 200 ms) mid-write is skipped.
 */
int hc_agent_take(struct hc_cache *c, struct hc_request *out, int max, int timeout_ms);

/*
 * hc_agent_answer - answer an HC_REQ_GET: on HC_L2_HIT store @val (@vlen
 * bytes) in L1 with @ttl_ms (0: never expires) and the request's stale
 * window, then wake the owner, which reads it from L1.  An owner that gave
 * up waiting meanwhile is left alone and the value is not stored: that
 * owner went to the origin, whose value is newer.  Returns 0 or an error of
 * hc_set.
 */
int hc_agent_answer(struct hc_cache *c, const struct hc_request *r, int result, const void *val,
		    size_t vlen, uint32_t ttl_ms);

/*
 * hc_mark_stale - make every fresh entry stale now, keeping its stale
 * window: plain reads miss it, hc_get_or_load serves it stale (within the
 * window) while one refresh per key runs, and a failed load can still be
 * answered with it.  The agent's rule for lost invalidation events (see
 * README): entries that might have been invalidated unseen are revalidated
 * rather than trusted or thrown away.  Returns how many entries were marked.
 */
int64_t hc_mark_stale(struct hc_cache *c);

/* Agent-side counters, shown by hc_stats (struct hc_agent_stats). */
enum hc_agent_ctr {
	HC_AG_ROUND_TRIPS,   /* pipelines sent to Redis */
	HC_AG_COMMANDS,	     /* commands in them */
	HC_AG_L2_ERRORS,     /* commands that failed */
	HC_AG_WRITE_FAILS,   /* write-through writes that failed (key deleted in L2) */
	HC_AG_INV_RECEIVED,  /* invalidation messages received */
	HC_AG_INV_APPLIED,   /* keys they named, dropped from L1 (whether cached or not) */
	HC_AG_INV_MALFORMED, /* messages that could not be understood */
	HC_AG_INV_ECHOES,    /* this agent's own messages, ignored */
	HC_AG_INV_PUBLISHED, /* invalidation events published */
	HC_AG_RECONNECTS,    /* connections to Redis re-established */
	HC_AG_RESYNCS,	     /* L1 flushes after a lost subscription (events may be lost) */
	HC_AG_N
};

/* hc_agent_count - add @n to an agent counter. */
void hc_agent_count(struct hc_cache *c, enum hc_agent_ctr k, uint64_t n);

/*
 * hc_agent_l2 - account one L2 lookup of @key: result HC_L2_HIT, _MISS or
 * _ERROR, and its latency (for the L2 layer's counters and histogram).
 */
void hc_agent_l2(struct hc_cache *c, const void *key, size_t klen, int result, uint64_t ns);

/* Redis connection state, for the dashboards (hc_agent_state). */
enum hc_redis_state { HC_REDIS_UNKNOWN = 0, HC_REDIS_UP = 1, HC_REDIS_DOWN = 2 };
void hc_agent_state(struct hc_cache *c, enum hc_redis_state st);

/* ---------------------------------------------------------------------- */
/* HTTP conditional requests                                               */

/* Room for an ETag as hc_etag_format writes it, NUL included. */
#define HC_ETAG_BUFSZ 16

/*
 * hc_etag_format - the strong validator of an entry (hc_meta.etag) as an
 * HTTP ETag value with its quotes: "\"0123456789ab\"" (12 lowercase hex
 * digits).  Returns the length written (14), or HC_E_TOOSMALL when @cap is
 * under HC_ETAG_BUFSZ.
 */
int hc_etag_format(uint64_t etag, char *buf, size_t cap);

/*
 * hc_etag_of - the ETag (hc_meta.etag) that hostcache gives a value with
 * these @len bytes, without storing it: for answers that do not come from
 * the cache (the new row a PUT answers with, a mode without the cache), so
 * that they carry the ETag later cached answers of the same content carry.
 */
uint64_t hc_etag_of(const void *val, size_t len);

/*
 * hc_etag_match - does an If-None-Match header value (@hdr, @len bytes)
 * match @etag?  Uses the weak comparison that RFC 9110 prescribes for
 * If-None-Match: a W/ prefix is ignored; "*" matches any current entry; a
 * comma-separated list (with optional whitespace and empty elements)
 * matches if any element does.  Returns 1 (match: answer 304), 0 (no
 * match), or HC_E_INVAL for a malformed header (which the caller should
 * treat as absent: RFC 9110 says to ignore it).
 */
int hc_etag_match(const char *hdr, size_t len, uint64_t etag);

/*
 * hc_cache_control - a Cache-Control response value from an entry's
 * metadata: "max-age=N" (seconds of TTL left, rounded down, 0 when stale),
 * plus ", stale-while-revalidate=M" when the entry has a stale window left
 * (seconds of it beyond the TTL), or "max-age=31536000" for an entry that
 * never expires (one year, the customary "forever").  Returns the length
 * written, or HC_E_TOOSMALL (64 bytes always suffice), HC_E_INVAL.
 */
int hc_cache_control(const struct hc_meta *meta, char *buf, size_t cap);

/* ---------------------------------------------------------------------- */
/* Statistics                                                              */

/* Counters kept per layer, per entity and in total. */
struct hc_counters {
	uint64_t hits;
	uint64_t misses;
	uint64_t sets;
	uint64_t deletes;
	uint64_t evictions;
	uint64_t expirations;
	uint64_t stale_hits;
	uint64_t negative_hits;
	uint64_t errors;
	uint64_t set_fails;
};

struct hc_class_stats {
	uint32_t block_size; /* bytes per block, entry header included */
	uint32_t slabs;	     /* slabs currently assigned to the class */
	uint64_t items;	     /* live entries */
	uint64_t bytes;	     /* key + value bytes of live entries */
};

/*
 * Loader latency histogram: bucket 0 counts loads under 64 us, bucket i
 * (1..HC_HIST_N-2) those in [2^(i-1), 2^i) * 64 us, the last one the rest
 * (1.05 s and more).  HC_HIST_BOUND_US(i) is bucket i's upper bound.
 */
#define HC_HIST_N 16
#define HC_HIST_BOUND_US(i) (UINT64_C(64) << (i))

/* Single-flight and loading counters (hc_get_or_load, hc_get_many). */
struct hc_load_stats {
	uint64_t leaders;	       /* flights owned: this caller ran the load for a miss */
	uint64_t coalesced;	       /* callers that waited on another caller's load */
	uint64_t takeovers;	       /* flights taken over from a dead owner */
	uint64_t lease_expiries;       /* flights taken over from an owner past its lease */
	uint64_t early_refreshes;      /* XFetch early recomputes run */
	uint64_t stale_refreshes;      /* stale-while-revalidate refreshes run */
	uint64_t stale_served;	       /* stale values returned (revalidate or error) */
	uint64_t loads;		       /* keys passed to a loader */
	uint64_t load_errors;	       /* of them, failed (not counting "not found") */
	uint64_t uncoalesced;	       /* loads run without a flight: the flight table was full */
	uint64_t batch_calls;	       /* batch-loader calls */
	uint64_t load_hist[HC_HIST_N]; /* loader latency per key */
};

/* The agent and its ring (see "The agent interface"). */
struct hc_agent_stats {
	int32_t pid;		     /* the agent process; 0 when none */
	uint32_t alive;		     /* its heartbeat is fresh */
	int64_t heartbeat_age_ms;    /* -1 when none */
	uint32_t redis_state;	     /* enum hc_redis_state */
	uint32_t ring_size;	     /* request slots */
	uint64_t ring_depth;	     /* requests queued now */
	uint64_t ring_drops;	     /* requests not queued: the ring was full */
	uint64_t l2_skipped;	     /* L2 skipped: no live agent */
	uint64_t ring_skipped;	     /* slots of producers that died mid-write */
	uint64_t l2_timeouts;	     /* flight owners that stopped waiting for L2 */
	uint64_t ctr[HC_AG_N];	     /* enum hc_agent_ctr */
	uint64_t l2_hist[HC_HIST_N]; /* L2 lookup latency (HC_HIST_BOUND_US) */
};

struct hc_entity_stats {
	char name[HC_ENTITY_NAME_MAX + 1]; /* "" for keys without a ':' prefix */
	struct hc_counters layer[HC_LAYER_COUNT];
	struct hc_load_stats load;
	double beta; /* XFetch beta (hc_entity_beta); 1.0 by default */
};

struct hc_stats {
	struct hc_counters layer[HC_LAYER_COUNT]; /* l1, l2, origin; all entities */
	struct hc_load_stats load;		  /* all entities */
	uint32_t flights_total;			  /* flight records in the segment */
	uint32_t flights_active;		  /* of them, loading now */
	struct hc_agent_stats agent;
	uint32_t nclasses;
	uint32_t nentities;
	struct hc_class_stats cls[HC_MAX_CLASSES];
	struct hc_entity_stats entity[HC_MAX_ENTITIES];
	uint64_t items;	       /* live entries, all classes */
	uint64_t bytes;	       /* key + value bytes, all classes */
	uint64_t segment_size; /* bytes */
	uint64_t arena_size;   /* bytes of slab memory */
	uint32_t slab_size;    /* bytes per slab */
	uint32_t slabs_total;
	uint32_t slabs_used;
	uint32_t threads_active;   /* thread slots in use */
	uint64_t index_slots;	   /* hash index capacity (entries) */
	uint64_t epoch;		   /* reclamation epoch */
	uint64_t safe_epoch;	   /* blocks retired before it are free */
	uint64_t reclaim_waits;	   /* grace periods waited for */
	uint64_t reclaim_stalls;   /* grace periods cut short by a stalled reader */
	uint64_t slots_reaped;	   /* dead thread slots reclaimed */
	uint64_t blocks_recovered; /* blocks recovered from dead writers */
	uint64_t slab_moves;	   /* slabs moved between size classes */
	uint64_t index_evictions;  /* entries dropped because both buckets were full */
	uint64_t created_unix_ms;  /* segment creation time */
};

/*
 * hc_stats - sum every thread slot's counters into @out.  Readers of the
 * counters never contend with the writers (each thread writes only its own
 * slot).  The snapshot is not atomic across counters.  Works on read-only
 * handles.  Returns 0 or an error.
 */
int hc_stats(struct hc_cache *c, struct hc_stats *out);

/* ---------------------------------------------------------------------- */
/* Inspection and maintenance (used by shmtool and the agent)              */

struct hc_info {
	char name[HC_NAME_MAX + 1];
	uint32_t abi_version;
	uint32_t layout_hash;
	uint64_t size;
	uint32_t uid, gid, mode;
	int32_t creator_pid;
	uint64_t created_unix_ms;
	uint32_t max_threads;
	uint32_t max_value;
	uint32_t slab_size;
	uint32_t slabs_total;
	uint32_t nclasses;
	uint32_t index_buckets;
	uint32_t bucket_slots;
	uint32_t read_only; /* this handle */
	uint64_t index_bytes;
	uint64_t arena_bytes;
	uint64_t meta_bytes; /* header, thread slots, slab table */
};

/* hc_info - describe the segment's geometry.  Returns 0 or an error. */
int hc_info(struct hc_cache *c, struct hc_info *out);

/* State of one thread slot, as reported by hc_readers(). */
struct hc_reader {
	uint32_t slot;
	int32_t pid;
	int32_t tid;
	uint32_t alive;	     /* 1 alive, 0 dead (process gone or pid reused) */
	uint64_t epoch;	     /* 0 when outside a read-side section */
	uint64_t start_time; /* process start time, clock ticks since boot */
};

/*
 * hc_readers - call @fn for every claimed thread slot.  With @reap set,
 * slots of dead processes are reclaimed (their counters are kept) and
 * blocks such processes left behind are recovered.  Returns the number of
 * slots reaped (with @reap) or of slots visited, or an error.
 */
int hc_readers(struct hc_cache *c, int reap, void (*fn)(void *ctx, const struct hc_reader *r),
	       void *ctx);

/*
 * hc_maintain - one round of background maintenance: reap dead thread slots,
 * free the flights of dead loaders, recover blocks of dead writers, advance
 * the grace period, drop expired
 * entries (at most @budget blocks examined; 0 = all).  Returns the number of
 * entries expired or an error.  Safe to run from any process at any time.
 */
int64_t hc_maintain(struct hc_cache *c, uint64_t budget);

/* Severity of a check finding. */
enum hc_check_severity { HC_CHECK_ERROR = 0, HC_CHECK_WARN = 1 };

struct hc_check_result {
	uint64_t errors;   /* inconsistencies: the segment is damaged */
	uint64_t warnings; /* recoverable states (dead slots, orphaned blocks) */
	uint64_t entries;  /* indexed entries walked */
	uint64_t blocks;   /* blocks walked */
	uint64_t blocks_free, blocks_alloc, blocks_live, blocks_retired;
};

/*
 * hc_check - walk the whole segment (header, slab table, every block, the
 * index, the thread slots) and report every inconsistency through @fn
 * (may be NULL).  Every offset is bounds-checked; a corrupt segment gives
 * findings, never a crash.  On a segment that is being written, transient
 * states can appear; a quiescent segment must check clean.
 * Returns 0 when no error was found, 1 when errors were found, or < 0.
 */
int hc_check(struct hc_cache *c, void (*fn)(void *ctx, int severity, const char *msg), void *ctx,
	     struct hc_check_result *res);

/*
 * hc_check_image - the same validator over a copy of a segment in memory
 * (no mmap, no live processes assumed).  Used by hc_check, by tests that
 * corrupt images on purpose, and by fuzzers.  Same return values.
 */
int hc_check_image(const void *image, size_t len,
		   void (*fn)(void *ctx, int severity, const char *msg), void *ctx,
		   struct hc_check_result *res);

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

/* hc_strerror - text for any return code (HC_E_* or -errno). Never NULL. */
const char *hc_strerror(int err);

/* hc_hash64 - the 64-bit hash hostcache uses for keys and content. */
uint64_t hc_hash64(const void *data, size_t len, uint64_t seed);

/* hc_entity_of - length of the entity prefix of a key (before the first
 * ':'), 0 when the key has none or the prefix is longer than
 * HC_ENTITY_NAME_MAX. */
size_t hc_entity_of(const void *key, size_t klen);

#ifdef __cplusplus
}
#endif
#endif /* HOSTCACHE_H */
