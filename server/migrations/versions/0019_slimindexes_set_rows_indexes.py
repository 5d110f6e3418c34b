"""fewer index entries per activity: the regarding and party indexes hold set values only

Revision ID: 0019_slimindexes
Revises: 0018_unitstamp
Create Date: 2026-12-06 19:15:00

Every new email wrote an entry into each index of ``activity``, ``email`` and
``activity_party``, most of them for an empty column: an activity is regarding at most one
of five record types and a party points to one of five, so four of an activity's five
regarding indexes, and four of a party's five, got an entry for a NULL with every row; and
each regarding key also had a single-column index beside the timeline index that begins
with it. Now:

* ``activity``: the five ``ix_activity_regarding_<type>_id`` indexes are dropped (the
  ``..._occurred`` ones serve the same lookups, foreign-key actions included), and the five
  ``ix_activity_regarding_<type>_id_occurred`` hold the rows whose column is set;
* ``activity_party``: the five ``ix_activity_party_<type>_id_occurred`` likewise;
* ``email``: ``ix_email_in_reply_to`` is dropped (nothing searches that column), and
  ``tracking_token``, ``parent_activity_id`` and ``receiving_mailbox_id`` are indexed where
  set.

A partial index (``WHERE <column> IS NOT NULL``) serves ``<column> = ...``, ``IN`` and
``= ANY`` on SQLite and PostgreSQL alike. On a large database the upgrade rebuilds these
indexes (it reads each table once per index); nothing else changes.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0019_slimindexes'
down_revision = '0018_unitstamp'
branch_labels = None
depends_on = None

REGARDING = ("regarding_account_id", "regarding_contact_id", "regarding_lead_id",
             "regarding_opportunity_id", "regarding_case_id")
PARTY = ("user_id", "contact_id", "account_id", "lead_id", "queue_id")
EMAIL = ("tracking_token", "parent_activity_id", "receiving_mailbox_id")


def _partial_indexes():
    """(table, name, columns) of the indexes that become partial."""
    yield from (("activity", f"ix_activity_{c}_occurred", [c, "occurred_on", "id"])
                for c in REGARDING)
    yield from (("activity_party", f"ix_activity_party_{c}_occurred",
                 [c, "occurred_on", "activity_id"]) for c in PARTY)
    yield from (("email", f"ix_email_{c}", [c]) for c in EMAIL)


def _set_rows(column: str) -> dict:
    where = sa.text(f"{column} IS NOT NULL")
    return {"postgresql_where": where, "sqlite_where": where}


def upgrade() -> None:
    for column in REGARDING:
        op.drop_index(f"ix_activity_{column}", table_name="activity")
    op.drop_index("ix_email_in_reply_to", table_name="email")
    for table, name, columns in _partial_indexes():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, **_set_rows(columns[0]))


def downgrade() -> None:
    for table, name, columns in _partial_indexes():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
    op.create_index("ix_email_in_reply_to", "email", ["in_reply_to"])
    for column in REGARDING:
        op.create_index(f"ix_activity_{column}", "activity", [column])
