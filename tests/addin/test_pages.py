"""The add-in's pages through the Flask test client: the task pane and its files with the
CSP Outlook needs, the sign-in dialog and its pane token, the preview's samples, and the
administrators' manifest page."""
from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.crm.services import tracking
from server.db import db, utcnow
from server.security import authz
from server.security.models import ApiToken
from server.addin.preview import samples
from server.web.addin_pages import OFFICE_JS
from tests.addin import addin_world as aw
from tests.addin.addin_world import QueryCounter

PASSWORD = "Correct-horse-9"
OUTLOOK = ("https://outlook.office.com", "https://outlook.office365.com", "https://outlook.live.com",
           "https://*.outlook.com")


@pytest.fixture
def world(app):
    from server.security import passwords
    w = aw.build()
    for user in (w.ann, w.bob, w.admin, w.noaddin):
        passwords.set_password(user, PASSWORD)
    db.session.commit()
    return w


def csp(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
            for part in (p.strip() for p in policy.split(";")) if part}


# -- the task pane -------------------------------------------------------------------------------

def test_the_pane_may_be_framed_by_outlook_and_loads_office_js_from_the_cdn(client):
    r = client.get("/addin/taskpane.html")
    assert r.status_code == 200 and r.mimetype == "text/html"
    policy = csp(r)
    assert policy["script-src"] == "'self' https://appsforoffice.microsoft.com"
    ancestors = policy["frame-ancestors"].split()
    assert "'none'" not in ancestors and "'self'" in ancestors and all(h in ancestors for h in OUTLOOK)
    assert policy["default-src"] == "'self'" and policy["object-src"] == "'none'"
    assert "X-Frame-Options" not in r.headers
    html = r.get_data(as_text=True)
    assert html.count(f'<script src="{OFFICE_JS}"></script>') == 1
    assert 'type="module" src="js/main.js"' in html and "office-standin" not in html


def test_the_preview_pane_uses_the_stand_in_and_only_this_site_may_frame_it(client):
    r = client.get("/addin/taskpane-preview.html")
    html = r.get_data(as_text=True)
    assert OFFICE_JS not in html and '<script src="preview/office-standin.js"></script>' in html
    assert csp(r)["frame-ancestors"] == "'self'"


@pytest.mark.parametrize("path, mimetype", [
    ("/addin/js/main.js", "text/javascript"), ("/addin/js/views/people.js", "text/javascript"),
    ("/addin/taskpane.css", "text/css"), ("/addin/preview/office-standin.js", "text/javascript"),
])
def test_the_pane_files_are_served_with_the_add_in_policy(client, path, mimetype):
    r = client.get(path)
    assert r.status_code == 200 and r.mimetype == mimetype
    assert "appsforoffice.microsoft.com" in csp(r)["script-src"]


@pytest.mark.parametrize("path", ["/addin/../server/config.py", "/addin/%2e%2e/server/config.py",
                                  "/addin/js/missing.js", "/addin/README.md", "/addin/nothing.py"])
def test_nothing_else_is_served_from_the_addin_folder(client, path):
    assert client.get(path).status_code == 404


def test_other_pages_still_may_not_be_framed(client):
    assert "frame-ancestors 'none'" in client.get("/signin").headers["Content-Security-Policy"]


# -- the sign-in dialog --------------------------------------------------------------------------

def test_the_dialog_sends_anonymous_users_to_sign_in_and_back(client, world):
    r = client.get("/addin/signin")
    assert r.status_code == 302 and r.headers["Location"] == "/signin?next=/addin/signin"
    r = client.get("/addin/signin?host=preview")
    assert r.headers["Location"] == "/signin?next=/addin/signin?host%3Dpreview"
    r = client.post("/signin", data={"email": world.ann.email, "password": PASSWORD, "next": "/addin/signin"})
    assert r.headers["Location"] == "/addin/signin"


def test_the_dialog_page_holds_no_token_and_is_not_cached(signin, world):
    c = signin(world.ann, PASSWORD)
    r = c.get("/addin/signin")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    html = r.get_data(as_text=True)
    assert f'<script src="{OFFICE_JS}"></script>' in html and "/addin/signin.js" in html
    assert "rgp_" not in html and 'name="csrf-token"' in html
    assert "https://outlook.office.com" in csp(r)["frame-ancestors"]
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0
    preview = c.get("/addin/signin?host=preview")
    assert "preview/office-standin.js" in preview.get_data(as_text=True)
    assert OFFICE_JS not in preview.get_data(as_text=True)
    assert csp(preview)["frame-ancestors"] == "'self'"


