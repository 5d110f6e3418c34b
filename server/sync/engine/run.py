"""The sync engine: one pass over one mailbox, and retrying what was quarantined.

``sync_mailbox(mailbox_id)`` is what the scheduler's workers and ``flask sync run`` call:

1. load the mailbox; skip it (saying why) when it is not enabled, not approved, or its
   incoming mail is not read by server-side sync (or it is no forward mailbox);
2. open its connector through the registry and list its folders; decide which folders are
   evaluated (``folders.plan_folders``: Inbox, Sent Items when the organization tracks sent
   items, every enabled tracked folder, with renames and moves applied to the rules);
3. for each folder, fetch changes since its cursor in batches, run each batch through the
   engine's one path (``batch.process_batch``: parsed and decided in memory, then written
   in bulk, wave by wave),
   and store the folder's new cursor in the same transaction as the batch's activities and
   decisions (one commit per batch): a crash repeats work, never skips it, and identities
   keep a repeat (or a ``reset`` after a UIDVALIDITY change) free of duplicates; the
   "Tracked to Regarding" category is written back after each commit, one request per
   batch. Where the connector allows it (``ReadsAhead``), the next batch is read from the
   server in a thread while the current one is processed, and the category is written on
   that thread after it; the connector is never used by both at once. All the work comes
   before the batch's writes, so the database's write lock (SQLite's one writer) is held
   only for the bulk write and the commit;
4. errors by severity: a message is quarantined and the run goes on; a folder is skipped
   and reported; a mailbox failure (server down, connection lost) backs off
   (``REGARDING_SYNC_RETRY_SECONDS``) and turns the mailbox off after
   ``REGARDING_SYNC_MAX_FAILURES`` failures in a row, with an error alert for its owner and
   the admins; a refused password turns it off at once with an alert that says what to fix;
5. a ``SyncRun`` row with the counts (written with the run's first batch, else with its
   outcome: an idle run writes it once), the mailbox's last sync/success, backlog, and the
   next run: sooner after a run that tracked mail, later after idle runs (``outcome``; a
   worker's lease is given back in the same row update when nothing follows the mail).

Only this module commits during a sync; the batch works inside its transactions.
"""
from __future__ import annotations

import hashlib
import logging
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, delete, func, inspect, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import joinedload, with_expression
from sqlalchemy.orm.util import identity_key

from server.crm.activities import ActivityParty, Email
from server.db import cached_statement, commit_unflushed, db, refresh_statistics, utcnow
from server.errors import Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.sync.engine import alerts
from server.sync.connectors import incoming
from server.sync.connectors.base import ConnectorError, Deletes, FetchedMessage, Folder, Probes
from server.sync.engine.batch import process, process_batch, reads_headers_first
from server.sync.engine.context import MailboxRun
from server.sync.engine.decisions import Outcome
from server.sync.engine.folders import FolderInfo, plan_folders
from server.sync.engine.keywords import keyword_job
from server.sync.engine.outcome import failed, give_back_with_outcome, succeeded
from server.sync.engine.pool import Parsing
from server.sync.engine.quarantine import safe_detail
from server.sync.engine.reader import Reader
from server.sync.mail.decision import FolderRole
from server.sync.models import (Alert, FolderRule, FolderState, Mailbox, MessageDecision,
                                QuarantinedMessage, SyncRun)

log = logging.getLogger(__name__)

# The tables a sync batch grows (an email's are ``activity`` and ``email``), whose planner
# statistics ``refresh_statistics`` keeps up with after each batch.
GROWING = (*Email.__mapper__.tables, ActivityParty.__table__, MessageDecision.__table__)


__all__ = ["FolderResult", "Progress", "SyncResult", "load_mailbox", "retry_quarantined",
           "sync_mailbox"]


@dataclass
class FolderResult:
    name: str
    role: str
    fetched: int = 0
    tracked: int = 0  # newly tracked (or re-linked by a folder rule) in this run
    skipped: int = 0
    quarantined: int = 0
    seen: int = 0  # tracked already and unchanged (its category was just written, a resync)
    reset: bool = False
    more: bool = False  # stopped with mail left (the run's message budget ran out)
    error: str | None = None


