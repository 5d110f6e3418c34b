"""mailbox: its Sent folder's name, and incoming and outgoing enabled on their own

Revision ID: 0006_mailsync
Revises: 0005_seca
Create Date: 2026-12-05 01:30:00

* ``mailbox.sent_folder``: the full name of the Sent folder on the mail server, for a
  server that marks none (no IMAP SPECIAL-USE) and names it as no mail client does. Empty:
  the engine finds it (``server.sync.engine.folders.find_sent``).
* ``mailbox.incoming_enabled`` / ``outgoing_enabled``: Test & Enable turns off only the
  direction whose test failed, so a mailbox whose outgoing server refuses it still has
  its mail read. Existing mailboxes keep both directions on.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006_mailsync'
down_revision = '0005_seca'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.add_column(sa.Column("sent_folder", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("incoming_enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column("outgoing_enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_column("outgoing_enabled")
        batch.drop_column("incoming_enabled")
        batch.drop_column("sent_folder")
