"""Shared mailboxes and delegates: an assistant who opens someone's mailbox in Outlook (a
shared folder or mailbox: Office.js's getSharedPropertiesAsync names its owner) tracks an
email for that owner when the owner allowed it on their profile ("Who may track on my
behalf"): the activity is the owner's, tracked with the owner's privileges, and the
assistant is recorded as who created it. Without the owner's leave the pane says so and
offers no Track, and the API refuses. Chromium against the real server, with the tests'
stand-in for Office.js (its getSharedPropertiesAsync held to @types/office-js's shape).
"""
from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from server.security.models import TrackingDelegate
from server.db import db
from tests.addin.test_pane_browser import (  # noqa: F401 - fixtures
    PASSWORD, emails, fresh, live, message, pane, pane_token, signed_in_pane, who)

SHARED_FROM_ANN = {"owner": "ann@contoso.test", "permissions": 3}


def _item():
    return message(shared=SHARED_FROM_ANN, to=[who("ann@contoso.test", "Ann Archer")])


def _allow_on_profile(page, live, owner, delegate_email):
    page.goto(live.url + "/signin")
    page.get_by_label("Email", exact=True).fill(owner.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    page.goto(live.url + "/profile")
    page.get_by_label("Their email", exact=True).fill(delegate_email)
    page.get_by_role("button", name="Allow").click()
    section = page.get_by_role("region", name="Who may track on my behalf")
    return section


def test_an_assistant_tracks_for_the_mailbox_owner_who_allowed_it(pane, live):
    w = live.world
    owner_page = pane()
    section = _allow_on_profile(owner_page.page, live, w.ann, "tess@contoso.test")
    expect(section).to_contain_text("Tess Teammate")
    # Tess opens an email of Ann's mailbox: the pane says for whom it tracks.
    p = signed_in_pane(pane, live, _item(), user=w.teammate)
    card = p.page.locator(".track-card")
    expect(card).to_contain_text("In Ann Archer's mailbox")
    assert p.calls("getSharedPropertiesAsync")
    p.click("track")
    expect(p.status()).to_have_text("Tracked")
    [email] = emails()
    assert email.owner_user_id == w.ann.id and email.created_by_id == w.teammate.id
    assert next(r for r in p.requests if r["path"] == "track")["body"]["item"]["mailbox_owner"] == "ann@contoso.test"
    # Only Track and Open in CRM: no untrack or regarding changes on Ann's behalf.
    expect(card.locator("[data-key=untrack]")).to_have_count(0)
    expect(card.locator("[data-key=change-regarding]")).to_have_count(0)
    # Ann takes the leave back: Tess is refused from then on.
    section.get_by_role("button", name="Remove Tess Teammate").click()
    expect(owner_page.page.get_by_role("region", name="Who may track on my behalf")).to_contain_text("Nobody yet.")
    fresh()
    assert db.session.scalar(select(TrackingDelegate)) is None


def test_without_the_owners_leave_the_pane_says_so_and_the_api_refuses(pane, live, app):
    w = live.world
    p = signed_in_pane(pane, live, _item(), user=w.teammate)
    card = p.page.locator(".track-card")
    expect(card).to_contain_text("has not allowed you to track on their behalf")
    expect(card.locator("[data-key=track]")).to_have_count(0)
    item = {"type": "message", "mode": "read", "internet_message_id": "<m1@fabrikam.test>", "subject": "x",
            "from": {"name": "Carol", "address": "carol@fabrikam.test"}, "to": [], "cc": [],
            "user_address": "tess@contoso.test", "mailbox_owner": "ann@contoso.test",
            "html_body": "<p>x</p>"}
    r = app.test_client().post("/api/addin/track", json={"item": item, "regarding": None},
                               headers={"Authorization": f"Bearer {pane_token(w.teammate)}"})
    assert r.status_code == 403 and "not allowed you" in r.get_json()["error"]["message"]
    assert emails() == []


def test_the_users_own_mailbox_is_not_a_shared_one(pane, live):
    """Outlook answers getSharedPropertiesAsync for the user's own mailbox too (or fails):
    their own address is no owner to act for."""
    w = live.world
    p = signed_in_pane(pane, live, message(shared={"owner": "ANN@contoso.test"}))
    expect(p.status()).to_have_text("Not tracked")
    expect(p.page.locator(".shared-mailbox")).to_have_count(0)
    p.click("track")
    expect(p.status()).to_have_text("Tracked")
    assert emails()[0].owner_user_id == w.ann.id
