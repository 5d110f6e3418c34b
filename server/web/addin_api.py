"""The add-in API (``/api/addin/...``): what the Outlook task pane calls. JSON in and out,
bearer authentication only (a pane token from the sign-in dialog, or an Office SSO access
token when SSO is configured), so no CSRF token; every endpoint needs the named privilege
``use_outlook_addin``. Errors are typed JSON (``token_expired``, ``unauthenticated``,
``forbidden``, ``not_found``, ``invalid`` with field messages, ``too_large``).

Views parse the pane's payloads strictly (``server.addin.payloads``), call one service
(``server.addin.context`` and ``server.addin.actions``) and commit. A meeting is known by
its iCalendar UID, which Office.js does not give: the views find it first
(``server.sync.acts.meetings``), so the pane and the item sync key one appointment alike.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from server.addin import payloads as pl
from server.addin import actions
from server.addin import context as pane_context
from server.i18n import N_
from server.security import sso
from server.crm.models import Organization
from server.db import db, statements_commit_alone
from server.errors import Invalid, ServiceError
from server.security import authz
from server.sync.acts import meetings
from server.web import csrf
from server.web.auth import Unauthenticated, bearer_user
from server.web.params import decode_json

bp = Blueprint("addin_api", __name__, url_prefix="/api/addin")

SMALL_BODY = 1024 * 1024  # everything but Track: item descriptions, fields, references
SEARCH_MAX = 200


class UnsupportedMediaType(ServiceError):
    """Send the request body as JSON (Content-Type: application/json)."""
    status, code = 415, "unsupported_media_type"


# -- authentication ----------------------------------------------------------------------------

def _authenticate():
    """The user behind the bearer token: a pane token, or an Office SSO token (a JWT)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthenticated(N_("Sign in: send 'Authorization: Bearer <token>'."))
    if sso.looks_like_jwt(secret):
        if not sso.is_configured():
            raise Unauthenticated(N_("Office sign-in is not configured here; sign in with the dialog."))
        user, _claims = sso.get().authenticate(secret)
        g.addin_auth, g.addin_sso_token = "sso", secret  # kept for on-behalf-of calls
        return user
    user = bearer_user(kinds=("pane",))
    g.addin_auth = "pane"
    return user


READS = ("addin_api.context", "addin_api.related", "addin_api.search")  # they write nothing


@bp.before_request
def _signed_in_with_addin_privilege():
    if request.endpoint in READS:
        statements_commit_alone()
    user = _authenticate()
    g.api_user = user
    authz.require_named(authz.principal(user), "use_outlook_addin")
    if request.method != "GET" and request.endpoint != "addin_api.track":
        request.max_content_length = min(SMALL_BODY, current_app.config.get("MAX_CONTENT_LENGTH") or SMALL_BODY)


def _p() -> authz.Principal:
    return authz.principal(g.api_user)


# -- request parsing ---------------------------------------------------------------------------

def _json() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    return decode_json(request.get_data(cache=False))  # 413 beyond the request's size limit


def _parse(allowed: tuple[str, ...]) -> tuple[dict, pl.Errors]:
    errors = pl.Errors()
    return pl.body(_json(), allowed, errors), errors


def _identity(data: dict, errors: pl.Errors) -> str | None:
    """The item an action is about: ``internet_message_id`` (or, for a meeting without one,
    its ``ical_uid`` as the context gave it, or its ``item_id``)."""
    given = [k for k in ("internet_message_id", "item_id", "ical_uid") if data.get(k) is not None]
    if len(given) != 1:
        errors.add("internet_message_id", N_("Give the item's internet_message_id (or item_id for a meeting)."))
        return None
    key = given[0]
    limit = {"internet_message_id": pl.MESSAGE_ID_MAX, "ical_uid": pl.UID_MAX}.get(key, pl.ID_MAX)
    value = pl.text(data[key], key, errors, limit=limit, required=True)
    if key == "item_id" and value:  # a meeting: known by its UID where it can be found
        return meetings.meeting_uid(g.api_user, value) or value
    return value


def _done(payload: dict[str, Any], status: int = 200):
    db.session.commit()
    return jsonify(payload), status


def _org() -> Organization:
    return db.session.get(Organization, 1)


# -- endpoints ---------------------------------------------------------------------------------

@bp.post("/context")
def context():
    data, errors = _parse(("item",))
    item = pl.item(data.get("item"), errors)
    errors.raise_if_any()
    item = meetings.with_uid(g.api_user, item)
    answer = pane_context.context(_p(), item)
    if item is not None and item.ical_uid:  # the pane names the meeting by it from now
        answer["ical_uid"] = item.ical_uid
    return _done(answer)


@bp.get("/related/<kind>/<int:record_id>")
def related(kind: str, record_id: int):
    return jsonify({"related": pane_context.related(_p(), kind, record_id)})


@bp.post("/track")
def track():
    org = _org()
    data, errors = _parse(("item", "regarding"))
    item = pl.item(data.get("item"), errors, with_content=True,
                   max_attachment_bytes=org.attachment_max_bytes)
    regarding = pl.regarding(data.get("regarding"), "regarding", errors)
    errors.raise_if_any()
    return _done(actions.track(_p(), meetings.with_uid(g.api_user, item), regarding))


