"""A queue's email-to-case rules as a service for the admin page and the API: list them in
order, create, change, move and delete one, with every value checked (each condition by its
own class in ``server.sync.mail.case_rules``) and a clear sentence per wrong field.

Reading a queue's rules needs read on the queue; changing them needs write on it (the
administrator's and the queue owner's right, as in Dynamics). Callers commit.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from server.crm.models import Queue
from server.crm.queues import ON_RESOLVED, PRIORITIES, ROUTINGS, CaseRule
from server.crm.templates import EmailTemplate
from server.db import db
from server.errors import Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.security.models import Team, User
from server.sync.mail.case_rules import CONDITIONS

__all__ = ["FIELDS", "delete_rule", "get_rule", "rule_json", "rules_of", "save_rule"]

FIELDS = ("name", "enabled", "position", "conditions", "create_contact", "priority", "routing",
          "route_user_id", "route_team_id", "on_resolved", "resolved_window_days",
          "acknowledge", "ack_template_id", "ack_per_sender_per_day")
MAX_CONDITIONS = 20


def rules_of(p: Principal, queue_id: int) -> tuple[Queue, list[CaseRule]]:
    queue = authz.get(p, Queue, queue_id)
    return queue, list(db.session.scalars(select(CaseRule).where(CaseRule.queue_id == queue.id)
                                          .order_by(CaseRule.position, CaseRule.id)))


def get_rule(p: Principal, rule_id: int, *, writing: bool = False) -> CaseRule:
    rule = db.session.get(CaseRule, rule_id)
    if rule is None:
        raise NotFound()
    authz.require(p, "write" if writing else "read", rule.queue)
    return rule


def rule_json(rule: CaseRule) -> dict:
    return {"id": rule.id, "queue_id": rule.queue_id,
            **{name: getattr(rule, name) for name in FIELDS}}


def _conditions(raw: Any) -> list[dict]:
    if not isinstance(raw, list) or len(raw) > MAX_CONDITIONS:
        raise ValueError(f"A list of at most {MAX_CONDITIONS} conditions.")
    out = []
    for entry in raw:
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in CONDITIONS or set(entry) - {"kind", "value"}:
            raise ValueError("Each condition is {kind, value?} with kind one of "
                             + ", ".join(CONDITIONS) + ".")
        value = entry.get("value") or ""
        if not isinstance(value, str) or len(value) > 200:
            raise ValueError("A condition's value is text of at most 200 characters.")
        checked = CONDITIONS[kind].check(value)
        out.append({"kind": kind, **({"value": checked} if checked else {})})
    return out


def _int(raw: Any, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise ValueError(f"A whole number from {low} to {high}.")
    return raw


def _flag(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("True or false.")
    return raw


def _choice(choices: tuple[str, ...]):
    def check(raw: Any) -> str:
        if raw not in choices:
            raise ValueError("One of " + ", ".join(choices) + ".")
        return raw
    return check


def _ref(model, what: str):
    def check(raw: Any) -> int | None:
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int) or db.session.get(model, raw) is None:
            raise ValueError(f"No such {what}.")
        return raw
    return check


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw.strip()) > 200 \
            or any(c in raw for c in "\r\n"):
        raise ValueError("A name of 1 to 200 characters on one line.")
    return raw.strip()


CHECKS = {
    "name": _name, "enabled": _flag, "position": lambda v: _int(v, 0, 10_000),
    "conditions": _conditions, "create_contact": _flag, "priority": _choice(PRIORITIES),
    "routing": _choice(ROUTINGS), "route_user_id": _ref(User, "user"),
    "route_team_id": _ref(Team, "team"), "on_resolved": _choice(ON_RESOLVED),
    "resolved_window_days": lambda v: _int(v, 0, 3650), "acknowledge": _flag,
    "ack_template_id": _ref(EmailTemplate, "template"),
    "ack_per_sender_per_day": lambda v: _int(v, 0, 100),
}


def _org_template(template_id: int | None) -> bool:
    template = db.session.get(EmailTemplate, template_id) if template_id else None
    return template is None or template.user_id is None


def save_rule(p: Principal, queue: Queue, rule: CaseRule | None, data: dict[str, Any]
              ) -> CaseRule:
    """Create (``rule`` None) or change a rule of ``queue`` from ``data`` (the names in
    ``FIELDS``; unknown names are refused). Invalid names every wrong field."""
    authz.require(p, "write", queue)
    errors = {k: "Unknown field." for k in data if k not in FIELDS}
    values: dict[str, Any] = {}
    for name, raw in data.items():
        if name in CHECKS:
            try:
                values[name] = CHECKS[name](raw)
            except ValueError as exc:
                errors[name] = str(exc)
    if rule is None and "name" not in data:
        errors.setdefault("name", "A rule needs a name.")
    merged = {n: values.get(n, getattr(rule, n, None)) for n in FIELDS}
    if merged["routing"] == "user" and not merged["route_user_id"]:
        errors.setdefault("route_user_id", "Routing to a user needs the user.")
    if merged["routing"] in ("round_robin", "least_busy") and not merged["route_team_id"]:
        errors.setdefault("route_team_id", "Routing over a team needs the team.")
    if not _org_template(merged["ack_template_id"]):
        errors.setdefault("ack_template_id", "Use one of the organization's templates.")
    if errors:
        raise Invalid(N_("The case rule is not valid."), errors)
    if rule is None:
        last = db.session.scalar(select(func.max(CaseRule.position)).where(
            CaseRule.queue_id == queue.id))
        rule = CaseRule(queue_id=queue.id, conditions=[], position=(last or 0) + 1)
        db.session.add(rule)
    for name, value in values.items():
        setattr(rule, name, value)
    db.session.flush()
    return rule


def delete_rule(p: Principal, rule: CaseRule) -> None:
    authz.require(p, "write", rule.queue)
    db.session.delete(rule)
    db.session.flush()
