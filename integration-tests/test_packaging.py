"""One version for the five distributions, pinned between them, and the license they carry."""

from __future__ import annotations

import importlib
import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = {
    "gevent-deferred": "gevent_deferred",
    "gevent-reactor": "gevent_reactor",
    "gevent-resolver": "gevent_resolver",
    "gevent-threadpool": "gevent_threadpool",
    "geventreactor": "geventreactor",
}
VERSION = (ROOT / "VERSION").read_text().strip()


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_version_is_the_one_in_VERSION(dist: str) -> None:
    assert metadata.version(dist) == VERSION
    assert importlib.import_module(DISTRIBUTIONS[dist]).__version__ == VERSION


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_siblings_are_pinned_to_the_same_version(dist: str) -> None:
    siblings = []
    for requirement in metadata.requires(dist) or []:
        name = re.split(r"[=<>!~; \[]", requirement, maxsplit=1)[0]
        if name in DISTRIBUTIONS:
            assert requirement.replace(" ", "") == f"{name}=={VERSION}", (dist, requirement)
            siblings.append(name)
    expected = {
        "gevent-deferred": [],
        "gevent-resolver": ["gevent-deferred"],
        "gevent-threadpool": ["gevent-deferred"],
        "gevent-reactor": ["gevent-deferred", "gevent-resolver"],
        "geventreactor": [
            "gevent-deferred",
            "gevent-reactor",
            "gevent-resolver",
            "gevent-threadpool",
        ],
    }[dist]
    assert sorted(siblings) == expected


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_license_is_mit_with_its_text(dist: str) -> None:
    meta = metadata.metadata(dist)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert "Framework :: Twisted" in meta.get_all("Classifier")
    assert meta.get_all("Project-URL")
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "geventreactor developers" in text
    # Each package's LICENSE (a link in the repository) is the root one.
    assert (ROOT / "packages" / dist / "LICENSE").read_text() == text
