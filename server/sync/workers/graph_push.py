"""Push for Microsoft Graph mailboxes: change-notification subscriptions on the folders the
engine reads, and what a notification does.

* **Upkeep after each sync** (``after_sync``, called when a sync's Graph connector closes):
  every folder the run read gets a subscription (``created,updated,deleted`` on its
  messages) that lives ``LIFETIME``; one that expires within ``RENEW_BEFORE``, or that Graph
  asked to reauthorize, is renewed; one Graph removed is made again. Syncs run at least
  every few minutes, so subscriptions are renewed long before they expire. Creating one
  makes Graph call our endpoint with a ``validationToken`` first (``server.web.
  graph_webhook`` echoes it).
* **A notification** (``handle_notifications``) is accepted only for a subscription we hold
  and only with its ``clientState`` (compared by hash, in constant time); it marks the
  mailbox ``sync_requested``, so a worker runs a delta sync of its folders within seconds.
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
from server.sync.connectors.base import ConnectorError, Subscriptions
from server.sync.workers.graph_models import GraphSubscription
from server.sync.models import Mailbox

log = logging.getLogger(__name__)

LIFETIME = timedelta(minutes=10000)  # Graph allows up to 10,080 minutes for messages
RENEW_BEFORE = timedelta(hours=24)
PATH = "/graph/notifications"



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


def after_sync(mailbox_id: int, connector: Subscriptions) -> None:
    """Subscriptions for the folders this sync read (see the module's docstring)."""
    url = notification_url()
    if not url or not connector.synced:
        return
    maintain(mailbox_id, connector, list(connector.synced), url)


def maintain(mailbox_id: int, connector: Subscriptions, folder_keys: list[str], url: str) -> None:
    now = utcnow()
    rows = {s.folder_key: s for s in db.session.scalars(
        select(GraphSubscription).where(GraphSubscription.mailbox_id == mailbox_id))}
    for key in folder_keys:
        row = rows.get(key)
        try:
            if row is not None and row.status == "active" and \
                    _aware(row.expires_on) - now > RENEW_BEFORE:
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


def _renew(connector: Subscriptions, row: GraphSubscription, now: datetime) -> bool:
    try:
        connector.renew_subscription(row.subscription_id, now + LIFETIME)
    except ConnectorError as exc:
        if exc.severity in ("folder", "message"):  # gone at Graph: made again
            return False
        raise
    row.expires_on, row.renewed_on, row.status = now + LIFETIME, now, "active"
    return True


def _end(connector: Subscriptions, row: GraphSubscription) -> None:
    if row.status != "removed":
        try:
            connector.delete_subscription(row.subscription_id)
        except ConnectorError:
            pass
    db.session.delete(row)
    db.session.flush()


def _create(connector: Subscriptions, mailbox_id: int, key: str, url: str, now: datetime) -> GraphSubscription:
    client_state = secrets.token_urlsafe(32)
    made = connector.create_subscription(key, url, client_state, now + LIFETIME,
                                         lifecycle_url=url)
    expires = made.get("expirationDateTime")
    try:
        expires_on = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
    except ValueError:
        expires_on = now + LIFETIME
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
    a sync now; the rest are counted as rejected. Commits."""
    result = NotificationResult()
    items = [i for i in payload.get("value") or [] if isinstance(i, dict)]
    ids = {str(i.get("subscriptionId"))[:200] for i in items if i.get("subscriptionId")}
    rows = {s.subscription_id: s for s in db.session.scalars(
        select(GraphSubscription).where(GraphSubscription.subscription_id.in_(ids)))} if ids else {}
    flagged: set[int] = set()
    now = utcnow()
    for item in items:
        row = rows.get(str(item.get("subscriptionId"))[:200])
        given = item.get("clientState")
        if row is None or not isinstance(given, str) or \
                not hmac.compare_digest(state_hash(given), row.client_state_hash):
            result.rejected += 1
            continue
        event = item.get("lifecycleEvent")
        if event == "reauthorizationRequired" and row.status == "active":
            row.status = "renew"
        elif event == "subscriptionRemoved":
            row.status = "removed"
        row.last_notification_on = now
        flagged.add(row.mailbox_id)
        result.accepted += 1
    _flag(flagged)
    db.session.commit()
    result.mailboxes = len(flagged)
    if result.rejected:
        log.warning("Graph notifications: %d rejected (unknown subscription or client state)",
                    result.rejected)
    return result


def _flag(mailbox_ids) -> None:
    """Due at once for the next free worker (when still enabled)."""
    if mailbox_ids:
        db.session.execute(update(Mailbox).where(
            Mailbox.id.in_(sorted(mailbox_ids)), Mailbox.enabled.is_(True),
            Mailbox.sync_requested.is_(False)).values(sync_requested=True)
            .execution_options(synchronize_session=False))


