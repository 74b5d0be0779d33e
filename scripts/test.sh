#!/usr/bin/env bash
# The whole test suite, twice: an optimised build, then an AddressSanitizer +
# UndefinedBehaviorSanitizer build; then the tests that run several threads
# in one process (suite 'threads') a third time, under ThreadSanitizer.
# Installs what is missing first.  Exits non-zero on any failure.
# STRESS_SECONDS sets the length of the multi-process and crash tests
# (default 6).
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

# ThreadSanitizer sees the threads of one process only, so it runs the tests
# that start threads (suite 'threads', see tests/meson.build); under TSan
# liburcu's atomics are compiled as builtins it can model (core/tsan.h).
# Any report fails the test: halt_on_error stops the process at the first
# one and exits 66, in the tests and in the agents they start.
echo "== build (thread sanitizer)"
setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug -Dstress_seconds="$stress"
ninja -C build-tsan
echo "== multi-threaded tests under ThreadSanitizer"
TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
	meson test -C build-tsan --suite threads --print-errorlogs --num-processes 2 --timeout-multiplier 3
echo "== all tests passed"
