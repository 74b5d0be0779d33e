/*
 * check.c - the segment validator.
 *
 * hc_check_image() walks a copy of a segment (no mmap, no live process
 * assumed: the function is pure and can be fuzzed) and reports every
 * inconsistency it finds.  Every offset read from the image is
 * bounds-checked before it is followed, so a corrupt or hostile image
 * yields findings, never a crash.  hc_check() copies a live segment and
 * runs the same walk, then adds what only a live system can tell (slots
 * of dead processes).
 *
 * Findings come in two severities:
 *   ERROR  the segment breaks an invariant: a slot that points outside the
 *          arena or at a freed block, a value that does not match its
 *          content hash, a key in a bucket it does not hash to, ...
 *   WARN   a recoverable state that a process killed at the wrong moment
 *          leaves behind, and that the next sweep or reap repairs: an
 *          orphaned block, a live block already unlinked, a key indexed
 *          twice, counters off by the operations that were cut short.
 * A quiescent segment that was never damaged checks clean of errors;
 * after crash tests it may carry warnings until maintenance runs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* Findings of one kind reported in full before they are only counted. */
#define REPORT_LIMIT 20

struct walk {
	struct hc_cache c; /* bound to the image */
	const struct hc_header *h;
	void (*fn)(void *ctx, int severity, const char *msg);
	void *ctx;
	struct hc_check_result *res;
	unsigned reported[2];
};

