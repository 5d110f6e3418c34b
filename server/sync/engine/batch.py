"""The engine's one message path: a batch of fetched messages, parsed, decided and written in
waves, inside the caller's transaction.

``process_batch(ctx, folder, messages)`` gives one ``Outcome`` per message, in order:

1. every message is parsed first (pure CPU, nothing locked); mail read as headers only
   whose headers cannot decide is read whole (``items``);
2. the messages go in waves (a message waits for the earlier messages of its batch it
   depends on, ``items.next_wave``); each wave is looked up, decided and written together in
   one savepoint (``wave.run_wave``);
3. a wave that cannot be written together is rolled back and retried as waves of one
   message, read whole: the poison message is quarantined alone (code ``internal``, a
   reason without the message's content) and the others are tracked. Only a lost server
   connection or database is raised, because then nothing can be recorded at all.

``process(ctx, folder, fetched)`` is the same for one message (a quarantined message tried
again, the tests), as ``crm.tracking.track_email`` is ``track_emails`` with one item.

A forward mailbox's messages are unwrapped first (``forward``): the originals go through the
same waves for the mailboxes of the users who forwarded them, and each forward logs its
original's outcome.

**Header first.** The rules decide on headers alone. Where most mail is not tracked (a
folder other than a tracked one, a tracking option other than "all email"), the engine
reads a folder's batches as header sections (``reads_headers_first``) and a message is read
whole only when it is tracked or its headers cannot decide.
"""
from __future__ import annotations

import hashlib
import logging

from server.sync.connectors.base import ConnectorError, FetchedMessage, HeadersFirst
from server.sync.engine import forward
from server.sync.engine.context import MailboxRun
from server.sync.engine.decisions import Outcome, record
from server.sync.engine.folders import FolderInfo
from server.sync.engine.items import (VANISHED, Item, Origin, needs_whole, next_wave, origin_of,
                                      parsed_batch, read_whole)
from server.sync.engine.pool import Parsing
from server.sync.engine.quarantine import in_savepoint, quarantine_error, safe_detail
from server.sync.engine.wave import run_wave
from server.sync.mail.decision import FolderRole, TrackingOption

log = logging.getLogger(__name__)

__all__ = ["process", "process_batch", "reads_headers_first"]


def reads_headers_first(ctx: MailboxRun, folder: FolderInfo) -> bool:
    """Whether the engine should read this folder's batches as header sections (never a
    forward mailbox's: what a forward holds is in its body)."""
    return (isinstance(ctx.connector, HeadersFirst) and ctx.connector.headers_first
            and not ctx.mailbox.is_forward_mailbox
            and folder.role is not FolderRole.TRACKED
            and ctx.mailbox.tracking_option != TrackingOption.ALL)


def process(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage) -> Outcome:
    """One message, as a batch of one."""
    return process_batch(ctx, folder, [fetched])[0]


def process_batch(ctx: MailboxRun, folder: FolderInfo, messages: list[FetchedMessage],
                  parsing: Parsing | None = None) -> list[Outcome]:
    """Process a batch inside the caller's transaction; one outcome per message, in order.
    Never raises for a message's sake (it is quarantined instead). ``parsing``: the batch's
    parse, started ahead (``items.parse_ahead``; not for a forward mailbox)."""
    if ctx.mailbox.is_forward_mailbox:
        outcomes = _forwards(ctx, folder, messages)
    else:
        outcomes = _process(ctx, folder, parsed_batch(ctx, messages, parsing))
    return [outcomes[index] for index in range(len(messages))]


def _process(ctx: MailboxRun, folder: FolderInfo, items: list[Item]) -> dict[int, Outcome]:
    """Parsed items through their waves; outcomes by item index."""
    outcomes = {item.index: _vanished(ctx, folder, item)
                for item in read_whole(ctx, folder, [item for item in items if needs_whole(item)])}
    items = [item for item in items if item.index not in outcomes]
    while items:
        wave, items = next_wave(ctx, items)
        done, again = _run(ctx, folder, wave)
        outcomes.update(done)
        items = again + items
    return outcomes


