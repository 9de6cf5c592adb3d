"""Blocking a greenlet (never its hub, never a reactor) until a Deferred fires."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import gevent
from gevent.exceptions import BlockingSwitchOutError
from gevent.hub import Waiter
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._checks import check_deferred, check_reactor, check_timeout
from ._errors import ReactorStoppedError, WaitTimeoutError, reactor_context_error
from ._in_loop import CROSS_THREAD, installed_reactor, where_to_wait
from ._mailbox import mailbox_for
from ._outcomes import follow
from ._reactor_links import ReactorLink, link_for
from ._reactor_protocol import TwistedReactor

__all__ = ["blockingCallFromGreenlet", "waitForDeferred"]

_log = Logger()


def unwrap(result: Any) -> Any:
    """Return a result, or raise a Failure's exception with its original traceback."""
    if not isinstance(result, Failure):
        return result
    exc = result.value
    if exc is None:  # a Failure always carries its exception; this only narrows the type
        raise TypeError(f"unwrap(result): a Failure without an exception: {result!r:.80}")
    tb = result.tb
    noted = getattr(exc, "_gd_noted", False)
    if tb is None and result.frames and sys.version_info >= (3, 11) and not noted:
        # Twisted dropped the traceback (the failure sat unhandled in the Deferred before we
        # attached); keep its text, which Twisted still has.
        exc.add_note("Original traceback (from Twisted):\n" + result.getTraceback())
        exc._gd_noted = True
    raise exc.with_traceback(tb)


class _InLoopWait:
    """A wait where the Deferred fires in this thread (in-loop, or no reactor running)."""

    __slots__ = ("abandoned", "answered", "cancelling", "hub", "waiter")

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.waiter = Waiter(hub)
        self.abandoned = False
        self.answered = False  # the shutdown sweep answered first
        self.cancelling = False

    def on_result(self, result: Any) -> Any:
        # Runs wherever the Deferred fires in this thread: the hub, the reactor's context, a
        # greenlet, or synchronously inside addBoth when it had already fired.
        if self.abandoned or self.answered:
            return _passed_on(self, result)
        self._answer(result)
        return None

    def post(self, result: Any) -> None:
        # The reactor's shutdown sweep, in this thread: the Deferred will never fire.
        if self.abandoned or self.answered:
            return
        self.answered = True
        self._answer(result)

    def _answer(self, result: Any) -> None:
        waiter = self.waiter
        if waiter.greenlet is None or gevent.getcurrent() is self.hub:
            waiter.switch(result)  # stores it, or switches from the hub as Waiter requires
        else:
            # Wake the waiter from the hub, not from this greenlet: a switch from a throwaway
            # greenlet can be stranded by raw switches (pytest-twisted's), one from the hub not.
            self.hub.loop.run_callback(waiter.switch, result)


class _CrossThreadWait:
    """A wait on a reactor in another thread: the Deferred lives there, the waiter here."""

    __slots__ = ("abandoned", "cancelling", "deferred", "delivered", "mailbox", "waiter")

    def __init__(self, hub: Any) -> None:
        self.waiter = Waiter(hub)
        self.mailbox = mailbox_for(hub)
        self.abandoned = False
        self.cancelling = False
        self.delivered = False
        self.deferred: Deferred | None = None

    def on_result(self, result: Any) -> Any:
        # In the reactor thread.
        if self.abandoned:
            return _passed_on(self, result)
        self.mailbox.post(self, result)
        return None

    def post(self, result: Any) -> None:
        # Any thread (the reactor shutdown sweep uses it).
        self.mailbox.post(self, result)

    def deliver(self, result: Any) -> None:
        # In the waiting greenlet's hub.
        if self.delivered:
            return
        self.delivered = True
        if not self.abandoned:
            self.waiter.switch(result)
        elif isinstance(result, Failure) and not result.check(CancelledError):
            # The result crossed over just as the waiter gave up: nobody will see this failure,
            # so say so, as Twisted does for an unhandled failure in a Deferred.
            _log.failure("Unretrieved failure of an abandoned waitForDeferred()", result)

    def cancel_in_reactor(self) -> None:
        d = self.deferred
        if d is not None:
            d.cancel()


def _passed_on(wait: Any, result: Any) -> Any:
    # The waiter is gone: a CancelledError we caused is ours to swallow; anything else goes on
    # down the chain (and is logged by Twisted if nobody handles it).
    if wait.cancelling and isinstance(result, Failure) and result.check(CancelledError):
        return None
    return result


def _block(
    api: str, wait: Any, timeout: float | None, cancel: Callable[[], None], cancel_on_kill: bool
) -> Any:
    """Wait on ``wait.waiter``; on timeout or kill, abandon the wait (and cancel)."""
    timer = None
    if timeout is not None:
        timer = gevent.Timeout(timeout)
        timer.start()
    try:
        return wait.waiter.get()
    except BaseException as exc:
        wait.abandoned = True
        timed_out = timer is not None and exc is timer
        if isinstance(exc, BlockingSwitchOutError):
            # Nothing was switched: a context that must not block refused (GeventReactor's own).
            raise reactor_context_error(api) from exc
        if timed_out or cancel_on_kill:
            wait.cancelling = True
            cancel()
        if timed_out:
            raise WaitTimeoutError(
                f"{api}() gave up after {timeout} s; the Deferred has been cancelled"
            ) from None
        raise
    finally:
        if timer is not None:
            timer.close()


