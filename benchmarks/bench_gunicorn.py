"""Requests/s past one core: geventreactor's gunicorn workers against gunicorn's gevent worker
and one twisted.web process on Twisted's epoll reactor.

    hatch run bench-gunicorn                    # 3 rounds
    python benchmarks/bench_gunicorn.py --quick  # 1 round, short windows

Scenarios (HTTP/1.1 keep-alive, 50 connections, a 12-byte body with Content-Length):
  web   a twisted.web resource: epoll (one process) / TwistedWorker with 1 and 2 workers
  wsgi  one WSGI callable: epoll (one process, WSGIResource on threads) / TwistedWorker on threads
        and on greenlets / gunicorn's gevent worker / GeventReactorWorker, with 1 and 2 workers

The load client is wrk (Debian: `apt-get install wrk`), one thread: cheap per request, but on a
2-core machine it still takes a share of the cores the workers need, so 2 workers cannot reach
twice 1 worker; the table shows the client's CPU use beside the servers' and the requests per
server CPU-second, which that competition does not inflate. Rounds are interleaved: each round
runs every subject once (in a rotated order); ratios to epoll are taken within a round and the
median over rounds is reported.

This module is also the application the servers load (`bench_gunicorn:resource`,
`bench_gunicorn:wsgi`); importing it installs no reactor.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from twisted.web.resource import Resource

HERE = Path(__file__).resolve().parent
BODY = b"hello world\n"
TICKS = os.sysconf("SC_CLK_TCK")


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"content-length", b"%d" % len(BODY))
        return BODY


resource = Hello()


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


if os.environ.get("BENCH_GUNICORN_GREEN"):
    # Imported in a TwistedWorker (after its reactor is installed): WSGI on greenlets.
    from twisted.internet import reactor as _reactor

    from gevent_threadpool import use_gevent_threadpool

    use_gevent_threadpool(_reactor)


# -- subjects ----------------------------------------------------------------------------------


def gunicorn_command(worker: str, workers: int, app: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", str(workers),
        "-b", f"127.0.0.1:{port}", "-k", worker, "--pythonpath", str(HERE),
        "--log-level", "warning", "--keep-alive", "30", app,
    ]  # fmt: skip


def epoll_command(kind: str, port: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--serve-epoll", kind, str(port)]


TW = "geventreactor.gunicorn.TwistedWorker"
GR = "geventreactor.gunicorn.GeventReactorWorker"

# scenario -> [(subject, command builder(port), extra env)]
SUBJECTS = {
    "web": [
        ("epoll", lambda p: epoll_command("web", p), {}),
        ("twisted x1", lambda p: gunicorn_command(TW, 1, "bench_gunicorn:resource", p), {}),
        ("twisted x2", lambda p: gunicorn_command(TW, 2, "bench_gunicorn:resource", p), {}),
    ],
    "wsgi": [
        ("epoll (threads)", lambda p: epoll_command("wsgi", p), {}),
        ("twisted threads x1", lambda p: gunicorn_command(TW, 1, "bench_gunicorn:wsgi", p), {}),
        ("twisted threads x2", lambda p: gunicorn_command(TW, 2, "bench_gunicorn:wsgi", p), {}),
        (
            "twisted greenlets x1",
            lambda p: gunicorn_command(TW, 1, "bench_gunicorn:wsgi", p),
            {"BENCH_GUNICORN_GREEN": "1"},
        ),
        (
            "twisted greenlets x2",
            lambda p: gunicorn_command(TW, 2, "bench_gunicorn:wsgi", p),
            {"BENCH_GUNICORN_GREEN": "1"},
        ),
        (
            "gunicorn gevent x1",
            lambda p: gunicorn_command("gevent", 1, "bench_gunicorn:wsgi", p),
            {},
        ),
        (
            "gunicorn gevent x2",
            lambda p: gunicorn_command("gevent", 2, "bench_gunicorn:wsgi", p),
            {},
        ),
        ("GeventReactorWorker x1", lambda p: gunicorn_command(GR, 1, "bench_gunicorn:wsgi", p), {}),
        ("GeventReactorWorker x2", lambda p: gunicorn_command(GR, 2, "bench_gunicorn:wsgi", p), {}),
    ],
}


def serve_epoll(kind: str, port: int) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.web.server import Site
    from twisted.web.wsgi import WSGIResource

    root = resource if kind == "web" else WSGIResource(reactor, reactor.getThreadPool(), wsgi)
    reactor.listenTCP(port, Site(root), interface="127.0.0.1", backlog=1024)
    reactor.run()


# -- measuring -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    """pid and its children (a gunicorn master and its workers)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(entry))
    return [pid, *kids]


def cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(request)
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data.startswith(b"HTTP/1.1 200") and data.endswith(BODY):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not answer")


