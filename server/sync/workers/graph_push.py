"""Push for Microsoft Graph mailboxes: change-notification subscriptions on what the
engine reads (mail folders; calendars, contact folders and To Do lists), and what a
notification does.

* **Upkeep after each sync** (``after_sync``, called when a sync's Graph connector closes,
  the mail connector's and the item store's alike): every folder the run read, and every
  collection an item sync read, gets a subscription (``created,updated,deleted``) on the
  resource the connector names (``resource``: a mail folder's messages, all the mailbox's
  events, a contact folder's contacts, a To Do list's tasks) that lives as long as the
  connector asks (``lifetime``: 10,000 minutes; To Do 4,200, Graph's limit being 4,230);
  one that expires within ``RENEW_BEFORE``, or that Graph asked to reauthorize, is
  renewed; one Graph removed is made again. Syncs run at least every few minutes, so
  subscriptions are renewed long before they expire. Creating one makes Graph call our
  endpoint with a ``validationToken`` first (``server.web.graph_webhook`` echoes it).
* **Collections no longer synced**: an item subscription whose kind the mailbox no longer
  syncs with Graph (its appointments, contacts and tasks method off, its user without the
  privilege, its items synced elsewhere) is ended by the next upkeep, mail's or items';
  one on a collection an item sync did not read (deleted in Outlook) by the item sync's.
  ``unwanted`` (read by an item sync that syncs no kind, ``acts.run``) does it for a mailbox
  whose mail is not read over Graph.
* **A notification** (``handle_notifications``) is accepted only for a subscription we hold
  and only with its ``clientState`` (compared by hash, in constant time); it asks for the
  mailbox (``scheduler.ask_for_sync``: every worker, in any process, is woken at the
  commit), so a worker runs a delta sync of its folders within seconds
  (and then, as after every run, of its appointments, contacts and tasks).
  Lifecycle notifications: ``reauthorizationRequired`` marks the subscription for renewal,
  ``subscriptionRemoved`` for re-creation, ``missed`` only asks for a sync. Delta queries
  stay the source of truth: a lost notification only delays mail to the next scheduled run.
* **A run in progress** clears the flag when it ends, though it may have read the folder
  before the change: for a mailbox with a run under way, a short-lived thread flags it again
  once that run has finished (one such thread per mailbox at a time).

The endpoint is ``REGARDING_GRAPH_NOTIFICATION_URL``, else ``<REGARDING_BASE_URL>/graph/
notifications``; it must be https (plain http is accepted only while the app is testing).
Without one, Graph mailboxes are polled on the schedule.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, select, update

from server.db import db, utcnow
from server.sync.connectors.base import ConnectorError
from server.sync.connectors.graph_client import GraphSubscriptions
from server.sync.workers.graph_models import GraphSubscription
from server.sync.workers import scheduler
from server.sync.models import Mailbox

log = logging.getLogger(__name__)

RENEW_BEFORE = timedelta(hours=24)
PATH = "/graph/notifications"
MAIL = "mail"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def state_hash(client_state: str) -> str:
    return hashlib.sha256(client_state.encode()).hexdigest()


def notification_url() -> str | None:
    """Where Graph posts notifications, or None (push off)."""
    config = current_app.config
    url = config.get("REGARDING_GRAPH_NOTIFICATION_URL")
    if not url and config.get("REGARDING_BASE_URL"):
        url = config["REGARDING_BASE_URL"].rstrip("/") + PATH
    if not url:
        return None
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and current_app.testing):
        return url
    log.warning("Graph push is off: the notification URL must be https")
    return None


def watched_kind(resource: str) -> str:
    """What a subscription we made watches, by its resource: ``mail`` or one of
    ``ITEM_KINDS``."""
    path = resource.split("?", 1)[0].rstrip("/").lower()
    if path.endswith("/events"):
        return "appointment"
    if path.endswith("/contacts"):
        return "contact"
    if path.endswith("/tasks") and "/todo/" in path:
        return "task"
    return MAIL


def graph_kinds(mailbox: Mailbox) -> set[str]:
    """The item kinds this mailbox syncs with Graph now (none when its items go elsewhere,
    its appointments, contacts and tasks method is off, or its user lacks the privilege)."""
    from server.sync import connectors
    from server.sync.acts.records import kinds_synced
    profile = mailbox.items_server_profile
    try:
        store = connectors.item_store(profile.incoming_protocol) if profile else None
    except (ConnectorError, ValueError):
        return set()
    if store is None or not issubclass(store, GraphSubscriptions):
        return set()
    return set(kinds_synced(mailbox)[0])


def after_sync(mailbox_id: int, connector: GraphSubscriptions) -> None:
    """Subscriptions for what this sync read (see the module's docstring)."""
    url = notification_url()
    if not url or not connector.synced:
        return
    maintain(mailbox_id, connector, list(connector.synced), url)


def unwanted(mailbox_id: int) -> list[GraphSubscription]:
    """The mailbox's subscriptions on what it no longer syncs (with no sync under way)."""
    return _unwanted(db.session.get(Mailbox, mailbox_id), _rows(mailbox_id), read=set(),
                     keys=set())


def _rows(mailbox_id: int) -> dict[str, GraphSubscription]:
    return {s.folder_key: s for s in db.session.scalars(
        select(GraphSubscription).where(GraphSubscription.mailbox_id == mailbox_id))}


def _unwanted(mailbox: Mailbox, rows: dict[str, GraphSubscription], read: set[str],
              keys: set[str]) -> list[GraphSubscription]:
    """Item subscriptions to end: of a kind the mailbox no longer syncs with Graph, or of a
    kind this sync read (all its collections) on a collection it did not read."""
    items = [row for row in rows.values() if watched_kind(row.resource) != MAIL]
    if not items:
        return []
    kinds = graph_kinds(mailbox)
    return [row for row in items if watched_kind(row.resource) not in kinds
            or (watched_kind(row.resource) in read and row.folder_key not in keys)]


def maintain(mailbox_id: int, connector: GraphSubscriptions, folder_keys: list[str],
             url: str | None) -> None:
    """Make, renew or remake the subscriptions of ``folder_keys``; end those on collections
    no longer synced; forget expired ones. Commits."""
    now = utcnow()
    rows = _rows(mailbox_id)
    read = {watched_kind(connector.resource(key)) for key in folder_keys} - {MAIL}
    for row in _unwanted(db.session.get(Mailbox, mailbox_id), rows, read, set(folder_keys)):
        rows.pop(row.folder_key)
        _end(connector, row)
    for key in folder_keys if url else []:
        row = rows.get(key)
        try:
            if _fresh(row, now):
                continue
            if row is not None and row.status in ("active", "renew") and _renew(connector, row, now):
                continue
            if row is not None:
                _end(connector, row)
            _create(connector, mailbox_id, key, url, now)
        except ConnectorError as exc:
            log.warning("mailbox %s: a Graph subscription could not be made (%s)", mailbox_id,
                        exc.code)
            if exc.severity not in ("folder", "message"):
                break
    db.session.execute(delete(GraphSubscription).where(
        GraphSubscription.mailbox_id == mailbox_id, GraphSubscription.expires_on < now))
    db.session.commit()


def _fresh(row: GraphSubscription | None, now: datetime) -> bool:
    """An active subscription that need not be renewed yet."""
    return row is not None and row.status == "active" and _aware(row.expires_on) - now > RENEW_BEFORE


def kept_up(folder_keys: dict[int, set[str]]) -> set[int]:
    """Of these mailboxes (id -> the mail folders a sync of theirs reads), those whose
    subscriptions need no upkeep now (an idle visit, which does not keep them up, is
    enough; ``engine.idle``): push is off, or every folder has a fresh subscription and
    none on an item collection waits to be ended. One statement."""
    if not notification_url():
        return set(folder_keys)
    now, rows = utcnow(), {}
    for row in db.session.scalars(select(GraphSubscription).where(
            GraphSubscription.mailbox_id.in_(sorted(folder_keys)))):
        rows.setdefault(row.mailbox_id, {})[row.folder_key] = row
    return {mailbox_id for mailbox_id, keys in folder_keys.items()
            if all(_fresh(rows.get(mailbox_id, {}).get(key), now) for key in keys)
            and all(watched_kind(row.resource) == MAIL for row in rows.get(mailbox_id, {}).values())}


def _renew(connector: GraphSubscriptions, row: GraphSubscription, now: datetime) -> bool:
    expires = now + connector.lifetime(row.folder_key)
    try:
        connector.renew_subscription(row.subscription_id, expires)
    except ConnectorError as exc:
        if exc.severity in ("folder", "message"):  # gone at Graph: made again
            return False
        raise
    row.expires_on, row.renewed_on, row.status = expires, now, "active"
    return True


def _end(connector: GraphSubscriptions, row: GraphSubscription) -> None:
    if row.status != "removed":
        try:
            connector.delete_subscription(row.subscription_id)
        except ConnectorError:
            pass
    db.session.delete(row)
    db.session.flush()


def _create(connector: GraphSubscriptions, mailbox_id: int, key: str, url: str,
            now: datetime) -> GraphSubscription:
    client_state = secrets.token_urlsafe(32)
    lifetime = connector.lifetime(key)
    made = connector.create_subscription(key, url, client_state, now + lifetime,
                                         lifecycle_url=url)
    expires = made.get("expirationDateTime")
    try:
        expires_on = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
    except ValueError:
        expires_on = now + lifetime
    row = GraphSubscription(mailbox_id=mailbox_id, folder_key=key,
                            subscription_id=str(made["id"])[:200],
                            client_state_hash=state_hash(client_state),
                            resource=str(made.get("resource") or "")[:1000],
                            expires_on=expires_on, status="active")
    db.session.add(row)
    db.session.flush()
    return row


@dataclass
class NotificationResult:
    accepted: int = 0
    rejected: int = 0
    mailboxes: int = 0


def handle_notifications(payload: dict) -> NotificationResult:
    """Change and lifecycle notifications from Graph: flag each mailbox with a valid one for
    a sync now; the rest are counted as rejected. Commits.

    The subscriptions are read in a transaction of their own and written in another that
    begins with its first write (plain UPDATEs): on SQLite a transaction that read and then
    writes after a worker committed fails at once ("database is locked"), and a notification
    lost so would wait for the next scheduled run."""
    result = NotificationResult()
    items = [i for i in payload.get("value") or [] if isinstance(i, dict)]
    ids = {str(i.get("subscriptionId"))[:200] for i in items if i.get("subscriptionId")}
    rows = {row.subscription_id: row for row in db.session.execute(
        select(GraphSubscription.id, GraphSubscription.subscription_id,
               GraphSubscription.mailbox_id, GraphSubscription.client_state_hash)
        .where(GraphSubscription.subscription_id.in_(ids)))} if ids else {}
    db.session.rollback()  # read only: the writes below begin a transaction of their own
    flagged: set[int] = set()
    seen: set[int] = set()
    lifecycle: list[tuple[int, str]] = []
    for item in items:
        row = rows.get(str(item.get("subscriptionId"))[:200])
        given = item.get("clientState")
        if row is None or not isinstance(given, str) or \
                not hmac.compare_digest(state_hash(given), row.client_state_hash):
            result.rejected += 1
            continue
        if item.get("lifecycleEvent") in ("reauthorizationRequired", "subscriptionRemoved"):
            lifecycle.append((row.id, item["lifecycleEvent"]))
        seen.add(row.id)
        flagged.add(row.mailbox_id)
        result.accepted += 1
    if seen:
        now = utcnow()
        db.session.execute(update(GraphSubscription).where(GraphSubscription.id.in_(
            sorted(seen))).values(last_notification_on=now)
            .execution_options(synchronize_session=False))
        for row_id, event in lifecycle:
            change = update(GraphSubscription).where(GraphSubscription.id == row_id)
            if event == "reauthorizationRequired":  # renewed by the next upkeep
                change = change.where(GraphSubscription.status == "active").values(status="renew")
            else:  # made again by the next upkeep
                change = change.values(status="removed")
            db.session.execute(change.execution_options(synchronize_session=False))
    scheduler.ask_for_sync(flagged)  # every worker looks once this commits
    db.session.commit()
    result.mailboxes = len(flagged)
    if result.rejected:
        log.warning("Graph notifications: %d rejected (unknown subscription or client state)",
                    result.rejected)
    return result
