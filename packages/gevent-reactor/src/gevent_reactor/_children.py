"""
Child processes, watched with the loop's child watchers instead of Twisted's SIGCHLD handler.

gevent reaps every child of the process once its SIGCHLD handling is on (gevent.subprocess turns it
on), so Twisted's own reaping would see ECHILD and never call C{processEnded}.  A child watcher started
right after the fork, before the loop can run, always gets the child's status instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import process as twisted_process
from twisted.logger import Logger

from gevent_deferred._watchers import close_watcher

if TYPE_CHECKING:
    from gevent_deferred._loop_types import ChildWatcher, Loop

__all__: list[str] = []

_log = Logger()


class ChildWatchers:
    """
    The child watchers of one reactor.

    @param loop: the gevent loop (it must be the default loop: only it can watch children).
    @param run_in_context: runs a callable in the reactor's own context; called from the hub.
    """

    def __init__(self, loop: Loop, run_in_context: Callable[[Callable[[], None]], None]) -> None:
        self._loop = loop
        self._run_in_context = run_in_context
        self._watchers: dict[int, ChildWatcher] = {}

    def watch(self, process: Any, running: bool) -> None:
        """
        Deliver C{process}'s exit status to it when it ends.  Never blocks.
        """
        pid = process.pid
        if pid is None:
            return  # Twisted reaped it already, when it registered it.
        if running and not self._watchers:
            self._assert_handler()
        watcher = self._loop.child(pid, False)
        watcher.start(self._on_exit, watcher, process)
        self._watchers[pid] = watcher

    def reactor_started(self) -> None:
        """
        Make sure children spawned before the reactor ran are noticed.  Never blocks.
        """
        if not self._watchers:
            return
        self._assert_handler()
        # A child may have ended while someone else's SIGCHLD handler was installed: ask directly,
        # as Twisted's reactors do when they install their own handler.
        for pid, watcher in list(self._watchers.items()):
            handler = twisted_process.reapProcessHandlers.get(pid)
            if handler is not None:
                handler.reapProcess()
            if pid not in twisted_process.reapProcessHandlers:
                self._forget(pid, watcher)

    def _assert_handler(self) -> None:
        # Anyone may have replaced the loop's SIGCHLD handler since it was installed (Twisted's
        # ReactorBuilder tests set SIG_DFL); libuv would then never hear of a child again.
        self._loop.reset_sigchld()
        self._loop.install_sigchld()

    def _forget(self, pid: int, watcher: ChildWatcher) -> None:
        # Also called from the watcher's own callback (_on_exit): closed from a later callback.
        close_watcher(watcher, later_on=self._loop)
        self._watchers.pop(pid, None)

    def _on_exit(self, watcher: ChildWatcher, process: Any) -> None:
        pid, status = watcher.pid, watcher.rstatus
        self._forget(pid, watcher)
        self._run_in_context(lambda: _ended(process, pid, status))


def _ended(process: Any, pid: int, status: int) -> None:
    if process.pid is None:
        return
    try:
        twisted_process.unregisterReapProcessHandler(pid, process)
        process.processEnded(status)
    except BaseException:
        _log.failure("while handling the end of child process {pid}", pid=pid)
