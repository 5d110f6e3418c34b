"""The pipeline for a batch of messages: decide them all in memory, then write them at once.

``process_batch(ctx, folder, messages)`` gives the same outcomes as ``pipeline.process`` on
each message in order, with a handful of statements per batch instead of a dozen per
message:

1. every message is parsed first (pure CPU, nothing locked);
2. what the decisions read is looked up once for the batch: the emails already tracked
   (by identity), the tracked parents of replies (In-Reply-To/References), the owner's
   track requests, the stored decisions, and every participant in one ``resolve`` call;
3. each message is decided as ``pipeline.handle`` would, in order;
4. the tracked ones go to ``tracking.track_emails`` together (bulk INSERTs of activities,
   parties and attachments), the decision rows are written in one flush.

Messages that depend on an earlier message of the same batch (a reply to it, a second copy
of it, the same tracking token or conversation) are held back to the next *wave*, which
runs after the earlier ones are written, so they see them as the one-by-one pipeline
would. A wave runs in one savepoint: if its write fails (one poison message), the wave is
rolled back and its messages go through ``pipeline.process`` one by one, which quarantines
the culprit and keeps the rest.

Mailboxes whose processing is rarer and richer (queues, forward mailboxes, organizations
with smart matching or "two activities between users") use the one-by-one pipeline.

**Header first.** The rules decide on headers alone. Where most mail is not tracked (a
folder other than a tracked one, a tracking option other than "all email"), the engine
reads a folder's batches as header sections (``reads_headers_first``) and the batch reads
the whole of a message only when it is tracked (then decides it again from the whole
message), when its headers cannot decide (unreadable, no usable Message-ID: its identity is
a content hash, raw 8-bit header bytes) or when the one-by-one pipeline takes it. A message
that leaves the folder between the two reads is skipped here; the sync meets it where it
went.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from sqlalchemy import or_, select

from server.crm.services import tracking
from server.crm.activities import Email
from server.crm.services.resolution import Match, resolve
from server.crm.services.tracking import EmailTrack, TrackRequest
from server.db import db
from server.errors import Forbidden, Invalid, NotFound
from server.sync.mail import correlation as corr
from server.sync.connectors.base import ConnectorError, FetchedMessage
from server.sync.engine.folders import FolderInfo
from server.sync.mail.message import MailMessage, MessageError, parse
from server.sync.models import MessageDecision
from server.sync.engine.pipeline import (CHAIN, TRACKED_CATEGORY, Correlation, MailboxRun, Outcome,
                                         Requests, SyncDecisionContext, auto_create_contacts,
                                         checked_regarding, correlate, correlation_candidates,
                                         decision_context, decision_row, identity_of, in_savepoint,
                                         insert_decisions, participant_addresses, process,
                                         regarding_of, safe_detail, to_content, tracked_reason)
from server.sync.mail.rules import Decision, FolderRole, TrackingOption, decide

log = logging.getLogger(__name__)

__all__ = ["process_batch", "reads_headers_first"]

VANISHED = ("The message left the folder before it could be read whole; the sync processes "
            "it in the folder it went to.")


@dataclass
class _Item:
    index: int
    fetched: FetchedMessage
    msg: MailMessage | None  # None: unreadable, the one-by-one path quarantines it
    identity: str = ""
    token: str | None = None


def batchable(ctx: MailboxRun) -> bool:
    """Whether this mailbox's messages may be processed in batches."""
    return (ctx.queue is None and not ctx.mailbox.is_forward_mailbox
            and not ctx.org.smart_matching and not ctx.org.track_between_users_as_two)


def reads_headers_first(ctx: MailboxRun, folder: FolderInfo) -> bool:
    """Whether the engine should read this folder's batches as header sections."""
    return (bool(getattr(ctx.connector, "headers_first", False)) and batchable(ctx)
            and folder.role is not FolderRole.TRACKED
            and ctx.mailbox.tracking_option != TrackingOption.ALL)


