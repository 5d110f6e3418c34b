"""Sync alerts by email: a digest of new alerts, sent through the organization's own
outgoing path.

``REGARDING_ALERTS_FROM`` names the mailbox that sends alert email (a mailbox whose outgoing
method is server-side sync, e.g. a "CRM alerts" queue's); unset, nothing is emailed. Each
recipient of an alert (the mailbox's owner: its user, or the owner of its queue or that
owning team's members; and every System Administrator) who has an email address gets the
alerts their preference asks for (``User.alert_emails``: ``none``, ``errors`` (default) or
``warnings``, which means errors and warnings).

De-duplication: an alert is emailed to a person when it was raised after their previous
alert email, so an alert refreshed while it stays open is emailed once; one that clears
and comes back is a new alert, and one that turns from a warning into an error counts as
raised anew (``alerts.raise_alert``). Throttle: at most one email per person every
``REGARDING_ALERT_EMAIL_MINUTES`` (default 60); what was raised meanwhile waits for the
next digest. The person is claimed with a compare-and-set on ``alerts_emailed_on`` so two
workers never send the same digest.

The email is an outgoing Email activity (``pending_send``) from that mailbox to the person:
``server.sync.engine.outgoing`` sends it with its retries and backoff, and a failure to send
shows on that activity (and as the sending mailbox's ``send_failed`` alert), never in the
sync. It holds each alert's severity, mailbox address, wording (alert messages never hold
secrets or message bodies) and a link to the dashboard; no message content. It is written in
the recipient's language (their own, else the organization's default, else English) with
times in their time zone (``digest_text``).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, update

from server.crm.activities import ActivityParty, Email
from server.mailkeys import normalize_address
from server.crm.models import Organization, Queue
from server.db import db, utcnow
from server.i18n import (N_, format_moment, language_of, locale_of, plural_of, translate,
                         translate_stored)
from server.security.models import Role, User, team_member, team_role, user_role
from server.sync.models import Alert, Mailbox

log = logging.getLogger(__name__)

# What each preference receives.
ALERT_EMAIL_CHOICES: dict[str, tuple[str, ...]] = {
    "none": (), "errors": ("error",), "warnings": ("error", "warning")}
ALERT_EMAIL_LABELS = {"none": N_("None"), "errors": N_("Errors only"),
                      "warnings": N_("Errors and warnings")}
DEFAULT_MINUTES = 60
ADMIN_ROLE = "System Administrator"


@dataclass(frozen=True)
class _Item:
    severity: str
    address: str | None
    message: str
    raised_on: datetime


def set_preference(user: User, value: str) -> None:
    """A person's own choice of alert emails (``none``, ``errors``, ``warnings``)."""
    from server.errors import Invalid
    if value not in ALERT_EMAIL_CHOICES:
        raise Invalid(N_("Choose which alerts are emailed to you."),
                      {"alert_emails": N_("Choose one of the options.")})
    user.alert_emails = value
    db.session.flush()


def enabled() -> bool:
    """Whether this server is set up to email alerts at all."""
    return bool(current_app.config.get("REGARDING_ALERTS_FROM"))


def _minutes() -> int:
    return max(1, int(current_app.config.get("REGARDING_ALERT_EMAIL_MINUTES", DEFAULT_MINUTES)))


def sender_mailbox() -> Mailbox | None:
    """The configured "alerts from" mailbox, when it exists and may send."""
    address = normalize_address(current_app.config.get("REGARDING_ALERTS_FROM") or "")
    if not address:
        return None
    mailbox = db.session.scalar(select(Mailbox).where(Mailbox.email_address == address))
    if mailbox is None or mailbox.outgoing_method != "server_side_sync" or (
            mailbox.user_id is None and mailbox.queue_id is None):
        log.warning("alert email: REGARDING_ALERTS_FROM names no user's or queue's mailbox "
                    "that sends with server-side sync; alerts are not emailed")
        return None
    return mailbox


