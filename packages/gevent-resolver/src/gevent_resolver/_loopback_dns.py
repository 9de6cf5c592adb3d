"""A real DNS server on loopback, for tests and benchmarks: ``twisted.names`` in its own thread.

It runs on its own Twisted reactor (epoll where there is one) in its own real OS thread, so code
under test may use any reactor, or none, in the calling thread.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.names import authority, common, dns, error, server
from twisted.python.failure import Failure

# Real thread primitives even after gevent.monkey.patch_all(): the server must not be a greenlet.
from gevent_deferred._threads import allocate_lock, start_new_thread

ZONE = "gevent-resolver.test"

#: Records of the default zone, by name relative to ``ZONE`` (documentation addresses only).
DEFAULT_RECORDS: Mapping[str, Sequence[tuple[str, str]]] = {
    "www": [("A", "192.0.2.10"), ("AAAA", "2001:db8::10")],
    "ipv4": [("A", "192.0.2.11")],
    "ipv6": [("AAAA", "2001:db8::11")],
    "alias": [("CNAME", "www")],
    # For connecting: a name of this machine that only this server knows.
    "loopback": [("A", "127.0.0.1")],
    "many": [("A", "192.0.2.21"), ("A", "192.0.2.22"), ("A", "192.0.2.23")],
    # "bücher", IDNA-encoded: what an internationalised name is looked up as.
    "xn--bcher-kva": [("A", "192.0.2.30")],
}

#: Names the server receives but never answers (for timeouts and cancellation).
DEFAULT_SILENT = ("silent",)


def _record(kind: str, value: str) -> Any:
    if kind == "A":
        return dns.Record_A(value)
    if kind == "AAAA":
        return dns.Record_AAAA(value)
    if kind == "CNAME":
        return dns.Record_CNAME(f"{value}.{ZONE}".encode())
    raise ValueError(f"records may hold A, AAAA or CNAME records, got {kind!r}")


class _Zone(authority.FileAuthority):
    """An authority built from a mapping instead of a zone file."""

    def __init__(self, records: Mapping[str, Sequence[tuple[str, str]]]) -> None:
        self._records_in = records
        super().__init__(None)

    def loadFile(self, filename: object) -> None:
        zone = ZONE.encode()
        soa = dns.Record_SOA(
            mname=b"ns." + zone, rname=b"admin." + zone, serial=1, minimum=60, expire=60
        )
        zone_records: dict[bytes, list[Any]] = {zone: [soa]}
        for name, records in self._records_in.items():
            key = f"{name}.{ZONE}".encode().lower()
            zone_records.setdefault(key, []).extend(_record(k, v) for k, v in records)
        # FileAuthority declares both as None until a zone file is loaded.
        self.soa = (zone, soa)  # type: ignore[assignment]
        self.records = zone_records  # type: ignore[assignment]


class _Front(common.ResolverBase):
    """First in the chain: counts every query and swallows the silent names' queries."""

    def __init__(self, silent: set[bytes], queries: Counter[str]) -> None:
        super().__init__()
        self._silent = silent
        self._queries = queries

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any = None) -> Any:
        self._queries[name.decode("ascii", "replace").lower()] += 1
        if name.lower() in self._silent:
            # Never fires: the server sends no answer at all, as a dead server would.
            return defer.Deferred()
        # Not ours: the chain moves on to the zone.
        return defer.fail(Failure(error.DomainError(name)))


class LoopbackDNSServer:
    """An authoritative ``twisted.names`` server for ``ZONE`` on 127.0.0.1, UDP and TCP on one port.

    ``records`` maps names relative to the zone to ``(type, value)`` pairs (A, AAAA, CNAME whose
    value is relative to the zone); any other name in the zone is NXDOMAIN; ``silent`` names are
    never answered. ``queries`` counts the questions received per absolute name.
    Use as a context manager or call ``start()``/``stop()``.
    """

    zone = ZONE

    def __init__(
        self,
        records: Mapping[str, Sequence[tuple[str, str]]] = DEFAULT_RECORDS,
        silent: Sequence[str] = DEFAULT_SILENT,
    ) -> None:
        self.records = records
        self.silent = tuple(silent)
        self.queries: Counter[str] = Counter()
        self.port: int | None = None
        self._reactor: Any = None
        self._done: Any = None

    def name(self, relative: str) -> str:
        """The absolute name of ``relative`` in the zone. Never blocks."""
        return f"{relative}.{ZONE}"

    def ares_options(self) -> dict[str, Any]:
        """Options for gevent's c-ares resolver that point it at this server only. Never blocks."""
        if self.port is None:
            raise RuntimeError("the server is not running; call start() first")
        return {"servers": ["127.0.0.1"], "udp_port": self.port, "tcp_port": self.port}

    def start(self, timeout: float = 10.0) -> int:
        """Start the server thread; return the port once it listens.

        Blocks the current greenlet, and its whole OS thread, for at most ``timeout`` seconds.
        Must not be called from the hub. Callable from any thread.
        """
        self._reactor = reactor = _make_reactor()
        silent = {self.name(s).encode().lower() for s in self.silent}
        factory = server.DNSServerFactory(
            authorities=[_Front(silent, self.queries), _Zone(self.records)]
        )
        factory.noisy = False
        for _attempt in range(20):
            udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
            port = udp.getHost().port
            _grow_receive_buffer(udp.socket)
            try:
                reactor.listenTCP(port, factory, interface="127.0.0.1")
            except Exception:
                # Someone holds that TCP port: try another UDP port.
                udp.stopListening()
                continue
            break
        else:
            raise RuntimeError("no port on 127.0.0.1 was free for both UDP and TCP")
        self.port = port
        started = allocate_lock()
        started.acquire()
        self._done = allocate_lock()
        self._done.acquire()
        reactor.callWhenRunning(started.release)
        start_new_thread(self._run, (reactor, self._done))
        if not started.acquire(True, timeout):
            raise TimeoutError(f"the DNS server's reactor did not start within {timeout} s")
        return port

    @staticmethod
    def _run(reactor: Any, done: Any) -> None:
        try:
            reactor.run(installSignalHandlers=False)
        finally:
            done.release()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and join its thread.

        Blocks the current greenlet, and its whole OS thread, for at most ``timeout`` seconds.
        Must not be called from the hub. Callable from any thread.
        """
        reactor, self._reactor = self._reactor, None
        if reactor is None:
            return
        reactor.callFromThread(reactor.stop)
        if not self._done.acquire(True, timeout):
            raise TimeoutError(f"the DNS server's reactor did not stop within {timeout} s")

    def __enter__(self) -> LoopbackDNSServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _grow_receive_buffer(sock: socket.socket) -> None:
    # A burst of questions (c-ares sends 2,000 at once for 1,000 lookups) overflows the default
    # buffer (~200 datagrams) and the kernel drops the rest: the resolver under test would wait
    # for retries that measure the server's buffer, not the resolver.
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 8 * 1024 * 1024)
            return
        except OSError:
            continue


def _make_reactor() -> Any:
    # A private reactor instance, never the global one: the caller may be using that.
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:
        from twisted.internet.selectreactor import SelectReactor

        return SelectReactor()
    return EPollReactor()
