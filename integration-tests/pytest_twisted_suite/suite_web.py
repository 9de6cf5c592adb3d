"""twisted.web server and Agent client on GeventReactor: keep-alive, chunked bodies, blocking render."""

from __future__ import annotations

import gevent
from helpers import http_get, make_agent, raw_http, the_reactor, wait
from twisted.web import resource, server

from geventreactor.pytest_plugin import greenlet_test


class Chunked(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        # No Content-Length and several writes: HTTP/1.1 sends them as chunks.
        for i in range(5):
            request.write(b"part %d;" % i)
        request.finish()
        return server.NOT_DONE_YET


class Slow(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        # Runs in the connection's input greenlet: it may block; other requests go on.
        gevent.sleep(0.2)
        return b"slow done"


class Echo(resource.Resource):
    isLeaf = True

    def render_POST(self, request):
        return b"got " + request.content.read()


class CountingSite(server.Site):
    connections = 0

    def buildProtocol(self, addr):
        CountingSite.connections += 1
        return super().buildProtocol(addr)


def make_site():
    root = resource.Resource()
    root.putChild(b"chunked", Chunked())
    root.putChild(b"slow", Slow())
    root.putChild(b"echo", Echo())
    CountingSite.connections = 0
    return CountingSite(root)


@greenlet_test
def test_agent_keep_alive_and_chunked_bodies():
    reactor = the_reactor()
    port = reactor.listenTCP(0, make_site(), interface="127.0.0.1")
    agent, pool = make_agent(persistent=True)
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"
        for _ in range(3):
            code, _headers, body = http_get(agent, base + "/chunked")
            assert code == 200
            assert body == b"part 0;part 1;part 2;part 3;part 4;"
        # Three requests, one connection: the pool kept it alive.
        assert CountingSite.connections == 1
    finally:
        wait(pool.closeCachedConnections())
        wait(port.stopListening())


def test_chunked_framing_on_the_wire():
    # The raw bytes: HTTP/1.1 chunked transfer encoding, read with a gevent socket in a greenlet.
    reactor = the_reactor()
    port = reactor.listenTCP(0, make_site(), interface="127.0.0.1")

    def fetch():
        return raw_http(
            port.getHost().port,
            b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )

    from geventreactor import deferToGreenlet

    def check(raw):
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert body.startswith(b"7\r\npart 0;\r\n")
        assert body.endswith(b"0\r\n\r\n")
        return port.stopListening()

    return deferToGreenlet(fetch).addCallback(check)


@greenlet_test
def test_blocking_render_does_not_stall_other_requests():
    reactor = the_reactor()
    port = reactor.listenTCP(0, make_site(), interface="127.0.0.1")
    agent, pool = make_agent(persistent=False)
    order = []
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"

        def get(path):
            code, _, body = http_get(agent, base + path)
            order.append(path)
            return code, body

        slow = gevent.spawn(get, "/slow")
        gevent.sleep(0.05)
        fast = gevent.spawn(get, "/chunked")
        gevent.joinall([slow, fast], timeout=10, raise_error=True)
        assert slow.value == (200, b"slow done")
        assert fast.value[1] == b"part 0;part 1;part 2;part 3;part 4;"
        assert order == ["/chunked", "/slow"]
    finally:
        wait(pool.closeCachedConnections())
        wait(port.stopListening())


@greenlet_test
def test_post_body():
    from io import BytesIO

    from twisted.web.client import FileBodyProducer, readBody

    reactor = the_reactor()
    port = reactor.listenTCP(0, make_site(), interface="127.0.0.1")
    agent, pool = make_agent(persistent=True)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/echo".encode()
        payload = bytes(range(256)) * 400
        response = wait(agent.request(b"POST", url, None, FileBodyProducer(BytesIO(payload))))
        assert wait(readBody(response)) == b"got " + payload
    finally:
        wait(pool.closeCachedConnections())
        wait(port.stopListening())
