/*
 * alloc.c - size classes, slabs, and the CLOCK sweep that allocates, evicts
 * and reclaims in one motion.
 *
 * The arena is cut into slabs of equal size (a little over max_value).  A
 * slab belongs to one size class at a time and is cut into blocks of that
 * class's size; classes are 8 bytes apart up to 256 bytes, then 12.5 %
 * apart, as memcached's slab classes but finer where small API values live.
 *
 * There is no free list.  Each block's lifecycle word (layout.h) is the
 * one authority on who owns it, and every change of owner is one CAS of
 * that word.  A thread that needs a block takes a range of up to
 * HC_SWEEP_RANGE blocks from its class's CLOCK hand (a CAS on the class's
 * hand word) and walks it:
 *
 *   FREE                     claim it (CAS -> ALLOC(me)) and return it
 *   RETIRED(e), e < safe     reuse it: every reader that could see it left
 *   LIVE, expired            unlink it from the index, retire it
 *   LIVE, visited            clear the bit (second chance)
 *   LIVE, not visited        evict: unlink, retire
 *   ALLOC(owner)             a block being written; if its owner died,
 *                            recover it (LIVE if published, else RETIRED)
 *
 * When a range yields nothing but freshly retired blocks, the thread runs
 * one grace period (rcu.c) and walks the range again, now claiming them:
 * eviction is batched by range, one grace period per range.  A reader's
 * hit only sets the visited byte when it is clear, so hot entries cost no
 * cache-line writes.
 *
 * Because no block is ever "in hand" outside one lifecycle state, a
 * process killed at any instruction leaves at worst ALLOC blocks with a
 * dead owner or LIVE blocks that are no longer indexed, and the next sweep
 * over them recovers both.  Nothing is leaked for longer than one lap.
 *
 * A class grows by claiming free slabs (CAS on the slab table) while the
 * arena has them.  A class with no slab at all when the arena is full
 * steals one from the largest class; and every time a class's hand wraps,
 * it takes a slab from the class whose entries survive longest unread if
 * they survive more than twice as long as its own (rebalance()), so memory
 * follows demand instead of staying where the first writes put it.
 * drain_slab() empties the slab (claiming every block, evicting what
 * lives there), waits for one grace period so nobody still walks the old
 * geometry, and re-cuts it.  A drain that cannot finish (a writer stalled
 * on one of its blocks) gives everything back.
 */
#include <errno.h>
#include <sched.h>

#include "internal.h"

/* Laps of its class an allocation may sweep before it reports HC_E_NOSPACE. */
#define ALLOC_MAX_LAPS 2
/*
 * Longest an allocation waits for readers to finish their reads: a reader
 * descheduled on a loaded host can take a while; a stalled one (rcu.c,
 * STALL_MS) is not waited for at all.
 */
#define ALLOC_WAIT_MS 1000
/* Slabs move between classes at most this often (the first one of a class is exempt). */
#define MOVE_INTERVAL_NS (100u * 1000000u)

uint64_t hc_classes_init(struct hc_header *hdr, struct hc_class *classes, uint32_t slab_size,
			 uint32_t max_item)
{
	(void)hdr;
	uint32_t n = 0;
	uint32_t size = 40;
	while (n < HC_MAX_CLASSES - 1 && size <= slab_size / 2 && size < max_item) {
		classes[n].block_size = size;
		classes[n].per_slab = slab_size / size;
		n++;
		size = size < 256 ? size + 8 : ((size + size / 8 + 7) & ~7u);
	}
	classes[n].block_size = slab_size;
	classes[n].per_slab = 1;
	n++;
	return n;
}

int hc_class_of(const struct hc_cache *c, size_t need)
{
	uint32_t lo = 0, hi = c->nclasses;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (c->classes[mid].block_size < need)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->nclasses ? (int)lo : HC_E_TOOBIG;
}

uint32_t hc_class_of_off(const struct hc_cache *c, uint64_t off)
{
	uint64_t slab = (off - c->off_arena) / c->slab_size;
	return HC_SLAB_CLASS(CMM_LOAD_SHARED(c->slabtab[slab]));
}

/*
 * The count of reusable (FREE or RETIRED) blocks per class decides whether
 * the sweep may evict (alloc below).  Threads keep their changes locally
 * and publish them in batches, so counting costs no shared write per set;
 * the estimate is off by at most HC_FREE_BATCH per thread, and maintenance
 * recounts it exactly (hc_sweep_expired).
 */
