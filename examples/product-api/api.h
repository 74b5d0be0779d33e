/*
 * api.h - one worker process of the product API: HTTP (libmicrohttpd) in
 * front of the products table, through hostcache.
 */
#ifndef PRODUCT_API_H
#define PRODUCT_API_H

#include <stdatomic.h>
#include <stdint.h>

#include "db.h"

#define API_WORKERS_MAX 64

/* How a request was answered, for /stats (X-Cache values, OFF last). */
enum api_source { SRC_L1, SRC_L2, SRC_ORIGIN, SRC_STALE, SRC_NEGATIVE, SRC_OFF, SRC_COUNT };

/* Counters of every worker, in one MAP_SHARED mapping made before fork. */
struct api_shared {
	struct db_counters db;
	_Atomic uint64_t requests;
	_Atomic uint64_t status[6];	    /* by first digit: [2] 2xx, [4] 4xx, [5] 5xx */
	_Atomic uint64_t not_modified;	    /* 304s (counted in [3]) */
	_Atomic uint64_t source[SRC_COUNT]; /* product reads (single and batch items) */
	_Atomic uint64_t undelivered;	    /* PUTs whose L2 write or event the agent
					     could not take (HC_E_AGAIN) */
	_Atomic uint64_t by_worker[API_WORKERS_MAX];
	_Atomic uint64_t restarts; /* workers the supervisor started again */
};

struct api_config {
	const char *segment; /* hostcache segment; NULL: the cache is off */
	const char *host;    /* X-Host label (two hosts in one demo) */
	unsigned workers, threads, worker;
	unsigned ttl_ms, stale_ms, error_ms, negative_ttl_ms;
	unsigned conn_limit;	     /* per worker, waiting for a request; 0: from RLIMIT_NOFILE */
	unsigned request_timeout_ms; /* to deliver a whole request (slowloris) */
	struct db_config db;
	struct api_shared *shared;
};

/*
 * api_worker - serve HTTP on @listen_fd until SIGTERM or SIGINT; writes one
 * byte to @ready_fd once it accepts.  Returns the process's exit status.
 */
int api_worker(const struct api_config *cfg, int listen_fd, int ready_fd);

#endif /* PRODUCT_API_H */
