"""Notification channels against real receivers: webhook and Slack (aiohttp servers), email
(aiosmtpd), and the live operator stream (an SSE client). End-to-end tests go through the
gateway's own outbox worker (rows of kind `notification`), on both backends."""

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

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from sqlalchemy import select

from gateway.app import Overrides
from gateway.client import GatewayProblem
from gateway.clock import ManualClock
from gateway.delivery.schedule import Verdict
from gateway.delivery.sender import WebhookSender
from gateway.delivery.worker import Attempt
from gateway.notify import Notification
from gateway.notify.email import EmailChannel, mail
from gateway.notify.slack import SlackChannel, slack_message
from gateway.notify.webhook import WebhookChannel
from gateway.store.database import create_engine
from gateway.store.tables import outbox
from identity.keys import PrivateKey, PublicKey
from identity.webhook import verify_webhook
from tests.conftest import make_settings, start_gateway
from tests.delivery.webhook_endpoints import LOOPBACK, fast_delivery, wait_until
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
async def sender() -> AsyncIterator[WebhookSender]:
    """The gateway's SSRF-safe sender, allowed to reach the loopback receivers."""
    client = WebhookSender(timeout_s=2.0, allow=LOOPBACK)
    yield client
    await client.close()


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


async def test_webhook_sends_the_event_signed_with_standard_webhooks_v1a(sender):
    """The body is the event; webhook-id is the event id; the v1a signature verifies with the
    gateway's public key over id.timestamp.body."""
    key = PrivateKey.generate()
    async with Receiver() as receiver:
        result = await WebhookChannel(receiver.url, key, sender).send(Notification("chn_1", EVENT))
    assert result == Attempt.ok(200)
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
        (503, Attempt.retry("HTTP 503", 503, 7.0)),
        (429, Attempt.retry("HTTP 429", 429, 7.0)),
        (410, Attempt.disable("the receiver answered 410 Gone", 410)),
        (400, Attempt.final("the receiver refused it with HTTP 400", 400)),
        (302, Attempt.final("the receiver refused it with HTTP 302", 302)),
    ],
)
async def test_webhook_answers_map_to_retry_disable_or_final(sender, status, expected):
    """The delivery rules: 408/429/5xx retry (honouring Retry-After), 410 disables, other 4xx
    and redirects (never followed) are final."""
    headers = {"Retry-After": "7", "Location": "http://127.0.0.1:9/elsewhere"}
    async with Receiver([status], headers) as receiver:
        result = await WebhookChannel(receiver.url, PrivateKey.generate(), sender).send(
            Notification("chn_1", EVENT)
        )
    assert result == expected
    assert len(receiver.requests) == 1


async def test_unreachable_receiver_is_retried(sender):
    """A refused connection is a retry, not a failure of the event."""
    async with Receiver() as receiver:
        url = receiver.url
    result = await WebhookChannel(url, PrivateKey.generate(), sender).send(
        Notification("chn_1", EVENT)
    )
    assert result.verdict == Verdict.RETRY and "could not reach" in str(result.error)


async def test_channels_refuse_private_addresses_without_the_allow_list():
    """The channels use the SSRF-safe sender: a loopback literal or a name resolving to
    loopback is refused for good (endpoint_forbidden) and nothing is sent."""
    strict = WebhookSender(timeout_s=2.0)
    try:
        async with Receiver() as receiver:
            port = receiver.server.port if receiver.server else 0
            for url in (receiver.url, f"http://localhost:{port}/hook"):
                hook = await WebhookChannel(url, PrivateKey.generate(), strict).send(
                    Notification("chn_1", EVENT)
                )
                chat = await SlackChannel(url, strict).send(Notification("chn_2", EVENT))
                for result in (hook, chat):
                    assert result.verdict == Verdict.FINAL, url
                    assert str(result.error).startswith("endpoint_forbidden"), result
        assert receiver.requests == []
    finally:
        await strict.close()


async def test_slack_message_has_text_and_blocks_with_reason_priority_summary_link(sender):
    """The Slack body carries `text` and `blocks`: reason, priority, summary and the link."""
    async with Receiver() as receiver:
        result = await SlackChannel(receiver.url, sender).send(Notification("chn_2", EVENT))
    assert result.verdict == Verdict.OK
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
    assert (await channel.send(Notification("chn_3", EVENT))).verdict == Verdict.OK
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
    assert result.verdict == Verdict.RETRY


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
    return [
        {
            "partition": r.partition,
            "payload": json.loads(r.payload),
            "status": r.status,
            "attempts": r.attempts,
            "last_error": r.last_error,
        }
        for r in rows
    ]


async def _settled(scene: Scene, count: int) -> list[dict[str, Any]]:
    """The notification rows once `count` exist and the worker has settled them all."""
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal found
        found = await _notification_rows(scene)
        return len(found) >= count and all(r["status"] != "pending" for r in found)

    await wait_until(done, what=f"{count} notifications settle")
    return found


async def test_one_notification_per_channel_per_event_even_after_two_failures(
    live_scene: Scene,
):
    """Through the gateway's outbox worker: each event gets one row per channel; a receiver
    failing twice still ends with exactly one accepted notification per event (three
    attempts, every one with the same webhook-id), in event order, signed by the gateway."""
    scene = live_scene
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
        rows = await _settled(scene, 3)
        await asyncio.sleep(0.3)  # time for any (wrong) extra attempt to arrive
    assert sorted((r["partition"], r["payload"]["event"]["type"]) for r in rows) == sorted(
        [
            (webhook["id"], "escalation.opened"),
            (chat["id"], "escalation.opened"),
            (webhook["id"], "escalation.claimed"),
        ]
    )
    assert [r["status"] for r in rows] == ["delivered"] * 3
    opened, claimed = (r for r in rows if r["partition"] == webhook["id"])
    assert (opened["attempts"], claimed["attempts"]) == (3, 1)
    ids = [headers["webhook-id"] for headers, _ in hook.requests]
    opened_id, claimed_id = opened["payload"]["event"]["id"], claimed["payload"]["event"]["id"]
    assert ids == [opened_id, opened_id, opened_id, claimed_id]
    assert len(slack.requests) == 1
    assert json.loads(slack.requests[0][1])["text"].startswith("[high] Escalation opened")
    jwk = scene.gw.services.gateway_key.public.jwk
    headers, body = hook.requests[-1]
    assert verify_webhook(
        [PublicKey.from_jwk(jwk)],
        headers["webhook-id"],
        int(headers["webhook-timestamp"]),
        body,
        headers["webhook-signature"],
    )


