"""The small interface every mail connector implements, the capabilities a connector may
declare beside it, what its Account must carry, and the errors it raises.

A connector is opened per mailbox sync (``with Connector(account) as c:``), lists folders
with stable keys, and returns changes since an opaque per-folder cursor. The engine stores
what a batch covers and its new cursor in one transaction, so a crash repeats work and never
skips or duplicates it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

# In ``wait_for_changes``' answer: the folders themselves changed (a watched one renamed,
# moved or deleted), so the names being watched are out of date.
FOLDERS_CHANGED = "*folders*"


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
    delegated: bool = False  # token_provider: the mailbox's own token, else the app's (app-only)
    settings: dict = field(default_factory=dict)
    timeout: float = 30.0
    # A class whose ``Needs.oauth`` is TOKEN or RENEWING_TOKEN: an access token on each call
    # (``fresh=True``: the last one was refused), with the time to renew it by for
    # RENEWING_TOKEN; and, for a connector with ``Subscriptions``, what to do when a sync's
    # connector closes (keep its subscriptions up). Set by ``sync.engine.accounts``.
    token_provider: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    on_close: Callable[[Subscriptions], None] | None = field(default=None, compare=False,
                                                             repr=False)


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


XOAUTH2 = "xoauth2"  # an access token in Account.oauth_token, beside the usual login
TOKEN = "token"  # Account.token_provider(fresh=False) -> access token; no server login
RENEWING_TOKEN = "renewing_token"  # token_provider -> (token, epoch seconds to renew it by)


@dataclass(frozen=True)
class Needs:
    """What a connector or sender class needs in its ``Account``, declared on the class
    (``needs``), so the engine builds the Account and Test & Enable words its messages
    without knowing protocols by name."""
    host: bool = False  # a server whose host name the profile gives
    ports: Mapping[str, int] = field(default_factory=dict)  # its default port by security
    # A Maildir tree on this machine: (the profile's store, the mailbox's address) -> the
    # Account's root. Nothing else is needed.
    store: Callable[[str, str], str | Path] | None = None
    oauth: str = XOAUTH2  # how a profile that signs in with OAuth reaches it
    oauth_always: bool = False  # signs in with a token whatever the profile says (Graph)


class ConnectorError(Exception):
    """``severity``: message (quarantine and go on), folder, mailbox (back off, then disable),
    auth (disable at once: a person must fix credentials), fatal."""

    def __init__(self, code: str, message: str, severity: str = "mailbox",
                 retry_after: float | None = None):
        super().__init__(message)
        self.code, self.message, self.severity, self.retry_after = code, message, severity, retry_after


class Connector(ABC):
    """What every mail connector does: ``with Connector(account) as c:`` opens one session,
    lists the folders, reads changes and messages, and waits for changes. What more it can
    do it declares by deriving from the capability classes below, which the engine checks
    with ``isinstance``; ``needs`` says what its ``Account`` must carry."""

    needs: ClassVar[Needs]

    @abstractmethod
    def __enter__(self) -> Connector: ...

    @abstractmethod
    def __exit__(self, *exc) -> None: ...

    @abstractmethod
    def list_folders(self) -> list[Folder]: ...

    @abstractmethod
    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500) -> Changes: ...

    @abstractmethod
    def fetch_message(self, folder: Folder, ref: str) -> bytes: ...

    @abstractmethod
    def wait_for_changes(self, folders: list[Folder], timeout: float) -> set[str]:
        """Block until one of the folders changes (IDLE, NOTIFY, inotify, push) or the
        timeout passes; returns the keys of changed folders (empty: none or unknown), with
        ``FOLDERS_CHANGED`` among them when a watched folder was renamed, moved or deleted
        (list the folders again before the next wait)."""


class Keywords(ABC):
    """Writes a keyword (IMAP keyword, Outlook category) on a message: the engine marks what
    it tracked "Tracked to Regarding"."""

    @abstractmethod
    def set_keyword(self, folder: Folder, ref: str, keyword: str) -> None: ...


class BatchKeywords(Keywords):
    """Writes a keyword on many messages of a folder in one request (the engine writes a
    batch's category so)."""

    @abstractmethod
    def set_keywords(self, folder: Folder, refs: list[str], keyword: str) -> None: ...


class HeadersFirst(ABC):
    """``fetch_changes(..., headers_only=True)`` returns header sections only (incomplete
    messages: IMAP's ``BODY.PEEK[HEADER]``, POP3's ``TOP n 0``, a Maildir file read up to its
    blank line) and ``fetch_messages`` the whole of many messages in one go: the engine decides
    from headers and reads only the mail it tracks. ``headers_first`` is False while this
    session's server cannot (a POP3 server without TOP). ``changed_as_headers=True``: mail
    seen before that comes back because its flags or keywords changed (the category the
    engine wrote, a user's) is returned as header sections even without ``headers_only``:
    it is mostly tracked already, and its identity is in its headers."""

    headers_first: bool = True

    @abstractmethod
    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500,
                      headers_only: bool = False, changed_as_headers: bool = False
                      ) -> Changes: ...

    @abstractmethod
    def fetch_messages(self, folder: Folder, refs: list[str]) -> dict[str, bytes]:
        """{ref: whole message}; a message no longer there is absent."""


