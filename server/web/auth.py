"""Sign-in, sign-out, password change and API tokens; who the current user is, for pages
(a session cookie) and for the API (a bearer token)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from server.db import db, utcnow
from server.errors import ServiceError
from server.security import authz, passwords, tokens
from server.security.models import ApiToken, User

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
    user_id, _, version = session_id.partition(":")
    if not (user_id.isascii() and user_id.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active or str(user.session_version) != version:
        return None
    return user


def bearer_user(kinds: tuple[str, ...] = ("api", "pane")) -> User:
    """The user behind the request's ``Authorization: Bearer`` token (API and add-in API)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("Send an API token as 'Authorization: Bearer <token>'.")
    row = tokens.authenticate(secret.strip(), kinds)
    if row is None:
        raise Unauthenticated("The token is not valid or was revoked.")
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


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    if request.method == "GET":
        return render_template("signin.html", next=request.args.get("next", ""))
    email = (request.form.get("email") or "").strip().lower()[:320]
    password = request.form.get("password") or ""
    keys = [f"email:{email}", f"ip:{request.remote_addr}"]
    until = passwords.locked_until(keys)
    if until is not None:
        minutes = max(1, int((until - utcnow()).total_seconds() // 60) + 1)
        return render_template("signin.html", email=email, next=request.form.get("next", ""),
                               error=f"Too many failed sign-ins. Try again in {minutes} minute"
                                     f"{'s' if minutes > 1 else ''}."), 429
    user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if not passwords.verify_password(user, password) or not user.is_active:
        passwords.record_failure(keys)
        current_app.logger.info("failed sign-in for an account (%s)", "known" if user else "unknown")
        return render_template("signin.html", email=email, next=request.form.get("next", ""),
                               error="The email address or password is not right."), 401
    passwords.clear_failures(keys[:1])  # the account's count; the address's runs its window
    db.session.commit()
    session.pop("csrf_token", None)  # a token seen before sign-in is not one after it
    login_user(user, remember=bool(request.form.get("remember")))
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/signout")
def signout():
    logout_user()
    flash("You are signed out.", "info")
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
                flash("Your current password is not right.", "error")
            elif request.form.get("new") != request.form.get("confirm"):
                flash("The new passwords do not match.", "error")
            elif problem := passwords.check_password_strength(request.form.get("new", "")):
                flash(problem, "error")
            else:
                passwords.set_password(user, request.form["new"])
                db.session.commit()
                login_user(user)  # keep this session; others end with the version bump
                flash("Your password is changed. Other sessions are signed out.", "success")
        elif action == "create_token":
            try:
                days = max(1, min(int(request.form.get("days") or 90), 366))
            except ValueError:
                days = 90
            name = (request.form.get("name") or "API token").strip()[:100]
            _, new_token = tokens.issue(user, name, days=days)
            db.session.commit()
        elif action == "revoke_token":
            row = db.session.get(ApiToken, request.form.get("token_id", type=int) or 0)
            if row is None or row.user_id != user.id:
                abort(404)
            tokens.revoke(row)
            db.session.commit()
            flash("Token revoked.", "success")
        if new_token is None:
            return redirect(url_for("auth.profile"))
    # API tokens and the Outlook add-in's pane tokens: both revocable here.
    rows = db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                              .order_by(ApiToken.created_on.desc())).all()
    return render_template("profile.html", tokens=rows, new_token=new_token, now=utcnow())


def init_app(app) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
