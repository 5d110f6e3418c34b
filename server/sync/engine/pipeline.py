"""The pipeline for one message: parse, correlate, resolve, decide, track, record why.

``process(ctx, folder, fetched)`` takes one message a connector fetched and does everything
the engine does with it, inside the caller's transaction (each message in a savepoint, so a
failure loses that message's work only):

1. parse the bytes (``message.parse``); bytes that are no email are quarantined with the
   parser's reason;
2. its identity (normalized Message-ID, else a content hash) and whether it is tracked;
3. correlation, in the order of ``threading.correlation_keys``: In-Reply-To/References to a
   tracked email's Message-ID, the tracking token to a tracked email or a pending track
   request, the conversation index, then smart matching when the organization turned it on.
   A correlated email gets its parent and inherits the parent's regarding;
4. the participants resolved in one ``resolve()`` call, for the tracking option rules;
5. the mailbox owner's track requests: an email they untracked is left alone, a pending
   request ("track this when it arrives") is honoured with its regarding;
6. ``rules.decide`` with the chain below, then, when tracked, ``tracking.track_email`` as
   the mailbox owner (a queue's mailbox: the queue's owner; the queue becomes a party and
   gets a queue item); regarding is the folder rule's (which wins on every sync), else
   the pending request's, else the inherited one; unknown senders become contacts when
   the mailbox asks for it;
7. the decision (rule hits, reason, activity, latency) is upserted into ``MessageDecision``
   and the "Tracked to Regarding" category is queued to be written back to the message.

The engine runs whole batches through ``server.sync.engine.batch``, which decides with the same
pieces (``decision_context``, ``correlate``, ``decision_row``, ``tracked_reason``) but looks
things up and writes for the whole batch at once; this module is its one-by-one fallback.

Anything unexpected while processing one message quarantines it (code ``internal``) with a
reason that never includes the message's content; only a broken database connection is
raised, because then nothing can be recorded at all.

``process_forward_mailbox`` handles a forward mailbox's messages: each is a user's forward
of an email (as an attachment, or inline under a "Forwarded message" / "Original Message"
block); the original is tracked on that user's behalf with their tracking option.
"""
from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import selectinload

from server.crm.services import records, tracking
from server.crm.activities import ActivityParty, Email
from server.crm.addresses import normalize
from server.crm.html import html_to_text
from server.crm.models import Organization, Queue
from server.crm.registry import RECORD_TYPES
from server.crm.services.resolution import Match, resolve
from server.crm.services.tracking import AttachmentContent, EmailContent, TrackRequest
from server.db import db, utcnow
from server.errors import Forbidden, Invalid, NotFound, ServiceError
from server.security import authz
from server.security.authz import Principal
from server.security.models import Team, User
from server.sync.mail import correlation as corr
from server.sync.connectors.base import ConnectorError, FetchedMessage, Folder
from server.sync.engine.folders import FolderInfo
from server.sync.mail.message import MailMessage, MessageError, parse
from server.sync.models import (Mailbox, MessageDecision, QuarantinedMessage, QueueItem,
                                TrackingBlock)
from server.sync.mail.rules import (DEFAULT_CHAIN, TRACKED_CATEGORY, DecisionContext, Direction,
                                    FolderRole, OwnerKind, Rule, TrackingOption, decide)

log = logging.getLogger(__name__)

MAX_IDENTITY = 900  # longer Message-IDs (there are such) are identified by content hash
SMART_MATCH_DAYS = 60
MAX_LATENCY_MS = 2**31 - 1  # about 24 days
SMART_MATCH_CANDIDATES = 50
RECORD_KINDS = frozenset({"contact", "account", "lead"})

__all__ = ["CHAIN", "MailboxRun", "Outcome", "identity_of", "process",
           "process_forward_mailbox", "quarantine", "write_keywords"]


# --------------------------------------------------------------------------- run context

_org_cache: tuple[tuple[str, ...], frozenset[str]] = ((), frozenset())


def _org_addresses() -> frozenset[str]:
    """Every mailbox's address, normalized. Each run reads them all; normalizing 10,000
    (IDNA included) cost a quarter second per run, so the last result is kept and reused
    while the stored addresses are the same."""
    global _org_cache
    raw = tuple(db.session.execute(select(Mailbox.email_address).order_by(Mailbox.id)).scalars())
    cached = _org_cache
    if raw != cached[0]:
        cached = (raw, frozenset(filter(None, (normalize(a) for a in raw))))
        _org_cache = cached
    return cached[1]


@dataclass
class MailboxRun:
    """What the pipeline needs about one mailbox for one run, loaded once: who owns what it
    tracks, whose privileges tracking runs with, the addresses and lists the rules use, and
    the open connector (for writing the tracked category back)."""

    mailbox: Mailbox
    org: Organization
    owner: User | Team | None  # owner of tracked activities
    actor: Principal | None  # whose privileges tracking uses; None: see ``actor_problem``
    owner_kind: OwnerKind
    owner_user_id: int | None  # the user whose track requests count
    queue: Queue | None
    owner_addresses: frozenset[str]
    org_addresses: frozenset[str]
    blocklist: frozenset[str]
    process_after: datetime | None
    attachment_limit: int
    connector: Any = None
    actor_problem: str | None = None
    keyword_queue: list[tuple[Folder, str]] = field(default_factory=list)
    forward_runs: dict[int, MailboxRun] = field(default_factory=dict)
    # folder key -> when this run's engine last visited the folder before (None: never);
    # a folder missing here (a retry, a test) measures latency from arrival.
    folder_visits: dict[str, datetime | None] = field(default_factory=dict)
    # Set by the engine while it reads a folder header first: (folder, refs) -> {ref: the
    # whole message}, read when the connector is free (absent: expunged meanwhile).
    read_whole: Callable[[Folder, list[str]], dict[str, bytes]] | None = None

    @classmethod
    def load(cls, mailbox: Mailbox, connector: Any = None, *,
             org_addresses: frozenset[str] | None = None,
             blocklist: frozenset[str] | None = None) -> MailboxRun:
        org = db.session.get(Organization, 1)
        if org_addresses is None:
            org_addresses = _org_addresses()
        if blocklist is None:
            blocklist = frozenset(db.session.scalars(select(TrackingBlock.pattern)))
        profile = mailbox.server_profile
        limit = org.attachment_max_bytes
        if profile is not None and profile.attachment_max_bytes is not None:
            limit = min(limit, profile.attachment_max_bytes)
        queue = mailbox.queue if mailbox.queue_id else None
        owner, actor, problem = _owner_and_actor(mailbox, queue)
        addresses = {normalize(mailbox.email_address)}
        if mailbox.user is not None:
            addresses.add(normalize(mailbox.user.email))
        if queue is not None and queue.email:
            addresses.add(normalize(queue.email))
        return cls(mailbox=mailbox, org=org, owner=owner, actor=actor,
                   owner_kind=OwnerKind.QUEUE if queue is not None else OwnerKind.USER,
                   owner_user_id=mailbox.user_id, queue=queue,
                   owner_addresses=frozenset(a for a in addresses if a),
                   org_addresses=org_addresses, blocklist=blocklist,
                   process_after=profile.process_emails_after if profile else None,
                   attachment_limit=limit, connector=connector, actor_problem=problem)


