"""A user sends an email from the CRM: which mailbox sends it, whether that mailbox can send
(said in words before anyone writes), and putting the email into ``pending_send`` for the
sync engine (``server.sync.engine.outgoing``), which wakes the mailbox at once.

The transitions a person may make are the engine's own: a ``draft`` is sent, a ``failed``
email is sent again (Retry, with its attempts counted afresh and its Message-ID kept, so
the very same message goes out). Everything else (pending, being sent, sent, received) is a
409. Sending needs write on the email; sending as another user or as a queue needs the
``send_as_other_user`` privilege. Callers commit.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from server.crm.activities import ActivityParty, Email
from server.crm.models import Organization
from server.crm.registry import EMAIL_STATUS_LABELS, choice_label
from server.db import db, utcnow
from server.errors import Conflict, Forbidden, Unprocessable
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.sync.models import Mailbox
from server.sync.workers.scheduler import request_sync

SENDABLE = ("draft", "failed")  # what a person may send (again)


class CannotSend(Unprocessable):
    """The sender's mailbox cannot send email."""
    code = "mailbox_cannot_send"


@dataclass(frozen=True)
class Readiness:
    """Whether a mailbox can send: ``problem`` says why not, in words, and ``code`` names
    it (``no_mailbox``, ``outgoing_not_enabled``, ``not_approved``, ``not_enabled``)."""
    mailbox: Mailbox | None
    code: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


# Whose mailbox is missing, as a whole sentence each (languages agree the verb with it).
NO_MAILBOX = {
    "you": N_("You have no mailbox in the CRM, so email cannot be sent. An administrator sets "
              "mailboxes up under Server-side sync."),
    "user": N_("This user has no mailbox in the CRM, so email cannot be sent. An administrator "
               "sets mailboxes up under Server-side sync."),
    "queue": N_("This queue has no mailbox in the CRM, so email cannot be sent. An "
                "administrator sets mailboxes up under Server-side sync."),
    "sender": N_("The sender has no mailbox in the CRM, so email cannot be sent. An "
                 "administrator sets mailboxes up under Server-side sync."),
}
# Why an email in a state other than draft or failed cannot be sent, per state.
NOT_SENDABLE = {
    "pending_send": N_("This email is waiting to be sent: only a draft, or a failed email (to "
                       "retry), can be sent."),
    "sending": N_("This email is being sent: only a draft, or a failed email (to retry), can "
                  "be sent."),
    "sent": N_("This email was sent already: only a draft, or a failed email (to retry), can "
               "be sent."),
    "received": N_("This email was received: only a draft, or a failed email (to retry), can "
                   "be sent."),
}


def readiness(mailbox: Mailbox | None, whose: str = "you") -> Readiness:
    """Can this mailbox send the CRM's email through server-side sync? ``whose`` says whose
    mailbox it is, for the sentence when there is none: ``you``, ``user``, ``queue`` or
    ``sender``."""
    if mailbox is None:
        return Readiness(None, "no_mailbox", NO_MAILBOX[whose])
    address = mailbox.email_address
    profile = mailbox.server_profile
    if mailbox.outgoing_method != "server_side_sync" or profile is None \
            or not profile.outgoing_protocol:
        return Readiness(mailbox, "outgoing_not_enabled", N_(
            "Outgoing email is not enabled for the mailbox %(address)s: an administrator sets "
            "its outgoing method to server-side sync with a server profile that sends.",
            address=address))
    org = db.session.get(Organization, 1)
    if not mailbox.approved_for(org):
        return Readiness(mailbox, "not_approved", N_(
            "The address %(address)s is not approved for email yet: an administrator approves "
            "it under Server-side sync.", address=address))
    if not mailbox.enabled:
        if mailbox.disabled_reason:
            return Readiness(mailbox, "not_enabled", N_(
                "The mailbox %(address)s is not enabled (%(reason)s): an administrator tests "
                "and enables it.", address=address, reason=mailbox.disabled_reason))
        return Readiness(mailbox, "not_enabled", N_(
            "The mailbox %(address)s is not enabled: an administrator tests and enables it.",
            address=address))
    return Readiness(mailbox)


