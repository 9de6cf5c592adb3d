"""install(), and the plugin that makes ``trial/twistd --reactor=gevent`` use GeventReactor.

Each runs in a fresh interpreter: installing a reactor is process-wide and irreversible.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

INSTALL_SCRIPT = textwrap.dedent(
    """
    import gevent_reactor
    from twisted.internet.error import ReactorAlreadyInstalledError

    installed = gevent_reactor.install()
    from twisted.internet import reactor

    assert reactor is installed, (reactor, installed)
    assert type(reactor) is gevent_reactor.GeventReactor
    try:
        gevent_reactor.install()
    except ReactorAlreadyInstalledError:
        print("second install refused")
    else:
        raise SystemExit("second install accepted")

    results = []
    reactor.callLater(0.01, results.append, "timer")
    reactor.callLater(0.02, reactor.stop)
    reactor.run()
    print("ran", results)
    """
)


def test_install_returns_the_global_reactor(run_python) -> None:
    done = run_python(["-c", INSTALL_SCRIPT])
    assert done.returncode == 0, done.stderr
    assert "second install refused" in done.stdout
    assert "ran ['timer']" in done.stdout


def test_install_after_another_reactor_is_refused(run_python) -> None:
    script = textwrap.dedent(
        """
        from twisted.internet import reactor  # installs the default reactor
        import gevent_reactor
        from twisted.internet.error import ReactorAlreadyInstalledError
        try:
            gevent_reactor.install()
        except ReactorAlreadyInstalledError:
            print("refused")
        """
    )
    done = run_python(["-c", script])
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stdout


TRIAL_MODULE = textwrap.dedent(
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    from twisted.trial import unittest


    class WhichReactor(unittest.TestCase):
        def test_class_name(self):
            self.assertEqual(type(reactor).__name__, "GeventReactor")
            self.assertEqual(type(reactor).__module__, "gevent_reactor._reactor")

        def test_timer(self):
            return deferLater(reactor, 0.01, lambda: None)
    """
)


def test_trial_reactor_gevent(run_python, tmp_path: Path) -> None:
    (tmp_path / "test_gevent_reactor_meta.py").write_text(TRIAL_MODULE)
    done = run_python(
        ["-m", "twisted.trial", "--reactor=gevent", "test_gevent_reactor_meta"], cwd=tmp_path
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "PASSED (successes=2)" in output


def test_trial_would_fail_with_another_reactor(run_python, tmp_path: Path) -> None:
    # The meta test above can fail: with the select reactor the same module fails.
    (tmp_path / "test_gevent_reactor_meta.py").write_text(TRIAL_MODULE)
    done = run_python(
        ["-m", "twisted.trial", "--reactor=select", "test_gevent_reactor_meta"], cwd=tmp_path
    )
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr


# twistd's console script, run with this interpreter (twisted.scripts.twistd has no __main__ block).
TWISTD = ["-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def test_twistd_help_reactors_lists_gevent(run_python) -> None:
    done = run_python([*TWISTD, "--help-reactors"])
    assert done.returncode == 0, done.stderr
    lines = [line.split(None, 1) for line in done.stdout.splitlines() if line.strip()]
    assert ["gevent"] == [parts[0] for parts in lines if parts[0] == "gevent"]


TAC = textwrap.dedent(
    """
    from twisted.application import service
    from twisted.internet import reactor

    def report():
        with open({marker!r}, "w") as f:
            f.write(type(reactor).__name__ + " " + type(reactor).__module__)
        reactor.stop()

    reactor.callWhenRunning(reactor.callLater, 0.01, report)
    application = service.Application("gevent-reactor-check")
    """
)


def test_twistd_reactor_gevent_runs_an_application(run_python, tmp_path: Path) -> None:
    marker = tmp_path / "reactor.txt"
    tac = tmp_path / "check.tac"
    tac.write_text(TAC.format(marker=str(marker)))
    done = run_python(
        [
            *TWISTD,
            "--reactor=gevent",
            "-n",
            "--pidfile=",
            "--logfile",
            str(tmp_path / "twistd.log"),
            "-y",
            str(tac),
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert marker.read_text() == "GeventReactor gevent_reactor._reactor"
    assert "GeventReactor" in (tmp_path / "twistd.log").read_text()


def test_python_m_twisted_reactor_gevent(run_python) -> None:
    # The newer "python -m twisted" runner accepts the name too.
    done = run_python(["-m", "twisted", "--reactor=gevent", "--help"])
    assert done.returncode == 0, done.stderr
    assert '"gevent"' in done.stdout
