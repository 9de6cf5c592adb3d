"""twisted.enterprise.adbapi with sqlite3 on GeventReactor (its real-thread pool)."""

from __future__ import annotations

import pytest_twisted
from helpers import wait
from twisted.enterprise import adbapi

from geventreactor.pytest_plugin import greenlet_test


def make_pool(tmp_path):
    # check_same_thread=False: adbapi hands each connection to one of its pool threads.
    return adbapi.ConnectionPool(
        "sqlite3", str(tmp_path / "app.db"), check_same_thread=False, cp_min=1, cp_max=3
    )


def create_and_fill(txn, rows):
    txn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB)")
    txn.executemany("INSERT INTO notes (body) VALUES (?)", [(r,) for r in rows])
    txn.execute("SELECT count(*) FROM notes")
    return txn.fetchone()[0]


@greenlet_test
def test_adbapi_sqlite_from_a_greenlet(tmp_path):
    pool = make_pool(tmp_path)
    try:
        rows = [b"note %d \x00\xff" % i for i in range(50)]
        assert wait(pool.runInteraction(create_and_fill, rows)) == 50
        got = wait(pool.runQuery("SELECT body FROM notes ORDER BY id"))
        assert [r[0] for r in got] == rows
        wait(pool.runOperation("DELETE FROM notes WHERE id > 10"))
        assert wait(pool.runQuery("SELECT count(*) FROM notes")) == [(10,)]
    finally:
        pool.close()


@pytest_twisted.ensureDeferred
async def test_adbapi_sqlite_async(tmp_path):
    pool = make_pool(tmp_path)
    try:
        assert await pool.runInteraction(create_and_fill, [b"a", b"b"]) == 2
        assert await pool.runQuery("SELECT body FROM notes ORDER BY id") == [(b"a",), (b"b",)]
    finally:
        pool.close()
