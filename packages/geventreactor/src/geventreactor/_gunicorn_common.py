"""What both gunicorn workers do the same way: the reactor made after the fork, the heartbeat
sent from the reactor's clock, and the hard exit on a timeout abort."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from twisted.internet.task import LoopingCall

from gevent_deferred._in_loop import runs_on_this_hub
from gevent_reactor import GeventReactor

__all__ = [
    "Heartbeat",
    "exit_hard",
    "heartbeat_interval",
    "log_twisted_to_gunicorn",
    "reactor_after_fork",
]


def reactor_after_fork(worker_name: str) -> GeventReactor:
    """
    In a forked worker whose hub was reinitialised (C{gevent.reinit()}): install a GeventReactor
    as C{twisted.internet.reactor}, or keep the GeventReactor that a preloaded application
    installed in the master and never ran. Any other installed reactor is a configuration error.

    Never blocks. Must be called from the worker's main greenlet, before the application loads.
    """
    installed = sys.modules.get("twisted.internet.reactor")
    if installed is None:
        from gevent_reactor import install

        return install()
    if (
        isinstance(installed, GeventReactor)
        and runs_on_this_hub(installed)
        and not installed.running
        and not installed._startedBefore
    ):
        return installed
    raise RuntimeError(
        f"{worker_name} runs Twisted on GeventReactor, but {type(installed).__module__}."
        f"{type(installed).__qualname__} was installed as twisted.internet.reactor before the "
        "worker started: something imported twisted.internet.reactor in the gunicorn master "
        "(usually the application module, loaded there by --preload, or a config-file hook). "
        "Either drop --preload, or install GeventReactor in that module before anything imports "
        "the reactor (`import gevent_reactor; gevent_reactor.install()` at its top)."
    )


class Heartbeat:
    """
    Tells the gunicorn master that the worker lives, from a timed call of the reactor: while any
    greenlet lets the loop run it keeps beating; a handler that blocks the whole loop stops it, and
    the master then aborts the worker.
    """

    def __init__(self, reactor: Any, beat: Any, orphaned: Any, ppid: int) -> None:
        self._beat = beat
        self._orphaned = orphaned
        self._ppid = ppid
        self._call = LoopingCall(self._tick)
        self._call.clock = reactor

    def start(self, interval: float) -> None:
        """Beat now and every C{interval} seconds. Never blocks."""
        self._call.start(interval, now=True)

    def stop(self) -> None:
        """Never blocks."""
        if self._call.running:
            self._call.stop()

    def _tick(self) -> None:
        if os.getppid() != self._ppid:
            # The master is gone (a kill -9 of the master, or a re-exec): nobody will stop us.
            self.stop()
            self._orphaned()
            return
        self._beat()


def heartbeat_interval(worker_timeout: float) -> float:
    # gunicorn hands the worker half the master's --timeout; beat at least twice within it.
    if worker_timeout <= 0:
        return 1.0
    return max(0.05, min(1.0, worker_timeout / 2.0))


def exit_hard(worker: Any) -> None:
    """
    gunicorn's SIGABRT (sent after a worker missed its heartbeat): run the C{worker_abort} hook
    and leave the process at once. gunicorn's own handler raises SystemExit, which Twisted's
    loop (and a greenlet blocking the loop) would swallow.
    """
    worker.alive = False
    try:
        worker.cfg.worker_abort(worker)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        for handler in logging.getLogger("gunicorn.error").handlers:
            try:
                handler.flush()
            except Exception:
                pass
        os._exit(1)


def log_twisted_to_gunicorn() -> None:
    """Send Twisted's log events to gunicorn's error log (its C{gunicorn.error} logger), where
    tracebacks from protocol code and timed calls would otherwise be lost. Never blocks."""
    from twisted.logger import STDLibLogObserver, globalLogBeginner

    globalLogBeginner.beginLoggingTo(
        [STDLibLogObserver(name="gunicorn.error")], redirectStandardIO=False
    )
