"""The forward mailbox: each of its messages is a user's forward of an email (as an attachment,
or inline under a "Forwarded message" / "Original Message" block), or a copy their mail
server's Sieve rule redirected to it (``X-Sieve-Redirected-From`` names them; only for a
user whose rule the CRM deployed), and the original is tracked on that user's behalf,
through their mailbox, with their tracking option.

``unwrap`` reads one forward: it is skipped (a delivery report, a sender who is no user of
the forward mailbox, no original found) or quarantined (unreadable) with a reason, or gives
a ``Forward`` whose original the batch then processes for the user's mailbox;
``forwarded`` logs the forward's own decision once the original's outcome is known.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

from sqlalchemy import func, select

from server.crm.html import html_to_text
from server.db import db
from server.security.models import User
from server.sync.connectors.base import FetchedMessage, Folder
from server.sync.engine.content import aware, identity_of
from server.sync.engine.context import MailboxRun
from server.sync.engine.decisions import Outcome, record
from server.sync.engine.folders import FolderInfo
from server.sync.engine.quarantine import quarantine
from server.sync.mail.decision import FolderRole
from server.sync.mail.message import MailMessage, MessageError, parse
from server.sync.models import Mailbox

__all__ = ["Forward", "extract_original", "forwarded", "inline_original", "unwrap"]

_FORWARD_MARKER = re.compile(
    r"^[ \t>]*(?:-{2,}[ \t]*(?:Forwarded message|Original Message|Weitergeleitete Nachricht|"
    r"Urspr(?:ü|ue)ngliche Nachricht|Message transf(?:é|e)r(?:é|e)|Message d'origine|"
    r"Mensaje (?:original|reenviado))[ \t]*-{2,}|Begin forwarded message:|_{10,})[ \t]*$",
    re.IGNORECASE | re.MULTILINE)
_FIELD_NAMES = {
    "from": "From", "von": "From", "de": "From",
    "sent": "Date", "date": "Date", "gesendet": "Date", "datum": "Date", "envoyé": "Date",
    "to": "To", "an": "To", "à": "To", "para": "To",
    "cc": "Cc", "subject": "Subject", "betreff": "Subject", "objet": "Subject",
    "asunto": "Subject",
}
_FIELD_LINE = re.compile(r"^[ \t>]*\*?([A-Za-zÀ-ÿ]+)\*?[ \t]*:[ \t]*(.*)$")
_MAILTO = re.compile(r"\[mailto:([^\]\s]+)\]", re.IGNORECASE)
_DATE_FORMATS = ("%a, %b %d, %Y %I:%M %p", "%A, %B %d, %Y %I:%M %p", "%A, %B %d, %Y %I:%M:%S %p",
                 "%a, %d %b %Y %H:%M", "%d %B %Y %H:%M", "%Y-%m-%d %H:%M", "%m/%d/%Y %I:%M %p",
                 "%B %d, %Y at %I:%M:%S %p", "%B %d, %Y at %I:%M %p")


def _forward_date(value: str) -> datetime | None:
    value = value.strip()
    try:
        parsed = parsedate_to_datetime(value)
        if parsed is not None:
            return aware(parsed)
    except (TypeError, ValueError, IndexError):
        pass
    compact = re.sub(r"\s+", " ", value.replace(" at ", " ")).strip()
    compact = re.sub(r"\s*\([^)]*\)\s*$", "", compact)  # "(UTC)" and similar
    for fmt in _DATE_FORMATS:
        for text in (compact, value):
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
            except ValueError:
                continue
    return None


def _header_value(value: str) -> str:
    value = _MAILTO.sub(r"<\1>", value)
    value = re.sub(r"<mailto:([^>\s]+)>", r"<\1>", value, flags=re.IGNORECASE)
    return re.sub(r"[\r\n]+", " ", value).strip()


def inline_original(text: str) -> bytes | None:
    """The email quoted under the first forward marker of ``text``, rebuilt as RFC 5322
    bytes from its From/Sent/To/Cc/Subject lines and the text below them; None if there is
    no such block (at least a From line is needed)."""
    for marker in _FORWARD_MARKER.finditer(text):
        lines = text[marker.end():].splitlines()
        fields: dict[str, str] = {}
        last = None
        index = 0
        while index < len(lines) and not lines[index].strip():
            index += 1
        while index < len(lines):
            line = lines[index]
            if not line.strip():
                break
            match = _FIELD_LINE.match(line)
            name = _FIELD_NAMES.get(match.group(1).casefold()) if match else None
            if name:
                fields.setdefault(name, match.group(2).strip())
                last = name
            elif last and line[:1] in (" ", "\t"):
                fields[last] += " " + line.strip()
            else:
                break
            index += 1
        if "From" not in fields:
            continue
        body = "\n".join(line.removeprefix("> ") if line.startswith("> ") else line
                         for line in lines[index:]).strip("\n")
        head = [f"From: {_header_value(fields['From'])}"]
        for name in ("To", "Cc"):
            if fields.get(name):
                head.append(f"{name}: {_header_value(fields[name]).replace(';', ',')}")
        head.append(f"Subject: {_header_value(fields.get('Subject', ''))}")
        when = _forward_date(fields.get("Date", ""))
        if when is not None:
            head.append(f"Date: {format_datetime(when)}")
        head += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: 8bit"]
        return ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode(
            "utf-8", "surrogatepass")
    return None


def extract_original(msg: MailMessage) -> bytes | None:
    """The forwarded email: an attached message/rfc822 part, else an inline forward block."""
    for attachment in msg.attachments:
        if attachment.content_type in ("message/rfc822", "message/global") and attachment.content:
            return attachment.content
    text = msg.text_body or (html_to_text(msg.html_body) if msg.html_body else "")
    return inline_original(unicodedata.normalize("NFC", text)) if text else None


def _forwarding_mailbox(address: str, *, redirected: bool = False
                        ) -> tuple[User, Mailbox] | None:
    """The active user with this address whose mailbox's incoming method is the forward
    mailbox, with that mailbox; for a ``redirected`` copy, only one whose forwarding rule
    the CRM deployed."""
    user = db.session.scalar(select(User).where(func.lower(User.email) == address.lower()))
    if user is None or not user.is_active:
        return None
    query = select(Mailbox).where(Mailbox.user_id == user.id,
                                  Mailbox.incoming_method == "forward_mailbox")
    if redirected:
        query = query.where(Mailbox.forward_rule_status == "deployed")
    mailbox = db.session.scalar(query.order_by(Mailbox.id).limit(1))
    return (user, mailbox) if mailbox is not None else None


def _redirected_by(msg: MailMessage) -> str | None:
    """The user whose server's Sieve rule redirected this copy here, as the header says."""
    value = (msg.headers.get("x-sieve-redirected-from") or "").strip().strip("<>")
    return value if value and "@" in value and " " not in value else None


