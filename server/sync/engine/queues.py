"""A queue's mailbox: what it tracks is owned by the queue's owner (``MailboxRun``), and each
email it tracks gets the queue as a party and waits in the queue as a queue item (once)."""
from __future__ import annotations

from sqlalchemy import select

from server.crm.activities import ActivityParty, Email
from server.mailkeys import normalize_address
from server.db import db
from server.sync.engine.context import MailboxRun
from server.crm.queues import QueueItem

__all__ = ["queue_emails"]


def queue_emails(ctx: MailboxRun, emails: list[Email]) -> None:
    """The queue becomes a party of these emails and gets a queue item for each, where they
    have none yet (two queries for the whole wave)."""
    queue = ctx.queue
    by_id = {email.id: email for email in emails}
    if queue is None or not by_id:
        return
    with_party = set(db.session.scalars(select(ActivityParty.activity_id).where(
        ActivityParty.activity_id.in_(by_id), ActivityParty.queue_id == queue.id)))
    queued = set(db.session.scalars(select(QueueItem.activity_id).where(
        QueueItem.queue_id == queue.id, QueueItem.activity_id.in_(by_id))))
    address = normalize_address(queue.email or ctx.mailbox.email_address)
    for email_id, email in by_id.items():
        if email_id not in with_party:
            party = ActivityParty(activity_id=email_id, role="bcc", address=address,
                                  name=queue.name[:200])
            party.set_party("queue", queue.id)
            db.session.add(party)
            db.session.expire(email, ["parties"])
        if email_id not in queued:
            db.session.add(QueueItem(queue_id=queue.id, activity_id=email_id))
    db.session.flush()