def run_wrk(port: int, seconds: float, connections: int) -> tuple[float, int, float]:
    """(requests/s, non-2xx or socket errors, wrk's CPU seconds)."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"http://127.0.0.1:{port}/",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = proc.stdout.read()
    proc.stdout.close()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(m.group(1))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(x) for x in m.groups())
    if errors:
        print("    wrk:", " | ".join(line.strip() for line in output.splitlines() if "rror" in line
                                    or "Non-2xx" in line))  # fmt: skip
    return rate, errors, usage.ru_utime + usage.ru_stime


def measure(command, env, seconds: float, connections: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen(
        command(port),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_ready(port, proc)
        run_wrk(port, 1, connections)  # warm-up (and let every worker boot and serve)
        pids = tree(proc.pid)
        before = {pid: cpu_of(pid) for pid in pids}
        started = time.monotonic()
        rate, errors, client_cpu = run_wrk(port, seconds, connections)
        elapsed = time.monotonic() - started
        used = {pid: cpu_of(pid) - before[pid] for pid in pids}
        server_cpu = sum(used.values())
        workers = [used[pid] for pid in pids[1:]] or [server_cpu]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    served = rate * elapsed
    return {
        "rate": rate,
        "errors": errors,
        "per_cpu": served / server_cpu if server_cpu > 0 else float("nan"),
        "server_cores": server_cpu / elapsed,
        "client_cores": client_cpu / elapsed,
        # The busiest worker's share of the workers' CPU time: 1.0 with one worker, 0.5 when two
        # share the load evenly.
        "top_worker": max(workers) / sum(workers) if sum(workers) > 0 else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--scenarios", default="web,wsgi")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s windows")
    parser.add_argument("--serve-epoll", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_epoll:
        serve_epoll(args.serve_epoll[0], int(args.serve_epoll[1]))
        return 0
    if shutil.which("wrk") is None:
        print(
            "bench_gunicorn: the load client `wrk` is not installed, so nothing was measured.\n"
            "Install it (Debian/Ubuntu: apt-get install wrk) and run again.",
            file=sys.stderr,
        )
        return 2
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    scenarios = args.scenarios.split(",")
    print(f"{os.cpu_count()} CPUs, GEVENT_LOOP={os.environ.get('GEVENT_LOOP', 'default')}, "
          f"wrk -t1 -c{args.connections}, {args.rounds} rounds of {args.seconds:g} s")  # fmt: skip
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_no in range(args.rounds):
        for scenario in scenarios:
            subjects = SUBJECTS[scenario]
            shift = round_no % len(subjects)
            for name, command, env in subjects[shift:] + subjects[:shift]:
                r = measure(command, env, args.seconds, args.connections)
                results.setdefault((scenario, name), []).append(r)
                print(f"  round {round_no + 1} {scenario:4} {name:24} {r['rate']:9.0f} req/s "
                      f"errors {r['errors']}", flush=True)  # fmt: skip
    print(
        "\nreq/CPU-s: requests per CPU-second of the server's processes (a gunicorn master and its"
        "\nworkers), which other load on the machine does not inflate; srv/wrk cores: CPU time of the"
        "\nservers and of wrk per second of wall time; top wkr: the busiest worker's share of the"
        "\nworkers' CPU time (0.50 = evenly spread over two)."
    )
    failed = False
    for scenario in scenarios:
        subjects = SUBJECTS[scenario]
        reference = results[(scenario, subjects[0][0])]
        print(f"\n{scenario}: median over rounds; ratios to {subjects[0][0]} taken per round")
        print(f"  {'subject':24} {'req/s':>8} {'x ref':>6} {'req/CPU-s':>9} {'x ref':>6} "
              f"{'srv cores':>9} {'wrk cores':>9} {'top wkr':>7}")  # fmt: skip
        for name, _, _ in subjects:
            runs = results[(scenario, name)]
            failed |= any(r["errors"] for r in runs)
            ratio = statistics.median(
                r["rate"] / ref["rate"] for r, ref in zip(runs, reference, strict=True)
            )
            cpu_ratio = statistics.median(
                r["per_cpu"] / ref["per_cpu"] for r, ref in zip(runs, reference, strict=True)
            )
            print(
                f"  {name:24} {statistics.median(r['rate'] for r in runs):8.0f} {ratio:6.2f} "
                f"{statistics.median(r['per_cpu'] for r in runs):9.0f} {cpu_ratio:6.2f} "
                f"{statistics.median(r['server_cores'] for r in runs):9.2f} "
                f"{statistics.median(r['client_cores'] for r in runs):9.2f} "
                f"{statistics.median(r['top_worker'] for r in runs):7.2f}"
            )
    if failed:
        print("\nsome requests failed (non-2xx or socket errors): see the rounds above")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
