/*
 * table.c - the hash index: lock-free lookups, CAS-published updates.
 *
 * The index is an array of buckets of one cache line, eight slot words each
 * ([tag:16][block offset:48]), as in MICA, MemC3 and DPDK's rte_hash.  A
 * key may live in one of two buckets (b1 from the low hash bits, b2 from
 * higher ones); its sixteen candidate positions are ordered b1[0..7] then
 * b2[0..7].  A lookup reads b1, compares tags, and touches only entries
 * whose tag matches; most keys sit in b1 because inserts prefer it.
 *
 * Entries are immutable.  A set writes a new block, then publishes it with
 * one CAS of a slot word: over the key's current entry (replace), over an
 * empty slot (insert), or, when both buckets are full, over the least
 * valuable of the sixteen (expired, else not recently used, else random):
 * a cache need not keep every key.  The block it displaced is retired and
 * freed after a grace period (rcu.c, alloc.c).  There is no writer lock.
 *
 * Two concurrent inserts of one key can pick different empty slots.  Each
 * publisher therefore scans the sixteen positions again after its CAS; of
 * two copies of a key the one at the lower position wins: a publisher that
 * finds a copy below its own withdraws (its set is ordered just before the
 * other, concurrent one), one that finds a copy above removes it.  Both
 * publishers scan after their own CAS (a full barrier), so at least one of
 * them sees the other and the duplicate does not outlive them.
 *
 * What may run concurrently with what:
 *
 *               get     set     del     sweep/evict
 *   get         yes     yes     yes     yes
 *   set         yes     yes     yes     yes
 *   del         yes     yes     yes     yes
 *
 * Every operation runs inside one read-side section, so no block it has
 * seen in the index can be reused before it returns.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"
#include "flight.h"

static inline uint64_t slot_ref(uint64_t v)
{
	return v & HC_SLOT_REF_MASK;
}
static inline bool tag_eq(uint64_t v, uint64_t tag)
{
	return (v & ~HC_SLOT_REF_MASK) == tag;
}

/*
 * Class of the block at @ref if @ref is a block boundary of an active (or
 * draining) slab inside the arena; < 0 otherwise.  Tools go through this before touching
 * an offset read from the segment (invariant 4).
 */
int hc_ref_class(const struct hc_cache *c, uint64_t ref)
{
	if (ref < c->off_arena)
		return -1;
	uint64_t rel = ref - c->off_arena;
	uint64_t slab = rel / c->slab_size;
	if (slab >= c->nslabs)
		return -1;
	uint64_t w = CMM_LOAD_SHARED(c->slabtab[slab]);
	uint64_t kind = HC_SLAB_KIND(w);
	/* a draining slab keeps its geometry until it is marked FORMATTING */
	if ((kind != HC_SLAB_ACTIVE && kind != HC_SLAB_DRAINING) || HC_SLAB_CLASS(w) >= c->nclasses)
		return -1;
	uint32_t cls = HC_SLAB_CLASS(w);
	uint64_t in = rel % c->slab_size;
	const struct hc_class *cl = &c->classes[cls];
	if (in % cl->block_size || in / cl->block_size >= cl->per_slab)
		return -1;
	return (int)cls;
}

/* Does the entry at @ref hold a well-formed key and value for its block? */
bool hc_entry_fits(const struct hc_cache *c, uint64_t ref, const struct hc_entry *e)
{
	int cls = hc_ref_class(c, ref);
	if (cls < 0)
		return false;
	uint32_t klen = CMM_LOAD_SHARED(e->klen), vlen = CMM_LOAD_SHARED(e->vlen);
	return klen >= 1 && klen <= HC_KEY_MAX &&
	       (uint64_t)HC_ENTRY_HDR + klen + vlen <= c->classes[cls].block_size;
}

static inline uint64_t key_hash(const struct hc_cache *c, const void *key, size_t klen)
{
	return hc_hash64(key, klen, c->seed);
}

