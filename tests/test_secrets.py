#!/usr/bin/env python3
"""
test_secrets.py - the agent's secrets and its dashboard's token guard, end to
end (docs/security.md).

A private redis-server that requires a password (given in a config file, so
the password is in no command line of the test either), on a unix socket in
a temporary directory.  Then:

  1. an agent with the password in HOSTCACHE_REDIS_PASSWORD and the
     dashboard token in HOSTCACHE_DASH_TOKEN connects (its handshake,
     AUTH included, succeeds on both links), and neither secret appears in its /proc/PID/cmdline,
     /proc/PID/environ (the agent wipes them once read), its log at debug
     level, or any page of its dashboard;
  2. its POST endpoints (/api/flush, /api/invalidate) answer 401 without
     the token, with a wrong one, a longer one or another scheme, and
     change nothing; with the token they work;
  3. the same password from --password-file: connected, not in the log;
  4. a wrong password: the agent says so, without either password;
  5. a password in the Redis URL (flag or HOSTCACHE_REDIS) is refused with
     exit 2, and the message does not repeat it;
  6. an agent with --http and no token answers 403 to POST /api/flush.

usage: test_secrets.py AGENT SHMTOOL
Exit status: 0 passed, 1 failed, 77 skipped (no redis-server).
"""
import http.client
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import Fail, Procs, check, ok, note, poll, redis_cmd  # noqa: E402

PASSWORD = "pw-Zq8vX3-not-in-argv"
TOKEN = "tok-7Hc2Lm-dashboard"


