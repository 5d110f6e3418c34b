"""Deleting email server profiles and mailboxes on the sync administration pages: the
confirmation page says what goes and what stays, a profile in use is refused with the
mailboxes using it, a mailbox goes with its sync data but not with what it tracked, only
holders of the delete privilege may, and a post without a CSRF token is refused."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from server.crm.services import tracking
from server.crm.activities import Email
from server.crm.services.tracking import EmailContent
from server.db import db, utcnow
from server.security import authz
from server.security.bootstrap import root_unit
from server.sync.models import (Alert, EmailServerProfile, FolderRule, FolderState, Mailbox,
                                MessageDecision)

from tests.sync.world import draft_email

from .conftest import csrf_token_of

pytestmark = pytest.mark.both_databases  # the cascades on PostgreSQL too


@pytest.fixture
def bob(make_user):
    return make_user("bob@org.example", name="Bob Seller")


@pytest.fixture
def profile(app):
    prof = EmailServerProfile(name="Contoso IMAP", incoming_protocol="imap",
                              incoming_host="imap.contoso.example", outgoing_protocol="smtp",
                              outgoing_host="smtp.contoso.example", service_password="Svc-S3cret",
                              owning_business_unit_id=root_unit().id)
    db.session.add(prof)
    db.session.commit()
    return prof


def make_box(user, prof, address=None) -> Mailbox:
    box = Mailbox(name=user.full_name, email_address=address or user.email, user_id=user.id,
                  server_profile_id=prof.id, owning_business_unit_id=user.business_unit_id,
                  username=user.email, password="Mailbox-S3cret", email_approved=True)
    db.session.add(box)
    db.session.commit()
    return box


def page(response) -> str:
    return response.get_data(as_text=True)


def count(model, *conditions) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*conditions))


def test_a_profile_in_use_is_refused_with_the_mailboxes_using_it(admin_client, bob, profile):
    make_box(bob, profile)
    confirm = page(admin_client.get(f"/admin/sync/profiles/{profile.id}/delete"))
    assert "cannot be deleted" in confirm and "bob@org.example" in confirm
    assert "<button" not in confirm.split("<h1", 1)[1]  # nothing to confirm
    r = admin_client.post(f"/admin/sync/profiles/{profile.id}/delete")
    assert r.status_code == 409
    assert "used by 1 mailbox(es): bob@org.example" in page(r)
    assert db.session.get(EmailServerProfile, profile.id) is not None


def test_an_unused_profile_is_deleted_after_confirmation(admin_client, profile):
    edit = page(admin_client.get(f"/admin/sync/profiles/{profile.id}"))
    assert f"/admin/sync/profiles/{profile.id}/delete" in edit
    confirm = page(admin_client.get(f"/admin/sync/profiles/{profile.id}/delete"))
    assert "No mailbox uses this profile" in confirm and "Svc-S3cret" not in confirm
    r = admin_client.post(f"/admin/sync/profiles/{profile.id}/delete")
    assert r.status_code == 302 and r.headers["Location"].endswith("/admin/sync/profiles")
    db.session.expire_all()
    assert db.session.get(EmailServerProfile, profile.id) is None
    assert "was deleted" in page(admin_client.get("/admin/sync/profiles"))


def test_deleting_a_mailbox_keeps_what_it_tracked(admin_client, bob, profile):
    box = make_box(bob, profile)
    p = authz.principal(bob)
    tracked, _ = tracking.track_email(p, EmailContent(
        message_id="<order-1@fabrikam.example>", subject="Order",
        from_=("Ann", "ann@fabrikam.example"), to=[("Bob", "bob@org.example")],
        text_body="Five, please."), mailbox_id=box.id)
    draft = draft_email(p, None, to="ann@fabrikam.example", subject="Quote", body="Here.")
    draft.status = "pending_send"
    db.session.add_all([
        FolderRule(mailbox_id=box.id, user_id=bob.id, folder_key="k1", folder_name="INBOX/Deal"),
        FolderState(mailbox_id=box.id, folder_key="k1", folder_name="INBOX/Deal", cursor="1:5"),
        MessageDecision(mailbox_id=box.id, identity="order-1@fabrikam.example", tracked=True,
                        reason="From a contact.", activity_id=tracked.id),
        Alert(severity="error", code="auth_failed", message="The sign-in was refused.",
              mailbox_id=box.id, user_id=bob.id)])
    db.session.commit()

    confirm = page(admin_client.get(f"/admin/sync/mailboxes/{box.id}/delete"))
    assert "1 folder tracking rule " in confirm and "1 folder." in confirm
    assert "The 1 email it tracked" in confirm
    assert "1 outgoing email waiting to be sent from it: it stays waiting" in confirm
    assert "Mailbox-S3cret" not in confirm

    r = admin_client.post(f"/admin/sync/mailboxes/{box.id}/delete")
    assert r.status_code == 302 and r.headers["Location"].endswith("/admin/sync/mailboxes")
    db.session.expire_all()
    assert db.session.get(Mailbox, box.id) is None
    for model in (FolderRule, FolderState, MessageDecision, Alert):
        assert count(model) == 0, model
    kept = db.session.get(Email, tracked.id)
    assert kept is not None and kept.receiving_mailbox_id is None
    assert db.session.get(Email, draft.id).status == "pending_send"
    assert db.session.get(EmailServerProfile, profile.id) is not None  # now deletable
    assert admin_client.post(f"/admin/sync/profiles/{profile.id}/delete").status_code == 302


def test_a_mailbox_being_synced_is_not_deleted(admin_client, bob, profile):
    from datetime import timedelta
    box = make_box(bob, profile)
    box.lease_owner, box.lease_expires_on = "worker-1", utcnow() + timedelta(minutes=2)
    db.session.commit()
    r = admin_client.post(f"/admin/sync/mailboxes/{box.id}/delete")
    assert r.status_code == 409 and "synchronizing this mailbox right now" in page(r)
    assert db.session.get(Mailbox, box.id) is not None


def test_only_holders_of_the_delete_privilege_may(signin, make_user, bob, profile):
    box = make_box(bob, profile)
    manager = make_user("max@org.example", roles=["Sales Manager"], name="Max Manager")
    edit = signin(bob).get(f"/admin/sync/mailboxes/{box.id}")  # his own: read and write
    assert edit.status_code == 200 and f"/mailboxes/{box.id}/delete" not in page(edit)
    for user in (bob, manager):
        c = signin(user)
        assert c.get(f"/admin/sync/mailboxes/{box.id}/delete").status_code in (403, 404)
        assert c.post(f"/admin/sync/mailboxes/{box.id}/delete").status_code in (403, 404)
        assert c.post(f"/admin/sync/profiles/{profile.id}/delete").status_code in (403, 404)
    db.session.expire_all()
    assert db.session.get(Mailbox, box.id) is not None
    assert db.session.get(EmailServerProfile, profile.id) is not None


def test_a_delete_without_a_csrf_token_is_refused(app, admin_client, bob, profile):
    box = make_box(bob, profile)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert admin_client.post(f"/admin/sync/mailboxes/{box.id}/delete").status_code == 400
        assert admin_client.post(f"/admin/sync/profiles/{profile.id}/delete").status_code == 400
        db.session.expire_all()
        assert db.session.get(Mailbox, box.id) is not None
        confirm = page(admin_client.get(f"/admin/sync/mailboxes/{box.id}/delete"))
        assert re.search(r'<form method="post"[^>]*>\s*<input type="hidden" name="csrf_token"',
                         confirm)
        r = admin_client.post(f"/admin/sync/mailboxes/{box.id}/delete",
                              data={"csrf_token": csrf_token_of(confirm)})
        assert r.status_code == 302
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    db.session.expire_all()
    assert db.session.get(Mailbox, box.id) is None
