"""
The benchmark suite runs end to end: every subject answers every request with the right bytes.

No timing is asserted (speed is measured, not asserted); this only proves that
``benchmarks/run.py --quick`` completes and that no subject failed its correctness checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: object) -> None:
    """Run a script of benchmarks/ in a child process; it must exit 0 within 90 s."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_quick_suite_completes_with_correct_bytes(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run_script("run.py", "--quick", "--rounds", "1", "--scenarios", "rr10,calllater", "--json", out)
    report = json.loads(out.read_text())
    assert report["failures"] == []
    results = report["results"]
    assert set(results) == {"rr10", "calllater"}
    for subject in ("gevent", "epoll", "asyncio", "puregevent"):
        rr = results["rr10"][subject]
        # The client compared every echoed request byte for byte; a number means it matched.
        assert rr["median"] > 0, rr
        assert rr["rounds"][0]["requests"] > 0, rr
        assert results["calllater"][subject]["median"] > 0
    assert results["rr10"]["epoll"]["ratio"] == 1.0


def test_green_connections_quick_run_completes(tmp_path: Path) -> None:
    # bench_green.py: GreenConnection (GeventReactor, in-loop) serving and asking, reading and
    # writing a stream, each in a fresh process against a plain-socket peer. One subject keeps
    # it to about ten seconds; the tests in packages/gevent-deferred cover the other situation.
    out = tmp_path / "green.json"
    run_script("bench_green.py", "--quick", "--subjects", "green", "--json", out)
    report = json.loads(out.read_text())
    assert len(report["rounds"]) == 1
    for scenario in ("rr-server", "rr-client", "stream-server", "stream-client"):
        result = report["rounds"][0][f"{scenario}/green"]
        assert result["ops"] > 0 and result["cpu"] > 0, (scenario, result)
        assert report["summary"][f"{scenario}/green"]["green_over_wall"] == 1.0
