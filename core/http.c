/*
 * http.c - HTTP conditional requests: the ETag of an entry, If-None-Match
 * evaluation (RFC 9110 sections 8.8.3 and 13.1.2) and a Cache-Control
 * response value built from an entry's metadata (RFC 9111, RFC 5861).
 *
 * Pure functions over caller memory: no segment, no allocation, no locale.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hostcache.h"
#include "internal.h"

#define ETAG_HEX 12			   /* hex digits of a formatted ETag */
#define ETAG_MASK UINT64_C(0xffffffffffff) /* the 48 bits an ETag carries */

/* One year: what "never expires" is sent as. */
#define CC_FOREVER_S INT64_C(31536000)
/*
 * Largest delta-seconds we send.  RFC 9111 section 1.2.2 makes 2^31 the
 * value a cache takes for anything larger; clamping there also keeps the
 * longest result (two 10-digit numbers, 53 bytes) within the 64 bytes the
 * header promises, whatever the metadata holds.
 */
#define CC_DELTA_MAX INT64_C(2147483648)

uint64_t hc_etag_of(const void *val, size_t len)
{
	return HC_ETAG_HASH(hc_hash64(val, len, HC_SEED_VALUE) & ~UINT64_C(0xffff));
}

int hc_etag_format(uint64_t etag, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";

	if (!buf)
		return HC_E_INVAL;
	if (cap < HC_ETAG_BUFSZ) {
		if (cap > 0)
			buf[0] = '\0';
		return HC_E_TOOSMALL;
	}
	etag &= ETAG_MASK;
	buf[0] = '"';
	for (int i = ETAG_HEX; i > 0; i--) {
		buf[i] = hex[etag & 0xf];
		etag >>= 4;
	}
	buf[ETAG_HEX + 1] = '"';
	buf[ETAG_HEX + 2] = '\0';
	return ETAG_HEX + 2;
}

/* OWS = *( SP / HTAB ) */
static inline int is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* etagc = %x21 / %x23-7E / obs-text (%x80-FF) */
static inline int is_etagc(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

/*
 * If-None-Match = "*" / #entity-tag
 * entity-tag    = [ weak ] opaque-tag
 * weak          = %s"W/"               (case-sensitive)
 * opaque-tag    = DQUOTE *etagc DQUOTE
 *
 * The list is parsed as RFC 9110 section 5.6.1.2 asks of a recipient:
 * empty elements and OWS around commas are accepted, but at least one
 * entity-tag must be present.  Hence an empty or all-whitespace header (or
 * one of commas and whitespace only) is malformed: HC_E_INVAL, which the
 * caller treats as an absent header, as for any other malformed value.
 *
 * The whole value is validated before a match is reported: a header that
 * contains our tag but is malformed elsewhere gives HC_E_INVAL, not 1,
 * since RFC 9110 has the recipient ignore an invalid header altogether.
 *
 * Every byte of [hdr, hdr + len) is looked at a bounded number of times and
 * nothing past hdr + len is read; hdr need not be NUL-terminated.
 */
int hc_etag_match(const char *hdr, size_t len, uint64_t etag)
{
	char want[HC_ETAG_BUFSZ];
	const unsigned char *p, *end, *tag;
	int match = 0, ntags = 0;

	if (!hdr)
		return HC_E_INVAL;
	p = (const unsigned char *)hdr;
	end = p + len;
	while (p < end && is_ows(*p))
		p++;
	while (end > p && is_ows(end[-1]))
		end--;
	if (p == end)
		return HC_E_INVAL;
	if (end - p == 1 && *p == '*')
		return 1;

	hc_etag_format(etag, want, sizeof(want));
	while (p < end) {
		if (*p == ',') { /* an empty element, or the comma after a tag */
			p++;
			while (p < end && is_ows(*p))
				p++;
			continue;
		}
		if (*p == 'W') {
			if (end - p < 2 || p[1] != '/')
				return HC_E_INVAL;
			p += 2;
		}
		if (p == end || *p != '"')
			return HC_E_INVAL; /* bare token, "*" in a list, "W/" alone, w/ */
		tag = ++p;
		while (p < end && is_etagc(*p))
			p++;
		if (p == end || *p != '"')
			return HC_E_INVAL; /* unterminated, or a space or control inside */
		if (p - tag == ETAG_HEX && memcmp(tag, want + 1, ETAG_HEX) == 0)
			match = 1;
		ntags++;
		p++;
		while (p < end && is_ows(*p))
			p++;
		if (p < end && *p != ',')
			return HC_E_INVAL; /* something other than a comma after a tag */
	}
	return ntags ? match : HC_E_INVAL;
}

int hc_cache_control(const struct hc_meta *meta, char *buf, size_t cap)
{
	char tmp[64];
	int n;

	if (!meta || !buf)
		return HC_E_INVAL;
	if (meta->ttl_left_ms == INT64_MAX) {
		n = snprintf(tmp, sizeof(tmp), "max-age=%" PRId64, CC_FOREVER_S);
	} else {
		int64_t fresh = meta->ttl_left_ms > 0 ? meta->ttl_left_ms : 0;
		int64_t age = fresh / 1000;

		n = snprintf(tmp, sizeof(tmp), "max-age=%" PRId64,
			     age < CC_DELTA_MAX ? age : CC_DELTA_MAX);
		if (meta->stale_left_ms > fresh) {
			/* fresh >= 0 and stale_left_ms > fresh: no overflow */
			int64_t swr = (meta->stale_left_ms - fresh) / 1000;

			if (swr > 0 && n > 0 && (size_t)n < sizeof(tmp))
				n += snprintf(tmp + n, sizeof(tmp) - (size_t)n,
					      ", stale-while-revalidate=%" PRId64,
					      swr < CC_DELTA_MAX ? swr : CC_DELTA_MAX);
		}
	}
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return HC_E_INVAL; /* cannot happen: the values are clamped */
	if ((size_t)n >= cap) {
		if (cap > 0)
			buf[0] = '\0';
		return HC_E_TOOSMALL;
	}
	memcpy(buf, tmp, (size_t)n + 1);
	return n;
}
