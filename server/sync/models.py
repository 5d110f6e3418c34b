"""Sync engine tables: email server profiles, mailboxes (with their tracking options and
scheduling lease), folder tracking rules, per-folder cursors, the decision log, quarantine,
alerts, the org's tracking blocklist and sync run statistics."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, LargeBinary,
                        String, Text, UniqueConstraint, and_, text)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship

from server.crm.activities import Regarding, one_regarding_check
from server.db import db, set_rows_index, utcnow
from server.security.secrets import EncryptedText
from server.sync.items.fields import FIELD_DIRECTIONS  # noqa: F401 (the table's values)

# Protocols a profile reads mail with / sends mail with; each maps to a connector module.
INCOMING_PROTOCOLS = ("imap", "pop3", "maildir", "graph", "ews")
OUTGOING_PROTOCOLS = ("smtp", "maildir", "graph", "ews")
SECURITY = ("tls", "starttls", "none")  # none only with a visible warning
AUTH_METHODS = ("password", "oauth2")

INCOMING_METHODS = ("none", "addin", "server_side_sync", "forward_mailbox")
OUTGOING_METHODS = ("none", "addin", "server_side_sync")
ACTS_METHODS = ("none", "server_side_sync")  # appointments, contacts and tasks
# Protocols a profile syncs appointments, contacts and tasks with (connectors.item_store);
# Graph and EWS profiles do it with the mailbox's own profile.
ACTS_PROTOCOLS = ("caldav",)
FILTER_OWNERS = ("me", "my_teams", "any")  # whose records a synchronization filter takes

TRACKING_OPTIONS = ("all", "crm_responses", "from_crm_records", "from_email_enabled", "none")
STATUSES = ("not_run", "success", "failure")


class EmailServerProfile(db.Model):
    __tablename__ = "email_server_profile"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    incoming_protocol: Mapped[str] = mapped_column(String(10))
    outgoing_protocol: Mapped[str | None] = mapped_column(String(10))
    incoming_host: Mapped[str | None] = mapped_column(String(255))
    incoming_port: Mapped[int | None] = mapped_column(Integer)
    incoming_security: Mapped[str] = mapped_column(String(10), default="tls")
    outgoing_host: Mapped[str | None] = mapped_column(String(255))
    outgoing_port: Mapped[int | None] = mapped_column(Integer)
    outgoing_security: Mapped[str] = mapped_column(String(10), default="starttls")
    auth_method: Mapped[str] = mapped_column(String(10), default="password")
    # Credentials: per mailbox (False) or one service account for all mailboxes (True).
    use_service_account: Mapped[bool] = mapped_column(Boolean, default=False)
    service_username: Mapped[str | None] = mapped_column(String(320))
    service_password: Mapped[str | None] = mapped_column(EncryptedText)
    # The service account's refusals by direction ({"incoming": {"on": ..., "message": ...}}):
    # its mailboxes wait until the sign-in is changed or tried again (engine.service_accounts).
    service_refusals: Mapped[dict | None] = mapped_column(JSON)
    # OAuth 2 (XOAUTH2 for Microsoft 365 IMAP/SMTP; Graph app-only): tenant + client.
    oauth_tenant: Mapped[str | None] = mapped_column(String(200))
    oauth_client_id: Mapped[str | None] = mapped_column(String(200))
    oauth_client_secret: Mapped[str | None] = mapped_column(EncryptedText)
    maildir_root: Mapped[str | None] = mapped_column(String(500))  # maildir: users' trees under it
    settings: Mapped[dict] = mapped_column(JSON, default=dict)  # protocol-specific extras
    process_emails_after: Mapped[datetime | None]
    max_connections: Mapped[int] = mapped_column(Integer, default=10)
    attachment_max_bytes: Mapped[int | None] = mapped_column(Integer)  # None: the org's limit
    owning_business_unit_id: Mapped[int] = mapped_column(ForeignKey("business_unit.id"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    OWNER_COLUMNS = (None, None, "owning_business_unit_id")


class Mailbox(db.Model):
    """A user's or queue's mailbox: how its mail comes in and goes out, its tracking options,
    its test results per direction and its place in the schedule."""

    __tablename__ = "mailbox"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (queue_id IS NULL) OR is_forward_mailbox",
                        name="one_owner"),
        Index("ix_mailbox_due", "enabled", "next_sync_on"),
        # The scheduler's claim reads the mailboxes asked for and the live leases from
        # these, never the whole table (``workers.scheduler.due_query``).
        Index("ix_mailbox_requested", "id", postgresql_where=text("sync_requested"),
              sqlite_where=text("sync_requested")),
        Index("ix_mailbox_leased", "server_profile_id",
              postgresql_where=text("lease_owner IS NOT NULL"),
              sqlite_where=text("lease_owner IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email_address: Mapped[str] = mapped_column(String(320), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"), index=True)
    is_forward_mailbox: Mapped[bool] = mapped_column(Boolean, default=False)
    server_profile_id: Mapped[int | None] = mapped_column(ForeignKey("email_server_profile.id"))
    # Where appointments, contacts and tasks sync: a CalDAV/CardDAV profile beside any mail
    # profile; None: the mail profile itself (Graph, EWS).
    acts_profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_server_profile.id", ondelete="SET NULL"))
    username: Mapped[str | None] = mapped_column(String(320))
    password: Mapped[str | None] = mapped_column(EncryptedText)
    oauth_refresh_token: Mapped[str | None] = mapped_column(EncryptedText)
    incoming_method: Mapped[str] = mapped_column(String(20), default="server_side_sync")
    outgoing_method: Mapped[str] = mapped_column(String(20), default="server_side_sync")
    acts_method: Mapped[str] = mapped_column(String(20), default="none")
    # Tracking options (Dynamics' personal options for users; the queue's for queues).
    tracking_option: Mapped[str] = mapped_column(String(20), default="crm_responses")
    auto_create_contacts: Mapped[bool] = mapped_column(Boolean, default=False)
    # The Sent folder's full name on the server; None: found (engine.folders.find_sent).
    sent_folder: Mapped[str | None] = mapped_column(String(500))
    # Only email received after this is processed (the profile's date applies when unset).
    process_emails_after: Mapped[datetime | None]
    # A forward mailbox: remove each message from the server once it has been processed.
    delete_after_processing: Mapped[bool] = mapped_column(Boolean, default=False)
    # The forwarding rule the CRM put on the owner's mail server (server.sync.admin.rules):
    # "deployed", "removed" or "failed", with what the server said.
    forward_rule_status: Mapped[str | None] = mapped_column(String(10))
    forward_rule_message: Mapped[str | None] = mapped_column(Text)
    forward_rule_on: Mapped[datetime | None]
    # Email address approval
    email_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    approved_on: Mapped[datetime | None]
    # Test & Enable results, one per direction
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Test & Enable turns off a direction whose test failed while the other passed: the
    # mailbox stays enabled for the one that works.
    incoming_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    outgoing_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Appointments, contacts and tasks turned off on their own: their server refused the
    # sign-in (``engine.outcome.acts_failed``) or their test failed, until Test & Enable.
    acts_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    incoming_status: Mapped[str] = mapped_column(String(10), default="not_run")
    outgoing_status: Mapped[str] = mapped_column(String(10), default="not_run")
    acts_status: Mapped[str] = mapped_column(String(10), default="not_run")
    acts_message: Mapped[str | None] = mapped_column(Text)  # Test & Enable / last run's word
    incoming_message: Mapped[str | None] = mapped_column(Text)
    outgoing_message: Mapped[str | None] = mapped_column(Text)
    tested_on: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Scheduling: due time, lease held by a worker, failures, dynamic interval
    next_sync_on: Mapped[datetime | None]
    sync_interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_on: Mapped[datetime | None]
    last_sync_on: Mapped[datetime | None]
    last_success_on: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    backlog: Mapped[int] = mapped_column(Integer, default=0)
    sync_requested: Mapped[bool] = mapped_column(Boolean, default=False)  # "sync now"
    owning_business_unit_id: Mapped[int] = mapped_column(ForeignKey("business_unit.id"), index=True)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)

    server_profile: Mapped[EmailServerProfile | None] = relationship(
        foreign_keys=[server_profile_id])
    acts_profile: Mapped[EmailServerProfile | None] = relationship(foreign_keys=[acts_profile_id])

    @property
    def items_server_profile(self) -> EmailServerProfile | None:
        """The profile its appointments, contacts and tasks sync with: its CalDAV/CardDAV
        profile where it has one, else its mail profile (Graph, EWS)."""
        return self.acts_profile or self.server_profile

    @hybrid_property
    def syncs_items(self) -> bool:
        """Its appointments, contacts and tasks go through server-side synchronization (and
        were not turned off); a condition in a query too."""
        return self.acts_method == "server_side_sync" and self.acts_enabled

    @syncs_items.inplace.expression
    @classmethod
    def _syncs_items(cls):
        return and_(cls.acts_method == "server_side_sync", cls.acts_enabled.is_(True))

    user = relationship("User", foreign_keys=[user_id])
    queue = relationship("Queue")
    # Read with the mailbox when a sync run loads it (``engine.run.load_mailbox``), None
    # when it was loaded otherwise: its open alerts and its folder rules, counted, so an
    # idle run does not look for either when there are none.
    open_alert_count: Mapped[int | None] = query_expression()
    folder_rule_count: Mapped[int | None] = query_expression()

    # For privilege depth: (owner user column, owner team column, business unit column).
    OWNER_COLUMNS = ("user_id", None, "owning_business_unit_id")

    def approval_required(self, org) -> bool:
        """Whether the organization asks for this mailbox's address to be approved: users'
        and queues' mailboxes have a switch each."""
        if org is None:
            return False
        return bool(org.require_queue_email_approval if self.queue_id is not None
                    else org.require_email_approval)

    def approved_for(self, org) -> bool:
        return self.email_approved or not self.approval_required(org)


