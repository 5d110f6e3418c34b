"""Passwords, sign-in throttling, sessions, API tokens, the user and token commands, and
secrets at rest."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Column, Integer, MetaData, Table, select, text

from server.db import db, utcnow
from server.security import passwords, secrets, tokens
from server.security.models import ApiToken, SignInThrottle, User
from server.web.auth import TokenExpired, Unauthenticated, bearer_user

PASSWORD = "Correct-horse-9"
GENERIC = "The email address or password is not right."


def sign_in(client, email, password, *, address="192.0.2.10", **extra):
    return client.post("/signin", data={"email": email, "password": password, **extra},
                       environ_base={"REMOTE_ADDR": address})


# -- passwords and sign-in ----------------------------------------------------------------------

def test_passwords_are_hashed_with_argon2id(make_user):
    user = make_user()
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert passwords.verify_password(user, PASSWORD)
    assert not passwords.verify_password(user, PASSWORD.lower())
    assert not passwords.verify_password(None, PASSWORD)


def test_weak_passwords_are_refused():
    assert passwords.check_password_strength("short1A") is not None
    assert passwords.check_password_strength("0123456789012") is not None
    assert passwords.check_password_strength("alllowercaseletters") is not None
    assert passwords.check_password_strength("Correct-horse-9") is None


def test_sign_in_with_the_right_password(client, make_user):
    user = make_user("ann@contoso.test")
    r = sign_in(client, "Ann@Contoso.test", PASSWORD)
    assert r.status_code == 302
    assert client.get("/profile", environ_base={"REMOTE_ADDR": "192.0.2.10"}).status_code == 200
    # Session protection: the session does not follow the cookie to another address.
    assert client.get("/profile", environ_base={"REMOTE_ADDR": "192.0.2.11"}).status_code == 302
    assert user.email == "ann@contoso.test"


def test_wrong_password_and_unknown_user_get_the_same_answer(client, make_user):
    make_user("ann@contoso.test")
    wrong = sign_in(client, "ann@contoso.test", "Wrong-horse-9")
    unknown = sign_in(client, "nobody@contoso.test", "Wrong-horse-9")
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert GENERIC in r.get_data(as_text=True)
    assert client.get("/profile").status_code == 302


def test_inactive_users_cannot_sign_in(client, make_user):
    make_user("gone@contoso.test", is_active=False)
    r = sign_in(client, "gone@contoso.test", PASSWORD)
    assert r.status_code == 401 and GENERIC in r.get_data(as_text=True)


def test_password_change_signs_out_other_sessions(app, make_user, signin):
    user = make_user()
    here, elsewhere = signin(user), signin(user)
    version = user.session_version
    r = here.post("/profile", data={"action": "password", "current": PASSWORD,
                                    "new": "New-Password-42", "confirm": "New-Password-42"})
    assert r.status_code == 302
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert user.session_version == version + 1
    assert user.password_hash.startswith("$argon2id$")
    assert here.get("/profile").status_code == 200
    assert elsewhere.get("/profile").status_code == 302
    assert passwords.verify_password(user, "New-Password-42")
    assert not passwords.verify_password(user, PASSWORD)


def test_deactivating_a_user_ends_their_sessions(app, make_user, signin):
    user = make_user()
    c = signin(user)
    assert c.get("/profile").status_code == 200
    user.is_active = False
    db.session.commit()
    assert c.get("/profile").status_code == 302


def test_password_change_needs_the_current_password(app, make_user, signin):
    user = make_user()
    c = signin(user)
    c.post("/profile", data={"action": "password", "current": "Wrong-horse-9",
                             "new": "New-Password-42", "confirm": "New-Password-42"})
    db.session.expire_all()
    assert passwords.verify_password(db.session.get(User, user.id), PASSWORD)


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil.example",
    "/\t/evil.example", "/\n/evil.example", "javascript:alert(1)", "http:/evil.example",
    "evil.example",
])
def test_next_never_leaves_the_site(client, make_user, target):
    make_user("ann@contoso.test")
    r = sign_in(client, "ann@contoso.test", PASSWORD, next=target)
    assert r.status_code == 302
    location = r.headers["Location"]
    parts = urlsplit(location)
    assert not parts.netloc or parts.netloc == "localhost", location
    assert "evil" not in location


def test_next_keeps_a_local_path(client, make_user):
    make_user("ann@contoso.test")
    r = sign_in(client, "ann@contoso.test", PASSWORD, next="/profile?tab=tokens")
    assert urlsplit(r.headers["Location"]).path == "/profile"
    assert urlsplit(r.headers["Location"]).query == "tab=tokens"


# -- bearer tokens ------------------------------------------------------------------------------

def _bearer(app, header: str, kinds=("api", "pane")):
    with app.test_request_context("/api/v1/me", headers={"Authorization": header}):
        return bearer_user(kinds)


def test_tokens_are_stored_hashed(app, make_user):
    user = make_user()
    row, secret = tokens.issue(user, "laptop")
    db.session.commit()
    assert secret.startswith("rgd_") and len(secret) > 40
    stored = db.session.execute(text("SELECT * FROM api_token")).all()
    assert len(stored) == 1
    assert all(secret not in str(value) for value in stored[0])
    assert row.token_hash != secret and len(row.token_hash) == 64
    assert _bearer(app, f"Bearer {secret}").id == user.id


def test_token_use_is_recorded(app, make_user):
    row, secret = tokens.issue(make_user(), "laptop")
    db.session.commit()
    assert row.last_used_on is None
    _bearer(app, f"Bearer {secret}")
    assert row.last_used_on is not None


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic abc", "Bearer rgd_unknown",
                                    "Bearer " + "x" * 300])
def test_missing_or_unknown_tokens_are_refused(app, header):
    with pytest.raises(Unauthenticated):
        _bearer(app, header)


def test_revoked_tokens_are_refused(app, make_user):
    row, secret = tokens.issue(make_user(), "laptop")
    tokens.revoke(row)
    db.session.commit()
    with pytest.raises(Unauthenticated):
        _bearer(app, f"Bearer {secret}")


def test_expired_tokens_are_refused(app, make_user):
    row, secret = tokens.issue(make_user(), "laptop")
    row.expires_on = utcnow() - timedelta(seconds=1)
    db.session.commit()
    with pytest.raises(TokenExpired):
        _bearer(app, f"Bearer {secret}")


def test_tokens_of_inactive_users_are_refused(app, make_user):
    user = make_user()
    _, secret = tokens.issue(user, "laptop")
    user.is_active = False
    db.session.commit()
    with pytest.raises(Unauthenticated):
        _bearer(app, f"Bearer {secret}")


def test_a_token_works_only_where_its_kind_is_accepted(app, make_user):
    _, pane = tokens.issue(make_user(), "pane", kind="pane")
    db.session.commit()
    assert pane.startswith("rgp_")
    with pytest.raises(Unauthenticated):
        _bearer(app, f"Bearer {pane}", kinds=("api",))
    assert _bearer(app, f"Bearer {pane}", kinds=("pane",))


# -- the user and token commands ----------------------------------------------------------------

def test_create_user_command(app):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["create-user", "New.Person@Contoso.test", "New Person",
                            "--role", "Sales Manager", "--password", "Another-horse-7"])
    assert r.exit_code == 0, r.output
    db.session.expire_all()
    user = db.session.scalar(select(User).where(User.email == "new.person@contoso.test"))
    assert [role.name for role in user.roles] == ["Sales Manager"]
    assert user.password_hash.startswith("$argon2id$")
    assert passwords.verify_password(user, "Another-horse-7")
    assert "Another-horse-7" not in r.output


@pytest.mark.parametrize("args", [
    ["weak@contoso.test", "Weak Password", "--password", "short"],
    ["norole@contoso.test", "No Role", "--role", "Emperor", "--password", "Another-horse-7"],
])
def test_create_user_command_refuses_bad_input(app, args):
    r = app.test_cli_runner().invoke(args=["create-user", *args])
    assert r.exit_code != 0
    db.session.expire_all()
    assert db.session.scalar(select(User).where(User.email == args[0])) is None


def test_create_token_command(app, make_user):
    user = make_user("ann@contoso.test")
    r = app.test_cli_runner().invoke(args=["create-token", "ann@contoso.test", "--name", "ci",
                                           "--days", "7"])
    assert r.exit_code == 0, r.output
    secret = r.output.strip()
    assert _bearer(app, f"Bearer {secret}").id == user.id
    db.session.expire_all()
    row = db.session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    assert row.name == "ci" and row.token_hash != secret
    assert timedelta(days=6) < row.expires_on - utcnow() <= timedelta(days=7)


def test_create_token_command_for_an_unknown_user(app):
    r = app.test_cli_runner().invoke(args=["create-token", "nobody@contoso.test"])
    assert r.exit_code != 0 and "No user" in r.output


# -- secrets at rest ----------------------------------------------------------------------------

probe_meta = MetaData()
probe = Table("secret_probe", probe_meta, Column("id", Integer, primary_key=True),
              Column("value", secrets.EncryptedText()))


@pytest.fixture
def probe_table(app):
    probe_meta.create_all(db.engine)
    yield probe
    db.session.rollback()
    probe_meta.drop_all(db.engine)


def _store(value):
    db.session.execute(probe.insert(), [{"value": value}])
    db.session.commit()
    return db.session.execute(select(probe.c.id).order_by(probe.c.id.desc())).scalar()


def _raw(row_id):
    return db.session.execute(text("SELECT value FROM secret_probe WHERE id = :i"), {"i": row_id}).scalar()


def test_encrypted_text_round_trips_and_is_not_stored_plain(probe_table):
    row_id = _store("imap password ünïcode")
    assert db.session.execute(select(probe.c.value).where(probe.c.id == row_id)).scalar() == \
        "imap password ünïcode"
    raw = _raw(row_id)
    assert "imap password" not in raw and raw.startswith("gAAAA")
    assert _store(None) and _raw(_store(None)) is None


def test_key_rotation(app, probe_table, tmp_path):
    from server import create_app
    from tests.conftest import ENCRYPTION_KEY, make_config

    old_id = _store("before rotation")
    new_key = Fernet.generate_key().decode()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    rotated = create_app({**make_config(url, tmp_path), "REGARDING_ENCRYPTION_KEY": f"{new_key},{ENCRYPTION_KEY}"})
    with rotated.app_context():
        assert db.session.execute(select(probe.c.value).where(probe.c.id == old_id)).scalar() == \
            "before rotation"
        new_id = _store("after rotation")
        raw_new = _raw(new_id)
        assert Fernet(new_key.encode()).decrypt(raw_new.encode()) == b"after rotation"
        re_encrypted = secrets.rotate(_raw(old_id))
        assert Fernet(new_key.encode()).decrypt(re_encrypted.encode()) == b"before rotation"
        db.session.remove()
    # The first application still has only the old key, and still works with it.
    assert db.session.execute(select(probe.c.value).where(probe.c.id == old_id)).scalar() == \
        "before rotation"
    with pytest.raises(ValueError, match="REGARDING_ENCRYPTION_KEY"):
        db.session.execute(select(probe.c.value).where(probe.c.id == new_id)).scalar()
    db.session.rollback()
    only_new = create_app({**make_config(url, tmp_path), "REGARDING_ENCRYPTION_KEY": new_key})
    with only_new.app_context():
        with pytest.raises(ValueError):
            db.session.execute(select(probe.c.value).where(probe.c.id == old_id)).scalar()
        db.session.rollback()
        db.session.remove()
        db.engine.dispose()
    with rotated.app_context():
        db.engine.dispose()


def test_pane_tokens_are_listed_and_revocable_on_the_profile_page(app, make_user, signin):
    """The add-in's pane tokens are revocable from the profile page like API tokens."""
    from server.db import db
    from server.security import tokens
    user = make_user()
    row, secret = tokens.issue(user, "Outlook add-in", kind="pane", days=1 / 3)
    db.session.commit()
    client = signin(user)
    page = client.get("/profile").get_data(as_text=True)
    assert "Outlook add-in sign-in" in page and row.prefix in page
    client.post("/profile", data={"action": "revoke_token", "token_id": row.id})
    db.session.expire_all()
    assert tokens.authenticate(secret) is None
