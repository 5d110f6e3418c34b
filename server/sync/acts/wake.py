"""A change people make to an appointment, contact or task (pages, the REST API, the Outlook
add-in: anything done in a request) wakes the mailboxes that sync it, so it reaches their
mail servers within a sync worker's poll (``REGARDING_SYNC_POLL_SECONDS``) rather than the
mailbox's interval.

The mailboxes woken are those with a tracked item link to the record (it changed, left
their filter or was deleted: the push updates or removes the item) and those of the users
whose synchronization filter takes it now (the push creates or updates the item), when
they sync that kind: those whose filter could take it (its owner, its owning team's
members, an appointment's attendees who are users, and every user whose filter, their own
or the organization's, says "anyone"), each asked by ``filters.selected`` and the kind's
privilege, in a few statements however many users (those whose conditions are alike,
``_condition_key``, are asked once together). They are asked for
(``scheduler.ask_for_sync``) in the change's own transaction (a rollback asks for nothing),
and once it commits every sync worker looks for them at once: those running in this
process directly, those of other processes and machines through PostgreSQL's ``NOTIFY``.

The sync's own changes are not made in a request (and ``sync_items`` says so besides, with
``quiet``), so they never wake anything: no loops. Registered at app start (``server``
imports this module)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import has_request_context
from sqlalchemy import event, select, true
from sqlalchemy.orm import Session

from server.crm.activities import ActivityParty
from server.security import authz
from server.security.models import RecordShare, User, team_member
from server.security.privileges import Depth
from server.sync.acts import filters, records
from server.sync.models import ItemLink, Mailbox
from server.sync.workers import scheduler

_RECORDS = "wake_records"  # session.info: {(kind, id(record)): record} changed in this transaction
_MAILBOXES = "wake_mailboxes"  # session.info: mailbox ids known to sync a deleted record
_QUIET = "wake_quiet"  # session.info: the sync itself is writing


@contextmanager
def quiet(session: Session) -> Iterator[None]:
    """Changes made meanwhile on ``session`` wake nothing (the sync's own)."""
    was = session.info.get(_QUIET, False)
    session.info[_QUIET] = True
    try:
        yield
    finally:
        session.info[_QUIET] = was


def _kind_of(instance) -> str | None:
    for kind, model in records.MODELS.items():
        if isinstance(instance, model):
            return kind
    return None


@event.listens_for(Session, "before_flush")
def _collect(session: Session, _context, _instances) -> None:
    if session.info.get(_QUIET) or not has_request_context():
        return
    found = session.info.setdefault(_RECORDS, {})
    deleted: dict[str, list[int]] = {}
    for instance in (*session.new, *session.dirty, *session.deleted):
        party = isinstance(instance, ActivityParty)
        if party:  # an attendee added, changed or removed is a change of its meeting
            if instance in session.dirty and not session.is_modified(instance):
                continue
            instance = instance.activity
        kind = _kind_of(instance) if instance is not None else None
        if kind is None:
            continue
        if instance in session.deleted:
            if instance.id is not None:
                deleted.setdefault(kind, []).append(instance.id)
        elif party or instance in session.new or session.is_modified(instance):
            found[(kind, id(instance))] = instance
    if deleted:  # their links lose the record at the flush: read whose they are now
        with session.no_autoflush:
            session.info.setdefault(_MAILBOXES, set()).update(_linked_mailboxes(session,
                                                                                deleted))


@event.listens_for(Session, "before_commit")
def _flag(session: Session) -> None:
    if has_request_context() and not session.info.get(_QUIET) and (
            session.new or session.dirty or session.deleted):
        session.flush()  # the last changes (``_collect`` sees them), and new records' ids
    if not session.info.get(_RECORDS) and not session.info.get(_MAILBOXES):
        return
    found = session.info.pop(_RECORDS, {})
    mailbox_ids = session.info.pop(_MAILBOXES, set())
    by_kind: dict[str, list] = {}
    for (kind, _), record in found.items():
        if record.id is not None and record not in session.deleted:
            by_kind.setdefault(kind, []).append(record)
    mailbox_ids |= _linked_mailboxes(session, {k: [r.id for r in v] for k, v in by_kind.items()})
    mailbox_ids |= _filtered_mailboxes(session, by_kind)
    if not mailbox_ids:
        return
    scheduler.ask_for_sync(mailbox_ids, Mailbox.syncs_items,
                           session=session)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    for key in (_RECORDS, _MAILBOXES):
        session.info.pop(key, None)


def _linked_mailboxes(session: Session, ids: dict[str, list[int]]) -> set[int]:
    """The mailboxes with a tracked item link to these records."""
    found: set[int] = set()
    for kind, record_ids in ids.items():
        column = ItemLink.contact_id if kind == "contact" else ItemLink.activity_id
        for start in range(0, len(record_ids), 500):
            found.update(session.scalars(select(ItemLink.mailbox_id).where(
                ItemLink.kind == kind, ItemLink.tracked.is_(True),
                column.in_(record_ids[start:start + 500])).distinct()))
    return found


def _filtered_mailboxes(session: Session, by_kind: dict[str, list]) -> set[int]:
    """The item-syncing mailboxes of the users whose filter takes one of these records.
    Those whose filter could take them are asked, each by the filter itself and the kind's
    privilege: the owner ("me"), the owning team's members ("my teams"), an appointment's
    attendees, and every user whose filter says "anyone" (those without a filter of their
    own where the organization's says so). A few statements per kind, however many users."""
    found: set[int] = set()
    for kind, changed in by_kind.items():
        default, own = filters.rules(kind)
        named = {r.owner_user_id for r in changed if r.owner_user_id}
        named |= {user_id for user_id, rule in own.items() if rule.owner == "any"}
        teams = {r.owner_team_id for r in changed if r.owner_team_id}
        if teams:
            named.update(session.scalars(select(team_member.c.user_id).where(
                team_member.c.team_id.in_(sorted(teams)))))
        if kind == "appointment":
            named.update(p.user_id for r in changed for p in r.parties if p.user_id)
        everyone = default.owner == "any"
        if not named and not everyone:
            continue
        boxes: dict[int, list[int]] = {}
        users: dict[int, User] = {}
        for mailbox_id, user in session.execute(select(Mailbox.id, User).join(
                User, User.id == Mailbox.user_id).where(
                Mailbox.enabled.is_(True), Mailbox.syncs_items,
                User.is_active.is_(True),
                true() if everyone else Mailbox.user_id.in_(sorted(named)))):
            if user.id in named or user.id not in own:
                boxes.setdefault(user.id, []).append(mailbox_id)
                users[user.id] = user
        people = [p for p in authz.principals(list(users.values())).values()
                  if p.has(records.PRIVILEGES[kind])]
        for user_id in _taking(session, kind, changed, people, default, own):
            found.update(boxes[user_id])
    return found


def _taking(session: Session, kind: str, changed: list, people: list[authz.Principal],
            default: filters.Rule, own: dict[int, filters.Rule]) -> list[int]:
    """Those of ``people`` whose filter takes one of the changed records: one EXISTS per
    distinct condition (``_condition_key``: those sharing one are asked once, by the first
    of them), a hundred to a statement. An organization's "anyone" costs as many EXISTS as
    it has kinds of reader, not as many as it has users."""
    model = records.MODELS[kind]
    ids = select(model.id.label("id")).where(model.id.in_([r.id for r in changed])).cte()
    personal = _personal(session, kind, changed, [
        p for p in people if own.get(p.user_id, default).owner == "any"])
    groups: dict[tuple, list[authz.Principal]] = {}
    for p in people:
        rule = own.get(p.user_id, default)
        groups.setdefault(_condition_key(kind, p, rule, personal), []).append(p)
    alike = list(groups.values())
    taking = []
    for start in range(0, len(alike), 100):
        chunk = alike[start:start + 100]
        row = session.execute(select(*(
            select(model.id).where(model.id.in_(select(ids.c.id)),
                                   filters.selected(g[0], kind, own.get(g[0].user_id, default)))
            .exists() for g in chunk))).one()
        taking += [p.user_id for g, takes in zip(chunk, row) if takes for p in g]
    return taking


def _personal(session: Session, kind: str, changed: list,
              people: list[authz.Principal]) -> set[int]:
    """Those of ``people`` whose read scope singles out one of the changed records by who
    they are (``authz.scope``'s user-depth and shared parts): its owner, a member of its
    owning team, anyone it is shared with (any share: more than read needs) or a member of
    a team it is shared with. ``people`` are those whose rule's owner is "any" (the others
    are keyed alone whatever this says): without any, the shares are not read."""
    users = {r.owner_user_id for r in changed if r.owner_user_id}
    teams = {r.owner_team_id for r in changed if r.owner_team_id}
    if people:
        table = authz.table_of(records.MODELS[kind])
        for user_id, team_id in session.execute(
                select(RecordShare.user_id, RecordShare.team_id).where(
                    RecordShare.table_name == table,
                    RecordShare.record_id.in_([r.id for r in changed]))):
            if user_id:
                users.add(user_id)
            else:
                teams.add(team_id)
    return {p.user_id for p in people if p.user_id in users or teams.intersection(p.team_ids)}


def _condition_key(kind: str, p: authz.Principal, rule: filters.Rule,
                   personal: set[int]) -> tuple:
    """Equal for two people only if their filters take the same of the changed records.

    ``filters.selected(p, kind, rule)`` is ``check`` (the rule alone) and the owner clause
    and ``authz.scope(p, model, "read")`` and the rule's conditions. The owner clause names
    the user (their id, teams, attendance) unless the rule's owner is "any": any other rule
    is the user's own key. With "any", the rest reads from ``p`` only (``Principal.scope_key``,
    less what does not matter here): whether they are active (an inactive user: false);
    their read depth on the kind's table (organization: true, whoever they are); below it,
    a disjunction of (a) the records they or their teams own, when the depth is user or
    more, (b) their unit's records (business unit depth: ``business_unit_id``; parent-child:
    ``unit_subtree``, a function of ``business_unit_id`` and the unit table, the same for
    everyone in one statement) and (c) the records shared with them or their teams. For
    someone not in ``personal`` (a) and (c) are false on every changed record, so over these
    records their condition is the rule's conditions and (b), which the key below fixes.
    Whoever is in ``personal`` is their own key. Names and sources of rules do not reach the
    SQL; the conditions are compared as written (``repr``: 1 and True stay apart, and a
    value that is a list still makes a key)."""
    if rule.owner != "any" or p.user_id in personal:
        return ("own", p.user_id)
    depth = p.depth(authz.table_of(records.MODELS[kind]), "read")
    unit = None if depth >= Depth.ORGANIZATION else p.business_unit_id
    return (rule.owner, repr(rule.conditions), p.user.is_active, depth, unit)
