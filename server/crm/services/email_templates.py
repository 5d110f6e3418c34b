"""Email templates and signatures as services: the values a template sees (the fields of
the recipient, the regarding record and the sender that the sender may read, as text), the
templates a user may use, and saving templates and signatures with their rules. Rendering
and the tables are ``server.crm.templates``."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from server.crm.html import sanitize_html
from server.crm.registry import RECORD_TYPES
from server.crm.services.records import emails, field_value, title, visible_fields
from server.crm.templates import EmailTemplate, Fields, Signature, form_problems
from server.db import db
from server.errors import Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.security.models import User

# Other names a field is known by in templates, per record type.
ALIASES = {"contact": {"account": "parent_account"}, "opportunity": {"account": "customer_account",
                                                                     "contact": "customer_contact"},
           "case": {"account": "customer_account", "contact": "customer_contact",
                    "case_number": "ticket_number", "number": "ticket_number"},
           "lead": {"account": "company_name"}, "account": {"number": "account_number"}}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def record_fields(p: Principal, kind: str, record) -> Fields:
    """The fields of ``record`` that ``p`` may read, as text; references as the readable
    referenced record's name; plus ``name``, ``email``, ``owner`` and the type's aliases."""
    if kind == "user":
        return Fields(name=record.full_name, first_name=record.first_name or "",
                      last_name=record.last_name or "", email=record.email,
                      job_title=record.job_title or "")
    rt = RECORD_TYPES[kind]
    out = Fields()
    for f in visible_fields(p, rt):
        value = field_value(p, record, f.name)  # a derived value of readable parts only
        if f.kind == "ref":
            target_rt = RECORD_TYPES[f.ref]
            target = db.session.scalar(select(target_rt.model).where(
                target_rt.model.id == value, authz.scope(p, target_rt.model, "read"))) \
                if value is not None else None
            out[f.name.removesuffix("_id")] = _text(title(p, target)) if target is not None else ""
        else:
            out[f.name] = _text(value)
    out["name"] = _text(title(p, record))
    addresses = emails(p, record)
    out["email"] = addresses[0] if addresses else ""
    owner = record.owner_user
    out["owner"] = owner.full_name if owner is not None else ""
    for alias, source in ALIASES.get(kind, {}).items():
        if source in out:
            out[alias] = out[source]
    return out


def context(p: Principal, *, recipient: tuple[str, Any] | None = None,
            regarding: tuple[str, Any] | None = None, sender: User | None = None) -> dict:
    """The values for a template: each of ``recipient`` and ``regarding`` is (kind, record)."""
    out = {"recipient": Fields(), "regarding": Fields(),
           "sender": record_fields(p, "user", sender or p.user)}
    if recipient is not None:
        out["recipient"] = record_fields(p, *recipient)
    if regarding is not None:
        out["regarding"] = record_fields(p, *regarding)
    return out


# -- which templates and signatures ----------------------------------------------------------------

def usable_templates(p: Principal) -> list[EmailTemplate]:
    """The organization's templates and the user's own, by name."""
    return list(db.session.scalars(
        select(EmailTemplate).where((EmailTemplate.user_id.is_(None))
                                    | (EmailTemplate.user_id == p.user_id))
        .order_by(EmailTemplate.name, EmailTemplate.id)))


def save_template(p: Principal, template: EmailTemplate | None, *, name: str, subject: str,
                  body_html: str, organization: bool) -> EmailTemplate:
    """Create or change a template: the user's own, or (with write on the organization)
    the organization's. Invalid lists what is wrong; the body is stored sanitized."""
    target_org = template.user_id is None if template is not None else organization
    if target_org:
        authz.require_table(p, "organization", "write")
    elif template is not None and template.user_id != p.user_id:
        raise Invalid(N_("This is not your template."))
    errors = {}
    name, subject = (name or "").strip(), (subject or "").strip()
    if not name or len(name) > 200:
        errors["name"] = N_("A name of 1 to 200 characters.")
    if len(subject) > 400 or any(ch in subject for ch in "\r\n"):
        errors["subject"] = N_("One line of at most 400 characters.")
    problems = form_problems(subject, body_html or "")
    if problems:
        errors["body_html"] = " ".join(problems)
    if errors:
        raise Invalid(N_("The template is not valid."), errors)
    if template is None:
        template = EmailTemplate(user_id=None if target_org else p.user_id,
                                 created_by_id=p.user_id)
        db.session.add(template)
    template.name, template.subject = name, subject
    template.body_html = sanitize_html(body_html or "")
    db.session.flush()
    return template


def own_template(p: Principal, template_id: int, *, writing: bool = False) -> EmailTemplate:
    """A template the user may use (and, ``writing``, change)."""
    template = db.session.get(EmailTemplate, template_id)
    if template is None or template.user_id not in (None, p.user_id):
        raise NotFound()
    if writing and template.user_id is None:
        authz.require_table(p, "organization", "write")
    return template


def save_signature(*, user_id: int | None = None, queue_id: int | None = None,
                   body_html: str) -> Signature:
    """Set a user's or a queue's signature (the caller checks who may)."""
    condition = Signature.queue_id == queue_id if queue_id is not None \
        else Signature.user_id == user_id
    row = db.session.scalar(select(Signature).where(condition))
    if row is None:
        row = Signature(user_id=None if queue_id is not None else user_id, queue_id=queue_id)
        db.session.add(row)
    row.body_html = sanitize_html(body_html or "")
    db.session.flush()
    return row


def signature_of(*, user_id: int | None = None, queue_id: int | None = None) -> str:
    if queue_id is not None:
        condition = Signature.queue_id == queue_id
    else:
        condition = Signature.user_id == user_id
    return db.session.scalar(select(Signature.body_html).where(condition)) or ""
