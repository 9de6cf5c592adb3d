# Makes `trial --reactor=gevent` and `twistd --reactor=gevent` find GeventReactor.
# This directory must have no __init__.py: one would hide Twisted's own plugins.
from twisted.application.reactors import Reactor

gevent = Reactor(
    "gevent",
    "gevent_reactor",
    "Twisted on gevent's event loop; protocol code may block with gevent.",
)
