"""REST endpoints for mailbox provisioning: forward mailboxes (list, create, get, change,
delete; the password write-only), a forwarding user's rule on their mail server (deploy,
check, remove) and bulk jobs (start one, read its progress and results), with their part of
the OpenAPI document. Services: ``server.sync.admin`` (mailboxes, forward_rules, jobs),
which check the privileges, as for the pages."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, url_for
from sqlalchemy import func, select

from server.db import db
from server.errors import NotFound
from server.i18n import N_
from server.security import authz
from server.sync.admin import forward_rules, jobs
from server.sync.admin import mailboxes as mailbox_admin
from server.sync.models import JOB_KINDS, Mailbox
from server.web.api.common import (ID, invalid, json_body, parse_int, principal, query_args,
                                   reject_unknown)

FORWARD_FIELDS = {"name", "email_address", "server_profile_id", "username", "password",
                  "delete_after_processing", "process_emails_after"}
RULE_ACTIONS = {"deploy": forward_rules.deploy_rule, "check": forward_rules.check_rule,
                "remove": forward_rules.remove_rule}


def forward_json(box: Mailbox) -> dict:
    return {"id": box.id, "name": box.name, "email_address": box.email_address,
            "server_profile_id": box.server_profile_id, "username": box.username,
            "has_password": box.password is not None,
            "delete_after_processing": box.delete_after_processing,
            "process_emails_after": box.process_emails_after.date().isoformat()
            if box.process_emails_after else None,
            "enabled": box.enabled, "email_approved": box.email_approved,
            "incoming_status": box.incoming_status}


def _form(data: dict[str, Any]) -> dict[str, str]:
    """A JSON body as the services' form values (checked for type first)."""
    reject_unknown(data, FORWARD_FIELDS)
    out: dict[str, str] = {}
    for name, value in data.items():
        if name == "delete_after_processing":
            if not isinstance(value, bool):
                raise invalid({name: N_("Must be true or false.")})
            out[name] = "on" if value else ""
        elif name == "server_profile_id":
            out[name] = str(parse_int(value, name)) if value is not None else ""
        elif value is None:
            out[name] = ""
        elif not isinstance(value, str):
            raise invalid({name: N_("Must be text.")})
        else:
            out[name] = value
    return out


def _forward(p, mailbox_id: int, privilege: str = "read") -> Mailbox:
    box = mailbox_admin.get_mailbox(p, mailbox_id, privilege)
    if not box.is_forward_mailbox:
        raise NotFound()
    return box


def list_forward():
    query_args(set())
    p = principal()
    boxes = db.session.scalars(select(Mailbox).where(
        Mailbox.is_forward_mailbox.is_(True), authz.scope(p, Mailbox, "read"))
        .order_by(func.lower(Mailbox.email_address))).all()
    return jsonify({"items": [forward_json(b) for b in boxes]})


def create_forward():
    p = principal()
    form = _form(json_body())
    box = mailbox_admin.create_mailbox(p, {**form, "owner_kind": "forward"})
    if form.get("username") or form.get("password"):
        mailbox_admin.update_mailbox(p, box, {**mailbox_admin.mailbox_form(box), **form})
    db.session.commit()
    response = jsonify(forward_json(box))
    response.status_code = 201
    response.headers["Location"] = url_for("api.forward_mailbox_get", mailbox_id=box.id)
    return response


def get_forward(mailbox_id: int):
    query_args(set())
    return jsonify(forward_json(_forward(principal(), mailbox_id)))


def update_forward(mailbox_id: int):
    p = principal()
    box = _forward(p, mailbox_id)
    current = {k: ("" if v is None else str(v)) for k, v in
               mailbox_admin.mailbox_form(box).items() if k in FORWARD_FIELDS}
    current["delete_after_processing"] = "on" if box.delete_after_processing else ""
    mailbox_admin.update_mailbox(p, box, {**current, **_form(json_body())})
    db.session.commit()
    return jsonify(forward_json(box))


