"""
Run Twisted test modules with trial's own runner and write every test's outcome as JSON.

Used by test_twisted_suites.py in a child process per module, so that a crash or hang in one suite
cannot take the test session with it.  It does what `trial --reactor=NAME MODULE` does, then records
`{test id: outcome}` instead of printing a report.

    python trial_outcomes.py --global-reactor gevent --builders gevent,epoll --out OUT.json MODULE...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

REACTORS = {
    "gevent": "gevent_reactor.GeventReactor",
    "epoll": "twisted.internet.epollreactor.EPollReactor",
}


def install_global(name: str) -> None:
    if name == "gevent":
        import gevent_reactor

        gevent_reactor.install()
    else:
        from twisted.internet import epollreactor

        epollreactor.install()


# Tests that Twisted skips for its epoll reactor by class name, for a reason that holds for ours too
# (libev and libuv watch fds with epoll on Linux).  They are skipped here, not run, because they leave
# the loop's fd bookkeeping behind for the tests that follow.
SKIP_LIKE_EPOLL = {
    "test_lostFileDescriptor": (
        "closing a file descriptor removes it from the kernel's epoll set without a notification, "
        "so the loop cannot notice that another socket took its number (Twisted skips this for "
        "its epoll reactor for the same reason)"
    ),
}


# Tests skipped on every reactor, by full test id, because running them harms the machine.
SKIP_EVERYWHERE = {
    "twisted.test.test_logfile.LogFileTests.test_cantChangeFileMode": (
        "run as root, it makes /dev/null read-only (chmod 0555), which breaks every later process "
        "on the machine that opens /dev/null for writing"
    ),
}


def skip_inapplicable(suite) -> None:
    from twisted.trial.unittest import TestSuite

    for test in suite:
        if isinstance(test, TestSuite) or hasattr(test, "_tests"):
            skip_inapplicable(test)
            continue
        if test.id() in SKIP_EVERYWHERE:
            test.skip = SKIP_EVERYWHERE[test.id()]
            continue
        method = getattr(test, "_testMethodName", "")
        if method in SKIP_LIKE_EPOLL and "GeventReactor" in type(test).__name__:
            test.skip = SKIP_LIKE_EPOLL[method]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--global-reactor", choices=sorted(REACTORS), required=True)
    parser.add_argument(
        "--builders",
        default="",
        help=(
            "comma-separated reactor names whose ReactorBuilder test classes are generated, "
            "or 'none' for no such classes (default: Twisted's own list)"
        ),
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("modules", nargs="+")
    args = parser.parse_args(argv)

    install_global(args.global_reactor)
    if args.builders:
        from twisted.internet.test.reactormixins import ReactorBuilder

        # Must happen before the test modules are imported: they build their classes at import.
        names = [] if args.builders == "none" else args.builders.split(",")
        ReactorBuilder._reactors = [REACTORS[n] for n in names]

    from twisted.trial import reporter, runner

    outcomes: dict[str, dict[str, str]] = {}

    class Recorder(reporter.Reporter):
        def startTest(self, test):
            # On stderr, so that a suite that hangs shows where.
            print("START", test.id(), file=sys.stderr, flush=True)
            self._started = time.monotonic()
            super().startTest(test)

        def _record(self, test, outcome, detail=""):
            # An error outside any test (a module that fails to import) has no start time.
            started = getattr(self, "_started", None)
            seconds = 0.0 if started is None else round(time.monotonic() - started, 3)
            outcomes[test.id()] = {
                "outcome": outcome,
                "detail": str(detail)[-2000:],
                "seconds": seconds,
            }

        def addSuccess(self, test):
            super().addSuccess(test)
            self._record(test, "pass")

        def addError(self, test, error):
            super().addError(test, error)
            self._record(test, "error", getattr(error, "getTraceback", lambda: error)())

        def addFailure(self, test, fail):
            super().addFailure(test, fail)
            self._record(test, "fail", getattr(fail, "getTraceback", lambda: fail)())

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._record(test, "skip", reason)

        def addExpectedFailure(self, test, failure, todo=None):
            super().addExpectedFailure(test, failure, todo)
            self._record(test, "xfail")

        def addUnexpectedSuccess(self, test, todo=None):
            super().addUnexpectedSuccess(test, todo)
            self._record(test, "xpass")

    loader = runner.TestLoader()
    suite = loader.loadByNames(args.modules, recurse=True)
    skip_inapplicable(suite)
    workdir = tempfile.mkdtemp(prefix="trial-")
    with open(os.devnull, "w") as devnull:
        trial = runner.TrialRunner(
            Recorder, workingDirectory=os.path.join(workdir, "_trial_temp"), stream=devnull
        )
        trial.run(suite)
    with open(args.out, "w") as f:
        json.dump(outcomes, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
