"""An event names its subject: a credential (as before), a user (`target_user_id`, `target_user_email`, counted by
its own ordinal column for exact totals) or none beyond its actor, with a `detail`. An id the event does not have
is NULL, and so is that dimension's ordinal (the event is not counted in it). Entries chained before keep their
values and their hashes (format versions 1 and 2 do not encode the new columns).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPTIONAL = ("user_id", "client_id", "credential_id")


def upgrade() -> None:
    for dimension in OPTIONAL:
        op.alter_column("events", dimension, nullable=True, schema="audit")
        op.alter_column("events", f"{dimension}_ordinal", nullable=True, schema="audit")
        op.create_check_constraint(
            f"{dimension}_counted", "events", f"({dimension} IS NULL) = ({dimension}_ordinal IS NULL)", schema="audit"
        )
    op.add_column("events", sa.Column("target_user_id", sa.Uuid(), nullable=True), schema="audit")
    op.add_column(
        "events", sa.Column("target_user_email", sa.Text(), nullable=False, server_default=""), schema="audit"
    )
    op.add_column("events", sa.Column("detail", sa.Text(), nullable=False, server_default=""), schema="audit")
    op.add_column("events", sa.Column("target_user_id_ordinal", sa.BigInteger(), nullable=True), schema="audit")
    op.create_check_constraint(
        "target_user_id_counted",
        "events",
        "(target_user_id IS NULL) = (target_user_id_ordinal IS NULL)",
        schema="audit",
    )
    op.create_index(
        "ix_events_target_user_id_ordinal", "events", ["target_user_id", "target_user_id_ordinal"], schema="audit"
    )


def downgrade() -> None:
    op.drop_index("ix_events_target_user_id_ordinal", "events", schema="audit")
    op.drop_constraint("target_user_id_counted", "events", schema="audit")
    for name in ("target_user_id_ordinal", "detail", "target_user_email", "target_user_id"):
        op.drop_column("events", name, schema="audit")
    for dimension in OPTIONAL:
        op.drop_constraint(f"{dimension}_counted", "events", schema="audit")
        op.alter_column("events", f"{dimension}_ordinal", nullable=False, schema="audit")
        op.alter_column("events", dimension, nullable=False, schema="audit")
