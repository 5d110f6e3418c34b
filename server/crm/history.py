"""A record's history: changes the CRM did not keep, told on the record's page.

Today one kind of entry: a field both the CRM and a mail server changed since they were
last in step (server-side sync of appointments, contacts and tasks); the later change
won, and the value it replaced is kept here with which side held it, so nothing a person
typed is lost without a trace. A row belongs to an activity (an appointment, a task) or to
a contact, and goes with it."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import db, utcnow

HISTORY_SIDES = ("crm", "server")  # where the lost value was held


class RecordHistory(db.Model):
    __tablename__ = "record_history"
    __table_args__ = (
        CheckConstraint("(activity_id IS NULL) <> (contact_id IS NULL)", name="one_record"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(60))
    lost_value: Mapped[str | None] = mapped_column(Text)
    kept_value: Mapped[str | None] = mapped_column(Text)
    lost_side: Mapped[str] = mapped_column(String(10))  # HISTORY_SIDES
    # Where it happened, in words ("server-side sync of ann@contoso.test").
    source: Mapped[str] = mapped_column(String(400))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)

    activity = relationship("Activity")
    contact = relationship("Contact")
