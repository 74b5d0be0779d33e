/*
 * api.c - the HTTP side of one worker process.
 *
 *   GET  /products/{id}        one product: hc_get_or_load (single-flight
 *                              across every worker of the host, XFetch,
 *                              stale-while-revalidate in the background,
 *                              stale-if-error, negative caching of unknown
 *                              ids), ETag / If-None-Match -> 304,
 *                              Cache-Control from the entry, X-Cache: where
 *                              the value came from
 *   GET  /products?ids=1,2,3   up to 100 products: hc_get_many, one SQL
 *                              query (WHERE id IN (...)) for the misses
 *   PUT  /products/{id}        JSON {"name", "description", "price_cents",
 *                              "stock"} (any of them): UPDATE, then
 *                              hc_invalidate (this host's L1, Redis, and an
 *                              event to every other host) and a write-
 *                              through hc_set_ex of the new row
 *   GET  /stats                the counters of every worker (JSON)
 *   GET  /healthz              200 "ok"
 *
 * Bad input gets a 4xx with a JSON {"error": ...} body: ids that are not
 * 1..2147483647, a malformed or oversized (> 16 KiB) body, unknown fields,
 * a wrong Content-Type, an unknown path (404) or method (405).
 */
#include "api.h"
#include "../../common/connguard.h"

#include <errno.h>
#include <hostcache.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX (16 * 1024) /* PUT bodies above this get 413 */
#define BODY_DRAIN (1 << 20) /* an unannounced body over this: close */
#define KEY_MAX 32

static const struct api_config *cfg;
static struct api_shared *sh;
static struct hc_cache *cache;
static struct hc_load_opts load_opts;
static pthread_key_t scratch_key;

static const char *const source_names[SRC_COUNT] = {"L1",    "L2",	 "ORIGIN",
						    "STALE", "NEGATIVE", "OFF"};

/*
 * One request: its body as it arrives, then its place in the worker pool's
 * queue, then the answer the pool thread prepared.
 */
struct request {
	struct MHD_Connection *conn;
	const char *url, *method; /* valid until the request completes */
	char *body;
	size_t len;
	size_t seen;	 /* body bytes received, kept or not */
	unsigned status; /* the answer: status and response */
	struct MHD_Response *resp;
	atomic_bool done;     /* set by the pool thread before it resumes */
	bool queued;	      /* counted in pool.inflight until completed */
	struct request *next; /* in the queue */
};

/*
 * The worker pool: libmicrohttpd's one event thread reads requests and
 * writes answers for every connection (epoll; idle connections cost a file
 * descriptor, nothing more); a request's handling, which may wait on a
 * single-flight load or the database, runs in one of cfg->threads pool
 * threads while its connection is suspended.  Each pool thread holds one
 * thread slot in the segment.  A full queue is answered 503 at once.
 */
#define QUEUE_MAX 1024
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct request *head, *tail;
	unsigned len;
	bool stop;
	pthread_t *threads;
	unsigned nthreads;
	atomic_uint inflight; /* queued, running, or answer not yet sent */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */

/* A product id: 1..INT32_MAX in plain decimal, or -1. */
static int64_t parse_id(const char *s, size_t n)
{
	if (n == 0 || n > 10)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v >= 1 && v <= INT32_MAX ? v : -1;
}

static size_t product_key(char *key, int64_t id)
{
	return (size_t)snprintf(key, KEY_MAX, "product:%" PRId64, id);
}

static int64_t key_id(const void *key, size_t klen)
{
	return klen > 8 ? parse_id((const char *)key + 8, klen - 8) : -1;
}

/* A per-thread buffer for DB_BATCH_MAX product values (batch requests). */
static char *scratch(void)
{
	char *s = pthread_getspecific(scratch_key);
	if (!s && (s = malloc(DB_BATCH_MAX * (size_t)DB_JSON_MAX)))
		pthread_setspecific(scratch_key, s);
	return s;
}

/* ---------------------------------------------------------------------- */
/* Responses                                                               */

/* Prepare the answer to @rq (queued by the event thread, see on_request). */
static enum MHD_Result reply(struct request *rq, unsigned status, const char *body, size_t len,
			     const char *const *headers)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	char worker[16];
	snprintf(worker, sizeof(worker), "%u", cfg->worker);
	MHD_add_response_header(r, "X-Worker", worker);
	if (cfg->host)
		MHD_add_response_header(r, "X-Host", cfg->host);
	if (len || status != MHD_HTTP_NOT_MODIFIED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					status < 300 || status >= 400 ? "application/json"
								      : "text/plain");
	for (; headers && headers[0]; headers += 2)
		if (headers[1])
			MHD_add_response_header(r, headers[0], headers[1]);
	if (rq->resp)
		MHD_destroy_response(rq->resp);
	rq->status = status;
	rq->resp = r;
	atomic_fetch_add(&sh->status[status / 100 % 6], 1);
	if (status == MHD_HTTP_NOT_MODIFIED)
		atomic_fetch_add(&sh->not_modified, 1);
	return MHD_YES;
}

