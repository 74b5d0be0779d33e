/*
 * test_http.c - ETag formatting, If-None-Match evaluation (RFC 9110 weak
 * comparison) and Cache-Control values, every limit at and beyond it.
 */
#include "testutil.h"

/* An etag with bits above 48 set: only "0123456789ab" may come out of it. */
#define ETAG UINT64_C(0xdead0123456789ab)
#define TAG "\"0123456789ab\""

/* A header of a string literal, embedded NULs included. */
#define H(s) s, sizeof(s) - 1

struct match_case {
	const char *hdr;
	size_t len;
	int want;
	int line;
};

#define M(s, w)                   \
	{                         \
		H(s), w, __LINE__ \
	}

static const struct match_case match_cases[] = {
	/* exact, weak, star */
	M(TAG, 1), M("W/" TAG, 1), M("*", 1), M(" *", 1), M("* ", 1), M("\t * \t", 1),
	M(" " TAG " ", 1), M("\t" TAG "\t", 1), M("  W/" TAG "\t ", 1),

	/* lists, whitespace around commas, empty elements */
	M("\"aaa\", " TAG, 1), M("\"aaa\"," TAG ",\"bbb\"", 1),
	M("\"aaa\" ,\t" TAG " , \"bbb\"", 1), M("W/\"aaa\", W/" TAG, 1), M("\"aaa\", ," TAG, 1),
	M("\"aaa\", , ,\t," TAG, 1), M(", " TAG, 1), M(",," TAG, 1), M(TAG ",", 1), M(TAG " , ", 1),
	M(",,, " TAG " ,,,", 1), M("\"\", " TAG, 1), M(TAG ", " TAG, 1), M("W/" TAG ", " TAG, 1),
	M("\"!#~\x80\xff\", " TAG, 1), M("\"a,b\", " TAG, 1), /* a comma is an etagc */
	M("\"\\\", " TAG, 1),				      /* so is a backslash: no escapes */

	/* no match */
	M("\"0123456789AB\"", 0), /* uppercase is another tag */
	M("W/\"0123456789AB\"", 0), M("\"0123456789Ab\"", 0), M("\"0123456789ac\"", 0),
	M("\"1123456789ab\"", 0), M("\"\"", 0), M("W/\"\"", 0), M("\"aaa\"", 0),
	M("\"aaa\", W/\"bbb\"", 0), M("\"0123456789a\"", 0), /* a prefix of ours */
	M("\"123456789ab\"", 0),			     /* a suffix of ours */
	M("\"0123456789abc\"", 0),			     /* ours is a prefix of it */
	M("\"x0123456789ab\"", 0),			     /* ours is a suffix of it */
	M("\"0123456789ab0123456789ab\"", 0), M("\"dead0123456789ab\"", 0), /* the full 64 bits */
	M("\"0x0123456789ab\"", 0),
	M("\"0123456789ab\\\"", 0), /* 13 chars: backslash is not an escape */
	M("\"0123456789ab,\"", 0), M("\",0123456789ab\"", 0), M("\"aaa,0123456789ab\"", 0),
	M("\"W/0123456789ab\"", 0), M("\"!\", \"~\", \"\x80\", \"\xff\"", 0), M(",\"aaa\",", 0),

	/* empty, whitespace, lists without a tag */
	M("", HC_E_INVAL), M(" ", HC_E_INVAL), M("\t", HC_E_INVAL), M(" \t \t ", HC_E_INVAL),
	M(",", HC_E_INVAL), M(" , ,\t, ", HC_E_INVAL),

	/* quotes */
	M("\"", HC_E_INVAL), M("\"0123456789ab", HC_E_INVAL), M("W/\"0123456789ab", HC_E_INVAL),
	M("\"aaa\", \"0123456789ab", HC_E_INVAL), M("0123456789ab\"", HC_E_INVAL),
	M("0123456789ab", HC_E_INVAL), M("\"aaa\", 0123456789ab", HC_E_INVAL),
	M("'0123456789ab'", HC_E_INVAL), M("\"a,\"0123456789ab\"\"", HC_E_INVAL),
	M(TAG "\"", HC_E_INVAL),

	/* garbage between or after tags */
	M("\"aaa\" " TAG, HC_E_INVAL), M("\"aaa\"" TAG, HC_E_INVAL),
	M("\"aaa\"x, " TAG, HC_E_INVAL), M(TAG "x", HC_E_INVAL), M(TAG " x", HC_E_INVAL),
	M(TAG "; q=1", HC_E_INVAL),
	M(TAG ", garbage", HC_E_INVAL), /* our tag, but the header is invalid */
	M(TAG ", \"unterminated", HC_E_INVAL), M(TAG " W/", HC_E_INVAL), M(TAG ", W/", HC_E_INVAL),

	/* "*" in a list */
	M("*, " TAG, HC_E_INVAL), M(TAG ", *", HC_E_INVAL), M("*,", HC_E_INVAL),
	M(",*", HC_E_INVAL), M("**", HC_E_INVAL), M("* *", HC_E_INVAL), M("W/*", HC_E_INVAL),
	M("\"*\"", 0), /* a quoted star is just a tag */

	/* W/ */
	M("W/", HC_E_INVAL), M("W", HC_E_INVAL), M("W/ " TAG, HC_E_INVAL),
	M("W\t/" TAG, HC_E_INVAL), M("W" TAG, HC_E_INVAL), M("W/0123456789ab", HC_E_INVAL),
	M("w/" TAG, HC_E_INVAL), M("\"aaa\", w/" TAG, HC_E_INVAL), M("W/W/" TAG, HC_E_INVAL),
	M("/" TAG, HC_E_INVAL), M("WW/" TAG, HC_E_INVAL),

	/* NUL bytes and control characters, inside and outside a tag */
	M("\0", HC_E_INVAL), M("\0" TAG, HC_E_INVAL), M(TAG "\0", HC_E_INVAL),
	M("\"0123"
	  "\0"
	  "456789ab\"",
	  HC_E_INVAL),
	M("\"0123456789ab\0\"", HC_E_INVAL), M("\"0123456789ab\x01\"", HC_E_INVAL),
	M("\"0123456789ab\x1f\"", HC_E_INVAL), M("\"0123456789ab\x7f\"", HC_E_INVAL),
	M("\"01234\t56789ab\"", HC_E_INVAL), M("\"01234 56789ab\"", HC_E_INVAL),
	M("\"0123456789ab \"", HC_E_INVAL), M("\" 0123456789ab\"", HC_E_INVAL),
	M(TAG "\r\n", HC_E_INVAL), M(TAG "\n", HC_E_INVAL), M("\r\n" TAG, HC_E_INVAL),
	M("\"aaa\",\v" TAG, HC_E_INVAL), M("\"aaa\",\f" TAG, HC_E_INVAL),
	M("\"aaa\"\r," TAG, HC_E_INVAL), M("\x7f" TAG, HC_E_INVAL),
	M("\xa0" TAG, HC_E_INVAL), /* NBSP is not OWS */
};