def _admin_ids() -> set[int]:
    """Active System Administrators, by role or through a team (as ``authz`` decides)."""
    admin_roles = select(Role.id).where(Role.is_builtin.is_(True), Role.name == ADMIN_ROLE)
    direct = select(user_role.c.user_id).where(user_role.c.role_id.in_(admin_roles))
    by_team = select(team_member.c.user_id).join(
        team_role, team_role.c.team_id == team_member.c.team_id).where(
        team_role.c.role_id.in_(admin_roles))
    return set(db.session.scalars(select(User.id).where(
        User.is_active.is_(True), or_(User.id.in_(direct), User.id.in_(by_team)))))


def _owners(alerts: list[Alert], mailboxes: dict[int, Mailbox]) -> dict[int, set[int]]:
    """Alert id -> the users it is about (its user, or its queue's owner or owning team)."""
    queue_ids = {m.queue_id for m in mailboxes.values() if m.queue_id}
    queues = {q.id: q for q in db.session.scalars(select(Queue).where(Queue.id.in_(queue_ids)))} \
        if queue_ids else {}
    team_ids = {q.owner_team_id for q in queues.values() if q.owner_team_id}
    members: dict[int, set[int]] = defaultdict(set)
    if team_ids:
        for team_id, user_id in db.session.execute(select(
                team_member.c.team_id, team_member.c.user_id).where(
                team_member.c.team_id.in_(team_ids))):
            members[team_id].add(user_id)
    out: dict[int, set[int]] = {}
    for alert in alerts:
        owners = {alert.user_id} if alert.user_id else set()
        mailbox = mailboxes.get(alert.mailbox_id)
        queue = queues.get(mailbox.queue_id) if mailbox is not None and mailbox.queue_id else None
        if queue is not None:
            if queue.owner_user_id:
                owners.add(queue.owner_user_id)
            owners |= members.get(queue.owner_team_id, set())
        out[alert.id] = owners
    return out


def _claim(user: User, now: datetime) -> bool:
    """Compare-and-set of the user's last alert email: False when another worker sent it."""
    table = User.__table__
    seen = user.alerts_emailed_on
    condition = table.c.alerts_emailed_on.is_(None) if seen is None \
        else table.c.alerts_emailed_on == seen
    result = db.session.execute(update(table).where(table.c.id == user.id, condition)
                                .values(alerts_emailed_on=now))
    return result.rowcount == 1


def deliver(now: datetime | None = None) -> int:
    """Queue an alert digest for everyone who has new alerts and was not emailed in the
    last ``REGARDING_ALERT_EMAIL_MINUTES``; returns how many emails were queued. Commits."""
    now = now or utcnow()
    sender = sender_mailbox() if enabled() else None
    if sender is None:
        return 0
    alerts = list(db.session.scalars(select(Alert).where(
        Alert.acknowledged_on.is_(None), Alert.severity.in_(("error", "warning")))
        .order_by(Alert.created_on, Alert.id)))
    if not alerts:
        return 0
    mailbox_ids = {a.mailbox_id for a in alerts if a.mailbox_id}
    mailboxes = {m.id: m for m in db.session.scalars(
        select(Mailbox).where(Mailbox.id.in_(mailbox_ids)))} if mailbox_ids else {}
    owners = _owners(alerts, mailboxes)
    admins = _admin_ids()
    wanted = admins.union(*owners.values())
    quiet_since = now - timedelta(minutes=_minutes())
    users = db.session.scalars(select(User).where(
        User.id.in_(wanted), User.is_active.is_(True), User.email != "",
        User.alert_emails != "none",
        or_(User.alerts_emailed_on.is_(None), User.alerts_emailed_on <= quiet_since))).all()
    queued = 0
    for user in users:
        severities = ALERT_EMAIL_CHOICES.get(user.alert_emails, ())
        mine = [a for a in alerts if a.severity in severities
                and (user.id in admins or user.id in owners[a.id])
                and (user.alerts_emailed_on is None or a.created_on > user.alerts_emailed_on)
                and a.created_on <= now]
        if not mine or not _claim(user, now):
            continue
        items = [_Item(a.severity, mailboxes[a.mailbox_id].email_address
                       if a.mailbox_id in mailboxes else None, a.message, a.created_on)
                 for a in mine]
        _queue(sender, user, items, admin=user.id in admins, now=now)
        for alert in mine:
            alert.emailed_on = alert.emailed_on or now
        queued += 1
    if queued and sender.enabled and (sender.next_sync_on is None or sender.next_sync_on > now):
        sender.next_sync_on = now  # its worker run sends the digests
    db.session.commit()
    if queued:
        log.info("alert email: %d digest(s) queued from mailbox %s", queued, sender.id)
    return queued


