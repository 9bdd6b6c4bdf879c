"""The outbox keeps the W3C `traceparent` of the request that wrote an event (NULL when tracing is off), so the
relay can send it with the message and the audit append continues the request's trace.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("traceparent", sa.Text(), nullable=True), schema="vault")


def downgrade() -> None:
    op.drop_column("outbox", "traceparent", schema="vault")
