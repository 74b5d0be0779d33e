/*
 * segment.c - create, attach, validate and release the shared-memory
 * segment "/hostcache.<name>".
 *
 * Creation race: the creator makes the object with O_CREAT|O_EXCL and
 * holds an exclusive flock() on it while it sizes and formats it; the
 * magic number is stored last.  Everyone else takes a shared flock() before
 * looking at the header, so they wait (without polling the contents) until
 * the creator is done.  A creator that dies releases its lock with its
 * file descriptors; an attacher that then finds no magic re-initialises
 * the segment if it was asked to create it (HC_CREATE), under the
 * exclusive lock, or reports HC_E_INIT.  Exactly one process initialises.
 *
 * Attach checks, in order: the object is a regular file owned by the
 * caller (or by a group the caller is in, for group segments), with no
 * access for others; it is large enough for a header; the magic, ABI
 * version and layout hash match this build; the geometry in the header is
 * consistent with the object's size.  Each refusal has its own code.
 *
 * Every attached process keeps its shared flock() until it closes, so a
 * tool can tell whether anyone has the segment open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <unistd.h>

#include "internal.h"
#include "flight.h"

#define DEFAULT_SIZE (UINT64_C(64) << 20)
#define DEFAULT_THREADS 128u
#define DEFAULT_BYTES_PER_SLOT 96u
#define MAX_VALUE_LIMIT (64u << 20)
#define MIN_SLAB (64u << 10)

uint64_t hc_fork_gen;
static uint64_t next_handle_id;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_child(void)
{
	hc_fork_gen++;
	hc_tls_last = NULL;
}

static void atfork_init(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

void hc_log(const struct hc_cache *c, int level, const char *fmt, ...)
{
	if (!c || !c->log)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->log(c->log_ctx, level, msg);
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static uint64_t unix_ms(void)
{
	return hc_ms_of(CLOCK_REALTIME);
}

static int name_to_path(const char *name, char *path, size_t len)
{
	if (!name)
		return HC_E_INVAL;
	size_t n = strlen(name);
	if (n == 0 || n > HC_NAME_MAX)
		return HC_E_INVAL;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
		if (!ok)
			return HC_E_INVAL;
	}
	if (name[0] == '.')
		return HC_E_INVAL;
	snprintf(path, len, "/hostcache.%s", name);
	return 0;
}

/* Geometry of a new segment (struct hc_header fields), from the options. */
static int plan(const struct hc_options *o, struct hc_header *g)
{
	uint64_t size = o->size ? o->size : DEFAULT_SIZE;
	uint32_t threads = o->max_threads ? o->max_threads : DEFAULT_THREADS;
	uint32_t maxv = o->max_value ? o->max_value : HC_VALUE_MAX_DEFAULT;
	uint32_t bps = o->bytes_per_slot ? o->bytes_per_slot : DEFAULT_BYTES_PER_SLOT;
	if (threads > HC_MAX_THREADS_LIMIT || maxv > MAX_VALUE_LIMIT || bps < 32 ||
	    bps > (1u << 20))
		return HC_E_INVAL;
	if (size > (UINT64_C(1) << 46))
		return HC_E_INVAL;
	uint64_t slab = round_up((uint64_t)HC_ENTRY_HDR + 256 + maxv, HC_PAGE);
	if (slab < MIN_SLAB)
		slab = MIN_SLAB;

	memset(g, 0, sizeof(*g));
	g->max_threads = threads;
	g->max_value = maxv;
	g->slab_size = (uint32_t)slab;
	g->bytes_per_slot = bps;
	g->slot_stride = sizeof(struct hc_tslot);
	uint64_t off = HC_PAGE;
	g->off_classes = off;
	off += round_up(HC_MAX_CLASSES * sizeof(struct hc_class), HC_PAGE);
	g->off_entities = off;
	off += round_up(HC_MAX_ENTITIES * sizeof(struct hc_entity_rec), HC_PAGE);
	g->off_totals = off;
	off += round_up(sizeof(struct hc_slot_ctr), HC_PAGE);
	g->off_loadctr = off;
	off += round_up(sizeof(struct hc_load_ctr), HC_PAGE);
	g->off_agent = off;
	off += round_up(sizeof(struct hc_agent_rec) + HC_RING_SLOTS * sizeof(struct hc_ring_slot),
			HC_PAGE);
	g->off_slots = off;
	off += round_up((uint64_t)threads * g->slot_stride, HC_PAGE);
	/*
	 * flights: a batch of a thousand misses, or every thread loading a few
	 * keys, at a quarter of the table, so a key's probe window is rarely full
	 */
	uint32_t nflights = 4096;
	while (nflights < 16 * threads)
		nflights *= 2;
	g->nflights = nflights;
	g->off_flights = off;
	off += round_up((uint64_t)nflights * sizeof(struct hc_flight), HC_PAGE);
	if (size <= off + 3 * HC_PAGE)
		return HC_E_INVAL;

	/* each slab costs its bytes, its slab-table word and its share of the index */
	uint64_t per_slab = slab + 8 + slab / bps * 8;
	uint64_t nslabs = (size - off - 3 * HC_PAGE) / per_slab;
	for (; nslabs > 0; nslabs--) {
		uint64_t nbuckets = (nslabs * slab / bps + HC_BUCKET_SLOTS - 1) / HC_BUCKET_SLOTS;
		if (nbuckets < 2)
			nbuckets = 2;
		if (nbuckets > UINT32_MAX)
			return HC_E_INVAL;
		uint64_t o2 = off;
		g->off_slabtab = o2;
		o2 += round_up(nslabs * 8, HC_PAGE);
		g->off_index = o2;
		o2 += round_up(nbuckets * sizeof(struct hc_bucket), HC_PAGE);
		g->off_arena = o2;
		o2 += nslabs * slab;
		if (o2 <= size) {
			g->nslabs = (uint32_t)nslabs;
			g->nbuckets = (uint32_t)nbuckets;
			g->size = size;
			return 0;
		}
	}
	return HC_E_INVAL; /* too small for one slab of max_value */
}

