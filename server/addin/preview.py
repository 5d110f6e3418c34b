"""The add-in preview's sample mailbox (``/addin/preview``): a fixed set of items for the
signed-in user, described the way Office.js describes items (the preview's stand-in serves
them to the real pane), and the reset that undoes what trying them did in the CRM.

The samples are fixed: the same user gets the same items, with the same Message-IDs, on
every load (the page also keeps the first set it was given until reset): two of the user's
earliest tracked emails, a new email from their earliest contact, one from a stranger, a
meeting and a draft. Tracking a sample, or adding its stranger as a contact, changes no
other sample; "Reset the preview" removes the CRM copies of the samples the user tracked
there (theirs only, with the delete privilege) and the contacts and leads they made of the
stranger, so each can be tried again.
"""
from __future__ import annotations

import base64
import hashlib
import html
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server.crm.activities import Appointment, Email
from server.crm.models import Contact, Lead
from server.crm.services import records
from server.crm.services.tracked import TrackRequest
from server.db import db, utcnow
from server.mailkeys import normalize_message_id
from server.security import authz

STRANGER = ("Jonas Whitaker", "jonas.whitaker@harbourlight-ventures.example")
SAMPLE_TRACKED = 2


def _who(name: str | None, address: str | None) -> dict:
    return {"displayName": name or address or "", "emailAddress": address or ""}


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in text.split("\n\n"))


def _email_sample(email: Email, n: int) -> dict:
    roles: dict[str, list] = {"from": [], "to": [], "cc": []}
    for party in email.parties:
        if party.role in roles:
            roles[party.role].append(_who(party.name, party.address))
    text = email.text_body or email.description or ""
    return {"key": f"tracked-{n}", "folder": "Inbox", "type": "message", "mode": "read",
            "itemId": f"preview-email-{email.id}", "internetMessageId": f"<{email.message_id}>",
            "conversationId": email.conversation_id, "subject": email.subject,
            "from": (roles["from"] or [None])[0], "to": roles["to"], "cc": roles["cc"],
            "date": _iso(email.sent_on or email.occurred_on), "bodyText": text,
            "bodyHtml": email.html_body or _paragraphs(text), "attachments": []}


def _digest(user_id: int, key: str, address: str) -> str:
    return hashlib.sha256(f"{user_id}:{key}:{address}".encode()).hexdigest()[:24]


def _message_id(user_id: int, key: str, address: str) -> str:
    """The stable Message-ID of the sample ``key`` (a new email, or the draft once sent)."""
    return f"<{_digest(user_id, key, address)}@mail.{address.rpartition('@')[2] or 'example'}>"


def _new_email(key: str, sender: tuple[str, str], to: list[tuple[str, str]], subject: str,
               text: str, user_id: int, **extra) -> dict:
    """A message the CRM has not seen: its Message-ID is stable per user, so tracking it in
    the preview is idempotent and shows as tracked next time."""
    digest = _digest(user_id, key, sender[1])
    item = {"key": key, "folder": "Inbox", "type": "message", "mode": "read",
            "itemId": f"preview-{key}-{digest}", "internetMessageId": _message_id(user_id, key, sender[1]),
            "conversationId": digest, "subject": subject, "from": _who(*sender),
            "to": [_who(*x) for x in to], "cc": [], "date": _iso(utcnow() - timedelta(hours=2)),
            "bodyText": text, "bodyHtml": _paragraphs(text), "attachments": []}
    item.update(extra)
    return item


def _known(p: authz.Principal) -> tuple[str, str] | None:
    """(name, address) of the user's earliest contact they may read with an address they
    may read (field security: a hidden email means no sample from this contact)."""
    contact = db.session.scalars(
        select(Contact).where(authz.scope(p, Contact, "read"), Contact.is_active.is_(True),
                              Contact.email1.is_not(None))
        .order_by(Contact.id).limit(1)).first()
    address = next(iter(records.emails(p, contact)), None) if contact is not None else None
    return (records.title(p, contact) or address, address) if address else None


def _own_ids(p: authz.Principal, known: tuple[str, str] | None) -> set[str]:
    """The stored keys of the emails the preview makes up for the user (never shown as
    "tracked" samples, so trying them adds no sample)."""
    user = p.user
    made = [("stranger", STRANGER[1]), ("sent", user.email)] + ([("known", known[1])] if known else [])
    return {key for key in (normalize_message_id(_message_id(user.id, k, a)) for k, a in made) if key}


