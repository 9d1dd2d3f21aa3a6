"""Clients for the gateway's HTTP API, used by agents, the demo, the examples and the tests.

`AgentClient` holds an agent's address and key: it signs envelopes, authenticates with agent
JWTs, reads the inbox and follows its stream. `StaffClient` holds an opaque `sbt_` token (the
admin, a brand admin, an operator). Both raise `GatewayProblem` with the problem's code and
detail when the gateway refuses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from gateway.clock import iso
from identity.envelope import sign
from identity.errors import InvalidJson
from identity.ids import new_ulid
from identity.json_text import load
from identity.keys import PrivateKey, PublicKey
from identity.tokens import issue_agent_token

_ANSWER = "the gateway's answer"


class GatewayProblem(Exception):
    """The gateway answered with an RFC 9457 problem."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.code = str(problem.get("code", "unknown"))
        self.detail = str(problem.get("detail", ""))
        self.problem = problem
        super().__init__(f"{status} {self.code}: {self.detail}")


class _Http:
    def __init__(self, base_url: str, session: aiohttp.ClientSession | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._own_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def events(
        self, path: str, token: str, after: int = 0, heartbeat: float = 15.0
    ) -> AsyncIterator[dict[str, Any]]:
        """The `data` of each Server-Sent Event on `path`, resuming after `after`."""
        headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(after)}
        async with self.session.get(
            self.base_url + path,
            headers=headers,
            params={"heartbeat": heartbeat},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=heartbeat * 4),
        ) as response:
            if response.status >= 400:
                raise _problem(response.status, await response.read())
            data: list[str] = []
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "" and data:
                    event = load("\n".join(data), "the gateway's event")
                    if not isinstance(event, dict):
                        raise InvalidJson(
                            f"the gateway's event is not a JSON object: {event!r:.80}"
                        )
                    yield event
                    data = []

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        time_limit: float = 60.0,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method,
            self.base_url + path,
            data=data,
            headers=headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as response:
            payload = await response.read()
            if response.status >= 400:
                raise _problem(response.status, payload)
            return load(payload, _ANSWER) if payload else None


def _problem(status: int, payload: bytes) -> GatewayProblem:
    """The error answer as a `GatewayProblem`; one that is no JSON object (a proxy's error
    page, say) keeps its status with an empty problem."""
    try:
        problem = load(payload, _ANSWER)
    except InvalidJson:
        problem = None
    return GatewayProblem(status, problem if isinstance(problem, dict) else {})


class StaffClient(_Http):
    """A person or brand with an `sbt_` token: the admin, a brand admin, an operator."""

    def __init__(
        self, base_url: str, token: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        super().__init__(base_url, session)
        self.token = token

    async def create_brand(self, domain: str, display_name: str) -> dict[str, Any]:
        return await self.call(  # type: ignore[no-any-return]
            "POST",
            "/v1/brands",
            token=self.token,
            body={"domain": domain, "display_name": display_name},
        )

    async def register_brand_agent(
        self,
        address: str,
        key: PrivateKey,
        *,
        display_name: str = "",
        description: str = "",
        skills: Sequence[str] = (),
        endpoint: str | None = None,
        max_batch: int = 1,
    ) -> dict[str, Any]:
        """Register a brand agent; `max_batch` > 1 lets its endpoint take ordered batches
        (docs/delivery-batches.md)."""
        body: dict[str, Any] = {
            "address": address,
            "kind": "brand",
            "display_name": display_name,
            "description": description,
            "skills": list(skills),
            "keys": [key.public.jwk],
        }
        if endpoint:
            body["endpoint"] = {"url": endpoint}
            if max_batch != 1:
                body["endpoint"]["max_batch"] = max_batch
        return await self.call("POST", "/v1/agents", token=self.token, body=body)  # type: ignore[no-any-return]

    async def set_policy(self, domain: str, policy: dict[str, Any]) -> dict[str, Any]:
        return await self.call(  # type: ignore[no-any-return]
            "PUT", f"/v1/brands/{domain}/policy", token=self.token, body=policy
        )

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, token=self.token, params=params or None)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.call(
            "POST", path, token=self.token, body=body if body is not None else {}
        )

    async def stream(
        self, path: str = "/v1/escalations/stream", after: int = 0, heartbeat: float = 15.0
    ) -> AsyncIterator[dict[str, Any]]:
        """Follow a staff stream (the operator console's escalation queue by default)."""
        async for event in self.events(path, self.token, after, heartbeat):
            yield event


