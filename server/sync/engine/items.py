"""A batch's messages as the engine carries them (``Item``): parsed (whole, or the header
section a connector read header first), with their identity and tracking token, read
whole on demand, and the waves they are processed in.

**Waves.** A message that depends on an earlier message of its batch (a reply to it, a
second copy of it, the same tracking token, conversation or smart-matching key) waits for
a later wave, which runs after the earlier ones are written, so it sees them.

**Read whole.** Mail read as headers only is read whole (one request per folder and call,
``read_whole``) before it is decided when its headers cannot decide (unreadable, no usable
Message-ID: its identity is a hash of the whole message, raw 8-bit header bytes), and
when it is tracked. A message that left the folder between the two reads is skipped here
(``VANISHED``); the sync meets it where it went.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from server.sync.connectors.base import FetchedMessage
from server.sync.engine import pool
from server.sync.engine.content import identity_of
from server.sync.engine.context import MailboxRun
from server.sync.engine.folders import FolderInfo
from server.mailkeys import decode_thread_index, find_token
from server.sync.mail import correlation as corr
from server.sync.mail.message import MailMessage, MessageError

__all__ = ["Item", "Origin", "VANISHED", "needs_whole", "next_wave", "origin_of", "parse_ahead",
           "parsed", "parsed_batch", "read_whole"]

VANISHED = ("The message left the folder before it could be read whole; the sync processes "
            "it in the folder it went to.")


@dataclass(frozen=True)
class Origin:
    """Where a message came from when it is not its mailbox's own: a forward mailbox's
    message (its failures are quarantined there)."""

    run: MailboxRun
    folder: FolderInfo
    fetched: FetchedMessage


@dataclass
class Item:
    """One message of a batch; ``index`` is its place in the batch."""

    index: int
    fetched: FetchedMessage
    msg: MailMessage | None = None  # None: unreadable (``error`` says why)
    error: MessageError | None = None
    identity: str = ""
    token: str | None = None
    origin: Origin | None = None
    safe_html: str | None = None  # msg.html_body sanitized by the parse pool, when it did
    digests: tuple[str, ...] = ()  # the SHA-256 of msg.attachments, when the pool hashed them


def origin_of(ctx: MailboxRun, folder: FolderInfo, item: Item) -> Origin:
    """Where an item's failures are quarantined: where it came from, else its own folder."""
    return item.origin or Origin(ctx, folder, item.fetched)


def parse_ahead(messages: list[FetchedMessage], processes: int | None = None) -> pool.Parsing:
    """Start parsing a batch (in the parse pool when it is worth it); ``parsed_batch`` takes it.
    ``processes``: the pool's size, read beforehand where there is no app context."""
    return pool.start([(fetched.raw, not fetched.complete) for fetched in messages], processes)


def parsed_batch(ctx: MailboxRun, messages: list[FetchedMessage],
                 parsing: pool.Parsing | None = None, *, indexes: list[int] | None = None,
                 origins: list[Origin] | None = None) -> list[Item]:
    """A batch's items, parsed (``parsing``: started ahead by ``parse_ahead``); ``indexes``
    their places in the batch (default: in order), ``origins`` where they came from."""
    results = (parsing or parse_ahead(messages)).results()
    items = [Item(index, fetched, origin=origins[n] if origins else None)
             for n, (index, fetched) in enumerate(zip(indexes or range(len(messages)), messages))]
    for item, prepared in zip(items, results):
        _parse_into(item, ctx, prepared)
    return items


def parsed(index: int, fetched: FetchedMessage, ctx: MailboxRun,
           origin: Origin | None = None) -> Item:
    item = Item(index, fetched, origin=origin)
    _parse_into(item, ctx, pool.prepare(fetched.raw, not fetched.complete))
    return item


def _parse_into(item: Item, ctx: MailboxRun, prepared: pool.Prepared) -> None:
    item.msg, item.error, item.safe_html = prepared.msg, prepared.error, prepared.safe_html
    item.digests = prepared.digests
    if item.msg is None:
        item.identity, item.token = "", None
        return
    try:
        item.identity = identity_of(item.msg)
    except MessageError:  # headers only, no usable Message-ID: the identity is a hash of
        item.identity = "sha256:"  # the whole message, which needs_whole reads
    item.token = find_token(item.msg.subject, ctx.org.tracking_token_prefix)


def needs_whole(item: Item) -> bool:
    """Whether an item read as headers only must be read whole before it is decided."""
    return not item.fetched.complete and (
        item.msg is None or item.identity.startswith("sha256:")
        or not item.fetched.raw.isascii())  # (the raw bytes are the header section)


def read_whole(ctx: MailboxRun, folder: FolderInfo, items: list[Item]) -> list[Item]:
    """Read the whole of the incomplete ``items`` (one request) and parse them again; returns
    those that left the folder meanwhile."""
    wanted = [item for item in items if not item.fetched.complete]
    if not wanted:
        return []
    if ctx.read_whole is None:
        raise RuntimeError("a message read as headers only, and nothing to read it whole")
    whole = ctx.read_whole(folder.folder, [item.fetched.ref for item in wanted])
    gone = [item for item in wanted if whole.get(item.fetched.ref) is None]
    here = [item for item in wanted if whole.get(item.fetched.ref) is not None]
    for item in here:
        raw = whole[item.fetched.ref]
        item.fetched = replace(item.fetched, raw=raw, complete=True, size=len(raw))
    for item, prepared in zip(here, parse_ahead([item.fetched for item in here]).results()):
        _parse_into(item, ctx, prepared)
    return gone


def _provides(ctx: MailboxRun, item: Item) -> set[str]:
    keys = {f"id:{item.identity}"}
    if item.token:
        keys.add(f"token:{item.token}")
    index = decode_thread_index(item.msg.thread_index)
    if index:
        keys.add(f"conversation:{index.conversation_id}")
    if ctx.org.smart_matching:
        smart = corr.smart_match_key(item.msg.subject, (a.address for a in item.msg.participants),
                                     ctx.org.tracking_token_prefix)
        if smart:
            keys.add(f"smart:{smart}")
    return keys


def _needs(ctx: MailboxRun, item: Item) -> set[str]:
    msg = item.msg
    keys = _provides(ctx, item)
    keys.update(f"id:{i}" for i in msg.references)
    if msg.in_reply_to:
        keys.add(f"id:{msg.in_reply_to}")
    return keys


def next_wave(ctx: MailboxRun, items: list[Item]) -> tuple[list[Item], list[Item]]:
    """The items that depend on no earlier item of the batch, and the rest (in order)."""
    now, later = [], []
    earlier: set[str] = set()
    for item in items:
        if item.msg is None:
            now.append(item)
            continue
        if _needs(ctx, item) & earlier:
            later.append(item)
        else:
            now.append(item)
        earlier |= _provides(ctx, item)
    return now, later
