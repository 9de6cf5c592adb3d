"""
A Twisted reactor driven by gevent's event loop.

I/O readiness, timers and thread wake-ups come from the loop of a gevent hub; there is no second
poller.  Timed calls are Twisted's L{DelayedCall}s in a heap of our own (see
L{gevent_reactor._timed_calls}); the loop holds one timer armed for the earliest of them (see
L{gevent_reactor._loop_timer}, as Twisted's asyncio reactor does).  Readers and writers have loop watchers, and their events are
handled in runner greenlets that may block (see L{gevent_reactor._io_dispatcher} and
L{gevent_reactor._runners}); timed calls and C{callFromThread} calls run in the reactor's own context
(see L{gevent_reactor._reactor_context}), where blocking fails at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from gevent.hub import Hub
from greenlet import getcurrent, greenlet
from twisted.internet.base import DelayedCall, ReactorBase
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet
from twisted.internet.posixbase import PosixReactorBase, _ContinuousPolling
from twisted.logger import Logger
from zope.interface import implementer

from gevent_deferred import IHubReactor
from gevent_deferred._context_tracker import install_greenlet_context_tracker
from gevent_deferred._waker import LoopWaker
from gevent_deferred._watchers import LaterCloser
from gevent_resolver import install_gevent_resolver

from ._children import ChildWatchers
from ._io_dispatcher import IODispatcher
from ._loop_timer import LoopTimer
from ._reactor_context import _ReactorContext
from ._threadpool import reactor_thread_pool
from ._timed_calls import TimedCalls, run_thread_calls

__all__ = ["GeventReactor", "install"]

# ReactorBase.timeout's cap: the longest epoll_wait (and libuv) timeout in whole milliseconds.
_LONGEST = 2147483
# Twisted's run loop logs under this namespace; so does ours, with the same messages.
_log = Logger(namespace="twisted.internet.base")


@implementer(IReactorFDSet, IHubReactor)
class GeventReactor(PosixReactorBase):
    """
    A Twisted reactor that runs on the loop of a gevent hub (by default, this thread's hub).

    Protocol input code (C{dataReceived}, C{connectionMade}, ...) may block the current greenlet with
    gevent; only that connection waits.  Timed calls and C{callFromThread} calls must not block.
    """

    def __init__(self, hub: Hub | None = None) -> None:
        if hub is None:
            hub = gevent.get_hub()
        if not isinstance(hub, Hub):
            raise TypeError(f"hub: expected a gevent Hub or None, got {hub!r}")
        self.hub = hub
        self._loop = hub.loop
        # Stopped now, closed once the loop is out of its callbacks: libuv can crash or lose
        # events when a watcher is closed from inside its own callback (removeReader from doRead).
        self._close_soon = LaterCloser(self._loop).close_soon
        self._context = _ReactorContext(hub)
        self._continuousPolling = _ContinuousPolling(self)
        self._io = IODispatcher(
            hub,
            self._continuousPolling,
            self._disconnectSelectable,
            self.callLater,
            self._close_soon,
        )
        # The clock is looked up at each use: Twisted's tests (and users') replace reactor.seconds.
        self._timer = LoopTimer(self._loop, self._on_due, self._close_soon, lambda: self.seconds())
        self._calls = TimedCalls(self._timer)
        self._wake: LoopWaker | None = None
        self._children = ChildWatchers(self._loop, self._context.run_job)
        self._parked: greenlet | None = None
        super().__init__()
        # After the base class, which installs Twisted's thread-pool resolver.
        install_gevent_resolver(self)
        # Handlers that block interleave in one thread: each greenlet keeps its own context stack.
        install_greenlet_context_tracker()
        self.addSystemEventTrigger("before", "shutdown", self._io.end_blocked_handlers)

    @property
    def _watching(self) -> bool:
        # Whether the loop serves this reactor (it runs or iterates); the dispatcher keeps it.
        return self._io.watching

    # -- IReactorFDSet: the dispatcher's (see gevent_reactor._io_dispatcher) ------------------

    def addReader(self, reader: Any) -> None:
        """Watch C{reader} for read readiness.  Never blocks."""
        self._io.addReader(reader)

    def addWriter(self, writer: Any) -> None:
        """Watch C{writer} for write readiness.  Never blocks."""
        self._io.addWriter(writer)

    def removeReader(self, reader: Any) -> None:
        """Stop watching C{reader} for read readiness.  Never blocks."""
        self._io.removeReader(reader)

    def removeWriter(self, writer: Any) -> None:
        """Stop watching C{writer} for write readiness.  Never blocks."""
        self._io.removeWriter(writer)

    def removeAll(self) -> list[Any]:
        """Stop watching every reader and writer but the reactor's own.  Never blocks."""
        return self._removeAll(self._io.getReaders(), self._io.getWriters())

    def getReaders(self) -> list[Any]:
        """The readers being watched.  Never blocks."""
        return self._io.getReaders()

    def getWriters(self) -> list[Any]:
        """The writers being watched.  Never blocks."""
        return self._io.getWriters()

    def disconnectAll(self) -> None:
        """
        Disconnect every reader and writer (see L{IReactorCore}).  Never blocks.

        A connection whose handler is still blocked is disconnected now too.
        """
        self._io.forget_held_losses()
        super().disconnectAll()

    # -- waking up, from any thread ------------------------------------------------------------

    def installWaker(self) -> None:
        # A LoopWaker (the loop's async watcher), made while the reactor runs, replaces Twisted's
        # self-pipe.
        pass

    def wakeUp(self) -> None:
        """
        Make the reactor run its pending calls soon.  Never blocks.  Callable from any thread.
        """
        wake = self._wake
        if wake is not None:
            # While the reactor does not run there is nothing to wake: run() drains the queue.
            # (A waker closed meanwhile, by crash() in the reactor's thread, ignores the call.)
            wake.wake()

    def stop(self) -> None:
        """
        Stop the reactor after the current pass of the loop (see L{IReactorCore.stop}).

        Never blocks.  Takes effect at once from any greenlet of the reactor's thread.
        """
        super().stop()
        self.wakeUp()

    # -- running ---------------------------------------------------------------------------

    def run(self, installSignalHandlers: bool = True) -> None:
        """
        Run the reactor until L{stop} or L{crash}.

        Blocks the current greenlet; other greenlets keep running.  Must not be called from the hub.
        """
        if getcurrent() is self.hub:
            raise RuntimeError(
                "GeventReactor.run() must not be called from the gevent hub (an event loop "
                "callback); call it from a greenlet, e.g. the main one."
            )
        self.startRunning(installSignalHandlers=installSignalHandlers)
        try:
            self._set_watching(True)
            self._children.reactor_started()
            # Calls that came due, or came from threads, while the reactor was not running.
            self.wakeUp()
            self._park()
            _log.info("Main loop terminated.")
        finally:
            self._signals.uninstall()
            if self._justStopped:
                self._justStopped = False

    def _park(self) -> None:
        # Tolerates stray switches (pytest-twisted switches to the greenlet that called run()):
        # whatever wakes us, we go back to the hub until the reactor has crashed or stopped.
        # Whatever is thrown in here (a KeyboardInterrupt, a SystemExit raised in a signal handler) is
        # logged and the reactor goes on, as Twisted's mainLoop does.
        self._parked = getcurrent()
        try:
            while self._started:
                try:
                    self.hub.switch()
                except BaseException:
                    _log.failure("Unexpected error in main loop.")
        finally:
            self._parked = None

    def crash(self) -> None:
        """
        Stop the reactor at once, without firing shutdown triggers (see L{IReactorCore.crash}).

        Never blocks.
        """
        super().crash()
        self._set_watching(False)
        if self._parked is not None:
            self._loop.run_callback(self._unpark)

    def _unpark(self) -> None:
        parked = self._parked
        if parked is not None and not self._started:
            parked.switch()

    def iterate(self, delay: float = 0.0) -> None:
        """
        Run pending calls and handle ready events, waiting at most C{delay} seconds.

        Blocks the current greenlet.  Must not be called from the hub.
        """
        watching = self._io.watching
        if not watching:
            self._set_watching(True)
        try:
            self.runUntilCurrent()
            self.doIteration(delay)
        finally:
            if not watching:
                self._set_watching(False)

    def doIteration(self, delay: float | None) -> None:
        # gevent.idle() returns after one pass of the loop that polled for I/O; sleep(0) would not.
        if delay:
            gevent.sleep(delay)
        else:
            gevent.idle()

    def _set_watching(self, on: bool) -> None:
        # The loop serves this reactor only while it runs (or iterates), as epoll would.
        if on == self._io.watching:
            return
        if on:
            self._wake = LoopWaker(self._loop, self._on_wake)
            self._io.start()
            self._rearm()
        else:
            # Closed, not only stopped: a watcher left to the garbage collector while the loop
            # runs can crash libuv.  LoopWaker closes safely from its own callback (crash() may
            # run there) and against a wakeUp() racing in from another thread.
            wake, self._wake = self._wake, None
            if wake is not None:
                wake.close()
            self._io.stop()
            self._timer.pause()

    # -- the reactor's own context: timed calls and calls from threads ------------------------

    def _on_wake(self) -> None:
        self._context.run_job(self._run_pending)

    def _on_due(self) -> None:
        if self._io.events_waiting():
            # This pass's I/O events are still to be handled together: they go first.
            self._loop.run_callback(self._on_due)
            return
        self._context.run_job(self._run_pending)

    def _run_pending(self) -> None:
        # While this runs, callLater must not arm the loop timer: _rearm does it once at the end
        # (if the reactor still runs), keeping what was armed if it still fits.  This greenlet
        # does not switch to the hub meanwhile (see _reactor_context), so what stays armed
        # cannot fire.
        self._timer.hold()
        try:
            self.runUntilCurrent()
        finally:
            if self._io.watching:
                self._rearm()

    def _rearm(self) -> None:
        # After a pass of timed calls: calls that are due already wait for one poll of the loop,
        # as in Twisted's mainLoop (runUntilCurrent, then doIteration), so that I/O is not starved.
        when = self._calls.next_time()
        if when is None:
            self._timer.disarm()
        else:
            self._timer.arm(min(when, self.seconds() + _LONGEST), before_poll=False)

    # -- IReactorTime: the timed calls (see gevent_reactor._timed_calls) -----------------------

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> DelayedCall:
        """
        Call C{callable} in C{delay} seconds (see L{IReactorTime.callLater}).

        Never blocks.  Takes effect at once from any greenlet of the reactor's thread.  C{callable}
        runs in the reactor's own context, where it must not block.
        """
        return self._calls.call_later(delay, callable, args, kw, self.seconds)

    def getDelayedCalls(self) -> list[IDelayedCall]:
        """The calls that are scheduled and not cancelled.  Never blocks."""
        return self._calls.calls()

    def _insertNewDelayedCalls(self) -> None:
        # Calls go straight into the heap; nothing waits to be inserted.
        pass

    def timeout(self) -> float | None:
        """
        The longest the loop may sleep before a timed call is due, or C{None}.  Never blocks.
        """
        when = self._calls.next_time()
        if when is None:
            return None
        return min(_LONGEST, max(0.0, when - self.seconds()))

    def runUntilCurrent(self) -> None:
        """
        Run the calls from threads and the timed calls that are due.

        Never blocks.  The calls run here, in the reactor's own context.
        """
        if self.threadCallQueue and run_thread_calls(self.threadCallQueue):
            self.wakeUp()
        self._calls.run_due(self.seconds())
        if self._justStopped:
            self._justStopped = False
            self.fireSystemEvent("shutdown")

    # -- loop watchers ------------------------------------------------------------------

    def _initThreadPool(self) -> None:
        # As ReactorBase's, with real OS threads even under gevent.monkey.patch_all().
        self.threadpool = reactor_thread_pool(0, 10, "twisted.internet.reactor")
        self._threadpoolStartupID = self.callWhenRunning(self.threadpool.start)
        self.threadpoolShutdownID = self.addSystemEventTrigger(
            "during", "shutdown", self._stopThreadPool
        )

    # -- signals and child processes ---------------------------------------------------------

    def _signalsFactory(self) -> Any:
        # SIGINT/SIGTERM/SIGBREAK as every reactor; no SIGCHLD handler: children are watched with
        # the loop's child watchers, which coexist with gevent.subprocess (both reap every child).
        return ReactorBase._signalsFactory(self)

    def spawnProcess(self, processProtocol: Any, executable: Any, *args: Any, **kwargs: Any) -> Any:
        """
        Start a child process (see L{IReactorProcess.spawnProcess}).  Never blocks.
        """
        process = super().spawnProcess(processProtocol, executable, *args, **kwargs)
        self._children.watch(process, self._started)
        return process


# Module-level, as in Twisted's own reactor modules: code that re-creates a reactor in a child process
# (twisted.test.test_internet's testChildResolve) calls install() on the reactor class's module.
def install(hub: Hub | None = None, background: bool = False) -> GeventReactor:
    """
    Install a L{GeventReactor} as C{twisted.internet.reactor} and return it.

    The same as L{gevent_reactor.install}: raises L{twisted.internet.error.ReactorAlreadyInstalledError}
    (naming the reactor found, and how it likely got there) if a reactor is installed already.
    Never blocks.  Must be called from the thread whose hub (or C{hub}) will run the reactor.

    With C{background=True} the reactor also runs itself, in a greenlet of that hub, without
    Twisted's signal handlers, until C{reactor.stop()} or interpreter exit: a gevent program
    never calls C{reactor.run()}.  Calling it again returns the same reactor; the error for
    another installed reactor names it (see L{gevent_reactor._background}).
    """
    from ._install import install

    return install(hub, background=background)
