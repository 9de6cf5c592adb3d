"""Where a pool's greenlets run: on the calling thread's hub (in-loop) or in a HubThread.

In-loop is right when a GeventReactor runs in the thread that starts the pool: the workers
share its hub, and ``reactor.callFromThread`` from a worker is a same-thread call. Anywhere else
(cross-thread: Twisted's epoll/select/asyncio reactors, or no reactor at all) the workers run in
one helper OS thread with its own hub (``gevent_deferred.shared_hub_thread()``), and results
travel back through ``reactor.callFromThread``, which Twisted's ``deferToThreadPool`` already
uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent.hub import Hub

from gevent_deferred import HubThread, shared_hub_thread
from gevent_deferred._in_loop import installed_reactor, runs_on_this_hub
from gevent_deferred._threads import hub_if_exists

__all__ = ["Placement", "choose_placement"]


class Placement:
    """The decision, made at ``start()``: ``hub_thread`` is None for in-loop."""

    __slots__ = ("hub_thread",)

    def __init__(self, hub_thread: HubThread | None) -> None:
        self.hub_thread = hub_thread

    @property
    def in_loop(self) -> bool:
        return self.hub_thread is None

    def launch(self, setup: Callable[[], None]) -> None:
        """Run ``setup`` in the thread the workers will live in. Never blocks."""
        if self.hub_thread is None:
            setup()
        else:
            self.hub_thread.start()
            self.hub_thread.submit(setup)


def choose_placement(hub: Hub | HubThread | None, reactor: Any) -> Placement:
    """
    Decide where the workers run, from the pool's ``hub`` and ``reactor`` arguments.

      - ``hub`` is a gevent ``Hub``: in-loop on it; it must be the hub of the calling thread.
      - ``hub`` is a ``HubThread``: cross-thread, in that thread.
      - otherwise in-loop when ``reactor`` (or, if None, the installed global reactor) is a
        GeventReactor driven by this thread's hub, and cross-thread in
        ``gevent_deferred.shared_hub_thread()`` in every other case.
    """
    if isinstance(hub, HubThread):
        return Placement(hub)
    if isinstance(hub, Hub):
        if hub is not hub_if_exists():
            raise ValueError(
                "GeventThreadPool(hub=...) was given a gevent Hub that is not the hub of the "
                f"thread calling start() ({hub!r}); start the pool in that hub's thread, or pass a "
                "gevent_deferred.HubThread to run the workers in a helper thread"
            )
        return Placement(None)
    if runs_on_this_hub(installed_reactor() if reactor is None else reactor):
        return Placement(None)
    # shared_hub_thread() starts the helper thread safely (see gevent_deferred's HubThread.start).
    return Placement(shared_hub_thread())
