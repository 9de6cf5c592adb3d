"""run(), stop() and crash() log what Twisted's run loop logs, as twistd and trial users expect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import pytest
from twisted.internet.epollreactor import EPollReactor
from twisted.logger import globalLogPublisher

from gevent_reactor import GeventReactor


def _logged_while(run: Callable[[], None]) -> list[tuple[str, str, bool]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [
        (e.get("log_namespace", ""), e.get("log_format") or "", "log_failure" in e)
        for e in events
        if e.get("log_namespace", "").startswith("twisted.internet")
    ]


def _epoll() -> EPollReactor:
    return EPollReactor()


@pytest.mark.parametrize("how", ["stop", "crash"])
def test_run_logs_as_epoll_does(how: str, make_reactor) -> None:
    def run_with(reactor: Any) -> Callable[[], None]:
        def run() -> None:
            reactor.callLater(0.01, getattr(reactor, how))
            guard = gevent.spawn_later(5, reactor.crash)
            reactor.run(installSignalHandlers=False)
            guard.kill()

        return run

    epoll = _epoll()
    try:
        expected = _logged_while(run_with(epoll))
    finally:
        epoll.disconnectAll()
    got = _logged_while(run_with(make_reactor()))
    assert ("twisted.internet.base", "Main loop terminated.", False) in expected
    assert got == expected


def test_an_error_thrown_into_the_main_loop_is_logged_and_the_reactor_goes_on(
    reactor: GeventReactor,
) -> None:
    # gevent throws errors raised in the hub (a signal handler's SystemExit, a KeyboardInterrupt)
    # into the greenlet that runs the reactor; Twisted's mainLoop logs them and goes on.
    main = gevent.getcurrent()
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            reactor.stop()
        else:
            reactor.callLater(0.02, tick)

    def throw() -> None:
        main.throw(KeyboardInterrupt("thrown into the main loop"))

    reactor.callWhenRunning(tick)
    reactor.hub.loop.update_now()
    gevent.get_hub().loop.run_callback(lambda: None)
    thrower = gevent.spawn_later(0.01, throw)
    guard = gevent.spawn_later(5, reactor.crash)

    def run() -> None:
        reactor.run(installSignalHandlers=False)

    logged = _logged_while(run)
    guard.kill()
    thrower.kill()
    assert len(ticks) == 3
    assert ("twisted.internet.base", "Unexpected error in main loop.", True) in logged
    assert logged[-1] == ("twisted.internet.base", "Main loop terminated.", False)
