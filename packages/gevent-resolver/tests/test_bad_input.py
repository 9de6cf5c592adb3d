"""Bad input fails at once, in the caller's frame, with an error naming the argument."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.selectreactor import SelectReactor

from gevent_resolver import GeventResolver, install_gevent_resolver


@pytest.fixture(scope="module")
def idle_reactor():
    # Never runs: every check below fails before a lookup could start.
    return SelectReactor()


@pytest.fixture
def resolver(idle_reactor):
    return GeventResolver(idle_reactor, "block")


@pytest.fixture
def receiver(make_receiver):
    return make_receiver()


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (b"www.example.test", TypeError, r"name must be a str \(a host name\), not bytes"),
        (None, TypeError, "name must be a str"),
        (42, TypeError, "name must be a str"),
        ("", ValueError, "name must be a non-empty host name"),
        ("BÜCHER.example.test", ValueError, "name must be a valid internationalised domain name"),
    ],
)
def test_get_host_by_name_bad_name(resolver, name, error, message):
    with pytest.raises(error, match=message):
        resolver.getHostByName(name)


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        ("5", TypeError, "timeout must be a sequence of seconds"),
        (5, TypeError, "timeout must be a sequence of seconds"),
        ((1, -2), ValueError, "non-negative numbers"),
        ((1, "2"), ValueError, "non-negative numbers"),
        ((float("nan"),), ValueError, "non-negative numbers"),
        ((0, 0), ValueError, "more than 0 seconds"),
    ],
)
def test_get_host_by_name_bad_timeout(resolver, timeout, error, message):
    with pytest.raises(error, match=message):
        resolver.getHostByName("www.example.test", timeout)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (b"www.example.test", TypeError, "hostName must be a str"),
        ("", ValueError, "hostName must be a non-empty host name"),
    ],
)
def test_resolve_host_name_bad_name(resolver, receiver, name, error, message):
    with pytest.raises(error, match=message):
        resolver.resolveHostName(receiver, name)
    assert receiver.resolution is None  # nothing started


@pytest.mark.parametrize(
    ("port", "error"),
    [
        (-1, ValueError),
        (65536, ValueError),
        ("80", TypeError),
        (80.0, TypeError),
        (True, TypeError),
    ],
)
def test_resolve_host_name_bad_port(resolver, receiver, port, error):
    with pytest.raises(error, match="portNumber must be an int from 0 to 65535"):
        resolver.resolveHostName(receiver, "www.example.test", port)


@pytest.mark.parametrize(
    ("types", "error"),
    [
        ([], ValueError),
        ([UNIXAddress], ValueError),
        ([IPv4Address, str], ValueError),
        ("IPv4Address", TypeError),
        (IPv4Address, TypeError),
    ],
)
def test_resolve_host_name_bad_address_types(resolver, receiver, types, error):
    with pytest.raises(error, match="addressTypes must be"):
        resolver.resolveHostName(receiver, "www.example.test", 80, types)


def test_resolve_host_name_accepts_any_collection_of_address_types(resolver, receiver):
    from gevent_resolver import _names

    assert _names.address_family((IPv6Address, IPv4Address)) == _names.address_family(None)


@pytest.mark.parametrize("semantics", ["SCTP", "tcp", None, 6])
def test_resolve_host_name_bad_transport(resolver, receiver, semantics):
    with pytest.raises(ValueError, match="transportSemantics must be 'TCP' or 'UDP'"):
        resolver.resolveHostName(receiver, "www.example.test", 80, None, semantics)


def test_resolve_host_name_bad_receiver(resolver):
    with pytest.raises(TypeError, match="resolutionReceiver must provide IResolutionReceiver"):
        resolver.resolveHostName(None, "www.example.test")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("nope", ValueError, "resolver must be one of 'ares', 'thread', 'block'"),
        ("no.such.module.Resolver", ValueError, "resolver 'no.such.module.Resolver' cannot be"),
        (5, TypeError, "resolver must be None, the name of a gevent resolver"),
    ],
)
def test_bad_resolver_name(idle_reactor, name, error, message):
    with pytest.raises(error, match=message):
        GeventResolver(idle_reactor, name)


def test_options_the_resolver_cannot_take(idle_reactor):
    with pytest.raises(TypeError, match=r"options \['servers'\] do not fit"):
        GeventResolver(idle_reactor, "thread", servers=["127.0.0.1"])


def test_not_a_reactor():
    expected = r"GeventResolver\(reactor=\.\.\.\) expects a Twisted reactor \(with callLater and "
    with pytest.raises(TypeError, match=expected + r"callFromThread\), got object"):
        GeventResolver(object(), "block")
    expected = r"install_gevent_resolver\(reactor=\.\.\.\) expects a Twisted reactor \(with "
    with pytest.raises(TypeError, match=expected + r"installNameResolver\) as IReactorPluggable"):
        install_gevent_resolver(object(), "block")
