"""
Hatchling hooks shared by every distribution in packages/ (each has this file as a link named
hatch_build.py, next to links to the repository's LICENSE and VERSION).

- Metadata: the version is the one in VERSION, and every dependency on a sibling distribution must
  be pinned to that same version (C{name==VERSION}; the five distributions are released together):
  a build with another pin fails.  C{python tools/set_version.py X.Y.Z} changes VERSION and the pins.
  (Dependencies stay static in each pyproject.toml: hatch workspaces read them without a build.)
- Sdist: the links are stored as the files they point to, so an sdist builds on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

#: The distributions of this repository.
SIBLINGS = frozenset(
    {"gevent-deferred", "gevent-reactor", "gevent-resolver", "gevent-threadpool", "geventreactor"}
)

#: Files each package links to from the repository root; an sdist must carry them as files.
SHARED_FILES = ("LICENSE", "VERSION", "hatch_build.py")


def read_version(root: str) -> str:
    return (Path(root) / "VERSION").read_text(encoding="utf-8").strip()


class SharedVersionHook(MetadataHookInterface):
    """Sets C{version} from VERSION and checks that sibling dependencies are pinned to it."""

    def update(self, metadata: dict[str, Any]) -> None:
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        version = read_version(self.root)
        metadata["version"] = version
        for text in metadata.get("dependencies", []):
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) not in SIBLINGS:
                continue
            if str(requirement.specifier) != f"=={version}":
                raise ValueError(
                    f"{metadata['name']}: dependency {text!r} must be pinned to this release, "
                    f"'{requirement.name}=={version}' (VERSION says {version}); "
                    f"run: python tools/set_version.py {version}"
                )


class SdistFilesHook(BuildHookInterface):
    """Stores the shared files (links in the repository) in the sdist as regular files."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "sdist":
            return
        force_include: dict[str, str] = build_data["force_include"]
        for source in list(force_include):
            if os.path.islink(source):
                force_include[os.path.realpath(source)] = force_include.pop(source)
        for name in SHARED_FILES:
            path = os.path.join(self.root, name)
            if os.path.exists(path):
                force_include[os.path.realpath(path)] = name
