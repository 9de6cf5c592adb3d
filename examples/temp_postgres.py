"""
A throwaway PostgreSQL server in a temporary directory, for examples, tests and benchmarks.

    with TemporaryPostgres() as pg:
        conn = psycopg2.connect(pg.dsn)

It uses the server binaries of the system's PostgreSQL (Debian: the ``postgresql`` package, under
/usr/lib/postgresql/<version>/bin; or ``PG_BIN``), listens on 127.0.0.1 on a free port with trust
authentication, and is removed on exit.  PostgreSQL refuses to run as root, so as root the server
runs as an unprivileged user: ``PGTEST_USER`` or ``postgres`` (the Debian package creates it).
Anything that stops it from starting raises L{PostgresUnavailableError} saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["PostgresUnavailableError", "TemporaryPostgres"]

START_TIMEOUT = 60.0


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def _server_bin_dir() -> Path:
    if os.environ.get("PG_BIN"):
        bindir = Path(os.environ["PG_BIN"])
    else:
        found = shutil.which("initdb")
        if found:
            bindir = Path(found).parent
        else:
            candidates = sorted(
                glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                key=lambda p: int(Path(p).parent.parent.name),
            )
            if not candidates:
                raise PostgresUnavailableError(
                    "no PostgreSQL server binaries (initdb) found on PATH, in PG_BIN or under "
                    "/usr/lib/postgresql/*/bin: install them, e.g. `apt-get install -y postgresql`"
                )
            bindir = Path(candidates[-1]).parent
    for tool in ("initdb", "postgres"):
        if not os.access(bindir / tool, os.X_OK):
            raise PostgresUnavailableError(f"{bindir / tool} is missing or not executable")
    return bindir


def _server_user() -> pwd.struct_passwd | None:
    # None: run as ourselves.  PostgreSQL refuses root, so root needs someone else.
    if os.geteuid() != 0:
        return None
    name = os.environ.get("PGTEST_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailableError(
            f"running as root, and there is no unprivileged user {name!r} to run PostgreSQL as "
            "(PostgreSQL refuses root): install the postgresql package (it creates 'postgres'), "
            "or create one (`useradd --system postgres`) or set PGTEST_USER"
        ) from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TemporaryPostgres:
    """
    A PostgreSQL server of our own, started by L{start} (or C{with}) and removed by L{stop}.

    C{dsn} is a libpq connection string for its database C{test} (user C{test}, no password).
    C{settings} are extra server settings (C{-c name=value}).  L{start} blocks until the server
    accepts connections (at most C{START_TIMEOUT} seconds).
    """

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = {
            # A throwaway server: durability of its disk is not what anything here measures.
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self.port = 0
        self.dsn = ""
        self._dir: Path | None = None
        self._server: subprocess.Popen[bytes] | None = None

    def _run_as(self) -> dict[str, Any]:
        user = _server_user()
        if user is None:
            return {}
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def start(self) -> TemporaryPostgres:
        bindir = _server_bin_dir()
        as_user = self._run_as()
        self._dir = Path(tempfile.mkdtemp(prefix="temp-postgres-"))
        data = self._dir / "data"
        if as_user:
            os.chown(self._dir, as_user["user"], as_user["group"])
        log = self._dir / "server.log"
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "test", "--auth=trust", "-E", "UTF8"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            cwd=self._dir,
            **as_user,
        )
        if initdb.returncode != 0:
            self.stop()
            raise PostgresUnavailableError(f"initdb failed: {initdb.stderr.strip()[-500:]}")
        self.port = _free_port()
        args = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port)]
        args += ["-h", "127.0.0.1", "-k", str(self._dir)]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        with open(log, "wb") as log_file:
            if as_user:
                os.chown(log, as_user["user"], as_user["group"])
            self._server = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, cwd=self._dir, **as_user
            )
        self.dsn = f"host=127.0.0.1 port={self.port} user=test dbname=postgres"
        self._wait_ready(log)
        self._create_database()
        self.dsn = f"host=127.0.0.1 port={self.port} user=test dbname=test"
        return self

    def _wait_ready(self, log: Path) -> None:
        import psycopg2

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._server is not None
            if self._server.poll() is not None:
                text = log.read_text(errors="replace").strip()[-800:]
                self.stop()
                raise PostgresUnavailableError(f"the PostgreSQL server exited at start: {text}")
            try:
                psycopg2.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg2.OperationalError as e:
                if time.monotonic() > deadline:
                    self.stop()
                    raise PostgresUnavailableError(
                        f"the PostgreSQL server did not accept connections within "
                        f"{START_TIMEOUT:.0f} s: {e}"
                    ) from None
            time.sleep(0.1)

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE test")
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory.  Idempotent."""
        server, self._server = self._server, None
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
