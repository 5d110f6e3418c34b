"""Activity pages: the timeline on record pages, the activity detail page (email parties,
sandboxed body, attachments), regarding, complete/cancel, and new activities from a record."""
from __future__ import annotations

import html as htmlmod
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from server.crm.activities import Activity, Email, PhoneCall, Task
from server.crm.models import Case
from server.db import db, utcnow

BODY = ('<p style="color:#333">Hello <b>Yvonne</b></p><script>alert(1)</script>'
        '<img src="https://tracker.example/pixel.gif" alt="pixel"><img src="x" onerror="alert(2)">'
        '<a href="javascript:alert(3)">click</a>')

pytestmark = pytest.mark.both_databases


def _iframe(html: str) -> str:
    match = re.search(r"<iframe[^>]*>", html)
    assert match, "no iframe"
    return match.group(0)


def test_timeline_shows_activities_newest_first_with_paging_and_filters(app, make_user, make_record,
                                                                      make_email, make_task, signin):
    app.config["REGARDING_PAGE_SIZE"] = 3
    user = make_user()
    contact = make_record(user, "contact")
    now = utcnow()
    for i in range(4):
        make_email(user, regarding=("contact", contact.id), subject=f"Message #{i}",
                   when=now - timedelta(hours=i),
                   parties=[("from", "yvonne@contoso.example", "Yvonne McKay", ("contact", contact.id)),
                            ("to", "someone@else.example", None, None)])
    make_task(user, regarding=("contact", contact.id), subject="Task A", minutes_ago=30)
    # an email where the contact is only a party (regarding nothing) is on the timeline too
    make_email(user, subject="Party only", when=now - timedelta(days=2),
               parties=[("to", "yvonne@contoso.example", "Yvonne McKay", ("contact", contact.id))])
    c = signin(user)
    page = c.get(f"/r/contact/{contact.id}").get_data(as_text=True)
    assert page.index("Message #0") < page.index("Task A") < page.index("Message #1")
    assert "Message #2" not in page
    assert f'href="/r/contact/{contact.id}">Yvonne McKay</a>' in page  # resolved party is a link
    assert "someone@else.example" in page  # unresolved party: the bare address
    older = re.search(r'href="([^"]*cursor=[^"]*)"[^>]*>Older activities', page) or \
        re.search(r'rel="next" href="([^"]*cursor=[^"]*)"', page)
    assert older
    page2 = c.get(htmlmod.unescape(older.group(1))).get_data(as_text=True)
    assert "Message #2" in page2 and "Message #3" in page2 and "Party only" in page2
    assert "Message #0" not in page2
    tasks = c.get(f"/r/contact/{contact.id}?type=task").get_data(as_text=True)
    assert "Task A" in tasks and "Message #0" not in tasks


def test_timeline_hides_activities_the_user_may_not_read(make_unit, make_user, make_record,
                                                        make_email, signin):
    user = make_user()
    other = make_user(unit=make_unit("Elsewhere"))
    account = make_record(user, "account")
    make_email(other, regarding=("account", account.id), subject="Private to elsewhere")
    make_email(user, regarding=("account", account.id), subject="Visible one")
    page = signin(user).get(f"/r/account/{account.id}").get_data(as_text=True)
    assert "Visible one" in page and "Private to elsewhere" not in page


