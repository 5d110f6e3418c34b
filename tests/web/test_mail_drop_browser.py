"""The record page's email drop zone in headless Chromium against the real server (CSRF
on): an .eml file dropped on the card is sent with the form's token, tracked regarding the
record, and the browser lands on the new email's page."""
from __future__ import annotations

import base64

import pytest
from sqlalchemy import select

from server.crm.activities import Email
from server.db import db

from .test_mail_files import INVITE


DROP = """([name, data]) => {
  const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "message/rfc822"}));
  const zone = document.querySelector("[data-mail-drop]");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def test_an_eml_dropped_on_a_record_page_is_tracked_regarding_it(live, page, make_user, make_record):
    user = make_user()
    account = make_record(user, "account")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live}/signin")
    page.fill("#email", user.email)
    page.fill("#password", "Correct-horse-9")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live}/r/account/{account.id}")
    assert page.locator("[data-mail-drop] input[type=file]").count() == 1
    with page.expect_navigation():
        page.evaluate(DROP, ["tasting.eml", base64.b64encode(INVITE).decode()])
    assert "/activities/" in page.url and "Meeting invitation" in page.content()
    assert not errors
    db.session.rollback()  # see what the server thread committed
    email = db.session.scalars(select(Email)).one()
    assert email.regarding_ref == ("account", account.id) and email.subject == "Tasting"
