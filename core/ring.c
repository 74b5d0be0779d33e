/*
 * ring.c - the worker -> agent request ring and the agent's side of it.
 *
 * Workers queue requests (L2 lookups for flight owners, L2 writes,
 * invalidations) into a bounded ring in the segment; the host's one agent
 * takes them in batches and sends each batch to Redis as one pipeline.  The
 * ring is Vyukov's bounded queue (layout.h: struct hc_ring_slot): a producer
 * claims a position by CAS of tail and publishes its slot by CAS of the
 * slot's ticket, the agent consumes in order.  Nothing here blocks a
 * worker: a full ring or an absent agent makes the caller skip L2 at once,
 * counted.  A producer killed between its claim and its publication leaves
 * a hole that would stall the agent; the agent skips a slot that stays
 * unpublished for RING_STALL_MS, and the producer's late publication, if it
 * is only slow, then fails (its CAS finds the slot skipped) and it skips L2
 * like any other caller that could not queue.
 *
 * The agent sleeps on a futex doorbell when the ring is empty; a producer
 * rings it only when the agent says it is asleep, so the common case costs
 * no system call.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include <urcu/futex.h>

#include "internal.h"
#include "flight.h"

#define RING_STALL_MS 200
/* How much longer an owner waits for an answer the agent has claimed. */
#define ANSWER_GRACE_MS 100
/* An agent whose heartbeat is older than this is taken for gone. */
#define AGENT_STALE_MS 1000

bool hc_agent_alive(const struct hc_cache *c)
{
	const struct hc_header *h = c->hdr;
	if (!CMM_LOAD_SHARED(h->agent_pid))
		return false;
	uint64_t beat = CMM_LOAD_SHARED(h->agent_heartbeat_ms);
	return beat && hc_now_ms() - beat < AGENT_STALE_MS;
}

/*
 * Queue a request.  Returns 0, HC_E_AGAIN when no agent is alive (counted
 * as an L2 skip) or the ring is full (counted as a drop).
 */
int hc_ring_push(struct hc_cache *c, uint32_t op, const void *key, size_t klen, uint32_t ttl_ms,
		 uint32_t stale_ms, uint64_t token, bool bell)
{
	struct hc_agent_rec *a = c->agent;
	if (!hc_agent_alive(c)) {
		if (CMM_LOAD_SHARED(c->hdr->agent_pid))
			uatomic_add(&a->l2_skipped, 1); /* an agent is configured but gone */
		return HC_E_AGAIN;
	}
	uint64_t pos = CMM_LOAD_SHARED(a->tail);
	struct hc_ring_slot *s;
	for (;;) {
		s = &c->ring[pos % HC_RING_SLOTS];
		uint64_t seq = CMM_LOAD_SHARED(s->seq);
		int64_t d = (int64_t)(seq - pos);
		if (d == 0) {
			uint64_t seen = uatomic_cmpxchg(&a->tail, pos, pos + 1);
			if (seen == pos)
				break;
			pos = seen;
		} else if (d < 0) {
			uatomic_add(&a->drops, 1); /* a lap behind: full */
			return HC_E_AGAIN;
		} else {
			pos = CMM_LOAD_SHARED(a->tail);
		}
	}
	s->op = op;
	s->klen = (uint32_t)klen;
	s->ttl_ms = ttl_ms;
	s->stale_ms = stale_ms;
	s->token = token;
	s->queued_ms = hc_now_ms();
	memcpy(s->key, key, klen);
	/* release: the slot's contents before its ticket (uatomic_cmpxchg is a full barrier) */
	if (uatomic_cmpxchg(&s->seq, pos, pos + 1) != pos) {
		uatomic_add(&a->drops, 1); /* the agent skipped us: we were too slow */
		return HC_E_AGAIN;
	}
	if (bell)
		hc_ring_bell(c);
	return 0;
}

