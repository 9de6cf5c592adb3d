"""
The subjects of one run: which server each one starts, and from which source tree it imports.

A subject's C{kind} is a name of C{servers/subjects.py} (the reactor its server installs); its
C{src_path} goes first on the server's C{sys.path} (through C{$BENCH_SRC_PATH}), so the same kind
can be measured on this checkout and on another commit's packages in one run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

BENCHMARKS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCHMARKS / "servers"))

from subjects import DESCRIPTIONS, PEERS, UNSUPPORTED  # noqa: E402


def package_sources(root: Path) -> tuple[str, ...]:
    """The C{packages/*/src} directories of a checkout (or of an extracted commit)."""
    return tuple(str(p) for p in sorted((root / "packages").glob("*/src")) if p.is_dir())


WORKING_TREE = package_sources(BENCHMARKS.parent)


class Subject(NamedTuple):
    name: str
    kind: str
    description: str
    src_path: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        """The environment of this subject's server processes."""
        env = dict(os.environ)
        if self.src_path:
            env["BENCH_SRC_PATH"] = os.pathsep.join(self.src_path)
        else:
            env.pop("BENCH_SRC_PATH", None)
        return env

    def runs(self, scenario: str) -> bool:
        """Whether this subject's server has the scenario (the hand-written loop has no HTTP)."""
        return scenario not in UNSUPPORTED.get(self.kind, ())

    @property
    def is_peer(self) -> bool:
        """One of Twisted's own reactors: the peers GeventReactor is ranked against."""
        return self.kind in PEERS


def plain(kind: str) -> Subject:
    """A subject of C{servers/subjects.py}; GeventReactor imports this checkout's packages."""
    if kind == "gevent":
        return Subject(kind, kind, DESCRIPTIONS[kind], WORKING_TREE)
    if kind == "gevent_alt":
        # A copy of a package (e.g. with a proposed patch) shadows this checkout's.
        alt = os.environ["BENCH_ALT_PATH"]
        return Subject(kind, "gevent", DESCRIPTIONS[kind], (alt, *WORKING_TREE))
    return Subject(kind, kind, DESCRIPTIONS[kind])


def at_commit(label: str, root: Path, commit: str) -> Subject:
    """GeventReactor imported from the packages of C{commit}, extracted under C{root}."""
    return Subject(
        label, "gevent", f"GeventReactor at {commit} (--compare BASE)", package_sources(root)
    )
