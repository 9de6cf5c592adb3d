"""The WSGI application suite_twistd.py serves with `twistd -n --reactor=gevent web --wsgi=...`."""

from __future__ import annotations

import threading

# Every request waits here until five are in flight at once: the test's proof of concurrency.
# WSGIResource runs each request in a thread of the reactor's pool.
_barrier = threading.Barrier(5, timeout=20)


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    index = _barrier.wait()
    reply = b"wsgi %s %s body=%s concurrent=5 index=%d" % (
        environ["REQUEST_METHOD"].encode(),
        environ["PATH_INFO"].encode(),
        body,
        index,
    )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(reply)))])
    return [reply]
