/*
 * dump.c - the portable dump format: every live entry of a segment as a
 * stream another segment (of any geometry, on any host) can load.
 *
 * All integers are little-endian, whatever the host.
 *
 *   header   "HCDUMP" 0x00 0x01   magic and format version 1
 *            u64 dumped_unix_ms   wall clock when the dump was written
 *   entry    u8  'E'
 *            u8  klen (1..250)  u8 flags (HC_ENTRY_*)  u8 0
 *            u32 vlen
 *            i64 ttl_left_ms      -1: never expires; 0: already stale
 *            u32 stale_ms         stale window after the TTL
 *            u32 compute_ms       XFetch delta
 *            klen key bytes, vlen value bytes
 *            u64 check            hc_hash64 of the entry from 'E' to here
 *   trailer  u8  'Z', 7 zero bytes
 *            u64 count            entries written
 *            u64 check            hc_hash64 of count
 *
 * TTLs are durations, less the time that passed between dump and load
 * (by the wall clock), so a dump loaded an hour later does not hand out
 * entries an hour past their life.  A load checks every field, every
 * checksum and the count; it stops with HC_E_FORMAT at the first fault
 * (entries before it are stored) and never reads past what a field
 * announces.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#define DUMP_MAGIC "HCDUMP\0\1"
#define DUMP_SEED UINT64_C(0x44554d5048433031)
#define ENTRY_FIXED 24 /* 'E' .. compute_ms */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly @len bytes; HC_E_FORMAT on a short stream. */
static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return HC_E_FORMAT;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct dumper {
	int fd;
	int rc;
	int64_t count;
	uint8_t *buf; /* one encoded entry */
};

static int dump_one(void *ctx, const struct hc_item *it)
{
	struct dumper *d = ctx;
	const struct hc_meta *m = &it->meta;
	int64_t ttl_left, stale;
	if (m->ttl_left_ms == INT64_MAX) {
		ttl_left = -1;
		stale = 0;
	} else if (m->ttl_left_ms > 0) {
		ttl_left = m->ttl_left_ms;
		stale = m->stale_left_ms - m->ttl_left_ms;
	} else if (m->stale_left_ms > 0) {
		ttl_left = 0;
		stale = m->stale_left_ms;
	} else {
		return 0; /* expired: not worth carrying */
	}
	if (stale > UINT32_MAX)
		stale = UINT32_MAX;
	uint8_t *p = d->buf;
	p[0] = 'E';
	p[1] = (uint8_t)it->klen;
	p[2] = (uint8_t)m->flags;
	p[3] = 0;
	put_le(p + 4, it->vlen, 4);
	put_le(p + 8, (uint64_t)ttl_left, 8);
	put_le(p + 16, (uint64_t)stale, 4);
	put_le(p + 20, m->compute_ms, 4);
	memcpy(p + ENTRY_FIXED, it->key, it->klen);
	memcpy(p + ENTRY_FIXED + it->klen, it->val, it->vlen);
	size_t n = ENTRY_FIXED + it->klen + it->vlen;
	put_le(p + n, hc_hash64(p, n, DUMP_SEED), 8);
	d->rc = write_all(d->fd, p, n + 8);
	if (d->rc)
		return 1;
	d->count++;
	return 0;
}

int64_t hc_dump(struct hc_cache *c, int fd)
{
	int rc = hc_usable(c);
	if (rc)
		return rc;
	struct dumper d = {.fd = fd};
	d.buf = malloc(ENTRY_FIXED + HC_KEY_MAX + (size_t)c->max_value + 8);
	if (!d.buf)
		return -ENOMEM;
	uint8_t head[16];
	memcpy(head, DUMP_MAGIC, 8);
	put_le(head + 8, hc_ms_of(CLOCK_REALTIME), 8);
	rc = write_all(fd, head, sizeof(head));
	if (rc == 0) {
		rc = hc_scan(c, dump_one, &d);
		if (rc > 0)
			rc = d.rc;
	}
	if (rc == 0) {
		uint8_t tail[24] = {'Z'};
		put_le(tail + 8, (uint64_t)d.count, 8);
		put_le(tail + 16, hc_hash64(tail + 8, 8, DUMP_SEED), 8);
		rc = write_all(fd, tail, sizeof(tail));
	}
	free(d.buf);
	return rc ? rc : d.count;
}

