/*
 * shmtool.h - what the parts of shmtool share: the per-run context, the
 * command table entry, option and number parsing, error reporting, and
 * key escaping.
 *
 * shmtool is built on the public API only (include/hostcache.h), like
 * LMDB's mdb_stat and mdb_dump: if a tool needs something the header does
 * not offer, the header is what has to change.
 *
 * Every command function returns the process exit status: SHM_EXIT_OK,
 * SHM_EXIT_FAIL (the operation failed: not found, check errors, an hc_*
 * error) or SHM_EXIT_USAGE (the command line was wrong).
 */
#ifndef SHMTOOL_H
#define SHMTOOL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hostcache.h"

enum { SHM_EXIT_OK = 0, SHM_EXIT_FAIL = 1, SHM_EXIT_USAGE = 2 };

struct tool;

struct command {
	const char *name;
	int (*run)(struct tool *t, int argc, char **argv);
	const char *synopsis; /* arguments after the command name */
	const char *summary;  /* one line for the command list */
	const char *details;  /* options and behaviour, for "CMD -h" */
};

/* One run of the tool: the segment name and the command being run. */
struct tool {
	const char *name; /* segment, from -n or HOSTCACHE_NAME; NULL if neither */
	const struct command *cmd;
	int verbose; /* library log messages shown: 0 errors and warnings, 1 info, 2 debug */
};

/*
 * Options every command accepts; append to a command's option table.  The
 * short forms "hn:" must appear in the command's optstring too.
 */
#define SHM_COMMON_LONGOPTS                          \
	{"help", no_argument, NULL, 'h'},            \
	{                                            \
		"name", required_argument, NULL, 'n' \
	}

/*
 * getopt_long over a command's arguments (argv[0] is the command name).
 * Returns the option character, -1 at the end of the options, or, for
 * -h, -n and errors, handles them: -n is absorbed (the loop goes on), -h
 * prints the command's help and '?' a hint; both then return
 * SHM_OPT_EXIT with *exit_code set.
 */
#define SHM_OPT_EXIT (-2)
int shm_getopt(struct tool *t, int argc, char **argv, const char *optstring,
	       const struct option *longopts, int *exit_code);

/*
 * Check the positional arguments left after the options: at least @min,
 * at most @max; @what names them for the message ("KEY", "FILE").
 * Returns SHM_EXIT_OK or SHM_EXIT_USAGE (message printed).
 */
int shm_positional(struct tool *t, int argc, char **argv, int min, int max, const char *what);

/* Usage error for the current command: prints the message and a hint. */
int shm_usage_error(struct tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Make sure a segment name was given.  SHM_EXIT_OK or SHM_EXIT_USAGE. */
int shm_need_name(struct tool *t);

/*
 * Strict unsigned parsing: decimal digits only (no sign, no space), the
 * whole string, no overflow, at most @max.  shm_parse_size also accepts
 * one K, M or G suffix (powers of 1024).  Return 0 or -1.
 */
int shm_parse_u64(const char *s, uint64_t max, uint64_t *out);
int shm_parse_size(const char *s, uint64_t max, uint64_t *out);

/* Parse option @opt's value or report a usage error (SHM_EXIT_USAGE). */
int shm_opt_u32(struct tool *t, const char *opt, const char *s, uint32_t *out);
int shm_opt_u64(struct tool *t, const char *opt, const char *s, uint64_t *out);

/* Print "shmtool: <what> failed: <hc_strerror(rc)>" and return SHM_EXIT_FAIL. */
int shm_fail(int rc, const char *what_fmt, ...) __attribute__((format(printf, 2, 3)));

/* Open the segment with @flags (HC_RDONLY, HC_CREATE, ...), reporting failure. */
int shm_open_cache(struct tool *t, const struct hc_options *opts, struct hc_cache **out);

/*
 * Escape @n bytes for display: printable ASCII as is, backslash as "\\",
 * every other byte as "\xNN".  Writes at most @cap (>= 4) bytes including
 * the NUL; output that does not fit ends in "...", which never happens when
 * @cap >= 4 * @n + 4.  Returns @dst.
 */
char *shm_escape(char *dst, size_t cap, const void *src, size_t n);
#define SHM_ESCAPED_KEY_MAX (4 * HC_KEY_MAX + 4)

/*
 * The inverse of shm_escape for keys typed with --escaped: "\\" and
 * "\xNN" are decoded.  Returns the length, or -1 on a malformed escape
 * or a result longer than @cap.  @dst may be @src: the decoded text is
 * never longer than the escaped one.
 */
long shm_unescape(char *dst, size_t cap, const char *src);

/* Format @bytes as "1.5 MiB" (or "512 B") into @buf. */
const char *shm_human_bytes(char *buf, size_t cap, uint64_t bytes);

/* Format a Unix time in milliseconds as ISO 8601 UTC into @buf. */
const char *shm_iso_time(char *buf, size_t cap, uint64_t unix_ms);

/* Commands (data.c) */
int shm_cmd_create(struct tool *t, int argc, char **argv);
int shm_cmd_destroy(struct tool *t, int argc, char **argv);
int shm_cmd_get(struct tool *t, int argc, char **argv);
int shm_cmd_set(struct tool *t, int argc, char **argv);
int shm_cmd_del(struct tool *t, int argc, char **argv);
int shm_cmd_keys(struct tool *t, int argc, char **argv);
int shm_cmd_dump(struct tool *t, int argc, char **argv);
int shm_cmd_load(struct tool *t, int argc, char **argv);
int shm_cmd_flush(struct tool *t, int argc, char **argv);

/* Commands (report.c) */
int shm_cmd_info(struct tool *t, int argc, char **argv);
int shm_cmd_stats(struct tool *t, int argc, char **argv);
int shm_cmd_check(struct tool *t, int argc, char **argv);
int shm_cmd_readers(struct tool *t, int argc, char **argv);

#endif /* SHMTOOL_H */
