"""Configuration: defaults, the instance folder and ``REGARDING_*`` environment variables.

Order of precedence (last wins): the defaults below, ``instance/config.py``, environment
variables, then the mapping passed to ``create_app(config)``. Every key is documented in
``.env.sample``. Secrets that are not given are generated once into the instance folder so
that a fresh checkout runs without any set-up.
"""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

# Environment variable -> (config key, parser). One place lists every key we read.
ENV_KEYS: dict[str, tuple[str, Any]] = {
    "REGARDING_SECRET_KEY": ("SECRET_KEY", str),
    "REGARDING_DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "REGARDING_ENCRYPTION_KEY": ("REGARDING_ENCRYPTION_KEY", str),
    "REGARDING_BASE_URL": ("REGARDING_BASE_URL", str),
    "REGARDING_TLS_CERT": ("REGARDING_TLS_CERT", str),
    "REGARDING_TLS_KEY": ("REGARDING_TLS_KEY", str),
    "REGARDING_ATTACHMENT_STORAGE": ("REGARDING_ATTACHMENT_STORAGE", str),
    "REGARDING_MAILDIR_ROOT": ("REGARDING_MAILDIR_ROOT", str),  # default instance/maildir
    "REGARDING_MAX_REQUEST_BYTES": ("MAX_CONTENT_LENGTH", int),
    "REGARDING_SECURE_COOKIES": ("SESSION_COOKIE_SECURE", lambda v: v.lower() in ("1", "true", "yes")),
    "REGARDING_SIGNIN_MAX_FAILURES": ("REGARDING_SIGNIN_MAX_FAILURES", int),
    "REGARDING_SIGNIN_LOCKOUT_SECONDS": ("REGARDING_SIGNIN_LOCKOUT_SECONDS", int),
    "REGARDING_SESSION_HOURS": ("REGARDING_SESSION_HOURS", int),
    "REGARDING_SIGNIN_ACCOUNT_MAX_FAILURES": ("REGARDING_SIGNIN_ACCOUNT_MAX_FAILURES", int),
    "REGARDING_SIGNIN_ADDRESS_MAX_FAILURES": ("REGARDING_SIGNIN_ADDRESS_MAX_FAILURES", int),
    "REGARDING_ADDIN_ID": ("REGARDING_ADDIN_ID", str),
    "REGARDING_SSO_CLIENT_ID": ("REGARDING_SSO_CLIENT_ID", str),
    "REGARDING_SSO_CLIENT_SECRET": ("REGARDING_SSO_CLIENT_SECRET", str),
    "REGARDING_SSO_TENANT": ("REGARDING_SSO_TENANT", str),
    "REGARDING_SSO_RESOURCE": ("REGARDING_SSO_RESOURCE", str),
    "REGARDING_LOG_LEVEL": ("REGARDING_LOG_LEVEL", str),
    "REGARDING_INSTANCE_DIR": ("REGARDING_INSTANCE_DIR", str),
    "REGARDING_BEHIND_PROXY": ("REGARDING_BEHIND_PROXY", lambda v: v.lower() in ("1", "true", "yes")),
    "REGARDING_ADDIN_VERSION": ("REGARDING_ADDIN_VERSION", str),
    "REGARDING_ADDIN_SUPPORT_URL": ("REGARDING_ADDIN_SUPPORT_URL", str),
    "REGARDING_SSO_AUTHORITY": ("REGARDING_SSO_AUTHORITY", str),
    "REGARDING_GRAPH_NOTIFICATION_URL": ("REGARDING_GRAPH_NOTIFICATION_URL", str),
    "REGARDING_SEND_MAX_ATTEMPTS": ("REGARDING_SEND_MAX_ATTEMPTS", int),
    # Sync alerts by email (server.sync.admin.alert_mail)
    "REGARDING_ALERTS_FROM": ("REGARDING_ALERTS_FROM", str),
    "REGARDING_ALERT_EMAIL_MINUTES": ("REGARDING_ALERT_EMAIL_MINUTES", int),
    "REGARDING_SYNC_MAX_FAILURES": ("REGARDING_SYNC_MAX_FAILURES", int),
    "REGARDING_SYNC_RETRY_SECONDS": ("REGARDING_SYNC_RETRY_SECONDS", int),
    "REGARDING_SYNC_INTERVAL_SECONDS": ("REGARDING_SYNC_INTERVAL_SECONDS", int),
    "REGARDING_SYNC_BUSY_INTERVAL_SECONDS": ("REGARDING_SYNC_BUSY_INTERVAL_SECONDS", int),
    "REGARDING_SYNC_IDLE_INTERVAL_SECONDS": ("REGARDING_SYNC_IDLE_INTERVAL_SECONDS", int),
    # Workers (server.sync.workers.scheduler, server.sync.workers.worker; defaults there)
    "REGARDING_SYNC_LEASE_SECONDS": ("REGARDING_SYNC_LEASE_SECONDS", int),
    "REGARDING_SYNC_POLL_SECONDS": ("REGARDING_SYNC_POLL_SECONDS", float),
    "REGARDING_SYNC_BATCH_SIZE": ("REGARDING_SYNC_BATCH_SIZE", int),
    "REGARDING_SYNC_RUN_MESSAGES": ("REGARDING_SYNC_RUN_MESSAGES", int),
    "REGARDING_SYNC_IDLE_BATCH": ("REGARDING_SYNC_IDLE_BATCH", int),
    "REGARDING_SYNC_RUN_DAYS": ("REGARDING_SYNC_RUN_DAYS", int),
    # Where workers LISTEN for mailboxes asked for (server.sync.workers.wake_listener;
    # unset: REGARDING_DATABASE_URL)
    "REGARDING_SYNC_LISTEN_URL": ("REGARDING_SYNC_LISTEN_URL", str),
    # The parse pool's processes (server.sync.engine.pool; unset: one per core, 0: in-process)
    "REGARDING_SYNC_PARSE_PROCESSES": ("REGARDING_SYNC_PARSE_PROCESSES", int),
    "REGARDING_SYNC_PUSH": ("REGARDING_SYNC_PUSH", lambda v: v.lower() in ("1", "true", "yes")),
    "REGARDING_SYNC_PUSH_MAX": ("REGARDING_SYNC_PUSH_MAX", int),
}