def user_mailbox(user_id: int) -> Mailbox | None:
    return db.session.scalar(select(Mailbox).where(Mailbox.user_id == user_id)
                             .order_by(Mailbox.id).limit(1))


def own_addresses(p: Principal) -> set[str]:
    """The caller's own addresses (profile and mailboxes), left out of reply-all."""
    return {p.user.email, *db.session.scalars(select(Mailbox.email_address).where(
        Mailbox.user_id == p.user_id))}


def sender_of(email: Email) -> ActivityParty | None:
    return next((x for x in email.parties if x.role == "from"), None)


def sending_mailbox(email: Email) -> Mailbox | None:
    """The mailbox that sends ``email``, as the engine picks it: its sender's (a user or a
    queue), else its owner's."""
    sender = sender_of(email)
    if sender is not None and sender.queue_id is not None:
        return db.session.scalar(select(Mailbox).where(Mailbox.queue_id == sender.queue_id)
                                 .order_by(Mailbox.id).limit(1))
    user_id = sender.user_id if sender is not None and sender.user_id else email.owner_user_id
    return user_mailbox(user_id) if user_id else None


def check_send_as(p: Principal, email: Email) -> None:
    """Sending from another user's or a queue's address needs ``send_as_other_user``."""
    sender = sender_of(email)
    if sender is None:
        return
    as_other = sender.queue_id is not None or (sender.user_id not in (None, p.user_id))
    if as_other and not p.has("send_as_other_user"):
        raise Forbidden(N_("Sending as another user or a queue needs the “Send email as "
                           "another user” privilege."),
                        {"parties": N_("You may not send from this address.")})


def send(p: Principal, email: Email) -> Email:
    """Queue ``email`` for sending (draft, or failed for a retry) and wake its mailbox."""
    authz.require(p, "write", email)
    if email.activity_type != "email" or email.direction != "outgoing":
        raise Conflict(N_("Only an outgoing email can be sent."))
    if email.status not in SENDABLE:
        raise Conflict(NOT_SENDABLE.get(email.status) or N_(
            "This email’s status is “%(status)s”: only a draft, or a failed email (to retry), "
            "can be sent.", status=choice_label(email.status, EMAIL_STATUS_LABELS)),
            {"status": email.status})
    check_send_as(p, email)
    # A recipient named by its record alone (its address secured from the caller) gets the
    # record's address from the engine at sending time.
    if not any(x.role in ("to", "cc", "bcc") and (x.address or x.party_ref)
               for x in email.parties):
        raise Unprocessable(N_("The email has no recipient."),
                            {"parties": N_("Add a To, Cc or Bcc recipient.")})
    org = db.session.get(Organization, 1)
    strangers = [x.address for x in email.parties
                 if x.role in ("to", "cc", "bcc") and x.party_ref is None]
    if strangers and not org.allow_unresolved_recipients:
        raise Unprocessable(N_("The organization sends email only to people in the CRM; not "
                               "found: %(addresses)s.", addresses=", ".join(strangers)),
                            {"parties": N_("Every recipient must be a record.")})
    ready = readiness(sending_mailbox(email),
                      "you" if (sender_of(email) is None or
                                sender_of(email).user_id == p.user_id) else "sender")
    if not ready.ok:
        raise CannotSend(ready.problem, {"mailbox": ready.code})
    if email.status == "failed":
        email.delivery_attempts = 0
    email.status, email.error, email.next_attempt_on = "pending_send", None, None
    email.modified_by_id, email.modified_on = p.user_id, utcnow()
    # The sender's right to wake the mailbox comes from writing the email, so the sync is
    # asked for as the command line asks (no privilege on the mailbox itself).
    request_sync(None, ready.mailbox)
    db.session.flush()
    return email
