"""Administration services of server-side sync: email server profiles (deleting one only
when no mailbox uses it), mailboxes (settings, credentials, tracking options, approval,
Test & Enable, enable/disable, sync now, deletion), folder
tracking rules, the tracking blocklist, quarantine, the decision log and the dashboard's
figures.

Every function takes the acting :class:`~server.security.authz.Principal` and checks it:

* profiles: the ``email_server_profile`` table privileges at their depth;
* mailboxes: the ``mailbox`` table privileges at their depth (``authz.scope``). Holding
  write on a mailbox lets its owner change their personal options (tracking option,
  auto-create contacts, folder rules), their own sign-in and ask for a sync; its server,
  address and methods are for mailbox administrators (write at business-unit depth or
  more);
* approving an address: the ``approve_email_addresses`` privilege (the organization may
  waive approval altogether);
* the blocklist: writing the organization; the dashboard: ``view_sync_dashboard``.

Secrets (passwords, client secrets) are write-only: a form never receives them back, a
blank field keeps what is stored. Callers commit.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Any

from sqlalchemy import String, cast, func, or_, select

from server.crm.activities import REGARDING_COLUMNS
from server.crm.addresses import normalize
from server.crm.models import MB, Organization, Queue
from server.crm.registry import RECORD_TYPES
from server.crm.tracking import normalize_message_id
from server.db import db, utcnow
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.security import authz
from server.security.authz import Principal
from server.security.models import BusinessUnit, User
from server.security.privileges import Depth
from server.sync.engine import hosts
from server.sync.models import (ACTS_METHODS, AUTH_METHODS, INCOMING_METHODS, INCOMING_PROTOCOLS,
                                OUTGOING_METHODS, OUTGOING_PROTOCOLS, SECURITY, TRACKING_OPTIONS,
                                Alert, EmailServerProfile, FolderRule, Mailbox, MessageDecision,
                                QuarantinedMessage, SyncRun, TrackingBlock)

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$")
FOLDER_CACHE_SECONDS = 600
PAGE = 50


# --------------------------------------------------------------------------- input helpers

def _text(data: dict, name: str, label: str, errors: dict, *, max_length: int,
          required: bool = False) -> str | None:
    value = (data.get(name) or "").strip()
    if _CONTROL.search(value):
        errors[name] = f"{label} contains control characters."
    elif len(value) > max_length:
        errors[name] = f"{label} is longer than {max_length} characters."
    elif required and not value:
        errors[name] = f"{label} is required."
    return value or None


def _choice(data: dict, name: str, label: str, choices, errors: dict, *,
            default: str | None = None, blank: bool = False) -> str | None:
    value = (data.get(name) or "").strip() or default
    if value is None and blank:
        return None
    if value not in choices:
        errors[name] = f"Choose a {label.lower()}."
        return None
    return value


def _int(data: dict, name: str, label: str, errors: dict, *, low: int, high: int,
         required: bool = False) -> int | None:
    raw = str(data.get(name) or "").strip()
    if not raw:
        if required:
            errors[name] = f"{label} is required."
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = f"{label} must be a whole number."
        return None
    if not low <= value <= high:
        errors[name] = f"{label} must be between {low} and {high}."
        return None
    return value


def _flag(data: dict, name: str) -> bool:
    return str(data.get(name) or "").lower() in ("1", "on", "true", "yes")


def _date(data: dict, name: str, label: str, errors: dict) -> datetime | None:
    raw = (data.get(name) or "").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        errors[name] = f"{label} must be a date (YYYY-MM-DD)."
        return None
    return datetime.combine(day, dtime.min, tzinfo=timezone.utc)


def _secret(data: dict, name: str, current: str | None) -> str | None:
    """A write-only secret: a new value replaces it, "clear_<name>" removes it, a blank
    field keeps what is stored."""
    if _flag(data, f"clear_{name}"):
        return None
    value = data.get(name) or ""
    return value if value.strip() else current


def _check(errors: dict) -> None:
    if errors:
        raise Invalid("Some values need attention.", errors)


# --------------------------------------------------------------------------- profiles

PROFILE_SECRETS = ("service_password", "oauth_client_secret")


def can_manage_profiles(p: Principal) -> bool:
    return p.depth("email_server_profile", "read") > Depth.NONE and any(
        p.depth("email_server_profile", x) > Depth.NONE for x in ("create", "write"))


def list_profiles(p: Principal) -> list[tuple[EmailServerProfile, int]]:
    """Readable profiles with how many mailboxes use each."""
    counts = (select(Mailbox.server_profile_id, func.count().label("n"))
              .group_by(Mailbox.server_profile_id).subquery())
    rows = db.session.execute(
        select(EmailServerProfile, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.server_profile_id == EmailServerProfile.id)
        .where(authz.scope(p, EmailServerProfile, "read"))
        .order_by(func.lower(EmailServerProfile.name))).all()
    return [(profile, n) for profile, n in rows]


def get_profile(p: Principal, profile_id: int, privilege: str = "read") -> EmailServerProfile:
    return authz.get(p, EmailServerProfile, profile_id, privilege)


def _profile_values(p: Principal, data: dict, profile: EmailServerProfile | None) -> dict:
    errors: dict[str, str] = {}
    v: dict[str, Any] = {
        "name": _text(data, "name", "Name", errors, max_length=160, required=True),
        "incoming_protocol": _choice(data, "incoming_protocol", "Incoming protocol",
                                     INCOMING_PROTOCOLS, errors),
        "outgoing_protocol": _choice(data, "outgoing_protocol", "Outgoing protocol",
                                     OUTGOING_PROTOCOLS, errors, blank=True),
        "incoming_host": _text(data, "incoming_host", "Incoming server", errors, max_length=255),
        "incoming_port": _int(data, "incoming_port", "Incoming port", errors, low=1, high=65535),
        "incoming_security": _choice(data, "incoming_security", "Incoming security", SECURITY,
                                     errors, default="tls"),
        "outgoing_host": _text(data, "outgoing_host", "Outgoing server", errors, max_length=255),
        "outgoing_port": _int(data, "outgoing_port", "Outgoing port", errors, low=1, high=65535),
        "outgoing_security": _choice(data, "outgoing_security", "Outgoing security", SECURITY,
                                     errors, default="starttls"),
        "auth_method": _choice(data, "auth_method", "Authentication", AUTH_METHODS, errors,
                               default="password"),
        "use_service_account": _flag(data, "use_service_account"),
        "service_username": _text(data, "service_username", "Service account", errors,
                                  max_length=320),
        "oauth_tenant": _text(data, "oauth_tenant", "Tenant", errors, max_length=200),
        "oauth_client_id": _text(data, "oauth_client_id", "Client ID", errors, max_length=200),
        "maildir_root": _text(data, "maildir_root", "Maildir store", errors, max_length=500),
        "process_emails_after": _date(data, "process_emails_after", "Process email received "
                                      "after", errors),
        "max_connections": _int(data, "max_connections", "Maximum concurrent connections",
                                errors, low=1, high=1000, required=True),
        "attachment_max_bytes": None,
    }
    size = _int(data, "attachment_max_mb", "Maximum attachment size", errors, low=1, high=128)
    v["attachment_max_bytes"] = size * MB if size else None
    for name in PROFILE_SECRETS:
        v[name] = _secret(data, name, getattr(profile, name, None))
    for side in ("incoming", "outgoing"):
        host = v[f"{side}_host"]
        if host and not _HOST.match(host):
            errors[f"{side}_host"] = "Enter a host name or an IP address."
    protocol = v["incoming_protocol"]
    if protocol in ("imap", "pop3", "ews") and not v["incoming_host"]:
        errors["incoming_host"] = "The incoming server is required for this protocol."
    if protocol == "maildir" and not v["maildir_root"]:
        errors["maildir_root"] = "A Maildir profile needs the directory that holds the trees."
    if v["outgoing_protocol"] == "smtp" and not v["outgoing_host"]:
        errors["outgoing_host"] = "The outgoing server is required for SMTP."
    if v["use_service_account"] and not v["service_username"]:
        errors["service_username"] = "Name the service account, or use each mailbox's own."
    if v["auth_method"] == "oauth2" and not (v["oauth_tenant"] and v["oauth_client_id"]):
        errors["oauth_client_id"] = "OAuth 2 needs the tenant and the client ID."
    errors = {**hosts.profile_errors(v), **errors}
    unit_id = _int(data, "owning_business_unit_id", "Business unit", errors, low=1,
                   high=2**31 - 1)
    v["owning_business_unit_id"] = unit_id or (profile.owning_business_unit_id if profile
                                               else p.business_unit_id)
    if v["name"]:
        clash = db.session.scalar(select(EmailServerProfile.id).where(
            func.lower(EmailServerProfile.name) == v["name"].lower()))
        if clash is not None and (profile is None or clash != profile.id):
            errors["name"] = "Another profile has this name."
    _check(errors)
    return v


def create_profile(p: Principal, data: dict) -> EmailServerProfile:
    values = _profile_values(p, data, None)
    if not authz.can_create(p, EmailServerProfile, values["owning_business_unit_id"]):
        raise Forbidden("You cannot create email server profiles in that business unit.")
    profile = EmailServerProfile(settings={}, **values)
    db.session.add(profile)
    db.session.flush()
    return profile


def update_profile(p: Principal, profile: EmailServerProfile, data: dict) -> EmailServerProfile:
    authz.require(p, "write", profile)
    values = _profile_values(p, data, profile)
    if values["owning_business_unit_id"] != profile.owning_business_unit_id and \
            not authz.can_create(p, EmailServerProfile, values["owning_business_unit_id"]):
        raise Forbidden("You cannot move the profile to that business unit.")
    for name, value in values.items():
        setattr(profile, name, value)
    db.session.flush()
    return profile


def profile_users(p: Principal, profile: EmailServerProfile) -> tuple[list[Mailbox], int]:
    """The mailboxes using a profile that ``p`` can see, and how many others use it."""
    readable = list(db.session.scalars(
        select(Mailbox).where(Mailbox.server_profile_id == profile.id,
                              authz.scope(p, Mailbox, "read"))
        .order_by(func.lower(Mailbox.email_address)).limit(PAGE)))
    total = db.session.scalar(select(func.count(Mailbox.id)).where(
        Mailbox.server_profile_id == profile.id)) or 0
    return readable, total - len(readable)


def profile_to_delete(p: Principal, profile_id: int) -> EmailServerProfile:
    return authz.get(p, EmailServerProfile, profile_id, "delete")


def delete_profile(p: Principal, profile_id: int) -> EmailServerProfile:
    """Delete a profile no mailbox uses (with its stored service password and client
    secret); one in use is refused, naming the mailboxes."""
    profile = profile_to_delete(p, profile_id)
    shown, others = profile_users(p, profile)
    if shown or others:
        names = ", ".join(m.email_address for m in shown)
        more = f"{' and ' if names else ''}{others} you cannot see" if others else ""
        raise Conflict(f"The profile {profile.name} is used by {len(shown) + others} "
                       f"mailbox(es): {names}{more}. Move them to another profile first.")
    db.session.delete(profile)
    db.session.flush()
    log.info("email server profile %s deleted by user %s", profile_id, p.user_id)
    return profile


def profile_form(profile: EmailServerProfile | None) -> dict:
    """The values a profile form shows: everything but the secrets."""
    if profile is None:
        return {"incoming_protocol": "imap", "incoming_security": "tls", "outgoing_protocol": "smtp",
                "outgoing_security": "starttls", "auth_method": "password", "max_connections": 10}
    out = {c: getattr(profile, c) for c in (
        "name", "incoming_protocol", "outgoing_protocol", "incoming_host", "incoming_port",
        "incoming_security", "outgoing_host", "outgoing_port", "outgoing_security", "auth_method",
        "use_service_account", "service_username", "oauth_tenant", "oauth_client_id",
        "maildir_root", "max_connections", "owning_business_unit_id")}
    out["process_emails_after"] = (profile.process_emails_after.date().isoformat()
                                   if profile.process_emails_after else "")
    out["attachment_max_mb"] = (profile.attachment_max_bytes // MB
                                if profile.attachment_max_bytes else "")
    return out


def creatable_units(p: Principal, table: str) -> list[BusinessUnit]:
    model = {"email_server_profile": EmailServerProfile, "mailbox": Mailbox}[table]
    units = db.session.scalars(select(BusinessUnit).where(authz.scope(p, BusinessUnit, "read"))
                               .order_by(func.lower(BusinessUnit.name))).all()
    return [u for u in units if authz.can_create(p, model, u.id)]


# --------------------------------------------------------------------------- mailboxes

@dataclass
class MailboxFigures:
    processed: int = 0
    tracked: int = 0
    skipped: int = 0
    failed: int = 0  # quarantined, not yet retried successfully


def can_administer(p: Principal, mailbox: Mailbox | None = None) -> bool:
    """Mailbox administrators set servers, addresses and methods (write at business-unit
    depth or more), not only their own personal options."""
    if p.depth("mailbox", "write") < Depth.BUSINESS_UNIT:
        return False
    return mailbox is None or authz.can(p, "write", mailbox)


def mailbox_query(p: Principal, q: str = "", status: str = ""):
    query = select(Mailbox).where(authz.scope(p, Mailbox, "read"))
    if q:
        like = f"%{q.strip().lower()[:200]}%"
        query = query.where(or_(func.lower(Mailbox.email_address).like(like),
                                func.lower(Mailbox.name).like(like)))
    if status == "enabled":
        query = query.where(Mailbox.enabled.is_(True))
    elif status == "disabled":
        query = query.where(Mailbox.enabled.is_(False))
    elif status == "failing":
        query = query.where(or_(Mailbox.incoming_status == "failure",
                                Mailbox.outgoing_status == "failure"))
    return query


def list_mailboxes(p: Principal, *, q: str = "", status: str = "", page: int = 1,
                   size: int = PAGE) -> tuple[list[Mailbox], int, dict[int, MailboxFigures]]:
    """A page of readable mailboxes (with owner and profile loaded) and their figures."""
    from sqlalchemy.orm import selectinload
    base = mailbox_query(p, q, status)
    total = db.session.scalar(select(func.count()).select_from(base.subquery()))
    boxes = db.session.scalars(
        base.options(selectinload(Mailbox.user), selectinload(Mailbox.queue),
                     selectinload(Mailbox.server_profile))
        .order_by(func.lower(Mailbox.email_address)).limit(size).offset((page - 1) * size)).all()
    return list(boxes), total, figures([b.id for b in boxes])


def figures(mailbox_ids: list[int]) -> dict[int, MailboxFigures]:
    """Items processed, tracked, skipped and failed per mailbox: two grouped queries."""
    out = {i: MailboxFigures() for i in mailbox_ids}
    if not mailbox_ids:
        return out
    for mailbox_id, tracked, n in db.session.execute(
            select(MessageDecision.mailbox_id, MessageDecision.tracked, func.count())
            .where(MessageDecision.mailbox_id.in_(mailbox_ids))
            .group_by(MessageDecision.mailbox_id, MessageDecision.tracked)):
        fig = out[mailbox_id]
        fig.processed += n
        if tracked:
            fig.tracked += n
        else:
            fig.skipped += n
    for mailbox_id, n in db.session.execute(
            select(QuarantinedMessage.mailbox_id, func.count())
            .where(QuarantinedMessage.mailbox_id.in_(mailbox_ids),
                   QuarantinedMessage.resolved.is_(False))
            .group_by(QuarantinedMessage.mailbox_id)):
        out[mailbox_id].failed = n
    return out


def get_mailbox(p: Principal, mailbox_id: int, privilege: str = "read") -> Mailbox:
    return authz.get(p, Mailbox, mailbox_id, privilege)


def my_mailbox(p: Principal) -> Mailbox | None:
    return db.session.scalar(select(Mailbox).where(Mailbox.user_id == p.user_id,
                                                   authz.scope(p, Mailbox, "read"))
                             .order_by(Mailbox.id).limit(1))


def _profile_for(p: Principal, data: dict, errors: dict) -> EmailServerProfile | None:
    profile_id = _int(data, "server_profile_id", "Email server profile", errors, low=1,
                      high=2**31 - 1)
    if profile_id is None:
        return None
    profile = db.session.scalar(select(EmailServerProfile).where(
        EmailServerProfile.id == profile_id, authz.scope(p, EmailServerProfile, "read")))
    if profile is None:
        errors["server_profile_id"] = "Choose an email server profile you can see."
    return profile


def _address(data: dict, errors: dict, mailbox: Mailbox | None) -> str | None:
    raw = _text(data, "email_address", "Email address", errors, max_length=320, required=True)
    address = normalize(raw) if raw else None
    if raw and not address:
        errors["email_address"] = "Enter an email address."
        return None
    if address:
        clash = db.session.scalar(select(Mailbox.id).where(
            func.lower(Mailbox.email_address) == address))
        if clash is not None and (mailbox is None or clash != mailbox.id):
            errors["email_address"] = "Another mailbox has this address."
    return address


def _methods(data: dict, errors: dict) -> dict:
    return {
        "incoming_method": _choice(data, "incoming_method", "Incoming email", INCOMING_METHODS,
                                   errors, default="server_side_sync"),
        "outgoing_method": _choice(data, "outgoing_method", "Outgoing email", OUTGOING_METHODS,
                                   errors, default="server_side_sync"),
        "acts_method": _choice(data, "acts_method", "Appointments, contacts and tasks",
                               ACTS_METHODS, errors, default="none"),
    }


def _changed_address(mailbox: Mailbox, address: str) -> None:
    """A new address must be approved again and the mailbox tested again."""
    if address != (mailbox.email_address or "").lower():
        mailbox.email_address = address
        mailbox.email_approved, mailbox.approved_by_id, mailbox.approved_on = False, None, None
        _untested(mailbox, "The email address changed: test and enable the mailbox again.")


def _untested(mailbox: Mailbox, reason: str) -> None:
    if mailbox.enabled:
        mailbox.enabled = False
        mailbox.disabled_reason = reason
        mailbox.next_sync_on = None
    mailbox.incoming_status = mailbox.outgoing_status = "not_run"


def create_mailbox(p: Principal, data: dict) -> Mailbox:
    """A mailbox for a user (by email address) or a queue (by name or address)."""
    errors: dict[str, str] = {}
    address = _address(data, errors, None)
    profile = _profile_for(p, data, errors)
    methods = _methods(data, errors)
    owner_kind = _choice(data, "owner_kind", "Owner", ("user", "queue"), errors, default="user")
    owner_ref = (data.get("owner") or "").strip().lower()
    user = queue = None
    if owner_kind == "user":
        user = db.session.scalar(select(User).where(func.lower(User.email) == owner_ref,
                                                    authz.scope(p, User, "read")))
        if user is None:
            errors["owner"] = "No user you can see has this email address."
    elif owner_kind == "queue":
        queue = db.session.scalar(select(Queue).where(
            or_(func.lower(Queue.name) == owner_ref, func.lower(Queue.email) == owner_ref),
            authz.scope(p, Queue, "read")))
        if queue is None:
            errors["owner"] = "No queue you can see has this name or address."
    _check(errors)
    unit = user.business_unit_id if user else queue.owning_business_unit_id
    if not authz.can_create(p, Mailbox, unit, user.id if user else None):
        raise Forbidden("You cannot create mailboxes for that owner.")
    mailbox = Mailbox(name=(data.get("name") or "").strip()[:200] or address,
                      email_address=address, user_id=user.id if user else None,
                      queue_id=queue.id if queue else None, server_profile=profile,
                      owning_business_unit_id=unit, **methods)
    db.session.add(mailbox)
    db.session.flush()
    return mailbox


def update_mailbox(p: Principal, mailbox: Mailbox, data: dict) -> Mailbox:
    """Servers, address and methods (mailbox administrators), and the mailbox's own
    sign-in (its owner too). Changing how the mailbox connects asks for a new test."""
    authz.require(p, "write", mailbox)
    errors: dict[str, str] = {}
    admin = can_administer(p, mailbox)
    before = (mailbox.server_profile_id, mailbox.incoming_method, mailbox.outgoing_method,
              mailbox.username)
    if admin:
        name = _text(data, "name", "Name", errors, max_length=200, required=True)
        address = _address(data, errors, mailbox)
        profile = _profile_for(p, data, errors)
        methods = _methods(data, errors)
    username = _text(data, "username", "User name", errors, max_length=320)
    _check(errors)
    if admin:
        mailbox.name = name
        _changed_address(mailbox, address)
        mailbox.server_profile = profile
        for key, value in methods.items():
            setattr(mailbox, key, value)
    mailbox.username = username
    new_password = _secret(data, "password", mailbox.password)
    changed_secret = new_password != mailbox.password
    mailbox.password = new_password
    after = (mailbox.server_profile_id, mailbox.incoming_method, mailbox.outgoing_method,
             mailbox.username)
    if before != after or changed_secret:
        _untested(mailbox, "The mailbox's connection settings changed: test and enable it "
                           "again.")
    db.session.flush()
    return mailbox


def update_tracking(p: Principal, mailbox: Mailbox, data: dict) -> Mailbox:
    """The personal options: which email is tracked, and contacts made for unknown senders."""
    authz.require(p, "write", mailbox)
    errors: dict[str, str] = {}
    option = _choice(data, "tracking_option", "Tracking option", TRACKING_OPTIONS, errors)
    _check(errors)
    mailbox.tracking_option = option
    mailbox.auto_create_contacts = _flag(data, "auto_create_contacts")
    db.session.flush()
    return mailbox


def approval_required() -> bool:
    org = db.session.get(Organization, 1)
    return bool(org and org.require_email_approval)


def approve(p: Principal, mailbox: Mailbox) -> Mailbox:
    authz.require(p, "read", mailbox)
    authz.require_named(p, "approve_email_addresses")
    if mailbox.email_approved:
        raise Invalid(f"{mailbox.email_address} is already approved.")
    mailbox.email_approved, mailbox.approved_by_id, mailbox.approved_on = True, p.user_id, utcnow()
    db.session.flush()
    return mailbox


def test_and_enable(p: Principal, mailbox: Mailbox):
    """Test the mailbox's directions and enable it when they work (``testing``)."""
    from server.sync.admin.testing import test_and_enable as run
    authz.require(p, "write", mailbox)
    return run(mailbox)


