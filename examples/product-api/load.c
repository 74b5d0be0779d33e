/*
 * load.c - product-load: an HTTP/1.1 load generator for the product API
 * (GET /products/{id}, GET /products?ids=..., PUT /products/{id}).
 *
 * What it does: N threads each hold one keep-alive connection (a blocking
 * socket with TCP_NODELAY) and send one request at a time, back to back (a
 * closed loop: the load is whatever the server answers).  Each request is a
 * single GET, a batch GET or a PUT with a small JSON body, picked at random
 * in the shares the options give.  Ids are drawn from a Zipf(s) distribution
 * over 1..N (rank k is id k, so the low ids are the hot ones), or uniformly
 * when s is 0.  A share of the single GETs carries If-None-Match with the
 * ETag this thread last saw for the id (from a GET or PUT answer), kept in
 * a direct-mapped table of 65536 slots.  Every thread draws from its own
 * splitmix64 stream seeded by --seed and its index, so a run sends the same
 * sequence of requests each time.
 *
 * How it measures: a request's latency is the CLOCK_MONOTONIC time from
 * just before it is written (including the connect, when its connection
 * had to be reopened) to the last byte of its response body.  A shared
 * atomic phase (warm-up, measure, stop) is read when a request ends, and
 * only requests that end inside the measurement window are counted: those
 * of the warm-up are sent but not counted, and when the duration ends the
 * flag stops the threads, each finishing the request it is in (bounded by
 * --timeout) without counting it.  The measured duration is the window's
 * length on the monotonic clock (shorter if SIGINT/SIGTERM cut it), and
 * the throughput is the answered requests over it.  Latencies are kept as
 * uint32 microseconds in per-thread arrays, merged and sorted at the end,
 * so the percentiles are exact (nearest rank).  A request that ends without
 * a complete HTTP response (connect refused, reset, timeout, malformed
 * response) counts as an error, has no latency, and its connection is
 * closed and reopened for the next request.  A request whose reused
 * connection turns out to be closed before any byte of the answer (the
 * keep-alive race) is retried once on a new connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"
#include "zipf.h"

#define PROG "product-load"
#define HDR_MAX (16 * 1024)	     /* largest response header block */
#define BUF_SIZE (HDR_MAX + 8192)    /* a header block and some body */
#define REQ_MAX 4096		     /* a batch of 100 13-digit ids fits */
#define ETAG_SLOTS 65536	     /* per-thread id -> ETag table */
#define ETAG_MAX 55		     /* longer ETags are not remembered */
#define BODY_MAX ((uint64_t)1 << 40) /* sanity bound on Content-Length */
#define KEYS_MAX UINT64_C(1000000000000)
#define BACKOFF_MAX_MS 100 /* between failed connects */
#define THREAD_STACK (256 * 1024)

enum kind { K_GET, K_BATCH, K_PUT, NKIND };
static const char *const kind_name[NKIND] = {"get", "batch", "put"};

enum xcache { XC_L1, XC_L2, XC_ORIGIN, XC_STALE, XC_NEGATIVE, XC_OFF, XC_NONE, XC_OTHER, NXC };
static const char *const xc_name[NXC] = {"L1",	     "L2",  "ORIGIN", "STALE",
					 "NEGATIVE", "OFF", "none",   "other"};

/* Transport errors; E_NONE is success. */
enum err { E_NONE, E_CONNECT, E_TIMEOUT, E_CLOSED, E_PROTOCOL, NERR };
static const char *const err_name[NERR] = {"none", "connect", "timeout", "closed", "protocol"};

enum sclass { S_2XX, S_304, S_404, S_4XX, S_5XX, S_OTHER, NSC };
static const char *const sclass_name[NSC] = {"2xx", "304", "404", "4xx_other", "5xx", "other"};

/* Problems worth one line on stderr the first time they happen. */
enum note {
	N_CONNECT,
	N_TIMEOUT,
	N_CLOSED,
	N_STATUS,
	N_HEADER,
	N_TOO_BIG,
	N_CHUNKED,
	N_NO_LENGTH,
	N_LENGTH,
	N_UPGRADE,
	NNOTE
};
static atomic_bool noted[NNOTE];

enum phase { PH_WARMUP, PH_MEASURE, PH_STOP };
static atomic_int phase;
static volatile sig_atomic_t interrupted;

static struct {
	char host[64];	   /* as given, for the Host header */
	char hostport[72]; /* host:port */
	struct sockaddr_in addr;
	unsigned connections;
	double duration, warmup;
	uint64_t keys;
	double skew, writes, batch, inm;
	unsigned batch_size;
	uint64_t seed;
	unsigned timeout_ms;
	bool json;
} opt;

static struct zipf zipf;

struct lat {
	uint32_t *v;
	size_t n, cap;
};

struct stats {
	uint64_t kind[NKIND]; /* counted requests, answered or not */
	uint64_t status[NSC]; /* answered requests by status */
	uint64_t err[NERR];   /* failed requests by cause */
	uint64_t single;      /* answered single GETs */
	uint64_t cond_sent;   /* ... of them sent with If-None-Match */
	uint64_t cond_304;    /* ... and answered 304 */
	uint64_t single_304;  /* answered single GETs with 304 */
	uint64_t xc[NXC];     /* X-Cache of single GETs answered 200/304/404 */
	uint64_t reconnects;
	struct lat lat[NKIND];
};

struct etag_slot {
	uint64_t id; /* 0: empty */
	uint8_t len;
	char tag[ETAG_MAX];
};

struct conn {
	int fd;
	unsigned uses;	 /* responses read on this connection */
	size_t rx;	 /* bytes received of the current response */
	size_t beg, end; /* unread bytes in buf */
	char buf[BUF_SIZE];
};

