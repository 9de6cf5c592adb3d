"""The measuring window of a network scenario: work, server and client CPU between its edges."""

from __future__ import annotations

import time

from .processes import ServerProcess, cpu_seconds, user_sys_ticks
from .records import BenchError, Measurement


class Window:
    """Opens C{warmup} seconds after creation, closes C{seconds} later; L{tick} moves it on."""

    def __init__(self, server: ServerProcess, warmup: float, seconds: float) -> None:
        self.server = server
        self.t_start = time.perf_counter() + warmup
        self.t_end = self.t_start + seconds
        self.open = False
        self.closed = False
        self.count = 0

    @property
    def counting(self) -> bool:
        return self.open and not self.closed

    def tick(self, now: float) -> None:
        if not self.open and now >= self.t_start:
            self.open = True
            self.t0 = now
            self.s0 = cpu_seconds(self.server.pid)
            self.k0 = user_sys_ticks(self.server.pid)
            self.c0 = time.process_time()
        elif self.open and not self.closed and now >= self.t_end:
            self.closed = True
            self.elapsed = now - self.t0
            self.server_cpu = cpu_seconds(self.server.pid) - self.s0
            user, kernel = user_sys_ticks(self.server.pid)
            self.user_ticks, self.sys_ticks = user - self.k0[0], kernel - self.k0[1]
            self.client_cpu = time.process_time() - self.c0

    def result(self, work: float) -> Measurement:
        if not self.closed:
            raise BenchError("measuring window never closed")
        ticks = self.user_ticks + self.sys_ticks
        return Measurement(
            value=work / self.elapsed,
            per_cpu=work / self.server_cpu if self.server_cpu > 0 else None,
            server_util=self.server_cpu / self.elapsed,
            client_util=self.client_cpu / self.elapsed,
            # The kernel's share of the server's CPU time (system calls, the TCP stack, waking).
            server_sys=self.sys_ticks / ticks if ticks else None,
        )
