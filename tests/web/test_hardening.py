"""Hardening of what the pages and the REST API serve: the email body document (inline image
types, remote images), attachment downloads (types, disposition, disk storage), caching of
authenticated pages, single-line fields, the CSRF token at sign-in, share lists, and the
integer helpers behind "no 500". Browser behaviour is in test_hardening_browser.py."""
from __future__ import annotations

import html as htmlmod
import os
import re
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from server.crm import html
from server.crm.services.tracking import AttachmentContent, attachment_values
from server.db import db

pytestmark = pytest.mark.both_databases

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
HOSTILE_TYPES = ['image/png"><script>alert(1)</script>', "image/png;base64,AAAA\"onerror=x",
                 "text/html", "image/svg+xml", "image/png\r\nX: y", "IMAGE/PNG ", "image/",
                 "image/png<", "image/png;charset=\"><b>", "image/pngx"]


def _srcdoc(page: str) -> str:
    return htmlmod.unescape(re.search(r'srcdoc="([^"]*)"', page).group(1))


# -- the email body document -------------------------------------------------------------------

@pytest.mark.parametrize("content_type", HOSTILE_TYPES)
def test_inline_image_type_is_validated_before_it_is_written_into_a_data_url(
        content_type, make_user, make_email, signin):
    user = make_user()
    email = make_email(user, html='<p>logo <img src="cid:logo@x"></p>', attachments=[
        {"filename": "logo.png", "content_type": content_type, "size": len(PNG), "content": PNG,
         "content_id": "<logo@x>"}])
    doc = _srcdoc(signin(user).get(f"/activities/{email.id}").get_data(as_text=True))
    assert "<script" not in doc and "onerror" not in doc and "<b>" not in doc
    for src in re.findall(r'src="([^"]*)"', doc):
        assert re.fullmatch(r"data:image/(png|gif|jpe?g|webp|bmp);base64,[A-Za-z0-9+/=]+", src), src
    if content_type.split(";")[0].strip().lower() == "image/png":
        assert 'src="data:image/png;base64,' in doc  # a valid type (with parameters) still shows


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_inline_image_url_writes_only_an_allow_listed_type(content_type):
    url = html.inline_image_url(content_type, b"\x89PNG")
    assert url is None or re.fullmatch(
        r"data:image/(png|gif|jpe?g|webp|bmp);base64,iVBORw==", url), url


def test_remote_images_are_offered_off_by_default_and_shown_when_asked(make_user, make_email,
                                                                        signin):
    user = make_user()
    stored = html.sanitize_html('<p>Hi</p><img src="https://tracker.example/p.gif?u=1&amp;m=2" alt="x">')
    assert html.REMOTE_SRC_ATTRIBUTE in stored  # parked when stored, as the sync engine does
    email = make_email(user, html=stored)
    c = signin(user)
    page = c.get(f"/activities/{email.id}").get_data(as_text=True)
    doc = _srcdoc(page)
    assert "tracker.example" not in doc  # nothing to load, not even a parked address
    assert "Show remote images" in page
    shown = c.get(f"/activities/{email.id}?images=remote")
    doc = _srcdoc(shown.get_data(as_text=True))
    assert 'src="https://tracker.example/p.gif?u=1&amp;m=2"' in doc
    assert "https:" in shown.headers["Content-Security-Policy"]
    assert "Hide them" in shown.get_data(as_text=True)
    # without remote images there is no offer, and no remote source ever reaches the frame
    plain = make_email(user, html='<p>no images <img src="javascript:alert(1)"></p>')
    page = c.get(f"/activities/{plain.id}?images=remote").get_data(as_text=True)
    assert "javascript:" not in _srcdoc(page)
    assert "Show remote images" not in c.get(f"/activities/{plain.id}").get_data(as_text=True)


# -- attachment downloads ---------------------------------------------------------------------

@pytest.mark.parametrize("content_type,served,disposition", [
    ("text/javascript", "application/octet-stream", "attachment"),
    ("application/javascript", "application/octet-stream", "attachment"),
    ("text/css", "application/octet-stream", "attachment"),
    ("text/html", "application/octet-stream", "attachment"),
    ("image/svg+xml", "application/octet-stream", "attachment"),
    ("application/xhtml+xml", "application/octet-stream", "attachment"),
    ("text/plain", "text/plain", "attachment"),
    ("application/pdf", "application/pdf", "attachment"),
    ("image/png", "image/png", "inline"),
    ("IMAGE/JPEG; name=a.jpg", "image/jpeg", "inline"),
])
def test_attachments_are_served_inert_on_pages_and_api(content_type, served, disposition,
                                                        make_user, make_email, signin,
                                                        api_client):
    user = make_user()
    email = make_email(user, attachments=[{"filename": "a", "content_type": content_type,
                                           "size": 3, "content": b"x=1"}])
    att = email.attachments[0]
    page = signin(user).get(f"/activities/{email.id}/attachments/{att.id}")
    api = api_client(user).get(f"/api/v1/activities/{email.id}/attachments/{att.id}")
    for r in (page, api):
        assert r.status_code == 200 and r.data == b"x=1"
        assert r.mimetype == served
        assert r.headers["Content-Disposition"].startswith(disposition + ";")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]
        assert "no-store" in r.headers["Cache-Control"]