struct response {
	int status;
	bool close;
	bool has_te;
	int64_t length; /* Content-Length, or -1 */
	enum xcache xc;
	size_t etag_len; /* 0: none */
	char etag[ETAG_MAX];
	char te[32];
};

struct worker {
	pthread_t tid;
	uint64_t rng;
	bool connected_once;
	unsigned backoff_ms;
	struct etag_slot *etags;
	struct stats st;
	struct conn conn;
	char req[REQ_MAX];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void note(enum note n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Say @fmt on stderr, the first time problem @n happens only. */
static void note(enum note n, const char *fmt, ...)
{
	va_list ap;
	char msg[256];

	if (atomic_exchange(&noted[n], true))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s (counted as an error; further ones are only counted)\n", msg);
}

static const char *errstr(int e, char *buf, size_t len)
{
	return strerror_r(e, buf, len);
}

/* ---- connections ---- */

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->beg = c->end = 0;
	c->uses = 0;
}

/* Open @c to the server: 0, or an errno value. */
static int conn_open(struct conn *c)
{
	struct timeval tv = {.tv_sec = opt.timeout_ms / 1000,
			     .tv_usec = (suseconds_t)(opt.timeout_ms % 1000) * 1000};
	int one = 1, e;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    connect(fd, (const struct sockaddr *)&opt.addr, sizeof(opt.addr))) {
		e = errno;
		close(fd);
		/* a connect that ran into SO_SNDTIMEO fails with EINPROGRESS */
		return e == EINPROGRESS ? ETIMEDOUT : e;
	}
	c->fd = fd;
	c->beg = c->end = 0;
	c->uses = 0;
	return 0;
}

static int send_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return E_TIMEOUT;
			return E_CLOSED;
		}
		p += w;
		n -= (size_t)w;
	}
	return E_NONE;
}

/* Receive up to @max bytes into @dst: E_NONE with *got > 0, or an error. */
static int recv_some(struct conn *c, char *dst, size_t max, uint64_t deadline, size_t *got)
{
	for (;;) {
		ssize_t r = recv(c->fd, dst, max, 0);
		if (r > 0) {
			*got = (size_t)r;
			c->rx += (size_t)r;
			/* SO_RCVTIMEO bounds each recv; this bounds the request */
			return now_ns() > deadline ? E_TIMEOUT : E_NONE;
		}
		if (r == 0)
			return E_CLOSED;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return E_TIMEOUT;
		return E_CLOSED;
	}
}

/* ---- response parsing ---- */

/* Is there a whole header block in @p? Its length in *hlen. */
static bool header_end(const char *p, size_t n, size_t *hlen)
{
	const char *q = p, *end = p + n;

	while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		q++;
		if (q < end && *q == '\n') {
			*hlen = (size_t)(q + 1 - p);
			return true;
		}
		if (q + 1 < end && q[0] == '\r' && q[1] == '\n') {
			*hlen = (size_t)(q + 2 - p);
			return true;
		}
	}
	return false;
}

static bool token_eq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* A printable copy of @p for messages. */
static const char *printable(char *buf, size_t len, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && i + 1 < len; i++)
		buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	buf[i] = '\0';
	return buf;
}

/* Does the comma-separated list @v contain token @tok? */
static bool list_has(const char *v, size_t n, const char *tok)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i, k;
		while (j < n && v[j] != ',')
			j++;
		k = j;
		while (i < k && (v[i] == ' ' || v[i] == '\t'))
			i++;
		while (k > i && (v[k - 1] == ' ' || v[k - 1] == '\t'))
			k--;
		if (token_eq(v + i, k - i, tok))
			return true;
		i = j + 1;
	}
	return false;
}

/* Parse the header block @p (@n bytes, through the empty line) into @r. */
static int parse_head(const char *p, size_t n, struct response *r)
{
	const char *end = p + n, *line = p;
	bool http10 = false, keep_alive = false;
	char show[64];

	memset(r, 0, sizeof(*r));
	r->length = -1;
	r->xc = XC_NONE;
	for (bool first = true;; first = false) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t len = (size_t)(nl - line);
		const char *colon, *v;
		size_t nlen, vlen;

		if (len && line[len - 1] == '\r')
			len--;
		if (first) {
			/* HTTP/1.x SP 3DIGIT [SP reason] */
			if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' ||
			    line[7] > '9' || line[8] != ' ' || line[9] < '1' || line[9] > '5' ||
			    line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
			    (len > 12 && line[12] != ' ')) {
				note(N_STATUS, "malformed status line \"%s\"",
				     printable(show, sizeof(show), line, len));
				return E_PROTOCOL;
			}
			http10 = line[7] == '0';
			r->status =
				(line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
			line = nl + 1;
			continue;
		}
		if (len == 0)
			break;
		colon = memchr(line, ':', len);
		nlen = colon ? (size_t)(colon - line) : 0;
		if (!colon || nlen == 0 || memchr(line, ' ', nlen) || memchr(line, '\t', nlen)) {
			note(N_HEADER, "malformed header line \"%s\"",
			     printable(show, sizeof(show), line, len));
			return E_PROTOCOL;
		}
		v = colon + 1;
		vlen = len - nlen - 1;
		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;

		if (token_eq(line, nlen, "Content-Length")) {
			uint64_t x = 0;
			size_t i;
			for (i = 0; i < vlen && v[i] >= '0' && v[i] <= '9' && x < BODY_MAX; i++)
				x = x * 10 + (uint64_t)(v[i] - '0');
			if (vlen == 0 || i < vlen || x >= BODY_MAX ||
			    (r->length >= 0 && (uint64_t)r->length != x)) {
				note(N_LENGTH, "bad Content-Length \"%s\"",
				     printable(show, sizeof(show), v, vlen));
				return E_PROTOCOL;
			}
			r->length = (int64_t)x;
		} else if (token_eq(line, nlen, "Transfer-Encoding")) {
			r->has_te = true;
			printable(r->te, sizeof(r->te), v, vlen);
		} else if (token_eq(line, nlen, "Connection")) {
			if (list_has(v, vlen, "close"))
				r->close = true;
			if (list_has(v, vlen, "keep-alive"))
				keep_alive = true;
		} else if (token_eq(line, nlen, "ETag")) {
			if (vlen && vlen <= ETAG_MAX) {
				memcpy(r->etag, v, vlen);
				r->etag_len = vlen;
			}
		} else if (token_eq(line, nlen, "X-Cache")) {
			r->xc = XC_OTHER;
			for (int i = 0; i < XC_NONE; i++)
				if (token_eq(v, vlen, xc_name[i]))
					r->xc = (enum xcache)i;
		}
		line = nl + 1;
	}
	if (http10 && !keep_alive)
		r->close = true;
	return E_NONE;
}

