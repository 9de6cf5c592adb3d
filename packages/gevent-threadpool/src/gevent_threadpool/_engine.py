"""The workers of a GeventThreadPool: greenlets in one hub's thread, and their bookkeeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.hub import Hub, Waiter
from greenlet import GreenletExit
from twisted.python import context, log
from twisted.python.failure import Failure

from gevent_deferred._threads import get_ident
from gevent_deferred._waker import LoopWaker

from ._placement import Placement

if TYPE_CHECKING:
    from ._pool import GeventThreadPool

__all__ = ["Engine", "PoolKilledError", "Worker", "WorkerGreenlet"]


class PoolKilledError(Exception):
    """Work that was still queued when ``GeventThreadPool.kill()`` ran; it never started."""


class Worker:
    """One worker slot; its greenlet is spawned in the pool's hub thread (``greenlet`` until then
    is None)."""

    __slots__ = ("busy", "greenlet", "name", "ran", "waiter", "wake_pending")

    def __init__(self, name: str) -> None:
        self.name = name
        self.greenlet: WorkerGreenlet | None = None
        self.waiter: Waiter | None = None
        self.busy = False
        self.ran = False  # its greenlet has begun running (killing it then runs its cleanup)
        # True while the engine counts this worker as "about to look at the queue".
        self.wake_pending = True

    def __repr__(self) -> str:
        state = "busy" if self.busy else ("idle" if self.waiter is not None else "starting")
        return f"<GeventThreadPool worker {self.name!r} {state}>"


class WorkerGreenlet(gevent.Greenlet):
    """A pool worker's greenlet; the type lets ``use_gevent_threadpool`` recognise pool workers."""

    pool: GeventThreadPool


class Engine:
    """
    One start()..stop() lifetime of a pool: the hub its workers live on and their bookkeeping.

    Every field is guarded by the pool's lock (a real lock, held only for a few statements, never
    across a greenlet switch). Greenlets are created and woken only in the engine's thread; other
    threads queue work and wake that thread through a ``LoopWaker``.
    """

    def __init__(self, pool: GeventThreadPool, placement: Placement) -> None:
        self.pool = pool
        self.placement = placement
        self.hub: Hub | None = None
        self.thread_ident: int | None = None
        self.waker: LoopWaker | None = None
        self.ready = False
        self.slots: list[Worker] = []
        self.unborn: list[Worker] = []
        self.idle: list[Worker] = []
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
            worker = Worker(self.pool._generateName())
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
        # Before setup() publishes the waker there is nothing to wake: setup() dispatches itself.
        waker = self.waker
        if waker is not None:
            waker.wake()

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
        # An idle pool must not keep a plain gevent program's loop alive (gevent.wait() would
        # never return); the reactor, or the HubThread, keeps its own loop alive.
        waker = LoopWaker(hub.loop, self.dispatch, ref=False)
        with self.pool._lock:
            self.hub = hub
            self.thread_ident = get_ident()
            self.waker = waker
            self.ready = True
        self.dispatch()

    def dispatch(self) -> None:
        """Wake idle workers or spawn new ones for queued work; end idle workers that must quit.

        Never blocks: it only schedules loop callbacks, so it may run in the hub itself.
        """
        pool = self.pool
        with pool._lock:
            if not self.ready or self.finished:
                return
            born, self.unborn = self.unborn, []
            need = len(pool._pending) - self.waking
            excess = max(len(self.slots) - pool.max, 0) + self.to_quit
            wake: list[Worker] = []
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
                    worker = Worker(pool._generateName())
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
            greenlet = WorkerGreenlet(self._work, worker)
            greenlet.pool = pool
            greenlet.name = worker.name
            worker.greenlet = greenlet
            greenlet.start()
        if kill:
            self._kill_workers()
        if finish:
            self._finish()

    def _resume(self, worker: Worker) -> None:
        # In the hub (a loop callback), the only place Waiter.switch may be called from.
        waiter = worker.waiter
        greenlet = worker.greenlet
        if waiter is not None and greenlet is not None and not greenlet.dead:
            waiter.switch(None)

    def _work(self, worker: Worker) -> None:
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
            waker, self.waker = self.waker, None
            callbacks, self.on_finished = self.on_finished, []
        if waker is not None:
            waker.close()
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
