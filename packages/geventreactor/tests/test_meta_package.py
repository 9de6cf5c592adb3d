"""The meta-package: the 2013 names, the pinned stack, install() as in the original README."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata

import gevent_deferred
import gevent_reactor
import gevent_resolver
import gevent_threadpool
import geventreactor

ORIGINAL_NAMES = [
    "GeventReactor",
    "GeventResolver",
    "GeventThreadPool",
    "waitForGreenlet",
    "waitForDeferred",
]


def test_2013_names_are_the_stack_s_own_objects():
    from geventreactor import (  # noqa: F401  (the 2013 README's import line)
        GeventReactor,
        GeventResolver,
        GeventThreadPool,
        waitForDeferred,
        waitForGreenlet,
    )

    assert geventreactor.GeventReactor is gevent_reactor.GeventReactor
    assert geventreactor.GeventResolver is gevent_resolver.GeventResolver
    assert geventreactor.GeventThreadPool is gevent_threadpool.GeventThreadPool
    assert geventreactor.waitForGreenlet is gevent_deferred.waitForGreenlet
    assert geventreactor.waitForDeferred is gevent_deferred.waitForDeferred
    assert geventreactor.install is gevent_reactor.install


def test_all_lists_exactly_the_public_names():
    public = {n for n in vars(geventreactor) if not n.startswith("_")} - {"pytest_plugin"}
    public = {n for n in public if not isinstance(getattr(geventreactor, n), type(sys))}
    assert set(geventreactor.__all__) == public
    assert set(ORIGINAL_NAMES) <= set(geventreactor.__all__)


def test_depends_on_the_four_distributions_at_the_same_version():
    version = metadata.version("geventreactor")
    requires = metadata.requires("geventreactor") or []
    pinned = {r.split(";")[0].replace(" ", "") for r in requires if "extra ==" not in r}
    assert pinned == {
        f"gevent-reactor=={version}",
        f"gevent-deferred=={version}",
        f"gevent-resolver=={version}",
        f"gevent-threadpool=={version}",
    }
    for dist in ("gevent-reactor", "gevent-deferred", "gevent-resolver", "gevent-threadpool"):
        assert metadata.version(dist) == version
    extras = [r for r in requires if re.search(r"extra == ['\"]pytest['\"]", r)]
    assert any(r.startswith("pytest-twisted") for r in extras)


def test_install_as_in_the_2013_readme():
    # In a child: installing a global reactor here would leak into other tests.
    code = (
        "import geventreactor; r = geventreactor.install()\n"
        "from twisted.internet import reactor\n"
        "assert reactor is r and type(reactor).__name__ == 'GeventReactor', reactor\n"
        "import gevent\n"
        "out = []\n"
        "def greenlet():\n"
        "    out.append(geventreactor.waitForDeferred(geventreactor.deferToGreenlet(lambda: 41)) + 1)\n"
        "    reactor.stop()\n"
        "reactor.callWhenRunning(gevent.spawn, greenlet)\n"
        "reactor.run(installSignalHandlers=False)\n"
        "print(out)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[42]"
