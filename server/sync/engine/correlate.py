"""The engine's lookups for correlation and track requests, once for many messages.

``correlation_candidates`` looks up, for a wave of messages, every tracked email and pending
track request their correlation keys name (``server.sync.mail.correlation``, in Dynamics'
order: In-Reply-To/References, tracking token, conversation index, smart matching); then
``correlate`` finds each message's parent among them without further queries (smart
matching, off by default, is the one lookup made per message). ``owner_requests`` picks the
mailbox user's own track requests (untracked, pending) for a wave's messages. Both take the
track requests from the wave's one read of them (``tracked.open_requests``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import defer, selectinload

from server.crm.activities import Email
from server.crm.services.tracked import OpenRequests, TrackRequest
from server.db import cached_statement, db, in_values, utcnow
from server.sync.engine.content import identity_of
from server.sync.engine.context import MailboxRun
from server.sync.mail import correlation as corr
from server.sync.mail.decision import Regarding
from server.sync.mail.message import MailMessage

__all__ = ["Candidates", "Correlation", "Requests", "correlate", "correlation_candidates",
           "owner_requests"]

SMART_MATCH_DAYS = 60
SMART_MATCH_CANDIDATES = 50
NEWEST_CANDIDATES = 5  # tracked emails kept per tracking token or conversation
# What the decisions read of a tracked email are its keys and links, never its bodies: left
# out of these lookups, they are neither read nor sent (PostgreSQL decompressed each one,
# tens of KB a parent found; read later, they load then).
WITHOUT_BODIES = (defer(Email.html_body), defer(Email.text_body), defer(Email.description))


@dataclass(frozen=True)
class Correlation:
    method: str
    parent_id: int | None
    regarding: Regarding | None


def _tracked_by_message_id(ids: set[str] | list[str]) -> dict[str, Email]:
    """The first tracked email for each of these Message-IDs (one query)."""
    by_id: dict[str, Email] = {}
    if ids:
        query = cached_statement(("tracked by message id",), lambda: select(Email).where(
            in_values(Email.message_id, "ids")).order_by(Email.id).options(*WITHOUT_BODIES),
            prepared=True)
        for email in db.session.scalars(query, {"ids": list(set(ids))}):
            by_id.setdefault(email.message_id, email)
    return by_id


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


def correlation_candidates(ctx: MailboxRun, msgs: list[MailMessage], requests: OpenRequests,
                           also: set[str] = frozenset()) -> Candidates:
    """``Candidates`` for these messages, in at most three queries; ``requests``: the open
    track requests naming their tracking tokens; ``also``: Message-IDs to look up with their
    parents' (a batch's own, to find those tracked already)."""
    keys: dict[str, set[str]] = {}
    for msg in msgs:
        for method, key in corr.correlation_keys(msg, prefix=ctx.org.tracking_token_prefix):
            keys.setdefault(method, set()).add(key)
    found = Candidates(by_id=_tracked_by_message_id(
        keys.get(corr.IN_REPLY_TO, set()) | keys.get(corr.REFERENCES, set()) | also))
    for method, column, into in ((corr.TRACKING_TOKEN, Email.tracking_token, found.by_token),
                                 (corr.CONVERSATION_INDEX, Email.conversation_id,
                                  found.by_conversation)):
        if keys.get(method):
            for email in db.session.scalars(_newest_by(column), {"keys": list(keys[method])}):
                into.setdefault(getattr(email, column.key), []).append(email)
    for request in requests.find("pending", tokens=keys.get(corr.TRACKING_TOKEN, ())):
        found.requests.setdefault(request.tracking_token, request)
    return found


def _newest_by(column):
    """The few newest tracked emails per value of ``column`` among those bound as ``keys``
    (a long thread has many): correlate passes over a message's own copies, of which there
    are fewer. Built once per column; on PostgreSQL one statement text for any number of
    keys."""
    def build():
        newest = (Email.occurred_on.desc(), Email.id.desc())
        ranked = select(Email.id, func.row_number().over(
            partition_by=column, order_by=newest).label("rank")).where(
            in_values(column, "keys")).subquery()
        return select(Email).join(ranked, Email.id == ranked.c.id).where(
            ranked.c.rank <= NEWEST_CANDIDATES).order_by(*newest).options(*WITHOUT_BODIES)
    return cached_statement(("newest tracked by", column.key), build)


def correlate(ctx: MailboxRun, msg: MailMessage, candidates: Candidates,
              identity: str | None = None) -> Correlation | None:
    """The tracked email this one answers (first key that finds one wins), or a pending track
    request its tracking token belongs to. Copies of the email itself are no parent.
    ``candidates``: what the wave's keys name (``correlation_candidates``); ``identity``:
    the message's (``identity_of``), when the caller has it."""
    keys = corr.correlation_keys(msg, prefix=ctx.org.tracking_token_prefix,
                                 smart_matching=ctx.org.smart_matching)
    if not keys:
        return None
    identity = identity or identity_of(msg)

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
    """The mailbox user's own track requests for one email."""

    untracked: bool = False
    pending: TrackRequest | None = None


def owner_requests(ctx: MailboxRun, keys: Iterable[tuple[str, str | None]],
                   requests: OpenRequests) -> dict[tuple[str, str | None], Requests]:
    """The mailbox user's track requests for each ``(identity, tracking token)``, among the
    open ``requests`` naming them: by Message-ID, or by token when the request names no other
    Message-ID."""
    keys = set(keys)
    if ctx.owner_user_id is None or not keys:
        return {}
    rows = [r for r in requests.rows if r.user_id == ctx.owner_user_id and r.item_type == "email"]
    found = {}
    for identity, token in keys:
        mine = [r for r in rows if r.internet_message_id == identity or (
            token and r.tracking_token == token and r.internet_message_id in (None, identity))]
        found[identity, token] = Requests(
            untracked=any(r.status == "untracked" and r.internet_message_id == identity
                          for r in mine),
            pending=next((r for r in mine if r.status == "pending"), None))
    return found
