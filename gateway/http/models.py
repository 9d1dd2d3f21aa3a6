"""Request bodies at the HTTP edge (pydantic, strict, frozen, no extra members).

Envelopes are not here: `identity.envelope.parse` checks them on the object as received, so
that the signature covers exactly what the sender sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


Text200 = Annotated[str, Field(max_length=200)]
Text2000 = Annotated[str, Field(max_length=2000)]
Skill = Annotated[str, Field(min_length=1, max_length=100)]


class BrandCreate(_Model):
    domain: Annotated[str, Field(min_length=3, max_length=253)]
    display_name: Annotated[str, Field(min_length=1, max_length=200)]


MAX_BATCH = 100


class Endpoint(_Model):
    url: Annotated[str, Field(min_length=8, max_length=2000)]
    # Envelopes one POST may carry, in order (docs/delivery-batches.md); 1 is PROTOCOL's body.
    max_batch: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 1


class AgentRegister(_Model):
    address: Annotated[str, Field(min_length=3, max_length=320)]
    kind: Literal["brand", "personal"]
    display_name: Text200 = ""
    description: Text2000 = ""
    skills: Annotated[list[Skill], Field(max_length=50)] = []
    keys: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=10)]
    endpoint: Endpoint | None = None


class AgentPatch(_Model):
    """Members left out stay as they are. Only `endpoint` may be null (removing it); a null
    name, description or skills would erase what every card must have, so it is refused."""

    display_name: Text200 = ""
    description: Text2000 = ""
    skills: Annotated[list[Skill], Field(max_length=50)] = []
    endpoint: Endpoint | None = None


class KeyAdd(_Model):
    jwk: dict[str, Any]
