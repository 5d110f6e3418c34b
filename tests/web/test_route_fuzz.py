"""No 500 anywhere: every route of the application's URL map is called with hostile values
(bad and out-of-range ids, huge and negative numbers, lone surrogates, garbage cursors,
malformed Referers, oversize bodies), for GET and POST, signed in and not, against the real
application on the demo organization. Every answer must be a clear status below 500.

The sweep is deterministic (every rule, every method, every value); hypothesis adds random
mixes of query parameters and form fields on top. Exceptions propagate out of the test
client, so a failure names the request and the exception.
"""
from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.routing import AnyConverter, IntegerConverter, PathConverter

from server import demo
from server.db import db
from server.security import tokens
from server.security.models import User

SURROGATE = "%ED%A0%80"  # a lone surrogate (U+D800) as it arrives in a URL: not UTF-8
SURROGATE_BYTES = "\ud800".encode("utf-8", "surrogatepass")  # ... and in a form
HUGE = "99999999999999999999"
BAD_INTS = ["0", "-1", "2147483648", HUGE, "1e9", SURROGATE, "%00", "%C2%B2"]  # ² is a digit
BAD_TEXT = [SURROGATE, "%00", "x" * 300, "..%2F..%2Fetc%2Fpasswd", "%0D%0ALocation:x"]
# Every query parameter a view reads; a view ignores the ones it does not know.
QUERY_NAMES = ["page", "page_size", "mailbox", "unit", "role", "cursor", "copy_from", "limit",
               "q", "rq", "sort", "dir", "state", "status", "images", "view", "types", "type",
               "address", "active", "next", "host", "validationToken", "owner_id",
               "parent_account_id", "regarding"]
QUERY_VALUES = ["1", "0", HUGE, "-99999999999999999999999", SURROGATE, "%C2%B2", "zzz",
                "1_99999999999999999999", "1e400_1"]  # the last two: page timeline cursors
FORM_NAMES = ["name", "subject", "email", "password", "unit", "role", "record_id", "token_id",
              "remove", "add", "days", "action", "owner", "principal", "kind", "profile_id",
              "server_profile_id", "port", "host", "incoming_port", "incoming_server", "q",
              "copy_from", "parent_id", "business_unit_id", "regarding", "user_id", "team_id"]
JSON_BODIES = [b'{"item": "\\ud800", "name": "\\udfff", "fields": {"last_name": "\\ud83d"}}',
               b'{"regarding": {"type": "account", "id": 99999999999999999999}}',
               b'[' * 5000, b'\xff\xfe']
BIG = 70 * 1024  # above the limit the fuzz app is given
SIGNOUTS = ("/signout", "/api/addin/signout")  # anonymous only: they would end the sessions


@pytest.fixture
def world(app):
    """The demo organization, and a client per way of being signed in (or not)."""
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)
    demo.seed()
    db.session.commit()
    clients = {"anonymous": app.test_client()}
    for label, (email, password, _role) in zip(("admin", "seller"), (demo.DEMO_SIGNINS[0],
                                                                     demo.DEMO_SIGNINS[2])):
        c = app.test_client()
        r = c.post("/signin", data={"email": email, "password": password})
        assert r.status_code == 302, r.get_data(as_text=True)[:300]
        user = db.session.query(User).filter_by(email=email).one()
        _, api_secret = tokens.issue(user, "fuzz", kind="api")
        _, pane_secret = tokens.issue(user, "fuzz", kind="pane")
        clients[label] = (c, api_secret, pane_secret)
    db.session.commit()
    return clients


# The REST API has the same views for each record type (the registry's): two stand for all.
SAME_VIEWS = re.compile(r"^api\.(lead|opportunity|case|queue)_")


def _rules(app):
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 150, "the URL map is not all there"
    return [r for r in rules if not SAME_VIEWS.match(r.endpoint)]


def _build(rule, value_for) -> str:
    out = []
    for is_dynamic, data in rule._trace:
        if is_dynamic:
            out.append(value_for(rule._converters[data]))
        else:
            out.append(data)
    path = "".join(out)
    return path.split("|", 1)[1] if "|" in path else path


def _good(converter) -> str:
    if isinstance(converter, IntegerConverter):
        return "1"
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0]
    if isinstance(converter, PathConverter):
        return "manifest.xml"
    return "account"


def _variants(rule):
    """URLs for a rule: good values, then each argument in turn given each bad value."""
    names = list(rule.arguments)
    urls = {_build(rule, _good)}
    for name in names:
        bad = BAD_INTS if isinstance(rule._converters[name], IntegerConverter) else BAD_TEXT + ["1"]
        for value in bad:
            urls.add(_build(rule, lambda c, _n=name, _v=value:
                            _v if c is rule._converters[_n] else _good(c)))
    return sorted(urls)


def _callers(world, url, people=("admin", "seller")):
    """Who calls ``url``: nobody signed in, then the admin and the salesperson the way that
    part of the app signs in (a bearer token on the APIs, the session cookie elsewhere)."""
    if people != ("admin",):
        yield "anonymous", world["anonymous"], {}
    if url.startswith(SIGNOUTS):
        return
    for label in people:
        client, api_secret, pane_secret = world[label]
        if url.startswith("/api/v1/"):
            yield f"{label}-api", client, {"Authorization": f"Bearer {api_secret}"}
        elif url.startswith("/api/addin/"):
            yield f"{label}-pane", client, {"Authorization": f"Bearer {pane_secret}"}
        else:
            yield label, client, {}


