"""Where lookups run: in-loop on a GeventReactor's hub, else on one shared helper OS thread."""

from __future__ import annotations

import os
import threading

import gevent
from gevent.resolver.blocking import Resolver as BlockingResolver
from twisted.internet.defer import gatherResults

from gevent_deferred import shared_hub_thread
from gevent_resolver import GeventResolver


class RecordingResolver(BlockingResolver):
    """gevent's blocking resolver, noting which thread and hub each lookup ran on."""

    seen: list[tuple[int, object]] = []

    def gethostbyname(self, *args, **kwargs):
        self.seen.append((threading.get_ident(), gevent.get_hub()))
        return super().gethostbyname(*args, **kwargs)


def test_lookups_run_in_loop_or_on_the_helper_thread(reactor_thread):
    RecordingResolver.seen = []
    resolver = reactor_thread.call(
        lambda: GeventResolver(reactor_thread.reactor, RecordingResolver)
    )
    assert reactor_thread.call(resolver.getHostByName, "localhost") == "127.0.0.1"
    [(thread, hub)] = RecordingResolver.seen
    if reactor_thread.kind == "gevent":
        # In-loop: a greenlet on the reactor's own hub, in the reactor's thread.
        assert thread == reactor_thread.ident
        assert hub is reactor_thread.reactor.hub
    else:
        assert thread == shared_hub_thread().thread_ident
        assert thread != reactor_thread.ident


def os_thread_count() -> int:
    # threading.enumerate() misses threads started with _thread, as the helper hub thread is.
    return len(os.listdir("/proc/self/task"))


def test_many_concurrent_lookups_use_no_more_threads(reactor_thread, ares_options, dns_server):
    resolver = reactor_thread.call(
        lambda: GeventResolver(reactor_thread.reactor, "ares", **ares_options)
    )
    name = dns_server.name("www")
    # Warm up: the helper thread (cross-thread) and the c-ares channel exist from here on.
    assert reactor_thread.call(resolver.getHostByName, name) == "192.0.2.10"
    before = os_thread_count()
    during = []

    def start_all():
        deferreds = [resolver.getHostByName(name) for _ in range(500)]
        during.append(os_thread_count())
        return gatherResults(deferreds)

    assert set(reactor_thread.call(start_all)) == {"192.0.2.10"}
    assert during[0] <= before
    assert os_thread_count() <= before
    resolver.close()
