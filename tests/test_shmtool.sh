#!/usr/bin/env bash
#
# test_shmtool.sh - end-to-end tests of the shmtool command line: every
# command against a real segment, the exit status contract (0 ok, 1 failed,
# 2 usage), binary-safe values and keys, TTL expiry, the dump/load round
# trip, the JSON outputs, and the limits (key length, max_value).
#
# usage: test_shmtool.sh PATH/TO/shmtool
#
# Segment names carry the PID, so parallel runs do not collide, and an EXIT
# trap destroys them whatever happens.  The script stops at the first
# failure and says what was expected.

set -u

SHMTOOL=${1:?usage: test_shmtool.sh PATH/TO/shmtool}
NAME="t-shmtool-$$"
SMALL="t-shmtool-small-$$"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_shmtool.XXXXXX") || exit 1
unset HOSTCACHE_NAME

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	"$SHMTOOL" -n "$NAME" destroy >/dev/null 2>&1
	"$SHMTOOL" -n "$SMALL" destroy >/dev/null 2>&1
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
	if [ -s "$TMP/err" ]; then
		printf '  last stderr: %s\n' "$(head -c 2000 "$TMP/err")" >&2
	fi
	exit 1
}

# run ARGS...: shmtool ARGS, stdout in $TMP/out, stderr in $TMP/err, status in RC.
run() {
	"$SHMTOOL" "$@" >"$TMP/out" 2>"$TMP/err"
	RC=$?
}

# expect STATUS ARGS...: run and require that exit status.
expect() {
	local want=$1
	shift
	run "$@"
	[ "$RC" -eq "$want" ] || fail "shmtool $* exited $RC, expected $want"
}

# Require that a captured stream ($TMP/out or $TMP/err) contains TEXT.
out_has() { grep -qF -- "$1" "$TMP/out" || fail "stdout of the last command lacks '$1'"; }
err_has() { grep -qF -- "$1" "$TMP/err" || fail "stderr of the last command lacks '$1'"; }

# Require the last command's stdout to be exactly TEXT (a trailing newline aside).
out_is() {
	local got
	got=$(cat "$TMP/out")
	[ "$got" = "$1" ] || fail "stdout is '$got', expected '$1'"
}

# --- usage -------------------------------------------------------------

expect 2
err_has "no command"
step "no command: exit 2"

expect 2 -n "$NAME" frobnicate
err_has "unknown command"
step "unknown command: exit 2"

expect 0 --help
out_has "usage: shmtool"
expect 0 help
out_has "Commands:"
expect 0 help stats
out_has '"version": 1'
step "--help and help print usage to stdout, exit 0"

for cmd in create destroy info stats get set del keys dump load flush check readers; do
	expect 0 "$cmd" -h
	out_has "usage: shmtool [-n NAME] $cmd"
done
step "every command accepts -h"

expect 2 info
err_has "no segment name"
step "missing segment name: exit 2"

expect 2 -n "$NAME" info --bogus
err_has "unrecognized option"
step "unknown option: exit 2"

# --- missing segment ---------------------------------------------------

for args in "info" "stats" "check" "readers" "get k" "set k v" "del k" "keys" "flush"; do
	# shellcheck disable=SC2086 # the words of $args are separate arguments
	expect 1 -n "$NAME" $args
	err_has "failed: No such file or directory"
done
expect 1 -n "$NAME" destroy
err_has "shmtool: destroy '$NAME' failed:"
step "operations on a missing segment: exit 1 with a message"

# --- create ------------------------------------------------------------

expect 0 -n "$NAME" create --size 16M --max-threads 64
out_has "created '$NAME'"
step "create"

expect 1 -n "$NAME" create
err_has "already exists"
step "create again: exit 1, already exists"

for bad in abc -5 16X 1M2 "" 99999999999999999999; do
	expect 2 -n "$SMALL" create --size "$bad"
done
expect 2 -n "$SMALL" create --max-threads -1
expect 2 -n "$SMALL" create --max-value 5G
step "create rejects bad numbers: exit 2"

# --- info --------------------------------------------------------------

expect 0 -n "$NAME" info
out_has "$NAME"
out_has "thread slots  64"
step "info"

expect 0 -n "$NAME" info --json
python3 -m json.tool "$TMP/out" >/dev/null || fail "info --json is not valid JSON"
python3 - "$TMP/out" "$NAME" <<'EOF' || fail "info --json has the wrong fields"
import json, sys
info = json.load(open(sys.argv[1]))
assert info["version"] == 1, info
assert info["name"] == sys.argv[2], info
assert info["size"] == 16 << 20, info
assert info["max_threads"] == 64, info
assert info["max_value"] == 1 << 20, info
assert info["mode"] == "0600", info
EOF
step "info --json is valid and describes the segment"

