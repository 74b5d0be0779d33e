/*
 * test_segment.c - creating, attaching and refusing segments: the creation
 * race, a creator that died mid-way, names, sizes, permissions, foreign or
 * incompatible objects, read-only handles, fork(), thread slots.
 *
 * Links the internal library to know the header layout it corrupts.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "layout.h"
#include "testutil.h"

static struct hc_options small = {
	.flags = HC_CREATE, .size = 4u << 20, .max_value = 16384, .max_threads = 16};

static void shm_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/shm/hostcache.%s", name);
}

/* Rewrite header bytes of segment @name at @off. */
static void poke(const char *name, size_t off, const void *bytes, size_t n)
{
	char p[256];
	shm_path(name, p, sizeof(p));
	int fd = open(p, O_RDWR);
	REQUIRE(fd >= 0);
	REQUIRE(pwrite(fd, bytes, n, (off_t)off) == (ssize_t)n);
	close(fd);
}

static void test_names_and_sizes(void)
{
	struct hc_cache *c = (struct hc_cache *)1;
	CHECK_RC(hc_open("", &small, &c), HC_E_INVAL);
	CHECK(c == NULL);
	CHECK_RC(hc_open(NULL, &small, &c), HC_E_INVAL);
	CHECK_RC(hc_open("a/b", &small, &c), HC_E_INVAL);
	CHECK_RC(hc_open(".hidden", &small, &c), HC_E_INVAL);
	CHECK_RC(hc_open("sp ace", &small, &c), HC_E_INVAL);
	char longname[HC_NAME_MAX + 2];
	memset(longname, 'n', sizeof(longname));
	longname[HC_NAME_MAX + 1] = '\0';
	CHECK_RC(hc_open(longname, &small, &c), HC_E_INVAL);
	CHECK_RC(hc_open("x", &small, NULL), HC_E_INVAL);
	CHECK_RC(hc_open(tu_name("missing"), NULL, &c), -ENOENT);

	struct hc_options o = small;
	o.size = 64u << 10; /* no room for one slab */
	CHECK_RC(hc_open(tu_name("tiny"), &o, &c), HC_E_INVAL);
	o = small;
	o.max_value = (64u << 20) + 1;
	CHECK_RC(hc_open(tu_name("bigval"), &o, &c), HC_E_INVAL);
	o = small;
	o.max_threads = HC_MAX_THREADS_LIMIT + 1;
	CHECK_RC(hc_open(tu_name("threads"), &o, &c), HC_E_INVAL);
	o = small;
	o.flags = HC_CREATE | HC_RDONLY;
	CHECK_RC(hc_open(tu_name("rdcreate"), &o, &c), HC_E_INVAL);
	o.flags = 0x100;
	CHECK_RC(hc_open(tu_name("flags"), &o, &c), HC_E_INVAL);
	CHECK_RC(hc_unlink("a/b"), HC_E_INVAL);
	CHECK_RC(hc_unlink(tu_name("never")), -ENOENT);
	hc_close(NULL);
}

static void test_attach_and_modes(void)
{
	const char *name = tu_name("attach");
	struct hc_cache *a, *b, *r;
	REQUIRE(hc_open(name, &small, &a) == 0);
	struct hc_options excl = small;
	excl.flags |= HC_EXCL;
	CHECK_RC(hc_open(name, &excl, &b), HC_E_EXISTS);
	REQUIRE(hc_open(name, NULL, &b) == 0);
	CHECK_RC(hc_set(a, "k", 1, "v1", 2, 0), 0);
	char buf[16];
	size_t n;
	CHECK_RC(hc_get(b, "k", 1, buf, sizeof(buf), &n), 0);
	CHECK(n == 2 && memcmp(buf, "v1", 2) == 0);

	/* mode 0600, owner us */
	char p[256];
	struct stat st;
	shm_path(name, p, sizeof(p));
	REQUIRE(stat(p, &st) == 0);
	CHECK((st.st_mode & 07777) == 0600);
	CHECK(st.st_uid == geteuid());

	/* read-only: inspection works, writes and reads that need a slot do not */
	struct hc_options ro = {.flags = HC_RDONLY};
	REQUIRE(hc_open(name, &ro, &r) == 0);
	CHECK_RC(hc_set(r, "k", 1, "x", 1, 0), HC_E_READONLY);
	CHECK_RC(hc_del(r, "k", 1), HC_E_READONLY);
	CHECK_RC(hc_flush(r), HC_E_READONLY);
	struct hc_stats s;
	CHECK_RC(hc_stats(r, &s), 0);
	CHECK(s.items == 1);
	struct hc_info in;
	CHECK_RC(hc_info(r, &in), 0);
	CHECK(in.read_only == 1 && in.max_value == 16384 && in.max_threads == 16);
	CHECK(in.arena_bytes + in.index_bytes + in.meta_bytes == in.size);
	hc_close(r);
	hc_close(b);
	hc_close(a);
	CHECK_RC(hc_unlink(name), 0);

	/* group access */
	name = tu_name("group");
	struct hc_options g = small;
	g.flags |= HC_GROUP;
	REQUIRE(hc_open(name, &g, &a) == 0);
	shm_path(name, p, sizeof(p));
	REQUIRE(stat(p, &st) == 0);
	CHECK((st.st_mode & 07777) == 0660);
	hc_close(a);
	CHECK_RC(hc_unlink(name), 0);
}

