"""
Medians and ratios over the rounds.

Ratios are taken within a round (a subject against the reference measured in the same round), and
a summary gives the median of those per-round ratios: the machine's load moves every subject of a
round alike far more than it moves one round against the next.
"""

from __future__ import annotations

import statistics
from collections import Counter

from .lineup import Subject
from .one_round import Round
from .records import Measurement, SubjectSummary
from .scenarios import SCENARIOS, ratio

_MEDIANS = (
    "per_cpu",
    "p50_ms",
    "p99_ms",
    "server_util",
    "client_util",
    "server_sys",
    "self_ratio",
    "clean_p99_ms",
)


def _measured(r: Round, subject: str, scenario: str) -> Measurement | None:
    outcome = r.get(subject, {}).get(scenario)
    return outcome if isinstance(outcome, Measurement) else None


def _best_peer(
    r: Round, peers: list[str], scenario: str, per_cpu: bool
) -> tuple[str, float] | None:
    """The best of Twisted's reactors in one round: (name, its value or per-CPU figure)."""
    better = max if SCENARIOS[scenario].higher_is_better or per_cpu else min
    found = []
    for peer in peers:
        m = _measured(r, peer, scenario)
        figure = (m.per_cpu if per_cpu else m.value) if m else None
        if figure:
            found.append((peer, figure))
    return better(found, key=lambda pair: pair[1]) if found else None


def _summarize_one(
    rounds: list[Round], subject: Subject, scenario: str, reference: str, peers: list[str]
) -> SubjectSummary:
    results = [r[subject.name][scenario] for r in rounds if scenario in r.get(subject.name, {})]
    good = [x for x in results if isinstance(x, Measurement)]
    entry = SubjectSummary(rounds=results)
    errors = [x.error for x in results if not isinstance(x, Measurement)]
    if errors:
        entry.failed = errors[0]
    if good:
        values = [x.value for x in good]
        med = statistics.median(values)
        entry.median = med
        entry.spread = (max(values) - min(values)) / med if med else 0.0
        entry.best = max(values) if SCENARIOS[scenario].higher_is_better else min(values)
        for key in _MEDIANS:
            vals = [getattr(x, key) for x in good if getattr(x, key) is not None]
            if vals:
                setattr(entry, key, statistics.median(vals))
    ratios, cpu_ratios = [], []
    peer_ratios, peer_cpu_ratios, best_peers = [], [], Counter[str]()
    for r in rounds:
        mine, ref = _measured(r, subject.name, scenario), _measured(r, reference, scenario)
        if mine is None:
            continue
        if ref is not None:
            ratios.append(ratio(scenario, mine.value, ref.value))
            if mine.per_cpu and ref.per_cpu:
                cpu_ratios.append(mine.per_cpu / ref.per_cpu)
        others = [p for p in peers if p != subject.name]
        if subject.is_peer or not others:
            continue
        best = _best_peer(r, others, scenario, per_cpu=False)
        if best is not None:
            peer_ratios.append(ratio(scenario, mine.value, best[1]))
            best_peers[best[0]] += 1
        best = _best_peer(r, others, scenario, per_cpu=True)
        if best is not None and mine.per_cpu:
            peer_cpu_ratios.append(mine.per_cpu / best[1])
    if ratios:
        entry.ratio = statistics.median(ratios)
        entry.ratio_rounds = ratios
    if cpu_ratios:
        entry.cpu_ratio = statistics.median(cpu_ratios)
    if peer_ratios:
        entry.peer_ratio = statistics.median(peer_ratios)
    if peer_cpu_ratios:
        entry.peer_cpu_ratio = statistics.median(peer_cpu_ratios)
    if best_peers:
        entry.peer = best_peers.most_common(1)[0][0]
    # The client is the bottleneck when it is saturated and the server is not.
    if entry.client_util is not None and entry.server_util is not None:
        entry.client_bound = entry.client_util > 0.9 and entry.server_util < 0.8
    return entry


def summarize(
    rounds: list[Round], subjects: list[Subject], scenarios: list[str], reference: str
) -> dict[str, dict[str, SubjectSummary]]:
    """Scenario -> subject name -> its summary (subjects whose server lacks the scenario omitted)."""
    peers = [s.name for s in subjects if s.is_peer]
    summary: dict[str, dict[str, SubjectSummary]] = {}
    for scenario in scenarios:
        per_subject = {
            s.name: _summarize_one(rounds, s, scenario, reference, peers)
            for s in subjects
            if s.runs(scenario)
        }
        ref = per_subject.get(reference)
        for entry in per_subject.values():
            if entry.best is not None and ref is not None and ref.best is not None:
                entry.best_ratio = ratio(scenario, entry.best, ref.best)
        summary[scenario] = per_subject
    return summary
