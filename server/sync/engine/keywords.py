"""Writing the "Tracked to Regarding" category back to the messages the engine tracked, after
their batch is committed (a failure only costs the category), on the thread that reads the
folder ahead: the engine does not wait for the server's answer."""
from __future__ import annotations

import logging
from collections.abc import Callable

from server.sync.connectors.base import BatchKeywords, ConnectorError, Folder, Keywords
from server.sync.engine.context import MailboxRun
from server.sync.mail.decision import TRACKED_CATEGORY

log = logging.getLogger(__name__)

__all__ = ["keyword_job"]


def keyword_job(ctx: MailboxRun) -> Callable[[], int] | None:
    """What was tracked since the last call (its batch committed), taken from the run: a job
    that writes the "Tracked to Regarding" category back to it, for the thread that uses the
    connector next (``Reader.later``: the read-ahead thread, while the engine goes on with the
    next batch). None when there is nothing to write. The job reads nothing of the session."""
    queued, ctx.keyword_queue = ctx.keyword_queue, []
    connector = ctx.connector
    if not queued or not isinstance(connector, Keywords):
        return None
    mailbox_id = ctx.mailbox.id
    return lambda: _write(connector, mailbox_id, queued)


def _write(connector: Keywords, mailbox_id: int, queued: list[tuple[Folder, str]]) -> int:
    """One request per folder where the connector takes many messages at once
    (``set_keywords``: an IMAP UID STORE, Graph ``$batch``, one EWS UpdateItem, Maildir
    renames), else one per message. A failure only costs the category; one that is not the
    message's (the connection lost) is logged and raised, and ends the job."""
    by_folder: dict[str, tuple[Folder, list[str]]] = {}
    for folder, ref in queued:
        by_folder.setdefault(folder.key, (folder, []))[1].append(ref)
    many = connector.set_keywords if isinstance(connector, BatchKeywords) else None
    written = 0
    for folder, refs in by_folder.values():
        groups = [refs] if many is not None else [[ref] for ref in refs]
        for group in groups:
            try:
                if many is not None:
                    many(folder, group, TRACKED_CATEGORY)
                else:
                    connector.set_keyword(folder, group[0], TRACKED_CATEGORY)
                written += len(group)
            except ConnectorError as exc:
                log.warning("mailbox %s: the tracked category could not be set on %d message(s) "
                            "in %r (%s)", mailbox_id, len(group), folder.name, exc.code)
                if exc.severity != "message":
                    raise  # the connection is gone: the read that follows reports it
            except NotImplementedError:
                return written
    return written
