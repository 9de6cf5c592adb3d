"""Argument checks shared by every package: each error names the call, the argument, what it
expected and what it got."""

from __future__ import annotations

import inspect
from asyncio import iscoroutine
from typing import Any

from twisted.internet.defer import Deferred

__all__ = ["check_deferred", "check_reactor", "check_timeout", "is_coroutine"]

# What waiting and delivering need from a reactor when the caller names nothing else.
_REACTOR_METHODS = ("callFromThread", "callLater")


def is_coroutine(value: Any) -> bool:
    """The same test as Twisted's ``Deferred.fromCoroutine`` (``ensureDeferred``). Never blocks."""
    return iscoroutine(value) or inspect.isgenerator(value)


def check_deferred(api: str, name: str, value: Any) -> None:
    """Raise ``TypeError`` unless ``value`` is a Deferred or a coroutine. Never blocks."""
    if not (isinstance(value, Deferred) or is_coroutine(value)):
        raise TypeError(
            f"{api}({name}) expects a Deferred or a coroutine (the result of calling an async def "
            f"function), got {type(value).__name__}: {value!r:.80}"
        )


def check_reactor(
    api: str, reactor: Any, *methods: str, argument: str = "reactor=...", also: str = ""
) -> None:
    """
    Raise ``TypeError`` unless ``reactor`` has every one of ``methods`` (by default
    ``callFromThread`` and ``callLater``), as a Twisted reactor does. Never blocks.

    The message reads ``{api}({argument}) expects a Twisted reactor (with ...){also}, got ...``.
    """
    needed = methods or _REACTOR_METHODS
    if all(callable(getattr(reactor, method, None)) for method in needed):
        return
    raise TypeError(
        f"{api}({argument}) expects a Twisted reactor (with {' and '.join(needed)}){also}, "
        f"got {type(reactor).__name__}: {reactor!r:.80}"
    )


def check_timeout(api: str, timeout: Any, name: str = "timeout") -> None:
    """Raise ``TypeError`` unless ``timeout`` (``api``'s argument ``name``) is None or seconds >= 0.

    Never blocks.
    """
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise TypeError(
            f"{api}({name}=...) expects None or a number of seconds >= 0, got {timeout!r:.80}"
        )