/* A 4xx/5xx with a JSON {"error": "..."} body. */
__attribute__((format(printf, 3, 4))) static enum MHD_Result
fail_with(struct request *rq, unsigned status, const char *fmt, ...)
{
	char msg[256], body[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	size_t n = 0;
	n += (size_t)snprintf(body, sizeof(body), "{\"error\":\"");
	for (const char *s = msg; *s && n < sizeof(body) - 8; s++) {
		if (*s == '"' || *s == '\\')
			body[n++] = '\\';
		body[n++] = (unsigned char)*s < 0x20 ? ' ' : *s;
	}
	n += (size_t)snprintf(body + n, sizeof(body) - n, "\"}\n");
	const char *headers[] = {"Cache-Control", "no-store", NULL};
	return reply(rq, status, body, n, headers);
}

static enum MHD_Result method_not_allowed(struct request *rq, const char *allow)
{
	const char *headers[] = {"Allow", allow, NULL};
	static const char body[] = "{\"error\":\"method not allowed\"}\n";
	return reply(rq, MHD_HTTP_METHOD_NOT_ALLOWED, body, sizeof(body) - 1, headers);
}

/* ---------------------------------------------------------------------- */
/* Loaders: the origin calls hostcache runs once per key per host          */

static int load_one(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)ctx;
	int64_t id = key_id(key, klen);
	struct db_product p;
	int rc = id > 0 ? db_get(id, &p) : 1;
	if (rc < 0)
		return -EIO; /* served stale within error_ms, else a 503 */
	if (rc > 0)
		return HC_E_NOTFOUND;
	return hc_load_value(ld, p.json, p.len);
}

struct batch_fill {
	const int64_t *ids;
	size_t n;
	struct hc_load *lds;
	int *rc;
};

static void batch_found(void *ctx, const struct db_product *p)
{
	struct batch_fill *f = ctx;
	for (size_t i = 0; i < f->n; i++)
		if (f->ids[i] == p->id)
			f->rc[i] = hc_load_value(&f->lds[i], p->json, p->len);
}

static int load_many(void *ctx, const struct hc_batch_item *const *items, size_t n,
		     struct hc_load *lds, int *rc)
{
	(void)ctx;
	int64_t ids[DB_BATCH_MAX];
	if (n > DB_BATCH_MAX)
		return HC_E_INVAL;
	for (size_t i = 0; i < n; i++) {
		ids[i] = key_id(items[i]->key, items[i]->klen);
		rc[i] = HC_E_NOTFOUND;
	}
	struct batch_fill f = {ids, n, lds, rc};
	return db_get_many(ids, n, batch_found, &f) < 0 ? -EIO : 0;
}

/* ---------------------------------------------------------------------- */
/* GET /products/{id}                                                      */

static enum MHD_Result get_product(struct request *rq, int64_t id)
{
	struct MHD_Connection *conn = rq->conn;
	static __thread char buf[DB_JSON_MAX];
	struct db_product *p = NULL;
	const char *body = buf;
	size_t len = 0;
	struct hc_meta meta = {0};
	int rc;
	enum api_source src;

	if (cache) {
		char key[KEY_MAX];
		rc = hc_get_or_load(cache, key, product_key(key, id), load_one, NULL, &load_opts,
				    buf, sizeof(buf), &len, &meta);
		src = rc == HC_E_NOTFOUND && meta.source != HC_SRC_NEGATIVE
			      ? SRC_ORIGIN
			      : (enum api_source)meta.source;
		if (rc && rc != HC_E_NOTFOUND) {
			atomic_fetch_add(&sh->source[src], 1);
			return fail_with(rq, MHD_HTTP_SERVICE_UNAVAILABLE,
					 "product %" PRId64 ": %s", id,
					 rc == -EIO ? "database error" : hc_strerror(rc));
		}
	} else {
		if (!(p = malloc(sizeof(*p))))
			return MHD_NO;
		rc = db_get(id, p);
		src = SRC_OFF;
		if (rc < 0) {
			free(p);
			atomic_fetch_add(&sh->source[src], 1);
			return fail_with(rq, MHD_HTTP_SERVICE_UNAVAILABLE,
					 "product %" PRId64 ": database error", id);
		}
		rc = rc ? HC_E_NOTFOUND : 0;
		body = p->json;
		len = p->len;
		meta.etag = hc_etag_of(body, len);
	}
	atomic_fetch_add(&sh->source[src], 1);