/* Wake the agent if it sleeps: after a request, or after the last of a batch. */
void hc_ring_bell(struct hc_cache *c)
{
	struct hc_agent_rec *a = c->agent;
	cmm_smp_mb();
	if (CMM_LOAD_SHARED(a->sleeping)) {
		uatomic_add(&a->doorbell, 1);
		futex_async((int32_t *)&a->doorbell, FUTEX_WAKE, 1, NULL, NULL, 0);
	}
}

/*
 * A flight owner's L2 lookup: queue a GET for the agent and wait for its
 * answer on the flight record's l2 word.  Returns HC_L2_HIT (the value is
 * in L1 now), HC_L2_MISS, HC_L2_ERROR, or HC_E_AGAIN when L2 was skipped
 * (no agent, ring full, no answer within HC_L2_WAIT_MS).
 */
int hc_l2_lookup(struct hc_cache *c, struct hc_fl *fl, const void *key, size_t klen,
		 uint32_t stale_ms)
{
	uint32_t pending = hc_l2_ask(c, fl, key, klen, stale_ms, true);
	if (!pending)
		return HC_E_AGAIN;
	return hc_l2_wait(c, fl, pending, hc_now_ms() + HC_L2_WAIT_MS);
}

/*
 * Queue the L2 lookup of an owned flight (ringing the agent's bell when
 * @bell; a batch rings once after its last request).  Returns the l2 word
 * to wait for, or 0 when L2 is skipped.
 */
uint32_t hc_l2_ask(struct hc_cache *c, struct hc_fl *fl, const void *key, size_t klen,
		   uint32_t stale_ms, bool bell)
{
	struct hc_flight *f = fl->f;
	uint32_t idx = (uint32_t)(f - c->flights);
	uint32_t cur = CMM_LOAD_SHARED(f->l2);
	uint32_t pending = (((cur >> 8) + 1) << 8) | HC_L2_PENDING;
	uatomic_set(&f->l2, pending);
	int rc = hc_ring_push(c, HC_REQ_GET, key, klen, 0, stale_ms,
			      ((uint64_t)idx << 32) | pending, bell);
	return rc ? 0 : pending;
}

/* Sleep on the l2 word while it reads @v, until @until (ms). */
static void l2_nap(struct hc_flight *f, uint32_t v, uint64_t until)
{
	uint64_t now = hc_now_ms();
	if (now >= until)
		return;
	uint64_t left = until - now;
	struct timespec ts = {.tv_sec = (time_t)(left / 1000),
			      .tv_nsec = (long)(left % 1000) * 1000000};
	futex_async((int32_t *)&f->l2, FUTEX_WAIT, (int32_t)v, &ts, NULL, 0);
}

/*
 * Wait until @until_ms for the answer to the lookup that set @pending.  An
 * answer the agent has claimed (ANSWERING: it is storing the value) is
 * waited for a little longer, so the owner never loads from the origin a
 * value the agent is about to store over its own.
 */
int hc_l2_wait(struct hc_cache *c, struct hc_fl *fl, uint32_t pending, uint64_t until)
{
	struct hc_flight *f = fl->f;
	const uint32_t answering = (pending & ~0xffu) | HC_L2_ANSWERING;
	uint64_t grace = until + ANSWER_GRACE_MS;
	for (;;) {
		uint32_t v = CMM_LOAD_SHARED(f->l2);
		if (v != pending && v != answering)
			return (int)(v & 0xff);
		uint64_t now = hc_now_ms();
		if (v == pending && now >= until) {
			/* give up, unless the agent claims the answer just now */
			uint32_t gone = (pending & ~0xffu) | HC_L2_ABANDONED;
			if (uatomic_cmpxchg(&f->l2, pending, gone) == pending) {
				uatomic_add(&c->agent->l2_timeouts, 1);
				return HC_E_AGAIN;
			}
			continue;
		}
		if (v == answering && now >= grace) {
			uatomic_add(&c->agent->l2_timeouts, 1);
			return HC_E_AGAIN; /* an agent stopped mid-answer */
		}
		l2_nap(f, v, v == pending ? until : grace);
	}
}

/* ---- the agent's side ---- */

