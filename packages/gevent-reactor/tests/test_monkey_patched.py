"""A program that calls gevent.monkey.patch_all() first, then installs the reactor (subprocess)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import json
    import threading
    import time

    import gevent_reactor

    reactor = gevent_reactor.install()

    from twisted.internet import protocol, threads
    from twisted.internet.defer import Deferred, DeferredList

    real_ident = monkey.get_original("threading", "get_ident")
    real_sleep = monkey.get_original("time", "sleep")
    main_ident = real_ident()
    report = {}


    class Echo(protocol.Protocol):
        def dataReceived(self, data):
            self.transport.write(data)


    class Client(protocol.Protocol):
        def connectionMade(self):
            self.transport.write(b"round trip")

        def dataReceived(self, data):
            self.factory.reply.callback(data.decode())
            self.transport.loseConnection()


    def in_thread():
        # A call that really blocks its OS thread, as a C library call would.
        real_sleep(0.5)
        return real_ident() != main_ident


    def main():
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
        factory = protocol.ClientFactory.forProtocol(Client)
        factory.reply = Deferred()
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        factory.reply.addCallback(lambda data: report.__setitem__("echo", data))
        thread_d = threads.deferToThread(in_thread)
        thread_d.addCallback(lambda real: report.__setitem__("real_thread", real))
        # A timer due while the thread function blocks: late by ~0.5 s if that blocked the reactor.
        scheduled = time.monotonic()
        reactor.callLater(
            0.05, lambda: report.__setitem__("timer_late", time.monotonic() - scheduled - 0.05)
        )
        both = DeferredList([factory.reply, thread_d], fireOnOneErrback=True)
        both.addErrback(lambda f: report.__setitem__("error", f.getTraceback()))
        both.addBoth(lambda _: reactor.callLater(0.1, reactor.stop))


    reactor.callWhenRunning(main)
    reactor.callLater(10, lambda: (report.__setitem__("timeout", True), reactor.stop()))
    reactor.run()
    print("REPORT " + json.dumps(report), flush=True)
    """
)


@pytest.fixture(scope="module")
def patched_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    import json
    import subprocess
    import sys

    script = Path(tmp_path_factory.mktemp("patched")) / "patched_program.py"
    script.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :]), done.stderr


def test_echo_and_defer_to_thread_work_after_patch_all(patched_run: tuple[dict, str]) -> None:
    report, stderr = patched_run
    assert "timeout" not in report, stderr
    assert "error" not in report, report.get("error")
    assert report["echo"] == "round trip"
    # deferToThread delivers its result (see the next tests for where it ran).
    assert "real_thread" in report


def test_defer_to_thread_uses_a_real_os_thread_after_patch_all(
    patched_run: tuple[dict, str],
) -> None:
    report, _ = patched_run
    assert report["real_thread"] is True
    assert report["timer_late"] < 0.3


def test_no_error_at_shutdown_after_patch_all(patched_run: tuple[dict, str]) -> None:
    _, stderr = patched_run
    assert "ReactorContextBlockingError" not in stderr
    assert "Traceback" not in stderr
