"""One wave of a batch: looked up together, decided message by message, written at once.

``run_wave(ctx, folder, items)`` works inside the caller's savepoint:

1. what the decisions read is looked up once for the wave (``Lookups``): the emails already
   tracked (by identity), the correlation candidates (``correlate``), the open track
   requests (read once, and handed on to ``track_emails``), the stored decision rows, and
   every participant in one ``resolve`` call;
2. each message is decided (``rules.decide`` with the context ``decision_context`` builds);
   a tracking decision whose regarding the tracking user may not link to is decided again
   with the refusal, so its reason says so. Mail read as headers only that is tracked is
   read whole and decided again from the whole message;
3. the tracked ones go to ``tracking.track_emails`` together, as the mailbox's owner (a
   queue's mailbox: the queue's owner; the queue becomes a party and gets a queue item, and
   its case rules open or update cases, ``cases``); every queue among an email's recipients
   gets a queue item;
   unknown counterparts become contacts when the mailbox asks for it; the organization's
   "two activities between users" is ``track_emails``' business;
4. the decision rows are written in one statement, and the "Tracked to Regarding" category
   is queued to be written back after the commit.

A refusal to track (privilege, regarding) is the wave's error when it tracks several
messages: the batch then runs them one at a time, and the one refused is logged with the
refusal as its reason.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import bindparam, select

from server.crm.services import tracking
from server.crm.activities import Email
from server.crm.services.resolution import Match, resolve
from server.crm.services.tracked import open_requests
from server.crm.services.tracking import EmailTrack
from server.db import cached_statement, db, in_values
from server.errors import Forbidden, Invalid, NotFound
from server.sync.connectors.base import FetchedMessage
from server.sync.engine.cases import CaseOutcome, Tracked, apply_case_rules
from server.sync.engine.contacts import auto_create_contacts
from server.sync.engine.content import aware, to_content
from server.sync.engine.context import MailboxRun
from server.sync.engine.correlate import (Correlation, Requests, correlate,
                                          correlation_candidates, owner_requests)
from server.sync.engine.decisions import Outcome, decision_row, insert_decisions
from server.sync.engine.folders import FolderInfo
from server.sync.engine.items import VANISHED, Item, origin_of, read_whole
from server.sync.engine.queues import queue_emails
from server.sync.engine.quarantine import quarantine
from server.sync.mail.decision import (TRACKED_CATEGORY, Decision, DecisionContext, Direction,
                                       FolderRole, Regarding, TrackingOption)
from server.sync.mail.message import MailMessage
from server.sync.mail.rules import decide, loop_addresses
from server.sync.models import MessageDecision

__all__ = ["StaleWave", "decision_context", "quarantine_item", "run_wave"]

RECORD_KINDS = frozenset({"contact", "account", "lead"})


class StaleWave(Exception):
    """What the wave looked up changed before it was written (an email it found tracked was
    removed meanwhile, so a message read as headers only would be tracked from them); the
    batch rolls the wave back and runs its messages one at a time, read whole."""


def participant_addresses(msg: MailMessage) -> list[str]:
    """The addresses resolved for a message's decision: its participants (the Sender when
    there is no From)."""
    addresses = [a.address for a in msg.participants]
    if msg.sender and msg.sender.address not in addresses and not msg.from_:
        addresses.append(msg.sender.address)
    return addresses


def decision_context(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage,
                     matches: dict[str, list[Match]], correlation: Correlation | None,
                     found: Email | None, request: Requests,
                     org_addresses: frozenset[str] = frozenset()) -> DecisionContext:
    """What the rules know about one message: ``matches`` are its participants resolved,
    ``found`` the email tracked already under its identity, ``request`` the owner's,
    ``org_addresses`` those of its addresses that are the organization's mailboxes'."""
    categories = {k.casefold() for k in fetched.keywords}
    return DecisionContext(
        owner_kind=ctx.owner_kind, owner_addresses=ctx.owner_addresses,
        direction=Direction.OUTGOING if folder.role is FolderRole.SENT else None,
        folder=folder.for_decision(), tracking_option=_option(ctx.mailbox.tracking_option),
        track_sent_items=ctx.org.track_sent_items, process_after=ctx.process_after,
        received_at=aware(fetched.arrived_on), blocklist=ctx.blocklist,
        record_addresses=frozenset(a for a, hits in matches.items()
                                   if any(m.record_type in RECORD_KINDS for m in hits)),
        email_enabled_addresses=frozenset(a for a, hits in matches.items() if hits),
        is_correlated=correlation is not None,
        has_tracked_category=TRACKED_CATEGORY.casefold() in categories,
        already_tracked=found is not None, org_addresses=org_addresses,
        untracked=request.untracked, pending_request=request.pending is not None,
        request_regarding=request.pending.regarding_ref if request.pending else None,
        conversation_regarding=correlation.regarding if correlation else None,
        tracked_regarding=found.regarding_ref if found is not None else None)


def _option(value: str) -> TrackingOption:
    try:
        return TrackingOption(value)
    except ValueError:
        return TrackingOption.CRM_RESPONSES


@dataclass
class _Decided:
    decision: Decision
    dctx: DecisionContext
    correlation: Correlation | None
    found: Email | None


class Lookups:
    """What the decisions of a wave read from the database, looked up once for the wave."""

    def __init__(self, ctx: MailboxRun, items: list[Item]) -> None:
        self.ctx = ctx
        identities = {item.identity for item in items}
        self.open_requests = open_requests(identities, {item.token for item in items})
        self.candidates = correlation_candidates(ctx, [item.msg for item in items],
                                                 self.open_requests, identities)
        self.existing = {identity: email for identity, email in self.candidates.by_id.items()
                         if identity in identities}
        self.requests = owner_requests(ctx, [(item.identity, item.token) for item in items],
                                       self.open_requests)
        wanted = list(dict.fromkeys(a for item in items for a in participant_addresses(item.msg)))
        self.matches = resolve(wanted, user_id=ctx.owner_user_id, org=ctx.org) if wanted else {}
        ctx.org_addresses.lookup(wanted + [a for item in items for a in loop_addresses(item.msg)])
        query = cached_statement(("decision rows",), lambda: select(MessageDecision).where(
            MessageDecision.mailbox_id == bindparam("mailbox_id"),
            in_values(MessageDecision.identity, "identities")), prepared=True)
        self.rows = {row.identity: row for row in db.session.scalars(
            query, {"mailbox_id": ctx.mailbox.id, "identities": list(identities)})}
        self.refusals: dict[Regarding, str | None] = {}

    def decide(self, folder: FolderInfo, item: Item) -> _Decided:
        ctx, msg = self.ctx, item.msg
        found = self.existing.get(item.identity)
        # A tracked email needs no parent, unless this mailbox may get its own copy of it.
        correlation = correlate(ctx, msg, self.candidates, item.identity) \
            if found is None or ctx.org.track_between_users_as_two else None
        request = self.requests.get((item.identity, item.token), Requests())
        own = {a: self.matches.get(a, []) for a in participant_addresses(msg)}
        org = ctx.org_addresses.among([*own, *loop_addresses(msg)])
        dctx = decision_context(ctx, folder, item.fetched, own, correlation, found, request, org)
        decision = decide(msg, dctx)
        refused = self._refusal(decision.regarding) if decision.track else None
        if refused:
            dctx = replace(dctx, regarding_refused=refused)
            decision = decide(msg, dctx)
        return _Decided(decision, dctx, correlation, found)

    def _refusal(self, regarding: Regarding | None) -> str | None:
        """Why the tracking user may not link to ``regarding`` (None: they may), checked
        once per record and wave."""
        if regarding is None or self.ctx.actor is None:
            return None
        if regarding not in self.refusals:
            try:
                tracking.check_regarding(self.ctx.actor, regarding)
                self.refusals[regarding] = None
            except (Forbidden, NotFound, Invalid) as exc:
                self.refusals[regarding] = exc.message
        return self.refusals[regarding]


def quarantine_item(ctx: MailboxRun, folder: FolderInfo, item: Item, code: str,
                    reason: str) -> Outcome:
    """Quarantine an item where it came from (a forward: in the forward mailbox)."""
    origin = origin_of(ctx, folder, item)
    return quarantine(origin.run, origin.folder, origin.fetched, code, reason)


def run_wave(ctx: MailboxRun, folder: FolderInfo,
             wave: list[Item]) -> tuple[dict[int, Outcome], list[Item]]:
    """Decide and write a wave; its outcomes by item index, and the items to run again in a
    later wave (read whole, they read differently from their headers)."""
    outcomes: dict[int, Outcome] = {}
    items = []
    for item in wave:
        if item.msg is None:
            outcomes[item.index] = quarantine_item(ctx, folder, item, item.error.code,
                                                   item.error.reason)
        else:
            items.append(item)
    if not items:
        return outcomes, []
    look = Lookups(ctx, items)
    decided = {item.index: look.decide(folder, item) for item in items}
    new_rows: list[dict] = []
    again = _read_tracked_whole(ctx, folder, items, decided, look, outcomes, new_rows)
    later = {item.index for item in again}
    tracks: list[tuple[Item, _Decided, EmailTrack]] = []
    for item in items:
        if item.index in outcomes or item.index in later:
            continue
        d = decided[item.index]
        decision, method = d.decision, d.correlation.method if d.correlation else None
        if not decision.track or ctx.actor is None:
            reason = decision.reason if not decision.track else \
                f"{decision.reason} But it could not be tracked: {ctx.actor_problem}"
            outcomes[item.index] = _skipped(ctx, folder, item, d, reason, look, new_rows)
            continue
        if ctx.mailbox.auto_create_contacts:
            auto_create_contacts(ctx, item.msg, d.dctx, look.matches)
        direction = d.dctx.direction_of(item.msg)
        tracks.append((item, d, EmailTrack(
            to_content(ctx, item.msg, item.fetched, direction, item.safe_html, item.digests),
            regarding=decision.regarding,
            owner=ctx.owner, direction=direction.value, mailbox_id=ctx.mailbox.id,
            correlation_method=method,
            parent_activity_id=d.correlation.parent_id if d.correlation else None,
            regarding_wins=decision.regarding_wins)))
    if tracks:
        _track(ctx, folder, tracks, look, outcomes, new_rows)
    insert_decisions(new_rows)
    db.session.flush()
    return outcomes, again


def _read_tracked_whole(ctx: MailboxRun, folder: FolderInfo, items: list[Item],
                        decided: dict[int, _Decided], look: Lookups,
                        outcomes: dict[int, Outcome], new_rows: list[dict]) -> list[Item]:
    """Mail read as headers only that is to be tracked is read whole (one request) and
    decided again (not when it is tracked already: the activity is there, only its regarding
    may change). Returns the items that read differently whole (another identity, or no
    email at all): they are decided in a later wave, with lookups of their own."""
    two = ctx.org.track_between_users_as_two  # a tracked email may get another activity
    whole = [item for item in items if decided[item.index].decision.track
             and ctx.actor is not None and not item.fetched.complete
             and (decided[item.index].found is None or two)]
    identities = {item.index: item.identity for item in whole}
    gone = {item.index for item in read_whole(ctx, folder, whole)}
    again = []
    for item in whole:
        if item.index in gone:
            decision_row(ctx, folder, item.fetched, item.msg, item.identity,
                         look.rows.get(item.identity), tracked=False, reason=VANISHED,
                         hits=[], method=None, rule=None, new_rows=new_rows)
            outcomes[item.index] = Outcome("skipped", VANISHED, item.identity)
        elif item.msg is None or item.identity != identities[item.index]:
            again.append(item)
        else:
            decided[item.index] = look.decide(folder, item)
    return again


def _skipped(ctx: MailboxRun, folder: FolderInfo, item: Item, d: _Decided, reason: str,
             look: Lookups, new_rows: list[dict]) -> Outcome:
    method = d.correlation.method if d.correlation else None
    decision_row(ctx, folder, item.fetched, item.msg, item.identity,
                 look.rows.get(item.identity), tracked=False, reason=reason,
                 hits=d.decision.rule_hits(), method=method, rule=d.decision.rule,
                 new_rows=new_rows)
    return Outcome("skipped", reason, item.identity, rule=d.decision.rule,
                   correlation_method=method)


def _track(ctx: MailboxRun, folder: FolderInfo, tracks: list[tuple[Item, _Decided, EmailTrack]],
           look: Lookups, outcomes: dict[int, Outcome], new_rows: list[dict]) -> None:
    same_user = ctx.actor.user_id == ctx.owner_user_id
    try:
        results = tracking.track_emails(ctx.actor, [track for *_, track in tracks],
                                        resolved=look.matches if same_user else None,
                                        requests=look.open_requests)
    except (Forbidden, Invalid, NotFound) as exc:
        if len(tracks) > 1:
            raise  # which message was refused: the batch runs them one at a time
        item, d, _ = tracks[0]
        reason = f"{d.decision.reason} But it could not be tracked: {exc.message}"
        outcomes[item.index] = _skipped(ctx, folder, item, d, reason, look, new_rows)
        return
    if any(created and not item.fetched.complete
           for (item, *_), (_, created) in zip(tracks, results)):
        raise StaleWave("an email tracked before was removed while the wave was written")
    queue_emails(ctx, [email for email, _ in results])
    # Case rules are a queue's (a user's mailbox has none: nothing to gather per email).
    cases = apply_case_rules(ctx, [
        Tracked(email, item.msg, _case_of(d, email), aware(item.fetched.arrived_on))
        for (item, d, _), (email, _) in zip(tracks, results)
        if _new_here(look, item) and d.dctx.direction_of(item.msg) is Direction.INCOMING],
        look.matches) if ctx.queue is not None else {}
    for (item, d, _), (email, created) in zip(tracks, results):
        outcomes[item.index] = _tracked(ctx, folder, item, d, email, created,
                                        look.rows.get(item.identity), new_rows,
                                        cases.get(email.id))


def _new_here(look: Lookups, item: Item) -> bool:
    """Tracked by this mailbox for the first time (email to case sees each email once)."""
    row = look.rows.get(item.identity)
    return row is None or not row.tracked


def _case_of(d: _Decided, email: Email) -> int | None:
    """The case the email's conversation (or the email itself) is regarding."""
    for ref in (d.correlation.regarding if d.correlation else None, email.regarding_ref):
        if ref is not None and ref[0] == "case":
            return ref[1]
    return None


