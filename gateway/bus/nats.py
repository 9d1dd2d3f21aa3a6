"""The `Bus` port on NATS: JetStream for work, core NATS for fan-out wake-ups.

Subjects the gateway uses (`inbox.<address>`, `work.<kind>`) are logical: this adapter puts
them under a prefix (`<prefix>.inbox.…`), so deployments and test runs can share one server,
and encodes each token so that any agent address makes a valid NATS subject (addresses may hold
`..`, which would be an empty token). The mapping keeps token boundaries, so `*` and `>`
patterns mean on NATS what they mean in `gateway.bus.matches`.

- `publish` on `work.…` goes through JetStream with `Nats-Msg-Id` set, so a re-publish by the
  outbox sweeper inside the duplicate window is dropped by the server; anything else is a core
  publish, which every replica's subscriber sees once (fan-out, at most once: a wake-up that a
  disconnected replica misses is only a wake-up, since readers poll the database on timeout).
- `consume` binds a durable pull consumer named after the subject; every replica binds the same
  one, so each message goes to one of them. The handler's return acks; a raise naks with a
  growing delay; a slow handler keeps its message with `in_progress` heartbeats; after
  `max_deliver` attempts the message is dropped from the stream (the outbox row is still the
  truth, and the sweeper publishes it again under a new id if it is still due).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from gateway.bus import Handler
from gateway.errors import one_line

log = structlog.get_logger(__name__)

WORK_ROOT = "work"
DUPLICATE_WINDOW_S = 120.0
ACK_WAIT_S = 30.0
FIRST_CONNECT_TIMEOUT_S = 15.0
MAX_DELIVER = 20
_FETCH_BATCH = 16
_FETCH_TIMEOUT_S = 1.0
_NAK_DELAY_MAX_S = 30.0
_SAFE = "@-_+=~!"  # characters kept as they are inside a token; everything else is %XX
_EMPTY_TOKEN = "%"  # an empty logical token (from `a..b@x`): '%' alone never comes out of quote


def encode_subject(prefix: str, subject: str) -> str:
    """The NATS subject for a logical subject or pattern: prefix, then each token encoded."""
    return ".".join([prefix, *(_encode_token(token) for token in subject.split("."))])


def decode_subject(prefix: str, subject: str) -> str:
    """The logical subject back from a NATS subject that `encode_subject` made."""
    tokens = subject.split(".")
    if tokens[0] != prefix:
        raise ValueError(f"{subject!r} is not under the prefix {prefix!r}")
    return ".".join(_decode_token(token) for token in tokens[1:])


def stream_name(prefix: str) -> str:
    """The JetStream stream holding this prefix's work subjects."""
    return f"{prefix}_work"


def consumer_name(prefix: str, subject: str) -> str:
    """The durable consumer every replica shares for one work subject."""
    return f"{prefix}_" + re.sub(r"[^A-Za-z0-9_-]", "_", subject)


def _encode_token(token: str) -> str:
    if token in ("*", ">"):
        return token
    if token == "":
        return _EMPTY_TOKEN
    return quote(token, safe=_SAFE)


def _decode_token(token: str) -> str:
    if token == _EMPTY_TOKEN:
        return ""
    return unquote(token)


def _server(url: str) -> str:
    """host:port of a NATS URL, without the user and password it may hold."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 4222}"
    except ValueError:
        return "the server"


class BusUnavailable(Exception):
    """NATS is not reachable: at start (the replica stops), or for a work publish."""


class _FanOut:
    """A core-NATS subscription: every connection subscribed sees every message."""

    def __init__(self, subscription: Any) -> None:
        self._subscription = subscription

    async def stop(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._subscription.unsubscribe()


class _PullWorker:
    """One replica's loop over a shared durable pull consumer."""

    def __init__(self, bus: NatsBus, subject: str, handler: Handler) -> None:
        self._bus = bus
        self.subject = subject
        self._handler = handler
        self._subscription: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subscription = await self._bus._pull_subscription(self.subject)
        self.task = asyncio.create_task(self._run(), name=f"nats-consume-{self.subject}")

    async def _run(self) -> None:
        while True:
            try:
                messages = await self._subscription.fetch(_FETCH_BATCH, timeout=_FETCH_TIMEOUT_S)
            except nats.errors.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # disconnected, reconnecting, consumer gone
                log.warning("bus.fetch_failed", subject=self.subject, error=repr(exc))
                await asyncio.sleep(0.5)
                await self._rebind()
                continue
            for message in messages:
                await self._handle(message)

    async def _rebind(self) -> None:
        # After a server restart the consumer (file storage) is back, but if the stream was
        # lost the bind fails: make both again, quietly, until the server answers.
        with contextlib.suppress(Exception):
            await self._bus._ensure_stream()
            self._subscription = await self._bus._pull_subscription(self.subject)

    async def _handle(self, message: Msg) -> None:
        heartbeat = asyncio.create_task(_keep_in_progress(message))
        try:
            await self._handler(self.subject, message.data)
        except asyncio.CancelledError:
            raise
        except Exception:
            delivered = message.metadata.num_delivered or 1
            log.exception("bus.handler_failed", subject=self.subject, delivered=delivered)
            with contextlib.suppress(Exception):
                if delivered >= MAX_DELIVER:
                    await message.term()
                else:
                    await message.nak(delay=min(0.5 * 2 ** (delivered - 1), _NAK_DELAY_MAX_S))
            return
        finally:
            heartbeat.cancel()
        try:
            await message.ack()
        except Exception as exc:  # the ack is lost: the message comes back, handlers are idempotent
            log.warning("bus.ack_failed", subject=self.subject, error=repr(exc))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await self._subscription.unsubscribe()
        self._bus._workers.discard(self)


