"""
The greenlets that handle I/O events, so that protocol code may block with gevent.

Readiness events are handled (C{doRead}/C{doWrite}) in a runner greenlet taken from a free list: one
event, or a batch of them (the events of a busy pass of the loop, and the writes they caused; see
L{gevent_reactor._io_dispatcher}).  If the handling returns, the runner goes back to the list: one switch
pair per job, and no greenlet held by an idle connection.  If it blocks (gevent switches to the hub),
the runner stays with that event, the rest of its batch is handed back to be run by another runner,
and the selectable it serves is I{held}: its watchers stop, so its later input waits in the kernel
and is delivered in order once the blocked call returns, and what is written to it meanwhile is
buffered and sent then (neither its protocol nor its producer is ever re-entered).  Everything else
keeps running.

A listening stream port is not held when C{connectionMade} blocks inside its C{doRead}: the connection
whose C{connectionMade} blocks is held instead, so other clients are still accepted and served.

While a selectable is held, calls of its C{connectionLost} (or C{readConnectionLost}) wait until the
blocked handler returns (see L{gevent_reactor._io_dispatcher}): Twisted never re-enters a protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from greenlet import getcurrent, greenlet
from twisted.logger import Logger

from ._io_types import Selectable

if TYPE_CHECKING:
    from ._io_dispatcher import IODispatcher

__all__: list[str] = []

_log = Logger(namespace="twisted.internet.base")

# Runners kept for reuse once a burst of blocked handlers is over; the others end.
MAX_IDLE_RUNNERS = 32


def is_accepting_port(selectable: object) -> bool:
    """
    Whether C{selectable} is a listening stream port, whose C{doRead} accepts connections.
    """
    # tcp.Port and unix.Port (and their subclasses) accept up to numberAccepts connections a call.
    return hasattr(selectable, "numberAccepts")


class IORunner(greenlet):
    """
    A greenlet that runs I/O event handling for the reactor and may block.
    """

    def __init__(self, dispatcher: IODispatcher, hub: greenlet) -> None:
        super().__init__(parent=hub)
        self._dispatcher = dispatcher
        # The job: which selectable, which direction. None while idle.
        self.selectable: Selectable | None = None
        self.is_read = True
        # Whether this job has blocked at least once; then the hub no longer waits for it.
        self.blocked = False
        # Whether the reactor killed this job (abortConnection, stop): not reported as an error.
        self.ended_by_reactor = False
        # (selectable, is_read) pairs this blocked job holds.
        self.held: list[tuple[Selectable, bool]] = []
        # The connection this job is setting up: accepted by a port's doRead, or a client whose
        # connect completed.  If its connectionMade blocks, its input waits until it returns.
        self.adopted: list[Selectable] = []
        # A batch of events (the ready events or the writes of a pass of the loop), and where in
        # it the job is.  None when the job is one event, or once the rest was handed back.
        self._batch: list[tuple[Selectable, bool]] | None = None
        self._next = 0

    def start_batch(self, events: list[tuple[Selectable, bool]]) -> None:
        """
        Make this idle runner's job the handling of each of C{events} (selectable, is_read), in order.
        """
        self._batch = events
        self._next = 0
        # A job is running while its selectable is set (the dispatcher waits on it).
        self.selectable, self.is_read = events[0]

    def batch_items(self) -> Iterator[tuple[Selectable, bool]]:
        """
        The events of the batch, each marked as this job's selectable and direction while handled.
        """
        # Ends once the rest of the batch is handed back (rest_of_batch).
        while self._batch is not None and self._next < len(self._batch):
            event = self._batch[self._next]
            self._next += 1
            self.selectable, self.is_read = event
            # A connection accepted by an earlier event of the batch is not this event's: if it
            # blocks, only what it accepted waits with it.
            if self.adopted:
                self.adopted.clear()
            yield event

    def rest_of_batch(self) -> list[tuple[Selectable, bool]]:
        """
        Take the events of the batch not handled yet (none if the job is not a batch).
        """
        batch = self._batch
        if batch is None:
            return []
        self._batch = None
        return batch[self._next :]

    def switch_out(self) -> None:
        # gevent calls this just before a blocking switch to the hub: the job is about to wait.
        self.blocked = True
        self._dispatcher.hold_for(self)

    def run(self) -> None:
        dispatcher = self._dispatcher
        to_hub = greenlet.switch
        hub = self.parent
        while True:
            try:
                if self._batch is not None:
                    dispatcher.run_batch(self)
                else:
                    dispatcher.handle_event(self)
            except BaseException:
                # Handlers' errors are logged where they happen; this is the reactor's own.
                _log.failure("Unexpected error in main loop.")
            finally:
                # Whatever happened, nothing stays held by a job that is over.
                self._batch = None
                self.selectable = None
                self.ended_by_reactor = False
                if self.adopted:
                    self.adopted.clear()
                while self.blocked:
                    # The hub resumed us from some other event; the dispatcher is long gone, so
                    # this runner releases what it held (running the connectionLost calls that
                    # waited for it, which may block in turn) and returns itself to the free list.
                    self.blocked = False
                    dispatcher.release(self)
            if not dispatcher.reuse(self):
                return  # enough runners are idle: this one ends
            to_hub(hub)


def current_runner() -> IORunner | None:
    """
    The runner greenlet currently running, if the caller runs in one.
    """
    current = getcurrent()
    return current if type(current) is IORunner else None
