"""A profile's service account refused by its server is refused once, not once per mailbox
(``engine.service_accounts``): against a real Dovecot and a real SMTP server, the first
refusal (an idle probe's, a run's, a test's, a send's) holds the account for every mailbox
of the profile; none of them signs in as it again, none is turned off, one alert says why;
correcting the password in the profile, or trying it again there, lets one run sign in and
the others follow. A login made per mailbox (``{address}`` in it) stays each mailbox's own."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from server.crm.activities import Email
from server.db import db, utcnow
from server.security import authz
from server.sync.admin import profiles as profile_admin
from server.sync.admin.testing import test_and_enable
from server.sync.connectors.base import ConnectorError
from server.sync.engine import service_accounts
from server.sync.engine.run import sync_mailbox
from server.sync.models import Alert, EmailServerProfile, Mailbox
from tests.sync.mailboxes import make_mailbox, make_profile
from tests.sync.test_outgoing import outgoing_email
from tests.sync.test_scheduler import work

pytestmark = pytest.mark.both_databases

NEW_PASSWORD = "Rotated-pass-4"


@pytest.fixture
def team(app, make_user):
    admin = make_user("ada@org.example", roles=["System Administrator"], name="Ada Admin")
    sellers = [make_user(f"seller{n}@org.example", name=f"Seller {n}") for n in range(3)]
    return admin, sellers


def _shared(dovecot, service, sellers, **fields):
    """A profile whose three mailboxes all sign in as ``service``, each synced once."""
    profile = make_profile(dovecot=dovecot, use_service_account=True,
                           service_username=service.username,
                           service_password=service.password, **fields)
    boxes = [make_mailbox(profile, user=u, enabled=True) for u in sellers]
    for box in boxes:
        assert sync_mailbox(box.id).status == "success"
        db.session.commit()
    return profile, boxes


def _due(boxes) -> None:
    db.session.execute(update(Mailbox).where(Mailbox.id.in_([b.id for b in boxes]))
                       .values(next_sync_on=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def _rows(boxes) -> list[Mailbox]:
    db.session.expire_all()
    return [db.session.get(Mailbox, b.id) for b in boxes]


def _open_alerts(**where) -> list[Alert]:
    return list(db.session.scalars(select(Alert).filter_by(acknowledged_on=None, **where)))


def test_a_rotated_service_password_costs_one_failed_sign_in_for_all_mailboxes(
        app, team, dovecot, make_mail_user, sign_ins):
    admin, sellers = team
    service = make_mail_user()
    profile, boxes = _shared(dovecot, service, sellers)
    dovecot.add_user(service.username, NEW_PASSWORD)  # rotated on the server, not here
    _due(boxes)
    sign_ins.clear()

    # One slot: the batch's probe is the only sign-in under way (with more, each sign-in
    # already under way when the first refusal comes may be refused too).
    stats = work(app, "worker-a", concurrency=1)
    assert sign_ins == [service.username]  # the idle probe's, refused; nothing after it
    assert sorted(stats.runs) == sorted((b.id, "failure") for b in boxes)
    for row in _rows(boxes):  # waiting, not turned off
        assert row.enabled and row.incoming_status == "failure"
        assert profile.name in row.incoming_message and row.consecutive_failures == 0
        assert row.next_sync_on > utcnow()
    held = db.session.get(EmailServerProfile, profile.id)
    assert set(held.service_refusals) == {"incoming"}
    # (one alert; two runs at once may each have opened it before seeing the other's)
    assert {a.code for a in _open_alerts()} == {f"service_refused:{profile.id}"}

    # Later runs, and Test & Enable, stop before the server.
    _due(boxes)
    work(app, "worker-a")
    result = test_and_enable(_rows(boxes)[0])
    assert sign_ins == [service.username]
    assert not result.incoming.ok and result.incoming.code == service_accounts.CODE
    assert "Then test this mailbox again" in result.incoming.message
    db.session.rollback()

    # The password corrected in the profile: one run signs in, and the others follow.
    p = authz.principal(admin)
    form = {**profile_admin.profile_form(held), "service_password": NEW_PASSWORD}
    profile_admin.update_profile(p, held, {k: ("1" if v is True else "" if v in (None, False)
                                               else str(v)) for k, v in form.items()})
    db.session.commit()
    assert db.session.get(EmailServerProfile, profile.id).service_refusals is None
    assert _open_alerts() == []
    stats = work(app, "worker-a")
    assert len(stats.runs) == 1 and stats.runs[0][1] == "success"
    _due(boxes)
    stats = work(app, "worker-a")
    assert all(row.incoming_status == "success" for row in _rows(boxes))
    assert len(sign_ins) >= 3


def test_trying_the_account_again_signs_in_once_and_holds_it_again_if_still_refused(
        app, team, dovecot, make_mail_user, sign_ins, signin):
    admin, sellers = team
    service = make_mail_user()
    profile, boxes = _shared(dovecot, service, sellers)
    dovecot.add_user(service.username, NEW_PASSWORD)
    sign_ins.clear()
    assert sync_mailbox(boxes[1].id).status == "failure"  # a run's own refusal holds it too
    db.session.commit()
    assert sign_ins == [service.username]
    assert all(row.enabled for row in _rows(boxes))

    # Only who may change the profile may release it.
    assert signin(sellers[0]).post(f"/admin/sync/profiles/{profile.id}/try-again"
                                   ).status_code == 404  # (not even shown to them)
    db.session.expire_all()
    assert db.session.get(EmailServerProfile, profile.id).service_refusals
    c = signin(admin)
    page = c.get(f"/admin/sync/profiles/{profile.id}").get_data(as_text=True)
    assert "Try the service account again" in page and service.username in page
    listing = c.get("/admin/sync/profiles").get_data(as_text=True)
    assert "refused: mailboxes wait" in listing
    assert c.post(f"/admin/sync/profiles/{profile.id}/try-again").status_code == 302
    db.session.expire_all()
    assert db.session.get(EmailServerProfile, profile.id).service_refusals is None
    # Still wrong on the server: the one run asked for is refused, and the rest wait again.
    stats = work(app, "worker-a")
    assert len(stats.runs) == 1 and sign_ins == [service.username] * 2
    assert db.session.get(EmailServerProfile, profile.id).service_refusals
    _due(boxes)
    work(app, "worker-a")
    assert len(sign_ins) == 2 and all(row.enabled for row in _rows(boxes))


def test_a_refused_smtp_service_account_holds_sending_without_using_attempts(
        app, team, dovecot, make_mail_user, make_smtp_server):
    admin, sellers = team
    service = make_mail_user()
    smtp = make_smtp_server(auth=(service.username, NEW_PASSWORD))
    profile = make_profile(dovecot=dovecot, smtp=smtp, use_service_account=True,
                           service_username=service.username, service_password=service.password)
    boxes = [make_mailbox(profile, user=u, enabled=True) for u in sellers]
    mails = [outgoing_email(u) for u in sellers]
    smtp.auth_attempts.clear()
    _due(boxes)
    work(app, "worker-a", concurrency=1)  # (runs at once would each try: see above)
    assert [ok for _, ok in smtp.auth_attempts] == [False]  # once, for the three mailboxes
    for row in _rows(boxes):
        assert row.outgoing_enabled and row.outgoing_status == "failure"
        assert row.incoming_status == "success"  # mail is read: IMAP took the account
    held = db.session.get(EmailServerProfile, profile.id)
    assert set(held.service_refusals) == {"outgoing"}
    for mail in mails:
        waiting = db.session.get(Email, mail.id)
        assert waiting.status == "pending_send" and not waiting.delivery_attempts
    assert not _open_alerts(code="send_failed")

    smtp.auth = (service.username, service.password)  # put right on the server
    profile_admin.try_service_account_again(authz.principal(admin), held)
    db.session.commit()
    _due(boxes)
    work(app, "worker-a")
    assert all(db.session.get(Email, m.id).status == "sent" for m in mails)
    assert len(smtp.wait_for(3)) == 3


def test_a_login_made_per_mailbox_is_that_mailbox_s_own(app, make_user):
    """With ``{address}`` in the login (a Dovecot master user), a refusal may be about that
    mailbox alone: it is not held for the profile, and the mailbox is turned off as for its
    own password; a profile signing in with OAuth holds nothing either."""
    refused = ConnectorError("auth_failed", "refused", severity="auth")
    per_mailbox = make_profile(incoming_host="imap.contoso.example", use_service_account=True,
                               service_username="crm", service_password="x",
                               settings={"service_login": "{address}*{service}"})
    oauth = make_profile(incoming_host="imap.contoso.example", use_service_account=True,
                         service_username="crm", auth_method="oauth2")
    shared = make_profile(incoming_host="imap.contoso.example", use_service_account=True,
                          service_username="crm", service_password="x")
    own = make_profile(incoming_host="imap.contoso.example")
    for profile in (per_mailbox, oauth, own):
        assert service_accounts.hold(profile, "incoming", refused) is refused
        assert not profile.service_refusals
    # Only the server refusing the credentials themselves: not "that mailbox is not yours".
    denied = ConnectorError("impersonation_denied", "no", severity="auth")
    assert service_accounts.hold(shared, "incoming", denied) is denied
    held = service_accounts.hold(shared, "incoming", refused)
    assert held.severity == service_accounts.HELD and held.code == service_accounts.CODE
    service_accounts.check(shared, "outgoing")  # the other direction is not held
    with pytest.raises(ConnectorError) as held:
        service_accounts.check(shared, "incoming")
    assert held.value.severity == service_accounts.HELD and "crm" in held.value.message


def test_a_watcher_of_a_held_profile_waits_without_signing_in(app, team, dovecot,
                                                              make_mail_user, sign_ins,
                                                              monkeypatch):
    """Push: a watcher whose profile's service account is held neither signs in nor raises
    "push unavailable"; once a run signs in again (the password corrected), it watches."""
    from server.sync.workers import push
    from tests.sync import world as w
    from tests.sync.test_push_resilience import Watching, open_push_alert
    from tests.waiting import until
    monkeypatch.setattr(push, "WAIT_SECONDS", 0.2)
    _, sellers = team
    service = make_mail_user()
    profile, (box,) = _shared(dovecot, service, sellers[:1])
    dovecot.add_user(service.username, NEW_PASSWORD)
    assert sync_mailbox(box.id).status == "failure"
    db.session.commit()
    sign_ins.clear()
    watching = Watching(app, box, backoff=(0.1,))
    try:
        until(lambda: watching.watcher.waiting_for_a_run, "the hold noticed")
        assert sign_ins == [] and open_push_alert(box) is None
        assert watching.watcher.backoff.failures == 0

        held = db.session.get(EmailServerProfile, profile.id)
        held.service_password = NEW_PASSWORD
        service_accounts.release(held)
        db.session.commit()
        assert sync_mailbox(box.id).status == "success"
        db.session.commit()
        watching.healthy_after(w.ImapStore(dovecot, service))
        assert open_push_alert(box) is None
    finally:
        watching.close()



def test_test_and_enable_holds_the_account_for_the_next_mailbox(app, team, dovecot,
                                                                make_mail_user, sign_ins):
    """A bulk Test & Enable over a profile whose service password is wrong signs in once:
    the first mailbox's test is refused and says to correct the profile; the next one's
    test stops before the server."""
    _, sellers = team
    service = make_mail_user()
    profile = make_profile(dovecot=dovecot, use_service_account=True,
                           service_username=service.username, service_password="Wrong-pass-1")
    first, second = (make_mailbox(profile, user=u) for u in sellers[:2])
    sign_ins.clear()
    refused = test_and_enable(first).incoming
    db.session.commit()
    assert not refused.ok and refused.code == "auth_failed" and profile.name in refused.message
    waiting = test_and_enable(second).incoming
    db.session.commit()
    assert sign_ins == [service.username]
    assert not waiting.ok and waiting.code == service_accounts.CODE
    assert set(db.session.get(EmailServerProfile, profile.id).service_refusals) == {"incoming"}