def process_batch(ctx: MailboxRun, folder: FolderInfo,
                  messages: list[FetchedMessage]) -> list[Outcome]:
    """Process a batch inside the caller's transaction; one outcome per message, in order.
    Never raises for a message's sake (it is quarantined instead)."""
    if not batchable(ctx):  # (the engine reads their mail whole: reads_headers_first)
        return [process(ctx, folder, fetched) for fetched in messages]
    items = [_parsed(index, fetched, ctx) for index, fetched in enumerate(messages)]
    outcomes: dict[int, Outcome] = {}
    for item in _read_whole(ctx, folder, [item for item in items if _needs_whole(item)]):
        outcomes[item.index] = Outcome("skipped", VANISHED, item.identity)
    items = [item for item in items if item.index not in outcomes]
    while items:
        wave, items = _next_wave(items)
        outcomes.update(_run_wave(ctx, folder, wave))
    return [outcomes[index] for index in range(len(messages))]


def _parsed(index: int, fetched: FetchedMessage, ctx: MailboxRun) -> _Item:
    item = _Item(index, fetched, None)
    _parse_into(item, ctx)
    return item


def _parse_into(item: _Item, ctx: MailboxRun) -> None:
    try:
        item.msg = parse(item.fetched.raw, headers_only=not item.fetched.complete)
    except MessageError:
        item.msg, item.identity, item.token = None, "", None
        return
    try:
        item.identity = identity_of(item.msg)
    except MessageError:  # headers only, no usable Message-ID: the identity is a hash of
        item.identity = "sha256:"  # the whole message, which _needs_whole reads
    item.token = corr.find_token(item.msg.subject, ctx.org.tracking_token_prefix)


def _needs_whole(item: _Item) -> bool:
    """Whether an item read as headers only must be read whole before it is decided."""
    return not item.fetched.complete and (
        item.msg is None or item.identity.startswith("sha256:")
        or not item.fetched.raw.isascii())  # (the raw bytes are the header section)


def _read_whole(ctx: MailboxRun, folder: FolderInfo, items: list[_Item]) -> list[_Item]:
    """Read the whole of the incomplete ``items`` (one request) and parse them again; returns
    those that left the folder meanwhile."""
    wanted = [item for item in items if not item.fetched.complete]
    if not wanted:
        return []
    if ctx.read_whole is None:
        raise RuntimeError("a message read as headers only, and nothing to read it whole")
    whole = ctx.read_whole(folder.folder, [item.fetched.ref for item in wanted])
    gone = []
    for item in wanted:
        raw = whole.get(item.fetched.ref)
        if raw is None:
            gone.append(item)
            continue
        item.fetched = replace(item.fetched, raw=raw, complete=True, size=len(raw))
        _parse_into(item, ctx)
    return gone


def _provides(item: _Item) -> set[str]:
    keys = {f"id:{item.identity}"}
    if item.token:
        keys.add(f"token:{item.token}")
    index = corr.decode_thread_index(item.msg.thread_index)
    if index:
        keys.add(f"conversation:{index.conversation_id}")
    return keys


def _needs(item: _Item) -> set[str]:
    msg = item.msg
    keys = _provides(item)
    keys.update(f"id:{i}" for i in msg.references)
    if msg.in_reply_to:
        keys.add(f"id:{msg.in_reply_to}")
    return keys


