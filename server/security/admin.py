"""Administration services: users, teams, business units, security roles, field security
and the organization's settings.

Every function takes the acting :class:`~server.security.authz.Principal`, checks its
privileges and raises :mod:`server.errors` on refusal. Users, teams and business units have a
business unit, so depth applies to them as to records: an administrator with Business-unit
depth on ``user`` manages the users of their own unit only. Roles, field security profiles
and the organization are organization-wide: some depth of the privilege is enough.

Nobody can grant more than they hold: roles (given to a user or to a team one adds members
to) and role grids are checked against the actor's own privileges unless the actor is a
System Administrator, who alone may hand out the System Administrator role.
"""
from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload, selectinload

from server.crm.models import MB, Organization
from server.crm.addresses import normalize
from server.crm.registry import RECORD_TYPES
from server.db import db, utcnow
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.security import authz, passwords, sessions, tokens
from server.security.authz import Principal
from server.security.models import (BusinessUnit, FieldPermission,
                                    FieldSecurityProfile, Role, RolePrivilege, SecuredField,
                                    Team, User, team_member, team_role, user_role)
from server.security.privileges import NAMED_PRIVILEGES, PRIVILEGES, TABLES, Depth

ADMIN_ROLE = "System Administrator"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- who may enter which area ----------------------------------------------------------------

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


def _reaches(p: Principal, table: str, privilege: str, unit_id: int | None) -> bool:
    """Whether ``p``'s depth of ``privilege`` on ``table`` covers business unit ``unit_id``."""
    depth = p.depth(table, privilege)
    if depth >= Depth.ORGANIZATION:
        return True
    if depth == Depth.PARENT_CHILD:
        return unit_id in p.unit_subtree
    if depth == Depth.BUSINESS_UNIT:
        return unit_id == p.business_unit_id
    return False


def _clean_text(value: Any, *, label: str, max_length: int, required: bool = False) -> str | None:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text.")
    value = _CONTROL.sub("", value).strip()
    if required and not value:
        raise ValueError(f"{label} is required.")
    if len(value) > max_length:
        raise ValueError(f"{label} can be at most {max_length} characters.")
    return value or None


def _as_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


# -- roles a principal may hand out -----------------------------------------------------------

def _is_admin_role(role: Role) -> bool:
    return role.is_builtin and role.name == ADMIN_ROLE


def exceeds(p: Principal, role: Role) -> list[str]:
    """What ``role`` grants beyond ``p``'s own privileges (empty when ``p`` may give it)."""
    if p.is_admin:
        return []
    if _is_admin_role(role):
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


def _require_not_above(p: Principal, user: User, what: str) -> None:
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
        raise Forbidden(f"You cannot {what} of a user who has privileges you do not hold.")


def _require_grantable(p: Principal, roles: Iterable[Role]) -> None:
    for role in roles:
        beyond = exceeds(p, role)
        if beyond:
            raise Forbidden(f"You cannot give the role {role.name!r}: it grants more than you "
                            f"hold ({', '.join(beyond[:5])}{'…' if len(beyond) > 5 else ''}).")


def _load_roles(p: Principal, role_ids: Iterable[Any]) -> list[Role]:
    ids = {i for i in (_as_int(x) for x in role_ids) if i is not None}
    if not ids:
        return []
    authz.require_table(p, "security_role", "read")
    roles = db.session.scalars(select(Role).where(Role.id.in_(ids))
                               .options(selectinload(Role.privileges))).all()
    if len(roles) != len(ids):
        raise Invalid("Some of the chosen roles do not exist.", {"roles": "Unknown role."})
    return list(roles)


def _active_admin_ids() -> set[int]:
    """Active users who are System Administrators, directly or through a team."""
    admin = select(Role.id).where(Role.name == ADMIN_ROLE, Role.is_builtin.is_(True))
    direct = select(user_role.c.user_id).where(user_role.c.role_id.in_(admin))
    via_team = (select(team_member.c.user_id)
                .join(team_role, team_role.c.team_id == team_member.c.team_id)
                .where(team_role.c.role_id.in_(admin)))
    return set(db.session.scalars(select(User.id).where(
        User.is_active.is_(True), or_(User.id.in_(direct), User.id.in_(via_team)))))


def _keep_an_admin() -> None:
    """Called after a change is flushed: refuse it when no active System Administrator is
    left (the view rolls the transaction back)."""
    if not _active_admin_ids():
        raise Conflict("This would leave the organization without an active System "
                       "Administrator. Make someone else one first.")


