"""Installed on a reactor, the resolver serves reactor.resolve, connectTCP(hostname),
HostnameEndpoint and twisted.web's Agent, on every reactor kind."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import DNSLookupError
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from gevent_resolver import GeventResolver, install_gevent_resolver


@pytest.fixture
def installed(reactor_thread, ares_options):
    resolver = reactor_thread.call(
        lambda: install_gevent_resolver(reactor_thread.reactor, "ares", **ares_options)
    )
    yield resolver
    resolver.close()


def test_install_serves_both_interfaces(reactor_thread, installed):
    assert isinstance(installed, GeventResolver)
    assert reactor_thread.reactor.nameResolver is installed
    assert reactor_thread.reactor.resolver is installed


def test_reactor_resolve(reactor_thread, installed, dns_server):
    reactor = reactor_thread.reactor
    assert reactor_thread.call(reactor.resolve, dns_server.name("alias")) == "192.0.2.10"
    # The timeout reaches the resolver (Twisted's adapter would have dropped it).
    with pytest.raises(DNSLookupError, match="timed out"):
        reactor_thread.call(reactor.resolve, dns_server.name("silent"), (0.3,))


def test_install_name_resolver_alone_also_works(reactor_thread, ares_options, dns_server):
    reactor = reactor_thread.reactor

    def install():
        resolver = GeventResolver(reactor, "ares", **ares_options)
        reactor.installNameResolver(resolver)
        return resolver

    resolver = reactor_thread.call(install)
    assert reactor_thread.call(reactor.resolve, dns_server.name("www")) == "192.0.2.10"
    resolver.close()


def test_install_resolver_alone_also_works(reactor_thread, ares_options, dns_server):
    reactor = reactor_thread.reactor
    resolver = reactor_thread.call(lambda: GeventResolver(reactor, "ares", **ares_options))
    reactor_thread.call(reactor.installResolver, resolver)
    assert reactor_thread.call(reactor.resolve, dns_server.name("ipv4")) == "192.0.2.11"
    resolver.close()


class _Hello(Protocol):
    def connectionMade(self):
        self.transport.write(b"hello")
        self.transport.loseConnection()


class _Catch(Protocol):
    def __init__(self, done: Deferred):
        self.done = done
        self.data = b""

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.done.callback(self.data)


def _listen(reactor_thread):
    port = reactor_thread.call(
        lambda: reactor_thread.reactor.listenTCP(
            0, Factory.forProtocol(_Hello), interface="127.0.0.1"
        )
    )
    return port


def test_hostname_endpoint(reactor_thread, installed, dns_server):
    reactor = reactor_thread.reactor
    port = _listen(reactor_thread)

    def connect():
        done = Deferred()
        endpoint = HostnameEndpoint(reactor, dns_server.name("loopback"), port.getHost().port)
        factory = Factory.forProtocol(lambda: _Catch(done))
        return endpoint.connect(factory).addCallback(lambda _: done)

    assert reactor_thread.call(connect) == b"hello"
    reactor_thread.call(port.stopListening)


def test_connect_tcp_hostname(reactor_thread, installed, dns_server):
    reactor = reactor_thread.reactor
    port = _listen(reactor_thread)

    def connect():
        done = Deferred()
        factory = ClientFactory.forProtocol(lambda: _Catch(done))
        reactor.connectTCP(dns_server.name("loopback"), port.getHost().port, factory)
        return done

    assert reactor_thread.call(connect) == b"hello"
    reactor_thread.call(port.stopListening)


class _Page(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"resolved through gevent"


def test_web_agent(reactor_thread, installed, dns_server):
    reactor = reactor_thread.reactor
    port = reactor_thread.call(lambda: reactor.listenTCP(0, Site(_Page()), interface="127.0.0.1"))
    url = f"http://{dns_server.name('loopback')}:{port.getHost().port}/".encode()

    def fetch():
        return Agent(reactor).request(b"GET", url).addCallback(readBody)

    assert reactor_thread.call(fetch) == b"resolved through gevent"
    reactor_thread.call(port.stopListening)
