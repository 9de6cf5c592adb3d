"""
Build every distribution's sdist and wheel, then a wheel from each sdist alone (as pip does from
PyPI), and check what they carry: the license text, the one
version, the pins between them, and the files an sdist needs to build.

    python tools/check_dists.py [--out DIR]

Needs hatch (for ``hatch build``) and pip; prints each archive's license and version lines.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIBLINGS = {"gevent-deferred", "gevent-reactor", "gevent-resolver", "gevent-threadpool"}


def _check_wheel(wheel: Path, license_text: bytes, version: str) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        if not licenses or archive.read(licenses[0]) != license_text:
            problems.append(
                f"{wheel.name}: no dist-info/licenses/LICENSE with the root LICENSE's text"
            )
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    if metadata["Version"] != version:
        problems.append(f"{wheel.name}: version {metadata['Version']}, VERSION says {version}")
    if metadata["License-Expression"] != "MIT":
        problems.append(f"{wheel.name}: License-Expression {metadata['License-Expression']!r}")
    for requirement in metadata.get_all("Requires-Dist") or []:
        name = requirement.split("=")[0].split(">")[0].split("<")[0].strip()
        if name in SIBLINGS and requirement.replace(" ", "") != f"{name}=={version}":
            problems.append(f"{wheel.name}: {requirement!r} is not pinned to {version}")
    print(f"  {wheel.name}: {', '.join(licenses)}; Version {metadata['Version']}")
    return problems


def _check_sdist(sdist: Path, license_text: bytes) -> list[str]:
    problems = []
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if "/" in m.name}
        for name in ("LICENSE", "VERSION", "hatch_build.py", "pyproject.toml", "README.md"):
            member = members.get(name)
            if member is None or not member.isfile():
                problems.append(f"{sdist.name}: {name} missing or not a regular file")
        if "LICENSE" in members and members["LICENSE"].isfile():
            extracted = archive.extractfile(members["LICENSE"])
            if extracted is None or extracted.read() != license_text:
                problems.append(f"{sdist.name}: LICENSE differs from the root LICENSE")
    print(f"  {sdist.name}: LICENSE, VERSION, hatch_build.py")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", help="where to leave the archives (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    license_text = (ROOT / "LICENSE").read_bytes()
    version = (ROOT / "VERSION").read_text().strip()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        built, rebuilt = out / "dist", out / "from-sdist"
        for package in sorted((ROOT / "packages").iterdir()):
            if (package / "pyproject.toml").exists():
                subprocess.run(
                    ["hatch", "build", str(built)], cwd=package, check=True, capture_output=True
                )
        sdists, wheels = sorted(built.glob("*.tar.gz")), sorted(built.glob("*.whl"))
        # Each sdist on its own, as an installer builds it (with this Python's hatchling, which
        # hatch brings: an isolated build environment per sdist would only add its download).
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(rebuilt),
                *map(str, sdists),
            ],
            check=True,
        )
        problems: list[str] = []
        print(f"version {version}; sdists and wheels built from the repository:")
        for sdist in sdists:
            problems += _check_sdist(sdist, license_text)
        for wheel in wheels:
            problems += _check_wheel(wheel, license_text, version)
        print("wheels built from each sdist alone:")
        for wheel in sorted(rebuilt.glob("*.whl")):
            problems += _check_wheel(wheel, license_text, version)
        expected = len(list((ROOT / "packages").glob("*/pyproject.toml")))
        if not (len(sdists) == len(wheels) == len(list(rebuilt.glob("*.whl"))) == expected):
            problems.append(f"expected {expected} sdists and wheels, built {sdists + wheels}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"distributions: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
