#!/usr/bin/env bash
#
# test_dash_http.sh - the HTTP dashboard end to end: hostcache-top serving
# a segment with --http, checked with curl.  The page, /api/stats (JSON,
# ETag and If-None-Match), /metrics (the exposition format validated by a
# small checker, and the counters the workload produced), /healthz, the
# token-guarded mutating endpoints, and bad requests (404, 405, 413, 414,
# garbage) after which the server must still answer.  promtool, when
# installed, checks the metrics too.
#
# usage: test_dash_http.sh PATH/TO/hostcache-top PATH/TO/shmtool
#
# Segment names carry the PID, so parallel runs do not collide; an EXIT
# trap stops the servers and destroys the segment whatever happens.

set -euo pipefail

TOP=${1:?usage: test_dash_http.sh PATH/TO/hostcache-top PATH/TO/shmtool}
SHMTOOL=${2:?usage: test_dash_http.sh PATH/TO/hostcache-top PATH/TO/shmtool}
NAME="t-dash-http-$$"
TOKEN="t0ken-$$-$RANDOM$RANDOM"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_dash_http.XXXXXX")
PIDS=()
unset HOSTCACHE_NAME HOSTCACHE_DASH_TOKEN

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	"$SHMTOOL" -n "$NAME" destroy >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT

for tool in curl python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is not installed"
		exit 77
	fi
done

CHECKS=0
step() {
	CHECKS=$((CHECKS + 1))
	printf 'ok %d - %s\n' "$CHECKS" "$*"
}

fail() {
	printf 'FAIL: %s\n' "$*" >&2
	for f in "$TMP"/*.err; do
		[ -s "$f" ] && printf '  %s: %s\n' "${f##*/}" "$(head -c 2000 "$f")" >&2
	done
	exit 1
}

# start_top OUT [ENV=VALUE...]: hostcache-top serving the segment on a port
# of its choosing; sets PORT from the line it prints on stderr ("http:
# listening on http://127.0.0.1:PORT/", or "HTTP dashboard ... (port PORT)").
start_top() {
	local out=$1
	shift
	env "$@" "$TOP" -n "$NAME" --http 127.0.0.1:0 --iterations 0 \
		</dev/null >"$TMP/$out.out" 2>"$TMP/$out.err" &
	PIDS+=("$!")
	local pid=$!
	PORT=
	for _ in $(seq 1 100); do
		PORT=$(sed -n -e 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\)/.*|\1|p' \
			-e 's|.*HTTP dashboard .* (port \([0-9][0-9]*\)).*|\1|p' "$TMP/$out.err" |
			head -n 1)
		[ -n "$PORT" ] && break
		kill -0 "$pid" 2>/dev/null || fail "hostcache-top exited before listening"
		sleep 0.1
	done
	[ -n "$PORT" ] || fail "hostcache-top printed no port in 10 s"
}

# get PATH [CURL ARGS...]: body in $TMP/body, headers in $TMP/headers,
# status in CODE, the Content-Type in CTYPE.
get() {
	local path=$1
	shift
	rm -f "$TMP/body" # curl creates no file for an empty body
	CODE=$(curl -sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 10 \
		"$@" "http://127.0.0.1:$PORT$path") || fail "curl $path failed"
	CTYPE=$(header Content-Type)
}

# header NAME: the value of a response header of the last get (no CR).
header() {
	tr -d '\r' <"$TMP/headers" | awk -v n="$1" -F': ' \
		'tolower($1) == tolower(n) { sub(/^[^:]*: /, ""); print; exit }'
}

expect_code() {
	[ "$CODE" = "$1" ] || fail "$2: HTTP $CODE, expected $1 (body: $(head -c 300 "$TMP/body" 2>/dev/null))"
}

# ---- a segment with a known workload ----

"$SHMTOOL" -n "$NAME" create --size 16M >/dev/null
for k in product:1 product:2 product:3 user:1 plain; do
	"$SHMTOOL" -n "$NAME" set "$k" "value of $k" >/dev/null
done
for _ in 1 2 3; do
	"$SHMTOOL" -n "$NAME" get product:1 >/dev/null
