"""Sync alerts: what admins and mailbox owners are told about their mailboxes.

An alert is open until it is cleared (the condition went away: a sync succeeded again) or
acknowledged by a person. Raising the same code for the same mailbox while one is open
updates that alert instead of adding another row, so a mailbox failing every five minutes
shows one alert with the latest wording, not three hundred. An open alert that turns
from a warning into an error (a mailbox failing until it is turned off) counts as raised
anew: it is shown as new and emailed again. Emailing is ``server.sync.admin.alert_mail``'s
(``Alert.emailed_on``: when it first went out). A sync run clears through
``MailboxAlerts``, which reads the mailbox's open codes once.
"""
from __future__ import annotations

from sqlalchemy import false, inspect, or_, select

from server.db import db, utcnow
from server.errors import Invalid, NotFound
from server.security.authz import Principal
from server.sync.models import Alert, Mailbox

SEVERITIES = ("error", "warning", "information")


def _open(code: str, mailbox_id: int | None, user_id: int | None):
    query = select(Alert).where(Alert.code == code, Alert.acknowledged_on.is_(None))
    query = query.where(Alert.mailbox_id == mailbox_id if mailbox_id is not None
                        else Alert.mailbox_id.is_(None))
    if mailbox_id is None:  # user-level alerts are told apart by their user
        query = query.where(Alert.user_id == user_id if user_id is not None
                            else Alert.user_id.is_(None))
    return query


def raise_alert(severity: str, code: str, message: str, mailbox: Mailbox | None = None,
                user=None) -> Alert:
    """Open an alert, or refresh the open one with the same code for the same mailbox.

    ``user`` is who it is about besides admins (defaults to the mailbox's user); the caller
    commits. Messages must not contain secrets or message bodies.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"unknown alert severity {severity!r}")
    mailbox_id = mailbox.id if mailbox is not None else None
    user_id = getattr(user, "id", user)
    if user_id is None and mailbox is not None:
        user_id = mailbox.user_id
    alert = db.session.scalar(_open(code, mailbox_id, user_id).order_by(Alert.id).limit(1))
    if alert is None:
        alert = Alert(code=code, mailbox_id=mailbox_id, user_id=user_id, created_on=utcnow())
        db.session.add(alert)
    elif SEVERITIES.index(severity) < SEVERITIES.index(alert.severity):  # more severe now
        alert.created_on, alert.emailed_on = utcnow(), None
    alert.severity, alert.message = severity, message
    if user_id is not None:
        alert.user_id = user_id
    db.session.flush()
    return alert


def clear(code: str, mailbox: Mailbox | int | None = None) -> int:
    """Close the open alerts with this code for this mailbox (the condition went away).
    Returns how many were closed."""
    mailbox_id = getattr(mailbox, "id", mailbox)
    query = select(Alert).where(Alert.code == code, Alert.acknowledged_on.is_(None))
    query = query.where(Alert.mailbox_id == mailbox_id if mailbox_id is not None
                        else Alert.mailbox_id.is_(None))
    alerts = db.session.scalars(query).all()
    now = utcnow()
    for alert in alerts:
        alert.acknowledged_on = now
    if alerts:
        db.session.flush()
    return len(alerts)


class MailboxAlerts:
    """One mailbox's open alerts for a sync run, which clears several codes on every run
    (most of them not open): their codes are read once, in one query at the first use, and
    clearing a code that is not open costs nothing."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        # None open when the run's load of the mailbox counted none (``load_mailbox``).
        counted = inspect(mailbox).dict.get("open_alert_count")
        self._open: set[str] | None = set() if counted == 0 else None
        self.written = False  # an alert was raised or closed through this object

    def _codes(self) -> set[str]:
        if self._open is None:
            self._open = set(db.session.scalars(select(Alert.code).where(
                Alert.mailbox_id == self.mailbox.id, Alert.acknowledged_on.is_(None))))
        return self._open

    def raise_alert(self, severity: str, code: str, message: str, user=None) -> Alert:
        alert = raise_alert(severity, code, message, self.mailbox, user)
        self._codes().add(code)
        self.written = True
        return alert

    def clear(self, code: str) -> int:
        codes = self._codes()
        if code not in codes:
            return 0
        codes.discard(code)
        self.written = True
        return clear(code, self.mailbox)


def _visible(p: Principal):
    """Alerts ``p`` may see: every one for admins; otherwise those about them or about a
    mailbox they own (their own, or a queue's they or one of their teams own)."""
    if p.is_admin:
        return None
    from server.crm.models import Queue
    queue_ids = select(Queue.id).where(or_(
        Queue.owner_user_id == p.user_id,
        Queue.owner_team_id.in_(p.team_ids) if p.team_ids else false()))
    own_mailboxes = select(Mailbox.id).where(or_(Mailbox.user_id == p.user_id,
                                                 Mailbox.queue_id.in_(queue_ids)))
    return or_(Alert.user_id == p.user_id, Alert.mailbox_id.in_(own_mailboxes))


def open_alerts(p: Principal, *, mailbox_id: int | None = None, limit: int = 200) -> list[Alert]:
    """Open alerts ``p`` may see, newest first (optionally of one mailbox)."""
    query = select(Alert).where(Alert.acknowledged_on.is_(None))
    condition = _visible(p)
    if condition is not None:
        query = query.where(condition)
    if mailbox_id is not None:
        query = query.where(Alert.mailbox_id == mailbox_id)
    return list(db.session.scalars(query.order_by(Alert.created_on.desc(), Alert.id.desc())
                                   .limit(limit)))


def acknowledge(p: Principal, alert_id: int) -> Alert:
    """A person dismisses an alert they can see."""
    query = select(Alert).where(Alert.id == alert_id)
    condition = _visible(p)
    if condition is not None:
        query = query.where(condition)
    alert = db.session.scalar(query)
    if alert is None:
        raise NotFound("No such alert.")
    if alert.acknowledged_on is not None:
        raise Invalid("This alert was already dismissed.")
    alert.acknowledged_on = utcnow()
    db.session.flush()
    return alert
