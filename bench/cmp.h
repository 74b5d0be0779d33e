/*
 * cmp.h - hostcache-compare: the systems a user would pick instead of
 * hostcache, behind one interface, measured by compare.c on the same keys,
 * values and access streams.
 *
 *   cmp_local.c  hostcache (hc_get, hc_get_or_load on hits), the naive
 *                process-shared rwlock table (rwtable.c), and a per-process
 *                LRU with TTL (what each worker keeps today)
 *   cmp_net.c    Redis over loopback through hiredis (one GET per request,
 *                and pipelined), memcached over loopback through
 *                libmemcached (get, and multi-get); each starts its own
 *                private server
 *
 * Life of a system in one case: setup() in the parent (start the server or
 * create the store for the case's keys and value size), fill() in the
 * parent (every key 0..keys-1 stored), then attach() in each fork()ed
 * worker, get()/set() calls, detach(), and teardown() in the parent.
 * mem_bytes() is read in the parent after fill().  Keys are make_key(id)
 * (util.h), as in hostcache-bench.
 */
#ifndef BENCH_CMP_H
#define BENCH_CMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define CMP_KEY_LEN BENCH_KEY_LEN /* "key-" + 16 hex digits (util.h) */
#define CMP_VAL_MAX 16384	  /* largest value size of the cases */
#define CMP_BATCH_MAX 16	  /* keys per call of the batching systems */

/* One case: the workload every system runs. */
struct cmp_case {
	const char *group;   /* the dimension it varies: "size", "keys", ... */
	uint32_t value_size; /* bytes per value: 16, 100, 1024, 16384 */
	uint64_t keys;	     /* distinct keys, ids 0..keys-1 */
	double zipf;	     /* Zipf exponent; 0 = uniform */
	unsigned read_pct;   /* gets among operations: 100, 90, 50 */
	unsigned procs;	     /* worker processes */
	bool big;	     /* the 10 M keys case (--big) */
};

struct cmp_sys {
	const char *name; /* short, for tables and CSV: "hostcache", "redis" */
	const char *what; /* one line: how it is used */
	unsigned batch;	  /* keys per get() call: 1, or CMP_BATCH_MAX */
	bool per_process; /* each worker has its own copy (the LRU) */
	bool local;	  /* in the workers' own memory, no server: a call costs tens
			     of ns, so calls are timed 64 at a time */
	/*
	 * Parent: prepare for @c (start a server, create a store).  0, or -1
	 * with a reason in @why: the system is skipped for this case (a server
	 * that is not installed, a store that does not fit).
	 */
	int (*setup)(const struct cmp_case *c, char *why, size_t whylen);
	/* Parent: store every key of @c, id 0..keys-1 (cmp_value()).  0 or -1. */
	int (*fill)(const struct cmp_case *c);
	/* Parent: bytes of memory the store uses now (server RSS growth,
	 * used_memory, segment), 0 when not known. */
	uint64_t (*mem_bytes)(void);
	/* Parent: stop the server, remove the store. */
	void (*teardown)(void);

	/* Worker (after fork): a handle of this process, NULL on failure. */
	void *(*attach)(const struct cmp_case *c, unsigned proc);
	/*
	 * Fetch the @n keys @ids (n <= batch) into bufs[i] (CMP_VAL_MAX bytes
	 * each), lens[i] = the value's length, or SIZE_MAX for a miss.
	 * Returns 0, or -1 on an error (the run stops).
	 */
	int (*get)(void *h, const uint64_t *ids, unsigned n, uint8_t *const *bufs, size_t *lens);
	/* Store key @id with its value (cmp_value(id, size)).  0 or -1. */
	int (*set)(void *h, uint64_t id, const uint8_t *val, size_t vlen);
	void (*detach)(void *h);
};

/* The systems, in table order (compare.c); NULL-terminated. */
extern const struct cmp_sys cmp_hc_get, cmp_hc_load, cmp_rwlock, cmp_lru;
extern const struct cmp_sys cmp_redis, cmp_redis_pipe, cmp_memcached, cmp_memcached_mget;

/* ---- shared helpers (compare.c) ---- */

/* The value of @id, @size bytes (the first 8 depend on id). */
void cmp_value(uint64_t id, uint8_t *val, size_t size);
/* Is @val (@len bytes) the value of @id for this size? */
bool cmp_value_ok(uint64_t id, const uint8_t *val, size_t len, size_t size);
/* Path of a program, or NULL: PATH, then /usr/sbin, /usr/bin (servers). */
const char *cmp_find_program(const char *name, char *buf, size_t cap);
/* A private temp directory for this run (created on first use). */
const char *cmp_tmpdir(void);
/* Resident memory of process @pid in bytes (VmRSS), 0 if unknown. */
uint64_t cmp_rss(int pid);
/* Run @fn on every exit of the parent (servers to stop). */
void cmp_at_exit(void (*fn)(void));

#endif /* BENCH_CMP_H */
