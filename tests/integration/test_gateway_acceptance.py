"""PROTOCOL section 3's acceptance rules, in order, against a real gateway.

Each refusal is checked twice: the RFC 9457 problem (status, type, code, a detail naming the
problem), and the store (no task, no inbox item, no envelope under the refused id). Where two
rules are broken at once, the earlier rule's code wins.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from identity.b64 import b64url_encode
from identity.envelope import MAX_REQUEST_BYTES, sign, signing_input
from identity.keys import PrivateKey, PublicKey
from tests.integration.wire import assert_problem, request

SUPPORT = ("support", "Technical support for speakers", ["troubleshooting", "status lights"])


async def _world(gateway: Any) -> tuple[Any, Any, Any]:
    """A brand with one agent and a registered personal agent."""
    staff, agents = await gateway.brand("acme.example", [SUPPORT])
    alice = await gateway.person("alice")
    return staff, agents["support"], alice


def _resign(envelope: dict[str, Any], key: PrivateKey, **changes: Any) -> dict[str, Any]:
    """The envelope with `changes` applied, signed again by `key`."""
    return sign({**envelope, **changes}, key)


# Rule 1: size ------------------------------------------------------------------------------


async def test_body_over_256_kib_is_payload_too_large(gateway, refused):
    """A body one byte over 256 KiB, and one far over it, get 413 payload_too_large."""
    _, _, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "hello")
    text = json.dumps(envelope)
    padded = text[:-1] + " " * (MAX_REQUEST_BYTES + 1 - len(text)) + "}"
    assert len(padded.encode()) == MAX_REQUEST_BYTES + 1
    await refused(padded.encode(), 413, "payload_too_large", "request body")
    huge = text[:-1] + " " * (3 * MAX_REQUEST_BYTES) + "}"
    await refused(huge.encode(), 413, "payload_too_large", "request body")


async def test_exactly_256_kib_is_not_refused_for_size(gateway):
    """A body of exactly 256 KiB passes rule 1 (whitespace padding keeps it a valid envelope)."""
    _, _, alice = await _world(gateway)
    text = json.dumps(alice.envelope("acme.example", "hello"))
    padded = text[:-1] + " " * (MAX_REQUEST_BYTES - len(text)) + "}"
    answer = await request(
        gateway.session, "POST", gateway.url + "/v1/messages", data=padded.encode()
    )
    assert answer.status == 202, answer.body


async def test_text_over_32_kib_is_payload_too_large(gateway, refused):
    """body.text of 32 KiB + 1 byte is refused, and the detail names body.text."""
    _, _, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "x" * (32 * 1024 + 1))
    await refused(envelope, 413, "payload_too_large", "body.text")


async def test_more_than_16_parts_is_payload_too_large(gateway, refused):
    """17 parts are refused; 16 are accepted."""
    _, _, alice = await _world(gateway)
    part = {"kind": "data", "data": {"n": 1}}
    await refused(
        alice.envelope("acme.example", "hi", parts=[part] * 17), 413, "payload_too_large", "parts"
    )
    ok = await alice.send("acme.example", "hi", parts=[part] * 16)
    assert ok["task_state"] == "submitted"


async def test_size_comes_before_shape_and_signature(gateway, refused):
    """An over-long text in an envelope with an unknown member and no valid signature is 413."""
    _, _, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "x" * (40 * 1024))
    envelope["extra"] = 1
    envelope["sig"]["value"] = "AAAA"
    await refused(envelope, 413, "payload_too_large")


# Rule 2: shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", ("not json",)),
        (b"", ("not json",)),
        (b"\xff\xfe{}", ("utf-8",)),
        (b'{"v": 1, "v": 2}', ("twice",)),
        (b'{"n": NaN}', ("nan",)),
        (b"[" * 100_000, ("nested",)),
    ],
)
async def test_invalid_json(gateway, refused, raw, words):
    """Bytes that are not one strict JSON document get 400 invalid_json saying why."""
    await refused(raw, 400, "invalid_json", *words)


async def test_unknown_member_is_schema_invalid(gateway, refused):
    """A signed envelope with an unknown top-level member is refused; the detail names it."""
    _, _, alice = await _world(gateway)
    envelope = _resign(alice.envelope("acme.example", "hi"), alice.key, priority="high")
    await refused(envelope, 400, "schema_invalid", "priority", "meta")


@pytest.mark.parametrize(
    ("changes", "member"),
    [
        ({"task": 5}, "task"),
        ({"body": "hello"}, "body"),
        ({"body": {"text": 3, "parts": []}}, "body.text"),
        ({"act": "shout"}, "act"),
        ({"id": "short"}, "id"),
        ({"id": "has spaces in it and more"}, "id"),
        ({"v": "switchboard/2"}, "v"),
        ({"created_at": "2026-11-26 06:10:00"}, "created_at"),
        ({"meta": []}, "meta"),
        ({"body": {"text": "", "parts": []}}, "body.text"),
        ({"body": {"text": "hi", "parts": [{"kind": "url", "url": "http://x.example"}]}}, "url"),
    ],
)
async def test_wrong_types_and_bad_values_are_schema_invalid(gateway, refused, changes, member):
    """Each malformed member is refused with 400 schema_invalid naming that member."""
    _, _, alice = await _world(gateway)
    envelope = _resign(alice.envelope("acme.example", "hi"), alice.key, **changes)
    await refused(envelope, 400, "schema_invalid", member)


async def test_missing_member_and_non_object_are_schema_invalid(gateway, refused):
    """An envelope without `sig`, and a JSON array, are schema_invalid."""
    _, _, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "hi")
    del envelope["sig"]
    await refused(envelope, 400, "schema_invalid", "sig")
    await refused(b"[1, 2]", 400, "schema_invalid", "object")


@pytest.mark.parametrize(
    ("member", "value"),
    [("from", "Not An Address"), ("to", "no_dot"), ("to", "a@b@c.example"), ("from", "x@-.x")],
)
async def test_bad_addresses_are_address_invalid(gateway, refused, member, value):
    """`from` or `to` that is not an address (or a domain, for `to`) is 400 address_invalid."""
    _, _, alice = await _world(gateway)
    envelope = _resign(alice.envelope("acme.example", "hi"), alice.key, **{member: value})
    await refused(envelope, 400, "address_invalid", member)


# Rule 3: sender and key ----------------------------------------------------------------------


async def test_unregistered_sender_is_unknown_sender(gateway, refused):
    """A well-signed envelope from an address nobody registered is 401 unknown_sender."""
    await _world(gateway)
    stranger = gateway.agent("mallory@people.example")
    await refused(
        stranger.envelope("acme.example", "hi"), 401, "unknown_sender", "mallory@people.example"
    )


async def test_key_of_someone_else_is_unknown_key(gateway, refused):
    """An envelope from alice signed with a key that is not hers is 401 unknown_key."""
    _, _, alice = await _world(gateway)
    bob = await gateway.person("bob")
    forged = _resign(alice.envelope("acme.example", "hi"), bob.key)
    await refused(forged, 401, "unknown_key", bob.key.kid)


async def test_revoked_key_is_key_revoked(gateway, refused):
    """After adding a second key and revoking the first through the API, the first is refused."""
    _, _, alice = await _world(gateway)
    old = alice.key
    new = PrivateKey.generate()
    await alice.add_key(new.public)
    await alice.revoke_key(old.kid)
    await refused(alice.envelope("acme.example", "hi"), 401, "key_revoked", "revoked")


async def test_a_stored_weak_key_signs_nothing(gateway, refused):
    """A small-order key stored before registration refused them (written here straight to
    the store) verifies no envelope: the forgery R = identity, S = 0, which OpenSSL accepts
    for any message under the identity key, is 401 signature_invalid asking for a new key."""
    await _world(gateway)
    identity_point = (1).to_bytes(32, "little")
    weak = PublicKey.from_bytes(identity_point)
    mallory = "mallory@people.example"
    await gateway.services.directory.register_agent(
        address=mallory,
        kind="personal",
        brand=None,
        display_name="Mallory",
        description="",
        skills=(),
        endpoint_url=None,
        keys=[(weak.kid, weak.jwk)],
        now=datetime.now(UTC),
    )
    envelope = gateway.agent(mallory).envelope("acme.example", "I am whoever I say I am")
    forged = identity_point + bytes(32)
    envelope["sig"] = {**envelope["sig"], "kid": weak.kid, "value": b64url_encode(forged)}
    Ed25519PublicKey.from_public_bytes(identity_point).verify(forged, signing_input(envelope))
    await refused(envelope, 401, "signature_invalid", "small-order", "new key pair")


@pytest.mark.parametrize("how", ["tampered text", "garbage value", "short value", "other task"])
async def test_bad_signature_is_signature_invalid(gateway, refused, how):
    """A signature that does not verify over the received envelope is 401 signature_invalid."""
    _, _, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "hi")
    if how == "tampered text":
        envelope["body"]["text"] = "hi!"
    elif how == "garbage value":
        envelope["sig"]["value"] = "!!not base64!!"
    elif how == "short value":
        envelope["sig"]["value"] = "AAAA"
    else:
        envelope["meta"] = {"added": True}
    await refused(envelope, 401, "signature_invalid", "sig")


async def test_sender_rules_come_in_order(gateway, refused):
    """Unknown sender beats bad time; unknown key beats bad signature and bad time."""
    _, _, alice = await _world(gateway)
    past = datetime.now(UTC) - timedelta(hours=1)
    stranger = gateway.agent("mallory@people.example")
    await refused(stranger.envelope("acme.example", "hi", now=past), 401, "unknown_sender")
    other = PrivateKey.generate()
    envelope = _resign(alice.envelope("acme.example", "hi", now=past), other)
    envelope["body"]["text"] = "changed"
    await refused(envelope, 401, "unknown_key")


# Rule 4: time --------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [-301, -3600, 301, 86400])
async def test_created_at_outside_the_window_is_clock_skew(gateway, refused, seconds):
    """created_at more than 300 s in the past or the future is 400 clock_skew."""
    _, _, alice = await _world(gateway)
    moment = datetime.now(UTC) + timedelta(seconds=seconds + (5 if seconds > 0 else -5))
    await refused(alice.envelope("acme.example", "hi", now=moment), 400, "clock_skew", "300")


@pytest.mark.parametrize("seconds", [-250, 250])
async def test_created_at_inside_the_window_is_accepted(gateway, seconds):
    """created_at 250 s off either way is inside the window and accepted."""
    _, _, alice = await _world(gateway)
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    answer = await alice.post_envelope(alice.envelope("acme.example", "hi", now=moment))
    assert answer["task_state"] == "submitted"


async def test_expires_at_in_the_past_is_expired(gateway, refused):
    """An envelope whose expires_at has passed is 400 expired; a future one is accepted."""
    _, _, alice = await _world(gateway)
    now = datetime.now(UTC)
    gone = alice.envelope("acme.example", "hi", expires_at=now - timedelta(seconds=1))
    await refused(gone, 400, "expired", "expired")
    fresh = alice.envelope("acme.example", "hi", expires_at=now + timedelta(minutes=5))
    assert (await alice.post_envelope(fresh))["duplicate"] is False


async def test_time_comes_before_recipient(gateway, refused):
    """An expired envelope to an unknown recipient is `expired`, not `unknown_recipient`."""
    _, _, alice = await _world(gateway)
    gone = alice.envelope(
        "nobody.example", "hi", expires_at=datetime.now(UTC) - timedelta(seconds=5)
    )
    await refused(gone, 400, "expired")


async def test_the_stored_envelope_is_the_signed_one_whatever_the_request_looks_like(gateway):
    """Indented JSON, escaped and unescaped non-ASCII text, members in another order: the
    recipient reads back exactly the object that was signed (so its signature still holds)."""
    _, support, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "Caf\u00e9 speaker \u2014 \u00fcber loud \U0001f50a")
    text = json.dumps(dict(reversed(list(envelope.items()))), indent=3, ensure_ascii=True)
    assert "\\u00e9" in text and "\n   " in text
    answer = await request(
        gateway.session, "POST", gateway.url + "/v1/messages", data=text.encode()
    )
    assert answer.status == 202, answer.body
    (item,) = (await support.inbox())["items"]
    assert item["envelope"] == envelope
    assert json.loads(json.dumps(item["envelope"])) == envelope
    view = await alice.task(answer.body["task"])
    assert view["history"][0] == envelope


# Rule 5: replay ------------------------------------------------------------------------------


async def test_identical_resend_is_a_duplicate_with_the_first_answer(gateway):
    """An identical resend answers 200 with the first answer and duplicate true, and adds
    nothing to the recipient's inbox or the task."""
    _, support, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "My speaker blinks.")
    first = await request(gateway.session, "POST", gateway.url + "/v1/messages", body=envelope)
    assert first.status == 202 and first.body["duplicate"] is False
    await support.send(alice.address, "Which colour?", act="ask", task=first.body["task"])
    inbox_before = await support.inbox()
    again = await request(gateway.session, "POST", gateway.url + "/v1/messages", body=envelope)
    assert again.status == 200
    assert again.body == {**first.body, "duplicate": True}
    assert again.body["task_state"] == "submitted"  # the first answer, not the task's state now
    assert await support.inbox() == inbox_before
    view = await alice.task(first.body["task"])
    assert [e["id"] for e in view["history"]].count(envelope["id"]) == 1


