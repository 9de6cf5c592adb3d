"""A WSGI app for the GeventReactorWorker tests: it calls Twisted's HTTP client (Agent) through the
reactor that runs beside gunicorn's gevent worker."""

import os
import sys
from urllib.parse import parse_qs

import gevent
from gevent.monkey import get_original
from twisted.internet import reactor
from twisted.web.client import Agent, readBody

from gevent_deferred import waitForDeferred

# Shows that a worker's reactor is shut down (its triggers run) when the worker stops.
reactor.addSystemEventTrigger(
    "before",
    "shutdown",
    lambda: print(f"reactor shutdown in worker {os.getpid()}", file=sys.stderr, flush=True),
)


def wsgi(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ.get("PATH_INFO", "")
    seconds = float(query.get("s", ["0"])[0])
    if path == "/sleep":
        gevent.sleep(seconds)
    elif path == "/block":
        # The gevent worker patched time.sleep; the original blocks the whole loop.
        get_original("time", "sleep")(seconds)
    if path == "/agent":
        url = f"http://127.0.0.1:{environ['SERVER_PORT']}/sleep?s=0.1"
        response = waitForDeferred(Agent(reactor).request(b"GET", url.encode()), timeout=10)
        fetched = waitForDeferred(readBody(response), timeout=10).decode()
        body = f"pid={os.getpid()} path={path} code={response.code} fetched=[{fetched}]"
    else:
        body = f"pid={os.getpid()} path={path} reactor={type(reactor).__name__}"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
