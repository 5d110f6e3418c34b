"""Administration: who may administer which area, and the rules every administration
service keeps (the shared helpers of ``users``, ``teams``, ``units``, ``roles`` and
``field_security``).

Every service takes the acting :class:`~server.security.authz.Principal`, checks its
privileges and raises :mod:`server.errors` on refusal. Users, teams and business units have a
business unit, so depth applies to them as to records: an administrator with Business-unit
depth on ``user`` manages the users of their own unit only. Roles, field security profiles
and the organization are organization-wide: some depth of the privilege is enough.

Nobody can grant more than they hold: roles (given to a user or to a team one adds members
to) and role grids are checked against the actor's own privileges unless the actor is a
System Administrator, who alone may hand out the System Administrator role. Nobody touches
the sign-in of a user who holds more than they do, active or not.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from server.db import db
from server.errors import Conflict, Forbidden, Invalid
from server.i18n import N_, message_of
from server.security import authz
from server.security.authz import Principal
from server.security.models import BusinessUnit, Role, User, team_member, team_role, user_role
from server.security.privileges import NAMED_PRIVILEGES, Depth


ADMIN_ROLE = "System Administrator"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- who may enter which area --------------------------------------------------------------

def can_manage(p: Principal, table: str) -> bool:
    """Whether ``p`` may use the administration page of ``table``: they must be able to read
    it and change something in it (reading alone, as every Salesperson does for users,
    teams and units, is not administration)."""
    if p.depth(table, "read") == Depth.NONE:
        return False
    return any(p.depth(table, priv) > Depth.NONE for priv in ("create", "write", "delete"))


def require_manage(p: Principal, table: str) -> None:
    if not can_manage(p, table):
        raise Forbidden(f"You do not have the privileges to administer "
                        f"{table.replace('_', ' ')}s.")


def reaches(p: Principal, table: str, privilege: str, unit_id: int | None) -> bool:
    """Whether ``p``'s depth of ``privilege`` on ``table`` covers business unit ``unit_id``."""
    depth = p.depth(table, privilege)
    if depth >= Depth.ORGANIZATION:
        return True
    if depth == Depth.PARENT_CHILD:
        return unit_id in p.unit_subtree
    if depth == Depth.BUSINESS_UNIT:
        return unit_id == p.business_unit_id
    return False


def clean_text(value: Any, *, label: str, max_length: int, required: bool = False) -> str | None:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(N_("%(field)s must be text.", field=label))
    value = _CONTROL.sub("", value).strip()
    if required and not value:
        raise ValueError(N_("%(field)s is required.", field=label))
    if len(value) > max_length:
        raise ValueError(N_("%(field)s can be at most %(count)s characters.", field=label,
                            count=max_length))
    return value or None


def as_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -2**31 <= number < 2**31 else None  # no id beyond a 32-bit column


def like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def unique_name(data: dict[str, Any], errors: dict[str, str], model, current, noun: str) -> str | None:
    """The form's ``name`` for a team, role or profile: required, at most 160 characters and
    no other row's (ignoring case); a problem goes into ``errors``."""
    try:
        name = clean_text(data.get("name"), label="Name", max_length=160, required=True)
    except ValueError as exc:
        errors["name"] = message_of(exc)
        return None
    if db.session.scalar(select(model.id).where(func.lower(model.name) == name.lower(),
                                                model.id != (current.id if current else 0))):
        errors["name"] = N_("Another %(kind)s has this name.", kind=noun)
    return name


def optional_text(data: dict[str, Any], errors: dict[str, str], name: str, label: str,
              max_length: int) -> str | None:
    try:
        return clean_text(data.get(name), label=label, max_length=max_length)
    except ValueError as exc:
        errors[name] = message_of(exc)
        return None


def unit_for(p: Principal, value: Any, privilege: str, errors: dict[str, str], *,
              table: str = "user") -> BusinessUnit | None:
    unit = db.session.get(BusinessUnit, as_int(value) or 0)
    if unit is None or not unit.is_active:
        errors["business_unit_id"] = N_("Choose an active business unit.")
        return None
    if not reaches(p, table, privilege, unit.id):
        errors["business_unit_id"] = "You may not manage this business unit's " + \
            table.replace("_", " ") + "s."
    return unit


