"""GeventResolver: Twisted's two resolver interfaces answered by a gevent resolver."""

from __future__ import annotations

from collections.abc import Sequence
from socket import AF_INET, AF_INET6, AF_UNSPEC, SOCK_DGRAM
from typing import TYPE_CHECKING, Any, Literal, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
    IResolverSimple,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gevent_deferred._checks import check_reactor

from . import _names
from ._backends import Backends, resolver_class
from ._lookups import run_lookup
from ._resolution import GeventHostResolution

if TYPE_CHECKING:
    from gevent_deferred._reactor_protocol import TwistedReactor

_ADDRESS_TYPES: dict[int, type[IPv4Address] | type[IPv6Address]] = {
    AF_INET: IPv4Address,
    AF_INET6: IPv6Address,
}

# What a failed lookup raises: gaierror/herror (OSError) from every gevent resolver, UnicodeError
# from names the codec refuses (an empty label), CancelledError when cancelled or timed out.
_LOOKUP_FAILURES = (OSError, UnicodeError)


@implementer(IResolverSimple, IHostnameResolver)
class GeventResolver:
    """Name resolution for a Twisted reactor through a gevent resolver (c-ares, threads, ...).

    ``resolver`` is ``None`` (each hub's configured resolver, ``hub.resolver``) or the name of a
    gevent resolver: ``'ares'``, ``'thread'``, ``'block'``, ``'dnspython'``, a dotted path to a
    class, or the class itself. ``options`` go to that resolver's constructor (for c-ares:
    ``servers``, ``udp_port``, ``tcp_port``, ``timeout``, ``tries``, ...); with ``resolver=None``
    they go to the class gevent is configured with.

    Where lookups run: when a hub-driven reactor (``gevent_deferred.IHubReactor``) runs in the
    calling thread, in greenlets on its hub; otherwise (Twisted's epoll, select, asyncio reactors)
    in greenlets on one helper OS thread shared by the whole process, however many lookups are in
    flight. Results are delivered in the reactor's thread.

    Install it with ``install_gevent_resolver(reactor)``, or
    ``reactor.installNameResolver(GeventResolver(reactor))`` (then ``reactor.resolve`` goes through
    Twisted's adapter, which ignores its ``timeout``).

    Never blocks.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: TwistedReactor | None = None,
        resolver: str | type | None = None,
        **options: Any,
    ) -> None:
        if reactor is None:
            # The documented default, imported only now so that importing this module never
            # installs a reactor.
            from twisted.internet import reactor as default_reactor

            reactor = cast("TwistedReactor", default_reactor)
        check_reactor("GeventResolver", reactor, "callLater", "callFromThread")
        self._reactor = reactor
        self._resolver_name = resolver
        self._backends = Backends(resolver_class(resolver), options)
        add_trigger = getattr(reactor, "addSystemEventTrigger", None)
        if add_trigger is not None:
            # c-ares channels are the resolver's to close; a reactor that stops is done with them.
            add_trigger("after", "shutdown", self.close)

    def __repr__(self) -> str:
        name = self._resolver_name or "each hub's own resolver"
        return f"<{type(self).__name__} using {name} for {self._reactor!r}>"

    # IResolverSimple

    def getHostByName(self, name: str, timeout: Sequence[int] = (1, 3, 11, 45)) -> Deferred[str]:
        """Look up one IPv4 address of ``name``; the Deferred fires with it as text.

        ``timeout`` is summed into one time limit, as Twisted's ``ThreadedResolver`` does (empty or
        ``None``: 60 s); past it the Deferred fails with ``DNSLookupError`` saying the lookup
        timed out, and the lookup is stopped. Unknown names fail with ``DNSLookupError``.
        Cancelling the Deferred stops the lookup. Raises ``TypeError``/``ValueError`` at once for
        a ``name`` that is not non-empty text or a malformed ``timeout``.

        Never blocks. Call it from the reactor's thread, like every Twisted API.
        """
        host = _names.host_name(name, "name")
        delay = _names.timeout_seconds(timeout)
        lookup = run_lookup(self._reactor, self._gethostbyname, host)
        result: Deferred[str] = Deferred(canceller=lambda _: lookup.cancel())
        timer = self._reactor.callLater(delay, self._timed_out, result, lookup, name, delay)
        lookup.addBoth(self._host_found, result, timer, name)
        return result

    def _gethostbyname(self, host: str) -> str:
        # Runs in a greenlet on the hub that does the lookup.
        return self._backends.current().gethostbyname(host)

    @staticmethod
    def _timed_out(result: Deferred[str], lookup: Deferred[str], name: str, delay: float) -> None:
        # Fail the caller first, so that the cancellation below finds it called and stays quiet.
        result.errback(
            DNSLookupError(f"address {name!r} not found: timed out after {delay:g} seconds")
        )
        lookup.cancel()

    @staticmethod
    def _host_found(outcome: Any, result: Deferred[str], timer: IDelayedCall, name: str) -> None:
        if timer.active():
            timer.cancel()
        if result.called:
            return
        if isinstance(outcome, Failure) and outcome.check(*_LOOKUP_FAILURES):
            # ThreadedResolver's wording, so callers matching on it keep working.
            result.errback(DNSLookupError(f"address {name!r} not found: {outcome.value}"))
        elif isinstance(outcome, Failure):
            result.errback(outcome)
        else:
            result.callback(outcome)

    # IHostnameResolver

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """Look up every address of ``hostName``, as Twisted's ``GAIResolver`` does.

        The receiver gets ``resolutionBegan`` at once, then (in the reactor's thread) one
        ``addressResolved`` per address of the requested types (``None``: IPv4 and IPv6) carrying
        ``portNumber`` and ``transportSemantics`` (``'TCP'`` or ``'UDP'``), then
        ``resolutionComplete``. An unknown name gives no addresses, then ``resolutionComplete``.
        The returned resolution's ``cancel()`` stops the lookup and completes the resolution with
        no addresses. Raises ``TypeError``/``ValueError`` at once, naming the argument, for bad
        input. Non-ASCII names are IDNA-encoded as Twisted does.

        Never blocks. Call it from the reactor's thread, like every Twisted API.
        """
        for method in ("resolutionBegan", "addressResolved", "resolutionComplete"):
            if not callable(getattr(resolutionReceiver, method, None)):
                raise TypeError(
                    "resolutionReceiver must provide IResolutionReceiver "
                    f"(it has no {method}()), got {resolutionReceiver!r}"
                )
        host = _names.host_name(hostName, "hostName")
        port = _names.port_number(portNumber)
        family = _names.address_family(addressTypes)
        socktype = _names.socket_type(transportSemantics)

        # Started before resolutionBegan: if it cannot start, the receiver hears nothing rather
        # than a beginning without an end. Results always arrive later, via callFromThread.
        lookup = run_lookup(self._reactor, self._getaddrinfo, host, port, family, socktype)
        resolution = GeventHostResolution(host)
        resolution._lookup = lookup
        resolutionReceiver.resolutionBegan(resolution)
        lookup.addBoth(self._addresses_found, resolutionReceiver, host, family)
        lookup.addErrback(
            lambda failure: self._log.failure(
                "resolution receiver {receiver} failed for {name}",
                failure,
                receiver=resolutionReceiver,
                name=host,
            )
        )
        return resolution

    def _getaddrinfo(self, host: str, port: int, family: int, socktype: int) -> list[Any]:
        # Runs in a greenlet on the hub that does the lookup.
        return list(self._backends.current().getaddrinfo(host, port, family, socktype))

    def _addresses_found(
        self, outcome: Any, receiver: IResolutionReceiver, host: str, family: int
    ) -> None:
        if isinstance(outcome, Failure):
            if not outcome.check(CancelledError, *_LOOKUP_FAILURES):
                self._log.failure(
                    "while looking up {name} with {resolver}", outcome, name=host, resolver=self
                )
            outcome = []
        seen = set()
        for found_family, found_type, _proto, _canonical, sockaddr in outcome:
            address_type = _ADDRESS_TYPES.get(found_family)
            # c-ares can answer an IPv4-only question with IPv6 addresses too (after a CNAME),
            # and repeats addresses reached through a CNAME: keep what was asked for, once.
            if address_type is None or family not in (AF_UNSPEC, found_family):
                continue
            transport: Literal["TCP", "UDP"] = "UDP" if found_type == SOCK_DGRAM else "TCP"
            key = (found_family, transport, tuple(sockaddr))
            if key in seen:
                continue
            seen.add(key)
            receiver.addressResolved(address_type(transport, *sockaddr))
        receiver.resolutionComplete()

    def close(self) -> None:
        """Close the gevent resolvers this object built (c-ares channels); never the hubs' own.

        Later lookups build fresh ones. Called by itself when the reactor shuts down.
        Never blocks. Callable from any thread.
        """
        self._backends.close()
