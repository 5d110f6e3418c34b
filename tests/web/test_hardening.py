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
from server.crm.tracking import AttachmentContent, attachment_values
from server.db import db

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
