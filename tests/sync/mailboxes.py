"""Test helpers: email server profiles pointing at the test peers, and mailboxes for users
and queues (stored through the real models, so secrets are encrypted as in production)."""
from __future__ import annotations

import itertools

from server.db import db
from server.security.bootstrap import root_unit
from server.sync.models import EmailServerProfile, Mailbox

_names = itertools.count(1)


def make_profile(*, dovecot=None, smtp=None, incoming_protocol="imap", **fields) -> EmailServerProfile:
    """A profile reading from ``dovecot`` (IMAP or POP3, no TLS) and sending through the
    aiosmtpd ``smtp`` server, unless fields say otherwise."""
    values = dict(name=f"Profile {next(_names)}", incoming_protocol=incoming_protocol,
                  outgoing_protocol="smtp" if smtp else None, incoming_security="none",
                  outgoing_security="none", owning_business_unit_id=root_unit().id,
                  settings={"timeout": 10, "helo_name": "crm.contoso.example"})
    if dovecot is not None:
        values.update(incoming_host=dovecot.host,
                      incoming_port=dovecot.imap_port if incoming_protocol == "imap"
                      else dovecot.pop3_port)
    if smtp is not None:
        values.update(outgoing_host=smtp.host, outgoing_port=smtp.port)
    values.update(fields)
    profile = EmailServerProfile(**values)
    db.session.add(profile)
    db.session.flush()
    return profile


def make_mailbox(profile, *, user=None, queue=None, address=None, username=None,
                 password=None, **fields) -> Mailbox:
    owner = user or queue
    address = address or owner.email
    values = dict(name=address, email_address=address, user_id=user.id if user else None,
                  queue_id=queue.id if queue else None, server_profile=profile,
                  username=username, password=password, email_approved=True,
                  owning_business_unit_id=root_unit().id)
    values.update(fields)
    mailbox = Mailbox(**values)
    db.session.add(mailbox)
    db.session.commit()
    return mailbox
