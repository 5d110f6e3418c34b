"""Tracked email through the REST API goes through the tracking service (``track_email``),
as the add-in and server-side sync do: one activity per email across users and paths (by
Message-ID, else by a content hash), the organization's "two activities between users"
setting, pending track requests completed, and the request's own parties and fields kept."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.services import tracking
from server.crm.activities import Email
from server.crm.models import Organization
from server.crm.services.tracked import TrackRequest
from server.crm.services.tracking import EmailContent
from server.db import db
from server.security import authz

from .conftest import error_of

pytestmark = pytest.mark.both_databases

RECEIVED = {"type": "email", "direction": "incoming", "subject": "Order",
            "received_on": "2026-11-01T08:00:00Z", "text_body": "Please send 5.",
            "parties": [{"role": "from", "address": "buyer@fabrikam.test"},
                        {"role": "to", "address": "sam@contoso.test"}]}


@pytest.fixture
def api(api_client, seller):
    return api_client(seller)


def test_without_a_message_id_the_content_identifies_it(api):
    r = api.post("/api/v1/activities", json=RECEIVED)
    assert r.status_code == 201, r.get_json()
    email = r.get_json()
    assert email["message_id"].startswith("sha256:") and email["status"] == "received"
    assert email["state"] == "completed" and email["occurred_on"] == "2026-11-01T08:00:00Z"
    again = api.post("/api/v1/activities", json=RECEIVED)
    assert again.status_code == 409 and "same sender" in error_of(again)["fields"]["message_id"]
    other = api.post("/api/v1/activities", json={**RECEIVED, "text_body": "Please send 6."})
    assert other.status_code == 201
    assert db.session.query(Email).count() == 2


def test_an_email_the_add_in_tracked_for_someone_else_is_a_conflict(api, seller2):
    tracking.track_email(authz.principal(seller2), EmailContent(
        message_id="<Order-9@Fabrikam.TEST>", subject="Order", from_=("", "buyer@fabrikam.test"),
        to=[("", "sue@contoso.test"), ("", "sam@contoso.test")], text_body="Please send 9."))
    db.session.commit()
    r = api.post("/api/v1/activities", json={**RECEIVED, "message_id": "<Order-9@fabrikam.test>"})
    assert r.status_code == 409 and "Message-ID" in error_of(r)["fields"]["message_id"]
    assert db.session.query(Email).count() == 1


def test_email_between_two_users_is_two_activities_when_the_org_says_so(api_client, seller,
                                                                         seller2):
    org = db.session.get(Organization, 1)
    org.track_between_users_as_two = True
    db.session.commit()
    body = {"type": "email", "direction": "outgoing", "subject": "Lunch?",
            "message_id": "<lunch-1@contoso.test>", "sent_on": "2026-11-02T11:00:00Z",
            "text_body": "At noon?",
            "parties": [{"role": "from", "address": "sam@contoso.test"},
                        {"role": "to", "address": "sue@contoso.test"}]}
    first = api_client(seller).post("/api/v1/activities", json=body)
    second = api_client(seller2).post("/api/v1/activities",
                                      json={**body, "direction": "incoming",
                                            "received_on": "2026-11-02T11:00:05Z"})
    assert (first.status_code, second.status_code) == (201, 201), second.get_json()
    owners = db.session.execute(select(Email.owner_user_id, Email.direction)
                                .order_by(Email.id)).all()
    assert owners == [(seller.id, "outgoing"), (seller2.id, "incoming")]
    assert api_client(seller).post("/api/v1/activities", json=body).status_code == 409


def test_a_pending_track_request_is_completed_and_gives_its_regarding(api, seller):
    account = api.post("/api/v1/accounts", json={"name": "Fabrikam"}).get_json()
    tracking.request_tracking(authz.principal(seller), "<Reply-7@fabrikam.test>",
                              subject="Re: Order", regarding=("account", account["id"]))
    db.session.commit()
    r = api.post("/api/v1/activities", json={**RECEIVED, "message_id": "<Reply-7@fabrikam.test>"})
    assert r.status_code == 201, r.get_json()
    email = r.get_json()
    assert email["regarding"]["id"] == account["id"]
    request = db.session.scalar(select(TrackRequest))
    assert request.status == "done" and request.activity_id == email["id"]


def test_the_request_keeps_its_parties_fields_and_sanitized_body(api, seller):
    contact = api.post("/api/v1/contacts", json={"last_name": "Buyer",
                                                 "email1": "buyer@fabrikam.test"}).get_json()
    r = api.post("/api/v1/activities", json={
        **RECEIVED, "message_id": "<html-1@fabrikam.test>", "priority": "high",
        "description": "Call back", "html_body": '<p onclick="x()">Hi<script>x()</script></p>',
        "text_body": None,
        "parties": [{"role": "from", "address": "other@fabrikam.test", "name": "Jo",
                     "record": {"type": "contact", "id": contact["id"]}},
                    {"role": "cc", "address": "boss@fabrikam.test"}]})
    assert r.status_code == 201, r.get_json()
    email = r.get_json()
    assert (email["priority"], email["description"]) == ("high", "Call back")
    assert "script" not in email["html_body"] and "onclick" not in email["html_body"]
    assert email["text_body"].strip() == "Hi"
    sender = email["parties"][0]
    assert sender["role"] == "from" and sender["record"]["id"] == contact["id"]
    assert sender["address"] == "other@fabrikam.test"
    assert email["sender_address"] == "other@fabrikam.test"
    assert [p["role"] for p in email["parties"]] == ["from", "cc"]
