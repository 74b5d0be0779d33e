#!/usr/bin/env bash
# The README's first command, scripts/demo.sh, on the binaries of this build:
#
#   1. non-interactive (--seconds, two hosts): exits 0, the load ran without
#      errors on both hosts, every layer shows up (L1, L2, origin) and host 2
#      received host 1's invalidations; then no process of its session is
#      left, no segment, no temp directory;
#   2. interactive, in a private tmux server: hostcache-top comes up on the
#      demo's segment, 'q' ends the demo with status 0, and again nothing is
#      left behind;
#   3. the same, but the terminal goes away (the tmux server is killed, as a
#      closed ssh session or window would): the demo still cleans up.
#
#   test_demo.sh BUILD_ROOT SOURCE_ROOT
set -uo pipefail

build=${1:?build root}
src=${2:?source root}
demo=$src/scripts/demo.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/test-demo.XXXXXX")
tsock="test-demo-$$"
export HOSTCACHE_BUILD=$build TMPDIR=$work

fail() {
	echo "FAIL: $*"
	[ -f "$work/out" ] && { echo "--- demo output ---"; tail -60 "$work/out"; }
	exit 1
}
cleanup() {
	tmux -L "$tsock" kill-server 2>/dev/null
	# Anything the demo left running or in /dev/shm is a failure reported
	# above; end and remove it here.  Demo pids: the sessions' leaders and
	# the pids in segment names (recorded in demo_pids).
	for s in $(cat "$work"/sid 2>/dev/null); do
		for p in $(ps -e -o sid=,pid= | awk -v s="$s" '$1 == s {print $2}'); do
			kill -KILL "$p" 2>/dev/null
		done
	done
	for p in $(cat "$work"/sid "$work"/demo_pids 2>/dev/null); do
		for seg in /dev/shm/hostcache.demo-"$p"-*; do
			[ -e "$seg" ] && rm -f "$seg"
		done
	done
	rm -rf "$work"
}
trap cleanup EXIT

command -v redis-server >/dev/null || { echo "SKIP: redis-server not installed"; exit 77; }

# Processes whose session is $1 (the demo and everything it started).
session_procs() { ps -e -o sid=,pid=,args= | awk -v s="$1" '$1 == s'; }

# Nothing of the demo with session $1 and shell pid $2 may remain.
check_clean() {
	local left t0=$SECONDS
	for _ in $(seq 150); do
		left=$(session_procs "$1")
		[ -z "$left" ] && break
		sleep 0.1
	done
	took=$((SECONDS - t0))
	[ -z "$left" ] || fail "processes left behind: $left"
	ls /dev/shm | grep -q "^hostcache\.demo-$2-" && fail "segments left: $(ls /dev/shm | grep "demo-$2-")"
	[ -z "$(ls "$work" | grep hostcache-demo)" ] || fail "temp directory left: $(ls "$work")"
}

# 1. --seconds, two hosts.  setsid makes the demo a session leader, so every
# process it starts is found by session id afterwards.
setsid -w bash -c 'echo $$ >>"$1/sid"; exec "$2" --seconds 6 --hosts 2 --connections 8' _ \
	"$work" "$demo" >"$work/out" 2>&1
rc=$?
sid=$(tail -1 "$work/sid")
[ $rc -eq 0 ] || fail "demo --seconds exited $rc"
out=$(cat "$work/out")
for h in 1 2; do
	grep -q "== host $h: the load ==" <<<"$out" || fail "no load summary for host $h"
done
[ "$(grep -c '^requests .*(.* answered, 0 errors)' <<<"$out")" -eq 2 ] ||
	fail "a load saw transport errors or did not run"
grep -Eq '^throughput +[1-9][0-9]*' <<<"$out" || fail "no throughput"
grep -Eq '^x-cache +L1 [1-9]' <<<"$out" || fail "no L1 hits in the load"
grep -Eq 'L2 [1-9][0-9.]* %' <<<"$out" || fail "no L2 hits on either host"
grep -Eq '^reads +L1 [0-9.]+%' <<<"$out" || fail "no per-layer summary"
grep -q 'curl -i http://127.0.0.1:' <<<"$out" || fail "no curl line"
grep -Eq 'dashboard http://127\.0\.0\.1:[0-9]+' <<<"$out" || fail "no dashboard URL"
grep -Eq 'invalidations [1-9][0-9]* received' <<<"$out" || fail "host 1 received no invalidations"
grep -q 'failed its check' <<<"$out" && fail "a segment failed shmtool check"
check_clean "$sid" "$sid"
echo "ok - demo --seconds 6 --hosts 2: exit 0, both loads clean, L1/L2 hits, nothing left"

# Start the demo in a new private tmux server; sets sid (the pane's session)
# and demo_pid (from the segment name hostcache-top shows).
start_in_tmux() {
	rm -f "$work/status"
	tmux -L "$tsock" -f /dev/null new-session -d -x 120 -y 40 \
		"echo \$\$ >>'$work/sid'; '$demo' --connections 4 2>'$work/err'; echo \$? >'$work/status'" ||
		fail "tmux did not start"
	local lines=$1
	sid=""
	for _ in $(seq 100); do
		[ "$(wc -l <"$work/sid")" -ge "$lines" ] && sid=$(tail -1 "$work/sid") && break
		sleep 0.1
	done
	[ -n "$sid" ] || fail "the interactive demo did not start"
	screen=""
	for _ in $(seq 300); do
		screen=$(tmux -L "$tsock" capture-pane -p 2>/dev/null)
		grep -q "^hostcache-top  demo-[0-9]*-1" <<<"$screen" &&
			grep -Eq 'L1 shm +[0-9.]+k?' <<<"$screen" && break
		sleep 0.1
	done
	grep -q "^hostcache-top  demo-[0-9]*-1" <<<"$screen" || fail "hostcache-top did not come up: $screen"
	demo_pid=$(sed -n 's/^hostcache-top  demo-\([0-9]*\)-1 .*/\1/p' <<<"$screen")
	echo "$demo_pid" >>"$work/demo_pids"
}

# 2. Interactive: hostcache-top in tmux, quit with q.
start_in_tmux 2
sleep 1.5 # let a sample with requests arrive
screen=$(tmux -L "$tsock" capture-pane -p)
grep -Eq 'L1 shm +[1-9]' <<<"$screen" || fail "hostcache-top shows no L1 traffic: $screen"
tmux -L "$tsock" send-keys q
for _ in $(seq 150); do
	[ -s "$work/status" ] && break
	sleep 0.1
done
st=$(cat "$work/status" 2>/dev/null)
[ "$st" = 0 ] || fail "after q the demo did not exit 0 (status '$st'; stderr: $(cat "$work/err"))"
check_clean "$sid" "$demo_pid"
echo "ok - interactive demo: hostcache-top on the segment, q stops everything, nothing left"

# 3. The terminal goes away under hostcache-top.
tmux -L "$tsock" kill-server 2>/dev/null
start_in_tmux 3
tmux -L "$tsock" kill-server
check_clean "$sid" "$demo_pid"
echo "ok - terminal closed under the demo: every process stopped within ${took} s, nothing left"
