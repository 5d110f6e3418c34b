"""The provisioning page and a bulk job's progress page in Chromium: usable at 320 px (no
sideways scrolling) and at desktop width, and clean under axe-core's accessibility rules
(WCAG 2 A and AA) at both; screenshots are kept beside the test's temporary files."""
from __future__ import annotations

import pytest

from server.db import db
from server.sync.admin import jobs
from server.security import authz
from tests.servers.axe import AXE_JS, violations
from tests.sync.mailboxes import make_mailbox, make_profile

PASSWORD = "Correct-horse-9"
EVERY_IMPACT = ("minor", "moderate", "serious", "critical")


@pytest.fixture
def admin(make_user):
    return make_user("ada@org.example", roles=["System Administrator"], name="Ada Admin")


@pytest.mark.skipif(not AXE_JS.is_file(), reason="npm dev tools (axe-core) not installed")
def test_provisioning_and_job_pages_at_320_px_and_desktop(live, admin, make_user, page,
                                                          tmp_path):
    profile = make_profile(name="Contoso IMAP", incoming_host="mail.contoso.example",
                           incoming_port=993)
    for n in range(3):
        make_mailbox(profile, user=make_user(f"seller{n}@org.example"), email_approved=False)
    job = jobs.start(authz.principal(admin), "approve", profile_id=profile.id)
    db.session.commit()
    jobs.run_item("w", jobs.claim("w", 1)[0])
    page.goto(f"{live}/signin")
    page.fill("input[name=email]", admin.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/")
    for width in (320, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in (("provisioning", "/admin/sync/provisioning"),
                           ("job", f"/admin/sync/jobs/{job.id}")):
            page.goto(f"{live}{path}")
            page.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (name, width, overflow)
            assert violations(page, EVERY_IMPACT) == [], (name, width)
    page.goto(f"{live}/admin/sync/jobs/{job.id}")
    assert "1 of 3 done" in page.inner_text("#job-status")
    assert jobs.work("w") == 2  # the page follows, then shows every result
    page.get_by_text("Finished", exact=False).wait_for(timeout=15000)
    assert "3 of 3 done (100%)" in page.inner_text("#job-status")
    assert page.locator("td[data-label=Result]").all_inner_texts() == ["Done"] * 3