static void test_refusals(void)
{
	const char *name = tu_name("refuse");
	struct hc_cache *a, *b;
	char p[256];
	REQUIRE(hc_open(name, &small, &a) == 0);
	hc_close(a);
	shm_path(name, p, sizeof(p));

	/* accessible to others */
	REQUIRE(chmod(p, 0666) == 0);
	CHECK_RC(hc_open(name, NULL, &b), HC_E_PERM);
	REQUIRE(chmod(p, 0600) == 0);
	/* owned by someone else (needs root to arrange) */
	if (geteuid() == 0) {
		REQUIRE(chown(p, 12345, 12345) == 0);
		CHECK_RC(hc_open(name, NULL, &b), HC_E_PERM);
		REQUIRE(chown(p, 0, 0) == 0);
	}
	/* group segment of a group we are in is fine */
	REQUIRE(chmod(p, 0660) == 0);
	if (hc_open(name, NULL, &b) == 0)
		hc_close(b);
	else
		CHECK(!"group segment refused");
	REQUIRE(chmod(p, 0600) == 0);

	/* another ABI version */
	uint32_t abi = HC_ABI_VERSION + 1;
	poke(name, offsetof(struct hc_header, abi_version), &abi, sizeof(abi));
	CHECK_RC(hc_open(name, NULL, &b), HC_E_VERSION);
	abi = HC_ABI_VERSION;
	poke(name, offsetof(struct hc_header, abi_version), &abi, sizeof(abi));
	/* another layout */
	uint32_t lh = hc_layout_hash() ^ 1;
	poke(name, offsetof(struct hc_header, layout_hash), &lh, sizeof(lh));
	CHECK_RC(hc_open(name, NULL, &b), HC_E_VERSION);
	lh = hc_layout_hash();
	poke(name, offsetof(struct hc_header, layout_hash), &lh, sizeof(lh));
	/* inconsistent geometry */
	uint32_t nslabs = 1u << 30;
	uint32_t saved;
	{
		int fd = open(p, O_RDONLY);
		REQUIRE(pread(fd, &saved, 4, offsetof(struct hc_header, nslabs)) == 4);
		close(fd);
	}
	poke(name, offsetof(struct hc_header, nslabs), &nslabs, sizeof(nslabs));
	CHECK_RC(hc_open(name, NULL, &b), HC_E_CORRUPT);
	poke(name, offsetof(struct hc_header, nslabs), &saved, sizeof(saved));
	REQUIRE(hc_open(name, NULL, &b) == 0);
	hc_close(b);
	/* truncated */
	REQUIRE(truncate(p, 1u << 20) == 0);
	CHECK_RC(hc_open(name, NULL, &b), HC_E_CORRUPT);
	/* a foreign object of the same name */
	uint64_t junk = 0x1122334455667788ull;
	poke(name, 0, &junk, sizeof(junk));
	CHECK_RC(hc_open(name, NULL, &b), HC_E_BADMAGIC);
	CHECK_RC(hc_unlink(name), 0);

	/* a symlink in /dev/shm is not followed */
	name = tu_name("link");
	shm_path(name, p, sizeof(p));
	REQUIRE(symlink("/etc/passwd", p) == 0);
	int rc = hc_open(name, NULL, &b);
	CHECK(rc == -ELOOP);
	unlink(p);
}

