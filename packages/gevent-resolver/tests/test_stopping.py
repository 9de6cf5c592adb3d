"""Cancelling or timing out stops the lookup itself: its greenlet is killed, on every reactor."""

from __future__ import annotations

import threading
import time

import gevent
import pytest
from gevent import GreenletExit
from gevent.resolver.blocking import Resolver as BlockingResolver
from twisted.internet.defer import CancelledError
from twisted.internet.error import DNSLookupError

from gevent_resolver import GeventResolver


class HangingResolver(BlockingResolver):
    """A gevent resolver whose lookups never end unless their greenlet is killed."""

    started = threading.Event()
    killed = threading.Event()

    def _hang(self):
        type(self).started.set()
        try:
            gevent.sleep(60)
        except GreenletExit:
            type(self).killed.set()
            raise

    def gethostbyname(self, *args, **kwargs):
        self._hang()

    def getaddrinfo(self, *args, **kwargs):
        self._hang()


@pytest.fixture
def hanging(reactor_thread):
    HangingResolver.started = threading.Event()
    HangingResolver.killed = threading.Event()
    resolver = reactor_thread.call(lambda: GeventResolver(reactor_thread.reactor, HangingResolver))
    yield resolver
    resolver.close()


def test_timeout_kills_the_lookup(reactor_thread, hanging):
    started = time.monotonic()
    with pytest.raises(DNSLookupError, match=r"address 'stuck\.test' not found: timed out"):
        reactor_thread.call(hanging.getHostByName, "stuck.test", (0.2,))
    assert time.monotonic() - started < 5
    assert HangingResolver.killed.wait(5)


def test_resolution_cancel_kills_the_lookup(reactor_thread, hanging, make_receiver):
    receiver = make_receiver()
    resolutions = []

    def start():
        resolutions.append(hanging.resolveHostName(receiver, "stuck.test", 80))

    reactor_thread.call(start)
    assert HangingResolver.started.wait(5)
    reactor_thread.call(resolutions[0].cancel)
    assert receiver.completed == 1 and receiver.addresses == []
    assert HangingResolver.killed.wait(5)


def test_get_host_by_name_cancel_kills_the_lookup(reactor_thread, hanging):
    deferreds = []
    outcome = []

    def start():
        d = hanging.getHostByName("stuck.test")
        d.addBoth(outcome.append)
        deferreds.append(d)

    reactor_thread.call(start)
    assert HangingResolver.started.wait(5)
    reactor_thread.call(deferreds[0].cancel)
    assert len(outcome) == 1 and outcome[0].check(CancelledError)
    assert HangingResolver.killed.wait(5)
