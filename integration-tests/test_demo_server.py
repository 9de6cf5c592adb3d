"""
The demo server's scripted session (`hatch run demo`): two sessions, one blocked in lineReceived.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parent.parent / "examples" / "demo_server.py"


def test_scripted_session_passes() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--scripted", "--delay", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The script itself asserts that B was answered within 1 s while A slept, that the counter
    # greenlet wrote to B, and that quit closed after about 2 s.
    assert "B < echo: hi there" in done.stdout
    assert "B < count 3" in done.stdout
    assert "A < awake" in done.stdout
    assert done.stdout.rstrip().endswith("scripted session: OK")
