"""The I/O dispatcher driven step by step by a fake loop: no sockets, no gevent hub, exact outcomes.

A real L{IODispatcher} runs on a small stand-in for gevent's loop (watchers that record their
start/stop/close, a callback queue, a settable C{pendingcnt}) whose "hub" is a plain greenlet: the
test's driving code runs in it, so the runners switch back to it as they would to gevent's hub.
C{fire} calls a started watcher's callback as the hub does when the loop reports an event, and
C{run_callbacks} runs the loop callbacks queued meanwhile, as the end of a pass of the loop.
The selectables are small fakes that record each call and its greenlet, and that call
C{addWriter}/C{removeWriter} as Twisted's transports do.

Two fake loops: one like libev (it counts the events left in a pass), one whose module names
libuv (the dispatcher then asks for the events' status, and no pass count is known).  The tests do
not depend on the gevent loop the suite runs on (GEVENT_LOOP).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import greenlet
import pytest
from gevent import GreenletExit
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.python.failure import Failure

from gevent_reactor._io_dispatcher import IODispatcher
from gevent_reactor._runners import IORunner

pytestmark = pytest.mark.timeout(30)

READ = 1
WRITE = 2


class FakeWatcher:
    """A loop I/O watcher that records what the dispatcher does with it."""

    def __init__(self, loop: FakeLoop, fd: int, events: int) -> None:
        self.loop = loop
        self.fd = fd
        self.events = events
        self.callback: Callable[..., Any] | None = None
        self.args: tuple[Any, ...] = ()
        self.pass_events = False
        self.active = False
        self.closed = False
        self.starts = 0
        self.stops = 0

    def start(self, callback: Callable[..., Any], *args: Any, pass_events: bool = False) -> None:
        assert not self.closed, "a closed watcher was started"
        self.callback, self.args, self.pass_events = callback, args, pass_events
        self.active = True
        self.starts += 1

    def stop(self) -> None:
        self.active = False
        self.stops += 1

    def close(self) -> None:
        self.active = False
        self.closed = True


class FakeLoop:
    """The part of gevent's loop the dispatcher uses, libev-like: it counts a pass's events."""

    counts_pending = True

    def __init__(self) -> None:
        self.watchers: list[FakeWatcher] = []
        self.callbacks: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self.pendingcnt = 0
        # What happened, in order, shared with the selectables: ("io", fd, events), ("read", name)...
        self.history: list[tuple[Any, ...]] = []

    def io(self, fd: int, events: int) -> FakeWatcher:
        watcher = FakeWatcher(self, fd, events)
        self.watchers.append(watcher)
        self.history.append(("io", fd, events))
        return watcher

    def run_callback(self, function: Callable[..., Any], *args: Any) -> None:
        self.callbacks.append((function, args))

    def watchers_for(self, selectable: Any, events: int) -> list[FakeWatcher]:
        return [w for w in self.watchers if w.fd == selectable.fileno() and w.events == events]

    def watcher_for(self, selectable: Any, events: int = READ) -> FakeWatcher:
        (watcher,) = [w for w in self.watchers_for(selectable, events) if not w.closed]
        return watcher

    def fire(self, selectable: Any, events: int = READ, status: int | None = None) -> None:
        """Call the started watcher's callback, as the hub does for an event of the loop."""
        watcher = self.watcher_for(selectable, events)
        assert watcher.active, "the loop reports events of started watchers only"
        assert watcher.callback is not None
        if watcher.pass_events:
            watcher.callback(events if status is None else status, *watcher.args)
        else:
            assert status is None, "only libuv passes a status"
            watcher.callback(*watcher.args)

    def run_callbacks(self) -> None:
        """Run the queued loop callbacks, those they queue included, as the end of a pass."""
        while self.callbacks:
            function, args = self.callbacks.popleft()
            function(*args)

    def run_pass(self, *events: tuple[Any, int]) -> None:
        """One pass of the loop reporting C{events} (selectable, events), then its callbacks."""
        for i, (selectable, kind) in enumerate(events):
            if self.counts_pending:
                # As ev_invoke_pending: the count is decremented before each callback.
                self.pendingcnt = len(events) - 1 - i
            self.fire(selectable, kind)
        self.pendingcnt = 0
        self.run_callbacks()


