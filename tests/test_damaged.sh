#!/usr/bin/env bash
#
# test_damaged.sh - the tools on segments damaged on purpose: they report,
# they do not crash, hang or read out of bounds (the suite runs this under
# ASan+UBSan too).
#
# A 16 MiB segment holding 300 entries is damaged in one way per case:
#   - the block headers in front of ten values overwritten with random bytes;
#   - 8 KiB of random bytes at 0 %, 1 %, 5 %, ... 99 % of the file;
#   - the header zeroed; the whole file random; truncated to half, to
#     100 bytes, to nothing.
# Then every shmtool command (info, stats, check, keys, get, dump, readers,
# set, del, each also with --json where it has it) and hostcache-top --once
# run on it (where the header is gone, a few of them: each waits 5 s for a
# creator that might still be formatting the segment): each exits 0 or 1
# (1 with a message), within 30 s, without a sanitizer report.  `check` must find the damage where the case
# damaged live data, and refuse the segment where the header is gone.
# Finally the HTTP dashboard serves /api/stats, /metrics and /healthz of a
# damaged segment without dying.
#
# usage: test_damaged.sh PATH/TO/shmtool PATH/TO/hostcache-top

set -u

SHMTOOL=${1:?usage: test_damaged.sh PATH/TO/shmtool PATH/TO/hostcache-top}
TOP=${2:?usage: test_damaged.sh PATH/TO/shmtool PATH/TO/hostcache-top}
NAME="t-damaged-$$"
FILE="/dev/shm/hostcache.$NAME"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_damaged.XXXXXX") || exit 1
TOP_PID=""
unset HOSTCACHE_NAME HOSTCACHE_DASH_TOKEN

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	[ -n "$TOP_PID" ] && kill -9 "$TOP_PID" 2>/dev/null
	"$SHMTOOL" -n "$NAME" destroy >/dev/null 2>&1
	rm -f "$FILE"
	rm -rf "$TMP"
}
trap cleanup EXIT

CHECKS=0
step() {
	CHECKS=$((CHECKS + 1))
	printf 'ok %d - %s\n' "$CHECKS" "$*"
}

fail() {
	printf 'FAIL: %s\n' "$*" >&2
	[ -s "$TMP/err" ] && printf '  stderr: %s\n' "$(head -c 3000 "$TMP/err")" >&2
	exit 1
}

# A fresh segment with the 300 entries of the reference dump.
fresh() {
	"$SHMTOOL" -n "$NAME" destroy >/dev/null 2>&1
	"$SHMTOOL" -n "$NAME" create --size 16M --max-value 64K >/dev/null || fail "create"
	"$SHMTOOL" -n "$NAME" load "$TMP/ref.dump" >/dev/null || fail "load of the reference dump"
}

# random BYTES at OFFSET of the segment file
scribble() {
	head -c "$2" /dev/urandom | dd of="$FILE" bs=4096 seek="$1" oflag=seek_bytes conv=notrunc \
		status=none || fail "dd into $FILE"
}

# tool CASE PROGRAM ARGS...: run it; status in RC; 0 or 1 only, 1 with a
# message (a report on stdout or an error on stderr), in time, no sanitizer
# report.
tool() {
	local what=$1
	shift
	timeout 30 "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
	RC=$?
	[ "$RC" -eq 124 ] && fail "$what: '$*' did not finish in 30 s"
	[ "$RC" -ge 128 ] && fail "$what: '$*' died of signal $((RC - 128))"
	grep -qE 'Sanitizer|runtime error:' "$TMP/err" && fail "$what: '$*': sanitizer report"
	[ "$RC" -le 1 ] || fail "$what: '$*' exited $RC"
	if [ "$RC" -eq 1 ] && [ ! -s "$TMP/err" ] && [ ! -s "$TMP/out" ]; then
		fail "$what: '$*' failed without saying why"
	fi
	return 0
}

ALL_CMDS=("info" "info --json" "stats" "stats --json" "keys --all" "get k:5"
	"get --stale --meta k:17" "dump $TMP/out.dump" "readers" "set k:new value" "del k:9")

