"""A gevent.pywsgi server and a twisted.web server in one process, each handler calling the other."""

from __future__ import annotations

import gevent
from gevent import pywsgi
from helpers import http_get, make_agent, raw_http, the_reactor, wait
from twisted.web import resource, server

from geventreactor.pytest_plugin import greenlet_test


def gevent_get(port: int, path: str) -> bytes:
    raw = raw_http(port, b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
    return body


class TwistedHello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"twisted says hi"


class TwistedViaGevent(resource.Resource):
    isLeaf = True

    def __init__(self, ports):
        super().__init__()
        self.ports = ports

    def render_GET(self, request):
        # Input path: a runner greenlet, so a blocking gevent socket call is fine here.
        return b"twisted got: " + gevent_get(self.ports["gevent"], "/hello")


def make_wsgi_app(ports, agent):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/hello":
            body = b"gevent says hi"
        elif path == "/via-twisted":
            # A pywsgi handler greenlet: it may wait for Twisted's Agent.
            _, _, got = http_get(agent, f"http://127.0.0.1:{ports['twisted']}/hello")
            body = b"gevent got: " + got
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return app


@greenlet_test
def test_both_servers_serve_and_call_each_other():
    reactor = the_reactor()
    ports = {}
    agent, pool = make_agent(persistent=False)
    root = resource.Resource()
    root.putChild(b"hello", TwistedHello())
    root.putChild(b"via-gevent", TwistedViaGevent(ports))
    twisted_port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    ports["twisted"] = twisted_port.getHost().port
    wsgi = pywsgi.WSGIServer(("127.0.0.1", 0), make_wsgi_app(ports, agent), log=None)
    wsgi.start()
    ports["gevent"] = wsgi.server_port
    try:
        jobs = []
        for _ in range(5):
            jobs.append(gevent.spawn(gevent_get, ports["gevent"], "/hello"))
            jobs.append(gevent.spawn(gevent_get, ports["gevent"], "/via-twisted"))
            jobs.append(
                gevent.spawn(http_get, agent, f"http://127.0.0.1:{ports['twisted']}/via-gevent")
            )
            jobs.append(gevent.spawn(http_get, agent, f"http://127.0.0.1:{ports['twisted']}/hello"))
        gevent.joinall(jobs, timeout=20, raise_error=True)
        values = [j.value for j in jobs]
        for i in range(0, len(values), 4):
            assert values[i] == b"gevent says hi"
            assert values[i + 1] == b"gevent got: twisted says hi"
            assert values[i + 2][0] == 200 and values[i + 2][2] == b"twisted got: gevent says hi"
            assert values[i + 3][2] == b"twisted says hi"
    finally:
        wsgi.stop(timeout=5)
        wait(pool.closeCachedConnections())
        wait(twisted_port.stopListening())
