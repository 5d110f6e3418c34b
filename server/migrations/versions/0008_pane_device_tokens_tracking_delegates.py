"""pane: a pane token's device, and who may track on a user's behalf

Revision ID: 0008_pane
Revises: 0007_i18n
Create Date: 2026-12-05 23:40:00

* ``api_token.device``: a digest of the add-in sign-in dialog's device cookie, so a pane
  that signs in again on the same device replaces its token instead of adding one.
  Existing tokens have none (each stays until it expires or is revoked).
* ``tracking_delegate``: a user's "who may track on my behalf" (an assistant tracking from
  the user's shared mailbox or as their delegate); empty at first.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0008_pane'
down_revision = '0007_i18n'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("device", sa.String(length=64), nullable=True))
    op.create_table(
        "tracking_delegate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_user_id", sa.Integer(), nullable=False),
        sa.Column("delegate_user_id", sa.Integer(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("owner_user_id <> delegate_user_id", name=op.f("ck_tracking_delegate_not_self")),
        sa.ForeignKeyConstraint(["delegate_user_id"], ["user.id"],
                                name=op.f("fk_tracking_delegate_delegate_user_id_user"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_user_id"], ["user.id"],
                                name=op.f("fk_tracking_delegate_owner_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_delegate")),
        sa.UniqueConstraint("owner_user_id", "delegate_user_id",
                            name=op.f("uq_tracking_delegate_owner_user_id_delegate_user_id")),
    )
    with op.batch_alter_table("tracking_delegate") as batch:
        batch.create_index(batch.f("ix_tracking_delegate_delegate_user_id"), ["delegate_user_id"], unique=False)
        batch.create_index(batch.f("ix_tracking_delegate_owner_user_id"), ["owner_user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("tracking_delegate")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("device")
