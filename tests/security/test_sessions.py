"""Sessions (issue 11): sign-out ends the session on the server, so a copied session or
remember-me cookie stops working; "remember me" lasts two weeks with SameSite; a password
change revokes the user's API and add-in tokens and says so."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.db import db
from server.security import tokens
from server.security.models import ApiToken, UserSession

pytestmark = pytest.mark.both_databases

PASSWORD = "Correct-horse-9"


def copy_of(client, app, *names):
    """A second browser holding copies of ``client``'s cookies."""
    thief = app.test_client()
    for name in names:
        cookie = client.get_cookie(name)
        assert cookie is not None, name
        thief.set_cookie(name, cookie.value)
    return thief


def test_sign_out_ends_the_session_on_the_server(app, make_user, signin):
    user = make_user()
    client = signin(user)
    thief = copy_of(client, app, "session")
    assert thief.get("/profile").status_code == 200
    assert client.post("/signout").status_code == 302
    assert client.get("/profile").status_code == 302
    assert thief.get("/profile").status_code == 302  # the copy stopped working too
    assert db.session.scalar(select(UserSession).where(UserSession.user_id == user.id)) is None


def test_remember_me_is_two_weeks_with_samesite_and_ends_at_sign_out(app, make_user):
    user = make_user()
    client = app.test_client()
    r = client.post("/signin", data={"email": user.email, "password": PASSWORD, "remember": "1"})
    assert r.status_code == 302
    header = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("remember_token="))
    assert "SameSite=Lax" in header and "HttpOnly" in header
    cookie = client.get_cookie("remember_token")
    assert timedelta(days=13) < cookie.expires - cookie.expires.now(cookie.expires.tzinfo) \
        <= timedelta(days=14, minutes=1)
    only_remember = copy_of(client, app, "remember_token")  # no session cookie at all
    assert only_remember.get("/profile").status_code == 200
    assert client.post("/signout").status_code == 302
    fresh = app.test_client()
    fresh.set_cookie("remember_token", cookie.value)
    assert fresh.get("/profile").status_code == 302


def test_password_change_revokes_tokens_and_says_so(app, make_user, signin, api_client):
    user = make_user()
    api = api_client(user)
    pane = api_client(user, kind="pane")
    assert api.get("/api/v1/me").status_code == 200
    client = signin(user)
    r = client.post("/profile", data={"action": "password", "current": PASSWORD,
                                      "new": "New-Password-42", "confirm": "New-Password-42"},
                    follow_redirects=True)
    assert "API and Outlook add-in tokens are revoked" in r.get_data(as_text=True)
    assert api.get("/api/v1/me").status_code == 401
    assert pane.post("/api/addin/context", json={}).status_code == 401
    assert client.get("/profile").status_code == 200  # this browser stays signed in
    db.session.expire_all()
    assert all(t.revoked_on is not None for t in db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id)))
    # a token made afterwards works
    _, secret = tokens.issue(user, "after")
    db.session.commit()
    assert app.test_client().get("/api/v1/me", headers={
        "Authorization": f"Bearer {secret}"}).status_code == 200