	const char *xcache = source_names[src];
	if (rc == HC_E_NOTFOUND) {
		free(p);
		const char *headers[] = {"X-Cache", xcache, NULL};
		char msg[96];
		int n = snprintf(msg, sizeof(msg), "{\"error\":\"no product %" PRId64 "\"}\n", id);
		return reply(rq, MHD_HTTP_NOT_FOUND, msg, (size_t)n, headers);
	}

	char etag[HC_ETAG_BUFSZ], cc[128] = "no-cache", age[24] = "";
	hc_etag_format(meta.etag, etag, sizeof(etag));
	if (cache) {
		/*
		 * The entry's stale window is the longer of the two windows
		 * (stale_ms for revalidation, error_ms for errors): advertise
		 * each for what it is.
		 */
		struct hc_meta m = meta;
		if (m.ttl_left_ms != INT64_MAX && m.stale_left_ms > m.ttl_left_ms + cfg->stale_ms)
			m.stale_left_ms = m.ttl_left_ms + cfg->stale_ms;
		int n = snprintf(cc, sizeof(cc), "public, ");
		n += hc_cache_control(&m, cc + n, sizeof(cc) - (size_t)n);
		if (cfg->error_ms >= 1000 && n > 8)
			snprintf(cc + n, sizeof(cc) - (size_t)n, ", stale-if-error=%u",
				 cfg->error_ms / 1000);
		if (meta.age_ms >= 0)
			snprintf(age, sizeof(age), "%" PRId64, meta.age_ms / 1000);
	}
	const char *headers[] = {"ETag", etag,	"Cache-Control",   cc,	"X-Cache",
				 xcache, "Age", *age ? age : NULL, NULL};
	const char *inm =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	enum MHD_Result ret;
	if (inm && hc_etag_match(inm, strlen(inm), meta.etag) == 1)
		/* libmicrohttpd 0.9.75 adds "Content-Length: 0" (README, limits). */
		ret = reply(rq, MHD_HTTP_NOT_MODIFIED, "", 0, headers);
	else
		ret = reply(rq, MHD_HTTP_OK, body, len, headers);
	free(p);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* GET /products?ids=...                                                   */

struct json_buf {
	char *p;
	size_t len, cap;
	unsigned items; /* elements of the array being written */
};

static void jb_put(struct json_buf *b, const char *s, size_t n)
{
	if (b->len + n <= b->cap)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* One element of the array being written, comma first unless it is the first. */
static void jb_item(struct json_buf *b, const char *s, size_t n)
{
	if (b->items++)
		jb_put(b, ",", 1);
	jb_put(b, s, n);
}

/* The products of a batch read without the cache, and which ids were found. */
struct batch_collect {
	struct json_buf *b;
	const int64_t *ids;
	int n;
	bool found[DB_BATCH_MAX];
};

static void batch_collect(void *ctx, const struct db_product *p)
{
	struct batch_collect *bc = ctx;
	for (int i = 0; i < bc->n; i++)
		if (bc->ids[i] == p->id)
			bc->found[i] = true;
	jb_item(bc->b, p->json, p->len);
}

/* Parse "1,2,3" into distinct ids; returns the count or -1 (message in @err). */
static int parse_ids(const char *s, int64_t *ids, char *err, size_t errlen)
{
	int n = 0;
	while (1) {
		size_t len = strcspn(s, ",");
		int64_t id = parse_id(s, len);
		if (id < 0) {
			snprintf(err, errlen, "ids: '%.*s' is not a product id (1..2147483647)",
				 (int)(len > 20 ? 20 : len), s);
			return -1;
		}
		int dup = 0;
		for (int i = 0; i < n && !dup; i++)
			dup = ids[i] == id;
		if (!dup) {
			if (n == DB_BATCH_MAX) {
				snprintf(err, errlen, "ids: more than %d products", DB_BATCH_MAX);
				return -1;
			}
			ids[n++] = id;
		}
		if (!s[len])
			return n;
		s += len + 1;
	}
}

static enum MHD_Result get_products(struct request *rq)
{
	struct MHD_Connection *conn = rq->conn;
	const char *arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ids");
	if (!arg)
		return fail_with(rq, MHD_HTTP_BAD_REQUEST, "ids=1,2,3 is required");
	int64_t ids[DB_BATCH_MAX];
	char err[128];
	int n = parse_ids(arg, ids, err, sizeof(err));
	if (n < 0)
		return fail_with(rq, MHD_HTTP_BAD_REQUEST, "%s", err);

	size_t cap = (size_t)n * (DB_JSON_MAX + 16) + 64;
	struct json_buf b = {malloc(cap), 0, cap};
	if (!b.p)
		return MHD_NO;
	jb_put(&b, "{\"products\":[", 13);
	unsigned by_src[SRC_COUNT] = {0};
	int64_t min_ttl = INT64_MAX;
	int64_t missing[DB_BATCH_MAX];
	int nmissing = 0, failed = 0;

	if (cache) {
		char keys[DB_BATCH_MAX][KEY_MAX];
		struct hc_batch_item items[DB_BATCH_MAX];
		char *bufs = scratch();
		if (!bufs) {
			free(b.p);
			return MHD_NO;
		}
		for (int i = 0; i < n; i++)
			items[i] = (struct hc_batch_item){.key = keys[i],
							  .klen = product_key(keys[i], ids[i]),
							  .buf = bufs + (size_t)i * DB_JSON_MAX,
							  .cap = DB_JSON_MAX};
		int rc = hc_get_many(cache, items, (size_t)n, load_many, NULL, &load_opts);
		for (int i = 0; rc >= 0 && i < n; i++) {
			struct hc_batch_item *it = &items[i];
			enum api_source src =
				it->rc == HC_E_NOTFOUND && it->meta.source != HC_SRC_NEGATIVE
					? SRC_ORIGIN
					: (enum api_source)it->meta.source;
			by_src[src]++;
			if (it->rc == 0) {
				jb_item(&b, it->buf, it->vlen);
				if (it->meta.ttl_left_ms < min_ttl)
					min_ttl = it->meta.ttl_left_ms;
			} else if (it->rc == HC_E_NOTFOUND) {
				missing[nmissing++] = ids[i];
			} else {
				failed++;
			}
		}
		if (rc < 0)
			failed = n;
	} else {
		by_src[SRC_OFF] = (unsigned)n;
		struct batch_collect bc = {.b = &b, .ids = ids, .n = n};
		if (db_get_many(ids, (size_t)n, batch_collect, &bc) < 0)
			failed = n;
		for (int i = 0; !failed && i < n; i++)
			if (!bc.found[i])
				missing[nmissing++] = ids[i];
	}
	for (int s = 0; s < SRC_COUNT; s++)
		if (by_src[s])
			atomic_fetch_add(&sh->source[s], by_src[s]);
	if (failed) {
		free(b.p);
		return fail_with(rq, MHD_HTTP_SERVICE_UNAVAILABLE,
				 "%d of %d products could not be loaded", failed, n);
	}
	jb_put(&b, "],\"missing\":[", 13);
	for (int i = 0; i < nmissing; i++) {
		char num[24];
		jb_put(&b, num,
		       (size_t)snprintf(num, sizeof(num), i ? ",%" PRId64 : "%" PRId64,
					missing[i]));
	}
	jb_put(&b, "]}\n", 3);

	char xcache[128], cc[48] = "no-cache";
	int xn = 0;
	for (int s = 0; s < SRC_COUNT; s++)
		if (by_src[s])
			xn += snprintf(xcache + xn, sizeof(xcache) - (size_t)xn, "%s%s=%u",
				       xn ? " " : "", source_names[s], by_src[s]);
	if (cache && min_ttl != INT64_MAX)
		snprintf(cc, sizeof(cc), "public, max-age=%" PRId64,
			 min_ttl > 0 ? (min_ttl == INT64_MAX ? 31536000 : min_ttl / 1000) : 0);
	const char *headers[] = {"X-Cache", xcache, "Cache-Control", cc, NULL};
	enum MHD_Result ret = reply(rq, MHD_HTTP_OK, b.p, b.len, headers);
	free(b.p);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* PUT /products/{id}                                                      */

/* Parse a PUT body into @u; 0, or -1 with a message in @err. */
static int parse_update(const char *body, size_t len, struct db_update *u, json_t **root, char *err,
			size_t errlen)
{
	json_error_t je;
	*u = (struct db_update){.price_cents = -1, .stock = -1};
	*root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!*root) {
		snprintf(err, errlen, "malformed JSON at line %d column %d: %s", je.line, je.column,
			 je.text);
		return -1;
	}
	if (!json_is_object(*root) || json_object_size(*root) == 0) {
		snprintf(err, errlen,
			 "the body must be a JSON object with name, description, price_cents or "
			 "stock");
		return -1;
	}
	const char *field;
	json_t *v;
	json_object_foreach(*root, field, v)
	{
		if (!strcmp(field, "name") || !strcmp(field, "description")) {
			size_t max = field[0] == 'n' ? DB_NAME_MAX : DB_DESC_MAX;
			if (!json_is_string(v) || json_string_length(v) > max ||
			    strlen(json_string_value(v)) != json_string_length(v) ||
			    (field[0] == 'n' && json_string_length(v) == 0)) {
				snprintf(err, errlen, "%s: a string of %s1..%zu bytes without NUL",
					 field, field[0] == 'n' ? "" : "0 or ", max);
				return -1;
			}
			*(field[0] == 'n' ? &u->name : &u->description) = json_string_value(v);
		} else if (!strcmp(field, "price_cents") || !strcmp(field, "stock")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 1000000000) {
				snprintf(err, errlen, "%s: an integer 0..1000000000", field);
				return -1;
			}
			*(field[0] == 'p' ? &u->price_cents : &u->stock) = json_integer_value(v);
		} else {
			snprintf(err, errlen, "unknown field '%.40s'", field);
			return -1;
		}
	}
	return 0;
}

/* The "version" of a product's JSON, or -1. */
static long long json_version(const char *json, size_t len)
{
	static const char field[] = "\"version\":";
	const char *v = memmem(json, len, field, sizeof(field) - 1);
	return v ? strtoll(v + sizeof(field) - 1, NULL, 10) : -1;
}

/*
 * After a PUT committed row @p: invalidate (this host's L1, then through
 * the agent a DEL in Redis and an event every other host's agent applies),
 * then store the new row here and in Redis.  The agent takes both from the
 * ring in this order, so Redis ends with the new row, and another host that
 * reloads meanwhile reads the database, which already has it.
 *
 * Two PUTs of one product on this host may finish in the other order than
 * they committed: a PUT that finds a newer version in L1 leaves the cache
 * to the PUT that stored it (which invalidated everywhere before).  What
 * stays open is documented in the README: two hosts' PUTs of one product
 * at once can leave the older row in Redis, and a load that read the row
 * before the UPDATE can store it after; both last until the TTL.
 */
static void cache_put(int64_t id, const struct db_product *p)
{
	static __thread char buf[DB_JSON_MAX];
	char key[KEY_MAX];
	size_t klen = product_key(key, id), vlen;
	if (hc_get_ex(cache, key, klen, buf, sizeof(buf), &vlen, NULL, HC_GET_STALE) == 0 &&
	    json_version(buf, vlen) > json_version(p->json, p->len))
		return;
	int irc = hc_invalidate(cache, key, klen);
	/* The stale window a load gives an entry: room for stale-if-error. */
	struct hc_set_opts so = {.ttl_ms = cfg->ttl_ms,
				 .stale_ms = cfg->stale_ms > cfg->error_ms ? cfg->stale_ms
									   : cfg->error_ms,
				 .flags = HC_SET_WRITE_THROUGH};
	int src = hc_set_ex(cache, key, klen, p->json, p->len, &so);
	if (irc == HC_E_AGAIN || src == HC_E_AGAIN)
		atomic_fetch_add(&sh->undelivered, 1);
	else if ((irc && irc != HC_E_NOTFOUND) || src)
		fprintf(stderr, "product-api: worker %u: caching product %" PRId64 ": %s\n",
			cfg->worker, id, hc_strerror(irc ? irc : src));
}

static enum MHD_Result put_product(struct request *rq, int64_t id)
{
	struct MHD_Connection *conn = rq->conn;
	const char *ct =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t ctlen = ct ? strcspn(ct, ";") : 0;
	while (ctlen && (ct[ctlen - 1] == ' ' || ct[ctlen - 1] == '\t'))
		ctlen--;
	if (ct && (ctlen != 16 || strncasecmp(ct, "application/json", 16) != 0))
		return fail_with(rq, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
				 "Content-Type must be application/json");
	struct db_update u;
	json_t *root = NULL;
	char err[200];
	if (parse_update(rq->body ? rq->body : "", rq->len, &u, &root, err, sizeof(err))) {
		json_decref(root);
		return fail_with(rq, MHD_HTTP_BAD_REQUEST, "%s", err);
	}
	struct db_product *p = malloc(sizeof(*p));
	int rc = p ? db_update(id, &u, p) : -1;
	json_decref(root);
	if (rc) {
		free(p);
		if (rc > 0)
			return fail_with(rq, MHD_HTTP_NOT_FOUND, "no product %" PRId64, id);
		return fail_with(rq, MHD_HTTP_SERVICE_UNAVAILABLE,
				 "product %" PRId64 ": database error", id);
	}

