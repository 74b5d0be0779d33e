/*
 * rcu.c - thread slots, read-side sections and grace periods across
 * processes.
 *
 * Every thread that uses a cache holds one thread slot in the segment: a
 * cache line with its reader epoch, an identity (pid, process start time,
 * slot generation) and its private counters.  It is the reader table of
 * LMDB's lock file, with epochs in place of transaction ids.
 *
 * Epoch-based reclamation:
 *   - hdr->epoch only grows.  A reader entering a section stores the epoch
 *     it sees in its slot and fences; leaving, it stores 0 (internal.h).
 *   - A block unlinked from the index is retired with the epoch current
 *     after the unlink (its lifecycle word becomes RETIRED(e)).
 *   - hc_synchronize() advances the epoch and takes the minimum epoch of
 *     the slots that are inside a section.  A reader whose slot shows epoch
 *     v entered no earlier than the moment the epoch was v, so it cannot
 *     hold a block retired with an epoch < v ... and a reader whose slot the
 *     reclaimer saw quiescent loads the index only after the unlink.  Every
 *     block retired with an epoch below that minimum is therefore free.
 *     The result is published in hdr->safe_epoch for all sweepers.
 * * Nothing waits on a dead process: a slot that holds back a grace period
 * is checked with kill(pid, 0) and the process start time from /proc (pid
 * reuse), and reaped if its process is gone.  A live
 * reader that stays inside a section (a stopped process, or one that holds
 * an hc_view) only limits what can be freed: it is reported as a stall,
 * and allocations stop waiting for it (alloc.c).
 *
 * The slot's counters are folded into the segment's totals when the slot
 * is released or reaped, so no count is lost when a process exits or dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <unistd.h>

#include "internal.h"

__thread struct hc_thread *hc_tls_last;
static __thread struct hc_thread *tls_list; /* this thread's records */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/*
 * What /proc/<pid>/stat says of @pid: PROC_LIVE with its start time (field
 * 22, clock ticks since boot), PROC_GONE (no such process, or a zombie,
 * which has released everything it held), or PROC_UNKNOWN when the file
 * could not be read or parsed (out of file descriptors, say).  Only a
 * definite answer may get a slot reaped: a live reader taken for dead
 * would have memory reused under it.  Called from many threads at once,
 * so it parses without strtok's hidden state.
 */
enum { PROC_GONE, PROC_LIVE, PROC_UNKNOWN };
static int proc_stat(int32_t pid, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? PROC_GONE : PROC_UNKNOWN;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int err = errno;
	close(fd);
	if (n <= 0)
		return n == 0 || err == ESRCH ? PROC_GONE : PROC_UNKNOWN;
	buf[n] = '\0';
	/* comm may contain spaces and parentheses: fields restart after the last ')' */
	const char *p = strrchr(buf, ')');
	if (!p)
		return PROC_UNKNOWN;
	/* p + 1 is " S ppid ...": field 3 is the state, field 22 the start time */
	char state = 0;
	int field = 2;
	for (p++; *p;) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		field++;
		if (field == 3) {
			state = *p;
		} else if (field == 22) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(p, &end, 10);
			if (end == p || errno)
				return PROC_UNKNOWN;
			if (state == 'Z' || state == 'X')
				return PROC_GONE;
			*start = v;
			return PROC_LIVE;
		}
		while (*p && *p != ' ')
			p++;
	}
	return PROC_UNKNOWN;
}

/* The start time of process @pid (ticks since boot), 0 if it cannot be told. */
uint64_t hc_proc_start_time(int32_t pid)
{
	uint64_t start = 0;
	return proc_stat(pid, &start) == PROC_LIVE ? start : 0;
}

/*
 * Is @pid alive and the same process that recorded @start_time (0: any)?
 * In doubt, alive.
 */
bool hc_pid_alive(int32_t pid, uint64_t start_time)
{
	if (pid <= 0)
		return false;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	uint64_t now_start = 0;
	switch (proc_stat(pid, &now_start)) {
	case PROC_GONE:
		return false; /* vanished meanwhile, or a zombie */
	case PROC_UNKNOWN:
		return true;
	default:
		return start_time == 0 || now_start == start_time;
	}
}

/* Add a slot's counters to the segment totals and zero them. */
void hc_fold_counters(struct hc_cache *c, struct hc_tslot *ts)
{
	uint64_t *src = (uint64_t *)&ts->c;
	uint64_t *dst = (uint64_t *)c->totals;
	size_t n = sizeof(struct hc_slot_ctr) / sizeof(uint64_t);

	/* odd while folding: a snapshot that sees it retries (stats.c) */
	uatomic_add(&c->hdr->totals_seq, 1);
	for (size_t i = 0; i < n; i++) {
		uint64_t v = CMM_LOAD_SHARED(src[i]);
		if (v) {
			uatomic_add(&dst[i], v);
			CMM_STORE_SHARED(src[i], 0);
		}
	}
	uatomic_add(&c->hdr->totals_seq, 1);
}

