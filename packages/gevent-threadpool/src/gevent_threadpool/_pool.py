"""GeventThreadPool: the public surface of Twisted's ThreadPool, with greenlets as workers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.exceptions import BlockingSwitchOutError
from gevent.hub import Hub, Waiter
from greenlet import GreenletExit, getcurrent
from twisted.python import context, log
from twisted.python.failure import Failure

from gevent_deferred import HubThread

from ._context import install_greenlet_context_tracker
from ._placement import Placement, choose_placement
from ._signal import POLL_INTERVAL, CrossThreadSignal
from ._threads import allocate_lock, get_ident, hub_if_exists

__all__ = ["GeventThreadPool", "PoolKilledError"]


class PoolKilledError(Exception):
    """Work that was still queued when ``GeventThreadPool.kill()`` ran; it never started."""


class _Worker:
    """One worker slot; its greenlet is spawned in the pool's hub thread (``greenlet`` until then
    is None)."""

    __slots__ = ("busy", "greenlet", "name", "ran", "waiter", "wake_pending")

    def __init__(self, name: str) -> None:
        self.name = name
        self.greenlet: _WorkerGreenlet | None = None
        self.waiter: Waiter | None = None
        self.busy = False
        self.ran = False  # its greenlet has begun running (killing it then runs its cleanup)
        # True while the engine counts this worker as "about to look at the queue".
        self.wake_pending = True

    def __repr__(self) -> str:
        state = "busy" if self.busy else ("idle" if self.waiter is not None else "starting")
        return f"<GeventThreadPool worker {self.name!r} {state}>"


class _WorkerGreenlet(gevent.Greenlet):
    """A pool worker's greenlet; the type lets ``use_gevent_threadpool`` recognise pool workers."""

    pool: GeventThreadPool


