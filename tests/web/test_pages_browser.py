"""The CRM pages in Chromium as a newcomer sees them (issue 16), over the demo organization
with its mailbox synchronized once: the "Email tracking" link and the marked navigation on
every page of the section; every page fits from 320 px up (tables become cards where they
lack room, a 100-character unbroken name wraps) and the decisions give their answer first;
the mailbox page asks only what its kind needs; axe-core finds nothing serious or critical
on any page. Screenshots at 320, 375 and 1280 px of the dashboard, the decisions and a
record page are written to test-results/screenshots/ (not committed) for a person to look at.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from server.crm.models import Account
from server.db import db
from server.demo import DEMO_SIGNINS, seed
from server.security.models import User
from server.sync.models import EmailServerProfile, Mailbox
from tests.servers.axe import violations

SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
PASSWORDS = {email: password for email, password, _ in DEMO_SIGNINS}
ADMIN, SAM, CHRIS = ("admin@contoso.example", "sam.sales@contoso.example",
                     "chris.service@contoso.example")
LONG_NAME = "Contoso" * 14 + "Ltd"  # 101 characters, no place to break


@pytest.fixture
def demo(app):
    """The demo organization, its mailbox synchronized once, and an account whose name is
    one unbroken word of 101 characters (changed last by the administrator, so it is on
    the home page's cards)."""
    seed()
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["sync", "run", "--all", "--quiet"])
    assert result.exit_code == 0, result.output
    from server.crm.registry import RECORD_TYPES
    from server.crm.services import records
    from server.security import authz
    admin = db.session.scalar(select(User).where(User.email == ADMIN))
    long = records.create(authz.principal(admin), RECORD_TYPES["account"], {"name": LONG_NAME})
    db.session.commit()
    box = db.session.scalar(select(Mailbox).where(Mailbox.email_address == SAM))
    fabrikam = db.session.scalar(select(Account).where(Account.name == "Fabrikam Inc"))
    return {"mailbox": box.id, "profile": box.server_profile_id, "long": long.id,
            "fabrikam": fabrikam.id}


def sign_in(page, live, email):
    page.goto(f"{live}/signin")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORDS[email])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/")


def marked(page) -> list[str]:
    """The navigation entries marked as the current page: the sidebar's, then the tabs'."""
    return page.eval_on_selector_all(
        ".sitemap [aria-current=page], .sync-tabs [aria-current=page]",
        "els => els.map(e => e.textContent.trim())")


def test_email_tracking_leads_each_person_somewhere_useful_and_the_right_entry_is_marked(
        demo, live, page):
    sign_in(page, live, ADMIN)
    page.click(".sitemap >> text=Email tracking")  # the administrator has no mailbox
    page.wait_for_load_state("load")
    assert page.url == f"{live}/admin/sync/"
    assert "Not found" not in page.content()
    assert marked(page) == ["Email tracking", "Dashboard"]
    tiles = page.inner_text(".tiles")
    assert tiles.startswith("1\nmailbox\n") and "mailboxes" not in tiles
    assert "All 1 mailboxes" not in page.content()
    box = demo["mailbox"]
    for path, want in [
            ("/admin/sync/decisions?mailbox=%d" % box, ["Email tracking", "Dashboard"]),
            ("/admin/sync/mailboxes", ["Email tracking", "Mailboxes"]),
            ("/admin/sync/mailboxes/%d" % box, ["Email tracking", "Mailboxes"]),
            ("/admin/sync/mailboxes/%d/tracking" % box, ["Email tracking", "Mailboxes"]),
            ("/admin/sync/mailboxes/%d/delete" % box, ["Email tracking", "Mailboxes"]),
            ("/admin/sync/profiles/%d" % demo["profile"],
             ["Email tracking", "Email server profiles"]),
            ("/admin/sync/blocklist", ["Email tracking", "Tracking blocklist"]),
            ("/admin/sync/alert-emails", ["Email tracking", "Alert emails"]),
            ("/admin/sync/my", ["Email tracking", "My email tracking"]),
            ("/admin/addin", ["Administration"]),
            ("/admin/users", ["Administration"]),
            ("/r/account/", ["Accounts"])]:
        page.goto(live + path)
        assert marked(page) == want, path
    page.goto(f"{live}/admin/sync/my")
    assert page.get_by_role("link", name="Set up a mailbox").is_visible()

    # Sam, with a mailbox and no dashboard: his own tracking options, his tab marked.
    page.context.clear_cookies()
    sign_in(page, live, SAM)
    page.click(".sitemap >> text=Email tracking")
    page.wait_for_url(f"{live}/admin/sync/mailboxes/{box}/tracking")
    assert marked(page) == ["Email tracking", "My email tracking"]

    # Chris, with neither: a page of the section that says what to do, not an error.
    page.context.clear_cookies()
    sign_in(page, live, CHRIS)
    response = page.goto(f"{live}/admin/sync/my")
    assert response.status == 200
    assert "Ask an administrator to set one up for you." in page.inner_text("main")
    assert marked(page) == ["Email tracking", "My email tracking"]


WIDTHS = (320, 375, 480, 768, 1024, 1280)


