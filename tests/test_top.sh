#!/usr/bin/env bash
# test_top.sh - hostcache-top end to end.
#
#   test_top.sh HOSTCACHE_TOP SHMTOOL [HOSTCACHE_LOAD]
#
# 1. Batch mode against exact counts made with shmtool (90 hits, 10 misses:
#    L1 90.0 %; then 15 hits, 5 misses in one --once interval: 75.0 %, below
#    target).
# 2. The screen in a private tmux server: the L1 line and its ratio, a
#    warning in red below target, the sort label cycling with "s", pause,
#    help, resizing down to 50x12, 40x10 and "terminal too small", "q".
# 3. Errors: a missing segment exits 1, bad usage exits 2.
# 4. --http (with curl): the dashboard answers /healthz; SIGTERM stops it.
# 5. With HOSTCACHE_LOAD: the entities of a real load show up.  With
#    TOP_CAPTURE=FILE as well, a 120x40 screen of that load, on a segment
#    named "demo" (which must not exist), is saved to FILE; that is how
#    docs/hostcache-top.txt is made.
#
# Only processes this script started are stopped, and only its own segments
# and tmux server (-L test-top-$$) are removed.
set -euo pipefail

TOP=${1:?usage: test_top.sh HOSTCACHE_TOP SHMTOOL [HOSTCACHE_LOAD]}
SHM=${2:?usage: test_top.sh HOSTCACHE_TOP SHMTOOL [HOSTCACHE_LOAD]}
LOAD=${3:-}
NAME=test-top-$$
DEMO=test-top-demo-$$
[[ -n ${TOP_CAPTURE:-} ]] && DEMO=demo # the name shown in the saved screen
demo_created=0
SOCK=test-top-$$
TMP=$(mktemp -d)
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	tmux -L "$SOCK" kill-server 2>/dev/null || true
	"$SHM" -n "$NAME" destroy >/dev/null 2>&1 || true
	if ((demo_created)); then
		"$SHM" -n "$DEMO" destroy >/dev/null 2>&1 || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ok() {
	echo "ok: $*"
}

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# gets KEY N: N lookups of KEY (misses do not stop the script).
gets() {
	local i
	for ((i = 0; i < $2; i++)); do
		"$SHM" -n "$NAME" get "$1" >/dev/null 2>&1 || true
	done
}

# misses PREFIX N: N lookups of distinct absent keys.
misses() {
	local i
	for ((i = 0; i < $2; i++)); do
		"$SHM" -n "$NAME" get "$1$i" >/dev/null 2>&1 && fail "key $1$i should be absent"
	done
	return 0
}

# The field of the last "L1 shm" line of FILE: 9 is the "hit start" ratio.
l1_field() {
	awk -v f="$2" '/^L1 shm/ { v = $f } END { print v }' "$1"
}

"$SHM" -n "$NAME" create --size 16M >/dev/null
"$SHM" -n "$NAME" set acct:1 balance >/dev/null

# ---- 3. errors (first: they need no workload) ----

set +e
"$TOP" -n "no-such-segment-$$" --once >"$TMP/out" 2>"$TMP/err"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "missing segment: exit $rc, want 1"
grep -q "no segment 'no-such-segment-$$'" "$TMP/err" || fail "missing segment: $(cat "$TMP/err")"
ok "missing segment exits 1: $(cat "$TMP/err")"

for args in "--bogus" "-n $NAME --interval 5 --once" "-n $NAME --once --iterations 2" \
	"-n $NAME --iterations" "-n $NAME --iterations 0" "-n $NAME extra"; do
	set +e
	# shellcheck disable=SC2086
	"$TOP" $args >"$TMP/out" 2>"$TMP/err" </dev/null
	rc=$?
	set -e
	[[ $rc -eq 2 ]] || fail "'$args': exit $rc, want 2"
	[[ -s "$TMP/err" ]] || fail "'$args': no message"
done
set +e
env -u HOSTCACHE_NAME "$TOP" --once >"$TMP/out" 2>"$TMP/err"
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "no name: exit $rc, want 2"
ok "bad usage exits 2: $(head -1 "$TMP/err")"

# ---- 1. batch mode, exact counts ----

