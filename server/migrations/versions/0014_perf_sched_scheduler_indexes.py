"""indexes for the scheduler's claim: mailboxes asked for, live leases

Revision ID: 0014_perf_sched
Revises: 0013_acts_core
Create Date: 2026-12-06 02:50:00

The claim read the whole mailbox table twice (the due query's ``sync_requested`` branch
and the count of live leases per profile): 42-64 ms per claim at 100,000 mailboxes. Two
partial indexes hold only the rows those read: ``ix_mailbox_requested`` (mailboxes with a
sync asked for) and ``ix_mailbox_leased`` (mailboxes under a lease, by profile). With them
and ``ix_mailbox_due`` the due query is a BitmapOr of three index scans (0.06 ms with
nothing due at 100,000, bench/README.md). No data changes.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0014_perf_sched'
down_revision = '0013_acts_core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_mailbox_requested", "mailbox", ["id"],
                    postgresql_where=sa.text("sync_requested"),
                    sqlite_where=sa.text("sync_requested"))
    op.create_index("ix_mailbox_leased", "mailbox", ["server_profile_id"],
                    postgresql_where=sa.text("lease_owner IS NOT NULL"),
                    sqlite_where=sa.text("lease_owner IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_mailbox_leased", table_name="mailbox")
    op.drop_index("ix_mailbox_requested", table_name="mailbox")