class FakeLibevLoop(FakeLoop):
    pass


class FakeLibuvLoop(FakeLoop):
    # libuv does not count the events of a pass (gevent's libuv loop's pendingcnt is always 0).
    counts_pending = False


# The dispatcher tells the loops apart by the module of the loop's type, as gevent names them.
FakeLibevLoop.__module__ = "fake_gevent.libev.corecext"
FakeLibuvLoop.__module__ = "fake_gevent.libuv.loop"
LOOPS = [FakeLibevLoop, FakeLibuvLoop]


class FakeHub(greenlet.greenlet):
    """The runners' parent, as gevent's hub: it has the loop."""

    def __init__(self, loop: FakeLoop, run: Callable[[], Any]) -> None:
        super().__init__(run)
        self.loop = loop


class FakePolling:
    """Twisted's _ContinuousPolling, for fds the loop refuses: the fake loop refuses none."""

    def __init__(self) -> None:
        self._readers: set[Any] = set()
        self._writers: set[Any] = set()

    def removeReader(self, reader: Any) -> None:
        self._readers.discard(reader)

    def removeWriter(self, writer: Any) -> None:
        self._writers.discard(writer)

    def getReaders(self) -> list[Any]:
        return list(self._readers)

    def getWriters(self) -> list[Any]:
        return list(self._writers)


class FakeSelectable:
    """
    A transport stand-in.  C{calls} records ("read" | "write" | "lost", greenlet, extra) tuples;
    C{on_read}/C{on_write} (called with the selectable) give the behaviour and the return value.
    """

    def __init__(
        self,
        harness: Harness,
        fd: int,
        on_read: Callable[[FakeSelectable], Any] | None = None,
        on_write: Callable[[FakeSelectable], Any] | None = None,
    ) -> None:
        self.harness = harness
        self.fd = fd
        self.on_read = on_read
        self.on_write = on_write
        self.calls: list[tuple[str, Any, Any]] = []

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return f"fake-{self.fd}"

    def _record(self, what: str, extra: Any = None) -> None:
        self.calls.append((what, greenlet.getcurrent(), extra))
        self.harness.loop.history.append((what, self.fd))

    def doRead(self) -> Any:
        self._record("read")
        return self.on_read(self) if self.on_read is not None else None

    def doWrite(self) -> Any:
        self._record("write")
        return self.on_write(self) if self.on_write is not None else None

    def connectionLost(self, reason: Failure) -> None:
        self._record("lost", reason)

    def what(self) -> list[str]:
        return [what for what, _, _ in self.calls]


def reply(selectable: FakeSelectable) -> None:
    """A doRead whose protocol writes a reply (Twisted's transport.write: addWriter)."""
    selectable.harness.dispatcher.addWriter(selectable)


def write_all(selectable: FakeSelectable) -> None:
    """A doWrite that empties the transport's buffer (Twisted then calls removeWriter)."""
    selectable.harness.dispatcher.removeWriter(selectable)


def block_once(selectable: FakeSelectable) -> None:
    """A doRead that blocks the first time, as gevent's Hub.switch does, until switched to."""
    if selectable.what().count("read") > 1:
        return
    runner = greenlet.getcurrent()
    assert type(runner) is IORunner
    runner.switch_out()  # What gevent's Hub.switch calls before a blocking switch.
    selectable.harness.hub.switch()
    selectable._record("resumed")


