"""The tracking decision: should this email become a CRM activity, and why (not)?

A declarative chain of small named rules, first match wins, in the spirit of GNU Mailman's
rules and chains. Each rule is a class with a ``name``, a one-line docstring, the action it
takes when it matches (track or not) and a ``reason`` a user reads in "why was this email
(not) tracked?". ``decide`` walks the chain and records every rule it tried.

No I/O here: the engine hands in everything else (addresses known to the CRM, the mailbox's
tracking option, folder rules, whether correlation found a parent, the owner's track
requests) in a ``DecisionContext`` (``server.sync.mail.decision``). ``CHAIN`` below is the
chain that runs, written out in order; the ``Decision`` it gives carries the regarding it
chose (a tracked folder's, else the user's pending request's, else the conversation's) and
its final reason.

The user's own word on one email comes first: an email they untracked is never tracked again
by itself; one they asked to track (before it arrived) is, unless it is no email a person
sent (a bounce, a loop, a blocked sender). The order encodes which exclusions explicit intent overrides. A tracked folder or the
"Tracked to Regarding" category beats the tracking option, auto-reply and bulk detection
(someone who drags a newsletter into a tracked folder wants it tracked) but never turns a
bounce, a mail loop or a blocked sender into an activity. The category marks one message,
so it also beats the mailbox's "process email received after" date and the folder limits;
a tracked folder is a standing rule, so it respects that date. An email that is already
tracked stays tracked whatever else is true of it.

Reasons are English sentences made from strings marked with ``N_`` (values as ``%(name)s``):
stored as written, they are shown in the reader's language by ``server.i18n.translate_stored``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from datetime import datetime
from typing import ClassVar

from server.i18n import N_
from server.sync.mail.automatic import auto_reply_evidence, bulk_evidence
from server.sync.mail.decision import (LOOP_HEADER, OPTION_LABELS, TRACKED_CATEGORY, Decision,
                                       DecisionContext, Direction, FolderRole, OwnerKind, Regarding,
                                       RuleHit, TrackingOption, as_utc)
from server.sync.mail.message import Address, MailMessage

__all__ = ["CHAIN", "Chain", "Rule", "chain_description", "decide", "loop_addresses"]


# --------------------------------------------------------------------------- rule base


class Rule:
    """One named check in the chain; ``track`` is what happens when it matches."""

    name: ClassVar[str]
    track: ClassVar[bool]

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        raise NotImplementedError

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        raise NotImplementedError

    @classmethod
    def description(cls) -> str:
        lines = (cls.__doc__ or "").strip().splitlines()
        return lines[0] if lines else ""


def _header(msg: MailMessage, name: str) -> str:
    return (msg.headers.get(name) or "").strip()


# --------------------------------------------------------------------------- exclusions


class UserUntracked(Rule):
    """The mailbox's user untracked this email: sync never tracks it again by itself."""

    name = "untracked-by-user"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.untracked

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("You untracked this email, so Regarding does not track it again by itself. "
                  "Track it in Outlook to keep it after all.")


class AlreadyTracked(Rule):
    """An activity for this email exists already: it stays tracked, never duplicated."""

    name = "already-tracked"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.already_tracked

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        folder = ctx.folder_regarding
        if folder is not None and folder != ctx.tracked_regarding and not ctx.regarding_refused:
            return N_('This email is already tracked. It is in the tracked folder "%(folder)s", so '
                      "it is now set regarding the %(kind)s that folder is linked to.") % {
                          "folder": ctx.folder.name, "kind": folder[0]}
        return N_("This email is already tracked in Regarding, so it stays tracked.")


class NoSender(Rule):
    """Items without any sender address are not emails a person can be linked to."""

    name = "no-sender"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return msg.from_ is None and msg.sender is None

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("This item has no sender address, so it cannot be tracked as an email.")


class DeliveryReport(Rule):
    """Bounces, delivery notices and read receipts are never tracked, not even by hand rules."""

    name = "delivery-report"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return msg.is_delivery_report

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("This is a delivery report (a bounce, delay notice or read receipt), "
                  "not an email from a person, so it is not tracked.")


_LOOP_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


def loop_addresses(msg: MailMessage) -> list[str]:
    """The addresses an X-Loop header names (the loop rule asks whether they are the
    organization's)."""
    return [a.lower() for a in _LOOP_ADDRESS.findall(_header(msg, "x-loop") or "")]


