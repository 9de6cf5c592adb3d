"""
Crawl the shop site (shop_site.py) with Scrapy, items through a pipeline that blocks with gevent.

    python integration-tests/scrapy_crawl/crawl.py http://127.0.0.1:PORT/ gevent out.json
    python integration-tests/scrapy_crawl/crawl.py http://127.0.0.1:PORT/ default out.json

``gevent`` sets ``TWISTED_REACTOR = "gevent_reactor.GeventReactor"``; ``default`` leaves Scrapy's
default reactor.  Writes the items, the reactor's class, the pipeline's peak concurrency and the
durations as JSON: ``crawl_seconds`` from the spider's opened to its closed signal (and its CPU
time, ``crawl_cpu_seconds``), ``run_seconds`` from the crawl's start to the reactor's stop.
Scrapy installs the global reactor, so each crawl is its own process.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import gevent
import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from scrapy.utils.defer import maybe_deferred_to_future

from gevent_deferred import in_greenlet


class ShopSpider(scrapy.Spider):
    name = "shop"

    def parse(self, response: Response) -> Any:
        for href in response.css("a.category::attr(href)").getall():
            yield response.follow(href, self.parse_category)

    def parse_category(self, response: Response) -> Any:
        for href in response.css("a.item::attr(href)").getall():
            yield response.follow(href, self.parse_item)
        next_page = response.css("a.next::attr(href)").get()
        if next_page:
            yield response.follow(next_page, self.parse_category)

    def parse_item(self, response: Response) -> Any:
        # Item pages link back to their category: Scrapy's duplicate filter drops those requests.
        yield from response.follow_all(css="a.category", callback=self.parse_category)
        title = response.css("h1.title::text").get()
        yield {
            "id": int(response.url.rstrip("/").rsplit("/", 1)[1]),
            "title": title,
            "category": title.split(" #")[0],
            "price": int(response.css("span.price::text").get()),
        }


class GeventPricePipeline:
    """
    Each item waits with gevent (as a blocking driver would) in its own greenlet.

    The blocking part runs under C{@in_greenlet}; C{process_item} awaits its Deferred through
    Scrapy's C{maybe_deferred_to_future}, which works on any reactor.
    """

    #: The pipelines made in this process (one per crawl), for the report.
    instances: list[GeventPricePipeline] = []

    def __init__(self) -> None:
        self.instances.append(self)
        self.items: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.threads: set[str] = set()

    @in_greenlet
    def _price_with_tax(self, item: dict[str, Any]) -> dict[str, Any]:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            gevent.sleep(0.02)  # blocks this greenlet only
            self.threads.add(threading.current_thread().name)
            return {**item, "price_with_tax": round(item["price"] * 1.2, 2)}
        finally:
            self.in_flight -= 1

    async def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        priced = await maybe_deferred_to_future(self._price_with_tax(item))
        self.items.append(priced)
        return priced


def main(url: str, which: str, out: str) -> int:
    settings: dict[str, Any] = {
        "ITEM_PIPELINES": {f"{__name__}.GeventPricePipeline": 100},
        "LOG_LEVEL": "WARNING",
        "ROBOTSTXT_OBEY": False,
        "TELNETCONSOLE_ENABLED": False,
        "CONCURRENT_REQUESTS": 8,
        "CLOSESPIDER_TIMEOUT": 60,
    }
    if which == "gevent":
        settings["TWISTED_REACTOR"] = "gevent_reactor.GeventReactor"
        # Scrapy's remote control extension needs the asyncio reactor.
        settings["REMOTE_CONTROL_ENABLED"] = False
    elif which != "default":
        raise SystemExit(f"reactor: expected 'gevent' or 'default', got {which!r}")
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(ShopSpider)
    # Wall-clock and CPU times: the whole run (engine set up, reactor started and stopped), and
    # the crawl proper, from the spider's opened to its closed signal (Scrapy's start_time and
    # finish_time).
    marks: dict[str, tuple[float, float]] = {}

    def mark(name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            marks[name] = (time.perf_counter(), time.process_time())

        return record

    for name in ("spider_opened", "spider_closed"):
        crawler.signals.connect(mark(name), signal=getattr(scrapy.signals, name), weak=False)
    mark("run_start")()
    process.crawl(crawler, start_urls=[url])
    process.start()
    mark("run_end")()

    from twisted.internet import reactor

    if len(GeventPricePipeline.instances) != 1:
        raise SystemExit(f"expected one pipeline, got {GeventPricePipeline.instances!r}")
    pipeline = GeventPricePipeline.instances[0]
    result = {
        "reactor": f"{type(reactor).__module__}.{type(reactor).__qualname__}",
        "run_seconds": marks["run_end"][0] - marks["run_start"][0],
        "crawl_seconds": marks["spider_closed"][0] - marks["spider_opened"][0],
        "crawl_cpu_seconds": marks["spider_closed"][1] - marks["spider_opened"][1],
        "items": sorted(pipeline.items, key=lambda item: item["id"]),
        "peak_in_flight": pipeline.peak_in_flight,
        "pipeline_threads": sorted(pipeline.threads),
        "stats": {
            k: v for k, v in crawler.stats.get_stats().items() if isinstance(v, (int, float))
        },
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
