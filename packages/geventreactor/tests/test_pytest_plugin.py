"""
The pytest plugin, run the way users run it: child pytest processes over a small suite, with the
plugins loaded in every order pytest can load them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geventreactor.pytest_plugin import greenlet_test

CHILD_TIMEOUT = 60

SUITE = """
import gevent, pytest, pytest_twisted
from twisted.internet import task
from geventreactor import GeventReactor, ReactorContextBlockingError, waitForDeferred
from geventreactor.pytest_plugin import greenlet_test

def test_reactor_is_gevent():
    from twisted.internet import reactor
    assert isinstance(reactor, GeventReactor) and reactor.running

@greenlet_test
def test_blocks():
    from twisted.internet import reactor
    gevent.sleep(0.01)
    assert waitForDeferred(task.deferLater(reactor, 0.01, lambda: 1), timeout=5) == 1

@pytest.mark.in_greenlet
def test_marked():
    gevent.sleep(0.01)

@pytest_twisted.ensureDeferred
async def test_async():
    from twisted.internet import reactor
    assert await task.deferLater(reactor, 0.01, lambda: 2) == 2
"""


def run_child(
    tmp_path: Path, args: list[str], ini: str = "", env: dict | None = None, suite: str = SUITE
):
    (tmp_path / "test_child.py").write_text(suite)
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini)
    full_env = dict(os.environ)
    full_env.pop("PYTEST_ADDOPTS", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            *args,
        ],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    return proc, proc.stdout + proc.stderr


def passed(output: str) -> int:
    match = re.search(r"(\d+) passed", output)
    return int(match[1]) if match else 0


NO_AUTOLOAD = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(
            ["-p", "geventreactor.pytest_plugin", "--reactor=gevent"], {}, id="documented"
        ),
        pytest.param(["--reactor=gevent"], {}, id="entry-point-only"),
        pytest.param(
            ["-p", "twisted", "-p", "geventreactor.pytest_plugin", "--reactor=gevent"],
            {},
            id="pytest-twisted-first",
        ),
        pytest.param(
            ["-p", "pytest_twisted", "-p", "geventreactor.pytest_plugin", "--reactor=gevent"],
            NO_AUTOLOAD,
            id="no-autoload-pytest-twisted-first",
        ),
        pytest.param(
            ["-p", "geventreactor.pytest_plugin", "-p", "pytest_twisted", "--reactor=gevent"],
            NO_AUTOLOAD,
            id="no-autoload-ours-first",
        ),
        pytest.param(
            ["--reactor=gevent"],
            {**NO_AUTOLOAD, "PYTEST_PLUGINS": "pytest_twisted,geventreactor.pytest_plugin"},
            id="PYTEST_PLUGINS-pytest-twisted-first",
        ),
        pytest.param(
            ["--reactor=gevent"],
            {**NO_AUTOLOAD, "PYTEST_PLUGINS": "geventreactor.pytest_plugin,pytest_twisted"},
            id="PYTEST_PLUGINS-ours-first",
        ),
    ],
)
def test_reactor_choice_whatever_the_plugin_order(tmp_path, args, env):
    proc, output = run_child(tmp_path, args, env=env)
    assert proc.returncode == 0, output
    assert passed(output) == 4, output


def test_addopts_setting(tmp_path):
    proc, output = run_child(
        tmp_path, [], ini="addopts = -p geventreactor.pytest_plugin --reactor=gevent\n"
    )
    assert proc.returncode == 0, output
    assert passed(output) == 4, output


def test_ini_option_runs_every_plain_test_in_a_greenlet(tmp_path):
    suite = """
import gevent, pytest_twisted
from twisted.internet import task

def test_plain_may_block():
    gevent.sleep(0.01)

@pytest_twisted.inlineCallbacks
def test_inline_callbacks_unchanged():
    from twisted.internet import reactor
    yield task.deferLater(reactor, 0.01, lambda: None)
"""
    proc, output = run_child(
        tmp_path,
        ["-p", "geventreactor.pytest_plugin", "--reactor=gevent"],
        ini="gevent_tests_in_greenlet = true\n",
        suite=suite,
    )
    assert proc.returncode == 0, output
    assert passed(output) == 2, output


def test_failures_keep_their_traceback_and_print_once(tmp_path):
    suite = """
import gevent
from geventreactor.pytest_plugin import greenlet_test

def helper():
    raise ValueError("deep inside")

@greenlet_test
def test_fails():
    gevent.sleep(0)
    helper()
"""
    proc, output = run_child(
        tmp_path, ["-p", "geventreactor.pytest_plugin", "--reactor=gevent"], suite=suite
    )
    assert proc.returncode == 1, output
    assert "1 failed" in output
    assert "in helper" in output or "def helper" in output, output
    assert "ValueError: deep inside" in output
    # gevent's own "Greenlet failed" report would print it a second time.
    assert "failed with ValueError" not in output, output


def test_greenlet_test_on_another_reactor_says_what_to_set(tmp_path):
    suite = """
from geventreactor.pytest_plugin import greenlet_test

@greenlet_test
def test_needs_gevent():
    pass
"""
    proc, output = run_child(tmp_path, [], suite=suite)
    assert proc.returncode == 1, output
    assert "-p geventreactor.pytest_plugin --reactor=gevent" in output


def test_greenlet_test_rejects_what_it_cannot_run():
    async def async_test():
        pass

    def generator_test():
        yield

    with pytest.raises(TypeError, match="plain `def`"):
        greenlet_test(async_test)
    with pytest.raises(TypeError, match="plain `def`"):
        greenlet_test(generator_test)
    with pytest.raises(TypeError, match="expects a test function, got int"):
        greenlet_test(3)


TIMED_OUT_SUITE = """
import pytest
import pytest_twisted
from twisted.internet import task


