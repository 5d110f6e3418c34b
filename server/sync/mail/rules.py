"""The tracking decision: should this email become a CRM activity, and why (not)?

A declarative chain of small named rules, first match wins, in the spirit of GNU Mailman's
rules and chains. Each rule is a class with a ``name``, a one-line docstring, the action it
takes when it matches (track or not) and a ``reason`` a user reads in "why was this email
(not) tracked?". ``decide`` walks the chain and records every rule it tried.

No I/O here: the engine hands in everything else (addresses known to the CRM, the mailbox's
tracking option, folder rules, whether correlation found a parent) in a ``DecisionContext``.

The order encodes which exclusions explicit intent overrides. A tracked folder or the
"Tracked to Regarding" category beats the tracking option, auto-reply and bulk detection
(someone who drags a newsletter into a tracked folder wants it tracked) but never turns a
bounce, a mail loop or a blocked sender into an activity. The category marks one message,
so it also beats the mailbox's "process email received after" date and the folder limits;
a tracked folder is a standing rule, so it respects that date. An email that is already
tracked stays tracked whatever else is true of it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import ClassVar

from server.sync.mail.automatic import auto_reply_evidence, bulk_evidence
from server.sync.mail.message import Address, MailMessage

__all__ = [
    "DEFAULT_CHAIN",
    "Decision",
    "DecisionContext",
    "Direction",
    "Folder",
    "FolderRole",
    "LOOP_HEADER",
    "OwnerKind",
    "Rule",
    "RuleHit",
    "TRACKED_CATEGORY",
    "TrackingOption",
    "chain_description",
    "decide",
]

# Regarding stamps the mail it sends with this header, so it never tracks its own mail twice.
LOOP_HEADER = "X-Regarding-Loop"
# The Outlook category (IMAP keyword where the server has no categories) that asks for tracking.
TRACKED_CATEGORY = "Tracked to Regarding"

Regarding = tuple[str, str]  # (record kind, record id), e.g. ("opportunity", "42")


class TrackingOption(StrEnum):
    """Which incoming email a user or queue tracks automatically (as in Dynamics 365).

    The values are what ``Mailbox.tracking_option`` stores (``models.TRACKING_OPTIONS``).
    """

    ALL = "all"
    CRM_RESPONSES = "crm_responses"
    FROM_CRM_RECORDS = "from_crm_records"
    FROM_EMAIL_ENABLED_RECORDS = "from_email_enabled"
    NONE = "none"


OPTION_LABELS = {
    TrackingOption.ALL: "All email messages",
    TrackingOption.CRM_RESPONSES: "Email messages in response to Regarding email",
    TrackingOption.FROM_CRM_RECORDS: "Email messages from leads, contacts and accounts",
    TrackingOption.FROM_EMAIL_ENABLED_RECORDS: "Email messages from records that are email enabled",
    TrackingOption.NONE: "No email messages",
}


class OwnerKind(StrEnum):
    USER = "user"
    QUEUE = "queue"


class Direction(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class FolderRole(StrEnum):
    INBOX = "inbox"
    SENT = "sent"
    TRACKED = "tracked"
    OTHER = "other"


@dataclass(frozen=True)
class Folder:
    """Where the message was found; a tracked folder may carry its rule's regarding."""

    role: FolderRole = FolderRole.INBOX
    name: str = ""
    regarding: Regarding | None = None


def _address_set(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values if v and v.strip())