test_and_enable.__test__ = False  # a service, not a pytest test


def disable(p: Principal, mailbox: Mailbox) -> Mailbox:
    authz.require(p, "write", mailbox)
    if not mailbox.enabled:
        raise Invalid("The mailbox is already disabled.")
    mailbox.enabled = False
    mailbox.disabled_reason = f"Disabled by {p.user.full_name} on {utcnow():%Y-%m-%d %H:%M} UTC."
    mailbox.next_sync_on = None
    db.session.flush()
    return mailbox


def sync_now(p: Principal, mailbox: Mailbox) -> Mailbox:
    from server.sync.workers.scheduler import request_sync
    return request_sync(p, mailbox)


@dataclass
class MailboxDeletion:
    """What deleting a mailbox removes and what it keeps, for its confirmation page."""
    folder_rules: int
    folder_cursors: int
    decisions: int
    quarantined: int
    alerts: int
    tracked: int  # activities it tracked: kept
    waiting: int  # outgoing emails waiting to be sent from it: kept, waiting
    syncing: bool  # a worker holds it right now: refused until it is done


def mailbox_to_delete(p: Principal, mailbox_id: int) -> Mailbox:
    return authz.get(p, Mailbox, mailbox_id, "delete")


def mailbox_deletion(mailbox: Mailbox) -> MailboxDeletion:
    from server.crm.activities import Email
    from server.sync.models import FolderState
    from server.sync.engine.outgoing import waiting_count

    def count(model, *conditions) -> int:
        return db.session.scalar(select(func.count(model.id)).where(*conditions)) or 0

    now = utcnow()
    return MailboxDeletion(
        folder_rules=count(FolderRule, FolderRule.mailbox_id == mailbox.id),
        folder_cursors=count(FolderState, FolderState.mailbox_id == mailbox.id),
        decisions=count(MessageDecision, MessageDecision.mailbox_id == mailbox.id),
        quarantined=count(QuarantinedMessage, QuarantinedMessage.mailbox_id == mailbox.id,
                          QuarantinedMessage.resolved.is_(False)),
        alerts=count(Alert, Alert.mailbox_id == mailbox.id, Alert.acknowledged_on.is_(None)),
        tracked=count(Email, Email.receiving_mailbox_id == mailbox.id),
        waiting=waiting_count(mailbox),
        syncing=bool(mailbox.lease_owner and mailbox.lease_expires_on
                     and _aware(mailbox.lease_expires_on) > now))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def delete_mailbox(p: Principal, mailbox_id: int) -> Mailbox:
    """Delete a mailbox with what only served its synchronization: its stored credentials,
    folder cursors, folder rules, decision log, quarantine, alerts and run figures. The
    activities it tracked stay (they are CRM records; they no longer name it as their
    receiving mailbox), and so do emails waiting to be sent from it (they go out once the
    owner has a sending mailbox again). Refused while a worker is syncing it."""
    from server.crm.activities import Email
    mailbox = mailbox_to_delete(p, mailbox_id)
    if mailbox_deletion(mailbox).syncing:
        raise Conflict("A worker is synchronizing this mailbox right now: disable it, then "
                       "delete it once the run is over (within a few minutes).")
    db.session.execute(Email.__table__.update().where(
        Email.__table__.c.receiving_mailbox_id == mailbox.id).values(receiving_mailbox_id=None))
    db.session.delete(mailbox)
    db.session.flush()
    with _folder_lock:
        _folder_cache.pop(mailbox_id, None)
    log.info("mailbox %s deleted by user %s", mailbox_id, p.user_id)
    return mailbox


