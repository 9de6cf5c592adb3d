"""
A small shop on twisted.web for crawl tests: categories with paginated item lists, item pages that
link back (so a crawler must filter duplicates).  Run it as a script: it prints ``PORT <n>`` once it
listens on 127.0.0.1 and serves until its standard input closes.

    python integration-tests/scrapy_crawl/shop_site.py
"""

from __future__ import annotations

import sys
from html import escape

from twisted.internet import stdio
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Protocol
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

CATEGORIES = ("books", "games", "tools")
PAGES_PER_CATEGORY = 3
ITEMS_PER_PAGE = 4


def expected_items() -> list[dict[str, object]]:
    """Every item the site has, as a crawler should extract it."""
    return [
        {"id": item_id, "title": f"{category} #{item_id}", "category": category, "price": price}
        for category, item_id, price in _all_items()
    ]


def _all_items() -> list[tuple[str, int, int]]:
    rows = []
    for c, category in enumerate(CATEGORIES):
        for n in range(PAGES_PER_CATEGORY * ITEMS_PER_PAGE):
            item_id = c * 100 + n
            rows.append((category, item_id, 10 + (item_id * 7) % 90))
    return rows


def _page(title: str, body: str) -> bytes:
    return (
        f"<html><head><title>{escape(title)}</title></head><body>"
        f'<nav><a class="home" href="/">home</a></nav>{body}</body></html>'
    ).encode()


class Shop(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        parts = [p.decode() for p in request.postpath if p]
        if not parts:
            links = "".join(
                f'<li><a class="category" href="/category/{c}/1">{c}</a></li>' for c in CATEGORIES
            )
            return _page("shop", f"<ul>{links}</ul>")
        if len(parts) == 3 and parts[0] == "category" and parts[1] in CATEGORIES:
            return self._category(parts[1], int(parts[2]), request)
        if len(parts) == 2 and parts[0] == "item":
            return self._item(int(parts[1]), request)
        request.setResponseCode(404)
        return _page("not found", "<p>not found</p>")

    def _category(self, category: str, page: int, request: Request) -> bytes:
        rows = [r for r in _all_items() if r[0] == category]
        start = (page - 1) * ITEMS_PER_PAGE
        chosen = rows[start : start + ITEMS_PER_PAGE]
        if not chosen:
            request.setResponseCode(404)
            return _page("not found", "<p>no such page</p>")
        links = "".join(f'<li><a class="item" href="/item/{r[1]}">{r[1]}</a></li>' for r in chosen)
        nxt = ""
        if page < PAGES_PER_CATEGORY:
            nxt = f'<a class="next" href="/category/{category}/{page + 1}">next</a>'
        return _page(f"{category} page {page}", f"<ul>{links}</ul>{nxt}")

    def _item(self, item_id: int, request: Request) -> bytes:
        for category, row_id, price in _all_items():
            if row_id == item_id:
                body = (
                    f'<h1 class="title">{category} #{item_id}</h1>'
                    f'<span class="price">{price}</span>'
                    f'<a class="category" href="/category/{category}/1">{category}</a>'
                )
                return _page(f"item {item_id}", body)
        request.setResponseCode(404)
        return _page("not found", "<p>no such item</p>")


class _StopOnEOF(Protocol):
    def __init__(self, reactor: IReactorCore) -> None:
        self.reactor = reactor

    def connectionLost(self, reason: object = None) -> None:
        if self.reactor.running:
            self.reactor.stop()


def main() -> None:
    from twisted.internet import reactor  # this script's own process: Twisted's default reactor

    port = reactor.listenTCP(0, Site(Shop()), interface="127.0.0.1")
    print(f"PORT {port.getHost().port}", flush=True)
    stdio.StandardIO(_StopOnEOF(reactor))
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
