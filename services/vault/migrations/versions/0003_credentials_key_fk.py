"""Every credential's data key exists: a foreign key from a credential to the key that seals it.

The code already never deletes a key that seals a secret (store.delete_unused_old_keys); the constraint makes
the database refuse it too, so a secret can never be left without the key it needs. NOT VALID: rows written
before it are not checked here (a failed check would block the upgrade); `clientvault vault status` counts them.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE vault.credentials ADD CONSTRAINT fk_credentials_client_id_client_keys"
        " FOREIGN KEY (client_id, key_generation) REFERENCES vault.client_keys (client_id, generation) NOT VALID"
    )


def downgrade() -> None:
    op.drop_constraint("fk_credentials_client_id_client_keys", "credentials", schema="vault", type_="foreignkey")
