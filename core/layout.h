/*
 * layout.h - the on-segment contract: every structure that lives in the
 * shared-memory segment, and nothing else.
 *
 * The segment is mapped at a different address in every process, so it
 * holds offsets (from the segment's first byte), never pointers.  Every
 * field says what it means, its unit, who writes it and with which
 * ordering.  "Owner" means the thread that holds a thread slot; "any"
 * means any attached process, always through an atomic (uatomic_*) op.
 *
 * Regions, in order, each aligned to HC_PAGE:
 *
 *   header    struct hc_header (one page): identity, geometry, epochs
 *   classes   struct hc_class[HC_MAX_CLASSES]: per size-class CLOCK hand
 *   entities  struct hc_entity_rec[HC_MAX_ENTITIES]: key-prefix names
 *   totals    struct hc_slot_ctr: counters folded in from released slots
 *   loadctr   struct hc_load_ctr: loading counters per entity
 *   slots     struct hc_tslot[max_threads]: RCU reader state + counters *   flights   struct hc_flight[nflights]: single-flight records (flight.c)
 *   agent     struct hc_agent_rec + struct hc_ring_slot[HC_RING_SLOTS]: the
 *             worker -> agent request ring and the agent's counters (ring.c)
*   slabtab   uint64_t[nslabs]: owner class and state of every slab
 *   index     struct hc_bucket[nbuckets]: the hash index
 *   arena     nslabs slabs of slab_size bytes, cut into class blocks
 *
 * A change to any structure here must change HC_ABI_VERSION; the layout
 * hash (hc_layout_hash()) catches the sizes and offsets that were missed.
 */
#ifndef HC_LAYOUT_H
#define HC_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "hostcache.h"

#define HC_MAGIC 0x4843414354534f48ull /* "HOSTCACH" little-endian; stored last */
#define HC_ABI_VERSION 2u
#define HC_PAGE 4096u
#define HC_LINE 64u

/*
 * header.flags: HC_SEG_MEMBARRIER means reclaimers issue
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) in every grace period, so a
 * registered reader may enter a section with a compiler barrier only.
 */
#define HC_SEG_MEMBARRIER 0x100u

/* header.init_state */
enum { HC_INIT_NONE = 0, HC_INIT_BUSY = 1, HC_INIT_READY = 2 };

/* Bucket geometry: one cache line of eight slot words. */
#define HC_BUCKET_SLOTS 8u

/*
 * Index slot word: [tag:16][ref:48].  ref is the byte offset of an entry
 * block in the segment (never 0: the header is at 0), tag the top 16 bits of
 * the key hash.  0 means empty.  Written only by compare-and-swap.
 */
#define HC_SLOT_TAG_SHIFT 48
#define HC_SLOT_REF_MASK ((UINT64_C(1) << 48) - 1)

struct hc_bucket {
	uint64_t slot[HC_BUCKET_SLOTS];
};

/*
 * Block lifecycle word (hc_entry.state), the single authority on who owns
 * a block.  Every transition is one compare-and-swap:
 *
 *   FREE -> ALLOC(owner)         allocation (the sweeping thread claims it)
 *   ALLOC(owner) -> LIVE         the owner published it in the index
 *   LIVE|ALLOC -> RETIRED(epoch) whoever unlinked it from the index, or a
 *                                sweeper that found it unlinked
 *   RETIRED(e) -> ALLOC(owner)   reuse once every reader is past epoch e
 *   ALLOC(dead owner) -> LIVE/RETIRED   recovery of a dead writer's block
 *
 * FREE is 0, so a freshly zeroed slab is all free blocks.
 */
#define HC_BS_FREE UINT64_C(0)
#define HC_BS_ALLOC UINT64_C(1)
#define HC_BS_LIVE UINT64_C(2)
#define HC_BS_RETIRED UINT64_C(3)
#define HC_BS_KIND(s) ((s) >> 62)
#define HC_BS_MAKE(kind, payload) (((uint64_t)(kind) << 62) | (payload))
#define HC_BS_PAYLOAD(s) ((s) & ((UINT64_C(1) << 62) - 1))
/* ALLOC payload: owner thread slot (bits 20..31) and its generation (0..19). */
#define HC_OWNER_GEN_BITS 20
#define HC_OWNER_GEN_MASK ((UINT64_C(1) << HC_OWNER_GEN_BITS) - 1)
#define HC_OWNER(slot, gen) (((uint64_t)(slot) << HC_OWNER_GEN_BITS) | ((gen)&HC_OWNER_GEN_MASK))
#define HC_OWNER_SLOT(p) ((uint32_t)(((p) >> HC_OWNER_GEN_BITS) & 0xfff))
#define HC_OWNER_GENOF(p) ((uint32_t)((p)&HC_OWNER_GEN_MASK))
#define HC_MAX_THREADS_LIMIT 4096u