def _blocklist_set(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.removeprefix("*.").removeprefix("@") for v in _address_set(values))


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class DecisionContext:
    """Everything the rules need besides the message, gathered by the engine."""

    owner_kind: OwnerKind = OwnerKind.USER
    owner_addresses: frozenset[str] = frozenset()
    direction: Direction | None = None  # None: outgoing when the owner sent it
    folder: Folder = Folder()
    tracking_option: TrackingOption = TrackingOption.CRM_RESPONSES
    track_sent_items: bool = False
    process_after: datetime | None = None
    received_at: datetime | None = None  # when the mailbox got it; else the Date header
    blocklist: frozenset[str] = frozenset()  # "a@b.example", "@b.example" (and subdomains)
    record_addresses: frozenset[str] = frozenset()  # leads, contacts, accounts
    email_enabled_addresses: frozenset[str] = frozenset()  # any email-enabled record
    is_correlated: bool = False
    has_tracked_category: bool = False
    already_tracked: bool = False
    org_addresses: frozenset[str] = frozenset()  # every mailbox Regarding syncs

    def __post_init__(self) -> None:
        for name in ("owner_addresses", "record_addresses", "email_enabled_addresses",
                     "org_addresses"):
            object.__setattr__(self, name, _address_set(getattr(self, name)))
        object.__setattr__(self, "blocklist", _blocklist_set(self.blocklist))

    def direction_of(self, msg: MailMessage) -> Direction:
        if self.direction is not None:
            return self.direction
        sent_by_owner = msg.from_ is not None and msg.from_.address in self.owner_addresses
        return Direction.OUTGOING if sent_by_owner else Direction.INCOMING

    def counterparts(self, msg: MailMessage) -> list[Address]:
        """The other side: the sender of incoming mail, the recipients of outgoing mail."""
        if self.direction_of(msg) is Direction.INCOMING:
            return [msg.from_] if msg.from_ and msg.from_.resolvable else []
        return [a for a in msg.recipients if a.resolvable and a.address not in self.owner_addresses]

    @property
    def whose(self) -> str:
        return "your" if self.owner_kind is OwnerKind.USER else "this queue's"


@dataclass(frozen=True)
class RuleHit:
    name: str
    matched: bool


@dataclass(frozen=True)
class Decision:
    track: bool
    hits: tuple[RuleHit, ...]
    reason: str
    regarding_hint: Regarding | None = None
    rule: str = ""  # the name of the rule that decided

    def rule_hits(self) -> list[dict[str, object]]:
        """The hits as JSON-ready dicts, for the decision log."""
        return [{"rule": hit.name, "matched": hit.matched} for hit in self.hits]


# --------------------------------------------------------------------------- rule base


class Rule:
    """One named check in the chain; ``track`` is what happens when it matches."""

    name: ClassVar[str]
    track: ClassVar[bool]

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        raise NotImplementedError

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        raise NotImplementedError

    def regarding(self, msg: MailMessage, ctx: DecisionContext) -> Regarding | None:
        return None

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]


def _folder_regarding(ctx: DecisionContext) -> Regarding | None:
    return ctx.folder.regarding if ctx.folder.role is FolderRole.TRACKED else None


def _header(msg: MailMessage, name: str) -> str:
    return (msg.headers.get(name) or "").strip()


# --------------------------------------------------------------------------- exclusions


class AlreadyTracked(Rule):
    """An activity for this email exists already: it stays tracked, never duplicated."""

    name = "already-tracked"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.already_tracked

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return "This email is already tracked in Regarding, so it stays tracked."

    def regarding(self, msg: MailMessage, ctx: DecisionContext) -> Regarding | None:
        return _folder_regarding(ctx)


class NoSender(Rule):
    """Items without any sender address are not emails a person can be linked to."""

    name = "no-sender"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return msg.from_ is None and msg.sender is None

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return "This item has no sender address, so it cannot be tracked as an email."


class DeliveryReport(Rule):
    """Bounces, delivery notices and read receipts are never tracked, not even by hand rules."""

    name = "delivery-report"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return msg.is_delivery_report

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return ("This is a delivery report (a bounce, delay notice or read receipt), "
                "not an email from a person, so it is not tracked.")


_LOOP_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


class Loop(Rule):
    """Mail that Regarding itself sent (or that loops between org mailboxes) is not re-tracked."""

    name = "loop"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        if LOOP_HEADER in msg.headers:
            return True
        looped_through = _header(msg, "x-loop")
        if not looped_through:
            return False
        return any(address.lower() in ctx.org_addresses
                   for address in _LOOP_ADDRESS.findall(looped_through))

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return ("Regarding sent this email itself (it carries Regarding's loop marker), "
                "so tracking it again would only create a duplicate.")


def _blocked(address: str, blocklist: frozenset[str]) -> bool:
    if address in blocklist:
        return True
    labels = address.rpartition("@")[2].split(".")
    return any(".".join(labels[i:]) in blocklist for i in range(len(labels) - 1))


