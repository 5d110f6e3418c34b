"""Email to case in the engine: a queue mailbox's newly tracked incoming email goes through
the queue's case rules (``server.sync.mail.case_rules``) and opens, updates, reopens or
follows up a case, routed and acknowledged as the rule says.

``apply_case_rules(ctx, tracked, matches)`` runs inside the wave, after tracking (so on
whole messages only: mail read headers first is read whole before it is tracked, and a
body-contains or has-attachments condition reads the whole message), as the
run's actor (the queue's owner or a member of its owning team), so creating the case and
the contact, changing the case and linking the email use the same privilege checks as a
person would meet. The wave's case work runs in one savepoint, redone one savepoint per
email when any of it is refused: the refused email stays tracked and the reason says why no
case was opened. What it returns for each
email (a sentence and the rule hits) goes into the email's decision row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from server.crm.activities import Email
from server.crm.models import Case, Contact
from server.crm.queues import CaseRule
from server.crm.registry import RECORD_TYPES
from server.crm.services import records, tracking
from server.crm.services.resolution import Match
from server.db import db
from server.errors import Forbidden, Invalid, NotFound
from server.security.models import Team, User
from server.sync.engine.case_ack import AckWave, acknowledge
from server.sync.engine.contacts import split_name
from server.sync.engine.content import clean
from server.sync.engine.context import MailboxRun
from server.sync.mail.case_rules import (CaseContext, CaseDecision, ExistingCase, RuleSpec,
                                         automatic_evidence, case_numbers, decide_case)
from server.sync.mail.message import MailMessage

__all__ = ["CaseOutcome", "apply_case_rules", "queue_rules"]

OPEN = ("in_progress", "on_hold", "waiting")


@dataclass(frozen=True)
class CaseOutcome:
    """What email to case did with one email: a sentence for its reason, the hits."""

    reason: str
    hits: list[dict]
    case_id: int | None = None


@dataclass
class Tracked:
    """A newly tracked email of the wave, with what the rules read about it."""

    email: Email
    msg: MailMessage
    conversation_case: int | None  # the case the correlated parent is regarding
    received_at: datetime | None = None


def queue_rules(queue_id: int) -> list[CaseRule]:
    return list(db.session.scalars(select(CaseRule).where(
        CaseRule.queue_id == queue_id, CaseRule.enabled.is_(True))
        .order_by(CaseRule.position, CaseRule.id)))


def _spec(rule: CaseRule) -> RuleSpec:
    return RuleSpec(rule.id, rule.name, tuple((c.get("kind", ""), c.get("value", "") or "")
                                              for c in rule.conditions or []),
                    rule.on_resolved, rule.resolved_window_days)


def _sender(msg: MailMessage):
    return msg.from_ or msg.sender


def _existing(items: list[Tracked], held: list) -> dict[int, ExistingCase | None]:
    """The case each email answers: its conversation's, else one its subject names (the
    cases loaded are kept in ``held``, so the wave's work finds them in the session)."""
    numbers = {n for t in items for n in case_numbers(t.msg.subject)}
    ids = {t.conversation_case for t in items if t.conversation_case}
    found = list(db.session.scalars(select(Case).where(
        Case.ticket_number.in_(numbers) | Case.id.in_(ids)))) if numbers or ids else []
    held.extend(found)
    by_id = {c.id: c for c in found}
    by_number = {c.ticket_number.upper(): c for c in found}
    out: dict[int, ExistingCase | None] = {}
    for t in items:
        case, how = by_id.get(t.conversation_case), "the conversation"
        if case is None:
            case = next((by_number[n] for n in case_numbers(t.msg.subject) if n in by_number),
                        None)
            how = "the case number in the subject"
        out[t.email.id] = None if case is None else ExistingCase(
            case.id, case.ticket_number, case.status, case.resolved_on, how)
    return out


