#!/usr/bin/env bash
# The figures of the README's "The product API demo" section, measured in one
# run on this machine: the demo's load against the API with hostcache (one
# host, then two hosts sharing Redis) and without it (--no-cache), the same
# load, the same database delay, each after the same warm-up.
#
#   examples/product-api/measure.sh [SECONDS [WARMUP]]     (default 30 20)
#
# Prints one block per configuration: throughput, latency percentiles,
# where single GETs were served (X-Cache), SQL queries per second and the
# 304 share of conditional GETs.  Set HOSTCACHE_BUILD to use an existing build.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
warm=${2:-20}

run() {
	local label=$1
	shift
	echo "== $label =="
	./scripts/demo.sh --seconds "$secs" --warmup "$warm" "$@" 2>&1 |
		grep -E '^(== host|throughput|latency us|  get |  batch |  put |x-cache|304 |reads |SQL )' |
		grep -v 'the API.s counters' || echo "measure: the run failed (see scripts/demo.sh --seconds $secs $*)"
	echo
}
echo "measure: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), ${secs} s after ${warm} s warm-up"
echo
run "hostcache, 1 host" --hosts 1
run "no cache (every read queries SQLite), 1 host" --hosts 1 --no-cache
run "hostcache, 2 hosts (one Redis, one database)" --hosts 2
