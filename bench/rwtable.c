/*
 * rwtable.c - the baseline: a plain hash table in POSIX shared memory under
 * one process-shared reader-writer lock.
 *
 * This is the design most people write first when several worker
 * processes must share a cache, written plainly and correctly:
 *
 *   - One shared-memory object: a header, a bucket array of chain heads,
 *     and an arena of fixed-size entries (header + max_key + max_value
 *     bytes).  Links are byte offsets from the start of the object, never
 *     pointers, because every process maps it at a different address.
 *   - One pthread_rwlock_t (PTHREAD_PROCESS_SHARED) guards everything.
 *     rwt_get takes it for reading and copies the value out; rwt_set and
 *     rwt_del take it for writing.
 *   - Entries come from the arena: first the free list (entries given back
 *     by rwt_del), then never-used entries carved in order, and when the
 *     arena is full the least recently used entry is evicted and reused.
 *   - Recency is a doubly linked list (head = most recent).  A set moves
 *     its entry to the head.  A get cannot: it holds only the read lock,
 *     and relinking the list under a read lock would race with the other
 *     readers.  So a get sets the entry's `referenced` byte (an atomic
 *     store, and only when it is clear), and the evictor, which holds the
 *     write lock, moves referenced entries from the tail back to the head
 *     before it evicts an unreferenced one.  This is the "lazy promotion"
 *     of memcached's LRU; exact LRU would need the write lock on every get.
 *
 * The key hash is hostcache's own hc_hash64 (public API) with a fixed seed,
 * so the two systems pay the same hashing cost and the comparison is about
 * the concurrency design.  Like every lock-based design, a process that
 * dies holding the lock wedges every other process; the benchmark does not
 * exercise that.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hostcache.h"
#include "rwtable.h"

#define RWT_MAGIC UINT64_C(0x454c424154575242) /* "BRWTABLE" */
#define RWT_SEED UINT64_C(0x5254574c4f434b31)
#define RWT_LINE 64

struct rwt_header {
	/* geometry, written once at creation */
	uint64_t magic;
	uint64_t size;	     /* bytes of the object */
	uint64_t capacity;   /* arena entries */
	uint64_t nbuckets;   /* a power of two */
	uint64_t entry_size; /* bytes per arena entry */
	uint32_t max_key, max_value;
	uint64_t off_buckets, off_arena;
	/* the lock, on its own cache line */
	_Alignas(RWT_LINE) pthread_rwlock_t lock;
	/* everything below is written only under the write lock */
	_Alignas(RWT_LINE) uint64_t free_head; /* first free entry (chained by hnext), 0 = none */
	uint64_t carved;		       /* arena entries handed out at least once */
	uint64_t lru_head;		       /* most recently used, 0 = empty */
	uint64_t lru_tail;		       /* least recently used */
	uint64_t items;
	uint64_t evictions;
};

struct rwt_entry {
	uint64_t hnext;	    /* next in the bucket chain (or the free list); 0 = end */
	uint64_t lru_prev;  /* toward the head (more recent); 0 = none */
	uint64_t lru_next;  /* toward the tail (less recent); 0 = none */
	uint64_t hash;	    /* full key hash, compared before the key bytes */
	uint32_t vlen;	    /* value bytes */
	uint16_t klen;	    /* key bytes */
	uint8_t referenced; /* read since it was last moved to the head; atomic */
	uint8_t pad;
	/* klen key bytes, then vlen value bytes */
};

struct rwt {
	uint8_t *base;
	struct rwt_header *hdr;
	uint64_t *buckets;
};

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static inline struct rwt_entry *ent(const struct rwt *t, uint64_t off)
{
	return (struct rwt_entry *)(t->base + off);
}

static inline uint8_t *ent_key(struct rwt_entry *e)
{
	return (uint8_t *)(e + 1);
}

static int check_key(const struct rwt *t, const void *key, size_t klen)
{
	if (!key || klen == 0)
		return -EINVAL;
	if (klen > t->hdr->max_key)
		return -E2BIG;
	return 0;
}

