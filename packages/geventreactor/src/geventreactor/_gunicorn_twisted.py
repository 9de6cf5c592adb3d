"""C{TwistedWorker}: a gunicorn worker that serves a Twisted application on GeventReactor."""

from __future__ import annotations

import os
import socket
import sys
from datetime import datetime
from typing import Any

import gevent
from gunicorn import util
from gunicorn.errors import AppImportError
from gunicorn.workers.base import Worker
from twisted.internet import tcp, unix
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.task import LoopingCall
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from twisted.web.wsgi import WSGIResource
from zope.interface import implementer

from ._gunicorn_common import (
    Heartbeat,
    exit_hard,
    heartbeat_interval,
    log_twisted_to_gunicorn,
    reactor_after_fork,
)

__all__ = ["TwistedWorker"]


@implementer(IProtocolFactory)
class _Connections:
    """
    The protocol factory the listening ports see: builds protocols with the application's
    factory and remembers them, so that a graceful stop knows which connections still live.
    """

    def __init__(self, factory: Any, on_connection: Any) -> None:
        self.factory = factory
        self._on_connection = on_connection
        self._live: dict[int, Any] = {}

    def __getattr__(self, name: str) -> Any:
        # logPrefix and anything else a port may ask: the application's factory answers.
        return getattr(self.factory, name)

    def doStart(self) -> None:
        """Never blocks."""
        self.factory.doStart()

    def doStop(self) -> None:
        """Never blocks."""
        self.factory.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self.factory.buildProtocol(addr)
        if protocol is not None:
            self._live[id(protocol)] = protocol
            self._on_connection()
        return protocol

    def live(self) -> list[Any]:
        """The protocols whose connection is still open (and forget the others). Never blocks."""
        live = {key: protocol for key, protocol in self._live.items() if _is_open(protocol)}
        self._live = live
        return [_unwrapped(protocol) for protocol in live.values()]


def _unwrapped(protocol: Any) -> Any:
    # Site builds a proxy that chooses HTTP/1.1 or HTTP/2 and holds the real channel.
    return getattr(protocol, "_channel", protocol)


def _is_open(protocol: Any) -> bool:
    transport = getattr(_unwrapped(protocol), "transport", None)
    return transport is None or not getattr(transport, "disconnected", False)


class _GunicornRequest(Request):
    """A twisted.web request that knows when it started, for gunicorn's access log."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gunicorn_started = datetime.now()

    def process(self) -> None:
        site = self.channel.factory if self.channel is not None else None
        if site is not None and (site.stopping or not site.keep_alive):
            # The worker stops (or --keep-alive is 0): this response is the connection's last.
            self.channel.persistent = False
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        super().process()

    def connectionLost(self, reason: Any) -> None:
        # A response whose client went away before finish() (a WSGI application's thread ends it
        # a moment after its last write, and a client that has read Content-Length bytes closes
        # at once) is logged all the same, as gunicorn's own workers log every request they
        # answered; finish() will not come for it.
        channel = self.channel
        if not self.finished and self.startedWriting and channel is not None:
            channel.factory.log(self)
        super().connectionLost(reason)


class _AccessLogResponse:
    """What gunicorn's access log reads from a response."""

    def __init__(self, request: http.Request) -> None:
        self.status = str(request.code)
        self.sent = request.sentLength
        self.headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, values in request.responseHeaders.getAllRawHeaders()
            for value in values
        ]


def _access_log_environ(request: http.Request) -> dict[str, str]:
    # The WSGI-style names gunicorn's access-log atoms are read from.
    uri = request.uri.decode("latin-1")
    path, _, query = uri.partition("?")
    client = request.getClientAddress()
    environ = {
        "REQUEST_METHOD": request.method.decode("latin-1"),
        "RAW_URI": uri,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": request.clientproto.decode("latin-1"),
        "REMOTE_ADDR": getattr(client, "host", None) or "-",
    }
    for name, values in request.requestHeaders.getAllRawHeaders():
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        environ[key] = ",".join(value.decode("latin-1") for value in values)
    return environ