@dataclass
class SyncResult:
    """What one run did; ``status`` is success, failure or skipped (``reason`` says why)."""

    mailbox_id: int
    status: str = "success"
    reason: str | None = None
    error_code: str | None = None
    fetched: int = 0
    tracked: int = 0
    skipped: int = 0
    quarantined: int = 0
    seen: int = 0
    folders: list[FolderResult] = field(default_factory=list)
    run_id: int | None = None
    run: SyncRun | None = field(default=None, repr=False)
    next_sync_on: datetime | None = None
    more: bool = False
    disabled: bool = False
    released: bool = False  # the worker's lease was given back with the outcome
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    """Told to the ``progress`` callback after each committed batch (and before the first)."""

    mailbox_id: int
    folder: str
    processed: int  # messages processed in this run so far
    batch: int  # messages in the batch just committed (0: a folder starts)
    more: bool  # the folder has more to fetch


def why_not_synced(mailbox: Mailbox, org=None) -> str | None:
    """Why the engine leaves this mailbox alone, or None when it syncs it."""
    from server.crm.models import Organization
    if not mailbox.enabled:
        return "The mailbox is not enabled: test and enable it first."
    if not mailbox.is_forward_mailbox and mailbox.incoming_method != "server_side_sync":
        if mailbox.incoming_method == "forward_mailbox":
            return ("Incoming email of this mailbox arrives through the forward mailbox, "
                    "which is synchronized instead.")
        return "Incoming email of this mailbox is not read by server-side synchronization."
    if not mailbox.incoming_enabled:
        return ("Incoming email of this mailbox is turned off: its test failed. Fix what "
                "Test & Enable says and test again.")
    org = org or db.session.get(Organization, 1)
    if not mailbox.approved_for(org):
        return "The mailbox's email address is not approved yet."
    return None


def load_mailbox(mailbox_id: int) -> Mailbox | None:
    """A mailbox with what a run reads of it in one query: its server profile, its user,
    the organization (the run finds it in the session), and how many open alerts and
    folder rules it has (``Mailbox.open_alert_count``, ``folder_rule_count``). The worker
    holds it while the run works, so neither loads it twice."""
    held = db.session.identity_map.get(identity_key(Mailbox, mailbox_id))
    if held is not None and not inspect(held).expired:
        return held
    row = db.session.execute(cached_statement(("the run's mailbox",), _mailbox_select),
                             {"mailbox_id": mailbox_id}).first()
    if row is None:
        return None
    # Held by the session (its identity map holds objects weakly): the run's ``get``
    # finds the organization there.
    db.session.info["organization"] = row[1]
    return row[0]


def _mailbox_select():
    from server.crm.models import Organization
    alerts_open = select(func.count()).where(
        Alert.mailbox_id == Mailbox.id, Alert.acknowledged_on.is_(None)).scalar_subquery()
    rules = select(func.count()).where(FolderRule.mailbox_id == Mailbox.id).scalar_subquery()
    return (select(Mailbox, Organization).outerjoin(Organization, Organization.id == 1)
            .where(Mailbox.id == bindparam("mailbox_id"))
            .options(joinedload(Mailbox.server_profile), joinedload(Mailbox.user),
                     with_expression(Mailbox.open_alert_count, alerts_open),
                     with_expression(Mailbox.folder_rule_count, rules)))


