"""Form input of the sync administration pages: each field parsed with a clear error for the
form (never an exception per field), write-only secrets, and the business units a form may
offer. The services of this package validate through these and raise one
:class:`~server.errors.Invalid` naming every field that needs attention.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time as dtime, timezone

from server.errors import Invalid
from server.i18n import N_
from server.security import authz, directory
from server.security.authz import Principal
from server.security.models import BusinessUnit
from server.sync.models import EmailServerProfile, Mailbox

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PAGE = 50


def text(data: dict, name: str, label: str, errors: dict, *, max_length: int,
         required: bool = False) -> str | None:
    value = (data.get(name) or "").strip()
    if _CONTROL.search(value):
        errors[name] = N_("%(label)s contains control characters.") % {"label": label}
    elif len(value) > max_length:
        errors[name] = N_("%(label)s is longer than %(count)s characters.") % {
            "label": label, "count": max_length}
    elif required and not value:
        errors[name] = N_("%(label)s is required.") % {"label": label}
    return value or None


def choice(data: dict, name: str, label: str, choices, errors: dict, *,
           default: str | None = None, blank: bool = False) -> str | None:
    value = (data.get(name) or "").strip() or default
    if value is None and blank:
        return None
    if value not in choices:
        errors[name] = N_("%(label)s: choose one of the listed values.") % {"label": label}
        return None
    return value


def integer(data: dict, name: str, label: str, errors: dict, *, low: int, high: int,
            required: bool = False) -> int | None:
    raw = str(data.get(name) or "").strip()
    if not raw:
        if required:
            errors[name] = N_("%(label)s is required.") % {"label": label}
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = N_("%(label)s must be a whole number.") % {"label": label}
        return None
    if not low <= value <= high:
        errors[name] = N_("%(label)s must be between %(low)s and %(high)s.") % {
            "label": label, "low": low, "high": high}
        return None
    return value


def flag(data: dict, name: str) -> bool:
    return str(data.get(name) or "").lower() in ("1", "on", "true", "yes")


def day(data: dict, name: str, label: str, errors: dict) -> datetime | None:
    raw = (data.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        errors[name] = N_("%(label)s must be a date (YYYY-MM-DD).") % {"label": label}
        return None
    return datetime.combine(value, dtime.min, tzinfo=timezone.utc)


def secret(data: dict, name: str, current: str | None) -> str | None:
    """A write-only secret: a new value replaces it, "clear_<name>" removes it, a blank
    field keeps what is stored."""
    if flag(data, f"clear_{name}"):
        return None
    value = data.get(name) or ""
    return value if value.strip() else current


def check(errors: dict) -> None:
    if errors:
        raise Invalid(N_("Some values need attention."), errors)


def creatable_units(p: Principal, table: str) -> list[BusinessUnit]:
    """The business units in which ``p`` may create an ``email_server_profile`` or a
    ``mailbox``."""
    model = {"email_server_profile": EmailServerProfile, "mailbox": Mailbox}[table]
    return [u for u in directory.units(p) if authz.can_create(p, model, u.id)]
