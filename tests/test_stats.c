/*
 * test_stats.c - the statistics: attribution of every operation to the
 * entity (key prefix) it belongs to, checked against hc_entity_of() for
 * hand-picked keys at the word boundaries of the prefix scanner and for
 * random keys; the overflow entity; counters that survive the exit and the
 * SIGKILL of the process that made them; items and bytes per class; the
 * count of active threads.  Public API only.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "testutil.h"

static struct hc_cache *open_new(const char *name, uint64_t size)
{
	struct hc_options o = {
		.flags = HC_CREATE | HC_EXCL, .size = size, .max_threads = 16, .max_value = 4096};
	struct hc_cache *c;
	int rc = hc_open(name, &o, &c);
	if (rc)
		fprintf(stderr, "hc_open(%s): %s\n", name, hc_strerror(rc));
	REQUIRE(rc == 0);
	return c;
}

/* The entity of @name in @st, or NULL. */
static const struct hc_entity_stats *entity(const struct hc_stats *st, const char *name)
{
	for (uint32_t i = 0; i < st->nentities && i < HC_MAX_ENTITIES; i++)
		if (strcmp(st->entity[i].name, name) == 0)
			return &st->entity[i];
	return NULL;
}

/* The L1 totals of @st equal the sums over its entities, every counter. */
static void check_totals(const struct hc_stats *st)
{
	CHECK(st->nentities <= HC_MAX_ENTITIES);
	for (int l = 0; l < HC_LAYER_COUNT; l++) {
		const uint64_t *tot = (const uint64_t *)&st->layer[l];
		for (size_t k = 0; k < sizeof(struct hc_counters) / 8; k++) {
			uint64_t sum = 0;
			for (uint32_t e = 0; e < st->nentities && e < HC_MAX_ENTITIES; e++)
				sum += ((const uint64_t *)&st->entity[e].layer[l])[k];
			CHECK(sum == tot[k]);
			if (sum != tot[k])
				fprintf(stderr, "layer %d counter %zu: total %llu, entities %llu\n",
					l, k, (unsigned long long)tot[k], (unsigned long long)sum);
		}
	}
}

/* Reference: the entity prefix length, as documented. */
static size_t ref_entity_len(const uint8_t *k, size_t klen)
{
	size_t lim = klen < HC_ENTITY_NAME_MAX + 1 ? klen : HC_ENTITY_NAME_MAX + 1;
	for (size_t i = 0; i < lim; i++)
		if (k[i] == ':')
			return i;
	return 0;
}

/* ---------------------------------------------------------------------- */

struct tkey {
	char key[80];
	size_t klen;
	char ent[HC_ENTITY_NAME_MAX + 1]; /* expected entity name */
};

struct expect {
	char name[HC_ENTITY_NAME_MAX + 1];
	uint64_t hits, misses, sets, deletes;
};

