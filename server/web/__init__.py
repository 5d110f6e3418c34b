"""The web layer: sign-in, pages, the REST API and the add-in API. Views parse input, call one
service, and render; errors from services become typed JSON (API) or an error page."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, g, jsonify, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from server.errors import ServiceError
from server.web import languages
from server.web.params import BoundedIntConverter

csrf = CSRFProtect()

# Frame-ancestors for pages Outlook hosts (the add-in's task pane); others may not be framed.
DEFAULT_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def error_response(status: int, code: str, message: str, fields: dict | None = None):
    """The error as JSON (API) or an error page, its message and fields' problems in the
    request's language."""
    message, fields = languages.localize(message), languages.localize_fields(fields)
    if is_api_request():
        body = {"error": {"code": code, "message": message}}
        if fields:
            body["error"]["fields"] = fields
        return jsonify(body), status
    return render_template("error.html", status=status, message=message, fields=fields or {}), status


def _description(exc: HTTPException) -> str:
    """What an HTTP error says to people: ours, in the reader's language, in place of
    Werkzeug's English default; a description a view gave (``abort(404, ...)``) as it is."""
    if exc.description != type(exc).description:
        return exc.description
    ours = {
        400: _("The request could not be understood. Check what was sent and try again."),
        401: _("Sign in to see this."),
        403: _("You do not have permission to see this."),
        404: _("There is nothing at this address. Check the link, or start from the home page."),
        405: _("This address does not accept that kind of request."),
        409: _("This could not be done in the record's current state."),
        413: _("What was sent is too large."),
        415: _("What was sent is in a format this address does not accept."),
        422: _("What was sent could not be processed."),
        429: _("Too many requests: wait a little, then try again."),
        500: _("Something went wrong on our side. Try again; if it keeps happening, tell your "
               "administrator."),
        503: _("The service is not available right now. Try again in a moment."),
    }
    return ours.get(exc.code or 500, _("The request could not be completed."))


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = BoundedIntConverter  # before any rule is added

    @app.before_request
    def _referer_is_a_url():
        """CSRF checking compares the Referer's origin: one it cannot parse (a port such as
        ``:99999999``) is refused here, before the check (registered first) trips on it."""
        referer = request.headers.get("Referer")
        if referer and request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            try:
                urlsplit(referer).port
            except ValueError:
                raise CSRFError("The Referer header is not a valid URL.") from None

    csrf.init_app(app)
    languages.init_app(app)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        return error_response(exc.status, exc.code, exc.message, exc.fields)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return error_response(400, "csrf", _("The form expired or was not sent by this site. "
                                             "Reload the page and try again."))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        codes = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large",
                 415: "unsupported_media_type", 422: "unprocessable", 429: "rate_limited"}
        code = exc.code or 500
        body, status = error_response(code, codes.get(code, "error"), _description(exc))
        allowed = getattr(exc, "valid_methods", None)  # 405 must say what is allowed
        return body, status, {"Allow": ", ".join(allowed)} if allowed else {}

    @app.after_request
    def _security_headers(response):
        if request.endpoint != "static" and (g.get("api_user") is not None
                                             or current_user.is_authenticated):
            response.headers.setdefault("Cache-Control", "no-store")  # no copies of our data
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
        if request.is_secure or app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
