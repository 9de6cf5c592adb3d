"""spawnProcess children get processEnded with the right status, even beside gevent.subprocess."""

from __future__ import annotations

import signal
import sys

import gevent
import gevent.subprocess
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue

from gevent_reactor import GeventReactor


class _Ended(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[object] = Deferred()
        self.out = b""

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def processEnded(self, reason: object) -> None:
        self.ended.callback(reason.value)


def _spawn(reactor: GeventReactor, code: str) -> _Ended:
    protocol = _Ended()
    reactor.spawnProcess(protocol, sys.executable, [sys.executable, "-c", code], env=None)
    return protocol


def test_exit_code(reactor: GeventReactor, run_until) -> None:
    protocol = _spawn(reactor, "import sys; print('hi'); sys.exit(3)")
    reason = run_until(reactor, protocol.ended)
    assert isinstance(reason, ProcessTerminated)
    assert reason.exitCode == 3
    assert reason.signal is None
    assert protocol.out.strip() == b"hi"


def test_clean_exit(reactor: GeventReactor, run_until) -> None:
    reason = run_until(reactor, _spawn(reactor, "pass").ended)
    assert isinstance(reason, ProcessDone)
    assert reason.exitCode == 0


def test_killed_by_signal(reactor: GeventReactor, run_until) -> None:
    protocol = _spawn(reactor, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    reason = run_until(reactor, protocol.ended)
    assert isinstance(reason, ProcessTerminated)
    assert reason.signal == signal.SIGKILL
    assert reason.exitCode is None


def test_signal_process(reactor: GeventReactor, run_until) -> None:
    protocol = _Ended()
    process = reactor.spawnProcess(
        protocol,
        sys.executable,
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
        env=None,
    )
    original = protocol.outReceived

    def out_received(data: bytes) -> None:
        original(data)
        if b"up" in protocol.out and process.pid is not None:
            process.signalProcess("TERM")

    protocol.outReceived = out_received
    reason = run_until(reactor, protocol.ended, timeout=10)
    assert isinstance(reason, ProcessTerminated)
    assert reason.signal == signal.SIGTERM


def test_spawned_before_run(reactor: GeventReactor, run_until) -> None:
    # The child may well have exited before the reactor starts watching.
    protocol = _spawn(reactor, "import sys; sys.exit(7)")
    gevent.sleep(0.3)
    reason = run_until(reactor, protocol.ended)
    assert reason.exitCode == 7


def test_beside_gevent_subprocess(reactor: GeventReactor, run_until, spawn) -> None:
    # gevent's child watchers reap every child; Twisted's children must still get their status.
    def gevent_children() -> list[int]:
        procs = [
            gevent.subprocess.Popen(
                [sys.executable, "-c", f"import time, sys; time.sleep(0.{i}); sys.exit(1{i})"]
            )
            for i in range(1, 5)
        ]
        return [p.wait(timeout=10) for p in procs]

    def start() -> DeferredList:
        gevent_side = spawn(gevent_children)
        twisted_side = [
            _spawn(reactor, f"import time, sys; time.sleep(0.{i}); sys.exit(2{i})").ended
            for i in range(1, 5)
        ]
        return DeferredList([gevent_side, *twisted_side], fireOnOneErrback=True)

    done: Deferred[list[tuple[bool, object]]] = Deferred()
    reactor.callWhenRunning(lambda: start().chainDeferred(done))
    results = run_until(reactor, done, timeout=15)
    (_, gevent_codes), *twisted = results
    assert gevent_codes == [11, 12, 13, 14]
    assert [reason.exitCode for _, reason in twisted] == [21, 22, 23, 24]


def test_gevent_subprocess_started_first(reactor: GeventReactor, run_until) -> None:
    # gevent's SIGCHLD handling is already on when Twisted spawns.
    assert gevent.subprocess.run([sys.executable, "-c", "pass"], timeout=10).returncode == 0
    protocols = [_spawn(reactor, f"import sys; sys.exit({i})") for i in range(1, 4)]
    results = run_until(reactor, DeferredList([p.ended for p in protocols]), timeout=10)
    assert [reason.exitCode for _, reason in results] == [1, 2, 3]


def test_get_process_output_and_value(reactor: GeventReactor, run_until) -> None:
    code = "import sys; sys.stdout.write('out'); sys.stderr.write('err'); sys.exit(4)"
    done: Deferred[tuple[bytes, bytes, int]] = Deferred()
    reactor.callWhenRunning(
        lambda: getProcessOutputAndValue(
            sys.executable, ["-c", code], env=None, reactor=reactor
        ).chainDeferred(done)
    )
    assert run_until(reactor, done) == (b"out", b"err", 4)
