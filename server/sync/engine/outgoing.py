"""Sending the CRM's outgoing email through a mailbox: ``send_pending(mailbox_id)``.

An Email activity with status ``pending_send`` is sent by the mailbox of its sender (its
"from" party: a user or a queue; without one, its owner's). Each email is claimed first
(``sending``, with a lease so an email whose worker died is picked up again), given a
Message-ID and, when the organization uses them, a tracking token in its subject (both
stored before anything is sent, so a retry sends the very same message), turned into MIME
(``build_mime``, pure; with the email's few extra headers, ``Email.internet_headers`` as
``server.sync.mail.outgoing_headers`` checks them), sent with the profile's outgoing
protocol, copied into the Sent folder when the incoming connector can store mail (IMAP,
Maildir; the profile setting ``save_sent_copy`` false turns it off), and marked ``sent``.

Failures: a temporary refusal (4xx) or a lost connection is retried after 1, 2, 4, 8, 16...
minutes, up to ``REGARDING_SEND_MAX_ATTEMPTS`` attempts (default 5), then the email is
``failed`` with the reason; a permanent refusal (5xx) fails it at once. A refused sign-in
does not use up attempts (the mailbox is disabled and a person must act; the email waits).
When the server cannot be reached or refuses the sign-in, the batch stops and the
``ConnectorError`` is raised after the state is saved (with ``.counts``), so the caller
backs the mailbox off as for incoming errors.

Sending as someone else (a user mailbox sending an email another user created) needs the
creator's ``send_as_other_user`` privilege. A full batch leaves the mailbox asking for the
next run at once (``sync_requested``), so a long queue is not left to the next interval.
"""
from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import undefer

from server.crm.activities import ActivityParty, Attachment, Email
from server.crm.html import html_to_text
from server.crm.models import Account, Contact, Lead, Organization, Queue
from server.crm.services.tracking import new_tracking_token
from server.mailkeys import normalize_address, normalize_message_id
from server.db import db, utcnow
from server.security import authz
from server.security.models import User
from server.sync.engine.accounts import account_for
from server.sync.engine.folders import find_sent
from server.sync.engine.service_accounts import HELD
from server.sync.connectors import incoming, outgoing
from server.sync.connectors.base import AssignsMessageIds, ConnectorError, SavesCopies, Sender
from server.sync.mail.outgoing_headers import checked_headers
from server.sync.models import Mailbox
from server.sync.workers import scheduler

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5
SENDING_LEASE = timedelta(minutes=10)  # a claimed email not finished by then is due again
BATCH = 50
PARTY_MODELS = {"user": User, "contact": Contact, "account": Account, "lead": Lead,
                "queue": Queue}


# -- the message (pure) -------------------------------------------------------------------

@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class OutgoingMessage:
    from_: tuple[str, str]  # (display name, address)
    subject: str
    message_id: str  # "<id@domain>"
    date: datetime
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    bcc: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    in_reply_to: str | None = None  # "<id@domain>"
    references: list[str] = field(default_factory=list)
    attachments: list[OutgoingAttachment] = field(default_factory=list)
    headers: tuple[tuple[str, str], ...] = ()  # extra ones, outgoing_headers.checked_headers

    @property
    def recipients(self) -> list[str]:
        """Envelope recipients: To, Cc and Bcc, each once."""
        return list(dict.fromkeys(a for _, a in self.to + self.cc + self.bcc))


