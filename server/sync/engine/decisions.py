"""The decision log: what happened to each message (``Outcome``) and its row in
``MessageDecision``, the answer to "why was this email (not) tracked?" (rule hits, reason,
activity, correlation, latency). A wave's new rows are inserted in one statement.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from server.bulk import insert_rows
from server.db import db, utcnow
from server.i18n import N_
from server.sync.connectors.base import FetchedMessage
from server.sync.engine.content import aware, clean
from server.sync.engine.context import MailboxRun
from server.sync.engine.folders import FolderInfo
from server.sync.mail.message import MailMessage
from server.sync.models import MessageDecision

__all__ = ["Outcome", "decision_row", "insert_decisions", "latency_ms", "record",
           "seen_again"]

MAX_LATENCY_MS = 2**31 - 1  # about 24 days


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


def record(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
            msg: MailMessage | None, identity: str, *, tracked: bool, reason: str,
            hits: list, method: str | None, rule: str | None, activity_id: int | None = None,
            fresh: bool = True) -> tuple[MessageDecision, bool]:
    """Upsert the decision for (mailbox, identity): the answer to "why (not) tracked?".
    Returns the row and whether it said "tracked" before."""
    row = db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == ctx.mailbox.id, MessageDecision.identity == identity))
    row, was_tracked = decision_row(ctx, folder, fetched, msg, identity, row, tracked=tracked,
                                    reason=reason, hits=hits, method=method, rule=rule,
                                    activity_id=activity_id, fresh=fresh)
    db.session.flush()
    return row, was_tracked


def decision_row(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
                 msg: MailMessage | None, identity: str, row: MessageDecision | None, *,
                 tracked: bool, reason: str, hits: list, method: str | None, rule: str | None,
                 activity_id: int | None = None, fresh: bool = True,
                 new_rows: list[dict] | None = None) -> tuple[MessageDecision | None, bool]:
    """Fill the decision row for (mailbox, identity) (``row``: the stored one, or None for a
    new one), without flushing. A new row is added to the session, or given as its column
    values to ``new_rows`` for the caller to insert in bulk (``insert_decisions``; None is
    returned for it then). Returns the row and whether it said "tracked" before."""
    now = utcnow()
    was_tracked = bool(row is not None and row.tracked)
    if row is not None and row.tracked and tracked and rule == "already-tracked" and not fresh:
        # Seen again (a copy dropped again, another folder, a resync): keep the reason it
        # was tracked for, and say so.
        row.activity_id = row.activity_id or activity_id
        row.reason = seen_again(row.reason, folder, row.activity_id, now)
        row.processed_on = now
        return row, was_tracked
    if was_tracked and tracked and not fresh:
        reason = seen_again(reason, folder, activity_id, now)
    values = dict(folder_name=clean(folder.name)[:500] if folder.name else None,
                  tracked=tracked, reason=reason, rule_hits=hits, correlation_method=method,
                  activity_id=activity_id, processed_on=now)
    if msg is not None:
        sender = msg.from_ or msg.sender
        values.update(subject=(clean(msg.subject) or "")[:400] or None,
                      from_address=sender.address[:320] if sender else None,
                      received_on=aware(fetched.arrived_on or msg.date))
    if tracked and fresh:
        values["latency_ms"] = latency_ms(ctx, folder, fetched, now)
    elif not tracked:
        values["latency_ms"] = None
    if row is None and new_rows is not None:
        new_rows.append({**_NEW_DECISION, **values, "mailbox_id": ctx.mailbox.id,
                         "identity": identity})
        return None, was_tracked
    if row is None:
        row = MessageDecision(mailbox_id=ctx.mailbox.id, identity=identity, rule_hits=[],
                              latency_ms=None)
        db.session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    return row, was_tracked


SEEN_AGAIN = " Seen again in "


def seen_again(reason: str, folder: FolderInfo, activity_id: int | None,
               now: datetime) -> str:
    """A tracked message's reason, with the last time a copy of it was met again (dropped
    into a folder again, or in another folder): not tracked twice, it is that activity.
    Only the latest such sentence is kept."""
    kept = reason.split(SEEN_AGAIN, 1)[0]
    values = {"folder": clean(folder.name or "")[:200], "when": f"{now:%Y-%m-%d %H:%M}",
              "activity": activity_id}
    said = (N_('Seen again in "%(folder)s" on %(when)s UTC: already tracked as activity '
               "%(activity)s, so not tracked again.") if activity_id else
            N_('Seen again in "%(folder)s" on %(when)s UTC: already tracked as an activity, so '
               "not tracked again.")) % values
    return f"{kept} {said}"  # stored in English: SEEN_AGAIN finds it again


# A new decision row's columns besides those ``decision_row`` fills.
_NEW_DECISION = {c.key: None for c in MessageDecision.__table__.columns if c.key != "id"}


def insert_decisions(rows: list[dict]) -> None:
    """New decision rows (column values) in one statement (they need no ids back:
    ``bulk.insert_rows``)."""
    if rows:
        insert_rows(db.session.connection(), MessageDecision.__table__, rows)


def latency_ms(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
               now: datetime) -> int | None:
    """Milliseconds from when the message became visible to the sync to now (see
    ``MessageDecision``): the later of its arrival and the previous visit of its folder;
    None for a folder's first visit (an initial sync measures a backlog, not latency)."""
    arrived = aware(fetched.arrived_on)
    if arrived is None:
        return None
    visible = arrived
    if folder.key in ctx.folder_visits:
        previous = aware(ctx.folder_visits[folder.key])
        if previous is None:
            return None
        visible = max(arrived, previous)
    latency = max(0, int((now - visible).total_seconds() * 1000))
    # Mail that waited longer than the column holds says nothing useful about latency.
    return latency if latency <= MAX_LATENCY_MS else None
