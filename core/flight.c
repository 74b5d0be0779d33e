/*
 * flight.c - single-flight across processes: one load per key per host.
 *
 * A caller that misses takes the key's flight record (layout.h: struct
 * hc_flight) and becomes its owner, or finds it taken and waits.  Records
 * are found by the key hash: a key probes FLIGHT_PROBE consecutive records
 * from hash & (nflights - 1), joins one whose word carries its hash, or
 * takes the first free one.  Two callers that take different records for
 * one key (a record ahead of them was freed between their scans) settle it
 * by position, as the index does: the lower record wins, the other owner
 * ends its flight with FLIGHT_RETRY and its waiters start over.  A record
 * names the key by 32 bits of its hash only: a rare collision makes two
 * keys share a flight, which costs the second key a retry, never a wrong
 * value, because every waiter reads its own key from the cache after.
 *
 * Waiters sleep on the record's futex word (FUTEX_WAIT on the shared
 * mapping, so processes wake each other; liburcu's futex_async() is the
 * system call).  The owner ends a flight by storing the outcome, freeing
 * the word, bumping the futex word and waking every sleeper.  No waiter
 * polls the cache: each sleeps until the flight ends or CHECK_MS passes,
 * and on such a timeout one waiter per record (elected by CAS of
 * checked_ms) checks that the owner's process is alive.  A dead owner, or
 * one past its lease, loses the flight to the waiter that notices, by CAS
 * of the word: the takeover keeps the other waiters asleep on the same
 * record, now waiting for the new owner.
 */
#include <errno.h>
#include <limits.h>
#include <time.h>

#include <urcu/futex.h>

#include "internal.h"
#include "flight.h"

#define FLIGHT_PROBE 8
/* How long a waiter sleeps before it checks the owner's life, ms. */
#define CHECK_MS 20

static uint64_t flight_word(uint64_t h, const struct hc_thread *t)
{
	return (h & UINT64_C(0xffffffff00000000)) | HC_OWNER(t->slot, t->gen);
}

static bool same_key(uint64_t w, uint64_t h)
{
	return w && (w >> 32) == (h >> 32);
}

/* Start the lease of the owner of word @w. */
static void begin(struct hc_flight *f, uint64_t w, uint32_t lease_ms)
{
	uint64_t now = hc_now_ms();
	CMM_STORE_SHARED(f->started_ms, now);
	CMM_STORE_SHARED(f->lease, (w << 32) | (uint32_t)(now + lease_ms));
}

/*
 * Has the lease of the owner of word @w run out?  A lease names its owner,
 * so one left by an earlier flight, or not yet written by a new owner, is
 * not taken for this one's.  Leases are compared modulo 2^32 ms (49 days).
 */
static bool lease_over(const struct hc_flight *f, uint64_t w, uint64_t now)
{
	uint64_t l = CMM_LOAD_SHARED(f->lease);
	if ((l >> 32) != (w & 0xffffffffu))
		return false;
	return (int32_t)((uint32_t)now - (uint32_t)l) >= 0;
}

/* ms until the lease of the owner of @w ends; UINT32_MAX if unknown. */
static uint64_t lease_left(const struct hc_flight *f, uint64_t w, uint64_t now)
{
	uint64_t l = CMM_LOAD_SHARED(f->lease);
	if ((l >> 32) != (w & 0xffffffffu))
		return UINT32_MAX;
	int32_t d = (int32_t)((uint32_t)l - (uint32_t)now);
	return d > 0 ? (uint64_t)d : 0;
}

/*
 * Find or take the flight of hash @h.  With @join false only an owned
 * flight is returned (a refresh that finds one running does not wait).
 */
int hc_flight_enter(struct hc_cache *c, struct hc_thread *t, uint64_t h, bool join,
		    uint32_t lease_ms, struct hc_fl *fl)
{
	const uint32_t mask = c->nflights - 1;
	const uint64_t mine = flight_word(h, t);
	for (int round = 0; round < 4; round++) {
		uint32_t start = (uint32_t)h & mask;
		int free_at = -1;
		for (int i = 0; i < FLIGHT_PROBE; i++) {
			struct hc_flight *f = &c->flights[(start + (uint32_t)i) & mask];
			uint32_t seq = CMM_LOAD_SHARED(f->futex);
			cmm_smp_rmb();
			uint64_t w = CMM_LOAD_SHARED(f->word);
			if (same_key(w, h)) {
				if (!join)
					return HC_FL_BUSY;
				fl->f = f;
				fl->word = w;
				fl->seq = seq; /* the flight was on at seq: it ends at seq + 1 */
				return HC_FL_JOINED;
			}
			if (!w && free_at < 0)
				free_at = i;
		}
		if (free_at < 0)
			return HC_FL_FULL;
		struct hc_flight *f = &c->flights[(start + (uint32_t)free_at) & mask];
		if (uatomic_cmpxchg(&f->word, 0, mine) != 0)
			continue; /* taken meanwhile: look again */
		/* another record of this key ahead of ours: it wins */
		bool lost = false;
		for (int i = 0; i < FLIGHT_PROBE && !lost; i++) {
			struct hc_flight *g = &c->flights[(start + (uint32_t)i) & mask];
			lost = g != f && i < free_at && same_key(CMM_LOAD_SHARED(g->word), h);
		}
		fl->f = f;
		fl->word = mine;
		if (lost) {
			hc_flight_end(c, fl, HC_FLIGHT_RETRY);
			continue;
		}
		begin(f, mine, lease_ms);
		return HC_FL_OWNER;
	}
	return HC_FL_FULL;
}

