"""
e2e.py - what the end-to-end tests in python share: assertions that stop
the test with a message, polling with a deadline, a few Redis commands by
hand, and the processes of a test (started with their output in a log,
checked alive, stopped, their segments and temporary directory removed
whatever happens).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def ok(msg):
    print("ok - %s" % msg, flush=True)


def note(msg):
    print("# %s" % msg, flush=True)


def poll(fn, timeout, what, interval=0.02):
    """Call fn() until it returns a true value; Fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def redis_cmd(sock_path, *args, timeout=2):
    """One command on a unix socket; the raw reply (one line, or a bulk string)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        msg = b"*%d\r\n" % len(args)
        for a in args:
            msg += bulk(a.encode() if isinstance(a, str) else a)
        s.sendall(msg)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if buf.startswith(b"$"):
                head, sep, rest = buf.partition(b"\r\n")
                if sep and (int(head[1:]) < 0 or len(rest) >= int(head[1:]) + 2):
                    break
            elif buf.endswith(b"\r\n"):
                break
        return buf
    finally:
        s.close()


class Procs:
    """The processes, segments and temporary directory of one test."""

    def __init__(self, prefix, shmtool):
        self.shmtool = os.path.abspath(shmtool)
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.procs = []  # (name, Popen, log path)
        self.segments = []

    def start(self, name, argv):
        log = os.path.join(self.dir, name + ".log")
        f = open(log, "wb")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, cwd=self.dir)
        finally:
            f.close()
        self.procs.append((name, p, log))
        return p

    def log(self, name):
        """The log of the latest process called @name."""
        for n, _, path in reversed(self.procs):
            if n == name:
                try:
                    with open(path, "rb") as f:
                        return f.read().decode(errors="replace")
                except OSError:
                    return ""
        return ""

    def print_logs(self, tail=2000):
        """The end of every process's log, on stderr (after a failure)."""
        for n, _, _ in self.procs:
            print("---- %s ----\n%s" % (n, self.log(n)[-tail:]), file=sys.stderr)

    def alive(self, name, p):
        if p.poll() is not None:
            how = ("killed by signal %d" % -p.returncode if p.returncode < 0
                   else "exit status %d" % p.returncode)
            raise Fail("%s died (%s); its log:\n%s" % (name, how, self.log(name)[-3000:]))

    def wait_port_file(self, name, p, port_file, timeout):
        """The port a product-api wrote to @port_file once all its workers accept."""
        def port():
            self.alive(name, p)
            try:
                with open(port_file) as f:
                    text = f.read()
            except OSError:
                return None
            return int(text) if text.endswith("\n") else None
        return poll(port, timeout, "%s to write its port file" % name)

    def shm(self, segment, *args):
        return subprocess.run([self.shmtool, "-n", segment] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)

    def cleanup(self):
        for _, p, _ in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 3
        for _, p, _ in self.procs:
            try:
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for seg in self.segments:
            if os.path.exists("/dev/shm/hostcache." + seg):
                try:
                    self.shm(seg, "destroy")
                except (OSError, subprocess.SubprocessError):
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
