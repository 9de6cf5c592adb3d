"""
Scrapy with ``TWISTED_REACTOR = "gevent_reactor.GeventReactor"``: a real crawl of a local
twisted.web site (links followed, duplicates filtered, items through a pipeline that blocks with
gevent under ``@in_greenlet``), compared with the same crawl on Scrapy's default reactor.

Scrapy installs the global reactor, so the site and each crawl run in child processes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("scrapy", reason="Scrapy is not installed (hatch's test environment has it)")

HERE = Path(__file__).parent / "scrapy_crawl"
CRAWL_TIMEOUT = 120


def _load_site_module() -> Any:
    spec = importlib.util.spec_from_file_location("shop_site", HERE / "shop_site.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shop_url() -> Iterator[str]:
    site = subprocess.Popen(
        [sys.executable, str(HERE / "shop_site.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert site.stdout is not None
        line = site.stdout.readline()
        assert line.startswith("PORT "), f"the site did not start: {line!r}"
        url = f"http://127.0.0.1:{int(line.split()[1])}/"
        # One request first, so that the first crawl does not pay for the site's first request.
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b'class="category"' in response.read()
        yield url
    finally:
        assert site.stdin is not None
        site.stdin.close()  # the site stops when its standard input closes
        try:
            site.wait(timeout=10)
        except subprocess.TimeoutExpired:
            site.kill()
            site.wait()
            raise


def _crawl(url: str, which: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / f"{which}.json"
    done = subprocess.run(
        [sys.executable, str(HERE / "crawl.py"), url, which, str(out)],
        capture_output=True,
        text=True,
        timeout=CRAWL_TIMEOUT,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert " ERROR: " not in done.stderr, done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    result["stderr"] = done.stderr
    return result


def test_scrapy_crawl_on_gevent_reactor_matches_the_default_reactor(
    shop_url: str, tmp_path: Path
) -> None:
    expected = [
        {**item, "price_with_tax": round(item["price"] * 1.2, 2)}
        for item in _load_site_module().expected_items()
    ]
    on_gevent = _crawl(shop_url, "gevent", tmp_path)
    on_default = _crawl(shop_url, "default", tmp_path)
    # Printed for the record (pytest -s or -rA shows it); one run each on a shared machine varies
    # by tens of percent either way, so nothing is asserted about it.  packages/geventreactor/README.md
    # has medians of many runs.
    for which, result in (("gevent", on_gevent), ("default", on_default)):
        print(
            f"scrapy crawl on the {which} reactor: {result['crawl_seconds']:.3f} s from the "
            f"spider's open to its close ({result['crawl_cpu_seconds']:.3f} s CPU), "
            f"{result['run_seconds']:.3f} s from the crawl's start to the reactor's stop"
        )

    assert on_gevent["reactor"] == "gevent_reactor._reactor.GeventReactor"
    assert on_default["reactor"] != on_gevent["reactor"]
    # Every item of every category page, each once, through the pipeline, on both reactors.
    assert on_gevent["items"] == expected
    assert on_default["items"] == expected
    # The same pages were fetched; item pages' links back to categories were filtered as duplicates.
    for stat in ("downloader/request_count", "item_scraped_count", "dupefilter/filtered"):
        assert on_gevent["stats"][stat] == on_default["stats"][stat], stat
    assert on_gevent["stats"]["dupefilter/filtered"] > 0
    # On GeventReactor the pipeline's greenlets run in the reactor's own thread, and one blocked
    # item does not hold the others: several were waiting at once.
    assert on_gevent["pipeline_threads"] == ["MainThread"]
    assert on_gevent["peak_in_flight"] >= 2
    assert "GeventReactor" not in on_gevent["stderr"], on_gevent["stderr"]
