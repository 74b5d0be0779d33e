/*
 * util.h - what hostcache-bench and hostcache-compare share: the clock,
 * the key scheme, and showing a server's log when it fails.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdint.h>

#define BENCH_KEY_LEN 20 /* "key-" + 16 hex digits */

uint64_t now_ns(void);				    /* CLOCK_MONOTONIC */
void make_key(uint64_t id, char *key);		    /* BENCH_KEY_LEN bytes, no terminator */
void print_tail(const char *path, const char *tag); /* the last ~2 KB of a log, to stderr */

#endif /* BENCH_UTIL_H */
