"""A GeventReactor that runs itself, in a greenlet of its hub, for programs written for gevent.

Such a program never calls ``reactor.run()``: the reactor starts when installed and stops at
interpreter exit (or when someone calls ``reactor.stop()``). The exit hook is registered with
``threading._register_atexit``: Python runs those before it joins non-daemon threads, and the
reactor's thread pool is made of such threads, which only its shutdown ends; an ``atexit``
function would run after that join and never.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

import gevent
from gevent.hub import Hub
from greenlet import getcurrent

from gevent_deferred._in_loop import installed_reactor

__all__ = ["install_background"]

#: How long interpreter exit waits for the reactor's shutdown (triggers, closing connections).
EXIT_TIMEOUT = 10.0


class BackgroundRun:
    """One reactor run in its own greenlet, and the hook that stops it at interpreter exit."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.greenlet: gevent.Greenlet | None = None
        self.thread_ident = threading.get_ident()

    def start(self) -> None:
        self.greenlet = gevent.Greenlet(self._run)
        self.greenlet.start()
        try:
            threading._register_atexit(self.stop_at_exit)  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError):
            # Already shutting down, or a Python without the hook: the best that is left.
            atexit.register(self.stop_at_exit)

    def _run(self) -> None:
        self.reactor.run(installSignalHandlers=False)

    def stop_at_exit(self) -> None:
        reactor = self.reactor
        greenlet = self.greenlet
        if greenlet is None or greenlet.dead:
            return
        if threading.get_ident() != self.thread_ident:
            # Not the reactor's thread: ask it, and do not wait (nothing here runs its hub).
            reactor.callFromThread(lambda: reactor.stop() if reactor.running else None)
            return
        if reactor.running:
            reactor.stop()
        elif not reactor._started:
            greenlet.kill(block=False)  # not yet running: nothing to shut down
        if getcurrent() is not reactor.hub:
            greenlet.join(EXIT_TIMEOUT)


_runs: weakref.WeakKeyDictionary[Any, BackgroundRun] = weakref.WeakKeyDictionary()


def install_background(hub: Hub | None = None) -> Any:
    """
    Install a ``GeventReactor`` as the global reactor and run it in a greenlet of ``hub``.

    Never blocks (the reactor starts at the hub's next turn). Called again, or after
    ``install()`` of a GeventReactor that has not run, returns the same reactor, running in the
    background. Raises ``ReactorAlreadyInstalledError`` naming the other reactor if one is
    installed, ``ReactorNotRestartable`` if the installed GeventReactor has run and stopped.
    """
    from twisted.internet.error import ReactorAlreadyInstalledError, ReactorNotRestartable
    from twisted.internet.main import installReactor

    from ._reactor import GeventReactor

    existing: object = installed_reactor()
    if existing is not None:
        if not isinstance(existing, GeventReactor):
            from ._install import _wrong_reactor

            raise _wrong_reactor(existing, "install GeventReactor (background=True)")
        if hub is not None and existing.hub is not hub:
            kind = type(existing)
            raise ReactorAlreadyInstalledError(
                f"install(background=True): another reactor is installed already: "
                f"{kind.__module__}.{kind.__qualname__} ({existing!r}); install GeventReactor "
                "before anything imports twisted.internet.reactor"
            )
        if existing in _runs or existing.running:
            return existing  # already running (in the background, or run by the program)
        if existing._startedBefore:
            raise ReactorNotRestartable(
                f"install(background=True): the installed {existing!r} has run and stopped; "
                "Twisted reactors cannot be restarted"
            )
        reactor = existing
    else:
        reactor = GeventReactor(hub)
        installReactor(reactor)
    run = _runs[reactor] = BackgroundRun(reactor)
    run.start()
    return reactor
