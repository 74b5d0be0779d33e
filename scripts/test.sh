#!/usr/bin/env bash
# The whole test suite, twice: an optimised build, then an AddressSanitizer +
# UndefinedBehaviorSanitizer build.  Installs what is missing first.
# Exits non-zero on any failure.  STRESS_SECONDS sets the length of the
# multi-process and crash tests (default 6).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

stress=${STRESS_SECONDS:-6}

setup() { # dir, options...
	local dir=$1; shift
	if [ -d "$dir/meson-private" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

echo "== build (debugoptimized)"
setup build -Dstress_seconds="$stress"
ninja -C build
echo "== tests"
meson test -C build --print-errorlogs --num-processes 2

echo "== build (address,undefined sanitizers)"
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug \
	-Dc_args=-fno-sanitize-recover=all -Dstress_seconds="$stress"
ninja -C build-asan
echo "== tests under sanitizers"
ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3
echo "== all tests passed"
