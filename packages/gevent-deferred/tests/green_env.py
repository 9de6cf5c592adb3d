"""Fixtures for the green-connection tests: both situations, Twisted servers, certificates.

Imported by the test_green_*.py files (they put this directory on sys.path).
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IPullProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from gevent_deferred import ReactorThread, blockingCallFromGreenlet

IN_LOOP = "in-loop"
CROSS_THREAD = "cross-thread"

# Stopped GeventReactors are kept alive: with libuv, one garbage-collected while a later one runs
# has crashed the process (see test_in_loop.py).
_finished: list[Any] = []


class Env:
    """One running reactor, in one of the two situations, and ways to act in its context."""

    def __init__(self, mode: str, reactor: Any) -> None:
        self.mode = mode
        self.reactor = reactor

    def call(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run f in the reactor's context (its thread, or a timed call in-loop); wait for it."""
        return blockingCallFromGreenlet(self.reactor, f, *args, **kwargs)

    def listen_tcp(self, factory: Any) -> int:
        port = self.call(self.reactor.listenTCP, 0, factory, interface="127.0.0.1")
        return port.getHost().port

    def listen_on(self, kind: str, factory: Any, tmp_path: Any) -> str:
        """Serve ``factory`` over ``kind`` ("tcp", "unix" or "tls" with a self-signed
        certificate); return the client endpoint description that reaches it."""
        if kind == "tcp":
            return f"tcp:127.0.0.1:{self.listen_tcp(factory)}"
        if kind == "unix":
            path = tmp_path / "green.sock"
            self.call(self.reactor.listenUNIX, str(path), factory)
            return f"unix:{path}"
        assert kind == "tls", kind
        key, cert, ca = make_certificate(tmp_path)
        endpoint = serverFromString(
            self.reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        )
        port = self.call(endpoint.listen, factory)
        return f"tls:localhost:{port.getHost().port}:trustRoots={ca}"

    def stop_reactor(self) -> None:
        """Ask the reactor to stop, from this greenlet; do not wait."""
        if self.mode == IN_LOOP:
            self.reactor.stop()
        else:
            self.reactor.callFromThread(self.reactor.stop)

    def listen_protocol(self, protocol: type[Protocol], **attrs: Any) -> tuple[Factory, int]:
        factory = Factory.forProtocol(protocol)
        factory.protocols = []  # type: ignore[attr-defined]
        for key, value in attrs.items():
            setattr(factory, key, value)
        return factory, self.listen_tcp(factory)


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {predicate}")
        gevent.sleep(0.005)


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    # A blocked test body (always in this greenlet) gets a Timeout instead of waiting for
    # pytest-timeout.
    timer = gevent.Timeout(15)
    timer.start()
    try:
        yield
    finally:
        timer.close()


def _install_for_test(monkeypatch: Any, reactor: Any) -> None:
    # Both places `from twisted.internet import reactor` looks (the package attribute first).
    import twisted.internet

    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    monkeypatch.setattr(twisted.internet, "reactor", reactor, raising=False)


@pytest.fixture(params=[IN_LOOP, CROSS_THREAD])
def env(request: Any, monkeypatch: Any) -> Iterator[Env]:
    """A running reactor: GeventReactor on this hub, or epoll in a ReactorThread; installed
    as the global reactor for the test (Twisted's TLS takes its clock from the global one)."""
    if request.param == IN_LOOP:
        # The in-loop situation needs gevent-reactor (which depends on this package).
        GeventReactor = pytest.importorskip("gevent_reactor").GeventReactor
        reactor = GeventReactor()
        _finished.append(reactor)
        _install_for_test(monkeypatch, reactor)
        runner = gevent.spawn(reactor.run, installSignalHandlers=False)
        wait_until(lambda: reactor.running)
        try:
            yield Env(IN_LOOP, reactor)
        finally:
            if reactor.running:
                reactor.stop()
            runner.join(5)
            assert runner.dead, "the reactor did not stop"
            reactor.disconnectAll()
            for call in reactor.getDelayedCalls():
                call.cancel()
    else:
        reactor = EPollReactor()
        _install_for_test(monkeypatch, reactor)
        rt = ReactorThread(reactor, name="green-test-epoll").start()
        try:
            yield Env(CROSS_THREAD, reactor)
        finally:
            rt.stop()


def make_certificate(tmp_path: Any) -> tuple[str, str, str]:
    """A self-signed certificate for localhost; returns (key path, cert path, CA directory)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (ca_dir / "ca.pem").write_bytes(cert_pem)
    cert_path = tmp_path / "cert.pem"
    cert_path.write_bytes(cert_pem)
    return str(key_path), str(cert_path), str(ca_dir)


@implementer(IPullProducer)
class Firehose(Protocol):
    """Writes ``factory.total`` bytes as fast as the transport takes them (a pull producer)."""

    def connectionMade(self) -> None:
        self.produced = 0
        self.factory.protocols.append(self)
        self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self.produced >= self.factory.total:
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            return
        self.transport.write(b"f" * 65536)
        self.produced += 65536

    def stopProducing(self) -> None:
        pass


@implementer(IStreamClientEndpoint)
class NeverConnects:
    """An endpoint whose attempt never completes (a fake of a slow network); records cancels."""

    def __init__(self) -> None:
        self.cancelled: list[bool] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        return Deferred(lambda d: self.cancelled.append(True))
