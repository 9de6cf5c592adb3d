"""A TLS server and client on GeventReactor, with a certificate the test makes."""

from __future__ import annotations

import datetime
import ipaddress
import os

import gevent
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import the_reactor, wait
from twisted.internet import defer, protocol, ssl

from geventreactor.pytest_plugin import greenlet_test


def make_certificate() -> tuple[bytes, bytes]:
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
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class UpperEcho(protocol.Protocol):
    def dataReceived(self, data):
        # Input code may block with gevent, under TLS too.
        gevent.sleep(0)
        self.transport.write(data.upper())


class Collect(protocol.Protocol):
    def __init__(self, expected: int, done: defer.Deferred):
        self.expected = expected
        self.done = done
        self.received = []
        self.size = 0

    def connectionMade(self):
        self.transport.write(self.factory.payload)

    def dataReceived(self, data):
        self.received.append(data)
        self.size += len(data)
        if self.size >= self.expected:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(b"".join(self.received))


@greenlet_test
def test_tls_round_trip_with_verified_certificate():
    reactor = the_reactor()
    key_pem, cert_pem = make_certificate()
    server_cert = ssl.PrivateCertificate.loadPEM(key_pem + cert_pem)
    port = reactor.listenSSL(
        0, protocol.Factory.forProtocol(UpperEcho), server_cert.options(), interface="127.0.0.1"
    )
    payload = os.urandom(50_000).hex().encode()  # lowercase hex, 100 KB
    done = defer.Deferred()
    factory = protocol.ClientFactory()
    factory.payload = payload
    factory.protocol = lambda: Collect(len(payload), done)
    client_options = ssl.optionsForClientTLS(
        "localhost", trustRoot=ssl.Certificate.loadPEM(cert_pem)
    )
    connector = reactor.connectSSL("127.0.0.1", port.getHost().port, factory, client_options)
    try:
        assert wait(done) == payload.upper()
    finally:
        connector.disconnect()
        wait(port.stopListening())


@greenlet_test
def test_tls_client_rejects_unknown_certificate():
    reactor = the_reactor()
    key_pem, cert_pem = make_certificate()
    _, other_cert_pem = make_certificate()
    server_cert = ssl.PrivateCertificate.loadPEM(key_pem + cert_pem)
    port = reactor.listenSSL(
        0, protocol.Factory.forProtocol(UpperEcho), server_cert.options(), interface="127.0.0.1"
    )
    done = defer.Deferred()
    factory = protocol.ClientFactory()
    factory.payload = b"secret"
    factory.protocol = lambda: Collect(6, done)
    client_options = ssl.optionsForClientTLS(
        "localhost", trustRoot=ssl.Certificate.loadPEM(other_cert_pem)
    )
    reactor.connectSSL("127.0.0.1", port.getHost().port, factory, client_options)
    try:
        assert wait(done) == b""  # the handshake failed: nothing came back
    finally:
        wait(port.stopListening())