/* Read and discard @left bytes of body. */
static int discard_body(struct conn *c, uint64_t left, uint64_t deadline)
{
	size_t have = c->end - c->beg;
	size_t take = have < left ? have : (size_t)left;

	c->beg += take;
	left -= take;
	while (left) {
		size_t got, want = left < sizeof(c->buf) ? (size_t)left : sizeof(c->buf);
		int e;

		c->beg = c->end = 0;
		/* never past the body, so nothing of a next response is read */
		e = recv_some(c, c->buf, want, deadline, &got);
		if (e)
			return e;
		left -= got;
	}
	return E_NONE;
}

/* Read one whole response from @c into @r. */
static int read_response(struct conn *c, struct response *r, uint64_t deadline)
{
	for (;;) {
		size_t hlen, got;
		uint64_t body = 0;
		int e;

		while (!header_end(c->buf + c->beg, c->end - c->beg, &hlen)) {
			if (c->end - c->beg >= HDR_MAX) {
				note(N_TOO_BIG, "response header block larger than %d bytes",
				     HDR_MAX);
				return E_PROTOCOL;
			}
			if (c->beg == c->end) {
				c->beg = c->end = 0;
			} else if (c->end == sizeof(c->buf)) {
				memmove(c->buf, c->buf + c->beg, c->end - c->beg);
				c->end -= c->beg;
				c->beg = 0;
			}
			e = recv_some(c, c->buf + c->end, sizeof(c->buf) - c->end, deadline, &got);
			if (e)
				return e;
			c->end += got;
		}
		if (hlen > HDR_MAX) {
			note(N_TOO_BIG, "response header block larger than %d bytes", HDR_MAX);
			return E_PROTOCOL;
		}
		e = parse_head(c->buf + c->beg, hlen, r);
		if (e)
			return e;
		c->beg += hlen;
		if (r->status < 200) {
			if (r->status == 101) {
				note(N_UPGRADE, "unexpected 101 Switching Protocols");
				return E_PROTOCOL;
			}
			continue; /* an interim response; the real one follows */
		}
		if (r->status != 204 && r->status != 304) {
			if (r->has_te) {
				note(N_CHUNKED,
				     "status %d response with Transfer-Encoding: %s; only "
				     "Content-Length bodies are supported",
				     r->status, r->te);
				return E_PROTOCOL;
			}
			if (r->length < 0) {
				note(N_NO_LENGTH, "status %d response without Content-Length",
				     r->status);
				return E_PROTOCOL;
			}
			body = (uint64_t)r->length;
		}
		return discard_body(c, body, deadline);
	}
}

/* ---- requests ---- */

static uint64_t draw_id(struct worker *w)
{
	if (opt.skew > 0)
		return zipf_next(&zipf, &w->rng);
	return 1 + rng_below(&w->rng, opt.keys);
}

static struct etag_slot *etag_slot(struct worker *w, uint64_t id)
{
	return &w->etags[(id * UINT64_C(0x9e3779b97f4a7c15)) >> 48];
}

static void etag_put(struct worker *w, uint64_t id, const struct response *r)
{
	struct etag_slot *s;

	if (!w->etags || !r->etag_len)
		return;
	s = etag_slot(w, id);
	s->id = id;
	s->len = (uint8_t)r->etag_len;
	memcpy(s->tag, r->etag, r->etag_len);
}

static void etag_forget(struct worker *w, uint64_t id)
{
	struct etag_slot *s;

	if (!w->etags)
		return;
	s = etag_slot(w, id);
	if (s->id == id)
		s->id = 0;
}

/* Write the next request into w->req: its length; the id in *id and
 * whether it carries If-None-Match in *cond. */