/*
 * Find the slot that holds block @off (whose header is @e).  The key is
 * re-hashed from the block, which is validated first: this runs on blocks
 * found by sweeps, whose writer may have died before finishing them.
 */
int hc_find_slot(const struct hc_cache *c, uint64_t off, const struct hc_entry *e, uint64_t **slotp)
{
	if (!hc_entry_fits(c, off, e))
		return HC_E_NOTFOUND;
	uint64_t h = key_hash(c, hc_entry_key(e), e->klen);
	uint32_t b1 = hc_bucket1(c, h), b2 = hc_bucket2(c, h, b1);
	uint64_t want = hc_tag(h) | off;
	for (unsigned pos = 0; pos < 2 * HC_BUCKET_SLOTS; pos++) {
		uint64_t *p = hc_pos(c, b1, b2, pos);
		if (CMM_LOAD_SHARED(*p) == want) {
			*slotp = p;
			return 0;
		}
	}
	return HC_E_NOTFOUND;
}

/* A new entry entered the index. */
static void account_link(struct hc_cache *c, struct hc_thread *t, uint64_t off)
{
	const struct hc_entry *e = hc_entry_at(c, off);
	uint32_t cls = hc_class_of_off(c, off);
	hc_ctr_sadd(&t->ts->c.class_items[cls], 1);
	hc_ctr_sadd(&t->ts->c.class_bytes[cls], (int64_t)e->klen + e->vlen);
}

/* An entry left the index for @reason. */
static void account_unlink(struct hc_cache *c, struct hc_thread *t, uint64_t off, int reason)
{
	const struct hc_entry *e = hc_entry_at(c, off);
	uint32_t cls = hc_class_of_off(c, off);
	hc_ctr_sadd(&t->ts->c.class_items[cls], -1);
	hc_ctr_sadd(&t->ts->c.class_bytes[cls], -((int64_t)e->klen + e->vlen));
	if (reason == HC_UNLINK_EVICT || reason == HC_UNLINK_EXPIRE) {
		uint32_t ent = hc_entity_id(c, t, hc_entry_key(e), e->klen);
		hc_count(t, ent, HC_LAYER_L1,
			 reason == HC_UNLINK_EVICT ? HC_CTR_EVICTIONS : HC_CTR_EXPIRATIONS);
	}
}

/*
 * Take block @off out of the index (if it is still there) and retire it.
 * Returns true if this thread retired it.
 */
bool hc_unlink_entry(struct hc_cache *c, struct hc_thread *t, uint64_t off, int reason)
{
	struct hc_entry *e = hc_entry_at(c, off);
	uint64_t *slot;
	if (hc_find_slot(c, off, e, &slot) == 0) {
		uint64_t v = CMM_LOAD_SHARED(*slot);
		if (slot_ref(v) == off && uatomic_cmpxchg(slot, v, 0) == v) {
			account_unlink(c, t, off, reason);
			return hc_retire(c, t, off, true);
		}
	}
	/*
	 * Not indexed.  Only a LIVE block is known to have been published and
	 * then unlinked (by a thread that retires it, or died first); any other
	 * block is someone's business, e.g. a drainer's in a slab that was just
	 * marked FORMATTING, whose blocks the index lookup no longer finds.
	 */
	return hc_retire(c, t, off, false);
}

/* Remove the slot word @v at @p (if unchanged), retire its block. */
static bool take_out(struct hc_cache *c, struct hc_thread *t, uint64_t *p, uint64_t v, int reason)
{
	if (uatomic_cmpxchg(p, v, 0) != v)
		return false;
	account_unlink(c, t, slot_ref(v), reason);
	hc_retire(c, t, slot_ref(v), true);
	return true;
}

/*
 * How soon the CLOCK hand of its class reaches block @ref, as a fraction
 * of a lap scaled to 2^32: small means the sweep would look at it next,
 * i.e. it has gone longest without being re-examined.
 */