def test_email_detail_parties_status_and_sandboxed_body(make_user, make_record, make_email, signin):
    user = make_user()
    contact = make_record(user, "contact")
    email = make_email(user, regarding=("contact", contact.id), html=BODY, text="Hello Yvonne",
                       parties=[("from", "yvonne@contoso.example", "Yvonne McKay", ("contact", contact.id)),
                                ("to", "stranger@nowhere.example", None, None),
                                ("cc", "boss@contoso.example", "The Boss", None)])
    c = signin(user)
    r = c.get(f"/activities/{email.id}")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert f'href="/r/contact/{contact.id}">Yvonne McKay</a>' in page
    assert "stranger@nowhere.example" in page and "The Boss" in page
    assert "Received" in page and "Incoming" in page
    frame = _iframe(page)
    sandbox = re.search(r'sandbox="([^"]*)"', frame).group(1)
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    assert 'srcdoc="' in frame
    # nothing of the body is live markup in the page itself
    assert "<script>alert" not in page and "onerror" not in page and "javascript:" not in page
    srcdoc = htmlmod.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert "<b>Yvonne</b>" in srcdoc and "<script" not in srcdoc
    assert "onerror" not in srcdoc and "javascript:" not in srcdoc
    # the page's policy (inherited by the srcdoc frame) allows no inline script, no remote images
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "img-src 'self' data:;" in csp
    assert "Show remote images" in page

    remote = c.get(f"/activities/{email.id}?images=remote")
    assert "https:" in remote.headers["Content-Security-Policy"].split("img-src")[1].split(";")[0]
    assert "Hide them" in remote.get_data(as_text=True)
    # the plain-text view
    text = c.get(f"/activities/{email.id}?view=text").get_data(as_text=True)
    assert "<iframe" not in text and "Hello Yvonne" in text


def test_inline_images_become_data_urls(make_user, make_email, signin):
    user = make_user()
    png = b"\x89PNG\r\n\x1a\nfake"
    email = make_email(user, html='<p><img src="cid:logo@x"></p>', attachments=[
        {"filename": "logo.png", "content_type": "image/png", "size": len(png), "content": png,
         "content_id": "<logo@x>", "is_inline": True}])
    page = signin(user).get(f"/activities/{email.id}").get_data(as_text=True)
    srcdoc = htmlmod.unescape(re.search(r'srcdoc="([^"]*)"', page).group(1))
    assert 'src="data:image/png;base64,' in srcdoc


def test_attachment_download_checks_privileges(tmp_path, make_unit, make_user, make_email, signin):
    user = make_user()
    stranger = make_user(unit=make_unit("Other unit"))
    (tmp_path / "attachments").mkdir(exist_ok=True)
    (tmp_path / "attachments" / "abc").write_bytes(b"on disk")
    email = make_email(user, html="<p>see attached</p>", attachments=[
        {"filename": "quote ö.pdf", "content_type": "application/pdf", "size": 5, "content": b"%PDF-"},
        {"filename": "big.zip", "content_type": "application/zip", "size": 50_000_000,
         "content_omitted": True},
        {"filename": "disk.txt", "content_type": "text/html", "size": 7,
         "storage_path": "attachments/abc"},
        {"filename": "evil.txt", "content_type": "text/plain", "size": 7,
         "storage_path": "../../etc/passwd"}])
    ids = [a.id for a in email.attachments]
    c = signin(user)
    page = c.get(f"/activities/{email.id}").get_data(as_text=True)
    assert "omitted: over the size limit" in page

    r = c.get(f"/activities/{email.id}/attachments/{ids[0]}")
    assert r.status_code == 200 and r.data == b"%PDF-"
    assert r.headers["Content-Type"] == "application/pdf"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''quote%20%C3%B6.pdf" in r.headers["Content-Disposition"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert c.get(f"/activities/{email.id}/attachments/{ids[1]}").status_code == 404
    disk = c.get(f"/activities/{email.id}/attachments/{ids[2]}")
    assert disk.status_code == 200 and disk.data == b"on disk"
    assert disk.headers["Content-Disposition"].startswith("attachment;")
    assert c.get(f"/activities/{email.id}/attachments/{ids[3]}").status_code == 404
    # another activity's id in the path does not reach this attachment
    other = make_email(user, subject="other")
    assert c.get(f"/activities/{other.id}/attachments/{ids[0]}").status_code == 404
    # someone who may not read the email gets nothing
    s = signin(stranger)
    assert s.get(f"/activities/{email.id}").status_code == 404
    assert s.get(f"/activities/{email.id}/attachments/{ids[0]}").status_code == 404


