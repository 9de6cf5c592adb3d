"""
A blocking-style client (readline/sendall) talking to a Twisted server, both on one gevent loop.

The server is plain Twisted: a LineReceiver key-value store. The client is plain gevent code: a few
greenlets, each with its own GreenConnection, reading and writing lines as with a socket.

    python examples/green_client.py
"""

from __future__ import annotations

import geventreactor

reactor = geventreactor.install(background=True)

import gevent  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

from geventreactor import connect  # noqa: E402


class KeyValue(LineReceiver):
    """Twisted code, unchanged: SET key value / GET key."""

    delimiter = b"\n"

    def lineReceived(self, line):
        command, _, rest = line.partition(b" ")
        store = self.factory.store
        if command == b"SET":
            key, _, value = rest.partition(b" ")
            store[key] = value
            self.sendLine(b"OK")
        elif command == b"GET":
            self.sendLine(b"VALUE " + store.get(rest, b"-"))
        else:
            self.sendLine(b"ERROR unknown command")


def worker(address: str, i: int) -> bytes:
    with connect(address, timeout=5) as conn:
        conn.sendall(b"SET key%d value%d\n" % (i, i * i))
        assert conn.readline() == b"OK\n"
        conn.sendall(b"GET key%d\n" % i)
        return conn.readline().strip()


if __name__ == "__main__":
    factory = Factory.forProtocol(KeyValue)
    factory.store = {}
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    address = f"tcp:127.0.0.1:{port.getHost().port}"
    greenlets = [gevent.spawn(worker, address, i) for i in range(5)]
    gevent.joinall(greenlets, raise_error=True, timeout=10)
    for g in greenlets:
        print(g.value.decode())
    print("store size:", len(factory.store))