/*
 * Reap slot @i whose owner word was @w, if its process is dead.  The reap
 * is claimed by CAS of the owner word to REAPING(reaper pid), so it happens
 * once; a reaper that dies midway is itself detected and replaced.  The
 * generation stays, so blocks allocated under it are recognised as orphans
 * (hc_owner_alive).  Returns 1 if reaped, 0 if the owner lives, < 0 if the
 * slot changed meanwhile.
 */
int hc_reap_slot(struct hc_cache *c, uint32_t i, uint64_t w)
{
	struct hc_tslot *ts = hc_slot_at(c, i);
	if (HC_TS_STATE(w) == HC_TS_ACTIVE) {
		if (hc_pid_alive(HC_TS_PID(w), CMM_LOAD_SHARED(ts->start_time)))
			return 0;
	} else if (HC_TS_STATE(w) == HC_TS_REAPING) {
		if (hc_pid_alive(HC_TS_PID(w), 0))
			return 0; /* another reaper is at work */
	} else {
		return -1;
	}
	uint64_t reaping = HC_TS_MAKE(HC_TS_REAPING, HC_TS_GEN(w), c->pid);
	if (uatomic_cmpxchg(&ts->owner, w, reaping) != w)
		return -1;
	hc_fold_counters(c, ts);
	CMM_STORE_SHARED(ts->epoch, 0);
	CMM_STORE_SHARED(ts->start_time, 0);
	uatomic_set(&ts->owner, HC_TS_MAKE(HC_TS_FREE, HC_TS_GEN(w), 0));
	/* counted in the totals: the reaped slot's own counters are folded */
	uatomic_add(&c->totals->misc[HC_MISC_SLOTS_REAPED], 1);
	hc_log(c, HC_LOG_INFO, "reaped thread slot %u of dead process %d", i, HC_TS_PID(w));
	return 1;
}

/*
 * Is the thread that allocated a block (ALLOC payload @p) still around?
 * True while its slot holds the same generation; a released or reaped slot
 * (or one reused by another thread, which takes a new generation) means the
 * block was orphaned.  A slot being reaped counts as dead.
 */
bool hc_owner_alive(struct hc_cache *c, uint64_t p)
{
	uint32_t slot = HC_OWNER_SLOT(p);
	if (slot >= c->max_threads)
		return false;
	uint64_t w = CMM_LOAD_SHARED(hc_slot_at(c, slot)->owner);
	return HC_TS_STATE(w) == HC_TS_ACTIVE && HC_TS_GEN(w) == HC_OWNER_GENOF(p);
}

/* Reap every dead slot; returns how many. */
static int reap_dead(struct hc_cache *c)
{
	int n = 0;
	uint32_t hwm = CMM_LOAD_SHARED(c->hdr->slots_hwm);
	for (uint32_t i = 0; i < hwm && i < c->max_threads; i++) {
		uint64_t w = CMM_LOAD_SHARED(hc_slot_at(c, i)->owner);
		if (HC_TS_STATE(w) != HC_TS_FREE && HC_TS_PID(w) != c->pid &&
		    hc_reap_slot(c, i, w) == 1)
			n++;
	}
	return n;
}

static int claim_slot(struct hc_cache *c, struct hc_thread *t)
{
	for (int round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < c->max_threads; i++) {
			struct hc_tslot *ts = hc_slot_at(c, i);
			uint64_t w = CMM_LOAD_SHARED(ts->owner);
			if (HC_TS_STATE(w) != HC_TS_FREE)
				continue;
			uint32_t gen = (HC_TS_GEN(w) + 1) & (uint32_t)HC_OWNER_GEN_MASK;
			uint64_t nw = HC_TS_MAKE(HC_TS_ACTIVE, gen, c->pid);
			if (uatomic_cmpxchg(&ts->owner, w, nw) != w)
				continue;
			CMM_STORE_SHARED(ts->start_time, c->start_time);
			CMM_STORE_SHARED(ts->tid, (int32_t)syscall(SYS_gettid));
			CMM_STORE_SHARED(ts->epoch, 0);
			uint32_t hwm;
			while ((hwm = CMM_LOAD_SHARED(c->hdr->slots_hwm)) < i + 1)
				uatomic_cmpxchg(&c->hdr->slots_hwm, hwm, i + 1);
			t->ts = ts;
			t->slot = i;
			t->gen = gen;
			return 0;
		}
		if (reap_dead(c) == 0)
			break;
	}
	return HC_E_NOSLOT;
}