int hc_geometry_check(const struct hc_header *h, uint64_t len, char *why, size_t whylen)
{
#define BAD(...)                                    \
	do {                                        \
		snprintf(why, whylen, __VA_ARGS__); \
		return HC_E_CORRUPT;                \
	} while (0)
	if (h->size != len)
		BAD("header size %llu but object is %llu bytes", (unsigned long long)h->size,
		    (unsigned long long)len);
	if (h->max_threads == 0 || h->max_threads > HC_MAX_THREADS_LIMIT)
		BAD("max_threads %u out of range", h->max_threads);
	if (h->max_value > MAX_VALUE_LIMIT)
		BAD("max_value %u out of range", h->max_value);
	if (h->slab_size < MIN_SLAB || h->slab_size % HC_PAGE ||
	    h->slab_size < (uint64_t)HC_ENTRY_HDR + HC_KEY_MAX + h->max_value)
		BAD("slab size %u inconsistent", h->slab_size);
	if (h->nclasses == 0 || h->nclasses > HC_MAX_CLASSES)
		BAD("nclasses %u out of range", h->nclasses);
	if (h->nbuckets < 2 || h->nslabs == 0)
		BAD("empty index or arena");
	if (h->slot_stride != sizeof(struct hc_tslot))
		BAD("thread slot size %llu, expected %zu", (unsigned long long)h->slot_stride,
		    sizeof(struct hc_tslot));
	if (h->nflights == 0 || (h->nflights & (h->nflights - 1)) || h->nflights > (1u << 24))
		BAD("flight records %u not a power of two", h->nflights);
	const uint64_t offs[] = {h->off_classes, h->off_entities, h->off_totals,  h->off_loadctr,
				 h->off_agent,	 h->off_slots,	  h->off_flights, h->off_slabtab,
				 h->off_index,	 h->off_arena};
	const uint64_t lens[] = {HC_MAX_CLASSES * sizeof(struct hc_class),
				 HC_MAX_ENTITIES * sizeof(struct hc_entity_rec),
				 sizeof(struct hc_slot_ctr),
				 sizeof(struct hc_load_ctr),
				 sizeof(struct hc_agent_rec) +
					 HC_RING_SLOTS * sizeof(struct hc_ring_slot),
				 (uint64_t)h->max_threads * h->slot_stride,
				 (uint64_t)h->nflights * sizeof(struct hc_flight),
				 (uint64_t)h->nslabs * 8,
				 (uint64_t)h->nbuckets * sizeof(struct hc_bucket),
				 (uint64_t)h->nslabs * h->slab_size};
	uint64_t prev_end = HC_PAGE;
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		if (offs[i] % HC_PAGE || offs[i] < prev_end || offs[i] > len ||
		    lens[i] > len - offs[i])
			BAD("region %zu at %llu+%llu outside the segment", i,
			    (unsigned long long)offs[i], (unsigned long long)lens[i]);
		prev_end = offs[i] + lens[i];
	}
	return 0;
#undef BAD
}

