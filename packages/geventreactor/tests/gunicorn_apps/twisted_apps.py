"""Applications for the TwistedWorker tests: the same small service as a twisted.web resource,
a WSGI callable and a line protocol. Each answer names the worker process that served it."""

import os
import threading
import time
from urllib.parse import parse_qs

import gevent
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.web.resource import Resource


def _seconds(query):
    return float(query.get("s", ["0"])[0])


class Service(Resource):
    isLeaf = True

    def render_GET(self, request):
        query = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        path = request.path.decode()
        if path == "/sleep":
            gevent.sleep(_seconds(query))  # blocks this request's greenlet only
        elif path == "/block":
            time.sleep(_seconds(query))  # blocks the worker's whole loop
        request.setHeader(b"content-type", b"text/plain")
        return f"pid={os.getpid()} path={path}".encode()


resource = Service()


class _SlowToClose(list):
    # The client has the whole body before close() returns: it closes its end first.
    def close(self):
        time.sleep(0.5)


def wsgi(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ.get("PATH_INFO", "")
    if path == "/sleep":
        gevent.sleep(_seconds(query))
    main = threading.current_thread() is threading.main_thread()
    body = f"pid={os.getpid()} path={path} thread={'main' if main else 'other'}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    if path == "/slow-close":
        return _SlowToClose([body])
    return [body]


class _PidLine(LineReceiver):
    delimiter = b"\n"

    def lineReceived(self, line):
        if line.startswith(b"sleep "):
            gevent.sleep(float(line.split()[1]))
        self.sendLine(b"pid=%d echo=%s" % (os.getpid(), line))


factory = Factory.forProtocol(_PidLine)