def _can_track_for(p: Principal, owner: User | Team) -> bool:
    if not p.has("track_email"):
        return False
    if isinstance(owner, Team):
        return authz.can_create(p, Email, owner.business_unit_id, owner_team_id=owner.id)
    return authz.can_create(p, Email, owner.business_unit_id, owner.id)


def _owner_and_actor(mailbox: Mailbox, queue: Queue | None
                     ) -> tuple[User | Team | None, Principal | None, str | None]:
    """The owner of what the mailbox tracks and the user whose privileges tracking uses."""
    if queue is not None:
        owner = queue.owner_user or queue.owner_team
        if owner is None:
            return None, None, f'The queue "{queue.name}" has no owner.'
        candidates = [owner] if isinstance(owner, User) else sorted(
            (m for m in owner.members if m.is_active), key=lambda m: m.id)
        for user in candidates:
            if user.is_active and _can_track_for(authz.principal(user), owner):
                return owner, authz.principal(user), None
        admin = _an_administrator()
        if admin is not None:
            return owner, authz.principal(admin), None
        return owner, None, (f'Nobody who may track email for "{getattr(owner, "name", "")}" '
                             "was found (the queue's owner or a member of its owning team).")
    user = mailbox.user
    if user is None:
        return None, None, "This mailbox belongs to no user or queue."
    if not user.is_active:
        return user, None, f"{user.full_name} is disabled in Regarding."
    p = authz.principal(user)
    if not p.has("track_email"):
        return user, None, (f'{user.full_name} does not have the "Track email in the CRM" '
                            "privilege.")
    return user, p, None


def _an_administrator() -> User | None:
    from server.security.models import Role, user_role
    return db.session.scalar(
        select(User).join(user_role, user_role.c.user_id == User.id)
        .join(Role, Role.id == user_role.c.role_id)
        .where(Role.is_builtin.is_(True), Role.name == "System Administrator",
               User.is_active.is_(True)).order_by(User.id).limit(1))


@dataclass(frozen=True)
class Outcome:
    """What happened to one message."""

    status: str  # tracked skipped quarantined
    reason: str
    identity: str | None = None
    activity_id: int | None = None
    created: bool = False
    new: bool = False  # tracked in this mailbox for the first time, or re-linked
    rule: str | None = None
    correlation_method: str | None = None
    quarantine_id: int | None = None

    @property
    def tracked(self) -> bool:
        return self.status == "tracked"


# --------------------------------------------------------------------------- extra rules

@dataclass(frozen=True)
class SyncDecisionContext(DecisionContext):
    """The rules' context plus what only the engine knows: the owner's track requests."""

    untracked: bool = False
    pending_request: bool = False


class UserUntracked(Rule):
    """The mailbox's user untracked this email: sync never tracks it again by itself."""

    name = "untracked-by-user"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return bool(getattr(ctx, "untracked", False))

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return ("You untracked this email, so Regarding does not track it again by itself. "
                "Track it in Outlook to keep it after all.")


class PendingRequest(Rule):
    """The user asked to track this email (in Outlook) before it reached the server."""

    name = "track-request"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return bool(getattr(ctx, "pending_request", False))

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return ("You asked to track this email in Outlook before it reached Regarding, so it "
                "is tracked now that it arrived.")


def _chain() -> tuple[Rule, ...]:
    rules = list(DEFAULT_CHAIN)
    at = next(i for i, rule in enumerate(rules) if rule.name == "tracked-category")
    rules.insert(at, PendingRequest())
    return (UserUntracked(), *rules)


CHAIN = _chain()


# --------------------------------------------------------------------------- helpers

def ensure_transaction() -> None:
    """Savepoints need a real transaction: SQLite's driver begins one only at the first
    write, and releasing a savepoint opened before that would commit it on its own."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean(text: str | None) -> str | None:
    """Text safe for every database: no NUL, no lone surrogates."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def identity_of(msg: MailMessage) -> str:
    """The email's identity as tracking stores it: the normalized Message-ID, or a content
    hash when there is none (or it is too long or holds control characters)."""
    mid = _usable_message_id(msg)
    return mid or f"sha256:{msg.content_hash}"


def _usable_message_id(msg: MailMessage) -> str | None:
    mid = tracking.normalize_message_id(msg.message_id)
    if not mid or len(mid) > MAX_IDENTITY or _CONTROL.search(mid) or clean(mid) != mid:
        return None
    return mid


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _party(address) -> tuple[str, str]:
    return clean(address.name) or "", address.address


