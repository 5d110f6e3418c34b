"""Activities (email, appointment, task, phone call), their parties, attachments and regarding.

Activities share one table (``activity``, like Dynamics' activity pointer) joined to one table
per type. *Regarding* is a set of nullable foreign keys of which at most one is set (checked
by the database), so it can never dangle: deleting the record clears the link.
"""
from __future__ import annotations

from datetime import datetime

from itertools import chain

from sqlalchemy import (JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, LargeBinary,
                        String, Text, event, inspect, select, update)
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, relationship

from server.crm.models import Owned
from server.db import db, set_rows_index, utcnow

# The record types an activity may be regarding, in the order the UI lists them.
REGARDING_TYPES = ("account", "contact", "lead", "opportunity", "case")
# The record types an activity party may point to.
PARTY_TYPES = ("user", "contact", "account", "lead", "queue")

PARTY_ROLES = ("from", "to", "cc", "bcc", "organizer", "required", "optional", "owner")
TASK_STATUSES = ("not_started", "in_progress", "waiting", "completed", "deferred")
EMAIL_STATUSES = ("draft", "pending_send", "sending", "sent", "received", "failed", "canceled")


def _at_most_one(columns: list[str], name: str) -> CheckConstraint:
    expr = " + ".join(f"(CASE WHEN {c} IS NULL THEN 0 ELSE 1 END)" for c in columns)
    return CheckConstraint(f"{expr} <= 1", name=name)


REGARDING_COLUMNS = {t: f"regarding_{t}_id" for t in REGARDING_TYPES}
PARTY_COLUMNS = {t: f"{t}_id" for t in PARTY_TYPES}


class Regarding:
    """What a row is *regarding*: one nullable foreign key per record type, at most one set
    (tables using this add the ``one_regarding`` check). Deleting the record clears it.
    Each key has an index of its own, but where the table indexes it with more columns
    (``regarding_indexed`` False: ``activity``'s timeline indexes begin with it)."""

    regarding_indexed = True

    @declared_attr
    def regarding_account_id(cls) -> Mapped[int | None]:
        return cls._regarding_key("account")

    @declared_attr
    def regarding_contact_id(cls) -> Mapped[int | None]:
        return cls._regarding_key("contact")

    @declared_attr
    def regarding_lead_id(cls) -> Mapped[int | None]:
        return cls._regarding_key("lead")

    @declared_attr
    def regarding_opportunity_id(cls) -> Mapped[int | None]:
        return cls._regarding_key("opportunity")

    @declared_attr
    def regarding_case_id(cls) -> Mapped[int | None]:
        return cls._regarding_key("support_case")

    @classmethod
    def _regarding_key(cls, table: str):
        return mapped_column(ForeignKey(f"{table}.id", ondelete="SET NULL"),
                             index=cls.regarding_indexed)

    @property
    def regarding_ref(self) -> tuple[str, int] | None:
        """``(record type, id)`` of what this row is regarding, or None."""
        for kind, column in REGARDING_COLUMNS.items():
            value = getattr(self, column)
            if value is not None:
                return kind, value
        return None

    def set_regarding(self, kind: str | None, record_id: int | None) -> None:
        """Point regarding at one record (or nowhere); callers check the record exists and
        that the user may append to it."""
        for column, value in self.regarding_values(kind, record_id).items():
            setattr(self, column, value)

    @staticmethod
    def regarding_values(kind: str | None, record_id: int | None) -> dict[str, int | None]:
        """The regarding columns' values for one record (or nowhere), as ``set_regarding``
        sets them (a new row can take them as constructor arguments)."""
        if kind is not None and kind not in REGARDING_COLUMNS:
            raise ValueError(f"an activity cannot be regarding a {kind}")
        return {column: record_id if k == kind else None for k, column in REGARDING_COLUMNS.items()}


def one_regarding_check() -> CheckConstraint:
    return _at_most_one(list(REGARDING_COLUMNS.values()), "one_regarding")


class Activity(Owned, Regarding, db.Model):
    __tablename__ = "activity"
    __table_args__ = (
        CheckConstraint("(owner_user_id IS NULL) <> (owner_team_id IS NULL)", name="one_owner"),
        one_regarding_check(),
        Index("ix_activity_timeline", "created_on", "id"),
        # The item sync's push reads what changed since its last run, by kind.
        Index("ix_activity_type_modified", "activity_type", "modified_on"),
        # A record's timeline walks these newest first (server/crm/services/timeline.py);
        # they serve the foreign keys' lookups too (``regarding_indexed``).
        *(set_rows_index(f"ix_activity_{column}_occurred", column, "occurred_on", "id")
          for column in REGARDING_COLUMNS.values()),
    )
    regarding_indexed = False
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_type: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(400), default="")
    description: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default="open")  # open completed canceled
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    scheduled_start: Mapped[datetime | None]
    scheduled_end: Mapped[datetime | None]
    actual_end: Mapped[datetime | None]
    # When the activity happened, for the timeline: sent/received time, meeting start...
    occurred_on: Mapped[datetime] = mapped_column(index=True)

    parties: Mapped[list[ActivityParty]] = relationship(
        back_populates="activity", cascade="all, delete-orphan", order_by="ActivityParty.id")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="activity", cascade="all, delete-orphan", order_by="Attachment.id")

    __mapper_args__ = {"polymorphic_on": "activity_type", "polymorphic_identity": "activity"}


