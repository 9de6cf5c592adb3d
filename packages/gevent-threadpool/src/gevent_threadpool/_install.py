"""``use_gevent_threadpool(reactor)``: the one line that makes a reactor's thread pool greenlets."""

from __future__ import annotations

from types import CodeType
from typing import Any

import gevent
import gevent.socket
from greenlet import getcurrent
from twisted.internet import _resolver, threads
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python import log

from ._cross_thread_event import CrossThreadEvent
from ._engine import WorkerGreenlet
from ._pool import GeventThreadPool

__all__ = ["BlockingCallFromPoolError", "use_gevent_threadpool"]


class BlockingCallFromPoolError(RuntimeError):
    """``blockingCallFromThread`` was called from a pool greenlet where waiting would deadlock."""


def _find_blocking_call_code() -> CodeType | None:
    # The code object of the function blockingCallFromThread hands to reactor.callFromThread.
    # Matching it by identity (not by name) recognises exactly Twisted's blocking call.
    for const in threads.blockingCallFromThread.__code__.co_consts:
        if isinstance(const, CodeType) and const.co_name == "_callFromThread":
            return const
    return None


_BLOCKING_CALL_CODE = _find_blocking_call_code()


class _BlockingCallGuard:
    """
    Wraps ``reactor.callFromThread`` (on the instance) while a GeventThreadPool is the reactor's
    pool, so that Twisted's ``blockingCallFromThread`` called from a pool greenlet waits for its
    result cooperatively (blocking only that greenlet) instead of blocking the whole OS thread,
    which deadlocks when that thread is the reactor's (in-loop) and stalls every other pool
    greenlet when it is the helper hub thread (cross-thread).
    """

    # Any, not TwistedReactor: the guard sets and deletes callFromThread on the instance, which
    # the Protocol's read-only member forbids.
    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.had_own = "callFromThread" in vars(reactor)
        self.original = reactor.callFromThread

    def install(self) -> None:
        self.reactor.callFromThread = self.callFromThread

    def uninstall(self) -> None:
        # == and not "is": every attribute access makes a new bound-method object.
        if vars(self.reactor).get("callFromThread") != self.callFromThread:
            return  # someone wrapped it after us; leave their wrapper in place
        if self.had_own:
            self.reactor.callFromThread = self.original
        else:
            del self.reactor.callFromThread

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(f, "__code__", None) is _BLOCKING_CALL_CODE and _BLOCKING_CALL_CODE is not None:
            current = getcurrent()
            if isinstance(current, WorkerGreenlet):
                return self._blocking_call(current, f)
        return self.original(f, *args, **kwargs)

    def _blocking_call(self, worker: WorkerGreenlet, f: Any) -> None:
        try:
            contents = [cell.cell_contents for cell in f.__closure__ or ()]
            cells = dict(zip(f.__code__.co_freevars, contents, strict=True))
            queue, func, args, kwargs = cells["queue"], cells["f"], cells["a"], cells["kw"]
        except (KeyError, ValueError):
            # Twisted changed blockingCallFromThread's insides; fall back to its own behaviour
            # where that cannot deadlock, and fail at once where it would.
            if worker.pool.in_loop:
                raise BlockingCallFromPoolError(
                    "blockingCallFromThread() was called from a GeventThreadPool greenlet that "
                    "runs in the reactor's own thread, where waiting would deadlock the reactor; "
                    "return a Deferred instead, or run this work on a real thread pool"
                ) from None
            return self.original(f)
        delivered = CrossThreadEvent(gevent.get_hub())

        def deliver(result: object) -> None:
            # Twisted's version ends with queue.put too: once this returns, its queue.get()
            # returns at once.
            queue.put(result)
            delivered.set()

        def run_in_reactor() -> None:
            maybeDeferred(func, *args, **kwargs).addBoth(deliver)

        try:
            self.original(run_in_reactor)
            delivered.wait()  # blocks this greenlet only; set() may come from any thread
        finally:
            delivered.close()
        return None


