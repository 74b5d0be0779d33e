/*
 * db.c - the products table in SQLite (see db.h).
 */
#include "db.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COLUMNS "id, sku, name, description, price_cents, stock, version, updated_at"

static const struct db_config *cfg;
static pthread_key_t conn_key;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sqlite3 *open_db(const char *path, int flags)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		fprintf(stderr, "product-api: %s: %s\n", path,
			db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	return db;
}

/* ---------------------------------------------------------------------- */
/* Creating the table                                                      */

static const char *const adjectives[] = {"Compact", "Deluxe",	"Rugged", "Silent",  "Wireless",
					 "Classic", "Portable", "Smart",  "Vintage", "Solar"};
static const char *const nouns[] = {"Kettle", "Lamp",	 "Backpack", "Headphones", "Blender",
				    "Drill",  "Speaker", "Jacket",   "Camera",	   "Chair"};

static int fill(sqlite3 *db, unsigned rows)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(
		    db, "INSERT INTO products (" COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
		    -1, &st, NULL) != SQLITE_OK)
		return -1;
	int64_t now = unix_ms();
	int rc = 0;
	for (unsigned id = 1; id <= rows && !rc; id++) {
		char sku[32], name[64], desc[256];
		const char *adj = adjectives[id % 10], *noun = nouns[id / 10 % 10];
		snprintf(sku, sizeof(sku), "SKU-%08u", id);
		snprintf(name, sizeof(name), "%s %s %u", adj, noun, id);
		snprintf(desc, sizeof(desc),
			 "The %s %s, model %u: a product of the demo catalogue, stored in SQLite "
			 "and served through hostcache.",
			 adj, noun, id);
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, sku, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, desc, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, 100 + (int64_t)(id * 7919u % 99900u));
		sqlite3_bind_int64(st, 6, id * 31u % 500u);
		sqlite3_bind_int64(st, 7, now);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = -1;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	return rc;
}

int db_prepare(const char *path, unsigned rows)
{
	sqlite3 *db = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	if (!db)
		return -1;
	/*
	 * user_version 1 marks a filled table.  BEGIN IMMEDIATE takes the write
	 * lock first, so of two processes starting at once one fills and the
	 * other then sees user_version 1.
	 */
	int rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	sqlite3_stmt *st = NULL;
	int version = -1;
	if (rc == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version == 0) {
		uint64_t t0 = now_ns();
		rc = sqlite3_exec(
			db,
			"CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, "
			"name TEXT NOT NULL, description TEXT NOT NULL, "
			"price_cents INTEGER NOT NULL, stock INTEGER NOT NULL, "
			"version INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
			NULL, NULL, NULL);
		if (rc == SQLITE_OK && fill(db, rows))
			rc = SQLITE_ERROR;
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, "PRAGMA user_version = 1; COMMIT", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			fprintf(stderr, "product-api: created %s with %u products in %.2f s\n",
				path, rows, (double)(now_ns() - t0) / 1e9);
	} else if (version == 1) {
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	} else if (rc == SQLITE_OK) {
		fprintf(stderr, "product-api: %s: not a product database (user_version %d)\n", path,
			version);
		sqlite3_close(db);
		return -1;
	}
	if (rc != SQLITE_OK) {
		fprintf(stderr, "product-api: %s: %s\n", path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return -1;
	}
	sqlite3_close(db);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Per-thread connections                                                  */

static void close_conn(void *db)
{
	sqlite3_close_v2(db);
}

int db_thread_init(const struct db_config *c)
{
	cfg = c;
	return pthread_key_create(&conn_key, close_conn) ? -1 : 0;
}

static sqlite3 *conn(void)
{
	sqlite3 *db = pthread_getspecific(conn_key);
	if (!db && (db = open_db(cfg->path, SQLITE_OPEN_READWRITE)))
		pthread_setspecific(conn_key, db);
	return db;
}

/* Statements are prepared on every call: sqlite3_prepare_v3 with
 * SQLITE_PREPARE_PERSISTENT would save ~10 us, but an origin query is meant
 * to be the expensive path here. */
static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "product-api: SQL: %s\n", sqlite3_errmsg(db));
		atomic_fetch_add(&cfg->counters->errors, 1);
		return NULL;
	}
	return st;
}

/* The stand-in for a remote database's network round trip. */
static void delay(void)
{
	if (!cfg->delay_ms)
		return;
	struct timespec ts = {cfg->delay_ms / 1000, (long)(cfg->delay_ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts))
		;
}

static void count(uint64_t t0, int failed)
{
	struct db_counters *k = cfg->counters;
	atomic_fetch_add(&k->queries, 1);
	atomic_fetch_add(&k->busy_ns, now_ns() - t0);
	if (failed)
		atomic_fetch_add(&k->errors, 1);
}

/* ---------------------------------------------------------------------- */
/* JSON                                                                    */

struct out {
	char *p;
	size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + n < o->cap)
		memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void put_str(struct out *o, const unsigned char *s)
{
	put(o, "\"", 1);
	for (; *s; s++) {
		char esc[8];
		if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*s;
			put(o, esc, 2);
		} else if (*s < 0x20 || *s == 0x7f) {
			put(o, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *s));
		} else {
			put(o, (const char *)s, 1);
		}
	}
	put(o, "\"", 1);
}