def _call(world, method, url, headers=None, people=("admin", "seller"), **kw):
    """Call ``url`` as every caller; the failures (a 500 or an exception) as text."""
    failures = []
    for who, client, auth in _callers(world, url, people):
        try:
            r = client.open(url, method=method, headers={**auth, **(headers or {})}, **kw)
        except Exception as exc:  # noqa: BLE001 - the point is to report it
            failures.append(f"{who} {method} {url}: {type(exc).__name__}: {exc}"[:400])
            continue
        if r.status_code >= 500:
            failures.append(f"{who} {method} {url}: {r.status_code}")
    return failures


def _still_signed_in(world) -> None:
    """The sweep must not have signed its own callers out (it would test less than it says)."""
    for label in ("admin", "seller"):
        client, api_secret, pane_secret = world[label]
        assert client.get("/profile").status_code == 200, label
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {api_secret}"}
                          ).status_code == 200, label


def _methods(rule):
    return sorted(m for m in rule.methods if m not in ("HEAD", "OPTIONS"))


@pytest.mark.both_databases  # PostgreSQL refuses an out-of-range integer differently
def test_every_route_with_bad_ids_and_hostile_path_values(app, world):
    failures = []
    for rule in _rules(app):
        for url in _variants(rule):
            for method in _methods(rule):
                failures += _call(world, method, url)
    assert not failures, "\n".join(failures[:40])
    _still_signed_in(world)


def test_every_get_route_with_hostile_query_parameters(app, world):
    failures = []
    for rule in _rules(app):
        if "GET" not in rule.methods:
            continue
        url = _build(rule, _good)
        for value in QUERY_VALUES:
            query = "&".join(f"{n}={value}" for n in QUERY_NAMES)
            failures += _call(world, "GET", f"{url}?{query}")
            lists = not rule.arguments or rule.rule.endswith("/timeline")
            if url.startswith("/api/") and lists and value in (HUGE, SURROGATE, "%C2%B2"):
                for name in QUERY_NAMES:  # the API refuses unknown parameters: one at a time
                    failures += _call(world, "GET", f"{url}?{name}={value}", people=("admin",))
    assert not failures, "\n".join(failures[:40])
    _still_signed_in(world)


def test_every_post_route_with_hostile_forms_json_and_oversize_bodies(app, world):
    failures = []
    for rule in _rules(app):
        post = [m for m in _methods(rule) if m != "GET"]
        if not post:
            continue
        url = _build(rule, _good)
        for method in post:
            for value in (SURROGATE_BYTES, HUGE, "a\r\nb"):
                failures += _call(world, method, url, data={n: value for n in FORM_NAMES})
            for body in JSON_BODIES:
                failures += _call(world, method, url, data=body,
                                  headers={"Content-Type": "application/json"})
            failures += _call(world, method, url, data=b"x" * BIG,
                              headers={"Content-Type": "application/json"})
            failures += _call(world, method, url, data={"name": "x" * BIG})
    assert not failures, "\n".join(failures[:40])
    _still_signed_in(world)


def test_malformed_referers_are_refused_not_crashed(app, world):
    """CSRF checking over HTTPS compares the Referer's port: a malformed one is a 400."""
    app.config.update(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    page = client.get("/signin", base_url="https://localhost")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True)).group(1)
    for referer in ("https://localhost:99999999/", "https://localhost:port/", "https://[::1/",
                    "https://localhost:-1/", "https://" + "\ud800".encode("utf-8", "surrogatepass")
                    .decode("latin-1") + "/", "http://[", "https://localhost:65536/"):
        r = client.post("/signin", base_url="https://localhost",
                        data={"csrf_token": token, "email": "x@y.z", "password": "p"},
                        headers={"Referer": referer})
        assert r.status_code == 400, (referer, r.status_code)
    ok = client.post("/signin", base_url="https://localhost",
                     data={"csrf_token": token, "email": "x@y.z", "password": "p"},
                     headers={"Referer": "https://localhost/signin"})
    assert ok.status_code == 401  # the token and Referer are fine; the password is not


def test_signed_out_posts_without_a_csrf_token_are_refused_clearly(app, world):
    """With CSRF on, a signed-out POST anywhere is refused before the view; the error page
    must render without a signed-in user (the sync admin's once failed: a 500)."""
    app.config.update(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    for rule in _rules(app):
        for method in (m for m in _methods(rule) if m != "GET"):
            url = _build(rule, _good)
            r = client.open(url, method=method, data={"name": "x"})
            assert r.status_code < 500, (method, url, r.status_code)
            if not url.startswith(("/api/", "/graph/")):  # bearer APIs take no CSRF token
                assert r.status_code == 400, (method, url, r.status_code)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_mixes_of_parameters_never_crash(app, world, data):
    rules = [r for r in _rules(app) if not r.rule.startswith("/static")]
    rule = data.draw(st.sampled_from(sorted(rules, key=lambda r: r.rule)))
    method = data.draw(st.sampled_from(_methods(rule)))
    ints = st.one_of(st.integers(min_value=-2**70, max_value=2**70).map(str),
                     st.sampled_from(BAD_INTS))
    text = st.one_of(st.text(max_size=20), st.sampled_from(BAD_TEXT))
    url = _build(rule, lambda c: data.draw(ints if isinstance(c, IntegerConverter)
                                           else st.one_of(st.just(_good(c)), text.map(quote))))
    params = data.draw(st.dictionaries(st.sampled_from(QUERY_NAMES), st.one_of(ints, text),
                                       max_size=4))
    query = "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in params.items())
    form = data.draw(st.dictionaries(st.sampled_from(FORM_NAMES), st.one_of(ints, text), max_size=6))
    kw = {} if method == "GET" else {"data": {k: v.encode("utf-8", "surrogatepass")
                                              for k, v in form.items()}}
    failures = _call(world, method, f"{url}?{query}" if query else url, **kw)
    assert not failures, "\n".join(failures)