async def _keep_in_progress(message: Msg) -> None:
    while True:
        await asyncio.sleep(ACK_WAIT_S / 3)
        with contextlib.suppress(Exception):
            await message.in_progress()


class NatsBus:
    """Wake-ups and work between replicas through one NATS server or cluster."""

    def __init__(self, client: Client, prefix: str) -> None:
        self._client = client
        self._js: JetStreamContext = client.jetstream(timeout=5.0)
        self.prefix = prefix
        self.stream = stream_name(prefix)
        self._workers: set[_PullWorker] = set()
        self._subscriptions: set[_FanOut] = set()

    @classmethod
    async def connect(
        cls,
        url: str,
        prefix: str = "switchboard",
        *,
        name: str = "switchboard",
        first_connect_timeout_s: float = FIRST_CONNECT_TIMEOUT_S,
    ) -> NatsBus:
        """Connect (retrying for ever after a first success), and make the work stream.

        Raises:
            BusUnavailable: no first connection within `first_connect_timeout_s`, or a server
                that cannot make the work stream (no JetStream); the message names the
                server and the error, on one line.
        """
        connected = False
        last_error: Exception | None = None

        async def on_error(exc: Exception) -> None:
            nonlocal last_error
            if connected:
                log.warning("bus.nats_error", error=repr(exc))
            else:  # the first connection's retries: said once, in BusUnavailable
                last_error = exc

        async def on_disconnected() -> None:
            if connected:  # not the start's own close, below
                log.warning("bus.nats_disconnected")

        async def on_reconnected() -> None:
            log.info("bus.nats_reconnected")

        connecting = nats.connect(
            servers=[url],
            name=name,
            connect_timeout=2,
            reconnect_time_wait=0.5,
            max_reconnect_attempts=-1,
            ping_interval=10,
            max_outstanding_pings=3,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )
        # Reconnects go on for ever once connected; the first connection gets a deadline, so
        # a replica started without NATS stops with a message rather than waiting silently.
        try:
            client = await asyncio.wait_for(connecting, first_connect_timeout_s)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            reason = one_line(last_error or exc)
            raise BusUnavailable(
                f"cannot connect to {_server(url)} in {first_connect_timeout_s:g} s: {reason}"
            ) from exc
        connected = True
        bus = cls(client, prefix)
        try:
            await bus._ensure_stream()
        except (TimeoutError, nats.errors.Error) as exc:
            connected = False
            await client.close()
            raise BusUnavailable(
                f"{_server(url)} made no JetStream stream ({type(exc).__name__}); the gateway"
                " needs JetStream: start nats-server with -js"
            ) from exc
        except Exception:
            connected = False
            await client.close()
            raise
        return bus

    async def _ensure_stream(self) -> None:
        """Create the work stream, or bring an existing one to this configuration."""
        config = StreamConfig(
            name=self.stream,
            subjects=[encode_subject(self.prefix, WORK_ROOT + ".>")],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self._js.update_stream(config)

    async def _pull_subscription(self, subject: str) -> Any:
        durable = consumer_name(self.prefix, subject)
        return await self._js.pull_subscribe(
            encode_subject(self.prefix, subject),
            durable=durable,
            stream=self.stream,
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ACK_WAIT_S,
                max_deliver=MAX_DELIVER,
                max_ack_pending=1000,
            ),
        )

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Work through JetStream (acknowledged, de-duplicated by `msg_id`); the rest on core."""
        target = encode_subject(self.prefix, subject)
        if subject.split(".", 1)[0] == WORK_ROOT:
            if not self._client.is_connected:
                # Waiting out a reconnect here would hold the sender's request; the row is
                # committed and the outbox worker's sweep finds it without this wake-up.
                raise BusUnavailable(f"NATS is reconnecting; {subject} not published")
            headers = {"Nats-Msg-Id": msg_id} if msg_id is not None else None
            await self._js.publish(target, data, stream=self.stream, headers=headers)
        else:
            await self._client.publish(target, data)

    async def subscribe(self, pattern: str, handler: Handler) -> _FanOut:
        async def deliver(message: Msg) -> None:
            try:
                await handler(decode_subject(self.prefix, message.subject), message.data)
            except Exception:
                log.exception("bus.subscriber_failed", subject=message.subject)

        subscription = _FanOut(
            await self._client.subscribe(encode_subject(self.prefix, pattern), cb=deliver)
        )
        self._subscriptions.add(subscription)
        return subscription

    async def consume(self, subject: str, handler: Handler) -> _PullWorker:
        if subject.split(".", 1)[0] != WORK_ROOT:
            raise ValueError(f"work subjects start with {WORK_ROOT}.; got {subject!r}")
        worker = _PullWorker(self, subject, handler)
        await worker.start()
        self._workers.add(worker)
        return worker

    async def ping(self) -> bool:
        if not self._client.is_connected:
            return False
        try:
            await self._client.flush(timeout=2)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        for worker in list(self._workers):
            await worker.stop()
        for subscription in list(self._subscriptions):
            await subscription.stop()
        self._subscriptions.clear()
        with contextlib.suppress(Exception):
            await self._client.close()
