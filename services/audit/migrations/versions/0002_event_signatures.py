"""Each chained event keeps its producer's signature and the key id it was signed with (both empty for the
entries chained before events were signed: they keep verifying by format version 1).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("key_id", sa.Text(), nullable=True), schema="audit")
    op.add_column("events", sa.Column("signature", sa.LargeBinary(), nullable=True), schema="audit")
    op.create_check_constraint("signed_with_key", "events", "(key_id IS NULL) = (signature IS NULL)", schema="audit")


def downgrade() -> None:
    op.drop_constraint("signed_with_key", "events", schema="audit")
    op.drop_column("events", "signature", schema="audit")
    op.drop_column("events", "key_id", schema="audit")