def to_content(ctx: MailboxRun, msg: MailMessage, fetched: FetchedMessage,
               direction: Direction) -> EmailContent:
    """A parsed message as tracking takes it; attachments over the limit as metadata only."""
    sender = msg.from_ or msg.sender
    attachments = [AttachmentContent(
        filename=clean(a.filename) or "attachment", content_type=a.content_type,
        content=a.content if a.size <= ctx.attachment_limit else None, size=a.size,
        content_id=clean(a.content_id), inline=a.inline) for a in msg.attachments]
    incoming = direction is Direction.INCOMING
    message_id = _usable_message_id(msg)
    return EmailContent(
        message_id=message_id, subject=clean(msg.subject) or "",
        from_=_party(sender) if sender else None,
        to=[_party(a) for a in msg.to], cc=[_party(a) for a in msg.cc],
        bcc=[_party(a) for a in msg.bcc],
        html_body=clean(msg.html_body) or None, text_body=clean(msg.text_body) or None,
        sent_on=_aware(msg.date),
        received_on=_aware(fetched.arrived_on or msg.date) if incoming else None,
        in_reply_to=msg.in_reply_to, references=list(msg.references),
        conversation_index=msg.thread_index if msg.thread_index and len(msg.thread_index) <= 400
        else None,
        tracking_token=corr.find_token(msg.subject, ctx.org.tracking_token_prefix),
        attachments=attachments,
        content_hash=None if message_id else msg.content_hash)  # the identity without one


# --------------------------------------------------------------------------- correlation

@dataclass(frozen=True)
class Correlation:
    method: str
    parent_id: int | None
    regarding: tuple[str, int] | None


def tracked_by_message_id(ids: set[str] | list[str]) -> dict[str, Email]:
    """The first tracked email for each of these Message-IDs (one query)."""
    by_id: dict[str, Email] = {}
    if ids:
        for email in db.session.scalars(select(Email).where(Email.message_id.in_(set(ids)))
                                        .order_by(Email.id)):
            by_id.setdefault(email.message_id, email)
    return by_id


NEWEST_CANDIDATES = 5  # tracked emails kept per tracking token or conversation


@dataclass
class Candidates:
    """The tracked emails and pending track requests that messages' correlation keys name,
    looked up at once (for a batch's messages, or for one): by Message-ID (the first
    tracked), by tracking token and by conversation (newest first), and the first pending
    request per token."""

    by_id: dict[str, Email] = field(default_factory=dict)
    by_token: dict[str, list[Email]] = field(default_factory=dict)
    by_conversation: dict[str, list[Email]] = field(default_factory=dict)
    requests: dict[str, TrackRequest] = field(default_factory=dict)


def correlation_candidates(ctx: MailboxRun, msgs: list[MailMessage],
                           also: set[str] = frozenset()) -> Candidates:
    """``Candidates`` for these messages, in at most four queries; ``also``: Message-IDs to
    look up with their parents' (a batch's own, to find those tracked already)."""
    keys: dict[str, set[str]] = {}
    for msg in msgs:
        for method, key in corr.correlation_keys(msg, prefix=ctx.org.tracking_token_prefix):
            keys.setdefault(method, set()).add(key)
    found = Candidates(by_id=tracked_by_message_id(
        keys.get(corr.IN_REPLY_TO, set()) | keys.get(corr.REFERENCES, set()) | also))
    newest = (Email.occurred_on.desc(), Email.id.desc())
    for method, column, into in ((corr.TRACKING_TOKEN, Email.tracking_token, found.by_token),
                                 (corr.CONVERSATION_INDEX, Email.conversation_id,
                                  found.by_conversation)):
        if keys.get(method):
            # The few newest per key (a long thread has many): correlate passes over a
            # message's own copies, of which there are fewer.
            ranked = select(Email.id, func.row_number().over(
                partition_by=column, order_by=newest).label("rank")).where(
                column.in_(keys[method])).subquery()
            for email in db.session.scalars(select(Email).join(ranked, Email.id == ranked.c.id)
                                            .where(ranked.c.rank <= NEWEST_CANDIDATES)
                                            .order_by(*newest)):
                into.setdefault(getattr(email, column.key), []).append(email)
    if keys.get(corr.TRACKING_TOKEN):
        for request in db.session.scalars(select(TrackRequest).where(
                TrackRequest.tracking_token.in_(keys[corr.TRACKING_TOKEN]),
                TrackRequest.status == "pending").order_by(TrackRequest.id)):
            found.requests.setdefault(request.tracking_token, request)
    return found


def correlate(ctx: MailboxRun, msg: MailMessage,
              candidates: Candidates | None = None) -> Correlation | None:
    """The tracked email this one answers (first key that finds one wins), or a pending track
    request its tracking token belongs to. Copies of the email itself are no parent.
    ``candidates``: what the message's keys name, when the caller looked it up already (a
    batch does it once for all its messages)."""
    keys = corr.correlation_keys(msg, prefix=ctx.org.tracking_token_prefix,
                                 smart_matching=ctx.org.smart_matching)
    if not keys:
        return None
    if candidates is None:
        candidates = correlation_candidates(ctx, [msg])
    identity = identity_of(msg)

    def newest(emails: list[Email]) -> Email | None:
        return next((e for e in emails if e.message_id is None or e.message_id != identity),
                    None)
    for method, key in keys:
        parent: Email | None = None
        if method in (corr.IN_REPLY_TO, corr.REFERENCES):
            parent = candidates.by_id.get(key)
        elif method == corr.TRACKING_TOKEN:
            parent = newest(candidates.by_token.get(key, []))
            if parent is None and key in candidates.requests:
                return Correlation(method, None, candidates.requests[key].regarding_ref)
        elif method == corr.CONVERSATION_INDEX:
            parent = newest(candidates.by_conversation.get(key, []))
        elif method == corr.SMART_MATCH:
            own = or_(Email.message_id.is_(None), Email.message_id != identity)
            parent = _smart_match(ctx, msg, key, own)
        if parent is not None:
            return Correlation(method, parent.id, parent.regarding_ref)
    return None


