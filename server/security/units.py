"""Administration of business units: the tree, create, rename, move, activate and
deactivate (the rules in ``server.security.admin``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from server.db import db
from server.errors import Conflict, Forbidden, Invalid
from server.i18n import N_, message_of
from server.security import authz
from server.security.admin import (as_int, clean_text, reaches, require_manage)
from server.security.authz import Principal
from server.security.models import BusinessUnit, User
from server.security.privileges import Depth


@dataclass
class UnitNode:
    unit: BusinessUnit
    children: list[UnitNode]
    active_users: int
    can_write: bool


def unit_tree(p: Principal) -> list[UnitNode]:
    """The business units ``p`` may read as a forest (roots first), each with its count of
    active users. Two queries whatever the size of the tree."""
    require_manage(p, "business_unit")
    units = db.session.scalars(select(BusinessUnit).where(authz.scope(p, BusinessUnit, "read"))
                               .order_by(func.lower(BusinessUnit.name))).all()
    counts = dict(db.session.execute(
        select(User.business_unit_id, func.count(User.id)).where(User.is_active.is_(True))
        .group_by(User.business_unit_id)).all())
    nodes = {u.id: UnitNode(u, [], counts.get(u.id, 0), authz.can(p, "write", u)) for u in units}
    roots = []
    for u in units:
        parent = nodes.get(u.parent_id)
        (parent.children if parent else roots).append(nodes[u.id])
    return roots


def flatten(nodes: list[UnitNode], level: int = 0) -> list[tuple[UnitNode, int]]:
    out = []
    for node in nodes:
        out.append((node, level))
        out.extend(flatten(node.children, level + 1))
    return out


def get_unit(p: Principal, unit_id: int) -> BusinessUnit:
    require_manage(p, "business_unit")
    return authz.get(p, BusinessUnit, unit_id)


def _unit_name(data_name: Any, unit: BusinessUnit | None) -> str:
    try:
        name = clean_text(data_name, label="Name", max_length=160, required=True)
    except ValueError as exc:
        raise Invalid(message_of(exc), {"name": message_of(exc)}) from None
    if db.session.scalar(select(BusinessUnit.id).where(
            func.lower(BusinessUnit.name) == name.lower(),
            BusinessUnit.id != (unit.id if unit else 0))):
        raise Invalid(N_("Another business unit has this name."), {"name": N_("Already taken.")})
    return name


def _may_place_under(p: Principal, parent: BusinessUnit, privilege: str) -> bool:
    """A unit placed under ``parent`` ends up below it: Organization depth, or Parent: child
    depth with ``parent`` inside the actor's own subtree, is needed."""
    depth = p.depth("business_unit", privilege)
    return depth >= Depth.ORGANIZATION or (depth == Depth.PARENT_CHILD and parent.id in p.unit_subtree)


def _parent_for(p: Principal, parent_id: Any, privilege: str) -> BusinessUnit:
    parent = db.session.get(BusinessUnit, as_int(parent_id) or 0)
    if parent is None or not authz.can(p, "read", parent):
        raise Invalid(N_("Choose a parent business unit."), {"parent_id": N_("Unknown unit.")})
    if not parent.is_active:
        raise Invalid(N_("The parent business unit is inactive."), {"parent_id": N_("Inactive unit.")})
    if not _may_place_under(p, parent, privilege):
        raise Forbidden(N_("You may not add business units under this one."))
    return parent


def create_unit(p: Principal, parent_id: Any, name: Any) -> BusinessUnit:
    require_manage(p, "business_unit")
    parent = _parent_for(p, parent_id, "create")
    unit = BusinessUnit(name=_unit_name(name, None), parent_id=parent.id, is_active=True)
    db.session.add(unit)
    db.session.flush()
    return unit


def rename_unit(p: Principal, unit: BusinessUnit, name: Any) -> BusinessUnit:
    require_manage(p, "business_unit")
    authz.require(p, "write", unit)
    unit.name = _unit_name(name, unit)
    db.session.flush()
    return unit


def move_unit(p: Principal, unit: BusinessUnit, parent_id: Any) -> BusinessUnit:
    """Put the unit (and everything below it) under another parent; no cycles."""
    require_manage(p, "business_unit")
    authz.require(p, "write", unit)
    if unit.parent_id is None:
        raise Conflict(N_("The root business unit cannot be moved."))
    parent = _parent_for(p, parent_id, "write")
    parents = dict(db.session.execute(select(BusinessUnit.id, BusinessUnit.parent_id)).all())
    walker: int | None = parent.id
    while walker is not None:
        if walker == unit.id:
            raise Conflict("A business unit cannot be moved under itself or one of its own "
                           "child units.")
        walker = parents.get(walker)
    unit.parent_id = parent.id
    db.session.flush()
    return unit


def set_unit_active(p: Principal, unit: BusinessUnit, active: bool) -> BusinessUnit:
    """Deactivate (not the root, not with active users or active child units) or activate
    (not under an inactive parent)."""
    require_manage(p, "business_unit")
    authz.require(p, "write", unit)
    if not active:
        if unit.parent_id is None:
            raise Conflict(N_("The root business unit cannot be deactivated."))
        users = db.session.scalar(select(func.count(User.id)).where(
            User.business_unit_id == unit.id, User.is_active.is_(True)))
        if users:
            raise Conflict(f"{unit.name} has {users} active user{'s' if users > 1 else ''}: "
                           "move or deactivate them first.")
        if db.session.scalar(select(BusinessUnit.id).where(
                BusinessUnit.parent_id == unit.id, BusinessUnit.is_active.is_(True)).limit(1)):
            raise Conflict(f"{unit.name} has active child units: deactivate them first.")
    elif unit.parent is not None and not unit.parent.is_active:
        raise Conflict(N_("The parent business unit is inactive: activate it first."))
    unit.is_active = active
    db.session.flush()
    return unit


def active_units(p: Principal, table: str, privilege: str) -> list[BusinessUnit]:
    """Active units that ``p`` may place a ``table`` row in (for unit choosers)."""
    units = db.session.scalars(select(BusinessUnit).where(BusinessUnit.is_active.is_(True))
                               .order_by(func.lower(BusinessUnit.name))).all()
    return [u for u in units if reaches(p, table, privilege, u.id)]