int hc_agent_begin(struct hc_cache *c)
{
	int rc = hc_writable(c);
	if (rc)
		return rc;
	struct hc_header *h = c->hdr;
	int32_t pid = CMM_LOAD_SHARED(h->agent_pid);
	if (pid && pid != (int32_t)c->pid && hc_agent_alive(c) &&
	    hc_pid_alive(pid, CMM_LOAD_SHARED(c->agent->start_time)))
		return HC_E_BUSY;
	CMM_STORE_SHARED(c->agent->start_time, c->start_time);
	CMM_STORE_SHARED(h->agent_pid, (int32_t)c->pid);
	CMM_STORE_SHARED(h->agent_heartbeat_ms, hc_now_ms());
	c->is_agent = true;
	hc_log(c, HC_LOG_INFO, "%s: agent is process %d", c->name, (int)c->pid);
	return 0;
}

void hc_agent_heartbeat(struct hc_cache *c)
{
	if (c && c->is_agent && hc_usable(c) == 0)
		CMM_STORE_SHARED(c->hdr->agent_heartbeat_ms, hc_now_ms());
}

void hc_agent_end(struct hc_cache *c)
{
	if (!c || !c->is_agent || hc_usable(c))
		return;
	if (CMM_LOAD_SHARED(c->hdr->agent_pid) == (int32_t)c->pid) {
		CMM_STORE_SHARED(c->hdr->agent_heartbeat_ms, 0);
		CMM_STORE_SHARED(c->hdr->agent_pid, 0);
		CMM_STORE_SHARED(c->agent->redis_state, HC_REDIS_UNKNOWN);
	}
	c->is_agent = false;
}

/*
 * Take the slot at the head if it is published; skip it if its producer
 * has left it unpublished too long.  Returns 1 (taken into @out), 0 (the
 * ring is empty or the head is being written), or 2 (skipped: look again).
 */
static int take_one(struct hc_cache *c, struct hc_request *out)
{
	struct hc_agent_rec *a = c->agent;
	uint64_t pos = a->head;
	struct hc_ring_slot *s = &c->ring[pos % HC_RING_SLOTS];
	uint64_t seq = CMM_LOAD_SHARED(s->seq);
	if (seq == pos + 1) {
		cmm_smp_rmb();
		out->op = s->op;
		out->klen = s->klen <= HC_KEY_MAX ? s->klen : HC_KEY_MAX;
		out->ttl_ms = s->ttl_ms;
		out->stale_ms = s->stale_ms;
		out->token = s->token;
		out->queued_ms = s->queued_ms;
		memcpy(out->key, s->key, out->klen);
		out->key[out->klen] = '\0';
		uatomic_set(&s->seq, pos + HC_RING_SLOTS); /* free for the next lap */
		CMM_STORE_SHARED(a->head, pos + 1);
		c->stall_since_ms = 0;
		return 1;
	}
	if (seq != pos || CMM_LOAD_SHARED(a->tail) <= pos)
		return 0; /* empty */
	/* claimed, not yet published: wait a little, then skip it */
	uint64_t now = hc_now_ms();
	if (c->stall_pos != pos || !c->stall_since_ms) {
		c->stall_pos = pos;
		c->stall_since_ms = now;
		return 0;
	}
	if (now - c->stall_since_ms < RING_STALL_MS)
		return 0;
	if (uatomic_cmpxchg(&s->seq, pos, pos + HC_RING_SLOTS) != pos)
		return 2; /* published meanwhile: take it next time round */
	CMM_STORE_SHARED(a->head, pos + 1);
	uatomic_add(&a->ring_skipped, 1);
	c->stall_since_ms = 0;
	hc_log(c, HC_LOG_WARN, "ring slot %llu was claimed and never written: skipped",
	       (unsigned long long)pos);
	return 2;
}

static int take_batch(struct hc_cache *c, struct hc_request *out, int max)
{
	int n = 0;
	while (n < max) {
		int r = take_one(c, &out[n]);
		if (r == 0)
			break;
		n += r == 1;
	}
	return n;
}

