"""Smoke tests of examples/ (the ones this file knows): each runs its one-line command and checks output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONFAULTHANDLER="1"),
        cwd=EXAMPLES.parent,
    )


def test_agent_client_docstring_command():
    assert "python examples/agent_client.py " in (EXAMPLES / "agent_client.py").read_text()
    proc = run_example("agent_client.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = "hello from twisted.web on gevent's loop\\n"
    assert proc.stdout.splitlines() == [
        "Response received: 200",
        f'Agent got 40 bytes: b"{page}"',
        f'gevent socket got: b"{page}"',
    ], proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
