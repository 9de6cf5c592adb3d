"""
The I/O path of L{GeventReactor}: readers and writers on a gevent loop, and the runner greenlets
in which their events are handled.  One object, L{IODispatcher}, owns all of it; the reactor's
C{IReactorFDSet} methods only call it.

How a byte travels, for a TCP connection echoing what it reads:

 1. C{addReader(transport)} (Twisted's C{startReading}) makes a loop I/O watcher for its fd.
    The loop watches it while the reactor runs or iterates (L{IODispatcher.start}).
 2. Input arrives: the loop calls L{IODispatcher._on_io} in the hub.  If it is the only event of
    this pass of the loop, a runner greenlet from the free list (L{gevent_reactor._runners}) is
    switched to at once; if the pass has more (libev counts them), the events are queued in
    C{_ready} and one runner handles them all at the end of the pass (C{_run_ready}), one switch
    pair per pass instead of per event.  (libuv does not count a pass's events: there each event
    has its runner.)
 3. In the runner, C{_handle_in} sets the log context Twisted's reactors set (the transport's
    C{logPrefix}), and C{_attempt} calls C{transport.doRead()}: the socket is read and the bytes
    go to C{protocol.dataReceived}.  That code may block with gevent (see 6).
 4. C{dataReceived} calls C{transport.write(data)}: Twisted buffers it and calls C{addWriter}.
    A connected socket is almost always writable, so no watcher is made: the writer goes on
    C{_write_soon}, to be tried at the end of the pass (Twisted's epoll reactor spends two
    C{epoll_ctl} calls on every response instead).
 5. Back in C{_read_or_write}: the read was the only event of its pass, so its reply is written
    at once, in the same runner (C{doWrite}); Twisted's transport empties its buffer and calls
    C{removeWriter}, which also drops the pending end-of-pass entry.  The bytes are out.  In a
    busy pass, the writes go out together after all its events, in the same runner
    (C{run_batch}), or in one runner from C{_flush_writes} before the loop polls again.  Only a
    write that leaves data behind arms a write watcher (C{_arm_writer}); a write caused by a write
    (a producer refilling its consumer from C{doWrite}) waits for the loop to poll, as on
    Twisted's reactors, so that one fast transfer cannot keep timers and other connections
    waiting.
 6. If C{dataReceived} blocks, gevent calls the runner's C{switch_out} before switching to the
    hub: L{IODispatcher.hold_for} I{holds} the connection (its watchers stop, so its later input
    waits in the kernel, and what it writes meanwhile is buffered), hands the rest of the batch to
    another runner, and everything else keeps running.  When the handler returns,
    L{IODispatcher.release} watches the connection again and the runner goes back to the free list.
    Calls of a held connection's C{connectionLost}/C{readConnectionLost} wait until then, as
    Twisted never re-enters a protocol; if the connection was closing cleanly, what the handler
    wrote is sent first; if it was aborted, its blocked handlers are killed (C{GreenletExit}) so
    that it ends now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent import GreenletExit
from gevent.hub import Hub
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.posixbase import _NO_FILEDESC
from twisted.internet.tcp import BaseClient
from twisted.logger import Logger
from twisted.python import context as twisted_context
from twisted.python import log
from twisted.python.failure import Failure
from twisted.python.log import ILogContext

from ._io_types import LoopWatcher, Selectable
from ._runners import MAX_IDLE_RUNNERS, IORunner, current_runner, is_accepting_port

__all__ = ["IODispatcher"]

_READ = 1
_WRITE = 2

# The calls that end a connection; they wait while one of its handlers is blocked.
_LOSS_METHODS = ("connectionLost", "readConnectionLost")
_log = Logger()
# What Twisted's reactors log (log.err) for an error escaping a handler.
_UNHANDLED = "Unhandled Error"
# How long shutdown waits for killed handlers to be over.
END_HANDLERS_GRACE = 1.0


class IODispatcher:
    """
    The readers and writers of one reactor on one gevent loop, and the runner greenlets that
    handle their events: the loop watchers, the events of the current pass, the writes waiting
    for the end of the pass, the selectables held by blocked handlers and the losses waiting for
    them.  L{GeventReactor}'s C{IReactorFDSet} methods call the methods of the same names here
    (C{removeAll}, which keeps the reactor's internal readers, is the reactor's own).

    @param hub: the hub whose loop watches the file descriptors; runners are its children.
    @param polling: Twisted's C{_ContinuousPolling}, for what the loop refuses (regular files).
    @param disconnect: the reactor's C{_disconnectSelectable(selectable, why, is_read)}.
    @param call_later: the reactor's C{callLater}, to run a call in the reactor's own context.
    @param close_soon: stops a watcher now and closes it from a later loop callback.
    """

    def __init__(
        self,
        hub: Hub,
        polling: Any,
        disconnect: Callable[[Any, Any, bool], None],
        call_later: Callable[..., Any],
        close_soon: Callable[[Any], None],
    ) -> None:
        self._hub = hub
        self._loop = hub.loop
        self._polling = polling
        self._disconnect = disconnect
        self._call_later = call_later
        self._close_soon = close_soon
        #: Whether the loop serves the reactor (it runs or iterates); see L{start} and L{stop}.
        self.watching = False
        self._readers: dict[Selectable, LoopWatcher] = {}
        # A writer's watcher is None until a write attempt left data behind (see addWriter).
        self._writers: dict[Selectable, LoopWatcher | None] = {}
        # Write events for writers without a watcher, as (writer, False): tried at the end of the
        # loop's pass (see addWriter).
        self._write_soon: list[tuple[Selectable, bool]] = []
        self._flush_scheduled = False
        # I/O events of the current pass of the loop, handled together at its end (see _on_io).
        self._ready: list[tuple[Selectable, bool]] = []
        self._held_readers: set[Selectable] = set()
        self._held_writers: set[Selectable] = set()
        self._idle_runners: list[IORunner] = []
        # Runners whose job blocked and is not over yet.
        self._blocked_runners: set[IORunner] = set()
        # Held selectables: the loss calls made while held, run when no longer held.
        self._losses_later: dict[Selectable, list[tuple[str, Failure]]] = {}
        # Fired once no runner is blocked, while shutdown waits for that.
        self._handlers_ended: Deferred[None] | None = None
        # libuv stops a poll handle after reporting an error on it (POLLERR, a reset peer) although
        # data queued before the error is still readable: its events come with their status, so
        # that such a watcher can be started again (libev keeps reporting, like epoll).
        self._watch_events = "libuv" in type(self._loop).__module__
        # Bound once: a watcher keeps its callback, and a bound method made at each start is
        # 64 bytes more per connection (an idle connection's reader watcher keeps it for good).
        self._io_callback = self._on_io_status if self._watch_events else self._on_io

    def events_waiting(self) -> bool:
        """Whether I/O events of this pass of the loop still wait to be handled. Never blocks."""
        return bool(self._ready)

    def start(self) -> None:
        """The reactor starts running (or iterating): watch everything registered. Never blocks."""
        self.watching = True
        for selectable, watcher in self._readers.items():
            if selectable not in self._held_readers:
                self._start(watcher, selectable, True)
        # Rebuilt, not appended to: a crash() may have left it full.
        self._write_soon = []
        for selectable, writer_watcher in self._writers.items():
            if selectable in self._held_writers:
                continue
            if writer_watcher is None:
                self._write_soon.append((selectable, False))
            else:
                self._start(writer_watcher, selectable, False)
        self._schedule_flush()

    def stop(self) -> None:
        """The reactor stops: the loop no longer watches for it. Never blocks."""
        self.watching = False
        for watcher in self._readers.values():
            watcher.stop()
        for writer_watcher in self._writers.values():
            if writer_watcher is not None:
                writer_watcher.stop()

    def _start(self, watcher: LoopWatcher, selectable: Selectable, is_read: bool) -> None:
        if self._watch_events:
            watcher.start(self._io_callback, selectable, is_read, pass_events=True)
        else:
            watcher.start(self._io_callback, selectable, is_read)

    # -- I/O events: handled in runner greenlets that may block --------------------------------

    def _on_io_status(self, events: int, selectable: Selectable, is_read: bool) -> None:
        # libuv: a negative status means libuv stopped the poll handle (see __init__).  Started
        # again, it keeps reporting until the selectable reads the error or is removed, as epoll
        # would; what is still queued before the error is read first.
        if events < 0:
            watched = self._readers if is_read else self._writers
            watcher = watched.get(selectable)
            if watcher is not None:
                watcher.stop()
                self._start(watcher, selectable, is_read)
        self._on_io(selectable, is_read)

    def _on_io(self, selectable: Selectable, is_read: bool) -> None:
        ready = self._ready
        if ready or self._loop.pendingcnt:
            # More events wait in this pass (libev counts them; libuv does not, so there events
            # are handled one per runner): all of them go to one runner at the end of the pass,
            # one switch pair per pass instead of one per event.
            ready.append((selectable, is_read))
            if len(ready) == 1:
                self._loop.run_callback(self._run_ready)
            return
        idle = self._idle_runners
        runner = idle.pop() if idle else IORunner(self, self._hub)
        runner.selectable = selectable
        runner.is_read = is_read
        self._dispatch(runner)

    def _run_ready(self) -> None:
        ready, self._ready = self._ready, []
        if ready and self.watching:
            # (When not watching, the loop reports them again once the reactor runs.)
            self._run_in_runner(ready)

    def _run_in_runner(self, events: list[tuple[Selectable, bool]]) -> None:
        idle = self._idle_runners
        runner = idle.pop() if idle else IORunner(self, self._hub)
        runner.start_batch(events)
        self._dispatch(runner)

    def run_batch(self, runner: IORunner) -> None:
        # In the runner: each event of the batch, then the writes they caused, under one entry on
        # the log context stack (one push for the batch; each event gets its own log context in
        # it, as with callWithLogger).
        readers, writers = self._readers, self._writers
        held_readers, held_writers = self._held_readers, self._held_writers
        contexts, entry, base = _push_log_context()
        try:
            for round_ in range(2):
                for selectable, is_read in runner.batch_items():
                    if is_read:
                        if selectable not in readers or selectable in held_readers:
                            continue  # removed or held since the event was queued
                    elif selectable not in writers or selectable in held_writers:
                        continue
                    self._handle_in(runner, entry, base, selectable, is_read, False)
                    if runner.blocked:
                        # _hold_for handed the rest of the batch back, and _release will arm
                        # this writer's watcher, if it needs one, when the job is done.
                        return
                    if not is_read and writers.get(selectable, False) is None:
                        if selectable not in held_writers:
                            self._arm_writer(selectable)
                if round_ or not self._write_soon:
                    return
                pending, self._write_soon = self._write_soon, []
                runner.start_batch(pending)
        finally:
            _pop_log_context(contexts, entry)
            # Only if the handling raised past us: what was not tried yet, writes taken off
            # _write_soon included, is tried again, not lost.
            self._requeue(runner.rest_of_batch())
            self._schedule_flush()

    def _dispatch(self, runner: IORunner) -> None:
        runner.switch()
        while runner.selectable is not None:
            if runner.blocked:
                # It waits on gevent; it returns itself to the free list when done.
                return
            # Control came back through a raw switch elsewhere before the job was done.
            runner.switch()

    def reuse(self, runner: IORunner) -> bool:
        # In the runner, its job done: back to the free list, unless enough runners wait there.
        idle = self._idle_runners
        if len(idle) >= MAX_IDLE_RUNNERS:
            return False
        idle.append(runner)
        return True

    def handle_event(self, runner: IORunner) -> None:
        # One event in its own runner (its reply may go out at once).
        selectable = runner.selectable
        assert selectable is not None  # a job's selectable is set while it runs
        contexts, entry, base = _push_log_context()
        try:
            self._handle_in(runner, entry, base, selectable, runner.is_read, True)
        finally:
            _pop_log_context(contexts, entry)

    def _handle_in(
        self,
        runner: IORunner,
        entry: dict,
        base: dict,
        selectable: Selectable,
        is_read: bool,
        alone: bool,
    ) -> None:
        # As log.callWithLogger(selectable, ...): while it reads or writes, the log context in
        # entry (our place on the context stack) is a fresh copy of base whose "system" is the
        # selectable's logPrefix, and what it raises is logged there.
        try:
            system = selectable.logPrefix()
        except BaseException:
            system = "(buggy logPrefix method)"
            log.err(system=system)
        log_context = base.copy()
        log_context["system"] = system
        entry[ILogContext] = log_context
        try:
            self._read_or_write(runner, selectable, is_read, alone)
        except BaseException:
            log.err(system=system)

    def _read_or_write(
        self, runner: IORunner, selectable: Selectable, is_read: bool, alone: bool
    ) -> None:
        try:
            # As Twisted's reactors: a descriptor that is gone (or whose fileno() fails) ends it.
            if selectable.fileno() == -1:
                self._disconnect(selectable, _NO_FILEDESC, is_read)
                return
        except BaseException as e:
            _log.failure(_UNHANDLED)
            self._disconnect(selectable, e, is_read)
            return
        if (
            self._attempt(selectable, is_read)
            and alone
            and is_read
            and self._writers.get(selectable, False) is None
            and selectable not in self._held_writers
        ):
            # The protocol wrote while reading the only event of this pass of the loop: send the
            # reply now, in this runner (lowest latency, no flush).  The replies of a busy pass go
            # out together after its events: on loopback, replies sent together wake their idle
            # peers less often (twisted.web keep-alive: about 8% more requests/s).
            self._attempt(selectable, False)

    def _attempt(self, selectable: Selectable, is_read: bool) -> bool:
        # One doRead or doWrite; False if it ended the connection.  As Twisted's reactors, any
        # exception (a gevent.Timeout, a killed handler's GreenletExit) is logged and ends the
        # connection; handlers the reactor itself ended (abortConnection, stop) are not reported.
        try:
            why = selectable.doRead() if is_read else selectable.doWrite()
        except GreenletExit as e:
            why = e
            runner = current_runner()
            if runner is None or not runner.ended_by_reactor:
                _log.failure(_UNHANDLED)
        except BaseException as e:
            why = e
            _log.failure(_UNHANDLED)
        if why:
            self._disconnect(selectable, why, is_read)
            return False
        return True

    def hold_for(self, runner: IORunner) -> None:
        # Runs in the runner, each time it starts to block: its selectable stops being watched
        # (reads and writes: nothing else of it runs, so neither its protocol nor its producer is
        # re-entered), and so does the connection it is setting up, until the job is done.  The
        # rest of its batch goes to another runner: one blocked handler must not hold the others.
        self._requeue(runner.rest_of_batch())
        self._blocked_runners.add(runner)
        selectable = runner.selectable
        if selectable is not None and not (runner.is_read and is_accepting_port(selectable)):
            self._hold(runner, selectable, True)
            self._hold(runner, selectable, False)
        for adopted in runner.adopted:
            self._hold(runner, adopted, True)
            self._hold(runner, adopted, False)
        runner.adopted.clear()

    def _requeue(self, events: list[tuple[Selectable, bool]]) -> None:
        # Events of a batch that its runner will not handle go to another runner, this pass.
        if events:
            if not self._ready:
                self._loop.run_callback(self._run_ready)
            self._ready.extend(events)

    def _direction(
        self, is_read: bool
    ) -> tuple[
        set[Selectable], dict[Selectable, LoopWatcher] | dict[Selectable, LoopWatcher | None]
    ]:
        # (held, watched) for reading or writing.
        if is_read:
            return self._held_readers, self._readers
        return self._held_writers, self._writers

    def _hold(self, runner: IORunner, selectable: Selectable, is_read: bool) -> None:
        held, watched = self._direction(is_read)
        if selectable in held:
            return
        held.add(selectable)
        runner.held.append((selectable, is_read))
        watcher = watched.get(selectable)
        if watcher is not None:
            watcher.stop()
        if selectable not in self._losses_later:
            self._defer_losses(selectable)

    def release(self, runner: IORunner) -> None:
        # In the runner, its blocked job done: what it held is watched again, and the loss calls
        # that waited for it run now (they may block in turn; the runner then holds again).
        self._blocked_runners.discard(runner)
        held_now, runner.held = runner.held, []
        unheld = []
        for selectable, is_read in held_now:
            held, watched = self._direction(is_read)
            held.discard(selectable)
            if selectable not in self._held_readers and selectable not in self._held_writers:
                unheld.append(selectable)
            if selectable not in watched:
                continue
            watcher = watched[selectable]
            if watcher is None:
                self._write_soon.append((selectable, False))
                self._schedule_flush()
            elif self.watching:
                self._start(watcher, selectable, is_read)
        for selectable in unheld:
            calls = self._undefer_losses(selectable)
            if calls:
                self._run_loss(runner, selectable, *calls[0])
        if self._handlers_ended is not None and not self._blocked_runners:
            self._call_later(0, _fire_once, self._handlers_ended)  # in the reactor's context
            self._handlers_ended = None

    # -- calls that end a held connection wait until it is released ----------------------------

    def _defer_losses(self, selectable: Selectable) -> None:
        calls: list[tuple[str, Failure]] = []
        try:
            for name in _LOSS_METHODS:
                if hasattr(selectable, name):
                    setattr(selectable, name, _LossLater(self, selectable, calls, name))
        except (AttributeError, TypeError):
            # A selectable that takes no attributes (__slots__): its losses cannot wait.
            _restore_losses(selectable)
            return
        self._losses_later[selectable] = calls

    def _undefer_losses(self, selectable: Selectable) -> list[tuple[str, Failure]]:
        calls = self._losses_later.pop(selectable, None)
        if calls is None:
            return []
        _restore_losses(selectable)
        if calls and calls[0][1].check(ConnectionDone) and self._is_writing(selectable):
            # The connection was closing cleanly, and its handler wrote while it blocked: that
            # write goes out first, then the connection ends again the same way.
            return []
        return calls

    def _run_loss(
        self, runner: IORunner, selectable: Selectable, name: str, reason: Failure
    ) -> None:
        runner.selectable, runner.is_read = selectable, True
        try:
            log.callWithLogger(selectable, getattr(selectable, name), reason)
        finally:
            runner.selectable = None

    def _is_writing(self, selectable: Selectable) -> bool:
        return selectable in self._writers or selectable in self._polling._writers

    def end_handlers_of(self, selectable: Selectable) -> None:
        for runner in self._blocked_runners:
            if any(held is selectable for held, _ in runner.held):
                self._loop.run_callback(_throw_exit, runner)

    def end_blocked_handlers(self) -> Deferred[None] | None:
        # Before shutdown: every blocked handler is killed (GreenletExit, as gevent.kill does), so
        # that its connection ends with connectionLost and nothing outlives the reactor.  Shutdown
        # goes on when all are over, or after END_HANDLERS_GRACE seconds at most.
        if not self._blocked_runners:
            return None
        ended: Deferred[None] = Deferred()
        self._handlers_ended = ended
        for runner in list(self._blocked_runners):
            self._loop.run_callback(_throw_exit, runner)
        grace = self._call_later(END_HANDLERS_GRACE, _fire_once, ended)
        return ended.addBoth(_cancel_and_pass, grace)

    def forget_held_losses(self) -> None:
        """
        Let the losses of held connections happen at once from now on (the reactor disconnects
        everything). Never blocks.
        """
        for selectable in list(self._losses_later):
            self._losses_later.pop(selectable)
            _restore_losses(selectable)

    # -- IReactorFDSet ------------------------------------------------------------------------

    def addReader(self, reader: Selectable) -> None:
        """
        Watch C{reader} for read readiness.  Never blocks.
        """
        if reader in self._readers or reader in self._polling._readers:
            return
        watcher = self._watch(reader, _READ)
        if watcher is None:
            self._polling.addReader(reader)
            return
        self._readers[reader] = watcher
        runner = current_runner()
        if runner is not None:
            if reader is runner.selectable:
                # A client whose connect completed: if its connectionMade blocks, its input
                # must wait until it returns.
                runner.adopted.append(reader)
            elif runner.is_read and getattr(reader, "server", None) is runner.selectable:
                # A connection accepted by the port this job reads.  Only the newest one's
                # connectionMade runs now: those accepted before it in the same doRead are set up.
                runner.adopted[:] = [reader]
        if self.watching and reader not in self._held_readers:
            self._start(watcher, reader, True)

    def addWriter(self, writer: Selectable) -> None:
        """
        Watch C{writer} for write readiness.  Never blocks.
        """
        if writer in self._writers or writer in self._polling._writers:
            return
        self._writers[writer] = None
        if isinstance(writer, BaseClient) and not writer.connected:
            # Connecting: wait for the loop like any reactor, so that the peer's accept is seen
            # first and events keep the order protocols (and Twisted's tests) expect.
            self._arm_writer(writer)
            return
        runner = current_runner()
        if (
            runner is not None
            and runner.selectable is writer
            and not runner.is_read
            and getattr(writer, "producer", None) is not None
        ):
            # A producer refilling its consumer from the consumer's own doWrite (a file transfer):
            # the next write waits for the loop to poll, as Twisted's reactors make it wait, so
            # that one fast transfer cannot keep timers and other connections waiting.  Armed
            # after this callback: libuv would report a watcher started for the fd inside its
            # own event's callback in that same callback, and so the whole transfer at once.
            self._loop.run_callback(self._arm_refilled, writer)
            return
        # A connected socket is almost always writable: try the write at the end of this pass of
        # the loop and arm a watcher only if data remains.  Twisted's epoll reactor spends two
        # epoll_ctl calls on every response instead.
        self._write_soon.append((writer, False))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self.watching and self._write_soon:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush_writes)

    def _flush_writes(self) -> None:
        # In the hub, once per pass of the loop, before it polls: the writes of the whole pass
        # in one runner, back to back (unless the runner of the pass's events took them).
        self._flush_scheduled = False
        if not self.watching or not self._write_soon:
            return
        pending, self._write_soon = self._write_soon, []
        self._run_in_runner(pending)

    def _arm_refilled(self, writer: Selectable) -> None:
        if self._writers.get(writer, False) is None:
            self._arm_writer(writer)

    def _arm_writer(self, writer: Selectable) -> None:
        watcher = self._watch(writer, _WRITE)
        if watcher is None:
            del self._writers[writer]
            self._polling.addWriter(writer)
            return
        self._writers[writer] = watcher
        if self.watching and writer not in self._held_writers:
            self._start(watcher, writer, False)

    def _watch(self, selectable: Selectable, events: int) -> LoopWatcher | None:
        # None: the loop refuses this fd (libuv and regular files); it is polled continuously.
        try:
            return self._loop.io(selectable.fileno(), events)
        except (ValueError, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, PermissionError):
                raise
            return None

    def removeReader(self, reader: Selectable) -> None:
        """
        Stop watching C{reader} for read readiness.  Never blocks.
        """
        watcher = self._readers.pop(reader, None)
        if watcher is None:
            self._polling.removeReader(reader)
            return
        self._close_soon(watcher)

    def removeWriter(self, writer: Selectable) -> None:
        """
        Stop watching C{writer} for write readiness.  Never blocks.
        """
        if writer not in self._writers:
            self._polling.removeWriter(writer)
            return
        watcher = self._writers.pop(writer)
        if watcher is not None:
            self._close_soon(watcher)
            return
        # Its write may still wait for the end of the pass (a reply sent inline by its read's
        # runner leaves it there): dropped, so that no runner is switched to for nothing.
        pending = self._write_soon
        if pending:
            if pending[-1][0] is writer:
                pending.pop()
            else:
                for i, (waiting, _) in enumerate(pending):
                    if waiting is writer:
                        del pending[i]
                        break

    def getReaders(self) -> list[Any]:
        """
        The readers being watched.  Never blocks.
        """
        return list(self._readers) + self._polling.getReaders()

    def getWriters(self) -> list[Any]:
        """
        The writers being watched.  Never blocks.
        """
        return list(self._writers) + self._polling.getWriters()


class _LossLater:
    """
    Stands for a held selectable's C{connectionLost} or C{readConnectionLost}: records the call.

    An aborted connection (C{abortConnection}) must end now, not when its handler is done: the
    handlers blocked on it are killed (C{GreenletExit}), and the loss is delivered as they end.
    """

    __slots__ = ("_calls", "_dispatcher", "_name", "_selectable")

    def __init__(
        self,
        dispatcher: IODispatcher,
        selectable: Selectable,
        calls: list[tuple[str, Failure]],
        name: str,
    ) -> None:
        self._dispatcher = dispatcher
        self._selectable = selectable
        self._calls = calls
        self._name = name

    def __call__(self, reason: Failure) -> None:
        self._calls.append((self._name, reason))
        if reason.check(ConnectionAborted):
            self._dispatcher.end_handlers_of(self._selectable)


def _restore_losses(selectable: Selectable) -> None:
    attributes = getattr(selectable, "__dict__", {})
    for name in _LOSS_METHODS:
        if isinstance(attributes.get(name), _LossLater):
            del attributes[name]


def _fire_once(d: Deferred[None]) -> None:
    if not d.called:
        d.callback(None)


def _cancel_and_pass(result: object, call: Any) -> object:
    if call.active():
        call.cancel()
    return result


def _throw_exit(runner: IORunner) -> None:
    if not runner.dead and runner.blocked:
        runner.ended_by_reactor = True
        runner.throw(GreenletExit)


def _push_log_context() -> tuple[list[dict], dict, dict]:
    # As log.callWithContext, without its nested calls (about 0.4 us instead of 1.9 us): an entry
    # pushed on the calling greenlet's context stack, for the caller to fill with a copy of the
    # innermost log context (returned as base) and to pop with _pop_log_context.
    tracker = twisted_context.theContextTracker.currentContext()
    contexts = tracker.contexts
    # The innermost log context is almost always on top of the stack (getContext searches it,
    # slowly).
    base = contexts[-1].get(ILogContext)
    if base is None:
        base = tracker.getContext(ILogContext, {})
    entry: dict = {}
    contexts.append(entry)
    return contexts, entry, base


def _pop_log_context(contexts: list[dict], entry: dict) -> None:
    # Removes our entry, not another's, should a tracker other than ours (one stack per greenlet)
    # have let handlers that block share a stack.
    if contexts[-1] is entry:
        contexts.pop()
        return
    for i in range(len(contexts) - 1, 0, -1):
        if contexts[i] is entry:
            del contexts[i]
            return
