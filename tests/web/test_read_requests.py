"""Requests that only read (the pages that show records and activities, the REST API's GETs)
run each statement as its own transaction on PostgreSQL: no BEGIN before the first and no
ROLLBACK after the last, two round trips fewer per page (``server.db.statements_commit_alone``,
issue 17 goal 2). Requests that write keep one transaction."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from server.db import db

pytestmark = pytest.mark.both_databases


@contextmanager
def transactions_seen():
    """For each statement run inside the block: whether a transaction was open on the
    server after it (psycopg's view of the connection: idle or in a transaction)."""
    from psycopg import pq
    seen: list[bool] = []

    def after(conn, _cursor, _statement, _params, _context, _many):
        pgconn = conn.connection.dbapi_connection.pgconn
        seen.append(pgconn.transaction_status != pq.TransactionStatus.IDLE)
    event.listen(db.engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(db.engine, "after_cursor_execute", after)


def _request(call):
    db.session.commit()  # the test client shares the test's session: start it afresh
    with transactions_seen() as seen:
        response = call()
    assert response.status_code in (200, 201, 302), response.get_data(as_text=True)[:300]
    return seen


def test_pages_and_api_calls_that_read_open_no_transaction(db_backend, make_user, make_record,
                                                           make_email, signin, api_client):
    if db_backend != "postgresql":
        pytest.skip("SQLite has no round trips to save: its reads open no transaction anyway")
    user = make_user(roles=["Salesperson"])
    account = make_record(user, "account")
    email = make_email(user, regarding=("account", account.id), html="<p>Ten machines</p>")
    page, api = signin(user), api_client(user)
    account_id, email_id = account.id, email.id  # (read now: the requests start afresh)
    reads = [lambda: page.get("/"), lambda: page.get("/r/account/"),
             lambda: page.get(f"/r/account/{account_id}"),
             lambda: page.get(f"/activities/{email_id}"),
             lambda: api.get(f"/api/v1/accounts/{account_id}"),
             lambda: api.get(f"/api/v1/accounts/{account_id}/timeline"),
             lambda: api.get("/api/v1/accounts")]
    for read_number, read in enumerate(reads):
        seen = _request(read)
        assert seen and not any(seen), (read_number, seen)

    # What writes is one transaction, on a page and through the API.
    seen = _request(lambda: page.post(f"/r/account/{account_id}/edit",
                                      data={"name": "Contoso Coffee"}))
    assert any(seen), seen
    seen = _request(lambda: api.patch(f"/api/v1/accounts/{account_id}", json={"city": "Oslo"}))
    assert any(seen), seen
    db.session.expire_all()
    assert (account.name, account.city) == ("Contoso Coffee", "Oslo")
