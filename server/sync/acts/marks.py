"""Where the push of a mailbox's appointments, contacts or tasks stands (``ItemPushMark``),
so that a run in which nothing changed reads next to nothing.

What a push must send depends on the records (changed, created, deleted, reassigned: each
moves the record's ``modified_on``, or takes it from its item link) and on what decides the
synchronization filter's selection besides them: the filter itself (the user's or the
organization's), everything the user's read scope depends on (``Principal.scope_key``: their
roles, teams, business unit), the records shared with them, and the store's collections.
``filter_key`` is a digest of the latter. While it is the one of the last complete push,
a push looks only at the records changed since that push began (less ``MARGIN``, for the
transactions that were still open then, and clocks a little apart); else it reads the whole
selection, as the first push does. Whatever changes which records have an item link other
than the push itself (items deleted on the server) ``forget``s the mark: the next push
reads everything."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from sqlalchemy import delete, false, or_, select

from server.db import db
from server.security import authz
from server.security.models import RecordShare
from server.sync.acts.filters import Rule
from server.sync.acts.records import MODELS
from server.sync.connectors.base import Collection
from server.sync.models import ItemPushMark

MARGIN = timedelta(minutes=5)
VERSION = 1  # of what a mark means: a new one makes every mailbox push in full once


def filter_key(p: authz.Principal, kind: str, rule: Rule,
               collections: list[Collection]) -> str:
    """A digest of what decides the filter's selection for ``p``, other than the records."""
    table = authz.table_of(MODELS[kind])
    shared = db.session.execute(
        select(RecordShare.record_id, RecordShare.can_read)
        .where(RecordShare.table_name == table,
               or_(RecordShare.user_id == p.user_id,
                   RecordShare.team_id.in_(p.team_ids) if p.team_ids else false()))
        .order_by(RecordShare.record_id, RecordShare.can_read)).all()
    what = [VERSION, kind, rule.owner, [list(c) for c in rule.conditions], repr(p.scope_key),
            [list(row) for row in shared], sorted(c.key for c in collections)]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()


def since(mailbox_id: int, kind: str, key: str) -> datetime | None:
    """From when a push may read changed records only (None: it reads everything)."""
    mark = _mark(mailbox_id, kind)
    if mark is None or mark.filter_key != key:
        return None
    return mark.pushed_from - MARGIN


def advance(mailbox_id: int, kind: str, key: str, started: datetime) -> None:
    """A push that began at ``started`` sent everything it had to: the caller commits."""
    mark = _mark(mailbox_id, kind)
    if mark is None:
        mark = ItemPushMark(mailbox_id=mailbox_id, kind=kind)
        db.session.add(mark)
    mark.filter_key, mark.pushed_from = key, started


def forget(mailbox_id: int, kind: str) -> None:
    """The next push reads everything (in the caller's transaction)."""
    db.session.execute(delete(ItemPushMark).where(ItemPushMark.mailbox_id == mailbox_id,
                                                  ItemPushMark.kind == kind)
                       .execution_options(synchronize_session="fetch"))


def _mark(mailbox_id: int, kind: str) -> ItemPushMark | None:
    return db.session.scalar(select(ItemPushMark).where(ItemPushMark.mailbox_id == mailbox_id,
                                                        ItemPushMark.kind == kind))
