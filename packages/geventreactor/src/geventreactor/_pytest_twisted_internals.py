"""
The one place that uses pytest-twisted's internals (module-level names that are not its API).

At import it checks that each of them exists with the kind the plugin needs.  If one does not, a run
with C{--reactor=gevent} stops with a usage error naming the installed pytest-twisted and the
versions known to work (instead of failing later with an C{AttributeError}); other runs only get a
warning, since the plugin is inert without C{--reactor=gevent}.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, MutableMapping
from importlib import metadata
from typing import Any

import pytest

__all__: list[str] = []

# The greenlet_test decorator works without pytest-twisted: it keeps the attribute's name as a literal,
# checked against pytest-twisted's below.
from ._pytest_greenlets import _PYTEST_TWISTED_MARK as MARK_ATTRIBUTE

# Used when geventreactor's own metadata cannot be read (a source tree on sys.path).
_KNOWN_TO_WORK = "pytest-twisted>=1.14"

try:
    import pytest_twisted
except ImportError:  # the `pytest` extra is not installed: only the decorator is of use
    pytest_twisted = None


def _known_to_work() -> str:
    try:
        requires = metadata.requires("geventreactor") or []
    except metadata.PackageNotFoundError:
        return _KNOWN_TO_WORK
    for requirement in requires:
        spec = requirement.split(";")[0].strip()
        if spec.replace("_", "-").lower().startswith("pytest-twisted"):
            return spec
    return _KNOWN_TO_WORK


def _installed_version() -> str:
    try:
        return metadata.version("pytest-twisted")
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def _takes(*names: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not callable(value):
            return False
        try:
            parameters = inspect.signature(value).parameters
        except (TypeError, ValueError):
            return False
        return all(name in parameters for name in names)

    return check


# Each internal the plugin uses, what it must be, and how to tell.
_NEEDED: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "_install_reactor": (
        "a function taking reactor_installer and reactor_type",
        _takes("reactor_installer", "reactor_type"),
    ),
    "blockon_default": ("a function taking one Deferred", _takes("d")),
    "reactor_installers": (
        "a mapping of --reactor names to installers",
        lambda value: isinstance(value, MutableMapping),
    ),
    "_instances": (
        "a holder with a gr_twisted attribute",
        lambda value: hasattr(value, "gr_twisted"),
    ),
    "_mark_attribute_name": (
        f"the string {MARK_ATTRIBUTE!r}",
        lambda value: value == MARK_ATTRIBUTE,
    ),
    "twisted_greenlet": (
        "its twisted_greenlet fixture",
        lambda value: getattr(value, "name", None) == "twisted_greenlet",
    ),
}


def incompatibilities(module: Any) -> list[str]:
    """
    What C{module} (pytest-twisted) lacks or has changed of what the plugin needs; empty if nothing.

    Never blocks.
    """
    problems = []
    for name, (expected, check) in _NEEDED.items():
        if not hasattr(module, name):
            problems.append(f"pytest_twisted.{name} is missing (expected {expected})")
        elif not check(getattr(module, name)):
            value = getattr(module, name)
            problems.append(f"pytest_twisted.{name} is {value!r:.80} (expected {expected})")
    return problems


def incompatibility_message() -> str | None:
    """
    Why the installed pytest-twisted cannot run GeventReactor, naming its version and the versions
    known to work; C{None} if it can (or if pytest-twisted is not installed).

    Never blocks.
    """
    if pytest_twisted is None:
        return None
    problems = incompatibilities(pytest_twisted)
    if not problems:
        return None
    return (
        f"geventreactor's pytest plugin does not work with the installed pytest-twisted "
        f"{_installed_version()}: " + "; ".join(problems) + ". Versions known to work: "
        f"{_known_to_work()}; install one of those (pip install '{_known_to_work()}') or "
        "disable the plugin with -p no:geventreactor.pytest_plugin."
    )


#: Checked once, at import: C{None}, or what makes the installed pytest-twisted unusable.
INCOMPATIBLE = incompatibility_message()


def check_compatible() -> None:
    """
    Stop pytest with a usage error if the installed pytest-twisted lacks what the plugin needs.

    Never blocks.  Raises C{pytest.UsageError} naming the installed version and those known to work.
    """
    if INCOMPATIBLE is not None:
        raise pytest.UsageError(INCOMPATIBLE)


def register_reactor(name: str, installer: Callable[[], None]) -> None:
    """Offer C{name} as a choice of pytest-twisted's C{--reactor} (if it still has that table).
    Never blocks."""
    installers = getattr(pytest_twisted, "reactor_installers", None)
    if isinstance(installers, MutableMapping):
        installers.setdefault(name, installer)


def install_reactor(
    installer: Callable[[], Any], reactor_type: type, blockon: Callable[[Any], Any]
) -> None:
    """
    Make C{blockon} pytest-twisted's wait, install the reactor and create its reactor greenlet.

    Never blocks.  Must be called in pytest's main greenlet.
    """
    # Before the reactor greenlet exists: every wait pytest-twisted makes goes through it.
    pytest_twisted.blockon_default = blockon
    pytest_twisted._install_reactor(reactor_installer=installer, reactor_type=reactor_type)


def reactor_greenlet() -> Any:
    """The greenlet pytest-twisted runs the reactor in (C{None} before it exists).  Never blocks."""
    return pytest_twisted._instances.gr_twisted


def replace_twisted_greenlet_fixture(fixture: Any) -> Callable[[], None]:
    """
    Make C{fixture} pytest-twisted's C{twisted_greenlet}; return a function that puts its own back.

    Never blocks.  Must be called before the session starts (pytest reads the fixtures of plugins
    then).
    """
    original = pytest_twisted.twisted_greenlet
    pytest_twisted.twisted_greenlet = fixture

    def restore() -> None:
        pytest_twisted.twisted_greenlet = original

    return restore
