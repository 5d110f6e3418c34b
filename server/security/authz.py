"""The one authorization service: every read and write in pages, the API, the add-in API and
the CLI asks it. Depth is applied in SQL (``scope``) for lists and by ``can`` for one record;
sharing and team ownership are part of both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property

from flask import g, has_request_context
from sqlalchemy import (Boolean, Integer, String, bindparam, cast, false, inspect, literal,
                        null, or_, select, true, union, union_all)
from sqlalchemy.orm.util import AliasedClass
from sqlalchemy.sql import ColumnElement

from server.crm.activities import Activity
from server.crm.registry import MODEL_TYPES, NOUNS, choice_label
from server.db import db, prepared_statement, select_rows
from server.errors import Forbidden, NotFound
from server.i18n import N_
from server.security.models import (BusinessUnit, FieldPermission, RecordShare, Role,
                                    RolePrivilege, SecuredField, Team, User, team_member,
                                    team_role, user_role)
from server.security import stamp
from server.security.privileges import NAMED_PRIVILEGES, Depth

SHARE_FLAGS = {"read": "can_read", "write": "can_write", "append": "can_append",
               "append_to": "can_append_to", "delete": "can_delete", "assign": "can_assign",
               "share": "can_share"}


def table_of(model_or_record) -> str:
    """The privilege table of a model class (or an alias of one) or instance."""
    if isinstance(model_or_record, AliasedClass):
        model_or_record = inspect(model_or_record).class_
    cls = model_or_record if isinstance(model_or_record, type) else type(model_or_record)
    if issubclass(cls, Activity):
        return "activity"
    if cls in MODEL_TYPES:
        return MODEL_TYPES[cls].name
    return {User: "user", Team: "team", BusinessUnit: "business_unit"}.get(cls) or cls.__tablename__


@dataclass(frozen=True)
class FieldAccess:
    """Which secured fields of one table a principal may read, update and set on create."""
    secured: frozenset[str]
    read: frozenset[str]
    update: frozenset[str]
    create: frozenset[str]

    def can_read(self, name: str) -> bool:
        return name not in self.secured or name in self.read

    def can_update(self, name: str) -> bool:
        return name not in self.secured or name in self.update

    def can_create(self, name: str) -> bool:
        return name not in self.secured or name in self.create

    @property
    def hidden(self) -> frozenset[str]:
        return self.secured - self.read


@dataclass
class Principal:
    """A user as authorization sees them: their teams, units, depths and named privileges,
    and every table's secured fields and the business-unit tree (loaded with them: a
    request often needs several tables)."""
    user: User
    team_ids: tuple[int, ...]
    depths: dict[str, Depth]
    named: frozenset[str]
    is_admin: bool
    secured_fields: dict[str, frozenset[str]] = field(default_factory=dict)
    unit_children: dict[int | None, tuple[int, ...]] = field(default_factory=dict)
    _fields: dict[str, FieldAccess] = field(default_factory=dict)

    @property
    def user_id(self) -> int:
        return self.user.id

    @property
    def business_unit_id(self) -> int:
        return self.user.business_unit_id

    @cached_property
    def unit_subtree(self) -> tuple[int, ...]:
        """The user's business unit and every unit below it."""
        out, stack = [], [self.business_unit_id]
        while stack:
            unit = stack.pop()
            out.append(unit)
            stack.extend(self.unit_children.get(unit, ()))
        return tuple(out)

    @property
    def scope_key(self) -> tuple:
        """Everything ``scope`` reads from the principal: a statement built with ``scope``
        for one principal is right for any other whose key is equal."""
        subtree = self.unit_subtree if Depth.PARENT_CHILD in self.depths.values() else ()
        return (self.user_id, self.user.is_active, self.business_unit_id, self.team_ids,
                tuple(sorted(self.depths.items())), subtree)

    def depth(self, table: str, privilege: str) -> Depth:
        return self.depths.get(f"{table}.{privilege}", Depth.NONE)

    def has(self, named: str) -> bool:
        if named not in NAMED_PRIVILEGES:
            raise KeyError(named)
        return named in self.named

    def fields(self, table: str) -> FieldAccess:
        if table not in self._fields:
            self._fields[table] = _field_access(self, table)
        return self._fields[table]


