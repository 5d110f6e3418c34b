"""REST endpoints for activities: list (scoped, filtered, newest first), create, get, update,
delete, send an email (``server.sync.admin.sending``), reply to or forward one, set or clear what an activity is
regarding, and its attachments."""
from __future__ import annotations


from flask import Blueprint, jsonify, url_for
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload, undefer, with_polymorphic

from server.crm.services import timeline as timelines
from server.crm.services import tracking
from server.crm.activities import REGARDING_COLUMNS, REGARDING_TYPES, Activity, Attachment
from server.db import db
from server.errors import NotFound
from server.i18n import N_
from server.security import authz
from server.sync.admin import sending
from server.web.api import activity_writes
from server.crm.services.details import attachment_bytes
from server.web.attachments import download_response
from server.web.api.common import (ID, check_timeline_cursor, invalid, json_body, page_size,
                                   parse_ref, principal, query_args, reject_unknown)
from server.web.serialize import (ACTIVITY_STATES, ACTIVITY_TYPES, activities_json,
                                  activity_json, attachment_json)

AnyActivity = with_polymorphic(Activity, "*")
MAX_SUBJECT_QUERY = 200


class ContentOmitted(NotFound):
    """The attachment's content was not kept (it was over the size limit)."""
    code = "content_omitted"


def load_activity(activity_id: int):
    """One activity the caller may read, as its own type, with its parties."""
    activity = db.session.scalar(
        select(AnyActivity).where(AnyActivity.id == activity_id,
                                  authz.scope(principal(), Activity, "read"))
        .options(selectinload(AnyActivity.parties)))
    if activity is None:
        raise NotFound()
    return activity


