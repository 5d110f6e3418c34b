"""Bearer tokens for the REST API and the add-in pane: random, shown once, stored as SHA-256,
with an expiry, revocable."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import cache

from flask import has_request_context
from sqlalchemy import bindparam, select
from sqlalchemy.orm import contains_eager

from server.crm.models import Organization
from server.db import db, prepared_statement, utcnow
from server.security import stamp
from server.security.models import ApiToken, User

PREFIX = {"api": "rgd_", "pane": "rgp_"}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(user: User, name: str, *, days: float = 90, kind: str = "api") -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret, which is never stored or shown again."""
    secret = PREFIX[kind] + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name[:100], kind=kind, token_hash=_digest(secret),
                   prefix=secret[:12], expires_on=utcnow() + timedelta(days=days))
    db.session.add(row)
    db.session.flush()
    return row, secret


@cache
def _by_hash():
    """The token with its user and the organization's security stamp, in one statement
    (built once: every API request runs it)."""
    return prepared_statement(
        select(ApiToken, Organization.security_stamp).join(ApiToken.user)
        .outerjoin(Organization, Organization.id == 1).options(contains_eager(ApiToken.user))
        .where(ApiToken.token_hash == bindparam("token_hash")))


def authenticate(secret: str, kinds: tuple[str, ...] = ("api", "pane")) -> ApiToken | None:
    """The live token row for a presented secret, or None (unknown, revoked, expired, or its
    user is inactive). The caller tells expired from unknown through ``is_expired``. The
    request's security stamp is read with it (``stamp.remember``)."""
    if not secret or len(secret) > 200:
        return None
    found = db.session.execute(_by_hash(), {"token_hash": _digest(secret)}).first()
    row, security_stamp = found if found is not None else (None, None)
    if row is None or row.kind not in kinds or row.revoked_on is not None:
        return None
    if not row.user.is_active:
        return None
    if has_request_context():
        stamp.remember(security_stamp)
    return row


def is_expired(row: ApiToken) -> bool:
    return row.expires_on <= utcnow()


def touch(row: ApiToken) -> None:
    now = utcnow()
    if row.last_used_on is None or (now - row.last_used_on).total_seconds() > 300:
        row.last_used_on = now  # written at most every five minutes


def revoke(row: ApiToken) -> None:
    row.revoked_on = row.revoked_on or utcnow()


def revoke_all(user: User) -> int:
    """Revoke every live API and pane token of the user (password change, deactivation);
    returns how many."""
    rows = db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                     ApiToken.revoked_on.is_(None))).all()
    for row in rows:
        row.revoked_on = utcnow()
    return len(rows)
