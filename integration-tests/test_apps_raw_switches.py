"""GeventReactor survives pytest-twisted's raw greenlet switches (see the script's docstring)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "pytest_twisted_suite" / "raw_switch_stress.py"


def test_raw_switches_strand_nothing() -> None:
    # A child process: the script installs the global reactor.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "200"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "ctx 200 runner 200 runner2 200 of 200",
        "stopped True True",
    ], proc.stdout + proc.stderr
