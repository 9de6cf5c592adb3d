"""
The reactor's own context: the greenlet where timed calls and C{callFromThread} calls run.

That code must not block, because every timer and wake-up of the reactor waits behind it.  It runs in
a dedicated greenlet (not in the hub) so that a blocking gevent call made there fails at once with an
error that says what to do instead, rather than gevent's generic "event loop callback" message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent.exceptions import BlockingSwitchOutError
from greenlet import greenlet
from twisted.logger import Logger

__all__ = ["ReactorContextBlockingError"]

_log = Logger(namespace="twisted.internet.base")


class ReactorContextBlockingError(BlockingSwitchOutError):
    """
    Code running in the reactor's own context tried to block the current greenlet.
    """


_ADVICE = (
    "A gevent blocking call was made in the reactor's own context (a callLater or callFromThread "
    "function, or a Deferred callback fired from one). That code must not block: every timer and "
    "wake-up of the reactor would wait behind it. Run the blocking part in its own greenlet instead "
    "(gevent.spawn(f), or gevent_deferred.deferToGreenlet(f) to get a Deferred), or block in "
    "protocol input code (dataReceived, lineReceived, connectionMade), which runs in a greenlet "
    "that may block."
)


class _ReactorContext(greenlet):
    """
    The greenlet that runs reactor-context jobs on behalf of the hub.

    The hub hands it a job with C{switch(job)}; it runs the job and switches back to the hub.  If a
    job switches away with a raw greenlet switch (pytest-twisted does this to deliver a result to
    the test's greenlet), control may come back to the hub before the job is done; L{run_job}
    re-enters the context until the job is finished, so that no job is stranded.
    """

    def __init__(self, hub: greenlet) -> None:
        super().__init__(parent=hub)
        self._job: Callable[[], Any] | None = None

    def switch_out(self) -> None:
        # Called by gevent's Hub.switch() just before a blocking switch to the hub.
        raise ReactorContextBlockingError(_ADVICE)

    def run_job(self, job: Callable[[], Any]) -> None:
        """
        Run C{job} in this greenlet and return when it is done.  Must be called from the hub.
        """
        self._job = job
        self.switch()
        while self._job is not None and not self.dead:
            self.switch()

    def run(self) -> None:
        to_hub = greenlet.switch
        hub = self.parent
        while True:
            job = self._job
            try:
                if job is not None:
                    job()
            except BaseException:
                # Jobs log their own failures; this only keeps the greenlet alive for the next one.
                _log.failure("Unexpected error in main loop.")
            self._job = None
            to_hub(hub)
