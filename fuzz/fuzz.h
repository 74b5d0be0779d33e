/*
 * fuzz.h - the entry point every fuzz target defines (libFuzzer's), called
 * by libFuzzer or by replay.c, and the helpers of common.c.
 */
#ifndef HOSTCACHE_FUZZ_H
#define HOSTCACHE_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostcache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * fuzz_segment - create a fresh 1 MiB segment "fuzz-@tag-<pid>" for values
 * up to @max_value bytes (its name in @name) and attach to it; aborts on
 * failure.  The caller unlinks the name when it no longer needs it.
 */
struct hc_cache *fuzz_segment(const char *tag, uint32_t max_value, char *name, size_t cap);

/*
 * fuzz_http_exchange - connect to 127.0.0.1:@port, send @data as it is,
 * shut the write side, and read the reply (the first @cap bytes kept in
 * @buf) until the server closes, falls quiet for 20 ms after answering,
 * or @timeout_ms have passed since the start.
 * Returns the bytes kept.  Aborts when the server does not accept, or
 * answers with something that does not start as an HTTP response.
 */
size_t fuzz_http_exchange(int port, const uint8_t *data, size_t size, char *buf, size_t cap,
			  int timeout_ms);

#endif
