/*
 * config.c - the agent's settings, from the environment and the command line.
 *
 * Precedence: a flag beats its environment variable, which beats the default.  Everything
 * is validated here, before the segment or Redis is touched, so a typo is a usage error
 * (exit 2) with a message that names the option, never a runtime surprise.
 *
 * Secrets never come from argv (any user can read it in ps): the Redis password is read
 * from HOSTCACHE_REDIS_PASSWORD or from the first line of --password-file, and a Redis URL
 * with credentials in it is refused outright, from the flag or the environment alike (the
 * URL is also logged at startup).  The same holds for the HTTP dashboard's token: from
 * HOSTCACHE_DASH_TOKEN or the first line of --http-token-file, never from argv.  A secret
 * taken from the environment is wiped from it (and from /proc/PID/environ) once read.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define DEFAULT_REDIS "redis://127.0.0.1:6379/0"
#define DEFAULT_CHANNEL "cache_invalidation"
#define DEFAULT_L2_TTL_MS 300000u
#define DEFAULT_MAINTAIN_MS 100u
#define REDIS_PORT 6379

struct agent_config agent_conf;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: " AGENT_PROG " -n NAME [options]\n"
		"Serve a hostcache segment's L2 requests from Redis, apply invalidation events\n"
		"and run the segment's maintenance.  Runs in the foreground; logs go to stderr.\n"
		"\n"
		"  -n, --name NAME        segment name (env HOSTCACHE_NAME)\n"
		"      --redis URL        where Redis is (env HOSTCACHE_REDIS; default\n"
		"                         " DEFAULT_REDIS "):\n"
		"                           redis://HOST[:PORT][/DB]   ([v6addr] for IPv6)\n"
		"                           unix:/PATH[?db=N] or /PATH[?db=N]\n"
		"                         a password in the URL is refused: see below\n"
		"      --password-file F  Redis password: the first line of F\n"
		"                         (or env HOSTCACHE_REDIS_PASSWORD)\n"
		"      --prefix P         prefix of every key in Redis (default none)\n"
		"      --channel C        invalidation channel (default " DEFAULT_CHANNEL ")\n"
		"      --tracking P       also invalidate on writes to Redis made by clients that\n"
		"                         publish no event (Redis 6+ server-assisted tracking,\n"
		"                         BCAST): keys starting with P, a hostcache key prefix\n"
		"                         such as product: (--prefix is added for Redis).\n"
		"                         Repeatable, up to 16 prefixes that must not overlap\n"
		"      --tracking-all     the same for every key under --prefix (every key in\n"
		"                         Redis if --prefix is empty)\n"
		"      --l2-ttl MS        TTL in Redis for values that have none in L1\n"
		"                         (default 300000; 0: no expiry in Redis)\n"
		"      --id ID            this agent's id in the events it publishes, to ignore\n"
		"                         its own echoes (default HOSTNAME:PID)\n"
		"      --log-level L      error, warn, info or debug (default info)\n"
		"      --maintain-ms N    maintenance period, 10..10000 (default 100)\n"
		"      --create SIZE      create the segment if absent, SIZE bytes with an\n"
		"                         optional K, M or G suffix (e.g. 64M)\n"
		"      --http ADDR        serve the HTTP dashboard on ADDR, IPv4 ADDR:PORT,\n"
		"                         :PORT or PORT (address 127.0.0.1 if left out; port 0:\n"
		"                         any, logged); default off\n"
		"      --http-token-file F  bearer token for the dashboard's flush and\n"
		"                         invalidate endpoints: the first line of F (or env\n"
		"                         HOSTCACHE_DASH_TOKEN; none: they are refused)\n"
		"  -h, --help             this help\n"
		"\n"
		"Exit status: 0 after SIGTERM or SIGINT, 1 on a runtime failure (no segment,\n"
		"another agent serves it, the --http address cannot be bound), 2 on a usage\n"
		"error.\n");
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(AGENT_PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(" AGENT_PROG " -h for help)\n", stderr);
	exit(2);
}

/* Strict unsigned decimal: digits only, no sign, no overflow past @max. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

static uint32_t option_u32(const char *opt, const char *arg, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (!parse_u64(arg, max, &v) || v < min)
		usage_error("%s: '%s' is not a number in %llu..%llu", opt, arg,
			    (unsigned long long)min, (unsigned long long)max);
	return (uint32_t)v;
}

/* "64M", "512k", "1G", "1048576", optionally followed by "B" or "iB". */
static uint64_t option_size(const char *opt, const char *arg)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	errno = 0;
	v = isdigit((unsigned char)arg[0]) ? strtoull(arg, &end, 10) : 0;
	if (!isdigit((unsigned char)arg[0]) || errno || v == 0)
		usage_error("%s: '%s' is not a size (e.g. 64M)", opt, arg);
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		end++;
		break;
	case 'M':
		shift = 20;
		end++;
		break;
	case 'G':
		shift = 30;
		end++;
		break;
	}
	if (shift && (!strcmp(end, "B") || !strcmp(end, "iB")))
		end += strlen(end);
	else if (!shift && !strcmp(end, "B"))
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		usage_error("%s: '%s' is not a size (e.g. 64M)", opt, arg);
	return (uint64_t)v << shift;
}