void hc_free_adjust(struct hc_cache *c, struct hc_thread *t, uint32_t cls, int32_t d)
{
	if (!t) {
		uatomic_add(&c->classes[cls].free_est, d);
		return;
	}
	int32_t v = t->free_delta[cls] + d;
	if (v >= HC_FREE_BATCH || v <= -HC_FREE_BATCH) {
		uatomic_add(&c->classes[cls].free_est, v);
		v = 0;
	}
	t->free_delta[cls] = v;
}

void hc_free_flush(struct hc_cache *c, struct hc_thread *t)
{
	for (uint32_t k = 0; k < c->nclasses; k++) {
		if (t->free_delta[k])
			uatomic_add(&c->classes[k].free_est, t->free_delta[k]);
		t->free_delta[k] = 0;
	}
}

/*
 * Retire a block that has left the index (or never entered it).  The CAS
 * makes retirement happen once however many threads find the block; the
 * epoch stamped is read after the unlink, so every reader that could still
 * hold the block has a smaller or equal epoch in its slot.  The retiring
 * thread remembers the block, to reuse it while it is warm in its cache.
 *
 * @was_indexed: the caller took the block out of the index itself, so it
 * was published even if its writer has not marked it LIVE yet (ALLOC).
 * Otherwise only a LIVE block may be retired: an ALLOC block that is not
 * indexed belongs to a writer or a drainer still at work.
 */
bool hc_retire(struct hc_cache *c, struct hc_thread *t, uint64_t off, bool was_indexed)
{
	struct hc_entry *e = hc_entry_at(c, off);
	for (;;) {
		uint64_t s = CMM_LOAD_SHARED(e->state);
		uint64_t k = HC_BS_KIND(s);
		if (k != HC_BS_LIVE && !(k == HC_BS_ALLOC && was_indexed))
			return false;
		uint64_t r = HC_BS_MAKE(HC_BS_RETIRED, CMM_LOAD_SHARED(c->hdr->epoch));
		if (uatomic_cmpxchg(&e->state, s, r) != s)
			continue;
		uint32_t cls = hc_class_of_off(c, off);
		hc_free_adjust(c, t, cls, 1);
		if (t && hc_ref_class(c, off) == (int)cls) {
			struct hc_stash *st = &t->stash[cls];
			st->off[(st->head + st->n) % HC_STASH] = off;
			if (st->n < HC_STASH)
				st->n++;
			else
				st->head = (st->head + 1) % HC_STASH; /* forget the oldest */
		}
		return true;
	}
}

/* A claim (FREE or RETIRED -> ALLOC by @t) of block @off, with its count. */
static bool claim(struct hc_cache *c, struct hc_thread *t, uint32_t cls, uint64_t off, uint64_t s,
		  uint64_t mine)
{
	if (uatomic_cmpxchg(&hc_entry_at(c, off)->state, s, mine) != s)
		return false;
	hc_free_adjust(c, t, cls, -1);
	return true;
}

/* Give back a block that was allocated but never published. */
void hc_free_unpublished(struct hc_cache *c, struct hc_thread *t, uint64_t off)
{
	struct hc_entry *e = hc_entry_at(c, off);
	uint64_t mine = HC_BS_MAKE(HC_BS_ALLOC, HC_OWNER(t->slot, t->gen));
	if (uatomic_cmpxchg(&e->state, mine, HC_BS_FREE) == mine)
		hc_free_adjust(c, t, hc_class_of_off(c, off), 1);
}

/*
 * A block in ALLOC state whose owner is gone.  If the owner got as far as
 * publishing it, it is a live entry; otherwise nobody can reach it and it
 * is retired (it may have been read through the index before the owner
 * died only if it was published, which the index check rules out).
 */