def _tracked(ctx: MailboxRun, folder: FolderInfo, item: Item, d: _Decided, email: Email,
             created: bool, row: MessageDecision | None, new_rows: list[dict],
             case: CaseOutcome | None = None) -> Outcome:
    decision = d.decision
    reason, hits = decision.reason, decision.rule_hits()
    if case is not None:
        reason, hits = f"{reason} {case.reason}", hits + case.hits
    method = d.correlation.method if d.correlation else None
    relinked = d.dctx.tracked_regarding != email.regarding_ref  # (as it was when decided)
    _, was_tracked = decision_row(
        ctx, folder, item.fetched, item.msg, item.identity, row, tracked=True,
        reason=reason, hits=hits,
        method=method if created else email.correlation_method, rule=decision.rule,
        activity_id=email.id, fresh=created or relinked, new_rows=new_rows)
    if TRACKED_CATEGORY.casefold() not in {k.casefold() for k in item.fetched.keywords}:
        if ctx.connector is not None and folder.folder.key and item.fetched.ref:
            ctx.keyword_queue.append((folder.folder, item.fetched.ref))
    return Outcome("tracked", reason, item.identity, activity_id=email.id,
                   created=created, new=created or relinked or not was_tracked,
                   rule=decision.rule, correlation_method=method)
