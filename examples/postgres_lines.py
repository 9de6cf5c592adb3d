"""
A line protocol whose ``lineReceived`` talks to PostgreSQL with psycopg2, blocking: psycogreen makes
psycopg2 wait with gevent, so only the session waiting for its query waits.  One transaction per
request, from a small pool of connections shared by every session.

Requests, one per line:
  ADD <account> <amount>   in one transaction: a ledger row and the account's balance; "OK <balance>"
  SUM <account>            "OK <balance>"
  SLOW <seconds>           SELECT pg_sleep(seconds); "OK slept"
  COUNT                    "OK <ledger rows>"
Bad input gets "ERR <why>", and the transaction is rolled back.

    python examples/postgres_lines.py            # a temporary PostgreSQL, 50 scripted clients, a summary
    python examples/postgres_lines.py --serve --dsn "host=... dbname=..." [--port 8008]

With ``--serve`` it prints ``PORT <n>`` once it listens, and serves until stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import gevent_reactor

reactor = gevent_reactor.install()

import gevent  # noqa: E402
import psycogreen.gevent  # noqa: E402
import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402
from gevent import socket  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from twisted.internet import protocol  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

# psycopg2 waits for the server with gevent (its wait callback), so a query blocks its greenlet.
psycogreen.gevent.patch_psycopg()

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id bigserial PRIMARY KEY,
    account text NOT NULL,
    amount numeric NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
    account text PRIMARY KEY,
    total numeric NOT NULL
);
"""


class ConnectionPool:
    """psycopg2 connections shared by greenlets.  C{connection()} blocks the current greenlet."""

    def __init__(self, dsn: str, size: int) -> None:
        self._free: Queue[psycopg2.extensions.connection] = Queue()
        for _ in range(size):
            self._free.put(psycopg2.connect(dsn))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in a transaction of its own: committed if the block returns, else rolled back."""
        conn = self._free.get()
        try:
            with conn, conn.cursor() as cursor:
                yield cursor
        finally:
            self._free.put(conn)


def create_schema(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(SCHEMA)
    finally:
        conn.close()


class LedgerSession(LineReceiver):
    delimiter = b"\n"

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def lineReceived(self, line: bytes) -> None:
        # Runs in a greenlet of GeventReactor's: the queries below block this session only.
        try:
            reply = "OK " + self.handle(line.decode().split())
        except (ValueError, InvalidOperation) as e:
            reply = f"ERR {e}"
        except psycopg2.Error as e:
            reply = f"ERR {type(e).__name__}: {str(e).strip().splitlines()[0]}"
        self.sendLine(reply.encode())

    def handle(self, words: list[str]) -> str:
        match words:
            case ["ADD", account, amount]:
                with self.pool.transaction() as cur:
                    cur.execute(
                        "INSERT INTO ledger (account, amount) VALUES (%s, %s)",
                        (account, Decimal(amount)),
                    )
                    cur.execute(
                        "INSERT INTO balances (account, total) VALUES (%s, %s) "
                        "ON CONFLICT (account) DO UPDATE SET total = balances.total + EXCLUDED.total "
                        "RETURNING total",
                        (account, Decimal(amount)),
                    )
                    return str(cur.fetchone()[0])
            case ["SUM", account]:
                with self.pool.transaction() as cur:
                    cur.execute("SELECT total FROM balances WHERE account = %s", (account,))
                    row = cur.fetchone()
                    return str(row[0] if row else 0)
            case ["SLOW", seconds]:
                with self.pool.transaction() as cur:
                    cur.execute("SELECT pg_sleep(%s)", (float(seconds),))
                    return "slept"
            case ["COUNT"]:
                with self.pool.transaction() as cur:
                    cur.execute("SELECT count(*) FROM ledger")
                    return str(cur.fetchone()[0])
        raise ValueError(
            f"request: expected ADD <account> <amount>, SUM <account>, SLOW <seconds> or COUNT, "
            f"got {' '.join(words)!r}"
        )


class LedgerFactory(protocol.Factory):
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def buildProtocol(self, addr: Any) -> LedgerSession:
        return LedgerSession(self.pool)


def serve(dsn: str, port: int, pool_size: int) -> Any:
    create_schema(dsn)
    return reactor.listenTCP(
        port, LedgerFactory(ConnectionPool(dsn, pool_size)), interface="127.0.0.1"
    )


def _client(port: int, name: str, requests: int, latencies: list[float]) -> str:
    sock = socket.create_connection(("127.0.0.1", port))
    reader = sock.makefile("rb")
    try:
        balance = ""
        for i in range(requests):
            started = time.perf_counter()
            sock.sendall(f"ADD {name} {i + 1}\n".encode())
            balance = reader.readline().decode().strip()
            latencies.append(time.perf_counter() - started)
        return balance
    finally:
        reader.close()
        sock.close()


def scripted(port: int, clients: int, requests: int) -> None:
    latencies: list[float] = []
    slow_sock = socket.create_connection(("127.0.0.1", port))
    slow_sock.sendall(b"SLOW 2\n")
    started = time.perf_counter()
    workers = [
        gevent.spawn(_client, port, f"client{c}", requests, latencies) for c in range(clients - 1)
    ]
    gevent.joinall(workers, raise_error=True)
    fast_done = time.perf_counter() - started
    slow_reply = slow_sock.makefile("rb").readline().decode().strip()
    slow_done = time.perf_counter() - started
    slow_sock.close()
    expected = f"OK {requests * (requests + 1) // 2}"
    balances_ok = all(g.value == expected for g in workers)
    print(f"{clients - 1} clients x {requests} transactions in {fast_done:.2f} s", end=" ")
    print(f"({len(latencies) / fast_done:.0f} requests/s), slowest {max(latencies) * 1000:.0f} ms")
    print(
        f"slow query ({slow_reply}) answered after {slow_done:.2f} s; the others did not wait for it"
    )
    print(f"every balance is {expected}: {balances_ok}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="serve until stopped")
    parser.add_argument("--dsn", help="libpq connection string (default: a temporary server)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pool", type=int, default=10, help="database connections")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per scripted client")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        dsn = args.dsn
        if dsn is None:
            from temp_postgres import TemporaryPostgres

            dsn = stack.enter_context(TemporaryPostgres()).dsn
        port = serve(dsn, args.port, args.pool)
        if args.serve:
            print(f"PORT {port.getHost().port}", flush=True)
            reactor.run()
            return 0

        def session() -> None:
            try:
                scripted(port.getHost().port, args.clients, args.requests)
            finally:
                reactor.stop()

        gevent.spawn(session)
        reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
