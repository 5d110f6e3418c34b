"""Form helpers for record pages: which inputs a record form shows (field security applied),
how a value is written into an input, and which submitted values go to the record services.

Record forms are built from ``server.crm.registry`` rather than WTForms classes, so adding a
field to a record type adds it to every page. CSRF comes from Flask-WTF's ``csrf_token()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from server.crm.registry import Field, RecordType
from server.i18n import N_
from server.security.authz import Principal
from server.web.languages import localize

INPUT_TYPES = {"str": "text", "email": "email", "phone": "tel", "url": "url", "int": "number",
               "decimal": "text", "date": "date"}


@dataclass
class FormField:
    field: Field
    value: str  # as written into the input
    readonly: bool
    error: str | None = None

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def input_type(self) -> str:
        return INPUT_TYPES.get(self.field.kind, "text")


def to_input(value: Any) -> str:
    """A stored value as an input's text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def form_fields(p: Principal, rt: RecordType, record=None, submitted=None,
                errors: dict[str, str] | None = None) -> list[FormField]:
    """The inputs of a create (``record`` None) or edit form: fields the user may not read
    are left out; those they may not set are read-only."""
    access = p.fields(rt.name)
    out = []
    for f in rt.fields:
        if not access.can_read(f.name):
            continue
        writable = access.can_create(f.name) if record is None else access.can_update(f.name)
        if submitted is not None and writable:
            value = submitted.get(f.name, "")
        else:
            value = to_input(getattr(record, f.name)) if record is not None else ""
        out.append(FormField(f, value, not writable, localize((errors or {}).get(f.name))))
    return out


def submitted_values(p: Principal, rt: RecordType, form, record=None) -> dict[str, Any]:
    """The values to send to ``records.create``/``update``: only fields the user may set,
    and on edit only those that changed (an unchanged link is not re-checked)."""
    access = p.fields(rt.name)
    data: dict[str, Any] = {}
    for f in rt.fields:
        allowed = access.can_create(f.name) if record is None else access.can_update(f.name)
        if not allowed or not access.can_read(f.name):
            continue
        if f.kind == "bool":
            raw: Any = "1" if form.get(f.name) else "0"
        elif f.name in form:
            raw = form.get(f.name, "")
        else:
            continue
        if record is not None and _unchanged(f, raw, getattr(record, f.name)):
            continue
        elif raw == "" and not f.required:
            continue
        data[f.name] = raw
    return data


def _unchanged(f: Field, raw: str, stored: Any) -> bool:
    current = to_input(stored)
    if f.kind == "bool":
        return raw == ("1" if current else "0")
    if f.kind == "text":  # browsers send CRLF line ends
        return raw.replace("\r\n", "\n") == current.replace("\r\n", "\n")
    return (raw or "").strip() == current.strip()


def parse_due(raw: str | None) -> datetime | None:
    """A ``datetime-local`` or date input (taken as UTC) as an aware datetime."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(17, 0), timezone.utc)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(N_("Must be a date and time.")) from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
