"""Pages for working queues and for a queue's email-to-case rules: the queues the user may
read with what waits in them, one queue's items (age, who works them) with Pick, Release,
Route and Remove, and the queue's case rules (list, new, edit, delete).

Views parse the form and call one service (``server.crm.services.queue_work``,
``server.sync.admin.case_rules``), which checks the privileges the REST API checks too.
Every form posts with a CSRF token.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from server.crm.models import Queue
from server.crm.queues import ON_RESOLVED, PRIORITIES, ROUTINGS, QueueItem
from server.crm.services import queue_work as work
from server.crm.templates import EmailTemplate
from server.db import db
from server.errors import Invalid
from server.security import authz
from server.security.models import Team, User
from server.sync.admin import case_rules as rules
from server.sync.mail.case_rules import CONDITIONS
from server.web.auth import current_principal, login_manager
from server.web.languages import localize_fields

bp = Blueprint("queues", __name__, url_prefix="/queues")

BLANK_CONDITIONS = 3  # empty condition rows offered on the rule form


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.get("/")
def queue_list():
    p = current_principal()
    found = work.queues(p)
    counts = dict(db.session.execute(select(QueueItem.queue_id, func.count()).where(
        QueueItem.queue_id.in_([q.id for q in found])).group_by(QueueItem.queue_id)).all())
    return render_template("queues/list.html", queues=found, counts=counts)


@bp.get("/<int:queue_id>")
def queue_work(queue_id: int):
    p = current_principal()
    worked = request.args.get("worked", "all")
    queue, items = work.items(p, queue_id, worked=worked if worked in
                              ("all", "mine", "nobody") else "all")
    return render_template("queues/work.html", queue=queue, items=items, worked=worked,
                           other_queues=[q for q in work.queues(p) if q.id != queue.id],
                           users=_active_users(), may_write=authz.can(p, "write", queue))


def _active_users() -> list[User]:
    return list(db.session.scalars(select(User).where(User.is_active.is_(True))
                                   .order_by(User.full_name)))


@bp.post("/items/<int:item_id>/<action>")
def item_action(item_id: int, action: str):
    p = current_principal()
    item = work.get_item(p, item_id)
    back = url_for(".queue_work", queue_id=item.queue_id)
    if action == "pick":
        work.pick(p, item)
        message = _("You work on this item now.")
    elif action == "release":
        work.release(p, item)
        message = _("Released: the item waits in the queue again.")
    elif action == "remove":
        work.remove(p, item)
        message = _("Removed from the queue.")
    elif action == "route":
        kind, _colon, ident = request.form.get("to", "").partition(":")
        if kind not in ("queue", "user") or not ident.isdigit():
            raise Invalid(_("Choose a queue or a user to route to."), {"to": _("Choose one.")})
        work.route(p, item, **{f"{kind}_id": int(ident)})
        message = _("Routed.")
    else:
        return "", 404
    db.session.commit()
    flash(message, "success")
    return redirect(back)


# -- case rules ---------------------------------------------------------------------------------

@bp.get("/<int:queue_id>/case-rules")
def rule_list(queue_id: int):
    p = current_principal()
    queue, found = rules.rules_of(p, queue_id)
    return render_template("queues/rules.html", queue=queue, rules=found,
                           conditions=CONDITIONS, may_write=authz.can(p, "write", queue))


def _form_data(form) -> dict:
    """The rule form as the service's fields (the service checks every value)."""
    conditions = []
    for kind, value in zip(form.getlist("condition_kind"), form.getlist("condition_value")):
        if kind:
            conditions.append({"kind": kind, **({"value": value} if value.strip() else {})})
    data = {"name": form.get("name", ""), "conditions": conditions,
            "enabled": "enabled" in form, "create_contact": "create_contact" in form,
            "acknowledge": "acknowledge" in form}
    for name in ("priority", "routing", "on_resolved"):
        data[name] = form.get(name, "")
    for name in ("position", "resolved_window_days", "ack_per_sender_per_day",
                 "route_user_id", "route_team_id", "ack_template_id"):
        raw = form.get(name, "").strip()
        data[name] = int(raw) if raw.isdigit() else (None if not raw and name.endswith("_id")
                                                     else raw)
    return data


@bp.route("/<int:queue_id>/case-rules/new", methods=["GET", "POST"])
@bp.route("/case-rules/<int:rule_id>", methods=["GET", "POST"])
def rule_edit(queue_id: int | None = None, rule_id: int | None = None):
    p = current_principal()
    rule = rules.get_rule(p, rule_id, writing=request.method == "POST") \
        if rule_id is not None else None
    queue = rule.queue if rule is not None else authz.get(p, Queue, queue_id)
    errors, values = {}, rules.rule_json(rule) if rule is not None else {
        "name": "", "enabled": True, "conditions": [{"kind": "not_automatic"}],
        "create_contact": True, "priority": "normal", "routing": "queue",
        "on_resolved": "reopen", "resolved_window_days": 7, "acknowledge": False,
        "ack_per_sender_per_day": 3}
    if request.method == "POST":
        data = _form_data(request.form)
        if rule is None:
            data.pop("position")
        try:
            saved = rules.save_rule(p, queue, rule, data)
        except Invalid as exc:
            db.session.rollback()
            errors, values = localize_fields(exc.fields or {"name": exc.message}), data
        else:
            db.session.commit()
            flash(_("Case rule saved."), "success")
            return redirect(url_for(".rule_list", queue_id=saved.queue_id))
    return render_template(
        "queues/rule_edit.html", queue=queue, rule=rule, values=values, errors=errors,
        conditions=CONDITIONS, blank=BLANK_CONDITIONS, priorities=PRIORITIES,
        routings=ROUTINGS, on_resolved=ON_RESOLVED, users=_active_users(),
        teams=list(db.session.scalars(select(Team).order_by(Team.name))),
        templates=list(db.session.scalars(select(EmailTemplate).where(
            EmailTemplate.user_id.is_(None)).order_by(EmailTemplate.name))),
        may_write=authz.can(p, "write", queue)), 400 if errors else 200


@bp.post("/case-rules/<int:rule_id>/delete")
def rule_delete(rule_id: int):
    p = current_principal()
    rule = rules.get_rule(p, rule_id, writing=True)
    queue_id = rule.queue_id
    rules.delete_rule(p, rule)
    db.session.commit()
    flash(_("Case rule deleted."), "success")
    return redirect(url_for(".rule_list", queue_id=queue_id))


def init_app(app) -> None:
    app.register_blueprint(bp)
