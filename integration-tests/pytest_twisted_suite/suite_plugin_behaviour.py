"""What runs where under pytest-twisted on GeventReactor (see the root README's pytest section)."""

from __future__ import annotations

import gevent
import pytest
import pytest_twisted
from greenlet import getcurrent
from helpers import the_reactor, wait
from twisted.internet import defer, protocol, task

from geventreactor import GeventReactor, ReactorContextBlockingError, deferToGreenlet
from geventreactor.pytest_plugin import greenlet_test


def test_reactor_is_gevent_and_running():
    reactor = the_reactor()
    assert isinstance(reactor, GeventReactor)
    assert reactor.running
    assert reactor.hub is gevent.get_hub()


def test_plain_body_runs_in_reactor_context_and_cannot_block():
    assert getcurrent() is not gevent.get_hub()
    with pytest.raises(ReactorContextBlockingError, match="must not block"):
        gevent.sleep(0.001)


@greenlet_test
def test_decorated_body_may_block():
    reactor = the_reactor()
    gevent.sleep(0.01)
    assert wait(task.deferLater(reactor, 0.01, lambda: "later")) == "later"
    assert isinstance(getcurrent(), gevent.Greenlet)


@pytest.mark.in_greenlet
def test_marked_body_may_block(tmp_path):
    gevent.sleep(0.01)
    (tmp_path / "f").write_bytes(b"x")
    assert (tmp_path / "f").read_bytes() == b"x"


@pytest.fixture
def blocking_fixture():
    # Ordinary fixtures run in pytest's main greenlet, where gevent may block: the reactor runs.
    reactor = the_reactor()
    gevent.sleep(0.01)
    calls = []
    reactor.callLater(0, calls.append, "reactor ran")
    gevent.sleep(0.05)
    yield calls
    gevent.sleep(0.01)


def test_sync_fixture_may_block(blocking_fixture):
    assert blocking_fixture == ["reactor ran"]


@pytest_twisted.async_fixture
async def async_value():
    return await task.deferLater(the_reactor(), 0.01, lambda: 5)


@pytest_twisted.async_yield_fixture
async def async_yield_value():
    yield await task.deferLater(the_reactor(), 0.01, lambda: 6)


@pytest_twisted.inlineCallbacks
def test_inline_callbacks(async_value):
    value = yield task.deferLater(the_reactor(), 0.01, lambda: 3)
    assert (value, async_value) == (3, 5)


@pytest_twisted.ensureDeferred
async def test_ensure_deferred_with_greenlet_part(async_yield_value):
    def blocking():
        gevent.sleep(0.01)
        return 4

    assert await deferToGreenlet(blocking) == 4
    assert async_yield_value == 6


@greenlet_test
def test_greenlet_with_async_fixtures(async_value, async_yield_value):
    gevent.sleep(0)
    assert (async_value, async_yield_value) == (5, 6)


def test_deferred_returning_plain_test():
    return task.deferLater(the_reactor(), 0.01, lambda: None)


_tail: list[str] = []


def test_deferred_fired_from_a_greenlet_strands_nothing():
    # pytest-twisted switches to the waiting test from wherever the Deferred fires; the plugin
    # makes that switch come from the hub, so the rest of this greenlet still runs.
    d = defer.Deferred()

    def fire_then_continue():
        gevent.sleep(0.01)
        d.callback(None)
        _tail.append("after callback")

    gevent.spawn(fire_then_continue)
    return d


def test_the_greenlet_went_on():
    return task.deferLater(the_reactor(), 0.05, lambda: None).addCallback(
        lambda _: _assert_equal(_tail, ["after callback"])
    )


def _assert_equal(a, b):
    assert a == b


def test_deferred_fired_from_data_received():
    # A plain test whose Deferred fires in a runner greenlet (input path), then more input.
    reactor = the_reactor()
    done = defer.Deferred()

    class Echo(protocol.Protocol):
        def dataReceived(self, data):
            self.transport.write(data)

    class Client(protocol.Protocol):
        def connectionMade(self):
            self.transport.write(b"ping")

        def dataReceived(self, data):
            if not done.called:
                done.callback(data)
            self.transport.loseConnection()

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    connector = reactor.connectTCP("127.0.0.1", port.getHost().port, _ClientFactory(Client))

    def finish(data):
        connector.disconnect()
        assert data == b"ping"
        return port.stopListening()

    return done.addCallback(finish)


class _ClientFactory(protocol.ClientFactory):
    def __init__(self, proto):
        self.protocol = proto


@pytest.fixture
def blockon_fixture():
    return pytest_twisted.blockon(task.deferLater(the_reactor(), 0.01, lambda: "blocked on"))


def test_blockon_in_sync_fixture(blockon_fixture):
    assert blockon_fixture == "blocked on"


@greenlet_test
def test_many_greenlets_and_raw_switches():
    # Many Deferreds fired from the reactor context and from greenlets while pytest-twisted
    # switches between its greenlets: none of them may be stranded.
    reactor = the_reactor()
    results = gevent.pool.Group().map(
        lambda i: wait(task.deferLater(reactor, 0.001 * (i % 7), lambda: i * i)), range(200)
    )
    assert results == [i * i for i in range(200)]


def test_greenlet_test_refuses_async_tests():
    async def test_async():
        pass

    with pytest.raises(TypeError, match="plain `def`"):
        greenlet_test(test_async)


# Every place a test's Deferred can fire from, many times over, with work after each firing that
# must still run: pytest-twisted's switches between its greenlets may strand none of it.
_after: list[str] = []


class _EchoOnce(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class _FireFromInput(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"x")

    def dataReceived(self, data):
        self.factory.done.callback(data)
        gevent.sleep(0.001)  # the input greenlet blocks after firing
        _after.append("input")
        self.transport.loseConnection()


@pytest.fixture(scope="module")
def echo_port():
    reactor = the_reactor()
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(_EchoOnce), interface="127.0.0.1")
    yield port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def _fire_from(source: str, echo_port: int) -> defer.Deferred:
    reactor = the_reactor()
    d = defer.Deferred()
    if source == "context":

        def fire():
            d.callback("context")
            _after.append("context")

        reactor.callLater(0, fire)
    elif source == "input":
        factory = protocol.ClientFactory()
        factory.protocol = _FireFromInput
        factory.done = d
        reactor.connectTCP("127.0.0.1", echo_port, factory)
    elif source == "hub":
        g = gevent.spawn(lambda: "hub")
        g.rawlink(lambda dead: (d.callback(dead.value), _after.append("hub")))
    else:

        def fire():
            gevent.sleep(0.001)
            d.callback("greenlet")
            gevent.sleep(0.001)
            _after.append("greenlet")

        gevent.spawn(fire)
    return d


@pytest.mark.parametrize("round_", range(20))
@pytest.mark.parametrize("source", ["context", "input", "hub", "greenlet"])
def test_fired_from_everywhere(source, round_, echo_port):
    return _fire_from(source, echo_port)


def test_nothing_was_stranded():
    def check():
        for source in ("context", "input", "hub", "greenlet"):
            assert _after.count(source) == 20, (source, _after.count(source))

    return task.deferLater(the_reactor(), 0.2, check)
