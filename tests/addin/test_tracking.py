"""Tracking from the pane: Track with content (the activity at once, idempotent), Track without
content and compose (pending, then tracked when the message arrives, by the pane or by sync,
by Message-ID or by the tracking token in the subject), Set regarding, Untrack (one's own copy
deleted, someone else's kept), meetings, attachments, privileges and hostile input."""
from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select

from server.crm.services import records, tracked, tracking
from server.crm.activities import ActivityParty, Appointment, Attachment, Email
from server.crm.models import Organization
from server.db import db
from server.security import authz
from server.security.models import Role, RolePrivilege
from tests.addin import addin_world as aw
from tests.addin.addin_world import meeting, message, person

pytestmark = pytest.mark.both_databases

THREAD_INDEX = base64.b64encode(bytes(range(22))).decode()
HEADERS = ("Message-ID: <m1@fabrikam.test>\r\n"
           "In-Reply-To: <m0@contoso.test>\r\n"
           "References: <root@contoso.test> <m0@contoso.test>\r\n"
           f"Thread-Index: {THREAD_INDEX}\r\n"
           "Date: Tue, 04 Mar 2025 10:00:00 +0000\r\n"
           "Subject: Widgets order\r\n\r\n")


@pytest.fixture
def world(app):
    return aw.build()


@pytest.fixture
def pane(app, api_client):
    return lambda user: api_client(user, kind="pane")


def ok(response, status=200):
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return response.get_json()


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    body = response.get_json()["error"]
    assert body["code"] == code, body
    return body


def with_content(item: dict | None = None, **content) -> dict:
    item = dict(item or message())
    item.update({"html_body": "<p>Please send <b>200</b> widgets.</p><script>alert(1)</script>",
                 "text_body": None, "internet_headers": HEADERS, "attachments": []})
    item.update(content)
    return item


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def emails() -> list[Email]:
    return db.session.scalars(select(Email).order_by(Email.id)).all()


def context(client, item: dict) -> dict:
    return ok(client.post("/api/addin/context", json={"item": item}))["tracking"]


# -- Track with content --------------------------------------------------------------------------

def test_track_creates_the_activity_at_once(world, pane):
    client = pane(world.ann)
    item = with_content(attachments=[
        {"name": "quote.pdf", "content_type": "application/pdf", "size": 9, "content_base64": b64(b"%PDF-1.7\n")},
        {"name": "logo.png", "content_type": "image/png", "size": 4, "content_base64": b64(b"\x89PNG"),
         "content_id": "logo@fabrikam", "is_inline": True},
        {"name": "big.zip", "content_type": "application/zip", "size": 10**9, "content_base64": None}])
    data = ok(client.post("/api/addin/track", json={
        "item": item, "regarding": {"type": "opportunity", "id": world.opportunity.id}}))
    status = data["tracking"]
    assert status["status"] == "tracked" and status["reason"] is None
    assert status["regarding"]["type"] == "opportunity"
    assert status["regarding"]["id"] == world.opportunity.id
    assert status["regarding"]["name"] == "Fabrikam widgets"

    [email] = emails()
    assert status["activity_id"] == email.id
    assert email.message_id == "m1@fabrikam.test" and email.subject == "Widgets order"
    assert email.direction == "incoming" and email.owner_user_id == world.ann.id
    assert "<b>200</b>" in email.html_body and "script" not in email.html_body
    assert email.in_reply_to == "m0@contoso.test"
    assert email.references == "root@contoso.test m0@contoso.test"
    assert email.conversation_index == THREAD_INDEX
    assert email.sent_on.isoformat() == "2025-03-04T10:00:00+00:00"
    parties = {(p.role, p.address): p.party_ref for p in email.parties}
    assert parties == {("from", "carol@fabrikam.test"): ("contact", world.carol.id),
                       ("to", "ann@contoso.test"): ("user", world.ann.id)}
    atts = {a.filename: a for a in db.session.scalars(select(Attachment))}
    assert atts["quote.pdf"].size == 9 and not atts["quote.pdf"].content_omitted
    assert atts["logo.png"].is_inline and atts["logo.png"].content_id == "logo@fabrikam"
    assert atts["big.zip"].content_omitted and atts["big.zip"].size == 10**9
    assert context(client, message()) == status


