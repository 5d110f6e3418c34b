"""Working a queue: its items (with their age and who works them), and picking, releasing,
routing (to another queue or to a user) and removing an item, for pages and the API alike.

Privileges, as in Dynamics: seeing a queue and its items needs read on the queue (and only
items whose activity the caller may read are listed); acting on an item needs read on its
queue and append-to on its activity (working an item is appending to that record); routing
to another queue needs append-to on that queue, and a user an item is routed to must be
active and able to read the queue. Callers commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server.crm.activities import Activity
from server.crm.models import Queue
from server.crm.queues import QueueItem
from server.db import db, utcnow
from server.errors import Conflict, Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.security.models import User

__all__ = ["ItemView", "get_item", "items", "pick", "queues", "release", "remove", "route"]

MAX_ITEMS = 500


@dataclass(frozen=True)
class ItemView:
    """One queue item as a person sees it."""

    id: int
    queue_id: int
    activity_id: int
    activity_type: str
    subject: str
    regarding: tuple[str, int] | None
    entered_on: datetime
    age_seconds: int
    worked_by_id: int | None
    worked_by: str | None
    worked_on: datetime | None


def queues(p: Principal) -> list[Queue]:
    """The active queues the caller may read, by name."""
    return list(db.session.scalars(select(Queue).where(
        authz.scope(p, Queue, "read"), Queue.is_active.is_(True)).order_by(Queue.name)))


def _view(item: QueueItem, now: datetime) -> ItemView:
    activity = item.activity
    return ItemView(item.id, item.queue_id, item.activity_id, activity.activity_type,
                    activity.subject or "", activity.regarding_ref, item.created_on,
                    max(0, int((now - item.created_on).total_seconds())), item.worked_by_id,
                    item.worked_by.full_name if item.worked_by else None, item.worked_on)


def items(p: Principal, queue_id: int, *, worked: str = "all") -> tuple[Queue, list[ItemView]]:
    """A queue's items the caller may see, oldest first; ``worked``: all, mine, nobody."""
    queue = authz.get(p, Queue, queue_id)
    query = (select(QueueItem).join(Activity, Activity.id == QueueItem.activity_id)
             .where(QueueItem.queue_id == queue.id, authz.scope(p, Activity, "read"))
             .options(selectinload(QueueItem.activity), selectinload(QueueItem.worked_by))
             .order_by(QueueItem.created_on, QueueItem.id).limit(MAX_ITEMS))
    if worked == "mine":
        query = query.where(QueueItem.worked_by_id == p.user_id)
    elif worked == "nobody":
        query = query.where(QueueItem.worked_by_id.is_(None))
    elif worked != "all":
        raise Invalid(N_("Some fields are not valid."), {"worked": "all, mine or nobody."})
    now = utcnow()
    return queue, [_view(item, now) for item in db.session.scalars(query)]


def get_item(p: Principal, item_id: int) -> QueueItem:
    """An item the caller may act on (read on its queue, append-to on its activity)."""
    item = db.session.get(QueueItem, item_id)
    if item is None:
        raise NotFound()
    authz.require(p, "read", item.queue)
    authz.require(p, "append_to", item.activity)
    return item


def view(item: QueueItem) -> ItemView:
    return _view(item, utcnow())


def pick(p: Principal, item: QueueItem) -> QueueItem:
    """The caller works on the item from now; someone else's item is released first."""
    if item.worked_by_id not in (None, p.user_id):
        raise Conflict(f"{item.worked_by.full_name} works on this item; release it first.",
                       {"worked_by": item.worked_by.full_name})
    if item.worked_by_id != p.user_id:
        item.worked_by_id, item.worked_on = p.user_id, utcnow()
    db.session.flush()
    return item


def release(p: Principal, item: QueueItem) -> QueueItem:
    """Nobody works on the item any more; it waits in the queue again."""
    item.worked_by_id, item.worked_on = None, None
    db.session.flush()
    return item


def route(p: Principal, item: QueueItem, *, queue_id: int | None = None,
          user_id: int | None = None) -> QueueItem:
    """Move the item to another queue (waiting there, worked by nobody), or hand it to a
    user who may read its queue."""
    if (queue_id is None) == (user_id is None):
        raise Invalid(N_("Route to a queue or to a user."), {"to": N_("One queue or one user.")})
    if user_id is not None:
        user = db.session.get(User, user_id)
        if user is None or not user.is_active:
            raise Invalid(N_("No such active user."), {"user": N_("No such active user.")})
        if not authz.can(authz.principal(user), "read", item.queue):
            raise Invalid(f"{user.full_name} may not read the queue {item.queue.name}.",
                          {"user": N_("This user may not read the queue.")})
        item.worked_by_id, item.worked_on = user.id, utcnow()
        db.session.flush()
        return item
    target = authz.get(p, Queue, queue_id, "append_to")
    if target.id == item.queue_id:
        return item
    there = db.session.scalar(select(QueueItem).where(QueueItem.queue_id == target.id,
                                                      QueueItem.activity_id == item.activity_id))
    if there is not None:  # it waits there already: this copy goes
        db.session.delete(item)
        db.session.flush()
        return there
    item.queue_id, item.worked_by_id, item.worked_on = target.id, None, None
    item.created_on = utcnow()  # its age counts in the new queue
    db.session.flush()
    db.session.expire(item, ["queue"])
    return item


def remove(p: Principal, item: QueueItem) -> None:
    """Take the item out of its queue (the activity stays)."""
    db.session.delete(item)
    db.session.flush()
