"""Email to case, the decision (pure, no I/O): which of a queue's rules an email meets, and
whether it opens a case, updates the case it answers, reopens it or opens a follow-up.

Dynamics' automatic record creation and update rules, in the style of the tracking chain
(``server.sync.mail.rules``): each condition is a small named class with a sentence for
"why"; a rule is an ordered list of conditions (all must hold) with what it does; a queue's
rules are tried in order and the first whose conditions all hold decides. Every condition
tried is a hit (``case:<rule>:<condition>``) and the outcome is one sentence, both stored
with the email's decision row, so "why (not) tracked" answers for cases too.

What a rule does: an email that answers a case (by correlation, or the case number in its
subject: the engine finds it and hands it in as ``CaseContext.existing``) goes to that case;
if that case is resolved (or canceled), a reply within the rule's window reopens it when the
rule says "reopen", and any other reply opens a new case linked to it. Anything else opens a
new case. Acknowledgements are the engine's business, but never for automatic mail.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.i18n import N_
from server.sync.mail.automatic import auto_reply_evidence, bulk_evidence
from server.sync.mail.decision import LOOP_HEADER, as_utc
from server.sync.mail.message import MailMessage

__all__ = ["CONDITIONS", "CASE_NUMBER", "BusinessHours", "CaseContext", "CaseDecision",
           "ExistingCase", "RuleSpec", "automatic_evidence", "case_numbers", "decide_case"]

# The case numbers Regarding gives (``CAS-01234-1A2B3C``), as found in a subject.
CASE_NUMBER = re.compile(r"\bCAS-\d{5}-[0-9A-Z]{4,6}\b", re.IGNORECASE)


def case_numbers(subject: str) -> list[str]:
    """The case numbers a subject names, upper case, each once, in order."""
    return list(dict.fromkeys(n.upper() for n in CASE_NUMBER.findall(subject or "")))


def automatic_evidence(msg: MailMessage) -> str | None:
    """Why this mail was sent by a machine (an auto-reply, a bounce, list mail, a loop, our
    own), or None: such mail opens no case and is never acknowledged."""
    if msg.is_delivery_report:
        return "it is a delivery report"
    if LOOP_HEADER in msg.headers or "x-loop" in msg.headers:
        return "it carries a loop marker"
    return auto_reply_evidence(msg) or bulk_evidence(msg)


# --------------------------------------------------------------------------- business hours

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\w{3})(?:-(\w{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})"
                    r"(?:\s+(\S+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BusinessHours:
    """Days and hours in a time zone, written ``mon-fri 09:00-17:00 Europe/Berlin``."""

    days: frozenset[int]
    start: time
    end: time
    zone: str = "UTC"

    @classmethod
    def parse(cls, text: str) -> BusinessHours:
        found = _HOURS.match(text or "")
        if not found:
            raise ValueError("Write business hours as days, hours and a time zone, "
                             "e.g. \"mon-fri 09:00-17:00 Europe/Berlin\".")
        first, last, h1, m1, h2, m2, zone = found.groups()
        try:
            a, b = _DAYS.index(first.lower()), _DAYS.index((last or first).lower())
            start, end = time(int(h1), int(m1)), time(int(h2), int(m2))
        except ValueError:
            raise ValueError("Days are mon to sun and hours 00:00 to 23:59.") from None
        try:
            ZoneInfo(zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"There is no time zone called {zone!r}.") from None
        days = frozenset(range(a, b + 1)) if a <= b else frozenset([*range(a, 7), *range(b + 1)])
        return cls(days, start, end, zone or "UTC")

    def contains(self, moment: datetime) -> bool:
        local = as_utc(moment).astimezone(ZoneInfo(self.zone))
        return local.weekday() in self.days and self.start <= local.time() < self.end


# --------------------------------------------------------------------------- what the rules read


@dataclass(frozen=True)
class ExistingCase:
    """The case an email answers, as the engine found it."""

    id: int
    number: str
    status: str
    resolved_on: datetime | None
    found_by: str  # "the conversation" or "the case number in the subject"

    @property
    def closed(self) -> bool:
        return self.status in ("resolved", "canceled")


@dataclass(frozen=True)
class CaseContext:
    """Everything the case rules need besides the message."""

    sender_known: bool = False  # the sender is a contact, account or lead in the CRM
    sender_account_ids: frozenset[int] = frozenset()  # the sender's account(s)
    received_at: datetime | None = None
    existing: ExistingCase | None = None
    # Why the mail is our own (sent by this queue, or by another of the organization's
    # mailboxes automatically, as an acknowledgement is): such mail never opens a case.
    own_mail: str | None = None


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the chain reads it (from a ``CaseRule`` row)."""

    id: int
    name: str
    conditions: tuple[tuple[str, str], ...] = ()
    on_resolved: str = "reopen"
    resolved_window_days: int = 7


