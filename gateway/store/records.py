"""What the store hands out: plain frozen dataclasses, never ORM rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """Compact JSON text as the store keeps it."""
    return _ENCODE(value)


@dataclass(frozen=True, slots=True)
class BrandRecord:
    domain: str
    display_name: str
    policy: dict[str, Any]
    policy_version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRecord:
    kid: str
    jwk: dict[str, str]
    status: str
    created_at: datetime
    revoked_at: datetime | None

    def public_view(self) -> dict[str, Any]:
        return {"kid": self.kid, "jwk": self.jwk, "status": self.status}


@dataclass(frozen=True, slots=True)
class AgentRecord:
    address: str
    kind: str  # "personal" or "brand"
    brand: str | None
    display_name: str
    description: str
    skills: tuple[str, ...]
    endpoint_url: str | None
    endpoint_status: str | None
    endpoint_note: str | None
    endpoint_max_batch: int  # envelopes one POST may carry (docs/delivery-batches.md)
    status: str
    created_at: datetime
    updated_at: datetime
    keys: tuple[KeyRecord, ...] = ()

    def card(self) -> dict[str, Any]:
        """The public card (PROTOCOL section 5)."""
        return {
            "address": self.address,
            "kind": self.kind,
            "display_name": self.display_name,
            "description": self.description,
            "skills": list(self.skills),
            "keys": [key.public_view() for key in self.keys],
            "endpoint": self._endpoint_view(),
        }

    def _endpoint_view(self) -> dict[str, Any] | None:
        if not self.endpoint_url:
            return None
        view: dict[str, Any] = {"url": self.endpoint_url, "status": self.endpoint_status}
        if self.endpoint_max_batch > 1:  # the extension shows only where it is used
            view["max_batch"] = self.endpoint_max_batch
        return view


@dataclass(frozen=True, slots=True)
class TokenRecord:
    role: str
    brand: str | None
    subject: str | None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    initiator: str
    responder: str
    brand: str | None
    state: str
    control: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    escalated: bool
    confirmed: bool
    resolved_by: str | None
    turns_without_progress: int
    route_why: str | None

    def brief(self) -> dict[str, str]:
        """The `task` member of inbox items and deliveries."""
        return {"id": self.id, "state": self.state, "control": self.control}


@dataclass(frozen=True, slots=True)
class StoredEnvelope:
    pk: int
    sender: str
    envelope_id: str
    recipient: str
    task_id: str | None
    act: str
    digest: str
    body: dict[str, Any]
    answer: dict[str, Any] | None
    accepted_at: datetime


@dataclass(frozen=True, slots=True)
class InboxItem:
    seq: int
    envelope: dict[str, Any]
    task: dict[str, str] | None

    def view(self) -> dict[str, Any]:
        return {"seq": self.seq, "envelope": self.envelope, "task": self.task}
