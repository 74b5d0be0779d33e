/*
 * shmtool.c - command-line inspection and maintenance of a hostcache
 * segment: the entry point, the command table, the help texts, and the
 * helpers every command shares (option handling, strict number parsing,
 * error reporting, escaping).
 *
 * The command line is "shmtool [-n NAME] [-v] COMMAND [ARGS]".  Global
 * options stop at the command (getopt's "+"); each command then parses its
 * own options with getopt_long, with argv[0] rewritten to "shmtool CMD" so
 * getopt's own messages name the command.  -n and -h are accepted by every
 * command as well, so "shmtool get -n web KEY" works too.
 *
 * Exit status: 0 ok, 1 the operation failed, 2 the command line was wrong.
 * The commands themselves live in data.c (entries and segment lifetime)
 * and report.c (info, stats, check, readers).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmtool.h"

static const struct command commands[] = {
	{"create", shm_cmd_create, "[--size BYTES] [--max-threads N] [--max-value BYTES] [--group]",
	 "create a new segment (fails if it exists)",
	 "  --size BYTES            segment size, with an optional K, M or G suffix (default 64M)\n"
	 "  --max-threads N         thread slots: threads that may use the cache at once\n"
	 "                          (default 128)\n"
	 "  --max-value BYTES       largest value, with an optional K, M or G suffix\n"
	 "                          (default 1M)\n"
	 "  --bytes-per-slot BYTES  arena bytes per index slot, which sizes the index\n"
	 "                          (default: the library's)\n"
	 "  --group                 create with group read/write access (mode 0660)\n"},
	{"destroy", shm_cmd_destroy, "", "remove the segment's name (attached processes keep it)",
	 "Processes that have the segment mapped keep using it until they close it.\n"},
	{"info", shm_cmd_info, "[--json]", "show the segment's geometry",
	 "  --json   print one JSON object (see 'stats -h' for the conventions)\n"},
	{"stats", shm_cmd_stats, "[--json]",
	 "show counters, memory by size class, entities, reclamation",
	 "  --json   print one JSON object, shape version 1:\n"
	 "           {\"version\": 1, \"name\", \"segment\": {size, arena_size, slab_size,\n"
	 "            slabs_total, slabs_used, index_slots, threads_active, created_unix_ms},\n"
	 "            \"items\", \"bytes\",\n"
	 "            \"layers\": {\"l1\": C, \"l2\": C, \"origin\": C},\n"
	 "            \"classes\": [{class, block_size, slabs, items, bytes}, ...],\n"
	 "            \"entities\": [{\"name\", \"layers\": {\"l1\": C, \"l2\": C, \"origin\": "
	 "C}}],\n"
	 "            \"reclamation\": {epoch, safe_epoch, reclaim_waits, reclaim_stalls,\n"
	 "             slots_reaped, blocks_recovered, slab_moves, index_evictions}}\n"
	 "           where C = {hits, misses, sets, deletes, evictions, expirations,\n"
	 "           stale_hits, negative_hits, errors, set_fails}.  Numbers are integers;\n"
	 "           classes lists only classes with slabs or items.  Within version 1\n"
	 "           fields are only ever added.\n"},
	{"get", shm_cmd_get, "[--meta] [--stale] [--escaped] KEY",
	 "write KEY's value to standard output (exit 1 if absent)",
	 "  --meta      also print the entry's metadata (TTL, etag, flags) to standard error\n"
	 "  --stale     also return an entry past its TTL but inside its stale window\n"
	 "  -e, --escaped  KEY is escaped as 'keys' prints it (\\\\ and \\xNN decoded)\n"},
	{"set", shm_cmd_set, "[--ttl MS] [--stale MS] [--escaped] KEY [VALUE]",
	 "store VALUE (or standard input) under KEY",
	 "  --ttl MS    fresh for MS milliseconds (default 0: never expires)\n"
	 "  --stale MS  then servable as stale for MS milliseconds\n"
	 "  -e, --escaped  KEY is escaped as 'keys' prints it (\\\\ and \\xNN decoded)\n"
	 "Without VALUE the value is all of standard input (binary safe).\n"
	 "Use '--' before a VALUE that starts with '-'.\n"},
	{"del", shm_cmd_del, "[--escaped] KEY", "remove KEY (exit 1 if absent)",
	 "  -e, --escaped  KEY is escaped as 'keys' prints it (\\\\ and \\xNN decoded)\n"},
	{"keys", shm_cmd_keys, "[--prefix P] [--limit N] [--all]", "list keys, one per line",
	 "  --prefix P  only keys that start with P\n"
	 "  --limit N   stop after N keys\n"
	 "  --all       include entries past their TTL (stale or awaiting reclamation)\n"
	 "Bytes outside printable ASCII are printed as \\xNN and a backslash as \\\\;\n"
	 "get, set and del accept that form with --escaped.  The order is the index's.\n"},
	{"dump", shm_cmd_dump, "[FILE]", "write every live entry to FILE (or standard output)",
	 "The dump is portable (little-endian, versioned, checksummed) and keeps\n"
	 "remaining TTLs as durations.  FILE is created mode 0600, as the cached data is\n"
	 "as private as the segment.  '-' means standard output.\n"},
	{"load", shm_cmd_load, "[FILE]",
	 "store the entries of a dump from FILE (or standard input)",
	 "Entries whose TTL ran out since the dump are skipped.  A malformed dump stops\n"
	 "the load with an error after the entries before the fault were stored.\n"},
	{"flush", shm_cmd_flush, "", "remove every entry",
	 "Concurrent sets may survive a flush.\n"},
	{"check", shm_cmd_check, "", "validate the whole segment (exit 1 on errors)",
	 "Walks the header, slab table, every block, the index and the thread slots,\n"
	 "prints each finding as ERROR: or WARN: and a summary line.  A segment being\n"
	 "written can show transient findings; a quiescent one must check clean.\n"},
	{"readers", shm_cmd_readers, "[--reap]", "list claimed thread slots",
	 "  --reap   reclaim the slots of dead processes and recover their blocks\n"
	 "Columns: slot, pid, tid, alive (no: the process is gone), epoch (the epoch\n"
	 "the thread is reading under, '-' outside a read).\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: shmtool [-n NAME] [-v] COMMAND [OPTIONS] [ARGS]\n"
		   "       shmtool --help | help [COMMAND] | --version\n"
		   "\n"
		   "Inspect and maintain the hostcache segment /dev/shm/hostcache.NAME.\n"
		   "\n"
		   "Global options:\n"
		   "  -n, --name NAME  segment name (default: $HOSTCACHE_NAME)\n"
		   "  -v, --verbose    also show the library's info messages (-vv: debug)\n"
		   "  -h, --help       show this help\n"
		   "  -V, --version    show the version\n"
		   "\n"
		   "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n"
		   "Every command accepts -h.  Exit status: 0 ok, 1 the operation failed\n"
		   "(not found, check errors, library error), 2 usage error.\n");
}

static void command_help(FILE *f, const struct command *cmd)
{
	fprintf(f, "usage: shmtool [-n NAME] %s%s%s\n\n%s.\n\n", cmd->name,
		*cmd->synopsis ? " " : "", cmd->synopsis, cmd->summary);
	fputs(cmd->details, f);
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int shm_usage_error(struct tool *t, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "shmtool %s: ", t->cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'shmtool %s -h' for help.\n", t->cmd->name);
	return SHM_EXIT_USAGE;
}

int shm_getopt(struct tool *t, int argc, char **argv, const char *optstring,
	       const struct option *longopts, int *exit_code)
{
	for (;;) {
		int ch = getopt_long(argc, argv, optstring, longopts, NULL);
		switch (ch) {
		case 'n':
			t->name = optarg;
			continue;
		case 'h':
			command_help(stdout, t->cmd);
			*exit_code = SHM_EXIT_OK;
			return SHM_OPT_EXIT;
		case '?':
		case ':':
			/* getopt already said what was wrong */
			fprintf(stderr, "Try 'shmtool %s -h' for help.\n", t->cmd->name);
			*exit_code = SHM_EXIT_USAGE;
			return SHM_OPT_EXIT;
		default:
			return ch;
		}
	}
}

