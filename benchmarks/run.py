"""The geventreactor benchmark suite: GeventReactor against Twisted's reactors and pure gevent.

    python benchmarks/run.py                 # default: 5 rounds, under 10 minutes on 2 cores
    python benchmarks/run.py --quick         # 1 round, short windows, under 60 s
    python benchmarks/run.py --scenarios rr10,calllater --subjects gevent,epoll --rounds 3

Subjects (see servers/subjects.py): gevent (GeventReactor), epoll (the reference), asyncio,
uvloop (if installed), puregevent (no Twisted: the ceiling). Rounds are interleaved: every round
measures every subject (in a rotated order) before the next round starts; each ratio to epoll is
taken within a round, and the table gives the median of those per-round ratios.

Network scenarios run against a server process per subject and round (servers/net_server.py),
pinned to one CPU; this process is the one load client, pinned to the other. For each window it
reads the server's CPU time from /proc, so besides wall-clock rates it reports work per server
CPU-second, which the other process's load cannot inflate; and it reports both processes' CPU
use, flagging a window where the client, not the server, was saturated. In-process scenarios
(servers/inproc.py) run one process per subject, scenario and round. Every reply is checked byte
for byte; a subject that answers wrongly, stalls or dies is reported as FAILED and the run exits
with status 1.

Writes benchmarks/results/latest.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import select
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "servers"))

from subjects import DESCRIPTIONS, REFERENCE, SUBJECTS, available, raise_fd_limit  # noqa: E402

PYTHON = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")
STALL = 10.0  # seconds without progress before a subject is declared stalled
BODY = b"hello world\n"
MSG = 64
PATTERN = bytes(range(256)) * 260  # > 64 KiB + 255: any window of it is a slice

# name -> (kind, unit, direction, description). direction +1: higher is better.
SCENARIOS: dict[str, tuple[str, str, int, str]] = {
    "stream": ("net", "MB/s", 1, "TCP stream throughput: 64 KiB chunks echoed on one connection"),
    "rr1": ("net", "req/s", 1, "request/response, 64 B echoed, 1 connection"),
    "rr10": ("net", "req/s", 1, "request/response, 64 B echoed, 10 connections"),
    "rr100": ("net", "req/s", 1, "request/response, 64 B echoed, 100 connections"),
    "connect": ("net", "conn/s", 1, "connect, 16 B echoed, close; 16 in flight"),
    "web_ka": ("net", "req/s", 1, "twisted.web GET, keep-alive, 10 connections"),
    "web_close": ("net", "req/s", 1, "twisted.web GET, Connection: close, 16 in flight"),
    "blocking": (
        "net",
        "p99 ms",
        -1,
        "rr over 10 connections while 1% of requests block 10 ms in dataReceived "
        "(gevent.sleep): p99 of the others",
    ),
    "memory": ("fresh", "B/conn", -1, "server RSS growth per idle connection (10,000)"),
    "calllater": ("inproc", "calls/s", 1, "callLater schedule/cancel/fire churn"),
    "thread_twisted": ("inproc", "rt/s", 1, "deferToThread round trips, Twisted's ThreadPool"),
    "thread_gevent": ("inproc", "rt/s", 1, "deferToThread round trips, GeventThreadPool"),
    "wfd": ("inproc", "rt/s", 1, "waitForDeferred round trips"),
}


class BenchError(Exception):
    """A subject answered wrongly, stalled or died: it gets no number."""


# -- processes ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    # schedstat counts nanoseconds (stat counts 10 ms ticks: too coarse for a 0.6 s window).
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def user_sys_ticks(pid: int) -> tuple[int, int]:
    # Coarse (10 ms ticks), but their ratio over a window says where the server's CPU time went.
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpus() -> tuple[str | None, str | None]:
    """(client cpu, server cpu) to pin to, when there are at least two."""
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(mine) < 2:
        return None, None
    return str(mine[0]), str(mine[1])


class Server:
    """A net_server.py process for one subject; a context manager."""

    def __init__(self, subject: str, server_cpu: str | None) -> None:
        self.subject = subject
        env = dict(os.environ)
        if server_cpu is not None:
            env["BENCH_SERVER_CPU"] = server_cpu
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [PYTHON, str(HERE / "servers" / "net_server.py"), subject],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(30)
        sel.close()
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise BenchError(f"server did not start: {self.error_tail()}")
        info = json.loads(line)
        self.pid = self.proc.pid
        self.ports = {k: v for k, v in info.items() if k != "pid"}

    def error_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-1500:]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"server exited with {self.proc.returncode}: {self.error_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self.stderr.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_inproc(subject: str, scenario: str, seconds: float) -> dict[str, Any]:
    try:
        out = subprocess.run(
            [PYTHON, str(HERE / "servers" / "inproc.py"), subject, scenario, str(seconds)],
            capture_output=True,
            text=True,
            timeout=60 + seconds * 10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError("timed out") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise BenchError(f"exit {out.returncode}: {out.stderr.strip()[-1500:]}")
    data = json.loads(lines[-1])
    return {"value": data["ops"] / data["seconds"], "cpu": data["cpu"], "wall": data["seconds"]}


# -- the load client ---------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def hard_close(sock: socket.socket) -> None:
    # RST instead of FIN: no TIME_WAIT, so thousands of connections a second cannot exhaust the
    # ephemeral ports.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Window:
    """The measuring window: counts, server and client CPU between start() and stop()."""

    def __init__(self, server: Server, warmup: float, seconds: float) -> None:
        self.server = server
        self.t_start = time.perf_counter() + warmup
        self.t_end = self.t_start + seconds
        self.open = False
        self.closed = False
        self.count = 0

    def tick(self, now: float) -> None:
        if not self.open and now >= self.t_start:
            self.open = True
            self.t0 = now
            self.s0 = cpu_seconds(self.server.pid)
            self.k0 = user_sys_ticks(self.server.pid)
            self.c0 = time.process_time()
        elif self.open and not self.closed and now >= self.t_end:
            self.closed = True
            self.elapsed = now - self.t0
            self.server_cpu = cpu_seconds(self.server.pid) - self.s0
            user, kernel = user_sys_ticks(self.server.pid)
            self.user_ticks, self.sys_ticks = user - self.k0[0], kernel - self.k0[1]
            self.client_cpu = time.process_time() - self.c0

    def result(self, work: float) -> dict[str, Any]:
        if not self.closed:
            raise BenchError("measuring window never closed")
        return {
            "value": work / self.elapsed,
            "per_cpu": work / self.server_cpu if self.server_cpu > 0 else None,
            "server_util": self.server_cpu / self.elapsed,
            "client_util": self.client_cpu / self.elapsed,
            # The kernel's share of the server's CPU time (system calls, the TCP stack, waking).
            "server_sys": (
                self.sys_ticks / (self.user_ticks + self.sys_ticks)
                if self.user_ticks + self.sys_ticks
                else None
            ),
        }


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def request_response(
    server: Server, port: int, conns: int, warmup: float, seconds: float, mark_every: int = 0
) -> dict[str, Any]:
    """One request in flight per connection; every reply compared with its request."""
    socks = [connect(port) for _ in range(conns)]
    ep = select.epoll()
    by_fd: dict[int, list[Any]] = {}  # fd -> [sock, expected, received, sent_at, marked]
    seq = 0
    window = Window(server, warmup, seconds)
    latencies: list[float] = []
    marked_latencies: list[float] = []
    perf = time.perf_counter

    def send(entry: list[Any]) -> None:
        nonlocal seq
        seq += 1
        marked = mark_every and seq % mark_every == 0
        msg = b"%c%015d" % (66 if marked else 82, seq) + b"x" * (MSG - 16)
        entry[1], entry[2], entry[4] = msg, b"", marked
        entry[3] = perf()
        entry[0].send(msg)

    try:
        for sock in socks:
            entry = [sock, b"", b"", 0.0, False]
            by_fd[sock.fileno()] = entry
            ep.register(sock.fileno(), select.EPOLLIN)
        for entry in by_fd.values():
            send(entry)
        outstanding = conns
        last = perf()
        while outstanding:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError(f"stalled: {outstanding} replies missing for {STALL} s")
                continue
            last = now
            window.tick(now)
            for fd, _ in events:
                entry = by_fd[fd]
                data = entry[0].recv(65536)
                if not data:
                    raise BenchError("server closed a connection")
                received = entry[2] + data
                if len(received) < MSG:
                    entry[2] = received
                    continue
                if received != entry[1]:
                    raise BenchError(f"echo mismatch: sent {entry[1]!r}, got {received!r}")
                if window.open and not window.closed:
                    window.count += 1
                    (marked_latencies if entry[4] else latencies).append(now - entry[3])
                if window.closed:
                    outstanding -= 1
                    entry[2] = b""
                else:
                    send(entry)
            if window.open and not window.closed:
                window.tick(perf())
    finally:
        ep.close()
        for sock in socks:
            hard_close(sock)
    result = window.result(window.count)
    if not latencies:
        raise BenchError("no replies in the measuring window")
    result["p50_ms"] = percentile(latencies, 0.50) * 1e3
    result["p99_ms"] = percentile(latencies, 0.99) * 1e3
    result["requests"] = window.count
    if mark_every:
        result["blocked_requests"] = len(marked_latencies)
    return result


def stream(server: Server, port: int, warmup: float, seconds: float) -> dict[str, Any]:
    """One connection; the client writes 64 KiB chunks and checks every echoed byte."""
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    ep = select.epoll()
    ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
    window = Window(server, warmup, seconds)
    sent = received = counted_from = measured = 0
    limit = 1 << 20  # bytes in flight
    view = memoryview(PATTERN)
    writing = True
    perf = time.perf_counter
    last = perf()
    try:
        while True:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError("stream stalled")
                continue
            last = now
            was_open, was_closed = window.open, window.closed
            window.tick(now)
            if window.open and not was_open:
                counted_from = received
            if window.closed and not was_closed:
                measured = received - counted_from
            for _, mask in events:
                if mask & select.EPOLLIN:
                    data = sock.recv(65536)
                    if not data:
                        raise BenchError("server closed the stream")
                    off = received & 255
                    if data != view[off : off + len(data)]:
                        raise BenchError(f"stream mismatch at byte {received}")
                    received += len(data)
                if mask & select.EPOLLOUT and not window.closed:
                    off = sent & 255
                    try:
                        sent += sock.send(view[off : off + 65536])
                    except BlockingIOError:
                        pass
            if window.closed:
                if writing:
                    writing = False
                    ep.modify(sock.fileno(), select.EPOLLIN)
                if received == sent:
                    break
            elif writing != (sent - received < limit):
                writing = not writing
                ep.modify(sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if writing else 0))
    finally:
        ep.close()
        hard_close(sock)
    # MB/s of echoed data.
    return window.result(measured / 1e6)


def connections(server: Server, port: int, warmup: float, seconds: float) -> dict[str, Any]:
    """Connect, send 16 bytes, read them back, close (RST); 16 in flight."""
    return _churn(server, port, warmup, seconds, 16, b"0123456789abcdef", None)


def _churn(
    server: Server,
    port: int,
    warmup: float,
    seconds: float,
    in_flight: int,
    request: bytes,
    check: Any,
) -> dict[str, Any]:
    # check(received) -> None when incomplete, True when a full good reply; None check: echo.
    ep = select.epoll()
    conns: dict[int, list[Any]] = {}  # fd -> [sock, received, sent]
    window = Window(server, warmup, seconds)
    perf = time.perf_counter
    last = perf()

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise BenchError(f"connect failed: {os.strerror(err)}")
        conns[sock.fileno()] = [sock, b"", False]
        ep.register(sock.fileno(), select.EPOLLOUT)

    try:
        for _ in range(in_flight):
            open_one()
        while conns:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError(f"stalled with {len(conns)} connections open")
                continue
            last = now
            window.tick(now)
            for fd, mask in events:
                entry = conns[fd]
                sock = entry[0]
                if not entry[2]:
                    if mask & (select.EPOLLERR | select.EPOLLHUP):
                        raise BenchError("connection refused or reset")
                    sock.send(request)
                    entry[2] = True
                    ep.modify(fd, select.EPOLLIN)
                    continue
                data = sock.recv(65536)
                received = entry[1] + data
                if check is None:
                    if not data:
                        raise BenchError("server closed before echoing")
                    if len(received) < len(request):
                        entry[1] = received
                        continue
                    if received != request:
                        raise BenchError(f"echo mismatch: {received!r}")
                else:
                    verdict = check(received, not data)
                    if verdict is None:
                        entry[1] = received
                        continue
                ep.unregister(fd)
                del conns[fd]
                hard_close(sock)
                if window.open and not window.closed:
                    window.count += 1
                if not window.closed:
                    open_one()
    finally:
        ep.close()
        for entry in conns.values():
            hard_close(entry[0])
    return window.result(window.count)


def http_reply_complete(received: bytes, eof: bool) -> bool | None:
    """Parse one response (status 200, Content-Length, body); None while incomplete."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        if eof:
            raise BenchError(f"connection closed inside the headers: {received!r}")
        return None
    head = received[:end]
    if not head.startswith(b"HTTP/1.1 200 "):
        raise BenchError(f"bad status: {head[:80]!r}")
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise BenchError(f"no Content-Length: {head!r}")
    length = int(lower[at + 15 : lower.find(b"\r\n", at) if b"\r\n" in lower[at:] else None])
    body = received[end + 4 :]
    if len(body) < length:
        if eof:
            raise BenchError("connection closed inside the body")
        return None
    if body[:length] != BODY or len(body) > length:
        raise BenchError(f"bad body: {body!r}")
    return True


