"""A twisted.names DNS server on GeventReactor, queried by Twisted's client and by a gevent socket."""

from __future__ import annotations

from gevent import socket
from helpers import the_reactor, wait
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.names import client, common, dns, error, server

from geventreactor.pytest_plugin import greenlet_test

RECORDS = {
    b"app.test": [dns.Record_A("192.0.2.7", ttl=60)],
    b"mail.app.test": [dns.Record_A("192.0.2.8", ttl=60)],
    b"txt.app.test": [dns.Record_TXT(b"hello from twisted.names", ttl=60)],
}


class TableResolver(common.ResolverBase):
    def _lookup(self, name, cls, type, timeout):
        records = [r for r in RECORDS.get(name.lower(), []) if r.TYPE == type]
        if name.lower() not in RECORDS:
            return defer.fail(error.DomainError(name))
        answers = [dns.RRHeader(name, r.TYPE, dns.IN, r.ttl, r, auth=True) for r in records]
        return defer.succeed((answers, [], []))


def start_server():
    reactor = the_reactor()
    factory = server.DNSServerFactory(authorities=[TableResolver()])
    # The kernel picks a free UDP port; the same number may be taken for TCP (a listener or a
    # connection of another process): then another UDP port is taken.
    for _attempt in range(20):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        try:
            tcp = reactor.listenTCP(udp.getHost().port, factory, interface="127.0.0.1")
        except CannotListenError:
            udp.stopListening()
            continue
        return udp, tcp
    raise RuntimeError("no port on 127.0.0.1 was free for both UDP and TCP")


@greenlet_test
def test_twisted_client_resolver():
    udp, tcp = start_server()
    resolver = client.Resolver(servers=[("127.0.0.1", udp.getHost().port)], reactor=the_reactor())
    try:
        answers, _, _ = wait(resolver.lookupAddress("app.test"))
        assert [a.payload.dottedQuad() for a in answers] == ["192.0.2.7"]
        answers, _, _ = wait(resolver.lookupText("txt.app.test"))
        assert answers[0].payload.data == [b"hello from twisted.names"]
        try:
            wait(resolver.lookupAddress("nowhere.test"))
        except error.DNSNameError:
            pass
        else:
            raise AssertionError("expected NXDOMAIN")
    finally:
        wait(defer.maybeDeferred(udp.stopListening))
        wait(defer.maybeDeferred(tcp.stopListening))


@greenlet_test
def test_raw_query_bytes_from_a_gevent_socket():
    udp, tcp = start_server()
    try:
        query = dns.Message(id=4242, recDes=True)
        query.addQuery(b"mail.app.test", dns.A)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(query.toStr(), ("127.0.0.1", udp.getHost().port))
            raw, _ = s.recvfrom(4096)
        answer = dns.Message()
        answer.fromStr(raw)
        assert raw[:2] == (4242).to_bytes(2, "big")
        assert answer.answer and answer.answers[0].payload.dottedQuad() == "192.0.2.8"
        # Over TCP too: a 2-byte length prefix, then the same message format.
        with socket.create_connection(("127.0.0.1", tcp.getHost().port), timeout=5) as s:
            data = query.toStr()
            s.sendall(len(data).to_bytes(2, "big") + data)
            size = int.from_bytes(s.recv(2), "big")
            body = b""
            while len(body) < size:
                body += s.recv(size - len(body))
        answer = dns.Message()
        answer.fromStr(body)
        assert answer.answers[0].payload.dottedQuad() == "192.0.2.8"
    finally:
        wait(defer.maybeDeferred(udp.stopListening))
        wait(defer.maybeDeferred(tcp.stopListening))