int hc_recover_block(struct hc_cache *c, struct hc_thread *t, uint64_t off, uint64_t s)
{
	struct hc_entry *e = hc_entry_at(c, off);
	uint64_t *slot;
	uint64_t next;
	if (hc_find_slot(c, off, e, &slot) == 0)
		next = HC_BS_MAKE(HC_BS_LIVE, 0);
	else
		next = HC_BS_MAKE(HC_BS_RETIRED, CMM_LOAD_SHARED(c->hdr->epoch));
	if (uatomic_cmpxchg(&e->state, s, next) != s)
		return 0;
	if (HC_BS_KIND(next) == HC_BS_RETIRED)
		hc_free_adjust(c, t, hc_class_of_off(c, off), 1);
	if (t)
		hc_ctr_add(&t->ts->c.misc[HC_MISC_BLOCKS_RECOVERED], 1);
	else
		uatomic_add(&c->totals->misc[HC_MISC_BLOCKS_RECOVERED], 1);
	return 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The next ACTIVE slab of class @cls at or after @from, or -1. */
static int64_t next_slab(const struct hc_cache *c, uint32_t cls, uint64_t from)
{
	for (uint64_t k = from; k < c->nslabs; k++) {
		uint64_t w = CMM_LOAD_SHARED(c->slabtab[k]);
		if (HC_SLAB_KIND(w) == HC_SLAB_ACTIVE && HC_SLAB_CLASS(w) == cls)
			return (int64_t)k;
	}
	return -1;
}

static void format_slab(struct hc_cache *c, uint32_t v, uint32_t cls)
{
	const struct hc_class *cl = &c->classes[cls];
	for (uint32_t i = 0; i < cl->per_slab; i++) {
		struct hc_entry *e = hc_entry_at(c, hc_block_off(c, v, cls, i));
		CMM_STORE_SHARED(e->state, HC_BS_FREE);
	}
	cmm_smp_wmb();
}

/*
 * Wait until every read-side section that began before epoch @e has ended.
 * Returns false if a stalled reader holds it (or ALLOC_WAIT_MS passed).
 */
static bool wait_readers_past(struct hc_cache *c, struct hc_thread *t, uint64_t e)
{
	uint64_t until = hc_now_ms() + ALLOC_WAIT_MS;
	for (;;) {
		bool stalled = false;
		if (hc_synchronize(c, t, &stalled) > e)
			return true;
		if (stalled || hc_now_ms() >= until)
			return false;
		sched_yield();
	}
}

/* Put a slab a dead drainer left DRAINING or FORMATTING back in service. */
static void adopt_slab(struct hc_cache *c, struct hc_thread *t, uint32_t v, uint64_t w)
{
	uint64_t me = HC_OWNER(t->slot, t->gen);
	uint32_t cls = HC_SLAB_CLASS(w), gen = HC_SLAB_GEN(w);
	uint64_t mine = HC_SLAB_MAKE(HC_SLAB_KIND(w), cls, gen, me);
	if (uatomic_cmpxchg(&c->slabtab[v], w, mine) != w)
		return;
	if (HC_SLAB_KIND(w) == HC_SLAB_FORMATTING) {
		/* every old block was the dead drainer's: re-cut for the new class */
		uint64_t e = CMM_LOAD_SHARED(c->hdr->epoch);
		if (!wait_readers_past(c, t, e)) {
			uatomic_set(&c->slabtab[v], w); /* try again later */
			return;
		}
		format_slab(c, v, cls);
		uatomic_add(&c->classes[cls].free_est, c->classes[cls].per_slab);
		uatomic_set(&c->slabtab[v], HC_SLAB_MAKE(HC_SLAB_ACTIVE, cls, gen + 1, 0));
	} else {
		/* back to its class; the sweep recovers the blocks the drainer held */
		uatomic_set(&c->slabtab[v], HC_SLAB_MAKE(HC_SLAB_ACTIVE, cls, gen, 0));
	}
	uatomic_add(&c->classes[cls].nslabs, 1);
	hc_log(c, HC_LOG_INFO, "adopted slab %u left by a dead drainer", v);
}

/* Claim a never-used (or given back) slab for @cls, or -1 if none. */
static int64_t take_free_slab(struct hc_cache *c, struct hc_thread *t, uint32_t cls)
{
	uint32_t n = c->nslabs;
	uint32_t start = CMM_LOAD_SHARED(c->hdr->slab_hint) % n;
	for (uint32_t j = 0; j < n; j++) {
		uint32_t k = (start + j) % n;
		uint64_t w = CMM_LOAD_SHARED(c->slabtab[k]);
		uint64_t kind = HC_SLAB_KIND(w);
		if ((kind == HC_SLAB_DRAINING || kind == HC_SLAB_FORMATTING) &&
		    !hc_owner_alive(c, HC_SLAB_OWNER(w))) {
			adopt_slab(c, t, k, w);
			continue;
		}
		if (kind != HC_SLAB_FREE)
			continue;
		uint64_t nw = HC_SLAB_MAKE(HC_SLAB_ACTIVE, cls, HC_SLAB_GEN(w), 0);
		if (uatomic_cmpxchg(&c->slabtab[k], w, nw) == w) {
			/* a class's first lap starts with its first slab */
			uatomic_cmpxchg(&c->classes[cls].lap_start_ns, 0, now_ns());
			uatomic_add(&c->classes[cls].free_est, c->classes[cls].per_slab);
			uatomic_add(&c->classes[cls].nslabs, 1);
			CMM_STORE_SHARED(c->hdr->slab_hint, k + 1);
			return k;
		}
	}
	return -1;
}

/* Give every block of slab @v (class @cls) that is ALLOC(@me) back as FREE. */
static void drain_abort(struct hc_cache *c, struct hc_thread *t, uint32_t v, uint32_t cls,
			uint64_t me)
{
	for (uint32_t i = 0; i < c->classes[cls].per_slab; i++) {
		struct hc_entry *e = hc_entry_at(c, hc_block_off(c, v, cls, i));
		if (uatomic_cmpxchg(&e->state, HC_BS_MAKE(HC_BS_ALLOC, me), HC_BS_FREE) ==
		    HC_BS_MAKE(HC_BS_ALLOC, me))
			hc_free_adjust(c, t, cls, 1);
	}
}

/*
 * Move slab @v from class @d to class @cls.  See the file comment.  The
 * DRAINING mark keeps new sweep ranges out; blocks are claimed one by one
 * (evicting what lives there); the FORMATTING mark and a grace period make
 * sure no thread still walks the old geometry before it is re-cut.
 */
static int64_t drain_slab(struct hc_cache *c, struct hc_thread *t, uint32_t v, uint32_t d,
			  uint32_t cls)
{
	uint64_t w = CMM_LOAD_SHARED(c->slabtab[v]);
	if (HC_SLAB_KIND(w) != HC_SLAB_ACTIVE || HC_SLAB_CLASS(w) != d)
		return -EAGAIN;
	uint64_t me = HC_OWNER(t->slot, t->gen);
	uint32_t gen = HC_SLAB_GEN(w);
	uint64_t dw = HC_SLAB_MAKE(HC_SLAB_DRAINING, d, gen, me);
	if (uatomic_cmpxchg(&c->slabtab[v], w, dw) != w)
		return -EAGAIN;
	uatomic_add(&c->classes[d].nslabs, -1);

	const uint32_t per = c->classes[d].per_slab;
	const uint64_t until = hc_now_ms() + ALLOC_WAIT_MS;
	bool drained = false, stalled = false;
	for (int pass = 0; !drained; pass++) {
		if (pass && (stalled || hc_now_ms() >= until))
			break; /* a writer or reader in the slab is not finishing */
		if (pass)
			sched_yield(); /* let the writers and readers in the slab finish */
		uint64_t safe = pass == 0 ? CMM_LOAD_SHARED(c->hdr->safe_epoch)
					  : hc_synchronize(c, t, &stalled);
		uint32_t mine = 0;
		hc_read_lock(c, t);
		for (uint32_t i = 0; i < per; i++) {
			uint64_t off = hc_block_off(c, v, d, i);
			struct hc_entry *e = hc_entry_at(c, off);
			uint64_t s = CMM_LOAD_SHARED(e->state);
			uint64_t claimed = HC_BS_MAKE(HC_BS_ALLOC, me);
			switch (HC_BS_KIND(s)) {
			case HC_BS_FREE:
				mine += claim(c, t, d, off, s, claimed);
				break;
			case HC_BS_RETIRED:
				if (HC_BS_PAYLOAD(s) < safe)
					mine += claim(c, t, d, off, s, claimed);
				break;
			case HC_BS_LIVE:
				hc_unlink_entry(c, t, off, HC_UNLINK_EVICT);
				break;
			case HC_BS_ALLOC:
				if (s == claimed)
					mine++;
				else if (!hc_owner_alive(c, HC_BS_PAYLOAD(s)))
					hc_recover_block(c, t, off, s);
				break;
			}
		}
		hc_read_unlock(t);
		drained = mine == per;
	}
	if (drained) {
		uint64_t fw = HC_SLAB_MAKE(HC_SLAB_FORMATTING, cls, gen, me);
		uatomic_set(&c->slabtab[v], fw);
		uint64_t e = CMM_LOAD_SHARED(c->hdr->epoch);
		if (wait_readers_past(c, t, e)) {
			format_slab(c, v, cls);
			uatomic_add(&c->classes[cls].free_est, c->classes[cls].per_slab);
			uatomic_set(&c->slabtab[v], HC_SLAB_MAKE(HC_SLAB_ACTIVE, cls, gen + 1, 0));
			uatomic_add(&c->classes[cls].nslabs, 1);
			hc_ctr_add(&t->ts->c.misc[HC_MISC_SLAB_MOVES], 1);
			return v;
		}
	}
	drain_abort(c, t, v, d, me);
	uatomic_set(&c->slabtab[v], HC_SLAB_MAKE(HC_SLAB_ACTIVE, d, gen, 0));
	uatomic_add(&c->classes[d].nslabs, 1);
	return HC_E_NOSPACE;
}

/* Class @cls has no slab and the arena has none free: take one from the largest class. */
static int64_t steal_slab(struct hc_cache *c, struct hc_thread *t, uint32_t cls)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		uint32_t best = UINT32_MAX, bestn = 0;
		for (uint32_t d = 0; d < c->nclasses; d++) {
			uint32_t n = CMM_LOAD_SHARED(c->classes[d].nslabs);
			if (d != cls && n > bestn) {
				best = d;
				bestn = n;
			}
		}
		if (best == UINT32_MAX)
			return HC_E_NOSPACE;
		/* the slab the victim's hand reaches next holds its coldest entries */
		uint64_t hand_slab = CMM_LOAD_SHARED(c->classes[best].hand) >> 32;
		int64_t v = next_slab(c, best, hand_slab + 1);
		if (v < 0)
			v = next_slab(c, best, 0);
		if (v < 0)
			continue;
		int64_t r = drain_slab(c, t, (uint32_t)v, best, cls);
		if (r != -EAGAIN)
			return r;
	}
	return HC_E_NOSPACE;
}