async def test_same_id_other_content_is_replay_conflict(gateway, refused):
    """The same (from, id) with other content is 409 replay_conflict and the first stays."""
    _, _, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "first words")
    await alice.post_envelope(envelope)
    stored = await gateway.services.conversations.by_replay_key(alice.address, envelope["id"])
    changed = _resign(envelope, alice.key, body={"text": "other words", "parts": []})
    await refused(changed, 409, "replay_conflict", envelope["id"])
    assert await gateway.services.conversations.by_replay_key(alice.address, envelope["id"]) == (
        stored
    )


async def test_resend_after_the_task_closed_is_still_a_duplicate(gateway):
    """Rule 5 comes before rules 6-7: a resend of an accepted `resolve` after the task has
    completed (which would now be refused as a transition) answers 200 duplicate."""
    _, support, alice = await _world(gateway)
    opened = await alice.send("acme.example", "My speaker blinks.")
    resolve = support.envelope(alice.address, "Fixed.", act="resolve", task=opened["task"])
    first = await support.post_envelope(resolve)
    assert first["task_state"] == "completed"
    await alice.send("acme.example", "", act="confirm", task=opened["task"])
    again = await request(gateway.session, "POST", gateway.url + "/v1/messages", body=resolve)
    assert again.status == 200
    assert again.body == {**first, "duplicate": True}


