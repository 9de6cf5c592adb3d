"""
PostgreSQL from Twisted protocol code: requests/s of examples/postgres_lines.py (GeventReactor,
psycopg2 made cooperative by psycogreen, queries straight in ``lineReceived``) against the same
service on Twisted's epoll reactor with ``adbapi`` (psycopg2 in a pool of real threads,
benchmarks/servers/pg_lines_adbapi.py).

Both use 10 database connections and one transaction per request (two statements: a ledger row
and the account's balance).  A temporary PostgreSQL server (examples/temp_postgres.py) serves both;
the tables are emptied before each round.  The load is --clients concurrent connections (greenlets
of this process), each sending ``ADD`` requests one after another during a --seconds window after a
warm-up; each subject's server is a fresh child process per round, rounds interleaved.  Reported:
requests/s, requests per server CPU-second (the server process only, not PostgreSQL), medians and
the median of the per-round ratios to adbapi on epoll.  Writes benchmarks/results/postgres.json.

    python benchmarks/bench_postgres.py [--rounds 5] [--seconds 3] [--clients 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from gevent import socket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from temp_postgres import TemporaryPostgres  # noqa: E402

SUBJECTS = {
    "gevent+psycogreen": [str(ROOT / "examples" / "postgres_lines.py"), "--serve"],
    "epoll+adbapi": [str(ROOT / "benchmarks" / "servers" / "pg_lines_adbapi.py")],
}
REFERENCE = "epoll+adbapi"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client(port: int, name: str, stop_at: list[float], counts: list[int]) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    reader = sock.makefile("rb")
    try:
        while time.perf_counter() < stop_at[0]:
            sock.sendall(f"ADD {name} 1\n".encode())
            reply = reader.readline()
            if not reply.startswith(b"OK "):
                raise RuntimeError(f"{name}: {reply!r}")
            counts[0] += 1
    finally:
        reader.close()
        sock.close()


def _round(subject: str, dsn: str, clients: int, seconds: float) -> dict[str, float]:
    import psycopg2

    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS ledger, balances")
    conn.close()
    server = subprocess.Popen(
        [sys.executable, *SUBJECTS[subject], "--dsn", dsn, "--pool", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{subject} did not start: {line!r}")
        port = int(line.split()[1])
        warmup = 0.5
        stop_at = [time.perf_counter() + warmup + seconds + 60]
        counts = [0]
        workers = [gevent.spawn(_client, port, f"c{i}", stop_at, counts) for i in range(clients)]
        gevent.sleep(warmup)
        start_count, start_cpu, started = counts[0], _cpu_seconds(server.pid), time.perf_counter()
        gevent.sleep(seconds)
        done, cpu, elapsed = counts[0], _cpu_seconds(server.pid), time.perf_counter() - started
        stop_at[0] = 0
        gevent.joinall(workers, timeout=30, raise_error=True)
        requests = done - start_count
        return {
            "rps": requests / elapsed,
            "per_cpu": requests / max(cpu - start_cpu, 1e-9),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "postgres.json"))
    args = parser.parse_args(argv)

    results: dict[str, list[dict[str, float]]] = {s: [] for s in SUBJECTS}
    with TemporaryPostgres() as pg:
        for r in range(args.rounds):
            for subject in SUBJECTS:
                results[subject].append(_round(subject, pg.dsn, args.clients, args.seconds))
            print(
                f"round {r + 1}: "
                + ", ".join(f"{s} {results[s][-1]['rps']:.0f} req/s" for s in SUBJECTS),
                flush=True,
            )

    summary: dict[str, Any] = {}
    print(f"\n{args.clients} clients, {args.rounds} rounds of {args.seconds:g} s")
    print(
        f"{'subject':<20} {'req/s':>8} {'req/cpu-s':>10} {'x ' + REFERENCE:>16} {'x per cpu':>10}"
    )
    for subject, rounds in results.items():
        ratios = [a["rps"] / b["rps"] for a, b in zip(rounds, results[REFERENCE], strict=True)]
        cpu_ratios = [
            a["per_cpu"] / b["per_cpu"] for a, b in zip(rounds, results[REFERENCE], strict=True)
        ]
        summary[subject] = {
            "rounds": rounds,
            "median_rps": statistics.median(x["rps"] for x in rounds),
            "median_per_cpu": statistics.median(x["per_cpu"] for x in rounds),
            "median_ratio": statistics.median(ratios),
            "median_cpu_ratio": statistics.median(cpu_ratios),
        }
        s = summary[subject]
        print(
            f"{subject:<20} {s['median_rps']:>8.0f} {s['median_per_cpu']:>10.0f} "
            f"{s['median_ratio']:>16.2f} {s['median_cpu_ratio']:>10.2f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"clients": args.clients, "seconds": args.seconds, **summary}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