static size_t build_request(struct worker *w, enum kind k, uint64_t *id, bool *cond)
{
	char *p = w->req;
	size_t n = 0, cap = sizeof(w->req);
	int len;

	*cond = false;
	*id = 0;
	if (k == K_GET) {
		/* drawn every time, so the sequence does not depend on answers */
		bool want_inm = rng_unit(&w->rng) * 100.0 < opt.inm;
		struct etag_slot *s = NULL;

		*id = draw_id(w);
		if (want_inm && w->etags) {
			s = etag_slot(w, *id);
			if (s->id != *id)
				s = NULL;
		}
		*cond = s != NULL;
		len = snprintf(p, cap,
			       "GET /products/%" PRIu64 " HTTP/1.1\r\nHost: %s\r\n"
			       "Accept: application/json\r\n%s%.*s%s\r\n",
			       *id, opt.hostport, s ? "If-None-Match: " : "", s ? (int)s->len : 0,
			       s ? s->tag : "", s ? "\r\n" : "");
		return (size_t)len;
	}
	if (k == K_BATCH) {
		n = (size_t)snprintf(p, cap, "GET /products?ids=");
		for (unsigned i = 0; i < opt.batch_size; i++)
			n += (size_t)snprintf(p + n, cap - n, "%s%" PRIu64, i ? "," : "",
					      draw_id(w));
		n += (size_t)snprintf(p + n, cap - n,
				      " HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n\r\n",
				      opt.hostport);
		return n;
	}
	{
		char body[64];
		int blen;
		uint64_t price = 100 + rng_below(&w->rng, 100000);
		uint64_t stock = rng_below(&w->rng, 1000);

		*id = draw_id(w);
		blen = snprintf(body, sizeof(body),
				"{\"price_cents\":%" PRIu64 ",\"stock\":%" PRIu64 "}", price,
				stock);
		len = snprintf(p, cap,
			       "PUT /products/%" PRIu64 " HTTP/1.1\r\nHost: %s\r\n"
			       "Accept: application/json\r\nContent-Type: application/json\r\n"
			       "Content-Length: %d\r\n\r\n%s",
			       *id, opt.hostport, blen, body);
		return (size_t)len;
	}
}

/* Send w->req and read the answer into @r. */
static int do_request(struct worker *w, size_t len, struct response *r, uint64_t deadline)
{
	struct conn *c = &w->conn;
	char eb[128];

	for (int attempt = 0;; attempt++) {
		int e;

		if (c->fd < 0) {
			e = conn_open(c);
			if (e) {
				note(N_CONNECT, "connect to %s failed: %s", opt.hostport,
				     errstr(e, eb, sizeof(eb)));
				return E_CONNECT;
			}
			if (w->connected_once && atomic_load(&phase) == PH_MEASURE)
				w->st.reconnects++;
			w->connected_once = true;
		}
		c->rx = 0;
		e = send_all(c, w->req, len);
		if (!e)
			e = read_response(c, r, deadline);
		if (!e) {
			c->uses++;
			if (r->close)
				conn_close(c);
			return E_NONE;
		}
		/* a reused connection the server had closed: try once more */
		bool retry = e == E_CLOSED && c->rx == 0 && c->uses > 0 && attempt == 0;
		conn_close(c);
		if (retry)
			continue;
		if (e == E_TIMEOUT)
			note(N_TIMEOUT, "a request got no complete answer within %u ms",
			     opt.timeout_ms);
		else if (e == E_CLOSED)
			note(N_CLOSED, "the server closed or reset a connection mid-request");
		return e;
	}
}

static void lat_push(struct lat *l, uint32_t us)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			fprintf(stderr, PROG ": out of memory for latencies\n");
			exit(1);
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = us;
}

static enum sclass status_class(int s)
{
	if (s == 304)
		return S_304;
	if (s == 404)
		return S_404;
	if (s >= 200 && s < 300)
		return S_2XX;
	if (s >= 400 && s < 500)
		return S_4XX;
	if (s >= 500 && s < 600)
		return S_5XX;
	return S_OTHER;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const uint64_t timeout_ns = (uint64_t)opt.timeout_ms * 1000000u;

	for (;;) {
		double u;
		enum kind k;
		uint64_t id, t0, t1, us;
		bool cond, counted;
		struct response r;
		size_t len;
		int e;

		if (atomic_load_explicit(&phase, memory_order_acquire) == PH_STOP)
			break;
		u = rng_unit(&w->rng) * 100.0;
		k = u < opt.writes ? K_PUT : u < opt.writes + opt.batch ? K_BATCH : K_GET;
		len = build_request(w, k, &id, &cond);
		t0 = now_ns();
		e = do_request(w, len, &r, t0 + timeout_ns);
		t1 = now_ns();
		/* counted when it ended inside the measurement window */
		counted = atomic_load_explicit(&phase, memory_order_acquire) == PH_MEASURE;
		if (e) {
			if (counted) {
				w->st.kind[k]++;
				w->st.err[e]++;
			}
			if (e == E_CONNECT) {
				/* do not spin on a server that is down */
				w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 1;
				if (w->backoff_ms > BACKOFF_MAX_MS)
					w->backoff_ms = BACKOFF_MAX_MS;
				usleep(w->backoff_ms * 1000);
			}
			continue;
		}
		w->backoff_ms = 0;
		if (k != K_BATCH) {
			if (r.status == 200 || r.status == 304)
				etag_put(w, id, &r);
			else if (r.status == 404)
				etag_forget(w, id);
		}
		if (!counted)
			continue;
		w->st.kind[k]++;
		w->st.status[status_class(r.status)]++;
		if (k == K_GET) {
			w->st.single++;
			w->st.cond_sent += cond;
			w->st.cond_304 += cond && r.status == 304;
			w->st.single_304 += r.status == 304;
			if (r.status == 200 || r.status == 304 || r.status == 404)
				w->st.xc[r.xc]++;
		}
		us = (t1 - t0 + 500) / 1000;
		lat_push(&w->st.lat[k], us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
	}
	conn_close(&w->conn);
	return NULL;
}

/* ---- summary ---- */

/* Sort @v ascending: LSD radix sort, 8 bits a pass. */
static void sort_u32(uint32_t *v, size_t n)
{
	uint32_t *tmp, *src = v, *dst;

	if (n < 2)
		return;
	tmp = malloc(n * sizeof(*tmp));
	if (!tmp) {
		fprintf(stderr, PROG ": out of memory sorting latencies\n");
		exit(1);
	}
	dst = tmp;
	for (unsigned shift = 0; shift < 32; shift += 8) {
		size_t count[257] = {0};
		for (size_t i = 0; i < n; i++)
			count[((src[i] >> shift) & 0xff) + 1]++;
		if (count[((src[0] >> shift) & 0xff) + 1] == n)
			continue; /* all alike in this byte */
		for (unsigned b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i] >> shift) & 0xff]++] = src[i];
		uint32_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
	free(tmp);
}

