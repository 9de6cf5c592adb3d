"""Every scenario of one subject in one round: a server for the network ones, children for the rest."""

from __future__ import annotations

from typing import NamedTuple

from . import load_client
from .inproc_runner import run_inproc
from .lineup import Subject
from .processes import ServerProcess
from .records import BenchError, Failure, Measurement, Outcome
from .scenarios import SCENARIOS


class Settings(NamedTuple):
    """What every round measures with."""

    warmup: float
    seconds: float
    connections: int
    server_cpu: str | None


def _net(name: str, server: ServerProcess, s: Settings) -> Measurement:
    w, t = s.warmup, s.seconds
    if name == "stream":
        return load_client.stream(server, server.port("echo"), w, t)
    if name.startswith("rr"):
        return load_client.request_response(server, server.port("echo"), int(name[2:]), w, t)
    if name == "connect":
        return load_client.connections(server, server.port("echo"), w, t)
    if name == "web_ka":
        return load_client.web_keepalive(server, server.port("web"), w, t)
    if name == "web_close":
        return load_client.web_close(server, server.port("web"), w, t)
    if name == "blocking":
        clean = load_client.request_response(server, server.port("block"), 10, w, t)
        mixed = load_client.request_response(server, server.port("block"), 10, w, t, mark_every=100)
        assert mixed.p99_ms is not None and clean.p99_ms is not None
        return Measurement(
            value=mixed.p99_ms,
            clean_p99_ms=clean.p99_ms,
            mixed_p50_ms=mixed.p50_ms,
            self_ratio=mixed.p99_ms / clean.p99_ms,
            mixed_req_s=mixed.value,
            clean_req_s=clean.value,
            blocked_requests=mixed.blocked_requests,
            server_util=mixed.server_util,
            client_util=mixed.client_util,
            server_sys=mixed.server_sys,
        )
    raise AssertionError(name)


def _failure(e: Exception) -> Failure:
    return Failure(f"{type(e).__name__}: {e}")


def measure_subject(subject: Subject, scenarios: list[str], s: Settings) -> dict[str, Outcome]:
    """One round of C{subject}: an outcome for each scenario its server has."""
    mine = [n for n in scenarios if subject.runs(n)]
    out: dict[str, Outcome] = {}
    net = [n for n in mine if SCENARIOS[n].kind == "net"]
    if net:
        try:
            server = ServerProcess(subject, s.server_cpu)
        except BenchError as e:
            return {n: Failure(str(e)) for n in net}
        with server:
            for name in net:
                try:
                    out[name] = _net(name, server, s)
                    server.check_alive()
                except (BenchError, OSError) as e:
                    out[name] = _failure(e)
    if "memory" in mine:
        try:
            with ServerProcess(subject, s.server_cpu) as server:
                out["memory"] = load_client.idle_memory(server, server.port("echo"), s.connections)
        except (BenchError, OSError) as e:
            out["memory"] = _failure(e)
    for name in mine:
        if SCENARIOS[name].kind == "inproc":
            try:
                out[name] = run_inproc(subject, name, s.seconds + s.warmup)
            except BenchError as e:
                out[name] = Failure(str(e))
    return out