static uint64_t hand_distance(const struct hc_cache *c, uint64_t ref)
{
	uint64_t rel = ref - c->off_arena;
	uint64_t s = rel / c->slab_size;
	uint32_t cls = HC_SLAB_CLASS(CMM_LOAD_SHARED(c->slabtab[s]));
	const struct hc_class *cl = &c->classes[cls];
	uint64_t lap = (uint64_t)c->nslabs * cl->per_slab;
	uint64_t pos = s * cl->per_slab + (rel % c->slab_size) / cl->block_size;
	uint64_t hand = CMM_LOAD_SHARED(cl->hand);
	uint64_t hs = hand >> 32 < c->nslabs ? hand >> 32 : c->nslabs;
	uint64_t hpos = hs * cl->per_slab + (uint32_t)hand;
	uint64_t d = (pos + lap - hpos % lap) % lap;
	return (d << 32) / lap;
}

/*
 * The position to overwrite when all sixteen are taken: an expired entry,
 * else the one CLOCK would evict first (not visited, nearest ahead of its
 * class's hand), so that dropping an entry for lack of index room follows
 * the same policy as eviction for lack of memory.
 */
static unsigned choose_victim(struct hc_cache *c, uint32_t b1, uint32_t b2)
{
	uint64_t now = hc_ms_of(CLOCK_MONOTONIC_COARSE);
	unsigned best = 0;
	uint64_t best_score = UINT64_MAX;
	for (unsigned pos = 0; pos < 2 * HC_BUCKET_SLOTS; pos++) {
		uint64_t v = CMM_LOAD_SHARED(*hc_pos(c, b1, b2, pos));
		if (!v)
			return pos;
		const struct hc_entry *e = hc_entry_at(c, slot_ref(v));
		uint64_t su = hc_stale_until(CMM_LOAD_SHARED(e->expiry));
		if (su != HC_NEVER && now >= su)
			return pos;
		uint64_t score = hand_distance(c, slot_ref(v));
		if (CMM_LOAD_SHARED(e->visited))
			score += UINT64_C(1) << 33;
		if (score < best_score) {
			best_score = score;
			best = pos;
		}
	}
	return best;
}

/*
 * Publish block @off (key @key, hash @h) in the index.  See the file
 * comment for the protocol and the duplicate rule.
 */
