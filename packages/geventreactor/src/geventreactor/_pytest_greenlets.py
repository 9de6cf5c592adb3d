"""Running a pytest-twisted test body in a greenlet of its own, where it may block with gevent."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from gevent_deferred import deferToGreenlet
from gevent_deferred._in_loop import runs_on_this_hub

__all__ = ["greenlet_test", "in_greenlet"]

# pytest-twisted marks its @inlineCallbacks / @ensureDeferred tests with this attribute.
_PYTEST_TWISTED_MARK = "_pytest_twisted_mark"
# Set on functions greenlet_test made, so that the plugin's marker does not wrap them twice.
IN_GREENLET_ATTRIBUTE = "_geventreactor_in_greenlet"


def _check_test_function(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(
            f"greenlet_test expects a test function, got {type(fn).__name__}: {fn!r:.80}"
        )
    target = inspect.unwrap(fn)
    if (
        inspect.iscoroutinefunction(target)
        or inspect.isasyncgenfunction(target)
        or inspect.isgeneratorfunction(target)
        or getattr(fn, _PYTEST_TWISTED_MARK, None) is not None
    ):
        raise TypeError(
            f"greenlet_test expects a plain `def` test function, got {fn!r:.80}, an async, "
            "generator or @inlineCallbacks/@ensureDeferred test. Those already run on the reactor "
            "and wait with await/yield; run a blocking part with "
            "`await gevent_deferred.deferToGreenlet(f)` instead."
        )


def _check_reactor() -> None:
    # The global reactor is the documented default here: pytest-twisted installed it.
    from twisted.internet import reactor

    if not runs_on_this_hub(reactor):
        raise RuntimeError(
            "greenlet_test tests need pytest-twisted running GeventReactor in this thread, but the "
            f"reactor is {reactor!r}. Run pytest with `-p geventreactor.pytest_plugin "
            "--reactor=gevent` (for example in addopts)."
        )


def _body(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception:
        # Returned, not raised: the Deferred fails all the same (with this traceback), and gevent
        # does not print a second copy of every failed assertion to stderr.
        return Failure()


def greenlet_test(fn: Callable[..., Any]) -> Callable[..., Deferred]:
    """
    Run each call of test function C{fn} in a fresh greenlet; return a Deferred of its outcome.

    For pytest-twisted on GeventReactor: the body may block its greenlet (C{gevent.sleep},
    C{waitForDeferred}, gevent sockets) while the reactor runs on; pytest-twisted waits on the
    returned Deferred. Fixtures are resolved from C{fn}'s own signature.  Never blocks; the body
    blocks the current greenlet (its own).  Must not be called from the hub.  Raises C{TypeError} at
    decoration time for async, generator and C{@inlineCallbacks} tests.
    """
    _check_test_function(fn)

    @functools.wraps(fn)
    def run_in_greenlet(*args: Any, **kwargs: Any) -> Deferred:
        _check_reactor()
        return deferToGreenlet(_body, fn, args, kwargs)

    setattr(run_in_greenlet, IN_GREENLET_ATTRIBUTE, True)
    return run_in_greenlet


def in_greenlet(fn: Callable[..., Any]) -> Callable[..., Deferred]:
    """
    The old name of L{greenlet_test}, deprecated: C{geventreactor.in_greenlet} is another function
    (L{gevent_deferred.in_greenlet}, for Twisted code), and one name for both misled.

    Never blocks.  Warns with C{DeprecationWarning} at decoration time.
    """
    warnings.warn(
        "geventreactor.pytest_plugin.in_greenlet is deprecated: use "
        "geventreactor.pytest_plugin.greenlet_test (the same decorator)",
        DeprecationWarning,
        stacklevel=2,
    )
    return greenlet_test(fn)