# -- users ------------------------------------------------------------------------------------

@dataclass
class UserPage:
    users: list[User]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def list_users(p: Principal, *, q: str = "", unit_id: int | None = None,
               role_id: int | None = None, active: str = "active", page: int = 1,
               per_page: int = 25) -> UserPage:
    """The users ``p`` may read, filtered and paged, with units and roles loaded."""
    require_manage(p, "user")
    conds = [authz.scope(p, User, "read")]
    if q.strip():
        pattern = _like(q.strip()[:200])
        conds.append(or_(func.lower(User.full_name).like(pattern, escape="\\"),
                         func.lower(User.email).like(pattern, escape="\\")))
    if unit_id:
        conds.append(User.business_unit_id == unit_id)
    if role_id:
        conds.append(User.roles.any(Role.id == role_id))
    if active in ("active", "inactive"):
        conds.append(User.is_active.is_(active == "active"))
    total = db.session.scalar(select(func.count(User.id)).where(*conds)) or 0
    page = max(1, page)
    users = db.session.scalars(
        select(User).where(*conds).order_by(func.lower(User.full_name), User.id)
        .options(joinedload(User.business_unit), selectinload(User.roles))
        .limit(per_page).offset((page - 1) * per_page)).unique().all()
    return UserPage(list(users), total, page, per_page)


def get_user(p: Principal, user_id: int) -> User:
    require_manage(p, "user")
    return authz.get(p, User, user_id)


def generate_password() -> str:
    """A random password that passes the strength check, for an administrator to hand on."""
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(14)) + "-" + secrets.choice(string.digits)
        if passwords.check_password_strength(value) is None:
            return value


def _choose_password(data: dict[str, Any], errors: dict[str, str]) -> str | None:
    """The password an administrator asked for: generated, typed (and checked), or none."""
    mode = data.get("password_mode") or "generate"
    if mode == "generate":
        return generate_password()
    if mode == "none":
        return None
    value = data.get("password") or ""
    if not isinstance(value, str):
        errors["password"] = "Must be text."
    elif problem := passwords.check_password_strength(value):
        errors["password"] = problem
    return value


def _check_email(value: Any, errors: dict[str, str], *, exclude_id: int | None = None) -> str | None:
    email = value.strip() if isinstance(value, str) else ""
    if not email or normalize(email) is None or len(email) > 320:
        errors["email"] = "Enter a valid email address."
        return None
    clash = db.session.scalar(select(User.id).where(func.lower(User.email) == email.lower(),
                                                    User.id != (exclude_id or 0)))
    if clash is not None:
        errors["email"] = "Another user already has this email address."
    return email


def _unit_for(p: Principal, value: Any, privilege: str, errors: dict[str, str], *,
              table: str = "user") -> BusinessUnit | None:
    unit = db.session.get(BusinessUnit, _as_int(value) or 0)
    if unit is None or not unit.is_active:
        errors["business_unit_id"] = "Choose an active business unit."
        return None
    if not _reaches(p, table, privilege, unit.id):
        errors["business_unit_id"] = "You may not manage this business unit's " + \
            table.replace("_", " ") + "s."
    return unit


def _manager_for(p: Principal, value: Any, user: User | None, errors: dict[str, str]) -> User | None:
    raw = value.strip() if isinstance(value, str) else value
    if raw in (None, ""):
        return None
    if isinstance(raw, str) and "@" in raw:
        manager = db.session.scalar(select(User).where(func.lower(User.email) == raw.lower()))
    else:
        manager = db.session.get(User, _as_int(raw) or 0)
    if manager is None or not manager.is_active or not authz.can(p, "read", manager):
        errors["manager"] = "No active user with this email address."
        return None
    seen, walker = set(), manager
    while walker is not None and user is not None and walker.id not in seen:
        if walker.id == user.id:
            errors["manager"] = "A user cannot report to themselves or to someone reporting to them."
            return None
        seen.add(walker.id)
        walker = walker.manager
    return manager


def _names(data: dict[str, Any], errors: dict[str, str]) -> tuple[str, str, str] | None:
    try:
        first = _clean_text(data.get("first_name"), label="First name", max_length=100) or ""
        last = _clean_text(data.get("last_name"), label="Last name", max_length=100,
                           required=True) or ""
    except ValueError as exc:
        errors["last_name" if "Last" in str(exc) else "first_name"] = str(exc)
        return None
    return first, last, " ".join(x for x in (first, last) if x)


