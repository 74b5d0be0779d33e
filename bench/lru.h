/*
 * lru.h - an exact LRU cache simulator (keys only, in process memory), the
 * reference that the zipf_hit case holds hostcache's CLOCK eviction to.
 */
#ifndef BENCH_LRU_H
#define BENCH_LRU_H

#include <stdbool.h>
#include <stdint.h>

struct lru_sim {
	uint32_t capacity; /* entries held at most */
	uint32_t size;	   /* entries held now */
	uint32_t head;	   /* most recently used node, LRU_NIL when empty */
	uint32_t tail;	   /* least recently used node */
	uint32_t *prev, *next;
	uint64_t *key;	 /* key of each node */
	uint32_t *table; /* open addressing: node + 1, 0 = empty */
	uint64_t mask;	 /* table size - 1 (a power of two >= 2 * capacity) */
	uint64_t evictions;
};

/* lru_init - an empty cache of @capacity (>= 1) entries.  0 or -ENOMEM/-EINVAL. */
int lru_init(struct lru_sim *l, uint32_t capacity);

void lru_free(struct lru_sim *l);

/*
 * lru_access - one request.  A hit moves @key to the front and returns
 * true; a miss inserts it at the front (evicting the least recently used
 * entry when full) and returns false: "get, and set on a miss".
 */
bool lru_access(struct lru_sim *l, uint64_t key);

#endif /* BENCH_LRU_H */
