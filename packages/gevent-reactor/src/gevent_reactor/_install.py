"""
Installing L{GeventReactor} as Twisted's global reactor, and saying clearly why it cannot be.

Twisted has one global reactor per process, C{twisted.internet.reactor}, and importing that module
installs Twisted's default reactor when none is installed yet.  The usual reason a program ends up
with the wrong reactor is an import of C{twisted.internet.reactor} (by the program or by a library)
that ran before L{install}: the errors here name the reactor found, the likely way it got there, and
what to do.
"""

from __future__ import annotations

import sys
from types import ModuleType

from gevent.hub import Hub
from twisted.internet.error import ReactorAlreadyInstalledError

from gevent_deferred._in_loop import installed_reactor

from ._reactor import GeventReactor

__all__ = ["WrongReactorInstalledError", "ensure_installed", "install"]

_REACTOR_MODULE = "twisted.internet.reactor"


class WrongReactorInstalledError(ReactorAlreadyInstalledError):
    """
    A reactor other than L{GeventReactor} is installed already, so GeventReactor cannot be.

    A L{ReactorAlreadyInstalledError}, so code that expects Twisted's error (as Scrapy does) keeps
    working.  C{installed} is the reactor found.
    """

    def __init__(self, message: str, installed: object) -> None:
        super().__init__(message)
        #: The reactor that is installed (C{twisted.internet.reactor}).
        self.installed = installed


def _class_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_twisted_default(reactor: object) -> bool:
    # The reactor `import twisted.internet.reactor` installs on this platform (epoll on Linux).
    from twisted.internet import default

    return type(reactor).__module__ == getattr(default.install, "__module__", None)


def _modules_holding(reactor: object, limit: int = 5) -> list[str]:
    # Modules that did `from twisted.internet import reactor` at import time still hold it: they
    # are the likely culprits.  Twisted's own modules are listed last.
    names: list[str] = []
    for name, module in list(sys.modules.items()):
        if name == _REACTOR_MODULE or not isinstance(module, ModuleType):
            continue
        if getattr(module, "reactor", None) is reactor:
            names.append(name)
    names.sort(key=lambda name: (name.startswith("twisted."), name))
    return names[:limit]


def _wrong_reactor(installed: object, action: str) -> WrongReactorInstalledError:
    name = _class_name(installed)
    if _is_twisted_default(installed):
        how = (
            "This is Twisted's default reactor: most likely something imported "
            "twisted.internet.reactor before gevent_reactor.install() ran"
        )
    else:
        how = (
            "Most likely its own install() ran first, or a setting chose it (for example Scrapy's "
            "TWISTED_REACTOR), before gevent_reactor.install() ran"
        )
    holders = _modules_holding(installed)
    if holders:
        how += f" (modules holding it: {', '.join(holders)})"
    message = (
        f"cannot {action}: another reactor is installed already, {name}. {how}. "
        "Install GeventReactor first, at the very start of the program, before importing anything "
        "that imports twisted.internet.reactor: call gevent_reactor.install() (or choose it with "
        "`--reactor=gevent` for trial and twistd, or TWISTED_REACTOR = "
        '"gevent_reactor.GeventReactor" in Scrapy), and import the reactor inside functions, '
        "not at module level."
    )
    return WrongReactorInstalledError(message, installed)


def install(hub: Hub | None = None, background: bool = False) -> GeventReactor:
    """
    Install a L{GeventReactor} as C{twisted.internet.reactor} and return it.

    Call it before anything imports C{twisted.internet.reactor}.  If a reactor is installed already
    it raises L{twisted.internet.error.ReactorAlreadyInstalledError}: a L{WrongReactorInstalledError}
    that names the reactor found and how it likely got there when it is not a GeventReactor.  A
    library that only needs I{a} GeventReactor calls L{ensure_installed} instead.

    With C{background=True} the reactor also runs itself, in a greenlet of that hub, without
    Twisted's signal handlers, until C{reactor.stop()}, L{gevent_reactor.stop_background} (which waits for the
    shutdown) or interpreter exit: a gevent program never calls C{reactor.run()}.  Calling it again returns the same reactor (see
    L{gevent_reactor._background}).

    Never blocks.  Must be called from the thread whose hub (or C{hub}) will run the reactor.
    """
    from twisted.internet.main import installReactor

    if background:
        from ._background import install_background

        return install_background(hub)

    installed = installed_reactor()
    if isinstance(installed, GeventReactor):
        raise ReactorAlreadyInstalledError(
            "a GeventReactor is installed already (use gevent_reactor.ensure_installed() to get "
            "it, or to install one only when none is)"
        )
    if installed is not None:
        raise _wrong_reactor(installed, "install GeventReactor")
    reactor = GeventReactor(hub)
    installReactor(reactor)
    return reactor


def ensure_installed(hub: Hub | None = None) -> GeventReactor:
    """
    Return the installed L{GeventReactor}, installing one first if no reactor is installed yet.

    Idempotent: for libraries that need GeventReactor to be the global reactor without caring who
    installed it.  Raises L{WrongReactorInstalledError} (naming the reactor found and how it likely
    got there) if another reactor is installed, and L{ValueError} if C{hub} is given and the
    installed GeventReactor runs on another hub.

    Never blocks.  Must be called from the thread whose hub (or C{hub}) runs the reactor.
    """
    installed = installed_reactor()
    if installed is None:
        return install(hub)
    if not isinstance(installed, GeventReactor):
        raise _wrong_reactor(installed, "ensure GeventReactor is installed")
    if hub is not None and installed.hub is not hub:
        raise ValueError(
            f"hub: the installed GeventReactor runs on {installed.hub!r}, not on the hub given, "
            f"{hub!r}"
        )
    return installed
