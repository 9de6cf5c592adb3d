"""
GreenConnection against gevent's own sockets and a plain Twisted Protocol on epoll.

    python benchmarks/bench_green.py              # 5 interleaved rounds, about 4 minutes
    python benchmarks/bench_green.py --quick      # 1 round, short windows (a smoke run)
    python benchmarks/bench_green.py --rounds 3 --window 2 --json benchmarks/results/green.json

Four scenarios, each with the subject on one side and a fixed peer (plain blocking sockets, in its
own process) on the other:

    rr-server      the subject echoes 64-byte requests from one connection (request/response)
    rr-client      the subject sends 64-byte requests and waits for each echo
    stream-server  the subject reads a one-way stream of 64 KiB writes
    stream-client  the subject writes that stream

Subjects: ``green`` (GreenConnection on GeventReactor, in-loop: GreenFactory handler or connect()),
``green-xthread`` (the same API with Twisted's epoll reactor in a ReactorThread), ``gevent``
(gevent's StreamServer / sockets, no Twisted) and ``twisted`` (a plain Protocol on Twisted's epoll
reactor). Every subject is its own process, fresh for every measurement, run round by round in
turn. Each row gives the median over rounds of per-round ratios (green / other), by wall-clock
rate and by work per CPU-second of the subject's process (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

MSG = 64
CHUNK = 65536
SUBJECTS = ["green", "green-xthread", "gevent", "twisted"]
SCENARIOS = ["rr-server", "rr-client", "stream-server", "stream-client"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def recv_exactly(sock: socket.socket, n: int) -> None:
    while n:
        data = sock.recv(n)
        if not data:
            raise EOFError
        n -= len(data)


# -- the fixed peer: plain blocking sockets -----------------------------------------------------


def peer_client(kind: str, port: int, window: float) -> dict:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg, chunk = b"r" * MSG, b"s" * CHUNK
    ops = 0
    warm = time.monotonic() + min(0.3, window / 4)
    while time.monotonic() < warm:  # warm-up, not counted
        if kind == "rr":
            sock.sendall(msg)
            recv_exactly(sock, MSG)
        else:
            sock.sendall(chunk)
    start = time.monotonic()
    deadline = start + window
    while time.monotonic() < deadline:
        if kind == "rr":
            for _ in range(20):
                sock.sendall(msg)
                recv_exactly(sock, MSG)
            ops += 20
        else:
            sock.sendall(chunk)
            ops += 1
    elapsed = time.monotonic() - start
    sock.close()
    return {"ops": ops, "wall": elapsed}


def peer_server(kind: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = conn.recv(CHUNK if kind == "stream" else MSG)
            if not data:
                return
            if kind == "rr":
                conn.sendall(data)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# -- subjects as servers ----------------------------------------------------------------------


def subject_server(subject: str, kind: str) -> None:
    if subject == "gevent":
        from gevent.server import StreamServer

        def handle(sock, _addr):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := sock.recv(CHUNK):
                if kind == "rr":
                    sock.sendall(data)

        server = StreamServer(("127.0.0.1", 0), handle)
        server.start()
        print(server.server_port, flush=True)
        server.serve_forever()
    elif subject == "twisted":
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol

        class Echo(Protocol):
            def connectionMade(self):
                self.transport.setTcpNoDelay(True)

            def dataReceived(self, data):
                if kind == "rr":
                    self.transport.write(data)

        port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        print(port.getHost().port, flush=True)
        reactor.run()
    else:
        import gevent

        from gevent_deferred import ReactorThread, listen

        reactor = start_reactor(subject)
        if isinstance(reactor, ReactorThread):
            reactor = reactor.reactor

        def handle(conn):
            if subject == "green":
                conn.transport.setTcpNoDelay(True)
            else:  # the transport belongs to the reactor's thread
                reactor.callFromThread(conn.transport.setTcpNoDelay, True)
            while data := conn.recv(CHUNK):
                if kind == "rr":
                    conn.sendall(data)

        port = listen("tcp:0:interface=127.0.0.1", handle, reactor=reactor)
        print(port.getHost().port, flush=True)
        while True:
            gevent.sleep(3600)


def start_reactor(subject: str):
    if subject == "green":
        import gevent_reactor

        return gevent_reactor.install(background=True)
    from twisted.internet.epollreactor import EPollReactor

    from gevent_deferred import ReactorThread

    return ReactorThread(EPollReactor()).start()


# -- subjects as clients ----------------------------------------------------------------------


def subject_client(subject: str, kind: str, port: int, window: float) -> dict:
    msg, chunk = b"r" * MSG, b"s" * CHUNK
    warmup = min(0.3, window / 4)
    if subject == "twisted":
        return twisted_client(kind, port, window, warmup)
    if subject == "gevent":
        from gevent import socket as gsocket

        sock = gsocket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send(data):
            sock.sendall(data)

        def receive(n):
            while n:
                n -= len(sock.recv(n))

    else:
        from gevent_deferred import ReactorThread, connect

        reactor = start_reactor(subject)
        if isinstance(reactor, ReactorThread):
            reactor = reactor.reactor
        conn = connect(f"tcp:127.0.0.1:{port}", reactor=reactor, timeout=5)
        send = conn.sendall

        def receive(n):
            while n:
                n -= len(conn.recv(n))

    def loop(until: float) -> int:
        ops = 0
        while time.monotonic() < until:
            if kind == "rr":
                for _ in range(20):
                    send(msg)
                    receive(MSG)
                ops += 20
            else:
                send(chunk)
                ops += 1
        return ops

    loop(time.monotonic() + warmup)
    cpu0, start = time.process_time(), time.monotonic()
    ops = loop(start + window)
    return {"ops": ops, "wall": time.monotonic() - start, "cpu": time.process_time() - cpu0}


def twisted_client(kind: str, port: int, window: float, warmup: float) -> dict:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.interfaces import IPullProducer
    from twisted.internet.protocol import ClientFactory, Protocol
    from zope.interface import implementer

    msg, chunk = b"r" * MSG, b"s" * CHUNK
    state = {"ops": 0, "counting": False}

    @implementer(IPullProducer)
    class Client(Protocol):
        pending = 0

        def connectionMade(self):
            self.transport.setTcpNoDelay(True)
            if kind == "rr":
                self.transport.write(msg)
            else:
                self.transport.registerProducer(self, False)

        def dataReceived(self, data):
            self.pending += len(data)
            while self.pending >= MSG:
                self.pending -= MSG
                state["ops"] += 1
                self.transport.write(msg)

        def resumeProducing(self):
            self.transport.write(chunk)
            state["ops"] += 1

        def stopProducing(self):
            pass

    def begin():
        state["ops"] = 0
        state["cpu0"], state["start"] = time.process_time(), time.monotonic()
        reactor.callLater(window, end)

    def end():
        state["wall"] = time.monotonic() - state["start"]
        state["cpu"] = time.process_time() - state["cpu0"]
        reactor.stop()

    reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(Client))
    reactor.callLater(warmup, begin)
    reactor.run()
    return {"ops": state["ops"], "wall": state["wall"], "cpu": state["cpu"]}


# -- orchestration ----------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def measure(subject: str, scenario: str, window: float) -> dict:
    kind, side = scenario.split("-")
    if side == "server":
        server = spawn("_subject_server", subject, kind)
        try:
            port = int(server.stdout.readline())
            cpu0 = cpu_of(server.pid)
            client = spawn("_peer_client", kind, str(port), str(window))
            out, _ = client.communicate(timeout=window + 30)
            result = json.loads(out)
            result["cpu"] = cpu_of(server.pid) - cpu0  # includes the warm-up: same for all
        finally:
            server.kill()
            server.wait()
    else:
        peer = spawn("_peer_server", kind)
        try:
            port = int(peer.stdout.readline())
            client = spawn("_subject_client", subject, kind, str(port), str(window))
            out, _ = client.communicate(timeout=window + 30)
            result = json.loads(out.strip().splitlines()[-1])
        finally:
            peer.kill()
            peer.wait()
    unit = MSG if kind == "rr" else CHUNK
    result["rate"] = result["ops"] / result["wall"]
    result["per_cpu"] = result["ops"] / max(result["cpu"], 1e-3)
    result["mb_s"] = result["ops"] * unit / result["wall"] / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--subjects", default=",".join(SUBJECTS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.window = 1, 0.5
    scenarios, subjects = args.scenarios.split(","), args.subjects.split(",")
    rounds: list[dict] = []
    for number in range(args.rounds):
        results: dict = {}
        for scenario in scenarios:
            for subject in subjects:
                results[f"{scenario}/{subject}"] = measure(subject, scenario, args.window)
        rounds.append(results)
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    print(
        f"\n{'scenario':14} {'subject':14} {'rate/s':>10} {'MB/s':>8} {'per CPU-s':>10}"
        f"  {'green/x wall':>12} {'green/x cpu':>12}"
    )
    summary = {}
    for scenario in scenarios:
        for subject in subjects:
            key = f"{scenario}/{subject}"
            rate = statistics.median(r[key]["rate"] for r in rounds)
            mbs = statistics.median(r[key]["mb_s"] for r in rounds)
            per_cpu = statistics.median(r[key]["per_cpu"] for r in rounds)
            ratio_wall = (
                statistics.median(r[f"{scenario}/green"]["rate"] / r[key]["rate"] for r in rounds)
                if "green" in subjects
                else float("nan")
            )
            ratio_cpu = (
                statistics.median(
                    r[f"{scenario}/green"]["per_cpu"] / r[key]["per_cpu"] for r in rounds
                )
                if "green" in subjects
                else float("nan")
            )
            summary[key] = {
                "rate": rate,
                "mb_s": mbs,
                "per_cpu": per_cpu,
                "green_over_wall": ratio_wall,
                "green_over_cpu": ratio_cpu,
            }
            print(
                f"{scenario:14} {subject:14} {rate:10.0f} {mbs:8.1f} {per_cpu:10.0f}"
                f"  {ratio_wall:12.2f} {ratio_cpu:12.2f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rounds, "summary": summary, "window": args.window}, f, indent=1)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "_peer_client":
        print(json.dumps(peer_client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
    elif role == "_peer_server":
        peer_server(sys.argv[2])
    elif role == "_subject_server":
        subject_server(sys.argv[2], sys.argv[3])
    elif role == "_subject_client":
        print(
            json.dumps(
                subject_client(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
            ),
            flush=True,
        )
        os._exit(0)  # the subject's reactor and threads need no orderly exit here
    else:
        main()
