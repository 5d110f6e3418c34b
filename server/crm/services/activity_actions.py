"""Activity services for people working in the CRM: load one activity, complete or cancel
it, and create tasks and phone calls regarding a record (email is written on the compose
page and through the REST API, ``server.web.api.activity_writes``). Privileges are checked
here, so pages and APIs can share them. (Setting the regarding of an existing activity is
``server.crm.services.tracking.set_regarding``.)
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload, with_polymorphic

from server.crm.activities import Activity, ActivityParty, Email, PhoneCall, Task
from server.crm.registry import choice_label
from server.crm.services.tracking import check_regarding
from server.crm.values import LINE_BREAK, SINGLE_LINE
from server.db import db, utcnow
from server.errors import Forbidden, Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal

AnyActivity = with_polymorphic(Activity, "*")
PRIORITIES = ("low", "normal", "high")


def get_activity(p: Principal, activity_id: int):
    """One activity (as its subtype, parties and attachment metadata loaded) the principal
    may read; NotFound otherwise."""
    activity = db.session.scalar(
        select(AnyActivity)
        .where(AnyActivity.id == activity_id, authz.scope(p, Activity, "read"))
        .options(selectinload(AnyActivity.parties), selectinload(AnyActivity.attachments)))
    if activity is None:
        raise NotFound()
    return activity


def set_state(p: Principal, activity, state: str):
    """Mark an open activity completed or canceled (an email draft can only be canceled)."""
    if state not in ("completed", "canceled"):
        raise Invalid(N_("An activity is completed or canceled."))
    authz.require(p, "write", activity)
    if activity.state != "open":
        raise Invalid(N_("This activity’s state is already “%(state)s”.",
                         state=choice_label(activity.state)))
    if isinstance(activity, Email):
        if activity.status != "draft" or state != "canceled":
            raise Invalid(N_("Only an email draft can be canceled here."))
        activity.status = "canceled"
    activity.state = state
    activity.actual_end = utcnow()
    if isinstance(activity, Task) and state == "completed":
        activity.percent_complete = 100
    activity.modified_by_id = p.user_id
    activity.modified_on = activity.actual_end
    db.session.flush()
    return activity


def _new(p: Principal, cls, regarding: tuple[str, int] | None, subject: str,
         description: str | None, priority: str, due: datetime | None, **extra):
    errors = {}
    subject = (subject or "").strip()
    if not subject:
        errors["subject"] = N_("This field is required.")
    elif len(subject) > 400:
        errors["subject"] = N_("At most 400 characters.")
    elif LINE_BREAK.search(subject):
        errors["subject"] = SINGLE_LINE
    if priority not in PRIORITIES:
        errors["priority"] = N_("Must be one of: %(choices)s.", choices=", ".join(PRIORITIES))
    if errors:
        raise Invalid(N_("Some fields are not valid."), errors)
    if not authz.can_create(p, Activity, p.business_unit_id, p.user_id):
        raise Forbidden(N_("You may not create activities."))
    regarding = check_regarding(p, regarding)
    now = utcnow()
    activity = cls(subject=subject, description=description or None, priority=priority,
                   scheduled_end=due, occurred_on=now, state="open",
                   owner_user_id=p.user_id, owning_business_unit_id=p.business_unit_id,
                   created_by_id=p.user_id, modified_by_id=p.user_id, **extra)
    if regarding is not None:
        activity.set_regarding(*regarding)
    db.session.add(activity)
    return activity


def create_task(p: Principal, regarding: tuple[str, int] | None, *, subject: str,
                description: str | None = None, priority: str = "normal",
                due: datetime | None = None, category: str | None = None) -> Task:
    task = _new(p, Task, regarding, subject, description, priority, due,
                category=(category or None) and category.strip()[:80])
    task.parties.append(ActivityParty(role="owner", user_id=p.user_id, name=p.user.full_name,
                                      address=p.user.email))
    db.session.flush()
    return task


def create_phone_call(p: Principal, regarding: tuple[str, int] | None, *, subject: str,
                      phone_number: str | None = None, direction: str = "outgoing",
                      description: str | None = None, priority: str = "normal",
                      due: datetime | None = None) -> PhoneCall:
    if direction not in ("incoming", "outgoing"):
        raise Invalid(N_("Some fields are not valid."), {"direction": N_("Incoming or outgoing.")})
    if phone_number and len(phone_number.strip()) > 50:
        raise Invalid(N_("Some fields are not valid."), {"phone_number": N_("At most 50 characters.")})
    call = _new(p, PhoneCall, regarding, subject, description, priority, due,
                phone_number=(phone_number or "").strip() or None, direction=direction)
    me = ActivityParty(role="from" if direction == "outgoing" else "to", user_id=p.user_id,
                       name=p.user.full_name, address=p.user.email)
    call.parties.append(me)
    if regarding is not None and regarding[0] in ("contact", "account", "lead"):
        other = ActivityParty(role="to" if direction == "outgoing" else "from")
        other.set_party(*regarding)
        call.parties.append(other)
    db.session.flush()
    return call
