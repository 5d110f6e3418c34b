"""Administration of teams: list, create, edit, members and roles (the rules in
``server.security.admin``)."""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from server.db import db
from server.errors import Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.admin import (as_int, assign_roles, is_admin_role, keep_an_admin,
                                   like_pattern, optional_text, require_grantable, require_manage,
                                   unique_name, unit_for)
from server.security.authz import Principal
from server.security.models import Team, User, team_member


def check_membership_change(p: Principal, team: Team, adding: bool) -> None:
    authz.require(p, "write", team)
    if adding:
        require_grantable(p, team.roles)


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
        stmt = stmt.where(func.lower(Team.name).like(like_pattern(q.strip()[:200]), escape="\\"))
    return [(team, n) for team, n in db.session.execute(stmt).unique().all()]


def get_team(p: Principal, team_id: int) -> Team:
    require_manage(p, "team")
    return authz.get(p, Team, team_id)


def _team_fields(p: Principal, data: dict[str, Any], team: Team | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    name = unique_name(data, errors, Team, team, "team")
    description = optional_text(data, errors, "description", "Description", 2000)
    unit = team.business_unit if team else None
    if team is None or as_int(data.get("business_unit_id")) != team.business_unit_id:
        unit = unit_for(p, data.get("business_unit_id"), "create" if team is None else "write",
                         errors, table="team")
    if errors:
        raise Invalid(N_("Some fields are not valid."), errors)
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
    check_membership_change(p, team, True)
    email = (email or "").strip().lower()
    user = db.session.scalar(select(User).where(func.lower(User.email) == email,
                                                authz.scope(p, User, "read")))
    if user is None:
        raise Invalid(N_("No user with this email address."), {"email": N_("No such user.")})
    if user not in team.members:
        team.members.append(user)
    db.session.flush()
    return user


def remove_team_member(p: Principal, team: Team, user_id: int) -> None:
    require_manage(p, "team")
    check_membership_change(p, team, False)
    user = next((u for u in team.members if u.id == user_id), None)
    if user is None:
        raise NotFound(N_("This user is not a member of the team."))
    team.members.remove(user)
    db.session.flush()
    if any(is_admin_role(r) for r in team.roles):
        keep_an_admin()


def set_team_roles(p: Principal, team: Team, role_ids: Iterable[Any]) -> Team:
    require_manage(p, "team")
    authz.require(p, "write", team)
    return assign_roles(p, team, role_ids)
