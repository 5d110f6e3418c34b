"""The REST API, ``/api/v1/``: CRM records, activities, address resolution and the caller's
own profile, described by an OpenAPI 3.1 document at ``/api/v1/openapi.json``.

Callers authenticate only with a bearer API token (``Authorization: Bearer rgd_...``), never
with the session cookie, so CSRF does not apply. Bodies are JSON; every error is
``{"error": {"code", "message", "fields"?}}`` with a 4xx status.
"""
from __future__ import annotations

from flask import Blueprint, Flask, g, request
from sqlalchemy.exc import DataError, IntegrityError

from server.db import db, statements_commit_alone
from server.errors import Conflict, Invalid, ServiceError
from server.i18n import N_
from server.web.api import (activities, email_templates, mail_files, mailboxes, misc, openapi,
                            queues, records)
from server.web.api.common import limit_body
from server.web.auth import bearer_user

bp = Blueprint("api", __name__, url_prefix="/api/v1")

PUBLIC_ENDPOINTS = {"api.openapi"}
KB, MB = 1024, 1024 * 1024
# Body limits per kind of endpoint (capped by MAX_CONTENT_LENGTH): emails carry HTML bodies.
BODY_LIMITS = {"activity_create": 10 * MB, "activity_update": 10 * MB,
               "email_file_upload": 26 * MB}  # a 25 MB file and its form encoding
RECORD_BODY_LIMIT = 1 * MB
DEFAULT_BODY_LIMIT = 64 * KB


def _body_limit(endpoint: str) -> int:
    action = endpoint.rpartition(".")[2]
    if action in BODY_LIMITS:
        return BODY_LIMITS[action]
    if action.endswith(("_create", "_update")):
        return RECORD_BODY_LIMIT
    return DEFAULT_BODY_LIMIT


@bp.before_request
def _authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    reads = request.method in ("GET", "HEAD")
    if reads:  # on PostgreSQL without BEGIN and ROLLBACK round trips
        statements_commit_alone()
    g.api_user = bearer_user(kinds=("api",))
    if db.session.dirty:  # the token's last-used time
        db.session.commit()
        if reads:  # (the commit gave the connection back)
            statements_commit_alone()
    limit_body(_body_limit(request.endpoint or ""))


# Markup characters are sent as JSON escapes, so user data can never read as HTML even to a
# client that ignores the content type (as JSON, the text is the same).
_JSON_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"))


@bp.after_request
def _api_headers(response):
    response.headers.setdefault("Cache-Control", "no-store")
    if response.mimetype == "application/json" and not response.is_streamed:
        body = response.get_data()
        for raw, escaped in _JSON_ESCAPES:
            body = body.replace(raw, escaped)
        response.set_data(body)
    if response.status_code == 401:
        error = ', error="invalid_token"' if request.headers.get("Authorization") else ""
        response.headers["WWW-Authenticate"] = f'Bearer realm="regarding"{error}'
    return response


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    """Whatever a failed call changed in the session is dropped before answering."""
    db.session.rollback()
    from server.web import error_response
    return error_response(exc.status, exc.code, exc.message, exc.fields)


@bp.errorhandler(IntegrityError)
def _integrity_error(exc):
    """A constraint the checks did not foresee (a race on a unique value): 409, not 500."""
    db.session.rollback()
    from server.web import error_response
    err = Conflict(N_("This conflicts with existing data."))
    return error_response(err.status, err.code, err.message)


@bp.errorhandler(DataError)
def _data_error(exc):
    db.session.rollback()
    from server.web import error_response
    err = Invalid(N_("A value is out of range for its field."))
    return error_response(err.status, err.code, err.message)


records.register(bp)
activities.register(bp)
mail_files.register(bp)
misc.register(bp)
email_templates.register(bp)
mailboxes.register(bp)
queues.register(bp)
openapi.register(bp)


def init_app(app: Flask) -> None:
    from server.web import csrf
    csrf.exempt(bp)
    app.register_blueprint(bp)
