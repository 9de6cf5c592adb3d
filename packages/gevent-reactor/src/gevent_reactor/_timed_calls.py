"""
Twisted's timed calls, kept in a heap the interpreter can compare in C.

L{ReactorBase} keeps L{DelayedCall}s themselves in its heap, so every sift step calls
C{DelayedCall.__lt__}, a Python method: under C{callLater} churn that is most of the reactor's time.
Here the heap holds C{(time, sequence, call)} tuples instead.  Moving a call sooner pushes a new
entry and leaves the old one stale; stale and cancelled entries are skipped when they come up and
swept out when they are most of the heap, as Twisted sweeps cancelled calls.  What users see is
Twisted's: the same L{DelayedCall} objects, C{reset}/C{delay}/C{cancel}, C{getDelayedCalls}, calls
added by a timed call waiting for the next pass, and failures logged the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Any

from twisted.internet.base import DelayedCall, ReactorBase
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

__all__ = ["TimedCallHeap"]

# Failures are logged under ReactorBase's namespace and messages, as on every reactor.
_log = Logger(namespace="twisted.internet.base")
# Calls from threads run in one pass of the loop at most (see runUntilCurrent).
_THREAD_CALLS_PER_PASS = 1000
# ReactorBase.timeout's cap: the longest epoll_wait (and libuv) timeout in whole milliseconds.
_LONGEST = 2147483


class TimedCallHeap(ReactorBase):
    """
    L{ReactorBase}'s timed calls on a heap of tuples.

    A subclass arms its loop for the earliest call: L{_arm} is called whenever a call is added (or
    moved) to before C{_armed_at}; setting C{_armed_at} to C{-inf} turns that off.
    """

    _armed_at: float

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, DelayedCall]] = []
        # Entries still in the heap that will not fire: cancelled, or left behind by a move.
        self._dead = 0
        self._sequence = count()
        # Bound once: every DelayedCall holds them, and they are made per call otherwise.
        self._cancel_hook = self._cancelCallLater
        self._move_hook = self._moveCallLaterSooner
        super().__init__()

    def _arm(self, when: float) -> None:
        raise NotImplementedError

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> DelayedCall:
        """
        Call C{callable} in C{delay} seconds (see L{IReactorTime.callLater}).

        Never blocks.  Takes effect at once from any greenlet of the reactor's thread.  C{callable}
        runs in the reactor's own context, where it must not block.
        """
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        seconds = self.seconds
        when = seconds() + delay
        call = DelayedCall(when, callable, args, kw, self._cancel_hook, self._move_hook, seconds)
        heappush(self._heap, (when, next(self._sequence), call))
        if when < self._armed_at:
            self._arm(when)
        return call

    def _moveCallLaterSooner(self, delayedCall: DelayedCall) -> None:
        # The old entry stays behind, stale: its time is no longer the call's.
        self._dead += 1
        when = delayedCall.time
        heappush(self._heap, (when, next(self._sequence), delayedCall))
        if when < self._armed_at:
            self._arm(when)

    def _cancelCallLater(self, delayedCall: DelayedCall) -> None:
        self._dead += 1

    def _insertNewDelayedCalls(self) -> None:
        # Calls go straight into the heap; nothing waits to be inserted.
        pass

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        """
        The calls that are scheduled and not cancelled.  Never blocks.
        """
        # A call moved sooner and back may have two live entries: list it once.
        return list(dict.fromkeys(entry[2] for entry in self._heap if _is_live(entry)))

    def _next_time(self) -> float | None:
        # The time of the earliest live entry, dropping the dead ones in front of it.
        heap = self._heap
        while heap:
            if _is_live(heap[0]):
                return heap[0][0]
            heappop(heap)
            self._dead -= 1
        return None

    def timeout(self) -> float | None:
        """
        The longest the loop may sleep before a timed call is due, or C{None}.  Never blocks.
        """
        when = self._next_time()
        if when is None:
            return None
        return min(_LONGEST, max(0.0, when - self.seconds()))

    def runUntilCurrent(self) -> None:
        """
        Run the calls from threads and the timed calls that are due.

        Never blocks.  The calls run here, in the reactor's own context.
        """
        if self.threadCallQueue:
            # As ReactorBase: calls queued while these run wait for the next pass.  At most
            # _THREAD_CALLS_PER_PASS run in one pass: threads that call in faster than they are
            # served must not keep sockets waiting (a loop wake-up does not release the GIL, as
            # Twisted's waker pipe does, so a long queue builds up between passes).
            queue = self.threadCallQueue
            done, total = 0, min(len(queue), _THREAD_CALLS_PER_PASS)
            for f, a, kw in queue:
                try:
                    f(*a, **kw)
                except BaseException:
                    _log.failure("while calling from thread")
                done += 1
                if done == total:
                    break
            del queue[:done]
            if queue:
                self.wakeUp()

        heap = self._heap
        # Calls scheduled by the calls run here wait for the next pass, as on every reactor.
        first_new = next(self._sequence)
        now = self.seconds()
        while heap and heap[0][0] <= now and heap[0][1] < first_new:
            entry = heappop(heap)
            if not _is_live(entry):
                self._dead -= 1
                continue
            _, sequence, call = entry
            if call.delayed_time > 0.0:
                # Delayed: back in at its new time, under its own (unique) sequence number.
                call.activate_delay()
                heappush(heap, (call.time, sequence, call))
                continue
            call.called = 1
            try:
                call.func(*call.args, **call.kw)
            except BaseException:
                _log_timed_call_failure(call)

        if self._dead > 50 and self._dead > len(heap) >> 1:
            self._heap = [entry for entry in self._heap if _is_live(entry)]
            heapify(self._heap)
            self._dead = 0

        if self._justStopped:
            self._justStopped = False
            self.fireSystemEvent("shutdown")


def _is_live(entry: tuple[float, int, DelayedCall]) -> bool:
    # Whether a heap entry is still its call's: not cancelled, not called, not left behind by
    # a move (its time is then no longer the call's).
    when, _, call = entry
    return when == call.time and not (call.cancelled or call.called)


def _log_timed_call_failure(call: DelayedCall) -> None:
    creator = call.creator
    if creator:
        _log.failure(
            "while handling timed call {previous}",
            previous="\n C: from a DelayedCall created here:\n C:"
            + "".join(creator).rstrip().replace("\n", "\n C:")
            + "\n",
        )
    else:
        _log.failure("while handling timed call")
