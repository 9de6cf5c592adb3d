"""
The 2013 geventreactor demo, for Python 3: a line server whose sessions may block with gevent.

Commands, one per line:
  delay   blocks this session (only this one) for --delay seconds with gevent.sleep
  count   starts a greenlet that writes "count N" to this session every second, five times
  quit    closes the session after 2 seconds
  die     stops the reactor
  other   echoed back

A greenlet beside the server prints the loop's timer drift every second, to show that a blocked
session does not stall the loop.

    python examples/demo_server.py              # serve on 127.0.0.1:8007; try: nc 127.0.0.1 8007
    python examples/demo_server.py --scripted   # run a scripted session against itself and exit
"""

from __future__ import annotations

import argparse
import sys
import time

import gevent_reactor

reactor = gevent_reactor.install()

import gevent  # noqa: E402
from gevent import socket  # noqa: E402
from twisted.internet import protocol  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402


class DemoSession(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self):
        self.sendLine(b"hello: delay, count, quit, die or anything to echo")

    def lineReceived(self, line):
        command = line.strip()
        if command == b"delay":
            self.sendLine(b"sleeping %g s; other sessions go on" % self.factory.delay)
            gevent.sleep(self.factory.delay)  # Blocks this session only.
            self.sendLine(b"awake")
        elif command == b"count":
            gevent.spawn(self.count)
        elif command == b"quit":
            self.sendLine(b"bye in 2 s")
            reactor.callLater(2, self.transport.loseConnection)
        elif command == b"die":
            self.sendLine(b"stopping the reactor")
            reactor.callLater(0.1, reactor.stop)  # Time for the line to reach the client.
        else:
            self.sendLine(b"echo: " + command)

    def count(self):
        for n in range(1, 6):
            self.sendLine(b"count %d" % n)  # From a greenlet: written at once.
            gevent.sleep(1)


def drift_monitor(verbose: bool) -> None:
    while True:
        start = time.monotonic()
        gevent.sleep(1)
        drift = time.monotonic() - start - 1
        if verbose:
            print(f"[drift] timer drift {drift * 1000:.1f} ms", flush=True)


class Client:
    """A plain gevent socket client, for the scripted session."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")
        self.expect(b"hello")

    def send(self, line: bytes) -> None:
        print(f"{self.name} > {line.decode()}", flush=True)
        self.sock.sendall(line + b"\n")

    def readline(self) -> bytes:
        line = self.file.readline().rstrip(b"\n")
        print(f"{self.name} < {line.decode()}", flush=True)
        return line

    def expect(self, prefix: bytes) -> float:
        start = time.monotonic()
        line = self.readline()
        if not line.startswith(prefix):
            raise AssertionError(f"{self.name}: expected {prefix!r}, got {line!r}")
        return time.monotonic() - start

    def closed_after(self) -> None:
        rest = self.file.read()
        if b"bye" in rest or b"echo" in rest:
            raise AssertionError(f"{self.name}: unexpected {rest!r} before close")


def scripted_session(port: int, delay: float) -> None:
    a, b = Client(port, "A"), Client(port, "B")
    a.send(b"delay")
    a.expect(b"sleeping")
    b.send(b"hi there")
    waited = b.expect(b"echo: hi there")
    assert waited < 1.0, f"B waited {waited:.2f} s while A was blocked"
    b.send(b"count")
    for n in range(1, 4):
        b.expect(b"count %d" % n)
    a.expect(b"awake")
    b.send(b"quit")
    start = time.monotonic()
    while not b.readline().startswith(b"bye"):
        pass  # the counter greenlet may still write before the goodbye
    b.closed_after()
    closed = time.monotonic() - start
    assert 1.0 < closed < 5.0, f"quit closed after {closed:.2f} s, not about 2 s"
    a.send(b"die")
    a.expect(b"stopping")
    print("scripted session: OK", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, default=8007)
    parser.add_argument("--delay", type=float, default=10.0)
    parser.add_argument("--scripted", action="store_true", help="run a scripted session and exit")
    args = parser.parse_args(argv)

    factory = protocol.ServerFactory.forProtocol(DemoSession)
    factory.delay = 2.0 if args.scripted and args.delay == 10.0 else args.delay
    port = reactor.listenTCP(0 if args.scripted else args.port, factory, interface="127.0.0.1")
    actual = port.getHost().port
    gevent.spawn(drift_monitor, not args.scripted)
    failures: list[BaseException] = []
    script = None
    if args.scripted:

        def run_script():
            try:
                scripted_session(actual, factory.delay)
            except BaseException as e:
                failures.append(e)
                reactor.stop()

        script = gevent.spawn(run_script)
        reactor.callLater(60, reactor.stop)  # Nothing hangs.
    else:
        print(f"demo server on 127.0.0.1:{actual}; try: nc 127.0.0.1 {actual}", flush=True)
        print("commands: delay, count, quit, die, anything else is echoed", flush=True)
    reactor.run()
    if script is not None:
        script.join(5)
        if not script.dead:
            failures.append(TimeoutError("the scripted session did not finish"))
    if failures:
        print(f"scripted session FAILED: {failures[0]!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
