"""Microsoft Graph change-notification subscriptions: one per folder of a mailbox that the
engine reads (Inbox, Sent Items when tracked, tracked folders) and per collection its item
sync reads (``folder_key``: a contact folder's or To Do list's id, ``events`` for all the
calendars); what one watches is told by its ``resource`` (``graph_push.watched_kind``).
The ``clientState`` Graph echoes in every notification is kept only as a SHA-256 hash."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import db, utcnow

SUBSCRIPTION_STATUSES = ("active", "renew", "removed")


class GraphSubscription(db.Model):
    __tablename__ = "graph_subscription"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    folder_key: Mapped[str] = mapped_column(String(500))
    subscription_id: Mapped[str] = mapped_column(String(200), unique=True)
    client_state_hash: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(1000))
    expires_on: Mapped[datetime]
    # active; renew (Graph asked for reauthorization); removed (Graph ended it)
    status: Mapped[str] = mapped_column(String(10), default="active")
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    renewed_on: Mapped[datetime | None]
    last_notification_on: Mapped[datetime | None]
