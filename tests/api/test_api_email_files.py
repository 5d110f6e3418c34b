"""``POST /api/v1/email-files``: an .eml file tracked regarding a record through the tracking
service, with the caller's privileges; the same file again is the same email; what is not
an email is refused with a reason and tracks nothing."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from server.crm.activities import Email
from server.db import db

from .conftest import SAMPLES

pytestmark = pytest.mark.both_databases

EML = (b"From: Buyer <buyer@fabrikam.test>\r\nTo: sam@contoso.test\r\nSubject: Order 5\r\n"
       b"Date: Tue, 05 Mar 2024 10:00:00 +0000\r\nMessage-ID: <order5@fabrikam.test>\r\n"
       b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n \r\n"
       b"--b\r\nContent-Type: text/plain\r\n\r\nPlease send 5.\r\n--b\r\n"
       b"Content-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n"
       b"BEGIN:VEVENT\r\nUID:call-1@fabrikam.test\r\nSUMMARY:Order call\r\n"
       b"DTSTART:20240306T090000Z\r\nDTEND:20240306T093000Z\r\n"
       b"ORGANIZER;CN=Buyer:mailto:buyer@fabrikam.test\r\n"
       b"ATTENDEE;CN=Sam;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION:mailto:sam@contoso.test\r\n"
       b"END:VEVENT\r\nEND:VCALENDAR\r\n--b--\r\n")


def _post(client, data: bytes, name: str, regarding: str | None):
    form = {"file": (io.BytesIO(data), name)}
    if regarding:
        form["regarding"] = regarding
    return client.client.post("/api/v1/email-files", data=form, content_type="multipart/form-data",
                              headers={"Authorization": f"Bearer {client.token}"})


def test_an_eml_file_is_tracked_regarding_a_record_once(api_client, seller):
    api = api_client(seller)
    account = api.post("/api/v1/accounts", json=SAMPLES["account"]).get_json()
    first = _post(api, EML, "order.eml", f"account:{account['id']}")
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["created"] and body["regarding"] == {"type": "account", "id": account["id"]}
    email = db.session.get(Email, body["id"])
    assert email.message_id == "order5@fabrikam.test" and email.text_body.strip() == "Please send 5."
    assert [a.content_type for a in email.attachments] == ["text/calendar"]
    again = _post(api, EML, "order.eml", None)
    assert again.status_code == 200 and again.get_json()["id"] == body["id"]
    assert db.session.scalar(select(func.count()).select_from(Email)) == 1


@pytest.mark.parametrize("data, name", [(b"not mail at all", "x.eml"), (EML, "order.pdf"),
                                        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1junk", "x.msg"), (b"", "x.eml")])
def test_what_is_not_an_email_file_is_refused(api_client, seller, data, name):
    r = _post(api_client(seller), data, name, None)
    assert r.status_code == 400 and r.get_json()["error"]["fields"]["file"]
    assert db.session.scalar(select(func.count()).select_from(Email)) == 0


def test_a_file_without_message_id_is_one_email_however_often_it_is_posted(api_client, seller):
    api = api_client(seller)
    data = EML.replace(b"Message-ID: <order5@fabrikam.test>\r\n", b"")
    first, again = _post(api, data, "a.eml", None), _post(api, data, "b.eml", None)
    assert first.status_code == 201 and again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]
    assert db.session.get(Email, first.get_json()["id"]).message_id.startswith("sha256:")