/* Time since class @k's hand last wrapped, or its last lap if longer. */
static uint64_t class_age(const struct hc_cache *c, uint32_t k, uint64_t now)
{
	const struct hc_class *cl = &c->classes[k];
	uint64_t start = CMM_LOAD_SHARED(cl->lap_start_ns);
	uint64_t lap = CMM_LOAD_SHARED(cl->lap_ns);
	uint64_t since = start && now > start ? now - start : 0;
	return since > lap ? since : lap;
}

/*
 * The hand of @cls wrapped: its entries now survive lap_ns unread.  If
 * another class keeps its entries more than twice as long, memory is worth * less there: move one of its slabs here (memcached's slab automove, by
 * eviction age).  At most one move per lap and per MOVE_INTERVAL_NS for
 * the segment, so classes of similar demand do not trade slabs back and
 * forth; the donor keeps one slab.
 * Returns the slab moved in, or -1.
 */
static int64_t rebalance(struct hc_cache *c, struct hc_thread *t, uint32_t cls)
{
	struct hc_class *cl = &c->classes[cls];
	uint64_t now = now_ns();
	uint64_t start = CMM_LOAD_SHARED(cl->lap_start_ns);
	uint64_t lap = start && now > start ? now - start : 0;
	CMM_STORE_SHARED(cl->lap_start_ns, now);
	CMM_STORE_SHARED(cl->lap_ns, lap);
	if (lap == 0)
		return -1;
	uint32_t donor = UINT32_MAX;
	uint64_t oldest = 2 * lap;
	for (uint32_t k = 0; k < c->nclasses; k++) {
		if (k == cls || CMM_LOAD_SHARED(c->classes[k].nslabs) < 2)
			continue;
		uint64_t age = class_age(c, k, now);
		if (age > oldest) {
			oldest = age;
			donor = k;
		}
	}
	if (donor == UINT32_MAX)
		return -1;
	/* one move at a time for the whole segment, and not too often */
	uint64_t last = CMM_LOAD_SHARED(c->hdr->last_move_ns);
	if (now - last < MOVE_INTERVAL_NS ||
	    uatomic_cmpxchg(&c->hdr->last_move_ns, last, now) != last)
		return -1;
	uint64_t hand_slab = CMM_LOAD_SHARED(c->classes[donor].hand) >> 32;
	int64_t v = next_slab(c, donor, hand_slab + 1);
	if (v < 0)
		v = next_slab(c, donor, 0);
	if (v < 0)
		return -1;
	int64_t r = drain_slab(c, t, (uint32_t)v, donor, cls);
	return r >= 0 ? r : -1;
}

