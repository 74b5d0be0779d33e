/*
 * stats.c - entities and the statistics snapshot.
 *
 * Counters live in the thread slots (layout.h: struct hc_slot_ctr), one
 * writer each, on cache lines no other thread writes: counting never
 * contends (the Varnish VSC pattern).  hc_stats() sums every slot plus the
 * totals that released and reaped slots were folded into.
 *
 * An entity is the prefix of a key before its first ':' ("product" for
 * "product:42"), as the labels of a per-entity hit-rate panel.  Names are
 * registered in a small table in the segment (open addressing, claimed by
 * CAS, never removed); each thread caches name -> id, so the hit path
 * pays one short hash and one compare.  Keys without a prefix count under
 * entity 0 (""); when the table is full, new names count under "~other".
 */
#include "internal.h"
#include "flight.h"

size_t hc_entity_of(const void *key, size_t klen)
{
	const char *k = key;
	size_t n = klen < HC_ENTITY_NAME_MAX + 1 ? klen : HC_ENTITY_NAME_MAX + 1;
	const char *colon = key ? memchr(k, ':', n) : NULL;
	return colon ? (size_t)(colon - k) : 0;
}

void hc_entities_init(struct hc_entity_rec *ents)
{
	ents[0].word = 1; /* "" */
	ents[0].len = 0;
	static const char other[] = "~other";
	memcpy(ents[HC_ENTITY_OTHER].name, other, sizeof(other) - 1);
	ents[HC_ENTITY_OTHER].len = sizeof(other) - 1;
	ents[HC_ENTITY_OTHER].word = 1;
}

/* Find or register the entity @name (@n bytes, hash @h). */
static uint32_t entity_lookup(struct hc_cache *c, const char *name, size_t n, uint64_t h)
{
	const uint32_t span = HC_MAX_ENTITIES - 2; /* ids 1 .. MAX-2 */
	const uint64_t ready = h | 1;
	uint32_t start = (uint32_t)(h % span);
	for (uint32_t j = 0; j < span; j++) {
		struct hc_entity_rec *r = &c->entities[1 + (start + j) % span];
		uint64_t w = CMM_LOAD_SHARED(r->word);
		if (w == 0 && !c->read_only) {
			if (uatomic_cmpxchg(&r->word, 0, HC_ENT_BUSY) == 0) {
				memcpy(r->name, name, n);
				r->len = (uint8_t)n;
				cmm_smp_wmb();
				uatomic_set(&r->word, ready);
				return (uint32_t)(r - c->entities);
			}
			w = CMM_LOAD_SHARED(r->word);
		}
		/* a name being written by another thread: wait a moment for it */
		for (int spin = 0; w == HC_ENT_BUSY && spin < 10000; spin++) {
			caa_cpu_relax();
			w = CMM_LOAD_SHARED(r->word);
		}
		if (w == ready && r->len == n && memcmp(r->name, name, n) == 0)
			return (uint32_t)(r - c->entities);
		if (w == 0)
			break; /* read-only handle: not registered */
	}
	return HC_ENTITY_OTHER;
}

static inline size_t first_colon(uint64_t w)
{
	const uint64_t ones = UINT64_C(0x0101010101010101);
	uint64_t x = w ^ (ones * ':'); /* a zero byte where the key has ':' */
	uint64_t hit = (x - ones) & ~x & (ones << 7);
	return hit ? (size_t)(__builtin_ctzll(hit) >> 3) : 8;
}

/*
 * Index of the first ':' in the first 32 bytes of @key, or 0 (none, or
 * none wanted).  Eight bytes at a time with fixed-size loads: a
 * variable-length copy into a word costs a store-forwarding stall.
 */
static inline size_t prefix_len(const uint8_t *key, size_t klen)
{
	size_t lim = klen < HC_ENTITY_NAME_MAX + 1 ? klen : HC_ENTITY_NAME_MAX + 1;
	size_t i = 0;
	uint64_t w;
	for (; i + 8 <= lim; i += 8) {
		memcpy(&w, key + i, 8);
		size_t j = first_colon(w);
		if (j < 8)
			return i + j;
	}
	if (i == lim)
		return 0;
	size_t rest = lim - i;
	if (lim >= 8) {
		/* the last eight bytes, minus those already looked at */
		memcpy(&w, key + lim - 8, 8);
		w >>= 8 * (8 - rest);
		size_t j = first_colon(w);
		return j < rest ? i + j : 0;
	}
	for (size_t j = 0; j < rest; j++)
		if (key[i + j] == ':')
			return i + j;
	return 0;
}

/* The first @n <= 8 bytes of @key as a word (the rest zero). */
static inline uint64_t short_word(const uint8_t *key, size_t klen, size_t n)
{
	uint64_t w = 0;
	if (klen >= 8) {
		memcpy(&w, key, 8);
		return n == 8 ? w : w & ((UINT64_C(1) << (8 * n)) - 1);
	}
	for (size_t j = 0; j < n; j++)
		w |= (uint64_t)key[j] << (8 * j);
	return w;
}