def sync_mailbox(mailbox_id: int, *, worker: str = "cli", limit: int = 500,
                 progress: Callable[[Progress], None] | None = None,
                 connector_factory=None, max_messages: int | None = None,
                 lease_owner: str | None = None) -> SyncResult:
    """One pass over one mailbox: every evaluated folder is brought up to date (or up to
    ``max_messages`` messages, after which the mailbox is due again at once). ``limit`` is
    the batch size: messages fetched and committed together. ``lease_owner``: the worker
    whose lease on the mailbox is given back with the run's outcome, in the same row
    update (``SyncResult.released`` says whether it still held it)."""
    from server.crm.models import Organization
    mailbox = load_mailbox(mailbox_id)
    if mailbox is None:
        raise NotFound(f"There is no mailbox {mailbox_id}.")
    org = db.session.get(Organization, 1)  # held: the run finds it in the session
    result = SyncResult(mailbox_id=mailbox.id)
    reason = why_not_synced(mailbox, org)
    if reason:
        result.status, result.reason = "skipped", reason
        return result
    # The run row is written with the run's first batch, else with its outcome (an idle
    # run writes it once, finished; a run in progress shows as the mailbox's lease).
    result.run = SyncRun(mailbox_id=mailbox.id, worker=(worker or "")[:120],
                         started_on=utcnow())
    if mailbox.sync_requested:
        # Cleared as the run starts, not when it ends: a request (push, "sync now") that
        # comes while this run reads the folders asks for another run and must not be
        # lost. (A worker's claim cleared it already.)
        mailbox.sync_requested = False
        _commit_with_run(result)
    known = alerts.MailboxAlerts(mailbox)
    try:
        _run(mailbox, known, result, max(1, limit), progress, connector_factory, max_messages)
    except ConnectorError as exc:
        db.session.rollback()
        log.warning("mailbox %s: sync failed (%s, %s)", mailbox.id, exc.code, exc.severity)
        failed(mailbox, result, exc.code, exc.message, exc.severity, exc.retry_after)
    except (OperationalError, InterfaceError) as exc:
        db.session.rollback()
        log.error("mailbox %s: database error during sync (%s)", mailbox.id, safe_detail(exc))
        failed(mailbox, result, "database", "The database could not be used during the sync "
                f"({safe_detail(exc)}).", "mailbox", None)
    except Exception as exc:  # a bug must not stop the scheduler: back off like an outage
        db.session.rollback()
        detail, where = safe_detail(exc), _where(exc)
        log.error("mailbox %s: sync stopped by an internal error (%s at %s)", mailbox.id,
                  detail, where)
        failed(mailbox, result, "internal", f"An internal error stopped the sync ({detail}).",
                "mailbox", None)
    except BaseException:  # stopped from outside (a worker shutting down): what is
        db.session.rollback()  # committed stays, the run row says it was cut short
        try:
            _finish_run(result, "interrupted", "The run was stopped before it finished.")
        except Exception:
            db.session.rollback()
        raise
    else:
        succeeded(mailbox, known, result)
    if lease_owner is not None:
        result.released = give_back_with_outcome(mailbox, lease_owner)
    _finish_run(result, result.error_code,
                result.reason if result.status == "failure" else None)
    return result


def _commit_kept() -> None:
    """Commit without expiring what the session holds. For the run's own writes (its run
    row, its folder plan, its outcome, idle folders' visits): the mailbox, its profile and
    owner and the organization stay loaded, so an idle run reads each of them once (it read
    the mailbox four times and the organization three before). A batch that wrote mail is
    committed with ``_commit_batch``."""
    session = db.session()
    was, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = was


def _commit_batch(ctx: MailboxRun, result: SyncResult, states: dict[str, FolderState]) -> None:
    """Commit a batch that wrote mail: what it read (tracked emails, parents, track
    requests) is expired as a commit expires it, so the next batch reads it again; the run's
    own objects stay loaded as ``_commit_kept`` keeps them (its mailbox and the profile,
    organization, owner and tracking user it was loaded with, its folder cursors and its
    run row: a run works from the settings it started with, ``MailboxRun``). Each batch read
    four of them again before, four statements a batch."""
    own = [ctx.mailbox, ctx.org, ctx.owner, ctx.queue, result.run, *states.values(),
           inspect(ctx.mailbox).dict.get("server_profile"),
           ctx.actor.user if ctx.actor is not None else None]
    kept = {id(obj) for obj in own if obj is not None}
    _commit_with_run(result)
    session = db.session()
    for obj in list(session.identity_map.values()):
        if id(obj) not in kept:
            session.expire(obj)


def _commit_with_run(result: SyncResult) -> None:
    """Commit with the run row (added to the session here, not at the start: it is
    written by the run's first commit, and a rollback before it leaves it out)."""
    if result.run not in db.session:
        db.session.add(result.run)
    _commit_kept()


