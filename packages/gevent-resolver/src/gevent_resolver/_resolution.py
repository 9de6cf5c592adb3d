"""One hostname resolution in progress, as handed to an ``IResolutionReceiver``."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHostResolution
from zope.interface import implementer


@implementer(IHostResolution)
class GeventHostResolution:
    """The resolution of ``name`` started by ``GeventResolver.resolveHostName``.

    ``cancel()`` stops the lookup: its greenlet is killed, the receiver gets no addresses and its
    ``resolutionComplete()`` at once, so a receiver waiting for completion is never left waiting.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lookup: Deferred[Any] | None = None

    def cancel(self) -> None:
        """Stop the lookup; nothing happens if it is already complete.

        Never blocks. Call it from the reactor's thread, like every Twisted API.
        """
        if self._lookup is not None:
            self._lookup.cancel()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
