"""Sequences of pane actions that once went wrong (issue 16, bugs 1-3), in headless Chromium
against the real server, as tests/addin/test_pane_browser.py drives the pane:

1. untrack (keeping the CRM copy), then quick create an opportunity (or case) "tracking this
   email regarding" it: the email is tracked regarding the new record, not the old one;
2. after an untrack that keeps the CRM copy the pane does not claim the email is not in
   the CRM; related data under an opportunity or a case says "other" open ones;
3. signing the pane in again from the same device replaces its token instead of adding
   one, and expired pane tokens leave the profile page.
"""
from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from server.crm.models import Opportunity
from server.crm.services import tracking
from server.db import db, utcnow
from server.security import authz
from server.security.models import ApiToken
from tests.addin.test_pane_browser import (  # noqa: F401 - fixtures
    PASSWORD, emails, fresh, live, message, option, pane, search_box, signed_in_pane)


def track_m1(user, regarding):
    """The pane's usual item, <m1@fabrikam.test> from Carol, tracked by ``user``."""
    tracking.track_email(authz.principal(user), tracking.EmailContent(
        message_id="<m1@fabrikam.test>", subject="Widgets order", from_=("Carol Customer", "carol@fabrikam.test"),
        to=[("Ann Archer", "ann@contoso.test")], html_body="<p>hi</p>"), regarding=regarding)
    db.session.commit()


def _track_to_account(w):
    track_m1(w.ann, ("account", w.fabrikam.id))


def _untrack_keeping_the_copy(p):
    p.click("untrack")
    expect(p.page.get_by_label("Also delete the email from the CRM", exact=True)).not_to_be_checked()
    p.click("untrack-confirm")
    expect(p.status()).to_have_text("Not tracked")


def test_quick_create_after_untrack_tracks_regarding_the_new_case(pane, live):
    w = live.world
    _track_to_account(w)
    p = signed_in_pane(pane, live)
    page = p.page
    expect(page.locator(".track-card .regarding-name")).to_have_text("Fabrikam")
    _untrack_keeping_the_copy(p)
    p.click("create-opportunity")
    page.get_by_label("Topic", exact=True).fill("Widgets went missing")
    expect(page.get_by_label("Track this email regarding the new opportunity", exact=True)).to_be_checked()
    p.click("create-save")
    expect(p.status()).to_have_text("Tracked")
    expect(page.locator(".track-card .regarding-name")).to_have_text("Widgets went missing")
    expect(p.toast()).to_contain_text("Widgets went missing")
    fresh()
    opportunity = db.session.scalar(select(Opportunity).where(Opportunity.name == "Widgets went missing"))
    [email] = emails()
    assert email.regarding_ref == ("opportunity", opportunity.id)


def test_someone_elses_copy_cannot_be_relinked_and_the_pane_says_so(pane, live):
    w = live.world
    track_m1(w.teammate, ("account", w.fabrikam.id))
    p = signed_in_pane(pane, live)
    _untrack_keeping_the_copy(p)
    p.click("create-opportunity")
    p.page.get_by_label("Topic", exact=True).fill("Not mine to move")
    p.click("create-save")
    # The case exists; the email stays regarding Fabrikam, and the pane says why.
    expect(p.page.locator("[data-key=error-banner]")).to_contain_text("may not change what it is regarding")
    expect(p.status()).to_have_text("Not tracked")
    fresh()
    assert db.session.scalar(select(Opportunity).where(Opportunity.name == "Not mine to move")) is not None
    assert emails()[0].regarding_ref == ("account", w.fabrikam.id)


def test_after_untrack_the_pane_says_the_copy_stays_in_the_crm(pane, live):
    w = live.world
    _track_to_account(w)
    p = signed_in_pane(pane, live)
    page = p.page
    _untrack_keeping_the_copy(p)
    card = page.locator(".track-card")
    expect(card).not_to_contain_text("not in the CRM")
    expect(card).to_contain_text("Its copy stays in the CRM")
    copy = card.get_by_role("link", name="Open the CRM copy")
    assert copy.get_attribute("href").endswith(f"/activities/{emails()[0].id}")
    # The recent activities (of Carol) still list it: that now agrees with the card.
    expect(page.locator(".related-group").nth(2)).to_contain_text("Widgets order")
    # An email nobody tracked is still "not in the CRM".
    p.page.evaluate("spec => window.__office.selectItem(spec)", message(internetMessageId="<new@fabrikam.test>"))
    expect(page.locator(".track-card")).to_contain_text("This email is not in the CRM.")


def test_related_data_under_an_opportunity_or_case_lists_the_other_ones(pane, live):
    w = live.world
    track_m1(w.ann, ("opportunity", w.opportunity.id))
    p = signed_in_pane(pane, live)
    page = p.page
    expect(page.locator("#related-title")).to_have_text("Related to Fabrikam widgets")
    groups = page.locator(".related-group h3")
    expect(groups.nth(0)).to_contain_text("Other open opportunities of Fabrikam")
    expect(page.locator(".related-group").nth(0)).to_contain_text("No other open opportunities.")
    expect(groups.nth(1)).to_contain_text("Open cases of Fabrikam")
    expect(page.locator(".related-group").nth(1)).to_contain_text("Broken widget")
    p.click("change-regarding")
    search_box(page).fill("Broken")
    option(page, "Broken widget").click()
    expect(page.locator("#related-title")).to_have_text("Related to Broken widget")
    expect(groups.nth(0)).to_contain_text("Open opportunities of Fabrikam")
    expect(page.locator(".related-group").nth(0)).to_contain_text("Fabrikam widgets")
    expect(groups.nth(1)).to_contain_text("Other open cases of Fabrikam")
    expect(page.locator(".related-group").nth(1)).to_contain_text("No other open cases.")


def _pane_tokens(user):
    fresh()
    return db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.kind == "pane")
                              .order_by(ApiToken.id)).all()


def _sign_in_through_the_dialog(p, live, user):
    page = p.page
    page.goto(live.url + "/signin")
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    p.open(message(), wait="[data-key=signin]")
    with page.expect_popup() as popup:
        p.click("signin")
    expect(p.status()).to_have_text("Not tracked")
    popup.value.close()


def test_signing_in_again_on_one_device_replaces_its_pane_token(pane, live):
    w = live.world
    ann = w.ann
    p = pane()
    _sign_in_through_the_dialog(p, live, ann)
    [first] = _pane_tokens(ann)
    first_hash = first.token_hash
    # Sign out of the pane and in again, twice: still one token, a new one each time.
    for _ in range(2):
        p.click("signout")
        with p.page.expect_popup() as popup:
            p.click("signin")
        expect(p.status()).to_have_text("Not tracked")
        popup.value.close()
    [latest] = _pane_tokens(ann)
    assert latest.token_hash != first_hash and latest.revoked_on is None and latest.device
    # Another device (a browser with its own cookies) gets its own token.
    other = pane()
    _sign_in_through_the_dialog(other, live, ann)
    tokens_now = _pane_tokens(ann)
    assert len(tokens_now) == 2 and len({t.device for t in tokens_now}) == 2
    # An expired pane token leaves the profile page; live ones are listed.
    tokens_now[0].expires_on = utcnow() - timedelta(minutes=1)
    db.session.commit()
    p.page.goto(live.url + "/profile")
    expect(p.page.get_by_text("Outlook add-in")).to_have_count(1)
