"""Administration of security roles: the list, the privilege grid, create, edit and delete
(nobody grants more than they hold: ``server.security.admin``)."""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from server.db import db
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.admin import (as_int, is_admin_role, optional_text, require_grantable,
                                   require_manage, unique_name)
from server.security.authz import Principal
from server.security.models import Role, RolePrivilege, team_role, user_role
from server.security.privileges import NAMED_PRIVILEGES, PRIVILEGES, TABLES, Depth


def list_roles(p: Principal) -> list[tuple[Role, int, int]]:
    """Every role with how many users and teams hold it (one query)."""
    require_manage(p, "security_role")
    users = select(user_role.c.role_id, func.count().label("n")).group_by(user_role.c.role_id).subquery()
    teams = select(team_role.c.role_id, func.count().label("n")).group_by(team_role.c.role_id).subquery()
    rows = db.session.execute(
        select(Role, func.coalesce(users.c.n, 0), func.coalesce(teams.c.n, 0))
        .outerjoin(users, users.c.role_id == Role.id).outerjoin(teams, teams.c.role_id == Role.id)
        .order_by(Role.is_builtin.desc(), func.lower(Role.name))).all()
    return [(r, u, t) for r, u, t in rows]


def all_roles(p: Principal) -> list[Role]:
    """Roles for pickers (privileges loaded, to tell which ``p`` may give)."""
    if p.depth("security_role", "read") == Depth.NONE:
        return []
    return list(db.session.scalars(select(Role).options(selectinload(Role.privileges))
                                   .order_by(Role.is_builtin.desc(), func.lower(Role.name))))


def get_role(p: Principal, role_id: int) -> Role:
    require_manage(p, "security_role")
    role = db.session.get(Role, role_id)
    if role is None:
        raise NotFound()
    return role


def role_grid(role: Role) -> tuple[dict[str, Depth], set[str]]:
    """The role's depth per ``table.privilege`` and its named privileges."""
    depths, named = {}, set()
    for rp in role.privileges:
        if "." in rp.privilege:
            depths[rp.privilege] = Depth(rp.depth)
        elif rp.depth:
            named.add(rp.privilege)
    return depths, named


def is_editable(role: Role) -> bool:
    return not is_admin_role(role)


def _role_fields(data: dict[str, Any], role: Role | None) -> tuple[str, str | None]:
    errors: dict[str, str] = {}
    name = unique_name(data, errors, Role, role, "role")
    description = optional_text(data, errors, "description", "Description", 2000)
    if errors:
        raise Invalid(N_("Some fields are not valid."), errors)
    return name, description


def create_role(p: Principal, data: dict[str, Any]) -> Role:
    """A new role, empty or a copy of an existing role's privileges."""
    require_manage(p, "security_role")
    authz.require_table(p, "security_role", "create")
    name, description = _role_fields(data, None)
    role = Role(name=name, description=description, is_builtin=False)
    source_id = as_int(data.get("copy_from"))
    if source_id:
        source = db.session.get(Role, source_id)
        if source is None:
            raise Invalid(N_("The role to copy does not exist."), {"copy_from": N_("Unknown role.")})
        require_grantable(p, [source])
        role.privileges = [RolePrivilege(privilege=rp.privilege, depth=rp.depth)
                           for rp in source.privileges if rp.depth]
    db.session.add(role)
    db.session.flush()
    return role


def update_role(p: Principal, role: Role, data: dict[str, Any], depths: dict[str, Any],
                named: Iterable[str]) -> Role:
    """Set the role's name, description and whole privilege grid. ``depths`` maps
    ``table.privilege`` to a depth (missing cells are None); ``named`` lists the named
    privileges the role has."""
    require_manage(p, "security_role")
    authz.require_table(p, "security_role", "write")
    if not is_editable(role):
        raise Forbidden("The System Administrator role always has every privilege; copy it "
                        "to make a role you can edit.")
    if role.is_builtin:  # built-in roles keep their names and descriptions
        data = {**data, "name": role.name, "description": role.description}
    name, description = _role_fields(data, role)
    wanted: dict[str, int] = {f"{t}.{priv}": 0 for t in TABLES for priv in PRIVILEGES}
    for key, value in depths.items():
        if key not in wanted:
            raise Invalid(N_("Unknown privilege %(key)r.", key=key))
        try:
            wanted[key] = int(Depth(int(value)))
        except (TypeError, ValueError):
            raise Invalid(N_("Unknown depth for %(key)r.", key=key)) from None
    named = set(named)
    unknown = named - set(NAMED_PRIVILEGES)
    if unknown:
        raise Invalid(N_("Unknown privileges: %(names)s.", names=", ".join(sorted(unknown))))
    before, before_named = role_grid(role)
    if not p.is_admin:  # raising a cell above one's own depth would be self-promotion
        beyond = [k.replace("_", " ").replace(".", ": ") for k, d in wanted.items()
                  if d > before.get(k, Depth.NONE) and d > p.depths.get(k, Depth.NONE)]
        beyond += [NAMED_PRIVILEGES[n] for n in named - before_named - p.named]
        if beyond:
            raise Forbidden("You cannot grant more than you hold: " + ", ".join(beyond[:5]) +
                            ("…" if len(beyond) > 5 else "") + ".")
    for n in NAMED_PRIVILEGES:
        wanted[n] = 1 if n in named else 0
    if not role.is_builtin:  # custom roles keep only what they grant
        wanted = {k: d for k, d in wanted.items() if d}
    # Built-in roles keep an explicit row for every cell, so that a None chosen here is not
    # given back when the organization's set-up brings the built-in roles up to date.
    current = {rp.privilege: rp for rp in role.privileges}
    for key, rp in current.items():
        if key not in wanted:
            role.privileges.remove(rp)
    for key, depth in wanted.items():
        if key in current:
            current[key].depth = depth
        else:
            role.privileges.append(RolePrivilege(privilege=key, depth=depth))
    role.name, role.description = name, description
    db.session.flush()
    return role


def delete_role(p: Principal, role: Role) -> None:
    require_manage(p, "security_role")
    authz.require_table(p, "security_role", "delete")
    if role.is_builtin:
        raise Conflict(N_("Built-in roles cannot be deleted."))
    users = db.session.scalar(select(func.count()).select_from(user_role)
                              .where(user_role.c.role_id == role.id)) or 0
    teams = db.session.scalar(select(func.count()).select_from(team_role)
                              .where(team_role.c.role_id == role.id)) or 0
    if users or teams:
        parts = [f"{users} user{'s' if users != 1 else ''}" if users else "",
                 f"{teams} team{'s' if teams != 1 else ''}" if teams else ""]
        raise Conflict(f"The role {role.name!r} is in use by {' and '.join(x for x in parts if x)}: "
                       "remove it from them first.")
    db.session.delete(role)
    db.session.flush()
