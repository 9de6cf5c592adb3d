"""After gevent.monkey.patch_all(), the resolver still works standalone (in a child process)."""

from __future__ import annotations

import ast
import subprocess
import sys

CHILD = r"""
from gevent import monkey
monkey.patch_all()

from gevent_resolver import install_gevent_resolver
from gevent_resolver.testing import LoopbackDNSServer
from twisted.internet.defer import gatherResults
from twisted.internet.selectreactor import SelectReactor

server = LoopbackDNSServer()
server.start()
reactor = SelectReactor()
resolver = install_gevent_resolver(reactor, "ares", **server.ares_options(), timeout=1, tries=1)
results = []

def go():
    d = gatherResults([
        reactor.resolve(server.name("www")),
        reactor.resolve("localhost"),
        reactor.resolve(server.name("silent"), (0.3,)).addErrback(lambda f: f.getErrorMessage()),
    ])
    d.addBoth(results.append).addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(go)
reactor.callLater(20, reactor.stop)
reactor.run(installSignalHandlers=False)
server.stop()
print(results)
"""


def test_standalone_after_patch_all():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    [[www, localhost, silent]] = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert (www, localhost) == ("192.0.2.10", "127.0.0.1")
    assert "address 'silent.gevent-resolver.test' not found: timed out" in silent
