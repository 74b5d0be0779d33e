#!/usr/bin/env python3
"""
test_product_api.py - examples/product-api end to end, on two "hosts" that
share one private redis-server and one SQLite file.

  host A: segment A + hostcache-agent A + product-api (2 workers, -t 4:
          four request threads each, so 32 concurrent requests queue;
          --db-delay-ms 50 so concurrent requests overlap)
  host B: segment B + hostcache-agent B + product-api (2 workers, -t 8)
  host C: segment C, no agent, product-api (2 workers, -t 8, --ttl-ms 400
          --stale-ms 20000 --db-delay-ms 50): short TTLs for check 10

Checks (each prints "ok - ..."; the first failure prints "FAIL: ..." and
the test exits 1):
  1. repeated GETs of one product are L1 hits that cost no SQL
  2. single-flight: 32 concurrent GETs of a cold product (both workers) cost
     exactly one SQL query and all get the same body and ETag (3 ids)
  3. If-None-Match: the ETag, "*" and W/"..." give 304, another ETag 200
  4. a PUT answered by worker w is seen by the other worker from L1 at once
  5. L2 across hosts: a product read on A comes to B from Redis, no SQL
  6. a PUT on A invalidates B's L1 entry within 3 s (latency printed)
  7. batch GETs: one SQL query for the misses, L1=10 the second time,
     unknown ids listed in "missing"
  8. 4xx on bad input (ids, bodies, content type, method, path, size),
     negative caching of unknown ids, garbage and truncated requests on raw
     sockets; no worker restarted, every process alive
  10. (run before 9) on host C: stale-while-revalidate (a GET past the
     TTL answers X-Cache STALE at once, with the old body and max-age=0,
     stale-while-revalidate=...; one background SQL query later it is an L1
     hit with Age 0), 16 concurrent GETs of a stale product cost exactly one
     refresh, Cache-Control and ETag/304 of a fresh hit
  9. SIGTERM: product-api and the agents exit 0; the three segments pass
     "shmtool check"

Usage: test_product_api.py PRODUCT-API HOSTCACHE-AGENT SHMTOOL
Exit status: 0 passed, 1 failed, 77 skipped (no redis-server).

Every process the test starts is SIGTERMed then SIGKILLed, its segments are
destroyed and its temporary directory removed, whatever happens.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from e2e import Fail, Procs, check, note, ok, poll, redis_cmd

ROWS = 2000
UNKNOWN = [999999, 999998]  # ids past --rows: no such product

T0 = time.monotonic()


# --------------------------------------------------------------------------
# HTTP

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def h(self, name):
        return self.headers.get(name.lower())

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise Fail("not JSON (%s): %r" % (e, self.body[:200]))

    def __repr__(self):
        return "%d X-Worker=%s X-Cache=%s body=%r" % (
            self.status, self.h("X-Worker"), self.h("X-Cache"), self.body[:120])


def request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    except (OSError, http.client.HTTPException) as e:
        raise Fail("%s %s on port %d: %s: %s" % (method, path, port, type(e).__name__, e))
    finally:
        conn.close()


def get(port, path, headers=None):
    return request(port, "GET", path, headers=headers)


def put_json(port, pid, obj):
    body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    return request(port, "PUT", "/products/%d" % pid, body=body,
                   headers={"Content-Type": "application/json"})


def stats(port):
    r = get(port, "/stats")
    check(r.status == 200, "GET /stats: %r" % r)
    return r.json()


def sql(port):
    return stats(port)["sql"]


def raw_exchange(port, data, read_reply=True, timeout=3):
    """Send raw bytes; return whatever comes back until close or timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close early (e.g. a 413 before the body)
        if read_reply:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
                # stop once one whole response is in (headers + Content-Length)
                head, sep, rest = got.partition(b"\r\n\r\n")
                if sep:
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if m and len(rest) >= int(m.group(1)):
                        break
    finally:
        s.close()
    return got


# --------------------------------------------------------------------------
# Redis (a few commands over the unix socket, RESP by hand)

# --------------------------------------------------------------------------
# Processes

class World(Procs):
    def __init__(self, api, agent, shmtool):
        super().__init__("hc-product-api-", shmtool)
        self.api, self.agent = (os.path.abspath(x) for x in (api, agent))
        self.sock = os.path.join(self.dir, "redis.sock")
        self.db = os.path.join(self.dir, "products.db")

    def start_redis(self):
        p = self.start("redis", ["redis-server", "--port", "0", "--unixsocket", self.sock,
                                 "--unixsocketperm", "700", "--save", "",
                                 "--appendonly", "no", "--dir", self.dir])

        def pong():
            self.alive("redis", p)
            try:
                return redis_cmd(self.sock, "PING") == b"+PONG\r\n"
            except OSError:
                return False
        poll(pong, 5, "redis-server to answer PING")
        return p

    def start_api(self, host, segment, workers, threads, ttl_ms=600000, stale_ms=30000,
                  delay_ms=50):
        self.segments.append(segment)
        port_file = os.path.join(self.dir, "port-" + host)
        name = "api-" + host
        p = self.start(name, [self.api, "-l", "127.0.0.1:0", "--port-file", port_file,
                              "-w", str(workers), "-t", str(threads), "-n", segment,
                              "--cache-size", "32M", "--db", self.db, "--rows", str(ROWS),
                              "--db-delay-ms", str(delay_ms), "--host", host,
                              "--ttl-ms", str(ttl_ms), "--stale-ms", str(stale_ms),
                              "--negative-ttl-ms", "60000"])

        return p, self.wait_port_file(name, p, port_file, 20)

    def start_agent(self, host, segment):
        name = "agent-" + host
        p = self.start(name, [self.agent, "-n", segment, "--redis", "unix:" + self.sock,
                              "--http", "127.0.0.1:0", "--maintain-ms", "50"])

        def dash_port():
            self.alive(name, p)
            m = re.search(r"http: dashboard on http://127\.0\.0\.1:(\d+)/", self.log(name))
            return int(m.group(1)) if m else None
        dport = poll(dash_port, 10, "%s to log its dashboard port" % name)

        def serving():
            self.alive(name, p)
            try:
                if get(dport, "/healthz").status != 200:
                    return False
                m = get(dport, "/metrics").body.decode(errors="replace")
            except Fail:
                return False
            return (re.search(r"(?m)^cache_agent_up 1$", m) and
                    re.search(r"(?m)^cache_redis_up 1$", m) and
                    "subscribed to" in self.log(name))
        poll(serving, 15, "%s to serve (healthz 200, agent and Redis up, subscribed)" % name,
             interval=0.05)
        return p