/*
 * The entity of a key, on every operation.  Prefixes of up to eight bytes
 * (most: "user", "product", "session") are looked up by their bytes in the
 * thread's cache without hashing; longer ones by their hash.
 */
uint32_t hc_entity_id(struct hc_cache *c, struct hc_thread *t, const void *key, size_t klen)
{
	size_t n = prefix_len(key, klen);
	if (n == 0)
		return 0;
	uint64_t h = n <= 8 ? short_word(key, klen, n) : hc_hash64(key, n, HC_SEED_ENTITY);
	unsigned i = (unsigned)((h * UINT64_C(0x9e3779b97f4a7c15)) >> 60);
	if (HC_LIKELY(t->ent[i].h == h && t->ent[i].len == n))
		return t->ent[i].id;
	uint32_t id = entity_lookup(c, key, n, hc_hash64(key, n, HC_SEED_ENTITY));
	t->ent[i].h = h;
	t->ent[i].len = (uint32_t)n;
	t->ent[i].id = id;
	return id;
}

static void add_ctr(struct hc_stats *out, const struct hc_slot_ctr *s, uint64_t *ent_ctr)
{
	for (uint32_t e = 0; e < HC_MAX_ENTITIES; e++)
		for (int l = 0; l < HC_LAYER_COUNT; l++)
			for (int k = 0; k < HC_CTR_N; k++)
				ent_ctr[(e * HC_LAYER_COUNT + l) * HC_CTR_N + k] +=
					CMM_LOAD_SHARED(s->ctr[e][l][k]);
	for (uint32_t k = 0; k < HC_MAX_CLASSES; k++) {
		out->cls[k].items += (uint64_t)CMM_LOAD_SHARED(s->class_items[k]);
		out->cls[k].bytes += (uint64_t)CMM_LOAD_SHARED(s->class_bytes[k]);
	}
	out->reclaim_waits += CMM_LOAD_SHARED(s->misc[HC_MISC_RECLAIM_WAITS]);
	out->reclaim_stalls += CMM_LOAD_SHARED(s->misc[HC_MISC_RECLAIM_STALLS]);
	out->slots_reaped += CMM_LOAD_SHARED(s->misc[HC_MISC_SLOTS_REAPED]);
	out->blocks_recovered += CMM_LOAD_SHARED(s->misc[HC_MISC_BLOCKS_RECOVERED]);
	out->slab_moves += CMM_LOAD_SHARED(s->misc[HC_MISC_SLAB_MOVES]);
	out->index_evictions += CMM_LOAD_SHARED(s->misc[HC_MISC_INDEX_EVICTIONS]);
}

static void agent_stats(const struct hc_cache *c, struct hc_agent_stats *o)
{
	const struct hc_agent_rec *a = c->agent;
	o->pid = CMM_LOAD_SHARED(c->hdr->agent_pid);
	uint64_t beat = CMM_LOAD_SHARED(c->hdr->agent_heartbeat_ms);
	o->heartbeat_age_ms = beat ? (int64_t)(hc_now_ms() - beat) : -1;
	o->alive = hc_agent_alive(c);
	o->redis_state = CMM_LOAD_SHARED(a->redis_state);
	o->ring_size = HC_RING_SLOTS;
	uint64_t tail = CMM_LOAD_SHARED(a->tail), head = CMM_LOAD_SHARED(a->head);
	o->ring_depth = tail > head ? tail - head : 0;
	o->ring_drops = CMM_LOAD_SHARED(a->drops);
	o->l2_skipped = CMM_LOAD_SHARED(a->l2_skipped);
	o->ring_skipped = CMM_LOAD_SHARED(a->ring_skipped);
	o->l2_timeouts = CMM_LOAD_SHARED(a->l2_timeouts);
	for (int k = 0; k < HC_AG_N; k++)
		o->ctr[k] = CMM_LOAD_SHARED(a->ctr[k]);
	for (int b = 0; b < HC_HIST_N; b++)
		o->l2_hist[b] = CMM_LOAD_SHARED(a->l2_hist[b]);
}

/* struct hc_load_stats field k, in HC_LD_* order (the histogram last) */
static uint64_t *load_field(struct hc_load_stats *l, int k)
{
	return (uint64_t *)l + k;
}
_Static_assert(sizeof(struct hc_load_stats) == HC_LD_N * sizeof(uint64_t), "load stats match");
_Static_assert(offsetof(struct hc_load_stats, load_hist) == HC_LD_HIST * sizeof(uint64_t),
	       "histogram last");

/* struct hc_counters field k, in HC_CTR_* order */
static uint64_t *ctr_field(struct hc_counters *c, int k)
{
	return (uint64_t *)c + k;
}
_Static_assert(sizeof(struct hc_counters) == HC_CTR_N * sizeof(uint64_t), "counters match");