class Email(Activity):
    __tablename__ = "email"
    __table_args__ = (
        Index("ix_email_conversation", "conversation_id"),
        # Columns most emails leave empty: a token only where the org sends them, a parent
        # only within a tracked thread, a receiving mailbox only for mail a sync brought in.
        *(set_rows_index(f"ix_email_{column}", column)
          for column in ("tracking_token", "parent_activity_id", "receiving_mailbox_id")),
    )
    id: Mapped[int] = mapped_column(ForeignKey("activity.id", ondelete="CASCADE"), primary_key=True)
    direction: Mapped[str] = mapped_column(String(10), default="incoming")  # incoming outgoing
    status: Mapped[str] = mapped_column(String(15), default="received")
    html_body: Mapped[str | None] = mapped_column(Text)  # sanitized before it is stored
    text_body: Mapped[str | None] = mapped_column(Text)
    # Normalized Message-ID (or "sha256:<hash>" when there is none): the email's identity.
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    # Unique per tracked copy: the identity, or identity + owner when the org tracks email
    # between two users as two activities. Makes storing an email idempotent.
    dedupe_key: Mapped[str | None] = mapped_column(String(1100), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    conversation_index: Mapped[str | None] = mapped_column(String(400))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    tracking_token: Mapped[str | None] = mapped_column(String(40))
    sent_on: Mapped[datetime | None]
    received_on: Mapped[datetime | None]
    correlation_method: Mapped[str | None] = mapped_column(String(20))
    parent_activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activity.id", ondelete="SET NULL"))
    receiving_mailbox_id: Mapped[int | None] = mapped_column(Integer)
    sender_address: Mapped[str | None] = mapped_column(String(320))
    to_recipients: Mapped[str | None] = mapped_column(Text)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_on: Mapped[datetime | None] = mapped_column(index=True)  # outgoing retries
    error: Mapped[str | None] = mapped_column(Text)
    # Extra headers an outgoing email is sent with, [[name, value], ...]; only those
    # ``server.sync.mail.outgoing_headers`` allows (an acknowledgement's Auto-Submitted).
    internet_headers: Mapped[list | None] = mapped_column(JSON)

    __mapper_args__ = {"polymorphic_identity": "email", "inherit_condition": id == Activity.id}


class Appointment(Activity):
    __tablename__ = "appointment"
    id: Mapped[int] = mapped_column(ForeignKey("activity.id", ondelete="CASCADE"), primary_key=True)
    location: Mapped[str | None] = mapped_column(String(200))
    is_all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    # The meeting's iCalendar UID: one appointment per meeting, whoever's copy came first.
    global_object_id: Mapped[str | None] = mapped_column(String(400), index=True, unique=True)
    online_meeting_url: Mapped[str | None] = mapped_column(String(1000))
    # What calendars keep beside (synced with CalDAV, Graph, EWS: server/sync/items/).
    time_zone: Mapped[str | None] = mapped_column(String(64))  # IANA name of start/end
    recurrence_rule: Mapped[str | None] = mapped_column(String(500))  # RRULE value
    # {"exdates": [start, ...], "overrides": [{"recurrence_id", "start", "end", ...}]}
    recurrence_exceptions: Mapped[dict | None] = mapped_column(JSON)
    reminder_minutes: Mapped[int | None] = mapped_column(Integer)  # before the start
    show_as: Mapped[str] = mapped_column(String(10), default="busy")  # free tentative busy oof
    sensitivity: Mapped[str] = mapped_column(String(12), default="normal")  # private confidential
    categories: Mapped[str | None] = mapped_column(String(1000))  # comma separated

    __mapper_args__ = {"polymorphic_identity": "appointment"}


class Task(Activity):
    __tablename__ = "task"
    id: Mapped[int] = mapped_column(ForeignKey("activity.id", ondelete="CASCADE"), primary_key=True)
    percent_complete: Mapped[int] = mapped_column(Integer, default=0)
    category: Mapped[str | None] = mapped_column(String(80))
    # Due is ``scheduled_end`` and start ``scheduled_start``, as in Dynamics.
    task_status: Mapped[str] = mapped_column(String(12), default="not_started")  # TASK_STATUSES
    reminder_minutes: Mapped[int | None] = mapped_column(Integer)  # before due
    sensitivity: Mapped[str] = mapped_column(String(12), default="normal")
    categories: Mapped[str | None] = mapped_column(String(1000))
    task_uid: Mapped[str | None] = mapped_column(String(400), index=True)  # iCal UID

    __mapper_args__ = {"polymorphic_identity": "task"}


class PhoneCall(Activity):
    __tablename__ = "phone_call"
    id: Mapped[int] = mapped_column(ForeignKey("activity.id", ondelete="CASCADE"), primary_key=True)
    phone_number: Mapped[str | None] = mapped_column(String(50))
    direction: Mapped[str] = mapped_column(String(10), default="outgoing")

    __mapper_args__ = {"polymorphic_identity": "phone_call"}


ACTIVITY_MODELS = {"email": Email, "appointment": Appointment, "task": Task,
                   "phone_call": PhoneCall}


class ActivityParty(db.Model):
    """A person or record taking part in an activity in a role; the bare address is kept
    when it resolves to no record."""

    __tablename__ = "activity_party"
    __table_args__ = (
        _at_most_one(list(PARTY_COLUMNS.values()), "one_party"),
        # (record, when, activity): a record's timeline walks its party entries newest first
        # in the index alone, as it walks ``activity``'s regarding indexes
        # (server/crm/services/timeline.py).
        *(set_rows_index(f"ix_activity_party_{column}_occurred", column, "occurred_on",
                         "activity_id") for column in PARTY_COLUMNS.values()),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(10))
    address: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id", ondelete="SET NULL"))
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="SET NULL"))
    # A meeting attendee's answer: needs-action accepted declined tentative delegated.
    response: Mapped[str | None] = mapped_column(String(20))
    # The activity's ``occurred_on``, copied so that a record's timeline reads its party
    # entries in timeline order from an index instead of looking up every activity; kept
    # equal to it on every write (``_party_takes_its_activity_time``,
    # ``_activity_time_moves_its_parties``; the tracking's Core insert sets it itself).
    occurred_on: Mapped[datetime]

    activity: Mapped[Activity] = relationship(back_populates="parties")

    @property
    def party_ref(self) -> tuple[str, int] | None:
        for kind, column in PARTY_COLUMNS.items():
            value = getattr(self, column)
            if value is not None:
                return kind, value
        return None

    def set_party(self, kind: str | None, record_id: int | None) -> None:
        if kind is not None and kind not in PARTY_COLUMNS:
            raise ValueError(f"a {kind} cannot be an activity party")
        for k, column in PARTY_COLUMNS.items():
            setattr(self, column, record_id if k == kind else None)


