"""A small CRM world for the pipeline and engine tests: a seller with a mailbox, customers,
an opportunity, a support queue, raw messages, and shortcuts to process them."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

from sqlalchemy import func, select

from server.crm import records
from server.crm.activities import Email
from server.crm.models import Organization, Queue
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security import authz
from server.sync.connectors.base import FetchedMessage, Folder
from server.sync.folders import FolderInfo
from server.sync.models import EmailServerProfile, FolderRule, Mailbox, MessageDecision
from server.sync.pipeline import MailboxRun, process
from server.sync.rules import FolderRole
from tests.sync.conftest import build_raw

_refs = itertools.count(1)
INBOX = FolderInfo(Folder(key="inbox", name="INBOX", role="inbox"), FolderRole.INBOX)
SENT = FolderInfo(Folder(key="sent", name="Sent", role="sent"), FolderRole.SENT)


def org() -> Organization:
    return db.session.get(Organization, 1)


def profile(protocol: str = "maildir", **fields) -> EmailServerProfile:
    from server.security.bootstrap import root_unit
    prof = EmailServerProfile(name=fields.pop("name", f"{protocol} profile {next(_refs)}"),
                              incoming_protocol=protocol, outgoing_protocol=fields.pop(
                                  "outgoing_protocol", None),
                              owning_business_unit_id=root_unit().id, **fields)
    db.session.add(prof)
    db.session.flush()
    return prof


def mailbox(owner=None, *, queue: Queue | None = None, prof=None, **fields) -> Mailbox:
    """An enabled, approved mailbox for a user (or a queue)."""
    address = fields.pop("email_address", None) or (queue.email if queue else owner.email)
    box = Mailbox(name=fields.pop("name", address), email_address=address,
                  user_id=owner.id if owner is not None and queue is None else None,
                  queue_id=queue.id if queue else None,
                  server_profile_id=(prof or profile()).id, enabled=fields.pop("enabled", True),
                  email_approved=True,
                  owning_business_unit_id=(owner.business_unit_id if owner is not None
                                           else queue.owning_business_unit_id), **fields)
    db.session.add(box)
    db.session.flush()
    return box


def record(user, kind: str, **data):
    return records.create(authz.principal(user), RECORD_TYPES[kind], data)


def folder_rule(box: Mailbox, key: str, name: str, regarding=None, **fields) -> FolderRule:
    rule = FolderRule(mailbox_id=box.id, user_id=box.user_id, folder_key=key, folder_name=name,
                      **fields)
    if regarding is not None:
        rule.set_regarding(*regarding)
    db.session.add(rule)
    db.session.flush()
    return rule


def tracked_folder(rule: FolderRule) -> FolderInfo:
    return FolderInfo(Folder(key=rule.folder_key, name=rule.folder_name), FolderRole.TRACKED,
                      rule.id, rule.regarding_ref)


def raw(sender="Ann Customer <ann@customer.example>", to="bob@org.example", subject="Hello",
        mid=None, body="Hello there.\r\n", extra=None, **headers) -> bytes:
    fields = {"From": sender, "To": to, "Subject": subject,
              "Message-ID": f"<{mid or f'auto{next(_refs)}@customer.example'}>"}
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    return build_raw(body, fields, extra)


def fetched(data: bytes, ref: str | None = None, keywords=(), arrived_on=None) -> FetchedMessage:
    return FetchedMessage(ref=ref or str(next(_refs)), raw=data, keywords=tuple(keywords),
                          arrived_on=arrived_on or datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc))


def run_for(box: Mailbox, connector=None) -> MailboxRun:
    return MailboxRun.load(box, connector)


def put(box: Mailbox, data: bytes, folder: FolderInfo = INBOX, **kw):
    """Process one message for ``box`` and commit; returns the outcome."""
    outcome = process(run_for(box), folder, fetched(data, **kw))
    db.session.commit()
    return outcome


def emails(**where) -> list[Email]:
    query = select(Email).order_by(Email.id)
    for name, value in where.items():
        query = query.where(getattr(Email, name) == value)
    return list(db.session.scalars(query))


def count_emails() -> int:
    return db.session.scalar(select(func.count()).select_from(Email))


def decision(box: Mailbox, identity: str) -> MessageDecision | None:
    return db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == box.id, MessageDecision.identity == identity))