def test_the_dialog_page_speaks_the_panes_language(signin, world):
    """The pane opens the dialog with its language (Outlook's): the page is written in it,
    whatever the browser asks for; a language the product does not speak changes nothing."""
    from server.i18n import translate
    c = signin(world.ann, PASSWORD)
    html = c.get("/addin/signin?lang=cs-CZ", headers={"Accept-Language": "sv"}).get_data(as_text=True)
    assert '<html lang="cs">' in html and translate("cs", "Signing you in to Regarding") in html
    html = c.get("/addin/signin?lang=de-DE", headers={"Accept-Language": "sv"}).get_data(as_text=True)
    assert '<html lang="sv">' in html and translate("sv", "Signing you in to Regarding") in html


def test_the_dialog_issues_a_pane_token_to_its_own_script(app, signin, world):
    c = signin(world.ann, PASSWORD)
    app.config["WTF_CSRF_ENABLED"] = True
    page = c.get("/addin/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    # Without the CSRF token (another site posting), nothing is issued.
    refused = c.post("/addin/signin")
    assert refused.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0
    r = c.post("/addin/signin", headers={"X-CSRFToken": csrf, "Referer": "http://localhost/addin/signin"})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    data = r.get_json()
    assert data["token"].startswith("rgp_") and data["expires_on"].endswith("Z")
    row = db.session.scalar(select(ApiToken))
    assert row.kind == "pane" and row.user_id == world.ann.id
    assert timedelta(hours=7, minutes=59) < row.expires_on - utcnow() <= timedelta(hours=8)
    # The token works on the add-in API, and only there.
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {data['token']}"}
    ctx = api.post("/api/addin/context", headers=bearer, json={"item": aw.message()})
    assert ctx.status_code == 200 and ctx.get_json()["user"]["id"] == world.ann.id
    assert api.get("/api/v1/me", headers=bearer).status_code == 401  # not a REST API token


def test_the_dialog_refuses_users_without_the_addin_privilege(signin, client, world):
    r = client.post("/addin/signin")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated"
    c = signin(world.noaddin, PASSWORD)
    r = c.post("/addin/signin")
    assert r.status_code == 403
    assert r.get_json()["error"] == {"code": "forbidden",
                                     "message": "This needs the 'Use the Outlook add-in' privilege."}
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0


# -- the preview ------------------------------------------------------------------------------------

def _samples(response) -> list[dict]:
    html = response.get_data(as_text=True)
    raw = re.search(r'<script type="application/json" id="pv-samples">(.*?)</script>', html, re.S).group(1)
    return json.loads(raw)


def _track(user, mid, subject, sender=("Carol Customer", "carol@fabrikam.test"), regarding=None, cc=()):
    email, _ = tracking.track_email(authz.principal(user), tracking.EmailContent(
        message_id=mid, subject=subject, from_=sender, to=[("Ann Archer", "ann@contoso.test")], cc=list(cc),
        html_body="<p>Body</p>"), regarding=regarding)
    db.session.commit()
    return email


def test_the_preview_needs_a_signed_in_user(client, world):
    r = client.get("/addin/preview")
    assert r.status_code == 302 and r.headers["Location"] == "/signin?next=/addin/preview"


def test_the_preview_shows_the_users_own_sample_items(signin, world):
    _track(world.ann, "<t1@fabrikam.test>", "Tracked one", regarding=("account", world.fabrikam.id))
    _track(world.bob, "<secret@litware.test>", "Bob's secret", sender=("Dave", "dave@litware.test"))
    r = signin(world.ann, PASSWORD).get("/addin/preview")
    assert r.status_code == 200
    assert csp(r)["frame-src"] == "'self'" and csp(r)["frame-ancestors"] == "'self'"
    items = _samples(r)
    by_key = {s["key"]: s for s in items}
    assert by_key["tracked-1"]["internetMessageId"] == "<t1@fabrikam.test>"
    assert by_key["tracked-1"]["from"] == {"displayName": "Carol Customer", "emailAddress": "carol@fabrikam.test"}
    assert all("secret" not in s["subject"] for s in items)  # another unit's mail is not shown
    # A new mail from one of her contacts (Carol; Dave is another unit's and not hers to read).
    assert by_key["known"]["from"]["emailAddress"] == "carol@fabrikam.test"
    assert by_key["known"]["to"] == [{"displayName": "Ann Archer", "emailAddress": "ann@contoso.test"}]
    assert by_key["stranger"]["from"]["emailAddress"] == "jonas.whitaker@harbourlight-ventures.example"
    assert by_key["draft"]["mode"] == "compose" and by_key["draft"]["internetMessageId"] is None
    assert {s["folder"] for s in items} >= {"Inbox", "Drafts"}
    # Stable ids: the same user sees the same untracked samples next time.
    again = _samples(signin(world.ann, PASSWORD).get("/addin/preview"))
    assert [s["internetMessageId"] for s in again] == [s["internetMessageId"] for s in items]


def test_the_preview_includes_a_meeting_the_user_may_read(signin, world):
    from server.crm.services.tracking import AppointmentContent, track_appointment
    track_appointment(authz.principal(world.ann), AppointmentContent(
        uid="meeting-uid-1", subject="Quarterly review", organizer=("Carol Customer", "carol@fabrikam.test"),
        required=[("Ann Archer", "ann@contoso.test")], start=utcnow(), end=utcnow() + timedelta(hours=1),
        location="Room 1"))
    db.session.commit()
    items = _samples(signin(world.ann, PASSWORD).get("/addin/preview"))
    [m] = [s for s in items if s["type"] == "appointment"]
    assert m["itemId"] == "meeting-uid-1" and m["organizer"]["emailAddress"] == "carol@fabrikam.test"
    assert m["requiredAttendees"] == [{"displayName": "Ann Archer", "emailAddress": "ann@contoso.test"}]


def test_hostile_sample_text_cannot_break_out_of_the_data_block(signin, world):
    _track(world.ann, "<evil@fabrikam.test>", "</script><script>alert(1)</script>")
    html = signin(world.ann, PASSWORD).get("/addin/preview").get_data(as_text=True)
    block = re.search(r'id="pv-samples">(.*?)</script>', html, re.S).group(1)
    assert "<script>" not in block and "\\u003c/script\\u003e" in block
    assert any(s["subject"] == "</script><script>alert(1)</script>" for s in json.loads(block))


def test_sample_selection_needs_a_constant_number_of_queries(app, world):
    def count() -> int:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            samples(authz.principal(world.ann))
        return counter.count

    _track(world.ann, "<q1@fabrikam.test>", "One")
    _track(world.ann, "<q2@fabrikam.test>", "Two")
    few = count()
    _track(world.ann, "<q3@fabrikam.test>", "Three", cc=[(f"Person {n}", f"p{n}@x.test") for n in range(15)])
    assert count() == few


# -- the administrators' page -------------------------------------------------------------------------

def test_the_admin_page_is_for_administrators(client, signin, world):
    assert client.get("/admin/addin").status_code == 302
    assert signin(world.ann, PASSWORD).get("/admin/addin").status_code == 403
    assert signin(world.ann, PASSWORD).get("/admin/addin/xml").status_code == 403
    admin = signin(world.admin, PASSWORD)
    assert "/admin/addin" in admin.get("/admin/").get_data(as_text=True)


def test_the_admin_page_offers_the_manifests_for_this_deployment(app, signin, world):
    app.config["REGARDING_BASE_URL"] = "https://crm.contoso.test/regarding"
    admin = signin(world.admin, PASSWORD)
    page = admin.get("/admin/addin").get_data(as_text=True)
    for text in ("https://crm.contoso.test/regarding/addin/taskpane.html", "/admin/addin/xml", "/admin/addin/zip",
                 "Integrated apps", "New-App", "Use the Outlook add-in"):
        assert text in page, text
    xml = admin.get("/admin/addin/xml")
    assert xml.mimetype == "application/xml"
    assert xml.headers["Content-Disposition"] == 'attachment; filename="regarding-crm.contoso.test.xml"'
    assert "https://crm.contoso.test/regarding/addin/taskpane.html" in xml.get_data(as_text=True)
    manifest = json.loads(admin.get("/admin/addin/json").get_data(as_text=True))
    assert manifest["id"]
    package = zipfile.ZipFile(io.BytesIO(admin.get("/admin/addin/zip").data))
    languages = [f["file"] for f in json.loads(package.read("manifest.json"))[
        "localizationInfo"]["additionalLanguages"]]
    assert sorted(package.namelist()) == sorted(
        ["color-192.png", "manifest.json", "outline-32.png", *languages])


def test_without_an_https_address_the_admin_page_says_how_to_fix_it(app, signin, world):
    app.config["REGARDING_BASE_URL"] = None
    admin = signin(world.admin, PASSWORD)
    page = admin.get("/admin/addin").get_data(as_text=True)
    assert "cannot be made for this address" in page and "REGARDING_BASE_URL" in page
    assert 'href="/admin/addin/xml"' not in page
    assert admin.get("/admin/addin/xml").status_code == 409
