"""Accessibility of the task pane and the preview, in headless Chromium against the real
server: axe-core (tests/servers/axe.py) finds no serious or critical violation in any state
of the pane (signed out, not tracked, tracked with related data, the regarding search with
results, quick create with field errors, untrack, a meeting, a draft, someone else's
mailbox, no item, an error, outside Outlook) nor on the preview; the pane is usable by keyboard alone (the tab order
follows the page, focus lands where the next step is after each action, Escape closes the
panels); and screenshots of the pane at 320, 375 and 1280 px are written for people to look
at (test-results/screenshots/pane/, not committed).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.addin.test_pane_browser import (  # noqa: F401 - fixtures
    ANN, live, meeting, message, pane, pane_token, search_box, signed_in_pane, who)
from tests.addin.test_pane_sequences import track_m1
from tests.addin.test_preview_page import open_preview
from tests.servers.axe import violations

SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots" / "pane"


def _tracked(w, regarding=None):
    track_m1(w.ann, regarding or ("opportunity", w.opportunity.id))


def _clean(page, what):
    found = violations(page)
    assert found == [], (what, found)


def test_every_pane_state_passes_axe(pane, live):
    w = live.world
    # Signed out.
    p = pane().open(message(), wait="[data-key=signin]")
    _clean(p.page, "sign-in")
    # Not tracked, with people in and out of the CRM.
    p = signed_in_pane(pane, live, message(cc=[who("lee@startup.test", "Lee Lead"), who("new@unknown.test", "New Person")]))
    page = p.page
    _clean(page, "not tracked")
    # The regarding search with results, and with none.
    p.click("track-regarding")
    search_box(page).fill("fab")
    expect(page.locator(".results-caption")).to_have_text(re.compile(r"^\d+ results$"))
    _clean(page, "regarding search")
    search_box(page).fill("zzzz nothing")
    expect(page.locator(".results-caption")).to_contain_text("No")
    _clean(page, "regarding search, nothing found")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    # Quick create, then with the server's field messages.
    p.click("create-opportunity")
    _clean(page, "quick create")
    page.get_by_label("Topic", exact=True).fill("")
    page.get_by_label("Est. revenue", exact=True).fill("lots")
    page.locator("form").evaluate("f => f.noValidate = true")
    p.click("create-save")
    expect(page.locator(".field-error").first).to_be_visible()
    _clean(page, "quick create with errors")
    page.keyboard.press("Escape")
    # Tracked, with related data; the untrack question.
    p.click("track")
    expect(p.status()).to_have_text("Tracked")
    _clean(page, "tracked")
    p.click("untrack")
    _clean(page, "untrack")
    page.keyboard.press("Escape")
    # A meeting, a draft, nothing selected.
    p.page.evaluate("spec => window.__office.selectItem(spec)", meeting())
    expect(page.locator(".item-subject")).to_have_text("Quarterly review")
    _clean(page, "meeting")
    p.page.evaluate("spec => window.__office.selectItem(spec)",
                    message(mode="compose", internetMessageId=None, itemId=None, **{"from": ANN, "to": [ANN]}))
    expect(page.locator(".item-line .badge")).to_have_text("Draft")
    _clean(page, "draft")
    # Someone else's mailbox, without their leave to track for them.
    p.page.evaluate("spec => window.__office.selectItem(spec)", message(shared={"owner": "tess@contoso.test"}))
    expect(page.locator(".shared-mailbox")).to_contain_text("has not allowed you")
    _clean(page, "shared mailbox")
    p.page.evaluate("window.__office.selectItem(null)")
    expect(page.get_by_role("heading", name="Select an email or meeting")).to_be_visible()
    _clean(page, "no item")


def test_error_and_outside_outlook_states_pass_axe(pane, live, browser):
    p = pane()
    p.page.route("**/api/addin/context", lambda route: route.fulfill(
        status=500, content_type="application/json", body='{"error": {"code": "error", "message": "Broken."}}'))
    p.open(message(), token=pane_token(live.world.ann), wait="[data-key=retry]")
    _clean(p.page, "error")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live.url + "/addin/taskpane.html")
        expect(page.get_by_role("heading", name="Open Regarding from Outlook")).to_be_visible()
        _clean(page, "outside Outlook")
    finally:
        context.close()


def test_the_preview_passes_axe(browser, live):
    context, page, _, errors = open_preview(browser, live, 1280)
    try:
        _clean(page, "preview")
        _clean(page.frame(name="pv-pane"), "preview's pane")
        assert errors == []
    finally:
        context.close()


def _tab_to(page, key, limit=40):
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.dataset.key") == key:
            return
    raise AssertionError(f"Tab never reached {key}")


def test_the_pane_by_keyboard_alone(pane, live):
    w = live.world
    _tracked(w, ("account", w.fabrikam.id))
    p = signed_in_pane(pane, live)
    page = p.page
    # Tab order follows the page: skip link, sign out, then the tracking card: the regarding
    # record's link and the actions.
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    order = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.dataset.key || document.activeElement.textContent.trim()"))
    assert order == ["signout", "Fabrikam", "open-in-crm", "change-regarding", "untrack"], order
    # Change regarding: focus in the search box; Escape closes; focus back on the button.
    page.keyboard.press("Shift+Tab")
    expect(page.locator("[data-key=change-regarding]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(search_box(page)).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("[data-key=change-regarding]")).to_be_focused()
    # Choose by keyboard: focus moves to the new status.
    page.keyboard.press("Enter")
    page.keyboard.type("Broken")
    expect(page.locator(".results-caption")).to_have_text(re.compile(r"^1 results?$"))
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Broken widget")
    expect(p.status()).to_be_focused()
    # Untrack: the question's first control has focus; Escape cancels back to Untrack.
    _tab_to(page, "untrack")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Also delete the email from the CRM", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("[data-key=untrack]")).to_be_focused()
    # Quick create by keyboard: the first field has focus; Escape closes it back to its button.
    _tab_to(page, "create-task")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Subject", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("[data-key=create-task]")).to_be_focused()
    # Untrack for real, by keyboard: focus lands on the new status.
    _tab_to(page, "untrack")
    page.keyboard.press("Enter")
    _tab_to(page, "untrack-confirm")
    page.keyboard.press("Enter")
    expect(p.status()).to_have_text("Not tracked")
    expect(p.status()).to_be_focused()


@pytest.mark.parametrize("width", [320, 375, 1280])
def test_screenshots_of_the_pane(pane, live, width):
    """Written for people to look at (test-results/screenshots/pane/); each fits its width."""
    w = live.world
    _tracked(w)
    SHOTS.mkdir(parents=True, exist_ok=True)
    p = pane(width=width)
    p.open(message(cc=[who("lee@startup.test", "Lee Lead"), who("new@unknown.test", "New Person")]),
           token=pane_token(w.ann), user=ANN)
    page = p.page
    expect(p.status()).to_have_text("Tracked")
    page.screenshot(path=str(SHOTS / f"pane-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    p.click("change-regarding")
    search_box(page).fill("fab")
    expect(page.locator(".results-caption")).to_have_text(re.compile(r"^\d+ results$"))
    page.screenshot(path=str(SHOTS / f"pane-{width}-search.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
