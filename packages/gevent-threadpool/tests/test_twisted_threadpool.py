"""
Twisted's own ThreadPool tests (``twisted/test/test_threadpool.py``), run against GeventThreadPool.

Twisted's test methods are reused unchanged: each is rebuilt with the same code object but with
the module global ``threadpool`` replaced by a namespace whose ``ThreadPool`` makes a
GeventThreadPool. The tests are synchronous and wait with real ``threading`` primitives in the
test's thread, so the pool runs cross-thread (its greenlets in gevent_deferred's shared hub thread).

The tests that cannot apply, and why, are listed in TWISTED_TESTS_NOT_APPLICABLE.md next to this
file; ``NOT_APPLICABLE`` below must name exactly those.
"""

from __future__ import annotations

import types
from pathlib import Path

from twisted.test import test_threadpool as twisted_tests

from gevent_deferred import shared_hub_thread
from gevent_threadpool import GeventThreadPool

NOT_APPLICABLE = {
    "RaceConditionTests.test_synchronization",
    "MemoryBackedTests.test_workBeforeStarting",
    "MemoryBackedTests.test_tooMuchWorkBeforeStarting",
}


def _make_pool(*args: object, **kwargs: object) -> GeventThreadPool:
    # Forced cross-thread: these tests block their own thread on threading primitives, which would
    # starve greenlets sharing that thread's hub.
    return GeventThreadPool(*args, hub=shared_hub_thread(), **kwargs)  # type: ignore[arg-type]


_shim = types.SimpleNamespace(ThreadPool=_make_pool)


def _rebind(cls: type) -> type:
    """A subclass of Twisted's TestCase whose methods see ``threadpool.ThreadPool`` = ours."""
    namespace: dict[str, object] = {"__module__": __name__, "__qualname__": f"Gevent{cls.__name__}"}
    for attr, value in vars(cls).items():
        if isinstance(value, types.FunctionType):
            if f"{cls.__name__}.{attr}" in NOT_APPLICABLE:
                continue
            globals_ = dict(value.__globals__)
            globals_["threadpool"] = _shim
            namespace[attr] = types.FunctionType(
                value.__code__, globals_, value.__name__, value.__defaults__, value.__closure__
            )
    # Skip the inherited not-applicable tests instead of running Twisted's original versions.
    for name in NOT_APPLICABLE:
        owner, _, attr = name.partition(".")
        if owner == cls.__name__:
            namespace[attr] = None
    return type(f"Gevent{cls.__name__}", (cls,), namespace)


GeventThreadPoolTests = _rebind(twisted_tests.ThreadPoolTests)
GeventRaceConditionTests = _rebind(twisted_tests.RaceConditionTests)

# Twisted's originals must not be collected again from this module.
del twisted_tests


def test_not_applicable_list_matches_document() -> None:
    """Every test skipped here is explained in the document, and nothing else is listed."""
    from twisted.test import test_threadpool

    text = (Path(__file__).parent / "TWISTED_TESTS_NOT_APPLICABLE.md").read_text()
    listed = {
        line.split("`")[1] for line in text.splitlines() if line.startswith("- `") and "`" in line
    }
    assert listed == NOT_APPLICABLE
    all_tests = {
        f"{cls.__name__}.{attr}"
        for cls in (
            test_threadpool.ThreadPoolTests,
            test_threadpool.RaceConditionTests,
            test_threadpool.MemoryBackedTests,
        )
        for attr in vars(cls)
        if attr.startswith("test_")
    }
    assert NOT_APPLICABLE <= all_tests
    ran = {
        f"{cls.__name__.removeprefix('Gevent')}.{attr}"
        for cls in (GeventThreadPoolTests, GeventRaceConditionTests)
        for attr in vars(cls)
        if attr.startswith("test_") and vars(cls)[attr] is not None
    }
    assert ran | NOT_APPLICABLE == all_tests
