"""Server-side browser sessions: sign-in starts one, sign-out ends it, a password change ends
them all. The session and remember-me cookies carry a random key; the database keeps only
its SHA-256, with an expiry (``REGARDING_SESSION_HOURS`` for a plain session,
``REMEMBER_COOKIE_DURATION`` with "remember me")."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from functools import cache

from flask import current_app, has_request_context
from sqlalchemy import and_, bindparam, delete, select

from server.crm.models import Organization
from server.db import db, prepared_statement, utcnow
from server.security import stamp
from server.security.models import User, UserSession


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def lifetime(remember: bool) -> timedelta:
    cfg = current_app.config
    return cfg["REMEMBER_COOKIE_DURATION"] if remember else \
        timedelta(hours=cfg["REGARDING_SESSION_HOURS"])


def start(user: User, *, remember: bool) -> str:
    """A new session for ``user``; returns its key (set on the user for ``get_id``). The
    user's expired sessions are dropped on the way."""
    now = utcnow()
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                                 UserSession.expires_on < now))
    key = secrets.token_urlsafe(32)
    db.session.add(UserSession(user_id=user.id, key_digest=_digest(key), remember=remember,
                               created_on=now, expires_on=now + lifetime(remember)))
    db.session.flush()
    user.session_key = key
    return key


@cache
def _live_user():
    """The user with the session's expiry and the organization's security stamp, in one
    statement (built once: every page request runs it)."""
    return prepared_statement(
        select(User, UserSession.expires_on, Organization.security_stamp)
        .join(UserSession, and_(UserSession.user_id == User.id,
                                UserSession.key_digest == bindparam("key_digest")))
        .outerjoin(Organization, Organization.id == 1)
        .where(User.id == bindparam("user_id")))


def live_user(user_id: int, key: str) -> User | None:
    """The user if ``key`` names an unexpired session of theirs, else None. The request's
    security stamp is read with it (``stamp.remember``), so a page's principal may come
    from the process as the API's does."""
    if not key:
        return None
    found = db.session.execute(_live_user(), {"user_id": user_id,
                                              "key_digest": _digest(key)}).first()
    if found is None or found.expires_on <= utcnow():
        return None
    if has_request_context():
        stamp.remember(found.security_stamp)
    return found.User


def remembered(key: str | None) -> bool:
    """Whether the session was started with "remember me"."""
    return bool(key) and bool(db.session.scalar(select(UserSession.remember).where(
        UserSession.key_digest == _digest(key))))


def end(key: str | None) -> None:
    """End one session (sign-out)."""
    if key:
        db.session.execute(delete(UserSession).where(UserSession.key_digest == _digest(key)))


def end_all(user: User) -> None:
    """End every session of the user (password change, deactivation)."""
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    user.session_key = None
