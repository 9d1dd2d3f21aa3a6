"""Acceptance alone, in one process: what an envelope costs the gateway without HTTP.

`bench.messages` measures the whole gateway over HTTP. This runs the same workload (the brand,
senders and envelopes of `bench.workload`) through `Acceptance.accept_bytes` directly, from 32
concurrent coroutines in the gateway's own process, on the embedded default (SQLite in a
temporary folder, the in-process bus). The difference between the two CPU figures is what the
HTTP edge costs; this figure is what the acceptance pipeline itself costs (parse, verify, plan,
language signals, escalation effects, group commit with its SQLite thread).

    python -m bench.acceptance                      # 8 s after a warm-up
    python -m bench.acceptance --seconds 5 --profile /tmp/acceptance.prof   # cProfile, main thread

Set-up goes through HTTP on a test server (registering the brand, agents and senders as a
client would); the timed phase does not.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.workload import make_keys, set_up_gateway, sign_envelopes  # noqa: E402
from gateway.app import Overrides, build_app  # noqa: E402
from gateway.collector import settle  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.http.context import SERVICES  # noqa: E402
from gateway.logs import configure  # noqa: E402

ADMIN = "sbt_bench_acceptance_admin_0123456789"
WARM_UP = 100  # envelopes per sender before the clock starts


async def run(args: argparse.Namespace) -> None:
    configure("console", "warning")
    data = Path(tempfile.mkdtemp(prefix="sb-bench-acceptance-"))
    settings = Settings(
        domain="gateway.example",
        personal_domain="people.example",
        data_dir=data / "var",
        admin_token=ADMIN,
    )
    app = build_app(settings, Overrides(announce=lambda _text: None))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            url = str(server.make_url("")).rstrip("/")
            senders = await set_up_gateway(session, url, ADMIN, make_keys(args.senders))
        per_sender = WARM_UP + int(args.seconds * 400)
        pools = sign_envelopes(senders, per_sender, new_task_share=0.25)
        acceptance = app[SERVICES].acceptance
        accepted = 0

        async def send(pool: list[bytes], until: float) -> None:
            nonlocal accepted
            for body in pool:
                if time.monotonic() > until:
                    return
                await acceptance.accept_bytes(body)
                accepted += 1

        await asyncio.gather(*(send(pool[:WARM_UP], float("inf")) for pool in pools))
        accepted = 0
        pauses: list[tuple[int, float]] = []  # (generation, seconds) of each collection
        started: list[float] = []

        def collecting(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started.append(time.perf_counter())
            elif started:
                pauses.append((info["generation"], time.perf_counter() - started.pop()))

        settle()  # the collector as `switchboard serve` sets it once started
        gc.callbacks.append(collecting)
        profile = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        until = time.monotonic() + args.seconds
        await asyncio.gather(*(send(pool[WARM_UP:], until) for pool in pools))
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        gc.callbacks.remove(collecting)
        if profile:
            profile.dump_stats(args.profile)
        print(
            f"{accepted} envelopes accepted in {wall:.2f} s by {args.senders} concurrent callers:"
            f" {accepted / wall:,.0f}/s, CPU {cpu / accepted * 1e6:,.0f} µs per envelope"
            " (all threads, no HTTP)"
        )
        for generation in (0, 1, 2):
            took = [seconds for g, seconds in pauses if g == generation]
            if took:
                print(
                    f"  garbage collections of generation {generation}: {len(took)},"
                    f" {sum(took) * 1e3:.1f} ms in all, longest {max(took) * 1e3:.1f} ms"
                )
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile file here")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