class FolderRule(Regarding, db.Model):
    """Folder tracking: mail in this folder (under the Inbox) is tracked, regarding the
    folder's record when one is set. Keyed by the folder's stable identity, so a rename
    keeps the rule; moving the folder out of the Inbox disables it."""

    __tablename__ = "folder_rule"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder_key"), one_regarding_check())
    MAX_PER_USER = 25
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    folder_key: Mapped[str] = mapped_column(String(500))
    folder_name: Mapped[str] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)

    mailbox: Mapped[Mailbox] = relationship()


class FolderState(db.Model):
    """The opaque cursor of one folder of one mailbox; advanced only in the transaction that
    stores what it covers."""

    __tablename__ = "folder_state"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"))
    folder_key: Mapped[str] = mapped_column(String(500))
    folder_name: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20), default="other")  # inbox sent tracked other
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MessageDecision(db.Model):
    """What the engine decided for one message in one mailbox, and why: the answer to
    "why was this email (not) tracked?".

    ``latency_ms`` (the dashboard's latency chart) runs from when the message became visible
    to the sync to when it was tracked. Visible means the later of its arrival (IMAP
    INTERNALDATE, which a MOVE into a tracked folder keeps from the original delivery) and
    the engine's previous visit of its folder: a message filed into a tracked folder days
    after it arrived counts from the last time the folder was read without it, not from
    days ago. That is an upper bound, exact to within the interval between visits (seconds
    with push, minutes when polled). A folder's first visit (an initial sync) records no
    latency: it measures a backlog."""

    __tablename__ = "message_decision"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "identity"),
        Index("ix_message_decision_recent", "mailbox_id", "processed_on"),
        set_rows_index("ix_message_decision_activity_id", "activity_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"))
    folder_name: Mapped[str | None] = mapped_column(String(500))
    identity: Mapped[str] = mapped_column(String(1000))
    subject: Mapped[str | None] = mapped_column(String(400))
    from_address: Mapped[str | None] = mapped_column(String(320))  # searched with LIKE '%q%'
    tracked: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    rule_hits: Mapped[list] = mapped_column(JSON, default=list)
    correlation_method: Mapped[str | None] = mapped_column(String(20))
    activity_id: Mapped[int | None] = mapped_column(ForeignKey("activity.id", ondelete="SET NULL"))
    received_on: Mapped[datetime | None]
    processed_on: Mapped[datetime] = mapped_column(default=utcnow)
    latency_ms: Mapped[int | None] = mapped_column(Integer)  # visible to the sync -> tracked


