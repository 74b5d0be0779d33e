/*
 * spawn.h - what the test and benchmark drivers need to run a server
 * (redis-server, hostcache-agent) as a child: find a program in PATH, and
 * the child's side of fork + exec with its output in a log file.
 * Header-only: tests/harness.h and bench/agentcases.c include it.
 */
#ifndef HC_SPAWN_H
#define HC_SPAWN_H

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* The path of @prog in $PATH (or the usual directories) into @out. */
static inline bool hc_find_in_path(const char *prog, char *out, size_t cap)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
	while (*path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		if (n) {
			snprintf(out, cap, "%.*s/%s", (int)n, path, prog);
			if (access(out, X_OK) == 0)
				return true;
		}
		path += n + (end ? 1 : 0);
	}
	return false;
}

/*
 * In a child just forked by @parent: die with the parent, stdin from
 * /dev/null, stdout and stderr appended to @log (NULL: /dev/null), none of
 * the HOSTCACHE_* settings of the caller's environment, then exec @argv.
 * Does not return.
 */
static inline void hc_exec_child(char *const argv[], const char *log, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	int in = open("/dev/null", O_RDONLY);
	int out = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (in < 0 || out < 0)
		_exit(126);
	dup2(in, 0);
	dup2(out, 1);
	dup2(out, 2);
	unsetenv("HOSTCACHE_REDIS_PASSWORD");
	unsetenv("HOSTCACHE_REDIS");
	unsetenv("HOSTCACHE_NAME");
	execv(argv[0], argv);
	_exit(127);
}

#endif