/*
 * Entry block header, 32 bytes, followed by klen key bytes and vlen value
 * bytes.  Everything but `state`, `visited` and `expiry` is written by the
 * allocating thread before publication and never changes afterwards
 * (entries are immutable; an update publishes a new block).  `expiry` may
 * only move earlier, by CAS (hc_mark_stale: entries to revalidate).
 */
struct hc_entry {
	uint64_t state;	 /* lifecycle word above; any, CAS */
	uint64_t expiry; /* [fresh_until:40 ms CLOCK_MONOTONIC][stale:24 coded] */
	uint32_t vlen;	 /* value bytes */
	uint8_t klen;	 /* key bytes, 1..HC_KEY_MAX */
	uint8_t visited; /* CLOCK reference bit: readers set, sweepers clear */
	uint16_t aux;	 /* [ttl at set:13 coded (hc_ttl_encode)][flags:3 HC_ENTRY_*] */
	uint64_t etag;	 /* [content hash:48][compute_ms:16, saturating] */
};
#define HC_AUX_FLAGS(a) ((uint32_t)(a)&0x7u)
#define HC_AUX_TTL(a) ((uint32_t)(a) >> 3)
#define HC_AUX_MAKE(ttl_code, flags) ((uint16_t)(((ttl_code) << 3) | ((flags)&0x7u)))
#define HC_ENTRY_HDR 32u
#define HC_NEVER ((UINT64_C(1) << 40) - 1) /* fresh_until of a non-expiring entry */
#define HC_EXP_FRESH(x) ((x) >> 24)
#define HC_EXP_STALE(x) ((uint32_t)((x)&0xffffff))
#define HC_ETAG_HASH(x) ((x) >> 16)
#define HC_ETAG_COMPUTE(x) ((uint32_t)((x)&0xffff))

/* Counter indices, in the order of struct hc_counters. */
enum {
	HC_CTR_HITS,
	HC_CTR_MISSES,
	HC_CTR_SETS,
	HC_CTR_DELETES,
	HC_CTR_EVICTIONS,
	HC_CTR_EXPIRATIONS,
	HC_CTR_STALE_HITS,
	HC_CTR_NEGATIVE_HITS,
	HC_CTR_ERRORS,
	HC_CTR_SET_FAILS,
	HC_CTR_N
};

/* Counters of the whole segment that are not per entity. */
enum {
	HC_MISC_RECLAIM_WAITS,
	HC_MISC_RECLAIM_STALLS,
	HC_MISC_SLOTS_REAPED,
	HC_MISC_BLOCKS_RECOVERED,
	HC_MISC_SLAB_MOVES,
	HC_MISC_INDEX_EVICTIONS,
	HC_MISC_N = 8
};

/*
 * Loading counters per entity (struct hc_load_stats, in its order up to the
 * histogram, which follows): flights, refreshes and loader calls.  They
 * count events that cost a load or a wait, far rarer than hits, so they are
 * shared by every thread (atomic adds, region "loadctr") instead of taking
 * 14 KiB in each thread slot.
 */
enum {
	HC_LD_LEADERS,
	HC_LD_COALESCED,
	HC_LD_TAKEOVERS,
	HC_LD_LEASE_EXPIRIES,
	HC_LD_EARLY_REFRESHES,
	HC_LD_STALE_REFRESHES,
	HC_LD_STALE_SERVED,
	HC_LD_LOADS,
	HC_LD_LOAD_ERRORS,
	HC_LD_UNCOALESCED,
	HC_LD_BATCH_CALLS,
	HC_LD_HIST, /* HC_HIST_N buckets from here */
	HC_LD_N = HC_LD_HIST + HC_HIST_N
};

/*
 * Counters of one thread slot.  Written only by the slot's owner with plain
 * stores (single writer, so no atomic read-modify-write and no contention);
 * read by anyone with relaxed loads and summed (the Varnish VSC pattern).
 * class_* are signed deltas: an entry set by one thread and evicted by
 * another adds +1 here and -1 there.
 */
struct hc_load_ctr {
	uint64_t load[HC_MAX_ENTITIES][HC_LD_N]; /* any, atomic add */
};

struct hc_slot_ctr {
	uint64_t ctr[HC_MAX_ENTITIES][HC_LAYER_COUNT][HC_CTR_N];
	int64_t class_items[HC_MAX_CLASSES];
	int64_t class_bytes[HC_MAX_CLASSES];
	uint64_t misc[HC_MISC_N];
};