class _Installation:
    """What ``use_gevent_threadpool`` changed on one reactor, and how to undo it at shutdown."""

    # How often the "before shutdown" trigger looks whether the pool has gone quiet.
    DRAIN_POLL = 0.005

    # Any, not TwistedReactor: ReactorBase's own bookkeeping (threadpool, its trigger IDs,
    # _stopThreadPool, installNameResolver) is read and set, and an attribute of ours is added.
    def __init__(self, reactor: Any, pool: GeventThreadPool, shutdown_timeout: float | None):
        self.reactor = reactor
        self.pool = pool
        self.shutdown_timeout = shutdown_timeout
        self.guard = _BlockingCallGuard(reactor)
        self.resolver_replaced = False
        self.drain_trigger: Any = None  # a trigger ID, opaque (IReactorCore names it Any too)

    def install(self) -> None:
        reactor = self.reactor
        self._retire_old_pool()
        reactor.threadpool = self.pool
        if reactor.running:
            self.pool.start()
            reactor._threadpoolStartupID = None
        else:
            reactor._threadpoolStartupID = reactor.callWhenRunning(self.pool.start)
        # Only "before" triggers can delay shutdown (with a Deferred); the pool itself stops
        # "during" shutdown like Twisted's, so that other "before" triggers (services stopping)
        # may still use deferToThread.
        self.drain_trigger = reactor.addSystemEventTrigger("before", "shutdown", self.drain)
        # The same attribute ReactorBase uses, so that its own bookkeeping stays consistent.
        reactor.threadpoolShutdownID = reactor.addSystemEventTrigger(
            "during", "shutdown", self.uninstall
        )
        self.guard.install()
        self._use_cooperative_getaddrinfo()
        reactor._gevent_threadpool_installation = self

    def _retire_old_pool(self) -> None:
        reactor = self.reactor
        previous = getattr(reactor, "_gevent_threadpool_installation", None)
        if previous is not None:
            previous.uninstall()
        if reactor.threadpool is not None:
            # ReactorBase's own way to drop its pool: removes its startup/shutdown triggers and
            # stops it (a Twisted pool that was never started has no threads to join).
            reactor._stopThreadPool()

    def _use_cooperative_getaddrinfo(self) -> None:
        # Twisted's default resolver runs the C getaddrinfo() in the reactor's pool. In a greenlet
        # that call would block the whole OS thread (the reactor's, when in-loop), so while this
        # pool is installed the default resolver uses gevent's getaddrinfo, which waits
        # cooperatively for gevent's own resolver. A resolver someone installed is left alone.
        reactor = self.reactor
        current = reactor.nameResolver
        if (
            type(current) is _resolver.GAIResolver
            and current._getaddrinfo is _resolver.getaddrinfo
            and current._getThreadPool == reactor.getThreadPool
        ):
            reactor.installNameResolver(
                _resolver.GAIResolver(reactor, reactor.getThreadPool, gevent.socket.getaddrinfo)
            )
            self.resolver_replaced = True

    def uninstall(self) -> None:
        """Undo everything and stop the pool without waiting (the "during shutdown" trigger)."""
        reactor = self.reactor
        triggers = [self.drain_trigger, reactor._threadpoolStartupID, reactor.threadpoolShutdownID]
        for trigger in triggers:
            if trigger is not None:
                try:
                    reactor.removeSystemEventTrigger(trigger)
                except ValueError:
                    pass  # it already ran (or is running)
        self.drain_trigger = reactor._threadpoolStartupID = reactor.threadpoolShutdownID = None
        if reactor.threadpool is self.pool:
            reactor.threadpool = None
        self.guard.uninstall()
        if self.resolver_replaced:
            reactor.installNameResolver(_resolver.GAIResolver(reactor, reactor.getThreadPool))
            self.resolver_replaced = False
        if getattr(reactor, "_gevent_threadpool_installation", None) is self:
            reactor._gevent_threadpool_installation = None
        self.pool.stop(wait=False)

    def drain(self) -> Deferred[None]:
        """The "before shutdown" trigger: a Deferred that fires once no work is queued or
        running; after ``shutdown_timeout`` seconds the workers are killed instead."""
        reactor = self.reactor
        pool = self.pool
        done: Deferred[None] = Deferred()
        deadline = None if self.shutdown_timeout is None else reactor.seconds()
        if deadline is not None and self.shutdown_timeout is not None:
            deadline += self.shutdown_timeout
        killed = False

        def check() -> None:
            nonlocal killed
            if not pool.working and not pool._queue.qsize():
                done.callback(None)
                return
            if not killed and deadline is not None and reactor.seconds() >= deadline:
                killed = True
                log.msg(
                    f"{pool!r}: work still running {self.shutdown_timeout} s after reactor "
                    "shutdown began; killing its greenlets"
                )
                pool.kill()
            reactor.callLater(self.DRAIN_POLL, check)

        check()
        return done


def use_gevent_threadpool(
    reactor: Any,
    pool: GeventThreadPool | None = None,
    *,
    shutdown_timeout: float | None = 30.0,
) -> GeventThreadPool:
    """
    Make ``reactor``'s thread pool a GeventThreadPool: ``deferToThread``, ``callInThread`` and
    ``getThreadPool`` then use greenlets. Works on any reactor derived from Twisted's
    ``ReactorBase``; on a GeventReactor the workers run in-loop, elsewhere in the shared helper
    hub thread. Returns the pool::

        use_gevent_threadpool(reactor)

    The previous pool is stopped and replaced; the new one starts when the reactor runs (at once
    if it already does) and stops during reactor shutdown, which waits for its workers at most
    ``shutdown_timeout`` seconds (None: as long as they take) before killing them. While it is
    installed, Twisted's ``blockingCallFromThread`` called from a pool greenlet waits only that
    greenlet, and Twisted's default name resolver uses gevent's cooperative ``getaddrinfo``.
    After the reactor stops, the reactor is back to Twisted's defaults; call this again before
    running it again.

    Never blocks (except to stop a previous Twisted pool with busy threads, as Twisted does).
    Call it from the reactor's thread, before or while it runs.
    """
    # Stricter than gevent_deferred's check_reactor (methods a caller uses): installing swaps the
    # pool inside ReactorBase's own bookkeeping (threadpool, its startup and shutdown trigger IDs,
    # _stopThreadPool), which only a ReactorBase has.
    if not isinstance(reactor, ReactorBase):
        raise TypeError(
            "use_gevent_threadpool(reactor) expects a reactor derived from Twisted's "
            f"ReactorBase, got {reactor!r}"
        )
    if pool is None:
        pool = GeventThreadPool(0, 1000, "twisted.internet.reactor", reactor=reactor)
    elif not isinstance(pool, GeventThreadPool):
        raise TypeError(
            f"use_gevent_threadpool(pool=...) expects a GeventThreadPool or None, got {pool!r}"
        )
    if shutdown_timeout is not None and (
        not isinstance(shutdown_timeout, int | float) or shutdown_timeout < 0
    ):
        raise ValueError(
            "use_gevent_threadpool(shutdown_timeout=...) expects seconds >= 0 or None, "
            f"got {shutdown_timeout!r}"
        )
    _Installation(reactor, pool, shutdown_timeout).install()
    return pool
