#!/usr/bin/env bash
# hostcache against what users would pick instead, in one run: the tables,
# CSV, JSON and plots of the README's "Against the alternatives" section.
#
#   bench/compare.sh [--quick] [hostcache-compare options]
#
# Installs what is missing and builds (unless HOSTCACHE_BUILD names a build
# directory), runs build/bench/hostcache-compare (it starts and stops its own
# redis-server and memcached), the multi-tier cases of hostcache-bench (an L1
# miss answered from Redis through the agent; a cold-start stampede), and
# draws docs/compare/size.png and docs/compare/procs.png with gnuplot.
# Results go to docs/compare/ (HOSTCACHE_COMPARE_OUT to change).
set -euo pipefail
cd "$(dirname "$0")/.."

build=$(./scripts/build.sh)
out=${HOSTCACHE_COMPARE_OUT:-docs/compare}
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/compare-plot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "compare: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/compare.txt"
status=0
"$build/bench/hostcache-compare" --csv "$out/compare.csv" --json "$out/compare.json" \
	--markdown "$out/compare.md" "$@" | tee -a "$out/compare.txt" || status=$?

echo | tee -a "$out/compare.txt"
echo "multi-tier cases (hostcache-bench):" | tee -a "$out/compare.txt"
bench_secs=2
case " $* " in *" --quick "*) bench_secs=0.5 ;; esac
for c in agent_l2_hit stampede; do
	"$build/bench/hostcache-bench" --case "$c" --seconds "$bench_secs" 2>/dev/null |
		tee -a "$out/compare.txt" || echo "compare: hostcache-bench --case $c failed" | tee -a "$out/compare.txt"
done

# Plots: one data file per system, from the CSV (columns: see its header).
systems=$(awk -F, 'NR > 1 && $14 == "" {print $2}' "$out/compare.csv" | awk '!seen[$0]++')
plot_size=() plot_procs=()
for s in $systems; do
	awk -F, -v s="$s" 'NR > 1 && $1 == "size" && $2 == s && $14 == "" {print $4, $10}' \
		"$out/compare.csv" >"$tmp/size-$s.dat"
	awk -F, -v s="$s" 'NR > 1 && $1 == "procs" && $2 == s && $14 == "" {print $8, $9}' \
		"$out/compare.csv" >"$tmp/procs-$s.dat"
	[ -s "$tmp/size-$s.dat" ] && plot_size+=("'$tmp/size-$s.dat' using 1:2 with linespoints title '$s'")
	[ -s "$tmp/procs-$s.dat" ] && plot_procs+=("'$tmp/procs-$s.dat' using 1:2 with linespoints title '$s'")
done
join() { local IFS=,; echo "$*"; }
if ! command -v gnuplot >/dev/null; then
	echo "compare: gnuplot is not installed: no plots"
	exit $status
fi
style="set terminal pngcairo size 900,520 font ',10'; set grid; set key outside right"
if [ ${#plot_size[@]} -gt 0 ]; then
	gnuplot <<GP
$style
set output '$out/size.png'
set title 'Latency per get against value size (1 process, 10 K keys, Zipf 0.99)'
set logscale xy
set xlabel 'value size (bytes)'
set ylabel 'p50 ns per key'
set xtics ('16' 16, '100' 100, '1 KiB' 1024, '16 KiB' 16384)
plot $(join "${plot_size[@]}")
GP
	echo "compare: wrote $out/size.png"
fi
if [ ${#plot_procs[@]} -gt 0 ]; then
	gnuplot <<GP
$style
set output '$out/procs.png'
set title 'Throughput against worker processes (100 B values, Zipf 0.99)'
set logscale y
set xtics 1
set xlabel 'processes'
set ylabel 'M keys per second, all processes'
plot $(join "${plot_procs[@]}")
GP
	echo "compare: wrote $out/procs.png"
fi
echo "compare: tables in $out/compare.txt and $out/compare.md, rows in $out/compare.csv and $out/compare.json"
exit $status
