"""Running a Twisted reactor (not gevent's) in a real OS thread of a gevent program."""

from __future__ import annotations

from typing import Any, cast

from ._checks import check_reactor
from ._in_loop import set_thread_reactor
from ._reactor_links import link_for
from ._reactor_protocol import RunnableReactor
from ._threads import allocate_lock, get_ident, start_new_thread, wait_real_lock

__all__ = ["ReactorThread"]


class ReactorThread:
    """
    Run a Twisted reactor such as epoll or asyncio in its own OS thread (the crochet pattern).

    For a gevent program that wants Twisted libraries: greenlets call into the reactor with
    ``blockingCallFromGreenlet(rt.reactor, f)`` or wait on its Deferreds with
    ``waitForDeferred(d, reactor=rt.reactor)``; only the calling greenlet blocks. The thread is
    real even after ``gevent.monkey.patch_all()``; Twisted's signal handlers are not installed
    (they belong to the main thread). When the reactor stops, pending waits fail with
    ``ReactorStoppedError``. Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(
        self, reactor: RunnableReactor | None = None, name: str = "twisted-reactor"
    ) -> None:
        if reactor is None:
            # The documented default: the global reactor, installed on first import.
            from twisted.internet import reactor as global_reactor

            reactor = cast(RunnableReactor, global_reactor)
        check_reactor("ReactorThread", reactor, "run", "callFromThread", argument="reactor")
        self.reactor: RunnableReactor = reactor
        self.name = name
        self._lock = allocate_lock()
        self._started = False
        self._running = allocate_lock()
        self._done = allocate_lock()
        self._error: BaseException | None = None
        self.thread_ident: int | None = None

    def __repr__(self) -> str:
        return f"<ReactorThread {self.name!r} {self.reactor!r}>"

    @property
    def running(self) -> bool:
        """True while the reactor thread runs. Never blocks. Callable from any thread."""
        return self._started and self._done.locked() and self._error is None

    def start(self, timeout: float = 10.0) -> ReactorThread:
        """
        Start the reactor in a new OS thread; return self once it runs.

        Blocks the current greenlet (other greenlets keep running) until the reactor runs, at
        most ``timeout`` seconds. Callable from any thread. A second call does nothing.
        """
        with self._lock:
            if self._started:
                return self
            if getattr(self.reactor, "running", False) or getattr(
                self.reactor, "_startedBefore", False
            ):
                raise RuntimeError(
                    f"{self!r}.start(): the reactor already runs or has run (Twisted reactors "
                    "cannot be restarted); give ReactorThread a fresh reactor"
                )
            self._started = True
            self._running.acquire()
            self._done.acquire()
            link = link_for(self.reactor)
            start_new_thread(self._main, (link,))
        if not wait_real_lock(self._running, timeout):
            raise TimeoutError(f"{self!r} did not start within {timeout} s")
        self._running.release()
        if self._error is not None:
            raise RuntimeError(f"{self!r}: the reactor failed to run") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """
        Stop the reactor and join its thread; pending waits fail with ``ReactorStoppedError``.

        Blocks the current greenlet (other greenlets keep running) until the thread has ended,
        at most ``timeout`` seconds (then ``TimeoutError``). Callable from any thread but the
        reactor's own. Does nothing if not started or already stopped.
        """
        if not self._started or not self._done.locked():
            return
        if self.thread_ident == get_ident():
            raise RuntimeError(
                f"{self!r}.stop() was called in the reactor's own thread, where joining it "
                "would deadlock; call reactor.stop() there, or stop() from another thread"
            )
        reactor = self.reactor
        reactor.callFromThread(lambda: reactor.stop() if reactor.running else None)
        if not wait_real_lock(self._done, timeout):
            raise TimeoutError(f"{self!r} did not stop within {timeout} s")
        self._done.release()

    def __enter__(self) -> ReactorThread:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _main(self, link: Any) -> None:
        reactor = self.reactor
        self.thread_ident = link.thread_ident = get_ident()
        set_thread_reactor(reactor)
        with link.lock:
            link.trigger_installed = True
        reactor.addSystemEventTrigger("after", "shutdown", link.sweep)
        reactor.callWhenRunning(self._running.release)
        try:
            reactor.run(installSignalHandlers=False)
        except BaseException as exc:
            self._error = exc
            if self._running.locked():
                self._running.release()
        finally:
            # Also after reactor.crash() or an error: no wait may outlive the reactor.
            link.sweep()
            set_thread_reactor(None)
            self._done.release()
