"""Titles of linked records, loaded once per page: which records a page's rows link to or
are regarding, and their titles for the reader, one query per record type however many rows
a page shows. A record the reader may not read has no title (pages show it as restricted).
"""
from __future__ import annotations

from sqlalchemy import select

from server.crm.registry import RECORD_TYPES, RecordType
from server.db import db
from server.security import authz
from server.security.authz import Principal


def title_column(rt: RecordType):
    return getattr(rt.model, rt.title_field)


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
        rows = db.session.execute(select(rt.model.id, title_column(rt)).where(
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
