"""Writing and sending email from the CRM's pages: compose (new, from a record page, or a
draft), reply, reply all and forward from an email, templates applied before sending,
attachments within the organization's limit, type-ahead over the people and records the
user may read, Send and Retry, and the email's state as JSON for the page to follow live.

Drafts are made and changed by the REST API's own services (``activity_writes``: privileges,
field security, sanitized HTML, one line per header value) and sent by
``server.sync.admin.sending``; a mailbox that cannot send is said in words before anyone
writes. Every form posts with a CSRF token.
"""
from __future__ import annotations

from email.utils import getaddresses

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import or_, select

from server.crm.activities import REGARDING_TYPES, Email
from server.crm.models import Organization, Queue
from server.crm.registry import EMAIL_STATUS_LABELS, RECORD_TYPES, choice_label
from server.crm.services import email_templates as mail_templates
from server.crm.services.activity_actions import get_activity
from server.crm.services import records
from server.crm.services.resolution import resolve
from server.crm.services.titles import title_column
from server.crm.services.tracking import AttachmentContent, add_attachments
from server.crm.templates import render
from server.db import db
from server.errors import ServiceError
from server.security import authz
from server.security.models import User
from server.security.privileges import Depth
from server.sync.admin import sending
from server.sync.models import Mailbox
from server.web.api import activity_writes
from server.web.auth import current_principal, login_manager
from server.web.languages import localize, localize_fields

bp = Blueprint("compose", __name__)

ROLES = ("to", "cc", "bcc")
SUGGEST_KINDS = ("user", "contact", "account", "lead", "queue")
SUGGEST_LIMIT = 5


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


# -- what the page shows --------------------------------------------------------------------------

def _admin_link(p) -> str | None:
    if "sync_admin.mailboxes" in current_app.view_functions and \
            p.depth("mailbox", "write") > Depth.NONE:
        return url_for("sync_admin.mailboxes")
    return None


def _parse_regarding(raw: str | None):
    """``type:id`` of a record the user may read, else None."""
    kind, _colon, ident = (raw or "").partition(":")
    if kind not in REGARDING_TYPES or not ident.isdigit():
        return None
    rt = RECORD_TYPES[kind]
    record = db.session.scalar(select(rt.model).where(
        rt.model.id == int(ident), authz.scope(current_principal(), rt.model, "read")))
    return (kind, record) if record is not None else None


def _line(people) -> str:
    return ", ".join(f"{name} <{address}>" if name else address for name, address in people)


def _draft_form(email: Email) -> dict:
    out = {role: _line((x.name or "", x.address) for x in email.parties
                       if x.role == role and x.address) for role in ROLES}
    out.update(subject=email.subject or "", html_body=email.html_body or "")
    sender = sending.sender_of(email)
    if sender is not None and sender.party_ref in (("queue", sender.queue_id),
                                                  ("user", sender.user_id)):
        out["sender"] = "{}:{}".format(*sender.party_ref)
    return out


# -- whom the email is from ----------------------------------------------------------------------

def senders(p) -> list[dict]:
    """Whom the user may send as: themself and, with the "send email as another user"
    privilege, the queues they may read and the other active users that have a mailbox;
    each with the signature its new mail starts with."""
    out = [{"value": f"user:{p.user_id}", "label": f"{p.user.full_name} <{p.user.email}>",
            "kind": "user", "id": p.user_id}]
    if p.has("send_as_other_user"):
        for queue in db.session.scalars(select(Queue).join(Mailbox, Mailbox.queue_id == Queue.id)
                                        .where(authz.scope(p, Queue, "read"),
                                               Queue.is_active.is_(True))
                                        .order_by(Queue.name).distinct()):
            out.append({"value": f"queue:{queue.id}", "kind": "queue", "id": queue.id,
                        "label": f"{queue.name} <{queue.email}> (queue)" if queue.email
                        else f"{queue.name} (queue)"})
        for user in db.session.scalars(select(User).join(Mailbox, Mailbox.user_id == User.id)
                                       .where(User.is_active.is_(True), User.id != p.user_id)
                                       .order_by(User.full_name).distinct()):
            out.append({"value": f"user:{user.id}", "kind": "user", "id": user.id,
                        "label": f"{user.full_name} <{user.email}>"})
    for choice in out:
        choice["signature"] = signed(mail_templates.signature_of(
            **{f"{choice['kind']}_id": choice["id"]}))
    return out


