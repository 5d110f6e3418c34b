"""The mailbox provisioning API: forward mailboxes created, read, changed (the password
write-only, never returned) and deleted by a mailbox administrator and refused to a
salesperson; a bulk job started and read with its result per mailbox; the forwarding rule
action on a user's mailbox; bad bodies get typed 4xx errors."""
from __future__ import annotations

from sqlalchemy import text

from server.db import db
from server.sync.admin import jobs
from server.sync.models import EmailServerProfile, Mailbox
from tests.api.conftest import error_of
from tests.sync.mailboxes import make_profile


def _profile() -> EmailServerProfile:
    return make_profile(name="Contoso IMAP", incoming_host="mail.contoso.example",
                        incoming_port=993)


def test_a_forward_mailbox_through_the_api(api_client, admin, seller):
    prof = _profile()
    api = api_client(admin)
    made = api.post("/api/v1/forward_mailboxes", json={
        "email_address": "crm@contoso.test", "name": "CRM forward", "server_profile_id": prof.id,
        "username": "crm", "password": "Pa55-word!", "delete_after_processing": True,
        "process_emails_after": "2026-01-01"})
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert (body["email_address"], body["has_password"], body["delete_after_processing"],
            body["process_emails_after"]) == ("crm@contoso.test", True, True, "2026-01-01")
    assert "Pa55" not in made.get_data(as_text=True)
    stored = db.session.execute(text("SELECT password FROM mailbox WHERE id = :i"),
                                {"i": body["id"]}).scalar()
    assert "Pa55" not in stored
    one = made.headers["Location"]
    changed = api.patch(one, json={"delete_after_processing": False})
    assert changed.status_code == 200 and changed.get_json()["delete_after_processing"] is False
    assert changed.get_json()["has_password"] is True  # kept
    assert [m["id"] for m in api.get("/api/v1/forward_mailboxes").get_json()["items"]] == \
        [body["id"]]
    assert error_of(api.patch(one, json={"delete_after_processing": "yes"}))["code"] == "invalid"
    assert error_of(api.post("/api/v1/forward_mailboxes", json={"owner": "x"}))["fields"] == \
        {"owner": "Unknown field."}
    refused = api_client(seller).post("/api/v1/forward_mailboxes", json={
        "email_address": "other@contoso.test", "server_profile_id": prof.id})
    assert refused.status_code == 403
    assert api.delete(one).status_code == 204
    assert api.get(one).status_code == 404


def test_a_bulk_job_and_a_forward_rule_through_the_api(api_client, admin, seller):
    prof = _profile()
    box = Mailbox(name="Sam", email_address=seller.email, user_id=seller.id,
                  server_profile_id=prof.id, incoming_method="forward_mailbox",
                  owning_business_unit_id=seller.business_unit_id)
    db.session.add(box)
    db.session.commit()
    api = api_client(admin)
    started = api.post("/api/v1/mailbox_jobs", json={"kind": "approve", "mailbox_ids": [box.id]})
    assert started.status_code == 201
    assert started.get_json()["items"][0]["status"] == "pending"
    assert jobs.work("api-test") == 1
    done = api.get(started.headers["Location"]).get_json()
    assert (done["done"], done["percent"], done["finished"]) == (1, 100, True)
    assert api_client(seller).post("/api/v1/mailbox_jobs", json={
        "kind": "approve", "mailbox_ids": [box.id]}).status_code == 403
    assert error_of(api.post("/api/v1/mailbox_jobs", json={"kind": "approve",
                                                           "mailbox_ids": "all"}))
    rule = api.post(f"/api/v1/mailboxes/{box.id}/forward_rule", json={"action": "deploy"})
    assert rule.status_code == 400  # no forward mailbox exists yet
    assert "no forward mailbox" in error_of(rule)["message"]
    assert error_of(api.post(f"/api/v1/mailboxes/{box.id}/forward_rule",
                             json={"action": "explode"}))["fields"]["action"]
