"""escalation, operators, notification channels, timers and the outcome ledger

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("brand", sa.String(253), nullable=False),
        sa.Column("handle", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("skills", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(["brand"], ["brands.domain"], name="fk_operators_brand"),
        sa.PrimaryKeyConstraint("address", name="pk_operators"),
    )
    op.create_index("ix_operators_brand", "operators", ["brand", "address"])
    op.create_table(
        "escalations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("brand", sa.String(253), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("reason_text", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(300), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("claimed_by", sa.String(320), nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.Column("closed_at", _AT, nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_escalations_task_id"),
        sa.PrimaryKeyConstraint("id", name="pk_escalations"),
    )
    op.create_index("ix_escalations_brand", "escalations", ["brand", "state", "created_at"])
    op.create_index("ix_escalations_task", "escalations", ["task_id", "created_at"])
    op.create_table(
        "escalation_heads",
        sa.Column("brand", sa.String(253), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("brand", name="pk_escalation_heads"),
    )
    op.create_table(
        "escalation_events",
        sa.Column("brand", sa.String(253), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("escalation_id", sa.String(40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("brand", "seq", name="pk_escalation_events"),
        sa.UniqueConstraint("id", name="uq_escalation_events_id"),
    )
    op.create_table(
        "channels",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("brand", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(["brand"], ["brands.domain"], name="fk_channels_brand"),
        sa.PrimaryKeyConstraint("id", name="pk_channels"),
    )
    op.create_index("ix_channels_brand", "channels", ["brand", "created_at"])
    op.create_table(
        "timers",
        sa.Column("pk", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("due_at", _AT, nullable=False),
        sa.Column("fired_at", _AT, nullable=True),
        sa.Column("lease", sa.String(40), nullable=True),
        sa.Column("lease_until", _AT, nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_timers"),
        sa.UniqueConstraint("kind", "key", name="uq_timers_kind_key"),
    )
    op.create_index("ix_timers_due", "timers", ["fired_at", "due_at"])
    op.create_table(
        "outcome_heads",
        sa.Column("brand", sa.String(253), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("brand", name="pk_outcome_heads"),
    )
    op.create_table(
        "outcomes",
        sa.Column("brand", sa.String(253), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("agent", sa.String(320), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("resolved_by", sa.String(10), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("sig", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("brand", "seq", name="pk_outcomes"),
    )
    op.create_index("ix_outcomes_task", "outcomes", ["task_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_task", table_name="outcomes")
    op.drop_table("outcomes")
    op.drop_table("outcome_heads")
    op.drop_index("ix_timers_due", table_name="timers")
    op.drop_table("timers")
    op.drop_index("ix_channels_brand", table_name="channels")
    op.drop_table("channels")
    op.drop_table("escalation_events")
    op.drop_table("escalation_heads")
    op.drop_index("ix_escalations_task", table_name="escalations")
    op.drop_index("ix_escalations_brand", table_name="escalations")
    op.drop_table("escalations")
    op.drop_index("ix_operators_brand", table_name="operators")
    op.drop_table("operators")
