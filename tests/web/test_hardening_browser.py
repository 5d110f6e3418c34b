"""Hardening seen from a browser: headless Chromium against the real app served on a loopback
port (``live`` in tests/web/conftest.py, CSRF on). An uploaded JavaScript attachment cannot
run as a same-origin script; an email's remote images load nothing until the reader asks,
and then they load."""
from __future__ import annotations

import pytest
from werkzeug.wrappers import Response

from server.crm import html
from server.db import db
from server.security import passwords
from tests.servers.wsgi import serving

PASSWORD = "Correct-horse-9"
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000"
                      "010001000002024401003b")


@pytest.fixture
def user(make_user):
    u = make_user("ann@contoso.test")
    passwords.set_password(u, PASSWORD)
    db.session.commit()
    return u


def sign_in(page, live, user):
    page.goto(f"{live}/signin")
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/")


def test_an_uploaded_script_attachment_cannot_run_as_a_same_origin_script(
        live, user, make_email, page):
    email = make_email(user, attachments=[
        {"filename": "evil.js", "content_type": "text/javascript", "size": 40,
         "content": b"window.__attachment = 'ran'; document.title = 'owned';"},
        {"filename": "evil.mjs", "content_type": "application/javascript; charset=utf-8",
         "size": 40, "content": b"window.__attachment2 = 'ran';"}])
    first, second = (a.id for a in email.attachments)
    sign_in(page, live, user)
    # A page of our origin (as an injected page would be) that loads a known-good script,
    # so the probe shows scripts do run there, and then the attachments as scripts.
    probe = (f'<!doctype html><script src="/__control.js"></script>'
             f'<script src="/activities/{email.id}/attachments/{first}"></script>'
             f'<script src="/activities/{email.id}/attachments/{second}"></script>')
    page.route(f"{live}/__probe", lambda route: route.fulfill(
        status=200, content_type="text/html", body=probe))
    page.route(f"{live}/__control.js", lambda route: route.fulfill(
        status=200, content_type="text/javascript", body="window.__control = 'ran';"))
    statuses = {}
    page.on("response", lambda r: statuses.__setitem__(r.url, r.status))
    page.goto(f"{live}/__probe")
    page.wait_for_load_state("load")
    assert page.evaluate("window.__control") == "ran"
    assert statuses[f"{live}/activities/{email.id}/attachments/{first}"] == 200  # fetched...
    assert page.evaluate("window.__attachment") is None  # ...but not run
    assert page.evaluate("window.__attachment2") is None
    assert page.title() != "owned"


def test_remote_images_load_nothing_until_the_reader_asks(live, user, make_email, page):
    hits = []

    def tracker(environ, start_response):
        hits.append(environ["PATH_INFO"])
        return Response(PIXEL, mimetype="image/gif")(environ, start_response)

    with serving(tracker) as remote:
        stored = html.sanitize_html(f'<p>Hello</p><img src="{remote}/pixel.gif?id=42" alt="">'
                                    f'<p style="color:red">bye</p>')
        email = make_email(user, html=stored)
        sign_in(page, live, user)
        page.goto(f"{live}/activities/{email.id}")
        page.wait_for_load_state("load")
        frame = page.frame_locator("iframe.mail-frame")
        assert frame.locator("p").first.inner_text() == "Hello"
        page.wait_for_timeout(300)
        assert hits == []  # not even the parked address was requested
        page.get_by_role("link", name="Show remote images").click()
        page.wait_for_load_state("load")
        frame = page.frame_locator("iframe.mail-frame")
        frame.locator("img").first.wait_for()
        page.wait_for_function("() => true")
        for _ in range(50):
            if hits:
                break
            page.wait_for_timeout(100)
        assert hits == ["/pixel.gif"]
        assert page.get_by_role("link", name="Hide them").is_visible()
