"""Commands under ``flask --app server ...``: organization set-up, users, tokens, TLS
certificate for local HTTPS, demo data, and the command groups of other areas (the add-in's
``manifest``, ``sync``)."""
from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from sqlalchemy import func, select

from server.addin.manifest import manifest_cli
from server.db import db
from server.sync.cli import sync_cli
from server.sync.mailbox_cli import mailbox_cli


@click.command("init-org")
@click.option("--name", default="Regarding", show_default=True)
def init_org(name: str) -> None:
    """Create the organization, root business unit and built-in roles (idempotent)."""
    from server.security.bootstrap import ensure_organization
    ensure_organization(name)
    db.session.commit()
    click.echo("Organization ready.")


@click.command("create-user")
@click.argument("email")
@click.argument("full_name")
@click.option("--role", "roles", multiple=True, help="A security role name (repeatable).")
@click.password_option(help="Prompted for when not given.")
def create_user(email: str, full_name: str, roles: tuple[str, ...], password: str) -> None:
    """Create a user in the root business unit."""
    from server.security.bootstrap import create_user as make, ensure_organization
    from server.security.passwords import check_password_strength
    if problem := check_password_strength(password):
        raise click.BadParameter(problem, param_hint="password")
    ensure_organization()
    user = make(email, full_name, password=password, roles=list(roles) or ["Salesperson"])
    db.session.commit()
    click.echo(f"Created user {user.email} (id {user.id}).")


@click.command("create-token")
@click.argument("email")
@click.option("--name", default="CLI token", show_default=True)
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 366))
def create_token(email: str, name: str, days: int) -> None:
    """Create an API token for a user and print it once."""
    from server.security import tokens
    from server.security.models import User
    user = db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No user {email}.")
    _, secret = tokens.issue(user, name, days=days)
    db.session.commit()
    click.echo(secret)


@click.command("tls-cert")
@click.option("--host", "hosts", multiple=True, default=("localhost", "127.0.0.1"), show_default=True)
def tls_cert(hosts: tuple[str, ...]) -> None:
    """Write a self-signed certificate for local HTTPS into the instance folder (kept if it
    exists and is still valid). Outlook only loads add-ins over HTTPS."""
    from server.tls import ensure_self_signed
    cert, key = ensure_self_signed(Path(current_app.instance_path), list(hosts))
    click.echo(f"{cert}\n{key}")


@click.command("seed-demo")
def seed_demo() -> None:
    """Load the deterministic demo organization (idempotent: does nothing when loaded)."""
    from server.demo import seed
    summary = seed()
    db.session.commit()
    click.echo(summary)


@click.group("translate")
def translate_cli() -> None:
    """The translation catalogs (server/translations): extract the strings, update the
    catalogs, check that nothing is missing, compile them."""


def _pybabel(*args: str) -> None:
    from babel.messages.frontend import CommandLineInterface
    CommandLineInterface().run(["pybabel", "-q", *args])


@translate_cli.command("extract")
def translate_extract() -> None:
    """Collect every wrapped string of the pages, the server and the pane into messages.pot."""
    from contextlib import chdir

    from server.i18n import CATALOGS, EXTRACT_OPTIONS, ROOT
    with chdir(ROOT):  # locations relative to the project: "addin/..." marks the pane's
        _pybabel("extract", *EXTRACT_OPTIONS, "-o", str(CATALOGS / "messages.pot"), ".")
    click.echo(f"Wrote {CATALOGS / 'messages.pot'}.")


@translate_cli.command("update")
def translate_update() -> None:
    """Merge messages.pot into every language's catalog (new strings appear untranslated)."""
    from server.i18n import CATALOGS, LANGUAGES
    for code, (locale, _) in LANGUAGES.items():
        if code == "en":
            continue
        po = CATALOGS / locale / "LC_MESSAGES" / "messages.po"
        command = "update" if po.exists() else "init"
        _pybabel(command, "-i", str(CATALOGS / "messages.pot"), "-d", str(CATALOGS), "-l", locale,
                 "--no-wrap", *(["--ignore-obsolete"] if command == "update" else []))
    click.echo("Catalogs updated.")


@translate_cli.command("check")
def translate_check() -> None:
    """Fail when a catalog has an untranslated or fuzzy string."""
    from server.i18n import LANGUAGES, catalog_gaps
    problems = {code: gaps for code in LANGUAGES if code != "en" and (gaps := catalog_gaps(code))}
    for code, gaps in problems.items():
        click.echo(f"{code}: {len(gaps)} untranslated or fuzzy, e.g. {gaps[0]!r}", err=True)
    if problems:
        raise click.ClickException("Some strings are not translated.")
    click.echo("Every catalog is complete.")


@translate_cli.command("compile")
def translate_compile() -> None:
    """Compile the catalogs into the instance folder (the server also does it when it starts)."""
    from server.i18n import compile_catalogs
    written = compile_catalogs(Path(current_app.instance_path) / "translations")
    click.echo(f"Compiled {len(written)} catalog(s).")


def init_app(app) -> None:
    for command in (init_org, create_user, create_token, tls_cert, seed_demo, manifest_cli,
                    sync_cli, mailbox_cli, translate_cli):
        app.cli.add_command(command)
