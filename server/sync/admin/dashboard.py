"""The sync dashboard's figures (``view_sync_dashboard``): the mailboxes' overview, the last
hours hour by hour (email tracked, latency, failures), open alerts and recent runs, each
limited to the mailboxes one may read.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, or_, select

from server.db import db, utcnow
from server.security import authz
from server.security.authz import Principal
from server.sync.admin.mailboxes import readable_mailboxes
from server.sync.models import Alert, Mailbox, MessageDecision, QuarantinedMessage, SyncRun


@dataclass
class Overview:
    mailboxes: int = 0
    enabled: int = 0
    failing: int = 0
    due: int = 0
    running: int = 0
    open_alerts: int = 0
    quarantined: int = 0


def overview(p: Principal) -> Overview:
    authz.require_named(p, "view_sync_dashboard")
    now = utcnow()
    readable = authz.scope(p, Mailbox, "read")
    row = db.session.execute(select(
        func.count(),
        func.count().filter(Mailbox.enabled.is_(True)),
        func.count().filter(Mailbox.enabled.is_(True), or_(Mailbox.incoming_status == "failure",
                                                           Mailbox.outgoing_status == "failure")),
        func.count().filter(Mailbox.enabled.is_(True), or_(
            Mailbox.next_sync_on.is_(None), Mailbox.next_sync_on <= now,
            Mailbox.sync_requested.is_(True))),
        func.count().filter(Mailbox.lease_owner.is_not(None), Mailbox.lease_expires_on > now),
    ).where(readable)).one()
    out = Overview(*row)
    out.quarantined = db.session.scalar(select(func.count()).select_from(QuarantinedMessage).where(
        QuarantinedMessage.resolved.is_(False),
        QuarantinedMessage.mailbox_id.in_(readable_mailboxes(p))))
    return out


def hourly(p: Principal, hours: int = 48, now: datetime | None = None) -> dict:
    """The organization's last ``hours`` hours, hour by hour: email tracked, sync latency
    (arrival in the folder to tracked: p50 and p95, from the decision log) and failed runs
    plus quarantined messages."""
    authz.require_named(p, "view_sync_dashboard")
    now = (now or utcnow()).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = now - timedelta(hours=hours)
    slots = [start + timedelta(hours=i) for i in range(hours)]
    index = {slot: i for i, slot in enumerate(slots)}

    def bucket(moment: datetime) -> int | None:
        return index.get(moment.astimezone(timezone.utc).replace(minute=0, second=0,
                                                                 microsecond=0))

    tracked = [0] * hours
    latencies: list[list[int]] = [[] for _ in range(hours)]
    for moment, latency in db.session.execute(
            select(MessageDecision.processed_on, MessageDecision.latency_ms)
            .where(MessageDecision.tracked.is_(True), MessageDecision.processed_on >= start)):
        i = bucket(moment)
        if i is None:
            continue
        tracked[i] += 1
        if latency is not None and latency >= 0:
            latencies[i].append(latency)
    failures = [0] * hours
    for (moment,) in db.session.execute(
            select(SyncRun.started_on).where(SyncRun.started_on >= start,
                                             SyncRun.error_code.is_not(None),
                                             SyncRun.error_code.not_in(("interrupted",
                                                                        "abandoned")))):
        if (i := bucket(moment)) is not None:
            failures[i] += 1
    for (moment,) in db.session.execute(
            select(QuarantinedMessage.created_on).where(QuarantinedMessage.created_on >= start)):
        if (i := bucket(moment)) is not None:
            failures[i] += 1
    return {"hours": slots, "tracked": tracked, "failures": failures,
            "p50": [_percentile(v, 50) for v in latencies],
            "p95": [_percentile(v, 95) for v in latencies]}


def _percentile(values: list[int], pct: int) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[rank]


def alerts_for(p: Principal, limit: int = 50) -> list[Alert]:
    from server.sync.engine import alerts
    return alerts.open_alerts(p, limit=limit)


def acknowledge(p: Principal, alert_id: int) -> Alert:
    from server.sync.engine import alerts
    return alerts.acknowledge(p, alert_id)


def recent_runs(p: Principal, limit: int = 20) -> list[tuple[SyncRun, Mailbox]]:
    rows = db.session.execute(
        select(SyncRun, Mailbox).join(Mailbox, Mailbox.id == SyncRun.mailbox_id)
        .where(SyncRun.mailbox_id.in_(readable_mailboxes(p)))
        .order_by(SyncRun.started_on.desc(), SyncRun.id.desc()).limit(limit)).all()
    return [(r, m) for r, m in rows]