async def test_conflicting_replay_to_a_missing_recipient_is_replay_conflict(gateway, refused):
    """The same id with other content is 409 replay_conflict even when its new recipient does
    not exist (rule 5 before rule 6)."""
    _, _, alice = await _world(gateway)
    envelope = alice.envelope("acme.example", "first words")
    await alice.post_envelope(envelope)
    changed = _resign(envelope, alice.key, to="nobody.example")
    await refused(changed, 409, "replay_conflict", envelope["id"])


async def test_duplicates_take_no_rate_token(gateway, refused):
    """Resending an accepted envelope does not use up the sender's rate: with a rate of 2,
    one envelope resent five times still leaves room for a second new one."""
    staff, _, alice = await _world(gateway)
    await staff.set_policy("acme.example", {"contact": {"rate_per_minute": 2}})
    envelope = alice.envelope("acme.example", "one")
    assert (await alice.post_envelope(envelope))["duplicate"] is False
    for _ in range(5):
        assert (await alice.post_envelope(envelope))["duplicate"] is True
    assert (await alice.send("acme.example", "two"))["duplicate"] is False
    await refused(alice.envelope("acme.example", "three"), 429, "rate_limited")


async def test_replayed_id_from_another_sender_is_a_new_envelope(gateway):
    """Replay memory is per sender: bob may use an id alice used."""
    _, _, alice = await _world(gateway)
    bob = await gateway.person("bob")
    envelope = alice.envelope("acme.example", "hi")
    await alice.post_envelope(envelope)
    theirs = _resign(bob.envelope("acme.example", "hi"), bob.key, id=envelope["id"])
    answer = await bob.post_envelope(theirs)
    assert answer["duplicate"] is False