def test_track_is_idempotent(world, pane):
    body = {"item": with_content(), "regarding": None}
    first = ok(pane(world.ann).post("/api/addin/track", json=body))["tracking"]
    again = ok(pane(world.ann).post("/api/addin/track", json=body))["tracking"]
    teammate_item = with_content(message(user_address="tess@contoso.test"))
    theirs = ok(pane(world.teammate).post("/api/addin/track", json={"item": teammate_item}))["tracking"]
    assert first["activity_id"] == again["activity_id"] == theirs["activity_id"]
    assert len(emails()) == 1
    assert db.session.scalar(select(func.count()).select_from(ActivityParty)) == 2


def test_attachments_over_the_limit_are_kept_as_metadata(world, pane):
    org = db.session.get(Organization, 1)
    org.attachment_max_bytes = 10
    db.session.commit()
    item = with_content(attachments=[
        {"name": "small.txt", "content_type": "text/plain", "size": 5, "content_base64": b64(b"hello")},
        {"name": "large.txt", "content_type": "text/plain", "size": 20, "content_base64": b64(b"x" * 20)},
        {"name": "lying.txt", "content_type": "text/plain", "size": 1, "content_base64": b64(b"y" * 12)}])
    ok(pane(world.ann).post("/api/addin/track", json={"item": item}))
    atts = {a.filename: a for a in db.session.scalars(select(Attachment))}
    assert not atts["small.txt"].content_omitted and atts["small.txt"].sha256
    assert atts["large.txt"].content_omitted and atts["large.txt"].size == 20
    assert atts["lying.txt"].content_omitted


def test_bad_attachments_are_invalid(world, pane):
    item = with_content(attachments=[
        {"name": "a", "content_type": "text/plain", "size": 3, "content_base64": "not base64!"},
        {"name": "b", "content_type": "text/plain", "size": -1, "content_base64": None},
        {"name": "c", "size": 1, "content_base64": None, "path": "/etc/passwd"}])
    body = error(pane(world.ann).post("/api/addin/track", json={"item": item}), 400, "invalid")
    assert set(body["fields"]) == {"item.attachments[0].content_base64", "item.attachments[1].size",
                                   "item.attachments[2].path"}
    assert emails() == []


def test_the_request_size_is_limited(app, world, pane):
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    item = with_content(html_body="<p>" + "x" * 70 * 1024 + "</p>")
    error(pane(world.ann).post("/api/addin/track", json={"item": item}), 413, "too_large")
    assert emails() == []


def test_hostile_subjects_and_names_are_stored_as_data(world, pane):
    hostile = "<script>alert('x')</script> & \"quotes\""
    item = with_content(message(subject=hostile, **{"from": person("carol@fabrikam.test", hostile)}))
    ok(pane(world.ann).post("/api/addin/track", json={"item": item}))
    [email] = emails()
    assert email.subject == hostile
    assert {p.name for p in email.parties if p.role == "from"} == {hostile}


def test_track_needs_the_track_privilege(world, pane):
    role = Role(name="Add-in only")
    role.privileges += [RolePrivilege(privilege="use_outlook_addin", depth=1),
                        RolePrivilege(privilege="activity.create", depth=1),
                        RolePrivilege(privilege="contact.read", depth=4)]
    world.noaddin.roles.append(role)
    db.session.commit()
    error(pane(world.noaddin).post("/api/addin/track", json={"item": with_content()}), 403, "forbidden")
    error(pane(world.noaddin).post("/api/addin/pending", json={"item": message(mode="compose")}),
          403, "forbidden")
    assert emails() == []


def test_track_regarding_a_record_one_cannot_read(world, pane):
    error(pane(world.ann).post("/api/addin/track", json={
        "item": with_content(), "regarding": {"type": "contact", "id": world.dave.id}}), 404, "not_found")
    body = error(pane(world.ann).post("/api/addin/track", json={
        "item": with_content(), "regarding": {"type": "queue", "id": 1}}), 400, "invalid")
    assert "regarding.type" in body["fields"]
    assert emails() == []


def test_a_regarding_record_one_cannot_read_is_named_nowhere(world, pane):
    records.share(authz.principal(world.bob), world.dave, world.teammate, {"read", "append_to"})
    db.session.commit()
    ok(pane(world.teammate).post("/api/addin/track", json={
        "item": with_content(message(user_address="tess@contoso.test")),
        "regarding": {"type": "contact", "id": world.dave.id}}))
    data = ok(pane(world.ann).post("/api/addin/context", json={"item": message()}))
    assert data["tracking"]["status"] == "tracked"  # Ann reads her unit's activities...
    assert data["tracking"]["regarding"] == {"type": "contact", "id": world.dave.id,
                                             "name": None, "url": None}  # ...not Bob's contact
    assert data["related"]["for"]["id"] == world.carol.id  # the sender's instead


