"""Secrets at rest: mailbox passwords, client secrets and refresh tokens are stored encrypted
(Fernet: AES-128-CBC + HMAC-SHA256) with the key from ``REGARDING_ENCRYPTION_KEY``.

Several comma-separated keys may be given: the first encrypts, all decrypt (key rotation).
"""
from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text, TypeDecorator

_box: MultiFernet | None = None


def init_app(app) -> None:
    global _box
    keys = [k.strip() for k in app.config["REGARDING_ENCRYPTION_KEY"].split(",") if k.strip()]
    _box = MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plain: str) -> str:
    assert _box is not None, "create_app() sets the encryption key"
    return _box.encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    assert _box is not None, "create_app() sets the encryption key"
    try:
        return _box.decrypt(token.encode()).decode()
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
