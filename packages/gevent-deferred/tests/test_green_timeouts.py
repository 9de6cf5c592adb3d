"""Timeouts, a killed connect(), and reactor shutdown while a call is blocked, in both situations."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import gevent
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from zope.interface import implementer

sys.path.insert(0, str(Path(__file__).parent))
import green_env
from green_env import NeverConnects, wait_until

from gevent_deferred import ReactorStoppedError, WaitTimeoutError, connect
from gevent_deferred._green_protocol import _live
from gevent_deferred._reactor_links import link_for

pytestmark = pytest.mark.timeout(30)
env = green_env.env  # fixtures
watchdog = green_env.watchdog


class Recorder(Protocol):
    """Keeps what it receives; echoes nothing."""

    def connectionMade(self):
        self.received = b""
        self.lost = None
        self.factory.protocols.append(self)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = reason


class Deaf(Recorder):
    """Never reads (its transport is paused from the start); records its end."""

    def connectionMade(self):
        super().connectionMade()
        self.transport.pauseProducing()


def fill(conn, chunk=b"q" * 65536):
    """sendall until the timeout set on ``conn`` expires; return the bytes handed over."""
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < 10:
        try:
            conn.sendall(chunk)
        except WaitTimeoutError:
            return sent + len(chunk)  # taken by the transport before the wait began
        sent += len(chunk)
    pytest.fail("sendall never waited for a peer that does not read")


def test_sendall_times_out_against_a_peer_that_does_not_read(env):
    factory, port = env.listen_protocol(Deaf)
    conn = connect(f"tcp:127.0.0.1:{port}", timeout=5)
    conn.settimeout(0.3)
    sent = fill(conn)
    # The connection stays usable: the next call times out the same way.
    with pytest.raises(WaitTimeoutError, match=r"sendall\(\) timed out after 0.3 s") as info:
        conn.sendall(b"q" * 65536)
    assert isinstance(info.value, TimeoutError)
    sent += 65536
    assert not conn.closed
    server = factory.protocols[0]
    env.call(server.transport.resumeProducing)
    conn.settimeout(10)
    conn.sendall(b"end")
    conn.shutdown(socket.SHUT_WR)
    wait_until(lambda: server.received.endswith(b"end"), timeout=10)
    # Nothing was lost or repeated: the data of each call that timed out had been handed to the
    # transport before the call waited.
    assert len(server.received) == sent + 3
    assert server.received.count(b"q") == sent
    conn.close()


def test_read_and_readline_time_out_and_keep_the_input(env):
    factory, port = env.listen_protocol(Recorder)
    conn = connect(f"tcp:127.0.0.1:{port}", timeout=5)
    wait_until(lambda: factory.protocols)
    server = factory.protocols[0]
    env.call(server.transport.write, b"partial line")
    conn.settimeout(0.2)
    with pytest.raises(WaitTimeoutError, match=r"readline\(\) timed out"):
        conn.readline()
    with pytest.raises(WaitTimeoutError, match=r"read\(\) timed out"):
        conn.read(100)  # twelve bytes are there, a hundred were asked for
    env.call(server.transport.write, b", ended\n")
    assert conn.readline() == b"partial line, ended\n"  # nothing was lost to the timeouts
    env.call(server.transport.write, b"0123456789")
    with pytest.raises(WaitTimeoutError):
        conn.read(11)
    assert conn.read(10) == b"0123456789"
    with pytest.raises(WaitTimeoutError, match=r"recv\(\) timed out"):
        conn.recv(1)
    conn.close()


def test_a_read_that_times_out_over_a_large_input_keeps_it_all(env):
    # More than the read limit is taken (flow control sees it read, the transport resumes), then
    # given back: the next reads get all of it, in order, and input keeps flowing after it.
    factory, port = env.listen_protocol(Recorder)
    conn = connect(f"tcp:127.0.0.1:{port}", timeout=5)
    wait_until(lambda: factory.protocols)
    server = factory.protocols[0]
    first = bytes(range(256)) * 4096  # 1 MiB
    env.call(server.transport.write, first)
    conn.settimeout(1)
    with pytest.raises(WaitTimeoutError):
        conn.read(2 * len(first))
    conn.settimeout(10)
    assert conn.read(len(first)) == first
    second = bytes(reversed(range(256))) * 4096
    env.call(server.transport.write, second)
    assert conn.read(len(second)) == second
    conn.close()


def test_close_times_out_then_aborts(env):
    factory, port = env.listen_protocol(Deaf)
    conn = connect(f"tcp:127.0.0.1:{port}", timeout=5)
    conn.settimeout(0.3)
    fill(conn)  # the transport holds data it cannot flush
    started = time.monotonic()
    conn.close()  # flushing cannot end: after the timeout it aborts, and returns
    took = time.monotonic() - started
    assert 0.2 <= took < 5, took
    assert conn.closed
    server = factory.protocols[0]
    env.call(server.transport.resumeProducing)  # to see the reset
    wait_until(lambda: server.lost is not None)
    assert server.lost.check(ConnectionLost)  # aborted, not a clean close
    wait_until(lambda: conn.reason is not None)


@implementer(IStreamClientEndpoint)
class ConnectsWhenTold:
    """Connects for real once ``go`` is called, whether or not the attempt was cancelled."""

    def __init__(self, reactor, port):
        self.endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        self.factory = None
        self.made = []

    def connect(self, factory):
        self.factory = factory
        return Deferred()  # no canceller: a cancel fails it, and the connection comes anyway

    def go(self):
        self.endpoint.connect(self.factory).addBoth(self.made.append)


def no_live_connections(env):
    return env.call(lambda: not _live.get(env.reactor))


def test_killing_connect_cancels_the_attempt(env):
    endpoint = NeverConnects()
    g = gevent.spawn(connect, endpoint, reactor=env.reactor)
    gevent.sleep(0.1)
    g.kill(timeout=5)
    assert g.dead and isinstance(g.value, gevent.GreenletExit)
    wait_until(lambda: endpoint.cancelled)
    wait_until(lambda: not link_for(env.reactor).pending)  # no wait left registered


def test_a_connection_made_after_connect_was_killed_is_dropped(env):
    factory, port = env.listen_protocol(Recorder)
    endpoint = ConnectsWhenTold(env.reactor, port)
    g = gevent.spawn(connect, endpoint, reactor=env.reactor)
    wait_until(lambda: endpoint.factory is not None)
    g.kill(timeout=5)
    env.call(endpoint.go)  # the network answers late
    wait_until(lambda: factory.protocols and factory.protocols[0].lost is not None)
    assert factory.protocols[0].received == b""
    assert factory.protocols[0].lost.check(ConnectionLost)  # aborted by the abandoned attempt
    wait_until(lambda: no_live_connections(env))
    wait_until(lambda: not link_for(env.reactor).pending)  # no wait left registered


def test_connect_blocked_when_the_reactor_stops(env):
    endpoint = NeverConnects()
    g = gevent.spawn(connect, endpoint, reactor=env.reactor, timeout=20)
    gevent.sleep(0.1)
    env.stop_reactor()
    with pytest.raises(ReactorStoppedError):
        g.get(timeout=5)
    with pytest.raises(ReactorStoppedError):
        connect(NeverConnects(), reactor=env.reactor, timeout=5)  # and every later one


def test_close_blocked_when_the_reactor_stops_returns(env):
    _, port = env.listen_protocol(Deaf)
    conn = connect(f"tcp:127.0.0.1:{port}", timeout=5)
    conn.settimeout(0.3)
    fill(conn)
    conn.settimeout(None)  # close() would wait for ever for a peer that never reads
    closer = gevent.spawn(conn.close)
    gevent.sleep(0.2)
    assert not closer.dead  # blocked, flushing
    env.stop_reactor()
    assert closer.get(timeout=5) is None  # returns: the reactor's shutdown ends the connection
    assert conn.closed
    with pytest.raises(OSError):
        conn.recv(1)