def test_every_page_fits_from_320_px_and_the_decisions_answer_first(demo, live, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    box = demo["mailbox"]
    pages = {"dashboard": "/admin/sync/", "mailboxes": "/admin/sync/mailboxes",
             "decisions": f"/admin/sync/decisions?mailbox={box}&q=e",
             "mailbox": f"/admin/sync/mailboxes/{box}",
             "record": f"/r/account/{demo['fabrikam']}", "long-name": f"/r/account/{demo['long']}",
             "home": "/"}
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        sign_in(page, live, ADMIN)
        for name, path in pages.items():
            page.goto(live + path)
            page.wait_for_load_state("load")
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, f"{path} is {wide} px wide at {width} px"
            if width in (320, 375, 1280) and name in ("dashboard", "decisions", "record"):
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        page.goto(live + pages["decisions"])
        heads = page.eval_on_selector_all("table.decisions thead th",
                                          "els => els.map(e => e.textContent.trim())")
        assert heads[:2] == ["Tracked", "Why"]
        rows = page.locator("table.decisions tbody tr")
        assert rows.count() >= 5
        for i in range(rows.count()):
            row = rows.nth(i)
            for cell in ("td[data-label=Tracked]", "td[data-label=Why]"):
                box_ = row.locator(cell).bounding_box()
                assert box_["x"] + box_["width"] <= width + 1, (width, i, cell)
            if width == 1280:
                assert row.bounding_box()["height"] < 160, f"row {i} is too tall"
        page.goto(live + "/")
        assert LONG_NAME in page.inner_text("main")  # on the recent records' card
        context.close()


def test_a_maildir_mailbox_page_asks_only_what_it_needs(demo, live, page):
    sign_in(page, live, ADMIN)
    page.goto(f"{live}/admin/sync/mailboxes/{demo['mailbox']}")
    assert db.session.get(EmailServerProfile, demo["profile"]).incoming_protocol == "maildir"
    assert page.locator("input[name=password]").count() == 0  # a Maildir needs none
    assert page.locator("text=Credentials").count() == 0
    assert page.get_by_role("button", name="Test & Enable").count() == 0  # enabled already
    assert page.get_by_role("button", name="Test again").is_visible()
    for fieldset in page.locator("fieldset.card").all():  # headings inside their cards
        legend = fieldset.locator("legend").bounding_box()
        assert legend["y"] >= fieldset.bounding_box()["y"] + 8
    save = page.get_by_role("button", name="Save").bounding_box()
    runs = page.locator("section[aria-labelledby=runs-h]").bounding_box()
    assert runs["y"] - (save["y"] + save["height"]) >= 16


PAGES = ["/", "/?q=Fabrikam", "/profile", "/r/account/", "/r/contact/", "/r/lead/",
         "/r/opportunity/", "/r/case/", "/r/queue/", "/r/{kind}/{id}", "/r/account/{id}/edit",
         "/r/account/new", "/r/account/{id}/assign", "/r/account/{id}/share",
         "/r/account/{id}/delete", "/r/account/{id}/activities/new/task", "/activities/{activity}",
         "/compose", "/email/templates", "/email/templates/new", "/email/signature", "/admin/",
         "/admin/organization", "/admin/field-security", "/admin/roles", "/admin/roles/{role}",
         "/admin/teams", "/admin/teams/new", "/admin/units", "/admin/users", "/admin/users/new",
         "/admin/users/{user}", "/admin/addin", "/admin/sync/", "/admin/sync/?q=Contoso",
         "/admin/sync/decisions?mailbox={mailbox}&q=e", "/admin/sync/mailboxes",
         "/admin/sync/mailboxes/new", "/admin/sync/mailboxes/{mailbox}",
         "/admin/sync/mailboxes/{mailbox}/tracking", "/admin/sync/mailboxes/{mailbox}/delete",
         "/admin/sync/my", "/admin/sync/profiles", "/admin/sync/profiles/new",
         "/admin/sync/profiles/{profile}", "/admin/sync/profiles/{profile}/delete",
         "/admin/sync/blocklist", "/admin/sync/alert-emails", "/admin/sync/provisioning"]


def test_axe_finds_nothing_serious_or_critical_on_any_page(demo, live, page):
    from server.crm.activities import Email
    from server.security.models import Role
    ids = {"id": demo["fabrikam"], "mailbox": demo["mailbox"], "profile": demo["profile"],
           "activity": db.session.scalar(select(Email.id).order_by(Email.id)),
           "role": db.session.scalar(select(Role.id).order_by(Role.id)),
           "user": db.session.scalar(select(User.id).where(User.email == SAM))}
    found = {}
    page.goto(f"{live}/signin")
    found["/signin"] = violations(page)
    sign_in(page, live, ADMIN)
    paths = [p.format(**ids, kind=kind) if "{kind}" in p else p.format(**ids)
             for p in PAGES for kind in (("account", "contact", "opportunity", "case")
                                         if "{kind}" in p else ("",))]
    for path in paths:
        response = page.goto(live + path)
        assert response.status == 200, path
        found[path] = violations(page)
    page.context.clear_cookies()
    sign_in(page, live, CHRIS)  # the page for someone without a mailbox
    page.goto(f"{live}/admin/sync/my")
    found["/admin/sync/my (no mailbox)"] = violations(page)
    assert {path: v for path, v in found.items() if v} == {}
