"""GeventResolver and its resolutions provide Twisted's resolver interfaces."""

from __future__ import annotations

import subprocess
import sys

from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IResolverSimple
from twisted.internet.selectreactor import SelectReactor
from zope.interface.verify import verifyClass, verifyObject

from gevent_resolver import GeventHostResolution, GeventResolver


def test_resolver_provides_both_interfaces():
    # A reactor that never runs: building the resolver must not need a running one.
    resolver = GeventResolver(SelectReactor(), "block")
    assert verifyObject(IResolverSimple, resolver)
    assert verifyObject(IHostnameResolver, resolver)
    assert verifyClass(IResolverSimple, GeventResolver)
    assert verifyClass(IHostnameResolver, GeventResolver)


def test_resolution_provides_ihostresolution():
    assert verifyObject(IHostResolution, GeventHostResolution("example.test"))


def test_default_reactor_is_the_global_one():
    # In a child process: importing the global reactor here would install it for every other
    # test of the session.
    code = (
        "from gevent_resolver import GeventResolver\n"
        "from twisted.internet import reactor\n"
        "assert GeventResolver()._reactor is reactor\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_close_runs_after_shutdown():
    reactor = SelectReactor()
    resolver = GeventResolver(reactor, "block")
    shutdown = reactor._eventTriggers["shutdown"]
    assert (resolver.close, (), {}) in shutdown.after