# A long batch run; its first frame proves the first sample predates the
# workload, and its "hit start" column then covers all of it.
"$TOP" -n "$NAME" --iterations 1200 --interval 100 >"$TMP/batch" 2>"$TMP/batch.err" &
toppid=$!
pids+=("$toppid")
wait_for 10 grep -q '^L1 shm' "$TMP/batch" || fail "batch: no frame: $(cat "$TMP/batch.err")"
gets acct:1 90
misses acct:absent- 10
sleep 0.5 # a few more frames
kill -TERM "$toppid"
set +e
wait "$toppid"
rc=$?
set -e
[[ $rc -eq 0 ]] || fail "batch: exit $rc after SIGTERM"
start=$(l1_field "$TMP/batch" 9)
[[ $start == "90.0%" ]] || fail "batch: L1 hit since start '$start', want 90.0%"
grep -q '^L2 redis' "$TMP/batch" || fail "batch: no L2 line"
grep -q '^origin' "$TMP/batch" || fail "batch: no origin line"
verdict=$(awk '/^L1 shm/ { v = $0 } END { print v }' "$TMP/batch")
[[ $verdict == *" ok" ]] || fail "batch: 90.0% is on target: '$verdict'"
ok "batch: 90 hits + 10 misses: $verdict"

# --once: two samples one interval apart; the workload runs in between.
"$TOP" -n "$NAME" --once --interval 6000 >"$TMP/once" 2>"$TMP/once.err" &
toppid=$!
pids+=("$toppid")
sleep 1
gets acct:1 15
misses acct:gone- 5
kill -0 "$toppid" 2>/dev/null || fail "--once: the workload outlasted the 6 s interval"
set +e
wait "$toppid"
rc=$?
set -e
[[ $rc -eq 0 ]] || fail "--once: exit $rc: $(cat "$TMP/once.err")"
[[ $(grep -c '^hostcache-top ' "$TMP/once") -eq 1 ]] || fail "--once: not one frame"
start=$(l1_field "$TMP/once" 9)
[[ $start == "!75.0%" ]] || fail "--once: L1 hit since start '$start', want !75.0%"
grep -q '^L1 shm.*below target 90%' "$TMP/once" || fail "--once: no 'below target 90%'"
grep -q '^acct ' "$TMP/once" || fail "--once: no row for entity acct"
ok "--once: 15 hits + 5 misses: $(grep '^L1 shm' "$TMP/once")"

# ---- 2. the screen, in a private tmux server ----