expect 0 -n "$NAME" info --json
HOSTCACHE_NAME="$NAME" "$SHMTOOL" info >/dev/null 2>&1 || fail "HOSTCACHE_NAME is not used"
step "HOSTCACHE_NAME names the segment"

# --- set / get ---------------------------------------------------------

SETS=0
expect 0 -n "$NAME" set greeting "hello world"
SETS=$((SETS + 1))
expect 0 -n "$NAME" get greeting
out_is "hello world"
step "set KEY VALUE / get round trip"

printf 'from stdin\nsecond line\n' >"$TMP/in"
run -n "$NAME" set piped <"$TMP/in"
[ "$RC" -eq 0 ] || fail "set from stdin exited $RC"
SETS=$((SETS + 1))
expect 0 -n "$NAME" get piped
cmp -s "$TMP/out" "$TMP/in" || fail "value set from stdin came back different"
step "set from stdin / get round trip"

printf 'bin\000ary\000\001\002\377' >"$TMP/bin"
run -n "$NAME" set binary <"$TMP/bin"
[ "$RC" -eq 0 ] || fail "binary set exited $RC"
SETS=$((SETS + 1))
expect 0 -n "$NAME" get binary
cmp -s "$TMP/out" "$TMP/bin" || fail "binary value with NUL bytes came back different"
step "binary value with NUL bytes round trip"

expect 0 -n "$NAME" set empty ""
SETS=$((SETS + 1))
expect 0 -n "$NAME" get empty
[ ! -s "$TMP/out" ] || fail "empty value came back non-empty"
step "empty value"

expect 0 -n "$NAME" set -- dash -5
SETS=$((SETS + 1))
expect 0 -n "$NAME" get dash
out_is "-5"
step "'--' before a value that starts with '-'"

expect 0 -n "$NAME" get --meta greeting
out_is "hello world"
err_has "ttl_left_ms: never"
err_has "etag: "
err_has "flags: 0x0"
step "get --meta prints metadata to stderr"

expect 1 -n "$NAME" get no-such-key
err_has "key not found"
[ ! -s "$TMP/out" ] || fail "get of a missing key wrote to stdout"
step "get of a missing key: exit 1"

# --- TTL ---------------------------------------------------------------

expect 0 -n "$NAME" set --ttl 200 shortlived v
SETS=$((SETS + 1))
expect 0 -n "$NAME" get shortlived
out_is "v"
sleep 0.5
expect 1 -n "$NAME" get shortlived
step "--ttl 200: value there at once, gone after 0.5 s"

expect 0 -n "$NAME" set --ttl 100 --stale 60000 stalish v
SETS=$((SETS + 1))
sleep 0.3
expect 1 -n "$NAME" get stalish
expect 0 -n "$NAME" get --stale --meta stalish
out_is "v"
err_has "stale: yes"
step "--stale: past the TTL, served only with get --stale"

for bad in abc -5 "" 4294967296 1.5 " 5" +5 0x10; do
	expect 2 -n "$NAME" set --ttl "$bad" k v
	err_has "invalid value"
done
expect 2 -n "$NAME" set --stale abc k v
step "bad --ttl / --stale values: exit 2"

# --- del ---------------------------------------------------------------

expect 0 -n "$NAME" set doomed x
SETS=$((SETS + 1))
expect 0 -n "$NAME" del doomed
expect 1 -n "$NAME" get doomed
expect 1 -n "$NAME" del doomed
err_has "key not found"
step "del, then get and del of the deleted key: exit 1"

# --- missing arguments ---------------------------------------------------

for cmd in get set del; do
	expect 2 -n "$NAME" "$cmd"
	err_has "missing KEY"
done
expect 2 -n "$NAME" get a b
err_has "unexpected argument"
expect 2 -n "$NAME" flush extra
step "missing or extra arguments: exit 2"

# --- keys --------------------------------------------------------------

for k in user:1 user:2 user:3 product:1 product:2; do
	expect 0 -n "$NAME" set "$k" "value of $k"
	SETS=$((SETS + 1))
done
expect 0 -n "$NAME" keys --prefix user:
[ "$(sort "$TMP/out" | tr '\n' ' ')" = "user:1 user:2 user:3 " ] ||
	fail "keys --prefix user: gave '$(tr '\n' ' ' <"$TMP/out")'"
step "keys --prefix"