def web_close(server: Server, port: int, warmup: float, seconds: float) -> dict[str, Any]:
    request = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"

    def check(received: bytes, eof: bool) -> bool | None:
        # The server closes after the reply: wait for that EOF, then check the reply.
        if not eof:
            return None
        return http_reply_complete(received, True)

    return _churn(server, port, warmup, seconds, 16, request, check)


def web_keepalive(server: Server, port: int, warmup: float, seconds: float) -> dict[str, Any]:
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    conns = 10
    socks = [connect(port) for _ in range(conns)]
    ep = select.epoll()
    buffers: dict[int, list[Any]] = {}
    window = Window(server, warmup, seconds)
    perf = time.perf_counter
    last = perf()
    try:
        for sock in socks:
            buffers[sock.fileno()] = [sock, b""]
            ep.register(sock.fileno(), select.EPOLLIN)
            sock.send(request)
        outstanding = conns
        while outstanding:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError("keep-alive stalled")
                continue
            last = now
            window.tick(now)
            for fd, _ in events:
                entry = buffers[fd]
                data = entry[0].recv(65536)
                if not data:
                    raise BenchError("server closed a keep-alive connection")
                received = entry[1] + data
                if http_reply_complete(received, False) is None:
                    entry[1] = received
                    continue
                entry[1] = b""
                if window.open and not window.closed:
                    window.count += 1
                if window.closed:
                    outstanding -= 1
                else:
                    entry[0].send(request)
    finally:
        ep.close()
        for sock in socks:
            hard_close(sock)
    return window.result(window.count)


