"""A record page and the sync dashboard in Czech and in Simplified Chinese, in Chromium, over
the demo organization (its mailbox synchronized once): the browser asks for the language
(Accept-Language, as a person's browser does), the page says it is in it (``<html lang>``),
fits 320 and 1280 px without scrolling sideways (long Czech and Hungarian words wrap),
writes dates and numbers the locale's way (no English month; an amount grouped the locale's
way), and axe-core finds nothing serious or critical. Screenshots of each page in each
language and width go to test-results/screenshots/ (not committed).
"""
from __future__ import annotations

import re

import pytest

from server.crm.registry import RECORD_TYPES
from server.crm.services import records
from server.db import db
from server.security import authz
from server.security.models import User
from tests.servers.axe import violations
from tests.web.test_pages_browser import ADMIN, SHOTS, demo, sign_in  # noqa: F401 - demo: a fixture

# Long words of the two languages, in a record's name and an opportunity of it.
LONG_WORDS = "Nejnezdevětadevadesáteronásobitelnějšího Megszentségteleníthetetlenségeskedéseitekért"
# The locale's way with a date and with a number of thousands (NBSP or narrow NBSP in Czech).
DATES = {"cs": re.compile(r"\b\d{1,2}\. ?\d{1,2}\.( \d{4})?"), "zh": re.compile(r"(\d{4}年)?\d{1,2}月\d{1,2}日")}
NUMBERS = {"cs": re.compile(r"\d{1,3}[\u00a0\u202f ]\d{3}"), "zh": re.compile(r"\d{1,3},\d{3}")}
ENGLISH_MONTHS = re.compile(r"\b(\d{1,2} )?(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\b")
BROWSER_LOCALES = {"cs": "cs-CZ", "zh": "zh-CN"}


@pytest.fixture
def long_account(demo):  # noqa: F811
    admin = db.session.query(User).filter_by(email=ADMIN).one()
    p = authz.principal(admin)
    account = records.create(p, RECORD_TYPES["account"], {"name": LONG_WORDS, "city": LONG_WORDS.split()[1]})
    deal = records.create(p, RECORD_TYPES["opportunity"], {"name": LONG_WORDS, "customer_account_id": account.id,
                                                           "estimated_value": "1234567"})
    db.session.commit()
    return account.id, deal.id


@pytest.mark.parametrize("language", ["cs", "zh"])
def test_a_record_page_and_the_dashboard_in_czech_and_chinese(demo, long_account, live, browser, language):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = {"dashboard": "/admin/sync/", "record": f"/r/account/{demo['fabrikam']}",
             "long-words": f"/r/account/{long_account[0]}", "amount": f"/r/opportunity/{long_account[1]}"}
    seen = {}
    for width in (320, 1280):
        context = browser.new_context(viewport={"width": width, "height": 900}, locale=BROWSER_LOCALES[language])
        page = context.new_page()
        sign_in(page, live, ADMIN)
        for name, path in pages.items():
            page.goto(live + path)
            page.wait_for_load_state("load")
            assert page.get_attribute("html", "lang") == language, path
            report = page.evaluate("""() => ({
                wide: document.scrollingElement.scrollWidth, width: innerWidth,
                past: [...document.querySelectorAll("body *")].filter((el) => el.getBoundingClientRect().right > innerWidth + 0.5)
                    .slice(-1).map((el) => { const chain = []; for (let e = el; e && e !== document.body; e = e.parentElement) chain.push(`${e.tagName}.${e.className} ${getComputedStyle(e).display}`); return chain.join(" < "); })})""")
            assert report["wide"] <= report["width"], f"{path} at {width} px: {report}"
            page.screenshot(path=str(SHOTS / f"{name}-{language}-{width}.png"), full_page=True)
            text = page.inner_text("main")
            seen[name] = text
            assert not ENGLISH_MONTHS.search(text), (path, ENGLISH_MONTHS.search(text))
            if width == 1280:
                assert violations(page) == [], path
        context.close()
    assert DATES[language].search(seen["record"]), seen["record"]
    assert DATES[language].search(seen["dashboard"]), seen["dashboard"]
    assert NUMBERS[language].search(seen["amount"]), seen["amount"]
