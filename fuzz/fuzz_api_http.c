/*
 * fuzz_api_http.c - the product API's HTTP side (examples/product-api/api.c
 * behind libmicrohttpd: routing, ids= batch parsing, PUT body validation)
 * on arbitrary request bytes.  One worker (api_worker, as main.c runs it in
 * a forked process) runs in a thread of this process, over a 200-product
 * SQLite database in a temporary directory and a small segment, on a
 * loopback listening socket; each input is written as it is to a fresh
 * connection, the write side is shut, and the reply is read until the
 * worker closes or 200 ms have passed.  A crash in any of the worker's
 * threads stops this process, so libFuzzer sees it as the input's.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "api.h"

#define ROWS 200
#define REPLY_MS 200

static int port;
static char dir[64] = "/tmp/hostcache-fuzz-api.XXXXXX";
static char db_path[128];
static struct api_config cfg;
static int listen_fd, ready[2];

static void fail(const char *what)
{
	perror(what);
	abort();
}

static void *worker_main(void *arg)
{
	(void)arg;
	int rc = api_worker(&cfg, listen_fd, ready[1]);
	fprintf(stderr, "fuzz_api_http: the worker returned %d\n", rc);
	abort();
}

/* The database's files go when the process ends normally. */
static void remove_db(void)
{
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char path[160];
		snprintf(path, sizeof(path), "%s%s", db_path, suffixes[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void setup(void)
{
	if (!mkdtemp(dir))
		fail("fuzz_api_http: mkdtemp");
	snprintf(db_path, sizeof(db_path), "%s/products.db", dir);
	atexit(remove_db);
	if (db_prepare(db_path, ROWS))
		abort();

	static char name[64];
	hc_close(fuzz_segment("api", 16384, name, sizeof(name)));
	static struct api_shared shared;
	cfg = (struct api_config){.segment = name,
				  .host = "fuzz",
				  .workers = 1,
				  .threads = 2,
				  .ttl_ms = 60000,
				  .stale_ms = 10000,
				  .error_ms = 5000,
				  .negative_ttl_ms = 1000,
				  .conn_limit = 64,
				  .request_timeout_ms = 10000, /* the product-api default */
				  .db = {.path = db_path, .counters = &shared.db},
				  .shared = &shared};

	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(listen_fd, 64) || getsockname(listen_fd, (struct sockaddr *)&sa, &len))
		fail("fuzz_api_http: listen");
	port = ntohs(sa.sin_port);
	if (pipe(ready))
		fail("fuzz_api_http: pipe");

	pthread_t t;
	char byte;
	if (pthread_create(&t, NULL, worker_main, NULL))
		fail("fuzz_api_http: pthread_create");
	pthread_detach(t);
	if (read(ready[0], &byte, 1) != 1)
		fail("fuzz_api_http: the worker did not start");
	close(ready[0]);
	hc_unlink(name); /* the worker has it mapped */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char reply[1 << 16];

	if (!port)
		setup();
	fuzz_http_exchange(port, data, size, reply, sizeof(reply), REPLY_MS);
	return 0;
}