def signed(signature: str) -> str:
    """A signature as the body carries it: marked (``title``, which the sanitizer keeps) so
    the page can swap it when the sender changes."""
    return f'<div title="Signature">{signature}</div>' if signature else ""


def _sender(raw: str | None, choices: list[dict]) -> tuple[dict, list[str]]:
    """The chosen sender among ``choices`` (default: the user), and a problem when the
    one asked for may not be used."""
    chosen = next((c for c in choices if c["value"] == raw), None)
    if chosen is None and raw and raw != choices[0]["value"]:
        return choices[0], [_("You may not send as that user or queue (it needs the 'Send "
                              "email as another user' privilege and a mailbox), so the email "
                              "is from you.")]
    return chosen or choices[0], []


def _render(p, *, form: dict, email: Email | None, regarding, errors=None, problems=(),
            status=200):
    choices = senders(p)
    sender, refused = _sender(form.get("sender"), choices)
    form["sender"] = sender["value"]
    ready = _readiness(p, sender)
    name = records.title(p, regarding[1]) if regarding else None  # as p may see it
    page = render_template(
        "compose/form.html", form=form, email=email, regarding=regarding, regarding_name=name,
        errors=localize_fields(errors), senders=choices, sender=sender,
        problems=[localize(problem) for problem in (*refused, *problems)],
        ready=ready, admin_link=_admin_link(p),
        templates=mail_templates.usable_templates(p),
        limit=db.session.get(Organization, 1).attachment_max_bytes)
    return page, status


def _readiness(p, sender: dict) -> sending.Readiness:
    """Can the chosen sender's mailbox send (said before anyone writes)?"""
    if sender["kind"] == "queue":
        box = db.session.scalar(select(Mailbox).where(Mailbox.queue_id == sender["id"])
                                .order_by(Mailbox.id).limit(1))
        return sending.readiness(box, "queue")
    whose = "you" if sender["id"] == p.user_id else "user"
    return sending.readiness(sending.user_mailbox(sender["id"]), whose)


# -- compose -----------------------------------------------------------------------------------

@bp.get("/compose")
def compose_new():
    """A new email; ``?regarding=contact:12`` prefills regarding and the record's readable
    address, ``?sender=queue:3`` sends it as a queue (a queue's page); the sender's
    signature starts the body."""
    p = current_principal()
    regarding = _parse_regarding(request.args.get("regarding"))
    form = {"to": "", "cc": "", "bcc": "", "subject": "", "html_body": "",
            "sender": request.args.get("sender", "")}
    if regarding is not None:
        kind, record = regarding
        addresses = records.emails(p, record)
        if addresses:
            form["to"] = _line([(records.title(p, record) or "", addresses[0])])
    sender = _sender(form["sender"], senders(p))[0]
    if sender["signature"]:
        form["html_body"] = f"<p><br></p>{sender['signature']}"
    return _render(p, form=form, email=None, regarding=regarding)


@bp.get("/compose/<int:activity_id>")
def compose_draft(activity_id: int):
    p = current_principal()
    email = _own_draft(p, activity_id)
    ref = email.regarding_ref
    regarding = _parse_regarding(f"{ref[0]}:{ref[1]}") if ref else None
    return _render(p, form=_draft_form(email), email=email, regarding=regarding)


def _own_draft(p, activity_id: int) -> Email:
    email = get_activity(current_principal(), activity_id)
    if not isinstance(email, Email) or email.status != "draft":
        abort(404)
    authz.require(p, "write", email)
    return email


def _parties(form) -> tuple[list[dict], dict[str, str]]:
    """Parties from the To/Cc/Bcc boxes ("Name <address>, other@example.com")."""
    parties, errors = [], {}
    for role in ROLES:
        raw = form.get(role, "")
        if any(ch in raw for ch in "\r\n"):
            errors[role] = _("One line only.")
            continue
        for name, address in getaddresses([raw]):
            if not address and not name:
                continue
            entry = {"role": role, "address": address or name}
            if name and address:
                entry["name"] = name
            parties.append(entry)
    return parties, errors