def delete_forward(mailbox_id: int):
    p = principal()
    _forward(p, mailbox_id)
    mailbox_admin.delete_mailbox(p, mailbox_id)
    db.session.commit()
    return "", 204


def forward_rule(mailbox_id: int):
    p = principal()
    data = json_body()
    reject_unknown(data, {"action"})
    if data.get("action") not in RULE_ACTIONS:
        raise invalid({"action": N_("One of: %(choices)s.", choices=", ".join(RULE_ACTIONS))})
    box = mailbox_admin.get_mailbox(p, mailbox_id)
    result = RULE_ACTIONS[data["action"]](p, box)
    db.session.commit()
    return jsonify({"ok": result.ok, "message": result.message,
                    "status": box.forward_rule_status})


def start_job():
    p = principal()
    data = json_body()
    reject_unknown(data, {"kind", "mailbox_ids", "profile_id"})
    ids = data.get("mailbox_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) > jobs.MAX_SELECTION):
        raise invalid({"mailbox_ids": N_("A list of at most %(count)s ids.", count=jobs.MAX_SELECTION)})
    profile = data.get("profile_id")
    job = jobs.start(p, str(data.get("kind", "")),
                     mailbox_ids=[parse_int(i, "mailbox_ids") for i in ids or []] or None,
                     profile_id=parse_int(profile, "profile_id") if profile is not None else None)
    db.session.commit()
    response = jsonify(_job_json(*jobs.progress(p, job.id)))
    response.status_code = 201
    response.headers["Location"] = url_for("api.mailbox_job_get", job_id=job.id)
    return response


def _job_json(progress: jobs.Progress, items) -> dict:
    job = progress.job
    return {"id": job.id, "kind": job.kind, "description": job.description, "total": job.total,
            "pending": progress.pending, "done": progress.done, "failed": progress.failed,
            "skipped": progress.skipped, "percent": progress.percent,
            "finished": job.finished_on is not None,
            "items": [{"mailbox_id": i.mailbox_id, "email_address": i.email_address,
                       "status": i.status, "message": i.message} for i in items]}


def get_job(job_id: int):
    query_args(set())
    return jsonify(_job_json(*jobs.progress(principal(), job_id)))


def register(bp: Blueprint) -> None:
    one = f"/forward_mailboxes/<{ID}:mailbox_id>"
    for rule, endpoint, view, methods in (
            ("/forward_mailboxes", "forward_mailbox_list", list_forward, ["GET"]),
            ("/forward_mailboxes", "forward_mailbox_create", create_forward, ["POST"]),
            (one, "forward_mailbox_get", get_forward, ["GET"]),
            (one, "forward_mailbox_update", update_forward, ["PATCH"]),
            (one, "forward_mailbox_delete", delete_forward, ["DELETE"]),
            (f"/mailboxes/<{ID}:mailbox_id>/forward_rule", "forward_rule", forward_rule,
             ["POST"]),
            ("/mailbox_jobs", "mailbox_job_create", start_job, ["POST"]),
            (f"/mailbox_jobs/<{ID}:job_id>", "mailbox_job_get", get_job, ["GET"])):
        bp.add_url_rule(rule, endpoint, view, methods=methods)


# --------------------------------------------------------------------------- OpenAPI

def paths(op, ref, path_param) -> dict[str, dict]:
    tag = "Mailboxes"
    mid = [path_param("mailbox_id")]
    return {
        "/forward_mailboxes": {
            "get": op("forward_mailbox_list", "Forward mailboxes the caller may read", tag=tag,
                      schema=ref("ForwardMailboxList")),
            "post": op("forward_mailbox_create", "Create a forward mailbox (mailbox "
                       "administrators): it reads what users forward, and what their server "
                       "rules redirect, and tracks it for them", ok="201", tag=tag,
                       schema=ref("ForwardMailbox"), body=ref("ForwardMailboxInput"),
                       errors=("403", "422")),
        },
        "/forward_mailboxes/{mailbox_id}": {
            "parameters": mid,
            "get": op("forward_mailbox_get", "Get a forward mailbox", tag=tag,
                      schema=ref("ForwardMailbox"), errors=("404",)),
            "patch": op("forward_mailbox_update", "Change a forward mailbox (the password is "
                        "write-only; its connection changed means a new Test & Enable)",
                        tag=tag, schema=ref("ForwardMailbox"), body=ref("ForwardMailboxInput"),
                        errors=("403", "404", "422")),
            "delete": op("forward_mailbox_delete", "Delete a forward mailbox (what it tracked "
                         "stays)", ok="204", tag=tag, errors=("403", "404", "409")),
        },
        "/mailboxes/{mailbox_id}/forward_rule": {"parameters": mid, "post": op(
            "forward_rule", "Deploy, check or remove the rule on a forwarding user's mail "
            "server that sends a copy of their mail to the forward mailbox", tag=tag,
            schema=ref("ForwardRuleResult"), body=ref("ForwardRuleInput"),
            errors=("403", "404"))},
        "/mailbox_jobs": {"post": op(
            "mailbox_job_create", "Start a bulk job (approve, test_enable, apply_defaults) over "
            "chosen mailboxes or every mailbox of a profile; workers run it", ok="201",
            tag=tag, schema=ref("MailboxJob"), body=ref("MailboxJobInput"),
            errors=("403", "404"))},
        "/mailbox_jobs/{job_id}": {"parameters": [path_param("job_id")], "get": op(
            "mailbox_job_get", "A bulk job's progress and its result per mailbox", tag=tag,
            schema=ref("MailboxJob"), errors=("404",))},
    }


def schemas(ref) -> dict[str, dict]:
    text, flag, number = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}
    maybe = {"type": ["string", "null"]}
    return {
        "ForwardMailbox": {"type": "object", "properties": {
            "id": number, "name": text, "email_address": text,
            "server_profile_id": {"type": ["integer", "null"]}, "username": maybe,
            "has_password": flag, "delete_after_processing": flag,
            "process_emails_after": {"type": ["string", "null"], "format": "date"},
            "enabled": flag, "email_approved": flag, "incoming_status": text}},
        "ForwardMailboxList": {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": ref("ForwardMailbox")}}},
        "ForwardMailboxInput": {"type": "object", "additionalProperties": False, "properties": {
            "name": {"type": "string", "maxLength": 200},
            "email_address": {"type": "string", "maxLength": 320},
            "server_profile_id": {"type": ["integer", "null"]},
            "username": {"type": ["string", "null"], "maxLength": 320},
            "password": {"type": ["string", "null"], "writeOnly": True},
            "delete_after_processing": flag,
            "process_emails_after": {"type": ["string", "null"], "format": "date"}}},
        "ForwardRuleInput": {"type": "object", "required": ["action"],
                             "additionalProperties": False, "properties": {
                                 "action": {"enum": list(RULE_ACTIONS)}}},
        "ForwardRuleResult": {"type": "object", "properties": {
            "ok": flag, "message": text, "status": maybe}},
        "MailboxJobInput": {"type": "object", "required": ["kind"],
                            "additionalProperties": False, "properties": {
                                "kind": {"enum": list(JOB_KINDS)},
                                "mailbox_ids": {"type": "array", "items": number,
                                                "maxItems": jobs.MAX_SELECTION},
                                "profile_id": number}},
        "MailboxJob": {"type": "object", "properties": {
            "id": number, "kind": text, "description": text, "total": number,
            "pending": number, "done": number, "failed": number, "skipped": number,
            "percent": number, "finished": flag,
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "mailbox_id": {"type": ["integer", "null"]}, "email_address": text,
                "status": {"enum": ["pending", "done", "failed", "skipped"]},
                "message": maybe}}}}},
    }
