"""Notification channels against real receivers: webhook and Slack (aiohttp servers), email
(aiosmtpd), and the live operator stream (an SSE client)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from sqlalchemy import select

from gateway.app import Overrides
from gateway.client import GatewayProblem
from gateway.clock import ManualClock
from gateway.notify import Notification, Result
from gateway.notify.email import EmailChannel
from gateway.notify.handler import NotificationHandler
from gateway.notify.slack import SlackChannel
from gateway.notify.webhook import WebhookChannel
from gateway.store.database import create_engine
from gateway.store.tables import outbox
from identity.keys import PrivateKey, PublicKey
from identity.webhook import verify_webhook
from tests.conftest import make_settings, start_gateway
from tests.escalation.conftest import BRAND, Scene, build_scene

EVENT = {
    "id": "evt_01JDZ4S0000000000000000001",
    "type": "escalation.opened",
    "at": "2026-11-26T06:10:00.000Z",
    "brand": BRAND,
    "escalation": {
        "id": "esc_01JDZ4S0000000000000000001",
        "task": "tsk_01JDZ4Q7AAAAAAAAAAAAAAAAAA",
        "state": "open",
        "reason": "human_requested",
        "reason_text": "The initiator asked for a person.",
        "rule": "signals.wants_human",
        "priority": "high",
        "summary": "Task tsk_1: alice -> support.\nAsked: my speaker <blinks> & beeps",
        "claimed_by": None,
    },
    "task": {"id": "tsk_01JDZ4Q7AAAAAAAAAAAAAAAAAA", "state": "working", "control": "human"},
    "link": "https://switchboard.example/v1/tasks/tsk_01JDZ4Q7AAAAAAAAAAAAAAAAAA",
}


class Receiver:
    """An HTTP receiver that answers from a script of statuses, then 200; records requests."""

    def __init__(self, script: list[int] | None = None, headers: dict[str, str] | None = None):
        self.script = list(script or [])
        self.headers = headers or {}
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        status = self.script.pop(0) if self.script else 200
        return web.Response(status=status, headers=self.headers if status != 200 else None)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        await self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))


class Mailbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Any:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


async def test_webhook_sends_the_event_signed_with_standard_webhooks_v1a(session):
    """The body is the event; webhook-id is the event id; the v1a signature verifies with the
    gateway's public key over id.timestamp.body."""
    key = PrivateKey.generate()
    async with Receiver() as receiver:
        result = await WebhookChannel(receiver.url, key, session).send(Notification("chn_1", EVENT))
    assert result == Result.ok("HTTP 200")
    ((headers, body),) = receiver.requests
    assert json.loads(body) == EVENT
    assert headers["webhook-id"] == EVENT["id"]
    stamp = int(headers["webhook-timestamp"])
    assert verify_webhook(
        [key.public], EVENT["id"], stamp, body, headers["webhook-signature"], datetime.now(UTC)
    )
    assert not verify_webhook(
        [PrivateKey.generate().public], EVENT["id"], stamp, body, headers["webhook-signature"]
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, Result.retry("HTTP 503", 7.0)),
        (429, Result.retry("HTTP 429", 7.0)),
        (410, Result.disable("the receiver answered 410 Gone")),
        (400, Result.final("the receiver refused it with HTTP 400")),
    ],
)
async def test_webhook_answers_map_to_retry_disable_or_final(session, status, expected):
    """408/429/5xx retry (honouring Retry-After), 410 disables, other 4xx are final."""
    async with Receiver([status], {"Retry-After": "7"}) as receiver:
        result = await WebhookChannel(receiver.url, PrivateKey.generate(), session).send(
            Notification("chn_1", EVENT)
        )
    assert result == expected


async def test_unreachable_receiver_is_retried(session):
    """A refused connection is a retry, not a failure of the event."""
    async with Receiver() as receiver:
        url = receiver.url
    result = await WebhookChannel(url, PrivateKey.generate(), session, timeout=2).send(
        Notification("chn_1", EVENT)
    )
    assert result.status == "retry" and "could not reach" in result.detail


async def test_slack_message_has_text_and_blocks_with_reason_priority_summary_link(session):
    """The Slack body carries `text` and `blocks`: reason, priority, summary and the link."""
    async with Receiver() as receiver:
        result = await SlackChannel(receiver.url, session).send(Notification("chn_2", EVENT))
    assert result.status == "ok"
    body = json.loads(receiver.requests[0][1])
    assert "human_requested" in body["text"] and "[high]" in body["text"]
    flat = json.dumps(body["blocks"])
    for needle in (
        "*Reason:* human_requested",
        "*Priority:* high",
        "my speaker <blinks>",
        EVENT["link"],
    ):
        assert needle in flat, needle
    assert body["blocks"][-1]["elements"][0]["url"] == EVENT["link"]


