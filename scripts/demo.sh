#!/usr/bin/env bash
# The quick start: the product API on hostcache, under load, with its dashboards.
#
# Installs what is missing, builds, and starts in a private temp directory:
# a redis-server on a unix socket (unless HOSTCACHE_REDIS names one), then per
# host a product-api (its workers share one hostcache segment, in front of a
# SQLite database of 100,000 products), a hostcache-agent (Redis L2,
# invalidation events, the HTTP dashboard), and a load (Zipf keys, writes,
# batches, conditional GETs).  Then it opens hostcache-top on host 1;
# quitting it (q) stops every process the script started and removes the
# segments and the temp directory.
#
#   scripts/demo.sh [options]
#     --hosts N          1 or 2: two hosts share Redis and the database, so a
#                        PUT on one drops the product from the other's cache
#     --seconds N        run N seconds without hostcache-top, print a summary
#     --warmup N         with --seconds: N more seconds first, not counted
#     --workers N        worker processes per API (default: number of CPUs)
#     --connections N    load connections per host (default 16)
#     --db-delay-ms N    added to every SQL query, standing for a remote
#                        database (default 2; 0: off)
#     --writes PCT       share of PUTs in the load (default 1)
#     --no-cache         run the API without hostcache (the baseline)
#
# HOSTCACHE_REDIS=URL uses that Redis instead of a private one (the agent's
# --redis syntax).  HOSTCACHE_BUILD=DIR uses the binaries of an existing
# build and skips installing and building (the test suite does this).
set -euo pipefail
cd "$(dirname "$0")/.."

hosts=1 secs=0 warmup=0 workers="" conns=16 delay=2 writes=1 nocache=""
num() { case "$2" in '' | *[!0-9]*) echo "demo: $1 needs a number, not '$2'" >&2; exit 2 ;; esac; }
while [ $# -gt 0 ]; do
	case "$1" in
	--hosts) num "$1" "${2:-}"; hosts=$2; shift 2 ;;
	--seconds) num "$1" "${2:-}"; secs=$2; shift 2 ;;
	--warmup) num "$1" "${2:-}"; warmup=$2; shift 2 ;;
	--workers) num "$1" "${2:-}"; workers=$2; shift 2 ;;
	--connections) num "$1" "${2:-}"; conns=$2; shift 2 ;;
	--db-delay-ms) num "$1" "${2:-}"; delay=$2; shift 2 ;;
	--writes) writes=${2:?--writes needs a percentage}; shift 2 ;;
	--no-cache) nocache=1; shift ;;
	-h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
case "$hosts" in 1 | 2) ;; *) echo "demo: --hosts is 1 or 2" >&2; exit 2 ;; esac
[ "$conns" -ge 1 ] || { echo "demo: --connections is at least 1" >&2; exit 2; }

build=$(./scripts/build.sh)
api_bin=$build/examples/product-api/product-api
load_bin=$build/examples/product-api/product-load
agent_bin=$build/agent/hostcache-agent
top_bin=$build/dashboard/hostcache-top
shmtool=$build/shmtool/shmtool
for b in "$api_bin" "$load_bin" "$agent_bin" "$top_bin" "$shmtool"; do
	[ -x "$b" ] || { echo "demo: $b is missing (build first)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hostcache-demo.XXXXXX")
