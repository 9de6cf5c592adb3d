"""Names from the hosts file (``localhost``), through gevent's 'thread' and 'block' resolvers,
each hub's own resolver, and c-ares (which reads /etc/hosts before asking a server)."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import DNSLookupError

from gevent_resolver import GeventResolver


@pytest.fixture(params=["thread", "block", None, "ares"])
def hosts_resolver(request, reactor_thread, ares_options):
    options = ares_options if request.param == "ares" else {}
    resolver = reactor_thread.call(
        lambda: GeventResolver(reactor_thread.reactor, request.param, **options)
    )
    yield resolver
    resolver.close()


def test_localhost_get_host_by_name(reactor_thread, hosts_resolver):
    assert reactor_thread.call(hosts_resolver.getHostByName, "localhost") == "127.0.0.1"


def test_localhost_resolve_host_name(reactor_thread, hosts_resolver, make_receiver):
    receiver = make_receiver()

    def start():
        hosts_resolver.resolveHostName(receiver, "localhost", 8080, [IPv4Address])
        return receiver.done

    reactor_thread.call(start)
    assert IPv4Address("TCP", "127.0.0.1", 8080) in receiver.addresses
    assert receiver.completed == 1


def test_unknown_name_from_the_system_resolver(reactor_thread):
    # RFC 6761: .invalid never resolves; with 'block' the system resolver says so quickly.
    resolver = reactor_thread.call(lambda: GeventResolver(reactor_thread.reactor, "block"))
    with pytest.raises(DNSLookupError, match="not found"):
        reactor_thread.call(resolver.getHostByName, "no-such-host.invalid")