static void publish(struct hc_cache *c, struct hc_thread *t, uint64_t off, uint64_t h,
		    const void *key, size_t klen)
{
	const uint64_t tag = hc_tag(h);
	const uint32_t b1 = hc_bucket1(c, h), b2 = hc_bucket2(c, h, b1);
	const uint64_t nv = tag | off;
	unsigned mine;

	for (;;) {
		int found = -1, empty1 = -1, empty2 = -1, free1 = 0, free2 = 0;
		uint64_t fv = 0;
		for (unsigned pos = 0; pos < 2 * HC_BUCKET_SLOTS; pos++) {
			uint64_t v = CMM_LOAD_SHARED(*hc_pos(c, b1, b2, pos));
			if (!v) {
				if (pos < HC_BUCKET_SLOTS) {
					free1++;
					if (empty1 < 0)
						empty1 = (int)pos;
				} else {
					free2++;
					if (empty2 < 0)
						empty2 = (int)pos;
				}
				continue;
			}
			if (tag_eq(v, tag) && hc_key_eq(hc_entry_at(c, slot_ref(v)), key, klen)) {
				found = (int)pos;
				fv = v;
				break;
			}
		}
		if (found >= 0) {
			mine = (unsigned)found;
			if (uatomic_cmpxchg(hc_pos(c, b1, b2, mine), fv, nv) != fv)
				continue;
			account_unlink(c, t, slot_ref(fv), HC_UNLINK_REPLACE);
			hc_retire(c, t, slot_ref(fv), true);
		} else if (empty1 >= 0 || empty2 >= 0) {
			/*
			 * Keep b1 (one line per lookup) unless it is nearly full
			 * and b2 has more room: the second choice spreads load
			 * only where it is needed.
			 */
			int empty =
				(empty1 >= 0 && (free1 > 2 || free1 >= free2)) ? empty1 : empty2;
			mine = (unsigned)empty;
			if (uatomic_cmpxchg(hc_pos(c, b1, b2, mine), 0, nv) != 0)
				continue;
		} else {
			mine = choose_victim(c, b1, b2);
			uint64_t *p = hc_pos(c, b1, b2, mine);
			uint64_t vv = CMM_LOAD_SHARED(*p);
			if (uatomic_cmpxchg(p, vv, nv) != vv)
				continue;
			if (vv) {
				account_unlink(c, t, slot_ref(vv), HC_UNLINK_EVICT);
				hc_ctr_add(&t->ts->c.misc[HC_MISC_INDEX_EVICTIONS], 1);
				hc_retire(c, t, slot_ref(vv), true);
			}
		}
		break;
	}
	account_link(c, t, off);
	struct hc_entry *e = hc_entry_at(c, off);
	uatomic_cmpxchg(&e->state, HC_BS_MAKE(HC_BS_ALLOC, HC_OWNER(t->slot, t->gen)),
			HC_BS_MAKE(HC_BS_LIVE, 0));

	/* duplicates from concurrent inserts: the lower position wins */
	for (unsigned pos = 0; pos < 2 * HC_BUCKET_SLOTS; pos++) {
		if (pos == mine)
			continue;
		uint64_t *p = hc_pos(c, b1, b2, pos);
		uint64_t v = CMM_LOAD_SHARED(*p);
		if (!v || !tag_eq(v, tag) || !hc_key_eq(hc_entry_at(c, slot_ref(v)), key, klen))
			continue;
		if (pos < mine) {
			take_out(c, t, hc_pos(c, b1, b2, mine), nv, HC_UNLINK_REPLACE);
			break;
		}
		take_out(c, t, p, v, HC_UNLINK_REPLACE);
	}
}

static int check_key(const void *key, size_t klen)
{
	if (HC_UNLIKELY(!key || klen == 0))
		return HC_E_INVAL;
	if (HC_UNLIKELY(klen > HC_KEY_MAX))
		return HC_E_TOOBIG;
	return 0;
}

int hc_set_ex(struct hc_cache *c, const void *key, size_t klen, const void *val, size_t vlen,
	      const struct hc_set_opts *o)
{
	static const struct hc_set_opts none;
	int rc = hc_writable(c);
	if (rc)
		return rc;
	if ((rc = check_key(key, klen)))
		return rc;
	if (!val && vlen)
		return HC_E_INVAL;
	if (vlen > c->max_value)
		return HC_E_TOOBIG;
	if (!o)
		o = &none;
	if (o->flags & ~(uint32_t)(HC_ENTRY_NEGATIVE | HC_SET_WRITE_THROUGH))
		return HC_E_INVAL;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return rc;

	int cls = hc_class_of(c, HC_ENTRY_HDR + klen + vlen);
	if (cls < 0)
		return cls;
	uint64_t fresh = HC_NEVER;
	if (o->ttl_ms) {
		fresh = hc_now_ms() + o->ttl_ms;
		if (fresh >= HC_NEVER)
			fresh = HC_NEVER - 1;
	}
	uint64_t expiry = (fresh << 24) | hc_stale_encode(o->stale_ms);
	uint64_t compute = o->compute_ms > 0xffff ? 0xffff : o->compute_ms;
	uint64_t etag = (hc_hash64(val, vlen, HC_SEED_VALUE) & ~UINT64_C(0xffff)) | compute;
	uint64_t h = key_hash(c, key, klen);
	uint32_t ent = hc_entity_id(c, t, key, klen);

	uint64_t off = hc_alloc(c, t, (uint32_t)cls, &rc);
	if (HC_UNLIKELY(!off)) {
		hc_count(t, ent, HC_LAYER_L1, HC_CTR_SET_FAILS);
		return rc;
	}
	struct hc_entry *e = hc_entry_at(c, off);
	e->expiry = expiry;
	e->vlen = (uint32_t)vlen;
	e->klen = (uint8_t)klen;
	e->visited = 0;
	e->aux = HC_AUX_MAKE(hc_ttl_encode(o->ttl_ms), o->flags & HC_ENTRY_NEGATIVE);
	e->etag = etag;
	memcpy(e + 1, key, klen);
	if (vlen)
		memcpy((uint8_t *)(e + 1) + klen, val, vlen);
	cmm_smp_wmb(); /* the entry is complete before its slot word is */
	hc_read_lock(c, t);
	publish(c, t, off, h, key, klen);
	hc_read_unlock(t);
	hc_count(t, ent, HC_LAYER_L1, HC_CTR_SETS);
	if ((o->flags & HC_SET_WRITE_THROUGH) && CMM_LOAD_SHARED(c->hdr->agent_pid))
		return hc_ring_push(c, HC_REQ_SET_THROUGH, key, klen, o->ttl_ms, 0, 0, true);
	return 0;
}