# Rule 6: recipient, policy, rate -------------------------------------------------------------


@pytest.mark.parametrize("to", ["nobody@acme.example", "unknown.example", "ghost@people.example"])
async def test_unknown_recipient(gateway, refused, to):
    """An unregistered address or a domain without brand agents is 404 unknown_recipient."""
    _, _, alice = await _world(gateway)
    await refused(alice.envelope(to, "hi"), 404, "unknown_recipient", to)


async def test_recipient_in_a_task_must_be_the_counterpart(gateway, refused):
    """Inside a task, writing to someone other than the counterpart is unknown_recipient."""
    _, agents = await gateway.brand(
        "acme.example", [SUPPORT, ("orders", "Orders and refunds", ["refunds"])]
    )
    alice = await gateway.person("alice")
    task = (await alice.send("acme.example", "My speaker's light blinks orange."))["task"]
    responder = (await alice.task(task))["responder"]
    other = next(a for a in agents.values() if a.address != responder)
    await refused(
        alice.envelope(other.address, "hi", task=task), 404, "unknown_recipient", responder
    )


async def test_closed_policy_refuses_new_tasks_but_not_open_ones(gateway, refused):
    """With contact mode `closed` a new task is 403 forbidden; a task already open continues."""
    staff, support, alice = await _world(gateway)
    task = (await alice.send("acme.example", "hello"))["task"]
    await staff.set_policy("acme.example", {"contact": {"mode": "closed"}})
    await refused(alice.envelope("acme.example", "again"), 403, "forbidden", "closed")
    assert (await alice.send(support.address, "still there?", task=task))["task"] == task