def test_rest_download_reads_disk_storage_where_tracking_wrote_it(app, make_user, make_email,
                                                                   api_client, signin):
    app.config["REGARDING_ATTACHMENT_STORAGE"] = "disk"
    user = make_user()
    [row] = attachment_values([AttachmentContent("q.pdf", "application/pdf", b"%PDF-disk", 9)],
                              limit=10_000)
    assert row["content"] is None and row["storage_path"]
    email = make_email(user, attachments=[row])
    att = email.attachments[0]
    r = api_client(user).get(f"/api/v1/activities/{email.id}/attachments/{att.id}")
    assert r.status_code == 200 and r.data == b"%PDF-disk"
    page = signin(user).get(f"/activities/{email.id}/attachments/{att.id}")
    assert page.status_code == 200 and page.data == b"%PDF-disk"
    db.session.rollback()


# -- the SQLite files --------------------------------------------------------------------------

def test_sqlite_database_and_wal_files_are_owner_only(tmp_path):
    from server import create_app
    from tests.conftest import make_config
    saved = os.umask(0o022)  # a usual umask: files would be world-readable
    try:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        app = create_app(make_config(url, tmp_path))
        with app.app_context():
            db.create_all()
            db.session.execute(text("CREATE TABLE probe (x INTEGER)"))
            db.session.execute(text("INSERT INTO probe VALUES (1)"))
            db.session.commit()
            files = [tmp_path / name for name in ("fresh.db", "fresh.db-wal", "fresh.db-shm")]
            assert all(f.exists() for f in files)
            for f in files:
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
            db.engine.dispose()
    finally:
        os.umask(saved)


# -- caching, single lines, CSRF at sign-in, share lists, default sort, framing ----------------

def test_authenticated_pages_and_api_answers_are_not_stored(make_user, make_record, signin,
                                                            api_client, client):
    user = make_user()
    account = make_record(user, "account")
    c = signin(user)
    for url in ("/", f"/r/account/{account.id}", "/r/account/", "/profile"):
        r = c.get(url)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store", url
    api = api_client(user)
    r = api.get(f"/api/v1/accounts/{account.id}")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/signin").headers.get("Cache-Control", "")
    assert "no-store" not in c.get("/static/app.css").headers.get("Cache-Control", "")


BREAKS = ["a\r\nBcc: x@evil.test", "a\nb", "a\rb", "a\u2028b", "a\x85b"]


@pytest.mark.parametrize("value", BREAKS)
def test_line_breaks_are_refused_in_single_line_fields_on_every_path(
        value, make_user, make_record, signin, api_client):
    from server.crm.activities import Activity
    from server.crm.models import Account
    from server.security import tokens
    user = make_user(roles=["Salesperson"])
    account = make_record(user, "account", name="Northwind")
    activities, accounts = db.session.query(Activity).count(), db.session.query(Account).count()
    # pages: a record's name, an activity's subject
    c = signin(user)
    r = c.post("/r/account/new", data={"name": value})
    assert r.status_code == 400 and "single line" in r.get_data(as_text=True)
    r = c.post(f"/r/account/{account.id}/activities/new/task", data={"subject": value})
    assert r.status_code == 400 and "single line" in r.get_data(as_text=True)
    # REST: a record's name, an activity's subject, a party's name
    api = api_client(user)
    r = api.post("/api/v1/accounts", json={"name": value})
    assert r.status_code == 400 and "single line" in r.get_json()["error"]["fields"]["name"]
    r = api.post("/api/v1/activities", json={"type": "task", "subject": value})
    assert r.status_code == 400 and "single line" in r.get_json()["error"]["fields"]["subject"]
    r = api.post("/api/v1/activities", json={
        "type": "email", "subject": "Hi", "parties": [
            {"role": "to", "address": "x@contoso.test", "name": value}]})
    assert r.status_code == 400 and "single line" in str(r.get_json()["error"]["fields"])
    # the add-in: a quick task's subject
    _, pane = tokens.issue(user, "pane", kind="pane")
    db.session.commit()
    r = c.post("/api/addin/activities/task", headers={"Authorization": f"Bearer {pane}"},
               json={"fields": {"subject": value}})
    assert r.status_code == 400 and "single line" in str(r.get_json()["error"]["fields"])
    db.session.rollback()
    assert db.session.query(Activity).count() == activities  # nothing was written
    assert db.session.query(Account).count() == accounts
    # a multi-line field keeps its lines
    r = api.post("/api/v1/accounts", json={"name": "Ok", "description": "one\r\ntwo"})
    assert r.status_code == 201 and r.get_json()["description"] == "one\r\ntwo"


