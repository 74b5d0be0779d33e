#!/usr/bin/env bash
# scripts/fuzz.sh [--merge] [TARGET [SECONDS]]
#
# Build the fuzz targets with clang and libFuzzer (-fsanitize=fuzzer, with
# AddressSanitizer and UndefinedBehaviorSanitizer) in build-fuzz/, then run
# TARGET (check, dump, invalidate, dash_http, api_http; default: check) for
# SECONDS (default 600) in one process, over the committed corpus
# fuzz/corpus/TARGET/.  New inputs go to a scratch corpus, crashers to an
# artifact directory: the repository's corpus is only changed with --merge,
# which adds the scratch inputs that bring new coverage (libFuzzer -merge=1).
# Prints execs, exec/s, coverage and whether anything was found; exits 1 if
# something was.  Extra libFuzzer flags may be given in FUZZ_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."

merge=0
if [ "${1:-}" = "--merge" ]; then
	merge=1
	shift
fi
target=${1:-check}
seconds=${2:-600}
case "$target" in
check | dump | invalidate | dash_http | api_http) ;;
*)
	echo "usage: scripts/fuzz.sh [--merge] [check|dump|invalidate|dash_http|api_http] [SECONDS]" >&2
	exit 2
	;;
esac

./scripts/deps.sh >&2
if [ ! -d build-fuzz/meson-private ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all' >/dev/null
fi
ninja -C build-fuzz "fuzz/fuzz_$target" >/dev/null

corpus=fuzz/corpus/$target
work=$(mktemp -d "${TMPDIR:-/tmp}/hostcache-fuzz-$target.XXXXXX")
mkdir -p "$work/new" "$work/artifacts"
log=$work/fuzz.log
echo "fuzz: $target for ${seconds}s; log, new inputs and artifacts in $work" >&2

# One process only (no -jobs/-fork): the machine is shared.  New inputs go to
# the first directory given, the scratch one; the repository's is read.
set +e
"build-fuzz/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$work/artifacts/" ${FUZZ_FLAGS:-} \
	"$work/new" "$corpus" fuzz/regress/"$target" >"$log" 2>&1
status=$?
set -e

last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
found=$(find "$work/artifacts" -type f | wc -l)

echo "target:   $target"
echo "seconds:  $seconds"
echo "execs:    ${execs:-?}"
echo "exec/s:   ${rate:-?}"
echo "coverage: cov ${cov:-?}, ft ${ft:-?}; corpus ${corp:-?} (units/bytes)"
echo "final:    ${last:-?}"
if [ "$found" -gt 0 ] || [ "$status" -ne 0 ]; then
	echo "found:    YES (libFuzzer exit $status); artifacts:"
	find "$work/artifacts" -type f | sed 's/^/          /'
	grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5 | sed 's/^/          /'
	echo "          log: $log"
	exit 1
fi
echo "found:    nothing"

if [ "$merge" -eq 1 ]; then
	before=$(find "$corpus" -type f | wc -l)
	"build-fuzz/fuzz/fuzz_$target" -merge=1 -timeout=10 "$corpus" "$work/new" >>"$log" 2>&1
	after=$(find "$corpus" -type f | wc -l)
	echo "merged:   $((after - before)) new inputs into $corpus ($after files)"
fi
