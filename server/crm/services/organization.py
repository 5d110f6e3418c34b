"""The organization's settings: what each one means, reading and validating them (the
administration page of the organization)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from server.crm.allowed_hosts import parse_allowed
from server.crm.models import MB, Organization
from server.db import db, utcnow
from server.errors import Invalid, NotFound
from server.i18n import N_, check_choice, message_of
from server.security import authz
from server.security.admin import as_int, clean_text, require_manage
from server.security.authz import Principal


@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    kind: str  # text bool mb currency prefix hosts language time_zone
    help: str
    section: str


ORG_SETTINGS: tuple[Setting, ...] = (
    Setting("name", "Organization name", "text",
            "The name people see at the top of the app and in messages the server sends. "
            "The root business unit is named after it when the organization is set up.",
            "General"),
    Setting("base_currency", "Base currency", "currency",
            "The three-letter ISO code (for example USD or EUR) that amounts such as "
            "estimated revenue are shown in.", "General"),
    Setting("default_language", "Default language", "language",
            "The language of pages, the Outlook add-in and the mail the server writes for "
            "people who have not chosen their own and whose browser asks for none of the "
            "languages Regarding speaks.", "General"),
    Setting("default_time_zone", "Default time zone", "time_zone",
            "The time zone times are shown in for people who have not chosen their own.",
            "General"),
    Setting("resolve_inactive_records", "Resolve email addresses to inactive records", "bool",
            "When an email's sender or recipient matches only a deactivated contact, account, "
            "lead or user, link the email to that record anyway. Off: such addresses stay "
            "unresolved, so new mail is not linked to records nobody works on any more.",
            "Email address resolution"),
    Setting("unresolve_ambiguous_addresses", "Leave ambiguous addresses unresolved", "bool",
            "When an address belongs to more than one record (two contacts share an address, "
            "say), leave it unresolved instead of linking the email to all of them. Someone "
            "then picks the right record by hand.", "Email address resolution"),
    Setting("attachment_max_bytes", "Maximum attachment size (MB)", "mb",
            "The largest file that can be attached to an email, appointment or note, in "
            "megabytes (1 to 128). Larger attachments of tracked email are left out, and the "
            "email says so.", "Email"),
    Setting("use_tracking_token", "Use tracking tokens", "bool",
            "Add a short token such as CRM:0001234 to the subject of email sent from the "
            "CRM, so that replies are tracked against the same record even when the reply "
            "headers are lost. Turning it off relies on the other ways of correlating mail.",
            "Email tracking"),
    Setting("tracking_token_prefix", "Tracking token prefix", "prefix",
            "The text the tracking token starts with (default CRM:). Change it when several "
            "organizations exchange email, so each recognizes its own tokens. Letters, "
            "digits and : - _ # only; up to 20 characters.", "Email tracking"),
    Setting("track_sent_items", "Track sent items", "bool",
            "Email that a user sends from their mailbox is tracked by the same rules as email "
            "they receive (for example, sent to a known contact).", "Email tracking"),
    Setting("track_between_users_as_two", "Track email between two users as two activities",
            "bool",
            "When a user emails another user, create two activities, one owned by the sender "
            "and one by the recipient, so each can set their own regarding record. Off: one "
            "activity, owned by the sender.", "Email tracking"),
    Setting("smart_matching", "Use smart matching", "bool",
            "As a last resort, link a reply to an earlier tracked email by comparing the "
            "subject and the people on it, when neither headers, tracking token nor "
            "conversation match. It can mistake unrelated mail with a similar subject for a "
            "reply, so it is off by default.", "Email tracking"),
    Setting("require_email_approval", "Process email only for approved user mailboxes", "bool",
            "A user's mailbox is synchronized only once an administrator (or someone with "
            "the 'Approve email addresses' privilege) has approved its email address, so "
            "nobody can make the server read a mailbox that is not theirs.", "Email"),
    Setting("require_queue_email_approval", "Process email only for approved queue mailboxes",
            "bool",
            "The same for queues' mailboxes, on its own: an organization may trust the "
            "addresses of its shared mailboxes and still approve each user's.", "Email"),
    Setting("allow_unresolved_recipients", "Allow messages to unresolved recipients", "bool",
            "Email written in the CRM may go to addresses that match no contact, account, "
            "lead, user or queue. Off: every recipient must be a record, and an email to "
            "anyone else is refused before it is sent.", "Email"),
    Setting("mail_server_allowed_hosts", "Allowed local mail servers", "hosts",
            "Email server profiles may not reach loopback or link-local addresses (this "
            "server's own services, cloud metadata endpoints) unless they are listed here: "
            "host names, addresses or networks such as 127.0.0.1 or 10.0.0.0/8, separated "
            "by commas. Empty: none.", "Email"),
)

_PREFIX = re.compile(r"^[A-Za-z0-9:#_\-]{0,20}$")


def get_organization(p: Principal) -> Organization:
    require_manage(p, "organization")
    org = db.session.get(Organization, 1)
    if org is None:
        raise NotFound(N_("The organization is not set up yet: run 'flask --app server init-org'."))
    return org


def update_organization(p: Principal, data: dict[str, Any]) -> Organization:
    """Save every setting from ``data`` (a form: a missing bool is off)."""
    org = get_organization(p)
    authz.require_table(p, "organization", "write")
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for s in ORG_SETTINGS:
        raw = data.get(s.name)
        if s.kind == "bool":
            values[s.name] = str(raw).lower() in ("1", "on", "true", "yes") if raw is not None else False
        elif s.kind == "text":
            try:
                values[s.name] = clean_text(raw, label=s.label, max_length=160, required=True)
            except ValueError as exc:
                errors[s.name] = message_of(exc)
        elif s.kind == "currency":
            code = (raw or "").strip().upper() if isinstance(raw, str) else ""
            if not re.fullmatch(r"[A-Z]{3}", code):
                errors[s.name] = N_("Use a three-letter currency code such as USD.")
            values[s.name] = code
        elif s.kind == "mb":
            number = as_int(raw.strip() if isinstance(raw, str) else raw)
            if number is None or not 1 <= number <= 128:
                errors[s.name] = N_("A whole number of megabytes from 1 to 128.")
            else:
                values[s.name] = number * MB
        elif s.kind == "hosts":
            value = raw.strip() if isinstance(raw, str) else ""
            try:
                parse_allowed(value)
            except ValueError as exc:
                errors[s.name] = message_of(exc)
            if len(value) > 2000:
                errors[s.name] = N_("At most 2000 characters.")
            values[s.name] = value
        elif s.kind in ("language", "time_zone"):
            if raw is None:  # a form without the field keeps the setting
                continue
            value = raw.strip() if isinstance(raw, str) else ""
            problems = check_choice(value, None) if s.kind == "language" else check_choice(None, value)
            if not value or problems:
                errors[s.name] = problems.get(s.kind, N_("Choose one from the list."))
            values[s.name] = value
        elif s.kind == "prefix":
            value = raw.strip() if isinstance(raw, str) else ""
            if not _PREFIX.match(value):
                errors[s.name] = N_("Up to 20 letters, digits or : - _ #.")
            values[s.name] = value
    if values.get("use_tracking_token") and not values.get("tracking_token_prefix") \
            and "tracking_token_prefix" not in errors:
        errors["tracking_token_prefix"] = N_("Tracking tokens need a prefix.")
    if errors:
        raise Invalid(N_("Some settings are not valid."), errors)
    for key, value in values.items():
        setattr(org, key, value)
    org.modified_on = utcnow()
    db.session.flush()
    return org


def setting_value(org: Organization, s: Setting) -> Any:
    value = getattr(org, s.name)
    if s.kind == "mb":
        return max(1, round(value / MB)) if value else 5
    return value