def _finish_run(result: SyncResult, error_code: str | None, error: str | None) -> None:
    run = result.run
    run.finished_on = utcnow()
    run.fetched, run.tracked = result.fetched, result.tracked
    run.skipped, run.failed = result.skipped, result.quarantined
    run.error_code, run.error = error_code, error
    _commit_with_run(result)
    result.run_id = run.id


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"


def _run(mailbox: Mailbox, known: alerts.MailboxAlerts, result: SyncResult, limit: int,
         progress, connector_factory, max_messages: int | None) -> None:
    from server.sync.engine.accounts import account_for
    ctx = MailboxRun.load(mailbox, open_alerts=known)
    if ctx.actor is None and not mailbox.is_forward_mailbox:
        known.raise_alert("warning", "cannot_track",
                          N_("Email in %(address)s cannot be tracked: %(problem)s") % {
                              "address": mailbox.email_address, "problem": ctx.actor_problem})
    else:
        known.clear("cannot_track")
    account = account_for(mailbox, "incoming")
    factory = connector_factory or incoming(mailbox.server_profile.incoming_protocol)
    with factory(account) as connector:
        ctx.connector = connector
        folders = connector.list_folders()
        plan = _plan(ctx, folders)
        result.notes.extend(plan.notes)
        if plan.notes or known.written:  # kept whatever a folder does next
            _commit_kept()
        states = {s.folder_key: s for s in db.session.scalars(
            select(FolderState).where(FolderState.mailbox_id == mailbox.id))}
        budget = max_messages
        for info in plan.evaluate:
            folder_result = FolderResult(info.name, info.role.value)
            result.folders.append(folder_result)
            try:
                budget = _sync_folder(ctx, info, states, folder_result, result, limit,
                                      progress, budget)
                _past_own_writes(ctx, info, states.get(info.key))
            except ConnectorError as exc:
                if exc.severity not in ("folder", "message"):
                    raise
                db.session.rollback()
                ctx.keyword_queue.clear()  # what it tracked in that batch was rolled back
                folder_result.error = exc.message
                log.warning("mailbox %s: folder %r skipped (%s)", mailbox.id, info.name, exc.code)
            if budget is not None and budget <= 0 and folder_result.more:
                result.more = True
                break
    _folder_alerts(ctx, result)


def _plan(ctx: MailboxRun, folders: list[Folder]):
    mailbox = ctx.mailbox
    if mailbox.is_forward_mailbox:  # every message in its Inbox is a forward
        return plan_folders(mailbox, folders, [], track_sent=False)
    # (None: the mailbox was not loaded by ``load_mailbox``.)
    rules = [] if inspect(mailbox).dict.get("folder_rule_count") == 0 else \
        db.session.scalars(select(FolderRule).where(FolderRule.mailbox_id == mailbox.id)
                           .order_by(FolderRule.id)).all()
    return plan_folders(mailbox, folders, rules, track_sent=ctx.org.track_sent_items)