int shm_positional(struct tool *t, int argc, char **argv, int min, int max, const char *what)
{
	int n = argc - optind;
	if (n < min)
		return shm_usage_error(t, "missing %s", what);
	if (n > max)
		return shm_usage_error(t, "unexpected argument '%s'", argv[optind + max]);
	return SHM_EXIT_OK;
}

int shm_need_name(struct tool *t)
{
	if (t->name && *t->name)
		return SHM_EXIT_OK;
	fprintf(stderr, "shmtool %s: no segment name: give -n NAME or set HOSTCACHE_NAME\n",
		t->cmd->name);
	return SHM_EXIT_USAGE;
}

int shm_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	/* strtoull would accept leading space, a sign (negating!), and "" */
	if (!s || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

int shm_parse_size(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (!s || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -1;
	}
	if (shift && end[1] != '\0')
		return -1;
	if (v > (UINT64_MAX >> shift))
		return -1;
	v <<= shift;
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

int shm_opt_u64(struct tool *t, const char *opt, const char *s, uint64_t *out)
{
	if (shm_parse_u64(s, UINT64_MAX, out) == 0)
		return SHM_EXIT_OK;
	return shm_usage_error(t, "invalid value '%s' for %s (expected a non-negative integer)", s,
			       opt);
}

int shm_opt_u32(struct tool *t, const char *opt, const char *s, uint32_t *out)
{
	uint64_t v;
	if (shm_parse_u64(s, UINT32_MAX, &v) == 0) {
		*out = (uint32_t)v;
		return SHM_EXIT_OK;
	}
	return shm_usage_error(t, "invalid value '%s' for %s (expected an integer 0..%u)", s, opt,
			       UINT32_MAX);
}

int shm_fail(int rc, const char *what_fmt, ...)
{
	va_list ap;
	fputs("shmtool: ", stderr);
	va_start(ap, what_fmt);
	vfprintf(stderr, what_fmt, ap);
	va_end(ap);
	fprintf(stderr, " failed: %s\n", hc_strerror(rc));
	return SHM_EXIT_FAIL;
}

/* The library never prints; its log callback is the only way to see why. */
static void log_to_stderr(void *ctx, int level, const char *msg)
{
	const struct tool *t = ctx;
	static const char *const names[] = {"error", "warning", "info", "debug"};
	if (level > HC_LOG_WARN + t->verbose)
		return;
	fprintf(stderr, "shmtool: hostcache %s: %s\n",
		level >= 0 && level <= HC_LOG_DEBUG ? names[level] : "log", msg);
}

int shm_open_cache(struct tool *t, const struct hc_options *opts, struct hc_cache **out)
{
	struct hc_options o = *opts;
	o.log = log_to_stderr;
	o.log_ctx = t;
	int rc = hc_open(t->name, &o, out);
	if (rc < 0)
		return shm_fail(rc, "open segment '%s'", t->name);
	return SHM_EXIT_OK;
}

char *shm_escape(char *dst, size_t cap, const void *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = src;
	size_t o = 0;
	if (cap < 4) {
		if (cap)
			dst[0] = '\0';
		return dst;
	}
	/* invariant: while bytes remain, room for "..." and the NUL is left */
	for (size_t i = 0; i < n; i++) {
		char e[4];
		size_t len;
		if (p[i] == '\\') {
			e[0] = '\\';
			e[1] = '\\';
			len = 2;
		} else if (p[i] >= 0x20 && p[i] < 0x7f) {
			e[0] = (char)p[i];
			len = 1;
		} else {
			e[0] = '\\';
			e[1] = 'x';
			e[2] = hex[p[i] >> 4];
			e[3] = hex[p[i] & 15];
			len = 4;
		}
		size_t room = cap - 1 - o;
		bool last = i + 1 == n;
		if (len > room || (!last && len + 3 > room)) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(dst + o, e, len);
		o += len;
	}
	dst[o] = '\0';
	return dst;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long shm_unescape(char *dst, size_t cap, const char *src)
{
	size_t o = 0;
	for (const char *s = src; *s; s++) {
		char ch = *s;
		if (ch == '\\') {
			if (s[1] == '\\') {
				s++;
			} else if (s[1] == 'x' && hex_digit(s[2]) >= 0 && hex_digit(s[3]) >= 0) {
				ch = (char)(hex_digit(s[2]) << 4 | hex_digit(s[3]));
				s += 3;
			} else {
				return -1;
			}
		}
		if (o == cap)
			return -1;
		dst[o++] = ch;
	}
	return (long)o;
}

const char *shm_human_bytes(char *buf, size_t cap, uint64_t bytes)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	if (bytes < 1024) {
		snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
		return buf;
	}
	double v = (double)bytes / 1024;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, "%.1f %s", v, units[u]);
	return buf;
}

const char *shm_iso_time(char *buf, size_t cap, uint64_t unix_ms)
{
	time_t secs = (time_t)(unix_ms / 1000);
	struct tm tm;
	char day[32];
	if (!gmtime_r(&secs, &tm) || !strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(buf, cap, "%llu ms", (unsigned long long)unix_ms);
		return buf;
	}
	snprintf(buf, cap, "%s.%03uZ", day, (unsigned)(unix_ms % 1000));
	return buf;
}

/* Output errors (a full disk, a closed pipe) must not pass for success. */
static int finish_stdout(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "shmtool: write to standard output failed: %s\n", strerror(errno));
		return status ? status : SHM_EXIT_FAIL;
	}
	return status;
}