def children(pid):
    """The child pids of @pid (the workers of a product-api), or None."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return sorted(int(x) for x in f.read().split())
    except OSError:
        return None


# --------------------------------------------------------------------------
# The checks

def check_l1_hits(A):
    pid = 11
    r = get(A, "/products/%d" % pid)
    check(r.status == 200, "first GET /products/%d: %r" % (pid, r))
    check(r.h("X-Cache") in ("ORIGIN", "L2"), "first GET of %d: X-Cache %s, want ORIGIN or L2"
          % (pid, r.h("X-Cache")))
    check(r.json()["id"] == pid, "GET /products/%d returned %r" % (pid, r.body[:80]))
    before = sql(A)
    workers = set()
    for i in range(20):
        r2 = get(A, "/products/%d" % pid)
        check(r2.status == 200 and r2.h("X-Cache") == "L1",
              "GET %d of /products/%d after the first: %r, want 200 X-Cache L1" % (i + 1, pid, r2))
        check(r2.body == r.body and r2.h("ETag") == r.h("ETag"),
              "L1 hit %d of %d: body or ETag differ from the first GET" % (i + 1, pid))
        workers.add(r2.h("X-Worker"))
    after = sql(A)
    check(after["queries"] == before["queries"],
          "20 L1 hits ran SQL: sql.queries %d -> %d" % (before["queries"], after["queries"]))
    ok("1: first GET %s, then 20 GETs X-Cache L1 (workers %s), sql.queries unchanged (%d)"
       % (r.h("X-Cache"), ",".join(sorted(workers)), after["queries"]))


def concurrent_gets(port, path, n):
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            conn.connect()
            barrier.wait(timeout=15)
            conn.request("GET", path)
            r = conn.getresponse()
            results[i] = Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("thread %d: %s: %s" % (i, type(e).__name__, e))
            try:
                barrier.abort()
            except Exception:  # noqa: BLE001
                pass
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    check(not any(th.is_alive() for th in threads), "concurrent GETs: threads still running after 30 s")
    check(not errors, "concurrent GETs of %s failed: %s" % (path, "; ".join(errors[:5])))
    return results, time.monotonic() - t


def check_single_flight(A):
    next_id = 100
    for round_ in range(3):
        for attempt in range(4):  # a retry with a new id when one worker took all
            pid = next_id
            next_id += 1
            before = sql(A)
            results, took = concurrent_gets(A, "/products/%d" % pid, 32)
            after = sql(A)
            check(after["single"] - before["single"] == 1,
                  "single-flight: 32 concurrent GETs of cold product %d ran %d single SQL "
                  "queries, want exactly 1" % (pid, after["single"] - before["single"]))
            for r in results:
                check(r.status == 200, "single-flight: GET /products/%d: %r" % (pid, r))
            bodies = {r.body for r in results}
            etags = {r.h("ETag") for r in results}
            check(len(bodies) == 1 and len(etags) == 1,
                  "single-flight: product %d: %d distinct bodies, %d distinct ETags"
                  % (pid, len(bodies), len(etags)))
            check(json.loads(results[0].body)["id"] == pid, "single-flight: wrong product")
            workers = {r.h("X-Worker") for r in results}
            srcs = {}
            for r in results:
                srcs[r.h("X-Cache")] = srcs.get(r.h("X-Cache"), 0) + 1
            if workers >= {"0", "1"}:
                break
            note("round %d: product %d was served by worker(s) %s only; again with a new id"
                 % (round_ + 1, pid, ",".join(sorted(workers))))
        else:
            raise Fail("single-flight: 4 rounds of 32 concurrent GETs never reached both "
                       "workers (last: %s)" % ",".join(sorted(workers)))
        ok("2.%d: 32 concurrent GETs of cold product %d (workers 0 and 1, X-Cache %s) in "
           "%.0f ms: sql.single +1, one body, one ETag"
           % (round_ + 1, pid, " ".join("%s=%d" % kv for kv in sorted(srcs.items())),
              took * 1000))


def check_conditional(A):
    pid = 11
    r = get(A, "/products/%d" % pid)
    etag = r.h("ETag")
    check(r.status == 200 and etag and etag.startswith('"') and etag.endswith('"'),
          "GET /products/%d: %r, ETag %r" % (pid, r, etag))
    cases = [(etag, 304), ('"0123456789ab"', 200), ("*", 304), ("W/" + etag, 304),
             ('"0123456789ab", ' + etag, 304)]
    for inm, want in cases:
        c = get(A, "/products/%d" % pid, {"If-None-Match": inm})
        check(c.status == want, "If-None-Match: %s -> %d, want %d" % (inm, c.status, want))
        if want == 304:
            check(c.body == b"", "If-None-Match: %s: 304 with a body %r" % (inm, c.body[:80]))
            check(c.h("ETag") == etag, "If-None-Match: %s: 304 with ETag %r, want %r"
                  % (inm, c.h("ETag"), etag))
        else:
            check(c.body == r.body, "If-None-Match: %s: 200 with another body" % inm)
    ok("3: If-None-Match: the ETag, *, W/ form and a list with it -> 304, empty body, same "
       "ETag; another ETag -> 200")


def check_put_other_worker(A):
    pid = 11
    old = get(A, "/products/%d" % pid).json()
    before = sql(A)
    new_name = "Renamed Kettle %d" % os.getpid()
    r = put_json(A, pid, {"name": new_name, "stock": 4242})
    check(r.status == 200, "PUT /products/%d: %r" % (pid, r))
    row = r.json()
    check(row["version"] == old["version"] + 1,
          "PUT: version %s, want %d" % (row["version"], old["version"] + 1))
    check(row["name"] == new_name and row["stock"] == 4242 and
          row["price_cents"] == old["price_cents"],
          "PUT: the new row is %r" % row)
    w = r.h("X-Worker")
    etag = r.h("ETag")
    check(w in ("0", "1") and etag, "PUT: X-Worker %r, ETag %r" % (w, etag))
    mid = sql(A)
    check(mid["updates"] == before["updates"] + 1, "PUT: sql.updates +%d, want +1"
          % (mid["updates"] - before["updates"]))
    for tries in range(1, 51):
        g = get(A, "/products/%d" % pid)
        check(g.status == 200, "GET after PUT: %r" % g)
        gj = g.json()
        check(gj["version"] == row["version"],
              "GET after PUT (worker %s): version %s, want %s"
              % (g.h("X-Worker"), gj["version"], row["version"]))
        if g.h("X-Worker") != w:
            break
    else:
        raise Fail("50 GETs on fresh connections all went to worker %s" % w)
    check(g.h("X-Cache") == "L1", "GET after PUT on the other worker: X-Cache %s, want L1"
          % g.h("X-Cache"))
    check(g.h("ETag") == etag, "GET after PUT: ETag %s, the PUT said %s" % (g.h("ETag"), etag))
    check(g.body == r.body, "GET after PUT: the body differs from the PUT's")
    after = sql(A)
    check(after["single"] == mid["single"],
          "GET after PUT ran %d single SQL queries" % (after["single"] - mid["single"]))
    ok("4: PUT on worker %s -> version %d; worker %s (try %d) serves it from L1, no SQL"
       % (w, row["version"], g.h("X-Worker"), tries))


def wait_in_redis(sock, pid, what):
    poll(lambda: redis_cmd(sock, "EXISTS", "product:%d" % pid) == b":1\r\n", 3,
         "product:%d in Redis (%s)" % (pid, what))


def check_l2(A, B, sock):
    pid = 300
    a = get(A, "/products/%d" % pid)
    check(a.status == 200 and a.h("X-Cache") == "ORIGIN",
          "GET /products/%d on A: %r, want 200 ORIGIN" % (pid, a))
    wait_in_redis(sock, pid, "written through by A's agent")
    before = sql(B)
    b = get(B, "/products/%d" % pid)
    check(b.status == 200 and b.h("X-Cache") == "L2",
          "GET /products/%d on B after A: %r, want 200 X-Cache L2" % (pid, b))
    check(b.body == a.body, "L2: B's body differs from A's")
    check(b.h("ETag") == a.h("ETag"), "L2: B's ETag %s, A's %s" % (b.h("ETag"), a.h("ETag")))
    check(b.h("X-Host") == "B" and a.h("X-Host") == "A", "X-Host headers: %s, %s"
          % (a.h("X-Host"), b.h("X-Host")))
    after = sql(B)
    check(after["single"] == before["single"] and after["queries"] == before["queries"],
          "L2 hit on B ran SQL: sql.single %d -> %d" % (before["single"], after["single"]))
    b2 = get(B, "/products/%d" % pid)
    check(b2.h("X-Cache") == "L1", "second GET on B: X-Cache %s, want L1" % b2.h("X-Cache"))
    ok("5: product %d: ORIGIN on A, then X-Cache L2 on B (same body and ETag), B's SQL "
       "unchanged, then L1 on B" % pid)


def check_invalidation(A, B, sock):
    pid = 400
    first = get(B, "/products/%d" % pid)
    check(first.status == 200, "GET /products/%d on B: %r" % (pid, first))
    old = poll(lambda: (lambda r: r if r.h("X-Cache") == "L1" else None)(
        get(B, "/products/%d" % pid)), 3, "product %d to be an L1 hit on B" % pid)
    old_version = old.json()["version"]
    r = put_json(A, pid, {"price_cents": 12345, "description": "invalidated at %f" % time.time()})
    t_put = time.monotonic()
    check(r.status == 200, "PUT /products/%d on A: %r" % (pid, r))
    new_version = r.json()["version"]
    check(new_version == old_version + 1, "PUT on A: version %d, want %d"
          % (new_version, old_version + 1))
    seen_old = 0
    deadline = t_put + 3
    while True:
        g = get(B, "/products/%d" % pid)
        check(g.status == 200, "GET on B after the PUT on A: %r" % g)
        v = g.json()["version"]
        if v == new_version:
            break
        check(v == old_version, "GET on B: version %d, neither old %d nor new %d"
              % (v, old_version, new_version))
        seen_old += 1
        check(time.monotonic() < deadline,
              "B still serves version %d (X-Cache %s) 3 s after the PUT on A made version %d"
              % (v, g.h("X-Cache"), new_version))
        time.sleep(0.02)
    latency = (time.monotonic() - t_put) * 1000
    check(g.h("X-Cache") in ("L2", "ORIGIN"),
          "the first GET on B with the new version says X-Cache %s, want L2 or ORIGIN "
          "(the old L1 entry should have been dropped)" % g.h("X-Cache"))
    check(g.body == r.body and g.h("ETag") == r.h("ETag"),
          "B's new value differs from what the PUT on A answered")
    for i in range(10):
        g2 = get(B, "/products/%d" % pid)
        check(g2.json()["version"] == new_version,
              "GET %d on B after the new version: version %s again" % (i, g2.json()["version"]))
    ok("6: PUT on A -> B serves version %d after %.1f ms (%d old answers before), first from "
       "%s, never the old value again" % (new_version, latency, seen_old, g.h("X-Cache")))
    return latency


def check_batch(A):
    cold = list(range(500, 510))
    before = sql(A)
    r = get(A, "/products?ids=" + ",".join(map(str, cold)))
    check(r.status == 200, "GET /products?ids=500..509: %r" % r)
    j = r.json()
    check(sorted(p["id"] for p in j["products"]) == cold and j["missing"] == [],
          "batch of 10 cold ids: products %s, missing %s"
          % ([p["id"] for p in j["products"]], j["missing"]))
    after = sql(A)
    check(after["batch"] == before["batch"] + 1 and after["single"] == before["single"],
          "batch of 10 cold ids: sql.batch +%d sql.single +%d, want +1 and +0"
          % (after["batch"] - before["batch"], after["single"] - before["single"]))
    check(after["batch_ids"] == before["batch_ids"] + 10,
          "batch of 10 cold ids: sql.batch_ids +%d" % (after["batch_ids"] - before["batch_ids"]))
    x1 = r.h("X-Cache")

    r2 = get(A, "/products?ids=" + ",".join(map(str, cold)))
    check(r2.status == 200 and r2.h("X-Cache") == "L1=10",
          "the same batch again: %d X-Cache %r, want L1=10" % (r2.status, r2.h("X-Cache")))
    check(sorted(p["id"] for p in r2.json()["products"]) == cold, "the same batch again: products")
    after2 = sql(A)
    check(after2["queries"] == after["queries"], "the same batch again ran %d SQL queries"
          % (after2["queries"] - after["queries"]))

    mixed = cold[:5] + [600, 601, 602] + UNKNOWN
    r3 = get(A, "/products?ids=" + ",".join(map(str, mixed)))
    check(r3.status == 200, "mixed batch: %r" % r3)
    j3 = r3.json()
    after3 = sql(A)
    check(sorted(p["id"] for p in j3["products"]) == sorted(cold[:5] + [600, 601, 602]),
          "mixed batch: products %s" % [p["id"] for p in j3["products"]])
    check(sorted(j3["missing"]) == sorted(UNKNOWN), "mixed batch: missing %s, want %s"
          % (j3["missing"], UNKNOWN))
    check(after3["batch"] == after2["batch"] + 1 and after3["single"] == after2["single"] and
          after3["queries"] == after2["queries"] + 1,
          "mixed batch: sql.batch +%d single +%d queries +%d, want +1 +0 +1"
          % (after3["batch"] - after2["batch"], after3["single"] - after2["single"],
             after3["queries"] - after2["queries"]))
    check(after3["batch_ids"] == after2["batch_ids"] + 5,
          "mixed batch: the query asked for %d ids, want the 5 uncached"
          % (after3["batch_ids"] - after2["batch_ids"]))
    xc = dict(kv.split("=") for kv in r3.h("X-Cache").split())
    check(xc.get("L1") == "5", "mixed batch: X-Cache %r, want L1=5" % r3.h("X-Cache"))
    r4 = get(A, "/products?ids=" + ",".join(map(str, mixed)))
    check(r4.status == 200 and r4.h("X-Cache") == "L1=8 NEGATIVE=2",
          "mixed batch again: %d X-Cache %r, want L1=8 NEGATIVE=2" % (r4.status, r4.h("X-Cache")))
    check(sorted(r4.json()["missing"]) == sorted(UNKNOWN), "mixed batch again: missing %s"
          % r4.json()["missing"])
    after4 = sql(A)
    check(after4["queries"] == after3["queries"], "mixed batch again ran %d SQL queries"
          % (after4["queries"] - after3["queries"]))
    ok("7: batch of 10 cold ids: one SQL query (X-Cache %s); again: L1=10, no SQL; 5 cached + 3 "
       "cold + 2 unknown: one query for 5 ids, missing %s (X-Cache %s); again: L1=8 "
       "NEGATIVE=2, no SQL" % (x1, j3["missing"], r3.h("X-Cache")))


def check_bad_input(A, B, world, api_procs):
    for bad in ["0", "abc", "2147483648", "-1", "1x", "", "99999999999", "+1"]:
        r = get(A, "/products/" + bad)
        check(r.status == 400, "GET /products/%s: %d, want 400" % (bad, r.status))
        check("error" in r.json(), "GET /products/%s: no error message" % bad)
    ok("8.1: ids 0, abc, 2147483648, -1, 1x, empty, 99999999999, +1 -> 400 with an error")

    unknown = 888888
    before = sql(A)
    r = get(A, "/products/%d" % unknown)
    check(r.status == 404, "GET unknown /products/%d: %r, want 404" % (unknown, r))
    mid = sql(A)
    check(mid["single"] == before["single"] + 1, "unknown id: sql.single +%d, want +1"
          % (mid["single"] - before["single"]))
    for i in range(3):
        r2 = get(A, "/products/%d" % unknown)
        check(r2.status == 404 and r2.h("X-Cache") == "NEGATIVE",
              "unknown id again: %r, want 404 X-Cache NEGATIVE" % r2)
    after = sql(A)
    check(after["queries"] == mid["queries"], "negative hits ran %d SQL queries"
          % (after["queries"] - mid["queries"]))
    ok("8.2: unknown id -> 404 (%s), then 404 X-Cache NEGATIVE x3 without SQL" % r.h("X-Cache"))

    pid = 12
    before = sql(A)
    bodies = [(b'{"name": ', "malformed JSON"), (b"[]", "an array"), (b"{}", "an empty object"),
              (b'{"color": "red"}', "an unknown field"), (b'{"stock": -1}', "stock -1"),
              (b'{"stock": "3"}', "stock as a string"), (b'{"name": ""}', "an empty name"),
              (b'{"price_cents": 1000000001}', "price over 1e9"),
              (b'{"name": 5}', "a number as name"),
              (b'{"stock": 1, "stock": 2}', "a duplicate field"),
              (b"", "no body")]
    for body, what in bodies:
        r = put_json(A, pid, body)
        check(r.status == 400, "PUT with %s: %r, want 400" % (what, r))
    r = put_json(A, pid, b'{"description": "' + b"x" * 19980 + b'"}')
    check(r.status == 413, "PUT of 20,000 bytes: %r, want 413" % r)
    # The same, announced with Content-Length but on a raw socket, body sent after.
    big = b'{"name":"' + b"y" * 19980 + b'"}'
    raw = raw_exchange(A, b"PUT /products/%d HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                       % (pid, len(big)) + big)
    check(raw.startswith(b"HTTP/1.1 413"), "raw PUT of 20,000 bytes: %r" % raw[:100])
    # The same, chunked: no Content-Length, refused once the body passes 16 KiB.
    raw = raw_exchange(A, b"PUT /products/%d HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       b"application/json\r\nTransfer-Encoding: chunked\r\nConnection: close"
                       b"\r\n\r\n" % pid + b"3e8\r\n" + b"z" * 1000 + b"\r\n" * 1 +
                       (b"3e8\r\n" + b"z" * 1000 + b"\r\n") * 19 + b"0\r\n\r\n")
    check(raw.startswith(b"HTTP/1.1 413"), "chunked PUT of 20,000 bytes: %r" % raw[:100])
    r = request(A, "PUT", "/products/%d" % pid, body=b'{"stock": 1}',
                headers={"Content-Type": "text/plain"})
    check(r.status == 415, "PUT with Content-Type text/plain: %r, want 415" % r)
    r = request(A, "PUT", "/products/%d" % pid, body=b'{"stock": 1}',
                headers={"Content-Type": "application/jsonx"})
    check(r.status == 415, "PUT with Content-Type application/jsonx: %r, want 415" % r)
    after = sql(A)
    check(after["updates"] == before["updates"], "bad PUTs ran %d UPDATEs"
          % (after["updates"] - before["updates"]))
    r = put_json(A, 777777, {"stock": 1})
    check(r.status == 404, "PUT of an unknown id: %r, want 404" % r)
    g = get(A, "/products/%d" % pid).json()
    check(g["version"] == 1, "product %d changed (version %d) after only bad PUTs"
          % (pid, g["version"]))
    ok("8.3: PUT malformed/[]/{}/unknown field/stock -1/wrong types/dup/empty -> 400, 20,000 "
       "bytes -> 413 (3 ways), text/plain -> 415, unknown id -> 404; product unchanged")

    for method, path, want in [("DELETE", "/products/1", 405), ("POST", "/products/1", 405),
                               ("PUT", "/products", 405), ("GET", "/nope", 404),
                               ("GET", "/products/1/x", 400), ("GET", "/products", 400),
                               ("GET", "/", 404)]:
        r = request(A, method, path)
        check(r.status == want, "%s %s: %r, want %d" % (method, path, r, want))
    r = request(A, "DELETE", "/products/1")
    check("PUT" in (r.h("Allow") or ""), "405 without a useful Allow header: %r" % r.h("Allow"))
    r = get(A, "/products?ids=" + ",".join(str(i) for i in range(1, 102)))
    check(r.status == 400, "batch of 101 ids: %r, want 400" % r)
    r = get(A, "/products?ids=1,,2")
    check(r.status == 400, "batch ids=1,,2: %r, want 400" % r)
    r = get(A, "/products?ids=" + ",".join(["7"] * 150))
    check(r.status == 200 and len(r.json()["products"]) == 1,
          "batch of 150 times the same id: %r, want 200 with one product" % r)
    ok("8.4: DELETE/POST -> 405 with Allow, /nope -> 404, 101 ids -> 400, empty id -> 400, "
       "duplicates folded")

    garbage = raw_exchange(A, b"GARBAGE\r\n\r\n")
    check(garbage == b"" or garbage.startswith(b"HTTP/1."), "garbage got %r" % garbage[:80])
    raw_exchange(A, b"GET /products/1 HTTP/1.1\r\nHost: x\r\nContent-Le", read_reply=False)
    raw_exchange(A, b"PUT /products/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 100\r\n\r\n{\"stock\":", read_reply=False)
    raw_exchange(A, b"\x00\xff" * 300 + b"\r\n\r\n")
    workers = set()
    for _ in range(20):
        r = get(A, "/healthz")
        check(r.status == 200, "after garbage: GET /healthz: %r" % r)
        workers.add(r.h("X-Worker"))
    r = get(A, "/products/1")
    check(r.status == 200, "after garbage: GET /products/1: %r" % r)

    # Idle and half-sent connections, many more than request threads, must
    # not keep other clients waiting.
    # Oversized request heads: refused with the right status, not read without bound.
    for what, data, want in [
            ("a 100 KB header", b"GET /products/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 +
             b"\r\n\r\n", b"HTTP/1.1 431"),
            ("5,000 headers", b"GET /products/1 HTTP/1.1\r\nHost: x\r\n" +
             b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n", b"HTTP/1.1 431"),
            ("a 100 KB request target", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
             b"HTTP/1.1 414")]:
        got = raw_exchange(A, data)
        check(got.startswith(want), "%s: got %r, want %r" % (what, got[:60], want))

    for i in range(1, 21):
        get(A, "/products/%d" % i)  # cached first: the bound below is not the database's
    idle = [socket.create_connection(("127.0.0.1", A)) for _ in range(100)]
    try:
        for s in idle[:50]:
            s.sendall(b"GET /products/1 HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        codes = [get(A, "/products/%d" % i).status for i in range(1, 21)]
        took = time.monotonic() - t0
        check(codes == [200] * 20 and took < 10,
              "with 100 idle connections: statuses %s in %.2f s" % (sorted(set(codes)), took))
    finally:
        for s in idle:
            s.close()
    ok("8.5: garbage (%s), truncated requests, binary junk, 431 for a 100 KB header and for "
       "5,000 headers, 414 for a 100 KB target, 100 idle connections: the server answers the "
       "next requests (workers %s)" % (garbage.split(b"\r\n")[0].decode(errors="replace") or
                                   "connection closed", ",".join(sorted(workers))))

    for name, port in (("A", A), ("B", B)):
        s = stats(port)
        check(s["restarts"] == 0, "host %s: /stats restarts %d, want 0" % (name, s["restarts"]))
        check(s["status"]["5xx"] == 0, "host %s: %d 5xx answers" % (name, s["status"]["5xx"]))
        check(s["sql"]["errors"] == 0, "host %s: %d SQL errors" % (name, s["sql"]["errors"]))
    for name, p, workers0 in api_procs:
        world.alive(name, p)
        now = children(p.pid)
        if workers0 is not None:
            check(now == workers0, "%s: worker pids %s, at start %s" % (name, now, workers0))
    ok("8.6: restarts 0, no 5xx and no SQL errors on both hosts; every product-api process "
       "(and the same worker pids) alive")


C_TTL_MS = 400      # host C's --ttl-ms (jittered: 360..400 ms)
C_STALE_MS = 20000  # host C's --stale-ms
C_DELAY_MS = 200   # host C's --db-delay-ms: a STALE answer must come in well under it


def cache_control(r, what):
    """The directives of r's Cache-Control: {"public": None, "max-age": 0, ...}."""
    cc = r.h("Cache-Control")
    check(cc, "%s: no Cache-Control header: %r" % (what, r))
    d = {}
    for part in cc.split(","):
        name, sep, val = part.strip().partition("=")
        try:
            d[name.lower()] = int(val) if sep else None
        except ValueError:
            raise Fail("%s: Cache-Control %r: %s is not a number" % (what, cc, name))
    return d