@bp.post("/pending")
def pending():
    data, errors = _parse(("item", "regarding"))
    item = pl.item(data.get("item"), errors)
    regarding = pl.regarding(data.get("regarding"), "regarding", errors)
    errors.raise_if_any()
    return _done(actions.mark_pending(_p(), meetings.with_uid(g.api_user, item), regarding))


@bp.put("/regarding")
def regarding():
    data, errors = _parse(("internet_message_id", "item_id", "ical_uid", "regarding"))
    identity = _identity(data, errors)
    if "regarding" not in data:
        errors.add("regarding", 'Give {"type", "id"}, or null to clear it.')
    target = pl.regarding(data.get("regarding"), "regarding", errors)
    errors.raise_if_any()
    return _done({"tracking": actions.set_regarding(_p(), identity, target)})


@bp.post("/untrack")
def untrack():
    data, errors = _parse(("internet_message_id", "item_id", "ical_uid", "delete_copy"))
    identity = _identity(data, errors)
    delete_copy = pl.boolean(data.get("delete_copy", pl.MISSING), "delete_copy", errors)
    errors.raise_if_any()
    return _done(actions.untrack(_p(), identity, delete_copy))


@bp.get("/search")
def search():
    errors = pl.Errors()
    for key in request.args:
        if key not in ("q", "types", "limit"):
            errors.add(key, N_("Unknown parameter."))
        elif len(request.args.getlist(key)) > 1:
            errors.add(key, N_("Give this parameter once."))
    q = (request.args.get("q") or "").strip()
    if not q:
        errors.add("q", N_("Type something to search for."))
    elif len(q) > SEARCH_MAX:
        errors.add("q", N_("At most %(count)s characters.") % {"count": SEARCH_MAX})
    types = [t for t in (request.args.get("types") or ",".join(actions.SEARCH_TYPES)).split(",") if t]
    if not types or any(t not in actions.SEARCH_TYPES for t in types):
        errors.add("types", N_("A comma-separated list of: %(choices)s.") % {"choices": ', '.join(actions.SEARCH_TYPES)})
    raw_limit = request.args.get("limit", "20")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= 50:
        errors.add("limit", N_("A whole number from 1 to 50."))
    errors.raise_if_any()
    return jsonify({"results": actions.search(_p(), q, tuple(dict.fromkeys(types)), int(raw_limit))})


@bp.post("/records/<kind>")
def quick_create(kind: str):
    if kind not in actions.QUICK_CREATE_TYPES:
        raise Invalid(N_("Contacts, leads, opportunities and cases can be created here."),
                      {"type": N_("Unsupported record type.")})
    data, errors = _parse(("fields", "set_regarding_for", "new_account"))
    fields = data.get("fields")
    if not isinstance(fields, dict):
        errors.add("fields", N_("Expected an object with field values."))
    target = data.get("set_regarding_for")
    target = pl.text(target, "set_regarding_for", errors, limit=pl.MESSAGE_ID_MAX) if target is not None else None
    new_account = data.get("new_account")
    if new_account is not None and not (isinstance(new_account, dict)
                                        and set(new_account) <= {"name", "website"}):
        errors.add("new_account", N_("Expected an object with the account's name and website."))
    errors.raise_if_any()
    return _done(actions.quick_create(_p(), kind, fields, target or None, new_account), 201)


ACTIVITY_FIELDS = ("subject", "description", "scheduled_end", "phone_number")


@bp.post("/activities/<kind>")
def quick_activity(kind: str):
    if kind not in actions.QUICK_ACTIVITY_TYPES:
        raise Invalid(N_("Tasks and phone calls can be created here."), {"type": N_("Unsupported activity type.")})
    data, errors = _parse(("fields", "regarding"))
    raw = data.get("fields")
    fields: dict[str, Any] = {}
    if pl.mapping(raw, "fields", ACTIVITY_FIELDS, errors) is not None:
        fields["subject"] = pl.text(raw.get("subject", pl.MISSING), "fields.subject", errors,
                                    limit=400, required=True)
        fields["description"] = pl.text(raw.get("description", pl.MISSING), "fields.description",
                                        errors, limit=20000, multiline=True)
        fields["scheduled_end"] = pl.when(raw.get("scheduled_end", pl.MISSING), "fields.scheduled_end", errors)
        if "phone_number" in raw:
            fields["phone_number"] = pl.text(raw["phone_number"], "fields.phone_number", errors, limit=50)
    target = pl.regarding(data.get("regarding"), "regarding", errors)
    errors.raise_if_any()
    return _done(actions.quick_activity(_p(), kind, fields, target), 201)


@bp.post("/signout")
def signout():
    """Revoke the pane token the request was made with (an SSO token is Microsoft's)."""
    row = g.get("api_token")
    if g.get("addin_auth") == "pane" and row is not None:
        actions.revoke_pane_token(row)
    return _done({"signed_out": True})


def init_app(app) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
    if "regarding_sso" not in app.extensions:
        sso.init_app(app)
