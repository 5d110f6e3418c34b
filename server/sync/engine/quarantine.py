"""Where a message the engine cannot process goes: the quarantine, kept whole with the
error and the reason (``quarantine``), and the savepoint each piece of work runs in, so a
failure loses that work only (``in_savepoint``). ``safe_detail`` words an error for logs
and reasons without what it may carry of a message (SQL parameters hold its content).
"""
from __future__ import annotations

import hashlib
import logging

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError

from server.db import db
from server.errors import ServiceError
from server.sync.connectors.base import FetchedMessage
from server.sync.engine.content import clean, identity_of
from server.sync.engine.context import MailboxRun
from server.sync.engine.decisions import Outcome, record
from server.sync.engine.folders import FolderInfo
from server.sync.mail.message import parse
from server.sync.models import QuarantinedMessage

log = logging.getLogger(__name__)

__all__ = ["in_savepoint", "quarantine", "quarantine_error", "safe_detail"]


def _ensure_transaction() -> None:
    """Savepoints need a real transaction: SQLite's driver begins one only at the first
    write, and releasing a savepoint opened before that would commit it on its own."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN")


def in_savepoint(work, on_error):
    """``work()`` in a savepoint of the caller's transaction; any error but a lost database
    rolls the savepoint back and gives ``on_error(exc)`` instead."""
    _ensure_transaction()
    try:
        with db.session.begin_nested():
            return work()
    except (OperationalError, InterfaceError):
        raise  # the database itself is unreachable: nothing could be recorded
    except Exception as exc:
        return on_error(exc)


def safe_detail(exc: BaseException) -> str:
    """An error's kind and short text, never the SQL parameters (they hold message content)."""
    if isinstance(exc, StatementError) and exc.orig is not None:
        text = str(exc.orig).splitlines()[0] if str(exc.orig) else ""
        return f"{type(exc.orig).__name__}: {text[:200]}" if text else type(exc.orig).__name__
    if isinstance(exc, ServiceError):
        return f"{type(exc).__name__}: {exc.message[:200]}"
    return type(exc).__name__



def quarantine(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage, code: str,
               reason: str) -> Outcome:
    """Keep a message the engine could not process, whole, with the error (once: the same
    message quarantined again updates its row), and log why it was not tracked."""
    raw = bytes(fetched.raw or b"")
    folder_name = clean(folder.name)[:500] if folder.name else None
    row = db.session.scalar(select(QuarantinedMessage).where(
        QuarantinedMessage.mailbox_id == ctx.mailbox.id, QuarantinedMessage.resolved.is_(False),
        QuarantinedMessage.source_ref == (fetched.ref or "")[:500],
        QuarantinedMessage.folder_name == folder_name if folder_name is not None
        else QuarantinedMessage.folder_name.is_(None),
        QuarantinedMessage.size == len(raw)).order_by(QuarantinedMessage.id).limit(1))
    if row is None:
        row = QuarantinedMessage(mailbox_id=ctx.mailbox.id, folder_name=folder_name,
                                 source_ref=(fetched.ref or "")[:500], raw=raw, size=len(raw))
        db.session.add(row)
    row.error_code, row.reason = code[:40], reason
    msg = None
    try:
        msg = parse(raw)
        identity = identity_of(msg)
    except Exception:  # unreadable: identify the bytes themselves
        identity = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    db.session.flush()
    record(ctx, folder, fetched, msg, identity, tracked=False,
            reason=f"This message could not be processed, so it was quarantined: {reason}",
            hits=[{"rule": "quarantine", "matched": True}], method=None, rule="quarantine")
    return Outcome("quarantined", reason, identity, quarantine_id=row.id, rule="quarantine")


def quarantine_error(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
                     exc: Exception) -> Outcome:
    """Quarantine a message whose processing failed unexpectedly (code ``internal``), with a
    reason that names the error, never the message's content."""
    detail = safe_detail(exc)
    log.error("mailbox %s: message %s in %r could not be processed (%s)",
              ctx.mailbox.id, fetched.ref, folder.name, detail)
    return quarantine(ctx, folder, fetched, "internal",
                      "Regarding could not process this message because of an internal "
                      f"error ({detail}). It is kept here and can be retried.")