int hc_set(struct hc_cache *c, const void *key, size_t klen, const void *val, size_t vlen,
	   uint32_t ttl_ms)
{
	struct hc_set_opts o = {.ttl_ms = ttl_ms};
	return hc_set_ex(c, key, klen, val, vlen, &o);
}

/* The entry of @key in the index, or NULL.  Caller is in a section. */
static inline struct hc_entry *lookup(const struct hc_cache *c, uint64_t h, const void *key,
				      size_t klen)
{
	const uint64_t tag = hc_tag(h);
	const uint32_t b1 = hc_bucket1(c, h);
	const struct hc_bucket *b = &c->index[b1];
	for (unsigned i = 0; i < HC_BUCKET_SLOTS; i++) {
		uint64_t v = CMM_LOAD_SHARED(b->slot[i]);
		if (v && tag_eq(v, tag)) {
			struct hc_entry *e = hc_entry_at(c, slot_ref(v));
			if (hc_key_eq(e, key, klen))
				return e;
		}
	}
	b = &c->index[hc_bucket2(c, h, b1)];
	for (unsigned i = 0; i < HC_BUCKET_SLOTS; i++) {
		uint64_t v = CMM_LOAD_SHARED(b->slot[i]);
		if (v && tag_eq(v, tag)) {
			struct hc_entry *e = hc_entry_at(c, slot_ref(v));
			if (hc_key_eq(e, key, klen))
				return e;
		}
	}
	return NULL;
}

/* @x: the expiry word as the caller loaded it, once (hc_mark_stale may change it) */
static void fill_meta(const struct hc_entry *e, uint64_t x, uint64_t now, struct hc_meta *m)
{
	uint64_t fu = HC_EXP_FRESH(x);
	memset(m, 0, sizeof(*m));
	m->etag = HC_ETAG_HASH(e->etag);
	m->compute_ms = HC_ETAG_COMPUTE(e->etag);
	m->flags = HC_AUX_FLAGS(e->aux);
	m->layer = HC_LAYER_L1;
	m->source = HC_SRC_L1;
	if (fu == HC_NEVER) {
		m->ttl_left_ms = INT64_MAX;
		m->stale_left_ms = INT64_MAX;
		m->age_ms = -1;
	} else {
		m->ttl_left_ms = (int64_t)fu - (int64_t)now;
		m->stale_left_ms = (int64_t)hc_stale_until(x) - (int64_t)now;
		m->stale = m->ttl_left_ms <= 0;
		int64_t age = (int64_t)hc_ttl_decode(HC_AUX_TTL(e->aux)) - m->ttl_left_ms;
		m->age_ms = age < 0 ? 0 : age;
	}
}

/*
 * The read path shared by hc_get_ex and hc_view_get: look up, check
 * freshness, and leave the section open on a hit (the caller copies or
 * hands out a view, then unlocks).  Returns the entry or NULL (section
 * closed) with *rc set.
 */
