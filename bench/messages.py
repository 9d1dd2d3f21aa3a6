"""Envelope throughput: the gateway against its ceiling and the ecosystem's peer.

    /work/venv/bin/python -m bench.messages [--senders 32] [--duration 10] [--rounds 5] [--json]
    /work/venv/bin/python bench/messages.py   (the same)

Three targets, each a server in its own process on 127.0.0.1, driven in turn by the same
load generator (`bench.load`: N closed-loop senders over one keep-alive aiohttp session):

- `ceiling`: a bare aiohttp handler that parses, canonicalises and verifies each envelope and
  answers 202 (`bench.ceiling`): the least any envelope endpoint on this stack must do.
- `a2a-sdk peer`: the a2a-sdk reference server answering A2A `SendMessage` with an echo agent
  (`bench.a2a_peer`), sent requests of the same byte size as the envelopes.
- `gateway`: `python -m gateway.cli serve` on the embedded default (SQLite in a temporary
  folder, in-process bus, rule-based language layer), accepting every envelope durably.

The timed seconds are measured in rounds (`--rounds`, 5 by default): round one starts each
target in turn, warms it up and measures its first slice; later rounds give each started
target its next slice in the same order, so a change in the machine's speed during the run
(other jobs on a shared machine) reaches all three alike. Each target's slices are added up
for the table, and the gateway's ratios are also printed round by round. Envelopes are
signed before a target's first slice. The ceiling cycles through a pool (it keeps no replay
memory); the gateway gets a fresh envelope for every request, from a pool sized by the
ceiling's rate. `--profile DIR` runs the gateway under cProfile with SQL statement counts
(`bench.profiled_gateway`), in one round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also `python bench/messages.py`

from bench import processes, workload
from bench.load import PhaseResult, run_phase

ADMIN_TOKEN = "sbt_bench_admin_token_0123456789abcdef"
RESULTS = Path(__file__).resolve().parent / "results"
JSON_HEADERS = {"Content-Type": "application/json"}
A2A_HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}
TARGETS = ("ceiling", "peer", "gateway")
NAMES = {"ceiling": "ceiling (parse+verify)", "peer": "a2a-sdk peer (echo)", "gateway": "gateway"}
MAX_POOL = 120_000  # envelopes signed for the gateway at most (about 7 s of signing)


def _accepted_202(status: int, _body: bytes) -> bool:
    return status == 202


def _a2a_answered(status: int, body: bytes) -> bool:
    return status == 200 and b'"result"' in body and b'"error"' not in body


@dataclass
class Target:
    """A started server and what its senders send, measured in slices (`Run.measure`)."""

    server: processes.Server
    path: str
    streams: Sequence[Iterator[bytes]]
    accept: Any
    headers: Any
    slices: list[PhaseResult] = field(default_factory=list)


class Run:
    """One benchmark run: its options, its one client session, its targets and results."""

    def __init__(self, args: argparse.Namespace, session: aiohttp.ClientSession, work: Path):
        self.args = args
        self.session = session
        self.work = work
        self.keys = workload.make_keys(args.senders)
        self.targets: dict[str, Target] = {}
        self.notes: dict[str, str] = {}

    @property
    def slice_s(self) -> float:
        return float(self.args.duration) / int(self.args.rounds)

    def pool_size(self) -> int:
        """Bodies per sender for a non-cycling target: enough for the fastest plausible rate
        (the ceiling's first slice, with a margin) over its warm-up and all its slices."""
        ceiling = self.targets.get("ceiling")
        rate = ceiling.slices[0].accepted_per_s * 1.25 if ceiling and ceiling.slices else 6000.0
        total = min(MAX_POOL, rate * (float(self.args.warmup) + float(self.args.duration)))
        return max(50, math.ceil(total / int(self.args.senders)))

    async def measure(self, target: Target, seconds: float, *, timed: bool = True) -> None:
        """One slice of load on `target` (kept unless it is the warm-up)."""
        server = target.server
        if timed and self.args.profile and server.name == "gateway" and not target.slices:
            server.process.send_signal(signal.SIGUSR1)  # profile from the first timed slice
            await asyncio.sleep(0.2)
        cpu_before = server.cpu_seconds()
        loop_before = server.cpu_seconds(main_thread=True)
        result = await run_phase(
            self.session,
            server.name,
            server.url + target.path,
            target.streams,
            duration_s=seconds,
            accept=target.accept,
            headers=target.headers,
        )
        result.server_cpu_s = server.cpu_seconds() - cpu_before
        result.server_loop_cpu_s = server.cpu_seconds(main_thread=True) - loop_before
        if timed:
            target.slices.append(result)

    def stop(self) -> None:
        for name, target in self.targets.items():
            target.server.stop(grace=30.0 if name == "gateway" else 10.0)
            code = target.server.process.returncode
            if name == "gateway" and code not in (0, None):
                print(f"gateway exited with {code}:\n{target.server.tail()}")

    async def start_ceiling(self) -> Target:
        keys_file = self.work / "keys.json"
        workload.write_keys_file(keys_file, self.keys)
        pools = workload.sign_envelopes(
            workload.placeholder_senders(self.keys), 200, self.args.new_task_share
        )
        self.notes["envelope_bytes"] = str(round(sum(map(len, pools[0])) / len(pools[0])))
        port = processes.free_port()
        server = processes.start(
            "ceiling",
            ["-m", "bench.ceiling", "--port", str(port), "--keys", str(keys_file)],
            port=port,
            log_dir=self.work,
        )
        self.targets["ceiling"] = target = Target(
            server,
            "/v1/messages",
            [workload.cycle(pool) for pool in pools],
            _accepted_202,
            JSON_HEADERS,
        )
        await processes.wait_ready(server, self.session, "/healthz")
        return target

    async def start_peer(self) -> Target:
        size_source = workload.sign_envelopes(
            workload.placeholder_senders(self.keys), 50, self.args.new_task_share
        )
        per_sender = self.pool_size()
        pools = workload.a2a_requests(
            [list(islice(workload.cycle(pool), per_sender)) for pool in size_source]
        )
        port = processes.free_port()
        server = processes.start(
            "peer", ["-m", "bench.a2a_peer", "--port", str(port)], port=port, log_dir=self.work
        )
        self.targets["peer"] = target = Target(
            server, "/", [iter(pool) for pool in pools], _a2a_answered, A2A_HEADERS
        )
        await processes.wait_ready(server, self.session, "/.well-known/agent-card.json")
        return target

    async def start_gateway(self) -> Target:
        port = processes.free_port()
        data_dir = self.work / "gateway-data"
        env = {
            "SWITCHBOARD_DATA_DIR": str(data_dir),
            "SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "SWITCHBOARD_PORT": str(port),
            "SWITCHBOARD_HOST": "127.0.0.1",
            "SWITCHBOARD_LOG_LEVEL": "warning",
            "SWITCHBOARD_RATE_PER_MINUTE": "1000000",
            "SWITCHBOARD_DOMAIN": workload.GATEWAY_DOMAIN,
            "SWITCHBOARD_PERSONAL_DOMAIN": workload.PERSONAL_DOMAIN,
        }
        if self.args.verify_workers is not None:
            env["SWITCHBOARD_VERIFY_WORKERS"] = str(self.args.verify_workers)
        if self.args.profile:
            command = ["-m", "bench.profiled_gateway", str(self.args.profile)]
        else:
            command = ["-m", "gateway.cli", "serve"]
        server = processes.start("gateway", command, port=port, log_dir=self.work, env=env)
        print(f"    gateway pid {server.process.pid}", file=sys.stderr, flush=True)
        self.targets["gateway"] = target = Target(
            server, "/v1/messages", [], _accepted_202, JSON_HEADERS
        )
        await processes.wait_ready(server, self.session, "/healthz")
        senders = await workload.set_up_gateway(
            self.session,
            server.url,
            ADMIN_TOKEN,
            self.keys,
            agent_keeps_tasks=self.args.agent_keeps_tasks,
        )
        per_sender = self.pool_size()
        began = time.perf_counter()
        pools = workload.sign_envelopes(senders, per_sender, self.args.new_task_share)
        self.notes["gateway_pool"] = (
            f"{per_sender * len(senders)} envelopes signed in {time.perf_counter() - began:.1f} s"
        )
        target.streams = [iter(pool) for pool in pools]
        return target


def merged(slices: Sequence[PhaseResult]) -> PhaseResult:
    """One target's slices as one phase: counts, time and CPU added, latencies pooled."""
    whole = PhaseResult(name=slices[0].name, senders=slices[0].senders)
    whole.server_cpu_s = whole.server_loop_cpu_s = 0.0
    for part in slices:
        whole.requests += part.requests
        whole.accepted += part.accepted
        whole.elapsed_s += part.elapsed_s
        whole.latencies_s.extend(part.latencies_s)
        whole.statuses.update(part.statuses)
        whole.exhausted = whole.exhausted or part.exhausted
        whole.refusals.extend(part.refusals)
        whole.server_cpu_s += part.server_cpu_s
        whole.server_loop_cpu_s += part.server_loop_cpu_s
    return whole


def round_ratios(run: Run, reference: str) -> list[float]:
    """The gateway's rate over `reference`'s, round by round (slices run back to back)."""
    gateway, other = run.targets.get("gateway"), run.targets.get(reference)
    if gateway is None or other is None:
        return []
    return [
        mine.accepted_per_s / theirs.accepted_per_s
        for mine, theirs in zip(gateway.slices, other.slices, strict=False)
        if theirs.accepted_per_s
    ]


def table(results: dict[str, PhaseResult]) -> list[dict[str, Any]]:
    """One row per target, with ratios to the ceiling and to the peer where both ran."""
    ceiling = results.get("ceiling")
    peer = results.get("peer")
    rows = []
    for target in TARGETS:
        result = results.get(target)
        if result is None:
            continue
        rate = result.accepted_per_s
        rows.append(
            {
                "name": NAMES[target],
                "target": target,
                "senders": result.senders,
                "requests": result.requests,
                "accepted": result.accepted,
                "seconds": round(result.elapsed_s, 2),
                "accepted_per_s": round(rate, 1),
                "p50_ms": round(result.percentile_ms(0.50), 2),
                "p99_ms": round(result.percentile_ms(0.99), 2),
                "vs_ceiling": round(rate / ceiling.accepted_per_s, 2) if ceiling else None,
                "vs_peer": round(rate / peer.accepted_per_s, 2) if peer else None,
                "server_cpu_us_per_request": (
                    round(result.server_cpu_s / result.requests * 1e6) if result.requests else None
                ),
                "loop_cpu_us_per_request": (
                    round(result.server_loop_cpu_s / result.requests * 1e6)
                    if result.requests
                    else None
                ),
                "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
                "pool_exhausted": result.exhausted,
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    header = (
        "name",
        "requests",
        "accepted/s",
        "p50 ms",
        "p99 ms",
        "vs ceiling",
        "vs peer",
        "server CPU µs/req",
        "loop thread µs/req",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                row["name"],
                str(row["requests"]),
                f"{row['accepted_per_s']:.0f}",
                f"{row['p50_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                "-" if row["vs_ceiling"] is None else f"{row['vs_ceiling']:.2f}",
                "-" if row["vs_peer"] is None else f"{row['vs_peer']:.2f}",
                str(row["server_cpu_us_per_request"]),
                str(row["loop_cpu_us_per_request"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        out.append("| " + " | ".join(cells) + " |")
        if number == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets for the gateway, each marked met or missed."""
    gateway = next((row for row in rows if row["target"] == "gateway"), None)
    if gateway is None:
        return []
    checks = []
    if gateway["vs_ceiling"] is not None:
        checks.append(("throughput >= 0.4 x ceiling", gateway["vs_ceiling"] >= 0.4))
    if gateway["vs_peer"] is not None:
        checks.append(("throughput >= 4 x peer", gateway["vs_peer"] >= 4.0))
    checks.append(("p99 < 50 ms", gateway["p99_ms"] < 50.0))
    return [f"  {'met   ' if ok else 'MISSED'} {name}" for name, ok in checks]


def _print_logs(work: Path) -> None:
    for log in sorted(work.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=args.senders, limit_per_host=args.senders)
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as folder:
        work = Path(folder)
        async with aiohttp.ClientSession(connector=connector) as session:
            run = Run(args, session, work)
            try:
                # Round one starts each target, warms it up and measures its first slice;
                # the other rounds take the started targets in turn, so a drift in the
                # machine's speed reaches every target alike.
                for number in range(args.rounds):
                    for name in args.targets:
                        if number == 0:
                            print(f"... {NAMES[name]}", file=sys.stderr, flush=True)
                            target = await getattr(run, f"start_{name}")()
                            await run.measure(target, args.warmup, timed=False)
                        await run.measure(run.targets[name], run.slice_s)
            finally:
                run.stop()
        if args.keep_logs:
            _print_logs(work)
    results = {name: merged(target.slices) for name, target in run.targets.items() if target.slices}
    rows = table(results)
    print()
    print(
        f"{args.senders} concurrent senders, {args.warmup:g} s warm-up + {args.duration:g} s per"
        f" target in {args.rounds} rounds, ~{run.notes.get('envelope_bytes', '?')}-byte envelopes,"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(render(rows))
    for line in verdict(rows):
        print(line)
    by_round = {name: round_ratios(run, name) for name in ("ceiling", "peer")}
    for name, ratios in by_round.items():
        if len(ratios) > 1:
            print(
                f"  gateway vs {name} by round: {' '.join(f'{r:.2f}' for r in ratios)}"
                f" (median {statistics.median(ratios):.2f})"
            )
    for row in rows:
        bad = {k: v for k, v in row["statuses"].items() if k not in ("200", "202")}
        if bad or row["pool_exhausted"]:
            print(
                f"  note: {row['name']}: statuses {row['statuses']}"
                f"{', pool ran out' if row['pool_exhausted'] else ''}"
            )
    for target, result in results.items():
        for refusal in result.refusals[:2]:
            print(f"  refused by {target}: {refusal.decode(errors='replace')}")
    elapsed = time.perf_counter() - started
    pool = run.notes.get("gateway_pool")
    print(f"whole run: {elapsed:.0f} s" + (f"; {pool}" if pool else ""))
    if args.json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"messages-{stamp}.json"
        path.write_text(
            json.dumps(
                {
                    "benchmark": "messages",
                    "at": stamp,
                    "senders": args.senders,
                    "warmup_s": args.warmup,
                    "duration_s": args.duration,
                    "rounds": args.rounds,
                    "new_task_share": args.new_task_share,
                    "verify_workers": args.verify_workers,
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "envelope_bytes": run.notes.get("envelope_bytes"),
                    "rows": rows,
                    "gateway_by_round": {f"vs_{name}": ratios for name, ratios in by_round.items()},
                },
                indent=2,
            )
        )
        print(f"results: {path}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.messages",
        description="Envelope throughput of the gateway, its ceiling and the a2a-sdk peer.",
    )
    parser.add_argument("--senders", type=int, default=32, help="concurrent senders (32)")
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="slices the timed seconds are measured in, the targets taking turns"
        " (5; 1 with --profile, whose figures would otherwise cover the other targets' turns)",
    )
    parser.add_argument(
        "--new-task-share",
        type=float,
        default=0.25,
        help="share of envelopes that open a new task; the rest are says in a task (0.25)",
    )
    parser.add_argument(
        "--agent-keeps-tasks",
        action="store_true",
        help="brand rules that escalate no task, so every say is read for signals"
        " (by default most says land in tasks already with a person)",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=TARGETS,
        default=list(TARGETS),
        help="which targets to run, in this order (all three)",
    )
    parser.add_argument(
        "--verify-workers",
        type=int,
        default=None,
        help="the gateway's SWITCHBOARD_VERIFY_WORKERS (its default: 1 on two cores or more;"
        " 0 checks signatures on the event loop, as the ceiling does)",
    )
    parser.add_argument("--json", action="store_true", help="write results to bench/results/")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the gateway under cProfile and count SQL statements; write them to this folder",
    )
    parser.add_argument("--keep-logs", action="store_true", help="print the servers' output")
    args = parser.parse_args(argv)
    if args.profile:
        args.profile = args.profile.resolve()
        if args.rounds not in (None, 1):
            parser.error("--profile measures one round: leave out --rounds or give 1")
    if args.rounds is None:
        args.rounds = 1 if args.profile else 5
    if args.senders < 1 or args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
        parser.error("senders and rounds must be at least 1 and durations positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
