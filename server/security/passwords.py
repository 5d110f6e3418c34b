"""Password hashing (Argon2id) and sign-in throttling after repeated failures."""
from __future__ import annotations

from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import case, or_, update

from server.db import db, utcnow
from server.security.models import SignInThrottle, User

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal who does.
_DUMMY = _hasher.hash("not a password")

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> str | None:
    """A message saying what is wrong with a new password, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if password.isdigit() or password.isalpha() and password.lower() == password:
        return "Mix letters with digits, capitals or symbols."
    return None


def verify_password(user: User | None, password: str) -> bool:
    try:
        if user is None or not user.password_hash:
            _hasher.verify(_DUMMY, password)
            return False
        ok = _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if ok and _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return ok


def set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    user.password_changed_on = utcnow()
    user.session_version = (user.session_version or 0) + 1  # signs out other sessions


def locked_until(keys: list[str]):
    """When any of the keys (email, client address) is locked out, until when."""
    now = utcnow()
    rows = db.session.query(SignInThrottle).filter(SignInThrottle.key.in_(keys)).all()
    times = [r.locked_until for r in rows if r.locked_until and r.locked_until > now]
    return max(times) if times else None


def _upsert(table):
    """INSERT ... ON CONFLICT for the session's database (SQLite and PostgreSQL have it)."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def record_failure(keys: list[str]) -> None:
    """Count a failed sign-in against each key, in the database (one statement per key, so
    parallel guesses cannot lose each other's counts), and lock the keys that reach the
    limit. A count older than the lockout window starts again."""
    cfg = current_app.config
    now = utcnow()
    window = timedelta(seconds=cfg["REGARDING_SIGNIN_LOCKOUT_SECONDS"])
    t = SignInThrottle.__table__
    for key in keys:
        stmt = _upsert(t).values(key=key, failures=1, last_failure_on=now)
        stale = or_(t.c.last_failure_on.is_(None), t.c.last_failure_on < now - window)
        db.session.execute(stmt.on_conflict_do_update(index_elements=[t.c.key], set_={
            "failures": case((stale, 1), else_=t.c.failures + 1), "last_failure_on": now}))
    db.session.execute(update(t).where(t.c.key.in_(keys),
                                       t.c.failures >= cfg["REGARDING_SIGNIN_MAX_FAILURES"])
                       .values(locked_until=now + window))
    db.session.commit()


def clear_failures(keys: list[str]) -> None:
    db.session.query(SignInThrottle).filter(SignInThrottle.key.in_(keys)).delete()