/* End an owned flight with @result; its waiters wake. */
void hc_flight_end(struct hc_cache *c, struct hc_fl *fl, int result)
{
	struct hc_flight *f = fl->f;
	(void)c;
	uint32_t next = CMM_LOAD_SHARED(f->futex) + 1;
	CMM_STORE_SHARED(f->outcome, ((uint64_t)next << 32) | (uint32_t)result);
	if (uatomic_cmpxchg(&f->word, fl->word, 0) != fl->word)
		return; /* taken over meanwhile: the new owner ends it */
	uatomic_add(&f->futex, 1);
	if (uatomic_read(&f->waiters))
		futex_async((int32_t *)&f->futex, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	fl->f = NULL;
}

/* Is the thread that owns flight word @w gone (dead process, released slot)? */
static bool owner_gone(struct hc_cache *c, uint64_t w)
{
	uint64_t p = w & 0xffffffffu;
	uint32_t slot = HC_OWNER_SLOT(p);
	if (slot >= c->max_threads)
		return true;
	uint64_t sw = CMM_LOAD_SHARED(hc_slot_at(c, slot)->owner);
	if (HC_TS_STATE(sw) != HC_TS_ACTIVE || HC_TS_GEN(sw) != HC_OWNER_GENOF(p))
		return true;
	return hc_reap_slot(c, slot, sw) == 1;
}

/*
 * Wait for a joined flight to end.  Returns HC_FL_ENDED with *result set
 * (HC_FLIGHT_RETRY when the outcome is unknown: start over), or
 * HC_FL_OWNER when this caller took the flight over (it must load and end
 * it).  Counts takeovers and lease expiries under entity @ent.
 */
int hc_flight_wait(struct hc_cache *c, struct hc_thread *t, struct hc_fl *fl, uint64_t h,
		   uint32_t ent, uint32_t lease_ms, int *result)
{
	struct hc_flight *f = fl->f;
	for (;;) {
		uint32_t seq = CMM_LOAD_SHARED(f->futex);
		cmm_smp_mb();
		uint64_t w = CMM_LOAD_SHARED(f->word);
		if (w != fl->word) {
			if (same_key(w, h) && seq == fl->seq) {
				fl->word = w; /* taken over by another waiter: same flight */
				continue;
			}
			break; /* ended */
		}
		fl->seq = seq;
		uint64_t now = hc_now_ms();
		uint64_t left = lease_left(f, w, now);
		uint64_t nap = left < CHECK_MS ? left : CHECK_MS;
		if (nap > 0) {
			struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(nap * 1000000)};
			uatomic_inc(&f->waiters);
			int rc = futex_async((int32_t *)&f->futex, FUTEX_WAIT, (int32_t)seq, &ts,
					     NULL, 0);
			int err = errno;
			uatomic_dec(&f->waiters);
			if (rc == 0 || err != ETIMEDOUT)
				continue; /* woken (or the word moved on): look again */
			now = hc_now_ms();
		}
		/* the owner is late: is it alive?  One waiter checks per CHECK_MS. */
		int why = -1;
		if (lease_over(f, w, now)) {
			why = HC_LD_LEASE_EXPIRIES;
		} else {
			uint64_t last = CMM_LOAD_SHARED(f->checked_ms);
			if (now - last >= CHECK_MS &&
			    uatomic_cmpxchg(&f->checked_ms, last, now) == last && owner_gone(c, w))
				why = HC_LD_TAKEOVERS;
		}
		if (why < 0)
			continue;
		uint64_t mine = flight_word(h, t);
		if (uatomic_cmpxchg(&f->word, w, mine) != w)
			continue; /* ended or taken over meanwhile */
		hc_count_load(c, ent, why, 1);
		if (why == HC_LD_LEASE_EXPIRIES)
			hc_log(c, HC_LOG_WARN, "flight owner slot %u is past its lease: taken over",
			       HC_OWNER_SLOT(w & 0xffffffffu));
		fl->word = mine;
		begin(f, mine, lease_ms);
		return HC_FL_OWNER;
	}
	cmm_smp_rmb();
	uint64_t out = CMM_LOAD_SHARED(f->outcome);
	/* the outcome belongs to the flight we waited on if it ends the futex value we saw */
	*result = (uint32_t)(out >> 32) == fl->seq + 1 ? (int32_t)(uint32_t)out : HC_FLIGHT_RETRY;
	return HC_FL_ENDED;
}

/*
 * Free the flights of owners that are gone (maintenance, after dead slots
 * were reaped): a flight nobody waits on would otherwise keep its record
 * until the key is asked for again.  Returns how many were freed.
 */
uint32_t hc_flights_reclaim(struct hc_cache *c)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->nflights; i++) {
		struct hc_flight *f = &c->flights[i];
		uint64_t w = CMM_LOAD_SHARED(f->word);
		if (!w || !owner_gone(c, w))
			continue;
		struct hc_fl fl = {.f = f, .word = w};
		hc_flight_end(c, &fl, HC_FLIGHT_RETRY);
		n += fl.f == NULL;
	}
	return n;
}

/* Records loading now (for stats). */
uint32_t hc_flights_active(const struct hc_cache *c)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->nflights; i++)
		n += CMM_LOAD_SHARED(c->flights[i].word) != 0;
	return n;
}
