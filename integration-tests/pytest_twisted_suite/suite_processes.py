"""spawnProcess and getProcessOutputAndValue on GeventReactor while gevent.subprocess runs children."""

from __future__ import annotations

import sys

import gevent
from gevent import subprocess
from helpers import the_reactor, wait
from twisted.internet import defer, protocol
from twisted.internet.utils import getProcessOutputAndValue

from geventreactor.pytest_plugin import greenlet_test

CHILD = (
    "import sys, time; data = sys.stdin.buffer.read();"
    "time.sleep(float(sys.argv[2]));"
    "sys.stdout.buffer.write(sys.argv[1].encode() + b':' + data);"
    "sys.stderr.buffer.write(b'err ' + sys.argv[1].encode()); sys.exit(int(sys.argv[3]))"
)


class Collector(protocol.ProcessProtocol):
    def __init__(self, stdin: bytes):
        self.stdin = stdin
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.ended.callback((b"".join(self.out), b"".join(self.err), reason.value.exitCode))


def spawn(tag: str, stdin: bytes, delay: float, code: int) -> Collector:
    proto = Collector(stdin)
    the_reactor().spawnProcess(
        proto, sys.executable, [sys.executable, "-c", CHILD, tag, str(delay), str(code)], env=None
    )
    return proto


def gevent_child(tag: str, stdin: bytes, delay: float, code: int):
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, tag, str(delay), str(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = p.communicate(stdin, timeout=20)
    return out, err, p.returncode


@greenlet_test
def test_twisted_and_gevent_children_at_the_same_time():
    twisted_children = [spawn(f"tw{i}", b"in %d" % i, 0.1 * (i % 3), i) for i in range(4)]
    gevent_children = [
        gevent.spawn(gevent_child, f"gv{i}", b"in %d" % i, 0.1 * (i % 3), i) for i in range(4)
    ]
    utils = getProcessOutputAndValue(
        sys.executable, ["-c", CHILD, "utils", "0.05", "3"], env=None, stdinBytes=b"via utils"
    )
    gevent.joinall(gevent_children, timeout=20, raise_error=True)
    for i, g in enumerate(gevent_children):
        assert g.value == (b"gv%d:in %d" % (i, i), b"err gv%d" % i, i)
    for i, child in enumerate(twisted_children):
        assert wait(child.ended, timeout=20) == (b"tw%d:in %d" % (i, i), b"err tw%d" % i, i)
    assert wait(utils, timeout=20) == (b"utils:via utils", b"err utils", 3)


@greenlet_test
def test_many_short_children_from_both_sides():
    twisted_children = [spawn(f"t{i}", b"", 0, 0) for i in range(10)]
    results = gevent.pool.Pool(5).map(lambda i: gevent_child(f"g{i}", b"", 0, 0), range(10))
    assert [r[0] for r in results] == [b"g%d:" % i for i in range(10)]
    outs = [wait(c.ended, timeout=20)[0] for c in twisted_children]
    assert outs == [b"t%d:" % i for i in range(10)]