static struct expect *expect_of(struct expect *ex, int *nex, const char *name)
{
	for (int i = 0; i < *nex; i++)
		if (strcmp(ex[i].name, name) == 0)
			return &ex[i];
	struct expect *e = &ex[(*nex)++];
	memset(e, 0, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", name);
	return e;
}

static struct expect *find_expect(struct expect *ex, int nex, const char *name)
{
	for (int i = 0; i < nex; i++)
		if (strcmp(ex[i].name, name) == 0)
			return &ex[i];
	return NULL;
}

static int add_key(struct tkey *t, int n, const char *key, size_t klen, const char *ent)
{
	REQUIRE(klen < sizeof(t[n].key));
	memcpy(t[n].key, key, klen);
	t[n].klen = klen;
	snprintf(t[n].ent, sizeof(t[n].ent), "%s", ent);
	return n + 1;
}

/* A prefix of @len characters, unique per length: "p<len>" padded with letters. */
static void make_prefix(char *out, size_t len)
{
	char head[16];
	int h = snprintf(head, sizeof(head), "p%zu", len);
	for (size_t i = 0; i < len; i++)
		out[i] = i < (size_t)h ? head[i] : (char)('a' + (i * 7 + len) % 26);
	out[len] = '\0';
}

static void test_attribution(void)
{
	const char *name = tu_name("st-ent");
	struct hc_cache *c = open_new(name, 8u << 20);
	static struct tkey keys[256];
	int n = 0;
	n = add_key(keys, n, "user:1", 6, "user");
	n = add_key(keys, n, "user:2", 6, "user");
	n = add_key(keys, n, "product:42", 10, "product");
	n = add_key(keys, n, "a:b", 3, "a");
	n = add_key(keys, n, "x:y:z", 5, "x");
	n = add_key(keys, n, "nocolon", 7, "");
	n = add_key(keys, n, ":leading", 8, "");
	n = add_key(keys, n, ":", 1, "");
	n = add_key(keys, n, "q:", 2, "q");
	n = add_key(keys, n, "ab:c", 4, "ab");
	n = add_key(keys, n, "abcdef:", 7, "abcdef");
	n = add_key(keys, n, "abcdefg:h", 9, "abcdefg");
	n = add_key(keys, n, "no colon in a key of thirty-one", 31, "");
	n = add_key(keys, n, "a key without colon, 40 bytes long.......", 40, "");
	n = add_key(keys, n, "a key whose colon comes after 32 bytes:x", 40, "");

	/* prefixes around the scanner's 8-byte words and the 31-byte limit, each with a
	 * key that ends at the colon, a short tail, and a long tail */
	const size_t lens[] = {1,  2,  6,  7,  8,  9,  10, 14, 15, 16,
			       17, 23, 24, 25, 30, 31, 32, 33, 40};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t L = lens[i];
		char p[64], k[80];
		make_prefix(p, L);
		const char *ent = L <= HC_ENTITY_NAME_MAX ? p : "";
		const size_t tails[] = {0, 1, 3, 7, 8, 60 - L};
		for (size_t j = 0; j < sizeof(tails) / sizeof(tails[0]); j++) {
			size_t kl = L + 1 + tails[j];
			memcpy(k, p, L);
			k[L] = ':';
			for (size_t q = 0; q < tails[j]; q++)
				k[L + 1 + q] = (char)('0' + q % 10);
			n = add_key(keys, n, k, kl, ent);
		}
		/* and the prefix alone, no colon */
		n = add_key(keys, n, p, L, "");
	}
	/* a second colon inside the first word does not matter, nor one right after the limit */
	n = add_key(keys, n, "aa:bb:cc:dd", 11, "aa");
	{
		char k[40];
		make_prefix(k, 32);
		k[32] = ':';
		k[31] = ':'; /* colon at 31: a 31-byte entity, klen 33 */
		char p31[40];
		memcpy(p31, k, 31);
		p31[31] = '\0';
		n = add_key(keys, n, k, 33, p31);
		k[31] = 'z'; /* colon at 32 only, the key is exactly 33 bytes */
		n = add_key(keys, n, k, 33, "");
		n = add_key(keys, n, k, 32, ""); /* no colon at all */
	}

	static struct expect ex[256];
	int nex = 0;
	expect_of(ex, &nex, ""); /* entity "" is always listed */
	for (int j = 0; j < n; j++) {
		struct tkey *t = &keys[j];
		size_t want = strlen(t->ent);
		CHECK(hc_entity_of(t->key, t->klen) == want);
		CHECK(ref_entity_len((const uint8_t *)t->key, t->klen) == want);
		if (hc_entity_of(t->key, t->klen) != want)
			fprintf(stderr, "hc_entity_of(\"%.*s\") = %zu, expected %zu\n",
				(int)t->klen, t->key, hc_entity_of(t->key, t->klen), want);
	}