def _smart_match(ctx: MailboxRun, msg: MailMessage, key: str, own) -> Email | None:
    """Recent emails with the same normalized subject and the same participants."""
    subject = corr.normalize_subject(msg.subject, ctx.org.tracking_token_prefix)
    if not subject:
        return None
    since = utcnow() - timedelta(days=SMART_MATCH_DAYS)
    candidates = db.session.scalars(
        select(Email).options(selectinload(Email.parties))
        .where(func.lower(Email.subject).contains(subject[:200].lower(), autoescape=True),
               Email.occurred_on >= since, own)
        .order_by(Email.occurred_on.desc()).limit(SMART_MATCH_CANDIDATES)).all()
    for email in candidates:
        theirs = corr.smart_match_key(email.subject, (p.address for p in email.parties if p.address),
                                      ctx.org.tracking_token_prefix)
        if theirs == key:
            return email
    return None


# --------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class Requests:
    untracked: bool = False
    pending: TrackRequest | None = None


def _requests(ctx: MailboxRun, identity: str, token: str | None) -> Requests:
    """The mailbox user's own track requests for this email (by Message-ID or token)."""
    if ctx.owner_user_id is None:
        return Requests()
    match = [TrackRequest.internet_message_id == identity]
    if token:
        match.append((TrackRequest.tracking_token == token) & (
            TrackRequest.internet_message_id.is_(None) | (TrackRequest.internet_message_id == identity)))
    rows = db.session.scalars(select(TrackRequest).where(
        TrackRequest.user_id == ctx.owner_user_id, TrackRequest.item_type == "email",
        or_(*match)).order_by(TrackRequest.id)).all()
    untracked = any(r.status == "untracked" and r.internet_message_id == identity for r in rows)
    pending = next((r for r in rows if r.status == "pending"), None)
    return Requests(untracked=untracked, pending=pending)


# --------------------------------------------------------------------------- the message

def process(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage) -> Outcome:
    """Process one fetched message inside the caller's transaction; never raises for the
    message's sake (it is quarantined instead)."""
    return _guarded(ctx, folder, fetched, _process)


def process_forward_mailbox(ctx: MailboxRun, folder: FolderInfo,
                            fetched: FetchedMessage) -> Outcome:
    """Process one message of a forward mailbox: track the email it forwards on behalf of
    the user who forwarded it."""
    return _guarded(ctx, folder, fetched, _process_forward)


def in_savepoint(work, on_error):
    """``work()`` in a savepoint of the caller's transaction; any error but a lost database
    rolls the savepoint back and gives ``on_error(exc)`` instead."""
    ensure_transaction()
    try:
        with db.session.begin_nested():
            return work()
    except (OperationalError, InterfaceError):
        raise  # the database itself is unreachable: nothing could be recorded
    except Exception as exc:
        return on_error(exc)


def _guarded(ctx, folder, fetched, work) -> Outcome:
    def failed(exc: Exception) -> Outcome:
        detail = safe_detail(exc)
        log.error("mailbox %s: message %s in %r could not be processed (%s)",
                  ctx.mailbox.id, fetched.ref, folder.name, detail)
        return quarantine(ctx, folder, fetched, "internal",
                          "Regarding could not process this message because of an internal "
                          f"error ({detail}). It is kept here and can be retried.")
    return in_savepoint(lambda: work(ctx, folder, fetched), failed)


def safe_detail(exc: BaseException) -> str:
    """An error's kind and short text, never the SQL parameters (they hold message content)."""
    if isinstance(exc, StatementError) and exc.orig is not None:
        text = str(exc.orig).splitlines()[0] if str(exc.orig) else ""
        return f"{type(exc.orig).__name__}: {text[:200]}" if text else type(exc.orig).__name__
    if isinstance(exc, ServiceError):
        return f"{type(exc).__name__}: {exc.message[:200]}"
    return type(exc).__name__


_safe_detail = safe_detail  # the name the worker and push modules import


def _process(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage) -> Outcome:
    try:
        msg = parse(fetched.raw)
    except MessageError as exc:
        return quarantine(ctx, folder, fetched, exc.code, exc.reason)
    return handle(ctx, folder, fetched, msg)


def participant_addresses(msg: MailMessage) -> list[str]:
    """The addresses resolved for a message's decision: its participants (the Sender when
    there is no From)."""
    addresses = [a.address for a in msg.participants]
    if msg.sender and msg.sender.address not in addresses and not msg.from_:
        addresses.append(msg.sender.address)
    return addresses


def _resolved(ctx: MailboxRun, msg: MailMessage) -> dict[str, list[Match]]:
    addresses = participant_addresses(msg)
    return resolve(addresses, user_id=ctx.owner_user_id, org=ctx.org) if addresses else {}


def handle(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
           msg: MailMessage) -> Outcome:
    """Decide about a parsed message and track it when the rules say so."""
    identity = identity_of(msg)
    token = corr.find_token(msg.subject, ctx.org.tracking_token_prefix)
    existing = tracked_by_message_id({identity}).get(identity)
    requests = _requests(ctx, identity, token)
    # A tracked email needs no parent, unless this mailbox may get its own copy of it.
    correlation = correlate(ctx, msg) if existing is None or ctx.org.track_between_users_as_two \
        else None
    matches = _resolved(ctx, msg)
    dctx = decision_context(ctx, folder, fetched, matches, correlation, existing, requests)
    decision = decide(msg, dctx, CHAIN)
    method = correlation.method if correlation else None
    hits = decision.rule_hits()
    if not decision.track:
        _record(ctx, folder, fetched, msg, identity, tracked=False, reason=decision.reason,
                hits=hits, method=method, rule=decision.rule)
        return Outcome("skipped", decision.reason, identity, rule=decision.rule,
                       correlation_method=method)
    return _track(ctx, folder, fetched, msg, identity, dctx, decision, correlation,
                  requests.pending, matches, existing)


