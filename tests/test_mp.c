/*
 * test_mp.c - many processes, one segment: no reader ever sees a torn or
 * wrong value, and every key ends in the state its last writer left.
 *
 * Phase 1 (exact): each key has one owning writer process, so its final
 * value is known: the writers log the last version they stored or that
 * they deleted it, and afterwards every key must read back exactly that.
 * The segment is large enough that nothing is evicted.
 *
 * Phase 2 (pressure): a small segment, values of many sizes (so several
 * size classes compete and slabs move), every writer writes every key,
 * readers verify checksums; eviction runs all the time.
 *
 * Each process runs two threads.  Values carry a checksum over their bytes
 * and the key id (testutil.h).  After each phase the segment validator
 * must find no error and no warning.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "testutil.h"

#define NKEYS 3000
#define WRITERS 2
#define READERS 2
#define THREADS 2

struct shared {
	volatile int go;
	volatile int stop;
	uint64_t bad_values; /* torn or wrong values seen */
	uint64_t errors;     /* unexpected return codes */
	uint64_t reads, hits, writes;
	uint32_t last_version[NKEYS]; /* phase 1: owner's last stored version; 0 = deleted */
	uint8_t touched[NKEYS];
};

static struct shared *sh;
static const char *seg;
static int pressure;
static unsigned seconds;

static size_t value_len(uint32_t key, uint32_t version)
{
	if (!pressure)
		return 16 + (key % 200);
	/* many sizes: 16 B .. ~12 KiB, so classes compete for slabs */
	uint32_t r = (key * 2654435761u) ^ (version * 40503u);
	switch (r % 4) {
	case 0:
		return 16 + r % 64;
	case 1:
		return 100 + r % 400;
	case 2:
		return 1000 + r % 3000;
	default:
		return 4000 + r % 8000;
	}
}

struct targ {
	struct hc_cache *c;
	int role; /* 0 writer, 1 reader */
	int proc;
	int thread;
};

