"""Bad input and wrong places: clear errors naming the argument; nothing else is disturbed."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import gevent
import pytest
from twisted.internet.protocol import Protocol

sys.path.insert(0, str(Path(__file__).parent))
import green_env

from gevent_deferred import GreenFactory, WrongContextError, connect, listen

pytestmark = pytest.mark.timeout(30)
env = green_env.env  # fixtures
watchdog = green_env.watchdog


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


@pytest.fixture
def conn(env):
    _, port = env.listen_protocol(Echo)
    c = connect(f"tcp:127.0.0.1:{port}")
    yield c
    c.abort()


def test_endpoint_arguments(env):
    with pytest.raises(ValueError, match=r"connect\(endpoint=\.\.\.\).*'nonsense:foo'"):
        connect("nonsense:foo")
    with pytest.raises(ValueError, match=r"connect\(endpoint=\.\.\.\)"):
        connect("tcp:127.0.0.1:notaport")
    with pytest.raises(TypeError, match=r"connect\(endpoint=\.\.\.\).*got int"):
        connect(42)
    with pytest.raises(TypeError, match=r"connect\(timeout=\.\.\.\).*-1"):
        connect("tcp:127.0.0.1:1", timeout=-1)
    with pytest.raises(TypeError, match=r"connect\(reactor=\.\.\.\)"):
        connect("tcp:127.0.0.1:1", reactor=object())
    with pytest.raises(ValueError, match=r"listen\(endpoint=\.\.\.\)"):
        listen("tcp:port=x", lambda c: None)
    with pytest.raises(TypeError, match=r"GreenFactory\(handler\).*got int"):
        listen("tcp:0", 42)
    with pytest.raises(TypeError, match="handler"):
        GreenFactory(None)


def test_no_reactor_installed(monkeypatch):
    import twisted.internet

    monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)
    monkeypatch.delattr(twisted.internet, "reactor", raising=False)
    with pytest.raises(RuntimeError, match=r"install\(background=True\)"):
        connect("tcp:127.0.0.1:1")


def test_sizes_and_data(conn):
    with pytest.raises(ValueError, match=r"recv\(bufsize=\.\.\.\) expects a size >= 0, got -1"):
        conn.recv(-1)
    with pytest.raises(TypeError, match=r"recv\(bufsize=\.\.\.\) expects an int, got str"):
        conn.recv("10")
    with pytest.raises(TypeError, match=r"read\(n=\.\.\.\)"):
        conn.read(1.5)
    with pytest.raises(TypeError, match=r"readline\(limit=\.\.\.\)"):
        conn.readline("a")
    with pytest.raises(ValueError, match=r"recv_into\(nbytes=\.\.\.\)"):
        conn.recv_into(bytearray(4), 10)
    with pytest.raises(ValueError, match=r"recv\(flags=\.\.\.\)"):
        conn.recv(10, socket.MSG_PEEK)
    with pytest.raises(TypeError, match=r"sendall\(data\) expects bytes.*got str"):
        conn.sendall("text")
    with pytest.raises(ValueError, match=r"shutdown\(how\)"):
        conn.shutdown(socket.SHUT_RD)
    with pytest.raises(TypeError, match=r"settimeout\(seconds=\.\.\.\) expects None or a number"):
        conn.settimeout(-1)
    with pytest.raises(TypeError, match=r"settimeout\(seconds=\.\.\.\).*got 'soon'"):
        conn.settimeout("soon")
    with pytest.raises(TypeError, match=r"settimeout\(seconds=\.\.\.\).*got True"):
        conn.settimeout(True)
    with pytest.raises(ValueError, match=r"makefile\(mode=\.\.\.\)"):
        conn.makefile("x")
    with pytest.raises(ValueError, match=r"buffering=0"):
        conn.makefile("r", buffering=0)
    # The connection is unharmed by all of it.
    conn.sendall(b"fine\n")
    assert conn.readline() == b"fine\n"


def test_write_after_close(conn):
    conn.close()
    with pytest.raises(OSError, match=r"sendall\(\): the connection was closed here"):
        conn.sendall(b"x")
    with pytest.raises(OSError, match=r"shutdown\(\)"):
        conn.shutdown(socket.SHUT_WR)
    conn.close()  # a second close does nothing


def test_blocking_from_the_hub_is_refused(conn):
    errors = []

    def in_hub():
        for call in (lambda: conn.recv(1), lambda: connect("tcp:127.0.0.1:1")):
            try:
                call()
            except WrongContextError as exc:
                errors.append(exc)

    gevent.get_hub().loop.run_callback(in_hub)
    green_env.wait_until(lambda: len(errors) == 2)
    assert all("hub" in str(e) for e in errors)
    conn.sendall(b"still\n")
    assert conn.readline() == b"still\n"


def test_blocking_in_geventreactors_context_is_refused(env, conn):
    if env.mode != green_env.IN_LOOP:
        pytest.skip("GeventReactor's own context only exists in-loop")
    errors = []

    def timed_call():
        try:
            conn.recv(1)
        except WrongContextError as exc:
            errors.append(exc)

    env.reactor.callLater(0, timed_call)
    green_env.wait_until(lambda: errors)
    assert "reactor's context" in str(errors[0])