def defaults(instance_path: Path) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance_path / 'regarding.db'}",
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        "MAX_CONTENT_LENGTH": 32 * 1024 * 1024,  # add-in tracking posts bodies + attachments
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": True,  # the server is served over HTTPS, even locally
        "REMEMBER_COOKIE_SECURE": True,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_DURATION": timedelta(days=14),  # "remember me": two weeks, not a year
        "REGARDING_SESSION_HOURS": 12,  # a session without "remember me" ends after this
        "WTF_CSRF_TIME_LIMIT": None,  # tied to the session instead of a clock
        "REGARDING_ATTACHMENT_STORAGE": "db",  # or "disk" (instance/attachments)
        "REGARDING_SIGNIN_MAX_FAILURES": 5,  # one account from one client address
        "REGARDING_SIGNIN_ACCOUNT_MAX_FAILURES": 50,  # one account from anywhere
        "REGARDING_SIGNIN_ADDRESS_MAX_FAILURES": 100,  # one client address (an office)
        "REGARDING_SIGNIN_LOCKOUT_SECONDS": 300,
        "REGARDING_API_TOKEN_DAYS": 90,
        "REGARDING_PAGE_SIZE": 25,
        "REGARDING_LOG_LEVEL": "INFO",
        # Sync: a mailbox failing this many times in a row (5 minutes apart) is turned off,
        # as Dynamics does; the interval between runs is dynamic between busy and idle.
        "REGARDING_SYNC_MAX_FAILURES": 10,
        "REGARDING_SYNC_RETRY_SECONDS": 300,
        "REGARDING_SYNC_INTERVAL_SECONDS": 300,
        "REGARDING_SYNC_BUSY_INTERVAL_SECONDS": 120,
        "REGARDING_SYNC_IDLE_INTERVAL_SECONDS": 720,
        # Alert emails: sent from this mailbox's address (unset: none), one digest per
        # person at most every so many minutes.
        "REGARDING_ALERTS_FROM": None,
        "REGARDING_ALERT_EMAIL_MINUTES": 60,
    }


def instance_secret(instance_path: Path, name: str, make) -> str:
    """Read a secret from the instance folder, creating it (mode 0600) on first use."""
    path = instance_path / name
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def from_environ(environ: dict[str, str] | os._Environ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for env, (key, parse) in ENV_KEYS.items():
        if environ.get(env):
            out[key] = parse(environ[env])
    return out


def load(app, overrides: dict[str, Any] | None) -> None:
    """Fill ``app.config`` in order of precedence and generate missing secrets."""
    instance = Path(app.instance_path)
    app.config.from_mapping(defaults(instance))
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(from_environ(os.environ))
    app.config.update(overrides or {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(instance, "secret_key", lambda: secrets.token_hex(32))
    if not app.config.get("REGARDING_ENCRYPTION_KEY"):
        from cryptography.fernet import Fernet

        app.config["REGARDING_ENCRYPTION_KEY"] = instance_secret(
            instance, "encryption_key", lambda: Fernet.generate_key().decode()
        )
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("postgres://"):  # Heroku-style URLs
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
