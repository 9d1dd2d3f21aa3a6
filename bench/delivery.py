"""Delivery benchmark: personal agent -> gateway -> brand endpoint (synchronous reply) ->
the personal agent's stream, end to end over real HTTP.

Three processes: the gateway (`switchboard serve`, embedded default: SQLite + in-process bus),
the reference brand agent (`switchboard example-agent`, which verifies the webhook and the
envelope signature and answers in the webhook's response), and this load generator. Each
conversation is one personal agent that sends a message, waits until the brand agent's reply
shows up on its SSE inbox stream, and sends the next (a new task every 5 rounds). The round
trip is measured from just before the POST to the reply's arrival on the stream.

    python bench/delivery.py                       # 1 and 32 concurrent conversations
    python bench/delivery.py --conversations 1 8 32 --seconds 10 --brand-agents 1
    python bench/delivery.py --profile /tmp/prof   # gateway under cProfile, SQL counted

Besides wall-clock figures (which depend on what else the host is running), each level reports
the CPU time each process spent per round trip (user + system, from /proc): `gw µs` for the
gateway, `agent µs` for the brand agent, `gen µs` for this generator. CPU per round trip is the
figure to compare across changes on a shared host.

First, `--drain N` envelopes (default 300) are queued while the endpoints are down; the time
to deliver them all once the endpoints start gives deliveries per second in steady order.

Then the same closed loop runs against the ecosystem's reference: the `a2a-sdk` server
(`bench.a2a_peer`, an echo agent) answering A2A `SendMessage` synchronously, one request and its
reply per round trip with no gateway in between (`--no-a2a` skips it). `peer µs` is that
server's CPU per round trip.

All conversations talk to one brand agent by default: its deliveries are strictly ordered,
one in flight (PROTOCOL section 6), so at 32 conversations they queue behind each other.
`--brand-agents N` spreads the conversations over N agents (N endpoints in parallel).
`--max-batch N` registers the endpoints for ordered batches of up to N envelopes per POST
(docs/delivery-batches.md): still in order and one POST in flight, but what queued while a
POST was out leaves together in the next one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.client import AgentClient, StaffClient  # noqa: E402
from identity.keys import PrivateKey  # noqa: E402

ADMIN = "sbt_bench_delivery_admin_0123456789"
ROUNDS_PER_TASK = 5


A2A_HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}


async def a2a_conversation(
    session: aiohttp.ClientSession, url: str, context: str, until: float, latencies: list[float]
) -> None:
    """SendMessage, read the echoed reply, repeat until `until`."""
    number = 0
    while time.monotonic() < until:
        request = {
            "jsonrpc": "2.0",
            "id": number,
            "method": "SendMessage",
            "params": {
                "message": {
                    "messageId": f"{context}-{number}",
                    "contextId": context,
                    "role": "ROLE_USER",
                    "parts": [{"text": "Hi, is anyone there?"}],
                }
            },
        }
        started = time.perf_counter()
        async with session.post(url, json=request, headers=A2A_HEADERS) as response:
            answer = await response.json()
        if "result" not in answer:
            raise SystemExit(f"the a2a-sdk peer did not answer SendMessage: {answer}")
        latencies.append(time.perf_counter() - started)
        number += 1


async def a2a_levels(args: argparse.Namespace, env: dict[str, str], log: Any) -> None:
    """The a2a-sdk reference server under the same closed loop, level by level."""
    port = free_port()
    peer = spawn([sys.executable, "-m", "bench.a2a_peer", "--port", str(port)], env, log)
    try:
        url = f"http://127.0.0.1:{port}/"
        await wait_http(url + ".well-known/agent-card.json", peer)
        print("a2a-sdk peer (echo agent), SendMessage answered synchronously, same loop:")
        print(
            f"{'conversations':>13} {'round trips':>11} {'p50 ms':>8} {'p99 ms':>8}"
            f" {'rt/s':>12} {'peer µs':>7} {'gen µs':>7}"
        )
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            levels = [(1, True)] if args.warmup else []
            for level, warm_up in [*levels, *((n, False) for n in args.conversations)]:
                latencies: list[float] = []
                before = (cpu_seconds(peer.pid), cpu_seconds())
                started = time.perf_counter()
                until = time.monotonic() + (2.0 if warm_up else args.seconds)
                await asyncio.gather(
                    *(
                        a2a_conversation(session, url, f"ctx-{level}-{n}", until, latencies)
                        for n in range(level)
                    )
                )
                elapsed = time.perf_counter() - started
                after = (cpu_seconds(peer.pid), cpu_seconds())
                if warm_up:
                    continue
                print_level(level, latencies, elapsed, [after[0] - before[0], after[1] - before[1]])
    finally:
        with contextlib.suppress(ProcessLookupError):
            peer.send_signal(signal.SIGTERM)
        try:
            peer.wait(10)
        except subprocess.TimeoutExpired:
            peer.kill()


def print_level(level: int, latencies: list[float], elapsed: float, used: list[float]) -> None:
    """One table row: round trips, p50, p99, rate, then CPU µs per round trip per process."""
    latencies.sort()
    count = max(1, len(latencies))
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    cpu = " ".join(f"{seconds / count * 1e6:>7.0f}" for seconds in used)
    print(
        f"{level:>13} {len(latencies):>11} {p50:>8.1f} {p99:>8.1f}"
        f" {len(latencies) / elapsed:>12.0f} {cpu}"
    )


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0 elsewhere)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn(command: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=REPO)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str) -> list[str]:
    """`python -m gateway.cli …`, or the command module called directly while the CLI of this
    branch lacks one of its modules."""
    from gateway.cli import _COMMAND_MODULES

    if all(importlib.util.find_spec(name) for name in _COMMAND_MODULES):
        return [sys.executable, "-m", "gateway.cli", *args]
    module = {"serve": "serve", "example-agent": "example_agent"}[args[0]]
    code = (
        f"import argparse, sys; from gateway.cli import {module} as c;"
        "p = argparse.ArgumentParser(); c.register(p.add_subparsers());"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.run(a))"
    )
    return [sys.executable, "-c", code, *args]


async def wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{url}: the process exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up within 30 s")


async def conversation(
    person: AgentClient, brand_agent: str, until: float, latencies: list[float]
) -> None:
    """Send, wait for the reply on the stream, repeat until `until`."""
    stream = person.stream(after=0, heartbeat=5)
    task: str | None = None
    rounds = 0
    try:
        while time.monotonic() < until:
            if rounds % ROUNDS_PER_TASK == 0:
                task = None
            started = time.perf_counter()
            sent = await person.send(brand_agent, "Hi, is anyone there?", task=task)
            task = sent["task"]
            while True:
                item = await anext(stream)
                if item["envelope"].get("reply_to") == sent["id"]:
                    break
            latencies.append(time.perf_counter() - started)
            rounds += 1
    finally:
        await stream.aclose()


async def queue_backlog(
    gateway_url: str, session: aiohttp.ClientSession, agents: list[str], count: int
) -> int:
    """Send `count` envelopes (new tasks, from 10 people) while the endpoints are down."""
    if count <= 0:
        return 0
    people = []
    for n in range(10):
        person = AgentClient(
            gateway_url,
            f"backlog{n}@people.example",
            PrivateKey.generate(),
            audience="gw.example",
            session=session,
        )
        await person.register_personal()
        people.append(person)
    for n in range(count):
        await people[n % 10].send(agents[n % len(agents)], "Hi, is anyone there?")
    return count


async def until_drained(gateway_url: str, session: aiohttp.ClientSession) -> None:
    """Poll /metrics until no outbox row is pending."""
    while True:
        async with session.get(gateway_url + "/metrics") as response:
            text = await response.text()
        if re.search(r"^switchboard_outbox_pending 0(\.0)?$", text, re.MULTILINE):
            return
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="sb-bench-delivery-"))
    gateway_port, agent_ports = free_port(), [free_port() for _ in range(args.brand_agents)]
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SWITCHBOARD_DATA_DIR": str(data_dir / "var"),
        "SWITCHBOARD_PORT": str(gateway_port),
        "SWITCHBOARD_DOMAIN": "gw.example",
        "SWITCHBOARD_PERSONAL_DOMAIN": "people.example",
        "SWITCHBOARD_ADMIN_TOKEN": ADMIN,
        "SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS": "127.0.0.0/8",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_RATE_PER_MINUTE": "1000000",
    }
    processes: list[subprocess.Popen[bytes]] = []
    log = (data_dir / "processes.log").open("wb")
    try:
        gateway_command = cli("serve")
        if args.profile is not None:
            gateway_command = [
                sys.executable,
                "-m",
                "bench.profiled_gateway",
                str(args.profile.resolve()),
            ]
        processes.append(spawn(gateway_command, env, log))
        await wait_http(gateway_url + "/healthz", processes[0])
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            admin = StaffClient(gateway_url, ADMIN, session=session)
            brand = await admin.create_brand("acme.example", "Acme")
            staff = StaffClient(gateway_url, brand["token"], session=session)
            await staff.call(
                "PUT",
                "/v1/brands/acme.example/policy",
                token=staff.token,
                body={
                    "contact": {"rate_per_minute": 100_000},
                    "escalation": {
                        "human_requested": False,
                        "frustration": False,
                        "max_turns_without_progress": 1000,
                    },
                },
            )
            agents: list[str] = []
            commands: list[list[str]] = []
            for index, port in enumerate(agent_ports):
                address = f"support{index}@acme.example"
                key = PrivateKey.generate()
                key_path = data_dir / f"support{index}.jwk"
                key.save(key_path)
                await staff.register_brand_agent(
                    address,
                    key,
                    endpoint=f"http://127.0.0.1:{port}/webhook",
                    max_batch=args.max_batch,
                )
                command = cli(
                    "example-agent",
                    "--port",
                    str(port),
                    "--gateway",
                    gateway_url,
                    "--key",
                    str(key_path),
                    "--address",
                    address,
                )
                commands.append(command)
                agents.append(address)
            backlog = await queue_backlog(gateway_url, session, agents, args.drain)
            for command in commands:
                processes.append(spawn(command, env, log))
            drain_started = time.perf_counter()
            for index, port in enumerate(agent_ports):
                await wait_http(f"http://127.0.0.1:{port}/", processes[index + 1])
            if backlog:
                await until_drained(gateway_url, session)
                elapsed = time.perf_counter() - drain_started
                print(
                    f"drain: {backlog} envelopes queued while {len(agents)} endpoint(s) were"
                    f" down, delivered (with sync replies accepted) in {elapsed:.2f} s ="
                    f" {backlog / elapsed:.0f} deliveries/s (includes the agents' start-up)"
                )

            batches = f", batches of up to {args.max_batch}" if args.max_batch > 1 else ""
            print(
                f"delivery round trip: personal agent -> gateway -> {len(agents)} brand"
                f" endpoint(s) (sync reply{batches}) -> SSE stream; {args.seconds:g} s per level"
            )
            print(
                f"{'conversations':>13} {'round trips':>11} {'p50 ms':>8} {'p99 ms':>8}"
                f" {'deliveries/s':>12} {'gw µs':>7} {'agent µs':>8} {'gen µs':>7}"
            )
            made = 0
            for level in [1, *args.conversations] if args.warmup else args.conversations:
                people = []
                for _ in range(level):
                    person = AgentClient(
                        gateway_url,
                        f"p{made}@people.example",
                        PrivateKey.generate(),
                        audience="gw.example",
                        session=session,
                    )
                    made += 1
                    await person.register_personal()
                    people.append(person)
                latencies: list[float] = []
                last = args.warmup and made > 1 and level == args.conversations[-1]
                if args.profile is not None and (last or not args.warmup):
                    processes[0].send_signal(signal.SIGUSR1)  # profile this level only
                pids = [process.pid for process in processes]
                cpu_before = [cpu_seconds(pid) for pid in pids] + [cpu_seconds()]
                started = time.perf_counter()
                until = time.monotonic() + (
                    2.0 if args.warmup and not people[1:] and made == 1 else args.seconds
                )
                await asyncio.gather(
                    *(
                        conversation(person, agents[n % len(agents)], until, latencies)
                        for n, person in enumerate(people)
                    )
                )
                elapsed = time.perf_counter() - started
                cpu_after = [cpu_seconds(pid) for pid in pids] + [cpu_seconds()]
                if args.warmup and made == 1:
                    continue  # the warm-up level
                used = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
                print_level(level, latencies, elapsed, [used[0], sum(used[1:-1]), used[-1]])
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    if args.a2a:
        with (data_dir / "a2a_peer.log").open("wb") as peer_log:
            await a2a_levels(args, env, peer_log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--brand-agents", type=int, default=1)
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument(
        "--drain", type=int, default=300, help="envelopes queued before the endpoints start"
    )
    parser.add_argument("--no-a2a", dest="a2a", action="store_false")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=1,
        help="register the endpoints for ordered batches of up to N envelopes per POST",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the gateway under bench.profiled_gateway, profiling the last level, into DIR",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