def entry_meta(world, seg, key):
    """ttl_left_ms of @key in segment @seg (shmtool get --meta --stale), or None if absent."""
    r = world.shm(seg, "get", "--meta", "--stale", key)
    if r.returncode != 0:
        return None
    m = re.search(rb"ttl_left_ms: (-?\d+)", r.stdout)
    check(m, "shmtool get --meta %s: no ttl_left_ms in %r" % (key, r.stdout[-300:]))
    return int(m.group(1))


def wait_stale(world, seg, key, since, what):
    """Wait (without touching @key over HTTP) until 500 ms after @since and until
    the segment says @key is past its TTL; return the ttl_left_ms seen."""
    def stale():
        if time.monotonic() - since < 0.5:
            return None
        left = entry_meta(world, seg, key)
        check(left is not None, "%s: %s is not in segment %s" % (what, key, seg))
        return (left,) if left < 0 else None
    return poll(stale, 3, "%s: %s past its %d ms TTL" % (what, key, C_TTL_MS))[0]


def check_swr(C, world, seg):
    # a. One stale read: answered at once from the old value, one refresh behind it.
    pid = 700
    key = "product:%d" % pid
    path = "/products/%d" % pid
    s0 = sql(C)["single"]
    first = get(C, path)
    t_first = time.monotonic()
    check(first.status == 200 and first.h("X-Cache") == "ORIGIN",
          "10a: first GET %s on C: %r, want 200 X-Cache ORIGIN" % (path, first))
    check(first.json()["id"] == pid, "10a: GET %s returned %r" % (path, first.body[:80]))
    s1 = sql(C)["single"]
    check(s1 == s0 + 1, "10a: first GET of %d on C: sql.single +%d, want +1" % (pid, s1 - s0))
    # No GET of the key until it is stale: a fresh hit could refresh early (XFetch).
    left = wait_stale(world, seg, key, t_first, "10a")
    base = sql(C)["single"]
    check(base == s1, "10a: sql.single %d -> %d while nobody asked for product %d"
          % (s1, base, pid))
    t = time.monotonic()
    st = get(C, path)
    t_stale = time.monotonic()
    stale_ms = (t_stale - t) * 1000
    check(st.status == 200 and st.h("X-Cache") == "STALE",
          "10a: GET %s %.0f ms after the first (TTL left %d ms): %r, want 200 X-Cache STALE"
          % (path, (t - t_first) * 1000, left, st))
    check(stale_ms < C_DELAY_MS / 2, "10a: the STALE answer took %.1f ms, want < %d (the "
          "database takes %d): the refresh was not in the background"
          % (stale_ms, C_DELAY_MS / 2, C_DELAY_MS))
    check(st.body == first.body and st.h("ETag") == first.h("ETag"),
          "10a: the STALE answer differs from the first (ETag %s, then %s)"
          % (first.h("ETag"), st.h("ETag")))
    cc = cache_control(st, "10a: STALE answer")
    check(cc.get("max-age") == 0 and (cc.get("stale-while-revalidate") or 0) > 0,
          "10a: STALE answer: Cache-Control %r, want max-age=0 and stale-while-revalidate > 0"
          % st.h("Cache-Control"))
    check(cc["stale-while-revalidate"] <= C_STALE_MS // 1000,
          "10a: STALE answer: Cache-Control %r: stale-while-revalidate over --stale-ms %d"
          % (st.h("Cache-Control"), C_STALE_MS))
    after = poll(lambda: (lambda n: n if n > base else None)(sql(C)["single"]), 2,
                 "10a: the background refresh of %d (C's sql.single past %d)" % (pid, base))
    t_refresh = time.monotonic()
    refresh_ms = (t_refresh - t_stale) * 1000
    check(after == base + 1, "10a: one STALE answer: sql.single +%d, want +1" % (after - base))
    # sql.single counts before the value is stored: wait for the segment to have it.
    poll(lambda: (entry_meta(world, seg, key) or -1) > 0, 2,
         "10a: the refreshed %s to be fresh in segment %s" % (key, seg))
    l1 = get(C, path)
    check(l1.status == 200 and l1.h("X-Cache") == "L1" and l1.h("Age") in ("0", "1"),
          "10a: GET %s after the refresh: %r Age %r, want 200 X-Cache L1, Age 0 or 1"
          % (path, l1, l1.h("Age")))
    check(l1.body == first.body and l1.h("ETag") == first.h("ETag"),
          "10a: the refreshed value differs from the first")
    ok("10a: C (TTL %d ms): product %d stale %.0f ms after ORIGIN: X-Cache STALE in %.1f ms, "
       "same body, Cache-Control %s; the background refresh ran one SQL query (seen %.0f ms "
       "later); then X-Cache L1, Age %s"
       % (C_TTL_MS, pid, (t - t_first) * 1000, stale_ms, st.h("Cache-Control"), refresh_ms,
          l1.h("Age")))

    # b. Many readers of a stale key: one refresh between them.
    left = wait_stale(world, seg, key, t_refresh, "10b")
    base = sql(C)["single"]
    results, took = concurrent_gets(C, path, 16)
    srcs = {}
    for r in results:
        check(r.status == 200 and r.h("X-Cache") in ("STALE", "L1"),
              "10b: concurrent GET of stale %s: %r, want 200 STALE or L1" % (path, r))
        check(r.body == first.body, "10b: concurrent GET of %s: another body" % path)
        srcs[r.h("X-Cache")] = srcs.get(r.h("X-Cache"), 0) + 1
    check(srcs.get("STALE", 0) >= 1, "10b: 16 GETs of stale %s, none X-Cache STALE (%s)"
          % (path, srcs))
    after = poll(lambda: (lambda n: n if n > base else None)(sql(C)["single"]), 2,
                 "10b: the background refresh of %d (C's sql.single past %d)" % (pid, base))
    check(after == base + 1, "10b: 16 concurrent GETs of stale %s: sql.single +%d, want +1"
          % (path, after - base))
    time.sleep(0.2)
    later = sql(C)["single"]
    check(later == base + 1, "10b: 200 ms after the refresh: sql.single +%d, want +1"
          % (later - base))
    ok("10b: 16 concurrent GETs of stale product %d in %.0f ms (X-Cache %s): sql.single +1, "
       "still +1 200 ms later" % (pid, took * 1000,
                                  " ".join("%s=%d" % kv for kv in sorted(srcs.items()))))

    # c. Cache-Control and ETag of a fresh hit.
    pid = 701
    path = "/products/%d" % pid
    o = get(C, path)
    check(o.status == 200 and o.h("X-Cache") == "ORIGIN",
          "10c: first GET %s on C: %r, want 200 ORIGIN" % (path, o))
    h = get(C, path)
    check(h.status == 200 and h.h("X-Cache") == "L1",
          "10c: second GET %s on C at once: %r, want 200 X-Cache L1" % (path, h))
    cc = cache_control(h, "10c: fresh hit")
    check("public" in cc and cc.get("max-age") is not None and
          0 <= cc["max-age"] <= (C_TTL_MS + 999) // 1000,
          "10c: fresh hit: Cache-Control %r, want public, max-age 0..1" % h.h("Cache-Control"))
    check(cc.get("stale-while-revalidate") in (C_STALE_MS // 1000 - 1, C_STALE_MS // 1000),
          "10c: fresh hit: Cache-Control %r, want stale-while-revalidate=%d (or %d)"
          % (h.h("Cache-Control"), C_STALE_MS // 1000, C_STALE_MS // 1000 - 1))
    check(cc.get("stale-if-error") == 300,
          "10c: fresh hit: Cache-Control %r, want stale-if-error=300 (--error-ms default)"
          % h.h("Cache-Control"))
    etag = h.h("ETag")
    check(etag and etag == o.h("ETag"), "10c: fresh hit ETag %r, ORIGIN's %r" % (etag, o.h("ETag")))
    nm = get(C, path, {"If-None-Match": etag})
    check(nm.status == 304 and nm.body == b"" and nm.h("ETag") == etag,
          "10c: If-None-Match: %s -> %r ETag %r, want 304, no body, the same ETag"
          % (etag, nm, nm.h("ETag")))

    s = stats(C)
    check(s["restarts"] == 0 and s["status"]["5xx"] == 0 and s["sql"]["errors"] == 0,
          "10: host C: restarts %d, %d 5xx, %d SQL errors, want none"
          % (s["restarts"], s["status"]["5xx"], s["sql"]["errors"]))
    ok("10c: fresh hit of %d on C: Cache-Control %s, ETag %s; If-None-Match with it -> 304; "
       "C: no restarts, no 5xx" % (pid, h.h("Cache-Control"), etag))


def check_shutdown(world, apis, agents, segments):
    for name, p in apis + agents:
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise Fail("%s did not exit within 5 s of SIGTERM" % name)
        check(rc == 0, "%s exited with status %d after SIGTERM; its log:\n%s"
              % (name, rc, world.log(name)))
        ok("9: SIGTERM %s: exit 0 in %.0f ms" % (name, (time.monotonic() - t) * 1000))
    for seg in segments:
        r = world.shm(seg, "check")
        check(r.returncode == 0, "shmtool -n %s check: exit %d:\n%s"
              % (seg, r.returncode, r.stdout.decode(errors="replace")))
        d = world.shm(seg, "destroy")
        check(d.returncode == 0, "shmtool -n %s destroy: exit %d" % (seg, d.returncode))
        ok("9: shmtool check %s: %s" % (seg, r.stdout.decode(errors="replace").strip()
                                          .splitlines()[-1]))


def main():
    if len(sys.argv) != 4:
        print("usage: %s PRODUCT-API HOSTCACHE-AGENT SHMTOOL" % sys.argv[0], file=sys.stderr)
        return 2
    if not shutil.which("redis-server"):
        print("test_product_api: SKIP: redis-server is not installed")
        return 77

    def on_term(sig, frame):
        raise Fail("killed by signal %d" % sig)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_term)
    signal.alarm(150)  # below meson's timeout: clean up ourselves

    world = World(*sys.argv[1:4])
    tag = "pt%d" % os.getpid()
    seg_a, seg_b, seg_c = tag + "A", tag + "B", tag + "C"
    try:
        world.start_redis()
        # -t is request threads per worker; connections are not limited by
        # it: host A's 32 concurrent clients of check 2 wait in its queue.
        api_a, A = world.start_api("A", seg_a, 2, 4)
        agent_a = world.start_agent("A", seg_a)
        api_b, B = world.start_api("B", seg_b, 2, 8)
        agent_b = world.start_agent("B", seg_b)
        # Host C: no agent, TTLs short enough to watch them pass (check 10).
        api_c, C = world.start_api("C", seg_c, 2, 8, ttl_ms=C_TTL_MS, stale_ms=C_STALE_MS,
                                   delay_ms=C_DELAY_MS)
        note("redis-server on %s; host A on port %d, host B on port %d, host C on port %d; "
             "ready in %.2f s" % (world.sock, A, B, C, time.monotonic() - T0))
        api_procs = [("api-A", api_a, children(api_a.pid)), ("api-B", api_b, children(api_b.pid)),
                     ("api-C", api_c, children(api_c.pid))]
        for name, _, w in api_procs:
            check(w is None or len(w) == 2, "%s has workers %s, want 2" % (name, w))

        check_l1_hits(A)
        check_single_flight(A)
        check_conditional(A)
        check_put_other_worker(A)
        check_l2(A, B, world.sock)
        latency = check_invalidation(A, B, world.sock)
        check_batch(A)
        check_bad_input(A, B, world, api_procs)
        check_swr(C, world, seg_c)
        check_shutdown(world, [("api-A", api_a), ("api-B", api_b), ("api-C", api_c)],
                       [("agent-A", agent_a), ("agent-B", agent_b)], [seg_a, seg_b, seg_c])
        print("test_product_api: all checks passed in %.1f s (invalidation A->B %.1f ms)"
              % (time.monotonic() - T0, latency), flush=True)
        return 0
    except Exception as e:  # noqa: BLE001 - a failed check or an unexpected error
        if isinstance(e, Fail):
            print("FAIL: %s" % e, flush=True)
        else:
            import traceback
            print("FAIL: unexpected %s: %s" % (type(e).__name__, e), flush=True)
            traceback.print_exc(file=sys.stdout)
        for name, p, path in world.procs:
            text = world.log(name).strip().splitlines()
            print("# --- %s (pid %d, %s): last lines of its output" %
                  (name, p.pid, "running" if p.poll() is None else "exit %s" % p.returncode))
            for line in text[-15:]:
                print("#   " + line)
        return 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        world.cleanup()


if __name__ == "__main__":
    sys.exit(main())