def test_set_and_clear_regarding(make_unit, make_user, make_record, make_email, signin):
    user = make_user()
    account = make_record(user, "account", name="Northwind")
    hidden = make_record(make_user(unit=make_unit("Hidden unit")), "account", name="Northwind Hidden")
    email = make_email(user, subject="Unfiled")
    c = signin(user)
    page = c.get(f"/activities/{email.id}?rq=northwind").get_data(as_text=True)
    assert "Northwind" in page and "Northwind Hidden" not in page
    r = c.post(f"/activities/{email.id}/regarding", data={"kind": "account", "record_id": account.id})
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(Activity, email.id).regarding_ref == ("account", account.id)
    assert "Unfiled" in c.get(f"/r/account/{account.id}").get_data(as_text=True)
    # a record the user cannot see cannot be the target
    r = c.post(f"/activities/{email.id}/regarding", data={"kind": "account", "record_id": hidden.id})
    assert r.status_code == 404
    r = c.post(f"/activities/{email.id}/regarding", data={})
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(Activity, email.id).regarding_ref is None


def test_regarding_needs_write_on_the_activity(make_user, make_record, make_email, signin):
    owner = make_user()
    colleague = make_user()  # same unit: reads the email, may not write it
    account = make_record(colleague, "account")
    email = make_email(owner, subject="Theirs")
    c = signin(colleague)
    assert c.get(f"/activities/{email.id}").status_code == 200
    r = c.post(f"/activities/{email.id}/regarding", data={"kind": "account", "record_id": account.id})
    assert r.status_code == 403
    db.session.expire_all()
    assert db.session.get(Activity, email.id).regarding_ref is None


