"""REST endpoints for email templates: list the caller's usable ones (the organization's and
their own), create, get, change, delete, and render one for a recipient and a regarding
record (unknown or secured placeholders come back as ``problems``, never as an error).
Services: ``server.crm.services.email_templates``."""
from __future__ import annotations

from flask import Blueprint, jsonify, url_for
from sqlalchemy import select

from server.crm.activities import REGARDING_TYPES
from server.crm.registry import RECORD_TYPES
from server.crm.services import email_templates as svc
from server.crm.templates import EmailTemplate, render
from server.db import db
from server.i18n import N_
from server.security import authz
from server.security.models import User
from server.web.api.common import ID, invalid, json_body, parse_ref, principal, query_args, \
    reject_unknown

FIELDS = {"name", "subject", "body_html", "organization"}
RECIPIENT_TYPES = ("user", "contact", "account", "lead")


def template_json(t: EmailTemplate) -> dict:
    return {"id": t.id, "name": t.name, "subject": t.subject, "body_html": t.body_html,
            "organization": t.user_id is None}


def _save(template: EmailTemplate | None):
    p = principal()
    data = json_body()
    reject_unknown(data, FIELDS)
    if template is not None and "organization" in data:
        raise invalid({"organization": N_("Whose template it is cannot change.")})
    for name in ("name", "subject", "body_html"):
        if name in data and not isinstance(data[name], str):
            raise invalid({name: N_("Must be text.")})
    if "organization" in data and not isinstance(data["organization"], bool):
        raise invalid({"organization": N_("Must be true or false.")})
    saved = svc.save_template(
        p, template, name=data.get("name", template.name if template else ""),
        subject=data.get("subject", template.subject if template else ""),
        body_html=data.get("body_html", template.body_html if template else ""),
        organization=bool(data.get("organization")))
    db.session.commit()
    return saved


def list_templates():
    query_args(set())
    return jsonify({"items": [template_json(t) for t in svc.usable_templates(principal())]})


def create_template():
    saved = _save(None)
    response = jsonify(template_json(saved))
    response.status_code = 201
    response.headers["Location"] = url_for("api.email_template_get", template_id=saved.id)
    return response


def get_template(template_id: int):
    query_args(set())
    return jsonify(template_json(svc.own_template(principal(), template_id)))


def update_template(template_id: int):
    return jsonify(template_json(_save(svc.own_template(principal(), template_id,
                                                        writing=True))))


def delete_template(template_id: int):
    db.session.delete(svc.own_template(principal(), template_id, writing=True))
    db.session.commit()
    return "", 204


def _readable(p, raw, name: str, kinds: tuple[str, ...]):
    """(kind, record) of a reference the caller may read; None for none given."""
    if raw is None:
        return None
    kind, ident = parse_ref(raw, name, kinds)
    model = User if kind == "user" else RECORD_TYPES[kind].model
    record = db.session.scalar(select(model).where(model.id == ident,
                                                   authz.scope(p, model, "read")))
    if record is None:
        raise invalid({name: N_("No such %(kind)s.", kind=kind.replace("_", " "))})
    return kind, record


def render_template_for(template_id: int):
    """``{"recipient"?: {type, id}, "regarding"?: {type, id}}`` → subject, HTML, problems."""
    p = principal()
    template = svc.own_template(p, template_id)
    data = json_body(optional=True)
    reject_unknown(data, {"recipient", "regarding"})
    recipient = _readable(p, data.get("recipient"), "recipient", RECIPIENT_TYPES)
    regarding = _readable(p, data.get("regarding"), "regarding", REGARDING_TYPES)
    out = render(template, svc.context(p, recipient=recipient, regarding=regarding))
    return jsonify({"subject": out.subject, "html_body": out.html, "problems": out.problems})


def register(bp: Blueprint) -> None:
    one = f"/email_templates/<{ID}:template_id>"
    rules = [
        ("/email_templates", "email_template_list", list_templates, ["GET"]),
        ("/email_templates", "email_template_create", create_template, ["POST"]),
        (one, "email_template_get", get_template, ["GET"]),
        (one, "email_template_update", update_template, ["PATCH"]),
        (one, "email_template_delete", delete_template, ["DELETE"]),
        (f"{one}/render", "email_template_render", render_template_for, ["POST"]),
    ]
    for rule, endpoint, view, methods in rules:
        bp.add_url_rule(rule, endpoint, view, methods=methods)
