"""Request parsing shared by the REST API views: strict JSON bodies, query parameters, typed
field values, principals named in a body, and opaque keyset cursors.

Every problem with the input becomes a typed 4xx error (never a 500): 415 for a body that is
not JSON, 400 with per-field messages for malformed JSON, wrong types and unknown names.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from flask import current_app, g, request
from sqlalchemy import select

from server.db import db
from server.errors import Invalid, ServiceError
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.security.models import Team, User
from server.web.params import MAX_ID, decode_json

MAX_PAGE_SIZE = 200
# The URL converter for ids: anything beyond a column's range is simply not found.
ID = f"int(min=1, max={MAX_ID})"


class UnsupportedMediaType(ServiceError):
    """Send the request body as JSON (Content-Type: application/json)."""
    status, code = 415, "unsupported_media_type"


class TooLarge(ServiceError):
    """The request body is too large."""
    status, code = 413, "too_large"


def invalid(fields: dict[str, str], message: str = N_("Some fields are not valid.")) -> Invalid:
    return Invalid(message, fields)


# -- bodies ------------------------------------------------------------------------------------

def has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object. ``optional`` endpoints (actions) accept no body at all."""
    if optional and not has_body():
        return {}
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    raw = request.get_data(cache=True)  # 413 from Werkzeug beyond the request's limit
    if not raw.strip():
        if optional:
            return {}
        raise Invalid(N_("The request body is empty: send a JSON object."))
    return decode_json(raw)


def reject_unknown(data: dict[str, Any], allowed: set[str] | tuple[str, ...]) -> None:
    unknown = {k: N_("Unknown field.") for k in data if k not in allowed}
    if unknown:
        raise invalid(unknown)


def limit_body(max_bytes: int) -> None:
    """Lower this request's body limit below the application's ``MAX_CONTENT_LENGTH``."""
    app_limit = current_app.config.get("MAX_CONTENT_LENGTH")
    limit = min(max_bytes, app_limit) if app_limit else max_bytes
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(N_("The request body is over %(limit)s bytes.", limit=limit))


# -- query parameters -------------------------------------------------------------------------

def query_args(allowed: set[str], *, multi: set[str] = frozenset()) -> dict[str, Any]:
    """The query string as a dict; unknown or repeated parameters are 400."""
    errors, out = {}, {}
    for key in request.args:
        values = request.args.getlist(key)
        if key not in allowed:
            errors[key] = N_("Unknown parameter.")
        elif key in multi:
            out[key] = values
        elif len(values) > 1:
            errors[key] = N_("Give this parameter once.")
        else:
            out[key] = values[0]
    if errors:
        raise invalid(errors, N_("Some query parameters are not valid."))
    return out


def page_size(args: dict[str, Any]) -> int:
    raw = args.get("page_size")
    if raw is None:
        return min(int(current_app.config.get("REGARDING_PAGE_SIZE", 25)), MAX_PAGE_SIZE)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise invalid({"page_size": N_("A whole number from 1 to %(count)s.", count=MAX_PAGE_SIZE)})
    return int(raw)


def parse_bool_arg(args: dict[str, Any], name: str) -> bool | None:
    raw = args.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise invalid({name: N_("Must be true or false.")})


def fits(value: int) -> bool:
    """Whether an integer fits our (32-bit) integer columns: PostgreSQL refuses to even
    compare a bigger parameter with one, SQLite anything past 64 bits."""
    return -2**31 <= value < 2**31


def parse_int(raw: Any, name: str) -> int:
    """A positive id from JSON (a number) or a query string (digits)."""
    if isinstance(raw, bool):
        raise invalid({name: N_("Must be a whole number.")})
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 19:
        raw = int(raw)
    if isinstance(raw, int) and 0 < raw <= MAX_ID:
        return raw
    if isinstance(raw, int) and 0 < raw:
        raise invalid({name: N_("No such record.")})
    raise invalid({name: N_("Must be a positive whole number.")})


def parse_ref(raw: Any, name: str, kinds: tuple[str, ...]) -> tuple[str, int]:
    """``{"type": ..., "id": ...}`` (or ``"type:id"`` in a query string) → ``(type, id)``."""
    if isinstance(raw, str) and ":" in raw:
        kind, _, ident = raw.partition(":")
        raw = {"type": kind, "id": ident}
    if not isinstance(raw, dict) or set(raw) != {"type", "id"}:
        raise invalid({name: 'Expected {"type": ..., "id": ...}.'})
    if raw["type"] not in kinds:
        raise invalid({name: N_("The type must be one of: %(choices)s.", choices=", ".join(kinds))})
    return raw["type"], parse_int(raw["id"], f"{name}.id")


# -- typed values ------------------------------------------------------------------------------

def principal() -> Principal:
    """The principal behind this request's bearer token (set by the blueprint)."""
    return authz.principal(g.api_user)


# -- users and teams named in a body ------------------------------------------------------------

def load_principal(p: Principal, raw: Any, name: str) -> User | Team:
    """The user or team of ``{"type": "user"|"team", "id": N}``, which the caller may read."""
    kind, ident = parse_ref(raw, name, ("user", "team"))
    model = User if kind == "user" else Team
    found = db.session.scalar(select(model).where(model.id == ident, authz.scope(p, model, "read")))
    if found is None:
        raise invalid({name: N_("No such %(kind)s.", kind=kind)})
    return found


# -- cursors -----------------------------------------------------------------------------------

def encode_cursor(payload: list[Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def check_timeline_cursor(cursor: str):
    """The (time, id) of a timeline cursor (``server.crm.services.timeline``), or 400."""
    from server.crm.services import timeline
    try:
        at, ident = timeline.decode_cursor(cursor)
        if not fits(ident):
            raise ValueError
        return at, ident
    except (ValueError, OverflowError, OSError):
        raise invalid({"cursor": N_("Not a valid cursor.")}) from None


def decode_cursor(cursor: str, name: str = "cursor") -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise invalid({name: N_("Not a valid cursor.")}) from None
    if not isinstance(payload, list):
        raise invalid({name: N_("Not a valid cursor.")})
    return payload