int hc_agent_take(struct hc_cache *c, struct hc_request *out, int max, int timeout_ms)
{
	int rc = hc_writable(c);
	if (rc)
		return rc;
	if (!out || max <= 0)
		return HC_E_INVAL; /* after hc_agent_end too: the agent may drain the ring */
	struct hc_agent_rec *a = c->agent;
	int n = take_batch(c, out, max);
	if (n || timeout_ms <= 0)
		return n ? n : HC_E_AGAIN;
	/* asleep: a producer that publishes from now on rings the doorbell */
	uint32_t bell = CMM_LOAD_SHARED(a->doorbell);
	uatomic_set(&a->sleeping, 1);
	cmm_smp_mb();
	n = take_batch(c, out, max);
	if (!n) {
		/* a stalled producer's slot is looked at again when the nap ends */
		int ms = timeout_ms;
		if (c->stall_since_ms && ms > RING_STALL_MS / 4)
			ms = RING_STALL_MS / 4;
		struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
		futex_async((int32_t *)&a->doorbell, FUTEX_WAIT, (int32_t)bell, &ts, NULL, 0);
		n = take_batch(c, out, max);
	}
	uatomic_set(&a->sleeping, 0);
	return n ? n : HC_E_AGAIN;
}

int hc_agent_answer(struct hc_cache *c, const struct hc_request *r, int result, const void *val,
		    size_t vlen, uint32_t ttl_ms)
{
	int rc = hc_writable(c);
	if (rc)
		return rc;
	if (!r || r->op != HC_REQ_GET ||
	    (result != HC_L2_HIT && result != HC_L2_MISS && result != HC_L2_ERROR))
		return HC_E_INVAL;
	uint32_t idx = (uint32_t)(r->token >> 32);
	uint32_t pending = (uint32_t)r->token;
	if (idx >= c->nflights || (pending & 0xff) != HC_L2_PENDING)
		return HC_E_INVAL;
	/*
	 * Claim the answer first: an owner that gave up has loaded from the
	 * origin and stored a newer value, which an L2 value must not replace.
	 */
	struct hc_flight *f = &c->flights[idx];
	uint32_t answering = (pending & ~0xffu) | HC_L2_ANSWERING;
	if (uatomic_cmpxchg(&f->l2, pending, answering) != pending)
		return 0; /* the owner is gone: nobody asked any more */
	if (result == HC_L2_HIT) {
		struct hc_set_opts o = {.ttl_ms = ttl_ms, .stale_ms = r->stale_ms};
		rc = hc_set_ex(c, r->key, r->klen, val, vlen, &o);
		if (rc)
			result = HC_L2_ERROR; /* the owner would not find it in L1 */
	}
	uatomic_set(&f->l2, (pending & ~0xffu) | (uint32_t)result);
	futex_async((int32_t *)&f->l2, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	return rc;
}

void hc_agent_count(struct hc_cache *c, enum hc_agent_ctr k, uint64_t n)
{
	if (c && (unsigned)k < HC_AG_N && hc_usable(c) == 0)
		uatomic_add(&c->agent->ctr[k], n);
}

void hc_agent_state(struct hc_cache *c, enum hc_redis_state st)
{
	if (c && hc_usable(c) == 0)
		CMM_STORE_SHARED(c->agent->redis_state, (uint32_t)st);
}

void hc_agent_l2(struct hc_cache *c, const void *key, size_t klen, int result, uint64_t ns)
{
	int rc;
	if (!c || !key || !klen || klen > HC_KEY_MAX || hc_usable(c))
		return;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return;
	uint32_t ent = hc_entity_id(c, t, key, klen);
	int ctr = result == HC_L2_HIT	 ? HC_CTR_HITS
		  : result == HC_L2_MISS ? HC_CTR_MISSES
					 : HC_CTR_ERRORS;
	hc_count(t, ent, HC_LAYER_L2, ctr);
	uint64_t us = ns / 1000;
	uint32_t b = 0;
	while (b < HC_HIST_N - 1 && us >= HC_HIST_BOUND_US(b))
		b++;
	uatomic_add(&c->agent->l2_hist[b], 1);
}