int main(int argc, char **argv)
{
	static const struct option global[] = {
		{"name", required_argument, NULL, 'n'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct tool t = {.name = NULL};
	int ch;

	while ((ch = getopt_long(argc, argv, "+n:vhV", global, NULL)) != -1) {
		switch (ch) {
		case 'n':
			t.name = optarg;
			break;
		case 'v':
			t.verbose++;
			break;
		case 'h':
			usage(stdout);
			return finish_stdout(SHM_EXIT_OK);
		case 'V':
			printf("shmtool (hostcache) %d.%d.%d\n", HC_VERSION_MAJOR, HC_VERSION_MINOR,
			       HC_VERSION_PATCH);
			return finish_stdout(SHM_EXIT_OK);
		default:
			fprintf(stderr, "Try 'shmtool --help' for help.\n");
			return SHM_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "shmtool: no command given\n");
		usage(stderr);
		return SHM_EXIT_USAGE;
	}

	const char *name = argv[optind];
	if (strcmp(name, "help") == 0) {
		if (optind + 1 >= argc) {
			usage(stdout);
			return finish_stdout(SHM_EXIT_OK);
		}
		const struct command *cmd = find_command(argv[optind + 1]);
		if (!cmd || optind + 2 < argc) {
			fprintf(stderr, "shmtool help: unknown command '%s'\n", argv[optind + 1]);
			return SHM_EXIT_USAGE;
		}
		command_help(stdout, cmd);
		return finish_stdout(SHM_EXIT_OK);
	}
	t.cmd = find_command(name);
	if (!t.cmd) {
		fprintf(stderr, "shmtool: unknown command '%s'\nTry 'shmtool --help' for help.\n",
			name);
		return SHM_EXIT_USAGE;
	}
	if (!t.name) {
		const char *env = getenv("HOSTCACHE_NAME");
		if (env && *env)
			t.name = env;
	}

	/* getopt names argv[0] in its messages: make that the command */
	char prog[32];
	snprintf(prog, sizeof(prog), "shmtool %s", t.cmd->name);
	int first = optind;
	argv[first] = prog;
	optind = 0; /* glibc: full re-initialisation for the command's options */
	return finish_stdout(t.cmd->run(&t, argc - first, argv + first));
}
