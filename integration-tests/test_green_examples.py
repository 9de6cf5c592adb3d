"""Smoke tests of the green-connection examples: each runs its one-line command in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"

pytestmark = pytest.mark.timeout(90)


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    assert f"python examples/{name}" in (EXAMPLES / name).read_text()  # the documented command
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONFAULTHANDLER="1"),
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_green_chat():
    assert run_example("green_chat.py").stdout.splitlines() == [
        "bob got: <alice> hello bob",
        "alice got: <bob> hi alice",
        "members left: 0",
    ]


def test_green_forwarder_to_tls():
    out = run_example("green_forwarder.py").stdout
    assert out.strip() == "far side (TLS, certificate verified) answered: THROUGH THE TUNNEL"


def test_green_client_of_a_twisted_server():
    lines = run_example("green_client.py").stdout.splitlines()
    assert lines == [f"VALUE value{i * i}" for i in range(5)] + ["store size: 5"]


def test_green_names_with_the_background_reactor():
    lines = run_example("green_names.py").stdout.splitlines()
    assert lines == [
        "looked up 20 names; host7.example is 10.0.0.7",
        "nowhere.invalid: DNSNameError",
    ]


def test_green_web_with_treq_and_twisted_names():
    lines = run_example("green_web.py").stdout.splitlines()
    where = "(from prices.gevent-resolver.test at 127.0.0.1)"
    assert lines == [
        f"tea costs 3 {where}",
        f"coffee costs 4 {where}",
        f"cake costs 5 {where}",
        f"tea costs 3 {where}",
    ]