/* Take the next range of the class hand into @cur. */
static int claim_range(struct hc_cache *c, struct hc_thread *t, uint32_t cls, struct hc_cursor *cur)
{
	struct hc_class *cl = &c->classes[cls];
	const uint32_t per = cl->per_slab;
	/*
	 * A range a process takes and does not finish (it exits) is only seen
	 * again on the next lap, while the hand evicts elsewhere: keep ranges
	 * a small part of a slab.
	 */
	uint32_t len = per / 16 < HC_SWEEP_RANGE ? per / 16 : HC_SWEEP_RANGE;
	if (len == 0)
		len = 1;

	for (int attempt = 0; attempt < 1000; attempt++) {
		uint64_t h = CMM_LOAD_SHARED(cl->hand);
		uint64_t s = h >> 32;
		uint32_t i = (uint32_t)h;
		if (s < c->nslabs) {
			uint64_t w = CMM_LOAD_SHARED(c->slabtab[s]);
			if (HC_SLAB_KIND(w) == HC_SLAB_ACTIVE && HC_SLAB_CLASS(w) == cls &&
			    i < per) {
				uint32_t end = i + len < per ? i + len : per;
				if (uatomic_cmpxchg(&cl->hand, h, (s << 32) | end) != h)
					continue;
				*cur = (struct hc_cursor){.slabword = w,
							  .slab = (uint32_t)s,
							  .start = i,
							  .pos = i,
							  .end = end};
				return 0;
			}
		}
		/* this slab is done: on to the next one of the class */
		int64_t ns = next_slab(c, cls, s + 1);
		if (ns < 0)
			ns = take_free_slab(c, t, cls); /* grow while the arena lasts */
		if (ns < 0) {
			ns = rebalance(c, t, cls); /* a new lap: memory from a colder class? */
			if (ns < 0)
				ns = next_slab(c, cls, 0);
		}
		if (ns < 0)
			ns = steal_slab(c, t, cls); /* the class owns no memory at all */
		if (ns < 0)
			return (int)ns;
		uatomic_cmpxchg(&cl->hand, h, (uint64_t)ns << 32);
	}
	return HC_E_NOSPACE;
}

