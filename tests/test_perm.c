/*
 * test_perm.c - the permission model with real users (docs/security.md):
 * child processes that drop to uid "nobody", with or without the segment's
 * group, try to attach, read and write segments made by this (root)
 * process; modes that give others access, symlinks and non-files at the
 * segment's path; every writing call on a read-only handle; shmtool's
 * read-only commands for a user who may read a segment but not write it.
 *
 * Needs root to make processes of other users: exits 77 (skip) otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

#define NOBODY 65534
#define NOGROUP 65534
#define TEST_GID 23456 /* a group nobody else has: the segments' group */

static const char *shmtool_path;

static const struct hc_options small = {
	.flags = HC_CREATE, .size = 4u << 20, .max_threads = 8, .max_value = 4096};

/* Every path a test makes, removed at exit whatever happened (children _exit). */
static char made[16][300];

static void remove_made(void)
{
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
		if (made[i][0] && unlink(made[i]) != 0 && errno == EISDIR)
			rmdir(made[i]);
}

static void shm_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/shm/hostcache.%s", name);
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		if (!made[i][0]) {
			snprintf(made[i], sizeof(made[i]), "%s", buf);
			break;
		}
	}
}

/* The identity a child takes: uid, primary gid, supplementary groups. */
struct who {
	uid_t uid;
	gid_t gid;
	size_t ngroups;
	gid_t groups[2];
};

static const struct who nobody = {NOBODY, NOGROUP, 1, {NOGROUP}};
static const struct who member = {NOBODY, NOGROUP, 2, {NOGROUP, TEST_GID}};

static void become(const struct who *w)
{
	if (setgroups(w->ngroups, w->groups) != 0 || setgid(w->gid) != 0 || setuid(w->uid) != 0) {
		perror("test_perm: dropping privileges");
		_exit(3);
	}
	if (geteuid() != w->uid || getegid() != w->gid || setuid(0) == 0) {
		fprintf(stderr, "test_perm: still privileged after setuid\n");
		_exit(3);
	}
}

/* Fork a child that becomes @w: 0 in the child, its pid in the parent. */
static pid_t fork_as(const struct who *w)
{
	fflush(NULL);
	pid_t p = fork();
	REQUIRE(p >= 0);
	if (p == 0)
		become(w);
	return p;
}

