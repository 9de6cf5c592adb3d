"""Greenlets and Twisted Deferreds, in both directions, on any Twisted reactor."""

from ._errors import GreenletKilledError, ReactorStoppedError, WaitTimeoutError, WrongContextError
from ._hub_thread import HubThread, shared_hub_thread
from ._interfaces import IHubReactor

__all__ = [
    "GreenletKilledError",
    "HubThread",
    "IHubReactor",
    "ReactorStoppedError",
    "WaitTimeoutError",
    "WrongContextError",
    "shared_hub_thread",
]
