"""
Runs pytest_twisted_suite/ (real Twisted applications on GeventReactor, through pytest-twisted) in a
child pytest process, as a user of pytest-twisted runs a suite: its pytest.ini holds the one setting
`-p geventreactor.pytest_plugin --reactor=gevent`.

A child process, because pytest-twisted installs a global reactor for the whole session, which the
other tests of this session (each building its own reactors) must not see. The child inherits
GEVENT_LOOP, so it runs on the same gevent loop as this session, and is killed if it overruns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SUITE = Path(__file__).parent / "pytest_twisted_suite"
CHILD_TIMEOUT = 100  # under pytest.ini's global 120 s
# Fewer than this many tests would mean a module silently stopped being collected.
MIN_TESTS = 30


def test_pytest_twisted_suite_passes_on_gevent_reactor(tmp_path: Path) -> None:
    report = tmp_path / "suite.xml"
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", str(SUITE)],
        cwd=SUITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-60:])
    assert report.exists(), f"the child pytest wrote no report (exit {proc.returncode}):\n{tail}"
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    problems = [
        f"{case.get('classname')}::{case.get('name')}: {child.tag}: {child.get('message', '')[:300]}"
        for case in suite.iter("testcase")
        for child in case
        if child.tag in ("failure", "error", "skipped")
    ]
    assert not problems, "\n".join(problems) + f"\n\n{tail}"
    assert counts["tests"] >= MIN_TESTS, f"only {counts} collected:\n{tail}"
    assert proc.returncode == 0, tail
    assert "--reactor=gevent" in (SUITE / "pytest.ini").read_text()
