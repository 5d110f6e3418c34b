"""mailbox: appointments, contacts and tasks turned off on their own

Revision ID: 0021_actsoff
Revises: 0020_fkindexes
Create Date: 2026-12-07 12:30:00

``mailbox.acts_enabled``: when the server the mailbox's appointments, contacts and tasks
sync with refuses its sign-in (a CalDAV/CardDAV profile's password changed), the item sync
is turned off until someone corrects it and tests the mailbox again, as outgoing email is
(``outgoing_enabled``): trying the refused password at every run would lock the account
out at servers that count failed sign-ins (docs/mail-servers.md). Test & Enable sets it
from the items' test. Existing mailboxes keep their item sync on.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0021_actsoff'
down_revision = '0020_fkindexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A column added in place on both databases: SQLite's ALTER TABLE ... ADD COLUMN (no
    # rebuild of the table, which would drop triggers on it).
    op.add_column("mailbox", sa.Column("acts_enabled", sa.Boolean(), nullable=False,
                                       server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_column("acts_enabled")