static struct hc_entry *read_entry(struct hc_cache *c, struct hc_thread *t, const void *key,
				   size_t klen, unsigned flags, struct hc_meta *meta, uint32_t *ent,
				   int *rc)
{
	uint64_t h = key_hash(c, key, klen);
	*ent = hc_entity_id(c, t, key, klen);
	hc_read_lock(c, t);
	struct hc_entry *e = lookup(c, h, key, klen);
	if (!e)
		goto miss;
	uint64_t x = CMM_LOAD_SHARED(e->expiry);
	uint64_t fu = HC_EXP_FRESH(x);
	uint64_t now = 0;
	int ctr = HC_CTR_HITS;
	if (fu != HC_NEVER) {
		/*
		 * The precise clock: CLOCK_MONOTONIC_COARSE costs a third as much
		 * but lags by 2-7 ms here and by 27 ms under load, which would
		 * serve expired entries.
		 */
		now = hc_now_ms();
		if (now >= fu) {
			if (!(flags & HC_GET_STALE) || now >= hc_stale_until(x))
				goto miss;
			ctr = HC_CTR_STALE_HITS;
		}
	}
	if (HC_AUX_FLAGS(e->aux) & HC_ENTRY_NEGATIVE) {
		if (!(flags & HC_GET_NEGATIVE))
			goto miss;
		ctr = HC_CTR_NEGATIVE_HITS;
	}
	if (!CMM_LOAD_SHARED(e->visited))
		CMM_STORE_SHARED(e->visited, 1);
	if (meta)
		fill_meta(e, x, now, meta); /* now: unused when the entry never expires */
	hc_count(t, *ent, HC_LAYER_L1, HC_CTR_HITS);
	if (ctr != HC_CTR_HITS)
		hc_count(t, *ent, HC_LAYER_L1, ctr);
	*rc = 0;
	return e;
miss:
	hc_read_unlock(t);
	hc_count(t, *ent, HC_LAYER_L1, HC_CTR_MISSES);
	*rc = HC_E_NOTFOUND;
	return NULL;
}

/* hc_get_ex for a caller that has its thread record; *ent gets the key's entity. */
int hc_read_copy(struct hc_cache *c, struct hc_thread *t, const void *key, size_t klen, void *buf,
		 size_t cap, size_t *vlen, struct hc_meta *meta, unsigned flags, uint32_t *ent)
{
	int rc;
	struct hc_entry *e = read_entry(c, t, key, klen, flags, meta, ent, &rc);
	if (!e)
		return rc;
	size_t n = e->vlen;
	if (vlen)
		*vlen = n;
	if (n > cap || (n && !buf))
		rc = HC_E_TOOSMALL;
	else if (n)
		memcpy(buf, hc_entry_val(e), n);
	hc_read_unlock(t);
	return rc;
}

int hc_get_ex(struct hc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
	      struct hc_meta *meta, unsigned flags)
{
	int rc = check_key(key, klen);
	if (rc)
		return rc;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (HC_UNLIKELY(!t))
		return rc;
	uint32_t ent;
	return hc_read_copy(c, t, key, klen, buf, cap, vlen, meta, flags, &ent);
}

int hc_get(struct hc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
	return hc_get_ex(c, key, klen, buf, cap, vlen, NULL, 0);
}

int hc_view_get(struct hc_cache *c, const void *key, size_t klen, struct hc_view *v)
{
	int rc = check_key(key, klen);
	if (rc)
		return rc;
	if (!v)
		return HC_E_INVAL;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return rc;
	uint32_t ent;
	struct hc_entry *e = read_entry(c, t, key, klen, 0, &v->meta, &ent, &rc);
	if (!e) {
		v->data = NULL;
		v->len = 0;
		v->priv = NULL;
		return rc;
	}
	v->data = hc_entry_val(e);
	v->len = e->vlen;
	v->priv = t;
	return 0;
}

void hc_view_release(struct hc_cache *c, struct hc_view *v)
{
	(void)c;
	if (!v || !v->priv)
		return;
	hc_read_unlock(v->priv);
	v->priv = NULL;
	v->data = NULL;
}

