"""One round of the suite: every scenario on every subject, the subjects in turn per scenario."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import NamedTuple

from . import load_client
from .inproc_runner import run_inproc
from .lineup import Subject
from .processes import ServerProcess
from .records import BenchError, Failure, Measurement, Outcome
from .scenarios import SCENARIOS

Round = dict[str, dict[str, Outcome]]  # subject name -> scenario -> outcome


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
    # A BenchError says what went wrong; an OSError needs its kind.
    return Failure(str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}")


def measure_round(
    subjects: list[Subject], scenarios: list[str], s: Settings, done: Callable[[str], None]
) -> Round:
    """One round: every scenario, each measured on every subject (in C{subjects}' order) in turn.

    The servers of the round are all started first and kept, so that the measurements of one
    scenario follow one another within seconds: a ratio within a round then compares figures
    taken under nearly the same load from the rest of the machine.
    """
    out: Round = {x.name: {} for x in subjects}
    net = [n for n in scenarios if SCENARIOS[n].kind == "net"]
    with ExitStack() as stack:
        servers: dict[str, ServerProcess] = {}
        for subject in subjects:
            mine = [n for n in net if subject.runs(n)]
            if not mine:
                continue
            try:
                servers[subject.name] = stack.enter_context(ServerProcess(subject, s.server_cpu))
            except BenchError as e:
                out[subject.name].update({n: Failure(str(e)) for n in mine})
        for name in net:
            for subject in subjects:
                server = servers.get(subject.name)
                if server is None or not subject.runs(name):
                    continue
                try:
                    out[subject.name][name] = _net(name, server, s)
                    server.check_alive()
                except (BenchError, OSError) as e:
                    out[subject.name][name] = _failure(e)
            done(name)
    for name in scenarios:
        kind = SCENARIOS[name].kind
        if kind == "net":
            continue
        for subject in subjects:
            if subject.runs(name):
                out[subject.name][name] = _alone(subject, name, s)
        done(name)
    return out


def _alone(subject: Subject, name: str, s: Settings) -> Outcome:
    """A scenario with a process of its own: idle memory on a fresh server, or in-process."""
    try:
        if SCENARIOS[name].kind == "inproc":
            return run_inproc(subject, name, s.seconds + s.warmup)
        with ServerProcess(subject, s.server_cpu) as server:
            return load_client.idle_memory(server, server.port("echo"), s.connections)
    except (BenchError, OSError) as e:
        return _failure(e)