def test_complete_and_cancel(make_user, make_task, signin):
    user = make_user()
    t1, t2 = make_task(user, subject="One"), make_task(user, subject="Two")
    c = signin(user)
    assert c.post(f"/activities/{t1.id}/state", data={"state": "completed"}).status_code == 302
    assert c.post(f"/activities/{t2.id}/state", data={"state": "canceled"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Task, t1.id).state == "completed"
    assert db.session.get(Task, t1.id).percent_complete == 100
    assert db.session.get(Task, t2.id).state == "canceled"
    assert c.post(f"/activities/{t1.id}/state", data={"state": "canceled"}).status_code == 400


def test_new_task_phone_call_and_email_draft_from_a_record(make_user, make_record, signin):
    user = make_user()
    contact = make_record(user, "contact")
    c = signin(user)
    base = f"/r/contact/{contact.id}/activities/new"
    form = c.get(f"{base}/email", follow_redirects=True).get_data(as_text=True)
    # To: prefilled with the contact's address, on the compose page
    assert 'value="Yvonne McKay &lt;yvonne@contoso.example&gt;"' in form

    assert c.post(f"{base}/task", data={"subject": "Send brochure", "due": "2030-01-02T10:00",
                                        "priority": "high"}).status_code == 302
    assert c.post(f"{base}/phone_call", data={"subject": "Follow up", "phone_number": "+1 555",
                                              "direction": "outgoing"}).status_code == 302
    # The old draft form is gone: the compose page is the one way to write an email.
    assert c.post(f"{base}/email", data={"to": "x@y.example"}).status_code == 303
    assert c.post("/compose", data={"to": "yvonne@contoso.example, new@person.example",
                                    "regarding": f"contact:{contact.id}", "subject": "Your quote",
                                    "html_body": "<p>Hi</p>", "action": "save"}).status_code == 302
    task = db.session.scalar(select(Task))
    assert task.regarding_ref == ("contact", contact.id) and task.priority == "high"
    assert task.scheduled_end.isoformat().startswith("2030-01-02T10:00")
    call = db.session.scalar(select(PhoneCall))
    assert call.regarding_ref == ("contact", contact.id) and call.phone_number == "+1 555"
    email = db.session.scalar(select(Email))
    assert (email.status, email.direction, email.state) == ("draft", "outgoing", "open")
    to = {p.address: p.party_ref for p in email.parties if p.role == "to"}
    assert to == {"yvonne@contoso.example": ("contact", contact.id), "new@person.example": None}
    page = c.get(f"/r/contact/{contact.id}").get_data(as_text=True)
    assert "Send brochure" in page and "Follow up" in page and "Your quote" in page

    bad = c.post("/compose", data={"to": "nope", "subject": "", "action": "save"})
    assert bad.status_code == 400 and "nope" in bad.get_data(as_text=True)
    assert c.post(f"{base}/task", data={"subject": ""}).status_code == 400
    assert c.get("/r/queue/1/activities/new/task").status_code == 404


def test_draft_can_be_canceled_received_email_cannot(make_user, make_email, make_record, signin):
    user = make_user()
    contact = make_record(user, "contact")
    c = signin(user)
    c.post("/compose", data={"to": "a@b.example", "subject": "Draft", "action": "save"})
    draft = db.session.scalar(select(Email).where(Email.status == "draft"))
    received = make_email(user, subject="Received")
    assert c.post(f"/activities/{draft.id}/state", data={"state": "canceled"}).status_code == 302
    assert c.post(f"/activities/{received.id}/state", data={"state": "completed"}).status_code == 400
    db.session.expire_all()
    assert db.session.get(Email, draft.id).status == "canceled"


def test_home_search_and_my_activities(make_user, make_record, make_task, signin):
    user = make_user()
    account = make_record(user, "account", name="Alpine Ski House", phone="+1 555 0199")
    make_record(user, "contact", last_name="Alpine", email1="ski@alpine.example")
    make_record(make_user(roles=("Customer Service Representative",)), "case",
                title="Broken skis", customer_account_id=str(account.id))
    make_task(user, regarding=("account", account.id), subject="Call Alpine")
    c = signin(user)
    home = c.get("/").get_data(as_text=True)
    assert "Call Alpine" in home and "My open activities" in home
    assert "Alpine Ski House" in home  # recently changed by the user
    found = c.get("/?q=alpine").get_data(as_text=True)
    assert "Accounts" in found and "Contacts" in found
    assert c.get("/?q=ski@alpine.example").get_data(as_text=True).count('href="/r/contact/') >= 1
    assert "Alpine Ski House" in c.get("/?q=0199").get_data(as_text=True)
    ticket = db.session.scalar(select(Case)).ticket_number
    assert "Broken skis" in c.get(f"/?q={ticket}").get_data(as_text=True)


def test_appointment_page_shows_time_place_and_attendees(make_user, make_record, signin):
    from server.crm.activities import ActivityParty, Appointment
    user = make_user()
    contact = make_record(user, "contact")
    start = utcnow().replace(microsecond=0)
    meeting = Appointment(subject="Site visit", location="Building 4 <b>", occurred_on=start,
                          scheduled_start=start, scheduled_end=start + timedelta(hours=1),
                          owner_user_id=user.id, owning_business_unit_id=user.business_unit_id)
    meeting.set_regarding("contact", contact.id)
    meeting.parties = [ActivityParty(role="organizer", user_id=user.id, name="Organizer Person"),
                       ActivityParty(role="required", contact_id=contact.id, name="Yvonne McKay",
                                     address="yvonne@contoso.example"),
                       ActivityParty(role="optional", address="guest@else.example")]
    db.session.add(meeting)
    db.session.commit()
    page = signin(user).get(f"/activities/{meeting.id}").get_data(as_text=True)
    # the time as the reader reads it: English and UTC here (tests/web/test_languages.py)
    assert "Building 4 &lt;b&gt;" in page and f'datetime="{start.isoformat()}' in page
    assert start.strftime("%b %-d, %Y, %-I:%M") in " ".join(page.split())
    assert "Organizer Person" in page and "guest@else.example" in page
    assert f'href="/r/contact/{contact.id}">Yvonne McKay</a>' in page
    assert "Mark complete" in page


def test_open_activities_on_home_leave_out_received_email(make_user, make_email, make_task, signin):
    user = make_user()
    make_email(user, subject="Incoming newsletter")
    make_task(user, subject="Prepare offer")
    home = signin(user).get("/").get_data(as_text=True)
    assert "Prepare offer" in home and "Incoming newsletter" not in home
