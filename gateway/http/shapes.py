"""What the gateway answers: the JSON Schemas of PROTOCOL section 5's response shapes (and the
envelope the API carries), for the route table and so for /openapi.json.

A `Shape` may hold other shapes as values; the document turns them into `$ref`s. Objects
list every member the gateway sends, all of them required; more members may be added (the
protocol's promise), so objects stay open unless the protocol closes them (the envelope).
An object meant to be free-form says `additionalProperties: true` outright.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.http.routes import Shape
from gateway.notify import EVENT_KINDS
from identity.envelope import PROTOCOL
from routing.claims import EscalationState
from routing.outcomes import OutcomeKind
from routing.tasks import Act, Control, State

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
FREE = {"type": "object", "additionalProperties": True}


def nullable(schema: Mapping[str, Any] | Shape) -> dict[str, Any]:
    return {"anyOf": [{"type": "null"}, schema]}


def one_of(values: Iterable[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def members(**properties: Any) -> dict[str, Any]:
    """An object with exactly these members, all required."""
    return {"type": "object", "required": list(properties), "properties": properties}


def list_of(item: Mapping[str, Any] | Shape) -> dict[str, Any]:
    return {"type": "array", "items": item}


def items_of(item: Shape) -> dict[str, Any]:
    """The `{"items": [...]}` answer of the list endpoints."""
    return members(items=list_of(item))


def extended(base: Shape, **properties: Any) -> dict[str, Any]:
    """`base`'s members and these, as one object (no `allOf`: a closed copy still works)."""
    schema = dict(base.schema)
    return {
        **schema,
        "required": [*schema["required"], *properties],
        "properties": {**schema["properties"], **properties},
    }


STATE = one_of(s.value for s in State)
CONTROL = one_of(c.value for c in Control)

PROBLEM = Shape(
    "Problem",
    {
        "description": "RFC 9457 problem details; `code` is the protocol's error code. Other"
        " members are extensions naming what the refusal is about.",
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "pattern": "^urn:switchboard:error:[a-z_]+$"},
            "title": STRING,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": STRING,
            "code": {"type": "string", "pattern": "^[a-z_]+$"},
        },
        "additionalProperties": True,
    },
)

ENVELOPE = Shape(
    "Envelope",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["v", "id", "from", "to", "created_at", "body", "sig"],
        "properties": {
            "v": {"const": PROTOCOL},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
            "from": STRING,
            "to": STRING,
            "task": nullable(STRING),
            "reply_to": nullable(STRING),
            "act": one_of(a.value for a in Act),
            "created_at": TIME,
            "expires_at": nullable(TIME),
            "body": {
                "type": "object",
                "properties": {"text": STRING, "parts": list_of(FREE)},
                "additionalProperties": True,
            },
            "meta": FREE,
            "sig": members(alg={"const": "EdDSA"}, kid=STRING, value=STRING),
        },
    },
)

POLICY = Shape(
    "Policy",
    {
        "description": "The brand's contact policy, rate limits and escalation rules.",
        "type": "object",
        "additionalProperties": True,
    },
)
STORED_POLICY = Shape("StoredPolicy", {**POLICY.schema, **members(version=INTEGER)})

JWK = Shape(
    "Jwk",
    {
        "type": "object",
        "required": ["kty", "crv", "x"],
        "properties": {
            "kty": {"const": "OKP"},
            "crv": {"const": "Ed25519"},
            "x": STRING,
            "kid": STRING,
            "alg": {"const": "EdDSA"},
            "use": {"const": "sig"},
        },
    },
)
JWKS = Shape("Jwks", members(keys=list_of(JWK)))

CARD = Shape(
    "AgentCard",
    members(
        address=STRING,
        kind=one_of(["brand", "personal"]),
        display_name=STRING,
        description=STRING,
        skills=list_of(STRING),
        keys=list_of(
            members(kid=STRING, jwk=JWK, status=one_of(["active", "revoked"])),
        ),
        endpoint=nullable(
            {
                "type": "object",
                "required": ["url", "status"],
                "properties": {
                    "url": STRING,
                    "status": one_of(["active", "disabled"]),
                    "max_batch": {"type": "integer", "minimum": 2},
                },
            }
        ),
    ),
)

DIRECTORY = Shape(
    "DirectoryResult",
    members(
        query=STRING,
        items=list_of(
            members(
                address=STRING,
                kind=one_of(["brand", "personal"]),
                display_name=STRING,
                description=STRING,
                skills=list_of(STRING),
                score={"type": "number"},
                why=STRING,
            )
        ),
    ),
)

BRAND_CREATED = Shape(
    "BrandCreated",
    members(display_name=STRING, domain=STRING, token={"type": "string", "pattern": "^sbt_"}),
)


def _answer(duplicate: bool) -> dict[str, Any]:
    return members(
        id=STRING, task=STRING, task_state=STATE, control=CONTROL, duplicate={"const": duplicate}
    )


ACCEPTED = Shape("MessageAccepted", _answer(False))
DUPLICATE = Shape("MessageDuplicate", _answer(True))

TASK_BRIEF = Shape("TaskBrief", members(id=STRING, state=STATE, control=CONTROL))
INBOX_ITEM = Shape(
    "InboxItem",
    members(seq={"type": "integer", "minimum": 1}, envelope=ENVELOPE, task=nullable(TASK_BRIEF)),
)
INBOX = Shape(
    "Inbox",
    members(items=list_of(INBOX_ITEM), next={"type": "integer", "minimum": 0}),
)

