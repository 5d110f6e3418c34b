"""CRM record tables: the organization's settings and the records activities are about.

Every record has an owner (a user or a team), an owning business unit (what privilege depth
is measured against), created/modified by/on and an active state. Email-enabled records keep
up to three addresses, mirrored into ``email_address`` for indexed resolution.
"""
from __future__ import annotations

import secrets
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, Numeric, String,
                        Text)
from sqlalchemy import event, inspect
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, relationship

from server.db import db, utcnow

MB = 1024 * 1024


class Organization(db.Model):
    """The one organization of a deployment and its settings."""

    __tablename__ = "organization"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160))
    base_currency: Mapped[str] = mapped_column(String(3), default="USD")
    default_language: Mapped[str] = mapped_column(String(10), default="en")
    default_time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Email address resolution
    resolve_inactive_records: Mapped[bool] = mapped_column(Boolean, default=False)
    unresolve_ambiguous_addresses: Mapped[bool] = mapped_column(Boolean, default=False)
    # Email
    attachment_max_bytes: Mapped[int] = mapped_column(Integer, default=5 * MB)
    use_tracking_token: Mapped[bool] = mapped_column(Boolean, default=True)
    tracking_token_prefix: Mapped[str] = mapped_column(String(20), default="CRM:")
    track_sent_items: Mapped[bool] = mapped_column(Boolean, default=True)
    track_between_users_as_two: Mapped[bool] = mapped_column(Boolean, default=False)
    smart_matching: Mapped[bool] = mapped_column(Boolean, default=False)
    # Approval of mailbox addresses: users' mailboxes, and queues' mailboxes on their own.
    require_email_approval: Mapped[bool] = mapped_column(Boolean, default=True)
    require_queue_email_approval: Mapped[bool] = mapped_column(Boolean, default=True)
    # Mailbox provisioning: what a new mailbox gets (server.sync.admin.provision), and
    # whether every new user and queue with an email address gets one at once.
    default_server_profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_server_profile.id", ondelete="SET NULL"))
    default_incoming_method: Mapped[str] = mapped_column(String(20), default="server_side_sync")
    default_outgoing_method: Mapped[str] = mapped_column(String(20), default="server_side_sync")
    default_acts_method: Mapped[str] = mapped_column(String(20), default="none")
    create_mailboxes_automatically: Mapped[bool] = mapped_column(Boolean, default=False)
    # Email from the CRM may go to addresses that match no record
    allow_unresolved_recipients: Mapped[bool] = mapped_column(Boolean, default=True)
    # Mail servers allowed although loopback or link-local (server.sync.engine.hosts).
    mail_server_allowed_hosts: Mapped[str] = mapped_column(String(2000), default="",
                                                           server_default="")
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Changed by triggers on every write to the settings and to principals' inputs
    # (server.security.stamp); null: nothing is kept across requests.
    security_stamp: Mapped[int | None] = mapped_column(
        BigInteger, default=lambda: secrets.randbits(62))


class Owned:
    """Ownership and audit columns shared by records and activities."""

    @declared_attr
    def owner_user_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("user.id"), index=True)

    @declared_attr
    def owner_team_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("team.id"), index=True)

    @declared_attr
    def owning_business_unit_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey("business_unit.id"), index=True)

    @declared_attr
    def created_by_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    @declared_attr
    def modified_by_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @declared_attr
    def owner_user(cls):
        return relationship("User", foreign_keys=[cls.owner_user_id], lazy="joined")

    @declared_attr
    def owner_team(cls):
        return relationship("Team", foreign_keys=[cls.owner_team_id])

    @property
    def owner(self):
        return self.owner_user or self.owner_team

    @property
    def owner_name(self) -> str:
        owner = self.owner
        return getattr(owner, "full_name", None) or getattr(owner, "name", "")


def _one_owner() -> CheckConstraint:
    return CheckConstraint("(owner_user_id IS NULL) <> (owner_team_id IS NULL)", name="one_owner")


def _customer_check() -> CheckConstraint:
    return CheckConstraint(
        "customer_account_id IS NULL OR customer_contact_id IS NULL", name="one_customer")


class Record(Owned):
    """Columns every record table has besides ownership."""

    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)


class EmailFields:
    email1: Mapped[str | None] = mapped_column(String(320))
    email2: Mapped[str | None] = mapped_column(String(320))
    email3: Mapped[str | None] = mapped_column(String(320))

    @property
    def emails(self) -> list[str]:
        return [e for e in (self.email1, self.email2, self.email3) if e]


class Account(Record, EmailFields, db.Model):
    __tablename__ = "account"
    __table_args__ = (_one_owner(),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), index=True)
    account_number: Mapped[str | None] = mapped_column(String(20), index=True)
    phone: Mapped[str | None] = mapped_column(String(50))
    website: Mapped[str | None] = mapped_column(String(200))
    industry: Mapped[str | None] = mapped_column(String(80))
    city: Mapped[str | None] = mapped_column(String(80))
    country: Mapped[str | None] = mapped_column(String(80))
    annual_revenue: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    parent_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("account.id", ondelete="SET NULL"), index=True)

    parent_account: Mapped[Account | None] = relationship(remote_side=[id])

    @property
    def title(self) -> str:
        return self.name