def _optional(data: dict[str, Any], errors: dict[str, str], name: str, label: str,
              max_length: int) -> str | None:
    try:
        return _clean_text(data.get(name), label=label, max_length=max_length)
    except ValueError as exc:
        errors[name] = str(exc)
        return None


def create_user(p: Principal, data: dict[str, Any]) -> tuple[User, str | None]:
    """Create a user; returns it and the password to show once (None when none was set)."""
    require_manage(p, "user")
    errors: dict[str, str] = {}
    names = _names(data, errors)
    email = _check_email(data.get("email"), errors)
    unit = _unit_for(p, data.get("business_unit_id"), "create", errors)
    manager = _manager_for(p, data.get("manager"), None, errors)
    job_title = _optional(data, errors, "job_title", "Job title", 100)
    phone = _optional(data, errors, "phone", "Phone", 50)
    password = _choose_password(data, errors)
    try:
        roles = _load_roles(p, data.get("role_ids") or ())
    except Invalid as exc:
        errors.update(exc.fields)
        roles = []
    if errors:
        raise Invalid("Some fields are not valid.", errors)
    _require_grantable(p, roles)
    first, last, full = names
    user = User(first_name=first, last_name=last, full_name=full, email=email,
                business_unit_id=unit.id, manager_id=manager.id if manager else None,
                job_title=job_title, phone=phone, is_active=True)
    if password:
        passwords.set_password(user, password)
    user.roles = roles
    db.session.add(user)
    db.session.flush()
    return user, password


def update_user(p: Principal, user: User, data: dict[str, Any]) -> User:
    """Change a user's name, email, unit, manager, job title and phone."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    errors: dict[str, str] = {}
    names = _names(data, errors)
    email = _check_email(data.get("email"), errors, exclude_id=user.id)
    if email and email != user.email:  # the email is what they sign in with
        _require_not_above(p, user, "change the email address")
    unit = user.business_unit
    if _as_int(data.get("business_unit_id")) != user.business_unit_id:
        unit = _unit_for(p, data.get("business_unit_id"), "write", errors)
    manager = _manager_for(p, data.get("manager"), user, errors)
    job_title = _optional(data, errors, "job_title", "Job title", 100)
    phone = _optional(data, errors, "phone", "Phone", 50)
    if errors:
        raise Invalid("Some fields are not valid.", errors)
    user.first_name, user.last_name, user.full_name = names
    user.email, user.business_unit_id = email, unit.id
    user.manager_id = manager.id if manager else None
    user.job_title, user.phone = job_title, phone
    db.session.flush()
    return user


def set_user_active(p: Principal, user: User, active: bool) -> User:
    """Activate or deactivate a user. A deactivated user cannot sign in; their sessions end
    and their API and add-in tokens are revoked."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    if active == user.is_active:
        return user
    _require_not_above(p, user, "change the status")
    if not active:
        if user.id == p.user_id:
            raise Conflict("You cannot deactivate yourself.")
        was_admin = user.id in _active_admin_ids()
        user.is_active = False
        user.session_version = (user.session_version or 0) + 1
        sessions.end_all(user)
        tokens.revoke_all(user)
        db.session.flush()
        if was_admin:
            _keep_an_admin()
    else:
        if not user.business_unit.is_active:
            raise Conflict("The user's business unit is inactive: move the user to an active "
                           "unit or activate the unit first.")
        user.is_active = True
    db.session.flush()
    return user


def reset_password(p: Principal, user: User, data: dict[str, Any]) -> str | None:
    """Set a new password (typed or generated); signs the user out everywhere. Returns the
    password to show once."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    if user.id == p.user_id:
        raise Conflict("Change your own password on your profile page.")
    _require_not_above(p, user, "reset the password")
    errors: dict[str, str] = {}
    mode = "set" if data.get("password_mode") == "set" else "generate"
    password = _choose_password({**data, "password_mode": mode}, errors)
    if errors:
        raise Invalid("The password is not acceptable.", errors)
    passwords.set_password(user, password)
    db.session.flush()
    return password


def set_user_roles(p: Principal, user: User, role_ids: Iterable[Any]) -> User:
    """Give the user exactly these roles. Added roles must not grant more than ``p`` holds;
    only a System Administrator adds or removes the System Administrator role."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    authz.require_table(p, "security_role", "read")
    wanted = _load_roles(p, role_ids)
    current = {r.id: r for r in user.roles}
    added = [r for r in wanted if r.id not in current]
    removed = [r for r in current.values() if r.id not in {w.id for w in wanted}]
    _require_grantable(p, added)
    removed_admin = any(_is_admin_role(r) for r in removed)
    if removed_admin and not p.is_admin:
        raise Forbidden("Only a System Administrator can remove the System Administrator role.")
    user.roles = wanted
    db.session.flush()
    if removed_admin:
        _keep_an_admin()
    return user