/*
 * Look at one LIVE block under the hand: expired -> unlink, visited ->
 * second chance, else evict.  Returns true if the block was retired.
 */
static bool sweep_live(struct hc_cache *c, struct hc_thread *t, uint64_t off, uint64_t now)
{
	struct hc_entry *e = hc_entry_at(c, off);
	uint64_t su = hc_stale_until(CMM_LOAD_SHARED(e->expiry));
	if (su != HC_NEVER && now >= su)
		return hc_unlink_entry(c, t, off, HC_UNLINK_EXPIRE);
	if (CMM_LOAD_SHARED(e->visited)) {
		CMM_STORE_SHARED(e->visited, 0);
		return false;
	}
	return hc_unlink_entry(c, t, off, HC_UNLINK_EVICT);
}

/*
 * Reuse a block this thread retired lately, once a grace period covers it:
 * it is still in this CPU's cache, where the sweep's next block is not.
 * Runs inside a read-side section, so the slab cannot be re-cut under the
 * check of its geometry.  Returns the block, or 0.
 */
static uint64_t from_stash(struct hc_cache *c, struct hc_thread *t, uint32_t cls, uint64_t me,
			   uint64_t safe)
{
	struct hc_stash *st = &t->stash[cls];
	while (st->n) {
		uint64_t off = st->off[st->head];
		const struct hc_entry *e = hc_entry_at(c, off);
		uint64_t w = CMM_LOAD_SHARED(c->slabtab[(off - c->off_arena) / c->slab_size]);
		/*
		 * The slab may have been re-cut since: same class, same geometry.
		 * Only then is off a block header; otherwise it may lie inside a
		 * block another thread is filling, so its state is not read.
		 */
		bool ours = HC_SLAB_KIND(w) == HC_SLAB_ACTIVE && HC_SLAB_CLASS(w) == cls &&
			    (off - c->off_arena) % c->slab_size % c->classes[cls].block_size == 0;
		uint64_t s = ours ? CMM_LOAD_SHARED(e->state) : 0;
		ours = ours && HC_BS_KIND(s) == HC_BS_RETIRED;
		if (ours && HC_BS_PAYLOAD(s) >= safe)
			return 0; /* not free yet */
		st->head = (st->head + 1) % HC_STASH;
		st->n--;
		if (ours && claim(c, t, cls, off, s, me))
			return off;
	}
	return 0;
}

/*
 * Does the stash hold enough blocks waiting for a grace period to make
 * running one (outside any section) worth it?
 */
static bool stash_wants_grace(const struct hc_cache *c, const struct hc_thread *t, uint32_t cls,
			      uint64_t safe)
{
	const struct hc_stash *st = &t->stash[cls];
	if (st->n < HC_STASH * 3 / 4)
		return false;
	uint64_t s = CMM_LOAD_SHARED(hc_entry_at(c, st->off[st->head])->state);
	return HC_BS_KIND(s) == HC_BS_RETIRED && HC_BS_PAYLOAD(s) >= safe;
}

/*
 * hc_alloc - a block of class @cls, owned by the caller (ALLOC state).
 * The caller is outside any read-side section of its own (or holds only
 * views): each walk of a range is one short section, and grace periods
 * run between them, so allocating threads never hold each other back.
 *
 * While the class has plenty of reusable blocks (free_est above an eighth
 * of it) the sweep only collects them and leaves live entries alone; only
 * a class that is really full evicts.  Returns the block's offset, or 0
 * with *err set (HC_E_NOSPACE when nothing can be reclaimed).
 */