@dataclass(frozen=True)
class CaseDecision:
    """What happens: ``action`` is create, update, reopen, follow_up or none."""

    action: str
    reason: str
    hits: tuple[tuple[str, bool], ...] = ()
    rule_id: int | None = None
    case_id: int | None = None  # the case updated, reopened or followed up

    def rule_hits(self) -> list[dict[str, object]]:
        return [{"rule": name, "matched": matched} for name, matched in self.hits]


# --------------------------------------------------------------------------- conditions


class Condition:
    """One named check on an email; ``value`` is what the rule gives it (may be empty)."""

    kind: ClassVar[str]
    label: ClassVar[str]  # for the admin page
    needs_value: ClassVar[bool] = False

    def holds(self, msg: MailMessage, ctx: CaseContext, value: str) -> bool:
        raise NotImplementedError

    def says(self, value: str) -> str:
        """The condition in words, for reasons ("the sender is known")."""
        raise NotImplementedError

    def check(self, value: str) -> str:
        """The value as stored; raises ValueError with a sentence when it is not valid."""
        value = (value or "").strip()
        if self.needs_value and not value:
            raise ValueError(f'"{self.label}" needs a value.')
        return value if self.needs_value else ""


def _sender(msg: MailMessage) -> str:
    who = msg.from_ or msg.sender
    return who.address if who else ""


class SenderKnown(Condition):
    kind, label = "sender_known", N_("The sender is a contact, account or lead")

    def holds(self, msg, ctx, value):
        return ctx.sender_known

    def says(self, value):
        return N_("the sender is in the CRM")


class SenderUnknown(Condition):
    kind, label = "sender_unknown", N_("The sender is not in the CRM")

    def holds(self, msg, ctx, value):
        return not ctx.sender_known

    def says(self, value):
        return N_("the sender is not in the CRM")


class SenderDomain(Condition):
    kind, label, needs_value = "sender_domain", N_("The sender's domain is"), True

    def holds(self, msg, ctx, value):
        domain = _sender(msg).rpartition("@")[2]
        return bool(domain) and (domain == value or domain.endswith("." + value))

    def says(self, value):
        return N_("the sender's address is at %(value)s") % {"value": value}

    def check(self, value):
        value = super().check(value).lower().lstrip("@").removeprefix("*.")
        if "@" in value or "." not in value or any(c.isspace() for c in value):
            raise ValueError("A domain looks like contoso.example.")
        return value


class SenderAccount(Condition):
    kind, label, needs_value = "sender_account", N_("The sender belongs to the account (id)"), True

    def holds(self, msg, ctx, value):
        return value.isdigit() and int(value) in ctx.sender_account_ids

    def says(self, value):
        return N_("the sender belongs to account %(value)s") % {"value": value}

    def check(self, value):
        value = super().check(value)
        if not value.isdigit():
            raise ValueError("An account is given by its number (id).")
        return value


class SubjectContains(Condition):
    kind, label, needs_value = "subject_contains", N_("The subject contains"), True

    def holds(self, msg, ctx, value):
        return value.casefold() in (msg.subject or "").casefold()

    def says(self, value):
        return N_('the subject contains "%(value)s"') % {"value": value}


class BodyContains(Condition):
    kind, label, needs_value = "body_contains", N_("The body contains"), True

    def holds(self, msg, ctx, value):
        return value.casefold() in (msg.text_body or msg.html_body or "").casefold()

    def says(self, value):
        return N_('the body contains "%(value)s"') % {"value": value}


class HasAttachments(Condition):
    kind, label = "has_attachments", N_("It has attachments")

    def holds(self, msg, ctx, value):
        return any(not a.inline for a in msg.attachments)

    def says(self, value):
        return N_("it has attachments")


class _Hours(Condition):
    needs_value = True
    inside: ClassVar[bool]

    def holds(self, msg, ctx, value):
        when = ctx.received_at or msg.date
        return when is not None and BusinessHours.parse(value).contains(when) is self.inside

    def check(self, value):
        value = super().check(value)
        BusinessHours.parse(value)
        return value


class DuringHours(_Hours):
    kind, label, inside = "business_hours", N_("Received during business hours"), True

    def says(self, value):
        return N_("it arrived during business hours (%(value)s)") % {"value": value}


class OutsideHours(_Hours):
    kind, label, inside = "outside_business_hours", N_("Received outside business hours"), False

    def says(self, value):
        return N_("it arrived outside business hours (%(value)s)") % {"value": value}