# -- pending: no content, compose ----------------------------------------------------------------

def test_without_content_the_item_becomes_pending_then_tracked(world, pane):
    client = pane(world.ann)
    status = ok(client.post("/api/addin/track", json={
        "item": message(), "regarding": {"type": "account", "id": world.fabrikam.id}}))["tracking"]
    assert status["status"] == "pending" and "server-side" in status["reason"]
    assert status["regarding"]["id"] == world.fabrikam.id and status["activity_id"] is None
    assert context(client, message())["status"] == "pending"
    assert emails() == []
    # The pane sends the content later (or sync sees the message): tracked, regarding kept.
    status = ok(client.post("/api/addin/track", json={"item": with_content()}))["tracking"]
    assert status["status"] == "tracked"
    assert status["regarding"]["type"] == "account" and status["regarding"]["id"] == world.fabrikam.id
    req = db.session.scalar(select(tracked.TrackRequest))
    assert req.status == "done" and req.activity_id == status["activity_id"]


def test_pending_is_completed_by_server_side_sync(world, pane):
    client = pane(world.ann)
    ok(client.post("/api/addin/track", json={
        "item": message(), "regarding": {"type": "opportunity", "id": world.opportunity.id}}))
    content = tracking.EmailContent(message_id="<m1@FABRIKAM.test>", subject="Widgets order",
                                    from_=("Carol", "carol@fabrikam.test"),
                                    to=[("Ann", "ann@contoso.test")], text_body="Please send widgets")
    tracking.track_email(authz.principal(world.ann), content, correlation_method="rule")
    db.session.commit()
    status = context(client, message())
    assert status["status"] == "tracked"
    assert status["regarding"]["type"] == "opportunity"


def test_compose_gets_a_tracking_token_and_is_tracked_when_sent(world, pane):
    client = pane(world.ann)
    draft = message(mode="compose", internet_message_id=None, item_id=None, subject="Your quote",
                    **{"from": None, "to": [person("carol@fabrikam.test", "Carol")]})
    data = ok(client.post("/api/addin/pending", json={
        "item": draft, "regarding": {"type": "opportunity", "id": world.opportunity.id}}))
    token = data["tracking_token"]
    assert token.startswith("CRM:") and len(token) == len("CRM:") + 7
    assert data["tracking"]["status"] == "pending"
    assert data["tracking"]["regarding"]["id"] == world.opportunity.id
    # The pane puts the token in the subject; the draft is recognised by it.
    draft["subject"] = f"Your quote {token}"
    assert context(client, draft)["status"] == "pending"
    # Changing the regarding of the draft keeps the same request and token.
    again = ok(client.post("/api/addin/pending", json={
        "item": draft, "regarding": {"type": "account", "id": world.fabrikam.id}}))
    assert again["tracking_token"] == token
    assert again["tracking"]["regarding"]["type"] == "account"
    assert db.session.scalar(select(func.count()).select_from(tracked.TrackRequest)) == 1
    # Sent: the pane (or sync) tracks the sent item, correlated by the token in its subject.
    sent = with_content(message(internet_message_id="<sent1@contoso.test>", subject=f"RE: Your quote {token}",
                                **{"from": person("ann@contoso.test", "Ann Archer"),
                                   "to": [person("carol@fabrikam.test", "Carol")]}),
                        internet_headers=None)
    status = ok(client.post("/api/addin/track", json={"item": sent}))["tracking"]
    assert status["status"] == "tracked"
    assert status["regarding"]["type"] == "account" and status["regarding"]["id"] == world.fabrikam.id
    [email] = emails()
    assert email.direction == "outgoing" and email.tracking_token == token


def test_compose_without_tracking_tokens(world, pane):
    org = db.session.get(Organization, 1)
    org.use_tracking_token = False
    db.session.commit()
    draft = message(mode="compose", internet_message_id=None, **{"from": None})
    data = ok(pane(world.ann).post("/api/addin/pending", json={
        "item": draft, "regarding": {"type": "contact", "id": world.carol.id}}))
    assert data["tracking_token"] is None and data["tracking"]["status"] == "pending"


