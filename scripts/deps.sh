#!/usr/bin/env bash
# Install what hostcache needs to build and test on Debian 12, and nothing
# that is already there.  Safe to run again.  Uses sudo when not root.
set -euo pipefail

packages=(
	gcc libc6-dev pkg-config meson ninja-build   # build
	liburcu-dev                                  # atomics, barriers, futex
	libhiredis-dev libjansson-dev                # the agent: Redis client, JSON messages
	redis-server                                 # the agent's tests start their own
	libncurses-dev libmicrohttpd-dev             # the dashboards
	tmux curl chromium                           # the dashboards' tests (headless page)
	prometheus                                   # promtool check metrics on /metrics
	libsqlite3-dev                               # the product API example's database
	python3                                      # JSON checks in the tool tests
	valgrind                                     # meson test --setup valgrind
	memcached libmemcached-dev gnuplot-nox       # hostcache-compare: memcached and its client, plots
	clang libclang-rt-14-dev                     # scripts/fuzz.sh: libFuzzer and its sanitizer runtimes
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
	sudo="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
