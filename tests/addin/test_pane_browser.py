"""The task pane in headless Chromium against the real server.

The Flask app (temporary SQLite, CSRF on) runs in a thread on a loopback port; Playwright
drives Debian's Chromium. Office.js is intercepted and answered with tests/addin/officejs_stub.js
(a configurable fake mailbox item that records calls); the pane's own code is what runs. Each
numbered feature of the add-in is covered: who is who, track status and actions, related data,
quick create, meetings, compose, immediate tracking with content, the category, privacy of what
leaves the client; sign-in by SSO, expired token refresh, SSO failure falling back to the dialog;
untrack of someone else's record; hostile names; the 320 px layout; the preview page.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select
from werkzeug.serving import make_server

from server.addin.payloads import CONTENT_KEYS, ITEM_KEYS
from server.crm.services import records, tracked, tracking
from server.crm.activities import Appointment, Email, PhoneCall, Task
from server.crm.models import Contact, Lead, Opportunity, Organization
from server.crm.registry import RECORD_TYPES
from server.db import db, utcnow
from server.security import authz, passwords, tokens
from server.security.models import ApiToken
from tests.addin import addin_world as aw
from tests.addin.test_sso import CLIENT_ID, TID, Tenant
from tests.addin.test_sso import token as sso_token
from tests.servers.browser import route_office_js

STUB = (Path(__file__).with_name("officejs_stub.js")).read_text(encoding="utf-8")
PASSWORD = "Correct-horse-9"
SHOTS = Path("/tmp/regarding-pane-shots")
MB = 1024 * 1024


# -- the live server -------------------------------------------------------------------------------

class Live:
    def __init__(self, url, world, app):
        self.url, self.world, self.app = url, world, app


@pytest.fixture
def live(app):
    """The app served on a loopback port (a thread), with the add-in world and passwords."""
    app.config.update(WTF_CSRF_ENABLED=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    world = aw.build()
    for user in (world.ann, world.teammate, world.csr, world.bob, world.admin, world.noaddin):
        passwords.set_password(user, PASSWORD)
    db.session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(f"http://127.0.0.1:{server.server_port}", world, app)
    finally:
        server.shutdown()
        thread.join(10)


def fresh():
    """See what the server thread committed (end this session's snapshot)."""
    db.session.rollback()


def pane_token(user, *, hours: float = 8) -> str:
    _, secret = tokens.issue(user, "Outlook add-in", days=hours / 24, kind="pane")
    db.session.commit()
    return secret


# -- items as Office.js describes them ------------------------------------------------------------

def who(address, name=""):
    return {"displayName": name, "emailAddress": address}


ANN = who("ann@contoso.test", "Ann Archer")


def message(**overrides):
    item = {"type": "message", "mode": "read", "itemId": "AAMkMsg1", "conversationId": "AAQkConv1",
            "internetMessageId": "<m1@fabrikam.test>", "subject": "Widgets order",
            "from": who("carol@fabrikam.test", "Carol Customer"), "to": [ANN], "cc": [],
            "bodyHtml": "<p>Hello Ann, we need <b>200 widgets</b>.</p>", "bodyText": "Hello Ann, we need 200 widgets.",
            "headers": "Message-ID: <m1@fabrikam.test>\r\nDate: Tue, 04 Mar 2025 10:00:00 +0000\r\n"
                       "Subject: Widgets order\r\nThread-Index: AQHZ\r\n",
            "attachments": []}
    item.update(overrides)
    return item


def meeting(**overrides):
    item = {"type": "appointment", "mode": "read", "itemId": "AAMkMeeting1", "internetMessageId": None,
            "subject": "Quarterly review", "organizer": who("carol@fabrikam.test", "Carol Customer"),
            "requiredAttendees": [ANN, who("lee@startup.test", "Lee Lead")],
            "optionalAttendees": [who("stranger@nowhere.test", "Stranger Danger")],
            "start": "2025-03-04T15:00:00Z", "end": "2025-03-04T16:00:00Z", "location": "Room 1",
            "bodyHtml": "<p>Agenda: numbers.</p>", "bodyText": "Agenda: numbers."}
    item.update(overrides)
    return item


# -- the pane ----------------------------------------------------------------------------------------

class Pane:
    """One browser context with the pane open; what the pane sent to the API is recorded."""

    def __init__(self, browser, live, width=360):
        self.live = live
        self.context = browser.new_context(viewport={"width": width, "height": 1000})
        self.page = self.context.new_page()
        self.requests: list[dict] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", self._record)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _record(self, request):
        if "/api/addin/" in request.url:
            body = request.post_data
            self.requests.append({"method": request.method, "path": request.url.split("/api/addin/")[1],
                                  "body": json.loads(body) if body else None,
                                  "auth": request.headers.get("authorization", "")})

    def open(self, item=None, *, user=ANN, token=None, sso=None, sets=None, dialog=None,
             body_fails=False, path="/addin/taskpane.html", wait="#track-status", display_language=None):
        config = {"item": item, "user": user, "sets": sets or {"Mailbox": "1.8", "DialogApi": "1.2"},
                  "dialog": dialog, "bodyFails": body_fails, "displayLanguage": display_language}
        if sso is not None:
            config["sso"] = sso
            config["sets"] = {**config["sets"], "IdentityAPI": "1.3"}
        route_office_js(self.context, f"window.__OFFICE_CONFIG = {json.dumps(config)};\n{STUB}")
        if token:
            self.page.add_init_script(
                f"if (!window.opener) sessionStorage.setItem('regarding.paneToken', {json.dumps(json.dumps({'token': token}))});")
        self.page.goto(self.live.url + path)
        if wait:
            self.page.wait_for_selector(wait)
        return self

    def calls(self, name=None, page=None):
        calls = (page or self.page).evaluate("window.__office.calls")
        return [c for c in calls if name is None or c["name"] == name]

    def status(self):
        return self.page.locator("#track-status")

    def person(self, address):
        return self.page.locator(f'li.person[data-address="{address}"]')

    def click(self, key):
        self.page.locator(f'[data-key="{key}"]').click()

    def toast(self):
        return self.page.locator("#pane-toast")

    def close(self):
        self.context.close()


@pytest.fixture
def pane(browser, live):
    opened: list[Pane] = []

    def make(width=360):
        p = Pane(browser, live, width)
        opened.append(p)
        return p

    yield make
    for p in opened:
        assert not p.errors, p.errors
        p.close()


def signed_in_pane(pane, live, item=None, user=None, **kw) -> Pane:
    user = user or live.world.ann
    p = pane()
    return p.open(item if item is not None else message(), token=pane_token(user),
                  user=who(user.email, user.full_name), **kw)


def search_box(page):
    return page.get_by_role("combobox", name="Search accounts, contacts, leads, opportunities and cases")


def results(page):
    return page.locator("ul[role=listbox] [role=option]")


def option(page, name):
    """The search result whose record is called exactly ``name``."""
    return results(page).filter(has=page.locator(".result-name").get_by_text(name, exact=True))


def emails():
    fresh()
    return db.session.scalars(select(Email).order_by(Email.id)).all()


# -- 1. who is who ------------------------------------------------------------------------------------

def test_who_is_who_cards_and_not_in_crm(pane, live):
    w = live.world
    p = signed_in_pane(pane, live, message(cc=[who("lee@startup.test", "Lee Lead"), who("dave@litware.test", "Dave Distant"),
                                               who("priya.vdb@northwind.test", "Dr. Priya van der Berg"),
                                               who("tess@contoso.test", "Tess Teammate")]))
    page = p.page
    # The user is not listed; everyone else is.
    expect(page.locator("li.person")).to_have_count(5)
    tess = p.person("tess@contoso.test")
    expect(tess.locator(".badge")).to_have_text("User")
    expect(tess).to_contain_text("Account manager")
    expect(tess.locator("h3 a")).to_have_count(0)  # users have no record page
    expect(p.person("ann@contoso.test")).to_have_count(0)
    carol = p.person("carol@fabrikam.test")
    expect(carol.locator("h3")).to_have_text("Carol Customer")
    expect(carol.locator(".badge")).to_have_text("Contact")
    for text in ("Buyer", "Fabrikam", "carol@fabrikam.test", "+1 555 0123", "Owner: Ann Archer"):
        expect(carol).to_contain_text(text)
    assert carol.locator("h3 a").get_attribute("href").endswith(f"/r/contact/{w.carol.id}")
    assert carol.get_by_role("link", name="Fabrikam", exact=True).get_attribute("href").endswith(f"/r/account/{w.fabrikam.id}")
    expect(p.person("lee@startup.test").locator(".badge")).to_have_text("Lead")
    # Dave belongs to another business unit: Ann may not read him, so he is not in her CRM.
    expect(p.person("dave@litware.test").locator(".badge")).to_have_text("Not in CRM")
    expect(p.person("dave@litware.test")).not_to_contain_text("Distant CTO")

    # Add as contact: a quick create prefilled from the display name and address.
    stranger = p.person("priya.vdb@northwind.test")
    stranger.get_by_role("button", name="Add as contact").click()
    expect(page.get_by_role("heading", name="New contact")).to_be_visible()
    expect(page.get_by_label("First name", exact=True)).to_have_value("Priya")
    expect(page.get_by_label("Last name", exact=True)).to_have_value("van der Berg")
    expect(page.get_by_label("Email", exact=True)).to_have_value("priya.vdb@northwind.test")
    expect(page.get_by_label("Track this email regarding the new contact", exact=True)).to_be_checked()
    p.click("create-save")
    expect(p.status()).to_have_text("Tracked")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Priya van der Berg")
    expect(p.person("priya.vdb@northwind.test").locator(".badge")).to_have_text("Contact")
    fresh()
    contact = db.session.scalar(select(Contact).where(Contact.email1 == "priya.vdb@northwind.test"))
    assert (contact.first_name, contact.last_name, contact.owner_user_id) == ("Priya", "van der Berg", w.ann.id)
    [email] = emails()
    assert email.regarding_ref == ("contact", contact.id)


def test_add_as_lead_prefills_the_company_from_the_domain(pane, live):
    p = signed_in_pane(pane, live, message(**{"from": who("jo.bloggs@harbour-light.example", "Bloggs, Jo")}))
    p.person("jo.bloggs@harbour-light.example").get_by_role("button", name="Add as lead").click()
    page = p.page
    expect(page.get_by_label("First name", exact=True)).to_have_value("Jo")
    expect(page.get_by_label("Last name", exact=True)).to_have_value("Bloggs")
    expect(page.get_by_label("Company", exact=True)).to_have_value("Harbour Light")
    expect(page.get_by_label("Topic", exact=True)).to_have_value("Widgets order")
    p.click("create-save")
    expect(p.person("jo.bloggs@harbour-light.example").locator(".badge")).to_have_text("Lead")
    fresh()
    lead = db.session.scalar(select(Lead).where(Lead.email1 == "jo.bloggs@harbour-light.example"))
    assert lead.company_name == "Harbour Light"
    assert emails()[0].regarding_ref == ("lead", lead.id)


# -- 2. track status and actions; 9. privacy; 7. content; 8. category ---------------------------------------

def test_before_track_only_addresses_subject_and_message_id_leave(pane, live):
    p = signed_in_pane(pane, live, message(attachments=[
        {"id": "a1", "name": "quote.pdf", "contentType": "application/pdf", "size": 12,
         "content": base64.b64encode(b"%PDF-1.4 hi").decode()}]))
    expect(p.status()).to_have_text("Not tracked")
    assert [r["path"] for r in p.requests] == ["context"]
    sent = p.requests[0]["body"]["item"]
    assert set(sent) <= set(ITEM_KEYS)
    assert not set(sent) & set(CONTENT_KEYS)
    assert sent["internet_message_id"] == "<m1@fabrikam.test>" and sent["subject"] == "Widgets order"
    reads = {c["name"] for c in p.calls()}
    assert not reads & {"body.getAsync", "getAllInternetHeadersAsync", "getAttachmentContentAsync"}
    # The pane keeps nothing but its token in browser storage.
    storage = p.page.evaluate("({local: Object.keys(localStorage), session: Object.keys(sessionStorage)})")
    assert storage == {"local": [], "session": ["regarding.paneToken"]}

    # Track: now the content goes, and the activity exists at once.
    p.click("track")
    expect(p.status()).to_have_text("Tracked")
    track = next(r for r in p.requests if r["path"] == "track")["body"]["item"]
    assert track["html_body"] == "<p>Hello Ann, we need <b>200 widgets</b>.</p>"
    assert "Thread-Index: AQHZ" in track["internet_headers"]
    assert track["attachments"] == [{"name": "quote.pdf", "content_type": "application/pdf", "size": 12,
                                     "content_base64": base64.b64encode(b"%PDF-1.4 hi").decode(), "is_inline": False}]
    [email] = emails()
    assert "200 widgets" in email.html_body and email.conversation_index == "AQHZ"
    assert [a.filename for a in email.attachments] == ["quote.pdf"] and not email.attachments[0].content_omitted
    # The item gets the "Tracked to Regarding" category (created in the master list first).
    assert p.calls("masterCategories.addAsync")[0]["args"][0][0]["displayName"] == "Tracked to Regarding"
    assert p.calls("categories.addAsync")[0]["args"] == [["Tracked to Regarding"]]
    assert p.page.evaluate("window.__office.categories") == ["Tracked to Regarding"]
    expect(p.page.locator('[data-key="open-in-crm"]')).to_have_attribute("href", f"{live.url}/activities/{email.id}")
    expect(p.toast()).to_contain_text("Tracked.")


def test_attachments_over_the_org_limit_and_older_outlooks_send_metadata_only(pane, live):
    org = db.session.get(Organization, 1)
    org.attachment_max_bytes = 10
    db.session.commit()
    big = {"id": "a1", "name": "big.bin", "contentType": "application/octet-stream", "size": 11,
           "content": base64.b64encode(b"x" * 11).decode()}
    p = signed_in_pane(pane, live, message(attachments=[big]), sets={"Mailbox": "1.7"})
    p.click("track")
    expect(p.status()).to_have_text("Tracked")
    sent = next(r for r in p.requests if r["path"] == "track")["body"]["item"]
    assert sent["attachments"][0]["content_base64"] is None and sent["internet_headers"] is None
    names = {c["name"] for c in p.calls()}
    # Mailbox 1.7: no headers, attachment contents or categories are asked for.
    assert not names & {"getAllInternetHeadersAsync", "getAttachmentContentAsync", "categories.addAsync"}
    [email] = emails()
    assert email.attachments[0].content_omitted and email.html_body


def test_a_body_the_pane_cannot_read_becomes_track_pending_and_is_completed_later(pane, live):
    p = signed_in_pane(pane, live, message(), body_fails=True)
    p.click("track")
    expect(p.status()).to_have_text("Track pending")
    expect(p.page.locator(".track-card")).to_contain_text("server-side synchronization")
    assert emails() == []
    fresh()
    req = db.session.scalar(select(tracked.TrackRequest))
    assert req.status == "pending" and req.internet_message_id == "m1@fabrikam.test"
    # Selected again where the body can be read: the pane completes the pending track itself.
    p.page.evaluate("spec => { window.__office.config.bodyFails = false; window.__office.selectItem(spec); }", message())
    expect(p.status()).to_have_text("Tracked")
    assert len(emails()) == 1
    fresh()
    assert db.session.get(tracked.TrackRequest, req.id).status == "done"


def test_failed_track_shows_the_reason_and_tries_again(pane, live):
    w = live.world
    req = tracked.TrackRequest(user_id=w.ann.id, internet_message_id="m1@fabrikam.test",
                                status="failed", reason="The mailbox was not reachable.")
    req.set_regarding("opportunity", w.opportunity.id)
    db.session.add(req)
    db.session.commit()
    p = signed_in_pane(pane, live)
    expect(p.status()).to_have_text("Track failed")
    expect(p.page.locator(".track-card")).to_contain_text("The mailbox was not reachable.")
    expect(p.page.locator(".track-card .regarding-name")).to_have_text("Fabrikam widgets")
    p.click("track")
    expect(p.status()).to_have_text("Tracked")
    assert emails()[0].regarding_ref == ("opportunity", w.opportunity.id)


def test_track_and_set_regarding_with_ranked_search_then_change_and_untrack(pane, live):
    w = live.world
    pa = authz.principal(w.ann)
    # Two contacts with the same name: the results say which is which.
    records.create(pa, RECORD_TYPES["contact"], {"first_name": "Sam", "last_name": "Smith", "email1": "sam@fabrikam.test",
                                                 "parent_account_id": w.fabrikam.id})
    records.create(pa, RECORD_TYPES["contact"], {"first_name": "Sam", "last_name": "Smith", "email1": "sam@other.test",
                                                 "city": "Oslo"})
    db.session.commit()
    p = signed_in_pane(pane, live)
    page = p.page
    p.click("track-regarding")
    box = search_box(page)
    expect(box).to_be_focused()
    # Before typing: suggestions from the item (Carol and her account).
    expect(page.locator(".results-caption")).to_have_text("Suggested from this item")
    assert page.locator(".result-name").all_inner_texts() == ["Carol Customer", "Fabrikam"]
    box.fill("sam smith")
    expect(page.locator(".results-caption")).to_have_text("2 results")
    details = page.locator(".result-detail").all_inner_texts()
    assert any("sam@fabrikam.test" in d and "Fabrikam" in d for d in details)
    assert any("sam@other.test" in d and "Oslo" in d for d in details)
    box.fill("fab")
    expect(page.locator(".results-caption")).to_have_text("4 results")
    names = page.locator(".result-name").all_inner_texts()
    assert names[0] == "Fabrikam" and "Fabrikam widgets" in names  # prefix of a name first
    # Keyboard: arrow down to the opportunity, Enter.
    index = names.index("Fabrikam widgets")
    for _ in range(index + 1):
        box.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", results(page).nth(index).get_attribute("id"))
    box.press("Enter")
    expect(p.status()).to_have_text("Tracked")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Fabrikam widgets")
    assert emails()[0].regarding_ref == ("opportunity", w.opportunity.id)
    # Related data now follows the regarding record.
    expect(page.locator("#related-title")).to_have_text("Related to Fabrikam widgets")

    p.click("change-regarding")
    expect(page.locator(".current-regarding")).to_contain_text("Fabrikam widgets")
    search_box(page).fill("Broken")
    option(page, "Broken widget").click()
    expect(page.locator(".track-card .regarding-name")).to_have_text("Broken widget")
    assert emails()[0].regarding_ref == ("case", w.case.id)
    put = [r for r in p.requests if r["path"] == "regarding"][-1]
    assert put["method"] == "PUT" and put["body"] == {"internet_message_id": "<m1@fabrikam.test>",
                                                        "regarding": {"type": "case", "id": w.case.id}}

    # Untrack her own copy, deleting it from the CRM.
    p.click("untrack")
    expect(page.get_by_role("heading", name="Untrack this email?")).to_be_visible()
    page.get_by_label("Also delete the email from the CRM", exact=True).check()
    p.click("untrack-confirm")
    expect(p.status()).to_have_text("Not tracked")
    expect(p.toast()).to_contain_text("deleted from the CRM")
    assert emails() == []
    assert p.page.evaluate("window.__office.categories") == []


def test_untrack_of_someone_elses_record_removes_the_link_and_keeps_it(pane, live):
    w = live.world
    content = tracking.EmailContent(message_id="<m1@fabrikam.test>", subject="Widgets order",
                                    from_=("Carol Customer", "carol@fabrikam.test"),
                                    to=[("Tess Teammate", "tess@contoso.test"), ("Ann Archer", "ann@contoso.test")],
                                    html_body="<p>hi</p>")
    email, _ = tracking.track_email(authz.principal(w.teammate), content, regarding=("account", w.fabrikam.id))
    db.session.commit()
    p = signed_in_pane(pane, live)
    expect(p.status()).to_have_text("Tracked")
    p.click("untrack")
    p.page.get_by_label("Also delete the email from the CRM", exact=True).check()
    p.click("untrack-confirm")
    expect(p.status()).to_have_text("Not tracked")
    expect(p.toast()).to_contain_text("kept because someone else owns it")
    fresh()
    kept = db.session.get(Email, email.id)
    assert kept is not None and kept.owner_user_id == w.teammate.id and kept.regarding_ref == ("account", w.fabrikam.id)
    req = db.session.scalar(select(tracked.TrackRequest).where(tracked.TrackRequest.user_id == w.ann.id))
    assert req.status == "untracked"
    assert next(r for r in p.requests if r["path"] == "untrack")["body"] == {
        "internet_message_id": "<m1@fabrikam.test>", "delete_copy": True}
    # For Tess nothing changed.
    assert tracked.tracking_status(authz.principal(w.teammate), "<m1@fabrikam.test>").status == "tracked"


# -- 3. related data -------------------------------------------------------------------------------------

def test_related_data_for_the_selected_person(pane, live):
    w = live.world
    pa = authz.principal(w.ann)
    for n in range(6):
        tracking.track_email(pa, tracking.EmailContent(
            message_id=f"<old{n}@fabrikam.test>", subject=f"Older mail {n}", from_=("Carol", "carol@fabrikam.test"),
            to=[("Ann", "ann@contoso.test")], text_body="x", sent_on=utcnow() - timedelta(days=10 - n)),
            regarding=("account", w.fabrikam.id))
    db.session.commit()
    p = signed_in_pane(pane, live, message(cc=[who("lee@startup.test", "Lee Lead")]))
    page = p.page
    expect(page.locator("#related-title")).to_have_text("Related to Carol Customer")
    expect(page.locator(".parent-account a")).to_have_text("Fabrikam")
    # Show related for the account on Carol's card: open opportunities, cases, last five activities.
    carol = p.person("carol@fabrikam.test")
    p.person("lee@startup.test").get_by_role("button", name="Show related").click()
    expect(page.locator("#related-title")).to_have_text("Related to Lee Lead")
    expect(page.locator("#related-title")).to_be_focused()
    carol.get_by_role("button", name="Show related").click()
    expect(page.locator("#related-title")).to_have_text("Related to Carol Customer")
    # An account's related data, through the API the pane uses.
    p.open(message(**{"from": who("info@fabrikam.test", "Fabrikam Info")}), token=pane_token(w.ann))
    expect(page.locator("#related-title")).to_have_text("Related to Fabrikam")
    group = page.locator(".related-group")
    expect(group.nth(0)).to_contain_text("Fabrikam widgets")
    expect(group.nth(0)).to_contain_text("12,000")
    expect(group.nth(1)).to_contain_text("Broken widget")
    expect(group.nth(1)).to_contain_text("CAS-00001")
    expect(group.nth(2).locator("li")).to_have_count(5)
    expect(group.nth(2).locator("li").first).to_contain_text("Older mail 5")
    links = group.nth(2).locator("a")
    assert all("/activities/" in links.nth(i).get_attribute("href") for i in range(5))


# -- 4. quick create ------------------------------------------------------------------------------------

def test_quick_create_opportunity_becomes_the_regarding(pane, live):
    w = live.world
    p = signed_in_pane(pane, live)
    page = p.page
    p.click("create-opportunity")
    expect(page.get_by_label("Topic", exact=True)).to_have_value("Widgets order")
    expect(page.get_by_label("Customer", exact=True)).to_have_value(f"account:{w.fabrikam.id}")
    page.get_by_label("Est. revenue", exact=True).fill("4500")
    p.click("create-save")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Widgets order")
    fresh()
    opp = db.session.scalar(select(Opportunity).where(Opportunity.name == "Widgets order"))
    assert opp.customer_account_id == w.fabrikam.id and str(opp.estimated_value) == "4500.00"
    assert emails()[0].regarding_ref == ("opportunity", opp.id)


def test_quick_create_task_and_phone_call_prefilled_from_the_item(pane, live):
    w = live.world
    p = signed_in_pane(pane, live)
    page = p.page
    p.click("create-task")
    expect(page.get_by_label("Subject", exact=True)).to_have_value("Follow up: Widgets order")
    expect(page.get_by_label("Regarding", exact=True)).to_have_value(f"account:{w.fabrikam.id}")
    p.click("create-save")
    expect(p.toast()).to_contain_text("Task")
    p.click("create-phone_call")
    expect(page.get_by_label("Subject", exact=True)).to_have_value("Call Carol Customer")
    expect(page.get_by_label("Phone number", exact=True)).to_have_value("+1 555 0123")
    page.get_by_label("Regarding", exact=True).select_option(f"contact:{w.carol.id}")
    p.click("create-save")
    expect(p.toast()).to_contain_text("Phone call")
    fresh()
    task = db.session.scalar(select(Task))
    call = db.session.scalar(select(PhoneCall))
    assert task.subject == "Follow up: Widgets order" and task.regarding_ref == ("account", w.fabrikam.id)
    assert task.scheduled_end is not None
    assert call.phone_number == "+1 555 0123" and call.regarding_ref == ("contact", w.carol.id)
    # The email itself was not tracked by creating activities.
    assert emails() == []


def test_quick_create_shows_field_messages_from_the_server(pane, live):
    p = signed_in_pane(pane, live, message(**{"from": who("x@example.test", "")}))
    page = p.page
    p.click("create-contact")
    page.get_by_label("Last name", exact=True).fill("")
    page.get_by_label("Email", exact=True).fill("not an address")
    p.click("create-save")
    last = page.get_by_label("Last name", exact=True)
    expect(last).to_have_attribute("aria-invalid", "true")
    expect(last).to_be_focused()
    expect(page.locator(".field.invalid")).to_have_count(2)
    expect(page.locator(".create-form")).to_contain_text("This field is required.")
    expect(page.locator(".create-form")).to_contain_text("Not a valid email address.")
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 2  # Carol and Dave only
    page.keyboard.press("Escape")
    expect(page.get_by_role("heading", name="New contact")).to_have_count(0)
    expect(page.locator('[data-key="create-contact"]')).to_be_focused()


# -- 5. meetings --------------------------------------------------------------------------------------

def test_meeting_organizer_and_attendees_are_tracked_as_parties(pane, live):
    w = live.world
    p = signed_in_pane(pane, live, meeting())
    page = p.page
    expect(page.get_by_role("heading", name="Organizer and attendees")).to_be_visible()
    expect(p.person("carol@fabrikam.test")).to_contain_text("Organizer")
    expect(p.person("stranger@nowhere.test")).to_contain_text("Not in CRM")
    sent = p.requests[0]["body"]["item"]
    assert sent["type"] == "appointment" and sent["item_id"] == "AAMkMeeting1"
    assert sent["start"] == "2025-03-04T15:00:00.000Z" and sent["location"] == "Room 1"
    p.click("track-regarding")
    search_box(page).fill("Fabrikam")
    option(page, "Fabrikam").click()
    expect(p.status()).to_have_text("Tracked")
    fresh()
    appt = db.session.scalar(select(Appointment))
    assert appt.regarding_ref == ("account", w.fabrikam.id) and appt.location == "Room 1"
    assert appt.scheduled_start.isoformat().startswith("2025-03-04T15:00") and "Agenda" in (appt.description or "")
    roles = sorted((x.role, x.address, x.party_ref) for x in appt.parties)
    assert roles == sorted([("organizer", "carol@fabrikam.test", ("contact", w.carol.id)),
                            ("required", "ann@contoso.test", ("user", w.ann.id)),
                            ("required", "lee@startup.test", ("lead", w.lee.id)),
                            ("optional", "stranger@nowhere.test", None)])


# -- 6. compose ---------------------------------------------------------------------------------------

def test_compose_regarding_marks_pending_with_a_token_and_the_sent_mail_is_tracked(pane, live):
    w = live.world
    draft = message(mode="compose", internetMessageId=None, itemId=None, subject="Your quote",
                    **{"from": ANN, "to": [who("carol@fabrikam.test", "Carol Customer")]})
    p = signed_in_pane(pane, live, draft)
    page = p.page
    expect(page.locator(".item-line .badge")).to_have_text("Draft")
    p.click("track-regarding")
    search_box(page).fill("widgets")
    option(page, "Fabrikam widgets").click()
    expect(p.status()).to_have_text("Track pending")
    expect(page.locator(".track-card")).to_contain_text("tracked when you send it")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Fabrikam widgets")
    fresh()
    req = db.session.scalar(select(tracked.TrackRequest))
    assert req.status == "pending" and req.tracking_token and req.regarding_ref == ("opportunity", w.opportunity.id)
    # The token went into the draft's subject; nothing of the body was read.
    assert page.evaluate("window.__office.subjectSets") == [f"Your quote {req.tracking_token}"]
    assert not p.calls("body.getAsync")
    # Sent: when the pane sees the sent item (known by the token in its subject) it tracks it
    # with its content at once, regarding what was chosen in the draft.
    sent = message(internetMessageId="<sent1@contoso.test>", subject=f"Your quote {req.tracking_token}",
                   **{"from": ANN, "to": [who("carol@fabrikam.test", "Carol Customer")]})
    page.evaluate("spec => window.__office.selectItem(spec)", sent)
    expect(p.status()).to_have_text("Tracked")
    assert p.calls("body.getAsync")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Fabrikam widgets")
    [email] = emails()
    assert email.tracking_token == req.tracking_token and email.direction == "outgoing"


def test_compose_meeting_is_saved_for_an_id_and_pending(pane, live):
    draft = meeting(mode="compose", itemId=None, organizer=ANN)
    p = signed_in_pane(pane, live, draft)
    p.click("track")
    expect(p.status()).to_have_text("Track pending")
    assert p.calls("saveAsync")
    fresh()
    req = db.session.scalar(select(tracked.TrackRequest))
    assert req.item_type == "appointment" and req.internet_message_id.startswith("draft-")
    # Opened again later, the saved draft is known by its id (getItemIdAsync) and still pending.
    p.page.evaluate("window.__office.selectItem(window.__office.spec)")
    expect(p.page.locator(".track-card .track-text")).to_contain_text("tracked when you send it")
    expect(p.status()).to_have_text("Track pending")


def test_quick_create_case_by_customer_service(pane, live):
    w = live.world
    p = signed_in_pane(pane, live, user=w.csr)
    page = p.page
    p.click("create-case")
    expect(page.get_by_label("Case title", exact=True)).to_have_value("Widgets order")
    expect(page.get_by_label("Customer", exact=True)).to_have_value(f"account:{w.fabrikam.id}")
    page.get_by_label("Priority", exact=True).select_option("high")
    page.get_by_label("Description", exact=True).fill("Line one\nLine two")
    p.click("create-save")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Widgets order")
    fresh()
    from server.crm.models import Case
    case = db.session.scalar(select(Case).where(Case.title == "Widgets order"))
    assert case.priority == "high" and case.customer_account_id == w.fabrikam.id
    assert case.description == "Line one\nLine two" and case.ticket_number.startswith("CAS-")
    assert emails()[0].regarding_ref == ("case", case.id)


def test_compose_recipients_changes_update_who_is_who(pane, live):
    draft = message(mode="compose", internetMessageId=None, itemId=None, **{"from": ANN, "to": []})
    p = signed_in_pane(pane, live, draft)
    expect(p.page.locator(".section .empty").first).to_contain_text("Add recipients")
    p.page.evaluate("to => window.__office.setRecipients(to)", [who("lee@startup.test", "Lee Lead")])
    expect(p.person("lee@startup.test").locator(".badge")).to_have_text("Lead")


# -- errors ------------------------------------------------------------------------------------------

def test_typed_errors_from_the_server_are_shown_plainly(pane, live):
    w = live.world
    # Dave is shared with Ann to read only: she sees him, but may not link activities to him.
    records.share(authz.principal(w.bob), w.dave, w.ann, {"read"})
    db.session.commit()
    p = signed_in_pane(pane, live, message(**{"from": who("dave@litware.test", "Dave Distant")}))
    page = p.page
    expect(p.person("dave@litware.test").locator(".badge")).to_have_text("Contact")
    p.click("track-regarding")
    search_box(page).fill("Dave")
    option(page, "Dave Distant").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("You may not link activities to this contact.")
    expect(page.locator('[data-key="error-banner"]')).to_be_focused()
    expect(p.status()).to_have_text("Not tracked")
    assert emails() == []
    alert.get_by_role("button", name="Dismiss").click()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_an_unreachable_server_is_reported_with_a_retry(pane, live):
    p = pane()
    p.page.route("**/api/addin/context", lambda route: route.abort("connectionrefused"))
    p.open(message(), token=pane_token(live.world.ann), wait="[data-key=retry]")
    expect(p.page.get_by_role("alert")).to_contain_text("Could not reach the CRM server")
    p.page.unroute("**/api/addin/context")
    p.click("retry")
    expect(p.status()).to_have_text("Not tracked")


def test_content_too_large_to_send_becomes_track_pending(pane, live):
    live.app.config["MAX_CONTENT_LENGTH"] = 16 * 1024
    p = signed_in_pane(pane, live, message(bodyHtml="<p>" + "x" * 40000 + "</p>"))
    p.click("track")
    expect(p.status()).to_have_text("Track pending")
    tracks = [r for r in p.requests if r["path"] == "track"]
    assert len(tracks) == 2 and tracks[1]["body"]["item"]["html_body"] is None
    assert emails() == []


# -- sign-in ------------------------------------------------------------------------------------------

@pytest.fixture
def tenant(app):
    from server.security import sso
    t = Tenant()
    app.config.update(REGARDING_SSO_CLIENT_ID=CLIENT_ID, REGARDING_SSO_TENANT=TID,
                      REGARDING_BASE_URL="https://crm.contoso.test")
    sso.init_app(app, fetcher=t)
    return t


def test_sso_signs_the_pane_in_without_a_dialog(pane, live, tenant):
    p = pane().open(message(), sso={"tokens": [sso_token()]})
    expect(p.status()).to_have_text("Not tracked")
    assert p.requests[0]["auth"].startswith("Bearer eyJ")
    assert not p.calls("displayDialogAsync")
    assert p.page.evaluate("Object.keys(sessionStorage)") == []  # SSO tokens are not stored


def test_an_expired_sso_token_is_refreshed_silently_and_the_call_retried(pane, live, tenant):
    now = int(time.time())
    expired = sso_token(exp=now - 600, iat=now - 4000)
    p = pane().open(message(), sso={"tokens": [expired, sso_token()]})
    expect(p.status()).to_have_text("Not tracked")
    assert len(p.calls("auth.getAccessToken")) == 2
    contexts = [r for r in p.requests if r["path"] == "context"]
    assert len(contexts) == 2 and contexts[0]["auth"] != contexts[1]["auth"]
    assert not p.calls("displayDialogAsync")


def test_an_expired_pane_token_is_renewed_through_the_dialog_and_the_action_retried(pane, live):
    w = live.world
    p = pane()
    # Signed in to the CRM in this browser: the dialog completes by itself.
    p.page.goto(live.url + "/signin")
    p.page.get_by_label("Email", exact=True).fill(w.ann.email)
    p.page.get_by_label("Password", exact=True).fill(PASSWORD)
    p.page.get_by_role("button", name="Sign in").click()
    secret = pane_token(w.ann)
    p.open(message(), token=secret)
    row = db.session.scalar(select(ApiToken).where(ApiToken.kind == "pane"))
    row.expires_on = utcnow() - timedelta(minutes=1)
    db.session.commit()
    p.click("track")
    expect(p.status()).to_have_text("Tracked", timeout=15000)
    assert len(p.calls("displayDialogAsync")) == 1
    tracks = [r for r in p.requests if r["path"] == "track"]
    assert len(tracks) == 2 and tracks[0]["auth"] != tracks[1]["auth"]
    new = json.loads(p.page.evaluate("sessionStorage.getItem('regarding.paneToken')"))["token"]
    assert new.startswith("rgp_") and new != secret


def test_sso_failure_falls_back_to_the_sign_in_dialog(pane, live):
    w = live.world
    p = pane().open(message(), sso={"error": {"code": 13003, "message": "Unsupported user type."}},
                    wait="[data-key=signin]")
    page = p.page
    expect(page.get_by_role("heading", name="Sign in to Regarding")).to_be_visible()
    assert p.calls("auth.getAccessToken")
    with page.expect_popup() as popup_info:
        p.click("signin")
    dialog = popup_info.value
    # Not signed in to the CRM yet: the dialog shows the server's sign-in page.
    dialog.wait_for_url("**/signin?next=/addin/signin**")
    dialog.get_by_label("Email", exact=True).fill(w.ann.email)
    dialog.get_by_label("Password", exact=True).fill(PASSWORD)
    dialog.get_by_role("button", name="Sign in").click()
    expect(p.status()).to_have_text("Not tracked", timeout=15000)
    assert p.calls("dialog.message") and p.calls("dialog.close")
    fresh()
    row = db.session.scalar(select(ApiToken).where(ApiToken.kind == "pane", ApiToken.user_id == w.ann.id))
    assert row is not None and row.expires_on - utcnow() < timedelta(hours=8, minutes=1)
    assert p.requests[-1]["auth"] == "Bearer " + json.loads(page.evaluate("sessionStorage.getItem('regarding.paneToken')"))["token"]


def test_a_dialog_the_user_closes_leaves_the_sign_in_screen_with_a_message(pane, live):
    p = pane().open(message(), wait="[data-key=signin]")
    with p.page.expect_popup() as popup_info:
        p.click("signin")
    popup_info.value.close()
    expect(p.page.locator(".signin .banner")).to_contain_text("closed before you signed in")
    expect(p.page.locator("[data-key=signin]")).to_be_enabled()


def test_a_user_without_the_addin_privilege_is_told_so(pane, live):
    w = live.world
    p = pane()
    # The dialog refuses to issue a token to someone without the privilege.
    p.page.goto(live.url + "/signin")
    p.page.get_by_label("Email", exact=True).fill(w.noaddin.email)
    p.page.get_by_label("Password", exact=True).fill(PASSWORD)
    p.page.get_by_role("button", name="Sign in").click()
    p.open(message(), wait="[data-key=signin]")
    with p.page.expect_popup():
        p.click("signin")
    expect(p.page.locator(".signin .banner")).to_contain_text("Use the Outlook add-in")


def test_sign_out_revokes_the_pane_token(pane, live):
    w = live.world
    secret = pane_token(w.ann)
    p = pane().open(message(), token=secret)
    p.click("signout")
    expect(p.page.get_by_role("heading", name="Sign in to Regarding")).to_be_visible()
    expect(p.page.locator(".signin")).to_contain_text("You are signed out.")
    fresh()
    assert db.session.scalar(select(ApiToken)).revoked_on is not None
    assert p.page.evaluate("Object.keys(sessionStorage)") == []


# -- hostile input, keyboard, layout --------------------------------------------------------------

HOSTILE = '<img src=x onerror="window.__pwned=1;alert(1)">'


def test_hostile_names_and_subjects_are_inert_text(pane, live):
    w = live.world
    pa = authz.principal(w.ann)
    records.create(pa, RECORD_TYPES["account"], {"name": f"Evil {HOSTILE} Corp", "email1": "evil@evil.test"})
    db.session.commit()
    item = message(subject=f"<script>alert(2)</script>{HOSTILE}",
                   **{"from": who("evil@evil.test", HOSTILE), "cc": [who("x@unknown.test", f"{HOSTILE} X")]})
    p = signed_in_pane(pane, live, item)
    page = p.page
    expect(p.person("evil@evil.test").locator("h3")).to_have_text(f"Evil {HOSTILE} Corp")
    expect(page.locator(".item-subject")).to_have_text(f"<script>alert(2)</script>{HOSTILE}")
    expect(p.person("x@unknown.test").locator("h3")).to_have_text(f"{HOSTILE} X")
    p.click("track-regarding")
    search_box(page).fill("Evil")
    expect(results(page).first).to_contain_text(HOSTILE)
    results(page).first.click()
    expect(page.locator(".track-card .regarding-name")).to_have_text(f"Evil {HOSTILE} Corp")
    page.wait_for_timeout(200)
    assert p.dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0


def test_keyboard_only(pane, live):
    p = signed_in_pane(pane, live)
    page = p.page
    page.keyboard.press("Tab")  # skip link
    expect(page.locator(".skip")).to_be_focused()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.key") == "track-regarding":
            break
    page.keyboard.press("Enter")
    expect(search_box(page)).to_be_focused()
    page.keyboard.type("Broken")
    expect(results(page)).to_have_count(1)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Broken widget")
    expect(p.status()).to_be_focused()


def overflow_report(page):
    return page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        const bad = [];
        for (const el of document.querySelectorAll('body *')) {
            if (el.closest('.visually-hidden, .skip, [hidden]')) continue;
            const r = el.getBoundingClientRect();
            if (r.width === 0 && r.height === 0) continue;
            if (r.right > width + 0.5 || r.left < -0.5) bad.push(el.tagName + '.' + el.className + ' right=' + r.right);
            const style = getComputedStyle(el);
            if (el.clientWidth > 0 && style.overflowX === 'visible' && el.scrollWidth > el.clientWidth + 1
                && style.display !== 'inline') bad.push(el.tagName + '.' + el.className + ' scrolls ' + el.scrollWidth);
        }
        return {scrollWidth: document.documentElement.scrollWidth, width, bad};
    }""")


def test_320_px_wide_nothing_overflows(pane, live):
    w = live.world
    SHOTS.mkdir(parents=True, exist_ok=True)
    tracking.track_email(authz.principal(w.ann), tracking.EmailContent(
        message_id="<m1@fabrikam.test>", subject="Widgets order", from_=("Carol", "carol@fabrikam.test"),
        to=[("Ann", "ann@contoso.test")], text_body="x"), regarding=("opportunity", w.opportunity.id))
    db.session.commit()
    long_name = "Maximiliana Bartholomew-Featherstonehaugh-Cholmondeley"
    item = message(subject="An exceptionally long subject line that keeps going " * 3, cc=[
        who("lee@startup.test", "Lee Lead"),
        who("a.very.long.address.without.breaks.anywhere.at.all@subdomain.extremely-long-domain-name.example", long_name)])
    p = pane(width=320)
    p.open(item, token=pane_token(w.ann), user=ANN)
    page = p.page
    expect(p.status()).to_have_text("Tracked")
    report = overflow_report(page)
    page.screenshot(path=str(SHOTS / "pane-320.png"), full_page=True)
    assert report["width"] == 320 and report["scrollWidth"] <= 320, report
    assert report["bad"] == [], report["bad"]
    # The panels fit too: search with results, a quick create form, the untrack question.
    p.click("change-regarding")
    search_box(page).fill("fab")
    expect(page.locator(".results-caption")).to_have_text(re.compile(r"^\d+ results$"))
    page.screenshot(path=str(SHOTS / "pane-320-search.png"), full_page=True)
    assert overflow_report(page)["bad"] == []
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    p.click("create-opportunity")
    page.screenshot(path=str(SHOTS / "pane-320-create.png"), full_page=True)
    assert overflow_report(page)["bad"] == []
    page.keyboard.press("Escape")
    p.click("untrack")
    assert overflow_report(page)["bad"] == []
    # And the sign-in screen.
    p.click("untrack-cancel")
    p.click("signout")
    expect(page.locator("[data-key=signin]")).to_be_visible()
    page.screenshot(path=str(SHOTS / "pane-320-signin.png"), full_page=True)
    assert overflow_report(page)["bad"] == []


def test_a_pinned_pane_follows_the_selection(pane, live):
    p = signed_in_pane(pane, live)
    expect(p.person("carol@fabrikam.test")).to_be_visible()
    p.page.evaluate("spec => window.__office.selectItem(spec)",
                    message(internetMessageId="<m2@startup.test>", subject="Hello from Lee",
                            **{"from": who("lee@startup.test", "Lee Lead")}))
    expect(p.page.locator(".item-subject")).to_have_text("Hello from Lee")
    expect(p.person("lee@startup.test")).to_be_visible()
    expect(p.person("carol@fabrikam.test")).to_have_count(0)
    p.page.evaluate("window.__office.selectItem(null)")
    expect(p.page.get_by_role("heading", name="Select an email or meeting")).to_be_visible()


def test_outside_outlook_the_page_says_where_it_belongs(browser, live):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live.url + "/addin/taskpane.html")  # Office.js is blocked: no Outlook here
        expect(page.get_by_role("heading", name="Open Regarding from Outlook")).to_be_visible()
        assert page.get_by_role("link", name="Try it in the add-in preview").get_attribute("href") == live.url + "/addin/preview"
    finally:
        context.close()


# -- the preview ----------------------------------------------------------------------------------

def test_preview_runs_the_real_pane_beside_sample_items(browser, live):
    w = live.world
    tracking.track_email(authz.principal(w.ann), tracking.EmailContent(
        message_id="<demo1@fabrikam.test>", subject="Tracked demo mail", from_=("Carol Customer", "carol@fabrikam.test"),
        to=[("Ann Archer", "ann@contoso.test")], html_body="<p>Demo body</p>"), regarding=("account", w.fabrikam.id))
    db.session.commit()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url + "/addin/preview")
        page.get_by_label("Email", exact=True).fill(w.ann.email)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/addin/preview")
        pane = page.frame_locator("#pv-pane")
        pane.locator("[data-key=signin]").click()  # the inline sign-in dialog completes by itself
        expect(pane.locator("#track-status")).to_have_text("Tracked", timeout=15000)
        expect(pane.locator(".track-card .regarding-name")).to_have_text("Fabrikam")
        expect(page.locator("#pv-dialog")).to_be_hidden()
        # A stranger's email: not in CRM; track it for real, and the category shows in the list.
        page.locator('.pv-item', has_text="Jonas Whitaker").click()
        expect(pane.locator('li.person[data-address="jonas.whitaker@harbourlight-ventures.example"] .badge')).to_have_text("Not in CRM")
        pane.locator("[data-key=track]").click()
        expect(pane.locator("#track-status")).to_have_text("Tracked")
        expect(page.locator(".pv-item.selected .pv-cat")).to_have_text("Tracked to Regarding")
        stranger = emails()[-1]
        assert stranger.subject == "Introduction: Harbourlight Ventures <partnership>"
        assert [a.filename for a in stranger.attachments] == ["Office floor plan.pdf"]
        # The draft: tracking it puts the token in the subject the reader shows.
        page.locator(".pv-item", has_text="Proposal and next steps").click()
        expect(pane.locator(".item-line .badge")).to_have_text("Draft")
        pane.locator("[data-key=track]").click()
        expect(pane.locator("#track-status")).to_have_text("Track pending")
        expect(page.locator("#pv-subject")).to_have_value(re.compile(r"^Proposal and next steps CRM:\d{7}$"))
        page.screenshot(path=str(SHOTS / "preview.png"))
        # Send it: the sent email shows in Sent Items and the pane tracks it there and then.
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator(".pv-item.selected")).to_contain_text("Proposal and next steps CRM:")
        expect(pane.locator("#track-status")).to_have_text("Tracked")
        sent = emails()[-1]
        assert sent.subject.startswith("Proposal and next steps CRM:") and sent.direction == "outgoing"
        assert errors == []
    finally:
        context.close()


# -- prefilling names -----------------------------------------------------------------------------

NAME_CASES = [
    ("Carol Customer", "carol@fabrikam.test", "Carol", "Customer"),
    ("Customer, Carol", "carol@fabrikam.test", "Carol", "Customer"),
    ("Dr. Jane van der Berg PhD", "jane@x.test", "Jane", "van der Berg"),
    ('"Mary Ann Smith (Sales)"', "mary@x.test", "Mary Ann", "Smith"),
    ("Prince", "prince@x.test", "", "Prince"),
    ("", "carol.m.customer@fabrikam.test", "Carol", "M Customer"),
    ("jsmith@x.test", "jsmith@x.test", "", "Jsmith"),
    ("José García-López", "jose@x.test", "José", "García-López"),
]
COMPANY_CASES = [("carol@mail.fabrikam.example", "Fabrikam"), ("jo@harbour-light.co.uk", "Harbour Light"),
                 ("someone@gmail.com", ""), ("x@localhost", "")]


def test_names_and_companies_are_prefilled_the_way_people_expect(browser, live):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live.url + "/addin/taskpane-preview.html")  # any page of the add-in's origin
        names = page.evaluate("""async cases => {
            const m = await import('/addin/js/names.js');
            return cases.map(([display, address]) => m.splitName(display, address));
        }""", [[d, a] for d, a, _, _ in NAME_CASES])
        assert names == [{"first_name": f, "last_name": l} for _, _, f, l in NAME_CASES]
        companies = page.evaluate("""async cases => {
            const m = await import('/addin/js/names.js');
            return cases.map(m.companyFromAddress);
        }""", [a for a, _ in COMPANY_CASES])
        assert companies == [c for _, c in COMPANY_CASES]
    finally:
        context.close()
