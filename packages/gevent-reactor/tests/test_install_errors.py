"""install() when another reactor is installed, ensure_installed(), and Twisted's installReactor.

Each runs in a fresh interpreter: installing a reactor is process-wide and irreversible.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

# A module that does what most "wrong reactor" reports come from: it imports the global reactor at
# import time, which installs Twisted's default one.
EARLY_IMPORTER = textwrap.dedent(
    """
    from twisted.internet import reactor
    """
)

WRONG_DEFAULT_SCRIPT = textwrap.dedent(
    """
    import sys

    import myapp_early  # imports twisted.internet.reactor
    import gevent_reactor
    from twisted.internet.error import ReactorAlreadyInstalledError

    for attempt in (gevent_reactor.install, gevent_reactor.ensure_installed):
        try:
            attempt()
        except gevent_reactor.WrongReactorInstalledError as e:
            assert isinstance(e, ReactorAlreadyInstalledError)
            assert e.installed is sys.modules["twisted.internet.reactor"]
            print("MESSAGE", attempt.__name__, str(e))
        else:
            raise SystemExit(attempt.__name__ + " accepted")
    """
)


def test_install_names_the_default_reactor_and_who_imported_it(run_python, tmp_path: Path) -> None:
    (tmp_path / "myapp_early.py").write_text(EARLY_IMPORTER)
    done = run_python(["-c", WRONG_DEFAULT_SCRIPT], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    messages = [line for line in done.stdout.splitlines() if line.startswith("MESSAGE")]
    assert [m.split()[1] for m in messages] == ["install", "ensure_installed"]
    for message in messages:
        assert "twisted.internet.epollreactor.EPollReactor" in message
        assert "Twisted's default reactor" in message
        assert "imported twisted.internet.reactor before gevent_reactor.install()" in message
        # The module that imported it is named, ahead of Twisted's own.
        assert "modules holding it: myapp_early" in message
        assert "call gevent_reactor.install()" in message
    assert "cannot install GeventReactor" in messages[0]
    assert "cannot ensure GeventReactor is installed" in messages[1]


def test_install_names_another_explicitly_installed_reactor(run_python) -> None:
    script = textwrap.dedent(
        """
        from twisted.internet import asyncioreactor
        asyncioreactor.install()
        import gevent_reactor
        try:
            gevent_reactor.install()
        except gevent_reactor.WrongReactorInstalledError as e:
            print("MESSAGE", e)
        """
    )
    done = run_python(["-c", script])
    assert done.returncode == 0, done.stderr
    assert "MESSAGE" in done.stdout, done.stdout
    assert "twisted.internet.asyncioreactor.AsyncioSelectorReactor" in done.stdout
    assert "its own install() ran first" in done.stdout
    assert "Twisted's default reactor" not in done.stdout


ENSURE_SCRIPT = textwrap.dedent(
    """
    import threading

    import gevent
    import gevent_reactor
    import geventreactor
    from twisted.internet.error import ReactorAlreadyInstalledError

    assert geventreactor.ensure_installed is gevent_reactor.ensure_installed
    first = gevent_reactor.ensure_installed()
    assert type(first) is gevent_reactor.GeventReactor
    from twisted.internet import reactor
    assert reactor is first
    assert gevent_reactor.ensure_installed() is first
    assert gevent_reactor.ensure_installed(gevent.get_hub()) is first
    print("idempotent")

    try:
        gevent_reactor.install()
    except gevent_reactor.WrongReactorInstalledError:
        raise SystemExit("a GeventReactor was reported as another reactor")
    except ReactorAlreadyInstalledError as e:
        assert "ensure_installed()" in str(e), e
        print("install refused")

    other_hubs = []
    t = threading.Thread(target=lambda: other_hubs.append(gevent.get_hub()))
    t.start()
    t.join()
    try:
        gevent_reactor.ensure_installed(other_hubs[0])
    except ValueError as e:
        assert str(e).startswith("hub: "), e
        print("other hub refused")

    results = []
    reactor.callLater(0.01, results.append, "timer")
    reactor.callLater(0.02, reactor.stop)
    reactor.run()
    print("ran", results)
    """
)


def test_ensure_installed_is_idempotent(run_python) -> None:
    done = run_python(["-c", ENSURE_SCRIPT])
    assert done.returncode == 0, done.stderr
    for line in ("idempotent", "install refused", "other hub refused", "ran ['timer']"):
        assert line in done.stdout, (line, done.stdout, done.stderr)


INSTALL_REACTOR_SCRIPT = textwrap.dedent(
    """
    from twisted.application.reactors import installReactor
    from twisted.internet.task import deferLater

    installed = installReactor("gevent")
    from twisted.internet import reactor
    import gevent_reactor

    assert reactor is installed, (reactor, installed)
    assert type(reactor) is gevent_reactor.GeventReactor
    assert gevent_reactor.ensure_installed() is reactor
    d = deferLater(reactor, 0.01, lambda: "fired")
    d.addCallback(print)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    """
)


def test_twisted_install_reactor_by_name(run_python) -> None:
    done = run_python(["-c", INSTALL_REACTOR_SCRIPT])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fired"


def test_twisted_install_reactor_by_name_after_the_default_says_why(run_python) -> None:
    script = textwrap.dedent(
        """
        from twisted.internet import reactor
        from twisted.application.reactors import installReactor
        try:
            installReactor("gevent")
        except Exception as e:
            print(type(e).__name__, e)
        """
    )
    done = run_python(["-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("WrongReactorInstalledError"), done.stdout
    assert "EPollReactor" in done.stdout