async def test_email_is_plain_text_and_html_with_a_stable_message_id(smtp):
    """One mail per event: multipart/alternative with text and escaped HTML; the Message-ID is
    made from the event id, so a retry is the same mail."""
    controller, mailbox = smtp
    channel = EmailChannel(
        f"smtp://127.0.0.1:{controller.port}", "switchboard@gw.example", "ops@acme.example"
    )
    assert (await channel.send(Notification("chn_3", EVENT))).status == "ok"
    (message,) = mailbox.messages
    assert message["To"] == "ops@acme.example"
    assert message["Message-ID"] == f"<{EVENT['id']}.chn_3@gw.example>"
    assert "human_requested" in message["Subject"]
    kinds = {part.get_content_type(): part for part in message.walk()}
    plain = kinds["text/plain"].get_payload(decode=True).decode()
    html = kinds["text/html"].get_payload(decode=True).decode()
    assert "my speaker <blinks> & beeps" in plain and EVENT["link"] in plain
    assert "my speaker &lt;blinks&gt; &amp; beeps" in html and EVENT["link"] in html


async def test_email_to_an_unreachable_server_is_retried():
    """No SMTP server listening: retry later."""
    channel = EmailChannel("smtp://127.0.0.1:9", "a@gw.example", "b@acme.example", timeout=2)
    result = await channel.send(Notification("chn_3", EVENT))
    assert result.status == "retry"


async def test_channels_are_added_listed_and_removed(scene: Scene):
    """POST → 201 with an id; GET lists; DELETE → 204 and gone; bad bodies are 400."""
    path = f"/v1/brands/{BRAND}/channels"
    made = await scene.admin.post(path, {"kind": "slack", "url": "http://127.0.0.1:9/T1"})
    assert made["kind"] == "slack" and made["status"] == "active"
    assert made["events"][0] == "escalation.opened"
    assert [c["id"] for c in (await scene.admin.get(path))["items"]] == [made["id"]]
    for bad in (
        {"kind": "webhook"},
        {"kind": "webhook", "url": "ftp://x.example/a"},
        {"kind": "email", "to": "ops@acme.example"},  # this gateway has no SMTP server
        {"kind": "slack", "url": "http://127.0.0.1:9/T1", "events": ["escalation.nope"]},
    ):
        with pytest.raises(GatewayProblem) as refused:
            await scene.admin.post(path, bad)
        assert refused.value.status == 400, bad
    await scene.admin.call("DELETE", f"{path}/{made['id']}", token=scene.admin.token)
    assert (await scene.admin.get(path))["items"] == []
    with pytest.raises(GatewayProblem) as operator_refused:
        await scene.jane.post(path, {"kind": "slack", "url": "http://127.0.0.1:9/T1"})
    assert operator_refused.value.status == 403


async def _notification_rows(scene: Scene) -> list[dict[str, Any]]:
    engine = create_engine(scene.gw.settings.sqlalchemy_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(outbox).where(outbox.c.kind == "notification").order_by(outbox.c.pk)
                )
            ).all()
    finally:
        await engine.dispose()
    return [{"partition": r.partition, "payload": json.loads(r.payload)} for r in rows]


async def _drive(handler: NotificationHandler, rows: list[dict[str, Any]]) -> list[Result]:
    """What the outbox worker does with each row: attempt until it is not a retry."""
    outcomes = []
    for row in rows:
        for _ in range(5):
            result = await handler.handle(row["payload"])
            if result.status != "retry":
                break
        outcomes.append(result)
    return outcomes


async def test_one_notification_per_channel_per_event_even_after_two_failures(scene: Scene):
    """Each event gets one outbox row per channel; a receiver failing twice still ends with
    exactly one accepted delivery per event, every attempt carrying the same webhook-id."""
    svc = scene.gw.services
    async with Receiver([503, 503]) as hook, Receiver() as slack:
        path = f"/v1/brands/{BRAND}/channels"
        webhook = await scene.admin.post(path, {"kind": "webhook", "url": hook.url})
        chat = await scene.admin.post(
            path, {"kind": "slack", "url": slack.url, "events": ["escalation.opened"]}
        )
        task = await scene.open_task()
        await scene.say(task, "Can I talk to a human please?")
        (escalation,) = await scene.escalations()
        await scene.jane.post(f"/v1/escalations/{escalation['id']}/claim")
        rows = await _notification_rows(scene)
        assert sorted((r["partition"], r["payload"]["event"]["type"]) for r in rows) == sorted(
            [
                (webhook["id"], "escalation.opened"),
                (chat["id"], "escalation.opened"),
                (webhook["id"], "escalation.claimed"),
            ]
        )
        handler = NotificationHandler(
            channels=svc.desk.channels,
            key=svc.gateway_key,
            session=scene.gw.session,
            clock=scene.clock,
            smtp_url=None,
            mail_from="switchboard@gw.example",
        )
        results = await _drive(handler, rows)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    ids = [headers["webhook-id"] for headers, _ in hook.requests]
    opened, claimed = (r["payload"]["event"]["id"] for r in rows if r["partition"] == webhook["id"])
    assert ids == [opened, opened, opened, claimed]
    assert len(slack.requests) == 1
    jwk = svc.gateway_key.public.jwk
    headers, body = hook.requests[-1]
    assert verify_webhook(
        [PublicKey.from_jwk(jwk)],
        headers["webhook-id"],
        int(headers["webhook-timestamp"]),
        body,
        headers["webhook-signature"],
    )


