/*
 * data.c - the shmtool commands that change or read entries and the
 * segment's lifetime: create, destroy, get, set, del, keys, dump, load,
 * flush.  All of them attach read-write (create creates with HC_EXCL).
 *
 * Keys come from the command line as raw bytes, or with --escaped in the
 * form 'keys' prints (\\ and \xNN), so any key 'keys' lists can be read,
 * replaced or deleted.  Values are binary safe: get writes the raw bytes,
 * set reads them from its argument or from all of standard input.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmtool.h"

/* A KEY argument, decoded in place when --escaped. */
struct key_arg {
	const char *data;
	size_t len;
};

static int key_from_arg(struct tool *t, char *arg, bool escaped, struct key_arg *k)
{
	k->data = arg;
	k->len = strlen(arg);
	if (!escaped)
		return SHM_EXIT_OK;
	long n = shm_unescape(arg, k->len, arg);
	if (n < 0)
		return shm_usage_error(t,
				       "malformed escape in KEY (only \\\\ and \\xNN are known)");
	k->len = (size_t)n;
	return SHM_EXIT_OK;
}

/*
 * Report a failed operation on one entry, naming the key (escaped and
 * shortened: it may be binary and 250 bytes long) and, for HC_E_TOOBIG,
 * which limit was crossed.
 */
static int entry_fail(int rc, const char *op, const struct key_arg *k, size_t vlen,
		      uint32_t max_value)
{
	char shown[72];
	char detail[96] = "";
	shm_escape(shown, sizeof(shown), k->data, k->len);
	if (rc == HC_E_TOOBIG && k->len > HC_KEY_MAX)
		snprintf(detail, sizeof(detail), " (key is %zu bytes, at most %u)", k->len,
			 HC_KEY_MAX);
	else if (rc == HC_E_TOOBIG && vlen > max_value)
		snprintf(detail, sizeof(detail),
			 " (value over the segment's max_value, %" PRIu32 " bytes)", max_value);
	fprintf(stderr, "shmtool: %s '%s' failed: %s%s\n", op, shown, hc_strerror(rc), detail);
	return SHM_EXIT_FAIL;
}

