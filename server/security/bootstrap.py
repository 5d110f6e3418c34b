"""The organization's first rows: settings, the root business unit, the built-in roles and a
first administrator. Idempotent: built-in roles are brought up to date on every run (System
Administrator fully; the others gain new privileges but keep an administrator's edits)."""
from __future__ import annotations

from sqlalchemy import select

from server.crm.models import Organization
from server.db import db
from server.security.models import BusinessUnit, Role, RolePrivilege, User
from server.security.passwords import set_password
from server.security.privileges import BUILTIN_ROLES


def ensure_organization(name: str = "Regarding") -> Organization:
    org = db.session.get(Organization, 1)
    if org is None:
        org = Organization(id=1, name=name)
        db.session.add(org)
    if db.session.scalar(select(BusinessUnit).where(BusinessUnit.parent_id.is_(None))) is None:
        db.session.add(BusinessUnit(name=name))
    ensure_builtin_roles()
    db.session.flush()
    return org


def root_unit() -> BusinessUnit:
    return db.session.scalar(select(BusinessUnit).where(BusinessUnit.parent_id.is_(None))
                             .order_by(BusinessUnit.id))


def ensure_builtin_roles() -> dict[str, Role]:
    roles = {}
    for name, spec in BUILTIN_ROLES.items():
        role = db.session.scalar(select(Role).where(Role.name == name))
        if role is None:
            role = Role(name=name, is_builtin=True)
            db.session.add(role)
        role.description = spec["description"]
        wanted = {**{k: int(v) for k, v in spec["privileges"].items()},
                  **{n: 1 for n in spec["named"]}}
        current = {rp.privilege: rp for rp in role.privileges}
        # Administrators may edit every built-in role but System Administrator (admin pages):
        # their choices are kept, and only privileges the role has no row for are added.
        resync = name == "System Administrator"
        for key, rp in current.items():
            if key not in wanted and resync:
                role.privileges.remove(rp)
        for key, depth in wanted.items():
            if key not in current:
                role.privileges.append(RolePrivilege(privilege=key, depth=depth))
            elif resync:
                current[key].depth = depth
        roles[name] = role
    db.session.flush()
    return roles


def create_user(email: str, full_name: str, *, password: str | None = None,
                unit: BusinessUnit | None = None, roles: list[str] = (), **extra) -> User:
    """A user in ``unit`` (the root unit by default) with the named roles. The address is
    kept lower-case: sign-in and address resolution compare it case-insensitively."""
    found = {r.name: r for r in db.session.scalars(select(Role).where(Role.name.in_(roles)))}
    missing = [r for r in roles if r not in found]
    if missing:
        raise LookupError(f"No security role named {', '.join(map(repr, missing))}.")
    first, _, last = full_name.partition(" ")
    user = User(email=email.strip().lower(), full_name=full_name, first_name=first,
                last_name=last, business_unit_id=(unit or root_unit()).id, **extra)
    if password:
        set_password(user, password)
    user.roles = [found[r] for r in roles]
    db.session.add(user)
    db.session.flush()
    return user