def principal(user: User) -> Principal:
    """The principal for ``user``, computed once per request."""
    return principals([user])[user.id]


def principals(users) -> dict[int, Principal]:
    """The principal of each of ``users`` by id, computed once per request: those not yet
    computed in this request from what their roles and teams grant, as this process kept it
    for the request's security stamp (``server.security.stamp``), else in one statement."""
    cache = g.setdefault("_principals", {}) if has_request_context() else {}
    missing = [u for u in users if u.id not in cache]
    if missing:
        grants = stamp.kept("grants", sorted({u.id for u in missing}), _load_grants)
        cache.update((u.id, _principal(u, grants[u.id])) for u in missing)
    return {u.id: cache[u.id] for u in users}


# The columns of ``_grants``'s rows after their ``kind``, with their types.
GRANT_COLUMNS = dict(user_id=Integer(), id=Integer(), parent_id=Integer(), name=String(),
                     is_builtin=Boolean(), item=String(), depth=Integer())


@cache
def _grants():
    """One statement for the users ``user_ids``: each one's teams (``team``: ``id`` the
    team's), the privileges of their roles and of their teams' roles (``role``: ``name``,
    ``is_builtin``, ``item`` the privilege, ``depth``; a role without privileges has a row
    too), each row with its ``user_id``; every table's secured fields (``secured``: ``name``
    the table, ``item`` the field; no user); and the business-unit tree (``unit``: ``id``
    the unit's, ``parent_id``; no user), which a principal's ``unit_subtree`` walks: kept
    with the grants, as writes to ``business_unit`` change the security stamp too."""
    user_ids = bindparam("user_ids", expanding=True)
    roles = union(
        select(user_role.c.user_id, user_role.c.role_id).where(user_role.c.user_id.in_(user_ids)),
        select(team_member.c.user_id, team_role.c.role_id)
        .join(team_role, team_role.c.team_id == team_member.c.team_id)
        .where(team_member.c.user_id.in_(user_ids))).subquery()

    def branch(kind: str, user_id=None, id=None, parent_id=None, name=None, is_builtin=None,
               item=None, depth=None):
        values = dict(user_id=user_id, id=id, parent_id=parent_id, name=name,
                      is_builtin=is_builtin, item=item, depth=depth)
        # A typed null (PostgreSQL types a union's column from its first branches).
        return select(literal(kind).label("kind"), *(
            (cast(null(), GRANT_COLUMNS[k]) if v is None else v).label(k)
            for k, v in values.items()))

    return prepared_statement(union_all(
        branch("team", user_id=team_member.c.user_id, id=team_member.c.team_id)
        .where(team_member.c.user_id.in_(user_ids)),
        branch("role", user_id=roles.c.user_id, name=Role.name, is_builtin=Role.is_builtin,
               item=RolePrivilege.privilege, depth=RolePrivilege.depth)
        .select_from(roles).join(Role, Role.id == roles.c.role_id)
        .outerjoin(RolePrivilege, RolePrivilege.role_id == Role.id),
        branch("secured", name=SecuredField.table_name, item=SecuredField.field),
        branch("unit", id=BusinessUnit.id, parent_id=BusinessUnit.parent_id)))


def held(user: User) -> Principal:
    """What ``user``'s roles and teams grant whether the user is active or not: what they
    would hold again if reactivated. "Is this user above me?" is judged from this (a
    deactivated System Administrator is still one to a unit administrator); reads and
    writes always use :func:`principal`."""
    return _load_principals([user], counting_inactive=True)[user.id]


@dataclass(frozen=True)
class Grants:
    """What a user's roles and teams grant, active or not (``_grants``'s rows for them)."""
    team_ids: tuple[int, ...]
    depths: dict[str, Depth]
    named: frozenset[str]
    is_admin: bool
    secured_fields: dict[str, frozenset[str]]
    unit_children: dict[int | None, tuple[int, ...]]  # the units under each (None: the roots)