static void set_string(char *dst, size_t cap, const char *opt, const char *arg)
{
	size_t len = strlen(arg);

	if (len == 0)
		usage_error("%s: must not be empty", opt);
	if (len >= cap)
		usage_error("%s: longer than %zu bytes", opt, cap - 1);
	memcpy(dst, arg, len + 1);
}

static void set_name(const char *opt, const char *arg)
{
	size_t len = strlen(arg);

	if (len == 0 || len > HC_NAME_MAX ||
	    strspn(arg, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"abcdefghijklmnopqrstuvwxyz"
			"0123456789._-") != len)
		usage_error("%s: '%s' is not a segment name (1..%u of A-Z a-z 0-9 . _ -)", opt, arg,
			    HC_NAME_MAX);
	memcpy(agent_conf.name, arg, len + 1);
}

static void set_log_level(const char *arg)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (int i = 0; i < 4; i++) {
		if (!strcmp(arg, names[i])) {
			agent_conf.log_level = i;
			return;
		}
	}
	usage_error("--log-level: '%s' is not one of error, warn, info, debug", arg);
}

/* The id travels in JSON and logs: printable ASCII without spaces keeps both simple. */
static void set_id(const char *arg)
{
	set_string(agent_conf.id, sizeof(agent_conf.id), "--id", arg);
	for (const char *p = arg; *p; p++)
		if (*p <= ' ' || *p > '~')
			usage_error("--id: '%s' must be printable ASCII without spaces", arg);
}

static void default_id(void)
{
	char host[256];

	if (gethostname(host, sizeof(host)) != 0 || !host[0])
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(agent_conf.id, sizeof(agent_conf.id), "%.100s:%ld", host, (long)getpid());
}

/*
 * A --tracking prefix: a hostcache key prefix, 1..HC_KEY_MAX bytes.  Redis refuses
 * prefixes of one connection that overlap (one a prefix of another: both would report the
 * same key), so they are refused here, where the message can name the options.
 */
static void add_tracking(const char *arg)
{
	size_t len = strlen(arg);

	if (agent_conf.ntracking == AGENT_TRACKING_MAX)
		usage_error("--tracking: at most %d prefixes", AGENT_TRACKING_MAX);
	if (len > HC_KEY_MAX)
		usage_error("--tracking: '%s' is longer than a key (%u bytes)", arg, HC_KEY_MAX);
	set_string(agent_conf.tracking[agent_conf.ntracking], sizeof(agent_conf.tracking[0]),
		   "--tracking", arg);
	for (int i = 0; i < agent_conf.ntracking; i++) {
		const char *p = agent_conf.tracking[i];
		size_t plen = strlen(p);

		if (!strcmp(p, arg))
			usage_error("--tracking: '%s' given twice", arg);
		if (!strncmp(p, arg, plen < len ? plen : len))
			usage_error(
				"--tracking: '%s' overlaps '%s' (one starts the other): keep the "
				"shorter one only",
				arg, p);
	}
	agent_conf.ntracking++;
}

/* ---------------------------------------------------------------------- */
/* Redis URL                                                                */

static int parse_db(const char *opt, const char *s)
{
	uint64_t v;

	if (!parse_u64(s, INT_MAX, &v))
		usage_error("%s: database '%s' is not a number", opt, s);
	return (int)v;
}

static void parse_unix_url(const char *opt, const char *url, const char *path)
{
	const char *query = strchr(path, '?');
	size_t len = query ? (size_t)(query - path) : strlen(path);

	if (path[0] != '/')
		usage_error("%s: '%s': the socket path must be absolute", opt, url);
	if (len > AGENT_PATH_MAX)
		usage_error("%s: socket path longer than %d bytes", opt, AGENT_PATH_MAX);
	memcpy(agent_conf.path, path, len);
	agent_conf.path[len] = '\0';
	agent_conf.db = 0;
	if (query) {
		if (strncmp(query, "?db=", 4) != 0)
			usage_error("%s: '%s': the only query parameter is db=N", opt, url);
		agent_conf.db = parse_db(opt, query + 4);
	}
	agent_conf.transport = REDIS_TRANSPORT_UNIX;
	snprintf(agent_conf.redis_desc, sizeof(agent_conf.redis_desc), "unix:%s db %d",
		 agent_conf.path, agent_conf.db);
}

