"""service mail: extra headers on outgoing email, and which senders a queue accepts

Revision ID: 0012_service_mail
Revises: 0011_act
Create Date: 2026-12-06 02:30:00

* ``email.internet_headers``: the few extra headers an outgoing email is sent with, as
  ``[[name, value], ...]`` (``server.sync.mail.outgoing_headers`` says which are allowed):
  an acknowledgement's ``Auto-Submitted`` and ``X-Auto-Response-Suppress``. Existing rows
  have none (NULL).
* ``queue.accepting``: whose email a queue takes queue items for when it is among the
  recipients of synced mail (Dynamics' "accepting queue"): ``everyone`` (what every queue
  did until now, the default for existing rows), ``known_senders`` (senders the CRM knows:
  a contact, account, lead, user or queue) or ``nobody``.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0012_service_mail'
down_revision = '0011_act'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("email") as batch:
        batch.add_column(sa.Column("internet_headers", sa.JSON(), nullable=True))
    with op.batch_alter_table("queue") as batch:
        batch.add_column(sa.Column("accepting", sa.String(16), nullable=False,
                                   server_default="everyone"))


def downgrade() -> None:
    with op.batch_alter_table("queue") as batch:
        batch.drop_column("accepting")
    with op.batch_alter_table("email") as batch:
        batch.drop_column("internet_headers")