class _GunicornSite(Site):
    """Serves the application's resource; each finished request goes to gunicorn's access log
    and counts towards C{max_requests}."""

    requestFactory = _GunicornRequest

    def __init__(self, resource: Any, worker: TwistedWorker) -> None:
        # gunicorn's --keep-alive: how long an idle connection waits for its next request.
        keep_alive = worker.cfg.keepalive
        super().__init__(resource, timeout=keep_alive if keep_alive > 0 else None)
        self._worker = worker
        self.keep_alive = keep_alive > 0
        self.stopping = False

    def log(self, request: http.Request) -> None:
        worker = self._worker
        log = worker.log
        if getattr(log, "access_log_enabled", True):
            started = getattr(request, "gunicorn_started", None) or datetime.now()
            request_headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, values in request.requestHeaders.getAllRawHeaders()
                for value in values
            ]
            log.access(
                _AccessLogResponse(request),
                request_headers,
                _access_log_environ(request),
                datetime.now() - started,
            )
        if request.channel is not None:
            # A keep-alive connection between two requests may be closed by a graceful stop.
            setattr(request.channel, "gunicorn_served", True)  # noqa: B010
        worker.count_request()


class _GracefulStop:
    """
    Stop accepting, let open connections finish within C{graceful_timeout}, then stop the
    reactor. HTTP connections are closed after their current response; one idle between two
    requests is closed at once, and one that has not sent its first request yet (it was just
    accepted) gets the keep-alive time to send it.
    """

    def __init__(self, reactor: Any, ports: list[Any], connections: _Connections, log: Any):
        self._reactor = reactor
        self._ports = ports
        self._connections = connections
        self._log = log
        self._deadline = self._fresh_deadline = 0.0
        self._poll = LoopingCall(self._check)
        self._poll.clock = reactor
        self.started = False

    def start(self, graceful_timeout: float, keep_alive: float) -> None:
        """Never blocks. Must run in the reactor's thread (from a timed call or a greenlet)."""
        if self.started:
            return
        self.started = True
        factory = self._connections.factory
        if isinstance(factory, _GunicornSite):
            factory.stopping = True
        for port in self._ports:
            port.stopListening()
        now = self._reactor.seconds()
        self._deadline = now + graceful_timeout
        self._fresh_deadline = now + max(1.0, float(keep_alive))
        self._poll.start(0.05, now=True).addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        # Never leave a stopping worker running: the master would only SIGKILL it later.
        self._log.error("Graceful stop failed, stopping now:\n%s", failure.getTraceback())
        if self._reactor.running:
            self._reactor.stop()

    def _check(self) -> None:
        live = self._connections.live()
        now = self._reactor.seconds()
        for protocol in live:
            if isinstance(protocol, http.HTTPChannel):
                if protocol.requests:
                    protocol.persistent = False
                elif getattr(protocol, "gunicorn_served", False) or now >= self._fresh_deadline:
                    protocol.loseConnection()
        if live and now < self._deadline:
            return
        if live:
            self._log.warning("Worker graceful timeout (pid:%s)", os.getpid())
        self._poll.stop()
        self._reactor.stop()


class _SharedPort:
    """
    What a port on a socket shared with the master and the other workers does differently: it
    accepts one connection per readiness event when there are other workers (as gunicorn's gevent
    worker does), so that a burst of connections is spread over the workers instead of taken by
    the first one awake; and stopping it neither shuts the socket down (that would stop accept()
    in every worker) nor, for a UNIX socket, unlinks its path.
    """

    _shouldShutdown = False
    accept_one: bool = False

    @property
    def numberAccepts(self) -> int:
        return 1 if self.accept_one else self._numberAccepts

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        self._numberAccepts = value


class _SharedTCPPort(_SharedPort, tcp.Port):
    pass


class _SharedUNIXPort(_SharedPort, unix.Port):
    def connectionLost(self, reason: Any) -> None:
        tcp.Port.connectionLost(self, reason)  # not unix.Port's, which unlinks the path


def _adopt(reactor: Any, listener: Any, factory: Any, accept_one: bool) -> Any:
    # As reactor.adoptStreamPort, with the port classes above.
    if listener.FAMILY == socket.AF_UNIX:
        port = _SharedUNIXPort._fromListeningDescriptor(reactor, listener.fileno(), factory)
    else:
        port = _SharedTCPPort._fromListeningDescriptor(
            reactor, listener.fileno(), listener.FAMILY, factory
        )
    port.accept_one = accept_one
    port.startListening()
    return port


def serving_factory(app: Any, reactor: Any, worker: TwistedWorker) -> Any:
    """The protocol factory for C{app}: an IResource (in a Site), an IProtocolFactory (as it is)
    or a WSGI callable (in Twisted's WSGIResource, on the reactor's thread pool)."""
    if IResource.providedBy(app):
        return _GunicornSite(app, worker)
    if IProtocolFactory.providedBy(app):
        return app
    if callable(app):
        return _GunicornSite(WSGIResource(reactor, reactor.getThreadPool(), app), worker)
    raise TypeError(
        "TwistedWorker: the application must be a twisted.web IResource, a Twisted "
        f"IProtocolFactory or a WSGI callable, got {app!r}"
    )