static int path_of(const char *name, char *path, size_t len)
{
	if (!name || !*name || strchr(name, '/'))
		return -EINVAL;
	if ((size_t)snprintf(path, len, "/%s", name) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int rwt_create(const char *name, uint64_t capacity, uint32_t max_key, uint32_t max_value,
	       struct rwt **out)
{
	char path[256];
	int rc = path_of(name, path, sizeof(path));
	if (rc)
		return rc;
	if (capacity == 0 || max_key == 0 || max_key > UINT16_MAX || !out)
		return -EINVAL;

	uint64_t nbuckets = 1;
	while (nbuckets < capacity)
		nbuckets *= 2;
	uint64_t entry_size = round_up(sizeof(struct rwt_entry) + max_key + max_value, 8);
	uint64_t off_buckets = round_up(sizeof(struct rwt_header), RWT_LINE);
	uint64_t off_arena = round_up(off_buckets + nbuckets * sizeof(uint64_t), RWT_LINE);
	uint64_t size = off_arena + capacity * entry_size;

	struct rwt *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0) {
		rc = -errno;
		free(t);
		return rc;
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		rc = -errno;
		goto fail_fd;
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		goto fail_fd;
	}
	close(fd);

	t->base = base;
	t->hdr = base;
	t->buckets = (uint64_t *)(t->base + off_buckets);
	struct rwt_header *h = t->hdr; /* the object is zero-filled by ftruncate */
	h->size = size;
	h->capacity = capacity;
	h->nbuckets = nbuckets;
	h->entry_size = entry_size;
	h->max_key = max_key;
	h->max_value = max_value;
	h->off_buckets = off_buckets;
	h->off_arena = off_arena;

	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	rc = -pthread_rwlockattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!rc)
		rc = -pthread_rwlock_init(&h->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (rc) {
		munmap(base, size);
		shm_unlink(path);
		free(t);
		return rc;
	}
	h->magic = RWT_MAGIC;
	*out = t;
	return 0;

fail_fd:
	close(fd);
	shm_unlink(path);
	free(t);
	return rc;
}

void rwt_close(struct rwt *t)
{
	if (!t)
		return;
	munmap(t->base, t->hdr->size);
	free(t);
}

int rwt_unlink(const char *name)
{
	char path[256];
	int rc = path_of(name, path, sizeof(path));
	if (rc)
		return rc;
	return shm_unlink(path) < 0 ? -errno : 0;
}

/*
 * The entry of @key, or 0.  With @linkp, also the word that points at it
 * (its bucket head or its predecessor's hnext), for unlinking.
 */
static uint64_t lookup(const struct rwt *t, uint64_t hash, const void *key, size_t klen,
		       uint64_t **linkp)
{
	uint64_t *link = &t->buckets[hash & (t->hdr->nbuckets - 1)];
	for (uint64_t off = *link; off; off = *link) {
		struct rwt_entry *e = ent(t, off);
		if (e->hash == hash && e->klen == klen && memcmp(ent_key(e), key, klen) == 0) {
			if (linkp)
				*linkp = link;
			return off;
		}
		link = &e->hnext;
	}
	return 0;
}

static void lru_unlink(struct rwt *t, uint64_t off)
{
	struct rwt_entry *e = ent(t, off);
	if (e->lru_prev)
		ent(t, e->lru_prev)->lru_next = e->lru_next;
	else
		t->hdr->lru_head = e->lru_next;
	if (e->lru_next)
		ent(t, e->lru_next)->lru_prev = e->lru_prev;
	else
		t->hdr->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = 0;
}

static void lru_push_head(struct rwt *t, uint64_t off)
{
	struct rwt_entry *e = ent(t, off);
	e->lru_prev = 0;
	e->lru_next = t->hdr->lru_head;
	if (t->hdr->lru_head)
		ent(t, t->hdr->lru_head)->lru_prev = off;
	t->hdr->lru_head = off;
	if (!t->hdr->lru_tail)
		t->hdr->lru_tail = off;
}

/* Remove the entry at @off from its bucket chain.  Write lock held. */
static void chain_unlink(struct rwt *t, uint64_t off)
{
	struct rwt_entry *e = ent(t, off);
	uint64_t *link = &t->buckets[e->hash & (t->hdr->nbuckets - 1)];
	while (*link != off)
		link = &ent(t, *link)->hnext;
	*link = e->hnext;
}

/*
 * Evict from the tail of the recency list and return the freed entry.
 * Referenced entries get a second chance at the head; the loop ends
 * because readers cannot set the byte while we hold the write lock, so
 * after at most one lap every entry is unreferenced.
 */
static uint64_t evict_one(struct rwt *t)
{
	for (;;) {
		uint64_t off = t->hdr->lru_tail;
		struct rwt_entry *e = ent(t, off);
		if (__atomic_load_n(&e->referenced, __ATOMIC_RELAXED)) {
			__atomic_store_n(&e->referenced, 0, __ATOMIC_RELAXED);
			lru_unlink(t, off);
			lru_push_head(t, off);
			continue;
		}
		chain_unlink(t, off);
		lru_unlink(t, off);
		t->hdr->items--;
		t->hdr->evictions++;
		return off;
	}
}

/* A free entry: the free list, then the uncarved arena, then eviction. */
static uint64_t alloc_entry(struct rwt *t)
{
	struct rwt_header *h = t->hdr;
	if (h->free_head) {
		uint64_t off = h->free_head;
		h->free_head = ent(t, off)->hnext;
		return off;
	}
	if (h->carved < h->capacity)
		return h->off_arena + h->carved++ * h->entry_size;
	return evict_one(t);
}

int rwt_get(struct rwt *t, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
	int rc = check_key(t, key, klen);
	if (rc)
		return rc;
	uint64_t hash = hc_hash64(key, klen, RWT_SEED);
	rc = pthread_rwlock_rdlock(&t->hdr->lock);
	if (rc)
		return -rc;
	uint64_t off = lookup(t, hash, key, klen, NULL);
	if (!off) {
		rc = -ENOENT;
	} else {
		struct rwt_entry *e = ent(t, off);
		if (vlen)
			*vlen = e->vlen;
		if (e->vlen > cap)
			rc = -ENOBUFS;
		else
			memcpy(buf, ent_key(e) + e->klen, e->vlen);
		if (!__atomic_load_n(&e->referenced, __ATOMIC_RELAXED))
			__atomic_store_n(&e->referenced, 1, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&t->hdr->lock);
	return rc;
}

int rwt_set(struct rwt *t, const void *key, size_t klen, const void *val, size_t vlen)
{
	int rc = check_key(t, key, klen);
	if (rc)
		return rc;
	if (vlen > t->hdr->max_value)
		return -E2BIG;
	if (!val && vlen)
		return -EINVAL;
	uint64_t hash = hc_hash64(key, klen, RWT_SEED);
	rc = pthread_rwlock_wrlock(&t->hdr->lock);
	if (rc)
		return -rc;
	uint64_t off = lookup(t, hash, key, klen, NULL);
	struct rwt_entry *e;
	if (off) {
		e = ent(t, off);
		lru_unlink(t, off);
	} else {
		off = alloc_entry(t);
		e = ent(t, off);
		e->hash = hash;
		e->klen = (uint16_t)klen;
		memcpy(ent_key(e), key, klen);
		uint64_t *head = &t->buckets[hash & (t->hdr->nbuckets - 1)];
		e->hnext = *head;
		*head = off;
		t->hdr->items++;
	}
	if (vlen)
		memcpy(ent_key(e) + klen, val, vlen);
	e->vlen = (uint32_t)vlen;
	__atomic_store_n(&e->referenced, 0, __ATOMIC_RELAXED);
	lru_push_head(t, off);
	pthread_rwlock_unlock(&t->hdr->lock);
	return 0;
}

int rwt_del(struct rwt *t, const void *key, size_t klen)
{
	int rc = check_key(t, key, klen);
	if (rc)
		return rc;
	uint64_t hash = hc_hash64(key, klen, RWT_SEED);
	rc = pthread_rwlock_wrlock(&t->hdr->lock);
	if (rc)
		return -rc;
	uint64_t *link;
	uint64_t off = lookup(t, hash, key, klen, &link);
	if (!off) {
		rc = -ENOENT;
	} else {
		struct rwt_entry *e = ent(t, off);
		*link = e->hnext;
		lru_unlink(t, off);
		e->hnext = t->hdr->free_head;
		t->hdr->free_head = off;
		t->hdr->items--;
	}
	pthread_rwlock_unlock(&t->hdr->lock);
	return rc;
}

int rwt_stats(struct rwt *t, struct rwt_stats *out)
{
	int rc = pthread_rwlock_rdlock(&t->hdr->lock);
	if (rc)
		return -rc;
	const struct rwt_header *h = t->hdr;
	out->capacity = h->capacity;
	out->items = h->items;
	out->evictions = h->evictions;
	out->entry_size = h->entry_size;
	out->nbuckets = h->nbuckets;
	out->size = h->size;
	pthread_rwlock_unlock(&t->hdr->lock);
	return 0;
}