def mailbox_form(mailbox: Mailbox | None) -> dict:
    if mailbox is None:
        return {"owner_kind": "user", "incoming_method": "server_side_sync",
                "outgoing_method": "server_side_sync", "acts_method": "none"}
    return {c: getattr(mailbox, c) for c in (
        "name", "email_address", "server_profile_id", "incoming_method", "outgoing_method",
        "acts_method", "username", "tracking_option", "auto_create_contacts")}


# --------------------------------------------------------------------------- folder rules

_folder_cache: dict[int, tuple[float, list]] = {}
_folder_lock = threading.Lock()


def _require_own_rules(p: Principal, mailbox: Mailbox) -> None:
    """Folder rules belong to the mailbox's user: they (or someone who may write their
    mailbox) manage them; queues have none."""
    authz.require(p, "write", mailbox)
    if mailbox.user_id is None:
        raise Invalid("Folder tracking is for users' mailboxes.")


def mailbox_folders(p: Principal, mailbox: Mailbox, *, refresh: bool = False) -> list:
    """The folders under the mailbox's Inbox (``Folder`` objects), read through its
    connector and kept for ten minutes."""
    from server.sync.engine.accounts import account_for
    from server.sync.connectors import incoming
    from server.sync.connectors.base import ConnectorError
    from server.sync.engine.folders import find_inbox, is_under
    _require_own_rules(p, mailbox)
    with _folder_lock:
        cached = _folder_cache.get(mailbox.id)
    if cached and not refresh and time.monotonic() - cached[0] < FOLDER_CACHE_SECONDS:
        return cached[1]
    if mailbox.server_profile is None:
        raise Invalid("The mailbox has no email server profile yet.")
    try:
        account = account_for(mailbox, "incoming")
        with incoming(mailbox.server_profile.incoming_protocol)(account) as connector:
            folders = connector.list_folders()
    except ConnectorError as exc:
        raise Invalid(f"The folders could not be read: {exc.message}") from None
    inbox = find_inbox(folders)
    by_key = {f.key: f for f in folders}
    under = sorted((f for f in folders if inbox is not None and f.key != inbox.key
                    and is_under(f, inbox, by_key)), key=lambda f: f.name.casefold())
    with _folder_lock:
        _folder_cache[mailbox.id] = (time.monotonic(), under)
    return under


