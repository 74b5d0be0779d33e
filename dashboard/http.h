/*
 * http.h - the HTTP dashboard (libmicrohttpd) over a segment's statistics.
 */
#ifndef HOSTCACHE_DASH_HTTP_H
#define HOSTCACHE_DASH_HTTP_H

#include <stdint.h>

#include "hostcache.h"

struct dash_http; /* opaque */

struct dash_http_opts {
	const char *bind;   /* "127.0.0.1:8080" (default address 127.0.0.1; port 0 = any) */
	const char *token;  /* bearer token for mutating endpoints; NULL: they are refused */
	uint32_t sample_ms; /* how often the model is fed; 0 = 1000 */
};

/*
 * dash_http_start - serve the dashboard of segment handle @c (read-only is
 * enough for every read endpoint) in background threads.  Returns 0 and the
 * server in *out, or a negative errno / HC_E_* with a message on stderr.
 */
int dash_http_start(struct hc_cache *c, const struct dash_http_opts *o, struct dash_http **out);

/* dash_http_port - the port bound (useful with port 0). */
int dash_http_port(const struct dash_http *h);

/* dash_http_stop - stop serving and free.  Accepts NULL. */
void dash_http_stop(struct dash_http *h);

#endif