def _next_wave(items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
    """The items that depend on no earlier item of the batch, and the rest (in order)."""
    now, later = [], []
    earlier: set[str] = set()
    for item in items:
        if item.msg is None:
            now.append(item)
            continue
        if _needs(item) & earlier:
            later.append(item)
        else:
            now.append(item)
        earlier |= _provides(item)
    return now, later


def _run_wave(ctx: MailboxRun, folder: FolderInfo, wave: list[_Item]) -> dict[int, Outcome]:
    queued = len(ctx.keyword_queue)

    def one_by_one(exc: Exception) -> dict[int, Outcome]:
        if isinstance(exc, ConnectorError):
            raise exc  # the server, not a message: the engine backs off
        del ctx.keyword_queue[queued:]  # what the wave queued was rolled back
        log.warning("mailbox %s: a batch of %d message(s) in %r could not be written together "
                    "(%s); they are processed one by one", ctx.mailbox.id, len(wave),
                    folder.name, safe_detail(exc))
        gone = {item.index for item in _read_whole(ctx, folder, wave)}
        return {item.index: Outcome("skipped", VANISHED, item.identity) if item.index in gone
                else process(ctx, folder, item.fetched) for item in wave}
    return in_savepoint(lambda: _decide_and_write(ctx, folder, wave), one_by_one)


def _requests(ctx: MailboxRun, items: list[_Item]) -> dict[int, Requests]:
    """``pipeline._requests`` for every item, from one query."""
    if ctx.owner_user_id is None or not items:
        return {}
    identities = {item.identity for item in items}
    tokens = {item.token for item in items if item.token}
    match = [TrackRequest.internet_message_id.in_(identities)]
    if tokens:
        match.append(TrackRequest.tracking_token.in_(tokens))
    rows = db.session.scalars(select(TrackRequest).where(
        TrackRequest.user_id == ctx.owner_user_id, TrackRequest.item_type == "email",
        or_(*match)).order_by(TrackRequest.id)).all()
    out = {}
    for item in items:
        mine = [r for r in rows if r.internet_message_id == item.identity or (
            item.token and r.tracking_token == item.token
            and r.internet_message_id in (None, item.identity))]
        out[item.index] = Requests(
            untracked=any(r.status == "untracked" and r.internet_message_id == item.identity
                          for r in mine),
            pending=next((r for r in mine if r.status == "pending"), None))
    return out


@dataclass
class _Decided:
    decision: Decision
    dctx: SyncDecisionContext
    correlation: Correlation | None
    request: Requests
    own: dict[str, list[Match]]
    found: Email | None


class _Lookups:
    """What the decisions of a wave read from the database, looked up once for the wave."""

    def __init__(self, ctx: MailboxRun, items: list[_Item]) -> None:
        identities = {item.identity for item in items}
        self.candidates = correlation_candidates(ctx, [item.msg for item in items], identities)
        self.existing = {identity: email for identity, email in self.candidates.by_id.items()
                         if identity in identities}
        self.requests = _requests(ctx, items)
        wanted = list(dict.fromkeys(a for item in items for a in participant_addresses(item.msg)))
        self.matches = resolve(wanted, user_id=ctx.owner_user_id, org=ctx.org) if wanted else {}
        self.rows = {row.identity: row for row in db.session.scalars(select(MessageDecision).where(
            MessageDecision.mailbox_id == ctx.mailbox.id,
            MessageDecision.identity.in_(identities)))}

    def decide(self, ctx: MailboxRun, folder: FolderInfo, item: _Item) -> _Decided:
        msg = item.msg
        found = self.existing.get(item.identity)
        correlation = correlate(ctx, msg, self.candidates) if found is None else None
        request = self.requests.get(item.index, Requests())
        own = {a: self.matches.get(a, []) for a in participant_addresses(msg)}
        dctx = decision_context(ctx, folder, item.fetched, own, correlation, found, request)
        return _Decided(decide(msg, dctx, CHAIN), dctx, correlation, request, own, found)


def _decide_and_write(ctx: MailboxRun, folder: FolderInfo,
                      wave: list[_Item]) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    items = []
    for item in wave:
        if item.msg is None:
            outcomes[item.index] = process(ctx, folder, item.fetched)  # quarantined
        else:
            items.append(item)
    if not items:
        return outcomes
    look = _Lookups(ctx, items)
    decided = {item.index: look.decide(ctx, folder, item) for item in items}
    new_rows: list[dict] = []
    # Mail read as headers only is read whole when it is tracked, and decided again (not
    # when it is tracked already: the activity is there, only its regarding may change).
    whole = [item for item in items if decided[item.index].decision.track
             and ctx.actor is not None and not item.fetched.complete
             and decided[item.index].found is None]
    identities = {item.index: item.identity for item in whole}
    gone = {item.index for item in _read_whole(ctx, folder, whole)}
    for item in whole:
        if item.index in gone:
            decision_row(ctx, folder, item.fetched, item.msg, item.identity,
                         look.rows.get(item.identity), tracked=False, reason=VANISHED,
                         hits=[], method=None, rule=None, new_rows=new_rows)
            outcomes[item.index] = Outcome("skipped", VANISHED, item.identity)
        elif item.msg is None or item.identity != identities[item.index]:
            raise _OneByOne()  # the whole message reads differently: decide it alone
        else:
            decided[item.index] = look.decide(ctx, folder, item)
    checked: dict[tuple[str, int] | None, tuple] = {}
    tracks: list[tuple[_Item, dict]] = []
    for item in items:
        if item.index in outcomes:
            continue
        msg, fetched, d = item.msg, item.fetched, decided[item.index]
        decision = d.decision
        method = d.correlation.method if d.correlation else None
        hits = decision.rule_hits()
        reason = decision.reason
        if decision.track and ctx.actor is None:
            reason = f"{decision.reason} But it could not be tracked: {ctx.actor_problem}"
        if not decision.track or ctx.actor is None:
            decision_row(ctx, folder, fetched, msg, item.identity, look.rows.get(item.identity),
                         tracked=False, reason=reason, hits=hits, method=method,
                         rule=decision.rule, new_rows=new_rows)
            outcomes[item.index] = Outcome("skipped", reason, item.identity, rule=decision.rule,
                                           correlation_method=method)
            continue
        regarding, wins, source = regarding_of(ctx, folder, d.correlation, d.request.pending)
        if regarding not in checked:  # a tracked folder's record is checked once
            checked[regarding] = checked_regarding(ctx, regarding)
        regarding, note = checked[regarding]
        if ctx.mailbox.auto_create_contacts:
            _created_contacts(ctx, msg, d.dctx, d.own, look.matches)
        direction = d.dctx.direction_of(msg)
        tracks.append((item, dict(
            track=EmailTrack(to_content(ctx, msg, fetched, direction), regarding=regarding,
                             owner=ctx.owner, direction=direction.value,
                             mailbox_id=ctx.mailbox.id, correlation_method=method,
                             parent_activity_id=d.correlation.parent_id if d.correlation else None,
                             regarding_wins=wins),
            decision=decision, method=method, source=source, note=note,
            before=d.found.regarding_ref if d.found is not None else None)))
    if tracks:
        same_user = ctx.actor.user_id == ctx.owner_user_id
        try:
            results = tracking.track_emails(ctx.actor, [t["track"] for _, t in tracks],
                                            resolved=look.matches if same_user else None)
        except (Forbidden, Invalid, NotFound):
            raise _OneByOne() from None  # the refusal is worded per message there
        if any(created and not item.fetched.complete
               for (item, _), (_, created) in zip(tracks, results)):
            raise _OneByOne()  # it was removed meanwhile: read whole and tracked alone
        for (item, t), (email, created) in zip(tracks, results):
            outcomes[item.index] = _tracked(ctx, folder, item, t, email, created,
                                            look.rows.get(item.identity), new_rows)
    insert_decisions(new_rows)
    db.session.flush()
    return outcomes


class _OneByOne(Exception):
    """The wave needs the one-by-one pipeline (it words a refusal per message)."""


def _created_contacts(ctx: MailboxRun, msg: MailMessage, dctx: SyncDecisionContext,
                      own: dict[str, list[Match]], matches: dict[str, list[Match]]) -> None:
    """Unknown counterparts become contacts; the batch's resolution learns the new records
    (so a later message of the batch from the same person does not create another)."""
    before = {a for a, hits in own.items() if hits}
    auto_create_contacts(ctx, msg, dctx, own)
    created = [a for a, hits in own.items() if hits and a not in before]
    if created:
        matches.update(resolve(created, user_id=ctx.owner_user_id, org=ctx.org))


def _tracked(ctx: MailboxRun, folder: FolderInfo, item: _Item, t: dict, email: Email,
             created: bool, row: MessageDecision | None,
             new_rows: list[dict]) -> Outcome:
    decision, method = t["decision"], t["method"]
    regarding, wins = t["track"].regarding, t["track"].regarding_wins
    reason = tracked_reason(decision, folder, regarding, wins, t["before"], email, created,
                            t["source"]) + t["note"]
    relinked = t["before"] != email.regarding_ref
    _, was_tracked = decision_row(
        ctx, folder, item.fetched, item.msg, item.identity, row, tracked=True, reason=reason,
        hits=decision.rule_hits(), method=method if created else email.correlation_method,
        rule=decision.rule, activity_id=email.id, fresh=created or relinked, new_rows=new_rows)
    if TRACKED_CATEGORY.casefold() not in {k.casefold() for k in item.fetched.keywords}:
        if ctx.connector is not None and folder.folder.key and item.fetched.ref:
            ctx.keyword_queue.append((folder.folder, item.fetched.ref))
    return Outcome("tracked", reason, item.identity, activity_id=email.id, created=created,
                   new=created or relinked or not was_tracked, rule=decision.rule,
                   correlation_method=method)
