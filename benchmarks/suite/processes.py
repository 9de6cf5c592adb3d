"""A subject's server process, and what ``/proc`` says about a process: CPU time, memory."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile

from .lineup import BENCHMARKS, Subject
from .records import BenchError

PYTHON = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    # schedstat counts nanoseconds (stat counts 10 ms ticks: too coarse for a 0.6 s window).
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def user_sys_ticks(pid: int) -> tuple[int, int]:
    # Coarse (10 ms ticks), but their ratio over a window says where the server's CPU time went.
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpus() -> tuple[str | None, str | None]:
    """(client cpu, server cpu) to pin to, when there are at least two."""
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(mine) < 2:
        return None, None
    return str(mine[0]), str(mine[1])


class ServerProcess:
    """A ``servers/net_server.py`` process for one subject; a context manager."""

    def __init__(self, subject: Subject, server_cpu: str | None) -> None:
        self.subject = subject
        env = subject.env()
        if server_cpu is not None:
            env["BENCH_SERVER_CPU"] = server_cpu
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [PYTHON, str(BENCHMARKS / "servers" / "net_server.py"), subject.kind],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout
        sel = selectors.DefaultSelector()
        sel.register(self.stdout, selectors.EVENT_READ)
        ready = sel.select(30)
        sel.close()
        line = self.stdout.readline() if ready else b""
        if not line:
            self.proc.wait(5)
            tail = self.error_tail()
            self.stop()
            raise BenchError(f"server did not start: {tail}")
        info = json.loads(line)
        self.pid = self.proc.pid
        self.ports: dict[str, int] = info["ports"]
        source = info["source"]
        if subject.src_path and not any(str(source).startswith(p) for p in subject.src_path):
            self.stop()
            raise BenchError(f"the reactor came from {source}, not from {subject.src_path[0]}")

    def port(self, name: str) -> int:
        try:
            return self.ports[name]
        except KeyError:
            raise BenchError(f"this server has no {name!r} port: {sorted(self.ports)}") from None

    def error_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-1500:]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"server exited with {self.proc.returncode}: {self.error_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stdout.close()
        self.stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