/* Read @fd until EOF or @cap bytes.  Returns the count or -errno. */
static ssize_t read_all(int fd, void *buf, size_t cap)
{
	size_t got = 0;
	while (got < cap) {
		ssize_t n = read(fd, (char *)buf + got, cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int write_all(FILE *f, const void *buf, size_t len)
{
	return len == 0 || fwrite(buf, 1, len, f) == len ? 0 : -1;
}

int shm_cmd_create(struct tool *t, int argc, char **argv)
{
	enum { OPT_SIZE = 256, OPT_THREADS, OPT_MAXVAL, OPT_BPS, OPT_GROUP };
	static const struct option longopts[] = {
		{"size", required_argument, NULL, OPT_SIZE},
		{"max-threads", required_argument, NULL, OPT_THREADS},
		{"max-value", required_argument, NULL, OPT_MAXVAL},
		{"bytes-per-slot", required_argument, NULL, OPT_BPS},
		{"group", no_argument, NULL, OPT_GROUP},
		SHM_COMMON_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	struct hc_options o = {.flags = HC_CREATE | HC_EXCL};
	int ch, rc;
	uint64_t v;

	while ((ch = shm_getopt(t, argc, argv, "hn:", longopts, &rc)) != -1) {
		switch (ch) {
		case SHM_OPT_EXIT:
			return rc;
		case OPT_SIZE:
			if (shm_parse_size(optarg, UINT64_MAX, &o.size))
				return shm_usage_error(t, "invalid --size '%s' (bytes, K, M or G)",
						       optarg);
			break;
		case OPT_THREADS:
			if ((rc = shm_opt_u32(t, "--max-threads", optarg, &o.max_threads)))
				return rc;
			break;
		case OPT_MAXVAL:
		case OPT_BPS:
			if (shm_parse_size(optarg, UINT32_MAX, &v))
				return shm_usage_error(t, "invalid %s '%s' (bytes, K, M or G)",
						       ch == OPT_MAXVAL ? "--max-value"
									: "--bytes-per-slot",
						       optarg);
			if (ch == OPT_MAXVAL)
				o.max_value = (uint32_t)v;
			else
				o.bytes_per_slot = (uint32_t)v;
			break;
		case OPT_GROUP:
			o.flags |= HC_GROUP;
			break;
		}
	}
	if ((rc = shm_positional(t, argc, argv, 0, 0, "")) || (rc = shm_need_name(t)))
		return rc;

	struct hc_cache *c;
	rc = hc_open(t->name, &o, &c);
	if (rc < 0) {
		shm_fail(rc, "create '%s'", t->name);
		if (rc == HC_E_INVAL)
			fprintf(stderr, "shmtool: (names are [A-Za-z0-9._-]; the size must hold "
					"at least one slab of max-value; max-value and "
					"max-threads have upper limits)\n");
		return SHM_EXIT_FAIL;
	}
	struct hc_info info;
	rc = hc_info(c, &info);
	hc_close(c);
	if (rc < 0)
		return shm_fail(rc, "info '%s'", t->name);
	char size[32], maxv[32];
	printf("created '%s': %s, %u slabs, max value %s, %u thread slots, mode %04o\n", t->name,
	       shm_human_bytes(size, sizeof(size), info.size), info.slabs_total,
	       shm_human_bytes(maxv, sizeof(maxv), info.max_value), info.max_threads, info.mode);
	return SHM_EXIT_OK;
}

/*
 * The common start of a command with only the common options and up to
 * @max positional arguments: options, arguments, the name.  Returns true to
 * go on, else false with the exit status in *rc (-h is done too).
 */
static bool plain_command(struct tool *t, int argc, char **argv, int max, int *rc)
{
	static const struct option longopts[] = {SHM_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
	int ch;
	while ((ch = shm_getopt(t, argc, argv, "hn:", longopts, rc)) != -1)
		if (ch == SHM_OPT_EXIT)
			return false;
	if ((*rc = shm_positional(t, argc, argv, 0, max, "")) || (*rc = shm_need_name(t)))
		return false;
	return true;
}

int shm_cmd_destroy(struct tool *t, int argc, char **argv)
{
	int rc;
	if (!plain_command(t, argc, argv, 0, &rc))
		return rc;
	rc = hc_unlink(t->name);
	if (rc < 0)
		return shm_fail(rc, "destroy '%s'", t->name);
	return SHM_EXIT_OK;
}

static const char *layer_name(unsigned layer)
{
	static const char *const names[] = {"l1", "l2", "origin"};
	return layer < HC_LAYER_COUNT ? names[layer] : "?";
}

static void print_ms(FILE *f, const char *label, int64_t ms)
{
	if (ms == INT64_MAX)
		fprintf(f, "%s: never\n", label);
	else
		fprintf(f, "%s: %" PRId64 "\n", label, ms);
}

static void print_meta(FILE *f, size_t vlen, const struct hc_meta *m)
{
	fprintf(f, "length: %zu\n", vlen);
	print_ms(f, "ttl_left_ms", m->ttl_left_ms);
	print_ms(f, "stale_left_ms", m->stale_left_ms);
	fprintf(f, "stale: %s\n", m->stale ? "yes" : "no");
	fprintf(f, "etag: %016" PRIx64 "\n", m->etag);
	fprintf(f, "flags: 0x%" PRIx32 "%s\n", m->flags,
		m->flags & HC_ENTRY_NEGATIVE ? " (negative)" : "");
	fprintf(f, "compute_ms: %" PRIu32 "\n", m->compute_ms);
	fprintf(f, "layer: %s\n", layer_name(m->layer));
}

int shm_cmd_get(struct tool *t, int argc, char **argv)
{
	enum { OPT_META = 256, OPT_STALE };
	static const struct option longopts[] = {
		{"meta", no_argument, NULL, OPT_META},
		{"stale", no_argument, NULL, OPT_STALE},
		{"escaped", no_argument, NULL, 'e'},
		SHM_COMMON_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	bool meta = false, escaped = false;
	unsigned flags = 0;
	int ch, rc;

	while ((ch = shm_getopt(t, argc, argv, "hn:e", longopts, &rc)) != -1) {
		switch (ch) {
		case SHM_OPT_EXIT:
			return rc;
		case OPT_META:
			meta = true;
			break;
		case OPT_STALE:
			flags |= HC_GET_STALE;
			break;
		case 'e':
			escaped = true;
			break;
		}
	}
	struct key_arg k;
	if ((rc = shm_positional(t, argc, argv, 1, 1, "KEY")) || (rc = shm_need_name(t)) ||
	    (rc = key_from_arg(t, argv[optind], escaped, &k)))
		return rc;

	struct hc_cache *c;
	struct hc_info info;
	if ((rc = shm_open_cache(t, &(struct hc_options){0}, &c)))
		return rc;
	if ((rc = hc_info(c, &info)) < 0) {
		hc_close(c);
		return shm_fail(rc, "info '%s'", t->name);
	}
	/* copied out rather than viewed: a view held across writes to a pipe
	 * would hold back memory reclamation for the whole host */
	size_t cap = info.max_value ? info.max_value : 1, vlen = 0;
	char *buf = malloc(cap);
	struct hc_meta m;
	rc = buf ? hc_get_ex(c, k.data, k.len, buf, cap, &vlen, &m, flags) : -ENOMEM;
	while (rc == HC_E_TOOSMALL) { /* only if the segment's limit is not what it said */
		char *bigger = realloc(buf, vlen);
		if (!bigger) {
			rc = -ENOMEM;
			break;
		}
		buf = bigger;
		cap = vlen;
		rc = hc_get_ex(c, k.data, k.len, buf, cap, &vlen, &m, flags);
	}
	hc_close(c);
	if (rc < 0) {
		free(buf);
		return entry_fail(rc, "get", &k, 0, info.max_value);
	}
	if (meta)
		print_meta(stderr, vlen, &m);
	rc = write_all(stdout, buf, vlen) ? SHM_EXIT_FAIL : SHM_EXIT_OK;
	free(buf);
	return rc; /* main reports the write error after its flush */
}

int shm_cmd_set(struct tool *t, int argc, char **argv)
{
	enum { OPT_TTL = 256, OPT_STALE };
	static const struct option longopts[] = {
		{"ttl", required_argument, NULL, OPT_TTL},
		{"stale", required_argument, NULL, OPT_STALE},
		{"escaped", no_argument, NULL, 'e'},
		SHM_COMMON_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	struct hc_set_opts so = {0};
	bool escaped = false;
	int ch, rc;

	while ((ch = shm_getopt(t, argc, argv, "hn:e", longopts, &rc)) != -1) {
		switch (ch) {
		case SHM_OPT_EXIT:
			return rc;
		case OPT_TTL:
			if ((rc = shm_opt_u32(t, "--ttl", optarg, &so.ttl_ms)))
				return rc;
			break;
		case OPT_STALE:
			if ((rc = shm_opt_u32(t, "--stale", optarg, &so.stale_ms)))
				return rc;
			break;
		case 'e':
			escaped = true;
			break;
		}
	}
	struct key_arg k;
	if ((rc = shm_positional(t, argc, argv, 1, 2, "KEY")) || (rc = shm_need_name(t)) ||
	    (rc = key_from_arg(t, argv[optind], escaped, &k)))
		return rc;
	const bool from_stdin = optind + 1 >= argc;

	struct hc_cache *c;
	struct hc_info info;
	if ((rc = shm_open_cache(t, &(struct hc_options){0}, &c)))
		return rc;
	if ((rc = hc_info(c, &info)) < 0) {
		hc_close(c);
		return shm_fail(rc, "info '%s'", t->name);
	}
	char *val, *owned = NULL;
	size_t vlen;
	if (!from_stdin) {
		val = argv[optind + 1];
		vlen = strlen(val);
	} else if (k.len == 0 || k.len > HC_KEY_MAX) {
		/* the set would refuse the key: do not swallow the input first */
		val = NULL;
		vlen = 0;
	} else {
		/* one byte more than the limit tells "too big" from "exactly max" */
		owned = malloc((size_t)info.max_value + 1);
		if (!owned) {
			hc_close(c);
			return shm_fail(-ENOMEM, "set");
		}
		ssize_t n = read_all(STDIN_FILENO, owned, (size_t)info.max_value + 1);
		if (n < 0) {
			free(owned);
			hc_close(c);
			return shm_fail((int)n, "read of standard input");
		}
		val = owned;
		vlen = (size_t)n;
	}
	rc = hc_set_ex(c, k.data, k.len, val ? val : "", vlen, &so);
	hc_close(c);
	free(owned);
	if (rc < 0)
		return entry_fail(rc, "set", &k, vlen, info.max_value);
	return SHM_EXIT_OK;
}

int shm_cmd_del(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"escaped", no_argument, NULL, 'e'},
		SHM_COMMON_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	bool escaped = false;
	int ch, rc;
	while ((ch = shm_getopt(t, argc, argv, "hn:e", longopts, &rc)) != -1) {
		if (ch == SHM_OPT_EXIT)
			return rc;
		if (ch == 'e')
			escaped = true;
	}
	struct key_arg k;
	if ((rc = shm_positional(t, argc, argv, 1, 1, "KEY")) || (rc = shm_need_name(t)) ||
	    (rc = key_from_arg(t, argv[optind], escaped, &k)))
		return rc;
	struct hc_cache *c;
	if ((rc = shm_open_cache(t, &(struct hc_options){0}, &c)))
		return rc;
	rc = hc_del(c, k.data, k.len);
	hc_close(c);
	if (rc < 0)
		return entry_fail(rc, "del", &k, 0, 0);
	return SHM_EXIT_OK;
}

/*
 * Keys are collected during the scan and printed after it: the scan holds
 * a read-side section per bucket, and a write to a stalled pipe inside one
 * would hold back reclamation for every process of the host.
 */
struct key_list {
	const char *prefix;
	size_t plen;
	bool all;
	uint64_t limit;
	uint64_t count;
	unsigned char *buf; /* records: one length byte, then the key */
	size_t len, cap;
	int err;
};

static int collect_key(void *ctx, const struct hc_item *it)
{
	struct key_list *kl = ctx;
	if (it->klen < kl->plen || memcmp(it->key, kl->prefix, kl->plen) != 0)
		return 0;
	if (!kl->all && it->meta.ttl_left_ms <= 0)
		return 0;
	if (it->klen > HC_KEY_MAX)
		return 0; /* cannot be: keys are at most 250 bytes, one length byte */
	if (kl->len + 1 + it->klen > kl->cap) {
		size_t cap = kl->cap ? kl->cap * 2 : 4096;
		unsigned char *p = realloc(kl->buf, cap);
		if (!p) {
			kl->err = -ENOMEM;
			return 1;
		}
		kl->buf = p;
		kl->cap = cap;
	}
	kl->buf[kl->len++] = (unsigned char)it->klen;
	memcpy(kl->buf + kl->len, it->key, it->klen);
	kl->len += it->klen;
	return ++kl->count >= kl->limit;
}

int shm_cmd_keys(struct tool *t, int argc, char **argv)
{
	enum { OPT_PREFIX = 256, OPT_LIMIT, OPT_ALL };
	static const struct option longopts[] = {
		{"prefix", required_argument, NULL, OPT_PREFIX},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{"all", no_argument, NULL, OPT_ALL},
		SHM_COMMON_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	struct key_list kl = {.prefix = "", .limit = UINT64_MAX};
	int ch, rc;

	while ((ch = shm_getopt(t, argc, argv, "hn:", longopts, &rc)) != -1) {
		switch (ch) {
		case SHM_OPT_EXIT:
			return rc;
		case OPT_PREFIX:
			kl.prefix = optarg;
			kl.plen = strlen(optarg);
			break;
		case OPT_LIMIT:
			if ((rc = shm_opt_u64(t, "--limit", optarg, &kl.limit)))
				return rc;
			break;
		case OPT_ALL:
			kl.all = true;
			break;
		}
	}
	if ((rc = shm_positional(t, argc, argv, 0, 0, "")) || (rc = shm_need_name(t)))
		return rc;
	if (kl.limit == 0)
		return SHM_EXIT_OK;

	struct hc_cache *c;
	if ((rc = shm_open_cache(t, &(struct hc_options){0}, &c)))
		return rc;
	rc = hc_scan(c, collect_key, &kl);
	hc_close(c);
	if (kl.err)
		rc = kl.err;
	if (rc < 0) {
		free(kl.buf);
		return shm_fail(rc, "scan of '%s'", t->name);
	}
	char line[SHM_ESCAPED_KEY_MAX];
	for (size_t off = 0; off < kl.len; off += 1 + kl.buf[off])
		puts(shm_escape(line, sizeof(line), kl.buf + off + 1, kl.buf[off]));
	free(kl.buf);
	return SHM_EXIT_OK;
}

static bool is_stdio(const char *file)
{
	return !file || strcmp(file, "-") == 0;
}

int shm_cmd_dump(struct tool *t, int argc, char **argv)
{
	int rc;
	if (!plain_command(t, argc, argv, 1, &rc))
		return rc;
	const char *file = optind < argc ? argv[optind] : NULL; /* NULL or "-": stdio */
	if (is_stdio(file) && isatty(STDOUT_FILENO))
		return shm_usage_error(t, "refusing to write a binary dump to a terminal; "
					  "give a FILE or redirect standard output");

	/* hc_dump copies entries out before writing them: a slow pipe holds no memory back */
	struct hc_cache *c;
	if ((rc = shm_open_cache(t, &(struct hc_options){0}, &c)))
		return rc;
	int out = STDOUT_FILENO;
	if (!is_stdio(file)) {
		out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (out < 0) {
			rc = -errno;
			hc_close(c);
			return shm_fail(rc, "open of '%s'", file);
		}
	}
	int64_t n = hc_dump(c, out);
	hc_close(c);
	if (out != STDOUT_FILENO && close(out) < 0 && n >= 0)
		n = -errno;
	if (n < 0)
		return shm_fail((int)n, "dump of '%s'", t->name);
	/* with the dump on standard output the count cannot go there */
	fprintf(is_stdio(file) ? stderr : stdout, "dumped %" PRId64 " entries\n", n);
	return SHM_EXIT_OK;
}

int shm_cmd_load(struct tool *t, int argc, char **argv)
{
	int rc;
	if (!plain_command(t, argc, argv, 1, &rc))
		return rc;
	const char *file = optind < argc ? argv[optind] : NULL; /* NULL or "-": stdio */
	if (is_stdio(file) && isatty(STDIN_FILENO))
		return shm_usage_error(t, "refusing to read a dump from a terminal; "
					  "give a FILE or redirect standard input");

	int fd = STDIN_FILENO;
	if (!is_stdio(file)) {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return shm_fail(-errno, "open of '%s'", file);
	}
	struct hc_cache *c;
	if ((rc = shm_open_cache(t, &(struct hc_options){0}, &c))) {
		if (fd != STDIN_FILENO)
			close(fd);
		return rc;
	}
	int64_t n = hc_load(c, fd);
	hc_close(c);
	if (fd != STDIN_FILENO)
		close(fd);
	if (n < 0)
		return shm_fail((int)n, "load into '%s'", t->name);
	printf("loaded %" PRId64 " entries\n", n);
	return SHM_EXIT_OK;
}

int shm_cmd_flush(struct tool *t, int argc, char **argv)
{
	int rc;
	if (!plain_command(t, argc, argv, 0, &rc))
		return rc;
	struct hc_cache *c;
	if ((rc = shm_open_cache(t, &(struct hc_options){0}, &c)))
		return rc;
	int64_t n = hc_flush(c);
	hc_close(c);
	if (n < 0)
		return shm_fail((int)n, "flush of '%s'", t->name);
	printf("flushed %" PRId64 " entries\n", n);
	return SHM_EXIT_OK;
}