class Harness:
    """A real IODispatcher on a fake loop, its hub a greenlet running the test's driving code."""

    def __init__(self, loop_class: type[FakeLoop]) -> None:
        self.loop = loop_class()
        self.hub = FakeHub(self.loop, self._run_driver)
        self.disconnects: list[tuple[Any, Any, bool]] = []
        self.dispatcher = IODispatcher(
            self.hub, FakePolling(), self._disconnect, self._call_later, self._close_soon
        )
        # Every switch (or throw) into a runner, in order.
        self.switches: list[IORunner] = []
        self._driver: Callable[[], None] | None = None
        self._counting = True

    def _disconnect(self, selectable: Any, why: Any, is_read: bool) -> None:
        self.disconnects.append((selectable, why, is_read))
        # As the transport's connectionLost (stopReading, stopWriting) does, via the reactor.
        self.dispatcher.removeReader(selectable)
        self.dispatcher.removeWriter(selectable)

    def _call_later(self, delay: float, function: Callable[..., Any], *args: Any) -> Any:
        raise AssertionError("no test here makes the dispatcher call later")

    def _close_soon(self, watcher: FakeWatcher) -> None:
        # As the reactor's LaterCloser: stopped now, closed from a later loop callback.
        watcher.stop()
        self.loop.run_callback(watcher.close)

    def selectable(self, fd: int, **behaviour: Any) -> FakeSelectable:
        return FakeSelectable(self, fd, **behaviour)

    def runners(self) -> list[IORunner]:
        seen: list[IORunner] = []
        for runner in self.switches:
            if runner not in seen:
                seen.append(runner)
        return seen

    def _trace(self, event: str, args: tuple[Any, Any]) -> None:
        if self._counting and event in ("switch", "throw") and type(args[1]) is IORunner:
            self.switches.append(args[1])

    def _run_driver(self) -> None:
        assert self._driver is not None
        self._driver()
        self._counting = False
        # Nothing may be left running; the idle runners end here, in their parent.
        for runner in self.runners():
            assert runner.dead or runner.selectable is None, "a runner's job is not over"
        for runner in self.runners():
            if not runner.dead:
                runner.throw(GreenletExit)

    def run(self, driver: Callable[[], None]) -> None:
        """Run C{driver} in the hub greenlet, counting the switches into runners."""
        self._driver = driver
        # The hub ends back here, in the greenlet the test runs in (not where it was made).
        self.hub.parent = greenlet.getcurrent()
        previous = greenlet.settrace(self._trace)
        try:
            self.hub.switch()
        finally:
            greenlet.settrace(previous)
        assert self.hub.dead


@pytest.fixture(params=LOOPS, ids=["libev-like", "libuv-like"])
def harness(request: pytest.FixtureRequest, logged_failures: list[Failure]) -> Iterator[Harness]:
    made = Harness(request.param)
    yield made
    # A failed assertion inside a doRead is logged by the dispatcher, not raised: it fails here.
    assert logged_failures == []


@pytest.fixture
def libev_harness(logged_failures: list[Failure]) -> Iterator[Harness]:
    made = Harness(FakeLibevLoop)
    yield made
    assert logged_failures == []


def test_the_loop_kind_decides_whether_events_come_with_their_status(harness: Harness) -> None:
    a = harness.selectable(3)

    def drive() -> None:
        harness.dispatcher.addReader(a)
        watcher = harness.loop.watcher_for(a)
        assert (watcher.active, watcher.starts) == (False, 0), "started before the reactor runs"
        harness.dispatcher.start()
        assert watcher.active
        assert watcher.pass_events is isinstance(harness.loop, FakeLibuvLoop)
        harness.loop.run_pass((a, READ))

    harness.run(drive)
    assert a.what() == ["read"]


def test_a_lone_event_runs_at_once_and_its_reply_goes_out_inline(harness: Harness) -> None:
    a = harness.selectable(3, on_read=reply, on_write=write_all)

    def drive() -> None:
        harness.dispatcher.addReader(a)
        harness.dispatcher.start()
        harness.loop.fire(a)
        # Handled within the hub's callback, not at the end of the pass.
        assert a.what() == ["read", "write"]
        harness.loop.run_callbacks()

    harness.run(drive)
    (runner,) = harness.switches  # One switch: no runner for the end-of-pass flush.
    assert [where for _, where, _ in a.calls] == [runner, runner]
    assert type(runner) is IORunner and runner.parent is harness.hub
    # Only the reader's watcher was ever made: no write watcher was armed.
    assert harness.loop.history == [("io", 3, READ), ("read", 3), ("write", 3)]
    assert harness.dispatcher.getWriters() == []
    assert harness.disconnects == []