static int check_owner(const struct hc_cache *c, const struct stat *st)
{
	if (!S_ISREG(st->st_mode)) {
		hc_log(c, HC_LOG_ERROR, "%s: not a regular shared-memory object", c->name);
		return HC_E_PERM;
	}
	if (st->st_mode & 0007) {
		hc_log(c, HC_LOG_ERROR, "%s: mode %04o gives access to others", c->name,
		       (unsigned)(st->st_mode & 07777));
		return HC_E_PERM;
	}
	if (st->st_uid == geteuid())
		return 0;
	/*
	 * A member of the segment's group: read and write access for a
	 * read-write handle; read access is enough for a read-only one, so a
	 * segment made 0640 lets a group of tools look but not touch.
	 */
	const mode_t need = c->read_only ? 0040 : 0060;
	if ((st->st_mode & need) == need) {
		if (st->st_gid == getegid())
			return 0;
		gid_t groups[256];
		int n = getgroups(256, groups);
		for (int i = 0; i < n; i++)
			if (groups[i] == st->st_gid)
				return 0;
	}
	hc_log(c, HC_LOG_ERROR, "%s: owned by uid %u gid %u, mode %04o: refused", c->name,
	       (unsigned)st->st_uid, (unsigned)st->st_gid, (unsigned)(st->st_mode & 07777));
	return HC_E_PERM;
}

/* Point the handle at the regions of a validated mapping. */
void hc_bind(struct hc_cache *c, uint8_t *base, uint64_t size)
{
	struct hc_header *h = (struct hc_header *)base;
	c->base = base;
	c->size = size;
	c->hdr = h;
	c->classes = (struct hc_class *)(base + h->off_classes);
	c->entities = (struct hc_entity_rec *)(base + h->off_entities);
	c->totals = (struct hc_slot_ctr *)(base + h->off_totals);
	c->loadctr = (struct hc_load_ctr *)(base + h->off_loadctr);
	c->agent = (struct hc_agent_rec *)(base + h->off_agent);
	c->ring = (struct hc_ring_slot *)(base + h->off_agent + sizeof(struct hc_agent_rec));
	c->slots = base + h->off_slots;
	c->flights = (struct hc_flight *)(base + h->off_flights);
	c->nflights = h->nflights;
	c->slabtab = (uint64_t *)(base + h->off_slabtab);
	c->index = (struct hc_bucket *)(base + h->off_index);
	c->arena = base + h->off_arena;
	c->off_arena = h->off_arena;
	c->nbuckets = h->nbuckets;
	c->nslabs = h->nslabs;
	c->slab_size = h->slab_size;
	c->nclasses = h->nclasses;
	c->max_threads = h->max_threads;
	c->max_value = h->max_value;
	c->slot_stride = h->slot_stride;
	c->seed = h->hash_seed;
}

/* Size and format the object behind @fd (held under LOCK_EX). */
static int initialize(struct hc_cache *c, int fd, const struct hc_options *o, mode_t mode)
{
	struct hc_header g;
	int rc = plan(o, &g);
	if (rc) {
		hc_log(c, HC_LOG_ERROR, "%s: size or options leave no room for the cache", c->name);
		return rc;
	}
	if (fchmod(fd, mode) != 0)
		return -errno;
	/* shrink to nothing first: a re-initialisation must start from zeros */
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)g.size) != 0)
		return -errno;
	uint8_t *base = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;

	struct hc_header *h = (struct hc_header *)base;
	*h = g;
	h->init_state = HC_INIT_BUSY;
	h->abi_version = HC_ABI_VERSION;
	h->layout_hash = hc_layout_hash();
	h->creator_pid = (int32_t)c->pid;
	h->creator_start = c->start_time;
	h->created_unix_ms = unix_ms();
	h->flags = o->flags & HC_GROUP;
	if (getrandom(&h->hash_seed, sizeof(h->hash_seed), 0) != sizeof(h->hash_seed))
		h->hash_seed = unix_ms() ^ ((uint64_t)c->pid << 40) ^ (uint64_t)(uintptr_t)base;
	h->epoch = 1;
	h->safe_epoch = 0;
	/* readers may skip their fence only if grace periods can use membarrier() */
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0 &&
	    syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0)
		h->flags |= HC_SEG_MEMBARRIER;
	struct hc_class *classes = (struct hc_class *)(base + h->off_classes);
	h->nclasses = (uint32_t)hc_classes_init(h, classes, h->slab_size,
						HC_ENTRY_HDR + HC_KEY_MAX + h->max_value);
	for (uint32_t k = 0; k < h->nclasses; k++)
		classes[k].hand = (uint64_t)h->nslabs << 32; /* no slab yet */
	hc_entities_init((struct hc_entity_rec *)(base + h->off_entities));
	struct hc_ring_slot *ring =
		(struct hc_ring_slot *)(base + h->off_agent + sizeof(struct hc_agent_rec));
	for (uint32_t i = 0; i < HC_RING_SLOTS; i++)
		ring[i].seq = i; /* slot i is free for the producer of position i */
	cmm_smp_wmb();
	CMM_STORE_SHARED(h->init_state, HC_INIT_READY);
	cmm_smp_wmb();
	CMM_STORE_SHARED(h->magic, HC_MAGIC);
	hc_bind(c, base, g.size);
	hc_log(c, HC_LOG_INFO, "%s: created, %llu bytes, %u slabs of %u bytes, %u buckets", c->name,
	       (unsigned long long)g.size, g.nslabs, g.slab_size, g.nbuckets);
	return 0;
}