def _ignore() -> None:
    pass


_NOT_CALLABLE = "Application object must be callable."


def _import_twisted_app(import_app: Any) -> Any:
    # gunicorn's loader insists on a callable; a resource or a protocol factory named by a plain
    # attribute (module:name) is let through, anything else keeps gunicorn's error.
    def import_app_or_twisted(uri: str) -> Any:
        try:
            return import_app(uri)
        except AppImportError as exc:
            if str(exc) != _NOT_CALLABLE:
                raise
            module, _, name = uri.partition(":")
            obj = getattr(sys.modules.get(module), (name or "application").strip(), None)
            if IResource.providedBy(obj) or IProtocolFactory.providedBy(obj):
                return obj
            raise AppImportError(
                f"{_NOT_CALLABLE} TwistedWorker also serves a twisted.web IResource or a Twisted "
                f"IProtocolFactory named as module:attribute; {uri!r} is neither"
            ) from exc

    import_app_or_twisted.geventreactor_wrapped = True  # type: ignore[attr-defined]
    return import_app_or_twisted


class TwistedWorker(Worker):
    """
    A gunicorn worker that serves a Twisted application on GeventReactor::

        gunicorn -k geventreactor.gunicorn.TwistedWorker module:app

    C{app} is an C{IResource} (served by C{twisted.web.server.Site}, with gunicorn's access log),
    an C{IProtocolFactory} (served as it is; each connection counts as one request), or a WSGI
    callable (served by Twisted's C{WSGIResource} on the reactor's thread pool: real threads, or
    greenlets after C{gevent_threadpool.use_gevent_threadpool(reactor)}). Protocol code may block
    its own greenlet with gevent.
    """

    reactor: Any = None

    @classmethod
    def setup(cls) -> None:
        # In the master, before the application is loaded (there with --preload, else in each
        # worker): let gunicorn's loader return a resource or a protocol factory.
        if not getattr(util.import_app, "geventreactor_wrapped", False):
            util.import_app = _import_twisted_app(util.import_app)

    _stop: _GracefulStop | None = None

    def init_process(self) -> None:
        gevent.reinit()  # the hub inherited from the master, if any, is of no use after the fork
        super().init_process()

    def load_wsgi(self) -> None:
        # After gunicorn's signal handlers are in place, before the application is imported: its
        # `from twisted.internet import reactor` must find GeventReactor.
        self.reactor = reactor_after_fork(type(self).__name__)
        log_twisted_to_gunicorn()
        super().load_wsgi()

    def run(self) -> None:
        reactor = self.reactor
        factory = serving_factory(self.wsgi, reactor, self)
        # A Site counts finished requests; any other protocol counts connections.
        on_connection = _ignore if isinstance(factory, _GunicornSite) else self.count_request
        connections = _Connections(factory, on_connection)
        accept_one = self.cfg.workers > 1
        ports = [_adopt(reactor, listener, connections, accept_one) for listener in self.sockets]
        self._stop = _GracefulStop(reactor, ports, connections, self.log)
        heartbeat = Heartbeat(reactor, self.notify, self._orphaned, self.ppid)
        heartbeat.start(heartbeat_interval(self.timeout))
        if not self.alive:  # a signal came while the application was loading
            self._stop.start(self.cfg.graceful_timeout, self.cfg.keepalive)
        reactor.run(installSignalHandlers=False)
        heartbeat.stop()

    # -- requests and stopping, in the reactor's thread -----------------------------------

    def count_request(self) -> None:
        """One request finished: honour C{max_requests}. Never blocks."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self._begin_stop()

    def _orphaned(self) -> None:
        self.log.info("Parent changed, shutting down: %s", self)
        self._begin_stop()

    def _begin_stop(self) -> None:
        self.alive = False
        if self._stop is not None:
            self._stop.start(self.cfg.graceful_timeout, self.cfg.keepalive)

    # -- gunicorn's signals (handlers run between two bytecodes of any greenlet) --------------

    def handle_exit(self, sig: int, frame: Any) -> None:
        # SIGTERM: graceful.
        self.alive = False
        if self.reactor is not None:  # else run() sees `alive` and never starts serving
            self.reactor.callFromThread(self._begin_stop)

    def handle_quit(self, sig: int, frame: Any) -> None:
        # SIGQUIT/SIGINT: quick.
        self.alive = False
        self.cfg.worker_int(self)
        if self.reactor is None:
            sys.exit(0)  # still booting: nothing to stop
        self.reactor.callFromThread(self.reactor.stop)

    def handle_abort(self, sig: int, frame: Any) -> None:
        exit_hard(self)
