"""Sign-in throttling: every attempt is counted before its password is checked, in one
atomic statement per key, so parallel guesses cannot get past the limit. Three counts, each
with its own limit in a window of ``REGARDING_SIGNIN_LOCKOUT_SECONDS``:

* one account from one client address (``REGARDING_SIGNIN_MAX_FAILURES``, 5): a guesser
  locks out only themselves, not the account's owner elsewhere;
* one account from anywhere (``REGARDING_SIGNIN_ACCOUNT_MAX_FAILURES``, 50): guessing spread
  over many addresses stops too; locking the owner out that way costs many requests, each
  counted against the guesser's addresses as well;
* one client address for any account (``REGARDING_SIGNIN_ADDRESS_MAX_FAILURES``, 100): an
  office behind one address gets far more than one person.

A locked count is left alone until its lock ends (attempts meanwhile neither count nor extend
it). A successful sign-in clears the account's counts and takes its own attempt off the
address's. Failures are logged with the account and the client address, never a password.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, delete, or_, update

from server.db import db, utcnow
from server.security.models import SignInThrottle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """The outcome of counting one attempt: refused until ``locked_until``, else allowed with
    ``remaining`` tries after this one."""
    keys: dict[str, int]
    locked_until: datetime | None
    remaining: int


def _keys(email: str, address: str | None) -> dict[str, int]:
    cfg = current_app.config
    return {f"account:{email}|{address}": cfg["REGARDING_SIGNIN_MAX_FAILURES"],
            f"email:{email}": cfg["REGARDING_SIGNIN_ACCOUNT_MAX_FAILURES"],
            f"ip:{address}": cfg["REGARDING_SIGNIN_ADDRESS_MAX_FAILURES"]}


def _upsert(table):
    """INSERT ... ON CONFLICT for the session's database (SQLite and PostgreSQL have it)."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def attempt(email: str, address: str | None) -> Attempt:
    """Count a sign-in attempt for ``email`` from ``address`` and commit (before the password
    is checked: whoever is over a limit is refused without a check)."""
    now = utcnow()
    window = timedelta(seconds=current_app.config["REGARDING_SIGNIN_LOCKOUT_SECONDS"])
    t = SignInThrottle.__table__
    keys = _keys(email, address)
    locked: list[datetime] = []
    remaining = []
    for key, limit in keys.items():
        is_locked = t.c.locked_until > now
        stale = or_(t.c.last_failure_on.is_(None), t.c.last_failure_on < now - window)
        stmt = _upsert(t).values(key=key, failures=1, last_failure_on=now)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.key], set_={
            "failures": case((is_locked, t.c.failures), (stale, 1), else_=t.c.failures + 1),
            "last_failure_on": case((is_locked, t.c.last_failure_on), else_=now),
            "locked_until": case((is_locked, t.c.locked_until), else_=None)})
        failures, until = db.session.execute(
            stmt.returning(t.c.failures, t.c.locked_until)).one()
        if until is not None and until > now:
            locked.append(until)
        elif failures > limit:
            db.session.execute(update(t).where(t.c.key == key).values(locked_until=now + window))
            locked.append(now + window)
        remaining.append(limit - failures)
    db.session.commit()
    return Attempt(keys, max(locked) if locked else None, max(0, min(remaining)))


def failed(result: Attempt, email: str, address: str | None, *, known: bool) -> None:
    """Log a failed sign-in (the attempt is counted already)."""
    log.warning("failed sign-in for %s (%s account) from %s; %d tries left", email,
                "known" if known else "unknown", address, result.remaining)


def succeeded(result: Attempt) -> None:
    """Clear the account's counts; the attempt no longer counts against the address."""
    account, email, ip = result.keys
    t = SignInThrottle.__table__
    db.session.execute(delete(t).where(t.c.key.in_([account, email])))
    db.session.execute(update(t).where(t.c.key == ip, t.c.failures > 0, t.c.locked_until.is_(None))
                       .values(failures=t.c.failures - 1))
