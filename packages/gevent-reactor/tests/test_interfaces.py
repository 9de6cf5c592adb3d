"""GeventReactor provides every IReactor* interface that Twisted's epoll reactor provides."""

from __future__ import annotations

import gevent
import pytest
from twisted.internet.epollreactor import EPollReactor
from zope.interface import implementedBy, providedBy
from zope.interface.verify import verifyObject

from gevent_deferred import IHubReactor
from gevent_reactor import GeventReactor


def _epoll_reactor_interfaces() -> list[type]:
    reactor = EPollReactor()
    try:
        found = [
            iface
            for iface in providedBy(reactor).flattened()
            if iface.__name__.startswith("IReactor")
        ]
    finally:
        # EPollReactor opens an epoll fd and a waker pipe: close them.
        for reader in list(reactor._internalReaders):
            reactor.removeReader(reader)
            reader.connectionLost(None)
        reactor._poller.close()
    return sorted(found, key=lambda iface: iface.__name__)


EPOLL_INTERFACES = _epoll_reactor_interfaces()


def test_epoll_interface_list_is_not_trivial() -> None:
    names = {iface.__name__ for iface in EPOLL_INTERFACES}
    # If this shrinks, the parametrised test below would prove less than it seems to.
    assert {"IReactorCore", "IReactorTCP", "IReactorProcess", "IReactorFDSet"} <= names
    assert len(EPOLL_INTERFACES) >= 12


@pytest.mark.parametrize("iface", EPOLL_INTERFACES, ids=lambda iface: iface.__name__)
def test_provides_epoll_interface(reactor: GeventReactor, iface: type) -> None:
    assert iface.providedBy(reactor)
    assert verifyObject(iface, reactor)


def test_provides_ihubreactor(reactor: GeventReactor) -> None:
    assert verifyObject(IHubReactor, reactor)
    assert reactor.hub is gevent.get_hub()


def test_hub_argument_is_used(make_reactor) -> None:
    hub = gevent.get_hub()
    assert make_reactor(hub=hub).hub is hub


def test_bad_hub_names_the_argument() -> None:
    with pytest.raises(TypeError, match="hub") as info:
        GeventReactor(hub="x")
    assert "'x'" in str(info.value)


# The interfaces of file-descriptor-based reactors: epoll provides every one of them.
FD_INTERFACES = {
    "IReactorFDSet",
    "IReactorMulticast",
    "IReactorProcess",
    "IReactorSocket",
    "IReactorSSL",
    "IReactorTCP",
    "IReactorUDP",
    "IReactorUNIX",
    "IReactorUNIXDatagram",
}


def test_no_fd_interface_missing_from_the_ireactor_list() -> None:
    names = {iface.__name__ for iface in EPOLL_INTERFACES}
    assert FD_INTERFACES - names == set()
    # What the classes declare (implementedBy), not what an instance was given: GeventReactor's
    # class must declare every IReactor* interface that EPollReactor's class declares.
    epoll_declares = {
        iface
        for iface in implementedBy(EPollReactor).flattened()
        if iface.__name__.startswith("IReactor")
    }
    assert FD_INTERFACES <= {iface.__name__ for iface in epoll_declares}
    missing = epoll_declares - set(implementedBy(GeventReactor).flattened())
    assert not missing, sorted(iface.__name__ for iface in missing)