class ReadsAhead(ABC):
    """``fetch_changes`` is pure protocol, needing no application context: the engine may
    run it in another thread, reading the next batch while it processes the current one,
    and leaves the connector alone meanwhile."""


class SavesCopies(ABC):
    """Keeps a copy of sent mail in the mailbox's Sent folder itself (a server that does not
    do it when mail is sent: IMAP, Maildir)."""

    @abstractmethod
    def folder_by_role(self, role: str) -> Folder | None: ...

    @abstractmethod
    def append(self, folder: Folder, raw: bytes, flags: Iterable[str] = ("\\Seen",),
               msg_time: datetime | None = None) -> str | None:
        """Store ``raw`` in ``folder``; its ref where the server says."""


class Probes(ABC):
    """Tells cheaply whether a folder has anything new since its cursor: from what opening
    the connector and listing its folders already learned (a local store's directory times,
    Maildir; the STATUS items an IMAP server gave with its folder list; a POP3 Inbox's UIDL
    listing), or from one look per folder where the listing cannot tell (a Graph delta
    request per folder in the listing's own ``$batch``; EWS's SyncFolderItems for one
    change). The engine visits a due mailbox whose folders all answer "nothing new" in a
    batch with others (``engine.idle``), and gives any other one a full run."""

    def expect(self, cursors: dict[str, str | None]) -> None:
        """Called before ``list_folders`` with the cursors (folder key -> cursor) the engine
        will ask ``unchanged`` about: a connector that can ask along with its listing (Graph)
        does. Sends nothing."""

    @abstractmethod
    def unchanged(self, folder: Folder, cursor: str | None) -> bool:
        """True only when certainly nothing was delivered, moved, flagged or removed in
        ``folder`` since ``cursor`` was taken (as of the last ``list_folders``); False when
        it did or the connector cannot tell (the folder gets a full run). Sends nothing,
        but where the listing cannot tell at all (EWS): then one request, which changes
        nothing on the server."""

    def cursor_after(self, folder: Folder, cursor: str | None) -> str | None:
        """The cursor to keep for ``folder`` after ``unchanged`` said so: a server that hands
        out a new sync state at every look (Graph's delta link, EWS's SyncState) gave it,
        and the old one would expire in time; else ``cursor``. Sends nothing."""
        return cursor

    def past_own_writes(self, folder: Folder, cursor: str | None) -> str | None:
        """``cursor`` (this session's last read of ``folder``) moved past what this session
        wrote in the folder since (the "Tracked to Regarding" category), when nothing else
        changed it meanwhile, so that ``unchanged`` holds at the next visit instead of
        sending the mailbox a run (which would read those messages again) for the engine's
        own writes; else ``cursor``. Sends nothing where the session's own answers tell
        (IMAP's mod-sequences); Maildir lists the folder once, Graph and EWS read the
        folder's changes since ``cursor`` once, and compare them with what they wrote."""
        return cursor


class Subscriptions(ABC):
    """Change notifications by subscription (Microsoft Graph): ``synced`` holds the folders
    a session read, whose subscriptions ``Account.on_close`` keeps up when it closes."""

    synced: dict[str, Folder]

    @abstractmethod
    def create_subscription(self, folder_key: str, notification_url: str, client_state: str,
                            expires: datetime, lifecycle_url: str | None = None) -> dict: ...

    @abstractmethod
    def renew_subscription(self, subscription_id: str, expires: datetime) -> dict: ...

    @abstractmethod
    def delete_subscription(self, subscription_id: str) -> None: ...


class Deletes(ABC):
    """Removes processed messages from the server (a forward mailbox's "delete messages
    after processing")."""

    @abstractmethod
    def delete(self, folder: Folder, refs: list[str]) -> None: ...


class ForwardRules(ABC):
    """The rule on a user's own mail server that sends a copy of every email they receive
    to the CRM's forward mailbox (Dynamics' "rule deployment"): read, put (replacing what
    was there) and removed. A rule someone else made is never touched."""

    needs: ClassVar[Needs]

    @abstractmethod
    def __enter__(self) -> ForwardRules: ...

    @abstractmethod
    def __exit__(self, *exc) -> None: ...

    @abstractmethod
    def forwards_to(self) -> str | None:
        """The address the CRM's rule forwards to, or None when there is no such rule."""

    @abstractmethod
    def deploy(self, forward_to: str) -> None:
        """Put the rule (a copy of each incoming email to ``forward_to``), replacing ours."""

    @abstractmethod
    def remove(self) -> bool:
        """Remove our rule; False when there was none."""


