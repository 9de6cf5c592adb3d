"""
Build the documentation into build/docs/: the READMEs (the narrative) as HTML pages, and the API
reference of the five packages with pydoctor, linked both ways.  Any pydoctor warning fails the
build, except those listed in tools/docs_known_warnings.txt (each names a file and its warning).

    hatch run docs                # = python tools/build_docs.py; open build/docs/index.html

Links to Twisted and Python objects resolve through inventories written here from the installed
Twisted (no network): Twisted's API pages at TWISTED_API, Python's at PYTHON_DOCS.
"""

from __future__ import annotations

import builtins
import html
import importlib
import inspect
import pkgutil
import re
import shutil
import subprocess
import sys
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "docs"
API = OUT / "api"
KNOWN_WARNINGS = ROOT / "tools" / "docs_known_warnings.txt"

#: (distribution, import name), in the order the pages list them.
PACKAGES = [
    ("geventreactor", "geventreactor"),
    ("gevent-reactor", "gevent_reactor"),
    ("gevent-deferred", "gevent_deferred"),
    ("gevent-resolver", "gevent_resolver"),
    ("gevent-threadpool", "gevent_threadpool"),
]
TWISTED_API = "https://docs.twisted.org/en/stable/api/"
PYTHON_DOCS = "https://docs.python.org/3/"
#: Twisted's packages whose names our docstrings may link to (their tests are left out).
TWISTED_PACKAGES = (
    "twisted.internet",
    "twisted.python",
    "twisted.web",
    "twisted.names",
    "twisted.logger",
    "twisted.enterprise",
    "twisted.protocols",
    "twisted.application",
    "twisted.trial",
)


# -- inventories ------------------------------------------------------------------------------


def _twisted_modules() -> Iterator[object]:
    warnings.simplefilter("ignore")  # deprecated and platform modules warn when imported
    for package_name in TWISTED_PACKAGES:
        package = importlib.import_module(package_name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            name = info.name
            # Importing twisted.internet.reactor would install a reactor; tests are not API.
            if name == "twisted.internet.reactor" or ".test" in name or "._" in name:
                continue
            try:
                yield importlib.import_module(name)
            except Exception:  # a platform's or an optional dependency's module
                continue


def _twisted_entries() -> list[tuple[str, str, str]]:
    from zope.interface.interface import InterfaceClass

    entries: dict[str, tuple[str, str]] = {}
    classes_by_short_name: dict[str, list[str]] = {}
    for module in _twisted_modules():
        module_name = module.__name__  # type: ignore[attr-defined]
        entries[module_name] = ("py:module", f"{module_name}.html")
        for attr, value in vars(module).items():
            if attr.startswith("_") or getattr(value, "__module__", None) != module_name:
                continue
            full = f"{module_name}.{attr}"
            if isinstance(value, InterfaceClass) or inspect.isclass(value):
                entries[full] = ("py:class", f"{full}.html")
                classes_by_short_name.setdefault(attr, []).append(full)
                members = value.names() if isinstance(value, InterfaceClass) else vars(value)
                for member in members:
                    if not member.startswith("_"):
                        entries[f"{full}.{member}"] = ("py:attribute", f"{full}.html#{member}")
            elif inspect.isfunction(value):
                entries[full] = ("py:function", f"{module_name}.html#{attr}")
    # Docstrings often name Twisted's classes and interfaces unqualified (L{IReactorCore.stop}):
    # a short name that means one class only links to it.
    for short, fulls in classes_by_short_name.items():
        if len(fulls) != 1 or short in entries:
            continue
        full = fulls[0]
        entries[short] = entries[full]
        prefix = full + "."
        for name, entry in list(entries.items()):
            if name.startswith(prefix) and name.count(".") == full.count(".") + 1:
                entries[short + "." + name[len(prefix) :]] = entry
    return [(name, role, uri) for name, (role, uri) in sorted(entries.items())]


def _python_entries() -> list[tuple[str, str, str]]:
    entries = []
    for name, value in vars(builtins).items():
        if inspect.isclass(value) and issubclass(value, BaseException):
            for key in (name, f"builtins.{name}"):
                entries.append((key, "py:exception", f"library/exceptions.html#{name}"))
    return entries


def _write_inventory(path: Path, project: str, entries: list[tuple[str, str, str]]) -> None:
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in entries).encode()
    path.write_bytes(header + zlib.compress(body))


