"""Administration of users: list, create, edit, activate and deactivate, reset passwords,
roles, teams and field security profiles (the rules in ``server.security.admin``)."""
from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload, selectinload

from server.db import db
from server.errors import Conflict, Invalid, NotFound
from server.i18n import N_, check_choice, message_of
from server.mailkeys import normalize_address
from server.security import authz, passwords, sessions, tokens
from server.security.admin import (active_admin_ids, as_int, assign_roles, clean_text,
                                   is_admin_role, keep_an_admin, like_pattern, load_roles,
                                   optional_text, require_grantable, require_manage,
                                   require_not_above, unit_for)
from server.security.authz import Principal
from server.security.field_security import load_profiles
from server.security.models import Role, Team, User
from server.security.teams import check_membership_change


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
        pattern = like_pattern(q.strip()[:200])
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
        errors["password"] = N_("Must be text.")
    elif problem := passwords.check_password_strength(value):
        errors["password"] = problem
    return value


def _check_email(value: Any, errors: dict[str, str], *, exclude_id: int | None = None) -> str | None:
    email = value.strip() if isinstance(value, str) else ""
    if not email or normalize_address(email) is None or len(email) > 320:
        errors["email"] = N_("Enter a valid email address.")
        return None
    clash = db.session.scalar(select(User.id).where(func.lower(User.email) == email.lower(),
                                                    User.id != (exclude_id or 0)))
    if clash is not None:
        errors["email"] = N_("Another user already has this email address.")
    return email


def _manager_for(p: Principal, value: Any, user: User | None, errors: dict[str, str]) -> User | None:
    raw = value.strip() if isinstance(value, str) else value
    if raw in (None, ""):
        return None
    if isinstance(raw, str) and "@" in raw:
        manager = db.session.scalar(select(User).where(func.lower(User.email) == raw.lower()))
    else:
        manager = db.session.get(User, as_int(raw) or 0)
    if manager is None or not manager.is_active or not authz.can(p, "read", manager):
        errors["manager"] = N_("No active user with this email address.")
        return None
    seen, walker = set(), manager
    while walker is not None and user is not None and walker.id not in seen:
        if walker.id == user.id:
            errors["manager"] = N_("A user cannot report to themselves or to someone reporting to them.")
            return None
        seen.add(walker.id)
        walker = walker.manager
    return manager


def _names(data: dict[str, Any], errors: dict[str, str]) -> tuple[str, str, str] | None:
    try:
        first = clean_text(data.get("first_name"), label="First name", max_length=100) or ""
        last = clean_text(data.get("last_name"), label="Last name", max_length=100,
                           required=True) or ""
    except ValueError as exc:
        errors["last_name" if "Last" in str(exc) else "first_name"] = message_of(exc)
        return None
    return first, last, " ".join(x for x in (first, last) if x)


def create_user(p: Principal, data: dict[str, Any]) -> tuple[User, str | None]:
    """Create a user; returns it and the password to show once (None when none was set)."""
    require_manage(p, "user")
    errors: dict[str, str] = {}
    names = _names(data, errors)
    email = _check_email(data.get("email"), errors)
    unit = unit_for(p, data.get("business_unit_id"), "create", errors)
    manager = _manager_for(p, data.get("manager"), None, errors)
    job_title = optional_text(data, errors, "job_title", "Job title", 100)
    phone = optional_text(data, errors, "phone", "Phone", 50)
    password = _choose_password(data, errors)
    try:
        roles = load_roles(p, data.get("role_ids") or ())
    except Invalid as exc:
        errors.update(exc.fields)
        roles = []
    if errors:
        raise Invalid(N_("Some fields are not valid."), errors)
    require_grantable(p, roles)
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
        require_not_above(p, user, N_("change the email address"))
    unit = user.business_unit
    if as_int(data.get("business_unit_id")) != user.business_unit_id:
        unit = unit_for(p, data.get("business_unit_id"), "write", errors)
    manager = _manager_for(p, data.get("manager"), user, errors)
    job_title = optional_text(data, errors, "job_title", "Job title", 100)
    phone = optional_text(data, errors, "phone", "Phone", 50)
    if errors:
        raise Invalid(N_("Some fields are not valid."), errors)
    user.first_name, user.last_name, user.full_name = names
    user.email, user.business_unit_id = email, unit.id
    user.manager_id = manager.id if manager else None
    user.job_title, user.phone = job_title, phone
    db.session.flush()
    return user