def list_rules(p: Principal, mailbox: Mailbox) -> tuple[list[FolderRule], dict]:
    """The mailbox's folder rules and the titles of the records they are regarding."""
    authz.require(p, "read", mailbox)
    rules = db.session.scalars(select(FolderRule).where(FolderRule.mailbox_id == mailbox.id)
                               .order_by(func.lower(FolderRule.folder_name))).all()
    return list(rules), regarding_titles(p, [r.regarding_ref for r in rules])


def regarding_titles(p: Principal, refs) -> dict[tuple[str, int], str]:
    """Titles of the records ``p`` can read among ``refs``: one query per record type."""
    wanted: dict[str, set[int]] = {}
    for ref in refs:
        if ref:
            wanted.setdefault(ref[0], set()).add(ref[1])
    titles = {}
    for kind, ids in wanted.items():
        rt = RECORD_TYPES[kind]
        column = getattr(rt.model, rt.title_field)
        for record_id, title in db.session.execute(
                select(rt.model.id, column).where(rt.model.id.in_(ids),
                                                  authz.scope(p, rt.model, "read"))):
            titles[(kind, record_id)] = title
    return titles


def find_regarding(p: Principal, kind: str, query: str) -> list:
    """Records of ``kind`` whose title contains ``query`` that ``p`` may append to."""
    rt = RECORD_TYPES.get(kind)
    if rt is None or kind not in REGARDING_COLUMNS:
        raise Invalid("Choose what the folder's email is regarding.", {"regarding_type": "Choose "
                      "an account, contact, lead, opportunity or case."})
    column = getattr(rt.model, rt.title_field)
    return list(db.session.scalars(
        select(rt.model).where(func.lower(cast(column, String)).like(
            f"%{query.strip().lower()[:200]}%"), authz.scope(p, rt.model, "append_to"))
        .order_by(func.lower(cast(column, String))).limit(10)))