async def test_allowlist_policy(gateway, refused):
    """With an allowlist, listed senders open tasks and others get 403 forbidden."""
    staff, _, alice = await _world(gateway)
    bob = await gateway.person("bob")
    await staff.set_policy(
        "acme.example", {"contact": {"mode": "allowlist", "allow": [alice.address]}}
    )
    assert (await alice.send("acme.example", "hello"))["task_state"] == "submitted"
    await refused(bob.envelope("acme.example", "hello"), 403, "forbidden", "allowlist")
    await staff.set_policy(
        "acme.example", {"contact": {"mode": "allowlist", "allow": ["people.example"]}}
    )
    assert (await bob.send("acme.example", "hello"))["task_state"] == "submitted"
    await staff.set_policy("acme.example", {"contact": {"mode": "open"}})
    assert (await bob.send("acme.example", "hello again"))["task_state"] == "submitted"


async def test_brand_agent_may_not_write_to_a_person_outside_a_task(gateway, refused):
    """A brand agent opening a task with a personal agent is 403 forbidden."""
    _, support, alice = await _world(gateway)
    await refused(support.envelope(alice.address, "Buy our speakers!"), 403, "forbidden", "task")


async def test_personal_to_personal_needs_the_setting(gateway, refused):
    """Personal-to-personal tasks are 403 forbidden on a gateway without the setting."""
    _, _, alice = await _world(gateway)
    bob = await gateway.person("bob")
    await refused(alice.envelope(bob.address, "hi bob"), 403, "forbidden", "personal")