/* "HOST[:PORT]" or "[V6ADDR][:PORT]" (@len bytes at @s) into host and port. */
static void parse_host_port(const char *opt, const char *url, const char *s, size_t len)
{
	const char *host = s, *colon;
	size_t hlen;
	char port[8];
	uint64_t v;

	if (len && s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close)
			usage_error("%s: '%s': unclosed '[' in the host", opt, url);
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1 < s + len ? close + 1 : NULL;
		if (colon && *colon != ':')
			usage_error("%s: '%s': junk after ']'", opt, url);
	} else {
		colon = memchr(s, ':', len);
		hlen = colon ? (size_t)(colon - s) : len;
	}
	if (hlen == 0)
		usage_error("%s: '%s': no host", opt, url);
	if (hlen > AGENT_HOST_MAX)
		usage_error("%s: host longer than %d bytes", opt, AGENT_HOST_MAX);
	memcpy(agent_conf.host, host, hlen);
	agent_conf.host[hlen] = '\0';
	agent_conf.port = REDIS_PORT;
	if (colon) {
		size_t plen = (size_t)(s + len - colon - 1);

		if (plen == 0 || plen >= sizeof(port))
			usage_error("%s: '%s': bad port", opt, url);
		memcpy(port, colon + 1, plen);
		port[plen] = '\0';
		if (!parse_u64(port, 65535, &v) || v == 0)
			usage_error("%s: '%s': port '%s' is not in 1..65535", opt, url, port);
		agent_conf.port = (int)v;
	}
}

static void parse_tcp_url(const char *opt, const char *url, const char *rest)
{
	size_t auth_len = strcspn(rest, "/?");
	const char *tail = rest + auth_len;

	if (memchr(rest, '@', auth_len))
		usage_error("%s: a password in the Redis URL is refused: it would show in ps and "
			    "in logs.  Put it in HOSTCACHE_REDIS_PASSWORD or in a file given with "
			    "--password-file, and use redis://HOST:PORT/DB",
			    opt);
	parse_host_port(opt, url, rest, auth_len);
	agent_conf.db = 0;
	if (*tail == '/' && tail[1])
		agent_conf.db = parse_db(opt, tail + 1);
	else if (*tail == '?' || (*tail == '/' && tail[1] == '?'))
		usage_error("%s: '%s': use redis://HOST:PORT/DB for the database", opt, url);
	agent_conf.transport = REDIS_TRANSPORT_TCP;
	snprintf(agent_conf.redis_desc, sizeof(agent_conf.redis_desc), "%s%s%s:%d db %d",
		 strchr(agent_conf.host, ':') ? "[" : "", agent_conf.host,
		 strchr(agent_conf.host, ':') ? "]" : "", agent_conf.port, agent_conf.db);
}

static void parse_redis_url(const char *opt, const char *url)
{
	if (!strncmp(url, "redis://", 8))
		parse_tcp_url(opt, url, url + 8);
	else if (!strncmp(url, "unix://", 7))
		parse_unix_url(opt, url, url + 7);
	else if (!strncmp(url, "unix:", 5))
		parse_unix_url(opt, url, url + 5);
	else if (url[0] == '/')
		parse_unix_url(opt, url, url);
	else if (!strncmp(url, "rediss://", 9))
		usage_error("%s: TLS (rediss://) is not supported by hiredis 0.14", opt);
	else
		usage_error("%s: '%s' is not redis://HOST:PORT/DB, unix:/PATH or /PATH", opt, url);
}

/* ---------------------------------------------------------------------- */
/* Password                                                                 */