int hc_del(struct hc_cache *c, const void *key, size_t klen)
{
	int rc = hc_writable(c);
	if (rc)
		return rc;
	if ((rc = check_key(key, klen)))
		return rc;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return rc;
	uint64_t h = key_hash(c, key, klen);
	uint64_t tag = hc_tag(h);
	uint32_t b1 = hc_bucket1(c, h), b2 = hc_bucket2(c, h, b1);
	uint32_t ent = hc_entity_id(c, t, key, klen);
	int removed = 0;

	hc_read_lock(c, t);
	for (unsigned pos = 0; pos < 2 * HC_BUCKET_SLOTS; pos++) {
		uint64_t *p = hc_pos(c, b1, b2, pos);
		uint64_t v = CMM_LOAD_SHARED(*p);
		if (v && tag_eq(v, tag) && hc_key_eq(hc_entry_at(c, slot_ref(v)), key, klen))
			removed += take_out(c, t, p, v, HC_UNLINK_DELETE);
	}
	hc_read_unlock(t);
	if (!removed)
		return HC_E_NOTFOUND;
	hc_count(t, ent, HC_LAYER_L1, HC_CTR_DELETES);
	return 0;
}

int64_t hc_flush(struct hc_cache *c)
{
	int rc;
	struct hc_thread *t = hc_writer(c, &rc);
	if (!t)
		return rc;
	int64_t n = 0;
	for (uint32_t b = 0; b < c->nbuckets; b++) {
		hc_read_lock(c, t);
		for (unsigned i = 0; i < HC_BUCKET_SLOTS; i++) {
			uint64_t *p = &c->index[b].slot[i];
			uint64_t v = CMM_LOAD_SHARED(*p);
			if (v && hc_ref_class(c, slot_ref(v)) >= 0 &&
			    take_out(c, t, p, v, HC_UNLINK_DELETE))
				n++;
		}
		hc_read_unlock(t);
	}
	return n;
}

/*
 * Mark every fresh entry stale now: its fresh-until becomes the present and
 * its stale window stays, so hc_get misses it, while hc_get_or_load serves
 * it within its stale window as one refresh per key runs (or answers a
 * failed load with it).  The expiry word is the only field of a published
 * entry that ever changes, and only by CAS towards earlier; readers load it
 * once per lookup, so a reader sees the entry fresh or stale, never torn.
 */
int64_t hc_mark_stale(struct hc_cache *c)
{
	int rc;
	struct hc_thread *t = hc_writer(c, &rc);
	if (!t)
		return rc;
	const uint64_t now = hc_now_ms();
	int64_t n = 0;
	for (uint32_t b = 0; b < c->nbuckets; b++) {
		hc_read_lock(c, t);
		for (unsigned i = 0; i < HC_BUCKET_SLOTS; i++) {
			uint64_t v = CMM_LOAD_SHARED(c->index[b].slot[i]);
			if (!v || hc_ref_class(c, slot_ref(v)) < 0)
				continue;
			struct hc_entry *e = hc_entry_at(c, slot_ref(v));
			uint64_t x = CMM_LOAD_SHARED(e->expiry);
			while (HC_EXP_FRESH(x) > now) {
				uint64_t y = uatomic_cmpxchg(&e->expiry, x,
							     (now << 24) | HC_EXP_STALE(x));
				if (y == x) {
					n++;
					break;
				}
				x = y;
			}
		}
		hc_read_unlock(t);
	}
	return n;
}

/*
 * A bucket's entries, copied out of the segment so that the scan callback
 * runs outside any read-side section and may block (write to a pipe, say)
 * without holding back reclamation for the whole host.
 */
struct scan_copy {
	uint8_t *buf;
	size_t cap, used;
	size_t at[HC_BUCKET_SLOTS];
	unsigned n;
};