uint64_t hc_alloc(struct hc_cache *c, struct hc_thread *t, uint32_t cls, int *err)
{
	struct hc_cursor *cur = &t->cur[cls];
	struct hc_class *cl = &c->classes[cls];
	const uint64_t me = HC_BS_MAKE(HC_BS_ALLOC, HC_OWNER(t->slot, t->gen));
	uint64_t safe = CMM_LOAD_SHARED(c->hdr->safe_epoch);
	uint64_t now = hc_ms_of(CLOCK_MONOTONIC_COARSE);
	uint64_t swept = 0, scavenged = 0, wait_until = 0; /* wait_until: ms, set at first wait */
	bool stalled = false; /* a stalled reader: grace periods will not help now */
	bool may_scavenge = true;

	if (stash_wants_grace(c, t, cls, safe))
		safe = hc_synchronize(c, t, &stalled);
	hc_read_lock(c, t);
	uint64_t got = from_stash(c, t, cls, me, safe);
	hc_read_unlock(t);
	if (got)
		return got;

	for (;;) {
		uint64_t lap = (uint64_t)CMM_LOAD_SHARED(cl->nslabs) * cl->per_slab;
		bool scavenge = may_scavenge && CMM_LOAD_SHARED(cl->free_est) * 8 > (int64_t)lap;
		hc_read_lock(c, t);
		while (cur->pos < cur->end) {
			if (HC_UNLIKELY(CMM_LOAD_SHARED(c->slabtab[cur->slab]) != cur->slabword)) {
				cur->pos = cur->end; /* the slab is being moved */
				cur->need = 0;
				break;
			}
			uint64_t off = hc_block_off(c, cur->slab, cls, cur->pos);
			struct hc_entry *e = hc_entry_at(c, off);
			uint64_t s = CMM_LOAD_SHARED(e->state);
			bool retired = false;
			switch (HC_BS_KIND(s)) {
			case HC_BS_FREE:
				if (!claim(c, t, cls, off, s, me))
					continue; /* look at the same block again */
				got = off;
				break;
			case HC_BS_RETIRED:
				if (HC_BS_PAYLOAD(s) < safe) {
					if (!claim(c, t, cls, off, s, me))
						continue;
					got = off;
				} else if (HC_BS_PAYLOAD(s) > cur->need) {
					cur->need = HC_BS_PAYLOAD(s);
				}
				break;
			case HC_BS_LIVE:
				/* the walk after a grace period only reclaims; so does a scavenge */
				if (cur->rewalked)
					break;
				if (scavenge) {
					uint64_t su = hc_stale_until(CMM_LOAD_SHARED(e->expiry));
					retired = su != HC_NEVER && now >= su &&
						  hc_unlink_entry(c, t, off, HC_UNLINK_EXPIRE);
				} else {
					retired = sweep_live(c, t, off, now);
				}
				break;
			case HC_BS_ALLOC:
				retired = !hc_owner_alive(c, HC_BS_PAYLOAD(s)) &&
					  hc_recover_block(c, t, off, s);
				break;
			}
			if (retired) {
				uint64_t r = CMM_LOAD_SHARED(c->hdr->epoch);
				if (r > cur->need)
					cur->need = r;
			}
			cur->pos++;
			if (got)
				break;
		}
		hc_read_unlock(t);
		if (got)
			return got;
		if (cur->need && !cur->rewalked) {
			/*
			 * One grace period frees what this range retired; wait a
			 * little for readers still inside a read (a preempted one
			 * needs the CPU back), never for a stalled one.
			 */
			if (!stalled)
				safe = hc_synchronize(c, t, &stalled);
			else
				safe = CMM_LOAD_SHARED(c->hdr->safe_epoch);
			if (!wait_until)
				wait_until = hc_now_ms() + ALLOC_WAIT_MS;
			if (safe <= cur->need && !stalled && hc_now_ms() < wait_until) {
				sched_yield();
				continue;
			}
			cur->pos = cur->start;
			cur->rewalked = 1;
			cur->need = 0;
			continue;
		}
		if (scavenge) {
			/* a lap without a reusable block: the estimate was wrong, evict */
			scavenged += cur->end - cur->start;
			if (scavenged > lap + 2 * HC_SWEEP_RANGE) {
				may_scavenge = false;
				uatomic_set(&cl->free_est, 0);
			}
		} else {
			/*
			 * The class's memory went round twice and nothing could be
			 * reused: give up if a reader is stalled or the time is up;
			 * else other writers are taking what frees up (a small class
			 * shared by many), so let them finish and go on.
			 */
			swept += cur->end - cur->start;
			if (swept > ALLOC_MAX_LAPS * lap + 2 * HC_SWEEP_RANGE) {
				if (!wait_until)
					wait_until = hc_now_ms() + ALLOC_WAIT_MS;
				if (stalled || hc_now_ms() >= wait_until) {
					uint32_t i = c->stalled_slot;
					struct hc_tslot *ts = hc_slot_at(c, i);
					hc_log(c, HC_LOG_WARN,
					       "no reusable block in class %u (%u blocks): %s "
					       "(slot %u pid %d epoch %llu/%llu)",
					       cls, (unsigned)lap,
					       stalled ? "a reader is stalled" : "readers are slow",
					       i, HC_TS_PID(CMM_LOAD_SHARED(ts->owner)),
					       (unsigned long long)CMM_LOAD_SHARED(ts->epoch),
					       (unsigned long long)CMM_LOAD_SHARED(c->hdr->epoch));
					*err = HC_E_NOSPACE;
					return 0;
				}
				swept = 0;
				sched_yield();
			}
		}
		int rc = claim_range(c, t, cls, cur);
		if (rc < 0) {
			*err = rc;
			return 0;
		}
	}
}

