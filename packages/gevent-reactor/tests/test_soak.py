"""The soak run's short mode (benchmarks/soak.py --short) passes: nothing lost, reordered or leaked."""

from __future__ import annotations

from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[3] / "benchmarks" / "soak.py"


@pytest.mark.timeout(90)
def test_soak_short_run_loses_nothing_and_leaks_nothing(run_python) -> None:
    # The child inherits GEVENT_LOOP, so the run uses the loop under test.
    result = run_python([str(SOAK), "--short"], timeout=80)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "lost 0 reordered 0" in result.stdout, report
    assert "result: PASS" in result.stdout, report
