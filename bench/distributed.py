"""Accepted envelopes per second: embedded vs one and two replicas on PostgreSQL + NATS.

    /work/venv/bin/python -m bench.distributed [--senders 32] [--duration 10] [--profile DIR]

Three phases in one run, each on freshly started `python -m gateway.cli serve` processes on
127.0.0.1, driven by the same closed-loop load generator (this file's own: N senders, each
posting its next pre-signed envelope as soon as the previous one is answered, over keep-alive
connections; two replicas get the senders split between them, as a load balancer would):

- `embedded`: one replica on SQLite in a temporary folder with the in-process bus;
- `pg+nats x1`: one replica on a fresh PostgreSQL database and a private NATS prefix;
- `pg+nats x2`: two replicas sharing that kind of database, prefix and gateway key.

Every envelope opens a new task with a brand agent named by address (no language routing),
so each is one full acceptance: verify, replay check, plan, one transaction (envelope, task,
event, inbox item with its seq, outbox row), then the inbox and work wake-ups. Envelopes are
signed before the clock starts. Besides the replicas' CPU, each phase reports the CPU used
in its timed part by the PostgreSQL backends serving its database, by the NATS server, by
this load generator and by the whole machine (the difference is other work on it), so the
cost per acceptance can be compared where wall-clock rates are noisy (2 CPUs shared).

`--profile DIR` runs the first replica of each phase under `bench.profiled_gateway` (cProfile
of the timed part only, and the SQL statements it ran: DIR/<phase>/statements.json) and
prints where its time goes; `--phases embedded,pg1,pg2` picks phases. Service URLs:
SWITCHBOARD_TEST_DATABASE_URL and SWITCHBOARD_TEST_NATS_URL (defaults: the local PostgreSQL
`test` database and NATS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.client import AgentClient, StaffClient
from identity.keys import PrivateKey

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "sbt_bench_admin_token_0123456789abcdef"
DATABASE_URL = os.environ.get(
    "SWITCHBOARD_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
NATS_URL = os.environ.get("SWITCHBOARD_TEST_NATS_URL", "nats://127.0.0.1:4222")
DOMAIN, PERSONAL = "gw.example", "people.example"
AGENTS = ("support@acme.example", "billing@acme.example")


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    replicas: int
    accepted: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    accepted_by: list[int] = field(default_factory=list)  # per replica
    server_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0
    nats_cpu_s: float = 0.0
    generator_cpu_s: float = 0.0  # this process: the load generator
    machine_cpu_s: float = 0.0  # every process on the machine (other work included)

    @property
    def per_s(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] * 1e3


class Replica:
    """A `switchboard serve` child process."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, profile: Path | None):
        self.name = name
        self.port = _free_port()
        self.profile = profile
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / f"{name}.log"
        command = [sys.executable]
        if profile is not None:
            command += ["-m", "bench.profiled_gateway", str(profile)]
        else:
            command += ["-m", "gateway.cli", "serve"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    **env,
                    "SWITCHBOARD_PORT": str(self.port),
                    "SWITCHBOARD_DATA_DIR": str(folder / "data"),
                },
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(300):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in 30 s")

    def cpu_s(self) -> float:
        return _cpu_s(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # aiohttp exits cleanly; cProfile writes
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _nats_pids() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "nats-server":
                pids.append(int(stat.parent.name))
        except OSError:
            pass
    return pids


async def _backends(database: str) -> list[int]:
    """The pids of the PostgreSQL backends connected to `database` (the replicas' pools)."""
    import asyncpg

    admin = await asyncpg.connect(DATABASE_URL.replace("+asyncpg", ""))
    try:
        rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await admin.close()
    return [int(row["pid"]) for row in rows]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _database() -> tuple[str, str]:
    import asyncpg

    name = "sb_bench_" + secrets.token_hex(4)
    admin = await asyncpg.connect(DATABASE_URL.replace("+asyncpg", ""))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return name, DATABASE_URL.rsplit("/", 1)[0] + "/" + name


async def _drop(name: str, prefix: str) -> None:
    import asyncpg
    import nats

    from gateway.bus.nats import stream_name

    admin = await asyncpg.connect(DATABASE_URL.replace("+asyncpg", ""))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(stream_name(prefix))
    except Exception:
        pass
    finally:
        await client.close()


async def _prepare(
    session: aiohttp.ClientSession, url: str, senders: int, per_sender: int
) -> list[list[bytes]]:
    """Brand, agents and personal agents; then every sender's envelopes, signed in advance."""
    admin = StaffClient(url, ADMIN_TOKEN, session=session)
    brand = await admin.create_brand("acme.example", "Acme")
    staff = StaffClient(url, brand["token"], session=session)
    # The brand's contact policy limits each sender to 120 a minute by default: lift it, so
    # the phases measure acceptance, not the rate limiter.
    await staff.set_policy("acme.example", {"contact": {"rate_per_minute": 100_000}})
    for address in AGENTS:
        await staff.register_brand_agent(address, PrivateKey.generate(), description="Help")
    streams = []
    for number in range(senders):
        person = AgentClient(
            url, f"p{number}@{PERSONAL}", PrivateKey.generate(), audience=DOMAIN, session=session
        )
        await person.register_personal()
        streams.append(
            [
                json.dumps(
                    person.envelope(AGENTS[(number + n) % 2], f"Message {n}: my speaker blinks")
                ).encode()
                for n in range(per_sender)
            ]
        )
    return streams


async def _drive(
    session: aiohttp.ClientSession,
    phase: Phase,
    urls: list[str],
    streams: list[Iterator[bytes]],
    warmup_s: float,
    duration_s: float,
) -> None:
    """Closed loop: each sender posts its next envelope when the last one is answered."""
    started = time.perf_counter()
    measure_from = started + warmup_s
    stop_at = measure_from + duration_s
    headers = {"Content-Type": "application/json"}

    async def sender(index: int, bodies: Iterator[bytes]) -> None:
        url = urls[index % len(urls)] + "/v1/messages"
        for body in bodies:
            begun = time.perf_counter()
            if begun >= stop_at:
                return
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
            ended = time.perf_counter()
            if begun >= measure_from:
                if status == 202:
                    phase.accepted += 1
                    phase.accepted_by[index % len(urls)] += 1
                    phase.latencies_s.append(ended - begun)
                else:
                    phase.failed += 1

    phase.accepted_by = phase.accepted_by or [0] * len(urls)
    await asyncio.gather(*(sender(i, stream) for i, stream in enumerate(streams)))
    phase.elapsed_s = min(time.perf_counter(), stop_at) - measure_from


async def run_phase(args: argparse.Namespace, name: str, replicas: int, pg: bool) -> Phase:
    phase = Phase(name, replicas)
    work = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    env = {
        "SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "SWITCHBOARD_DOMAIN": DOMAIN,
        "SWITCHBOARD_PERSONAL_DOMAIN": PERSONAL,
        "SWITCHBOARD_RATE_PER_MINUTE": "1000000",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_GATEWAY_KEY_FILE": str(work / "gateway_key.jwk"),
    }
    database = prefix = ""
    if pg:
        database, env["SWITCHBOARD_DATABASE_URL"] = await _database()
        prefix = "sbbench" + secrets.token_hex(4)
        env["SWITCHBOARD_NATS_URL"] = NATS_URL
        env["SWITCHBOARD_NATS_PREFIX"] = prefix
    profile = None
    if args.profile:
        profile = args.profile / name.replace(" ", "_").replace("+", "_")
    servers = [
        Replica(f"{name}-{n}", env, work / f"r{n}", profile if n == 0 else None)
        for n in range(replicas)
    ]
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            for server in servers:
                await server.ready(session)
            per_sender = int(args.pool_rate * (args.duration + args.warmup) / args.senders) + 1
            streams = [
                iter(stream)
                for stream in await _prepare(session, servers[0].url, args.senders, per_sender)
            ]
            await _drive(session, phase, [s.url for s in servers], streams, args.warmup, 0)
            if profile is not None:
                servers[0].process.send_signal(signal.SIGUSR1)  # profile the timed part only
                await asyncio.sleep(0.2)
            backends = await _backends(database) if pg else []
            nats_pids = _nats_pids() if pg else []
            cpu_before = sum(server.cpu_s() for server in servers)
            pg_before = {pid: _cpu_s(pid) for pid in backends}
            nats_before = {pid: _cpu_s(pid) for pid in nats_pids}
            generator_before, machine_before = time.process_time(), _machine_cpu_s()
            await _drive(session, phase, [s.url for s in servers], streams, 0, args.duration)
            phase.server_cpu_s = sum(server.cpu_s() for server in servers) - cpu_before
            phase.generator_cpu_s = time.process_time() - generator_before
            phase.machine_cpu_s = _machine_cpu_s() - machine_before
            # A NATS server restarted meanwhile (another test's) counts whole.
            phase.nats_cpu_s = sum(
                _cpu_s(pid) - nats_before.get(pid, 0.0) for pid in (_nats_pids() if pg else [])
            )
            if pg:
                # Backends opened during the timed part count whole.
                phase.postgres_cpu_s = sum(
                    _cpu_s(pid) - pg_before.get(pid, 0.0) for pid in await _backends(database)
                )
    finally:
        for server in servers:
            server.stop()
        if pg:
            await _drop(database, prefix)
    if profile is not None:
        _print_profile(name, profile, phase.accepted_by[0])
    return phase


def _print_profile(name: str, folder: Path, accepted: int) -> None:
    print(f"\n--- profile: {name}, first replica (top 25 by own time) ---", file=sys.stderr)
    stats = pstats.Stats(str(folder / "gateway.prof"), stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    statements = json.loads((folder / "statements.json").read_text())
    print(
        f"--- SQL of {name}'s first replica in the timed part ({accepted} accepted there),"
        " count and per acceptance ---",
        file=sys.stderr,
    )
    for text, count in statements[:20]:
        print(f"{count:8d} {count / max(accepted, 1):6.2f}  {text}", file=sys.stderr)


_PHASES = {
    "embedded": ("embedded", 1, False),
    "pg1": ("pg+nats x1", 1, True),
    "pg2": ("pg+nats x2", 2, True),
}


async def main_async(args: argparse.Namespace) -> list[Phase]:
    phases = []
    for key in args.phases.split(","):
        name, replicas, pg = _PHASES[key]
        print(f"phase {name} ...", file=sys.stderr, flush=True)
        phases.append(await run_phase(args, name, replicas, pg))
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--pool-rate", type=float, default=1500.0, help="envelopes/s to sign in advance for"
    )
    parser.add_argument("--phases", default="embedded,pg1,pg2", help="of embedded, pg1, pg2")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.profile:
        args.profile = args.profile.resolve()
    phases = asyncio.run(main_async(args))
    embedded = next((p.per_s for p in phases if p.name == "embedded"), None)
    embedded_cpu = next((_per_cpu(p) for p in phases if p.name == "embedded"), None)
    embedded_all = next((_per_server_cpu(p) for p in phases if p.name == "embedded"), None)
    rows: list[dict[str, Any]] = []
    print(
        f"\n{args.senders} senders, {args.duration:.0f} s per phase, {os.cpu_count()} CPUs"
        " (load generator, replicas, PostgreSQL and NATS share them)"
    )
    print("| mode | replicas | accepted/s | per replica | x embedded/replica | p50 ms | p99 ms |"
          " replica CPU s | accepted per replica CPU s | x embedded | PostgreSQL CPU s |"
          " NATS CPU s | accepted per server CPU s | x embedded | generator CPU s |"
          " machine CPU s | refused |")  # fmt: skip
    print("|---" * 17 + "|")
    for phase in phases:
        per_replica = phase.per_s / phase.replicas
        per_cpu = _per_cpu(phase)
        per_all = _per_server_cpu(phase)
        row = {
            "mode": phase.name,
            "replicas": phase.replicas,
            "accepted_per_s": round(phase.per_s, 1),
            "per_replica": round(per_replica, 1),
            "ratio": round(per_replica / embedded, 2) if embedded else None,
            "p50_ms": round(phase.percentile_ms(0.50), 1),
            "p99_ms": round(phase.percentile_ms(0.99), 1),
            "server_cpu_s": round(phase.server_cpu_s, 1),
            "accepted_per_cpu_s": round(per_cpu),
            "cpu_ratio": round(per_cpu / embedded_cpu, 2) if embedded_cpu else None,
            "postgres_cpu_s": round(phase.postgres_cpu_s, 1),
            "nats_cpu_s": round(phase.nats_cpu_s, 1),
            "accepted_per_server_cpu_s": round(per_all),
            "server_cpu_ratio": round(per_all / embedded_all, 2) if embedded_all else None,
            "generator_cpu_s": round(phase.generator_cpu_s, 1),
            "machine_cpu_s": round(phase.machine_cpu_s, 1),
            "failed": phase.failed,
        }
        rows.append(row)
        print(" ".join(f"| {value}" for value in row.values()) + " |")
    if args.json:
        print(json.dumps(rows))


def _per_cpu(phase: Phase) -> float:
    """Accepted envelopes per CPU second of the replica processes (their own CPU only)."""
    return phase.accepted / phase.server_cpu_s if phase.server_cpu_s else 0.0


def _per_server_cpu(phase: Phase) -> float:
    """Accepted envelopes per CPU second of every server: replicas, PostgreSQL, NATS."""
    spent = phase.server_cpu_s + phase.postgres_cpu_s + phase.nats_cpu_s
    return phase.accepted / spent if spent else 0.0


if __name__ == "__main__":
    main()
