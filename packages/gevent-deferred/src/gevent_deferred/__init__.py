"""Greenlets and Twisted Deferreds, in both directions, on any Twisted reactor."""

from importlib.metadata import version as _version

from ._endpoints import connect, listen
from ._errors import GreenletKilledError, ReactorStoppedError, WaitTimeoutError, WrongContextError
from ._green_connection import GreenConnection
from ._green_factory import GreenFactory
from ._greenlets import deferToGreenlet, in_greenlet, waitForGreenlet
from ._hub_thread import HubThread, shared_hub_thread
from ._interfaces import IHubReactor
from ._reactor_thread import ReactorThread
from ._wait import blockingCallFromGreenlet, waitForDeferred
from ._waker import LoopWaker

__version__ = _version("gevent-deferred")

__all__ = [
    "GreenConnection",
    "GreenFactory",
    "GreenletKilledError",
    "HubThread",
    "IHubReactor",
    "LoopWaker",
    "ReactorStoppedError",
    "ReactorThread",
    "WaitTimeoutError",
    "WrongContextError",
    "blockingCallFromGreenlet",
    "connect",
    "deferToGreenlet",
    "in_greenlet",
    "listen",
    "shared_hub_thread",
    "waitForDeferred",
    "waitForGreenlet",
]