def _visible_teams(p: Principal, team_ids: Iterable[Any]) -> list[Team]:
    ids = {i for i in (_as_int(x) for x in team_ids) if i is not None}
    if not ids:
        return []
    teams = db.session.scalars(select(Team).where(Team.id.in_(ids), authz.scope(p, Team, "read"))
                               .options(selectinload(Team.roles).selectinload(Role.privileges))).all()
    if len(teams) != len(ids):
        raise NotFound("Some of the chosen teams do not exist.")
    return list(teams)


def _check_membership_change(p: Principal, team: Team, adding: bool) -> None:
    authz.require(p, "write", team)
    if adding:
        _require_grantable(p, team.roles)


def set_user_teams(p: Principal, user: User, team_ids: Iterable[Any]) -> User:
    """Make the user a member of exactly these teams (each change needs write on the team,
    and joining must not give the user more than ``p`` holds)."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    wanted = _visible_teams(p, team_ids)
    current = {t.id: t for t in user.teams}
    # Teams ``p`` cannot see are not on their form: membership of those stays as it is.
    wanted += [t for t in current.values() if not authz.can(p, "read", t) and t not in wanted]
    wanted_ids = {t.id for t in wanted}
    for team in wanted:
        if team.id not in current:
            _check_membership_change(p, team, True)
    for team in current.values():
        if team.id not in wanted_ids:
            _check_membership_change(p, team, False)
    user.teams = wanted
    db.session.flush()
    if any(_is_admin_role(r) for t in current.values() if t.id not in wanted_ids for r in t.roles):
        _keep_an_admin()
    return user


def set_user_field_profiles(p: Principal, user: User, profile_ids: Iterable[Any]) -> User:
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "write")
    authz.get(p, User, user.id)
    user.field_profiles = _load_profiles(profile_ids)
    db.session.flush()
    return user


# -- teams ------------------------------------------------------------------------------------

def list_teams(p: Principal, q: str = "") -> list[tuple[Team, int]]:
    """Teams ``p`` may read, with their member counts (one query)."""
    require_manage(p, "team")
    members = (select(team_member.c.team_id, func.count().label("n"))
               .group_by(team_member.c.team_id).subquery())
    stmt = (select(Team, func.coalesce(members.c.n, 0))
            .outerjoin(members, members.c.team_id == Team.id)
            .where(authz.scope(p, Team, "read"))
            .options(joinedload(Team.business_unit), selectinload(Team.roles))
            .order_by(func.lower(Team.name)))
    if q.strip():
        stmt = stmt.where(func.lower(Team.name).like(_like(q.strip()[:200]), escape="\\"))
    return [(team, n) for team, n in db.session.execute(stmt).unique().all()]


def get_team(p: Principal, team_id: int) -> Team:
    require_manage(p, "team")
    return authz.get(p, Team, team_id)


def _team_fields(p: Principal, data: dict[str, Any], team: Team | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    try:
        name = _clean_text(data.get("name"), label="Name", max_length=160, required=True)
    except ValueError as exc:
        errors["name"] = str(exc)
        name = None
    if name and db.session.scalar(select(Team.id).where(
            func.lower(Team.name) == name.lower(), Team.id != (team.id if team else 0))):
        errors["name"] = "Another team has this name."
    description = _optional(data, errors, "description", "Description", 2000)
    unit = team.business_unit if team else None
    if team is None or _as_int(data.get("business_unit_id")) != team.business_unit_id:
        unit = _unit_for(p, data.get("business_unit_id"), "create" if team is None else "write",
                         errors, table="team")
    if errors:
        raise Invalid("Some fields are not valid.", errors)
    return {"name": name, "description": description, "business_unit_id": unit.id}


def create_team(p: Principal, data: dict[str, Any]) -> Team:
    require_manage(p, "team")
    team = Team(**_team_fields(p, data, None))
    db.session.add(team)
    db.session.flush()
    return team


def update_team(p: Principal, team: Team, data: dict[str, Any]) -> Team:
    require_manage(p, "team")
    authz.require(p, "write", team)
    for key, value in _team_fields(p, data, team).items():
        setattr(team, key, value)
    db.session.flush()
    return team


def add_team_member(p: Principal, team: Team, email: str) -> User:
    """Add the user with this email address to the team."""
    require_manage(p, "team")
    _check_membership_change(p, team, True)
    email = (email or "").strip().lower()
    user = db.session.scalar(select(User).where(func.lower(User.email) == email,
                                                authz.scope(p, User, "read")))
    if user is None:
        raise Invalid("No user with this email address.", {"email": "No such user."})
    if user not in team.members:
        team.members.append(user)
    db.session.flush()
    return user


def remove_team_member(p: Principal, team: Team, user_id: int) -> None:
    require_manage(p, "team")
    _check_membership_change(p, team, False)
    user = next((u for u in team.members if u.id == user_id), None)
    if user is None:
        raise NotFound("This user is not a member of the team.")
    team.members.remove(user)
    db.session.flush()
    if any(_is_admin_role(r) for r in team.roles):
        _keep_an_admin()


def set_team_roles(p: Principal, team: Team, role_ids: Iterable[Any]) -> Team:
    require_manage(p, "team")
    authz.require(p, "write", team)
    authz.require_table(p, "security_role", "read")
    wanted = _load_roles(p, role_ids)
    current = {r.id for r in team.roles}
    _require_grantable(p, [r for r in wanted if r.id not in current])
    removed_admin = any(_is_admin_role(r) for r in team.roles if r.id not in {w.id for w in wanted})
    if removed_admin and not p.is_admin:
        raise Forbidden("Only a System Administrator can remove the System Administrator role.")
    team.roles = wanted
    db.session.flush()
    if removed_admin:
        _keep_an_admin()
    return team


# -- business units ---------------------------------------------------------------------------

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
        name = _clean_text(data_name, label="Name", max_length=160, required=True)
    except ValueError as exc:
        raise Invalid(str(exc), {"name": str(exc)}) from None
    if db.session.scalar(select(BusinessUnit.id).where(
            func.lower(BusinessUnit.name) == name.lower(),
            BusinessUnit.id != (unit.id if unit else 0))):
        raise Invalid("Another business unit has this name.", {"name": "Already taken."})
    return name


def _may_place_under(p: Principal, parent: BusinessUnit, privilege: str) -> bool:
    """A unit placed under ``parent`` ends up below it: Organization depth, or Parent: child
    depth with ``parent`` inside the actor's own subtree, is needed."""
    depth = p.depth("business_unit", privilege)
    return depth >= Depth.ORGANIZATION or (depth == Depth.PARENT_CHILD and parent.id in p.unit_subtree)