# -- roles a principal may hand out --------------------------------------------------------

def is_admin_role(role: Role) -> bool:
    return role.is_builtin and role.name == ADMIN_ROLE


def exceeds(p: Principal, role: Role) -> list[str]:
    """What ``role`` grants beyond ``p``'s own privileges (empty when ``p`` may give it)."""
    if p.is_admin:
        return []
    if is_admin_role(role):
        return [ADMIN_ROLE]
    out = []
    for rp in role.privileges:
        if not rp.depth:
            continue
        if "." in rp.privilege:
            table, priv = rp.privilege.split(".", 1)
            if p.depth(table, priv) < rp.depth:
                out.append(f"{priv.replace('_', ' ')} on {table.replace('_', ' ')}")
        elif rp.privilege not in p.named:
            out.append(NAMED_PRIVILEGES.get(rp.privilege, rp.privilege))
    return out


def require_not_above(p: Principal, user: User, what: str) -> None:
    """Refuse to touch the sign-in (password, email, status) of someone whose roles and
    teams grant privileges ``p`` does not hold, active or not: taking over their account
    would be a way to get them (a unit administrator must not become their System
    Administrator by resetting the password of a deactivated one and reactivating it)."""
    if p.is_admin or user.id == p.user_id:
        return
    target = authz.held(user)
    above = (target.is_admin or any(d > p.depths.get(k, Depth.NONE) for k, d in target.depths.items())
             or not target.named <= p.named)
    if above:
        raise Forbidden(N_("You cannot %(action)s of a user who has privileges you do not hold.",
                           action=what))


def require_grantable(p: Principal, roles: Iterable[Role]) -> None:
    for role in roles:
        beyond = exceeds(p, role)
        if beyond:
            raise Forbidden(f"You cannot give the role {role.name!r}: it grants more than you "
                            f"hold ({', '.join(beyond[:5])}{'…' if len(beyond) > 5 else ''}).")


def load_roles(p: Principal, role_ids: Iterable[Any]) -> list[Role]:
    ids = {i for i in (as_int(x) for x in role_ids) if i is not None}
    if not ids:
        return []
    authz.require_table(p, "security_role", "read")
    roles = db.session.scalars(select(Role).where(Role.id.in_(ids))
                               .options(selectinload(Role.privileges))).all()
    if len(roles) != len(ids):
        raise Invalid(N_("Some of the chosen roles do not exist."), {"roles": N_("Unknown role.")})
    return list(roles)


def active_admin_ids() -> set[int]:
    """Active users who are System Administrators, directly or through a team."""
    admin = select(Role.id).where(Role.name == ADMIN_ROLE, Role.is_builtin.is_(True))
    direct = select(user_role.c.user_id).where(user_role.c.role_id.in_(admin))
    via_team = (select(team_member.c.user_id)
                .join(team_role, team_role.c.team_id == team_member.c.team_id)
                .where(team_role.c.role_id.in_(admin)))
    return set(db.session.scalars(select(User.id).where(
        User.is_active.is_(True), or_(User.id.in_(direct), User.id.in_(via_team)))))


def keep_an_admin() -> None:
    """Called after a change is flushed: refuse it when no active System Administrator is
    left (the view rolls the transaction back)."""
    if not active_admin_ids():
        raise Conflict(N_("This would leave the organization without an active System "
                          "Administrator. Make someone else one first."))


def assign_roles(p: Principal, holder, role_ids: Iterable[Any]):
    """Give a user or team (``holder``, already checked for write) exactly these roles.
    Added roles must not grant more than ``p`` holds; only a System Administrator adds or
    removes the System Administrator role; an organization is never left without one."""
    authz.require_table(p, "security_role", "read")
    wanted = load_roles(p, role_ids)
    current = {r.id for r in holder.roles}
    require_grantable(p, [r for r in wanted if r.id not in current])
    kept = {r.id for r in wanted}
    removed_admin = any(is_admin_role(r) for r in holder.roles if r.id not in kept)
    if removed_admin and not p.is_admin:
        raise Forbidden(N_("Only a System Administrator can remove the System Administrator role."))
    holder.roles = wanted
    db.session.flush()
    if removed_admin:
        keep_an_admin()
    return holder