class Sender(ABC):
    """Sends mail for one mailbox: ``with Sender(account) as s: s.send(...)``."""

    needs: ClassVar[Needs]

    @abstractmethod
    def __enter__(self) -> Sender: ...

    @abstractmethod
    def __exit__(self, *exc) -> None: ...

    @abstractmethod
    def send(self, raw: bytes, sender: str, recipients: list[str]) -> dict[str, str]:
        """Send ``raw``; returns the refused recipients with the server's reason."""

    @abstractmethod
    def verify(self, sender: str, recipient: str) -> None:
        """Test & Enable: check that mail from ``sender`` to ``recipient`` would be taken,
        sending nothing."""


class AssignsMessageIds(ABC):
    """A sender whose service may give sent mail a Message-ID of its own (Exchange Online):
    ``internet_message_ids`` maps each Message-ID we gave to the one it used."""

    internet_message_ids: dict[str, str]


# --- Appointments, contacts and tasks -------------------------------------------------------
# One interchange format for every store: iCalendar (RFC 5545: a VCALENDAR holding one VEVENT
# series with its overridden occurrences, or one VTODO) for appointments and tasks, vCard
# (RFC 6350, 4.0; 3.0 accepted when read) for contacts. A CalDAV/CardDAV store passes the
# server's text through; Graph and EWS stores translate their items to and from it, so the
# engine maps one format to the CRM whatever the server.

ITEM_KINDS = ("appointment", "contact", "task")


@dataclass(frozen=True)
class Collection:
    """A calendar, address book or task list of one mailbox."""
    key: str  # stable identity: CalDAV/CardDAV URL, Graph calendar/list id, EWS folder id
    name: str
    kind: str  # one of ITEM_KINDS
    default: bool = False  # where the CRM's new items go
    # What the server can do for this collection, where it says: "changes" (it tells what
    # changed since a cursor: WebDAV sync-collection, RFC 6578; Graph delta; EWS
    # SyncFolderItems), "write", "push" (Graph subscriptions, EWS streaming, WebDAV-Push).
    features: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Item:
    ref: str  # the store's handle: href, Graph id, EWS ItemId
    etag: str | None  # the version the store gave (ETag, Graph @odata.etag, EWS ChangeKey)
    data: str  # iCalendar or vCard text (see above)
    uid: str | None = None  # the iCalendar UID / vCard UID: the item's identity
    # ``data`` as the store built it, where it did (the Graph connector's iCalendar calendar,
    # serialized by ``ical_text``): the core reads it instead of parsing ``data`` again.
    parsed: object | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ItemChanges:
    items: list[Item]  # created or changed since the cursor
    cursor: str  # covers everything above: store it with them
    removed: list[str] = field(default_factory=list)  # refs deleted since the cursor
    more: bool = False  # another call with the new cursor returns more
    reset: bool = False  # the old cursor was refused (token expired): everything was re-read


class ItemConflict(ConnectorError):
    """A write's If-Match/ChangeKey no longer matches: the item changed on the server since
    it was read. The engine reads it again and resolves by its field directions."""

    def __init__(self, ref: str, message: str = "the item changed on the server"):
        super().__init__("item_conflict", message, severity="message")
        self.ref = ref


class ItemStore(ABC):
    """A mailbox's appointments, contacts and tasks: ``with Store(account) as s:`` opens one
    session. Reads are incremental from an opaque per-collection cursor (sync-collection
    token, Graph delta link, EWS SyncState); writes carry the version they replace."""

    needs: ClassVar[Needs]

    @abstractmethod
    def __enter__(self) -> ItemStore: ...

    @abstractmethod
    def __exit__(self, *exc) -> None: ...

    @abstractmethod
    def collections(self, kind: str) -> list[Collection]: ...

    @abstractmethod
    def changes(self, collection: Collection, cursor: str | None,
                limit: int = 500) -> ItemChanges: ...

    @abstractmethod
    def put(self, collection: Collection, data: str, ref: str | None = None,
            etag: str | None = None) -> Item:
        """Create (``ref`` None) or replace an item; ``etag``: only if it is still that
        version, else ``ItemConflict``. Returns the item as stored (its ref and new etag)."""

    @abstractmethod
    def delete(self, collection: Collection, ref: str, etag: str | None = None) -> None:
        """Delete an item (gone already is not an error); ``etag`` as for ``put``."""

    def meeting_uid(self, item_id: str) -> str | None:
        """The iCalendar UID of the calendar item the mail client knows by ``item_id`` (the
        Outlook pane's id), where the store can tell (None: it cannot, or no such item)."""
        return None

    def wait_for_changes(self, collections: list[Collection], timeout: float) -> set[str]:
        """Block until a collection changes (push) or the timeout passes; the keys of changed
        collections (empty: none or unknown). Without push: returns at once, empty."""
        return set()


class WatchesItems(ABC):
    """A mail connector whose ``wait_for_changes`` waits on the collections of the mailbox's
    item store too, in the same wait (EWS: one streaming subscription; Maildir: one
    inotify), so the push watcher hears of a changed appointment, contact or task as of new
    mail. ``item_store()`` is that store on this open session: it needs no ``with`` and
    lasts as long as the connector."""

    @abstractmethod
    def item_store(self) -> ItemStore: ...
