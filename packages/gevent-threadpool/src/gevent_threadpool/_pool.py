"""GeventThreadPool: the public surface of Twisted's ThreadPool, with greenlets as workers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gevent.exceptions import BlockingSwitchOutError
from gevent.hub import Hub
from greenlet import getcurrent
from twisted.python import context, log

from gevent_deferred import HubThread
from gevent_deferred._checks import check_reactor
from gevent_deferred._context_tracker import install_greenlet_context_tracker
from gevent_deferred._threads import allocate_lock, hub_if_exists

from ._cross_thread_event import CrossThreadEvent
from ._engine import Engine, PoolKilledError, Worker
from ._placement import choose_placement

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from gevent_deferred._reactor_protocol import TwistedReactor

__all__ = ["GeventThreadPool", "PoolKilledError"]


class _NotAQueue:
    """Twisted's legacy ``pool._queue.qsize()``."""

    def __init__(self, pending: deque[Any]) -> None:
        self._pending = pending

    def qsize(self) -> int:
        return len(self._pending)


def _check_size(argument: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"GeventThreadPool {argument} must be an int >= 0, got {value!r}")
    return value


class GeventThreadPool:
    """
    Twisted's ``twisted.python.threadpool.ThreadPool`` interface with gevent greenlets as workers.

    Work may block cooperatively (gevent sockets, ``gevent.sleep``, gevent locks); at most ``max``
    work items run at once and the rest wait in FIFO order. Where the greenlets run is decided at
    ``start()``: on the calling thread's hub when a GeventReactor runs in that thread ("in-loop"),
    otherwise in ``gevent_deferred.shared_hub_thread()``, one helper OS thread with its own hub
    ("cross-thread"). Either way ``deferToThreadPool(reactor, pool, f, ...)`` delivers results in
    the reactor thread, because its ``onResult`` calls ``reactor.callFromThread`` from the worker.

    @param minthreads: workers kept alive (idle) once started.
    @param maxthreads: the most greenlets running work at once.
    @param name: shown in worker names and logs.
    @param hub: force the placement: a gevent ``Hub`` (in-loop on the hub of the thread calling
        ``start()``) or a ``gevent_deferred.HubThread`` (cross-thread, in that thread).
    @param reactor: only used to decide the placement when ``hub`` is None; defaults to the
        installed global reactor, if one is installed (never installs one). Never called.
    """

    min = 5
    max = 20
    joined = False
    started = False
    name: str | None = None

    def __init__(
        self,
        minthreads: int = 5,
        maxthreads: int = 20,
        name: str | None = None,
        *,
        hub: Hub | HubThread | None = None,
        reactor: TwistedReactor | None = None,
    ) -> None:
        """Create a stopped pool. Never blocks. Callable from any thread."""
        _check_size("minthreads", minthreads)
        _check_size("maxthreads", maxthreads)
        if minthreads > maxthreads:
            raise ValueError(
                f"GeventThreadPool minthreads ({minthreads}) must not exceed "
                f"maxthreads ({maxthreads})"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"GeventThreadPool name must be a str or None, got {name!r}")
        if hub is not None and not isinstance(hub, Hub | HubThread):
            raise TypeError(
                "GeventThreadPool hub must be a gevent Hub, a gevent_deferred.HubThread or None, "
                f"got {hub!r}"
            )
        if reactor is not None:
            check_reactor("GeventThreadPool", reactor, "callFromThread", also=" or None")
        self.min = minthreads
        self.max = maxthreads
        self.name = name
        self._hub = hub
        self._reactor = reactor
        self._lock = allocate_lock()
        self._pending: deque[list[Any]] = deque()
        self._engine: Engine | None = None
        self._serial = 0

    def __repr__(self) -> str:
        state = "started" if self.started else "stopped"
        return f"<GeventThreadPool {self.name!r} {state} min={self.min} max={self.max}>"

    # -- pickling, like Twisted's pool: only the sizes survive ---------------------------------

    def __getstate__(self) -> dict[str, int]:
        return {"min": self.min, "max": self.max}

    def __setstate__(self, state: dict[str, int]) -> None:
        GeventThreadPool.__init__(self, state["min"], state["max"])

    # -- statistics ------------------------------------------------------------------------------

    @property
    def threads(self) -> list[Worker]:
        """The live workers (records with ``.name`` and ``.greenlet``). Never blocks."""
        engine = self._engine
        if engine is None:
            return []
        with self._lock:
            return list(engine.slots)

    @property
    def workers(self) -> int:
        """How many workers are alive, idle or busy. Never blocks."""
        engine = self._engine
        return 0 if engine is None else len(engine.slots)

    @property
    def working(self) -> list[None]:
        """One ``None`` per busy worker (Twisted's legacy shape). Never blocks."""
        engine = self._engine
        return [None] * (0 if engine is None else engine.busy)

    @property
    def waiters(self) -> list[None]:
        """One ``None`` per idle worker (Twisted's legacy shape). Never blocks."""
        engine = self._engine
        if engine is None:
            return []
        with self._lock:
            return [None] * (len(engine.slots) - engine.busy)

    @property
    def _queue(self) -> _NotAQueue:
        """Twisted's legacy object whose ``qsize()`` counts work not yet given to a worker."""
        return _NotAQueue(self._pending)

    q = _queue

    @property
    def in_loop(self) -> bool | None:
        """True if the workers run on the hub of the thread that started the pool, False if they
        run in a helper HubThread, None if the pool was never started. Never blocks."""
        engine = self._engine
        return None if engine is None else engine.placement.in_loop

    def dumpStats(self) -> None:
        """Log the worker counts, like Twisted's pool. Never blocks. Callable from any thread."""
        log.msg(f"waiters: {self.waiters}")
        log.msg(f"workers: {self.working}")
        log.msg(f"total: {self.threads}")

    def _generateName(self) -> str:
        self._serial += 1
        return f"PoolGreenlet-{self.name or id(self)}-{self._serial}"

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """
        Start the workers: ``min`` of them, and enough for work queued before now (up to ``max``).

        Never blocks: it may be called from a thread whose hub loop is not running yet; the
        workers start when that loop (or the helper hub thread) runs. Callable from any thread.
        Does nothing if already started.
        """
        if self.started:
            return
        placement = choose_placement(self._hub, self._reactor)
        install_greenlet_context_tracker()
        with self._lock:
            if self.started:
                return
            self.joined = False
            self.started = True
            engine = self._engine = Engine(self, placement)
            engine.add_slots_locked(min(self.max, max(self.min, len(self._pending))))
        placement.launch(engine.setup)

    def stop(self, *, wait: bool = True) -> None:
        """
        Stop taking work; queued work still runs, then the workers end (as with Twisted's pool).

        Never blocks the hub: called from the pool's own thread (in-loop, or from a worker) or
        from any hub, it returns at once and the workers end in the background. Called from a
        greenlet of another thread, it blocks the current greenlet until the workers have ended;
        from a thread without a gevent hub, it blocks that thread (like Twisted's ``join``).
        With ``wait=False`` it never waits; ``when_stopped()`` tells when the workers ended.
        Callable from any thread.
        """
        with self._lock:
            self.joined = True
            self.started = False
            engine = self._engine
            if engine is None:
                return
            engine.stopping = True
        engine.poke()
        if wait:
            _wait_finished(engine)

    def kill(self) -> None:
        """
        Stop the pool and kill its workers: running work gets ``GreenletExit`` (its ``onResult``
        gets ``(False, Failure(GreenletExit))``), queued work is dropped (its ``onResult`` gets
        ``(False, Failure(PoolKilledError))``).

        Never blocks. Callable from any thread.
        """
        with self._lock:
            self.joined = True
            self.started = False
            engine = self._engine
            if engine is None:
                return
            engine.stopping = True
            engine.kill_requested = True
        engine.poke()

    def when_stopped(self, reactor: TwistedReactor) -> Deferred[None]:
        """
        A Deferred that fires with None in the reactor's thread (through
        ``reactor.callFromThread``) once the pool was stopped and all its workers have ended.

        Never blocks. Call it from the reactor's thread.
        """
        from twisted.internet.defer import Deferred, succeed

        check_reactor(
            "GeventThreadPool.when_stopped", reactor, "callFromThread", argument="reactor"
        )
        engine = self._engine
        if engine is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if not engine.add_finished_callback(lambda: reactor.callFromThread(d.callback, None)):
            return succeed(None)
        return d

    def adjustPoolsize(self, minthreads: int | None = None, maxthreads: int | None = None) -> None:
        """
        Set ``min`` and ``max``; a started pool starts workers up to ``min`` and ends idle ones
        above ``max`` (busy ones end when their work is done).

        Never blocks. Callable from any thread.
        """
        minthreads = self.min if minthreads is None else _check_size("minthreads", minthreads)
        maxthreads = self.max if maxthreads is None else _check_size("maxthreads", maxthreads)
        if minthreads > maxthreads:
            raise ValueError(
                f"GeventThreadPool.adjustPoolsize: minthreads ({minthreads}) must not exceed "
                f"maxthreads ({maxthreads})"
            )

        def grow_to_min(engine: Engine) -> None:
            if len(engine.slots) < minthreads:
                engine.add_slots_locked(minthreads - len(engine.slots))

        self._change_workers(grow_to_min, minthreads, maxthreads)

    def startAWorker(self) -> None:
        """Add one worker, up to ``max``. Never blocks. Callable from any thread."""
        self._change_workers(lambda engine: engine.add_slots_locked(1))

    def stopAWorker(self) -> None:
        """End one worker as soon as it is idle. Never blocks. Callable from any thread."""

        def one_less(engine: Engine) -> None:
            engine.to_quit += 1

        self._change_workers(one_less)

    def _change_workers(
        self,
        change: Callable[[Engine], object],
        minthreads: int | None = None,
        maxthreads: int | None = None,
    ) -> None:
        # Under the pool's lock (with the new sizes, if given): the change is made only while the
        # pool runs; then the engine is poked to act on it, outside the lock.
        with self._lock:
            if minthreads is not None and maxthreads is not None:
                self.min = minthreads
                self.max = maxthreads
            engine = self._engine
            if not self.started or engine is None:
                return
            change(engine)
        engine.poke()

    # -- work --------------------------------------------------------------------------------------

    def callInThread(self, func: Callable[..., object], /, *args: Any, **kw: Any) -> None:
        """
        Run ``func(*args, **kw)`` in a worker greenlet; errors go to Twisted's log. ``kw`` may
        use any name (``func`` too): the first parameter is positional-only.

        Never blocks (also from the hub). Callable from any thread. Ignored after ``stop()``.
        """
        self.callInThreadWithCallback(None, func, *args, **kw)

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., object],
        /,
        *args: Any,
        **kw: Any,
    ) -> None:
        """
        Run ``func(*args, **kw)`` in a worker greenlet, then ``onResult(True, result)`` or
        ``onResult(False, Failure)`` in that same greenlet, both in the caller's Twisted context.

        ``onResult`` runs in the pool's thread (the helper hub thread when cross-thread), so it
        should hand results over with ``reactor.callFromThread`` as ``deferToThreadPool`` does;
        an exception from it is logged. Never blocks (also from the hub). Callable from any
        thread. Ignored after ``stop()``, like Twisted's pool.
        """
        if not callable(func):
            raise TypeError(
                f"GeventThreadPool.callInThreadWithCallback expects a callable func, got {func!r}"
            )
        if onResult is not None and not callable(onResult):
            raise TypeError(
                "GeventThreadPool.callInThreadWithCallback expects a callable onResult or None, "
                f"got {onResult!r}"
            )
        if self.joined:
            return
        ctx = context.theContextTracker.currentContext().contexts[-1]
        item = [ctx, onResult, func, args, kw]
        with self._lock:
            self._pending.append(item)
            engine = self._engine
            if engine is None or not self.started:
                return
            # The worker is reserved now, not when the hub thread gets to it, so that work
            # queued before stop() still runs, as with Twisted's pool.
            if len(self._pending) > engine.waking + len(engine.idle):
                engine.add_slots_locked(1)
        engine.poke()


def _wait_finished(engine: Engine) -> None:
    """Wait for a stopping engine's workers to end, wherever that cannot block a hub."""
    if engine.own_thread():
        return  # waiting for ourselves would deadlock (and would block the hub)
    hub = hub_if_exists()
    if hub is not None and getcurrent() is hub:
        return
    if hub is None:
        lock = allocate_lock()
        lock.acquire()
        if engine.add_finished_callback(lock.release):
            lock.acquire()
        return
    finished = CrossThreadEvent(hub)
    try:
        if engine.add_finished_callback(finished.set):
            try:
                finished.wait()
            except BlockingSwitchOutError:
                # A context that must not switch (a loop callback, GeventReactor's reactor
                # context): let the workers end in the background.
                return
    finally:
        finished.close()
