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
#: The real ``_thread._local``: one value per OS thread, also after ``patch_all()``.
thread_local: Callable[[], Any] = get_original("_thread", "_local")
#: The real ``threading.current_thread``: the OS thread's ``Thread`` object, not a greenlet's.
current_thread: Callable[[], Any] = get_original("threading", "current_thread")
#: The real ``queue.SimpleQueue``, whose ``get()`` blocks the OS thread.
simple_queue: Callable[[], Any] = get_original("queue", "SimpleQueue")


def hub_if_exists() -> Any:
    """The current thread's gevent Hub, or None; never creates one. Never blocks."""
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


def prepare_hub_thread() -> None:
    """Make it safe for a thread about to be started to create its first hub. Never blocks.

    Call it in the starting thread, before the new thread runs. Two things raced when a new
    thread created its hub while another thread created its own:

      - gevent's config imports modules on first use; after ``patch_all()`` the import locks are
        gevent locks, and two threads importing at once deadlocked on them;
      - on libuv, every gevent loop asks libuv for its default loop (to know whether it is the
        default), which creates that default loop on first call, unsynchronised. When the new
        thread's question raced the main thread's first hub, the default loop's list of async
        handles was corrupted: its thread then spun for ever inside libuv's async handler, so no
        timer or wake-up reached its hub again.

    Both are settled here, once, in one thread.
    """
    config = gevent.config
    loop_class = config.loop
    config.libev_backend  # noqa: B018
    config.format_context  # noqa: B018
    if getattr(loop_class, "__module__", "").startswith("gevent.libuv"):
        from gevent.libuv import _corecffi

        _corecffi.lib.uv_default_loop()
