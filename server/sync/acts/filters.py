"""Synchronization filters: which CRM appointments, contacts and tasks go to a user's mail
server. Dynamics' defaults ("My appointments": the user's own and those they take part in;
"Contacts I own"; "My tasks"), an organization default per kind, and a user's own filter
before both. A filter is an owner (me, my teams, anyone) and conditions on fields; whatever
it says, only records the user may read go out."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, false, or_, select, true

from server.crm.activities import ActivityParty
from server.db import db
from server.i18n import N_
from server.security import authz
from server.sync.acts.records import MODELS
from server.sync.items.fields import FIELDS
from server.sync.models import FILTER_OWNERS, SyncFilter

OPERATORS = ("eq", "ne", "contains", "empty", "not_empty")
DEFAULT_NAMES = {"appointment": N_("My appointments"), "contact": N_("Contacts I own"),
                 "task": N_("My tasks")}
# A condition naming a field the kind does not have, a whole sentence per kind.
NOT_A_FIELD = {"appointment": N_('"%(name)s" is not a field of an appointment.'),
               "contact": N_('"%(name)s" is not a field of a contact.'),
               "task": N_('"%(name)s" is not a field of a task.')}
# Fields a condition may name besides the synced ones (the record's own columns).
EXTRA_FIELDS = {"appointment": ("priority",), "task": ("category",),
                "contact": ("is_active",)}


@dataclass(frozen=True)
class Rule:
    """The filter in force for one user and kind (a row's copy, or the built-in default)."""
    name: str
    owner: str
    conditions: tuple[tuple[str, str, object], ...]
    source: str  # "user", "organization", "default"


def fields_for(kind: str) -> tuple[str, ...]:
    return tuple(f for f in FIELDS[kind] + EXTRA_FIELDS[kind] if f != "parties")


def check(kind: str, owner: str, conditions: list) -> list[str]:
    """What is wrong with a filter, in words (empty: nothing)."""
    problems = []
    if owner not in FILTER_OWNERS:
        problems.append(N_("The owner must be one of %(choices)s.",
                           choices=", ".join(FILTER_OWNERS)))
    for condition in conditions:
        if not isinstance(condition, (list, tuple)) or len(condition) != 3:
            problems.append(N_("A condition is a field, an operator and a value."))
            continue
        name, operator, _ = condition
        if name not in fields_for(kind):
            problems.append(NOT_A_FIELD[kind] % {"name": name} if kind in NOT_A_FIELD else
                            N_('"%(name)s" is not a field.', name=name))
        if operator not in OPERATORS:
            problems.append(N_('"%(operator)s" is not one of %(choices)s.', operator=operator,
                               choices=", ".join(OPERATORS)))
    return problems


def rule_for(user_id: int, kind: str) -> Rule:
    default, own = rules(kind, [user_id])
    return own.get(user_id, default)


def rules(kind: str, user_ids: list[int] | None = None) -> tuple[Rule, dict[int, Rule]]:
    """In one statement: the kind's rule for users without their own (the organization's,
    or the built-in default), and the own rule of each of ``user_ids`` that has one (all
    users': None)."""
    query = select(SyncFilter).where(SyncFilter.kind == kind, SyncFilter.enabled.is_(True))
    if user_ids is not None:
        query = query.where(or_(SyncFilter.user_id.is_(None),
                                SyncFilter.user_id.in_(sorted(set(user_ids)))))
    default, own = None, {}
    for row in db.session.scalars(query.order_by(SyncFilter.id)):
        rule = Rule(row.name, row.owner, tuple(tuple(c) for c in row.conditions or ()),
                    "organization" if row.user_id is None else "user")
        if row.user_id is None:
            default = default or rule
        else:
            own.setdefault(row.user_id, rule)
    return default or Rule(DEFAULT_NAMES[kind], "me", (), "default"), own


def _owner_clause(model, kind: str, owner: str, p: authz.Principal):
    if owner == "any":
        return true()
    mine = [model.owner_user_id == p.user_id]
    if owner == "my_teams" and p.team_ids:
        mine.append(model.owner_team_id.in_(p.team_ids))
    if kind == "appointment":  # Dynamics: the user's appointments and those they attend
        mine.append(exists().where(ActivityParty.activity_id == model.id,
                                   ActivityParty.user_id == p.user_id))
    return or_(*mine)


def _condition(model, name: str, operator: str, value):
    column = getattr(model, name)
    if operator == "eq":
        return column == value
    if operator == "ne":
        return or_(column != value, column.is_(None))
    if operator == "contains":
        return column.contains(str(value))
    if operator == "empty":
        return or_(column.is_(None), column == "") if name not in ("is_active",) else false()
    return and_(column.is_not(None), column != "")


def selected(p: authz.Principal, kind: str, rule: Rule | None = None):
    """A SQL condition on ``MODELS[kind]``: the records the user's filter sends out."""
    model = MODELS[kind]
    rule = rule or rule_for(p.user_id, kind)
    if check(kind, rule.owner, list(rule.conditions)):
        return false()  # a filter saved wrong sends nothing rather than everything
    clauses = [_owner_clause(model, kind, rule.owner, p), authz.scope(p, model, "read")]
    clauses += [_condition(model, *c) for c in rule.conditions]
    return and_(*clauses)
