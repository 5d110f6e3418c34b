"""What is tracked: users' track requests and the one answer to "is this item tracked?".

An email is known by its normalized Message-ID (``server.mailkeys``), a meeting by its UID,
a draft by the tracking token in its subject. ``tracking_status`` answers for the add-in's
pane and its API, in one statement; ``server.crm.services.tracking`` (which tracks) builds
on this.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (ForeignKey, Index, Integer, String, Text, UniqueConstraint, bindparam,
                        case, cast, literal, null, or_, select, union_all)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.crm.activities import REGARDING_COLUMNS, Activity, Appointment, Email, Regarding, \
    one_regarding_check
from server.db import cached_statement, db, in_values, select_rows, set_rows_index, utcnow
from server.mailkeys import normalize_message_id
from server.security import authz
from server.security.authz import Principal


class TrackRequest(Regarding, db.Model):
    """A user's wish about one item: ``pending`` (track it when it arrives), ``done``,
    ``failed`` (with a reason) or ``untracked`` (the user untracked it: sync leaves it)."""

    __tablename__ = "track_request"
    __table_args__ = (UniqueConstraint("user_id", "internet_message_id"), one_regarding_check(),
                      Index("ix_track_request_token", "tracking_token"),
                      set_rows_index("ix_track_request_activity_id", "activity_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    item_type: Mapped[str] = mapped_column(String(12), default="email")  # email appointment
    internet_message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    tracking_token: Mapped[str | None] = mapped_column(String(40))
    conversation_id: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(400))
    # A meeting's start, as the pane saw it: the item sync knows a meeting sent later by it
    # and its subject (server.sync.acts.requests).
    starts_on: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(10), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    activity_id: Mapped[int | None] = mapped_column(ForeignKey("activity.id", ondelete="SET NULL"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    completed_on: Mapped[datetime | None]

    activity = relationship("Activity")


OPEN = ("pending", "untracked")  # what a track request still asks of the items it names


@dataclass(frozen=True)
class OpenRequests:
    """The open track requests (pending or untracked, of any user) that name some Message-IDs
    or tracking tokens, in id order, read in one query (``open_requests``). Everything
    tracking asks of requests is answered from them: the sync engine reads them once for a
    wave's decisions and hands them on to ``track_emails``. The rows are the session's
    objects, so a request completed meanwhile is seen as such."""

    ids: frozenset[str]
    tokens: frozenset[str]
    rows: tuple[TrackRequest, ...] = ()

    def covers(self, ids: Iterable[str], tokens: Iterable[str]) -> bool:
        """Whether the requests naming these keys are all here."""
        return self.ids.issuperset(ids) and self.tokens.issuperset(tokens)

    def find(self, status: str, *, ids: Iterable[str] = (), tokens: Iterable[str] = (),
             user_id: int | None = None) -> list[TrackRequest]:
        """The requests with ``status`` now that name one of ``ids`` or ``tokens`` (only
        ``user_id``'s when given), in id order."""
        ids, tokens = set(ids), set(tokens)
        return [r for r in self.rows if r.status == status
                and (user_id is None or r.user_id == user_id)
                and (r.internet_message_id in ids or r.tracking_token in tokens)]


def open_requests(ids: Iterable[str | None], tokens: Iterable[str | None]) -> OpenRequests:
    """``OpenRequests`` for these Message-IDs (as stored: normalized) and tracking tokens."""
    ids, tokens = frozenset(filter(None, ids)), frozenset(filter(None, tokens))
    if not ids and not tokens:
        return OpenRequests(ids, tokens)

    def build():
        named = ([in_values(TrackRequest.internet_message_id, "ids")] if ids else []) + \
            ([in_values(TrackRequest.tracking_token, "tokens")] if tokens else [])
        return select(TrackRequest).where(or_(*named), TrackRequest.status.in_(OPEN)) \
            .order_by(TrackRequest.id)
    query = cached_statement(("open requests", bool(ids), bool(tokens)), build, prepared=True)
    rows = db.session.scalars(query, {**({"ids": list(ids)} if ids else {}),
                                      **({"tokens": list(tokens)} if tokens else {})}).all()
    return OpenRequests(ids, tokens, tuple(rows))


@dataclass(frozen=True)
class TrackingStatus:
    status: str  # not_tracked tracked pending failed
    activity_id: int | None = None
    regarding: tuple[str, int] | None = None
    reason: str | None = None
    copy_id: int | None = None  # not tracked for this user, but a copy they may read is in the CRM


NOT_TRACKED = TrackingStatus("not_tracked")


def find_email(identity: str) -> Email | None:
    """The first email tracked with this identity (normalized Message-ID or content hash)."""
    return db.session.scalar(select(Email).where(Email.message_id == identity).order_by(Email.id).limit(1))


def own_request(p: Principal, *, identity: str | None = None,
                token: str | None = None) -> TrackRequest | None:
    """The user's own track request for an item, by its identity or by its tracking token."""
    if identity:
        cond = TrackRequest.internet_message_id == normalize_message_id(identity)
    elif token:
        cond = TrackRequest.tracking_token == token
    else:
        return None
    return db.session.scalar(select(TrackRequest).where(TrackRequest.user_id == p.user_id, cond)
                             .order_by(TrackRequest.id.desc()).limit(1))


def find_tracked(p: Principal, identity: str | None, item_type: str = "email") -> Activity | None:
    """The tracked email (by Message-ID) or meeting (by UID) the user may read, or None."""
    if not identity:
        return None
    if item_type == "appointment":
        found = db.session.scalar(select(Appointment).where(Appointment.global_object_id == identity)
                                  .order_by(Appointment.id).limit(1))
    else:
        found = find_email(normalize_message_id(identity) or identity)
    return found if found is not None and authz.can(p, "read", found) else None


def _regarding(row) -> tuple[str, int] | None:
    """(kind, id) from a row's regarding columns, as ``regarding_ref`` reads them."""
    for kind, column in REGARDING_COLUMNS.items():
        if row._mapping[column] is not None:
            return kind, row._mapping[column]
    return None


def _status_select(p: Principal, item_type: str):
    """Three rows at most, one statement: the user's latest track request for the item's
    key, the user's latest request for a tracking token (a draft's), and the first activity
    with the item's key, with whether the user may read it."""
    model, key = (Appointment, Appointment.global_object_id) if item_type == "appointment" \
        else (Email, Email.message_id)

    def branch(source: str, row_model, activity_id, status, reason, message_id, readable):
        return select(literal(source).label("source"), activity_id.label("activity_id"),
                      status.label("status"), reason.label("reason"),
                      message_id.label("message_id"), readable.label("readable"),
                      *(getattr(row_model, c).label(c) for c in REGARDING_COLUMNS.values()))

    def request(source: str, condition):
        return (branch(source, TrackRequest, cast(null(), Integer), TrackRequest.status,
                       TrackRequest.reason, TrackRequest.internet_message_id, literal(False))
                .where(TrackRequest.user_id == bindparam("user_id"), condition)
                .order_by(TrackRequest.id.desc()).limit(1))

    activity = (branch("activity", model, model.id, cast(null(), String), cast(null(), Text),
                       cast(null(), String), case((authz.scope(p, model, "read"), True), else_=False))
                .where(key == bindparam("activity_key")).order_by(model.id).limit(1))
    return union_all(*(select(*b.subquery().c) for b in (
        request("request", TrackRequest.internet_message_id == bindparam("request_key")),
        request("draft", TrackRequest.tracking_token == bindparam("token")), activity)))


def tracking_status(p: Principal, identity: str | None, *, item_type: str = "email",
                    token: str | None = None) -> TrackingStatus:
    """Tracked, pending, failed or not tracked, as this user sees the item. A draft, which
    has no identity yet, is known by the tracking token in its subject; so is the sent copy
    of a draft the user asked to track, until it is tracked (by the pane, which then sends
    its content, or by sync). An Untrack of the item wins over a copy others tracked."""
    if not identity and not token:
        return NOT_TRACKED
    message_id = normalize_message_id(identity)
    activity_key = identity if item_type == "appointment" else (message_id or identity)
    query = cached_statement(("tracking status", item_type, p.scope_key),
                             lambda: _status_select(p, item_type), prepared=True)
    rows = {row.source: row for row in select_rows(query, {
        "user_id": p.user_id, "request_key": message_id if identity else None,
        "token": token, "activity_key": activity_key}).all()}
    req, draft, activity = rows.get("request"), rows.get("draft"), rows.get("activity")
    if not identity:
        req = draft
    elif req is None and draft is not None and draft.status == "pending" and draft.message_id is None:
        req = draft
    if req is not None and req.status == "untracked":
        return TrackingStatus("not_tracked", copy_id=activity.activity_id) \
            if activity is not None and activity.readable else NOT_TRACKED
    if activity is not None and activity.readable:
        return TrackingStatus("tracked", activity.activity_id, _regarding(activity))
    if req is not None and req.status in ("pending", "failed"):
        return TrackingStatus(req.status, None, _regarding(req), req.reason)
    return NOT_TRACKED
