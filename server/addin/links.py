"""Links and names for the add-in's answers: URLs of the CRM's pages for a record or an
activity (built once per kind of link: a context call has dozens), record titles as the user
may see them, and the small formatting helpers the answers share."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app, has_request_context, request, url_for
from sqlalchemy import select

from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES
from server.crm.services import titles
from server.db import db
from server.security import authz
from server.security.authz import Principal


# -- links -------------------------------------------------------------------------------------

ID_MARK = "2147483647"  # stands for the id while a link's template is made


def _url(endpoint: str, id_name: str, ident: int, **values) -> str | None:
    """A link into the CRM's pages (None when the pages are not installed). ``url_for`` runs
    once per application, script root and kind of link; the id is put into that template
    (a context call has dozens of links)."""
    templates = current_app.extensions.setdefault("regarding_addin_links", {})
    key = (request.script_root if has_request_context() else None, endpoint, *values.values())
    template = templates.get(key, False)
    if template is False:
        url = (url_for(endpoint, **values, **{id_name: int(ID_MARK)})
               if endpoint in current_app.view_functions else None)
        template = templates[key] = url.split(ID_MARK) if url and url.count(ID_MARK) == 1 else url
    if template is None or isinstance(template, str):  # no pages, or an unexpected shape
        return url_for(endpoint, **values, **{id_name: ident}) if template else None
    return f"{template[0]}{ident}{template[1]}"


def record_url(kind: str, record_id: int) -> str | None:
    return _url("pages.record_detail", "record_id", record_id, type_name=kind) \
        if kind in RECORD_TYPES else None


def activity_url(activity_id: int) -> str | None:
    return _url("pages.activity_detail", "activity_id", activity_id)


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def money(value) -> str | None:
    return str(value) if value is not None else None


def organization() -> Organization:
    return db.session.get(Organization, 1)


def record_titles(p: Principal, wanted: dict[str, set[int]]) -> dict[tuple[str, int], str]:
    """Titles of records the user may read, one query per type."""
    out: dict[tuple[str, int], str] = {}
    for kind, ids in wanted.items():
        ids = {i for i in ids if i is not None}
        if not ids:
            continue
        rt = RECORD_TYPES[kind]
        rows = db.session.execute(select(rt.model.id, titles.title_column(p, kind)).where(
            rt.model.id.in_(ids), authz.scope(p, rt.model, "read")))
        out.update({(kind, i): t for i, t in rows})
    return out


def ref_json(kind: str, record_id: int, titles: dict[tuple[str, int], str]) -> dict[str, Any]:
    """``{"type", "id", "name", "url"}``; name and url are null when the user may not read it."""
    name = titles.get((kind, record_id))
    return {"type": kind, "id": record_id, "name": name,
            "url": record_url(kind, record_id) if name is not None else None}
