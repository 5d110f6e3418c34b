"""Secrets at rest: mailbox passwords, client secrets and refresh tokens are stored encrypted
(Fernet: AES-128-CBC + HMAC-SHA256) with the key from ``REGARDING_ENCRYPTION_KEY``.

Several comma-separated keys may be given: the first encrypts, all decrypt (key rotation).
Each application keeps its own keys (``app.extensions``), so two applications in one process
(tests, a migration beside a server) never encrypt with each other's key.
"""
from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app, has_app_context
from sqlalchemy import Text, TypeDecorator

EXTENSION = "regarding_secrets"
_box: MultiFernet | None = None  # the last application's, for code outside an app context


def _make_box(setting: str) -> MultiFernet:
    keys = [k.strip() for k in setting.split(",") if k.strip()]
    if not keys:
        raise ValueError("REGARDING_ENCRYPTION_KEY holds no key")
    return MultiFernet([Fernet(k.encode()) for k in keys])


def init_app(app) -> None:
    global _box
    _box = app.extensions[EXTENSION] = _make_box(app.config["REGARDING_ENCRYPTION_KEY"])


def _current_box() -> MultiFernet:
    box = current_app.extensions.get(EXTENSION) if has_app_context() else None
    box = box or _box
    assert box is not None, "create_app() sets the encryption key"
    return box


def encrypt(plain: str) -> str:
    return _current_box().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current_box().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("cannot decrypt a stored secret: was REGARDING_ENCRYPTION_KEY changed?") from None


def rotate(token: str) -> str:
    """The same secret encrypted with the first (newest) key, for re-encrypting after a key
    is added in front."""
    try:
        return _current_box().rotate(token.encode()).decode()
    except InvalidToken:
        raise ValueError("cannot decrypt a stored secret: was REGARDING_ENCRYPTION_KEY changed?") from None


class EncryptedText(TypeDecorator):
    """A column whose value is encrypted on the way in and decrypted on the way out."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else encrypt(value)

    def process_result_value(self, value, dialect):
        return None if value is None else decrypt(value)
