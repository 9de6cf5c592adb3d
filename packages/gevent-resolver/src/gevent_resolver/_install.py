"""Making a GeventResolver the reactor's resolver for both of Twisted's resolver interfaces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from gevent_deferred._checks import check_reactor

from ._resolver import GeventResolver

if TYPE_CHECKING:
    from typing import Protocol

    from twisted.internet.interfaces import IHostnameResolver, IResolverSimple

    from gevent_deferred._reactor_protocol import TwistedReactor

    class PluggableResolverReactor(TwistedReactor, Protocol):
        # IReactorPluggableNameResolver, which install_gevent_resolver checks for at run time.
        resolver: IResolverSimple

        def installNameResolver(self, resolver: IHostnameResolver, /) -> IHostnameResolver: ...


def install_gevent_resolver(
    reactor: PluggableResolverReactor | None = None,
    resolver: str | type | None = None,
    **options: Any,
) -> GeventResolver:
    """Make a new ``GeventResolver(reactor, resolver, **options)`` answer every lookup of a reactor.


    ``installNameResolver`` alone would put Twisted's adapter in front of ``reactor.resolve`` and
    ``connectTCP(hostname)``, which drops their ``timeout``; ``installResolver`` alone would limit
    ``HostnameEndpoint`` to IPv4. This installs the resolver for ``IHostnameResolver`` and then
    sets it as ``reactor.resolver`` (``IResolverSimple``) too. ``reactor`` defaults to the global
    reactor, imported only when needed. Returns the resolver.

    Never blocks. Call it from the reactor's thread, before or while it runs.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = cast("PluggableResolverReactor", default_reactor)
    check_reactor(
        "install_gevent_resolver",
        reactor,
        "installNameResolver",
        also=" as IReactorPluggableNameResolver provides",
    )
    name_resolver = GeventResolver(reactor, resolver, **options)
    reactor.installNameResolver(name_resolver)
    # PluggableResolverMixin documents `resolver` as the installed IResolverSimple.
    reactor.resolver = name_resolver
    return name_resolver
