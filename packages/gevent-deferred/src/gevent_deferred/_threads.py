"""Real OS-thread primitives, also after ``gevent.monkey.patch_all()``.

Patched ``threading``/``_thread`` give greenlets, not threads, and patched locks switch greenlets
instead of blocking the thread; the hub thread and the reactor thread need the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.monkey import get_original

start_new_thread: Callable[..., int] = get_original("_thread", "start_new_thread")
allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")
get_ident: Callable[[], int] = get_original("_thread", "get_ident")


def hub_if_exists() -> Any:
    # Private in gevent, but the only way to ask "is there a hub here?" without creating one.
    from gevent._hub_local import get_hub_if_exists

    return get_hub_if_exists()


def wait_real_lock(lock: Any, timeout: float | None) -> bool:
    """Acquire a real lock; from a greenlet, poll so that the rest of this thread keeps running.

    From the hub (or a thread without a hub) there is nothing else to run, so block the thread.
    """
    hub = hub_if_exists()
    if hub is None or gevent.getcurrent() is hub:
        return bool(lock.acquire(True, -1 if timeout is None else timeout))
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while not lock.acquire(False):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        gevent.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True
