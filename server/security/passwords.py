"""Password hashing (Argon2id), strength rules and what a new password ends (sessions,
tokens). Sign-in throttling is ``server.security.throttle``."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.db import utcnow
from server.i18n import N_
from server.security import sessions, tokens
from server.security.models import User

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal who does.
_DUMMY = _hasher.hash("not a password")

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> str | None:
    """A message saying what is wrong with a new password, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return N_("Use at least %(count)s characters.", count=MIN_LENGTH)
    if password.isdigit() or password.isalpha() and password.lower() == password:
        return N_("Mix letters with digits, capitals or symbols.")
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
    """A new password ends every session of the user and revokes their API and add-in
    tokens (whoever knew the old password may have made them); the caller starts a new
    session for the one changing their own password."""
    user.password_hash = hash_password(password)
    user.password_changed_on = utcnow()
    user.session_version = (user.session_version or 0) + 1
    sessions.end_all(user)
    tokens.revoke_all(user)