	char mk[96];
	for (int j = 0; j < n; j++) {
		struct tkey *t = &keys[j];
		struct expect *e = expect_of(ex, &nex, t->ent);
		int sets = 1 + j % 3, hits = 1 + (j * 7) % 5, misses = 1 + j % 4;
		for (int r = 0; r < sets; r++)
			CHECK_RC(hc_set(c, t->key, t->klen, "v", 1, 0), 0);
		/* keys listed twice (same bytes) make no difference to the counts */
		e->sets += (uint64_t)sets;
		char v[4];
		size_t vl;
		for (int r = 0; r < hits; r++)
			CHECK_RC(hc_get(c, t->key, t->klen, v, sizeof(v), &vl), 0);
		e->hits += (uint64_t)hits;
		/* a miss on a key of the same entity: the key with a suffix */
		memcpy(mk, t->key, t->klen);
		memcpy(mk + t->klen, "#miss", 5);
		CHECK(hc_entity_of(mk, t->klen + 5) == strlen(t->ent));
		for (int r = 0; r < misses; r++)
			CHECK_RC(hc_get(c, mk, t->klen + 5, v, sizeof(v), &vl), HC_E_NOTFOUND);
		e->misses += (uint64_t)misses;
	}
	/* deletes of every third key */
	for (int j = 0; j < n; j += 3) {
		int rc = hc_del(c, keys[j].key, keys[j].klen);
		CHECK(rc == 0 || rc == HC_E_NOTFOUND);
		if (rc == 0)
			expect_of(ex, &nex, keys[j].ent)->deletes++;
	}

	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	check_totals(&st);
	uint64_t hits = 0, misses = 0, sets = 0, dels = 0;
	for (int i = 0; i < nex; i++) {
		const struct hc_entity_stats *es = entity(&st, ex[i].name);
		CHECK(es != NULL);
		if (!es) {
			fprintf(stderr, "entity \"%s\" missing\n", ex[i].name);
			continue;
		}
		const struct hc_counters *l1 = &es->layer[HC_LAYER_L1];
		CHECK(l1->sets == ex[i].sets);
		CHECK(l1->hits == ex[i].hits);
		CHECK(l1->misses == ex[i].misses);
		CHECK(l1->deletes == ex[i].deletes);
		if (l1->sets != ex[i].sets || l1->hits != ex[i].hits ||
		    l1->misses != ex[i].misses || l1->deletes != ex[i].deletes)
			fprintf(stderr,
				"entity \"%s\": sets %llu hits %llu misses %llu deletes %llu, "
				"expected %llu %llu %llu %llu\n",
				ex[i].name, (unsigned long long)l1->sets,
				(unsigned long long)l1->hits, (unsigned long long)l1->misses,
				(unsigned long long)l1->deletes, (unsigned long long)ex[i].sets,
				(unsigned long long)ex[i].hits, (unsigned long long)ex[i].misses,
				(unsigned long long)ex[i].deletes);
		/* nothing is counted in the other layers */
		CHECK(es->layer[HC_LAYER_L2].hits == 0 && es->layer[HC_LAYER_ORIGIN].hits == 0);
		hits += ex[i].hits;
		misses += ex[i].misses;
		sets += ex[i].sets;
		dels += ex[i].deletes;
	}
	/* every listed entity is one we expected, each once */
	CHECK(st.nentities == (uint32_t)nex);
	for (uint32_t i = 0; i < st.nentities; i++) {
		CHECK(find_expect(ex, nex, st.entity[i].name) != NULL);
		for (uint32_t j = i + 1; j < st.nentities; j++)
			CHECK(strcmp(st.entity[i].name, st.entity[j].name) != 0);
	}
	CHECK(entity(&st, "~other") == NULL);
	CHECK(st.layer[HC_LAYER_L1].hits == hits);
	CHECK(st.layer[HC_LAYER_L1].misses == misses);
	CHECK(st.layer[HC_LAYER_L1].sets == sets);
	CHECK(st.layer[HC_LAYER_L1].deletes == dels);