def decision_context(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
                     matches: dict[str, list[Match]], correlation: Correlation | None,
                     existing: Email | None, requests: Requests) -> SyncDecisionContext:
    """What the rules know about one message: ``matches`` are its participants resolved."""
    categories = {k.casefold() for k in fetched.keywords}
    return SyncDecisionContext(
        owner_kind=ctx.owner_kind, owner_addresses=ctx.owner_addresses,
        direction=Direction.OUTGOING if folder.role is FolderRole.SENT else None,
        folder=folder.for_decision(), tracking_option=_option(ctx.mailbox.tracking_option),
        track_sent_items=ctx.org.track_sent_items, process_after=ctx.process_after,
        received_at=_aware(fetched.arrived_on), blocklist=ctx.blocklist,
        record_addresses=frozenset(a for a, found in matches.items()
                                   if any(m.record_type in RECORD_KINDS for m in found)),
        email_enabled_addresses=frozenset(a for a, found in matches.items() if found),
        is_correlated=correlation is not None,
        has_tracked_category=TRACKED_CATEGORY.casefold() in categories,
        already_tracked=existing is not None, org_addresses=ctx.org_addresses,
        untracked=requests.untracked, pending_request=requests.pending is not None)


def _option(value: str) -> TrackingOption:
    try:
        return TrackingOption(value)
    except ValueError:
        return TrackingOption.CRM_RESPONSES


def regarding_of(ctx: MailboxRun, folder: FolderInfo, correlation: Correlation | None,
               pending: TrackRequest | None) -> tuple[tuple[str, int] | None, bool, str]:
    """(regarding, whether it wins over the email's current one, where it came from)."""
    if folder.role is FolderRole.TRACKED and folder.regarding:
        return folder.regarding, True, "folder"
    if pending is not None and pending.regarding_ref:
        return pending.regarding_ref, False, "request"
    if correlation is not None and correlation.regarding:
        return correlation.regarding, False, "conversation"
    return None, False, ""


def checked_regarding(ctx: MailboxRun, regarding) -> tuple[tuple[str, int] | None, str]:
    """The regarding when the tracking user may link to it; else None and why not."""
    if regarding is None:
        return None, ""
    try:
        return tracking.check_regarding(ctx.actor, regarding), ""
    except (Forbidden, NotFound, Invalid) as exc:
        return None, (f" It could not be set regarding that {regarding[0]} "
                      f"({exc.message.rstrip('.')}).")


def _track(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage, msg: MailMessage,
           identity: str, dctx: SyncDecisionContext, decision, correlation: Correlation | None,
           pending: TrackRequest | None, matches: dict[str, list[Match]],
           existing: Email | None) -> Outcome:
    method = correlation.method if correlation else None
    hits = decision.rule_hits()
    if ctx.actor is None:
        reason = f"{decision.reason} But it could not be tracked: {ctx.actor_problem}"
        _record(ctx, folder, fetched, msg, identity, tracked=False, reason=reason, hits=hits,
                method=method, rule=decision.rule)
        return Outcome("skipped", reason, identity, rule=decision.rule, correlation_method=method)
    regarding, wins, source = regarding_of(ctx, folder, correlation, pending)
    regarding, regarding_note = checked_regarding(ctx, regarding)
    if ctx.mailbox.auto_create_contacts:
        auto_create_contacts(ctx, msg, dctx, matches)
    direction = dctx.direction_of(msg)
    before = existing.regarding_ref if existing is not None else None
    try:
        email, created = tracking.track_email(
            ctx.actor, to_content(ctx, msg, fetched, direction), regarding=regarding,
            owner=ctx.owner, direction=direction.value, mailbox_id=ctx.mailbox.id,
            correlation_method=method,
            parent_activity_id=correlation.parent_id if correlation else None,
            regarding_wins=wins)
    except (Forbidden, Invalid, NotFound) as exc:
        reason = f"{decision.reason} But it could not be tracked: {exc.message}"
        _record(ctx, folder, fetched, msg, identity, tracked=False, reason=reason, hits=hits,
                method=method, rule=decision.rule)
        return Outcome("skipped", reason, identity, rule=decision.rule, correlation_method=method)
    if ctx.queue is not None:
        _queue_it(ctx, email)
    reason = tracked_reason(decision, folder, regarding, wins, before, email, created,
                            source) + regarding_note
    relinked = before != email.regarding_ref
    _, was_tracked = _record(ctx, folder, fetched, msg, identity, tracked=True, reason=reason,
                             hits=hits, method=method if created else email.correlation_method,
                             rule=decision.rule, activity_id=email.id, fresh=created or relinked)
    if TRACKED_CATEGORY.casefold() not in {k.casefold() for k in fetched.keywords}:
        if ctx.connector is not None and folder.folder.key and fetched.ref:
            ctx.keyword_queue.append((folder.folder, fetched.ref))
    return Outcome("tracked", reason, identity, activity_id=email.id, created=created,
                   new=created or relinked or not was_tracked, rule=decision.rule,
                   correlation_method=method)


def tracked_reason(decision, folder: FolderInfo, regarding: tuple[str, int] | None, wins: bool,
                   before: tuple[str, int] | None, email: Email, created: bool,
                   source: str) -> str:
    """Why a tracked email is tracked, with where its regarding came from."""
    reason = decision.reason
    if decision.rule == "already-tracked" and regarding and wins and before != email.regarding_ref:
        reason = (f'This email is already tracked. It is in the tracked folder "{folder.name}", '
                  f"so it is now set regarding the {regarding[0]} that folder is linked to.")
    elif created and regarding and source == "conversation":
        reason += f" It is set regarding the same {regarding[0]} as the conversation."
    elif created and regarding and source == "request":
        reason += f" It is set regarding the {regarding[0]} you chose."
    return reason


