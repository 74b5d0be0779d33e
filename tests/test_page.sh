#!/usr/bin/env bash
# The dashboard page in a real browser: headless Chromium loads / from
# hostcache-top --http against a segment with known entries, runs its
# script for a few seconds of virtual time, and must log no console error
# or uncaught exception; the DOM it leaves must show the entities and the
# layer panel.  PAGE_CAPTURE=FILE also keeps the screenshot (the README's).
# Skips (77) when chromium is not installed.
set -euo pipefail
TOP=$1 SHMTOOL=$2
BROWSER=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$BROWSER" ]; then
	echo "chromium not found: skipped"
	exit 77
fi
NAME="t-page-$$"
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	"$SHMTOOL" -n "$NAME" destroy >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

"$SHMTOOL" -n "$NAME" create --size 16M >/dev/null
for i in 1 2 3 4 5; do
	"$SHMTOOL" -n "$NAME" set "product:$i" "p$i" >/dev/null
	"$SHMTOOL" -n "$NAME" set "user:$i" "u$i" >/dev/null
done
for i in 1 2 3; do "$SHMTOOL" -n "$NAME" get "product:$i" >/dev/null; done
"$SHMTOOL" -n "$NAME" get "product:9" >/dev/null 2>&1 || true

"$TOP" -n "$NAME" --http 127.0.0.1:0 --iterations 0 </dev/null >"$TMP/top.out" 2>"$TMP/top.err" &
PIDS+=("$!")
PORT=
for _ in $(seq 1 100); do
	PORT=$(sed -n 's|.*HTTP dashboard .* (port \([0-9][0-9]*\)).*|\1|p' "$TMP/top.err" | head -n 1)
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || fail "hostcache-top printed no port: $(cat "$TMP/top.err")"
sleep 2.5 # two samples, so the rates exist

# Chromium: a private profile, no sandbox (CI runs as root), logging of the
# page's console to stderr.
run_browser() { # OUTFILE ARGS...
	local out=$1
	shift
	timeout 60 "$BROWSER" --headless=new --no-sandbox --disable-gpu --no-first-run \
		--disable-extensions --user-data-dir="$TMP/profile" --enable-logging=stderr --v=0 \
		--virtual-time-budget=4000 --window-size=1280,1100 "$@" \
		"http://127.0.0.1:$PORT/" >"$out" 2>"$TMP/browser.err" || {
		cat "$TMP/browser.err" >&2
		fail "chromium failed"
	}
}
# The page writes nothing to the console, so any console line (Chromium logs
# them all at INFO, errors included) or uncaught exception is a failure.
console_clean() {
	if grep -E 'CONSOLE|Uncaught' "$TMP/browser.err" >&2; then
		fail "the page logged to the console ($1)"
	fi
}
run_browser "$TMP/dom.html" --dump-dom
console_clean "DOM run"
grep -q 'product' "$TMP/dom.html" || fail "the entity table does not show 'product'"
grep -q 'user' "$TMP/dom.html" || fail "the entity table does not show 'user'"
grep -qi 'L1' "$TMP/dom.html" || fail "no L1 layer panel"
echo "ok - the page ran without console errors and shows the entities"

run_browser "$TMP/shot.out" --screenshot="$TMP/page.png"
[ -s "$TMP/page.png" ] || fail "no screenshot"
console_clean "screenshot run"
echo "ok - screenshot $(stat -c %s "$TMP/page.png") bytes"
if [ -n "${PAGE_CAPTURE:-}" ]; then
	cp "$TMP/page.png" "$PAGE_CAPTURE"
fi
