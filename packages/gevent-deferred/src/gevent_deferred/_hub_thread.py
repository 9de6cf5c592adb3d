"""One OS thread running its own gevent hub, to run greenlets for a reactor that is not gevent's."""

from __future__ import annotations

import atexit
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.pool
from twisted.internet.defer import Deferred

from ._checks import check_reactor
from ._outcomes import call_outcome, fire
from ._reactor_protocol import TwistedReactor
from ._threads import (
    allocate_lock,
    get_ident,
    prepare_hub_thread,
    start_new_thread,
    wait_real_lock,
)
from ._waker import LoopWaker

__all__ = ["HubThread", "shared_hub_thread"]

_STOP = object()


class _Run:
    """The state of one start()..stop() lifetime of a HubThread (a HubThread may be restarted)."""

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self.waker: LoopWaker | None = None  # published by the thread once its hub runs
        self.thread_ident: int | None = None
        self.stopping = False
        self.started = allocate_lock()
        self.started.acquire()
        self.done = allocate_lock()
        self.done.acquire()
        self.group: gevent.pool.Group | None = None

    def wake(self) -> None:
        waker = self.waker
        if waker is not None:
            waker.wake()


class HubThread:
    """
    One OS thread running its own gevent hub.

    It runs greenlets on behalf of a Twisted reactor that is not driven by gevent (Twisted's
    epoll, select or asyncio reactors): ``call(reactor, fn)`` runs ``fn`` in a new greenlet in the
    hub thread and fires a Deferred in the reactor's thread with the outcome. The thread is a real
    OS thread even after ``gevent.monkey.patch_all()``; requests reach its hub through a
    ``LoopWaker``.
    """

    def __init__(self, name: str = "gevent-hub-thread") -> None:
        if not isinstance(name, str):
            raise TypeError(f"HubThread(name=...) expects a str, got {type(name).__name__}")
        self.name = name
        self._lock = allocate_lock()
        self._run: _Run | None = None

    def __repr__(self) -> str:
        return f"<HubThread {self.name!r} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``. Never blocks. Callable from any thread."""
        run = self._run
        return run is not None and not run.stopping

    @property
    def thread_ident(self) -> int | None:
        """The real thread id of the hub thread while it runs, else None. Never blocks."""
        run = self._run
        return None if run is None or run.stopping else run.thread_ident

    def start(self) -> None:
        """
        Start the thread and its hub; does nothing if already running.

        Never blocks (beyond creating the thread). Callable from any thread.
        """
        with self._lock:
            if self.running:
                return
            run = _Run()
            self._run = run
            prepare_hub_thread()
            start_new_thread(self._main, (run,))

    def stop(self, timeout: float = 5.0) -> None:
        """
        Kill the thread's greenlets, end its hub and join the thread.

        Blocks the current greenlet (other greenlets of the calling thread keep running) until
        the thread has ended, at most ``timeout`` seconds, then raises ``TimeoutError``.
        Callable from any thread except the hub thread itself. Does nothing if not running.
        """
        with self._lock:
            run = self._run
            if run is None or run.stopping:
                return
            if run.thread_ident == get_ident():
                raise RuntimeError(
                    f"{self!r}.stop() was called from its own thread, where joining it would "
                    "deadlock; call stop() from another thread (e.g. the one that started it)"
                )
            run.stopping = True
        run.queue.append(_STOP)
        run.wake()
        if not wait_real_lock(run.done, timeout):
            raise TimeoutError(f"{self!r} did not end within {timeout} s")

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """
        Run ``fn(*args, **kwargs)`` in a new greenlet in the hub thread.

        Never blocks. Callable from any thread. An exception from ``fn`` is reported by gevent's
        hub like any greenlet's; use ``call()`` to receive outcomes.
        """
        if not callable(fn):
            raise TypeError(f"HubThread.submit(fn) expects a callable, got {type(fn).__name__}")
        run = self._run
        if run is None or run.stopping:
            raise RuntimeError(f"{self!r} is not running; call start() first")
        run.queue.append((fn, args, kwargs))
        # A request queued before the thread published its waker is picked up by the thread's
        # first drain, which runs after the waker is published.
        run.wake()

    def call(
        self, reactor: TwistedReactor, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred:
        """
        Run ``fn(*args, **kwargs)`` in a new greenlet in the hub thread; return a Deferred.

        The Deferred fires in the reactor's thread (through ``reactor.callFromThread``) with
        ``fn``'s result or Failure (original traceback kept). Cancelling the Deferred kills the
        greenlet; a greenlet killed otherwise fails it with ``GreenletKilledError``. Never blocks.
        Call it from the reactor's thread, where the returned Deferred may be used.
        """
        if not callable(fn):
            raise TypeError(f"HubThread.call(reactor, fn) expects a callable fn, got {fn!r}")
        check_reactor("HubThread.call", reactor, "callFromThread", argument="reactor, fn")
        job = _CallJob(self, reactor, fn, args, kwargs)
        job.deferred = Deferred(job.cancel)
        self.submit(job.run)
        return job.deferred

    def _main(self, run: _Run) -> None:
        run.thread_ident = get_ident()
        hub = gevent.get_hub()
        try:
            stopped = gevent.event.Event()
            group = run.group = gevent.pool.Group()
            queue = run.queue

            def drain() -> None:
                # Runs in the hub (a loop callback): spawning is allowed here, blocking is not.
                while queue:
                    item = queue.popleft()
                    if item is _STOP:
                        stopped.set()
                        continue
                    fn, args, kwargs = item
                    group.spawn(fn, *args, **kwargs)

            # The waker stays referenced, so the hub keeps running while idle.
            waker = LoopWaker(hub.loop, drain)
            run.waker = waker
            run.started.release()
            drain()
            stopped.wait()
            group.kill(block=True, timeout=2.0)
            run.waker = None
            waker.close()
        finally:
            hub.destroy(destroy_loop=True)
            run.done.release()


class _CallJob:
    """One ``HubThread.call``: runs in the hub thread, reports in the reactor thread."""

    __slots__ = (
        "args",
        "cancelled",
        "deferred",
        "fn",
        "greenlet",
        "hub_thread",
        "kwargs",
        "reactor",
    )

    def __init__(
        self,
        hub_thread: HubThread,
        reactor: TwistedReactor,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
    ) -> None:
        self.hub_thread = hub_thread
        self.reactor = reactor
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.cancelled = False
        self.greenlet: Any = None
        self.deferred: Deferred | None = None

    def run(self) -> None:
        # In the hub thread, in a fresh greenlet.
        if self.cancelled:
            return
        self.greenlet = gevent.getcurrent()
        outcome = call_outcome(self.fn, *self.args, **self.kwargs)
        self.greenlet = None
        self.reactor.callFromThread(self.deliver, outcome)

    def deliver(self, outcome: Any) -> None:
        # In the reactor thread.
        if self.deferred is not None:  # None only if cancelled before it was made
            fire(self.deferred, outcome)

    def cancel(self, d: Deferred) -> None:
        # In the reactor thread; Twisted fails ``d`` with CancelledError after this returns.
        self.cancelled = True
        if self.hub_thread.running:
            self.hub_thread.submit(self._kill)

    def _kill(self) -> None:
        g = self.greenlet
        if g is not None and not g.dead:
            g.kill(block=False)


_shared_lock = allocate_lock()
_shared: HubThread | None = None


def shared_hub_thread() -> HubThread:
    """
    The process-wide HubThread, started on first use and stopped at interpreter exit.

    Never blocks. Callable from any thread.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = HubThread(name="gevent-deferred-shared-hub")
            atexit.register(_stop_shared)
        _shared.start()
        return _shared


def _stop_shared() -> None:
    hub_thread = _shared
    if hub_thread is None:
        return
    try:
        hub_thread.stop(timeout=2.0)
    except Exception:  # at exit, a stuck greenlet must not turn into a traceback
        pass
