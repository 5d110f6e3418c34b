"""Settings of appointment, contact and task sync: the organization's field sync directions
(Dynamics' defaults unless changed) and the synchronization filters (the organization's
default per kind, and each user's own). Directions and organization filters are changed by
those who may write the organization; a user's own filter by that user. Callers commit."""
from __future__ import annotations

from sqlalchemy import select

from server.db import db
from server.errors import Forbidden, Invalid
from server.i18n import N_
from server.security.authz import Principal
from server.security.privileges import Depth
from server.sync.acts import filters
from server.sync.acts.records import PRIVILEGES
from server.sync.connectors.base import ITEM_KINDS
from server.sync.items.fields import (DEFAULT_DIRECTIONS, FIELD_DIRECTIONS, FIELDS, direction,
                                      label)
from server.sync.models import FILTER_OWNERS, FieldDirection, SyncFilter


def can_edit(p: Principal) -> bool:
    return p.depth("organization", "write") > Depth.NONE


def directions() -> dict[str, list[tuple[str, str, str]]]:
    """{kind: [(field, label, direction)]} as they are now."""
    chosen = {(r.kind, r.field): r.direction for r in db.session.scalars(select(FieldDirection))}
    return {kind: [(name, label(name), direction(kind, name, chosen)) for name in FIELDS[kind]]
            for kind in ITEM_KINDS}


def save_directions(p: Principal, data: dict) -> int:
    """Store the directions given as ``{kind}.{field}``; a default stores no row. Returns
    how many differ from the defaults."""
    if not can_edit(p):
        raise Forbidden(N_("Changing field sync directions needs write on the organization."))
    errors = {}
    wanted: dict[tuple[str, str], str] = {}
    for kind in ITEM_KINDS:
        for name in FIELDS[kind]:
            value = data.get(f"{kind}.{name}")
            if value is None:
                continue
            if value not in FIELD_DIRECTIONS:
                errors[f"{kind}.{name}"] = f"Choose one of {', '.join(FIELD_DIRECTIONS)}."
            elif value != DEFAULT_DIRECTIONS.get((kind, name), "both"):
                wanted[(kind, name)] = value
    if errors:
        raise Invalid(N_("Some directions are not valid."), errors)
    rows = {(r.kind, r.field): r for r in db.session.scalars(select(FieldDirection))}
    for key, row in rows.items():
        if key not in wanted:
            db.session.delete(row)
    for (kind, name), value in wanted.items():
        row = rows.get((kind, name)) or FieldDirection(kind=kind, field=name)
        row.direction = value
        db.session.add(row)
    db.session.flush()
    return len(wanted)


def filter_rows(p: Principal) -> dict[str, dict[str, SyncFilter | None]]:
    """{kind: {"organization": row or None, "mine": row or None}}."""
    rows = db.session.scalars(select(SyncFilter).where(
        (SyncFilter.user_id == p.user_id) | SyncFilter.user_id.is_(None))).all()
    found = {kind: {"organization": None, "mine": None} for kind in ITEM_KINDS}
    for row in rows:
        found[row.kind]["organization" if row.user_id is None else "mine"] = row
    return found


def in_force(p: Principal) -> dict[str, filters.Rule]:
    return {kind: filters.rule_for(p.user_id, kind) for kind in ITEM_KINDS}


def parse_conditions(text: str) -> list[list[str]]:
    """One condition a line: ``field operator value`` (the value may have spaces)."""
    conditions = []
    for line in (text or "").splitlines():
        parts = line.split(None, 2)
        if parts:
            conditions.append(parts + [""] * (3 - len(parts)))
    return conditions


def save_filter(p: Principal, data: dict) -> SyncFilter | None:
    """The organization's default (``scope`` organization) or the user's own filter
    (``scope`` mine) for one kind; ``reset`` drops it (the default applies again)."""
    kind, scope = data.get("kind"), data.get("scope")
    if kind not in ITEM_KINDS or scope not in ("organization", "mine"):
        raise Invalid(N_("Choose what the filter is for."), {"kind": N_("Unknown kind or scope.")})
    if scope == "organization" and not can_edit(p):
        raise Forbidden(N_("Changing the organization's filters needs write on the organization."))
    if scope == "mine" and not p.has(PRIVILEGES[kind]):
        raise Forbidden(f"You do not sync {kind}s.")
    owner_id = None if scope == "organization" else p.user_id
    row = db.session.scalar(select(SyncFilter).where(
        SyncFilter.kind == kind, SyncFilter.user_id.is_(None) if owner_id is None
        else SyncFilter.user_id == owner_id))
    if data.get("reset"):
        if row is not None:
            db.session.delete(row)
            db.session.flush()
        return None
    owner = data.get("owner") or "me"
    conditions = parse_conditions(data.get("conditions", ""))
    problems = filters.check(kind, owner, conditions)
    if owner not in FILTER_OWNERS:
        problems.append(N_("Choose whose records."))
    if problems:
        raise Invalid(" ".join(problems), {f"{scope}-{kind}": " ".join(problems)})
    if row is None:
        row = SyncFilter(kind=kind, user_id=owner_id)
        db.session.add(row)
    row.name = (data.get("name") or "").strip()[:200] or filters.DEFAULT_NAMES[kind]
    row.owner, row.conditions, row.enabled = owner, conditions, True
    db.session.flush()
    return row
