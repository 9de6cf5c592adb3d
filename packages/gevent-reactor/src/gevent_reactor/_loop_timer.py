"""
The one loop timer a L{GeventReactor} keeps armed for its earliest timed call.

As Twisted's asyncio reactor, the reactor keeps its own heap of timed calls (see
L{gevent_reactor._timed_calls}) and the loop holds a single timer for the earliest of them.  The
timer is in one of three states (L{ArmState}); C{callLater} asks it with one comparison,
C{when < timer.arm_before}, whether a new call must re-arm it.

Arming costs a loop watcher, so the timer avoids making one where it can: a pass of timed calls
(L{LoopTimer.hold}) keeps the watcher armed before it, and the pass's end, which arms for the
earliest call, keeps that watcher if the earliest call is the same (a far timeout while threads
call in and I/O comes and goes).  A call due at once after one poll (C{callLater(0)} from a timed
call) re-uses one zero-delay timer, started again each time.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gevent_deferred._loop_types import Loop, LoopCallback, LoopWatcher

__all__ = ["ArmState", "LoopTimer"]


class ArmState(enum.Enum):
    #: Calls added now never arm the timer: the reactor does not run, or a pass of timed calls
    #: runs and arms the timer itself at its end.
    PAUSED = "paused"
    #: Nothing is armed: the next call added arms the timer.
    IDLE = "idle"
    #: Armed for C{arm_before}: only a call due earlier re-arms it.
    ARMED = "armed"


class LoopTimer:
    """
    A loop timer (or, for a call due now, a loop callback) that calls C{on_due} when the
    earliest timed call comes due.

    @param loop: the gevent loop.
    @param on_due: called in the hub when the time armed for has come, after the I/O events of
        the loop's poll that saw it.
    @param close_soon: stops a watcher now and closes it from a later loop callback.
    @param seconds: the reactor's clock.
    """

    def __init__(
        self,
        loop: Loop,
        on_due: Callable[[], None],
        close_soon: Callable[[LoopWatcher], None],
        seconds: Callable[[], float],
    ) -> None:
        self._loop = loop
        self._on_due = on_due
        self._close_soon = close_soon
        self._seconds = seconds
        self.state = ArmState.PAUSED
        #: A call due before this time must arm the timer: C{-inf} while L{ArmState.PAUSED},
        #: C{+inf} while L{ArmState.IDLE}, the time armed for while L{ArmState.ARMED}.
        self.arm_before = -math.inf
        # At most one of these is set, and only while ARMED (or held: see hold).
        self._watcher: LoopWatcher | None = None
        self._soon: LoopCallback | None = None  # for a call due now
        # The zero-delay timer, made once while the loop serves the reactor (closed by pause):
        # _watcher is it when armed for a due call after one poll.
        self._zero: LoopWatcher | None = None
        # What _watcher was armed for before hold(), while held; NaN otherwise (equal to nothing).
        self._held_for = math.nan

    def arm(self, when: float, before_poll: bool = True) -> None:
        """
        Arm for C{when} (replacing what was armed).  With C{before_poll}, a call due already runs
        before the loop polls again; otherwise after one poll, so that I/O is not starved.

        Never blocks.  Call it from the loop's thread.
        """
        if when == self._held_for and not before_poll:
            # The watcher kept through the pass of timed calls is armed for this very time.
            self._held_for = math.nan
            self.state = ArmState.ARMED
            self.arm_before = when
            return
        self._clear()
        delay = when - self._seconds()
        if delay <= 0.0 and before_poll:
            # Due now (callLater(0) from input code or a greenlet): run it before the loop polls
            # again, as Twisted's reactors run due calls before polling.  A zero timer would run
            # after the next poll's I/O on libuv, and after or before it on libev.
            self._soon = self._loop.run_callback(self._fired_soon)
        elif delay <= 0.0:
            # A stopped (or fired) timer starts again with its own delay, on libev and libuv.
            zero = self._zero
            if zero is None:
                zero = self._zero = self._loop.timer(0.0)
            zero.start(self._fired)
            self._watcher = zero
        else:
            # Never early (libuv counts whole milliseconds and warns below one); at most 1 ms late.
            watcher = self._loop.timer(max(delay, 0.001))
            watcher.start(self._fired, update=True)
            self._watcher = watcher
        self.state = ArmState.ARMED
        self.arm_before = when

    def hold(self) -> None:
        """
        A pass of timed calls begins: calls added do not arm the timer (as L{pause}), but what is
        armed stays armed, so that L{arm} at the end of the pass can keep it.  Never blocks.

        Call it from a greenlet that does not switch to the hub until L{arm} or L{disarm}: the
        watcher kept must not fire meanwhile.
        """
        if self._watcher is not None and self.state is ArmState.ARMED:
            self._held_for = self.arm_before
        else:
            self._clear()
        self.state = ArmState.PAUSED
        self.arm_before = -math.inf

    def disarm(self) -> None:
        """Nothing armed; the next call added arms the timer.  Never blocks."""
        self._clear()
        self.state = ArmState.IDLE
        self.arm_before = math.inf

    def pause(self) -> None:
        """Nothing armed, and calls added do not arm the timer until L{arm} or L{disarm}.
        Never blocks."""
        self._clear()
        zero, self._zero = self._zero, None
        if zero is not None:
            self._close_soon(zero)
        self.state = ArmState.PAUSED
        self.arm_before = -math.inf

    def _clear(self) -> None:
        self._held_for = math.nan
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            if watcher is self._zero:
                watcher.stop()
            else:
                self._close_soon(watcher)
        soon, self._soon = self._soon, None
        if soon is not None:
            soon.stop()

    def _fired(self) -> None:
        # Not closed from inside its own callback: libuv can crash.
        self.disarm()
        # The loop may report a timer before the I/O events of the same poll (libev does): as in
        # Twisted's mainLoop, the I/O of a poll is handled before the calls that came due.
        self._loop.run_callback(self._on_due)

    def _fired_soon(self) -> None:
        self._soon = None
        self.disarm()
        self._on_due()