/* Append the entry at @e (@klen, @vlen already bounds-checked). */
static int scan_append(struct scan_copy *sc, const struct hc_entry *e, uint32_t klen, uint32_t vlen)
{
	size_t need = HC_ENTRY_HDR + (size_t)klen + vlen;
	size_t room = (need + 7) & ~(size_t)7; /* the next copy's header stays aligned */
	if (sc->used + room > sc->cap) {
		size_t cap = sc->cap ? sc->cap : 4096;
		while (cap < sc->used + room)
			cap *= 2;
		uint8_t *nb = realloc(sc->buf, cap);
		if (!nb)
			return -ENOMEM;
		sc->buf = nb;
		sc->cap = cap;
	}
	memcpy(sc->buf + sc->used, e, need);
	/* the copy's own header carries the lengths that were checked */
	struct hc_entry *copy = (struct hc_entry *)(sc->buf + sc->used);
	copy->klen = (uint8_t)klen;
	copy->vlen = vlen;
	sc->at[sc->n++] = sc->used;
	sc->used += room;
	return 0;
}

/*
 * Copy bucket @b.  With a thread slot the copy is made inside one short
 * read-side section.  A read-only handle has no slot: each entry is copied
 * and then checked (its slot still points at it, it is still LIVE, the
 * value matches its content hash), which a block reused during the copy
 * fails.
 */
static int scan_bucket(struct hc_cache *c, struct hc_thread *t, uint32_t b, struct scan_copy *sc)
{
	int rc = 0;
	sc->used = 0;
	sc->n = 0;
	if (t)
		hc_read_lock(c, t);
	for (unsigned i = 0; i < HC_BUCKET_SLOTS && rc == 0; i++) {
		const uint64_t *p = &c->index[b].slot[i];
		uint64_t v = CMM_LOAD_SHARED(*p);
		if (!v)
			continue;
		const struct hc_entry *e = hc_entry_at(c, slot_ref(v));
		if (!hc_entry_fits(c, slot_ref(v), e))
			continue;
		uint32_t klen = CMM_LOAD_SHARED(e->klen), vlen = CMM_LOAD_SHARED(e->vlen);
		if (klen < 1 || vlen > c->max_value)
			continue;
		size_t mark = sc->used;
		rc = scan_append(sc, e, klen, vlen);
		if (rc || t)
			continue;
		cmm_smp_rmb();
		const struct hc_entry *copy = (const struct hc_entry *)(sc->buf + mark);
		bool whole = CMM_LOAD_SHARED(*p) == v &&
			     HC_BS_KIND(CMM_LOAD_SHARED(e->state)) == HC_BS_LIVE &&
			     (hc_hash64(hc_entry_val(copy), vlen, HC_SEED_VALUE) >> 16) ==
				     HC_ETAG_HASH(copy->etag);
		if (!whole) {
			sc->used = mark;
			sc->n--;
		}
	}
	if (t)
		hc_read_unlock(t);
	return rc;
}

int hc_scan(struct hc_cache *c, int (*fn)(void *ctx, const struct hc_item *it), void *ctx)
{
	int rc = hc_usable(c);
	if (rc)
		return rc;
	if (!fn)
		return HC_E_INVAL;
	struct hc_thread *t = NULL;
	if (!c->read_only && !(t = hc_thread_get(c, &rc)))
		return rc;
	struct scan_copy sc = {0};
	for (uint32_t b = 0; b < c->nbuckets && rc == 0; b++) {
		rc = scan_bucket(c, t, b, &sc);
		uint64_t now = hc_now_ms();
		for (unsigned i = 0; i < sc.n && rc == 0; i++) {
			const struct hc_entry *e = (const struct hc_entry *)(sc.buf + sc.at[i]);
			struct hc_item it = {
				.key = hc_entry_key(e),
				.klen = e->klen,
				.val = hc_entry_val(e),
				.vlen = e->vlen,
			};
			fill_meta(e, e->expiry, now, &it.meta); /* a private copy */
			rc = fn(ctx, &it);
		}
	}
	free(sc.buf);
	return rc;
}
