"""Writing the "Tracked to Regarding" category back to the messages the engine tracked, after
their batch is committed (a failure only costs the category)."""
from __future__ import annotations

import logging

from server.sync.connectors.base import BatchKeywords, ConnectorError, Folder, Keywords
from server.sync.engine.context import MailboxRun
from server.sync.mail.decision import TRACKED_CATEGORY

log = logging.getLogger(__name__)

__all__ = ["write_keywords"]


def write_keywords(ctx: MailboxRun) -> int:
    """Write the "Tracked to Regarding" category back to the messages tracked since the
    last call (after their batch is committed): one request per folder where the connector
    takes many messages at once (``set_keywords``: an IMAP UID STORE, Graph ``$batch``, one
    EWS UpdateItem, Maildir renames), else one per message.
    A failure only costs the category."""
    queued, ctx.keyword_queue = ctx.keyword_queue, []
    connector = ctx.connector
    if not isinstance(connector, Keywords):
        return 0
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
                            "in %r (%s)", ctx.mailbox.id, len(group), folder.name, exc.code)
                if exc.severity != "message":
                    return written  # the connection is gone: the next fetch reports it
            except NotImplementedError:
                return written
    return written
