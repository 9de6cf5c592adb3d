"""Lookups against the loopback DNS server through c-ares, on every reactor kind.

epoll/select/asyncio: cross-thread (lookups on the shared helper hub thread); gevent: in-loop.
"""

from __future__ import annotations

import time

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError
from twisted.internet.error import DNSLookupError

from gevent_resolver import GeventResolver


@pytest.fixture
def ares(reactor_thread, ares_options):
    resolver = reactor_thread.call(
        lambda: GeventResolver(reactor_thread.reactor, "ares", **ares_options)
    )
    yield resolver
    resolver.close()


def resolve(rt, resolver, receiver_class, name, *args, **kwargs):
    receiver = receiver_class()

    def start():
        resolver.resolveHostName(receiver, name, *args, **kwargs)
        return receiver.done

    rt.call(start)
    return receiver


# getHostByName


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("www", {"192.0.2.10"}),
        ("ipv4", {"192.0.2.11"}),
        ("alias", {"192.0.2.10"}),
        ("many", {"192.0.2.21", "192.0.2.22", "192.0.2.23"}),
    ],
)
def test_get_host_by_name(reactor_thread, ares, dns_server, relative, expected):
    name = dns_server.name(relative)
    assert reactor_thread.call(ares.getHostByName, name) in expected


def test_get_host_by_name_internationalised(reactor_thread, ares, dns_server):
    # Looked up as its IDNA form, xn--bcher-kva, which is what the server holds.
    before = dns_server.queries[dns_server.name("xn--bcher-kva")]
    assert reactor_thread.call(ares.getHostByName, "bücher." + dns_server.zone) == "192.0.2.30"
    assert dns_server.queries[dns_server.name("xn--bcher-kva")] > before


def test_get_host_by_name_ip_literal(reactor_thread, ares):
    assert reactor_thread.call(ares.getHostByName, "192.0.2.99") == "192.0.2.99"


@pytest.mark.parametrize("relative", ["missing", "ipv6"])
def test_get_host_by_name_unknown(reactor_thread, ares, dns_server, relative):
    name = dns_server.name(relative)
    with pytest.raises(DNSLookupError, match=f"address '{name}' not found"):
        reactor_thread.call(ares.getHostByName, name)


def test_get_host_by_name_timeout(reactor_thread, ares, dns_server):
    name = dns_server.name("silent")
    before = dns_server.queries[name]
    started = time.monotonic()
    with pytest.raises(DNSLookupError, match=r"timed out after 0\.5 seconds"):
        reactor_thread.call(ares.getHostByName, name, (0.2, 0.3))
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 3.0
    assert dns_server.queries[name] > before  # it asked; the server never answered


def test_get_host_by_name_cancel(reactor_thread, ares, dns_server):
    name = dns_server.name("silent")
    outcome = []

    def start_then_cancel():
        d = ares.getHostByName(name, (30,))
        d.addBoth(outcome.append)
        d.cancel()
        return None

    started = time.monotonic()
    reactor_thread.call(start_then_cancel)
    assert time.monotonic() - started < 3.0
    assert len(outcome) == 1 and outcome[0].check(CancelledError)


# resolveHostName


def test_resolve_host_name_both_families(reactor_thread, ares, dns_server, make_receiver):
    name = dns_server.name("www")
    receiver = resolve(reactor_thread, ares, make_receiver, name, 443)
    assert receiver.resolution.name == name
    assert receiver.completed == 1
    assert sorted(receiver.addresses, key=repr) == sorted(
        [IPv4Address("TCP", "192.0.2.10", 443), IPv6Address("TCP", "2001:db8::10", 443)], key=repr
    )


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ([IPv4Address], [IPv4Address("TCP", "192.0.2.10", 80)]),
        ([IPv6Address], [IPv6Address("TCP", "2001:db8::10", 80)]),
    ],
)
@pytest.mark.parametrize("relative", ["www", "alias"])
def test_resolve_host_name_one_family(
    reactor_thread, ares, dns_server, make_receiver, relative, types, expected
):
    # Through the CNAME, c-ares repeats addresses and mixes families: each address comes once,
    # of the asked-for type only.
    receiver = resolve(
        reactor_thread, ares, make_receiver, dns_server.name(relative), 80, addressTypes=types
    )
    assert receiver.addresses == expected
    assert receiver.completed == 1