class AgentClient(_Http):
    """An agent: its address and key, talking to one gateway."""

    def __init__(
        self,
        base_url: str,
        address: str,
        key: PrivateKey,
        *,
        audience: str,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(base_url, session)
        self.address = address
        self.key = key
        self.audience = audience
        self._token: tuple[str, datetime] | None = None

    def token(self) -> str:
        """A fresh agent JWT, reused until a minute before it expires."""
        now = datetime.now(UTC)
        if self._token is None or self._token[1] - now < timedelta(seconds=60):
            self._token = (
                issue_agent_token(self.key, self.address, self.audience, now, ttl=300),
                now + timedelta(seconds=300),
            )
        return self._token[0]

    async def register_personal(
        self, *, display_name: str = "", description: str = ""
    ) -> dict[str, Any]:
        """Register this personal agent, proving possession of its key with a JWT."""
        body = {
            "address": self.address,
            "kind": "personal",
            "display_name": display_name,
            "description": description,
            "keys": [self.key.public.jwk],
        }
        return await self.call("POST", "/v1/agents", token=self.token(), body=body)  # type: ignore[no-any-return]

    async def add_key(self, public: PublicKey) -> dict[str, Any]:
        """Register another key for this agent (the first step of a rotation)."""
        path = f"/v1/agents/{self.address}/keys"
        return await self.call("POST", path, token=self.token(), body={"jwk": public.jwk})  # type: ignore[no-any-return]

    async def revoke_key(self, kid: str) -> dict[str, Any]:
        """Revoke one of this agent's keys (never its last active one)."""
        path = f"/v1/agents/{self.address}/keys/{kid}"
        return await self.call("DELETE", path, token=self.token())  # type: ignore[no-any-return]

    def envelope(
        self,
        to: str,
        text: str = "",
        *,
        act: str = "say",
        task: str | None = None,
        reply_to: str | None = None,
        parts: Sequence[dict[str, Any]] = (),
        meta: dict[str, Any] | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """A signed envelope from this agent."""
        moment = now or datetime.now(UTC)
        unsigned = {
            "v": "switchboard/1",
            "id": new_ulid(moment),
            "from": self.address,
            "to": to,
            "task": task,
            "reply_to": reply_to,
            "act": act,
            "created_at": iso(moment),
            "expires_at": iso(expires_at) if expires_at else None,
            "body": {"text": text, "parts": list(parts)},
            "meta": meta or {},
        }
        return sign(unsigned, self.key)

    async def post_envelope(self, envelope: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/v1/messages", body=envelope)  # type: ignore[no-any-return]

    async def send(self, to: str, text: str = "", **kwargs: Any) -> dict[str, Any]:
        """Sign and submit; returns the gateway's answer `{id, task, task_state, control, …}`."""
        return await self.post_envelope(self.envelope(to, text, **kwargs))

    async def inbox(self, after: int = 0, limit: int = 100, wait: float = 0) -> dict[str, Any]:
        return await self.call(  # type: ignore[no-any-return]
            "GET",
            "/v1/inbox",
            token=self.token(),
            params={"after": after, "limit": limit, "wait": wait},
            time_limit=wait + 30,
        )

    async def task(self, task_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/tasks/{task_id}", token=self.token())  # type: ignore[no-any-return]

    async def stream(
        self, after: int = 0, heartbeat: float = 15.0
    ) -> AsyncIterator[dict[str, Any]]:
        """Follow the inbox as Server-Sent Events, from `after` (Last-Event-ID), forever."""
        async for event in self.events("/v1/inbox/stream", self.token(), after, heartbeat):
            yield event
