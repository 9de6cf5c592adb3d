"""
The reactor's thread pool: Twisted's own, on real OS threads even after gevent.monkey.patch_all().

Its workers take their tasks from a C{SimpleQueue} (C code) where Twisted's pool gives them a
C{queue.Queue}, whose C{put} and C{get} run a Python C{Condition} (a new lock per wait) in both
threads; otherwise the pool is Twisted's.

Under patch_all, threading.Thread, locks and queues are greenlet-based, so Twisted's ThreadPool would
run deferToThread work in greenlets of the reactor's own thread: a really blocking call (a C library,
a DB driver that is not greenlet-aware) would stall the reactor, and stopping the pool would join
greenlets in the reactor's context.  WSGIResource, adbapi and blockingCallFromThread need real threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent import monkey
from twisted._threads import LockWorker, Team, ThreadWorker
from twisted.python.log import err
from twisted.python.threadpool import ThreadPool

from gevent_deferred._threads import (
    allocate_lock,
    current_thread,
    simple_queue,
    start_new_thread,
    thread_local,
)

__all__: list[str] = []


def _real_thread_team(currentLimit: Callable[[], int], threadFactory: Callable[..., Any]) -> Team:
    # twisted._threads.pool, with SimpleQueue for Queue, and the original (unpatched) queue, lock
    # and local types.

    def startThread(target: Callable[..., object]) -> None:
        return threadFactory(target=target).start()

    def limitedWorkerCreator() -> Any:
        stats = team.statistics()
        if stats.busyWorkerCount + stats.idleWorkerCount >= currentLimit():
            return None
        return ThreadWorker(startThread, simple_queue())

    team = Team(
        coordinator=LockWorker(allocate_lock(), thread_local()),
        createWorker=limitedWorkerCreator,
        logException=err,
    )
    return team


class _RealThread:
    """
    The part of threading.Thread that ThreadPool uses, on an unpatched OS thread.

    The original Thread class cannot be used: its methods look up Event and locks in the patched
    threading module, so start() would wait on a gevent Event set from another thread's hub.
    """

    def __init__(self, target: Callable[[], object], name: str | None = None) -> None:
        self.name = name
        self._target = target
        self._done = allocate_lock()

    def start(self) -> None:
        self._done.acquire()
        start_new_thread(self._run, ())

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self._done.release()

    def join(self, timeout: float | None = None) -> None:
        # Blocks the OS thread (not a gevent switch), as Twisted's own pool does at shutdown.
        if self._done.acquire(timeout=-1 if timeout is None else timeout):
            self._done.release()

    def is_alive(self) -> bool:
        return self._done.locked()


class _SimpleQueueThreadPool(ThreadPool):
    _pool = staticmethod(_real_thread_team)  # type: ignore[assignment]


class _RealThreadPool(_SimpleQueueThreadPool):
    # ThreadPool's annotations say threading.Thread; it only uses the part _RealThread provides.
    threadFactory = _RealThread  # type: ignore[assignment]
    currentThread = staticmethod(current_thread)


def reactor_thread_pool(minthreads: int, maxthreads: int, name: str) -> ThreadPool:
    """
    A Twisted L{ThreadPool} whose workers are real OS threads, monkey-patched or not.  Never blocks.
    """
    if monkey.is_module_patched("threading"):
        return _RealThreadPool(minthreads, maxthreads, name)
    return _SimpleQueueThreadPool(minthreads, maxthreads, name)
