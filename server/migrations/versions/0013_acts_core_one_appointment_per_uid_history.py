"""one appointment per meeting (a unique iCalendar UID); a record's history

Revision ID: 0013_acts_core
Revises: 0012_service_mail
Create Date: 2026-12-06 02:30:00

* ``appointment.global_object_id`` is unique: two workers syncing the organizer's and an
  attendee's calendars at once cannot make two appointments of one meeting. Appointments
  already sharing a UID are merged first, into the oldest (lowest id): the others' sync
  links, track requests, decisions, queue items, attachments and attendees it lacks move to
  it, and their regarding where it has none; then they are deleted. The upgrade cannot fail
  on old duplicates.
* ``track_request.starts_on``: a meeting's start as the pane saw it, so the item sync
  knows the meeting a pending request (compose mode) is about once it is sent.
* ``record_history``: changes the CRM did not keep (a field both sides of a sync changed:
  the value the later change replaced), per activity or contact.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0013_acts_core'
down_revision = '0012_service_mail'
branch_labels = None
depends_on = None

REGARDING = ("regarding_account_id", "regarding_contact_id", "regarding_lead_id",
             "regarding_opportunity_id", "regarding_case_id")
# Rows pointing at an activity that simply follow the kept appointment.
FOLLOW = (("item_link", "activity_id"), ("track_request", "activity_id"),
          ("message_decision", "activity_id"), ("attachment", "activity_id"),
          ("email", "parent_activity_id"))


def _merge_duplicates(conn) -> None:
    groups = conn.execute(sa.text(
        "SELECT global_object_id, MIN(id) FROM appointment WHERE global_object_id IS NOT NULL "
        "GROUP BY global_object_id HAVING COUNT(*) > 1")).all()
    for uid, keep in groups:
        others = conn.execute(sa.text(
            "SELECT id FROM appointment WHERE global_object_id = :uid AND id <> :keep "
            "ORDER BY id"), {"uid": uid, "keep": keep}).scalars().all()
        for other in others:
            _merge(conn, keep, other)


def _merge(conn, keep: int, other: int) -> None:
    ids = {"keep": keep, "other": other}
    for table, column in FOLLOW:
        conn.execute(sa.text(f"UPDATE {table} SET {column} = :keep WHERE {column} = :other"),
                     ids)
    # Queue items: one per queue and activity.
    conn.execute(sa.text(
        "UPDATE queue_item SET activity_id = :keep WHERE activity_id = :other AND queue_id NOT "
        "IN (SELECT queue_id FROM queue_item WHERE activity_id = :keep)"), ids)
    # Attendees the kept appointment lacks (same role and address: the same person).
    conn.execute(sa.text(
        "UPDATE activity_party SET activity_id = :keep WHERE activity_id = :other AND NOT "
        "EXISTS (SELECT 1 FROM activity_party k WHERE k.activity_id = :keep AND "
        "k.role = activity_party.role AND COALESCE(LOWER(k.address), '') = "
        "COALESCE(LOWER(activity_party.address), ''))"), ids)
    columns = ", ".join(REGARDING)
    kept, theirs = (conn.execute(sa.text(f"SELECT {columns} FROM activity WHERE id = :id"),
                                 {"id": i}).one() for i in (keep, other))
    if not any(kept) and any(theirs):
        conn.execute(sa.text(f"UPDATE activity SET {', '.join(f'{c} = :{c}' for c in REGARDING)} "
                             "WHERE id = :keep"), {"keep": keep, **dict(zip(REGARDING, theirs))})
    conn.execute(sa.text("DELETE FROM activity_party WHERE activity_id = :other"), ids)
    conn.execute(sa.text("DELETE FROM queue_item WHERE activity_id = :other"), ids)
    conn.execute(sa.text("DELETE FROM appointment WHERE id = :other"), ids)
    conn.execute(sa.text("DELETE FROM activity WHERE id = :other"), ids)


def upgrade() -> None:
    _merge_duplicates(op.get_bind())
    with op.batch_alter_table("appointment") as batch:
        batch.drop_index("ix_appointment_global_object_id")
        batch.create_index("ix_appointment_global_object_id", ["global_object_id"], unique=True)
    op.create_table(
        "record_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("activity_id", sa.Integer(), sa.ForeignKey(
            "activity.id", ondelete="CASCADE", name="fk_record_history_activity_id_activity"),
            nullable=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey(
            "contact.id", ondelete="CASCADE", name="fk_record_history_contact_id_contact"),
            nullable=True),
        sa.Column("field", sa.String(60), nullable=False),
        sa.Column("lost_value", sa.Text(), nullable=True),
        sa.Column("kept_value", sa.Text(), nullable=True),
        sa.Column("lost_side", sa.String(10), nullable=False),
        sa.Column("source", sa.String(400), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey(
            "user.id", ondelete="SET NULL", name="fk_record_history_user_id_user"),
            nullable=True),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("(activity_id IS NULL) <> (contact_id IS NULL)",
                           name="ck_record_history_one_record"),
    )
    op.create_index("ix_record_history_activity_id", "record_history", ["activity_id"])
    op.create_index("ix_record_history_contact_id", "record_history", ["contact_id"])
    with op.batch_alter_table("track_request") as batch:
        batch.add_column(sa.Column("starts_on", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("track_request") as batch:
        batch.drop_column("starts_on")
    op.drop_table("record_history")
    with op.batch_alter_table("appointment") as batch:
        batch.drop_index("ix_appointment_global_object_id")
        batch.create_index("ix_appointment_global_object_id", ["global_object_id"])
