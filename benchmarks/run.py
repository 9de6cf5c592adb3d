"""The geventreactor benchmark suite: GeventReactor against Twisted's reactors and pure gevent.

    python benchmarks/run.py                 # default: 5 rounds, about 8 minutes on 2 cores
    python benchmarks/run.py --quick         # 1 round, short windows, about a minute
    python benchmarks/run.py --scenarios rr10,calllater --subjects gevent,epoll --rounds 3
    python benchmarks/run.py --compare HEAD~1 --scenarios rr10,rr100 --rounds 3
    python benchmarks/run.py --markdown benchmarks/results/latest.json

Subjects (see servers/subjects.py): gevent (GeventReactor), epoll (the reference), select,
asyncio, uvloop (if installed), puregevent (no Twisted) and rawepoll (a hand-written epoll echo
loop: the limit for Python). Rounds are interleaved: every round measures every subject (in a
rotated order) before the next round starts; each ratio to the reference is taken within a round,
and the table gives the median of those per-round ratios, against epoll and against the best of
Twisted's reactors in that round.

--compare BASE measures GeventReactor from this working tree against GeventReactor from the
packages of commit BASE (extracted with git archive), interleaved in one run, and reports
working-tree / BASE ratios per scenario.

Network scenarios run against a server process per subject and round (servers/net_server.py),
pinned to one CPU; this process is the one load client, pinned to the other. For each window it
reads the server's CPU time from /proc, so besides wall-clock rates it reports work per server
CPU-second, which the other process's load cannot inflate; and it reports both processes' CPU
use, flagging a window where the client, not the server, was saturated. In-process scenarios
(servers/inproc.py) run one process per subject, scenario and round. Every reply is checked byte
for byte; a subject that answers wrongly, stalls or dies is reported as FAILED and the run exits
with status 1.

Writes benchmarks/results/latest.json (compare.json under --compare; or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite.lineup import Subject, at_commit, plain  # noqa: E402
from suite.machine import machine  # noqa: E402
from suite.one_round import Round, Settings, measure_round  # noqa: E402
from suite.processes import cpus  # noqa: E402
from suite.records import Failure, to_json  # noqa: E402
from suite.report import fmt, legend, markdown, print_table, short  # noqa: E402
from suite.scenarios import SCENARIOS  # noqa: E402
from suite.source_trees import CommitTree  # noqa: E402
from suite.summary import summarize  # noqa: E402

sys.path.insert(0, str(HERE / "servers"))
from subjects import REFERENCE, SUBJECTS, available, raise_fd_limit  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, short windows")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument("--seconds", type=float, help="measuring window (default 0.6, quick 0.2)")
    parser.add_argument(
        "--warmup", type=float, help="warm-up before each window (default 0.15, quick 0.05)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the client and servers to CPUs"
    )
    parser.add_argument("--connections", type=int, help="idle connections (default 10000)")
    parser.add_argument("--scenarios", help=f"comma-separated, from {','.join(SCENARIOS)}")
    parser.add_argument(
        "--subjects",
        help=f"comma-separated, from {','.join(SUBJECTS)} (under --compare, default gevent)",
    )
    parser.add_argument(
        "--compare",
        metavar="BASE",
        help="measure the working tree's GeventReactor against commit BASE's in one run",
    )
    parser.add_argument("--json", help="where to write the results (default results/latest.json)")
    parser.add_argument(
        "--markdown", metavar="JSON", help="print the README table of an earlier run and exit"
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.seconds = args.seconds or (0.2 if args.quick else 0.6)
    args.warmup = args.warmup if args.warmup is not None else (0.05 if args.quick else 0.15)
    args.connections = args.connections or (1000 if args.quick else 10000)
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")
    args.scenario_list = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    for name in args.scenario_list:
        if name not in SCENARIOS:
            parser.error(
                f"--scenarios: unknown scenario {name!r}; expected some of {list(SCENARIOS)}"
            )
    default = "gevent" if args.compare else ",".join(SUBJECTS)
    args.subject_list = (args.subjects or default).split(",")
    for name in args.subject_list:
        if name not in SUBJECTS:
            parser.error(f"--subjects: unknown subject {name!r}; expected some of {SUBJECTS}")
    name = "compare.json" if args.compare else "latest.json"
    args.json = args.json or str(HERE / "results" / name)
    return args


def run_rounds(
    subjects: list[Subject], scenarios: list[str], args: argparse.Namespace
) -> list[Round]:
    client_cpu, server_cpu = (None, None) if args.no_pin else cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {int(client_cpu)})
    settings = Settings(args.warmup, args.seconds, args.connections, server_cpu)
    started = time.time()
    print(
        f"{len(subjects)} subjects x {len(scenarios)} scenarios x {args.rounds} rounds; "
        f"window {args.seconds}s (+{args.warmup}s warm-up); client on cpu {client_cpu}, "
        f"servers on cpu {server_cpu}",
        flush=True,
    )
    rounds: list[Round] = []
    for index in range(args.rounds):
        turn = index % len(subjects)

        def done(scenario: str, index: int = index) -> None:
            print(
                f"round {index + 1}/{args.rounds} {scenario:<15} done at "
                f"{time.time() - started:5.0f} s",
                flush=True,
            )

        rounds.append(measure_round(subjects[turn:] + subjects[:turn], scenarios, settings, done))
        failed = [
            f"{subject}/{name}"
            for subject, per in rounds[-1].items()
            for name, outcome in per.items()
            if isinstance(outcome, Failure)
        ]
        if failed:
            print(f"round {index + 1}/{args.rounds} FAILED: {failed}", flush=True)
    return rounds


def print_comparison(summary: dict[str, Any], tree: str, base: str, commit: str) -> None:
    print(
        f"{tree} / {base} ({commit}): median of per-round ratios, > 1: the working tree is better"
    )
    for name, per in summary.items():
        e = per.get(tree)
        if e is None:
            continue
        if e.ratio is None:
            print(f"  {name:<15} FAILED: {short(e.failed or per[base].failed)}")
            continue
        rounds = " ".join(f"{r:.3f}" for r in e.ratio_rounds or [])
        print(f"  {name:<15} {e.ratio:6.3f} wall  {fmt(e.cpu_ratio):>6} /cpu   rounds: {rounds}")
    print()


def main() -> int:
    args = parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    wanted = list(args.subject_list)
    subjects = [plain(s) for s in wanted if available(s)]
    skipped = [s for s in wanted if not available(s)]
    if skipped:
        print(f"skipped (not installed or not configured): {skipped}")
    tree = None
    if args.compare:
        try:
            tree = CommitTree(args.compare)
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
        label = f"gevent@{args.compare if len(args.compare) <= 12 else tree.short}"
        base = at_commit(label, tree.root, tree.short)
        subjects.append(base)
        reference = base.name
    else:
        reference = REFERENCE
        if not any(s.name == REFERENCE for s in subjects):
            subjects.insert(0, plain(REFERENCE))
    scenarios = args.scenario_list
    raise_fd_limit()
    started = time.time()
    try:
        rounds = run_rounds(subjects, scenarios, args)
    finally:
        if tree is not None:
            tree.close()
    summary = summarize(rounds, subjects, scenarios, reference)
    print()
    print(legend(reference, compare=tree is not None))
    print()
    print_table(summary, subjects, reference)
    if tree is not None:
        print_comparison(summary, "gevent", reference, tree.short)
    failures = [
        f"{subject}/{name}: {e.failed}"
        for name, per in summary.items()
        for subject, e in per.items()
        if e.failed
    ]
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": time.time() - started,
        "machine": machine(),
        "args": {
            k: v
            for k, v in vars(args).items()
            if k not in ("json", "scenario_list", "subject_list")
        },
        "subjects": {s.name: s.description for s in subjects},
        "reference": reference,
        "peer_ranked": [s.name for s in subjects if s.kind == "gevent"],
        "compare": {"rev": tree.rev, "commit": tree.commit} if tree else None,
        "scenarios": {
            n: {
                "unit": SCENARIOS[n].unit,
                "higher_is_better": SCENARIOS[n].higher_is_better,
                "description": SCENARIOS[n].description,
            }
            for n in scenarios
        },
        "results": to_json(summary),
        "failures": failures,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path} in {time.time() - started:.0f} s")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