/* Nearest-rank percentile @p (0..100) of the sorted @v. */
static uint32_t pctl(const uint32_t *v, size_t n, double p)
{
	size_t r = (size_t)ceil(p / 100.0 * (double)n);

	if (n == 0)
		return 0;
	if (r < 1)
		r = 1;
	if (r > n)
		r = n;
	return v[r - 1];
}

static double share(uint64_t a, uint64_t b)
{
	return b ? 100.0 * (double)a / (double)b : 0.0;
}

struct sorted {
	uint32_t *v;
	size_t n;
};

static const double pct_at[] = {50, 90, 99, 99.9};
static const char *const pct_name[] = {"p50", "p90", "p99", "p99.9"};
static const char *const pct_json[] = {"p50", "p90", "p99", "p99_9"};

static void print_text(const struct stats *t, const struct sorted *all, const struct sorted *by,
		       double secs, uint64_t requests, uint64_t answered, uint64_t errors)
{
	uint64_t xbase = 0;

	for (int i = 0; i < NXC; i++)
		xbase += t->xc[i];
	printf("product-load  http://%s  %u connections  keys 1..%" PRIu64
	       "  skew %g  seed %" PRIu64 "\n",
	       opt.hostport, opt.connections, opt.keys, opt.skew, opt.seed);
	printf("mix           put %g %%  batch %g %% (x%u)  get %g %%  if-none-match %g %% of "
	       "gets\n",
	       opt.writes, opt.batch, opt.batch_size, 100.0 - opt.writes - opt.batch, opt.inm);
	printf("duration      %.3f s measured (after %g s warm-up)\n", secs, opt.warmup);
	printf("requests      %" PRIu64 " (%" PRIu64 " answered, %" PRIu64 " errors), %" PRIu64
	       " reconnects\n",
	       requests, answered, errors, t->reconnects);
	printf("throughput    %.1f req/s answered\n", secs > 0 ? (double)answered / secs : 0.0);
	printf("kinds         get %" PRIu64 "  batch %" PRIu64 "  put %" PRIu64 "\n",
	       t->kind[K_GET], t->kind[K_BATCH], t->kind[K_PUT]);
	printf("status        2xx %" PRIu64 "  304 %" PRIu64 "  404 %" PRIu64 "  other-4xx %" PRIu64
	       "  5xx %" PRIu64,
	       t->status[S_2XX], t->status[S_304], t->status[S_404], t->status[S_4XX],
	       t->status[S_5XX]);
	if (t->status[S_OTHER])
		printf("  other %" PRIu64, t->status[S_OTHER]);
	printf("  errors %" PRIu64 "\n", errors);
	printf("errors        connect %" PRIu64 "  timeout %" PRIu64 "  closed %" PRIu64
	       "  protocol %" PRIu64 "\n",
	       t->err[E_CONNECT], t->err[E_TIMEOUT], t->err[E_CLOSED], t->err[E_PROTOCOL]);
	printf("304           %.1f %% of %" PRIu64 " conditional GETs, %.1f %% of %" PRIu64
	       " single GETs\n",
	       share(t->cond_304, t->cond_sent), t->cond_sent, share(t->single_304, t->single),
	       t->single);
	printf("x-cache      ");
	for (int i = 0; i < NXC; i++)
		if (i != XC_OTHER || t->xc[i])
			printf(" %s %.1f %%", xc_name[i], share(t->xc[i], xbase));
	printf("  (of %" PRIu64 " single GETs answered 200/304/404)\n", xbase);
	printf("latency us   ");
	if (all->n) {
		for (int i = 0; i < 4; i++)
			printf(" %s %" PRIu32, pct_name[i], pctl(all->v, all->n, pct_at[i]));
		printf(" max %" PRIu32, all->v[all->n - 1]);
	} else {
		printf(" -");
	}
	printf("  (%zu answers)\n", all->n);
	for (int k = 0; k < NKIND; k++) {
		if (!by[k].n)
			continue;
		printf("  %-11s p50 %" PRIu32 " p99 %" PRIu32 "  (%zu)\n", kind_name[k],
		       pctl(by[k].v, by[k].n, 50), pctl(by[k].v, by[k].n, 99), by[k].n);
	}
}