static char *dup_secret(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (!p) {
		fprintf(stderr, AGENT_PROG ": out of memory\n");
		exit(1);
	}
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/*
 * A secret from the first line of @file (for option @opt, named @what in
 * messages), at most @max bytes, with @trim its trailing blanks removed (a
 * password keeps them: they may be part of it); the line is wiped from the
 * stack after.  Usage errors exit 2; a file others can read warns.
 */
static char *read_secret_file(const char *opt, const char *what, const char *file, size_t max,
			      bool trim)
{
	char line[1024];
	struct stat st;
	size_t len;
	FILE *f = fopen(file, "r");

	if (!f)
		usage_error("%s: cannot open '%s': %s", opt, file, strerror(errno));
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077))
		fprintf(stderr,
			AGENT_PROG ": warning: %s file '%s' is readable by group or others "
				   "(chmod 600 it)\n",
			what, file);
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	len = strcspn(line, "\r\n");
	while (trim && len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (len > max || len == sizeof(line) - 1) {
		explicit_bzero(line, sizeof(line));
		usage_error("%s: the %s in '%s' is longer than %zu bytes", opt, what, file, max);
	}
	if (len == 0)
		usage_error("%s: the first line of '%s' is empty", opt, file);
	char *secret = dup_secret(line, len);
	explicit_bzero(line, sizeof(line));
	return secret;
}

/*
 * A secret from environment variable @name, then wiped from this process's
 * environment.  unsetenv() alone would leave the bytes where the kernel
 * shows them, in /proc/PID/environ (and in a core dump): they are
 * overwritten first.  NULL when the variable is unset or empty.
 */
static char *take_env_secret(const char *name)
{
	char *env = getenv(name);
	if (!env || !*env)
		return NULL;
	size_t len = strlen(env);
	char *secret = dup_secret(env, len);
	explicit_bzero(env, len);
	unsetenv(name);
	return secret;
}

/* Wipe and free a secret (NULL is fine); *@sp becomes NULL. */
static void drop_secret(char **sp)
{
	if (*sp) {
		explicit_bzero(*sp, strlen(*sp));
		free(*sp);
		*sp = NULL;
	}
}

void agent_config_wipe_token(void)
{
	drop_secret(&agent_conf.dash_token);
}

void agent_config_free(void)
{
	drop_secret(&agent_conf.password);
	drop_secret(&agent_conf.dash_token);
}

/* ---------------------------------------------------------------------- */
/* HTTP dashboard                                                           */

/*
 * --http: "ADDR:PORT", ":PORT" or "PORT", ADDR an IPv4 address or localhost (127.0.0.1
 * when left out), PORT 0..65535 (0: any).  The grammar of dashboard/http.c, checked here
 * so that a typo is a usage error; http_host gets the address bound, for the log line.
 */
static void set_http(const char *arg)
{
	const char *colon = strrchr(arg, ':');
	const char *port = colon ? colon + 1 : arg;
	size_t n = colon ? (size_t)(colon - arg) : 0;
	char addr[AGENT_HTTP_MAX + 1];
	struct in_addr in = {.s_addr = htonl(INADDR_LOOPBACK)};
	uint64_t v;

	set_string(agent_conf.http_addr, sizeof(agent_conf.http_addr), "--http", arg);
	if (!parse_u64(port, 65535, &v) || strlen(port) > 5)
		usage_error("--http: '%s': the port must be a number in 0..65535 (ADDR:PORT, e.g. "
			    "127.0.0.1:8080)",
			    arg);
	memcpy(addr, arg, n);
	addr[n] = '\0';
	if (n && strcasecmp(addr, "localhost") && inet_pton(AF_INET, addr, &in) != 1)
		usage_error("--http: '%s': the address must be IPv4 (e.g. 127.0.0.1:8080)", arg);
	inet_ntop(AF_INET, &in, agent_conf.http_host, sizeof(agent_conf.http_host));
}

/* ---------------------------------------------------------------------- */

enum {
	OPT_REDIS = 256,
	OPT_PASSWORD_FILE,
	OPT_PREFIX,
	OPT_CHANNEL,
	OPT_L2_TTL,
	OPT_ID,
	OPT_LOG_LEVEL,
	OPT_MAINTAIN_MS,
	OPT_CREATE,
	OPT_TRACKING,
	OPT_TRACKING_ALL,
	OPT_HTTP,
	OPT_HTTP_TOKEN_FILE,
};

