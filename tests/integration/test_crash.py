"""Crash safety: two replicas as processes, one SIGKILLed and restarted, NATS restarted, and
still every accepted envelope is in its inbox once, in order, and reaches its endpoint.

Everything runs on 127.0.0.1: the replicas are `python -m gateway.cli serve` subprocesses on a
private PostgreSQL database and NATS prefix; the endpoints are an aiohttp server in this test.
Senders behave like real clients: an envelope that got no answer (the replica died under it)
is posted again, unchanged, to the other replica; the replay memory turns a repeat of a
committed envelope into a duplicate answer.

The NATS restart uses the machine's own nats-server (the command `.ci/run` starts it with); it
is skipped, with a note in the printed counts, where that command is not available.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.client import AgentClient, GatewayProblem, StaffClient
from gateway.store.tables import envelopes, outbox
from identity.keys import PrivateKey
from tests.conftest import ADMIN_TOKEN, DistributedServices

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SENDERS = 20
PER_SENDER = 50
ENDPOINTS = 4
KILL_AT = 300  # accepted envelopes before replica A is SIGKILLed
NATS_RESTART_AT = 650  # ... and before NATS is restarted
DEADLINE_S = 90.0  # the whole scenario, sending and draining, within this
NATS_SERVER = "/usr/sbin/nats-server"
NATS_START = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", NATS_SERVER, "--",
    "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server",
    "-l", "/var/log/nats-server.log",
]  # fmt: skip
NATS_STOP = ["start-stop-daemon", "--stop", "--quiet", "--retry", "5", "--exec", NATS_SERVER]
DELIVERY_BUILT = importlib.util.find_spec("gateway.delivery") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Replica:
    """One `switchboard serve` process; SIGKILL and start again on the same port and folder."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.folder = folder
        self.env = {
            **env,
            "SWITCHBOARD_PORT": str(self.port),
            "SWITCHBOARD_DATA_DIR": str(folder / "data"),
        }
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.starts += 1
        with (self.folder / f"{self.name}-{self.starts}.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                if self.process.returncode is not None:
                    raise AssertionError(f"{self.name} exited: see {self.folder}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready in 20 s")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                await self.kill()


@dataclass
class Endpoints:
    """The brand's endpoints: record every webhook (agent, webhook-id, envelope id)."""

    received: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received[request.match_info["agent"]].append(
            (request.headers.get("webhook-id", ""), body["envelope"]["id"])
        )
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def endpoint_server(endpoints: Endpoints) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook/{agent}", endpoints.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class NatsRestarter:
    """Restart the machine's nats-server once, and make sure it runs again whatever happens."""

    def __init__(self) -> None:
        self.available = shutil.which("start-stop-daemon") is not None and os.access(
            NATS_SERVER, os.X_OK
        )
        self.restarted = False

    async def restart(self) -> None:
        if not self.available:
            return
        await asyncio.to_thread(subprocess.run, NATS_STOP, check=False, capture_output=True)
        await asyncio.sleep(1.0)
        await self.ensure_running()
        self.restarted = True

    async def ensure_running(self) -> None:
        if not self.available or _port_open(4222):
            return
        await asyncio.to_thread(subprocess.run, NATS_START, check=False, capture_output=True)
        for _ in range(100):
            if _port_open(4222):
                return
            await asyncio.sleep(0.1)


@dataclass
class Run:
    """What the senders saw; `milestones` fire when so many envelopes are accepted."""

    accepted: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # id: to, sender, n
    duplicates: int = 0
    retries: int = 0
    milestones: dict[int, asyncio.Event] = field(
        default_factory=lambda: {KILL_AT: asyncio.Event(), NATS_RESTART_AT: asyncio.Event()}
    )

    def record(self, envelope_id: str, to: str, sender: str, number: int) -> None:
        self.accepted[envelope_id] = (to, sender, number)
        event = self.milestones.get(len(self.accepted))
        if event is not None:
            event.set()


async def _post_until_answered(
    clients: tuple[AgentClient, AgentClient], envelope: dict[str, Any], run: Run, first: int
) -> dict[str, Any]:
    """Post one envelope, switching replicas on a dead connection, until it is answered."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 40
    attempt = first
    while True:
        client = clients[attempt % 2]
        try:
            return await client.call("POST", "/v1/messages", body=envelope, time_limit=10)  # type: ignore[no-any-return]
        except (aiohttp.ClientError, TimeoutError, GatewayProblem) as exc:
            if isinstance(exc, GatewayProblem) and exc.status < 500:
                raise
            if loop.time() > give_up:
                raise
            run.retries += 1
            attempt += 1
            await asyncio.sleep(0.05)


async def test_two_replicas_survive_sigkill_and_a_nats_restart(
    distributed: DistributedServices, tmp_path: Path
) -> None:
    """1,000 envelopes from 20 senders over two replicas, one SIGKILLed and restarted, NATS
    restarted: every accepted envelope is once in its inbox, in each sender's order, and
    reaches its endpoint (repeats only under the same webhook-id)."""
    started = time.monotonic()
    endpoints = Endpoints()
    nats = NatsRestarter()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")},
        "SWITCHBOARD_DATABASE_URL": distributed.database_url,
        "SWITCHBOARD_NATS_URL": distributed.nats_url,
        "SWITCHBOARD_NATS_PREFIX": distributed.nats_prefix,
        "SWITCHBOARD_GATEWAY_KEY_FILE": str(tmp_path / "gateway_key.jwk"),
        "SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "SWITCHBOARD_DOMAIN": "gw.example",
        "SWITCHBOARD_PERSONAL_DOMAIN": "people.example",
        "SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS": "127.0.0.0/8",
        "SWITCHBOARD_RATE_PER_MINUTE": "100000",
        "SWITCHBOARD_DELIVERY_BACKOFF_BASE": "0.2",
        "SWITCHBOARD_DELIVERY_BACKOFF_MAX": "2",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    replicas = (Replica("a", env, tmp_path / "a"), Replica("b", env, tmp_path / "b"))
    run = Run()
    try:
        async with endpoint_server(endpoints) as hooks, aiohttp.ClientSession() as session:
            await asyncio.gather(*(replica.start() for replica in replicas))
            admin = StaffClient(replicas[0].url, ADMIN_TOKEN, session=session)
            brand = await admin.create_brand("acme.example", "Acme")
            staff = StaffClient(replicas[0].url, brand["token"], session=session)
            agents, agent_keys = [], []
            for number in range(ENDPOINTS):
                address = f"support{number}@acme.example"
                key = PrivateKey.generate()
                await staff.register_brand_agent(
                    address, key, description="Support", endpoint=f"{hooks}/hook/{address}"
                )
                agents.append(address)
                agent_keys.append(key)

            def client(replica: Replica, address: str, key: PrivateKey) -> AgentClient:
                return AgentClient(
                    replica.url, address, key, audience="gw.example", session=session
                )

            people = []
            for number in range(SENDERS):
                address, key = f"p{number}@people.example", PrivateKey.generate()
                await client(replicas[number % 2], address, key).register_personal()
                people.append((address, key))

            killed = asyncio.Event()
            nats_done = asyncio.Event()

            async def sender(index: int) -> None:
                address, key = people[index]
                clients = (client(replicas[0], address, key), client(replicas[1], address, key))
                for number in range(PER_SENDER):
                    to = agents[(index + number) % ENDPOINTS]
                    envelope = clients[0].envelope(to, f"{index}:{number}")
                    answer = await _post_until_answered(clients, envelope, run, index + number)
                    run.duplicates += bool(answer["duplicate"])
                    run.record(envelope["id"], to, address, number)

            async def chaos() -> None:
                await run.milestones[KILL_AT].wait()
                await replicas[0].kill()
                killed.set()
                await asyncio.sleep(1.0)
                await replicas[0].start()
                await run.milestones[NATS_RESTART_AT].wait()
                await nats.restart()
                nats_done.set()

            chaos_task = asyncio.create_task(chaos())
            await asyncio.gather(*(sender(index) for index in range(SENDERS)))
            await asyncio.wait_for(chaos_task, 30)
            sent_s = time.monotonic() - started

            readers = [
                client(replicas[n % 2], address, key)
                for n, (address, key) in enumerate(zip(agents, agent_keys, strict=True))
            ]
            inbox_orders = await _check_inboxes(run, readers)
            outbox_rows = await _check_outbox(run, distributed.database_url)
            delivered = 0
            if DELIVERY_BUILT:
                delivered = await _check_deliveries(run, inbox_orders, endpoints, started)
            print(
                f"\ncrash test: accepted={len(run.accepted)} duplicate_answers={run.duplicates}"
                f" client_retries={run.retries} replica_a_starts={replicas[0].starts}"
                f" nats_restarted={nats.restarted} "
                f" inbox_items={sum(len(ids) for ids in inbox_orders.values())}"
                f" outbox_rows={outbox_rows} endpoint_posts="
                f"{sum(len(v) for v in endpoints.received.values())}"
                f" delivered_distinct={delivered}"
                f" delivery_checked={DELIVERY_BUILT} sent_in={sent_s:.1f}s"
                f" total={time.monotonic() - started:.1f}s"
            )
            assert killed.is_set() and nats_done.is_set()
            assert len(run.accepted) == SENDERS * PER_SENDER
    finally:
        for replica in replicas:
            await replica.stop()
        await nats.ensure_running()


async def _check_inboxes(run: Run, readers: list[AgentClient]) -> dict[str, list[str]]:
    """Every inbox: seqs 1..n, each accepted envelope once, each sender's in its order.
    Returns each inbox's envelope ids in seq order (which is also commit order)."""
    orders = {}
    expected: dict[str, set[str]] = defaultdict(set)
    for envelope_id, (to, _sender, _n) in run.accepted.items():
        expected[to].add(envelope_id)
    for reader in readers:
        address = reader.address
        items: list[dict[str, Any]] = []
        while True:
            after = items[-1]["seq"] if items else 0
            page = (await reader.inbox(after=after, limit=500))["items"]
            if not page:
                break
            items.extend(page)
        seqs = [item["seq"] for item in items]
        ids = [item["envelope"]["id"] for item in items]
        assert seqs == list(range(1, len(seqs) + 1)), f"{address}: seqs have a gap"
        assert len(ids) == len(set(ids)), f"{address}: an envelope is in the inbox twice"
        assert set(ids) == expected[address], f"{address}: inbox differs from accepted"
        per_sender: dict[str, list[int]] = defaultdict(list)
        for envelope_id in ids:
            _to, sender, number = run.accepted[envelope_id]
            per_sender[sender].append(number)
        for sender, numbers in per_sender.items():
            assert numbers == sorted(numbers), f"{address}: {sender}'s envelopes out of order"
        orders[address] = ids
    return orders


async def _check_outbox(run: Run, database_url: str) -> int:
    """Each accepted envelope has exactly one delivery row in the outbox (its webhook-id)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(envelopes.c.pk, envelopes.c.envelope_id))
            ids = {int(row.pk): str(row.envelope_id) for row in result}
            rows = (
                await conn.execute(
                    select(outbox.c.public_id, outbox.c.payload).where(outbox.c.kind == "delivery")
                )
            ).all()
    finally:
        await engine.dispose()
    per_envelope: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        per_envelope[ids[int(json.loads(row.payload)["envelope_pk"])]].append(row.public_id)
    assert set(per_envelope) == set(run.accepted)
    assert all(len(ids) == 1 for ids in per_envelope.values()), "two outbox rows for one envelope"
    return len(rows)


async def _check_deliveries(
    run: Run, inbox_orders: dict[str, list[str]], endpoints: Endpoints, started: float
) -> int:
    """Wait for the endpoints to have every accepted envelope; repeats share a webhook-id;
    each endpoint first saw its envelopes in the order they were committed."""
    while time.monotonic() - started < DEADLINE_S:
        got = {eid for posts in endpoints.received.values() for _, eid in posts}
        if got >= set(run.accepted):
            break
        await asyncio.sleep(0.2)
    ids_by_envelope: dict[str, set[str]] = defaultdict(set)
    for address, committed in inbox_orders.items():
        first_seen: list[str] = []
        for webhook_id, envelope_id in endpoints.received[address]:
            assert run.accepted[envelope_id][0] == address, "delivered to the wrong endpoint"
            if envelope_id not in ids_by_envelope:
                first_seen.append(envelope_id)
            ids_by_envelope[envelope_id].add(webhook_id)
        assert first_seen == committed, f"{address}: deliveries out of commit order"
    missing = set(run.accepted) - set(ids_by_envelope)
    assert not missing, f"{len(missing)} accepted envelopes never reached their endpoint"
    assert all(len(ids) == 1 for ids in ids_by_envelope.values()), "a repeat had a new id"
    return len(ids_by_envelope)