def _parent_for(p: Principal, parent_id: Any, privilege: str) -> BusinessUnit:
    parent = db.session.get(BusinessUnit, _as_int(parent_id) or 0)
    if parent is None or not authz.can(p, "read", parent):
        raise Invalid("Choose a parent business unit.", {"parent_id": "Unknown unit."})
    if not parent.is_active:
        raise Invalid("The parent business unit is inactive.", {"parent_id": "Inactive unit."})
    if not _may_place_under(p, parent, privilege):
        raise Forbidden("You may not add business units under this one.")
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
        raise Conflict("The root business unit cannot be moved.")
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
            raise Conflict("The root business unit cannot be deactivated.")
        users = db.session.scalar(select(func.count(User.id)).where(
            User.business_unit_id == unit.id, User.is_active.is_(True)))
        if users:
            raise Conflict(f"{unit.name} has {users} active user{'s' if users > 1 else ''}: "
                           "move or deactivate them first.")
        if db.session.scalar(select(BusinessUnit.id).where(
                BusinessUnit.parent_id == unit.id, BusinessUnit.is_active.is_(True)).limit(1)):
            raise Conflict(f"{unit.name} has active child units: deactivate them first.")
    elif unit.parent is not None and not unit.parent.is_active:
        raise Conflict("The parent business unit is inactive: activate it first.")
    unit.is_active = active
    db.session.flush()
    return unit


def active_units(p: Principal, table: str, privilege: str) -> list[BusinessUnit]:
    """Active units that ``p`` may place a ``table`` row in (for unit choosers)."""
    units = db.session.scalars(select(BusinessUnit).where(BusinessUnit.is_active.is_(True))
                               .order_by(func.lower(BusinessUnit.name))).all()
    return [u for u in units if _reaches(p, table, privilege, u.id)]


# -- security roles ---------------------------------------------------------------------------

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
    return not _is_admin_role(role)