def own_mail(ctx: MailboxRun, msg: MailMessage) -> str | None:
    """Why ``msg`` is our own mail (the queue's, or another mailbox's automatic mail such as
    an acknowledgement), or None. Mail from a colleague written by a person may open a case."""
    sender = _sender(msg)
    if sender is None:
        return None
    if sender.address in ctx.owner_addresses:
        return f"its sender {sender.address} is this queue's own address"
    automatic = automatic_evidence(msg)
    if automatic and sender.address in ctx.org_addresses:
        return f"{sender.address} is one of this organization's mailboxes and {automatic}"
    return None


def _parent_accounts(people: dict[int, list[Match]], held: list) -> dict[int, int]:
    """contact id -> its account, for every contact among the senders (one query; the
    contacts are kept in ``held``: a new case's customer is checked on them)."""
    ids = {m.record_id for found in people.values() for m in found
           if m.record_type == "contact"}
    contacts = list(db.session.scalars(select(Contact).where(Contact.id.in_(ids)))) \
        if ids else []
    held.extend(contacts)
    return {c.id: c.parent_account_id for c in contacts if c.parent_account_id is not None}


def _accounts_of(matches: list[Match], parents: dict[int, int]) -> frozenset[int]:
    """The sender's accounts: the accounts it is, and those of the contacts it is."""
    return frozenset({m.record_id for m in matches if m.record_type == "account"}
                     | {parents[m.record_id] for m in matches
                        if m.record_type == "contact" and m.record_id in parents})


@dataclass
class _Wave:
    """What the case work of one wave reads once and keeps up to date as it goes: each
    round-robin rule's turn (read under a row lock), each routing team's open cases per
    member, and what the acknowledgements share (``AckWave``, read at the first one)."""

    ctx: MailboxRun
    senders: set[str]
    turns: dict[int, int | None] = field(default_factory=dict)  # rule id -> last member
    loads: dict[int, dict[int, int]] = field(default_factory=dict)  # team id -> member -> open
    ack_wave: AckWave | None = None
    # What the wave loaded or made (cases, contacts), kept alive in the session's identity
    # map so that finding them again reads nothing.
    held: list = field(default_factory=list)

    def acks(self) -> AckWave:
        if self.ack_wave is None:
            self.ack_wave = AckWave.load(self.ctx, self.senders)
        return self.ack_wave


def apply_case_rules(ctx: MailboxRun, items: list[Tracked],
                     matches: dict[str, list[Match]]) -> dict[int, CaseOutcome]:
    """Each newly tracked email through the queue's rules; outcomes by email id.

    The wave's look-ups are made together (the cases the emails answer, the senders'
    accounts, the rules' turns and loads, the acknowledgement counts) and its case work is
    written in one savepoint; when one email's work is refused, that savepoint is rolled
    back and the emails are done again one savepoint each, so only the refused one's work
    is left out and its reason says why."""
    if ctx.queue is None or ctx.actor is None or not items:
        return {}
    rules = queue_rules(ctx.queue.id)
    if not rules:
        return {}
    specs = [_spec(r) for r in rules]
    by_id = {r.id: r for r in rules}
    held: list = []
    existing = _existing(items, held)
    senders = {t.email.id: [m for m in (matches.get(_sender(t.msg).address, [])
                                        if _sender(t.msg) else [])
                            if m.record_type in ("contact", "account", "lead")] for t in items}
    parents = _parent_accounts(senders, held)
    outcomes: dict[int, CaseOutcome] = {}
    work: list[tuple[Tracked, CaseDecision, CaseRule]] = []
    for t in items:
        people = senders[t.email.id]
        cctx = CaseContext(sender_known=bool(people),
                           sender_account_ids=_accounts_of(people, parents),
                           received_at=t.received_at, existing=existing.get(t.email.id),
                           own_mail=own_mail(ctx, t.msg))
        decision = decide_case(t.msg, cctx, specs)
        rule = by_id.get(decision.rule_id)
        if decision.action == "none" or rule is None:
            outcomes[t.email.id] = CaseOutcome(decision.reason, decision.rule_hits())
        else:
            work.append((t, decision, rule))
    if not work:
        return outcomes
    addresses = {_sender(t.msg).address for t, *_ in work if _sender(t.msg)}
    kept = dict(matches)  # new contacts add to it; a rolled back wave takes them out again
    savepoint = db.session.begin_nested()
    try:
        wave = _Wave(ctx, addresses, held=held)
        done = {t.email.id: _carry_out(ctx, t, decision, rule, senders[t.email.id], matches,
                                       wave) for t, decision, rule in work}
        savepoint.commit()
    except (Forbidden, Invalid, NotFound):
        savepoint.rollback()
        matches.clear()
        matches.update(kept)
        wave = _Wave(ctx, addresses, held=held)
        done = {t.email.id: _one_by_one(ctx, t, decision, rule, senders[t.email.id], matches,
                                        wave) for t, decision, rule in work}
    return outcomes | done


