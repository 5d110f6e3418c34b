"""Activities through the REST API: tasks, phone calls, appointments and emails (drafts and
tracked), their parties and regarding, listing and timelines with cursor paging, and
attachments with privilege checks."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from server.crm.activities import Activity, Attachment, Email
from server.db import db
from server.security.models import Role, RolePrivilege

from .conftest import error_of

pytestmark = pytest.mark.both_databases


@pytest.fixture
def api(api_client, seller):
    return api_client(seller)


@pytest.fixture
def account(api):
    return api.post("/api/v1/accounts", json={"name": "Contoso", "email1": "info@contoso.test"}).get_json()


def test_task_lifecycle(api, account):
    r = api.post("/api/v1/activities", json={
        "type": "task", "subject": "Send the quote", "priority": "high", "category": "Sales",
        "scheduled_end": "2026-12-01T17:00:00+01:00",
        "regarding": {"type": "account", "id": account["id"]}})
    assert r.status_code == 201, r.get_json()
    task = r.get_json()
    assert r.headers["Location"].endswith(f"/api/v1/activities/{task['id']}")
    assert task["type"] == "task" and task["state"] == "open" and task["percent_complete"] == 0
    assert task["scheduled_end"] == "2026-12-01T16:00:00Z"
    assert task["regarding"] == {"id": account["id"], "type": "account", "name": "Contoso"}
    url = f"/api/v1/activities/{task['id']}"
    r = api.patch(url, json={"state": "completed"})
    assert r.status_code == 200
    assert r.get_json()["percent_complete"] == 100 and r.get_json()["actual_end"] is not None
    r = api.patch(url, json={"percent_complete": 101})
    assert r.status_code == 400 and "percent_complete" in error_of(r)["fields"]
    r = api.patch(url, json={"regarding": None, "status": "sent", "colour": 1})
    assert r.status_code == 400
    assert set(error_of(r)["fields"]) == {"regarding", "status", "colour"}
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_phone_call_and_appointment_with_parties(api, account, seller):
    r = api.post("/api/v1/activities", json={
        "type": "phone_call", "subject": "Follow up", "direction": "outgoing",
        "phone_number": "+1 555 0100",
        "parties": [{"role": "from", "record": {"type": "user", "id": seller.id}},
                    {"role": "to", "record": {"type": "account", "id": account["id"]}}]})
    assert r.status_code == 201, r.get_json()
    parties = r.get_json()["parties"]
    assert [(p["role"], p["record"]["type"], p["address"]) for p in parties] == [
        ("from", "user", seller.email), ("to", "account", "info@contoso.test")]
    r = api.post("/api/v1/activities", json={
        "type": "appointment", "subject": "Kick-off", "location": "Room 1",
        "scheduled_start": "2026-12-02T09:00:00Z", "scheduled_end": "2026-12-02T10:00:00Z",
        "parties": [{"role": "organizer", "address": seller.email},
                    {"role": "required", "address": "INFO@contoso.test", "name": "Contoso desk"},
                    {"role": "optional", "address": "stranger@elsewhere.test"}]})
    assert r.status_code == 201, r.get_json()
    meeting = r.get_json()
    assert meeting["occurred_on"] == "2026-12-02T09:00:00Z"
    records = [p["record"] and p["record"]["type"] for p in meeting["parties"]]
    assert records == ["user", "account", None]  # resolved by address where known
    assert meeting["parties"][1]["name"] == "Contoso desk"
    r = api.patch(f"/api/v1/activities/{meeting['id']}", json={"scheduled_end": "2026-12-02T08:00:00Z"})
    assert r.status_code == 400 and "scheduled_end" in error_of(r)["fields"]
    r = api.patch(f"/api/v1/activities/{meeting['id']}",
                  json={"parties": [{"role": "organizer", "address": seller.email}]})
    assert len(r.get_json()["parties"]) == 1


@pytest.mark.parametrize("body,field", [
    ({"type": "fax", "subject": "x"}, "type"),
    ({"subject": "x"}, "type"),
    ({"type": "task"}, "subject"),
    ({"type": "task", "subject": "x", "scheduled_end": "tomorrow"}, "scheduled_end"),
    ({"type": "task", "subject": "x", "scheduled_end": "2026-12-01T10:00:00"}, "scheduled_end"),
    ({"type": "task", "subject": "x", "priority": "urgent"}, "priority"),
    ({"type": "task", "subject": "x", "parties": [{"role": "to", "address": "a@b.test"}]}, "parties"),
    ({"type": "phone_call", "subject": "x", "parties": [{"role": "bcc", "address": "a@b.test"}]},
     "parties[0].role"),
    ({"type": "phone_call", "subject": "x", "parties": [{"role": "to"}]}, "parties[0]"),
    ({"type": "phone_call", "subject": "x", "parties": [{"role": "to", "address": "nope"}]},
     "parties[0].address"),
    ({"type": "phone_call", "subject": "x", "parties": [{"role": "to", "extra": 1,
                                                          "address": "a@b.test"}]},
     "parties[0].extra"),
    ({"type": "phone_call", "subject": "x", "parties": "everyone"}, "parties"),
    ({"type": "phone_call", "subject": "x",
      "parties": [{"role": "to", "record": {"type": "contact", "id": 999}}]}, "parties[0].record"),
    ({"type": "phone_call", "subject": "x",
      "parties": [{"role": "to", "record": {"type": "opportunity", "id": 1}}]}, "parties[0].record"),
    ({"type": "task", "subject": "x", "regarding": {"type": "queue", "id": 1}}, "regarding"),
    ({"type": "task", "subject": "x", "regarding": {"type": "account", "id": 999}}, "regarding"),
    ({"type": "task", "subject": "x", "regarding": "account"}, "regarding"),
    ({"type": "task", "subject": "x", "status": "sent"}, "status"),
    ({"type": "task", "subject": "x", "owner": {"type": "user", "id": 999}}, "owner"),
])
def test_bad_activity_bodies_are_400(api, body, field):
    r = api.post("/api/v1/activities", json=body)
    assert r.status_code == 400, r.get_json()
    assert field in error_of(r)["fields"]
    assert db.session.query(Activity).count() == 0


def test_email_draft_is_sanitized_and_sent_from_the_caller(api, seller):
    r = api.post("/api/v1/activities", json={
        "type": "email", "subject": "Quote", "direction": "outgoing",
        "html_body": '<p onclick="x()">Hello<script>alert(1)</script></p>',
        "parties": [{"role": "to", "address": "info@contoso.test"}]})
    assert r.status_code == 201, r.get_json()
    email = r.get_json()
    assert email["status"] == "draft"
    assert "script" not in email["html_body"] and "onclick" not in email["html_body"]
    assert "Hello" in email["html_body"]
    assert email["parties"][0]["role"] == "from" and email["parties"][0]["record"]["id"] == seller.id
    assert email["sender_address"] == seller.email
    r = api.patch(f"/api/v1/activities/{email['id']}", json={"html_body": "<b>Hi</b><iframe></iframe>",
                                                             "subject": "Quote v2"})
    assert r.status_code == 200
    assert r.get_json()["html_body"] == "<b>Hi</b>" and r.get_json()["subject"] == "Quote v2"
    r = api.post("/api/v1/activities", json={"type": "email", "message_id": "<a@b>"})
    assert r.status_code == 400 and "message_id" in error_of(r)["fields"]  # drafts have none


def test_tracked_incoming_email_is_deduplicated_and_keeps_its_content(api, account):
    body = {"type": "email", "direction": "incoming", "subject": "Order",
            "message_id": "<Order-1@Contoso.TEST>", "received_on": "2026-11-01T08:00:00Z",
            "text_body": "Please send 5.",
            "parties": [{"role": "from", "address": "info@contoso.test"}],
            "regarding": {"type": "account", "id": account["id"]}}
    r = api.post("/api/v1/activities", json=body)
    assert r.status_code == 201, r.get_json()
    email = r.get_json()
    assert (email["status"], email["message_id"], email["occurred_on"]) == (
        "received", "Order-1@contoso.test", "2026-11-01T08:00:00Z")
    assert email["parties"][0]["record"]["type"] == "account"
    r = api.post("/api/v1/activities", json=body)
    assert r.status_code == 409 and "message_id" in error_of(r)["fields"]
    assert db.session.query(Email).count() == 1
    url = f"/api/v1/activities/{email['id']}"
    r = api.patch(url, json={"subject": "Changed"})
    assert r.status_code == 422 and error_of(r)["code"] == "unprocessable"
    assert api.patch(url, json={"state": "completed"}).status_code == 200
    assert api.patch(url, json={"direction": "outgoing"}).status_code == 400


def test_tracking_needs_the_track_email_privilege(api_client, make_user):
    role = Role(name="Activities only")
    role.privileges = [RolePrivilege(privilege=f"activity.{p}", depth=1)
                       for p in ("create", "read", "write")]
    db.session.add(role)
    db.session.commit()
    user = make_user(roles=["Activities only"])
    api = api_client(user)
    r = api.post("/api/v1/activities", json={"type": "email", "direction": "incoming",
                                             "subject": "x", "message_id": "<x@y>"})
    assert r.status_code == 403
    assert api.post("/api/v1/activities", json={"type": "email", "subject": "draft"}).status_code == 201


def test_set_and_clear_regarding(api, api_client, admin, csr, account):
    task = api.post("/api/v1/activities", json={"type": "task", "subject": "Call"}).get_json()
    url = f"/api/v1/activities/{task['id']}/regarding"
    r = api.put(url, json={"regarding": {"type": "account", "id": account["id"]}})
    assert r.status_code == 200 and r.get_json()["regarding"]["id"] == account["id"]
    r = api.put(url, json={"regarding": None})
    assert r.status_code == 200 and r.get_json()["regarding"] is None
    assert api.put(url, json={}).status_code == 400
    assert api.put(url, json={"regarding": {"type": "account", "id": 999}}).status_code == 400
    assert api.put(url, json={"regarding": None, "x": 1}).status_code == 400
    other = api_client(csr)
    opp = api_client(admin).post("/api/v1/opportunities", json={"name": "Cory's"}).get_json()
    api_client(admin).post(f"/api/v1/opportunities/{opp['id']}/assign",
                           json={"owner": {"type": "user", "id": csr.id}})
    own = other.post("/api/v1/activities", json={"type": "task", "subject": "Mine"}).get_json()
    # the CSR reads their opportunity but has no append-to on opportunities
    r = other.put(f"/api/v1/activities/{own['id']}/regarding",
                  json={"regarding": {"type": "opportunity", "id": opp["id"]}})
    assert r.status_code == 403


def test_regarding_needs_append_on_the_activity(api_client, make_user, account):
    role = Role(name="Write but not append")
    role.privileges = [RolePrivilege(privilege=f"activity.{p}", depth=1)
                       for p in ("create", "read", "write")]
    role.privileges += [RolePrivilege(privilege=f"account.{p}", depth=4)
                        for p in ("read", "append_to")]
    db.session.add(role)
    db.session.commit()
    api = api_client(make_user(roles=["Write but not append"]))
    task = api.post("/api/v1/activities", json={"type": "task", "subject": "x"}).get_json()
    r = api.put(f"/api/v1/activities/{task['id']}/regarding",
                json={"regarding": {"type": "account", "id": account["id"]}})
    assert r.status_code == 403
    r = api.post("/api/v1/activities", json={"type": "task", "subject": "y",
                                             "regarding": {"type": "account", "id": account["id"]}})
    assert r.status_code == 403
    assert api.put(f"/api/v1/activities/{task['id']}/regarding", json={"regarding": None}).status_code == 200


def test_activity_privileges_follow_the_roles(api_client, api, seller2, outsider, account):
    task = api.post("/api/v1/activities", json={"type": "task", "subject": "Mine"}).get_json()
    url = f"/api/v1/activities/{task['id']}"
    colleague, stranger = api_client(seller2), api_client(outsider)
    assert colleague.get(url).status_code == 200  # activities: business unit read
    assert colleague.patch(url, json={"subject": "Hers"}).status_code == 403
    assert colleague.delete(url).status_code == 403
    for method, body in (("get", None), ("patch", {"subject": "x"}), ("delete", None)):
        r = getattr(stranger, method)(url, **({"json": body} if body else {}))
        assert r.status_code == 404
    assert stranger.get("/api/v1/activities").get_json()["items"] == []
    db.session.expire_all()
    assert db.session.get(Activity, task["id"]).subject == "Mine"


def _make_activities(api, account, n):
    ids = []
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        start = (base + timedelta(days=i % 4)).isoformat()  # shared times test the id tiebreak
        r = api.post("/api/v1/activities", json={
            "type": "appointment" if i % 2 else "task", "subject": f"A{i}",
            "scheduled_start": start, "regarding": {"type": "account", "id": account["id"]}})
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    return ids


def _walk(api, url):
    seen, cursor = [], None
    while True:
        body = api.get(url + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [(item["occurred_on"], item["id"]) for item in body["items"]]
        cursor = body["next"]
        if not cursor:
            return seen


def test_timeline_pages_newest_first_without_repeats(api, account):
    ids = _make_activities(api, account, 9)
    seen = _walk(api, f"/api/v1/accounts/{account['id']}/timeline?page_size=2")
    assert sorted(i for _, i in seen) == sorted(ids)
    assert seen == sorted(seen, reverse=True)
    only = api.get(f"/api/v1/accounts/{account['id']}/timeline?type=task&page_size=50").get_json()
    assert {item["type"] for item in only["items"]} == {"task"}
    assert api.get(f"/api/v1/accounts/{account['id']}/timeline?type=fax").status_code == 400
    assert "html_body" not in str(only)


def test_timeline_pages_load_references_without_n_plus_1(api, account, count_queries, seller):
    _make_activities(api, account, 10)
    api.post("/api/v1/activities", json={
        "type": "phone_call", "subject": "Call", "regarding": {"type": "account", "id": account["id"]},
        "parties": [{"role": "from", "record": {"type": "user", "id": seller.id}},
                    {"role": "to", "address": "info@contoso.test"}]})
    url = f"/api/v1/accounts/{account['id']}/timeline?page_size="
    api.get(url + "1")  # warm: the caller's roles are loaded once
    with count_queries() as few:
        assert len(api.get(url + "2").get_json()["items"]) == 2
    with count_queries() as many:
        assert len(api.get(url + "11").get_json()["items"]) == 11
    assert few[0] == many[0]


def test_activity_list_filters_and_pages(api, account, count_queries):
    ids = _make_activities(api, account, 7)
    api.post("/api/v1/activities", json={"type": "task", "subject": "Unrelated"})
    seen = _walk(api, "/api/v1/activities?page_size=3&regarding=account:" + str(account["id"]))
    assert sorted(i for _, i in seen) == sorted(ids)
    body = api.get("/api/v1/activities?type=task&page_size=200").get_json()
    assert len(body["items"]) == 5
    assert [i["subject"] for i in api.get("/api/v1/activities?regarding=none").get_json()["items"]] == ["Unrelated"]
    assert [i["subject"] for i in api.get("/api/v1/activities?q=unrel").get_json()["items"]] == ["Unrelated"]
    api.patch(f"/api/v1/activities/{ids[0]}", json={"state": "canceled"})
    assert [i["id"] for i in api.get("/api/v1/activities?state=canceled").get_json()["items"]] == [ids[0]]
    assert api.get("/api/v1/activities?state=done").status_code == 400
    assert api.get("/api/v1/activities?regarding=queue:1").status_code == 400
    api.get("/api/v1/activities?page_size=1")  # warm: the caller's roles are loaded once
    with count_queries() as few:
        assert len(api.get("/api/v1/activities?page_size=2").get_json()["items"]) == 2
    with count_queries() as many:
        assert len(api.get("/api/v1/activities?page_size=8").get_json()["items"]) == 8
    assert few[0] == many[0]


# -- attachments ---------------------------------------------------------------------------------

@pytest.fixture
def with_files(api, app):
    email = api.post("/api/v1/activities", json={"type": "email", "subject": "Files"}).get_json()
    os.makedirs(f"{app.instance_path}/attachments", exist_ok=True)
    with open(f"{app.instance_path}/attachments/quote.pdf", "wb") as fh:
        fh.write(b"%PDF-1.4 quote")
    rows = [Attachment(activity_id=email["id"], filename="notes.txt", content_type="text/plain",
                       size=5, content=b"hello"),
            Attachment(activity_id=email["id"], filename='evil"\r\nX-Bad: 1.html',
                       content_type="text/html\r\nX-Injected: yes", size=20,
                       content=b"<script>alert(1)</script>"),
            Attachment(activity_id=email["id"], filename="big.zip", size=10**9,
                       content_omitted=True),
            Attachment(activity_id=email["id"], filename="quote.pdf", content_type="application/pdf",
                       size=14, storage_path="attachments/quote.pdf"),
            Attachment(activity_id=email["id"], filename="passwd", size=1,
                       storage_path="../../../../etc/passwd")]
    db.session.add_all(rows)
    db.session.commit()
    return email, rows


def test_attachments_list_and_download(api, with_files):
    email, rows = with_files
    base = f"/api/v1/activities/{email['id']}/attachments"
    listed = api.get(base).get_json()["items"]
    assert [a["filename"] for a in listed] == [r.filename for r in rows]
    assert "content" not in listed[0]
    assert api.get(f"/api/v1/activities/{email['id']}").get_json()["attachments"] == listed

    r = api.get(f"{base}/{rows[0].id}")
    assert r.status_code == 200 and r.data == b"hello"
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert r.mimetype == "text/plain"
    r = api.get(f"{base}/{rows[1].id}")
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    assert "X-Injected" not in r.headers and "X-Bad" not in r.headers
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in r.headers["Content-Security-Policy"]
    r = api.get(f"{base}/{rows[2].id}")
    assert r.status_code == 404 and error_of(r)["code"] == "content_omitted"
    r = api.get(f"{base}/{rows[3].id}")
    assert r.status_code == 200 and r.data == b"%PDF-1.4 quote"
    r.close()
    assert api.get(f"{base}/{rows[4].id}").status_code == 404  # outside the attachment folder


def test_attachments_need_read_on_their_activity(api, api_client, outsider, with_files):
    email, rows = with_files
    other = api.post("/api/v1/activities", json={"type": "task", "subject": "Other"}).get_json()
    assert api.get(f"/api/v1/activities/{other['id']}/attachments/{rows[0].id}").status_code == 404
    stranger = api_client(outsider)
    assert stranger.get(f"/api/v1/activities/{email['id']}/attachments").status_code == 404
    assert stranger.get(f"/api/v1/activities/{email['id']}/attachments/{rows[0].id}").status_code == 404
