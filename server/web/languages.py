"""Which language and time zone a request is served in, and the pane's strings.

The language is the signed-in user's own setting, else the browser's ``Accept-Language``,
else the organization's default, else English; the time zone the user's, else the
organization's, else UTC. Flask-Babel formats dates, numbers and amounts for that locale
(the ``datetimeformat``, ``dateformat`` filters and ``format_*`` helpers in templates). The
pane reads its strings as one small JSON per language, cached by the browser and revalidated
by ETag (``/addin/strings/<language>.json``).
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path

from babel import Locale

from flask import Blueprint, Flask, Response, abort, g, has_request_context, request
from flask_babel import Babel, format_decimal, get_locale, get_timezone
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from server.crm.models import Organization
from server.crm import registry
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.i18n import (LANGUAGES, Message, compile_catalogs, format_moment, language_of,
                         pane_catalog, time_zones, translate, translate_stored)

bp = Blueprint("languages", __name__)


def _organization() -> Organization | None:
    if "regarding_org" not in g:
        try:
            g.regarding_org = db.session.get(Organization, 1)
        except SQLAlchemyError:  # no schema yet (an error page before set-up): the defaults
            db.session.rollback()
            g.regarding_org = None
    return g.regarding_org


def _user():
    """The signed-in user: the page's, or the API's (a bearer token, the add-in's pane)."""
    if getattr(current_user, "is_authenticated", False):
        return current_user
    return g.get("api_user")


def request_language() -> str:
    """The request's language code (one of ``server.i18n.LANGUAGES``)."""
    if not has_request_context():
        return "en"
    if "regarding_language" in g:
        return g.regarding_language
    user = _user()
    chosen = language_of(getattr(user, "language", None)) if user is not None else None
    if chosen is None:
        chosen = next((language_of(tag) for tag, _ in request.accept_languages
                       if language_of(tag)), None)
    if chosen is None:
        org = _organization()
        chosen = language_of(org.default_language) if org is not None else None
    g.regarding_language = chosen or "en"
    return g.regarding_language


def speak(tag: str | None) -> None:
    """Serve this request in ``tag``'s language when the product speaks it (a page opened by
    a surface that knows its reader's language: the add-in's sign-in dialog, opened by the
    pane in Outlook's); call it before anything is translated."""
    chosen = language_of(tag) if has_request_context() else None
    if chosen is not None:
        g.regarding_language = chosen


def _select_locale() -> str:
    return LANGUAGES[request_language()][0]


def _select_timezone() -> str:
    if not has_request_context():
        return "UTC"
    user = _user()
    zone = getattr(user, "time_zone", None) if user is not None else None
    if not zone:
        org = _organization()
        zone = org.default_time_zone if org is not None else None
    return zone or "UTC"


@bp.app_template_filter("local")
def local(moment: datetime | date | None, kind: str = "datetime") -> str:
    """A stored time (UTC, naive or aware) as the reader reads it: in the request's locale
    and time zone (a date alone stays that date)."""
    if moment is None:
        return ""
    if kind.startswith("%"):  # a strftime pattern from before: what it showed, localized
        kind = "date" if "%H" not in kind else "datetime" if "%Y" in kind else "recent"
    return format_moment(moment, get_locale() or Locale("en"), get_timezone(), kind)


@bp.app_template_filter("number")
def number(value: int | float | None) -> str:
    """A count or amount written the reader's way (``12,345``, ``12 345``, ``12\u00a0345``)."""
    return "" if value is None else format_decimal(value)


@bp.app_template_filter("stored_text")
def localize(text: str | None) -> str:
    """A sentence for people in the reader's language. A ``server.i18n.Message`` (a lower
    floor's, marked with ``N_``) is translated, then given its values (values that are
    messages too are translated first); a plain string, such as a sentence stored in
    English (a decision's reason, an alert), is read back through the catalogs
    (``server.i18n.translate_stored``); what no catalog string made stays as it is."""
    if not text or not has_request_context():
        return text or ""
    if isinstance(text, Message):
        values = {name: localize(value) if isinstance(value, Message) else value
                  for name, value in text.values.items()}
        template = translate(request_language(), text.source)
        try:
            return template % values if values else template
        except (KeyError, ValueError, TypeError):  # a translation with broken placeholders
            return text.source % values if values else text.source
    return translate_stored(request_language(), text)


@bp.app_template_filter("choice_label")
def choice_label(value: str | None) -> str:
    """A choice field's stored value (``in_progress``) as the reader reads it (``In
    progress``, ``Probíhá``); a value without a label reads as it is stored."""
    return localize(registry.choice_label(value))


@bp.app_template_filter("type_label")
def type_label(name: str | None, noun: bool = False) -> str:
    """A record type's key (``account``) as the reader reads it: its label (``Firma``), or
    with ``noun=True`` its name inside a sentence (``firma``); another key as it is."""
    rt = RECORD_TYPES.get(name or "")
    if rt is None:
        return (name or "").replace("_", " ")
    return localize(rt.noun if noun else rt.label)


def _finalize(value):
    """What ``{{ value }}`` prints: a marked message (a record type's or field's label from
    ``server.crm.registry``, a service's message) in the reader's language."""
    return localize(value) if isinstance(value, Message) else value


def localize_fields(fields: dict | None) -> dict:
    """A form's problems ({field: sentence}) in the reader's language (``localize``)."""
    return {key: localize(text) if isinstance(text, str) else text
            for key, text in (fields or {}).items()}


@bp.get("/addin/strings/<language>.json")
def pane_strings(language: str) -> Response:
    """The pane's translations for one language: {English: translation}."""
    if language not in LANGUAGES:
        abort(404)
    body = json.dumps(pane_catalog(language), ensure_ascii=False, sort_keys=True)
    etag = hashlib.sha256(body.encode()).hexdigest()[:32]
    response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response.make_conditional(request)


def init_app(app: Flask) -> None:
    compiled = Path(app.instance_path) / "translations"
    compile_catalogs(compiled)
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compiled)
    Babel(app, locale_selector=_select_locale, timezone_selector=_select_timezone)
    app.register_blueprint(bp)
    app.jinja_env.finalize = _finalize

    @app.context_processor
    def _language():
        return {"page_language": request_language(), "page_locale": str(get_locale() or "en"),
                "languages": {code: name for code, (_, name) in LANGUAGES.items()},
                "time_zone_choices": [(zone, zone.replace("_", " ")) for zone in time_zones()]}