int64_t hc_load(struct hc_cache *c, int fd)
{
	int rc = hc_writable(c);
	if (rc)
		return rc;
	uint8_t head[16];
	if ((rc = read_all(fd, head, sizeof(head))))
		return rc;
	if (memcmp(head, DUMP_MAGIC, 8) != 0)
		return HC_E_FORMAT;
	/* a dump stamped in the future (a clock set back, a forged stamp) is of age 0 */
	uint64_t now = hc_ms_of(CLOCK_REALTIME), dumped = get_le(head + 8, 8);
	int64_t age = dumped < now ? (int64_t)(now - dumped) : 0;

	uint8_t *buf = malloc(ENTRY_FIXED + HC_KEY_MAX + (size_t)c->max_value + 8);
	if (!buf)
		return -ENOMEM;
	int64_t stored = 0, seen = 0;
	for (;;) {
		if ((rc = read_all(fd, buf, 1)))
			break;
		if (buf[0] == 'Z') {
			uint8_t tail[23];
			if ((rc = read_all(fd, tail, sizeof(tail))))
				break;
			uint64_t count = get_le(tail + 7, 8);
			bool zeros = !tail[0] && !tail[1] && !tail[2] && !tail[3] && !tail[4] &&
				     !tail[5] && !tail[6];
			if (!zeros || get_le(tail + 15, 8) != hc_hash64(tail + 7, 8, DUMP_SEED) ||
			    count != (uint64_t)seen)
				rc = HC_E_FORMAT;
			break;
		}
		if (buf[0] != 'E') {
			rc = HC_E_FORMAT;
			break;
		}
		if ((rc = read_all(fd, buf + 1, ENTRY_FIXED - 1)))
			break;
		uint32_t klen = buf[1], flags = buf[2];
		uint64_t vlen = get_le(buf + 4, 4);
		int64_t ttl_left = (int64_t)get_le(buf + 8, 8);
		uint32_t stale = (uint32_t)get_le(buf + 16, 4);
		uint32_t compute = (uint32_t)get_le(buf + 20, 4);
		if (klen == 0 || buf[3] != 0 || (flags & ~HC_ENTRY_NEGATIVE) || ttl_left < -1) {
			rc = HC_E_FORMAT;
			break;
		}
		if (vlen > c->max_value) {
			rc = HC_E_TOOBIG;
			break;
		}
		size_t n = ENTRY_FIXED + klen + vlen;
		if ((rc = read_all(fd, buf + ENTRY_FIXED, klen + vlen + 8)))
			break;
		if (get_le(buf + n, 8) != hc_hash64(buf, n, DUMP_SEED)) {
			rc = HC_E_FORMAT;
			break;
		}
		seen++;
		struct hc_set_opts o = {.compute_ms = compute, .flags = flags};
		if (ttl_left == -1) {
			o.ttl_ms = 0;
		} else {
			/* the wall-clock time since the dump comes off the TTL, then the stale window */
			int64_t fresh = ttl_left - age;
			int64_t stale_left = (int64_t)stale + (fresh < 0 ? fresh : 0);
			if (stale_left <= 0 && fresh <= 0)
				continue;
			o.ttl_ms =
				fresh > 0 ? (uint32_t)(fresh > UINT32_MAX ? UINT32_MAX : fresh) : 1;
			o.stale_ms = (uint32_t)(stale_left > 0 ? stale_left : 0);
		}
		rc = hc_set_ex(c, buf + ENTRY_FIXED, klen, buf + ENTRY_FIXED + klen, vlen, &o);
		if (rc)
			break;
		stored++;
	}
	free(buf);
	return rc ? rc : stored;
}