	if (cache)
		cache_put(id, p);
	char tag[HC_ETAG_BUFSZ];
	hc_etag_format(hc_etag_of(p->json, p->len), tag, sizeof(tag));
	const char *headers[] = {"ETag", tag, "Cache-Control", "no-cache", NULL};
	enum MHD_Result ret = reply(rq, MHD_HTTP_OK, p->json, p->len, headers);
	free(p);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* GET /stats                                                              */

static enum MHD_Result get_stats(struct request *rq)
{
	json_t *o = json_object(), *st = json_object(), *src = json_object(), *sql = json_object(),
	       *byw = json_array();
	struct db_counters *d = &sh->db;
	json_object_set_new(o, "host", cfg->host ? json_string(cfg->host) : json_null());
	json_object_set_new(o, "workers", json_integer(cfg->workers));
	json_object_set_new(o, "threads", json_integer(cfg->threads));
	json_object_set_new(o, "cache", cfg->segment ? json_string(cfg->segment) : json_null());
	json_object_set_new(o, "db_delay_ms", json_integer(cfg->db.delay_ms));
	json_object_set_new(o, "requests", json_integer((json_int_t)sh->requests));
	json_object_set_new(st, "2xx", json_integer((json_int_t)sh->status[2]));
	json_object_set_new(st, "304", json_integer((json_int_t)sh->not_modified));
	json_object_set_new(st, "4xx", json_integer((json_int_t)sh->status[4]));
	json_object_set_new(st, "5xx", json_integer((json_int_t)sh->status[5]));
	json_object_set_new(o, "status", st);
	for (int s = 0; s < SRC_COUNT; s++)
		json_object_set_new(src, source_names[s], json_integer((json_int_t)sh->source[s]));
	json_object_set_new(o, "served_by", src);
	json_object_set_new(sql, "queries", json_integer((json_int_t)d->queries));
	json_object_set_new(sql, "single", json_integer((json_int_t)d->single));
	json_object_set_new(sql, "batch", json_integer((json_int_t)d->batch));
	json_object_set_new(sql, "batch_ids", json_integer((json_int_t)d->batch_ids));
	json_object_set_new(sql, "updates", json_integer((json_int_t)d->updates));
	json_object_set_new(sql, "rows", json_integer((json_int_t)d->rows));
	json_object_set_new(sql, "errors", json_integer((json_int_t)d->errors));
	json_object_set_new(sql, "busy_ms", json_integer((json_int_t)(d->busy_ns / 1000000)));
	json_object_set_new(o, "sql", sql);
	json_object_set_new(o, "undelivered", json_integer((json_int_t)sh->undelivered));
	json_object_set_new(o, "restarts", json_integer((json_int_t)sh->restarts));
	for (unsigned w = 0; w < cfg->workers; w++)
		json_array_append_new(byw, json_integer((json_int_t)sh->by_worker[w]));
	json_object_set_new(o, "requests_by_worker", byw);
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text)
		return MHD_NO;
	const char *headers[] = {"Cache-Control", "no-store", NULL};
	enum MHD_Result ret = reply(rq, MHD_HTTP_OK, text, strlen(text), headers);
	free(text);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Routing                                                                 */

static enum MHD_Result dispatch(struct request *rq)
{
	const char *url = rq->url, *method = rq->method;
	int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
	atomic_fetch_add(&sh->requests, 1);
	atomic_fetch_add(&sh->by_worker[cfg->worker], 1);