def _role_fields(data: dict[str, Any], role: Role | None) -> tuple[str, str | None]:
    errors: dict[str, str] = {}
    try:
        name = _clean_text(data.get("name"), label="Name", max_length=160, required=True)
    except ValueError as exc:
        errors["name"] = str(exc)
        name = None
    if name and db.session.scalar(select(Role.id).where(func.lower(Role.name) == name.lower(),
                                                        Role.id != (role.id if role else 0))):
        errors["name"] = "Another role has this name."
    description = _optional(data, errors, "description", "Description", 2000)
    if errors:
        raise Invalid("Some fields are not valid.", errors)
    return name, description


def create_role(p: Principal, data: dict[str, Any]) -> Role:
    """A new role, empty or a copy of an existing role's privileges."""
    require_manage(p, "security_role")
    authz.require_table(p, "security_role", "create")
    name, description = _role_fields(data, None)
    role = Role(name=name, description=description, is_builtin=False)
    source_id = _as_int(data.get("copy_from"))
    if source_id:
        source = db.session.get(Role, source_id)
        if source is None:
            raise Invalid("The role to copy does not exist.", {"copy_from": "Unknown role."})
        _require_grantable(p, [source])
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
            raise Invalid(f"Unknown privilege {key!r}.")
        try:
            wanted[key] = int(Depth(int(value)))
        except (TypeError, ValueError):
            raise Invalid(f"Unknown depth for {key!r}.") from None
    named = set(named)
    unknown = named - set(NAMED_PRIVILEGES)
    if unknown:
        raise Invalid(f"Unknown privileges: {', '.join(sorted(unknown))}.")
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
        raise Conflict("Built-in roles cannot be deleted.")
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


# -- field security ---------------------------------------------------------------------------

def securable_fields(table: str) -> list:
    """Fields of a record type that may be secured: not the required ones (every form needs
    them to create a record)."""
    rt = RECORD_TYPES[table]
    return [f for f in rt.fields if not f.required and f.name != rt.title_field]


def secured_fields(p: Principal) -> dict[str, set[str]]:
    require_manage(p, "field_security_profile")
    out: dict[str, set[str]] = {t: set() for t in RECORD_TYPES}
    for row in db.session.scalars(select(SecuredField)):
        out.setdefault(row.table_name, set()).add(row.field)
    return out


def set_secured_fields(p: Principal, table: str, fields: Iterable[str]) -> set[str]:
    """Secure exactly these fields of ``table``. Unsecuring a field drops the profiles'
    permissions on it."""
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "write")
    if table not in RECORD_TYPES:
        raise NotFound("No such record type.")
    allowed = {f.name for f in securable_fields(table)}
    wanted = set(fields)
    if wanted - allowed:
        raise Invalid("These fields cannot be secured: " + ", ".join(sorted(wanted - allowed)))
    current = {r.field: r for r in db.session.scalars(
        select(SecuredField).where(SecuredField.table_name == table))}
    for name, row in current.items():
        if name not in wanted:
            db.session.delete(row)
            db.session.execute(FieldPermission.__table__.delete().where(
                FieldPermission.table_name == table, FieldPermission.field == name))
    for name in wanted - set(current):
        db.session.add(SecuredField(table_name=table, field=name))
    db.session.flush()
    return wanted


def list_profiles(p: Principal) -> list[FieldSecurityProfile]:
    require_manage(p, "field_security_profile")
    return list(db.session.scalars(select(FieldSecurityProfile)
                                   .order_by(func.lower(FieldSecurityProfile.name))))


def _load_profiles(profile_ids: Iterable[Any]) -> list[FieldSecurityProfile]:
    ids = {i for i in (_as_int(x) for x in profile_ids) if i is not None}
    if not ids:
        return []
    profiles = db.session.scalars(select(FieldSecurityProfile)
                                  .where(FieldSecurityProfile.id.in_(ids))).all()
    if len(profiles) != len(ids):
        raise Invalid("Some of the chosen profiles do not exist.")
    return list(profiles)


def get_profile(p: Principal, profile_id: int) -> FieldSecurityProfile:
    require_manage(p, "field_security_profile")
    profile = db.session.get(FieldSecurityProfile, profile_id)
    if profile is None:
        raise NotFound()
    return profile