/* Milliseconds left until @deadline (CLOCK_MONOTONIC ms), 0 if past. */
static uint64_t left(uint64_t deadline)
{
	uint64_t now = hc_now_ms();
	return now < deadline ? deadline - now : 0;
}

static void nap(void)
{
	struct timespec ts = {0, 1000000};
	nanosleep(&ts, NULL);
}

/*
 * Attach to the existing object @fd.  Returns 0 (mapped, shared lock
 * held), -EAGAIN to start over, or an error.
 */
static int attach(struct hc_cache *c, int fd, const struct hc_options *o, mode_t mode,
		  uint64_t deadline)
{
	bool create = o->flags & HC_CREATE;
	/* a creator holds LOCK_EX until the segment is formatted */
	while (flock(fd, LOCK_SH | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		if (!left(deadline))
			return HC_E_INIT;
		nap();
	}
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	int rc = check_owner(c, &st);
	if (rc)
		return rc;

	uint8_t *base = NULL;
	uint64_t size = (uint64_t)st.st_size;
	if (size >= HC_PAGE) {
		base = mmap(NULL, size, PROT_READ | (c->read_only ? 0 : PROT_WRITE), MAP_SHARED, fd,
			    0);
		if (base == MAP_FAILED)
			return -errno;
	}
	struct hc_header *h = (struct hc_header *)base;
	if (!h || CMM_LOAD_SHARED(h->magic) != HC_MAGIC) {
		/*
		 * Not initialised, yet nobody holds the creator's lock: the creator
		 * is between O_EXCL and flock(), or died before finishing.  Give
		 * it until the deadline, then initialise it ourselves if allowed.
		 */
		bool foreign = h && h->magic != 0 && h->init_state != HC_INIT_BUSY;
		if (base)
			munmap(base, size);
		if (foreign) {
			hc_log(c, HC_LOG_ERROR, "%s: not a hostcache segment", c->name);
			return HC_E_BADMAGIC;
		}
		if (left(deadline))
			return -EAGAIN;
		if (!create)
			return HC_E_INIT;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0)
			return -EAGAIN; /* another process is taking it over */
		hc_log(c, HC_LOG_WARN, "%s: initialisation was never completed; initialising",
		       c->name);
		rc = initialize(c, fd, o, mode);
		if (rc == 0)
			flock(fd, LOCK_SH);
		return rc;
	}
	if (h->abi_version != HC_ABI_VERSION || h->layout_hash != hc_layout_hash()) {
		hc_log(c, HC_LOG_ERROR, "%s: ABI version %u layout %08x, this build has %u %08x",
		       c->name, h->abi_version, h->layout_hash, HC_ABI_VERSION, hc_layout_hash());
		munmap(base, size);
		return HC_E_VERSION;
	}
	char why[160];
	if (hc_geometry_check(h, size, why, sizeof(why)) != 0) {
		hc_log(c, HC_LOG_ERROR, "%s: %s", c->name, why);
		munmap(base, size);
		return HC_E_CORRUPT;
	}
	hc_bind(c, base, size);
	return 0;
}

