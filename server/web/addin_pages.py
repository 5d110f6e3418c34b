"""The Outlook add-in's pages: the task pane and its files (``addin/``), the sign-in dialog
that hands the pane a pane token, the preview (the real pane beside a small mail reader with
sample emails, for anyone without Outlook) and the administrators' page with the manifests.

* ``/addin/taskpane.html`` and ``/addin/<file>``: the pane, served from ``addin/`` with a
  Content-Security-Policy that lets Outlook frame it (``frame-ancestors`` Outlook's hosts)
  and load Office.js from Microsoft's CDN, and nothing else from elsewhere.
* ``/addin/signin``: the page the pane opens with ``displayDialogAsync``. It needs a signed-in
  session (else it sends the user to ``/signin?next=/addin/signin``); its script then POSTs
  (same origin, CSRF token) for a short-lived pane token and passes it to the pane with
  ``Office.context.ui.messageParent``. The token is issued only on that POST, never in HTML.
* ``/addin/preview``: the fixed sample items of ``server.addin.preview``; the pane runs in
  an iframe with ``addin/preview/office-standin.js`` instead of Office.js. ``POST
  /addin/preview/reset`` undoes what trying them did.
* ``/admin/addin``: the XML and JSON manifests for this deployment and how to install them.
"""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, jsonify, make_response, redirect,
                   render_template, request, send_from_directory, url_for)
from flask_login import current_user

from server.addin import actions, manifest, preview as previews
from server.i18n import N_
from server.security import sso
from server.db import db
from server.errors import ServiceError
from server.security import admin as admin_rules
from server.web.auth import current_principal
from server.web.languages import localize, speak

bp = Blueprint("addin_pages", __name__)

ADDIN_DIR = Path(__file__).resolve().parents[2] / "addin"
OFFICE_JS = "https://appsforoffice.microsoft.com/lib/1/hosted/office.js"
STANDIN_JS = "preview/office-standin.js"
# Where Outlook on the web (and the new Outlook for Windows) hosts add-ins, as Microsoft
# documents them; desktop Outlook uses a web view (no framing). The pane also allows
# Outlook's other hosts; the sign-in dialog, which can mint a token with one click, only
# the documented origins (Office opens it as a window; framed only with displayInIframe).
OUTLOOK_WEB_ORIGINS = ("https://outlook.office.com", "https://outlook.office365.com",
                       "https://outlook.live.com")
OUTLOOK_HOSTS = OUTLOOK_WEB_ORIGINS + ("https://*.outlook.com",)
SERVED_SUFFIXES = {".html", ".js", ".css", ".png", ".svg", ".ico", ".woff2"}


def addin_csp(*, outlook: bool = True, framers: tuple[str, ...] = OUTLOOK_HOSTS) -> str:
    """The policy of the add-in's pages: scripts from here and Office.js's CDN, everything
    else (frames included: the preview frames the pane and the dialog) from here; framed by
    Outlook (``framers``) and by this site (the preview), by nobody else."""
    ancestors = " ".join(("'self'",) + (framers if outlook else ()))
    return ("default-src 'self'; script-src 'self' https://appsforoffice.microsoft.com; "
            "style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
            "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {ancestors}")


def _with_csp(response, policy: str, *, cache: str = "no-cache"):
    response.headers["Content-Security-Policy"] = policy
    response.headers["Cache-Control"] = cache
    # Outlook frames the pane; nothing else in this app may be framed (DEFAULT_CSP).
    response.headers.pop("X-Frame-Options", None)
    return response


def _signin_redirect():
    """To the sign-in page, coming back here afterwards."""
    target = request.full_path.rstrip("?") if request.query_string else request.path
    return redirect(url_for("auth.signin", next=target))


# -- the task pane and its files -----------------------------------------------------------------

def _pane_html(office_js: str) -> str:
    """``taskpane.html`` with the Office.js it loads (the preview swaps in its stand-in)."""
    text = (ADDIN_DIR / "taskpane.html").read_text(encoding="utf-8")
    if office_js != OFFICE_JS:
        if text.count(OFFICE_JS) != 1:
            raise RuntimeError("addin/taskpane.html must load Office.js exactly once")
        text = text.replace(OFFICE_JS, office_js)
    return text


@bp.get("/addin/taskpane.html")
def taskpane():
    response = make_response(_pane_html(OFFICE_JS))
    response.mimetype = "text/html"
    return _with_csp(response, addin_csp())


@bp.get("/addin/taskpane-preview.html")
def taskpane_preview():
    """The same pane with the preview's stand-in for Office.js; framed by the preview only."""
    response = make_response(_pane_html(STANDIN_JS))
    response.mimetype = "text/html"
    return _with_csp(response, addin_csp(outlook=False))


@bp.get("/addin/<path:filename>")
def addin_file(filename: str):
    if Path(filename).suffix.lower() not in SERVED_SUFFIXES or filename.endswith("taskpane.html"):
        abort(404)
    response = send_from_directory(ADDIN_DIR, filename, max_age=0)
    if response.mimetype == "application/javascript":
        response.mimetype = "text/javascript"
    return _with_csp(response, addin_csp())


# -- the sign-in dialog ------------------------------------------------------------------------