def add_rule(p: Principal, mailbox: Mailbox, data: dict) -> FolderRule:
    """Track a folder under the Inbox, optionally regarding a record (chosen by id, or by a
    title that names exactly one record)."""
    _require_own_rules(p, mailbox)
    errors: dict[str, str] = {}
    key = (data.get("folder_key") or "").strip()
    folder = next((f for f in mailbox_folders(p, mailbox) if f.key == key), None)
    if folder is None:
        errors["folder_key"] = "Choose a folder under the Inbox."
    count = db.session.scalar(select(func.count()).select_from(FolderRule).where(
        FolderRule.user_id == mailbox.user_id))
    if count >= FolderRule.MAX_PER_USER:
        raise Invalid(f"A user can track at most {FolderRule.MAX_PER_USER} folders: remove one "
                      "first.")
    if folder is not None and db.session.scalar(select(FolderRule.id).where(
            FolderRule.mailbox_id == mailbox.id, FolderRule.folder_key == key)):
        errors["folder_key"] = f'"{folder.name}" is tracked already.'
    regarding = None
    kind = (data.get("regarding_type") or "").strip()
    record_id = _int(data, "regarding_id", "Record", errors, low=1, high=2**31 - 1)
    query = (data.get("regarding_query") or "").strip()
    if kind and (record_id or query):
        if record_id:
            regarding = authz.get(p, RECORD_TYPES[kind].model, record_id) \
                if kind in REGARDING_COLUMNS else None
        else:
            found = find_regarding(p, kind, query)
            if len(found) == 1:
                regarding = found[0]
            else:
                errors["regarding_query"] = ("No record you can link to matches." if not found
                                             else f"{len(found)} records match: choose one.")
        if regarding is not None:
            authz.require(p, "append_to", regarding)
    _check(errors)
    rule = FolderRule(mailbox_id=mailbox.id, user_id=mailbox.user_id, folder_key=key,
                      folder_name=folder.name[:500])
    if regarding is not None:
        rule.set_regarding(kind, regarding.id)
    db.session.add(rule)
    db.session.flush()
    return rule