int hc_open(const char *name, const struct hc_options *opts, struct hc_cache **out)
{
	static const struct hc_options defaults;
	char path[HC_NAME_MAX + 16];
	int rc;

	if (!out)
		return HC_E_INVAL;
	*out = NULL;
	if (!opts)
		opts = &defaults;
	if ((rc = name_to_path(name, path, sizeof(path))))
		return rc;
	const uint32_t flags = opts->flags;
	if (flags & ~(uint32_t)(HC_CREATE | HC_EXCL | HC_RDONLY | HC_GROUP))
		return HC_E_INVAL;
	if ((flags & HC_RDONLY) && (flags & HC_CREATE))
		return HC_E_INVAL;
	pthread_once(&atfork_once, atfork_init);

	struct hc_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->fd = -1;
	c->read_only = !!(flags & HC_RDONLY);
	c->log = opts->log;
	c->log_ctx = opts->log_ctx;
	c->pid = getpid();
	c->start_time = hc_proc_start_time(c->pid);
	c->fork_gen = hc_fork_gen;
	c->id = uatomic_add_return(&next_handle_id, 1);
	pthread_mutex_init(&c->lock, NULL);

	const mode_t mode = (flags & HC_GROUP) ? 0660 : 0600;
	const uint64_t timeout = opts->open_timeout_ms ? opts->open_timeout_ms : 5000;
	const uint64_t deadline = hc_now_ms() + timeout;
	const uint64_t give_up = deadline + timeout;
	for (;;) {
		int fd = shm_open(path, (c->read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC,
				  0);
		if (fd < 0 && errno == ENOENT && (flags & HC_CREATE)) {
			fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				      mode);
			if (fd < 0 && errno == EEXIST)
				continue; /* lost the race: attach to the winner's */
			if (fd >= 0) {
				flock(fd, LOCK_EX);
				rc = initialize(c, fd, opts, mode);
				if (rc) {
					shm_unlink(path);
					close(fd);
					goto fail;
				}
				flock(fd, LOCK_SH); /* converts the creator's lock */
				c->fd = fd;
				break;
			}
		}
		if (fd < 0) {
			rc = -errno;
			goto fail;
		}
		if ((flags & HC_CREATE) && (flags & HC_EXCL)) {
			close(fd);
			rc = HC_E_EXISTS;
			goto fail;
		}
		rc = attach(c, fd, opts, mode, deadline);
		if (rc == 0) {
			c->fd = fd;
			break;
		}
		close(fd);
		if (rc != -EAGAIN)
			goto fail;
		if (!left(give_up)) {
			rc = HC_E_INIT;
			goto fail;
		}
		nap();
	}
	if (!c->read_only && (c->hdr->flags & HC_SEG_MEMBARRIER))
		c->light_fence = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
					 0, 0) == 0;
	*out = c;
	return 0;
fail:
	if (c->base)
		munmap(c->base, c->size);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return rc;
}

void hc_close(struct hc_cache *c)
{
	if (!c)
		return;
	hc_refresher_stop(c);
	/* in a forked child the slots are the parent's: only unmap */
	if (c->fork_gen == hc_fork_gen && !c->read_only)
		hc_threads_close(c);
	munmap(c->base, c->size);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int hc_unlink(const char *name)
{
	char path[HC_NAME_MAX + 16];
	int rc = name_to_path(name, path, sizeof(path));
	if (rc)
		return rc;
	return shm_unlink(path) == 0 ? 0 : -errno;
}

int hc_info(struct hc_cache *c, struct hc_info *out)
{
	int rc = hc_usable(c);
	if (rc)
		return rc;
	if (!out)
		return HC_E_INVAL;
	memset(out, 0, sizeof(*out));
	const struct hc_header *h = c->hdr;
	snprintf(out->name, sizeof(out->name), "%s", c->name);
	out->abi_version = h->abi_version;
	out->layout_hash = h->layout_hash;
	out->size = c->size;
	struct stat st;
	if (fstat(c->fd, &st) == 0) {
		out->uid = st.st_uid;
		out->gid = st.st_gid;
		out->mode = st.st_mode & 07777;
	}
	out->creator_pid = h->creator_pid;
	out->created_unix_ms = h->created_unix_ms;
	out->max_threads = c->max_threads;
	out->max_value = c->max_value;
	out->slab_size = c->slab_size;
	out->slabs_total = c->nslabs;
	out->nclasses = c->nclasses;
	out->index_buckets = c->nbuckets;
	out->bucket_slots = HC_BUCKET_SLOTS;
	out->read_only = (uint32_t)c->read_only;
	out->index_bytes = (uint64_t)c->nbuckets * sizeof(struct hc_bucket);
	out->arena_bytes = (uint64_t)c->nslabs * c->slab_size;
	out->meta_bytes = c->size - out->arena_bytes - out->index_bytes;
	return 0;
}

int64_t hc_maintain(struct hc_cache *c, uint64_t budget)
{
	int rc = hc_usable(c);
	if (rc)
		return rc;
	struct hc_thread *t = hc_thread_get(c, &rc);
	if (!t)
		return rc;
	hc_readers(c, 1, NULL, NULL);
	hc_flights_reclaim(c);
	hc_synchronize(c, t, NULL);
	return hc_sweep_expired(c, t, budget);
}