class PersonName:
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    full_name: Mapped[str] = mapped_column(String(200), index=True)

    @property
    def title(self) -> str:
        return self.full_name


class Contact(Record, PersonName, EmailFields, db.Model):
    __tablename__ = "contact"
    # The item sync's push reads what changed since its last run.
    __table_args__ = (_one_owner(), Index("ix_contact_modified", "modified_on"))
    id: Mapped[int] = mapped_column(primary_key=True)
    job_title: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(50), index=True)
    mobile_phone: Mapped[str | None] = mapped_column(String(50))
    city: Mapped[str | None] = mapped_column(String(80))
    parent_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("account.id", ondelete="SET NULL"), index=True)
    # Address-book fields (synced with CardDAV, Graph, EWS: server/sync/items/).
    home_phone: Mapped[str | None] = mapped_column(String(50))
    street: Mapped[str | None] = mapped_column(String(250))
    state_province: Mapped[str | None] = mapped_column(String(80))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(80))
    birthday: Mapped[date | None] = mapped_column(Date)
    website: Mapped[str | None] = mapped_column(String(200))
    company_name: Mapped[str | None] = mapped_column(String(160))  # when no account matches
    contact_uid: Mapped[str | None] = mapped_column(String(400), index=True)  # vCard UID

    parent_account: Mapped[Account | None] = relationship()


class Lead(Record, PersonName, EmailFields, db.Model):
    __tablename__ = "lead"
    __table_args__ = (_one_owner(),)
    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str | None] = mapped_column(String(200))
    company_name: Mapped[str | None] = mapped_column(String(160))
    job_title: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(50), index=True)
    status: Mapped[str] = mapped_column(String(20), default="new")  # new contacted qualified disqualified
    source: Mapped[str | None] = mapped_column(String(40))


class Opportunity(Record, db.Model):
    __tablename__ = "opportunity"
    __table_args__ = (_one_owner(), _customer_check())
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    customer_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("account.id", ondelete="SET NULL"), index=True)
    customer_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True)
    estimated_value: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    estimated_close_date: Mapped[date | None] = mapped_column(Date)
    stage: Mapped[str] = mapped_column(String(20), default="qualify")  # qualify develop propose close
    status: Mapped[str] = mapped_column(String(10), default="open")  # open won lost
    probability: Mapped[int | None] = mapped_column(Integer)

    customer_account: Mapped[Account | None] = relationship()
    customer_contact: Mapped[Contact | None] = relationship()

    @property
    def customer(self):
        return self.customer_account or self.customer_contact

    @property
    def title(self) -> str:
        return self.name


class Case(Record, db.Model):
    __tablename__ = "support_case"  # "case" is an SQL keyword
    __table_args__ = (_one_owner(), _customer_check())
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), index=True)
    ticket_number: Mapped[str] = mapped_column(String(20), unique=True)
    customer_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("account.id", ondelete="SET NULL"), index=True)
    customer_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="in_progress")  # in_progress on_hold waiting resolved canceled
    priority: Mapped[str] = mapped_column(String(10), default="normal")  # high normal low
    origin: Mapped[str | None] = mapped_column(String(20))  # email phone web
    # When it was last resolved (a reply after it may reopen it or open a case linked to it).
    resolved_on: Mapped[datetime | None]
    # The case this one follows up (a reply to a resolved case, per its queue's rule).
    parent_case_id: Mapped[int | None] = mapped_column(
        ForeignKey("support_case.id", ondelete="SET NULL"), index=True)

    customer_account: Mapped[Account | None] = relationship()
    customer_contact: Mapped[Contact | None] = relationship()

    @property
    def customer(self):
        return self.customer_account or self.customer_contact


class Queue(Record, db.Model):
    __tablename__ = "queue"
    __table_args__ = (_one_owner(),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    # Whose email gets a queue item when the queue is among its recipients of mail synced
    # from any mailbox: everyone, known_senders or nobody (server.sync.engine.queues).
    accepting: Mapped[str] = mapped_column(String(16), default="everyone",
                                           server_default="everyone")

    @property
    def title(self) -> str:
        return self.name

    @property
    def emails(self) -> list[str]:
        return [self.email] if self.email else []


@event.listens_for(Session, "before_flush")
def _touch_modified_on(session, flush_context, instances) -> None:
    """``modified_on`` for every change to an owned record: its ``onupdate`` fires only when
    its own table is updated, and a change to an activity's own table (an appointment's
    location, a task's percent) updates that table alone. The sync's push finds what
    changed by it."""
    for record in session.dirty:
        if isinstance(record, Owned) and session.is_modified(record, include_collections=False) \
                and not inspect(record).attrs.modified_on.history.has_changes():
            record.modified_on = utcnow()
