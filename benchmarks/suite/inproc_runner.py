"""The in-process scenarios: one ``servers/inproc.py`` child per subject, scenario and round."""

from __future__ import annotations

import json
import subprocess

from .lineup import BENCHMARKS, Subject
from .processes import PYTHON
from .records import BenchError, Measurement


def run_inproc(subject: Subject, scenario: str, seconds: float) -> Measurement:
    try:
        out = subprocess.run(
            [
                PYTHON,
                str(BENCHMARKS / "servers" / "inproc.py"),
                subject.kind,
                scenario,
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=60 + seconds * 10,
            check=False,
            env=subject.env(),
        )
    except subprocess.TimeoutExpired:
        raise BenchError("timed out") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise BenchError(f"exit {out.returncode}: {out.stderr.strip()[-1500:]}")
    data = json.loads(lines[-1])
    return Measurement(value=data["ops"] / data["seconds"], cpu=data["cpu"], wall=data["seconds"])