async def test_personal_to_personal_with_the_setting(tmp_path):
    """With personal_to_personal on, alice opens a task with bob and bob answers in it."""
    from tests.conftest import make_settings, start_gateway

    settings = make_settings(tmp_path / "var", personal_to_personal=True)
    async with start_gateway(settings) as gateway:
        alice = await gateway.person("alice")
        bob = await gateway.person("bob")
        answer = await alice.send(bob.address, "lunch?")
        reply = await bob.send(alice.address, "yes", task=answer["task"])
        assert reply["task_state"] == "working"


async def test_rate_limit_answers_429_with_retry_after(gateway, refused):
    """Past the brand's rate_per_minute a sender gets 429 rate_limited with Retry-After."""
    staff, _, alice = await _world(gateway)
    await staff.set_policy("acme.example", {"contact": {"rate_per_minute": 2}})
    await alice.send("acme.example", "one")
    await alice.send("acme.example", "two")
    problem, answer = await refused(alice.envelope("acme.example", "three"), 429, "rate_limited")
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert problem["retry_after"] == retry_after
    bob = await gateway.person("bob")
    assert (await bob.send("acme.example", "mine"))["duplicate"] is False  # per sender


async def test_policy_comes_before_task(gateway, refused):
    """A brand agent writing to a person on an unknown task is forbidden (rule 6) rather than
    task_not_found (rule 7)."""
    _, support, alice = await _world(gateway)
    await refused(support.envelope(alice.address, "hi", task="tsk_nope"), 403, "forbidden")


# Rule 7: task and act ------------------------------------------------------------------------


async def test_unknown_task_is_task_not_found(gateway, refused):
    """An envelope naming a task that does not exist is 404 task_not_found."""
    _, _, alice = await _world(gateway)
    await refused(
        alice.envelope("acme.example", "hi", task="tsk_doesnotexist"),
        404,
        "task_not_found",
        "tsk_doesnotexist",
    )


async def test_task_of_others_is_task_not_found(gateway, refused):
    """Bob naming alice's task gets the same task_not_found as for a missing task."""
    _, support, alice = await _world(gateway)
    task = (await alice.send("acme.example", "hello"))["task"]
    bob = await gateway.person("bob")
    await refused(bob.envelope(support.address, "me too", task=task), 404, "task_not_found")


@pytest.mark.parametrize(
    ("who", "act", "words"),
    [
        ("alice", "resolve", "initiator"),
        ("alice", "ask", "initiator"),
        ("alice", "confirm", "completed"),
        ("support", "cancel", "responder"),
        ("support", "confirm", "responder"),
        ("alice", "status", "initiator"),
        ("support", "status", "responder"),
    ],
)
async def test_act_not_allowed_is_invalid_transition(gateway, refused, who, act, words):
    """An act the sender's side may not send, or not in this state, is 409."""
    _, support, alice = await _world(gateway)
    task = (await alice.send("acme.example", "hello"))["task"]
    sender, to = (alice, support.address) if who == "alice" else (support, alice.address)
    await refused(sender.envelope(to, "text", act=act, task=task), 409, "invalid_transition", words)


async def test_a_task_starts_only_with_say(gateway, refused):
    """Opening a task with `ask` or `cancel` is 409 invalid_transition."""
    _, _, alice = await _world(gateway)
    await refused(alice.envelope("acme.example", "hi", act="ask"), 409, "invalid_transition")
    await refused(alice.envelope("acme.example", "", act="cancel"), 409, "invalid_transition")


@pytest.mark.parametrize("end", ["reject", "fail", "cancel"])
async def test_ended_task_is_task_closed(gateway, refused, end):
    """After reject, fail or cancel, both sides get 409 task_closed."""
    _, support, alice = await _world(gateway)
    task = (await alice.send("acme.example", "hello"))["task"]
    if end == "cancel":
        await alice.send(support.address, "", act="cancel", task=task)
    else:
        await support.send(alice.address, "Sorry.", act=end, task=task)
    await refused(alice.envelope(support.address, "hi?", task=task), 409, "task_closed", end)
    await refused(support.envelope(alice.address, "hi", task=task), 409, "task_closed")