class BlockedSender(Rule):
    """Senders (or, for sent mail, all recipients) on the blocklist are never tracked by sync."""

    name = "blocked-sender"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        others = ctx.counterparts(msg)
        return bool(ctx.blocklist and others
                    and all(_blocked(a.address, ctx.blocklist) for a in others))

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        if ctx.direction_of(msg) is Direction.OUTGOING:
            who = "Every recipient of this email is"
        else:
            who = f"The sender {ctx.counterparts(msg)[0].address} is"
        return (f"{who} on the blocklist, so it is never tracked automatically. "
                "You can still track it by hand in Outlook.")


# --------------------------------------------------------------------------- explicit intent


class TrackedCategory(Rule):
    """The "Tracked to Regarding" category was set on the item: the user asked for it."""

    name = "tracked-category"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.has_tracked_category

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return f'This email has the "{TRACKED_CATEGORY}" category, so it is tracked.'

    def regarding(self, msg: MailMessage, ctx: DecisionContext) -> Regarding | None:
        return _folder_regarding(ctx)


def _day(moment: datetime) -> str:
    return _as_utc(moment).strftime("%Y-%m-%d")


class BeforeProcessAfter(Rule):
    """Email received before the mailbox's "process email received after" date is left alone."""

    name = "before-process-after"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        when = ctx.received_at or msg.date
        return bool(ctx.process_after and when and _as_utc(when) < _as_utc(ctx.process_after))

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        when = ctx.received_at or msg.date
        assert when is not None and ctx.process_after is not None
        return (f"This email arrived on {_day(when)}, before this mailbox started processing "
                f"email ({_day(ctx.process_after)}), so it is not tracked.")


class FolderNotEvaluated(Rule):
    """Only the Inbox, Sent Items (when enabled) and tracked folders are evaluated."""

    name = "folder-not-evaluated"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        role = ctx.folder.role
        return role is FolderRole.OTHER or (role is FolderRole.SENT and not ctx.track_sent_items)

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        if ctx.folder.role is FolderRole.SENT:
            return ("Sent items are not tracked for this mailbox (tracking of sent items is "
                    "turned off), so this email is not tracked.")
        where = f'the folder "{ctx.folder.name}"' if ctx.folder.name else "another folder"
        return (f"This email is in {where}. Regarding only looks at the Inbox, Sent Items and "
                "tracked folders, so it is not tracked.")


class TrackedFolder(Rule):
    """Email in a tracked folder is tracked, regarding the folder rule's record if it has one."""

    name = "tracked-folder"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.folder.role is FolderRole.TRACKED

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        where = f'the tracked folder "{ctx.folder.name}"' if ctx.folder.name else "a tracked folder"
        if ctx.folder.regarding:
            return (f"This email is in {where}, so it is tracked and set regarding the "
                    f"{ctx.folder.regarding[0]} that folder is linked to.")
        return f"This email is in {where}, so it is tracked."

    def regarding(self, msg: MailMessage, ctx: DecisionContext) -> Regarding | None:
        return ctx.folder.regarding


# --------------------------------------------------------------------------- automatic mail

class AutoReply(Rule):
    """Out-of-office and other machine-sent replies are not tracked (unless filed explicitly)."""

    name = "auto-reply"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return auto_reply_evidence(msg) is not None

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return (f"This email was sent automatically ({auto_reply_evidence(msg)}), not by a "
                "person, so it is not tracked.")


class BulkMail(Rule):
    """Newsletters and mailing-list traffic are not tracked (unless filed explicitly)."""

    name = "bulk-mail"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return bulk_evidence(msg) is not None

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return (f"This looks like a newsletter or mailing-list email ({bulk_evidence(msg)}), "
                "so it is not tracked automatically. Move it to a tracked folder or track it "
                "in Outlook to keep it.")


# --------------------------------------------------------------------------- tracking option


class CorrelatedReply(Rule):
    """A reply to a tracked email is tracked with it, for every option but "No email messages"."""

    name = "correlated-reply"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.is_correlated and ctx.tracking_option is not TrackingOption.NONE

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return ("This email is part of a conversation that is already tracked in Regarding, "
                "so it is tracked with it.")


def _option_sentence(ctx: DecisionContext) -> str:
    return f"{ctx.whose} tracking option is \"{OPTION_LABELS[ctx.tracking_option]}\""


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


class OptionAll(Rule):
    """Tracking option "All email messages": everything that got this far is tracked."""

    name = "option-all"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.tracking_option is TrackingOption.ALL

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return f"{_capitalized(_option_sentence(ctx))}, so this email is tracked."


