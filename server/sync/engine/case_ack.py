"""The acknowledgement a queue's case rule sends when it opens a case: a templated reply
from the queue's mailbox, regarding the case, with the case number in its subject, put into
"pending send" for the ordinary send path (``server.sync.engine.outgoing``), marked as an
automatic reply (``Auto-Submitted: auto-replied``, ``X-Auto-Response-Suppress: All``) and
threaded under the customer's message (In-Reply-To and References, from its parent).

Never to automatic mail (auto-replies, bounces, list mail, loops), never to the
organization's own mailboxes, and at most the rule's number per sender in 24 hours, so two
auto-responders can never answer each other for ever. What a wave's acknowledgements share
(the mailbox's readiness, the signature, the senders' counts) is read once (``AckWave``).

The default wording (no template chosen) is written in the organization's default language;
what the decision log says about it is stored in English from ``N_``-marked sentences.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from server.crm.activities import ActivityParty, Email
from server.crm.html import sanitize_html
from server.crm.models import Case, Organization
from server.crm.queues import CaseAcknowledgement, CaseRule
from server.crm.services.email_templates import context, signature_of
from server.crm.templates import EmailTemplate, render
from server.db import db, utcnow
from server.i18n import N_, language_of, translate
from server.security.models import Team, User
from server.sync.admin.sending import Readiness, readiness
from server.sync.engine.context import MailboxRun
from server.sync.mail.case_rules import automatic_evidence
from server.sync.mail.outgoing_headers import ACKNOWLEDGEMENT_HEADERS
from server.sync.mail.message import MailMessage

__all__ = ["AckWave", "acknowledge", "ack_subject"]

WINDOW = timedelta(hours=24)


def ack_subject(subject: str, number: str) -> str:
    """The subject with the case number in it (once), as the sender's reply keeps it."""
    subject = " ".join((subject or "").split())[:300]
    return subject if number.upper() in subject.upper() else f"[{number}] {subject}".strip()


@dataclass
class AckWave:
    """What the acknowledgements of one wave share, read once: whether the queue's mailbox
    can send, its signature, and how many acknowledgements each of the wave's senders got
    in the last 24 hours (counted on as the wave acknowledges)."""

    ready: Readiness
    signature: str
    sent: dict[str, int]

    @classmethod
    def load(cls, ctx: MailboxRun, addresses: set[str]) -> AckWave:
        sent = dict(db.session.execute(
            select(CaseAcknowledgement.address, func.count()).where(
                CaseAcknowledgement.address.in_(addresses),
                CaseAcknowledgement.created_on >= utcnow() - WINDOW)
            .group_by(CaseAcknowledgement.address)).all()) if addresses else {}
        return cls(readiness(ctx.mailbox, "queue"), signature_of(queue_id=ctx.queue.id),
                   sent)


def _why_not(ctx: MailboxRun, rule: CaseRule, msg: MailMessage, wave: AckWave) -> str | None:
    sender = msg.from_ or msg.sender
    automatic = automatic_evidence(msg)
    if automatic:
        return N_("it was sent automatically (%(evidence)s)") % {"evidence": automatic}
    if sender is None or not sender.resolvable:
        return N_("it has no sender address to answer")
    if sender.address in ctx.org_addresses or sender.address in ctx.owner_addresses:
        return N_("its sender is one of this organization's mailboxes")
    sent = wave.sent.get(sender.address, 0)
    if sent >= rule.ack_per_sender_per_day:
        return N_("%(address)s got %(count)s acknowledgement(s) in the last 24 hours, the "
                  "rule's limit") % {"address": sender.address, "count": sent}
    return None if wave.ready.ok else wave.ready.problem.rstrip(".")


def _content(ctx: MailboxRun, rule: CaseRule, case: Case, msg: MailMessage) -> tuple[str, str]:
    """Subject and HTML body: the rule's template when it renders, else plain words."""
    template = db.session.get(EmailTemplate, rule.ack_template_id) if rule.ack_template_id \
        else None
    if template is not None:
        recipient = ("contact", case.customer_contact) if case.customer_contact else \
            ("account", case.customer_account) if case.customer_account else None
        done = render(template, context(ctx.actor, recipient=recipient,
                                        regarding=("case", case)))
        if not done.problems:
            return done.subject or f"Re: {msg.subject}", done.html
    org = db.session.get(Organization, 1)
    language = language_of(org.default_language if org is not None else None) or "en"
    body = "<p>{}</p><p>{}</p>".format(
        translate(language, N_("Thank you for your email. We opened case %(case)s for it and "
                               "will answer as soon as we can.")) % {"case": case.ticket_number},
        translate(language, N_("Please keep the case number in the subject when you write to "
                               "us about it.")))
    return f"Re: {msg.subject}", body


def acknowledge(ctx: MailboxRun, rule: CaseRule, case: Case, email: Email,
                msg: MailMessage, wave: AckWave) -> str:
    """Queue the acknowledgement of ``case`` to the sender of ``email`` (or say why not)."""
    why_not = _why_not(ctx, rule, msg, wave)
    if why_not:
        return N_("No acknowledgement was sent: %(why_not)s.") % {"why_not": why_not}
    sender = msg.from_ or msg.sender
    queue, now = ctx.queue, utcnow()
    subject, html = _content(ctx, rule, case, msg)
    signature = wave.signature
    html = sanitize_html(html + (f"<div>{signature}</div>" if signature else ""))
    owner = ctx.owner
    ack = Email(subject=ack_subject(subject, case.ticket_number), html_body=html,
                direction="outgoing", status="pending_send", state="open", priority="normal",
                occurred_on=now, created_on=now, modified_on=now,
                sender_address=queue.email or ctx.mailbox.email_address,
                to_recipients=sender.address, parent_activity_id=email.id,
                internet_headers=[list(h) for h in ACKNOWLEDGEMENT_HEADERS],
                owner_user_id=owner.id if isinstance(owner, User) else None,
                owner_team_id=owner.id if isinstance(owner, Team) else None,
                owning_business_unit_id=owner.business_unit_id)
    ack.set_regarding("case", case.id)
    from_party = ActivityParty(role="from", address=ack.sender_address, name=queue.name[:200])
    from_party.set_party("queue", queue.id)
    to_party = ActivityParty(role="to", address=sender.address, name=(sender.name or "")[:200])
    if case.customer_contact_id and case.customer_contact is not None \
            and sender.address in case.customer_contact.emails:
        to_party.set_party("contact", case.customer_contact_id)
    ack.parties.extend([from_party, to_party])
    db.session.add(ack)  # written with the wave (no flush of its own)
    db.session.add(CaseAcknowledgement(queue_id=queue.id, address=sender.address,
                                       case_id=case.id, email=ack, created_on=now))
    wave.sent[sender.address] = wave.sent.get(sender.address, 0) + 1
    return N_("An acknowledgement to %(address)s waits to be sent.") % {"address": sender.address}
