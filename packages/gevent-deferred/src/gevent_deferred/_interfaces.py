"""The interface shared by every package: "this reactor is driven by a gevent hub"."""

from zope.interface import Attribute, Interface


class IHubReactor(Interface):
    """
    A Twisted reactor driven by a gevent hub's loop (``gevent_reactor.GeventReactor`` provides it).

    Whether such a reactor runs in the current thread is asked in one place,
    ``runs_on_this_hub(reactor)`` in ``gevent_deferred._in_loop``: it checks this interface and
    the reactor's hub (without creating a hub), so no caller needs to import the reactor's package.
    """

    hub = Attribute("The gevent Hub whose loop drives this reactor.")
