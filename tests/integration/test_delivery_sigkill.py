"""Durability: the gateway is killed with SIGKILL while envelopes wait for a dead endpoint and
again while they are being delivered; every accepted envelope still arrives, in order, and a
repeat only ever carries the same webhook-id."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.cli import _COMMAND_MODULES
from gateway.client import AgentClient, GatewayProblem, StaffClient
from identity.keys import PrivateKey
from tests.delivery.webhook_endpoints import Endpoint, Received, free_port

ADMIN = "sbt_sigkill_admin_token_0123456789"
ENVELOPES = 500
PEOPLE = 10
REPO = Path(__file__).resolve().parents[2]


def serve_command() -> list[str]:
    """`python -m gateway.cli serve`; while a command module of the CLI is not yet merged in
    this branch, the same serve function called directly."""
    if all(importlib.util.find_spec(name) for name in _COMMAND_MODULES):
        return [sys.executable, "-m", "gateway.cli", "serve"]
    return [
        sys.executable,
        "-c",
        "import argparse, sys; from gateway.cli.serve import _serve;"
        " sys.exit(_serve(argparse.Namespace(host=None, port=None)))",
    ]


class Gateway:
    """`switchboard serve` in a subprocess on a fixed port and data folder."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "SWITCHBOARD_DATA_DIR": str(self.data_dir),
            "SWITCHBOARD_PORT": str(self.port),
            "SWITCHBOARD_DOMAIN": "gw.example",
            "SWITCHBOARD_PERSONAL_DOMAIN": "people.example",
            "SWITCHBOARD_ADMIN_TOKEN": ADMIN,
            "SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS": "127.0.0.0/8",
            "SWITCHBOARD_DELIVERY_BACKOFF_BASE": "0.05",
            "SWITCHBOARD_DELIVERY_BACKOFF_MAX": "0.3",
            "SWITCHBOARD_DELIVERY_SWEEP": "0.1",
            "SWITCHBOARD_DELIVERY_TIMEOUT": "2",
            "SWITCHBOARD_LOG_LEVEL": "warning",
        }
        self.process = self._spawn(env)
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"the gateway exited with {self.process.returncode}")
                try:
                    async with session.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the gateway did not start within 20 s")

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = self.data_dir.parent / f"gateway-{self.starts}.log"
        with log.open("wb") as output:
            return subprocess.Popen(
                serve_command(), env=env, stdout=output, stderr=subprocess.STDOUT, cwd=REPO
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def send_all(
    gateway: Gateway,
    envelopes: list[dict[str, Any]],
    acknowledged: set[str],
    halfway: asyncio.Event | None = None,
) -> None:
    """POST the envelopes not yet acknowledged, 16 at a time; set `halfway` when half of all
    are acknowledged."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for envelope in envelopes:
        if envelope["id"] not in acknowledged:
            queue.put_nowait(envelope)

    async with aiohttp.ClientSession() as session:
        client = AgentClient(
            gateway.url,
            "x@people.example",
            PrivateKey.generate(),
            audience="gw.example",
            session=session,
        )

        async def worker() -> None:
            while not queue.empty():
                envelope = queue.get_nowait()
                try:
                    await client.post_envelope(envelope)
                except (aiohttp.ClientError, GatewayProblem):
                    continue  # the gateway died under us: resent after the restart
                acknowledged.add(envelope["id"])
                if halfway is not None and len(acknowledged) >= len(envelopes) // 2:
                    halfway.set()

        await asyncio.gather(*(worker() for _ in range(16)))


@pytest.mark.slow
@pytest.mark.parametrize("max_batch", [1, 20])
async def test_sigkill_never_loses_an_accepted_envelope(tmp_path: Path, max_batch: int) -> None:
    """500 envelopes to a dead endpoint, SIGKILL while sending, restart, endpoint up, SIGKILL
    while delivering, restart: all 500 arrive in acceptance order; repeats keep their
    webhook-id (in batches of up to 20: their item id; a batch may be made up afresh)."""
    gateway = Gateway(tmp_path / "var", free_port())
    arrivals: list[tuple[str, str]] = []  # (envelope id, webhook-id or batch item id)

    async def record(_endpoint: Endpoint, received: Received) -> web.StreamResponse:
        body = received.json
        if body["type"] == "batch":
            arrivals.extend((item["envelope"]["id"], item["id"]) for item in body["items"])
        else:
            arrivals.append((body["envelope"]["id"], received.webhook_id))
        await asyncio.sleep(0.002)
        return web.Response(status=204)

    endpoint = Endpoint(respond=record)
    try:
        await gateway.start()
        async with aiohttp.ClientSession() as session:
            admin = StaffClient(gateway.url, ADMIN, session=session)
            brand = await admin.create_brand("acme.example", "Acme")
            staff = StaffClient(gateway.url, brand["token"], session=session)
            support_key = PrivateKey.generate()
            await staff.register_brand_agent(
                "support@acme.example", support_key, endpoint=endpoint.url, max_batch=max_batch
            )
            people = []
            for n in range(PEOPLE):
                person = AgentClient(
                    gateway.url,
                    f"p{n}@people.example",
                    PrivateKey.generate(),
                    audience="gw.example",
                    session=session,
                )
                await person.register_personal()
                people.append(person)
        envelopes = [
            people[n % PEOPLE].envelope("support@acme.example", f"message {n}")
            for n in range(ENVELOPES)
        ]

        acknowledged: set[str] = set()
        halfway = asyncio.Event()
        sending = asyncio.create_task(send_all(gateway, envelopes, acknowledged, halfway))
        await halfway.wait()
        gateway.kill()  # 1: mid-sending, the endpoint down
        await sending
        killed_with = len(acknowledged)
        await gateway.start()
        await send_all(gateway, envelopes, acknowledged)  # resend what was not acknowledged
        assert len(acknowledged) == ENVELOPES

        await endpoint.start()
        deadline = time.monotonic() + 30
        while len(arrivals) < ENVELOPES // 2:
            assert time.monotonic() < deadline, "deliveries did not start"
            await asyncio.sleep(0.005)
        gateway.kill()  # 2: mid-delivery
        killed_at_arrival = len(arrivals)
        await gateway.start()
        while len({envelope_id for envelope_id, _ in arrivals}) < ENVELOPES:
            assert time.monotonic() < deadline, (
                f"{len({e for e, _ in arrivals})} of {ENVELOPES} arrived within 30 s"
            )
            await asyncio.sleep(0.02)
    finally:
        gateway.stop()
        await endpoint.stop()

    webhook_ids: dict[str, set[str]] = defaultdict(set)
    for envelope_id, webhook_id in arrivals:
        webhook_ids[envelope_id].add(webhook_id)
    duplicates = len(arrivals) - len(webhook_ids)
    print(
        f"\nsigkill: {ENVELOPES} envelopes, killed after {killed_with} acknowledged and after"
        f" {killed_at_arrival} arrivals; {len(arrivals)} requests, {len(webhook_ids)} distinct,"
        f" {duplicates} repeats"
    )
    assert set(webhook_ids) == {envelope["id"] for envelope in envelopes}
    assert all(len(ids) == 1 for ids in webhook_ids.values()), "a repeat with a new webhook-id"

    with sqlite3.connect(tmp_path / "var" / "switchboard.db") as db:
        order = dict(db.execute("SELECT envelope_id, pk FROM envelopes").fetchall())
    first_seen: list[str] = []
    for envelope_id, _ in arrivals:
        if envelope_id not in first_seen:
            first_seen.append(envelope_id)
    assert [order[e] for e in first_seen] == sorted(order[e] for e in first_seen)
