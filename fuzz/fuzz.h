/*
 * fuzz.h - the entry point every fuzz target defines (libFuzzer's), called
 * by libFuzzer or by replay.c, and the helpers of common.c.
 */
#ifndef HOSTCACHE_FUZZ_H
#define HOSTCACHE_FUZZ_H

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

#endif
