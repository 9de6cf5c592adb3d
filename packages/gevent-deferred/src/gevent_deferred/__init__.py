"""Greenlets and Twisted Deferreds, in both directions, on any Twisted reactor."""

from ._errors import GreenletKilledError, ReactorStoppedError, WaitTimeoutError, WrongContextError
from ._greenlets import deferToGreenlet, in_greenlet, waitForGreenlet
from ._hub_thread import HubThread, shared_hub_thread
from ._interfaces import IHubReactor
from ._reactor_thread import ReactorThread
from ._wait import blockingCallFromGreenlet, waitForDeferred
from ._waker import LoopWaker

__all__ = [
    "GreenletKilledError",
    "HubThread",
    "IHubReactor",
    "LoopWaker",
    "ReactorStoppedError",
    "ReactorThread",
    "WaitTimeoutError",
    "WrongContextError",
    "blockingCallFromGreenlet",
    "deferToGreenlet",
    "in_greenlet",
    "shared_hub_thread",
    "waitForDeferred",
    "waitForGreenlet",
]
