"""The tracking decision's vocabulary (pure, no I/O): what the rules read and what they give.

``DecisionContext`` is everything the rules of ``server.sync.mail.rules`` know about one
message besides the message itself, gathered by the engine (addresses known to the CRM,
the tracking option, the folder and its rule, correlation, the owner's track requests, the
regardings on offer). ``Decision`` is the answer: track or not, the rules tried, the rule
that decided, the final reason a user reads, and the regarding the email is set to.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from functools import lru_cache

from server.i18n import N_
from server.sync.mail.message import Address, MailMessage

__all__ = [
    "Decision",
    "DecisionContext",
    "Direction",
    "Folder",
    "FolderRole",
    "LOOP_HEADER",
    "OPTION_LABELS",
    "OwnerKind",
    "Regarding",
    "RuleHit",
    "TRACKED_CATEGORY",
    "TrackingOption",
    "as_utc",
]

# Regarding stamps the mail it sends with this header, so it never tracks its own mail twice.
LOOP_HEADER = "X-Regarding-Loop"
# The Outlook category (IMAP keyword where the server has no categories) that asks for tracking.
TRACKED_CATEGORY = "Tracked to Regarding"

# What an email is set regarding: (record kind, record id), e.g. ("opportunity", 42).
Regarding = tuple[str, int]


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
    TrackingOption.ALL: N_("All email messages"),
    TrackingOption.CRM_RESPONSES: N_("Email messages in response to Regarding email"),
    TrackingOption.FROM_CRM_RECORDS: N_("Email messages from leads, contacts and accounts"),
    TrackingOption.FROM_EMAIL_ENABLED_RECORDS: N_("Email messages from records that are email enabled"),
    TrackingOption.NONE: N_("No email messages"),
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


def _addresses(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values if v and v.strip())


def _blocklist(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.removeprefix("*.").removeprefix("@") for v in _addresses(values))


# A context is made per message, with the run's owner addresses and blocklist every time:
# a frozen set (what the engine hands in) is normalized once (both sets are immutable).
_frozen_addresses = lru_cache(maxsize=256)(_addresses)
_frozen_blocklist = lru_cache(maxsize=16)(_blocklist)


def _address_set(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, frozenset):
        return _frozen_addresses(values) if values else values
    return _addresses(values)


def _blocklist_set(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, frozenset):
        return _frozen_blocklist(values) if values else values
    return _blocklist(values)


def as_utc(moment: datetime) -> datetime:
    """A time with its zone (naive times are UTC)."""
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
    # The mailbox user's own track requests for this email:
    untracked: bool = False  # they untracked it
    pending_request: bool = False  # they asked (in Outlook) to track it when it arrives
    # The regardings on offer besides the tracked folder's, and the email's current one:
    request_regarding: Regarding | None = None  # what the pending request chose
    conversation_regarding: Regarding | None = None  # the correlated parent's
    tracked_regarding: Regarding | None = None  # the tracked email's, when already tracked
    # Why the tracking user may not link to the regarding the chain chose (the engine
    # checks it after a first decision and decides again with this set).
    regarding_refused: str | None = None

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
    def folder_regarding(self) -> Regarding | None:
        """A tracked folder's regarding (it wins over the email's current one)."""
        return self.folder.regarding if self.folder.role is FolderRole.TRACKED else None


@dataclass(frozen=True)
class RuleHit:
    name: str
    matched: bool


@dataclass(frozen=True)
class Decision:
    """The chain's answer. ``reason`` is final (it says where the regarding came from);
    ``regarding`` is what the email is set regarding, and ``regarding_wins`` whether it
    replaces the email's current regarding (a tracked folder's does) or only fills an
    empty one."""

    track: bool
    hits: tuple[RuleHit, ...]
    reason: str
    rule: str = ""  # the name of the rule that decided
    regarding: Regarding | None = None
    regarding_wins: bool = False

    def rule_hits(self) -> list[dict[str, object]]:
        """The hits as JSON-ready dicts, for the decision log."""
        return [{"rule": hit.name, "matched": hit.matched} for hit in self.hits]
