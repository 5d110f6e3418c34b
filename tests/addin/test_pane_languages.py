"""The pane in each of the product's languages, in headless Chromium against the real server.

Outlook's display language is switched in the Office.js stand-in
(``Office.context.displayLanguage``). For each language the pane sets ``<html lang>``,
shows the catalog's translation of what it says (expected with ``server.i18n.translate``, so
the test holds before and after translators fill the catalogs), formats numbers and dates
for the locale and fits 320 px. A display language the product does not speak gives way to
the user's own language, else the organization's; the strings are fetched once per load.
With catalogs where every string is marked (``«...»``), the pane shows every word through
them, a counted sentence in the right plural form included.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from babel.dates import format_date
from babel.numbers import format_decimal
from playwright.sync_api import expect

from server import i18n
from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES
from server.crm.services import records, tracking
from server.db import db
from server.security import authz
from tests.addin.test_pane_browser import (live, message, overflow_report, pane, pane_token,  # noqa: F401
                                           who)
from tests.servers.axe import violations
from tests.test_translations_pane import marked_catalogs

# Outlook's display language -> the product's language, as Outlook names them.
DISPLAY_LANGUAGES = {"en-US": "en", "cs-CZ": "cs", "zh-CN": "zh", "sv-SE": "sv", "sl-SI": "sl", "hu-HU": "hu"}
# A past email of Carol's and a deal of hers, so her related data lists a date and an amount.
EARLIER = datetime(2026, 3, 14, 9, 30, tzinfo=timezone.utc)
VALUE = 1234567


def carols_history(world):
    records.create(authz.principal(world.ann), RECORD_TYPES["opportunity"], {
        "name": "Carol's gadgets", "customer_contact_id": world.carol.id, "estimated_value": str(VALUE)})
    tracking.track_email(authz.principal(world.ann), tracking.EmailContent(
        message_id="<earlier@fabrikam.test>", subject="Earlier order", from_=("Carol", "carol@fabrikam.test"),
        to=[("Ann", "ann@contoso.test")], text_body="x", sent_on=EARLIER, received_on=EARLIER))
    db.session.commit()


def open_in(pane, live, display_language, width=320, user=None):
    user = user or live.world.ann
    p = pane(width=width)
    strings: list[str] = []
    p.page.on("request", lambda r: strings.append(r.url) if "/addin/strings/" in r.url else None)
    p.open(message(), token=pane_token(user), user=who(user.email, user.full_name),
           display_language=display_language)
    return p, strings


@pytest.mark.parametrize("display_language", list(DISPLAY_LANGUAGES))
def test_the_pane_speaks_outlooks_display_language(pane, live, display_language):
    language = DISPLAY_LANGUAGES[display_language]
    locale = display_language.replace("-", "_")

    def t(text, **values):
        return i18n.translate(language, text) % values if values else i18n.translate(language, text)

    carols_history(live.world)
    p, strings = open_in(pane, live, display_language)
    page = p.page
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(p.status()).to_have_text(t("Not tracked"))
    expect(page.locator('[data-key="track"] .btn-label')).to_have_text(t("Track"))
    expect(page.locator('[data-key="track-regarding"] .btn-label')).to_have_text(t("Track and set regarding"))
    expect(page.locator("#people-title")).to_contain_text(t("People"))
    expect(page.locator("#create-title")).to_have_text(t("Create"))
    expect(page.locator(".skip")).to_have_text(t("Skip to content"))
    expect(page.locator(".track-text").first).to_have_text(t("This email is not in the CRM."))
    # Carol's related data: the opportunity's value and her earlier email's date, the locale's way.
    related = page.locator("section", has=page.locator("#related-title"))
    expect(related).to_contain_text(t("Est. %(value)s", value=format_decimal(VALUE, locale=locale)))
    expect(related).to_contain_text(format_date(EARLIER, "medium", locale=locale))
    report = overflow_report(page)
    assert report["width"] == 320 and report["scrollWidth"] <= 320, report
    assert report["bad"] == [], report["bad"]
    if language in ("cs", "zh"):  # a Latin and a non-Latin language: nothing serious for axe
        assert violations(page) == []
    # Its words were fetched once, before the first render, and only for a language not English.
    assert strings == ([] if language == "en" else [f"{live.url}/addin/strings/{language}.json"])


@pytest.mark.parametrize(("display_language", "own", "org_default", "expected"), [
    ("de-DE", "hu", "cs", "hu"),  # Outlook's language is not spoken: the user's own
    ("zh-TW", None, "sv", "sv"),  # Traditional Chinese is not Simplified: the organization's
    ("zh-Hans-CN", "hu", "cs", "zh"),  # Outlook's own when the product speaks it
])
def test_a_display_language_the_product_does_not_speak_gives_way(pane, live, display_language, own,
                                                                   org_default, expected):
    ann = live.world.ann
    ann.language = own
    db.session.get(Organization, 1).default_language = org_default
    db.session.commit()
    p, _ = open_in(pane, live, display_language)
    expect(p.page.locator("html")).to_have_attribute("lang", expected)
    expect(p.status()).to_have_text(i18n.translate(expected, "Not tracked"))


def test_with_translated_catalogs_every_word_of_the_pane_is_translated(pane, live, tmp_path, monkeypatch):
    """Catalogs in which every string is marked: no word of the pane (its text and its
    labels) is left in English, and a counted sentence takes Czech's "few" form."""
    monkeypatch.setattr(i18n, "CATALOGS", marked_catalogs(tmp_path, ("cs",)))
    carols_history(live.world)
    p, _ = open_in(pane, live, "cs-CZ", width=360)
    page = p.page
    expect(p.status()).to_have_text("«Not tracked»")
    unmarked = page.evaluate("""() => {
        const out = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const text = node.textContent.trim();
            if (!text || !/\\p{L}/u.test(text) || node.parentElement.closest("noscript, .brand, .signin-mark")) continue;
            if (!text.includes("«")) out.push(text);
        }
        for (const el of document.querySelectorAll("[aria-label], [title], [placeholder]")) {
            for (const name of ["aria-label", "title", "placeholder"]) {
                const value = el.getAttribute(name);
                if (value && /\\p{L}/u.test(value) && !value.includes("«")) out.push(name + "=" + value);
            }
        }
        return out;
    }""")
    # What the CRM and the email say (names, subjects, addresses, initials) stays as it is.
    data = {"Widgets order", "Earlier order", "Carol Customer", "carol@fabrikam.test", "Fabrikam", "Carol's gadgets",
            "Fabrikam widgets", "Broken widget", "CAS-00001", "Buyer", "+1 555 0123", "CC", "AA", "Ann Archer",
            "title=Ann Archer", "title=Widgets order", "title=ann@contoso.test"}
    assert [text for text in unmarked if text not in data and not text.startswith("CAS-")] == []
    # A search with three results: Czech's "few" (the second form).
    p.click("track-regarding")
    page.locator('[data-key="regarding-q"]').fill("fab")
    caption = page.locator(".results-caption")
    expect(caption).to_have_text(re.compile(r"^«\d+ result» \d$"))
    count = page.locator(".result").count()
    assert 2 <= count <= 4 and caption.inner_text() == f"«{count} result» 1"


TAGS = ["cs", "cs-CZ", "cs_CZ", "zh-CN", "zh-Hans-CN", "zh", "zh-SG", "zh-TW", "zh-Hant", "zh-HK", "zh-MO",
        "sv-FI", "SL", "sl-SI", "hu-HU", "en-GB", "en-US", "de-DE", "", "x"]


def test_the_pane_maps_a_language_tag_as_the_server_does(pane, live):
    p = pane()
    p.open(message(), token=pane_token(live.world.ann))
    mapped = p.page.evaluate("(tags) => import('/addin/js/i18n.js').then((m) => tags.map(m.languageOf))", TAGS)
    assert mapped == [i18n.language_of(tag) for tag in TAGS]