def list_activities():
    p = principal()
    args = query_args({"type", "state", "regarding", "q", "cursor", "page_size"}, multi={"type"})
    query = (select(AnyActivity).where(authz.scope(p, Activity, "read"))
             .options(selectinload(AnyActivity.parties))
             .order_by(AnyActivity.occurred_on.desc(), AnyActivity.id.desc()))
    types = tuple(t for raw in args.get("type", []) for t in raw.split(",") if t)
    if any(t not in ACTIVITY_TYPES for t in types):
        raise invalid({"type": N_("Activity types are: %(choices)s.", choices=", ".join(ACTIVITY_TYPES))})
    if types:
        query = query.where(AnyActivity.activity_type.in_(types))
    if "state" in args:
        if args["state"] not in ACTIVITY_STATES:
            raise invalid({"state": N_("Must be one of: %(choices)s.", choices=", ".join(ACTIVITY_STATES))})
        query = query.where(AnyActivity.state == args["state"])
    if "regarding" in args:
        if args["regarding"] == "none":
            query = query.where(*(getattr(AnyActivity, c).is_(None)
                                  for c in REGARDING_COLUMNS.values()))
        else:
            kind, ident = parse_ref(args["regarding"], "regarding", REGARDING_TYPES)
            query = query.where(getattr(AnyActivity, REGARDING_COLUMNS[kind]) == ident)
    if args.get("q", "").strip():
        q = args["q"].strip()
        if len(q) > MAX_SUBJECT_QUERY:
            raise invalid({"q": N_("At most %(count)s characters.", count=MAX_SUBJECT_QUERY)})
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(AnyActivity.subject.ilike(pattern, escape="\\"))
    if args.get("cursor"):
        at, ident = check_timeline_cursor(args["cursor"])
        query = query.where(or_(AnyActivity.occurred_on < at,
                                and_(AnyActivity.occurred_on == at, AnyActivity.id < ident)))
    limit = page_size(args)
    rows = list(db.session.scalars(query.limit(limit + 1)).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify({"items": activities_json(p, rows),
                    "next": timelines.encode_cursor(rows[-1]) if more and rows else None})


def create_activity():
    p = principal()
    activity = activity_writes.create(p, json_body())
    db.session.commit()
    response = jsonify(activity_json(p, load_activity(activity.id)))
    response.status_code = 201
    response.headers["Location"] = url_for("api.activity_get", activity_id=activity.id)
    return response


def get_activity(activity_id: int):
    query_args(set())
    return jsonify(activity_json(principal(), load_activity(activity_id)))


def update_activity(activity_id: int):
    p = principal()
    activity = load_activity(activity_id)
    activity_writes.update(p, activity, json_body())
    db.session.commit()
    return jsonify(activity_json(p, load_activity(activity_id)))


def delete_activity(activity_id: int):
    activity_writes.delete(principal(), load_activity(activity_id))
    db.session.commit()
    return "", 204


def send_activity(activity_id: int):
    """POST (no body, or ``{}``): a draft email is sent, a failed one sent again."""
    p = principal()
    activity = load_activity(activity_id)
    reject_unknown(json_body(optional=True), set())
    sending.send(p, activity)
    db.session.commit()
    return jsonify(activity_json(p, load_activity(activity_id)))


def answer_activity(activity_id: int):
    """POST ``{"mode": "reply" | "reply_all" | "forward"}``: a new draft answering an email."""
    p = principal()
    data = json_body()
    reject_unknown(data, {"mode"})
    email = activity_writes.create_answer(p, load_activity(activity_id), data.get("mode"),
                                          me=sending.own_addresses(p))
    db.session.commit()
    response = jsonify(activity_json(p, load_activity(email.id)))
    response.status_code = 201
    response.headers["Location"] = url_for("api.activity_get", activity_id=email.id)
    return response


def set_regarding(activity_id: int):
    """PUT ``{"regarding": {"type", "id"}}`` or ``{"regarding": null}``: write on the activity;
    to set it also append on the activity and append-to on the record."""
    p = principal()
    activity = load_activity(activity_id)
    data = json_body()
    reject_unknown(data, {"regarding"})
    if "regarding" not in data:
        raise invalid({"regarding": 'This field is required (null clears it).'})
    target = None
    if data["regarding"] is not None:
        authz.require(p, "write", activity)
        kind, record = activity_writes.regarding_target(p, data["regarding"])
        target = (kind, record.id)
    tracking.set_regarding(p, activity, target)
    db.session.commit()
    return jsonify(activity_json(p, load_activity(activity_id)))


def list_attachments(activity_id: int):
    query_args(set())
    activity = load_activity(activity_id)
    rows = db.session.scalars(select(Attachment).where(Attachment.activity_id == activity.id)
                              .order_by(Attachment.id))
    return jsonify({"items": [attachment_json(a) for a in rows]})


def download_attachment(activity_id: int, attachment_id: int):
    """The attachment's bytes, always as a download (never rendered by a browser)."""
    query_args(set())
    activity = load_activity(activity_id)
    attachment = db.session.scalar(
        select(Attachment).where(Attachment.id == attachment_id,
                                 Attachment.activity_id == activity.id)
        .options(undefer(Attachment.content)))
    if attachment is None:
        raise NotFound()
    if attachment.content_omitted:
        raise ContentOmitted()
    data = attachment_bytes(attachment)
    if data is None:
        raise NotFound(N_("The attachment's file is missing."))
    return download_response(attachment, data)


def register(bp: Blueprint) -> None:
    rules = [
        ("/activities", "activity_list", list_activities, ["GET"]),
        ("/activities", "activity_create", create_activity, ["POST"]),
        (f"/activities/<{ID}:activity_id>", "activity_get", get_activity, ["GET"]),
        (f"/activities/<{ID}:activity_id>", "activity_update", update_activity, ["PATCH"]),
        (f"/activities/<{ID}:activity_id>", "activity_delete", delete_activity, ["DELETE"]),
        (f"/activities/<{ID}:activity_id>/send", "activity_send", send_activity, ["POST"]),
        (f"/activities/<{ID}:activity_id>/reply", "activity_reply", answer_activity, ["POST"]),
        (f"/activities/<{ID}:activity_id>/regarding", "activity_regarding", set_regarding, ["PUT"]),
        (f"/activities/<{ID}:activity_id>/attachments", "activity_attachments", list_attachments,
         ["GET"]),
        (f"/activities/<{ID}:activity_id>/attachments/<{ID}:attachment_id>", "activity_attachment",
         download_attachment, ["GET"]),
    ]
    for rule, endpoint, view, methods in rules:
        bp.add_url_rule(rule, endpoint, view, methods=methods)