def _sync_folder(ctx: MailboxRun, info: FolderInfo, states: dict[str, FolderState],
                 folder_result: FolderResult, result: SyncResult, limit: int, progress,
                 budget: int | None) -> int | None:
    mailbox = ctx.mailbox
    state = states.get(info.key)
    if state is None:
        state = FolderState(mailbox_id=mailbox.id, folder_key=info.key)
        states[info.key] = state
    # When the folder was last read: mail that appears in it is visible to the sync since
    # then at the latest (MessageDecision.latency_ms).
    ctx.folder_visits[info.key] = state.updated_on if state.id is not None else None
    cursor = state.cursor
    if progress is not None:
        progress(Progress(mailbox.id, info.name, result.fetched, 0, True))
    reader = Reader(ctx.connector, info, reads_headers_first(ctx, info),
                     changed_as_headers=not mailbox.is_forward_mailbox,
                     parse_ahead=not mailbox.is_forward_mailbox)
    ctx.read_whole = reader.read_whole if reader.reads_whole else None
    try:
        changes = reader.fetch(cursor, _batch_size(limit, budget))
        while True:
            if changes.reset:
                folder_result.reset = True
                log.info("mailbox %s: folder %r starts over (its cursor is no longer valid)",
                         mailbox.id, info.name)
            if changes.more and changes.messages:  # read the next batch meanwhile
                ahead = None if budget is None else budget - len(changes.messages)
                if ahead is None or ahead > 0:
                    reader.prefetch(changes.cursor, _batch_size(limit, ahead))
            counts = _process(ctx, info, changes.messages, reader.parsing_of(changes))
            _unreadable_alert(ctx, info, changes.unreadable)
            state.folder_name = info.name[:500]
            state.role = info.role.value
            state.cursor = changes.cursor
            state.updated_on = utcnow()
            if state.id is None:
                db.session.add(state)
            if changes.messages:
                # The batch's activities, decisions and cursor together (and the run row
                # with the first batch, the statistics of the tables it grew); a crash
                # before the disk has it repeats the batch.
                refresh_statistics(*GROWING)
                commit_unflushed()
                _commit_batch(ctx, result, states)
                reader.later(keyword_job(ctx))  # the category, while the next batch goes on
                _delete_processed(ctx, info, changes.messages, reader)
            # else nothing came: the folder's visit (and a cursor that covers nothing) is
            # committed with the run's outcome, one statement for every idle folder.
            for target in (folder_result, result):
                target.fetched += len(changes.messages)
                target.tracked += counts["tracked"]
                target.skipped += counts["skipped"]
                target.quarantined += counts["quarantined"]
                target.seen += counts["seen"]
            folder_result.more = changes.more
            if budget is not None:  # mail seen again does not use up the run's budget
                budget -= len(changes.messages) - counts["seen"]
            if progress is not None:
                progress(Progress(mailbox.id, info.name, result.fetched, len(changes.messages),
                                  changes.more))
            stalled = not changes.messages and changes.cursor == cursor
            cursor = changes.cursor
            if not changes.more or stalled or (budget is not None and budget <= 0):
                return budget
            changes = reader.fetch(cursor, _batch_size(limit, budget))
    finally:
        ctx.read_whole = None
        reader.close()


def _past_own_writes(ctx: MailboxRun, info: FolderInfo, state: FolderState | None) -> None:
    """The folder's cursor moved past the category this run wrote in it, where the connector
    can tell that nothing else changed it (``Probes.past_own_writes``; committed with the
    run's outcome): the next visit finds the folder unchanged instead of giving the mailbox
    a run that reads the run's own flag changes back."""
    if state is not None and isinstance(ctx.connector, Probes):
        cursor = ctx.connector.past_own_writes(info.folder, state.cursor)
        if cursor != state.cursor:
            state.cursor = cursor


def _delete_processed(ctx: MailboxRun, info: FolderInfo, messages, reader: Reader) -> None:
    """A forward mailbox that deletes messages after processing: the batch is committed
    (each forward tracked, skipped or kept whole in quarantine), so its messages go from
    the server. A failure is logged; the next run sees them again and skips them."""
    mailbox = ctx.mailbox
    if not (mailbox.is_forward_mailbox and mailbox.delete_after_processing and messages
            and isinstance(ctx.connector, Deletes)):
        return
    reader.settle()  # the connector is free
    try:
        ctx.connector.delete(info.folder, [m.ref for m in messages])
    except ConnectorError as exc:
        log.warning("mailbox %s: processed messages not deleted (%s)", mailbox.id, exc.code)


def _unreadable_alert(ctx: MailboxRun, info: FolderInfo, refs: list[str]) -> None:
    """Mail the server lists but refuses to send, sync after sync (``Changes.unreadable``):
    an alert naming it (by the server's id, never its content), closed once the server
    sends it or no longer lists it. The sync goes on with the rest and tries it again."""
    if not refs:
        ctx.alerts.clear("message_unreadable")
        return
    mailbox = ctx.mailbox
    shown = ", ".join(refs[:10]) + (f" and {len(refs) - 10} more" if len(refs) > 10 else "")
    ctx.alerts.raise_alert(
        "warning", "message_unreadable",
        N_("%(count)s message(s) in %(folder)s of %(address)s cannot be read: the mail server "
           "lists them but refused to send them on several syncs running (server id %(ids)s). "
           "They are not tracked; each sync tries them again. Open them in a mail client, or "
           "ask the server's administrator to repair or remove them.") % {
               "count": len(refs), "folder": info.name, "address": mailbox.email_address,
               "ids": shown})