/* Give the slot back: counters folded, owner FREE (generation kept). */
void hc_thread_release(struct hc_cache *c, struct hc_thread *t)
{
	if (!t->ts)
		return;
	hc_free_flush(c, t);
	hc_fold_counters(c, t->ts);
	CMM_STORE_SHARED(t->ts->epoch, 0);
	CMM_STORE_SHARED(t->ts->start_time, 0);
	uatomic_set(&t->ts->owner, HC_TS_MAKE(HC_TS_FREE, t->gen, 0));
	t->ts = NULL;
}

/* Thread exit: release every slot this thread holds, free its records. */
static void tls_destructor(void *arg)
{
	struct hc_thread *t = arg;
	pthread_mutex_lock(&registry_lock);
	while (t) {
		struct hc_thread *next = t->next_in_thread;
		struct hc_cache *c = t->c;
		if (c) {
			pthread_mutex_lock(&c->lock);
			for (struct hc_thread **pp = &c->threads; *pp;
			     pp = &(*pp)->next_in_handle) {
				if (*pp == t) {
					*pp = t->next_in_handle;
					break;
				}
			}
			pthread_mutex_unlock(&c->lock);
			if (c->fork_gen == hc_fork_gen)
				hc_thread_release(c, t);
		}
		free(t->stall);
		free(t);
		t = next;
	}
	pthread_mutex_unlock(&registry_lock);
	tls_list = NULL;
	hc_tls_last = NULL;
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_destructor);
}

/* Slow path of hc_thread_get: find or create this thread's record for @c. */
struct hc_thread *hc_thread_slow(struct hc_cache *c, int *err)
{
	int rc = hc_usable(c);
	if (rc) {
		*err = rc;
		return NULL;
	}
	if (c->read_only) {
		*err = HC_E_READONLY;
		return NULL;
	}
	for (struct hc_thread *t = tls_list; t; t = t->next_in_thread) {
		if (t->c == c && t->handle_id == c->id) {
			hc_tls_last = t;
			return t;
		}
	}
	pthread_once(&tls_once, tls_init);
	struct hc_thread *t = calloc(1, sizeof(*t));
	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	t->c = c;
	t->handle_id = c->id;
	t->rng = (uint64_t)(uintptr_t)t ^ hc_now_ms() ^ ((uint64_t)c->pid << 32);
	rc = claim_slot(c, t);
	if (rc) {
		free(t);
		*err = rc;
		return NULL;
	}
	pthread_mutex_lock(&registry_lock);
	pthread_mutex_lock(&c->lock);
	t->next_in_handle = c->threads;
	c->threads = t;
	pthread_mutex_unlock(&c->lock);
	t->next_in_thread = tls_list;
	tls_list = t;
	pthread_setspecific(tls_key, tls_list);
	pthread_mutex_unlock(&registry_lock);
	hc_tls_last = t;
	return t;
}

/*
 * hc_close: release the slots of every thread of this handle.  Records of
 * other threads stay on their thread's list, marked closed (c = NULL), and
 * are freed when that thread exits.
 */
void hc_threads_close(struct hc_cache *c)
{
	pthread_mutex_lock(&registry_lock);
	pthread_mutex_lock(&c->lock);
	for (struct hc_thread *t = c->threads; t; t = t->next_in_handle) {
		if (c->fork_gen == hc_fork_gen)
			hc_thread_release(c, t);
		t->c = NULL;
	}
	c->threads = NULL;
	pthread_mutex_unlock(&c->lock);
	/* free this thread's own closed records now */
	for (struct hc_thread **pp = &tls_list; *pp;) {
		struct hc_thread *t = *pp;
		if (t->c == NULL) {
			*pp = t->next_in_thread;
			if (hc_tls_last == t)
				hc_tls_last = NULL;
			free(t->stall);
			free(t);
		} else {
			pp = &t->next_in_thread;
		}
	}
	pthread_once(&tls_once, tls_init);
	pthread_setspecific(tls_key, tls_list);
	pthread_mutex_unlock(&registry_lock);
}

/* A reader holding a grace period back this long counts as stalled. */
#define STALL_MS 1000
/* How often a stalled reader's process is checked for life. */
#define STALL_RECHECK_MS 10
/* Brief spin for a reader that is just finishing its read. */
#define SPIN 256

/*
 * hc_synchronize - advance the epoch and compute the oldest epoch still
 * held by a reader.  Blocks retired with an epoch below the result are
 * free.  Called outside the caller's own read-side sections (a view the
 * caller holds counts like any other reader's section).
 * * Never waits for long: a reader in a section gets a spin of a microsecond
 * or two to leave it.  If it is still there its process is checked for
 * life (at most every STALL_RECHECK_MS per slot) and reaped if it is dead,
 * so a killed reader holds reclamation back for milliseconds.  One that
 * holds the same epoch for STALL_MS is stalled (a stopped process, a held
 * view): *@stalled is set so callers stop waiting for it.  Returns the new
 * safe epoch.
 */