def _run(ctx: MailboxRun, folder: FolderInfo,
         wave: list[Item]) -> tuple[dict[int, Outcome], list[Item]]:
    """A wave in a savepoint; when it cannot be written together, its messages one by one."""
    def one_by_one(exc: Exception) -> tuple[dict[int, Outcome], list[Item]]:
        log.warning("mailbox %s: a batch of %d message(s) in %r could not be written together "
                    "(%s); they are processed one by one", ctx.mailbox.id, len(wave),
                    folder.name, safe_detail(exc))
        gone = {item.index for item in read_whole(ctx, folder, wave)}
        return {item.index: _vanished(ctx, folder, item) if item.index in gone
                else _alone(ctx, folder, item) for item in wave}, []
    return _guarded(ctx, lambda: run_wave(ctx, folder, wave), one_by_one)


def _vanished(ctx: MailboxRun, folder: FolderInfo, item: Item) -> Outcome:
    """A message read as headers only that left the folder before its whole was read: its
    decision row says so (what its headers tell: subject, sender), under its identity, or,
    when the headers give none (no usable Message-ID, unreadable), a hash of the header
    section the server sent."""
    identity = item.identity
    if not identity or identity == "sha256:":
        identity = f"headers-sha256:{hashlib.sha256(item.fetched.raw).hexdigest()}"
    record(ctx, folder, item.fetched, item.msg, identity, tracked=False, reason=VANISHED,
           hits=[], method=None, rule=None)
    return Outcome("skipped", VANISHED, identity)


def _alone(ctx: MailboxRun, folder: FolderInfo, item: Item) -> Outcome:
    """A wave of one message read whole; what fails is quarantined where it came from."""
    def failed(exc: Exception) -> tuple[dict[int, Outcome], list[Item]]:
        origin = origin_of(ctx, folder, item)
        return {item.index: quarantine_error(origin.run, origin.folder, origin.fetched, exc)}, []
    done, _ = _guarded(ctx, lambda: run_wave(ctx, folder, [item]), failed)  # (whole: no later)
    return done[item.index]


def _guarded(ctx: MailboxRun, work, on_error):
    """``work()`` in a savepoint; when it fails, what it queued for the category goes with
    the rolled-back writes and ``on_error(exc)`` answers instead. A connector error is raised:
    the server, not a message, failed, and the engine backs off."""
    queued = len(ctx.keyword_queue)

    def failed(exc: Exception):
        if isinstance(exc, ConnectorError):
            raise exc
        del ctx.keyword_queue[queued:]
        return on_error(exc)
    return in_savepoint(work, failed)


def _forwards(ctx: MailboxRun, folder: FolderInfo,
              messages: list[FetchedMessage]) -> dict[int, Outcome]:
    """A forward mailbox's batch: the forwards unwrapped, their originals processed for the
    forwarding users' mailboxes (a batch per mailbox), each forward logged."""
    outcomes: dict[int, Outcome] = {}
    forwards: dict[int, forward.Forward] = {}
    for index, fetched in enumerate(messages):
        found = in_savepoint(lambda: forward.unwrap(ctx, folder, fetched),  # noqa: B023
                             lambda exc: quarantine_error(ctx, folder, fetched, exc))  # noqa: B023
        if isinstance(found, Outcome):
            outcomes[index] = found
        else:
            forwards[index] = found
    by_mailbox: dict[int, list[int]] = {}
    for index, found in forwards.items():
        by_mailbox.setdefault(found.run.mailbox.id, []).append(index)
    for indexes in by_mailbox.values():
        first = forwards[indexes[0]]
        items = parsed_batch(first.run, [forwards[index].original for index in indexes],
                             indexes=indexes, origins=[Origin(ctx, folder, forwards[index].fetched)
                                                       for index in indexes])
        for index, outcome in _process(first.run, first.folder, items).items():
            # Quarantined: the forward itself was, in this mailbox, with its reason.
            outcomes[index] = outcome if outcome.status == "quarantined" else \
                forward.forwarded(ctx, folder, forwards[index], outcome)
    return outcomes
