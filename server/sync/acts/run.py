"""One sync of a mailbox's appointments, contacts and tasks with its item store.

Per kind the mailbox's user may sync (``sync_appointments``, ``sync_contacts``,
``sync_tasks``), per collection: *pull* the changes since the stored cursor (each batch in
one transaction, the cursor with the last: a crash repeats work, and a repeat finds the
items' versions already stored), map them, match them to CRM records by UID (one
appointment per meeting whoever's calendar it comes from), take in only tracked items (the
"Tracked to Regarding" category, a tracked collection, or a UID the CRM knows), merge each
field by its direction; then *push* what the CRM changed, created or deleted, and what the
synchronization filter now takes or leaves, with the version read (a conflict re-reads the
collection and merges again).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select

from server.db import db
from server.security import authz
from server.sync import connectors
from server.sync.acts import records, wake
from server.sync.acts.records import kinds_synced
from server.sync.acts.pull import ActsResult, Run, pull
from server.sync.acts.push import push
from server.sync.connectors.base import ITEM_KINDS, ConnectorError, ItemStore
from server.sync.connectors.graph_client import GraphSubscriptions
from server.sync.engine import accounts
from server.sync.items.fields import FIELDS
from server.sync.models import FieldDirection, FolderRule, Mailbox

log = logging.getLogger(__name__)


def _end_push(mailbox_id: int) -> None:
    """Nothing syncs: change notifications on the mailbox's collections are ended (Graph),
    with a Graph item store of its own (a mailbox whose mail is not read over Graph has no
    upkeep that would). Never raises: what cannot be ended expires."""
    from server.sync.workers import graph_push
    mailbox = db.session.get(Mailbox, mailbox_id)
    try:
        if not graph_push.unwanted(mailbox_id):
            return
        account = accounts.items_account(mailbox)
        with connectors.item_store(accounts.items_protocol(mailbox))(account) as store:
            if isinstance(store, GraphSubscriptions):
                graph_push.maintain(mailbox_id, store, [], graph_push.notification_url())
    except (ConnectorError, ValueError) as exc:
        db.session.rollback()
        log.warning("mailbox %s: Graph subscriptions not ended (%s)", mailbox_id,
                    getattr(exc, "code", type(exc).__name__))


def sync_items(mailbox_id: int, *, store_class: Callable[..., ItemStore] | None = None,
               limit: int = 500, kinds: tuple[str, ...] = ITEM_KINDS) -> ActsResult:
    """Sync one mailbox's appointments, contacts and tasks; the outcome is kept on the
    mailbox (``acts_status``, ``acts_message``). What it writes wakes no mailbox."""
    with wake.quiet(db.session):
        return _sync_items(mailbox_id, store_class, limit, kinds)


def _sync_items(mailbox_id: int, store_class: Callable[..., ItemStore] | None, limit: int,
                kinds: tuple[str, ...]) -> ActsResult:
    mailbox = db.session.get(Mailbox, mailbox_id)
    result = ActsResult()
    allowed, result.skipped_kinds = kinds_synced(mailbox, kinds)
    if not allowed:
        _end_push(mailbox_id)
        return _finish(mailbox, result, None)
    p = authz.principal(mailbox.user)
    try:  # a refused server or an unknown protocol is said on the mailbox too
        account = accounts.items_account(mailbox)
        opened = store_class or connectors.item_store(accounts.items_protocol(mailbox))
        with opened(account) as store:
            for kind in allowed:
                run = Run(mailbox, p, store, kind, _directions(p, kind), result,
                           _tracked_collections(mailbox))
                collections = store.collections(kind)
                for collection in collections:
                    pull(run, collection, limit)
                default = next((c for c in collections if c.default), None)
                push(run, default, collections, limit)
    except ConnectorError as exc:
        db.session.rollback()
        return _finish(db.session.get(Mailbox, mailbox_id), result, exc)
    return _finish(mailbox, result, None)


def _finish(mailbox: Mailbox, result: ActsResult, error: ConnectorError | None) -> ActsResult:
    if error is not None:
        mailbox.acts_status, mailbox.acts_message = "failure", error.message
    else:
        mailbox.acts_status = "success" if len(result.skipped_kinds) < len(ITEM_KINDS) \
            else "failure"
        mailbox.acts_message = result.summary
    db.session.commit()
    if error is not None:
        raise error
    return result


def _directions(p: authz.Principal, kind: str) -> dict:
    """The organization's field directions, narrowed by the user's field security: a field
    they may not read goes nowhere, one they may not update does not come in."""
    chosen = {(row.kind, row.field): row.direction for row in db.session.scalars(
        select(FieldDirection).where(FieldDirection.kind == kind))}
    access = p.fields(authz.table_of(records.MODELS[kind]))
    for name in FIELDS[kind]:
        if name == "parties":
            continue
        if not access.can_read(name):
            chosen[(kind, name)] = "none"
        elif not access.can_update(name) and chosen.get((kind, name), "both") in ("both",
                                                                                  "to_crm"):
            chosen[(kind, name)] = "to_server"
    return chosen


def _tracked_collections(mailbox: Mailbox) -> dict[str, FolderRule]:
    return {rule.folder_key: rule for rule in db.session.scalars(select(FolderRule).where(
        FolderRule.mailbox_id == mailbox.id, FolderRule.enabled.is_(True)))}