done
"$SHMTOOL" -n "$NAME" get product:404 >/dev/null 2>&1 && fail "product:404 exists"
"$SHMTOOL" -n "$NAME" get user:2 >/dev/null 2>&1 && fail "user:2 exists"
step "segment with 5 entries, 3 L1 hits and 1 miss on product, 1 miss on user"

start_top top "HOSTCACHE_DASH_TOKEN=$TOKEN"
step "hostcache-top serves on 127.0.0.1:$PORT"
top_pid=${PIDS[${#PIDS[@]}-1]}
grep -qaF -- "$TOKEN" "/proc/$top_pid/environ" && fail "the token is still in /proc/PID/environ"
grep -qaF -- "$TOKEN" "/proc/$top_pid/cmdline" && fail "the token is in /proc/PID/cmdline"
step "the token from HOSTCACHE_DASH_TOKEN is wiped from the environment"

# ---- the page ----

get /
expect_code 200 "GET /"
case $CTYPE in text/html*) ;; *) fail "GET /: Content-Type '$CTYPE'" ;; esac
grep -qF '<title>hostcache dashboard</title>' "$TMP/body" || fail "GET /: no title"
grep -qF 'api/stats' "$TMP/body" || fail "GET /: the page does not poll api/stats"
if grep -qiE '(src|href)="(https?:)?//' "$TMP/body"; then
	fail "GET /: the page loads something from elsewhere"
fi
step "GET / is the self-contained HTML page"

# ---- /api/stats ----

get /api/stats
expect_code 200 "GET /api/stats"
case $CTYPE in application/json*) ;; *) fail "/api/stats: Content-Type '$CTYPE'" ;; esac
[ "$(header Cache-Control)" = "no-cache" ] || fail "/api/stats: Cache-Control not no-cache"
python3 - "$TMP/body" "$NAME" <<'EOF' || fail "/api/stats: unexpected document"
import json, sys
d = json.load(open(sys.argv[1]))
def need(cond, what):
    if not cond:
        sys.exit("stats: " + what)
need(d["version"] == 1, "version")
need(d["name"] == sys.argv[2], "name")
need(d["items"] == 5, "items %r" % d["items"])
for l in ("l1", "l2", "origin"):
    need(isinstance(d["layers"][l]["hits"], int), "layers." + l)
    for w in ("1s", "10s", "60s", "start"):
        r = d["rates"][l][w]
        for f in ("requests", "hits", "misses", "hit_ratio", "below_target"):
            need(f in r, "rates.%s.%s.%s" % (l, w, f))
        need(r["hit_ratio"] is None or 0 <= r["hit_ratio"] <= 1, "hit_ratio range")
need("10s" in d["rates"]["loading"] and "loads" in d["rates"]["loading"]["10s"], "rates.loading")
need(d["targets"] == {"l1": 0.9, "l2": 0.8}, "targets")
ents = {e["name"]: e for e in d["entities"]}
need(ents["product"]["layers"]["l1"]["hits"] == 3, "product l1 hits")
need(ents["product"]["layers"]["l1"]["misses"] == 1, "product l1 misses")
need(ents["user"]["layers"]["l1"]["misses"] == 1, "user l1 misses")
need("" in ents, "the entity of keys without a prefix")
for k in ("segment", "loading", "agent", "classes", "reclamation", "history"):
    need(k in d, k)
need(d["agent"]["redis"] in ("up", "down", "unknown"), "agent.redis")
EOF
step "GET /api/stats is version-1 JSON with layers, entities, rates and targets"