def _known_counterpart(msg: MailMessage, ctx: DecisionContext,
                       known: frozenset[str]) -> Address | None:
    return next((a for a in ctx.counterparts(msg) if a.address in known), None)


def _from_or_to(msg: MailMessage, ctx: DecisionContext) -> str:
    return "is from" if ctx.direction_of(msg) is Direction.INCOMING else "was sent to"


class OptionCrmRecords(Rule):
    """Tracking option "from leads, contacts and accounts": mail with one of them is tracked."""

    name = "option-crm-records"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return (ctx.tracking_option is TrackingOption.FROM_CRM_RECORDS
                and _known_counterpart(msg, ctx, ctx.record_addresses) is not None)

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        known = _known_counterpart(msg, ctx, ctx.record_addresses)
        assert known is not None
        return (f"This email {_from_or_to(msg, ctx)} {known.address}, a lead, contact or account "
                f"in Regarding, and {_option_sentence(ctx)}, so it is tracked.")


class OptionEmailEnabledRecords(Rule):
    """Tracking option "from email-enabled records": mail with any known record is tracked."""

    name = "option-email-enabled-records"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        known = ctx.record_addresses | ctx.email_enabled_addresses
        return (ctx.tracking_option is TrackingOption.FROM_EMAIL_ENABLED_RECORDS
                and _known_counterpart(msg, ctx, known) is not None)

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        known = _known_counterpart(msg, ctx, ctx.record_addresses | ctx.email_enabled_addresses)
        assert known is not None
        return (f"This email {_from_or_to(msg, ctx)} {known.address}, a record in Regarding, "
                f"and {_option_sentence(ctx)}, so it is tracked.")


class OptionNone(Rule):
    """Tracking option "No email messages": nothing is tracked automatically."""

    name = "option-none"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.tracking_option is TrackingOption.NONE

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return (f"{_capitalized(_option_sentence(ctx))}, so email is not tracked automatically. "
                "Use a tracked folder, the tracked category or Outlook to track it.")


class NotTracked(Rule):
    """The default: nothing above asked for tracking, so the email is not tracked."""

    name = "default"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return True

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return f"This email is not tracked: {_why_not(msg, ctx)}, and {_option_sentence(ctx)}."


def _why_not(msg: MailMessage, ctx: DecisionContext) -> str:
    if ctx.tracking_option is TrackingOption.FROM_CRM_RECORDS:
        what = "a lead, contact or account"
    elif ctx.tracking_option is TrackingOption.FROM_EMAIL_ENABLED_RECORDS:
        what = "a record"
    else:
        return "it does not answer an email that is tracked in Regarding"
    if ctx.direction_of(msg) is Direction.INCOMING:
        return f"its sender is not {what} in Regarding"
    return f"none of its recipients is {what} in Regarding"


DEFAULT_CHAIN: tuple[Rule, ...] = (
    AlreadyTracked(),
    NoSender(),
    DeliveryReport(),
    Loop(),
    BlockedSender(),
    TrackedCategory(),
    BeforeProcessAfter(),
    FolderNotEvaluated(),
    TrackedFolder(),
    AutoReply(),
    BulkMail(),
    CorrelatedReply(),
    OptionAll(),
    OptionCrmRecords(),
    OptionEmailEnabledRecords(),
    OptionNone(),
    NotTracked(),
)


def decide(msg: MailMessage, ctx: DecisionContext,
           chain: Sequence[Rule] = DEFAULT_CHAIN) -> Decision:
    """Walk the chain; the first rule that matches decides. Every rule tried is recorded."""
    hits: list[RuleHit] = []
    for rule in chain:
        matched = rule.matches(msg, ctx)
        hits.append(RuleHit(rule.name, matched))
        if matched:
            hint = rule.regarding(msg, ctx) if rule.track else None
            return Decision(track=rule.track, hits=tuple(hits), reason=rule.reason(msg, ctx),
                            regarding_hint=hint, rule=rule.name)
    return Decision(track=False, hits=tuple(hits),
                    reason="No tracking rule applied to this email, so it is not tracked.")


def chain_description(chain: Sequence[Rule] = DEFAULT_CHAIN) -> list[tuple[str, bool, str]]:
    """``(name, tracks, description)`` for each rule, in order: for the admin help page."""
    return [(rule.name, rule.track, rule.description()) for rule in chain]