static int exit_status(pid_t p)
{
	int st;
	REQUIRE(waitpid(p, &st, 0) == p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Run @fn(@arg) in a child as @w; its checks count there.  Returns its exit status. */
static int as_user(const struct who *w, void (*fn)(const char *), const char *arg)
{
	pid_t p = fork_as(w);
	if (p == 0) {
		tu_failures = 0;
		fn(arg);
		_exit(tu_failures ? 1 : 0);
	}
	return exit_status(p);
}

/* shmtool -n @name @cmd [@arg] as @w, its standard output thrown away; its exit status. */
static int shmtool_as(const struct who *w, const char *name, const char *cmd, const char *arg)
{
	pid_t p = fork_as(w);
	if (p == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(3);
		execl(shmtool_path, "shmtool", "-n", name, cmd, arg, (char *)NULL);
		_exit(127);
	}
	return exit_status(p);
}

/* @key holds @want in @c (a read-write handle). */
static void check_value(struct hc_cache *c, const char *key, const char *want)
{
	char buf[64];
	size_t n = 0;
	CHECK_RC(hc_get(c, key, strlen(key), buf, sizeof(buf), &n), 0);
	CHECK(n == strlen(want) && memcmp(buf, want, n) == 0);
}

/* ---------------------------------------------------------------------- */

/* Another user: no attach of a 0600 segment, read-only or not, no bytes through the file. */
static void other_user_refused(const char *name)
{
	struct hc_cache *c;
	char p[256];
	shm_path(name, p, sizeof(p));
	CHECK_RC(hc_open(name, NULL, &c), -EACCES);
	CHECK_RC(hc_open(name, &(struct hc_options){.flags = HC_RDONLY}, &c), -EACCES);
	CHECK_RC(hc_open(name, &small, &c), -EACCES); /* HC_CREATE: not a way in either */
	errno = 0;
	CHECK(open(p, O_RDONLY) < 0 && errno == EACCES);
	CHECK(open(p, O_WRONLY | O_TRUNC) < 0 && errno == EACCES);
	/* nor may it remove the name (/dev/shm is sticky) */
	CHECK(hc_unlink(name) < 0);
}

static void test_other_user(void)
{
	const char *name = tu_name("perm-other");
	struct hc_cache *c;
	char p[256];
	shm_path(name, p, sizeof(p));
	REQUIRE(hc_open(name, &small, &c) == 0);
	CHECK_RC(hc_set(c, "secret", 6, "s3cr3t", 6, 0), 0);
	CHECK(as_user(&nobody, other_user_refused, name) == 0);
	/* in its group or not, a 0600 segment is the owner's alone */
	REQUIRE(chown(p, 0, TEST_GID) == 0);
	CHECK(as_user(&member, other_user_refused, name) == 0);
	/* untouched */
	struct stat st;
	REQUIRE(stat(p, &st) == 0);
	CHECK((st.st_mode & 07777) == 0600);
	check_value(c, "secret", "s3cr3t");
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	printf("other user: 0600 segment refused (attach, read-only attach, open, unlink)\n");
}

/* ---------------------------------------------------------------------- */

static void member_reads_and_writes(const char *name)
{
	struct hc_cache *c;
	int rc = hc_open(name, NULL, &c);
	CHECK_RC(rc, 0);
	if (rc)
		return;
	check_value(c, "from-owner", "hello");
	CHECK_RC(hc_set(c, "from-member", 11, "hi", 2, 0), 0);
	struct hc_check_result r;
	CHECK_RC(hc_check(c, NULL, NULL, &r), 0);
	CHECK(r.errors == 0);
	hc_close(c);
}

/* Group read-only (0640): a read-only attach, and nothing more. */
static void member_reads_only(const char *name)
{
	struct hc_cache *c;
	CHECK_RC(hc_open(name, NULL, &c), -EACCES); /* read-write: the kernel says no */
	int rc = hc_open(name, &(struct hc_options){.flags = HC_RDONLY}, &c);
	CHECK_RC(rc, 0);
	if (rc)
		return;
	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.items == 2);
	CHECK_RC(hc_set(c, "k", 1, "v", 1, 0), HC_E_READONLY);
	hc_close(c);
}

static void test_group(void)
{
	const char *name = tu_name("perm-group");
	struct hc_options o = small;
	o.flags |= HC_GROUP;
	struct hc_cache *c;
	char p[256];
	shm_path(name, p, sizeof(p));
	REQUIRE(hc_open(name, &o, &c) == 0);
	REQUIRE(chown(p, 0, TEST_GID) == 0);
	CHECK_RC(hc_set(c, "from-owner", 10, "hello", 5, 0), 0);

	CHECK(as_user(&member, member_reads_and_writes, name) == 0);
	check_value(c, "from-member", "hi");
	CHECK(as_user(&nobody, other_user_refused, name) == 0);

	/* group read-only: tools of the group look, cannot touch */
	REQUIRE(chmod(p, 0640) == 0);
	CHECK(as_user(&member, member_reads_only, name) == 0);
	CHECK(as_user(&nobody, other_user_refused, name) == 0);
	if (shmtool_path) {
		/* the read-only commands work ... */
		CHECK(shmtool_as(&member, name, "info", NULL) == 0);
		CHECK(shmtool_as(&member, name, "stats", "--json") == 0);
		CHECK(shmtool_as(&member, name, "check", NULL) == 0);
		CHECK(shmtool_as(&member, name, "readers", NULL) == 0);
		/* ... the others are refused, and change nothing */
		CHECK(shmtool_as(&member, name, "set", "x") == 1);
		CHECK(shmtool_as(&member, name, "del", "from-owner") == 1);
		CHECK(shmtool_as(&member, name, "flush", NULL) == 1);
		CHECK(shmtool_as(&member, name, "readers", "--reap") == 1);
		CHECK(shmtool_as(&member, name, "destroy", NULL) == 1);
		/* nobody outside the group gets even the read-only ones */
		CHECK(shmtool_as(&nobody, name, "info", NULL) == 1);
		CHECK(shmtool_as(&nobody, name, "stats", NULL) == 1);
		check_value(c, "from-owner", "hello");
		CHECK(access(p, F_OK) == 0);
	}
	struct hc_stats s;
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.items == 2);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	printf("group: a member reads and writes a 0660 segment, only reads a 0640 one%s; "
	       "others are refused\n",
	       shmtool_path ? " (shmtool info/stats/check/readers too)" : "");
}

