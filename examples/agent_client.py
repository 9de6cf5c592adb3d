"""
The 2013 geventreactor README's client, for Python 3: Twisted's Agent on GeventReactor.

Without a URL it serves a page itself (twisted.web on 127.0.0.1, a random port) and fetches it, so it
runs anywhere without a network; meanwhile a plain gevent greenlet fetches the same page with a gevent
socket, both on the one loop.

    python examples/agent_client.py                      # fetch the built-in page, print, exit
    python examples/agent_client.py http://example.com/  # fetch a URL of your choice
"""

from __future__ import annotations

import sys
import warnings

import geventreactor

geventreactor.install()

import gevent  # noqa: E402
from gevent import socket  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.web import resource, server  # noqa: E402
from twisted.web.client import Agent, readBody  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402

PAGE = b"hello from twisted.web on gevent's loop\n"

# Twisted itself warns about its own response transport here, with any reactor.
warnings.filterwarnings("ignore", "Using readBody", DeprecationWarning)


class Page(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return PAGE


def fetch_with_gevent(port: int) -> bytes:
    # Plain gevent code beside Twisted: a blocking socket in its own greenlet.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def main(url: str | None) -> int:
    port = None
    if url is None:
        port = reactor.listenTCP(0, server.Site(Page()), interface="127.0.0.1")
        url = f"http://127.0.0.1:{port.getHost().port}/"
    outcome = {}

    agent = Agent(reactor)
    d = agent.request(
        b"GET", url.encode(), Headers({"User-Agent": ["Twisted Web Client Example"]}), None
    )

    def cbResponse(response):
        print("Response received:", response.code)
        return readBody(response)

    def cbBody(body):
        print(f"Agent got {len(body)} bytes: {body[:60]!r}")
        outcome["agent"] = body

    def cbShutdown(result):
        if port is not None:
            g = gevent.spawn(fetch_with_gevent, port.getHost().port)
            g.join(10)
            print(f"gevent socket got: {g.value!r}")
            outcome["gevent"] = g.value
        reactor.stop()
        return result

    d.addCallback(cbResponse).addCallback(cbBody)
    d.addErrback(lambda f: print("Request failed:", f.getErrorMessage()))
    # cbShutdown blocks (g.join): run it in a greenlet, not in a callback of the reactor.
    d.addBoth(lambda result: gevent.spawn(cbShutdown, result))
    reactor.run()
    if port is not None:
        return 0 if outcome.get("agent") == PAGE == outcome.get("gevent") else 1
    return 0 if "agent" in outcome else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