def idle_memory(server: Server, port: int, count: int) -> dict[str, Any]:
    """Open `count` connections, each echoing one byte, and measure the server's RSS growth."""
    # Warm-up: the first connections allocate one-off structures (free lists, runner greenlets).
    warm = [connect(port) for _ in range(50)]
    for sock in warm:
        sock.setblocking(True)
        sock.sendall(b"w")
        if sock.recv(1) != b"w":
            raise BenchError("warm-up echo mismatch")
        hard_close(sock)
    time.sleep(0.2)
    before = rss_bytes(server.pid)
    socks: list[socket.socket] = []
    batch = 500
    deadline = time.perf_counter() + 120
    try:
        while len(socks) < count:
            group = [connect(port) for _ in range(min(batch, count - len(socks)))]
            socks.extend(group)
            for sock in group:
                sock.send(b"m")
            for sock in group:
                sock.setblocking(True)
                sock.settimeout(STALL)
                try:
                    got = sock.recv(1)
                except TimeoutError:
                    raise BenchError(f"no echo at connection {len(socks)}") from None
                if got != b"m":
                    raise BenchError(f"idle echo mismatch: {got!r}")
            if time.perf_counter() > deadline:
                raise BenchError("opening connections took over 120 s")
        time.sleep(0.3)
        server.check_alive()
        after = rss_bytes(server.pid)
    finally:
        for sock in socks:
            hard_close(sock)
    return {"value": (after - before) / count, "rss_before": before, "rss_after": after}