def _block_cross_thread(
    api: str,
    link: ReactorLink,
    reactor: TwistedReactor,
    start: Callable[[_CrossThreadWait], None],
    timeout: float | None,
    cancel_on_kill: bool,
) -> Any:
    wait = _CrossThreadWait(gevent.get_hub())
    link.register(wait, reactor)
    mailbox = wait.mailbox
    mailbox.acquire()
    try:
        reactor.callFromThread(start, wait)
        result = _block(
            api,
            wait,
            timeout,
            lambda: reactor.callFromThread(wait.cancel_in_reactor),
            cancel_on_kill,
        )
    finally:
        mailbox.release()
        link.unregister(wait)
    return unwrap(result)


def waitForDeferred(
    d: Deferred | Any,
    timeout: float | None = None,
    reactor: TwistedReactor | None = None,
    *,
    cancel_on_kill: bool = True,
) -> Any:
    """
    Block the current greenlet until ``d`` fires; return its result or raise its failure.

    Blocks the current greenlet. Must not be called from the hub. ``d`` is a Deferred, or a
    coroutine (run as Twisted's ``ensureDeferred`` does). A failure is raised with its original
    traceback; a Deferred that waits on another Deferred is followed to the end. An already
    fired ``d`` (in-loop) returns without switching.

    ``reactor`` (default: the installed global reactor, if any; none is installed by this call)
    decides how to wait: a reactor driven by this thread's hub (``IHubReactor``), or none
    running, waits in-loop; a reactor running in another OS thread gets ``d`` handed over (it is
    then only touched in that thread) and the result comes back thread-safely. Calling it in a
    non-gevent reactor's own thread, or in GeventReactor's context, raises
    ``WrongContextError`` at once.

    On ``timeout`` seconds, ``d`` is cancelled and ``WaitTimeoutError`` (a ``TimeoutError``) is
    raised. If the waiting greenlet is killed or a ``gevent.Timeout`` fires, ``d`` is cancelled
    unless ``cancel_on_kill`` is false. If the reactor shuts down first, ``ReactorStoppedError``.
    """
    api = "waitForDeferred"
    check_deferred(api, "d", d)
    check_timeout(api, timeout)
    if reactor is None:
        reactor = installed_reactor()
    else:
        check_reactor(api, reactor)
    mode, where = where_to_wait(api, reactor)
    if mode == CROSS_THREAD:

        def start(wait: _CrossThreadWait) -> None:
            if wait.abandoned:
                return
            deferred = wait.deferred = ensureDeferred(d)
            deferred.addBoth(wait.on_result)

        return _block_cross_thread(api, where, reactor, start, timeout, cancel_on_kill)

    deferred = ensureDeferred(d)
    wait = _InLoopWait(where)
    deferred.addBoth(wait.on_result)
    if wait.waiter.greenlet is None and wait.waiter.ready():
        return unwrap(wait.waiter.get())  # it had fired: no switch
    link = _register_local(wait, reactor)
    try:
        return unwrap(_block(api, wait, timeout, deferred.cancel, cancel_on_kill))
    finally:
        if link is not None:
            link.unregister(wait)


def _register_local(wait: _InLoopWait, reactor: TwistedReactor) -> ReactorLink | None:
    """Let a running reactor on this hub fail ``wait`` when it shuts down (crochet's rule)."""
    if reactor is None or not getattr(reactor, "running", False):
        return None  # nobody runs it (yet): only code in this thread can fire the Deferred
    link = link_for(reactor)
    link.register(wait, reactor, same_thread=True)
    return link


def blockingCallFromGreenlet(
    reactor: TwistedReactor, f: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """
    Call ``f(*args, **kwargs)`` in the reactor's context and block until its result is ready.

    Blocks the current greenlet. Must not be called from the hub. The greenlet-safe twin of
    Twisted's ``blockingCallFromThread``: ``f`` may return a value, a Deferred or a coroutine;
    the result is returned, a failure raised with its original traceback. With a reactor
    driven by this thread's hub, ``f`` runs in a ``callLater(0)``; with a reactor in another
    thread, through ``callFromThread``. If the waiting greenlet is killed (or a ``gevent.Timeout``
    fires) the Deferred is cancelled. Raises ``WrongContextError`` in the reactor's own thread or
    context, ``ReactorStoppedError`` if the reactor has stopped.
    """
    api = "blockingCallFromGreenlet"
    check_reactor(api, reactor)
    if not callable(f):
        raise TypeError(
            f"{api}(reactor, f) expects a callable f, got {type(f).__name__}: {f!r:.80}"
        )
    mode, where = where_to_wait(api, reactor)
    if mode == CROSS_THREAD:

        def start(wait: _CrossThreadWait) -> None:
            if wait.abandoned:
                return
            deferred = wait.deferred = _call(f, args, kwargs)
            deferred.addBoth(wait.on_result)

        return _block_cross_thread(api, where, reactor, start, None, True)

    if not getattr(reactor, "running", False) and not getattr(reactor, "_started", False):
        raise ReactorStoppedError(
            f"{api}(): {reactor!r} is not running, so f would never be called; start it first "
            "(reactor.run() in this thread's main greenlet, or ReactorThread(reactor).start())"
        )
    wait = _InLoopWait(where)
    box: list[Any] = []

    def start_here() -> None:
        deferred = _call(f, args, kwargs)
        box.append(deferred)
        deferred.addBoth(wait.on_result)

    link = _register_local(wait, reactor)
    delayed = reactor.callLater(0, start_here)

    def cancel() -> None:
        if delayed.active():
            delayed.cancel()
        elif box:
            box[0].cancel()

    try:
        return unwrap(_block(api, wait, None, cancel, True))
    finally:
        if link is not None:
            link.unregister(wait)


def _call(f: Callable[..., Any], args: Any, kwargs: Any) -> Deferred:
    # Like maybeDeferred, and a coroutine result is run as ensureDeferred runs it.
    return maybeDeferred(f, *args, **kwargs).addCallback(follow)