def test_the_events_of_a_busy_pass_share_one_runner_at_its_end(libev_harness: Harness) -> None:
    h = libev_harness
    selectables = [h.selectable(fd, on_read=reply, on_write=write_all) for fd in (3, 4, 5)]

    def drive() -> None:
        for s in selectables:
            h.dispatcher.addReader(s)
        h.dispatcher.start()
        for i, s in enumerate(selectables):
            h.loop.pendingcnt = len(selectables) - 1 - i
            h.loop.fire(s)
            # Queued for the end of the pass, not handled in the hub's callback.
            assert h.dispatcher.events_waiting()
            assert s.calls == []
        h.loop.pendingcnt = 0
        assert h.switches == []
        h.loop.run_callbacks()

    h.run(drive)
    (runner,) = h.switches
    # The reads in order, then the replies they wrote, together after all the events.
    assert [entry for entry in h.loop.history if entry[0] != "io"] == [
        ("read", 3),
        ("read", 4),
        ("read", 5),
        ("write", 3),
        ("write", 4),
        ("write", 5),
    ]
    assert {where for s in selectables for _, where, _ in s.calls} == {runner}
    assert [entry for entry in h.loop.history if entry[0] == "io"] == [
        ("io", 3, READ),
        ("io", 4, READ),
        ("io", 5, READ),
    ]
    assert not h.dispatcher.events_waiting()


def test_without_a_pass_count_each_event_has_its_runner() -> None:
    h = Harness(FakeLibuvLoop)
    a, b = h.selectable(3), h.selectable(4)

    def drive() -> None:
        h.dispatcher.addReader(a)
        h.dispatcher.addReader(b)
        h.dispatcher.start()
        h.loop.fire(a)
        assert a.what() == ["read"] and b.calls == []
        h.loop.fire(b)
        assert b.what() == ["read"]
        h.loop.run_callbacks()

    h.run(drive)
    assert len(h.switches) == 2
    # The runner of the first event went back to the free list and served the second.
    assert a.calls[0][1] is b.calls[0][1]


def test_a_writer_removed_before_the_end_of_the_pass_costs_no_runner(harness: Harness) -> None:
    kept = harness.selectable(3, on_write=write_all)
    dropped = harness.selectable(4, on_write=write_all)

    def drive() -> None:
        harness.dispatcher.start()
        # Written to from the hub (a timed call, say), then emptied before the pass ends.
        harness.dispatcher.addWriter(dropped)
        harness.dispatcher.removeWriter(dropped)
        harness.loop.run_callbacks()
        assert harness.switches == []
        # The same without the removal: the write is tried at the end of the pass, in a runner.
        harness.dispatcher.addWriter(kept)
        assert kept.calls == []
        harness.loop.run_callbacks()

    harness.run(drive)
    assert dropped.calls == []
    (runner,) = harness.switches
    assert kept.calls == [("write", runner, None)]
    assert harness.loop.watchers == []  # No watcher was needed for either.


def test_a_writer_removed_in_a_busy_pass_is_not_written(libev_harness: Harness) -> None:
    h = libev_harness

    def write_then_empty(selectable: FakeSelectable) -> None:
        # transport.write then, before the pass ends, the buffer is gone (abortConnection...).
        h.dispatcher.addWriter(selectable)
        h.dispatcher.removeWriter(selectable)

    a = h.selectable(3, on_read=write_then_empty, on_write=write_all)
    b = h.selectable(4)

    def drive() -> None:
        h.dispatcher.addReader(a)
        h.dispatcher.addReader(b)
        h.dispatcher.start()
        h.loop.run_pass((a, READ), (b, READ))

    h.run(drive)
    assert a.what() == ["read"] and b.what() == ["read"]
    assert len(h.switches) == 1  # The batch's runner only: no flush runner.


