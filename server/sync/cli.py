"""``flask --app server sync ...``: run the sync engine by hand, and see where mailboxes stand.

    sync run --mailbox 3                 one mailbox (by id or address), with a progress bar
    sync run --all                       every enabled mailbox, one after the other
    sync status                          a table: state, last success, next run, failures
    sync why --mailbox 3 <message-id>    why that email was (not) tracked
    sync retry <quarantine id>           run a quarantined message through the pipeline again
    sync prune-runs [--days N]           delete finished runs older than N days (the setting)

The scheduler's worker (``sync worker``) is registered on the same group by its module.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime

import click
from flask.cli import AppGroup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from server.mailkeys import normalize_message_id
from server.db import db, utcnow
from server.errors import ServiceError
from server.sync.engine.run import Progress, retry_quarantined, sync_mailbox, why_not_synced
from server.sync.models import Alert, Mailbox, MessageDecision, QuarantinedMessage

sync_cli = AppGroup("sync", help="Server-side synchronization of mailboxes.")


def find_mailbox(ref: str) -> Mailbox:
    """A mailbox by id or email address."""
    ref = ref.strip()
    box = db.session.get(Mailbox, int(ref)) if ref.isdigit() else db.session.scalar(
        select(Mailbox).where(func.lower(Mailbox.email_address) == ref.lower()))
    if box is None:
        raise click.ClickException(f"No mailbox {ref}.")
    return box


def _worker_name() -> str:
    return f"cli@{socket.gethostname()}:{os.getpid()}"[:120]


def _run_one(box: Mailbox, limit: int, max_messages: int | None, quiet: bool):
    label = box.email_address
    if quiet:
        return sync_mailbox(box.id, worker=_worker_name(), limit=limit, max_messages=max_messages)
    # How much mail there is, is known only as it comes: the bar grows by a batch while a
    # folder says it has more.
    with click.progressbar(length=limit, label=label, show_pos=True, show_eta=False,
                           item_show_func=lambda folder: folder or "") as bar:
        def progress(event: Progress) -> None:
            if event.more and bar.pos + event.batch + limit > bar.length:
                bar.length = bar.pos + event.batch + limit
            bar.update(event.batch, event.folder)

        result = sync_mailbox(box.id, worker=_worker_name(), limit=limit, progress=progress,
                              max_messages=max_messages)
        bar.length = max(bar.pos, 1)
        bar.update(0)
    return result


def _summary(box: Mailbox, result) -> str:
    if result.status == "skipped":
        return f"{box.email_address}: skipped. {result.reason}"
    counts = (f"{result.fetched} messages read: {result.tracked} tracked, {result.skipped} "
              f"not tracked, {result.quarantined} quarantined, {result.seen} already tracked")
    if result.status == "failure":
        off = " The mailbox was turned off." if result.disabled else ""
        return f"{box.email_address}: FAILED ({result.error_code}). {result.reason}{off} ({counts})"
    lines = [f"{box.email_address}: {counts}."]
    lines += [f"  folder {f.name}: {f.error}" for f in result.folders if f.error]
    lines += [f"  folder {f.name} was read again from the start (its cursor was no longer valid)."
              for f in result.folders if f.reset]
    lines += [f"  {note}" for note in result.notes]
    if result.more:
        lines.append("  More mail is waiting; run again to continue.")
    return "\n".join(lines)


@sync_cli.command("run")
@click.option("--mailbox", "refs", multiple=True, metavar="ID|ADDRESS",
              help="A mailbox to synchronize (repeatable).")
@click.option("--all", "run_all", is_flag=True, help="Every enabled mailbox.")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="Messages per batch (fetched and stored together).")
@click.option("--max-messages", type=click.IntRange(1), default=None,
              help="Stop after this many messages; the rest waits for the next run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(refs: tuple[str, ...], run_all: bool, limit: int, max_messages: int | None,
        quiet: bool) -> None:
    """Synchronize mailboxes now (the first sync of a large mailbox shows its progress)."""
    if not refs and not run_all:
        raise click.UsageError("Name a mailbox with --mailbox, or use --all.")
    boxes = [find_mailbox(ref) for ref in refs]
    if run_all:
        boxes += [b for b in db.session.scalars(select(Mailbox).where(
            Mailbox.enabled.is_(True)).order_by(Mailbox.id)) if b not in boxes]
    failed = False
    for box in boxes:
        reason = why_not_synced(box)
        if reason:
            click.echo(f"{box.email_address}: skipped. {reason}")
            continue
        result = _run_one(box, limit, max_messages, quiet)
        failed |= result.status == "failure"
        click.echo(_summary(box, result))
    if failed:
        raise SystemExit(1)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = int((moment - now).total_seconds())
    span = abs(seconds)
    text = (f"{span}s" if span < 90 else f"{span // 60}m" if span < 5400
            else f"{span // 3600}h" if span < 172_800 else f"{span // 86400}d")
    return f"in {text}" if seconds > 0 else f"{text} ago"


@sync_cli.command("status")
@click.option("--all", "show_all", is_flag=True, help="Also mailboxes that are turned off.")
def status(show_all: bool) -> None:
    """Where each mailbox stands: state, last success, next run, failures, alerts."""
    query = select(Mailbox).options(selectinload(Mailbox.user), selectinload(Mailbox.queue))
    if not show_all:
        query = query.where(Mailbox.enabled.is_(True))
    boxes = db.session.scalars(query.order_by(Mailbox.id)).all()
    if not boxes:
        click.echo("No mailboxes." if show_all else "No enabled mailboxes (--all shows every one).")
        return
    ids = [b.id for b in boxes]
    open_alerts = dict(db.session.execute(
        select(Alert.mailbox_id, func.count()).where(Alert.mailbox_id.in_(ids),
                                                     Alert.acknowledged_on.is_(None))
        .group_by(Alert.mailbox_id)).all())
    quarantined = dict(db.session.execute(
        select(QuarantinedMessage.mailbox_id, func.count())
        .where(QuarantinedMessage.mailbox_id.in_(ids), QuarantinedMessage.resolved.is_(False))
        .group_by(QuarantinedMessage.mailbox_id)).all())
    now = utcnow()
    header = ("ID", "MAILBOX", "OWNER", "STATE", "LAST SUCCESS", "NEXT RUN", "FAILURES",
              "INTERVAL", "BACKLOG", "ALERTS", "QUARANTINED")
    rows = []
    for box in boxes:
        owner = box.user.full_name if box.user else box.queue.name if box.queue else (
            "forward mailbox" if box.is_forward_mailbox else "-")
        state = "off" if not box.enabled else box.incoming_status
        rows.append((str(box.id), box.email_address, owner, state, _ago(box.last_success_on, now),
                     _ago(box.next_sync_on, now) if box.enabled else "-",
                     str(box.consecutive_failures), f"{box.sync_interval_seconds}s",
                     str(box.backlog), str(open_alerts.get(box.id, 0)),
                     str(quarantined.get(box.id, 0))))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@sync_cli.command("why")
@click.option("--mailbox", "ref", required=True, metavar="ID|ADDRESS")
@click.argument("message_id")
def why(ref: str, message_id: str) -> None:
    """Why the email with this Message-ID was (not) tracked in this mailbox."""
    box = find_mailbox(ref)
    identity = normalize_message_id(message_id) or message_id
    row = db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == box.id, MessageDecision.identity == identity))
    if row is None:
        raise click.ClickException(f"{box.email_address} has not processed {identity}.")
    verdict = "tracked" if row.tracked else "not tracked"
    click.echo(f"{identity} in {row.folder_name or '?'}: {verdict}.")
    click.echo(row.reason)
    tried = ", ".join(f"{h['rule']}{' (matched)' if h.get('matched') else ''}"
                      for h in row.rule_hits or [])
    if tried:
        click.echo(f"Rules tried: {tried}")


@sync_cli.command("retry")
@click.argument("quarantine_id", type=int)
def retry(quarantine_id: int) -> None:
    """Run a quarantined message through the pipeline again."""
    try:
        outcome = retry_quarantined(quarantine_id)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    db.session.commit()
    click.echo(f"{outcome.status}: {outcome.reason}")


# -- the scheduler: workers and "sync now" (sync.workers: worker, scheduler) ---

@sync_cli.command("worker")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Mailboxes synchronized at the same time.")
@click.option("--id", "worker_id", default=None, metavar="NAME",
              help="This worker's name, unique among running workers (default host:pid). "
                   "Restarted under the same name, it takes back its leases at once.")
@click.option("--push/--no-push", default=None,
              help="Watch mailboxes for new mail (IMAP IDLE/NOTIFY, Maildir inotify); "
                   "default REGARDING_SYNC_PUSH (on).")
def worker(concurrency: int, worker_id: str | None, push: bool | None) -> None:
    """Run a sync worker until stopped (SIGTERM/Ctrl-C finish the batches in hand)."""
    from flask import current_app
    from server.sync.engine.history import BadRetention
    from server.sync.workers.scheduler import WorkerRefused
    from server.sync.workers.process import serve
    try:
        serve(current_app._get_current_object(), worker_id=worker_id, concurrency=concurrency,
              push=push)
    except (WorkerRefused, BadRetention) as exc:
        raise click.ClickException(str(exc)) from None


@sync_cli.command("now")
@click.option("--mailbox", "ref", required=True, metavar="ID|ADDRESS")
def now(ref: str) -> None:
    """Make a mailbox due at once: a running worker picks it up within seconds."""
    from server.sync.workers.scheduler import request_sync
    box = find_mailbox(ref)
    try:
        request_sync(None, box)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    db.session.commit()
    click.echo(f"{box.email_address} is due now: a running worker synchronizes it within "
               "seconds.")


@sync_cli.command("prune-runs")
@click.option("--days", type=int, default=None,
              help="Keep the runs of the last N days (at least 2); default "
                   "REGARDING_SYNC_RUN_DAYS (30, 0: keep forever).")
def prune_runs(days: int | None) -> None:
    """Delete finished sync runs older than the retention, oldest first, in chunks (the
    workers do this by themselves about once an hour)."""
    from server.sync.engine import history
    try:
        keep = history.retention_days(days)
    except history.BadRetention as exc:
        if days is None:
            raise click.ClickException(str(exc)) from None
        raise click.BadParameter(str(exc), param_hint="--days") from None
    if keep == 0:
        click.echo("0 runs deleted: sync run history is kept forever (0 days).")
        return
    shown = [0]

    def progress(total: int) -> None:  # a line every 100,000 runs of a long first prune
        if total // 100_000 > shown[0]:
            shown[0] = total // 100_000
            click.echo(f"{total} runs deleted so far...")

    pruned = history.prune(keep, progress=progress)
    click.echo(f"{pruned.deleted} runs older than {keep} days deleted.")
