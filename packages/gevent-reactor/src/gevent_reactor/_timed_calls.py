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

from collections.abc import Callable
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Any

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from ._loop_timer import LoopTimer

__all__ = ["THREAD_CALLS_PER_PASS", "TimedCalls", "run_thread_calls"]

# Failures are logged under ReactorBase's namespace and messages, as on every reactor.
_log = Logger(namespace="twisted.internet.base")
#: Calls from threads run in one pass of the loop at most (see run_thread_calls).
THREAD_CALLS_PER_PASS = 1000


class TimedCalls:
    """
    A reactor's timed calls: L{DelayedCall}s on a heap of C{(time, sequence, call)} tuples.

    @param timer: the loop timer armed for the earliest call (L{gevent_reactor._loop_timer}):
        a call due before its C{arm_before} re-arms it.
    """

    def __init__(self, timer: LoopTimer) -> None:
        self._timer = timer
        self._heap: list[tuple[float, int, DelayedCall]] = []
        # Entries still in the heap that will not fire: cancelled, or left behind by a move.
        self._dead = 0
        self._sequence = count()
        # Bound once: every DelayedCall holds them, and they are made per call otherwise.
        self._cancel_hook = self._cancelled
        self._move_hook = self._moved_sooner

    def call_later(
        self,
        delay: float,
        f: Callable[..., Any],
        args: tuple[object, ...],
        kw: dict[str, object],
        seconds: Callable[[], float],
    ) -> DelayedCall:
        """
        A new L{DelayedCall} of C{f(*args, **kw)} in C{delay} seconds of the clock C{seconds}
        (the reactor's C{seconds} as it is now: tests replace it).  Never blocks.
        """
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        when = seconds() + delay
        call = DelayedCall(when, f, args, kw, self._cancel_hook, self._move_hook, seconds)
        heappush(self._heap, (when, next(self._sequence), call))
        timer = self._timer
        if when < timer.arm_before:
            timer.arm(when)
        return call

    def _moved_sooner(self, call: DelayedCall) -> None:
        # The old entry stays behind, stale: its time is no longer the call's.
        self._dead += 1
        when = call.time
        heappush(self._heap, (when, next(self._sequence), call))
        timer = self._timer
        if when < timer.arm_before:
            timer.arm(when)

    def _cancelled(self, call: DelayedCall) -> None:
        self._dead += 1

    def calls(self) -> list[IDelayedCall]:
        """The calls that are scheduled and not cancelled.  Never blocks."""
        # A call moved sooner and back may have two live entries: list it once.
        return list(dict.fromkeys(entry[2] for entry in self._heap if _is_live(entry)))

    def next_time(self) -> float | None:
        """The time of the earliest live call, or C{None}.  Never blocks."""
        heap = self._heap
        while heap:
            if _is_live(heap[0]):
                return heap[0][0]
            heappop(heap)  # dropping the dead ones in front of it
            self._dead -= 1
        return None

    def run_due(self, now: float) -> None:
        """
        Run the calls due at C{now}; calls they add wait for the next pass, as on every reactor.

        Never blocks.  Call it in the reactor's own context; failures are logged as Twisted logs
        them.
        """
        heap = self._heap
        first_new = next(self._sequence)
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


def run_thread_calls(queue: list[tuple[Callable[..., Any], tuple, dict]]) -> bool:
    """
    Run the calls from threads queued when the pass began (at most C{THREAD_CALLS_PER_PASS});
    True if some are left for the next pass.

    Never blocks.  Call it in the reactor's own context.
    """
    # As ReactorBase: calls queued while these run wait for the next pass.  The cap: threads that
    # call in faster than they are served must not keep sockets waiting (a loop wake-up does not
    # release the GIL, as Twisted's waker pipe does, so a long queue builds up between passes).
    done, total = 0, min(len(queue), THREAD_CALLS_PER_PASS)
    for f, a, kw in queue:
        try:
            f(*a, **kw)
        except BaseException:
            _log.failure("while calling from thread")
        done += 1
        if done == total:
            break
    del queue[:done]
    return bool(queue)


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