static const struct option long_options[] = {
	{"name", required_argument, NULL, 'n'},
	{"redis", required_argument, NULL, OPT_REDIS},
	{"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
	{"prefix", required_argument, NULL, OPT_PREFIX},
	{"channel", required_argument, NULL, OPT_CHANNEL},
	{"l2-ttl", required_argument, NULL, OPT_L2_TTL},
	{"id", required_argument, NULL, OPT_ID},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"maintain-ms", required_argument, NULL, OPT_MAINTAIN_MS},
	{"create", required_argument, NULL, OPT_CREATE},
	{"tracking", required_argument, NULL, OPT_TRACKING},
	{"tracking-all", no_argument, NULL, OPT_TRACKING_ALL},
	{"http", required_argument, NULL, OPT_HTTP},
	{"http-token-file", required_argument, NULL, OPT_HTTP_TOKEN_FILE},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void set_defaults(void)
{
	const char *env;

	memset(&agent_conf, 0, sizeof(agent_conf));
	agent_conf.l2_ttl_ms = DEFAULT_L2_TTL_MS;
	agent_conf.log_level = HC_LOG_INFO;
	agent_conf.maintain_ms = DEFAULT_MAINTAIN_MS;
	strcpy(agent_conf.channel, DEFAULT_CHANNEL);
	default_id();
	env = getenv("HOSTCACHE_NAME");
	if (env && *env)
		set_name("HOSTCACHE_NAME", env);
}

/* Option arguments kept for after the loop (files are read once everything is valid). */
struct late_args {
	const char *redis_url;
	const char *password_file;
	const char *token_file;
};

static void apply_option(int opt, const char *arg, struct late_args *late)
{
	switch (opt) {
	case 'n':
		set_name("--name", arg);
		break;
	case OPT_REDIS:
		late->redis_url = arg;
		break;
	case OPT_PASSWORD_FILE:
		late->password_file = arg;
		break;
	case OPT_PREFIX:
		/* An empty prefix is allowed: it is the default. */
		agent_conf.prefix[0] = '\0';
		if (*arg)
			set_string(agent_conf.prefix, sizeof(agent_conf.prefix), "--prefix", arg);
		break;
	case OPT_CHANNEL:
		set_string(agent_conf.channel, sizeof(agent_conf.channel), "--channel", arg);
		break;
	case OPT_L2_TTL:
		agent_conf.l2_ttl_ms = option_u32("--l2-ttl", arg, 0, INT32_MAX);
		break;
	case OPT_ID:
		set_id(arg);
		break;
	case OPT_LOG_LEVEL:
		set_log_level(arg);
		break;
	case OPT_MAINTAIN_MS:
		agent_conf.maintain_ms = option_u32("--maintain-ms", arg, 10, 10000);
		break;
	case OPT_CREATE:
		agent_conf.create_size = option_size("--create", arg);
		break;
	case OPT_TRACKING:
		add_tracking(arg);
		break;
	case OPT_TRACKING_ALL:
		agent_conf.tracking_all = true;
		break;
	case OPT_HTTP:
		set_http(arg);
		break;
	case OPT_HTTP_TOKEN_FILE:
		late->token_file = arg;
		break;
	case 'h':
		usage(stdout);
		exit(0);
	default:
		fputs("(" AGENT_PROG " -h for help)\n", stderr);
		exit(2);
	}
}

void agent_config_parse(int argc, char **argv)
{
	struct late_args late = {NULL, NULL, NULL};
	const char *env;
	int opt;

	set_defaults();
	while ((opt = getopt_long(argc, argv, "n:h", long_options, NULL)) != -1)
		apply_option(opt, optarg, &late);
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (agent_conf.tracking_all && agent_conf.ntracking)
		usage_error(
			"--tracking-all already covers every key: drop the --tracking prefixes");
	if (agent_tracking() && !strcmp(agent_conf.channel, AGENT_TRACKING_CHANNEL))
		usage_error("--channel: " AGENT_TRACKING_CHANNEL " is where Redis sends tracking "
			    "notifications: choose another channel for events");
	if (!agent_conf.name[0])
		usage_error("no segment name: give -n NAME or set HOSTCACHE_NAME");
	if (late.token_file && !agent_conf.http_addr[0])
		usage_error("--http-token-file goes with --http");

	if (late.redis_url)
		parse_redis_url("--redis", late.redis_url);
	else if ((env = getenv("HOSTCACHE_REDIS")) && *env)
		parse_redis_url("HOSTCACHE_REDIS", env);
	else
		parse_redis_url("default", DEFAULT_REDIS);

	/* both variables leave the environment whether or not they are used */
	char *env_password = take_env_secret("HOSTCACHE_REDIS_PASSWORD");
	char *env_token = take_env_secret("HOSTCACHE_DASH_TOKEN");
	if (late.password_file) {
		agent_conf.password = read_secret_file("--password-file", "password",
						       late.password_file, 1000, false);
		drop_secret(&env_password);
	} else {
		agent_conf.password = env_password;
	}
	if (late.token_file) {
		agent_conf.dash_token = read_secret_file("--http-token-file", "token",
							 late.token_file, AGENT_TOKEN_MAX, true);
		drop_secret(&env_token);
	} else if (agent_conf.http_addr[0]) {
		agent_conf.dash_token = env_token;
	} else {
		drop_secret(&env_token);
	}
	agent_conf.prefix_len = strlen(agent_conf.prefix);
}