@dataclass(frozen=True)
class Forward:
    """A forward whose original is tracked for the user who forwarded it: the forward (as
    the forward mailbox got it), and the original as the user's mailbox gets it."""

    fetched: FetchedMessage
    msg: MailMessage
    identity: str
    user: User
    run: MailboxRun  # the user's mailbox
    folder: FolderInfo  # "Forwarded to <the forward mailbox>", an inbox
    original: FetchedMessage


def unwrap(ctx: MailboxRun, folder: FolderInfo, fetched: FetchedMessage) -> Outcome | Forward:
    """What to do with one message of the forward mailbox ``ctx``: its outcome when it is
    skipped or quarantined (logged), else the ``Forward`` to process."""
    try:
        msg = parse(fetched.raw)
    except MessageError as exc:
        return quarantine(ctx, folder, fetched, exc.code, exc.reason)
    identity = identity_of(msg)
    sender = msg.from_ or msg.sender

    def skip(reason: str, rule: str) -> Outcome:
        record(ctx, folder, fetched, msg, identity, tracked=False, reason=reason,
               hits=[{"rule": rule, "matched": True}], method=None, rule=rule)
        return Outcome("skipped", reason, identity, rule=rule)

    if msg.is_delivery_report:
        return skip("This is a delivery report, not a forwarded email, so it is ignored.",
                    "delivery-report")
    redirected_by = _redirected_by(msg)
    if redirected_by:
        found = _forwarding_mailbox(redirected_by, redirected=True)
        if found is None:
            return skip(f"This copy was redirected by {redirected_by}, who is not a Regarding "
                        "user whose mailbox uses the forward mailbox with a forwarding rule "
                        "deployed by the CRM, so it is ignored.", "forward-unknown-user")
    else:
        found = _forwarding_mailbox(sender.address) if sender else None
        if found is None:
            who = sender.address if sender else "an unknown sender"
            return skip(f"This forward came from {who}, who is not a Regarding user whose "
                        "mailbox uses the forward mailbox, so it is ignored.",
                        "forward-unknown-user")
    user, user_mailbox = found
    original_raw = fetched.raw if redirected_by else extract_original(msg)
    if original_raw is None:
        return skip(f"{user.full_name} sent this message to the forward mailbox, but no "
                    "forwarded email was found in it (forward it as an attachment or with "
                    "the original's From/Sent/To/Subject lines).", "forward-no-original")
    try:
        parse(original_raw)  # the batch reads it again as the user's mailbox's message
    except MessageError as exc:
        return quarantine(ctx, folder, fetched, exc.code,
                          f"The email {user.full_name} forwarded could not be read: {exc.reason}")
    user_ctx = ctx.forward_runs.get(user_mailbox.id)
    if user_ctx is None:
        user_ctx = MailboxRun.load(user_mailbox, org_addresses=ctx.org_addresses,
                                   blocklist=ctx.blocklist)
        ctx.forward_runs[user_mailbox.id] = user_ctx
    inner_folder = FolderInfo(Folder(key=f"forward:{ctx.mailbox.id}",
                                     name=f"Forwarded to {ctx.mailbox.email_address}",
                                     role="inbox"), FolderRole.INBOX)
    inner = FetchedMessage(ref=fetched.ref, raw=original_raw, keywords=(),
                           arrived_on=fetched.arrived_on)
    return Forward(fetched, msg, identity, user, user_ctx, inner_folder, inner)


def forwarded(ctx: MailboxRun, folder: FolderInfo, forward: Forward, outcome: Outcome) -> Outcome:
    """The forward's outcome, logged in the forward mailbox, from its original's."""
    user = forward.user
    reason = f"Forwarded by {user.full_name} ({user.email}): {outcome.reason}"
    record(ctx, folder, forward.fetched, forward.msg, forward.identity, tracked=outcome.tracked,
           reason=reason, hits=[{"rule": "forward", "matched": True}],
           method=outcome.correlation_method, rule="forward", activity_id=outcome.activity_id)
    return Outcome(outcome.status, reason, outcome.identity, activity_id=outcome.activity_id,
                   created=outcome.created, new=outcome.new, rule=outcome.rule,
                   correlation_method=outcome.correlation_method)
