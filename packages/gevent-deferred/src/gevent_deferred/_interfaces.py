"""The interface shared by every package: "this reactor is driven by a gevent hub"."""

from zope.interface import Attribute, Interface


class IHubReactor(Interface):
    """
    A Twisted reactor driven by a gevent hub's loop (``gevent_reactor.GeventReactor`` provides it).

    Code that must know whether such a reactor runs in the current thread checks
    ``IHubReactor.providedBy(reactor) and reactor.hub is gevent.get_hub()``; it never needs to
    import the reactor's package.
    """

    hub = Attribute("The gevent Hub whose loop drives this reactor.")
