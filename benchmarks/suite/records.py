"""
The named records of the suite: one measurement, a failure, and a subject's summary of a scenario.

Each turns into the JSON of ``results/latest.json`` with L{to_json} (fields left at None are
omitted) and back with its C{from_json}, so that ``--markdown`` reads an earlier run's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Measurement:
    """One subject's figure for one scenario in one round."""

    value: float
    # Work per server CPU-second, which other load on the machine cannot inflate.
    per_cpu: float | None = None
    # CPU use of the server and of the load client during the window (1.0 = one core), and the
    # kernel's share of the server's CPU time.
    server_util: float | None = None
    client_util: float | None = None
    server_sys: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int | None = None
    blocked_requests: int | None = None
    # blocking: the same server and connections when nothing blocks.
    clean_p99_ms: float | None = None
    mixed_p50_ms: float | None = None
    self_ratio: float | None = None
    mixed_req_s: float | None = None
    clean_req_s: float | None = None
    # memory
    rss_before: int | None = None
    rss_after: int | None = None
    # in-process scenarios: the child's own CPU time and wall-clock window.
    cpu: float | None = None
    wall: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        return cls(**_known(cls, data))


class BenchError(Exception):
    """A subject answered wrongly, stalled or died: it gets no number (a L{Failure})."""


@dataclass
class Failure:
    """A subject answered wrongly, stalled or died in one round: it gets no number."""

    error: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        return cls(data["error"])


Outcome = Measurement | Failure


def outcome_from_json(data: dict[str, Any]) -> Outcome:
    return Failure.from_json(data) if "error" in data else Measurement.from_json(data)


@dataclass
class SubjectSummary:
    """One subject's rounds of one scenario, with medians and ratios."""

    rounds: list[Outcome] = field(default_factory=list)
    # The first round's error, when any round failed.
    failed: str | None = None
    median: float | None = None
    # (max - min) / median of the subject's own per-round values.
    spread: float | None = None
    # The best round: noise on a shared machine only ever slows a subject down.
    best: float | None = None
    per_cpu: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_util: float | None = None
    client_util: float | None = None
    server_sys: float | None = None
    self_ratio: float | None = None
    clean_p99_ms: float | None = None
    # Median of the per-round ratios to the run's reference (epoll, or BASE under --compare).
    ratio: float | None = None
    ratio_rounds: list[float] | None = None
    cpu_ratio: float | None = None
    best_ratio: float | None = None
    # Median of the per-round ratios to the best of Twisted's reactors in that round.
    peer_ratio: float | None = None
    peer_cpu_ratio: float | None = None
    # The reactor that was that best peer in most rounds.
    peer: str | None = None
    client_bound: bool | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubjectSummary:
        known = _known(cls, data)
        known["rounds"] = [outcome_from_json(r) for r in data.get("rounds", [])]
        return cls(**known)


def to_json(record: Any) -> Any:
    """The JSON form of a record (or of lists and dicts of them); None fields are left out."""
    if isinstance(record, (Measurement, Failure, SubjectSummary)):
        return {
            f.name: to_json(getattr(record, f.name))
            for f in fields(record)
            if getattr(record, f.name) is not None
        }
    if isinstance(record, dict):
        return {k: to_json(v) for k, v in record.items()}
    if isinstance(record, list):
        return [to_json(v) for v in record]
    return record


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
