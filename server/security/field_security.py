"""Administration of field security: which fields are secured, and the profiles that grant
read, update and create on them to users and teams."""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import func, select

from server.crm.registry import RECORD_TYPES
from server.db import db
from server.errors import Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.admin import as_int, optional_text, require_manage, unique_name
from server.security.authz import Principal
from server.security.models import FieldPermission, FieldSecurityProfile, SecuredField, Team, User


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
        raise NotFound(N_("No such record type."))
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


def load_profiles(profile_ids: Iterable[Any]) -> list[FieldSecurityProfile]:
    ids = {i for i in (as_int(x) for x in profile_ids) if i is not None}
    if not ids:
        return []
    profiles = db.session.scalars(select(FieldSecurityProfile)
                                  .where(FieldSecurityProfile.id.in_(ids))).all()
    if len(profiles) != len(ids):
        raise Invalid(N_("Some of the chosen profiles do not exist."))
    return list(profiles)


def get_profile(p: Principal, profile_id: int) -> FieldSecurityProfile:
    require_manage(p, "field_security_profile")
    profile = db.session.get(FieldSecurityProfile, profile_id)
    if profile is None:
        raise NotFound()
    return profile


def _profile_fields(data: dict[str, Any], profile: FieldSecurityProfile | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    name = unique_name(data, errors, FieldSecurityProfile, profile, "profile")
    description = optional_text(data, errors, "description", "Description", 2000)
    if errors:
        raise Invalid(N_("Some fields are not valid."), errors)
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
        raise Invalid(N_("Permissions can only be given on secured fields."))
    current = {(fp.table_name, fp.field): fp for fp in profile.permissions}
    for key in secured:
        rights = permissions.get(key, set())
        if rights - {"read", "update", "create"}:
            raise Invalid(N_("Unknown field permission."))
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
            raise Invalid(N_("No user with this email address."), {"email": N_("No such user.")})
        if profile not in user.field_profiles:
            user.field_profiles.append(profile)
    elif team_id:
        team = db.session.scalar(select(Team).where(Team.id == as_int(team_id),
                                                    authz.scope(p, Team, "read")))
        if team is None:
            raise Invalid(N_("No such team."), {"team_id": N_("No such team.")})
        if profile not in team.field_profiles:
            team.field_profiles.append(profile)
    else:
        raise Invalid(N_("Choose a user or a team to add."))
    db.session.flush()


def remove_profile_member(p: Principal, profile: FieldSecurityProfile, *, user_id: Any = None,
                          team_id: Any = None) -> None:
    require_manage(p, "field_security_profile")
    authz.require_table(p, "field_security_profile", "write")
    holder = (db.session.get(User, as_int(user_id) or 0) if user_id else
              db.session.get(Team, as_int(team_id) or 0))
    if holder is None or profile not in holder.field_profiles:
        raise NotFound(N_("Not a member of this profile."))
    holder.field_profiles.remove(profile)
    db.session.flush()
