"""GreenFactory and listen(): a greenlet per connection, in both situations."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import gevent
import gevent.event
import pytest
from gevent import socket as gsocket
from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IProtocolFactory,
    IPushProducer,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

sys.path.insert(0, str(Path(__file__).parent))
import green_env
from green_env import Firehose, wait_until

from gevent_deferred import GreenFactory, ReactorStoppedError, connect, listen
from gevent_deferred._green_protocol import READ_LIMIT, GreenProtocol

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


def upper_lines(conn):
    for line in conn:
        conn.sendall(line.upper())


def test_green_factory_on_an_adopted_listening_socket(env):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    factory = GreenFactory(upper_lines, reactor=env.reactor)
    # In the reactor's thread (a ReactorThread's reactor must not be touched from here).
    port = env.call(env.reactor.adoptStreamPort, listener.fileno(), socket.AF_INET, factory)
    listener.close()  # the reactor listens on its own copy of the descriptor
    number = port.getHost().port
    clients = [connect(f"tcp:127.0.0.1:{number}", timeout=5) for _ in range(3)]
    for i, conn in enumerate(clients):
        conn.sendall(b"adopted %d\n" % i)
    for i, conn in enumerate(clients):
        assert conn.readline() == b"ADOPTED %d\n" % i
        conn.close()
    env.call(port.stopListening)


def test_green_factory_on_an_adopted_connection(env):
    ours, theirs = gsocket.socketpair()
    ours.setblocking(False)
    factory = GreenFactory(upper_lines, reactor=env.reactor)
    env.call(env.reactor.adoptStreamConnection, ours.fileno(), socket.AF_UNIX, factory)
    ours.close()  # the reactor has its own copy
    theirs.sendall(b"one\ntwo\n")
    received = b""
    while received.count(b"\n") < 2:
        received += theirs.recv(100)
    assert received == b"ONE\nTWO\n"
    theirs.shutdown(socket.SHUT_WR)
    assert theirs.recv(100) == b""  # the handler's loop ended; its connection was closed
    theirs.close()


def test_green_factory_in_a_strports_service(env, tmp_path):
    # What a twistd plugin's makeService returns: a service that listens when started.
    path = tmp_path / "svc.sock"
    svc = strports.service(f"unix:{path}", GreenFactory(upper_lines, reactor=env.reactor))
    assert isinstance(svc, StreamServerEndpointService)
    parent = MultiService()
    svc.setServiceParent(parent)
    env.call(parent.startService)
    wait_until(path.exists)
    with connect(f"unix:{path}", timeout=5) as conn:
        conn.sendall(b"service\n")
        assert conn.readline() == b"SERVICE\n"
    env.call(parent.stopService)  # stops listening (a Deferred, waited for)
    assert not svc.running


# A twistd application: the one line a .tac file or a plugin's makeService adds.
TAC = textwrap.dedent(
    """
    from twisted.application import service, strports
    from gevent_deferred import GreenFactory

    def upper(conn):
        for line in conn:
            conn.sendall(line.upper())

    application = service.Application("green")
    strports.service({endpoint!r}, GreenFactory(upper)).setServiceParent(application)
    """
)
TWISTD = ["-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def test_green_factory_under_twistd(tmp_path):
    pytest.importorskip("gevent_reactor")  # twistd --reactor=gevent
    path = tmp_path / "twistd.sock"
    tac = tmp_path / "green.tac"
    tac.write_text(TAC.format(endpoint=f"unix:{path}"))
    log = tmp_path / "twistd.log"
    args = ["--reactor=gevent", "-n", "--pidfile=", "--logfile", str(log), "-y", str(tac)]
    proc = subprocess.Popen([sys.executable, *TWISTD, *args], cwd=tmp_path)
    try:
        wait_until(lambda: path.exists() or proc.poll() is not None, timeout=10)
        assert proc.poll() is None, log.read_text() if log.exists() else "no log"
        clients = []
        for i in range(3):
            client = gsocket.socket(socket.AF_UNIX)
            client.settimeout(5)
            client.connect(str(path))
            client.sendall(b"from twistd %d\n" % i)
            clients.append(client)
        for i, client in enumerate(clients):
            assert client.makefile("rb").readline() == b"FROM TWISTD %d\n" % i
            client.close()
        proc.terminate()
        # twistd stops its reactor, then ends with the signal it got, as twistd does.
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "GeventReactor" in text, text
    assert "Main loop terminated." in text, text  # a clean shutdown
    assert "Traceback" not in text, text


def test_a_handler_that_stops_reading_pushes_back_on_its_client(env):
    total = 64 * 1024 * 1024
    go = gevent.event.Event()
    served = []

    def handler(conn):
        served.append(conn)
        got = len(conn.read(1000))
        go.wait()  # the handler does not read for a while
        while data := conn.recv(1 << 20):
            got += len(data)
        served.append(got)

    port = env.listen_tcp(GreenFactory(handler, reactor=env.reactor))
    client = ClientFactory.forProtocol(Firehose)
    client.protocols = []
    client.total = total
    env.call(env.reactor.connectTCP, "127.0.0.1", port, client)
    wait_until(lambda: served and served[0]._consumed_total >= 1000)
    gevent.sleep(2)
    conn = served[0]
    produced = client.protocols[0].produced
    assert conn._buffered <= 2 * READ_LIMIT, conn._buffered  # memory stays bounded here...
    assert produced < total // 2, produced  # ...because the client was made to wait
    go.set()
    wait_until(lambda: len(served) == 2, timeout=10)
    assert served[1] == total
