/*
 * fuzz_invalidate.c - the agent's invalidation message parser
 * (agent/invalidate.c, through invalidate_apply) on arbitrary payloads, as
 * they come from Redis pub/sub: any bytes, NULs included.
 *
 * Before each message a few keys are cached; afterwards, every one of them
 * that is gone must have been counted as applied, and our own echo (source
 * = this agent's id) must drop nothing.  The segment is flushed between
 * inputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "agent.h"

#define AGENT_ID "fuzz-agent"

static struct hc_cache *cache;
static const char *const keys[] = {"product:42", "a", "b", "k", "product:-1", "x:y"};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void setup(void)
{
	char name[64];

	cache = fuzz_segment("inv", 1024, name, sizeof(name));
	hc_unlink(name);
	snprintf(agent_conf.id, sizeof(agent_conf.id), "%s", AGENT_ID);
	agent_conf.log_level = HC_LOG_ERROR;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!cache)
		setup();
	for (size_t i = 0; i < NKEYS; i++)
		if (hc_set(cache, keys[i], strlen(keys[i]), "v", 1, 0) != 0)
			abort();

	/* a copy of exactly the payload's length: the parser must not read past it */
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	struct inv_outcome o = {0};
	invalidate_apply(cache, p, size, &o);
	free(p);

	uint64_t gone = 0;
	char v[8];
	size_t vlen;
	for (size_t i = 0; i < NKEYS; i++)
		if (hc_get(cache, keys[i], strlen(keys[i]), v, sizeof(v), &vlen) == HC_E_NOTFOUND)
			gone++;
	if (gone > o.applied || (o.echo && (gone || o.applied))) {
		fprintf(stderr,
			"fuzz_invalidate: %llu keys dropped, %llu applied, echo %d, malformed %d\n",
			(unsigned long long)gone, (unsigned long long)o.applied, o.echo,
			o.malformed);
		abort();
	}
	hc_flush(cache);
	return 0;
}