/* Thread slot owner word: [state:4][gen:20 at 32][pid:32]. */
#define HC_TS_FREE UINT64_C(0)
#define HC_TS_ACTIVE UINT64_C(1)
#define HC_TS_REAPING UINT64_C(2) /* pid field holds the reaper's pid */
#define HC_TS_STATE(w) ((w) >> 60)
#define HC_TS_GEN(w) ((uint32_t)(((w) >> 32) & HC_OWNER_GEN_MASK))
#define HC_TS_PID(w) ((int32_t)(uint32_t)(w))
#define HC_TS_MAKE(state, gen, pid)                                                \
	(((uint64_t)(state) << 60) | (((uint64_t)(gen)&HC_OWNER_GEN_MASK) << 32) | \
	 (uint64_t)(uint32_t)(pid))

/*
 * One thread slot: the RCU reader state of one thread of one process, and
 * that thread's statistics.  Claimed by CAS of `owner` (FREE -> ACTIVE with
 * a new generation), released by the owner or reaped by anyone once the
 * owning process is dead.
 */
struct hc_tslot {
	/* line 0: written by the owner at every read-side section */
	uint64_t epoch;	   /* 0 = quiescent; else the global epoch seen on entry */
	uint64_t sections; /* read-side sections entered: tells one long read from many */
	uint8_t pad0[HC_LINE - 16];
	/* line 1: identity, written at claim */
	uint64_t owner;	     /* HC_TS_MAKE(state, gen, pid); any, CAS */
	uint64_t start_time; /* owner process start, clock ticks since boot */
	int32_t tid;	     /* owner thread id (informational) */
	uint32_t reserved;
	uint8_t pad1[HC_LINE - 24];
	/* the counters, from line 2 */
	struct hc_slot_ctr c;
};

/* Slab table word: [kind:3][class:8][gen:21][drainer slot:12][drainer gen:20]. */
#define HC_SLAB_FREE UINT64_C(0)
#define HC_SLAB_ACTIVE UINT64_C(1)
#define HC_SLAB_DRAINING UINT64_C(2)
#define HC_SLAB_FORMATTING UINT64_C(3)
#define HC_SLAB_KIND(w) ((w) >> 61)
#define HC_SLAB_CLASS(w) ((uint32_t)(((w) >> 53) & 0xff))
#define HC_SLAB_GEN(w) ((uint32_t)(((w) >> 32) & 0x1fffff))
#define HC_SLAB_OWNER(w) ((w)&0xffffffffu)
#define HC_SLAB_MAKE(kind, cls, gen, owner)                          \
	(((uint64_t)(kind) << 61) | ((uint64_t)((cls)&0xff) << 53) | \
	 ((uint64_t)((gen)&0x1fffff) << 32) | ((owner)&0xffffffffu))

/*
 * Per size class: the CLOCK hand, shared by every allocating thread.  hand
 * is [slab:32][block:32], the next position not yet handed to a sweeper;
 * threads take ranges of it with CAS.  The lap times say how long an entry
 * of the class survives unread: slabs move towards classes whose laps are
 * short (alloc.c, rebalance()).
 */
struct hc_class {
	uint64_t hand;	     /* any, CAS */
	uint32_t block_size; /* bytes per block; set at creation */
	uint32_t per_slab;   /* blocks per slab; set at creation */
	uint32_t nslabs;     /* slabs assigned; any, atomic add */
	uint32_t reserved;
	uint64_t lap_start_ns; /* CLOCK_MONOTONIC when the hand last wrapped; any */
	uint64_t lap_ns;       /* duration of the last full lap (0: none yet); any */
	int64_t free_est;      /* blocks FREE or RETIRED, approximate; any, atomic add */
	uint8_t pad[HC_LINE - 48];
};

/*
 * Entity names (key prefixes).  word is 0 when free, HC_ENT_BUSY while a
 * thread fills the name, and (name hash | 1) when ready.  An entry is never
 * freed.  Index 0 is the entity of keys without a prefix (name "").
 */
#define HC_ENT_BUSY UINT64_C(2)
struct hc_entity_rec {
	uint64_t word;
	uint8_t len;
	char name[HC_ENTITY_NAME_MAX];
	uint32_t beta; /* XFetch beta x 1000; 0 = default (1.0), UINT32_MAX = off; any */
	uint8_t pad[HC_LINE - 8 - 1 - HC_ENTITY_NAME_MAX - 4];
};

