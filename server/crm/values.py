"""Typed field values: one parser for a field's value, whether it comes from a form, JSON or
a query string. Pure: existence of referenced records and privileges are the services'."""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from server.i18n import N_
from server.mailkeys import normalize_address
from server.crm.registry import Field

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
LINE_BREAK = re.compile(r"[\r\n\x85\u2028\u2029]")
SINGLE_LINE = N_("Must be a single line (no line breaks).")
_BARE_DOMAIN = re.compile(r"^[\w.-]+\.[a-z]{2,}(/\S*)?$", re.I)
_TRUE, _FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no", "")


def parse_datetime(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(N_("Must be a date and time (ISO 8601)."))
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(N_("Must be a date and time (ISO 8601).")) from None
    if value.tzinfo is None:
        raise ValueError(N_("Include a time zone (for example 2025-01-31T09:00:00Z)."))
    return value


def _text(f: Field, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(N_("Must be text."))
    value = CONTROL.sub("", raw)
    value = value if f.kind == "text" else value.strip()
    if f.kind != "text" and LINE_BREAK.search(value):
        raise ValueError(SINGLE_LINE)
    if f.max_length and len(value) > f.max_length:
        raise ValueError(N_("At most %(count)s characters.", count=f.max_length))
    if f.kind == "email" and normalize_address(value) is None:
        raise ValueError(N_("Not a valid email address."))
    if f.kind == "url" and not re.match(r"^https?://\S+$", value, re.I):
        if not _BARE_DOMAIN.match(value):
            raise ValueError(N_("Not a valid web address (https://...)."))
        value = "https://" + value
    if f.kind == "choice" and value not in f.choices:
        raise ValueError(N_("Must be one of: %(choices)s.", choices=", ".join(f.choices)))
    return value


def _whole(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError(N_("Must be a whole number."))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(N_("Must be a whole number.")) from None
    if not -2**31 < value < 2**31:  # our integer columns are 32-bit
        raise ValueError(N_("Out of range."))
    return value


def _decimal(raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(N_("Must be a number."))
    try:
        value = Decimal(str(raw).replace(",", "").strip())
    except InvalidOperation:
        raise ValueError(N_("Must be a number.")) from None
    if not value.is_finite() or abs(value) >= Decimal(10) ** 14:
        raise ValueError(N_("Out of range."))
    return value.quantize(Decimal("0.01"))


def _date(raw: Any) -> date:
    if not isinstance(raw, str):
        raise ValueError(N_("Must be a date (YYYY-MM-DD)."))
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(N_("Must be a date (YYYY-MM-DD).")) from None


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in _TRUE + _FALSE:
        return raw.lower() in _TRUE
    raise ValueError(N_("Must be true or false."))


_PARSERS = {"int": _whole, "ref": _whole, "decimal": _decimal, "date": _date,
            "datetime": parse_datetime, "bool": _bool}


def parse_value(f: Field, raw: Any) -> Any:
    """One value of field ``f``; ValueError with a message a user can act on. Empty is None
    (or "This field is required."); refs are parsed as ids only."""
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and f.kind != "bool"):
        if f.required:
            raise ValueError(N_("This field is required."))
        return None
    if f.kind in ("str", "text", "phone", "url", "email", "choice"):
        return _text(f, raw)
    if f.kind in _PARSERS:
        return _PARSERS[f.kind](raw)
    raise ValueError(N_("Unsupported field."))  # pragma: no cover
