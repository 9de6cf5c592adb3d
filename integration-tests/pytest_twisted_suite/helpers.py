"""Small helpers shared by the suite's modules (not a conftest: the parent session must not load it)."""

from __future__ import annotations

from typing import Any

from gevent import socket
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from geventreactor import waitForDeferred

TIMEOUT = 10.0


def the_reactor() -> Any:
    # pytest-twisted installed it; imported lazily so that this module never installs one.
    from twisted.internet import reactor

    return reactor


def wait(d: Deferred, timeout: float = TIMEOUT) -> Any:
    """Block this greenlet until ``d`` fires (the test body must run in a greenlet)."""
    return waitForDeferred(d, timeout=timeout)


def http_get(agent: Agent, url: str, headers: dict[bytes, list[bytes]] | None = None) -> tuple:
    """GET ``url`` with ``agent``; block this greenlet; return (code, headers, body bytes)."""
    response = wait(agent.request(b"GET", url.encode(), Headers(headers or {})))
    body = wait(readBody(response))
    return response.code, response.headers, body


def make_agent(persistent: bool = True) -> tuple[Agent, HTTPConnectionPool]:
    reactor = the_reactor()
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    return Agent(reactor, pool=pool), pool


def raw_http(port: int, request: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send raw HTTP bytes with a gevent socket and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
