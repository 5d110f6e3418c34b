"""JSON shapes of records and activities, shared by the REST API and the add-in API.

Field security is applied here: a secured field the reader may not read is left out, not
nulled. References (a contact's account, an activity's regarding, parties, owners) are
embedded as ``{"id", "type", "name"}``, loaded for a whole page at once with one query per
referenced type, never one per row; ``name`` is null when the reader may not read the record.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import select

from server.crm.services import records, titles
from server.crm.activities import Attachment
from server.crm.services.records import SHARE_RIGHTS, visible_fields
from server.crm.registry import RECORD_TYPES, Field, RecordType, type_of
from server.db import db
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.security.models import RecordShare, Team, User

# -- what an activity looks like ---------------------------------------------------------------

ACTIVITY_TYPES = ("email", "appointment", "task", "phone_call")
ACTIVITY_STATES = ("open", "completed", "canceled")
ACTIVITY_PRIORITIES = ("low", "normal", "high")

COMMON_ACTIVITY_FIELDS: tuple[Field, ...] = (
    Field("subject", N_("Subject"), max_length=400),
    Field("description", N_("Description"), "text"),
    Field("state", N_("State"), "choice", choices=ACTIVITY_STATES),
    Field("priority", N_("Priority"), "choice", choices=ACTIVITY_PRIORITIES),
    Field("scheduled_start", N_("Start"), "datetime"),
    Field("scheduled_end", N_("Due"), "datetime"),
    Field("actual_end", N_("Ended"), "datetime"),
)
# Fields per activity type that callers may set.
ACTIVITY_TYPE_FIELDS: dict[str, tuple[Field, ...]] = {
    "email": (Field("direction", N_("Direction"), "choice", choices=("incoming", "outgoing")),
              Field("html_body", N_("HTML body"), "text"),
              Field("text_body", N_("Text body"), "text"),
              Field("message_id", N_("Message-ID"), max_length=998),
              Field("in_reply_to", N_("In-Reply-To"), max_length=998),
              Field("sent_on", N_("Sent"), "datetime"),
              Field("received_on", N_("Received"), "datetime")),
    "appointment": (Field("location", N_("Location"), max_length=200),
                    Field("is_all_day", N_("All day"), "bool"),
                    Field("online_meeting_url", N_("Online meeting"), "url", max_length=1000)),
    "task": (Field("percent_complete", N_("Percent complete"), "int"),
             Field("category", N_("Category"), max_length=80)),
    "phone_call": (Field("phone_number", N_("Phone number"), "phone", max_length=50),
                   Field("direction", N_("Direction"), "choice", choices=("incoming", "outgoing"))),
}
# Fields the server sets, shown but never written by callers.
ACTIVITY_READ_ONLY: dict[str, tuple[str, ...]] = {
    "email": ("status", "conversation_id", "tracking_token", "sender_address",
              "parent_activity_id", "correlation_method"),
    "appointment": ("global_object_id",),
    "task": (),
    "phone_call": (),
}
BODY_FIELDS = ("html_body", "text_body")  # left out of lists and timelines


def activity_fields(kind: str) -> tuple[Field, ...]:
    return COMMON_ACTIVITY_FIELDS + ACTIVITY_TYPE_FIELDS[kind]


# -- values ------------------------------------------------------------------------------------

def jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601 UTC (``Z``), dates as ISO dates, decimals as exact strings."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class Refs:
    """References wanted by a page of results, loaded with one query per type."""

    def __init__(self, p: Principal):
        self.p = p
        self.wanted: dict[str, set[int]] = defaultdict(set)
        self.names: dict[tuple[str, int], str] = {}
        self.loaded: dict[str, set[int]] = defaultdict(set)

    def want(self, kind: str | None, ident: int | None) -> None:
        if kind and ident is not None:
            self.wanted[kind].add(ident)

    def load(self) -> Refs:
        for kind, ids in self.wanted.items():
            missing = ids - self.loaded[kind]
            if not missing:
                continue
            model = User if kind == "user" else Team if kind == "team" else RECORD_TYPES[kind].model
            title = titles.title_column(self.p, kind)  # as the reader may see it
            rows = db.session.execute(select(model.id, title).where(
                model.id.in_(missing), authz.scope(self.p, model, "read")))
            for ident, name in rows:
                self.names[(kind, ident)] = name
            self.loaded[kind] |= missing
        return self

    def get(self, kind: str | None, ident: int | None) -> dict | None:
        if not kind or ident is None:
            return None
        return {"id": ident, "type": kind, "name": self.names.get((kind, ident))}


def _owner_ref(row) -> tuple[str, int | None]:
    if row.owner_user_id is not None:
        return "user", row.owner_user_id
    return "team", row.owner_team_id


def _want_audit(refs: Refs, row) -> None:
    refs.want(*_owner_ref(row))
    refs.want("user", row.created_by_id)
    refs.want("user", row.modified_by_id)


def _audit_json(refs: Refs, row) -> dict[str, Any]:
    return {"owner": refs.get(*_owner_ref(row)),
            "owning_business_unit_id": row.owning_business_unit_id,
            "created_on": jsonable(row.created_on), "modified_on": jsonable(row.modified_on),
            "created_by": refs.get("user", row.created_by_id),
            "modified_by": refs.get("user", row.modified_by_id)}


def ref_name(field_name: str) -> str:
    """Where a ref field's embedded record goes: ``parent_account_id`` → ``parent_account``."""
    return field_name[:-3] if field_name.endswith("_id") else f"{field_name}_ref"