class QuarantinedMessage(db.Model):
    """A message the engine could not process: kept whole with the error, retryable."""

    __tablename__ = "quarantined_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    folder_name: Mapped[str | None] = mapped_column(String(500))
    source_ref: Mapped[str | None] = mapped_column(String(500))
    raw: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    retried_on: Mapped[datetime | None]
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)


class Alert(db.Model):
    """Shown to admins and the mailbox owner (and optionally emailed)."""

    __tablename__ = "sync_alert"
    __table_args__ = (Index("ix_sync_alert_open", "acknowledged_on", "created_on"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    severity: Mapped[str] = mapped_column(String(12))  # error warning information
    code: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_on: Mapped[datetime | None]
    emailed_on: Mapped[datetime | None]


class TrackingBlock(db.Model):
    """An address (``someone@example.com``) or a domain (``@example.com``) never tracked."""

    __tablename__ = "tracking_block"
    id: Mapped[int] = mapped_column(primary_key=True)
    pattern: Mapped[str] = mapped_column(String(320), unique=True)
    created_on: Mapped[datetime] = mapped_column(default=utcnow)


class SyncRun(db.Model):
    """One pass over one mailbox: for the dashboard's charts and figures."""

    __tablename__ = "sync_run"
    __table_args__ = (Index("ix_sync_run_started", "started_on"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    worker: Mapped[str | None] = mapped_column(String(120))
    started_on: Mapped[datetime] = mapped_column(default=utcnow)
    finished_on: Mapped[datetime | None]
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    tracked: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)


JOB_KINDS = ("approve", "test_enable", "apply_defaults")
JOB_ITEM_STATUSES = ("pending", "done", "failed", "skipped")


class MailboxJob(db.Model):
    """A bulk action over many mailboxes (approve, Test & Enable, apply default settings),
    run in the background by workers that claim its items with leases; the page shows its
    progress from the items."""

    __tablename__ = "mailbox_job"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(400))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    total: Mapped[int] = mapped_column(Integer, default=0)
    finished_on: Mapped[datetime | None]


class MailboxJobItem(db.Model):
    """One mailbox of a bulk job: pending until a worker has done it, then its result."""

    __tablename__ = "mailbox_job_item"
    __table_args__ = (Index("ix_mailbox_job_item_claim", "status", "lease_expires_on"),
                      set_rows_index("ix_mailbox_job_item_mailbox_id", "mailbox_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("mailbox_job.id", ondelete="CASCADE"),
                                        index=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailbox.id", ondelete="SET NULL"))
    email_address: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    message: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_on: Mapped[datetime | None]
    finished_on: Mapped[datetime | None]


class ItemCursor(db.Model):
    """Where the sync of one calendar, task list or address book of a mailbox stands: the
    store's opaque cursor, stored in the transaction that stores what it covers."""

    __tablename__ = "item_cursor"
    __table_args__ = (UniqueConstraint("mailbox_id", "kind", "collection_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))  # appointment contact task
    collection_key: Mapped[str] = mapped_column(String(1000))
    collection_name: Mapped[str] = mapped_column(String(500))
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ItemLink(db.Model):
    """One item of a mailbox's store and the CRM record it syncs with (or why it does not):
    its version on the server, its last synced text and field values (what each side
    changed since is told against these). ``tracked`` with no record: the CRM record was
    deleted, so the item goes from the server too."""

    __tablename__ = "item_link"
    __table_args__ = (UniqueConstraint("mailbox_id", "kind", "ref"),
                      Index("ix_item_link_uid", "kind", "uid"))
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"),
                                            index=True)
    kind: Mapped[str] = mapped_column(String(12))
    collection_key: Mapped[str] = mapped_column(String(1000))
    ref: Mapped[str] = mapped_column(String(1000))
    etag: Mapped[str | None] = mapped_column(String(300))
    uid: Mapped[str | None] = mapped_column(String(400))
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activity.id", ondelete="SET NULL"), index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True)
    tracked: Mapped[bool] = mapped_column(Boolean, default=True)
    # "server": taken in from the mail server (stays there whatever the filters say);
    # "crm": put there because a synchronization filter took it (leaves with the filter).
    origin: Mapped[str] = mapped_column(String(10), default="server")
    reason: Mapped[str | None] = mapped_column(Text)  # why (not) synced, for the dashboard
    server_data: Mapped[str | None] = mapped_column(Text)
    synced_values: Mapped[dict | None] = mapped_column(JSON)
    synced_on: Mapped[datetime] = mapped_column(default=utcnow)

    activity = relationship("Activity", foreign_keys=[activity_id])
    contact = relationship("Contact", foreign_keys=[contact_id])

    @property
    def record_id(self) -> int | None:
        return self.contact_id if self.kind == "contact" else self.activity_id


class ItemPushMark(db.Model):
    """Where the push of one kind of a mailbox's items stands (``server.sync.acts.marks``):
    when its last complete push began, and a digest of what decided the synchronization
    filter's selection then, besides the records themselves."""

    __tablename__ = "item_push_mark"
    __table_args__ = (UniqueConstraint("mailbox_id", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))
    filter_key: Mapped[str] = mapped_column(String(64))
    pushed_from: Mapped[datetime] = mapped_column()


class SyncFilter(db.Model):
    """Which CRM records go to users' mail servers (Dynamics' synchronization filters): an
    owner (the user, their teams, anyone) and conditions on fields, all of which must hold.
    ``user_id`` None: an organization default, used by users without a filter of the kind."""

    __tablename__ = "sync_filter"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"),
                                                index=True)
    kind: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(10), default="me")  # FILTER_OWNERS
    # [[field, operator, value], ...]: operators eq ne contains empty not_empty
    conditions: Mapped[list] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FieldDirection(db.Model):
    """The organization's sync direction of one field (Dynamics' field sync settings); a
    field without a row has its default (``server.sync.items.fields``)."""

    __tablename__ = "field_direction"
    __table_args__ = (UniqueConstraint("kind", "field"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    field: Mapped[str] = mapped_column(String(60))
    direction: Mapped[str] = mapped_column(String(10))  # FIELD_DIRECTIONS