# -- one round for one subject ---------------------------------------------------------------


def measure_net(
    subject: str, scenarios: list[str], args: argparse.Namespace, server_cpu: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    net = [s for s in scenarios if SCENARIOS[s][0] == "net"]
    if net:
        try:
            server = Server(subject, server_cpu)
        except BenchError as e:
            return {s: {"error": str(e)} for s in net}
        with server:
            w, s = args.warmup, args.seconds
            for name in net:
                try:
                    if name == "stream":
                        r = stream(server, server.ports["echo"], w, s)
                    elif name.startswith("rr"):
                        r = request_response(server, server.ports["echo"], int(name[2:]), w, s)
                    elif name == "connect":
                        r = connections(server, server.ports["echo"], w, s)
                    elif name == "web_ka":
                        r = web_keepalive(server, server.ports["web"], w, s)
                    elif name == "web_close":
                        r = web_close(server, server.ports["web"], w, s)
                    elif name == "blocking":
                        clean = request_response(server, server.ports["block"], 10, w, s)
                        mixed = request_response(
                            server, server.ports["block"], 10, w, s, mark_every=100
                        )
                        r = {
                            "value": mixed["p99_ms"],
                            "clean_p99_ms": clean["p99_ms"],
                            "mixed_p50_ms": mixed["p50_ms"],
                            "self_ratio": mixed["p99_ms"] / clean["p99_ms"],
                            "mixed_req_s": mixed["value"],
                            "clean_req_s": clean["value"],
                            "blocked_requests": mixed["blocked_requests"],
                            "server_util": mixed["server_util"],
                            "client_util": mixed["client_util"],
                            "server_sys": mixed["server_sys"],
                        }
                    else:
                        raise AssertionError(name)
                    server.check_alive()
                    out[name] = r
                except (BenchError, OSError) as e:
                    out[name] = {"error": f"{type(e).__name__}: {e}"}
    if "memory" in scenarios:
        try:
            with Server(subject, server_cpu) as server:
                out["memory"] = idle_memory(server, server.ports["echo"], args.connections)
        except (BenchError, OSError) as e:
            out["memory"] = {"error": f"{type(e).__name__}: {e}"}
    for name in scenarios:
        if SCENARIOS[name][0] == "inproc":
            try:
                out[name] = run_inproc(subject, name, args.seconds + args.warmup)
            except BenchError as e:
                out[name] = {"error": str(e)}
    return out


# -- summary -----------------------------------------------------------------------------------


def ratio(scenario: str, value: float, reference: float) -> float:
    # Always "how many times better than epoll": >1 is better, whatever the unit's direction.
    return value / reference if SCENARIOS[scenario][2] > 0 else reference / value


def summarize(
    rounds: list[dict[str, dict[str, Any]]], subjects: list[str], scenarios: list[str]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in scenarios:
        per_subject: dict[str, Any] = {}
        for subject in subjects:
            results = [r[subject][name] for r in rounds if name in r.get(subject, {})]
            errors = [x["error"] for x in results if "error" in x]
            good = [x for x in results if "error" not in x]
            entry: dict[str, Any] = {"rounds": results}
            if errors:
                entry["failed"] = errors[0]
            if good:
                values = [x["value"] for x in good]
                med = statistics.median(values)
                entry["median"] = med
                entry["spread"] = (max(values) - min(values)) / med if med else 0.0
                # Noise on a shared machine only ever slows a subject down: the best round is
                # a second, steadier estimate.
                entry["best"] = max(values) if SCENARIOS[name][2] > 0 else min(values)
                for key in (
                    "per_cpu",
                    "p50_ms",
                    "p99_ms",
                    "server_util",
                    "client_util",
                    "server_sys",
                    "self_ratio",
                    "clean_p99_ms",
                ):
                    vals = [x[key] for x in good if x.get(key) is not None]
                    if vals:
                        entry[key] = statistics.median(vals)
            ratios, cpu_ratios = [], []
            for r in rounds:
                mine, ref = r.get(subject, {}).get(name), r.get(REFERENCE, {}).get(name)
                if not mine or not ref or "error" in mine or "error" in ref:
                    continue
                ratios.append(ratio(name, mine["value"], ref["value"]))
                if mine.get("per_cpu") and ref.get("per_cpu"):
                    cpu_ratios.append(mine["per_cpu"] / ref["per_cpu"])
            if ratios:
                entry["ratio"] = statistics.median(ratios)
                entry["ratio_rounds"] = ratios
            if cpu_ratios:
                entry["cpu_ratio"] = statistics.median(cpu_ratios)
            # The client is the bottleneck when it is saturated and the server is not.
            if good and "client_util" in entry and "server_util" in entry:
                entry["client_bound"] = entry["client_util"] > 0.9 and entry["server_util"] < 0.8
            per_subject[subject] = entry
        ref_entry = per_subject.get(REFERENCE, {})
        for entry in per_subject.values():
            if "best" in entry and "best" in ref_entry:
                entry["best_ratio"] = ratio(name, entry["best"], ref_entry["best"])
        summary[name] = per_subject
    return summary


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def print_table(summary: dict[str, Any], subjects: list[str]) -> None:
    header = (
        f"{'scenario':<15} {'subject':<11} {'median':>10} {'unit':<8} {'spread':>7} "
        f"{'x epoll':>8} {'x ep/cpu':>8} {'x best':>7} {'p50ms':>7} {'p99ms':>7} {'srv':>5} {'cli':>5} {'sys':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, per_subject in summary.items():
        unit = SCENARIOS[name][1]
        for subject in subjects:
            e = per_subject.get(subject)
            if e is None:
                continue
            if "median" not in e:
                print(f"{name:<15} {subject:<11} FAILED: {e.get('failed', 'no result')[:70]}")
                continue
            flag = " FAILED in a round" if "failed" in e else ""
            flag += " (client-bound?)" if e.get("client_bound") else ""
            extra = ""
            if name == "blocking":
                extra = (
                    f"  mixed/clean p99 {e['self_ratio']:.2f}x (clean {e['clean_p99_ms']:.2f} ms)"
                )
            print(
                f"{name:<15} {subject:<11} {fmt(e['median']):>10} {unit:<8} "
                f"{e['spread'] * 100:>6.0f}% {fmt(e.get('ratio')):>8} {fmt(e.get('cpu_ratio')):>8} "
                f"{fmt(e.get('best_ratio')):>7} "
                f"{fmt(e.get('p50_ms')):>7} {fmt(e.get('p99_ms')):>7} "
                f"{fmt(e.get('server_util'), 2):>5} {fmt(e.get('client_util'), 2):>5} "
                f"{fmt(e.get('server_sys'), 2):>5}{extra}{flag}"
            )
        print()


def markdown(report: dict[str, Any]) -> str:
    """The README table: per scenario, each subject's median ratio to epoll (per CPU-second)."""
    subjects = list(report["subjects"])
    results = report["results"]
    lines = [
        "| scenario | unit | epoll median | "
        + " | ".join(s for s in subjects if s != REFERENCE)
        + " |",
        "|---|---|---|" + "---|" * (len(subjects) - 1),
    ]
    for name, per in results.items():
        unit = report["scenarios"][name]["unit"]
        ref = per.get(REFERENCE, {})
        cells = []
        for subject in subjects:
            if subject == REFERENCE:
                continue
            e = per.get(subject, {})
            if "ratio" not in e:
                cells.append("FAILED" if "failed" in e else "-")
                continue
            cell = f"{e['ratio']:.2f}"
            if e.get("cpu_ratio") is not None:
                cell += f" ({e['cpu_ratio']:.2f}/cpu)"
            if name == "blocking":
                cell += f", {e['self_ratio']:.2f}x own clean p99"
            if name == "memory":
                cell += f" ({e['median'] / ref['median']:.2f}x epoll's bytes)"
            cells.append(cell)
        ref_cell = fmt(ref.get("median")) if "median" in ref else "FAILED"
        if name == "blocking" and "self_ratio" in ref:
            ref_cell += f" ({ref['self_ratio']:.2f}x own clean p99)"
        lines.append(f"| {name} | {unit} | {ref_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("twisted", "gevent", "greenlet", "uvloop"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        # What was measured: the commit, and the package files that differed from it.
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": git("status", "--porcelain", "--", "packages").splitlines(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gevent_loop": os.environ.get("GEVENT_LOOP", "default (libev-cext)"),
        **versions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, short windows (< 60 s)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument("--seconds", type=float, help="measuring window (default 0.6, quick 0.2)")
    parser.add_argument(
        "--warmup", type=float, help="warm-up before each window (default 0.15, quick 0.05)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the client and servers to CPUs"
    )
    parser.add_argument("--connections", type=int, help="idle connections (default 10000)")
    parser.add_argument("--scenarios", help=f"comma-separated, from {','.join(SCENARIOS)}")
    parser.add_argument("--subjects", help=f"comma-separated, from {','.join(SUBJECTS)}")
    parser.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    parser.add_argument(
        "--markdown", metavar="JSON", help="print the README table of an earlier run and exit"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.seconds = args.seconds or (0.2 if args.quick else 0.6)
    args.warmup = args.warmup if args.warmup is not None else (0.05 if args.quick else 0.15)
    args.connections = args.connections or (1000 if args.quick else 10000)
    scenarios = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(
                f"--scenarios: unknown scenario {name!r}; expected some of {list(SCENARIOS)}"
            )
    wanted = args.subjects.split(",") if args.subjects else list(SUBJECTS)
    for name in wanted:
        if name not in SUBJECTS:
            parser.error(f"--subjects: unknown subject {name!r}; expected some of {SUBJECTS}")
    subjects = [s for s in wanted if available(s)]
    skipped = [s for s in wanted if s not in subjects]
    if REFERENCE not in subjects:
        subjects.insert(0, REFERENCE)

    raise_fd_limit()
    client_cpu, server_cpu = (None, None) if args.no_pin else cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {int(client_cpu)})
    started = time.time()
    print(
        f"{len(subjects)} subjects x {len(scenarios)} scenarios x {args.rounds} rounds; "
        f"window {args.seconds}s (+{args.warmup}s warm-up); client on cpu {client_cpu}, "
        f"servers on cpu {server_cpu}"
        + (f"; skipped (not installed): {skipped}" if skipped else ""),
        flush=True,
    )
    rounds: list[dict[str, dict[str, Any]]] = []
    for index in range(args.rounds):
        order = subjects[index % len(subjects) :] + subjects[: index % len(subjects)]
        this: dict[str, dict[str, Any]] = {}
        for subject in order:
            this[subject] = measure_net(subject, scenarios, args, server_cpu)
            failed = [n for n, r in this[subject].items() if "error" in r]
            print(
                f"round {index + 1}/{args.rounds} {subject:<11} done at "
                f"{time.time() - started:5.0f} s" + (f"  FAILED: {failed}" if failed else ""),
                flush=True,
            )
        rounds.append(this)
    summary = summarize(rounds, subjects, scenarios)
    print()
    print("x epoll: median of per-round ratios to epoll, >1 is better (for p99 and memory: epoll's")
    print(
        "value / the subject's). x ep/cpu: the same per server CPU-second. srv/cli: CPU use of the"
    )
    print("server and of the load client during the window (1.0 = one core). sys: the kernel's")
    print(
        "share of the server's CPU time. x best: the best round's value against epoll's best round."
    )
    print()
    print_table(summary, subjects)
    failures = [
        f"{subject}/{name}: {e['failed']}"
        for name, per in summary.items()
        for subject, e in per.items()
        if "failed" in e
    ]
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": time.time() - started,
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "subjects": {s: DESCRIPTIONS[s] for s in subjects},
        "reference": REFERENCE,
        "scenarios": {
            n: {
                "unit": SCENARIOS[n][1],
                "higher_is_better": SCENARIOS[n][2] > 0,
                "description": SCENARIOS[n][3],
            }
            for n in scenarios
        },
        "results": summary,
        "failures": failures,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path} in {time.time() - started:.0f} s")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