def _profile_fields(data: dict[str, Any], profile: FieldSecurityProfile | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    try:
        name = _clean_text(data.get("name"), label="Name", max_length=160, required=True)
    except ValueError as exc:
        errors["name"] = str(exc)
        name = None
    if name and db.session.scalar(select(FieldSecurityProfile.id).where(
            func.lower(FieldSecurityProfile.name) == name.lower(),
            FieldSecurityProfile.id != (profile.id if profile else 0))):
        errors["name"] = "Another profile has this name."
    description = _optional(data, errors, "description", "Description", 2000)
    if errors:
        raise Invalid("Some fields are not valid.", errors)
    return {"name": name, "description": description}


def create_profile(p: Principal, data: dict[str, Any]) -> FieldSecurityProfile:
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "create")
    profile = FieldSecurityProfile(**_profile_fields(data, None))
    db.session.add(profile)
    db.session.flush()
    return profile


def update_profile(p: Principal, profile: FieldSecurityProfile, data: dict[str, Any],
                   permissions: dict[tuple[str, str], set[str]]) -> FieldSecurityProfile:
    """Rename the profile and set its permissions: ``{(table, field): {"read", "update",
    "create"}}`` for secured fields; fields left out get no permission."""
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "write")
    for key, value in _profile_fields(data, profile).items():
        setattr(profile, key, value)
    secured = {(r.table_name, r.field) for r in db.session.scalars(select(SecuredField))}
    unknown = set(permissions) - secured
    if unknown:
        raise Invalid("Permissions can only be given on secured fields.")
    current = {(fp.table_name, fp.field): fp for fp in profile.permissions}
    for key in secured:
        rights = permissions.get(key, set())
        if rights - {"read", "update", "create"}:
            raise Invalid("Unknown field permission.")
        row = current.get(key)
        if not rights:
            if row is not None:
                profile.permissions.remove(row)
            continue
        if row is None:
            row = FieldPermission(table_name=key[0], field=key[1])
            profile.permissions.append(row)
        row.can_read, row.can_update, row.can_create = ("read" in rights, "update" in rights,
                                                        "create" in rights)
    db.session.flush()
    return profile


def delete_profile(p: Principal, profile: FieldSecurityProfile) -> None:
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "delete")
    db.session.delete(profile)
    db.session.flush()


def profile_members(profile: FieldSecurityProfile) -> tuple[list[User], list[Team]]:
    from server.security.models import team_field_profile, user_field_profile
    users = db.session.scalars(select(User).join(user_field_profile).where(
        user_field_profile.c.profile_id == profile.id).order_by(func.lower(User.full_name))).all()
    teams = db.session.scalars(select(Team).join(team_field_profile).where(
        team_field_profile.c.profile_id == profile.id).order_by(func.lower(Team.name))).all()
    return list(users), list(teams)


def add_profile_member(p: Principal, profile: FieldSecurityProfile, *, email: str | None = None,
                       team_id: Any = None) -> None:
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "write")
    if email:
        user = db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower(),
                                                    authz.scope(p, User, "read")))
        if user is None:
            raise Invalid("No user with this email address.", {"email": "No such user."})
        if profile not in user.field_profiles:
            user.field_profiles.append(profile)
    elif team_id:
        team = db.session.scalar(select(Team).where(Team.id == _as_int(team_id),
                                                    authz.scope(p, Team, "read")))
        if team is None:
            raise Invalid("No such team.", {"team_id": "No such team."})
        if profile not in team.field_profiles:
            team.field_profiles.append(profile)
    else:
        raise Invalid("Choose a user or a team to add.")
    db.session.flush()


def remove_profile_member(p: Principal, profile: FieldSecurityProfile, *, user_id: Any = None,
                          team_id: Any = None) -> None:
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "write")
    holder = (db.session.get(User, _as_int(user_id) or 0) if user_id else
              db.session.get(Team, _as_int(team_id) or 0))
    if holder is None or profile not in holder.field_profiles:
        raise NotFound("Not a member of this profile.")
    holder.field_profiles.remove(profile)
    db.session.flush()


# -- organization settings --------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    kind: str  # text bool mb currency prefix
    help: str
    section: str


