"""SIGTERM and SIGINT stop a GeventReactor run with installSignalHandlers=True (in a child)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent(
    """
    import signal
    import sys
    import gevent
    import gevent_reactor

    # As in a terminal. A test run started in the background by a non-interactive shell passes
    # SIGINT down ignored, and then Twisted (on every reactor) installs no SIGINT handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    reactor = gevent_reactor.install()
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0.01)

    gevent.spawn(ticker)
    reactor.addSystemEventTrigger("before", "shutdown", print, "shutdown trigger", flush=True)
    reactor.callWhenRunning(print, "running", flush=True)
    reactor.run(installSignalHandlers=True)
    print("run returned", bool(ticks), flush=True)
    """
)


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_reactor(signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        started = _read_until(proc, b"running", 30)
        assert b"running" in started, proc.stderr.read() if proc.poll() is not None else started
        # Let the reactor settle with nothing scheduled: the signal alone must wake it.
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signum)
        rest = _read_until(proc, b"run returned", 5)
        took = time.monotonic() - sent
        returncode = proc.wait(5)
        rest += proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
    assert returncode == 0, stderr
    assert b"shutdown trigger" in rest
    assert b"run returned True" in rest, stderr
    assert took < 3.0


def test_without_signal_handlers_sigterm_kills() -> None:
    # The contrast: with installSignalHandlers=False, SIGTERM is not turned into stop().
    child = CHILD.replace("installSignalHandlers=True", "installSignalHandlers=False")
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE)
    try:
        assert b"running" in _read_until(proc, b"running", 30)
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(5)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
    assert returncode == -signal.SIGTERM
    assert b"run returned" not in rest