def _rule(p: Principal, rule_id: int) -> FolderRule:
    rule = db.session.get(FolderRule, rule_id)
    if rule is None:
        raise NotFound()
    mailbox = db.session.get(Mailbox, rule.mailbox_id)
    _require_own_rules(p, mailbox)
    return rule


def delete_rule(p: Principal, rule_id: int) -> FolderRule:
    rule = _rule(p, rule_id)
    db.session.delete(rule)
    db.session.flush()
    return rule


def set_rule_enabled(p: Principal, rule_id: int, enabled: bool) -> FolderRule:
    rule = _rule(p, rule_id)
    rule.enabled = enabled
    rule.disabled_reason = None if enabled else "Turned off by its owner."
    db.session.flush()
    return rule


# --------------------------------------------------------------------------- blocklist

_PATTERN = re.compile(r"^(@[a-z0-9.-]+\.[a-z0-9-]+|[^@\s]+@[a-z0-9.-]+\.[a-z0-9-]+)$")


def can_edit_blocklist(p: Principal) -> bool:
    return p.depth("organization", "write") > Depth.NONE


def list_blocks(p: Principal) -> list[TrackingBlock]:
    if not (p.has("view_sync_dashboard") or can_edit_blocklist(p)):
        raise Forbidden("This needs the 'View the sync dashboard' privilege.")
    return list(db.session.scalars(select(TrackingBlock).order_by(TrackingBlock.pattern)))