def test_a_write_that_leaves_data_arms_a_write_watcher(harness: Harness) -> None:
    leftover = [True]

    def write_some(selectable: FakeSelectable) -> None:
        # Data stays in the buffer (EAGAIN) until the watcher reports the socket writable.
        if not leftover[0]:
            harness.dispatcher.removeWriter(selectable)

    a = harness.selectable(3, on_read=reply, on_write=write_some)

    def drive() -> None:
        harness.dispatcher.addReader(a)
        harness.dispatcher.start()
        harness.loop.run_pass((a, READ))
        watcher = harness.loop.watcher_for(a, WRITE)
        assert watcher.active
        assert watcher.pass_events is isinstance(harness.loop, FakeLibuvLoop)
        # The watcher is made after a write attempt left data behind, never before.
        armed_at = harness.loop.history.index(("io", 3, WRITE))
        assert harness.loop.history[armed_at - 1] == ("write", 3)
        writes = a.what().count("write")
        # Until the loop reports it writable, nothing more is written.
        harness.loop.run_callbacks()
        assert a.what().count("write") == writes
        leftover[0] = False
        harness.loop.run_pass((a, WRITE))
        assert a.what().count("write") == writes + 1
        # Emptied: removeWriter stops the watcher now and closes it from a loop callback.
        assert not watcher.active and watcher.closed

    harness.run(drive)
    assert harness.dispatcher.getWriters() == []
    assert harness.disconnects == []


def test_a_write_in_a_busy_pass_that_leaves_data_arms_a_watcher(libev_harness: Harness) -> None:
    h = libev_harness
    a = h.selectable(3, on_read=reply, on_write=lambda s: None)  # Never empties its buffer.
    b = h.selectable(4)

    def drive() -> None:
        h.dispatcher.addReader(a)
        h.dispatcher.addReader(b)
        h.dispatcher.start()
        h.loop.run_pass((a, READ), (b, READ))

    h.run(drive)
    # One attempt, after the pass's events, in the batch's runner; then a watcher waits.
    assert h.loop.history == [
        ("io", 3, READ),
        ("io", 4, READ),
        ("read", 3),
        ("read", 4),
        ("write", 3),
        ("io", 3, WRITE),
    ]
    assert len(h.switches) == 1
    assert h.loop.watcher_for(a, WRITE).active


def test_a_blocked_read_holds_its_reader_while_others_go_on(harness: Harness) -> None:
    a = harness.selectable(3, on_read=block_once)
    b = harness.selectable(4)

    def drive() -> None:
        harness.dispatcher.addReader(a)
        harness.dispatcher.addReader(b)
        harness.dispatcher.start()
        watcher = harness.loop.watcher_for(a)
        harness.loop.fire(a)
        # Back in the hub while a's doRead waits: its watcher is stopped (held).
        (blocked,) = harness.switches
        assert a.what() == ["read"]
        assert not watcher.active and watcher.stops == 1
        harness.loop.fire(b)
        assert b.what() == ["read"]
        assert b.calls[0][1] is not blocked
        harness.loop.run_callbacks()
        assert not watcher.active, "a held reader is not watched at the end of the pass"
        # What gevent does when the awaited event comes: the blocked runner is switched to.
        blocked.switch()
        assert a.what() == ["read", "resumed"]
        assert watcher.active and watcher.starts == 2
        harness.loop.run_pass((a, READ))
        assert a.what() == ["read", "resumed", "read"]

    harness.run(drive)
    assert harness.disconnects == []


def test_a_blocked_event_hands_the_rest_of_its_batch_on(libev_harness: Harness) -> None:
    h = libev_harness
    a = h.selectable(3, on_read=block_once)
    b = h.selectable(4)

    def drive() -> None:
        h.dispatcher.addReader(a)
        h.dispatcher.addReader(b)
        h.dispatcher.start()
        h.loop.run_pass((a, READ), (b, READ))
        # a blocked in the batch's runner; b was handled by another runner in the same pass.
        assert a.what() == ["read"] and b.what() == ["read"]
        assert a.calls[0][1] is not b.calls[0][1]
        assert not h.loop.watcher_for(a).active and h.loop.watcher_for(b).active
        a.calls[0][1].switch()
        assert a.what() == ["read", "resumed"] and h.loop.watcher_for(a).active

    h.run(drive)
    assert len(h.runners()) == 2