def _queue_it(ctx: MailboxRun, email: Email) -> None:
    """A queue's mailbox tracked this email: the queue is a party and the email waits in
    the queue as a queue item (once)."""
    queue = ctx.queue
    if not any(p.queue_id == queue.id for p in email.parties):
        party = ActivityParty(role="bcc", address=normalize(queue.email or ctx.mailbox.email_address),
                              name=queue.name[:200])
        party.set_party("queue", queue.id)
        email.parties.append(party)
    exists = db.session.scalar(select(QueueItem.id).where(
        QueueItem.queue_id == queue.id, QueueItem.activity_id == email.id))
    if exists is None:
        db.session.add(QueueItem(queue_id=queue.id, activity_id=email.id))
    db.session.flush()


# --------------------------------------------------------------------------- contacts

_NAME_SPLIT = re.compile(r"[._\-+]+")


def split_name(display: str | None, address: str) -> tuple[str | None, str]:
    """(first name, last name) for a new contact: "Last, First", "First Middle Last", or
    from the address ("ann.lee@..." -> Ann, Lee) when the display name is missing."""
    name = re.sub(r"\s+", " ", (display or "").strip().strip("\"'")).strip()
    if name and normalize(name) is None and "@" not in name:
        if "," in name:
            last, _, first = name.partition(",")
            if first.strip() and last.strip():
                return first.strip()[:100], last.strip()[:100]
        parts = name.split(" ")
        if len(parts) == 1:
            return None, parts[0][:100]
        return " ".join(parts[:-1])[:100], parts[-1][:100]
    local = address.partition("@")[0]
    parts = [p for p in _NAME_SPLIT.split(local) if p]
    if len(parts) >= 2 and all(p.isalpha() for p in parts):
        return parts[0].capitalize()[:100], " ".join(p.capitalize() for p in parts[1:])[:100]
    return None, (local or address)[:100]


def auto_create_contacts(ctx: MailboxRun, msg: MailMessage, dctx: SyncDecisionContext,
                          matches: dict[str, list[Match]]) -> None:
    """Unknown people on the other side of a tracked email become contacts, owned by the
    mailbox's owner (as "Automatically create records" does in Dynamics)."""
    for address in dctx.counterparts(msg):
        if matches.get(address.address) or address.address in ctx.owner_addresses \
                or address.address in ctx.org_addresses:
            continue
        first, last = split_name(clean(address.name), address.address)
        data = {"last_name": last, "email1": address.address}
        if first:
            data["first_name"] = first
        try:
            records.create(ctx.actor, RECORD_TYPES["contact"], data, owner=ctx.owner)
        except (Forbidden, Invalid):
            continue  # the owner may not create contacts: the bare address stays a party
        matches[address.address] = [Match("contact", 0, last, None, True)]


# --------------------------------------------------------------------------- the log

def _record(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
            msg: MailMessage | None, identity: str, *, tracked: bool, reason: str,
            hits: list, method: str | None, rule: str | None, activity_id: int | None = None,
            fresh: bool = True, mailbox_id: int | None = None) -> tuple[MessageDecision, bool]:
    """Upsert the decision for (mailbox, identity): the answer to "why (not) tracked?".
    Returns the row and whether it said "tracked" before."""
    mailbox_id = mailbox_id or ctx.mailbox.id
    row = db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == mailbox_id, MessageDecision.identity == identity))
    row, was_tracked = decision_row(ctx, folder, fetched, msg, identity, row, tracked=tracked,
                                    reason=reason, hits=hits, method=method, rule=rule,
                                    activity_id=activity_id, fresh=fresh, mailbox_id=mailbox_id)
    db.session.flush()
    return row, was_tracked


def decision_row(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
                 msg: MailMessage | None, identity: str, row: MessageDecision | None, *,
                 tracked: bool, reason: str, hits: list, method: str | None, rule: str | None,
                 activity_id: int | None = None, fresh: bool = True,
                 mailbox_id: int | None = None,
                 new_rows: list[dict] | None = None) -> tuple[MessageDecision | None, bool]:
    """Fill the decision row for (mailbox, identity) (``row``: the stored one, or None for a
    new one), without flushing. A new row is added to the session, or given as its column
    values to ``new_rows`` for the caller to insert in bulk (``insert_decisions``; None is
    returned for it then). Returns the row and whether it said "tracked" before."""
    mailbox_id = mailbox_id or ctx.mailbox.id
    now = utcnow()
    was_tracked = bool(row is not None and row.tracked)
    if row is not None and row.tracked and tracked and rule == "already-tracked" and not fresh:
        # Seen again (another folder, a resync): keep the reason it was tracked for.
        row.activity_id = row.activity_id or activity_id
        row.processed_on = now
        return row, was_tracked
    values = dict(folder_name=clean(folder.name)[:500] if folder.name else None,
                  tracked=tracked, reason=reason, rule_hits=hits, correlation_method=method,
                  activity_id=activity_id, processed_on=now)
    if msg is not None:
        sender = msg.from_ or msg.sender
        values.update(subject=(clean(msg.subject) or "")[:400] or None,
                      from_address=sender.address[:320] if sender else None,
                      received_on=_aware(fetched.arrived_on or msg.date))
    if tracked and fresh:
        values["latency_ms"] = latency_ms(ctx, folder, fetched, now)
    elif not tracked:
        values["latency_ms"] = None
    if row is None and new_rows is not None:
        new_rows.append({**_NEW_DECISION, **values, "mailbox_id": mailbox_id,
                         "identity": identity})
        return None, was_tracked
    if row is None:
        row = MessageDecision(mailbox_id=mailbox_id, identity=identity, rule_hits=[],
                              latency_ms=None)
        db.session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    return row, was_tracked


# A new decision row's columns besides those ``decision_row`` fills.
_NEW_DECISION = {c.key: None for c in MessageDecision.__table__.columns if c.key != "id"}


def insert_decisions(rows: list[dict]) -> None:
    """New decision rows (column values) in one multi-row INSERT (they need no ids back)."""
    if rows:
        db.session.connection().execute(insert(MessageDecision.__table__), rows)