def test_resolve_host_name_udp(reactor_thread, ares, dns_server, make_receiver):
    receiver = resolve(
        reactor_thread, ares, make_receiver, dns_server.name("ipv4"), 53, transportSemantics="UDP"
    )
    assert receiver.addresses == [IPv4Address("UDP", "192.0.2.11", 53)]


def test_resolve_host_name_internationalised(reactor_thread, ares, dns_server, make_receiver):
    receiver = resolve(reactor_thread, ares, make_receiver, "bücher." + dns_server.zone, 80)
    assert receiver.resolution.name == "xn--bcher-kva." + dns_server.zone
    assert receiver.addresses == [IPv4Address("TCP", "192.0.2.30", 80)]


def test_resolve_host_name_unknown(reactor_thread, ares, dns_server, make_receiver):
    receiver = resolve(reactor_thread, ares, make_receiver, dns_server.name("missing"), 80)
    assert receiver.addresses == []
    assert receiver.completed == 1


def test_resolve_host_name_cancel(reactor_thread, ares, dns_server, make_receiver):
    receiver = make_receiver()
    seen = []

    def start_then_cancel():
        resolution = ares.resolveHostName(receiver, dns_server.name("silent"), 80)
        assert receiver.resolution is resolution
        resolution.cancel()
        # Completed at once, with nothing; cancelling again does nothing.
        seen.append(receiver.completed)
        resolution.cancel()
        return receiver.done

    started = time.monotonic()
    reactor_thread.call(start_then_cancel)
    assert time.monotonic() - started < 3.0
    assert seen == [1]
    assert receiver.addresses == []
    # The killed lookup's answer (c-ares gives up after 1 s) must not complete it a second time.
    time.sleep(1.5)
    assert receiver.completed == 1


def test_cancel_after_completion_is_harmless(reactor_thread, ares, dns_server, make_receiver):
    receiver = make_receiver()
    resolutions = []

    def start():
        resolutions.append(ares.resolveHostName(receiver, dns_server.name("ipv4"), 80))
        return receiver.done

    reactor_thread.call(start)
    reactor_thread.call(resolutions[0].cancel)
    assert receiver.completed == 1
    assert receiver.addresses == [IPv4Address("TCP", "192.0.2.11", 80)]


def test_many_concurrent_lookups(reactor_thread, ares, dns_server, make_receiver):
    names = [dns_server.name(n) for n in ("www", "ipv4", "alias", "many", "missing")] * 40

    def start_all():
        from twisted.internet.defer import gatherResults

        return gatherResults([ares.getHostByName(n).addErrback(lambda f: None) for n in names])

    results = reactor_thread.call(start_all)
    assert results.count(None) == 40
    assert results[:4] == ["192.0.2.10", "192.0.2.11", "192.0.2.10", results[3]]


def test_close_then_lookup_again(reactor_thread, ares, dns_server):
    name = dns_server.name("ipv4")
    assert reactor_thread.call(ares.getHostByName, name) == "192.0.2.11"
    reactor_thread.call(ares.close)
    # A fresh c-ares channel is built for the next lookup.
    assert reactor_thread.call(ares.getHostByName, name) == "192.0.2.11"


def test_receiver_errors_are_logged(reactor_thread, ares, dns_server, make_receiver):
    from twisted.logger import globalLogPublisher

    class Broken(make_receiver):
        def addressResolved(self, address):
            raise ZeroDivisionError("receiver bug")

    failures = []

    def observe(event):
        failure = event.get("log_failure")
        if failure is not None and failure.check(ZeroDivisionError):
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        receiver = Broken()
        reactor_thread.call(ares.resolveHostName, receiver, dns_server.name("ipv4"), 80)
        deadline = time.monotonic() + 5
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures, "the receiver's exception was not logged"
    assert "resolution receiver" in failures[0]["log_format"]
