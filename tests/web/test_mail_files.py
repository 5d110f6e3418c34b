"""Email files on record pages and invitations on email pages: an .eml or .msg dropped on a
record (here posted as the form does; in Chromium dropped for real) is tracked regarding it
through the tracking service with the user's privileges; the form carries a CSRF token and
the file a size limit; a tracked email's invitation is shown and can be tracked as an
appointment regarding the same record."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from server.crm.activities import Appointment, Email
from server.db import db
from tests.sync import outlook_files

pytestmark = pytest.mark.both_databases

INVITE = (b"From: Yvonne McKay <yvonne@contoso.example>\r\nTo: user1@contoso.test\r\n"
          b"Subject: Tasting\r\nDate: Tue, 05 Mar 2024 10:00:00 +0000\r\n"
          b"Message-ID: <tasting@contoso.example>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
          b"--b\r\nContent-Type: text/plain\r\n\r\nCome taste the new beans.\r\n--b\r\n"
          b"Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n"
          b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:tasting-1@contoso.example\r\n"
          b"SUMMARY:Coffee <b>tasting</b>\r\nDTSTART:20240306T090000Z\r\nDTEND:20240306T100000Z\r\n"
          b"LOCATION:Room 4\r\nORGANIZER;CN=Yvonne McKay:mailto:yvonne@contoso.example\r\n"
          b"ATTENDEE;CN=Sam;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION:mailto:sam@contoso.test\r\n"
          b"ATTENDEE;CN=Opt;ROLE=OPT-PARTICIPANT:mailto:opt@contoso.test\r\n"
          b"END:VEVENT\r\nEND:VCALENDAR\r\n--b--\r\n")


def _upload(client, record, data: bytes, name: str, **extra):
    return client.post(f"/r/account/{record.id}/mail-files",
                       data={"file": (io.BytesIO(data), name), **extra},
                       content_type="multipart/form-data")


def _count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def test_an_eml_with_an_invitation_is_tracked_and_its_meeting_becomes_an_appointment(
        make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account")
    c = signin(user)
    page = c.get(f"/r/account/{account.id}").get_data(as_text=True)
    assert "data-mail-drop" in page and 'type="file"' in page and "mail-drop.js" in page
    r = _upload(c, account, INVITE, "tasting.eml")
    assert r.status_code == 302
    email = db.session.scalars(select(Email)).one()
    assert email.regarding_ref == ("account", account.id) and email.message_id == "tasting@contoso.example"
    detail = c.get(r.headers["Location"]).get_data(as_text=True)
    assert "Meeting invitation" in detail and "Room 4" in detail and "Yvonne McKay" in detail
    assert "Coffee &lt;b&gt;tasting&lt;/b&gt;" in detail and "<b>tasting" not in detail
    assert "Track as appointment" in detail
    made = c.post(f"/activities/{email.id}/meeting")
    assert made.status_code == 302
    appointment = db.session.scalars(select(Appointment)).one()
    assert appointment.global_object_id == "tasting-1@contoso.example"
    assert appointment.regarding_ref == ("account", account.id) and appointment.location == "Room 4"
    assert sorted((p.role, p.address) for p in appointment.parties) == [
        ("optional", "opt@contoso.test"), ("organizer", "yvonne@contoso.example"),
        ("required", "sam@contoso.test")]
    # Again: the same email and the same appointment, nothing twice.
    assert _upload(c, account, INVITE, "again.eml").status_code == 302
    assert c.post(f"/activities/{email.id}/meeting").status_code == 302
    assert _count(Email) == 1 and _count(Appointment) == 1


def test_a_msg_file_is_tracked_with_its_attachments(make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account")
    data = outlook_files.msg("Beans order", "Ten bags, please.", None,
                             sender=("Yvonne McKay", "yvonne@contoso.example"),
                             recipients=[(1, "Me", user.email)], files=[("order.pdf", b"%PDF-1 order")])
    assert _upload(signin(user), account, data, "Beans order.msg").status_code == 302
    email = db.session.scalars(select(Email)).one()
    assert email.subject == "Beans order" and email.text_body.strip() == "Ten bags, please."
    assert email.regarding_ref == ("account", account.id)
    assert [(a.filename, a.content_type) for a in email.attachments] == [
        ("order.pdf", "application/pdf"), ("Beans order.msg", "application/vnd.ms-outlook")]
    assert email.attachments[1].size == len(data)  # the original, to open in Outlook


@pytest.mark.parametrize("data, name", [(b"hello", "notes.txt"), (b"not an email", "x.eml"),
                                        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "x.msg")])
def test_what_is_no_email_file_is_refused_and_nothing_is_tracked(make_user, make_record, signin, data, name):
    user = make_user()
    account = make_record(user, "account")
    assert _upload(signin(user), account, data, name).status_code == 400
    assert _count(Email) == 0


def test_a_file_over_the_limit_is_refused(make_user, make_record, signin, monkeypatch):
    from server.sync import uploads
    from server.web import mail_files
    monkeypatch.setattr(uploads, "MAX_MAIL_FILE", 500)
    monkeypatch.setattr(mail_files, "MAX_MAIL_FILE", 500)
    user = make_user()
    account = make_record(user, "account")
    r = _upload(signin(user), account, INVITE + b"x" * 1000, "big.eml")
    assert r.status_code == 400 and "too large" in r.get_data(as_text=True)
    assert _count(Email) == 0


def test_a_record_in_another_unit_takes_no_file(make_user, make_unit, make_record, signin):
    owner = make_user()
    account = make_record(owner, "account")
    stranger = make_user(unit=make_unit("Elsewhere"))
    assert _upload(signin(stranger), account, INVITE, "x.eml").status_code in (403, 404)
    assert _count(Email) == 0


def test_the_upload_needs_the_forms_csrf_token(csrf_checked, make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account")
    c = signin(user)
    with csrf_checked():
        assert _upload(c, account, INVITE, "x.eml").status_code == 400
        assert _count(Email) == 0
        page = c.get(f"/r/account/{account.id}").get_data(as_text=True)
        form = page.split("data-mail-drop", 1)[1]
        token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert _upload(c, account, INVITE, "x.eml", csrf_token=token).status_code == 302
        assert _count(Email) == 1
