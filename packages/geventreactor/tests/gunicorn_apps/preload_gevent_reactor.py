"""An app module ready for --preload: it installs GeventReactor before importing the reactor."""

import gevent_reactor

gevent_reactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted_apps import resource  # noqa: E402

INSTALLED_IN_MASTER_PID = __import__("os").getpid()
assert type(reactor).__name__ == "GeventReactor"

__all__ = ["resource"]
