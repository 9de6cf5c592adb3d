"""
GeventReactor under pytest-twisted 1.14's own raw-switch wait (its blockon logic, without the
geventreactor plugin's hub delivery): Deferreds fired from the reactor's context, from a runner
greenlet (which then blocks) and from the hub, hundreds of times. Every job must finish and no
greenlet may be stranded. Run by integration-tests/test_apps_raw_switches.py.

    python integration-tests/pytest_twisted_suite/raw_switch_stress.py 200
"""

from __future__ import annotations

import sys

import gevent
import greenlet

import gevent_reactor

reactor = gevent_reactor.install()

from twisted.internet import defer, protocol, task  # noqa: E402

reactor_greenlet = greenlet.greenlet(reactor.run)
tails: list[str] = []


def blockon(d):
    # pytest-twisted 1.14's blockon_default: switch back from wherever the Deferred fires.
    current = greenlet.getcurrent()
    result = []

    def cb(r):
        result.append(r)
        if greenlet.getcurrent() is not current:
            current.switch(result)

    d.addCallbacks(cb, cb)
    if not result:
        switched_with = reactor_greenlet.switch()
        assert switched_with is result, ("illegal switch", switched_with)
    return result[0]


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Client(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"x")

    def dataReceived(self, data):
        self.factory.d.callback(data)  # a raw switch to main, from a runner greenlet
        tails.append("runner")  # must still run
        gevent.sleep(0.001)  # and may block afterwards
        tails.append("runner2")
        self.transport.loseConnection()


def fire_in_context(d, value):
    d.callback(value)  # a raw switch to main, from the reactor's context
    tails.append("ctx")  # must still run


def main(n: int) -> None:
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    for i in range(n):
        d = defer.Deferred()
        reactor.callLater(0, fire_in_context, d, i)
        assert blockon(d) == i

        factory = protocol.ClientFactory()
        factory.protocol = Client
        factory.d = defer.Deferred()
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        assert blockon(factory.d) == b"x"

        from_hub = defer.Deferred()
        g = gevent.spawn(lambda value: value * 2, i)
        g.rawlink(lambda dead, d=from_hub: d.callback(dead.value))  # fires in the hub
        assert blockon(from_hub) == i * 2

        gevent.sleep(0.001)  # pytest's own greenlet blocking with gevent between waits
    blockon(task.deferLater(reactor, 0.2, lambda: None))  # stragglers finish
    counts = [tails.count(k) for k in ("ctx", "runner", "runner2")]
    print("ctx {} runner {} runner2 {} of {}".format(*counts, n))
    reactor.stop()
    reactor_greenlet.switch()
    print("stopped", not reactor.running, reactor_greenlet.dead)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