static void print_json(const struct stats *t, const struct sorted *all, const struct sorted *by,
		       double secs, uint64_t requests, uint64_t answered, uint64_t errors)
{
	uint64_t xbase = 0;

	for (int i = 0; i < NXC; i++)
		xbase += t->xc[i];
	printf("{\"url\":\"http://%s\",\"connections\":%u,\"keys\":%" PRIu64
	       ",\"skew\":%g,\"writes_pct\":%g,\"batch_pct\":%g,\"batch_size\":%u,\"inm_pct\":%g,"
	       "\"seed\":%" PRIu64 ",\"timeout_ms\":%u,\"warmup_s\":%g,",
	       opt.hostport, opt.connections, opt.keys, opt.skew, opt.writes, opt.batch,
	       opt.batch_size, opt.inm, opt.seed, opt.timeout_ms, opt.warmup);
	printf("\"duration_s\":%.6f,\"requests\":%" PRIu64 ",\"answered\":%" PRIu64
	       ",\"errors\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"throughput_rps\":%.3f,",
	       secs, requests, answered, errors, t->reconnects,
	       secs > 0 ? (double)answered / secs : 0.0);
	printf("\"kinds\":{");
	for (int k = 0; k < NKIND; k++)
		printf("%s\"%s\":%" PRIu64, k ? "," : "", kind_name[k], t->kind[k]);
	printf("},\"status\":{");
	for (int s = 0; s < NSC; s++)
		printf("\"%s\":%" PRIu64 ",", sclass_name[s], t->status[s]);
	printf("\"errors\":%" PRIu64 "},\"error_kinds\":{", errors);
	for (int e = E_CONNECT; e < NERR; e++)
		printf("%s\"%s\":%" PRIu64, e > E_CONNECT ? "," : "", err_name[e], t->err[e]);
	printf("},\"conditional\":{\"single_gets\":%" PRIu64 ",\"sent\":%" PRIu64
	       ",\"not_modified\":%" PRIu64 ",\"pct_of_conditional\":%.3f,"
	       "\"single_304\":%" PRIu64 ",\"pct_of_single_gets\":%.3f},",
	       t->single, t->cond_sent, t->cond_304, share(t->cond_304, t->cond_sent),
	       t->single_304, share(t->single_304, t->single));
	printf("\"x_cache\":{\"base\":%" PRIu64 ",\"counts\":{", xbase);
	for (int i = 0; i < NXC; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "", xc_name[i], t->xc[i]);
	printf("},\"pct\":{");
	for (int i = 0; i < NXC; i++)
		printf("%s\"%s\":%.3f", i ? "," : "", xc_name[i], share(t->xc[i], xbase));
	printf("}},\"latency_us\":{\"count\":%zu", all->n);
	for (int i = 0; i < 4; i++) {
		if (all->n)
			printf(",\"%s\":%" PRIu32, pct_json[i], pctl(all->v, all->n, pct_at[i]));
		else
			printf(",\"%s\":null", pct_json[i]);
	}
	if (all->n)
		printf(",\"max\":%" PRIu32 "},", all->v[all->n - 1]);
	else
		printf(",\"max\":null},");
	printf("\"latency_us_by_kind\":{");
	for (int k = 0; k < NKIND; k++) {
		printf("%s\"%s\":{\"count\":%zu", k ? "," : "", kind_name[k], by[k].n);
		if (by[k].n)
			printf(",\"p50\":%" PRIu32 ",\"p99\":%" PRIu32 "}",
			       pctl(by[k].v, by[k].n, 50), pctl(by[k].v, by[k].n, 99));
		else
			printf(",\"p50\":null,\"p99\":null}");
	}
	printf("}}\n");
}

/* Sum the workers' counts, sort the latencies, print; the exit status. */
static int summarize(struct worker *ws, unsigned nw, double secs)
{
	struct stats t = {0};
	struct sorted by[NKIND] = {{0}}, all = {0};
	uint64_t requests = 0, answered = 0, errors = 0;
	int rc = 0;

	for (unsigned i = 0; i < nw; i++) {
		const struct stats *s = &ws[i].st;
		for (int k = 0; k < NKIND; k++) {
			t.kind[k] += s->kind[k];
			by[k].n += s->lat[k].n;
		}
		for (int j = 0; j < NSC; j++)
			t.status[j] += s->status[j];
		for (int j = 0; j < NERR; j++)
			t.err[j] += s->err[j];
		for (int j = 0; j < NXC; j++)
			t.xc[j] += s->xc[j];
		t.single += s->single;
		t.cond_sent += s->cond_sent;
		t.cond_304 += s->cond_304;
		t.single_304 += s->single_304;
		t.reconnects += s->reconnects;
	}
	for (int k = 0; k < NKIND; k++) {
		size_t at = 0;
		by[k].v = malloc((by[k].n ? by[k].n : 1) * sizeof(uint32_t));
		if (!by[k].v)
			goto oom;
		for (unsigned i = 0; i < nw; i++) {
			const struct lat *l = &ws[i].st.lat[k];
			if (l->n)
				memcpy(by[k].v + at, l->v, l->n * sizeof(uint32_t));
			at += l->n;
		}
		sort_u32(by[k].v, by[k].n);
		all.n += by[k].n;
		requests += t.kind[k];
	}
	all.v = malloc((all.n ? all.n : 1) * sizeof(uint32_t));
	if (!all.v)
		goto oom;
	{
		size_t at = 0;
		for (int k = 0; k < NKIND; k++) {
			if (by[k].n)
				memcpy(all.v + at, by[k].v, by[k].n * sizeof(uint32_t));
			at += by[k].n;
		}
	}
	sort_u32(all.v, all.n);
	for (int j = E_CONNECT; j < NERR; j++)
		errors += t.err[j];
	answered = requests - errors;

	if (opt.json)
		print_json(&t, &all, by, secs, requests, answered, errors);
	else
		print_text(&t, &all, by, secs, requests, answered, errors);
	fflush(stdout);
	if (errors * 2 > requests) {
		fprintf(stderr,
			PROG ": more than half of the requests failed (%" PRIu64 " of %" PRIu64
			     " were transport errors)\n",
			errors, requests);
		rc = 1;
	}
	for (int k = 0; k < NKIND; k++)
		free(by[k].v);
	free(all.v);
	return rc;
oom:
	fprintf(stderr, PROG ": out of memory merging latencies\n");
	exit(1);
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [options]\n"
		"HTTP/1.1 load generator for the product API: keep-alive connections, one thread\n"
		"each, sending GET /products/{id}, GET /products?ids=... and PUT /products/{id}\n"
		"back to back, then a summary of statuses, X-Cache values and latencies.\n"
		"\n"
		"  --url http://HOST:PORT  server, HOST an IPv4 address or localhost\n"
		"                          (default http://127.0.0.1:8080)\n"
		"  -c, --connections N     connections, one thread each, 1..1024 (default 16)\n"
		"  -d, --duration SECONDS  measured time, decimals allowed (default 10)\n"
		"      --warmup SECONDS    time before it: requests sent, not counted (default 0)\n"
		"  -k, --keys N            product ids 1..N (default 100000)\n"
		"  -s, --skew S            Zipf exponent of the ids, 0 = uniform (default 0.99)\n"
		"  -w, --writes PCT        share of requests that are PUTs, 0..100 (default 0)\n"
		"  -b, --batch PCT         share that are batch GETs, 0..100 (default 0)\n"
		"      --batch-size N      ids per batch GET, 1..100 (default 10)\n"
		"      --inm PCT           share of single GETs sent with If-None-Match when the\n"
		"                          connection knows the id's ETag, 0..100 (default 0)\n"
		"      --seed N            seed; thread i draws from a stream of (seed, i) "
		"(default 1)\n"
		"      --timeout MS        per-request timeout in milliseconds (default 5000)\n"
		"      --json              print the summary as one JSON object\n"
		"  -h, --help              this help\n"
		"\n"
		"Exit status: 0 when the run completed (HTTP errors included), 1 when the server\n"
		"cannot be reached or more than half of the requests were transport errors,\n"
		"2 for bad arguments.\n");
}