async def test_a_410_disables_the_channel_and_later_events_are_dropped(scene: Scene):
    """After a 410 the channel is disabled; its pending notifications end as final."""
    svc = scene.gw.services
    async with Receiver([410]) as hook:
        made = await scene.admin.post(
            f"/v1/brands/{BRAND}/channels", {"kind": "webhook", "url": hook.url}
        )
        task = await scene.open_task()
        await scene.agent_act(task, "escalate", "Over to you.")
        (escalation,) = await scene.escalations()
        await scene.jane.post(f"/v1/escalations/{escalation['id']}/claim")
        handler = NotificationHandler(
            channels=svc.desk.channels,
            key=svc.gateway_key,
            session=scene.gw.session,
            clock=scene.clock,
            smtp_url=None,
            mail_from="switchboard@gw.example",
        )
        results = await _drive(handler, await _notification_rows(scene))
    assert [r.status for r in results] == ["disable", "final"]
    (channel,) = (await scene.admin.get(f"/v1/brands/{BRAND}/channels"))["items"]
    assert channel["id"] == made["id"] and channel["status"] == "disabled"


async def test_email_channel_end_to_end(tmp_path: Path, smtp):
    """A gateway with SWITCHBOARD_SMTP_URL takes an email channel and mails the opened event."""
    controller, mailbox = smtp
    clock = ManualClock(datetime.now(UTC))
    settings = make_settings(
        tmp_path / "var", timer_interval_s=0.0, smtp_url=f"smtp://127.0.0.1:{controller.port}"
    )
    async with start_gateway(settings, Overrides(clock=clock, announce=lambda _t: None)) as gw:
        scene = await build_scene(gw, clock)
        await scene.admin.post(
            f"/v1/brands/{BRAND}/channels", {"kind": "email", "to": "ops@acme.example"}
        )
        task = await scene.open_task()
        await scene.say(task, "Can I talk to a human please?")
        svc = gw.services
        handler = NotificationHandler(
            channels=svc.desk.channels,
            key=svc.gateway_key,
            session=gw.session,
            clock=clock,
            smtp_url=settings.smtp_url,
            mail_from=f"switchboard@{settings.domain}",
        )
        results = await _drive(handler, await _notification_rows(scene))
    assert [r.status for r in results] == ["ok"]
    (message,) = mailbox.messages
    assert message["To"] == "ops@acme.example" and task in message.as_string()


async def _sse(scene: Scene, after: int | None, count: int) -> list[tuple[str, str, dict]]:
    headers = {"Authorization": f"Bearer {scene.jane.token}"}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    events: list[tuple[str, str, dict]] = []
    async with scene.gw.session.get(
        scene.gw.url + "/v1/escalations/stream", headers=headers, params={"heartbeat": 0.2}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line == "":
                if "data" in fields:
                    events.append((fields["id"], fields["event"], json.loads(fields["data"])))
                    if len(events) == count:
                        break
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.lstrip()
    return events


async def test_operator_stream_is_live_and_resumes_after_last_event_id(scene: Scene):
    """The stream carries opened and claimed in seq order; Last-Event-ID resumes after it;
    a new event arrives live while the client waits."""
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Over to you.")
    (escalation,) = await scene.escalations()
    await scene.jane.post(f"/v1/escalations/{escalation['id']}/claim")
    first = await _sse(scene, None, 2)
    assert [(i, kind) for i, kind, _ in first] == [
        ("1", "escalation.opened"),
        ("2", "escalation.claimed"),
    ]
    assert first[1][2]["escalation"]["claimed_by"] == scene.jane_address
    assert first[1][2]["seq"] == 2 and first[1][2]["task"]["id"] == task

    async def later() -> None:
        await asyncio.sleep(0.3)
        await scene.jane.post(f"/v1/escalations/{escalation['id']}/resolve", {"text": "Done."})

    resolver = asyncio.create_task(later())
    resumed = await asyncio.wait_for(_sse(scene, 2, 1), 10)
    await resolver
    assert [(i, kind) for i, kind, _ in resumed] == [("3", "escalation.resolved")]


async def test_stream_needs_brand_staff(scene: Scene):
    """A personal agent gets 403 on the operator stream; nobody at all gets 401."""
    async with scene.gw.session.get(scene.gw.url + "/v1/escalations/stream") as response:
        assert response.status == 401
    headers = {"Authorization": f"Bearer {scene.alice.token()}"}
    async with scene.gw.session.get(
        scene.gw.url + "/v1/escalations/stream", headers=headers
    ) as response:
        assert response.status == 403
