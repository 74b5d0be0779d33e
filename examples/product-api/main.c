/*
 * product-api - a product catalogue HTTP API on hostcache: a prefork
 * server whose worker processes share one cache segment, in front of
 * SQLite.  See api.c for the endpoints, README.md for the demo around it.
 *
 * The supervisor (this file) prepares the database and the segment, opens
 * the listening socket, forks the workers, restarts one that dies, and on
 * SIGTERM/SIGINT stops them all.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hostcache.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api.h"

static void usage(FILE *f)
{
	fputs("usage: product-api [options]\n"
	      "A product catalogue API: worker processes sharing one hostcache segment in\n"
	      "front of a SQLite database.\n"
	      "\n"
	      "  -l, --listen ADDR:PORT   IPv4 address and port (default 127.0.0.1:8080;\n"
	      "                           port 0: any free port, printed)\n"
	      "  -w, --workers N          worker processes, 1..64 (default: number of CPUs)\n"
	      "  -t, --threads N          request threads per worker, 1..256 (default 16);\n"
	      "                           connections are not limited by it\n"
	      "  -n, --name NAME          hostcache segment, created if absent (default\n"
	      "                           $HOSTCACHE_NAME or product-api)\n"
	      "      --cache-size SIZE    segment size when it is created, K/M/G suffix\n"
	      "                           (default 64M)\n"
	      "      --no-cache           no hostcache: every read queries SQLite (baseline)\n"
	      "      --db FILE            SQLite database (default products.db), created and\n"
	      "                           filled at first start\n"
	      "      --rows N             products in a new database (default 100000)\n"
	      "      --db-delay-ms MS     added to every SQL query, standing for a remote\n"
	      "                           database's round trip (default 0)\n"
	      "      --ttl-ms MS          freshness of a cached product (default 60000)\n"
	      "      --stale-ms MS        stale-while-revalidate window (default 30000)\n"
	      "      --error-ms MS        stale-if-error window (default 300000)\n"
	      "      --negative-ttl-ms MS how long an unknown id is remembered (default 5000)\n"
	      "      --host LABEL         X-Host response header (tells hosts apart in a demo)\n"
	      "      --port-file FILE     write the port to FILE once every worker accepts\n"
	      "      --conn-limit N       connections per worker waiting for their request;\n"
	      "                           beyond it the slowest is closed (default: what\n"
	      "                           the open-files limit allows)\n"
	      "      --request-timeout S  seconds a connection has to send a whole request\n"
	      "                           (default 10)\n"
	      "  -h, --help               this help\n"
	      "\n"
	      "Endpoints: GET /products/{id}, GET /products?ids=1,2,3, PUT /products/{id}\n"
	      "(JSON: name, description, price_cents, stock), GET /stats, GET /healthz.\n",
	      f);
}

static unsigned long parse_num(const char *opt, const char *s, unsigned long min, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < min || v > max) {
		fprintf(stderr, "product-api: %s: '%s' is not a number in %lu..%lu\n", opt, s, min,
			max);
		exit(2);
	}
	return v;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	int shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (errno || end == s || *end || *s == '-' || v == 0 || v > (1ull << 40) >> shift) {
		fprintf(stderr, "product-api: --cache-size: '%s' is not a size (e.g. 64M)\n", s);
		exit(2);
	}
	return (uint64_t)v << shift;
}

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	*sa = (struct sockaddr_in){.sin_family = AF_INET};
	if (!*host || !strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -1;
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > 65535)
		return -1;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

/*
 * Every worker listens on a socket of its own, bound with SO_REUSEPORT to
 * the same address, so the kernel spreads new connections evenly over the
 * workers (one shared socket lets whichever worker wakes first take them
 * all).  The supervisor binds one more socket that never listens: it
 * chooses the port for port 0 and keeps it while workers restart.
 */
