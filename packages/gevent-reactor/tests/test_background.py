"""install(background=True): a reactor that runs itself; each case in a fresh interpreter.

Interpreter exit is the thing under test, so each script runs in a child process with a timeout.
"""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.timeout(90)

# The reactor's thread pool (real, non-daemon threads) is started; connections are open; a
# shutdown trigger is registered; the program simply ends.
EXIT_SCRIPT = textwrap.dedent(
    """
    import {module}
    import gevent
    from twisted.internet import threads
    from twisted.internet.protocol import Factory, Protocol

    reactor = {module}.install(background=True)
    from twisted.internet import reactor as global_reactor
    assert global_reactor is reactor
    assert {module}.install(background=True) is reactor  # twice is harmless

    from gevent_deferred import connect, listen, waitForDeferred

    class Server(Protocol):
        def connectionLost(self, reason):
            print("server connection closed:", reason.type.__name__, flush=True)

    port = reactor.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")
    conn = connect(f"tcp:127.0.0.1:{{port.getHost().port}}", timeout=5)
    print("thread says", waitForDeferred(threads.deferToThread(lambda: 6 * 7), timeout=5), flush=True)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: print("shutdown trigger fired", flush=True)
    )
    assert not reactor._installedSignalHandlers if hasattr(reactor, "_installedSignalHandlers") else True
    print("main ends; running:", reactor.running, flush=True)
    """
)


