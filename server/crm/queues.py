"""Queue tables: the items waiting in a queue to be worked, a queue's email-to-case rules
(Dynamics' automatic record creation and update rules) and the acknowledgements those rules
sent (counted per sender and day, so a sender is never flooded and a loop never starts).

The rule chain itself is pure (``server.sync.mail.case_rules``); the engine applies it
(``server.sync.engine.cases``); people edit rules through ``server.crm.services.case_rules``
and work queues through ``server.crm.services.queue_work``.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import db, set_rows_index, utcnow

# How a rule routes the case it creates.
ROUTINGS = ("queue", "user", "round_robin", "least_busy")
# What a reply to a resolved case does (within the rule's window; after it: a new case).
ON_RESOLVED = ("reopen", "new_case")
PRIORITIES = ("high", "normal", "low")


class QueueItem(db.Model):
    """An activity waiting in a queue to be worked (Dynamics' queue item): made when a
    queue's mailbox tracks an email, or when synced mail names the queue as a recipient;
    ``worked_by`` is who picked it up, and since when."""

    __tablename__ = "queue_item"
    __table_args__ = (UniqueConstraint("queue_id", "activity_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"), index=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activity.id", ondelete="CASCADE"),
                                             index=True)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    worked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    worked_on: Mapped[datetime | None]

    queue = relationship("Queue")
    activity = relationship("Activity")
    worked_by = relationship("User")


class CaseRule(db.Model):
    """One email-to-case rule of a queue: its conditions (all must hold) and what it does.
    A queue's rules are tried in ``position`` order; the first that matches decides."""

    __tablename__ = "case_rule"
    __table_args__ = (Index("ix_case_rule_queue_position", "queue_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # [{"kind": "subject_contains", "value": "invoice"}, ...] (case_rules.CONDITIONS)
    conditions: Mapped[list] = mapped_column(JSON, default=list)
    create_contact: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    routing: Mapped[str] = mapped_column(String(20), default="queue")
    route_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    route_team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="SET NULL"))
    # Round-robin's place: the member who got the last case.
    last_routed_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL"))
    on_resolved: Mapped[str] = mapped_column(String(10), default="reopen")
    resolved_window_days: Mapped[int] = mapped_column(Integer, default=7)
    acknowledge: Mapped[bool] = mapped_column(Boolean, default=False)
    ack_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_template.id", ondelete="SET NULL"))
    ack_per_sender_per_day: Mapped[int] = mapped_column(Integer, default=3)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    queue = relationship("Queue")
    route_user = relationship("User", foreign_keys=[route_user_id])
    route_team = relationship("Team", foreign_keys=[route_team_id])


class CaseAcknowledgement(db.Model):
    """An acknowledgement a queue's rule sent to a sender about a case."""

    __tablename__ = "case_acknowledgement"
    __table_args__ = (Index("ix_case_acknowledgement_address", "address", "created_on"),
                      Index("ix_case_acknowledgement_queue_id", "queue_id"),
                      set_rows_index("ix_case_acknowledgement_case_id", "case_id"),
                      set_rows_index("ix_case_acknowledgement_email_id", "email_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("support_case.id",
                                                           ondelete="SET NULL"))
    email_id: Mapped[int | None] = mapped_column(ForeignKey("activity.id", ondelete="SET NULL"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)

    email = relationship("Email")