def _load_grants(user_ids) -> dict[int, Grants]:
    team_ids: dict[int, list[int]] = {u: [] for u in user_ids}
    depths: dict[int, dict[str, Depth]] = {u: {} for u in user_ids}
    named: dict[int, set[str]] = {u: set() for u in user_ids}
    secured: dict[str, set[str]] = {}
    children: dict[int | None, list[int]] = {}
    admins: set[int] = set()
    # Fetched at once: a row at a time, psycopg's per-call overhead was 0.15 ms of a
    # Salesperson's 55 rows (bench/README.md, issue 17 goal 2, fifth session).
    for kind, user_id, id_, parent_id, name, builtin, item, depth in select_rows(
            _grants(), {"user_ids": sorted(user_ids)}).all():
        if kind == "team":
            team_ids[user_id].append(id_)
        elif kind == "unit":
            children.setdefault(parent_id, []).append(id_)
        elif kind == "secured":
            secured.setdefault(name, set()).add(item)
        else:
            if builtin and name == "System Administrator":
                admins.add(user_id)
            if item is None:
                continue
            if "." in item:
                held_depths = depths[user_id]
                held_depths[item] = max(held_depths.get(item, Depth.NONE), Depth(depth))
            elif depth:
                named[user_id].add(item)
    fields = {table: frozenset(items) for table, items in secured.items()}
    tree = {parent: tuple(sorted(units)) for parent, units in children.items()}
    return {u: Grants(tuple(sorted(team_ids[u])), depths[u], frozenset(named[u]), u in admins,
                      fields, tree) for u in user_ids}


def _principal(user: User, grants: Grants, *, counting_inactive: bool = False) -> Principal:
    holds = user.is_active or counting_inactive  # an inactive user holds nothing
    return Principal(user, grants.team_ids, dict(grants.depths) if holds else {},
                     grants.named if holds else frozenset(), holds and grants.is_admin,
                     dict(grants.secured_fields), grants.unit_children)


def _load_principals(users, *, counting_inactive: bool = False) -> dict[int, Principal]:
    grants = _load_grants([u.id for u in users])
    return {u.id: _principal(u, grants[u.id], counting_inactive=counting_inactive) for u in users}


def _field_access(p: Principal, table: str) -> FieldAccess:
    secured = p.secured_fields.get(table, frozenset())
    if not secured or p.is_admin:  # System Administrators see every secured field
        return FieldAccess(secured, secured, secured, secured)
    profile_ids = {fp.id for fp in p.user.field_profiles}
    for team in p.user.teams:
        profile_ids.update(fp.id for fp in team.field_profiles)
    perms = db.session.scalars(select(FieldPermission).where(
        FieldPermission.table_name == table, FieldPermission.profile_id.in_(profile_ids))).all()
    pick = lambda attr: frozenset(x.field for x in perms if getattr(x, attr)) & secured  # noqa: E731
    return FieldAccess(secured, pick("can_read"), pick("can_update"), pick("can_create"))


# -- ownership columns per kind of table ------------------------------------------------------

def _owner_columns(model):
    """(owner user column, owner team column, business unit column) for depth checks."""
    if model is User:
        return User.id, None, User.business_unit_id
    if hasattr(model, "OWNER_COLUMNS"):  # tables owned by other columns (e.g. mailbox)
        return tuple(getattr(model, c) if c else None for c in model.OWNER_COLUMNS)
    if model in (Team, BusinessUnit):
        bu = Team.business_unit_id if model is Team else BusinessUnit.id
        return None, None, bu
    return model.owner_user_id, model.owner_team_id, model.owning_business_unit_id


def scope(p: Principal, model, privilege: str = "read") -> ColumnElement[bool]:
    """A SQL condition selecting the rows of ``model`` on which ``p`` holds ``privilege``."""
    table = table_of(model)
    depth = p.depth(table, privilege)
    if not p.user.is_active:  # nothing at all, not even what was shared with them
        return false()
    if depth >= Depth.ORGANIZATION:
        return true()
    user_col, team_col, bu_col = _owner_columns(model)
    # Depths nest: business unit and parent-child depth include what user depth gives (the
    # user's own records and their teams', which may belong to another unit), as ``can`` does.
    parts = []
    if depth >= Depth.USER:
        if user_col is not None:
            parts.append(user_col == p.user_id)
        if team_col is not None and p.team_ids:
            parts.append(team_col.in_(p.team_ids))
    if depth == Depth.PARENT_CHILD:
        parts.append(bu_col.in_(p.unit_subtree))
    elif depth == Depth.BUSINESS_UNIT:
        parts.append(bu_col == p.business_unit_id)
    clause = or_(*parts) if parts else false()
    flag = SHARE_FLAGS.get(privilege)
    if flag and hasattr(model, "owner_user_id"):
        shared = select(RecordShare.record_id).where(
            RecordShare.table_name == table, getattr(RecordShare, flag).is_(True),
            or_(RecordShare.user_id == p.user_id,
                RecordShare.team_id.in_(p.team_ids) if p.team_ids else false()))
        clause = or_(clause, model.id.in_(shared))
    return clause


