"""Titles of linked records, loaded once per page: which records a page's rows link to or
are regarding, and their titles for the reader, one query per record type however many rows
a page shows. A record the reader may not read has no title (pages show it as restricted);
a title is what the reader may see of it (field security: a hidden part of a person's name
is left out, a hidden name is null).
"""
from __future__ import annotations

from sqlalchemy import null, select

from server.crm.registry import RECORD_TYPES, parts_of
from server.db import db
from server.security import authz
from server.security.authz import Principal
from server.security.models import Team, User


def title_column(p: Principal, kind: str, model=None):
    """SQL for the title of records of ``kind`` (``model``: an alias) as ``p`` may see it,
    as ``title`` computes it; null when hidden."""
    if kind in ("user", "team"):
        model = model or (User if kind == "user" else Team)
        return model.full_name if kind == "user" else model.name
    rt = RECORD_TYPES[kind]
    model = model or rt.model
    shown = title_parts(p, kind)
    if not shown:
        return null()
    if shown == parts_of(rt, rt.title_field):
        return getattr(model, rt.title_field)
    return getattr(model, shown[0])  # one part of a derived name


def title_parts(p: Principal, kind: str) -> tuple[str, ...]:
    """The fields of a ``kind``'s title ``p`` may read (the key of statements built with
    ``title_column``; empty for users and teams, whose names are not secured)."""
    if kind in ("user", "team"):
        return ()
    rt = RECORD_TYPES[kind]
    access = p.fields(kind)
    return tuple(n for n in parts_of(rt, rt.title_field) if access.can_read(n))


Refs = dict[str, set[int]]  # record type -> ids
Titles = dict[tuple[str, int], str]


def titles(p: Principal, wanted: Refs) -> Titles:
    """Titles of the ``wanted`` records ``p`` may read; unreadable ones are absent."""
    out: Titles = {}
    for kind, ids in wanted.items():
        ids = {i for i in ids if i is not None}
        if not ids or kind not in RECORD_TYPES:
            continue
        rt = RECORD_TYPES[kind]
        rows = db.session.execute(select(rt.model.id, title_column(p, kind)).where(
            rt.model.id.in_(ids), authz.scope(p, rt.model, "read")))
        out.update({(kind, i): t for i, t in rows})
    return out


def refs(*groups: Refs) -> Refs:
    """Several sets of wanted titles as one."""
    out: Refs = {}
    for group in groups:
        for kind, ids in group.items():
            out.setdefault(kind, set()).update(ids)
    return out


def link_refs(rows, fields) -> Refs:
    """The records the link fields among ``fields`` point at, in ``rows``."""
    out: Refs = {}
    for f in fields:
        if f.kind == "ref":
            out.setdefault(f.ref, set()).update(getattr(r, f.name) for r in rows)
    return out


def regarding_refs(activities) -> Refs:
    """The records ``activities`` are regarding."""
    out: Refs = {}
    for activity in activities:
        ref = activity.regarding_ref
        if ref:
            out.setdefault(ref[0], set()).add(ref[1])
    return out
