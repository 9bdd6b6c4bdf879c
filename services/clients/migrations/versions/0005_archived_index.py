"""List archived clients newest first from an index of their own (GET /clients?status=archived).

The live list's index is partial over live clients; this one is its mirror over archived clients, so listing the
archive stays an index scan however many live clients there are.

Revision ID: 0005
Revises: 0002
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_clients_archived_newest ON clients.clients (created_at DESC, id DESC) "
        "WHERE archived_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX clients.ix_clients_archived_newest")
