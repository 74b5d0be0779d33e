/*
 * internal.h - process-local state of libhostcache and the inline helpers
 * of the hot paths.  Nothing here lives in shared memory (see layout.h).
 *
 * liburcu provides the atomics and barriers (uatomic_*, cmm_smp_mb,
 * CMM_LOAD_SHARED/CMM_STORE_SHARED).  Its grace periods are not used: they
 * cover the threads of one process only, while hostcache's readers are
 * spread over every process of the host.  The grace period here is an
 * epoch scheme over the thread slots in the segment (rcu.c).
 */
#ifndef HC_INTERNAL_H
#define HC_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <urcu/arch.h>
#include <urcu/compiler.h>
#include <urcu/system.h>
#include <urcu/uatomic.h>

#include "tsan.h" /* after liburcu: what TSan builds redefine */

#include "hostcache.h"
#include "layout.h"

#define HC_LIKELY(x) __builtin_expect(!!(x), 1)
#define HC_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Seeds of the hash uses (any fixed values; part of the ABI). */
#define HC_SEED_KEY UINT64_C(0x243f6a8885a308d3)
#define HC_SEED_VALUE UINT64_C(0x13198a2e03707344)
#define HC_SEED_ENTITY UINT64_C(0xa4093822299f31d0)

/* Blocks a sweeper takes from the class hand at a time (upper bound). */
#define HC_SWEEP_RANGE 32u
/* Blocks a thread remembers having retired, per class, to reuse first. */
#define HC_STASH 64u
/* A thread publishes its count of freed blocks once it is this far off. */
#define HC_FREE_BATCH 16

#define HC_ENTITY_OTHER (HC_MAX_ENTITIES - 1) /* overflow entity "~other" */

struct hc_cache;

/*
 * What a thread saw of a reader that held back a grace period (rcu.c):
 * per thread, as each thread's own memory of the readers it waited on.
 */
struct hc_stall {
	uint64_t epoch;	     /* epoch a reader was seen holding a grace period at */
	uint64_t sections;   /* and its section count then: the same read? */
	uint64_t since_ms;   /* when it was first seen there */
	uint64_t checked_ms; /* when its process was last checked for life */
};

/* A thread's sweep range in one size class (see alloc.c). */
struct hc_cursor {
	uint64_t slabword; /* slab table word when the range was taken */
	uint32_t slab;
	uint32_t start, pos, end; /* blocks [start, end), next at pos */
	uint32_t rewalked;	  /* the range was walked again after a grace period */
	uint64_t need;		  /* safe epoch that would free this range's retired blocks */
};

/* Per (handle, thread): the thread's slot and its sweep state. */
struct hc_thread {
	struct hc_cache *c; /* NULL once the handle is closed */
	uint64_t handle_id;
	struct hc_tslot *ts;
	uint32_t slot;
	uint32_t gen;
	uint32_t nesting; /* read-side section depth */
	uint32_t pad;
	uint64_t rng;
	struct {
		uint64_t h;
		uint32_t len;
		uint32_t id;
	} ent[16]; /* entity lookup cache */
	struct hc_thread *next_in_handle;
	struct hc_thread *next_in_thread;
	struct hc_cursor cur[HC_MAX_CLASSES];
	int32_t free_delta[HC_MAX_CLASSES]; /* not yet added to hc_class.free_est */
	struct hc_stall *stall;		    /* per thread slot, allocated on first use */
	/*
	 * Blocks this thread retired lately, per class (a ring, oldest at
	 * head): reused first once a grace period has passed, while they are
	 * still in this CPU's cache.  Hints only: reuse is a CAS of the
	 * block's lifecycle word like any other claim.
	 */
	struct hc_stash {
		uint64_t off[HC_STASH];
		uint32_t head, n;
	} stash[HC_MAX_CLASSES];
};

struct hc_cache {
	uint8_t *base; /* the mapping */
	uint64_t size;
	struct hc_header *hdr;
	struct hc_class *classes;
	struct hc_entity_rec *entities;
	struct hc_slot_ctr *totals;
	struct hc_load_ctr *loadctr;
	struct hc_agent_rec *agent;
	struct hc_ring_slot *ring;
	uint8_t *slots;
	struct hc_flight *flights;
	uint64_t *slabtab;
	struct hc_bucket *index;
	uint8_t *arena;
	uint64_t off_arena;