def samples(p: authz.Principal) -> list[dict]:
    """Sample items for the preview from the user's own CRM: their earliest tracked emails,
    a new email from their earliest contact, one from a stranger, a meeting and a draft,
    described the way Office.js describes items (the stand-in serves them to the pane).
    "Earliest": what the user does in the preview or the CRM later changes no sample."""
    user = p.user
    me = (user.full_name, user.email)
    items: list[dict] = []
    known = _known(p)
    emails = db.session.scalars(
        select(Email).where(authz.scope(p, Email, "read"), Email.direction == "incoming",
                            Email.message_id.is_not(None), Email.sender_address.is_not(None),
                            Email.message_id.not_in(_own_ids(p, known)))
        .options(selectinload(Email.parties))
        .order_by(Email.id).limit(SAMPLE_TRACKED)).all()
    items += [_email_sample(e, n) for n, e in enumerate(emails, 1)]
    if known is not None:
        items.append(_new_email(
            "known", known, [me],
            "Question about next quarter's order",
            f"Hi {user.full_name.split()[0]},\n\nWe are planning next quarter's order and would "
            "like to add a few more sites. Could you send an updated quote?\n\n"
            f"Thanks,\n{known[0]}", user.id))
    items.append(_new_email(
        "stranger", STRANGER, [me], "Introduction: Harbourlight Ventures <partnership>",
        "Hello,\n\nI run procurement at Harbourlight Ventures. A colleague recommended you; "
        "could we set up a call next week about equipping our new office?\n\n"
        "Best,\nJonas Whitaker", user.id,
        attachments=[{"id": "att-1", "name": "Office floor plan.pdf", "contentType": "application/pdf",
                      "size": 48213, "attachmentType": "file", "isInline": False,
                      "contentBase64": base64.b64encode(b"%PDF-1.4 sample floor plan").decode()}]))
    meeting = db.session.scalars(
        select(Appointment).where(authz.scope(p, Appointment, "read"),
                                  Appointment.global_object_id.is_not(None))
        .options(selectinload(Appointment.parties))
        .order_by(Appointment.id).limit(1)).first()
    if meeting is not None:
        organizer = next((x for x in meeting.parties if x.role == "organizer"), None)
        items.append({
            "key": "meeting", "folder": "Calendar", "type": "appointment", "mode": "read",
            "itemId": meeting.global_object_id, "internetMessageId": None,
            "subject": meeting.subject,
            "organizer": _who(organizer.name, organizer.address) if organizer else _who(*me),
            "requiredAttendees": [_who(x.name, x.address) for x in meeting.parties if x.role == "required"],
            "optionalAttendees": [_who(x.name, x.address) for x in meeting.parties if x.role == "optional"],
            "start": _iso(meeting.scheduled_start), "end": _iso(meeting.scheduled_end),
            "location": meeting.location or "", "date": _iso(meeting.scheduled_start),
            "bodyText": meeting.description or "", "bodyHtml": _paragraphs(meeting.description or ""),
            "attachments": []})
    to = known or STRANGER
    items.append({
        "key": "draft", "folder": "Drafts", "type": "message", "mode": "compose",
        "itemId": None, "internetMessageId": None, "subject": "Proposal and next steps",
        "from": _who(*me), "to": [_who(*to)], "cc": [], "date": _iso(utcnow()),
        "sentMessageId": _message_id(user.id, "sent", user.email),
        "bodyText": f"Hi {to[0].split()[0]},\n\nAs promised, here is our proposal. "
                    "I am happy to walk you through it.\n\nBest regards,\n" + user.full_name,
        "attachments": []})
    for item in items:
        if item["mode"] == "compose":
            item["bodyHtml"] = _paragraphs(item["bodyText"])
    return items


def reset(p: authz.Principal) -> int:
    """Undo what trying the samples did for this user: the CRM copies of the sample emails
    they tracked here (when they own them and may delete them; someone else's copy stays),
    their track requests for them, and the contacts and leads they created with the
    stranger's address. Returns how many records went; the caller commits."""
    user = p.user
    ids = _own_ids(p, _known(p))
    removed = 0
    for email in db.session.scalars(select(Email).where(Email.message_id.in_(ids))).all():
        if email.owner_user_id == user.id and authz.can(p, "delete", email):
            records.delete(p, email)
            removed += 1
    db.session.execute(TrackRequest.__table__.delete().where(
        TrackRequest.user_id == user.id, TrackRequest.internet_message_id.in_(ids)))
    for model in (Contact, Lead):
        for record in db.session.scalars(select(model).where(
                model.email1 == STRANGER[1], model.owner_user_id == user.id,
                model.created_by_id == user.id)).all():
            if authz.can(p, "delete", record):
                records.delete(p, record)
                removed += 1
    db.session.flush()
    return removed
