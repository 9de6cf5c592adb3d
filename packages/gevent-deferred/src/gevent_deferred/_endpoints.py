"""connect() and listen(): Twisted endpoints (objects or description strings) for greenlets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from greenlet import getcurrent
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory

from ._checks import check_reactor, check_timeout
from ._errors import ReactorStoppedError
from ._green_connection import GreenConnection
from ._green_factory import GreenFactory
from ._green_protocol import GreenProtocol
from ._in_loop import CROSS_THREAD, installed_reactor, where_to_wait
from ._mailbox import mailbox_for
from ._reactor_links import stopped_for_good
from ._reactor_protocol import TwistedReactor
from ._wait import waitForDeferred

__all__ = ["connect", "listen"]

_EXAMPLES = "e.g. 'tcp:127.0.0.1:8000', 'tls:example.com:443', 'unix:/run/app.sock'"


def _reactor(api: str, reactor: TwistedReactor | None) -> Any:
    if reactor is not None:
        check_reactor(api, reactor)
        return reactor
    reactor = installed_reactor()
    if reactor is None:
        raise RuntimeError(
            f"{api}(): no Twisted reactor is installed and none was passed; call "
            "geventreactor.install(background=True) first, or pass reactor=..."
        )
    return reactor


def _endpoint(api: str, reactor: TwistedReactor, endpoint: Any, server: bool) -> Any:
    interface = IStreamServerEndpoint if server else IStreamClientEndpoint
    method = "listen" if server else "connect"
    if isinstance(endpoint, str):
        parse = serverFromString if server else clientFromString
        try:
            return parse(reactor, endpoint)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(
                f"{api}(endpoint=...) could not parse the endpoint description {endpoint!r}: "
                f"{exc} ({_EXAMPLES})"
            ) from exc
    if interface.providedBy(endpoint) or callable(getattr(endpoint, method, None)):
        return endpoint
    raise TypeError(
        f"{api}(endpoint=...) expects an {interface.__name__} or an endpoint description string "
        f"({_EXAMPLES}), got {type(endpoint).__name__}: {endpoint!r:.80}"
    )


class _ClientFactory(Factory):
    """Builds the one protocol of a connect() call, in the reactor's thread."""

    def __init__(self, conn: GreenConnection, reactor: TwistedReactor) -> None:
        self.conn = conn
        self.reactor = reactor
        self.proto: GreenProtocol | None = None
        self.abandoned = False

    def buildProtocol(self, addr: Any) -> GreenProtocol:
        proto = self.proto = self.conn.make_protocol(self.reactor)
        proto.factory = self
        proto.abandoned = self.abandoned
        return proto

    def abandon(self) -> None:
        # connect() gave up (timeout, kill): a connection made anyway is dropped.
        self.abandoned = True
        if self.proto is not None:
            self.proto.abort()


def connect(
    endpoint: Any, *, reactor: TwistedReactor | None = None, timeout: float | None = None
) -> GreenConnection:
    """
    Connect to ``endpoint``; return a ``GreenConnection`` once connected.

    Blocks the current greenlet. Must not be called from the hub. ``endpoint`` is an
    ``IStreamClientEndpoint`` or a description string for Twisted's ``clientFromString``
    (``"tcp:127.0.0.1:8000"``, ``"tls:example.com:443"``, ``"unix:/path"``). ``reactor``
    defaults to the installed one. A failed attempt raises Twisted's error for it; after
    ``timeout`` seconds the attempt is cancelled and ``WaitTimeoutError`` raised. If the calling
    greenlet is killed (during or after the attempt) the connection is aborted.
    """
    api = "connect"
    check_timeout(api, timeout)
    reactor = _reactor(api, reactor)
    endpoint = _endpoint(api, reactor, endpoint, server=False)
    mode, where = where_to_wait(api, reactor)
    hub = gevent.get_hub()
    if mode == CROSS_THREAD:
        conn = GreenConnection(hub, reactor, mailbox=mailbox_for(hub), link=where)
        where.register(conn, reactor)
    else:
        if stopped_for_good(reactor):
            raise ReactorStoppedError(f"{api}(): {reactor!r} has stopped; it connects no more")
        conn = GreenConnection(hub, reactor)
    factory = _ClientFactory(conn, reactor)

    async def attempt() -> Any:
        return await endpoint.connect(factory)

    try:
        waitForDeferred(attempt(), timeout=timeout, reactor=reactor)
    except BaseException:
        conn._forget()
        conn._call(factory.abandon)
        raise
    conn.watch_owner(getcurrent())
    return conn


def listen(
    endpoint: Any,
    handler: Callable[[GreenConnection], Any],
    *,
    reactor: TwistedReactor | None = None,
) -> Any:
    """
    Listen on ``endpoint`` and serve each connection with ``handler(conn)`` in its own greenlet.

    Blocks the current greenlet until listening. Must not be called from the hub. The short form
    of ``endpoint.listen(GreenFactory(handler))``: ``endpoint`` is an ``IStreamServerEndpoint``
    or a description string for Twisted's ``serverFromString`` (``"tcp:0"``,
    ``"unix:/path"``, ``"ssl:8443:privateKey=key.pem"``). Returns the listening port (an
    ``IListeningPort``; stop it in the reactor's thread, e.g. with
    ``blockingCallFromGreenlet(reactor, port.stopListening)``).
    """
    api = "listen"
    reactor = _reactor(api, reactor)
    endpoint = _endpoint(api, reactor, endpoint, server=True)
    factory = GreenFactory(handler, reactor=reactor)

    async def attempt() -> Any:
        return await endpoint.listen(factory)

    return waitForDeferred(attempt(), reactor=reactor)