__attribute__((format(printf, 3, 4))) static void finding(struct walk *w, int sev, const char *fmt,
							  ...)
{
	if (sev == HC_CHECK_ERROR)
		w->res->errors++;
	else
		w->res->warnings++;
	if (!w->fn)
		return;
	if (++w->reported[sev] > REPORT_LIMIT) {
		if (w->reported[sev] == REPORT_LIMIT + 1)
			w->fn(w->ctx, sev, "further findings of this severity are counted only");
		return;
	}
	char msg[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	w->fn(w->ctx, sev, msg);
}

static int check_header(struct walk *w, const uint8_t *img, size_t len)
{
	if (len < sizeof(struct hc_header)) {
		finding(w, HC_CHECK_ERROR, "image of %zu bytes is smaller than a header", len);
		return -1;
	}
	const struct hc_header *h = (const struct hc_header *)img;
	if (h->magic != HC_MAGIC) {
		finding(w, HC_CHECK_ERROR, "bad magic %016llx", (unsigned long long)h->magic);
		return -1;
	}
	if (h->abi_version != HC_ABI_VERSION || h->layout_hash != hc_layout_hash()) {
		finding(w, HC_CHECK_ERROR, "ABI %u layout %08x, expected %u %08x", h->abi_version,
			h->layout_hash, HC_ABI_VERSION, hc_layout_hash());
		return -1;
	}
	if (h->init_state != HC_INIT_READY)
		finding(w, HC_CHECK_ERROR, "initialisation state %u", h->init_state);
	char why[160];
	if (hc_geometry_check(h, len, why, sizeof(why)) != 0) {
		finding(w, HC_CHECK_ERROR, "geometry: %s", why);
		return -1;
	}
	if (h->safe_epoch > h->epoch)
		finding(w, HC_CHECK_ERROR, "safe epoch %llu is ahead of the epoch %llu",
			(unsigned long long)h->safe_epoch, (unsigned long long)h->epoch);
	if (h->slots_hwm > h->max_threads)
		finding(w, HC_CHECK_ERROR, "slot high-water mark %u beyond %u slots", h->slots_hwm,
			h->max_threads);
	w->h = h;
	hc_bind(&w->c, (uint8_t *)img, len);
	return 0;
}

static int check_classes(struct walk *w)
{
	const struct hc_cache *c = &w->c;
	uint32_t prev = 0;
	for (uint32_t k = 0; k < c->nclasses; k++) {
		const struct hc_class *cl = &c->classes[k];
		if (cl->block_size < 40 || cl->block_size % 8 || cl->block_size <= prev ||
		    cl->block_size > c->slab_size ||
		    cl->per_slab != c->slab_size / cl->block_size) {
			finding(w, HC_CHECK_ERROR,
				"class %u: block size %u, %u per slab: inconsistent", k,
				cl->block_size, cl->per_slab);
			return -1;
		}
		prev = cl->block_size;
		if ((cl->hand >> 32) > c->nslabs)
			finding(w, HC_CHECK_ERROR, "class %u: hand at slab %llu of %u", k,
				(unsigned long long)(cl->hand >> 32), c->nslabs);
	}
	if (prev < (uint64_t)HC_ENTRY_HDR + HC_KEY_MAX + c->max_value) {
		finding(w, HC_CHECK_ERROR, "largest class %u cannot hold a %u-byte value", prev,
			c->max_value);
		return -1;
	}
	return 0;
}

static void check_entities(struct walk *w)
{
	for (uint32_t i = 0; i < HC_MAX_ENTITIES; i++) {
		const struct hc_entity_rec *r = &w->c.entities[i];
		if (r->word == 0)
			continue;
		if (r->word == HC_ENT_BUSY) {
			finding(w, HC_CHECK_WARN, "entity %u was left half-registered", i);
			continue;
		}
		if (r->len > HC_ENTITY_NAME_MAX || memchr(r->name, ':', r->len)) {
			finding(w, HC_CHECK_ERROR, "entity %u: malformed name (length %u)", i,
				r->len);
			continue;
		}
	}
}

static void check_slots(struct walk *w)
{
	const struct hc_cache *c = &w->c;
	for (uint32_t i = 0; i < c->max_threads; i++) {
		const struct hc_tslot *ts = hc_slot_at(c, i);
		uint64_t o = ts->owner;
		switch (HC_TS_STATE(o)) {
		case HC_TS_FREE:
			if (ts->epoch != 0)
				finding(w, HC_CHECK_ERROR, "free thread slot %u holds epoch %llu",
					i, (unsigned long long)ts->epoch);
			break;
		case HC_TS_ACTIVE:
		case HC_TS_REAPING:
			if (HC_TS_PID(o) <= 0)
				finding(w, HC_CHECK_ERROR, "thread slot %u: pid %d", i,
					HC_TS_PID(o));
			if (ts->epoch > w->h->epoch)
				finding(w, HC_CHECK_ERROR,
					"thread slot %u: epoch %llu ahead of %llu", i,
					(unsigned long long)ts->epoch,
					(unsigned long long)w->h->epoch);
			if (i >= w->h->slots_hwm)
				finding(w, HC_CHECK_ERROR,
					"thread slot %u in use above the mark %u", i,
					w->h->slots_hwm);
			if (HC_TS_STATE(o) == HC_TS_REAPING)
				finding(w, HC_CHECK_WARN, "thread slot %u is being reaped", i);
			break;
		default:
			finding(w, HC_CHECK_ERROR, "thread slot %u: owner word %016llx", i,
				(unsigned long long)o);
		}
	}
}

/* Is an ALLOC owner (slot, generation) still the slot's current holder? */
static bool owner_current(const struct hc_cache *c, uint64_t p)
{
	uint32_t slot = HC_OWNER_SLOT(p);
	if (slot >= c->max_threads)
		return false;
	uint64_t o = hc_slot_at(c, slot)->owner;
	return HC_TS_STATE(o) == HC_TS_ACTIVE && HC_TS_GEN(o) == HC_OWNER_GENOF(p);
}

/*
 * Flight records: an owner must name a thread slot; one whose thread is gone
 * is a warning (a waiter or maintenance frees it).  A free record's lease
 * and outcome are left as they were: they name their flight.
 */
static void check_flights(struct walk *w)
{
	const struct hc_cache *c = &w->c;
	for (uint32_t i = 0; i < c->nflights; i++) {
		uint64_t word = c->flights[i].word;
		if (!word)
			continue;
		uint64_t p = word & 0xffffffffu;
		if (HC_OWNER_SLOT(p) >= c->max_threads)
			finding(w, HC_CHECK_ERROR, "flight %u: owner slot %u beyond %u slots", i,
				HC_OWNER_SLOT(p), c->max_threads);
		else if (!owner_current(c, p))
			finding(w, HC_CHECK_WARN, "flight %u: its owner (slot %u) is gone", i,
				HC_OWNER_SLOT(p));
	}
}

/*
 * The request ring: head <= tail <= head + slots, and every slot's ticket
 * is what its position says: the positions between head and tail hold a
 * claimed (ticket p) or published (p + 1) request, the others are free for
 * the position of the next lap that maps to them.
 */
static void check_ring(struct walk *w)
{
	const struct hc_cache *c = &w->c;
	uint64_t head = c->agent->head, tail = c->agent->tail;
	if (tail < head || tail - head > HC_RING_SLOTS) {
		finding(w, HC_CHECK_ERROR, "request ring: head %llu, tail %llu",
			(unsigned long long)head, (unsigned long long)tail);
		return;
	}
	for (uint64_t p = head; p < head + HC_RING_SLOTS; p++) {
		uint64_t seq = c->ring[p % HC_RING_SLOTS].seq;
		if (p < tail ? seq != p && seq != p + 1 : seq != p)
			finding(w, HC_CHECK_ERROR,
				"request ring slot %llu: ticket %llu at position %llu",
				(unsigned long long)(p % HC_RING_SLOTS), (unsigned long long)seq,
				(unsigned long long)p);
		else if (p < tail && seq == p)
			finding(w, HC_CHECK_WARN, "request ring position %llu is being written",
				(unsigned long long)p);
	}
}

/* Validate a published entry; false (with a finding) if it is malformed. */
static bool check_entry(struct walk *w, uint64_t off, const struct hc_entry *e)
{
	if (!hc_entry_fits(&w->c, off, e)) {
		finding(w, HC_CHECK_ERROR,
			"entry at %llu: key %u + value %u bytes do not fit its block",
			(unsigned long long)off, e->klen, e->vlen);
		return false;
	}
	if (HC_AUX_FLAGS(e->aux) & ~(uint32_t)HC_ENTRY_NEGATIVE) {
		finding(w, HC_CHECK_ERROR, "entry at %llu: unknown flags %#x",
			(unsigned long long)off, HC_AUX_FLAGS(e->aux));
		return false;
	}
	uint64_t content = hc_hash64(hc_entry_val(e), e->vlen, HC_SEED_VALUE) >> 16;
	if (content != HC_ETAG_HASH(e->etag)) {
		finding(w, HC_CHECK_ERROR, "entry at %llu: value does not match its content hash",
			(unsigned long long)off);
		return false;
	}
	return true;
}

static void check_blocks(struct walk *w, int64_t *live_per_class)
{
	const struct hc_cache *c = &w->c;
	uint32_t per_class[HC_MAX_CLASSES] = {0};
	for (uint32_t s = 0; s < c->nslabs; s++) {
		uint64_t sw = c->slabtab[s];
		uint64_t kind = HC_SLAB_KIND(sw);
		if (kind == HC_SLAB_FREE)
			continue;
		if (HC_SLAB_CLASS(sw) >= c->nclasses) {
			finding(w, HC_CHECK_ERROR, "slab %u: class %u of %u", s, HC_SLAB_CLASS(sw),
				c->nclasses);
			continue;
		}
		if (kind != HC_SLAB_ACTIVE) {
			finding(w, HC_CHECK_WARN, "slab %u is being moved between classes%s", s,
				owner_current(c, HC_SLAB_OWNER(sw)) ? "" : " by a dead process");
			continue;
		}
		uint32_t cls = HC_SLAB_CLASS(sw);
		per_class[cls]++;
		for (uint32_t i = 0; i < c->classes[cls].per_slab; i++) {
			uint64_t off = hc_block_off(c, s, cls, i);
			const struct hc_entry *e = hc_entry_at(c, off);
			uint64_t st = e->state;
			uint64_t *slot;
			w->res->blocks++;
			switch (HC_BS_KIND(st)) {
			case HC_BS_FREE:
				w->res->blocks_free++;
				break;
			case HC_BS_ALLOC:
				w->res->blocks_alloc++;
				if (HC_OWNER_SLOT(HC_BS_PAYLOAD(st)) >= c->max_threads)
					finding(w, HC_CHECK_ERROR,
						"block at %llu: owner slot %u out of range",
						(unsigned long long)off,
						HC_OWNER_SLOT(HC_BS_PAYLOAD(st)));
				else if (!owner_current(c, HC_BS_PAYLOAD(st)))
					finding(w, HC_CHECK_WARN,
						"block at %llu was left by a dead writer "
						"(recovered by the next sweep)",
						(unsigned long long)off);
				break;
			case HC_BS_LIVE:
				w->res->blocks_live++;
				if (!check_entry(w, off, e))
					break;
				if (hc_find_slot(c, off, e, &slot) != 0)
					finding(w, HC_CHECK_WARN,
						"live block at %llu is no longer indexed (retired "
						"by the next sweep)",
						(unsigned long long)off);
				else
					live_per_class[cls]++;
				break;
			case HC_BS_RETIRED:
				w->res->blocks_retired++;
				if (HC_BS_PAYLOAD(st) > w->h->epoch)
					finding(w, HC_CHECK_ERROR,
						"block at %llu retired at future epoch %llu",
						(unsigned long long)off,
						(unsigned long long)HC_BS_PAYLOAD(st));
				break;
			}
		}
	}
	for (uint32_t k = 0; k < c->nclasses; k++)
		if (c->classes[k].nslabs != per_class[k])
			finding(w, HC_CHECK_WARN, "class %u counts %u slabs, the table has %u", k,
				c->classes[k].nslabs, per_class[k]);
}

struct keyref {
	uint64_t hash;
	uint64_t ref;
};

static int cmp_ref(const void *a, const void *b)
{
	const struct keyref *x = a, *y = b;
	return x->ref < y->ref ? -1 : x->ref > y->ref;
}
static int cmp_hash(const void *a, const void *b)
{
	const struct keyref *x = a, *y = b;
	return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int check_index(struct walk *w)
{
	const struct hc_cache *c = &w->c;
	uint64_t cap = (uint64_t)c->nbuckets * HC_BUCKET_SLOTS;
	struct keyref *kr = malloc(cap * sizeof(*kr));
	if (!kr)
		return -ENOMEM;
	uint64_t n = 0;
	for (uint32_t b = 0; b < c->nbuckets; b++) {
		for (unsigned i = 0; i < HC_BUCKET_SLOTS; i++) {
			uint64_t v = c->index[b].slot[i];
			if (!v)
				continue;
			uint64_t ref = v & HC_SLOT_REF_MASK;
			if (hc_ref_class(c, ref) < 0) {
				finding(w, HC_CHECK_ERROR,
					"bucket %u slot %u points at %llu: not a block of an "
					"active slab",
					b, i, (unsigned long long)ref);
				continue;
			}
			const struct hc_entry *e = hc_entry_at(c, ref);
			uint64_t kind = HC_BS_KIND(e->state);
			if (kind != HC_BS_LIVE && kind != HC_BS_ALLOC) {
				finding(w, HC_CHECK_ERROR, "bucket %u slot %u points at a %s block",
					b, i, kind == HC_BS_FREE ? "free" : "retired");
				continue;
			}
			if (!hc_entry_fits(c, ref, e)) {
				finding(w, HC_CHECK_ERROR, "bucket %u slot %u: malformed entry", b,
					i);
				continue;
			}
			uint64_t h = hc_hash64(hc_entry_key(e), e->klen, c->seed);
			uint32_t b1 = hc_bucket1(c, h), b2 = hc_bucket2(c, h, b1);
			if ((b != b1 && b != b2) || (v & ~HC_SLOT_REF_MASK) != hc_tag(h)) {
				finding(w, HC_CHECK_ERROR,
					"bucket %u slot %u: key does not hash here", b, i);
				continue;
			}
			if (kind == HC_BS_ALLOC && !owner_current(c, HC_BS_PAYLOAD(e->state)))
				finding(w, HC_CHECK_WARN,
					"bucket %u slot %u: entry published by a writer that died",
					b, i);
			kr[n++] = (struct keyref){.hash = h, .ref = ref};
		}
	}
	w->res->entries = n;
	qsort(kr, n, sizeof(*kr), cmp_ref);
	for (uint64_t i = 1; i < n; i++)
		if (kr[i].ref == kr[i - 1].ref)
			finding(w, HC_CHECK_ERROR, "block %llu is indexed twice",
				(unsigned long long)kr[i].ref);
	qsort(kr, n, sizeof(*kr), cmp_hash);
	for (uint64_t i = 1; i < n; i++) {
		if (kr[i].hash != kr[i - 1].hash || kr[i].ref == kr[i - 1].ref)
			continue;
		const struct hc_entry *a = hc_entry_at(c, kr[i].ref),
				      *b = hc_entry_at(c, kr[i - 1].ref);
		if (hc_key_eq(a, hc_entry_key(b), b->klen))
			finding(w, HC_CHECK_WARN,
				"a key is indexed twice (a writer died before resolving a "
				"concurrent insert)");
	}
	free(kr);
	return 0;
}

/* The counters of items per class against what the walk found. */
static void check_counters(struct walk *w, const int64_t *live_per_class)
{
	const struct hc_cache *c = &w->c;
	for (uint32_t k = 0; k < c->nclasses; k++) {
		/* summed modulo 2^64: counters of a corrupt image may be anything */
		uint64_t counted = (uint64_t)c->totals->class_items[k];
		for (uint32_t i = 0; i < c->max_threads; i++)
			counted += (uint64_t)hc_slot_at(c, i)->c.class_items[k];
		if ((int64_t)counted != live_per_class[k])
			finding(w, HC_CHECK_WARN,
				"class %u: counters say %lld items, the walk found %lld "
				"(operations cut short)",
				k, (long long)(int64_t)counted, (long long)live_per_class[k]);
	}
}

int hc_check_image(const void *image, size_t len,
		   void (*fn)(void *ctx, int severity, const char *msg), void *ctx,
		   struct hc_check_result *res)
{
	struct hc_check_result local;
	struct walk w = {.fn = fn, .ctx = ctx, .res = res ? res : &local};
	memset(w.res, 0, sizeof(*w.res));
	if (!image)
		return HC_E_INVAL;
	if (check_header(&w, image, len) == 0 && check_classes(&w) == 0) {
		int64_t live_per_class[HC_MAX_CLASSES] = {0};
		check_entities(&w);
		check_slots(&w);
		check_flights(&w);
		check_ring(&w);
		check_blocks(&w, live_per_class);
		int rc = check_index(&w);
		if (rc < 0)
			return rc;
		check_counters(&w, live_per_class);
	}
	return w.res->errors ? 1 : 0;
}

int hc_check(struct hc_cache *c, void (*fn)(void *ctx, int severity, const char *msg), void *ctx,
	     struct hc_check_result *res)
{
	int rc = hc_usable(c);
	if (rc)
		return rc;
	struct hc_check_result local;
	if (!res)
		res = &local;
	uint8_t *copy = malloc(c->size);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, c->base, c->size);
	rc = hc_check_image(copy, c->size, fn, ctx, res);
	free(copy);
	if (rc < 0)
		return rc;
	/* what only a live system can tell: slots whose process is gone */
	for (uint32_t i = 0; i < c->max_threads; i++) {
		const struct hc_tslot *ts = hc_slot_at(c, i);
		uint64_t o = CMM_LOAD_SHARED(ts->owner);
		if (HC_TS_STATE(o) == HC_TS_ACTIVE &&
		    !hc_pid_alive(HC_TS_PID(o), CMM_LOAD_SHARED(ts->start_time))) {
			res->warnings++;
			if (fn) {
				char msg[160];
				snprintf(msg, sizeof(msg),
					 "thread slot %u belongs to dead process %d (reaped by the "
					 "next grace period or 'readers --reap')",
					 i, HC_TS_PID(o));
				fn(ctx, HC_CHECK_WARN, msg);
			}
		}
	}
	return res->errors ? 1 : 0;
}