# -- the narrative: READMEs as pages --------------------------------------------------------


def _readmes() -> list[tuple[str, Path, str]]:
    """(page name, README path, title) for the root README and each package's."""
    pages = [("index.html", ROOT / "README.md", "geventreactor")]
    for dist, _ in PACKAGES:
        pages.append((f"{dist}.html", ROOT / "packages" / dist / "README.md", dist))
    return pages


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{max-width:60em;margin:2em auto;padding:0 1em;font-family:sans-serif;line-height:1.5}}
pre{{background:#f4f4f4;padding:.8em;overflow:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em}}nav a{{margin-right:1em}}</style></head>
<body><nav>{nav}</nav>
{body}
</body></html>
"""


def _render_readmes() -> None:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    pages = _readmes()
    nav = " ".join(f'<a href="{page}">{html.escape(title)}</a>' for page, _, title in pages)
    nav += ' <a href="api/index.html">API reference</a>'
    # READMEs link to each other by path: point those links at the pages.
    links = {str(path.relative_to(ROOT)): page for page, path, _ in pages}
    for page, path, title in pages:
        body = md.render(path.read_text(encoding="utf-8"))

        def relink(match: re.Match[str], base: Path = path.parent) -> str:
            target = (base / match.group(1)).resolve()
            try:
                key = str(target.relative_to(ROOT))
            except ValueError:
                return match.group(0)
            return f'href="{links[key]}"' if key in links else match.group(0)

        body = re.sub(r'href="([^":#]+README\.md)"', relink, body)
        (OUT / page).write_text(PAGE.format(title=html.escape(title), nav=nav, body=body))


# -- the API reference ------------------------------------------------------------------------


def _known_warnings() -> set[str]:
    lines = (
        KNOWN_WARNINGS.read_text(encoding="utf-8").splitlines() if KNOWN_WARNINGS.exists() else []
    )
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def _run_pydoctor(inventories: list[str]) -> int:
    version = (ROOT / "VERSION").read_text().strip()
    args = [sys.executable, "-m", "pydoctor", "--quiet", "--warnings-as-errors"]
    args += ["--project-name", "geventreactor", "--project-version", version]
    args += ["--project-url", "../index.html", "--project-base-dir", str(ROOT)]
    args += ["--docformat", "epytext", "--html-output", str(API)]
    args += ["--intersphinx-cache-path", str(OUT / ".intersphinx-cache")]
    for inventory in inventories:
        args += ["--intersphinx-file", inventory]
    args += [str(ROOT / "packages" / dist / "src" / name) for dist, name in PACKAGES]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).splitlines()
    # "path:line: message" (the line number moves with edits; the file and message do not).
    warnings = []
    for line in output:
        match = re.match(r"(/\S+?\.py):\d+: (.*)", line)
        if match:
            path = str(Path(match.group(1)).resolve().relative_to(ROOT))
            warnings.append(f"{path}: {match.group(2)}")
    known = _known_warnings()
    new = [w for w in warnings if w not in known]
    for w in warnings:
        print(
            ("known warning (listed in tools/docs_known_warnings.txt): " if w in known else "") + w
        )
    fixed = sorted(known - set(warnings))
    for w in fixed:
        print(f"no longer warned, remove it from tools/docs_known_warnings.txt: {w}")
    unparsed = [line for line in output if not re.match(r"(/\S+?\.py):\d+: ", line)]
    if done.returncode not in (0, 2, 3) or (done.returncode and not warnings):
        print("\n".join(unparsed))
        print(f"pydoctor failed (exit status {done.returncode})")
        return 1
    if new:
        print(f"{len(new)} documentation warning(s): fix them (warnings are errors)")
        return 1
    return 0


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    inventories = OUT / "inventories"
    inventories.mkdir()
    twisted_inv, python_inv = inventories / "twisted.inv", inventories / "python.inv"
    _write_inventory(twisted_inv, "Twisted", _twisted_entries())
    _write_inventory(python_inv, "Python", _python_entries())
    _render_readmes()
    status = _run_pydoctor([f"{twisted_inv}::{TWISTED_API}", f"{python_inv}::{PYTHON_DOCS}"])
    if status == 0:
        print(f"documentation: {OUT / 'index.html'} (API reference: {API / 'index.html'})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