def test_the_loss_of_a_held_connection_waits_for_its_handler(harness: Harness) -> None:
    a = harness.selectable(3, on_read=block_once)
    reason = Failure(ConnectionDone())

    def drive() -> None:
        harness.dispatcher.addReader(a)
        harness.dispatcher.start()
        harness.loop.fire(a)
        (blocked,) = harness.switches
        # The reactor ends the connection while its doRead waits (the peer closed, say).
        a.connectionLost(reason)
        assert a.what() == ["read"]
        blocked.switch()

    harness.run(drive)
    runner = a.calls[0][1]
    assert a.calls == [("read", runner, None), ("resumed", runner, None), ("lost", runner, reason)]
    assert "connectionLost" not in vars(a), "the deferring stand-in stays on the selectable"


def test_a_clean_loss_of_a_held_connection_lets_its_late_write_go_first(harness: Harness) -> None:
    def block_then_reply(selectable: FakeSelectable) -> None:
        block_once(selectable)
        reply(selectable)

    def write_and_close(selectable: FakeSelectable) -> ConnectionDone:
        # As Twisted's doWrite once the buffer is empty and a loseConnection waited for it.
        return ConnectionDone()

    a = harness.selectable(3, on_read=block_then_reply, on_write=write_and_close)

    def drive() -> None:
        harness.dispatcher.addReader(a)
        harness.dispatcher.start()
        harness.loop.fire(a)
        (blocked,) = harness.switches
        a.connectionLost(Failure(ConnectionDone()))
        blocked.switch()
        harness.loop.run_callbacks()

    harness.run(drive)
    # The loss recorded while held was dropped: the write went out, and ended it again.
    assert a.what() == ["read", "resumed", "write"]
    ((selectable, why, is_read),) = harness.disconnects
    assert selectable is a and isinstance(why, ConnectionDone) and is_read is False


def test_an_aborted_held_connection_ends_its_blocked_handler(harness: Harness) -> None:
    a = harness.selectable(3, on_read=block_once)
    reason = Failure(ConnectionAborted())

    def drive() -> None:
        harness.dispatcher.addReader(a)
        harness.dispatcher.start()
        harness.loop.fire(a)
        (blocked,) = harness.switches
        a.connectionLost(reason)
        assert a.what() == ["read"]
        # The kill comes from a loop callback, as gevent.kill's throw would.
        harness.loop.run_callbacks()
        assert blocked.selectable is None, "the killed handler's job is over"

    harness.run(drive)
    runner = a.calls[0][1]
    # Killed inside doRead (no "resumed"), then the loss ran, in the same runner.
    assert a.calls == [("read", runner, None), ("lost", runner, reason)]
    ((selectable, why, is_read),) = harness.disconnects
    assert selectable is a and isinstance(why, GreenletExit) and is_read is True


def test_libuv_starts_a_watcher_again_after_an_error_status() -> None:
    h = Harness(FakeLibuvLoop)
    a = h.selectable(3)

    def drive() -> None:
        h.dispatcher.addReader(a)
        h.dispatcher.start()
        watcher = h.loop.watcher_for(a)
        # libuv stops a poll handle when it reports an error (a negative status) on it.
        h.loop.fire(a, status=-104)
        assert watcher.active and (watcher.starts, watcher.stops) == (2, 1)
        h.loop.run_callbacks()

    h.run(drive)
    # The data queued before the error is still read.
    assert a.what() == ["read"]


def test_a_stopped_dispatcher_watches_nothing_until_started(harness: Harness) -> None:
    a = harness.selectable(3, on_read=reply, on_write=lambda s: None)

    def drive() -> None:
        harness.dispatcher.addReader(a)
        harness.dispatcher.start()
        harness.loop.run_pass((a, READ))
        read, write = harness.loop.watcher_for(a, READ), harness.loop.watcher_for(a, WRITE)
        assert read.active and write.active
        harness.dispatcher.stop()
        assert not read.active and not write.active
        harness.dispatcher.start()
        assert read.active and write.active

    harness.run(drive)
