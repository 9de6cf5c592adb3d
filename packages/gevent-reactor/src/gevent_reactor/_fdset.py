"""
The reactor's readers and writers (L{IReactorFDSet}) on a gevent loop, and how their events run.

Each reader has a loop I/O watcher.  A writer has none until a write attempt leaves data behind: a
connected socket is almost always writable, so its writes are tried at the end of the loop's pass
(Twisted's epoll reactor spends two C{epoll_ctl} calls on every response instead).

Events are handled in runner greenlets that may block (see L{gevent_reactor._runners}): one event
alone in its pass of the loop gets a runner of its own and its reply goes out at once; the events of
a busy pass, and then the writes they caused, go to one runner at the end of the pass (libev counts
the events of a pass; libuv does not, so there events are handled one per runner).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.posixbase import _NO_FILEDESC
from twisted.internet.tcp import BaseClient
from twisted.logger import Logger
from twisted.python import context as _context
from twisted.python import log
from twisted.python.log import ILogContext

from ._runners import IORunner, current_runner, is_accepting_port

__all__: list[str] = []

_READ = 1
_WRITE = 2


class LoopFDSet:
    """
    L{IReactorFDSet} for L{GeventReactor}, a mixin: loop watchers for readers and writers, and the
    runner greenlets that handle their events.

    The reactor provides C{_loop}, C{_watching}, C{_continuousPolling}, C{_close_soon},
    C{_disconnectSelectable} and C{_removeAll}, and calls L{_init_fdset} from its C{__init__}.
    """

    _log = Logger()
    _loop: Any
    _watching: bool
    _continuousPolling: Any

    def _init_fdset(self) -> None:
        self._readers: dict[Any, Any] = {}
        # A writer's watcher is None until a write attempt left data behind (see addWriter).
        self._writers: dict[Any, Any] = {}
        # Write events for writers without a watcher, as (writer, False): tried at the end of the
        # loop's pass (see addWriter).
        self._write_soon: list[tuple[Any, bool]] = []
        self._flush_scheduled = False
        # I/O events of the current pass of the loop, handled together at its end (see _on_io).
        self._ready: list[tuple[Any, bool]] = []
        self._held_readers: set[Any] = set()
        self._held_writers: set[Any] = set()
        self._idle_runners: list[IORunner] = []

    def _start_watchers(self) -> None:
        # The reactor starts running (or iterating).
        for selectable, watcher in self._readers.items():
            if selectable not in self._held_readers:
                watcher.start(self._on_io, selectable, True)
        # Rebuilt, not appended to: a crash() may have left it full.
        self._write_soon = []
        for selectable, watcher in self._writers.items():
            if selectable in self._held_writers:
                continue
            if watcher is None:
                self._write_soon.append((selectable, False))
            else:
                watcher.start(self._on_io, selectable, False)
        self._schedule_flush()

    def _stop_watchers(self) -> None:
        for watcher in self._readers.values():
            watcher.stop()
        for watcher in self._writers.values():
            if watcher is not None:
                watcher.stop()

    # -- I/O events: handled in runner greenlets that may block --------------------------------

    def _on_io(self, selectable: Any, is_read: bool) -> None:
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
        runner = idle.pop() if idle else IORunner(self)
        runner.selectable = selectable
        runner.is_read = is_read
        self._dispatch(runner)

    def _run_ready(self) -> None:
        ready, self._ready = self._ready, []
        if ready and self._watching:
            # (When not watching, the loop reports them again once the reactor runs.)
            self._run_in_runner(ready)

    def _run_in_runner(self, events: list[tuple[Any, bool]]) -> None:
        idle = self._idle_runners
        runner = idle.pop() if idle else IORunner(self)
        runner.start_batch(events)
        self._dispatch(runner)

    def _run_batch(self, runner: IORunner) -> None:
        # In the runner: each event of the batch, then the writes they caused, back to back,
        # under one entry on the log context stack (one push for the batch; each event gets its
        # own log context in it, as with callWithLogger).
        readers, writers = self._readers, self._writers
        held_readers, held_writers = self._held_readers, self._held_writers
        contexts, entry, base = _push_log_context()
        try:
            while True:
                for selectable, is_read in runner.batch_items():
                    if is_read:
                        if selectable not in readers or selectable in held_readers:
                            continue  # removed or held since the event was queued
                    elif selectable not in writers or selectable in held_writers:
                        continue
                    self._handle_in(entry, base, selectable, is_read, False)
                    if runner.blocked:
                        # _hold_for handed the rest of the batch back, and _release will arm
                        # this writer's watcher, if it needs one, when the job is done.
                        return
                    if not is_read and writers.get(selectable, False) is None:
                        if selectable not in held_writers:
                            self._arm_writer(selectable)
                if not self._write_soon:
                    return
                pending, self._write_soon = self._write_soon, []
                runner.start_batch(pending)
        finally:
            _pop_log_context(contexts, entry)
            # Only if the handling raised past us (KeyboardInterrupt): what was not tried yet,
            # writes taken off _write_soon included, is tried again, not lost.
            self._requeue(runner.rest_of_batch())

    def _dispatch(self, runner: IORunner) -> None:
        runner.switch()
        while runner.selectable is not None:
            if runner.blocked:
                # It waits on gevent; it returns itself to the free list when done.
                return
            # Control came back through a raw switch elsewhere before the job was done.
            runner.switch()
        self._idle_runners.append(runner)

    def _handle_event(self, selectable: Any, is_read: bool) -> None:
        # One event in its own runner (its reply may go out at once).
        contexts, entry, base = _push_log_context()
        try:
            self._handle_in(entry, base, selectable, is_read, True)
        finally:
            _pop_log_context(contexts, entry)

    def _handle_in(
        self, entry: dict, base: dict, selectable: Any, is_read: bool, alone: bool
    ) -> None:
        # As log.callWithLogger(selectable, ...): while it reads or writes, the log context in
        # entry (our place on the context stack) is a fresh copy of base whose "system" is the
        # selectable's logPrefix, and what it raises is logged there.
        try:
            system = selectable.logPrefix()
        except KeyboardInterrupt:
            raise
        except BaseException:
            system = "(buggy logPrefix method)"
            log.err(system=system)
        log_context = base.copy()
        log_context["system"] = system
        entry[ILogContext] = log_context
        try:
            self._read_or_write(selectable, is_read, alone)
        except KeyboardInterrupt:
            raise
        except BaseException:
            log.err(system=system)

    def _read_or_write(self, selectable: Any, is_read: bool, alone: bool) -> None:
        if selectable.fileno() == -1:
            self._disconnectSelectable(selectable, _NO_FILEDESC, is_read)
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

    def _attempt(self, selectable: Any, is_read: bool) -> bool:
        # One doRead or doWrite; False if it ended the connection.
        try:
            why = selectable.doRead() if is_read else selectable.doWrite()
        except Exception as e:
            why = e
            self._log.failure(None)
        if why:
            self._disconnectSelectable(selectable, why, is_read)
            return False
        return True

    def _hold_for(self, runner: IORunner) -> None:
        # Runs in the runner, as it starts to block: its selectable stops being watched in that
        # direction, and so do the connections it accepted, until the job is done.  The rest of
        # its batch goes to another runner: one blocked handler must not hold the others.
        self._requeue(runner.rest_of_batch())
        if not runner.held:
            selectable = runner.selectable
            if not (runner.is_read and is_accepting_port(selectable)):
                self._hold(runner, selectable, runner.is_read)
        for accepted in runner.adopted:
            self._hold(runner, accepted, True)
        runner.adopted.clear()

    def _requeue(self, events: list[tuple[Any, bool]]) -> None:
        # Events of a batch that its runner will not handle go to another runner, this pass.
        if events:
            if not self._ready:
                self._loop.run_callback(self._run_ready)
            self._ready.extend(events)

    def _direction(self, is_read: bool) -> tuple[set[Any], dict[Any, Any]]:
        # (held, watched) for reading or writing.
        if is_read:
            return self._held_readers, self._readers
        return self._held_writers, self._writers

    def _hold(self, runner: IORunner, selectable: Any, is_read: bool) -> None:
        held, watched = self._direction(is_read)
        if selectable in held:
            return
        held.add(selectable)
        runner.held.append((selectable, is_read))
        watcher = watched.get(selectable)
        if watcher is not None:
            watcher.stop()

    def _release(self, runner: IORunner) -> None:
        for selectable, is_read in runner.held:
            held, watched = self._direction(is_read)
            held.discard(selectable)
            if selectable not in watched:
                continue
            watcher = watched[selectable]
            if watcher is None:
                self._write_soon.append((selectable, False))
                self._schedule_flush()
            elif self._watching:
                watcher.start(self._on_io, selectable, is_read)
        runner.held.clear()
        self._idle_runners.append(runner)

    # -- IReactorFDSet ------------------------------------------------------------------------

    def addReader(self, reader: Any) -> None:
        """
        Watch C{reader} for read readiness.  Never blocks.
        """
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        watcher = self._watch(reader, _READ)
        if watcher is None:
            self._continuousPolling.addReader(reader)
            return
        self._readers[reader] = watcher
        runner = current_runner()
        if runner is not None and (
            reader is runner.selectable or (runner.is_read and is_accepting_port(runner.selectable))
        ):
            # A connection being set up (accepted by a port, or a client whose connect completed):
            # if its connectionMade blocks, its input must wait until it returns.
            runner.adopted.append(reader)
        if self._watching and reader not in self._held_readers:
            watcher.start(self._on_io, reader, True)

    def addWriter(self, writer: Any) -> None:
        """
        Watch C{writer} for write readiness.  Never blocks.
        """
        if writer in self._writers or writer in self._continuousPolling._writers:
            return
        self._writers[writer] = None
        if isinstance(writer, BaseClient) and not writer.connected:
            # Connecting: wait for the loop like any reactor, so that the peer's accept is seen
            # first and events keep the order protocols (and Twisted's tests) expect.
            self._arm_writer(writer)
            return
        # A connected socket is almost always writable: try the write at the end of this pass of
        # the loop and arm a watcher only if data remains.  Twisted's epoll reactor spends two
        # epoll_ctl calls on every response instead.
        self._write_soon.append((writer, False))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._watching and self._write_soon:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush_writes)

    def _flush_writes(self) -> None:
        # In the hub, once per pass of the loop, before it polls: the writes of the whole pass
        # in one runner, back to back (unless the runner of the pass's events took them).
        self._flush_scheduled = False
        if not self._watching or not self._write_soon:
            return
        pending, self._write_soon = self._write_soon, []
        self._run_in_runner(pending)

    def _arm_writer(self, writer: Any) -> None:
        watcher = self._watch(writer, _WRITE)
        if watcher is None:
            del self._writers[writer]
            self._continuousPolling.addWriter(writer)
            return
        self._writers[writer] = watcher
        if self._watching and writer not in self._held_writers:
            watcher.start(self._on_io, writer, False)

    def _watch(self, selectable: Any, events: int) -> Any:
        # None: the loop refuses this fd (libuv and regular files); it is polled continuously.
        try:
            return self._loop.io(selectable.fileno(), events)
        except (ValueError, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, PermissionError):
                raise
            return None

    def removeReader(self, reader: Any) -> None:
        """
        Stop watching C{reader} for read readiness.  Never blocks.
        """
        watcher = self._readers.pop(reader, None)
        if watcher is None:
            self._continuousPolling.removeReader(reader)
            return
        self._close_soon(watcher)

    def removeWriter(self, writer: Any) -> None:
        """
        Stop watching C{writer} for write readiness.  Never blocks.
        """
        if writer not in self._writers:
            self._continuousPolling.removeWriter(writer)
            return
        watcher = self._writers.pop(writer)
        if watcher is not None:
            self._close_soon(watcher)

    def removeAll(self) -> list[Any]:
        """
        Stop watching every reader and writer but the reactor's own.  Never blocks.
        """
        return (
            self._removeAll(list(self._readers), list(self._writers))
            + self._continuousPolling.removeAll()
        )

    def getReaders(self) -> list[Any]:
        """
        The readers being watched.  Never blocks.
        """
        return list(self._readers) + self._continuousPolling.getReaders()

    def getWriters(self) -> list[Any]:
        """
        The writers being watched.  Never blocks.
        """
        return list(self._writers) + self._continuousPolling.getWriters()


def _push_log_context() -> tuple[list[dict], dict, dict]:
    # As log.callWithContext, without its nested calls (about 0.4 us instead of 1.9 us): an entry
    # pushed on the per-thread context stack, for the caller to fill with a copy of the innermost
    # log context (returned as base) and to pop with _pop_log_context.
    tracker = _context.theContextTracker.currentContext()
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
    # The stack is per thread, not per greenlet: a handler that blocked may return after others
    # pushed their entries; remove ours, not theirs.
    if contexts[-1] is entry:
        contexts.pop()
        return
    for i in range(len(contexts) - 1, 0, -1):
        if contexts[i] is entry:
            del contexts[i]
            return