	/* a read-only handle sees the same numbers */
	struct hc_options ro = {.flags = HC_RDONLY};
	struct hc_cache *r;
	REQUIRE(hc_open(name, &ro, &r) == 0);
	struct hc_stats st2;
	CHECK_RC(hc_stats(r, &st2), 0);
	CHECK(st2.layer[HC_LAYER_L1].hits == hits && st2.layer[HC_LAYER_L1].sets == sets);
	CHECK(st2.nentities == st.nentities);
	hc_close(r);
	CHECK_RC(hc_stats(c, NULL), HC_E_INVAL);
	CHECK_RC(hc_stats(NULL, &st2), HC_E_INVAL);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/*
 * Random keys against hc_entity_of: each batch sets its keys once in a fresh
 * segment (few enough distinct prefixes that none overflows), and the sets
 * per entity name must be what hc_entity_of predicts.  Names are compared
 * as the C strings hc_stats reports (a prefix with a NUL byte shows up to
 * it), on both sides.
 */
static void test_random_keys(void)
{
	uint64_t seed = 0x12345678abcdefull;
	const int batches = 60, per_batch = 40;
	static struct expect ex[128];
	int total_keys = 0, prefixed = 0;
	for (int bt = 0; bt < batches; bt++) {
		const char *name = tu_name("st-rand");
		struct hc_cache *c = open_new(name, 2u << 20);
		int nex = 0;
		/* the density of ':' varies per batch, and a few batches draw from a tiny
		 * alphabet so that keys share prefixes */
		unsigned colon_per_256 = 4 + (unsigned)(bt * 7 % 60);
		bool tiny = bt % 5 == 4;
		for (int j = 0; j < per_batch; j++) {
			uint8_t k[64];
			size_t klen = 1 + (size_t)(tu_rand(&seed) % 60);
			for (size_t i = 0; i < klen; i++) {
				uint64_t r = tu_rand(&seed);
				if ((r & 0xff) < colon_per_256)
					k[i] = ':';
				else if (tiny)
					k[i] = "ab\0"[(r >> 8) % 3];
				else
					k[i] = (uint8_t)(r >> 8);
			}
			size_t el = hc_entity_of(k, klen);
			CHECK(el == ref_entity_len(k, klen));
			char ent[HC_ENTITY_NAME_MAX + 1];
			memcpy(ent, k, el);
			ent[el] = '\0';
			prefixed += el > 0;
			CHECK_RC(hc_set(c, k, klen, NULL, 0, 0), 0);
			expect_of(ex, &nex, ent)->sets++;
			CHECK_RC(hc_get(c, k, klen, NULL, 0, NULL), 0);
			expect_of(ex, &nex, ent)->hits++;
			total_keys++;
		}
		struct hc_stats st;
		CHECK_RC(hc_stats(c, &st), 0);
		check_totals(&st);
		CHECK(entity(&st, "~other") == NULL);
		CHECK(st.layer[HC_LAYER_L1].sets == (uint64_t)per_batch);
		/* the stats side, summed by name */
		static struct expect got[128];
		int ngot = 0;
		for (uint32_t i = 0; i < st.nentities; i++) {
			struct expect *g = expect_of(got, &ngot, st.entity[i].name);
			g->sets += st.entity[i].layer[HC_LAYER_L1].sets;
			g->hits += st.entity[i].layer[HC_LAYER_L1].hits;
		}
		for (int i = 0; i < nex; i++) {
			struct expect *g = expect_of(got, &ngot, ex[i].name);
			CHECK(g->sets == ex[i].sets && g->hits == ex[i].hits);
			if (g->sets != ex[i].sets || g->hits != ex[i].hits)
				fprintf(stderr,
					"batch %d entity \"%s\" (%zu bytes): %llu sets %llu hits, "
					"expected %llu %llu\n",
					bt, ex[i].name, strlen(ex[i].name),
					(unsigned long long)g->sets, (unsigned long long)g->hits,
					(unsigned long long)ex[i].sets,
					(unsigned long long)ex[i].hits);
		}
		for (int i = 0; i < ngot; i++) {
			const struct expect *e = find_expect(ex, nex, got[i].name);
			if (got[i].sets || got[i].hits)
				CHECK(e && e->sets == got[i].sets && e->hits == got[i].hits);
		}
		hc_close(c);
		CHECK_RC(hc_unlink(name), 0);
	}
	/* the batches did exercise prefixes */
	CHECK(prefixed > total_keys / 4);
	printf("random keys: %d, %d with an entity prefix\n", total_keys, prefixed);
}

/*
 * Every colon position in every key length up to 40, over fill bytes near
 * ':' in value or in bit pattern (the scanner tests eight bytes at once).
 */
static void test_colon_sweep(void)
{
	const uint8_t fills[] = {'k', ';', '9', 0xba, 0x3a ^ 0x01, 0x3a ^ 0xff, 0x80};
	for (size_t f = 0; f < sizeof(fills) / sizeof(fills[0]); f++) {
		const char *name = tu_name("st-sweep");
		struct hc_cache *c = open_new(name, 4u << 20);
		static struct expect ex[64];
		int nex = 0;
		uint64_t nkeys = 0;
		for (size_t klen = 1; klen <= 40; klen++) {
			for (long pos = -1; pos < (long)klen; pos++) {
				uint8_t k[48];
				memset(k, fills[f], klen);
				if (pos >= 0)
					k[pos] = ':';
				/* and a second colon further on, where there is room */
				if (pos >= 0 && (size_t)pos + 9 < klen)
					k[pos + 9] = ':';
				size_t want = (pos >= 0 && pos <= (long)HC_ENTITY_NAME_MAX)
						      ? (size_t)pos
						      : 0;
				CHECK(hc_entity_of(k, klen) == want);
				if (hc_entity_of(k, klen) != want)
					fprintf(stderr, "fill %#x klen %zu colon %ld: %zu\n",
						fills[f], klen, pos, hc_entity_of(k, klen));
				char ent[HC_ENTITY_NAME_MAX + 1];
				memcpy(ent, k, want);
				ent[want] = '\0';
				CHECK_RC(hc_set(c, k, klen, NULL, 0, 0), 0);
				expect_of(ex, &nex, ent)->sets++;
				nkeys++;
			}
		}
		struct hc_stats st;
		CHECK_RC(hc_stats(c, &st), 0);
		check_totals(&st);
		CHECK(st.layer[HC_LAYER_L1].sets == nkeys);
		CHECK(st.nentities == (uint32_t)nex);
		for (int i = 0; i < nex; i++) {
			const struct hc_entity_stats *es = entity(&st, ex[i].name);
			CHECK(es && es->layer[HC_LAYER_L1].sets == ex[i].sets);
			if (!es || es->layer[HC_LAYER_L1].sets != ex[i].sets)
				fprintf(stderr,
					"fill %#x entity of %zu bytes: %llu sets, expected %llu\n",
					fills[f], strlen(ex[i].name),
					es ? (unsigned long long)es->layer[HC_LAYER_L1].sets : 0ull,
					(unsigned long long)ex[i].sets);
		}
		hc_close(c);
		CHECK_RC(hc_unlink(name), 0);
	}
}

/* More distinct prefixes than the entity table holds. */
static void test_overflow(void)
{
	const char *name = tu_name("st-ovf");
	struct hc_cache *c = open_new(name, 8u << 20);
	const int n = 80;
	for (int i = 0; i < n; i++) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "ovf%02d:key", i);
		CHECK_RC(hc_set(c, k, (size_t)kl, "v", 1, 0), 0);
		CHECK_RC(hc_get(c, k, (size_t)kl, NULL, 0, NULL), HC_E_TOOSMALL);
	}
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	check_totals(&st);
	CHECK(st.nentities <= HC_MAX_ENTITIES);
	const struct hc_entity_stats *other = entity(&st, "~other");
	CHECK(other != NULL);
	int named = 0;
	uint64_t named_sets = 0;
	for (int i = 0; i < n; i++) {
		char e[32];
		snprintf(e, sizeof(e), "ovf%02d", i);
		const struct hc_entity_stats *es = entity(&st, e);
		if (es) {
			named++;
			named_sets += es->layer[HC_LAYER_L1].sets;
			CHECK(es->layer[HC_LAYER_L1].sets == 1 && es->layer[HC_LAYER_L1].hits == 1);
		}
	}
	/* ids 1..62 take names; "" and "~other" are the other two */
	CHECK(named == (int)HC_MAX_ENTITIES - 2);
	CHECK(named_sets == (uint64_t)named);
	if (other) {
		CHECK(other->layer[HC_LAYER_L1].sets == (uint64_t)(n - named));
		CHECK(other->layer[HC_LAYER_L1].hits == (uint64_t)(n - named));
	}
	CHECK(st.layer[HC_LAYER_L1].sets == (uint64_t)n);
	CHECK(st.nentities == HC_MAX_ENTITIES);
	/* the first names registered keep their own counts */
	const struct hc_entity_stats *first = entity(&st, "ovf00");
	CHECK(first && first->layer[HC_LAYER_L1].sets == 1);
	/* and a name seen again later still goes to the same place */
	CHECK_RC(hc_set(c, "ovf79:again", 11, "v", 1, 0), 0);
	CHECK_RC(hc_set(c, "ovf00:again", 11, "v", 1, 0), 0);
	CHECK_RC(hc_stats(c, &st), 0);
	check_totals(&st);
	other = entity(&st, "~other");
	first = entity(&st, "ovf00");
	CHECK(other && other->layer[HC_LAYER_L1].sets == (uint64_t)(n - named) + 1);
	CHECK(first && first->layer[HC_LAYER_L1].sets == 2);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* L1 counters of entity @e in @c (zeros if it is not listed). */