def can(p: Principal, privilege: str, record) -> bool:
    """Whether ``p`` holds ``privilege`` on this loaded record."""
    table = table_of(record)
    depth = p.depth(table, privilege)
    if not p.user.is_active:
        return False
    if depth >= Depth.ORGANIZATION:
        return True
    model = type(record)
    user_col, team_col, bu_col = _owner_columns(model)
    bu = getattr(record, bu_col.key)
    if depth == Depth.PARENT_CHILD and bu in p.unit_subtree:
        return True
    if depth >= Depth.BUSINESS_UNIT and bu == p.business_unit_id:
        return True
    if depth >= Depth.USER:
        if user_col is not None and getattr(record, user_col.key) == p.user_id:
            return True
        if team_col is not None and getattr(record, team_col.key) in p.team_ids:
            return True
    flag = SHARE_FLAGS.get(privilege)
    if flag and hasattr(record, "owner_user_id"):
        return db.session.scalar(select(RecordShare.id).where(
            RecordShare.table_name == table, RecordShare.record_id == record.id,
            getattr(RecordShare, flag).is_(True),
            or_(RecordShare.user_id == p.user_id,
                RecordShare.team_id.in_(p.team_ids) if p.team_ids else false())).limit(1)) is not None
    return False


def can_create(p: Principal, model, owner_business_unit_id: int | None = None,
               owner_user_id: int | None = None, *, owner_team_id: int | None = None) -> bool:
    """Create is checked against the owner the new record will have, with the same depth
    rules as reading a record with that owner (a team of the user's counts as their own)."""
    depth = p.depth(table_of(model), "create")
    if depth >= Depth.ORGANIZATION:
        return True
    if depth == Depth.NONE:
        return False
    if owner_user_id is not None and owner_user_id == p.user_id:
        return True
    if owner_team_id is not None and owner_team_id in p.team_ids:
        return True
    if owner_business_unit_id == p.business_unit_id:
        return depth >= Depth.BUSINESS_UNIT
    if owner_business_unit_id in p.unit_subtree:
        return depth >= Depth.PARENT_CHILD
    return False


def require(p: Principal, privilege: str, record) -> None:
    """Raise ``NotFound`` when ``p`` cannot even read the record (its existence stays
    private), ``Forbidden`` when they can read it but not do ``privilege``."""
    if privilege != "read" and can(p, privilege, record):
        return
    if not can(p, "read", record):
        raise NotFound()
    if privilege != "read":
        table = table_of(record)  # a record type's or an activity's noun; another table's name
        kind = NOUNS[table][0] if table in NOUNS else table.replace("_", " ")
        raise Forbidden(N_("You do not have the “%(privilege)s” privilege on this %(kind)s.",
                           privilege=choice_label(privilege), kind=kind))


def require_named(p: Principal, named: str) -> None:
    if not p.has(named):
        raise Forbidden(N_("This needs the '%(privilege)s' privilege.",
                           privilege=NAMED_PRIVILEGES[named]))


def require_table(p: Principal, table: str, privilege: str) -> None:
    """For administration pages: some depth of ``privilege`` on ``table`` is needed."""
    if p.depth(table, privilege) == Depth.NONE:
        raise Forbidden(N_("You do not have the “%(privilege)s” privilege on %(table)s.",
                           privilege=choice_label(privilege), table=table.replace("_", " ")))


def get(p: Principal, model, record_id: int, privilege: str = "read"):
    """Load one record by id with ``privilege`` checked in the query: NotFound otherwise."""
    record = db.session.scalar(select(model).where(model.id == record_id, scope(p, model, "read")))
    if record is None:
        raise NotFound()
    if privilege != "read":
        require(p, privilege, record)
    return record
