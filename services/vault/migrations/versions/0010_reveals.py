"""Who revealed what: one row per (user, credential) with the last reveal and how many there were, upserted by
the reveal's own statement. The exposure report reads it ("what did this user see that nobody changed
since?"), and rotation work when a user leaves can be built on it. It goes with its credential (a purge or a
shred deletes it).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reveals",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("credential_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("last_revealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reveal_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "credential_id", name=op.f("pk_reveals")),
        sa.ForeignKeyConstraint(
            ["credential_id"], ["vault.credentials.id"], name=op.f("fk_reveals_credential_id_credentials"),
            ondelete="CASCADE",
        ),
        schema="vault",
    )  # fmt: skip
    op.create_index("ix_reveals_user_id_last_revealed_at", "reveals", ["user_id", "last_revealed_at"], schema="vault")
    op.create_index(op.f("ix_reveals_credential_id"), "reveals", ["credential_id"], schema="vault")


def downgrade() -> None:
    op.drop_table("reveals", schema="vault")
