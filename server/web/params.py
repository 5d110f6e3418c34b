"""Untrusted request values made safe once, for every view: ids in URLs (a bounded integer
converter registered app-wide as ``int``), integers in query strings and forms, and JSON
bodies (strict, no lone surrogates). Whatever does not fit is a clear 400 or 404, never a
500 from a database that cannot hold the number or a string that cannot be stored."""
from __future__ import annotations

import json
from typing import Any

from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter

from server.errors import Invalid
from server.i18n import N_

MAX_ID = 2**31 - 1  # ids are 32-bit integer columns (PostgreSQL ``integer``)


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` in every route: digits only, at most ``MAX_ID`` unless a rule says
    otherwise, so a URL with an id no column can hold is simply not found (404)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None,
                 max: int | None = None, signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, MAX_ID if max is None else max, signed)


def as_id(raw: str | None) -> int | None:
    """A form or query value that names a row (digits, within ``MAX_ID``), else None."""
    if raw and raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID:
        return int(raw)
    return None


def int_arg(name: str, default: int | None = None, *, source: MultiDict | None = None,
            minimum: int = 1, maximum: int = MAX_ID) -> int | None:
    """The whole number ``name`` of the query string (or of ``source``, e.g. the form):
    ``default`` when absent or empty, a 400 naming the parameter when it is not a whole
    number from ``minimum`` to ``maximum``."""
    raw = (request.args if source is None else source).get(name, "")
    raw = raw.strip()
    if not raw:
        return default
    digits = raw[1:] if raw[:1] == "-" else raw
    if digits.isascii() and digits.isdigit() and len(digits) <= 19:
        value = int(raw)
        if minimum <= value <= maximum:
            return value
    message = N_("%(name)s must be a whole number from %(minimum)s to %(maximum)s.", name=name,
                 minimum=minimum, maximum=maximum)
    raise Invalid(message, {name: message})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


def decode_json(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400: malformed JSON, ``NaN``/``Infinity``,
    nesting too deep, something other than an object, or text with a lone surrogate
    (``"\\ud800"``: valid JSON, but not Unicode that can be stored or sent on)."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        detail = exc.args[0] if isinstance(exc, json.JSONDecodeError) else "not valid JSON"
        raise Invalid(N_("Malformed JSON: %(detail)s", detail=str(detail)[:200])) from None
    if not isinstance(data, dict):
        raise Invalid(N_("Expected a JSON object."))
    _check_text(data)
    return data


def _check_text(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise Invalid(N_("The JSON contains text that is not valid Unicode.")) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
