"""
Set the version of every distribution: the VERSION file, and the pins between the distributions.

    python tools/set_version.py 0.3.0
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIBLINGS = ("gevent-deferred", "gevent-reactor", "gevent-resolver", "gevent-threadpool")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", argv[0]):
        print(f"usage: python tools/set_version.py X.Y.Z (got {argv!r})", file=sys.stderr)
        return 2
    version = argv[0]
    (ROOT / "VERSION").write_text(version + "\n", encoding="utf-8")
    pin = re.compile(r'"(' + "|".join(SIBLINGS) + r')==[^"]*"')
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        text = pyproject.read_text(encoding="utf-8")
        pyproject.write_text(pin.sub(rf'"\1=={version}"', text), encoding="utf-8")
    print(f"version {version}: VERSION and the pins in packages/*/pyproject.toml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