def reader_of(user: User) -> tuple[str, str]:
    """The language and time zone mail to ``user`` is written in: theirs, else the
    organization's default, else English and UTC."""
    org = db.session.get(Organization, 1)
    language = (language_of(user.language)
                or language_of(org.default_language if org is not None else None) or "en")
    zone = user.time_zone or (org.default_time_zone if org is not None else None) or "UTC"
    return language, zone


def digest_text(items: list[_Item], *, admin: bool, base_url: str, language: str = "en",
                zone: str = "UTC") -> tuple[str, str]:
    """Subject and plain-text body of one digest, in ``language`` with times in ``zone``."""
    def _(text: str) -> str:
        return translate(language, text)
    ngettext = plural_of(language)
    errors = sum(1 for i in items if i.severity == "error")
    warnings = len(items) - errors
    counts = {"errors": ngettext("%(count)s error", "%(count)s errors", errors) % {"count": errors},
              "warnings": ngettext("%(count)s warning", "%(count)s warnings", warnings)
              % {"count": warnings}}
    if errors and warnings:
        subject = _("Email synchronization: %(errors)s and %(warnings)s") % counts
    else:
        subject = _("Email synchronization: %(counts)s") % {
            "counts": counts["errors"] if errors else counts["warnings"]}
    severities = {"error": _("Error"), "warning": _("Warning"), "information": _("Information")}
    lines = [_("New alerts about email synchronization:"), ""]
    for item in items:
        severity = severities.get(item.severity, item.severity).upper()
        when = f"{format_moment(item.raised_on, locale_of(language), zone)} ({zone})"
        head = (_("%(severity)s (%(address)s), %(when)s:") if item.address
                else _("%(severity)s, %(when)s:"))
        lines.append("- " + head % {"severity": severity, "address": item.address, "when": when})
        lines.append(f"  {translate_stored(language, item.message)}")
    base = base_url.rstrip("/")
    page = "/admin/sync/" if admin else "/admin/sync/my"
    lines += ["", _("Details: %(url)s") % {"url": base + page} if base
              else _("Details: the Email tracking pages of the CRM."), ""]
    if admin:
        why = _("You get these emails for alerts about your mailboxes and, as an administrator, "
                "about every mailbox.")
    else:
        why = _("You get these emails for alerts about your mailboxes.")
    choose = (_("Choose which ones (none, errors only, errors and warnings) on the page "
                "Alert emails: %(url)s.") % {"url": base + "/admin/sync/alert-emails"} if base
              else _("Choose which ones (none, errors only, errors and warnings) on the page "
                     "Alert emails."))
    lines.append(f"{why} {choose}")
    return subject, "\n".join(lines) + "\n"


def _queue(sender: Mailbox, user: User, items: list[_Item], *, admin: bool,
           now: datetime) -> Email:
    language, zone = reader_of(user)
    subject, text = digest_text(items, admin=admin,
                                base_url=current_app.config.get("REGARDING_BASE_URL") or "",
                                language=language, zone=zone)
    owner = sender.user or sender.queue
    email = Email(subject=subject, text_body=text, direction="outgoing", status="pending_send",
                  state="open", priority="normal", occurred_on=now, created_on=now,
                  modified_on=now, sender_address=sender.email_address,
                  to_recipients=normalize_address(user.email),
                  owner_user_id=sender.user_id if sender.user_id else owner.owner_user_id,
                  owner_team_id=None if sender.user_id else owner.owner_team_id,
                  owning_business_unit_id=sender.owning_business_unit_id)
    sender_party = ActivityParty(role="from", address=sender.email_address,
                                 name=getattr(owner, "full_name", None) or getattr(owner, "name", None))
    sender_party.set_party("user" if sender.user_id else "queue", sender.user_id or sender.queue_id)
    to_party = ActivityParty(role="to", address=normalize_address(user.email), name=user.full_name)
    to_party.set_party("user", user.id)
    email.parties.extend([sender_party, to_party])
    db.session.add(email)
    return email