if command -v tmux >/dev/null 2>&1; then
	tm() {
		tmux -L "$SOCK" "$@"
	}
	screen() {
		tm capture-pane -p -t top
	}
	screen_has() {
		screen | grep -q -- "$1"
	}
	screen_l1() {
		screen | awk -v f="$1" '/^L1 shm/ { print $f }'
	}
	l1_is() { # the L1 "hit start" ratio is $1
		[[ $(screen_l1 9) == "$1" ]]
	}
	sort_label() {
		screen | sed -n 's/.*sort: \([a-z]*\).*/\1/p'
	}
	sort_is_not() {
		[[ $(sort_label) != "$1" ]]
	}
	rows_at_most() {
		[[ $(screen | wc -l) -le $1 ]]
	}
	tm new-session -d -s top -x 120 -y 40 \
		"'$TOP' -n '$NAME' --interval 200; echo \$? >'$TMP/screen.rc'; sleep 60"
	wait_for 10 screen_has '^L1 shm' || fail "screen: no L1 line: $(screen)"
	gets acct:1 90
	misses acct:scr- 10
	wait_for 10 l1_is "90.0%" || fail "screen: L1 since start: $(screen)"
	ok "screen: $(screen | grep '^L1 shm')"

	# below target: 90 hits, 20 misses since start = 81.8 %, drawn in red
	misses acct:red- 10
	wait_for 10 l1_is "!81.8%" || fail "screen: below target: $(screen)"
	tm capture-pane -p -e -t top | grep '!81.8%' | grep -q $'\e\\[[0-9;]*31m' ||
		fail "screen: the warning is not red"
	ok "screen: below target in red: $(screen | grep '^L1 shm')"

	label=$(sort_label)
	[[ -n $label ]] || fail "screen: no sort label: $(screen)"
	tm send-keys -t top s
	wait_for 5 sort_is_not "$label" || fail "screen: 's' did not change the sort"
	ok "screen: sort $label -> $(sort_label)"

	tm send-keys -t top h
	wait_for 5 screen_has 'hostcache-top keys' || fail "screen: no help"
	tm send-keys -t top x
	wait_for 5 eval '! screen_has "hostcache-top keys"' || fail "screen: help did not close"
	tm send-keys -t top p
	wait_for 5 screen_has 'PAUSED' || fail "screen: no PAUSED"
	tm send-keys -t top p
	wait_for 5 eval '! screen_has PAUSED' || fail "screen: still paused"
	ok "screen: help opens and closes, pause and resume"

	tm resize-window -t top -x 50 -y 12
	wait_for 5 rows_at_most 12 || fail "screen: not resized"
	sleep 0.5
	screen >"$TMP/small"
	grep -q '^hostcache-top' "$TMP/small" || fail "50x12: no title: $(cat "$TMP/small")"
	grep -q '^L1 shm .*%' "$TMP/small" || fail "50x12: no L1 ratio: $(cat "$TMP/small")"
	# characters, not bytes: ${#line} counts in the locale hostcache-top drew in
	while IFS= read -r line; do
		((${#line} <= 50)) || fail "50x12: a line of ${#line} columns: '$line'"
	done <"$TMP/small"
	[[ ! -e $TMP/screen.rc ]] || fail "50x12: hostcache-top exited"
	ok "screen 50x12: $(grep '^L1 shm' "$TMP/small")"

	tm resize-window -t top -x 40 -y 10
	sleep 0.7
	screen | grep -q '^L1 shm' || fail "40x10: no L1 line: $(screen)"
	tm resize-window -t top -x 20 -y 4
	wait_for 5 screen_has 'terminal too small' || fail "20x4: $(screen)"
	tm resize-window -t top -x 120 -y 40
	wait_for 5 screen_has '^entities' || fail "120x40 again: $(screen)"
	[[ ! -e $TMP/screen.rc ]] || fail "resizing: hostcache-top exited"
	ok "screen: 40x10, 20x4 (terminal too small), back to 120x40"

	tm send-keys -t top q
	wait_for 5 test -s "$TMP/screen.rc" || fail "screen: 'q' did not quit"
	[[ $(cat "$TMP/screen.rc") == 0 ]] || fail "screen: exit $(cat "$TMP/screen.rc")"
	tm kill-server
	ok "screen: q quits with 0"
else
	echo "skip: tmux not found, the screen is not tested"
fi

# ---- 4. --http ----

if command -v curl >/dev/null 2>&1; then
	echo "test-token-$$" >"$TMP/token"
	"$TOP" -n "$NAME" --http 127.0.0.1:0 --token-file "$TMP/token" --iterations 0 \
		2>"$TMP/http.err" &
	toppid=$!
	pids+=("$toppid")
	wait_for 10 grep -q 'port [0-9]' "$TMP/http.err" || fail "--http: $(cat "$TMP/http.err")"
	port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$TMP/http.err")
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
	[[ $code == 200 ]] || fail "--http: /healthz answered $code"
	kill -TERM "$toppid"
	set +e
	wait "$toppid"
	rc=$?
	set -e
	[[ $rc -eq 0 ]] || fail "--http: exit $rc after SIGTERM"
	ok "--http 127.0.0.1:0 --iterations 0: /healthz 200 on port $port, SIGTERM exits 0"
else
	echo "skip: curl not found, --http is not tested"
fi

# ---- 5. a real load ----

if [[ -n $LOAD && -x $LOAD ]]; then
	# a segment a little small for the keys: misses and evictions, L1 near 90 %
	"$SHM" -n "$DEMO" create --size 16M >/dev/null || fail "segment '$DEMO' exists"
	demo_created=1
	secs=4
	[[ -n ${TOP_CAPTURE:-} ]] && secs=25
	"$LOAD" -n "$DEMO" -p 2 -t "$secs" -k 40000 -l 5000 >"$TMP/load.out" &
	loadpid=$!
	pids+=("$loadpid")
	"$TOP" -n "$DEMO" --once --interval 1500 >"$TMP/demo"
	grep -q '^product ' "$TMP/demo" || fail "load: no product row: $(cat "$TMP/demo")"
	grep -q '^user ' "$TMP/demo" || fail "load: no user row"
	l1=$(l1_field "$TMP/demo" 7)
	[[ $l1 == *% ]] || fail "load: no L1 ratio: $(cat "$TMP/demo")"
	ok "load: L1 hit over 10 s $l1; rows: $(awk '/^entity /{f=1; next} f && NF {printf "%s ", $1}' "$TMP/demo")"
	if [[ -n ${TOP_CAPTURE:-} ]] && command -v tmux >/dev/null 2>&1; then
		tmux -L "$SOCK" new-session -d -s demo -x 120 -y 40 "'$TOP' -n '$DEMO'; sleep 60"
		sleep 12
		tmux -L "$SOCK" capture-pane -p -t demo >"$TOP_CAPTURE"
		tmux -L "$SOCK" kill-server
		ok "screen saved to $TOP_CAPTURE"
	fi
	wait "$loadpid" || fail "hostcache-load failed: $(cat "$TMP/load.out")"
	ok "$(cat "$TMP/load.out")"
else
	echo "skip: no hostcache-load, the real load is not run"
fi

echo "test_top: all passed"
