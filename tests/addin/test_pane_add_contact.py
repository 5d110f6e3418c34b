"""The pane's "Add as contact" form picks the contact's account: one the item knows, one
found by searching accounts, or a new one named after the sender's email domain, created
with the contact in one request and only for a user who may create accounts (Chromium
against the real server, and the API directly for the refusal).
"""
from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from server.crm.models import Account, Contact
from server.db import db
from server.security.models import Role
from tests.addin.test_pane_browser import (  # noqa: F401 - fixtures
    fresh, live, message, pane, pane_token, signed_in_pane, who)

STRANGER = who("jonas.whitaker@harbourlight-ventures.example", "Jonas Whitaker")


def _form(p, address):
    p.person(address).get_by_role("button", name="Add as contact").click()
    expect(p.page.get_by_role("heading", name="New contact")).to_be_visible()
    return p.page.get_by_label("Account", exact=True)


def test_search_accounts_for_the_new_contact(pane, live):
    w = live.world
    p = signed_in_pane(pane, live, message(cc=[STRANGER]))
    page = p.page
    account = _form(p, STRANGER["emailAddress"])
    page.get_by_label("Find an account", exact=True).fill("fabri")
    page.get_by_label("Find an account", exact=True).press("Enter")
    expect(page.locator("#account-q-status")).to_have_text("1 account found: choose one under Account.")
    expect(account).to_be_focused()
    expect(account).to_have_value(str(w.fabrikam.id))
    p.click("create-save")
    expect(p.person(STRANGER["emailAddress"]).locator(".badge")).to_have_text("Contact")
    fresh()
    contact = db.session.scalar(select(Contact).where(Contact.email1 == STRANGER["emailAddress"]))
    assert contact.parent_account_id == w.fabrikam.id


def test_a_new_account_from_the_senders_domain(pane, live):
    w = live.world
    p = signed_in_pane(pane, live, message(cc=[STRANGER]))
    account = _form(p, STRANGER["emailAddress"])
    account.select_option(label="New account: Harbourlight Ventures")
    p.click("create-save")
    expect(p.person(STRANGER["emailAddress"]).locator(".badge")).to_have_text("Contact")
    fresh()
    created = db.session.scalar(select(Account).where(Account.name == "Harbourlight Ventures"))
    assert created.website == "https://harbourlight-ventures.example" and created.owner_user_id == w.ann.id
    contact = db.session.scalar(select(Contact).where(Contact.email1 == STRANGER["emailAddress"]))
    assert contact.parent_account_id == created.id
    # A free-mail sender suggests no company, so no new account is offered.
    p.page.evaluate("spec => window.__office.selectItem(spec)",
                    message(internetMessageId="<m9@gmail.com>", cc=[who("someone@gmail.com", "Some One")]))
    account = _form(p, "someone@gmail.com")
    assert "New account" not in " ".join(account.locator("option").all_inner_texts())


def test_no_new_account_without_the_privilege_to_create_accounts(pane, live, app):
    w = live.world
    role = db.session.scalar(select(Role).where(Role.name == "Salesperson"))
    for privilege in role.privileges:
        if privilege.privilege == "account.create":
            db.session.delete(privilege)
    db.session.commit()
    p = signed_in_pane(pane, live, message(cc=[STRANGER]))
    account = _form(p, STRANGER["emailAddress"])
    assert "New account" not in " ".join(account.locator("option").all_inner_texts())
    # Asked directly, the API refuses, and creates neither record.
    client = app.test_client()
    r = client.post("/api/addin/records/contact", headers={"Authorization": f"Bearer {pane_token(w.ann)}"},
                    json={"fields": {"last_name": "Whitaker", "email1": STRANGER["emailAddress"]},
                          "new_account": {"name": "Harbourlight Ventures"}})
    assert r.status_code == 403, r.get_json()
    fresh()
    assert db.session.scalar(select(Account).where(Account.name == "Harbourlight Ventures")) is None
    assert db.session.scalar(select(Contact).where(Contact.email1 == STRANGER["emailAddress"])) is None