async def test_a_410_disables_the_channel_and_later_events_are_not_sent(live_scene: Scene):
    """After a 410 the worker's handler disables the channel, and later events write no
    notification for it: the receiver is asked exactly once."""
    scene = live_scene
    async with Receiver([410]) as hook:
        made = await scene.admin.post(
            f"/v1/brands/{BRAND}/channels", {"kind": "webhook", "url": hook.url}
        )
        task = await scene.open_task()
        await scene.agent_act(task, "escalate", "Over to you.")
        (opened,) = await _settled(scene, 1)
        (escalation,) = await scene.escalations()
        await scene.jane.post(f"/v1/escalations/{escalation['id']}/claim")
        await asyncio.sleep(0.3)
        rows = await _notification_rows(scene)
    assert opened["status"] == "failed" and "410" in str(opened["last_error"])
    assert len(rows) == 1 and len(hook.requests) == 1
    (channel,) = (await scene.admin.get(f"/v1/brands/{BRAND}/channels"))["items"]
    assert channel["id"] == made["id"] and channel["status"] == "disabled"
    assert "410" in channel["note"]


async def test_a_private_channel_url_is_refused_without_the_allow_list(tmp_path: Path):
    """With no SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS a loopback channel URL is refused at
    registration (400 endpoint_forbidden); one stored anyway (say, while an allow-list was
    set) is refused again at connect time by the worker, and nothing reaches the receiver."""
    settings = make_settings(
        tmp_path / "var", timer_interval_s=0.0, delivery=fast_delivery(allow_private=())
    )
    stamps = ManualClock(datetime.now(UTC))
    async with (
        start_gateway(settings, Overrides(announce=lambda _t: None)) as gw,
        Receiver() as hook,
    ):
        scene = await build_scene(gw, stamps)
        with pytest.raises(GatewayProblem) as refused:
            await scene.admin.post(
                f"/v1/brands/{BRAND}/channels", {"kind": "webhook", "url": hook.url}
            )
        assert refused.value.status == 400
        assert refused.value.problem["code"] == "endpoint_forbidden"
        port = hook.server.port if hook.server else 0
        await gw.services.desk.channels.add(
            channel_id="chn_stored_while_allowed",
            brand=BRAND,
            kind="webhook",
            target=f"http://localhost:{port}/hook",
            events=["escalation.opened"],
            now=stamps.now(),
        )
        task = await scene.open_task()
        await scene.agent_act(task, "escalate", "Over to you.")
        (row,) = await _settled(scene, 1)
    assert row["status"] == "failed" and row["attempts"] == 1
    assert str(row["last_error"]).startswith("endpoint_forbidden"), row["last_error"]
    assert "127.0.0.1" in str(row["last_error"]) or "::1" in str(row["last_error"])
    assert hook.requests == []


async def test_email_channel_end_to_end(tmp_path: Path, smtp):
    """A gateway with SWITCHBOARD_SMTP_URL takes an email channel, and its worker mails the
    opened event once."""
    controller, mailbox = smtp
    settings = make_settings(
        tmp_path / "var",
        timer_interval_s=0.0,
        smtp_url=f"smtp://127.0.0.1:{controller.port}",
        delivery=fast_delivery(),
    )
    stamps = ManualClock(datetime.now(UTC))
    async with start_gateway(settings, Overrides(announce=lambda _t: None)) as gw:
        scene = await build_scene(gw, stamps)
        await scene.admin.post(
            f"/v1/brands/{BRAND}/channels", {"kind": "email", "to": "ops@acme.example"}
        )
        task = await scene.open_task()
        await scene.say(task, "Can I talk to a human please?")
        (row,) = await _settled(scene, 1)
    assert row["status"] == "delivered"
    (message,) = mailbox.messages
    assert message["To"] == "ops@acme.example" and task in message.as_string()


def test_endpoint_disabled_events_read_well_in_slack_and_email():
    """The endpoint.disabled event names the agent, its URL and why, with a link to the agent."""
    event = {
        "id": "evt_1",
        "type": "endpoint.disabled",
        "brand": BRAND,
        "agent": {
            "address": f"support@{BRAND}",
            "endpoint": "https://agent.acme.example/hook",
            "status": "disabled",
            "note": "https://agent.acme.example/hook answered 410 Gone",
        },
        "link": f"https://gw.example/v1/agents/support@{BRAND}",
    }
    body = slack_message(event)
    assert body["text"].startswith(f"[urgent] Endpoint disabled at {BRAND}: support@{BRAND}")
    flat = json.dumps(body["blocks"])
    assert "*Endpoint:* https://agent.acme.example/hook" in flat and "answered 410 Gone" in flat
    assert body["blocks"][-1]["elements"][0]["url"] == event["link"]
    message = mail(event, "switchboard@gw.example", "ops@acme.example", "<evt_1@gw.example>")
    plain = message.get_body(("plain",))
    assert plain is not None and "Agent: support@acme.example" in plain.get_content()


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