static void *worker(void *arg)
{
	struct targ *a = arg;
	uint64_t rng = (uint64_t)getpid() * 7919 + (uint64_t)a->thread * 104729 + 1;
	static __thread uint8_t buf[16384];
	char key[32];
	uint32_t version = 1;

	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		uint32_t k = (uint32_t)(tu_rand(&rng) % NKEYS);
		int kl = snprintf(key, sizeof(key), "mp:%u", k);
		if (a->role == 0) {
			/* phase 1: a key belongs to one writer thread */
			if (!pressure &&
			    k % (WRITERS * THREADS) != (uint32_t)(a->proc * THREADS + a->thread))
				continue;
			if (tu_rand(&rng) % 10 == 0) {
				int rc = hc_del(a->c, key, (size_t)kl);
				if (rc != 0 && rc != HC_E_NOTFOUND)
					__atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
				if (!pressure) {
					sh->last_version[k] = 0;
					sh->touched[k] = 1;
				}
			} else {
				uint32_t ver = version++;
				size_t n = tu_make_value(buf, value_len(k, ver), k, ver);
				int rc = hc_set(a->c, key, (size_t)kl, buf, n, 0);
				if (rc != 0) {
					fprintf(stderr, "set: %s\n", hc_strerror(rc));
					__atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
				} else if (!pressure) {
					sh->last_version[k] = ver;
					sh->touched[k] = 1;
				}
			}
			__atomic_add_fetch(&sh->writes, 1, __ATOMIC_RELAXED);
		} else {
			size_t n = 0;
			int rc;
			if (tu_rand(&rng) % 8 == 0) {
				struct hc_view v;
				rc = hc_view_get(a->c, key, (size_t)kl, &v);
				if (rc == 0) {
					if (tu_check_value(v.data, v.len, k) != 0)
						__atomic_add_fetch(&sh->bad_values, 1,
								   __ATOMIC_RELAXED);
					hc_view_release(a->c, &v);
				}
			} else {
				rc = hc_get(a->c, key, (size_t)kl, buf, sizeof(buf), &n);
				if (rc == 0 && tu_check_value(buf, n, k) != 0)
					__atomic_add_fetch(&sh->bad_values, 1, __ATOMIC_RELAXED);
			}
			if (rc != 0 && rc != HC_E_NOTFOUND) {
				fprintf(stderr, "get: %s\n", hc_strerror(rc));
				__atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
			}
			__atomic_add_fetch(&sh->reads, 1, __ATOMIC_RELAXED);
			if (rc == 0)
				__atomic_add_fetch(&sh->hits, 1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

static void log_stderr(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= HC_LOG_WARN)
		fprintf(stderr, "hostcache[%d]: %s\n", (int)getpid(), msg);
}

static void child(int role, int proc)
{
	struct hc_cache *c;
	int rc = hc_open(seg, &(struct hc_options){.log = log_stderr}, &c);
	if (rc) {
		fprintf(stderr, "child open: %s\n", hc_strerror(rc));
		_exit(3);
	}
	while (!__atomic_load_n(&sh->go, __ATOMIC_ACQUIRE))
		;
	pthread_t th[THREADS];
	struct targ args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct targ){c, role, proc, i};
		pthread_create(&th[i], NULL, worker, &args[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	hc_close(c);
	_exit(0);
}

static void on_finding(void *ctx, int sev, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "check %s: %s\n", sev == HC_CHECK_ERROR ? "ERROR" : "WARN", msg);
}

static void run_phase(int with_pressure)
{
	pressure = with_pressure;
	memset(sh, 0, sizeof(*sh));
	seg = tu_name(pressure ? "mp-pressure" : "mp-exact");
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL,
			       .size = pressure ? (6u << 20) : (32u << 20),
			       .max_value = 16384,
			       .max_threads = 64};
	struct hc_cache *c;
	REQUIRE(hc_open(seg, &o, &c) == 0);

	pid_t pids[WRITERS + READERS];
	for (int i = 0; i < WRITERS + READERS; i++) {
		pids[i] = fork();
		REQUIRE(pids[i] >= 0);
		if (pids[i] == 0)
			child(i < WRITERS ? 0 : 1, i < WRITERS ? i : i - WRITERS);
	}
	__atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
	tu_sleep_ms(seconds * 1000);
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < WRITERS + READERS; i++) {
		int st;
		REQUIRE(waitpid(pids[i], &st, 0) == pids[i]);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}

	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	printf("%s: %llu reads (%llu hits), %llu writes, %llu evictions, %llu slab moves, "
	       "%llu grace periods, %llu stalls\n",
	       pressure ? "pressure" : "exact", (unsigned long long)sh->reads,
	       (unsigned long long)sh->hits, (unsigned long long)sh->writes,
	       (unsigned long long)s.layer[HC_LAYER_L1].evictions, (unsigned long long)s.slab_moves,
	       (unsigned long long)s.reclaim_waits, (unsigned long long)s.reclaim_stalls);
	CHECK(sh->bad_values == 0);
	CHECK(sh->errors == 0);
	CHECK(sh->reads > 1000 && sh->writes > 1000);
	CHECK(sh->hits > 0);
	if (pressure)
		CHECK(s.layer[HC_LAYER_L1].evictions > 0);

	/* final state of every key */
	uint8_t buf[16384];
	for (uint32_t k = 0; k < NKEYS; k++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "mp:%u", k);
		size_t n;
		int rc = hc_get(c, key, (size_t)kl, buf, sizeof(buf), &n);
		if (rc == 0)
			CHECK(tu_check_value(buf, n, k) == 0);
		else
			CHECK_RC(rc, HC_E_NOTFOUND);
		if (!pressure && sh->touched[k]) {
			if (sh->last_version[k] == 0) {
				CHECK_RC(rc, HC_E_NOTFOUND);
			} else {
				uint32_t ver = 0;
				if (rc == 0)
					memcpy(&ver, buf + 12, 4);
				CHECK_RC(rc, 0);
				CHECK(ver == sh->last_version[k]);
			}
		}
	}
	struct hc_check_result r;
	CHECK_RC(hc_check(c, on_finding, NULL, &r), 0);
	CHECK(r.errors == 0 && r.warnings == 0);
	printf("check: %llu entries, %llu blocks (%llu live, %llu retired)\n",
	       (unsigned long long)r.entries, (unsigned long long)r.blocks,
	       (unsigned long long)r.blocks_live, (unsigned long long)r.blocks_retired);
	hc_close(c);
	CHECK_RC(hc_unlink(seg), 0);
}

int main(int argc, char **argv)
{
	seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
	if (seconds == 0)
		seconds = 1;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(sh != MAP_FAILED);
	run_phase(0);
	run_phase(1);
	return tu_done("test_mp");
}