# every_tool CASE [COMMAND...]: the commands (default: all of ALL_CMDS),
# hostcache-top --once, then check on the (damaged) segment; CHECK_RC is the
# status of 'check'.  With MUST_PASS=1 every command must exit 0.
every_tool() {
	local what=$1 cmd
	shift
	local -a cmds=("$@")
	[ $# -eq 0 ] && cmds=("${ALL_CMDS[@]}")
	for cmd in "${cmds[@]}"; do
		# shellcheck disable=SC2086 # the command's words
		tool "$what" "$SHMTOOL" -n "$NAME" $cmd
		[ "${MUST_PASS:-0}" = 1 ] && [ "$RC" -ne 0 ] && fail "$what: 'shmtool $cmd' exited $RC"
	done
	tool "$what" "$TOP" -n "$NAME" --once --interval 100
	[ "${MUST_PASS:-0}" = 1 ] && [ "$RC" -ne 0 ] && fail "$what: hostcache-top --once exited $RC"
	tool "$what" "$SHMTOOL" -n "$NAME" check
	CHECK_RC=$RC
}

# ---- the reference data ----
"$SHMTOOL" -n "$NAME" create --size 16M --max-value 64K >/dev/null || fail "create"
for i in $(seq 1 300); do
	printf 'value-%s-%0*d' "$i" $((i * 7)) 0 | "$SHMTOOL" -n "$NAME" set "k:$i" ||
		fail "set k:$i"
done
"$SHMTOOL" -n "$NAME" dump "$TMP/ref.dump" >/dev/null || fail "dump"
"$SHMTOOL" -n "$NAME" check >"$TMP/out" 2>"$TMP/err" || fail "the reference segment checks clean"
MUST_PASS=1 every_tool "undamaged"
[ "$CHECK_RC" -eq 0 ] || fail "undamaged: check exited $CHECK_RC"
step "the undamaged segment: every tool exits 0, check is clean"

# ---- block headers in front of live values ----
fresh
for i in 5 17 42 77 99 123 150 201 250 299; do
	off=$(grep -obUa "value-$i-" "$FILE" | head -1 | cut -d: -f1)
	[ -n "$off" ] || fail "value-$i- not found in the segment file"
	scribble $((off - 48)) 40
done
every_tool "block headers"
[ "$CHECK_RC" -eq 1 ] || fail "block headers: check exited $CHECK_RC, expected 1 (damage found)"
grep -qi "error" "$TMP/out" "$TMP/err" || fail "block headers: check names no error"
step "random bytes over 10 block headers: check finds them (exit 1), no tool crashes"

# ---- random bytes anywhere ----
size=$(stat -c %s "$FILE")
for pct in 0 1 2 5 10 20 30 40 50 60 70 80 90 99; do
	fresh
	scribble $((size * pct / 100)) 8192
	every_tool "8 KiB at $pct %"
done
step "8 KiB of random bytes at 14 places from 0 % to 99 %: no tool crashes, hangs or fails silently"

# ---- the header gone ----
# A segment without its magic looks like one whose creator has not finished
# (or died before it locked the object): attaching waits open_timeout_ms
# (5 s) for it, then fails.  So these cases run fewer commands.
fresh
dd if=/dev/zero of="$FILE" bs=4096 count=1 conv=notrunc status=none
every_tool "header zeroed" "stats --json"
[ "$CHECK_RC" -eq 1 ] || fail "header zeroed: check exited $CHECK_RC"
step "header zeroed: stats, hostcache-top and check refuse it with a message (after the 5 s wait for a creator)"

fresh
head -c "$size" /dev/urandom >"$FILE"
every_tool "all random"
[ "$CHECK_RC" -eq 1 ] || fail "all random: check exited $CHECK_RC"
step "the whole file random: every tool refuses it"

fresh
truncate -s $((size / 2)) "$FILE"
every_tool "truncated to half"
[ "$CHECK_RC" -eq 1 ] || fail "truncated to half: check exited $CHECK_RC"
for len in 100 0; do
	fresh
	truncate -s "$len" "$FILE"
	every_tool "truncated to $len" "stats"
	[ "$CHECK_RC" -eq 1 ] || fail "truncated to $len: check exited $CHECK_RC"
done
step "truncated to half (every tool), to 100 bytes and to nothing (stats, hostcache-top, check): refused with a message"

# ---- the HTTP dashboard over a damaged segment ----
fresh
for i in 5 17 42; do
	off=$(grep -obUa "value-$i-" "$FILE" | head -1 | cut -d: -f1)
	scribble $((off - 48)) 40
done
scribble $((size / 3)) 8192
"$TOP" -n "$NAME" --http 127.0.0.1:0 --iterations 0 --interval 100 >"$TMP/top.out" \
	2>"$TMP/top.err" &
TOP_PID=$!
port=""
for _ in $(seq 1 100); do
	port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$TMP/top.err" 2>/dev/null | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { cp "$TMP/top.err" "$TMP/err"; fail "hostcache-top --http printed no port"; }
for path in /api/stats /metrics /healthz /; do
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port$path")
	[ "$code" = 200 ] || fail "GET $path on a damaged segment: $code"
done
sleep 0.5
kill -0 "$TOP_PID" 2>/dev/null || fail "hostcache-top --http died"
kill -TERM "$TOP_PID"
wait "$TOP_PID"
rc=$?
TOP_PID=""
cp "$TMP/top.err" "$TMP/err"
grep -qE 'Sanitizer|runtime error:' "$TMP/err" && fail "hostcache-top --http: sanitizer report"
[ "$rc" -eq 0 ] || fail "hostcache-top --http exited $rc on SIGTERM"
step "the HTTP dashboard serves a damaged segment (200 on /api/stats, /metrics, /healthz, /) and stops cleanly"

echo "test_damaged: $CHECKS checks passed"
