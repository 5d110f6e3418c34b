"""The sync engine's part of the demo: a Maildir mailbox for Sam Patel (sam.sales@contoso.example)
that server-side sync reads, with an Inbox of a few dozen realistic messages and a tracked
folder "Inbox/Contoso deal" linked to the "Contoso deal" opportunity.

The mailbox lives under the instance folder: ``instance/maildir/sam.sales@contoso.example``
(a Maildir++ tree; the tracked folder is the directory ``.INBOX.Contoso deal``). The Inbox
holds replies to emails the demo already tracked (they are tracked into the same
conversations), mail from Sam's contacts, a colleague's note, cold enquiries, newsletters,
automatic replies and a bounce: with Sam's tracking option ("Email messages in response to
Regarding email") the engine tracks the replies and explains every other decision. Drop an
``.eml`` file into ``.INBOX.Contoso deal/new`` and the worker tracks it within seconds,
regarding the Contoso deal.

Its appointments, contacts and tasks sync with folders of files beside the Maildir
(``demo_calendar``): the first sync brings a tracked meeting in.

``server.demo.seed`` calls ``seed_demo_mailbox()`` after the CRM records exist, in its transaction.
Messages are deterministic (fixed Message-IDs, dates relative to today); seeding again does
nothing.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from server.crm.activities import Email
from server.crm.models import Contact, Opportunity
from server.db import db, utcnow
from server.security.models import User
from server.sync.connectors.base import Account as ConnectorAccount
from server.sync.connectors.maildir import (MaildirConnector, create_maildir, deliver,
                                            folder_path, mailbox_root)
from server.sync.demo_calendar import seed_demo_calendar
from server.sync.models import EmailServerProfile, FolderRule, Mailbox

DEMO_USER = "sam.sales@contoso.example"
PROFILE_NAME = "Demo Maildir store"
DEAL_FOLDER = "INBOX/Contoso deal"
DEAL_NAME = "Contoso deal"
FOLDERS = ("Sent", "Drafts", "Trash", "Junk", DEAL_FOLDER)

NEWSLETTERS = [
    ("Fourth Coffee Insider", "insider@news.fourthcoffee.example", "Five new blends for the office",
     "Our spring selection is here: five blends roasted for busy teams."),
    ("Margie's Travel Deals", "deals@mail.margiestravel.example", "Last-minute fares to Lisbon",
     "Fly to Lisbon from $399 return. Offer ends Sunday."),
    ("The Sales Brief", "brief@salesbrief.example", "Weekly: how top teams run pipeline reviews",
     "This week: three questions every pipeline review should answer."),
    ("Litware Product News", "news@updates.litware.example", "Litware 12.4 release notes",
     "Version 12.4 adds offline sync and faster search."),
    ("Contoso Ltd Intranet", "intranet@contoso.example", "This week at Contoso",
     "Town hall on Thursday, new parking rules, and the summer party date."),
]
CONTACT_SUBJECTS = [
    ("Quick question about delivery times", "Could you tell me how long delivery takes for a "
     "standard order at the moment? We are planning our next quarter."),
    ("Invoice 2024-118", "Our accounts team has a question about invoice 2024-118: the "
     "shipping line seems to be charged twice."),
    ("Meeting next week?", "Are you free for a short call next week to go through the new "
     "price list? Tuesday or Wednesday afternoon works for us."),
    ("Updated requirements", "Attached are our updated requirements for the rollout. The main "
     "change is the number of sites: we are now at twelve."),
    ("Thanks for the demo", "Thanks for the demo yesterday, the team was impressed. We will "
     "come back to you with questions by Friday."),
    ("Change of contact", "From next month my colleague will take over purchasing. I will "
     "introduce you by email."),
]
COLD = [
    ("Jordan Reyes", "jordan@startup-hub.example", "Partnership idea",
     "We build scheduling software for field teams and would love to explore a partnership."),
    ("Priya Natarajan", "priya.n@freelance-design.example", "Design services for your brochures",
     "I saw your latest brochure and would like to offer my design services."),
    ("Tom Becker", "tom.becker@talentsearch.example", "Exciting opportunity",
     "I am recruiting for a senior sales role and thought of you."),
]
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]"
       b"/Count 1>>endobj 3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")


def _mid(n: str, domain: str) -> str:
    return f"<{hashlib.sha1(f'demo-inbox-{n}'.encode()).hexdigest()[:20]}@mail.{domain}>"


def _message(sender: tuple[str, str], to: list[tuple[str, str]], subject: str, body: str,
             when: datetime, key: str, *, headers: dict[str, str] | None = None,
             attachment: tuple[str, str, bytes] | None = None) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr(sender)
    msg["To"] = ", ".join(formataddr(t) for t in to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = _mid(key, sender[1].rpartition("@")[2])
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if attachment:
        filename, ctype, content = attachment
        maintype, subtype = ctype.split("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def _greeting(name: str, text: str, signature: str) -> str:
    return f"Hi {name.split(' ')[0]},\n\n{text}\n\nBest regards,\n{signature}\n"


def _latest_threads(sam: User, count: int) -> list[Email]:
    """The newest email of each of Sam's latest tracked conversations, the Contoso deal's
    conversation among them."""
    latest: dict[str, Email] = {}
    for email in db.session.scalars(select(Email).where(Email.owner_user_id == sam.id)
                                    .order_by(Email.occurred_on.desc(), Email.id.desc())):
        latest.setdefault(email.conversation_id or email.message_id, email)
    emails = list(latest.values())
    deal = [e for e in emails if e.subject and DEAL_NAME.lower() in e.subject.lower()]
    rest = [e for e in emails if e not in deal]
    return (deal[:1] + rest)[:count]


def _customer_of(email: Email) -> tuple[str, str] | None:
    """The customer side of a tracked email: its sender if incoming, else its first recipient."""
    roles = ("from",) if email.direction == "incoming" else ("to", "cc")
    for party in email.parties:
        if party.role in roles and party.address and party.user_id is None \
                and party.queue_id is None:
            return party.name or party.address, party.address
    return None


def _inbox(sam: User, now: datetime) -> list[tuple[str, bytes, datetime]]:
    """(folder, raw, arrival) for every demo message."""
    me = (sam.full_name, sam.email)
    out: list[tuple[str, bytes, datetime]] = []

    def at(hours: float) -> datetime:
        return (now - timedelta(hours=hours)).replace(microsecond=0)

    # Replies to tracked conversations: tracked with them, regarding the same record.
    threads = _latest_threads(sam, 8)
    for n, email in enumerate(threads):
        customer = _customer_of(email)
        if customer is None:
            continue
        subject = email.subject if email.subject.upper().startswith("RE:") else f"RE: {email.subject}"
        when = at(3 + n * 9)
        refs = " ".join(f"<{m}>" for m in (email.references or "").split() + [email.message_id])
        text = ("Thanks, that works for us. One more question: can we move the start date "
                "by two weeks?" if n % 2 else "Following up on this: we discussed it internally "
                "and would like to go ahead. What are the next steps?")
        out.append(("INBOX", _message(customer, [me], subject, _greeting(me[0], text, customer[0]),
                                      when, f"reply-{n}", headers={
                                          "In-Reply-To": f"<{email.message_id}>", "References": refs}),
                    when))
    # An automatic reply to a tracked conversation: correlated, but sent by a machine.
    if threads and _customer_of(threads[-1]):
        customer, email = _customer_of(threads[-1]), threads[-1]
        when = at(30)
        out.append(("INBOX", _message(customer, [me], f"Automatic reply: {email.subject}",
                                      "I am out of the office until Monday with limited access "
                                      "to email. For urgent matters please call the front desk.",
                                      when, "auto-1", headers={
                                          "Auto-Submitted": "auto-replied",
                                          "X-Auto-Response-Suppress": "All",
                                          "In-Reply-To": f"<{email.message_id}>"}), when))
    # Mail from Sam's contacts that answers nothing tracked.
    contacts = db.session.scalars(select(Contact).where(
        Contact.owner_user_id == sam.id, Contact.is_active.is_(True), Contact.email1.is_not(None))
        .order_by(Contact.id)).all()
    for n, (contact, (subject, text)) in enumerate(zip(contacts[10:], CONTACT_SUBJECTS)):
        when = at(5 + n * 13)
        sender = (contact.full_name, contact.email1)
        attachment = ("requirements.pdf", "application/pdf", PDF) if "Attached" in text else None
        out.append(("INBOX", _message(sender, [me], subject, _greeting(me[0], text, contact.full_name),
                                      when, f"contact-{n}", attachment=attachment), when))
    # Out of office from a contact, with Exchange's header only.
    if contacts:
        contact, when = contacts[0], at(50)
        out.append(("INBOX", _message((contact.full_name, contact.email1), [me],
                                      "Out of Office: back on the 12th",
                                      "Thank you for your message. I am on leave and will reply "
                                      "when I am back.", when, "auto-2",
                                      headers={"X-Autoreply": "yes"}), when))
    # A colleague and strangers.
    mia = db.session.scalar(select(User).where(User.email == "mia.manager@contoso.example"))
    if mia is not None:
        when = at(8)
        out.append(("INBOX", _message((mia.full_name, mia.email), [me], "Pipeline review on Friday",
                                      _greeting(me[0], "Please bring your top five opportunities "
                                                "to Friday's pipeline review.", mia.full_name),
                                      when, "colleague-1"), when))
    for n, (name, address, subject, text) in enumerate(COLD):
        when = at(20 + n * 17)
        out.append(("INBOX", _message((name, address), [me], subject,
                                      _greeting(me[0], text, name), when, f"cold-{n}"), when))
    # Newsletters.
    for n, (name, address, subject, text) in enumerate(NEWSLETTERS):
        when = at(12 + n * 21)
        domain = address.rpartition("@")[2]
        out.append(("INBOX", _message((name, address), [me], subject, text, when, f"news-{n}",
                                      headers={"List-Id": f"<{domain.split('.')[0]}.{domain}>",
                                               "List-Unsubscribe": f"<mailto:unsubscribe@{domain}>",
                                               "Precedence": "bulk"}), when))
    # A bounce of a message Sam sent.
    when = at(40)
    bounce = _message(("Mail Delivery System", "MAILER-DAEMON@mx.contoso.example"), [me],
                      "Undelivered Mail Returned to Sender",
                      "This is the mail system at host mx.contoso.example.\n\nI'm sorry to have "
                      "to inform you that your message could not be delivered to "
                      "old.address@fabrikam.example: the mailbox does not exist.",
                      when, "bounce-1", headers={"Auto-Submitted": "auto-replied"})
    out.append(("INBOX", bounce, when))
    # Sent Items: Sam's answers in tracked conversations are tracked as outgoing email.
    for n, email in enumerate(threads[1:3]):
        customer = _customer_of(email)
        if customer is None:
            continue
        subject = email.subject if email.subject.upper().startswith("RE:") else f"RE: {email.subject}"
        when = at(2 + n * 5)
        out.append(("Sent", _message(me, [customer], subject,
                                     _greeting(customer[0], "Thanks for your patience: the revised "
                                               "figures are ready, I will send them today.",
                                               me[0]), when, f"sent-{n}",
                                     headers={"In-Reply-To": f"<{email.message_id}>"}), when))
    # The tracked folder: whatever is filed here is tracked regarding the Contoso deal.
    deal = db.session.scalar(select(Opportunity).where(Opportunity.name == DEAL_NAME))
    people = []
    if deal is not None and deal.customer_account_id:
        people = db.session.scalars(select(Contact).where(
            Contact.parent_account_id == deal.customer_account_id).order_by(Contact.id)).all()
    filed = [(p.full_name, p.email1) for p in people[:2] if p.email1]
    filed.append(("Dana Whitaker", "dana.whitaker@legal-partners.example"))
    texts = ["Here are our comments on the draft contract. Clause 7 needs another look.",
             "Our board approved the budget for the rollout. Let's plan the kick-off.",
             "On behalf of our client we attach the signed non-disclosure agreement."]
    for n, (sender, text) in enumerate(zip(filed, texts)):
        when = at(26 + n * 11)
        subject = ("Contoso deal: contract comments", "Budget approved",
                   "NDA for the Contoso project")[n]
        attachment = ("NDA-signed.pdf", "application/pdf", PDF) if n == 2 else None
        out.append((DEAL_FOLDER, _message(sender, [me], subject, _greeting(me[0], text, sender[0]),
                                          when, f"deal-{n}", attachment=attachment), when))
    return out


def _empty(root: Path) -> bool:
    """No message in any folder yet (a tree left from an earlier database is not refilled)."""
    for name in ("INBOX", *FOLDERS):
        for sub in ("new", "cur"):
            directory = folder_path(root, name) / sub
            if directory.is_dir() and any(directory.iterdir()):
                return False
    return True


def seed_demo_mailbox() -> str | None:
    """Create Sam's Maildir mailbox, its messages and the "Inbox/Contoso deal" folder rule
    (the caller commits). Returns a summary line, or None when there is nothing to do."""
    sam = db.session.scalar(select(User).where(User.email == DEMO_USER))
    if sam is None or db.session.scalar(select(Mailbox.id).where(
            Mailbox.email_address == DEMO_USER)) is not None:
        return None
    store = Path(current_app.instance_path) / "maildir"
    root = create_maildir(mailbox_root(store, DEMO_USER), FOLDERS)
    now = utcnow()
    delivered = 0
    if _empty(root):
        for folder, raw, when in _inbox(sam, now):
            deliver(root, folder, raw, seen=folder == "Sent", msg_time=when)
            delivered += 1
    profile = db.session.scalar(select(EmailServerProfile).where(
        EmailServerProfile.name == PROFILE_NAME))
    if profile is None:
        profile = EmailServerProfile(
            name=PROFILE_NAME, incoming_protocol="maildir", outgoing_protocol="maildir",
            maildir_root=str(store), owning_business_unit_id=sam.business_unit_id,
            settings={"note": "The demo's local mail store (instance/maildir)."})
        db.session.add(profile)
        db.session.flush()
    admin = db.session.scalar(select(User).where(User.email == "admin@contoso.example"))
    mailbox = Mailbox(
        name=sam.full_name, email_address=DEMO_USER, user_id=sam.id,
        server_profile_id=profile.id, incoming_method="server_side_sync",
        outgoing_method="server_side_sync", tracking_option="crm_responses",
        email_approved=True, approved_by_id=admin.id if admin else None, approved_on=now,
        acts_method="server_side_sync",  # the calendar folder beside the Maildir
        enabled=True, incoming_status="success", outgoing_status="success", tested_on=now,
        next_sync_on=now, owning_business_unit_id=sam.business_unit_id)
    db.session.add(mailbox)
    db.session.flush()
    with MaildirConnector(ConnectorAccount(address=DEMO_USER, root=str(root))) as connector:
        key = next(f.key for f in connector.list_folders() if f.name == DEAL_FOLDER)
    rule = FolderRule(mailbox_id=mailbox.id, user_id=sam.id, folder_key=key,
                      folder_name=DEAL_FOLDER)
    deal = db.session.scalar(select(Opportunity).where(Opportunity.name == DEAL_NAME))
    if deal is not None:
        rule.set_regarding("opportunity", deal.id)
    db.session.add(rule)
    db.session.flush()
    drop = folder_path(root, DEAL_FOLDER) / "new"
    meetings = seed_demo_calendar(root, sam, now)
    calendar = root / "items" / "calendar"
    return (f"Demo mailbox {DEMO_USER}: a Maildir at {root} with {delivered} messages; an .eml "
            f"file dropped into {drop} is tracked regarding the {DEAL_NAME} opportunity. "
            f"Its calendar is the folder {calendar} ({meetings} meetings): an .ics file with "
            f'"CATEGORIES:Tracked to Regarding" dropped there becomes an appointment.')