@pytest_twisted.inlineCallbacks
def test_times_out():
    from twisted.internet import reactor
    # pytest-timeout interrupts this wait after 1 s; the Deferred still fires at 2 s, in the
    # middle of the next test's wait.
    yield task.deferLater(reactor, 2, lambda: "too late")


@pytest.mark.timeout(30)
@pytest_twisted.inlineCallbacks
def test_next_waits_across_the_abandoned_deferred():
    from twisted.internet import reactor
    for _ in range(10):
        assert (yield task.deferLater(reactor, 0.2, lambda: "mine")) == "mine"


@pytest.mark.timeout(30)
@pytest_twisted.inlineCallbacks
def test_and_the_one_after():
    from twisted.internet import reactor
    assert (yield task.deferLater(reactor, 0.01, lambda: 3)) == 3
"""


def test_a_timed_out_wait_is_detached_and_later_tests_pass(tmp_path):
    """One test timing out must fail that test only: its Deferred, firing later, must not
    switch into the next test's wait ("illegal switch in blockon" in every later test)."""
    _proc, output = run_child(
        tmp_path,
        ["-p", "geventreactor.pytest_plugin", "--reactor=gevent", "--timeout=1"],
        ini="timeout_method = signal\n",
        suite=TIMED_OUT_SUITE,
    )
    assert "1 failed, 2 passed" in output, output
    assert "test_times_out" in output and "Timeout" in output, output
    assert "illegal switch" not in output, output


# pytest-twisted's own test_twisted_greenlet (testing/test_basic.py), and the same promise for an
# async test body.
TWISTED_GREENLET_SUITE = """
import pytest, greenlet, pytest_twisted

MAIN = None

@pytest.fixture(scope="session", autouse=True)
def set_MAIN(request, twisted_greenlet):
    global MAIN
    MAIN = twisted_greenlet

def test_MAIN():
    assert MAIN is not None
    assert MAIN is greenlet.getcurrent()

@pytest_twisted.ensureDeferred
async def test_MAIN_async():
    assert MAIN is greenlet.getcurrent()
"""


def test_twisted_greenlet_is_where_test_bodies_run(tmp_path):
    proc, output = run_child(
        tmp_path,
        ["-p", "geventreactor.pytest_plugin", "--reactor=gevent"],
        suite=TWISTED_GREENLET_SUITE,
    )
    assert proc.returncode == 0, output
    assert passed(output) == 2, output


# Loaded before geventreactor's plugin (by -p, in this order): a pytest-twisted whose internals
# changed, as a future release might change them.
BROKEN_PYTEST_TWISTED = """
import pytest_twisted
del pytest_twisted._install_reactor
"""


def test_changed_pytest_twisted_internals_stop_pytest_naming_the_version(tmp_path):
    from importlib.metadata import version

    (tmp_path / "break_pytest_twisted.py").write_text(BROKEN_PYTEST_TWISTED)
    proc, output = run_child(
        tmp_path,
        [
            "-p",
            "break_pytest_twisted",
            "-p",
            "pytest_twisted",
            "-p",
            "geventreactor.pytest_plugin",
            "--reactor=gevent",
        ],
        env={**NO_AUTOLOAD, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 4, output
    assert "AttributeError" not in output, output
    assert f"pytest-twisted {version('pytest-twisted')}" in output, output
    assert "pytest_twisted._install_reactor is missing" in output, output
    assert "pytest-twisted>=1.14" in output, output


# A change pytest-twisted itself survives (its own code uses the new name), ours would not.
RENAMED_MARK = """
import pytest_twisted
pytest_twisted._mark_attribute_name = "_renamed_mark"
"""

PLAIN_SUITE = """
def test_plain():
    assert True
"""


def test_changed_pytest_twisted_internals_only_warn_without_reactor_gevent(tmp_path):
    # The plugin is inert without --reactor=gevent: such runs go on, with a warning naming the
    # version, rather than being stopped by a pytest-twisted they do not use through us.
    from importlib.metadata import version

    (tmp_path / "break_pytest_twisted.py").write_text(RENAMED_MARK)
    proc, output = run_child(
        tmp_path,
        ["-p", "break_pytest_twisted", "-p", "pytest_twisted", "-p", "geventreactor.pytest_plugin"],
        env={**NO_AUTOLOAD, "PYTHONPATH": str(tmp_path)},
        suite=PLAIN_SUITE,
    )
    assert proc.returncode == 0, output
    assert "1 passed" in output, output
    assert f"pytest-twisted {version('pytest-twisted')}" in output, output
    assert "PytestConfigWarning" in output, output
    assert "pytest_twisted._mark_attribute_name is '_renamed_mark'" in output, output


def test_the_old_name_in_greenlet_still_works_and_is_deprecated():
    from geventreactor import pytest_plugin

    def test_plain():
        pass

    with pytest.warns(DeprecationWarning, match="use geventreactor.pytest_plugin.greenlet_test"):
        wrapped = pytest_plugin.in_greenlet(test_plain)
    assert getattr(wrapped, "_geventreactor_in_greenlet", False) is True
    assert wrapped.__wrapped__ is test_plain
    # A different function from geventreactor.in_greenlet (for Twisted code), as the name said.
    import geventreactor

    assert geventreactor.in_greenlet is not pytest_plugin.in_greenlet