# ETag and If-None-Match; the body changes with each sample (once a
# second), so a conditional request right after may rarely see a new one.
etag=$(header ETag)
[[ $etag =~ ^\"[0-9a-f]{12}\"$ ]] || fail "/api/stats: ETag '$etag' is not a strong 12-hex validator"
got304=
for _ in 1 2 3 4 5; do
	get /api/stats
	etag=$(header ETag)
	get /api/stats -H "If-None-Match: $etag"
	if [ "$CODE" = 304 ]; then
		got304=1
		break
	fi
done
[ -n "$got304" ] || fail "If-None-Match with the current ETag never gave 304"
[ ! -s "$TMP/body" ] || fail "304 with a body"
touch "$TMP/body"
[ "$(header ETag)" = "$etag" ] || fail "304 without the ETag"
step "If-None-Match with the current ETag answers 304 without a body"
for _ in 1 2 3 4 5; do
	get /api/stats
	etag=$(header ETag)
	get /api/stats -H "If-None-Match: \"000000000000\", W/$etag"
	[ "$CODE" = 304 ] && break
done
expect_code 304 "If-None-Match with a list holding the weak form of the ETag"
get /api/stats -H 'If-None-Match: "000000000000"'
expect_code 200 "a non-matching If-None-Match"
[ -s "$TMP/body" ] || fail "200 without a body"
step "a list with W/ matches; a non-matching If-None-Match answers 200 with the body"

# ---- /metrics ----

cat >"$TMP/check_metrics.py" <<'EOF'
# check_metrics.py FILE [SERIES=VALUE...]: validate the Prometheus text
# exposition format 0.0.4 and the values of some series.
import math, re, sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?,?\})? (\S+)(?: (-?\d+))?$" % (NAME, LABEL, LABEL))
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")

def die(lineno, msg):
    sys.exit("metrics line %d: %s" % (lineno, msg))

def value(s, lineno):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    try:
        return float(s)
    except ValueError:
        die(lineno, "bad value %r" % s)

types, helps, done, series = {}, set(), set(), {}
current = None
hist = {}  # (family, labels without le) -> {"buckets": [(le, v)], "sum": v, "count": v}
text = open(sys.argv[1], encoding="utf-8").read()
if not text.endswith("\n"):
    sys.exit("metrics: no final newline")