ORG_SETTINGS: tuple[Setting, ...] = (
    Setting("name", "Organization name", "text",
            "The name people see at the top of the app and in messages the server sends. "
            "The root business unit is named after it when the organization is set up.",
            "General"),
    Setting("base_currency", "Base currency", "currency",
            "The three-letter ISO code (for example USD or EUR) that amounts such as "
            "estimated revenue are shown in.", "General"),
    Setting("resolve_inactive_records", "Resolve email addresses to inactive records", "bool",
            "When an email's sender or recipient matches only a deactivated contact, account, "
            "lead or user, link the email to that record anyway. Off: such addresses stay "
            "unresolved, so new mail is not linked to records nobody works on any more.",
            "Email address resolution"),
    Setting("unresolve_ambiguous_addresses", "Leave ambiguous addresses unresolved", "bool",
            "When an address belongs to more than one record (two contacts share an address, "
            "say), leave it unresolved instead of linking the email to all of them. Someone "
            "then picks the right record by hand.", "Email address resolution"),
    Setting("attachment_max_bytes", "Maximum attachment size (MB)", "mb",
            "The largest file that can be attached to an email, appointment or note, in "
            "megabytes (1 to 128). Larger attachments of tracked email are left out, and the "
            "email says so.", "Email"),
    Setting("use_tracking_token", "Use tracking tokens", "bool",
            "Add a short token such as CRM:0001234 to the subject of email sent from the "
            "CRM, so that replies are tracked against the same record even when the reply "
            "headers are lost. Turning it off relies on the other ways of correlating mail.",
            "Email tracking"),
    Setting("tracking_token_prefix", "Tracking token prefix", "prefix",
            "The text the tracking token starts with (default CRM:). Change it when several "
            "organizations exchange email, so each recognizes its own tokens. Letters, "
            "digits and : - _ # only; up to 20 characters.", "Email tracking"),
    Setting("track_sent_items", "Track sent items", "bool",
            "Email that a user sends from their mailbox is tracked by the same rules as email "
            "they receive (for example, sent to a known contact).", "Email tracking"),
    Setting("track_between_users_as_two", "Track email between two users as two activities",
            "bool",
            "When a user emails another user, create two activities, one owned by the sender "
            "and one by the recipient, so each can set their own regarding record. Off: one "
            "activity, owned by the sender.", "Email tracking"),
    Setting("smart_matching", "Use smart matching", "bool",
            "As a last resort, link a reply to an earlier tracked email by comparing the "
            "subject and the people on it, when neither headers, tracking token nor "
            "conversation match. It can mistake unrelated mail with a similar subject for a "
            "reply, so it is off by default.", "Email tracking"),
    Setting("require_email_approval", "Process email only for approved mailboxes", "bool",
            "A user's or queue's mailbox is synchronized only once an administrator (or "
            "someone with the 'Approve email addresses' privilege) has approved its "
            "email address, so nobody can make the server read a mailbox that is not theirs.",
            "Email"),
)

_PREFIX = re.compile(r"^[A-Za-z0-9:#_\-]{0,20}$")


def get_organization(p: Principal) -> Organization:
    require_manage(p, "organization")
    org = db.session.get(Organization, 1)
    if org is None:
        raise NotFound("The organization is not set up yet: run 'flask --app server init-org'.")
    return org


def update_organization(p: Principal, data: dict[str, Any]) -> Organization:
    """Save every setting from ``data`` (a form: a missing bool is off)."""
    org = get_organization(p)
    authz.require_table(p, "organization", "write")
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for s in ORG_SETTINGS:
        raw = data.get(s.name)
        if s.kind == "bool":
            values[s.name] = str(raw).lower() in ("1", "on", "true", "yes") if raw is not None else False
        elif s.kind == "text":
            try:
                values[s.name] = _clean_text(raw, label=s.label, max_length=160, required=True)
            except ValueError as exc:
                errors[s.name] = str(exc)
        elif s.kind == "currency":
            code = (raw or "").strip().upper() if isinstance(raw, str) else ""
            if not re.fullmatch(r"[A-Z]{3}", code):
                errors[s.name] = "Use a three-letter currency code such as USD."
            values[s.name] = code
        elif s.kind == "mb":
            number = _as_int(raw.strip() if isinstance(raw, str) else raw)
            if number is None or not 1 <= number <= 128:
                errors[s.name] = "A whole number of megabytes from 1 to 128."
            else:
                values[s.name] = number * MB
        elif s.kind == "prefix":
            value = raw.strip() if isinstance(raw, str) else ""
            if not _PREFIX.match(value):
                errors[s.name] = "Up to 20 letters, digits or : - _ #."
            values[s.name] = value
    if values.get("use_tracking_token") and not values.get("tracking_token_prefix") \
            and "tracking_token_prefix" not in errors:
        errors["tracking_token_prefix"] = "Tracking tokens need a prefix."
    if errors:
        raise Invalid("Some settings are not valid.", errors)
    for key, value in values.items():
        setattr(org, key, value)
    org.modified_on = utcnow()
    db.session.flush()
    return org


def setting_value(org: Organization, s: Setting) -> Any:
    value = getattr(org, s.name)
    if s.kind == "mb":
        return max(1, round(value / MB)) if value else 5
    return value
