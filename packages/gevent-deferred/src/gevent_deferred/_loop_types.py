"""gevent's event loop and its watchers, as types: what these packages use of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["AsyncWatcher", "ChildWatcher", "Loop", "LoopCallback", "LoopWatcher"]


class LoopWatcher(Protocol):
    """
    A gevent loop watcher: an I/O watcher (C{loop.io(fd, events)}), a timer (C{loop.timer}), an
    async watcher (C{loop.async_}) or a child watcher (C{loop.child}), of libev or libuv.

    C{start} takes the callback, its arguments and what the kind of watcher takes besides
    (C{pass_events} for I/O, C{update} for timers).
    """

    ref: bool

    def start(self, callback: Callable[..., object], *args: object, **kwargs: object) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class AsyncWatcher(LoopWatcher, Protocol):
    """A gevent async watcher (C{loop.async_()}): C{send} makes its callback run in the loop."""

    def send(self) -> None: ...


class ChildWatcher(LoopWatcher, Protocol):
    """A gevent child watcher (C{loop.child(pid)}): the child's pid and, once it ended, its
    exit status."""

    pid: int
    rstatus: int


class LoopCallback(Protocol):
    """A callback a gevent loop was asked to run (C{loop.run_callback}); C{stop} cancels it."""

    def stop(self) -> None: ...


class Loop(Protocol):
    """
    A gevent event loop (C{hub.loop}, libev's or libuv's), named by the methods these packages
    call on one.
    """

    def io(
        self, fd: int, events: int, ref: bool = ..., priority: int | None = ...
    ) -> LoopWatcher: ...

    def timer(
        self, after: float, repeat: float = ..., ref: bool = ..., priority: int | None = ...
    ) -> LoopWatcher: ...

    def async_(self, ref: bool = ..., priority: int | None = ...) -> AsyncWatcher: ...

    def child(self, pid: int, trace: int = ..., ref: bool = ...) -> ChildWatcher: ...

    def install_sigchld(self) -> None: ...

    def reset_sigchld(self) -> None: ...

    def run_callback(self, func: Callable[..., object], *args: object) -> LoopCallback: ...

    def run_callback_threadsafe(
        self, func: Callable[..., object], *args: object
    ) -> LoopCallback: ...