uint64_t hc_synchronize(struct hc_cache *c, struct hc_thread *self, bool *stalled)
{
	struct hc_header *hdr = c->hdr;
	uint64_t e = uatomic_add_return(&hdr->epoch, 1);
	uint64_t min = e;
	uint32_t hwm = CMM_LOAD_SHARED(hdr->slots_hwm);
	bool any_stall = false;
	/* what this thread remembers of the readers it waited on */
	struct hc_stall *memo = self ? self->stall : NULL;
	if (self && !memo)
		memo = self->stall = calloc(c->max_threads, sizeof(*memo));

	if (hdr->flags & HC_SEG_MEMBARRIER) {
		/* the fence registered readers skipped (internal.h: hc_read_lock) */
		if (syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0) {
			if (self && self->ts)
				hc_ctr_add(&self->ts->c.misc[HC_MISC_RECLAIM_STALLS], 1);
			if (stalled)
				*stalled = true;
			return CMM_LOAD_SHARED(hdr->safe_epoch);
		}
	} else {
		cmm_smp_mb();
	}
	for (uint32_t i = 0; i < hwm && i < c->max_threads; i++) {
		struct hc_tslot *ts = hc_slot_at(c, i);
		uint64_t v = CMM_LOAD_SHARED(ts->epoch);
		if (v == 0 || v >= e)
			continue; /* a reader known to sit in this read gets no spin */
		bool known = memo && memo[i].epoch == v &&
			     memo[i].sections == CMM_LOAD_SHARED(ts->sections);
		for (int spin = 0; spin < SPIN && !known && v == CMM_LOAD_SHARED(ts->epoch); spin++)
			caa_cpu_relax();
		uint64_t now_v = CMM_LOAD_SHARED(ts->epoch);
		if (now_v == 0 || now_v >= e)
			continue; /* still inside: is its process alive?  (at most every few ms per slot) */
		struct hc_stall scratch = {0}, *st = memo ? &memo[i] : &scratch;
		uint64_t now_ms = hc_now_ms();
		uint64_t sections = CMM_LOAD_SHARED(ts->sections);
		if (st->epoch != now_v || st->sections != sections) {
			/* a different read than the one seen before: not stuck */
			st->epoch = now_v;
			st->sections = sections;
			st->since_ms = now_ms;
			st->checked_ms = 0;
		}
		if (now_ms - st->checked_ms >= STALL_RECHECK_MS) {
			st->checked_ms = now_ms;
			uint64_t w = CMM_LOAD_SHARED(ts->owner);
			if (HC_TS_PID(w) != c->pid && hc_reap_slot(c, i, w) == 1)
				continue;
		}
		if (now_ms - st->since_ms >= STALL_MS) {
			any_stall = true;
			c->stalled_slot = i;
		}
		if (now_v < min)
			min = now_v;
	}
	if (self && self->ts) {
		hc_ctr_add(&self->ts->c.misc[HC_MISC_RECLAIM_WAITS], 1);
		if (any_stall)
			hc_ctr_add(&self->ts->c.misc[HC_MISC_RECLAIM_STALLS], 1);
	}
	if (stalled)
		*stalled = any_stall;
	uint64_t safe;
	while ((safe = CMM_LOAD_SHARED(hdr->safe_epoch)) < min)
		if (uatomic_cmpxchg(&hdr->safe_epoch, safe, min) == safe)
			break;
	return min > safe ? min : safe;
}

/* ---- public: hc_readers ---- */

int hc_readers(struct hc_cache *c, int reap, void (*fn)(void *ctx, const struct hc_reader *r),
	       void *ctx)
{
	int rc = hc_usable(c);
	if (rc)
		return rc;
	if (reap && c->read_only)
		return HC_E_READONLY;
	int n = 0;
	for (uint32_t i = 0; i < c->max_threads; i++) {
		struct hc_tslot *ts = hc_slot_at(c, i);
		uint64_t w = CMM_LOAD_SHARED(ts->owner);
		if (HC_TS_STATE(w) != HC_TS_ACTIVE)
			continue;
		struct hc_reader r = {
			.slot = i,
			.pid = HC_TS_PID(w),
			.tid = CMM_LOAD_SHARED(ts->tid),
			.epoch = CMM_LOAD_SHARED(ts->epoch),
			.start_time = CMM_LOAD_SHARED(ts->start_time),
		};
		r.alive = hc_pid_alive(r.pid, r.start_time);
		if (fn)
			fn(ctx, &r);
		if (reap) {
			if (!r.alive && hc_reap_slot(c, i, w) == 1)
				n++;
		} else {
			n++;
		}
	}
	return n;
}
