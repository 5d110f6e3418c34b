"""Which language and time zone a page is served in (the user's choice, else the browser's,
else the organization's, else English), how times read in each locale, the profile and
organization settings that choose them, and the pane's strings as JSON."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from flask_babel import force_locale
from hypothesis import given
from hypothesis import strategies as st

from server.crm.models import Organization
from server.db import db
from server.i18n import LANGUAGES, language_of, time_zones
from server.web.languages import local


def _lang(client, **headers) -> str:
    page = client.get("/signin", headers=headers).get_data(as_text=True)
    return page.split('<html lang="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("tag, code", [
    ("cs", "cs"), ("cs-CZ", "cs"), ("cs_CZ", "cs"), ("zh-CN", "zh"), ("zh-Hans-CN", "zh"),
    ("zh", "zh"), ("sv-FI", "sv"), ("SL", "sl"), ("hu-HU", "hu"), ("en-GB", "en"),
    ("zh-TW", None), ("zh-Hant", None), ("de-DE", None), ("", None), (None, None),
])
def test_language_tags_map_to_the_languages_spoken(tag, code):
    assert language_of(tag) == code


@given(st.text(max_size=30))
def test_any_tag_maps_to_a_spoken_language_or_none(tag):
    assert language_of(tag) in (*LANGUAGES, None)


def test_the_browser_then_the_organization_then_english_choose(app, client):
    assert _lang(client) == "en"
    assert _lang(client, **{"Accept-Language": "de-DE, hu;q=0.8, cs;q=0.5"}) == "hu"
    org = db.session.get(Organization, 1)
    org.default_language = "sv"
    db.session.commit()
    assert _lang(client) == "sv"  # nothing asked: the organization's
    assert _lang(client, **{"Accept-Language": "de-DE"}) == "sv"  # nothing spoken asked
    assert _lang(client, **{"Accept-Language": "zh-CN"}) == "zh"


def test_a_users_own_choice_wins_and_is_validated(app, make_user, signin):
    user = make_user()
    c = signin(user)
    form = {"action": "preferences", "language": "cs", "time_zone": "Europe/Prague"}
    assert c.post("/profile", data=form).status_code == 302
    db.session.refresh(user)
    assert (user.language, user.time_zone) == ("cs", "Europe/Prague")
    assert _lang(c, **{"Accept-Language": "sv"}) == "cs"
    page = c.get("/profile").get_data(as_text=True)
    assert '<option value="cs" lang="cs" selected>' in page
    for bad in ({"language": "xx"}, {"time_zone": "Mars/Olympus"}, {"time_zone": "../etc"}):
        assert c.post("/profile", data={**form, **bad}).status_code in (400, 422)
    db.session.refresh(user)
    assert (user.language, user.time_zone) == ("cs", "Europe/Prague")
    assert c.post("/profile", data={"action": "preferences", "language": "",
                                    "time_zone": ""}).status_code == 302
    db.session.refresh(user)
    assert (user.language, user.time_zone) == (None, None)


def test_the_organization_defaults_are_settings_with_choices(app, make_user, signin):
    admin = make_user(roles=["System Administrator"])
    c = signin(admin)
    page = c.get("/admin/organization").get_data(as_text=True)
    assert 'name="default_language"' in page and '<option value="Europe/Ljubljana"' in page
    form = {"name": "Contoso", "base_currency": "USD", "attachment_max_bytes": "5",
            "tracking_token_prefix": "CRM:", "use_tracking_token": "1",
            "default_language": "hu", "default_time_zone": "Europe/Budapest"}
    assert c.post("/admin/organization", data=form).status_code == 302
    org = db.session.get(Organization, 1)
    assert (org.default_language, org.default_time_zone) == ("hu", "Europe/Budapest")
    assert c.post("/admin/organization", data={**form, "default_language": "tlh"}).status_code in (400, 422)
    assert c.post("/admin/organization", data={**form, "default_time_zone": ""}).status_code in (400, 422)
    db.session.refresh(org)
    assert (org.default_language, org.default_time_zone) == ("hu", "Europe/Budapest")


@pytest.mark.parametrize("locale, zone, expected", [
    ("en", "UTC", "Dec 5, 2026, 11:25\u202fPM"),
    ("cs", "Europe/Prague", "6. 12. 2026 0:25"),
    ("zh_Hans", "Asia/Shanghai", "2026年12月6日 07:25"),
    ("sv", "Europe/Stockholm", "6 dec. 2026 00:25"),
    ("sl", "Europe/Ljubljana", "6. dec. 2026, 00:25"),
    ("hu", "Europe/Budapest", "2026. dec. 6. 0:25"),
])
def test_times_read_in_the_locale_and_the_time_zone(app, locale, zone, expected):
    """A stored UTC time, 23:25 on 5 December, is past midnight in Europe and Asia."""
    org = db.session.get(Organization, 1)
    org.default_time_zone = zone
    db.session.commit()
    with app.test_request_context("/"), force_locale(locale):
        assert " ".join(local(datetime(2026, 12, 5, 23, 25)).split()) == " ".join(expected.split())
        assert local(datetime(2026, 12, 5, 23, 25), "date") != ""


def test_every_time_zone_offered_is_one_zoneinfo_knows():
    from zoneinfo import ZoneInfo
    assert "Europe/Prague" in time_zones() and "UTC" in time_zones()
    for zone in time_zones():
        ZoneInfo(zone)


def test_the_pane_strings_are_json_per_language_with_an_etag(app, client):
    r = client.get("/addin/strings/cs.json")
    assert r.status_code == 200 and r.is_json and isinstance(r.get_json(), dict)
    again = client.get("/addin/strings/cs.json", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/addin/strings/xx.json").status_code == 404
    assert client.get("/addin/strings/en.json").get_json() == {}


STORED = datetime(2026, 12, 5, 23, 25, tzinfo=timezone.utc)  # already 6 December in Prague


def test_a_record_page_and_the_profile_read_in_czech_for_a_czech_user(app, make_user, signin,
                                                                       make_record):
    """The user's language and time zone decide the page: ``<html lang="cs">`` and times in
    the Czech way, in Prague time (the browser asks for English)."""
    from server.security import tokens
    user = make_user()
    user.language, user.time_zone = "cs", "Europe/Prague"
    account = make_record(user, "account")
    account.modified_on = STORED
    row = tokens.issue(user, "Laptop", days=30)[0]
    row.created_on = STORED
    db.session.commit()
    c = signin(user)
    english = {"Accept-Language": "en-US"}
    record_page = c.get(f"/r/account/{account.id}", headers=english).get_data(as_text=True)
    assert '<html lang="cs">' in record_page
    assert ">6. 12. 2026 0:25</time>" in record_page
    profile = c.get("/profile", headers=english).get_data(as_text=True)
    assert '<html lang="cs">' in profile
    assert ">6. 12. 2026</time>" in profile
    user.language, user.time_zone = None, None  # the same pages for an English reader in UTC
    db.session.commit()
    record_page = c.get(f"/r/account/{account.id}", headers=english).get_data(as_text=True)
    assert '<html lang="en">' in record_page and "Dec 5, 2026" in record_page


def test_a_lower_floors_message_keeps_its_values_whatever_the_language(app):
    """A ``Message`` (marked with N_ in crm or security) is looked up by its catalog text and
    then filled in, so a translation may reorder the values; untranslated, it reads in English."""
    from server.i18n import N_, message_of
    from server.web.languages import localize, localize_fields
    marked = N_("At most %(count)s characters.", count=400)
    assert marked == "At most 400 characters." and marked.source == "At most %(count)s characters."
    assert message_of(ValueError(marked)) is marked
    for locale in ("en", "cs"):
        with app.test_request_context("/"), force_locale(locale):
            assert localize(marked) == "At most 400 characters."
            assert localize_fields({"subject": marked}) == {"subject": "At most 400 characters."}


@pytest.mark.parametrize("language", ["en", "cs"])
def test_error_pages_say_our_own_words_in_the_readers_language(app, client, language):
    """404 and 405 pages (and the API's JSON) carry our sentence per status, not Werkzeug's
    English description; a description a view gave stays."""
    from server.i18n import translate
    headers = {"Accept-Language": language}
    missing = client.get("/no/such/page", headers=headers)
    page = missing.get_data(as_text=True).replace("&#39;", "'")
    assert missing.status_code == 404
    assert translate(language, "There is nothing at this address. Check the link, or start "
                               "from the home page.") in page
    assert "The requested URL was not found" not in page
    wrong = client.delete("/signin", headers=headers)
    assert wrong.status_code == 405 and "Allow" in wrong.headers
    assert translate(language, "This address does not accept that kind of request.") \
        in wrong.get_data(as_text=True)
    api = client.get("/api/v1/no-such-thing", headers=headers)
    assert api.status_code == 404 and api.json["error"]["message"] == translate(
        language, "There is nothing at this address. Check the link, or start from the home page.")
