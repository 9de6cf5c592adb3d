"""Which gevent resolver answers the lookups, one instance per gevent hub.

A gevent resolver belongs to one hub (c-ares registers its sockets with that hub's loop, the
``thread`` resolver uses that hub's thread pool), so it is created lazily inside the hub's own
thread, the first time a lookup runs there.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import gevent

from gevent_deferred._threads import allocate_lock, hub_if_exists

# The names gevent's own ``GEVENT_RESOLVER`` setting accepts (gevent._config.Resolver).
SHORT_NAMES = {
    "ares": "gevent.resolver.ares.Resolver",
    "thread": "gevent.resolver.thread.Resolver",
    "block": "gevent.resolver.blocking.Resolver",
    "dnspython": "gevent.resolver.dnspython.Resolver",
}


def resolver_class(name: object) -> type | None:
    """Return the gevent resolver class called ``name``.

    ``None`` stays ``None`` (each hub's own resolver); a class is taken as it is, as gevent's own
    ``resolver`` setting does.
    """
    if name is None or isinstance(name, type):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"resolver must be None, the name of a gevent resolver ({', '.join(SHORT_NAMES)} "
            f"or a dotted path to a class) or a class, not {type(name).__name__}: {name!r}"
        )
    path = SHORT_NAMES.get(name, name)
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"resolver must be one of {', '.join(map(repr, SHORT_NAMES))} "
            f"or a dotted path to a gevent resolver class, got {name!r}"
        )
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"resolver {name!r} cannot be imported: {e}") from e


def check_options(cls: type, options: dict[str, Any]) -> None:
    """Fail now, not at the first lookup, when ``cls`` cannot take ``options``.

    Classes taking ``**kwargs`` (c-ares) can only be checked when they are built.
    """
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(hub=None, **options)
    except TypeError as e:
        raise TypeError(
            f"options {sorted(options)} do not fit the {cls.__module__}.{cls.__name__} "
            f"constructor {signature}: {e}"
        ) from None


class Backends:
    """The gevent resolver of each hub the lookups have run on."""

    def __init__(self, cls: type | None, options: dict[str, Any]) -> None:
        if cls is None and options:
            # Options without a name: the class the hub would use, built with those options.
            cls = gevent.config.resolver
        if cls is not None:
            check_options(cls, options)
        self._cls = cls
        self._options = dict(options)
        # Strong keys: a resolver must be closed by its own loop, never freed by the garbage
        # collector when its hub's thread ends (see _kept below). One entry per hub ever used.
        self._owned: dict[Any, Any] = {}
        # A real lock even after patch_all(): close() and the hub thread touch the map together.
        self._lock = allocate_lock()

    @property
    def cls(self) -> type | None:
        """The resolver class built per hub, or ``None`` when each hub's own resolver is used."""
        return self._cls

    def current(self) -> Any:
        """Return the resolver for the hub of the calling thread, building it if needed.

        Must be called in the thread whose hub will run the lookup.
        """
        hub = gevent.get_hub()
        if self._cls is None:
            # The hub owns (and closes) its configured resolver.
            return hub.resolver
        resolver = self._owned.get(hub)
        if resolver is None:
            resolver = self._cls(hub=hub, **self._options)
            with self._lock:
                self._owned[hub] = resolver
        return resolver

    def close(self) -> None:
        """Close every resolver built here, each in its own hub's thread. Never blocks."""
        with self._lock:
            owned = list(self._owned.items())
            self._owned.clear()
        here = hub_if_exists()
        for hub, resolver in owned:
            if hub is here:
                _close(resolver)
                continue
            loop = getattr(hub, "loop", None)
            try:
                if loop is None:
                    raise RuntimeError("that hub has no loop any more")
                # c-ares must be torn down by its own loop; one call into a hub that made no
                # waker for it (gevent_deferred._waker's docstring says why that is safe).
                loop.run_callback_threadsafe(_close, resolver)
            except Exception:
                # That hub's loop is gone (its thread ended): nothing can close the resolver
                # safely any more, and freeing it could crash, so keep it.
                _kept.append((resolver, None))


# Closed c-ares resolvers (and their destroyed channels) on gevent's libuv loop, kept forever:
# with gevent 26.9, freeing them crashes the process a little later ("double free", a segfault,
# or "ffi.from_handle() ... garbage" when the loop walks its handles). Measured: keeping only the
# fork watcher stops the double free but not the exit-time crash; keeping both stops both. Each
# costs well under a KiB, and only resolvers this package built and closed land here.
_kept: list[tuple[Any, Any]] = []


def _close(resolver: Any) -> None:
    # Runs in the resolver's own hub thread.
    channel = getattr(resolver, "cares", None)
    if channel is not None and type(gevent.get_hub().loop).__module__.startswith("gevent.libuv"):
        _kept.append((resolver, channel))
    resolver.close()