@bp.get("/addin/signin")
def signin_dialog():
    if not current_user.is_authenticated:
        return _signin_redirect()
    speak(request.args.get("lang"))  # the pane's language (Outlook's), which opened it
    preview = request.args.get("host") == "preview"
    response = make_response(render_template(
        "addin/signin.html", office_js=url_for("addin_pages.addin_file", filename=STANDIN_JS)
        if preview else OFFICE_JS, user=current_user))
    return _with_csp(response, addin_csp(outlook=not preview, framers=OUTLOOK_WEB_ORIGINS),
                     cache="no-store")


DEVICE_COOKIE = "regarding_addin_device"
DEVICE_COOKIE_DAYS = 400


@bp.post("/addin/signin")
def signin_token():
    """A pane token for the signed-in user (the dialog's script asks, with the CSRF token)."""
    if not current_user.is_authenticated:
        return _json_error(401, "unauthenticated", N_("Sign in first."))
    device = request.cookies.get(DEVICE_COOKIE, "")
    if not 20 <= len(device) <= 100:
        device = secrets.token_urlsafe(24)
    try:
        secret, expires_on = actions.issue_pane_token(
            current_user._get_current_object(), hashlib.sha256(device.encode()).hexdigest())
    except ServiceError as exc:
        db.session.rollback()
        return _json_error(exc.status, exc.code, exc.message)
    db.session.commit()
    response = jsonify({"token": secret,
                        "expires_on": expires_on.isoformat().replace("+00:00", "Z")})
    response.headers["Cache-Control"] = "no-store"
    # Names this device (not a secret: it only lets a new sign-in here replace the old token).
    response.set_cookie(DEVICE_COOKIE, device, max_age=DEVICE_COOKIE_DAYS * 86400,
                        path=url_for("addin_pages.signin_token"), httponly=True, samesite="Lax",
                        secure=current_app.config.get("SESSION_COOKIE_SECURE", True))
    return response


def _json_error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": localize(message)}})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the preview -------------------------------------------------------------------------------

@bp.get("/addin/preview")
def preview():
    if not current_user.is_authenticated:
        return _signin_redirect()
    p = current_principal()
    items = previews.samples(p)
    response = make_response(render_template(
        "addin/preview.html", items=items, user=current_user,
        can_use=p.has("use_outlook_addin"),
        home_url=url_for("pages.home") if "pages.home" in current_app.view_functions else "/"))
    return _with_csp(response, addin_csp(outlook=False))


@bp.post("/addin/preview/reset")
def preview_reset():
    """"Reset the preview": what trying the samples did in the CRM is undone (the page then
    forgets its kept samples and loads them again)."""
    if not current_user.is_authenticated:
        return _json_error(401, "unauthenticated", N_("Sign in first."))
    try:
        removed = previews.reset(current_principal())
    except ServiceError as exc:
        db.session.rollback()
        return _json_error(exc.status, exc.code, exc.message)
    db.session.commit()
    response = jsonify({"removed": removed})
    response.headers["Cache-Control"] = "no-store"
    return response


# -- administrators: the manifests ---------------------------------------------------------------

def _base_url() -> str:
    return (current_app.config.get("REGARDING_BASE_URL") or request.host_url).rstrip("/")


def _require_admin():
    if not current_user.is_authenticated:
        return _signin_redirect()
    admin_rules.require_manage(current_principal(), "organization")
    return None


def _rendered(kind: str) -> tuple[bytes | str, str, str]:
    """(content, mimetype, filename) of a manifest for this deployment; ValueError when the
    base URL cannot serve an add-in (Outlook needs https)."""
    base = _base_url()
    settings = manifest.ManifestSettings.from_config(current_app.config)
    host = urlsplit(manifest.normalize_base_url(base)).hostname or "regarding"
    if kind == "xml":
        return manifest.render_xml(base, settings), "application/xml", f"regarding-{host}.xml"
    if kind == "json":
        return manifest.render_json(base, settings), "application/json", "manifest.json"
    return manifest.app_package(base, settings), "application/zip", f"regarding-{host}.zip"


@bp.get("/admin/addin")
def admin_addin():
    refused = _require_admin()
    if refused is not None:
        return refused
    base = _base_url()
    problem = None
    xml = None
    try:
        xml, _, _ = _rendered("xml")
    except ValueError as exc:
        problem = str(exc)
    settings = manifest.ManifestSettings.from_config(current_app.config)
    return render_template(
        "addin/admin.html", base=base, problem=problem, settings=settings,
        configured_base=bool(current_app.config.get("REGARDING_BASE_URL")),
        sso_server=sso.is_configured(),
        taskpane_url=base + manifest.TASKPANE_PATH,
        xml_digest=hashlib.sha256(xml.encode()).hexdigest()[:12] if xml else None)


@bp.get("/admin/addin/<any(xml, json, zip):kind>")
def admin_addin_download(kind: str):
    refused = _require_admin()
    if refused is not None:
        return refused
    try:
        content, mimetype, filename = _rendered(kind)
    except ValueError as exc:
        abort(409, str(exc))
    response = make_response(content)
    response.mimetype = mimetype
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app) -> None:
    app.register_blueprint(bp)