def request(port, method, path, headers=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


class World(Procs):
    def __init__(self, agent, shmtool):
        super().__init__("hc-secrets-", shmtool)
        self.agent = os.path.abspath(agent)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.n = 0

    def segment(self):
        self.n += 1
        name = "t-secrets-%d-%d" % (os.getpid(), self.n)
        self.segments.append(name)
        r = self.shm(name, "create", "--size", "8M")
        check(r.returncode == 0, "shmtool create: %s" % r.stdout.decode(errors="replace"))
        return name

    def start_agent(self, tag, args, env_extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("HOSTCACHE_REDIS_PASSWORD", "HOSTCACHE_DASH_TOKEN",
                            "HOSTCACHE_REDIS")}
        env.update(env_extra)
        log = os.path.join(self.dir, tag + ".log")
        f = open(log, "wb")
        try:
            p = subprocess.Popen([self.agent] + args, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        finally:
            f.close()
        self.procs.append((tag, p, log))
        return p

    def wait_log(self, tag, p, pattern, timeout=15, what=None):
        def seen():
            if p.poll() is not None:
                raise Fail("%s exited (%d); its log:\n%s" % (tag, p.returncode,
                                                              self.log(tag)[-3000:]))
            return re.search(pattern, self.log(tag))
        return poll(seen, timeout, what or "%s to log %r" % (tag, pattern))

    def stop(self, p):
        p.terminate()
        p.wait(timeout=10)


def redis_cmd_auth(sock, *args):
    """A command on a connection that authenticates first (AUTH then the command)."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(sock)
        msg = b""
        for cmd in (("AUTH", PASSWORD), args):
            msg += b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a.encode() if isinstance(a, str) else a
                msg += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(msg)
        buf = b""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            head, _, rest = buf.partition(b"\r\n")  # +OK of the AUTH
            if head == b"+OK" and rest.endswith(b"\r\n") and (
                    not rest.startswith(b"$") or rest.count(b"\r\n") >= 2
                    or rest.startswith(b"$-1")):
                return rest
            if head.startswith(b"-"):
                return buf
        return buf
    finally:
        s.close()


def secrets_absent(what, blob):
    for name, secret in (("password", PASSWORD), ("token", TOKEN)):
        check(secret.encode() not in blob, "the %s is in %s" % (name, what))


def proc_bytes(pid, what):
    with open("/proc/%d/%s" % (pid, what), "rb") as f:
        return f.read()


def main():
    if len(sys.argv) != 3:
        print("usage: test_secrets.py AGENT SHMTOOL", file=sys.stderr)
        return 2
    if not shutil.which("redis-server"):
        print("test_secrets: SKIP: redis-server is not installed")
        return 77
    w = World(sys.argv[1], sys.argv[2])
    try:
        conf = os.path.join(w.dir, "redis.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, ("port 0\nunixsocket %s\nunixsocketperm 700\nrequirepass %s\n"
                      "save \"\"\nappendonly no\ndir %s\n"
                      % (w.sock, PASSWORD, w.dir)).encode())
        os.close(fd)
        rp = w.start("redis", ["redis-server", conf])
        poll(lambda: w.alive("redis", rp) or (os.path.exists(w.sock) and
             redis_cmd_auth(w.sock, "PING") == b"+PONG\r\n"), 10,
             "redis-server to answer PING with the password")
        check(redis_cmd(w.sock, "PING").startswith(b"-NOAUTH"),
              "redis-server answers without the password")
        url = "unix:" + w.sock

        # 1. secrets from the environment
        name = w.segment()
        a = w.start_agent("agent-env", ["-n", name, "--redis", url, "--http", "127.0.0.1:0",
                                        "--log-level", "debug", "--prefix", "hc:"],
                          {"HOSTCACHE_REDIS_PASSWORD": PASSWORD, "HOSTCACHE_DASH_TOKEN": TOKEN})
        m = w.wait_log("agent-env", a, r"http: dashboard on http://127\.0\.0\.1:(\d+)/")
        port = int(m.group(1))
        # logged once AUTH, SELECT and PING have all answered
        w.wait_log("agent-env", a, r"l2: connected to Redis")
        w.wait_log("agent-env", a, r"subscriber: connected to Redis")
        ok("agent connected (both links) to a Redis that requires a password given in "
           "the environment")
        r = w.shm(name, "set", "--ttl", "60000", "secret:1", "value-1")
        check(r.returncode == 0, "shmtool set: %s" % r.stdout.decode(errors="replace"))
        cmdline = proc_bytes(a.pid, "cmdline")
        environ = proc_bytes(a.pid, "environ")
        secrets_absent("the agent's /proc/PID/cmdline", cmdline)
        secrets_absent("the agent's /proc/PID/environ", environ)
        check(b"HOSTCACHE_REDIS_PASSWORD=" + PASSWORD.encode() not in environ, "environ")
        ok("neither secret in /proc/%d/cmdline nor /proc/%d/environ" % (a.pid, a.pid))
        pages = {}
        for path in ("/", "/api/stats", "/metrics", "/healthz", "/api/info"):
            st, body = request(port, "GET", path)
            pages[path] = st
            secrets_absent("GET %s (%d)" % (path, st), body.encode())
        check(pages["/api/stats"] == 200 and pages["/metrics"] == 200,
              "dashboard pages: %r" % pages)
        ok("neither secret in the dashboard's pages %s" % sorted(pages))

        # 2. the token guard on the agent's mutating endpoints
        bad = [None, "Bearer wrong-" + TOKEN, "Bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1],
               "Basic " + TOKEN, "bearer", TOKEN]
        for path in ("/api/flush", "/api/invalidate?key=secret:1"):
            for auth in bad:
                hdr = {"Authorization": auth} if auth is not None else {}
                st, _ = request(port, "POST", path, hdr)
                check(st == 401, "POST %s with Authorization %r: %d, expected 401"
                      % (path, auth, st))
        r = w.shm(name, "get", "secret:1")
        check(r.returncode == 0 and b"value-1" in r.stdout, "a refused request changed the cache")
        st, _ = request(port, "POST", "/api/invalidate?key=secret:1",
                     {"Authorization": "Bearer " + TOKEN})
        check(st == 200, "POST /api/invalidate with the token: %d" % st)
        check(w.shm(name, "get", "secret:1").returncode != 0, "the key survived its invalidation")
        st, _ = request(port, "POST", "/api/flush", {"Authorization": "Bearer " + TOKEN})
        check(st == 200, "POST /api/flush with the token: %d" % st)
        ok("agent's POST /api/flush and /api/invalidate: 401 for %d wrong Authorization "
           "headers each, nothing changed; 200 with the token" % len(bad))
        w.stop(a)
        secrets_absent("the agent's log (debug level)", w.log("agent-env").encode())
        ok("neither secret in the agent's log at debug level")

        # 3. the password from a file
        pwfile = os.path.join(w.dir, "redis-password")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (PASSWORD + "\n").encode())
        os.close(fd)
        name = w.segment()
        a = w.start_agent("agent-file", ["-n", name, "--redis", url, "--password-file", pwfile,
                                         "--log-level", "debug"], {})
        w.wait_log("agent-file", a, r"l2: connected to Redis")
        secrets_absent("/proc/PID/cmdline (--password-file)", proc_bytes(a.pid, "cmdline"))
        w.stop(a)
        secrets_absent("the agent's log (--password-file)", w.log("agent-file").encode())
        ok("--password-file: connected; the password not in cmdline or log")

        # 4. a wrong password: refused by Redis, and neither password is logged
        name = w.segment()
        wrong = "wrong-pw-Kd93s"
        a = w.start_agent("agent-wrong", ["-n", name, "--redis", url, "--log-level", "debug"],
                          {"HOSTCACHE_REDIS_PASSWORD": wrong})
        m = w.wait_log("agent-wrong", a, r"(?i)(WRONGPASS|invalid password|AUTH)[^\n]*",
                       what="the agent to report the refused password")
        note("agent says: %s" % m.group(0)[:160])
        check(wrong.encode() not in proc_bytes(a.pid, "environ"), "wrong password in environ")
        w.stop(a)
        log = w.log("agent-wrong")
        check(wrong not in log and PASSWORD not in log, "a password is in the log:\n" + log)
        ok("a wrong password: reported, not logged")

        # 5. a password in the URL is refused, and not repeated
        name = w.segment()
        for tag, args, env in (
                ("url-flag", ["--redis", "redis://:%s@127.0.0.1:1/0" % PASSWORD], {}),
                ("url-user", ["--redis", "redis://default:%s@127.0.0.1:1/0" % PASSWORD], {}),
                ("url-env", [], {"HOSTCACHE_REDIS": "redis://:%s@127.0.0.1:1/0" % PASSWORD})):
            p = w.start_agent(tag, ["-n", name] + args, env)
            rc = p.wait(timeout=10)
            out = w.log(tag)
            check(rc == 2, "%s: exit %d, expected 2 (usage); log:\n%s" % (tag, rc, out))
            check(PASSWORD not in out, "%s: the refusal repeats the password:\n%s" % (tag, out))
        ok("a password in the Redis URL (flag, user:password, HOSTCACHE_REDIS): exit 2, "
           "not repeated")

        # 6. no token configured: mutating endpoints are off
        name = w.segment()
        a = w.start_agent("agent-notoken", ["-n", name, "--redis", url, "--http", "127.0.0.1:0"],
                          {"HOSTCACHE_REDIS_PASSWORD": PASSWORD})
        m = w.wait_log("agent-notoken", a, r"http: dashboard on http://127\.0\.0\.1:(\d+)/")
        port = int(m.group(1))
        for path in ("/api/flush", "/api/invalidate?key=x"):
            for auth in (None, "Bearer ", "Bearer anything"):
                hdr = {"Authorization": auth} if auth is not None else {}
                st, _ = request(port, "POST", path, hdr)
                check(st == 403, "no token: POST %s (%r): %d, expected 403" % (path, auth, st))
        w.stop(a)
        ok("an agent without a token answers 403 to every POST")
        print("test_secrets: ok")
        return 0
    except Fail as e:
        print("test_secrets: FAILED: %s" % e, file=sys.stderr)
        w.print_logs()
        return 1
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
