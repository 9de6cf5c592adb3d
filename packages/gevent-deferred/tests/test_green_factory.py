"""GreenFactory and listen(): a greenlet per connection, in both situations."""

from __future__ import annotations

import sys
from pathlib import Path

import gevent
import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocolFactory, IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

sys.path.insert(0, str(Path(__file__).parent))
import green_env
from green_env import wait_until

from gevent_deferred import GreenFactory, ReactorStoppedError, connect, listen
from gevent_deferred._green_protocol import GreenProtocol

pytestmark = pytest.mark.timeout(30)
env = green_env.env  # fixtures
watchdog = green_env.watchdog


@pytest.fixture
def logged():
    failures = []

    def observer(event):
        if event.get("log_failure") is not None:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observer)


def test_interfaces():
    proto = GreenProtocol(lambda kind, value: None)
    assert verifyObject(IHalfCloseableProtocol, proto)
    assert verifyObject(IPushProducer, proto)
    assert verifyObject(IProtocolFactory, GreenFactory(lambda conn: None))


def test_chat_between_green_clients_and_a_green_server(env):
    members = []

    def chat(conn):
        members.append(conn)
        try:
            for line in conn:
                for other in list(members):
                    if other is not conn:
                        other.sendall(line)
        finally:
            members.remove(conn)

    port = listen("tcp:0:interface=127.0.0.1", chat)
    address = f"tcp:127.0.0.1:{port.getHost().port}"
    alice, bob = connect(address), connect(address)
    wait_until(lambda: len(members) == 2)
    alice.sendall(b"hi bob\n")
    assert bob.readline() == b"hi bob\n"
    bob.sendall(b"hi alice\n")
    assert alice.readline() == b"hi alice\n"
    alice.close()
    wait_until(lambda: len(members) == 1)
    bob.close()
    env.call(port.stopListening)


def test_handler_return_closes_and_failure_aborts_only_its_connection(env, logged):
    def handler(conn):
        line = conn.readline()
        if line == b"fail\n":
            raise ValueError("handler failed on purpose")
        conn.sendall(b"ok " + line)

    port = listen("tcp:0:interface=127.0.0.1", handler)
    address = f"tcp:127.0.0.1:{port.getHost().port}"
    failing, fine = connect(address), connect(address)
    failing.sendall(b"fail\n")
    fine.sendall(b"work\n")
    assert fine.read() == b"ok work\n"  # served, then closed cleanly when the handler returned
    fine.close()
    assert fine.reason.check(ConnectionDone)
    with pytest.raises(Exception) as info:
        failing.read()
    assert not isinstance(info.value, AssertionError)
    wait_until(lambda: logged)
    assert "handler failed on purpose" in str(logged[0]["log_failure"].value)
    assert "aborted" in logged[0]["log_format"]
    env.call(port.stopListening)


def test_killing_a_handler_greenlet_aborts_its_connection(env):
    handlers = []

    def handler(conn):
        handlers.append(gevent.getcurrent())
        conn.recv(10)

    port = listen("tcp:0:interface=127.0.0.1", handler)
    conn = connect(f"tcp:127.0.0.1:{port.getHost().port}")
    wait_until(lambda: handlers)
    handlers[0].kill(timeout=5)
    wait_until(lambda: conn.reason is not None)
    assert not conn.reason.check(ConnectionDone)
    env.call(port.stopListening)


def test_green_factory_with_listen_tcp_and_a_twisted_client(env):
    def upper(conn):
        conn.sendall(conn.readline().upper())

    factory = GreenFactory(upper, reactor=env.reactor)
    port = env.listen_tcp(factory)
    received = []

    class Client(Protocol):
        def connectionMade(self):
            self.transport.write(b"twisted client\n")

        def dataReceived(self, data):
            received.append(data)

    client_factory = ClientFactory.forProtocol(Client)
    env.call(env.reactor.connectTCP, "127.0.0.1", port, client_factory)
    wait_until(lambda: b"".join(received) == b"TWISTED CLIENT\n")


def test_one_greenlet_reads_while_another_writes(env):
    def echo(conn):
        while data := conn.recv(65536):
            conn.sendall(data)

    port = listen("tcp:0:interface=127.0.0.1", echo)
    conn = connect(f"tcp:127.0.0.1:{port.getHost().port}")
    total = 4 * 1024 * 1024

    def writer():
        for _ in range(total // 65536):
            conn.sendall(b"r" * 65536)
        conn.shutdown(__import__("socket").SHUT_WR)

    w = gevent.spawn(writer)
    assert len(conn.read()) == total
    w.get(timeout=5)
    conn.close()


def test_reactor_shutdown_reaches_blocked_handlers(env, logged):
    outcomes = []

    def handler(conn):
        try:
            conn.recv(10)
        except ReactorStoppedError as exc:
            outcomes.append(exc)
            raise

    listen("tcp:0:interface=127.0.0.1", handler)
    port = env.call(lambda: env.reactor.getReaders())  # any call: the port is up
    assert port is not None
    server = listen("tcp:0:interface=127.0.0.1", handler)
    conn = connect(f"tcp:127.0.0.1:{server.getHost().port}")
    wait_until(lambda: conn.getPeer() is not None)
    gevent.sleep(0.05)
    if env.mode == green_env.IN_LOOP:
        env.reactor.stop()
    else:
        env.reactor.callFromThread(env.reactor.stop)
    wait_until(lambda: outcomes)
    assert isinstance(outcomes[0], ReactorStoppedError)
    gevent.sleep(0.05)
    assert not logged  # a stopping reactor is not the handler's failure