/*
 * hc_sweep_expired - maintenance walk over @budget blocks from the
 * maintenance hand: unlink entries past their stale window, recover blocks
 * of dead writers, retire live blocks a dead process had already unlinked,
 * adopt slabs of dead drainers; a walk over all blocks also corrects each
 * class's estimate of reusable blocks.  One read-side section per
 * slab.  Returns the number of entries expired.
 */
int64_t hc_sweep_expired(struct hc_cache *c, struct hc_thread *t, uint64_t budget)
{
	uint64_t total_blocks = 0;
	for (uint32_t k = 0; k < c->nslabs; k++) {
		uint64_t w = CMM_LOAD_SHARED(c->slabtab[k]);
		if (HC_SLAB_KIND(w) == HC_SLAB_ACTIVE)
			total_blocks += c->classes[HC_SLAB_CLASS(w)].per_slab;
	}
	if (budget == 0 || budget > total_blocks)
		budget = total_blocks;

	int64_t expired = 0;
	uint64_t seen = 0;
	uint64_t now = hc_now_ms();
	/* a walk over everything also recounts the reusable blocks of each class */
	bool recount = budget == total_blocks;
	int64_t reusable[HC_MAX_CLASSES] = {0};
	for (uint32_t j = 0; j < c->nslabs && seen < budget; j++) {
		uint32_t k = (uint32_t)(uatomic_add_return(&c->hdr->maint_hand, 1) % c->nslabs);
		uint64_t w = CMM_LOAD_SHARED(c->slabtab[k]);
		uint64_t kind = HC_SLAB_KIND(w);
		if ((kind == HC_SLAB_DRAINING || kind == HC_SLAB_FORMATTING) &&
		    !hc_owner_alive(c, HC_SLAB_OWNER(w))) {
			adopt_slab(c, t, k, w);
			w = CMM_LOAD_SHARED(c->slabtab[k]);
			kind = HC_SLAB_KIND(w);
		}
		if (kind != HC_SLAB_ACTIVE)
			continue;
		uint32_t cls = HC_SLAB_CLASS(w);
		hc_read_lock(c, t);
		for (uint32_t i = 0; i < c->classes[cls].per_slab; i++) {
			if (CMM_LOAD_SHARED(c->slabtab[k]) != w)
				break;
			uint64_t off = hc_block_off(c, k, cls, i);
			struct hc_entry *e = hc_entry_at(c, off);
			uint64_t s = CMM_LOAD_SHARED(e->state);
			uint64_t *slot;
			if (HC_BS_KIND(s) == HC_BS_LIVE) {
				uint64_t su = hc_stale_until(CMM_LOAD_SHARED(e->expiry));
				if (su != HC_NEVER && now >= su &&
				    hc_unlink_entry(c, t, off, HC_UNLINK_EXPIRE))
					expired++;
				else if (hc_find_slot(c, off, e, &slot) != 0)
					hc_retire(c, t, off,
						  false); /* unlinked by a process that died */
			} else if (HC_BS_KIND(s) == HC_BS_ALLOC &&
				   !hc_owner_alive(c, HC_BS_PAYLOAD(s))) {
				hc_recover_block(c, t, off, s);
			}
			s = CMM_LOAD_SHARED(e->state);
			reusable[cls] +=
				HC_BS_KIND(s) == HC_BS_FREE || HC_BS_KIND(s) == HC_BS_RETIRED;
		}
		hc_read_unlock(t);
		seen += c->classes[cls].per_slab;
	}
	if (recount) {
		hc_free_flush(c, t);
		for (uint32_t k = 0; k < c->nclasses; k++)
			uatomic_set(&c->classes[k].free_est, reusable[k]);
	}
	return expired;
}
