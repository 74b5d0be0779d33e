/*
 * util.c - see util.h.
 */
#include "util.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void make_key(uint64_t id, char *key)
{
	static const char hex[] = "0123456789abcdef";
	memcpy(key, "key-", 4);
	for (int i = BENCH_KEY_LEN - 1; i >= 4; i--) {
		key[i] = hex[id & 15];
		id >>= 4;
	}
}

void print_tail(const char *path, const char *tag)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[2048];
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	fprintf(stderr, "---- end of the %s log ----\n%s%s", tag, buf,
		buf[n - 1] == '\n' ? "" : "\n");
}