static int bind_port(const struct sockaddr_in *sa, int do_listen, unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return -1;
	struct sockaddr_in got;
	socklen_t len = sizeof(got);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) || (do_listen && listen(fd, 1024)) ||
	    getsockname(fd, (struct sockaddr *)&got, &len)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (port)
		*port = ntohs(got.sin_port);
	return fd;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct worker {
	pid_t pid;
	double started;
	double restart_at; /* 0: running or not due */
};

static pid_t spawn(struct api_config *cfg, unsigned i, const struct sockaddr_in *sa, int ready_w,
		   int ready_r)
{
	pid_t pid = fork();
	if (pid == 0) {
		close(ready_r);
		cfg->worker = i;
		int fd = bind_port(sa, 1, NULL);
		if (fd < 0) {
			fprintf(stderr, "product-api: worker %u: listen: %s\n", i, strerror(errno));
			_exit(1);
		}
		_exit(api_worker(cfg, fd, ready_w));
	}
	if (pid < 0)
		fprintf(stderr, "product-api: fork: %s\n", strerror(errno));
	return pid;
}

static void describe_exit(unsigned i, int status)
{
	if (WIFSIGNALED(status))
		fprintf(stderr, "product-api: worker %u killed by signal %d (%s)\n", i,
			WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		fprintf(stderr, "product-api: worker %u exited with status %d\n", i,
			WEXITSTATUS(status));
}

int main(int argc, char **argv)
{
	enum {
		O_CACHE_SIZE = 256,
		O_NO_CACHE,
		O_DB,
		O_ROWS,
		O_DELAY,
		O_TTL,
		O_STALE,
		O_ERROR,
		O_NEG,
		O_HOST,
		O_PORT_FILE,
		O_CONN_LIMIT,
		O_REQ_TIMEOUT
	};
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"workers", required_argument, NULL, 'w'},
		{"threads", required_argument, NULL, 't'},
		{"name", required_argument, NULL, 'n'},
		{"cache-size", required_argument, NULL, O_CACHE_SIZE},
		{"no-cache", no_argument, NULL, O_NO_CACHE},
		{"db", required_argument, NULL, O_DB},
		{"rows", required_argument, NULL, O_ROWS},
		{"db-delay-ms", required_argument, NULL, O_DELAY},
		{"ttl-ms", required_argument, NULL, O_TTL},
		{"stale-ms", required_argument, NULL, O_STALE},
		{"error-ms", required_argument, NULL, O_ERROR},
		{"negative-ttl-ms", required_argument, NULL, O_NEG},
		{"host", required_argument, NULL, O_HOST},
		{"port-file", required_argument, NULL, O_PORT_FILE},
		{"conn-limit", required_argument, NULL, O_CONN_LIMIT},
		{"request-timeout", required_argument, NULL, O_REQ_TIMEOUT},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *listen_addr = "127.0.0.1:8080", *port_file = NULL;
	const char *name = getenv("HOSTCACHE_NAME");
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t cache_size = 64u << 20;
	unsigned rows = 100000;
	int no_cache = 0;
	struct api_config cfg = {
		.workers = ncpu < 1		    ? 1
			   : ncpu > API_WORKERS_MAX ? API_WORKERS_MAX
						    : (unsigned)ncpu,
		.threads = 16,
		.ttl_ms = 60000,
		.stale_ms = 30000,
		.error_ms = 300000,
		.negative_ttl_ms = 5000,
		.request_timeout_ms = 10000,
		.db = {.path = "products.db"},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "l:w:t:n:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			listen_addr = optarg;
			break;
		case 'w':
			cfg.workers = parse_num("--workers", optarg, 1, API_WORKERS_MAX);
			break;
		case 't':
			cfg.threads = parse_num("--threads", optarg, 1, 256);
			break;
		case 'n':
			name = optarg;
			break;
		case O_CACHE_SIZE:
			cache_size = parse_size(optarg);
			break;
		case O_NO_CACHE:
			no_cache = 1;
			break;
		case O_DB:
			cfg.db.path = optarg;
			break;
		case O_ROWS:
			rows = parse_num("--rows", optarg, 1, 100000000);
			break;
		case O_DELAY:
			cfg.db.delay_ms = parse_num("--db-delay-ms", optarg, 0, 10000);
			break;
		case O_TTL:
			cfg.ttl_ms = parse_num("--ttl-ms", optarg, 0, UINT32_MAX);
			break;
		case O_STALE:
			cfg.stale_ms = parse_num("--stale-ms", optarg, 0, UINT32_MAX);
			break;
		case O_ERROR:
			cfg.error_ms = parse_num("--error-ms", optarg, 0, UINT32_MAX);
			break;
		case O_NEG:
			cfg.negative_ttl_ms = parse_num("--negative-ttl-ms", optarg, 0, UINT32_MAX);
			break;
		case O_HOST:
			cfg.host = optarg;
			break;
		case O_PORT_FILE:
			port_file = optarg;
			break;
		case O_CONN_LIMIT:
			cfg.conn_limit = parse_num("--conn-limit", optarg, 1, 65536);
			break;
		case O_REQ_TIMEOUT:
			cfg.request_timeout_ms =
				parse_num("--request-timeout", optarg, 1, 3600) * 1000u;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "product-api: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	struct sockaddr_in sa;
	if (parse_listen(listen_addr, &sa)) {
		fprintf(stderr, "product-api: --listen: '%s' is not IPv4-ADDRESS:PORT\n",
			listen_addr);
		return 2;
	}
	if (!no_cache)
		cfg.segment = name && *name ? name : "product-api";

	/* Counters every worker adds to, made before fork so all share them. */
	cfg.shared = mmap(NULL, sizeof(struct api_shared), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cfg.shared == MAP_FAILED) {
		perror("product-api: mmap");
		return 1;
	}
	cfg.db.counters = &cfg.shared->db;
	if (db_prepare(cfg.db.path, rows))
		return 1;

	if (cfg.segment) {
		/* Every HTTP thread and each worker's refresher thread takes a
		 * thread slot; leave room for the agent and tools. */
		unsigned need = cfg.workers * (cfg.threads + 1) + 16;
		struct hc_options o = {.flags = HC_CREATE,
				       .size = cache_size,
				       .max_threads = need > 128 ? need : 128};
		struct hc_cache *c;
		struct hc_info info;
		int rc = hc_open(cfg.segment, &o, &c);
		if (rc == 0)
			rc = hc_info(c, &info);
		if (rc) {
			fprintf(stderr, "product-api: segment '%s': %s\n", cfg.segment,
				hc_strerror(rc));
			return 1;
		}
		if (info.max_threads < need)
			fprintf(stderr,
				"product-api: warning: segment '%s' has %u thread slots, %u "
				"workers x %u threads need about %u\n",
				cfg.segment, info.max_threads, cfg.workers, cfg.threads, need);
		cache_size = info.size;
		hc_close(c);
	}

	unsigned port;
	int holder = bind_port(&sa, 0, &port);
	if (holder < 0) {
		fprintf(stderr, "product-api: listen on %s: %s\n", listen_addr, strerror(errno));
		return 1;
	}

	sa.sin_port = htons((uint16_t)port);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);

	int ready[2];
	if (pipe2(ready, O_CLOEXEC | O_NONBLOCK)) {
		perror("product-api: pipe");
		return 1;
	}
	struct worker w[API_WORKERS_MAX] = {0};
	for (unsigned i = 0; i < cfg.workers; i++) {
		w[i].pid = spawn(&cfg, i, &sa, ready[1], ready[0]);
		w[i].started = now_s();
	}

	/* Wait until every worker accepts, or one of them fails. */
	unsigned nready = 0;
	int stopping = 0, status = 0;
	double deadline = now_s() + 30;
	while (nready < cfg.workers && !stopping) {
		struct pollfd p = {ready[0], POLLIN, 0};
		if (poll(&p, 1, 100) > 0) {
			char b[API_WORKERS_MAX];
			ssize_t n = read(ready[0], b, sizeof(b));
			nready += n > 0 ? (unsigned)n : 0;
		}
		pid_t pid;
		int st;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (unsigned i = 0; i < cfg.workers; i++)
				if (w[i].pid == pid) {
					describe_exit(i, st);
					w[i].pid = 0;
				}
			stopping = status = 1;
		}
		if (now_s() > deadline) {
			fprintf(stderr, "product-api: workers not ready after 30 s\n");
			stopping = status = 1;
		}
		struct timespec zero = {0, 0};
		int sig = sigtimedwait(&set, NULL, &zero);
		if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
			stopping = 1;
	}

	if (!stopping) {
		printf("product-api: http://%s:%u  %u workers x %u threads  cache: ",
		       inet_ntoa(sa.sin_addr), port, cfg.workers, cfg.threads);
		if (cfg.segment)
			printf("segment '%s' (%llu MiB)", cfg.segment,
			       (unsigned long long)(cache_size >> 20));
		else
			printf("OFF (--no-cache: every read queries SQLite)");
		printf("  database: %s\n", cfg.db.path);
		if (cfg.db.delay_ms)
			printf("product-api: database delay ON: every SQL query waits %u ms "
			       "(standing for a remote database)\n",
			       cfg.db.delay_ms);
		fflush(stdout);
		if (port_file) {
			FILE *f = fopen(port_file, "w");
			if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f)) {
				fprintf(stderr, "product-api: %s: %s\n", port_file,
					strerror(errno));
				stopping = status = 1;
			}
		}
	}

	/* Supervise: restart a worker that dies (after 1 s if it died young). */
	double stop_deadline = 0;
	for (;;) {
		int alive = 0;
		for (unsigned i = 0; i < cfg.workers; i++)
			alive += w[i].pid > 0;
		if (stopping && !alive)
			break;
		if (stopping && !stop_deadline) {
			stop_deadline = now_s() + 10;
			for (unsigned i = 0; i < cfg.workers; i++)
				if (w[i].pid > 0)
					kill(w[i].pid, SIGTERM);
		}
		if (stop_deadline && now_s() > stop_deadline) {
			for (unsigned i = 0; i < cfg.workers; i++) {
				if (w[i].pid > 0) {
					fprintf(stderr,
						"product-api: worker %u did not stop in 10 s: "
						"SIGKILL\n",
						i);
					kill(w[i].pid, SIGKILL);
					status = 1;
				}
			}
			stop_deadline = now_s() + 5;
		}
		for (unsigned i = 0; i < cfg.workers && !stopping; i++) {
			if (w[i].pid || !w[i].restart_at || now_s() < w[i].restart_at)
				continue;
			w[i].pid = spawn(&cfg, i, &sa, ready[1], ready[0]);
			w[i].started = now_s();
			w[i].restart_at = w[i].pid > 0 ? 0 : now_s() + 1;
			atomic_fetch_add(&cfg.shared->restarts, 1);
		}

		struct timespec tick = {0, 100 * 1000000};
		int sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
			stopping = 1;
		char drain[API_WORKERS_MAX];
		while (read(ready[0], drain, sizeof(drain)) > 0)
			; /* restarted workers say they are ready */
		pid_t pid;
		int st;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (unsigned i = 0; i < cfg.workers; i++) {
				if (w[i].pid != pid)
					continue;
				w[i].pid = 0;
				if (stopping)
					break;
				describe_exit(i, st);
				double lived = now_s() - w[i].started;
				w[i].restart_at = now_s() + (lived < 1 ? 1 : 0.01);
				fprintf(stderr, "product-api: restarting worker %u\n", i);
			}
		}
	}
	if (port_file && !status)
		unlink(port_file);
	return status;
}
