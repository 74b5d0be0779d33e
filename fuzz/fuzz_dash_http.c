/*
 * fuzz_dash_http.c - the HTTP dashboard (dashboard/http.c behind
 * libmicrohttpd) on arbitrary request bytes.  The real server is started
 * once, in this process, on 127.0.0.1 (any port) over a small segment with
 * a few entries; each input is written as it is to a fresh loopback
 * connection, the write side is shut, and the reply is read until the
 * server closes or 200 ms have passed.  A crash in a server thread stops
 * this process, so libFuzzer sees it as the input's.  The token of the
 * mutating endpoints is "fuzz-token" (the seeds carry it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"

#define TOKEN "fuzz-token"
#define REPLY_MS 200

static struct dash_http *server;
static int port;

static void setup(void)
{
	char name[64];
	struct hc_cache *c = fuzz_segment("dash", 4096, name, sizeof(name));
	hc_unlink(name); /* the mapping stays; nothing is left behind at exit */
	for (int i = 0; i < 50; i++) {
		char key[32], val[64];
		int kl = snprintf(key, sizeof(key), "product:%d", i);
		int vl = snprintf(val, sizeof(val), "{\"id\":%d}", i);
		hc_set(c, key, (size_t)kl, val, (size_t)vl, i % 2 ? 60000 : 0);
	}
	struct dash_http_opts o = {.bind = "127.0.0.1:0", .token = TOKEN, .sample_ms = 100};
	int rc = dash_http_start(c, &o, &server);
	if (rc) {
		fprintf(stderr, "fuzz_dash_http: dash_http_start: %s\n", hc_strerror(rc));
		abort();
	}
	port = dash_http_port(server);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char reply[1 << 16];

	if (!server)
		setup();
	fuzz_http_exchange(port, data, size, reply, sizeof(reply), REPLY_MS);
	return 0;
}
