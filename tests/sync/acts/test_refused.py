"""A CalDAV/CardDAV server that refuses the sign-in of a mailbox's item sync (its password
changed there): the worker signs in with that password once, turns the mailbox's
appointments, contacts and tasks off with an error alert, and no later run signs in again
(servers lock accounts out after a few failed sign-ins) until someone corrects the password
and tests the mailbox again; its mail goes on meanwhile. Test & Enable turns the items off
on their own when only their test fails. Against Radicale, whose log counts the refusals."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select

from server.crm.activities import Appointment
from server.db import db, utcnow
from server.sync.admin.testing import test_and_enable
from server.sync.models import Alert, EmailServerProfile, Mailbox
from tests.sync.acts.conftest import RadicaleSide, event
from tests.sync.mailboxes import make_mailbox, make_profile
from tests.sync.test_scheduler import work

pytestmark = pytest.mark.both_databases

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


def refusals(radicale, username: str) -> int:
    """Sign-ins Radicale refused for ``username`` (its log says each)."""
    return sum(1 for line in radicale.log_text().splitlines()
               if "Failed login attempt" in line and f"'{username}'" in line)


def visit(app, box_id: int):
    """The mailbox due now, and a worker's pass over what is due."""
    db.session.get(Mailbox, box_id).next_sync_on = utcnow() - timedelta(seconds=1)
    stats = work(app)
    db.session.expire_all()
    return stats, db.session.get(Mailbox, box_id)


def open_alert(box_id: int) -> Alert | None:
    return db.session.scalar(select(Alert).where(Alert.mailbox_id == box_id,
                                                 Alert.code == "acts_failed",
                                                 Alert.acknowledged_on.is_(None)))


def summaries() -> set[str]:
    return set(db.session.scalars(select(Appointment.subject)))


def test_a_refused_caldav_sign_in_turns_the_items_off_until_tested_again(
        app, make_user, radicale):
    side = RadicaleSide(radicale)
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    dav = side.users[ann.id]
    with side.client(ann) as client:
        side.server(client, "appointment").put(event("a@x", "Kick-off", TRACKED), "a@x")
    stats, row = visit(app, box.id)
    assert summaries() == {"Kick-off"} and row.acts_enabled and row.acts_status == "success"

    changed = secrets.token_urlsafe(12)
    radicale.add_user(dav.username, changed)  # the password changed on the server
    before = refusals(radicale, dav.username)
    stats, row = visit(app, box.id)
    assert refusals(radicale, dav.username) == before + 1
    assert row.enabled and not row.acts_enabled and row.acts_status == "failure"
    assert "test and enable the mailbox again" in row.acts_message
    alert = open_alert(box.id)
    assert alert.severity == "error" and "were turned off" in alert.message

    stats, row = visit(app, box.id)  # the next runs leave the server alone
    stats, row = visit(app, box.id)
    assert refusals(radicale, dav.username) == before + 1 and row.enabled

    row.password = changed  # put right in Regarding, then tested
    result = test_and_enable(row)
    assert result.enabled and result.acts.ok and row.acts_enabled
    db.session.commit()
    _put_as(radicale, dav.username, changed, "b@x", "Follow-up")
    stats, row = visit(app, box.id)
    assert summaries() == {"Kick-off", "Follow-up"} and row.acts_status == "success"
    assert open_alert(box.id) is None


def _put_as(radicale, username: str, password: str, uid: str, summary: str) -> None:
    """The user's calendar app adds a tracked event, signed in with ``password``."""
    from server.sync.connectors.base import Account
    from server.sync.connectors.caldav import CalDavStore
    account = Account(username, host=radicale.host, port=radicale.port, security="none",
                      username=username, password=password)
    with CalDavStore(account) as store:
        store.put(store.collections("appointment")[0], event(uid, summary, TRACKED))


def test_test_and_enable_turns_the_items_off_alone_when_only_their_test_fails(
        app, make_user, radicale, dovecot, mail_user):
    """Mail through Dovecot, items through a CalDAV profile with a service account of its
    own whose password Radicale refuses: the mailbox is enabled for its mail, its items stay
    off and say so, and its runs read mail without signing in to Radicale."""
    ann = make_user("ann@contoso.test")
    service = radicale.add_user(f"service-{secrets.token_hex(4)}", secrets.token_urlsafe(12))
    acts = EmailServerProfile(
        name="Calendars", incoming_protocol="caldav", incoming_host=radicale.host,
        incoming_port=radicale.port, incoming_security="none", use_service_account=True,
        service_username=service.username, service_password="not-the-password",
        owning_business_unit_id=ann.business_unit_id, settings={"timeout": 10})
    db.session.add(acts)
    db.session.flush()
    box = make_mailbox(make_profile(dovecot=dovecot), user=ann, username=mail_user.username,
                       password=mail_user.password, outgoing_method="none",
                       acts_method="server_side_sync", acts_profile_id=acts.id)
    result = test_and_enable(box)
    assert result.enabled and result.incoming.ok and not result.acts.ok
    assert not box.acts_enabled and "appointments, contacts and tasks stay off" in result.message
    db.session.commit()
    tried = refusals(radicale, service.username)
    assert tried == 1
    stats, row = visit(app, box.id)
    assert stats.runs == [(box.id, "success")] and row.last_success_on is not None
    assert refusals(radicale, service.username) == tried and not row.acts_enabled