expect 0 -n "$NAME" keys
for k in greeting piped binary empty dash user:1 product:2; do
	grep -qxF -- "$k" "$TMP/out" || fail "keys does not list '$k'"
done
grep -qxF shortlived "$TMP/out" && fail "keys lists the expired key 'shortlived'"
step "keys lists the live keys, not the expired ones"

expect 0 -n "$NAME" keys --limit 2
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "keys --limit 2 printed $(wc -l <"$TMP/out") lines"
expect 2 -n "$NAME" keys --limit -1
step "keys --limit"

expect 0 -n "$NAME" set "$(printf 'ctl\001key\\x')" v1
SETS=$((SETS + 1))
expect 0 -n "$NAME" keys --prefix ctl
out_is 'ctl\x01key\\x'
expect 0 -n "$NAME" get --escaped 'ctl\x01key\\x'
out_is "v1"
expect 2 -n "$NAME" get --escaped 'bad\q'
step "keys escapes non-printable bytes as \\xNN; --escaped reads them back"

# --- limits ------------------------------------------------------------

KEY250=$(printf 'k%.0s' $(seq 250))
KEY251="${KEY250}k"
expect 0 -n "$NAME" set "$KEY250" v250
SETS=$((SETS + 1))
expect 0 -n "$NAME" get "$KEY250"
out_is "v250"
step "a key of 250 bytes works"

expect 1 -n "$NAME" set "$KEY251" v
err_has "shmtool: set"
err_has "larger than the cache accepts"
expect 1 -n "$NAME" set "$KEY251" </dev/null
err_has "larger than the cache accepts"
expect 1 -n "$NAME" get "$KEY251"
err_has "larger than the cache accepts"
step "a key of 251 bytes: exit 1 with the library's message"

expect 0 -n "$SMALL" create --size 4M --max-value 4096
head -c 4096 /dev/urandom >"$TMP/4096"
run -n "$SMALL" set max <"$TMP/4096"
[ "$RC" -eq 0 ] || fail "set of exactly max_value bytes exited $RC"
expect 0 -n "$SMALL" get max
cmp -s "$TMP/out" "$TMP/4096" || fail "value of max_value bytes came back different"
head -c 4097 /dev/zero >"$TMP/4097"
run -n "$SMALL" set over <"$TMP/4097"
[ "$RC" -eq 1 ] || fail "set of max_value + 1 bytes from stdin exited $RC, expected 1"
err_has "larger than the cache accepts"
head -c 100000 /dev/zero | "$SHMTOOL" -n "$SMALL" set huge 2>"$TMP/err"
[ "$?" -eq 1 ] || fail "set of 100000 bytes from stdin did not exit 1"
expect 1 -n "$SMALL" set over "$(head -c 4097 /dev/zero | tr '\0' x)"
err_has "larger than the cache accepts"
expect 1 -n "$SMALL" get over
step "values over max_value: exit 1 (stdin and argument)"

# --- stats -------------------------------------------------------------

expect 0 -n "$NAME" stats
out_has "memory by size class"
out_has "reclamation"
out_has "user"
step "stats (text)"

expect 0 -n "$NAME" stats --json
python3 -m json.tool "$TMP/out" >/dev/null || fail "stats --json is not valid JSON"
python3 - "$TMP/out" "$SETS" <<'EOF' || fail "stats --json counters are wrong"
import json, sys
s = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
assert s["version"] == 1
sets = sum(layer["sets"] for layer in s["layers"].values())
assert sets >= want, "sets %d < %d" % (sets, want)
assert s["layers"]["l1"]["misses"] >= 1, s["layers"]["l1"]
assert s["items"] >= 10, s["items"]
assert s["classes"], "no size class listed"
for c in s["classes"]:
    assert c["slabs"] > 0 or c["items"] > 0, c
assert sum(c["items"] for c in s["classes"]) == s["items"]
names = [e["name"] for e in s["entities"]]
assert "user" in names and "product" in names, names
user = [e for e in s["entities"] if e["name"] == "user"][0]
assert user["layers"]["l1"]["sets"] >= 3, user
for key in ("epoch", "safe_epoch", "reclaim_waits", "slots_reaped", "index_evictions"):
    assert key in s["reclamation"], key
assert s["segment"]["size"] == 16 << 20
EOF
step "stats --json is valid; sets >= $SETS, entities and classes present"

# --- check / readers ---------------------------------------------------

expect 0 -n "$NAME" check
out_has "check: 0 errors"
step "check on a healthy segment: exit 0"