def _one_by_one(ctx: MailboxRun, t: Tracked, decision: CaseDecision, rule: CaseRule,
                people: list[Match], matches: dict[str, list[Match]], wave: _Wave) -> CaseOutcome:
    """One email's case work in a savepoint of its own: refused, nothing of it stays."""
    savepoint = db.session.begin_nested()
    turns, loads, sent = dict(wave.turns), {k: dict(v) for k, v in wave.loads.items()}, \
        dict(wave.ack_wave.sent) if wave.ack_wave else None
    kept = dict(matches)
    try:
        outcome = _carry_out(ctx, t, decision, rule, people, matches, wave)
        savepoint.commit()
        return outcome
    except (Forbidden, Invalid, NotFound) as exc:
        savepoint.rollback()
        matches.clear()
        matches.update(kept)
        wave.turns, wave.loads = turns, loads
        if sent is not None:
            wave.ack_wave.sent = sent
        return CaseOutcome(f"{decision.reason} But it could not be done: {exc.message}",
                           decision.rule_hits())


def _carry_out(ctx: MailboxRun, t: Tracked, decision: CaseDecision, rule: CaseRule,
               people: list[Match], matches: dict[str, list[Match]], wave: _Wave) -> CaseOutcome:
    """Do what the decision says (raises Forbidden, Invalid or NotFound when refused)."""
    case, said = _case_for(ctx, t, decision, rule, people, matches, wave)
    if t.email.regarding_ref != ("case", case.id):
        tracking.set_regarding(ctx.actor, t.email, ("case", case.id), record=case, flush=False)
    if decision.action in ("create", "follow_up") and rule.acknowledge:
        said += " " + acknowledge(ctx, rule, case, t.email, t.msg, wave.acks())
    return CaseOutcome(f"{decision.reason}{said}", decision.rule_hits(), case.id)


def _case_for(ctx: MailboxRun, t: Tracked, decision: CaseDecision, rule: CaseRule,
              people: list[Match], matches: dict[str, list[Match]],
              wave: _Wave) -> tuple[Case, str]:
    """The case the email goes to (made, changed or found) and what the reason adds."""
    if decision.action in ("update", "reopen"):
        case = db.session.get(Case, decision.case_id)
        if decision.action == "reopen":
            records.update(ctx.actor, case, {"status": "in_progress"})
        return case, ""
    parent = db.session.get(Case, decision.case_id) if decision.case_id else None
    customer, said = _customer(ctx, t.msg, rule, people, matches, parent, wave.held)
    owner, routed = route(ctx, rule, wave)
    data = {"title": (clean(t.msg.subject) or "").strip()[:200] or "(no subject)",
            "priority": rule.priority, "origin": "email", **customer}
    case = records.create(ctx.actor, RECORD_TYPES["case"], data, owner=owner)
    wave.held.append(case)
    if parent is not None:
        case.parent_case_id = parent.id
    return case, f" Case {case.ticket_number} was opened{said}; {routed}."