static void bad(const char *name, const char *want, const char *got)
{
	fprintf(stderr, PROG ": %s: expected %s, got '%s'\n", name, want, got);
	exit(2);
}

static uint64_t arg_u64(const char *name, const char *s, uint64_t lo, uint64_t hi)
{
	char want[96], *end;
	unsigned long long v;

	snprintf(want, sizeof(want), "an integer in %" PRIu64 "..%" PRIu64, lo, hi);
	errno = 0;
	if (*s < '0' || *s > '9')
		bad(name, want, s);
	v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		bad(name, want, s);
	return v;
}

static double arg_double(const char *name, const char *s, double lo, double hi)
{
	char want[96], *end;
	double v;

	snprintf(want, sizeof(want), "a number in %g..%g", lo, hi);
	errno = 0;
	if (!((*s >= '0' && *s <= '9') || *s == '.'))
		bad(name, want, s);
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < lo || v > hi)
		bad(name, want, s);
	return v;
}

static void arg_url(const char *s)
{
	const char *want = "http://HOST[:PORT] with HOST an IPv4 address or localhost";
	const char *h = s + 7, *e;
	size_t hlen;
	unsigned long port = 80;

	if (strncasecmp(s, "http://", 7) != 0)
		bad("--url", want, s);
	e = h + strcspn(h, ":/");
	hlen = (size_t)(e - h);
	if (hlen == 0 || hlen >= sizeof(opt.host))
		bad("--url", want, s);
	memcpy(opt.host, h, hlen);
	opt.host[hlen] = '\0';
	memset(&opt.addr, 0, sizeof(opt.addr));
	opt.addr.sin_family = AF_INET;
	if (strcasecmp(opt.host, "localhost") == 0)
		opt.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, opt.host, &opt.addr.sin_addr) != 1)
		bad("--url", want, s);
	if (*e == ':') {
		char *end;
		if (e[1] < '0' || e[1] > '9')
			bad("--url", want, s);
		errno = 0;
		port = strtoul(e + 1, &end, 10);
		if (errno || port < 1 || port > 65535 || (*end && *end != '/'))
			bad("--url", want, s);
	} else if (*e && *e != '/') {
		bad("--url", want, s);
	}
	opt.addr.sin_port = htons((uint16_t)port);
	snprintf(opt.hostport, sizeof(opt.hostport), "%s:%lu", opt.host, port);
}

