"""Quarantine and the decision log: messages that could not be processed (retried or
discarded by someone who may write their mailbox), "why was this email (not) tracked?" and
"why was this appointment, contact or task (not) synced?" for the mailboxes one may read.
Callers commit.
"""
from __future__ import annotations

from sqlalchemy import func, or_, select

from server.i18n import N_
from server.mailkeys import normalize_message_id
from server.db import db
from server.errors import Invalid, NotFound
from server.security import authz
from server.security.authz import Principal
from server.sync.admin.forms import PAGE
from server.sync.admin.mailboxes import readable_mailboxes
from server.sync.models import ItemLink, Mailbox, MessageDecision, QuarantinedMessage


def quarantined(p: Principal, limit: int = 50) -> list[tuple[QuarantinedMessage, Mailbox]]:
    rows = db.session.execute(
        select(QuarantinedMessage, Mailbox).join(Mailbox, Mailbox.id == QuarantinedMessage.mailbox_id)
        .where(QuarantinedMessage.resolved.is_(False),
               QuarantinedMessage.mailbox_id.in_(readable_mailboxes(p)))
        .order_by(QuarantinedMessage.created_on.desc(), QuarantinedMessage.id.desc())
        .limit(limit)).all()
    return [(q, m) for q, m in rows]


def retry(p: Principal, quarantine_id: int):
    from server.sync.engine.run import retry_quarantined
    _quarantined(p, quarantine_id)
    return retry_quarantined(quarantine_id, p)


def _quarantined(p: Principal, quarantine_id: int) -> QuarantinedMessage:
    row = db.session.get(QuarantinedMessage, quarantine_id)
    if row is None:
        raise NotFound()
    authz.require(p, "write", db.session.get(Mailbox, row.mailbox_id))
    if row.resolved:
        raise Invalid(N_("This message was already dealt with."))
    return row


def discard(p: Principal, quarantine_id: int) -> QuarantinedMessage:
    row = _quarantined(p, quarantine_id)
    row.resolved = True
    row.reason = f"{row.reason} Discarded by {p.user.full_name}."
    db.session.flush()
    return row


def find_decisions(p: Principal, q: str = "", mailbox_id: int | None = None,
                   limit: int = PAGE) -> list[tuple[MessageDecision, Mailbox]]:
    """"Why was this email (not) tracked?": decisions of readable mailboxes whose subject or
    sender contains ``q``, or whose Message-ID is ``q``; newest first."""
    query = (select(MessageDecision, Mailbox).join(Mailbox, Mailbox.id == MessageDecision.mailbox_id)
             .where(MessageDecision.mailbox_id.in_(readable_mailboxes(p))))
    if mailbox_id:
        query = query.where(MessageDecision.mailbox_id == mailbox_id)
    q = (q or "").strip()[:300]
    if q:
        like = f"%{q.lower()}%"
        conditions = [func.lower(MessageDecision.subject).like(like),
                      MessageDecision.from_address.like(like)]
        identity = normalize_message_id(q) if "@" in q else None
        if identity:
            conditions.append(MessageDecision.identity == identity)
        query = query.where(or_(*conditions))
    rows = db.session.execute(query.order_by(MessageDecision.processed_on.desc(),
                                             MessageDecision.id.desc()).limit(limit)).all()
    return [(d, m) for d, m in rows]


def find_items(p: Principal, q: str = "", mailbox_id: int | None = None,
               limit: int = PAGE) -> list[tuple[ItemLink, Mailbox, str]]:
    """"Why was this appointment, contact or task (not) synced?": the items of readable
    mailboxes whose UID is ``q`` or whose text contains it; newest first, with their title."""
    query = (select(ItemLink, Mailbox).join(Mailbox, Mailbox.id == ItemLink.mailbox_id)
             .where(ItemLink.mailbox_id.in_(readable_mailboxes(p))))
    if mailbox_id:
        query = query.where(ItemLink.mailbox_id == mailbox_id)
    q = (q or "").strip()[:300]
    if q:
        query = query.where(or_(ItemLink.uid == q,
                                func.lower(ItemLink.server_data).like(f"%{q.lower()}%")))
    rows = db.session.execute(query.order_by(ItemLink.synced_on.desc(), ItemLink.id.desc())
                              .limit(limit)).all()
    return [(link, box, _title(link.server_data or "")) for link, box in rows]


def _title(text: str) -> str:
    """An item's SUMMARY (iCalendar) or FN (vCard), unfolded, for the list."""
    for line in text.replace("\r\n ", "").replace("\n ", "").splitlines():
        name, _, value = line.partition(":")
        if name.split(";")[0].upper() in ("SUMMARY", "FN"):
            return value.replace("\\,", ",").replace("\\;", ";")[:200]
    return ""
