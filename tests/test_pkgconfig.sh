#!/usr/bin/env bash
# Build examples/basic.c the way a user would, with `pkg-config hostcache`
# (the uninstalled .pc of this build tree), run it twice against one
# segment, and check that the second run is served from the cache.
set -euo pipefail
builddir=$1 srcdir=$2 sanitize=${3:-none}
tmp=$(mktemp -d)
name="t-pkgconfig-$$"
trap 'rm -rf "$tmp"; rm -f "/dev/shm/hostcache.$name"' EXIT
export PKG_CONFIG_PATH="$builddir/meson-uninstalled"
flags=$(pkg-config --cflags --libs hostcache)
# A sanitized library needs the program built with the same runtime first.
if [ "$sanitize" != none ]; then flags="-fsanitize=$sanitize $flags"; fi
cc -std=gnu11 -Wall -Werror "$srcdir/examples/basic.c" $flags -o "$tmp/basic"
export LD_LIBRARY_PATH="$builddir/core"
first=$("$tmp/basic" "$name")
second=$("$tmp/basic" "$name")
echo "first:  $first"
echo "second: $second"
case "$first" in *"5 loads, 10 hits"*) ;; *) echo "first run should load 5 and hit 10"; exit 1 ;; esac
case "$second" in *"0 loads, 15 hits"*) ;; *) echo "second run should be all hits"; exit 1 ;; esac
