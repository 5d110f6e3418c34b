"""The add-in preview (/addin/preview) in headless Chromium against the real server: it
reads well from a phone's width up (the brand whole, the intro saying where the pane is,
the open email's body shown, the items in the page's own scroll, one "Regarding" per
header); its sample inbox is fixed (what the user does in the CRM changes no sample, and a
reload keeps it); "Reset the preview" undoes what trying the samples did, so the stranger's
email can be tried again. Screenshots at 320, 375 and 1280 px go to
test-results/screenshots/pane/ (not committed).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from server.crm.models import Contact
from server.crm.registry import RECORD_TYPES
from server.crm.services import records, tracking
from server.db import db
from server.security import authz
from tests.addin.test_pane_browser import PASSWORD, emails, fresh, live  # noqa: F401 - fixture

SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots" / "pane"
STRANGER = "jonas.whitaker@harbourlight-ventures.example"


def open_preview(browser, live, width):
    """The preview at ``width``, signed in as Ann, its pane signed in: (context, page, pane, errors)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live.url + "/addin/preview")
    page.get_by_label("Email", exact=True).fill(live.world.ann.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/addin/preview")
    pane = page.frame_locator("#pv-pane")
    pane.locator("[data-key=signin]").click()
    expect(pane.locator("#track-status")).to_be_visible(timeout=15000)
    return context, page, pane, errors


def _track_one(w):
    tracking.track_email(authz.principal(w.ann), tracking.EmailContent(
        message_id="<demo1@fabrikam.test>", subject="Tracked demo mail", from_=("Carol Customer", "carol@fabrikam.test"),
        to=[("Ann Archer", "ann@contoso.test")], html_body="<p>Demo body</p>"), regarding=("account", w.fabrikam.id))
    db.session.commit()


@pytest.mark.parametrize("width", [320, 375])
def test_the_preview_at_a_phones_width(browser, live, width):
    _track_one(live.world)
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, pane, errors = open_preview(browser, live, width)
    try:
        # The brand is one line: its words wrap whole, never inside a word.
        brand = page.locator(".pv-brand").bounding_box()
        assert brand["height"] <= 32, brand
        # The intro says where the pane is: below the item.
        expect(page.locator(".pv-narrow")).to_be_visible()
        expect(page.locator(".pv-wide")).to_be_hidden()
        expect(page.locator(".pv-intro")).to_contain_text("below the item")
        # The open email is shown, body included, and the pane comes after it.
        expect(page.locator("#pv-reader .pv-body")).to_contain_text("Demo body")
        reader, frame = page.locator("#pv-reader").bounding_box(), page.locator("#pv-pane").bounding_box()
        assert frame["y"] >= reader["y"] + reader["height"]
        # The items are in the page's own scroll, not a small box of their own.
        assert page.evaluate("(() => { const f = document.querySelector('.pv-folders'); return f.scrollHeight <= f.clientHeight + 1; })()")
        # One "Regarding" for the site and one in the pane, not three headers stacked.
        assert page.locator(".pv-top").get_by_text("Regarding", exact=True).count() == 1
        assert page.locator(".pv-pane").get_by_text("Regarding", exact=True).count() == 0
        assert pane.locator("header").get_by_text("Regarding", exact=True).count() == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(SHOTS / f"preview-{width}.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


def test_the_sample_inbox_is_fixed_and_the_reset_lets_it_be_tried_again(browser, live):
    w = live.world
    _track_one(w)
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, pane, errors = open_preview(browser, live, 1280)
    try:
        first = page.locator(".pv-item").all_inner_texts()
        assert any("Jonas Whitaker" in x for x in first)
        page.screenshot(path=str(SHOTS / "preview-1280.png"))
        # Try the stranger: track his email and add him as a contact.
        page.locator(".pv-item", has_text="Jonas Whitaker").click()
        person = pane.locator(f'li.person[data-address="{STRANGER}"]')
        expect(person.locator(".badge")).to_have_text("Not in CRM")
        person.get_by_role("button", name="Add as contact").click()
        pane.locator("[data-key=create-save]").click()
        expect(pane.locator("#track-status")).to_have_text("Tracked")
        expect(person.locator(".badge")).to_have_text("Contact")
        # Elsewhere in the CRM: a newer contact and another tracked email.
        records.create(authz.principal(w.ann), RECORD_TYPES["contact"], {
            "first_name": "Newer", "last_name": "Person", "email1": "newer@fabrikam.test"})
        tracking.track_email(authz.principal(w.ann), tracking.EmailContent(
            message_id="<later@fabrikam.test>", subject="A later mail", from_=("Newer Person", "newer@fabrikam.test"),
            to=[("Ann Archer", "ann@contoso.test")], html_body="<p>x</p>"))
        db.session.commit()
        # Reloading changes no sample: same items, no duplicates of what was tracked.
        page.reload()
        expect(pane.locator("#track-status")).to_be_visible(timeout=15000)
        assert page.locator(".pv-item").all_inner_texts() == first
        # Asked afresh, the server does not turn what was tried into more samples.
        other = context.new_page()
        other.goto(live.url + "/addin/preview")
        other.evaluate("localStorage.clear()")
        other.reload()
        texts = other.locator(".pv-item").all_inner_texts()
        assert sum("Jonas Whitaker" in x for x in texts) == 1
        other.close()
        # Reset: the stranger's tracked email and the contact made of him go; he can be tried again.
        with page.expect_navigation():
            page.get_by_role("button", name="Reset the preview").click()
        expect(pane.locator("#track-status")).to_be_visible(timeout=15000)
        page.locator(".pv-item", has_text="Jonas Whitaker").click()
        expect(pane.locator(f'li.person[data-address="{STRANGER}"] .badge')).to_have_text("Not in CRM")
        expect(pane.locator("#track-status")).to_have_text("Not tracked")
        fresh()
        assert db.session.scalar(select(Contact).where(Contact.email1 == STRANGER)) is None
        assert [e.subject for e in emails()] == ["Tracked demo mail", "A later mail"]
        assert errors == []
    finally:
        context.close()
