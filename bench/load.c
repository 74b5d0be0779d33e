/*
 * load.c - hostcache-load: a small cache-aside load on a segment, as N
 * worker processes of an API would make it, for demos and for watching the
 * tools (shmtool stats, the dashboards) move.
 *
 * Each worker draws keys from a Zipf distribution over two entities
 * ("product:<id>" 70 %, "user:<id>" 30 %), reads them, and on a miss
 * "loads" the value (a deterministic body standing in for a database row)
 * and stores it with a TTL; a share of the operations are writes that
 * replace a value.  Every value read is checked against the body its key
 * must have.  Runs for a duration, then prints one summary line.
 *
 *   hostcache-load -n NAME [-p PROCS] [-t SECONDS] [-k KEYS] [-z SKEW]
 *                  [-w WRITE_PERCENT] [-v VALUE_BYTES] [-l TTL_MS]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostcache.h"
#include "rng.h"
#include "zipf.h"

struct totals {
	uint64_t ops, hits, misses, writes, bad;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The body key @id of @entity must have: the same in every process. */
static size_t make_body(char *buf, size_t len, const char *entity, uint64_t id, uint64_t version)
{
	int n = snprintf(buf, len, "{\"%s\":%" PRIu64 ",\"v\":%" PRIu64 ",\"pad\":\"", entity, id,
			 version);
	size_t i = (size_t)n;
	for (; i + 2 < len; i++)
		buf[i] = (char)('a' + (id + i) % 26);
	buf[i++] = '"';
	buf[i++] = '}';
	return i;
}

/* Does @val look like a body of @entity @id (any version)? */
static int body_ok(const char *val, size_t n, const char *entity, uint64_t id)
{
	char want[64];
	int w = snprintf(want, sizeof(want), "{\"%s\":%" PRIu64 ",\"v\":", entity, id);
	if (n < (size_t)w + 2 || memcmp(val, want, (size_t)w) != 0)
		return 0;
	return val[n - 1] == '}' && val[n - 2] == '"';
}

static int worker(const char *name, uint64_t keys, double skew, unsigned write_pct, size_t vbytes,
		  uint32_t ttl, uint64_t end_ms, struct totals *out, unsigned seed)
{
	struct hc_cache *c;
	int rc = hc_open(name, NULL, &c);
	if (rc) {
		fprintf(stderr, "hostcache-load: open of '%s' failed: %s\n", name, hc_strerror(rc));
		return 1;
	}
	struct zipf z;
	zipf_init(&z, keys, skew);
	uint64_t rng = seed * UINT64_C(0x9e3779b97f4a7c15) + 1;
	char key[64], *val = malloc(vbytes + 64), *buf = malloc(vbytes + 64);
	struct totals t = {0};
	uint64_t version = 1;
	while (!stop) {
		if ((t.ops & 1023) == 0 && now_ms() >= end_ms)
			break;
		uint64_t id = zipf_next(&z, &rng);
		const char *entity = rng_below(&rng, 10) < 7 ? "product" : "user";
		int kl = snprintf(key, sizeof(key), "%s:%" PRIu64, entity, id);
		t.ops++;
		if (rng_below(&rng, 100) < write_pct) {
			size_t n = make_body(val, vbytes, entity, id, version++);
			if (hc_set(c, key, (size_t)kl, val, n, ttl) == 0)
				t.writes++;
			continue;
		}
		size_t n;
		rc = hc_get(c, key, (size_t)kl, buf, vbytes + 64, &n);
		if (rc == 0) {
			t.hits++;
			if (!body_ok(buf, n, entity, id))
				t.bad++;
		} else {
			t.misses++;
			n = make_body(val, vbytes, entity, id, 0);
			hc_set(c, key, (size_t)kl, val, n, ttl);
		}
	}
	free(val);
	free(buf);
	hc_close(c);
	__atomic_add_fetch(&out->ops, t.ops, __ATOMIC_RELAXED);
	__atomic_add_fetch(&out->hits, t.hits, __ATOMIC_RELAXED);
	__atomic_add_fetch(&out->misses, t.misses, __ATOMIC_RELAXED);
	__atomic_add_fetch(&out->writes, t.writes, __ATOMIC_RELAXED);
	__atomic_add_fetch(&out->bad, t.bad, __ATOMIC_RELAXED);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: hostcache-load -n NAME [-p PROCS] [-t SECONDS] [-k KEYS] [-z SKEW]\n"
		   "                      [-w WRITE_PERCENT] [-v VALUE_BYTES] [-l TTL_MS]\n");
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	const char *name = getenv("HOSTCACHE_NAME");
	uint64_t procs = 2, secs = 10, keys = 100000, write_pct = 5, vbytes = 300, ttl = 30000;
	double skew = 0.99;
	int ch;
	while ((ch = getopt(argc, argv, "hn:p:t:k:z:w:v:l:")) != -1) {
		int bad = 0;
		switch (ch) {
		case 'n':
			name = optarg;
			break;
		case 'p':
			bad = parse_u64(optarg, 1, 256, &procs);
			break;
		case 't':
			bad = parse_u64(optarg, 1, 86400, &secs);
			break;
		case 'k':
			bad = parse_u64(optarg, 1, UINT64_C(1) << 32, &keys);
			break;
		case 'z': {
			char *end;
			skew = strtod(optarg, &end);
			bad = *end || end == optarg || !(skew > 0 && skew < 10);
			break;
		}
		case 'w':
			bad = parse_u64(optarg, 0, 100, &write_pct);
			break;
		case 'v':
			bad = parse_u64(optarg, 64, 1u << 20, &vbytes);
			break;
		case 'l':
			bad = parse_u64(optarg, 0, UINT32_MAX, &ttl);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "hostcache-load: bad value for -%c: '%s'\n", ch, optarg);
			return 2;
		}
	}
	if (!name || optind != argc) {
		usage(stderr);
		return 2;
	}
	struct totals *tot =
		mmap(NULL, sizeof(*tot), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (tot == MAP_FAILED) {
		perror("hostcache-load: mmap");
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	uint64_t start = now_ms(), end = start + secs * 1000;
	pid_t *pids = calloc(procs, sizeof(*pids));
	for (uint64_t i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("hostcache-load: fork");
			return 1;
		}
		if (pids[i] == 0)
			_exit(worker(name, keys, skew, (unsigned)write_pct, vbytes, (uint32_t)ttl,
				     end, tot, (unsigned)i + 1));
	}
	int failed = 0;
	for (uint64_t i = 0; i < procs; i++) {
		int st;
		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			kill(pids[i], SIGTERM);
		failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	double elapsed = (now_ms() - start) / 1000.0;
	uint64_t reads = tot->hits + tot->misses;
	printf("hostcache-load: %" PRIu64 " processes, %.1f s, %.2f M ops/s, hit ratio %.1f %%, "
	       "%" PRIu64 " writes, %" PRIu64 " bad values\n",
	       procs, elapsed, tot->ops / elapsed / 1e6, reads ? 100.0 * tot->hits / reads : 0.0,
	       tot->writes, tot->bad);
	free(pids);
	return failed || tot->bad ? 1 : 0;
}