def _batch_size(limit: int, budget: int | None) -> int:
    return limit if budget is None else max(1, min(limit, budget))


def _process(ctx: MailboxRun, info: FolderInfo, messages: list[FetchedMessage],
             parsing: Parsing | None = None) -> Counter[str]:
    """Run a batch through the engine's one path; the outcomes counted."""
    outcomes = process_batch(ctx, info, messages, parsing)
    # Mail seen again (its category was just written, a resync) counts as fetched only:
    # "tracked" is what this run newly tracked or re-linked.
    return Counter("seen" if outcome.tracked and not outcome.new else outcome.status
                   for outcome in outcomes)


def _folder_alerts(ctx: MailboxRun, result: SyncResult) -> None:
    failed = [f for f in result.folders if f.error]
    if failed:
        names = ", ".join(f'"{f.name}"' for f in failed)
        ctx.alerts.raise_alert("warning", "folder_failed",
                               N_("Some folders of %(address)s could not be read and were "
                                  "skipped: %(folders)s (%(problem)s).") % {
                                   "address": ctx.mailbox.email_address, "folders": names,
                                   "problem": failed[0].error})
    else:
        ctx.alerts.clear("folder_failed")


# --------------------------------------------------------------------------- quarantine

def _folder_for(mailbox: Mailbox, name: str | None) -> FolderInfo:
    """The folder a quarantined message came from, as the engine sees it now."""
    name = name or "INBOX"
    if not mailbox.is_forward_mailbox:
        rule = db.session.scalar(select(FolderRule).where(
            FolderRule.mailbox_id == mailbox.id, FolderRule.folder_name == name,
            FolderRule.enabled.is_(True)))
        if rule is not None:
            return FolderInfo(Folder(key=rule.folder_key, name=name), FolderRole.TRACKED,
                              rule.id, rule.regarding_ref)
    state = db.session.scalar(select(FolderState).where(
        FolderState.mailbox_id == mailbox.id, FolderState.folder_name == name).limit(1))
    role = FolderRole.INBOX if name.upper() == "INBOX" else FolderRole.OTHER
    if state is not None and state.role in {r.value for r in FolderRole}:
        role = FolderRole(state.role)
    key = state.folder_key if state is not None else ""
    return FolderInfo(Folder(key=key, name=name, role=role.value), role)


def retry_quarantined(quarantine_id: int, p: Principal | None = None) -> Outcome:
    """Run a quarantined message through the engine again (after a fix); it is resolved
    when it is no longer quarantined. ``p``, when given, must be able to write the mailbox.
    The caller commits."""
    row = db.session.get(QuarantinedMessage, quarantine_id)
    if row is None:
        raise NotFound("There is no such quarantined message.")
    mailbox = db.session.get(Mailbox, row.mailbox_id)
    if p is not None:
        authz.require(p, "write", mailbox)
    if row.resolved:
        raise Invalid("This message was already processed.")
    ctx = MailboxRun.load(mailbox)
    fetched = FetchedMessage(ref=row.source_ref or "", raw=row.raw, arrived_on=row.created_on)
    outcome = process(ctx, _folder_for(mailbox, row.folder_name), fetched)
    row.retried_on = utcnow()
    if outcome.status != "quarantined":
        row.resolved = True
        # The bytes are readable now: the decision logged under their hash is replaced.
        stale = f"sha256:{hashlib.sha256(row.raw).hexdigest()}"
        if outcome.identity != stale:
            db.session.execute(delete(MessageDecision).where(
                MessageDecision.mailbox_id == mailbox.id, MessageDecision.identity == stale))
    db.session.flush()
    return outcome
