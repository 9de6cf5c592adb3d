"""
Checked by mypy (``hatch run types``, listed in mypy.ini), never run: Twisted's own reactors and
GeventReactor are accepted where the public API takes a reactor.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.selectreactor import SelectReactor

from gevent_deferred import GreenFactory, ReactorThread, waitForDeferred
from gevent_deferred._reactor_protocol import TwistedReactor
from gevent_reactor import GeventReactor
from gevent_resolver import GeventResolver, install_gevent_resolver
from gevent_threadpool import GeventThreadPool


def reactors_are_accepted(d: Deferred[int]) -> int:
    ReactorThread(EPollReactor())
    ReactorThread(SelectReactor())
    GreenFactory(print, reactor=GeventReactor())
    GreenFactory(print, reactor=EPollReactor())
    GeventResolver(EPollReactor())
    install_gevent_resolver(SelectReactor())
    install_gevent_resolver(GeventReactor())
    GeventThreadPool(reactor=GeventReactor()).when_stopped(EPollReactor())
    return waitForDeferred(d, reactor=GeventReactor())


def not_a_reactor() -> None:
    wrong: TwistedReactor = object()  # type: ignore[assignment]
    del wrong