	/* geometry, copied from the header once validated */
	uint32_t nbuckets;
	uint32_t nslabs;
	uint32_t slab_size;
	uint32_t nclasses;
	uint32_t max_threads;
	uint32_t max_value;
	uint32_t nflights;
	uint64_t slot_stride;
	uint64_t seed; /* key-hash seed of the segment */

	int fd;
	int read_only;
	int light_fence;   /* registered for membarrier: readers skip the fence */
	uint64_t id;	   /* unique per hc_open in this process */
	uint64_t fork_gen; /* hc_fork_gen at open */
	pid_t pid;
	uint64_t start_time;
	char name[HC_NAME_MAX + 1];

	void (*log)(void *ctx, int level, const char *msg);
	void *log_ctx;

	pthread_mutex_t lock;	   /* guards threads */
	struct hc_thread *threads; /* every thread record of this handle */
	uint32_t stalled_slot;	   /* the last reader found stalled, for the log */
	struct hc_refresher *bg;   /* HC_LOAD_BACKGROUND refresher thread (load.c); lock */
	/* the agent's side of the ring (ring.c): a slot whose producer stalls */
	uint64_t stall_pos;
	uint64_t stall_since_ms;
	bool is_agent;
};

extern uint64_t hc_fork_gen;

/* ---- time ---- */