int hc_stats(struct hc_cache *c, struct hc_stats *out)
{
	int rc = hc_usable(c);
	if (rc)
		return rc;
	if (!out)
		return HC_E_INVAL;
	enum { NCTR = HC_MAX_ENTITIES * HC_LAYER_COUNT * HC_CTR_N };
	static __thread uint64_t ent_ctr[NCTR];
	static __thread uint64_t ent_load[HC_MAX_ENTITIES * HC_LD_N];
	for (uint32_t e = 0; e < HC_MAX_ENTITIES; e++)
		for (int k = 0; k < HC_LD_N; k++)
			ent_load[e * HC_LD_N + k] = CMM_LOAD_SHARED(c->loadctr->load[e][k]);

	/* a slot being folded into the totals would be counted twice or not at all */
	for (int attempt = 0; attempt < 4; attempt++) {
		uint64_t seq = CMM_LOAD_SHARED(c->hdr->totals_seq);
		memset(out, 0, sizeof(*out));
		memset(ent_ctr, 0, sizeof(ent_ctr));
		cmm_smp_rmb();
		add_ctr(out, c->totals, ent_ctr);
		uint32_t hwm = CMM_LOAD_SHARED(c->hdr->slots_hwm);
		for (uint32_t i = 0; i < hwm && i < c->max_threads; i++) {
			struct hc_tslot *ts = hc_slot_at(c, i);
			if (HC_TS_STATE(CMM_LOAD_SHARED(ts->owner)) == HC_TS_ACTIVE)
				out->threads_active++;
			add_ctr(out, &ts->c, ent_ctr);
		}
		cmm_smp_rmb();
		if (!(seq & 1) && CMM_LOAD_SHARED(c->hdr->totals_seq) == seq)
			break;
	}

	for (uint32_t e = 0; e < HC_MAX_ENTITIES; e++) {
		const struct hc_entity_rec *r = &c->entities[e];
		uint64_t w = CMM_LOAD_SHARED(r->word);
		if (w == 0 || w == HC_ENT_BUSY || r->len > HC_ENTITY_NAME_MAX)
			continue;
		uint64_t any = 0;
		for (int l = 0; l < HC_LAYER_COUNT; l++)
			for (int k = 0; k < HC_CTR_N; k++)
				any |= ent_ctr[(e * HC_LAYER_COUNT + l) * HC_CTR_N + k];
		for (int k = 0; k < HC_LD_N; k++)
			any |= ent_load[e * HC_LD_N + k];
		uint32_t beta = CMM_LOAD_SHARED(r->beta);
		if (!any && e != 0 && !beta)
			continue;
		struct hc_entity_stats *es = &out->entity[out->nentities++];
		memcpy(es->name, r->name, r->len);
		es->name[r->len] = '\0';
		for (int l = 0; l < HC_LAYER_COUNT; l++) {
			for (int k = 0; k < HC_CTR_N; k++) {
				uint64_t v = ent_ctr[(e * HC_LAYER_COUNT + l) * HC_CTR_N + k];
				*ctr_field(&es->layer[l], k) += v;
				*ctr_field(&out->layer[l], k) += v;
			}
		}
		for (int k = 0; k < HC_LD_N; k++) {
			uint64_t v = ent_load[e * HC_LD_N + k];
			*load_field(&es->load, k) += v;
			*load_field(&out->load, k) += v;
		}
		es->beta = beta == UINT32_MAX ? -1.0 : beta ? beta / 1000.0 : 1.0;
	}
	out->flights_total = c->nflights;
	out->flights_active = hc_flights_active(c);
	agent_stats(c, &out->agent);

	out->nclasses = c->nclasses;
	for (uint32_t k = 0; k < c->nclasses; k++) {
		out->cls[k].block_size = c->classes[k].block_size;
		out->cls[k].slabs = CMM_LOAD_SHARED(c->classes[k].nslabs);
		/* signed deltas summed; a process killed mid-update can leave them off by one */
		if ((int64_t)out->cls[k].items < 0)
			out->cls[k].items = 0;
		if ((int64_t)out->cls[k].bytes < 0)
			out->cls[k].bytes = 0;
		out->items += out->cls[k].items;
		out->bytes += out->cls[k].bytes;
	}
	out->segment_size = c->size;
	out->arena_size = (uint64_t)c->nslabs * c->slab_size;
	out->slab_size = c->slab_size;
	out->slabs_total = c->nslabs;
	for (uint32_t k = 0; k < c->nslabs; k++)
		if (HC_SLAB_KIND(CMM_LOAD_SHARED(c->slabtab[k])) != HC_SLAB_FREE)
			out->slabs_used++;
	out->index_slots = (uint64_t)c->nbuckets * HC_BUCKET_SLOTS;
	out->epoch = CMM_LOAD_SHARED(c->hdr->epoch);
	out->safe_epoch = CMM_LOAD_SHARED(c->hdr->safe_epoch);
	out->created_unix_ms = c->hdr->created_unix_ms;
	return 0;
}
