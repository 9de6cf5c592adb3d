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
from typing import TYPE_CHECKING

import gevent
from gevent.hub import Hub
from greenlet import getcurrent

from gevent_deferred._checks import check_timeout
from gevent_deferred._in_loop import installed_reactor

from ._reactor_context import _ReactorContext

if TYPE_CHECKING:
    from ._reactor import GeventReactor

__all__ = ["install_background", "stop_background"]

#: How long interpreter exit waits for the reactor's shutdown (triggers, closing connections).
EXIT_TIMEOUT = 10.0


class BackgroundRun:
    """One reactor run in its own greenlet, and the hook that stops it at interpreter exit."""

    def __init__(self, reactor: GeventReactor) -> None:
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
        if threading.get_ident() != self.thread_ident:
            # Not the reactor's thread: ask it, and do not wait (nothing here runs its hub).
            reactor = self.reactor
            reactor.callFromThread(lambda: reactor.stop() if reactor.running else None)
            return
        self.stop(EXIT_TIMEOUT)

    def stop(self, timeout: float) -> bool:
        """
        Stop the reactor and wait at most C{timeout} seconds for its shutdown; True if it ended.

        A reactor whose run has not begun yet (installed during this hub turn) is started and
        stopped, so that its startup and shutdown triggers fire as they would after a longer run.
        """
        greenlet = self.greenlet
        reactor = self.reactor
        if greenlet is None or greenlet.dead:
            return True
        if reactor.running:
            reactor.stop()
        elif not reactor._started:
            reactor.callWhenRunning(reactor.stop)
        if getcurrent() is reactor.hub:
            return greenlet.dead  # nothing to wait with in the hub
        greenlet.join(timeout)
        if greenlet.dead:
            return True
        greenlet.kill(block=False)
        return False


_runs: weakref.WeakKeyDictionary[GeventReactor, BackgroundRun] = weakref.WeakKeyDictionary()


def install_background(hub: Hub | None = None) -> GeventReactor:
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


def stop_background(reactor: GeventReactor, timeout: float = EXIT_TIMEOUT) -> bool:
    """
    Stop C{reactor}, which C{install(background=True)} runs, and wait for its shutdown (triggers
    fired, connections closed); return True once its run has ended, False if it was still
    running after C{timeout} seconds (its greenlet is then killed).

    A reactor installed this very hub turn, whose run has not begun, is started and stopped, so
    its startup and shutdown triggers fire.  A reactor that no longer runs returns True at once.

    Blocks the current greenlet.  Must not be called from the hub, from the reactor's own context
    (a timed call or C{callFromThread} function: L{gevent_reactor.ReactorContextBlockingError}), or from a handler
    of one of the reactor's connections (the shutdown ends those handlers).
    """
    check_timeout("stop_background", timeout)
    try:
        run = _runs.get(reactor)
    except TypeError:  # not weak-referenceable, so certainly not one of ours
        run = None
    if run is None:
        raise ValueError(
            "stop_background(reactor) expects a reactor started by install(background=True), "
            f"got {type(reactor).__name__}: {reactor!r:.80}"
        )
    current = getcurrent()
    if current is reactor.hub:
        raise RuntimeError(
            "stop_background() must not be called from the hub: it waits for the reactor's "
            "shutdown, which the hub runs"
        )
    if isinstance(current, _ReactorContext):
        current.switch_out()  # raises the reactor context's own error, before anything stops
    return run.stop(timeout)