def _address(name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def subject_with_token(subject: str, token: str | None) -> str:
    """``"Quote" + CRM:0012345`` -> ``"Quote CRM:0012345"`` (once)."""
    subject = (subject or "").strip()
    if not token or token in subject:
        return subject
    return f"{subject} {token}".strip()


def build_mime(message: OutgoingMessage) -> EmailMessage:
    """The MIME message: text and HTML alternatives (HTML with its inline images), then
    attachments. Bcc recipients are left out of the headers. Raises ValueError for an
    address or an extra header that cannot be written."""
    mime = EmailMessage(policy=policy.SMTP)
    mime["From"] = _address(*message.from_)
    if message.to:
        mime["To"] = [_address(n, a) for n, a in message.to]
    if message.cc:
        mime["Cc"] = [_address(n, a) for n, a in message.cc]
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(message.date)
    mime["Message-ID"] = message.message_id
    if message.in_reply_to:
        mime["In-Reply-To"] = message.in_reply_to
    if message.references:
        mime["References"] = " ".join(message.references)
    for name, value in checked_headers(message.headers):
        mime[name] = value
    text = message.text if message.text is not None else (
        html_to_text(message.html) if message.html else "")
    mime.set_content(text or "", subtype="plain")
    inline = [a for a in message.attachments if a.inline and a.content_id]
    if message.html:
        mime.add_alternative(message.html, subtype="html")
        html_part = mime.get_payload()[-1]
        for att in inline:
            maintype, _, subtype = att.content_type.partition("/")
            html_part.add_related(att.content, maintype=maintype or "application",
                                  subtype=subtype or "octet-stream", filename=att.filename,
                                  cid=f"<{att.content_id.strip('<>')}>")
    for att in message.attachments:
        if message.html and att in inline:
            continue
        maintype, _, subtype = att.content_type.partition("/")
        mime.add_attachment(att.content, maintype=maintype or "application",
                            subtype=subtype or "octet-stream", filename=att.filename)
    return mime


# -- which emails, claimed how --------------------------------------------------------------

@dataclass
class SendCounts:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    def as_dict(self) -> dict:
        return {"sent": self.sent, "retrying": self.retrying, "failed": self.failed}


def _belongs_to(mailbox: Mailbox):
    """SQL: emails this mailbox sends (its user's or its queue's)."""
    def from_party(*conditions):
        return exists(select(ActivityParty.id).where(
            ActivityParty.activity_id == Email.id, ActivityParty.role == "from", *conditions))

    if mailbox.queue_id is not None:
        return from_party(ActivityParty.queue_id == mailbox.queue_id)
    return or_(from_party(ActivityParty.user_id == mailbox.user_id),
               and_(Email.owner_user_id == mailbox.user_id,
                    ~from_party(or_(ActivityParty.user_id.is_not(None),
                                    ActivityParty.queue_id.is_not(None)))))


def waiting_count(mailbox: Mailbox) -> int:
    """How many of this mailbox's emails wait to be sent (pending or being sent)."""
    return db.session.scalar(select(func.count(Email.id)).where(
        Email.status.in_(("pending_send", "sending")), _belongs_to(mailbox))) or 0


def _due(mailbox: Mailbox, now: datetime, limit: int) -> list[Email]:
    due = or_(and_(Email.status == "pending_send",
                   or_(Email.next_attempt_on.is_(None), Email.next_attempt_on <= now)),
              and_(Email.status == "sending", Email.next_attempt_on <= now))  # a dead worker's
    return list(db.session.scalars(
        select(Email).where(due, _belongs_to(mailbox))
        .order_by(Email.next_attempt_on.is_not(None), Email.next_attempt_on, Email.id)
        .limit(limit)))


def _claim(email: Email, now: datetime) -> bool:
    """Compare-and-set to ``sending``: False when another worker took it first."""
    table = Email.__table__
    seen = email.next_attempt_on
    condition = table.c.next_attempt_on.is_(None) if seen is None else table.c.next_attempt_on == seen
    result = db.session.execute(
        update(table).where(table.c.id == email.id, table.c.status == email.status, condition)
        .values(status="sending", next_attempt_on=now + SENDING_LEASE))
    if result.rowcount != 1:
        db.session.rollback()
        return False
    db.session.refresh(email, ["status", "next_attempt_on"])
    return True


# -- building one email ---------------------------------------------------------------------

def _domain(mailbox: Mailbox) -> str:
    host = urlsplit(current_app.config.get("REGARDING_BASE_URL") or "").hostname
    return host or mailbox.email_address.rpartition("@")[2] or "localhost"


def _identify(email: Email, mailbox: Mailbox, org: Organization) -> None:
    """Message-ID and tracking token, made once and kept for every retry."""
    if not email.message_id:
        email.message_id = normalize_message_id(make_msgid(domain=_domain(mailbox)))
    if not email.dedupe_key:
        email.dedupe_key = email.message_id
    if org.use_tracking_token and not email.tracking_token:
        email.tracking_token = new_tracking_token(org)


def _party_addresses(parties: list[ActivityParty]) -> dict[tuple[str, int], tuple[str, str | None]]:
    """(kind, id) -> (name, first address) for parties stored without an address, one query
    per record type."""
    wanted: dict[str, set[int]] = {}
    for party in parties:
        if not party.address and party.party_ref:
            kind, record_id = party.party_ref
            wanted.setdefault(kind, set()).add(record_id)
    out: dict[tuple[str, int], tuple[str, str | None]] = {}
    for kind, ids in wanted.items():
        model = PARTY_MODELS[kind]
        for record in db.session.scalars(select(model).where(model.id.in_(ids))):
            addresses = getattr(record, "emails", None) or [getattr(record, "email", None)]
            name = getattr(record, "full_name", None) or getattr(record, "title", None) or ""
            out[(kind, record.id)] = (name, next((a for a in addresses if a), None))
    return out


def _parties(parties: list[ActivityParty], known: dict, role: str) -> list[tuple[str, str]]:
    out = []
    for party in parties:
        if party.role != role:
            continue
        name, address = party.name or "", party.address
        if not address and party.party_ref:
            record_name, address = known.get(party.party_ref, ("", None))
            name = name or record_name
        address = normalize_address(address) if address else None
        if address:
            out.append((name, address))
    return out


def _attachment_content(att: Attachment) -> bytes | None:
    if att.storage_path:
        path = Path(current_app.instance_path) / att.storage_path
        return path.read_bytes() if path.is_file() else None
    return att.content


@dataclass
class _Draft:
    """What one email needs for sending, read before the first commit expires it."""
    subject: str
    text: str | None
    html: str | None
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    bcc: list[tuple[str, str]]
    references: list[str]
    attachments: list[OutgoingAttachment]
    headers: tuple[tuple[str, str], ...] = ()
    problem: ConnectorError | None = None


def _drafts(emails: list[Email], mailbox: Mailbox) -> dict[int, _Draft]:
    """Every email's parties, parent and attachments, in a few queries for the batch (read
    apart from the Email objects, which are expired at every commit of the run)."""
    ids = [e.id for e in emails]
    parties: dict[int, list[ActivityParty]] = {i: [] for i in ids}
    files: dict[int, list[Attachment]] = {i: [] for i in ids}
    if ids:
        for party in db.session.scalars(select(ActivityParty).where(
                ActivityParty.activity_id.in_(ids)).order_by(ActivityParty.id)):
            parties[party.activity_id].append(party)
        for att in db.session.scalars(select(Attachment).where(Attachment.activity_id.in_(ids))
                                      .order_by(Attachment.id).options(undefer(Attachment.content))):
            files[att.activity_id].append(att)
    known = _party_addresses([p for group in parties.values() for p in group])
    parent_ids = {e.parent_activity_id for e in emails if e.parent_activity_id}
    parents = {p.id: p for p in db.session.scalars(select(Email).where(Email.id.in_(parent_ids)))} \
        if parent_ids else {}
    denied = _senders_denied(emails, mailbox)
    drafts = {}
    for email in emails:
        parent = parents.get(email.parent_activity_id)
        references = []
        if parent is not None and parent.message_id:
            references = [f"<{r}>" for r in (parent.references or "").split() if r]
            references.append(f"<{parent.message_id}>")
        draft = _Draft(email.subject, email.text_body, email.html_body,
                       _parties(parties[email.id], known, "to"),
                       _parties(parties[email.id], known, "cc"),
                       _parties(parties[email.id], known, "bcc"), references, [],
                       problem=denied.get(email.id))
        try:
            draft.headers = checked_headers(email.internet_headers)
        except ValueError as exc:
            draft.problem = draft.problem or ConnectorError(
                "bad_header", f"The email cannot be sent: {exc}", severity="message")
        for att in files[email.id]:
            content = None if att.content_omitted else _attachment_content(att)
            if content is None:
                draft.problem = draft.problem or ConnectorError(
                    "attachment_missing", f"The attachment {att.filename} has no content to "
                    "send.", severity="message")
                continue
            content_type = att.content_type or mimetypes.guess_type(att.filename)[0] or \
                "application/octet-stream"
            draft.attachments.append(OutgoingAttachment(att.filename, content_type, content,
                                                        att.content_id, att.is_inline))
        if draft.problem is None and not (draft.to or draft.cc or draft.bcc):
            draft.problem = ConnectorError("no_recipients", "The email has no recipient with an "
                                           "email address.", severity="message")
        drafts[email.id] = draft
    return drafts


def _senders_denied(emails: list[Email], mailbox: Mailbox) -> dict[int, ConnectorError]:
    """Emails created by someone else than the mailbox's user, whose creator lacks the
    ``send_as_other_user`` privilege."""
    if mailbox.user_id is None:
        return {}
    others = {e.created_by_id for e in emails if e.created_by_id not in (None, mailbox.user_id)}
    if not others:
        return {}
    creators = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(others)))}
    allowed = {uid for uid, user in creators.items()
               if authz.principal(user).has("send_as_other_user")}
    return {e.id: ConnectorError(
        "send_as_denied", f"{creators[e.created_by_id].full_name if e.created_by_id in creators else 'Its creator'}"
        f" may not send email as {mailbox.email_address}.", severity="message")
        for e in emails if e.created_by_id in others and e.created_by_id not in allowed}