/*
 * A single-flight record (flight.c): one key being loaded on the host.
 * word is 0 when free, else [key hash:32][owner:32], owner being
 * HC_OWNER(slot, gen) of the loading thread; taken and given back by CAS
 * (a waiter takes it over the same way from a dead or late owner).  When a
 * flight ends its owner stores the outcome, frees the word, then bumps
 * futex (release) and wakes the waiters asleep on it (FUTEX_WAIT, shared).
 */
struct hc_flight {
	uint64_t word;	     /* any, CAS */
	uint32_t futex;	     /* +1 at the end of every flight; owner, atomic add */
	uint32_t waiters;    /* callers asleep on futex; any, atomic add */
	uint64_t outcome;    /* [futex value after the end:32][result:32]; owner */
	uint64_t lease;	     /* [owner:32][lease end, hc_now_ms() mod 2^32]; owner */
	uint64_t checked_ms; /* a waiter last checked the owner's life; any, CAS */
	uint64_t started_ms; /* when the current owner took it */
	uint32_t l2;	     /* [gen:24][HC_L2_*]: the owner's L2 lookup; futex, CAS */
	uint32_t reserved;
	uint8_t pad[HC_LINE - 56];
};
#define HC_L2_PENDING 1u   /* asked, no answer yet (HIT, MISS, ERROR: hostcache.h) */
#define HC_L2_ABANDONED 5u /* the owner stopped waiting */
#define HC_L2_ANSWERING 6u /* the agent claimed the answer and is storing the value */

/*
 * The request ring: a bounded multi-producer, single-consumer queue of
 * fixed slots (Vyukov's bounded queue).  seq is the slot's ticket: equal to
 * a position p when free for the producer that claims p (by CAS of tail),
 * p + 1 once that producer published it (CAS, so a consumer that skipped a
 * stalled producer wins), p + HC_RING_SLOTS once consumed.
 */
#define HC_RING_SLOTS 1024u
struct hc_ring_slot {
	uint64_t seq;	   /* any, CAS */
	uint32_t op, klen; /* producer, before publishing */
	uint32_t ttl_ms, stale_ms;
	uint64_t token;	    /* HC_REQ_GET: [flight index:32][expected l2 word:32] */
	uint64_t queued_ms; /* hc_now_ms() at queueing */
	uint8_t key[HC_KEY_MAX];
	uint8_t pad[320 - 40 - HC_KEY_MAX];
};

/* The agent's record: ring positions, doorbell, state and counters. */
struct hc_agent_rec {
	uint64_t tail; /* next position for producers; any, CAS */
	uint8_t pad0[HC_LINE - 8];
	uint64_t head; /* next position to consume; the agent */
	uint8_t pad1[HC_LINE - 8];
	uint32_t doorbell; /* futex: +1 by a producer that finds the agent asleep */
	uint32_t sleeping; /* the agent waits on the doorbell */
	uint8_t pad2[HC_LINE - 8];
	uint64_t start_time;  /* the agent process's start time (ticks since boot) */
	uint32_t redis_state; /* enum hc_redis_state; the agent */
	uint32_t reserved;
	uint64_t drops;	       /* requests not queued: ring full; any, atomic add */
	uint64_t l2_skipped;   /* L2 skipped: no live agent; any, atomic add */
	uint64_t ring_skipped; /* slots of stalled producers skipped; the agent */
	uint64_t l2_timeouts;  /* owners that stopped waiting for L2; any, atomic add */
	uint8_t pad3[HC_LINE - 48];
	uint64_t ctr[HC_AG_N];	     /* enum hc_agent_ctr; the agent, atomic add */
	uint64_t l2_hist[HC_HIST_N]; /* L2 lookup latency; the agent */
};

/*
 * The header, one page at offset 0.  Identity and geometry are written by
 * the creator before it stores `magic` (release); nothing there changes
 * afterwards.  The shared counters each sit on their own line.
 */
struct hc_header {
	/* line 0: identity */
	uint64_t magic;		  /* HC_MAGIC once initialised (stored last) */
	uint32_t abi_version;	  /* HC_ABI_VERSION */
	uint32_t layout_hash;	  /* hc_layout_hash() of the creating build */
	uint64_t size;		  /* segment bytes */
	uint32_t init_state;	  /* HC_INIT_*; creator, release store */
	int32_t creator_pid;	  /* process that initialised it */
	uint64_t creator_start;	  /* its start time (ticks since boot) */
	uint64_t created_unix_ms; /* wall clock at creation */
	uint8_t pad0[HC_LINE - 48];

