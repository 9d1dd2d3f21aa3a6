"""NatsBus against the real nats-server: fan-out, shared work, redelivery, de-duplication."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bus import matches
from gateway.bus.nats import NatsBus, consumer_name, decode_subject, encode_subject
from tests.conftest import TEST_NATS_URL


@pytest.fixture
async def buses(nats_prefix: str) -> AsyncIterator[tuple[NatsBus, NatsBus]]:
    """Two buses on two connections with one prefix: two replicas as NATS sees them."""
    first = await NatsBus.connect(TEST_NATS_URL, nats_prefix, name="replica-a")
    second = await NatsBus.connect(TEST_NATS_URL, nats_prefix, name="replica-b")
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def _until(condition: Callable[[], object], within: float = 5.0) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not so within {within} s")


@pytest.mark.distributed
async def test_fan_out_reaches_subscribers_on_both_connections(buses):
    """An inbox wake-up published by one replica reaches the subscribers of both, with the
    agent's address (dots, '@', even '..') intact."""
    first, second = buses
    seen: dict[str, list[tuple[str, bytes]]] = {"a": [], "b": []}

    async def on_a(subject: str, data: bytes) -> None:
        seen["a"].append((subject, data))

    async def on_b(subject: str, data: bytes) -> None:
        seen["b"].append((subject, data))

    await first.subscribe("inbox.>", on_a)
    await second.subscribe("inbox.>", on_b)
    await second._client.flush()
    await first._client.flush()
    await first.publish("inbox.alice..smith@people.example", b"7")
    await _until(lambda: seen["a"] and seen["b"])
    assert seen["a"] == seen["b"] == [("inbox.alice..smith@people.example", b"7")]


@pytest.mark.distributed
async def test_work_goes_to_exactly_one_of_two_consumers(buses):
    """Forty work messages shared by two replicas' consumers: each is handled once in all."""
    first, second = buses
    handled: list[tuple[str, bytes]] = []

    async def on_a(_subject: str, data: bytes) -> None:
        handled.append(("a", data))

    async def on_b(_subject: str, data: bytes) -> None:
        handled.append(("b", data))

    await first.consume("work.delivery", on_a)
    await second.consume("work.delivery", on_b)
    for number in range(40):
        await (first if number % 2 else second).publish(
            "work.delivery", str(number).encode(), msg_id=str(number)
        )
    await _until(lambda: len(handled) >= 40)
    await asyncio.sleep(0.3)  # anything extra would arrive now
    assert sorted(int(data) for _, data in handled) == list(range(40))


@pytest.mark.distributed
async def test_failing_handler_gets_the_message_again(buses):
    """A handler that raises twice sees the same message a third time, then it is acked."""
    first, _ = buses
    attempts: list[bytes] = []

    async def flaky(_subject: str, data: bytes) -> None:
        attempts.append(data)
        if len(attempts) < 3:
            raise RuntimeError("endpoint down")

    await first.consume("work.notify", flaky)
    await first.publish("work.notify", b"42", msg_id="n-42")
    await _until(lambda: len(attempts) >= 3, within=10)
    await asyncio.sleep(1.5)
    assert attempts == [b"42", b"42", b"42"]
    info = await first._js.consumer_info(first.stream, consumer_name(first.prefix, "work.notify"))
    assert info.num_ack_pending == 0 and info.num_pending == 0


@pytest.mark.distributed
async def test_same_msg_id_is_stored_once(buses):
    """Publishing one outbox row twice (a sweeper repeating a publish) stores it once."""
    first, second = buses
    await first.publish("work.delivery", b"9", msg_id="9")
    await second.publish("work.delivery", b"9", msg_id="9")
    await first.publish("work.delivery", b"10", msg_id="10")
    info = await first._js.stream_info(first.stream)
    assert info.state.messages == 2


@pytest.mark.distributed
async def test_connect_twice_keeps_one_stream(nats_prefix: str):
    """A second replica starting on an existing stream adopts it instead of failing."""
    first = await NatsBus.connect(TEST_NATS_URL, nats_prefix)
    await first.publish("work.delivery", b"1", msg_id="1")
    second = await NatsBus.connect(TEST_NATS_URL, nats_prefix)
    try:
        info = await second._js.stream_info(second.stream)
        assert info.state.messages == 1
        assert await first.ping() and await second.ping()
    finally:
        await first.close()
        await second.close()


tokens = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="."), min_size=0, max_size=12
).filter(lambda token: token not in ("*", ">") and " " not in token and "\t" not in token)


@given(st.lists(tokens, min_size=1, max_size=5))
def test_subject_encoding_round_trips_and_keeps_tokens(parts):
    """Any logical subject encodes to valid NATS tokens and decodes back to itself."""
    subject = ".".join(parts)
    encoded = encode_subject("sb", subject)
    assert decode_subject("sb", encoded) == subject
    nats_tokens = encoded.split(".")
    assert len(nats_tokens) == len(parts) + 1
    assert all(token and not any(c.isspace() for c in token) for token in nats_tokens)
    assert matches("sb.inbox.>", encoded) == (len(parts) > 1 and parts[0] == "inbox")
