"""Real OS-thread primitives, also after ``gevent.monkey.patch_all()``: gevent-deferred's own.

Patched ``_thread`` gives per-greenlet idents and locks that switch greenlets; the pool's own
bookkeeping is shared between real threads (the caller's and the hub's), so it needs the real ones.
"""

from __future__ import annotations

from gevent_deferred._threads import allocate_lock, get_ident, hub_if_exists

__all__ = ["allocate_lock", "get_ident", "hub_if_exists"]
