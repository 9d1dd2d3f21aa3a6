"""The load generator: N concurrent senders over one keep-alive aiohttp session.

Each sender is one coroutine that posts its own pre-built request bodies one after another,
so the number of requests in flight equals the number of senders (closed loop). A phase runs
for a fixed time, or until a sender runs out of bodies, and records every request's latency
from just before the write to just after the whole response is read.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

Acceptance = Callable[[int, bytes], bool]


@dataclass
class PhaseResult:
    """What one timed phase measured."""

    name: str
    senders: int
    requests: int = 0
    accepted: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    exhausted: bool = False
    refusals: list[bytes] = field(default_factory=list)
    server_cpu_s: float = float("nan")
    server_loop_cpu_s: float = float("nan")  # the server's main (event loop) thread alone

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """The latency below which `fraction` of the accepted requests finished (nearest rank)."""
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[rank] * 1000.0


async def run_phase(
    session: aiohttp.ClientSession,
    name: str,
    url: str,
    streams: Sequence[Iterator[bytes]],
    *,
    duration_s: float,
    accept: Acceptance,
    headers: Mapping[str, str],
) -> PhaseResult:
    """Drive `url` with one sender per stream for `duration_s` seconds.

    Args:
        session: The run's one client session (keep-alive connections are reused).
        name: The target's name, for the result.
        url: Where to POST.
        streams: One iterator of request bodies per sender; a sender stops when its runs dry.
        duration_s: How long to keep starting requests.
        accept: Tells, from the status and body, whether the server accepted the request.
        headers: Sent with every request.
    """
    result = PhaseResult(name=name, senders=len(streams))
    started = time.perf_counter()
    deadline = started + duration_s

    async def sender(stream: Iterator[bytes]) -> None:
        clock = time.perf_counter
        for body in stream:
            if clock() >= deadline:
                return
            begun = clock()
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                status = response.status
            took = clock() - begun
            result.requests += 1
            result.statuses[status] += 1
            if accept(status, payload):
                result.accepted += 1
                result.latencies_s.append(took)
            elif len(result.refusals) < 5:
                result.refusals.append(payload[:300])
        result.exhausted = True

    await asyncio.gather(*(sender(stream) for stream in streams))
    result.elapsed_s = time.perf_counter() - started
    return result