def add_block(p: Principal, data: dict) -> TrackingBlock:
    if not can_edit_blocklist(p):
        raise Forbidden("Changing the tracking blocklist needs write on the organization.")
    raw = (data.get("pattern") or "").strip().lower()[:320]
    if raw.startswith("@"):  # a domain: normalized as the domain of an address
        address = normalize("x" + raw)
        pattern = "@" + address.split("@", 1)[1] if address else raw
    else:
        pattern = normalize(raw) or raw
    if not _PATTERN.match(pattern or ""):
        raise Invalid("Enter an address (someone@example.com) or a domain (@example.com).",
                      {"pattern": "Enter an address or an @domain."})
    if db.session.scalar(select(TrackingBlock.id).where(TrackingBlock.pattern == pattern)):
        raise Conflict(f"{pattern} is on the blocklist already.")
    block = TrackingBlock(pattern=pattern)
    db.session.add(block)
    db.session.flush()
    return block


def delete_block(p: Principal, block_id: int) -> TrackingBlock:
    if not can_edit_blocklist(p):
        raise Forbidden("Changing the tracking blocklist needs write on the organization.")
    block = db.session.get(TrackingBlock, block_id)
    if block is None:
        raise NotFound()
    db.session.delete(block)
    db.session.flush()
    return block


# --------------------------------------------------------------------------- quarantine, decisions

def _readable_mailboxes(p: Principal):
    return select(Mailbox.id).where(authz.scope(p, Mailbox, "read"))


def quarantined(p: Principal, limit: int = 50) -> list[tuple[QuarantinedMessage, Mailbox]]:
    rows = db.session.execute(
        select(QuarantinedMessage, Mailbox).join(Mailbox, Mailbox.id == QuarantinedMessage.mailbox_id)
        .where(QuarantinedMessage.resolved.is_(False),
               QuarantinedMessage.mailbox_id.in_(_readable_mailboxes(p)))
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
        raise Invalid("This message was already dealt with.")
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
             .where(MessageDecision.mailbox_id.in_(_readable_mailboxes(p))))
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


# --------------------------------------------------------------------------- dashboard

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
        QuarantinedMessage.mailbox_id.in_(_readable_mailboxes(p))))
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
        .where(SyncRun.mailbox_id.in_(_readable_mailboxes(p)))
        .order_by(SyncRun.started_on.desc(), SyncRun.id.desc()).limit(limit)).all()
    return [(r, m) for r, m in rows]

