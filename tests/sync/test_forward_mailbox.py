"""A forward mailbox made through the admin service, read over IMAP and POP3 from Dovecot:
forwards attached as message/rfc822 and inline are tracked for the user who forwarded them,
and with "delete messages after processing" they are gone from the server afterwards (a
second run finds nothing)."""
from __future__ import annotations

import secrets

import pytest

from server.db import db
from server.security import authz
from server.sync.admin import mailboxes as mailbox_admin
from server.sync.engine.run import sync_mailbox
from tests.sync import world as w


def _attached(sender: str, to: str, original: bytes) -> bytes:
    body = (b"--f\r\nContent-Type: text/plain\r\n\r\nFYI\r\n--f\r\nContent-Type: message/rfc822"
            b"\r\n\r\n" + original + b"\r\n--f--\r\n")
    return w.raw(sender=sender, to=to, subject="Fw: order", body=body,
                 extra=[("MIME-Version", "1.0"), ("Content-Type", 'multipart/mixed; boundary="f"')])


def _inline(sender: str, to: str, subject: str) -> bytes:
    body = ("Have a look.\r\n\r\n---------- Forwarded message ---------\r\n"
            "From: Ann Customer <ann@customer.example>\r\nDate: Tue, 5 Mar 2024 10:00:00 +0000\r\n"
            f"Subject: {subject}\r\nTo: {sender}\r\n\r\nWe need 40 more seats.\r\n")
    return w.raw(sender=sender, to=to, subject=f"Fwd: {subject}", body=body)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_forward_mailbox_made_in_the_admin_tracks_forwards_and_deletes_them(
        protocol, app, make_user, dovecot, make_mail_user):
    forward_mail = make_mail_user("crm-forward")
    admin = authz.principal(make_user(f"admin-{secrets.token_hex(3)}@org.example",
                                      roles=["System Administrator"]))
    bob = make_user(f"bob-{secrets.token_hex(3)}@org.example", name="Bob Seller")
    port = dovecot.imap_port if protocol == "imap" else dovecot.pop3_port
    prof = w.profile(protocol, incoming_host=dovecot.host, incoming_port=port,
                     incoming_security="none", settings={"timeout": 10})
    w.mailbox(bob, prof=prof, incoming_method="forward_mailbox", tracking_option="all")
    box = mailbox_admin.create_mailbox(admin, {
        "owner_kind": "forward", "email_address": forward_mail.username, "name": "CRM forward",
        "server_profile_id": str(prof.id), "delete_after_processing": "on"})
    mailbox_admin.update_mailbox(admin, box, {
        "name": "CRM forward", "email_address": forward_mail.username,
        "server_profile_id": str(prof.id), "username": forward_mail.username,
        "password": forward_mail.password, "delete_after_processing": "on"})
    box.enabled = box.email_approved = True
    db.session.commit()
    assert box.is_forward_mailbox and box.delete_after_processing and box.user_id is None

    attached_mid = f"att-{secrets.token_hex(4)}@customer.example"
    dovecot.deliver(forward_mail, _attached(bob.email, forward_mail.username,
                                            w.raw(mid=attached_mid, subject="Order")))
    dovecot.deliver(forward_mail, _inline(bob.email, forward_mail.username, "Seats"))
    result = sync_mailbox(box.id)
    assert (result.fetched, result.tracked) == (2, 2)
    assert w.tracked(attached_mid)[0].owner_user_id == bob.id
    assert [e.subject for e in w.emails(owner_user_id=bob.id) if e.subject == "Seats"]

    client = dovecot.imap_client(forward_mail)
    try:
        client.select_folder("INBOX", readonly=True)
        assert client.search() == []  # deleted after processing
    finally:
        client.logout()
    assert sync_mailbox(box.id).fetched == 0


def test_only_mailbox_administrators_make_forward_mailboxes(app, make_user):
    from server.errors import Forbidden, Invalid
    seller = authz.principal(make_user("sam@org.example"))
    prof = w.profile("imap", incoming_host="mail.example.com")
    db.session.commit()
    with pytest.raises(Forbidden):
        mailbox_admin.create_mailbox(seller, {"owner_kind": "forward", "server_profile_id":
                                              str(prof.id), "email_address": "fwd@org.example"})
    admin = authz.principal(make_user("ada@org.example", roles=["System Administrator"]))
    with pytest.raises(Invalid) as refused:
        mailbox_admin.create_mailbox(admin, {"owner_kind": "forward",
                                             "email_address": "fwd@org.example"})
    assert "server_profile_id" in refused.value.fields