	/* lines 1-3: geometry (creator) */
	uint32_t max_threads;	 /* thread slots */
	uint32_t max_value;	 /* largest value bytes */
	uint32_t slab_size;	 /* bytes per slab */
	uint32_t nslabs;	 /* slabs in the arena */
	uint32_t nclasses;	 /* size classes in use */
	uint32_t nbuckets;	 /* index buckets */
	uint32_t bytes_per_slot; /* sizing hint the index was built with */
	uint32_t flags;		 /* HC_GROUP at creation */
	uint64_t hash_seed;	 /* random key-hash seed of this segment */
	uint64_t off_classes, off_entities, off_totals, off_slots;
	uint64_t off_slabtab, off_index, off_arena;
	uint64_t slot_stride; /* bytes per struct hc_tslot */
	uint64_t off_flights; /* struct hc_flight[nflights] */
	uint64_t off_loadctr; /* struct hc_load_ctr */
	uint64_t off_agent;   /* struct hc_agent_rec, then the ring slots */
	uint32_t nflights;    /* a power of two */
	uint32_t reserved1;
	uint8_t pad1[3 * HC_LINE - 136];

	/* line 4: the reclamation epoch; any, atomic add */
	uint64_t epoch;
	uint8_t pad2[HC_LINE - 8];
	/* line 5: highest epoch known safe: blocks retired before it are free */
	uint64_t safe_epoch;
	uint8_t pad3[HC_LINE - 8];
	/* line 6: allocation hints; any, relaxed */
	uint32_t slots_hwm;    /* 1 + highest thread slot ever claimed */
	uint32_t slab_hint;    /* where to look for a free slab */
	uint64_t totals_seq;   /* odd while a slot's counters are being folded */
	uint64_t maint_hand;   /* next slab for hc_maintain's expiry walk */
	uint64_t last_move_ns; /* when a slab last moved between classes */
	uint8_t pad4[HC_LINE - 32];
	/* line 7: agent heartbeat (written by hostcache-agent) */
	uint64_t agent_heartbeat_ms; /* CLOCK_MONOTONIC ms; 0 = no agent */
	int32_t agent_pid;
	uint8_t pad5[HC_LINE - 12];
};

_Static_assert(sizeof(struct hc_entry) == HC_ENTRY_HDR, "entry header is 32 bytes");
_Static_assert(sizeof(struct hc_bucket) == HC_LINE, "a bucket is one cache line");
_Static_assert(sizeof(struct hc_class) == HC_LINE, "class state is one line");
_Static_assert(sizeof(struct hc_entity_rec) == HC_LINE, "entity record is one line");
_Static_assert(sizeof(struct hc_flight) == HC_LINE, "flight record is one line");
_Static_assert(sizeof(struct hc_ring_slot) == 320, "ring slot is five lines");
_Static_assert(sizeof(struct hc_header) <= HC_PAGE, "header fits one page");
_Static_assert(offsetof(struct hc_header, epoch) % HC_LINE == 0, "epoch on its own line");
_Static_assert(offsetof(struct hc_header, safe_epoch) % HC_LINE == 0, "safe epoch line");
_Static_assert(offsetof(struct hc_tslot, owner) == HC_LINE, "reader line is alone");
_Static_assert(offsetof(struct hc_tslot, c) == 2 * HC_LINE, "counters start on line 2");
_Static_assert(HC_MAX_CLASSES <= 256, "class id fits the slab word");

/* A hash of the sizes and offsets above; differs between incompatible builds. */
static inline uint32_t hc_layout_hash(void)
{
	const uint64_t parts[] = {
		sizeof(struct hc_header),
		sizeof(struct hc_tslot),
		sizeof(struct hc_slot_ctr),
		sizeof(struct hc_entry),
		sizeof(struct hc_bucket),
		sizeof(struct hc_class),
		sizeof(struct hc_entity_rec),
		sizeof(struct hc_flight),
		sizeof(struct hc_ring_slot),
		sizeof(struct hc_agent_rec),
		HC_RING_SLOTS,
		offsetof(struct hc_header, epoch),
		offsetof(struct hc_header, off_flights),
		offsetof(struct hc_header, off_arena),
		offsetof(struct hc_tslot, c),
		HC_MAX_CLASSES,
		HC_MAX_ENTITIES,
		HC_LAYER_COUNT,
		HC_CTR_N,
		HC_LD_N,
		HC_KEY_MAX,
		HC_BUCKET_SLOTS,
	};
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		for (int b = 0; b < 8; b++) {
			h ^= (uint32_t)((parts[i] >> (8 * b)) & 0xff);
			h *= 16777619u;
		}
	}
	return h;
}

#endif /* HC_LAYOUT_H */
