"""Helpers for the page tests: records and activities made through the services, a query
counter for the N+1 checks, and a Czech reader with a catalog of a test's own."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po
from sqlalchemy import event

from server import i18n

from server.crm.services import records
from server.crm.activities import ActivityParty, Attachment, Email, Task
from server.crm.registry import RECORD_TYPES
from server.db import db, utcnow
from server.security import authz
from tests.servers.wsgi import serving

SAMPLE = {
    "account": {"name": "Contoso Ltd", "phone": "+1 555 0100", "email1": "info@contoso.example",
                "city": "Seattle"},
    "contact": {"first_name": "Yvonne", "last_name": "McKay", "email1": "yvonne@contoso.example",
                "phone": "+1 555 0101", "job_title": "Buyer"},
    "lead": {"first_name": "Rene", "last_name": "Valdes", "topic": "Interested in 10 units",
             "company_name": "Fabrikam", "email1": "rene@fabrikam.example"},
    "opportunity": {"name": "10 coffee machines", "estimated_value": "12500.50",
                    "estimated_close_date": "2030-05-01", "status": "open"},
    "case": {"title": "Machine leaks water", "priority": "high"},
    "queue": {"name": "Support queue", "email": "support@contoso.example"},
}


@pytest.fixture
def make_record(app):
    """``make_record(user, "account", name=...)``: created through ``records.create``."""
    def make(user, type_name: str, owner=None, **values):
        data = dict(SAMPLE[type_name]) if not values else values
        if type_name == "queue" and "name" not in values:
            data["name"] = f"{data['name']} {utcnow().timestamp()}"
        record = records.create(authz.principal(user), RECORD_TYPES[type_name], data, owner=owner)
        db.session.commit()
        return record
    return make


@pytest.fixture
def make_email(app):
    """An email activity regarding a record, with parties and optional attachments."""
    def make(owner, *, regarding=None, subject="Quote for 10 machines", html=None, text=None,
             parties=(), attachments=(), when=None, **extra):
        email = Email(subject=subject, html_body=html, text_body=text, direction="incoming",
                      status="received", occurred_on=when or utcnow(), received_on=when or utcnow(),
                      owner_user_id=owner.id, owning_business_unit_id=owner.business_unit_id,
                      **extra)
        if regarding is not None:
            email.set_regarding(*regarding)
        for role, address, name, ref in parties:
            party = ActivityParty(role=role, address=address, name=name)
            if ref:
                party.set_party(*ref)
            email.parties.append(party)
        for att in attachments:
            email.attachments.append(Attachment(**att))
        db.session.add(email)
        db.session.commit()
        return email
    return make


@pytest.fixture
def make_task(app):
    def make(owner, *, regarding=None, subject="Call back", minutes_ago=0):
        task = Task(subject=subject, occurred_on=utcnow() - timedelta(minutes=minutes_ago),
                    owner_user_id=owner.id, owning_business_unit_id=owner.business_unit_id)
        if regarding is not None:
            task.set_regarding(*regarding)
        db.session.add(task)
        db.session.commit()
        return task
    return make


@contextmanager
def count_queries():
    """Count the SQL statements run inside the block: ``with count_queries() as n: ...``,
    then ``n[0]``."""
    counter = [0]

    def before(*_args, **_kw):
        counter[0] += 1
    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield counter
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


@pytest.fixture
def csrf_checked(app):
    """``with csrf_checked():`` forms are checked for their CSRF token, as in production
    (the tests turn the check off)."""
    @contextmanager
    def checked():
        app.config["WTF_CSRF_ENABLED"] = True
        try:
            yield
        finally:
            app.config["WTF_CSRF_ENABLED"] = False
    return checked


@pytest.fixture
def live(app):
    """The app served on a loopback port for Chromium (CSRF on, as in production)."""
    app.config.update(WTF_CSRF_ENABLED=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        with serving(app) as url:
            yield url
    finally:
        app.config.update(WTF_CSRF_ENABLED=False)


def use_catalog(folder, monkeypatch, language: str, strings: dict, plurals: dict | None = None):
    """A catalog of a test's own ({English: translation}, plural {(singular, plural): forms})
    in place of the shipped ones for ``server.i18n`` (what ``localize`` and
    ``translate_stored`` read), written as gettext writes one."""
    catalog = Catalog(locale=language)
    for english, translated in {**strings, **(plurals or {})}.items():
        catalog.add(english, translated)
    messages = folder / "test_catalogs" / language / "LC_MESSAGES"
    messages.mkdir(parents=True)
    with (messages / "messages.po").open("wb") as out:
        write_po(out, catalog)
    monkeypatch.setattr(i18n, "CATALOGS", folder / "test_catalogs")


@pytest.fixture
def czech_admin(make_user):
    """A System Administrator who reads Czech."""
    user = make_user("ada@org.example", roles=["System Administrator"], name="Ada Admin")
    user.language = "cs"
    db.session.commit()
    return user
