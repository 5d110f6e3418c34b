"""Email addresses: the index that resolution looks addresses up in.

Every email-enabled record (user, contact, account, lead, queue) mirrors its addresses into
``email_address`` whenever it is flushed, so resolving a batch of addresses is one indexed
query, never a scan of five tables. Addresses are stored as ``server.mailkeys`` normalizes
them, the rule every lookup uses.
"""
from __future__ import annotations

from sqlalchemy import Index, Integer, String, delete, event, insert, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db import db
from server.mailkeys import normalize_address


class EmailAddress(db.Model):
    __tablename__ = "email_address"
    __table_args__ = (Index("ix_email_address_record", "record_type", "record_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    record_type: Mapped[str] = mapped_column(String(10))
    record_id: Mapped[int] = mapped_column(Integer)


def record_addresses(record) -> list[str]:
    """The normalized addresses a record answers to (users have one, queues one)."""
    raw = record.emails if hasattr(record, "emails") else [getattr(record, "email", None)]
    seen: list[str] = []
    for value in raw:
        n = normalize_address(value)
        if n and n not in seen:
            seen.append(n)
    return seen


def _kind(record) -> str | None:
    return INDEXED.get(getattr(type(record), "__tablename__", None))


# Indexed tables (by table name, which is also the record type) and their address columns.
INDEXED = {"user": "user", "contact": "contact", "account": "account", "lead": "lead",
           "queue": "queue"}
_EMAIL_COLUMNS = {"user": ("email",), "queue": ("email",)}
_DEFAULT_EMAIL_COLUMNS = ("email1", "email2", "email3")


def _addresses_changed(record, kind: str) -> bool:
    state = inspect(record)
    return any(state.attrs[name].history.has_changes()
               for name in _EMAIL_COLUMNS.get(kind, _DEFAULT_EMAIL_COLUMNS))


@event.listens_for(Session, "after_flush")
def _mirror_addresses(session: Session, flush_context) -> None:
    """Keep ``email_address`` in step with the records flushed in this transaction (new and
    deleted records, and changed records whose addresses changed)."""
    changed = [(o, False) for o in session.new]
    changed += [(o, False) for o in session.dirty if _kind(o) and _addresses_changed(o, _kind(o))]
    changed += [(o, True) for o in session.deleted]
    rows, stale = [], []
    for record, deleted in changed:
        kind = _kind(record)
        if kind is None or record.id is None:
            continue
        stale.append((kind, record.id))
        if not deleted:
            rows += [{"address": a, "record_type": kind, "record_id": record.id}
                     for a in record_addresses(record)]
    if not stale:
        return
    table = EmailAddress.__table__
    for kind in {k for k, _ in stale}:
        ids = [i for k, i in stale if k == kind]
        session.execute(delete(table).where(table.c.record_type == kind,
                                            table.c.record_id.in_(ids)))
    if rows:
        session.execute(insert(table), rows)
