"""Mailboxes: their settings, sign-in, tracking options, approval of their address, Test &
Enable, turning them off, "sync now" and deletion, and the figures of the mailbox list.

A mailbox is read and written at the depth of the ``mailbox`` table privileges
(``authz.scope``). Holding write on a mailbox lets its owner change their personal options
(tracking option, auto-create contacts), their own sign-in and ask for a sync; its server,
address and methods are for mailbox administrators (write at business-unit depth or more).
Approving an address needs the ``approve_email_addresses`` privilege (the organization may
waive approval altogether). The password is write-only. Callers commit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, or_, select

from server.i18n import N_
from server.mailkeys import normalize_address
from server.crm.models import Organization, Queue
from server.db import db, utcnow
from server.errors import Conflict, Forbidden, Invalid
from server.security import authz
from server.security.authz import Principal
from server.security.models import User
from server.security.privileges import Depth
from server.sync import connectors
from server.sync.admin import folder_rules, forms
from server.sync.admin.forms import PAGE
from server.sync.connectors.base import ConnectorError
from server.sync.models import (ACTS_METHODS, ACTS_PROTOCOLS, INCOMING_METHODS, OUTGOING_METHODS,
                                TRACKING_OPTIONS, Alert, EmailServerProfile, FolderRule, Mailbox,
                                MessageDecision, QuarantinedMessage)

log = logging.getLogger(__name__)


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


def readable_mailboxes(p: Principal):
    """The ids of the mailboxes ``p`` may read, as a subquery."""
    return select(Mailbox.id).where(authz.scope(p, Mailbox, "read"))


def get_mailbox(p: Principal, mailbox_id: int, privilege: str = "read") -> Mailbox:
    return authz.get(p, Mailbox, mailbox_id, privilege)


def my_mailbox(p: Principal) -> Mailbox | None:
    return db.session.scalar(select(Mailbox).where(Mailbox.user_id == p.user_id,
                                                   authz.scope(p, Mailbox, "read"))
                             .order_by(Mailbox.id).limit(1))


def _profile_for(p: Principal, data: dict, errors: dict,
                 field: str = "server_profile_id") -> EmailServerProfile | None:
    profile_id = forms.integer(data, field, N_("Email server profile"), errors, low=1,
                      high=2**31 - 1)
    if profile_id is None:
        return None
    profile = db.session.scalar(select(EmailServerProfile).where(
        EmailServerProfile.id == profile_id, authz.scope(p, EmailServerProfile, "read")))
    if profile is None:
        errors[field] = "Choose an email server profile you can see."
    return profile


def _acts_profile_for(p: Principal, data: dict, errors: dict, mail: EmailServerProfile | None,
                      acts_method: str | None) -> EmailServerProfile | None:
    """The CalDAV/CardDAV profile beside the mail profile (none: the mail profile syncs
    appointments, contacts and tasks itself, as Exchange does); checked against what each
    can do."""
    acts = _profile_for(p, data, errors, "acts_profile_id")
    if acts is not None and acts.incoming_protocol not in ACTS_PROTOCOLS:
        errors["acts_profile_id"] = "Choose a CalDAV/CardDAV profile, or none."
    if mail is not None and mail.incoming_protocol in ACTS_PROTOCOLS:
        errors["server_profile_id"] = ("A CalDAV/CardDAV profile reads no email: choose it "
                                       "for appointments, contacts and tasks instead.")
    if acts_method == "server_side_sync" and acts is None and "acts_profile_id" not in errors:
        try:
            connectors.item_store(mail.incoming_protocol if mail else "")
        except ConnectorError:
            errors["acts_profile_id"] = ("The email server profile does not sync "
                                         "appointments, contacts and tasks: choose a "
                                         "CalDAV/CardDAV profile for them.")
    return acts


def _address(data: dict, errors: dict, mailbox: Mailbox | None) -> str | None:
    raw = forms.text(data, "email_address", N_("Email address"), errors, max_length=320, required=True)
    address = normalize_address(raw) if raw else None
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
        "incoming_method": forms.choice(data, "incoming_method", N_("Incoming email"), INCOMING_METHODS,
                                   errors, default="server_side_sync"),
        "outgoing_method": forms.choice(data, "outgoing_method", N_("Outgoing email"), OUTGOING_METHODS,
                                   errors, default="server_side_sync"),
        "acts_method": forms.choice(data, "acts_method", N_("Appointments, contacts and tasks"),
                               ACTS_METHODS, errors, default="none"),
    }


def _changed_address(mailbox: Mailbox, address: str) -> None:
    """A new address must be approved again and the mailbox tested again."""
    if address != (mailbox.email_address or "").lower():
        mailbox.email_address = address
        mailbox.email_approved, mailbox.approved_by_id, mailbox.approved_on = False, None, None
        untested(mailbox, "The email address changed: test and enable the mailbox again.")


def untested(mailbox: Mailbox, reason: str) -> None:
    if mailbox.enabled:
        mailbox.enabled = False
        mailbox.disabled_reason = reason
        mailbox.next_sync_on = None
    mailbox.incoming_status = mailbox.outgoing_status = mailbox.acts_status = "not_run"


def create_mailbox(p: Principal, data: dict) -> Mailbox:
    """A mailbox for a user (by email address) or a queue (by name or address), or a
    forward mailbox (no owner: it reads the forwards of the users whose incoming method is
    the forward mailbox; mailbox administrators only)."""
    errors: dict[str, str] = {}
    address = _address(data, errors, None)
    profile = _profile_for(p, data, errors)
    methods = _methods(data, errors)
    acts_profile = _acts_profile_for(p, data, errors, profile, methods["acts_method"])
    owner_kind = forms.choice(data, "owner_kind", N_("Owner"), ("user", "queue", "forward"), errors,
                              default="user")
    process_after = forms.day(data, "process_emails_after", N_("Process email received after"),
                              errors)
    if owner_kind == "forward":
        return _create_forward(p, data, errors, address, profile, process_after)
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
    forms.check(errors)
    unit = user.business_unit_id if user else queue.owning_business_unit_id
    if not authz.can_create(p, Mailbox, unit, user.id if user else None):
        raise Forbidden(N_("You cannot create mailboxes for that owner."))
    mailbox = Mailbox(name=(data.get("name") or "").strip()[:200] or address,
                      email_address=address, user_id=user.id if user else None,
                      queue_id=queue.id if queue else None, server_profile=profile,
                      acts_profile=acts_profile, owning_business_unit_id=unit,
                      process_emails_after=process_after, **methods)
    db.session.add(mailbox)
    db.session.flush()
    return mailbox


def _create_forward(p: Principal, data: dict, errors: dict, address: str | None,
                    profile: EmailServerProfile | None, process_after) -> Mailbox:
    if not can_administer(p):
        raise Forbidden(N_("Only mailbox administrators create forward mailboxes."))
    if profile is None and "server_profile_id" not in errors:
        errors["server_profile_id"] = "A forward mailbox is read from a server: choose its profile."
    forms.check(errors)
    unit = p.business_unit_id
    if not authz.can_create(p, Mailbox, unit, None):
        raise Forbidden(N_("You cannot create mailboxes in your business unit."))
    mailbox = Mailbox(name=(data.get("name") or "").strip()[:200] or address,
                      email_address=address, is_forward_mailbox=True, server_profile=profile,
                      owning_business_unit_id=unit, incoming_method="server_side_sync",
                      outgoing_method="none", acts_method="none",
                      process_emails_after=process_after,
                      delete_after_processing=forms.flag(data, "delete_after_processing"))
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
              mailbox.username, mailbox.acts_profile_id, mailbox.acts_method)
    if admin:
        name = forms.text(data, "name", N_("Name"), errors, max_length=200, required=True)
        address = _address(data, errors, mailbox)
        profile = _profile_for(p, data, errors)
        methods = _methods(data, errors)
        process_after = forms.day(data, "process_emails_after", N_("Process email received after"),
                                  errors)
        acts_profile = _acts_profile_for(p, data, errors, profile, methods["acts_method"])
    username = forms.text(data, "username", N_("User name"), errors, max_length=320)
    sent_folder = forms.text(data, "sent_folder", N_("Sent folder"), errors, max_length=500)
    forms.check(errors)
    if admin:
        mailbox.name = name
        _changed_address(mailbox, address)
        mailbox.server_profile = profile
        mailbox.process_emails_after = process_after
        if mailbox.is_forward_mailbox:  # it reads mail only, for the users who forward
            mailbox.delete_after_processing = forms.flag(data, "delete_after_processing")
        else:
            mailbox.acts_profile = acts_profile
            for key, value in methods.items():
                setattr(mailbox, key, value)
    mailbox.username = username
    mailbox.sent_folder = sent_folder
    new_password = forms.secret(data, "password", mailbox.password)
    changed_secret = new_password != mailbox.password
    mailbox.password = new_password
    db.session.flush()
    after = (mailbox.server_profile_id, mailbox.incoming_method, mailbox.outgoing_method,
             mailbox.username, mailbox.acts_profile_id, mailbox.acts_method)
    if before != after or changed_secret:
        untested(mailbox, "The mailbox's connection settings changed: test and enable it "
                           "again.")
    db.session.flush()
    return mailbox


def update_tracking(p: Principal, mailbox: Mailbox, data: dict) -> Mailbox:
    """The personal options: which email is tracked, and contacts made for unknown senders."""
    authz.require(p, "write", mailbox)
    errors: dict[str, str] = {}
    option = forms.choice(data, "tracking_option", N_("Tracking option"), TRACKING_OPTIONS, errors)
    forms.check(errors)
    mailbox.tracking_option = option
    mailbox.auto_create_contacts = forms.flag(data, "auto_create_contacts")
    db.session.flush()
    return mailbox


def approval_required(mailbox: Mailbox | None = None) -> bool:
    """Whether ``mailbox``'s address needs approval; without one, whether any does (users'
    and queues' mailboxes have a switch each)."""
    org = db.session.get(Organization, 1)
    if mailbox is not None:
        return mailbox.approval_required(org)
    return bool(org and (org.require_email_approval or org.require_queue_email_approval))


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
        raise Invalid(N_("The mailbox is already disabled."))
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
    folder_rules.forget_folders(mailbox_id)
    log.info("mailbox %s deleted by user %s", mailbox_id, p.user_id)
    return mailbox


def mailbox_form(mailbox: Mailbox | None) -> dict:
    if mailbox is None:
        return {"owner_kind": "user", "incoming_method": "server_side_sync",
                "outgoing_method": "server_side_sync", "acts_method": "none"}
    out = {c: getattr(mailbox, c) for c in (
        "name", "email_address", "server_profile_id", "incoming_method", "outgoing_method",
        "acts_method", "acts_profile_id", "username", "sent_folder", "tracking_option", "auto_create_contacts",
        "delete_after_processing")}
    out["process_emails_after"] = (mailbox.process_emails_after.date().isoformat()
                                   if mailbox.process_emails_after else "")
    return out


def asks_credentials(mailbox: Mailbox) -> bool:
    """Whether the mailbox's page asks for a user name and password: not when every
    connector of its profile reads a local store (Maildir), which needs none."""
    profile = mailbox.server_profile
    if profile is None:
        return True
    sides = [("incoming", profile.incoming_protocol), ("outgoing", profile.outgoing_protocol)]
    try:
        needs = [connectors.for_direction(protocol, side).needs for side, protocol in sides
                 if protocol]
    except connectors.ConnectorError:  # a protocol unknown here: let the person decide
        return True
    return any(need.store is None for need in needs)
