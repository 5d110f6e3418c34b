"""``flask --app server mailboxes ...``: mailbox provisioning from the command line.

    mailboxes import-csv FILE --as ADMIN           mailboxes from a CSV file, a report line each
    mailboxes import-fetchmailrc FILE --as ADMIN   mailboxes from a fetchmailrc
    mailboxes bulk KIND (--profile NAME | --mailbox ID...) --as ADMIN
                                                    start a bulk job (approve, test_enable,
                                                    apply_defaults)
    mailboxes work [--wait SECONDS]                 run bulk jobs' items until none is left

``--as`` names the user whose privileges the command uses (an email address): the same
checks as the pages and the API.
"""
from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from server.db import db
from server.errors import ServiceError
from server.security import authz
from server.security.models import User
from server.sync.admin import imports, jobs
from server.sync.models import JOB_KINDS, EmailServerProfile

mailbox_cli = AppGroup("mailboxes", help="Mailbox provisioning: imports and bulk jobs.")
_AS = click.option("--as", "acting", required=True, metavar="EMAIL",
                   help="The user whose privileges are used.")


def _principal(email: str):
    user = db.session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    if user is None or not user.is_active:
        raise click.ClickException(f"No active user {email}.")
    return authz.principal(user)


def _report(report: imports.Report) -> None:
    for line in report.lines:
        click.echo(f"line {line.line}: {line.status}"
                   f"{' ' + line.address if line.address else ''}: {line.reason}")
    click.echo(f"{report.count('imported')} imported, {report.count('skipped')} skipped, "
               f"{report.count('refused')} refused.")


def _import(run, path: Path, acting: str) -> None:
    p = _principal(acting)
    try:
        report = run(p, path.read_bytes())
    except ServiceError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    db.session.commit()
    _report(report)


@mailbox_cli.command("import-csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_AS
def import_csv(path: Path, acting: str) -> None:
    """Import mailboxes from a CSV file (address, owner, profile, incoming, outgoing, acts)."""
    _import(imports.import_csv, path, acting)


@mailbox_cli.command("import-fetchmailrc")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_AS
def import_fetchmailrc(path: Path, acting: str) -> None:
    """Import mailboxes from a fetchmailrc (server, protocol, user, password, folders)."""
    _import(imports.import_fetchmailrc, path, acting)


@mailbox_cli.command("bulk")
@click.argument("kind", type=click.Choice(JOB_KINDS))
@click.option("--profile", default=None, metavar="NAME", help="Every mailbox of this profile.")
@click.option("--mailbox", "mailbox_ids", multiple=True, type=int, metavar="ID")
@_AS
def bulk(kind: str, profile: str | None, mailbox_ids: tuple[int, ...], acting: str) -> None:
    """Start a bulk job; workers (``mailboxes work``) carry it out."""
    p = _principal(acting)
    profile_id = None
    if profile:
        profile_id = db.session.scalar(select(EmailServerProfile.id).where(
            func.lower(EmailServerProfile.name) == profile.lower()))
        if profile_id is None:
            raise click.ClickException(f"No email server profile {profile}.")
    try:
        job = jobs.start(p, kind, mailbox_ids=list(mailbox_ids) or None, profile_id=profile_id)
    except ServiceError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    db.session.commit()
    click.echo(f"Job {job.id}: {job.description} ({job.total} mailboxes).")


@mailbox_cli.command("work")
@click.option("--wait", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to wait for new items once none is left.")
def work(wait: float) -> None:
    """Run the pending items of bulk jobs."""
    ran = jobs.work(idle_seconds=wait)
    click.echo(f"{ran} item(s) done.")
