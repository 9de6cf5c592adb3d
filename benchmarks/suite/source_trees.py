"""Another commit's packages, extracted with ``git archive`` for ``--compare BASE``."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path
from types import TracebackType

from .lineup import BENCHMARKS


class CommitTree:
    """The C{packages/} of a commit in a temporary directory; a context manager removes it."""

    def __init__(self, rev: str, repo: Path = BENCHMARKS.parent) -> None:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            raise ValueError(f"--compare: {rev!r} names no commit of {repo}")
        self.rev = rev
        self.commit = found.stdout.strip()
        self.short = self.commit[:9]
        archive = subprocess.run(
            ["git", "archive", "--format=tar", self.commit, "packages"],
            cwd=repo,
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise ValueError(
                f"--compare: git archive of {rev!r} failed: {archive.stderr.decode()[-500:]}"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-{self.short}-")
        self.root = Path(self._tmp.name)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(self.root, filter="data")
        if not list((self.root / "packages").glob("*/src")):
            self.close()
            raise ValueError(f"--compare: {rev!r} ({self.short}) has no packages/*/src")

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> CommitTree:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
