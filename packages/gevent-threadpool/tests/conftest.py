"""Shared helpers: pools in both placements, log capture, waiting without starving the hub."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from twisted.python import log

from gevent_deferred import shared_hub_thread
from gevent_threadpool import GeventThreadPool

MODES = ["cross-thread", "in-loop"]


def _wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``predicate``, yielding to this thread's hub so that in-loop workers run."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        gevent.sleep(0.001)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(predicate, timeout=5.0)``: see ``_wait_until``."""
    return _wait_until


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_pool(mode: str) -> Iterator[Callable[..., GeventThreadPool]]:
    """Build pools placed per ``mode``; stop them (and wait for their workers) afterwards."""
    pools: list[GeventThreadPool] = []

    def make(*args: Any, **kwargs: Any) -> GeventThreadPool:
        hub = shared_hub_thread() if mode == "cross-thread" else gevent.get_hub()
        pool = GeventThreadPool(*args, hub=hub, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.kill()
        _wait_until(lambda pool=pool: pool.workers == 0)


@pytest.fixture
def logged_errors() -> Iterator[list[dict[str, Any]]]:
    """Error events that reach Twisted's (legacy) log while the test runs, from any thread."""
    errors: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("isError"):
            errors.append(event)

    log.addObserver(observer)
    try:
        yield errors
    finally:
        log.removeObserver(observer)
