"""
psycopg2 in Twisted protocol code on a real PostgreSQL: examples/postgres_lines.py (a LineReceiver
whose lineReceived runs queries, made cooperative by psycogreen) with 50 concurrent clients, one of
them stuck in a slow query (pg_sleep), a transaction per request and nothing lost.

The server is started in a temporary directory (examples/temp_postgres.py); the test is skipped,
saying why, when none can be started here, unless GEVENTREACTOR_REQUIRE_POSTGRES=1 (CI sets it
where PostgreSQL is installed): then that is a failure, with the same reason.  The service runs in a
child process (it installs the global reactor); the clients are greenlets of this process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import gevent
import pytest
from gevent import select, socket

#: Set (to anything but "" or "0") where PostgreSQL must be there: a server that cannot start is then
#: a failure, not a skip.  .ci/run sets it when the server binaries are installed.
REQUIRE_POSTGRES = "GEVENTREACTOR_REQUIRE_POSTGRES"


def postgres_required(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(REQUIRE_POSTGRES, "") not in ("", "0")


def unavailable(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip, saying why; or fail, saying why, when PostgreSQL is required here."""
    if postgres_required(environ):
        pytest.fail(f"{REQUIRE_POSTGRES} is set, and {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import psycogreen  # noqa: F401
    import psycopg2
except ImportError as e:
    missing = str(e)
else:
    missing = ""
if missing:
    unavailable(f"psycopg2 and psycogreen are needed: {missing}")

EXAMPLES = Path(__file__).parent.parent / "examples"
CLIENTS = 50
REQUESTS = 20


def _temp_postgres_module() -> Any:
    spec = importlib.util.spec_from_file_location("temp_postgres", EXAMPLES / "temp_postgres.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    temp_postgres = _temp_postgres_module()
    server = temp_postgres.TemporaryPostgres()
    try:
        server.start()
    except temp_postgres.PostgresUnavailableError as e:
        why = str(e)
    else:
        why = ""
    if why:
        unavailable(f"cannot start a PostgreSQL server here: {why}")
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def service_port(postgres_dsn: str) -> Iterator[int]:
    service = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "postgres_lines.py"), "--serve", "--dsn", postgres_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONFAULTHANDLER="1"),
    )
    try:
        assert service.stdout is not None
        line = service.stdout.readline()
        if not line.startswith("PORT "):
            service.kill()
            _, err = service.communicate(timeout=10)
            pytest.fail(f"the service did not start: {line!r} {err}")
        yield int(line.split()[1])
    finally:
        service.terminate()
        try:
            _, err = service.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
            service.communicate()
            raise
        assert "Traceback" not in err, err


def _query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


class LineClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.reader = self.sock.makefile("rb")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def request(self, line: str) -> str:
        self.send(line)
        return self.reader.readline().decode().strip()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _one_client(port: int, name: str) -> list[str]:
    client = LineClient(port)
    try:
        replies = [client.request(f"ADD {name} {i + 1}") for i in range(REQUESTS)]
        # Bad input: a clear error, its transaction rolled back, the session still served.
        replies.append(client.request(f"ADD {name} lots"))
        replies.append(client.request(f"SUM {name}"))
        return replies
    finally:
        client.close()


def _slow_query_running(dsn: str) -> bool:
    rows = _query(
        dsn,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'",
    )
    return rows[0][0] == 1


def test_fifty_clients_one_slow_query_nothing_lost(postgres_dsn: str, service_port: int) -> None:
    slow = LineClient(service_port)
    try:
        slow.send("SLOW 60")
        with gevent.Timeout(30, AssertionError("the slow query never started")):
            while not _slow_query_running(postgres_dsn):
                gevent.sleep(0.05)

        names = [f"client{c}" for c in range(CLIENTS - 1)]
        workers = [gevent.spawn(_one_client, service_port, name) for name in names]
        gevent.joinall(workers, timeout=90, raise_error=True)
        assert all(w.ready() for w in workers), "clients did not finish within 90 s"

        # Every other client was served while the slow query still ran, and it still runs.
        readable, _, _ = select.select([slow.sock], [], [], 0)
        assert not readable, "the slow query answered before the other clients were done"
        assert _slow_query_running(postgres_dsn)

        total = REQUESTS * (REQUESTS + 1) // 2
        for name, worker in zip(names, workers, strict=True):
            replies = worker.value
            balances = [int(r.removeprefix("OK ")) for r in replies[:REQUESTS]]
            assert balances == [(i + 1) * (i + 2) // 2 for i in range(REQUESTS)], (name, replies)
            assert replies[REQUESTS].startswith("ERR "), replies[REQUESTS]
            assert "lots" not in replies[REQUESTS + 1]
            assert replies[REQUESTS + 1] == f"OK {total}", (name, replies)

        # Cancel the slow query: its transaction is rolled back and its session goes on.
        _query(
            postgres_dsn,
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()",
        )
        assert slow.reader.readline().decode().startswith("ERR QueryCanceled")
        assert slow.request("COUNT") == f"OK {(CLIENTS - 1) * REQUESTS}"
    finally:
        slow.close()

    # Nothing lost, nothing extra: one ledger row per acknowledged ADD, balances equal the ledger.
    ledger = dict(_query(postgres_dsn, "SELECT account, sum(amount) FROM ledger GROUP BY account"))
    balances = dict(_query(postgres_dsn, "SELECT account, total FROM balances"))
    assert ledger == balances
    assert sorted(ledger) == sorted(names)
    assert set(ledger.values()) == {total}


# The switch itself, without a server.


@pytest.mark.parametrize(
    ("value", "required"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)]
)
def test_require_switch_values(value: str | None, required: bool) -> None:
    environ = {} if value is None else {REQUIRE_POSTGRES: value}
    assert postgres_required(environ) is required
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match="no server here"):
        unavailable("no server here", environ)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("required", [False, True])
def test_no_server_is_a_skip_or_with_the_switch_a_failure(tmp_path: Path, required: bool) -> None:
    # The real fixture, in a child pytest, pointed at server binaries that do not exist.
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_POSTGRES}
    env["PG_BIN"] = str(tmp_path / "no-postgres-here")
    if required:
        env[REQUIRE_POSTGRES] = "1"
    node = f"{__file__}::test_fifty_clients_one_slow_query_nothing_lost"
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rsE",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            node,
        ],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        cwd=tmp_path,
    )
    out = child.stdout + child.stderr
    assert "no-postgres-here/initdb is missing" in out, out
    if required:
        assert child.returncode == 1, out
        assert "1 error" in out, out
        assert f"{REQUIRE_POSTGRES} is set, and cannot start a PostgreSQL server here" in out, out
    else:
        assert child.returncode == 0, out
        assert "1 skipped" in out, out
