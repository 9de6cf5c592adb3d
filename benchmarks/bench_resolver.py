"""1,000 concurrent lookups: GeventResolver (c-ares) vs Twisted's default GAIResolver.

Every lookup is a real DNS question (A and AAAA, as getaddrinfo asks) to a twisted.names server on
127.0.0.1 (gevent_resolver.testing.LoopbackDNSServer), answered over UDP. Subjects:

- gevent-ares: GeventResolver(reactor, "ares") pointed at that server; standalone on Twisted's
  epoll reactor, so every lookup is a greenlet on the one shared helper hub thread.
- gevent-ares-inloop: the same on geventreactor's GeventReactor, where lookups are greenlets on
  the reactor's own hub (skipped when gevent_reactor is not installed).
- twisted-gai: Twisted's GAIResolver, as installed by default, on its reactor thread pool. The
  system resolver would ask the machine's name server, which is off limits here, so its
  getaddrinfo is a blocking stub resolver (one UDP socket per question, like libc's) that asks the
  loopback server: the same threads-and-blocking-calls model, the same questions and answers.
- gevent-thread / twisted-gai-hosts: "localhost" from the hosts file (no DNS server involved),
  through gevent's 'thread' resolver and through GAIResolver with the real system getaddrinfo.

Each subject runs in a fresh child process (thread pools persist, so counts would leak between
subjects), rounds interleaved; the table gives medians. The reactor is Twisted's epoll reactor
except for the in-loop subject. "extra OS threads" is the peak number of OS threads during the
lookups minus the number before the first lookup (the DNS server's thread excluded). Every DNS
lookup asks a distinct name, so no cache answers it.
Writes benchmarks/results/resolver.json. Bounded: a few seconds per child, under a minute total.

    python benchmarks/bench_resolver.py [--rounds 5] [--lookups 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SUBJECTS = [
    "gevent-ares",
    "gevent-ares-inloop",
    "twisted-gai",
    "gevent-thread",
    "twisted-gai-hosts",
]
CHILD_TIMEOUT = 60.0
WARM_UP = 5


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def stub_getaddrinfo(server_port: int):
    """A blocking getaddrinfo asking only the loopback server, as libc would ask its name server."""
    from twisted.names import dns

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        wanted = []
        if family in (0, socket.AF_INET):
            wanted.append((dns.A, socket.AF_INET))
        if family in (0, socket.AF_INET6):
            wanted.append((dns.AAAA, socket.AF_INET6))
        results = []
        for qtype, fam in wanted:
            query = dns.Message(id=random.randrange(65536), recDes=1)
            query.addQuery(host.encode("ascii"), qtype)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5.0)
                sock.sendto(query.toStr(), ("127.0.0.1", server_port))
                answer = dns.Message()
                answer.fromStr(sock.recv(65535))
            for record in answer.answers:
                if record.type == dns.A and fam == socket.AF_INET:
                    results.append((fam, type, 6, "", (record.payload.dottedQuad(), port)))
                elif record.type == dns.AAAA and fam == socket.AF_INET6:
                    address = socket.inet_ntop(socket.AF_INET6, record.payload.address)
                    results.append((fam, type, 6, "", (address, port, 0, 0)))
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return results

    return getaddrinfo


def child(subject: str, lookups: int) -> dict:
    from twisted.internet._resolver import GAIResolver
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.epollreactor import EPollReactor
    from twisted.internet.task import LoopingCall

    from gevent_reactor import GeventReactor
    from gevent_resolver import GeventResolver
    from gevent_resolver.testing import DEFAULT_RECORDS, LoopbackDNSServer

    # A distinct name per lookup: c-ares caches answers, and a cached answer asks no server.
    hosts = {
        f"host{i}": [("A", f"198.18.{i // 256}.{i % 256}"), ("AAAA", f"2001:db8::{i:x}")]
        for i in range(lookups + WARM_UP)
    }
    server = LoopbackDNSServer(records={**DEFAULT_RECORDS, **hosts})
    server.start()
    reactor = GeventReactor() if subject == "gevent-ares-inloop" else EPollReactor()
    if subject in ("gevent-ares", "gevent-ares-inloop"):
        resolver = GeventResolver(reactor, "ares", **server.ares_options(), timeout=5, tries=2)
        names = [server.name(h) for h in hosts]
    elif subject == "twisted-gai":
        resolver = GAIResolver(reactor, reactor.getThreadPool, stub_getaddrinfo(server.port))
        names = [server.name(h) for h in hosts]
    elif subject == "gevent-thread":
        resolver = GeventResolver(reactor, "thread")
        names = ["localhost"] * len(hosts)
    elif subject == "twisted-gai-hosts":
        resolver = GAIResolver(reactor, reactor.getThreadPool)
        names = ["localhost"] * len(hosts)
    else:
        raise ValueError(subject)

    class Receiver:
        def __init__(self):
            self.done = Deferred()
            self.count = 0

        def resolutionBegan(self, resolution):
            pass

        def addressResolved(self, address):
            self.count += 1

        def resolutionComplete(self):
            self.done.callback(self.count)

    out: dict = {}

    def run_once(batch):
        receivers = [Receiver() for _ in batch]
        for receiver, name in zip(receivers, batch, strict=True):
            resolver.resolveHostName(receiver, name, 80)
        return gatherResults([r.done for r in receivers])

    before = os_threads()

    def measure():
        peak = [before]
        sampler = LoopingCall(lambda: peak.append(os_threads()))
        sampler.start(0.001)
        started = time.perf_counter()

        def finished(counts):
            out["wall_s"] = time.perf_counter() - started
            sampler.stop()
            peak.append(os_threads())
            out["extra_os_threads"] = max(peak) - before
            out["addresses_per_lookup"] = statistics.mean(counts)
            out["failed_lookups"] = sum(1 for c in counts if c == 0)

        return run_once(names[WARM_UP:]).addCallback(finished)

    def main():
        # Warm-up (helper thread, c-ares channel, pool threads) is outside the timing, but the
        # threads it starts count: they are threads the lookups use.
        d = run_once(names[:WARM_UP]).addCallback(lambda _: measure())
        d.addErrback(lambda f: out.setdefault("error", f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(main)
    reactor.callLater(CHILD_TIMEOUT - 10, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if hasattr(resolver, "close"):
        resolver.close()
    server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--child", choices=SUBJECTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.lookups)))
        return

    subjects = list(SUBJECTS)
    try:
        import gevent_reactor  # noqa: F401
    except ImportError:
        subjects.remove("gevent-ares-inloop")
    runs: dict[str, list[dict]] = {s: [] for s in subjects}
    deadline = time.monotonic() + 100
    for _round in range(args.rounds):
        if time.monotonic() > deadline:
            break
        for subject in subjects:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", subject, "--lookups", str(args.lookups)],
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{subject} failed:\n{proc.stderr}")
            runs[subject].append(json.loads(proc.stdout.strip().splitlines()[-1]))

    rows = []
    for subject, results in runs.items():
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise SystemExit(f"{subject} failed:\n{errors[0]}")
        rows.append(
            {
                "subject": subject,
                "rounds": len(results),
                "lookups": args.lookups,
                "wall_s_median": statistics.median(r["wall_s"] for r in results),
                "wall_s_all": [round(r["wall_s"], 4) for r in results],
                "extra_os_threads_max": max(r["extra_os_threads"] for r in results),
                "addresses_per_lookup": results[0]["addresses_per_lookup"],
                "failed_lookups": sum(r["failed_lookups"] for r in results),
            }
        )

    print(f"{args.lookups} concurrent resolveHostName calls, median of rounds")
    print(f"{'subject':<20}{'wall (s)':>10}{'lookups/s':>12}{'extra OS threads':>18}{'failed':>8}")
    for row in rows:
        rate = row["lookups"] / row["wall_s_median"]
        print(
            f"{row['subject']:<20}{row['wall_s_median']:>10.3f}{rate:>12.0f}"
            f"{row['extra_os_threads_max']:>18}{row['failed_lookups']:>8}"
        )
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "resolver.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
