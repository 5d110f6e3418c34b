"""The one small interface every mail connector implements, and the errors it raises.

A connector is opened per mailbox sync (``with Connector(account) as c:``), lists folders
with stable keys, and returns changes since an opaque per-folder cursor. The engine stores
what a batch covers and its new cursor in one transaction, so a crash repeats work and never
skips or duplicates it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol


@dataclass(frozen=True)
class Account:
    """What a connector needs to reach one mailbox (credentials already decrypted)."""
    address: str
    host: str | None = None
    port: int | None = None
    security: str = "tls"  # tls starttls none
    username: str | None = None
    password: str | None = None
    oauth_token: str | None = None  # XOAUTH2 access token
    root: str | None = None  # maildir: the mailbox's Maildir folder
    settings: dict = field(default_factory=dict)
    timeout: float = 30.0
    # Graph: a fresh access token on each call (``fresh=True``: the last one was refused;
    # EWS: (token, when it must be renewed)),
    # and what to do when a sync's connector closes (push subscriptions). Set by accounts.
    token_provider: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    on_close: Callable[[Any], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Folder:
    key: str  # stable identity: IMAP MAILBOXID or UIDVALIDITY-based, Graph/EWS id, path
    name: str  # display path with "/" separators, e.g. "INBOX/Contoso deal"
    role: str = "other"  # inbox sent drafts trash junk other
    parent_key: str | None = None


@dataclass(frozen=True)
class FetchedMessage:
    ref: str  # the protocol's handle: IMAP UID, POP3 UIDL, file name, Graph/EWS id
    raw: bytes
    keywords: tuple[str, ...] = ()  # IMAP keywords / Outlook categories
    arrived_on: datetime | None = None  # when it arrived in this folder (latency)
    # False: ``raw`` is the header section only (a connector's ``headers_only`` fetch); the
    # engine reads the whole message with ``fetch_messages`` when it tracks it.
    complete: bool = True
    size: int | None = None  # the whole message's size in bytes, where the server says


@dataclass(frozen=True)
class Changes:
    messages: list[FetchedMessage]
    cursor: str  # covers every message above: store it with them
    more: bool = False  # another call with the new cursor returns more
    removed: list[str] = field(default_factory=list)  # refs that left the folder
    reset: bool = False  # the old cursor was invalid (e.g. UIDVALIDITY changed): full resync
    # Refs of messages the server refused to send on several syncs running (POP3: -ERR to
    # every read of a message it still lists); tried again each sync, and alerted.
    unreadable: list[str] = field(default_factory=list)


class ConnectorError(Exception):
    """``severity``: message (quarantine and go on), folder, mailbox (back off, then disable),
    auth (disable at once: a person must fix credentials), fatal."""

    def __init__(self, code: str, message: str, severity: str = "mailbox",
                 retry_after: float | None = None):
        super().__init__(message)
        self.code, self.message, self.severity, self.retry_after = code, message, severity, retry_after


class Connector(Protocol):
    def __init__(self, account: Account) -> None: ...
    def __enter__(self) -> Connector: ...
    def __exit__(self, *exc) -> None: ...
    def list_folders(self) -> list[Folder]: ...
    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500) -> Changes: ...
    def fetch_message(self, folder: Folder, ref: str) -> bytes: ...
    def set_keyword(self, folder: Folder, ref: str, keyword: str) -> None: ...
    # Optional: ``set_keywords(folder, refs, keyword)`` sets it on many messages of a folder
    # in one request (the engine writes a batch's category so where offered). Optional too:
    # ``prefetch = True`` says ``fetch_changes`` needs no application context and may run
    # in another thread while the engine leaves the connector alone (it reads the next
    # batch while the current one is processed). And ``headers_first = True`` says
    # ``fetch_changes(..., headers_only=True)`` returns header sections only (incomplete
    # messages) and ``fetch_messages(folder, refs)`` returns {ref: whole message} in one
    # request: the engine decides from headers and reads only the mail it tracks.
    def wait_for_changes(self, folders: list[Folder], timeout: float) -> set[str]:
        """Block until one of the folders changes (IDLE, NOTIFY, inotify, push) or the
        timeout passes; returns the keys of changed folders (empty: none or unknown)."""
        ...


class Sender(Protocol):
    def __init__(self, account: Account) -> None: ...
    def __enter__(self) -> Sender: ...
    def __exit__(self, *exc) -> None: ...
    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None: ...