ESCALATION = Shape(
    "Escalation",
    members(
        id=STRING,
        task=STRING,
        brand=STRING,
        state=one_of(s.value for s in EscalationState),
        reason=STRING,
        reason_text=STRING,
        rule=STRING,
        priority=STRING,
        summary=STRING,
        claimed_by=nullable(STRING),
        created_at=TIME,
        updated_at=TIME,
        closed_at=nullable(TIME),
    ),
)
ESCALATION_DETAIL = Shape(
    "EscalationDetail",
    extended(
        ESCALATION,
        task_state=nullable(STATE),
        task_control=nullable(CONTROL),
        initiator=nullable(STRING),
        responder=nullable(STRING),
        transcript=list_of(ENVELOPE),
    ),
)
ESCALATIONS = Shape("EscalationList", items_of(ESCALATION))
CONSOLE_EVENT = Shape(
    "ConsoleEvent",
    {
        "description": "One event of the brand's live queue; `seq` is its SSE id.",
        "type": "object",
        "required": ["seq"],
        "properties": {"seq": {"type": "integer", "minimum": 1}},
        "additionalProperties": True,
    },
)

OUTCOME_ENTRY = Shape(
    "OutcomeEntry",
    members(
        brand=STRING,
        seq=INTEGER,
        task=STRING,
        agent=STRING,
        outcome=one_of(k.value for k in OutcomeKind),
        resolved_by=nullable(STRING),
        escalated=BOOLEAN,
        confirmed=BOOLEAN,
        at=STRING,
        prev_hash=STRING,
        hash=STRING,
        sig=FREE,
    ),
)

TASK = Shape(
    "Task",
    members(
        id=STRING,
        state=STATE,
        control=CONTROL,
        initiator=STRING,
        responder=STRING,
        brand=nullable(STRING),
        created_at=TIME,
        updated_at=TIME,
        completed_at=nullable(TIME),
        escalated=BOOLEAN,
        confirmed=BOOLEAN,
        resolved_by=nullable(STRING),
        route_why=nullable(STRING),
    ),
)
_ATTEMPT = members(
    at=TIME,
    outcome=STRING,
    status=nullable(INTEGER),
    error=nullable(STRING),
    note=nullable(STRING),
    duration_ms=nullable({"type": "number"}),
)
DELIVERY = Shape(
    "Delivery",
    members(
        id=STRING,
        recipient=STRING,
        envelope=nullable(STRING),
        status=STRING,
        created_at=TIME,
        next_attempt_at=nullable(TIME),
        last_error=nullable(STRING),
        attempts=list_of(_ATTEMPT),
    ),
)
TASK_DETAIL = Shape(
    "TaskDetail",
    extended(
        TASK,
        history=list_of(ENVELOPE),
        events=list_of(
            {
                "type": "object",
                "required": ["at", "kind"],
                "properties": {"at": TIME, "kind": STRING},
                "additionalProperties": True,
            }
        ),
        deliveries=list_of(DELIVERY),
        escalations=list_of(ESCALATION),
        outcome=nullable(OUTCOME_ENTRY),
    ),
)
TASKS = Shape("TaskList", members(items=list_of(TASK), next=nullable(STRING)))

OPERATOR = Shape(
    "Operator",
    members(
        address=STRING,
        brand=STRING,
        handle=STRING,
        display_name=STRING,
        email=nullable(STRING),
        skills=list_of(STRING),
        created_at=TIME,
    ),
)
OPERATOR_CREATED = Shape(
    "OperatorCreated", extended(OPERATOR, token={"type": "string", "pattern": "^sbt_"})
)
OPERATORS = Shape("OperatorList", items_of(OPERATOR))

CHANNEL = Shape(
    "Channel",
    {
        "type": "object",
        "required": ["id", "kind", "events", "status", "note", "created_at"],
        "properties": {
            "id": STRING,
            "kind": one_of(["webhook", "slack", "email"]),
            "url": STRING,
            "to": STRING,
            "events": list_of(one_of(EVENT_KINDS)),
            "status": one_of(["active", "disabled"]),
            "note": nullable(STRING),
            "created_at": TIME,
        },
        "oneOf": [{"required": ["url"]}, {"required": ["to"]}],
    },
)
CHANNELS = Shape("ChannelList", items_of(CHANNEL))

OUTCOMES = Shape(
    "OutcomeLedger",
    members(
        brand=STRING,
        since=nullable(STRING),
        until=nullable(STRING),
        entries=list_of(OUTCOME_ENTRY),
        totals=members(
            by_kind={"type": "object", "additionalProperties": INTEGER},
            resolved_by_agent=INTEGER,
            resolved_by_human=INTEGER,
            billable=INTEGER,
        ),
        gateway=STRING,
        jwks=JWKS,
    ),
)

WELL_KNOWN = Shape(
    "WellKnown",
    members(
        protocol={"const": PROTOCOL},
        domain=STRING,
        personal_domain=STRING,
        gateway=STRING,
        jwks=JWKS,
        limits=members(
            max_request_bytes=INTEGER,
            max_text_bytes=INTEGER,
            max_parts=INTEGER,
            clock_skew_seconds=INTEGER,
            replay_window_seconds=INTEGER,
            rate_per_minute=INTEGER,
            inbox_wait_max_seconds=INTEGER,
        ),
    ),
)

HEALTH = Shape("Health", members(status={"const": "ok"}))
READINESS = Shape(
    "Readiness",
    members(
        status=one_of(["ready", "unavailable"]),
        checks={"type": "object", "additionalProperties": BOOLEAN},
    ),
)
METRICS = Shape("Metrics", {"type": "string", "description": "Prometheus text format 0.0.4"})
OPENAPI = Shape(
    "OpenApiDocument",
    {
        "type": "object",
        "required": ["openapi", "info", "paths"],
        "additionalProperties": True,
    },
)
STREAM = Shape(
    "EventStream",
    {"type": "string", "description": "Server-Sent Events; each event's data is JSON"},
)
