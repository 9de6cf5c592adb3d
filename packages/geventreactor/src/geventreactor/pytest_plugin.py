"""
The pytest plugin: pytest-twisted on GeventReactor, and test bodies that may block with gevent.

One setting, for example in pytest.ini::

    [pytest]
    addopts = -p geventreactor.pytest_plugin --reactor=gevent

It works whichever of this plugin and pytest-twisted pytest loads first (``-p``, entry points,
``PYTEST_PLUGINS``); a ``conftest.py`` is too late for ``--reactor``. A test marked
``@pytest.mark.in_greenlet`` or decorated with L{greenlet_test} runs in a fresh greenlet where it may
block with gevent; so does every plain ``def`` test when the ini option ``gevent_tests_in_greenlet``
is true.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any

import pytest

from . import _pytest_twisted_internals as _internals
from ._blockon import blockon_via_hub
from ._pytest_greenlets import (
    _PYTEST_TWISTED_MARK,
    IN_GREENLET_ATTRIBUTE,
    greenlet_test,
    in_greenlet,
)

__all__ = ["greenlet_test", "in_greenlet", "init_gevent_reactor"]

REACTOR_NAME = "gevent"
_MARKER = "in_greenlet"
_INI_ALL = "gevent_tests_in_greenlet"

# None when the `pytest` extra is not installed: only the decorator is of use.
pytest_twisted = _internals.pytest_twisted


def init_gevent_reactor() -> None:
    """
    Install GeventReactor as pytest-twisted's reactor and create pytest-twisted's reactor greenlet.

    Never blocks.  Called by pytest-twisted for ``--reactor=gevent``, in pytest's main greenlet.
    """
    import gevent_reactor

    # Every wait pytest-twisted makes goes through the hub.
    _internals.install_reactor(
        gevent_reactor.install, gevent_reactor.GeventReactor, blockon_via_hub
    )


if pytest_twisted is not None:
    # Loaded before pytest-twisted: its --reactor option will offer "gevent" from the start.
    _internals.register_reactor(REACTOR_NAME, init_gevent_reactor)


def _add_reactor_choice(parser: Any) -> None:
    # Loaded after pytest-twisted: its --reactor option exists with its choices frozen; add ours.
    # pytest builds the argparse parser from these attributes at each parse, and the first parse
    # that reads --reactor comes after every -p, entry-point and PYTEST_PLUGINS plugin is loaded.
    for group in getattr(parser, "_groups", ()):
        for option in getattr(group, "options", ()):
            if "--reactor" in option.names():
                attrs = option.attrs()
                choices = tuple(attrs.get("choices") or ())
                if REACTOR_NAME not in choices:
                    attrs["choices"] = (*choices, REACTOR_NAME)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _INI_ALL,
        type="bool",
        default=False,
        help="geventreactor: run every plain `def` test body in a fresh greenlet (may block)",
    )
    if pytest_twisted is not None:
        _add_reactor_choice(parser)


def _make_twisted_greenlet_fixture() -> Any:
    # Made here, not at module level: pytest would register a module-level one as a second
    # twisted_greenlet fixture of this plugin.
    @pytest.fixture(name="twisted_greenlet", scope="session", autouse=True)
    def twisted_greenlet() -> Any:
        """
        The greenlet pytest-twisted runs test bodies in: on GeventReactor, the reactor's own
        context, where its timed calls run (not the greenlet that called C{reactor.run()}).

        Blocks the current greenlet (pytest's main one) until the reactor has run one timed call.
        """
        from greenlet import getcurrent
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred

        # pytest-twisted runs each test body from a reactor.callLater(0, ...): ask a timed call
        # where it runs.
        where: Deferred = Deferred()
        reactor.callLater(0, lambda: where.callback(getcurrent()))
        return blockon_via_hub(where)

    return twisted_greenlet


_restore_twisted_greenlet: list[Any] = []


@pytest.hookimpl(tryfirst=True)  # before pytest-twisted's, which would use what is missing
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}: run this test body in a fresh greenlet, where it may block with gevent "
        "(needs --reactor=gevent)",
    )
    if _internals.INCOMPATIBLE is not None:
        if config.getoption("reactor", None) == REACTOR_NAME:
            _internals.check_compatible()  # raises the usage error
        config.issue_config_time_warning(pytest.PytestConfigWarning(_internals.INCOMPATIBLE), 2)
        return
    if pytest_twisted is not None and config.getoption("reactor", None) == REACTOR_NAME:
        # Before the session starts, when pytest reads each plugin's fixtures.
        _restore_twisted_greenlet.append(
            _internals.replace_twisted_greenlet_fixture(_make_twisted_greenlet_fixture())
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    # pytest_twisted stays imported across in-process runs (pytester): give it back its fixture.
    while _restore_twisted_greenlet:
        _restore_twisted_greenlet.pop()()


def _wants_greenlet(item: pytest.Function) -> bool:
    obj = item.obj
    if getattr(obj, IN_GREENLET_ATTRIBUTE, False):
        return False  # decorated with greenlet_test already
    if item.get_closest_marker(_MARKER) is not None:
        return True
    if not item.config.getini(_INI_ALL):
        return False
    # Only plain `def` tests: async and @inlineCallbacks tests keep running on the reactor.
    target = inspect.unwrap(obj)
    return not (
        inspect.iscoroutinefunction(target)
        or inspect.isgeneratorfunction(target)
        or inspect.isasyncgenfunction(target)
        or getattr(obj, _PYTEST_TWISTED_MARK, None) is not None
        or getattr(obj, "hypothesis", None) is not None
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    if not _wants_greenlet(pyfuncitem):
        return (yield)
    original = pyfuncitem.obj
    # pytest-twisted calls pyfuncitem.obj and waits on the Deferred it returns.
    pyfuncitem.obj = greenlet_test(original)
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original