/* A creator that died before initialising leaves an empty or half-made object. */
static void test_dead_creator(void)
{
	const char *name = tu_name("deadcreator");
	char shm[256];
	snprintf(shm, sizeof(shm), "/hostcache.%s", name);
	int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	struct hc_cache *c;
	struct hc_options wait = {.open_timeout_ms = 100};
	CHECK_RC(hc_open(name, &wait, &c), HC_E_INIT);
	struct hc_options o = small;
	o.open_timeout_ms = 100;
	uint64_t t0 = tu_now_ns();
	CHECK_RC(hc_open(name, &o, &c), 0);
	CHECK(tu_now_ns() - t0 < 2000000000u);
	CHECK_RC(hc_set(c, "k", 1, "v", 1, 0), 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);

	/* full size, magic never written */
	name = tu_name("halfmade");
	snprintf(shm, sizeof(shm), "/hostcache.%s", name);
	fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(ftruncate(fd, 4u << 20) == 0);
	uint32_t busy = HC_INIT_BUSY;
	REQUIRE(pwrite(fd, &busy, 4, offsetof(struct hc_header, init_state)) == 4);
	close(fd);
	CHECK_RC(hc_open(name, &wait, &c), HC_E_INIT);
	CHECK_RC(hc_open(name, &o, &c), 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

/* Many processes create the same segment at once: one initialises, all share it. */
static void test_creation_race(void)
{
	enum { N = 8 };
	const char *name = tu_name("race");
	volatile int *go =
		mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(go != MAP_FAILED);
	pid_t pids[N];
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		REQUIRE(pids[i] >= 0);
		if (pids[i] == 0) {
			while (!*go)
				;
			struct hc_cache *c;
			if (hc_open(name, &small, &c) != 0)
				_exit(1);
			char k[16];
			int kl = snprintf(k, sizeof(k), "p%d", i);
			int rc = hc_set(c, k, (size_t)kl, "x", 1, 0);
			struct hc_info in;
			hc_info(c, &in);
			hc_close(c);
			/* report who created it through the exit status */
			_exit(rc ? 2 : (in.creator_pid == getpid() ? 10 : 11));
		}
	}
	*go = 1;
	int creators = 0;
	for (int i = 0; i < N; i++) {
		int st;
		REQUIRE(waitpid(pids[i], &st, 0) == pids[i]);
		CHECK(WIFEXITED(st) && (WEXITSTATUS(st) == 10 || WEXITSTATUS(st) == 11));
		creators += WIFEXITED(st) && WEXITSTATUS(st) == 10;
	}
	CHECK(creators == 1);
	struct hc_cache *c;
	REQUIRE(hc_open(name, NULL, &c) == 0);
	for (int i = 0; i < N; i++) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "p%d", i);
		size_t n;
		CHECK_RC(hc_get(c, k, (size_t)kl, NULL, 0, &n), HC_E_TOOSMALL);
	}
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	munmap((void *)go, 4096);
}