static void parse_args(int argc, char **argv)
{
	enum { O_URL = 256, O_WARMUP, O_BATCH_SIZE, O_INM, O_SEED, O_TIMEOUT, O_JSON };
	static const struct option longs[] = {
		{"url", required_argument, NULL, O_URL},
		{"connections", required_argument, NULL, 'c'},
		{"duration", required_argument, NULL, 'd'},
		{"warmup", required_argument, NULL, O_WARMUP},
		{"keys", required_argument, NULL, 'k'},
		{"skew", required_argument, NULL, 's'},
		{"writes", required_argument, NULL, 'w'},
		{"batch", required_argument, NULL, 'b'},
		{"batch-size", required_argument, NULL, O_BATCH_SIZE},
		{"inm", required_argument, NULL, O_INM},
		{"seed", required_argument, NULL, O_SEED},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"json", no_argument, NULL, O_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	opterr = 0;
	arg_url("http://127.0.0.1:8080");
	opt.connections = 16;
	opt.duration = 10;
	opt.keys = 100000;
	opt.skew = 0.99;
	opt.batch_size = 10;
	opt.seed = 1;
	opt.timeout_ms = 5000;

	/* "+": no permuting, so argv[at] is the element being parsed */
	for (int at = optind; (ch = getopt_long(argc, argv, "+:c:d:k:s:w:b:h", longs, NULL)) != -1;
	     at = optind) {
		bool longopt = at < argc && strncmp(argv[at], "--", 2) == 0;

		switch (ch) {
		case O_URL:
			arg_url(optarg);
			break;
		case 'c':
			opt.connections = (unsigned)arg_u64("--connections", optarg, 1, 1024);
			break;
		case 'd':
			opt.duration = arg_double("--duration", optarg, 0.001, 1e6);
			break;
		case O_WARMUP:
			opt.warmup = arg_double("--warmup", optarg, 0, 1e6);
			break;
		case 'k':
			opt.keys = arg_u64("--keys", optarg, 1, KEYS_MAX);
			break;
		case 's':
			opt.skew = arg_double("--skew", optarg, 0, 100);
			break;
		case 'w':
			opt.writes = arg_double("--writes", optarg, 0, 100);
			break;
		case 'b':
			opt.batch = arg_double("--batch", optarg, 0, 100);
			break;
		case O_BATCH_SIZE:
			opt.batch_size = (unsigned)arg_u64("--batch-size", optarg, 1, 100);
			break;
		case O_INM:
			opt.inm = arg_double("--inm", optarg, 0, 100);
			break;
		case O_SEED:
			opt.seed = arg_u64("--seed", optarg, 0, UINT64_MAX);
			break;
		case O_TIMEOUT:
			opt.timeout_ms = (unsigned)arg_u64("--timeout", optarg, 1, 3600000);
			break;
		case O_JSON:
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			if (longopt)
				fprintf(stderr, PROG ": option '%s' needs a value (see --help)\n",
					argv[at]);
			else
				fprintf(stderr, PROG ": option '-%c' needs a value (see --help)\n",
					optopt);
			exit(2);
		default:
			if (longopt && optopt)
				fprintf(stderr, PROG ": option '%s' takes no value (see --help)\n",
					argv[at]);
			else if (longopt)
				fprintf(stderr,
					PROG ": unknown or ambiguous option '%s' (see --help)\n",
					argv[at]);
			else
				fprintf(stderr, PROG ": unknown option '-%c' (see --help)\n",
					optopt);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", argv[optind]);
		exit(2);
	}
	if (opt.writes + opt.batch > 100.0) {
		fprintf(stderr,
			PROG ": --writes + --batch: expected at most 100 together, got %g + %g\n",
			opt.writes, opt.batch);
		exit(2);
	}
}

/* ---- main ---- */

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Sleep until monotonic @ns, or until SIGINT/SIGTERM. */
static void sleep_until(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u)};

	while (!interrupted && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t block, old;
	pthread_attr_t attr;
	struct worker *ws;
	struct conn *probe;
	uint64_t t_start, t_measure, t_stop;
	unsigned started = 0;
	char eb[128];
	int e, rc;

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (opt.skew > 0 && zipf_init(&zipf, opt.keys, opt.skew) != 0) {
		fprintf(stderr, PROG ": --skew: cannot sample Zipf(%g) over %" PRIu64 " keys\n",
			opt.skew, opt.keys);
		return 2;
	}

	/* one connection first, so a server that is not there is an error */
	probe = malloc(sizeof(*probe));
	if (!probe) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	probe->fd = -1;
	e = conn_open(probe);
	if (e) {
		fprintf(stderr, PROG ": cannot connect to http://%s: %s\n", opt.hostport,
			errstr(e, eb, sizeof(eb)));
		free(probe);
		return 1;
	}
	conn_close(probe);
	free(probe);

	ws = calloc(opt.connections, sizeof(*ws));
	if (!ws) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	{
		uint64_t s = opt.seed, base = rng_next(&s);
		for (unsigned i = 0; i < opt.connections; i++) {
			struct worker *w = &ws[i];
			uint64_t mix = base + (i + 1) * UINT64_C(0xd1b54a32d192ed03);

			w->rng = rng_next(&mix);
			w->conn.fd = -1;
			if (opt.inm > 0) {
				w->etags = calloc(ETAG_SLOTS, sizeof(*w->etags));
				if (!w->etags) {
					fprintf(stderr, PROG ": out of memory for ETag tables\n");
					return 1;
				}
			}
		}
	}

	/* the workers leave SIGINT/SIGTERM to this thread */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	t_start = now_ns();
	t_measure = t_start;
	atomic_store(&phase, opt.warmup > 0 ? PH_WARMUP : PH_MEASURE);
	for (; started < opt.connections; started++) {
		e = pthread_create(&ws[started].tid, &attr, worker_main, &ws[started]);
		if (e) {
			fprintf(stderr, PROG ": cannot start thread %u: %s\n", started,
				errstr(e, eb, sizeof(eb)));
			atomic_store(&phase, PH_STOP);
			for (unsigned i = 0; i < started; i++)
				pthread_join(ws[i].tid, NULL);
			return 1;
		}
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	if (opt.warmup > 0) {
		sleep_until(t_start + (uint64_t)(opt.warmup * 1e9));
		t_measure = now_ns();
		atomic_store_explicit(&phase, interrupted ? PH_STOP : PH_MEASURE,
				      memory_order_release);
	}
	sleep_until(t_measure + (uint64_t)(opt.duration * 1e9));
	/* the window is taken wide by a hair: every counted answer ends in it */
	atomic_store_explicit(&phase, PH_STOP, memory_order_release);
	t_stop = now_ns();
	if (interrupted)
		fprintf(stderr, PROG ": interrupted, summarizing what was measured\n");
	for (unsigned i = 0; i < started; i++)
		pthread_join(ws[i].tid, NULL);

	rc = summarize(ws, opt.connections, (double)(t_stop - t_measure) / 1e9);
	for (unsigned i = 0; i < opt.connections; i++) {
		for (int k = 0; k < NKIND; k++)
			free(ws[i].st.lat[k].v);
		free(ws[i].etags);
	}
	free(ws);
	return rc;
}
