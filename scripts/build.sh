#!/usr/bin/env bash
# Print the build directory the demo and the benchmarks use: HOSTCACHE_BUILD
# when it names one (the test suite's), otherwise build/, after installing
# what is missing (scripts/deps.sh) and building.  Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${HOSTCACHE_BUILD:-}" ]; then
	echo "$HOSTCACHE_BUILD"
	exit 0
fi
./scripts/deps.sh >&2
[ -d build/meson-private ] || meson setup build >/dev/null
ninja -C build >/dev/null
echo build
