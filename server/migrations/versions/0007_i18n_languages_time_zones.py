"""users' and the organization's language and time zone

Revision ID: 0007_i18n
Revises: 0006_mailsync
Create Date: 2026-12-05 23:40:00

* ``user.language`` / ``user.time_zone``: the user's own choice; empty for existing users,
  who keep seeing their browser's language and the organization's time zone.
* ``organization.default_language`` / ``default_time_zone``: English and UTC for an
  existing organization, what every page showed before.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007_i18n'
down_revision = '0006_mailsync'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("language", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("organization") as batch:
        batch.add_column(sa.Column("default_language", sa.String(length=10), nullable=False,
                                   server_default="en"))
        batch.add_column(sa.Column("default_time_zone", sa.String(length=64), nullable=False,
                                   server_default="UTC"))


def downgrade() -> None:
    with op.batch_alter_table("organization") as batch:
        batch.drop_column("default_time_zone")
        batch.drop_column("default_language")
    with op.batch_alter_table("user") as batch:
        batch.drop_column("time_zone")
        batch.drop_column("language")
