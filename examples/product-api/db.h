/*
 * db.h - the product API's origin: a products table in SQLite.
 *
 * Every thread (the HTTP threads, hostcache's refresher thread) gets its own
 * connection on first use, in WAL mode so readers never wait for the writer.
 * Products are rendered as JSON here, once, at load time: the cache stores
 * the response body, so a hit costs no formatting.
 */
#ifndef PRODUCT_DB_H
#define PRODUCT_DB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Longest product id is INT32_MAX; longest strings a PUT may store. */
#define DB_NAME_MAX 200
#define DB_DESC_MAX 2000
/* Room for any product's JSON: every byte of the strings may become \u00XX. */
#define DB_JSON_MAX (6 * (DB_NAME_MAX + DB_DESC_MAX) + 512)
/* Most ids in one batch query (and one GET /products?ids=...). */
#define DB_BATCH_MAX 100

/* Counters shared by every worker process (a MAP_SHARED page). */
struct db_counters {
	_Atomic uint64_t queries;   /* every SQL statement run for a request */
	_Atomic uint64_t single;    /* SELECT ... WHERE id = ? */
	_Atomic uint64_t batch;	    /* SELECT ... WHERE id IN (...) */
	_Atomic uint64_t batch_ids; /* ids asked for in batch queries */
	_Atomic uint64_t updates;   /* UPDATE ... RETURNING */
	_Atomic uint64_t rows;	    /* rows returned */
	_Atomic uint64_t errors;    /* statements that failed */
	_Atomic uint64_t busy_ns;   /* time spent in queries, delay included */
};

struct db_config {
	const char *path;
	unsigned delay_ms; /* added to every query: a remote database's round trip */
	struct db_counters *counters;
};

/*
 * db_prepare - create and fill the table (@rows products) unless a previous
 * run did; safe when several processes start on one file at once.  Prints
 * what it did to stderr.  Returns 0 or -1 (message printed).
 */
int db_prepare(const char *path, unsigned rows);

/* db_thread_init - set up the per-thread connections (once per process). */
int db_thread_init(const struct db_config *cfg);

/* One product as JSON. */
struct db_product {
	int64_t id;
	size_t len;
	char json[DB_JSON_MAX];
};

/* db_get - product @id into @out.  0, 1 when there is none, -1 on error. */
int db_get(int64_t id, struct db_product *out);

/*
 * db_get_many - the products of @ids (@n <= DB_BATCH_MAX, distinct) in one
 * query; @found(ctx, product) is called for each one that exists.
 * Returns the number found, or -1 on error.
 */
int db_get_many(const int64_t *ids, size_t n, void (*found)(void *ctx, const struct db_product *p),
		void *ctx);

/* A PUT: fields to change; NULL / -1 leaves a field as it is. */
struct db_update {
	const char *name;
	const char *description;
	int64_t price_cents;
	int64_t stock;
};

/* db_update - apply @u to product @id, *out = the new row.  0, 1 none, -1. */
int db_update(int64_t id, const struct db_update *u, struct db_product *out);

#endif /* PRODUCT_DB_H */