def latency_ms(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
               now: datetime) -> int | None:
    """Milliseconds from when the message became visible to the sync to now (see
    ``MessageDecision``): the later of its arrival and the previous visit of its folder;
    None for a folder's first visit (an initial sync measures a backlog, not latency)."""
    arrived = _aware(fetched.arrived_on)
    if arrived is None:
        return None
    visible = arrived
    if folder.key in ctx.folder_visits:
        previous = _aware(ctx.folder_visits[folder.key])
        if previous is None:
            return None
        visible = max(arrived, previous)
    latency = max(0, int((now - visible).total_seconds() * 1000))
    # Mail that waited longer than the column holds says nothing useful about latency.
    return latency if latency <= MAX_LATENCY_MS else None


def quarantine(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage, code: str,
               reason: str) -> Outcome:
    """Keep a message the engine could not process, whole, with the error (once: the same
    message quarantined again updates its row), and log why it was not tracked."""
    raw = bytes(fetched.raw or b"")
    folder_name = clean(folder.name)[:500] if folder.name else None
    row = db.session.scalar(select(QuarantinedMessage).where(
        QuarantinedMessage.mailbox_id == ctx.mailbox.id, QuarantinedMessage.resolved.is_(False),
        QuarantinedMessage.source_ref == (fetched.ref or "")[:500],
        QuarantinedMessage.folder_name == folder_name if folder_name is not None
        else QuarantinedMessage.folder_name.is_(None),
        QuarantinedMessage.size == len(raw)).order_by(QuarantinedMessage.id).limit(1))
    if row is None:
        row = QuarantinedMessage(mailbox_id=ctx.mailbox.id, folder_name=folder_name,
                                 source_ref=(fetched.ref or "")[:500], raw=raw, size=len(raw))
        db.session.add(row)
    row.error_code, row.reason = code[:40], reason
    msg = None
    try:
        msg = parse(raw)
        identity = identity_of(msg)
    except Exception:  # unreadable: identify the bytes themselves
        identity = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    db.session.flush()
    _record(ctx, folder, fetched, msg, identity, tracked=False,
            reason=f"This message could not be processed, so it was quarantined: {reason}",
            hits=[{"rule": "quarantine", "matched": True}], method=None, rule="quarantine")
    return Outcome("quarantined", reason, identity, quarantine_id=row.id, rule="quarantine")


def write_keywords(ctx: MailboxRun) -> int:
    """Write the "Tracked to Regarding" category back to the messages tracked since the
    last call (after their batch is committed): one request per folder where the connector
    takes many messages at once (``set_keywords``: an IMAP UID STORE, Graph ``$batch``, one
    EWS UpdateItem, Maildir renames), else one per message.
    A failure only costs the category."""
    queued, ctx.keyword_queue = ctx.keyword_queue, []
    connector = ctx.connector
    if connector is None or not getattr(connector, "supports_keywords", True) \
            or not hasattr(connector, "set_keyword"):
        return 0
    by_folder: dict[str, tuple[Folder, list[str]]] = {}
    for folder, ref in queued:
        by_folder.setdefault(folder.key, (folder, []))[1].append(ref)
    many = getattr(connector, "set_keywords", None)
    written = 0
    for folder, refs in by_folder.values():
        groups = [refs] if many is not None else [[ref] for ref in refs]
        for group in groups:
            try:
                if many is not None:
                    many(folder, group, TRACKED_CATEGORY)
                else:
                    connector.set_keyword(folder, group[0], TRACKED_CATEGORY)
                written += len(group)
            except ConnectorError as exc:
                log.warning("mailbox %s: the tracked category could not be set on %d message(s) "
                            "in %r (%s)", ctx.mailbox.id, len(group), folder.name, exc.code)
                if exc.severity != "message":
                    return written  # the connection is gone: the next fetch reports it
            except NotImplementedError:
                return written
    return written


# --------------------------------------------------------------------------- forwards

_FORWARD_MARKER = re.compile(
    r"^[ \t>]*(?:-{2,}[ \t]*(?:Forwarded message|Original Message|Weitergeleitete Nachricht|"
    r"Urspr(?:ü|ue)ngliche Nachricht|Message transf(?:é|e)r(?:é|e)|Message d'origine|"
    r"Mensaje (?:original|reenviado))[ \t]*-{2,}|Begin forwarded message:|_{10,})[ \t]*$",
    re.IGNORECASE | re.MULTILINE)
_FIELD_NAMES = {
    "from": "From", "von": "From", "de": "From",
    "sent": "Date", "date": "Date", "gesendet": "Date", "datum": "Date", "envoyé": "Date",
    "to": "To", "an": "To", "à": "To", "para": "To",
    "cc": "Cc", "subject": "Subject", "betreff": "Subject", "objet": "Subject",
    "asunto": "Subject",
}
_FIELD_LINE = re.compile(r"^[ \t>]*\*?([A-Za-zÀ-ÿ]+)\*?[ \t]*:[ \t]*(.*)$")
_MAILTO = re.compile(r"\[mailto:([^\]\s]+)\]", re.IGNORECASE)
_DATE_FORMATS = ("%a, %b %d, %Y %I:%M %p", "%A, %B %d, %Y %I:%M %p", "%A, %B %d, %Y %I:%M:%S %p",
                 "%a, %d %b %Y %H:%M", "%d %B %Y %H:%M", "%Y-%m-%d %H:%M", "%m/%d/%Y %I:%M %p",
                 "%B %d, %Y at %I:%M:%S %p", "%B %d, %Y at %I:%M %p")


def _forward_date(value: str) -> datetime | None:
    value = value.strip()
    try:
        parsed = parsedate_to_datetime(value)
        if parsed is not None:
            return _aware(parsed)
    except (TypeError, ValueError, IndexError):
        pass
    compact = re.sub(r"\s+", " ", value.replace(" at ", " ")).strip()
    compact = re.sub(r"\s*\([^)]*\)\s*$", "", compact)  # "(UTC)" and similar
    for fmt in _DATE_FORMATS:
        for text in (compact, value):
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
            except ValueError:
                continue
    return None