static struct hc_counters l1_of(struct hc_cache *c, const char *e)
{
	struct hc_stats st;
	struct hc_counters z = {0};
	CHECK_RC(hc_stats(c, &st), 0);
	check_totals(&st);
	const struct hc_entity_stats *es = entity(&st, e);
	return es ? es->layer[HC_LAYER_L1] : z;
}

static uint32_t threads_active(struct hc_cache *c)
{
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	return st.threads_active;
}

/* A child's counters stay when it exits, and when it is killed. */
static void test_survival(void)
{
	const char *name = tu_name("st-surv");
	struct hc_cache *c = open_new(name, 8u << 20);
	CHECK_RC(hc_set(c, "surv:1", 6, "value", 5, 0), 0);
	struct hc_counters before = l1_of(c, "surv");
	CHECK(before.sets == 1 && before.hits == 0);
	uint32_t ta = threads_active(c);
	CHECK(ta == 1);

	/* exit */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* an inherited handle is not usable; close it and open again */
		char v[16];
		size_t vl;
		CHECK_RC(hc_get(c, "surv:1", 6, v, sizeof(v), &vl), HC_E_FORKED);
		hc_close(c);
		struct hc_cache *cc;
		struct hc_options o = {0};
		REQUIRE(hc_open(name, &o, &cc) == 0);
		for (int i = 0; i < 1000; i++)
			CHECK_RC(hc_get(cc, "surv:1", 6, v, sizeof(v), &vl), 0);
		for (int i = 0; i < 500; i++)
			CHECK_RC(hc_get(cc, "surv:nope", 9, v, sizeof(v), &vl), HC_E_NOTFOUND);
		hc_close(cc);
		_exit(tu_failures ? 1 : 0);
	}
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	struct hc_counters after = l1_of(c, "surv");
	CHECK(after.hits == before.hits + 1000);
	CHECK(after.misses == before.misses + 500);
	CHECK(after.sets == before.sets);
	CHECK(threads_active(c) == ta);

	/* SIGKILL */
	int pfd[2];
	REQUIRE(pipe(pfd) == 0);
	before = after;
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		hc_close(c);
		struct hc_cache *cc;
		struct hc_options o = {0};
		REQUIRE(hc_open(name, &o, &cc) == 0);
		char v[16];
		size_t vl;
		for (int i = 0; i < 1000; i++)
			if (hc_get(cc, "surv:1", 6, v, sizeof(v), &vl) != 0)
				_exit(2);
		char b = 'k';
		if (write(pfd[1], &b, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(pfd[1]);
	char b;
	CHECK(read(pfd[0], &b, 1) == 1);
	close(pfd[0]);
	/* the live child's counters are visible while it lives */
	after = l1_of(c, "surv");
	CHECK(after.hits == before.hits + 1000);
	CHECK(threads_active(c) == ta + 1);
	REQUIRE(kill(pid, SIGKILL) == 0);
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* dead but not reaped: still counted */
	after = l1_of(c, "surv");
	CHECK(after.hits == before.hits + 1000);
	struct hc_stats st;
	CHECK_RC(hc_stats(c, &st), 0);
	uint64_t reaped_before = st.slots_reaped;
	CHECK_RC(hc_readers(c, 1, NULL, NULL), 1);
	after = l1_of(c, "surv");
	CHECK(after.hits == before.hits + 1000);
	CHECK(after.misses == before.misses);
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.slots_reaped == reaped_before + 1);
	CHECK(st.threads_active == ta);
	/* a second reap finds nothing and changes nothing */
	CHECK_RC(hc_readers(c, 1, NULL, NULL), 0);
	after = l1_of(c, "surv");
	CHECK(after.hits == before.hits + 1000);

	/* the parent's own counters survive its handle being closed */
	hc_close(c);
	struct hc_options o = {0};
	REQUIRE(hc_open(name, &o, &c) == 0);
	after = l1_of(c, "surv");
	CHECK(after.hits == before.hits + 1000 && after.sets == 1);
	CHECK(threads_active(c) == 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

static void sum_classes(const struct hc_stats *st, uint64_t *items, uint64_t *bytes)
{
	*items = *bytes = 0;
	for (uint32_t k = 0; k < st->nclasses && k < HC_MAX_CLASSES; k++) {
		*items += st->cls[k].items;
		*bytes += st->cls[k].bytes;
		CHECK(st->cls[k].items == 0 || st->cls[k].slabs > 0);
		/* an entry of a class fits its block */
		if (st->cls[k].items)
			CHECK(st->cls[k].bytes <=
			      st->cls[k].items * (uint64_t)(st->cls[k].block_size - 32));
	}
}

static void test_items_bytes(void)
{
	const char *name = tu_name("st-items");
	struct hc_cache *c = open_new(name, 16u << 20);
	const int n = 2000;
	static uint8_t val[4096];
	memset(val, 'v', sizeof(val));
	uint64_t items = 0, bytes = 0;
	size_t klens[2000], vlens[2000];
	for (int i = 0; i < n; i++) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "ib:%d", i);
		size_t vl = (size_t)(i * 37 % 4097);
		CHECK_RC(hc_set(c, k, (size_t)kl, val, vl, 0), 0);
		klens[i] = (size_t)kl;
		vlens[i] = vl;
		items++;
		bytes += (size_t)kl + vl;
	}
	struct hc_stats st;
	uint64_t ci, cb;
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.items == items && st.bytes == bytes);
	sum_classes(&st, &ci, &cb);
	CHECK(ci == st.items && cb == st.bytes);
	CHECK(st.layer[HC_LAYER_L1].evictions == 0);

	/* delete half */
	for (int i = 0; i < n; i += 2) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "ib:%d", i);
		CHECK_RC(hc_del(c, k, (size_t)kl), 0);
		items--;
		bytes -= klens[i] + vlens[i];
	}
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.items == items && st.bytes == bytes);
	CHECK(st.items == (uint64_t)n / 2);
	sum_classes(&st, &ci, &cb);
	CHECK(ci == st.items && cb == st.bytes);

	/* replace some with other sizes: the count stays, the bytes follow */
	for (int i = 1; i < n; i += 4) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "ib:%d", i);
		size_t nv = (vlens[i] + 1000) % 4097;
		CHECK_RC(hc_set(c, k, (size_t)kl, val, nv, 0), 0);
		bytes = bytes - vlens[i] + nv;
		vlens[i] = nv;
	}
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.items == items && st.bytes == bytes);
	sum_classes(&st, &ci, &cb);
	CHECK(ci == st.items && cb == st.bytes);

	/* flush: nothing left */
	CHECK(hc_flush(c) == (int64_t)items);
	CHECK_RC(hc_stats(c, &st), 0);
	CHECK(st.items == 0 && st.bytes == 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* threads_active: the threads that used the handle and still hold their slot. */
struct tctx {
	struct hc_cache *c;
	pthread_barrier_t *in, *out;
	int rc;
};

static void *user_thread(void *arg)
{
	struct tctx *t = arg;
	t->rc = hc_get(t->c, "t:k", 3, NULL, 0, NULL);
	pthread_barrier_wait(t->in);  /* slot taken */
	pthread_barrier_wait(t->out); /* main has counted */
	return NULL;
}

static void test_threads_active(void)
{
	const char *name = tu_name("st-thr");
	struct hc_cache *c = open_new(name, 8u << 20);
	CHECK(threads_active(c) == 0); /* hc_stats itself takes no slot */
	CHECK_RC(hc_set(c, "t:k", 3, "v", 1, 0), 0);
	CHECK(threads_active(c) == 1);
	enum { NT = 5 };
	pthread_barrier_t in, out;
	pthread_barrier_init(&in, NULL, NT + 1);
	pthread_barrier_init(&out, NULL, NT + 1);
	pthread_t th[NT];
	struct tctx t[NT];
	for (int i = 0; i < NT; i++) {
		t[i] = (struct tctx){.c = c, .in = &in, .out = &out};
		REQUIRE(pthread_create(&th[i], NULL, user_thread, &t[i]) == 0);
	}
	pthread_barrier_wait(&in);
	CHECK(threads_active(c) == 1 + NT);
	pthread_barrier_wait(&out);
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		CHECK_RC(t[i].rc, HC_E_TOOSMALL);
	}
	/* exited threads gave their slots back, their counts stay */
	CHECK(threads_active(c) == 1);
	struct hc_counters l1 = l1_of(c, "t");
	CHECK(l1.hits == NT && l1.sets == 1);
	pthread_barrier_destroy(&in);
	pthread_barrier_destroy(&out);

	/* a second handle in the same thread takes a slot of its own */
	struct hc_options o = {0};
	struct hc_cache *c2;
	REQUIRE(hc_open(name, &o, &c2) == 0);
	CHECK_RC(hc_get(c2, "t:k", 3, NULL, 0, NULL), HC_E_TOOSMALL);
	CHECK(threads_active(c) == 2);
	hc_close(c2);
	CHECK(threads_active(c) == 1);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

int main(void)
{
	test_attribution();
	test_random_keys();
	test_colon_sweep();
	test_overflow();
	test_survival();
	test_items_bytes();
	test_threads_active();
	return tu_done("test_stats");
}
