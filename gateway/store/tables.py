"""The schema, as SQLAlchemy Core tables. Alembic migrations create exactly this.

The database is the source of truth. Ordering guarantees are constraints, not hope:
- an envelope is unique per (sender, envelope id): that pair is the replay memory;
- an inbox item is unique per (agent, seq), and `seq` comes from the agent's row in
  `inbox_heads`, updated in the same transaction, so concurrent writers serialise per agent and
  readers never see a gap fill in later;
- outbox rows are ordered by their integer id within a partition (one endpoint).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for ids that grow.
Id = BigInteger().with_variant(Integer(), "sqlite")

brands = Table(
    "brands",
    metadata,
    Column("domain", String(253), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("policy", Text, nullable=False),
    Column("policy_version", Integer, nullable=False, default=1),
    Column("created_at", UtcDateTime(), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("brand", String(253), ForeignKey("brands.domain"), nullable=True),
    Column("subject", String(320), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

agents = Table(
    "agents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("kind", String(10), nullable=False),
    Column("brand", String(253), ForeignKey("brands.domain"), nullable=True),
    Column("display_name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("skills", Text, nullable=False),
    Column("endpoint_url", Text, nullable=True),
    Column("endpoint_status", String(20), nullable=True),
    Column("endpoint_note", Text, nullable=True),
    # Envelopes one POST may carry (1: the body of PROTOCOL section 6; more: ordered batches).
    Column("endpoint_max_batch", Integer, nullable=False, server_default="1"),
    Column("status", String(20), nullable=False, default="active"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index("ix_agents_brand", agents.c.brand, agents.c.id)

agent_keys = Table(
    "agent_keys",
    metadata,
    Column("agent", String(320), ForeignKey("agents.address"), primary_key=True),
    Column("kid", String(64), primary_key=True),
    Column("jwk", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("initiator", String(320), nullable=False),
    Column("responder", String(320), nullable=False),
    Column("brand", String(253), nullable=True),
    Column("state", String(20), nullable=False),
    Column("control", String(10), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("completed_at", UtcDateTime(), nullable=True),
    Column("escalated", Boolean, nullable=False, default=False),
    Column("confirmed", Boolean, nullable=False, default=False),
    Column("resolved_by", String(10), nullable=True),
    Column("turns_without_progress", Integer, nullable=False, default=0),
    Column("route_why", Text, nullable=True),
    Column("version", Integer, nullable=False, default=1),
)
Index("ix_tasks_initiator", tasks.c.initiator, tasks.c.updated_at)
Index("ix_tasks_responder", tasks.c.responder, tasks.c.updated_at)
Index("ix_tasks_brand", tasks.c.brand, tasks.c.state)

envelopes = Table(
    "envelopes",
    metadata,
    Column("pk", Id, primary_key=True, autoincrement=True),
    Column("sender", String(320), nullable=False),
    Column("envelope_id", String(64), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("task_id", String(40), nullable=True),
    Column("act", String(10), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("answer", Text, nullable=True),
    Column("accepted_at", UtcDateTime(), nullable=False),
    UniqueConstraint("sender", "envelope_id", name="uq_envelopes_replay"),
)
Index("ix_envelopes_task", envelopes.c.task_id, envelopes.c.pk)

task_events = Table(
    "task_events",
    metadata,
    Column("pk", Id, primary_key=True, autoincrement=True),
    Column("task_id", String(40), ForeignKey("tasks.id"), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("data", Text, nullable=False),
)
Index("ix_task_events_task", task_events.c.task_id, task_events.c.pk)

inbox_heads = Table(
    "inbox_heads",
    metadata,
    Column("agent", String(320), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("agent", String(320), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("envelope_pk", Id, ForeignKey("envelopes.pk"), nullable=False),
    Column("task_id", String(40), nullable=True),
    Column("task_state", String(20), nullable=True),
    Column("task_control", String(10), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

# Every attempt the outbox worker makes, whatever the row's kind (migration 0002).
outbox_attempts = Table(
    "outbox_attempts",
    metadata,
    Column("pk", Id, primary_key=True, autoincrement=True),
    Column("outbox_pk", Id, ForeignKey("outbox.pk"), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("outcome", String(12), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("note", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Index("ix_outbox_attempts_row", "outbox_pk", "pk"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("pk", Id, primary_key=True, autoincrement=True),
    Column("public_id", String(40), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("partition", String(400), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Migration 0002 (delivery): the task a row belongs to (deliveries show on the task), and
    # the lease one replica holds while it works the row.
    Column("task_id", String(40), nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("leased_until", UtcDateTime(), nullable=True),
    Index("ix_outbox_task", "task_id", "pk"),
    Column("last_error", Text, nullable=True),
)
Index("ix_outbox_pending", outbox.c.status, outbox.c.partition, outbox.c.pk)

# --- escalation, operators, notifications, timers, outcome ledger (migration 0003) ---------

operators = Table(
    "operators",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("brand", String(253), ForeignKey("brands.domain"), nullable=False),
    Column("handle", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("skills", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_operators_brand", operators.c.brand, operators.c.address)

escalations = Table(
    "escalations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("task_id", String(40), ForeignKey("tasks.id"), nullable=False),
    Column("brand", String(253), nullable=False),
    Column("state", String(12), nullable=False),
    Column("reason", String(20), nullable=False),
    Column("reason_text", Text, nullable=False),
    Column("rule", String(300), nullable=False),
    Column("priority", String(10), nullable=False),
    Column("summary", Text, nullable=False),
    Column("claimed_by", String(320), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=True),
)
Index("ix_escalations_brand", escalations.c.brand, escalations.c.state, escalations.c.created_at)
Index("ix_escalations_task", escalations.c.task_id, escalations.c.created_at)

escalation_heads = Table(
    "escalation_heads",
    metadata,
    Column("brand", String(253), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

escalation_events = Table(
    "escalation_events",
    metadata,
    Column("brand", String(253), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(40), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("escalation_id", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)

channels = Table(
    "channels",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("brand", String(253), ForeignKey("brands.domain"), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("target", Text, nullable=False),
    Column("events", Text, nullable=False),
    Column("status", String(12), nullable=False),
    Column("note", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_channels_brand", channels.c.brand, channels.c.created_at)

timers = Table(
    "timers",
    metadata,
    Column("pk", Id, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("key", String(80), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("fired_at", UtcDateTime(), nullable=True),
    Column("lease", String(40), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    Column("data", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("kind", "key", name="uq_timers_kind_key"),
)
Index("ix_timers_due", timers.c.fired_at, timers.c.due_at)

outcome_heads = Table(
    "outcome_heads",
    metadata,
    Column("brand", String(253), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("brand", String(253), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("task_id", String(40), nullable=False),
    Column("agent", String(320), nullable=False),
    Column("outcome", String(12), nullable=False),
    Column("resolved_by", String(10), nullable=True),
    Column("escalated", Boolean, nullable=False),
    Column("confirmed", Boolean, nullable=False),
    Column("at", String(40), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("sig", Text, nullable=False),
)
Index("ix_outcomes_task", outcomes.c.task_id, outcomes.c.seq)
