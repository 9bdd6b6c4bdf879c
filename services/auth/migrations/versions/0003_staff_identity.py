"""Staff identity: temporary passwords, TOTP MFA (sealed seed, last used step, recovery codes, sign-in
challenges) and what a session shows its user (IP, user agent, second factor).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    false = sa.text("false")
    op.add_column(
        "users",
        sa.Column("password_change_required", sa.Boolean(), server_default=false, nullable=False),
        schema="auth",
    )
    op.add_column("users", sa.Column("totp_sealed", sa.LargeBinary(), nullable=True), schema="auth")
    op.add_column("users", sa.Column("totp_pending_sealed", sa.LargeBinary(), nullable=True), schema="auth")
    op.add_column("users", sa.Column("mfa_enabled_at", sa.DateTime(timezone=True), nullable=True), schema="auth")
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger(), nullable=True), schema="auth")
    op.add_column("sessions", sa.Column("ip", sa.Text(), server_default="", nullable=False), schema="auth")
    op.add_column("sessions", sa.Column("user_agent", sa.Text(), server_default="", nullable=False), schema="auth")
    op.add_column("sessions", sa.Column("mfa", sa.Boolean(), server_default=false, nullable=False), schema="auth")
    op.create_table(
        "recovery_codes",
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_recovery_codes")),
        schema="auth",
    )
    op.create_index(op.f("ix_recovery_codes_user_id"), "recovery_codes", ["user_id"], schema="auth")
    op.create_table(
        "mfa_challenges",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_mfa_challenges")),
        schema="auth",
    )
    op.create_index(op.f("ix_mfa_challenges_expires_at"), "mfa_challenges", ["expires_at"], schema="auth")


def downgrade() -> None:
    op.drop_table("mfa_challenges", schema="auth")
    op.drop_table("recovery_codes", schema="auth")
    for column in ("mfa", "user_agent", "ip"):
        op.drop_column("sessions", column, schema="auth")
    for column in (
        "totp_last_step",
        "mfa_enabled_at",
        "totp_pending_sealed",
        "totp_sealed",
        "password_change_required",
    ):
        op.drop_column("users", column, schema="auth")
