"""Queue items for tracked email: a queue's mailbox makes the queue a party of what it
tracks (its owner owns it, ``MailboxRun``), and every queue among an email's recipients, in
whichever mailbox the email was synced, gets a queue item for it (Dynamics' "create queue
items for accepting queue recipients"), once per queue and email, as far as that queue
accepts the email (``Queue.accepting``: from everyone, from known senders only, or from
nobody; the queue's own mailbox always queues what it tracks)."""
from __future__ import annotations

from sqlalchemy import or_, select

from server.crm.activities import PARTY_COLUMNS, ActivityParty, Email
from server.crm.models import Queue
from server.crm.queues import QueueItem
from server.mailkeys import normalize_address
from server.db import db
from server.sync.engine.context import MailboxRun

__all__ = ["queue_emails"]

RECIPIENT_ROLES = ("to", "cc", "bcc")


def queue_emails(ctx: MailboxRun, emails: list[Email]) -> None:
    """A queue's mailbox: the queue becomes a party of these emails. Every mailbox: each
    queue among their recipients gets a queue item for them, where it has none yet (three
    queries for the whole wave, two more when a recipient queue is choosy)."""
    by_id = {email.id: email for email in emails}
    if not by_id:
        return
    queue = ctx.queue
    wanted = set(tuple(row) for row in db.session.execute(select(ActivityParty.queue_id, ActivityParty.activity_id)
                                    .where(ActivityParty.activity_id.in_(by_id),
                                           ActivityParty.queue_id.is_not(None),
                                           ActivityParty.role.in_(RECIPIENT_ROLES))))
    if queue is not None:
        with_party = {a for q, a in wanted if q == queue.id}
        address = normalize_address(queue.email or ctx.mailbox.email_address)
        for email_id, email in by_id.items():
            if email_id not in with_party:
                party = ActivityParty(activity_id=email_id, role="bcc", address=address,
                                      name=queue.name[:200])
                party.set_party("queue", queue.id)
                db.session.add(party)
                db.session.expire(email, ["parties"])
            wanted.add((queue.id, email_id))
    wanted = _accepted(wanted, queue.id if queue is not None else None)
    if not wanted:
        return
    queued = set(tuple(row) for row in db.session.execute(select(QueueItem.queue_id, QueueItem.activity_id).where(
        QueueItem.queue_id.in_({q for q, _ in wanted}),
        QueueItem.activity_id.in_(by_id))))
    for queue_id, email_id in sorted(wanted - queued):
        db.session.add(QueueItem(queue_id=queue_id, activity_id=email_id))
    db.session.flush()


def _accepted(wanted: set[tuple[int, int]], own_queue: int | None) -> set[tuple[int, int]]:
    """The (queue, email) pairs whose queue accepts the email: every pair of the mailbox's
    own queue; for other queues, by ``Queue.accepting``."""
    others = {q for q, _ in wanted if q != own_queue}
    accepting = dict(db.session.execute(select(Queue.id, Queue.accepting).where(
        Queue.id.in_(others))).all()) if others else {}
    choosy = {q for q, how in accepting.items() if how != "everyone"}
    if not choosy:
        return wanted
    known = set()
    if any(accepting[q] == "known_senders" for q in choosy):
        emails = {a for q, a in wanted if q in choosy}
        known = set(db.session.scalars(select(ActivityParty.activity_id).where(
            ActivityParty.activity_id.in_(emails), ActivityParty.role == "from",
            or_(*(getattr(ActivityParty, c).is_not(None) for c in PARTY_COLUMNS.values())))))
    return {(q, a) for q, a in wanted
            if q not in choosy or (accepting[q] == "known_senders" and a in known)}