class Loop(Rule):
    """Mail that Regarding itself sent (or that loops between org mailboxes) is not re-tracked."""

    name = "loop"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        if LOOP_HEADER in msg.headers:
            return True
        return any(address in ctx.org_addresses for address in loop_addresses(msg))

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("Regarding sent this email itself (it carries Regarding's loop marker), "
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
            return N_("Every recipient of this email is on the blocklist, so it is never tracked "
                      "automatically. You can still track it by hand in Outlook.")
        return N_("The sender %(address)s is on the blocklist, so it is never tracked "
                  "automatically. You can still track it by hand in Outlook.") % {
                      "address": ctx.counterparts(msg)[0].address}


# --------------------------------------------------------------------------- explicit intent


class PendingRequest(Rule):
    """The user asked to track this email (in Outlook) before it reached the server."""

    name = "track-request"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.pending_request

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("You asked to track this email in Outlook before it reached Regarding, so it "
                  "is tracked now that it arrived.")


class TrackedCategory(Rule):
    """The "Tracked to Regarding" category was set on the item: the user asked for it."""

    name = "tracked-category"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.has_tracked_category

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_('This email has the "%(category)s" category, so it is tracked.') % {
            "category": TRACKED_CATEGORY}


def _day(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d")


class BeforeProcessAfter(Rule):
    """Email received before the mailbox's "process email received after" date is left alone."""

    name = "before-process-after"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        when = ctx.received_at or msg.date
        return bool(ctx.process_after and when and as_utc(when) < as_utc(ctx.process_after))

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        when = ctx.received_at or msg.date
        assert when is not None and ctx.process_after is not None
        return N_("This email arrived on %(day)s, before this mailbox started processing "
                  "email (%(start)s), so it is not tracked.") % {
                      "day": _day(when), "start": _day(ctx.process_after)}


class FolderNotEvaluated(Rule):
    """Only the Inbox, Sent Items (when enabled) and tracked folders are evaluated."""

    name = "folder-not-evaluated"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        role = ctx.folder.role
        return role is FolderRole.OTHER or (role is FolderRole.SENT and not ctx.track_sent_items)

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        if ctx.folder.role is FolderRole.SENT:
            return N_("Sent items are not tracked for this mailbox (tracking of sent items is "
                      "turned off), so this email is not tracked.")
        if not ctx.folder.name:
            return N_("This email is in another folder. Regarding only looks at the Inbox, Sent "
                      "Items and tracked folders, so it is not tracked.")
        return N_('This email is in the folder "%(folder)s". Regarding only looks at the Inbox, '
                  "Sent Items and tracked folders, so it is not tracked.") % {
                      "folder": ctx.folder.name}


class TrackedFolder(Rule):
    """Email in a tracked folder is tracked, regarding the folder rule's record if it has one."""

    name = "tracked-folder"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.folder.role is FolderRole.TRACKED

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        values = {"folder": ctx.folder.name,
                  "kind": ctx.folder.regarding[0] if ctx.folder.regarding else ""}
        if ctx.folder.regarding and ctx.folder.name:
            return N_('This email is in the tracked folder "%(folder)s", so it is tracked and set '
                      "regarding the %(kind)s that folder is linked to.") % values
        if ctx.folder.regarding:
            return N_("This email is in a tracked folder, so it is tracked and set regarding the "
                      "%(kind)s that folder is linked to.") % values
        if ctx.folder.name:
            return N_('This email is in the tracked folder "%(folder)s", so it is tracked.') % values
        return N_("This email is in a tracked folder, so it is tracked.")


# --------------------------------------------------------------------------- automatic mail

class AutoReply(Rule):
    """Out-of-office and other machine-sent replies are not tracked (unless filed explicitly)."""

    name = "auto-reply"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return auto_reply_evidence(msg) is not None

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("This email was sent automatically (%(evidence)s), not by a person, so it is "
                  "not tracked.") % {"evidence": auto_reply_evidence(msg)}


class BulkMail(Rule):
    """Newsletters and mailing-list traffic are not tracked (unless filed explicitly)."""

    name = "bulk-mail"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return bulk_evidence(msg) is not None

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("This looks like a newsletter or mailing-list email (%(evidence)s), so it is "
                  "not tracked automatically. Move it to a tracked folder or track it in Outlook "
                  "to keep it.") % {"evidence": bulk_evidence(msg)}


# --------------------------------------------------------------------------- tracking option


class CorrelatedReply(Rule):
    """A reply to a tracked email is tracked with it, for every option but "No email messages"."""

    name = "correlated-reply"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.is_correlated and ctx.tracking_option is not TrackingOption.NONE

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("This email is part of a conversation that is already tracked in Regarding, "
                  "so it is tracked with it.")


def _option_sentence(ctx: DecisionContext, first: bool = False) -> str:
    """Whose tracking option is which, within a sentence (``first``: beginning it)."""
    values = {"option": OPTION_LABELS[ctx.tracking_option]}
    if ctx.owner_kind is OwnerKind.USER:
        return (N_('Your tracking option is "%(option)s"') if first
                else N_('your tracking option is "%(option)s"')) % values
    return (N_('This queue\'s tracking option is "%(option)s"') if first
            else N_('this queue\'s tracking option is "%(option)s"')) % values


class OptionAll(Rule):
    """Tracking option "All email messages": everything that got this far is tracked."""

    name = "option-all"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.tracking_option is TrackingOption.ALL

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("%(option_sentence)s, so this email is tracked.") % {
            "option_sentence": _option_sentence(ctx, first=True)}


def _known_counterpart(msg: MailMessage, ctx: DecisionContext,
                       known: frozenset[str]) -> Address | None:
    return next((a for a in ctx.counterparts(msg) if a.address in known), None)




def _known_reason(msg: MailMessage, ctx: DecisionContext, known: frozenset[str],
                  sentences: tuple[str, str]) -> str:
    """Why mail with a known party is tracked: ``sentences`` for incoming and sent mail."""
    party = _known_counterpart(msg, ctx, known)
    assert party is not None
    incoming, outgoing = sentences
    sentence = incoming if ctx.direction_of(msg) is Direction.INCOMING else outgoing
    return sentence % {"address": party.address, "option_sentence": _option_sentence(ctx)}


class OptionCrmRecords(Rule):
    """Tracking option "from leads, contacts and accounts": mail with one of them is tracked."""

    name = "option-crm-records"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return (ctx.tracking_option is TrackingOption.FROM_CRM_RECORDS
                and _known_counterpart(msg, ctx, ctx.record_addresses) is not None)

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return _known_reason(msg, ctx, ctx.record_addresses, (
            N_("This email is from %(address)s, a lead, contact or account in Regarding, and "
               "%(option_sentence)s, so it is tracked."),
            N_("This email was sent to %(address)s, a lead, contact or account in Regarding, "
               "and %(option_sentence)s, so it is tracked.")))


class OptionEmailEnabledRecords(Rule):
    """Tracking option "from email-enabled records": mail with any known record is tracked."""

    name = "option-email-enabled-records"
    track = True

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        known = ctx.record_addresses | ctx.email_enabled_addresses
        return (ctx.tracking_option is TrackingOption.FROM_EMAIL_ENABLED_RECORDS
                and _known_counterpart(msg, ctx, known) is not None)

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return _known_reason(msg, ctx, ctx.record_addresses | ctx.email_enabled_addresses, (
            N_("This email is from %(address)s, a record in Regarding, and %(option_sentence)s, "
               "so it is tracked."),
            N_("This email was sent to %(address)s, a record in Regarding, and "
               "%(option_sentence)s, so it is tracked.")))


class OptionNone(Rule):
    """Tracking option "No email messages": nothing is tracked automatically."""

    name = "option-none"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return ctx.tracking_option is TrackingOption.NONE

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("%(option_sentence)s, so email is not tracked automatically. Use a tracked "
                  "folder, the tracked category or Outlook to track it.") % {
                      "option_sentence": _option_sentence(ctx, first=True)}


class NotTracked(Rule):
    """The default: nothing above asked for tracking, so the email is not tracked."""

    name = "default"
    track = False

    def matches(self, msg: MailMessage, ctx: DecisionContext) -> bool:
        return True

    def reason(self, msg: MailMessage, ctx: DecisionContext) -> str:
        return N_("This email is not tracked: %(why_not)s, and %(option_sentence)s.") % {
            "why_not": _why_not(msg, ctx), "option_sentence": _option_sentence(ctx)}


def _why_not(msg: MailMessage, ctx: DecisionContext) -> str:
    incoming = ctx.direction_of(msg) is Direction.INCOMING
    if ctx.tracking_option is TrackingOption.FROM_CRM_RECORDS:
        return (N_("its sender is not a lead, contact or account in Regarding") if incoming
                else N_("none of its recipients is a lead, contact or account in Regarding"))
    if ctx.tracking_option is TrackingOption.FROM_EMAIL_ENABLED_RECORDS:
        return (N_("its sender is not a record in Regarding") if incoming
                else N_("none of its recipients is a record in Regarding"))
    return N_("it does not answer an email that is tracked in Regarding")


# --------------------------------------------------------------------------- the chain


class Chain(Sequence[Rule]):
    """Rules in the order ``decide`` tries them. Their names are what the decision log
    stores, so a chain refuses two rules of one name, and a rule without a description
    (its docstring's first line, shown on the sync admin's help page)."""

    def __init__(self, *rules: Rule) -> None:
        names = [rule.name for rule in rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique in a chain: {', '.join(repeated)}")
        undescribed = [rule.name for rule in rules if not rule.description()]
        if undescribed:
            raise ValueError(f"rules without a description: {', '.join(undescribed)}")
        self._rules = rules
        self.by_name = dict(zip(names, rules))

    def __getitem__(self, index):
        return self._rules[index]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)  # (Sequence's own calls __getitem__ until IndexError)

    def __len__(self) -> int:
        return len(self._rules)


# The chain that runs, in order: the user's own word on this email first, then what is
# tracked already, then what is never tracked, explicit intent, what is evaluated, automatic
# mail, and the tracking option.
CHAIN = Chain(
    UserUntracked(),
    AlreadyTracked(),
    NoSender(),
    DeliveryReport(),
    Loop(),
    BlockedSender(),
    PendingRequest(),
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


def _regarding(ctx: DecisionContext) -> tuple[Regarding | None, bool, str]:
    """The regarding of a tracked email: a tracked folder's (it wins over the email's
    current one), else what the user's pending request chose, else the conversation's;
    with what the reason says about it when the email is new."""
    if ctx.folder_regarding is not None:
        return ctx.folder_regarding, True, ""  # the folder rule's reason names it
    if ctx.request_regarding is not None:
        return ctx.request_regarding, False, " " + N_(
            "It is set regarding the %(kind)s you chose.") % {"kind": ctx.request_regarding[0]}
    if ctx.conversation_regarding is not None:
        return ctx.conversation_regarding, False, " " + N_(
            "It is set regarding the same %(kind)s as the conversation.") % {
                "kind": ctx.conversation_regarding[0]}
    return None, False, ""


@cache
def _hit(name: str, matched: bool) -> RuleHit:
    """A rule's hit (frozen: every decision shares the two of each rule)."""
    return RuleHit(name, matched)


def decide(msg: MailMessage, ctx: DecisionContext, chain: Sequence[Rule] = CHAIN) -> Decision:
    """Walk the chain; the first rule that matches decides. Every rule tried is recorded;
    a tracking decision carries its regarding and the reason with where it came from."""
    hits: list[RuleHit] = []
    for rule in chain:
        matched = rule.matches(msg, ctx)
        hits.append(_hit(rule.name, matched))
        if not matched:
            continue
        reason = rule.reason(msg, ctx)
        if not rule.track:
            return Decision(False, tuple(hits), reason, rule.name)
        regarding, wins, said = _regarding(ctx)
        if regarding is not None and ctx.regarding_refused:
            reason += " " + N_("It could not be set regarding that %(kind)s (%(problem)s).") % {
                "kind": regarding[0], "problem": ctx.regarding_refused.rstrip(".")}
            regarding, wins = None, False
        elif not ctx.already_tracked:
            reason += said
        return Decision(True, tuple(hits), reason, rule.name, regarding, wins)
    return Decision(track=False, hits=tuple(hits),
                    reason=N_("No tracking rule applied to this email, so it is not tracked."))


def chain_description(chain: Iterable[Rule] = CHAIN) -> list[tuple[str, bool, str]]:
    """``(name, tracks, description)`` for each rule, in order: for the admin help page."""
    return [(rule.name, rule.track, rule.description()) for rule in chain]