static inline uint64_t hc_ms_of(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
static inline uint64_t hc_now_ms(void)
{
	return hc_ms_of(CLOCK_MONOTONIC);
}

/* ---- geometry helpers ---- */

static inline struct hc_tslot *hc_slot_at(const struct hc_cache *c, uint32_t i)
{
	return (struct hc_tslot *)(c->slots + (uint64_t)i * c->slot_stride);
}
static inline struct hc_entry *hc_entry_at(const struct hc_cache *c, uint64_t off)
{
	return (struct hc_entry *)(c->base + off);
}
static inline uint64_t hc_block_off(const struct hc_cache *c, uint32_t slab, uint32_t cls,
				    uint32_t i)
{
	return c->off_arena + (uint64_t)slab * c->slab_size +
	       (uint64_t)i * c->classes[cls].block_size;
}
static inline const uint8_t *hc_entry_key(const struct hc_entry *e)
{
	return (const uint8_t *)(e + 1);
}
static inline const uint8_t *hc_entry_val(const struct hc_entry *e)
{
	return (const uint8_t *)(e + 1) + e->klen;
}

/* Bucket pair and tag of a key hash (2-choice, set-associative). */
static inline uint32_t hc_fastrange(uint32_t x, uint32_t n)
{
	return (uint32_t)(((uint64_t)x * n) >> 32);
}
static inline uint32_t hc_bucket1(const struct hc_cache *c, uint64_t h)
{
	return hc_fastrange((uint32_t)h, c->nbuckets);
}
static inline uint32_t hc_bucket2(const struct hc_cache *c, uint64_t h, uint32_t b1)
{
	uint32_t b2 = hc_fastrange((uint32_t)(h >> 20), c->nbuckets);
	return b2 == b1 ? (b1 + 1 == c->nbuckets ? 0 : b1 + 1) : b2;
}
static inline uint64_t hc_tag(uint64_t h)
{
	uint64_t t = h >> HC_SLOT_TAG_SHIFT;
	return (t ? t : 1) << HC_SLOT_TAG_SHIFT;
}
/* The 16 slot words a key may occupy, in the order that decides ties. */
static inline uint64_t *hc_pos(const struct hc_cache *c, uint32_t b1, uint32_t b2, unsigned pos)
{
	return &c->index[pos < HC_BUCKET_SLOTS ? b1 : b2].slot[pos % HC_BUCKET_SLOTS];
}

/* Stale window coding: < 2^23 ms exact, else seconds with bit 23 set. */
static inline uint32_t hc_stale_encode(uint32_t ms)
{
	if (ms < (1u << 23))
		return ms;
	uint32_t s = (ms + 999u) / 1000u;
	return (1u << 23) | (s > 0x7fffffu ? 0x7fffffu : s);
}
static inline uint64_t hc_stale_decode(uint32_t v)
{
	return (v & (1u << 23)) ? (uint64_t)(v & 0x7fffffu) * 1000u : v;
}
static inline uint64_t hc_stale_until(uint64_t expiry)
{
	uint64_t fu = HC_EXP_FRESH(expiry);
	return fu == HC_NEVER ? HC_NEVER : fu + hc_stale_decode(HC_EXP_STALE(expiry));
}

/*
 * TTL-at-set coding (13 bits of hc_entry.aux), for the age of an entry:
 * below 256 ms exact, else an 8-bit mantissa (128..255) and a 5-bit
 * exponent: within 0.4 % (rounded to nearest).  0 = no TTL.
 */
static inline uint32_t hc_ttl_encode(uint64_t ms)
{
	if (ms < 256)
		return (uint32_t)ms;
	uint32_t e = 63u - (uint32_t)__builtin_clzll(ms) - 7u; /* ms >> e in 128..255 */
	uint64_t m = (ms + (UINT64_C(1) << (e - 1))) >> e;
	if (m == 256) {
		m = 128;
		e++;
	}
	if (e > 31)
		return 0x1fffu;
	return (e << 8) | (uint32_t)m;
}
static inline uint64_t hc_ttl_decode(uint32_t v)
{
	return (uint64_t)(v & 0xffu) << (v >> 8);
}

/* Key comparison, eight bytes at a time: keys are short, a libc call costs more. */
static inline bool hc_key_eq(const struct hc_entry *e, const void *key, size_t klen)
{
	if (e->klen != klen)
		return false;
	const uint8_t *a = hc_entry_key(e), *b = key;
	if (klen >= 8) {
		uint64_t x, y;
		size_t i = 0;
		for (; i + 8 <= klen; i += 8) {
			memcpy(&x, a + i, 8);
			memcpy(&y, b + i, 8);
			if (x != y)
				return false;
		}
		/* the last (overlapping) eight bytes */
		memcpy(&x, a + klen - 8, 8);
		memcpy(&y, b + klen - 8, 8);
		return x == y;
	}
	for (size_t i = 0; i < klen; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* Counters: single writer (the slot owner), relaxed readers. */
static inline void hc_ctr_add(uint64_t *p, uint64_t v)
{
	CMM_STORE_SHARED(*p, *p + v);
}
static inline void hc_ctr_sadd(int64_t *p, int64_t v)
{
	CMM_STORE_SHARED(*p, *p + v);
}
static inline void hc_count(struct hc_thread *t, uint32_t ent, int layer, int ctr)
{
	hc_ctr_add(&t->ts->c.ctr[ent][layer][ctr], 1);
}
static inline void hc_count_load(struct hc_cache *c, uint32_t ent, int ctr, uint64_t n)
{
	uatomic_add(&c->loadctr->load[ent][ctr], n);
}

/* ---- rcu.c: thread slots, read-side sections, grace periods ---- */

struct hc_thread *hc_thread_slow(struct hc_cache *c, int *err);
extern __thread struct hc_thread *hc_tls_last;

/* The calling thread's record for @c, claiming a slot on first use. */
static inline struct hc_thread *hc_thread_get(struct hc_cache *c, int *err)
{
	struct hc_thread *t = hc_tls_last;
	if (HC_LIKELY(t && t->c == c && t->handle_id == c->id && c->fork_gen == hc_fork_gen))
		return t;
	return hc_thread_slow(c, err);
}

/*
 * Read-side section.  Entering publishes the global epoch in the thread's
 * slot, then orders that store before the section's loads: a reclaimer
 * that does not see the slot's epoch must be sure this thread's later
 * loads see the index without the blocks it is about to free.  When the
 * process is registered for membarrier(GLOBAL_EXPEDITED) (c->light_fence)
 * the reclaimer's membarrier() supplies that barrier on our behalf and the
 * reader needs only a compiler barrier, as in liburcu's urcu-memb flavour;
 * otherwise a full fence.  Leaving is a release store of 0.  No system
 * call, no lock, no waiting.
 */
static inline void hc_read_lock(struct hc_cache *c, struct hc_thread *t)
{
	if (t->nesting++ == 0) {
		CMM_STORE_SHARED(t->ts->sections, t->ts->sections + 1);
		CMM_STORE_SHARED(t->ts->epoch, CMM_LOAD_SHARED(c->hdr->epoch));
		if (HC_LIKELY(c->light_fence))
			cmm_barrier();
		else
			cmm_smp_mb();
	}
}
static inline void hc_read_unlock(struct hc_thread *t)
{
	if (--t->nesting == 0)
		__atomic_store_n(&t->ts->epoch, 0, __ATOMIC_RELEASE);
}

uint64_t hc_synchronize(struct hc_cache *c, struct hc_thread *self, bool *stalled);
void hc_thread_release(struct hc_cache *c, struct hc_thread *t);
void hc_threads_close(struct hc_cache *c);
bool hc_owner_alive(struct hc_cache *c, uint64_t alloc_payload);
int hc_reap_slot(struct hc_cache *c, uint32_t i, uint64_t owner_word);
bool hc_pid_alive(int32_t pid, uint64_t start_time);
uint64_t hc_proc_start_time(int32_t pid);
void hc_fold_counters(struct hc_cache *c, struct hc_tslot *ts);

/* ---- alloc.c: size classes, slabs, sweep, eviction ---- */

int hc_class_of(const struct hc_cache *c, size_t need);
uint64_t hc_alloc(struct hc_cache *c, struct hc_thread *t, uint32_t cls, int *err);
void hc_free_unpublished(struct hc_cache *c, struct hc_thread *t, uint64_t off);
bool hc_retire(struct hc_cache *c, struct hc_thread *t, uint64_t off, bool was_indexed);
int hc_read_copy(struct hc_cache *c, struct hc_thread *t, const void *key, size_t klen, void *buf,
		 size_t cap, size_t *vlen, struct hc_meta *meta, unsigned flags, uint32_t *ent);
void hc_free_adjust(struct hc_cache *c, struct hc_thread *t, uint32_t cls, int32_t d);
void hc_free_flush(struct hc_cache *c, struct hc_thread *t);
uint32_t hc_class_of_off(const struct hc_cache *c, uint64_t off);
int hc_recover_block(struct hc_cache *c, struct hc_thread *t, uint64_t off, uint64_t s);
uint64_t hc_classes_init(struct hc_header *hdr, struct hc_class *classes, uint32_t slab_size,
			 uint32_t max_item);
int64_t hc_sweep_expired(struct hc_cache *c, struct hc_thread *t, uint64_t budget);

/* ---- table.c: the index ---- */

/* Why an entry leaves the index, for the counters. */
enum hc_unlink_reason { HC_UNLINK_DELETE, HC_UNLINK_EVICT, HC_UNLINK_EXPIRE, HC_UNLINK_REPLACE };
int hc_find_slot(const struct hc_cache *c, uint64_t off, const struct hc_entry *e,
		 uint64_t **slotp);
bool hc_unlink_entry(struct hc_cache *c, struct hc_thread *t, uint64_t off, int reason);
int hc_ref_class(const struct hc_cache *c, uint64_t ref);
bool hc_entry_fits(const struct hc_cache *c, uint64_t ref, const struct hc_entry *e);

/* ---- stats.c ---- */

uint32_t hc_entity_id(struct hc_cache *c, struct hc_thread *t, const void *key, size_t klen);
void hc_entities_init(struct hc_entity_rec *ents);

/* ---- segment.c ---- */

void hc_log(const struct hc_cache *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void hc_bind(struct hc_cache *c, uint8_t *base, uint64_t size);
int hc_geometry_check(const struct hc_header *h, uint64_t len, char *why, size_t whylen);

/* Guard at the top of every public entry point. */
static inline int hc_usable(const struct hc_cache *c)
{
	if (HC_UNLIKELY(!c))
		return HC_E_INVAL;
	if (HC_UNLIKELY(c->fork_gen != hc_fork_gen))
		return HC_E_FORKED;
	return 0;
}

/* hc_usable, for calls that write: also refused on a read-only handle. */
static inline int hc_writable(const struct hc_cache *c)
{
	int rc = hc_usable(c);
	return rc ? rc : c->read_only ? HC_E_READONLY : 0;
}

/* The calling thread's record for a writing call, or NULL with *err set. */
static inline struct hc_thread *hc_writer(struct hc_cache *c, int *err)
{
	*err = hc_writable(c);
	return *err ? NULL : hc_thread_get(c, err);
}

#endif /* HC_INTERNAL_H */
