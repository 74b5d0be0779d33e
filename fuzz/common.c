/*
 * common.c - what the fuzz targets share: a small private segment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"

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