def test_track_in_compose_mode_is_pending(world, pane):
    draft = with_content(message(mode="compose", internet_message_id=None, **{"from": None}))
    data = ok(pane(world.ann).post("/api/addin/track", json={"item": draft}))
    assert data["tracking"]["status"] == "pending" and data["tracking_token"]
    assert emails() == []


# -- Set regarding ---------------------------------------------------------------------------------

def test_set_regarding_on_a_tracked_email(world, pane):
    client = pane(world.ann)
    ok(client.post("/api/addin/track", json={"item": with_content()}))
    status = ok(client.put("/api/addin/regarding", json={
        "internet_message_id": "<m1@fabrikam.test>",
        "regarding": {"type": "case", "id": world.case.id}}))["tracking"]
    assert status["regarding"]["type"] == "case" and status["regarding"]["name"] == "Broken widget"
    assert emails()[0].regarding_ref == ("case", world.case.id)
    status = ok(client.put("/api/addin/regarding", json={
        "internet_message_id": "<m1@fabrikam.test>", "regarding": None}))["tracking"]
    assert status["regarding"] is None and status["status"] == "tracked"


def test_set_regarding_checks_privileges(world, pane):
    client = pane(world.ann)
    ok(client.post("/api/addin/track", json={"item": with_content()}))
    target = {"internet_message_id": "<m1@fabrikam.test>"}
    error(client.put("/api/addin/regarding", json={**target, "regarding": {"type": "contact", "id": world.dave.id}}),
          404, "not_found")
    # Shared with Ann to read only: she may see Dave but not link activities to him.
    records.share(authz.principal(world.bob), world.dave, world.ann, {"read"})
    db.session.commit()
    error(client.put("/api/addin/regarding", json={**target, "regarding": {"type": "contact", "id": world.dave.id}}),
          403, "forbidden")
    # Tess may read Ann's email (same unit) but not write it.
    error(pane(world.teammate).put("/api/addin/regarding", json={**target, "regarding": None}),
          403, "forbidden")
    assert emails()[0].regarding_ref is None
    error(client.put("/api/addin/regarding", json={"internet_message_id": "<other@x.test>", "regarding": None}),
          404, "not_found")


def test_set_regarding_on_a_pending_item(world, pane):
    client = pane(world.ann)
    ok(client.post("/api/addin/track", json={"item": message()}))
    status = ok(client.put("/api/addin/regarding", json={
        "internet_message_id": "<m1@fabrikam.test>",
        "regarding": {"type": "lead", "id": world.lee.id}}))["tracking"]
    assert status["status"] == "pending" and status["regarding"]["id"] == world.lee.id


def test_regarding_payloads_are_strict(world, pane):
    client = pane(world.ann)
    body = error(client.put("/api/addin/regarding", json={"regarding": None}), 400, "invalid")
    assert "internet_message_id" in body["fields"]
    body = error(client.put("/api/addin/regarding", json={"internet_message_id": "<m1@x>"}), 400, "invalid")
    assert "regarding" in body["fields"]
    body = error(client.put("/api/addin/regarding", json={
        "internet_message_id": "<m1@x>", "regarding": {"type": "contact", "id": "7"}}), 400, "invalid")
    assert "regarding.id" in body["fields"]


# -- Untrack -------------------------------------------------------------------------------------

def test_untrack_own_copy_deletes_it_when_asked(world, pane):
    client = pane(world.ann)
    ok(client.post("/api/addin/track", json={"item": with_content()}))
    data = ok(client.post("/api/addin/untrack", json={"internet_message_id": "<m1@fabrikam.test>",
                                                      "delete_copy": True}))
    assert data["deleted"] is True and data["tracking"]["status"] == "not_tracked"
    assert emails() == []
    assert context(client, message())["status"] == "not_tracked"


def test_untrack_without_deleting_keeps_the_record_and_track_again_works(world, pane):
    client = pane(world.ann)
    first = ok(client.post("/api/addin/track", json={"item": with_content()}))["tracking"]
    data = ok(client.post("/api/addin/untrack", json={"internet_message_id": "<m1@fabrikam.test>",
                                                      "delete_copy": False}))
    assert data["deleted"] is False
    assert len(emails()) == 1 and context(client, message())["status"] == "not_tracked"
    again = ok(client.post("/api/addin/track", json={"item": with_content()}))["tracking"]
    assert again["status"] == "tracked" and again["activity_id"] == first["activity_id"]


