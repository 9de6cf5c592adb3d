"""
The reference for benchmarks/bench_postgres.py: examples/postgres_lines.py's ADD and SUM requests,
the way Twisted does it without gevent: Twisted's epoll reactor and ``adbapi.ConnectionPool``
(psycopg2 in real threads, one transaction per ``runInteraction``).

    python benchmarks/servers/pg_lines_adbapi.py --dsn "host=... dbname=..." [--pool 10]

Prints ``PORT <n>`` once it listens, and serves until stopped.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from twisted.internet import epollreactor

epollreactor.install()

from twisted.enterprise import adbapi  # noqa: E402
from twisted.internet import protocol, reactor  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (id bigserial PRIMARY KEY, account text NOT NULL, amount numeric NOT NULL);
CREATE TABLE IF NOT EXISTS balances (account text PRIMARY KEY, total numeric NOT NULL);
"""


def _add(cursor: Any, account: str, amount: Decimal) -> str:
    cursor.execute("INSERT INTO ledger (account, amount) VALUES (%s, %s)", (account, amount))
    cursor.execute(
        "INSERT INTO balances (account, total) VALUES (%s, %s) "
        "ON CONFLICT (account) DO UPDATE SET total = balances.total + EXCLUDED.total "
        "RETURNING total",
        (account, amount),
    )
    return str(cursor.fetchone()[0])


def _sum(cursor: Any, account: str) -> str:
    cursor.execute("SELECT total FROM balances WHERE account = %s", (account,))
    row = cursor.fetchone()
    return str(row[0] if row else 0)


class LedgerSession(LineReceiver):
    delimiter = b"\n"

    def __init__(self, pool: adbapi.ConnectionPool) -> None:
        self.pool = pool

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        try:
            match words:
                case ["ADD", account, amount]:
                    d = self.pool.runInteraction(_add, account, Decimal(amount))
                case ["SUM", account]:
                    d = self.pool.runInteraction(_sum, account)
                case _:
                    raise ValueError(f"request: expected ADD or SUM, got {line!r}")
        except (ValueError, InvalidOperation) as e:
            self.sendLine(f"ERR {e}".encode())
            return
        d.addCallbacks(
            lambda result: self.sendLine(f"OK {result}".encode()),
            lambda failure: self.sendLine(f"ERR {failure.getErrorMessage()}".encode()),
        )


class LedgerFactory(protocol.Factory):
    def __init__(self, pool: adbapi.ConnectionPool) -> None:
        self.pool = pool

    def buildProtocol(self, addr: Any) -> LedgerSession:
        return LedgerSession(self.pool)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pool", type=int, default=10)
    args = parser.parse_args(argv)
    import psycopg2

    conn = psycopg2.connect(args.dsn)
    with conn, conn.cursor() as cursor:
        cursor.execute(SCHEMA)
    conn.close()
    pool = adbapi.ConnectionPool("psycopg2", args.dsn, cp_min=args.pool, cp_max=args.pool)
    port = reactor.listenTCP(args.port, LedgerFactory(pool), interface="127.0.0.1")
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
