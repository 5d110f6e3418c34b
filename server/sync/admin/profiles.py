"""Email server profiles: the servers, protocols, security and sign-in method a group of
mailboxes shares. A profile is read and written at the depth of the ``email_server_profile``
table privileges; deleting one is refused while a mailbox uses it. Its secrets (service
password, client secret) are write-only: a form never receives them back, a blank field keeps
what is stored. A service account a server refused waits until its sign-in is changed here or
an administrator tries it again (``try_service_account_again``; ``engine.service_accounts``).
Callers commit.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import func, select

from server.crm.models import MB
from server.db import db
from server.errors import Conflict, Forbidden
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.security.privileges import Depth
from server.sync import connectors
from server.sync.admin import forms
from server.sync.admin.forms import PAGE
from server.sync.engine import hosts, service_accounts
from server.sync.models import (ACTS_PROTOCOLS, AUTH_METHODS, INCOMING_PROTOCOLS, OUTGOING_PROTOCOLS, SECURITY,
                                EmailServerProfile, Mailbox)
from server.sync.workers import scheduler

log = logging.getLogger(__name__)

_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$")


PROFILE_SECRETS = ("service_password", "oauth_client_secret")
# What a sign-in is made of: a change to one of them tries a refused service account again.
SIGN_IN = ("incoming_protocol", "outgoing_protocol", "incoming_host", "incoming_port",
           "incoming_security", "outgoing_host", "outgoing_port", "outgoing_security",
           "auth_method", "use_service_account", "service_username", "service_password")


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
        "name": forms.text(data, "name", N_("Name"), errors, max_length=160, required=True),
        "incoming_protocol": forms.choice(data, "incoming_protocol", N_("Incoming protocol"),
                                     INCOMING_PROTOCOLS + ACTS_PROTOCOLS, errors),
        "outgoing_protocol": forms.choice(data, "outgoing_protocol", N_("Outgoing protocol"),
                                     OUTGOING_PROTOCOLS, errors, blank=True),
        "incoming_host": forms.text(data, "incoming_host", N_("Incoming server"), errors,
                                    max_length=255),
        "incoming_port": forms.integer(data, "incoming_port", N_("Incoming port"), errors, low=1,
                                       high=65535),
        "incoming_security": forms.choice(data, "incoming_security", N_("Incoming security"), SECURITY,
                                     errors, default="tls"),
        "outgoing_host": forms.text(data, "outgoing_host", N_("Outgoing server"), errors,
                                    max_length=255),
        "outgoing_port": forms.integer(data, "outgoing_port", N_("Outgoing port"), errors, low=1,
                                       high=65535),
        "outgoing_security": forms.choice(data, "outgoing_security", N_("Outgoing security"), SECURITY,
                                     errors, default="starttls"),
        "auth_method": forms.choice(data, "auth_method", N_("Authentication"), AUTH_METHODS, errors,
                               default="password"),
        "use_service_account": forms.flag(data, "use_service_account"),
        "service_username": forms.text(data, "service_username", N_("Service account"), errors,
                                  max_length=320),
        "oauth_tenant": forms.text(data, "oauth_tenant", N_("Tenant"), errors, max_length=200),
        "oauth_client_id": forms.text(data, "oauth_client_id", N_("Client ID"), errors, max_length=200),
        "maildir_root": forms.text(data, "maildir_root", N_("Maildir store"), errors, max_length=500),
        "process_emails_after": forms.day(data, "process_emails_after",
                                          N_("Process email received after"), errors),
        "max_connections": forms.integer(data, "max_connections", N_("Maximum concurrent connections"),
                                errors, low=1, high=1000, required=True),
        "attachment_max_bytes": None,
    }
    size = forms.integer(data, "attachment_max_mb", N_("Maximum attachment size"), errors, low=1,
                         high=128)
    v["attachment_max_bytes"] = size * MB if size else None
    for name in PROFILE_SECRETS:
        v[name] = forms.secret(data, name, getattr(profile, name, None))
    for side in ("incoming", "outgoing"):
        host = v[f"{side}_host"]
        if host and not _HOST.match(host):
            errors[f"{side}_host"] = "Enter a host name or an IP address."
    known = {"incoming": INCOMING_PROTOCOLS, "outgoing": OUTGOING_PROTOCOLS}
    needs = {side: connectors.for_direction(v[f"{side}_protocol"], side).needs
             for side in known if v[f"{side}_protocol"] in known[side]}
    if v["incoming_protocol"] in ACTS_PROTOCOLS:  # CalDAV/CardDAV: its server as "incoming"
        needs["incoming"] = connectors.item_store(v["incoming_protocol"]).needs
    for side, need in needs.items():
        if need.host and not v[f"{side}_host"]:
            errors[f"{side}_host"] = f"The {side} server is required for this protocol."
    if "incoming" in needs and needs["incoming"].store is not None and not v["maildir_root"]:
        errors["maildir_root"] = "A Maildir profile needs the directory that holds the trees."
    if v["use_service_account"] and not v["service_username"]:
        errors["service_username"] = "Name the service account, or use each mailbox's own."
    if v["auth_method"] == "oauth2" and not (v["oauth_tenant"] and v["oauth_client_id"]):
        errors["oauth_client_id"] = "OAuth 2 needs the tenant and the client ID."
    errors = {**hosts.profile_errors(v), **errors}
    unit_id = forms.integer(data, "owning_business_unit_id", N_("Business unit"), errors, low=1,
                   high=2**31 - 1)
    v["owning_business_unit_id"] = unit_id or (profile.owning_business_unit_id if profile
                                               else p.business_unit_id)
    if v["name"]:
        clash = db.session.scalar(select(EmailServerProfile.id).where(
            func.lower(EmailServerProfile.name) == v["name"].lower()))
        if clash is not None and (profile is None or clash != profile.id):
            errors["name"] = "Another profile has this name."
    forms.check(errors)
    return v


def create_profile(p: Principal, data: dict) -> EmailServerProfile:
    values = _profile_values(p, data, None)
    if not authz.can_create(p, EmailServerProfile, values["owning_business_unit_id"]):
        raise Forbidden(N_("You cannot create email server profiles in that business unit."))
    profile = EmailServerProfile(settings={}, **values)
    db.session.add(profile)
    db.session.flush()
    return profile


def update_profile(p: Principal, profile: EmailServerProfile, data: dict) -> EmailServerProfile:
    authz.require(p, "write", profile)
    values = _profile_values(p, data, profile)
    if values["owning_business_unit_id"] != profile.owning_business_unit_id and \
            not authz.can_create(p, EmailServerProfile, values["owning_business_unit_id"]):
        raise Forbidden(N_("You cannot move the profile to that business unit."))
    signs_in = any(values[name] != getattr(profile, name) for name in SIGN_IN)
    for name, value in values.items():
        setattr(profile, name, value)
    if signs_in:  # a refused service account changed: its mailboxes try it again
        _try_again(profile)
    db.session.flush()
    return profile


def try_service_account_again(p: Principal, profile: EmailServerProfile) -> bool:
    """An administrator asks for one more sign-in with the profile's service account, which
    a server refused (its password was put right on the server, or the account unlocked):
    whether it was held."""
    authz.require(p, "write", profile)
    if not _try_again(profile):
        return False
    db.session.flush()
    log.info("email server profile %s: service account tried again by user %s", profile.id,
             p.user_id)
    return True


def _try_again(profile: EmailServerProfile) -> bool:
    """Release a held service account (``service_accounts.release``) and ask for a run of
    the profile's mailbox that last worked, so that one sign-in, not one per mailbox, tells
    whether it works now; the others come at their next retry."""
    if not service_accounts.release(profile):
        return False
    first = db.session.scalar(select(Mailbox.id).where(
        Mailbox.server_profile_id == profile.id, Mailbox.enabled.is_(True))
        .order_by(Mailbox.last_success_on.desc().nulls_last(), Mailbox.id).limit(1))
    if first is not None:
        scheduler.ask_for_sync([first])
    return True


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