def _header_value(value: str) -> str:
    value = _MAILTO.sub(r"<\1>", value)
    value = re.sub(r"<mailto:([^>\s]+)>", r"<\1>", value, flags=re.IGNORECASE)
    return re.sub(r"[\r\n]+", " ", value).strip()


def inline_original(text: str) -> bytes | None:
    """The email quoted under the first forward marker of ``text``, rebuilt as RFC 5322
    bytes from its From/Sent/To/Cc/Subject lines and the text below them; None if there is
    no such block (at least a From line is needed)."""
    for marker in _FORWARD_MARKER.finditer(text):
        lines = text[marker.end():].splitlines()
        fields: dict[str, str] = {}
        last = None
        index = 0
        while index < len(lines) and not lines[index].strip():
            index += 1
        while index < len(lines):
            line = lines[index]
            if not line.strip():
                break
            match = _FIELD_LINE.match(line)
            name = _FIELD_NAMES.get(match.group(1).casefold()) if match else None
            if name:
                fields.setdefault(name, match.group(2).strip())
                last = name
            elif last and line[:1] in (" ", "\t"):
                fields[last] += " " + line.strip()
            else:
                break
            index += 1
        if "From" not in fields:
            continue
        body = "\n".join(line.removeprefix("> ") if line.startswith("> ") else line
                         for line in lines[index:]).strip("\n")
        head = [f"From: {_header_value(fields['From'])}"]
        for name in ("To", "Cc"):
            if fields.get(name):
                head.append(f"{name}: {_header_value(fields[name]).replace(';', ',')}")
        head.append(f"Subject: {_header_value(fields.get('Subject', ''))}")
        when = _forward_date(fields.get("Date", ""))
        if when is not None:
            head.append(f"Date: {format_datetime(when)}")
        head += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: 8bit"]
        return ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode(
            "utf-8", "surrogatepass")
    return None


def extract_original(msg: MailMessage) -> bytes | None:
    """The forwarded email: an attached message/rfc822 part, else an inline forward block."""
    for attachment in msg.attachments:
        if attachment.content_type in ("message/rfc822", "message/global") and attachment.content:
            return attachment.content
    text = msg.text_body or (html_to_text(msg.html_body) if msg.html_body else "")
    return inline_original(unicodedata.normalize("NFC", text)) if text else None


def _forwarding_mailbox(address: str) -> tuple[User, Mailbox] | None:
    """The active user with this address whose mailbox's incoming method is the forward
    mailbox, with that mailbox."""
    user = db.session.scalar(select(User).where(func.lower(User.email) == address.lower()))
    if user is None or not user.is_active:
        return None
    mailbox = db.session.scalar(select(Mailbox).where(
        Mailbox.user_id == user.id, Mailbox.incoming_method == "forward_mailbox")
        .order_by(Mailbox.id).limit(1))
    return (user, mailbox) if mailbox is not None else None


def _process_forward(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage) -> Outcome:
    try:
        msg = parse(fetched.raw)
    except MessageError as exc:
        return quarantine(ctx, folder, fetched, exc.code, exc.reason)
    identity = identity_of(msg)
    sender = msg.from_ or msg.sender

    def skip(reason: str, rule: str) -> Outcome:
        _record(ctx, folder, fetched, msg, identity, tracked=False, reason=reason,
                hits=[{"rule": rule, "matched": True}], method=None, rule=rule)
        return Outcome("skipped", reason, identity, rule=rule)

    if msg.is_delivery_report:
        return skip("This is a delivery report, not a forwarded email, so it is ignored.",
                    "delivery-report")
    found = _forwarding_mailbox(sender.address) if sender else None
    if found is None:
        who = sender.address if sender else "an unknown sender"
        return skip(f"This forward came from {who}, who is not a Regarding user whose mailbox "
                    "uses the forward mailbox, so it is ignored.", "forward-unknown-user")
    user, user_mailbox = found
    original_raw = extract_original(msg)
    if original_raw is None:
        return skip(f"{user.full_name} sent this message to the forward mailbox, but no "
                    "forwarded email was found in it (forward it as an attachment or with "
                    "the original's From/Sent/To/Subject lines).", "forward-no-original")
    try:
        original = parse(original_raw)
    except MessageError as exc:
        return quarantine(ctx, folder, fetched, exc.code,
                          f"The email {user.full_name} forwarded could not be read: {exc.reason}")
    user_ctx = ctx.forward_runs.get(user_mailbox.id)
    if user_ctx is None:
        user_ctx = MailboxRun.load(user_mailbox, org_addresses=ctx.org_addresses,
                                   blocklist=ctx.blocklist)
        ctx.forward_runs[user_mailbox.id] = user_ctx
    inner_folder = FolderInfo(Folder(key=f"forward:{ctx.mailbox.id}",
                                     name=f"Forwarded to {ctx.mailbox.email_address}",
                                     role="inbox"), FolderRole.INBOX)
    inner = FetchedMessage(ref=fetched.ref, raw=original_raw, keywords=(),
                           arrived_on=fetched.arrived_on)
    outcome = handle(user_ctx, inner_folder, inner, original)
    reason = f"Forwarded by {user.full_name} ({user.email}): {outcome.reason}"
    _record(ctx, folder, fetched, msg, identity, tracked=outcome.tracked, reason=reason,
            hits=[{"rule": "forward", "matched": True}], method=outcome.correlation_method,
            rule="forward", activity_id=outcome.activity_id)
    return Outcome(outcome.status, reason, outcome.identity, activity_id=outcome.activity_id,
                   created=outcome.created, new=outcome.new, rule=outcome.rule,
                   correlation_method=outcome.correlation_method)