static void put_int(struct out *o, const char *name, int64_t v)
{
	char b[64];
	put(o, b, (size_t)snprintf(b, sizeof(b), ",\"%s\":%lld", name, (long long)v));
}

/* Render the row at @st (COLUMNS order). */
static void render(sqlite3_stmt *st, struct db_product *p)
{
	struct out o = {p->json, 0, sizeof(p->json)};
	p->id = sqlite3_column_int64(st, 0);
	char b[64];
	put(&o, b, (size_t)snprintf(b, sizeof(b), "{\"id\":%lld,\"sku\":", (long long)p->id));
	put_str(&o, sqlite3_column_text(st, 1));
	put(&o, ",\"name\":", 8);
	put_str(&o, sqlite3_column_text(st, 2));
	put(&o, ",\"description\":", 15);
	put_str(&o, sqlite3_column_text(st, 3));
	put_int(&o, "price_cents", sqlite3_column_int64(st, 4));
	put_int(&o, "stock", sqlite3_column_int64(st, 5));
	put_int(&o, "version", sqlite3_column_int64(st, 6));
	put_int(&o, "updated_at_ms", sqlite3_column_int64(st, 7));
	put(&o, "}", 1);
	/* Cannot overflow: PUT limits the strings (DB_JSON_MAX); the table is
	 * ours.  Truncate rather than overrun if someone edits it by hand. */
	p->len = o.len < o.cap ? o.len : o.cap - 1;
}

/* ---------------------------------------------------------------------- */
/* Queries                                                                 */

int db_get(int64_t id, struct db_product *out)
{
	uint64_t t0 = now_ns();
	sqlite3 *db = conn();
	sqlite3_stmt *st =
		db ? prepare(db, "SELECT " COLUMNS " FROM products WHERE id = ?1") : NULL;
	if (!st) {
		count(t0, 1);
		return -1;
	}
	delay();
	atomic_fetch_add(&cfg->counters->single, 1);
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st), ret = -1;
	if (rc == SQLITE_ROW) {
		render(st, out);
		atomic_fetch_add(&cfg->counters->rows, 1);
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	}
	sqlite3_finalize(st);
	count(t0, ret < 0);
	return ret;
}

int db_get_many(const int64_t *ids, size_t n, void (*found)(void *ctx, const struct db_product *p),
		void *ctx)
{
	if (n == 0 || n > DB_BATCH_MAX)
		return -1;
	uint64_t t0 = now_ns();
	char sql[sizeof("SELECT " COLUMNS " FROM products WHERE id IN ()") + 4 * DB_BATCH_MAX];
	int len = snprintf(sql, sizeof(sql), "SELECT " COLUMNS " FROM products WHERE id IN (");
	for (size_t i = 0; i < n; i++)
		len += snprintf(sql + len, sizeof(sql) - (size_t)len, i ? ",?" : "?");
	snprintf(sql + len, sizeof(sql) - (size_t)len, ")");

	sqlite3 *db = conn();
	sqlite3_stmt *st = db ? prepare(db, sql) : NULL;
	if (!st) {
		count(t0, 1);
		return -1;
	}
	delay();
	atomic_fetch_add(&cfg->counters->batch, 1);
	atomic_fetch_add(&cfg->counters->batch_ids, n);
	for (size_t i = 0; i < n; i++)
		sqlite3_bind_int64(st, (int)i + 1, ids[i]);
	struct db_product *p = malloc(sizeof(*p));
	int nfound = 0, rc;
	while (p && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		render(st, p);
		found(ctx, p);
		nfound++;
	}
	int ok = p && rc == SQLITE_DONE;
	free(p);
	sqlite3_finalize(st);
	atomic_fetch_add(&cfg->counters->rows, (uint64_t)nfound);
	count(t0, !ok);
	return ok ? nfound : -1;
}

int db_update(int64_t id, const struct db_update *u, struct db_product *out)
{
	uint64_t t0 = now_ns();
	sqlite3 *db = conn();
	sqlite3_stmt *st = db ? prepare(db, "UPDATE products SET name = coalesce(?1, name), "
					    "description = coalesce(?2, description), "
					    "price_cents = coalesce(?3, price_cents), stock = "
					    "coalesce(?4, stock), "
					    "version = version + 1, updated_at = ?5 WHERE id = ?6 "
					    "RETURNING " COLUMNS)
			      : NULL;
	if (!st) {
		count(t0, 1);
		return -1;
	}
	delay();
	atomic_fetch_add(&cfg->counters->updates, 1);
	if (u->name)
		sqlite3_bind_text(st, 1, u->name, -1, SQLITE_STATIC);
	if (u->description)
		sqlite3_bind_text(st, 2, u->description, -1, SQLITE_STATIC);
	if (u->price_cents >= 0)
		sqlite3_bind_int64(st, 3, u->price_cents);
	if (u->stock >= 0)
		sqlite3_bind_int64(st, 4, u->stock);
	sqlite3_bind_int64(st, 5, unix_ms());
	sqlite3_bind_int64(st, 6, id);
	int rc = sqlite3_step(st), ret = -1;
	if (rc == SQLITE_ROW) {
		render(st, out);
		ret = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	}
	if (ret < 0)
		fprintf(stderr, "product-api: UPDATE: %s\n", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	count(t0, ret < 0);
	return ret;
}
