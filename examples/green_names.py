"""
A gevent program using twisted.names (DNS), with a reactor that runs itself.

It serves a few A records with twisted.names on 127.0.0.1 (a random UDP port), then looks them up
from many greenlets at once with twisted.names' client, each waiting with waitForDeferred.
Nothing calls reactor.run().

    python examples/green_names.py
"""

from __future__ import annotations

import geventreactor

reactor = geventreactor.install(background=True)

import gevent  # noqa: E402
from twisted.internet import defer  # noqa: E402
from twisted.names import client, common, dns, server  # noqa: E402

from geventreactor import waitForDeferred  # noqa: E402


class Records(common.ResolverBase):
    """hostN.example -> 10.0.0.N, for N < 256."""

    def _lookup(self, name, cls, type, timeout):
        label = name.decode().split(".")[0]
        if type == dns.A and label.startswith("host") and label[4:].isdigit():
            number = int(label[4:]) % 256
            answer = dns.RRHeader(name, dns.A, ttl=60, payload=dns.Record_A(f"10.0.0.{number}"))
            return defer.succeed(([answer], [], []))
        return defer.fail(dns.DomainError(name))


def lookup(resolver, i: int) -> str:
    answers, _, _ = waitForDeferred(resolver.lookupAddress(f"host{i}.example"), timeout=5)
    return answers[0].payload.dottedQuad()


if __name__ == "__main__":
    udp = reactor.listenUDP(
        0,
        dns.DNSDatagramProtocol(server.DNSServerFactory(authorities=[Records()])),
        interface="127.0.0.1",
    )
    resolver = client.Resolver(servers=[("127.0.0.1", udp.getHost().port)], reactor=reactor)
    greenlets = [gevent.spawn(lookup, resolver, i) for i in range(20)]
    gevent.joinall(greenlets, raise_error=True, timeout=10)
    print("looked up", len(greenlets), "names; host7.example is", greenlets[7].value)
    try:
        waitForDeferred(resolver.lookupAddress("nowhere.invalid"), timeout=5)
    except Exception as exc:
        print("nowhere.invalid:", type(exc).__name__)