for n, line in enumerate(text.split("\n")[:-1], 1):
    if line.startswith("#"):
        m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
        if not m:
            continue  # a comment
        kind, name, rest = m.groups()
        if name in done:
            die(n, "%s for %s after its samples" % (kind, name))
        if kind == "TYPE":
            if name in types:
                die(n, "second TYPE for " + name)
            if rest not in TYPES:
                die(n, "unknown type " + rest)
            types[name] = rest
        else:
            if name in helps:
                die(n, "second HELP for " + name)
            helps.add(name)
        if current and current != name:
            done.add(current)
        current = name
        continue
    if not line.strip():
        continue
    m = SAMPLE.match(line)
    if not m:
        die(n, "not a sample: %r" % line)
    name, labels = m.group(1), m.group(2) or ""
    pairs = re.findall(LABEL, labels)
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        die(n, "a label twice")
    family = name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            family = base
    if family not in types:
        die(n, "sample of %s without a TYPE" % name)
    if family in done:
        die(n, "samples of %s are not contiguous" % family)
    if current != family:
        if current:
            done.add(current)
        current = family
    if types[family] == "counter" and not name.endswith("_total"):
        die(n, "counter %s without _total" % name)
    key = name + "{" + ",".join('%s="%s"' % p for p in sorted(pairs)) + "}"
    if key in series:
        die(n, "series twice: " + key)
    v = value(m.group(7), n)
    series[key] = v
    if types[family] == "counter" and (math.isnan(v) or v < 0):
        die(n, "counter below zero")
    if types[family] == "histogram":
        rest = tuple(sorted(p for p in pairs if p[0] != "le"))
        h = hist.setdefault((family, rest), {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            le = dict(pairs).get("le")
            if le is None:
                die(n, "bucket without le")
            h["buckets"].append((value(le, n), v))
        elif name.endswith("_sum"):
            h["sum"] = v
        elif name.endswith("_count"):
            h["count"] = v
        else:
            die(n, "histogram sample " + name)

for (family, rest), h in hist.items():
    b = h["buckets"]
    what = "%s%s" % (family, dict(rest))
    if not b or b[-1][0] != math.inf:
        sys.exit("metrics: %s: buckets do not end with +Inf" % what)
    for (le1, v1), (le2, v2) in zip(b, b[1:]):
        if not le1 < le2:
            sys.exit("metrics: %s: le not increasing" % what)
        if v2 < v1:
            sys.exit("metrics: %s: buckets not cumulative" % what)
    if h["count"] != b[-1][1]:
        sys.exit("metrics: %s: _count %r != +Inf bucket %r" % (what, h["count"], b[-1][1]))
    if h["sum"] is None or h["sum"] < 0:
        sys.exit("metrics: %s: no _sum" % what)

for want in sys.argv[2:]:
    key, _, v = want.rpartition("=")
    if key not in series:
        sys.exit("metrics: no series " + key)
    if series[key] != float(v):
        sys.exit("metrics: %s is %r, expected %s" % (key, series[key], v))
print("metrics: %d series in %d families, %d histograms" % (len(series), len(types), len(hist)))
EOF

get /metrics
expect_code 200 "GET /metrics"
[ "$CTYPE" = "text/plain; version=0.0.4; charset=utf-8" ] || fail "/metrics: Content-Type '$CTYPE'"
cp "$TMP/body" "$TMP/metrics.txt"
python3 "$TMP/check_metrics.py" "$TMP/metrics.txt" \
	'cache_hits_total{entity="product",layer="l1"}=3' \
	'cache_misses_total{entity="product",layer="l1"}=1' \
	'cache_misses_total{entity="user",layer="l1"}=1' \
	'cache_sets_total{entity="",layer="l1"}=1' \
	'cache_sets_total{entity="product",layer="l1"}=3' \
	'cache_items{}=5' \
	'cache_agent_up{}=0' \
	'cache_loads_total{entity="product"}=0' \
	'cache_load_duration_seconds_count{entity="product"}=0' \
	>"$TMP/check.out" 2>&1 || fail "/metrics: $(cat "$TMP/check.out")"
for family in cache_evictions_total cache_expirations_total cache_stale_hits_total \
	cache_errors_total cache_load_errors_total cache_singleflight_leaders_total \
	cache_singleflight_coalesced_total cache_singleflight_takeovers_total cache_bytes \
	cache_segment_bytes cache_redis_up cache_ring_depth cache_l2_duration_seconds; do
	grep -q "^# TYPE $family " "$TMP/metrics.txt" || fail "/metrics: no family $family"
done
grep -q '^# TYPE cache_load_duration_seconds histogram$' "$TMP/metrics.txt" ||
	fail "/metrics: cache_load_duration_seconds is not a histogram"
step "GET /metrics is valid exposition text with the workload's counters ($(cat "$TMP/check.out"))"

if command -v promtool >/dev/null; then
	promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.err" 2>&1 ||
		fail "promtool check metrics: $(cat "$TMP/promtool.err")"
	step "promtool check metrics accepts /metrics"
else
	echo "# note: promtool is not installed; skipped 'promtool check metrics'"
fi

# ---- /healthz ----

get /healthz
expect_code 200 "GET /healthz"
[ "$(cat "$TMP/body")" = ok ] || fail "/healthz: body '$(cat "$TMP/body")'"
step "GET /healthz answers ok"

# ---- mutating endpoints ----

get /api/flush -X POST
expect_code 401 "POST /api/flush without a token"
case $(header WWW-Authenticate) in Bearer*) ;; *) fail "401 without WWW-Authenticate: Bearer" ;; esac
get /api/flush -X POST -H "Authorization: Bearer wrong-$TOKEN"
expect_code 401 "POST /api/flush with a wrong token"
get /api/flush -X POST -H "Authorization: Bearer ${TOKEN}x"
expect_code 401 "POST /api/flush with a longer token"
"$SHMTOOL" -n "$NAME" keys | grep -q . || fail "refused flushes emptied the segment"
step "POST /api/flush without the right token: 401 with WWW-Authenticate: Bearer"

get "/api/invalidate?key=product:2" -X POST -H "Authorization: Bearer $TOKEN"
expect_code 200 "POST /api/invalidate with the token"
"$SHMTOOL" -n "$NAME" get product:2 >/dev/null 2>&1 && fail "product:2 survived its invalidation"
"$SHMTOOL" -n "$NAME" get product:3 >/dev/null || fail "invalidate dropped another key"
get /api/invalidate -X POST -H "Authorization: Bearer $TOKEN"
expect_code 400 "POST /api/invalidate without a key"
step "POST /api/invalidate?key= drops the key; without a key: 400"

