#!/usr/bin/env bash
# Quick start: install what is missing, build, create a cache segment, run a
# small cache-aside load in two worker processes, and show `shmtool stats`
# once a second while it runs.  Removes the segment when done (or on ^C).
#
#   scripts/demo.sh [--seconds N]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=20
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) secs=${2:?--seconds needs a number}; shift 2 ;;
	-h|--help) sed -n '2,7p' "$0"; exit 0 ;;
	*) echo "demo: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
case "$secs" in ''|*[!0-9]*) echo "demo: --seconds needs a number" >&2; exit 2 ;; esac

./scripts/deps.sh
[ -d build/meson-private ] || meson setup build >/dev/null
ninja -C build >/dev/null

name="demo-$$"
shmtool=build/shmtool/shmtool
load_pid=""
cleanup() {
	[ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
	"$shmtool" -n "$name" destroy >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$shmtool" -n "$name" create --size 64M
build/bench/hostcache-load -n "$name" -p 2 -t "$secs" -k 200000 -w 5 &
load_pid=$!

for ((i = 1; i <= secs; i++)); do
	sleep 1
	[ -t 1 ] && clear
	echo "hostcache demo: segment '$name', 2 worker processes, ${i}/${secs} s"
	echo
	"$shmtool" -n "$name" stats
done
wait "$load_pid"
load_pid=""
echo
"$shmtool" -n "$name" check