class _Engine:
    """
    One start()..stop() lifetime of a pool: the hub its workers live on and their bookkeeping.

    Every field is guarded by the pool's lock (a real lock, held only for a few statements, never
    across a greenlet switch). Greenlets are created and woken only in the engine's thread; other
    threads queue work and wake that thread through the hub loop's ``async_()`` watcher.
    """

    def __init__(self, pool: GeventThreadPool, placement: Placement) -> None:
        self.pool = pool
        self.placement = placement
        self.hub: Hub | None = None
        self.thread_ident: int | None = None
        self.watcher: Any = None
        self.timer: Any = None
        self.poked = False
        self.ready = False
        self.slots: list[_Worker] = []
        self.unborn: list[_Worker] = []
        self.idle: list[_Worker] = []
        self.busy = 0
        self.waking = 0
        self.to_quit = 0
        self.stopping = False
        self.finished = False
        self.kill_requested = False
        self.on_finished: list[Callable[[], object]] = []

    # -- any thread, with the pool's lock held ------------------------------------------------

    def add_slots_locked(self, n: int) -> None:
        for _ in range(n):
            if len(self.slots) >= self.pool.max:
                return
            worker = _Worker(self.pool._generateName())
            self.slots.append(worker)
            self.unborn.append(worker)
            self.waking += 1

    # -- any thread -----------------------------------------------------------------------------

    def own_thread(self) -> bool:
        ident = self.thread_ident
        if ident is None and self.placement.hub_thread is not None:
            ident = self.placement.hub_thread.thread_ident
        return ident == get_ident()

    def poke(self) -> None:
        """Make the engine thread look at the queue and the worker counts. Never blocks."""
        if self.thread_ident == get_ident():
            self.dispatch()
            return
        with self.pool._lock:
            # The flag lets the engine's slow timer catch a lost wake-up (see _signal).
            self.poked = True
            # Sent under the lock so that the engine cannot close the watcher in between.
            if self.watcher is not None:
                self.watcher.send()

    def add_finished_callback(self, callback: Callable[[], object]) -> bool:
        """Call ``callback`` (in the engine thread) once every worker has ended; False if they
        already have (then it is not called)."""
        with self.pool._lock:
            if self.finished:
                return False
            self.on_finished.append(callback)
            return True

    # -- the engine thread only ----------------------------------------------------------------

    def setup(self) -> None:
        hub = gevent.get_hub()
        watcher = hub.loop.async_()
        # An idle pool must not keep a plain gevent program's loop alive (gevent.wait() would
        # never return); the reactor, or the HubThread, keeps its own loop alive.
        watcher.ref = False
        watcher.start(self.dispatch)
        timer = hub.loop.timer(POLL_INTERVAL, POLL_INTERVAL)
        timer.ref = False
        timer.start(self._poll)
        with self.pool._lock:
            self.hub = hub
            self.thread_ident = get_ident()
            self.watcher = watcher
            self.timer = timer
            self.ready = True
        self.dispatch()

    def _poll(self) -> None:
        if self.poked:
            self.dispatch()

    def dispatch(self) -> None:
        """Wake idle workers or spawn new ones for queued work; end idle workers that must quit.

        Never blocks: it only schedules loop callbacks, so it may run in the hub itself.
        """
        pool = self.pool
        with pool._lock:
            if not self.ready or self.finished:
                return
            self.poked = False
            born, self.unborn = self.unborn, []
            need = len(pool._pending) - self.waking
            excess = max(len(self.slots) - pool.max, 0) + self.to_quit
            wake: list[_Worker] = []
            idle = self.idle
            while idle and (need > 0 or excess > 0 or self.stopping):
                worker = idle.pop()
                worker.wake_pending = True
                self.waking += 1
                wake.append(worker)
                if excess > 0:
                    excess -= 1
                else:
                    need -= 1
            if not self.stopping:
                while need > 0 and len(self.slots) < pool.max:
                    worker = _Worker(pool._generateName())
                    self.slots.append(worker)
                    self.waking += 1
                    born.append(worker)
                    need -= 1
            kill = self.kill_requested
            self.kill_requested = False
            finish = self.stopping and not self.slots
        assert self.hub is not None
        run_callback = self.hub.loop.run_callback
        for worker in wake:
            run_callback(self._resume, worker)
        for worker in born:
            greenlet = _WorkerGreenlet(self._work, worker)
            greenlet.pool = pool
            greenlet.name = worker.name
            worker.greenlet = greenlet
            greenlet.start()
        if kill:
            self._kill_workers()
        if finish:
            self._finish()

    def _resume(self, worker: _Worker) -> None:
        # In the hub (a loop callback), the only place Waiter.switch may be called from.
        waiter = worker.waiter
        greenlet = worker.greenlet
        if waiter is not None and greenlet is not None and not greenlet.dead:
            waiter.switch(None)

    def _work(self, worker: _Worker) -> None:
        pool = self.pool
        lock = pool._lock
        pending = pool._pending
        worker.ran = True
        try:
            while True:
                with lock:
                    if worker.wake_pending:
                        worker.wake_pending = False
                        self.waking -= 1
                    if len(self.slots) > pool.max:
                        return
                    if self.to_quit > 0:
                        self.to_quit -= 1
                        return
                    if pending:
                        item = pending.popleft()
                        self.busy += 1
                        worker.busy = True
                    elif self.stopping:
                        return
                    else:
                        item = None
                        waiter = worker.waiter = Waiter()
                        self.idle.append(worker)
                if item is None:
                    waiter.get()
                    worker.waiter = None
                    continue
                try:
                    _perform(item)
                finally:
                    item = None
                    with lock:
                        self.busy -= 1
                        worker.busy = False
        finally:
            with lock:
                if worker.wake_pending:
                    worker.wake_pending = False
                    self.waking -= 1
                if worker in self.idle:
                    self.idle.remove(worker)
                if worker in self.slots:
                    self.slots.remove(worker)
                worker.waiter = None
                finish = self.stopping and not self.slots
                orphaned = bool(pending) and not self.stopping
            if finish:
                self._finish()
            elif orphaned:
                # A killed worker may leave work behind that no other worker was woken for.
                self.dispatch()

    def _kill_workers(self) -> None:
        with self.pool._lock:
            running = []
            for worker in list(self.slots):
                greenlet = worker.greenlet
                if greenlet is not None and worker.ran:
                    running.append(greenlet)
                else:
                    # Killing a greenlet that never ran skips its code (and its cleanup), so
                    # its slot is released here.
                    self.slots.remove(worker)
                    if worker.wake_pending:
                        worker.wake_pending = False
                        self.waking -= 1
                    if greenlet is not None:
                        greenlet.kill(block=False)
            dropped = list(self.pool._pending)
            self.pool._pending.clear()
            finish = self.stopping and not self.slots
        for greenlet in running:
            greenlet.kill(block=False)
        for item in dropped:
            ctx, on_result = item[0], item[1]
            item.clear()
            error = PoolKilledError("GeventThreadPool.kill() ran before this work started")
            _report(ctx, on_result, False, Failure(error))
        if finish:
            self._finish()

    def _finish(self) -> None:
        with self.pool._lock:
            if self.finished:
                return
            self.finished = True
            watcher, self.watcher = self.watcher, None
            timer, self.timer = self.timer, None
            callbacks, self.on_finished = self.on_finished, []
        # Closed from a later loop callback: this may be running inside one of their own
        # callbacks, and closing a libuv watcher from its own callback crashed the process.
        for dropped in (timer, watcher):
            if dropped is not None:
                dropped.stop()
                assert self.hub is not None
                self.hub.loop.run_callback(dropped.close)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.err(None, "Error in a GeventThreadPool stop callback")


