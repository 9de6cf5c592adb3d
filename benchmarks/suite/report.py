"""The printed table of a run, and the markdown table of the README (from a run's JSON)."""

from __future__ import annotations

from typing import Any

from .lineup import Subject
from .records import SubjectSummary
from .scenarios import SCENARIOS


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def short(error: str | None) -> str:
    """An error in one line of a table: a traceback's last line says most."""
    lines = (error or "no result").strip().splitlines()
    first = lines[0] if lines else "no result"
    return (first + (f" ... {lines[-1]}" if len(lines) > 1 else ""))[:110]


def legend(reference: str, compare: bool) -> str:
    ref = f"{reference} (BASE)" if compare else reference
    return (
        f"x ref: median of per-round ratios to {ref}, > 1 is better (for p99 and memory: the\n"
        "reference's value / the subject's). x ref/cpu: the same per server CPU-second. x peer and\n"
        "x peer/cpu: the same against the best of Twisted's reactors in each round (epoll, select,\n"
        "asyncio, uvloop), named under 'peer'. srv/cli: CPU use of the server and of the load\n"
        "client during the window (1.0 = one core). sys: the kernel's share of the server's CPU\n"
        "time. x best: the best round's value against the reference's best round."
    )


def print_table(
    summary: dict[str, dict[str, SubjectSummary]], subjects: list[Subject], reference: str
) -> None:
    header = (
        f"{'scenario':<15} {'subject':<15} {'median':>10} {'unit':<8} {'spread':>7} "
        f"{'x ref':>7} {'x ref/cpu':>9} {'x best':>7} {'x peer':>7} {'x peer/cpu':>10} "
        f"{'peer':<8} {'p50ms':>7} {'p99ms':>7} {'srv':>5} {'cli':>5} {'sys':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, per_subject in summary.items():
        unit = SCENARIOS[name].unit
        for subject in subjects:
            e = per_subject.get(subject.name)
            if e is None:
                continue
            label = subject.name + ("*" if subject.name == reference else "")
            if e.median is None:
                print(f"{name:<15} {label:<15} FAILED: {short(e.failed)}")
                continue
            flag = " FAILED in a round" if e.failed else ""
            flag += " (client-bound?)" if e.client_bound else ""
            extra = ""
            if name == "blocking" and e.self_ratio is not None and e.clean_p99_ms is not None:
                extra = f"  mixed/clean p99 {e.self_ratio:.2f}x (clean {e.clean_p99_ms:.2f} ms)"
            print(
                f"{name:<15} {label:<15} {fmt(e.median):>10} {unit:<8} "
                f"{(e.spread or 0.0) * 100:>6.0f}% {fmt(e.ratio):>7} {fmt(e.cpu_ratio):>9} "
                f"{fmt(e.best_ratio):>7} {fmt(e.peer_ratio):>7} {fmt(e.peer_cpu_ratio):>10} "
                f"{e.peer or '-':<8} {fmt(e.p50_ms):>7} {fmt(e.p99_ms):>7} "
                f"{fmt(e.server_util, 2):>5} {fmt(e.client_util, 2):>5} "
                f"{fmt(e.server_sys, 2):>5}{extra}{flag}"
            )
        print()
    bound = [
        f"{subject}/{name}"
        for name, per in summary.items()
        for subject, e in per.items()
        if e.client_bound
    ]
    if bound:
        print(
            f"client-bound: {', '.join(bound)}: the load client was saturated and the server not; "
            "the wall-clock ratio is a lower bound there, the per-CPU one holds."
        )
        print()


def _ratio_cell(wall: float, per_cpu: float | None) -> str:
    return f"{wall:.2f}" if per_cpu is None else f"{wall:.2f} ({per_cpu:.2f}/cpu)"


def markdown(report: dict[str, Any]) -> str:
    """The README table: per scenario, each subject's median ratio to the reference."""
    subjects = list(report["subjects"])
    reference = report.get("reference", "epoll")
    ranked = report.get("peer_ranked", [])
    columns: list[tuple[str, str]] = []  # (heading, subject), a ranked subject twice
    for s in subjects:
        if s == reference:
            continue
        columns.append((s, s))
        if s in ranked:
            columns.append((f"{s} x best peer", s))
    lines = [
        f"| scenario | unit | {reference} median | " + " | ".join(h for h, _ in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for name, raw in report["results"].items():
        per = {s: SubjectSummary.from_json(e) for s, e in raw.items()}
        unit = report["scenarios"][name]["unit"]
        ref = per.get(reference)
        cells = []
        for heading, subject in columns:
            e = per.get(subject)
            if e is None:
                cells.append("-")
                continue
            if heading != subject:
                if e.peer_ratio is None:
                    cells.append("-")
                else:
                    cells.append(_ratio_cell(e.peer_ratio, e.peer_cpu_ratio) + f" vs {e.peer}")
                continue
            if e.ratio is None:
                cells.append("FAILED" if e.failed else "-")
                continue
            cell = _ratio_cell(e.ratio, e.cpu_ratio)
            if name == "blocking" and e.self_ratio is not None:
                cell += f", {e.self_ratio:.2f}x own clean p99"
            if name == "memory" and ref is not None and ref.median and e.median is not None:
                cell += f" ({e.median / ref.median:.2f}x {reference}'s bytes)"
            cells.append(cell)
        if ref is None:
            ref_cell = "-"
        elif ref.median is None:
            ref_cell = "FAILED"
        else:
            ref_cell = fmt(ref.median)
            if name == "blocking" and ref.self_ratio is not None:
                ref_cell += f" ({ref.self_ratio:.2f}x own clean p99)"
        lines.append(f"| {name} | {unit} | {ref_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
