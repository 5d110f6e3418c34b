"""Fixtures for the REST API tests: users in the built-in roles, a second business unit,
sample bodies per record type, and a query counter for N+1 checks."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

# A valid create body per record type, and a change to make to it.
SAMPLES = {
    "account": {"name": "Contoso Ltd", "email1": "info@contoso.test", "phone": "+1 555 0100",
                "annual_revenue": "1000000.50", "website": "https://contoso.test",
                "city": "Seattle"},
    "contact": {"first_name": "Jo", "last_name": "Smith", "email1": "jo@contoso.test",
                "job_title": "Buyer"},
    "lead": {"last_name": "Lee", "first_name": "Sam", "topic": "Wants a demo", "status": "new",
             "email1": "sam@fabrikam.test"},
    "opportunity": {"name": "500 licences", "estimated_value": 5000,
                    "estimated_close_date": "2026-12-31", "probability": 40},
    "case": {"title": "Printer on fire", "priority": "high", "origin": "email"},
    "queue": {"name": "Support", "email": "support@contoso.test"},
}
CHANGES = {
    "account": {"city": "Paris", "annual_revenue": 12.5},
    "contact": {"job_title": "CTO", "first_name": "Joanna"},
    "lead": {"status": "qualified", "company_name": "Fabrikam"},
    "opportunity": {"stage": "propose", "probability": 70},
    "case": {"status": "on_hold", "priority": "low"},
    "queue": {"description": "First line"},
}
COLLECTION = {"account": "accounts", "contact": "contacts", "lead": "leads",
              "opportunity": "opportunities", "case": "cases", "queue": "queues"}


@pytest.fixture
def admin(make_user):
    return make_user("admin@contoso.test", roles=["System Administrator"], name="Ada Admin")


@pytest.fixture
def seller(make_user):
    return make_user("sam@contoso.test", roles=["Salesperson"], name="Sam Seller")


@pytest.fixture
def seller2(make_user):
    return make_user("sue@contoso.test", roles=["Salesperson"], name="Sue Seller")


@pytest.fixture
def csr(make_user):
    return make_user("cory@contoso.test", roles=["Customer Service Representative"],
                     name="Cory Service")


@pytest.fixture
def other_unit(make_unit):
    return make_unit("Fabrikam Division")


@pytest.fixture
def outsider(make_user, other_unit):
    """A Salesperson in another business unit (reads only that unit's records)."""
    return make_user("olga@fabrikam.test", roles=["Salesperson"], unit=other_unit,
                     name="Olga Outsider")


def error_of(response) -> dict:
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


@pytest.fixture
def count_queries(app):
    """``with count_queries() as n: ...; n[0]`` is the number of SQL statements run."""
    from server.db import db

    @contextmanager
    def counting():
        counter = [0]

        def before(*args, **kwargs):
            counter[0] += 1
        event.listen(db.engine, "before_cursor_execute", before)
        try:
            yield counter
        finally:
            event.remove(db.engine, "before_cursor_execute", before)
    return counting
