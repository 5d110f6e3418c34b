"""Sign-in throttling (issue 11): atomic (parallel wrong guesses against the real server get
no more than the limit through, on SQLite and PostgreSQL), counted per account from one
address, per account and per client address with their own limits, a lock that runs out and
that nobody keeps up for free, a warning before it, and failures logged with the account and
the client address but never the password."""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from server.db import db, utcnow
from server.security.models import SignInThrottle

pytestmark = pytest.mark.both_databases

PASSWORD = "Correct-horse-9"


def sign_in(client, email, password, *, address="192.0.2.10"):
    return client.post("/signin", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


@pytest.fixture
def limits(app):
    """Small limits: 3 per account from one address, 6 per account, 9 per address."""
    app.config.update(REGARDING_SIGNIN_MAX_FAILURES=3, REGARDING_SIGNIN_ACCOUNT_MAX_FAILURES=6,
                      REGARDING_SIGNIN_ADDRESS_MAX_FAILURES=9)
    return 3


def run_out_the_locks():
    """Let every lock and count run out (no sleeping: the stored times move back)."""
    for row in db.session.scalars(select(SignInThrottle)):
        row.locked_until = utcnow() - timedelta(seconds=1) if row.locked_until else None
        row.last_failure_on = utcnow() - timedelta(hours=1)
    db.session.commit()


def test_lockout_after_repeated_failures_until_it_expires(client, make_user, limits):
    make_user("ann@contoso.test")
    for _ in range(limits):
        assert sign_in(client, "ann@contoso.test", "Wrong-horse-9").status_code == 401
    locked = sign_in(client, "ann@contoso.test", PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    # The guesser locked out themselves only: the owner signs in from their own address.
    assert sign_in(client, "ann@contoso.test", PASSWORD, address="192.0.2.99").status_code == 302
    run_out_the_locks()
    assert sign_in(client, "ann@contoso.test", PASSWORD).status_code == 302


def test_the_page_warns_before_locking(client, make_user, limits):
    make_user("ann@contoso.test")
    first = sign_in(client, "ann@contoso.test", "Wrong-horse-9").get_data(as_text=True)
    assert "2 more tries before sign-in is paused" in first
    second = sign_in(client, "ann@contoso.test", "Wrong-horse-9").get_data(as_text=True)
    assert "1 more try before sign-in is paused" in second
    assert "Sign-in is now paused" in sign_in(client, "ann@contoso.test", "x").get_data(as_text=True)


def test_the_page_says_from_the_first_failure_how_many_tries_remain(app, client, make_user):
    """With the default limits (5 from one address) the count shows at once, with the
    length of the pause, so nobody is surprised by the lockout."""
    app.config["REGARDING_SIGNIN_LOCKOUT_SECONDS"] = 900
    make_user("ann@contoso.test")
    said = [sign_in(client, "ann@contoso.test", "Wrong-horse-9").get_data(as_text=True)
            for _ in range(app.config["REGARDING_SIGNIN_MAX_FAILURES"])]
    assert "4 more tries before sign-in is paused for 15 minutes." in said[0]
    assert "1 more try before sign-in is paused for 15 minutes." in said[-2]
    assert "Sign-in is now paused for 15 minutes." in said[-1]


def test_guessing_from_many_addresses_locks_the_account(client, make_user, limits):
    make_user("ann@contoso.test")
    for n in range(6):  # the account's own limit, two guesses from each of three addresses
        assert sign_in(client, "ann@contoso.test", "Wrong-horse-9",
                       address=f"192.0.2.{40 + n // 2}").status_code == 401
    assert sign_in(client, "ann@contoso.test", PASSWORD, address="192.0.2.60").status_code == 429


def test_an_office_address_gets_far_more_than_one_person(client, make_user, limits):
    make_user("ann@contoso.test")
    for n in range(9):  # the address's limit, spread over accounts
        assert sign_in(client, f"guess{n}@contoso.test", "Wrong-horse-9").status_code == 401
    assert sign_in(client, "ann@contoso.test", PASSWORD).status_code == 429
    assert sign_in(client, "ann@contoso.test", PASSWORD, address="192.0.2.20").status_code == 302


def test_success_resets_the_account_count(client, make_user, limits):
    make_user("ann@contoso.test")
    for _ in range(limits - 1):
        sign_in(client, "ann@contoso.test", "Wrong-horse-9", address="192.0.2.30")
    assert sign_in(client, "ann@contoso.test", PASSWORD, address="192.0.2.30").status_code == 302
    for _ in range(limits - 1):
        sign_in(client, "ann@contoso.test", "Wrong-horse-9", address="192.0.2.30")
    assert sign_in(client, "ann@contoso.test", PASSWORD, address="192.0.2.30").status_code == 302


def test_signing_in_to_ones_own_account_does_not_reset_the_address_count(client, make_user,
                                                                         limits):
    """Otherwise a guesser with one account of their own could guess without end."""
    make_user("mallory@contoso.test")
    make_user("victim@contoso.test")
    for n in range(8):
        sign_in(client, f"victim{n}@contoso.test", "Guess-horse-1")
    assert sign_in(client, "mallory@contoso.test", PASSWORD).status_code == 302
    sign_in(client, "other-victim@contoso.test", "Guess-horse-2")
    assert sign_in(client, "victim@contoso.test", "Guess-horse-3").status_code == 429


def test_a_lock_is_not_extended_by_attempts_while_it_lasts(client, make_user, limits):
    """Nobody keeps an account locked for free: attempts during a lock neither count nor
    move its end, and after it the count starts again."""
    make_user("ann@contoso.test")
    for _ in range(limits + 1):
        sign_in(client, "ann@contoso.test", "Wrong-horse-9")
    key = "account:ann@contoso.test|192.0.2.10"
    until = db.session.get(SignInThrottle, key).locked_until
    for _ in range(5):
        assert sign_in(client, "ann@contoso.test", "Wrong-horse-9").status_code == 429
    db.session.expire_all()
    row = db.session.get(SignInThrottle, key)
    assert row.locked_until == until and row.failures == limits + 1
    run_out_the_locks()
    assert sign_in(client, "ann@contoso.test", "Wrong-horse-9").status_code == 401
    db.session.expire_all()
    assert db.session.get(SignInThrottle, key).failures == 1


def test_failures_are_logged_with_account_and_address_not_password(client, make_user, limits,
                                                                   caplog):
    make_user("ann@contoso.test")
    with caplog.at_level(logging.WARNING, logger="server.security.throttle"):
        sign_in(client, "ann@contoso.test", "Secret-guess-77", address="198.51.100.7")
    text = caplog.text
    assert "ann@contoso.test" in text and "198.51.100.7" in text
    assert "Secret-guess-77" not in text


def test_parallel_wrong_guesses_get_no_more_than_the_limit_through(app, make_user, limits):
    """40 wrong guesses at once against the real server (threads, a threaded WSGI server):
    at most the limit of them are checked (401), the rest are refused (429)."""
    make_user("target@contoso.test")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/signin"
    barrier, codes, errors = threading.Barrier(40), [], []

    def guess():
        try:
            barrier.wait(timeout=30)
            codes.append(requests.post(url, data={"email": "target@contoso.test",
                                                  "password": "Wrong-horse-9"}, timeout=60,
                                       allow_redirects=False).status_code)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=guess) for _ in range(40)]
    try:
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=120)
    finally:
        server.shutdown()
    assert errors == []
    assert len(codes) == 40 and set(codes) <= {401, 429}
    assert codes.count(401) <= limits
    assert codes.count(429) >= 40 - limits
