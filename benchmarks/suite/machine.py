"""What a run measured on: the CPU, the versions, and the commit (with its uncommitted files)."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

from .lineup import BENCHMARKS


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=BENCHMARKS.parent, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("twisted", "gevent", "greenlet", "uvloop"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    return {
        # What was measured: the commit, and the package files that differed from it.
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": git("status", "--porcelain", "--", "packages").splitlines(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gevent_loop": os.environ.get("GEVENT_LOOP", "default (libev-cext)"),
        **versions,
    }
