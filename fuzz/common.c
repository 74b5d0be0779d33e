/*
 * common.c - what the fuzz targets share: a small private segment, and a
 * loopback HTTP client that sends one input as raw bytes on a fresh
 * connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

/* After the first bytes of a reply, this long without more ends it. */
#define QUIET_MS 20

struct hc_cache *fuzz_segment(const char *tag, uint32_t max_value, char *name, size_t cap)
{
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL,
			       .size = 1u << 20,
			       .max_threads = 8,
			       .max_value = max_value,
			       .bytes_per_slot = 256};
	struct hc_cache *c;

	snprintf(name, cap, "fuzz-%s-%d", tag, (int)getpid());
	hc_unlink(name);
	int rc = hc_open(name, &o, &c);
	if (rc) {
		fprintf(stderr, "fuzz: create segment %s: %s\n", name, hc_strerror(rc));
		abort();
	}
	return c;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The client side of fuzz_http_exchange: the bytes go out while the reply
 * is read (a server may answer, or close, before it has read everything),
 * then the write side is shut so that the server sees the end of the input.
 * It ends when the server closes, when the reply has been followed by
 * QUIET_MS of silence (a keep-alive connection), or at the deadline.
 */
static size_t exchange(int fd, const uint8_t *data, size_t size, char *buf, size_t cap,
		       int timeout_ms)
{
	size_t sent = 0, got = 0;
	bool shut = false;
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		if (sent == size && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		int64_t left = deadline - now_ms();
		if (left <= 0)
			break;
		/* a server keeping the connection open is done once it falls quiet */
		if (got > 0 && shut && left > QUIET_MS)
			left = QUIET_MS;
		struct pollfd pfd = {.fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT)};
		int n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			char discard[4096];
			char *to = got < cap ? buf + got : discard;
			size_t room = got < cap ? cap - got : sizeof(discard);
			ssize_t r = recv(fd, to, room, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
				break; /* closed or reset: the reply is complete */
			if (r > 0 && got < cap)
				got += (size_t)r;
		}
		if (!shut && (pfd.revents & POLLOUT)) {
			ssize_t w = send(fd, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0)
				sent += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				shut = true; /* the server has gone away from this connection */
		}
	}
	return got;
}

/*
 * connect() that a signal does not cut short (libFuzzer's timers interrupt
 * it when the server's backlog is full): the connection goes on in the
 * background, so wait for it and take its outcome.  0, or -1 with errno.
 */
static int connect_loopback(int fd, const struct sockaddr_in *sa)
{
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EINTR)
		return -1;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		int n = poll(&pfd, 1, 10000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = ETIMEDOUT;
		if (n <= 0)
			return -1;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			return -1;
		errno = err;
		return err ? -1 : 0;
	}
}

size_t fuzz_http_exchange(int port, const uint8_t *data, size_t size, char *buf, size_t cap,
			  int timeout_ms)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("fuzz: socket");
		abort();
	}
	if (connect_loopback(fd, &sa) != 0) {
		fprintf(stderr, "fuzz: the server at port %d does not accept: %s\n", port,
			strerror(errno));
		abort();
	}
	int64_t start = now_ms();
	size_t got = exchange(fd, data, size, buf, cap, timeout_ms);
	close(fd);
	if (getenv("FUZZ_HTTP_TRACE")) {
		size_t line = 0;
		while (line < got && line < 80 && buf[line] != '\r' && buf[line] != '\n')
			line++;
		fprintf(stderr, "fuzz: %zu bytes in, %zu out in %lld ms: %.*s\n", size, got,
			(long long)(now_ms() - start), (int)line, buf);
	}
	/* whatever the server sends starts with a status line */
	if (got > 0 && (got < 5 || memcmp(buf, "HTTP/", 5) != 0)) {
		fprintf(stderr, "fuzz: a reply that is not HTTP: %.*s\n",
			(int)(got < 80 ? got : 80), buf);
		abort();
	}
	return got;
}