def _message(draft: _Draft, email: Email, from_: tuple[str, str], now: datetime) -> OutgoingMessage:
    return OutgoingMessage(
        from_=from_, subject=subject_with_token(draft.subject, email.tracking_token),
        message_id=f"<{email.message_id}>", date=now, to=draft.to, cc=draft.cc, bcc=draft.bcc,
        text=draft.text, html=draft.html,
        in_reply_to=draft.references[-1] if draft.references else None,
        references=draft.references, attachments=draft.attachments, headers=draft.headers)


# -- the outcome of one email ------------------------------------------------------------------

def _max_attempts() -> int:
    return int(current_app.config.get("REGARDING_SEND_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))


def _sent(email: Email, now: datetime) -> None:
    email.status, email.state = "sent", "completed"
    email.sent_on = email.actual_end = email.occurred_on = now
    email.delivery_attempts = (email.delivery_attempts or 0) + 1
    email.next_attempt_on, email.error = None, None


def _failed_attempt(email: Email, error: ConnectorError, now: datetime, counts: SendCounts) -> None:
    if error.severity in ("auth", HELD):  # a person must fix the mailbox (or the profile's
        # service account): no attempt used up, and it goes as soon as outgoing email is on
        # again (``outcome.send_failed``)
        email.status, email.error = "pending_send", error.message
        email.next_attempt_on = now
        counts.retrying += 1
        return
    email.delivery_attempts = (email.delivery_attempts or 0) + 1
    permanent = error.severity == "message" and error.retry_after is None
    if permanent or email.delivery_attempts >= _max_attempts():
        email.status, email.next_attempt_on = "failed", None
        email.error = error.message if permanent else \
            f"Not sent after {email.delivery_attempts} attempts: {error.message}"
        counts.failed += 1
        return
    delay = timedelta(minutes=2 ** (email.delivery_attempts - 1))
    if error.retry_after:
        delay = max(delay, timedelta(seconds=error.retry_after))
    email.status, email.next_attempt_on, email.error = "pending_send", now + delay, error.message
    counts.retrying += 1


# -- the run -----------------------------------------------------------------------------------

class _Run:
    """One mailbox's batch: the sender and the Sent-folder connector are opened once, on
    first need."""

    def __init__(self, mailbox: Mailbox):
        self.mailbox = mailbox
        self.profile = mailbox.server_profile
        self.sender: Sender | None = None
        self.store: SavesCopies | None = None  # a connector that keeps Sent copies itself
        self.store_failed = False

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> dict:
        if self.sender is None:
            if not self.profile or not self.profile.outgoing_protocol:
                raise ConnectorError("not_configured", f"The mailbox {self.mailbox.email_address}"
                                     " has no outgoing server.", severity="auth")
            opened = outgoing(self.profile.outgoing_protocol)(account_for(self.mailbox, "outgoing"))
            opened.__enter__()
            self.sender = opened
        return self.sender.send(raw, sender, recipients) or {}

    def save_sent_copy(self, raw: bytes, when: datetime) -> str | None:
        """The error text when the copy could not be saved, else None."""
        profile = self.profile
        if (self.store_failed or profile is None or not profile.incoming_protocol
                or not (profile.settings or {}).get("save_sent_copy", True)):
            return None
        connector_cls = incoming(profile.incoming_protocol)
        if not issubclass(connector_cls, SavesCopies):  # the service keeps the copy itself
            return None
        try:
            if self.store is None:
                store = connector_cls(account_for(self.mailbox, "incoming"))
                store.__enter__()
                self.store = store
            folder = find_sent(self.store.list_folders(), self.mailbox.sent_folder)
            if folder is None:
                return (f'there is no folder "{self.mailbox.sent_folder}"'
                        if self.mailbox.sent_folder else
                        "no Sent folder was found (name it in the mailbox's settings)")
            self.store.append(folder, raw, flags=["\\Seen"], msg_time=when)
        except ConnectorError as exc:
            self.store_failed = True
            return exc.message
        return None

    def close(self) -> None:
        for part in (self.sender, self.store):
            if part is not None:
                try:
                    part.__exit__(None, None, None)
                except Exception:  # closing a broken session
                    log.debug("closing a connection failed", exc_info=True)


def _record_assigned_id(email: Email, sender: Sender | None) -> None:
    """A sender that knows the Message-ID the server gave the sent message (Graph's
    ``internetMessageId``) has it recorded, so replies correlate to this email."""
    if not isinstance(sender, AssignsMessageIds):
        return
    assigned = sender.internet_message_ids.get(f"<{email.message_id}>")
    if assigned and normalize_message_id(assigned) != email.message_id:
        email.message_id = normalize_message_id(assigned)


def send_pending(mailbox_id: int, now: datetime | None = None, *, limit: int = BATCH) -> SendCounts:
    """Send this mailbox's due outgoing emails; returns how many were sent, will be retried
    and failed. Raises ``ConnectorError`` (with ``.counts``) when the server cannot be
    reached or refuses the sign-in, after saving every email's state."""
    now = now or utcnow()
    mailbox = db.session.get(Mailbox, mailbox_id)
    counts = SendCounts()
    if mailbox is None or mailbox.outgoing_method != "server_side_sync":
        return counts
    org = db.session.get(Organization, 1)
    emails = _due(mailbox, now, limit)
    drafts = _drafts(emails, mailbox)
    owner = mailbox.user or mailbox.queue
    from_ = (getattr(owner, "full_name", None) or getattr(owner, "name", None) or "",
             mailbox.email_address)
    run = _Run(mailbox)
    try:
        for email in emails:
            if not _claim(email, now):
                continue
            _identify(email, mailbox, org)
            db.session.commit()  # the claim and the identity, before anything goes out
            draft = drafts[email.id]
            try:
                if draft.problem is not None:
                    raise draft.problem
                message = _message(draft, email, from_, now)
                try:
                    raw = build_mime(message).as_bytes()
                except (ValueError, TypeError) as exc:
                    raise ConnectorError("bad_address", f"The email cannot be written: {exc}",
                                         severity="message") from None
                refused = run.send(raw, from_[1], message.recipients)
            except ConnectorError as exc:
                _failed_attempt(email, exc, now, counts)
                db.session.commit()
                log.info("email %s not sent (%s, %s)", email.id, exc.code, exc.severity)
                if exc.severity != "message":
                    exc.counts = counts
                    raise
                continue
            _sent(email, now)
            _record_assigned_id(email, run.sender)
            if refused:
                email.error = "Not delivered to: " + "; ".join(f"{a} ({r})" for a, r in refused.items())
            db.session.commit()
            counts.sent += 1
            problem = run.save_sent_copy(raw, now)
            if problem:
                email.error = ((email.error + " ") if email.error else "") + \
                    f"Sent, but no copy was saved in the Sent folder: {problem}"
                db.session.commit()
    finally:
        run.close()
    if len(emails) == limit:  # a full batch: more may wait, so the mailbox is due again now
        scheduler.ask_for_sync([mailbox_id])
        db.session.commit()
    return counts
