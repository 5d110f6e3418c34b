"""Email templates and signatures: their tables, and rendering (pure). Which templates a
user may use and the values a template sees are ``server.crm.services.email_templates``.

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
from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db import db, utcnow
from server.i18n import N_

MAX_TEMPLATE = 100_000
FILTERS = ("default", "d", "upper", "lower", "title", "capitalize", "trim")
# What a template may contain: output, text, placeholders, conditions and the filters above.
ALLOWED_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Getattr,
                 nodes.Getitem, nodes.Const, nodes.If, nodes.Filter, nodes.CondExpr,
                 nodes.And, nodes.Or, nodes.Not, nodes.Compare, nodes.Operand, nodes.Concat)
ROOTS = ("recipient", "regarding", "sender")


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


class Fields(dict):
    """The text values a template may use under one name (``recipient``, ...)."""


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
        return None, [N_("The template is longer than %(count)s characters.", count=MAX_TEMPLATE)]
    try:
        tree = env.parse(source)
    except TemplateError as exc:
        if getattr(exc, "lineno", None):
            return None, [N_("The template cannot be read (line %(line)s): %(error)s.",
                             line=exc.lineno, error=exc.message)]
        return None, [N_("The template cannot be read: %(error)s.", error=exc.message)]
    problems: list[str] = []
    unknown: list[str] = []

    def walk(node) -> None:
        if not isinstance(node, ALLOWED_NODES):
            problems.append(N_("Templates may hold placeholders and conditions only, not "
                               "%(node)s.", node=type(node).__name__.lower()))
            return
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            problems.append(N_("The filter %(name)s is not available.", name=node.name))
        if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
            name = _placeholder(node)
            if name is None:
                problems.append(N_("Placeholders are written as {{ recipient.first_name }}."))
                return
            root, _, attr = name.partition(".")
            if root not in values or not attr or attr not in values[root]:
                unknown.append(name)
            return
        for child in node.iter_child_nodes():
            walk(child)

    walk(tree)
    if unknown:
        problems.append(N_("Unknown placeholders (or fields you may not read): %(names)s.",
                           names=", ".join("{{ %s }}" % n for n in dict.fromkeys(unknown))))
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
    problems = [N_("Subject: %(problem)s", problem=p) for p in check(subject, anything, _TEXT)[1]]
    return problems + [N_("Body: %(problem)s", problem=p)
                       for p in check(body_html, anything, _HTML)[1]]


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
            out.problems.extend(N_("Subject: %(problem)s", problem=p) if part == "subject"
                                else N_("Body: %(problem)s", problem=p) for p in problems)
            continue
        try:
            text = compiled.render(values)
        except Exception as exc:  # a sandboxed template must never break the page
            out.problems.append(N_("The subject could not be filled in: %(error)s", error=exc)
                                if part == "subject" else
                                N_("The body could not be filled in: %(error)s", error=exc))
            continue
        setattr(out, part, _LINE_BREAKS.sub(" ", text).strip()[:400] if part == "subject"
                else text)
    return out