# -- records -----------------------------------------------------------------------------------

def records_json(p: Principal, rt: RecordType, rows: Iterable) -> list[dict[str, Any]]:
    """A page of records of one type as JSON, references loaded in one query per type."""
    rows = list(rows)
    fields = visible_fields(p, rt)
    refs = Refs(p)
    for row in rows:
        _want_audit(refs, row)
        for f in fields:
            if f.kind == "ref":
                refs.want(f.ref, getattr(row, f.name))
    refs.load()
    derived_name = rt.title_field not in rt.field_names  # a person's full name
    out = []
    for row in rows:
        item: dict[str, Any] = {"id": row.id, "type": rt.name}
        if derived_name:
            item[rt.title_field] = records.field_value(p, row, rt.title_field)
        for f in fields:
            value = getattr(row, f.name)
            item[f.name] = jsonable(value)
            if f.kind == "ref":
                item[ref_name(f.name)] = refs.get(f.ref, value)
        item["is_active"] = row.is_active
        item.update(_audit_json(refs, row))
        out.append(item)
    return out


def record_json(p: Principal, record) -> dict[str, Any]:
    return records_json(p, type_of(record), [record])[0]


def shares_json(p: Principal, shares: Iterable[RecordShare]) -> list[dict[str, Any]]:
    shares = list(shares)
    refs = Refs(p)
    for s in shares:
        refs.want("user" if s.user_id else "team", s.user_id or s.team_id)
        refs.want("user", s.granted_by_id)
    refs.load()
    return [{"id": s.id,
             "principal": refs.get("user" if s.user_id else "team", s.user_id or s.team_id),
             "rights": [r for r in SHARE_RIGHTS if getattr(s, authz.SHARE_FLAGS[r])],
             "granted_by": refs.get("user", s.granted_by_id),
             "created_on": jsonable(s.created_on)} for s in shares]


# -- activities --------------------------------------------------------------------------------

def attachment_json(a) -> dict[str, Any]:
    return {"id": a.id, "activity_id": a.activity_id, "filename": a.filename,
            "content_type": a.content_type, "size": a.size, "is_inline": a.is_inline,
            "content_id": a.content_id, "content_omitted": a.content_omitted}


def attachments_of(activity_ids: list[int]) -> dict[int, list[Attachment]]:
    """Attachment metadata (never the content) of many activities in one query."""
    out: dict[int, list] = defaultdict(list)
    if not activity_ids:
        return out
    rows = db.session.execute(
        select(Attachment.id, Attachment.activity_id, Attachment.filename,
               Attachment.content_type, Attachment.size, Attachment.is_inline,
               Attachment.content_id, Attachment.content_omitted)
        .where(Attachment.activity_id.in_(activity_ids)).order_by(Attachment.id))
    for row in rows:
        out[row.activity_id].append(row)
    return out


def activities_json(p: Principal, rows: Iterable, *, detail: bool = False) -> list[dict[str, Any]]:
    """A page of activities (any types) as JSON. Parties should be loaded with the rows
    (``selectinload``); bodies are included only in ``detail``."""
    rows = list(rows)
    access = p.fields("activity")
    refs = Refs(p)
    for row in rows:
        _want_audit(refs, row)
        refs.want(*(row.regarding_ref or (None, None)))
        for party in row.parties:
            refs.want(*(party.party_ref or (None, None)))
    refs.load()
    files = attachments_of([r.id for r in rows])
    out = []
    for row in rows:
        kind = row.activity_type
        item: dict[str, Any] = {"id": row.id, "type": kind}
        names = [f.name for f in activity_fields(kind)] + list(ACTIVITY_READ_ONLY[kind])
        for name in names:
            if (name in BODY_FIELDS and not detail) or not access.can_read(name):
                continue
            item[name] = jsonable(getattr(row, name))
        item["occurred_on"] = jsonable(row.occurred_on)
        if access.can_read("regarding"):
            item["regarding"] = refs.get(*(row.regarding_ref or (None, None)))
        item["parties"] = [{"id": party.id, "role": party.role, "address": party.address,
                            "name": party.name,
                            "record": refs.get(*(party.party_ref or (None, None)))}
                           for party in row.parties]
        item["attachments"] = [attachment_json(a) for a in files.get(row.id, [])]
        item.update(_audit_json(refs, row))
        out.append(item)
    return out


def activity_json(p: Principal, activity, *, detail: bool = True) -> dict[str, Any]:
    return activities_json(p, [activity], detail=detail)[0]