def test_untrack_someone_elses_copy_removes_only_the_link(world, pane):
    mine, theirs = pane(world.ann), pane(world.teammate)
    tracked = ok(theirs.post("/api/addin/track", json={
        "item": with_content(message(user_address="tess@contoso.test"))}))["tracking"]
    assert context(mine, message())["status"] == "tracked"  # Ann reads her unit's activities
    data = ok(mine.post("/api/addin/untrack", json={"internet_message_id": "<m1@fabrikam.test>",
                                                    "delete_copy": True}))
    assert data["deleted"] is False
    [email] = emails()
    assert email.id == tracked["activity_id"] and email.owner_user_id == world.teammate.id
    assert context(mine, message())["status"] == "not_tracked"
    assert context(theirs, message(user_address="tess@contoso.test"))["status"] == "tracked"


def test_untrack_errors(world, pane):
    client = pane(world.ann)
    error(client.post("/api/addin/untrack", json={"internet_message_id": "<nope@x.test>",
                                                  "delete_copy": False}), 404, "not_found")
    body = error(client.post("/api/addin/untrack", json={"internet_message_id": "<m1@x>",
                                                         "delete_copy": "yes"}), 400, "invalid")
    assert body["fields"] == {"delete_copy": "Must be true or false."}
    body = error(client.post("/api/addin/untrack", json={"internet_message_id": "<m1@x>",
                                                         "item_id": "AAMk"}), 400, "invalid")
    assert "internet_message_id" in body["fields"]


# -- meetings --------------------------------------------------------------------------------------

def test_track_a_meeting(world, pane):
    client = pane(world.ann)
    item = with_content(meeting(), html_body="<p>Agenda</p>", internet_headers=None)
    status = ok(client.post("/api/addin/track", json={
        "item": item, "regarding": {"type": "account", "id": world.fabrikam.id}}))["tracking"]
    assert status["status"] == "tracked"
    appt = db.session.scalar(select(Appointment))
    assert status["activity_id"] == appt.id
    assert appt.global_object_id == "AAMkMeeting1" and appt.location == "Room 1"
    assert appt.scheduled_start.isoformat() == "2025-03-04T15:00:00+00:00"
    assert appt.scheduled_end.isoformat() == "2025-03-04T16:00:00+00:00"
    assert "Agenda" in appt.description
    parties = {(p.role, p.address): p.party_ref for p in appt.parties}
    assert parties == {("organizer", "carol@fabrikam.test"): ("contact", world.carol.id),
                       ("required", "ann@contoso.test"): ("user", world.ann.id),
                       ("required", "lee@startup.test"): ("lead", world.lee.id),
                       ("optional", "stranger@nowhere.test"): None}
    # The pane sees it tracked; tracking again changes nothing.
    data = ok(client.post("/api/addin/context", json={"item": meeting()}))
    assert data["tracking"]["status"] == "tracked"
    assert [p["role"] for p in data["parties"]] == ["organizer", "required", "required", "optional"]
    assert data["related"]["for"]["type"] == "account"  # the regarding record
    ok(client.post("/api/addin/track", json={"item": item}))
    assert db.session.scalar(select(func.count()).select_from(Appointment)) == 1


def test_meeting_regarding_and_untrack_by_item_id(world, pane):
    client = pane(world.ann)
    ok(client.post("/api/addin/track", json={"item": with_content(meeting(), internet_headers=None)}))
    status = ok(client.put("/api/addin/regarding", json={
        "item_id": "AAMkMeeting1", "regarding": {"type": "contact", "id": world.carol.id}}))["tracking"]
    assert status["regarding"]["id"] == world.carol.id
    data = ok(client.post("/api/addin/untrack", json={"item_id": "AAMkMeeting1", "delete_copy": False}))
    assert data["deleted"] is False
    assert db.session.scalar(select(func.count()).select_from(Appointment)) == 1
    assert ok(client.post("/api/addin/context", json={"item": meeting()}))["tracking"]["status"] == "not_tracked"
    ok(client.post("/api/addin/track", json={"item": with_content(meeting(), internet_headers=None)}))
    data = ok(client.post("/api/addin/untrack", json={"item_id": "AAMkMeeting1", "delete_copy": True}))
    assert data["deleted"] is True
    assert db.session.scalar(select(func.count()).select_from(Appointment)) == 0


