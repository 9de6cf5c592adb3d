"""Real OS-thread primitives, also after ``gevent.monkey.patch_all()``.

Patched ``_thread`` gives per-greenlet idents and locks that switch greenlets; the pool's own
bookkeeping is shared between real threads (the caller's and the hub's), so it needs the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent.monkey import get_original

allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")
get_ident: Callable[[], int] = get_original("_thread", "get_ident")


def hub_if_exists() -> Any:
    """The current thread's gevent Hub, or None; never creates one."""
    # Private in gevent, but the only way to ask "is there a hub here?" without creating one.
    from gevent._hub_local import get_hub_if_exists

    return get_hub_if_exists()
