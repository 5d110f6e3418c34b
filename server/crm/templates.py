"""Email templates and signatures: stored per organization and per user (signatures also per
queue), and rendered with placeholders from the recipient, the regarding record and the
sender.

A template is Jinja2 rendered in a ``SandboxedEnvironment`` that sees only plain text values:
the fields of each record the sender may read (field security applied, references shown as
the referenced record's name when readable), never an object. Only placeholders
(``{{ recipient.first_name }}``), conditions (``{% if %}``) and a few text filters are
allowed; every placeholder is checked before rendering, so an unknown or secured one is
reported by name, and rendering never raises: problems come back as sentences.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from server.crm.html import sanitize_html
from server.crm.records import readable_addresses, visible_fields
from server.crm.registry import RECORD_TYPES
from server.db import db, utcnow
from server.errors import Invalid, NotFound
from server.security import authz
from server.security.authz import Principal
from server.security.models import User

MAX_TEMPLATE = 100_000
FILTERS = ("default", "d", "upper", "lower", "title", "capitalize", "trim")
# What a template may contain: output, text, placeholders, conditions and the filters above.
ALLOWED_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Getattr,
                 nodes.Getitem, nodes.Const, nodes.If, nodes.Filter, nodes.CondExpr,
                 nodes.And, nodes.Or, nodes.Not, nodes.Compare, nodes.Operand, nodes.Concat)
ROOTS = ("recipient", "regarding", "sender")
# Other names a field is known by in templates, per record type.
ALIASES = {"contact": {"account": "parent_account"}, "opportunity": {"account": "customer_account",
                                                                     "contact": "customer_contact"},
           "case": {"account": "customer_account", "contact": "customer_contact",
                    "case_number": "ticket_number", "number": "ticket_number"},
           "lead": {"account": "company_name"}, "account": {"number": "account_number"}}


class EmailTemplate(db.Model):
    """An email template: the organization's (``user_id`` None) or one user's own."""
    __tablename__ = "email_template"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(400), default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"),
                                                index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_on: Mapped[datetime] = mapped_column(default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Signature(db.Model):
    """The signature of a user, or of a queue (used when sending as the queue)."""
    __tablename__ = "email_signature"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"),
                                                unique=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"),
                                                 unique=True)
    body_html: Mapped[str] = mapped_column(Text, default="")
    modified_on: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# -- what a template sees -----------------------------------------------------------------------

class Fields(dict):
    """The text values a template may use under one name (``recipient``, ...)."""


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
        value = getattr(record, f.name)
        if f.kind == "ref":
            target_rt = RECORD_TYPES[f.ref]
            target = db.session.scalar(select(target_rt.model).where(
                target_rt.model.id == value, authz.scope(p, target_rt.model, "read"))) \
                if value is not None else None
            out[f.name.removesuffix("_id")] = _text(getattr(target, target_rt.title_field)) \
                if target is not None else ""
        else:
            out[f.name] = _text(value)
    if p.fields(kind).can_read(rt.title_field):
        out["name"] = _text(getattr(record, rt.title_field))
    addresses = readable_addresses(p, kind, record)
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


# -- checking and rendering ----------------------------------------------------------------------

class _Env(SandboxedEnvironment):
    """Looks up nothing but the keys of ``Fields``: no attribute of any object."""

    def getattr(self, obj, attribute):
        if isinstance(obj, Fields) and attribute in obj:
            return obj[attribute]
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj, argument):
        return self.getattr(obj, argument) if isinstance(argument, str) else \
            self.undefined(obj=obj, name=str(argument))


def _environment(autoescape: bool) -> _Env:
    env = _Env(autoescape=autoescape)
    env.filters = {name: env.filters[name] for name in FILTERS}
    env.tests = {}
    env.globals = {}
    return env


_HTML, _TEXT = _environment(True), _environment(False)


def _placeholder(node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return f"{node.node.name}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) \
            and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return f"{node.node.name}.{node.arg.value}"
    return None


def check(source: str, values: dict, env: _Env = _HTML) -> tuple[Any, list[str]]:
    """The compiled template and the problems found (unknown placeholders, syntax, anything
    beyond placeholders and conditions). Problems mean no compiled template."""
    if len(source) > MAX_TEMPLATE:
        return None, [f"The template is longer than {MAX_TEMPLATE} characters."]
    try:
        tree = env.parse(source)
    except TemplateError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        return None, [f"The template cannot be read{line}: {exc.message}."]
    problems: list[str] = []
    unknown: list[str] = []

    def walk(node) -> None:
        if not isinstance(node, ALLOWED_NODES):
            problems.append(f"Templates may hold placeholders and conditions only, not "
                            f"{type(node).__name__.lower()}.")
            return
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            problems.append(f"The filter {node.name} is not available.")
        if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
            name = _placeholder(node)
            if name is None:
                problems.append("Placeholders are written as {{ recipient.first_name }}.")
                return
            root, _, attr = name.partition(".")
            if root not in values or not attr or attr not in values[root]:
                unknown.append(name)
            return
        for child in node.iter_child_nodes():
            walk(child)

    walk(tree)
    if unknown:
        problems.append("Unknown placeholders (or fields you may not read): "
                        + ", ".join("{{ %s }}" % n for n in dict.fromkeys(unknown)) + ".")
    if problems:
        return None, list(dict.fromkeys(problems))
    return env.from_string(tree), []


class _AnyFields(Fields):
    """Every field name: checking a template's form before any record is known."""

    def __contains__(self, key) -> bool:
        return True


def form_problems(subject: str, body_html: str) -> list[str]:
    """What is wrong with a template whatever record it is used with (syntax, anything
    beyond placeholders and conditions, names other than recipient, regarding, sender)."""
    anything = {root: _AnyFields() for root in ROOTS}
    problems = [f"Subject: {p}" for p in check(subject, anything, _TEXT)[1]]
    return problems + [f"Body: {p}" for p in check(body_html, anything, _HTML)[1]]


@dataclass
class Rendered:
    subject: str = ""
    html: str = ""
    problems: list[str] = field(default_factory=list)


_LINE_BREAKS = re.compile(r"\s*[\r\n\x85\u2028\u2029]+\s*")


def render(template: EmailTemplate, values: dict) -> Rendered:
    """The template's subject (one line) and HTML body with ``values``; never raises."""
    out = Rendered()
    for part, source, env in (("subject", template.subject or "", _TEXT),
                              ("html", template.body_html or "", _HTML)):
        compiled, problems = check(source, values, env)
        if problems:
            out.problems.extend(f"{'Subject' if part == 'subject' else 'Body'}: {p}"
                                for p in problems)
            continue
        try:
            text = compiled.render(values)
        except Exception as exc:  # a sandboxed template must never break the page
            out.problems.append(f"The {part} could not be filled in: {exc}")
            continue
        setattr(out, part, _LINE_BREAKS.sub(" ", text).strip()[:400] if part == "subject"
                else text)
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
        raise Invalid("This is not your template.")
    errors = {}
    name, subject = (name or "").strip(), (subject or "").strip()
    if not name or len(name) > 200:
        errors["name"] = "A name of 1 to 200 characters."
    if len(subject) > 400 or any(ch in subject for ch in "\r\n"):
        errors["subject"] = "One line of at most 400 characters."
    problems = form_problems(subject, body_html or "")
    if problems:
        errors["body_html"] = " ".join(problems)
    if errors:
        raise Invalid("The template is not valid.", errors)
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