def set_preferences(user: User, language: str | None, time_zone: str | None) -> User:
    """A user's own language and time zone (empty: the browser's language and the
    organization's time zone). Anyone may set their own."""
    language, time_zone = (language or "").strip() or None, (time_zone or "").strip() or None
    if errors := check_choice(language, time_zone):
        raise Invalid(N_("Some fields are not valid."), errors)
    user.language, user.time_zone = language, time_zone
    db.session.flush()
    return user


def set_user_active(p: Principal, user: User, active: bool) -> User:
    """Activate or deactivate a user. A deactivated user cannot sign in; their sessions end
    and their API and add-in tokens are revoked."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    if active == user.is_active:
        return user
    require_not_above(p, user, N_("change the status"))
    if not active:
        if user.id == p.user_id:
            raise Conflict(N_("You cannot deactivate yourself."))
        was_admin = user.id in active_admin_ids()
        user.is_active = False
        user.session_version = (user.session_version or 0) + 1
        sessions.end_all(user)
        tokens.revoke_all(user)
        db.session.flush()
        if was_admin:
            keep_an_admin()
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
        raise Conflict(N_("Change your own password on your profile page."))
    require_not_above(p, user, N_("reset the password"))
    errors: dict[str, str] = {}
    mode = "set" if data.get("password_mode") == "set" else "generate"
    password = _choose_password({**data, "password_mode": mode}, errors)
    if errors:
        raise Invalid(N_("The password is not acceptable."), errors)
    passwords.set_password(user, password)
    db.session.flush()
    return password


def set_user_roles(p: Principal, user: User, role_ids: Iterable[Any]) -> User:
    """Give the user exactly these roles. Added roles must not grant more than ``p`` holds;
    only a System Administrator adds or removes the System Administrator role."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    return assign_roles(p, user, role_ids)


def visible_teams(p: Principal, team_ids: Iterable[Any]) -> list[Team]:
    ids = {i for i in (as_int(x) for x in team_ids) if i is not None}
    if not ids:
        return []
    teams = db.session.scalars(select(Team).where(Team.id.in_(ids), authz.scope(p, Team, "read"))
                               .options(selectinload(Team.roles).selectinload(Role.privileges))).all()
    if len(teams) != len(ids):
        raise NotFound(N_("Some of the chosen teams do not exist."))
    return list(teams)


def set_user_teams(p: Principal, user: User, team_ids: Iterable[Any]) -> User:
    """Make the user a member of exactly these teams (each change needs write on the team,
    and joining must not give the user more than ``p`` holds)."""
    require_manage(p, "user")
    authz.require(p, "write", user)
    wanted = visible_teams(p, team_ids)
    current = {t.id: t for t in user.teams}
    # Teams ``p`` cannot see are not on their form: membership of those stays as it is.
    wanted += [t for t in current.values() if not authz.can(p, "read", t) and t not in wanted]
    wanted_ids = {t.id for t in wanted}
    for team in wanted:
        if team.id not in current:
            check_membership_change(p, team, True)
    for team in current.values():
        if team.id not in wanted_ids:
            check_membership_change(p, team, False)
    user.teams = wanted
    db.session.flush()
    if any(is_admin_role(r) for t in current.values() if t.id not in wanted_ids for r in t.roles):
        keep_an_admin()
    return user


def set_user_field_profiles(p: Principal, user: User, profile_ids: Iterable[Any]) -> User:
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "write")
    authz.get(p, User, user.id)
    user.field_profiles = load_profiles(profile_ids)
    db.session.flush()
    return user