class NotAutomatic(Condition):
    kind, label = "not_automatic", N_("It is no automatic reply, bounce, list mail or loop")

    def holds(self, msg, ctx, value):
        return automatic_evidence(msg) is None

    def says(self, value):
        return N_("it was written by a person")


CONDITIONS: dict[str, Condition] = {c.kind: c for c in (
    SenderKnown(), SenderUnknown(), SenderDomain(), SenderAccount(), SubjectContains(),
    BodyContains(), HasAttachments(), DuringHours(), OutsideHours(), NotAutomatic())}


# --------------------------------------------------------------------------- the chain


@dataclass
class _Walk:
    hits: list[tuple[str, bool]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "rule: why not"


def _rule_holds(rule: RuleSpec, msg: MailMessage, ctx: CaseContext, walk: _Walk) -> bool:
    for kind, value in rule.conditions:
        condition = CONDITIONS.get(kind)
        held = condition is not None and condition.holds(msg, ctx, value)
        walk.hits.append((f"case:{rule.name}:{kind}", held))
        if not held:
            said = (condition.says(value) if condition
                    else N_("an unknown condition (%(kind)s)") % {"kind": kind})
            walk.failed.append(N_('"%(rule)s" (not: %(condition)s)') % {"rule": rule.name,
                                                                         "condition": said})
            return False
    return True


def _conditions_said(rule: RuleSpec) -> str:
    said = [CONDITIONS[k].says(v) for k, v in rule.conditions if k in CONDITIONS]
    return " and ".join(said) if said else N_("it has no conditions")


def _on_case(rule: RuleSpec, case: ExistingCase, ctx: CaseContext, msg: MailMessage
             ) -> tuple[str, str]:
    """What a rule does with an email that answers ``case``: (action, sentence)."""
    values = {"case": case.number, "found_by": case.found_by, "status": case.status,
              "days": rule.resolved_window_days}
    if not case.closed:
        return "update", N_("It answers case %(case)s (found by %(found_by)s), so it is added to "
                            "that case.") % values
    when = ctx.received_at or msg.date
    window = timedelta(days=max(0, rule.resolved_window_days))
    within = (case.resolved_on is None or when is None
              or as_utc(when) - as_utc(case.resolved_on) <= window)
    if rule.on_resolved == "reopen" and within and case.status == "resolved":
        return "reopen", N_("It answers case %(case)s (found by %(found_by)s), which is "
                            "resolved; the reply came within %(days)s days, so the case is "
                            "reopened.") % values
    values["why"] = (N_("the rule opens a new case for replies to resolved cases")
                     if rule.on_resolved != "reopen" else
                     N_("it is canceled") if case.status == "canceled" else
                     N_("the reply came more than %(days)s days after it was resolved") % values)
    return "follow_up", N_("It answers case %(case)s (found by %(found_by)s), which is "
                           "%(status)s; %(why)s, so a new case linked to %(case)s is "
                           "opened.") % values


def decide_case(msg: MailMessage, ctx: CaseContext, rules: list[RuleSpec]) -> CaseDecision:
    """Try the rules in order; the first whose conditions all hold decides what happens."""
    if ctx.own_mail and rules:
        return CaseDecision("none", f"It is this organization's own mail ({ctx.own_mail}), "
                            "which never opens or changes a case.", (("case:own_mail", True),))
    walk = _Walk()
    for rule in rules:
        if not _rule_holds(rule, msg, ctx, walk):
            continue
        walk.hits.append((f"case:{rule.name}", True))
        because = N_('Case rule "%(rule)s" applies (%(conditions)s).') % {
            "rule": rule.name, "conditions": _conditions_said(rule)}
        if ctx.existing is not None:
            action, said = _on_case(rule, ctx.existing, ctx, msg)
            return CaseDecision(action, f"{because} {said}", tuple(walk.hits), rule.id,
                                ctx.existing.id)
        subject = (msg.subject or "").strip() or "(no subject)"
        opened = N_('A case "%(subject)s" is opened.') % {"subject": subject[:120]}
        return CaseDecision("create", f"{because} {opened}", tuple(walk.hits), rule.id)
    if not rules:
        return CaseDecision("none", N_("This queue has no case rules, so no case is opened."))
    automatic = automatic_evidence(msg)
    tail = (" " + N_("It was sent automatically (%(evidence)s).") % {"evidence": automatic}
            if automatic else "")
    return CaseDecision("none", N_("No case rule applies, so no case is opened or changed: "
                                   "%(rules)s.") % {"rules": "; ".join(walk.failed)} + tail,
                        tuple(walk.hits))