/* Each case from a heap block of exactly @len bytes: ASan sees any over-read. */
static void test_match_table(void)
{
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const struct match_case *t = &match_cases[i];
		char *b = malloc(t->len ? t->len : 1);
		REQUIRE(b);
		memcpy(b, t->hdr, t->len);
		int got = hc_etag_match(b, t->len, ETAG);
		if (got != t->want) {
			fprintf(stderr,
				"%s:%d: hc_etag_match(case of line %d, len %zu) = %d, want %d\n",
				__FILE__, __LINE__, t->line, t->len, got, t->want);
			tu_failures++;
		}
		free(b);
	}
}

static void test_match_args(void)
{
	CHECK_RC(hc_etag_match(NULL, 0, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match(NULL, 1, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match(NULL, 14, ETAG), HC_E_INVAL);
	/* len 0 with a valid pointer: empty header, whatever follows it */
	CHECK_RC(hc_etag_match(TAG, 0, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match("*", 0, ETAG), HC_E_INVAL);

	/* the high 16 bits of the etag play no part */
	CHECK_RC(hc_etag_match(H(TAG), UINT64_C(0x0123456789ab)), 1);
	CHECK_RC(hc_etag_match(H(TAG), UINT64_C(0xffff0123456789ab)), 1);
	CHECK_RC(hc_etag_match(H(TAG), UINT64_C(0x0123456789aa)), 0);
	CHECK_RC(hc_etag_match(H("\"000000000000\""), 0), 1);
	CHECK_RC(hc_etag_match(H("\"000000000000\""), UINT64_C(0xffff000000000000)), 1);
	CHECK_RC(hc_etag_match(H("\"ffffffffffff\""), UINT64_MAX), 1);
	CHECK_RC(hc_etag_match(H("\"0\""), 0), 0); /* not zero-padded: another tag */
	/* "*" matches whatever the etag */
	CHECK_RC(hc_etag_match(H("*"), 0), 1);
	CHECK_RC(hc_etag_match(H("*"), UINT64_MAX), 1);
}

/* len stops before bytes that would change the answer: they must not be read. */
static void test_match_not_terminated(void)
{
	static const char full[] = "\"aaa\", " TAG ", \"bbb\"";
	const size_t flen = sizeof(full) - 1;
	const size_t aaa = 5;		/* "aaa" */
	const size_t comma = 6;		/* "aaa", */
	const size_t open = 8;		/* "aaa", " */
	const size_t close = open + 13; /* through our closing quote */

	CHECK_RC(hc_etag_match(full, aaa, ETAG), 0);
	CHECK_RC(hc_etag_match(full, comma, ETAG), 0);
	CHECK_RC(hc_etag_match(full, comma + 1, ETAG), 0);
	CHECK_RC(hc_etag_match(full, open, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match(full, close - 1, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match(full, close, ETAG), 1);
	CHECK_RC(hc_etag_match(full, close + 1, ETAG), 1);
	CHECK_RC(hc_etag_match(full, flen - 1, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match(full, flen, ETAG), 1);
	for (size_t n = 0; n <= flen; n++) {
		int got = hc_etag_match(full, n, ETAG);
		CHECK(got == 0 || got == 1 || got == HC_E_INVAL);
		CHECK(got != 1 || n >= close);
	}

	/* Every prefix of a lone tag is malformed, the whole of it matches. */
	for (size_t n = 0; n < 14; n++)
		CHECK_RC(hc_etag_match(TAG, n, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match(TAG, 14, ETAG), 1);

	/* A tag cut short whose continuation in memory would match. */
	static const char cut[] = "\"0123456789a\"b\"";
	CHECK_RC(hc_etag_match(cut, 13, ETAG), 0);

	/* Heap blocks exactly as long as the header, for ASan. */
	static const char *const ends[] = {"\"aaa\"",	      "\"aaa\",",   "\"aaa\", ",
					   "\"aaa\", \"",     "\"aaa\", W", "\"aaa\", W/",
					   "\"aaa\", W/\"01", "*"};
	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		size_t n = strlen(ends[i]);
		char *b = malloc(n);
		REQUIRE(b);
		memcpy(b, ends[i], n);
		int got = hc_etag_match(b, n, ETAG);
		CHECK(got == (i < 3 ? 0 : i == 7 ? 1 : HC_E_INVAL));
		free(b);
	}
}

/* Append @s to the growing header @b (capacity checked by the caller). */
static size_t put(char *b, size_t at, const char *s)
{
	size_t n = strlen(s);
	memcpy(b + at, s, n);
	return at + n;
}

static void test_match_long(void)
{
	const size_t reps = 20000; /* 20000 * 5 bytes = 100 KB of "x",  */
	const size_t cap = reps * 5 + 64;
	char *b = malloc(cap);
	REQUIRE(b);
	size_t n = 0;
	for (size_t i = 0; i < reps; i++)
		n = put(b, n, "\"x\", ");
	size_t body = n;
	CHECK_RC(hc_etag_match(b, body, ETAG), 0);
	n = put(b, body, TAG);
	CHECK_RC(hc_etag_match(b, n, ETAG), 1);
	n = put(b, body, "W/" TAG);
	CHECK_RC(hc_etag_match(b, n, ETAG), 1);
	n = put(b, body, "\"0123456789AB\"");
	CHECK_RC(hc_etag_match(b, n, ETAG), 0);
	n = put(b, body, TAG " x");
	CHECK_RC(hc_etag_match(b, n, ETAG), HC_E_INVAL);
	n = put(b, body, "*");
	CHECK_RC(hc_etag_match(b, n, ETAG), HC_E_INVAL);
	n = put(b, body, "\"0123456789ab");
	CHECK_RC(hc_etag_match(b, n, ETAG), HC_E_INVAL);
	/* the match first, then 100 KB of others: validated to the end */
	memmove(b + 16, b, body);
	memcpy(b, TAG ", ", 16);
	CHECK_RC(hc_etag_match(b, body + 16, ETAG), 1);
	b[body + 16 - 2] = 'x'; /* the last comma of the list becomes garbage */
	CHECK_RC(hc_etag_match(b, body + 14, ETAG), 1);
	CHECK_RC(hc_etag_match(b, body + 16, ETAG), HC_E_INVAL);

	/* 100 KB of whitespace and empty elements around the tag */
	memset(b, ' ', reps * 5);
	CHECK_RC(hc_etag_match(b, reps * 5, ETAG), HC_E_INVAL);
	for (size_t i = 0; i < reps * 5; i += 7)
		b[i] = ',';
	CHECK_RC(hc_etag_match(b, reps * 5, ETAG), HC_E_INVAL);
	memcpy(b + reps * 5 / 2, TAG, 14);
	b[reps * 5 / 2 - 1] = ',';
	b[reps * 5 / 2 + 14] = ',';
	CHECK_RC(hc_etag_match(b, reps * 5, ETAG), 1);
	free(b);

	/* 16 MiB of tags: linear work, far under a second even with sanitizers */
	const size_t big = (size_t)16 << 20;
	b = malloc(big);
	REQUIRE(b);
	for (size_t i = 0; i + 5 <= big; i += 5)
		memcpy(b + i, "\"x\", ", 5);
	size_t blen = big - big % 5 - 14 - 2;
	blen -= blen % 5;
	memcpy(b + blen, TAG, 14);
	blen += 14;
	uint64_t t0 = tu_now_ns();
	CHECK_RC(hc_etag_match(b, blen, ETAG), 1);
	/* a pathological run of quotes: every one opens or closes a tag */
	memset(b, '"', big);
	CHECK_RC(hc_etag_match(b, big, ETAG), HC_E_INVAL);
	CHECK_RC(hc_etag_match(b, big - 1, ETAG), HC_E_INVAL);
	memset(b, 'W', big);
	CHECK_RC(hc_etag_match(b, big, ETAG), HC_E_INVAL);
	uint64_t ms = (tu_now_ns() - t0) / 1000000u;
	CHECK(ms < 5000);
	free(b);
}

/*
 * Random valid lists built from known pieces, so the answer is known; then
 * the same lists with one malformed piece spliced in.
 */
static void test_match_generated(void)
{
	static const char *const others[] = {"\"\"",
					     "\"x\"",
					     "\"0123456789AB\"",
					     "\"0123456789a\"",
					     "\"0123456789abc\"",
					     "\"a,b\"",
					     "\"\x80\xff!\""};
	static const char *const ows[] = {"", " ", "\t", "  ", " \t "};
	static const char *const bad[] = {
		"x", "*", "w/\"0123456789ab\"", "W/", "\"open", "\"a b\"", "\x01", "W/ \"x\""};
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	char b[1024];

	for (int iter = 0; iter < 20000; iter++) {
		size_t n = 0;
		int want = 0, tags = 0, nel = 1 + (int)(tu_rand(&seed) % 8);
		int badat = -1;
		if (iter % 2) { /* a list of two or more, so that a bad "*" is in a list */
			nel += nel == 1;
			badat = (int)(tu_rand(&seed) % (uint64_t)nel);
		}
		n = put(b, n, ows[tu_rand(&seed) % 5]);
		for (int e = 0; e < nel; e++) {
			if (e) {
				n = put(b, n, ows[tu_rand(&seed) % 5]);
				n = put(b, n, ",");
				n = put(b, n, ows[tu_rand(&seed) % 5]);
			}
			uint64_t r = tu_rand(&seed);
			if (e == badat) {
				n = put(b, n, bad[r % (sizeof(bad) / sizeof(bad[0]))]);
				continue;
			}
			switch (r % 4) {
			case 0: /* empty element */
				break;
			case 1:
				n = put(b, n, (r >> 8) & 1 ? "W/" TAG : TAG);
				want = 1, tags++;
				break;
			default:
				if ((r >> 8) & 1)
					n = put(b, n, "W/");
				n = put(b, n,
					others[(r >> 9) % (sizeof(others) / sizeof(others[0]))]);
				tags++;
			}
		}
		n = put(b, n, ows[tu_rand(&seed) % 5]);
		int expect = badat >= 0 || !tags ? HC_E_INVAL : want;
		int got = hc_etag_match(b, n, ETAG);
		if (got != expect) {
			fprintf(stderr, "%s:%d: hc_etag_match(\"%.*s\") = %d, want %d\n", __FILE__,
				__LINE__, (int)n, b, got, expect);
			tu_failures++;
		}
	}

	/* Arbitrary bytes of the significant alphabet: an answer, no crash. */
	static const char alpha[] = "\"W/, \t*w0a\0\x7f\x80";
	for (int iter = 0; iter < 50000; iter++) {
		size_t n = tu_rand(&seed) % 24;
		char *h = malloc(n ? n : 1);
		REQUIRE(h);
		for (size_t i = 0; i < n; i++)
			h[i] = alpha[tu_rand(&seed) % (sizeof(alpha) - 1)];
		int got = hc_etag_match(h, n, ETAG);
		CHECK(got == 0 || got == 1 || got == HC_E_INVAL);
		free(h);
	}
}

/* Round trip: what hc_etag_format writes, hc_etag_match matches. */
static void test_roundtrip(void)
{
	uint64_t seed = 12345;
	char t[HC_ETAG_BUFSZ], w[HC_ETAG_BUFSZ + 2];
	for (int i = 0; i < 10000; i++) {
		uint64_t e = tu_rand(&seed);
		CHECK_RC(hc_etag_format(e, t, sizeof(t)), 14);
		CHECK_RC(hc_etag_match(t, 14, e), 1);
		CHECK_RC(hc_etag_match(t, 14, e ^ (UINT64_C(1) << (i % 48))), 0);
		CHECK_RC(hc_etag_match(t, 14, e ^ (UINT64_C(1) << (48 + i % 16))), 1);
		snprintf(w, sizeof(w), "W/%s", t);
		CHECK_RC(hc_etag_match(w, 16, e), 1);
	}
}

static void test_format(void)
{
	static const struct {
		uint64_t etag;
		const char *want;
	} cases[] = {
		{0, "\"000000000000\""},
		{1, "\"000000000001\""},
		{UINT64_C(0x0123456789ab), TAG},
		{ETAG, TAG},
		{UINT64_C(0xabcdef), "\"000000abcdef\""},
		{UINT64_C(0xffffffffffff), "\"ffffffffffff\""},
		{UINT64_C(0x1000000000000), "\"000000000000\""}, /* bit 48 */
		{UINT64_C(0xffff000000000000), "\"000000000000\""},
		{UINT64_MAX, "\"ffffffffffff\""},
		{UINT64_C(0x8000800000000001), "\"800000000001\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char b[32];
		memset(b, '#', sizeof(b));
		CHECK_RC(hc_etag_format(cases[i].etag, b, HC_ETAG_BUFSZ), 14);
		CHECK(strcmp(b, cases[i].want) == 0);
		CHECK(b[14] == '\0' && b[15] == '#'); /* nothing past the NUL */
		CHECK_RC(hc_etag_format(cases[i].etag, b, sizeof(b)), 14);
		CHECK(strcmp(b, cases[i].want) == 0);
		CHECK_RC(hc_etag_format(cases[i].etag, b, SIZE_MAX), 14);
		CHECK(strcmp(b, cases[i].want) == 0);
	}
	CHECK(HC_ETAG_BUFSZ == 16);

	/* a heap block of exactly HC_ETAG_BUFSZ */
	char *h = malloc(HC_ETAG_BUFSZ);
	REQUIRE(h);
	CHECK_RC(hc_etag_format(ETAG, h, HC_ETAG_BUFSZ), 14);
	CHECK(memcmp(h, TAG, 15) == 0);
	free(h);

	/* below HC_ETAG_BUFSZ: TOOSMALL, "" when there is room for it */
	char b[32];
	for (size_t cap = 1; cap < HC_ETAG_BUFSZ; cap++) {
		memset(b, '#', sizeof(b));
		CHECK_RC(hc_etag_format(ETAG, b, cap), HC_E_TOOSMALL);
		CHECK(b[0] == '\0' && b[1] == '#');
	}
	memset(b, '#', sizeof(b));
	CHECK_RC(hc_etag_format(ETAG, b, 15), HC_E_TOOSMALL);
	CHECK_RC(hc_etag_format(ETAG, b, 0), HC_E_TOOSMALL);
	memset(b, '#', sizeof(b));
	CHECK_RC(hc_etag_format(ETAG, b, 0), HC_E_TOOSMALL);
	CHECK(b[0] == '#');
	CHECK_RC(hc_etag_format(ETAG, NULL, HC_ETAG_BUFSZ), HC_E_INVAL);
	CHECK_RC(hc_etag_format(ETAG, NULL, 0), HC_E_INVAL);
}

struct cc_case {
	int64_t ttl, stale;
	const char *want;
	int line;
};

#define CC(t, s, w)               \
	{                         \
		t, s, w, __LINE__ \
	}
#define YEAR "max-age=31536000"

static const struct cc_case cc_cases[] = {
	/* fresh, no stale window */
	CC(60000, 60000, "max-age=60"), CC(60000, 0, "max-age=60"), CC(60000, -1, "max-age=60"),
	CC(60000, 30000, "max-age=60"), /* inconsistent: stale before fresh ends */
	CC(1, 1, "max-age=0"), CC(0, 0, "max-age=0"),

	/* sub-second rounding: down */
	CC(999, 999, "max-age=0"), CC(1000, 1000, "max-age=1"), CC(1001, 1001, "max-age=1"),
	CC(1999, 1999, "max-age=1"), CC(2000, 2000, "max-age=2"),
	CC(86399999, 86399999, "max-age=86399"),

	/* with a stale window; the window is rounded as a whole */
	CC(60000, 90000, "max-age=60, stale-while-revalidate=30"), CC(1000, 1999, "max-age=1"),
	CC(1000, 2000, "max-age=1, stale-while-revalidate=1"),
	CC(1500, 2499, "max-age=1"), /* 999 ms of window: omitted */
	CC(1500, 2500, "max-age=1, stale-while-revalidate=1"), CC(999, 1998, "max-age=0"),
	CC(999, 1999, "max-age=0, stale-while-revalidate=1"), CC(0, 999, "max-age=0"),
	CC(0, 1000, "max-age=0, stale-while-revalidate=1"), CC(1, 1000, "max-age=0"),
	CC(1, 1001, "max-age=0, stale-while-revalidate=1"),
	CC(4294967295, 8589934590, "max-age=4294967, stale-while-revalidate=4294967"),

	/* stale: negative TTL left is max-age=0 */
	CC(-1, 0, "max-age=0"), CC(-1, -1, "max-age=0"), CC(-5000, -1, "max-age=0"),
	CC(-5000, 999, "max-age=0"), CC(-5000, 1000, "max-age=0, stale-while-revalidate=1"),
	CC(-5000, 10000, "max-age=0, stale-while-revalidate=10"),
	CC(-5000, 10999, "max-age=0, stale-while-revalidate=10"),
	CC(INT64_MIN, INT64_MIN, "max-age=0"), CC(INT64_MIN, 0, "max-age=0"),
	CC(INT64_MIN, 5000, "max-age=0, stale-while-revalidate=5"),

	/* never expires: one year, never a stale window */
	CC(INT64_MAX, INT64_MAX, YEAR), CC(INT64_MAX, 0, YEAR), CC(INT64_MAX, -1, YEAR),
	CC(INT64_MAX, INT64_MIN, YEAR),

	/* delta-seconds clamp at 2^31 (RFC 9111 1.2.2) */
	CC(INT64_C(2147483647999), 0, "max-age=2147483647"),
	CC(INT64_C(2147483648000), 0, "max-age=2147483648"),
	CC(INT64_C(2147483648999), 0, "max-age=2147483648"),
	CC(INT64_C(2147483649000), 0, "max-age=2147483648"),
	CC(INT64_MAX - 1, INT64_MAX - 1, "max-age=2147483648"),
	CC(INT64_MAX - 1, INT64_MAX, "max-age=2147483648"),
	CC(0, INT64_C(2147483647999), "max-age=0, stale-while-revalidate=2147483647"),
	CC(0, INT64_C(2147483648000), "max-age=0, stale-while-revalidate=2147483648"),
	CC(0, INT64_C(2147483649000), "max-age=0, stale-while-revalidate=2147483648"),
	CC(0, INT64_MAX, "max-age=0, stale-while-revalidate=2147483648"),
	CC(INT64_MIN, INT64_MAX, "max-age=0, stale-while-revalidate=2147483648"),
	CC(INT64_MAX / 2, INT64_MAX - 1,
	   "max-age=2147483648, stale-while-revalidate=2147483648"), /* the longest: 53 */
};

/* Run one case at capacity @cap in a heap block of exactly @cap bytes. */
static void cc_at(const struct cc_case *t, size_t cap)
{
	struct hc_meta m;
	memset(&m, 0xa5, sizeof(m)); /* the other fields play no part */
	m.ttl_left_ms = t->ttl;
	m.stale_left_ms = t->stale;
	size_t need = strlen(t->want) + 1;
	char *b = malloc(cap ? cap : 1);
	REQUIRE(b);
	memset(b, '#', cap ? cap : 1);
	int got = hc_cache_control(&m, b, cap);
	int ok;
	if (cap >= need)
		ok = got == (int)need - 1 && strcmp(b, t->want) == 0;
	else if (cap > 0)
		ok = got == HC_E_TOOSMALL && b[0] == '\0';
	else
		ok = got == HC_E_TOOSMALL && b[0] == '#';
	if (!ok) {
		fprintf(stderr, "%s:%d: hc_cache_control(case of line %d, cap %zu) = %d \"%.*s\"\n",
			__FILE__, __LINE__, t->line, cap, got, got >= 0 ? got : 0, b);
		tu_failures++;
	}
	free(b);
}

static void test_cache_control(void)
{
	for (size_t i = 0; i < sizeof(cc_cases) / sizeof(cc_cases[0]); i++) {
		const struct cc_case *t = &cc_cases[i];
		size_t need = strlen(t->want) + 1;
		CHECK(need <= 64);
		cc_at(t, need);	    /* just enough */
		cc_at(t, need + 1); /* one to spare */
		cc_at(t, 64);	    /* what the header promises suffices */
		cc_at(t, need - 1); /* no room for the NUL */
		cc_at(t, need - 2);
		cc_at(t, 1);
		cc_at(t, 0);
	}

	struct hc_meta m = {.ttl_left_ms = 60000, .stale_left_ms = 90000};
	char b[64];
	CHECK_RC(hc_cache_control(NULL, b, sizeof(b)), HC_E_INVAL);
	CHECK_RC(hc_cache_control(&m, NULL, sizeof(b)), HC_E_INVAL);
	CHECK_RC(hc_cache_control(&m, NULL, 0), HC_E_INVAL);
	CHECK_RC(hc_cache_control(NULL, NULL, 0), HC_E_INVAL);
	CHECK_RC(hc_cache_control(&m, b, SIZE_MAX), 37);
	CHECK(strcmp(b, "max-age=60, stale-while-revalidate=30") == 0);

	/* 64 bytes always suffice, whatever the metadata */
	uint64_t seed = 99;
	for (int i = 0; i < 100000; i++) {
		uint64_t r = tu_rand(&seed);
		m.ttl_left_ms = (int64_t)tu_rand(&seed) >> (r % 64);
		m.stale_left_ms = (int64_t)tu_rand(&seed) >> ((r >> 6) % 64);
		if ((r >> 12 & 1) && m.ttl_left_ms < INT64_MAX - 100000)
			m.stale_left_ms = m.ttl_left_ms + (int64_t)((r >> 13) % 100000);
		if ((r >> 40) % 50 == 0)
			m.ttl_left_ms = INT64_MAX;
		int n = hc_cache_control(&m, b, sizeof(b));
		CHECK(n > 0 && n < 64 && (size_t)n == strlen(b) && strncmp(b, "max-age=", 8) == 0);
	}
}

int main(void)
{
	test_format();
	test_match_table();
	test_match_args();
	test_match_not_terminated();
	test_match_long();
	test_match_generated();
	test_roundtrip();
	test_cache_control();
	return tu_done("test_http");
}
