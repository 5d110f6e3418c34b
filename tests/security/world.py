"""A small organization for authorization tests: a business-unit tree, users and teams in it,
and one record of any table per kind of owner.

    root ─┬─ A ── A1
          └─ B

``me`` works in A. Owners: ``me``, ``teammate`` (A), ``child`` (A1), ``other`` (B),
``parent`` (root), ``team_a`` (a team in A that ``me`` is in), ``team_b`` (a team in B that
``me`` is in) and ``team_x`` (a team in A without ``me``).

``allowed(depth, owner)`` states what each depth means, from the definitions in
``server.security.privileges.Depth`` (not from the code under test): none gives nothing;
user gives the user's records and their teams'; business unit adds every record owned in the
user's unit; parent-child adds the units below it; organization gives everything.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from server.crm.activities import Activity, Task
from server.crm.models import Account, Case, Contact, Lead, Opportunity, Queue
from server.db import db, utcnow
from server.security.bootstrap import create_user, root_unit
from server.security.models import BusinessUnit, Role, Team, User
from server.security.privileges import BUILTIN_ROLES, Depth

MODELS = {"account": Account, "contact": Contact, "lead": Lead, "opportunity": Opportunity,
          "case": Case, "queue": Queue, "activity": Activity}

OWNER_UNIT = {"me": "A", "teammate": "A", "child": "A1", "other": "B", "parent": "root",
              "team_a": "A", "team_b": "B", "team_x": "A"}
OWNERS = tuple(OWNER_UNIT)
MINE = frozenset({"me", "team_a", "team_b"})  # user depth: the user's own and their teams'
BELOW_A = frozenset({"A", "A1"})

_serial = itertools.count(1)


def allowed(depth: Depth, owner: str) -> bool:
    """Whether ``depth`` (held by ``me``, in unit A) reaches a record owned by ``owner``."""
    if depth == Depth.NONE:
        return False
    if depth == Depth.ORGANIZATION or owner in MINE:
        return True
    if depth == Depth.BUSINESS_UNIT:
        return OWNER_UNIT[owner] == "A"
    if depth == Depth.PARENT_CHILD:
        return OWNER_UNIT[owner] in BELOW_A
    return False


def role_depth(role: str, table: str, privilege: str) -> Depth:
    return BUILTIN_ROLES[role]["privileges"].get(f"{table}.{privilege}", Depth.NONE)


@dataclass
class World:
    units: dict[str, BusinessUnit]
    owners: dict[str, User | Team]
    me: User
    records: dict[tuple[str, str], object] = field(default_factory=dict)

    def unit_id(self, key: str) -> int:
        return self.units[key].id


def build(roles: list[str] | tuple[str, ...] = ("Salesperson",), *, me_active: bool = True) -> World:
    n = next(_serial)
    root = root_unit()
    unit_a = BusinessUnit(name=f"A{n}", parent_id=root.id)
    unit_b = BusinessUnit(name=f"B{n}", parent_id=root.id)
    db.session.add_all([unit_a, unit_b])
    db.session.flush()
    unit_a1 = BusinessUnit(name=f"A1-{n}", parent_id=unit_a.id)
    db.session.add(unit_a1)
    db.session.flush()
    units = {"root": root, "A": unit_a, "A1": unit_a1, "B": unit_b}

    def person(key, unit, user_roles=("Salesperson",), **extra):
        return create_user(f"{key}{n}@contoso.test", f"{key.title()} Person{n}", unit=units[unit],
                           roles=list(user_roles), **extra)  # no password: hashing is slow

    me = person("me", "A", roles, is_active=me_active)
    owners: dict[str, User | Team] = {"me": me}
    for key in ("teammate", "child", "other", "parent"):
        owners[key] = person(key, OWNER_UNIT[key])
    for key in ("team_a", "team_b", "team_x"):
        team = Team(name=f"{key}-{n}", business_unit_id=units[OWNER_UNIT[key]].id)
        if key != "team_x":
            team.members.append(me)
        team.members.append(owners["teammate"])
        db.session.add(team)
        owners[key] = team
    db.session.commit()
    return World(units, owners, me)


def owner_columns(owner: User | Team) -> dict:
    if isinstance(owner, User):
        return {"owner_user_id": owner.id, "owner_team_id": None,
                "owning_business_unit_id": owner.business_unit_id}
    return {"owner_user_id": None, "owner_team_id": owner.id,
            "owning_business_unit_id": owner.business_unit_id}


def make_record(table: str, owner: User | Team, label: str = "record"):
    """A row of ``table`` owned by ``owner``, written straight to the database (not through
    the services under test)."""
    n = next(_serial)
    cols = owner_columns(owner)
    name = f"{label} {n}"
    record = {
        "account": lambda: Account(name=name, email1=f"acc{n}@example.test"),
        "contact": lambda: Contact(last_name=name, full_name=name),
        "lead": lambda: Lead(last_name=name, full_name=name),
        "opportunity": lambda: Opportunity(name=name),
        "case": lambda: Case(title=name, ticket_number=f"T-{n}"),
        "queue": lambda: Queue(name=name),
        "activity": lambda: Task(subject=name, occurred_on=utcnow()),
    }[table]()
    for key, value in cols.items():
        setattr(record, key, value)
    record.description = "original"
    db.session.add(record)
    db.session.flush()
    return record


def give_role(target: User | Team, role_name: str) -> None:
    role = db.session.scalar(db.select(Role).where(Role.name == role_name))
    target.roles.append(role)
    db.session.commit()