pids=()  # every process started, stopped in reverse order
loads=() # the load generators
segs=()
# Is process $1 running?  A child that exited but was not reaped yet (a
# zombie) answers kill -0 as well, so read its state (no fork: this runs in
# a polling loop, on a machine that may be busy).
running() {
	local stat
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) } # the fields after the command name
	[ "${stat%% *}" != Z ]
}
stop_all() {
	local p left end=$((SECONDS + 5))
	# TERM to every process at once, then up to 5 s for all, then KILL.
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	while ((SECONDS <= end)); do
		left=""
		for p in "${pids[@]}"; do running "$p" && left=1; done
		[ -z "$left" ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}
cleanup() {
	# A second signal (a hangup reaches a session twice) must not cut the
	# cleanup short.
	trap '' INT TERM HUP
	trap - EXIT
	stop_all
	for s in "${segs[@]}"; do "$shmtool" -n "$s" destroy >/dev/null 2>&1 || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Wait until FILE ($1) is written (a port file) while process $4 runs, at
# most 30 s; else show the log ($3) of what ($2) did not start.
wait_file() {
	for _ in $(seq 300); do
		[ -s "$1" ] && return 0
		running "$4" || break
		sleep 0.1
	done
	echo "demo: $2 did not start; its log:" >&2
	cat "$3" >&2
	exit 1
}

redis=${HOSTCACHE_REDIS:-}
if [ -z "$redis" ]; then
	command -v redis-server >/dev/null || { echo "demo: redis-server is not installed" >&2; exit 1; }
	redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --save "" \
		--appendonly no --logfile "$tmp/redis.log" &
	pids+=($!)
	for _ in $(seq 100); do [ -S "$tmp/redis.sock" ] && break; sleep 0.05; done
	[ -S "$tmp/redis.sock" ] || { echo "demo: redis-server did not start" >&2; cat "$tmp/redis.log" >&2; exit 1; }
	redis="unix:$tmp/redis.sock"
fi

api_args=(-l 127.0.0.1:0 --db "$tmp/products.db" --db-delay-ms "$delay")
[ -n "$workers" ] && api_args+=(-w "$workers")
[ -n "$nocache" ] && api_args+=(--no-cache)
declare -a port dash
for ((h = 1; h <= hosts; h++)); do
	seg="demo-$$-$h"
	segs+=("$seg")
	"$api_bin" "${api_args[@]}" -n "$seg" --host "host$h" --port-file "$tmp/api$h.port" \
		>"$tmp/api$h.log" 2>&1 &
	pids+=($!)
	wait_file "$tmp/api$h.port" "product-api (host $h)" "$tmp/api$h.log" "${pids[-1]}"
	port[h]=$(cat "$tmp/api$h.port")
	dash[h]=""
	if [ -z "$nocache" ]; then
		"$agent_bin" -n "$seg" --redis "$redis" --http 127.0.0.1:0 --id "host$h" \
			>"$tmp/agent$h.log" 2>&1 &
		pids+=($!)
		for _ in $(seq 100); do
			dash[h]=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/agent$h.log" | head -1 || true)
			[ -n "${dash[h]}" ] && break
			sleep 0.05
		done
		[ -n "${dash[h]}" ] || { echo "demo: hostcache-agent (host $h) did not start:" >&2; cat "$tmp/agent$h.log" >&2; exit 1; }
	fi
done

# The load: one generator per host, each for the whole run.
run_secs=$secs
[ "$run_secs" -gt 0 ] || run_secs=86400
per_host=$(( (conns + hosts - 1) / hosts ))
for ((h = 1; h <= hosts; h++)); do
	"$load_bin" --url "http://127.0.0.1:${port[h]}" -c "$per_host" -d "$run_secs" --warmup "$warmup" \
		-k 100000 -s 0.99 -w "$writes" -b 5 --batch-size 10 --inm 20 --seed "$h" \
		>"$tmp/load$h.out" 2>&1 &
	pids+=($!)
	loads+=($!)
done
started=$SECONDS

echo "hostcache demo: $hosts host(s), temp dir $tmp"
grep -E '^product-api: (http|database delay)' "$tmp/api1.log" | sed 's/^/  /'
for ((h = 1; h <= hosts; h++)); do
	echo "  host $h: API http://127.0.0.1:${port[h]}   dashboard ${dash[h]:-(none: --no-cache)}   segment ${segs[h-1]}"
done
echo "  Redis: $redis"
echo "  try:  curl -i http://127.0.0.1:${port[1]}/products/42"
echo "        curl -i -X PUT -H 'Content-Type: application/json' -d '{\"price_cents\":1999}' http://127.0.0.1:${port[1]}/products/42"
[ "$hosts" -eq 2 ] && echo "        curl -i http://127.0.0.1:${port[2]}/products/42     (host 2 sees the PUT)"
echo

if [ "$secs" -eq 0 ]; then
	echo "Starting hostcache-top in 3 s (q quits and stops everything)."
	sleep 3
	# In the background, so a signal to this script is handled at once
	# (bash runs traps only between foreground commands); its input is the
	# terminal, which a background job would otherwise not get.
	"$top_bin" -n "${segs[0]}" <&0 &
	top_pid=$!
	pids+=("$top_pid")
	wait "$top_pid" || true
	# Stop the load generators first, so they print their summaries.
	for p in "${loads[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${loads[@]}"; do wait "$p" 2>/dev/null || true; done
else
	# Progress every 5 s; /stats of every host when the warm-up ends and
	# just before the load does, for the summary.
	stats() { curl -s "http://127.0.0.1:${port[$1]}/stats" >"$2" || true; }
	last=0
	while (( SECONDS - started < warmup + secs - 1 )); do
		sleep 0.2
		el=$(( SECONDS - started ))
		if (( warmup > 0 && el >= warmup )) && [ ! -e "$tmp/warm1.json" ]; then
			for ((h = 1; h <= hosts; h++)); do stats "$h" "$tmp/warm$h.json"; done
		fi
		(( el >= last + 5 )) || continue
		last=$el
		stats 1 "$tmp/now.json"
		python3 - "$el" "$tmp/now.json" <<'PY' || true
import json, sys
s = json.load(open(sys.argv[2])); b = s["served_by"]; n = sum(b.values()) or 1
print("  %3s s  host 1: %d requests, %d SQL queries; reads served by L1 %.1f%%, L2 %.1f%%, "
      "origin %.1f%%" % (sys.argv[1], s["requests"], s["sql"]["queries"], 100 * b["L1"] / n,
                         100 * b["L2"] / n, 100 * (b["ORIGIN"] + b["OFF"]) / n))
PY
	done
	[ -z "$nocache" ] && "$top_bin" -n "${segs[0]}" --once -i 500 || true
	for ((h = 1; h <= hosts; h++)); do stats "$h" "$tmp/end$h.json"; done
	for p in "${loads[@]}"; do wait "$p" || true; done
fi
for ((h = 1; h <= hosts; h++)); do
	echo
	echo "== host $h: the load =="
	cat "$tmp/load$h.out"
	[ -e "$tmp/end$h.json" ] || continue
	echo "== host $h: the API's counters over the measured ${secs} s =="
	python3 - "$tmp/warm$h.json" "$tmp/end$h.json" "$(( SECONDS > 0 ? secs : 1 ))" <<'PY' || true
import json, os, sys
end = json.load(open(sys.argv[2]))
try:
    warm = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    warm = None
secs = int(sys.argv[3]) or 1
def d(*path):
    v = end
    w = warm
    for p in path:
        v = v[p]
        w = w[p] if w is not None else None
    return v - (w or 0)
reads = sum(d("served_by", k) for k in end["served_by"]) or 1
print("reads         " + "  ".join("%s %.1f%%" % (k, 100 * d("served_by", k) / reads)
                                  for k in end["served_by"] if d("served_by", k)))
print("SQL           %.0f queries/s (%.0f single, %.0f batch, %.0f updates per s)"
      % (d("sql", "queries") / secs, d("sql", "single") / secs, d("sql", "batch") / secs,
         d("sql", "updates") / secs))
print("responses     %d requests, %d 304s, %d 4xx, %d 5xx; worker restarts %d"
      % (d("requests"), d("status", "304"), d("status", "4xx"), d("status", "5xx"),
         end["restarts"]))
PY
done
echo
echo "demo: stopping every process, checking and removing the segments"
stop_all
status=0
for s in "${segs[@]}"; do
	[ -z "$nocache" ] || break
	if ! out=$("$shmtool" -n "$s" check 2>&1); then
		echo "demo: segment $s failed its check: $out" >&2
		status=1
	fi
done
exit $status
