"""Shared pieces of the fault, load and bad-input tests (test_faults_*.py).

Scenarios that Twisted's epoll reactor can also run are run on both: the server is a Twisted protocol
on the reactor under test, the clients run in a real OS thread with plain blocking sockets (an epoll
reactor never runs gevent greenlets), and the outcome of each reactor is checked the same way.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.monkey
import pytest
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.error import ReactorNotRunning
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from gevent_reactor import GeventReactor

# The clients below need the real socket module: the test process is not monkey-patched.
assert not gevent.monkey.is_module_patched("socket")

REACTORS = ["gevent", "epoll"]


def build_reactor(kind: str) -> Any:
    if kind == "gevent":
        return GeventReactor()
    if kind == "epoll":
        return EPollReactor()
    raise ValueError(f"kind: expected 'gevent' or 'epoll', got {kind!r}")


def cleanup_reactor(reactor: Any) -> None:
    # As Twisted's ReactorBuilder.unbuildReactor: nothing of this reactor may outlive the test.
    if reactor._started:
        reactor.crash()
    if isinstance(reactor, EPollReactor):
        for reader in list(reactor._internalReaders):
            reactor.removeReader(reader)
            reader.connectionLost(None)
        reactor._internalReaders.clear()
    reactor.disconnectAll()
    for call in reactor.getDelayedCalls():
        call.cancel()
    if reactor.threadpool is not None:
        reactor._stopThreadPool()
    if isinstance(reactor, EPollReactor):
        reactor._poller.close()
    else:
        assert not reactor._watching, "the reactor still watches the loop after cleanup"


@contextmanager
def reactor_of(kind: str) -> Iterator[Any]:
    """A fresh reactor of ``kind`` (gevent or epoll), cleaned up afterwards."""
    reactor = build_reactor(kind)
    try:
        yield reactor
    finally:
        cleanup_reactor(reactor)


def stop_soon(reactor: Any) -> None:
    """Stop ``reactor`` if it still runs.  Callable from any thread."""

    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    reactor.callFromThread(stop)


def run_with_client(reactor: Any, client: Callable[[], Any], timeout: float = 15.0) -> Any:
    """
    Run ``reactor`` while ``client()`` runs in a real OS thread; return what it returned.

    The reactor stops when the client returns; an exception in the client is raised here.  After
    ``timeout`` seconds a reactor timer crashes the reactor and the test fails.
    """
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["value"] = client()
        except BaseException as e:  # re-raised in the test's thread
            outcome["error"] = e
        finally:
            stop_soon(reactor)

    thread = threading.Thread(target=body, name="test-client", daemon=True)
    timed_out: list[bool] = []

    def watchdog() -> None:
        timed_out.append(True)
        reactor.crash()

    reactor.callWhenRunning(thread.start)
    guard = reactor.callLater(timeout, watchdog)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    thread.join(5)
    if timed_out:
        pytest.fail(f"the scenario did not finish within {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    assert "value" in outcome, "reactor.run() returned before the client finished"
    return outcome["value"]


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def recv_until_eof(sock: socket.socket, limit: int = 1 << 30) -> tuple[bytes, str]:
    """Everything ``sock`` receives until EOF; and how it ended: "eof", "reset" or "timeout"."""
    chunks = []
    size = 0
    while size < limit:
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        except TimeoutError:
            return b"".join(chunks), "timeout"
        if not chunk:
            return b"".join(chunks), "eof"
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), "limit"


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(1 << 16, size - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Wait in a plain thread (time.sleep) until ``predicate()`` holds; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def green_wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """As ``wait_for``, from a greenlet of the reactor's thread (gevent.sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.002)
    return True


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> dict[int, str]:
    """This process's open descriptors and what each one is (for leak reports)."""
    targets = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the descriptor listdir itself used, closed meanwhile
    return targets


def active_watchers() -> int:
    """Active watchers of this thread's loop (libev: activecnt; libuv: a walk of its handles)."""
    loop = gevent.get_hub().loop
    if hasattr(loop, "debug") and "libuv" in type(loop).__module__:
        return sum(1 for h in loop.debug() if h.active and not h.closing)
    return loop.activecnt


@contextmanager
def captured_failures() -> Iterator[list[Failure]]:
    """
    Failures logged while the block runs, through twisted.logger or the legacy log.err.

    (Legacy log.err events reach twisted.logger's observers with "failure" and "isError", not
    "log_failure": Twisted's epoll reactor logs handler errors that way.)
    """
    failures: list[Failure] = []

    def observer(event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is None and event.get("isError"):
            failure = event.get("failure")
        if failure is not None:
            failures.append(failure)

    globalLogPublisher.addObserver(observer)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observer)


def failures_of(failures: list[Any], exc_type: type[BaseException]) -> list[Any]:
    return [f for f in failures if f.check(exc_type)]
