"""Sign-in, sign-out, password change and API tokens; who the current user is, for pages
(a session cookie) and for the API (a bearer token)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _, ngettext
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from sqlalchemy import and_, func, or_, select

from server.db import db, utcnow
from server.errors import ServiceError
from server.security import authz, delegates, passwords, sessions, throttle, tokens, users
from server.security.models import ApiToken, User
from server.web.languages import localize

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.signin"
login_manager.login_message = "Please sign in to continue."
login_manager.session_protection = "strong"


class Unauthenticated(ServiceError):
    """Sign in first."""
    status, code = 401, "unauthenticated"


class TokenExpired(ServiceError):
    """Your token expired: get a new one."""
    status, code = 401, "token_expired"


@login_manager.user_loader
def _load_user(session_id: str):
    """The user of a session or remember-me cookie: ``user:version:key``, valid while the
    server-side session ``key`` lives (sign-out ends it) and the password has not changed."""
    user_id, version, key = (session_id.split(":") + ["", ""])[:3]
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) <= 18):
        return None
    user = sessions.live_user(int(user_id), key)
    if user is None or not user.is_active or str(user.session_version) != version:
        return None
    user.session_key = key
    return user


def _start_session(user: User, remember: bool) -> None:
    """A new server-side session and the cookies for it."""
    sessions.start(user, remember=remember)
    db.session.commit()
    login_user(user, remember=remember, duration=sessions.lifetime(True))


def bearer_user(kinds: tuple[str, ...] = ("api", "pane")) -> User:
    """The user behind the request's ``Authorization: Bearer`` token (API and add-in API)."""
    header = request.headers.get("Authorization", "")
    scheme, _space, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated(_("Send an API token as 'Authorization: Bearer <token>'."))
    row = tokens.authenticate(secret.strip(), kinds)
    if row is None:
        raise Unauthenticated(_("The token is not valid or was revoked."))
    if tokens.is_expired(row):
        raise TokenExpired()
    tokens.touch(row)
    g.api_token = row
    return row.user


def current_principal() -> authz.Principal:
    """The principal of this request: the bearer token's user on the API, else the session."""
    user = g.get("api_user")
    if user is None:
        if not current_user.is_authenticated:
            raise Unauthenticated()
        user = current_user._get_current_object()
    return authz.principal(user)


def _safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything else (another site, ``//host``, and
    ``/\\host`` or control characters that browsers turn into ``//host``) goes home."""
    if target and not any(c == "\\" or ord(c) < 0x21 or ord(c) == 0x7f for c in target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("pages.home") if "pages.home" in current_app.view_functions else "/"


def _tries_left(remaining: int) -> str:
    """What a failed sign-in adds: the tries left before the pause, and how long it lasts."""
    minutes = max(1, current_app.config["REGARDING_SIGNIN_LOCKOUT_SECONDS"] // 60)
    pause = ngettext("%(num)s minute", "%(num)s minutes", minutes)
    if not remaining:
        return " " + _("Sign-in is now paused for %(pause)s.", pause=pause)
    return " " + ngettext("%(num)s more try before sign-in is paused for %(pause)s.",
                          "%(num)s more tries before sign-in is paused for %(pause)s.",
                          remaining, pause=pause)


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    if request.method == "GET":
        return render_template("signin.html", next=request.args.get("next", ""))
    email = (request.form.get("email") or "").strip().lower()[:320]
    password = request.form.get("password") or ""
    address = request.remote_addr
    counted = throttle.attempt(email, address)  # counted before the check: atomic
    if counted.locked_until is not None:
        minutes = max(1, int((counted.locked_until - utcnow()).total_seconds() // 60) + 1)
        return render_template("signin.html", email=email, next=request.form.get("next", ""),
                               error=ngettext("Too many failed sign-ins. Try again in %(num)s minute.",
                                              "Too many failed sign-ins. Try again in %(num)s minutes.",
                                              minutes)), 429
    user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if not passwords.verify_password(user, password) or not user.is_active:
        throttle.failed(counted, email, address, known=user is not None)
        error = _("The email address or password is not right.") + _tries_left(counted.remaining)
        return render_template("signin.html", email=email, next=request.form.get("next", ""),
                               error=error), 401
    throttle.succeeded(counted)
    session.pop("csrf_token", None)  # a token seen before sign-in is not one after it
    _start_session(user, bool(request.form.get("remember")))
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/signout")
def signout():
    """Ends the session on the server too: its cookies (or copies of them) stop working."""
    if current_user.is_authenticated:
        sessions.end(current_user.session_key)
        db.session.commit()
    logout_user()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.signin"))


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    user: User = current_user._get_current_object()  # not the proxy: login_user keeps it
    new_token = None
    if request.method == "POST":
        action = request.form.get("action")
        if action == "password":
            if not passwords.verify_password(user, request.form.get("current", "")):
                flash(_("Your current password is not right."), "error")
            elif request.form.get("new") != request.form.get("confirm"):
                flash(_("The new passwords do not match."), "error")
            elif problem := passwords.check_password_strength(request.form.get("new", "")):
                flash(localize(problem), "error")
            else:
                remember = sessions.remembered(user.session_key)
                passwords.set_password(user, request.form["new"])
                _start_session(user, remember)  # this browser stays signed in
                flash(_("Your password is changed. Your other sessions are signed out and your "
                        "API and Outlook add-in tokens are revoked."), "success")
        elif action == "preferences":
            users.set_preferences(user, request.form.get("language"), request.form.get("time_zone"))
            db.session.commit()
            flash(_("Your language and time zone are saved."), "success")
        elif action == "create_token":
            try:
                days = max(1, min(int(request.form.get("days") or 90), 366))
            except ValueError:
                days = 90
            name = (request.form.get("name") or "API token").strip()[:100]
            new_token = tokens.issue(user, name, days=days)[1]
            db.session.commit()
        elif action in ("allow_delegate", "remove_delegate"):
            try:
                if action == "allow_delegate":
                    who = delegates.allow(user, request.form.get("email", ""))
                    flash(_("%(name)s may now track email on your behalf.", name=who.full_name),
                          "success")
                else:
                    delegates.remove(user, request.form.get("delegate_id", type=int) or 0)
                    flash(_("They may no longer track on your behalf."), "success")
                db.session.commit()
            except ServiceError as exc:
                db.session.rollback()
                flash(localize(exc.message), "error")
        elif action == "revoke_token":
            row = db.session.get(ApiToken, request.form.get("token_id", type=int) or 0)
            if row is None or row.user_id != user.id:
                abort(404)
            tokens.revoke(row)
            db.session.commit()
            flash(_("Token revoked."), "success")
        if new_token is None:
            return redirect(url_for("auth.profile"))
    # API tokens and the Outlook add-in's pane tokens: both revocable here.
    # Pane tokens that no longer work (expired, or revoked by a sign-out) are not listed.
    rows = db.session.scalars(select(ApiToken).where(
        ApiToken.user_id == user.id,
        or_(ApiToken.kind != "pane", and_(ApiToken.revoked_on.is_(None), ApiToken.expires_on > utcnow())))
        .order_by(ApiToken.created_on.desc())).all()
    return render_template("profile.html", tokens=rows, new_token=new_token, now=utcnow(),
                           delegates=delegates.delegates_of(user))


def init_app(app) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
