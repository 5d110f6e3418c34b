"""Mailbox provisioning: the organization's defaults for new mailboxes (an email server
profile and a method per direction), a mailbox made at once for every new user and queue
with an email address when the organization asks for it, and "apply default settings" to
an existing mailbox.

Changing the defaults needs write on the organization and mailbox administration (write on
mailboxes at business-unit depth). New mailboxes are made in the same flush as their user
or queue (``_new_owners``, a session hook), so every way a user or queue comes into being
(the admin pages, the API, single sign-on, the command line) gets one; they start disabled
and unapproved, to be approved and tested like any other. Callers commit.
"""
from __future__ import annotations

import logging

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from server.crm.models import Organization, Queue
from server.db import db
from server.errors import Forbidden, Invalid, NotFound
from server.i18n import N_
from server.mailkeys import normalize_address
from server.security import authz
from server.security.authz import Principal
from server.security.models import User
from server.sync.admin import forms
from server.sync.admin.mailboxes import can_administer, untested
from server.sync.models import (ACTS_METHODS, INCOMING_METHODS, OUTGOING_METHODS,
                                EmailServerProfile, Mailbox)

log = logging.getLogger(__name__)

DEFAULT_FIELDS = ("default_server_profile_id", "default_incoming_method",
                  "default_outgoing_method", "default_acts_method",
                  "create_mailboxes_automatically")


def _org() -> Organization:
    org = db.session.get(Organization, 1)
    if org is None:
        raise NotFound(N_("The organization is not set up yet: run 'flask --app server init-org'."))
    return org


def can_provision(p: Principal) -> bool:
    return can_administer(p) and p.depth("organization", "write") > 0


def defaults_form() -> dict:
    org = _org()
    return {name: getattr(org, name) for name in DEFAULT_FIELDS}


def update_defaults(p: Principal, data: dict) -> Organization:
    """Save the defaults (a form: a missing flag is off)."""
    if not can_provision(p):
        raise Forbidden(N_("Changing the mailbox defaults needs write on the organization and "
                           "on mailboxes of the business unit."))
    org = _org()
    errors: dict[str, str] = {}
    profile_id = forms.integer(data, "default_server_profile_id", N_("Email server profile"),
                               errors, low=1, high=2**31 - 1)
    if profile_id is not None and db.session.scalar(select(EmailServerProfile.id).where(
            EmailServerProfile.id == profile_id,
            authz.scope(p, EmailServerProfile, "read"))) is None:
        errors["default_server_profile_id"] = N_("Choose an email server profile you can see.")
    values = {
        "default_incoming_method": forms.choice(data, "default_incoming_method", N_("Incoming email"),
                                                INCOMING_METHODS, errors,
                                                default="server_side_sync"),
        "default_outgoing_method": forms.choice(data, "default_outgoing_method", N_("Outgoing email"),
                                                OUTGOING_METHODS, errors,
                                                default="server_side_sync"),
        "default_acts_method": forms.choice(data, "default_acts_method",
                                            N_("Appointments, contacts and tasks"), ACTS_METHODS,
                                            errors, default="none"),
    }
    forms.check(errors)
    org.default_server_profile_id = profile_id
    for name, value in values.items():
        setattr(org, name, value)
    org.create_mailboxes_automatically = forms.flag(data, "create_mailboxes_automatically")
    db.session.flush()
    return org


def apply_defaults(p: Principal, mailbox: Mailbox) -> str:
    """Give ``mailbox`` the organization's default profile and methods; a mailbox whose way
    of connecting changed must be tested again. Returns what happened, in words."""
    if not can_administer(p, mailbox):
        raise Forbidden(N_("You cannot change the settings of %(address)s.",
                           address=mailbox.email_address))
    if mailbox.is_forward_mailbox:
        return N_("A forward mailbox keeps its own settings.")
    org = _org()
    before = (mailbox.server_profile_id, mailbox.incoming_method, mailbox.outgoing_method,
              mailbox.acts_method)
    if org.default_server_profile_id is not None:
        mailbox.server_profile_id = org.default_server_profile_id
    mailbox.incoming_method = org.default_incoming_method
    mailbox.outgoing_method = org.default_outgoing_method
    mailbox.acts_method = org.default_acts_method
    after = (mailbox.server_profile_id, mailbox.incoming_method, mailbox.outgoing_method,
             mailbox.acts_method)
    if before == after:
        return N_("It already had the default settings.")
    untested(mailbox, N_("The default settings were applied: test and enable the mailbox again."))
    db.session.flush()
    return N_("The default settings were applied; test and enable it again.")


def new_mailbox(org: Organization, address: str, *, user: User | None = None,
                queue: Queue | None = None, unit_id: int) -> Mailbox:
    """A mailbox with the organization's defaults (not yet added to the session)."""
    return Mailbox(name=address, email_address=address, user=user, queue=queue,
                   server_profile_id=org.default_server_profile_id,
                   incoming_method=org.default_incoming_method,
                   outgoing_method=org.default_outgoing_method,
                   acts_method=org.default_acts_method, owning_business_unit_id=unit_id)


@event.listens_for(Session, "before_flush")
def _new_owners(session: Session, flush_context, instances) -> None:
    """A mailbox for each new user and queue with an email address, when the organization
    makes them automatically (and no mailbox has the address yet)."""
    owners = [o for o in session.new if isinstance(o, (User, Queue)) and o.email]
    if not owners:
        return
    with session.no_autoflush:
        org = session.get(Organization, 1)
        if org is None or not org.create_mailboxes_automatically:
            return
        pending = {normalize_address(m.email_address) for m in session.new
                   if isinstance(m, Mailbox)}
        for owner in owners:
            address = normalize_address(owner.email)
            if not address or address in pending or session.scalar(select(Mailbox.id).where(
                    func.lower(Mailbox.email_address) == address)) is not None:
                continue
            is_user = isinstance(owner, User)
            unit_id = owner.business_unit_id if is_user else owner.owning_business_unit_id
            if unit_id is None:
                continue
            session.add(new_mailbox(org, address, user=owner if is_user else None,
                                    queue=None if is_user else owner, unit_id=unit_id))
            pending.add(address)
            log.info("mailbox made for a new %s", "user" if is_user else "queue")


def check_method(value: str, choices: tuple[str, ...], label: str) -> str:
    """One method named in an import line, or Invalid naming the choices."""
    value = (value or "").strip().lower()
    if value not in choices:
        raise Invalid(N_("%(label)s must be one of %(choices)s.", label=label,
                         choices=", ".join(choices)))
    return value