@event.listens_for(ActivityParty, "before_insert")
def _party_takes_its_activity_time(_mapper, connection, party: ActivityParty) -> None:
    """A new party row carries its activity's ``occurred_on``: from the activity object it
    was added to, else (a party made with an ``activity_id`` alone) read from the row."""
    if party.occurred_on is not None:
        return
    activity = party.__dict__.get("activity")
    if activity is not None:
        party.occurred_on = activity.occurred_on
    else:
        party.occurred_on = connection.scalar(
            select(Activity.occurred_on).where(Activity.id == party.activity_id))


@event.listens_for(Activity, "after_update", propagate=True)
def _activity_time_moves_its_parties(_mapper, connection, activity: Activity) -> None:
    """An activity whose ``occurred_on`` changed moves its party rows' copy with it."""
    if inspect(activity).attrs.occurred_on.history.has_changes():
        connection.execute(update(ActivityParty).where(ActivityParty.activity_id == activity.id)
                           .values(occurred_on=activity.occurred_on))


@event.listens_for(Session, "before_flush")
def _parties_touch_their_activity(session: Session, _context, _instances) -> None:
    """An attendee (any party) added, removed or changed is a change of its activity: its
    ``modified_on`` moves, which is what the item sync's push looks at (an attendee added
    in the CRM reaches the calendars)."""
    touched = {id(a): a for a in session.dirty if isinstance(a, Activity)
               and inspect(a).attrs.parties.history.has_changes()}
    with session.no_autoflush:
        for party in chain(session.new, session.dirty, session.deleted):
            if not isinstance(party, ActivityParty) or (
                    party in session.dirty and not session.is_modified(party)):
                continue
            activity = party.activity or (session.get(Activity, party.activity_id)
                                          if party.activity_id else None)
            if activity is not None:
                touched[id(activity)] = activity
    for activity in touched.values():
        if activity not in session.new and activity not in session.deleted:
            activity.modified_on = utcnow()


class Attachment(db.Model):
    """A file attached to an activity. Content is in ``content`` (database storage) or at
    ``storage_path`` under the instance folder (disk storage); over the org's size limit only
    the metadata is kept (``content_omitted``)."""

    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    storage_path: Mapped[str | None] = mapped_column(String(300))
    content_id: Mapped[str | None] = mapped_column(String(300))
    is_inline: Mapped[bool] = mapped_column(Boolean, default=False)
    content_omitted: Mapped[bool] = mapped_column(Boolean, default=False)

    activity: Mapped[Activity] = relationship(back_populates="attachments")
