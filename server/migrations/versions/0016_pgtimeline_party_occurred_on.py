"""party time: activity_party carries its activity's occurred_on, indexed per party record

Revision ID: 0016_pgtimeline
Revises: 0015_wake
Create Date: 2026-12-06 10:00:00

A record's timeline found the activities it is a party to by probing every one of them for
its ``occurred_on`` (2,000 primary-key probes for a busy account, most of the first page's
time on PostgreSQL). ``activity_party.occurred_on`` is a copy of its activity's, kept equal
on every write (server/crm/activities.py), and ``(<party>_id, occurred_on, activity_id)``
replaces the ``(<party>_id, activity_id)`` indexes, so the party branch walks an index in
timeline order as the regarding branch does. Existing rows are filled from their activity
before the column becomes NOT NULL.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0016_pgtimeline'
down_revision = '0015_wake'
branch_labels = None
depends_on = None

PARTY_COLUMNS = ("user_id", "contact_id", "account_id", "lead_id", "queue_id")


def upgrade() -> None:
    with op.batch_alter_table("activity_party") as batch:
        batch.add_column(sa.Column("occurred_on", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE activity_party SET occurred_on = (SELECT activity.occurred_on "
               "FROM activity WHERE activity.id = activity_party.activity_id)")
    with op.batch_alter_table("activity_party") as batch:
        batch.alter_column("occurred_on", existing_type=sa.DateTime(timezone=True),
                           nullable=False)
        for column in PARTY_COLUMNS:
            batch.drop_index(f"ix_activity_party_{column}_activity")
            batch.create_index(f"ix_activity_party_{column}_occurred",
                               [column, "occurred_on", "activity_id"])


def downgrade() -> None:
    with op.batch_alter_table("activity_party") as batch:
        for column in PARTY_COLUMNS:
            batch.drop_index(f"ix_activity_party_{column}_occurred")
            batch.create_index(f"ix_activity_party_{column}_activity", [column, "activity_id"])
        batch.drop_column("occurred_on")