def _perform(item: list[Any]) -> None:
    """Run one work item in the current worker greenlet, like Twisted's ``inContext``."""
    ctx, on_result, func, args, kw = item
    # Drop every reference as soon as it is no longer needed, like Twisted's pool does (its
    # tests check that the arguments and the result can be garbage-collected).
    item.clear()
    try:
        # Arguments travel as a tuple and a dict: a keyword argument named like one of
        # callWithContext's own parameters (``func``) must reach ``func`` untouched.
        result = context.call(ctx, _invoke, func, args, kw)
        ok = True
    except BaseException:
        result = Failure()
        ok = False
    del func, args, kw
    killed = not ok and result.check(GreenletExit) is not None
    _report(ctx, on_result, ok, result)
    del result, on_result
    if killed:
        # The worker itself was killed: end it after reporting.
        raise GreenletExit()


def _invoke(func: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
    return func(*args, **kw)


def _report(ctx: Any, on_result: Any, ok: bool, result: Any) -> None:
    try:
        if on_result is not None:
            context.call(ctx, on_result, ok, result)
        elif not ok:
            log.err(result)
    except GreenletExit:
        raise
    except BaseException:
        log.err(None, "Unhandled error in GeventThreadPool onResult callback")


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
    ("standalone"). Either way ``deferToThreadPool(reactor, pool, f, ...)`` delivers results in the
    reactor thread, because its ``onResult`` calls ``reactor.callFromThread`` from the worker.

    @param minthreads: workers kept alive (idle) once started.
    @param maxthreads: the most greenlets running work at once.
    @param name: shown in worker names and logs.
    @param hub: force the placement: a gevent ``Hub`` (in-loop on the hub of the thread calling
        ``start()``) or a ``gevent_deferred.HubThread`` (standalone in that thread).
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
        reactor: Any = None,
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
        if reactor is not None and not callable(getattr(reactor, "callFromThread", None)):
            raise TypeError(
                f"GeventThreadPool reactor must be a Twisted reactor or None, got {reactor!r}"
            )
        self.min = minthreads
        self.max = maxthreads
        self.name = name
        self._hub = hub
        self._reactor = reactor
        self._lock = allocate_lock()
        self._pending: deque[list[Any]] = deque()
        self._engine: _Engine | None = None
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
    def threads(self) -> list[_Worker]:
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
            engine = self._engine = _Engine(self, placement)
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

    def when_stopped(self, reactor: Any) -> Any:
        """
        A Deferred that fires with None in the reactor's thread (through
        ``reactor.callFromThread``) once the pool was stopped and all its workers have ended.

        Never blocks. Call it from the reactor's thread.
        """
        from twisted.internet.defer import Deferred, succeed

        if not callable(getattr(reactor, "callFromThread", None)):
            raise TypeError(
                f"GeventThreadPool.when_stopped(reactor) expects a Twisted reactor, got {reactor!r}"
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
        with self._lock:
            self.min = minthreads
            self.max = maxthreads
            engine = self._engine
            if not self.started or engine is None:
                return
            if len(engine.slots) < self.min:
                engine.add_slots_locked(self.min - len(engine.slots))
        engine.poke()

    def startAWorker(self) -> None:
        """Add one worker, up to ``max``. Never blocks. Callable from any thread."""
        with self._lock:
            engine = self._engine
            if not self.started or engine is None:
                return
            engine.add_slots_locked(1)
        engine.poke()

    def stopAWorker(self) -> None:
        """End one worker as soon as it is idle. Never blocks. Callable from any thread."""
        with self._lock:
            engine = self._engine
            if not self.started or engine is None:
                return
            engine.to_quit += 1
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

        ``onResult`` runs in the pool's thread (the helper hub thread when standalone), so it
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


def _wait_finished(engine: _Engine) -> None:
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
    signal = CrossThreadSignal(hub)
    try:
        if engine.add_finished_callback(signal.set):
            try:
                signal.wait()
            except BlockingSwitchOutError:
                # A context that must not switch (a loop callback, GeventReactor's reactor
                # context): let the workers end in the background.
                return
    finally:
        signal.close()