def _customer(ctx: MailboxRun, msg: MailMessage, rule: CaseRule, people: list[Match],
              matches: dict[str, list[Match]], parent: Case | None,
              held: list) -> tuple[dict, str]:
    """The new case's customer: the follow-up's parent's, else the sender's contact or
    account, else a contact made for an unknown sender when the rule says so (and known
    from then on: the wave's next email from them finds it in ``matches``)."""
    if parent is not None and parent.customer is not None:
        column = "customer_account_id" if parent.customer_account_id else "customer_contact_id"
        return {column: getattr(parent, column)}, ""
    for kind in ("contact", "account"):
        match = next((m for m in people if m.record_type == kind), None)
        if match is not None:
            return {f"customer_{kind}_id": match.record_id}, ""
    sender = _sender(msg)
    if sender is None or not rule.create_contact or people \
            or sender.address in ctx.org_addresses:
        return {}, ""
    made = next((m for m in matches.get(sender.address, []) if m.record_type == "contact"), None)
    if made is not None:  # made for the sender's earlier email in this wave
        return {"customer_contact_id": made.record_id}, ""
    first, last = split_name(clean(sender.name), sender.address)
    data = {"last_name": last, "email1": sender.address, **({"first_name": first} if first else {})}
    contact = records.create(ctx.actor, RECORD_TYPES["contact"], data, owner=ctx.owner)
    held.append(contact)
    owner_id = ctx.owner.id if isinstance(ctx.owner, User) else None
    matches[sender.address] = [*matches.get(sender.address, []), Match(
        "contact", contact.id, contact.full_name or sender.address, owner_id, True)]
    return {"customer_contact_id": contact.id}, f" with a new contact for {sender.address}"


# --------------------------------------------------------------------------- routing


def _members(team: Team | None) -> list[User]:
    return sorted((m for m in (team.members if team else []) if m.is_active),
                  key=lambda m: m.id)


def route(ctx: MailboxRun, rule: CaseRule, wave: _Wave) -> tuple[User | Team, str]:
    """Who owns a new case: a user, the next member of a team in turn, its least busy
    member, or the queue's owner (left in the queue); and the words for it. The turn and
    the loads are read once per wave and counted on in it."""
    fallback = ctx.owner
    if rule.routing == "user" and rule.route_user is not None and rule.route_user.is_active:
        return rule.route_user, f"it is assigned to {rule.route_user.full_name}"
    members = _members(rule.route_team)
    if rule.routing == "round_robin" and members:
        if rule.id not in wave.turns:
            # Locked (PostgreSQL) so two workers never hand two cases to the same member.
            wave.turns[rule.id] = db.session.scalar(select(CaseRule.last_routed_user_id).where(
                CaseRule.id == rule.id).with_for_update())
        last = wave.turns[rule.id]
        after = [m for m in members if last is not None and m.id > last]
        chosen = (after or members)[0]
        wave.turns[rule.id] = rule.last_routed_user_id = chosen.id
        return chosen, (f"it is assigned to {chosen.full_name} in turn "
                        f"(team {rule.route_team.name})")
    if rule.routing == "least_busy" and members:
        team = rule.route_team.id
        if team not in wave.loads:
            wave.loads[team] = dict(db.session.execute(
                select(Case.owner_user_id, func.count()).where(
                    Case.owner_user_id.in_([m.id for m in members]), Case.status.in_(OPEN))
                .group_by(Case.owner_user_id)).all())
        load = wave.loads[team]
        chosen = min(members, key=lambda m: (load.get(m.id, 0), m.id))
        said = (f"it is assigned to {chosen.full_name}, the least busy of team "
                f"{rule.route_team.name} ({load.get(chosen.id, 0)} open cases)")
        load[chosen.id] = load.get(chosen.id, 0) + 1
        return chosen, said
    return fallback, f'it is left in the queue "{ctx.queue.name}"'