static void test_fork(void)
{
	const char *name = tu_name("fork");
	struct hc_cache *c;
	REQUIRE(hc_open(name, &small, &c) == 0);
	CHECK_RC(hc_set(c, "k", 1, "parent", 6, 0), 0);
	pid_t p = fork();
	REQUIRE(p >= 0);
	if (p == 0) {
		char buf[16];
		size_t n;
		int bad = 0;
		bad |= hc_get(c, "k", 1, buf, sizeof(buf), &n) != HC_E_FORKED;
		bad |= hc_set(c, "k", 1, "child", 5, 0) != HC_E_FORKED;
		struct hc_stats s;
		bad |= hc_stats(c, &s) != HC_E_FORKED;
		hc_close(c); /* only unmaps */
		struct hc_cache *c2;
		bad |= hc_open(name, NULL, &c2) != 0;
		bad |= hc_get(c2, "k", 1, buf, sizeof(buf), &n) != 0;
		bad |= hc_set(c2, "k2", 2, "child", 5, 0) != 0;
		hc_close(c2);
		_exit(bad);
	}
	int st;
	REQUIRE(waitpid(p, &st, 0) == p);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char buf[16];
	size_t n;
	CHECK_RC(hc_get(c, "k", 1, buf, sizeof(buf), &n), 0);
	CHECK_RC(hc_get(c, "k2", 2, buf, sizeof(buf), &n), 0);
	CHECK(n == 5 && memcmp(buf, "child", 5) == 0);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

struct slot_arg {
	struct hc_cache *c;
	int rc;
	pthread_barrier_t *hold;
};

static void *slot_thread(void *p)
{
	struct slot_arg *a = p;
	size_t n;
	__atomic_store_n(&a->rc, hc_get(a->c, "k", 1, NULL, 0, &n), __ATOMIC_RELEASE);
	pthread_barrier_wait(a->hold);
	return NULL;
}

/* A full thread-slot table refuses new threads; exiting threads give theirs back. */
static void test_thread_slots(void)
{
	const char *name = tu_name("slots");
	struct hc_options o = small;
	o.max_threads = 4;
	struct hc_cache *c;
	REQUIRE(hc_open(name, &o, &c) == 0);
	CHECK_RC(hc_set(c, "k", 1, "v", 1, 0), 0); /* main thread: slot 1 of 4 */
	pthread_barrier_t hold;
	pthread_barrier_init(&hold, NULL, 5);
	pthread_t th[4];
	struct slot_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct slot_arg){c, 1, &hold};
		pthread_create(&th[i], NULL, slot_thread, &args[i]);
	}
	/* every thread has its answer before the barrier lets it go (not a
	 * fixed sleep: a slow machine can take longer, and a sleep orders
	 * nothing) */
	int ok = 0, noslot = 0;
	for (int tries = 0; tries < 2000 && ok + noslot < 4; tries++) {
		ok = noslot = 0;
		for (int i = 0; i < 4; i++) {
			int rc = __atomic_load_n(&args[i].rc, __ATOMIC_ACQUIRE);
			ok += rc == HC_E_TOOSMALL;
			noslot += rc == HC_E_NOSLOT;
		}
		if (ok + noslot < 4)
			tu_sleep_ms(5);
	}
	CHECK(ok == 3 && noslot == 1);
	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.threads_active == 4);
	pthread_barrier_wait(&hold);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.threads_active == 1);
	/* the freed slots serve new threads */
	pthread_barrier_destroy(&hold);
	pthread_barrier_init(&hold, NULL, 4);
	for (int i = 0; i < 3; i++) {
		args[i] = (struct slot_arg){c, 1, &hold};
		pthread_create(&th[i], NULL, slot_thread, &args[i]);
	}
	pthread_barrier_wait(&hold);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		CHECK_RC(args[i].rc, HC_E_TOOSMALL);
	}
	pthread_barrier_destroy(&hold);

	/* slots of a killed process are reaped when the table runs full */
	pid_t p = fork();
	REQUIRE(p >= 0);
	if (p == 0) {
		struct hc_cache *cc;
		if (hc_open(name, NULL, &cc) != 0)
			_exit(1);
		size_t n;
		hc_get(cc, "k", 1, NULL, 0, &n);
		raise(SIGKILL);
	}
	REQUIRE(waitpid(p, NULL, 0) == p);
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.threads_active == 2); /* ours and the dead child's */
	pthread_barrier_init(&hold, NULL, 4);
	for (int i = 0; i < 3; i++) {
		args[i] = (struct slot_arg){c, 1, &hold};
		pthread_create(&th[i], NULL, slot_thread, &args[i]);
	}
	pthread_barrier_wait(&hold);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		CHECK_RC(args[i].rc, HC_E_TOOSMALL);
	}
	pthread_barrier_destroy(&hold);
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.slots_reaped >= 1);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
}

static void test_strerror(void)
{
	for (int e = HC_E_BUSY; e <= HC_E_NOTFOUND; e++) {
		const char *m = hc_strerror(e);
		CHECK(m && strlen(m) > 5 && strcmp(m, "unknown error") != 0);
	}
	CHECK(strstr(hc_strerror(-ENOENT), "No such file") != NULL);
	CHECK(strcmp(hc_strerror(12345), "unknown error") == 0);
	CHECK(strcmp(hc_strerror(0), "success") == 0);
}

int main(void)
{
	test_names_and_sizes();
	test_attach_and_modes();
	test_refusals();
	test_dead_creator();
	test_creation_race();
	test_fork();
	test_thread_slots();
	test_strerror();
	return tu_done("test_segment");
}
