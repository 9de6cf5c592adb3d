"""Ending with handlers blocked: stop(), SIGTERM; and a fresh reactor in a forked child."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import gevent
import gevent.event
import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol

sys.path.insert(0, os.path.dirname(__file__))
from faults_support import (
    active_watchers,
    captured_failures,
    connect,
    fd_targets,
    open_fds,
    reactor_of,
    run_with_client,
    stop_soon,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

BLOCKED = 300


class _Blocked(Protocol):
    """dataReceived blocks until factory.release is set, then writes a late reply."""

    def dataReceived(self, data: bytes) -> None:
        factory = self.factory
        factory.blocked += 1
        factory.release.wait()
        factory.woke += 1
        self.transport.write(b"late")

    def connectionLost(self, reason: Any) -> None:
        self.factory.lost += 1


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def _echo_once(reactor: Any, payload: bytes) -> bytes:
    port = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1").getHost().port

    def echo() -> bytes:
        sock = connect(port)
        sock.sendall(payload)
        reply = sock.recv(100)
        sock.close()
        return reply

    return run_with_client(reactor, echo)


def test_stop_with_hundreds_of_blocked_handlers_returns_promptly_and_leaks_nothing() -> None:
    # What lives as long as the process is made first: the hub's loop (and libuv's helpers), and
    # the descriptor Twisted keeps for EMFILE.
    with reactor_of("gevent") as warm_up:
        assert _echo_once(warm_up, b"warm-up") == b"warm-up"
    tcp._reservedFD.reserve()
    fds_before = open_fds()
    targets_before = fd_targets()
    watchers_before = active_watchers()
    with captured_failures() as failures:
        with reactor_of("gevent") as reactor:
            factory = Factory.forProtocol(_Blocked)
            factory.blocked = factory.woke = factory.lost = 0
            # No loop watcher for a blocked handler: whatever stays active after stop is a leak.
            factory.release = gevent.event.Event()
            listening = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=BLOCKED)
            port = listening.getHost().port
            clients: list[Any] = []
            stopped_at: list[float] = []

            def client() -> None:
                for _ in range(BLOCKED):
                    sock = connect(port)
                    sock.sendall(b"x")
                    clients.append(sock)
                assert wait_for(lambda: factory.blocked == BLOCKED, 20), factory.blocked
                stopped_at.append(time.monotonic())
                stop_soon(reactor)

            thread = threading.Thread(target=client, daemon=True)
            reactor.callWhenRunning(thread.start)
            guard = gevent.spawn_later(30, reactor.crash)
            reactor.run(installSignalHandlers=False)
            returned_at = time.monotonic()
            guard.kill()
            thread.join(5)
            assert stopped_at, f"only {factory.blocked} of {BLOCKED} handlers blocked"
            took = returned_at - stopped_at[0]
            for sock in clients:
                sock.close()
            gevent.sleep(0.1)  # watchers are closed one round of the loop later
            fds_after_stop = open_fds()
            new_fds = {
                fd: what for fd, what in fd_targets().items() if targets_before.get(fd) != what
            }
            watchers_after_stop = active_watchers()
            factory.release.set()
            deadline = time.monotonic() + 5
            while factory.woke < BLOCKED and time.monotonic() < deadline:
                gevent.sleep(0.01)
            gevent.sleep(0.1)
            woke = factory.woke
        watchers_at_end = active_watchers()
        fds_at_end = open_fds()

        # A second reactor on the same hub works.
        with reactor_of("gevent") as second:
            second_reply = _echo_once(second, b"second")

    assert took < 1.0, f"run() returned {took:.2f} s after stop() with {BLOCKED} handlers blocked"
    assert fds_after_stop == fds_before, (
        f"{fds_after_stop - fds_before} descriptors left open: {new_fds}"
    )
    assert watchers_after_stop == watchers_before, (
        f"{watchers_after_stop - watchers_before} loop watchers left active after stop"
    )
    # stop() ends the blocked handlers (GreenletExit) before shutdown disconnects: none wakes later.
    assert woke == 0, f"{woke} blocked handlers went on after the reactor stopped"
    assert watchers_at_end == watchers_before
    assert fds_at_end == fds_before
    assert factory.lost == BLOCKED, f"{factory.lost} of {BLOCKED} connectionLost at shutdown"
    assert not failures, [f.getTraceback() for f in failures]
    assert second_reply == b"second"


SIGTERM_CHILD = textwrap.dedent(
    """
    import gevent
    import gevent_reactor

    reactor = gevent_reactor.install()
    from twisted.internet.protocol import Factory, Protocol

    blocked = []

    class Blocker(Protocol):
        def dataReceived(self, data):
            blocked.append(self)
            print("blocked", len(blocked), flush=True)
            gevent.sleep(30)
            self.transport.write(b"late")

        def connectionLost(self, reason):
            print("lost", reason.type.__name__, flush=True)

    port = reactor.listenTCP(0, Factory.forProtocol(Blocker), interface="127.0.0.1")
    reactor.addSystemEventTrigger("before", "shutdown", print, "shutdown trigger", flush=True)
    reactor.callWhenRunning(print, "port", port.getHost().port, flush=True)
    reactor.run(installSignalHandlers=True)
    print("run returned", flush=True)
    """
)


def _lines_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float, seen: list) -> bool:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b"".join(seen)
    while marker not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                return marker in buffer
            seen.append(chunk)
            buffer += chunk
    return True


def test_sigterm_while_handlers_are_blocked_stops_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    seen: list[bytes] = []
    clients = []
    try:
        assert _lines_until(proc, b"\n", 30, seen) and b"port" in b"".join(seen), seen
        port = int(b"".join(seen).split(b"port")[1].split()[0])
        for _ in range(5):
            sock = connect(port)
            sock.sendall(b"x")
            clients.append(sock)
        assert _lines_until(proc, b"blocked 5", 10, seen), b"".join(seen)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(10)
        took = time.monotonic() - sent
        _lines_until(proc, b"run returned", 1, seen)
    finally:
        for sock in clients:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
    output = b"".join(seen).decode()
    assert returncode == 0, stderr
    assert took < 3.0, f"exit took {took:.2f} s after SIGTERM"
    assert "shutdown trigger" in output
    assert "run returned" in output
    assert output.count("lost ") == 5, output
    assert "Traceback" not in stderr, stderr


FORK_CHILD = textwrap.dedent(
    """
    import os, socket, sys, traceback
    import gevent
    from gevent_reactor import GeventReactor
    from twisted.internet.protocol import Factory, Protocol

    # The parent uses gevent and a reactor before it forks, as a pre-fork master may.
    parent = GeventReactor()
    parent.callLater(0.01, parent.stop)
    parent.run(installSignalHandlers=False)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)  # adoptStreamPort's contract: a non-blocking listening socket
    port = listener.getsockname()[1]

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            gevent.reinit()  # gevent's rule after a plain os.fork() in the child
            reactor = GeventReactor()
            served = []

            class Echo(Protocol):
                def dataReceived(self, data):
                    served.append(data)
                    gevent.sleep(0.01)  # input code may block in the child as anywhere
                    self.transport.write(b"child:" + data)
                    self.transport.loseConnection()

                def connectionLost(self, reason):
                    reactor.stop()

            reactor.adoptStreamPort(listener.fileno(), socket.AF_INET, Factory.forProtocol(Echo))
            listener.close()
            reactor.callLater(20, reactor.stop)
            reactor.run(installSignalHandlers=False)
            code = 0 if served == [b"hello"] else 3
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    listener.close()
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.settimeout(10)
    client.sendall(b"hello")
    reply = b""
    while True:
        chunk = client.recv(100)
        if not chunk:
            break
        reply += chunk
    client.close()
    _, status = os.waitpid(pid, 0)
    print("reply", reply.decode(), "exit", os.waitstatus_to_exitcode(status), flush=True)
    """
)


def test_fork_with_a_fresh_reactor_in_the_child_serves_and_exits(run_python) -> None:
    result = run_python(["-c", FORK_CHILD], timeout=40)
    assert result.returncode == 0, result.stderr
    assert "reply child:hello exit 0" in result.stdout, (result.stdout, result.stderr)