def test_the_csrf_token_changes_at_sign_in(app, make_user):
    user = make_user()
    app.config.update(WTF_CSRF_ENABLED=True)
    c = app.test_client()
    token_re = r'name="csrf_token"[^>]*value="([^"]+)"'
    before = re.search(token_re, c.get("/signin").get_data(as_text=True)).group(1)
    r = c.post("/signin", data={"csrf_token": before, "email": user.email,
                                "password": "Correct-horse-9"})
    assert r.status_code == 302
    after = re.search(token_re, c.get("/profile").get_data(as_text=True)).group(1)
    assert after != before
    # the token from before sign-in no longer passes; the new one does
    old = c.post("/profile", data={"csrf_token": before, "action": "create_token", "name": "x"})
    assert old.status_code == 400
    new = c.post("/profile", data={"csrf_token": after, "action": "create_token", "name": "x"})
    assert new.status_code == 200 and "rgd_" in new.get_data(as_text=True)


def test_share_list_needs_the_share_privilege_in_the_api_as_on_the_page(
        make_user, make_record, signin, api_client):
    owner = make_user(roles=["Salesperson"])
    manager = make_user(roles=["Salesperson"])  # reads the unit's records, shares only their own
    account = make_record(owner, "account")
    api = api_client(owner)
    colleague = make_user(roles=["Salesperson"])
    r = api.post(f"/api/v1/accounts/{account.id}/share",
                 json={"principal": {"type": "user", "id": colleague.id}, "rights": ["read"]})
    assert r.status_code == 200
    assert api.get(f"/api/v1/accounts/{account.id}/shares").status_code == 200
    m = api_client(manager)
    assert m.get(f"/api/v1/accounts/{account.id}").status_code == 200
    page = signin(manager).get(f"/r/account/{account.id}/share")
    api_answer = m.get(f"/api/v1/accounts/{account.id}/shares")
    assert page.status_code == api_answer.status_code == 403


def test_contacts_list_without_sort_for_a_reader_of_no_first_name(make_user, api_client):
    from server.security.models import FieldPermission, FieldSecurityProfile, SecuredField
    admin = make_user(roles=["System Administrator"])
    reader = make_user(roles=["Salesperson"])
    db.session.add(SecuredField(table_name="contact", field="first_name"))
    profile = FieldSecurityProfile(name="Names")
    profile.permissions.append(FieldPermission(table_name="contact", field="first_name",
                                               can_read=True, can_update=True, can_create=True))
    db.session.add(profile)
    admin.field_profiles.append(profile)
    db.session.commit()
    for last in ("Young", "Adams", "Miller"):
        assert api_client(reader).post("/api/v1/contacts", json={"last_name": last}).status_code == 201
    r = api_client(reader).get("/api/v1/contacts")
    assert r.status_code == 200, r.get_json()
    assert [c["last_name"] for c in r.get_json()["items"]] == ["Young", "Adams", "Miller"]
    assert all("first_name" not in c for c in r.get_json()["items"])
    names = api_client(admin).get("/api/v1/contacts").get_json()["items"]  # by name, as before
    assert [c["last_name"] for c in names] == ["Adams", "Miller", "Young"]


def test_the_addin_sign_in_dialog_may_be_framed_only_by_outlooks_documented_origins(
        make_user, signin):
    from server.web.addin_pages import OUTLOOK_WEB_ORIGINS
    user = make_user()
    r = signin(user).get("/addin/signin")
    policy = dict(part.strip().split(" ", 1) for part in
                  r.headers["Content-Security-Policy"].split(";") if " " in part.strip())
    assert policy["frame-ancestors"].split() == ["'self'", *OUTLOOK_WEB_ORIGINS]
    assert "*" not in policy["frame-ancestors"]
    assert OUTLOOK_WEB_ORIGINS == ("https://outlook.office.com", "https://outlook.office365.com",
                                   "https://outlook.live.com")
