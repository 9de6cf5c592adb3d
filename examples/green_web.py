"""
A gevent web application that calls treq and twisted.names, with a reactor that runs itself.

A gevent ``pywsgi`` server answers ``/price?item=...``: its handler resolves the price service's
name with twisted.names, fetches the price from that service (a twisted.web page) with treq, and
returns both, each call simply blocking its own greenlet with ``waitForDeferred``. The name is
served by a DNS server on 127.0.0.1 (twisted.names in its own thread), so nothing here needs a
network. Nothing calls reactor.run(); a few greenlets then ask the application at once.

    python examples/green_web.py
"""

from __future__ import annotations

import geventreactor

reactor = geventreactor.install(background=True)

import gevent  # noqa: E402
import treq  # noqa: E402
from gevent import pywsgi, socket  # noqa: E402
from twisted.names import client  # noqa: E402
from twisted.web import resource, server  # noqa: E402

from gevent_resolver.testing import LoopbackDNSServer  # noqa: E402
from geventreactor import waitForDeferred  # noqa: E402

PRICES = {b"tea": b"3", b"coffee": b"4", b"cake": b"5"}


class Prices(resource.Resource):
    """The price service: a plain twisted.web resource."""

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return PRICES.get(request.args.get(b"item", [b""])[0], b"unknown")


class App:
    """The WSGI application: synchronous code, run by pywsgi in a greenlet per request."""

    def __init__(self, resolver, service: str, port: int) -> None:
        self.resolver = resolver
        self.service = service
        self.port = port

    def __call__(self, environ, start_response):
        item = environ.get("QUERY_STRING", "").partition("item=")[2] or "tea"
        # twisted.names, as a blocking call of this greenlet.
        answers, _, _ = waitForDeferred(self.resolver.lookupAddress(self.service), timeout=5)
        address = answers[0].payload.dottedQuad()
        # treq, the same way: the request and then its body.
        response = waitForDeferred(
            treq.get(f"http://{address}:{self.port}/?item={item}", timeout=5), timeout=10
        )
        price = waitForDeferred(treq.text_content(response), timeout=5)
        body = f"{item} costs {price} (from {self.service} at {address})\n".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]


def ask(port: int, item: str) -> str:
    # A plain gevent client of the application.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /price?item={item} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.partition(b"\r\n\r\n")[2].decode().strip()


if __name__ == "__main__":
    prices = reactor.listenTCP(0, server.Site(Prices()), interface="127.0.0.1")
    with LoopbackDNSServer(records={"prices": [("A", "127.0.0.1")]}) as dns_server:
        resolver = client.Resolver(servers=[("127.0.0.1", dns_server.port)], reactor=reactor)
        app = App(resolver, dns_server.name("prices"), prices.getHost().port)
        web = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
        web.start()
        items = ["tea", "coffee", "cake", "tea"]
        greenlets = [gevent.spawn(ask, web.server_port, item) for item in items]
        gevent.joinall(greenlets, raise_error=True, timeout=20)
        for greenlet in greenlets:
            print(greenlet.value)
        web.stop(timeout=5)