	if (!strncmp(url, "/products/", 10)) {
		int put = !strcmp(method, "PUT");
		if (!get && !put)
			return method_not_allowed(rq, "GET, HEAD, PUT");
		int64_t id = parse_id(url + 10, strlen(url + 10));
		if (id < 0)
			return fail_with(rq, MHD_HTTP_BAD_REQUEST,
					 "'%.20s' is not a product id (1..2147483647)", url + 10);
		return put ? put_product(rq, id) : get_product(rq, id);
	}
	if (!strcmp(url, "/products"))
		return get ? get_products(rq) : method_not_allowed(rq, "GET, HEAD");
	if (!strcmp(url, "/stats"))
		return get ? get_stats(rq) : method_not_allowed(rq, "GET, HEAD");
	if (!strcmp(url, "/healthz")) {
		static const char ok[] = "{\"status\":\"ok\"}\n";
		return get ? reply(rq, MHD_HTTP_OK, ok, sizeof(ok) - 1, NULL)
			   : method_not_allowed(rq, "GET, HEAD");
	}
	return fail_with(rq, MHD_HTTP_NOT_FOUND, "no such resource: %.60s", url);
}

/* Queue the answer prepared in @rq (event thread only). */
static enum MHD_Result answer(struct MHD_Connection *conn, struct request *rq)
{
	if (!rq->resp)
		return MHD_NO;
	connguard_received(conn);
	enum MHD_Result ret = MHD_queue_response(conn, rq->status, rq->resp);
	MHD_destroy_response(rq->resp);
	rq->resp = NULL;
	return ret;
}

static void *pool_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		while (!pool.head && !pool.stop)
			pthread_cond_wait(&pool.cond, &pool.lock);
		struct request *rq = pool.head;
		if (!rq)
			break; /* stopping, and the queue is drained */
		pool.head = rq->next;
		if (!pool.head)
			pool.tail = NULL;
		pool.len--;
		pthread_mutex_unlock(&pool.lock);