def _field_errors(exc: ServiceError, parties: list[dict]) -> dict[str, str]:
    """API field names (``parties[2].address``) as the form's boxes."""
    out = {}
    for name, message in (exc.fields or {}).items():
        if name.startswith("parties[") and "]" in name:
            index = int(name[len("parties["):name.index("]")])
            role = parties[index]["role"] if index < len(parties) else "to"
            shown = parties[index].get("address", "") if index < len(parties) else ""
            out[role] = f"{shown}: {localize(message)}" if shown else message
        elif name == "html_body":
            out["body"] = message
        else:
            out[name] = message
    return out or {"subject": exc.message}


def _files(limit: int) -> tuple[list[AttachmentContent], dict[str, str]]:
    items, errors = [], {}
    for upload in request.files.getlist("attachments"):
        if not upload or not upload.filename:
            continue
        content = upload.read(limit + 1)
        if len(content) > limit:
            errors["attachments"] = _("%(file)s is larger than the organization's limit of "
                                      "%(size)s MB.", file=upload.filename,
                                      size=limit // (1024 * 1024) or 1)
            continue
        items.append(AttachmentContent(upload.filename, upload.mimetype or
                                       "application/octet-stream", content, len(content)))
    return items, errors


@bp.post("/compose")
@bp.post("/compose/<int:activity_id>")
def compose_save(activity_id: int | None = None):
    """Save the draft, then (``action=send``) send it, or (``action=template``) fill the
    subject and body from a template without saving."""
    p = current_principal()
    email = _own_draft(p, activity_id) if activity_id is not None else None
    regarding = _parse_regarding(request.form.get("regarding"))
    form = {name: request.form.get(name, "") for name in (*ROLES, "subject", "html_body",
                                                          "sender")}
    action = request.form.get("action", "save")
    sender, refused = _sender(form["sender"], senders(p))
    if action == "template":
        form, problems = _apply_template(p, form, regarding, sender)
        return _render(p, form=form, email=email, regarding=regarding, problems=problems,
                       status=200 if not problems else 422)
    parties, errors = _parties(request.form)
    limit = db.session.get(Organization, 1).attachment_max_bytes
    files, file_errors = _files(limit)
    errors.update(file_errors)
    if refused:
        errors["sender"] = refused[0]
    if errors:
        return _render(p, form=form, email=email, regarding=regarding, errors=errors,
                       status=400)
    data = {"subject": form["subject"], "html_body": form["html_body"] or None,
            "parties": [{"role": "from", "record": {"type": sender["kind"], "id": sender["id"]}}]
            + parties}
    try:
        if email is None:
            data["type"] = "email"
            if regarding is not None:
                data["regarding"] = {"type": regarding[0], "id": regarding[1].id}
            email = activity_writes.create(p, data)
        else:
            activity_writes.update(p, email, data)
        add_attachments(email, files, limit)
    except ServiceError as exc:
        db.session.rollback()
        email = db.session.get(Email, activity_id) if activity_id is not None else None
        return _render(p, form=form, email=email, regarding=regarding,
                       errors=_field_errors(exc, parties),
                       status=exc.status if exc.status in (400, 403, 409, 422) else 400)
    db.session.commit()  # the draft is kept whatever happens to the sending
    if action != "send":
        flash(_("Draft saved."), "success")
        return redirect(url_for("compose.compose_draft", activity_id=email.id))
    try:
        sending.send(p, email)
    except ServiceError as exc:
        db.session.rollback()
        email = db.session.get(Email, email.id)
        errors = {"mailbox": exc.message} if isinstance(exc, sending.CannotSend) \
            else _field_errors(exc, parties)
        return _render(p, form=_draft_form(email), email=email, regarding=regarding,
                       errors=errors, status=exc.status)
    db.session.commit()
    flash(_("Sending…"), "success")
    return redirect(url_for("pages.activity_detail", activity_id=email.id))


def _apply_template(p, form: dict, regarding, sender: dict) -> tuple[dict, list[str]]:
    raw = request.form.get("template", "")
    template = next((t for t in mail_templates.usable_templates(p) if str(t.id) == raw), None)
    if template is None:
        return form, ["Choose a template."]
    recipient = None
    first = next((a for _name, a in getaddresses([form.get("to", "")]) if a), None)
    if first:
        recipient = _readable_record(p, first)
    values = mail_templates.context(p, recipient=recipient,
                                    regarding=(regarding[0], regarding[1]) if regarding else None)
    rendered = render(template, values)
    if rendered.problems:
        return form, rendered.problems
    body = rendered.html + (f"<p><br></p>{sender['signature']}" if sender["signature"] else "")
    return {**form, "subject": rendered.subject or form["subject"], "html_body": body}, []


def _readable_record(p, address: str):
    """The first record the user may read whose readable address is ``address``."""
    for match in resolve([address], user_id=p.user_id).get(address, []):
        model = User if match.record_type == "user" else RECORD_TYPES[match.record_type].model
        record = db.session.scalar(select(model).where(
            model.id == match.record_id, authz.scope(p, model, "read")))
        if record is not None and address.lower() in (
                a.lower() for a in records.emails(p, record)):
            return match.record_type, record
    return None


# -- reply, send, retry, state ------------------------------------------------------------------

@bp.post("/activities/<int:activity_id>/answer")
def answer(activity_id: int):
    p = current_principal()
    email = activity_writes.create_answer(p, get_activity(p, activity_id),
                                          request.form.get("mode"), me=sending.own_addresses(p))
    db.session.commit()
    return redirect(url_for("compose.compose_draft", activity_id=email.id))


@bp.post("/activities/<int:activity_id>/send")
def send(activity_id: int):
    """Send a draft, or Retry a failed email, from its page."""
    p = current_principal()
    sending.send(p, get_activity(p, activity_id))
    db.session.commit()
    flash(_("Sending…"), "success")
    return redirect(url_for("pages.activity_detail", activity_id=activity_id))


@bp.app_template_filter("email_status")
def status_label(status: str | None) -> str:
    """An email's sending state as the reader reads it: the one wording of each state for
    the page, the timeline and the live state (``send-state.js`` shows ``state_of``'s)."""
    return localize(choice_label(status, EMAIL_STATUS_LABELS))


def state_of(email: Email) -> dict:
    return {"status": email.status,
            "label": status_label(email.status),
            "sent_on": email.sent_on.isoformat() if email.sent_on else None,
            "error": email.error, "retry": email.status == "failed",
            "final": email.status not in ("pending_send", "sending")}


@bp.get("/activities/<int:activity_id>/send-state")
def send_state(activity_id: int):
    email = get_activity(current_principal(), activity_id)
    if not isinstance(email, Email):
        abort(404)
    return jsonify(state_of(email))


# -- type-ahead ----------------------------------------------------------------------------------

@bp.get("/compose/suggest")
def suggest():
    """People and records the user may read matching ``q``, with addresses they may read
    (a secured address is neither matched nor suggested)."""
    p = current_principal()
    q = (request.args.get("q") or "").strip()[:100]
    if len(q) < 2:
        return jsonify({"items": []})
    items = []
    for kind in SUGGEST_KINDS:
        if kind == "user":
            model, columns = User, [User.full_name, User.email]
        else:  # only what p may read is matched, sorted on or shown (no oracle)
            rt = RECORD_TYPES[kind]
            if p.depth(kind, "read") == Depth.NONE:
                continue
            access = p.fields(kind)
            model = rt.model
            columns = records.search_columns(p, rt) + [
                getattr(model, n) for n in rt.email_fields if access.can_read(n)]
        rows = db.session.scalars(select(model).where(
            authz.scope(p, model, "read"), model.is_active.is_(True),
            or_(*[c.icontains(q, autoescape=True) for c in columns]))
            .order_by(title_column(p, kind), model.id).limit(SUGGEST_LIMIT))
        for row in rows:
            name = records.title(p, row) or ""
            for address in records.emails(p, row)[:1]:
                items.append({"kind": kind, "name": name, "address": address,
                              "value": f"{name} <{address}>" if name else address})
    return jsonify({"items": items})


def init_app(app) -> None:
    app.register_blueprint(bp)