expect 0 -n "$NAME" readers
head -n 1 "$TMP/out" | grep -q "slot.*pid.*tid.*alive.*epoch" || fail "readers has no header"
if tail -n +2 "$TMP/out" | awk '$4 != "yes" { bad = 1 } END { exit !bad }'; then
	fail "readers lists a slot that is not alive: $(cat "$TMP/out")"
fi
step "readers lists no slot or only live ones"

expect 0 -n "$NAME" readers --reap
out_has "reaped 0 dead thread slots"
step "readers --reap"

# A dump into a pipe that nobody reads must not keep a read-side section
# open: that would stall memory reclamation for every process of the host.
head -c 4000 /dev/zero | tr '\0' p >"$TMP/4000"
for i in $(seq 1 40); do
	run -n "$NAME" set "pipe:$i" <"$TMP/4000"
	[ "$RC" -eq 0 ] || fail "set pipe:$i exited $RC"
done
{ "$SHMTOOL" -n "$NAME" dump | { sleep 1.5; cat >/dev/null; }; } 2>/dev/null &
DUMPER=$!
sleep 0.5
expect 0 -n "$NAME" readers
if tail -n +2 "$TMP/out" | awk '$5 != "-" { bad = 1 } END { exit !bad }'; then
	fail "a dump into a stalled pipe holds a read-side section: $(cat "$TMP/out")"
fi
wait "$DUMPER"
step "dump into a stalled pipe holds no read-side section"

# --- dump / flush / load -----------------------------------------------

expect 0 -n "$NAME" keys
sort "$TMP/out" >"$TMP/keys.before"
while IFS= read -r k; do
	"$SHMTOOL" -n "$NAME" get --escaped "$k" >"$TMP/val.$(printf '%s' "$k" | md5sum | cut -c1-16)" ||
		fail "get of listed key '$k' failed"
done <"$TMP/keys.before"

expect 0 -n "$NAME" dump "$TMP/dump"
out_has "dumped"
[ -s "$TMP/dump" ] || fail "dump file is empty"
"$SHMTOOL" -n "$NAME" dump >"$TMP/dump.stdout" 2>"$TMP/err" || fail "dump to stdout failed"
# the same entries; only the header's timestamp and the remaining TTLs differ
[ "$(stat -c %s "$TMP/dump")" -eq "$(stat -c %s "$TMP/dump.stdout")" ] ||
	fail "dump to stdout differs in size from dump to a file"
err_has "dumped"
step "dump to a file and to stdout"

expect 0 -n "$NAME" flush
out_has "flushed"
expect 0 -n "$NAME" keys --all
[ ! -s "$TMP/out" ] || fail "keys after flush is not empty: $(cat "$TMP/out")"
expect 1 -n "$NAME" get greeting
step "flush empties the segment"

expect 0 -n "$NAME" load "$TMP/dump"
out_has "loaded"
expect 0 -n "$NAME" keys
sort "$TMP/out" >"$TMP/keys.after"
cmp -s "$TMP/keys.before" "$TMP/keys.after" ||
	fail "keys after load differ: $(diff "$TMP/keys.before" "$TMP/keys.after" | head -20)"
while IFS= read -r k; do
	"$SHMTOOL" -n "$NAME" get --escaped "$k" >"$TMP/val.now" || fail "get of '$k' after load failed"
	cmp -s "$TMP/val.now" "$TMP/val.$(printf '%s' "$k" | md5sum | cut -c1-16)" ||
		fail "value of '$k' differs after load"
done <"$TMP/keys.after"
step "load brings back the same keys and values"

expect 0 -n "$NAME" flush
run -n "$NAME" load <"$TMP/dump.stdout"
[ "$RC" -eq 0 ] || fail "load from stdin exited $RC"
out_has "loaded"
expect 0 -n "$NAME" get binary
cmp -s "$TMP/out" "$TMP/bin" || fail "binary value differs after load from stdin"
step "load from stdin"

printf 'not a dump at all' >"$TMP/junk"
expect 1 -n "$NAME" load "$TMP/junk"
err_has "malformed dump stream"
head -c 40 "$TMP/dump" >"$TMP/truncated"
expect 1 -n "$NAME" load "$TMP/truncated"
expect 1 -n "$NAME" load "$TMP/no-such-file"
step "load of a malformed, truncated or missing dump: exit 1"

expect 0 -n "$NAME" check
step "check after the round trip: exit 0"

# --- destroy -----------------------------------------------------------

expect 0 -n "$NAME" destroy
expect 1 -n "$NAME" info
expect 1 -n "$NAME" destroy
err_has "failed"
step "destroy; info and destroy afterwards: exit 1"

printf 'all %d checks passed\n' "$CHECKS"
exit 0