def test_a_meeting_draft_is_pending(world, pane):
    draft = meeting(mode="compose", item_id="AAMkDraft")
    data = ok(pane(world.ann).post("/api/addin/pending", json={
        "item": draft, "regarding": {"type": "opportunity", "id": world.opportunity.id}}))
    assert data["tracking"]["status"] == "pending" and data["tracking_token"] is None
    assert ok(pane(world.ann).post("/api/addin/context", json={"item": draft}))["tracking"]["status"] == "pending"


# -- quick create and set regarding -----------------------------------------------------------------

def test_quick_create_sets_regarding_of_the_tracked_item(world, pane):
    client = pane(world.ann)
    ok(client.post("/api/addin/track", json={"item": with_content()}))
    data = ok(client.post("/api/addin/records/opportunity", json={
        "fields": {"name": "200 widgets", "customer_contact_id": world.carol.id},
        "set_regarding_for": "<m1@fabrikam.test>"}), 201)
    assert data["tracking"]["regarding"] == {"type": "opportunity", "id": data["record"]["id"],
                                             "name": "200 widgets", "url": data["tracking"]["regarding"]["url"]}
    assert emails()[0].regarding_ref == ("opportunity", data["record"]["id"])


# -- the context call's status -------------------------------------------------------------------

def test_one_answer_to_is_this_email_tracked(world, pane):
    """``tracked.tracking_status`` is the one answer, from one statement: in every state, for
    users who may read the tracked copy and for one who may not, the context call shows what
    it answers (by the raw Message-ID the pane sends as by the stored key), and a draft or
    meeting is answered by the same statement."""
    from sqlalchemy import event

    ann, bob, tess = pane(world.ann), pane(world.bob), pane(world.teammate)
    clients = {world.ann.id: ann, world.bob.id: bob, world.teammate.id: tess}

    def one_statement(p, identity, **kw) -> tracked.TrackingStatus:
        statements: list[str] = []
        counter = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", counter)
        try:
            answer = tracked.tracking_status(p, identity, **kw)
        finally:
            event.remove(db.engine, "before_cursor_execute", counter)
        assert len(statements) == 1, statements
        return answer

    def status(user) -> str:
        p = authz.principal(user)
        answer = one_statement(p, "<m1@fabrikam.test>")
        assert tracked.tracking_status(p, " <m1@FABRIKAM.test> (copy)") == answer
        shown = context(clients[user.id], message(user_address=user.email))
        regarding = shown["regarding"] and (shown["regarding"]["type"], shown["regarding"]["id"])
        assert (shown["status"], shown["activity_id"], regarding, shown["reason"]) == \
            (answer.status, answer.activity_id, answer.regarding, answer.reason)
        return answer.status

    assert status(world.ann) == status(world.bob) == "not_tracked"
    ok(ann.post("/api/addin/track", json={"item": message(),
                                          "regarding": {"type": "account", "id": world.fabrikam.id}}))
    assert status(world.ann) == "pending" and status(world.bob) == "not_tracked"
    req = db.session.scalar(select(tracked.TrackRequest))
    req.status, req.reason = "failed", "The mailbox could not be read."
    db.session.commit()
    assert status(world.ann) == "failed"
    ok(tess.post("/api/addin/track", json={"item": with_content(message(user_address="tess@contoso.test")),
                                           "regarding": {"type": "contact", "id": world.carol.id}}))
    ok(bob.post("/api/addin/track", json={"item": message(user_address="bob@contoso.test"),
                                          "regarding": None}))
    # Tess's copy: Ann reads her unit's activities, Bob (another unit) does not: his pending.
    assert status(world.ann) == status(world.teammate) == "tracked"
    assert status(world.bob) == "pending"
    ok(ann.post("/api/addin/untrack", json={"internet_message_id": "<m1@fabrikam.test>",
                                            "delete_copy": False}))
    assert status(world.ann) == "not_tracked" and status(world.teammate) == "tracked"
    # A meeting by its UID, a draft by the token in its subject, its sent copy by both.
    ok(ann.post("/api/addin/track", json={"item": meeting()}))
    token = ok(ann.post("/api/addin/pending", json={"item": message(
        mode="compose", internet_message_id=None, item_id=None, subject="Quote")}))["tracking_token"]
    p = authz.principal(world.ann)
    assert one_statement(p, "AAMkMeeting1", item_type="appointment").status == "tracked"
    assert one_statement(p, None, token=token).status == "pending"
    assert one_statement(p, "<sent2@contoso.test>", token=token).status == "pending"
    assert one_statement(p, "<sent2@contoso.test>").status == "not_tracked"