get /api/flush -X POST -H "Authorization: Bearer $TOKEN"
expect_code 200 "POST /api/flush with the token"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["flushed"] == 4, d' \
	"$TMP/body" || fail "flush answered $(cat "$TMP/body")"
[ -z "$("$SHMTOOL" -n "$NAME" keys)" ] || fail "the segment is not empty after the flush"
step "POST /api/flush with the token empties the segment"

# ---- bad requests; the server keeps serving ----

get /nope
expect_code 404 "GET /nope"
get /api/stats -X DELETE
expect_code 405 "DELETE /api/stats"
case $(header Allow) in *GET*) ;; *) fail "405 without Allow: GET" ;; esac
get /api/flush
expect_code 405 "GET /api/flush"
[ "$(header Allow)" = POST ] || fail "GET /api/flush: Allow '$(header Allow)'"
step "unknown path: 404; wrong method: 405 with Allow"

head -c 100000 /dev/zero | tr '\0' x >"$TMP/big"
get /api/flush -X POST -H "Authorization: Bearer $TOKEN" --data-binary @"$TMP/big"
[[ $CODE =~ ^4[0-9][0-9]$ ]] || fail "a 100 kB body: HTTP $CODE"
get /api/flush -X POST -H "Authorization: Bearer $TOKEN" -H 'Transfer-Encoding: chunked' \
	--data-binary @"$TMP/big"
[[ $CODE =~ ^4[0-9][0-9]$ ]] || fail "a 100 kB chunked body: HTTP $CODE"
get "/$(head -c 3000 /dev/zero | tr '\0' a)"
[[ $CODE =~ ^4[0-9][0-9]$ ]] || fail "a 3000-byte path: HTTP $CODE"
get "/$(head -c 60000 /dev/zero | tr '\0' a)"
[[ $CODE =~ ^4[0-9][0-9]$ ]] || fail "a 60000-byte path: HTTP $CODE"
get /api/stats -H "X-Big: $(head -c 40000 /dev/zero | tr '\0' a)"
[[ $CODE =~ ^4[0-9][0-9]$ ]] || fail "a 40 kB header: HTTP $CODE"
python3 - "$PORT" <<'EOF' || fail "garbage requests"
import socket, sys
for junk in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\xff\xfe\r\n\r\n",
             b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
             b"GET /healthz HTTP/1.1\r\n"):  # and hang up mid-request
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.sendall(junk)
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
EOF
get /healthz
expect_code 200 "GET /healthz after the bad requests"
get /api/stats
expect_code 200 "GET /api/stats after the bad requests"
step "oversized bodies, paths and headers get 4xx; garbage is survived; the server still answers"

# ---- without a token nothing changes ----

"$SHMTOOL" -n "$NAME" set product:9 nine >/dev/null
start_top notoken
get /api/flush -X POST -H "Authorization: Bearer $TOKEN"
expect_code 403 "POST /api/flush to a server without a token"
"$SHMTOOL" -n "$NAME" get product:9 >/dev/null || fail "a refused flush emptied the segment"
get /healthz
expect_code 200 "GET /healthz (second server)"
step "without a configured token, mutating endpoints answer 403"

# both servers still run, and stop cleanly (a sanitizer build's reports
# would show in the exit status and on stderr)
for pid in "${PIDS[@]}"; do
	kill -0 "$pid" 2>/dev/null || fail "hostcache-top (pid $pid) died"
	kill "$pid"
	status=0
	wait "$pid" || status=$?
	[ "$status" = 0 ] || fail "hostcache-top (pid $pid) exited $status after SIGTERM"
done
PIDS=()
if grep -l -E 'Sanitizer|runtime error' "$TMP"/*.err; then
	fail "sanitizer reports on hostcache-top's stderr"
fi
step "the servers survived everything and stopped on SIGTERM with status 0"

echo "$CHECKS passed, 0 failed"