		if (dispatch(rq) != MHD_YES && rq->resp) {
			MHD_destroy_response(rq->resp);
			rq->resp = NULL; /* out of memory: the connection is closed */
		}
		atomic_store(&rq->done, true);
		MHD_resume_connection(rq->conn);
		pthread_mutex_lock(&pool.lock);
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/* Hand @rq to the pool, its connection suspended; 503 when the queue is full. */
static enum MHD_Result enqueue(struct MHD_Connection *conn, struct request *rq)
{
	connguard_received(conn); /* whole: its answer may take as long as it takes */
	pthread_mutex_lock(&pool.lock);
	if (pool.len >= QUEUE_MAX || pool.stop) {
		pthread_mutex_unlock(&pool.lock);
		atomic_fetch_add(&sh->requests, 1);
		static const char *const headers[] = {"Retry-After", "1", NULL};
		static const char body[] = "{\"error\":\"overloaded, try again\"}\n";
		reply(rq, MHD_HTTP_SERVICE_UNAVAILABLE, body, sizeof(body) - 1, headers);
		return answer(conn, rq);
	}
	/* Suspended before the pool can see it, so the resume always follows. */
	MHD_suspend_connection(conn);
	rq->queued = true;
	atomic_fetch_add(&pool.inflight, 1);
	rq->next = NULL;
	if (pool.tail)
		pool.tail->next = rq;
	else
		pool.head = rq;
	pool.tail = rq;
	pool.len++;
	pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	return MHD_YES;
}

/*
 * libmicrohttpd calls this with the headers (*con_cls NULL), then once per
 * piece of the body, then once more with *upload_data_size 0: then the
 * request goes to the pool, and when the pool thread resumes the
 * connection, once more to queue the answer.  A body announced too large
 * is refused at once (libmicrohttpd then closes the connection instead of
 * reading it); one that turns out too large is read up to BODY_DRAIN and
 * refused at the end.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct request *rq = *con_cls;
	(void)cls;
	(void)version;

	if (!rq) {
		if (!(rq = calloc(1, sizeof(*rq))))
			return MHD_NO;
		*con_cls = rq;
		rq->conn = conn;
		rq->url = url;
		rq->method = method;
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && (strlen(cl) > 9 || strtoul(cl, NULL, 10) > BODY_MAX)) {
			atomic_fetch_add(&sh->requests, 1);
			fail_with(rq, MHD_HTTP_CONTENT_TOO_LARGE, "request body over %d bytes",
				  BODY_MAX);
			return answer(conn, rq);
		}
		return MHD_YES;
	}
	if (atomic_load(&rq->done))
		return answer(conn, rq);
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		if (rq->seen + n <= BODY_MAX) {
			char *p = realloc(rq->body, rq->len + n + 1);
			if (!p)
				return MHD_NO;
			memcpy(p + rq->len, upload_data, n);
			rq->body = p;
			rq->len += n;
		}
		rq->seen += n;
		*upload_data_size = 0;
		return rq->seen > BODY_DRAIN ? MHD_NO : MHD_YES;
	}
	if (rq->seen > BODY_MAX) {
		atomic_fetch_add(&sh->requests, 1);
		fail_with(rq, MHD_HTTP_CONTENT_TOO_LARGE, "request body over %d bytes", BODY_MAX);
		return answer(conn, rq);
	}
	return enqueue(conn, rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;
	(void)cls;
	(void)toe;
	connguard_completed(conn);
	if (rq) {
		if (rq->queued)
			atomic_fetch_sub(&pool.inflight, 1);
		free(rq->body);
		if (rq->resp)
			MHD_destroy_response(rq->resp);
	}
	free(rq);
	*con_cls = NULL;
}

/* libmicrohttpd's own messages (a client that misbehaved, mostly). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	if (getenv("PRODUCT_API_DEBUG"))
		vfprintf(stderr, fmt, ap);
}

static void hc_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= HC_LOG_WARN)
		fprintf(stderr, "product-api: worker %u: hostcache: %s\n", cfg->worker, msg);
}

static void free_scratch(void *p)
{
	free(p);
}

int api_worker(const struct api_config *c, int listen_fd, int ready_fd)
{
	cfg = c;
	sh = c->shared;

	/* Every thread started from here on (libmicrohttpd's, hostcache's
	 * refresher) inherits the mask; this thread takes the signals. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 1;

	if (db_thread_init(&c->db) || pthread_key_create(&scratch_key, free_scratch))
		return 1;
	if (c->segment) {
		struct hc_options o = {.log = hc_log};
		int rc = hc_open(c->segment, &o, &cache);
		if (rc) {
			fprintf(stderr, "product-api: worker %u: segment '%s': %s\n", c->worker,
				c->segment, hc_strerror(rc));
			return 1;
		}
		load_opts = (struct hc_load_opts){.ttl_ms = c->ttl_ms,
						  .stale_ms = c->stale_ms,
						  .error_ms = c->error_ms,
						  .negative_ttl_ms = c->negative_ttl_ms,
						  .jitter_pct = 10,
						  .flags = HC_LOAD_BACKGROUND};
	}

	/*
	 * Connections are file descriptors, two each (the guard keeps a dup):
	 * let each worker have all it may.
	 */
	struct rlimit nofile;
	unsigned conn_limit = 500;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
		if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur > 128)
			conn_limit = nofile.rlim_cur > 65536 ? (65536 - 64) / 2
							     : ((unsigned)nofile.rlim_cur - 64) / 2;
	}
	if (c->conn_limit && c->conn_limit < conn_limit)
		conn_limit = c->conn_limit;
	struct connguard *guard = NULL;
	int grc = connguard_start(&guard, conn_limit, c->request_timeout_ms);
	if (grc < 0) {
		fprintf(stderr, "product-api: worker %u: connection guard: %s\n", c->worker,
			strerror(-grc));
		return 1;
	}

	pool.threads = calloc(c->threads, sizeof(*pool.threads));
	for (pool.nthreads = 0; pool.threads && pool.nthreads < c->threads; pool.nthreads++)
		if (pthread_create(&pool.threads[pool.nthreads], NULL, pool_main, NULL))
			break;
	if (pool.nthreads < c->threads) {
		fprintf(stderr, "product-api: worker %u: started %u of %u threads\n", c->worker,
			pool.nthreads, c->threads);
		connguard_stop(guard);
		return 1;
	}
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
			MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, NULL, MHD_OPTION_LISTEN_SOCKET, listen_fd,
		MHD_OPTION_CONNECTION_LIMIT, conn_limit + CONNGUARD_HEADROOM,
		MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)64 * 1024, MHD_OPTION_NOTIFY_CONNECTION, connguard_notify, guard,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_EXTERNAL_LOGGER,
		mhd_log, NULL, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "product-api: worker %u: libmicrohttpd did not start\n", c->worker);
		connguard_stop(guard);
		return 1;
	}
	if (write(ready_fd, "r", 1) != 1)
		fprintf(stderr, "product-api: worker %u: ready pipe: %s\n", c->worker,
			strerror(errno));
	close(ready_fd);

	int sig = 0;
	while (sigwait(&stop, &sig))
		;
	/* Stop accepting, let the pool finish what is queued (every suspended
	 * connection is resumed), then close the connections. */
	int lfd = MHD_quiesce_daemon(d);
	if (lfd >= 0)
		close(lfd);
	pthread_mutex_lock(&pool.lock);
	pool.stop = true;
	pthread_cond_broadcast(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	for (unsigned i = 0; i < pool.nthreads; i++)
		pthread_join(pool.threads[i], NULL);
	/* The answers are queued by the event thread after the resume: let it
	 * send them (bounded: a client that does not read is cut off). */
	for (int i = 0; i < 300 && atomic_load(&pool.inflight); i++)
		nanosleep(&(struct timespec){0, 10 * 1000000}, NULL);
	MHD_stop_daemon(d);
	connguard_stop(guard);
	free(pool.threads);
	hc_close(cache);
	return 0;
}