@pytest.mark.parametrize("module", ["gevent_reactor", "geventreactor"])
def test_stops_cleanly_at_interpreter_exit(run_python, module) -> None:
    done = run_python(["-c", EXIT_SCRIPT.format(module=module)], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "thread says 42" in lines
    assert "main ends; running: True" in lines
    # After the program's last line: triggers, then connections closed by the shutdown.
    assert lines.index("shutdown trigger fired") > lines.index("main ends; running: True")
    assert any(line.startswith("server connection closed") for line in lines), lines
    assert "Traceback" not in done.stderr, done.stderr


def test_stops_cleanly_at_exit_after_patch_all(run_python) -> None:
    script = "from gevent import monkey; monkey.patch_all()\n" + EXIT_SCRIPT.format(
        module="gevent_reactor"
    )
    done = run_python(["-c", script], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shutdown trigger fired" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr


def test_no_signal_handlers_and_explicit_stop(run_python) -> None:
    script = textwrap.dedent(
        """
        import signal
        import gevent
        import gevent_reactor

        before = signal.getsignal(signal.SIGINT)
        reactor = gevent_reactor.install(background=True)
        gevent.sleep(0.05)
        assert reactor.running
        assert signal.getsignal(signal.SIGINT) is before, "Twisted's handler was installed"
        fired = []
        reactor.addSystemEventTrigger("before", "shutdown", fired.append, "before")
        reactor.stop()
        for _ in range(200):
            if not reactor.running:
                break
            gevent.sleep(0.01)
        print("stopped:", not reactor.running, fired, flush=True)
        """
    )
    done = run_python(["-c", script], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped: True ['before']" in done.stdout


def test_another_reactor_installed_is_named(run_python) -> None:
    script = textwrap.dedent(
        """
        from twisted.internet import reactor  # installs Twisted's default reactor
        import gevent_reactor
        from twisted.internet.error import ReactorAlreadyInstalledError
        try:
            gevent_reactor.install(background=True)
        except ReactorAlreadyInstalledError as exc:
            print("refused:", exc)
        """
    )
    done = run_python(["-c", script], timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
    assert "EPollReactor" in done.stdout or "SelectReactor" in done.stdout, done.stdout


def test_background_after_a_plain_install_runs_that_reactor(run_python) -> None:
    script = textwrap.dedent(
        """
        import gevent
        import gevent_reactor
        from gevent_deferred import waitForDeferred
        from twisted.internet import task

        plain = gevent_reactor.install()
        assert gevent_reactor.install(background=True) is plain
        print(waitForDeferred(task.deferLater(plain, 0.01, lambda: "ran"), timeout=5), flush=True)
        """
    )
    done = run_python(["-c", script], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ran"


STOP_SCRIPT = textwrap.dedent(
    """
    import gevent
    import gevent_reactor
    from gevent_deferred import connect
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import Factory, Protocol

    reactor = gevent_reactor.install(background=True)
    events = []
    reactor.callWhenRunning(events.append, "started")
    reactor.addSystemEventTrigger("before", "shutdown", events.append, "shutdown")

    class Server(Protocol):
        def connectionLost(self, reason):
            events.append("connection lost")

    {before_stop}
    ended = gevent_reactor.stop_background(reactor, timeout=5)
    print("ended:", ended, "running:", reactor.running, events, flush=True)
    print("again:", gevent_reactor.stop_background(reactor), flush=True)
    """
)


def test_stop_background_waits_for_the_shutdown(run_python) -> None:
    before_stop = (
        'port = reactor.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")\n'
        'conn = connect(f"tcp:127.0.0.1:{port.getHost().port}", timeout=5)\n'
        "gevent.sleep(0.1)"
    )
    done = run_python(["-c", STOP_SCRIPT.format(before_stop=before_stop)], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ended: True running: False ['started', 'shutdown', 'connection lost']" in done.stdout, (
        done.stdout
    )
    assert "again: True" in done.stdout


def test_stop_background_before_the_run_began_fires_startup_and_shutdown(run_python) -> None:
    # Installed and stopped in the same hub turn: the run had not begun.
    done = run_python(["-c", STOP_SCRIPT.format(before_stop="pass")], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ended: True running: False ['started', 'shutdown']" in done.stdout, done.stdout


def test_exit_before_the_hub_ever_turned_fires_the_triggers(run_python) -> None:
    # Nothing in the program yields to the hub: the reactor's run has not begun when it ends.
    script = textwrap.dedent(
        """
        import gevent_reactor

        reactor = gevent_reactor.install(background=True)
        reactor.callWhenRunning(print, "started", flush=True)
        reactor.addSystemEventTrigger("before", "shutdown", print, "before shutdown", flush=True)
        reactor.addSystemEventTrigger("after", "shutdown", print, "after shutdown", flush=True)
        try:
            reactor.stop()
        except Exception as exc:
            print("stop:", type(exc).__name__, flush=True)
        print("main ends; running:", reactor.running, flush=True)
        """
    )
    done = run_python(["-c", script], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "stop: ReactorNotRunning",  # not running yet: as on any reactor that has not started
        "main ends; running: False",
        "started",
        "before shutdown",
        "after shutdown",
    ], done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_stop_background_gives_up_after_its_timeout(run_python) -> None:
    script = textwrap.dedent(
        """
        import time
        import gevent
        import gevent_reactor
        from twisted.internet.defer import Deferred

        reactor = gevent_reactor.install(background=True)
        gevent.sleep(0.05)
        reactor.addSystemEventTrigger("before", "shutdown", Deferred)  # never fires
        started = time.monotonic()
        ended = gevent_reactor.stop_background(reactor, timeout=0.5)
        print("ended:", ended, "within 5 s:", time.monotonic() - started < 5, flush=True)
        """
    )
    done = run_python(["-c", script], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ended: False within 5 s: True" in done.stdout, done.stdout


def test_stop_background_bad_arguments_and_wrong_context(run_python) -> None:
    script = textwrap.dedent(
        """
        import gevent
        import gevent_reactor
        from gevent_deferred import waitForDeferred
        from twisted.internet import task

        for args in [(object(),), (gevent_reactor.GeventReactor(),)]:
            try:
                gevent_reactor.stop_background(*args)
            except ValueError as exc:
                print("refused:", exc, flush=True)
        reactor = gevent_reactor.install(background=True)
        try:
            gevent_reactor.stop_background(reactor, timeout=-1)
        except TypeError as exc:
            print("refused:", exc, flush=True)

        def in_reactor_context():
            try:
                gevent_reactor.stop_background(reactor, timeout=1)
            except Exception as exc:
                return type(exc).__name__
            return "no error"

        print("in context:", waitForDeferred(task.deferLater(reactor, 0, in_reactor_context), timeout=5))
        print("still running:", reactor.running, flush=True)
        """
    )
    done = run_python(["-c", script], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    refused = [line for line in done.stdout.splitlines() if line.startswith("refused:")]
    assert len(refused) == 3, done.stdout
    assert all("stop_background(reactor) expects a reactor started by" in r for r in refused[:2])
    assert "stop_background(timeout=...) expects None or a number of seconds" in refused[2]
    assert "in context: ReactorContextBlockingError" in done.stdout, done.stdout
    assert "still running: True" in done.stdout