async def test_completed_task_reopens_and_confirms(gateway):
    """On a completed task the initiator may confirm, and a later say reopens it."""
    _, support, alice = await _world(gateway)
    task = (await alice.send("acme.example", "hello"))["task"]
    done = await support.send(alice.address, "Fixed.", act="resolve", task=task)
    assert done["task_state"] == "completed"
    confirmed = await alice.send(support.address, "", act="confirm", task=task)
    assert confirmed["task_state"] == "completed"
    reopened = await alice.send(support.address, "It broke again.", task=task)
    assert reopened["task_state"] == "working"


async def test_escalated_task_refuses_the_brand_agent(gateway, refused):
    """After the brand agent's `escalate`, its next envelope is 409 under_human_control,
    while the initiator may still write."""
    _, support, alice = await _world(gateway)
    task = (await alice.send("acme.example", "hello"))["task"]
    escalated = await support.send(alice.address, "Needs a person.", act="escalate", task=task)
    assert escalated["control"] == "human"
    await refused(
        support.envelope(alice.address, "me again", task=task), 409, "under_human_control"
    )
    assert (await alice.send(support.address, "anyone?", task=task))["control"] == "human"


async def test_refusals_are_answered_for_any_sender_state(gateway):
    """A problem answer carries the request id header, so a refusal can be quoted."""
    _, _, alice = await _world(gateway)
    answer = await request(
        gateway.session,
        "POST",
        gateway.url + "/v1/messages",
        body=alice.envelope("nobody.example", "hi"),
        headers={"X-Request-Id": "req-abc-123"},
    )
    assert_problem(answer, 404, "unknown_recipient")
    assert answer.headers["X-Request-Id"] == "req-abc-123"


async def test_concurrent_envelopes_on_one_task_are_each_charged_once(gateway):
    """Ten envelopes racing on one task are all accepted within a rate of ten a minute: a
    commit retried after losing the race does not take a second token, and the history holds
    each envelope once."""
    staff, support, alice = await _world(gateway)
    await staff.set_policy("acme.example", {"contact": {"rate_per_minute": 10}})
    task = (await alice.send("acme.example", "first"))["task"]
    envelopes = [alice.envelope(support.address, f"racing {i}", task=task) for i in range(9)]
    answers = await asyncio.gather(
        *(
            request(gateway.session, "POST", gateway.url + "/v1/messages", body=envelope)
            for envelope in envelopes
        )
    )
    assert [answer.status for answer in answers] == [202] * 9, [a.body for a in answers]
    history = (await alice.task(task))["history"]
    assert sorted(e["id"] for e in history[1:]) == sorted(e["id"] for e in envelopes)
    seqs = [item["seq"] for item in (await support.inbox())["items"]]
    assert seqs == list(range(1, 11))


async def test_many_envelopes_racing_on_one_task_are_all_accepted(gateway):
    """Fifty envelopes from both parties at once on one task are all accepted (no 500 from
    lost races), each stored once, and each inbox's seqs are gapless. (The brand lifts its
    stalled-conversation rule: 25 messages from the person would otherwise, rightly, hand the
    task to humans midway.)"""
    staff, support, alice = await _world(gateway)
    await staff.set_policy("acme.example", {"escalation": {"max_turns_without_progress": 1000}})
    task = (await alice.send("acme.example", "first"))["task"]
    envelopes = [
        alice.envelope(support.address, f"alice {i}", task=task)
        if i % 2
        else support.envelope(alice.address, f"support {i}", task=task)
        for i in range(50)
    ]
    answers = await asyncio.gather(
        *(
            request(gateway.session, "POST", gateway.url + "/v1/messages", body=envelope)
            for envelope in envelopes
        )
    )
    assert {answer.status for answer in answers} == {202}
    history = (await alice.task(task))["history"]
    assert len(history) == 51 and len({e["id"] for e in history}) == 51
    for agent, count in ((support, 26), (alice, 25)):
        seqs = [item["seq"] for item in (await agent.inbox(limit=500))["items"]]
        assert seqs == list(range(1, count + 1))
