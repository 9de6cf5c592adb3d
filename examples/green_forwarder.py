"""
A port forwarder in gevent style whose far side is TLS, reached through a Twisted endpoint string.

Each local connection gets a greenlet that opens a verified TLS connection with
connect("tls:...") and copies bytes both ways. By default it also makes a certificate, starts a
TLS upper-casing server to forward to, sends a line through the forwarder with a plain gevent
socket, prints the answer and exits.

    python examples/green_forwarder.py                                # self-contained demo
    python examples/green_forwarder.py --serve 8080 tls:example.com:443   # forward 8080 there
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
import tempfile
from pathlib import Path

import geventreactor

geventreactor.install(background=True)

import gevent  # noqa: E402
from gevent import socket  # noqa: E402

from geventreactor import ReactorStoppedError, connect, listen  # noqa: E402


def copy(src, dst) -> None:
    """Copy until src ends (or either side is closed under us, or the program exits)."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except (OSError, ReactorStoppedError):
        pass


def forwarder_to(far: str):
    def forward(local) -> None:
        with connect(far, timeout=10) as remote:
            back = gevent.spawn(copy, remote, local)
            copy(local, remote)  # until the local client is done; then close the far side
        back.join()

    return forward


def make_certificate(directory: Path) -> tuple[Path, Path]:
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
    key_path, cert_path = directory / "key.pem", directory / "ca" / "cert.pem"
    cert_path.parent.mkdir()
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def upper(conn) -> None:
    for line in conn:
        conn.sendall(line.upper())


def demo() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = make_certificate(Path(tmp))
        tls_port = listen(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", upper)
        far = f"tls:localhost:{tls_port.getHost().port}:trustRoots={cert.parent}"
        local_port = listen("tcp:0:interface=127.0.0.1", forwarder_to(far))
        client = socket.create_connection(("127.0.0.1", local_port.getHost().port), timeout=10)
        client.sendall(b"through the tunnel\n")
        answer = client.makefile("rb").readline()
        client.close()
        print("far side (TLS, certificate verified) answered:", answer.decode().strip())


def serve(number: int, far: str) -> None:
    port = listen(f"tcp:{number}", forwarder_to(far))
    print(f"forwarding {port.getHost()} to {far}; Ctrl-C to stop")
    while True:
        gevent.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        demo()