/* ---------------------------------------------------------------------- */

/* Any access for others is refused, to the owner too, read-only or not. */
static void test_modes(void)
{
	const char *name = tu_name("perm-modes");
	struct hc_cache *c, *b;
	char p[256];
	shm_path(name, p, sizeof(p));
	REQUIRE(hc_open(name, &small, &c) == 0);
	static const mode_t open_to_others[] = {0644, 0604, 0666, 0606, 0601, 0664, 0646, 0602};
	for (size_t i = 0; i < sizeof(open_to_others) / sizeof(open_to_others[0]); i++) {
		REQUIRE(chmod(p, open_to_others[i]) == 0);
		CHECK_RC(hc_open(name, NULL, &b), HC_E_PERM);
		CHECK_RC(hc_open(name, &(struct hc_options){.flags = HC_RDONLY}, &b), HC_E_PERM);
		CHECK_RC(hc_open(name, &small, &b), HC_E_PERM);
	}
	/* the owner's own modes without others are fine */
	static const mode_t fine[] = {0600, 0640, 0660};
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		REQUIRE(chmod(p, fine[i]) == 0);
		CHECK_RC(hc_open(name, NULL, &b), 0);
		hc_close(b);
	}
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	printf("modes: 0644 0604 0666 0606 0601 0664 0646 0602 refused\n");
}

/* A symlink or a non-file at a segment's path is never followed, used or replaced. */
static void test_paths(void)
{
	const char *victim = tu_name("perm-victim");
	const char *name = tu_name("perm-link");
	struct hc_cache *v, *b;
	char vp[256], p[256];
	shm_path(victim, vp, sizeof(vp));
	shm_path(name, p, sizeof(p));
	REQUIRE(hc_open(victim, &small, &v) == 0);
	CHECK_RC(hc_set(v, "k", 1, "victim", 6, 0), 0);

	/* a link to a real segment */
	REQUIRE(symlink(vp, p) == 0);
	CHECK_RC(hc_open(name, NULL, &b), -ELOOP);
	CHECK_RC(hc_open(name, &(struct hc_options){.flags = HC_RDONLY}, &b), -ELOOP);
	CHECK_RC(hc_open(name, &small, &b), -ELOOP);
	struct hc_options excl = small;
	excl.flags |= HC_EXCL;
	CHECK_RC(hc_open(name, &excl, &b), -ELOOP);
	struct stat st;
	CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode)); /* not replaced */
	REQUIRE(unlink(p) == 0);

	/* a dangling link: HC_CREATE does not create its target */
	char target[300];
	snprintf(target, sizeof(target), "%s-target", vp);
	REQUIRE(symlink(target, p) == 0);
	CHECK_RC(hc_open(name, &small, &b), -ELOOP);
	CHECK(access(target, F_OK) != 0 && errno == ENOENT);
	REQUIRE(unlink(p) == 0);

	/* a FIFO and a directory */
	REQUIRE(mkfifo(p, 0600) == 0);
	CHECK_RC(hc_open(name, NULL, &b), HC_E_PERM);
	REQUIRE(unlink(p) == 0);
	REQUIRE(mkdir(p, 0700) == 0);
	int rc = hc_open(name, NULL, &b);
	CHECK(rc < 0); /* shm_open: -EINVAL */
	REQUIRE(rmdir(p) == 0);

	/* the victim is untouched */
	check_value(v, "k", "victim");
	hc_close(v);
	CHECK_RC(hc_unlink(victim), 0);
	printf("paths: symlinks (to a segment, dangling), a FIFO and a directory refused\n");
}

/* ---------------------------------------------------------------------- */

static int one_loader(void *ctx, const void *key, size_t klen, struct hc_load *ld)
{
	(void)key, (void)klen;
	++*(int *)ctx;
	return hc_load_value(ld, "loaded", 6);
}

static int batch_loader(void *ctx, const struct hc_batch_item *const *items, size_t n,
			struct hc_load *lds, int *rc)
{
	(void)items;
	++*(int *)ctx;
	for (size_t i = 0; i < n; i++)
		rc[i] = hc_load_value(&lds[i], "loaded", 6);
	return 0;
}

static int count_item(void *ctx, const struct hc_item *it)
{
	(void)it;
	++*(int *)ctx;
	return 0;
}

