"""Fixtures for the sync tests: build raw messages and parsed ``MailMessage`` objects, and
the small CRM of ``world.build_crm``."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from server.sync.mail.message import MailMessage, parse

# ../shared/corpus beside the checkout; from a worktree (wt/NAME) the nearest one above it.
CORPUS = next((folder / "shared" / "corpus" / "mail-fixtures"
               for folder in Path(__file__).resolve().parents[2].parents
               if (folder / "shared" / "corpus").is_dir()),
              Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "mail-fixtures")

RawBuilder = Callable[..., bytes]
MessageBuilder = Callable[..., MailMessage]

DEFAULT_HEADERS = {
    "From": "Ann Customer <ann@customer.example>",
    "To": "Bob Seller <bob@org.example>",
    "Subject": "Hello",
    "Date": "Tue, 05 Mar 2024 10:00:00 +0000",
    "Message-ID": "<m1@customer.example>",
}


def build_raw(body: str | bytes = "Hello there.\r\n", headers: dict[str, str | None] | None = None,
              extra: list[tuple[str, str]] | None = None) -> bytes:
    """Raw CRLF message: defaults overridden by ``headers`` (None removes one), then ``extra``."""
    merged: dict[str, str | None] = {**DEFAULT_HEADERS, **(headers or {})}
    lines = [f"{name}: {value}" for name, value in merged.items() if value is not None]
    lines += [f"{name}: {value}" for name, value in extra or []]
    head = "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n"
    return head + (body if isinstance(body, bytes) else body.encode("utf-8"))


@pytest.fixture
def crm(app, make_user):
    """Bob the seller, Carol, Ann at Fabrikam and the Contoso deal (``world.build_crm``)."""
    from tests.sync import world  # world imports this module
    return world.build_crm(make_user)


@pytest.fixture
def woken():
    """How many times this process's workers were woken meanwhile."""
    calls = []

    def wake():
        calls.append(1)
    from server.sync.workers import scheduler
    scheduler.listen(wake)
    yield calls
    scheduler.unlisten(wake)


@pytest.fixture
def hour_long_schedule(app, monkeypatch):
    """Every run schedules the next an hour later: only push brings one sooner."""
    for name in ("REGARDING_SYNC_INTERVAL_SECONDS", "REGARDING_SYNC_BUSY_INTERVAL_SECONDS",
                 "REGARDING_SYNC_IDLE_INTERVAL_SECONDS"):
        monkeypatch.setitem(app.config, name, 3600)


@pytest.fixture
def sign_ins(monkeypatch) -> list[str]:
    """The usernames the IMAP connector signs in as, in order (refused or not)."""
    names: list[str] = []
    from server.sync.connectors.imap import ImapConnector
    real = ImapConnector._login

    def login(self, client):
        names.append(self.username)
        return real(self, client)

    monkeypatch.setattr(ImapConnector, "_login", login)
    return names


@pytest.fixture
def raw_mail() -> RawBuilder:
    return build_raw


@pytest.fixture
def mail() -> MessageBuilder:
    """``mail(body=..., headers={...}, extra=[...])`` -> a parsed MailMessage."""

    def make(body: str | bytes = "Hello there.\r\n", headers: dict[str, str | None] | None = None,
             extra: list[tuple[str, str]] | None = None) -> MailMessage:
        return parse(build_raw(body, headers, extra))

    return make


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the shared mail corpus is missing: {CORPUS}")
    return CORPUS
