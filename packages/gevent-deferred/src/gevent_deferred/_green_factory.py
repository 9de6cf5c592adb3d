"""GreenFactory: a Twisted server factory whose every connection is served by its own greenlet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from greenlet import GreenletExit
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ._errors import ReactorStoppedError
from ._green_connection import GreenConnection
from ._green_protocol import GreenProtocol
from ._in_loop import installed_reactor
from ._mailbox import mailbox_for
from ._reactor_links import link_for
from ._reactor_protocol import TwistedReactor
from ._threads import hub_if_exists

__all__ = ["GreenFactory"]

_log = Logger()


class GreenFactory(Factory):
    """
    A protocol factory that runs ``handler(conn)`` in a new greenlet for each connection.

    ``conn`` is a ``GreenConnection``; it is closed when the handler returns. An exception in
    the handler is logged and aborts that connection only; killing the handler's greenlet
    aborts its connection too. Works wherever a factory does: ``listenTCP``, server endpoints,
    ``adoptStreamPort``, twistd plugins.

    Never blocks (the handlers run in greenlets of the hub of the thread that made the factory).
    Make it in the gevent thread that should run the handlers. With a reactor that is not
    gevent's, running in another thread, pass it as ``reactor`` (or have it installed).
    """

    def __init__(
        self, handler: Callable[[GreenConnection], Any], *, reactor: TwistedReactor | None = None
    ) -> None:
        if not callable(handler):
            raise TypeError(
                "GreenFactory(handler) expects a callable taking a GreenConnection, got "
                f"{type(handler).__name__}: {handler!r:.80}"
            )
        self.handler = handler
        self.reactor = reactor
        self.hub = gevent.get_hub()
        self._mailbox = mailbox_for(self.hub)

    def buildProtocol(self, addr: Any) -> GreenProtocol:
        # Where the reactor builds protocols: this hub's thread (GeventReactor) or another.
        local = hub_if_exists() is self.hub
        reactor = self.reactor
        if reactor is None and not local:
            reactor = installed_reactor()
        conn = GreenConnection(
            self.hub,
            reactor,
            mailbox=None if local else self._mailbox,
            on_made=self._start,
        )
        if not local and reactor is not None:
            link = link_for(reactor)
            link.register(conn, reactor)
            conn._link = link
        proto = conn.make_protocol(reactor)
        proto.factory = self
        return proto

    def _start(self, conn: GreenConnection) -> None:
        # In this factory's hub, as the connection is made.
        gevent.spawn(self._serve, conn)

    def _serve(self, conn: GreenConnection) -> None:
        try:
            self.handler(conn)
        except GreenletExit:
            conn.abort()
            raise
        except ReactorStoppedError:
            conn.abort()  # the reactor is going away; nothing to report
        except Exception:
            _log.failure(
                "GreenFactory handler {handler!r} failed; its connection {conn!r} is aborted",
                handler=self.handler,
                conn=conn,
            )
            conn.abort()
        else:
            conn.close()