/* Every call that writes returns HC_E_READONLY on a read-only handle; the inspecting ones work. */
static void test_readonly_calls(void)
{
	const char *name = tu_name("perm-ro");
	struct hc_cache *c, *r;
	char p[256];
	shm_path(name, p, sizeof(p));
	REQUIRE(hc_open(name, &small, &c) == 0);
	CHECK_RC(hc_set(c, "k", 1, "value", 5, 0), 0);
	CHECK_RC(hc_set(c, "t", 1, "ttl", 3, 60000), 0);
	REQUIRE(hc_open(name, &(struct hc_options){.flags = HC_RDONLY}, &r) == 0);

	struct hc_set_opts so = {.ttl_ms = 1000};
	CHECK_RC(hc_set(r, "k", 1, "x", 1, 0), HC_E_READONLY);
	CHECK_RC(hc_set_ex(r, "k", 1, "x", 1, &so), HC_E_READONLY);
	CHECK_RC(hc_del(r, "k", 1), HC_E_READONLY);
	CHECK_RC(hc_flush(r), HC_E_READONLY);
	CHECK_RC(hc_invalidate(r, "k", 1), HC_E_READONLY);
	CHECK_RC(hc_mark_stale(r), HC_E_READONLY);
	CHECK_RC(hc_maintain(r, 0), HC_E_READONLY);
	CHECK_RC(hc_entity_beta(r, "product", 2.0), HC_E_READONLY);
	CHECK_RC(hc_agent_begin(r), HC_E_READONLY);
	int loads = 0;
	char buf[64];
	size_t n;
	struct hc_load_opts lo = {.ttl_ms = 1000, .flags = HC_LOAD_NO_L2};
	CHECK_RC(hc_get_or_load(r, "new", 3, one_loader, &loads, &lo, buf, sizeof(buf), &n, NULL),
		 HC_E_READONLY);
	struct hc_batch_item items[2] = {{.key = "a", .klen = 1, .buf = buf, .cap = 32},
					 {.key = "b", .klen = 1, .buf = buf + 32, .cap = 32}};
	CHECK_RC(hc_get_many(r, items, 2, batch_loader, &loads, &lo), HC_E_READONLY);
	CHECK(loads == 0); /* no loader ran: its value could not be stored */
	/* a dump loaded into it */
	FILE *f = tmpfile();
	REQUIRE(f);
	CHECK(hc_dump(c, fileno(f)) == 2);
	REQUIRE(lseek(fileno(f), 0, SEEK_SET) == 0);
	CHECK_RC(hc_load(r, fileno(f)), HC_E_READONLY);
	fclose(f);
	/* lookups take a reader slot, which a read-only handle has none of */
	CHECK_RC(hc_get(r, "k", 1, buf, sizeof(buf), &n), HC_E_READONLY);
	struct hc_view view;
	CHECK_RC(hc_view_get(r, "k", 1, &view), HC_E_READONLY);

	/* what a tool needs works */
	struct hc_stats s;
	CHECK_RC(hc_stats(r, &s), 0);
	CHECK(s.items == 2);
	struct hc_info in;
	CHECK_RC(hc_info(r, &in), 0);
	CHECK(in.read_only == 1);
	int items_seen = 0;
	CHECK_RC(hc_scan(r, count_item, &items_seen), 0);
	CHECK(items_seen == 2);
	struct hc_check_result cr;
	CHECK_RC(hc_check(r, NULL, NULL, &cr), 0);
	CHECK(cr.errors == 0);
	f = tmpfile();
	REQUIRE(f);
	CHECK(hc_dump(r, fileno(f)) == 2);
	fclose(f);

	/* nothing changed */
	check_value(c, "k", "value");
	CHECK_RC(hc_stats(c, &s), 0);
	CHECK(s.items == 2);
	hc_close(r);
	hc_close(c);
	CHECK_RC(hc_unlink(name), 0);
	printf("read-only handle: 12 writing calls refused with HC_E_READONLY, get/view too; "
	       "stats, info, scan, check, dump work\n");
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("test_perm: SKIP: needs root, to run child processes as other users\n");
		return 77;
	}
	if (argc > 1)
		shmtool_path = argv[1];
	atexit(remove_made);
	test_modes();
	test_paths();
	test_readonly_calls();
	test_other_user();
	test_group();
	return tu_done("test_perm");
}
