"""
Soak run: a GeventReactor server under mixed load for a bounded time, every reply checked.

The server (this process) is a Twisted line protocol on GeventReactor: most requests are answered at
once, some after the handler blocks for a random short time (gevent.sleep), some with a larger reply.
A 10 ms LoopingCall ticks, and a real OS thread sends callFromThread calls with sequence numbers.
The clients run in a separate process (plain gevent sockets in greenlets, no reactor), so their
work does not count in the server's memory or descriptors: persistent connections pipelining
numbered requests, and churners that connect, ask, and leave (half of them with a reset).

It reports requests sent/answered/lost/reordered, the timer's worst gap, the thread calls, and the
server's RSS and open descriptors at the start and the end; it exits 1 on any loss or reorder, on RSS
growth over the stated bound after warm-up, or on descriptors not back to where they started.

    python benchmarks/soak.py [--seconds 60] [--short] [--loop libev|libuv] [--connections 50]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import time
from typing import Any

LOOPS = {"libev": "libev-cext", "libuv": "libuv-cffi"}
RSS_BOUND_MIB = 20.0
TIMER_GAP_BOUND = 1.0
# Replies to a request may take this long before the client counts it lost.
REPLY_TIMEOUT = 10.0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run (60)")
    parser.add_argument("--short", action="store_true", help="a short run of about 5 s")
    parser.add_argument("--loop", choices=sorted(LOOPS), help="gevent loop (default: GEVENT_LOOP)")
    parser.add_argument("--connections", type=int, default=50, help="persistent connections")
    parser.add_argument("--churners", type=int, default=4, help="greenlets that connect and leave")
    parser.add_argument(
        "--role", choices=["server", "client"], default="server", help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=None, help="random seed for the clients")
    args = parser.parse_args()
    if args.short:
        args.seconds = 5.0
        args.connections = min(args.connections, 20)
    return args


# -- the clients (a child process, plain gevent) -------------------------------------------


def run_clients(args: argparse.Namespace) -> None:
    import gevent
    import gevent.socket

    rng = random.Random(args.seed)
    stats = {
        "sent": 0,
        "answered": 0,
        "lost": 0,
        "reordered": 0,
        "bad_replies": 0,
        "abandoned": 0,
        "connections": 0,
        "errors": [],
    }
    end = time.monotonic() + args.seconds

    def request(rng: random.Random, seq: int) -> tuple[bytes, int]:
        roll = rng.random()
        if roll < 0.15:
            return b"%d sleep %d\r\n" % (seq, rng.randint(1, 20)), 0
        if roll < 0.20:
            size = rng.randint(1, 16384)
            return b"%d blob %d\r\n" % (seq, size), size
        return b"%d echo\r\n" % seq, 0

    class Conversation:
        def __init__(self) -> None:
            self.sock = gevent.socket.create_connection(("127.0.0.1", args.port), timeout=10)
            self.sock.settimeout(REPLY_TIMEOUT)
            self.buffer = b""
            self.next_seq = 0
            self.expected: list[tuple[int, int]] = []
            stats["connections"] += 1

        def ask(self, count: int) -> None:
            data = b""
            for _ in range(count):
                line, size = request(rng, self.next_seq)
                self.expected.append((self.next_seq, size))
                self.next_seq += 1
                data += line
            self.sock.sendall(data)
            stats["sent"] += count

        def read_line(self) -> bytes | None:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            return line

        def collect(self) -> bool:
            # Every reply, in order: "<seq> ok" or "<seq> blob <payload>".  False if the
            # connection ended before all of them came.
            try:
                while self.expected:
                    line = self.read_line()
                    if line is None:
                        break
                    seq, size = self.expected[0]
                    got = int(line.split(b" ", 1)[0])
                    if got != seq:
                        stats["reordered"] += 1
                        if (got, size) in self.expected:
                            self.expected.remove((got, size))
                        continue
                    self.expected.pop(0)
                    if size and len(line.split(b" ", 2)[2]) != size:
                        stats["bad_replies"] += 1
                    stats["answered"] += 1
            except (OSError, ValueError, IndexError) as e:
                stats["errors"].append(repr(e))
            complete = not self.expected
            stats["lost"] += len(self.expected)
            self.expected.clear()
            return complete

        def close(self, rst: bool = False) -> None:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    def persistent() -> None:
        while time.monotonic() < end:
            try:
                conv = Conversation()
            except OSError as e:
                stats["errors"].append(repr(e))
                gevent.sleep(0.1)
                continue
            while time.monotonic() < end:
                try:
                    conv.ask(rng.randint(1, 4))
                except OSError as e:
                    stats["errors"].append(repr(e))
                    break
                if not conv.collect():
                    break
                gevent.sleep(rng.random() * 0.01)
            conv.close()

    def churner() -> None:
        while time.monotonic() < end:
            try:
                conv = Conversation()
            except OSError as e:
                stats["errors"].append(repr(e))
                gevent.sleep(0.1)
                continue
            try:
                conv.ask(rng.randint(1, 3))
            except OSError as e:
                stats["errors"].append(repr(e))
                conv.close()
                continue
            if rng.random() < 0.1:
                # Leaves without waiting for the replies: not a loss, the client gave up.
                stats["abandoned"] += len(conv.expected)
                conv.expected.clear()
                conv.close(rst=True)
                continue
            conv.collect()
            conv.close(rst=rng.random() < 0.5)

    workers = [gevent.spawn(persistent) for _ in range(args.connections)]
    workers += [gevent.spawn(churner) for _ in range(args.churners)]
    gevent.joinall(workers, timeout=args.seconds + REPLY_TIMEOUT + 10)
    stats["errors"] = stats["errors"][:10]
    print(json.dumps(stats), flush=True)


# -- the server (this process, GeventReactor) ---------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_server(args: argparse.Namespace) -> int:
    import gc
    import subprocess
    import threading

    import gevent
    from twisted.internet.protocol import Factory
    from twisted.internet.task import LoopingCall
    from twisted.protocols.basic import LineReceiver

    from gevent_reactor import GeventReactor

    reactor = GeventReactor()
    loop_name = type(gevent.get_hub().loop).__module__

    class Soak(LineReceiver):
        MAX_LENGTH = 1 << 20

        def connectionMade(self) -> None:
            self.factory.open += 1
            self.factory.opened += 1

        def lineReceived(self, line: bytes) -> None:
            parts = line.split(b" ")
            seq, op = parts[0], parts[1]
            if op == b"sleep":
                gevent.sleep(int(parts[2]) / 1000.0)
                self.sendLine(seq + b" ok")
            elif op == b"blob":
                self.sendLine(seq + b" blob " + b"x" * int(parts[2]))
            else:
                self.sendLine(seq + b" ok")

        def connectionLost(self, reason: Any) -> None:
            self.factory.open -= 1

    factory = Factory.forProtocol(Soak)
    factory.open = factory.opened = 0
    port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=512).getHost().port

    ticks = {"count": 0, "last": None, "max_gap": 0.0}

    def tick() -> None:
        now = time.monotonic()
        if ticks["last"] is not None:
            ticks["max_gap"] = max(ticks["max_gap"], now - ticks["last"])
        ticks["last"] = now
        ticks["count"] += 1

    timer = LoopingCall(tick)
    timer.clock = reactor

    thread_calls = {"sent": 0, "received": 0, "out_of_order": 0}
    thread_stop = threading.Event()

    def from_thread(seq: int) -> None:
        if seq != thread_calls["received"]:
            thread_calls["out_of_order"] += 1
        thread_calls["received"] = seq + 1

    def caller() -> None:
        seq = 0
        while not thread_stop.is_set():
            reactor.callFromThread(from_thread, seq)
            seq += 1
            thread_calls["sent"] = seq
            time.sleep(0.001)

    thread = threading.Thread(target=caller, name="soak-callFromThread", daemon=True)

    client_args = [
        sys.executable,
        os.path.abspath(__file__),
        "--role=client",
        f"--port={port}",
        f"--seconds={args.seconds}",
        f"--connections={args.connections}",
        f"--churners={args.churners}",
    ]
    if args.seed is not None:
        client_args.append(f"--seed={args.seed}")
    clients = subprocess.Popen(client_args, stdout=subprocess.PIPE, env=dict(os.environ))
    warm_up = max(1.0, args.seconds * 0.2)
    marks: dict[str, Any] = {"fds_start": _open_fds(), "failed_to_finish": False}
    started = time.monotonic()

    def after_warm_up() -> None:
        gc.collect()
        marks["rss_start"] = _rss_mib()

    def finish() -> None:
        # Once the clients are gone and every connection is closed (or the deadline passed).
        waited = time.monotonic() - started
        if (clients.poll() is None or factory.open) and waited < args.seconds + REPLY_TIMEOUT + 20:
            reactor.callLater(0.1, finish)
            return
        marks["failed_to_finish"] = clients.poll() is None or factory.open > 0
        thread_stop.set()
        thread.join(5)
        # The thread's last calls, then the measures.
        reactor.callLater(0.2, measure)

    def measure() -> None:
        if timer.running:
            timer.stop()
        gc.collect()
        marks["rss_end"] = _rss_mib()
        marks["fds_end"] = _open_fds()
        reactor.stop()

    reactor.callWhenRunning(thread.start)
    reactor.callWhenRunning(timer.start, 0.01)
    reactor.callLater(warm_up, after_warm_up)
    reactor.callLater(args.seconds, finish)
    reactor.run(installSignalHandlers=False)
    try:
        out, _ = clients.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        clients.kill()
        out, _ = clients.communicate()
    try:
        stats = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        stats = None

    failures = []
    print(f"soak: GeventReactor on {loop_name}, {args.seconds:g} s, {args.connections} connections")
    print(
        f"      + {args.churners} churners (client process {clients.pid}, exit {clients.returncode})"
    )
    if stats is None:
        failures.append("the client process reported nothing")
        stats = {"sent": 0, "answered": 0, "lost": 0, "reordered": 0, "abandoned": 0}
    else:
        print(
            f"requests: sent {stats['sent']} answered {stats['answered']} lost {stats['lost']} "
            f"reordered {stats['reordered']} bad {stats['bad_replies']} "
            f"(abandoned by churners: {stats['abandoned']}); "
            f"{stats['sent'] / args.seconds:.0f} requests/s"
        )
        print(f"connections: {stats['connections']} opened by clients, {factory.opened} accepted")
        if stats["errors"]:
            print(f"client errors: {stats['errors']}")
    for key in ("lost", "reordered", "bad_replies"):
        if stats.get(key):
            failures.append(f"{stats[key]} requests {key.replace('_', ' ')}")
    if stats.get("errors"):
        failures.append("client errors")
    if stats.get("sent", 0) != stats.get("answered", 0) + stats.get("lost", 0) + stats.get(
        "abandoned", 0
    ) + stats.get("reordered", 0):
        failures.append("requests unaccounted for")
    print(
        f"timer: {ticks['count']} ticks of 10 ms, worst gap {ticks['max_gap']:.3f} s "
        f"(bound {TIMER_GAP_BOUND} s)"
    )
    if ticks["max_gap"] > TIMER_GAP_BOUND:
        failures.append(f"timer gap {ticks['max_gap']:.3f} s")
    print(
        f"callFromThread: sent {thread_calls['sent']} received {thread_calls['received']} "
        f"out of order {thread_calls['out_of_order']}"
    )
    if thread_calls["received"] != thread_calls["sent"] or thread_calls["out_of_order"]:
        failures.append("calls from the thread lost or out of order")
    rss_start, rss_end = marks.get("rss_start"), marks.get("rss_end")
    if rss_start is None or rss_end is None:
        failures.append("the run ended before RSS was measured")
    else:
        growth = rss_end - rss_start
        print(
            f"rss: {rss_start:.1f} MiB after {warm_up:g} s warm-up, {rss_end:.1f} MiB at the end, "
            f"growth {growth:+.1f} MiB (bound {RSS_BOUND_MIB:g} MiB)"
        )
        if growth > RSS_BOUND_MIB:
            failures.append(f"RSS grew {growth:.1f} MiB")
    fds_start, fds_end = marks["fds_start"], marks.get("fds_end")
    print(f"fds: {fds_start} at the start, {fds_end} at the end (bound: back to the start)")
    if fds_end != fds_start:
        failures.append(f"descriptors {fds_start} -> {fds_end}")
    if marks["failed_to_finish"]:
        failures.append(f"clients or connections did not finish ({factory.open} still open)")
    if clients.returncode != 0:
        failures.append(f"client process exit {clients.returncode}")
    print("result: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)), flush=True)
    return 1 if failures else 0


def main() -> int:
    args = _parse()
    if args.loop:
        # Before gevent is imported; the client process inherits it.
        os.environ["GEVENT_LOOP"] = LOOPS[args.loop]
    if args.role == "client":
        run_clients(args)
        return 0
    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
