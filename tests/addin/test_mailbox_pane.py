"""The pane's "My mailbox" section in headless Chromium against the real server and the
fake Microsoft Graph service: Ann, signed in with Office SSO, opens the section (asked for
only then), connects her own Exchange Online mailbox (on-behalf-of) and sees it syncing;
signed in with a pane token she sees why it cannot be connected."""
from __future__ import annotations

from playwright.sync_api import expect

from server.db import db
from server.sync.models import Mailbox
from tests.addin.test_pane_browser import (live, message, pane, pane_token, tenant,  # noqa: F401
                                           who)
from tests.addin.test_sso import token as sso_token
from tests.sync import world as w
from tests.sync.graph.conftest import GraphStore, graph  # noqa: F401 - fake Graph (a fixture)


def anns_mailbox(live, graph):  # noqa: F811
    store = GraphStore(graph, "ann@contoso.test")
    prof = w.profile("graph", **store.profile_fields())
    box = w.mailbox(live.world.ann, prof=prof, enabled=False)
    db.session.commit()
    return box


def test_sso_user_connects_their_own_mailbox_from_the_pane(pane, live, tenant, graph):  # noqa: F811
    box = anns_mailbox(live, graph)
    bearer = sso_token()
    graph.assertions[bearer] = "ann@contoso.test"
    p = pane().open(message(), sso={"tokens": [bearer]})
    assert not [r for r in p.requests if r["path"].startswith("mailbox")]  # not on first paint
    p.click("mailbox-show")
    connect = p.page.locator('[data-key="mailbox-connect"]')
    expect(connect).to_have_text("Connect my mailbox")
    expect(p.page.locator(".mailbox-status")).to_contain_text("Not connected")
    connect.click()
    expect(p.page.locator(".mailbox-status")).to_contain_text("Syncing")
    expect(p.page.locator(".mailbox-status")).to_contain_text("Connected")
    expect(p.page.locator('[data-key="mailbox-disconnect"]')).to_be_visible()
    posted = [r for r in p.requests if r["path"] == "mailbox/connect"]
    assert len(posted) == 1 and posted[0]["auth"].startswith("Bearer eyJ")
    db.session.rollback()
    box = db.session.get(Mailbox, box.id)
    assert box.enabled and box.oauth_refresh_token


def test_with_a_pane_token_the_section_says_why_it_cannot_connect(pane, live, graph):  # noqa: F811
    anns_mailbox(live, graph)
    ann = live.world.ann
    p = pane().open(message(), token=pane_token(ann), user=who(ann.email, ann.full_name))
    p.click("mailbox-show")
    expect(p.page.locator(".mailbox-why")).to_contain_text("single sign-on")
    expect(p.page.locator(".mailbox-status")).to_contain_text("Not connected")
    expect(p.page.locator('[data-key="mailbox-connect"]')).to_have_count(0)
