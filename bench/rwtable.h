/*
 * rwtable.h - the benchmark's baseline: the shared-memory cache a user
 * would write first.  One hash table in a POSIX shared-memory object, one
 * process-shared pthread_rwlock_t over all of it, chained buckets, entries
 * from an arena with a free list, LRU eviction by a doubly linked list.
 * See rwtable.c for the design.
 *
 * Return codes: 0 or a negative errno value (-ENOENT on a miss).
 */
#ifndef BENCH_RWTABLE_H
#define BENCH_RWTABLE_H

#include <stddef.h>
#include <stdint.h>

struct rwt; /* process-local handle */

struct rwt_stats {
	uint64_t capacity;   /* entries the arena holds */
	uint64_t items;	     /* live entries */
	uint64_t evictions;  /* entries evicted to make room */
	uint64_t entry_size; /* bytes per arena entry, header included */
	uint64_t nbuckets;   /* hash buckets (8 bytes each) */
	uint64_t size;	     /* bytes of the shared-memory object */
};

/*
 * rwt_create - create the object "/<name>" (O_EXCL, mode 0600) for
 * @capacity entries of keys up to @max_key and values up to @max_value
 * bytes, and map it.  Fork()ed children may use the handle directly (the
 * mapping is MAP_SHARED and the lock PTHREAD_PROCESS_SHARED).
 */
int rwt_create(const char *name, uint64_t capacity, uint32_t max_key, uint32_t max_value,
	       struct rwt **out);

/* rwt_close - unmap; the object stays until rwt_unlink().  Accepts NULL. */
void rwt_close(struct rwt *t);

/* rwt_unlink - remove the object "/<name>". */
int rwt_unlink(const char *name);

/* rwt_get - copy the value of @key out under the read lock.  -ENOENT, -ENOBUFS. */
int rwt_get(struct rwt *t, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);

/* rwt_set - insert or replace under the write lock, evicting when full.  -E2BIG, -EINVAL. */
int rwt_set(struct rwt *t, const void *key, size_t klen, const void *val, size_t vlen);

/* rwt_del - remove @key; its entry goes back to the free list.  -ENOENT. */
int rwt_del(struct rwt *t, const void *key, size_t klen);

/* rwt_stats - a snapshot taken under the read lock. */
int rwt_stats(struct rwt *t, struct rwt_stats *out);

#endif /* BENCH_RWTABLE_H */
